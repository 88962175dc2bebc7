"""``mimizuku serve``: the resident scorer -- the model stays in memory, each alert costs milliseconds.

integratord runs ``custom-mimizuku`` once per alert, one after another; loading Python, pandas
and a model in each call caps a manager below one alert per second. The daemon keeps the current
model loaded and takes alerts from three sources, all feeding one pipeline:

* its UNIX socket (``custom-mimizuku`` via :mod:`mimizuku.integratord.forward`, newline-delimited
  JSON with request ids, lines capped at 1 MiB);
* the alert spool (``<spool>/alerts``): what clients kept while the daemon was down or slow,
  drained oldest first -- at start-up before live alerts are accepted, so order is kept;
* ``--follow alerts.json`` (:mod:`mimizuku.sources.follow`): the file itself, with a persisted bookmark,
  so alerts written while nothing was running are scored on restart.

Pipeline: one thread does it all, in a ``selectors`` loop (:class:`Server`): it parses requests
and lines into work items, and between two rounds of I/O the :class:`Scorer` takes what was read
in micro-batches, skips alert ids it already handled (a bounded window,
persisted as a journal, so "exactly once" holds across client retries and restarts), scores them,
applies the policy of the integration options, passes anomalies through flood control
(:mod:`mimizuku.delivery.flood`), sends the events to analysisd (:class:`~mimizuku.delivery.queue_socket.QueueSink`,
which keeps what it cannot send), records the ids, and only then hands back completions: the
socket client gets its acknowledgement, the follow bookmark advances, the spool file is deleted.
Scoring in the loop's own thread, rather than in a scorer thread fed by the I/O thread, is what
keeps the tail latency low: with two threads, every system call of the I/O thread gave up the
interpreter lock and waited for a busy scorer to hand it back (up to the 5 ms switch interval),
several times per request. Requests that arrive while a batch is scored wait in the socket's
buffer instead, and are read in the next round.

Hot reload: the model directory (or its ``current`` version pointer) is watched; on a change or
``SIGHUP`` the new model is loaded and verified in a background thread (checksums, ownership:
:func:`mimizuku.store.model_dir.load_model_dir`) and swapped in between two batches, with the
context detector's rate windows carried over. A model that fails verification is refused, the
old one kept, and that is logged and shown by ``mimizuku status``. Signal handlers only set
flags. ``SIGTERM``/``SIGINT``: stop accepting, finish what was accepted, send the flood
summaries, persist the bookmark and the journal, exit 0.
"""
from __future__ import annotations

import argparse
import collections
import errno
import fcntl
import gc
import grp
import hashlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Deque, Dict, List, Optional, Tuple

from mimizuku.delivery import events
from mimizuku._version import __version__
from mimizuku.core.fields import is_alert, is_own_event
from mimizuku.delivery.flood import DEFAULT_WINDOW, FloodControl
from mimizuku.sources.follow import AlertFollower, FollowError
from mimizuku.engine.policy import apply_policy
from mimizuku.integratord.call import Options, OptionsError, load_options
from mimizuku.delivery.queue_socket import FailureNotice, QueueSink
from mimizuku.core.spool import MISSING as SPOOL_MISSING, Spool, SpoolError

log = logging.getLogger("mimizuku.serve")

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_SOCKET = 0, 1, 2, 3

#: Largest request line; a longer one is answered with an error and the connection closed.
MAX_LINE = 1 << 20
MAX_ID_CHARS = 128
MAX_CONNECTIONS = 512
SOCKET_NAME = "serve.sock"
BOOKMARK_NAME = "follow.bookmark"
INDEXER_BOOKMARK_NAME = "indexer.bookmark"
JOURNAL_NAME = "handled.ids"
STATUS_NAME = "status.json"
#: scored alerts between two collections of the cyclic GC (see Scorer._collect) ...
FREEZE_EVERY = 20_000
#: ... or sooner, once this many tracked objects were allocated (net) since the last one
GC_YOUNG_LIMIT = 200_000
#: default of ``--cache-entries``: entries per engine memo cache (see EngineCaches)
CACHE_ENTRIES = 8192


def _loads_factory():
    try:
        import orjson  # type: ignore

        return orjson.loads
    except ImportError:  # pragma: no cover - orjson is optional
        return json.loads


_loads = _loads_factory()


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8", "replace")


def _printable(text: Any, limit: int = 500) -> str:
    """One log line whatever the (attacker-controlled) text: control characters escaped."""
    s = str(text)
    out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
                  for ch in s[:limit])
    return out + ("..." if len(s) > limit else "")


def alert_key(alert: Dict[str, Any]) -> str:
    """What makes an alert the same alert: its ``id`` with the manager that wrote it (ids are
    only unique per manager: one scorer may serve a whole cluster), else a hash of its JSON."""
    aid = alert.get("id")
    if isinstance(aid, str) and aid:
        manager = alert.get("manager")
        name = manager.get("name") if isinstance(manager, dict) else None
        return f"{aid}@{name}" if isinstance(name, str) and name else aid
    raw = json.dumps(alert, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8", "replace")
    return "sha1:" + hashlib.sha1(raw).hexdigest()


# --- configuration ----------------------------------------------------------------------------

@dataclass
class ServeConfig:
    home: Path
    model_dir: Path
    socket: Path
    spool_dir: Path
    queue: Path
    state_dir: Path
    options: Options
    follow: Optional[Path] = None
    from_start: bool = False
    #: follow the Wazuh indexer instead (mimizuku.sources.indexer_follow): a URL, or "" for the config/env
    follow_indexer: Optional[str] = None
    indexer_lag: float = 60.0
    indexer_interval: float = 5.0
    flood_window: float = DEFAULT_WINDOW
    max_batch: int = 64
    dedupe_window: int = 200_000
    watch_interval: float = 5.0
    poll_interval: float = 0.2
    spool_batch: int = 512
    high_water: int = 10_000
    follow_inflight: int = 4096
    socket_group: Optional[str] = "wazuh"
    shutdown_timeout: float = 60.0
    event_retry_interval: float = 5.0
    #: entries per engine memo cache (see EngineCaches): what bounds the daemon's memory
    cache_entries: int = CACHE_ENTRIES
    #: event sink: "queue" (analysisd's socket, on the manager) or "api" (POST /events, off-box)
    sink: str = "queue"
    #: credentials file of the API sink (None: mimizuku.delivery.wazuh_api's default and environment)
    api_config: Optional[Path] = None

    @classmethod
    def for_home(cls, home: Path, **kw: Any) -> "ServeConfig":
        opts = kw.pop("options", None) or Options.defaults(home)
        base = home / "mimizuku"
        state = kw.pop("state_dir", None) or base / "run"
        cfg = cls(home=home, model_dir=kw.pop("model_dir", None) or opts.model_dir,
                  socket=kw.pop("socket", None) or (opts.socket or state / SOCKET_NAME),
                  spool_dir=kw.pop("spool_dir", None) or opts.spool_dir,
                  queue=kw.pop("queue", None) or opts.queue, state_dir=state, options=opts)
        for k, v in kw.items():
            setattr(cfg, k, v)
        return cfg


# --- which model: the version pointer ------------------------------------------------------------

def resolve_model_dir(model_dir: Path) -> Path:
    """The directory holding the model to load, with every symlink resolved.

    The layout of :mod:`mimizuku.store.versions`: ``<root>/current -> versions/<version>`` when the
    root holds versions, else the root itself (a plain model directory). Resolving once, here,
    makes the fingerprint and the load refer to the same version directory even if ``current``
    moves in between (the next watch tick picks the newer one up).
    """
    try:
        from mimizuku.store.versions import resolve_model_dir as _resolve
    except ImportError:  # pragma: no cover - versions.py ships with the package
        def _resolve(root):
            cur = Path(root) / "current"
            return cur if os.path.lexists(cur) else Path(root)
    return Path(os.path.realpath(_resolve(model_dir)))


def model_fingerprint(model_dir: Path) -> Optional[Tuple[str, int, int, int]]:
    """What changes when another model is installed: resolved dir + its manifest's identity."""
    try:
        d = resolve_model_dir(model_dir)
        st = os.stat(d / "manifest.json")
    except (OSError, ValueError):
        return None
    return str(d), st.st_ino, st.st_mtime_ns, st.st_size


# --- ids already handled ------------------------------------------------------------------------

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
            os.write(self._fd, "".join(f"{h:016x}\n" for h in hashes).encode("ascii"))
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


# --- the engine's memo caches -------------------------------------------------------------------

class EngineCaches:
    """Holds every memo cache of the engine to ``entries`` entries, so the daemon's memory is flat.

    The engine memoises per distinct key: the detectors' dicts (raw scores, nearest neighbours,
    reasons; capped by their ``_CACHE_MAX``, 200,000 by default) and the package's
    ``functools.lru_cache`` functions (tokens of every distinct path and command line, 65,536
    each). All are bounded, but so large that distinct keys took millions of alerts to fill them:
    measured over 1,000,000 alerts, the resident size still grew by 47 MiB between 500k and 1M, all
    of it in those caches (docs/serve.md). Here the detectors take ``entries`` as their cap (a
    full cache drops its oldest quarter: ``mimizuku.core.bounded.make_room``) and every lru cache of the package that holds more than
    ``entries`` is cleared (``cache_clear()``) between two batches. Frequent keys come back at
    once; what a small cap costs is recomputing the rare ones.
    """

    def __init__(self, entries: int = CACHE_ENTRIES, package: str = "mimizuku"):
        self.entries = max(1, int(entries))
        self.package = package
        self.cleared = 0
        self._lru: List[Any] = []

    def adopt(self, model: Any) -> None:
        """Cap ``model``'s detectors and find the package's lru caches (their modules are
        imported once a model is loaded)."""
        for det in getattr(model, "detectors_", {}).values():
            det._CACHE_MAX = self.entries
        self._lru = package_lru_caches(self.package)

    def trim(self) -> int:
        """Clear the lru caches over the cap; returns how many were cleared."""
        n = 0
        for fn in self._lru:
            if fn.cache_info().currsize > self.entries:
                fn.cache_clear()
                n += 1
        self.cleared += n
        return n

    def sizes(self) -> Dict[str, int]:
        return {f"{fn.__module__}.{fn.__qualname__}": fn.cache_info().currsize for fn in self._lru}


def package_lru_caches(package: str = "mimizuku") -> List[Any]:
    """Every ``functools.lru_cache`` function at module level in the imported modules of ``package``."""
    found: Dict[int, Any] = {}
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == package or name.startswith(package + ".")):
            continue
        for obj in list(vars(mod).values()):
            if callable(obj) and hasattr(obj, "cache_info") and hasattr(obj, "cache_clear"):
                found.setdefault(id(obj), obj)
    return sorted(found.values(), key=lambda f: (getattr(f, "__module__", ""), getattr(f, "__qualname__", "")))


# --- work items ---------------------------------------------------------------------------------

class WorkItem:
    """One alert on its way through the pipeline, with where to report its completion."""

    __slots__ = ("alert", "key", "hash", "source", "token", "status", "error", "received")

    def __init__(self, alert: Dict[str, Any], source: str, token: Any):
        self.alert = alert
        self.key = alert_key(alert)
        self.hash = HandledIds.digest(self.key)
        self.source = source           # "socket", "follow" or "spool"
        self.token = token             # (connection, request id) / follow slot / spool path
        self.status = "queued"
        self.error: Optional[str] = None
        self.received = time.monotonic()


@dataclass
class Counters:
    received: int = 0
    scored: int = 0
    duplicates: int = 0
    skipped_own: int = 0
    rejected: int = 0
    engine_failed: int = 0
    anomalies: int = 0
    events_sent: int = 0
    events_spooled: int = 0
    events_lost: int = 0
    batches: int = 0
    bad_requests: int = 0


# --- the scorer ----------------------------------------------------------------------------------

class Scorer:
    """Owns the model, flood control, the event sink and the handled-id journal.

    Runs in the server's loop (:meth:`step`), one batch at a time: model objects are not
    thread-safe, and one thread avoids handing the interpreter lock back and forth. Only the
    model loader runs elsewhere, and it only hands over a loaded model (:meth:`offer`)."""

    def __init__(self, server: "Server"):
        self.server = server
        cfg = server.cfg
        self.cfg = cfg
        self.q: Deque[WorkItem] = collections.deque()
        self.model: Any = None
        self.model_path: Optional[str] = None
        self.model_loaded_at: Optional[float] = None
        self._pending: Optional[Tuple[Any, Any, str]] = None
        self._pending_lock = threading.Lock()
        self.flood = FloodControl(cfg.flood_window)
        self.caches = EngineCaches(cfg.cache_entries)
        self.handled = HandledIds(cfg.state_dir / JOURNAL_NAME, cfg.dedupe_window)
        self.rejected = Spool(cfg.spool_dir / "rejected", max_items=10_000)
        self.sink = make_event_sink(cfg, server.logfn)
        self.carried_state: Optional[bool] = None
        self.hold = threading.Event()   # tests: set to make the scorer stall (a slow daemon)
        self.fingerprint: Any = None
        self._next_retry = 0.0

    # -- model swap (between batches only) --------------------------------------------------------
    def offer(self, model: Any, fingerprint: Any, path: str) -> None:
        """Loader thread: a verified model is ready; it is swapped in before the next batch."""
        with self._pending_lock:
            self._pending = (model, fingerprint, path)
        self.server._wake()   # swap even when idle

    def _swap(self) -> None:
        if self._pending is None:
            return
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        new, fp, path = pending
        old = self.model
        carried = _carry_stream_state(old, new) if old is not None else None
        self.caches.adopt(new)
        self.model, self.fingerprint, self.model_path = new, fp, path
        self.model_loaded_at = time.time()
        self.carried_state = carried
        had_old = old is not None
        del old, pending
        self._collect(everything=True)
        self.server.model_switched(new, had_old, carried)

    def _collect(self, everything: bool = False) -> None:
        """Run the cyclic GC here, between two batches, and freeze what survives.

        The daemon switches the automatic collector off (:meth:`Server.serve_forever`): the engine
        pauses it while it scores, so each time it came back on, the objects allocated meanwhile
        (parsed alerts, cache entries: hundreds of thousands) were walked in one go, inside a
        batch: measured stalls of 100-550 ms at 5,000 alerts/s, the cause of the paced p99
        swinging between runs. Collected here instead, every ``FREEZE_EVERY`` alerts or
        ``GC_YOUNG_LIMIT`` new objects, then frozen (``gc.freeze()``), each collection walks only
        what was allocated since the last one and is still alive (about 10 ms at 20,000 alerts;
        at 100,000, 50-65 ms). Frozen objects are still freed by reference counting (alerts,
        records and cache entries hold no cycles). ``everything`` (a model swap) unfreezes
        first, so a replaced model is collected even if it holds cycles."""
        if everything:
            gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._frozen_at = self.server.counters.scored
        self.collections += 1

    _frozen_at = 0
    collections = 0

    # -- one round of the loop -------------------------------------------------------------------
    def step(self) -> None:
        """Score one batch of what is queued (if any), then the between-batches chores."""
        batch: List[WorkItem] = []
        q = self.q
        while q and len(batch) < self.cfg.max_batch:
            batch.append(q.popleft())
        self._swap()
        try:
            if batch:
                while self.hold.is_set():
                    time.sleep(0.01)
                self.process(batch)
                self.caches.trim()
            if (self.server.counters.scored - self._frozen_at >= FREEZE_EVERY
                    or gc.get_count()[0] >= GC_YOUNG_LIMIT):
                self._collect()
            self._send(self.flood.flush())
            now = time.monotonic()
            if now >= self._next_retry:
                # events analysisd did not take: resend them even when no new event comes
                self._next_retry = now + self.cfg.event_retry_interval
                if self.sink.pending():
                    self.sink.flush(now + 1.0)
        except Exception as e:  # never die: report, fail the batch, go on
            self.server.error(f"scorer: {type(e).__name__}: {e}")
            for it in batch:
                if it.status == "queued":
                    it.status, it.error = "failed", f"internal error: {type(e).__name__}"
            self.server.complete(batch)

    def finish(self) -> None:
        """At shutdown, after the last batch: the flood summaries, then close the sink and journal."""
        try:
            self._send(self.flood.flush_all())
        finally:
            self.sink.close()
            self.handled.close()

    # -- one batch ------------------------------------------------------------------------------
    def process(self, batch: List[WorkItem]) -> None:
        c = self.server.counters
        fresh: List[WorkItem] = []
        seen = set()
        for it in batch:
            if it.hash in self.handled or it.hash in seen:
                it.status = "duplicate"
                c.duplicates += 1
            else:
                seen.add(it.hash)
                fresh.append(it)
        if fresh and self.model is None:
            for it in fresh:
                it.status, it.error = "not_ready", "no model loaded"
            self.server.complete(batch)
            return
        records = self._score(fresh) if fresh else []
        ok = self._deliver(records)
        scored = [it for it in fresh if it.status == "queued"]
        if ok:
            self.handled.add([it.hash for it in scored])
            for it in scored:
                it.status = "scored"
            c.scored += len(scored)
        else:
            for it in scored:
                it.status, it.error = "failed", "events can neither be sent nor kept"
        c.batches += 1
        for it in batch:
            if it.source == "spool" and it.status in ("scored", "duplicate", "kept"):
                Spool.ack(it.token)
        self.server.complete(batch)

    def _score(self, items: List[WorkItem]) -> List[Dict[str, Any]]:
        alerts = [it.alert for it in items]
        try:
            return list(self.model.iter_records(alerts, new_stream=False, batch_size=max(1, len(alerts))))
        except Exception as e:
            if len(items) == 1:
                it = items[0]
                it.status = "kept"
                self.server.counters.engine_failed += 1
                self.server.error(f"engine failed on alert {_printable(it.key, 80)}: {type(e).__name__}: {e}; "
                                  f"kept in {self.rejected.directory}")
                try:
                    self.rejected.put({"reason": f"engine failed: {type(e).__name__}: {e}", "alert": it.alert})
                except SpoolError:
                    it.status, it.error = "failed", "engine failed and the alert cannot be kept"
                return []
        out: List[Dict[str, Any]] = []
        for it in items:  # split: score alone each alert, set aside those the engine cannot take
            out.extend(self._score([it]))
        return out

    def _deliver(self, records: List[Dict[str, Any]]) -> bool:
        c = self.server.counters
        to_send: List[Dict[str, Any]] = []
        for rec in records:
            if rec.get("anomaly"):
                c.anomalies += 1
        for rec in apply_policy(records, self.cfg.options):
            to_send.extend(self.flood.admit(rec))
        return self._send(to_send)

    def _send(self, records: List[Dict[str, Any]]) -> bool:
        c = self.server.counters
        ok = True
        for rec in records:
            try:
                msg = event_message(rec)
            except (events.EventTooLarge, ValueError, TypeError) as e:
                self.server.error(f"cannot build the event for alert {_printable(rec.get('id'), 80)}: {e}")
                continue
            try:
                if self.sink.send(msg):
                    c.events_sent += 1
                else:
                    c.events_spooled += 1
            except SpoolError as e:
                c.events_lost += 1
                self.server.error(f"event for alert {_printable(rec.get('id'), 80)} can neither be sent nor kept: {e}")
                ok = False
        return ok


def make_event_sink(cfg: ServeConfig, logfn: Any) -> Any:
    """The configured sink; both keep what they cannot send in ``<spool>/events`` (same format)."""
    if cfg.sink == "api":
        from mimizuku.delivery.api_sink import sink_from_config

        return sink_from_config(cfg.api_config, cfg.spool_dir / "events", log=logfn, default_path=None)
    return QueueSink(cfg.queue, cfg.spool_dir / "events", log=logfn)


def event_message(rec: Dict[str, Any]) -> bytes:
    """The datagram for a record; flood summaries carry ``mimizuku.flood`` and ``flood_count``."""
    payload = events.build_payload(rec)
    fl = rec.get("flood")
    if isinstance(fl, dict):
        inner = payload[events.TAG]
        inner["flood"] = {k: v for k, v in fl.items() if v is not None}
        inner["flood_count"] = int(fl.get("count") or 0)
    return events.encode_message(events.location(rec.get("agent")), payload)


#: BLAS / OpenMP pools limited to one thread: the engine's matrices are small, and their worker
#: threads (spinning between calls) took a core from the server's loop and the clients under steady
#: load (p99 latency 160 ms -> 25 ms at 3,000 alerts/s on 2 cores).
_MATH_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _single_threaded_math() -> None:
    for name in _MATH_THREADS:
        os.environ.setdefault(name, "1")   # for libraries loaded later
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        threadpool_limits(1)               # for those already loaded
    except Exception:  # pragma: no cover - threadpoolctl missing or odd platform
        pass


def _carry_stream_state(old: Any, new: Any) -> bool:
    """Give the new model the old one's stream state: the context detector's per-agent rate
    windows (same window length only), each detector's fleet waves in progress and open repeat
    windows (``mimizuku.engine.repeats``; same window lengths only), and the processes the lineage is
    following. Returns whether the rate windows came along; the rest is carried where it fits
    and otherwise starts empty."""
    old_d, new_d = getattr(old, "detectors_", {}), getattr(new, "detectors_", {})
    for name, nd in new_d.items():
        od = old_d.get(name)
        if od is None:
            continue
        # fleet waves in progress, bursts' open windows: carried where the window length agrees
        for state, window in (("_wave", "wave_window"), ("_repeats", "repeat_window")):
            try:
                if state in od.__dict__ and getattr(od, window, None) == getattr(nd, window, None):
                    nd.__dict__[state] = od.__dict__[state]
            except Exception:  # internals changed: this state starts empty
                pass
    try:
        ol, nl = getattr(old, "lineage_", None), getattr(new, "lineage_", None)
        if ol is not None and nl is not None:
            nl.take_stream(ol)
    except Exception:  # the new model follows processes from now on
        pass
    try:
        oc, nc = old_d.get("context"), new_d.get("context")
        if oc is None or nc is None or "_rates" not in oc.__dict__:
            return False
        if getattr(oc, "rate_window", None) != getattr(nc, "rate_window", None):
            return False
        nc.__dict__["_rates"] = oc.__dict__["_rates"]
        return True
    except Exception:  # internals changed: the new model starts with empty windows
        return False


# --- connections -------------------------------------------------------------------------------

class _Conn:
    __slots__ = ("sock", "rbuf", "wbuf", "pending", "eof", "closing", "closed", "reading")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.rbuf = bytearray()
        self.wbuf = bytearray()
        self.pending = 0
        self.eof = False
        self.closing = False     # close once wbuf is flushed
        self.closed = False
        self.reading = True


class _FollowSlot:
    __slots__ = ("mark", "done")

    def __init__(self, mark: Any, done: bool = False):
        self.mark = mark
        self.done = done


# --- the server ---------------------------------------------------------------------------------

class Server:
    """The loop: socket, spool, follow, signals, timers, and the scorer between two rounds of I/O."""

    def __init__(self, cfg: ServeConfig):
        self.cfg = cfg
        self.counters = Counters()
        self.started = time.time()
        self.errors: Deque[Tuple[float, str]] = collections.deque(maxlen=20)
        self.last_reload: Dict[str, Any] = {}
        self.model_version: Optional[str] = None
        self.model_manifest: Dict[str, Any] = {}
        self._reload_wanted = False
        self._loading = False
        self._failed_fp: Any = None
        self._offered_fp: Any = None
        self._stopping = False
        self._completions: Deque[List[WorkItem]] = collections.deque()
        self._sel = selectors.DefaultSelector()
        self._listener: Optional[socket.socket] = None
        self._listener_ino: Optional[int] = None
        self._conns: Dict[int, _Conn] = {}
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
        self._next = {"watch": 0.0, "spool": 0.0, "follow": 0.0, "bookmark": 0.0, "status": 0.0}
        cfg.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        self.scorer = Scorer(self)
        self.ready_event = threading.Event()   # tests: the socket is listening
        self.model_event = threading.Event()   # tests: a model is in use
        self.reload_done = threading.Condition()
        self.reloads = 0

    # -- logging ------------------------------------------------------------------------------
    def logfn(self, level: str, message: str) -> None:
        getattr(log, {"warning": "warning", "error": "error"}.get(level, "info"))(_printable(message, 2000))

    def error(self, message: str) -> None:
        self.errors.append((time.time(), message))
        log.error("%s", _printable(message, 2000))

    # -- requests from signal handlers and tests --------------------------------------------------
    def request_reload(self) -> None:
        self._reload_wanted = True
        self._wake()

    def request_stop(self) -> None:
        self._stopping = True
        self._wake()

    def _wake(self) -> None:
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

    # -- model --------------------------------------------------------------------------------
    def _check_model(self, force: bool = False) -> None:
        if self._loading:
            if force:
                self._reload_wanted = True  # after the load in progress
            return
        fp = model_fingerprint(self.cfg.model_dir)
        if fp is None:
            if force:
                self.error(f"reload requested but there is no model in {self.cfg.model_dir}")
            return
        if not force and fp in (self.scorer.fingerprint, self._failed_fp, self._offered_fp):
            return
        self._loading = True
        threading.Thread(target=self._load, args=(fp,), name="mimizuku-loader", daemon=True).start()

    def _load(self, fp: Any) -> None:
        path = fp[0]
        t0 = time.monotonic()
        try:
            from mimizuku.engine.estimator import Mimizuku

            kw = {"ignore_users": list(self.cfg.options.ignore_users)} if self.cfg.options.ignore_users else {}
            model = Mimizuku.load_model(path, **kw)
            _single_threaded_math()
            for det in model.detectors_.values():
                det.prepare()   # here, not in the first batch after the swap
        except Exception as e:
            kind = type(e).__name__
            self._failed_fp = fp
            kept = self.model_version or "none"
            self.error(f"model {path} refused ({kind}: {e}); still using {kept}")
            self.last_reload = {"at": time.time(), "ok": False, "path": path, "error": f"{kind}: {e}",
                                "kept": kept}
            with self.reload_done:
                self.reloads += 1
                self.reload_done.notify_all()
            self._loading = False
            self._wake()
            return
        log.info("model %s (version %s) verified and loaded in %.1f s", path,
                 getattr(model, "model_version_", "?"), time.monotonic() - t0)
        self._failed_fp = None
        self._offered_fp = fp
        self.scorer.offer(model, fp, path)
        self._loading = False

    def model_switched(self, new: Any, had_old: bool, carried: Optional[bool]) -> None:
        """Scorer thread, between two batches: the new model is in use."""
        prev = self.model_version
        self.model_version = getattr(new, "model_version_", "unversioned")
        self.model_manifest = getattr(new, "manifest_", {}) or {}
        self.last_reload = {"at": time.time(), "ok": True, "path": self.scorer.model_path,
                            "version": self.model_version, "previous": prev,
                            "rate_windows": "carried over" if carried else ("empty" if had_old else "new")}
        if not had_old:
            log.info("scoring with model version %s", self.model_version)
        else:
            log.info("switched from model %s to %s (rate windows %s)", prev, self.model_version,
                     "carried over" if carried else "start empty")
        self.model_event.set()
        with self.reload_done:
            self.reloads += 1
            self.reload_done.notify_all()
        self._wake()

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
        self._check_model()
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
            if self._reload_wanted:
                self._reload_wanted = False
                log.info("reload requested")
                self._check_model(force=True)
            self._timers()
            self._backpressure()

    def _timers(self) -> None:
        now = time.monotonic()
        n = self._next
        if now >= n["watch"]:
            n["watch"] = now + self.cfg.watch_interval
            self._check_model()
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
            sock.setblocking(False)
            conn = _Conn(sock)
            self._accepted += 1
            if len(self._conns) >= MAX_CONNECTIONS:
                conn.wbuf += self._answer(None, False, code="overloaded", error="too many connections")
                conn.closing = True
                conn.reading = False
                self._conns[id(conn)] = conn
                self._sel.register(sock, selectors.EVENT_WRITE, ("conn", conn))
                continue
            self._conns[id(conn)] = conn
            self._sel.register(sock, selectors.EVENT_READ, ("conn", conn))

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            conn.eof = True
            if conn.rbuf:
                log.debug("connection closed in the middle of a request (%d bytes dropped)", len(conn.rbuf))
                conn.rbuf.clear()
            self._set_reading(conn, False)
            self._maybe_close(conn)
            return
        conn.rbuf += data
        while not conn.closing:
            nl = conn.rbuf.find(b"\n")
            if nl < 0:
                if len(conn.rbuf) > MAX_LINE:
                    self.counters.bad_requests += 1
                    self._respond(conn, self._answer(None, False, code="bad_request",
                                                     error=f"request line longer than {MAX_LINE} bytes"))
                    conn.rbuf.clear()
                    conn.closing = True
                    self._set_reading(conn, False)
                break
            line = bytes(conn.rbuf[:nl])
            del conn.rbuf[: nl + 1]
            if line.strip():
                self._on_request(conn, line)
        self._maybe_close(conn)

    @staticmethod
    def _answer(rid: Any, ok: bool, **rest: Any) -> bytes:
        return _dumps(dict({"id": rid, "ok": ok}, **rest)) + b"\n"

    @staticmethod
    def _done(rid: Any, status: str) -> bytes:
        """``_answer(rid, True, status=status)`` for the acknowledgement of every scored alert,
        without building and encoding a dict each time (the id is a checked str or int)."""
        return b'{"id":%s,"ok":true,"status":"%s"}\n' % (
            str(rid).encode() if type(rid) is int else _dumps(rid), status.encode())

    def _on_request(self, conn: _Conn, line: bytes) -> None:
        try:
            req = _loads(line)
        except ValueError:
            self.counters.bad_requests += 1
            self._respond(conn, self._answer(None, False, code="bad_request", error="not valid JSON"))
            return
        if not isinstance(req, dict):
            self.counters.bad_requests += 1
            self._respond(conn, self._answer(None, False, code="bad_request", error="request must be a JSON object"))
            return
        rid = req.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or (isinstance(rid, str) and len(rid) > MAX_ID_CHARS):
            self.counters.bad_requests += 1
            self._respond(conn, self._answer(None, False, code="bad_request",
                                             error=f"request needs an id (string up to {MAX_ID_CHARS} characters, or integer)"))
            return
        op = req.get("op")
        if op == "score":
            self._on_score(conn, rid, req.get("alert"))
        elif op == "status":
            self._respond(conn, self._answer(rid, True, status=self.status()))
        elif op == "ping":
            self._respond(conn, self._answer(rid, True, status="pong"))
        elif op == "reload":
            self.request_reload()
            self._respond(conn, self._answer(rid, True, status="reload requested"))
        else:
            self.counters.bad_requests += 1
            self._respond(conn, self._answer(rid, False, code="bad_request",
                                             error="unknown op (score, status, ping, reload)"))

    def _on_score(self, conn: _Conn, rid: Any, alert: Any) -> None:
        if not is_alert(alert):
            self.counters.rejected += 1
            self._respond(conn, self._answer(rid, False, code="bad_alert", error="alert has no rule object (not a Wazuh alert)"))
            return
        if is_own_event(alert):
            self.counters.skipped_own += 1
            self._respond(conn, self._answer(rid, True, status="skipped"))
            return
        if self._stopping:
            self._respond(conn, self._answer(rid, False, code="shutting_down", error="the scorer is stopping"))
            return
        if not self.ready:
            why = "no model loaded yet" if self.scorer.model is None else "scoring the spooled backlog first"
            self._respond(conn, self._answer(rid, False, code="not_ready", error=why))
            return
        self.counters.received += 1
        conn.pending += 1
        self.scorer.q.append(WorkItem(alert, "socket", (conn, rid)))

    def _respond(self, conn: _Conn, data: bytes) -> None:
        if conn.closed:
            return
        conn.wbuf += data
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.wbuf:
            try:
                n = conn.sock.send(conn.wbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # the client went away: its alerts were handled anyway
                self._close(conn)
                return
            del conn.wbuf[:n]
        self._update_interest(conn)
        self._maybe_close(conn)

    def _set_reading(self, conn: _Conn, on: bool) -> None:
        if conn.reading != on:
            conn.reading = on
            self._update_interest(conn)

    def _update_interest(self, conn: _Conn) -> None:
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

    def _maybe_close(self, conn: _Conn) -> None:
        if conn.closed or conn.wbuf:
            return
        if conn.closing or (conn.eof and conn.pending == 0):
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
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

    def _backpressure(self) -> None:
        """Stop reading requests while the scorer is far behind; the clients wait (or spool)."""
        full = len(self.scorer.q) >= self.cfg.high_water
        state = (full, self._stopping, self._accepted)
        if state == self._bp_state:   # runs every round: walk the connections only on a change
            return
        self._bp_state = state
        for conn in list(self._conns.values()):
            if not conn.eof and not conn.closing and not conn.closed:
                self._set_reading(conn, not full and not self._stopping)

    # -- completions ------------------------------------------------------------------------------
    def _process_completions(self) -> None:
        # Answers are gathered per connection and written with one send() each.
        touched: Dict[int, _Conn] = {}
        while self._completions:
            batch = self._completions.popleft()
            for it in batch:
                if it.source == "socket":
                    conn, rid = it.token
                    conn.pending -= 1
                    if conn.closed:
                        continue
                    if it.status in ("scored", "duplicate", "kept"):
                        conn.wbuf += self._done(rid, it.status)
                    else:
                        code = "not_ready" if it.status == "not_ready" else "internal"
                        conn.wbuf += self._answer(rid, False, code=code, error=it.error or it.status)
                    touched[id(conn)] = conn
                elif it.source == "follow":
                    self._follow_inflight -= 1
                    slot = it.token
                    if it.status in ("scored", "duplicate", "kept"):
                        slot.done = True
                    else:
                        self._follow_failed(it)
                elif it.source == "spool":
                    self._spool_inflight -= 1
                    if it.status not in ("scored", "duplicate", "kept"):
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
            alert = Spool.load(p, _loads)
            if alert is SPOOL_MISSING:
                continue
            if not is_alert(alert) or is_own_event(alert):
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
        self.error(f"alert {_printable(it.key, 80)} from {where} not handled ({it.error}); "
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
        for name in ("alerts", "events"):
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
            "counters": dict(c.__dict__),
            "flood": {"window_s": self.cfg.flood_window, "open": len(self.scorer.flood),
                      "suppressed": self.scorer.flood.suppressed, "summaries": self.scorer.flood.summaries},
            "queue_depth": len(self.scorer.q), "spool": sp, "connections": len(self._conns),
            "dedupe_window": {"size": len(self.scorer.handled), "max": self.cfg.dedupe_window},
            "engine_caches": {"max_entries": self.scorer.caches.entries, "cleared": self.scorer.caches.cleared,
                              "gc_collections": self.scorer.collections},
            "errors": [{"at": t, "message": msg} for t, msg in list(self.errors)[-10:]],
        }
        if self.follower is not None:
            bm = self.follower.bookmark
            st["follow"] = {"path": str(self.follower.path), "bookmark": bm.__dict__ if bm else None,
                            "in_flight": self._follow_inflight, "stats": dict(self.follower.stats)}
        return st

    def _write_status(self, running: bool = True) -> None:
        try:
            st = self.status()
            st["running"] = running
            st["written"] = time.time()
            p = self.cfg.state_dir / STATUS_NAME
            tmp = p.with_name(f".{p.name}.tmp")
            tmp.write_bytes(_dumps(st))
            os.chmod(tmp, 0o640)
            os.replace(tmp, p)
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


# --- command line -------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku serve`` (the lead wires it into cli.py)."""
    p = subparsers.add_parser("serve", help="run the resident scorer (socket, spool, --follow alerts.json)",
                              description=__doc__.split("\n\n")[0])
    add_arguments(p, verbose=False)  # ``mimizuku -v`` is the top-level flag there
    return p


def add_arguments(p: argparse.ArgumentParser, verbose: bool = True) -> None:
    p.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    p.add_argument("--options", help='integration <options> JSON (text or a file) for policy and paths: '
                                     'send, detectors, thresholds, min_severity, ignore_users, model_dir, spool_dir, queue, socket')
    p.add_argument("--model-dir", help="model directory or versions root with a 'current' pointer "
                                       "(default <home>/mimizuku/models)")
    p.add_argument("--socket", help="UNIX socket to listen on (default <home>/mimizuku/run/serve.sock)")
    p.add_argument("--spool-dir", help="spool of alerts and events (default <home>/mimizuku/spool)")
    p.add_argument("--queue", help="analysisd queue socket (default <home>/queue/sockets/queue)")
    p.add_argument("--state-dir", help="bookmark, handled-id journal, status (default <home>/mimizuku/run)")
    p.add_argument("--sink", choices=("queue", "api"), default="queue",
                   help="where events go: analysisd's queue socket (default) or the Wazuh API's POST /events "
                        "(a scorer not on the manager; see docs/api.md)")
    p.add_argument("--api-config", metavar="PATH", help="API credentials file for --sink api "
                                                       "(default /var/ossec/etc/mimizuku/api.json + MIMIZUKU_API_*)")
    p.add_argument("--follow", metavar="ALERTS_JSON", help="also tail this alerts.json (with a persisted bookmark)")
    p.add_argument("--from-start", action="store_true", help="with --follow and no bookmark yet: read the file from its start")
    p.add_argument("--follow-indexer", metavar="URL", nargs="?", const="",
                   help="follow the Wazuh indexer instead of a file, e.g. https://indexer:9200/wazuh-alerts-4.x-* "
                        "(no URL: 'url' of /var/ossec/etc/mimizuku/indexer.json or MIMIZUKU_INDEXER_URL; "
                        "credentials only from that file or MIMIZUKU_INDEXER_USER/PASSWORD; see docs/indexer.md)")
    p.add_argument("--indexer-lag", type=float, default=60.0, metavar="SECONDS",
                   help="with --follow-indexer: how late an alert may become searchable and still be scored (default 60)")
    p.add_argument("--indexer-interval", type=float, default=5.0, metavar="SECONDS",
                   help="with --follow-indexer: seconds between polls once caught up (default 5)")
    p.add_argument("--flood-window", type=float, default=DEFAULT_WINDOW,
                   help="seconds during which look-alike anomalies are aggregated (0: off; default 60)")
    p.add_argument("--max-batch", type=int, default=64,
                   help="most alerts scored together (default 64: answers go out after each batch)")
    p.add_argument("--cache-entries", type=int, default=CACHE_ENTRIES,
                   help="entries per engine memo cache (the detectors' drop their oldest quarter when full, the "
                        f"feature functions' are cleared when over): bounds memory (default {CACHE_ENTRIES}; larger trades memory for fewer "
                        "recomputations)")
    p.add_argument("--dedupe-window", type=int, default=200_000, help="alert ids remembered to drop duplicates")
    p.add_argument("--watch-interval", type=float, default=5.0, help="seconds between checks for a new model")
    p.add_argument("--socket-group", default="wazuh", help="group of the socket when run as root (default wazuh)")
    p.add_argument("--log-file", help="log here instead of standard error")
    if verbose:
        p.add_argument("-v", "--verbose", action="store_true", help="log more")


def _options_arg(value: Optional[str], home: Path) -> Options:
    if not value:
        return Options.defaults(home)
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except OSError as e:
            raise OptionsError(f"cannot read options file {value}: {e.strerror}") from e
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(text)
    try:
        return load_options(f.name, home)
    finally:
        os.unlink(f.name)


def config_from_args(a: argparse.Namespace) -> ServeConfig:
    home = Path(a.wazuh_home)
    opts = _options_arg(a.options, home)
    kw: Dict[str, Any] = {}
    for name in ("model_dir", "socket", "spool_dir", "queue", "state_dir"):
        v = getattr(a, name)
        if v:
            kw[name] = Path(v)
    for name in ("model_dir", "spool_dir", "queue"):
        if name in kw:
            setattr(opts, name, kw[name])
    if a.follow:
        kw["follow"] = Path(a.follow)
    if getattr(a, "follow_indexer", None) is not None:
        if a.follow:
            raise OptionsError("give --follow or --follow-indexer, not both")
        from mimizuku.sources.indexer import IndexerError, IndexerSource

        try:
            IndexerSource(a.follow_indexer or None)  # refuse a bad URL or an unsafe config file at start
        except IndexerError as e:
            raise OptionsError(str(e)) from None
        kw.update(follow_indexer=a.follow_indexer, indexer_lag=max(0.0, a.indexer_lag),
                  indexer_interval=max(0.2, a.indexer_interval))
    kw.update(cache_entries=max(1000, getattr(a, "cache_entries", CACHE_ENTRIES)))
    kw.update(from_start=a.from_start, flood_window=a.flood_window, max_batch=max(1, a.max_batch),
              dedupe_window=max(1, a.dedupe_window), watch_interval=max(0.2, a.watch_interval),
              socket_group=a.socket_group or None)
    if getattr(a, "sink", "queue") == "api":
        from mimizuku.delivery.wazuh_api import ApiConfigError, load_credentials

        kw["sink"] = "api"
        default = home / "etc" / "mimizuku" / "api.json"
        kw["api_config"] = (Path(a.api_config) if getattr(a, "api_config", None)
                            else default if os.path.lexists(default) else None)
        try:
            load_credentials(kw["api_config"], default_path=None)   # refuse a bad or unsafe credentials file at start
        except ApiConfigError as e:
            raise OptionsError(str(e)) from None
    return ServeConfig.for_home(home, options=opts, **kw)


def _setup_logging(a: argparse.Namespace) -> None:
    handler: logging.Handler
    if getattr(a, "log_file", None):
        handler = logging.FileHandler(a.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s mimizuku-serve[%(process)d] %(levelname)s: %(message)s"))
    root = logging.getLogger("mimizuku")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if getattr(a, "verbose", False) else logging.INFO)
    root.propagate = False


def run(a: argparse.Namespace) -> int:
    """Entry point of ``mimizuku serve``; returns the exit code."""
    for name in _MATH_THREADS:
        os.environ.setdefault(name, "1")   # before numpy is imported (by the model loader)
    _setup_logging(a)
    try:
        cfg = config_from_args(a)
    except OptionsError as e:
        log.error("%s", e)
        return EXIT_USAGE
    try:
        server = Server(cfg)
    except OSError as e:
        log.error("cannot set up the state directory %s: %s", cfg.state_dir, e)
        return EXIT_SOCKET
    return server.serve_forever()


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mimizuku serve", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
