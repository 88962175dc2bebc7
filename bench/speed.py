#!/usr/bin/env python3
"""Training and batch-scoring speed of this project next to the peer (PyPI ``mimizuku`` 0.2.36).

Every measured step runs in a fresh process of its own (ours: ``bench/_ours_driver.py`` with this
interpreter; the peer: ``bench/_peer_driver.py`` with ``.bench-venv/bin/python``). Times are
taken inside that process around the step alone (interpreter start and imports excluded);
peak memory is the process's RSS high-water mark (``ru_maxrss`` from ``wait4``), imports
included. Both sides read the same files.

1. Training: fit on the same generated JSON-lines file (default: 7 clean days of the default
   fleet at scale 1), then save.
2. Batch scoring throughput, alerts/s = alerts in the file / time to load nothing more and score
   the whole file, reading included (the model load is timed apart): on (a) a mixed file (the 2
   following days, attacks included), (b) the same alerts reduced to file-integrity and command
   alerts (the only ones the peer reads). Ours: ``iter_records(file)`` to the end, every record
   built; the peer: its public ``predict(file)``, its per-alert prints sent to /dev/null.
3. Training target (ours only): 1,000,000 generated alerts (the first million of 14 days at
   scale 6, written as a Wazuh archive tree of ``.json.gz`` day files: what the nightly job
   reads), generated first and timed apart; then ``fit`` on the tree.

Targets: scoring >= 10x the peer's throughput; 1M-alert training <= 180 s and <= 4 GiB.

    python bench/speed.py            # full run
    python bench/speed.py --quick    # small files and 100k alerts for the training target
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Dict, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402
import orjson  # noqa: E402

TARGET_RATIO = 10.0
TARGET_FIT_S = 180.0
TARGET_FIT_BYTES = 4 * 2**30


def _ok(cond: bool) -> str:
    return "ok" if cond else "FAIL"


def _best(runs):
    return min(runs, key=lambda r: r.result["score_s"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small files (2 training days at scale 0.25) and ~100k alerts for the training target")
    p.add_argument("--train-days", type=int, help="days of training data (default 7; --quick 2)")
    p.add_argument("--test-days", type=int, default=2, help="days in the mixed scoring file (default 2)")
    p.add_argument("--scale", type=float, help="activity scale of the train/test files (default 1; --quick 0.25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--big-alerts", type=int,
                   help="alerts in the training-target set (default 1,000,000; --quick 100,000)")
    p.add_argument("--big-scale", type=float,
                   help="scale of the training-target set: 14 days at this scale, cut at --big-alerts "
                        "(default 6, ~1.1M before the cut; --quick 0.5)")
    p.add_argument("--skip-big", action="store_true", help="skip the 1M-alert training target")
    p.add_argument("--skip-peer", action="store_true", help="only this project")
    p.add_argument("--repeat", type=int, default=1, help="scoring runs per side and file; the fastest counts")
    p.add_argument("--workdir", help="keep files, models and logs here (default: a temp dir, removed)")
    a = p.parse_args(argv)
    train_days = a.train_days or (2 if a.quick else 7)
    scale = a.scale or (0.25 if a.quick else 1.0)
    big_scale = a.big_scale or (0.5 if a.quick else 6.0)
    big_alerts = a.big_alerts or (100_000 if a.quick else 1_000_000)

    peer_version = None
    if not a.skip_peer:
        try:
            peer_version = C.ensure_peer_env()
        except Exception as e:  # noqa: BLE001 - venv creation or check failed: say why and stop
            print(f"error: the peer is not available: {e}", file=sys.stderr)
            return 2

    work = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="mimizuku-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    print(f"Mimizuku speed benchmark: ours (mimizuku {C.ours_version()}, this checkout) vs peer "
          f"(PyPI mimizuku {peer_version or 'skipped'})")
    print(f"both sides: contamination={C.CONTAMINATION}, n_neighbors={C.N_NEIGHBORS}; each step in a fresh process")
    print(f"machine: {C.machine_line()}  (shared machine: figures move with the load)")
    print(f"targets: scoring >= {TARGET_RATIO:g}x the peer's alerts/s; training on ~1M alerts "
          f"<= {TARGET_FIT_S:g} s and <= {C.fmt_bytes(TARGET_FIT_BYTES)}")
    print(flush=True)
    try:
        # -- data ---------------------------------------------------------------------------------
        from mimizuku.tools.synth import generate

        days = train_days + a.test_days
        cfg = C.generated_config(days, a.seed, scale, a.test_days)
        split = (C.GEN_START + timedelta(days=train_days)).isoformat()
        C.log(f"generating {days} days at scale {scale:g} (train {train_days} days, test {a.test_days} days)")
        t0 = time.perf_counter()
        train = open(work / "train.jsonl", "wb")
        mixed = open(work / "mixed.jsonl", "wb")
        domain = open(work / "fim-commands.jsonl", "wb")
        n = {"train": 0, "mixed": 0, "domain": 0}
        for alert in generate(cfg):
            line = orjson.dumps(C.strip_labels(alert)) + b"\n"
            if str(alert.get("timestamp", ""))[:10] < split:
                train.write(line)
                n["train"] += 1
            else:
                mixed.write(line)
                n["mixed"] += 1
                if C.is_peer_domain(alert):
                    domain.write(line)
                    n["domain"] += 1
        for fh in (train, mixed, domain):
            fh.close()
        gen_s = time.perf_counter() - t0
        print(f"data: default fleet from {C.GEN_START}, seed {a.seed}, scale {scale:g}; generated in {gen_s:.1f} s "
              f"(not counted)")
        print(f"  train file   {n['train']:>10,} alerts ({train_days} days, no attacks)")
        print(f"  mixed file   {n['mixed']:>10,} alerts ({a.test_days} days, all kinds, attacks included)")
        print(f"  FIM+commands {n['domain']:>10,} alerts (the mixed file's 55x-with-syscheck and 80792 alerts)")
        print(flush=True)

        # -- training -----------------------------------------------------------------------------
        ours_model, peer_model = work / "ours-model", work / "peer-model"
        peer_model.mkdir(exist_ok=True)
        C.log("ours: fit")
        of = C.ours_step("fit", work, "ours-fit", train=work / "train.jsonl", model=ours_model)
        pf = None
        if not a.skip_peer:
            C.log("peer: fit (brute-force LOF over every FIM and command alert: slow)")
            pf = C.peer_step("fit", work, "peer-fit", train=work / "train.jsonl", model=peer_model)
        print(f"Training on the train file ({n['train']:,} alerts; fresh process; time around fit(file), "
              f"reading included)")
        print(f"  {'':<22}{'ours':<18}{'peer (0.2.36)':<18}ours/peer")

        def trow(label, o, p_, ratio=None):
            print(f"  {label:<22}{o:<18}{p_:<18}{ratio or ''}")

        pfit = pf.result["fit_s"] if pf else None
        trow("fit time", f"{of.result['fit_s']:.1f} s", f"{pfit:.1f} s" if pf else "-",
             f"{of.result['fit_s'] / pfit:.2f}x time" if pf else None)
        trow("save time", f"{of.result['save_s']:.2f} s", f"{pf.result['save_s']:.2f} s" if pf else "-")
        trow("peak memory (RSS)", C.fmt_bytes(of.max_rss), C.fmt_bytes(pf.max_rss) if pf else "-",
             f"{of.max_rss / pf.max_rss:.2f}x memory" if pf else None)
        det = ", ".join(f"{k} {v['alerts']:,} alerts / {v['situations']:,} situations"
                        for k, v in of.result["detectors"].items())
        print(f"  ours trained: {det}")
        if pf:
            rules = ", ".join(f"{k} {v['train_alerts']:,} alerts" for k, v in pf.result["rules"].items())
            print(f"  peer trained: {rules}")
        print(flush=True)

        # -- scoring ------------------------------------------------------------------------------
        print("Batch scoring (fresh process: load the model, then score the whole file, reading included; "
              "alerts/s = alerts in the file / scoring time)")
        print(f"  {'file':<14}{'alerts':>10}  {'ours alerts/s':>14}{'peer alerts/s':>15}  {'ours/peer':<16}target")
        loads: Dict[str, list] = {"ours": [], "peer": []}
        mem: Dict[str, list] = {"ours": [], "peer": []}
        for label, fname, count in (("mixed", "mixed.jsonl", n["mixed"]),
                                    ("FIM+commands", "fim-commands.jsonl", n["domain"])):
            path = work / fname
            C.log(f"scoring {label}: ours")
            o = _best([C.ours_step("score", work, f"ours-score-{label}-{i}", model=ours_model, test=path)
                       for i in range(max(1, a.repeat))])
            pr: Optional[C.StepResult] = None
            if not a.skip_peer:
                C.log(f"scoring {label}: peer")
                pr = _best([C.peer_step("predict", work, f"peer-predict-{label}-{i}", model=peer_model, test=path)
                            for i in range(max(1, a.repeat))])
            o_rate = count / o.result["score_s"] if o.result["score_s"] > 0 else float("inf")
            loads["ours"].append(o.result["load_s"])
            mem["ours"].append(o.max_rss)
            p_txt, ratio_txt = "-", "-"
            if pr is not None:
                p_rate = count / pr.result["score_s"] if pr.result["score_s"] > 0 else float("inf")
                ratio = o_rate / p_rate
                p_txt = f"{p_rate:,.0f}"
                ratio_txt = f"{ratio:.2f}x  {_ok(ratio >= TARGET_RATIO)}"
                loads["peer"].append(pr.result["load_s"])
                mem["peer"].append(pr.max_rss)
            print(f"  {label:<14}{count:>10,}  {o_rate:>14,.0f}{p_txt:>15}  {ratio_txt:<16}>= {TARGET_RATIO:g}x")
            extra = f"    ours: {o.result['score_s']:.2f} s, {o.result['records']:,} records, " \
                    f"{o.result['anomalies']:,} anomalies"
            if pr is not None:
                extra += f"; peer: {pr.result['score_s']:.2f} s, {pr.result['anomalies']:,} anomalies"
            print(extra)
        print(f"  model load (not counted): ours {max(loads['ours']):.2f} s"
              + (f", peer {max(loads['peer']):.2f} s" if loads["peer"] else ""))
        print(f"  peak memory while scoring: ours {C.fmt_bytes(max(mem['ours']))}"
              + (f", peer {C.fmt_bytes(max(mem['peer']))}" if mem["peer"] else ""))
        print(flush=True)

        # -- the training target ------------------------------------------------------------------
        if not a.skip_big:
            big_cfg = C.generated_config(14, a.seed + 1, big_scale, 2)
            root = work / "big-tree"
            C.log(f"generating 14 days at scale {big_scale:g} into an archive tree")
            from mimizuku.tools.synth import write_archive_tree

            t0 = time.perf_counter()
            info = write_archive_tree(root, itertools.islice(generate(big_cfg), big_alerts))
            gen_s = time.perf_counter() - t0
            size = sum(Path(f).stat().st_size for f in info["files"])
            C.log(f"ours: fit on {info['alerts']:,} alerts")
            bf = C.ours_step("fit", work, "ours-fit-big", train=root, model=work / "ours-model-big")
            fit_s, rss = bf.result["fit_s"], bf.max_rss
            print(f"Training target (ours): {info['alerts']:,} generated alerts (the first {big_alerts:,} of "
                  f"14 days at scale {big_scale:g}, seed {a.seed + 1}) as a Wazuh archive tree "
                  f"({len(info['files'])} .json.gz day files over {info['days']} days, {C.fmt_bytes(size)}); "
                  f"generated in {gen_s:.0f} s (not counted)")
            print(f"  fit on the tree (reading + training): {fit_s:.1f} s  {_ok(fit_s <= TARGET_FIT_S)} "
                  f"(target <= {TARGET_FIT_S:g} s)")
            print(f"  peak memory (RSS):                    {C.fmt_bytes(rss)}  {_ok(rss <= TARGET_FIT_BYTES)} "
                  f"(target <= {C.fmt_bytes(TARGET_FIT_BYTES)})")
            print(f"  alerts read by fit: {bf.result['alerts']:,}; save {bf.result['save_s']:.2f} s; "
                  + ", ".join(f"{k} {v['alerts']:,} alerts / {v['situations']:,} situations"
                              for k, v in bf.result["detectors"].items()))
            if info["alerts"] < 0.95 * 1_000_000:
                print(f"  NOTE: {info['alerts']:,} alerts, not 1M (--quick, --big-alerts or --big-scale too small): "
                      "the target is for 1M alerts")
            print()
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    print(f"total time {time.perf_counter() - t_start:.0f} s; machine at the end: {C.machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
