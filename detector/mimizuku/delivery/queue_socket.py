"""Delivering event datagrams to analysisd's queue socket without ever losing one.

analysisd listens on ``queue/sockets/queue`` (AF_UNIX, SOCK_DGRAM). When it is not there (socket
file missing), down (stale socket: connection refused), busy (send would block past our deadline)
or refuses the size (EMSGSIZE), the datagram is written to a spool directory and sent, in order,
before anything newer at the next opportunity (the next integration call or the resident scorer).
Each kind of failure is logged once when it starts and once when it ends, not once per event.

Standard library only.
"""
from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path
from typing import Optional

from mimizuku.core.logfn import LogFn, no_log
from mimizuku.core.spool import Spool, SpoolError
from mimizuku.delivery.failure_notice import FailureNotice

#: Seconds one send may block when the receiver's buffer is full (bounded further by a deadline).
DEFAULT_SEND_TIMEOUT = 2.0
#: Spooled items that the socket refuses as too large are renamed to this suffix (kept, not retried).
TOO_BIG_SUFFIX = ".toobig"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "socket missing (is wazuh-analysisd running?)"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (wazuh-analysisd is down)"
    if isinstance(exc, (socket.timeout, BlockingIOError)):
        return "send timed out (analysisd queue full)"
    if isinstance(exc, PermissionError):
        return "permission denied (run as user/group wazuh)"
    if isinstance(exc, OSError) and exc.errno == errno.EMSGSIZE:
        return "message too large for the socket"
    return f"{type(exc).__name__}: {exc}"


def _kind(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.errno:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    if isinstance(exc, socket.timeout):
        return "ETIMEDOUT"
    return type(exc).__name__


class QueueSink:
    """Sends datagrams to analysisd; what cannot be sent now waits in ``spool_dir`` (in order)."""

    def __init__(self, socket_path: "os.PathLike[str] | str", spool_dir: "os.PathLike[str] | str", *,
                 log: Optional[LogFn] = None, send_timeout: float = DEFAULT_SEND_TIMEOUT,
                 max_items: int = 1_000_000, drain_spool: bool = True):
        """``drain_spool=False``: the spool belongs to another sender (the resident scorer, which
        drains it): :meth:`flush` sends nothing, and :meth:`send` keeps a new event behind the
        waiting ones instead of sending those first."""
        self.socket_path = str(socket_path)
        self.drain_spool = drain_spool
        self.spool = Spool(spool_dir, max_items=max_items)
        self.log = log if log is not None else no_log
        self.send_timeout = send_timeout
        self.notice = FailureNotice(spool_dir, "queue", self.log)
        self._sock: Optional[socket.socket] = None
        self.sent = 0
        self.spooled = 0

    # -- socket ---------------------------------------------------------------------------------

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def __enter__(self) -> "QueueSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _timeout(self, deadline: Optional[float]) -> float:
        t = self.send_timeout
        if deadline is not None:
            t = min(t, deadline - time.monotonic())
        return max(0.01, t)

    def _deliver(self, message: bytes, deadline: Optional[float]) -> None:
        if deadline is not None and time.monotonic() >= deadline:
            raise socket.timeout("deadline reached before sending")
        if self._sock is None:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            try:
                s.settimeout(self._timeout(deadline))
                s.connect(self.socket_path)
            except BaseException:
                s.close()
                raise
            self._sock = s
        else:
            self._sock.settimeout(self._timeout(deadline))
        try:
            self._sock.send(message)
        except OSError as e:
            if e.errno == errno.EMSGSIZE:
                # The sender's buffer may just be small: grow it once, then give up on this size.
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, len(message) + 8192)
                try:
                    self._sock.send(message)
                    return
                except OSError:
                    pass
            self.close()  # a stale connection must not be reused
            raise

    # -- public API -----------------------------------------------------------------------------

    def pending(self) -> int:
        try:
            return len(self.spool)
        except SpoolError:
            return 0

    def _park(self, message: bytes) -> None:
        self.spool.put({"message": message.decode("utf-8", "replace")})
        self.spooled += 1

    def _failed(self, exc: BaseException) -> None:
        self.notice.failing(
            _kind(exc),
            f"cannot send events to {self.socket_path}: {_describe(exc)}; "
            f"events are kept in {self.spool.directory} and sent when it works again")

    def flush(self, deadline: Optional[float] = None, limit: Optional[int] = None) -> int:
        """Send spooled datagrams in order until done, a failure, the deadline or ``limit``.

        Returns how many were delivered. Items the socket refuses as too large are set aside as
        ``*.toobig`` (kept for inspection) so they cannot block the ones behind them.
        """
        n = 0
        if not self.drain_spool:
            return 0
        try:
            if not self.spool.paths():
                return 0
        except SpoolError:
            return 0  # nothing can have been kept there; send() reports the spool problem
        for path, item in self.spool.items():
            if limit is not None and n >= limit:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            msg = item.get("message") if isinstance(item, dict) else None
            if not isinstance(msg, str):
                self._set_aside(path, ".bad")
                continue
            try:
                self._deliver(msg.encode("utf-8", "replace"), deadline)
            except OSError as e:
                if e.errno == errno.EMSGSIZE:
                    self._set_aside(path, TOO_BIG_SUFFIX)
                    self.notice.failing("EMSGSIZE-item", f"an event in {self.spool.directory} is too large "
                                        f"for the queue socket; kept as *{TOO_BIG_SUFFIX}", "warning")
                    continue
                self._failed(e)
                return n
            self.spool.ack(path)
            n += 1
            self.sent += 1
        if n:
            self._recovered(n)
        return n

    def _recovered(self, resent: int) -> None:
        if self.notice.current() is not None:
            self.notice.recovered(f"queue {self.socket_path} reachable again; "
                                  f"{resent} kept event(s) sent, {self.pending()} still waiting")

    @staticmethod
    def _set_aside(path: Path, suffix: str) -> None:
        try:
            os.rename(path, path.with_suffix(suffix))
        except OSError:
            pass

    def send(self, message: bytes, deadline: Optional[float] = None) -> bool:
        """Deliver one datagram, after anything still waiting; keep it if that is not possible.

        Returns True when delivered now, False when it was spooled. Raises ``SpoolError`` only when
        it can neither be sent nor kept (the caller must report that as a real failure).
        """
        if self.pending():
            self.flush(deadline)
            if self.pending():
                self._park(message)
                return False
        try:
            self._deliver(message, deadline)
        except OSError as e:
            self._failed(e)
            self._park(message)
            return False
        self.sent += 1
        self._recovered(0)
        return True
