"""Delivering events through the Wazuh API (``POST /events``) when the scorer is not on the manager.

Same interface as :class:`~mimizuku.delivery.queue_socket.QueueSink` (``send``, ``flush``, ``pending``,
``close``), same spool format (``{"message": "1:<location>:<payload>"}``): every event is first
written to the on-disk spool, then sent from there in arrival order, in batches of at most 100
events, at most 30 requests in any sliding minute (:class:`RequestPacer`; Wazuh answers 429 above
that). A batch leaves the spool only for the events the server says it forwarded to analysisd;
what it could not forward, and everything when the API is down, answers 5xx/429, times out or
refuses our credentials, stays and is resent later, oldest first, after a backoff. So nothing is
lost; an event is sent twice only when an answer was lost in flight (read timeout).

Through the API the event text is just the JSON payload: the manager adds its own location
``API-Webhook``, so the ``1:<location>:`` prefix of the datagram is removed
(:func:`split_message`, which honours analysisd's ``|`` escapes) and the event is attached to the
manager, not to the source agent (the payload still names the agent in ``mimizuku.agent``).
"""
from __future__ import annotations

import collections
import os
import time
from pathlib import Path
from typing import Any, Callable, Deque, List, Optional, Tuple

from mimizuku.core.logfn import LogFn, no_log
from mimizuku.core.spool import MISSING, Spool, SpoolError
from mimizuku.delivery.events import split_location
from mimizuku.delivery.failure_notice import FailureNotice

#: ``POST /events`` limits (Wazuh API 4.6+: EventsIngestModel, MAX_REQUESTS_EVENTS_DEFAULT).
MAX_EVENTS_PER_REQUEST = 100
MAX_REQUESTS_PER_WINDOW = 30
#: The server counts requests in 60-second windows; one extra second keeps clock jitter harmless.
WINDOW_SECONDS = 61.0
#: Wazuh error codes of a failed item that resending cannot cure (1012: event too large).
PERMANENT_ITEM_ERRORS = frozenset({1012})
REJECTED_SUFFIX = ".rejected"


class MessageError(ValueError):
    """The bytes are not a ``<queue>:<location>:<payload>`` message."""


def split_message(message: bytes) -> Tuple[str, str, str]:
    """``(queue, location, payload)`` of an analysisd datagram; the location is unescaped.

    analysisd ends the location at the first ``:`` not escaped by ``|`` (``||`` is a ``|``,
    ``|:`` a ``:``), which is how :func:`mimizuku.delivery.events.escape_location` writes it.
    """
    text = message.decode("utf-8", "replace")
    if len(text) < 2 or text[1] != ":":
        raise MessageError("message does not start with '<queue>:'")
    try:
        location, payload = split_location(text[2:])
    except ValueError:
        raise MessageError("message has no ':' after its location") from None
    return text[0], location, payload


def api_event(message: bytes) -> str:
    """The text ``POST /events`` takes for a datagram ``QueueSink.send`` would get."""
    return split_message(message)[2]


class RequestPacer:
    """At most ``limit`` requests in any ``window`` seconds (a sliding window of send times)."""

    def __init__(self, limit: int = MAX_REQUESTS_PER_WINDOW, window: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        if limit < 1 or window <= 0:
            raise ValueError("limit must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self.clock = clock
        self._sent: Deque[float] = collections.deque()

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0] <= now - self.window:
            self._sent.popleft()

    def wait_time(self) -> float:
        """Seconds until one more request is allowed (0: now)."""
        now = self.clock()
        self._expire(now)
        if len(self._sent) < self.limit:
            return 0.0
        return max(0.0, self._sent[0] + self.window - now)

    def record(self) -> None:
        """Count one request (sent or attempted: the server counts refused ones too)."""
        now = self.clock()
        self._expire(now)
        self._sent.append(now)

    def in_window(self) -> int:
        self._expire(self.clock())
        return len(self._sent)


def _spooled_at(path: Path) -> Optional[float]:
    """When an item was spooled (epoch seconds), from its name (``<time_ns>-...``)."""
    try:
        return int(path.name.split("-", 1)[0]) / 1e9
    except ValueError:
        return None


class ApiEventSink:
    """Sends event datagrams as ``POST /events`` batches; keeps in ``spool_dir`` what is not accepted.

    ``api`` is a :class:`mimizuku.delivery.wazuh_api.WazuhAPI` (or anything with ``send_events``).
    A batch goes out when ``batch_size`` events wait or the oldest has waited ``linger``
    seconds, and the pacer allows it. ``send`` never sleeps: when it may not send now, the event
    waits in the spool for a later ``send`` or ``flush``.
    """

    def __init__(self, api: Any, spool_dir: "os.PathLike[str] | str", *, log: Optional[LogFn] = None,
                 batch_size: int = MAX_EVENTS_PER_REQUEST, linger: float = 1.0,
                 pacer: Optional[RequestPacer] = None, max_items: int = 1_000_000,
                 retry_base: float = 2.0, retry_max: float = 300.0, auth_retry: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time):
        if not 1 <= batch_size <= MAX_EVENTS_PER_REQUEST:
            raise ValueError(f"batch_size must be 1..{MAX_EVENTS_PER_REQUEST}")
        self.api = api
        self.spool = Spool(spool_dir, max_items=max_items)
        self.log = log if log is not None else no_log
        self.batch_size = batch_size
        self.linger = linger
        self.pacer = pacer if pacer is not None else RequestPacer(clock=clock)
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.auth_retry = auth_retry
        self.clock = clock
        self.wall = wall
        self.notice = FailureNotice(spool_dir, "api", self.log)
        self.retry_at = 0.0          # monotonic time before which nothing is attempted (backoff)
        self.failures = 0            # consecutive failed requests (for the backoff)
        self.single = 0              # after a 400 on a batch: send this many one at a time (find the bad one)
        self.sent = 0
        self.spooled = 0
        self.requests = 0

    # -- the QueueSink interface ------------------------------------------------------------------

    def pending(self) -> int:
        try:
            return len(self.spool)
        except SpoolError:
            return 0

    def send(self, message: bytes, deadline: Optional[float] = None) -> bool:
        """Keep one datagram, then send what is due. True when this event was accepted during the call.

        Raises ``SpoolError`` only when the event can neither be kept nor sent.
        """
        try:
            path = self.spool.put({"message": message.decode("utf-8", "replace")})
        except SpoolError:
            if self._send_direct(message):
                return True
            raise
        self.spooled += 1
        self.flush(deadline)
        if path.exists():
            return False
        self.spooled -= 1
        return True

    def flush(self, deadline: Optional[float] = None, limit: Optional[int] = None, *, force: bool = False) -> int:
        """Send due batches in order until the spool is empty, not due, paced, failing, ``deadline`` or
        ``limit``. ``force`` ignores the linger (send even a small batch now). Returns events accepted."""
        n = 0
        while True:
            if limit is not None and n >= limit:
                break
            now = self.clock()
            if deadline is not None and now >= deadline:
                break
            if now < self.retry_at or self.pacer.wait_time() > 0:
                break
            try:
                paths = self.spool.paths()
            except SpoolError:
                break
            if not paths:
                break
            if not force and len(paths) < self.batch_size and not self._lingered(paths[0]):
                break
            size = 1 if self.single else self.batch_size
            if limit is not None:
                size = min(size, limit - n)
            batch = self._load(paths[: size + 8], size)
            if not batch:
                continue  # everything in reach was unreadable and set aside: look again
            accepted, ok = self._post(batch)
            n += accepted
            if not ok:
                break
        return n

    def close(self) -> None:
        """Send what may be sent right now (pacer permitting); the rest stays in the spool."""
        try:
            self.flush(self.clock() + 5.0, force=True)
        finally:
            close = getattr(self.api, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "ApiEventSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _lingered(self, oldest: Path) -> bool:
        t = _spooled_at(oldest)
        return t is None or self.wall() - t >= self.linger

    def _load(self, paths: List[Path], size: int) -> List[Tuple[Path, str]]:
        batch: List[Tuple[Path, str]] = []
        for p in paths:
            if len(batch) >= size:
                break
            item = Spool.load(p)
            if item is MISSING:
                continue
            msg = item.get("message") if isinstance(item, dict) else None
            try:
                if not isinstance(msg, str):
                    raise MessageError("spool item without a message")
                event = api_event(msg.encode("utf-8"))
            except MessageError as e:
                self._set_aside(p, ".bad", f"spooled item {p.name} is not an event ({e}); kept as *.bad")
                continue
            batch.append((p, event))
        return batch

    def _post(self, batch: List[Tuple[Path, str]]) -> Tuple[int, bool]:
        from mimizuku.delivery.wazuh_api import (
            ApiError,
            AuthenticationFailed,
            BadRequest,
            Forbidden,
            RateLimited,
            TlsError,
        )

        self.pacer.record()
        self.requests += 1
        try:
            result = self.api.send_events([e for _, e in batch], retries=0)
        except BadRequest as e:
            if len(batch) > 1:
                self.single = len(batch)   # find the event the server refuses, one at a time
                self._backoff(0.0)
                self.log("warning", f"the API refused a batch of {len(batch)} events ({e}); "
                                    f"sending them one at a time to find the bad one")
                return 0, False
            self.single = max(0, self.single - 1)
            self._set_aside(batch[0][0], REJECTED_SUFFIX,
                            f"the API refused an event ({e}); kept in {self.spool.directory} as *{REJECTED_SUFFIX}")
            return 0, True
        except ApiError as e:
            kind = type(e).__name__
            if isinstance(e, (AuthenticationFailed, Forbidden, TlsError)):
                self._backoff(self.auth_retry)
            elif isinstance(e, RateLimited):
                self._backoff(e.retry_after if e.retry_after is not None else self.pacer.window / 2)
            else:
                self._backoff(None)
            self.notice.failing(kind, f"cannot send events through the Wazuh API: {e}; events are kept in "
                                      f"{self.spool.directory} and sent when it works again")
            return 0, False
        if self.single and len(batch) == 1:
            self.single -= 1
        accepted = 0
        for i in result.accepted:
            Spool.ack(batch[i][0])
            accepted += 1
        transient = False
        for i, code, msg in result.failed:
            if code in PERMANENT_ITEM_ERRORS:
                self._set_aside(batch[i][0], REJECTED_SUFFIX,
                                f"analysisd cannot take an event (error {code}: {msg}); kept as *{REJECTED_SUFFIX}")
            else:
                transient = True
        self.sent += accepted
        if transient:
            self._backoff(None)
            self.notice.failing("partial", f"the API forwarded {accepted} of {len(batch)} events "
                                           f"({result.failed[0][2] or 'no reason given'}); the others are kept in "
                                           f"{self.spool.directory} and resent", "warning")
            return accepted, False
        self.failures = 0
        self.retry_at = 0.0
        if self.notice.current() is not None:
            self.notice.recovered(f"Wazuh API accepts events again; {accepted} sent, {self.pending()} still waiting")
        return accepted, True

    def _backoff(self, wait: Optional[float]) -> None:
        if wait is None:
            wait = min(self.retry_max, self.retry_base * (2 ** min(self.failures, 20)))
        self.failures += 1
        self.retry_at = self.clock() + max(0.0, wait)

    def _send_direct(self, message: bytes) -> bool:
        """Last resort when the spool cannot keep the event: one request, if allowed now."""
        if self.clock() < self.retry_at or self.pacer.wait_time() > 0:
            return False
        try:
            event = api_event(message)
        except MessageError:
            return False
        from mimizuku.delivery.wazuh_api import ApiError

        self.pacer.record()
        self.requests += 1
        try:
            result = self.api.send_events([event], retries=0)
        except ApiError:
            return False
        if result.accepted:
            self.sent += 1
            return True
        return False

    def _set_aside(self, path: Path, suffix: str, message: str) -> None:
        try:
            os.rename(path, path.with_suffix(suffix))
        except OSError:
            pass
        self.log("error", message)


def sink_from_config(config_path: "os.PathLike[str] | str | None", spool_dir: "os.PathLike[str] | str", *,
                     log: Optional[LogFn] = None, default_path: Any = "default", **kw: Any) -> ApiEventSink:
    """An :class:`ApiEventSink` with credentials from ``config_path``/the environment (see wazuh_api;
    ``default_path``: the file read when ``config_path`` is None, None for the environment only).

    Timeouts are short (the resident scorer waits for them): 5 s to connect, 15 s for the answer.
    """
    from mimizuku.delivery.wazuh_api import DEFAULT_CONFIG, WazuhAPI, load_credentials

    creds = load_credentials(config_path, default_path=DEFAULT_CONFIG if default_path == "default" else default_path)
    api = WazuhAPI.from_credentials(creds, timeout=(5.0, 15.0), retries=0)
    return ApiEventSink(api, spool_dir, log=log, **kw)
