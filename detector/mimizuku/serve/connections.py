"""The scorer's clients on its socket: one :class:`Connection` each, and the limits that keep a
few clients from taking the daemon's memory or its door (issue 17 item 5).

The server's loop (:mod:`mimizuku.serve.server`) moves the bytes; what is bounded, and how, is
decided here:

* answers a client leaves unread stay in its ``wbuf``; past ``reply_cap`` bytes its requests are
  no longer read (the kernel's buffer then stops the client), and a client that stays past the
  cap for ``reply_stall_timeout`` seconds is disconnected -- 300,000 unread ``status`` answers had
  grown the daemon from 191 to 499 MiB;
* a connection with nothing asked and nothing owed for ``idle_timeout`` seconds is closed, and a
  new client past ``max_connections`` takes the place of the one idle the longest: 512 idle
  connections used to lock every new client out.
"""
from __future__ import annotations

import socket
from typing import Iterable, Optional


class Connection:
    """One client of the socket: its buffers and where it stands (read, answered, closed).

    ``last_active``: when it last sent a request or took an answer (monotonic seconds);
    ``over_cap_since``: since when its unread answers are past the cap (None: they are not)."""

    __slots__ = ("sock", "rbuf", "wbuf", "pending", "eof", "closing", "closed", "reading",
                 "last_active", "over_cap_since")

    def __init__(self, sock: socket.socket, now: float = 0.0):
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.pending = 0
        self.eof = False
        self.closing = False     # close once wbuf is flushed
        self.closed = False
        self.reading = True
        self.last_active = now
        self.over_cap_since: Optional[float] = None

    @property
    def idle(self) -> bool:
        """Nothing asked (no alert of it in flight) and nothing owed (no answer unsent); half a
        request line read does not count: a client that stops mid-line is idle too."""
        return self.pending == 0 and not self.wbuf

    def stalled(self, now: float, timeout: float) -> bool:
        """Its answers stayed past the cap for longer than ``timeout``."""
        return self.over_cap_since is not None and now - self.over_cap_since > timeout

    def idle_for(self, now: float, timeout: float) -> bool:
        """Idle for longer than ``timeout`` (0: never counts as idle too long)."""
        return timeout > 0 and self.idle and now - self.last_active > timeout


def longest_idle(conns: Iterable[Connection]) -> Optional[Connection]:
    """The idle connection that was active the longest time ago, or None when all are busy."""
    best: Optional[Connection] = None
    for c in conns:
        if not c.closed and c.idle and (best is None or c.last_active < best.last_active):
            best = c
    return best
