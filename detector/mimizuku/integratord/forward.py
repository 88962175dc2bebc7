"""Client of the resident scorer (``mimizuku serve``): the fast path of ``custom-mimizuku``.

integratord starts the script once per alert and waits for it, so every millisecond of the call
is a millisecond of integratord's throughput. With the scorer running, a call only has to hand the
alert over and wait for the acknowledgement: this module does that with what a bare interpreter
has already loaded plus two C modules (``_socket``, ``_json``) -- no ``socket`` (its enums pull in
half the standard library), no ``json`` (pulls in ``re``), nothing of the package but itself.

The protocol (docs/serve.md): one JSON object per line both ways over a UNIX stream socket.
Request ``{"id": "<id>", "op": "score", "alert": {...}}``; the response starts with
``{"id":"<id>","ok":`` and comes only once the alert was scored and its event sent or kept
(``"ok": true``), or when the scorer refuses it (``"ok": false``, with ``code`` and ``error``).

Outcomes of :func:`deliver`:

* ``acked``: done, nothing else to do;
* ``unreachable``: the scorer certainly did not get the alert (no socket, refused, permission);
* ``uncertain``: it may have got it (no answer in time, connection lost after sending) -- the
  alert is spooled and the scorer, which remembers the ids it handled, drops the duplicate;
* ``refused``: it answered ``ok: false`` (not ready yet, not an alert, shutting down).

:func:`forward` is what the script runs first; anything but an acknowledgement goes to the full
path (``mimizuku.integratord.call.run``), which spools the alert (and scores in-process only when the
options ask for that and the scorer was unreachable).
"""
import sys
import time

try:
    import posix as _os  # the C module behind os: os itself (and _collections_abc) cost a millisecond
except ImportError:  # pragma: no cover - not POSIX
    import os as _os

try:
    import _socket
except ImportError:  # pragma: no cover - every CPython on Linux has it
    import socket as _socket

try:
    import _json
except ImportError:  # pragma: no cover
    _json = None

_TIMEOUTS = (TimeoutError, getattr(_socket, "timeout", TimeoutError))  # 3.9: socket.timeout

ACKED = "acked"
UNREACHABLE = "unreachable"
UNCERTAIN = "uncertain"
REFUSED = "refused"

#: Largest request line the scorer accepts (alerts from integratord are below 64 KiB).
MAX_LINE = 1 << 20
#: Largest alert file the fast path forwards (bigger ones go the full path, which rejects them).
MAX_ALERT_BYTES = MAX_LINE - 256
MAX_OPTIONS_BYTES = 64 * 1024
#: Seconds to wait for the acknowledgement unless the options say otherwise (``socket_timeout``).
DEFAULT_ACK_TIMEOUT = 2.0
#: Kept free of the integration timeout for spooling when the scorer does not answer.
SPOOL_MARGIN = 1.5
DEFAULT_TIMEOUT = 10


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
    """``json.loads`` for small texts without importing ``json`` (and with it ``re``)."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(text)
    i = 0
    n = len(text)
    while i < n and text[i] in _WS:
        i += 1
    try:
        obj, end = _scan(text, i)
    except StopIteration as e:
        raise ValueError(f"invalid JSON at position {e.value}") from None
    while end < n and text[end] in _WS:
        end += 1
    if end != n:
        raise ValueError(f"extra data at position {end}")
    return obj


def _read_capped(path, limit):
    fd = _os.open(path, _os.O_RDONLY)
    try:
        chunks = []
        size = 0
        while True:
            b = _os.read(fd, min(65536, limit + 1 - size))
            if not b:
                break
            chunks.append(b)
            size += len(b)
            if size > limit:
                return None
        return b"".join(chunks)
    finally:
        _os.close(fd)


def request_id():
    """A request id unique enough on one host: pid, clock, counter (hex, no escaping needed)."""
    global _counter
    _counter += 1
    return "%x-%x-%x" % (_os.getpid(), time.time_ns() & 0xFFFFFFFFFFFF, _counter)


_counter = 0


def _connect(path, timeout):
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(max(0.01, timeout))
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def _read_line(s, deadline):
    buf = b""
    while True:
        nl = buf.find(b"\n")
        if nl >= 0:
            return buf[:nl]
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no answer in time")
        s.settimeout(left)
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionResetError("connection closed before the answer")
        buf += chunk
        if len(buf) > MAX_LINE:
            raise ConnectionResetError("answer too long")


def deliver(socket_path, alert_line, timeout=DEFAULT_ACK_TIMEOUT):
    """Hand one alert (its JSON as one line of bytes) to the scorer and wait for the answer.

    Returns ``(outcome, answer)``: ``answer`` is the parsed response for ``refused``, the raw
    bytes of it for ``acked``, else the error text.
    """
    deadline = time.monotonic() + timeout
    rid = request_id().encode("ascii")
    req = b'{"id":"' + rid + b'","op":"score","alert":' + alert_line + b"}\n"
    try:
        s = _connect(str(socket_path), timeout)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError, NotADirectoryError) as e:
        return UNREACHABLE, "%s: %s" % (type(e).__name__, e)
    except OSError as e:  # timed out connecting (backlog full: the scorer is stuck), or odder
        outcome = UNCERTAIN if isinstance(e, _TIMEOUTS) else UNREACHABLE
        return outcome, "%s: %s" % (type(e).__name__, e)
    try:
        try:
            s.sendall(req)
            line = _read_line(s, deadline)
        except (BrokenPipeError, ConnectionResetError) as e:
            return UNCERTAIN, "%s: %s" % (type(e).__name__, e)
        except OSError as e:
            return UNCERTAIN, "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()
    if line.startswith(b'{"id":"' + rid + b'","ok":true'):
        return ACKED, line
    try:
        answer = loads(line.decode("utf-8", "replace"))
    except ValueError:
        return UNCERTAIN, "unreadable answer"
    if not isinstance(answer, dict) or answer.get("id") != rid.decode():
        return UNCERTAIN, "answer to another request"
    if answer.get("ok") is True:
        return ACKED, line
    return REFUSED, answer


def call(socket_path, request, timeout=5.0):
    """Send any request object (``op`` status, ping, reload...) and return the parsed answer."""
    import json  # not on the fast path

    req = dict(request)
    req.setdefault("id", request_id())
    deadline = time.monotonic() + timeout
    s = _connect(str(socket_path), timeout)
    try:
        s.sendall(json.dumps(req, separators=(",", ":")).encode("utf-8") + b"\n")
        line = _read_line(s, deadline)
    finally:
        s.close()
    return json.loads(line.decode("utf-8", "replace"))


# --- the script's fast path ---------------------------------------------------------------------

def _argv_parts(argv):
    """(alert file, options file, timeout) read the way integration.parse_argv reads them."""
    alert = argv[1] if len(argv) > 1 else ""
    options = ""
    ints = []
    for tok in argv[4:]:
        t = tok.strip()
        if not t or t.startswith(">") or t == "debug":
            continue
        if t.isdigit():
            ints.append(int(t))
        elif not options:
            options = tok
    timeout = ints[0] if ints and ints[0] > 0 else DEFAULT_TIMEOUT
    return alert, options, timeout


def _wazuh_home(script):
    """The Wazuh directory the integration script sits in (``<home>/integrations/<script>``)."""
    import os

    return os.path.dirname(os.path.dirname(os.path.realpath(script)))


def _socket_option(options_file, script):
    """(socket path, ack timeout or None) from the options file; socket None when not set.
    A relative socket path is relative to the Wazuh directory of ``script``."""
    raw = _read_capped(options_file, MAX_OPTIONS_BYTES)
    if raw is None:
        return None, None
    opts = loads(raw.decode("utf-8", "replace") or "{}")
    if not isinstance(opts, dict):
        return None, None
    sock = opts.get("socket")
    if not isinstance(sock, str) or not sock or "\x00" in sock:
        return None, None
    if not sock.startswith("/"):
        sock = _wazuh_home(script).rstrip("/") + "/" + sock
    t = opts.get("socket_timeout")
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0:
        t = None
    return sock, t


def ack_timeout(integration_timeout, configured=None):
    """How long to wait for the acknowledgement, leaving time to spool within the timeout."""
    want = DEFAULT_ACK_TIMEOUT if configured is None else float(configured)
    return max(0.05, min(want, integration_timeout - SPOOL_MARGIN))


def forward(argv):
    """Run by ``integrations/custom-mimizuku`` before anything else.

    Returns the exit code when the call is settled here or by the full path after a failed
    attempt; None when the scorer is not configured (or the call is odd): run the full path.
    """
    start = time.monotonic()
    try:
        alert_file, options_file, timeout = _argv_parts(argv)
        if not alert_file or not options_file:
            return None
        sock, configured = _socket_option(options_file, argv[0])
        if sock is None:
            return None
        raw = _read_capped(alert_file, MAX_ALERT_BYTES)
    except (OSError, ValueError, UnicodeError):
        return None  # the full path reports it properly
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.startswith(b"{"):
        return None
    if b"\n" in raw or b"\r" in raw:
        raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")  # only JSON whitespace can hold them
    outcome, _ = deliver(sock, raw, ack_timeout(timeout, configured))
    if outcome == ACKED:
        return 0
    from mimizuku.integratord.call import run

    return run(list(argv), resident=outcome, start=start)


if __name__ == "__main__":  # pragma: no cover
    code = forward(sys.argv)
    if code is None:
        from mimizuku.integratord.call import main

        code = main()
    sys.exit(code)
