"""``mimizuku retrain``: the nightly job the ``<wodle name="command">`` runs.

One run, under an exclusive lock on the model root:

1. cleans what an interrupted run left (``versions.ModelStore.clean_leftovers``);
2. reads the archive of the last ``--days`` days plus today (the reader drops the plugin's own
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
  2    failed: bad arguments
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

import argparse
import json
import logging
import logging.handlers
import math
import os
import re
import signal
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from mimizuku.core import fields
from mimizuku.store.versions import Locked, ModelStore, VersionError, resolve_model_dir

__all__ = ["RetrainConfig", "AnomalyFilter", "check_dask_address", "Validation", "validate", "retrain", "add_parser", "run",
           "main", "summary_line"]

log = logging.getLogger("mimizuku.retrain")

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_DATA = 0, 1, 2, 3, 4, 5
EXIT_LOCKED, EXIT_REFUSED, EXIT_TERMINATED = 6, 7, 143

DEFAULT_MIN_ALERTS = {"files": 20, "commands": 20, "context": 200}
SUMMARY_MAX_BYTES = 60 * 1024  # the README's Wazuh section: keep the line under 64 KiB
PAUSE_ENV = "MIMIZUKU_RETRAIN_PAUSE_AT"  # test/debug aid: stage names at which to sleep


class Terminated(BaseException):
    """SIGTERM arrived (the wodle's timeout kills the process group with it)."""


# --- configuration ------------------------------------------------------------------------------

@dataclass
class RetrainConfig:
    """Everything a run needs; ``from_args`` builds it from the command line."""

    wazuh_home: Path = Path("/var/ossec")
    model_dir: Optional[Path] = None         # default <wazuh_home>/mimizuku/models
    source: Optional[Any] = None             # default the archive under wazuh_home
    days: int = 14                           # archived days, plus today
    day: Optional[date] = None               # day analysed; default yesterday
    keep: int = 5
    # model parameters; None = the current model's, else the library defaults
    params: Dict[str, Any] = field(default_factory=dict)
    # validation
    min_alerts: Dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIN_ALERTS))
    max_rate_ratio: float = 3.0              # day rate may be this many times the current model's
    rate_floor: float = 0.005                # ... or this share of the day's alerts, whichever is more
    min_count: int = 5                       # ... and never fewer than this many anomalies
    max_day_rate: float = 0.05               # bound when there is no current model to compare with
    calibration_tolerance: float = 3.0       # training anomaly share <= this x contamination
    anomaly_filter: bool = True              # drop what the current model flags before training
    # batch analysis and outputs
    batch: bool = True
    db_url: Optional[str] = None             # default sqlite:///<model_dir>/mimizuku.db
    sql: bool = True
    retention_days: Optional[float] = 90.0
    syslog: bool = True
    syslog_file: Optional[Path] = None       # default <wazuh_home>/logs/mimizuku/anomaly.syslog
    syslog_remote: Optional[str] = None
    syslog_select: str = "anomalies"
    resend_syslog: bool = False
    report: bool = True
    report_dir: Optional[Path] = None        # default <wazuh_home>/logs/mimizuku/reports
    keep_reports: int = 30
    spool_dir: Optional[Path] = None         # default <wazuh_home>/mimizuku/spool
    progress: bool = False
    # training on a Dask cluster (mimizuku.nightly.partitions): the scheduler's address, None = locally
    dask: Optional[str] = None
    dask_timeout: float = 30.0               # seconds to reach the scheduler and find a worker
    # a cluster of managers (mimizuku.store.publication): publish each installed model for the nodes
    publish_to: Optional[Path] = None
    cluster_key: Optional[Path] = None       # default <wazuh-home>/etc/mimizuku/cluster.key
    activation_delay: float = 60.0

    def __post_init__(self) -> None:
        self.wazuh_home = Path(os.path.abspath(self.wazuh_home))  # paths in the summary are absolute
        if self.model_dir is None:
            self.model_dir = self.wazuh_home / "mimizuku" / "models"
        self.model_dir = Path(os.path.abspath(self.model_dir))
        if self.source is None:
            self.source = str(self.wazuh_home)
        if self.syslog_file is None:
            self.syslog_file = self.wazuh_home / "logs" / "mimizuku" / "anomaly.syslog"
        if self.report_dir is None:
            self.report_dir = self.wazuh_home / "logs" / "mimizuku" / "reports"
        if self.spool_dir is None:
            self.spool_dir = self.wazuh_home / "mimizuku" / "spool"
        if not isinstance(self.days, int) or self.days < 1:
            raise ValueError(f"--days must be a whole number >= 1, got {self.days!r}")
        if self.keep < 1:
            raise ValueError("--keep must be >= 1")
        if self.dask is not None:
            self.dask = check_dask_address(self.dask)
        if not (isinstance(self.dask_timeout, (int, float)) and 0 < self.dask_timeout <= 3600):
            raise ValueError(f"--dask-timeout must be in (0, 3600] seconds, got {self.dask_timeout!r}")

    @property
    def sql_url(self) -> Optional[str]:
        if not self.sql:
            return None
        if self.db_url:
            return self.db_url
        return "sqlite:///" + str((Path(self.model_dir) / "mimizuku.db").absolute())

    @property
    def batch_day(self) -> date:
        return self.day or (date.today() - timedelta(days=1))


_DASK_ADDRESS = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?[^\s/:]+:\d{1,5}\Z|[a-z][a-z0-9+.-]*://\S+\Z")


def check_dask_address(address: Any) -> str:
    """A Dask scheduler address (``tcp://host:8786``, ``tls://...``, ``host:8786``) or ValueError."""
    text = str(address).strip()
    if not text or not text.isprintable() or not _DASK_ADDRESS.match(text):
        raise ValueError(f"--dask {_short(address, 100)!r} is not a Dask scheduler address "
                         f"(e.g. tcp://scheduler:8786)")
    return text


# --- river's AnomalyFilter, for a batch --------------------------------------------------------

class AnomalyFilter:
    """Streams training alerts, dropping those ``model`` flags as anomalies.

    The flag is the one ``Mimizuku.score_records`` gives (a detector's calibrated score at or
    above its threshold and not ignored, or an abuse file), computed per batch without building
    records; a burst's repeats (``repeat_of``, ``mimizuku.engine.repeats``) are flagged here too: they
    are as far from normal as the anomaly they repeat, only not raised again. Also counts the
    alerts per day and the current model's anomalies per day, for the validation of the next
    model. ``model=None`` lets everything through (and still counts);
    ``exclude=False`` scores and counts but lets the flagged alerts through too.

    ``verdicts``: river's filter judges each sample once, with the model of its time. A run
    records which alerts of each complete day its model flagged (``<model-dir>/verdicts``); later
    runs exclude those and score only the days nobody judged yet (normally yesterday and today),
    which keeps the nightly cost of the filter to about one day of scoring.

    ``share_keys(new_model)``: the current detectors have just computed each alert's key (the
    costly part: fields, tokens, rate windows); a new detector of the same class and parameters
    would compute the very same key from the very same stream, so it is handed over instead of
    computed twice. Rates in the keys are then counted over the whole stream, flagged alerts
    included — as the scorer counts them.
    """

    def __init__(self, model: Any = None, exclude: bool = True, batch_size: int = 2048, on_batch=None,
                 verdicts: Optional[Dict[str, Any]] = None):
        self.model = model
        self.exclude = exclude
        #: day -> ids an earlier run's model flagged that day: those days are not scored again
        self.verdicts: Dict[str, Any] = dict(verdicts or {})
        self.judged_per_day: Counter = Counter()
        self.judged_flagged: Dict[str, List[str]] = {}
        self.from_verdicts = 0
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.seen = 0
        self.excluded = 0
        self.flagged = 0
        self.per_day: Counter = Counter()
        self.flagged_per_day: Counter = Counter()
        self.excluded_by_detector: Counter = Counter()
        self._memo: Dict[Tuple[str, int], Any] = {}
        self._shared: List[Any] = []
        self.shared_detectors: List[str] = []

    def __call__(self, alerts: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        dets = list(self.model.detectors_.values()) if self.model is not None else []
        for d in dets:
            d.start_stream()
        batch: List[Dict[str, Any]] = []
        for a in alerts:
            batch.append(a)
            if len(batch) >= self.batch_size:
                yield from self._pass(batch, dets)
                batch = []
        if batch:
            yield from self._pass(batch, dets)

    #: the counters a partition's filter hands back (``partial_state``) and a total adds up
    _COUNTERS = ("judged_per_day", "per_day", "flagged_per_day", "excluded_by_detector")
    _TOTALS = ("from_verdicts", "seen", "excluded", "flagged")

    def partial_state(self) -> Dict[str, Any]:
        """The counts and ids of what this filter judged: picklable, for ``merge_state``."""
        state: Dict[str, Any] = {k: getattr(self, k) for k in self._COUNTERS + self._TOTALS}
        state["judged_flagged"] = self.judged_flagged
        state["shared_detectors"] = list(self.shared_detectors)
        return state

    def merge_state(self, state: Dict[str, Any]) -> None:
        """Add a partition's ``partial_state`` (partitions in stream order) to this filter's
        counts: the total of a training read in partitions (mimizuku.nightly.partitions)."""
        for k in self._COUNTERS:
            getattr(self, k).update(state[k])
        for k in self._TOTALS:
            setattr(self, k, getattr(self, k) + int(state[k]))
        for day, ids in state["judged_flagged"].items():
            self.judged_flagged.setdefault(day, []).extend(ids)
        for name in state.get("shared_detectors", ()):
            if name not in self.shared_detectors:
                self.shared_detectors.append(name)

    def share_keys(self, new: Any) -> List[str]:
        """Let ``new``'s detectors reuse the keys computed here (see the class docstring)."""
        if self.model is None:
            return []
        try:
            dets = new._new_detectors()
        except Exception:  # pragma: no cover - an estimator without that hook: no sharing
            return []
        memo = self._memo
        for d in dets:
            old = self.model.detectors_.get(d.name)
            if old is not None and type(old) is type(d) and old.get_params() == d.get_params():
                def key(alert: Dict[str, Any], _orig=d.key, _name=d.name) -> Any:
                    k = memo.get((_name, id(alert)))
                    return _orig(alert) if k is None else k

                d.key = key  # shadows the method on this instance, removed by unshare()
                self.shared_detectors.append(d.name)
            new.add_rule(d)
        self._shared = dets
        self._new = new
        return list(self.shared_detectors)

    def unshare(self) -> None:
        """Undo ``share_keys`` (before the new model is saved: nothing of this may be pickled)."""
        for d in self._shared:
            d.__dict__.pop("key", None)
        if self._shared:
            self._new.rules = []
        self._shared = []
        self._memo.clear()

    def flags(self, batch: Sequence[Dict[str, Any]], dets: Sequence[Any]) -> List[bool]:
        hit = [False] * len(batch)
        by: List[Optional[str]] = [None] * len(batch)
        memo = self._memo
        memo.clear()  # the previous batch has been consumed
        share = bool(self._shared)
        for d in dets:
            idx = [i for i, a in enumerate(batch) if d.applies(a)]
            if not idx:
                continue
            keys = [d.key(batch[i]) for i in idx]
            if share:
                name = d.name
                for i, k in zip(idx, keys):
                    memo[(name, id(batch[i]))] = k
            scores = d.calibrate(d.raw_scores(keys))
            thr = d.threshold_
            for i, s in zip(idx, scores):
                if s >= thr and not hit[i] and d.ignored(batch[i]) is None:
                    hit[i] = True
                    by[i] = d.name
        m = self.model
        for i, a in enumerate(batch):
            if hit[i]:
                if m._ignored(a) is not None:
                    hit[i] = False
            elif m._abuse(a) is not None:
                hit[i] = True
                by[i] = "abuse"
        for i, h in enumerate(hit):
            if h:
                self.excluded_by_detector[by[i] or "?"] += 1
        return hit

    def _pass(self, batch: List[Dict[str, Any]], dets: Sequence[Any]) -> Iterator[Dict[str, Any]]:
        days = []
        for a in batch:
            ts = fields.timestamp(a)
            days.append(ts[:10] if ts and len(ts) >= 10 else "-")
        hit = [False] * len(batch)
        verdicts = self.verdicts
        if dets:
            need = [i for i, d in enumerate(days) if d not in verdicts]
            if need:
                sub = self.flags([batch[i] for i in need], dets)
                for i, h in zip(need, sub):
                    hit[i] = h
                    d = days[i]
                    self.judged_per_day[d] += 1
                    if h:
                        aid = fields.alert_id(batch[i])
                        if aid is not None:
                            self.judged_flagged.setdefault(d, []).append(aid)
        for i, d in enumerate(days):
            if d in verdicts:
                aid = fields.alert_id(batch[i])
                hit[i] = aid is not None and aid in verdicts[d]
                self.from_verdicts += 1
        for a, h, day in zip(batch, hit, days):
            self.per_day[day] += 1
            self.seen += 1
            if h:
                self.flagged_per_day[day] += 1
                self.flagged += 1
                if self.exclude:
                    self.excluded += 1
                    continue
            yield a
        if self.on_batch is not None:
            self.on_batch(self)


# --- validation ---------------------------------------------------------------------------------

@dataclass
class Validation:
    ok: bool = True
    reasons: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)
    detectors: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    day: Dict[str, Any] = field(default_factory=dict)

    def refuse(self, why: str) -> None:
        self.ok = False
        self.reasons.append(why)

    def as_dict(self) -> Dict[str, Any]:
        return {"ok": self.ok, "reasons": self.reasons, "dropped": self.dropped,
                "detectors": self.detectors, "day": self.day}


def _training_anomaly_share(det: Any) -> Optional[float]:
    """Share of the (weighted) training alerts whose calibrated score reaches the threshold."""
    cal = getattr(det, "calibrator_", None)
    values, tail = getattr(cal, "values_", None), getattr(cal, "tail_", None)
    if values is None or tail is None or len(values) == 0:
        return None
    import numpy as np

    sc = np.asarray(det.calibrate(values), dtype=float)
    above = np.flatnonzero(sc >= det.threshold_)
    return float(tail[above[0]]) if above.size else 0.0


def validate(new: Any, current: Any, cfg: RetrainConfig, *, day_records: Optional[Sequence[Dict[str, Any]]],
             day: Optional[str], prev_day: Tuple[int, int]) -> Validation:
    """Decide whether ``new`` may replace ``current`` (see the module docstring)."""
    import numpy as np

    v = Validation()
    cur_alerts: Dict[str, int] = {}
    if current is not None:
        for name, d in current.detectors_.items():
            cur_alerts[name] = int(getattr(d, "n_alerts_", 0))
    # 1. enough alerts per detector
    for name in list(new.detectors) if not getattr(new, "rules", None) else list(new.detectors_):
        need = int(cfg.min_alerts.get(name, 0))
        det = new.detectors_.get(name)
        n = int(getattr(det, "n_alerts_", 0)) if det is not None else 0
        if n >= need:
            continue
        why = f"{name}: {n} alert(s), fewer than the minimum {need}"
        if name in cur_alerts:  # never trade a detector in use for none
            v.refuse(f"{why} (the current model learned from {cur_alerts[name]})")
        elif det is not None:
            v.dropped[name] = why
            del new.detectors_[name]
            new.skipped_detectors_[name] = why + " (dropped by validation)"
    if not new.detectors_:
        v.refuse("no detector has enough alerts to be used")
    # 2. calibration
    for name, d in new.detectors_.items():
        thr = float(getattr(d, "threshold_", float("nan")))
        share = _training_anomaly_share(d)
        c = float(getattr(d, "contamination", cfg.params.get("contamination", 0.001)) or 0.0)
        v.detectors[name] = {"alerts": int(getattr(d, "n_alerts_", 0)), "situations": int(getattr(d, "n_keys_", 0)),
                             "threshold": round(thr, 6) if math.isfinite(thr) else None,
                             "train_anomaly_share": None if share is None else round(share, 6)}
        if not (math.isfinite(thr) and 0.0 < thr <= 1.0):
            v.refuse(f"{name}: threshold {thr!r} is not a calibrated score in (0, 1]")
            continue
        cal = getattr(d, "calibrator_", None)
        values = getattr(cal, "values_", None)
        if values is not None and len(values):
            sc = np.asarray(d.calibrate(values), dtype=float)
            if not np.isfinite(sc).all() or sc.min() < 0.0 or sc.max() > 1.0:
                v.refuse(f"{name}: calibrated training scores fall outside [0, 1]")
        if share is not None and share > cfg.calibration_tolerance * c + 1e-12:
            v.refuse(f"{name}: {share:.2%} of the training alerts score above the threshold, "
                     f"expected about {c:.2%} (contamination)")
    # 3. the most recent day, against the current model on the same day
    if day_records is not None:
        n = len(day_records)
        bad = [r for r in day_records if not (isinstance(r.get("score"), (int, float))
                                              and 0.0 <= float(r["score"]) <= 1.0)]
        if bad:
            v.refuse(f"{len(bad)} score(s) of {day} outside [0, 1]")
        # counted as the anomaly filter counts the current model's: a burst's repeats included
        k = sum(1 for r in day_records if r.get("anomaly") or r.get("repeat_of"))
        prev_n, prev_k = prev_day
        v.day = {"date": day, "alerts": n, "anomalies": k, "rate": round(k / n, 6) if n else None}
        if n == 0:
            v.day["note"] = "no alerts that day: rate check skipped"
        elif current is not None and prev_n:
            allowed = max(cfg.max_rate_ratio * prev_k, cfg.rate_floor * n, cfg.min_count)
            v.day.update(previous_alerts=prev_n, previous_anomalies=prev_k,
                         previous_rate=round(prev_k / prev_n, 6), allowed=int(math.floor(allowed)))
            if k > allowed:
                v.refuse(f"anomaly rate on {day} is {k}/{n} ({k / n:.2%}), the current model's "
                         f"{prev_k}/{prev_n} ({prev_k / prev_n:.2%}); allowed at most {int(allowed)}")
        else:
            allowed = max(cfg.max_day_rate * n, cfg.min_count)
            v.day["allowed"] = int(math.floor(allowed))
            if k > allowed:
                v.refuse(f"anomaly rate on {day} is {k}/{n} ({k / n:.2%}), above the bound "
                         f"{cfg.max_day_rate:.2%} for a first model")
    return v


# --- the run ------------------------------------------------------------------------------------

def _ms(t0: float) -> int:
    return int(round((time.monotonic() - t0) * 1000))


def _short(text: Any, limit: int = 500) -> str:
    s = " ".join(str(text).split())
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


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

    def fail(self, code: int, error: str, status: str = "failed") -> None:
        self.code, self.status, self.error = code, status, _short(error)

    def warn(self, text: str) -> None:
        log.warning("%s", text)
        self.warnings.append(_short(text, 300))

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
        inner["report"] = self.report or ""
        inner["exit_code"] = self.code
        return {"integration": "mimizuku", "mimizuku": inner}


def summary_line(summary: Dict[str, Any]) -> str:
    """The summary as one line of ASCII JSON (no newline can be forged), under 64 KiB."""
    line = json.dumps(summary, ensure_ascii=True, separators=(",", ":"), allow_nan=False, default=str)
    if len(line) > SUMMARY_MAX_BYTES:
        inner = dict(summary["mimizuku"])
        inner.pop("validation", None)
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


VERDICTS = "verdicts"
_VERDICT_MAX_BYTES = 64 << 20


def _load_verdicts(store: ModelStore, days: Iterable[str]) -> Dict[str, set]:
    """Ids flagged on each of ``days`` by the model of that time (days without a file: none)."""
    out: Dict[str, set] = {}
    for day in days:
        try:
            with open(store.root / VERDICTS / f"{day}.json", "rb") as f:
                obj = json.loads(f.read(_VERDICT_MAX_BYTES))
        except (OSError, ValueError):
            continue
        if isinstance(obj, dict) and obj.get("day") == day and isinstance(obj.get("flagged"), list):
            out[day] = {x for x in obj["flagged"] if isinstance(x, str)}
    return out


def _save_verdicts(store: ModelStore, filt: "AnomalyFilter", version: Optional[str], today: date,
                   days: int) -> int:
    """Record what the model in use flagged on each complete day it judged; prune old files."""
    d = store.root / VERDICTS
    d.mkdir(mode=0o750, exist_ok=True)
    n = 0
    for day, count in filt.judged_per_day.items():
        if day == "-" or day >= today.isoformat():
            continue  # today is still being written: judged again next time
        try:
            date.fromisoformat(day)
        except ValueError:
            continue
        data = json.dumps({"day": day, "model_version": version, "alerts": count,
                           "flagged": sorted(set(filt.judged_flagged.get(day, [])))}).encode()
        tmp = d / f".{day}.json.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / f"{day}.json")
        n += 1
    oldest = (today - timedelta(days=days + 31)).isoformat()
    for p in d.iterdir():
        if p.name.endswith(".json") and p.name[:10] < oldest or p.name.startswith("."):
            try:
                p.unlink()
            except OSError:
                pass
    return n


def _choose_validation_day(per_day: Counter, batch_day: date) -> Optional[str]:
    """The batch day if it had alerts, else the latest earlier day that did."""
    want = batch_day.isoformat()
    if per_day.get(want):
        return want
    days = sorted(d for d, n in per_day.items() if n and d != "-" and d <= want)
    return days[-1] if days else None


def _install(new: Any, store: ModelStore, run: _Run, extra: Dict[str, Any]) -> None:
    from mimizuku.store.model_dir import save_model_dir, verify_model_dir

    t0 = time.monotonic()
    version = new.model_version_
    manifest = new.manifest()
    manifest["retrain"] = extra
    save_model_dir(store.version_dir(version), dict(new.detectors_), manifest, group=store.group())
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

    cfg = run.cfg
    run.day = day.isoformat()
    t0 = time.monotonic()
    clusterer = batch.ContextClusterer.from_model(model)
    analysis = scored if scored is not None else batch.score_day(model, cfg.source, day, clusterer=clusterer,
                                                                 progress=cfg.progress)
    batch.cluster_day(analysis, clusterer)
    run.durations["batch_score"] = analysis.durations_ms.get("score", 0)
    run.durations["cluster"] = analysis.durations_ms.get("cluster", 0)
    run.counts["day"] = analysis.summary()
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
                             syslog=send_syslog)
    run.durations.update(delivery.durations_ms)
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
            run.report = str(batch.write_day_report(analysis, path, rep))
            batch.prune_reports(Path(cfg.report_dir), cfg.keep_reports)
        except Exception as e:
            run.warn(f"report: {type(e).__name__}: {e}")
        run.durations["report"] = _ms(t1)
    run.durations["batch"] = _ms(t0)


def _train_and_install(store: ModelStore, run: _Run) -> Tuple[Any, Any]:
    """Steps 2-4; returns (model in use, day analysis of the new model if it can be reused)."""
    from mimizuku.nightly import day_analysis as batch
    from mimizuku.sources.reader import AlertSourceError
    from mimizuku.engine.detectors.base import NotEnoughData
    from mimizuku.nightly.partitions import DaskUnavailable, PartitionedFit

    cfg = run.cfg
    current = _load_current(store, run)
    run.version = store.current_version() if current is not None else None
    first_part = [True]

    def on_partition(_label: str) -> None:
        if first_part[0]:
            first_part[0] = False
            _pause("training")

    today = date.today()
    fresh = {today.isoformat(), cfg.batch_day.isoformat()}  # always judged by the model in use
    window = [(today - timedelta(days=i)).isoformat() for i in range(cfg.days, -1, -1)]
    verdicts = _load_verdicts(store, [d for d in window if d not in fresh]) if current is not None else {}
    # one partition per archived day, read here one after another or on Dask (the same code:
    # mimizuku.nightly.partitions); filt and stats are the totals of all partitions
    trainer = PartitionedFit(current, _params(current, cfg), exclude=cfg.anomaly_filter, verdicts=verdicts,
                             progress=cfg.progress, on_partition=on_partition, dask_timeout=cfg.dask_timeout)
    filt, stats = trainer.filter, trainer.stats
    t0 = time.monotonic()
    log.info("reading %d day(s) plus today from %s and training (anomaly filter: %s; %s)", cfg.days, cfg.source,
             f"model {run.version}" if current is not None and cfg.anomaly_filter else "off",
             f"on the Dask cluster at {cfg.dask}" if cfg.dask else "locally")
    def keep_verdicts() -> None:  # only after the whole stream was judged: never half a day
        if current is not None:
            try:
                _save_verdicts(store, filt, run.version, today, cfg.days)
            except OSError as e:
                run.warn(f"cannot record the anomaly filter's verdicts in {store.root}: {e}")

    try:
        new = trainer.fit(cfg.source, days=cfg.days + 1, dask=cfg.dask)
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
    vday = _choose_validation_day(filt.per_day, cfg.batch_day)
    clusterer = batch.ContextClusterer.from_model(new)
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
             "filter_model": run.version if current is not None and cfg.anomaly_filter else None,
             "days": cfg.days, "validation": v.as_dict(), "read": stats.as_dict()}
    _install(new, store, run, extra)
    run.status, run.code, run.error = "ok", EXIT_OK, None
    log.info("model %s installed (previous: %s)", new.model_version_, run.previous or "none")
    reuse = scored if (scored is not None and vday == cfg.batch_day.isoformat() and not v.dropped) else None
    return new, reuse


def _read_counts(stats: Any, filt: AnomalyFilter, cfg: RetrainConfig) -> Dict[str, Any]:
    today = date.today()
    window = [(today - timedelta(days=i)).isoformat() for i in range(cfg.days, 0, -1)]
    return {
        "alerts_read": int(stats.alerts),
        "bad_lines": int(stats.total_bad),
        "own_events": int(stats.own_events),
        "files": int(stats.files),
        "damaged_files": len(stats.damaged_files),
        "unreadable_files": len(stats.unreadable_files),
        "days_with_alerts": sum(1 for d in window + [today.isoformat()] if filt.per_day.get(d)),
        "missing_days": [d for d in window if not filt.per_day.get(d)][:31],
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


# --- command line -------------------------------------------------------------------------------

def _min_alerts(items: Sequence[str]) -> Dict[str, int]:
    out = dict(DEFAULT_MIN_ALERTS)
    for it in items or ():
        if "=" in it:
            name, _, n = it.partition("=")
            names = [name.strip()]
        else:
            names, n = list(out), it
        try:
            value = int(n)
        except ValueError:
            raise ValueError(f"--min-alerts {it!r}: give N or DETECTOR=N (e.g. files=20)") from None
        if value < 0:
            raise ValueError(f"--min-alerts {it!r}: must be >= 0")
        for nm in names:
            out[nm] = value
    return out


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku retrain``: add the subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "retrain", help="nightly job: retrain from the archive, validate, install, analyse the day",
        description=__doc__.split("\n\n")[0].split("\n", 1)[0] + " See docs/nightly.md.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 no alerts, 4 model error, 5 not enough "
               "data, 6 locked (another run), 7 validation refused, 143 SIGTERM.")
    g = p.add_argument_group("where")
    g.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    g.add_argument("--model-dir", help="model root with versions/ and current (default <wazuh-home>/mimizuku/models)")
    g.add_argument("--input", "-i", help="alert source instead of <wazuh-home>'s logs/alerts archive")
    g.add_argument("--days", type=int, default=14, help="archived days to learn from, plus today (default 14)")
    g.add_argument("--day", help="day to analyse and validate on, YYYY-MM-DD (default yesterday)")
    g.add_argument("--keep", type=int, default=5, help="model versions to keep (default 5)")
    g = p.add_argument_group("model (default: the current model's settings)")
    g.add_argument("--contamination", type=float, help="share of training alerts flagged (default 0.001)")
    g.add_argument("--n-neighbors", type=int, help="LOF neighbours (default 5)")
    g.add_argument("--detectors", help="comma list of files, commands, context")
    g.add_argument("--eps", type=float, help="DBSCAN eps of the context detector (default 0.5)")
    g.add_argument("--min-samples", type=int, help="DBSCAN min_samples (default 5)")
    g.add_argument("--learn-flagged", action="store_true",
                   help="also learn from alerts the current model flags (disables the anomaly filter)")
    g = p.add_argument_group("Dask (optional: pip install mimizuku[cluster])")
    g.add_argument("--dask", metavar="SCHEDULER_ADDRESS",
                   help="read and count the archive's days on this Dask cluster (e.g. tcp://scheduler:8786); "
                        "every worker must see the archive at the same path. Default: $MIMIZUKU_DASK_SCHEDULER "
                        "when set (a setting for the wodle's environment or the service), else locally; "
                        "--dask local forces a local run")
    g.add_argument("--dask-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="time to reach the scheduler and find a worker (default 30)")
    g = p.add_argument_group("cluster of managers (docs/cluster.md)")
    g.add_argument("--publish-to", metavar="DIR",
                   help="after installing a new model, publish it here for `mimizuku sync` on the other nodes")
    g.add_argument("--cluster-key", metavar="FILE",
                   help="key that signs the publication (default <wazuh-home>/etc/mimizuku/cluster.key)")
    g.add_argument("--activation-delay", type=float, default=60.0, metavar="SECONDS",
                   help="nodes switch this long after publishing (default 60)")
    g = p.add_argument_group("validation")
    g.add_argument("--min-alerts", action="append", metavar="[DET=]N",
                   help="minimum training alerts per detector (default files=20, commands=20, context=200)")
    g.add_argument("--max-rate-ratio", type=float, default=3.0,
                   help="the day's anomaly count may be at most this times the current model's (default 3)")
    g.add_argument("--rate-floor", type=float, default=0.005,
                   help="... or this share of the day's alerts, whichever is more (default 0.005)")
    g.add_argument("--max-day-rate", type=float, default=0.05,
                   help="anomaly share of the day allowed for a first model (default 0.05)")
    g = p.add_argument_group("outputs")
    g.add_argument("--summary-json", action="store_true",
                   help="print only the one-line JSON summary on stdout (the wodle's mode, the README's Wazuh section)")
    g.add_argument("--no-batch", action="store_true", help="retrain only: no analysis of the day, no outputs")
    g.add_argument("--db", help="SQLAlchemy URL (default sqlite:///<model-dir>/mimizuku.db; "
                                "MySQL/MariaDB: mysql://user:pw@host/db)")
    g.add_argument("--db-url-file", help="read the database URL from this file (keeps the password out of ps)")
    g.add_argument("--no-sql", action="store_true", help="do not write to SQL")
    g.add_argument("--retention-days", type=float, default=90.0, help="delete SQL rows older than this (default 90; 0 keeps none)")
    g.add_argument("--no-retention", action="store_true", help="never delete SQL rows")
    g.add_argument("--syslog-file", help="syslog file (default <wazuh-home>/logs/mimizuku/anomaly.syslog)")
    g.add_argument("--syslog-remote", help="also send to udp://host:514 or tcp://host:601")
    g.add_argument("--syslog-select", choices=("anomalies", "outliers", "all"), default="anomalies",
                   help="records sent to syslog (default anomalies; outliers adds DBSCAN noise)")
    g.add_argument("--no-syslog", action="store_true", help="do not write syslog")
    g.add_argument("--resend-syslog", action="store_true", help="send the day to syslog again even if already sent")
    g.add_argument("--report-dir", help="HTML reports (default <wazuh-home>/logs/mimizuku/reports)")
    g.add_argument("--no-report", action="store_true", help="no HTML report")
    g.add_argument("--keep-reports", type=int, default=30, help="reports to keep (default 30)")
    g.add_argument("--spool-dir", help="undelivered SQL/syslog output (default <wazuh-home>/mimizuku/spool)")
    g.add_argument("--log-file", help="log file (default <wazuh-home>/logs/mimizuku/retrain.log when writable)")
    g.add_argument("--verbose", "-v", action="store_true", dest="retrain_verbose", help="log more")
    p.set_defaults(func=run)
    return p


def config_from_args(a: argparse.Namespace) -> RetrainConfig:
    params: Dict[str, Any] = {"contamination": a.contamination, "n_neighbors": a.n_neighbors,
                              "eps": a.eps, "min_samples": a.min_samples}
    if a.detectors:
        params["detectors"] = tuple(x.strip() for x in a.detectors.split(",") if x.strip())
    db = a.db
    if a.db_url_file:
        with open(a.db_url_file, "r", encoding="utf-8") as f:
            db = f.read().strip()
    day = None
    if a.day:
        try:
            day = date.fromisoformat(a.day)
        except ValueError:
            raise ValueError(f"--day {a.day!r} is not a date (YYYY-MM-DD)") from None
    return RetrainConfig(
        wazuh_home=Path(a.wazuh_home), model_dir=Path(a.model_dir) if a.model_dir else None, source=a.input,
        days=a.days, day=day, keep=a.keep, params=params, min_alerts=_min_alerts(a.min_alerts),
        max_rate_ratio=a.max_rate_ratio, rate_floor=a.rate_floor, max_day_rate=a.max_day_rate,
        anomaly_filter=not a.learn_flagged, batch=not a.no_batch, db_url=db, sql=not a.no_sql,
        retention_days=None if a.no_retention else a.retention_days, syslog=not a.no_syslog,
        syslog_file=Path(a.syslog_file) if a.syslog_file else None, syslog_remote=a.syslog_remote,
        syslog_select=a.syslog_select, resend_syslog=a.resend_syslog, report=not a.no_report,
        report_dir=Path(a.report_dir) if a.report_dir else None, keep_reports=a.keep_reports,
        spool_dir=Path(a.spool_dir) if a.spool_dir else None,
        dask=_dask_setting(getattr(a, "dask", None)), dask_timeout=getattr(a, "dask_timeout", 30.0),
        publish_to=Path(a.publish_to) if getattr(a, "publish_to", None) else None,
        cluster_key=Path(a.cluster_key) if getattr(a, "cluster_key", None) else None,
        activation_delay=getattr(a, "activation_delay", 60.0))


def _dask_setting(arg: Optional[str]) -> Optional[str]:
    """--dask, else the MIMIZUKU_DASK_SCHEDULER setting; "local" (either place) means no Dask."""
    value = arg if arg is not None else (os.environ.get("MIMIZUKU_DASK_SCHEDULER") or None)
    return None if value is None or value.strip().lower() == "local" else value


def _log_path(a: argparse.Namespace) -> Optional[Path]:
    if a.log_file:
        return Path(a.log_file)
    logs = Path(a.wazuh_home) / "logs"
    return logs / "mimizuku" / "retrain.log" if logs.is_dir() else None


@contextmanager
def _stdio(summary_json: bool, log_path: Optional[Path]) -> Iterator[Tuple[int, bool]]:
    """Yields (fd for the summary line, whether stderr reaches a person).

    With ``--summary-json``, fd 1 (and fd 2 unless it is a terminal) point to the log file for
    the whole run (the wodle turns every stdout/stderr line into an event); restored after.
    """
    err_tty = os.isatty(2)
    if not summary_json:
        yield 1, True
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    target = -1
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            target = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
        except OSError:
            target = -1
    if target < 0:
        target = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(target if not err_tty else 2, 1)
        if not err_tty:
            os.dup2(target, 2)
        yield saved_out, err_tty
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, target):
            try:
                os.close(fd)
            except OSError:
                pass


@contextmanager
def _logging(log_path: Optional[Path], to_stderr: bool, verbose: bool) -> Iterator[None]:
    logger = logging.getLogger("mimizuku")
    old = (logger.level, logger.propagate, list(logger.handlers))
    handlers: List[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s mimizuku retrain[%(process)d]: %(levelname)s: %(message)s")
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            h = logging.handlers.RotatingFileHandler(log_path, maxBytes=5 << 20, backupCount=3, encoding="utf-8")
            h.setFormatter(fmt)
            h.setLevel(logging.DEBUG if verbose else logging.INFO)
            handlers.append(h)
        except OSError:
            pass
    if to_stderr:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("mimizuku retrain: %(levelname)s: %(message)s"))
        h.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(h)
    logger.handlers = handlers
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    logging.captureWarnings(True)
    pyw = logging.getLogger("py.warnings")
    old_w = (list(pyw.handlers), pyw.propagate)
    pyw.handlers, pyw.propagate = list(handlers), False
    try:
        yield
    finally:
        for h in handlers:
            try:
                h.close()
            except Exception:
                pass
        logger.setLevel(old[0])
        logger.propagate = old[1]
        logger.handlers = old[2]
        pyw.handlers, pyw.propagate = old_w
        logging.captureWarnings(False)


@contextmanager
def _sigterm() -> Iterator[None]:
    def handler(signum, frame):  # only raises in the main thread: the run unwinds, lock released
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _human(summary: Dict[str, Any]) -> str:
    m = summary["mimizuku"]
    c = m.get("counts", {})
    lines = [f"mimizuku retrain: {m['status']}: model in use {m.get('version') or 'none'}"
             + (f" (candidate {m['candidate_version']})" if m.get("candidate_version") else "")]
    if m.get("error"):
        lines.append(f"  why: {m['error']}")
    if "alerts_read" in c:
        lines.append(f"  read {c['alerts_read']:,} alerts ({c.get('bad_lines', 0)} bad lines, "
                     f"{c.get('damaged_files', 0)} damaged files, missing days: {', '.join(c.get('missing_days') or []) or 'none'}); "
                     f"excluded {c.get('excluded_flagged', 0):,} flagged by the current model")
    if "day" in c:
        d = c["day"]
        lines.append(f"  {d['date']}: {d['scored']:,} alerts scored, {d['anomalies']:,} anomalies, "
                     f"{d['clusters']:,} DBSCAN clusters, {d['noise']:,} noise")
    for w in m.get("warnings", []):
        lines.append(f"  warning: {w}")
    if m.get("report"):
        lines.append(f"  report: {m['report']}")
    lines.append(f"  took {m['durations_ms'].get('total', 0) / 1000:.1f} s; exit {m['exit_code']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mimizuku retrain`` (the CLI calls this with the parsed arguments)."""
    log_path = _log_path(args)
    verbose = bool(getattr(args, "retrain_verbose", False) or getattr(args, "verbose", False))
    with _stdio(args.summary_json, log_path) as (out_fd, stderr_ok), \
            _logging(log_path, stderr_ok, verbose), _sigterm():
        try:
            cfg = config_from_args(args)
            cfg.progress = stderr_ok and os.isatty(2)
        except (ValueError, OSError) as e:
            r = _Run(RetrainConfig(wazuh_home=Path(args.wazuh_home)))
            r.fail(EXIT_USAGE, str(e))
            r.version = ModelStore(args.model_dir or r.cfg.model_dir).current_version()
            summary = r.summary()
        else:
            summary = retrain(cfg)
        code = int(summary["mimizuku"]["exit_code"])
        log.info("summary: %s", summary_line(summary))
        text = summary_line(summary) if args.summary_json else _human(summary)
        data = (text + "\n").encode("utf-8", "replace")
        while data:
            try:
                data = data[os.write(out_fd, data):]
            except BrokenPipeError:
                break
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mimizuku.nightly {retrain,rollback,report} ...`` (the same parsers the CLI uses)."""
    from mimizuku.nightly.day_analysis import add_report_parser
    from mimizuku.store.versions import add_rollback_parser

    ap = argparse.ArgumentParser(prog="mimizuku")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(sub)
    add_rollback_parser(sub)
    add_report_parser(sub)
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return int(a.func(a))


if __name__ == "__main__":
    sys.exit(main())
