"""The fast path of ``custom-mimizuku``: hand the alert to the resident scorer, nothing more.

integratord starts the script once per alert and waits for it, so every millisecond of the call
is a millisecond of integratord's throughput. With the scorer running (``socket`` in the
options), a call only has to read its two files, hand the alert over
(:func:`mimizuku.integratord.client.deliver`) and wait for the acknowledgement: this module, the
client and the protocol load what a bare interpreter has already loaded plus two C modules
(``_socket``, ``_json``) -- nothing else of the standard library or of the package
(tests/test_scorer_client.py checks the list).

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

from mimizuku.integratord import client, protocol

#: Largest alert file the fast path forwards (bigger ones go the full path, which rejects them).
MAX_ALERT_BYTES = protocol.MAX_LINE - 256
#: the same bounds as the full path's (mimizuku.integratord.options), which this module must not import
MAX_OPTIONS_BYTES = 64 * 1024
DEFAULT_TIMEOUT = 10


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


def _argv_parts(argv):
    """(alert file, options file, timeout) read the way options.parse_argv reads them."""
    alert = argv[1] if len(argv) > 1 else ""
    options = ""
    ints = []
    for tok in argv[4:]:
        t = tok.strip()
        if not t or t.startswith(">") or t == "debug":
            continue
        if t.isascii() and t.isdigit():
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
    opts = protocol.loads(raw.decode("utf-8", "replace") or "{}")
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
    except Exception:  # noqa: BLE001 - e.g. RecursionError on a deep options file
        return None  # the full path reports it properly (and sets the alert aside if it must)
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.startswith(b"{"):
        return None
    if b"\n" in raw or b"\r" in raw:
        raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")  # only JSON whitespace can hold them
    outcome, _ = client.deliver(sock, raw, client.ack_timeout(timeout, configured))
    if outcome == client.ACKED:
        return 0
    from mimizuku.integratord.call import run

    return run(list(argv), resident=outcome, start=start)


if __name__ == "__main__":  # pragma: no cover
    code = forward(sys.argv)
    if code is None:
        from mimizuku.integratord.call import main

        code = main()
    sys.exit(code)
