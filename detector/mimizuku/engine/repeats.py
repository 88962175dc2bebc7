"""Repeats: a burst of one situation is one story, not one anomaly per alert or per minute.

A service scan makes Apache answer 400 and 403 twenty times in a second; a directory scan makes
the same rule fire thousands of times, sometimes for hours. Each of those alerts is above the
threshold for the same reason: the same rule, on the same agent, for the same user and source,
far more often than usual. The first one is the anomaly; the others repeat it and carry no news.
Likewise one ``sudo reboot`` is two alerts, sudo's own log line (5402) and auditd's execve
(80792), both new for the same reason: ``reboot`` was never run on that agent.

So an anomaly *opens an episode* for its situation, as its detector defines it
(``Detector.repeat_situation``):

* context: the block (rule, groups, level, agent, user, address class, Windows event or IDS
  signature) and the source address;
* files and commands: the agent and the exact set of words it never saw there (what the reasons
  name); an anomaly with no never-seen word (a rare mix of known ones) is never a repeat.

The episode goes on as long as its flagged alerts keep coming, each within ``window`` seconds
(``DEFAULT_GAP``, 15 minutes) of the one before: a two-hour scan is one episode, however long it
lasts. Its later alerts keep their score but are not flagged on their own: their record says
``repeat_of`` (the opener's id). The analyst hears of it again only when it changes: an alert in a
higher severity band than every one of the episode so far is raised as an *update* (its record's
``episode``: the opener, the alerts so far, since when); a new source, target or never-seen word
is another situation, hence its own anomaly; a pause longer than ``window`` ends the episode, and
the next alert opens a new one. Only an alert that a single detector flags can be a repeat, and
never an abuse file. Training never groups (the nightly job's anomaly filter excludes every alert
at or above the threshold, repeats included).

Standard library only; bounded (the episodes that went quiet longest are dropped first).
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, NamedTuple, Optional

from mimizuku.core.bounded import put_newest
from mimizuku.core.json_keys import decode_key, keyed_rows
from mimizuku.core.severity import SEVERITY_RANK as _RANK

#: the longest pause inside one episode (seconds): a burst that pauses longer starts a new one
DEFAULT_GAP = 900


class Episode(NamedTuple):
    """One situation's episode: its opener (id and time as written), when it began and when its
    last alert came (whole seconds), the highest severity rank raised, the alerts it holds."""

    opener: str
    since: str
    opened: int
    last: int
    top: int
    alerts: int

    @property
    def duration(self) -> int:
        return self.last - self.opened


class RepeatWindows:
    """Open episodes: situation -> ``Episode``; the most recently active last."""

    def __init__(self, window: int = DEFAULT_GAP, max_entries: int = 65_536):
        self.window = window
        self.max_entries = max_entries
        self._open: Dict[Hashable, Episode] = {}

    def __len__(self) -> int:
        return len(self._open)

    def episode(self, situation: Hashable) -> Optional[Episode]:
        """The open episode of ``situation`` (None when there is none)."""
        return self._open.get(situation)

    def judge(self, situation: Hashable, t: Optional[int], band: str, alert_id: str,
              timestamp: str = "") -> Optional[str]:
        """The id of the anomaly this one repeats, or None when it is raised: it opens an episode,
        or it is an update of one (a higher band than the episode reached so far). ``t``: whole
        seconds; an alert without a time is never a repeat. ``timestamp``: as written, for the
        episode's "since"."""
        if t is None:
            return None
        rank = _RANK.get(band, 0)
        ep = self._open.get(situation)
        if ep is not None:
            if t < ep.opened:  # out of order (a replayed spool): judged on its own, episode kept
                return None
            if t - ep.last < self.window:  # no pause long enough: the episode goes on
                repeat = rank <= ep.top       # not higher than what was raised: no news
                put_newest(self._open, situation,
                           ep._replace(last=max(ep.last, t), top=max(ep.top, rank), alerts=ep.alerts + 1),
                           self.max_entries)
                return ep.opener if repeat else None
        # a new episode (or one after a long pause): the newest, so the quietest are dropped first
        put_newest(self._open, situation, Episode(alert_id, timestamp, t, t, rank, 1), self.max_entries)
        return None

    def to_json(self, max_keys: int) -> Dict[str, Any]:
        """The open episodes as JSON (``mimizuku.engine.stream_snapshot``), the ``max_keys``
        active last; situations no JSON can hold are left out."""
        return {"window": self.window,
                "open": keyed_rows((situation, *ep) for situation, ep in list(self._open.items())[-max_keys:])}

    @classmethod
    def from_json(cls, doc: Dict[str, Any]) -> "RepeatWindows":
        """The episodes ``to_json`` wrote (``TypeError``/``ValueError`` for anything else)."""
        w = cls(int(doc["window"]))
        for situation, opener, since, opened, last, top, alerts in doc["open"]:
            if not (isinstance(opener, str) and isinstance(since, str)
                    and all(type(x) is int for x in (opened, last, top, alerts)) and opened <= last):
                raise ValueError("an episode is (situation, opener id, since, opened, last, band rank, alerts)")
            put_newest(w._open, decode_key(situation), Episode(opener, since, opened, last, top, alerts),
                       w.max_entries)
        return w
