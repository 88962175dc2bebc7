"""The Wazuh alert archive: its layout on disk, and the window of days a read selects from it.

The manager writes ``logs/alerts/YYYY/Mon/ossec-alerts-DD.json``, rotates it within the day to
``ossec-alerts-DD-001.json``, ``-002`` ... (``printf "%.3d"``, so a part past 999 has four digits),
and monitord gzips each to ``.json.gz``; ``alerts.json`` is analysisd's link to the current file.
``window_files`` lists the files a ``Window`` selects, oldest first; the reader and the partitions
of a distributed fit (``mimizuku.nightly.partitions``) both read the archive through it.

* Day twins. Of a ``.json`` and its ``.json.gz``, the ``.gz`` is read when its gzip trailer
  says it holds exactly the ``.json`` (monitord finished but did not delete), else the ``.json``
  (the compression was interrupted). ``alerts.json`` is read only when it is neither a hard link
  to nor a copy of a day file; no inode is ever read twice in one read (the reader sees to that).
* Windows compare the alert's own wall-clock time with dates and naive datetimes (the clock the
  manager names its day files with) and its absolute time with aware datetimes. ``since`` is
  inclusive; a date ``until`` includes that day, a datetime ``until`` is exclusive. An alert
  without a readable timestamp is kept.

Standard library only.
"""
from __future__ import annotations

import calendar
import logging
import os
import re
import stat as stat_mod
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from mimizuku.core.fields import timestamp as alert_timestamp
from mimizuku.sources.errors import AlertSourceError, printable
from mimizuku.sources.timestamps import parse_timestamp, wall_time

__all__ = [
    "Window", "archive_files", "window_files", "alerts_dir", "pick_twin", "alerts_json_is_twin",
    "MONTHS", "MONTH_NUMBERS", "DAY_FILE_RE", "YEAR_RE", "DateLike", "PathLike",
]

log = logging.getLogger(__name__)

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
MONTH_NUMBERS = {m: i + 1 for i, m in enumerate(MONTHS)}
# ossec-alerts-DD.json, then intra-day parts ossec-alerts-DD-001.json, -002 ... (printf "%.3d",
# so a part past 999 has four digits); monitord gzips each to .json.gz.
DAY_FILE_RE = re.compile(r"ossec-alerts-(\d{2})(?:-(\d{3,}))?\.json(\.gz)?\Z")
YEAR_RE = re.compile(r"\d{4}\Z")

PathLike = Union[str, "os.PathLike[str]"]
DateLike = Union[date, datetime, str]


# --- windows ----------------------------------------------------------------------------------

def today() -> date:
    """The day "the last N days" count back from: the one clock of archive windows (a seam for
    tests, and for a window anchored on another day)."""
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


class Window:
    """A time window: the days whose files to open and the bounds each alert must fall in.

    A bound from a date or a naive datetime is compared with the alert's own wall-clock time
    (what the manager wrote, the same clock that names the day files); an aware datetime is
    compared with the alert's absolute time. ``since`` is inclusive; ``until`` includes the whole
    day when it is a date and is exclusive when it is a datetime.

    ``Window.make(days, since, until)`` builds one; ``first_day``/``last_day`` select day files
    (``has_day``), ``lo``/``hi`` are the bounds in seconds, wall-clock when ``lo_wall``/``hi_wall``
    (what an indexer query is given), and ``contains`` tests an alert.
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
             until: Optional[DateLike] = None) -> "Window":
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
            w.last_day = today()
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
            wall = wall_time(ts)
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

def alerts_dir(root: Path) -> Path:
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
            raise AlertSourceError(f"cannot list {printable(path)}: {e.strerror or e}") from e
        problems.append(str(path))
        log.warning("cannot list %s: %s", printable(path), e.strerror or e)
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


def pick_twin(plain: Optional[Path], gz: Optional[Path]) -> Path:
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


def alerts_json_is_twin(base: Path, st: os.stat_result, day_inodes: set) -> bool:
    """Whether ``alerts.json`` is (a link to or a copy of) a day file of the tree.

    analysisd links it to the current day file; a copied tree (``cp -r``) may have turned the
    link into a copy, recognised by an equal size in the day files around its mtime.
    """
    if (st.st_dev, st.st_ino) in day_inodes:
        return True
    day = datetime.fromtimestamp(st.st_mtime).date()
    for d in (day, day - timedelta(days=1), day + timedelta(days=1)):
        month_dir = base / f"{d.year:04d}" / MONTHS[d.month - 1]
        prefix = f"ossec-alerts-{d.day:02d}"
        try:
            entries = [e for e in os.scandir(month_dir) if e.name.startswith(prefix)]
        except OSError:
            continue
        for e in entries:
            if not DAY_FILE_RE.match(e.name):
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


def window_files(root: Path, window: Window, problems: Optional[List[str]] = None) -> List[Path]:
    """The alert files ``window`` selects under the directory ``root``, as ``archive_files``.

    A year or month directory that cannot be listed is appended to ``problems`` and skipped (it
    raises ``AlertSourceError`` when ``problems`` is None); so does a tree without alert files.
    """
    base = alerts_dir(root)
    parts: Dict[Tuple[date, int], Dict[str, Path]] = {}
    day_inodes: set = set()  # of every plain day file, to recognise alerts.json by its link
    found = False
    entries = _scandir(base, None)
    for ydir in entries:
        if not YEAR_RE.match(ydir.name) or not _is_dir(ydir):
            continue
        year = int(ydir.name)
        for mdir in _scandir(Path(ydir.path), problems):
            month = MONTH_NUMBERS.get(mdir.name)
            if month is None or not _is_dir(mdir):
                continue
            for f in _scandir(Path(mdir.path), problems):
                m = DAY_FILE_RE.match(f.name)
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
    files = [pick_twin(p.get("json"), p.get("gz")) for _, p in sorted(parts.items())]

    aj = base / "alerts.json"
    try:
        ast = aj.stat()
    except OSError:
        ast = None
    if ast is not None and stat_mod.S_ISREG(ast.st_mode):
        found = True
        if not alerts_json_is_twin(base, ast, day_inodes) and \
                window.has_day(datetime.fromtimestamp(ast.st_mtime).date()):
            files.append(aj)
    if not found:
        raise AlertSourceError(
            f"no alert files in {printable(base)}: expected YYYY/Mon/ossec-alerts-DD.json[.gz] "
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
        raise AlertSourceError(f"not a directory: {printable(p)}")
    return window_files(p, Window.make(days, since, until))
