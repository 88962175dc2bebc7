"""A durable, ordered spool directory: what could not be delivered now is kept for later.

Each item is one JSON file written atomically (temporary name, fsync, rename), named so that
lexical order is arrival order. Consumers drain it in order and delete an item only after it was
delivered, so a crash at any point loses nothing (an item may be delivered twice, never zero
times). Standard library only: the integration client uses it.
"""
from __future__ import annotations

import fcntl
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Tuple

from mimizuku.core.atomic import write_all

_SUFFIX = ".json"
#: held (``flock``, exclusive) in the spool root by the resident scorer for as long as it runs
OWNER_LOCK = "owner.lock"
_MISSING = object()
#: what ``Spool.load`` returns for an item that is gone or unreadable
MISSING = _MISSING
_seq = 0


class SpoolError(OSError):
    """The spool directory cannot be used (missing permissions, disk full...)."""


class Spool:
    """An ordered directory of pending JSON items.

    ``max_items`` bounds growth: beyond it ``put`` raises ``SpoolError`` rather than filling the
    disk silently (the caller must then fail loudly).
    """

    def __init__(self, directory: os.PathLike | str, *, max_items: int = 1_000_000, mode: int = 0o640):
        self.directory = Path(directory)
        self.max_items = max_items
        self.mode = mode

    def _ensure(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        except OSError as e:
            raise SpoolError(f"cannot create spool directory {self.directory}: {e.strerror}") from e

    def put(self, item: Any) -> Path:
        """Store one JSON-serialisable item; returns its file."""
        global _seq
        self._ensure()
        if self.max_items and len(self) >= self.max_items:
            raise SpoolError(f"spool {self.directory} is full ({self.max_items} items)")
        _seq = (_seq + 1) % 1_000_000
        name = f"{time.time_ns():020d}-{os.getpid():07d}-{_seq:06d}-{secrets.token_hex(3)}{_SUFFIX}"
        final = self.directory / name
        tmp = self.directory / (".tmp-" + name)
        data = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, self.mode)
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, final)
        except OSError as e:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise SpoolError(f"cannot write to spool {self.directory}: {e.strerror}") from e
        return final

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

    def items(self) -> Iterator[Tuple[Path, Any]]:
        """Pending items in arrival order. An unreadable item is moved aside as ``*.bad``."""
        for p in self.paths():
            obj = self.load(p)
            if obj is not _MISSING:
                yield p, obj

    @staticmethod
    def load(path: Path, loads: Callable[[bytes], Any] = lambda b: json.loads(b.decode("utf-8"))) -> Any:
        """One item's content; ``MISSING`` if another consumer took it or it was unreadable
        (then it is moved aside as ``*.bad`` so it cannot block the spool)."""
        try:
            with open(path, "rb") as f:
                return loads(f.read())
        except FileNotFoundError:
            return _MISSING
        except (OSError, ValueError):
            try:
                os.rename(path, path.with_suffix(".bad"))
            except OSError:
                pass
            return _MISSING

    @staticmethod
    def ack(path: Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

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
