"""Analysts' verdicts on alerts (false positive, confirmed) and which alerts each one covers.

A verdict is about a *situation*, not one alert: the next alert of the same situation must be
judged the same way, and one alert id would never come back. A situation is what a detector
keyed, split into *what happened* and *to whom* (``Detector.feedback_situation``, computed from
the very key that was scored):

* what happened (``content``): the rule id for the context detector; the normalised command
  tokens (volatile arguments folded as the model folds them) for commands; the normalised path
  tokens and the event for files;
* to whom: the agent, the account, and the agent's peer group as the model saw it when the
  verdict was given (its members are kept, so a retrain that renumbers groups changes nothing).

A verdict's *scope* says how far it reaches: ``agent`` (this host, any account), ``account``
(this account, any host), ``agent-account`` (both; the default), ``peer-group`` (the host's
peers too) or ``fleet`` (every host). It never reaches further: a false positive on one host's
alert leaves the same situation on another host flagged unless the scope says otherwise.

What a verdict does (``ActiveFeedback.match``, asked by the flag rule,
``mimizuku.engine.flag_rule``): a **false positive** covers an alert when every detector that
flagged it is in a situation the verdict covers: the alert is still scored and recorded, not
flagged (``suppressed_by``), and, not flagged, is learnt at the next retrain. A **confirmed**
verdict covers an alert when any detector that scored it is in a covered situation: the alert is
flagged whatever its score ("same as confirmed incident <id>"), so it is never learnt as normal
and never suppressed. An expired or revoked verdict does nothing.

Plain data, standard library only (the flag rule is, and the in-process path imports it).
"""
from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

__all__ = ["VERDICTS", "FALSE_POSITIVE", "CONFIRMED", "SCOPES", "DEFAULT_SCOPE", "DEFAULT_EXPIRY",
           "FeedbackFormatError", "Situation", "FeedbackEntry", "FeedbackSet", "ActiveFeedback",
           "situations_of", "parse_expiry", "new_id", "check_id", "entry_json_line", "iso", "SUPPRESSED",
           "CONFIRMED_REASON", "MAX_TEXT"]

FALSE_POSITIVE = "false-positive"
CONFIRMED = "confirmed"
VERDICTS = (FALSE_POSITIVE, CONFIRMED)
SCOPES = ("agent", "account", "agent-account", "peer-group", "fleet")
#: the narrowest scope that still covers the alert's next occurrences: this host, this account
DEFAULT_SCOPE = "agent-account"
#: a false positive is re-examined after a month (the situation has become normal history by
#: then, retrains learnt it); a confirmed incident stays confirmed
DEFAULT_EXPIRY = {FALSE_POSITIVE: "30d", CONFIRMED: "never"}
#: how a record's reasons say that a verdict applied (written only here)
SUPPRESSED = "suppressed: "
CONFIRMED_REASON = "same as confirmed incident "

#: limits of what an entry may hold (an import line comes from another tool)
MAX_TEXT = 1000
MAX_SITUATIONS = 8
MAX_PEERS = 500
_ID = re.compile(r"\Afb-[0-9a-f]{4,32}\Z")
_SPAN = re.compile(r"\A([0-9]{1,6})([smhdw])\Z")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class FeedbackFormatError(ValueError):
    """A verdict (an entry of the store, a line of an import) that does not have the documented shape."""


def new_id() -> str:
    """A fresh verdict id: ``fb-`` and 12 hex digits (random: two processes never collide)."""
    return "fb-" + secrets.token_hex(6)


def check_id(vid: Any) -> str:
    """``vid`` when it is a verdict id (``fb-`` and 4-32 lowercase hex digits), else ``FeedbackFormatError``."""
    if not isinstance(vid, str) or not _ID.match(vid):
        raise FeedbackFormatError("id must be 'fb-' and 4-32 lowercase hex digits")
    return vid


def iso(t: Optional[float]) -> Optional[str]:
    """Seconds since the epoch as an ISO 8601 UTC time (None stays None)."""
    if t is None:
        return None
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: Any, what: str) -> float:
    if not isinstance(text, str) or len(text) > 40:
        raise FeedbackFormatError(f"{what} must be an ISO 8601 time")
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FeedbackFormatError(f"{what} is not an ISO 8601 time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        return dt.timestamp()
    except (OverflowError, ValueError, OSError):
        raise FeedbackFormatError(f"{what} is out of range") from None


def parse_expiry(text: Optional[str], now: float) -> Optional[float]:
    """When a verdict given ``now`` expires: ``30d``, ``12h``, ``45m``, ``2w``, ``90s``, an ISO
    time, or ``never`` (None)."""
    if text is None or text == "never":
        return None
    m = _SPAN.match(text)
    if m:
        n = int(m.group(1))
        if n <= 0:
            raise FeedbackFormatError("an expiry must be positive")
        return now + n * _UNIT[m.group(2)]
    return _parse_time(text, "expiry")


def _text(obj: Mapping[str, Any], name: str, *, required: bool = False, limit: int = MAX_TEXT) -> Optional[str]:
    v = obj.get(name)
    if v is None:
        if required:
            raise FeedbackFormatError(f"{name} is missing")
        return None
    if not isinstance(v, str) or len(v) > limit:
        raise FeedbackFormatError(f"{name} must be a string of at most {limit} characters")
    return v


@dataclass(frozen=True)
class Situation:
    """What one detector made of an alert, for verdicts: the detector, what happened
    (``content``), the agent, the account, and the agent's peer group (its members, the agent
    included; empty: none known)."""

    detector: str
    content: str
    agent: str
    account: str
    peers: Tuple[str, ...] = ()

    def to_json(self) -> Dict[str, Any]:
        return {"detector": self.detector, "content": self.content, "agent": self.agent,
                "account": self.account, "peers": list(self.peers)}

    @classmethod
    def from_json(cls, obj: Any) -> "Situation":
        if not isinstance(obj, dict):
            raise FeedbackFormatError("a situation is an object")
        peers = obj.get("peers") or []
        if not isinstance(peers, list) or len(peers) > MAX_PEERS or not all(isinstance(p, str) for p in peers):
            raise FeedbackFormatError(f"peers must be a list of at most {MAX_PEERS} agent names")
        return cls(_text(obj, "detector", required=True, limit=32), _text(obj, "content", required=True, limit=8192),
                   _text(obj, "agent", required=True, limit=255), _text(obj, "account", required=True, limit=255),
                   tuple(sorted(set(peers))))

    def covered_by(self, given: "Situation", scope: str) -> bool:
        """Whether a verdict given on ``given`` with ``scope`` reaches this situation."""
        if self.detector != given.detector or self.content != given.content:
            return False
        if scope == "agent":
            return self.agent == given.agent
        if scope == "account":
            return self.account == given.account
        if scope == "agent-account":
            return self.agent == given.agent and self.account == given.account
        if scope == "peer-group":
            return self.agent == given.agent or self.agent in given.peers
        return scope == "fleet"

    def summary(self, limit: int = 120) -> str:
        """One line for a person: ``commands ["prog:curl", ...] on web-01 as www-data``."""
        what = self.content if len(self.content) <= limit else self.content[: limit - 1] + "…"
        return f"{self.detector} {what} on {self.agent or '?'} as {self.account or '?'}"


def situations_of(scored: Mapping[str, Tuple[float, Any, Any]], names: Iterable[str],
                  peer_groups: Any = None) -> List[Situation]:
    """The situations of the detectors ``names`` among ``scored`` (detector name -> (score, key,
    detector), as the flag rule gets them). ``peer_groups``: the model's
    (``mimizuku.engine.peers.PeerGroups``), to record the agent's group."""
    out = []
    for name in names:
        got = scored.get(name)
        if got is None:
            continue
        part = got[2].feedback_situation(got[1])
        if part is None:
            continue
        content, agent, account = part
        peers: Tuple[str, ...] = ()
        if peer_groups is not None and agent:
            members = peer_groups.peers(agent)
            if members:
                peers = tuple(sorted(set(members) | {agent}))
        out.append(Situation(name, content, agent, account, peers))
    return out


@dataclass
class FeedbackEntry:
    """One verdict as stored (docs/feedback.md): who decided what about which situations, for how long."""

    id: str
    verdict: str
    scope: str
    situations: Tuple[Situation, ...]
    created_at: float
    by: str
    expires_at: Optional[float] = None
    note: str = ""
    alert_id: Optional[str] = None
    source: str = "cli"
    revoked_at: Optional[float] = None
    revoked_by: Optional[str] = None

    def active(self, now: float) -> bool:
        """Applies at ``now``: not revoked, not expired."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def state(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.active(now) else "expired"

    def covers(self, s: Situation) -> bool:
        return any(s.covered_by(g, self.scope) for g in self.situations)

    def reason(self) -> str:
        """How a record names the verdict that applied to it."""
        until = "never expires" if self.expires_at is None else f"until {iso(self.expires_at)}"
        if self.verdict == CONFIRMED:
            return f"{CONFIRMED_REASON}{self.id} (scope {self.scope}, by {self.by}, {until})"
        return f"{SUPPRESSED}false positive {self.id} (scope {self.scope}, by {self.by}, {until})"

    def to_json(self) -> Dict[str, Any]:
        return {"id": self.id, "verdict": self.verdict, "scope": self.scope,
               "situations": [s.to_json() for s in self.situations], "created_at": iso(self.created_at),
               "by": self.by, "expires_at": iso(self.expires_at), "note": self.note, "alert_id": self.alert_id,
               "source": self.source, "revoked_at": iso(self.revoked_at), "revoked_by": self.revoked_by}

    @classmethod
    def from_json(cls, obj: Any) -> "FeedbackEntry":
        """An entry from its JSON form (the store's, or an import line); ``FeedbackFormatError``
        names the first thing wrong."""
        if not isinstance(obj, dict):
            raise FeedbackFormatError("a verdict is a JSON object")
        vid = check_id(_text(obj, "id", required=True, limit=40))
        verdict = _text(obj, "verdict", required=True, limit=32)
        if verdict not in VERDICTS:
            raise FeedbackFormatError(f"verdict must be one of {', '.join(VERDICTS)}")
        scope = _text(obj, "scope", required=True, limit=32)
        if scope not in SCOPES:
            raise FeedbackFormatError(f"scope must be one of {', '.join(SCOPES)}")
        sits = obj.get("situations")
        if not isinstance(sits, list) or not 1 <= len(sits) <= MAX_SITUATIONS:
            raise FeedbackFormatError(f"situations must be a list of 1 to {MAX_SITUATIONS} situations")
        expires = obj.get("expires_at")
        revoked = obj.get("revoked_at")
        return cls(vid, verdict, scope, tuple(Situation.from_json(s) for s in sits),
                   _parse_time(obj.get("created_at"), "created_at"), _text(obj, "by", required=True, limit=255),
                   None if expires is None else _parse_time(expires, "expires_at"),
                   _text(obj, "note") or "", _text(obj, "alert_id", limit=255), _text(obj, "source", limit=64) or "cli",
                   None if revoked is None else _parse_time(revoked, "revoked_at"), _text(obj, "revoked_by", limit=255))


class FeedbackSet:
    """Every verdict of a store (active, expired and revoked: ``list`` shows them all); ``at(now)``
    gives the matcher of those that apply now."""

    def __init__(self, entries: Iterable[FeedbackEntry] = (), source: str = "") -> None:
        self.entries: List[FeedbackEntry] = list(entries)
        self.source = source

    @classmethod
    def from_json(cls, rows: Iterable[Any], source: str = "") -> "FeedbackSet":
        """From the store's entries; an entry that does not parse is an error (the store writes
        only entries that do)."""
        return cls((FeedbackEntry.from_json(r) for r in rows), source)

    def digest(self) -> str:
        """What the verdicts that were given and not revoked amount to, as a short hash: the
        nightly job judges a day again when it changed since the day was judged (a verdict given
        later must reach the alerts of that day)."""
        import hashlib

        live = sorted((e.id, e.verdict, e.scope) for e in self.entries if e.revoked_at is None)
        return hashlib.sha256(json.dumps(live).encode()).hexdigest()[:16] if live else ""

    def get(self, vid: str) -> Optional[FeedbackEntry]:
        return next((e for e in self.entries if e.id == vid), None)

    def at(self, now: Optional[float] = None) -> Optional["ActiveFeedback"]:
        """The verdicts that apply at ``now`` (default: the clock), or None when none does.

        The scorer asks once per batch: the matcher is kept until the next expiry (or an earlier
        ``now``) changes what applies, so thousands of verdicts are indexed once, not per batch."""
        t = time.time() if now is None else now
        memo = self.__dict__.get("_memo")
        if memo is not None and memo[0] <= t < memo[1]:
            return memo[2]
        active = [e for e in self.entries if e.active(t)]
        until = min((e.expires_at for e in active if e.expires_at is not None), default=float("inf"))
        matcher = ActiveFeedback(active) if active else None
        self._memo = (t, until, matcher)
        return matcher

    def __len__(self) -> int:
        return len(self.entries)


class ActiveFeedback:
    """The verdicts that apply, indexed by (detector, content) for the flag rule's per-alert look-up."""

    def __init__(self, entries: Sequence[FeedbackEntry]) -> None:
        self.by_id = {e.id: e for e in entries}
        self._fp: Dict[Tuple[str, str], List[FeedbackEntry]] = {}
        self._confirmed: Dict[Tuple[str, str], List[FeedbackEntry]] = {}
        for e in entries:
            index = self._confirmed if e.verdict == CONFIRMED else self._fp
            for s in e.situations:
                bucket = index.setdefault((s.detector, s.content), [])
                if e not in bucket:
                    bucket.append(e)
        self._fp_detectors = frozenset(d for d, _ in self._fp)
        self._confirmed_detectors = frozenset(d for d, _ in self._confirmed)

    def reason(self, vid: str) -> str:
        e = self.by_id.get(vid)
        return e.reason() if e is not None else f"verdict {vid}"

    @staticmethod
    def _find(index: Mapping[Tuple[str, str], List[FeedbackEntry]], s: Situation) -> Optional[FeedbackEntry]:
        for e in index.get((s.detector, s.content), ()):
            if e.covers(s):
                return e
        return None

    def _situation(self, name: str, got: Tuple[float, Any, Any]) -> Optional[Situation]:
        part = got[2].feedback_situation(got[1])
        return None if part is None else Situation(name, *part)

    def match(self, scored: Mapping[str, Tuple[float, Any, Any]],
              flagged: Sequence[str]) -> Tuple[Optional[str], Optional[str]]:
        """(the false-positive verdict that suppresses this alert, the confirmed verdict it is
        the same situation as); at most one is set, confirmed first (a confirmed incident is
        never suppressed). ``scored``: detector -> (score, key, detector); ``flagged``: the
        detectors whose score flagged it."""
        if self._confirmed_detectors:
            for name, got in scored.items():
                if name in self._confirmed_detectors:
                    s = self._situation(name, got)
                    e = None if s is None else self._find(self._confirmed, s)
                    if e is not None:
                        return None, e.id
        if not flagged or not self._fp_detectors or any(n not in self._fp_detectors for n in flagged):
            return None, None
        first = None
        for name in flagged:
            s = self._situation(name, scored[name])
            e = None if s is None else self._find(self._fp, s)
            if e is None:
                return None, None
            first = first or e.id
        return first, None


def entry_json_line(entry: FeedbackEntry) -> str:
    """One entry as a JSON line (``feedback list --format jsonl``; what ``feedback import`` reads)."""
    return json.dumps(entry.to_json(), sort_keys=True, ensure_ascii=True)
