"""Tailing ``logs/alerts/alerts.json`` with a persisted bookmark, across relinks and rotations.

integratord seeks to the end of alerts.json when it starts, so alerts written while it was down
never reach an integration. ``mimizuku serve --follow`` reads the file itself, fail2ban-style:

* **Bookmark** ``(path, device, inode, first-line hash, offset, archive name)``, advanced only
  after a complete line has been *handled* (the caller commits a line's mark once its alert was
  scored and its event sent or kept), written atomically (temporary file + rename).
* **Rotation** is detected by inode (analysisd relinks alerts.json to a new day file at midnight,
  and to ``ossec-alerts-DD-001.json``... on intra-day rotation), by size (a file shorter than the
  bookmark was truncated) and by a hash of the first line (the same inode reused for other
  content). On a relink the rest of the old file is read to its end before the new one is started.
* **Restart**: when alerts.json is still the bookmarked file, reading resumes at the offset. When
  it was relinked while the daemon was down, the bookmarked file is found again under
  ``logs/alerts/YYYY/Mon/`` -- by its archive name or inode, or, once monitord has compressed it,
  as ``ossec-alerts-DD.json.gz`` by its first-line hash -- and read from the offset, followed by
  every later day file and rotation part, then alerts.json from its start.
* Lines of 64 KiB or more are skipped as integratord skips them (counted), without being held in
  memory; a partial last line is left for the next read (it is still being written).

Standard library only. The first start without a bookmark begins at the end of alerts.json (what
was there is history; ``from_start=True`` reads it too).
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mimizuku.core.atomic import write_atomic
from mimizuku.core.logfn import LogFn, no_log

#: integratord drops lines whose content is 65536 bytes or more; so do we.
MAX_LINE_BYTES = 65536
#: bytes read per system call
CHUNK = 1 << 20
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUM = {m: i + 1 for i, m in enumerate(MONTHS)}
_DAY_FILE = re.compile(r"^ossec-alerts-(\d{2})(?:-(\d{3}))?\.json(\.gz)?$")


class FollowError(OSError):
    """The followed file or its bookmark cannot be used."""


@dataclass
class Bookmark:
    """Where reading stands: the next byte to read of one file, and how to recognise that file."""

    path: str                          # the followed path (alerts.json)
    offset: int = 0
    dev: Optional[int] = None
    inode: Optional[int] = None
    first_line_hash: Optional[str] = None
    archive: Optional[str] = None      # "YYYY/Mon/ossec-alerts-DD[-NNN].json" under the alerts dir

    @classmethod
    def load(cls, path: "os.PathLike[str] | str") -> Optional["Bookmark"]:
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(65536).decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise FollowError(f"bookmark {path} is unreadable ({e}); move it away to start at the end") from e
        if not isinstance(data, dict) or not isinstance(data.get("path"), str) or \
                not isinstance(data.get("offset"), int) or data["offset"] < 0:
            raise FollowError(f"bookmark {path} is malformed; move it away to start at the end")
        known = {k: data.get(k) for k in ("path", "offset", "dev", "inode", "first_line_hash", "archive")}
        return cls(**known)

    def save(self, path: "os.PathLike[str] | str", fsync: bool = False) -> None:
        write_atomic(path, json.dumps(asdict(self), separators=(",", ":")).encode("utf-8"), mode=0o640, fsync=fsync)


def first_line_hash(head: bytes) -> Optional[str]:
    """SHA-1 of the first complete line (with its newline) of ``head``; None when there is none."""
    nl = head.find(b"\n", 0, MAX_LINE_BYTES)
    if nl < 0:
        return None
    return hashlib.sha1(head[: nl + 1]).hexdigest()


def _read_head_plain(fd: int) -> bytes:
    return os.pread(fd, MAX_LINE_BYTES, 0)


def _read_head_gz(path: str) -> bytes:
    try:
        with gzip.open(path, "rb") as g:
            return g.read(MAX_LINE_BYTES)
    except (OSError, EOFError, ValueError):
        return b""


def day_file_key(alerts_dir: Path, path: Path) -> Optional[Tuple[int, int, int, int]]:
    """(year, month, day, part) of ``<alerts_dir>/YYYY/Mon/ossec-alerts-DD[-NNN].json[.gz]``."""
    m = _DAY_FILE.match(path.name)
    if m is None:
        return None
    try:
        rel = path.relative_to(alerts_dir)
    except ValueError:
        return None
    if len(rel.parts) != 3 or not rel.parts[0].isdigit() or rel.parts[1] not in _MONTH_NUM:
        return None
    return int(rel.parts[0]), _MONTH_NUM[rel.parts[1]], int(m.group(1)), int(m.group(2) or 0)


def _archive_name(alerts_dir: Path, path: Path) -> str:
    """The archive name of a day file: relative to the alerts dir, without ``.gz``."""
    rel = str(path.relative_to(alerts_dir))
    return rel[:-3] if rel.endswith(".gz") else rel


def list_day_files(alerts_dir: Path) -> List[Tuple[Tuple[int, int, int, int], Path]]:
    """Every day file (plain or gzip; of twins the plain one), oldest first."""
    out: Dict[Tuple[int, int, int, int], Path] = {}
    try:
        years = [e for e in os.scandir(alerts_dir) if e.name.isdigit() and e.is_dir()]
    except OSError:
        return []
    for y in years:
        try:
            months = [e for e in os.scandir(y.path) if e.name in _MONTH_NUM and e.is_dir()]
        except OSError:
            continue
        for mo in months:
            try:
                files = list(os.scandir(mo.path))
            except OSError:
                continue
            for f in files:
                p = Path(f.path)
                k = day_file_key(alerts_dir, p)
                if k is None:
                    continue
                if k not in out or (out[k].name.endswith(".gz") and not p.name.endswith(".gz")):
                    out[k] = p  # twins: the plain file is the complete one until monitord deletes it
    return sorted(out.items())


class _Source:
    """One file being read: plain (followable, by fd) or gzip (archived, read to its end)."""

    def __init__(self, path: Path, offset: int, *, live: bool, gz: bool, archive: Optional[str]):
        self.path = path
        self.live = live
        self.gz = gz
        self.archive = archive
        self.offset = offset          # file offset of buf[0]
        self.buf = bytearray()
        self.pos = 0                  # start of the unread part of buf
        self.skipping = False         # inside a too-long line: drop bytes until its newline
        self.eof = False
        self.fd: Optional[int] = None
        self.gzf: Any = None
        self.dev: Optional[int] = None
        self.inode: Optional[int] = None
        self.first_hash: Optional[str] = None
        if gz:
            self.gzf = gzip.open(str(path), "rb")
            self.first_hash = first_line_hash(_read_head_gz(str(path)))
            if offset:
                self.gzf.seek(offset)
        else:
            self.fd = os.open(str(path), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            st = os.fstat(self.fd)
            self.dev, self.inode = st.st_dev, st.st_ino
            self.first_hash = first_line_hash(_read_head_plain(self.fd))
            os.lseek(self.fd, offset, os.SEEK_SET)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.gzf is not None:
            self.gzf.close()
            self.gzf = None

    def read_chunk(self) -> bytes:
        if self.gz:
            try:
                return self.gzf.read(CHUNK)
            except (OSError, EOFError, ValueError):
                return b""  # a damaged archive ends here (what was read is kept)
        return os.read(self.fd, CHUNK)

    def refresh_first_hash(self) -> None:
        if self.first_hash is None and self.fd is not None:
            self.first_hash = first_line_hash(_read_head_plain(self.fd))


#: A line's mark: (source serial, offset just past the line). Commit it once the line is handled.
Mark = Tuple[int, int]


class AlertFollower:
    """Returns complete lines of alerts.json (and of the files it was relinked away from).

    ``read(max_lines)`` -> list of ``(line bytes without newline, mark)``; ``commit(mark)`` once
    the line was handled (in order); ``save()`` persists the bookmark of the last committed mark.
    ``stats`` counts lines read, too-long lines skipped, rotations and truncations.
    """

    def __init__(self, path: "os.PathLike[str] | str", bookmark_file: "os.PathLike[str] | str", *,
                 alerts_dir: "Optional[os.PathLike[str] | str]" = None, from_start: bool = False,
                 log: Optional[LogFn] = None):
        self.path = Path(path)
        self.bookmark_file = Path(bookmark_file)
        self.alerts_dir = Path(alerts_dir) if alerts_dir is not None else self.path.parent
        self.from_start = from_start
        self.log = log or no_log
        self.stats = {"lines": 0, "too_long": 0, "rotations": 0, "truncations": 0, "partial_dropped": 0,
                      "catch_up_files": 0}
        self._serial = 0
        self._sources: Dict[int, _Source] = {}
        self._queue: List[Tuple[Path, bool, str]] = []   # later files to read before the live one
        self._cur: Optional[_Source] = None
        self._cur_id = 0
        self.bookmark: Optional[Bookmark] = None
        self._dirty = False
        self._started = False

    # -- opening ---------------------------------------------------------------------------------
    def _open(self, path: Path, offset: int, *, live: bool, gz: bool = False,
              archive: Optional[str] = None) -> None:
        src = _Source(path, offset, live=live, gz=gz, archive=archive)
        if live and archive is None:
            src.archive = self._archive_of(src)
        self._serial += 1
        self._cur, self._cur_id = src, self._serial
        self._sources[self._serial] = src

    def _archive_of(self, src: _Source) -> Optional[str]:
        """The day file the live file is a hard link to (same inode), searched in recent months."""
        for _, p in reversed(list_day_files(self.alerts_dir)[-200:]):
            if p.name.endswith(".gz"):
                continue
            try:
                st = os.stat(p)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (src.dev, src.inode):
                return _archive_name(self.alerts_dir, p)
        return None

    def start(self) -> None:
        """Decide where to read from: the bookmark, else the end (or start) of alerts.json."""
        self._started = True
        bm = Bookmark.load(self.bookmark_file)
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            st = None
        if bm is None:
            if st is None:
                return  # nothing yet: _ensure_open retries
            size = 0 if self.from_start else st.st_size
            self._open(self.path, size if not self.from_start else 0, live=True)
            if size and not self.from_start:
                self._align_to_line()
            self._commit_position(self._cur_id, self._cur.offset)
            self.log("info", f"following {self.path} from its {'start' if self.from_start else 'end'} "
                             f"(no bookmark yet)")
            return
        self.bookmark = bm
        if st is not None and (st.st_dev, st.st_ino) == (bm.dev, bm.inode):
            self._open(self.path, 0, live=True, archive=bm.archive)
            src = self._cur
            if st.st_size >= bm.offset and (bm.first_line_hash is None or src.first_hash == bm.first_line_hash):
                self._seek(src, bm.offset)
                self.log("info", f"resuming {self.path} at byte {bm.offset}")
                return
            self.stats["truncations"] += 1
            self.log("warning", f"{self.path} is shorter than the bookmark or its first line changed: "
                                "reading it from its start")
            self._seek(src, 0)
            return
        # alerts.json was relinked while we were down: finish the bookmarked file first
        old = self._find_old(bm)
        later_than = None
        if old is not None:
            path, gz, key = old
            later_than = key
            self._open(path, bm.offset, live=False, gz=gz, archive=_archive_name(self.alerts_dir, path))
            self.log("info", f"{self.path} was relinked while stopped: reading the rest of {path} "
                             f"from byte {bm.offset}")
        else:
            if bm.archive:
                later_than = day_file_key(self.alerts_dir, self.alerts_dir / bm.archive)
            self.log("warning", f"the bookmarked file ({bm.archive or 'inode %s' % bm.inode}) is gone: "
                                "alerts after its bookmark cannot be read")
        live_id = (st.st_dev, st.st_ino) if st is not None else None
        if later_than is not None:
            self._queue_later(later_than, live_id)
        self.stats["catch_up_files"] += len(self._queue) + (1 if old is not None else 0)
        if self._cur is None:
            self._next_source()

    def _queue_later(self, after: Tuple[int, int, int, int], live_id: Optional[Tuple[int, int]]) -> None:
        """Queue the day files after ``after`` and before the live one (which is read last)."""
        live_key = None
        files = list_day_files(self.alerts_dir)
        if live_id is not None:
            for key, p in files:
                if p.name.endswith(".gz"):
                    continue
                try:
                    pst = os.stat(p)
                except OSError:
                    continue
                if (pst.st_dev, pst.st_ino) == live_id:
                    live_key = key
        for key, p in files:
            if key <= after or (live_key is not None and key >= live_key):
                continue
            self._queue.append((p, p.name.endswith(".gz"), _archive_name(self.alerts_dir, p)))

    def _find_old(self, bm: Bookmark) -> Optional[Tuple[Path, bool, Tuple[int, int, int, int]]]:
        """The bookmarked file under the archive tree: by name, then inode, then first-line hash."""
        cands: List[Tuple[Tuple[int, int, int, int], Path]] = []
        if bm.archive:
            p = self.alerts_dir / bm.archive
            k = day_file_key(self.alerts_dir, p)
            if k is not None:
                cands += [(k, p), (k, Path(str(p) + ".gz"))]
        cands += list_day_files(self.alerts_dir)[-400:][::-1]
        seen = set()
        for key, p in cands:
            if p in seen:
                continue
            seen.add(p)
            if p.name.endswith(".gz"):
                if not p.exists() or bm.first_line_hash is None:
                    continue
                if first_line_hash(_read_head_gz(str(p))) == bm.first_line_hash:
                    return p, True, key
                continue
            try:
                st = os.stat(p)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (bm.dev, bm.inode):
                continue
            try:
                fd = os.open(str(p), os.O_RDONLY)
                try:
                    h = first_line_hash(_read_head_plain(fd))
                finally:
                    os.close(fd)
            except OSError:
                continue
            if bm.first_line_hash is None or h == bm.first_line_hash:
                return p, False, key
        return None

    def _next_source(self) -> bool:
        """Move to the next queued catch-up file, else to the live file from its start."""
        if self._queue:
            p, gz, arch = self._queue.pop(0)
            try:
                self._open(p, 0, live=False, gz=gz, archive=arch)
            except OSError as e:
                self.log("warning", f"cannot read {p}: {e}; skipped")
                return self._next_source()
            return True
        try:
            self._open(self.path, 0, live=True)
        except FileNotFoundError:
            self._cur = None
            return False
        return True

    def _seek(self, src: _Source, offset: int) -> None:
        src.offset = offset
        src.buf.clear()
        src.pos = 0
        src.skipping = False
        os.lseek(src.fd, offset, os.SEEK_SET)

    def _align_to_line(self) -> None:
        """Starting at the end of a file being written: begin after the last complete line."""
        src = self._cur
        size = src.offset
        if size == 0:
            return
        back = min(size, MAX_LINE_BYTES)
        tail = os.pread(src.fd, back, size - back)
        nl = tail.rfind(b"\n")
        self._seek(src, size - back + nl + 1 if nl >= 0 else size)

    # -- reading ---------------------------------------------------------------------------------
    def read(self, max_lines: int = 1000) -> List[Tuple[bytes, Mark]]:
        """Complete lines available now (at most ``max_lines``)."""
        if not self._started:
            self.start()
        out: List[Tuple[bytes, Mark]] = []
        while len(out) < max_lines:
            if self._cur is None and not self._next_source():
                break
            src = self._cur
            got = self._lines_from(src, max_lines - len(out), out)
            if got:
                continue
            # nothing more in this source right now
            if not src.live:
                self._finish(src, "end of archived file")
                self._next_source()
                continue
            if self._rotated(src, out):
                continue
            break
        self.stats["lines"] += len(out)
        return out

    def _lines_from(self, src: _Source, room: int, out: List[Tuple[bytes, Mark]]) -> int:
        """Move up to ``room`` complete lines into ``out``; 0 when no complete line is available."""
        n = 0
        buf = src.buf
        pos = src.pos          # buf[pos] is the byte at file offset src.offset
        sid = self._cur_id
        try:
            while n < room:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if pos:
                        del buf[:pos]   # compact once per chunk, not once per line
                        pos = 0
                    if len(buf) >= MAX_LINE_BYTES:  # too long: drop it, keep dropping to its newline
                        src.offset += len(buf)
                        buf.clear()
                        if not src.skipping:
                            src.skipping = True
                            self.stats["too_long"] += 1
                    data = src.read_chunk()
                    if not data:
                        return n
                    buf += data
                    continue
                line = buf[pos:nl]
                src.offset += nl + 1 - pos
                pos = nl + 1
                if src.skipping:
                    src.skipping = False
                    continue
                if len(line) >= MAX_LINE_BYTES:
                    self.stats["too_long"] += 1
                    continue
                if src.first_hash is None:
                    src.refresh_first_hash()
                out.append((line, (sid, src.offset)))
                n += 1
            return n
        finally:
            src.pos = pos

    def _rotated(self, src: _Source, out: List[Tuple[bytes, Mark]]) -> bool:
        """At the end of the live file: was it relinked, truncated or replaced? (then switch)"""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False  # between unlink and link at midnight: look again next time
        if (st.st_dev, st.st_ino) != (src.dev, src.inode):
            # read what the old file still got before the relink, then move on
            while self._lines_from(src, 1 << 30, out):
                pass
            self.stats["rotations"] += 1
            self.log("info", f"{self.path} now points to a new file (inode {st.st_ino}): "
                             f"switching after {src.offset} bytes of the old one")
            self._finish(src, "relinked")
            # more than one relink since the last look (rotation parts): read the skipped files too
            old_key = day_file_key(self.alerts_dir, self.alerts_dir / src.archive) if src.archive else None
            if old_key is not None:
                self._queue_later(old_key, (st.st_dev, st.st_ino))
                self.stats["catch_up_files"] += len(self._queue)
            self._next_source()
            return True
        if st.st_size < src.offset + len(src.buf) - src.pos:
            self.stats["truncations"] += 1
            self.log("warning", f"{self.path} was truncated ({st.st_size} < {src.offset}): reading it from its start")
            self._seek(src, 0)
            src.first_hash = first_line_hash(_read_head_plain(src.fd))
            return True
        if src.first_hash is not None and src.offset > 0:
            h = first_line_hash(_read_head_plain(src.fd))
            if h is not None and h != src.first_hash:
                self.stats["truncations"] += 1
                self.log("warning", f"the first line of {self.path} changed: reading it from its start")
                src.first_hash = h
                self._seek(src, 0)
                return True
        return False

    def _finish(self, src: _Source, why: str) -> None:
        left = len(src.buf) - src.pos
        if left and not src.skipping:
            self.stats["partial_dropped"] += 1
            self.log("warning", f"{src.path}: an incomplete last line ({left} bytes) was dropped ({why})")
        src.close()

    # -- bookmark --------------------------------------------------------------------------------
    def commit(self, mark: Mark) -> None:
        """The line ending at ``mark`` (and every line before it) has been handled."""
        self._commit_position(*mark)

    def _commit_position(self, serial: int, offset: int) -> None:
        src = self._sources.get(serial)
        if src is None:
            return
        self.bookmark = Bookmark(path=str(self.path), offset=offset, dev=src.dev, inode=src.inode,
                                 first_line_hash=src.first_hash, archive=src.archive)
        self._dirty = True
        # sources before this one are finished and fully committed: forget them
        for s in [s for s in self._sources if s < serial]:
            del self._sources[s]

    def save(self, fsync: bool = False) -> bool:
        """Persist the bookmark if it moved; True when written."""
        if not self._dirty or self.bookmark is None:
            return False
        self.bookmark.save(self.bookmark_file, fsync=fsync)
        self._dirty = False
        return True

    def close(self) -> None:
        for s in self._sources.values():
            s.close()
        self._sources.clear()
        self._cur = None
