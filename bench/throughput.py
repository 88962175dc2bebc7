#!/usr/bin/env python3
"""Sustained throughput of the resident scorer (``mimizuku serve``), its latency, and its memory.

Three runs against the daemon as a real process (one thread does its I/O and its scoring: one core):

* **follow mode**: a generated day file of N alerts (default 1,000,000: ``synth`` at scale 4.2
  over 14 days) linked as alerts.json, read ``--from-start``; alerts/s until the bookmark reaches
  its end, and the daemon's RSS sampled along the way (flat memory = no growth after warm-up);
* **socket, saturated**: pipelined requests on 8 connections, as fast as the daemon acknowledges;
* **socket, paced**: requests at ``--rate`` alerts/s (default 5,000), latency from sending a
  request to its acknowledgement (scored, event sent), p50 / p99; ``--paced-runs`` runs (default
  3) one after another on fresh alerts, each reported, since one run on a shared machine says
  little about the tail.

Memory is judged explicitly: the daemon's RSS at every 100,000 alerts of follow mode, and its
growth over the second half of the run (RSS at the end minus RSS at the half-way sample). Flat
means less than ``FLAT_MIB`` MiB and less than ``FLAT_PCT`` % over that half: printed as ok or
FAIL.

The engine alone on the same alerts (``Mimizuku.iter_records`` in batches of 256, in this
process) is measured too, to show what the daemon adds and where the time goes.

    python bench/throughput.py [--alerts 1000000] [--socket-alerts 100000] [--rate 5000] [--paced-runs 3]
                               [--no-socket] [--no-follow]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from integration_call import QueueDrain  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "detector"))
CACHE = Path(os.environ.get("MIMIZUKU_BENCH_CACHE", "/tmp/mimizuku-bench-cache"))
#: memory is flat when the RSS grows less than this over the second half of follow mode ...
FLAT_MIB = 20.0
#: ... and less than this share of the RSS at half-way
FLAT_PCT = 5.0

TRAIN = """
import sys, json
sys.path.insert(0, sys.argv[1])
from mimizuku.engine.estimator import Mimizuku
from mimizuku.tools.synth import FleetConfig, generate
alerts = list(generate(FleetConfig(days=3, scale=1.0, attacks=False, seed=1)))
m = Mimizuku().fit(alerts)
m.save_model(sys.argv[2])
print(len(alerts))
"""


def rss_mib(pid: int):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":")
                    out[k] = int(v.split()[0]) / 1024.0
    except OSError:
        pass
    return out.get("VmRSS"), out.get("VmHWM")


def data_file(n: int, scale: float, days: int) -> Path:
    """N generated alerts as JSON lines (cached between runs)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"alerts-{scale}-{days}-{n}.json"
    if path.exists():
        return path
    larger = sorted((int(p.stem.rsplit("-", 1)[1]), p) for p in CACHE.glob(f"alerts-{scale}-{days}-*.json")
                    if p.stem.rsplit("-", 1)[1].isdigit() and int(p.stem.rsplit("-", 1)[1]) >= n)
    if larger:
        return larger[0][1]   # the same stream, longer: its first n lines are these n alerts
    from mimizuku.tools.synth import FleetConfig, generate

    t0 = time.perf_counter()
    tmp = path.with_suffix(".tmp")
    k = 0
    with open(tmp, "w") as f:
        for a in generate(FleetConfig(days=days, scale=scale, seed=2)):
            a.pop("_label", None)
            f.write(json.dumps(a, separators=(",", ":")) + "\n")
            k += 1
            if k >= n:
                break
    os.replace(tmp, path)
    print(f"generated {k} alerts in {time.perf_counter() - t0:.0f}s -> {path}", flush=True)
    return path


def Queue(path: Path) -> "QueueDrain":
    """analysisd's queue socket, drained in the background (counts events), with a large buffer."""
    return QueueDrain(path, rcvbuf=4 << 20)


class Daemon:
    def __init__(self, home: Path, model: Path, *extra: str):
        self.home = home
        self.sock = home / "mimizuku" / "run" / "serve.sock"
        env = dict(os.environ, PYTHONPATH=str(ROOT / "detector"))
        self.log = open(home / "serve.log", "w")
        self.p = subprocess.Popen([sys.executable, "-m", "mimizuku.serve", "--wazuh-home", str(home),
                                   "--model-dir", str(model), *extra], env=env, stdout=self.log,
                                  stderr=subprocess.STDOUT)
        from mimizuku.integratord import client

        self.client = client
        t0 = time.monotonic()
        while time.monotonic() - t0 < 300:
            st = self.status()
            if st and st.get("model", {}).get("version"):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("daemon did not start: " + (home / "serve.log").read_text()[-2000:])

    def status(self):
        try:
            return self.client.call(self.sock, {"op": "status"}, timeout=5)["status"]
        except (OSError, ValueError, KeyError):
            return None

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(120)
        except subprocess.TimeoutExpired:
            self.p.kill()
        self.log.close()


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]


# --- follow mode --------------------------------------------------------------------------------

def run_follow(work: Path, model: Path, data: Path, n: int) -> dict:
    home = work / "follow"
    day = home / "logs" / "alerts" / "2026" / "Nov"
    day.mkdir(parents=True)
    f = day / "ossec-alerts-21.json"
    with open(data, "rb") as src:
        whole = sum(1 for _ in src) == n
    if whole and os.stat(data).st_dev == os.stat(day).st_dev:
        os.link(data, f)
    else:
        with open(data, "rb") as src, open(f, "wb") as dst:
            for i, line in enumerate(src):
                if i >= n:
                    break
                dst.write(line)
    os.link(f, home / "logs" / "alerts" / "alerts.json")
    q = Queue(home / "queue" / "sockets" / "queue")
    d = Daemon(home, model, "--follow", str(home / "logs" / "alerts" / "alerts.json"), "--from-start")
    samples = []
    t0 = time.perf_counter()
    last = 0
    next_mark = 100_000
    try:
        while True:
            st = d.status() or {}
            c = st.get("counters", {})
            done = c.get("scored", 0) + c.get("duplicates", 0)
            if done >= next_mark or done >= n:
                r, hwm = rss_mib(d.p.pid)
                samples.append((done, time.perf_counter() - t0, r, hwm))
                next_mark += 100_000
            if done >= n:
                break
            if d.p.poll() is not None:
                raise RuntimeError("daemon died: " + (home / "serve.log").read_text()[-2000:])
            if time.perf_counter() - t0 > 3600:
                raise RuntimeError(f"too slow: {done} after an hour")
            last = done
            time.sleep(0.5)
        elapsed = time.perf_counter() - t0
        final = d.status()
    finally:
        d.stop()
        q.close()
    return {"n": n, "seconds": elapsed, "samples": samples, "events": q.count,
            "anomalies": final["counters"]["anomalies"], "flood": final["flood"], "last": last}


# --- socket mode --------------------------------------------------------------------------------

def requests_for(data: Path, n: int, prefix: str, skip: int = 0):
    """``n`` score requests from the lines after the first ``skip`` of the data file.

    Each run takes the alerts that follow the previous run's: replaying alerts already scored
    would send the context detector's rate windows back in time (every replayed alert counted
    again in the newest second), which no manager produces."""
    out = []
    with open(data, "rb") as f:
        for i, line in enumerate(f):
            if i < skip:
                continue
            i -= skip
            if i >= n:
                break
            a = json.loads(line)
            a["id"] = f"{prefix}.{i}"
            out.append(json.dumps({"id": i, "op": "score", "alert": a}, separators=(",", ":")).encode() + b"\n")
    return out


def load(sock_path: Path, reqs, conns: int, window: int, rate=None):
    """Send ``reqs`` over ``conns`` connections, at most ``window`` in flight on each, paced at
    ``rate`` requests/s if given; latency = from sending a request to reading its answer.

    One thread and non-blocking sockets (``selectors``): a generator made of threads would
    measure its own GIL contention rather than the daemon.
    """
    import selectors

    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(conns):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(sock_path))
        s.setblocking(False)
        socks.append({"s": s, "out": bytearray(), "in": bytearray(), "inflight": 0})
        sel.register(s, selectors.EVENT_READ, socks[-1])
    sent = [0.0] * len(reqs)
    lat = [None] * len(reqs)
    errors = 0
    nxt = 0
    done = 0
    start = time.perf_counter()
    while done < len(reqs):
        now = time.perf_counter()
        # queue what is due (round robin over connections with room)
        while nxt < len(reqs):
            if rate and start + nxt / rate > now:
                break
            c = socks[nxt % conns]
            if c["inflight"] >= window:
                break
            c["out"] += reqs[nxt]
            c["inflight"] += 1
            sent[nxt] = now
            nxt += 1
        for c in socks:
            if c["out"]:
                try:
                    n = c["s"].send(c["out"])
                    del c["out"][:n]
                except BlockingIOError:
                    pass
        wait = 0.05
        if rate and nxt < len(reqs):
            wait = max(0.0, min(wait, start + nxt / rate - time.perf_counter()))
        if any(c["out"] for c in socks):
            wait = 0.0
        for key, _ in sel.select(timeout=wait):
            c = key.data
            try:
                chunk = c["s"].recv(1 << 18)
            except BlockingIOError:
                continue
            if not chunk:
                raise RuntimeError("daemon closed the connection")
            c["in"] += chunk
            t = time.perf_counter()
            while True:
                nl = c["in"].find(b"\n")
                if nl < 0:
                    break
                line = bytes(c["in"][:nl])
                del c["in"][:nl + 1]
                ans = json.loads(line)
                i = ans["id"]
                if not ans.get("ok"):
                    errors += 1
                lat[i] = t - sent[i]
                c["inflight"] -= 1
                done += 1
    elapsed = time.perf_counter() - start
    for c in socks:
        c["s"].close()
    got = [x for x in lat if x is not None]
    return {"n": len(reqs), "answered": len(got), "seconds": elapsed, "errors": errors,
            "p50_ms": 1000 * pct(got, 0.5), "p99_ms": 1000 * pct(got, 0.99), "max_ms": 1000 * max(got)}


def socket_lines(n: int, rate: float, runs: int) -> int:
    """Alerts the socket runs read from the data file (warm-up, saturated, paced, 80 %)."""
    return 5000 + n + runs * int(min(n, rate * 20)) + n


def run_socket(work: Path, model: Path, data: Path, n: int, rate: float, runs: int) -> dict:
    home = work / "socket"
    home.mkdir()
    q = Queue(home / "queue" / "sockets" / "queue")
    d = Daemon(home, model)
    try:
        warm = requests_for(data, 5000, "warm")
        load(d.sock, warm, 4, 64)
        sat = load(d.sock, requests_for(data, n, "sat", skip=5000), 8, 128)
        paced_n = int(min(n, rate * 20))
        skip = 5000 + n
        paced = []
        for r in range(runs):
            paced.append(load(d.sock, requests_for(data, paced_n, f"paced{r}", skip=skip), 8, 512, rate=rate))
            skip += paced_n
            print(f"  paced run {r + 1}/{runs}: p50 {paced[-1]['p50_ms']:.1f} ms, p99 {paced[-1]['p99_ms']:.1f} ms",
                  flush=True)
        # below saturation: 80 % of what the daemon sustained, to see the latency of a loaded
        # but not overloaded scorer (above capacity every latency is queueing)
        rate80 = 0.8 * sat["answered"] / sat["seconds"]
        paced80 = load(d.sock, requests_for(data, int(min(n, rate80 * 20)), "p80", skip=skip),
                       8, 512, rate=rate80)
        r, hwm = rss_mib(d.p.pid)
    finally:
        d.stop()
        q.close()
    return {"saturated": sat, "paced": paced, "paced80": paced80, "rate80": rate80, "rate": rate, "rss": r,
            "hwm": hwm}


def flatness(samples) -> dict:
    """Growth of the RSS over the second half of follow mode, and whether it is flat."""
    end_n, _, end_rss, _ = samples[-1]
    half = next(smp for smp in samples if smp[0] >= end_n / 2)
    grew = end_rss - half[2]
    pct = 100.0 * grew / half[2]
    return {"from_n": half[0], "from": half[2], "to_n": end_n, "to": end_rss, "mib": grew, "pct": pct,
            "ok": grew < FLAT_MIB and pct < FLAT_PCT}


def engine_alone(model: Path, data: Path, n: int) -> dict:
    from mimizuku.engine.estimator import Mimizuku

    m = Mimizuku.load_model(model)
    alerts = []
    with open(data, "rb") as f:
        for i, line in enumerate(f):
            if i >= n:
                break
            alerts.append(json.loads(line))
    batches = [alerts[i:i + 256] for i in range(0, len(alerts), 256)]
    for b in batches[:8]:
        list(m.iter_records(b, new_stream=False))  # warm the caches as the daemon's are
    t0 = time.perf_counter()
    k = 0
    for b in batches:
        k += len(list(m.iter_records(b, new_stream=False)))
    return {"n": len(alerts), "seconds": time.perf_counter() - t0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=1_000_000, help="alerts through follow mode (default 1,000,000)")
    ap.add_argument("--socket-alerts", type=int, default=100_000, help="alerts through the socket, saturated")
    ap.add_argument("--rate", type=float, default=5000.0, help="paced socket load, alerts/s (default 5000)")
    ap.add_argument("--scale", type=float, default=5.5, help="synth scale (5.5: about 1,000,000 alerts in 14 days)")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--paced-runs", type=int, default=3, help="paced runs at --rate, each reported (default 3)")
    ap.add_argument("--no-socket", action="store_true", help="skip the socket runs")
    ap.add_argument("--no-follow", action="store_true", help="skip follow mode")
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    a.paced_runs = max(1, a.paced_runs)
    work = Path(tempfile.mkdtemp(prefix="mimizuku-tput-"))
    os.chmod(work, 0o700)
    try:
        model = work / "model"
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", TRAIN, str(ROOT / "detector"), str(model)], check=True,
                             capture_output=True, text=True)
        print(f"model trained on {out.stdout.strip()} generated alerts in {time.perf_counter() - t0:.0f}s", flush=True)
        need = max(0 if a.no_follow else a.alerts,
                   0 if a.no_socket else socket_lines(a.socket_alerts, a.rate, a.paced_runs))
        data = data_file(need, a.scale, a.days)
        with open(data, "rb") as f:
            a.alerts = min(a.alerts, sum(1 for _ in f))
        eng = engine_alone(model, data, 50_000)
        print(f"engine alone: {eng['n'] / eng['seconds']:.0f} alerts/s", flush=True)
        sk = fo = None
        if not a.no_socket:
            sk = run_socket(work, model, data, a.socket_alerts, a.rate, a.paced_runs)
            print("socket done", flush=True)
        if not a.no_follow:
            fo = run_follow(work, model, data, a.alerts)

        print()
        print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; daemon = one thread for I/O and scoring")
        print(f"{'run':<44} {'alerts':>9} {'alerts/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'RSS MiB':>8}")
        if sk is not None:
            s = sk["saturated"]
            print(f"{'socket, saturated (8 conns x 128 in flight)':<44} {s['answered']:>9} "
                  f"{s['answered'] / s['seconds']:>9.0f} {s['p50_ms']:>8.1f} {s['p99_ms']:>8.1f} {'':>8}")
            for r, p in enumerate(sk["paced"]):
                label = "socket, paced at %d/s, run %d/%d" % (a.rate, r + 1, a.paced_runs)
                print(f"{label:<44} {p['answered']:>9} {p['answered'] / p['seconds']:>9.0f} "
                      f"{p['p50_ms']:>8.1f} {p['p99_ms']:>8.1f} {sk['rss']:>8.0f}")
            p = sk["paced80"]
            print(f"{'socket, paced at %d/s (80%% of saturated)' % sk['rate80']:<44} {p['answered']:>9} "
                  f"{p['answered'] / p['seconds']:>9.0f} {p['p50_ms']:>8.1f} {p['p99_ms']:>8.1f} {sk['rss']:>8.0f}")
        if fo is not None:
            print(f"{'follow mode (alerts.json from the start)':<44} {fo['n']:>9} {fo['n'] / fo['seconds']:>9.0f} "
                  f"{'':>8} {'':>8} {fo['samples'][-1][2]:>8.0f}")
        print(f"{'engine alone (iter_records, batches of 256)':<44} {eng['n']:>9} {eng['n'] / eng['seconds']:>9.0f}")
        if sk is not None:
            p99s = [p["p99_ms"] for p in sk["paced"]]
            print(f"socket errors: saturated {sk['saturated']['errors']}, paced "
                  f"{sum(p['errors'] for p in sk['paced'])}, 80% {sk['paced80']['errors']}")
            print(f"paced at {a.rate:.0f}/s, p99 of each run: " + ", ".join(f"{x:.1f}" for x in p99s) +
                  f" ms (target <= 20: {sum(x <= 20 for x in p99s)} of {len(p99s)} runs)")
        if fo is not None:
            print("follow mode memory (alerts done: RSS MiB / peak MiB):  " +
                  ", ".join(f"{k // 1000}k: {r:.0f}/{h:.0f}" for k, _, r, h in fo["samples"]))
            fl = flatness(fo["samples"])
            print(f"follow mode memory over the second half: {fl['from']:.0f} MiB at {fl['from_n'] // 1000}k -> "
                  f"{fl['to']:.0f} MiB at {fl['to_n'] // 1000}k: {fl['mib']:+.0f} MiB ({fl['pct']:+.1f}%); "
                  f"flat = < {FLAT_MIB:.0f} MiB and < {FLAT_PCT:.0f}%: {'ok' if fl['ok'] else 'FAIL'}")
            print(f"follow mode: {fo['anomalies']} anomalies, {fo['events']} events sent "
                  f"(flood control: {fo['flood']['suppressed']} suppressed into {fo['flood']['summaries']} summaries)")
        return 0
    finally:
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
