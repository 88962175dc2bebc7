"""A durable, ordered spool directory: what could not be delivered now is kept for later.

Each item is one JSON file written atomically (temporary name, every byte written and checked,
fsync, rename), named so that lexical order is arrival order. Consumers drain it in order and
delete an item only after it was delivered, so a crash at any point loses nothing (an item may
be delivered twice, never zero times). An item that cannot be read is renamed ``*.bad`` and
logged, never deleted. Standard library only: the integration client uses it.

Bounds (issue 17 item 10): a spool holds at most ``max_items`` items and ``max_bytes`` bytes; past
either, ``put`` raises :class:`SpoolFull` (the caller keeps the item elsewhere or fails loudly).
The count and the bytes are kept in a small counter file, ``<spool>/.usage``, updated under its
own lock by ``put`` and ``ack`` in a few system calls: ``put`` no longer lists and sorts the
directory (389 ms per put at 100,000 items). The file is rebuilt by one scan when it is missing
or unreadable, and before ``put`` refuses an item, so a count left wrong by a crash (or a file
removed by hand) is corrected exactly when it matters.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple

from mimizuku.core.atomic import write_all

_SUFFIX = ".json"
#: held (``flock``, exclusive) in the spool root by the resident scorer for as long as it runs
OWNER_LOCK = "owner.lock"
_BAD_SUFFIX = ".bad"
_USAGE = ".usage"
_MISSING = object()
#: what ``Spool.load`` returns for an item that is gone or unreadable
MISSING = _MISSING
#: default bound of a spool's bytes (the items' JSON)
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
#: the largest item ``load`` reads: anyone in the group that writes the spool could otherwise
#: leave one file that fills the reader's memory (an alert the call keeps is at most 8 MiB)
MAX_ITEM_BYTES = 16 * 1024 * 1024
_seq = 0

_log = logging.getLogger("mimizuku.spool")

#: ``log(level, message)``: where a spool reports what it sets aside (default: the logging module)
LogFn = Callable[[str, str], None]


def _default_log(level: str, message: str) -> None:
    _log.log(logging.ERROR if level == "error" else logging.WARNING, "%s", message)


class SpoolError(OSError):
    """The spool directory cannot be used (missing permissions, disk full...)."""


class SpoolFull(SpoolError):
    """The spool reached its bound (items or bytes): the item was not taken."""


class UnstorableItem(SpoolError):
    """The item cannot be written as JSON (nested past the encoder, a value JSON cannot hold)."""


class _Usage:
    """The counter file ``<spool>/.usage``: "<items> <bytes>", fixed width, under ``flock``."""

    WIDTH = 20

    def __init__(self, directory: Path):
        self.directory = directory
        # group-writable like the spool itself: integratord's calls and the scorer share it
        self.fd = os.open(directory / _USAGE, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o660)
        self.rebuilt = False
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError:
            os.close(self.fd)
            raise

    def __enter__(self) -> "_Usage":
        return self

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)   # releases the lock

    def read(self) -> Tuple[int, int]:
        """(items, bytes), rebuilt by a scan when the file is new or unreadable."""
        raw = os.pread(self.fd, 2 * self.WIDTH + 2, 0)
        try:
            items, size = (int(x) for x in raw.split())
            if items >= 0 and size >= 0:
                return items, size
        except ValueError:
            pass
        return self.rescan()

    def write(self, items: int, size: int) -> None:
        text = f"{max(0, items):0{self.WIDTH}d} {max(0, size):0{self.WIDTH}d}\n".encode("ascii")
        if os.pwrite(self.fd, text, 0) != len(text):
            raise OSError("short write of the spool counter")

    def add(self, items: int, size: int) -> None:
        """Change the counts by what just happened (nothing when a scan counted it already)."""
        have_items, have_size = self.read()
        if not self.rebuilt:
            self.write(have_items + items, have_size + size)

    def rescan(self) -> Tuple[int, int]:
        """Count the items on disk (the only listing: at the first use and at the bound)."""
        items = size = 0
        with os.scandir(self.directory) as it:
            for entry in it:
                if entry.name.endswith(_SUFFIX) and not entry.name.startswith("."):
                    try:
                        size += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
                    items += 1
        self.write(items, size)
        self.rebuilt = True
        return items, size


def _forget(path: Path, size: int) -> None:
    """An item left the spool (delivered or set aside): take it off the counter."""
    try:
        with _Usage(path.parent) as usage:
            usage.add(-1, -size)
    except OSError:
        pass  # the counter is rebuilt at the bound; the item itself is gone either way


class Spool:
    """An ordered directory of pending JSON items.

    ``max_items`` and ``max_bytes`` bound growth: beyond either ``put`` raises :class:`SpoolFull`
    rather than filling the disk (the caller keeps the item elsewhere or fails loudly).
    ``log``: where unreadable items set aside as ``*.bad`` are reported.
    """

    def __init__(self, directory: os.PathLike | str, *, max_items: int = 1_000_000,
                 max_bytes: int = DEFAULT_MAX_BYTES, mode: int = 0o640, log: Optional[LogFn] = None):
        self.directory = Path(directory)
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.mode = mode
        self.log = log

    def _ensure(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as e:
            raise SpoolError(f"cannot create spool directory {self.directory}: {e.strerror}") from e

    def put(self, item: Any) -> Path:
        """Store one JSON-serialisable item; returns its file.

        Whole or not at all: every byte is written and the file's size checked before it gets
        its name, else the temporary file is removed and :class:`SpoolError` raised (a disk
        that fills up mid-write leaves no truncated item). :class:`SpoolFull` at the bounds,
        :class:`UnstorableItem` for an item JSON cannot hold: both are ``SpoolError`` s."""
        global _seq
        self._ensure()
        try:
            data = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (ValueError, TypeError, RecursionError) as e:
            raise UnstorableItem(f"cannot keep this item in spool {self.directory}: {type(e).__name__}: "
                                 f"{str(e)[:200]}") from None
        self._reserve(len(data))
        _seq = (_seq + 1) % 1_000_000
        name = f"{time.time_ns():020d}-{os.getpid():07d}-{_seq:06d}-{secrets.token_hex(3)}{_SUFFIX}"
        final = self.directory / name
        tmp = self.directory / (".tmp-" + name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
            try:
                write_all(fd, data)
                os.fsync(fd)
                written = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if written != len(data):
                raise OSError(f"{written} of {len(data)} bytes reached the disk")
            os.rename(tmp, final)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            _forget(final, len(data))   # give the reservation back
            raise SpoolError(f"cannot write to spool {self.directory}: {e.strerror or e}") from e
        return final

    def _reserve(self, size: int) -> None:
        """Count one more item of ``size`` bytes, or raise :class:`SpoolFull` (checked against
        a fresh scan first, so a stale counter never refuses an item that fits)."""
        try:
            with _Usage(self.directory) as usage:
                items, used = usage.read()
                if self._over(items, used, size):
                    if not usage.rebuilt:
                        items, used = usage.rescan()
                    if self._over(items, used, size):
                        what = (f"{items} items, at most {self.max_items}" if self.max_items and items >= self.max_items
                                else f"{used} bytes used, at most {self.max_bytes}; this item has {size}")
                        raise SpoolFull(f"spool {self.directory} is full ({what})")
                usage.write(items + 1, used + size)
        except SpoolError:
            raise
        except OSError:   # no counter file we may use (another user's): count by listing
            items = len(self.paths())
            if self.max_items and items >= self.max_items:
                raise SpoolFull(f"spool {self.directory} is full ({items} items, at most {self.max_items})") from None

    def _over(self, items: int, used: int, size: int) -> bool:
        return bool((self.max_items and items >= self.max_items) or
                    (self.max_bytes and used + size > self.max_bytes))

    def paths(self) -> list:
        try:
            names = [n for n in os.listdir(self.directory) if n.endswith(_SUFFIX) and not n.startswith(".")]
        except FileNotFoundError:
            return []
        except OSError as e:
            raise SpoolError(f"cannot read spool {self.directory}: {e.strerror}") from e
        return [self.directory / n for n in sorted(names)]

    def __len__(self) -> int:
        return len(self.paths())

    def usage(self) -> Tuple[int, int]:
        """(items, bytes) as the counter file says, without listing the directory."""
        self._ensure()
        try:
            with _Usage(self.directory) as usage:
                return usage.read()
        except OSError as e:
            raise SpoolError(f"cannot use spool {self.directory}: {e.strerror or e}") from e

    def items(self) -> Iterator[Tuple[Path, Any]]:
        """Pending items in arrival order. An unreadable item is moved aside as ``*.bad`` (logged)."""
        for p in self.paths():
            obj = self.load(p, log=self.log)
            if obj is not _MISSING:
                yield p, obj

    @staticmethod
    def load(path: Path, loads: Callable[[bytes], Any] = lambda b: json.loads(b.decode("utf-8")),
             log: Optional[LogFn] = None, quarantines: bool = False) -> Any:
        """One item's content; ``MISSING`` if another consumer took it or it was unreadable
        (then it is moved aside as ``*.bad``, and logged, so it cannot block the spool). An item
        that is whole but that ``loads`` cannot take (a RecursionError on JSON nested deeper than
        the parser goes) is set aside the same way, unless the caller ``quarantines`` alerts
        (``mimizuku.core.quarantine``: the integratord call, the scorer): then it is raised to it."""
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_ITEM_BYTES + 1)
            if len(data) > MAX_ITEM_BYTES:
                raise ValueError(f"over {MAX_ITEM_BYTES} bytes: not an item this spool wrote")
            return loads(data)
        except FileNotFoundError:
            return _MISSING
        except (OSError, ValueError) as e:   # unreadable, truncated, not JSON, too big
            Spool.set_aside_bad(path, log, f"unreadable ({type(e).__name__}: {str(e)[:200]})")
            return _MISSING
        except Exception as e:   # whole, but the decoder fails on it (too deep)
            if quarantines:
                raise
            Spool.set_aside_bad(path, log, f"cannot be decoded ({type(e).__name__}: {str(e)[:200]})")
            return _MISSING

    @staticmethod
    def set_aside_bad(path: Path, log: Optional[LogFn], why: str) -> Path:
        """Rename an item that cannot be handled to ``*.bad`` beside the others (out of the
        queue, where an operator finds it), and say so; returns where it is."""
        bad = path.with_suffix(_BAD_SUFFIX)
        say = log or _default_log
        try:
            size = os.stat(path).st_size
            os.rename(path, bad)
        except FileNotFoundError:
            return path
        except OSError as e:
            say("error", f"spool item {path} {why}; it cannot be renamed to {bad.name} "
                         f"({e.strerror or e}) and stays where it is")
            return path
        _forget(path, size)
        say("error", f"spool item {path} {why}: set aside as {bad}")
        return bad

    @staticmethod
    def ack(path: Path) -> None:
        """The item was delivered: delete it (and count it out)."""
        try:
            size = os.stat(path).st_size
            os.unlink(path)
        except FileNotFoundError:
            return
        _forget(path, size)

    def drain(self, deliver: Callable[[Any], None], limit: Optional[int] = None) -> Tuple[int, Optional[BaseException]]:
        """Deliver pending items in order; stop at the first failure (order is kept).

        Returns (delivered count, the exception that stopped it or None).
        """
        n = 0
        for p, obj in self.items():
            if limit is not None and n >= limit:
                break
            try:
                deliver(obj)
            except Exception as e:  # the item stays for the next attempt
                return n, e
            self.ack(p)
            n += 1
        return n, None


# --- who owns a spool ------------------------------------------------------------------------------
# The resident scorer drains ``<spool>/alerts`` and ``<spool>/events`` itself. An integratord call
# that flushed the event spool too would only compete with it, and while analysisd hangs each of
# its sends waits out its timeout: integratord, one call at a time, would crawl. So the scorer
# holds an exclusive flock on ``<spool>/owner.lock`` while it runs (the kernel drops it when the
# process ends, however it ends) and a call probes it without waiting.

def hold_owner(spool_root: "os.PathLike[str] | str") -> Optional[int]:
    """Take ownership of ``spool_root``: the descriptor holding the lock (keep it open while
    running; :func:`release_owner` or the end of the process lets go), or None when another live
    process holds it. Raises ``SpoolError`` when the lock file cannot be made."""
    root = Path(spool_root)
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o750)
        # 0644: empty, and the call (user wazuh) must be able to open it to probe a root scorer's lock
        fd = os.open(root / OWNER_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        raise SpoolError(f"cannot create {root / OWNER_LOCK}: {e.strerror or e}") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def release_owner(fd: Optional[int]) -> None:
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def owner_alive(spool_root: "os.PathLike[str] | str") -> bool:
    """True while a live process (the resident scorer) holds ``spool_root``'s owner lock. Never
    waits and never creates anything: no lock file, or one nobody holds, is False."""
    try:
        fd = os.open(Path(spool_root) / OWNER_LOCK, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also lets go of the shared lock just taken
    return False
