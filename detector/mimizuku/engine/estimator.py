"""`Mimizuku`: the estimator users import — the original library's API, three detectors inside.

    model = Mimizuku(contamination=0.001, n_neighbors=5)
    model.fit("./training.json")          # any source mimizuku.sources.reader reads
    model.save_model("./models")
    anomalies = Mimizuku.load_model("./models", ignore_users=["root"]).predict("./test.json")

Training streams the alerts once and keeps only counts of distinct situations per detector, so
memory follows the variety of the data, not its volume. Scoring works in batches and memoises
per situation. Each scored alert becomes a record (docs/records.md); ``predict`` returns the
anomalies as a DataFrame, ``score`` every scored alert.
"""
from __future__ import annotations

import datetime as _dt
import gc
import hashlib
import logging
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

from mimizuku.core import fields
from mimizuku.engine.calibration import severity as severity_of
from mimizuku.engine.detectors.base import Detector, NotEnoughData
from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.context import ContextDetector
from mimizuku.engine.detectors.files import FileIntegrityDetector, path_matches
from mimizuku.engine.lineage import ChannelJudged, ProcessLineage

log = logging.getLogger("mimizuku")

DETECTORS = ("files", "commands", "context")
ORIGINAL_COLUMNS = ["original_hostname", "original_path", "original_event",
                    "original_effective_user", "original_command", "original_user"]
RECORD_COLUMNS = ["id", "timestamp", "agent_id", "agent_name", "rule_id", "rule_level",
                  "rule_description", "detector", "score", "severity", "anomaly", "reasons"] + ORIGINAL_COLUMNS


class Mimizuku:
    """Anomaly detection for Wazuh alerts (file integrity, commands, alert context).

    Parameters are stored as given (scikit-learn style); fitted state ends in ``_``.
    ``detectors`` picks which of ``files``, ``commands``, ``context`` to train; ``add_rule``
    (the original API) replaces that choice with the detector objects given.
    """

    def __init__(self, contamination=0.001, n_neighbors=5, abuse_files=(), ignore_files=(),
                 ignore_users=(), detectors=DETECTORS, eps=0.5, min_samples=5, rate_window=60,
                 context_contamination=None):
        self.contamination = contamination
        self.n_neighbors = n_neighbors
        self.abuse_files = list(abuse_files)
        self.ignore_files = list(ignore_files)
        self.ignore_users = list(ignore_users)
        self.detectors = tuple(detectors)
        self.eps = eps
        self.min_samples = min_samples
        self.rate_window = rate_window
        self.context_contamination = context_contamination
        self.rules: List[Detector] = []

    def __setstate__(self, state):
        # a model that travelled pickled (to a Dask worker): its detectors dropped the lineage
        # they share (see ChannelJudged.__getstate__); give it back to them
        self.__dict__.update(state)
        lineage = state.get("lineage_")
        if lineage is not None:
            _attach(state.get("detectors_", {}).values(), lineage)

    # -- composition ------------------------------------------------------------------------
    def add_rule(self, rule: Detector) -> "Mimizuku":
        """Use this detector (original API: ``FsNotify``, ``AuditCommand``); replaces the default set."""
        self.rules.append(rule)
        return self

    def _new_detectors(self) -> List[Detector]:
        if self.rules:
            return list(self.rules)
        unknown = set(self.detectors) - set(DETECTORS)
        if unknown:
            raise ValueError(f"unknown detector(s) {sorted(unknown)}; choose from {list(DETECTORS)}")
        made = {
            "files": lambda: FileIntegrityDetector(n_neighbors=self.n_neighbors, contamination=self.contamination),
            "commands": lambda: CommandDetector(n_neighbors=self.n_neighbors, contamination=self.contamination),
            "context": lambda: ContextDetector(eps=self.eps, min_samples=self.min_samples,
                                               contamination=self._context_contamination(),
                                               rate_window=self.rate_window),
        }
        return [made[n]() for n in DETECTORS if n in self.detectors]

    def _context_contamination(self) -> float:
        """The context detector's alert budget (default: ``contamination``). It scores *every*
        alert, so a SOC that finds 0.1 % of all alerts too many may lower it on its own."""
        return self.contamination if self.context_contamination is None else self.context_contamination

    # -- training ---------------------------------------------------------------------------
    def fit(self, data, *, days=None, since=None, until=None, progress=False) -> "Mimizuku":
        """Learn what is normal from alerts (path, directory tree, DataFrame, list or dict)."""
        from mimizuku.sources.reader import ReadStats, iter_alerts

        stats = ReadStats()
        part = self._partial_fit(iter_alerts(data, days=days, since=since, until=until, stats=stats,
                                             progress=progress))
        return self._fit_from_partials([part], stats, progress=progress)

    # -- training in partitions (one stream, or many merged: mimizuku.nightly.partitions) ------
    def _partial_fit(self, alerts: Iterable[Dict[str, Any]]) -> "PartialFit":
        """Observe one partition of the training alerts with fresh detectors.

        Returns what the detectors counted (``Detector.partial_state``): picklable and
        mergeable, so partitions read apart (sequentially or on Dask workers) make one model
        with ``_fit_from_partials``. Per-stream state (rate windows) starts anew here."""
        dets = self._new_detectors()
        lineage = _attach(dets, ProcessLineage())  # learning: heads are counted, every channel counts
        for d in dets:
            d.begin_fit()
        with _gc_paused():
            n, first, last = self._observe_all(alerts, dets, lineage)
        states = {d.name: d.partial_state() for d in dets}
        states[_LINEAGE_STATE] = {"heads": lineage.heads}
        return PartialFit(n=n, first=first, last=last, states=states)

    def _fit_from_partials(self, partials: Iterable["PartialFit"], stats: Any, *, progress=False) -> "Mimizuku":
        """Fit the detectors on the merged partitions (in the order given: the order of first
        sight of each situation is kept, so the result equals one stream's)."""
        dets = self._new_detectors()
        for d in dets:
            d.begin_fit()
        learning = ProcessLineage()
        n, first, last = 0, None, None
        for p in partials:
            learning.heads.update((p.states.get(_LINEAGE_STATE) or {}).get("heads") or {})
            n += p.n
            if p.first is not None and (first is None or p.first < first):
                first = p.first
            if p.last is not None and (last is None or p.last > last):
                last = p.last
            for d in dets:
                state = p.states.get(d.name)
                if state is not None:
                    d.merge_state(state)
        if n == 0:
            raise NotEnoughData(f"no alerts to train on ({stats})")
        fitted, problems = [], {}
        steps = dets
        if progress:
            from tqdm import tqdm

            steps = tqdm(dets, desc="training", unit="detector", leave=False)
        for d in steps:
            if progress:
                steps.set_postfix_str(d.name)
            try:
                fitted.append(d.end_fit())
            except NotEnoughData as e:
                problems[d.name] = str(e)
                log.warning("%s", e)
        if not fitted:
            raise NotEnoughData("no detector could be trained: " + "; ".join(problems.values()))
        self.detectors_ = {d.name: d for d in fitted}
        self.change_channels_ = sorted(learning.learnt())
        self.lineage_ = _attach(fitted, ProcessLineage(self.change_channels_))
        self.skipped_detectors_ = problems
        self.n_alerts_ = n
        self.read_stats_ = stats.as_dict()
        self.training_window_ = {"first": first, "last": last}
        self.model_version_ = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + secrets.token_hex(3)
        return self

    def _observe_all(self, alerts: Iterable[Dict[str, Any]], dets: Sequence[Detector],
                     lineage: Optional[ProcessLineage] = None):
        """Feed every alert to the detectors that apply; returns (count, first and last timestamp)."""
        first = last = None
        n = 0
        for alert in alerts:
            n += 1
            ts = fields.timestamp(alert)
            if ts:
                first = ts if first is None or ts < first else first
                last = ts if last is None or ts > last else last
            if lineage is not None:  # the process tree includes what is ignored
                lineage.annotate_one(alert)
            if self._ignored(alert):
                continue
            for d in dets:
                if d.applies(alert) and not d.ignored(alert):
                    d.observe(alert)
        if lineage is not None:
            lineage.forget_batch()
        return n, first, last

    # -- ignore / abuse lists ---------------------------------------------------------------
    def _ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        if self.ignore_files and fields.is_fim(alert):
            m = path_matches(fields.file_path(alert) or "", self.ignore_files)
            if m:
                return f"ignored: path matches ignore_files entry {m!r}"
        if self.ignore_users:
            users = {fields.any_user(alert), fields.file_user(alert) if fields.is_fim(alert) else None,
                     fields.command_user(alert) if fields.is_command(alert) else None}
            hit = sorted(u for u in users if u is not None and u in self.ignore_users)
            if hit:
                return f"ignored: user {hit[0]!r} is in ignore_users"
        return None

    def _abuse(self, alert: Dict[str, Any]) -> Optional[str]:
        files = self.__dict__.get("detectors_", {}).get("files")
        patterns = list(self.abuse_files) + list(getattr(files, "abuse_files", ()) or ())
        if patterns and fields.is_fim(alert):
            m = path_matches(fields.file_path(alert) or "", patterns)
            if m:
                return f"abuse file: path matches abuse_files entry {m!r} (always flagged)"
        return None

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "detectors_"):
            raise RuntimeError("this Mimizuku model is not fitted yet: call fit() or load_model()")

    def iter_records(self, data, *, batch_size=2048, days=None, since=None, until=None,
                     progress=False, new_stream=True, stats=None) -> Iterator[Dict[str, Any]]:
        """Score alerts in batches; yields one record (docs/records.md) per scored alert."""
        from mimizuku.sources.reader import iter_alerts

        self._check_fitted()
        dets = list(self.detectors_.values())
        if new_stream:
            for d in dets:
                d.start_stream()
            lineage = self.__dict__.get("lineage_")
            if lineage is not None:
                lineage.start_stream()
        batch: List[Dict[str, Any]] = []
        for alert in iter_alerts(data, days=days, since=since, until=until, stats=stats, progress=progress):
            batch.append(alert)
            if len(batch) >= batch_size:
                yield from self._score_batch(batch, dets)
                batch = []
        if batch:
            yield from self._score_batch(batch, dets)

    def score_records(self, data, **kw) -> List[Dict[str, Any]]:
        """Every scored alert as a plain dict (the scored-record schema)."""
        return list(self.iter_records(data, **kw))

    def _score_batch(self, alerts: Sequence[Dict[str, Any]], dets: Sequence[Detector]) -> List[Dict[str, Any]]:
        lineage = self.__dict__.get("lineage_")
        with _gc_paused():
            if lineage is None:
                return self._score_batch_records(alerts, dets)
            lineage.annotate(alerts)  # the whole batch, in order, before any detector keys it
            try:
                return self._score_batch_records(alerts, dets)
            finally:
                lineage.forget_batch()

    def _score_batch_records(self, alerts: Sequence[Dict[str, Any]], dets: Sequence[Detector]) -> List[Dict[str, Any]]:
        per_alert: List[Dict[str, Any]] = [{} for _ in alerts]
        for d in dets:
            idx = [i for i, a in enumerate(alerts) if d.applies(a)]
            if not idx:
                continue
            keys = [d.key(alerts[i]) for i in idx]
            scores = d.calibrate(d.raw_scores(keys))
            for i, k, s in zip(idx, keys, scores):
                per_alert[i][d.name] = (float(s), k, d)
        return [self._record(alert, got) for alert, got in zip(alerts, per_alert) if got]

    def _record(self, alert: Dict[str, Any], got: Dict[str, Any]) -> Dict[str, Any]:
        best_name, best_margin = None, None
        flagged = []
        for name, (s, k, d) in got.items():
            margin = s - d.threshold_
            if d.ignored(alert) is None and margin >= 0:
                flagged.append(name)
            if best_margin is None or margin > best_margin:
                best_name, best_margin = name, margin
        s, k, d = got[best_name]
        ignored = self._ignored(alert)
        abuse = self._abuse(alert)
        anomaly = bool(flagged) and ignored is None
        reasons: List[str] = []
        rid = fields.alert_id(alert) or _content_id(alert)
        repeat_of = None
        if anomaly and not abuse and len(flagged) == 1:
            # one anomaly per situation per window (mimizuku.engine.repeats): the rest of a burst, or the
            # same action seen through a second log, repeats it
            fs, fk, fd = got[flagged[0]]
            repeat_of = fd.repeat_of(fk, alert, severity_of(fs, fd.threshold_, True), rid)
            if repeat_of is not None:
                anomaly = False
                reasons.append(f"repeats anomaly {repeat_of} ({fd.name}: {fd.repeat_what} within "
                               f"{fd.repeat_window} s): counted there, not raised again")
        if abuse:
            anomaly = True
            reasons.append(abuse)
            if "files" in got:
                best_name = "files"
                s, k, d = got["files"]
        if anomaly:
            for name in ([best_name] + [n for n in flagged if n != best_name]):
                ds, dk, dd = got[name]
                if name in flagged or name == best_name:
                    prefix = "" if name == best_name else f"[{name}] "
                    reasons.extend(prefix + r for r in dd.explain(dk, alert))
        elif ignored:
            reasons.append(ignored)
        sev = "critical" if abuse else severity_of(s, d.threshold_, anomaly)
        rec = {
            "id": rid,
            "timestamp": fields.timestamp(alert),
            "agent": {"id": fields.agent_id(alert), "name": fields.agent_name(alert), "ip": fields.agent_ip(alert)},
            "rule": {"id": fields.rule_id(alert), "level": fields.rule_level(alert),
                     "description": fields.rule_description(alert), "groups": fields.rule_groups(alert)},
            "location": fields.location(alert),
            "detector": best_name,
            "score": round(s, 6),
            "score_pct": int(round(100 * s)),
            "threshold": round(float(d.threshold_), 6),
            "anomaly": anomaly,
            "severity": sev,
            "reasons": reasons if anomaly or ignored or repeat_of else [],
            "scores": {n: round(v[0], 6) for n, v in got.items()},
            "fields": fields.key_fields(alert),
            "model_version": getattr(self, "model_version_", "unversioned"),
        }
        if repeat_of is not None:
            rec["repeat_of"] = repeat_of
        return rec

    def score(self, data, **kw):
        """Every scored alert as a DataFrame (one row per alert)."""
        return _frame(self.iter_records(data, **kw))

    def predict(self, data, **kw):
        """The anomalies as a DataFrame (the original API)."""
        return _frame(r for r in self.iter_records(data, **kw) if r["anomaly"])

    # -- persistence ------------------------------------------------------------------------
    def params(self) -> Dict[str, Any]:
        return {"contamination": self.contamination, "n_neighbors": self.n_neighbors,
                "abuse_files": self.abuse_files, "ignore_files": self.ignore_files,
                "ignore_users": self.ignore_users, "detectors": list(self.detectors), "eps": self.eps,
                "min_samples": self.min_samples, "rate_window": self.rate_window,
                "context_contamination": self.context_contamination}

    def manifest(self) -> Dict[str, Any]:
        self._check_fitted()
        return {
            "model_version": self.model_version_,
            "params": self.params(),
            "training": {"alerts": self.n_alerts_, "window": self.training_window_, "read": self.read_stats_},
            "detectors": {
                name: {"alerts": d.n_alerts_, "situations": d.n_keys_, "threshold": d.threshold_,
                       "contamination": d.contamination, "class": type(d).__name__}
                for name, d in self.detectors_.items()
            },
            "skipped_detectors": self.skipped_detectors_,
            # (agent, channel) pairs whose change channel ran routinely in training (lineage)
            "change_channels": [list(p) for p in getattr(self, "change_channels_", [])],
        }

    def save_model(self, model_dir) -> Dict[str, Any]:
        """Write the fitted detectors and a checksummed manifest into ``model_dir`` (atomically)."""
        from mimizuku.store.model_dir import save_model_dir

        return save_model_dir(model_dir, dict(self.detectors_), self.manifest())

    @classmethod
    def load_model(cls, model_dir, ignore_files=None, abuse_files=None, ignore_users=None,
                   check_versions=True) -> "Mimizuku":
        """Load a model directory after verifying checksums, ownership and permissions.

        The ignore/abuse lists given here replace the ones saved with the model.
        """
        from mimizuku.store.model_dir import load_model_dir
        from mimizuku.store.versions import resolve_model_dir

        # a model root kept by the nightly job holds versions/<v>/ and a `current` pointer
        objects, manifest = load_model_dir(resolve_model_dir(model_dir), check_versions=check_versions)
        p = dict(manifest.get("params", {}))
        for name, value in (("ignore_files", ignore_files), ("abuse_files", abuse_files), ("ignore_users", ignore_users)):
            if value is not None:
                p[name] = list(value)
        known = {"contamination", "n_neighbors", "abuse_files", "ignore_files", "ignore_users",
                 "detectors", "eps", "min_samples", "rate_window", "context_contamination"}
        model = cls(**{k: v for k, v in p.items() if k in known})
        # the fitting order (the manifest is written with sorted keys): ties between detectors
        # (scores clipped at 1.0) go to the same detector as in the model that was saved
        saved = [n for n in manifest.get("detectors", {}) if n in objects]
        names = [n for n in DETECTORS if n in saved] + [n for n in saved if n not in DETECTORS]
        model.detectors_ = {n: objects[n] for n in names}
        channels = manifest.get("change_channels")
        if isinstance(channels, list):  # models written before lineage existed have none
            model.change_channels_ = sorted((str(a), str(c)) for a, c in channels)
            model.lineage_ = _attach(model.detectors_.values(), ProcessLineage(model.change_channels_))
        model.skipped_detectors_ = manifest.get("skipped_detectors", {})
        training = manifest.get("training", {})
        model.n_alerts_ = training.get("alerts", 0)
        model.training_window_ = training.get("window", {})
        model.read_stats_ = training.get("read", {})
        model.model_version_ = manifest.get("model_version", "unversioned")
        model.manifest_ = manifest
        return model


@dataclass
class PartialFit:
    """What one partition of the training alerts taught: picklable, merged by ``_fit_from_partials``.

    ``states`` maps a detector name to its ``Detector.partial_state()`` (key counts and the
    like: compact, never alerts)."""

    n: int = 0
    first: Optional[str] = None
    last: Optional[str] = None
    states: Dict[str, Dict[str, Any]] = field(default_factory=dict)


#: where a partition's lineage (change-channel heads seen) rides in ``PartialFit.states``
_LINEAGE_STATE = "_lineage"


def _attach(dets: Iterable[Detector], lineage: ProcessLineage) -> ProcessLineage:
    """Give the detectors that judge change channels the model's process lineage."""
    for d in dets:
        if isinstance(d, ChannelJudged):
            d.lineage = lineage
    return lineage


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector around a hot loop that makes no reference cycles.

    Scoring and counting allocate many small tuples; each full collection would otherwise walk
    every long-lived object of the model and its caches (a third of scoring time measured)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _content_id(alert: Dict[str, Any]) -> str:
    """A stable id for an alert that has none: a hash of its canonical JSON."""
    try:
        import orjson

        raw = orjson.dumps(alert, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    except Exception:  # orjson missing or an exotic value: the slower, more lenient path
        import json

        raw = json.dumps(alert, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8", "replace")
    return "sha1:" + hashlib.sha1(raw).hexdigest()


def _flat(r: Dict[str, Any]) -> Dict[str, Any]:
    f = r["fields"]
    return {
        "id": r["id"], "timestamp": r["timestamp"], "agent_id": r["agent"]["id"], "agent_name": r["agent"]["name"],
        "rule_id": r["rule"]["id"], "rule_level": r["rule"]["level"], "rule_description": r["rule"]["description"],
        "detector": r["detector"], "score": r["score"], "severity": r["severity"], "anomaly": r["anomaly"],
        "reasons": r["reasons"],
        "original_hostname": r["agent"]["name"], "original_path": f.get("path"), "original_event": f.get("event"),
        "original_effective_user": f.get("user") if "path" in f else None,
        "original_command": f.get("command"), "original_user": f.get("user"),
    }


def _frame(records: Iterable[Dict[str, Any]]):
    import pandas as pd

    return pd.DataFrame([_flat(r) for r in records], columns=RECORD_COLUMNS)
