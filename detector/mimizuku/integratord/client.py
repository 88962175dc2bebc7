"""Client of the resident scorer's socket (``mimizuku serve``): hand over an alert, or ask anything.

Separate from the script's entry (:mod:`mimizuku.integratord.forward`) because more than the
script talks to the scorer: the full path of the call (:mod:`mimizuku.integratord.call`) when the
fast path did not try, ``mimizuku status``, the benches. Kept on the fast path's diet: what a bare
interpreter has already loaded plus the C module ``_socket`` -- no ``socket`` (its enums pull in
half the standard library), no ``json`` (pulls in ``re``) for :func:`deliver`; the wire format is
:mod:`mimizuku.integratord.protocol`'s.

Outcomes of :func:`deliver`:

* ``acked``: done, nothing else to do;
* ``unreachable``: the scorer certainly did not get the alert (no socket, refused, permission);
* ``uncertain``: it may have got it (no answer in time, connection lost after sending) -- the
  alert is spooled and the scorer, which remembers the ids it handled, drops the duplicate;
* ``refused``: it answered ``ok: false`` (not ready yet, not an alert, shutting down).
"""
import time

try:
    import _socket
except ImportError:  # pragma: no cover - every CPython on Linux has it
    import socket as _socket

from mimizuku.integratord import protocol

_TIMEOUTS = (TimeoutError, getattr(_socket, "timeout", TimeoutError))  # 3.9: socket.timeout

ACKED = "acked"
UNREACHABLE = "unreachable"
UNCERTAIN = "uncertain"
REFUSED = "refused"

#: Seconds to wait for the acknowledgement unless the options say otherwise (``socket_timeout``).
DEFAULT_ACK_TIMEOUT = 2.0
#: Kept free of the integration timeout for spooling when the scorer does not answer.
SPOOL_MARGIN = 1.5


def ack_timeout(integration_timeout, configured=None):
    """How long to wait for the acknowledgement, leaving time to spool within the timeout."""
    want = DEFAULT_ACK_TIMEOUT if configured is None else float(configured)
    return max(0.05, min(want, integration_timeout - SPOOL_MARGIN))


def connect(path, timeout):
    """A connected UNIX stream socket (``_socket``'s), ``timeout`` seconds at most to connect."""
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    s.settimeout(max(0.01, timeout))
    try:
        s.connect(path)
    except BaseException:
        s.close()
        raise
    return s


def read_line(s, deadline):
    """The next answer line (without its newline) before ``deadline`` (``time.monotonic()``)."""
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
        if len(buf) > protocol.MAX_LINE:
            raise ConnectionResetError("answer too long")


def deliver(socket_path, alert_line, timeout=DEFAULT_ACK_TIMEOUT):
    """Hand one alert (its JSON as one line of bytes) to the scorer and wait for the answer.

    Returns ``(outcome, answer)``: ``answer`` is the parsed response for ``refused``, the raw
    bytes of it for ``acked``, else the error text.
    """
    deadline = time.monotonic() + timeout
    rid = protocol.request_id().encode("ascii")
    req = protocol.score_request(rid, alert_line)
    try:
        s = connect(str(socket_path), timeout)
    except (FileNotFoundError, ConnectionRefusedError, PermissionError, NotADirectoryError) as e:
        return UNREACHABLE, "%s: %s" % (type(e).__name__, e)
    except OSError as e:  # timed out connecting (backlog full: the scorer is stuck), or odder
        outcome = UNCERTAIN if isinstance(e, _TIMEOUTS) else UNREACHABLE
        return outcome, "%s: %s" % (type(e).__name__, e)
    try:
        try:
            s.sendall(req)
            line = read_line(s, deadline)
        except (BrokenPipeError, ConnectionResetError) as e:
            return UNCERTAIN, "%s: %s" % (type(e).__name__, e)
        except OSError as e:
            return UNCERTAIN, "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()
    kind, answer = protocol.parse_answer(line, rid)
    if kind == protocol.ACK:
        return ACKED, answer
    if kind == protocol.REFUSAL:
        return REFUSED, answer
    return UNCERTAIN, answer


def call(socket_path, request, timeout=5.0):
    """Send any request object (``op`` status, ping, reload...) and return the parsed answer."""
    import json  # not on the fast path

    deadline = time.monotonic() + timeout
    s = connect(str(socket_path), timeout)
    try:
        s.sendall(protocol.encode_request(request))
        line = read_line(s, deadline)
    finally:
        s.close()
    return json.loads(line.decode("utf-8", "replace"))
