"""Runs one measured step of the project for ``bench/speed.py``, in a fresh process.

``python bench/_ours_driver.py fit --train SOURCE --model DIR --out JSON`` times
``Mimizuku(...).fit(SOURCE)`` (reading included; SOURCE is any source ``iter_alerts`` reads, e.g.
a JSON-lines file or a Wazuh archive tree) and ``save_model``.
``python bench/_ours_driver.py score --model DIR --test FILE --out JSON`` times
``Mimizuku.load_model`` and then ``iter_records(FILE)`` to its end (reading, scoring and building
every record included), as ``mimizuku score`` does.
The parent reads this process's peak memory from ``wait4``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def cmd_fit(a) -> dict:
    from mimizuku import Mimizuku

    t0 = time.perf_counter()
    m = Mimizuku(contamination=a.contamination, n_neighbors=a.n_neighbors).fit(a.train)
    t1 = time.perf_counter()
    m.save_model(a.model)
    t2 = time.perf_counter()
    return {"fit_s": t1 - t0, "save_s": t2 - t1, "alerts": m.n_alerts_,
            "detectors": {n: {"alerts": d.n_alerts_, "situations": d.n_keys_} for n, d in m.detectors_.items()},
            "skipped": m.skipped_detectors_}


def cmd_score(a) -> dict:
    from mimizuku import Mimizuku

    t0 = time.perf_counter()
    m = Mimizuku.load_model(a.model)
    t1 = time.perf_counter()
    n = anomalies = 0
    for r in m.iter_records(a.test):
        n += 1
        anomalies += r["anomaly"]
    t2 = time.perf_counter()
    return {"load_s": t1 - t0, "score_s": t2 - t1, "records": n, "anomalies": anomalies}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="_ours_driver")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--train", required=True)
    f.add_argument("--n-neighbors", type=int, default=5)
    f.add_argument("--contamination", type=float, default=0.001)
    s = sub.add_parser("score")
    s.add_argument("--test", required=True)
    for sp in (f, s):
        sp.add_argument("--model", required=True)
        sp.add_argument("--out", required=True)
    a = p.parse_args(argv)
    result = cmd_fit(a) if a.cmd == "fit" else cmd_score(a)
    from mimizuku import __version__

    result["version"] = __version__
    with open(a.out, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
