"""Our syslog output against a REAL rsyslog (Debian's package, its defaults: maxMessageSize 8,096
bytes, imtcp splitting what is longer into a new record), not only against our own parser.

The receiver is the one `.ci/rsyslog.sh` starts (``MIMIZUKU_TEST_RSYSLOG_*`` in the environment, as
`.ci/run` sets them), or else one this module starts from the same script when ``rsyslogd`` is
installed (a developer machine); without either the tests skip, saying why. rsyslog writes every
record it receives as one JSON line (its ``%jsonmesg%``: rawmsg, hostname, structured-data...).
Each test sends under its own hostname and reads back only its own records.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, List

import pytest
from test_syslog import SD_ID, closed_port, hostile_records, make_record, parse_5424

from mimizuku.outputs.syslog import SyslogSink, format_rfc5424

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / ".ci" / "rsyslog.sh"
ENV = ("MIMIZUKU_TEST_RSYSLOG_UDP_PORT", "MIMIZUKU_TEST_RSYSLOG_TCP_PORT", "MIMIZUKU_TEST_RSYSLOG_OUTPUT")


class Receiver:
    def __init__(self, udp_port: int, tcp_port: int, output: Path):
        self.udp_port, self.tcp_port, self.output = udp_port, tcp_port, output

    def records(self, keep: Callable[[dict], bool]) -> List[dict]:
        out = []
        for raw in self.output.read_bytes().splitlines():
            try:
                rec = json.loads(raw.decode("utf-8", "replace"))
            except ValueError:
                continue
            if keep(rec):
                out.append(rec)
        return out

    def wait(self, keep: Callable[[dict], bool], n: int, deadline: float = 10.0) -> List[dict]:
        """The records ``keep`` selects, once there are at least ``n`` (or at the deadline)."""
        end = time.monotonic() + deadline
        while True:
            got = self.records(keep)
            if len(got) >= n or time.monotonic() > end:
                return got
            time.sleep(0.05)


def _rsyslogd() -> str:
    return shutil.which("rsyslogd") or next(
        (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.access(p, os.X_OK)), "")


@pytest.fixture(scope="module")
def rsyslog(tmp_path_factory):
    if all(os.environ.get(k) for k in ENV):
        yield Receiver(int(os.environ[ENV[0]]), int(os.environ[ENV[1]]), Path(os.environ[ENV[2]]))
        return
    if not _rsyslogd():
        pytest.skip("no rsyslog: MIMIZUKU_TEST_RSYSLOG_* are not set (.ci/rsyslog.sh sets them) and "
                    "rsyslogd is not installed (apt-get install rsyslog)")
    base = tmp_path_factory.mktemp("rsyslog")
    env = dict(os.environ, MIMIZUKU_RSYSLOG_DIR=str(base), MIMIZUKU_RSYSLOG_NO_INSTALL="1",
               MIMIZUKU_RSYSLOG_UDP_PORT=str(closed_port(socket.SOCK_DGRAM)),
               MIMIZUKU_RSYSLOG_TCP_PORT=str(closed_port(socket.SOCK_STREAM)))
    started = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    try:
        if started.returncode != 0:
            pytest.skip(f"rsyslogd did not start: {started.stderr.strip()[-300:]}")
        exports = dict(line.split(" ", 1)[1].split("=", 1) for line in started.stdout.splitlines()
                       if line.startswith("export "))
        values = [exports[k].strip("'") for k in ENV]
        yield Receiver(int(values[0]), int(values[1]), Path(values[2]))
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, timeout=30)


def _host() -> str:
    return "mz" + uuid.uuid4().hex[:12]


def _from(host: str) -> Callable[[dict], bool]:
    return lambda r: r.get("hostname") == host


# --- the audit's attack ----------------------------------------------------------------------

# rsyslog's imtcp keeps 8,096 bytes, drops the byte that overflowed and makes a new record of the
# rest: a record placed at byte 8,097 of a longer message became a genuine-looking record
CUT = 8097


def crafted_record(host: str, token: str) -> dict:
    """A record whose path puts a forged record at byte CUT of the message as the old, uncapped
    formatter wrote it (the path appears escaped in the SD and verbatim in the MSG)."""
    forged = (f'<10>1 2024-01-15T10:00:00Z forgedhost mimizuku 1 anomaly [mimizuku@32473 id="{token}" '
              f'severity="critical" path="/etc/shadow"] critical files anomaly on forgedhost')
    for k in range(600, 1100):  # '中' adds 6 bytes before the MSG's copy, '"' 3, 'a' 2
        for quotes in range(2):
            for a in range(3):
                rec = make_record(1, fields={"path": "/" + "中" * k + '"' * quotes + "a" * a + forged,
                                             "command": "中" * 1000, "user": "root"})
                old = format_rfc5424(rec, hostname=host, max_bytes=None).encode("utf-8")
                if old.find(forged.encode("utf-8")) == CUT:
                    return rec
    raise AssertionError("no padding puts the forged record at the cut")


@pytest.mark.parametrize("framing", ["octet-counting", "lf"])
def test_forged_record_at_the_old_cut_stays_inside_one_record(rsyslog, tmp_path, framing):
    host, token = _host(), "forged-" + uuid.uuid4().hex[:8]
    rec = crafted_record(host, token)
    sentinel = make_record(2)
    with SyslogSink(None, remote=f"tcp://127.0.0.1:{rsyslog.tcp_port}", tcp_framing=framing, hostname=host,
                    spool_dir=tmp_path / "spool") as sink:
        assert sink.emit([rec, sentinel])["truncated"] == 1
    ours = rsyslog.wait(_from(host), 2)
    # the sentinel came after on the same connection: anything forged would be in by now
    assert [r["structured-data"].split('"')[1] for r in ours] == [rec["id"], sentinel["id"]]
    assert rsyslog.records(lambda r: token in r.get("rawmsg", "") and r.get("hostname") != host) == []
    got = ours[0]
    assert len(got["rawmsg"].encode("utf-8")) <= 8096
    assert (got["protocol-version"], got["app-name"], got["msgid"]) == ("1", "mimizuku", "anomaly")
    sd = parse_5424(got["rawmsg"])["sd"]
    assert list(sd) == [SD_ID] and "msg" in sd[SD_ID]["truncated"].split(",")
    assert got["structured-data"].startswith(f'[{SD_ID} id="{rec["id"]}"')


# --- hostile values arrive intact --------------------------------------------------------------

def _hostile_and_long() -> list:
    recs = hostile_records()
    recs.append(make_record(30, fields={"path": "/" + "\U0001F600" * 3000, "command": '"]\\' * 2000}))
    recs.append(make_record(31, fields={"path": "/x\n" * 3000}, reasons=["中" * 5000]))
    return recs


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_hostile_values_arrive_intact_and_parse(rsyslog, tmp_path, transport):
    host = _host()
    recs = _hostile_and_long()
    port = rsyslog.tcp_port if transport == "tcp" else rsyslog.udp_port
    with SyslogSink(None, remote=f"{transport}://127.0.0.1:{port}", hostname=host,
                    spool_dir=tmp_path / "spool") as sink:
        sent = [sink.format_record(r, max_bytes=sink.destinations[0].message_bytes) for r in recs]
        sink.emit(recs)
    got = rsyslog.wait(_from(host), len(recs))
    assert len(got) == len(recs)
    by_id = {parse_5424(r["rawmsg"])["sd"][SD_ID]["id"]: r for r in got}
    for rec, line in zip(recs, sent):
        r = by_id[rec["id"]]
        assert r["rawmsg"] == line  # byte for byte: nothing cut, nothing escaped again by rsyslog
        assert (r["protocol-version"], r["app-name"], r["hostname"]) == ("1", "mimizuku", host)
        rest, msg = line.split(" ", 6)[6], parse_5424(line)["msg"]
        assert r["structured-data"] == rest[:len(rest) - len(msg) - 1]  # rsyslog's SD parse is ours
        assert list(parse_5424(r["rawmsg"])["sd"]) == [SD_ID]


def test_n_messages_over_tcp_arrive_as_n_records(rsyslog, tmp_path):
    host = _host()
    recs = [make_record(i, fields={"path": f"/srv/{i}/" + "中" * (i * 7 % 3000), "command": "é" * 2000})
            for i in range(300)]
    with SyslogSink(None, remote=f"tcp://127.0.0.1:{rsyslog.tcp_port}", hostname=host,
                    spool_dir=tmp_path / "spool") as sink:
        counts = sink.emit(recs)
    assert counts["sent_tcp"] == 300
    got = rsyslog.wait(_from(host), 300)
    assert sorted(parse_5424(r["rawmsg"])["sd"][SD_ID]["id"] for r in got) == sorted(r["id"] for r in recs)
    assert all(len(r["rawmsg"].encode("utf-8")) <= 8096 for r in got)
