#!/usr/bin/env python3
"""Time of one ``Spool.put`` (``mimizuku.core.spool``) when the spool already holds N items.

    python bench/spool_put.py [--sizes 0,10000,100000] [--puts 200] [--dir /var/tmp]

For each N, a fresh spool directory is filled with N items (written directly, as a long outage
of the scorer leaves them), then ``--puts`` items are put one by one and the mean and the worst
put are printed. "now" is this code: the count and the bytes come from the spool's counter file
(one scan at the first use); "before" reproduces the put of the code before issue 17 item 10
inline (it listed and sorted the whole directory on every put to compare the count with its
bound). Each put writes, fsyncs and renames a file, so the floor is the disk's fsync time; the
figure to look at is how the time grows with N. Figures are printed, not checked. The directory
should be on the same kind of disk as the Wazuh spool (default: the system's temporary one).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detector"))

from mimizuku.core.atomic import write_all  # noqa: E402
from mimizuku.core.spool import Spool  # noqa: E402

ITEM = {"timestamp": "2026-12-07T10:00:00.000+0000", "rule": {"id": "550", "level": 7},
        "agent": {"id": "003", "name": "web-01"}, "full_log": "File '/etc/shadow' modified " + "x" * 600}


def fill(directory: Path, n: int) -> None:
    directory.mkdir(parents=True)
    body = json.dumps(ITEM).encode()
    for i in range(n):
        (directory / f"{i:020d}-0000001-000000-aaaaaa.json").write_bytes(body)


def put_before(directory: Path, item, max_items: int = 1_000_000) -> Path:
    """The put before item 10: list and sort the directory, compare the count, write the file."""
    names = sorted(n for n in os.listdir(directory) if n.endswith(".json") and not n.startswith("."))
    if len(names) >= max_items:
        raise OSError("full")
    name = f"{time.time_ns():020d}-{os.getpid():07d}-000000-{secrets.token_hex(3)}.json"
    tmp = directory / (".tmp-" + name)
    data = json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, directory / name)
    return directory / name


def measure(put, puts: int):
    times = []
    for _ in range(puts):
        t0 = time.perf_counter()
        put(ITEM)
        times.append(time.perf_counter() - t0)
    return sum(times) / len(times), max(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="0,10000,100000", help="items already in the spool (comma-separated)")
    ap.add_argument("--puts", type=int, default=200, help="puts measured per size")
    ap.add_argument("--dir", default=None, help="where to create the scratch spools")
    ap.add_argument("--no-before", action="store_true", help="skip the old algorithm")
    a = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="mimizuku-spool-bench-", dir=a.dir))
    print(f"{'items':>8}  {'code':<7} {'mean ms/put':>12} {'worst ms':>9}")
    try:
        for n in (int(x) for x in a.sizes.split(",") if x.strip()):
            for label in ("now",) + (() if a.no_before else ("before",)):
                d = base / f"{label}-{n}"
                fill(d, n)
                if label == "now":
                    sp = Spool(d)
                    t0 = time.perf_counter()
                    sp.usage()              # the first use scans once (the counter file is new)
                    first = time.perf_counter() - t0
                    mean, worst = measure(sp.put, a.puts)
                    extra = f"   (first use: one scan, {first * 1000:.0f} ms)"
                else:
                    mean, worst = measure(lambda item: put_before(d, item), a.puts)
                    extra = ""
                print(f"{n:>8}  {label:<7} {mean * 1000:>12.2f} {worst * 1000:>9.2f}{extra}", flush=True)
                shutil.rmtree(d)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
