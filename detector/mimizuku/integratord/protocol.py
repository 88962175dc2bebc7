"""The line protocol between ``custom-mimizuku`` and the resident scorer, written once for both ends.

The script's client (:mod:`mimizuku.integratord.client`) and the scorer
(:mod:`mimizuku.serve.server`) each used to spell the limits, the request ids, the answer words
and the JSON framing on their own; a change on one side (a longer line, another id shape) could
silently break the other. Both now read them here (docs/serve.md, "The socket protocol"):

* one JSON object per line both ways over a UNIX stream socket, lines up to :data:`MAX_LINE`;
* request ``{"id": <string <= MAX_ID_CHARS or integer>, "op": <OPS>, ...}``; ``score`` carries
  ``"alert": {...}``;
* answer: always starts with ``{"id":<id>,"ok":``; ``"ok": true`` with a ``status`` (for
  ``score``: :data:`SETTLED` or ``skipped``), or ``"ok": false`` with a ``code`` (the ``*``
  constants below) and an ``error`` text.

Standard library only, and light: the integratord fast path imports this module for every alert,
so it loads neither ``json`` (which pulls in ``re``) nor ``typing``. Decoding goes through the C
scanner of ``_json``; encoding a general object (the scorer's answers, the client's requests other
than ``score``) imports ``json`` the first time it is needed.
"""
import time

try:
    import posix as _os  # the C module behind os: os itself (and _collections_abc) cost a millisecond
except ImportError:  # pragma: no cover - not POSIX
    import os as _os

try:
    import _json
except ImportError:  # pragma: no cover
    _json = None

#: Largest request line the scorer accepts (alerts from integratord are below 64 KiB); a longer
#: one is answered ``bad_request`` and the connection closed. Answers are bounded the same way.
MAX_LINE = 1 << 20
#: Longest string request id.
MAX_ID_CHARS = 128
#: What a request may ask.
OPS = ("score", "status", "ping", "reload")

#: ``status`` of a positive answer to ``score``: the alert is settled (scored, already handled,
#: or set aside in ``spool/quarantine`` because identifying, featurising or scoring it failed:
#: ``quarantined``; ``kept``, the same from scorers before it). ``skipped``: the plugin's own event.
SCORED, DUPLICATE, KEPT, SKIPPED, QUARANTINED = "scored", "duplicate", "kept", "skipped", "quarantined"
SETTLED = (SCORED, DUPLICATE, KEPT, QUARANTINED)

#: ``code`` of a negative answer.
BAD_REQUEST = "bad_request"
BAD_ALERT = "bad_alert"
NOT_READY = "not_ready"
SHUTTING_DOWN = "shutting_down"
OVERLOADED = "overloaded"
INTERNAL = "internal"

#: What :func:`parse_answer` makes of an answer to one's own request.
ACK, REFUSAL = "ack", "refusal"


# --- request ids --------------------------------------------------------------------------------

_counter = 0


def request_id():
    """A request id unique enough on one host: pid, clock, counter (hex, no escaping needed)."""
    global _counter
    _counter += 1
    return "%x-%x-%x" % (_os.getpid(), time.time_ns() & 0xFFFFFFFFFFFF, _counter)


#: What :func:`valid_id` accepts, for the ``bad_request`` answer.
ID_RULE = "string up to %d characters, or integer" % MAX_ID_CHARS


def valid_id(rid):
    """Whether ``rid`` (from a parsed request) is an id the scorer answers to."""
    return not isinstance(rid, bool) and isinstance(rid, (str, int)) and not (
        isinstance(rid, str) and len(rid) > MAX_ID_CHARS)


# --- JSON framing -------------------------------------------------------------------------------

class _Ctx:
    """What ``_json.make_scanner`` reads from a decoder (the standard JSONDecoder's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo = None

    @staticmethod
    def parse_constant(name):
        raise ValueError(f"{name} is not valid JSON")


_scan = _json.make_scanner(_Ctx()) if _json is not None else None
_WS = " \t\n\r"


def loads(text):
    """``json.loads`` for small texts without importing ``json`` (and with it ``re``).

    Raises ValueError for anything that is not one JSON value, nesting too deep for the parser's
    recursion included (a line of brackets raised RecursionError, which no caller expects)."""
    if _scan is None:  # pragma: no cover
        import json

        try:
            return json.loads(text)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
    i = 0
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    try:
        obj, end = _scan(text, i)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at position {e.value}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"extra data at position {end}")
    return obj


_encoder = None


def encode(obj):
    """Compact UTF-8 JSON of ``obj`` (what the scorer writes: answers, its status file);
    values JSON cannot hold are written as their ``str``."""
    global _encoder
    if _encoder is None:
        import json  # not on the client's fast path

        _encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    return _encoder(obj).encode("utf-8", "replace")


# --- requests (the client's side) ---------------------------------------------------------------

def score_request(rid, alert_line):
    """The ``score`` request line for an alert given as one line of JSON bytes (``rid``: ASCII
    bytes of :func:`request_id`), built without parsing or encoding the alert again."""
    return b'{"id":"' + rid + b'","op":"score","alert":' + alert_line + b"}\n"


def encode_request(request):
    """Any other request (status, ping, reload...) as a line; an id is added when it has none."""
    import json  # not on the fast path

    req = dict(request)
    req.setdefault("id", request_id())
    return json.dumps(req, separators=(",", ":")).encode("utf-8") + b"\n"


def parse_answer(line, rid):
    """What the answer ``line`` says about the request ``rid`` (ASCII bytes of a string id).

    ``(ACK, line)``: positive (recognised by its prefix where possible, without parsing);
    ``(REFUSAL, answer)``: ``"ok": false``, with the parsed answer; ``(None, why)``: unreadable,
    or the answer to another request.
    """
    if line.startswith(b'{"id":"' + rid + b'","ok":true'):
        return ACK, line
    try:
        answer = loads(line.decode("utf-8", "replace"))
    except ValueError:
        return None, "unreadable answer"
    if not isinstance(answer, dict) or answer.get("id") != rid.decode():
        return None, "answer to another request"
    if answer.get("ok") is True:
        return ACK, line
    return REFUSAL, answer


# --- answers (the scorer's side) ----------------------------------------------------------------

def answer(rid, ok, **rest):
    """An answer line: ``{"id": rid, "ok": ok, **rest}``."""
    return encode(dict({"id": rid, "ok": ok}, **rest)) + b"\n"


def acknowledgement(rid, status):
    """``answer(rid, True, status=status)`` for the acknowledgement of every scored alert,
    without building and encoding a dict each time (``rid`` passed :func:`valid_id`)."""
    return b'{"id":%s,"ok":true,"status":"%s"}\n' % (
        str(rid).encode() if type(rid) is int else encode(rid), status.encode())
