"""Clients cannot take the resident scorer's memory or its door (issue 17 item 5): unread answers
are capped per connection, idle connections are closed, a new client at the connection limit
takes the place of the longest-idle one, and reload requests are throttled."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from test_serve_support import Daemon, Scratch, wait_until

from mimizuku.integratord import client
from mimizuku.serve import server as serve


@pytest.fixture
def scratch():
    s = Scratch()
    yield s
    s.close()


def _conn(path, timeout=10.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def _ping(s, rid="p"):
    s.sendall(json.dumps({"id": rid, "op": "ping"}).encode() + b"\n")
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            return None
        buf += chunk
    return json.loads(buf)


def _closed_by_peer(s):
    """Whether the scorer closed ``s`` (EOF, after whatever it had sent), before its timeout."""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return True
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_answers_a_client_leaves_unread_are_capped_and_it_is_closed_if_it_never_reads(scratch):
    cap = 64 * 1024
    d = Daemon(scratch.config(reply_cap=cap, reply_stall_timeout=1.0, idle_timeout=0), wait_model=False)
    s = _conn(d.server.cfg.socket, timeout=30)
    requests = b"".join(json.dumps({"id": i, "op": "status"}).encode() + b"\n" for i in range(20_000))

    def flood():
        try:
            s.sendall(requests)          # blocks once the scorer stops reading: that is the point
        except OSError:
            pass

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    try:
        answer = len(json.dumps(d.server.status())) + 4096
        most = 0
        end = time.monotonic() + 30
        while time.monotonic() < end and d.server.status()["connections"]:
            most = max(most, d.server.status()["unsent_answer_bytes"])
            time.sleep(0.01)
        # 20,000 status answers (~30 MB) were asked for; never more than the cap and one answer held
        assert 0 < most <= cap + answer, most
        assert d.server.status()["connections"] == 0                # it never read: closed
        assert any("unread" in m for _, m in d.server.errors)
        assert client.call(d.server.cfg.socket, {"op": "ping"})["status"] == "pong"
    finally:
        s.close()
        t.join(10)
        d.stop()


def test_a_client_that_reads_slowly_gets_every_answer(scratch):
    """The cap only pauses reading: a client that does read gets all its answers, in order."""
    d = Daemon(scratch.config(reply_cap=64 * 1024, reply_stall_timeout=5.0, idle_timeout=0), wait_model=False)
    s = _conn(d.server.cfg.socket, timeout=30)
    n = 3000
    t = threading.Thread(target=s.sendall, daemon=True,
                         args=(b"".join(json.dumps({"id": i, "op": "status"}).encode() + b"\n" for i in range(n)),))
    t.start()
    try:
        got, buf = [], b""
        while len(got) < n:
            chunk = s.recv(8192)
            assert chunk, f"closed after {len(got)} answers"
            buf += chunk
            *lines, buf = buf.split(b"\n")
            got.extend(json.loads(x)["id"] for x in lines if x)
        assert got == list(range(n))
    finally:
        s.close()
        t.join(10)
        d.stop()


def test_an_idle_connection_is_closed_after_the_idle_timeout(scratch):
    d = Daemon(scratch.config(idle_timeout=0.5), wait_model=False)
    try:
        quiet = _conn(d.server.cfg.socket)
        assert _ping(quiet)["status"] == "pong"
        half = _conn(d.server.cfg.socket)
        half.sendall(b'{"id": "half", "op": "pi')              # stops in the middle of a line
        t0 = time.monotonic()
        assert _closed_by_peer(quiet) and _closed_by_peer(half)
        assert time.monotonic() - t0 < 9
        assert client.call(d.server.cfg.socket, {"op": "ping"})["status"] == "pong"
    finally:
        d.stop()


def test_at_the_connection_limit_a_new_client_takes_the_place_of_the_longest_idle(scratch):
    d = Daemon(scratch.config(max_connections=3, idle_timeout=0), wait_model=False)
    conns = []
    try:
        for i in range(3):
            conns.append(_conn(d.server.cfg.socket))
            assert _ping(conns[-1], f"c{i}")["status"] == "pong"
        late = _conn(d.server.cfg.socket)
        assert _ping(late, "late") == {"id": "late", "ok": True, "status": "pong"}   # was: overloaded
        conns[0].settimeout(5)
        assert _closed_by_peer(conns[0])                       # the oldest idle one made room
        assert _ping(conns[1], "still")["status"] == "pong"
        assert d.server.status()["connections"] == 3
    finally:
        for c in conns:
            c.close()
        d.stop()


def test_reload_requests_are_throttled_and_coalesced(scratch):
    srv = serve.Server(scratch.config(reload_interval=0.5))
    forced = []
    srv.check_model = lambda force=False: forced.append(force)
    try:
        said = []
        for _ in range(20):                      # a client asking in a loop
            said.append(srv.request_reload())
            srv.reload_if_requested()
        assert forced == [True]                  # one load, not twenty
        assert said[0] == "reload requested" and set(said[1:]) == {"throttled"}
        assert wait_until(lambda: srv.reload_if_requested() or len(forced) == 2, 5)   # coalesced into one more
        time.sleep(0.6)
        srv.reload_if_requested()
        assert forced == [True, True]            # nothing more was asked
    finally:
        srv.scorer.handled.close()


def test_the_reload_request_says_when_it_was_throttled(scratch):
    d = Daemon(scratch.config(reload_interval=60), wait_model=False)
    try:
        path = d.server.cfg.socket
        assert client.call(path, {"op": "reload"})["status"] == "reload requested"
        assert client.call(path, {"op": "reload"})["status"] == "throttled"
    finally:
        d.stop()
