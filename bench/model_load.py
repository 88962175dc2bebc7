#!/usr/bin/env python3
"""Model load time and size: the plain-data format 2 against the pickled format 1 it replaces.

    python bench/model_load.py [--days 7] [--scale 0.5] [--seed 0] [--repeat 5]

Trains one model on the generator's fleet (``mimizuku.tools.synth``, no attacks), saves it in
both formats (format 2 with ``Mimizuku.save_model``; format 1 as the releases before wrote it:
``tests/pickled_model.py``), checks that both score the training's last day to the same records,
and prints for each format the files' total size and ``Mimizuku.load_model`` time (every check
included: ownership walk, checksums, manifest cross-check; best and median of ``--repeat``
loads in this process, after one warm-up load each, so imports are not counted) and the time
``save``. Issue 17 item 14: loading must not run code; this says what that costs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "detector"))
sys.path.insert(0, str(ROOT / "tests"))   # pickled_model: the format-1 writer the tests use

from mimizuku import Mimizuku  # noqa: E402
from mimizuku.store.model_dir import ModelFormatWarning  # noqa: E402


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir())


def _loads(directory: Path, repeat: int):
    Mimizuku.load_model(directory)   # warm-up: imports, page cache
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        Mimizuku.load_model(directory)
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)

    from pickled_model import pickle_model

    from mimizuku.tools.synth import FleetConfig, generate

    alerts = list(generate(FleetConfig(days=a.days, seed=a.seed, scale=a.scale, attacks=False)))
    last = max(x["timestamp"][:10] for x in alerts)
    train = [x for x in alerts if x["timestamp"][:10] < last]
    test = [x for x in alerts if x["timestamp"][:10] == last]
    t0 = time.perf_counter()
    model = Mimizuku().fit(train)
    fit_s = time.perf_counter() - t0
    print(f"model: {len(train):,} training alerts ({a.days - 1} days, scale {a.scale:g}, seed {a.seed}), "
          f"fitted in {fit_s:.1f} s; situations: "
          + ", ".join(f"{n} {d.n_keys_:,}" for n, d in model.detectors_.items()))

    with tempfile.TemporaryDirectory() as tmp:
        plain, pickled = Path(tmp) / "plain", Path(tmp) / "pickled"
        t0 = time.perf_counter()
        model.save_model(plain)
        save_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        pickle_model(model, pickled)
        save_pickled = time.perf_counter() - t0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ModelFormatWarning)
            same = [json.dumps(r, sort_keys=True) for r in Mimizuku.load_model(plain).score_records(test)] == \
                [json.dumps(r, sort_keys=True) for r in Mimizuku.load_model(pickled).score_records(test)]
            rows = [("format 2 (JSON + .npz, no code)", plain, save_plain, _loads(plain, a.repeat)),
                    ("format 1 (pickles, deprecated)", pickled, save_pickled, _loads(pickled, a.repeat))]
        print(f"both formats score the {len(test):,} alerts of {last} to the same records: {same}")
        print(f"{'format':34} {'size':>10} {'save':>9} {'load best':>10} {'load median':>12}")
        for name, path, save_s, (best, med) in rows:
            print(f"{name:34} {_size(path) / 1e6:8.2f} MB {save_s * 1e3:7.0f} ms {best * 1e3:8.0f} ms "
                  f"{med * 1e3:10.0f} ms")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
