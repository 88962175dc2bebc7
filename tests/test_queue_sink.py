"""Delivery to analysisd's queue socket: spool on every kind of failure, resend in order, log once."""
from __future__ import annotations

import errno
import os
import socket

import pytest
from wazuh_emulation import FakeAnalysisd

from mimizuku.delivery.queue_socket import TOO_BIG_SUFFIX, QueueSink


class Log(list):
    def __call__(self, level, message):
        self.append((level, message))


def msg(i: int) -> bytes:
    return b'1:mimizuku:{"integration":"mimizuku","mimizuku":{"n":%d}}' % i


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "queue", tmp_path / "spool"


def test_delivers_when_analysisd_listens(paths):
    sock, spool = paths
    with FakeAnalysisd(sock) as fa, QueueSink(sock, spool) as sink:
        assert sink.send(msg(1)) is True
        got = fa.receive(wait=1)
    assert [e.payload["mimizuku"]["n"] for e in got] == [1]
    assert sink.pending() == 0


def test_missing_socket_spools_logs_once_and_resends_in_order(paths):
    sock, spool = paths
    log = Log()
    with QueueSink(sock, spool, log=log) as sink:
        assert sink.send(msg(1)) is False
        assert sink.send(msg(2)) is False
    with QueueSink(sock, spool, log=log) as sink:  # a later process: still down
        assert sink.send(msg(3)) is False
        assert sink.pending() == 3
    errors = [m for lvl, m in log if lvl == "error"]
    assert len(errors) == 1 and "socket missing" in errors[0] and str(spool) in errors[0]

    with FakeAnalysisd(sock) as fa, QueueSink(sock, spool, log=log) as sink:
        assert sink.send(msg(4)) is True
        got = [e.payload["mimizuku"]["n"] for e in fa.receive(wait=1)]
    assert got == [1, 2, 3, 4]
    infos = [m for lvl, m in log if lvl == "info"]
    assert len(infos) == 1 and "reachable again" in infos[0]
    assert len([m for lvl, m in log if lvl == "error"]) == 1


def test_stale_socket_connection_refused_is_spooled(paths):
    sock, spool = paths
    log = Log()
    fa = FakeAnalysisd(sock)
    fa.stop()  # analysisd died, its socket file stayed
    with QueueSink(sock, spool, log=log) as sink:
        assert sink.send(msg(1)) is False
    assert sink.pending() == 1
    assert "connection refused" in log[0][1]
    os.unlink(sock)


def test_flush_alone_resends_and_respects_limit(paths):
    sock, spool = paths
    with QueueSink(sock, spool) as sink:
        for i in range(5):
            sink.send(msg(i))
    with FakeAnalysisd(sock) as fa, QueueSink(sock, spool) as sink:
        assert sink.flush(limit=2) == 2
        assert sink.pending() == 3
        assert sink.flush() == 3
        assert [e.payload["mimizuku"]["n"] for e in fa.receive(wait=1)] == [0, 1, 2, 3, 4]


def test_full_receiver_never_blocks_past_the_deadline(paths):
    import time

    sock, spool = paths
    n = 20
    with FakeAnalysisd(sock) as fa, QueueSink(sock, spool, send_timeout=0.05) as sink:
        fa.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        big = b"1:mimizuku:" + b"x" * 60_000
        results = [sink.send(big, deadline=time.monotonic() + 0.1) for _ in range(n)]
        assert False in results  # the receiver filled up: kept, not hung
        assert sink.pending() >= 1
        received = 0
        for _ in range(4 * n):
            received += len(fa.receive(wait=0.05))
            if not sink.pending():
                break
            sink.flush(deadline=time.monotonic() + 0.1)
        received += len(fa.receive(wait=0.05))
    assert sink.pending() == 0
    assert received == n  # every datagram arrived exactly once


def _emsgsize_supported(tmp_path) -> bool:
    a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.bind(str(tmp_path / "probe"))
    b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        b.connect(str(tmp_path / "probe"))
        b.send(b"x" * 8_000_000)
    except OSError as e:
        return e.errno == errno.EMSGSIZE
    finally:
        a.close()
        b.close()
    return False


def test_too_big_datagram_is_kept_aside_and_does_not_block_the_rest(paths, tmp_path):
    if not _emsgsize_supported(tmp_path):
        pytest.skip("kernel accepts 8 MB datagrams: cannot provoke EMSGSIZE")
    sock, spool = paths
    log = Log()
    with FakeAnalysisd(sock) as fa, QueueSink(sock, spool, log=log) as sink:
        assert sink.send(b"1:mimizuku:" + b"x" * 8_000_000) is False
        assert any("too large" in m for _, m in log)
        assert sink.send(msg(7)) is True  # flushes first: the giant is set aside
        got = fa.receive(wait=1)
    assert [e.payload["mimizuku"]["n"] for e in got] == [7]
    assert len(list(spool.glob("*" + TOO_BIG_SUFFIX))) == 1


def test_spool_that_cannot_be_written_is_an_error(paths, tmp_path):
    from mimizuku.core.spool import SpoolError

    sock, _ = paths
    blocker = tmp_path / "afile"
    blocker.write_text("not a directory")
    with QueueSink(sock, blocker / "spool") as sink:
        with pytest.raises(SpoolError):
            sink.send(msg(1))
