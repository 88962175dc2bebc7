#!/usr/bin/env python3
"""UDP syslog loss at a real rsyslog: one burst of N records, unpaced and paced.

    python bench/syslog_udp.py [--records 2402] [--rates 0,2000,5000] [--path-bytes 600]

Sends N scored records (the audit's 2,402 by default, each with a path of about --path-bytes
bytes) through ``SyslogSink`` over UDP to an rsyslogd on loopback, once per rate (0: unpaced),
and counts the records rsyslog wrote. Prints, per rate: datagrams sent, records received, the
share lost and the seconds the burst took. The receiver is the one ``eval "$(bash
.ci/rsyslog.sh)"`` started (``$MIMIZUKU_TEST_RSYSLOG_*``) or one this script starts from that
script in a temporary directory. Losses depend on the machine's load and on the receiver's
socket buffer (``net.core.rmem_default``; imudp's ``rcvbufSize``), so the figures belong here,
not in a test.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "detector"))

from mimizuku.outputs.syslog import SyslogSink  # noqa: E402

ENV = ("MIMIZUKU_TEST_RSYSLOG_UDP_PORT", "MIMIZUKU_TEST_RSYSLOG_OUTPUT")


def _free_port(kind: int) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _record(i: int, path_bytes: int) -> dict:
    return {"id": f"1705314225.{i}", "timestamp": "2024-01-15T10:00:00.000+0000", "detector": "files",
            "agent": {"id": "001", "name": f"web-{i % 50:02d}"}, "rule": {"id": "550", "level": 7},
            "score": 0.93, "anomaly": True, "severity": "high", "reasons": ["path never changed before"],
            "fields": {"path": f"/srv/app/{i}/" + "x" * max(0, path_bytes - 20), "user": "root"}}


def _count(output: Path, host: str) -> int:
    n = 0
    for raw in output.read_bytes().splitlines():
        if host.encode() in raw:
            try:
                n += json.loads(raw.decode("utf-8", "replace")).get("hostname") == host
            except ValueError:
                pass
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=2402)
    ap.add_argument("--rates", default="0,2000,5000", help="datagrams per second, comma list (0: unpaced)")
    ap.add_argument("--path-bytes", type=int, default=600)
    a = ap.parse_args()
    started = None
    if all(os.environ.get(k) for k in ENV):
        port, output = int(os.environ[ENV[0]]), Path(os.environ[ENV[1]])
    else:
        base = tempfile.mkdtemp(prefix="mimizuku-bench-rsyslog-")
        env = dict(os.environ, MIMIZUKU_RSYSLOG_DIR=base, MIMIZUKU_RSYSLOG_NO_INSTALL="1",
                   MIMIZUKU_RSYSLOG_UDP_PORT=str(_free_port(socket.SOCK_DGRAM)),
                   MIMIZUKU_RSYSLOG_TCP_PORT=str(_free_port(socket.SOCK_STREAM)))
        p = subprocess.run(["bash", str(ROOT / ".ci" / "rsyslog.sh")], env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"no rsyslog: {p.stderr.strip()[-300:]}", file=sys.stderr)
            return 1
        started = env
        port, output = int(env["MIMIZUKU_RSYSLOG_UDP_PORT"]), Path(base) / "received.jsonl"
    try:
        records = [_record(i, a.path_bytes) for i in range(a.records)]
        print(f"{a.records:,} records of ~{a.path_bytes} path bytes over UDP to rsyslog 127.0.0.1:{port}")
        print(f"{'rate/s':>8} {'sent':>7} {'received':>9} {'lost':>7} {'seconds':>8}")
        for rate in (float(x) for x in a.rates.split(",")):
            host = "bench" + uuid.uuid4().hex[:10]
            with tempfile.TemporaryDirectory() as spool, \
                    SyslogSink(None, remote=f"udp://127.0.0.1:{port}", hostname=host, udp_rate=rate,
                               spool_dir=spool) as sink:
                t0 = time.monotonic()
                sent = sink.emit(records)["sent_udp"]
                took = time.monotonic() - t0
            end = time.monotonic() + 5
            got = 0
            while time.monotonic() < end:  # until every record is in, or nothing more comes
                time.sleep(0.5)
                now = _count(output, host)
                if now == got or now >= sent:
                    got = now
                    break
                got = now
            label = "unpaced" if rate <= 0 else f"{rate:g}"
            print(f"{label:>8} {sent:>7,} {got:>9,} {100 * (sent - got) / max(1, sent):>6.1f}% {took:>8.2f}")
    finally:
        if started is not None:
            subprocess.run(["bash", str(ROOT / ".ci" / "rsyslog.sh"), "stop"], env=started, capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
