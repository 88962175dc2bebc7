#!/usr/bin/env python3
"""Cost of one ``custom-mimizuku`` call with the resident scorer running, as integratord pays it.

integratord runs the script once per alert and waits for it: its wall time is the throughput
limit. Measured here in one run, each call a fresh process started the way integratord starts it
(its argv, its temporary alert and options files, the script exec'd through its shebang):

* ours: the real script, installed as install.sh installs it (a virtualenv whose interpreter is
  in the shebang, ``-IS``), ``"socket"`` in the options, ``mimizuku serve`` running: the alert is
  handed over and the call returns once the scorer acknowledged it (scored, event sent);
* the floor: ``python3 -S -c pass``, the cheapest Python process there is (and, for reference,
  the virtualenv's interpreter with ``site``: ``-I -c pass``);
* the peer, PyPI ``mimizuku==0.2.36``: ``Mimizuku.load_model(dir).predict(alert_file)`` in a fresh
  interpreter of its virtualenv (what its per-alert use costs), driven as
  ``bench/integration_call.py`` drives it (shared code imported from there).

Wall time: Popen to wait4, median and p99 over the calls, the sides interleaved. Peak memory:
GNU time's ``%M`` (the child's own high-water mark; wait4 would report this process's peak for a
forked child), in a separate pass.

    python bench/integratord_path.py [-n 300] [--peer-n 10]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "detector"))

from integration_call import (  # noqa: E402
    GNU_TIME,
    OURS_TRAIN,
    PEER,
    PEER_PREDICT,
    PEER_TRAIN,
    QueueDrain,
    ensure_peer_venv,
    make_tests,
    make_training,
    measure,
)


def wall(argv, env):
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, _ = os.wait4(p.pid, 0)
    return time.perf_counter() - t0, os.waitstatus_to_exitcode(status)


def p99(v):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]


def row(name, times, mems, fails):
    t = [x * 1000 for x in times]
    m = f"{statistics.median(mems):9.1f} {max(mems):9.1f}" if mems else f"{'-':>9} {'-':>9}"
    return f"{name:<52} {statistics.median(t):9.1f} {p99(t):9.1f} {m} {len(times):6d} {fails:5d}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=300, help="calls for ours and the floor (default 300)")
    ap.add_argument("--peer-n", type=int, default=10, help="calls for the peer (about 2 s each; default 10)")
    ap.add_argument("--mem-n", type=int, default=20, help="calls per side measured with GNU time (default 20)")
    ap.add_argument("--train", type=int, default=4000)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    rng = random.Random(7)
    work = Path(tempfile.mkdtemp(prefix="mimizuku-itd-"))
    daemon = None
    try:
        home = work / "ossec"
        for d in ("integrations", "logs", "queue/sockets", "mimizuku"):
            (home / d).mkdir(parents=True)
        os.chmod(home / "mimizuku", 0o700)
        train = make_training(a.train, rng)
        train_file = work / "train.json"
        train_file.write_text("".join(json.dumps(x) + "\n" for x in train))
        models = home / "mimizuku" / "models"
        subprocess.run([sys.executable, "-c", OURS_TRAIN, str(ROOT / "detector"), str(train_file), str(models)],
                       check=True)
        peer_py = ensure_peer_venv()
        peer_dir = work / "peer-model"
        peer_dir.mkdir()
        subprocess.run([str(peer_py), "-c", PEER_TRAIN, str(train_file), str(peer_dir)], check=True,
                       stdout=subprocess.DEVNULL)

        # the engine's virtualenv as install.sh makes it (here: the package from the checkout)
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next(venv.glob("lib/python3*/site-packages"))
        # the package in site-packages as pip puts it there (a link to the checkout: a .pth file
        # would only be read by `site`, which the -S of the shebang skips)
        (site / "mimizuku").symlink_to(ROOT / "detector" / "mimizuku", target_is_directory=True)
        vpy = venv / "bin" / "python3"
        script = home / "integrations" / "custom-mimizuku"
        body = (ROOT / "integrations" / "custom-mimizuku").read_text().splitlines()[1:]
        script.write_text("\n".join([f"#!{vpy} -IS"] + body) + "\n")
        os.chmod(script, 0o750)
        subprocess.run([str(vpy), "-I", "-c", "import mimizuku.integratord.forward, mimizuku.integratord.call"], check=True)  # .pyc in place

        drain = QueueDrain(home / "queue" / "sockets" / "queue")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C"}
        daemon_env = dict(os.environ, PYTHONPATH=str(ROOT / "detector"))
        log = open(work / "serve.log", "w")
        daemon = subprocess.Popen([sys.executable, "-m", "mimizuku.serve", "--wazuh-home", str(home),
                                   "--options", json.dumps({"send": "all"}), "--flood-window", "0"],
                                  env=daemon_env, stdout=log, stderr=subprocess.STDOUT)
        sock = home / "mimizuku" / "run" / "serve.sock"
        from mimizuku.integratord import client

        for _ in range(600):
            try:
                if client.call(sock, {"op": "status"}, 2)["status"]["ready"]:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError("the scorer did not start: " + (work / "serve.log").read_text()[-2000:])
        options = work / "custom-mimizuku-1763000000-1.options"
        options.write_text(json.dumps({"model_dir": str(models), "socket": str(sock), "send": "all"}))

        tests = make_tests(max(a.n, a.peer_n, a.mem_n), rng)
        alert_file = Path("/tmp") / f"custom-mimizuku-{int(time.time())}-{rng.getrandbits(31)}.alert"
        floor = [sys.executable, "-S", "-c", "pass"]
        site_floor = [str(vpy), "-I", "-c", "pass"]
        ours_t, floor_t, site_t, peer_t = [], [], [], []
        fails = {"ours": 0, "floor": 0, "site": 0, "peer": 0}

        def ours_argv(i):
            alert = dict(tests[i % len(tests)], id=f"1763000000.{i}")
            alert_file.write_text(json.dumps(alert, separators=(",", ":")))
            return [str(script), str(alert_file), "", "", "", str(options), "10", "3", "> /dev/null 2>&1"]

        for _ in range(10):  # warm the page cache
            wall(floor, env)
            wall(site_floor, env)
        for i in range(a.n):
            t, c = wall(ours_argv(i), env)
            ours_t.append(t)
            fails["ours"] += c != 0
            t, c = wall(floor, env)
            floor_t.append(t)
            fails["floor"] += c != 0
            t, c = wall(site_floor, env)
            site_t.append(t)
            fails["site"] += c != 0
        print(f"ours/floor: {a.n} calls each done", flush=True)
        ours_m, floor_m, peer_m = [], [], []
        for i in range(a.mem_n):
            ours_m.append(measure(ours_argv(a.n + i), env=env)[1])
            floor_m.append(measure(floor, env=env)[1])
        for i in range(a.peer_n):
            alert_file.write_text(json.dumps(tests[i]) + "\n")
            dt, mib, code = measure([str(peer_py), "-c", PEER_PREDICT, str(peer_dir), str(alert_file)], env=env)
            peer_t.append(dt)
            peer_m.append(mib)
            fails["peer"] += code != 0
            print(f"  peer {i + 1}/{a.peer_n}", end="\r", flush=True)
        alert_file.unlink()
        time.sleep(0.5)
        st = client.call(sock, {"op": "status"}, 5)["status"]
        pending = len(list((home / "mimizuku" / "spool" / "alerts").glob("*.json")))

        print()
        print(f"{'per call (one process each)':<52} {'median ms':>9} {'p99 ms':>9} {'RSS MiB':>9} {'max MiB':>9} "
              f"{'n':>6} {'fail':>5}")
        print(row("ours: custom-mimizuku -> mimizuku serve (acked)", ours_t, ours_m, fails["ours"]))
        print(row("floor: python3 -S -c pass", floor_t, floor_m, fails["floor"]))
        print(row("reference: venv python3 -I -c pass (with site)", site_t, [], fails["site"]))
        print(row(f"peer: {PEER} load_model + predict", peer_t, peer_m, fails["peer"]))
        mo, mf, mp = statistics.median(ours_t), statistics.median(floor_t), statistics.median(peer_t)
        print(f"ours / floor = {mo / mf:.2f}x (target <= 1.5x); peer / ours = {mp / mo:.0f}x (target >= 20x); "
              f"ours peak {max(ours_m):.1f} MiB (target <= 30)")
        print(f"integratord limit: ours {1 / mo:.0f} alerts/s, peer {1 / mp:.2f} alerts/s")
        print(f"scorer: {st['counters']['scored']} scored, {st['counters']['duplicates']} duplicates; "
              f"events received by the queue socket: {drain.count}; alerts left in the spool: {pending}")
        if not GNU_TIME:
            print("(no /usr/bin/time: memory read with wait4, floored at this process's own peak)")
        drain.close()
        return 0
    finally:
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(60)
            except subprocess.TimeoutExpired:
                daemon.kill()
        if a.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
