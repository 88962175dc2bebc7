"""Syslog messages that fit a receiver: RFC 5424 and CEF text, escaped, and cut in BYTES.

Why bytes, and why the cut is ours: a receiver limits a message in bytes (rsyslog's
``maxMessageSize``, 8,096 by default: ``iMaxLine`` in its ``runtime/glbl.c``), and what it does
past the limit is not ours to choose. rsyslog's imtcp, by default, submits the first 8,096 bytes
and makes the rest a NEW record, so an attacker who controls a path could place a whole forged
record (``<10>1 ... forgedhost mimizuku ... [mimizuku@32473 severity="critical"]``) exactly at the
cut. Every message built here is at most ``max_bytes`` UTF-8 bytes and still one well-formed
record:

* the free text (MSG, CEF ``msg``) is cut first, then the longest values, all to one level
  (water-filling) so that short values (id, score, agent) stay whole;
* a value is cut on a character of its RAW text and escaped afterwards, so a cut never splits a
  UTF-8 sequence, a ``#ooo`` group or a ``\\"`` / ``\\]`` / ``\\=`` escape;
* a cut value ends with ``…[+N]`` (N characters dropped), and the record names what was cut:
  the SD-PARAM ``truncated="msg,path"`` (RFC 5424) or ``cs6Label=truncated cs6=msg,filePath``
  (CEF). Attacker text cannot forge that parameter: quotes and brackets in values are escaped.

One record is always one line: every control character, newline and Unicode line separator in a
field is escaped the way rsyslog does (``\\n`` -> ``#012``, one ``#ooo`` per UTF-8 byte).
Standard library only.
"""
from __future__ import annotations

import ipaddress
import math
import os
import re
import time
from datetime import datetime, timezone
from typing import Any, Callable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from mimizuku._version import __version__
from mimizuku.core.fields import dig as _get
from mimizuku.outputs import clean_text, parse_timestamp

__all__ = [
    "Message",
    "build_rfc5424",
    "build_cef",
    "build_cef_syslog",
    "format_rfc5424",
    "format_cef",
    "escape_controls",
    "sd_escape",
    "utf8_cut",
    "check_max_bytes",
    "record_cluster",
    "SD_ID",
    "APP_NAME",
    "NILVALUE",
    "FACILITIES",
    "SEVERITY_CODES",
    "CEF_SEVERITY",
    "DEFAULT_FIELD_CAP",
    "DEFAULT_MSG_CAP",
    "DEFAULT_UDP_MAX",
    "DEFAULT_MAX_BYTES",
    "MIN_MAX_BYTES",
]

#: Structured-data id: "name@<private enterprise number>" (32473 is the documentation PEN).
SD_ID = "mimizuku@32473"
APP_NAME = "mimizuku"
NILVALUE = "-"

FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
    "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "console": 14,
    "solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20,
    "local5": 21, "local6": 22, "local7": 23,
}
#: Record severity -> syslog severity (RFC 5424 table 2).
SEVERITY_CODES = {"critical": 2, "high": 3, "medium": 4, "low": 5, "none": 6}
#: Record severity -> CEF severity 0-10.
CEF_SEVERITY = {"critical": 10, "high": 8, "medium": 5, "low": 3, "none": 0}

DEFAULT_FIELD_CAP = 1024  # characters kept of one attacker-controlled value
DEFAULT_MSG_CAP = 4096
DEFAULT_UDP_MAX = 2048  # RFC 5426: receivers SHOULD take 2048 octets; larger datagrams fragment
#: rsyslog's default maxMessageSize (``iMaxLine = 8096`` in runtime/glbl.c), in bytes
DEFAULT_MAX_BYTES = 8096
#: below this a record may not fit whole even with every value cut (rsyslog: "do not set this
#: below 1k"; a 255-character hostname and every field take ~900 bytes)
MIN_MAX_BYTES = 1024


def check_max_bytes(value: Any, what: str = "the syslog message cap") -> int:
    """``value`` as a byte cap, refused below :data:`MIN_MAX_BYTES` (ValueError naming ``what``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < MIN_MAX_BYTES:
        raise ValueError(f"{what} must be a whole number of bytes >= {MIN_MAX_BYTES}, got {value!r}")
    return value


class Message(NamedTuple):
    """A formatted message and the names of the parts cut to fit (empty when whole)."""

    text: str
    truncated: Tuple[str, ...] = ()


# --- escaping (each escape is per character, so the escape of a prefix is a prefix) ----------

# C0 controls, DEL, C1 controls (NEL U+0085 among them), Unicode line/paragraph separators, and
# the invisible direction marks/overrides (they make a displayed line lie about its content).
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]")


def _octal_bytes(m: "re.Match[str]") -> str:
    return "".join(f"#{b:03o}" for b in m.group(0).encode("utf-8"))


def escape_controls(value: Any) -> str:
    """Text with every control/line-breaking character as rsyslog's ``#ooo`` (per UTF-8 byte):
    ``"a\\nb"`` -> ``"a#012b"``. Lone surrogates become U+FFFD. Never contains a newline."""
    s = clean_text(value) or ""
    if s.isascii() and s.isprintable():
        return s
    return _CONTROL_RE.sub(_octal_bytes, s)


def _cap(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    marker = f"…[+{len(s)}]"
    keep = max(0, limit - len(marker))
    return s[:keep] + f"…[+{len(s) - keep}]"


def _sd_chars(s: str) -> str:
    return escape_controls(s).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def sd_escape(value: Any, limit: int = DEFAULT_FIELD_CAP) -> str:
    """An SD-PARAM value: controls escaped, then ``\\``, ``"`` and ``]`` backslash-escaped."""
    s = _cap(escape_controls(value), limit)
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _cef_header_chars(s: str) -> str:
    return escape_controls(s).replace("\\", "\\\\").replace("|", "\\|")


def _cef_value_chars(s: str) -> str:
    """An extension value: ``\\`` and ``=`` escaped, LF/CR as the literal ``\\n``/``\\r`` CEF
    defines (CRLF is folded to LF before), other controls as ``#ooo``."""
    s = s.replace("\\", "\\\\").replace("=", "\\=").replace("\n", "\\n").replace("\r", "\\r")
    return escape_controls(s)


def _printusascii(value: Any, limit: int) -> str:
    """A header field (HOSTNAME, APP-NAME, PROCID, MSGID): PRINTUSASCII only, bounded, or ``-``."""
    s = "".join(c if 33 <= ord(c) <= 126 else "_" for c in str(value or ""))[:limit]
    return s or NILVALUE


def utf8_cut(s: str, max_bytes: int) -> str:
    """The longest prefix of ``s`` of at most ``max_bytes`` UTF-8 bytes (never half a character)."""
    b = s.encode("utf-8")
    if len(b) <= max_bytes:
        return s
    return b[:max_bytes].decode("utf-8", "ignore")


# --- values that can be cut --------------------------------------------------------------------

def _nbytes(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


class _Value:
    """One value of a message: its raw text (controls not yet escaped), the per-character escape
    of its place in the message, and a character cap. ``text``/``size`` are what is written."""

    __slots__ = ("name", "raw", "escape", "cut", "keep", "text", "size")

    def __init__(self, name: str, raw: Any, escape: Callable[[str], str], char_cap: int):
        self.name, self.escape = name, escape
        self.raw = clean_text(raw) or ""
        self.cut = False
        if len(self.raw) > char_cap:  # the display bound of one value, in characters
            marker = f"…[+{len(self.raw)}]"
            self._set(max(0, char_cap - len(marker)))
            self.cut = False  # a character cap is not a fit to the byte cap
        else:
            self.keep = len(self.raw)
            self.text = escape(self.raw)
            self.size = _nbytes(self.text)

    def _set(self, keep: int) -> None:
        self.keep = keep
        self.text = self.escape(self.raw[:keep]) + self.escape(f"…[+{len(self.raw) - keep}]")
        self.size = _nbytes(self.text)

    @property
    def least(self) -> int:
        """Bytes of the value cut to nothing but its marker (an upper bound)."""
        return _nbytes(self.escape(f"…[+{len(self.raw)}]"))

    def cut_to(self, budget: int) -> None:
        """Keep the longest prefix whose escaped text and marker take at most ``budget`` bytes."""
        if self.size <= budget:
            return
        room = budget - self.least
        keep, used = 0, 0
        raw = self.raw
        if raw.isascii() and self.escape(raw) == raw:
            keep = max(0, min(len(raw), room))
        else:
            for ch in raw:
                used += _nbytes(self.escape(ch))
                if used > room:
                    break
                keep += 1
        self._set(min(keep, self.keep))
        self.cut = True


def _water_level(values: Sequence[_Value], budget: int) -> Optional[int]:
    """The highest per-value size L with sum(min(size, max(L, least))) <= budget, or None when
    even every value at its least does not fit."""
    def total(level: int) -> int:
        return sum(min(v.size, max(level, v.least)) for v in values)

    if total(0) > budget:
        return None
    lo, hi = 0, max((v.size for v in values), default=0)
    while lo < hi:  # largest level whose total fits
        mid = (lo + hi + 1) // 2
        if total(mid) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _fit(fixed: int, first: Sequence[_Value], rest: Sequence[_Value], max_bytes: int,
         marker_bytes: Callable[[Sequence[str]], int]) -> bool:
    """Cut ``first`` (the free text), then ``rest`` (water-filling) until ``fixed`` + their sizes
    + the marker naming what was cut is at most ``max_bytes``. False when nothing suffices."""
    def size() -> int:
        return fixed + sum(v.size for v in (*first, *rest))

    if size() <= max_bytes:
        return True
    names: List[str] = []
    for v in first:
        names.append(v.name)
        v.cut_to(max(v.least, v.size - (size() + marker_bytes(names) - max_bytes)))
        if size() + marker_bytes(names) <= max_bytes:
            return True
    fixed_now = fixed + sum(v.size for v in first)
    while True:  # the marker grows with the names it lists: settle the set of cut values
        level = _water_level(rest, max_bytes - fixed_now - marker_bytes(names))
        if level is None:
            return False
        more = [v.name for v in rest if v.size > max(level, v.least) and v.name not in names]
        if not more:
            break
        names += more
    for v in rest:
        v.cut_to(max(level, v.least))
    return size() + marker_bytes(names) <= max_bytes


def _cut_names(values: Sequence[_Value]) -> Tuple[str, ...]:
    return tuple(v.name for v in values if v.cut)


# --- formatting ------------------------------------------------------------------------------

def _rfc3339(dt: datetime) -> str:
    dt = dt.astimezone(timezone.utc)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        frac = f"{dt.microsecond:06d}"
        base += "." + (frac[:3] if frac.endswith("000") else frac)
    return base + "Z"


def _score_text(x: Any) -> Optional[str]:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f"{f:.4f}".rstrip("0").rstrip(".") if math.isfinite(f) else None


def record_cluster(record: Mapping[str, Any], cluster: Optional[int]) -> Optional[int]:
    """The DBSCAN cluster of a record (``cluster`` given, else the record's), as an int or None."""
    c = cluster if cluster is not None else record.get("cluster")
    try:
        return None if c is None or isinstance(c, bool) else int(c)
    except (TypeError, ValueError):
        return None


def _pri(facility: int, severity: Any) -> int:
    return facility * 8 + SEVERITY_CODES.get(str(severity), 6)


def _event_time(record: Mapping[str, Any], now: float) -> datetime:
    return parse_timestamp(record.get("timestamp")) or datetime.fromtimestamp(now, tz=timezone.utc)


def _header(record: Mapping[str, Any], *, hostname: Any, facility: int, procid: Any, now: float) -> str:
    msgid = "anomaly" if record.get("anomaly") else "score"
    return (f"<{_pri(facility, record.get('severity'))}>1 {_rfc3339(_event_time(record, now))} "
            f"{_printusascii(hostname, 255)} {APP_NAME} "
            f"{_printusascii(procid if procid is not None else os.getpid(), 128)} {msgid}")


def _fields(record: Mapping[str, Any]) -> Mapping[str, Any]:
    f = record.get("fields")
    return f if isinstance(f, Mapping) else {}


def _sd_params(record: Mapping[str, Any], cluster: Optional[int]) -> List[Tuple[str, Any]]:
    fields = _fields(record)
    params: List[Tuple[str, Any]] = [
        ("id", record.get("id")),
        ("score", _score_text(record.get("score"))),
        ("detector", record.get("detector")),
        ("agent", _get(record, "agent", "name")),
        ("agent_id", _get(record, "agent", "id")),
        ("rule", _get(record, "rule", "id")),
        ("level", _get(record, "rule", "level")),
        ("cluster", cluster),
        ("severity", record.get("severity")),
        ("anomaly", None if record.get("anomaly") is None else ("true" if record.get("anomaly") else "false")),
        ("model", record.get("model_version")),
    ]
    for k in ("path", "command", "user", "srcip"):
        params.append((k, fields.get(k)))
    return [(k, v) for k, v in params if v is not None and v != ""]


def _summary_text(record: Mapping[str, Any]) -> str:
    fields = _fields(record)
    what = fields.get("path") or fields.get("command") or fields.get("srcip") or ""
    reasons = record.get("reasons") if isinstance(record.get("reasons"), list) else []
    head = (f"{record.get('severity') or 'none'} {record.get('detector') or '?'} "
            f"{'anomaly' if record.get('anomaly') else 'score'} {_score_text(record.get('score')) or '?'} "
            f"on {_get(record, 'agent', 'name') or '?'} rule {_get(record, 'rule', 'id') or '?'}")
    if what:
        head += f" {what}"
    if reasons:
        head += ": " + "; ".join(str(r) for r in reasons)
    return head


def build_rfc5424(record: Mapping[str, Any], *, cluster: Optional[int] = None, hostname: str = "-",
                  facility: int = FACILITIES["local0"], procid: Any = None, now: Optional[float] = None,
                  field_cap: int = DEFAULT_FIELD_CAP, msg_cap: int = DEFAULT_MSG_CAP, bom: bool = False,
                  max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Message:
    """One RFC 5424 record of at most ``max_bytes`` bytes (None: no cap), no trailing newline:
    ``<PRI>1 TIMESTAMP HOSTNAME mimizuku PROCID MSGID [mimizuku@32473 score="0.93" ...] MSG``."""
    now = time.time() if now is None else now
    header = _header(record, hostname=hostname, facility=facility, procid=procid, now=now)
    params = [_Value(k, v, _sd_chars, field_cap) for k, v in _sd_params(record, record_cluster(record, cluster))]
    msg = _Value("msg", _summary_text(record), escape_controls, msg_cap)
    bom_text = chr(0xFEFF) if bom else ""
    # header, " [", SD-ID, per param ' name=""', "] ", BOM
    fixed = len(header) + 2 + len(SD_ID) + sum(len(p.name) + 4 for p in params) + 2 + _nbytes(bom_text)

    def marker(names: Sequence[str]) -> int:
        return len(' truncated=""') + len(",".join(names)) if names else 0

    if max_bytes is not None and not _fit(fixed, [msg], params, max_bytes, marker):
        # only a hostname and cap the sink refuses get here: still one record, cut on a character
        text = utf8_cut(_assemble_rfc5424(header, params, msg, bom_text), max_bytes)
        return Message(text, ("all",))
    return Message(_assemble_rfc5424(header, params, msg, bom_text), _cut_names([msg, *params]))


def _assemble_rfc5424(header: str, params: Sequence[_Value], msg: _Value, bom_text: str) -> str:
    cut = _cut_names([msg, *params])
    sd = "".join(f' {p.name}="{p.text}"' for p in params)
    if cut:
        sd += f' truncated="{",".join(cut)}"'
    return f"{header} [{SD_ID}{sd}] {bom_text}{msg.text}"


def format_rfc5424(record: Mapping[str, Any], *, cluster: Optional[int] = None, hostname: str = "-",
                   facility: int = FACILITIES["local0"], procid: Any = None, now: Optional[float] = None,
                   field_cap: int = DEFAULT_FIELD_CAP, msg_cap: int = DEFAULT_MSG_CAP, bom: bool = False,
                   max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> str:
    """The text of :func:`build_rfc5424` (at most ``max_bytes`` bytes, 8,096 by default)."""
    return build_rfc5424(record, cluster=cluster, hostname=hostname, facility=facility, procid=procid,
                         now=now, field_cap=field_cap, msg_cap=msg_cap, bom=bom, max_bytes=max_bytes).text


#: CEF extension keys of the values (the labels beside them are fixed text)
_CEF_LABELS = {"cfp1": "score", "cn1": "cluster", "cs1": "rule", "cs2": "agent", "cs3": "command",
               "cs4": "model", "cs5": "srcip"}


def _cef_extension(record: Mapping[str, Any], cluster: Optional[int], now: float) -> List[Tuple[str, Any]]:
    fields = _fields(record)
    c = record_cluster(record, cluster)
    ext: List[Tuple[str, Any]] = [
        ("rt", int(_event_time(record, now).timestamp() * 1000)),
        ("externalId", record.get("id")),
        ("cat", record.get("detector") or "unknown"),
        ("cfp1", _score_text(record.get("score"))),
        ("cn1", c),
        ("cs1", _get(record, "rule", "id")),
        ("cs2", _get(record, "agent", "name")),
        ("cs3", fields.get("command")),
        ("cs4", record.get("model_version")),
        ("filePath", fields.get("path")),
        ("suser", fields.get("user")),
    ]
    srcip = fields.get("srcip")
    if srcip:
        try:
            ipaddress.ip_address(str(srcip))
            ext.append(("src", srcip))
        except ValueError:
            ext.append(("cs5", srcip))
    reasons = record.get("reasons") if isinstance(record.get("reasons"), list) else []
    if reasons:
        ext.append(("msg", "; ".join(str(r) for r in reasons)))
    return [(k, v) for k, v in ext if v is not None and v != ""]


def _build_cef(prefix: str, record: Mapping[str, Any], *, cluster: Optional[int], version: str,
               field_cap: int, now: float, max_bytes: Optional[int]) -> Message:
    detector = record.get("detector") or "unknown"
    desc = _get(record, "rule", "description")
    name = f"{detector} anomaly" if record.get("anomaly") else f"{detector} score"
    if desc:
        name += f": {desc}"
    sev = str(CEF_SEVERITY.get(str(record.get("severity")), 0))
    head = [_Value("deviceVersion", version, _cef_header_chars, 63),
            _Value("signatureId", detector, _cef_header_chars, 63),
            _Value("name", name, _cef_header_chars, 512)]
    ext, msg = [], []
    for k, v in _cef_extension(record, cluster, now):
        raw = (clean_text(v) or "").replace("\r\n", "\n")  # one CEF newline per line break
        (msg if k == "msg" else ext).append(_Value(k, raw, _cef_value_chars, field_cap))
    labels = "".join(f" {k}Label={_CEF_LABELS[v.name]}" for v in ext for k in [v.name] if k in _CEF_LABELS)
    # prefix "CEF:0|Mimizuku|Mimizuku|" v "|" d "|" n "|" sev "|" ext: each ' key=' but the first
    fixed = (_nbytes(prefix) + len("CEF:0|Mimizuku|Mimizuku|") + 4 + len(sev)
             + sum(len(v.name) + 2 for v in (*ext, *msg)) - 1 + len(labels))

    def marker(names: Sequence[str]) -> int:
        return len(" cs6= cs6Label=truncated") + len(",".join(names)) if names else 0

    fits = max_bytes is None or _fit(fixed, msg, [*head, *ext], max_bytes, marker)
    body = " ".join(f"{v.name}={v.text}" for v in (*ext, *msg)) + labels
    cut = _cut_names([*msg, *head, *ext])
    if cut:
        body += f" cs6={','.join(cut)} cs6Label=truncated"
    text = prefix + "|".join(["CEF:0", "Mimizuku", "Mimizuku", *(v.text for v in head), sev]) + "|" + body
    if not fits:  # see build_rfc5424
        return Message(utf8_cut(text, max_bytes or 0), ("all",))
    return Message(text, cut)


def build_cef(record: Mapping[str, Any], *, cluster: Optional[int] = None, version: str = __version__,
              field_cap: int = DEFAULT_FIELD_CAP, now: Optional[float] = None,
              max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Message:
    """``CEF:0|Mimizuku|Mimizuku|<version>|<detector>|<name>|<severity 0-10>|<extension>``, at
    most ``max_bytes`` bytes (None: no cap)."""
    now = time.time() if now is None else now
    return _build_cef("", record, cluster=cluster, version=version, field_cap=field_cap, now=now,
                      max_bytes=max_bytes)


def build_cef_syslog(record: Mapping[str, Any], *, cluster: Optional[int] = None, hostname: str = "-",
                     facility: int = FACILITIES["local0"], procid: Any = None, version: str = __version__,
                     field_cap: int = DEFAULT_FIELD_CAP, now: Optional[float] = None,
                     max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> Message:
    """CEF as the MSG of an RFC 5424 header with no structured data (the usual way to ship CEF
    over syslog); the whole record is at most ``max_bytes`` bytes."""
    now = time.time() if now is None else now
    prefix = f"{_header(record, hostname=hostname, facility=facility, procid=procid, now=now)} {NILVALUE} "
    return _build_cef(prefix, record, cluster=cluster, version=version, field_cap=field_cap, now=now,
                      max_bytes=max_bytes)


def format_cef(record: Mapping[str, Any], *, cluster: Optional[int] = None, version: str = __version__,
               field_cap: int = DEFAULT_FIELD_CAP, now: Optional[float] = None,
               max_bytes: Optional[int] = DEFAULT_MAX_BYTES) -> str:
    """The text of :func:`build_cef`."""
    return build_cef(record, cluster=cluster, version=version, field_cap=field_cap, now=now,
                     max_bytes=max_bytes).text
