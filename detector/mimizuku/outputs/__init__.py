"""Where scored records go after the detectors: SQL (``outputs.sql``) and syslog (``outputs.syslog``).

This package module holds what both sinks share: the error types a caller maps to exit codes,
timestamp parsing for Wazuh's formats, and bounding/cleaning of attacker-controlled text. It
imports only the standard library; each sink imports its own dependencies when it is imported.
"""
from __future__ import annotations

import hashlib
import os
import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional, Tuple

__all__ = [
    "OutputError",
    "OutputUnavailableError",
    "OutputDataError",
    "EX_TEMPFAIL",
    "EX_DATAERR",
    "EX_SOFTWARE",
    "parse_timestamp",
    "clean_text",
    "bound_text",
    "default_spool_dir",
]

#: sysexits codes the CLI can return for these errors.
EX_DATAERR = 65
EX_SOFTWARE = 70
EX_TEMPFAIL = 75


class OutputError(Exception):
    """A sink could not deliver. ``spooled`` says how many items were kept for the next run.

    ``destination`` is a printable name with any password masked; ``exit_code`` is what a
    command-line caller should exit with.
    """

    exit_code = EX_SOFTWARE

    def __init__(self, message: str, *, destination: str = "", spooled: int = 0, spool_dir: Optional[Path] = None):
        super().__init__(message)
        self.destination = destination
        self.spooled = spooled
        self.spool_dir = spool_dir
        self.counts: Optional[dict] = None  # what was delivered nonetheless, when the sink knows


class OutputUnavailableError(OutputError):
    """The destination is down, unreachable, locked or refuses our credentials.

    Transient by nature: what could not be written is in the spool and is written first on the
    next attempt.
    """

    exit_code = EX_TEMPFAIL


class OutputDataError(OutputError):
    """The destination rejected the data itself (schema mismatch, invalid value)."""

    exit_code = EX_DATAERR


# --- timestamps -------------------------------------------------------------------------------

# Python >= 3.11 parses "+0000", "Z" and long fractions itself.
_FAST_ISO = sys.version_info >= (3, 11)
_TS_RE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"
)


def parse_timestamp(value: Any) -> Optional[datetime]:
    """An aware UTC datetime from a Wazuh timestamp, or None when absent or unparseable.

    Accepts ``2022-01-25T00:06:19.000+0000`` (alerts.json), ``...Z`` (indexer exports),
    ``+00:00`` offsets, up to 9 fractional digits, epoch seconds (int/float) and datetimes
    (naive ones are taken as UTC). Never raises.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if not isinstance(value, str) or len(value) > 64:
        return None
    if _FAST_ISO and len(value) >= 19 and value[4] == "-" and value[7] == "-" and value[10] in "T " \
            and value[13] == ":" and value[16] == ":":
        try:  # C parser, 10x faster than the regex below; same results for these shapes
            dt = datetime.fromisoformat(value)
            # (year 1 with a positive offset, or 9999 with a negative one, is out of range in UTC)
            return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)
        except (ValueError, OverflowError):
            pass
    m = _TS_RE.match(value)
    if not m:
        return None
    y, mo, d, h, mi, s, frac, tz = m.groups()
    try:
        micro = int((frac or "0")[:6].ljust(6, "0"))
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s or 0), micro)
        if tz and tz not in ("Z", "z"):
            sign = -1 if tz[0] == "-" else 1
            digits = tz[1:].replace(":", "")
            off = timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
            if off >= timedelta(hours=24):
                return None
            dt = dt - sign * off
        return dt.replace(tzinfo=timezone.utc)
    except (ValueError, OverflowError):
        return None


# --- attacker-controlled text ------------------------------------------------------------------

_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def clean_text(value: Any) -> Optional[str]:
    """A str that always encodes to UTF-8: lone surrogates (possible from JSON ``\\ud800``)
    become U+FFFD. Non-strings become their ``str``; None stays None."""
    if value is None:
        return None
    s = value if isinstance(value, str) else str(value)
    if s.isascii():  # O(1) in CPython: the common case costs nothing
        return s
    return _SURROGATE_RE.sub("\ufffd", s)


def bound_text(value: Any, limit: int) -> Tuple[Optional[str], bool]:
    """``(text, truncated)``: the cleaned text cut to at most ``limit`` characters.

    A cut is deliberate and visible: the kept prefix ends with ``…[+N]`` where N is the number
    of characters dropped, so nobody mistakes it for the whole value.
    """
    if value is None:
        return None, False
    if type(value) is str and len(value) <= limit and value.isascii():
        return value, False
    s = clean_text(value)
    if len(s) <= limit:
        return s, False
    marker_len = len(f"…[+{len(s)}]")  # an upper bound of the marker's length
    keep = max(0, limit - marker_len)
    return s[:keep] + f"…[+{len(s) - keep}]", True


def default_spool_dir(kind: str, destination: str) -> Path:
    """Where a sink keeps undelivered items when the caller does not say.

    ``$MIMIZUKU_SPOOL_DIR`` (else ``./spool``) / ``<kind>-<hash of the destination>``: one spool
    per destination, so two databases never replay each other's rows.
    """
    base = Path(os.environ.get("MIMIZUKU_SPOOL_DIR") or "spool")
    digest = hashlib.sha1(destination.encode("utf-8", "replace")).hexdigest()[:12]
    return base / f"{kind}-{digest}"
