"""One alert that makes the scorer raise is set aside; the others are scored and the scorer goes on
(issue 17 item 4): from the socket, in a micro-batch with ordinary alerts, and from the spool at
start (where such an alert used to crash every restart)."""
from __future__ import annotations

import json
import socket

import pytest
from test_serve_support import Daemon, Scratch, traffic, wait_until

from mimizuku.core.spool import Spool
from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.context import ContextDetector
from mimizuku.engine.detectors.files import FileIntegrityDetector
from mimizuku.integratord import client, protocol
from mimizuku.serve import pipeline


@pytest.fixture
def scratch():
    s = Scratch()
    yield s
    s.close()


def _marked(alert, mark):
    alert.setdefault("data", {})["test_fault"] = mark
    return alert


def _mark(alert):
    data = alert.get("data")
    return data.get("test_fault") if isinstance(data, dict) else None


@pytest.fixture
def faults(monkeypatch):
    """Featurising raises for alerts marked "featurise", identifying for those marked "identify"
    (as the 990-deep alert did with RecursionError)."""
    for cls in (CommandDetector, ContextDetector, FileIntegrityDetector):
        real = cls.key

        def key(self, alert, _real=real):
            if _mark(alert) == "featurise":
                raise ValueError("featurising failed on this alert")
            return _real(self, alert)

        monkeypatch.setattr(cls, "key", key)
    real_key = pipeline.alert_key

    def alert_key(alert):
        if _mark(alert) == "identify":
            raise RecursionError("maximum recursion depth exceeded")
        return real_key(alert)

    monkeypatch.setattr(pipeline, "alert_key", alert_key)


def _quarantined(scratch):
    d = scratch.spool / "quarantine"
    return sorted(d.glob("*.alert")) if d.exists() else []


def _exchange(path, requests):
    """Send the requests in one write (so they are scored in one micro-batch), read the answers."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(path))
    s.sendall(b"".join(json.dumps(r).encode() + b"\n" for r in requests))
    buf = b""
    while buf.count(b"\n") < len(requests):
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    s.close()
    return {a["id"]: a for a in (json.loads(x) for x in buf.split(b"\n") if x)}


def test_an_alert_that_fails_is_quarantined_and_the_batch_and_the_scorer_go_on(scratch, faults):
    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config(max_batch=64))
    try:
        alerts = traffic(30, "q")
        _marked(alerts[10], "featurise")
        _marked(alerts[20], "identify")
        answers = _exchange(d.server.cfg.socket, [{"id": i, "op": "score", "alert": a} for i, a in enumerate(alerts)])
        assert len(answers) == 30 and all(a["ok"] for a in answers.values()), answers
        assert answers[10]["status"] == answers[20]["status"] == protocol.QUARANTINED
        assert {answers[i]["status"] for i in range(30) if i not in (10, 20)} == {protocol.SCORED}
        ids = col.wait_for(28, 20)                      # send "all": one event per scored alert
        assert sorted(ids) == sorted(a["id"] for i, a in enumerate(alerts) if i not in (10, 20))
        kept = _quarantined(scratch)
        assert sorted(json.loads(p.read_bytes())["id"] for p in kept) == ["q.10", "q.20"]
        reasons = " ".join(p.with_suffix(".reason").read_text() for p in kept)
        assert "featurising failed" in reasons and "RecursionError" in reasons
        st = d.server.status()
        assert st["counters"]["quarantined"] == 2 and d.thread.is_alive()
        # still serving, and the set-aside alerts are settled: a client's retry is a duplicate
        assert client.call(d.server.cfg.socket, {"op": "ping"})["status"] == "pong"
        again = _exchange(d.server.cfg.socket, [{"id": "again", "op": "score", "alert": alerts[10]}])
        assert again["again"]["status"] == protocol.DUPLICATE and d.server.counters.quarantined == 2
        more = traffic(3, "after")
        assert [client.deliver(str(d.server.cfg.socket), json.dumps(a).encode(), 10)[0] for a in more] == ["acked"] * 3
        assert d.server.counters.scored == 31
    finally:
        d.stop()
        col.close()


def test_a_spooled_alert_that_fails_is_quarantined_instead_of_crashing_every_restart(scratch, faults):
    scratch.install_version("v1")
    sp = Spool(scratch.spool / "alerts")
    alerts = traffic(6, "s")
    _marked(alerts[1], "identify")
    _marked(alerts[3], "featurise")
    for a in alerts:
        sp.put(a)
    col = scratch.analysisd()
    d = Daemon(scratch.config())                       # drains the spool before it is ready
    try:
        assert wait_until(lambda: scratch.spooled_alerts() == 0, 30)
        assert d.thread.is_alive() and d.server.ready
        assert sorted(col.wait_for(4, 20)) == ["s.0", "s.2", "s.4", "s.5"]
        kept = _quarantined(scratch)
        assert sorted(json.loads(p.read_bytes())["id"] for p in kept) == ["s.1", "s.3"]
        assert d.server.counters.quarantined == 2
    finally:
        assert d.stop() == 0
        col.close()
    d = Daemon(scratch.config())                       # a restart finds nothing to trip on
    try:
        assert d.thread.is_alive() and d.server.counters.quarantined == 0 and scratch.spooled_alerts() == 0
    finally:
        d.stop()


def test_when_the_quarantine_is_full_the_alert_stays_with_its_source(scratch, faults, monkeypatch):
    from mimizuku.core import quarantine

    def full(*a, **k):
        raise quarantine.QuarantineFull("quarantine is full (test)")

    monkeypatch.setattr(quarantine, "set_aside", full)
    scratch.install_version("v1")
    bad = traffic(2, "f")
    _marked(bad[0], "featurise")
    Spool(scratch.spool / "alerts").put(bad[0])
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    try:
        assert wait_until(lambda: scratch.spooled_alerts() == 0, 30)
        assert len(list((scratch.spool / "alerts").glob("*.bad"))) == 1     # renamed beside, logged
        assert any("left as" in m for _, m in d.server.errors)
        answers = _exchange(d.server.cfg.socket, [{"id": "x", "op": "score", "alert": _marked(bad[1], "featurise")}])
        assert answers["x"]["ok"] is False and answers["x"]["code"] == protocol.INTERNAL   # the client keeps it
        assert d.thread.is_alive() and d.server.counters.quarantined == 0
    finally:
        d.stop()
        col.close()


def test_the_deep_alert_of_the_audit_does_not_take_the_scorer_down(scratch):
    """The audit's case, without any injected fault: an alert nested 990 deep without a string
    ``id``, among ordinary ones. Whatever the engine makes of it, it is settled (scored or
    quarantined) and the others are scored."""
    scratch.install_version("v1")
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    try:
        deep = '{"d":' * 990 + '{"leaf":1}' + "}" * 990          # too deep for json.dumps here
        odd = ('{"id":2,"op":"score","alert":{"rule":{"id":"550","level":7},'
               '"agent":{"id":"003","name":"web-01"},"data":' + deep + "}}")
        alerts = traffic(4, "deep")
        reqs = [json.dumps({"id": i, "op": "score", "alert": a}) for i, a in zip((0, 1, 3, 4), alerts)]
        reqs.insert(2, odd)
        line = "".join(r + "\n" for r in reqs).encode()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        s.connect(str(d.server.cfg.socket))
        s.sendall(line)
        buf = b""
        while buf.count(b"\n") < len(reqs):
            chunk = s.recv(65536)
            assert chunk, "the scorer closed the connection"
            buf += chunk
        s.close()
        answers = {a["id"]: a for a in (json.loads(x) for x in buf.split(b"\n") if x)}
        assert all(answers[i]["ok"] and answers[i]["status"] == "scored" for i in (0, 1, 3, 4))
        assert answers[2]["ok"] and answers[2]["status"] in (protocol.SCORED, protocol.QUARANTINED)
        assert d.thread.is_alive()
        assert client.call(d.server.cfg.socket, {"op": "ping"})["status"] == "pong"
    finally:
        d.stop()
        col.close()


def test_a_truncated_spool_file_is_set_aside_as_bad_and_logged(scratch, caplog):
    """What a short write on a full disk used to leave (issue 17 item 11): the scorer renames it
    ``*.bad`` and says so, where it used to rename it without a word."""
    scratch.install_version("v1")
    sp = Spool(scratch.spool / "alerts")
    p = sp.put(traffic(1, "t")[0])
    p.write_bytes(p.read_bytes()[:40])
    col = scratch.analysisd()
    with caplog.at_level("INFO", logger="mimizuku"):
        d = Daemon(scratch.config())
        try:
            assert wait_until(lambda: scratch.spooled_alerts() == 0, 30)
        finally:
            d.stop()
            col.close()
    bad = p.with_suffix(".bad")
    assert bad.exists() and str(bad) in caplog.text and "unreadable" in caplog.text


def test_a_spooled_alert_the_decoder_fails_on_is_quarantined(scratch, monkeypatch):
    """Whole JSON that the decoder cannot take (nested past its depth: RecursionError, not a
    ValueError) is quarantined by the spool drain, byte for byte, and the loop goes on."""
    from mimizuku.serve import server as server_mod

    scratch.install_version("v1")
    sp = Spool(scratch.spool / "alerts")
    alerts = traffic(3, "d")
    paths = [sp.put(a) for a in alerts]
    poison = paths[1].read_bytes()
    real = server_mod._loads

    def loads(data):
        if data == poison:
            raise RecursionError("maximum recursion depth exceeded while decoding a JSON object")
        return real(data)

    monkeypatch.setattr(server_mod, "_loads", loads)
    col = scratch.analysisd()
    d = Daemon(scratch.config())
    try:
        assert wait_until(lambda: scratch.spooled_alerts() == 0, 30)
        assert d.thread.is_alive()
        assert sorted(col.wait_for(2, 20)) == ["d.0", "d.2"]
        assert [p.read_bytes() for p in _quarantined(scratch)] == [poison]
        assert d.server.counters.quarantined == 1
    finally:
        assert d.stop() == 0
        col.close()
