#!/usr/bin/env python3
"""Cost of one ``custom-mimizuku`` call while analysisd hangs and the resident scorer, stuck on
it, does not acknowledge (issue 17 item 12).

Each call is the real script in a fresh process with integratord's argv, ``"socket"`` in the
options and the default acknowledgement wait (2 s). The scorer is emulated: a listening socket
that never answers, plus (or not) the owner lock the real one holds on ``<spool>/owner.lock``
while it runs (``mimizuku.core.spool.hold_owner``). analysisd is emulated by its queue socket
with a full receive queue (every send blocks), and the event spool holds one kept event.

* scorer holds the spool: the call waits for the acknowledgement, spools the alert, returns;
* no owner lock (what every call did before the lock existed): the call also tries to flush the
  event spool and waits out a send timeout (2 s) on the first datagram.

    python bench/hung_analysisd.py [-n 5]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "detector"))

from mimizuku.core.spool import Spool, hold_owner, release_owner  # noqa: E402

ALERT = {"timestamp": "2026-11-20T10:15:02.123+0000", "id": "1700000000.1", "location": "syscheck",
         "rule": {"level": 7, "description": "Integrity checksum changed.", "id": "550", "groups": ["syscheck"]},
         "agent": {"id": "003", "name": "web-01"}, "syscheck": {"path": "/etc/hosts", "event": "modified"}}


def fill(queue: Path) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(str(queue))
    s.setblocking(False)
    try:
        while True:
            s.send(b"1:filler:x")
    except BlockingIOError:
        pass
    finally:
        s.close()


def calls(n: int, owner: bool) -> list:
    base = Path(tempfile.mkdtemp(prefix="mimizuku-hung-"))
    try:
        home = base / "ossec"
        for d in ("logs", "integrations", "queue/sockets", "mimizuku/spool"):
            (home / d).mkdir(parents=True)
        script = home / "integrations" / "custom-mimizuku"
        shutil.copy(ROOT / "integrations" / "custom-mimizuku", script)
        spool = home / "mimizuku" / "spool"
        Spool(spool / "events").put({"message": '1:mimizuku:{"integration":"mimizuku","mimizuku":{"n":1}}'})
        queue = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        queue.bind(str(home / "queue" / "sockets" / "queue"))
        fill(home / "queue" / "sockets" / "queue")
        scorer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        scorer.bind(str(home / "serve.sock"))
        scorer.listen(4096)
        lock = hold_owner(spool) if owner else None
        options = home / "custom-mimizuku.options"
        options.write_text(json.dumps({"socket": str(home / "serve.sock")}))
        env = dict(os.environ, PYTHONPATH=str(ROOT / "detector"))
        times = []
        try:
            for i in range(n):
                af = home / f"custom-mimizuku-1700000000-{i}.alert"
                af.write_text(json.dumps(dict(ALERT, id=f"1700000000.{i}")))
                t0 = time.monotonic()
                subprocess.run([sys.executable, str(script), str(af), "", "", "", str(options), "10", "3",
                                "> /dev/null 2>&1"], env=env, check=False, capture_output=True)
                times.append(time.monotonic() - t0)
        finally:
            release_owner(lock)
            scorer.close()
            queue.close()
        return times
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=5, help="calls per case (default 5, about 2-4 s each)")
    a = ap.parse_args()
    print(f"{'case':<42}{'median s/call':>15}{'alerts/s':>10}")
    for name, owner in (("scorer holds the spool (owner lock)", True), ("no owner lock (the old behaviour)", False)):
        med = statistics.median(calls(a.n, owner))
        print(f"{name:<42}{med:>15.2f}{1 / med:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
