"""Batch analysis of one day (AnomalyHunter's job): score the day's alerts, cluster them with
DBSCAN over their context, and hand records and clusters to SQL, syslog and the HTML report.

The clusters: ``mimizuku.nightly.clustering`` (DBSCAN over the context detector's feature space).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mimizuku.nightly.clustering import ContextClusterer, Situation

# numpy / scikit-learn are imported where they are used (clustering): the CLI builds its parser
# from the nightly package, and `mimizuku --help` must not pay for them.

__all__ = ["DayAnalysis", "score_day", "cluster_day", "analyse_day", "deliver", "prune_reports",
           "write_day_report"]

log = logging.getLogger("mimizuku.batch")


# --- one day ------------------------------------------------------------------------------------

@dataclass
class DayAnalysis:
    """A scored and clustered day: records (docs/records.md, each with ``cluster``) and figures."""

    day: str
    model_version: str
    records: List[Dict[str, Any]] = field(default_factory=list)
    situations: List[Optional[Situation]] = field(default_factory=list)
    read: Dict[str, Any] = field(default_factory=dict)
    n_clusters: int = 0
    durations_ms: Dict[str, int] = field(default_factory=dict)
    #: the model's peer groups (``mimizuku.engine.peers``, as JSON rows), for the report
    peer_groups: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def n_alerts(self) -> int:
        return int(self.read.get("alerts", 0))

    @property
    def n_anomalies(self) -> int:
        return sum(1 for r in self.records if r.get("anomaly"))

    @property
    def n_noise(self) -> int:
        return sum(1 for r in self.records if r.get("cluster") == -1)

    def anomaly_counts(self) -> Dict[str, int]:
        """Anomalies per detector that flagged them (a record may count for several)."""
        c: Counter = Counter()
        for r in self.records:
            if r.get("anomaly"):
                c[r.get("detector")] += 1
        return dict(c)

    def coords(self) -> Dict[str, Tuple[float, float]]:
        """Alert id -> (hour of day, log2 rate), jittered, for the report's cluster scatter."""
        out: Dict[str, Tuple[float, float]] = {}
        for r, s in zip(self.records, self.situations):
            if s is None or r.get("id") is None:
                continue
            h = hashlib.blake2b(str(r["id"]).encode("utf-8", "replace"), digest_size=4).digest()
            jx, jy = (h[0] / 255 - 0.5) * 0.8, (h[1] / 255 - 0.5) * 0.6
            hour = s[1] if isinstance(s[1], (int, float)) and s[1] >= 0 else 0
            rate = s[2] if len(s) > 2 and isinstance(s[2], (int, float)) else 0
            out[str(r["id"])] = (float(hour) + 0.5 + jx, float(rate) + jy)
        return out

    def summary(self) -> Dict[str, Any]:
        return {"date": self.day, "alerts": self.n_alerts, "scored": len(self.records),
                "anomalies": self.n_anomalies, "clusters": self.n_clusters, "noise": self.n_noise}


def _ms(t0: float) -> int:
    return int(round((time.monotonic() - t0) * 1000))


def score_day(model: Any, source: Any, day: date, *, clusterer: Optional[ContextClusterer] = None,
              progress: bool = False) -> DayAnalysis:
    """Read one day (the alert's own wall-clock date), score it, and compute each alert's
    situation for clustering — one read, streaming (records are kept, alerts are not).

    When the model's context detector has the clusterer's feature space (same class and rate
    window), the point it computed to score an alert (``ScoredAlert.key``) is the point
    clustered: not computed twice, so clusters and context scores describe exactly the same
    thing. Otherwise the clusterer's own feature detector follows the day's stream.
    """
    from mimizuku.sources.reader import ReadStats

    clusterer = clusterer or ContextClusterer.from_model(model)
    fd = clusterer.feature_detector()
    stats = ReadStats()
    t0 = time.monotonic()
    ctx = getattr(model, "detectors_", {}).get("context")
    share = ctx is not None and type(ctx) is type(fd) and getattr(ctx, "rate_window", None) == fd.rate_window
    out = DayAnalysis(day=day.isoformat(), model_version=str(getattr(model, "model_version_", "unversioned")))
    if hasattr(model, "peer_groups"):
        out.peer_groups = model.peer_groups().to_json()
    for scored in model.iter_scored(source, since=day, until=day, stats=stats, progress=progress):
        a = scored.alert
        if share:
            k = scored.key(ctx.name)
            sit = fd.situation(k) if k is not None else None
        else:  # every alert, in order: the feature detector keeps its own rate windows
            sit = fd.situation(fd.key(a)) if fd.applies(a) else None
        if scored.record is not None:
            mgr = a.get("manager") if isinstance(a, dict) else None
            if isinstance(mgr, dict) and isinstance(mgr.get("name"), str):
                scored.record.setdefault("manager", mgr["name"])   # the index documents' ids name it
            out.records.append(scored.record)
            out.situations.append(sit)
    out.read = stats.as_dict()
    out.durations_ms["score"] = _ms(t0)
    return out


def cluster_day(analysis: DayAnalysis, clusterer: ContextClusterer) -> DayAnalysis:
    """Label every record of the day (``record["cluster"]``: -1 noise, None not clustered)."""
    t0 = time.monotonic()
    labels = clusterer.fit_predict_situations(analysis.situations)
    for r, lab in zip(analysis.records, labels):
        r["cluster"] = int(lab) if lab >= -1 else None
    analysis.n_clusters = int(clusterer.n_clusters_)
    analysis.durations_ms["cluster"] = _ms(t0)
    return analysis


def analyse_day(model: Any, source: Any, day: date, *, eps: Optional[float] = None,
                min_samples: Optional[int] = None, progress: bool = False) -> DayAnalysis:
    """Score and cluster one day with ``model``."""
    clusterer = ContextClusterer.from_model(model, eps=eps, min_samples=min_samples)
    return cluster_day(score_day(model, source, day, clusterer=clusterer, progress=progress), clusterer)


# --- outputs ------------------------------------------------------------------------------------

@dataclass
class Delivery:
    """What the sinks did: counts per sink, and one line per problem (never raised)."""

    counts: Dict[str, Dict[str, int]] = field(default_factory=dict)
    warnings: List[str] = field(default_factory=list)
    durations_ms: Dict[str, int] = field(default_factory=dict)


def sql_spool_dir(spool_root: Path, masked_url: str) -> Path:
    """One spool per database (``sql-<hash of the URL without password>``)."""
    return Path(spool_root) / ("sql-" + hashlib.sha1(masked_url.encode("utf-8", "replace")).hexdigest()[:12])


def deliver(records: Sequence[Dict[str, Any]], run: Mapping[str, Any], *, sql_url: Optional[str],
            spool_root: Path, retention_days: Optional[float] = None,
            syslog_file: Optional[Path] = None, syslog_remote: Optional[str] = None,
            syslog_select: str = "anomalies", syslog: bool = True, syslog_format: str = "rfc5424",
            syslog_max_bytes: Optional[int] = None, syslog_udp_rate: Optional[float] = None,
            index: Any = None) -> Delivery:
    """Write the day's records (with their clusters) to SQL, syslog and the indexer.

    A sink that is down keeps what it could not write in its spool and writes it first next
    time (its own business); here its error becomes a warning line, so a database outage never
    turns a good retrain into a failed one. ``syslog_max_bytes``/``syslog_udp_rate``: None
    keeps the sink's defaults (8,096 bytes, 2,000 datagrams per second). ``index``: a configuration
    with the ``index_*`` settings (:func:`mimizuku.delivery.index_sink.index_settings`); documents
    the indexer has not taken stay in ``<spool_root>/index`` and go first next time.
    """
    out = Delivery()
    if sql_url is not None:
        t0 = time.monotonic()
        try:
            from mimizuku.outputs.sql import SqlSink, mask_url

            with SqlSink(sql_url, spool_dir=sql_spool_dir(spool_root, mask_url(sql_url)),
                         retention_days=retention_days) as sink:
                out.counts["sql"] = sink.write_run(run, records)
        except Exception as e:  # OutputError (spooled), driver missing, bad URL: reported, not fatal
            counts = getattr(e, "counts", None)
            if counts:
                out.counts["sql"] = counts
            spooled = getattr(e, "spooled", 0)
            out.counts.setdefault("sql", {})["spooled"] = int(spooled or 0)
            out.warnings.append(f"SQL: {_one_line(e)}")
            log.warning("SQL output: %s", _one_line(e, 1000))
        out.durations_ms["sql"] = _ms(t0)
    if syslog and (syslog_file is not None or syslog_remote):
        t0 = time.monotonic()
        try:
            from mimizuku.outputs.syslog import SyslogSink

            if syslog_file is not None:
                Path(syslog_file).parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            limits: Dict[str, Any] = {}
            if syslog_max_bytes is not None:
                limits["max_message_bytes"] = syslog_max_bytes
            if syslog_udp_rate is not None:
                limits["udp_rate"] = syslog_udp_rate
            with SyslogSink(syslog_file, remote=syslog_remote, select=syslog_select, format=syslog_format,
                            spool_dir=Path(spool_root) / "syslog", **limits) as sink:
                out.counts["syslog"] = sink.emit(records)
        except Exception as e:
            counts = getattr(e, "counts", None)
            if counts:
                out.counts["syslog"] = counts
            out.warnings.append(f"syslog: {_one_line(e)}")
            log.warning("syslog output: %s", _one_line(e, 1000))
        out.durations_ms["syslog"] = _ms(t0)
    if index is not None and getattr(index, "index_url", None) is not None:
        t0 = time.monotonic()
        try:
            from mimizuku.delivery.index_sink import sink_for

            sink = sink_for(index, Path(spool_root) / "index", _log_line).start()
            try:   # a bulk's worth at a time: the sink's thread sends while the next ones are built
                for i in range(0, len(records), sink.batch_docs):
                    sink.add(records[i: i + sink.batch_docs])
            finally:
                sink.close(timeout=60.0)
            t = sink.totals
            out.counts["index"] = {"created": t.created, "duplicates": t.duplicates, "rejected": t.rejected,
                                   "spooled": sink.pending()}
            if sink.pending():
                out.warnings.append(f"index: the indexer has not taken everything yet; {sink.pending()} batches wait "
                                    f"in {sink.spool.directory} and are sent first next time")
        except Exception as e:   # bad settings, spool not writable: reported, not fatal
            out.warnings.append(f"index: {_one_line(e)}")
            log.warning("index output: %s", _one_line(e, 1000))
        out.durations_ms["index"] = _ms(t0)
    return out


def _log_line(level: str, message: str) -> None:
    log.log({"error": logging.ERROR, "warning": logging.WARNING}.get(level, logging.INFO), "%s", message)


def _one_line(e: BaseException, limit: int = 300) -> str:
    text = " ".join(f"{type(e).__name__}: {e}".split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def prune_reports(report_dir: Path, keep: int, prefix: str = "mimizuku-") -> List[str]:
    """Keep the ``keep`` newest ``mimizuku-*.html`` reports (by name: they start with the day)."""
    try:
        names = sorted(n for n in os.listdir(report_dir) if n.startswith(prefix) and n.endswith(".html"))
    except FileNotFoundError:
        return []
    doomed = names[: max(0, len(names) - keep)]
    for n in doomed:
        try:
            os.unlink(Path(report_dir) / n)
        except OSError:
            pass
    return doomed


def write_day_report(analysis: DayAnalysis, path: Path, run: Optional[Mapping[str, Any]] = None,
                     feedback: Optional[Mapping[str, Any]] = None) -> Path:
    """The self-contained HTML report of a day (``report.write_report``; ``feedback``: the model
    directory and the alert source its ``mimizuku feedback add`` commands name)."""
    from mimizuku.outputs.report import write_report

    return write_report(path, analysis.records, run=dict(run or {}), coords=analysis.coords(),
                        title=f"Mimizuku nightly report {analysis.day}", peer_groups=analysis.peer_groups,
                        feedback=feedback)
