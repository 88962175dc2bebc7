"""The scoring pipeline: alerts from every feed become events, one micro-batch at a time.

The server's loop (:mod:`mimizuku.serve.server`) reads alerts from the socket, the spool and the
followed file into :class:`WorkItem` s; between two rounds of I/O the :class:`Scorer` takes what was
read in micro-batches, skips alert ids it already handled (:mod:`mimizuku.serve.handled`), scores
them, applies the policy of the integration options, passes anomalies through flood control
(:mod:`mimizuku.delivery.flood`), sends the events (:func:`make_event_sink`), records the ids, and
only then hands the batch back to the server to answer. Kept apart from the loop because it is
what decides an alert's fate, whatever feed it came from; the loop only moves bytes.
"""
from __future__ import annotations

import collections
import gc
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Deque, Dict, List, Optional, Tuple

from mimizuku.core import quarantine
from mimizuku.core.alert_identity import alert_key, canonical_json
from mimizuku.core.spool import OWNER_LOCK, Spool, SpoolError, hold_owner, release_owner
from mimizuku.core.text import printable
from mimizuku.delivery import events
from mimizuku.delivery.flood import FloodControl
from mimizuku.delivery.queue_socket import QueueSink
from mimizuku.engine import stream_snapshot as snapshot
from mimizuku.engine.policy import SendPolicy
from mimizuku.integratord import protocol
from mimizuku.serve.caches import EngineCaches
from mimizuku.serve.config import JOURNAL_NAME, ServeConfig
from mimizuku.serve.handled import HandledIds
from mimizuku.serve.reload import carry_stream_state

if TYPE_CHECKING:  # pragma: no cover
    from mimizuku.serve.server import Server

#: scored alerts between two collections of the cyclic GC (see Scorer._collect) ...
FREEZE_EVERY = 20_000
#: ... or sooner, once this many tracked objects were allocated (net) since the last one
GC_YOUNG_LIMIT = 200_000


# --- work items ---------------------------------------------------------------------------------

class WorkItem:
    """One alert on its way through the pipeline, with where to report its completion.

    Making one never raises: an alert that cannot be identified (``alert_key`` failed) gets a
    ``fault`` instead of a key, and the scorer sets it aside (:meth:`Scorer.set_aside`) rather
    than letting the exception out of the server's loop (issue 17 item 4)."""

    __slots__ = ("alert", "key", "hash", "source", "token", "status", "error", "received", "fault")

    def __init__(self, alert: Dict[str, Any], source: str, token: Any):
        self.alert = alert
        self.fault: Optional[str] = None
        try:
            self.key = alert_key(alert)
            self.hash = HandledIds.digest(self.key)
        except Exception as e:
            self.key, self.hash = "?", None
            self.fault = f"cannot identify the alert: {type(e).__name__}: {printable(e, 300)}"
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
    quarantined: int = 0
    anomalies: int = 0
    events_sent: int = 0
    events_spooled: int = 0
    events_not_kept: int = 0     # events neither sent nor kept: their alerts were not acknowledged
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
        self.quarantine = cfg.spool_dir / quarantine.DIR_NAME
        self.sink = make_event_sink(cfg, server.logfn)
        self.index_sink = make_index_sink(cfg, server.logfn)
        # while this runs, integratord calls leave the spool to it (core/spool.py: owner_alive)
        self.spool_owner = hold_spool_owner(cfg.spool_dir, server)
        self.carried_state: Optional[bool] = None
        self.hold = threading.Event()   # tests: set to make the scorer stall (a slow daemon)
        self.fingerprint: Any = None
        self._next_retry = 0.0
        self._next_stream_save = time.monotonic() + cfg.stream_state_interval
        self._scored_at_save = 0

    # -- model swap (between batches only) --------------------------------------------------------
    def offer(self, model: Any, fingerprint: Any, path: str) -> None:
        """Loader thread: a verified model is ready; it is swapped in before the next batch."""
        with self._pending_lock:
            self._pending = (model, fingerprint, path)
        self.server.wake()   # swap even when idle

    def _swap(self) -> None:
        if self._pending is None:
            return
        with self._pending_lock:
            pending, self._pending = self._pending, None
        if pending is None:
            return
        new, fp, path = pending
        old = self.model
        carried = carry_stream_state(old, new) if old is not None else self._continue_stream(new)
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
            if self.cfg.stream_state_interval > 0 and now >= self._next_stream_save:
                self._next_stream_save = now + self.cfg.stream_state_interval
                if self.server.counters.scored != self._scored_at_save:
                    self.save_stream()
            if now >= self._next_retry:
                # events analysisd did not take: resend them even when no new event comes
                self._next_retry = now + self.cfg.event_retry_interval
                if self.sink.pending():
                    self.sink.flush(now + 1.0)
            if self.index_sink is not None:   # documents lingering or kept while the indexer was down
                self.index_sink.flush(now + 1.0)
        except Exception as e:  # never die: report, fail the batch, go on
            self.server.error(f"scorer: {type(e).__name__}: {e}")
            for it in batch:
                if it.status == "queued":
                    it.status, it.error = "failed", f"internal error: {type(e).__name__}"
            self.server.complete(batch)

    # -- the stream state on disk (mimizuku.engine.stream_snapshot) ------------------------------
    @property
    def stream_file(self) -> Path:
        return self.cfg.spool_dir / snapshot.FILE_NAME

    def _continue_stream(self, model: Any) -> Optional[bool]:
        """The first model goes on with the stream the last run (or the in-process path) left:
        True when something was taken, None when there was nothing to take."""
        if self.cfg.stream_state_interval <= 0:
            return None
        try:
            taken = snapshot.restore_snapshot(self.stream_file, model)
        except snapshot.SnapshotError as e:
            self.server.error(f"stream state not used ({printable(e, 300)}); rate windows start empty")
            return False
        return None if taken is None else any(taken.values())

    def save_stream(self) -> None:
        """Write what the model follows now (atomic; a failure is reported, scoring goes on)."""
        if self.model is None:
            return
        self._scored_at_save = self.server.counters.scored
        try:
            snapshot.save_snapshot(self.stream_file, self.model)
        except OSError as e:
            self.server.error(f"cannot write the stream state to {self.stream_file}: {e.strerror or e}")

    def finish(self) -> None:
        """At shutdown, after the last batch: the flood summaries, then close the sink and journal."""
        try:
            self._send(self.flood.flush_all())
            if self.cfg.stream_state_interval > 0:
                self.save_stream()
        finally:
            self.sink.close()
            if self.index_sink is not None:
                self.index_sink.close()
            self.handled.close()
            release_owner(self.spool_owner)
            self.spool_owner = None

    # -- one batch ------------------------------------------------------------------------------
    def process(self, batch: List[WorkItem]) -> None:
        c = self.server.counters
        fresh: List[WorkItem] = []
        seen = set()
        for it in batch:
            if it.fault is not None:
                self.set_aside(it, it.fault)
            elif it.hash in self.handled or it.hash in seen:
                it.status = protocol.DUPLICATE
                c.duplicates += 1
            else:
                seen.add(it.hash)
                fresh.append(it)
        if fresh and self.model is None:
            for it in fresh:
                it.status, it.error = protocol.NOT_READY, "no model loaded"
            self.server.complete(batch)
            return
        ok = self._deliver(self._score(fresh) if fresh else [])
        # set aside: remembered like a scored alert, so a client's retry is a duplicate, not a
        # second quarantine (and a second log line)
        self.handled.add([it.hash for it in fresh if it.status == protocol.QUARANTINED])
        scored = [it for it in fresh if it.status == "queued"]
        if ok:
            self.handled.add([it.hash for it in scored])
            for it in scored:
                it.status = protocol.SCORED
            c.scored += len(scored)
        else:
            for it in scored:
                it.status, it.error = "failed", "events can neither be sent nor kept"
        c.batches += 1
        for it in batch:
            if it.source == "spool" and it.status in protocol.SETTLED:
                Spool.ack(it.token)
        self.server.complete(batch)

    def _score(self, items: List[WorkItem]) -> List[Tuple[WorkItem, Dict[str, Any]]]:
        """Each item with its record (items no detector applies to have none). When the engine
        raises on the batch, each alert is scored alone to find the culprit, which is set aside."""
        alerts = [it.alert for it in items]
        try:
            scored = list(self.model.iter_scored(alerts, new_stream=False, batch_size=max(1, len(alerts))))
            if len(scored) != len(items):   # the server queues alerts only: one answer each
                raise RuntimeError(f"{len(scored)} results for {len(items)} alerts")
        except Exception as e:
            if len(items) == 1:
                self.server.counters.engine_failed += 1
                self.set_aside(items[0], f"engine failed: {type(e).__name__}: {printable(e, 300)}")
                return []
        else:
            return [(it, s.record) for it, s in zip(items, scored) if s.record is not None]
        out: List[Tuple[WorkItem, Dict[str, Any]]] = []
        for it in items:  # split: score alone each alert, set aside those the engine cannot take
            out.extend(self._score([it]))
        return out

    def _deliver(self, scored: List[Tuple[WorkItem, Dict[str, Any]]]) -> bool:
        c = self.server.counters
        to_send: List[Dict[str, Any]] = []
        policy = SendPolicy(self.cfg.options)
        for it, rec in scored:  # in order: a repeat counts into the burst its anomaly opened
            try:
                if rec.get("anomaly"):
                    c.anomalies += 1
                else:  # whether the policy sends it (send "all") or not
                    self.flood.count_repeat(rec)
                out = policy.send(rec)
                if out is not None:
                    to_send.extend(self.flood.admit(out))
            except Exception as e:   # this alert's record: set it aside, the batch goes on
                self.set_aside(it, f"policy or flood control failed: {type(e).__name__}: {printable(e, 300)}")
        ok = self._send(to_send)
        if self.index_sink is not None:
            ok = self._index([(rec, it.alert) for it, rec in scored if it.status == "queued"]) and ok
        return ok

    def _index(self, pairs: List[Tuple[Dict[str, Any], Dict[str, Any]]]) -> bool:
        """The batch's documents into the indexer's data stream (kept in ``<spool>/index`` until
        it takes them); False when they can be neither sent nor kept: the alerts are then not
        settled and are scored again (their documents' ids make that harmless)."""
        try:
            self.index_sink.add(pairs)
        except SpoolError as e:
            self.server.error(f"{len(pairs)} alerts scored, but their index documents can neither be sent nor kept "
                              f"({e}); the alerts are not acknowledged and are scored again")
            return False
        return True

    def set_aside(self, it: WorkItem, why: str) -> None:
        """Handling this one alert raised: keep it in the quarantine directory, say so once, count
        it, and settle it (``quarantined``: the client stops resending it, the spool file goes,
        the bookmark moves on) -- only once the copy is on disk. When the quarantine cannot take
        it (full, not writable) the alert fails instead and stays where it came from: the client
        keeps it in its spool, a spool file is renamed ``*.bad`` beside the others (logged)."""
        payload = None
        if it.source == "spool":
            try:
                payload = Path(it.token).read_bytes()   # the file as it was kept
            except OSError:
                payload = None
        if payload is None:
            payload = canonical_json(it.alert)
        where = {"socket": "client", "spool": "alert spool", "follow": "followed source"}.get(it.source, it.source)
        try:
            path = quarantine.set_aside(self.quarantine, payload, why)
        except quarantine.QuarantineFull as e:
            it.status, it.error = "failed", f"{why}; not set aside: {e}"
            if it.source == "spool":
                bad = Spool.set_aside_bad(Path(it.token), self.server.logfn, f"{why}; quarantine refused it: {e}")
                self.server.error(f"alert {printable(it.key, 80)} from the alert spool could not be handled "
                                  f"({why}) nor quarantined ({e}); left as {bad}")
            else:
                self.server.error(f"alert {printable(it.key, 80)} from the {where} could not be handled ({why}) "
                                  f"nor quarantined ({e}); it stays with its source, which is told it failed")
            return
        it.status = protocol.QUARANTINED
        self.server.counters.quarantined += 1
        self.server.error(f"alert {printable(it.key, 80)} from the {where} set aside as {path}: {why}")

    def set_aside_spooled(self, path: Path, why: str) -> None:
        """A spooled alert no decoder takes (too deep): into the quarantine (``*.bad`` if it
        refuses), logged and counted, so it never blocks the spool nor stops the loop."""
        try:
            kept = quarantine.set_aside(self.quarantine, path.read_bytes(), why)
        except FileNotFoundError:
            return
        except OSError as e:   # QuarantineFull included
            Spool.set_aside_bad(path, self.server.logfn, f"{why}; quarantine refused it: {e}")
            return
        Spool.ack(path)
        self.server.counters.quarantined += 1
        self.server.error(f"spooled alert {path.name} set aside as {kept}: {why}")

    def _send(self, records: List[Dict[str, Any]]) -> bool:
        if isinstance(self.sink, NoEventSink):   # --sink none: the index documents are the output
            return True
        c = self.server.counters
        ok = True
        for rec in records:
            try:
                msg = event_message(rec)
            except Exception as e:   # this record's event only; the alert was scored
                self.server.error(f"alert {printable(rec.get('id'), 80)} scored, but its event cannot be built "
                                  f"({type(e).__name__}: {printable(e, 300)}); no event sent for it")
                continue
            try:
                if self.sink.send(msg):
                    c.events_sent += 1
                else:
                    c.events_spooled += 1
            except SpoolError as e:
                c.events_not_kept += 1
                self.server.error(f"alert {printable(rec.get('id'), 80)} scored, but its event can neither be sent "
                                  f"nor kept ({e}); the alert is not acknowledged: it stays with its client, in the "
                                  "alert spool or in the followed file, and is scored again")
                ok = False
        return ok


def hold_spool_owner(spool_dir: Any, server: Any) -> Optional[int]:
    """The spool's owner lock (:func:`mimizuku.core.spool.hold_owner`), or None, said, when it
    cannot be had: the scorer still works, calls then flush the event spool as without it."""
    try:
        fd = hold_owner(spool_dir)
    except SpoolError as e:
        server.error(f"{e}; integratord calls will flush the event spool themselves")
        return None
    if fd is None:
        server.error(f"another process holds {spool_dir}/{OWNER_LOCK}: is a second scorer using this spool?")
    return fd


class NoEventSink:
    """``--sink none`` (Wazuh 5.x): there is no analysisd to take an event, anomalies reach the
    indexer as documents instead (``--index-url``, required with it). Nothing is sent or kept."""

    def send(self, msg: bytes) -> bool:
        return True

    def pending(self) -> int:
        return 0

    def flush(self, deadline: Optional[float] = None, limit: Optional[int] = None) -> int:
        return 0

    def close(self) -> None:
        return None


def make_event_sink(cfg: ServeConfig, logfn: Any) -> Any:
    """The configured sink; queue and api keep what they cannot send in ``<spool>/events`` (same
    format); none sends nothing (:class:`NoEventSink`)."""
    if cfg.sink == "none":
        return NoEventSink()
    if cfg.sink == "api":
        from mimizuku.delivery.api_sink import sink_from_config

        return sink_from_config(cfg.api_config, cfg.spool_dir / "events", log=logfn, default_path=None)
    return QueueSink(cfg.queue, cfg.spool_dir / "events", log=logfn)


def make_index_sink(cfg: ServeConfig, logfn: Any) -> Any:
    """The anomaly-document sink (``--index-url``), or None; it keeps what the indexer has not
    taken in ``<spool>/index`` (documents it refused: ``<spool>/index-rejected``) and sends from
    a thread of its own, so bulk writes never hold up scoring."""
    from mimizuku.delivery.index_sink import sink_for

    sink = sink_for(cfg, cfg.spool_dir / "index", logfn, default_path=None)
    return sink.start() if sink is not None else None


def event_message(rec: Dict[str, Any]) -> bytes:
    """The datagram for a record; flood summaries carry ``mimizuku.flood`` and ``flood_count``."""
    payload = events.build_payload(rec)
    fl = rec.get("flood")
    if isinstance(fl, dict):
        inner = payload[events.TAG]
        inner["flood"] = {k: v for k, v in fl.items() if v is not None}
        inner["flood_count"] = int(fl.get("count") or 0)
    return events.encode_message(events.location(rec.get("agent")), payload)
