#!/usr/bin/env python3
"""Beyond one manager, at scale: ``mimizuku retrain`` on 14 days totalling ~2,000,000 alerts,
locally vs on a 2-worker local Dask cluster; then the indexer's paging throughput.

    python bench/scale.py [--scale 11.5] [--tree DIR] [--workdir DIR] [--keep] [--skip-paging]
                          [--indexer-alerts N] [--skip-indexer-train]

Not timed: a Wazuh archive tree of 14 days (``mimizuku.tools.synth``, default fleet, gzip day files
with intra-day parts, as ``bench/retrain.py`` builds its 1M tree) is generated into the work
directory, unless ``--tree`` names one.

Timed, each ``mimizuku retrain --no-batch`` in a fresh process with no model yet (wall clock,
peak RSS of the driver process from ``wait4``):

1. ``local`` — the archive's days read and counted one after another in the process;
2. ``dask`` — the same run with ``--dask ADDRESS`` against ``distributed.LocalCluster(n_workers=2,
   threads_per_worker=1, processes=True)`` started by this script before the run (not timed);
   peak RSS of each worker process (``resource.getrusage`` through ``Client.run``).

Then the two installed models are compared: manifests (minus version and times), every
detector's situations with their weights, thresholds and training scores, and the scores of a
sample of the last day. Both runs must give equal models.

Indexer slices: the first ``--indexer-alerts`` alerts of the archive (default 100,000; ``0`` or
``--skip-indexer-train`` to leave it out) are loaded into the local fake indexer (``tests/fake_indexer.py``,
not timed) and ``mimizuku retrain --input URL`` runs locally and on the same cluster: one slice per
UTC day, each Dask task reading its own slice with its own point in time; the workers take the
credentials from their environment (set before the cluster starts), never from the task. The two
models are compared as above.

Indexer paging: ``bench/indexer_paging.py``'s ``run_paging_bench(n_alerts, page_size)`` against
the local fake indexer, if that file exists (``--skip-paging`` to leave it out).

Peer: PyPI ``mimizuku`` 0.2.36 has no retrain job, no Dask and no indexer source: no peer figure.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "detector"))
sys.path.insert(0, str(ROOT / "bench"))
from retrain import file_day, generate, gib, log, machine, measured  # noqa: E402  (bench/retrain.py)


def _fitted(det) -> dict:
    out = {"n_alerts": det.n_alerts_, "n_keys": det.n_keys_, "threshold": det.threshold_,
           "decision_scores": det.decision_scores_.tolist()}
    if hasattr(det, "ref_keys_"):
        out.update(keys=list(zip(det.ref_keys_, det.ref_weights_.tolist())), examples=det.examples_,
                   tokens=det.token_counts_)
    else:
        out.update(keys=list(zip(det.core_keys_, det.core_weights_.tolist())), blocks=det.blocks_,
                   max_rate=det.max_rate_, max_src=det.max_src_)
    return out


def compare_models(a_dir: Path, b_dir: Path, sample_source: str, day: date, n_sample: int) -> str:
    """'equal' or what differs."""
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.sources.reader import iter_alerts

    def manifest(d: Path) -> dict:
        m = json.loads((d / "current" / "manifest.json").read_text())
        for k in ("model_version", "created", "files"):
            m.pop(k, None)
        m.get("retrain", {}).pop("filter_model", None)  # each store's own version of the model in use
        return m

    ma, mb = manifest(a_dir), manifest(b_dir)
    if ma != mb:
        return "manifests differ: " + ", ".join(sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k)))
    a, b = Mimizuku.load_model(a_dir / "current"), Mimizuku.load_model(b_dir / "current")
    if sorted(a.detectors_) != sorted(b.detectors_):
        return "detectors differ"
    for name in a.detectors_:
        if _fitted(a.detectors_[name]) != _fitted(b.detectors_[name]):
            return f"detector {name} differs"
    sample = []
    for alert in iter_alerts(sample_source, since=day, until=day):
        sample.append(alert)
        if len(sample) >= n_sample:
            break
    ra, rb = a.score_records(sample), b.score_records(sample)
    if [(r["id"], r["score"], r["anomaly"], r["scores"]) for r in ra] != \
            [(r["id"], r["score"], r["anomaly"], r["scores"]) for r in rb]:
        return "scores differ"
    return f"equal (situations, weights, thresholds; scores of {len(sample):,} alerts of {day})"


def worker_peaks(client) -> list:
    def peak() -> int:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    return sorted(client.run(peak).values())


def summary_of(out: bytes) -> dict:
    lines = out.decode(errors="replace").strip().splitlines()
    return json.loads(lines[-1])["mimizuku"] if lines else {}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=11.5, help="synth scale (11.5: ~2,000,000 alerts in 14 days)")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tree", help="use this Wazuh tree (with logs/alerts) instead of generating one")
    ap.add_argument("--workdir", help="work directory (default: a temporary one, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--workers", type=int, default=2, help="Dask workers (one thread each; default 2)")
    ap.add_argument("--sample", type=int, default=20_000, help="alerts of the last day scored by both models")
    ap.add_argument("--no-filter-run", action="store_true",
                    help="only the first retrain (no model in use), not the next night's run with the filter")
    ap.add_argument("--skip-paging", action="store_true", help="leave out the indexer paging figures")
    ap.add_argument("--paging-alerts", type=int, default=200_000, help="alerts paged from the fake indexer")
    ap.add_argument("--page-size", type=int, default=1000, help="indexer page size")
    ap.add_argument("--indexer-alerts", type=int, default=100_000,
                    help="alerts loaded into the fake indexer for the retrain-from-indexer rows (0: none)")
    ap.add_argument("--skip-indexer-train", action="store_true", help="leave out the retrain-from-indexer rows")
    args = ap.parse_args(argv)

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mimizuku-bench-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    home = Path(args.tree) if args.tree else work / "wazuh"
    env = {"PYTHONPATH": str(ROOT / "detector") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    status = 0
    try:
        if not (home / "logs" / "alerts").is_dir():
            if args.tree:
                log(f"--tree {home}: no logs/alerts there")
                return 2
            log(f"generating {args.days} days at scale {args.scale} into {home} (not timed) ...")
            t0 = time.perf_counter()
            info = generate(home, args.scale, args.days, args.seed)
            log(f"  {info['alerts']:,} alerts, {len(info['files'])} files in {time.perf_counter() - t0:.0f} s")
        from mimizuku.sources.archive import archive_files

        files = archive_files(home, days=args.days + 1)
        size = sum(f.stat().st_size for f in files)
        day = max(file_day(f) for f in files if f.name != "alerts.json")
        print(f"# bench/scale.py  ({machine()}; {date.today()})")
        print(f"archive: {len(files)} files, {size / 1024 ** 2:.0f} MiB gzip, last day {day}")

        py = sys.executable
        models = {"local": work / "models-local", "dask": work / "models-dask"}
        for m in models.values():
            shutil.rmtree(m, ignore_errors=True)

        def cmd(which: str) -> list:
            return [py, "-m", "mimizuku.nightly", "retrain", "--wazuh-home", str(home), "--model-dir",
                    str(models[which]), "--days", str(args.days), "--day", str(day), "--no-batch",
                    "--no-report", "--summary-json", "--log-file", str(work / f"retrain-{which}.log")]

        phases = ["first retrain (no model yet)"]
        if not args.no_filter_run:
            phases.append("next night (model in use filters 14 days)")
        rows = []
        from distributed import Client, LocalCluster

        fake = None
        if not args.skip_indexer_train and args.indexer_alerts > 0:
            # credentials reach the driver and the worker processes through the environment (set
            # before the cluster spawns them), never through the task graph
            sys.path.insert(0, str(ROOT / "tests"))
            from fake_indexer import FakeIndexer

            from mimizuku.sources.reader import iter_alerts

            log(f"loading up to {args.indexer_alerts:,} alerts into the fake indexer (not timed) ...")
            docs = []
            for a in iter_alerts(str(home), days=args.days + 1):
                docs.append(a)
                if len(docs) >= args.indexer_alerts:
                    break
            fake = FakeIndexer(docs, user="bench", password="bench-" + os.urandom(6).hex()).start()
            n_indexed = len(docs)
            del docs
            cfg_file = work / "indexer.json"
            fd = os.open(cfg_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"page_size": args.page_size}, f)
            os.environ.update({"MIMIZUKU_INDEXER_CONFIG": str(cfg_file), "MIMIZUKU_INDEXER_USER": fake.user,
                               "MIMIZUKU_INDEXER_PASSWORD": fake.password})
            for which in ("idx-local", "idx-dask"):
                models[which] = work / f"models-{which}"
                shutil.rmtree(models[which], ignore_errors=True)

        def judge_pair(local: str, dask: str) -> int:
            """Compare the models of the last two rows (local, then Dask) when both runs
            succeeded; 1 when they differ."""
            if rows[-1][4] != 0 or rows[-2][4] != 0:
                return 0
            log("comparing the two models (not timed) ...")
            verdict = compare_models(models[local], models[dask], str(home), day, args.sample)
            rows[-1][5]["_models"] = verdict
            return 0 if verdict.startswith("equal") else 1

        for phase in phases:
            log(f"{phase}: local retrain ...")
            wall, rss, rc, out = measured(cmd("local"), env)
            rows.append((phase, "local", wall, rss, rc, summary_of(out), []))
            if phase == phases[0]:
                log(f"starting a LocalCluster of {args.workers} worker processes (not timed) ...")
                environ = dict(os.environ)
                cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address="127.0.0.1:0")
                client = Client(cluster)
                # the nanny leaves OMP/OPENBLAS_NUM_THREADS=1 (and more) in this process's environment
                # for its workers; the driver must run as the local run did (BLAS threads change the
                # rounding of LOF's distances, hence near-tied neighbours: a different model)
                for k in set(os.environ) - set(environ):
                    del os.environ[k]
                os.environ.update(environ)
                log(f"worker RSS before the runs: {', '.join(gib(b) for b in worker_peaks(client))}")
            log(f"{phase}: dask retrain on {cluster.scheduler_address} ...")
            wall, rss, rc, out = measured(cmd("dask") + ["--dask", cluster.scheduler_address, "--dask-insecure"], env)
            rows.append((phase, f"dask, {args.workers} workers", wall, rss, rc, summary_of(out), worker_peaks(client)))
            status = judge_pair("local", "dask") or status
        if fake is not None:
            url = fake.url + "/wazuh-alerts-4.x-*"
            phase = "from the indexer (UTC-day slices)"
            log(f"{phase}: {n_indexed:,} alerts in the fake indexer at {url}")

            def icmd(which: str) -> list:
                c = cmd(which)
                c[c.index("--model-dir") + 1] = str(models[which])
                return c + ["--input", url]

            log(f"{phase}: local retrain ...")
            wall, rss, rc, out = measured(icmd("idx-local"), env)
            rows.append((phase, "local", wall, rss, rc, summary_of(out), []))
            log(f"{phase}: dask retrain ...")
            wall, rss, rc, out = measured(icmd("idx-dask") + ["--dask", cluster.scheduler_address, "--dask-insecure"], env)
            rows.append((phase, f"dask, {args.workers} workers", wall, rss, rc, summary_of(out), worker_peaks(client)))
            status = judge_pair("idx-local", "idx-dask") or status
            fake.stop()
        client.close()
        cluster.close()

        print(f"{'retrain':<44} {'where':<16} {'wall s':>7} {'read+train s':>12} {'driver peak':>11} "
              f"{'worker peaks':>20}  exit  {'alerts read':>11}  {'excluded':>8}")
        for phase, where, w, r, c, s, peaks in rows:
            d, cn = s.get("durations_ms", {}), s.get("counts", {})
            print(f"{phase:<44} {where:<16} {w:>7.1f} {d.get('read_train', 0) / 1000:>12.1f} {gib(r):>11} "
                  f"{(', '.join(gib(p) for p in peaks) or '-'):>20}  {c:>4}  {cn.get('alerts_read', 0):>11,}  "
                  f"{cn.get('excluded_flagged', 0):>8,}")
            if c != 0:
                status = 1
                print(f"  {where}: {s.get('status')}: {s.get('error')}")
        for i in range(0, len(rows), 2):
            lw, dw = rows[i][2], rows[i + 1][2]
            lt = rows[i][5].get("durations_ms", {}).get("read_train", 0)
            dt = rows[i + 1][5].get("durations_ms", {}).get("read_train", 0)
            print(f"{rows[i][0]}: dask/local wall {dw / lw:.2f}, read+train {dt / max(lt, 1):.2f}; "
                  f"models: {rows[i + 1][5].get('_models', 'not compared')}")
        print(f"({os.cpu_count()} cores shared by the driver and {args.workers} single-threaded workers)")

        paging = ROOT / "bench" / "indexer_paging.py"
        if args.skip_paging:
            print("indexer paging: skipped (--skip-paging)")
        elif not paging.is_file():
            print("indexer paging: skipped (bench/indexer_paging.py not there)")
        else:
            spec = importlib.util.spec_from_file_location("indexer_paging", paging)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            log(f"indexer paging: {args.paging_alerts:,} alerts, pages of {args.page_size} ...")
            res = mod.run_paging_bench(args.paging_alerts, args.page_size)
            print(f"indexer paging ({args.paging_alerts:,} alerts, page size {args.page_size}):")
            for k, v in res.items():
                print(f"  {k:<28} {v:,.2f}" if isinstance(v, float) else f"  {k:<28} {v}")
        print("peer (mimizuku 0.2.36): no retrain job, no Dask, no indexer source -> no figure")
        print(f"load after: {os.getloadavg()[0]:.2f}")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
