"""Wazuh and indexer timestamps read as epoch seconds, fast enough to call once per alert.

``parse_timestamp`` gives an alert's absolute time; ``wall_time`` its own wall-clock time counted
as if it were UTC, which is what the manager names its day files by, and so what a window's
dates and naive datetimes are compared with (``mimizuku.sources.archive.Window``). No
``strptime``: Python 3.11's ``fromisoformat`` where it reads the Wazuh forms, else a manual
parser that caches the epoch of each (hour, offset). Standard library only.
"""
from __future__ import annotations

import calendar
import re
import sys
from datetime import date, datetime, timezone
from typing import Any, Dict, Optional, Tuple

__all__ = ["parse_timestamp", "parse_timestamp_manual", "wall_time"]

_TS_BASE: Dict[str, float] = {}
_TS_CACHE_MAX = 100_000
_TS_HOUR_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2})\Z")
_TZ_RE = re.compile(r"([+-])(\d{2}):?(\d{2})\Z")


def _tz_seconds(tz: str) -> int:
    if tz == "" or tz == "Z" or tz == "z":
        return 0
    m = _TZ_RE.match(tz)
    if m is None:
        raise ValueError(tz)
    hh, mm = int(m.group(2)), int(m.group(3))
    if hh > 23 or mm > 59:
        raise ValueError(tz)
    secs = hh * 3600 + mm * 60
    return -secs if m.group(1) == "-" else secs


def _hour_base(hour: str, tz: str) -> float:
    """Epoch seconds of ``YYYY-MM-DDTHH:00:00`` at offset ``tz`` (cached per hour and offset)."""
    m = _TS_HOUR_RE.match(hour)
    if m is None:
        raise ValueError(hour)
    y, mo, d, h = (int(g) for g in m.groups())
    if h > 23:
        raise ValueError(hour)
    date(y, mo, d)  # raises for a day that does not exist
    base = float(calendar.timegm((y, mo, d, h, 0, 0)) - _tz_seconds(tz))
    if len(_TS_BASE) >= _TS_CACHE_MAX:
        _TS_BASE.clear()
    _TS_BASE[hour + tz] = base
    return base


def _split_tz(s: str) -> Tuple[int, str]:
    """Where the seconds end and which offset follows: ``Z``, ``+HHMM``, ``+HH:MM`` or none."""
    n = len(s)
    last = s[-1]
    if last == "Z" or last == "z":
        return n - 1, "Z"
    c = s[n - 5]
    if c == "+" or c == "-":
        return n - 5, s[n - 5:]
    c = s[n - 6]
    if (c == "+" or c == "-") and s[n - 3] == ":":
        return n - 6, s[n - 6:]
    return n, ""


def parse_timestamp_manual(s: Any) -> Optional[float]:
    """``parse_timestamp`` without ``datetime``: the epoch of each (hour, offset) is computed
    once and cached, the minutes and seconds are added (Python < 3.11, and odd forms). Public so
    that the two ways can be checked against each other."""
    try:
        if len(s) < 19:
            return None
        end, tz = _split_tz(s)
        hour = s[:13]
        base = _TS_BASE.get(hour + tz)
        if base is None:
            base = _hour_base(hour, tz)
        if s[13] != ":" or s[16] != ":":
            return None
        minutes = int(s[14:16])
        seconds = float(s[17:end])
        if not (0 <= minutes < 60 and 0.0 <= seconds < 61.0) or not s[17].isdigit():
            return None
        return base + minutes * 60 + seconds
    except (ValueError, IndexError, TypeError, OverflowError):
        return None


# Python 3.11's C ``fromisoformat`` reads every Wazuh form (``Z``, ``+0000``, any fraction) in
# about a quarter of the time of the manual parser; before 3.11 it reads none of them.
_FAST_ISO = sys.version_info >= (3, 11)
_fromisoformat = datetime.fromisoformat
_UTC = timezone.utc
_OFFSETS: Dict[Any, float] = {}


def parse_timestamp(s: Any) -> Optional[float]:
    """Epoch seconds of a Wazuh/indexer timestamp, or ``None`` for anything else.

    Accepts ``2026-11-20T10:15:02.123+0000``, ``...Z``, ``...+00:00``, any number of fraction
    digits or none, and no offset (then UTC). Anything shorter than ``YYYY-MM-DDTHH:MM:SS`` is
    refused. Called per alert while scoring, so no ``strptime``: well under 1 us on 3.11+.
    """
    if _FAST_ISO:
        try:
            if len(s) >= 19:
                d = _fromisoformat(s)
                if d.tzinfo is None:
                    d = d.replace(tzinfo=_UTC)
                return d.timestamp()
            return None
        except (ValueError, TypeError, OverflowError):
            pass
    return parse_timestamp_manual(s)


def wall_time(s: str) -> Optional[float]:
    """The alert's own wall-clock time, counted as if it were UTC (what naive bounds compare)."""
    if _FAST_ISO:
        try:
            if len(s) >= 19:
                d = _fromisoformat(s)
                tz = d.tzinfo
                if tz is None:
                    return d.replace(tzinfo=_UTC).timestamp()
                off = _OFFSETS.get(tz)
                if off is None:
                    if len(_OFFSETS) > 4096:
                        _OFFSETS.clear()
                    off = _OFFSETS[tz] = d.utcoffset().total_seconds()  # type: ignore[union-attr]
                return d.timestamp() + off
        except (ValueError, TypeError, OverflowError):
            pass
    t = parse_timestamp_manual(s)
    if t is None:
        return None
    try:
        return t + _tz_seconds(_split_tz(s)[1])
    except ValueError:
        return None
