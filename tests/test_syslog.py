"""SyslogSink: escaping of hostile content, RFC 5424/CEF structure, rotation with a fake clock,
UDP/TCP delivery to local servers, and spooling while a destination is down."""
from __future__ import annotations

import calendar
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from mimizuku.outputs import OutputUnavailableError
from mimizuku.outputs.syslog import (
    FACILITIES,
    SD_ID,
    SyslogSink,
    SyslogUnavailableError,
    escape_controls,
    format_cef,
    format_rfc5424,
)

# --- records as docs/records.md defines them -------------------------------------------------

def make_record(i: int, *, anomaly: bool = True, **over) -> dict:
    detector = ("files", "commands", "context")[i % 3]
    score = 0.93 if anomaly else 0.2
    rec = {
        "id": f"1705314225.{i}",
        "timestamp": f"2024-01-15T10:{i % 60:02d}:45.123+0000",
        "agent": {"id": f"{i % 9:03d}", "name": f"web-{i % 9:02d}", "ip": "10.0.0.1"},
        "rule": {"id": "550", "level": 7, "description": "Integrity checksum changed.", "groups": ["syscheck"]},
        "location": "syscheck",
        "detector": detector,
        "score": score,
        "score_pct": round(score * 100),
        "threshold": 0.8,
        "anomaly": anomaly,
        "severity": "high" if anomaly else "none",
        "reasons": ["path never changed before on this host"] if anomaly else [],
        "scores": {detector: score},
        "fields": {"path": f"/etc/app/{i}.conf", "user": "root"},
        "model_version": "2024-01-14.1",
    }
    rec.update(over)
    return rec


HOSTILE_TEXT = [
    "/tmp/evil\nJan 15 10:00:00 web-01 sshd[1]: Accepted password for root from 6.6.6.6",
    "/tmp/cr\rreturn and \r\n crlf",
    '/tmp/sd"] [forged@1 x="y"] \\ back\\slash ]]',
    "/tmp/nul\x00byte and esc \x1b[31mred\x1b[0m and del \x7f",
    "/tmp/unicode\u2028line\u2029para\x85nel and \u202etxt.exe",
    "/tmp/emoji \U0001F600 中文 and # hash #012 literal",
    "<14>1 2024-01-01T00:00:00Z forged mimizuku - - - fake",
]


def hostile_records() -> list:
    out = []
    for k, text in enumerate(HOSTILE_TEXT):
        out.append(make_record(k, fields={"path": text, "command": text, "user": text[:40], "srcip": text[:20]},
                               agent={"id": "001", "name": text[:30], "ip": None},
                               rule={"id": "550\n", "level": 12, "description": text},
                               reasons=[text, "second | reason = x"]))
    return out


# --- a strict RFC 5424 parser (test side) -----------------------------------------------------

HEADER_RE = re.compile(r"<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) ")
PRINTUSASCII = re.compile(r"^[\x21-\x7e]+$")


def parse_5424(line: str) -> dict:
    assert "\n" not in line and "\r" not in line
    m = HEADER_RE.match(line)
    assert m, line[:200]
    pri, ts, host, app, procid, msgid = m.groups()
    assert 0 <= int(pri) <= 191
    for value, limit in ((host, 255), (app, 48), (procid, 128), (msgid, 32)):
        assert PRINTUSASCII.match(value) and len(value) <= limit
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?(Z|[+-]\d\d:\d\d)$", ts), ts
    s, i = line, m.end()
    sd: dict = {}
    if s[i] == "-":
        i += 1
    else:
        while i < len(s) and s[i] == "[":
            j = s.index(" ", i) if " " in s[i:] else len(s)
            k = s.index("]", i)
            sd_id = s[i + 1:min(j, k)]
            i = min(j, k)
            params = {}
            while s[i] == " ":
                eq = s.index("=", i)
                name = s[i + 1:eq]
                assert re.match(r'^[\x21-\x7e]{1,32}$', name) and not set(name) & set('= ]"'), name
                assert s[eq + 1] == '"'
                i, val = eq + 2, []
                while True:
                    c = s[i]
                    if c == "\\" and s[i + 1] in '"\\]':
                        val.append(s[i + 1])
                        i += 2
                    elif c == '"':
                        i += 1
                        break
                    else:
                        assert c != "]", f"unescaped ] in {name}"
                        val.append(c)
                        i += 1
                params[name] = "".join(val)
            assert s[i] == "]", s[i:i + 20]
            i += 1
            sd[sd_id] = params
    msg = s[i + 1:] if i < len(s) else ""
    if i < len(s):
        assert s[i] == " "
    return {"pri": int(pri), "ts": ts, "host": host, "app": app, "procid": procid, "msgid": msgid, "sd": sd,
            "msg": msg}


def unescape_controls(s: str) -> str:
    """Reverse of the #ooo escaping (for text that had no literal '#ddd' sequences)."""
    return re.sub(rb"(#[0-7]{3})+", lambda m: bytes(int(m.group(0)[k + 1:k + 4], 8)
                                                    for k in range(0, len(m.group(0)), 4)),
                  s.encode("utf-8")).decode("utf-8")


# --- formatting ------------------------------------------------------------------------------

def test_rfc5424_fields_and_pri():
    r = make_record(3, severity="critical")
    line = format_rfc5424(r, cluster=-1, hostname="wazuh-manager", facility=FACILITIES["local0"], procid=42)
    p = parse_5424(line)
    assert p["pri"] == 16 * 8 + 2
    assert p["ts"] == "2024-01-15T10:03:45.123Z"
    assert (p["host"], p["app"], p["procid"], p["msgid"]) == ("wazuh-manager", "mimizuku", "42", "anomaly")
    sd = p["sd"][SD_ID]
    assert sd["score"] == "0.93" and sd["detector"] == "files" and sd["agent"] == "web-03"
    assert sd["rule"] == "550" and sd["cluster"] == "-1" and sd["severity"] == "critical"
    assert sd["path"] == "/etc/app/3.conf" and sd["id"] == r["id"]
    assert "path never changed" in p["msg"]
    normal = parse_5424(format_rfc5424(make_record(4, anomaly=False), hostname="h"))
    assert normal["pri"] == 16 * 8 + 6 and normal["msgid"] == "score" and "cluster" not in normal["sd"][SD_ID]
    auth = parse_5424(format_rfc5424(make_record(5, severity="medium"), hostname="h", facility=FACILITIES["authpriv"]))
    assert auth["pri"] == 10 * 8 + 4


def test_header_fields_are_printusascii_and_bounded():
    line = format_rfc5424(make_record(1), hostname="evil host\nname" + "x" * 400, procid="p id\x00")
    p = parse_5424(line)
    assert p["host"].startswith("evil_host_name") and len(p["host"]) == 255
    assert p["procid"] == "p_id_"
    bad_time = parse_5424(format_rfc5424(make_record(1, timestamp="yesterday\n"), hostname="h", now=0.0))
    assert bad_time["ts"] == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize("k", range(len(HOSTILE_TEXT)))
def test_hostile_content_cannot_forge_lines_or_sd(k):
    r = hostile_records()[k]
    line = format_rfc5424(r, cluster=7, hostname="mgr")
    for bad in ("\n", "\r", "\x00", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e"):
        assert bad not in line
    p = parse_5424(line)
    assert list(p["sd"]) == [SD_ID]  # no forged SD element
    sd = p["sd"][SD_ID]
    text = HOSTILE_TEXT[k]
    if "#" not in text:  # our escaping is reversible except for literal '#ooo' (as in rsyslog)
        assert unescape_controls(sd["path"]) == text
        assert unescape_controls(sd["command"]) == text
    assert sd["path"] == escape_controls(text)
    assert sd["rule"] == "550#012" and sd["cluster"] == "7"


def test_escape_controls_known_values():
    assert escape_controls("a\nb") == "a#012b"
    assert escape_controls("tab\tnul\x00") == "tab#011nul#000"
    assert escape_controls("\u2028") == "#342#200#250"
    assert escape_controls("plain ascii / é 😀") == "plain ascii / é 😀"
    assert escape_controls("lone \udc80") == "lone \ufffd"


def split_cef(line: str):
    """(7 header fields, extension dict) with CEF unescaping; asserts the structure."""
    assert line.startswith("CEF:0|")
    parts, cur, i = [], [], 0
    while len(parts) < 7:
        c = line[i]
        if c == "\\" and line[i + 1] in "|\\":
            cur.append(line[i + 1])
            i += 2
            continue
        if c == "|":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    ext_text = line[i:]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", ext_text))
    ext = {}
    for n, m in enumerate(keys):
        # a key starts only after an unescaped '='-free run: check none of our values produced one
        end = keys[n + 1].start() if n + 1 < len(keys) else len(ext_text)
        raw = ext_text[m.end():end]
        val = re.sub(r"\\(.)", lambda mm: {"n": "\n", "r": "\r"}.get(mm.group(1), mm.group(1)), raw)
        ext[m.group(1)] = val
    return parts, ext


def test_cef_escaping_and_fields():
    for r in hostile_records():
        line = format_cef(r, cluster=-1, version="1.2|3")
        assert "\n" not in line and "\r" not in line
        header, ext = split_cef(line)
        assert header[:4] == ["CEF:0", "Mimizuku", "Mimizuku", "1.2|3"]
        assert header[4] == r["detector"] and header[6] == "8"
        assert header[5].endswith(escape_controls(r["rule"]["description"]))
        assert ext["cfp1"] == "0.93" and ext["cn1"] == "-1" and ext["cs2Label"] == "agent"
        assert ext["externalId"] == r["id"]
        # extension values: '=' and '\' escaped, newlines as \n: each value comes back whole
        path = r["fields"]["path"]
        assert "\n" not in line
        if "#" not in path:
            assert unescape_controls(ext["filePath"]) == path.replace("\r\n", "\n")
            assert unescape_controls(ext["msg"]) == "; ".join(r["reasons"]).replace("\r\n", "\n")
        assert "src" not in ext  # srcip here is not an address: it goes to cs5
        assert ext["cs5Label"] == "srcip"
    ok = format_cef(make_record(1, fields={"srcip": "203.0.113.5"}, severity="critical"))
    header, ext = split_cef(ok)
    assert ext["src"] == "203.0.113.5" and header[6] == "10"


# --- the local file ------------------------------------------------------------------------------

class FakeClock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def utc(y, mo, d, h=0, mi=0) -> float:
    return float(calendar.timegm((y, mo, d, h, mi, 0)))


def lines_of(p: Path) -> list:
    return p.read_text(encoding="utf-8").splitlines() if p.exists() else []


def test_file_one_line_per_record_even_when_hostile(tmp_path):
    path = tmp_path / "anomaly.syslog"
    recs = hostile_records() + [make_record(50, anomaly=False)]
    with SyslogSink(path, spool_dir=tmp_path / "spool", hostname="mgr") as sink:
        c = sink.emit(recs)
    assert c["selected"] == len(HOSTILE_TEXT) and c["skipped"] == 1
    raw = path.read_bytes()
    assert raw.count(b"\n") == len(HOSTILE_TEXT) and raw.endswith(b"\n")
    for line, r in zip(lines_of(path), recs):
        assert parse_5424(line)["sd"][SD_ID]["id"] == r["id"]


def test_select_outliers_and_clusters(tmp_path):
    recs = [make_record(0), make_record(1, anomaly=False), make_record(2, anomaly=False)]
    clusters = {recs[1]["id"]: -1, recs[2]["id"]: 4, recs[0]["id"]: 2}
    with SyslogSink(tmp_path / "a.syslog", select="outliers", spool_dir=tmp_path / "s", hostname="h") as sink:
        assert sink.emit(recs, clusters)["selected"] == 2
    got = [parse_5424(ln)["sd"][SD_ID] for ln in lines_of(tmp_path / "a.syslog")]
    assert [(g["id"], g["cluster"]) for g in got] == [(recs[0]["id"], "2"), (recs[1]["id"], "-1")]


def test_daily_rotation_with_fake_clock_and_restarts(tmp_path):
    path = tmp_path / "anomaly.syslog"
    clock = FakeClock(utc(2024, 1, 15, 10))

    def sink():  # a new process each time: nothing carried over but the files
        return SyslogSink(path, daily=True, utc=True, backup_count=3, max_bytes=0, clock=clock,
                          spool_dir=tmp_path / "spool", hostname="h")

    sink().emit([make_record(1)])
    clock.t = utc(2024, 1, 15, 18)  # restart later the same day: append, no rotation
    sink().emit([make_record(2)])
    assert len(lines_of(path)) == 2 and not Path(f"{path}.1").exists()
    clock.t = utc(2024, 1, 16, 0, 30)  # next day: yesterday's file becomes .1
    s = sink()
    s.emit([make_record(3)])
    assert [parse_5424(x)["sd"][SD_ID]["id"] for x in lines_of(Path(f"{path}.1"))] == \
        ["1705314225.1", "1705314225.2"]
    assert len(lines_of(path)) == 1
    s.emit([make_record(4)])  # same day, same process
    assert len(lines_of(path)) == 2
    for day in range(17, 23):  # a week later only backup_count old files remain
        clock.t = utc(2024, 1, day, 9)
        sink().emit([make_record(day)])
    assert sorted(p.name for p in tmp_path.glob("anomaly.syslog*") if not p.name.endswith(".lock")) == \
        ["anomaly.syslog", "anomaly.syslog.1", "anomaly.syslog.2", "anomaly.syslog.3"]
    ids = [parse_5424(x)["sd"][SD_ID]["id"] for n in (3, 2, 1) for x in lines_of(Path(f"{path}.{n}"))]
    assert ids == ["1705314225.19", "1705314225.20", "1705314225.21"]
    assert [parse_5424(x)["sd"][SD_ID]["id"] for x in lines_of(path)] == ["1705314225.22"]


def test_size_rotation_never_splits_lines(tmp_path):
    path = tmp_path / "anomaly.syslog"
    clock = FakeClock(utc(2024, 1, 15, 10))
    recs = [make_record(i) for i in range(40)]
    with SyslogSink(path, daily=False, max_bytes=2000, backup_count=50, clock=clock,
                    spool_dir=tmp_path / "spool", hostname="h") as sink:
        for k in range(0, 40, 7):
            sink.emit(recs[k:k + 7])
    files = [path] + [Path(f"{path}.{n}") for n in range(1, 51) if Path(f"{path}.{n}").exists()]
    assert len(files) > 3
    for f in files:
        assert f.stat().st_size <= 2000
        assert f.read_bytes().endswith(b"\n")
    ids = [parse_5424(x)["sd"][SD_ID]["id"] for f in reversed(files) for x in lines_of(f)]
    assert ids == [r["id"] for r in recs]  # oldest file first, nothing lost or repeated


def test_file_unwritable_is_spooled_then_written(tmp_path):
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log directory should be")
    path = blocker / "anomaly.syslog"
    with SyslogSink(path, spool_dir=tmp_path / "spool", hostname="h") as sink:
        with pytest.raises(SyslogUnavailableError) as ei:
            sink.emit([make_record(1), make_record(2)])
        assert isinstance(ei.value, OutputUnavailableError) and ei.value.exit_code == 75
        with pytest.raises(SyslogUnavailableError):
            sink.emit([make_record(3)])
        assert sink.pending() == {f"file:{path}": 3}
        blocker.unlink()
        assert sink.flush_spool() == 3
        sink.emit([make_record(4)])
    assert [parse_5424(x)["sd"][SD_ID]["id"] for x in lines_of(path)] == [f"1705314225.{i}" for i in (1, 2, 3, 4)]


# --- remote servers on loopback ----------------------------------------------------------------

class UdpServer:
    def __init__(self, port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.datagrams: list = []

    def collect(self, n: int, deadline: float = 5.0) -> list:
        end = time.monotonic() + deadline
        while len(self.datagrams) < n and time.monotonic() < end:
            try:
                self.datagrams.append(self.sock.recv(65535))
            except socket.timeout:
                pass
        return self.datagrams

    def close(self):
        self.sock.close()


class TcpServer:
    """Reads RFC 6587 octet-counted frames; can drop each connection after one read."""

    def __init__(self, port: int = 0, drop_after_read: bool = False):
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", port))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.drop = drop_after_read
        self.messages: list = []
        self.lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c):
        buf = b""
        c.settimeout(0.3 if self.drop else 5)
        try:
            while True:
                try:
                    data = c.recv(65536)
                except socket.timeout:
                    if self.drop and buf == b"":
                        break
                    continue
                if not data:
                    break
                buf += data
                while True:
                    sp = buf.find(b" ")
                    if sp < 0:
                        break
                    n = int(buf[:sp])
                    if len(buf) < sp + 1 + n:
                        break
                    with self.lock:
                        self.messages.append(buf[sp + 1:sp + 1 + n].decode("utf-8"))
                    buf = buf[sp + 1 + n:]
        finally:
            c.close()

    def wait(self, n: int, deadline: float = 5.0) -> list:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            with self.lock:
                if len(self.messages) >= n:
                    break
            time.sleep(0.02)
        return list(self.messages)

    def close(self):
        try:
            self.ls.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.ls.close()


def closed_port(kind=socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ids_of(lines) -> list:
    return [parse_5424(x if isinstance(x, str) else x.decode("utf-8"))["sd"][SD_ID]["id"] for x in lines]


def test_udp_one_datagram_per_message_size_capped(tmp_path):
    srv = UdpServer()
    try:
        recs = hostile_records()[:3] + [make_record(9, fields={"command": "A" * 100_000, "path": "/x" * 5000})]
        with SyslogSink(None, remote=f"udp://127.0.0.1:{srv.port}", udp_max_bytes=1024,
                        spool_dir=tmp_path / "spool", hostname="h") as sink:
            sink.emit(recs)
        got = srv.collect(4)
        assert len(got) == 4 and all(len(d) <= 1024 for d in got)
        assert ids_of(got) == [r["id"] for r in recs]  # each one still parses, SD intact
        big = parse_5424(got[3].decode())["sd"][SD_ID]
        assert big["command"].startswith("AAAA") and "…[+" in big["command"]
    finally:
        srv.close()


def test_udp_server_down_then_up_nothing_lost(tmp_path):
    port = closed_port(socket.SOCK_DGRAM)
    recs = [make_record(i) for i in range(6)]
    with SyslogSink(None, remote=f"udp://127.0.0.1:{port}", spool_dir=tmp_path / "spool", hostname="h") as sink:
        with pytest.raises(SyslogUnavailableError, match="udp:127.0.0.1"):
            sink.emit(recs[:3])
        with pytest.raises(SyslogUnavailableError):
            sink.emit(recs[3:4])
        assert sink.pending() == {f"udp:127.0.0.1:{port}": 4}
        srv = UdpServer(port)
        try:
            c = sink.emit(recs[4:])
            assert c["resent"] == 4
            assert ids_of(srv.collect(6)) == [r["id"] for r in recs]
        finally:
            srv.close()


def test_tcp_server_down_then_up_in_order(tmp_path):
    port = closed_port()
    recs = [make_record(i) for i in range(8)]
    with SyslogSink(tmp_path / "anomaly.syslog", remote=f"tcp://127.0.0.1:{port}", timeout=2,
                    spool_dir=tmp_path / "spool", hostname="h") as sink:
        with pytest.raises(SyslogUnavailableError) as ei:
            sink.emit(recs[:3])
        assert ei.value.counts["spooled"] == 3
        with pytest.raises(SyslogUnavailableError):
            sink.emit(recs[3:5])
        # the file destination was not held back by the dead server
        assert len(lines_of(tmp_path / "anomaly.syslog")) == 5
        srv = TcpServer(port)
        try:
            sink.emit(recs[5:])
            assert ids_of(srv.wait(8)) == [r["id"] for r in recs]
            assert sink.pending()[f"tcp:127.0.0.1:{port}"] == 0
        finally:
            srv.close()


def test_tcp_reconnects_when_server_closed_the_connection(tmp_path):
    srv = TcpServer(drop_after_read=True)
    try:
        recs = [make_record(i) for i in range(4)]
        with SyslogSink(None, remote=f"tcp://127.0.0.1:{srv.port}", spool_dir=tmp_path / "spool",
                        hostname="h") as sink:
            sink.emit(recs[:2])
            srv.wait(2)
            time.sleep(0.5)  # the server has closed its side by now
            sink.emit(recs[2:])
        assert ids_of(srv.wait(4)) == [r["id"] for r in recs]
    finally:
        srv.close()


def test_cef_over_syslog_file(tmp_path):
    with SyslogSink(tmp_path / "cef.log", format="cef", spool_dir=tmp_path / "s", hostname="h") as sink:
        sink.emit(hostile_records())
    lines = lines_of(tmp_path / "cef.log")
    assert len(lines) == len(HOSTILE_TEXT)
    for ln in lines:
        p = parse_5424(ln)
        assert p["sd"] == {} and p["msg"].startswith("CEF:0|Mimizuku|Mimizuku|")
        split_cef(p["msg"])


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError):
        SyslogSink(None)
    with pytest.raises(ValueError):
        SyslogSink("x.log", facility="nope")
    with pytest.raises(ValueError):
        SyslogSink(None, remote="http://example.invalid:514")
    with pytest.raises(ValueError):
        SyslogSink("x.log", format="json")
