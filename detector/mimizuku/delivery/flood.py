"""Flood control: a burst of look-alike anomalies becomes one event and one summary, not thousands.

A directory scan or a brute force makes the same detector flag the same kind of alert on the same
agent again and again. Each of those anomalies is real, but 10,000 Wazuh alerts saying the same
thing bury everything else. So anomalies are grouped by a *signature*::

    (agent, detector, normalised key)

where the normalised key is the rule id plus the *shape* of what the alert is about: for file
integrity the directory and the file name with digits and hex runs folded (``/tmp/x/a1b2.tmp`` and
``/tmp/x/c3d4.tmp`` look alike), for commands the program run (``/usr/bin/curl``), for the context
detector the rule and the source address. The first anomaly of a signature is sent at once and
opens a window (``window`` seconds, on the daemon's clock); later ones inside the window are
counted, not sent; when the window ends, one summary event carries the count and the first/last
alert times (``mimizuku.flood``). A signature that stays quiet for a window starts afresh.

Standard library only. Not thread-safe: the resident scorer owns it.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

#: Default window (seconds) and the most signatures tracked at once (oldest flushed beyond it).
DEFAULT_WINDOW = 60.0
DEFAULT_MAX_SIGNATURES = 10_000

_HEXRUN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{6,}(?![0-9A-Za-z])")
_DIGITS = re.compile(r"\d+")
_SPACES = re.compile(r"\s+")

Signature = Tuple[str, str, str]


def _hex(m: "re.Match[str]") -> str:
    run = m.group(0)
    return "<hex>" if any(c.isdigit() for c in run) else run  # "deadbeef"... but not "facade"


def path_shape(path: str) -> str:
    """A path with its variable parts folded: hex words -> ``<hex>``, digit runs -> ``#``.

    The directory is kept (it says *where*), the file name is reduced to its shape, so files a
    scanner or a dropper creates one after another share a signature, and ``/etc/shadow`` does not
    share one with ``/etc/passwd``.
    """
    path = path.strip()
    head, sep, name = path.rpartition("/")
    head = _DIGITS.sub("#", _HEXRUN.sub(_hex, head))
    name = _DIGITS.sub("#", _HEXRUN.sub(_hex, name))
    return f"{head}{sep}{name}"


def command_program(command: str) -> str:
    """The program of a command line (first word, without its arguments)."""
    words = _SPACES.split(command.strip(), 1)
    return words[0] if words and words[0] else "?"


def signature(record: Mapping[str, Any]) -> Signature:
    """(agent, detector, normalised key) of a scored record (docs/records.md)."""
    agent = record.get("agent") if isinstance(record.get("agent"), Mapping) else {}
    rule = record.get("rule") if isinstance(record.get("rule"), Mapping) else {}
    f = record.get("fields") if isinstance(record.get("fields"), Mapping) else {}
    who = str(agent.get("id") or agent.get("name") or "?")
    det = str(record.get("detector") or "?")
    rid = str(rule.get("id") or "?")
    if det == "files" and f.get("path"):
        key = f"{rid}|{path_shape(str(f['path']))}|{f.get('event') or ''}"
    elif det == "commands" and f.get("command"):
        key = f"{rid}|{command_program(str(f['command']))}|{f.get('user') or ''}"
    else:
        key = f"{rid}|{f.get('srcip') or ''}"
    return who, det, key


@dataclass
class _Burst:
    opened: float                      # daemon clock when the first anomaly was sent
    first_time: Optional[str]          # alert timestamps, as written
    last_time: Optional[str]
    count: int = 1                     # flagged alerts seen in the window, the first one included
    held: int = 0                      # of those, anomalies flood control held back (not repeats)
    last: Dict[str, Any] = field(default_factory=dict)   # the latest record counted after the first
    top_score: float = 0.0

    def add(self, record: Dict[str, Any], held: bool) -> None:
        """One more alert of the burst: an anomaly flood control holds back (``held``), or a
        repeat the repeats rule already held back."""
        self.count += 1
        self.held += held
        self.last_time = record.get("timestamp") or self.last_time
        self.last = record
        self.top_score = max(self.top_score, _score(record))


class FloodControl:
    """Decides, per anomaly, whether it is sent now; produces the summaries of suppressed ones.

    ``admit(record)`` -> list of records to send now (the record itself, or nothing when it is
    suppressed, plus summaries of windows that have ended). ``flush(now)`` -> summaries of windows
    that ended by ``now``; ``flush_all()`` at shutdown. ``window <= 0`` disables the control.
    Records that are not anomalies pass through untouched; ``count_repeat(record)`` counts a
    repeat of an open burst into its summary.
    """

    def __init__(self, window: float = DEFAULT_WINDOW, *, max_signatures: int = DEFAULT_MAX_SIGNATURES,
                 clock: Callable[[], float] = time.monotonic,
                 key: Callable[[Mapping[str, Any]], Signature] = signature):
        self.window = float(window)
        self.max_signatures = max_signatures
        self.clock = clock
        self.key = key
        self._bursts: Dict[Signature, _Burst] = {}
        self.suppressed = 0
        self.summaries = 0

    @property
    def enabled(self) -> bool:
        return self.window > 0

    def __len__(self) -> int:
        return len(self._bursts)

    def admit(self, record: Dict[str, Any]) -> List[Dict[str, Any]]:
        if not self.enabled or not record.get("anomaly"):
            return [record]
        now = self.clock()
        out = self.flush(now)
        sig = self.key(record)
        b = self._bursts.get(sig)
        if b is None:
            if len(self._bursts) >= self.max_signatures:
                oldest = next(iter(self._bursts))
                s = self._summary(oldest, self._bursts.pop(oldest))
                if s is not None:
                    out.append(s)
            self._bursts[sig] = _Burst(opened=now, first_time=record.get("timestamp"),
                                       last_time=record.get("timestamp"), top_score=_score(record))
            out.append(record)
            return out
        b.add(record, held=True)
        self.suppressed += 1
        return out

    def count_repeat(self, record: Dict[str, Any]) -> bool:
        """Count a repeat (``repeat_of``, not raised: the repeats rule already holds it back) in the
        open window of its signature, so the summary tells how many alerts the burst had and when
        it last fired, not only how many anomalies the repeats rule let through. Nothing is sent;
        a repeat with no open window is left alone. Returns whether it was counted."""
        if not self.enabled or record.get("anomaly") or not record.get("repeat_of"):
            return False
        b = self._bursts.get(self.key(record))
        if b is None:
            return False
        b.add(record, held=False)
        return True

    def flush(self, now: Optional[float] = None) -> List[Dict[str, Any]]:
        """Summaries of the windows that have ended (and forget those signatures)."""
        if not self._bursts:
            return []
        now = self.clock() if now is None else now
        out = []
        # insertion order == opening order, so the ended windows are at the front
        while self._bursts:
            sig = next(iter(self._bursts))
            b = self._bursts[sig]
            if now - b.opened < self.window:
                break
            del self._bursts[sig]
            s = self._summary(sig, b)
            if s is not None:
                out.append(s)
        return out

    def flush_all(self) -> List[Dict[str, Any]]:
        """Every pending summary now (graceful shutdown)."""
        out = []
        for sig, b in list(self._bursts.items()):
            s = self._summary(sig, b)
            if s is not None:
                out.append(s)
        self._bursts.clear()
        return out

    def _summary(self, sig: Signature, b: _Burst) -> Optional[Dict[str, Any]]:
        if b.count <= 1:
            return None
        rec = dict(b.last)
        repeats = b.count - 1 - b.held
        rec["flood"] = {"count": b.count, "suppressed": b.held, "repeats": repeats, "first": b.first_time,
                        "last": b.last_time, "window_s": int(round(self.window)),
                        "top_score_pct": int(round(100 * b.top_score))}
        agent = rec.get("agent") if isinstance(rec.get("agent"), Mapping) else {}
        name = agent.get("name") or agent.get("id") or "the manager"
        why = ", ".join(part for part in (f"{b.held} held back by flood control" if b.held else "",
                                          f"{repeats} repeats of a raised one" if repeats else "") if part)
        lead = (f"{b.count} similar {rec.get('detector')} anomalies on {name} between {b.first_time} and "
                f"{b.last_time} ({why}; {int(round(self.window))} s window)")
        rec["reasons"] = [lead] + [r for r in (rec.get("reasons") or []) if isinstance(r, str)]
        self.summaries += 1
        return rec


def _score(record: Mapping[str, Any]) -> float:
    try:
        return float(record.get("score") or 0.0)
    except (TypeError, ValueError):
        return 0.0


def flood_fields(record: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    """The ``flood`` block of a summary record (None for an ordinary record)."""
    f = record.get("flood")
    return dict(f) if isinstance(f, Mapping) else None
