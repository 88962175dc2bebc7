#!/usr/bin/env python3
"""Where issue 15's false-positive target and its episodes pull apart: raise floors on the score.

For each data set the library's defaults fit and score the test alerts once (stories off, so the
records say what the flag rule and the repeats flagged); then, for each floor ``t``, only the
anomalies scoring at least ``t`` are raised, through the library's own stories
(``mimizuku.engine.stories``), and the bench prints what an analyst would get: false positives
per 10,000 benign test alerts, attack episodes raised, the most raised for one episode, the
episodes lost. Floor 0 is the default.

A tuning tool, not a report: run it on the tuning sets (generator seed 0, AIT shaw and fox; the
default) and never on the seed the quality figures are reported on. ``score`` means the same
rarity for every detector (``log(p) / log(1e-6)``), so one floor is one tail probability.

    python bench/raise_floor.py                          # generated seed 0 (14 and 7 days), shaw, fox
    python bench/raise_floor.py --datasets shaw --floors 0,0.8
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import numpy as np  # noqa: E402
import orjson  # noqa: E402


def flagged(ds: C.Dataset) -> List[Tuple[Dict, Dict, int]]:
    """(record, alert, test line) of every anomaly the defaults flag, stories off."""
    from mimizuku import Mimizuku

    m = Mimizuku(contamination=C.ours_contamination(), n_neighbors=C.N_NEIGHBORS).fit(str(ds.train_path))
    m.story_window = 0
    records = list(m.iter_records(str(ds.test_path)))
    lines = C.record_lines(records, ds.labels.keys)
    want = {i: r for r, i in zip(records, lines) if r["anomaly"]}
    out = []
    with open(ds.test_path, "rb") as fh:
        for i, line in enumerate(fh):
            if i in want:
                out.append((want[i], orjson.loads(line), i))
    return out


def raised_at(anomalies, floor: float) -> List[int]:
    """Test lines raised when only anomalies scoring ``floor`` or more are, through stories."""
    from mimizuku.engine.stories import StoryWindows, judge_alert

    stories = StoryWindows()
    out = []
    for r, alert, i in anomalies:
        if r["score"] < floor:
            continue
        folded = judge_alert(stories, alert, r["severity"], r["detector"], r["id"], (r.get("mitre") or {}).get("id"))
        if folded is None:
            out.append(i)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default="generated,generated-7,shaw,fox",
                   help="from generated (14 days), generated-7 (7 days: 5 of training), shaw, fox")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0, the tuning seed)")
    p.add_argument("--floors", default="0,0.7,0.75,0.8,0.85,0.9", help="comma-separated score floors")
    a = p.parse_args(argv)
    floors = [float(x) for x in a.floors.split(",")]
    print(f"raise floors on the score, library defaults (contamination={C.ours_contamination():g}); "
          f"generator seed {a.seed}; machine: {C.machine_line()}")
    with tempfile.TemporaryDirectory(prefix="mimizuku-floor-") as tmp:
        for name in [s.strip() for s in a.datasets.split(",") if s.strip()]:
            work = Path(tmp) / name
            work.mkdir()
            if name.startswith("generated"):
                days = 7 if name == "generated-7" else 14
                ds = C.prepare_generated(work, days=days, seed=a.seed)
            else:
                ds = C.prepare_ait(work, name)
            C.log(f"{name}: {ds.n_train:,} train / {ds.n_test:,} test alerts; fit + score")
            anomalies = flagged(ds)
            pos = np.asarray(ds.labels.positive, dtype=bool)
            ep = np.asarray(ds.labels.episode, dtype=object)
            benign = int((~pos).sum())
            episodes = sorted(set(ep[pos].tolist()))
            print(f"\n{ds.description}")
            print(f"  {'floor':<7}{'FP/10k':<9}{'FP':<6}{'episodes':<10}{'raised/episode max':<20}lost")
            for t in floors:
                lines = raised_at(anomalies, t)
                fp = sum(1 for i in lines if not pos[i])
                per = Counter(ep[i] for i in lines if pos[i])
                lost = [e for e in episodes if e not in per]
                print(f"  {t:<7g}{1e4 * fp / benign:<9.1f}{fp:<6}{len(episodes) - len(lost)}/{len(episodes):<8}"
                      f"{max(per.values(), default=0):<20}{', '.join(lost) or '-'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
