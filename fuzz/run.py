#!/usr/bin/env python3
"""Run every atheris harness for a time budget; print executions and findings (issue 17).

    python fuzz/run.py [--seconds 60] [--only reader,protocol] [--corpus DIR] [--artifacts DIR]

Each harness (``fuzz/atheris_<name>.py``) runs in its own process with libFuzzer's
``-max_total_time``; its corpus starts from the harness's seeds (``--corpus``: kept in
``DIR/<name>`` between runs, else a temporary directory), and an input that breaks a check is
written to ``--artifacts`` (default ``fuzz/findings``) as ``crash-<sha1>``: rerun it with
``python fuzz/atheris_<name>.py <that file>``. Exit status 1 when a harness found something,
0 otherwise; without atheris every harness is reported skipped and the status is 0 (the property
tests in ``tests/fuzz`` cover the same checks without it).
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = ("reader", "protocol", "featurisers")
SKIPPED = 75   # atheris_common.SKIPPED
_DONE = re.compile(r"Done (\d+) (?:runs )?in (\d+) second")
_CRASH = re.compile(r"Test unit written to (\S+)")


def run_one(name: str, seconds: int, corpus: Path, artifacts: Path) -> dict:
    corpus.mkdir(parents=True, exist_ok=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(HERE / f"atheris_{name}.py"), f"-max_total_time={seconds}",
            f"-artifact_prefix={artifacts}/", "-print_final_stats=1", str(corpus)]
    t0 = time.monotonic()
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                       env=dict(os.environ), timeout=seconds * 3 + 300)
    out = p.stdout
    done = _DONE.findall(out)
    execs = int(done[-1][0]) if done else _last_exec(out)
    crashes = _CRASH.findall(out)
    status = "skipped" if p.returncode == SKIPPED else "found" if crashes or p.returncode else "clean"
    why = ""
    if crashes or (p.returncode and p.returncode != SKIPPED):
        tail = [ln for ln in out.splitlines() if ln.strip()][-25:]
        why = "\n".join("    " + ln for ln in tail)
    return {"name": name, "status": status, "execs": execs, "seconds": time.monotonic() - t0,
            "corpus": len(list(corpus.iterdir())), "crashes": crashes, "why": why}


def _last_exec(out: str) -> int:
    got = re.findall(r"^#(\d+)\s", out, re.MULTILINE)
    return int(got[-1]) if got else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=60, help="budget of each harness (default 60)")
    ap.add_argument("--only", default=",".join(HARNESSES), help="harnesses to run (default all)")
    ap.add_argument("--corpus", type=Path, help="keep each harness's corpus in DIR/<name>")
    ap.add_argument("--artifacts", type=Path, default=HERE / "findings", help="where failing inputs go")
    a = ap.parse_args(argv)
    names = [n for n in a.only.split(",") if n]
    bad = sorted(set(names) - set(HARNESSES))
    if bad:
        ap.error(f"unknown harness(es): {', '.join(bad)} (known: {', '.join(HARNESSES)})")
    found = False
    with tempfile.TemporaryDirectory(prefix="mimizuku-fuzz-") as tmp:
        for name in names:
            corpus = (a.corpus or Path(tmp)) / name
            r = run_one(name, a.seconds, corpus, a.artifacts)
            rate = r["execs"] / r["seconds"] if r["seconds"] else 0.0
            print(f"{name:<12} {r['status']:<8} {r['execs']:>9} executions in {r['seconds']:6.1f} s "
                  f"({rate:,.0f}/s), corpus {r['corpus']}, findings {len(r['crashes'])}", flush=True)
            for c in r["crashes"]:
                print(f"    finding: {c}")
            if r["why"]:
                print(r["why"])
            found |= r["status"] == "found"
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
