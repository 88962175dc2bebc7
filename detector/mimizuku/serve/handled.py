"""Which alerts the scorer already handled: what makes "exactly once" hold across retries and restarts.

A client that timed out keeps its alert in the spool although the scorer may have scored it; a
restart re-reads a few lines of alerts.json. Both hand an alert over twice. :func:`alert_key`
says when two alerts are the same one, and :class:`HandledIds` remembers the last ones handled,
in memory and in a journal on disk, so the second copy is dropped instead of scored again
(docs/serve.md, "Exactly once"). Kept apart from the pipeline that consults it because its
bounds and its on-disk format are a contract of their own.
"""
from __future__ import annotations

import collections
import hashlib
import os
from pathlib import Path
from typing import Deque, List, Optional

from mimizuku.core.atomic import write_all


class HandledIds:
    """The last ``window`` alert ids handled, in memory and in an append-only journal.

    Written after an alert's events went out and before it is acknowledged, read back at start:
    an alert handed over twice (a client that timed out and spooled it, a restart re-reading a
    few lines of alerts.json) is recognised and not scored again. Ids are kept as 64-bit hashes.

    Bounds: in memory, exactly the last ``window`` distinct ids (a set and a deque, the oldest
    evicted first); on disk, two generations: ``<journal>`` (fewer than ``window`` lines) and
    ``<journal>.1`` (the ``window`` before them). When the journal reaches ``window`` lines it is
    renamed to ``.1`` (replacing the older one) and a new one started: one ``rename()``, where
    rewriting the window (200,000 lines and an fsync, every 200,000 alerts) had stalled the
    scorer. At start both are read, so the last ``window`` ids are always known again.
    """

    def __init__(self, path: Optional[Path], window: int):
        self.path = path
        self.window = max(1, window)
        self._ids: set = set()
        self._order: Deque[int] = collections.deque()   # oldest first; O(1) eviction
        self._fd: Optional[int] = None
        self._lines = 0
        if path is not None:
            self._load()
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    @property
    def previous(self) -> Path:
        """The older generation of the journal."""
        return self.path.with_name(self.path.name + ".1")

    @staticmethod
    def digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")

    def _load(self) -> None:
        lines: List[bytes] = []
        for p in (self.previous, self.path):
            try:
                with open(p, "rb") as f:
                    got = f.read().split(b"\n")
            except FileNotFoundError:
                continue
            lines.extend(got)
            if p == self.path:
                self._lines = sum(1 for ln in got if ln)
        for ln in lines[-(2 * self.window):]:
            try:
                self._remember(int(ln, 16))
            except ValueError:
                continue

    def _remember(self, h: int) -> None:
        if h in self._ids:
            return
        self._ids.add(h)
        self._order.append(h)
        if len(self._order) > self.window:
            self._ids.discard(self._order.popleft())

    def __contains__(self, h: int) -> bool:
        return h in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, hashes: List[int]) -> None:
        if not hashes:
            return
        for h in hashes:
            self._remember(h)
        if self._fd is not None:
            write_all(self._fd, "".join(f"{h:016x}\n" for h in hashes).encode("ascii"))
            self._lines += len(hashes)
            if self._lines >= self.window:
                self._rotate()

    def _rotate(self) -> None:
        os.close(self._fd)
        self._fd = None
        os.replace(self.path, self.previous)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        self._lines = 0

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.fsync(self._fd)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
