"""Repeats: one anomaly per situation per window, not one per alert of a burst.

A service scan makes Apache answer 400 and 403 twenty times in a second; a directory scan makes
the same rule fire thousands of times. Each of those alerts is above the threshold for the same
reason: the same rule, on the same agent, for the same user and source, far more often than
usual. The first one is the anomaly; the others repeat it and carry no news. Likewise one
``sudo reboot`` is two alerts, sudo's own log line (5402) and auditd's execve (80792), both new
for the same reason: ``reboot`` was never run on that agent.

So an anomaly *opens* a window of ``window`` seconds for its situation, as its detector defines
it (``Detector.repeat_situation``):

* context: the block (rule, groups, level, agent, user, address class, Windows event or IDS
  signature) and the source address;
* files and commands: the agent and the exact set of words it never saw there (what the reasons
  name); an anomaly with no never-seen word (a rare mix of known ones) is never a repeat.

Later alerts of that situation inside the window keep their score but are not flagged on their
own: their record says ``repeat_of`` (the opener's id), as an anomaly detector that reports per
time bucket would. A repeat whose severity band is higher than every anomaly of its window so far
(the burst escalates) is flagged again. The window is fixed from its opener, so a flood that lasts
an hour is raised once a window, not once. Only an alert that a single detector flags can be a
repeat, and never an abuse file. Training never groups (the nightly job's anomaly filter
excludes every alert at or above the threshold, repeats included).

Standard library only; bounded (the oldest windows are dropped first).
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, Optional, Tuple

from mimizuku.core.bounded import put_newest
from mimizuku.core.json_keys import decode_key, encode_key
from mimizuku.core.severity import SEVERITY_RANK as _RANK


class RepeatWindows:
    """Open windows: situation -> (opened at, highest band so far, opener id)."""

    def __init__(self, window: int = 60, max_entries: int = 65_536):
        self.window = window
        self.max_entries = max_entries
        self._open: Dict[Hashable, Tuple[int, int, str]] = {}

    def __len__(self) -> int:
        return len(self._open)

    def to_json(self, max_keys: int) -> Dict[str, Any]:
        """The open windows as JSON (``mimizuku.engine.stream_snapshot``), the ``max_keys``
        opened last; situations no JSON can hold are left out."""
        out = []
        for situation, (opened, top, opener) in list(self._open.items())[-max_keys:]:
            try:
                out.append([encode_key(situation), opened, top, opener])
            except TypeError:
                continue
        return {"window": self.window, "open": out}

    @classmethod
    def from_json(cls, doc: Dict[str, Any]) -> "RepeatWindows":
        """The windows ``to_json`` wrote (``TypeError``/``ValueError`` for anything else)."""
        w = cls(int(doc["window"]))
        for situation, opened, top, opener in doc["open"]:
            if type(opened) is not int or type(top) is not int or not isinstance(opener, str):
                raise ValueError("a repeat window is (situation, opened at, band rank, opener id)")
            put_newest(w._open, decode_key(situation), (opened, top, opener), w.max_entries)
        return w

    def judge(self, situation: Hashable, t: Optional[int], band: str, alert_id: str) -> Optional[str]:
        """The id of the anomaly this one repeats, or None when it is an anomaly of its own
        (and then opens, or escalates, its situation's window). ``t``: whole seconds; an alert
        without a time is never a repeat."""
        if t is None:
            return None
        rank = _RANK.get(band, 0)
        got = self._open.get(situation)
        if got is not None:
            opened, top, opener = got
            if 0 <= t - opened < self.window:
                if rank <= top:
                    return opener
                self._open[situation] = (opened, rank, opener)  # escalation: flagged, same window
                return None
            if t < opened:  # out of order (a replayed spool): judged on its own, window kept
                return None
        # (re-)opened: the newest window, so the oldest are dropped first
        put_newest(self._open, situation, (t, rank, alert_id), self.max_entries)
        return None
