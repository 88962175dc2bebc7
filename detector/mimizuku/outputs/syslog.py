"""Scored records as syslog: RFC 5424 lines (or CEF) to a rotated local file and/or a remote server.

The messages themselves (escaping, RFC 5424 and CEF, the cut to a byte cap) are
``outputs.syslog_format``'s; its public names are re-exported here. Every destination caps the
whole message in BYTES (``max_message_bytes``, 8,096 by default: rsyslog's own limit), because a
receiver that cuts a longer one may make a new record of the rest (rsyslog's imtcp does): the
sink formats each record to fit (well-formed, the cut named in the record) and each destination
cuts any longer line on a character boundary as a last line of defence (a line spooled under a
larger cap).

Destinations: a local file (``anomaly.syslog``) rotated by size and/or day with ``backup_count``
old files kept (``anomaly.syslog.1`` is the newest), safe across restarts because the day of a file
is read from its modification time; a remote server over UDP (one datagram per message, at most
``udp_max_bytes``, paced by a token bucket so a burst does not overflow the receiver's socket
buffer) or TCP (RFC 6587 octet counting, which rsyslog's imtcp detects by default; or one line
each). What a destination cannot take now is kept in its own durable spool and re-sent first, in
order, by the next ``emit`` or ``flush_spool`` (at least once). UDP cannot confirm delivery: the
counts say "sent", never "delivered". Standard library only.
"""
from __future__ import annotations

import json
import os
import re
import select
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from mimizuku._version import __version__
from mimizuku.core.atomic import write_atomic
from mimizuku.core.spool import Spool, SpoolError
from mimizuku.outputs import (
    OutputError,
    OutputUnavailableError,
    default_spool_dir,
)
from mimizuku.outputs.syslog_format import (
    CEF_SEVERITY,
    DEFAULT_FIELD_CAP,
    DEFAULT_MAX_BYTES,
    DEFAULT_MSG_CAP,
    DEFAULT_UDP_MAX,
    FACILITIES,
    MIN_MAX_BYTES,
    SD_ID,
    SEVERITY_CODES,
    Message,
    build_cef_syslog,
    build_rfc5424,
    check_max_bytes,
    escape_controls,
    format_cef,
    format_rfc5424,
    record_cluster,
    sd_escape,
    utf8_cut,
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
    "TokenBucket",
    "sent_text",
    "format_rfc5424",
    "format_cef",
    "escape_controls",
    "sd_escape",
    "SD_ID",
    "FACILITIES",
    "SEVERITY_CODES",
    "CEF_SEVERITY",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_UDP_MAX",
    "DEFAULT_UDP_RATE",
    "MIN_MAX_BYTES",
]

#: UDP datagrams per second by default: a 2,402-record burst takes ~1.2 s instead of flooding
#: the receiver's socket buffer (an unpaced burst lost 30-35 % at rsyslog's imudp)
DEFAULT_UDP_RATE = 2000.0

class SyslogOutputError(OutputError):
    """Base of the syslog sink's errors."""


class SyslogUnavailableError(SyslogOutputError, OutputUnavailableError):
    """A destination (file, server) could not take the messages; they are in its spool."""


# --- destinations ----------------------------------------------------------------------------

class _PartialSend(Exception):
    """``sent`` messages went out before ``error`` stopped the rest."""

    def __init__(self, sent: int, error: BaseException):
        super().__init__(str(error))
        self.sent, self.error = sent, error


def _message_bytes(line: str, cap: int) -> bytes:
    """The line as UTF-8, cut on a character boundary to ``cap`` bytes: the last line of defence
    (the sink already formats each record to fit; a line spooled under a larger cap may not)."""
    b = line.encode("utf-8")
    return b if len(b) <= cap else utf8_cut(line, cap).encode("utf-8")


class TokenBucket:
    """At most ``rate`` events per second on average and ``burst`` at once: :meth:`take` before
    each event sleeps just long enough. A UDP burst faster than the receiver drains its socket
    buffer is dropped by the receiver's kernel without a word to the sender; pacing is the one
    remedy a sender has. ``rate`` 0 or less: unpaced. ``clock``/``sleep`` are injectable (tests)."""

    def __init__(self, rate: float, burst: Optional[float] = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.rate = float(rate)
        self.burst = float(burst) if burst else max(1.0, self.rate / 50)  # 20 ms worth at once
        self.clock, self.sleep = clock, sleep
        self.tokens = self.burst
        self.last: Optional[float] = None
        self.slept = 0.0  # total seconds the pacing held the sender back

    def _refill(self) -> None:
        now = self.clock()
        if self.last is not None:
            self.tokens = min(self.burst, self.tokens + max(0.0, now - self.last) * self.rate)
        self.last = now

    def take(self) -> None:
        if self.rate <= 0:
            return
        self._refill()
        if self.tokens < 1.0:
            delay = (1.0 - self.tokens) / self.rate
            self.sleep(delay)
            self.slept += delay
            self._refill()
            self.tokens = max(self.tokens, 1.0)  # the wait paid for this one, whatever the clock says
        self.tokens -= 1.0


class FileDestination:
    """Appends lines to a file and rotates it by size and/or day, keeping ``backup_count`` old files.

    The day a file belongs to is its modification time (set from ``clock`` on every write), so a
    restarted process keeps appending to today's file and rotates yesterday's: no state file. A
    lock file serialises writers (the resident scorer and the nightly job may share one file).
    """

    kind = "file"

    def __init__(self, path: os.PathLike | str, *, max_bytes: int = 50 * 1024 * 1024, backup_count: int = 7,
                 daily: bool = True, utc: bool = False, clock: Callable[[], float] = time.time,
                 mode: int = 0o640, fsync: bool = False, message_bytes: int = DEFAULT_MAX_BYTES):
        self.path = Path(path)
        self.message_bytes = int(message_bytes)  # one line's cap, newline not counted
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
            data = [_message_bytes(ln, self.message_bytes) + b"\n" for ln in lines]
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
    """One datagram per message to ``host:port``, at most ``max_bytes`` bytes, at most ``rate``
    per second (:class:`TokenBucket`; 0: unpaced). Best effort by nature: a server that is down is
    noticed when its host answers "port unreachable" (at once on loopback); datagrams lost on the
    way or dropped by a receiver too busy to read them are not. Use TCP where loss matters."""

    kind = "udp"

    def __init__(self, host: str, port: int, *, max_bytes: int = DEFAULT_UDP_MAX, rate: float = DEFAULT_UDP_RATE,
                 burst: Optional[float] = None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.host, self.port, self.max_bytes = host, int(port), int(max_bytes)
        self.message_bytes = self.max_bytes
        self.pacer = TokenBucket(rate, burst, clock=clock, sleep=sleep)
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
                self.pacer.take()
                s.send(_message_bytes(ln, self.max_bytes))
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
    ``framing="lf"`` (one line each; safe because a message never contains a newline). rsyslog's
    imtcp takes both on the same port by default (a frame starting with a digit is octet-counted).
    Each message is at most ``message_bytes`` bytes, framing not counted: imtcp makes a NEW record
    of whatever follows its maxMessageSize in either framing.

    Delivery is "handed to the kernel": a server dying with data in flight can lose that data
    (plain syslog over TCP has no acknowledgements). A connection the server closed is noticed
    before sending and reopened."""

    kind = "tcp"

    def __init__(self, host: str, port: int, *, timeout: float = 5.0, framing: str = "octet-counting",
                 message_bytes: int = DEFAULT_MAX_BYTES):
        if framing not in ("octet-counting", "lf"):
            raise ValueError("framing must be 'octet-counting' or 'lf'")
        self.host, self.port, self.timeout, self.framing = host, int(port), float(timeout), framing
        self.message_bytes = int(message_bytes)
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
        b = _message_bytes(line, self.message_bytes)
        if self.framing == "octet-counting":
            return str(len(b)).encode() + b" " + b
        return b.replace(b"\n", b"#012") + b"\n"  # a newline would end the frame: never one inside

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
                 tcp_framing: str = "octet-counting", max_bytes: int = DEFAULT_MAX_BYTES,
                 udp_rate: float = DEFAULT_UDP_RATE):
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
        return UdpDestination(u.hostname, port, max_bytes=min(udp_max_bytes, max_bytes), rate=udp_rate)
    return TcpDestination(u.hostname, port, timeout=timeout, framing=tcp_framing, message_bytes=max_bytes)


def sent_text(counts: Mapping[str, Any], file: Any = None) -> str:
    """What :meth:`SyslogSink.emit`'s counts say was handed over, for a person: lines written to
    the file, messages sent over TCP, and datagrams SENT over UDP, which never confirms delivery
    (a receiver too busy to read drops them silently) - so no summary claims it."""
    parts = []
    if file and counts.get("sent_file", counts.get("selected")):
        parts.append(f"{counts.get('sent_file', counts.get('selected')):,} lines to {file}")
    if counts.get("sent_tcp"):
        parts.append(f"sent {counts['sent_tcp']:,} messages over TCP")
    if counts.get("sent_udp"):
        parts.append(f"sent {counts['sent_udp']:,} datagrams (UDP: delivery not confirmed)")
    if counts.get("truncated"):
        parts.append(f"{counts['truncated']:,} cut to the byte cap")
    if counts.get("spooled"):
        parts.append(f"{counts['spooled']:,} kept in the spool")
    return "; ".join(parts) or f"{counts.get('selected', 0):,} lines to the configured syslog"


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
    ``max_message_bytes``: every destination's cap of one whole message in bytes (default 8,096,
    rsyslog's); a UDP datagram is also at most ``udp_max_bytes``. ``udp_rate``: datagrams per
    second (0: unpaced). ``max_bytes`` is the local file's rotation size.
    """

    def __init__(self, path: Optional[os.PathLike | str] = "anomaly.syslog", *, remote: Optional[str] = None,
                 format: str = "rfc5424", select: str = "anomalies", hostname: Optional[str] = None,
                 facility: Any = "local0", max_bytes: int = 50 * 1024 * 1024, backup_count: int = 7,
                 daily: bool = True, utc: bool = False, udp_max_bytes: int = DEFAULT_UDP_MAX,
                 tcp_framing: str = "octet-counting", timeout: float = 5.0,
                 spool_dir: Optional[os.PathLike | str] = None, clock: Callable[[], float] = time.time,
                 field_cap: int = DEFAULT_FIELD_CAP, bom: bool = False, version: str = __version__,
                 max_message_bytes: int = DEFAULT_MAX_BYTES, udp_rate: float = DEFAULT_UDP_RATE):
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
        self.max_message_bytes = check_max_bytes(max_message_bytes, "max_message_bytes")
        check_max_bytes(udp_max_bytes, "udp_max_bytes")
        if isinstance(udp_rate, bool) or not isinstance(udp_rate, (int, float)) or not udp_rate >= 0:
            raise ValueError(f"udp_rate must be a number of datagrams per second >= 0, got {udp_rate!r}")
        self.format, self.select, self.facility = format, select, int(facility)
        self.hostname = hostname or socket.gethostname()
        self.clock, self.field_cap, self.bom, self.version = clock, field_cap, bom, version
        self.destinations: List[Any] = []
        if path is not None:
            self.destinations.append(FileDestination(path, max_bytes=max_bytes, backup_count=backup_count,
                                                     daily=daily, utc=utc, clock=clock,
                                                     message_bytes=self.max_message_bytes))
        if remote:
            self.destinations.append(parse_remote(remote, udp_max_bytes=udp_max_bytes, timeout=timeout,
                                                  tcp_framing=tcp_framing, max_bytes=self.max_message_bytes,
                                                  udp_rate=udp_rate))
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
        return self.select == "outliers" and record_cluster(record, cluster) == -1

    def build(self, record: Mapping[str, Any], cluster: Optional[int] = None, *,
              max_bytes: Optional[int] = None, field_cap: Optional[int] = None,
              msg_cap: int = DEFAULT_MSG_CAP) -> Message:
        """The record as one message of at most ``max_bytes`` (default ``max_message_bytes``)
        bytes, with the names of the parts cut to fit."""
        cap = field_cap or self.field_cap
        limit = self.max_message_bytes if max_bytes is None else max_bytes
        now = self.clock()
        if self.format == "cef":
            return build_cef_syslog(record, cluster=cluster, hostname=self.hostname, facility=self.facility,
                                    version=self.version, field_cap=cap, now=now, max_bytes=limit)
        return build_rfc5424(record, cluster=cluster, hostname=self.hostname, facility=self.facility,
                             now=now, field_cap=cap, msg_cap=msg_cap, bom=self.bom, max_bytes=limit)

    def format_record(self, record: Mapping[str, Any], cluster: Optional[int] = None,
                      *, field_cap: Optional[int] = None, msg_cap: int = DEFAULT_MSG_CAP,
                      max_bytes: Optional[int] = None) -> str:
        """The text of :meth:`build`."""
        return self.build(record, cluster, max_bytes=max_bytes, field_cap=field_cap, msg_cap=msg_cap).text

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

        Returns counts: ``selected``, ``skipped``, ``resent``, ``spooled`` lines, ``truncated``
        (records cut to fit a destination's byte cap) and ``sent_<kind>`` per destination kind
        (``sent_file``, ``sent_tcp``, ``sent_udp``: messages handed over, resent ones included;
        for UDP that is "sent", never "delivered"). If a destination failed, its lines are
        spooled and :class:`SyslogUnavailableError` is raised after all destinations were tried
        (its ``counts`` holds the same dict).
        """
        counts = {"selected": 0, "skipped": 0, "resent": 0, "spooled": 0, "truncated": 0}
        chosen: List[Tuple[Mapping[str, Any], Optional[int]]] = []
        for rec in records:
            if not isinstance(rec, Mapping):
                counts["skipped"] += 1
                continue
            c = None
            if clusters is not None and rec.get("id") is not None:
                c = record_cluster({"cluster": clusters.get(str(rec.get("id")))}, None)
            if self._wanted(rec, c):
                chosen.append((rec, c))
            else:
                counts["skipped"] += 1
        counts["selected"] = len(chosen)
        by_cap: Dict[int, List[Message]] = {}  # formatted once per byte cap (UDP's may be lower)
        for dest in self.destinations:
            if dest.message_bytes not in by_cap:
                by_cap[dest.message_bytes] = [self.build(r, c, max_bytes=dest.message_bytes) for r, c in chosen]
        cut = [False] * len(chosen)
        for messages in by_cap.values():
            cut = [a or bool(m.truncated) for a, m in zip(cut, messages)]
        counts["truncated"] = sum(cut)
        failures: List[str] = []
        spooled_items = 0
        for dest in self.destinations:
            out = [m.text for m in by_cap[dest.message_bytes]]
            sent_key = f"sent_{dest.kind}"
            counts.setdefault(sent_key, 0)
            try:
                resent, err = self._drain(dest)
                counts["resent"] += resent
                counts[sent_key] += resent
                if err is not None:
                    raise _PartialSend(0, err)
                dest.send(out)
                counts[sent_key] += len(out)
            except _PartialSend as e:
                counts[sent_key] += e.sent
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
