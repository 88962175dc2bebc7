"""Training in partitions: one per archived day, read one after another or on a Dask cluster.

``mimizuku retrain`` reads its window of the archive as *partitions* — one per day of the
``logs/alerts`` tree (a day's file and its ``-001``, ``-002`` parts together), plus a live
``alerts.json`` that is not a day file's twin — or of the Wazuh indexer: one *slice* per UTC day
of its time field (``IndexerSource.day_slices``: half-open ``[midnight, next midnight)`` cut to the
window; together exactly the hits of one read). Each partition is read, passed through the
anomaly filter (the model in use; river's ``AnomalyFilter``) and counted by fresh detectors
(``Mimizuku.count_partition``), which gives a small picklable ``PartitionResult``: per-detector
situation counts, the context detector's maximum rates, first and last timestamps, the
reader's ``ReadStats`` and the filter's per-day counts and flagged ids. The driver merges them in
partition order and fits the detectors once on the merged counts (``Mimizuku.fit_partitions``).

Locally the partitions run sequentially in this process; with ``dask=ADDRESS`` they run as
tasks on a Dask cluster (``distributed``, imported only then). The same function does the work
in both cases, so the two models are equal. Semantics worth knowing:

* Per-stream state starts anew with each partition: the rate windows of the context detector
  (its "how often did this rule fire in the last 60 s") restart at midnight. Both paths do this.
* The model in use goes to the workers once, with ``Client.scatter(..., broadcast=True)``: the
  object the driver loaded from the verified model store (checksums, owners) is sent, so no
  worker ever unpickles a model file from disk, and workers need neither the model store nor
  root. Each worker thread works on its own copy (``Mimizuku.stream_copy``: rate windows, caches
  and the lineage's processes are per stream); the fitted arrays are shared read-only.
* Workers read the archive by path: every worker must see the archive at the same path
  (shared storage). A worker that cannot see the archive directory, or runs another Mimizuku
  version, fails the run (``DaskUnavailable``) rather than training on less.
* A corrupt file behaves as locally: the reader counts bad lines and damaged files.
* Indexer slices: each task reads its slice itself (its own point in time + ``search_after``).
  The task carries the URL, index, query, window and the settings that decide what is read,
  never a credential (``IndexerSlice`` drops its bound source when pickled; tasks get unbound
  copies): each worker builds its ``IndexerSource`` from its own config file or environment, so
  **every worker needs the same root-only** ``/var/ossec/etc/mimizuku/indexer.json`` (or
  ``MIMIZUKU_INDEXER_*`` variables) **as the driver**. A worker without credentials, or whose
  credentials are refused, fails the run (``DaskUnavailable``). Locally the same slices are read
  with the driver's source, so the models are equal. Unlike one read, the slices are not one
  frozen view: alerts indexed into an earlier day while the run reads are in it or not.
* Workers return counts, never alerts. Their results are unpickled here, in a job that runs as
  root: a scheduler outside this process is used only with Dask's mutual TLS (the job's client
  certificate, the cluster's CA; ``mimizuku.nightly.dask_security``), or over ``tcp://`` when the
  operator explicitly allows it (``--dask-insecure``, warned about loudly).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from mimizuku._version import __version__
from mimizuku.sources.archive import DAY_FILE_RE, MONTH_NUMBERS, YEAR_RE, Window, alerts_dir
from mimizuku.sources.decoding import MAX_LINE_BYTES
from mimizuku.sources.errors import ReadStats
from mimizuku.sources.reader import plan_source, read_plans

__all__ = ["Partition", "PartitionResult", "TrainingJob", "SharedInputs", "PartitionedFit",
           "DaskUnavailable", "WorkerUnfit", "partitions_of", "observe_partition", "add_stats"]

log = logging.getLogger("mimizuku.distributed_fit")

DEFAULT_DASK_TIMEOUT = 30.0


class DaskUnavailable(RuntimeError):
    """The Dask cluster cannot be used (unreachable, no workers, workers lost or unfit):
    nothing was trained."""


class WorkerUnfit(RuntimeError):
    """Raised on a worker that cannot do the task correctly (cannot see the archive, has no or
    refused indexer credentials, runs another Mimizuku version)."""


# --- partitions -------------------------------------------------------------------------------

@dataclass
class Partition:
    """A part of the training source read as one stream: usually one archived day."""

    label: str                          # "2025-01-08" (a day, or an indexer slice's UTC day), a file name, or the kind
    plans: List[Tuple[Any, ...]]        # mimizuku.sources.reader read plans, in order
    window: Any                         # the read window (sources.archive.Window), computed once
    base: Optional[str] = None          # archive directory a worker must see

    @property
    def shippable(self) -> bool:
        """Made of files (a worker reads them by path) and indexer slices (a worker reads them with
        its own credentials) only."""
        return all(p[0] == "file" or _is_slice(p) for p in self.plans)

    def for_worker(self) -> "Partition":
        """What goes to a Dask worker: indexer slices unbound from the driver's source (and so
        from its credentials)."""
        return dataclasses.replace(self, plans=[(p[0], p[1].unbound()) + tuple(p[2:]) if _is_slice(p) else p
                                                for p in self.plans])

    def alerts(self, stats: Any) -> Iterator[Dict[str, Any]]:
        return read_plans(self.plans, self.window, stats, False, MAX_LINE_BYTES, False)


def _is_slice(plan: Tuple[Any, ...]) -> bool:
    return plan[0] == "indexer" and getattr(plan[1], "is_slice", False) is True


def _day_label(path: Path) -> Optional[str]:
    m = DAY_FILE_RE.match(path.name)
    month = MONTH_NUMBERS.get(path.parent.name)
    year = path.parent.parent.name
    if m is None or month is None or not YEAR_RE.match(year):
        return None
    return f"{year}-{month:02d}-{m.group(1)}"


def partitions_of(source: Any, *, days: Optional[int] = None, since: Any = None, until: Any = None,
                  stats: Any = None) -> List[Partition]:
    """The partitions of ``source`` for a window (checks the source now, as ``iter_alerts`` does).

    An archive tree gives one partition per day (files in the reader's order), a live
    ``alerts.json`` its own; an indexer one per UTC day of the window (its slices, bound to the
    driver's source); anything else (records, a DataFrame, a stream) is one partition per kind,
    read in the driver even with Dask. Files met twice (same inode) are read once, counted in
    ``stats.duplicate_files`` as the reader does."""
    window = Window.make(days, since, until)
    if stats is None:
        stats = ReadStats()
    plans = plan_source(source, window, stats.unreadable_files)
    base = None
    if isinstance(source, (str, os.PathLike)) and os.path.isdir(source):
        base = str(alerts_dir(Path(os.fspath(source))))
    parts: List[Partition] = []
    seen: set = set()
    for plan in plans:
        if plan[0] == "indexer" and hasattr(plan[1], "day_slices"):
            for sl in plan[1].day_slices(window.lo, window.lo_wall, window.hi, window.hi_wall):
                parts.append(Partition(sl.label, [("indexer", sl)], window, None))
            continue
        if plan[0] == "file":
            try:
                st = os.stat(plan[1])
                ino = (st.st_dev, st.st_ino)
                if ino in seen:
                    stats.duplicate_files += 1
                    continue
                seen.add(ino)
            except OSError:
                pass  # the reader records it as unreadable
            label = (_day_label(Path(plan[1])) if plan[2] else None) or Path(plan[1]).name
        else:  # records, frames, streams (read in the driver), a bare indexer slice: one partition
            label = str(plan[0])
        prev = parts[-1] if parts else None
        if prev is not None and prev.label == label and prev.plans[0][0] == plan[0] and not _is_slice(plan):
            prev.plans.append(plan)
        else:
            where = None
            if plan[0] == "file":  # what a worker must see: the archive, or the file's directory
                where = base if plan[2] and base else str(Path(plan[1]).parent)
            parts.append(Partition(label, [plan], window, where))
    return parts


# --- the task ---------------------------------------------------------------------------------

@dataclass
class TrainingJob:
    """What every partition's task needs besides the shared inputs (small, sent with each task)."""

    params: Dict[str, Any]
    exclude: bool = True
    version: str = __version__
    private_copy: bool = False          # on workers: copy the shared model per thread


@dataclass
class SharedInputs:
    """Sent to each worker once: the model in use (or None) and the recorded verdicts."""

    model: Any = None
    verdicts: Dict[str, Any] = field(default_factory=dict)


@dataclass
class PartitionResult:
    label: str
    partial: Any                        # model.PartialFit
    filter_state: Dict[str, Any]        # retrain.AnomalyFilter.partial_state()
    stats: Any                          # alerts.ReadStats
    worker: Optional[str] = None


_THREAD = threading.local()


def _thread_copy(model: Any) -> Any:
    """This thread's own copy of the shared model: detectors keep per-stream state (rate windows)
    and caches, which tasks running side by side on one worker must not share. Fitted arrays
    are shared (read-only); the copy is kept for the thread's next tasks (warm caches)."""
    held = getattr(_THREAD, "held", None)
    if held is not None and held[0] is model:
        return held[1]
    mine = model.stream_copy()
    _THREAD.held = (model, mine)
    return mine


def observe_partition(part: Partition, shared: SharedInputs, job: TrainingJob) -> PartitionResult:
    """Read one partition, filter it with the model in use, count it with fresh detectors.

    Runs in the driver (local training) or on a Dask worker; returns counts, never alerts."""
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.nightly.anomaly_filter import AnomalyFilter
    from mimizuku.sources.reader import ReadStats

    worker = None
    if job.private_copy:
        worker = _worker_name()
        if job.version != __version__:
            raise WorkerUnfit(f"worker {worker} runs Mimizuku {__version__}, the driver {job.version}: "
                              f"install the same version on every worker")
        if part.base is not None and not os.path.isdir(part.base):
            raise WorkerUnfit(f"worker {worker} cannot see the archive {part.base!r}: every worker needs "
                              f"the archive at the same path (shared storage)")
    opened: List[Any] = []
    if job.private_copy and any(_is_slice(p) for p in part.plans):
        part, opened = _open_slices(part, worker)
    current = shared.model
    if current is not None and job.private_copy:
        current = _thread_copy(current)
    stats = ReadStats()
    filt = AnomalyFilter(current, exclude=job.exclude, verdicts=shared.verdicts)
    new = Mimizuku(**job.params)
    reused = filt.share_keys(new)
    try:
        partial = new.count_partition(filt(part.alerts(stats), with_keys=bool(reused)), shared_keys=reused)
    except Exception as e:
        if opened:
            from mimizuku.sources.indexer import IndexerAuthError

            if isinstance(e, IndexerAuthError):  # this worker's credentials are refused
                raise WorkerUnfit(f"worker {worker} cannot read the indexer slice {part.label}: {e}") from None
        raise
    finally:
        for src in opened:
            src.close()
    return PartitionResult(part.label, partial, filt.partial_state(), stats, worker)


def _open_slices(part: Partition, worker: Optional[str]) -> Tuple[Partition, List[Any]]:
    """The partition with its indexer slices bound to sources this worker builds from its own
    config file / environment (credentials never travel with the task)."""
    from mimizuku.sources.indexer import IndexerError

    plans: List[Tuple[Any, ...]] = []
    opened: List[Any] = []
    try:
        for p in part.plans:
            if _is_slice(p):
                src = p[1].open()
                opened.append(src)
                p = (p[0], p[1].bind(src)) + tuple(p[2:])
            plans.append(p)
    except IndexerError as e:
        for src in opened:
            src.close()
        raise WorkerUnfit(f"worker {worker} cannot read the indexer slice {part.label}: {e}") from None
    return dataclasses.replace(part, plans=plans), opened


def _worker_name() -> Optional[str]:
    try:
        from distributed import get_worker

        return str(get_worker().address)
    except Exception:  # not on a worker
        return None


def add_stats(total: Any, part: Any) -> None:
    """Add one partition's ``ReadStats`` to ``total`` (counts add up, file lists extend)."""
    for f in dataclasses.fields(total):
        mine, theirs = getattr(total, f.name), getattr(part, f.name)
        if isinstance(mine, list):
            mine.extend(x for x in theirs if f.name != "damaged_files" or x not in mine)
        else:
            setattr(total, f.name, mine + theirs)


# --- the driver -------------------------------------------------------------------------------

class PartitionedFit:
    """Train a new model from a source read in partitions, locally or on Dask.

    ``filter`` (an ``AnomalyFilter`` without a model) and ``stats`` hold the totals of what was
    read and judged, filled as the partitions are merged — also when training then fails for
    lack of data. ``current``: the model in use (the anomaly filter), or None."""

    def __init__(self, current: Any, params: Dict[str, Any], *, exclude: bool = True,
                 verdicts: Optional[Dict[str, Any]] = None, progress: bool = False,
                 on_partition: Optional[Callable[[str], None]] = None,
                 dask_timeout: float = DEFAULT_DASK_TIMEOUT, dask_tls: Any = None,
                 dask_insecure: bool = False) -> None:
        from mimizuku.nightly.anomaly_filter import AnomalyFilter
        from mimizuku.sources.reader import ReadStats

        self.current = current
        self.params = dict(params)
        self.exclude = exclude
        self.verdicts = dict(verdicts or {})
        self.progress = progress
        self.on_partition = on_partition
        self.dask_timeout = float(dask_timeout)
        self.dask_tls = dask_tls            # nightly.dask_security.DaskTLS: mutual TLS with the cluster
        self.dask_insecure = dask_insecure  # a scheduler without TLS was explicitly allowed
        self.filter = AnomalyFilter(None, exclude=exclude, verdicts=self.verdicts)
        self.stats = ReadStats()
        self.partitions: List[str] = []
        self.workers: List[str] = []

    def fit(self, source: Any, *, days: Optional[int] = None, since: Any = None, until: Any = None,
            dask: Optional[str] = None) -> Any:
        """The new (fitted) ``Mimizuku``; raises ``AlertSourceError``, ``NotEnoughData``,
        ``ValueError`` (parameters) and, with ``dask``, ``DaskUnavailable``."""
        from mimizuku.engine.estimator import Mimizuku

        Mimizuku(**self.params).validate_params()  # bad parameters fail before any reading
        parts = partitions_of(source, days=days, since=since, until=until, stats=self.stats)
        shared = SharedInputs(self.current, self.verdicts)
        if dask:
            results = self._on_dask(dask, parts, shared)
        else:
            results = (observe_partition(p, shared, TrainingJob(self.params, self.exclude)) for p in parts)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=len(parts), desc="reading and counting" + (" on Dask" if dask else ""),
                       unit="day", leave=False)
        try:
            model = Mimizuku(**self.params).fit_partitions(self._merged(results, bar), self.stats,
                                                           progress=self.progress)
        finally:
            if bar is not None:
                bar.close()
            close = getattr(results, "close", None)
            if close is not None:
                close()
        return model

    def _merged(self, results: Iterator[PartitionResult], bar: Any) -> Iterator[Any]:
        for r in results:
            add_stats(self.stats, r.stats)
            self.filter.merge_state(r.filter_state)
            self.partitions.append(r.label)
            if r.worker and r.worker not in self.workers:
                self.workers.append(r.worker)
            if bar is not None:
                bar.update(1)
            if self.on_partition is not None:
                self.on_partition(r.label)
            yield r.partial

    # -- Dask -----------------------------------------------------------------------------------
    def _on_dask(self, address: str, parts: Sequence[Partition], shared: SharedInputs) -> Iterator[PartitionResult]:
        """Results in partition order; tasks run on the cluster meanwhile.

        A scheduler outside this process is reached only with mutual TLS (``dask_tls``) or when
        ``dask_insecure`` says so: workers' results are unpickled here (issue 17, item 2)."""
        from mimizuku.nightly.dask_security import needs_tls

        if needs_tls(address) and self.dask_tls is None and not self.dask_insecure:
            raise DaskUnavailable(f"refusing the Dask scheduler at {address} without mutual TLS "
                                  f"(dask_tls) or an explicit dask_insecure=True")
        try:
            from distributed import Client
        except ImportError as e:
            raise DaskUnavailable(f"--dask needs Dask's distributed package ({e}); install mimizuku[cluster]") from None
        try:
            security = self.dask_tls.security() if self.dask_tls is not None else None
            client = Client(address, timeout=self.dask_timeout, set_as_default=False, security=security)
        except Exception as e:  # OSError, TimeoutError, a malformed address
            raise DaskUnavailable(f"cannot reach the Dask scheduler at {address}: {type(e).__name__}: {e}") from None
        futures: Dict[int, Any] = {}
        try:
            try:
                client.wait_for_workers(1, timeout=self.dask_timeout)
            except Exception as e:
                raise DaskUnavailable(f"the Dask scheduler at {address} has no workers "
                                      f"(waited {self.dask_timeout:g} s): {type(e).__name__}: {e}") from None
            job = TrainingJob(self.params, self.exclude, private_copy=True)
            token = secrets.token_hex(4)
            try:
                shared_f = client.scatter(shared, broadcast=True, hash=False)
                for i, p in enumerate(parts):
                    if p.shippable:
                        futures[i] = client.submit(observe_partition, p.for_worker(), shared_f, job, pure=False,
                                                   key=f"mimizuku-train-{token}-{i:05d}")
            except Exception as e:
                raise DaskUnavailable(f"the Dask cluster at {address} failed: {type(e).__name__}: {e}") from None
            log.info("%d partition(s) sent to the Dask cluster at %s (%d worker(s))", len(futures), address,
                     len(client.scheduler_info().get("workers", {})))
            for i, p in enumerate(parts):
                if i not in futures:  # records, frames, streams: read here
                    yield observe_partition(p, shared, TrainingJob(self.params, self.exclude))
                    continue
                fut = futures.pop(i)
                try:
                    r = fut.result()
                except Exception as e:
                    if _cluster_failure(e):
                        raise DaskUnavailable(f"Dask training failed on partition {p.label}: "
                                              f"{type(e).__name__}: {e}") from None
                    raise  # a bug in the task: as it would be locally
                finally:
                    fut.release()
                yield r
        finally:
            for fut in futures.values():
                try:
                    fut.cancel()
                except Exception:
                    pass
            try:
                client.close(timeout=min(self.dask_timeout, 10.0))
            except Exception:
                pass


def _cluster_failure(e: BaseException) -> bool:
    """Whether a task's exception says the cluster failed (not our code)."""
    if isinstance(e, (WorkerUnfit, OSError, TimeoutError)):
        return True
    names = {c.__name__ for c in type(e).__mro__}
    return bool(names & {"KilledWorker", "CancelledError", "FutureCancelledError", "CommClosedError",
                         "FuturesCancelledError", "TimeoutError", "WorkerLost"})
