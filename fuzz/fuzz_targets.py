"""What must hold of every entry point that takes outside input, whatever the input (issue 17).

Shared by the property tests (``tests/fuzz/test_fuzz_*.py``, hypothesis) and the coverage-guided
harnesses (``fuzz/atheris_*.py``): each ``check_*`` function feeds one input to the real entry
point and raises ``AssertionError`` (or lets an unexpected exception through) when an invariant
breaks. An entry point may refuse input only with its defined error; it may never hang, recurse
without bound, drop a good alert, or produce output that forges a line, a field or an event.

Entry points: the alert reader (``sources/reader.py``, ``sources/decoding.py``), the featurisers
(the detectors' keys and feature groups, ``engine/features.py``, and the estimator's score path),
the event formatter (``delivery/events.py``), the syslog formatter (``outputs/syslog.py``, only
what holds whatever its byte cap), the scorer's wire protocol (``integratord/protocol.py``) and
the integration's options (``integratord/options.py``).
"""
from __future__ import annotations

import io
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

ROOT = Path(__file__).resolve().parent.parent
try:
    import mimizuku  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # run as a script from a checkout without an install
    sys.path.insert(0, str(ROOT / "detector"))

from mimizuku.core import fields  # noqa: E402
from mimizuku.delivery import events  # noqa: E402
from mimizuku.engine import features  # noqa: E402
from mimizuku.integratord import options, protocol  # noqa: E402
from mimizuku.outputs import syslog, syslog_format  # noqa: E402
from mimizuku.sources import decoding  # noqa: E402
from mimizuku.sources.reader import ReadStats, iter_alerts  # noqa: E402

#: the most tokens a featuriser returns for one text (its words, its prefixes, its extension...)
MAX_TOKENS_OUT = 3 * features.MAX_TOKENS
#: the longest token: a word or directory prefix of a text cut to ``MAX_TEXT``, and its prefix
MAX_TOKEN_CHARS = features.MAX_TEXT + 8


# --- inputs ---------------------------------------------------------------------------------

_TEMPLATES: List[Dict[str, Any]] = []


def templates() -> List[Dict[str, Any]]:
    """One generated alert of each rule the generator makes (every kind a detector reads)."""
    if not _TEMPLATES:
        from mimizuku.tools.synth import FleetConfig, generate

        seen = set()
        for a in generate(FleetConfig(days=1, scale=0.03, attacks=True, seed=3)):
            rid = str(a.get("rule", {}).get("id"))
            if rid not in seen:
                seen.add(rid)
                a.pop("_label", None)
                _TEMPLATES.append(a)
    return _TEMPLATES


#: where agents put text in an alert (what the detectors read)
TEXT_PLACES = (
    ("syscheck", "path"), ("data", "audit", "execve", "a0"), ("data", "audit", "execve", "a1"),
    ("data", "audit", "command"), ("data", "audit", "exe"), ("agent", "name"), ("agent", "id"),
    ("data", "srcip"), ("data", "srcuser"), ("data", "dstuser"), ("full_log",), ("timestamp",),
    ("syscheck", "audit", "process", "name"), ("syscheck", "audit", "effective_user", "name"),
    ("data", "win", "eventdata", "commandLine"), ("location",), ("rule", "id"), ("id",),
)


def put(alert: Dict[str, Any], place: Sequence[str], value: Any) -> None:
    """``alert`` with ``value`` at ``place`` (the containers on the way made dicts)."""
    o = alert
    for k in place[:-1]:
        if not isinstance(o.get(k), dict):
            o[k] = {}
        o = o[k]
    o[place[-1]] = value


def alert_from_bytes(data: bytes) -> Dict[str, Any]:
    """An alert built from fuzzer bytes: JSON (the standard library's parser, which lets lone
    surrogates through) merged into a template, or the bytes' text in the places agents fill."""
    t = templates()
    alert = json.loads(json.dumps(t[data[0] % len(t)] if data else t[0]))
    rest = data[1:]
    try:
        obj = json.loads(rest.decode("utf-8", "surrogatepass"))
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        alert.update(obj)
        return alert
    text = rest.decode("utf-8", "replace")
    parts = text.split("\x00")
    for i, part in enumerate(parts[:len(TEXT_PLACES)]):
        put(alert, TEXT_PLACES[(i + (data[0] if data else 0)) % len(TEXT_PLACES)], part)
    return alert


# --- the alert reader -------------------------------------------------------------------------

def read(data: bytes, **kw: Any):
    """(alerts, stats) of the reader on a stream of ``data``."""
    stats = ReadStats()
    got = list(iter_alerts(io.BytesIO(data), stats=stats, **kw))
    return got, stats


def check_reader(data: bytes) -> None:
    """The reader on any bytes: no exception, only alerts out, and its counts add up."""
    got, st = read(data)
    for a in got:
        assert fields.is_alert(a), a
        assert not decoding.deeper_than(a, decoding.MAX_DEPTH), "an alert deeper than MAX_DEPTH came out"
    assert st.alerts == len(got), (st.alerts, len(got))
    assert st.lines == (st.alerts + st.bad_json + st.too_long + st.too_deep + st.not_alert + st.bad_encoding
                        + st.own_events + st.skipped_by_window), st.as_dict()
    assert st.repaired_encoding <= st.lines - st.bad_encoding   # then counted as what they were


def check_reader_keeps_good_lines(good: Sequence[Dict[str, Any]], junk: Sequence[bytes]) -> None:
    """Good alert lines among junk lines: every good alert comes out, in order (nothing bad on
    another line loses one), and each junk line is counted. The good lines are written as
    analysisd writes them (cJSON: text as raw bytes, whatever they are; no ``\\uXXXX`` escape
    but for control characters), so a lone surrogate is three bytes of bad UTF-8 there (a
    ``\\ud800`` escape, which no Wazuh writes, is ``bad_json`` by design: docs of the reader)."""
    lines: List[bytes] = []
    want = []
    for i, a in enumerate(good):   # a good line first: the first line says lines or one document
        line = json.dumps(a, ensure_ascii=False).encode("utf-8", "surrogatepass")
        lines.append(line)
        if len(line) < decoding.MAX_LINE_BYTES:   # longer ones are skipped as integratord skips them
            want.append(a.get("id"))
        lines.append(junk[i % len(junk)] if junk else b"")
    data = b"\n".join(lines) + b"\n"
    got, st = read(data)
    ids = [a.get("id") for a in got]
    # a junk line is a line of its own (no newline in it), so it cannot swallow a good one
    assert [i for i in ids if i in want] == want, (ids, want)


def check_decoding_chunks(data: bytes, cuts: Sequence[int]) -> None:
    """UTF-8 / UTF-16 text decoded in chunks cut anywhere is the text decoded whole."""
    chunks = _cut(data, cuts)
    assert "".join(decoding.utf8_text(iter(chunks))) == data.decode("utf-8", "replace")
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        whole = data.decode("utf-16", "replace").encode("utf-8")
        assert b"".join(decoding.utf16_to_utf8(iter(chunks))) == whole


def check_document(text: str, cuts: Sequence[int], cap: int = 1 << 16) -> None:
    """A JSON document read in chunks cut anywhere: its elements, or the defined errors only."""
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)]) if b > a] if text else []
    try:
        for _ in decoding.document_elements(iter(chunks), cap):
            pass
    except (decoding.DocumentError, decoding.DocumentTooLong):
        pass


def check_depth(line: bytes) -> None:
    """The raw bracket scan agrees with the parsed depth on any JSON line of UTF-8 (the reader
    scans only lines that decode as UTF-8; ``json.loads`` of bytes would guess UTF-16 too)."""
    try:
        obj = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):
        decoding.raw_deeper_than(line, decoding.MAX_DEPTH)   # must not raise either
        return
    for limit in (1, 2, 5, decoding.MAX_DEPTH):
        assert decoding.raw_deeper_than(line, limit) == decoding.deeper_than(obj, limit), (limit, line[:200])


def _cut(data: bytes, cuts: Sequence[int]) -> List[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts}) if data else []
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)]) if b > a]


# --- the featurisers ------------------------------------------------------------------------

def _detectors():
    from mimizuku.engine.detectors.commands import CommandDetector
    from mimizuku.engine.detectors.context import ContextDetector
    from mimizuku.engine.detectors.files import FileIntegrityDetector

    return [FileIntegrityDetector(), CommandDetector(), ContextDetector()]


_DETS: List[Any] = []


def check_featurise(alert: Any) -> None:
    """Each detector on any alert dict: ``applies``, ``key``, ``ignored`` never raise; the keys
    hash; the tokens of a text are bounded in number and length."""
    if not _DETS:
        _DETS.extend(_detectors())
    for d in _DETS:
        if not d.applies(alert):
            continue
        k = d.key(alert)
        hash(k)
        d.ignored(alert)
        groups = getattr(d, "groups", None)
        if groups is not None and k is not None:
            try:
                g = groups(k)
            except AttributeError:   # an unfitted detector has no vocabulary for some groups
                g = None
            if g:
                for toks in g.values():
                    assert len(toks) <= MAX_TOKENS_OUT
    for text in (fields.command_line(alert), fields.file_path(alert)):
        if isinstance(text, str):
            check_tokens(text)


def check_tokens(text: str) -> None:
    """Tokens of any text: bounded in number and in length; the shapes people read are one
    bounded line."""
    for fn in (features.command_tokens, features.path_tokens):
        toks = fn(text)
        assert len(toks) <= MAX_TOKENS_OUT, (fn.__name__, len(toks))
        assert all(len(t) <= MAX_TOKEN_CHARS for t in toks), (fn.__name__, max(map(len, toks)))
    shown = features.command_shape(text)
    assert len(shown) <= 160 and "\n" not in shown
    assert len(features.path_shape(text)) <= features.MAX_TEXT


_MODEL: List[Any] = []


def model():
    """A small model trained once (two generated days)."""
    if not _MODEL:
        from mimizuku.engine.estimator import Mimizuku
        from mimizuku.tools.synth import FleetConfig, generate

        m = Mimizuku().fit(list(generate(FleetConfig(days=2, scale=0.03, attacks=False, seed=1))))
        m.start_stream()
        _MODEL.append(m)
    return _MODEL[0]


def check_score(alert: Any) -> Optional[Dict[str, Any]]:
    """The estimator's score path (what ``serve`` calls) on one alert: no exception, at most one
    record, and the record travels: an event datagram and a syslog line can be made of it."""
    recs = list(model().iter_records([alert], new_stream=False, batch_size=1))
    assert len(recs) <= 1
    for r in recs:
        check_event(r)
        check_syslog(r)
    return recs[0] if recs else None


# --- the event formatter -----------------------------------------------------------------------

_INNER_KEYS = {"score", "score_pct", "anomaly", "severity", "detector", "threshold", "model_version", "reasons",
               "reason", "agent", "source", "episode", "story", "mitre", "truncated", "truncated_fields", *events.KEY_FIELDS}
_SOURCE_KEYS = {"alert_id", "rule_id", "level", "description", "timestamp", "location"}


def check_event(record: Any, max_bytes: int = events.MAX_MESSAGE_BYTES) -> None:
    """The datagram for any record: one line of valid UTF-8 within ``max_bytes``, ``1:<location>:
    <JSON>`` where the location is ours (``mimizuku`` or ``[id] (name) ip->mimizuku``) and the JSON
    has only the fields the builder writes: alert text cannot add a field, move the location's
    end or start another event."""
    try:
        msg = events.event_message(record, max_bytes=max_bytes)
    except events.EventTooLarge:
        assert max_bytes < 4096, "a record did not fit in a full-size datagram"
        return
    assert len(msg) <= max_bytes
    for bad in (b"\n", b"\r", b"\x00"):
        assert bad not in msg, bad
    text = msg.decode("utf-8")   # strict: valid UTF-8
    assert text.startswith(events.QUEUE_ID + ":")
    loc, body = events.split_location(text[len(events.QUEUE_ID) + 1:])
    agent = record.get("agent") if isinstance(record, dict) else None
    assert loc == events.unescape_location(events.location(agent)), (loc, agent)
    assert loc == events.TAG or (loc.startswith("[") and loc.endswith("->" + events.TAG) and loc.count("->") == 1), loc
    payload = json.loads(body)
    assert payload["integration"] == events.TAG
    assert set(payload) <= {"integration", events.TAG, *events.STATIC_FIELDS}, set(payload)
    inner = payload[events.TAG]
    assert set(inner) <= _INNER_KEYS, set(inner) - _INNER_KEYS
    assert set(inner.get("source", {})) <= _SOURCE_KEYS
    assert isinstance(inner["anomaly"], bool) and 0.0 <= inner["score"] <= 1.0


# --- the syslog formatter ----------------------------------------------------------------------

_LINE_BREAKS = ("\n", "\r", "\x00", "\x85", "\u2028", "\u2029", "\x0b", "\x0c")


def check_syslog(record: Any) -> None:
    """One RFC 5424 line and one CEF line for any record: no line break of any kind, valid
    UTF-8, and the structure a receiver parses (header fields, one SD element whose values are
    escaped, CEF's seven header bars)."""
    line = syslog.format_rfc5424(record, now=0.0)
    _one_line(line)
    sd_end = _parse_rfc5424(line)
    assert sd_end <= len(line)
    cef = syslog.format_cef(record, now=0.0)
    _one_line(cef)
    assert _unescaped(cef, "|") >= 7, cef[:200]


def _one_line(line: str) -> None:
    for c in _LINE_BREAKS:
        assert c not in line, (c, line[:200])
    line.encode("utf-8")   # strict: no lone surrogate


def _parse_rfc5424(line: str) -> int:
    """Where the structured data of a ``format_rfc5424`` line ends (a strict reading of RFC 5424
    section 6: PRI, VERSION, five header fields, one SD-ELEMENT of PARAM="VALUE" pairs in which
    ``"``, ``\\`` and ``]`` are escaped)."""
    assert line.startswith("<"), line[:50]
    close = line.index(">")
    assert line[1:close].isdigit() and 0 <= int(line[1:close]) <= 191
    head = line[close + 1:].split(" ", 6)
    assert head[0] == "1" and len(head) == 7, line[:200]
    for f in head[1:6]:
        assert f and all(33 <= ord(c) <= 126 for c in f), f
    assert head[3] == syslog_format.APP_NAME
    sd = head[6]
    assert sd.startswith("[" + syslog.SD_ID), sd[:80]
    i = len(syslog.SD_ID) + 1
    while sd[i] == " ":
        eq = sd.index("=", i)
        name = sd[i + 1:eq]
        assert name and all(33 <= ord(c) <= 126 and c not in '= ]"' for c in name), name
        assert sd[eq + 1] == '"'
        j = eq + 2
        while sd[j] != '"':
            if sd[j] == "\\":
                assert sd[j + 1] in '"\\]', sd[j:j + 2]
                j += 2
            else:
                assert sd[j] != "]", "an unescaped ] inside a value"
                j += 1
        i = j + 1
    assert sd[i] == "]", sd[i:i + 20]
    return len(line) - len(sd) + i + 1


def _unescaped(text: str, sep: str) -> int:
    n, i = 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        n += text[i] == sep
        i += 1
    return n


# --- the wire protocol ------------------------------------------------------------------------

def check_protocol_bytes(data: bytes) -> None:
    """Any answer line: ``parse_answer`` says ack, refusal or unreadable, never raises; ``loads``
    of any text raises only ValueError; ``valid_id`` of anything is a bool."""
    rid = protocol.request_id().encode("ascii")
    kind, what = protocol.parse_answer(data, rid)
    assert kind in (protocol.ACK, protocol.REFUSAL, None)
    if kind == protocol.REFUSAL:
        assert isinstance(what, dict) and what.get("ok") is not True
    try:
        obj = protocol.loads(data.decode("utf-8", "replace"))
    except ValueError:
        obj = None
    except RecursionError:   # pragma: no cover - a finding: loads must bound its input
        raise AssertionError("protocol.loads recursed without bound")
    assert protocol.valid_id(obj) in (True, False)
    if isinstance(obj, dict):
        assert protocol.valid_id(obj.get("id")) in (True, False)


def check_protocol_round_trip(alert: Any, rid_text: Optional[str] = None) -> None:
    """A score request for any alert is one line whose JSON gives back the id and the alert;
    an answer for any id and status is one line the client reads as its own acknowledgement."""
    rid = protocol.request_id().encode("ascii")
    try:
        line = json.dumps(alert, allow_nan=False).encode("ascii")    # as a JSON writer sends it
    except ValueError:   # NaN, Infinity: not JSON, nothing sends them (loads refuses them too)
        return
    req = protocol.score_request(rid, line)
    assert req.endswith(b"\n") and req.count(b"\n") == 1
    back = protocol.loads(req[:-1].decode("utf-8"))
    assert back["id"] == rid.decode() and back["op"] == "score" and back["alert"] == json.loads(line)
    for status in protocol.SETTLED:
        ack = protocol.acknowledgement(rid.decode(), status)
        assert ack.count(b"\n") == 1
        assert protocol.parse_answer(ack.rstrip(b"\n"), rid)[0] == protocol.ACK
    if rid_text is not None and protocol.valid_id(rid_text) and _utf8(rid_text):
        a = protocol.answer(rid_text, False, code=protocol.BAD_REQUEST, error="x")
        assert a.count(b"\n") == 1 and protocol.loads(a.decode("utf-8"))["id"] == rid_text


def _utf8(value: Any) -> bool:
    """Whether a request id can come back as itself (the scorer parses requests with orjson,
    which refuses a lone surrogate: such an id never reaches an answer)."""
    try:
        str(value).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- the integration's options -----------------------------------------------------------------

def check_options(data: bytes) -> None:
    """Any options file: ``Options`` with absolute paths and values of the declared types, or
    ``OptionsError``; nothing else."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "options.json"
        p.write_bytes(data)
        home = Path(d) / "ossec"
        try:
            o = options.load_options(str(p), home)
        except options.OptionsError:
            return
    for key in ("model_dir", "queue", "spool_dir", "log_file"):
        assert getattr(o, key).is_absolute()
    assert o.send in ("anomalies", "all") and o.fallback in ("spool", "in-process")
    assert isinstance(o.max_batch, int) and o.max_batch > 0 and isinstance(o.max_spool, int)
    for v in o.thresholds.values():
        assert isinstance(v, float) and math.isfinite(v)
    assert all(isinstance(u, str) for u in o.ignore_users)


def check_argv(argv: Sequence[str]) -> None:
    """Any argv: an ``Invocation`` with a positive timeout, or ``UsageError``."""
    try:
        inv = options.parse_argv(list(argv))
    except options.UsageError:
        return
    assert inv.alert_file and inv.timeout > 0 and isinstance(inv.retries, int)
