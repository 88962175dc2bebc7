#!/usr/bin/env python3
"""Detection quality of this project next to the peer (PyPI ``mimizuku`` 0.2.36), same data, one run.

Data sets (``--datasets``, default all three):

* ``generated``: the generator's default fleet (``mimizuku.tools.synth``), 14 days, attacks in the last
  2; trained on the days before the first attack day, tested on the attack days.
  Positive = ``_label.attack``; episode = ``_label.episode``.
* ``shaw``, ``fox``: AIT Alert Data Set scenarios (Landauer et al., CSET 2024; Zenodo 8263181,
  CC BY), read in place from ``../shared/data/ait-ads/``. Trained on the days before the attack
  day, tested on it and the day after. Positive = ``_ait.event_label != "-"``; episode = the
  event label (attack step).

Figures per side: ROC-AUC of the score, attack episodes caught (an episode is caught when at
least one of its alerts is flagged), false positives per 10,000 benign test alerts at the
model's own threshold, TPR at that threshold, and for AIT the FP rate without the benign alerts
inside labelled attack time windows (secondary: side effects of an attack the labels leave out).
A burst of one situation is one anomaly per window (``mimizuku.engine.repeats``): its other alerts keep
their score but are not flagged again (``repeat_of``); the FP rate and TPR counting them as
flagged are printed too ("with repeats").
``ours+corr`` is the same records read as a batch with ``mimizuku.engine.correlate`` (``mimizuku score
--correlate``): alerts tied to an anomaly by session, process, login, ssh hop or source burst
rank just under it (they are not flagged on their own), which is what the ROC-AUC sees.
The peer only scores file-integrity (55x with ``syscheck``) and command (80792) alerts: on the
whole test set every other alert counts as unscored (score -inf, not flagged), and the figures
are repeated for both sides on the alerts the peer can score.

    python bench/quality.py                 # all data sets (the peer's training takes a while)
    python bench/quality.py --quick         # smaller generated set and shaw, no fox
    python bench/quality.py --datasets shaw,generated --scale 0.5
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402

ALL_DATASETS = ("generated", "shaw", "fox")


def _mark(ok: Optional[bool]) -> str:
    return "" if ok is None else ("ok" if ok else "FAIL")


def _cell(value: str, ok: Optional[bool] = None, width: int = 26) -> str:
    txt = value if ok is None else f"{value}  {_mark(ok)}"
    return f"{txt:<{width}}"


def _f(x: Optional[float], nd: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _rows(title: str, mo: C.Metrics, mp: C.Metrics, windows: bool) -> List[str]:
    out = [title]
    head = f"  {'':<40}{'ours':<26}{'peer (0.2.36)':<26}target"
    out.append(head)

    def row(label: str, a: str, b: str, target: str = "") -> None:
        out.append(f"  {label:<40}{a}{b}{target}")

    def pct(m: C.Metrics) -> str:
        return f"{m.n_scored:,} ({100.0 * m.n_scored / m.n:.1f}%)" if m.n else "0"

    row("alerts scored", _cell(pct(mo)), _cell(pct(mp)))
    row("ROC-AUC", _cell(_f(mo.auc), None if mo.auc is None else mo.auc >= C.TARGET_AUC),
        _cell(_f(mp.auc), None if mp.auc is None else mp.auc >= C.TARGET_AUC), f">= {C.TARGET_AUC}")
    n_ep = len(mo.episodes)
    row("attack episodes caught", _cell(f"{mo.caught}/{n_ep}", mo.caught == n_ep if n_ep else None),
        _cell(f"{mp.caught}/{n_ep}", mp.caught == n_ep if n_ep else None), "all")
    row("FP per 10,000 benign (at threshold)",
        _cell(f"{_f(mo.fp_per_10k, 1)} ({mo.fp:,} FP)", None if mo.fp_per_10k is None else mo.fp_per_10k <= C.TARGET_FP_PER_10K),
        _cell(f"{_f(mp.fp_per_10k, 1)} ({mp.fp:,} FP)", None if mp.fp_per_10k is None else mp.fp_per_10k <= C.TARGET_FP_PER_10K),
        f"<= {C.TARGET_FP_PER_10K:g}")
    if windows:
        row("  secondary: outside attack windows",
            _cell(f"{_f(mo.fp_per_10k_outside, 1)}"), _cell(f"{_f(mp.fp_per_10k_outside, 1)}"),
            f"({mo.n_neg_outside:,} benign alerts outside the labelled attack windows)")
    row("TPR at threshold", _cell(f"{_f(mo.tpr, 3)} ({mo.tp:,}/{mo.n_pos:,})"),
        _cell(f"{_f(mp.tpr, 3)} ({mp.tp:,}/{mp.n_pos:,})"))
    if mo.tpr_with_repeats is not None:
        row("  secondary: repeats counted as flagged",
            _cell(f"FP/10k {_f(mo.fp_per_10k_with_repeats, 1)}, TPR {_f(mo.tpr_with_repeats, 3)}"), _cell("(no repeats)"),
            "(alerts at the threshold that repeat an anomaly: mimizuku.engine.repeats)")
    row("alerts flagged", _cell(f"{mo.flagged:,}"), _cell(f"{mp.flagged:,}"))
    for name, m in (("ours", mo), ("peer", mp)):
        missed = m.missed
        txt = "none" if not missed else ", ".join(f"{e} ({m.episodes[e][0]:,} alerts)" for e in missed)
        out.append(f"  missed episodes, {name}: {txt}")
    out.append(f"  per episode: anomalies raised (ours / peer), time from its first alert to the first raise "
               f"(ours / peer; target: at most {C.TARGET_RAISED_PER_EPISODE} raised per episode)")
    for e in sorted(mo.episodes):
        (no, to), (np_, tp) = mo.raised.get(e, (0, None)), mp.raised.get(e, (0, None))
        out.append(f"    {e:<38}{mo.episodes[e][0]:>7,} alerts  raised {no:>5,} / {np_:<6,} "
                   f"first after {_dur(to):>8} / {_dur(tp)}")
    return out


def _dur(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s} s" if s < 120 else f"{s // 60} min" if s < 7200 else f"{s / 3600:.1f} h"


def report(ds: C.Dataset, ours: C.SideScores, peer: Optional[C.SideScores]) -> List[str]:
    lab = ds.labels
    y = np.asarray(lab.positive, dtype=bool)
    n_ep = len({e for e, p in zip(lab.episode, lab.positive) if p})
    lines = [f"=== {ds.name} ===", ds.description,
             f"train: {ds.n_train:,} alerts ({ds.train_positives:,} of them labelled attack); "
             f"test: {ds.n_test:,} alerts, {int(y.sum()):,} attack in {n_ep} episodes, "
             f"{int((~y).sum()):,} benign"]
    t = f"time: ours fit {ours.fit_s:.1f} s, score {ours.score_s:.1f} s"
    if peer is not None:
        t += f"; peer fit {peer.fit_s:.1f} s, score {peer.score_s:.1f} s"
    lines.append(t)
    for note in ours.notes:
        lines.append(f"ours: {note}")
    if peer is None:
        lines.append("peer: skipped (--skip-peer)")
        peer = C.SideScores("peer", np.full(ds.n_test, np.nan), np.zeros(ds.n_test, dtype=bool),
                            peer_domain=np.zeros(ds.n_test, dtype=bool))
    else:
        counts = getattr(peer, "train_counts", {})
        if any(counts.values()):
            lines.append("peer trained on: " + ", ".join(f"{k} {v:,} alerts" for k, v in counts.items()))
        for note in peer.notes:
            lines.append(f"peer: {note}")
    domain = peer.peer_domain if peer.peer_domain is not None else np.zeros(ds.n_test, dtype=bool)
    if not peer.scored.any():
        lines.append("peer: SCORES NOTHING on this test set: it has no trained model for, or no alert of, "
                     "file integrity (55x with syscheck) and audited commands (80792); its figures below "
                     "are those of a detector that flags nothing (every alert score -inf).")
    mo = C.compute(ours, lab, windows=ds.windows)
    mp = C.compute(peer, lab, windows=ds.windows)
    lines.append("")
    lines += _rows("All test alerts (alerts the peer does not score count as score -inf, not flagged):",
                   mo, mp, ds.windows)
    if ours.correlated is not None:
        mc = C.compute(ours.correlated, lab, windows=ds.windows)
        lines.append("")
        lines += _rows("All test alerts, ours read as a batch with correlation (mimizuku.engine.correlate: "
                       "`mimizuku score --correlate`; related alerts rank under their "
                       "anomaly and are not flagged on their own):", mc, mp, ds.windows)
    lines.append("")
    nd = int(domain.sum())
    if nd == 0:
        lines.append("Restricted to the alerts the peer can score (FIM 55x with syscheck, commands 80792): "
                     "there are none in this test set.")
    else:
        yd = y[domain]
        eps = len({e for e, p, d in zip(lab.episode, lab.positive, domain) if p and d})
        ro = C.compute(ours, lab, mask=domain, windows=ds.windows)
        rp = C.compute(peer, lab, mask=domain, windows=ds.windows)
        lines += _rows(f"Restricted to the alerts the peer can score (FIM 55x with syscheck, commands 80792): "
                       f"{nd:,} alerts, {int(yd.sum()):,} attack in {eps} episodes "
                       f"(episodes counted here: those with such alerts):", ro, rp, ds.windows)
    lines.append("")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", help=f"comma-separated, from {','.join(ALL_DATASETS)} "
                                      "(default: all; --quick: generated,shaw)")
    p.add_argument("--quick", action="store_true", help="smaller generated set (7 days, scale 0.25), skip fox")
    p.add_argument("--days", type=int, help="generated: days (default 14; --quick 7)")
    p.add_argument("--scale", type=float, help="generated: activity scale (default 1; --quick 0.25)")
    p.add_argument("--seed", type=int, default=0, help="generated: seed (default 0)")
    p.add_argument("--attack-days", type=int, default=2, help="generated: attack days at the end (default 2)")
    p.add_argument("--skip-peer", action="store_true", help="only this project (no peer figures)")
    p.add_argument("--workdir", help="keep the written train/test files and logs here (default: a temp dir)")
    a = p.parse_args(argv)

    names = [s.strip() for s in (a.datasets or ("generated,shaw" if a.quick else ",".join(ALL_DATASETS))).split(",")
             if s.strip()]
    bad = [n for n in names if n not in ALL_DATASETS]
    if bad:
        p.error(f"unknown data set(s) {bad}; choose from {','.join(ALL_DATASETS)}")
    days = a.days or (7 if a.quick else 14)
    scale = a.scale or (0.25 if a.quick else 1.0)

    peer_version = None
    if not a.skip_peer:
        try:
            peer_version = C.ensure_peer_env()
        except Exception as e:  # noqa: BLE001 - venv creation or check failed: say why and stop
            print(f"error: the peer is not available: {e}", file=sys.stderr)
            return 2

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="mimizuku-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    header = [
        f"Mimizuku quality benchmark: ours (mimizuku {C.ours_version()}, this checkout) vs peer "
        f"(PyPI mimizuku {peer_version or 'skipped'})",
        f"ours: library defaults (contamination={C.ours_contamination():g}: the alert-level budget; "
        f"n_neighbors={C.N_NEIGHBORS}), files + commands + context; peer: contamination={C.CONTAMINATION} "
        f"(its README's example; its default 0.05 flags 50x more), n_neighbors={C.N_NEIGHBORS}, "
        f"FsNotify + AuditCommand (its only detectors)",
        f"machine: {C.machine_line()}",
        f"targets: ROC-AUC >= {C.TARGET_AUC}, every attack episode caught, "
        f"<= {C.TARGET_FP_PER_10K:g} FP per 10,000 benign test alerts",
        "",
    ]
    print("\n".join(header), flush=True)
    summary = []
    try:
        for name in names:
            C.log(f"{name}: writing train/test files to {work}")
            if name == "generated":
                ds = C.prepare_generated(work, days=days, seed=a.seed, scale=scale, attack_days=a.attack_days)
            else:
                ds = C.prepare_ait(work, name)
            C.log(f"{name}: {ds.n_train:,} train / {ds.n_test:,} test alerts; ours: fit + score")
            ours = C.score_ours(ds, work)
            peer = None
            if not a.skip_peer:
                C.log(f"{name}: peer: fit + score (its own venv)")
                peer = C.score_peer(ds, work)
            lines = report(ds, ours, peer)
            print("\n".join(lines), flush=True)
            for side in (ours, ours.correlated, peer):
                if side is None:
                    continue
                m = C.compute(side, ds.labels, windows=ds.windows)
                summary.append((name, side.name, m))
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)

    print("=== summary (whole test sets; peer's unscored alerts = -inf) ===")
    print(f"  {'data set':<11}{'side':<11}{'ROC-AUC':<16}{'episodes':<16}{'FP/10k benign':<20}{'TPR':<8}"
          f"{'raised/episode max':<24}{'first raise (median)':<22}{'with repeats: FP/10k, TPR':<26}")
    for name, side, m in summary:
        n_ep = len(m.episodes)
        print(f"  {name:<11}{side:<11}"
              f"{_cell(_f(m.auc), None if m.auc is None else m.auc >= C.TARGET_AUC, 16)}"
              f"{_cell(f'{m.caught}/{n_ep}', m.caught == n_ep if n_ep else None, 16)}"
              f"{_cell(_f(m.fp_per_10k, 1), None if m.fp_per_10k is None else m.fp_per_10k <= C.TARGET_FP_PER_10K, 20)}"
              f"{_f(m.tpr, 3):<8}"
              f"{_cell(str(m.most_raised), m.most_raised <= C.TARGET_RAISED_PER_EPISODE if m.caught else None, 24)}"
              f"{_dur(m.median_first_raise):<22}"
              + (f"{_f(m.fp_per_10k_with_repeats, 1)}, {_f(m.tpr_with_repeats, 3)}" if m.tpr_with_repeats is not None else ""))
    print(f"total time {time.perf_counter() - t_start:.0f} s; machine at the end: {C.machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
