"""Decoding alert text: the limits a line or a document element must keep, the JSON parser, the
streaming walk through a JSON document, and the character encodings met in alert files.

* Limits. A line of ``MAX_LINE_BYTES`` (65536) or more is skipped, as integratord skips it. An
  alert nested deeper than ``MAX_DEPTH`` (64) is refused: consumers re-serialise and recurse.
* Documents (exports, arrays, pretty-printed alerts) are read as a stream with the standard
  library's ``raw_decode``, one element at a time (``document_elements``): memory is bounded by
  the largest element, which may be ``DOC_ELEMENT_FACTOR`` x ``max_line_bytes`` (1 MiB); a bigger
  element (``DocumentTooLong``), or broken JSON (``DocumentError``), ends that document and what
  came before is kept. ``ijson`` would do the same with a dependency; it is not needed.
* Parser. ``orjson`` when installed (``json_loads``), else the standard library refusing
  NaN/Infinity as orjson does (``std_loads``).

What a read does with each element (counting, admitting) is the reader's
(``mimizuku.sources.reader``). Standard library only.
"""
from __future__ import annotations

import codecs
import json
import re
from typing import Any, Callable, Dict, Iterable, Iterator, Union

__all__ = [
    "MAX_LINE_BYTES", "DOC_ELEMENT_FACTOR", "MAX_DEPTH", "json_loads", "std_loads", "deeper_than",
    "raw_deeper_than",
    "DocumentError", "DocumentTooLong", "document_elements", "utf8_text", "utf16_to_utf8",
]

#: integratord reads alerts.json with ``fgets(buf, OS_MAXSTR + 1)``, OS_MAXSTR = 65536: a line
#: is dropped when it does not fit with its newline, i.e. when its content is >= 65536 bytes.
MAX_LINE_BYTES = 65536
#: An element of a JSON document (a hit of an export) may be this many times a line's size
#: (pretty-printing inflates it); a bigger element ends the reading of that document.
DOC_ELEMENT_FACTOR = 16

#: Alerts nested deeper than this are refused (``too_deep``): Wazuh writes fewer than 10 levels,
#: and consumers (orjson.dumps stops at 255, recursive flatteners) must not meet a hostile one.
MAX_DEPTH = 64


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_std_decoder = json.JSONDecoder(parse_constant=_reject_constant)


def std_loads(data: Union[bytes, str]) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as orjson does."""
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data).decode("utf-8")
    return _std_decoder.decode(data)


def json_loads() -> Callable[[Union[bytes, str]], Any]:
    """The parser a read uses: ``orjson.loads`` when installed, else ``std_loads``."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - orjson is a dependency, the fallback is for odd installs
        return std_loads
    return orjson.loads


class DocumentError(Exception):
    """A JSON document is broken: its reading ends here."""


class DocumentTooLong(Exception):
    """An element of a JSON document is over the size a read allows: its reading ends here."""


_DOC_WS = re.compile(r"[ \t\n\r\x00\ufeff]*")
_raw_decode = _std_decoder.raw_decode


def _may_continue(buf: str, e: json.JSONDecodeError) -> bool:
    """Whether a decode error can be the end of the buffer cutting a value short (read more)
    rather than invalid JSON: the error is at the end, or in a string still open there."""
    if e.msg.startswith("Unterminated string"):
        return True
    return len(buf) - e.pos < 16 or not buf[e.pos:].strip()


class _TextCursor:
    """A read position in a JSON text that arrives in chunks; keeps only the unread part."""

    __slots__ = ("chunks", "buf", "pos", "eof", "cap")

    def __init__(self, chunks: Iterator[str], cap: int) -> None:
        self.chunks = chunks
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.cap = cap

    def fill(self) -> bool:
        for nxt in self.chunks:
            self.buf = self.buf[self.pos:] + nxt
            self.pos = 0
            return True
        self.eof = True
        return False

    def peek(self) -> str:
        while True:
            self.pos = _DOC_WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def take(self, ch: str) -> None:
        if self.peek() != ch:
            raise DocumentError(f"expected {ch!r}")
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                v, end = _raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                if self.eof or not _may_continue(self.buf, e):
                    raise DocumentError(f"invalid JSON: {e.msg}") from None
            except (ValueError, RecursionError) as e:
                raise DocumentError(str(e)) from None
            else:
                # a number at the end of the buffer may continue in the next chunk
                if end < len(self.buf) or self.eof:
                    if end - self.pos > self.cap:
                        raise DocumentTooLong()
                    self.pos = end
                    return v
            if len(self.buf) - self.pos > self.cap:
                raise DocumentTooLong()
            self.fill()


def document_elements(text: Iterator[str], cap: int) -> Iterator[Any]:
    """The elements of the JSON documents in ``text``, one at a time: each element of a top-level
    array, each hit of a top-level object's ``hits.hits`` (streamed), or a top-level object
    without them whole (its ``hits`` left out). Raises ``DocumentTooLong`` for an element over
    ``cap`` characters and ``DocumentError`` for broken JSON; what was yielded before stands."""
    cur = _TextCursor(text, cap)
    while True:
        c = cur.peek()
        if c == "":
            return
        if c == "[":
            cur.pos += 1
            yield from _array(cur)
        elif c == "{":
            yield from _object(cur)
        else:
            raise DocumentError("not a JSON object or array")


def _array(cur: _TextCursor) -> Iterator[Any]:
    if cur.peek() == "]":
        cur.pos += 1
        return
    while True:
        yield cur.value()
        c = cur.peek()
        cur.pos += 1
        if c == "]":
            return
        if c != ",":
            raise DocumentError("expected ',' or ']'")


def _object(cur: _TextCursor) -> Iterator[Any]:
    """A top-level object: streams ``hits.hits``; any other object is one element."""
    cur.take("{")
    top: Dict[str, Any] = {}
    streamed = False
    if cur.peek() == "}":
        cur.pos += 1
    else:
        while True:
            key = cur.value()
            if not isinstance(key, str):
                raise DocumentError("object key is not a string")
            cur.take(":")
            if key == "hits" and cur.peek() == "{":
                cur.pos += 1
                if cur.peek() == "}":
                    cur.pos += 1
                else:
                    while True:
                        k2 = cur.value()
                        cur.take(":")
                        if k2 == "hits" and cur.peek() == "[":
                            cur.pos += 1
                            streamed = True
                            yield from _array(cur)
                        else:
                            cur.value()
                        c = cur.peek()
                        cur.pos += 1
                        if c == "}":
                            break
                        if c != ",":
                            raise DocumentError("expected ',' or '}'")
            else:
                top[key] = cur.value()
            c = cur.peek()
            cur.pos += 1
            if c == "}":
                break
            if c != ",":
                raise DocumentError("expected ',' or '}'")
    if not streamed:
        yield top


def deeper_than(obj: Any, limit: int) -> bool:
    """Whether containers nest more than ``limit`` levels (iterative: no recursion to exhaust)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if d > limit:
            return True
        if type(o) is dict:
            o = o.values()
        elif type(o) is not list:
            continue
        for v in o:
            if type(v) is dict or type(v) is list:
                stack.append((v, d + 1))
    return False


#: One token of a raw JSON line for the depth scan: a string, or a bracket. Linear on hostile
#: input without possessive quantifiers (Python 3.11 only; we support 3.9): the loop's two
#: branches start with different bytes, so it never has two ways to read a byte, and its end
#: always matches (the closing quote, or the end of the line, past a lone backslash): nothing is
#: ever given back, and an unterminated string runs to the end, so no position is scanned twice.
_RAW_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def raw_deeper_than(line: bytes, limit: int) -> bool:
    """Whether the brackets of a raw JSON line (outside strings) nest more than ``limit`` levels.

    For a line the parser refused: orjson refuses nesting past its own limit as bad JSON and the
    standard library runs out of recursion, yet both are the same hostile line, which is counted
    as ``too_deep`` whichever parser read it. Stops at the first level past ``limit``."""
    if line.count(b"{") + line.count(b"[") <= limit:
        return False
    depth = 0
    for m in _RAW_TOKEN.finditer(line):
        c = m.group()
        if c in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif c in (b"]", b"}"):
            depth -= 1
    return False


def utf8_text(chunks: Iterable[bytes]) -> Iterator[str]:
    """Text from UTF-8 chunks (a character may straddle two chunks); bad bytes become U+FFFD."""
    dec = codecs.getincrementaldecoder("utf-8")("replace")
    for c in chunks:
        t = dec.decode(c)
        if t:
            yield t
    t = dec.decode(b"", True)
    if t:
        yield t


def utf16_to_utf8(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """UTF-8 chunks from UTF-16 ones (a file with a UTF-16 BOM, as Windows tools write them)."""
    dec = codecs.getincrementaldecoder("utf-16")("replace")
    for c in chunks:
        t = dec.decode(c)
        if t:
            yield t.encode("utf-8")
    t = dec.decode(b"", True)
    if t:
        yield t.encode("utf-8")
