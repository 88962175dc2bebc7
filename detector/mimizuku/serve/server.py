"""``mimizuku serve``: the resident scorer -- the model stays in memory, each alert costs milliseconds.

integratord runs ``custom-mimizuku`` once per alert, one after another; loading Python, pandas
and a model in each call caps a manager below one alert per second. The daemon keeps the current
model loaded and takes alerts from three sources, all feeding one pipeline:

* its UNIX socket (``custom-mimizuku`` via :mod:`mimizuku.integratord.forward`, newline-delimited
  JSON with request ids, lines capped at 1 MiB: :mod:`mimizuku.integratord.protocol`);
* the alert spool (``<spool>/alerts``): what clients kept while the daemon was down or slow,
  drained oldest first -- at start-up before live alerts are accepted, so order is kept;
* ``--follow alerts.json`` (:mod:`mimizuku.sources.follow`): the file itself, with a persisted bookmark,
  so alerts written while nothing was running are scored on restart.

Pipeline: one thread does it all, in a ``selectors`` loop (:class:`Server`, this module): it
parses requests and lines into work items, and between two rounds of I/O the scorer
(:class:`mimizuku.serve.pipeline.Scorer`) takes what was read in micro-batches, skips alert ids it
already handled (:mod:`mimizuku.serve.handled`: a bounded window, persisted as a journal, so
"exactly once" holds across client retries and restarts), scores them, applies the policy of the
integration options, passes anomalies through flood control (:mod:`mimizuku.delivery.flood`),
sends the events to analysisd (:class:`~mimizuku.delivery.queue_socket.QueueSink`, which keeps
what it cannot send), records the ids, and only then hands back completions: the socket client
gets its acknowledgement, the follow bookmark advances, the spool file is deleted.
Scoring in the loop's own thread, rather than in a scorer thread fed by the I/O thread, is what
keeps the tail latency low: with two threads, every system call of the I/O thread gave up the
interpreter lock and waited for a busy scorer to hand it back (up to the 5 ms switch interval),
several times per request. Requests that arrive while a batch is scored wait in the socket's
buffer instead, and are read in the next round.

Hot reload (:mod:`mimizuku.serve.reload`): the model directory (or its ``current`` version
pointer) is watched; on a change or ``SIGHUP`` the new model is loaded and verified in a
background thread and swapped in between two batches, with the stream state carried over.
Signal handlers only set flags. ``SIGTERM``/``SIGINT``: stop accepting, finish what was accepted,
send the flood summaries, persist the bookmark and the journal, exit 0. The settings and their
options: :mod:`mimizuku.serve.config`.
"""
from __future__ import annotations

import collections
import errno
import fcntl
import gc
import grp
import json
import logging
import os
import selectors
import signal
import socket
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Tuple

from mimizuku._version import __version__
from mimizuku.core.atomic import write_atomic
from mimizuku.core.fields import is_alert, is_own_event
from mimizuku.core.spool import MISSING as SPOOL_MISSING
from mimizuku.core.spool import Spool, SpoolError
from mimizuku.core.text import printable
from mimizuku.delivery.failure_notice import FailureNotice
from mimizuku.integratord import protocol
from mimizuku.serve.config import BOOKMARK_NAME, INDEXER_BOOKMARK_NAME, STATUS_NAME, ServeConfig
from mimizuku.serve.connections import Connection, longest_idle
from mimizuku.serve.pipeline import Counters, Scorer, WorkItem
from mimizuku.serve.reload import ModelReload
from mimizuku.sources.follow import AlertFollower, FollowError

log = logging.getLogger("mimizuku.serve")

#: exit codes of ``mimizuku serve`` (serve/command.py returns them)
EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_SOCKET = 0, 1, 2, 3


def _loads_factory():
    try:
        import orjson  # type: ignore

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is optional
        return json.loads


_loads = _loads_factory()


# --- connections -------------------------------------------------------------------------------

class _FollowSlot:
    __slots__ = ("mark", "done")

    def __init__(self, mark: Any, done: bool = False):
        self.mark = mark
        self.done = done


# --- the server ---------------------------------------------------------------------------------

class Server(ModelReload):
    """The loop: socket, spool, follow, signals, timers, and the scorer between two rounds of I/O."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.counters = Counters()
        self.started = time.time()
        self.errors: Deque[Tuple[float, str]] = collections.deque(maxlen=20)
        self.init_reload()
        self._stopping = False
        self._completions: Deque[List[WorkItem]] = collections.deque()
        self._sel = selectors.DefaultSelector()
        self._listener: Optional[socket.socket] = None
        self._listener_ino: Optional[int] = None
        self._conns: Dict[int, Connection] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.catching_up = True          # drain the spool before accepting live alerts
        self.spool_backlog = 0
        self._spool_inflight = 0
        self._lock_fd: Optional[int] = None
        self.follower: Optional[AlertFollower] = None
        self._follow_slots: Deque[_FollowSlot] = collections.deque()
        self._follow_inflight = 0
        self._follow_paused_until = 0.0
        self._next = {"watch": 0.0, "spool": 0.0, "follow": 0.0, "bookmark": 0.0, "status": 0.0, "conns": 0.0}
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.scorer = Scorer(self)
        self.ready_event = threading.Event()   # tests: the socket is listening

    # -- logging ------------------------------------------------------------------------------
    def logfn(self, level: str, message: str) -> None:
        getattr(log, {"warning": "warning", "error": "error"}.get(level, "info"))(printable(message, 2000))

    def error(self, message: str) -> None:
        self.errors.append((time.time(), message))
        log.error("%s", printable(message, 2000))

    # -- requests from signal handlers and tests --------------------------------------------------
    def request_stop(self) -> None:
        self._stopping = True
        self.wake()

    def wake(self) -> None:
        """Make the loop go round now (from another thread or a signal handler)."""
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def complete(self, batch: List[WorkItem]) -> None:
        """Called by the scorer: the batch is done; answered in this round's completions."""
        self._completions.append(batch)

    @property
    def ready(self) -> bool:
        return self.scorer.model is not None and not self.catching_up

    @property
    def follow_in_flight(self) -> int:
        """Alerts read from the followed file (or indexer) and not handled yet."""
        return self._follow_inflight

    # -- start-up ---------------------------------------------------------------------------------
    def _open_socket(self) -> None:
        path = self.cfg.socket
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        if path.exists() or path.is_symlink():
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            probe.settimeout(1.0)
            try:
                probe.connect(str(path))
            except (ConnectionRefusedError, FileNotFoundError):
                os.unlink(path)  # stale: left by a daemon that died
            except OSError:
                os.unlink(path)
            else:
                raise RuntimeError(f"another scorer is already listening on {path}")
            finally:
                probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o117)
        try:
            s.bind(str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o660)
        if os.geteuid() == 0 and self.cfg.socket_group:
            try:
                os.chown(path, 0, grp.getgrnam(self.cfg.socket_group).gr_gid)
            except KeyError:
                log.warning("group %s does not exist: socket %s stays root-only", self.cfg.socket_group, path)
        s.listen(128)
        s.setblocking(False)
        self._listener = s
        self._listener_ino = os.stat(path).st_ino
        self._sel.register(s, selectors.EVENT_READ, ("listen", None))

    def _close_listener(self) -> None:
        if self._listener is None:
            return
        self._sel.unregister(self._listener)
        self._listener.close()
        self._listener = None
        try:
            if os.stat(self.cfg.socket).st_ino == self._listener_ino:
                os.unlink(self.cfg.socket)
        except OSError:
            pass

    def _take_spool_lock(self) -> bool:
        if self._lock_fd is not None:
            return True
        d = self.cfg.spool_dir / "alerts"
        try:
            d.mkdir(parents=True, exist_ok=True, mode=0o750)
            fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        except OSError as e:
            self.error(f"cannot open the alert spool {d}: {e}")
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False  # a client is draining it in-process right now: next time
        self._lock_fd = fd
        return True

    # -- the loop -------------------------------------------------------------------------------
    def serve_forever(self, install_signals: bool = True) -> int:
        cfg = self.cfg
        try:
            self._open_socket()
        except (OSError, RuntimeError) as e:
            log.error("cannot listen on %s: %s", cfg.socket, e)
            return EXIT_SOCKET
        old_handlers = {}
        if install_signals:
            for sig, fn in ((signal.SIGHUP, lambda *a: self.request_reload()),
                            (signal.SIGTERM, lambda *a: self.request_stop()),
                            (signal.SIGINT, lambda *a: self.request_stop())):
                old_handlers[sig] = signal.signal(sig, fn)
            signal.set_wakeup_fd(self._wake_w)
        self._sel.register(self._wake_r, selectors.EVENT_READ, ("wake", None))
        gc_was_enabled = gc.isenabled()
        gc.disable()   # the scorer collects between batches (Scorer._collect)
        self.follower = self._make_follower()
        self.check_model()
        log.info("mimizuku serve %s listening on %s%s", __version__, cfg.socket,
                 f", following {self.follower.path}" if self.follower is not None else "")
        self.ready_event.set()
        try:
            self._loop()
        finally:
            self._shutdown()
            if gc_was_enabled:
                gc.enable()
            if install_signals:
                signal.set_wakeup_fd(-1)
                for sig, h in old_handlers.items():
                    signal.signal(sig, h)
        return EXIT_OK

    def _loop(self) -> None:
        while not self._stopping:
            # queued work: only look at what is ready; idle: wait for I/O, a timer or a wake-up
            for key, mask in self._sel.select(timeout=0 if self.scorer.q else self.cfg.poll_interval):
                kind, conn = key.data
                if kind == "listen":
                    self._accept()
                elif kind == "wake":
                    self._drain_wake()
                elif kind == "conn":
                    if mask & selectors.EVENT_READ:
                        self._on_readable(conn)
                    if mask & selectors.EVENT_WRITE and not conn.closed:
                        self._flush(conn)
            self.scorer.step()
            self._process_completions()
            self.reload_if_requested()
            self._timers()
            self.apply_backpressure()

    def _timers(self) -> None:
        now = time.monotonic()
        n = self._next
        if now >= n["watch"]:
            n["watch"] = now + self.cfg.watch_interval
            self.check_model()
        if now >= n["spool"] or (self.catching_up and self._spool_inflight == 0):
            n["spool"] = now + 1.0
            self._feed_spool()
        if self.follower is not None and now >= n["follow"]:
            n["follow"] = now + self.cfg.poll_interval
            self._feed_follow()
        if self.follower is not None and now >= n["bookmark"]:
            n["bookmark"] = now + 1.0
            self._save_bookmark()
        if now >= n["status"]:
            n["status"] = now + 5.0
            self._write_status()
        if now >= n["conns"]:
            n["conns"] = now + 0.25
            self.tend_connections(now)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # -- socket side ------------------------------------------------------------------------------
    def _accept(self) -> None:
        for _ in range(64):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    self.error("too many open files: not accepting for now")
                return
            self.adopt(sock)

    def adopt(self, sock: socket.socket) -> "Connection":
        """Serve a connected client socket: what the listener does with each connection it
        accepts (public so a connection can also be handed over ready-made, as the tests of
        backpressure do). Past ``max_connections`` the connection idle the longest is closed to
        make room; only when none is idle is the new client told it is overloaded."""
        sock.setblocking(False)
        conn = Connection(sock, time.monotonic())
        self._accepted += 1
        if len(self._conns) >= self.cfg.max_connections:
            old = longest_idle(self._conns.values())
            if old is not None:
                log.info("%d connections: closing the one idle the longest for a new client", len(self._conns))
                self._close(old)
        self._conns[id(conn)] = conn
        if len(self._conns) > self.cfg.max_connections:
            conn.wbuf += protocol.answer(None, False, code=protocol.OVERLOADED, error="too many connections")
            conn.closing = True
            conn.reading = False
            self._sel.register(sock, selectors.EVENT_WRITE, ("conn", conn))
        else:
            self._sel.register(sock, selectors.EVENT_READ, ("conn", conn))
        return conn

    def _on_readable(self, conn: Connection) -> None:
        try:
            data = conn.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        conn.last_active = time.monotonic()
        if not data:
            conn.eof = True
            if conn.rbuf:
                log.debug("connection closed in the middle of a request (%d bytes dropped)", len(conn.rbuf))
                conn.rbuf.clear()
            self._set_reading(conn, False)
            self._maybe_close(conn)
            return
        conn.rbuf += data
        self._parse(conn)

    def _parse(self, conn: Connection) -> None:
        """Answer the complete request lines read, while the client takes its answers."""
        while not conn.closing and not conn.closed and conn.over_cap_since is None:
            nl = conn.rbuf.find(b"\n")
            if nl < 0:
                if len(conn.rbuf) > protocol.MAX_LINE:
                    self.counters.bad_requests += 1
                    self._respond(conn, protocol.answer(None, False, code=protocol.BAD_REQUEST,
                                                        error=f"request line longer than {protocol.MAX_LINE} bytes"))
                    conn.rbuf.clear()
                    conn.closing = True
                    self._set_reading(conn, False)
                break
            line = bytes(conn.rbuf[:nl])
            del conn.rbuf[: nl + 1]
            if line.strip():
                try:
                    self._on_request(conn, line)
                except Exception as e:  # one request only: answer it, keep serving the others
                    self.counters.bad_requests += 1
                    self.error(f"request not handled: {type(e).__name__}: {printable(e, 300)}")
                    self._respond(conn, protocol.answer(None, False, code=protocol.INTERNAL,
                                                        error=f"request not handled ({type(e).__name__})"))
        self._maybe_close(conn)

    def _on_request(self, conn: Connection, line: bytes) -> None:
        try:
            req = _loads(line)
        except ValueError:
            self.counters.bad_requests += 1
            self._respond(conn, protocol.answer(None, False, code=protocol.BAD_REQUEST, error="not valid JSON"))
            return
        if not isinstance(req, dict):
            self.counters.bad_requests += 1
            self._respond(conn, protocol.answer(None, False, code=protocol.BAD_REQUEST, error="request must be a JSON object"))
            return
        rid = req.get("id")
        if not protocol.valid_id(rid):
            self.counters.bad_requests += 1
            self._respond(conn, protocol.answer(None, False, code=protocol.BAD_REQUEST,
                                                error=f"request needs an id ({protocol.ID_RULE})"))
            return
        op = req.get("op")
        if op == "score":
            self._on_score(conn, rid, req.get("alert"))
        elif op == "status":
            self._respond(conn, protocol.answer(rid, True, status=self.status()))
        elif op == "ping":
            self._respond(conn, protocol.answer(rid, True, status="pong"))
        elif op == "reload":
            self._respond(conn, protocol.answer(rid, True, status=self.request_reload()))
        else:
            self.counters.bad_requests += 1
            self._respond(conn, protocol.answer(rid, False, code=protocol.BAD_REQUEST,
                                                error=f"unknown op ({', '.join(protocol.OPS)})"))

    def _on_score(self, conn: Connection, rid: Any, alert: Any) -> None:
        if not is_alert(alert):
            self.counters.rejected += 1
            self._respond(conn, protocol.answer(rid, False, code=protocol.BAD_ALERT, error="alert has no rule object (not a Wazuh alert)"))
            return
        if is_own_event(alert):
            self.counters.skipped_own += 1
            self._respond(conn, protocol.answer(rid, True, status=protocol.SKIPPED))
            return
        if self._stopping:
            self._respond(conn, protocol.answer(rid, False, code=protocol.SHUTTING_DOWN, error="the scorer is stopping"))
            return
        if not self.ready:
            why = "no model loaded yet" if self.scorer.model is None else "scoring the spooled backlog first"
            self._respond(conn, protocol.answer(rid, False, code=protocol.NOT_READY, error=why))
            return
        self.counters.received += 1
        conn.pending += 1
        self.scorer.q.append(WorkItem(alert, "socket", (conn, rid)))

    def _respond(self, conn: Connection, data: bytes) -> None:
        if conn.closed:
            return
        conn.wbuf += data
        self._flush(conn)

    def _flush(self, conn: Connection) -> None:
        sent = False
        while conn.wbuf:
            try:
                n = conn.sock.send(conn.wbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the client went away: its alerts were handled anyway
                self._close(conn)
                return
            del conn.wbuf[:n]
            sent = True
        if sent:
            conn.last_active = time.monotonic()
        self._check_cap(conn)
        self._update_interest(conn)
        self._maybe_close(conn)

    def _check_cap(self, conn: Connection) -> None:
        """Past ``reply_cap`` unsent bytes, stop reading the client's requests; back under it,
        answer what was read meanwhile and read again (issue 17 item 5)."""
        if len(conn.wbuf) > self.cfg.reply_cap:
            if conn.over_cap_since is None:
                conn.over_cap_since = time.monotonic()
                conn.reading = False
        elif conn.over_cap_since is not None:
            conn.over_cap_since = None
            conn.reading = self._may_read(conn)
            self._parse(conn)

    def _may_read(self, conn: Connection) -> bool:
        return not (conn.eof or conn.closing or conn.closed or conn.over_cap_since is not None
                    or self._stopping or len(self.scorer.q) >= self.cfg.high_water)

    def tend_connections(self, now: float) -> None:
        """The loop's connection timer (public: tests drive it): close the connections idle for
        longer than ``idle_timeout`` and those whose unread answers stayed past the cap for
        longer than ``reply_stall_timeout``."""
        cfg = self.cfg
        for conn in list(self._conns.values()):
            if conn.stalled(now, cfg.reply_stall_timeout):
                self.error(f"a client left {len(conn.wbuf)} bytes of answers unread for more than "
                           f"{cfg.reply_stall_timeout:g} s: connection closed")
                self._close(conn)
            elif conn.idle_for(now, cfg.idle_timeout):
                log.debug("closing a connection idle for more than %g s", cfg.idle_timeout)
                self._close(conn)

    def _set_reading(self, conn: Connection, on: bool) -> None:
        if conn.reading != on:
            conn.reading = on
            self._update_interest(conn)

    def _update_interest(self, conn: Connection) -> None:
        if conn.closed:
            return
        ev = (selectors.EVENT_READ if conn.reading else 0) | (selectors.EVENT_WRITE if conn.wbuf else 0)
        try:
            if ev:
                self._sel.modify(conn.sock, ev, ("conn", conn))
            else:
                self._sel.unregister(conn.sock)
        except KeyError:
            if ev:
                self._sel.register(conn.sock, ev, ("conn", conn))
        except ValueError:
            pass

    def _maybe_close(self, conn: Connection) -> None:
        if conn.closed or conn.wbuf:
            return
        if conn.closing or (conn.eof and conn.pending == 0):
            self._close(conn)

    def _close(self, conn: Connection) -> None:
        if conn.closed:
            return
        conn.closed = True
        try:
            self._sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        self._conns.pop(id(conn), None)
        conn.sock.close()

    _bp_state: Any = None
    _accepted = 0

    def apply_backpressure(self) -> None:
        """Stop reading requests while the scorer is far behind; the clients wait (or spool).
        Run by the loop every round (public: the tests drive it round by round)."""
        full = len(self.scorer.q) >= self.cfg.high_water
        state = (full, self._stopping, self._accepted)
        if state == self._bp_state:   # runs every round: walk the connections only on a change
            return
        self._bp_state = state
        for conn in list(self._conns.values()):
            if not conn.eof and not conn.closing and not conn.closed:
                self._set_reading(conn, self._may_read(conn))

    # -- completions ------------------------------------------------------------------------------
    def _process_completions(self) -> None:
        # Answers are gathered per connection and written with one send() each.
        touched: Dict[int, Connection] = {}
        while self._completions:
            batch = self._completions.popleft()
            for it in batch:
                if it.source == "socket":
                    conn, rid = it.token
                    conn.pending -= 1
                    if conn.closed:
                        continue
                    if it.status in protocol.SETTLED:
                        conn.wbuf += protocol.acknowledgement(rid, it.status)
                    else:
                        code = protocol.NOT_READY if it.status == protocol.NOT_READY else protocol.INTERNAL
                        conn.wbuf += protocol.answer(rid, False, code=code, error=it.error or it.status)
                    touched[id(conn)] = conn
                elif it.source == "follow":
                    self._follow_inflight -= 1
                    slot = it.token
                    if it.status in protocol.SETTLED:
                        slot.done = True
                    else:
                        self._follow_failed(it)
                elif it.source == "spool":
                    self._spool_inflight -= 1
                    if it.status not in protocol.SETTLED:
                        self._spool_failed = True
            self._advance_follow()
        for conn in touched.values():
            self._flush(conn)

    # -- spool side -------------------------------------------------------------------------------
    _spool_failed = False

    def _feed_spool(self) -> None:
        if self._stopping or self.scorer.model is None or self._spool_inflight:
            return
        if not self._take_spool_lock():
            return
        sp = Spool(self.cfg.spool_dir / "alerts")
        try:
            paths = sp.paths()
        except SpoolError as e:
            self.error(str(e))
            return
        self.spool_backlog = len(paths)
        if self._spool_failed:
            self._spool_failed = False
            return  # something failed last round (events cannot be kept): retry at the next tick
        if not paths:
            if self.catching_up:
                self.catching_up = False
                log.info("alert spool empty: accepting alerts on %s", self.cfg.socket)
                FailureNotice(self.cfg.spool_dir, "resident", self.logfn).recovered(
                    f"resident scorer at {self.cfg.socket} answers again")
            return
        for p in paths[: self.cfg.spool_batch]:
            try:
                alert = Spool.load(p, _loads, log=self.logfn, quarantines=True)
            except Exception as e:   # whole, but the decoder fails on it (too deep): set it aside
                self.scorer.set_aside_spooled(p, f"cannot be decoded: {type(e).__name__}: {printable(e, 200)}")
                continue
            if alert is SPOOL_MISSING:
                continue
            if not is_alert(alert):
                Spool.set_aside_bad(p, self.logfn, "is not a Wazuh alert (no rule object)")
                continue
            if is_own_event(alert):
                Spool.ack(p)
                continue
            self.counters.received += 1
            self._spool_inflight += 1
            self.scorer.q.append(WorkItem(alert, "spool", p))
        if self.catching_up and self._spool_inflight == 0:
            self._next["spool"] = 0.0

    # -- follow side ------------------------------------------------------------------------------
    def _feed_follow(self) -> None:
        f = self.follower
        if self._stopping or self.scorer.model is None or time.monotonic() < self._follow_paused_until:
            return
        room = self.cfg.follow_inflight - self._follow_inflight
        if room <= 0:
            return
        try:
            lines = f.read(min(room, 2048))
        except (OSError, FollowError) as e:
            self.error(f"cannot follow {f.path}: {e}")
            self._follow_paused_until = time.monotonic() + 5.0
            return
        for raw, mark in lines:
            slot = _FollowSlot(mark)
            self._follow_slots.append(slot)
            try:
                alert = _loads(raw)
            except ValueError:
                slot.done = True  # not JSON: nothing to score (integratord skips it too)
                continue
            if not is_alert(alert) or is_own_event(alert):
                slot.done = True
                continue
            self.counters.received += 1
            self._follow_inflight += 1
            self.scorer.q.append(WorkItem(alert, "follow", slot))
        if len(lines) >= min(room, 2048):
            self._next["follow"] = 0.0  # more is waiting: read again at once
        self._advance_follow()

    def _advance_follow(self) -> None:
        last = None
        while self._follow_slots and self._follow_slots[0].done:
            last = self._follow_slots.popleft()
        if last is not None and self.follower is not None:
            self.follower.commit(last.mark)

    def _follow_failed(self, it: WorkItem) -> None:
        """An alert from the file could not be handled: re-read from the bookmark later."""
        where = self.follower.path if self.follower is not None else self.cfg.follow
        self.error(f"alert {printable(it.key, 80)} from {where} not handled ({it.error}); "
                   "re-reading from the bookmark in 5 s")
        self._rewind_follow = True
        self._follow_paused_until = float("inf")

    _rewind_follow = False

    def _save_bookmark(self, fsync: bool = False) -> None:
        f = self.follower
        if f is None:
            return
        try:
            f.save(fsync=fsync)
        except OSError as e:
            self.error(f"cannot save the bookmark {f.bookmark_file}: {e}")
        if self._rewind_follow and self._follow_inflight == 0:
            self._rewind_follow = False
            self._follow_slots.clear()
            f.save(fsync=True)
            f.close()
            self.follower = self._make_follower()
            self._follow_paused_until = time.monotonic() + 5.0

    def _make_follower(self) -> Any:
        """``--follow alerts.json`` or ``--follow-indexer URL`` (same interface), or None."""
        cfg = self.cfg
        if cfg.follow_indexer is not None:
            from mimizuku.sources.indexer import IndexerSource
            from mimizuku.sources.indexer_follow import IndexerFollower

            return IndexerFollower(IndexerSource(cfg.follow_indexer or None), cfg.state_dir / INDEXER_BOOKMARK_NAME,
                                   lag=cfg.indexer_lag, interval=cfg.indexer_interval,
                                   from_start=cfg.from_start, log=self.logfn)
        if cfg.follow is not None:
            return AlertFollower(cfg.follow, cfg.state_dir / BOOKMARK_NAME, from_start=cfg.from_start,
                                 log=self.logfn)
        return None

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> Dict[str, Any]:
        c = self.counters
        m = self.model_manifest or {}
        created = m.get("created")
        sp = {}
        for name in ("alerts", "events") + (("index",) if self.cfg.index_url is not None else ()):
            try:
                sp[name] = len(Spool(self.cfg.spool_dir / name))
            except SpoolError:
                sp[name] = None
        st: Dict[str, Any] = {
            "running": True, "pid": os.getpid(), "version": __version__, "started": self.started,
            "uptime_s": round(time.time() - self.started, 1), "ready": self.ready,
            "catching_up": self.catching_up, "socket": str(self.cfg.socket),
            "model": {"version": self.model_version, "path": self.scorer.model_path, "created": created,
                      "loaded_at": self.scorer.model_loaded_at, "dir": str(self.cfg.model_dir)},
            "last_reload": self.last_reload,
            "feedback": self.feedback_status,
            "counters": dict(c.__dict__),
            "flood": {"window_s": self.cfg.flood_window, "open": len(self.scorer.flood),
                      "suppressed": self.scorer.flood.suppressed, "summaries": self.scorer.flood.summaries},
            "queue_depth": len(self.scorer.q), "spool": sp, "connections": len(self._conns),
            "unsent_answer_bytes": sum(len(c.wbuf) for c in list(self._conns.values())),
            "quarantine": str(self.scorer.quarantine),
            "dedupe_window": {"size": len(self.scorer.handled), "max": self.cfg.dedupe_window},
            "engine_caches": {"max_entries": self.scorer.caches.entries, "cleared": self.scorer.caches.cleared,
                              "gc_collections": self.scorer.collections},
            "errors": [{"at": t, "message": msg} for t, msg in list(self.errors)[-10:]],
        }
        if self.follower is not None:
            bm = self.follower.bookmark
            st["follow"] = {"path": str(self.follower.path), "bookmark": bm.__dict__ if bm else None,
                            "in_flight": self.follow_in_flight, "stats": dict(self.follower.stats)}
        return st

    def _write_status(self, running: bool = True) -> None:
        try:
            st = self.status()
            st["running"] = running
            st["written"] = time.time()
            p = self.cfg.state_dir / STATUS_NAME
            write_atomic(p, protocol.encode(st), mode=0o640, fsync=False)
        except Exception as e:  # status is informative: never stop for it
            log.debug("cannot write status: %s", e)

    # -- shutdown -------------------------------------------------------------------------------
    def _shutdown(self) -> None:
        log.info("stopping: finishing accepted alerts")
        self._close_listener()
        for conn in list(self._conns.values()):
            conn.rbuf.clear()
            self._set_reading(conn, False)   # partial requests were not accepted: clients spool them
        deadline = time.monotonic() + self.cfg.shutdown_timeout
        while time.monotonic() < deadline:
            self.scorer.step()
            self._process_completions()
            if not self.scorer.q and not self._completions and self._pending_work() == 0:
                break
            for key, mask in self._sel.select(timeout=0 if self.scorer.q else 0.05):
                kind, conn = key.data
                if kind == "wake":
                    self._drain_wake()
                elif kind == "conn" and mask & selectors.EVENT_WRITE:
                    self._flush(conn)
        self.scorer.finish()
        self._process_completions()
        flush_until = time.monotonic() + 2.0
        while time.monotonic() < flush_until and any(c.wbuf for c in self._conns.values()):
            for key, mask in self._sel.select(timeout=0.05):
                kind, conn = key.data
                if kind == "conn" and mask & selectors.EVENT_WRITE:
                    self._flush(conn)
        for conn in list(self._conns.values()):
            self._close(conn)
        if self.follower is not None:
            self._save_bookmark(fsync=True)
            self.follower.close()
        self._write_status(running=False)
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        log.info("stopped (%d alerts scored, %d events sent, %d kept for later)", self.counters.scored,
                 self.counters.events_sent, self.counters.events_spooled)

    def _pending_work(self) -> int:
        return sum(c.pending for c in self._conns.values()) + self._spool_inflight + self._follow_inflight
