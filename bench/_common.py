"""What ``bench/quality.py`` and ``bench/speed.py`` share: the peer's venv, measured child
processes, the labelled data sets and the metrics.

The peer (PyPI ``mimizuku`` 0.2.36) lives only in ``.bench-venv`` and is driven through
``bench/_peer_driver.py``; the project is driven through ``bench/_ours_driver.py`` (speed) or
in-process (quality). Data sets are written as plain JSON lines with their labels stripped (the
peer reads only plain files); the labels stay in this process, aligned with the line numbers.
"""
from __future__ import annotations

import gzip
import json
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DATA = Path(os.environ.get("MIMIZUKU_BENCH_DATA", str(ROOT.parent / "shared" / "data")))
BENCH_VENV = Path(os.environ.get("MIMIZUKU_BENCH_VENV", str(ROOT / ".bench-venv")))
PEER_SPEC = "mimizuku==0.2.36"
PEER_VENV_PACKAGES = [PEER_SPEC, "scikit-learn", "pandas", "orjson", "joblib"]
LABEL_KEYS = ("_label", "_ait")

# The peer's parameters (the original README's example; its own default contamination, 0.05,
# flags fifty times more), and ours in the quality benchmark: the library's defaults, which is
# what the targets are about (issue 15: "default settings"). Timing runs both sides at these.
CONTAMINATION = 0.001
N_NEIGHBORS = 5


def ours_contamination() -> float:
    """Our library's default ``contamination`` (the alert-level budget)."""
    from mimizuku.core.records import DEFAULT_CONTAMINATION

    return DEFAULT_CONTAMINATION

#: Date the generated fleet starts on: fixed so that runs are comparable (a Wednesday, so the
#: two attack days of a 14-day set are a Monday and a Tuesday).
GEN_START = date(2025, 1, 8)

TARGET_AUC = 0.98
#: analyst-facing false positives per 10,000 benign alerts at the default threshold (issue 15)
TARGET_FP_PER_10K = 2.0
#: anomalies raised for one attack episode: a burst is one story, with updates when it changes
TARGET_RAISED_PER_EPISODE = 10


# --- the peer's environment -------------------------------------------------------------------

class PeerUnavailable(RuntimeError):
    pass


def peer_python() -> Path:
    return BENCH_VENV / "bin" / "python"


def ensure_peer_env(create: bool = True) -> str:
    """The peer's version, after creating ``.bench-venv`` if it is missing.

    The 0.2.36 wheel on PyPI ships an empty ``rules/`` package; the sdist is complete, hence
    ``--no-binary mimizuku``. Never installs anything into the interpreter running this.
    """
    py = peer_python()
    check = [str(py), "-c", "import importlib.metadata as m, mimizuku.rules.fs_notify, "
             "mimizuku.rules.audit_command; print(m.version('mimizuku'))"]
    if not py.exists():
        if not create:
            raise PeerUnavailable(f"no peer venv at {BENCH_VENV}")
        log(f"creating the peer's venv {BENCH_VENV} ({PEER_SPEC}, from its sdist)")
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-binary", "mimizuku"] + PEER_VENV_PACKAGES,
                       check=True)
    # without PYTHONPATH: a run of this bench against a source tree (PYTHONPATH=detector) must not
    # make the peer's interpreter import this project instead of the peer
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(check, capture_output=True, text=True, cwd="/", env=env)
    if r.returncode != 0:
        raise PeerUnavailable(f"the peer venv {BENCH_VENV} is broken: {r.stderr.strip()[-500:]}\n"
                              f"recreate it: rm -rf {BENCH_VENV} and run again")
    version = r.stdout.strip()
    if version != PEER_SPEC.split("==")[1]:
        raise PeerUnavailable(f"{BENCH_VENV} holds mimizuku {version}, expected {PEER_SPEC}")
    return version


def ours_version() -> str:
    from mimizuku import __version__

    return __version__


# --- measured child processes -----------------------------------------------------------------

@dataclass
class StepResult:
    result: Dict[str, Any]
    max_rss: int  # bytes, the child's high-water mark (ru_maxrss from wait4)
    wall_s: float  # the child's whole life, interpreter start and imports included


class StepFailed(RuntimeError):
    pass


def run_step(argv: Sequence[str], workdir: Path, name: str) -> StepResult:
    """Run one measured step in a fresh process and return its JSON result and peak memory.

    The child writes its result to ``--out``; its stdout and stderr go to ``workdir/name.log``.
    Peak memory comes from ``os.wait4`` on that very child, so nothing else counts towards it.
    """
    out = workdir / f"{name}.json"
    logf = workdir / f"{name}.log"
    if out.exists():
        out.unlink()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the peer must not see the project's sources
    with open(logf, "wb") as lf:
        t0 = time.perf_counter()
        p = subprocess.Popen(list(argv) + ["--out", str(out)], stdout=lf, stderr=subprocess.STDOUT,
                             cwd=str(workdir), env=env)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0 or not out.exists():
        tail = logf.read_text(errors="replace")[-2000:]
        raise StepFailed(f"{name} failed (exit {p.returncode}); last output:\n{tail}")
    return StepResult(json.loads(out.read_text()), usage.ru_maxrss * 1024, wall)


def peer_step(cmd: str, workdir: Path, name: str, **kw: Any) -> StepResult:
    argv = [str(peer_python()), str(BENCH / "_peer_driver.py"), cmd]
    for k, v in kw.items():
        argv += ["--" + k.replace("_", "-"), str(v)]
    return run_step(argv, workdir, name)


def ours_step(cmd: str, workdir: Path, name: str, **kw: Any) -> StepResult:
    argv = [sys.executable, str(BENCH / "_ours_driver.py"), cmd]
    for k, v in kw.items():
        if isinstance(v, (list, tuple)):
            argv += ["--" + k.replace("_", "-")] + [str(x) for x in v]
        else:
            argv += ["--" + k.replace("_", "-"), str(v)]
    return run_step(argv, workdir, name)


# --- data sets --------------------------------------------------------------------------------

def strip_labels(alert: Dict[str, Any]) -> Dict[str, Any]:
    if any(k in alert for k in LABEL_KEYS):
        return {k: v for k, v in alert.items() if k not in LABEL_KEYS}
    return alert


def record_key(alert: Dict[str, Any]) -> Tuple[Any, ...]:
    """What a scored record repeats of its alert: lets records be matched to test lines."""
    rule = alert.get("rule") or {}
    agent = alert.get("agent") or {}
    rid = rule.get("id")
    return (alert.get("timestamp") or alert.get("@timestamp"), None if rid is None else str(rid),
            agent.get("name"), alert.get("id"))


@dataclass
class Labels:
    """Per test line: is it an attack, which episode, is it inside a labelled attack window."""

    positive: List[bool] = field(default_factory=list)
    episode: List[str] = field(default_factory=list)
    in_window: List[bool] = field(default_factory=list)
    keys: List[Tuple[Any, ...]] = field(default_factory=list)

    def add(self, alert: Dict[str, Any], positive: bool, episode: str, in_window: bool) -> None:
        self.positive.append(bool(positive))
        self.episode.append(episode if positive else "-")
        self.in_window.append(bool(in_window))
        self.keys.append(record_key(alert))

    def __len__(self) -> int:
        return len(self.positive)

    def times(self) -> np.ndarray:
        """Epoch seconds of each test line (NaN where the time cannot be read)."""
        from mimizuku.sources.timestamps import parse_timestamp

        cached = getattr(self, "_times", None)
        if cached is None or len(cached) != len(self.keys):
            cached = np.array([parse_timestamp(k[0]) for k in self.keys], dtype=float)  # None -> NaN
            self._times = cached
        return cached


@dataclass
class Dataset:
    name: str
    description: str
    train_path: Path
    test_path: Path
    n_train: int
    n_test: int
    labels: Labels
    train_positives: int = 0
    windows: bool = False  # AIT: attack time windows are known (secondary FP figure)
    notes: List[str] = field(default_factory=list)


class _Writer:
    def __init__(self, path: Path) -> None:
        self.fh = open(path, "wb")
        self.n = 0

    def write(self, alert: Dict[str, Any]) -> None:
        self.fh.write(orjson.dumps(strip_labels(alert)) + b"\n")
        self.n += 1

    def close(self) -> None:
        self.fh.close()


def generated_config(days: int, seed: int, scale: float, attack_days: int, start: date = GEN_START,
                     attacks: bool = True):
    from mimizuku.tools.synth import FleetConfig

    return FleetConfig(days=days, seed=seed, scale=scale, attack_days=attack_days, start=start,
                       attacks=attacks)


def prepare_generated(workdir: Path, days: int = 14, seed: int = 0, scale: float = 1.0,
                      attack_days: int = 2) -> Dataset:
    """The generator's fleet: train on the days before the first attack day, test on the rest."""
    from mimizuku.tools.synth import generate

    cfg = generated_config(days, seed, scale, attack_days)
    split = (GEN_START + timedelta(days=days - attack_days)).isoformat()
    train, test = _Writer(workdir / "gen-train.jsonl"), _Writer(workdir / "gen-test.jsonl")
    labels = Labels()
    train_pos = 0
    for a in generate(cfg):
        lab = a.get("_label") or {}
        pos = bool(lab.get("attack"))
        if str(a.get("timestamp", ""))[:10] < split:
            train.write(a)
            train_pos += pos
        else:
            test.write(a)
            labels.add(a, pos, str(lab.get("episode", "-")), False)
    train.close()
    test.close()
    last = (GEN_START + timedelta(days=days - 1)).isoformat()
    desc = (f"generated: default fleet, {days} days from {GEN_START}, seed {seed}, scale {scale:g}, "
            f"attacks in the last {attack_days} days; train {GEN_START}..{split} (excl.), test {split}..{last}")
    return Dataset("generated", desc, Path(train.fh.name), Path(test.fh.name),
                   train.n, test.n, labels, train_positives=train_pos)


AIT_SETS = {
    # scenario: (first test day, last test day)
    "shaw": ("2022-01-29", "2022-01-30"),
    "fox": ("2022-01-18", "2022-01-19"),
}


def prepare_ait(workdir: Path, scenario: str) -> Dataset:
    """An AIT-ADS scenario, read in place: train before the attack day, test from it on."""
    first, last = AIT_SETS[scenario]
    src = DATA / "ait-ads" / f"{scenario}_wazuh.derived.jsonl.gz"
    if not src.exists():
        raise FileNotFoundError(f"{src} not found (set MIMIZUKU_BENCH_DATA to the shared data directory)")
    train, test = _Writer(workdir / f"{scenario}-train.jsonl"), _Writer(workdir / f"{scenario}-test.jsonl")
    labels = Labels()
    train_pos = 0
    with gzip.open(src, "rb") as fh:
        for line in fh:
            a = orjson.loads(line)
            ait = a.get("_ait") or {}
            event = str(ait.get("event_label", "-"))
            pos = event != "-"
            day = str(a.get("timestamp", ""))[:10]
            if day < first:
                train.write(a)
                train_pos += pos
            elif day <= last:
                test.write(a)
                labels.add(a, pos, event, str(ait.get("time_label", "false_positive")) != "false_positive")
    train.close()
    test.close()
    desc = (f"AIT-ADS {scenario} ({src.name}): train before {first}, test {first}..{last}; "
            f"positive = _ait.event_label != '-', episode = event_label")
    return Dataset(scenario, desc, Path(train.fh.name), Path(test.fh.name), train.n, test.n, labels,
                   train_positives=train_pos, windows=True)


# --- scoring both sides -----------------------------------------------------------------------

@dataclass
class SideScores:
    """Per test line: score (NaN = not scored by this side) and flag at the side's own threshold."""

    name: str
    score: np.ndarray
    flag: np.ndarray
    fit_s: float = 0.0
    score_s: float = 0.0
    notes: List[str] = field(default_factory=list)
    peer_domain: Optional[np.ndarray] = None  # peer only: lines its rules target
    #: ours only: lines that repeat an anomaly (``repeat_of``, mimizuku.engine.repeats): at the threshold,
    #: counted with the anomaly they repeat, not raised again
    repeat: Optional[np.ndarray] = None
    correlated: Optional["SideScores"] = None  # ours only: the batch reading with mimizuku.engine.correlate

    @property
    def scored(self) -> np.ndarray:
        return ~np.isnan(self.score)


def record_lines(records, keys: List[Tuple[Any, ...]]) -> List[int]:
    """The test line of each record, records in input order (unscored lines are skipped)."""
    out, j, n = [], 0, len(keys)
    for r in records:
        rk = (r["timestamp"], r["rule"]["id"], r["agent"]["name"])
        while j < n and not (keys[j][:3] == rk and (keys[j][3] is None or keys[j][3] == r["id"])):
            j += 1
        if j >= n:
            raise RuntimeError(f"scored record {r['id']} {rk} matches no remaining test alert: "
                               "records are out of input order")
        out.append(j)
        j += 1
    return out


def _align(records, keys: List[Tuple[Any, ...]], n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scores, flags and repeats per test line from records in input order (unscored lines stay
    NaN)."""
    score = np.full(n, np.nan)
    flag = np.zeros(n, dtype=bool)
    repeat = np.zeros(n, dtype=bool)
    records = list(records)
    for r, j in zip(records, record_lines(records, keys[:n])):
        score[j] = r["score"]
        flag[j] = bool(r["anomaly"])
        repeat[j] = bool(r.get("repeat_of"))
    return score, flag, repeat


def score_ours(ds: Dataset, workdir: Path) -> SideScores:
    """Fit on the train file and score the test file in this process (the library API).

    Two readings of the same records: each alert as the streaming scorer judges it (``ours``),
    and the batch reading with ``mimizuku.engine.correlate`` (``mimizuku score --correlate``),
    kept in ``side.correlated``.
    """
    from mimizuku import Mimizuku
    from mimizuku.engine.correlate import correlate

    t0 = time.perf_counter()
    m = Mimizuku(contamination=ours_contamination(), n_neighbors=N_NEIGHBORS).fit(str(ds.train_path))
    t1 = time.perf_counter()
    records = list(m.iter_records(str(ds.test_path)))
    score, flag, repeat = _align(records, ds.labels.keys, ds.n_test)
    t2 = time.perf_counter()
    side = SideScores("ours", score, flag, fit_s=t1 - t0, score_s=t2 - t1, repeat=repeat)
    related = correlate(records)
    t3 = time.perf_counter()
    cs, cf, cr = _align(related, ds.labels.keys, ds.n_test)
    side.correlated = SideScores("ours+corr", cs, cf, fit_s=t1 - t0, score_s=t2 - t1 + t3 - t2, repeat=cr)
    skipped = getattr(m, "skipped_detectors_", {})
    if skipped:
        side.notes.append("detectors not trained: " + "; ".join(str(v) for v in skipped.values()))
    return side


def score_peer(ds: Dataset, workdir: Path) -> SideScores:
    """Fit the peer on the train file and get per-line scores on the test file (peer venv)."""
    model = workdir / f"peer-model-{ds.name}"
    model.mkdir(exist_ok=True)
    fit = peer_step("fit", workdir, f"peer-fit-{ds.name}", train=ds.train_path, model=model)
    sc = peer_step("score", workdir, f"peer-score-{ds.name}", test=ds.test_path, model=model)
    n = ds.n_test
    score = np.full(n, np.nan)
    flag = np.zeros(n, dtype=bool)
    domain = np.zeros(n, dtype=bool)
    notes = []
    for name, r in sc.result["rules"].items():
        lines = np.asarray(r["lines"], dtype=int)
        if lines.size:
            domain[lines] = True
        if r["errors"]:
            notes.append(f"{name}: {r['errors']} test alert(s) would crash the peer (KeyError), counted unscored")
        trained = fit.result["rules"].get(name, {}).get("trained", False)
        if not trained:
            notes.append(f"{name}: not trained (no such alerts in the training data)")
            continue
        if r["score"]:
            s = np.asarray(r["score"], dtype=float)
            score[lines] = np.where(np.isnan(score[lines]), s, np.fmax(score[lines], s))
            flag[lines] |= np.asarray(r["flag"], dtype=bool)
    side = SideScores("peer", score, flag, fit_s=fit.result["fit_s"], score_s=sc.result["score_s"],
                      notes=notes, peer_domain=domain)
    side.train_counts = {k: v["train_alerts"] for k, v in fit.result["rules"].items()}  # type: ignore[attr-defined]
    return side


# --- metrics ----------------------------------------------------------------------------------

@dataclass
class Metrics:
    n: int
    n_pos: int
    n_neg: int
    n_scored: int
    auc: Optional[float]
    episodes: Dict[str, Tuple[int, bool]]  # episode -> (alerts, caught)
    flagged: int
    fp: int
    tp: int
    fp_per_10k: Optional[float]
    tpr: Optional[float]
    fp_per_10k_outside: Optional[float] = None
    n_neg_outside: int = 0
    #: the same two figures counting repeats as flagged (None for a side without repeats)
    fp_per_10k_with_repeats: Optional[float] = None
    tpr_with_repeats: Optional[float] = None
    #: per episode: (anomalies raised, seconds from its first alert to its first raised anomaly or
    #: None when none was raised) -- what an analyst gets of it, and how soon
    raised: Dict[str, Tuple[int, Optional[float]]] = field(default_factory=dict)

    @property
    def most_raised(self) -> int:
        """The most anomalies raised for one episode."""
        return max((n for n, _ in self.raised.values()), default=0)

    @property
    def median_first_raise(self) -> Optional[float]:
        """Median seconds to the first raise, over the episodes raised."""
        t = sorted(d for _, d in self.raised.values() if d is not None)
        return float(np.median(t)) if t else None

    @property
    def caught(self) -> int:
        return sum(1 for _, c in self.episodes.values() if c)

    @property
    def missed(self) -> List[str]:
        return sorted(e for e, (_, c) in self.episodes.items() if not c)


def roc_auc(y: np.ndarray, s: np.ndarray) -> Optional[float]:
    """ROC-AUC where unscored alerts (NaN) rank below every scored one, tied with each other."""
    if y.all() or not y.any():
        return None
    from sklearn.metrics import roc_auc_score

    s = s.astype(float).copy()
    finite = ~np.isnan(s)
    low = (np.min(s[finite]) - 1.0) if finite.any() else 0.0
    s[~finite] = low
    return float(roc_auc_score(y, s))


def compute(side: SideScores, labels: Labels, mask: Optional[np.ndarray] = None,
            windows: bool = False) -> Metrics:
    y = np.asarray(labels.positive, dtype=bool)
    ep = np.asarray(labels.episode, dtype=object)
    win = np.asarray(labels.in_window, dtype=bool)
    s, f = side.score, side.flag
    if mask is not None:
        y, ep, win, s, f = y[mask], ep[mask], win[mask], s[mask], f[mask]
    n = int(y.size)
    n_pos = int(y.sum())
    n_neg = n - n_pos
    episodes: Dict[str, Tuple[int, bool]] = {}
    raised: Dict[str, Tuple[int, Optional[float]]] = {}
    times = labels.times()
    if mask is not None:
        times = times[mask]
    for e in sorted(set(ep[y].tolist())):
        sel = y & (ep == e)
        episodes[e] = (int(sel.sum()), bool(f[sel].any()))
        hit = sel & f
        first = np.nanmin(times[sel]) if np.isfinite(times[sel]).any() else np.nan
        first_hit = np.nanmin(times[hit]) if hit.any() and np.isfinite(times[hit]).any() else np.nan
        raised[e] = (int(hit.sum()), None if np.isnan(first_hit) or np.isnan(first)
                     else float(first_hit - first))
    fp = int((f & ~y).sum())
    tp = int((f & y).sum())
    m = Metrics(n=n, n_pos=n_pos, n_neg=n_neg, n_scored=int((~np.isnan(s)).sum()), auc=roc_auc(y, s),
                episodes=episodes, raised=raised, flagged=int(f.sum()), fp=fp, tp=tp,
                fp_per_10k=(1e4 * fp / n_neg) if n_neg else None, tpr=(tp / n_pos) if n_pos else None)
    rep = side.repeat
    if rep is not None:
        fr = f | (rep[mask] if mask is not None else rep)
        m.fp_per_10k_with_repeats = (1e4 * int((fr & ~y).sum()) / n_neg) if n_neg else None
        m.tpr_with_repeats = (int((fr & y).sum()) / n_pos) if n_pos else None
    if windows:
        outside = ~y & ~win
        m.n_neg_outside = int(outside.sum())
        m.fp_per_10k_outside = (1e4 * int((f & outside).sum()) / m.n_neg_outside) if m.n_neg_outside else None
    return m


# --- output helpers ---------------------------------------------------------------------------

def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_line() -> str:
    la = os.getloadavg()
    return (f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}")


def fmt_int(n: Optional[int]) -> str:
    return "-" if n is None else f"{n:,}"


def fmt_bytes(b: float) -> str:
    return f"{b / 2**20:,.0f} MiB" if b < 2**30 else f"{b / 2**30:.2f} GiB"


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            n += chunk.count(b"\n")
    return n


def iter_jsonl(path: Path) -> Iterator[Dict[str, Any]]:
    with open(path, "rb") as fh:
        for line in fh:
            yield orjson.loads(line)


def is_peer_domain(alert: Dict[str, Any]) -> bool:
    """The alerts the peer's rules read: FIM (rule 55x with ``syscheck``, level > 0) and 80792."""
    rule = alert.get("rule") or {}
    rid = str(rule.get("id", ""))
    if rid == "80792":
        return True
    try:
        level = int(rule.get("level", 0))
    except (TypeError, ValueError):
        level = 0
    return "syscheck" in alert and re.match(r"55[0-9]", rid) is not None and level > 0
