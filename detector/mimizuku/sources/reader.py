"""The one alert reader: every part of Mimizuku gets its alerts through ``iter_alerts``.

Sources it understands, alone or mixed in a list:

* a Wazuh ``alerts.json`` (one JSON alert per line) or any file of such lines, plain or gzip
  (detected by its magic bytes, so ``.json.gz`` archives and their intra-day parts work);
* a directory tree ``logs/alerts/YYYY/Mon/ossec-alerts-DD[-NNN].json[.gz]`` given as the Wazuh
  root (``/var/ossec``), its ``logs`` or its ``logs/alerts``, read in chronological order for a
  window of days (the layout, the day twins and the window: ``mimizuku.sources.archive``);
* an indexer export: a ``_search`` response ``{"hits": {"hits": [{"_source": {...}}]}}`` (read
  as a stream, one hit at a time), a JSON array of alerts or hits, NDJSON lines of hits, or
  pretty-printed alerts (``jq . alerts.json``) (``mimizuku.sources.decoding``);
* a Wazuh indexer: an URL ``https://indexer:9200/wazuh-alerts-4.x-*`` or a
  :class:`mimizuku.sources.indexer.IndexerSource` (point in time + ``search_after``; the window goes
  into the query and is refined here);
* a dict, a list of dicts, any iterable of dicts or paths, a binary or text file object;
* a pandas DataFrame, nested (``pd.read_json(lines=True)``) or flat (``pd.json_normalize``)
  (``mimizuku.sources.frames``).

Reading streams: memory does not grow with the size of a file (chunks of ``CHUNK_BYTES``, gzip
inflated with a bounded output). Nothing bad stops a read: each skipped line is counted in a
``ReadStats`` by reason, damaged and unreadable files are listed, and the plugin's own events
are dropped (feedback-loop guard). Standard library only; ``orjson`` is used when installed.

Bad lines. Lines of ``max_line_bytes`` (65536) or more without their newline are skipped as
integratord skips them (``too_long``), without being held in memory. A line with invalid UTF-8
is decoded with U+FFFD replacements and parsed again: kept if it then parses
(``repaired_encoding``; then counted as what it is, usually among ``alerts``), else dropped
(``bad_encoding``). A BOM, CRLF and NUL
padding (left by a crash) around a line are tolerated; NaN/Infinity, lone surrogate escapes
(orjson) and NUL inside a string are ``bad_json``, and so is a last line cut short (a file
being written or truncated). Alerts nested deeper than ``MAX_DEPTH`` (64) are dropped
(``too_deep``): consumers re-serialise and recurse.

A read is planned, then run: ``plan_source`` checks a source up front and lists its parts
("read plans": tuples whose first item is the kind, ``"file"``, ``"records"``, ``"frame"``,
``"stream"``, ``"lazy"`` or ``"indexer"``), ``read_plans`` reads them; ``iter_alerts`` does both,
and a distributed fit (``mimizuku.nightly.partitions``) ships plans to its workers.
``AlertSourceError``, ``ReadStats``, ``parse_timestamp`` and ``archive_files`` live in their own
modules and are importable from here too, as part of the reader's interface.
"""
from __future__ import annotations

import itertools
import logging
import os
import stat as stat_mod
import sys
import zlib
from collections.abc import Iterable as IterableABC
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple

from mimizuku.core.fields import is_alert, is_own_event
from mimizuku.sources import decoding
from mimizuku.sources.archive import DateLike, Window, archive_files, window_files
from mimizuku.sources.decoding import (
    DOC_ELEMENT_FACTOR,
    MAX_DEPTH,
    MAX_LINE_BYTES,
    DocumentError,
    DocumentTooLong,
    deeper_than,
    document_elements,
    raw_deeper_than,
    utf8_text,
    utf16_to_utf8,
)
from mimizuku.sources.errors import AlertSourceError, ReadStats, printable
from mimizuku.sources.frames import frame_rows, is_frame
from mimizuku.sources.timestamps import parse_timestamp

__all__ = [
    "AlertSourceError",
    "ReadStats",
    "iter_alerts",
    "read_alerts",
    "parse_timestamp",
    "archive_files",
    "plan_source",
    "read_plans",
    "MAX_LINE_BYTES",
    "CHUNK_BYTES",
]

log = logging.getLogger(__name__)

#: bytes handed to the parsers at a time; files are read in quarters of this
CHUNK_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"


class _Export:
    """Marker: a record that is a whole indexer response, to be expanded into its hits."""


_EXPORT = _Export()
_SKIP = object()


class _Reader:
    """One read: the counters, the files already seen, and the parsers, shared by all sources."""

    def __init__(self, stats: ReadStats, window: Window, include_own: bool, max_line_bytes: int,
                 bar: Any = None) -> None:
        self.stats = stats
        self.window = window
        self.windowed = window.active
        self.include_own = include_own
        self.max_line = max_line_bytes
        self.loads = decoding.json_loads()  # through the module: the parser can be swapped
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
                for plan in plan_source(item, self.window, self.stats.unreadable_files):
                    yield from self.run(plan)

    def run(self, plan: Tuple[Any, ...]) -> Iterator[Dict[str, Any]]:
        kind = plan[0]
        if kind == "file":
            yield from self.file(plan[1], plan[2])
        elif kind == "records":
            yield from self.records(plan[1], False)
        elif kind == "frame":
            yield from self.records(frame_rows(plan[1]), True)
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
        log.warning("cannot read %s: %s", printable(path), why)

    def _damaged(self, name: str, why: str) -> None:
        if name not in self.stats.damaged_files:
            self.stats.damaged_files.append(name)
        log.warning("damaged alert file %s: %s (kept what was read)", printable(name), why)

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
                # a quarter: a gzip chunk inflates 10-20 times, in pieces of CHUNK_BYTES
                chunk = f.read(max(1, CHUNK_BYTES // 4))
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
                    out = d.decompress(data, CHUNK_BYTES)
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
            if b"\n" in head or len(head) > CHUNK_BYTES:
                break
        else:
            chunks = iter(())
        if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
            chunks = utf16_to_utf8(itertools.chain((head,), chunks))
            head = next(chunks, b"")
        if head.startswith(_UTF8_BOM):
            head = head[3:]
        chunks = itertools.chain((head,), chunks)
        is_doc = self._is_document(head)
        first = head = b""  # do not hold the first chunk for the whole read
        if is_doc:
            yield from self.document(utf8_text(chunks), name)
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
            if len(start) > CHUNK_BYTES:
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
                if line.count(b"{") + line.count(b"[") > MAX_DEPTH and deeper_than(obj, MAX_DEPTH):
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
            if deeper_than(obj, MAX_DEPTH):
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
        if raw_deeper_than(s, MAX_DEPTH):
            st.too_deep += 1
            return _SKIP
        st.bad_json += 1
        return _SKIP

    def document(self, text: Iterator[str], name: str) -> Iterator[Dict[str, Any]]:
        """A JSON document (export, array, pretty-printed alerts), one element at a time."""
        st = self.stats
        cap = self.max_line * DOC_ELEMENT_FACTOR
        try:
            for v in document_elements(text, cap):
                st.lines += 1
                if deeper_than(v, MAX_DEPTH):
                    st.too_deep += 1
                else:
                    yield from self.admit(v, True)
        except DocumentTooLong:
            st.lines += 1
            st.too_long += 1
            self._damaged(name, f"a JSON element over {cap} bytes")
        except DocumentError as e:
            st.lines += 1
            st.bad_json += 1
            self._damaged(name, f"JSON document broken ({e})")


# --- planning and the public entry points -----------------------------------------------------

_RECORD_TYPES = (dict, int, float, type(None))  # bool is an int


def plan_source(source: Any, window: Window, problems: List[str]) -> List[Tuple[Any, ...]]:
    """Check a source up front (so a bad path fails before anything is read) and list its parts
    (read plans); files that cannot be read go to ``problems`` (a ``ReadStats.unreadable_files``)."""
    if isinstance(source, dict):
        return [("records", [source])]
    if getattr(source, "is_indexer_source", False):
        return [("indexer", source)]
    if isinstance(source, str) and source[:8].lower().startswith(("http://", "https://")):
        from mimizuku.sources.indexer import IndexerSource

        return [("indexer", IndexerSource(source))]
    if isinstance(source, (str, os.PathLike)):
        return _plan_path(Path(os.fspath(source)), window, problems)
    if is_frame(source):
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
            out.extend(plan_source(item, window, problems))
        if batch:
            out.append(("records", batch))
        return out
    if isinstance(source, IterableABC):
        return [("lazy", source)]
    raise AlertSourceError(
        f"unsupported alert source type {type(source).__name__}: give a path (alerts.json, "
        f".json.gz, a Wazuh logs tree, an indexer export), a dict, a list or a pandas DataFrame")


def _plan_path(p: Path, window: Window, problems: List[str]) -> List[Tuple[Any, ...]]:
    shown = printable(p)
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
        return [("file", f, True) for f in window_files(p, window, problems)]
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
    window = Window.make(days, since, until)
    if stats is None:
        stats = ReadStats()
    plans = plan_source(source, window, stats.unreadable_files)
    return read_plans(plans, window, stats, include_own, max_line_bytes, progress)


def read_plans(plans: List[Tuple[Any, ...]], window: Window, stats: ReadStats, include_own: bool,
              max_line_bytes: int, progress: bool) -> Iterator[Dict[str, Any]]:
    """The alerts of read plans (from ``plan_source``) in order, as one read: counts go to
    ``stats``, and a file met twice (same inode) is read once."""
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
