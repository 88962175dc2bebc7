"""The alert reader on anything a file can hold (issue 17, fuzzing): random bytes, lines of good
alerts among broken ones, any encoding, deep and huge JSON, any chunking of the same bytes."""
import json

import fuzz_targets as T
from fuzz_budget import FUZZ, hostile_text, json_values, share
from hypothesis import example, given
from hypothesis import strategies as st

from mimizuku.sources import decoding

#: lines that are not alerts, each its own line: broken JSON, bad UTF-8, deep nesting, NaN, BOMs
junk_line = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"")),
    json_values.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.integers(1, 3000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(60, 5000).map(lambda n: b'{"rule":' * n + b"{}" + b"}" * n),
    st.integers(1, 3000).map(lambda n: b'{"rule":{},"x":"' + b"\\\\" * n + b'"'),
    st.sampled_from([b"\xef\xbb\xbf", b"\x00\x00\x00", b"NaN", b'{"rule":{"id":NaN}}', b'{"rule":{},"a":"\\ud800"}',
                     b"\r", b"\xff\xfe{}", b'{"rule":', b'"\\', b"\x1f\x8b", b"{", b"[", b"]", b","]),
    st.integers(65536, 70000).map(lambda n: b'{"rule":{},"x":"' + b"a" * n + b'"}'),
)


def _alert(i, text):
    return {"id": f"good.{i}", "timestamp": "2026-11-01T00:00:00.000+0000", "rule": {"id": "550", "level": 7},
            "agent": {"id": "001", "name": "web"}, "syscheck": {"path": text}}


@FUZZ
@given(st.binary(max_size=4096))
@example(b"[" * 100_000)
@example(b"{" * 100_000)
@example(b'"' + b"\\" * 50_000)
@example(b"\x1f\x8b\x08\x00" + b"\x00" * 40)
@example(b"\xff\xfe" + "{\"rule\":{}}\n".encode("utf-16-le"))
@example(b'["\xff"]\n')     # repaired, then not an alert (atheris: repaired_encoding is not among alerts)
def test_any_bytes_are_read_without_an_exception(data):
    T.check_reader(data)


@FUZZ
@given(st.lists(junk_line, max_size=12))
def test_any_lines_are_read_without_an_exception(lines):
    T.check_reader(b"\n".join(lines))
    T.check_reader(b"\r\n".join(lines) + b"\r\n")


@share(0.5)
@given(st.lists(hostile_text, min_size=1, max_size=8), st.lists(junk_line, max_size=8))
def test_good_alerts_among_junk_lines_are_all_read(texts, junk):
    T.check_reader_keeps_good_lines([_alert(i, t) for i, t in enumerate(texts)], junk)


@FUZZ
@given(st.binary(max_size=2048), st.lists(st.integers(0, 4096), max_size=8))
@example("é€😀".encode() * 3, [1, 2, 3, 5, 8])
@example(b"\xff\xfe" + "a€😀".encode("utf-16-le"), [3, 4, 7])
def test_text_decoded_in_chunks_is_the_text_decoded_whole(data, cuts):
    T.check_decoding_chunks(data, cuts)


@FUZZ
@given(st.one_of(json_values.map(lambda v: json.dumps(v, ensure_ascii=False)), st.text(max_size=400)),
       st.lists(st.integers(1, 400), max_size=6))
@example('{"hits":{"hits":[{"rule":{}}, 1, ', [3, 7])
@example("[" * 50_000, [])
def test_documents_in_any_chunks_give_elements_or_a_defined_error(text, cuts):
    T.check_document(text, sorted(set(cuts)))


@FUZZ
@given(json_values)
@example([[[[[]]]]])
@example({"a": "[[[[\\\"[[[", "b": [{"c": ["]]]"]}]})
def test_the_raw_depth_scan_agrees_with_the_parsed_depth(value):
    T.check_depth(json.dumps(value).encode("utf-8", "surrogatepass"))


@FUZZ
@given(st.binary(max_size=600))
def test_the_raw_depth_scan_never_raises(line):
    decoding.raw_deeper_than(line, 3)
    decoding.raw_deeper_than(b"[" * 70 + line, decoding.MAX_DEPTH)
