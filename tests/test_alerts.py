"""The alert reader: every source format, every bad input and its count, timestamps, errors."""
from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from mimizuku.core.fields import is_own_event
from mimizuku.sources import decoding, reader, timestamps
from mimizuku.sources.errors import AlertSourceError, ReadStats
from mimizuku.sources.reader import iter_alerts, read_alerts
from mimizuku.sources.timestamps import parse_timestamp

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data not present at {DATA}")


def make_alert(i: int = 0, ts: str = "2026-11-20T10:15:02.123+0000", **extra) -> dict:
    a = {
        "timestamp": ts,
        "rule": {"level": 3, "id": str(5700 + i % 7), "description": f"rule {i}",
                 "groups": ["syslog", "sshd"], "firedtimes": i},
        "agent": {"id": "001", "name": "web-01"},
        "manager": {"name": "wazuh"},
        "id": f"1732097702.{i}",
        "full_log": f"line {i}",
        "location": "/var/log/auth.log",
    }
    a.update(extra)
    return a


def dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def write_lines(path: Path, lines, *, gz: bool = False, newline: bytes = b"\n") -> Path:
    data = b"".join((dumps(x) if isinstance(x, dict) else x) + newline for x in lines)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def balanced(s: ReadStats) -> bool:
    """Every counted line ends in exactly one outcome."""
    return s.lines == s.alerts + s.total_bad + s.own_events + s.skipped_by_window


@pytest.fixture(params=["orjson", "stdlib"])
def parser(request, monkeypatch):
    """Run a test with orjson and with the stdlib fallback."""
    if request.param == "stdlib":
        monkeypatch.setattr(decoding, "json_loads", lambda: decoding.std_loads)
    else:
        pytest.importorskip("orjson")
    return request.param


# --- alerts.json lines ---------------------------------------------------------------------

def test_reads_json_lines_in_order_with_counts(tmp_path):
    p = write_lines(tmp_path / "alerts.json", [make_alert(i) for i in range(5)])
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == [f"line {i}" for i in range(5)]
    assert (st.files, st.lines, st.alerts, st.total_bad) == (1, 5, 5, 0)
    assert st.bytes_read == p.stat().st_size
    assert balanced(st)


def test_gzip_detected_by_content_not_name(tmp_path):
    lines = [make_alert(i) for i in range(300)]
    a, sa = read_alerts(write_lines(tmp_path / "ossec-alerts-21.json.gz", lines, gz=True))
    b, sb = read_alerts(write_lines(tmp_path / "no-suffix", lines, gz=True))
    assert a == b == lines
    assert sa.alerts == sb.alerts == 300
    assert sa.bytes_read == (tmp_path / "ossec-alerts-21.json.gz").stat().st_size  # compressed bytes


def test_multi_member_gzip_and_zero_padding(tmp_path):
    p = tmp_path / "multi.json.gz"
    first = gzip.compress(b"".join(dumps(make_alert(i)) + b"\n" for i in range(3)))
    second = gzip.compress(b"".join(dumps(make_alert(i)) + b"\n" for i in range(3, 5)))
    p.write_bytes(first + second + b"\x00" * 512)
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == [f"line {i}" for i in range(5)]
    assert st.damaged_files == []


def test_bad_lines_are_skipped_and_counted(tmp_path, parser):
    good = dumps(make_alert(1))
    deep = b'{"rule": {"id": "d"}, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    nested = lambda n: b'{"rule": {"id": "n%d"}, "x": ' % n + b"[" * n + b"]" * n + b"}"  # noqa: E731
    lines = [
        b"\xef\xbb\xbf" + good,                       # BOM on the first line: kept
        good + b"\r",                                 # CRLF: kept
        b"",                                          # blank: ignored, not counted
        b"   \t",                                     # blank: ignored
        b"{not json",                                 # bad_json
        b'{"rule": {"id": "1"}, "x": "a\x00b"}',      # raw NUL inside a string: bad_json
        b"\x00\x00\x00" + good,                       # NUL padding (crash) before a line: kept
        b'{"rule": {"id": "1"}, "v": "\\ud800"}',     # lone surrogate escape: rejected by orjson
        deep,                                         # deep nesting: too_deep (no crash, either parser)
        nested(63),                                   # 64 levels with the alert: kept
        nested(64),                                   # 65 levels: too_deep
        b'{"a": 1}',                                  # no rule: not_alert
        b'{"rule": "5715"}',                          # rule not an object: not_alert
        b"[1, 2]",                                    # not an object: not_alert
        b'"just a string"',                           # not_alert
        b'{"rule": {"id": "2"}, "full_log": "caf\xe9"}',  # latin-1 byte: repaired, kept
        b'{"rule": {"id": "3"}, "full_log": "\xff\xfe',   # bad bytes and broken: bad_encoding
        b'{"rule": {"id": "4"}, "n": 123456789012345678901234567890}',  # giant number: kept
        b'{"rule": {"id": "5"}, "n": NaN}',           # NaN is not JSON: bad_json
    ]
    # `deep` is longer than a line may be (too_long) unless the limit allows it
    p = write_lines(tmp_path / "alerts.json", lines)
    got, st = read_alerts(p, max_line_bytes=1 << 20)
    ids = [a["rule"]["id"] for a in got]
    surrogate_kept = parser == "stdlib"  # the stdlib accepts a lone surrogate escape
    assert ids == ["5701", "5701", "5701"] + (["1"] if surrogate_kept else []) + ["n63", "2", "4"]
    assert got[-2]["full_log"] == "caf\ufffd"
    assert st.repaired_encoding == 1
    assert st.bad_encoding == 1
    # orjson refuses the lone surrogate, the stdlib accepts it; the 100,000-deep line is too_deep
    # for both, though orjson reports it as bad JSON and the stdlib runs out of recursion
    assert st.bad_json == (3 if parser == "stdlib" else 4)
    assert st.too_deep == 2
    assert st.not_alert == 4
    assert st.too_long == 0
    assert st.lines == len(lines) - 2
    assert balanced(st)


def test_line_length_limit_matches_integratord(tmp_path):
    """integratord's fgets(buf, 65537) takes at most 65535 bytes plus the newline."""
    base = dumps(make_alert(0, full_log=""))
    pad = lambda n: base.replace(b'"full_log":""', b'"full_log":"' + b"x" * (n - len(base)) + b'"')  # noqa: E731
    fits, too_long = pad(65535), pad(65536)
    assert (len(fits), len(too_long)) == (65535, 65536)
    after = dumps(make_alert(7))
    got, st = read_alerts(write_lines(tmp_path / "a.json", [fits, too_long, after]))
    assert [len(a["full_log"]) for a in got] == [len(fits) - len(base), len("line 7")]
    assert st.too_long == 1 and st.alerts == 2 and balanced(st)


def test_huge_line_is_skipped_in_pieces_and_the_next_line_read(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "CHUNK_BYTES", 4096)  # the line spans many reads
    huge = b'{"rule":{"id":"1"},"full_log":"' + b"A" * 200_000 + b'"}'
    p = write_lines(tmp_path / "a.json", [dumps(make_alert(1)), huge, dumps(make_alert(2)), huge])
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == ["line 1", "line 2"]
    assert st.too_long == 2 and st.lines == 4 and balanced(st)


def test_small_chunks_give_the_same_result(tmp_path, monkeypatch):
    lines = [make_alert(i) for i in range(200)]
    p = write_lines(tmp_path / "a.json.gz", lines, gz=True)
    ref, _ = read_alerts(p)
    monkeypatch.setattr(reader, "CHUNK_BYTES", 37)
    got, st = read_alerts(p)
    assert got == ref == lines and st.lines == 200


def test_last_line_without_newline(tmp_path):
    p = tmp_path / "a.json"
    p.write_bytes(dumps(make_alert(1)) + b"\n" + dumps(make_alert(2)))
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == ["line 1", "line 2"] and st.lines == 2
    p.write_bytes(dumps(make_alert(1)) + b"\n" + dumps(make_alert(2))[:40])  # being written
    got, st = read_alerts(p)
    assert len(got) == 1 and st.bad_json == 1 and balanced(st)


def test_crlf_file(tmp_path):
    p = write_lines(tmp_path / "a.json", [make_alert(i) for i in range(3)], newline=b"\r\n")
    got, st = read_alerts(p)
    assert len(got) == 3 and st.total_bad == 0


def test_utf16_file_with_bom(tmp_path):
    text = "".join(json.dumps(make_alert(i, full_log="ünïcödé")) + "\n" for i in range(3))
    p = tmp_path / "a.json"
    p.write_bytes(text.encode("utf-16"))
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == ["ünïcödé"] * 3 and st.total_bad == 0


def test_truncated_gzip_keeps_what_was_read_and_reports_the_file(tmp_path):
    n = 3000
    p = write_lines(tmp_path / "ossec-alerts-01.json.gz", [make_alert(i) for i in range(n)], gz=True)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) * 2 // 3])
    got, st = read_alerts(p)
    assert str(p) in st.damaged_files
    assert 0 < len(got) < n
    assert [a["full_log"] for a in got] == [f"line {i}" for i in range(len(got))]  # a clean prefix
    assert st.bad_json <= 1  # at most the cut line
    assert balanced(st)
    assert "damaged" in str(st)


def test_corrupt_gzip_is_reported(tmp_path):
    p = write_lines(tmp_path / "x.json.gz", [make_alert(i) for i in range(2000)], gz=True)
    data = bytearray(p.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = b"\xff" * 64
    p.write_bytes(bytes(data))
    got, st = read_alerts(p)
    assert st.damaged_files == [str(p)]
    assert len(got) < 2000 and balanced(st)


# --- own events, @timestamp -----------------------------------------------------------------

def test_own_events_dropped_and_counted(tmp_path):
    own_group = make_alert(1)
    own_group["rule"]["groups"] = ["mimizuku", "anomaly"]
    own_group["location"] = "mimizuku"
    own_data = make_alert(2, data={"integration": "mimizuku", "score": 0.9}, location="mimizuku")
    mentions = make_alert(3, full_log="/var/ossec/integrations/custom-mimizuku ran")  # not own
    lines = [own_group, own_data, mentions, make_alert(4)]
    p = write_lines(tmp_path / "a.json", lines)
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == ["/var/ossec/integrations/custom-mimizuku ran", "line 4"]
    assert st.own_events == 2 and balanced(st)
    got, st = read_alerts(p, include_own=True)
    assert len(got) == 4 and st.own_events == 0
    got, st = read_alerts(lines)  # same for in-memory records
    assert len(got) == 2 and st.own_events == 2


@pytest.mark.parametrize("location", ["/var/log/app.json", "(web-01) any->mimizuku", "command_mimizuku2", None])
def test_own_marks_count_only_at_our_locations(location):
    """Issue 17 item 3: a JSON log line carrying our marks is an alert to score, not ours."""
    forged = make_alert(5, data={"integration": "mimizuku", "mimizuku": {"severity": "critical"}}, location=location)
    forged["rule"]["groups"] = ["mimizuku", "anomaly"]
    assert not is_own_event(forged)
    got, st = read_alerts([forged])
    assert len(got) == 1 and st.own_events == 0
    for ours in ("mimizuku", "API-Webhook", "command_mimizuku"):
        assert is_own_event(dict(forged, location=ours))


def test_at_timestamp_copied_to_timestamp_without_touching_the_caller(tmp_path):
    a = make_alert(1)
    a["@timestamp"] = a.pop("timestamp")
    got, _ = read_alerts(a)
    assert got[0]["timestamp"] == got[0]["@timestamp"] == "2026-11-20T10:15:02.123+0000"
    assert "timestamp" not in a  # the caller's dict is unchanged
    both = make_alert(2, **{"@timestamp": "2026-11-20T10:15:02.123Z"})
    got, _ = read_alerts(both)
    assert got[0]["timestamp"] == "2026-11-20T10:15:02.123+0000"  # an existing one wins


# --- indexer exports and other documents ------------------------------------------------------

def export_doc(alerts, *, with_ids=True) -> dict:
    hits = []
    for i, a in enumerate(alerts):
        src = dict(a)
        src["@timestamp"] = src.pop("timestamp")
        if with_ids:
            src.pop("id")
        hits.append({"_index": "wazuh-alerts-4.x-2026.11.20", "_id": f"doc{i}", "_score": None,
                     "_source": src})
    return {"took": 5, "timed_out": False, "_shards": {"total": 1},
            "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None, "hits": hits}}


@pytest.mark.parametrize("indent", [None, 2], ids=["one-line", "pretty"])
@pytest.mark.parametrize("chunk", [1 << 20, 53], ids=["big-chunks", "tiny-chunks"])
def test_indexer_export(tmp_path, monkeypatch, indent, chunk):
    monkeypatch.setattr(reader, "CHUNK_BYTES", chunk)
    src = [make_alert(i) for i in range(40)]
    p = tmp_path / "export.json"
    p.write_text(json.dumps(export_doc(src), indent=indent))
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == [a["full_log"] for a in src]
    assert all(a["timestamp"] == a["@timestamp"] for a in got)
    assert [a["_id"] for a in got] == [f"doc{i}" for i in range(40)]  # no "id": keep the doc id
    assert st.lines == st.alerts == 40 and balanced(st)


def test_export_keys_in_any_order_and_non_alert_hits(tmp_path):
    doc = export_doc([make_alert(0), make_alert(1)], with_ids=False)
    doc["hits"]["hits"].append({"_id": "x", "_source": {"no": "rule"}})
    doc = {"hits": doc["hits"], "took": 3, "aggregations": {"a": [1, 2, {"b": None}]}}
    p = tmp_path / "e.json"
    p.write_text(json.dumps(doc, indent=1))
    got, st = read_alerts(p)
    assert [a["id"] for a in got] == ["1732097702.0", "1732097702.1"]
    assert "_id" not in got[0]
    assert st.not_alert == 1 and st.lines == 3 and balanced(st)


def test_export_hits_as_ndjson_and_as_a_json_array(tmp_path):
    src = [make_alert(i) for i in range(5)]
    hits = export_doc(src)["hits"]["hits"]
    nd = write_lines(tmp_path / "hits.ndjson", hits)
    arr = tmp_path / "hits-array.json"
    arr.write_text(json.dumps(hits))
    plain_arr = tmp_path / "alerts-array.json"
    plain_arr.write_text(json.dumps(src, indent=2))
    for p in (nd, arr, plain_arr):
        got, st = read_alerts(p)
        assert [a["full_log"] for a in got] == [f"line {i}" for i in range(5)], p
        assert st.alerts == 5 and balanced(st)


def test_export_on_one_line_among_json_lines(tmp_path):
    doc = export_doc([make_alert(0), make_alert(1)])
    p = write_lines(tmp_path / "mixed.json", [make_alert(9), doc, make_alert(10)])
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == ["line 9", "line 0", "line 1", "line 10"]
    assert st.lines == 4 and balanced(st)


def test_pretty_printed_alerts_sequence(tmp_path):
    """What ``jq . alerts.json`` writes: one indented object after the other."""
    p = tmp_path / "pretty.json"
    p.write_text("".join(json.dumps(make_alert(i), indent=2) + "\n" for i in range(4)))
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == [f"line {i}" for i in range(4)] and balanced(st)


def test_truncated_export_keeps_the_hits_before_the_cut(tmp_path):
    text = json.dumps(export_doc([make_alert(i) for i in range(50)]), indent=2)
    p = tmp_path / "cut.json"
    p.write_text(text[: len(text) // 2])
    got, st = read_alerts(p)
    assert 0 < len(got) < 50
    assert [a["full_log"] for a in got] == [f"line {i}" for i in range(len(got))]
    assert st.damaged_files == [str(p)] and st.bad_json == 1 and balanced(st)


def test_export_with_an_oversized_hit_stops_that_file(tmp_path):
    src = [make_alert(0), make_alert(1, full_log="x" * 5000), make_alert(2)]
    p = tmp_path / "big.json"
    p.write_text(json.dumps(export_doc(src), indent=2))
    got, st = read_alerts(p, max_line_bytes=256)  # element cap = 16 x 256 = 4 KiB
    assert [a["full_log"] for a in got] == ["line 0"]
    assert st.too_long == 1 and st.damaged_files == [str(p)] and balanced(st)


def test_depth_of_a_refused_line_counts_brackets_outside_strings_only():
    deep = decoding.raw_deeper_than
    assert deep(b"[" * 65 + b"]" * 65, 64) and not deep(b"[" * 64 + b"]" * 64, 64)
    # brackets inside a string, closed or cut short, do not nest; an escaped quote does not end it
    assert not deep(b'{"x": "' + b"[" * 1000 + b'"}', 64)
    assert not deep(b'{"x": "\\"' + b"[" * 1000, 64)
    assert deep(b'{"x": "a\\\\"' + b"[" * 1000, 64)  # an escaped backslash, then the string ends
    # a refused line of brackets in strings is bad JSON, not too deep
    got_json = b'{"rule": {"id": "1"}, "x": "' + b"[" * 1000
    assert deep(b"[" * 1000, 64) and not deep(got_json, 64)


def test_deeply_nested_document_does_not_crash(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text("[\n" + "[" * 200_000 + "]" * 200_000 + "\n]")
    got, st = read_alerts(p, max_line_bytes=1 << 20)
    assert got == [] and st.bad_json == 1 and st.damaged_files == [str(p)]
    deep_hit = {"_source": dict(make_alert(1), x=json.loads("[" * 100 + "]" * 100))}
    p.write_text(json.dumps([make_alert(0), deep_hit, make_alert(2)], indent=1))
    got, st = read_alerts(p)
    assert [a["full_log"] for a in got] == ["line 0", "line 2"] and st.too_deep == 1


def test_export_with_nan_is_broken_not_crashing(tmp_path):
    p = tmp_path / "nan.json"
    p.write_text('{\n "hits": {"hits": [{"_source": {"rule": {"id": "1"}, "v": NaN}}]}}')
    got, st = read_alerts(p)
    assert got == [] and st.bad_json == 1


# --- in-memory sources -------------------------------------------------------------------------

def test_single_dict_list_and_generator():
    a = [make_alert(i) for i in range(3)]
    assert read_alerts(a[0])[0] == [a[0]]
    got, st = read_alerts(a + [{"no": "rule"}, None, 5, True])
    assert got == a and st.not_alert == 4 and st.lines == 7
    got, st = read_alerts(x for x in a)
    assert got == a and st.lines == 3


def test_list_mixes_paths_dicts_frames_and_streams(tmp_path):
    pd = pytest.importorskip("pandas")
    p1 = write_lines(tmp_path / "a.json", [make_alert(0), make_alert(1)])
    p2 = write_lines(tmp_path / "b.json.gz", [make_alert(2)], gz=True)
    df = pd.DataFrame([make_alert(3)])
    stream = io.BytesIO(dumps(make_alert(4)) + b"\n")
    got, st = read_alerts([str(p1), make_alert(5), p2, df, stream, [make_alert(6)]])
    assert sorted(a["full_log"] for a in got) == [f"line {i}" for i in range(7)]
    assert st.files == 3 and st.alerts == 7 and balanced(st)


def test_file_objects_binary_gzip_and_text():
    data = b"".join(dumps(make_alert(i)) + b"\n" for i in range(3))
    for f in (io.BytesIO(data), io.BytesIO(gzip.compress(data)), io.StringIO(data.decode())):
        got, st = read_alerts(f)
        assert [a["full_log"] for a in got] == ["line 0", "line 1", "line 2"]


def test_dataframe_nested_from_read_json(tmp_path):
    pd = pytest.importorskip("pandas")
    src = [make_alert(i) for i in range(4)]
    src[1]["data"] = {"srcip": "10.0.0.1", "srcuser": "root"}
    p = write_lines(tmp_path / "a.json", src)
    df = pd.read_json(p, lines=True, dtype=False)
    got, st = read_alerts(df)
    assert st.alerts == 4 and balanced(st)
    for g, s in zip(got, src):
        assert g["rule"] == s["rule"] and g["agent"] == s["agent"]
        assert parse_timestamp(g["timestamp"]) == pytest.approx(parse_timestamp(s["timestamp"]))
    assert got[1]["data"] == src[1]["data"]
    assert "data" not in got[0]  # NaN cells are dropped


def test_dataframe_flat_from_json_normalize():
    pd = pytest.importorskip("pandas")
    src = [make_alert(i) for i in range(3)]
    src[2]["data"] = {"audit": {"exe": "/usr/bin/curl", "execve": {"a0": "curl", "a1": "-k"}}}
    df = pd.json_normalize(src)
    assert "rule.groups" in df.columns and "data.audit.execve.a1" in df.columns
    before = df.copy()
    got, st = read_alerts(df)
    assert got == src  # nesting rebuilt, NaN for the missing data.* dropped
    assert st.alerts == 3
    pd.testing.assert_frame_equal(df, before)


def test_dataframe_of_export_hits_and_with_at_timestamp():
    pd = pytest.importorskip("pandas")
    hits = export_doc([make_alert(0), make_alert(1)])["hits"]["hits"]
    got, st = read_alerts(pd.json_normalize(hits))
    assert [a["full_log"] for a in got] == ["line 0", "line 1"]
    assert got[0]["timestamp"] == "2026-11-20T10:15:02.123+0000" and st.alerts == 2


def test_module_import_and_file_reading_do_not_import_pandas(tmp_path):
    p = write_lines(tmp_path / "a.json", [make_alert(0)])
    code = ("import sys, mimizuku.sources.reader as m; n = len(m.read_alerts(sys.argv[1])[0]); "
            "print(n, 'pandas' in sys.modules, 'tqdm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(p)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False", "False"]


# --- source errors ------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(AlertSourceError, match="does not exist"):
        iter_alerts(tmp_path / "nope.json")  # raised at the call, before iterating


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "alerts.json"
    os.mkfifo(fifo)
    with pytest.raises(AlertSourceError, match="not a regular file"):
        iter_alerts(fifo)


def test_unsupported_types():
    for bad in (42, b'{"rule": {}}', 3.5, object()):
        with pytest.raises(AlertSourceError, match="unsupported"):
            iter_alerts(bad)


def test_directory_without_alerts(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(AlertSourceError, match="no alert files in"):
        iter_alerts(tmp_path)


def test_bad_path_in_a_list_fails_before_reading(tmp_path):
    good = write_lines(tmp_path / "a.json", [make_alert(0)])
    with pytest.raises(AlertSourceError, match="missing.json"):
        iter_alerts([good, tmp_path / "missing.json"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file(tmp_path):
    p = write_lines(tmp_path / "a.json", [make_alert(0)])
    p.chmod(0)
    with pytest.raises(AlertSourceError, match="not readable"):
        iter_alerts(p)


def test_file_vanishing_after_planning_is_counted(tmp_path):
    p = write_lines(tmp_path / "a.json", [make_alert(0)])
    st = ReadStats()
    it = iter_alerts([p, make_alert(1)], stats=st)
    p.unlink()
    assert [a["full_log"] for a in it] == ["line 1"]
    assert st.unreadable_files == [str(p)]


def test_same_file_twice_is_read_once(tmp_path):
    p = write_lines(tmp_path / "a.json", [make_alert(0)])
    link = tmp_path / "b.json"
    os.link(p, link)
    got, st = read_alerts([p, link, str(p)])
    assert len(got) == 1 and st.files == 1 and st.duplicate_files == 2


def test_bad_options():
    with pytest.raises(ValueError, match="days"):
        iter_alerts([], days=0)
    with pytest.raises(ValueError, match="either days or since"):
        iter_alerts([], days=2, since="2022-01-01")
    with pytest.raises(ValueError, match="not a date"):
        iter_alerts([], since="yesterday")
    with pytest.raises(ValueError, match="not before"):
        iter_alerts([], since="2022-01-05", until="2022-01-01")
    with pytest.raises(ValueError, match="max_line_bytes"):
        iter_alerts([], max_line_bytes=0)


# --- windows on any source -----------------------------------------------------------------------

def test_window_filters_alerts_of_a_single_file(tmp_path):
    ts = ["2022-01-24T23:59:59.999+0000", "2022-01-25T00:00:00.000+0000",
          "2022-01-25T11:59:59.000+0000", "2022-01-25T12:00:00.000+0000",
          "2022-01-26T23:59:59.000+0000", "2022-01-27T00:00:00.000+0000"]
    p = write_lines(tmp_path / "a.json", [make_alert(i, ts=t) for i, t in enumerate(ts)]
                    + [make_alert(9, ts="garbage")])
    got, st = read_alerts(p, since="2022-01-25", until="2022-01-26")
    assert [a["timestamp"] for a in got] == ts[1:5] + ["garbage"]  # no readable time: kept
    assert st.skipped_by_window == 2 and balanced(st)
    got, _ = read_alerts(p, since="2022-01-25", until="2022-01-25T12:00:00")  # until exclusive
    assert [a["timestamp"] for a in got][:-1] == ts[1:3]


def test_naive_bounds_use_wall_clock_aware_bounds_absolute_time():
    a = make_alert(0, ts="2022-01-25T10:00:00.000+0200")  # 08:00 UTC
    assert read_alerts(a, since="2022-01-25T09:00:00")[0]  # wall clock 10:00 >= 09:00
    assert not read_alerts(a, since=datetime(2022, 1, 25, 9, tzinfo=timezone.utc))[0]
    assert read_alerts(a, since="2022-01-25T07:30:00Z")[0]
    assert read_alerts(a, since="2022-01-25T07:30:00+0000")[0]


# --- stats ---------------------------------------------------------------------------------------

def test_read_stats_dict_total_and_one_line_str():
    st = ReadStats(files=2, lines=10, alerts=5, bad_json=1, too_long=1, not_alert=1,
                   bad_encoding=1, own_events=1, damaged_files=["/x/evil\nname.json.gz"])
    d = st.as_dict()
    assert d["total_bad"] == st.total_bad == 4
    assert set(d) >= {"files", "lines", "alerts", "bad_json", "too_long", "not_alert",
                      "bad_encoding", "own_events", "damaged_files", "skipped_by_window"}
    text = str(st)
    assert "\n" not in text and "evil\\x0aname" in text  # core.text.printable
    assert "5 alerts" in text and "1 bad JSON" in text and "1 own events" in text


def test_stats_accumulate_over_reads(tmp_path):
    p = write_lines(tmp_path / "a.json", [make_alert(0), b"{bad"])
    st = ReadStats()
    list(iter_alerts(p, stats=st))
    q = write_lines(tmp_path / "b.json", [make_alert(1)])
    list(iter_alerts(q, stats=st))
    assert (st.files, st.alerts, st.bad_json) == (2, 2, 1)


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    pytest.importorskip("tqdm")
    p = write_lines(tmp_path / "a.json", [make_alert(i) for i in range(50)])

    class Tty(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((Tty(), True), (io.StringIO(), False)):
        monkeypatch.setattr(sys, "stderr", stream)
        got, _ = read_alerts(p, progress=True)
        assert len(got) == 50
        assert ("reading alerts" in stream.getvalue()) is shown


# --- timestamps -----------------------------------------------------------------------------------

UTC = timezone.utc
FORMS = {
    "2026-11-20T10:15:02.123+0000": datetime(2026, 11, 20, 10, 15, 2, 123000, UTC),
    "2026-11-20T10:15:02.123Z": datetime(2026, 11, 20, 10, 15, 2, 123000, UTC),
    "2022-01-17T09:44:35.000000Z": datetime(2022, 1, 17, 9, 44, 35, 0, UTC),
    "2026-11-20T10:15:02.123+00:00": datetime(2026, 11, 20, 10, 15, 2, 123000, UTC),
    "2020-03-04T13:55:05.224939+0000": datetime(2020, 3, 4, 13, 55, 5, 224939, UTC),
    "2026-11-20T10:15:02-0300": datetime(2026, 11, 20, 13, 15, 2, 0, UTC),
    "2026-11-20T10:15:02.5+05:30": datetime(2026, 11, 20, 4, 45, 2, 500000, UTC),
    "2026-11-20T10:15:02": datetime(2026, 11, 20, 10, 15, 2, 0, UTC),  # no offset: UTC
    "2024-02-29T23:59:59.999+0000": datetime(2024, 2, 29, 23, 59, 59, 999000, UTC),
}
GARBAGE = ["", "garbage", "2026-11-20", "2026-02-30T10:15:02Z", "2026-11-20T25:15:02Z",
           "2026-11-20T10:61:02Z", "2026-11-20T10:15:02.123+9999", "2026-11-20T10:15:xxZ",
           None, 12345, ["2026-11-20T10:15:02Z"], b"2026-11-20T10:15:02Z", "x" * 10_000]


@pytest.mark.parametrize("impl", ["parse_timestamp", "parse_timestamp_manual"])
def test_parse_timestamp_forms(impl):
    f = getattr(timestamps, impl)
    for text, expected in FORMS.items():
        assert f(text) == pytest.approx(expected.timestamp(), abs=1e-6), text
    for bad in GARBAGE:
        assert f(bad) is None, bad


def test_parse_timestamp_many_random_values_agree_with_datetime():
    pytest.importorskip("hypothesis")
    from hypothesis import given, settings
    from hypothesis import strategies as stx

    @settings(max_examples=300, deadline=None)
    @given(stx.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
           stx.integers(min_value=-14 * 60, max_value=14 * 60), stx.sampled_from(["+0000", ":", "Z"]),
           stx.integers(min_value=0, max_value=6))
    def check(dt, off_min, style, digits):
        dt = dt.replace(microsecond=dt.microsecond // 10 ** (6 - digits) * 10 ** (6 - digits))
        tz = timezone(timedelta(minutes=off_min))
        text = dt.strftime("%Y-%m-%dT%H:%M:%S") + (f".{dt.microsecond:06d}"[: digits + 1] if digits else "")
        if style == "Z":
            tz = UTC
            text += "Z"
        else:
            sign = "-" if off_min < 0 else "+"
            hh, mm = divmod(abs(off_min), 60)
            text += f"{sign}{hh:02d}{':' if style == ':' else ''}{mm:02d}"
        expected = dt.replace(tzinfo=tz).timestamp()
        assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)
        assert timestamps.parse_timestamp_manual(text) == pytest.approx(expected, abs=1e-6)

    check()


# --- the real data under ../shared/data ---------------------------------------------------------

def count_json_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())


@needs_data
def test_real_alerts_json_lines():
    p = DATA / "ait-ldsv1.1" / "ossec_insect.json"
    got, st = read_alerts(p)
    assert st.alerts == len(got) == count_json_lines(p) and st.total_bad == 0
    assert all(parse_timestamp(a["timestamp"]) is not None for a in got)


@needs_data
def test_real_indexer_export():
    p = DATA / "opensearch-export" / "sample-alerts-predict-2024-04-01.json"
    with open(p) as f:
        expected = [h["_source"] for h in json.load(f)["hits"]["hits"]]
    got, st = read_alerts(p)
    assert got == expected and st.total_bad == 0
    assert all(parse_timestamp(a["timestamp"]) is not None for a in got)


@needs_data
def test_real_raw_samples_use_at_timestamp():
    p = DATA / "ait-ads-raw-samples" / "wazuh_attack_lines.json"
    got, st = read_alerts(p)
    assert st.alerts == count_json_lines(p) and st.total_bad == 0
    assert all(a["timestamp"] == a["@timestamp"] for a in got)
    assert all(parse_timestamp(a["timestamp"]) is not None for a in got)


@needs_data
def test_real_gzip_jsonl_window():
    p = DATA / "ait-ads" / "shaw_wazuh.derived.jsonl.gz"
    with gzip.open(p, "rb") as f:
        days = [json.loads(line)["timestamp"][:10] for line in f if line.strip()]
    got, st = read_alerts(p, since="2022-01-26", until="2022-01-27")
    assert st.alerts == sum(1 for d in days if "2022-01-26" <= d <= "2022-01-27") > 0
    assert st.alerts + st.skipped_by_window == len(days) and balanced(st)


def test_unreadable_file_simulated(tmp_path, monkeypatch):
    p = write_lines(tmp_path / "a.json", [make_alert(0)])
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False if Path(path) == p
                        else real_access(path, mode, *a, **k))
    with pytest.raises(AlertSourceError, match="not readable"):
        iter_alerts(p)
    d = tmp_path / "tree"
    d.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode, *a, **k: False)
    with pytest.raises(AlertSourceError, match="directory not readable"):
        iter_alerts(d)


def test_hostile_path_names_give_one_line_messages(tmp_path):
    with pytest.raises(AlertSourceError) as e:
        iter_alerts(str(tmp_path / "evil\nFAKE LOG LINE\x1b[31m.json"))
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value) and "evil\\x0a" in str(e.value)
    with pytest.raises(AlertSourceError, match="not a valid path"):
        iter_alerts(str(tmp_path / "nul\x00.json"))
