"""Syslog messages capped in BYTES (issue 17 item 15): for any hostile value every message is at
most the cap, valid UTF-8, exactly one well-formed RFC 5424 record (or CEF line) with its
structured data intact, and a cut is named in the record. Also: every transport applies the cap
(file, TCP, UDP), TCP framing, and the UDP pacing with an injected clock."""
from __future__ import annotations

import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_syslog import SD_ID, TcpServer, UdpServer, make_record, parse_5424, split_cef

from mimizuku.outputs.syslog import (
    DEFAULT_MAX_BYTES,
    SyslogSink,
    TcpDestination,
    TokenBucket,
    UdpDestination,
    escape_controls,
    format_cef,
    format_rfc5424,
)

# pieces an attacker would use: multi-byte characters of 2, 3 and 4 bytes, the SD's specials,
# line breaks, rsyslog's own escape look-alike, CEF's specials, a forged record
PIECES = ["é", "中", "\U0001F600", "]", '"', "\\", "\n", "\r\n", "\x00", "\u2028", "#012", "|", "=",
          '<10>1 2024-01-15T10:00:00Z forgedhost mimizuku - anomaly [mimizuku@32473 severity="critical"] x',
          "a", "/", " "]

hostile = st.one_of(
    st.text(max_size=60),
    st.lists(st.sampled_from(PIECES), max_size=400).map("".join),
    st.tuples(st.sampled_from(PIECES), st.integers(0, 3000)).map(lambda t: t[0] * t[1]),
)


def hostile_record(values) -> dict:
    path, command, user, srcip, agent, rule_id, desc, reason, rid = values
    return make_record(1, id=rid or "1705314225.1", fields={"path": path, "command": command, "user": user,
                                                           "srcip": srcip},
                       agent={"id": "001", "name": agent}, rule={"id": rule_id, "level": 12, "description": desc},
                       reasons=[reason, "second"], severity="critical")


records = st.tuples(*[hostile] * 9).map(hostile_record)

CUT_RE = re.compile(r"…\[\+(\d+)\]$")


def assert_value_intact(got: str, raw, escape) -> bool:
    """``got`` is ``raw`` escaped, or a prefix of it cut on a character with its ``…[+N]`` marker.
    Returns True when it was cut."""
    raw = "" if raw is None else str(raw)
    raw = raw.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if got == escape(raw):
        return False
    m = CUT_RE.search(got)
    assert m, (got[:80], raw[:80])
    dropped = int(m.group(1))
    assert 0 < dropped <= len(raw)
    assert got[:m.start()] == escape(raw[:len(raw) - dropped])
    return True


SD_SOURCES = {
    "path": lambda r: r["fields"].get("path"), "command": lambda r: r["fields"].get("command"),
    "user": lambda r: r["fields"].get("user"), "srcip": lambda r: r["fields"].get("srcip"),
    "agent": lambda r: r["agent"]["name"], "rule": lambda r: r["rule"]["id"], "id": lambda r: r["id"],
}


def check_rfc5424(line: str, rec: dict, cap: int) -> dict:
    data = line.encode("utf-8")
    assert len(data) <= cap, (len(data), cap)
    assert data.decode("utf-8") == line
    p = parse_5424(line)  # strict: one header, SD elements well formed, no line break anywhere
    assert list(p["sd"]) == [SD_ID]  # exactly one SD element: ours; nothing forged
    sd = p["sd"][SD_ID]
    cut_names = set(sd.get("truncated", "").split(",")) - {""}
    assert sd["severity"] == rec["severity"] and sd["score"] == "0.93"
    for name, source in SD_SOURCES.items():
        raw = source(rec)
        if raw in (None, ""):
            assert name not in sd
            continue
        was_cut = assert_value_intact(sd[name], raw, escape_controls)
        if was_cut and len(str(raw)) <= 1024:  # cut by the byte cap, not the character cap
            assert name in cut_names, (name, cut_names)
    assert cut_names <= set(sd) | {"msg"}
    return p


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=records, cap=st.integers(1024, 9000))
def test_rfc5424_any_hostile_value_fits_the_byte_cap_as_one_record(rec, cap):
    line = format_rfc5424(rec, hostname="mgr", procid=7, max_bytes=cap)
    check_rfc5424(line, rec, cap)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rec=records, cap=st.integers(1024, 9000))
def test_cef_any_hostile_value_fits_the_byte_cap(rec, cap):
    line = format_cef(rec, cluster=-1, max_bytes=cap, version="1.0")
    data = line.encode("utf-8")
    assert len(data) <= cap and "\n" not in line and "\r" not in line
    header, ext = split_cef(line)
    assert header[:4] == ["CEF:0", "Mimizuku", "Mimizuku", "1.0"] and header[6] == "10"
    assert ext["cfp1"] == "0.93" and ext["cn1"] == "-1" and ext["cfp1Label"] == "score"
    cut = set(ext.get("cs6", "").split(",")) - {""}
    assert not cut or ext["cs6Label"] == "truncated"
    # CEF's escapes undone by split_cef: each value is its raw text (CRLF folded to LF) with
    # other controls as #ooo, or a prefix of it cut on a character with its marker
    for key, raw in (("filePath", rec["fields"]["path"]), ("cs3", rec["fields"]["command"]),
                     ("suser", rec["fields"]["user"]), ("msg", "; ".join(rec["reasons"]))):
        if not raw:
            assert key not in ext
            continue
        raw = raw.replace("\r\n", "\n")
        if assert_value_intact(ext[key], raw, cef_text) and len(raw) <= 1024:
            assert key in cut, (key, cut)


def cef_text(s: str) -> str:
    return "".join(c if c in "\n\r" else escape_controls(c) for c in s)


def test_default_cap_is_rsyslogs_8096_bytes_not_characters():
    """The audit's record: ~20 KB over TCP before. 4-byte characters in every field."""
    emoji = "\U0001F600"
    rec = make_record(1, fields={"path": "/" + emoji * 5000, "command": emoji * 5000, "user": emoji * 900,
                                 "srcip": emoji * 900}, reasons=[emoji * 5000])
    line = format_rfc5424(rec, hostname="mgr")
    assert DEFAULT_MAX_BYTES == 8096
    assert len(line.encode("utf-8")) <= 8096
    sd = check_rfc5424(line, rec, 8096)["sd"][SD_ID]
    assert set(sd["truncated"].split(",")) >= {"msg", "path", "command"}
    # the cut is on whole characters: no U+FFFD, no half of a 4-byte sequence
    assert "\ufffd" not in line and sd["path"].startswith("/" + emoji * 10)
    cef = format_cef(rec)
    assert len(cef.encode("utf-8")) <= 8096 and "\ufffd" not in cef


def test_worst_case_header_still_leaves_a_well_formed_record_at_the_minimum_cap():
    rec = make_record(1, fields={k: '"]\\' * 3000 for k in ("path", "command", "user", "srcip")},
                      agent={"id": "中" * 2000, "name": "中" * 2000}, model_version="é" * 2000,
                      rule={"id": "]" * 2000, "level": "9" * 2000, "description": "x"}, detector="中" * 2000,
                      id="\\" * 3000, reasons=["中" * 9000])
    line = format_rfc5424(rec, hostname="h" * 400, procid="p" * 400, max_bytes=1024)
    assert len(line.encode("utf-8")) <= 1024
    p = parse_5424(line)
    assert len(p["host"]) == 255 and p["sd"][SD_ID]["truncated"]
    cef = format_cef(rec, max_bytes=1024)
    assert len(cef.encode("utf-8")) <= 1024
    split_cef(cef)


def test_sink_caps_every_transport_in_bytes(tmp_path):
    """File, TCP and UDP: each message at most the cap (UDP: also at most udp_max_bytes)."""
    tcp, udp = TcpServer(), UdpServer()
    rec = make_record(1, fields={"path": "/" + "中" * 3000, "command": "é" * 3000}, reasons=["中" * 4000])
    try:
        for remote, got in ((f"tcp://127.0.0.1:{tcp.port}", lambda: tcp.wait(1)),
                            (f"udp://127.0.0.1:{udp.port}", lambda: udp.collect(1))):
            with SyslogSink(tmp_path / "a.syslog", remote=remote, spool_dir=tmp_path / "spool",
                            hostname="mgr", max_message_bytes=4000, udp_max_bytes=3000) as sink:
                counts = sink.emit([rec])
            assert counts["truncated"] == 1
            cap = 3000 if remote.startswith("udp") else 4000
            msg = got()[0]
            msg = msg if isinstance(msg, bytes) else msg.encode("utf-8")
            assert cap - 40 < len(msg) <= cap  # cut to the cap, not far below it
            check_rfc5424(msg.decode("utf-8"), rec, cap)
        for line in (tmp_path / "a.syslog").read_bytes().splitlines():
            assert len(line) <= 4000
            check_rfc5424(line.decode("utf-8"), rec, 4000)
    finally:
        tcp.close()
        udp.close()


def test_destinations_cut_an_oversized_spooled_line_on_a_character():
    """A line spooled under a larger cap is cut by the destination itself: never sent whole."""
    tcp = TcpDestination("127.0.0.1", 9, message_bytes=1024)
    frame = tcp._frame("<14>1 - - - - - - " + "中" * 1000)
    length, _, body = frame.partition(b" ")
    assert int(length) == len(body) <= 1024 and body.decode("utf-8").endswith("中")
    lf = TcpDestination("127.0.0.1", 9, framing="lf")._frame("a\nb")
    assert lf == b"a#012b\n"


def test_sink_refuses_a_cap_below_1024():
    with pytest.raises(ValueError, match="1024"):
        SyslogSink("x.log", max_message_bytes=500)
    with pytest.raises(ValueError, match="udp_max_bytes"):
        SyslogSink(None, remote="udp://127.0.0.1:514", udp_max_bytes=100)
    with pytest.raises(ValueError, match="udp_rate"):
        SyslogSink(None, remote="udp://127.0.0.1:514", udp_rate=-1)


# --- UDP pacing, deterministic ---------------------------------------------------------------

class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_token_bucket_paces_a_burst_to_the_rate():
    t = FakeTime()
    bucket = TokenBucket(2000, 40, clock=t.clock, sleep=t.sleep)
    stamps = []
    for _ in range(2402):
        bucket.take()
        stamps.append(t.now)
    # the first 40 go at once, then one every 1/2000 s: (2402 - 40) / 2000 = 1.181 s
    assert stamps[39] == 1000.0
    assert stamps[-1] - 1000.0 == pytest.approx((2402 - 40) / 2000, rel=1e-6)
    assert stamps[40] > 1000.0  # the 41st waited
    # never more than burst + rate x T in any window of T = 1 s: the 2,041st after any one is >= 1 s later
    assert all(stamps[i + 2040] - stamps[i] >= 1.0 - 1e-9 for i in range(len(stamps) - 2040))
    assert bucket.slept == pytest.approx(sum(t.sleeps))


def test_token_bucket_refills_while_idle_and_unpaced_never_sleeps():
    t = FakeTime()
    bucket = TokenBucket(100, 5, clock=t.clock, sleep=t.sleep)
    for _ in range(5):
        bucket.take()
    assert t.sleeps == []
    t.now += 10  # idle: the bucket is full again, but never above its burst
    for _ in range(5):
        bucket.take()
    assert t.sleeps == []
    bucket.take()
    assert t.sleeps == [pytest.approx(0.01)]
    free = TokenBucket(0, clock=t.clock, sleep=t.sleep)
    for _ in range(10_000):
        free.take()
    assert len(t.sleeps) == 1


def test_udp_destination_sends_through_the_bucket():
    t = FakeTime()
    srv = UdpServer()
    try:
        dest = UdpDestination("127.0.0.1", srv.port, rate=1000, burst=10, clock=t.clock, sleep=t.sleep)
        dest.send([f"<14>1 - h a - - - {i}" for i in range(110)])
        dest.close()
        assert len(srv.collect(110)) == 110
        assert t.now - 1000.0 == pytest.approx(0.1)  # 100 paced datagrams at 1,000/s
    finally:
        srv.close()


def test_emit_counts_udp_as_sent_never_delivered(tmp_path):
    srv = UdpServer()
    try:
        with SyslogSink(None, remote=f"udp://127.0.0.1:{srv.port}", spool_dir=tmp_path / "s",
                        hostname="h") as sink:
            counts = sink.emit([make_record(i) for i in range(5)])
        assert counts["sent_udp"] == 5 and "delivered" not in " ".join(counts)
        assert len(srv.collect(5)) == 5
    finally:
        srv.close()


def test_closed_udp_port_is_still_reported(tmp_path):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    from mimizuku.outputs.syslog import SyslogUnavailableError

    with SyslogSink(None, remote=f"udp://127.0.0.1:{port}", spool_dir=tmp_path / "s", hostname="h") as sink:
        with pytest.raises(SyslogUnavailableError) as ei:
            sink.emit([make_record(i) for i in range(3)])
    assert ei.value.counts["spooled"] == 3


# --- the settings, the nightly delivery and its summary --------------------------------------

def _retrain_config(*argv):
    import argparse

    from mimizuku.nightly.cli import add_parser
    from mimizuku.nightly.config import RetrainConfig

    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    return RetrainConfig.from_args(ap.parse_args(["retrain", *argv]))


def test_retrain_syslog_options():
    c = _retrain_config()
    assert (c.syslog_format, c.syslog_max_bytes, c.syslog_udp_rate) == ("rfc5424", 8096, 2000.0)
    c = _retrain_config("--syslog-format", "cef", "--syslog-max-bytes", "4000", "--syslog-udp-rate", "0")
    assert (c.syslog_format, c.syslog_max_bytes, c.syslog_udp_rate) == ("cef", 4000, 0.0)
    with pytest.raises(ValueError, match="--syslog-max-bytes must be a whole number of bytes >= 1024"):
        _retrain_config("--syslog-max-bytes", "100")
    with pytest.raises(ValueError, match="--syslog-udp-rate"):
        _retrain_config("--syslog-udp-rate", "-5")
    with pytest.raises(SystemExit):
        _retrain_config("--syslog-format", "json")


def test_nightly_delivery_passes_format_cap_and_rate(tmp_path):
    from mimizuku.nightly.day_analysis import deliver

    srv = UdpServer()
    recs = [make_record(i, fields={"path": "/" + "中" * 3000}) for i in range(3)]
    try:
        out = deliver(recs, {}, sql_url=None, spool_root=tmp_path / "spool", syslog_file=tmp_path / "a.syslog",
                      syslog_remote=f"udp://127.0.0.1:{srv.port}", syslog_format="cef", syslog_max_bytes=1500,
                      syslog_udp_rate=0)
        assert not out.warnings
        assert out.counts["syslog"]["sent_udp"] == 3 and out.counts["syslog"]["truncated"] == 3
        assert len(srv.collect(3)) == 3 and all(len(d) <= 1500 for d in srv.datagrams)
    finally:
        srv.close()
    lines = (tmp_path / "a.syslog").read_bytes().splitlines()
    assert len(lines) == 3
    for ln in lines:
        assert len(ln) <= 1500
        p = parse_5424(ln.decode("utf-8"))
        header, ext = split_cef(p["msg"])
        assert ext["cs6Label"] == "truncated" and "filePath" in ext["cs6"].split(",")


def test_run_summary_says_udp_datagrams_were_sent_not_delivered():
    from mimizuku.nightly.cli import _human

    summary = {"mimizuku": {"status": "ok", "version": "v1", "durations_ms": {"total": 1}, "exit_code": 0,
                            "syslog_file": "/var/ossec/logs/mimizuku/anomaly.syslog",
                            "counts": {"syslog": {"selected": 2402, "sent_file": 2402, "sent_udp": 2402,
                                                  "truncated": 3, "resent": 0, "spooled": 0}}}}
    text = _human(summary)
    assert "2,402 lines to /var/ossec/logs/mimizuku/anomaly.syslog" in text
    assert "sent 2,402 datagrams (UDP: delivery not confirmed)" in text
    assert "3 cut to the byte cap" in text
    assert "delivered" not in text


def test_cef_escapes_known_values():
    """CEF (ArcSight spec): header '|' and '\\' backslash-escaped; extension '=' and '\\' escaped,
    '|' left as is, line breaks as the two characters \\n / \\r; other controls as #ooo."""
    rec = make_record(1, detector="files", rule={"id": "550", "description": "a|b\\c=d"},
                      fields={"path": "/x=1\\y|z\nw\r\nv\rq\x00", "srcip": "203.0.113.5"}, reasons=[])
    line = format_cef(rec, version="1.0")
    assert "|files anomaly: a\\|b\\\\c=d|" in line
    assert " filePath=/x\\=1\\\\y|z\\nw\\nv\\rq#000 " in line
    assert " src=203.0.113.5" in line
