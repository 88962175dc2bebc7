"""Scored records as syslog: RFC 5424 lines (or CEF) to a rotated local file and/or a remote server.

One record is always exactly one line: every control character, newline and Unicode line
separator in any field (paths and command lines are attacker-controlled) is escaped the way
rsyslog does (``\\n`` -> ``#012``, one ``#ooo`` per UTF-8 byte), so alert content can never start a
forged log line. Structured-data values get RFC 5424's ``\\"``, ``\\\\`` and ``\\]`` escapes; CEF gets
its own header and extension escapes.

Destinations: a local file (``anomaly.syslog``) rotated by size and/or day with ``backup_count``
old files kept (``anomaly.syslog.1`` is the newest), safe across restarts because the day of a file
is read from its modification time; a remote server over UDP (one datagram per message, size
capped) or TCP (RFC 6587 octet counting). What a destination cannot take now is kept in its own
durable spool and re-sent first, in order, by the next ``emit`` or ``flush_spool`` (at least once).
Standard library only.
"""
from __future__ import annotations

import ipaddress
import json
import math
import os
import re
import select
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from mimizuku._version import __version__
from mimizuku.core.atomic import write_atomic
from mimizuku.core.fields import dig as _get
from mimizuku.core.spool import Spool, SpoolError
from mimizuku.outputs import (
    OutputError,
    OutputUnavailableError,
    clean_text,
    default_spool_dir,
    parse_timestamp,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not on a Wazuh manager
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "SyslogSink",
    "SyslogOutputError",
    "SyslogUnavailableError",
    "FileDestination",
    "UdpDestination",
    "TcpDestination",
    "format_rfc5424",
    "format_cef",
    "escape_controls",
    "sd_escape",
    "SD_ID",
    "FACILITIES",
    "SEVERITY_CODES",
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
DEFAULT_UDP_MAX = 2048  # RFC 5426: receivers SHOULD take 2048 octets


class SyslogOutputError(OutputError):
    """Base of the syslog sink's errors."""


class SyslogUnavailableError(SyslogOutputError, OutputUnavailableError):
    """A destination (file, server) could not take the messages; they are in its spool."""


# --- escaping --------------------------------------------------------------------------------

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


def sd_escape(value: Any, limit: int = DEFAULT_FIELD_CAP) -> str:
    """An SD-PARAM value: controls escaped, then ``\\``, ``"`` and ``]`` backslash-escaped."""
    s = _cap(escape_controls(value), limit)
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printusascii(value: Any, limit: int) -> str:
    """A header field (HOSTNAME, APP-NAME, PROCID, MSGID): PRINTUSASCII only, bounded, or ``-``."""
    s = "".join(c if 33 <= ord(c) <= 126 else "_" for c in str(value or ""))[:limit]
    return s or NILVALUE


def _cef_header(value: Any, limit: int = 512) -> str:
    s = _cap(escape_controls(value), limit)
    return s.replace("\\", "\\\\").replace("|", "\\|")


def _cef_value(value: Any, limit: int = DEFAULT_FIELD_CAP) -> str:
    """An extension value: cut first (a cut never strands a backslash), then ``\\`` and ``=``
    escaped, CR/LF as the literal ``\\r``/``\\n`` CEF defines, other controls as ``#ooo``."""
    s = _cap(clean_text(value) or "", limit)
    s = s.replace("\\", "\\\\").replace("=", "\\=").replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")
    return escape_controls(s)


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


def _cluster(record: Mapping[str, Any], cluster: Optional[int]) -> Optional[int]:
    c = cluster if cluster is not None else record.get("cluster")
    try:
        return None if c is None or isinstance(c, bool) else int(c)
    except (TypeError, ValueError):
        return None


def _pri(facility: int, severity: Any) -> int:
    return facility * 8 + SEVERITY_CODES.get(str(severity), 6)


def _event_time(record: Mapping[str, Any], now: float) -> datetime:
    return parse_timestamp(record.get("timestamp")) or datetime.fromtimestamp(now, tz=timezone.utc)


def _sd_params(record: Mapping[str, Any], cluster: Optional[int], field_cap: int) -> List[Tuple[str, Any]]:
    fields = record.get("fields") if isinstance(record.get("fields"), Mapping) else {}
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


def _summary(record: Mapping[str, Any], cap: int) -> str:
    fields = record.get("fields") if isinstance(record.get("fields"), Mapping) else {}
    what = fields.get("path") or fields.get("command") or fields.get("srcip") or ""
    reasons = record.get("reasons") if isinstance(record.get("reasons"), list) else []
    head = (f"{record.get('severity') or 'none'} {record.get('detector') or '?'} "
            f"{'anomaly' if record.get('anomaly') else 'score'} {_score_text(record.get('score')) or '?'} "
            f"on {_get(record, 'agent', 'name') or '?'} rule {_get(record, 'rule', 'id') or '?'}")
    if what:
        head += f" {what}"
    if reasons:
        head += ": " + "; ".join(str(r) for r in reasons)
    return _cap(escape_controls(head), cap)


def format_rfc5424(record: Mapping[str, Any], *, cluster: Optional[int] = None, hostname: str = "-",
                   facility: int = FACILITIES["local0"], procid: Any = None, now: Optional[float] = None,
                   field_cap: int = DEFAULT_FIELD_CAP, msg_cap: int = DEFAULT_MSG_CAP, bom: bool = False) -> str:
    """One RFC 5424 line (no trailing newline):
    ``<PRI>1 TIMESTAMP HOSTNAME mimizuku PROCID MSGID [mimizuku@32473 score="0.93" ...] MSG``."""
    now = time.time() if now is None else now
    c = _cluster(record, cluster)
    sd = "[" + SD_ID + "".join(f' {k}="{sd_escape(v, field_cap)}"' for k, v in _sd_params(record, c, field_cap)) + "]"
    msgid = "anomaly" if record.get("anomaly") else "score"
    header = (f"<{_pri(facility, record.get('severity'))}>1 {_rfc3339(_event_time(record, now))} "
              f"{_printusascii(hostname, 255)} {APP_NAME} {_printusascii(procid if procid is not None else os.getpid(), 128)} "
              f"{_printusascii(msgid, 32)}")
    msg = _summary(record, msg_cap)
    return f"{header} {sd} {chr(0xFEFF) if bom else ''}{msg}"


def format_cef(record: Mapping[str, Any], *, cluster: Optional[int] = None, version: str = __version__,
               field_cap: int = DEFAULT_FIELD_CAP, now: Optional[float] = None) -> str:
    """``CEF:0|Mimizuku|Mimizuku|<version>|<detector>|<name>|<severity 0-10>|<extension>``."""
    now = time.time() if now is None else now
    fields = record.get("fields") if isinstance(record.get("fields"), Mapping) else {}
    detector = record.get("detector") or "unknown"
    desc = _get(record, "rule", "description")
    name = f"{detector} anomaly" if record.get("anomaly") else f"{detector} score"
    if desc:
        name += f": {desc}"
    sev = CEF_SEVERITY.get(str(record.get("severity")), 0)
    c = _cluster(record, cluster)
    ext: List[Tuple[str, Any]] = [
        ("rt", int(_event_time(record, now).timestamp() * 1000)),
        ("externalId", record.get("id")),
        ("cat", detector),
        ("cfp1", _score_text(record.get("score"))), ("cfp1Label", "score"),
        ("cn1", c), ("cn1Label", "cluster" if c is not None else None),
        ("cs1", _get(record, "rule", "id")), ("cs1Label", "rule"),
        ("cs2", _get(record, "agent", "name")), ("cs2Label", "agent"),
        ("cs3", fields.get("command")), ("cs3Label", "command" if fields.get("command") else None),
        ("cs4", record.get("model_version")), ("cs4Label", "model" if record.get("model_version") else None),
        ("filePath", fields.get("path")),
        ("suser", fields.get("user")),
    ]
    srcip = fields.get("srcip")
    if srcip:
        try:
            ipaddress.ip_address(str(srcip))
            ext.append(("src", srcip))
        except ValueError:
            ext += [("cs5", srcip), ("cs5Label", "srcip")]
    reasons = record.get("reasons") if isinstance(record.get("reasons"), list) else []
    if reasons:
        ext.append(("msg", "; ".join(str(r) for r in reasons)))
    body = " ".join(f"{k}={_cef_value(v, field_cap)}" for k, v in ext if v is not None and v != "")
    header = "|".join(["CEF:0", "Mimizuku", "Mimizuku", _cef_header(version, 63), _cef_header(detector, 63),
                       _cef_header(name, 512), str(sev)])
    return f"{header}|{body}"


def _utf8_cut(s: str, max_bytes: int) -> str:
    b = s.encode("utf-8")
    if len(b) <= max_bytes:
        return s
    return b[:max_bytes].decode("utf-8", "ignore")  # never half a character


# --- destinations ----------------------------------------------------------------------------

class _PartialSend(Exception):
    """``sent`` messages went out before ``error`` stopped the rest."""

    def __init__(self, sent: int, error: BaseException):
        super().__init__(str(error))
        self.sent, self.error = sent, error


class FileDestination:
    """Appends lines to a file and rotates it by size and/or day, keeping ``backup_count`` old files.

    The day a file belongs to is its modification time (set from ``clock`` on every write), so a
    restarted process keeps appending to today's file and rotates yesterday's: no state file. A
    lock file serialises writers (the resident scorer and the nightly job may share one file).
    """

    kind = "file"

    def __init__(self, path: os.PathLike | str, *, max_bytes: int = 50 * 1024 * 1024, backup_count: int = 7,
                 daily: bool = True, utc: bool = False, clock: Callable[[], float] = time.time,
                 mode: int = 0o640, fsync: bool = False):
        self.path = Path(path)
        self.max_bytes = int(max_bytes) if max_bytes else 0
        self.backup_count = max(0, int(backup_count))
        self.daily = daily
        self.utc = utc
        self.clock = clock
        self.mode = mode
        self.fsync = fsync
        self.name = f"file:{self.path}"

    def _day(self, t: float) -> Tuple[int, int, int]:
        tm = time.gmtime(t) if self.utc else time.localtime(t)
        return tm.tm_year, tm.tm_mon, tm.tm_mday

    def _backup(self, i: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{i}")

    def rotate(self) -> None:
        """``file`` -> ``file.1`` -> ... -> ``file.K``; older ones are deleted."""
        if self.backup_count == 0:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        else:
            for i in range(self.backup_count - 1, 0, -1):
                src = self._backup(i)
                if src.exists():
                    os.replace(src, self._backup(i + 1))
            if self.path.exists():
                os.replace(self.path, self._backup(1))
        self._prune()

    def _prune(self) -> None:
        pat = re.compile(re.escape(self.path.name) + r"\.(\d+)$")
        try:
            names = os.listdir(self.path.parent)
        except OSError:
            return
        for n in names:
            m = pat.match(n)
            if m and int(m.group(1)) > self.backup_count:
                try:
                    os.unlink(self.path.parent / n)
                except OSError:
                    pass

    def _needs_rotation(self, now: float, size: int, mtime: Optional[float], incoming: int) -> bool:
        if mtime is None or size == 0:
            return False
        if self.daily and self._day(mtime) != self._day(now):
            return True
        return bool(self.max_bytes) and size + incoming > self.max_bytes

    def send(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = os.open(str(self.path) + ".lock", os.O_WRONLY | os.O_CREAT, self.mode)
        except OSError as e:
            raise _PartialSend(0, e) from e
        try:
            if fcntl is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            now = self.clock()
            data = [(ln + "\n").encode("utf-8") for ln in lines]
            i = 0
            while i < len(data):
                try:
                    st = os.stat(self.path)
                    size, mtime = st.st_size, st.st_mtime
                except FileNotFoundError:
                    size, mtime = 0, None
                if self._needs_rotation(now, size, mtime, len(data[i])):
                    self.rotate()
                    size = 0
                # as many lines as fit before the size limit (at least one: a line is never split)
                chunk, total = [data[i]], size + len(data[i])
                i += 1
                while i < len(data) and (not self.max_bytes or total + len(data[i]) <= self.max_bytes):
                    chunk.append(data[i])
                    total += len(data[i])
                    i += 1
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self.mode)
                try:
                    buf = b"".join(chunk)
                    while buf:
                        n = os.write(fd, buf)
                        buf = buf[n:]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                os.utime(self.path, (now, now))  # the file's day is the writer's clock, fake or real
        except OSError as e:
            raise _PartialSend(0, e) from e
        finally:
            os.close(lock_fd)

    def close(self) -> None:
        pass


class UdpDestination:
    """One datagram per message to ``host:port``. Best effort by nature: a server that is down is
    noticed when its host answers "port unreachable" (at once on loopback); datagrams lost on the
    way are not. Use TCP where loss matters."""

    kind = "udp"

    def __init__(self, host: str, port: int, *, max_bytes: int = DEFAULT_UDP_MAX):
        self.host, self.port, self.max_bytes = host, int(port), int(max_bytes)
        self.name = f"udp:{host}:{port}"
        self._sock: Optional[socket.socket] = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            info = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_DGRAM)[0]
            s = socket.socket(info[0], socket.SOCK_DGRAM)
            s.connect(info[4])  # a connected socket receives the ICMP errors
            self._sock = s
        return self._sock

    def send(self, lines: Sequence[str]) -> None:
        sent = 0
        try:
            s = self._connect()
            for ln in lines:
                s.send(_utf8_cut(ln, self.max_bytes).encode("utf-8"))
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    raise OSError(err, os.strerror(err))
                sent += 1
        except OSError as e:
            self.close()
            raise _PartialSend(sent, e) from e

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class TcpDestination:
    """Messages over one TCP connection, RFC 6587 octet-counting framing (``LEN SP MSG``), or
    ``framing="lf"`` (one line each; safe because a message never contains a newline).

    Delivery is "handed to the kernel": a server dying with data in flight can lose that data
    (plain syslog over TCP has no acknowledgements). A connection the server closed is noticed
    before sending and reopened."""

    kind = "tcp"

    def __init__(self, host: str, port: int, *, timeout: float = 5.0, framing: str = "octet-counting"):
        if framing not in ("octet-counting", "lf"):
            raise ValueError("framing must be 'octet-counting' or 'lf'")
        self.host, self.port, self.timeout, self.framing = host, int(port), float(timeout), framing
        self.name = f"tcp:{host}:{port}"
        self._sock: Optional[socket.socket] = None

    def _peer_closed(self, s: socket.socket) -> bool:
        try:
            r, _, _ = select.select([s], [], [], 0)
            if not r:
                return False
            return s.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _connect(self) -> socket.socket:
        if self._sock is not None and self._peer_closed(self._sock):
            self.close()
        if self._sock is None:
            self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        return self._sock

    def _frame(self, line: str) -> bytes:
        b = line.encode("utf-8")
        return (str(len(b)).encode() + b" " + b) if self.framing == "octet-counting" else b + b"\n"

    def send(self, lines: Sequence[str]) -> None:
        if not lines:
            return
        try:
            s = self._connect()
            s.sendall(b"".join(self._frame(ln) for ln in lines))
        except OSError as e:
            self.close()
            raise _PartialSend(0, e) from e  # unknown how much arrived: resend all (at least once)

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def parse_remote(spec: str, *, udp_max_bytes: int = DEFAULT_UDP_MAX, timeout: float = 5.0,
                 tcp_framing: str = "octet-counting"):
    """``udp://host:514``, ``tcp://host:601``, ``host:port`` (UDP) or ``[::1]:514`` -> a destination."""
    s = spec if "://" in spec else "udp://" + spec
    u = urlsplit(s)
    if u.scheme not in ("udp", "tcp") or not u.hostname:
        raise ValueError(f"invalid syslog server {spec!r}: use udp://host:port or tcp://host:port")
    try:
        port = u.port or 514
    except ValueError:
        raise ValueError(f"invalid port in syslog server {spec!r}") from None
    if u.scheme == "udp":
        return UdpDestination(u.hostname, port, max_bytes=udp_max_bytes)
    return TcpDestination(u.hostname, port, timeout=timeout, framing=tcp_framing)


def _rewrite(path: Path, item: Any) -> None:
    """Replace a spool item in place, atomically (temporary file, fsync, rename)."""
    write_atomic(path, json.dumps(item, ensure_ascii=False).encode("utf-8"), mode=0o640)


# --- the sink --------------------------------------------------------------------------------

_SPOOL_CHUNK = 1000  # lines per spool item


class SyslogSink:
    """Formats records once and hands the lines to each destination, spooling what fails.

    ``path``: the local file (``None`` for none); ``remote``: ``udp://host:port`` /
    ``tcp://host:port`` or ``None``. ``format``: ``"rfc5424"`` or ``"cef"`` (CEF text as the MSG of
    an RFC 5424 header, the usual way to ship CEF over syslog). ``select``: which records become
    messages - ``"anomalies"`` (default), ``"outliers"`` (anomalies and DBSCAN noise) or ``"all"``.
    """

    def __init__(self, path: Optional[os.PathLike | str] = "anomaly.syslog", *, remote: Optional[str] = None,
                 format: str = "rfc5424", select: str = "anomalies", hostname: Optional[str] = None,
                 facility: Any = "local0", max_bytes: int = 50 * 1024 * 1024, backup_count: int = 7,
                 daily: bool = True, utc: bool = False, udp_max_bytes: int = DEFAULT_UDP_MAX,
                 tcp_framing: str = "octet-counting", timeout: float = 5.0,
                 spool_dir: Optional[os.PathLike | str] = None, clock: Callable[[], float] = time.time,
                 field_cap: int = DEFAULT_FIELD_CAP, bom: bool = False, version: str = __version__):
        if format not in ("rfc5424", "cef"):
            raise ValueError("format must be 'rfc5424' or 'cef'")
        if select not in ("anomalies", "outliers", "all"):
            raise ValueError("select must be 'anomalies', 'outliers' or 'all'")
        if isinstance(facility, str):
            if facility not in FACILITIES:
                raise ValueError(f"unknown syslog facility {facility!r}")
            facility = FACILITIES[facility]
        if not 0 <= int(facility) <= 23:
            raise ValueError("syslog facility must be 0..23")
        self.format, self.select, self.facility = format, select, int(facility)
        self.hostname = hostname or socket.gethostname()
        self.clock, self.field_cap, self.bom, self.version = clock, field_cap, bom, version
        self.destinations: List[Any] = []
        if path is not None:
            self.destinations.append(FileDestination(path, max_bytes=max_bytes, backup_count=backup_count,
                                                     daily=daily, utc=utc, clock=clock))
        if remote:
            self.destinations.append(parse_remote(remote, udp_max_bytes=udp_max_bytes, timeout=timeout,
                                                  tcp_framing=tcp_framing))
        if not self.destinations:
            raise ValueError("SyslogSink needs a file path, a remote server, or both")
        base = Path(spool_dir) if spool_dir is not None else None
        self.spools: Dict[str, Spool] = {}
        for d in self.destinations:
            key = re.sub(r"[^A-Za-z0-9_.-]", "_", d.name)[-80:]
            self.spools[d.name] = Spool(base / key if base is not None else default_spool_dir("syslog", d.name))

    # -- formatting ----------------------------------------------------------------------------
    def _wanted(self, record: Mapping[str, Any], cluster: Optional[int]) -> bool:
        if self.select == "all":
            return True
        if record.get("anomaly"):
            return True
        return self.select == "outliers" and _cluster(record, cluster) == -1

    def format_record(self, record: Mapping[str, Any], cluster: Optional[int] = None,
                      *, field_cap: Optional[int] = None, msg_cap: int = DEFAULT_MSG_CAP) -> str:
        cap = field_cap or self.field_cap
        now = self.clock()
        if self.format == "cef":
            cef = format_cef(record, cluster=cluster, version=self.version, field_cap=cap, now=now)
            msgid = "anomaly" if record.get("anomaly") else "score"
            return (f"<{_pri(self.facility, record.get('severity'))}>1 {_rfc3339(_event_time(record, now))} "
                    f"{_printusascii(self.hostname, 255)} {APP_NAME} {_printusascii(os.getpid(), 128)} {msgid} "
                    f"{NILVALUE} {cef}")
        return format_rfc5424(record, cluster=cluster, hostname=self.hostname, facility=self.facility,
                              now=now, field_cap=cap, msg_cap=msg_cap, bom=self.bom)

    def _fit(self, record: Mapping[str, Any], cluster: Optional[int], line: str, max_bytes: int) -> str:
        """A line of at most ``max_bytes`` UTF-8 bytes that is still well-formed: shorter field
        values first, then a shorter MSG; the last resort cut never splits a character."""
        if len(line.encode("utf-8")) <= max_bytes:
            return line
        for cap, msg_cap in ((256, 512), (64, 128), (16, 32)):
            line = self.format_record(record, cluster, field_cap=min(cap, self.field_cap), msg_cap=msg_cap)
            if len(line.encode("utf-8")) <= max_bytes:
                return line
        return _utf8_cut(line, max_bytes)

    # -- delivery ------------------------------------------------------------------------------
    def _spool_lines(self, dest: Any, lines: Sequence[str]) -> int:
        spool = self.spools[dest.name]
        k = 0
        for i in range(0, len(lines), _SPOOL_CHUNK):
            spool.put({"lines": list(lines[i:i + _SPOOL_CHUNK])})
            k += 1
        return k

    def _drain(self, dest: Any) -> Tuple[int, Optional[BaseException]]:
        """Resend spooled lines in order; (messages sent, error that stopped it)."""
        spool = self.spools[dest.name]
        n = 0
        for path, item in spool.items():
            lines = item.get("lines") if isinstance(item, dict) else None
            if not isinstance(lines, list):
                os.replace(path, path.with_suffix(".bad"))
                continue
            try:
                dest.send(lines)
            except _PartialSend as e:
                if e.sent:  # keep only what did not go out, still at the head of the queue
                    _rewrite(path, {"lines": lines[e.sent:]})
                    n += e.sent
                return n, e.error
            spool.ack(path)
            n += len(lines)
        return n, None

    def emit(self, records: Iterable[Mapping[str, Any]], clusters: Optional[Mapping[str, Any]] = None) -> Dict[str, int]:
        """Send the selected records to every destination (spooled ones first).

        Returns counts (``selected``, ``skipped``, ``resent``, ``spooled`` lines). If a
        destination failed, its lines are spooled and :class:`SyslogUnavailableError` is raised
        after all destinations were tried (its ``counts`` holds the same dict).
        """
        counts = {"selected": 0, "skipped": 0, "resent": 0, "spooled": 0}
        chosen: List[Tuple[Mapping[str, Any], Optional[int]]] = []
        for rec in records:
            if not isinstance(rec, Mapping):
                counts["skipped"] += 1
                continue
            c = None
            if clusters is not None and rec.get("id") is not None:
                c = _cluster({"cluster": clusters.get(str(rec.get("id")))}, None)
            if self._wanted(rec, c):
                chosen.append((rec, c))
            else:
                counts["skipped"] += 1
        counts["selected"] = len(chosen)
        lines = [self.format_record(r, c) for r, c in chosen]
        failures: List[str] = []
        spooled_items = 0
        for dest in self.destinations:
            out = lines
            if isinstance(dest, UdpDestination):
                out = [self._fit(r, c, ln, dest.max_bytes) for (r, c), ln in zip(chosen, lines)]
            try:
                resent, err = self._drain(dest)
                counts["resent"] += resent
                if err is not None:
                    raise _PartialSend(0, err)
                dest.send(out)
            except _PartialSend as e:
                rest = out[e.sent:]
                try:
                    spooled_items += self._spool_lines(dest, rest)
                except SpoolError as se:
                    raise SyslogOutputError(f"syslog {dest.name} failed ({e.error}) and its spool too: {se}",
                                            destination=dest.name) from se
                counts["spooled"] += len(rest)
                failures.append(f"{dest.name}: {' '.join(str(e.error).split())[:200]}")
        if failures:
            err = SyslogUnavailableError(
                "syslog destination(s) unavailable, messages kept for the next attempt: " + "; ".join(failures),
                destination=", ".join(f.split(": ")[0] for f in failures), spooled=spooled_items)
            err.counts = counts
            raise err
        return counts

    def flush_spool(self) -> int:
        """Resend every destination's spooled messages; returns how many went out.
        Raises :class:`SyslogUnavailableError` if a destination is still down."""
        total, failures = 0, []
        for dest in self.destinations:
            n, err = self._drain(dest)
            total += n
            if err is not None:
                failures.append(f"{dest.name}: {err}")
        if failures:
            raise SyslogUnavailableError("syslog destination(s) still unavailable: " + "; ".join(failures),
                                         destination=", ".join(f.split(": ")[0] for f in failures))
        return total

    def pending(self) -> Dict[str, int]:
        """Spooled messages per destination."""
        out = {}
        for dest in self.destinations:
            n = 0
            for _p, item in self.spools[dest.name].items():
                n += len(item.get("lines", [])) if isinstance(item, dict) else 0
            out[dest.name] = n
        return out

    def close(self) -> None:
        for d in self.destinations:
            d.close()

    def __enter__(self) -> "SyslogSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
