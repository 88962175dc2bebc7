"""Batch analysis of one day (AnomalyHunter's job): score the day's alerts, cluster them with
DBSCAN over their context, and hand records and clusters to SQL, syslog and the HTML report.

Feature space: the context detector's (``detectors/context.py``), so the nightly clusters and the
live context scores speak about the same thing. An alert is a point made of one-hot blocks (rule,
rule groups, level, agent, user, source-address class, Windows event or IDS signature — never
ordinal codes, so no distance between arbitrary label numbers), the hour of day on a circle,
and log2 rates (this rule on this agent, this source) in the trailing window. Identical points
("situations") are clustered once, weighted by how many alerts of the day they stand for
(``sample_weight``), so a day of 70,000 alerts is a few thousand points.

DBSCAN runs per group of blocks that lie within ``eps`` of each other: two points whose blocks
are farther apart than ``eps`` can never be neighbours, so the groups are independent and
clustering each one is exactly DBSCAN on the whole space. The groups are found from the block
distances themselves (a radius-``eps`` neighbour graph, connected components), not assumed:
blocks that differ only in rule groups or level (closer than ``eps``) are clustered together
with their one-hot features. Labels are unique across the day; ``-1`` is noise, the outliers.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Hashable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from mimizuku.core import fields

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# numpy / scikit-learn are imported where they are used: the CLI builds its parser from this
# module, and `mimizuku --help` must not pay for them.

__all__ = ["ContextClusterer", "DayAnalysis", "score_day", "analyse_day", "deliver",
           "add_report_parser", "run_report"]

log = logging.getLogger("mimizuku.batch")

Situation = Tuple[Hashable, ...]


class ContextClusterer:
    """DBSCAN over the context detector's feature space (scikit-learn style).

    ``fit_predict(alerts)`` labels alerts given in stream order (rates depend on order);
    ``fit_predict_situations(situations)`` labels precomputed situations. After fitting:
    ``labels_`` (per input), ``n_clusters_``, ``situations_`` (distinct points) and
    ``situation_labels_``.
    """

    def __init__(self, eps: float = 0.5, min_samples: int = 5, rate_window: int = 60,
                 hour_weight: float = 0.35, rate_weight: float = 0.5):
        self.eps = eps
        self.min_samples = min_samples
        self.rate_window = rate_window
        self.hour_weight = hour_weight
        self.rate_weight = rate_weight

    @classmethod
    def from_model(cls, model: Any, eps: Optional[float] = None,
                   min_samples: Optional[int] = None) -> "ContextClusterer":
        """Same feature space and DBSCAN parameters as the model's context detector."""
        ctx = getattr(model, "detectors_", {}).get("context")
        p: Dict[str, Any] = {}
        if ctx is not None:
            params = ctx.get_params()
            p = {k: params[k] for k in ("eps", "min_samples", "rate_window", "hour_weight", "rate_weight")
                 if k in params}
        else:
            p = {"eps": getattr(model, "eps", 0.5), "min_samples": getattr(model, "min_samples", 5),
                 "rate_window": getattr(model, "rate_window", 60)}
        if eps is not None:
            p["eps"] = eps
        if min_samples is not None:
            p["min_samples"] = min_samples
        return cls(**p)

    # -- the feature space -----------------------------------------------------------------------
    def feature_detector(self):
        """A fresh context detector used only for its features (its own rate windows)."""
        from mimizuku.engine.detectors.context import ContextDetector

        d = ContextDetector(eps=self.eps, min_samples=self.min_samples, rate_window=self.rate_window,
                            hour_weight=self.hour_weight, rate_weight=self.rate_weight)
        d.start_stream()
        return d

    def situations(self, alerts: Iterable[Dict[str, Any]]) -> Iterator[Optional[Situation]]:
        """The situation of each alert, in order (``None`` for one without a rule id)."""
        d = self.feature_detector()
        for a in alerts:
            yield d.situation(d.key(a)) if d.applies(a) else None

    # -- clustering ------------------------------------------------------------------------------
    def fit_predict(self, alerts: Iterable[Dict[str, Any]], y=None) -> "np.ndarray":
        sits = list(self.situations(alerts))
        return self.fit_predict_situations(sits)

    def fit_predict_situations(self, sits: Sequence[Optional[Situation]]) -> "np.ndarray":
        """Labels per input situation (``-2`` for ``None``: not clustered)."""
        import numpy as np
        from sklearn.cluster import DBSCAN
        from mimizuku.engine.detectors.context import MAX_EPS

        if not 0 < self.eps:
            raise ValueError("eps must be > 0")
        if self.eps > MAX_EPS:
            log.info("eps %.2f exceeds the context detector's block separation; blocks are merged by distance", self.eps)
        counts = Counter(s for s in sits if s is not None)
        uniq: List[Situation] = list(counts)
        weights = np.fromiter((counts[s] for s in uniq), dtype=float, count=len(uniq))
        labels_u = np.full(len(uniq), -1, dtype=int)
        if uniq:
            fd = self.feature_detector()
            cont = np.array([fd.continuous_features(*s[1:]) for s in uniq], dtype=float)
            blocks = list(dict.fromkeys(s[0] for s in uniq))
            bpos = {b: i for i, b in enumerate(blocks)}
            sit_block = np.fromiter((bpos[s[0]] for s in uniq), dtype=int, count=len(uniq))
            comp, Xb = self._block_components(blocks, fd)
            members: Dict[int, List[int]] = {}
            for i, b in enumerate(sit_block):
                members.setdefault(int(comp[b]), []).append(i)
            next_label = 0
            for c in sorted(members, key=lambda c: members[c][0]):  # order of first appearance
                idx = np.asarray(members[c])
                if len(idx) == 1:
                    lab = np.where(weights[idx] >= self.min_samples, 0, -1)
                else:
                    if len({int(sit_block[i]) for i in idx}) == 1:
                        X = cont[idx]
                    else:  # blocks within eps of each other: cluster them with their one-hot part
                        X = np.hstack([Xb[sit_block[idx]].toarray(), cont[idx]])
                    lab = DBSCAN(eps=self.eps, min_samples=self.min_samples, algorithm="kd_tree").fit_predict(
                        X, sample_weight=weights[idx])
                labels_u[idx] = np.where(lab >= 0, lab + next_label, -1)
                if (lab >= 0).any():
                    next_label += int(lab.max()) + 1
            self.n_clusters_ = next_label
        else:
            self.n_clusters_ = 0
        pos = {s: i for i, s in enumerate(uniq)}
        self.situations_ = uniq
        self.situation_weights_ = weights
        self.situation_labels_ = labels_u
        self.labels_ = np.fromiter((labels_u[pos[s]] if s is not None else -2 for s in sits),
                                   dtype=int, count=len(sits))
        return self.labels_

    def _block_components(self, blocks: List[Hashable], fd: Any):
        """Connected components of blocks closer than eps (one-hot distance), and the block rows."""
        import numpy as np
        from scipy.sparse.csgraph import connected_components
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.neighbors import radius_neighbors_graph

        Xb = DictVectorizer(sparse=True).fit_transform([fd.block_features(b) for b in blocks]).tocsr()
        if len(blocks) == 1:
            return np.zeros(1, dtype=int), Xb
        g = radius_neighbors_graph(Xb, radius=self.eps, mode="connectivity", include_self=False)
        _, comp = connected_components(g, directed=False)
        return comp, Xb


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
    window), the point it computes to score an alert is the point clustered: taken as it passes
    (not computed twice), so clusters and context scores describe exactly the same thing.
    """
    from mimizuku.sources.reader import ReadStats, iter_alerts

    clusterer = clusterer or ContextClusterer.from_model(model)
    fd = clusterer.feature_detector()
    stats = ReadStats()
    pending: deque = deque()
    t0 = time.monotonic()
    ctx = getattr(model, "detectors_", {}).get("context")
    seen: Dict[int, Any] = {}
    share = ctx is not None and type(ctx) is type(fd) and getattr(ctx, "rate_window", None) == fd.rate_window

    def situation(a: Dict[str, Any]) -> Optional[Situation]:
        k = seen.pop(id(a), None) if share else None
        if k is None:
            return fd.situation(fd.key(a)) if fd.applies(a) else None
        return fd.situation(k)

    def alerts() -> Iterator[Dict[str, Any]]:
        for a in iter_alerts(source, since=day, until=day, stats=stats, progress=progress):
            if share:
                pending.append((fields.alert_id(a), fields.rule_id(a), a))
            else:
                pending.append((fields.alert_id(a), fields.rule_id(a), situation(a)))
            yield a

    out = DayAnalysis(day=day.isoformat(), model_version=str(getattr(model, "model_version_", "unversioned")))
    if share:
        def key(alert: Dict[str, Any], _orig=ctx.key) -> Any:
            k = _orig(alert)
            seen[id(alert)] = k
            return k

        ctx.key = key  # on this instance, for this read only (removed below, never pickled)
    try:
        for rec in model.iter_records(alerts()):
            sit = None
            rid = (rec.get("rule") or {}).get("id")
            while pending:  # records come in alert order; alerts no detector scored have none
                aid, arid, x = pending.popleft()
                match = (aid is not None and aid == rec.get("id")) or \
                    (aid is None and str(rec.get("id", "")).startswith("sha1:") and arid == rid)
                if share:
                    x = situation(x) if match else seen.pop(id(x), None)
                if match:
                    sit = x
                    break
            out.records.append(rec)
            out.situations.append(sit)
    finally:
        if share:
            ctx.__dict__.pop("key", None)
        seen.clear()
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
            syslog_select: str = "anomalies", syslog: bool = True) -> Delivery:
    """Write the day's records (with their clusters) to SQL and syslog.

    A sink that is down keeps what it could not write in its spool and writes it first next
    time (its own business); here its error becomes a warning line, so a database outage never
    turns a good retrain into a failed one.
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
            with SyslogSink(syslog_file, remote=syslog_remote, select=syslog_select,
                            spool_dir=Path(spool_root) / "syslog") as sink:
                out.counts["syslog"] = sink.emit(records)
        except Exception as e:
            counts = getattr(e, "counts", None)
            if counts:
                out.counts["syslog"] = counts
            out.warnings.append(f"syslog: {_one_line(e)}")
            log.warning("syslog output: %s", _one_line(e, 1000))
        out.durations_ms["syslog"] = _ms(t0)
    return out


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


def write_day_report(analysis: DayAnalysis, path: Path, run: Optional[Mapping[str, Any]] = None) -> Path:
    """The self-contained HTML report of a day (``report.write_report``)."""
    from mimizuku.outputs.report import write_report

    return write_report(path, analysis.records, run=dict(run or {}), coords=analysis.coords(),
                        title=f"Mimizuku nightly report {analysis.day}")


# --- command line: mimizuku report ------------------------------------------------------------

def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku report``: an HTML report of scored records, or of one day of the archive."""
    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report (of a day of the archive, or of scored records)",
        description="Either --input records.jsonl (scored records, as `mimizuku score --format jsonl` writes "
                    "them) or a day of the alert archive (--day, default yesterday), scored with the model "
                    "in use and clustered with DBSCAN. Writes nothing to SQL or syslog. Exit codes: 0 done, "
                    "2 usage, 3 no alerts that day, 4 model error; with --input those of the report module "
                    "(65 bad input, 66 missing input, 73 cannot write).")
    p.add_argument("--input", "-i", action="append", help="scored records, JSON lines (repeatable)")
    p.add_argument("--run", help="with --input: JSON file with the run's dict")
    p.add_argument("--clusters", help="with --input: JSON file {alert id: DBSCAN label}")
    p.add_argument("--coords", help="with --input: JSON file {alert id: [x, y]}")
    p.add_argument("--top", type=int, default=50, help="rows in the top-anomalies table (default 50)")
    p.add_argument("--title", help="page title")
    p.add_argument("--out", "-o", help="HTML file to write (default: <wazuh-home>/logs/mimizuku/reports/"
                                       "mimizuku-<day>-<version>.html)")
    p.add_argument("--day", help="day to analyse, YYYY-MM-DD (default yesterday)")
    p.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    p.add_argument("--alerts", help="alert source instead of <wazuh-home>'s archive")
    p.add_argument("--model-dir", help="model root (default <wazuh-home>/mimizuku/models)")
    p.set_defaults(func=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    if args.input:
        from mimizuku.outputs import report

        if not args.out:
            print("mimizuku report: --out is required with --input", file=sys.stderr)
            return 2
        argv: List[str] = []
        for i in args.input:
            argv += ["--input", i]
        argv += ["--out", args.out, "--top", str(args.top)]
        for opt in ("run", "clusters", "coords", "title"):
            if getattr(args, opt):
                argv += [f"--{opt}", getattr(args, opt)]
        return report.main(argv)

    from mimizuku.sources.reader import AlertSourceError
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.store.model_dir import ModelError
    from mimizuku.store.versions import resolve_model_dir

    try:
        day = date.fromisoformat(args.day) if args.day else date.today() - timedelta(days=1)
    except ValueError:
        print(f"mimizuku report: --day {args.day!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    model_dir = args.model_dir or os.path.join(args.wazuh_home, "mimizuku", "models")
    try:
        model = Mimizuku.load_model(resolve_model_dir(model_dir))
    except ModelError as e:
        print(f"mimizuku report: cannot load the model from {model_dir}: {e}", file=sys.stderr)
        return 4
    source = args.alerts or args.wazuh_home
    try:
        analysis = analyse_day(model, source, day, progress=sys.stderr.isatty())
    except AlertSourceError as e:
        print(f"mimizuku report: {e}", file=sys.stderr)
        return 3
    if not analysis.records:
        print(f"mimizuku report: no alerts for {day} in {source}", file=sys.stderr)
        return 3
    out = Path(args.out) if args.out else Path(args.wazuh_home) / "logs" / "mimizuku" / "reports" / \
        f"mimizuku-{day}-{analysis.model_version}.html"
    run = {"day": str(day), "model_version": analysis.model_version, **{"day_" + k: v for k, v in analysis.summary().items()}}
    try:
        path = write_day_report(analysis, out, run)
    except OSError as e:
        print(f"mimizuku report: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 73
    s = analysis.summary()
    print(f"mimizuku report: {day}: {s['scored']:,} alerts scored, {s['anomalies']:,} anomalies, "
          f"{s['clusters']:,} clusters, {s['noise']:,} noise -> {path}")
    return 0
