"""The one alert reader: every part of Mimizuku gets its alerts through ``iter_alerts``.

Sources it understands, alone or mixed in a list:

* a Wazuh ``alerts.json`` (one JSON alert per line) or any file of such lines, plain or gzip
  (detected by its magic bytes, so ``.json.gz`` archives and their intra-day parts work);
* a directory tree ``logs/alerts/YYYY/Mon/ossec-alerts-DD[-NNN].json[.gz]`` given as the Wazuh
  root (``/var/ossec``), its ``logs`` or its ``logs/alerts``, read in chronological order for a
  window of days;
* an indexer export: a ``_search`` response ``{"hits": {"hits": [{"_source": {...}}]}}`` (read
  as a stream, one hit at a time), a JSON array of alerts or hits, NDJSON lines of hits, or
  pretty-printed alerts (``jq . alerts.json``);
* a Wazuh indexer: an URL ``https://indexer:9200/wazuh-alerts-4.x-*`` or a
  :class:`mimizuku.sources.indexer.IndexerSource` (point in time + ``search_after``; the window goes
  into the query and is refined here);
* a dict, a list of dicts, any iterable of dicts or paths, a binary or text file object;
* a pandas DataFrame, nested (``pd.read_json(lines=True)``) or flat (``pd.json_normalize``).

Reading streams: memory does not grow with the size of a file (chunks of 1 MiB, gzip inflated
with a bounded output). Nothing bad stops a read: each skipped line is counted in a
``ReadStats`` by reason, damaged and unreadable files are listed, and the plugin's own events
are dropped (feedback-loop guard). Standard library only; ``orjson`` is used when installed.

Choices worth knowing:

* Bad lines. Lines of ``max_line_bytes`` (65536) or more without their newline are skipped as
  integratord skips them (``too_long``), without being held in memory. A line with invalid UTF-8
  is decoded with U+FFFD replacements and parsed again: kept if it then parses
  (``repaired_encoding``, among ``alerts``), else dropped (``bad_encoding``). A BOM, CRLF and NUL
  padding (left by a crash) around a line are tolerated; NaN/Infinity, lone surrogate escapes
  (orjson) and NUL inside a string are ``bad_json``, and so is a last line cut short (a file
  being written or truncated). Alerts nested deeper than ``MAX_DEPTH`` (64)
  are dropped (``too_deep``): consumers re-serialise and recurse.
* Documents (exports, arrays, pretty-printed alerts) are read as a stream with the standard
  library's ``raw_decode``, one element at a time: memory is bounded by the largest element,
  which may be ``DOC_ELEMENT_FACTOR`` x ``max_line_bytes`` (1 MiB); a bigger element, or broken
  JSON, ends that file (counted, file listed as damaged, what came before is kept). ``ijson``
  would do the same with a dependency; it is not needed.
* Day twins. Of a ``.json`` and its ``.json.gz``, the ``.gz`` is read when its gzip trailer
  says it holds exactly the ``.json`` (monitord finished but did not delete), else the ``.json``
  (the compression was interrupted). ``alerts.json`` is read only when it is neither a hard link
  to nor a copy of a day file; no inode is ever read twice in one read.
* Windows compare the alert's own wall-clock time with dates and naive datetimes (the clock the
  manager names its day files with) and its absolute time with aware datetimes. ``since`` is
  inclusive; a date ``until`` includes that day, a datetime ``until`` is exclusive. An alert
  without a readable timestamp is kept.
"""
from __future__ import annotations

import calendar
import codecs
import itertools
import json
import logging
import os
import re
import stat as stat_mod
import sys
import zlib
from collections.abc import Iterable as IterableABC
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from mimizuku.core.fields import is_alert, is_own_event
from mimizuku.core.fields import timestamp as alert_timestamp

__all__ = [
    "AlertSourceError",
    "ReadStats",
    "iter_alerts",
    "read_alerts",
    "parse_timestamp",
    "archive_files",
]

log = logging.getLogger(__name__)

#: integratord reads alerts.json with ``fgets(buf, OS_MAXSTR + 1)``, OS_MAXSTR = 65536: a line
#: is dropped when it does not fit with its newline, i.e. when its content is >= 65536 bytes.
MAX_LINE_BYTES = 65536
#: An element of a JSON document (a hit of an export) may be this many times a line's size
#: (pretty-printing inflates it); a bigger element ends the reading of that document.
DOC_ELEMENT_FACTOR = 16

#: Alerts nested deeper than this are refused (``too_deep``): Wazuh writes fewer than 10 levels,
#: and consumers (orjson.dumps stops at 255, recursive flatteners) must not meet a hostile one.
MAX_DEPTH = 64

_CHUNK = 1 << 20  # bytes handed to the parsers at a time; files are read in quarters of this
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUM = {m: i + 1 for i, m in enumerate(_MONTHS)}
# ossec-alerts-DD.json, then intra-day parts ossec-alerts-DD-001.json, -002 ... (printf "%.3d",
# so a part past 999 has four digits); monitord gzips each to .json.gz.
_DAY_FILE_RE = re.compile(r"ossec-alerts-(\d{2})(?:-(\d{3,}))?\.json(\.gz)?\Z")
_YEAR_RE = re.compile(r"\d{4}\Z")

PathLike = Union[str, "os.PathLike[str]"]
DateLike = Union[date, datetime, str]


class AlertSourceError(Exception):
    """The source cannot be read at all (missing, unreadable, not alerts, unsupported type)."""


@dataclass
class ReadStats:
    """What one read saw: counts by outcome, and the files that could not be read whole.

    ``lines`` (records, for non-line sources) = ``alerts`` + ``bad_json`` + ``too_long`` +
    ``too_deep`` + ``not_alert`` + ``bad_encoding`` + ``own_events`` + ``skipped_by_window``;
    blank lines are not counted. ``repaired_encoding`` lines are kept (among ``alerts``).
    ``damaged_files``: read in part (truncated or corrupt gzip, broken document, read error);
    ``unreadable_files``: not read at all (permission, vanished, FIFO in a tree, unlistable
    directory). ``bytes_read`` counts bytes as stored (compressed for gzip).
    """

    files: int = 0
    lines: int = 0
    alerts: int = 0
    bad_json: int = 0
    too_long: int = 0
    too_deep: int = 0
    not_alert: int = 0
    bad_encoding: int = 0
    repaired_encoding: int = 0
    own_events: int = 0
    skipped_by_window: int = 0
    duplicate_files: int = 0
    bytes_read: int = 0
    damaged_files: List[str] = field(default_factory=list)
    unreadable_files: List[str] = field(default_factory=list)

    @property
    def total_bad(self) -> int:
        """Lines dropped because they were not usable alerts (own events and window skips are
        deliberate, not bad)."""
        return self.bad_json + self.too_long + self.too_deep + self.not_alert + self.bad_encoding

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["total_bad"] = self.total_bad
        return d

    def __str__(self) -> str:
        parts = [f"{self.alerts} alerts from {self.lines} lines in {self.files} files"]
        skipped = [
            (self.bad_json, "bad JSON"),
            (self.too_long, "too long"),
            (self.too_deep, "too deeply nested"),
            (self.not_alert, "not alerts"),
            (self.bad_encoding, "bad encoding"),
            (self.own_events, "own events"),
            (self.skipped_by_window, "outside window"),
        ]
        s = ", ".join(f"{n} {what}" for n, what in skipped if n)
        if s:
            parts.append("skipped " + s)
        if self.repaired_encoding:
            parts.append(f"{self.repaired_encoding} repaired encoding")
        if self.duplicate_files:
            parts.append(f"{self.duplicate_files} duplicate files")
        for names, what in ((self.damaged_files, "damaged"), (self.unreadable_files, "unreadable")):
            if names:
                shown = ", ".join(_printable(n) for n in names[:3])
                more = f" (+{len(names) - 3} more)" if len(names) > 3 else ""
                parts.append(f"{len(names)} {what}: {shown}{more}")
        return "; ".join(parts)


def _printable(s: object) -> str:
    """A path or text made safe for one log line (control characters escaped)."""
    text = str(s)
    if text.isprintable():
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


# --- timestamps -------------------------------------------------------------------------------

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


def _parse_manual(s: Any) -> Optional[float]:
    """``parse_timestamp`` without ``datetime``: the epoch of each (hour, offset) is computed
    once and cached, the minutes and seconds are added (Python < 3.11, and odd forms)."""
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
    return _parse_manual(s)


def _wall_time(s: str) -> Optional[float]:
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
    t = _parse_manual(s)
    if t is None:
        return None
    try:
        return t + _tz_seconds(_split_tz(s)[1])
    except ValueError:
        return None


# --- windows ----------------------------------------------------------------------------------

def _today() -> date:
    return date.today()


def _as_point(value: DateLike, name: str) -> Union[date, datetime]:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return date.fromisoformat(text)
            if text.endswith(("Z", "z")):
                text = text[:-1] + "+00:00"
            m = re.search(r"([+-]\d{2})(\d{2})\Z", text)
            if m and len(text) > 19:
                text = text[: m.start()] + m.group(1) + ":" + m.group(2)
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"{name}={value!r} is not a date or datetime (use e.g. '2022-01-25' or "
                     f"'2022-01-25T12:00:00')")


def _day_after(p: Union[date, datetime]) -> date:
    return p + timedelta(days=1)


class _Window:
    """A time window: the days whose files to open and the bounds each alert must fall in.

    A bound from a date or a naive datetime is compared with the alert's own wall-clock time
    (what the manager wrote, the same clock that names the day files); an aware datetime is
    compared with the alert's absolute time. ``since`` is inclusive; ``until`` includes the whole
    day when it is a date and is exclusive when it is a datetime.
    """

    __slots__ = ("first_day", "last_day", "lo", "lo_wall", "hi", "hi_wall")

    def __init__(self) -> None:
        self.first_day: Optional[date] = None
        self.last_day: Optional[date] = None
        self.lo: Optional[float] = None
        self.lo_wall = True
        self.hi: Optional[float] = None
        self.hi_wall = True

    @property
    def active(self) -> bool:
        return self.lo is not None or self.hi is not None

    @staticmethod
    def _bound(p: Union[date, datetime]) -> Tuple[float, bool]:
        if isinstance(p, datetime):
            if p.tzinfo is not None and p.utcoffset() is not None:
                return p.timestamp(), False
            return calendar.timegm(p.timetuple()) + p.microsecond / 1e6, True
        return float(calendar.timegm(p.timetuple())), True

    @staticmethod
    def _local_date(p: Union[date, datetime], end: bool) -> date:
        if isinstance(p, datetime):
            if p.tzinfo is not None and p.utcoffset() is not None:
                p = p.astimezone()  # the manager's local days name the files
            if end:  # exclusive end: a window ending at midnight does not need that day
                p = p - timedelta(microseconds=1)
            return p.date()
        return p

    @classmethod
    def make(cls, days: Optional[int] = None, since: Optional[DateLike] = None,
             until: Optional[DateLike] = None) -> "_Window":
        w = cls()
        s = _as_point(since, "since") if since is not None else None
        u = _as_point(until, "until") if until is not None else None
        if days is not None:
            if isinstance(days, bool) or not isinstance(days, int) or days < 1:
                raise ValueError(f"days={days!r}: give a whole number of days >= 1")
            if s is not None:
                raise ValueError("give either days or since, not both")
        if u is not None:
            w.last_day = cls._local_date(u, end=isinstance(u, datetime))
            if isinstance(u, datetime):
                w.hi, w.hi_wall = cls._bound(u)
            else:
                w.hi, w.hi_wall = cls._bound(_day_after(u))
        elif days is not None:
            w.last_day = _today()
            w.hi, w.hi_wall = cls._bound(_day_after(w.last_day))
        if s is not None:
            w.first_day = cls._local_date(s, end=False)
            w.lo, w.lo_wall = cls._bound(s)
        elif days is not None:
            assert w.last_day is not None
            w.first_day = w.last_day - timedelta(days=days - 1)
            w.lo, w.lo_wall = cls._bound(w.first_day)
        if s is not None and u is not None and w.lo is not None and w.hi is not None \
                and w.lo_wall == w.hi_wall and w.lo >= w.hi:
            raise ValueError(f"since={since!r} is not before until={until!r}")
        return w

    def has_day(self, d: date) -> bool:
        if self.first_day is not None and d < self.first_day:
            return False
        if self.last_day is not None and d > self.last_day:
            return False
        return True

    def contains(self, alert: Dict[str, Any]) -> bool:
        """Whether an alert's time is inside; an alert without a readable time is kept (its file
        was selected by day already, and nothing better is known about it)."""
        ts = alert_timestamp(alert)
        if ts is None:
            return True
        if self.lo_wall or self.hi_wall:
            wall = _wall_time(ts)
            if wall is None:
                return True
        if not (self.lo_wall and self.hi_wall):
            utc = parse_timestamp(ts)
            if utc is None:
                return True
        if self.lo is not None:
            if (wall if self.lo_wall else utc) < self.lo:
                return False
        if self.hi is not None:
            if (wall if self.hi_wall else utc) >= self.hi:
                return False
        return True


# --- the archive tree -------------------------------------------------------------------------

def _alerts_dir(root: Path) -> Path:
    """``logs/alerts`` from the Wazuh root, from ``logs``, or itself."""
    if (root / "logs" / "alerts").is_dir():
        return root / "logs" / "alerts"
    if (root / "alerts").is_dir() and not (root / "alerts.json").exists():
        return root / "alerts"
    return root


def _scandir(path: Path, problems: Optional[List[str]]) -> List["os.DirEntry[str]"]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except OSError as e:
        if problems is None:
            raise AlertSourceError(f"cannot list {_printable(path)}: {e.strerror or e}") from e
        problems.append(str(path))
        log.warning("cannot list %s: %s", _printable(path), e.strerror or e)
        return []


def _is_dir(entry: "os.DirEntry[str]") -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _gzip_isize(path: Path) -> Optional[int]:
    """The uncompressed size mod 2**32 from a gzip trailer (last member), or None."""
    try:
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            tail = f.read(4)
    except OSError:
        return None
    return int.from_bytes(tail, "little") if len(tail) == 4 else None


def _pick_twin(plain: Optional[Path], gz: Optional[Path]) -> Path:
    """One file per day part: when both the ``.json`` and its ``.json.gz`` exist, read the
    archive if it holds exactly the plain file (gzip trailer size matches), else the plain file
    (the ``.gz`` is then an interrupted compression)."""
    if plain is None:
        assert gz is not None
        return gz
    if gz is None:
        return plain
    try:
        size = plain.stat().st_size
    except OSError:
        return gz
    return gz if _gzip_isize(gz) == size % (1 << 32) else plain


def _alerts_json_is_twin(base: Path, st: os.stat_result, day_inodes: set) -> bool:
    """Whether ``alerts.json`` is (a link to or a copy of) a day file of the tree.

    analysisd links it to the current day file; a copied tree (``cp -r``) may have turned the
    link into a copy, recognised by an equal size in the day files around its mtime.
    """
    if (st.st_dev, st.st_ino) in day_inodes:
        return True
    day = datetime.fromtimestamp(st.st_mtime).date()
    for d in (day, day - timedelta(days=1), day + timedelta(days=1)):
        month_dir = base / f"{d.year:04d}" / _MONTHS[d.month - 1]
        prefix = f"ossec-alerts-{d.day:02d}"
        try:
            entries = [e for e in os.scandir(month_dir) if e.name.startswith(prefix)]
        except OSError:
            continue
        for e in entries:
            if not _DAY_FILE_RE.match(e.name):
                continue
            try:
                est = e.stat()
            except OSError:
                continue
            if e.name.endswith(".gz"):
                if _gzip_isize(Path(e.path)) == st.st_size % (1 << 32) and st.st_size > 0:
                    return True
            elif est.st_size == st.st_size and st.st_size > 0:
                return True
    return False


def _archive_files(root: Path, window: _Window, problems: Optional[List[str]] = None) -> List[Path]:
    base = _alerts_dir(root)
    parts: Dict[Tuple[date, int], Dict[str, Path]] = {}
    day_inodes: set = set()  # of every plain day file, to recognise alerts.json by its link
    found = False
    entries = _scandir(base, None)
    for ydir in entries:
        if not _YEAR_RE.match(ydir.name) or not _is_dir(ydir):
            continue
        year = int(ydir.name)
        for mdir in _scandir(Path(ydir.path), problems):
            month = _MONTH_NUM.get(mdir.name)
            if month is None or not _is_dir(mdir):
                continue
            for f in _scandir(Path(mdir.path), problems):
                m = _DAY_FILE_RE.match(f.name)
                if m is None:
                    continue
                try:
                    d = date(year, month, int(m.group(1)))
                except ValueError:
                    continue
                found = True
                if not m.group(3):
                    try:
                        fst = f.stat()
                        day_inodes.add((fst.st_dev, fst.st_ino))
                    except OSError:
                        pass
                if not window.has_day(d):
                    continue
                key = (d, int(m.group(2)) if m.group(2) else 0)
                parts.setdefault(key, {})["gz" if m.group(3) else "json"] = Path(f.path)
    files = [_pick_twin(p.get("json"), p.get("gz")) for _, p in sorted(parts.items())]

    aj = base / "alerts.json"
    try:
        ast = aj.stat()
    except OSError:
        ast = None
    if ast is not None and stat_mod.S_ISREG(ast.st_mode):
        found = True
        if not _alerts_json_is_twin(base, ast, day_inodes) and \
                window.has_day(datetime.fromtimestamp(ast.st_mtime).date()):
            files.append(aj)
    if not found:
        raise AlertSourceError(
            f"no alert files in {_printable(base)}: expected YYYY/Mon/ossec-alerts-DD.json[.gz] "
            f"or alerts.json (give the Wazuh root, its logs or logs/alerts directory)")
    return files


def archive_files(root: PathLike, *, days: Optional[int] = None, since: Optional[DateLike] = None,
                  until: Optional[DateLike] = None) -> List[Path]:
    """The alert files a window selects under a Wazuh tree, oldest first.

    ``root`` is ``/var/ossec``, ``/var/ossec/logs`` or ``/var/ossec/logs/alerts``. Within a day
    the base file comes before its ``-001``, ``-002`` ... parts; ``alerts.json`` is left out when
    it is the hard link to (or a copy of) a day file, and comes last otherwise. Of a ``.json`` and
    its ``.json.gz`` only one is returned.
    """
    p = Path(os.fspath(root))
    if not p.is_dir():
        raise AlertSourceError(f"not a directory: {_printable(p)}")
    return _archive_files(p, _Window.make(days, since, until))


# --- JSON -------------------------------------------------------------------------------------

def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_std_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def _std_loads(data: Union[bytes, str]) -> Any:
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    return _std_decoder.decode(data)


def _json_loads() -> Callable[[Union[bytes, str]], Any]:
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency, the fallback is for odd installs
        return _std_loads
    return orjson.loads


class _DocError(Exception):
    pass


class _DocTooLong(Exception):
    pass


_DOC_WS = re.compile(r"[ \t\n\r\x00\ufeff]*")
_raw_decode = _std_decoder.raw_decode


def _may_continue(buf: str, e: json.JSONDecodeError) -> bool:
    """Whether a decode error can be the end of the buffer cutting a value short (read more)
    rather than invalid JSON: the error is at the end, or in a string still open there."""
    if e.msg.startswith("Unterminated string"):
        return True
    return len(buf) - e.pos < 16 or not buf[e.pos:].strip()


class _TextCursor:
    """A read position in a JSON text that arrives in chunks; keeps only the unread part."""

    __slots__ = ("chunks", "buf", "pos", "eof", "cap")

    def __init__(self, chunks: Iterator[str], cap: int) -> None:
        self.chunks = chunks
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.cap = cap

    def fill(self) -> bool:
        for nxt in self.chunks:
            self.buf = self.buf[self.pos:] + nxt
            self.pos = 0
            return True
        self.eof = True
        return False

    def peek(self) -> str:
        while True:
            self.pos = _DOC_WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def take(self, ch: str) -> None:
        if self.peek() != ch:
            raise _DocError(f"expected {ch!r}")
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                v, end = _raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.eof or not _may_continue(self.buf, e):
                    raise _DocError(f"invalid JSON: {e.msg}") from None
            except (ValueError, RecursionError) as e:
                raise _DocError(str(e)) from None
            else:
                # a number at the end of the buffer may continue in the next chunk
                if end < len(self.buf) or self.eof:
                    if end - self.pos > self.cap:
                        raise _DocTooLong()
                    self.pos = end
                    return v
            if len(self.buf) - self.pos > self.cap:
                raise _DocTooLong()
            self.fill()


# --- reading ----------------------------------------------------------------------------------

def _deeper_than(obj: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (iterative: no recursion to exhaust)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        if type(o) is dict:
            o = o.values()
        elif type(o) is not list:
            continue
        for v in o:
            if type(v) is dict or type(v) is list:
                stack.append((v, d + 1))
    return False


class _Export:
    """Marker: a record that is a whole indexer response, to be expanded into its hits."""


_EXPORT = _Export()
_SKIP = object()


def _is_frame(obj: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


class _Reader:
    """One read: the counters, the files already seen, and the parsers, shared by all sources."""

    def __init__(self, stats: ReadStats, window: _Window, include_own: bool, max_line_bytes: int,
                 bar: Any = None) -> None:
        self.stats = stats
        self.window = window
        self.windowed = window.active
        self.include_own = include_own
        self.max_line = max_line_bytes
        self.loads = _json_loads()
        self.bar = bar
        self.seen: set = set()

    # records -----------------------------------------------------------------------------

    def check(self, obj: Any, owned: bool) -> Any:
        """The alert to yield, ``None`` (counted as skipped) or ``_EXPORT``."""
        st = self.stats
        if not is_alert(obj):
            if type(obj) is dict:
                src = obj.get("_source")
                if type(src) is dict:
                    src = src if owned else dict(src)
                    if "id" not in src and "_id" not in src and "_id" in obj:
                        src["_id"] = obj["_id"]
                    obj = src
                    owned = True
                else:
                    hits = obj.get("hits")
                    if type(hits) is dict and type(hits.get("hits")) is list:
                        return _EXPORT
            if not is_alert(obj):
                st.not_alert += 1
                return None
        if "timestamp" not in obj and "@timestamp" in obj:
            if not owned:
                obj = dict(obj)
            obj["timestamp"] = obj["@timestamp"]
        if not self.include_own and is_own_event(obj):
            st.own_events += 1
            return None
        if self.windowed and not self.window.contains(obj):
            st.skipped_by_window += 1
            return None
        st.alerts += 1
        return obj

    def admit(self, obj: Any, owned: bool) -> Iterator[Dict[str, Any]]:
        """Count and yield one record (which may be an export holding many)."""
        a = self.check(obj, owned)
        if a is _EXPORT:
            hits = obj["hits"]["hits"]
            self.stats.lines += len(hits) - 1
            for hit in hits:
                b = self.check(hit, owned)
                if b is _EXPORT:  # an export inside an export: not an alert
                    self.stats.not_alert += 1
                elif b is not None:
                    yield b
        elif a is not None:
            yield a

    def records(self, objs: Iterable[Any], owned: bool) -> Iterator[Dict[str, Any]]:
        for obj in objs:
            self.stats.lines += 1
            yield from self.admit(obj, owned)

    def lazy(self, items: Iterable[Any]) -> Iterator[Dict[str, Any]]:
        """An iterable of unknown length: dicts are records, anything else a source."""
        for item in items:
            if isinstance(item, _RECORD_TYPES):
                self.stats.lines += 1
                yield from self.admit(item, False)
            else:
                for plan in _plan(item, self.window, self.stats.unreadable_files):
                    yield from self.run(plan)

    def run(self, plan: Tuple[Any, ...]) -> Iterator[Dict[str, Any]]:
        kind = plan[0]
        if kind == "file":
            yield from self.file(plan[1], plan[2])
        elif kind == "records":
            yield from self.records(plan[1], False)
        elif kind == "frame":
            yield from self.records(_frame_rows(plan[1]), True)
        elif kind == "stream":
            yield from self.stream(plan[1])
        elif kind == "lazy":
            yield from self.lazy(plan[1])
        elif kind == "indexer":  # mimizuku.sources.indexer: the window goes into the query, refined here
            w = self.window
            self.stats.files += 1
            yield from self.records(plan[1].read_window(w.lo, w.lo_wall, w.hi, w.hi_wall), True)

    # files -------------------------------------------------------------------------------

    def _unreadable(self, path: Path, why: str) -> None:
        self.stats.unreadable_files.append(str(path))
        log.warning("cannot read %s: %s", _printable(path), why)

    def _damaged(self, name: str, why: str) -> None:
        if name not in self.stats.damaged_files:
            self.stats.damaged_files.append(name)
        log.warning("damaged alert file %s: %s (kept what was read)", _printable(name), why)

    def file(self, path: Path, in_tree: bool) -> Iterator[Dict[str, Any]]:
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) \
            | getattr(os, "O_NOCTTY", 0)
        try:
            fd = os.open(path, flags)
        except FileNotFoundError:
            gz = path.with_name(path.name + ".gz")
            if in_tree and path.suffix == ".json" and gz.exists():
                # monitord compressed the day file between listing and reading
                yield from self.file(gz, in_tree)
            else:
                self._unreadable(path, "no longer exists")
            return
        except OSError as e:
            self._unreadable(path, e.strerror or str(e))
            return
        try:
            st = os.fstat(fd)
            if not stat_mod.S_ISREG(st.st_mode):
                os.close(fd)
                self._unreadable(path, "not a regular file")
                return
            key = (st.st_dev, st.st_ino)
            if key in self.seen:
                os.close(fd)
                self.stats.duplicate_files += 1
                return
            self.seen.add(key)
            os.set_blocking(fd, True)
            f = open(fd, "rb", buffering=0, closefd=True)
        except OSError as e:
            os.close(fd)
            self._unreadable(path, e.strerror or str(e))
            return
        self.stats.files += 1
        with f:
            yield from self.binary(self._raw_chunks(f, str(path)), str(path))

    def stream(self, f: Any) -> Iterator[Dict[str, Any]]:
        name = str(getattr(f, "name", "<stream>"))
        self.stats.files += 1
        yield from self.binary(self._raw_chunks(f, name), name)

    def _raw_chunks(self, f: Any, name: str) -> Iterator[bytes]:
        st = self.stats
        bar = self.bar
        while True:
            try:
                # a quarter: a gzip chunk inflates 10-20 times, in pieces of _CHUNK
                chunk = f.read(max(1, _CHUNK // 4))
            except OSError as e:
                self._damaged(name, f"read error: {e.strerror or e}")
                return
            if not chunk:
                return
            if isinstance(chunk, str):  # a text stream
                try:
                    chunk = chunk.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:
                    chunk = chunk.encode("utf-8", "replace")
            st.bytes_read += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
            yield chunk

    def _gunzip(self, chunks: Iterator[bytes], name: str) -> Iterator[bytes]:
        """Inflate gzip members one after the other, with bounded output per step."""
        d = zlib.decompressobj(31)
        started = False
        try:
            for data in chunks:
                while data:
                    if not started:
                        data = data.lstrip(b"\x00")  # padding after the last member
                        if not data:
                            break
                        started = True
                    out = d.decompress(data, _CHUNK)
                    if out:
                        yield out
                    if d.eof:
                        data = d.unused_data
                        d = zlib.decompressobj(31)
                        started = False
                    else:
                        data = d.unconsumed_tail
            if started:
                out = d.flush()
                if out:
                    yield out
                if not d.eof:
                    self._damaged(name, "truncated gzip")
        except zlib.error as e:
            self._damaged(name, f"corrupt gzip ({e})")

    def binary(self, chunks: Iterator[bytes], name: str) -> Iterator[Dict[str, Any]]:
        """Decide what the bytes are (gzip? lines or one document?) and read them."""
        chunks = iter(chunks)
        first = next(chunks, b"")
        chunks = itertools.chain((first,), chunks)
        if first[:2] == _GZIP_MAGIC:
            chunks = self._gunzip(chunks, name)
        # look at the start: enough to hold the first line, at most a few chunks
        head = b""
        for chunk in chunks:
            head += chunk
            if b"\n" in head or len(head) > _CHUNK:
                break
        else:
            chunks = iter(())
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            chunks = _utf16_to_utf8(itertools.chain((head,), chunks))
            head = next(chunks, b"")
        if head.startswith(_UTF8_BOM):
            head = head[3:]
        chunks = itertools.chain((head,), chunks)
        is_doc = self._is_document(head)
        first = head = b""  # do not hold the first chunk for the whole read
        if is_doc:
            yield from self.document(_utf8_text(chunks), name)
        else:
            yield from self.lines(chunks)

    def _is_document(self, head: bytes) -> bool:
        """JSON lines unless the first line is a whole array, or the opening of a multi-line
        (pretty-printed) value. A broken first line leaves the file to the tolerant line reader."""
        start = head.lstrip(b" \t\r\n\x00")
        if start[:1] not in (b"{", b"["):
            return False
        nl = start.find(b"\n")
        if nl < 0:
            if len(start) > _CHUNK:
                return True  # one giant line: an export or array on one line
            line = start.rstrip(b" \t\r\x00")
        else:
            line = start[:nl].rstrip(b" \t\r\x00")
        try:
            return isinstance(self.loads(line), list)
        except Exception:
            return line.endswith((b"{", b"[", b",", b":"))

    def lines(self, chunks: Iterable[bytes]) -> Iterator[Dict[str, Any]]:
        """The hot path: JSON lines, split in chunks, parsed with orjson."""
        st = self.stats
        loads = self.loads
        check = self.check
        maxlen = self.max_line
        rest = b""
        skipping = False
        for chunk in chunks:
            if skipping:
                nl = chunk.find(b"\n")
                if nl < 0:
                    continue
                chunk = chunk[nl + 1:]
                skipping = False
            if rest:
                chunk = rest + chunk
            lines = chunk.split(b"\n")
            rest = lines.pop()
            if len(rest) >= maxlen:
                st.lines += 1
                st.too_long += 1
                rest = b""
                skipping = True
            st.lines += len(lines)
            for line in lines:
                if len(line) >= maxlen:
                    st.too_long += 1
                    continue
                try:
                    obj = loads(line)
                except Exception:
                    obj = self._parse_slow(line)
                    if obj is _SKIP:
                        continue
                # counting openers costs a sixth of the parse; walking the object would cost more
                if line.count(b"{") + line.count(b"[") > MAX_DEPTH and _deeper_than(obj, MAX_DEPTH):
                    st.too_deep += 1
                    continue
                a = check(obj, True)
                if a is not None:
                    if a is _EXPORT:
                        yield from self.admit(obj, True)
                    else:
                        yield a
        if rest:  # the last line had no newline (a file being written, or truncated)
            st.lines += 1
            if len(rest) >= maxlen:
                st.too_long += 1
                return
            try:
                obj = loads(rest)
            except Exception:
                obj = self._parse_slow(rest)
                if obj is _SKIP:
                    return
            if _deeper_than(obj, MAX_DEPTH):
                st.too_deep += 1
                return
            yield from self.admit(obj, True)

    def _parse_slow(self, line: bytes) -> Any:
        """A line orjson refused: blank, BOM, NUL padding, bad UTF-8, or bad JSON (counted)."""
        st = self.stats
        s = line.strip(b" \t\r\n\x00")
        if s.startswith(_UTF8_BOM):
            s = s[3:].strip(b" \t\r\n\x00")
        if not s:
            st.lines -= 1  # blank lines are not counted
            return _SKIP
        if len(s) != len(line):
            try:
                return self.loads(s)
            except Exception:  # includes RecursionError from the stdlib fallback
                pass
        try:
            s.decode("utf-8")
        except UnicodeDecodeError:
            try:
                obj = self.loads(s.decode("utf-8", "replace"))
            except Exception:
                st.bad_encoding += 1
                return _SKIP
            st.repaired_encoding += 1
            return obj
        st.bad_json += 1
        return _SKIP

    def document(self, text: Iterator[str], name: str) -> Iterator[Dict[str, Any]]:
        """A JSON document (export, array, pretty-printed alerts), one element at a time."""
        st = self.stats
        cur = _TextCursor(text, self.max_line * DOC_ELEMENT_FACTOR)
        try:
            while True:
                c = cur.peek()
                if c == "":
                    return
                if c == "[":
                    cur.pos += 1
                    yield from self._doc_array(cur)
                elif c == "{":
                    yield from self._doc_object(cur)
                else:
                    raise _DocError("not a JSON object or array")
        except _DocTooLong:
            st.lines += 1
            st.too_long += 1
            self._damaged(name, f"a JSON element over {cur.cap} bytes")
        except _DocError as e:
            st.lines += 1
            st.bad_json += 1
            self._damaged(name, f"JSON document broken ({e})")

    def _doc_array(self, cur: _TextCursor) -> Iterator[Dict[str, Any]]:
        if cur.peek() == "]":
            cur.pos += 1
            return
        while True:
            v = cur.value()
            self.stats.lines += 1
            if _deeper_than(v, MAX_DEPTH):
                self.stats.too_deep += 1
            else:
                yield from self.admit(v, True)
            c = cur.peek()
            cur.pos += 1
            if c == "]":
                return
            if c != ",":
                raise _DocError("expected ',' or ']'")

    def _doc_object(self, cur: _TextCursor) -> Iterator[Dict[str, Any]]:
        """A top-level object: streams ``hits.hits``; any other object is one record."""
        cur.take("{")
        top: Dict[str, Any] = {}
        streamed = False
        if cur.peek() == "}":
            cur.pos += 1
        else:
            while True:
                key = cur.value()
                if not isinstance(key, str):
                    raise _DocError("object key is not a string")
                cur.take(":")
                if key == "hits" and cur.peek() == "{":
                    cur.pos += 1
                    if cur.peek() == "}":
                        cur.pos += 1
                    else:
                        while True:
                            k2 = cur.value()
                            cur.take(":")
                            if k2 == "hits" and cur.peek() == "[":
                                cur.pos += 1
                                streamed = True
                                yield from self._doc_array(cur)
                            else:
                                cur.value()
                            c = cur.peek()
                            cur.pos += 1
                            if c == "}":
                                break
                            if c != ",":
                                raise _DocError("expected ',' or '}'")
                else:
                    top[key] = cur.value()
                c = cur.peek()
                cur.pos += 1
                if c == "}":
                    break
                if c != ",":
                    raise _DocError("expected ',' or '}'")
        if not streamed:
            self.stats.lines += 1
            if _deeper_than(top, MAX_DEPTH):
                self.stats.too_deep += 1
            else:
                yield from self.admit(top, True)


def _utf8_text(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text from UTF-8 chunks (a character may straddle two chunks); bad bytes become U+FFFD."""
    dec = codecs.getincrementaldecoder("utf-8")("replace")
    for c in chunks:
        t = dec.decode(c)
        if t:
            yield t
    t = dec.decode(b"", True)
    if t:
        yield t


def _utf16_to_utf8(chunks: Iterator[bytes]) -> Iterator[bytes]:
    dec = codecs.getincrementaldecoder("utf-16")("replace")
    for c in chunks:
        t = dec.decode(c)
        if t:
            yield t.encode("utf-8")
    t = dec.decode(b"", True)
    if t:
        yield t.encode("utf-8")


# --- pandas -----------------------------------------------------------------------------------

def _frame_rows(df: Any, step: int = 5000) -> Iterator[Dict[str, Any]]:
    """Rows of a DataFrame as alert dicts: dotted columns nested again, missing values dropped."""
    pd = sys.modules["pandas"]
    missing = (pd.NaT, pd.NA) if hasattr(pd, "NA") else (pd.NaT,)
    cols = [str(c) for c in df.columns]
    paths = [c.split(".") if "." in c else None for c in cols]
    for start in range(0, len(df), step):
        part = df.iloc[start:start + step]
        for values in part.itertuples(index=False, name=None):
            row: Dict[str, Any] = {}
            made: set = set()
            for col, path, v in zip(cols, paths, values):
                v = _plain(v, missing)
                if v is _SKIP:
                    continue
                if path is None:
                    old = row.get(col)
                    if isinstance(old, dict) and isinstance(v, dict):
                        merged = dict(v)
                        merged.update(old)
                        row[col] = merged
                    else:
                        row[col] = v
                    continue
                node = row
                ok = True
                for k in path[:-1]:
                    nxt = node.get(k)
                    if nxt is None:
                        nxt = node[k] = {}
                        made.add(id(nxt))
                    elif not isinstance(nxt, dict):
                        ok = False
                        break
                    elif id(nxt) not in made:
                        nxt = node[k] = dict(nxt)  # never change a dict the frame holds
                        made.add(id(nxt))
                    node = nxt
                if ok:
                    node[path[-1]] = v
                else:
                    row[col] = v
            yield row


def _plain(v: Any, missing: Tuple[Any, ...]) -> Any:
    """A cell as a plain JSON-like value; ``_SKIP`` for a missing one (NaN, None, NaT, NA)."""
    if v is None or v is missing[0] or (len(missing) > 1 and v is missing[1]):
        return _SKIP
    t = type(v)
    if t is float:
        return _SKIP if v != v else v
    if t is str or t is int or t is bool or t is dict or t is list:
        if t is dict:
            return dict(v)  # the frame's object must not be changed by later nesting
        return v
    if isinstance(v, datetime):
        return v.isoformat()
    mod = t.__module__
    if mod == "numpy":
        if hasattr(v, "tolist"):
            v = v.tolist()
            if isinstance(v, float) and v != v:
                return _SKIP
            return v
    return v


# --- planning and the public entry points -----------------------------------------------------

_RECORD_TYPES = (dict, int, float, type(None))  # bool is an int


def _plan(source: Any, window: _Window, problems: List[str]) -> List[Tuple[Any, ...]]:
    """Check a source up front (so a bad path fails before anything is read) and list its parts."""
    if isinstance(source, dict):
        return [("records", [source])]
    if getattr(source, "is_indexer_source", False):
        return [("indexer", source)]
    if isinstance(source, str) and source[:8].lower().startswith(("http://", "https://")):
        from mimizuku.sources.indexer import IndexerSource

        return [("indexer", IndexerSource(source))]
    if isinstance(source, (str, os.PathLike)):
        return _plan_path(Path(os.fspath(source)), window, problems)
    if _is_frame(source):
        return [("frame", source)]
    if isinstance(source, (bytes, bytearray, memoryview)):
        raise AlertSourceError("unsupported alert source: bytes (pass a path, a file object, a dict "
                               "or a list of dicts)")
    if hasattr(source, "read"):
        return [("stream", source)]
    if isinstance(source, (list, tuple)):
        out: List[Tuple[Any, ...]] = []
        batch: List[Any] = []
        for item in source:
            if isinstance(item, _RECORD_TYPES):  # a scalar is a (bad) record, not a source
                batch.append(item)
                continue
            if batch:
                out.append(("records", batch))
                batch = []
            out.extend(_plan(item, window, problems))
        if batch:
            out.append(("records", batch))
        return out
    if isinstance(source, IterableABC):
        return [("lazy", source)]
    raise AlertSourceError(
        f"unsupported alert source type {type(source).__name__}: give a path (alerts.json, "
        f".json.gz, a Wazuh logs tree, an indexer export), a dict, a list or a pandas DataFrame")


def _plan_path(p: Path, window: _Window, problems: List[str]) -> List[Tuple[Any, ...]]:
    shown = _printable(p)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AlertSourceError(f"alert source does not exist: {shown}") from None
    except PermissionError:
        raise AlertSourceError(f"alert source not accessible (permission denied): {shown}") from None
    except OSError as e:
        raise AlertSourceError(f"alert source cannot be examined: {shown}: {e.strerror or e}") from None
    except ValueError:  # an embedded NUL
        raise AlertSourceError(f"alert source is not a valid path: {shown}") from None
    if stat_mod.S_ISDIR(st.st_mode):
        if not os.access(p, os.R_OK | os.X_OK):
            raise AlertSourceError(f"alert directory not readable (permission denied): {shown}")
        return [("file", f, True) for f in _archive_files(p, window, problems)]
    if not stat_mod.S_ISREG(st.st_mode):
        raise AlertSourceError(f"alert source is not a regular file or directory "
                               f"(FIFO, socket or device): {shown}")
    if not os.access(p, os.R_OK):
        raise AlertSourceError(f"alert file not readable (permission denied): {shown}")
    return [("file", p, False)]


def _progress_bar(plans: List[Tuple[Any, ...]]) -> Any:
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    total = 0
    for plan in plans:
        if plan[0] == "file":
            try:
                total += plan[1].stat().st_size
            except OSError:
                pass
    return tqdm(total=total or None, unit="B", unit_scale=True, unit_divisor=1024,
                file=sys.stderr, desc="reading alerts", leave=False)


def iter_alerts(source: Any, *, days: Optional[int] = None, since: Optional[DateLike] = None,
                until: Optional[DateLike] = None, stats: Optional[ReadStats] = None,
                include_own: bool = False, max_line_bytes: int = MAX_LINE_BYTES,
                progress: bool = False) -> Iterator[Dict[str, Any]]:
    """Yield the alerts of ``source`` one by one, skipping and counting what is not usable.

    ``days``/``since``/``until`` select a window: of a tree, only the day files inside are
    opened; of any source, alerts whose time is outside are skipped (``skipped_by_window``).
    ``days=N`` is the last N calendar days up to and including ``until`` (or today). Counts go
    to ``stats`` (pass one to read them afterwards). Paths are checked before this returns, so
    a missing or unreadable source raises ``AlertSourceError`` at the call, not mid-iteration.
    """
    if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int) or max_line_bytes < 2:
        raise ValueError(f"max_line_bytes={max_line_bytes!r}: give a number of bytes >= 2")
    window = _Window.make(days, since, until)
    if stats is None:
        stats = ReadStats()
    plans = _plan(source, window, stats.unreadable_files)
    return _generate(plans, window, stats, include_own, max_line_bytes, progress)


def _generate(plans: List[Tuple[Any, ...]], window: _Window, stats: ReadStats, include_own: bool,
              max_line_bytes: int, progress: bool) -> Iterator[Dict[str, Any]]:
    bar = _progress_bar(plans) if progress else None
    reader = _Reader(stats, window, include_own, max_line_bytes, bar)
    try:
        for plan in plans:
            yield from reader.run(plan)
    finally:
        if bar is not None:
            bar.close()


def read_alerts(source: Any, **kw: Any) -> Tuple[List[Dict[str, Any]], ReadStats]:
    """All alerts of ``source`` in a list, with the read's ``ReadStats`` (same options as
    ``iter_alerts``)."""
    stats = kw.pop("stats", None)
    if stats is None:
        stats = ReadStats()
    alerts = list(iter_alerts(source, stats=stats, **kw))
    return alerts, stats
