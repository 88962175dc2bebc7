"""``mimizuku retrain``: the nightly job the ``<wodle name="command">`` runs.

One run, under an exclusive lock on the model root:

1. cleans what an interrupted run left (``versions.ModelStore.clean_leftovers``);
2. reads the archive of the last ``--days`` days plus today (with ``--day``, the ``--days`` days
   ending on it: a run for a past day reads nothing after it; the reader drops the plugin's own
   events) one day at a time — here, or on a Dask cluster with ``--dask ADDRESS``
   (``mimizuku.nightly.partitions``: the same code, the same model; rate windows restart at
   midnight either way) — and, river's ``AnomalyFilter``: never learn from what you flagged,
   drops every alert the current model flags before the new model sees it;
3. trains every detector, then validates the new model: enough alerts per detector, calibrated
   scores, and an anomaly rate on the most recent day within bounds of the current model's rate
   on the same day. A model that fails is not installed: the current one stays (``kept``);
4. installs it as a new version (``versions/<version>``, ``current`` switched atomically, the
   last ``--keep`` versions kept) and checks that it loads as the scorer will load it;
5. analyses the previous day with the model now in use (``batch``): scores, DBSCAN clusters,
   SQL, syslog, and the HTML report;
6. prints ONE JSON line (the README's Wazuh section, "The nightly job's summary line") and exits with a code.

Exit codes (those of the ``mimizuku`` CLI where they fit):

  0    ok: the new model is in use (warnings, e.g. a database that was down, are in the line)
  1    failed: unexpected internal error (a bug); the current model is untouched
  2    failed: bad arguments (also: a --wazuh-home that is not one, a Dask scheduler without mutual
       TLS and without --dask-insecure, missing or unsafe TLS files); nothing was created or connected
  3    failed: no alerts could be read (source missing or empty window; with ``--dask``: the
       scheduler unreachable, no workers, workers lost or unable to read the archive or the indexer); the
       current model is untouched
  4    failed: the current model cannot be used (tampered, unsafe) or the new one did not install
  5    kept/failed: not enough data to train any detector
  6    failed: another retrain or rollback holds the lock; this run did nothing
  7    kept/failed: the new model failed validation (``kept`` when a current model exists)
  143  failed: terminated by SIGTERM (the wodle's ``<timeout>``)

Output discipline: ``wazuh-modulesd`` sends every line of the command's stdout AND stderr to
analysisd (``wm_exec`` points both at one pipe). With ``--summary-json`` the job therefore writes
nothing but the summary line: file descriptors 1 and 2 are pointed at the log file
(``<wazuh-home>/logs/mimizuku/retrain.log``) for the whole run — stray prints and C-level
warnings included — unless stderr is a terminal, where logs and progress bars stay visible.
"""
from __future__ import annotations

import json
import logging
import os
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mimizuku.nightly.anomaly_filter import AnomalyFilter
from mimizuku.nightly.config import RetrainConfig, printable_line
from mimizuku.nightly.judged_days import load_verdicts, save_verdicts
from mimizuku.nightly.validation import Validation, choose_validation_day, validate
from mimizuku.store.versions import Locked, ModelStore, VersionError, resolve_model_dir

__all__ = ["retrain", "summary_line", "usage_error_summary", "found_anomalies", "Terminated"]

log = logging.getLogger("mimizuku.retrain")

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_DATA = 0, 1, 2, 3, 4, 5
EXIT_LOCKED, EXIT_REFUSED, EXIT_TERMINATED = 6, 7, 143

SUMMARY_MAX_BYTES = 60 * 1024  # the README's Wazuh section: keep the line under 64 KiB
PAUSE_ENV = "MIMIZUKU_RETRAIN_PAUSE_AT"  # test/debug aid: stage names at which to sleep


class Terminated(BaseException):
    """SIGTERM arrived (the wodle's timeout kills the process group with it)."""


# --- the run ------------------------------------------------------------------------------------

def _ms(t0: float) -> int:
    return int(round((time.monotonic() - t0) * 1000))


def _pause(stage: str) -> None:
    """Test and debugging aid: sleep at ``stage`` when ``$MIMIZUKU_RETRAIN_PAUSE_AT`` names it."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or stage not in wanted.split(","):
        return
    secs = float(os.environ.get("MIMIZUKU_RETRAIN_PAUSE_SECONDS", "60"))
    log.warning("paused at stage %r for %.0f s (%s)", stage, secs, PAUSE_ENV)
    try:
        os.write(2, f"mimizuku retrain: paused at {stage}\n".encode())
    except OSError:
        pass
    time.sleep(secs)


class _Run:
    """State of one run, turned into the summary line at the end."""

    def __init__(self, cfg: RetrainConfig):
        self.cfg = cfg
        self.t0 = time.monotonic()
        self.started = datetime.now(timezone.utc)
        self.status = "failed"
        self.code = EXIT_INTERNAL
        self.version: Optional[str] = None
        self.previous: Optional[str] = None
        self.candidate: Optional[str] = None
        self.error: Optional[str] = None
        self.warnings: List[str] = []
        self.counts: Dict[str, Any] = {}
        self.durations: Dict[str, int] = {}
        self.validation: Optional[Validation] = None
        self.report: Optional[str] = None
        self.day: Optional[str] = None
        self.found: List[Dict[str, Any]] = []  # the analysed day's anomalies, most anomalous first
        self.syslog_file: Optional[str] = None  # where the day's syslog lines went, when to a file

    def fail(self, code: int, error: str, status: str = "failed") -> None:
        self.code, self.status, self.error = code, status, printable_line(error)

    def warn(self, text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(printable_line(text, 300))

    def summary(self) -> Dict[str, Any]:
        self.durations["total"] = _ms(self.t0)
        inner: Dict[str, Any] = {"job": "retrain", "status": self.status, "version": self.version or ""}
        if self.error:
            inner["error"] = self.error
        if self.previous:
            inner["previous_version"] = self.previous
        if self.candidate and self.candidate != self.version:
            inner["candidate_version"] = self.candidate
        if self.day:
            inner["day"] = self.day
        inner["counts"] = self.counts
        inner["durations_ms"] = self.durations
        if self.validation is not None:
            vd = self.validation.day
            inner["validation"] = {"ok": self.validation.ok,
                                   **{k: vd[k] for k in ("date", "alerts", "anomalies", "allowed",
                                                          "previous_anomalies") if k in vd}}
            if self.validation.dropped:
                inner["validation"]["dropped"] = sorted(self.validation.dropped)
        if self.warnings:
            inner["warnings"] = self.warnings[:10]
        if self.found:
            inner["anomalies"] = self.found
        if self.syslog_file:
            inner["syslog_file"] = self.syslog_file
        inner["report"] = self.report or ""
        inner["exit_code"] = self.code
        return {"integration": "mimizuku", "mimizuku": inner}


def summary_line(summary: Dict[str, Any]) -> str:
    """The summary as one line of ASCII JSON (no newline can be forged), under 64 KiB."""
    line = json.dumps(summary, ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=str)
    if len(line) > SUMMARY_MAX_BYTES:
        inner = dict(summary["mimizuku"])
        inner.pop("validation", None)
        inner["anomalies"] = inner.get("anomalies", [])[:5]
        inner["warnings"] = [w[:100] for w in inner.get("warnings", [])[:3]]
        line = json.dumps({"integration": "mimizuku", "mimizuku": inner}, ensure_ascii=True,
                          separators=(",", ":"), allow_nan=False, default=str)[:SUMMARY_MAX_BYTES]
    return line


def _load_current(store: ModelStore, run: _Run):
    """The model in use, or None. A model that is tampered or unsafe stops the run (exit 4)."""
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.store.model_dir import ModelError, ModelNotFoundError, ModelVersionError

    if store.current_version() is None:
        return None
    try:
        return Mimizuku.load_model(store.current_link)
    except ModelVersionError as e:
        run.warn(f"the current model {store.current_version()} cannot be used by this installation ({e}); "
                 f"training without the anomaly filter")
        return None
    except ModelNotFoundError as e:
        run.warn(f"the current model pointer is broken ({e}); training as if there were no model")
        return None
    except ModelError:
        raise


def _params(current: Any, cfg: RetrainConfig) -> Dict[str, Any]:
    p: Dict[str, Any] = {}
    if current is not None:
        p.update(current.params())
    p.update({k: v for k, v in cfg.params.items() if v is not None})
    return p


def _install(new: Any, store: ModelStore, run: _Run, extra: Dict[str, Any]) -> None:
    from mimizuku.store.model_dir import verify_model_dir

    t0 = time.monotonic()
    version = new.model_version_
    new.save_model(store.version_dir(version), group=store.group(), extra={"retrain": extra})
    _pause("install")
    previous = store.install(version)
    # a reload that fails keeps the old model: every check the scorer's load runs (path, owners,
    # modes, checksums, library versions), through the pointer, short of unpickling
    try:
        manifest = verify_model_dir(resolve_model_dir(store.root))
        if manifest.get("model_version") != version:
            raise VersionError(f"the pointer leads to {manifest.get('model_version')} instead of {version}")
    except Exception as e:
        if previous is not None:
            store.rollback(previous, verify=False)
        raise VersionError(f"the new model {version} does not load as the scorer would load it ({e}); "
                           f"{'back to ' + previous if previous else 'no model in use'}") from e
    run.previous = previous
    run.version = version
    run.counts["versions_pruned"] = len(store.prune(run.cfg.keep))
    run.durations["install"] = _ms(t0)


def _batch_state(store: ModelStore) -> Dict[str, Any]:
    try:
        with open(store.root / "batch-state.json", "rb") as f:
            s = json.loads(f.read(1 << 20))
        return s if isinstance(s, dict) else {}
    except (OSError, ValueError):
        return {}


def _save_batch_state(store: ModelStore, state: Dict[str, Any]) -> None:
    days = state.get("syslog", {})
    state["syslog"] = {d: days[d] for d in sorted(days)[-120:]}
    tmp = store.root / f".batch-state.json.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(state, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, store.root / "batch-state.json")


def _batch(model: Any, day: date, store: ModelStore, run: _Run, scored: Any = None) -> None:
    """Analyse ``day`` with the model in use and deliver it; problems become warnings."""
    from mimizuku.nightly import day_analysis as batch
    from mimizuku.nightly.clustering import ContextClusterer

    cfg = run.cfg
    run.day = day.isoformat()
    t0 = time.monotonic()
    clusterer = ContextClusterer.from_model(model)
    analysis = scored if scored is not None else batch.score_day(model, cfg.source, day, clusterer=clusterer,
                                                                 progress=cfg.progress)
    batch.cluster_day(analysis, clusterer)
    run.durations["batch_score"] = analysis.durations_ms.get("score", 0)
    run.durations["cluster"] = analysis.durations_ms.get("cluster", 0)
    run.counts["day"] = analysis.summary()
    run.found = found_anomalies(analysis.records)
    if analysis.n_alerts == 0:
        run.warn(f"no alerts archived for {day}")
    run_row = {"run_id": f"{day}@{analysis.model_version}", "started": run.started.isoformat(),
               "finished": datetime.now(timezone.utc).isoformat(), "model_version": analysis.model_version,
               "status": run.status,
               "counts": {**{k: v for k, v in run.counts.items() if k != "day"}, "day": analysis.summary()},
               "durations": dict(run.durations),
               "figures": run.validation.as_dict() if run.validation is not None else None}
    state = _batch_state(store)
    emitted = state.get("syslog", {}).get(run.day)
    send_syslog = cfg.syslog and (cfg.resend_syslog or not emitted)
    if cfg.syslog and emitted and not cfg.resend_syslog:
        run.counts["syslog_skipped"] = f"already sent for {day} by model {emitted.get('version')}"
    delivery = batch.deliver(analysis.records, run_row, sql_url=cfg.sql_url, spool_root=Path(cfg.spool_dir),
                             retention_days=cfg.retention_days, syslog_file=cfg.syslog_file,
                             syslog_remote=cfg.syslog_remote, syslog_select=cfg.syslog_select,
                             syslog=send_syslog, syslog_format=cfg.syslog_format,
                             syslog_max_bytes=cfg.syslog_max_bytes, syslog_udp_rate=cfg.syslog_udp_rate,
                             index=cfg)
    run.durations.update(delivery.durations_ms)
    if send_syslog and cfg.syslog_file and delivery.counts.get("syslog", {}).get("selected"):
        run.syslog_file = str(cfg.syslog_file)
    for k, v in delivery.counts.items():
        run.counts[k] = {n: int(x) for n, x in v.items() if isinstance(x, (int, float))}
    for w in delivery.warnings:
        run.warn(w)
    if send_syslog and "syslog" in delivery.counts and not any(w.startswith("syslog") for w in delivery.warnings):
        state.setdefault("syslog", {})[run.day] = {"version": analysis.model_version,
                                                   "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        try:
            _save_batch_state(store, state)
        except OSError as e:
            run.warn(f"cannot record the syslog state in {store.root}: {e}")
    if cfg.report:
        t1 = time.monotonic()
        try:
            path = Path(cfg.report_dir) / f"mimizuku-{day}-{analysis.model_version}.html"
            Path(cfg.report_dir).mkdir(parents=True, exist_ok=True, mode=0o750)
            rep = dict(run.summary()["mimizuku"])
            rep.pop("report", None)
            run.report = str(batch.write_day_report(analysis, path, rep, {"model_dir": cfg.model_dir,
                                                                          "input": cfg.source}))
            batch.prune_reports(Path(cfg.report_dir), cfg.keep_reports)
        except Exception as e:
            run.warn(f"report: {type(e).__name__}: {e}")
        run.durations["report"] = _ms(t1)
    run.durations["batch"] = _ms(t0)


#: The analysed day's anomalies the summary names (the report and SQL have them all).
FOUND_MAX = 20


def found_anomalies(records: List[Dict[str, Any]], limit: int = FOUND_MAX) -> List[Dict[str, Any]]:
    """The day's raised anomalies, most anomalous first, each as the few fields a person reads
    first (time, agent, detector, score, severity, the first reason, the episode's count when a
    burst repeated it). Reasons are attacker text: bounded here, escaped where printed."""
    repeats: Dict[str, int] = {}
    for r in records:
        if r.get("repeat_of"):
            repeats[str(r["repeat_of"])] = repeats.get(str(r["repeat_of"]), 0) + 1
    raised = [r for r in records if r.get("anomaly")]
    raised.sort(key=lambda r: (-float(r.get("score") or 0.0), str(r.get("timestamp") or "")))
    out = []
    for r in raised[:limit]:
        agent = r.get("agent") if isinstance(r.get("agent"), dict) else {}
        reasons = [x for x in (r.get("reasons") or []) if isinstance(x, str)]
        ep = r.get("episode") if isinstance(r.get("episode"), dict) else None
        if ep is not None and len(reasons) > 1:  # an update: the why, then the story so far
            reasons = reasons[1:]
        item = {"timestamp": str(r.get("timestamp") or "")[:40], "agent": str(agent.get("name") or "")[:64],
                "detector": str(r.get("detector") or ""), "score_pct": int(round(100 * float(r.get("score") or 0))),
                "severity": str(r.get("severity") or ""), "reason": reasons[0][:300] if reasons else "",
                "repeats": repeats.get(str(r.get("id")), 0)}
        if ep is not None:
            item["update_of"] = str(ep.get("of") or "")[:120]
        out.append(item)
    return out


def _train_and_install(store: ModelStore, run: _Run) -> Tuple[Any, Any]:
    """Steps 2-4; returns (model in use, day analysis of the new model if it can be reused)."""
    from mimizuku.engine.detectors.base import NotEnoughData
    from mimizuku.nightly import day_analysis as batch
    from mimizuku.nightly.clustering import ContextClusterer
    from mimizuku.nightly.partitions import DaskUnavailable, PartitionedFit
    from mimizuku.sources.reader import AlertSourceError

    cfg = run.cfg
    current = _load_current(store, run)
    run.version = store.current_version() if current is not None else None
    first_part = [True]

    def on_partition(_label: str) -> None:
        if first_part[0]:
            first_part[0] = False
            _pause("training")

    today = date.today()
    days = cfg.window
    end = days[-1]  # --day when given (nothing after it is read), else today
    fresh = {today.isoformat(), end.isoformat(), cfg.batch_day.isoformat()}  # judged by the model in use
    window = [d.isoformat() for d in days]
    # the analysts' verdicts the model in use judges with (mimizuku.engine.feedback): a day judged
    # with others is judged again
    feedback = current.feedback.digest() if current is not None and current.feedback is not None else ""
    verdicts = load_verdicts(store, [d for d in window if d not in fresh], feedback) if current is not None else {}
    holdout = None
    if current is None and cfg.holdout and cfg.batch and cfg.anomaly_filter:
        holdout = _fit_holdout(run, on_partition)
        if run.code == EXIT_INPUT:
            return None, None
    judge = current if current is not None else holdout
    # one partition per archived day, read here one after another or on Dask (the same code:
    # mimizuku.nightly.partitions); filt and stats are the totals of all partitions
    trainer = PartitionedFit(judge, _params(current, cfg), exclude=cfg.anomaly_filter, verdicts=verdicts,
                             progress=cfg.progress, on_partition=on_partition, dask_timeout=cfg.dask_timeout,
                             dask_tls=cfg.dask_tls, dask_insecure=cfg.dask_insecure)
    filt, stats = trainer.filter, trainer.stats
    t0 = time.monotonic()
    log.info("reading %d day(s) up to %s from %s and training (anomaly filter: %s; %s)", cfg.days, end,
             cfg.source,
             f"model {run.version}" if current is not None and cfg.anomaly_filter
             else f"the hold-out model {holdout.model_version_}" if holdout is not None else "off",
             f"on the Dask cluster at {cfg.dask}" if cfg.dask else "locally")

    def keep_verdicts() -> None:  # only after the whole stream was judged: never half a day
        if current is not None:
            try:
                save_verdicts(store, filt, run.version, today, cfg.days, feedback)
            except OSError as e:
                run.warn(f"cannot record the anomaly filter's verdicts in {store.root}: {e}")

    try:
        new = trainer.fit(cfg.source, since=days[0], until=end, dask=cfg.dask)
    except AlertSourceError as e:
        run.fail(EXIT_INPUT, f"cannot read the alerts: {e}")
        return current, None
    except DaskUnavailable as e:
        run.fail(EXIT_INPUT, f"{e}; nothing was trained, the current model is kept")
        return current, None
    except NotEnoughData as e:
        keep_verdicts()
        run.durations["read_train"] = _ms(t0)
        run.counts.update(_read_counts(stats, filt, cfg))
        if stats.alerts == 0:
            run.fail(EXIT_INPUT, f"no alerts archived in the last {cfg.days} days and today ({stats})")
        else:
            run.fail(EXIT_DATA, f"not enough data to train: {e}", "kept" if current is not None else "failed")
        return current, None
    except ValueError as e:  # bad model parameters
        run.fail(EXIT_USAGE, f"invalid model parameters: {e}")
        return current, None
    if filt.shared_detectors:
        log.info("keys computed once for the filter and the new %s detector(s)", ", ".join(filt.shared_detectors))
    if cfg.dask:
        run.counts["dask"] = {"partitions": len(trainer.partitions), "workers": len(trainer.workers)}
    keep_verdicts()
    run.durations["read_train"] = _ms(t0)
    new.read_stats_ = stats.as_dict()
    run.candidate = new.model_version_
    run.counts.update(_read_counts(stats, filt, cfg))
    run.counts["trained"] = {n: int(d.n_alerts_) for n, d in new.detectors_.items()}
    if new.skipped_detectors_:
        for n, why in new.skipped_detectors_.items():
            run.warn(f"detector {n} not trained: {why}")

    # validation on the most recent day
    t0 = time.monotonic()
    vday = choose_validation_day(filt.per_day, cfg.batch_day)
    clusterer = ContextClusterer.from_model(new)
    scored = None
    if vday is not None:
        log.info("validating %s on %s", new.model_version_, vday)
        scored = batch.score_day(new, cfg.source, date.fromisoformat(vday), clusterer=clusterer,
                                 progress=cfg.progress)
    prev = (filt.per_day.get(vday, 0), filt.flagged_per_day.get(vday, 0)) if vday else (0, 0)
    v = validate(new, current, cfg,
                 day_records=scored.records if scored is not None else None, day=vday, prev_day=prev)
    run.validation = v
    run.durations["validate"] = _ms(t0)
    for n, why in v.dropped.items():
        run.warn(f"detector {why}: not used")
    if not v.ok:
        reason = "; ".join(v.reasons)
        if current is not None:
            run.fail(EXIT_REFUSED, f"new model {new.model_version_} refused: {reason}", "kept")
        else:
            run.fail(EXIT_REFUSED, f"new model {new.model_version_} refused and no model in use: {reason}")
        log.warning("validation refused %s: %s", new.model_version_, reason)
        return current, None
    extra = {"excluded_flagged": filt.excluded,
             "filter_model": run.version if current is not None and cfg.anomaly_filter
             else (f"{holdout.model_version_} (hold-out: the days before {cfg.batch_day})" if holdout is not None
                   else None),
             "days": cfg.days, "window_end": end.isoformat(), "validation": v.as_dict(), "read": stats.as_dict()}
    _install(new, store, run, extra)
    run.status, run.code, run.error = "ok", EXIT_OK, None
    log.info("model %s installed (previous: %s)", new.model_version_, run.previous or "none")
    if holdout is not None:  # the day is analysed by the model that never saw it
        run.counts["holdout"] = {"version": holdout.model_version_,
                                 "until": (cfg.batch_day - timedelta(days=1)).isoformat(),
                                 "trained_on": {n: int(d.n_alerts_) for n, d in holdout.detectors_.items()}}
        return holdout, None
    reuse = scored if (scored is not None and vday == cfg.batch_day.isoformat() and not v.dropped) else None
    return new, reuse


def _fit_holdout(run: _Run, on_partition: Any) -> Any:
    """A first run's hold-out model: trained on the window's days before the analysed day, so the
    first analysis is not of a day the model learned (planted or real attacks on it would be
    "normal"); it then judges the whole window for the anomaly filter of the model installed.
    None (with a warning) when those days cannot train one: the run goes on without it."""
    from mimizuku.engine.detectors.base import NotEnoughData
    from mimizuku.nightly.partitions import DaskUnavailable, PartitionedFit
    from mimizuku.sources.reader import AlertSourceError

    cfg = run.cfg
    first, last = cfg.window[0], cfg.batch_day - timedelta(days=1)
    if last < first:
        run.warn(f"no day before {cfg.batch_day} in the window: the first model learns the day it analyses")
        return None
    t0 = time.monotonic()
    log.info("first run: training a hold-out model on %s..%s, before the analysed day %s", first, last,
             cfg.batch_day)
    trainer = PartitionedFit(None, _params(None, cfg), exclude=False, progress=cfg.progress,
                             on_partition=on_partition, dask_timeout=cfg.dask_timeout,
                             dask_tls=cfg.dask_tls, dask_insecure=cfg.dask_insecure)
    try:
        model = trainer.fit(cfg.source, since=first, until=last, dask=cfg.dask)
    except (NotEnoughData, ValueError) as e:
        run.warn(f"no hold-out model from the days before {cfg.batch_day} ({e}): the first model learns "
                 f"the day it analyses")
        return None
    except (AlertSourceError, DaskUnavailable) as e:
        run.fail(EXIT_INPUT, f"cannot read the alerts: {e}")
        return None
    finally:
        run.durations["holdout"] = _ms(t0)
    return model


def _read_counts(stats: Any, filt: AnomalyFilter, cfg: RetrainConfig) -> Dict[str, Any]:
    days = [d.isoformat() for d in cfg.window]  # the last one is today, or --day
    return {
        "alerts_read": int(stats.alerts),
        "bad_lines": int(stats.total_bad),
        "own_events": int(stats.own_events),
        "files": int(stats.files),
        "damaged_files": len(stats.damaged_files),
        "unreadable_files": len(stats.unreadable_files),
        "days_with_alerts": sum(1 for d in days if filt.per_day.get(d)),
        "missing_days": [d for d in days[:-1] if not filt.per_day.get(d)][:31],
        "flagged_by_current": int(filt.flagged),
        "days_judged": sum(1 for d, n in filt.judged_per_day.items() if n and d != "-"),
        "days_from_verdicts": len(filt.verdicts),
        "excluded_flagged": int(filt.excluded),
        "trained_on": int(filt.seen - filt.excluded),
    }


def retrain(cfg: RetrainConfig) -> Dict[str, Any]:
    """One run of the job; never raises (the summary says what happened). Returns the summary."""
    from mimizuku.store.model_dir import ModelError

    run = _Run(cfg)
    problem = cfg.wazuh_home_problem()
    if problem is not None:  # before anything is created under it
        run.fail(EXIT_USAGE, problem)
        return run.summary()
    if cfg.dask and cfg.dask_tls is None:
        from mimizuku.nightly.dask_security import insecure_warning, needs_tls

        if needs_tls(cfg.dask):  # --dask-insecure: said in the log, on stderr and in the summary
            run.warn(insecure_warning(cfg.dask))
    store = ModelStore(cfg.model_dir)
    try:
        store.ensure()
        with store.lock("retrain"):
            cleaned = store.clean_leftovers()
            if cleaned:
                log.warning("removed leftovers of an interrupted run: %s", ", ".join(cleaned))
            run.counts["leftovers_cleaned"] = len(cleaned)
            try:
                adopted = store.adopt_plain_model()
                if adopted:
                    log.warning("adopted the model in %s as version %s", store.root, adopted)
            except ModelError as e:
                run.warn(f"the model written directly into {store.root} cannot be adopted: {e}")
            try:
                in_use, reuse = _train_and_install(store, run)
            except ModelError as e:
                run.fail(EXIT_MODEL, f"the current model {store.current_version()} cannot be used: {e} "
                                     f"(see `mimizuku rollback --list`)")
                in_use, reuse = None, None
            except VersionError as e:
                run.fail(EXIT_MODEL, str(e))
                in_use, reuse = None, None
            if run.status != "ok":
                run.version = store.current_version()
            elif cfg.publish_to is not None:
                _publish(store, run)
            if cfg.batch and in_use is not None and run.code in (EXIT_OK, EXIT_REFUSED, EXIT_DATA):
                try:
                    _batch(in_use, cfg.batch_day, store, run, reuse)
                except Terminated:
                    raise
                except Exception as e:  # the retrain itself is done; the analysis failing is a warning
                    log.exception("batch analysis failed")
                    run.warn(f"batch analysis of {cfg.batch_day} failed: {type(e).__name__}: {e}")
    except Locked as e:
        run.fail(EXIT_LOCKED, str(e))
        run.version = store.current_version()
    except Terminated:
        run.fail(EXIT_TERMINATED, "terminated by SIGTERM (the wodle's <timeout>?); the current model is untouched")
        run.version = store.current_version()
    except ModelError as e:
        run.fail(EXIT_MODEL, str(e))
        run.version = store.current_version()
    except (VersionError, OSError) as e:
        run.fail(EXIT_MODEL if isinstance(e, VersionError) else EXIT_INTERNAL, f"{type(e).__name__}: {e}")
        run.version = store.current_version()
    except Exception as e:  # a bug: say where
        import traceback

        tb = traceback.extract_tb(e.__traceback__)[-1]
        log.exception("internal error")
        run.fail(EXIT_INTERNAL, f"internal error: {type(e).__name__}: {e} (at {os.path.basename(tb.filename)}:{tb.lineno})")
        run.version = store.current_version()
    summary = run.summary()
    try:
        tmp = store.root / f".last-run.json.tmp-{os.getpid()}"
        tmp.write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, store.root / "last-run.json")
    except OSError:
        pass
    return summary


def _publish(store: ModelStore, run: "_Run") -> None:
    """Publish the model just installed for the other cluster nodes; a failure is a warning (the
    model is installed here; `mimizuku publish` can be run again by hand)."""
    from mimizuku.store import publication as model_sync

    cfg = run.cfg
    key_path = cfg.cluster_key or cfg.wazuh_home / "etc" / "mimizuku" / "cluster.key"
    try:
        doc = model_sync.publish(store.root, cfg.publish_to, model_sync.load_key(key_path),
                                 activation_delay=cfg.activation_delay)
    except Exception as e:  # the nodes keep their model: say so, loudly
        run.warn(f"model installed here but not published to {cfg.publish_to}: {type(e).__name__}: {e}")
        return
    run.counts["published"] = {"to": str(cfg.publish_to), "version": doc["version"],
                               "activate_at": doc["activate_at"]}


def usage_error_summary(wazuh_home: Path, model_dir: Optional[Path], error: str) -> Dict[str, Any]:
    """The summary of a run refused before it started (bad options: exit 2); says which model
    is in use."""
    r = _Run(RetrainConfig(wazuh_home=wazuh_home))
    r.fail(EXIT_USAGE, error)
    r.version = ModelStore(model_dir or r.cfg.model_dir).current_version()
    return r.summary()
