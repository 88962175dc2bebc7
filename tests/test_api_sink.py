"""The POST /events sink: batching, pacing, spooling through every failure, nothing lost or doubled."""
from __future__ import annotations

import json
import os

import pytest
from fake_wazuh_api import FakeState, FakeWazuhAPI

from mimizuku.delivery import events
from mimizuku.delivery.api_sink import ApiEventSink, MessageError, RequestPacer, api_event, split_message
from mimizuku.delivery.queue_socket import QueueSink
from mimizuku.delivery.wazuh_api import WazuhAPI

USER, PASSWORD = "wazuh-wui", "S3cret.Pass+word"


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def message(n, agent=None):
    rec = {"id": f"alert-{n}", "score": 0.9, "anomaly": True, "severity": "high", "detector": "files",
           "reasons": [f"reason {n}: a:b|c"], "agent": agent or {"id": "000", "name": "manager"},
           "fields": {"path": f"/etc/file-{n}"}}
    return events.event_message(rec)


def payload_n(event):
    return int(json.loads(event)["mimizuku"]["source"]["alert_id"].split("-")[1])


def make_sink(fake_url, spool, *, clock=None, wall=None, limit=1000, window=60.0, log=None, password=PASSWORD,
              timeout=(1.0, 2.0), **kw):
    clock = clock or Clock()
    api = WazuhAPI(fake_url, USER, password, retries=0, timeout=timeout)
    pacer = RequestPacer(limit, window, clock=clock)
    kw.setdefault("linger", 0.0)
    return ApiEventSink(api, spool, pacer=pacer, clock=clock, wall=wall or (lambda: 1e12), log=log, **kw)


@pytest.fixture
def fake():
    with FakeWazuhAPI() as f:
        yield f


# --- the event text -------------------------------------------------------------------------------

def test_prefix_is_stripped_with_escaped_locations():
    msg = message(1, agent={"id": "017", "name": "web-1", "ip": "fe80::1"})
    q, loc, payload = split_message(msg)
    assert q == "1" and loc == "[017] (web-1) fe80::1->mimizuku"
    assert json.loads(payload)["mimizuku"]["reasons"] == ["reason 1: a:b|c"]
    raw = b"1:" + events.escape_location("odd|name:with:colons").encode() + b':{"a":"x:y"}'
    assert split_message(raw) == ("1", "odd|name:with:colons", '{"a":"x:y"}')
    assert api_event(b"1:mimizuku:{}") == "{}"
    for bad in (b"", b"1", b"x-no-colon", b"1:no-end-of-location"):
        with pytest.raises(MessageError):
            split_message(bad)


# --- pacing -------------------------------------------------------------------------------------------

def test_pacer_is_a_sliding_window():
    c = Clock(0.0)
    p = RequestPacer(3, 10.0, clock=c)
    for t in (0.0, 1.0, 2.0):
        c.t = t
        assert p.wait_time() == 0
        p.record()
    assert p.wait_time() == pytest.approx(8.0)
    c.t = 10.0
    assert p.wait_time() == 0     # the request at 0.0 left the window
    p.record()
    assert p.wait_time() == pytest.approx(1.0)


def test_never_more_requests_than_the_pacer_allows(fake, tmp_path):
    fake.state.events_limit = 3         # the server refuses a 4th request within its minute
    clock = Clock()
    sink = make_sink(fake.url, tmp_path / "spool", clock=clock, limit=3, batch_size=10, linger=3600,
                     wall=lambda: 0.0)
    for n in range(60):
        sink.send(message(n))
    assert [x[2] for x in fake.state.log if x[1] == "/events"] == [200, 200, 200]
    assert len(fake.state.received) == 30 and sink.pending() == 30
    clock.t += 61
    fake.state.event_requests.clear()   # the server's minute has passed too
    assert sink.flush() == 30
    assert [payload_n(e) for e in fake.state.received] == list(range(60))
    assert 429 not in [x[2] for x in fake.state.log]


# --- batching -----------------------------------------------------------------------------------------

def test_batches_of_at_most_100_when_enough_are_waiting(fake, tmp_path):
    sink = make_sink(fake.url, tmp_path / "spool", linger=3600, wall=lambda: 0.0)
    for n in range(250):
        sink.send(message(n))
    assert len(fake.state.received) == 200 and sink.pending() == 50
    assert sink.flush(force=True) == 50
    # three requests (100, 100, 50): the fake refuses any request over 100 events with a 400
    assert [x[2] for x in fake.state.log if x[1] == "/events"] == [200, 200, 200]
    assert [payload_n(e) for e in fake.state.received] == list(range(250))


def test_a_small_batch_waits_for_the_linger(fake, tmp_path):
    wall = Clock(0.0)
    sink = make_sink(fake.url, tmp_path / "spool", linger=10.0, wall=wall)
    # spool names carry the real time; let the injected wall clock start there
    wall.t = __import__("time").time()
    for n in range(5):
        assert sink.send(message(n)) is False
    assert fake.state.received == [] and sink.pending() == 5
    wall.t += 11
    assert sink.flush() == 5
    assert sum(1 for x in fake.state.log if x[1] == "/events") == 1   # one request for all five


def test_send_says_true_when_delivered_at_once(fake, tmp_path):
    sink = make_sink(fake.url, tmp_path / "spool", batch_size=1)
    assert sink.send(message(1)) is True
    assert sink.pending() == 0 and len(fake.state.received) == 1


# --- failures: everything kept, resent in order, once -------------------------------------------------

def test_5xx_keeps_everything_and_backs_off(fake, tmp_path):
    clock = Clock()
    logs = []
    sink = make_sink(fake.url, tmp_path / "spool", clock=clock, batch_size=1, retry_base=2.0,
                     log=lambda lvl, m: logs.append((lvl, m)))
    fake.state.fail_next("/events", 503, count=1)
    assert sink.send(message(0)) is False
    n_requests = len(fake.state.log)
    for n in range(1, 4):
        assert sink.send(message(n)) is False
    assert len(fake.state.log) == n_requests      # backing off: no request during the backoff
    assert len([m for lvl, m in logs if lvl == "error"]) == 1   # reported once, not per event
    clock.t += 2.5
    assert sink.flush() == 4
    assert [payload_n(e) for e in fake.state.received] == [0, 1, 2, 3]
    assert any("accepts events again" in m for _, m in logs)


def test_429_from_the_server_is_honoured(fake, tmp_path):
    clock = Clock()
    sink = make_sink(fake.url, tmp_path / "spool", clock=clock)
    fake.state.fail_next("/events", 429, retry_after="30")
    sink.send(message(0))
    assert sink.pending() == 1 and sink.retry_at == pytest.approx(clock.t + 30)
    clock.t += 10
    assert sink.flush() == 0 and sum(1 for x in fake.state.log if x[1] == "/events") == 1
    clock.t += 21
    assert sink.flush() == 1 and sink.pending() == 0


def test_auth_failure_keeps_events_until_the_credentials_work(fake, tmp_path):
    clock = Clock()
    logs = []
    sink = make_sink(fake.url, tmp_path / "spool", clock=clock, password="wrong-Pass-42", auth_retry=60,
                     log=lambda lvl, m: logs.append(m))
    for n in range(3):
        sink.send(message(n))
    assert sink.pending() == 3 and fake.state.received == []
    assert fake.state.log.count(("POST", "/security/user/authenticate", 401)) == 1   # no hammering
    fake.state.users[USER] = "wrong-Pass-42"       # the admin fixes the user's password
    clock.t += 61
    assert sink.flush() == 3
    assert all("wrong-Pass-42" not in m and PASSWORD not in m for m in logs)
    assert any("authentication" in m for m in logs)


def test_timeout_keeps_the_events(fake, tmp_path):
    clock = Clock()
    sink = make_sink(fake.url, tmp_path / "spool", clock=clock, timeout=(1.0, 0.3))
    sink.api.authenticate()
    fake.state.delay_next("/events", 0.6, process=False)   # the request hangs and is dropped
    sink.send(message(0))
    assert sink.pending() == 1 and fake.state.received == []
    clock.t += 10
    assert sink.flush() == 1
    assert [payload_n(e) for e in fake.state.received] == [0]


def test_partial_failure_keeps_only_the_failed_events(fake, tmp_path):
    clock = Clock()
    sink = make_sink(fake.url, tmp_path / "spool", clock=clock, linger=3600, wall=lambda: 0.0)
    fake.state.fail_events(lambda e: payload_n(e) in (3, 7), code=1014)
    for n in range(10):
        sink.send(message(n))
    assert sink.flush(force=True) == 8
    assert sink.pending() == 2
    fake.state.event_failures.clear()
    clock.t += 1000
    assert sink.flush(force=True) == 2
    got = [payload_n(e) for e in fake.state.received]
    assert sorted(got) == list(range(10)) and len(got) == 10


def test_an_event_analysisd_can_never_take_is_set_aside_not_retried(fake, tmp_path):
    sink = make_sink(fake.url, tmp_path / "spool", linger=3600, wall=lambda: 0.0)
    fake.state.fail_events(lambda e: payload_n(e) == 1, code=1012, message="The event is too large")
    for n in range(3):
        sink.send(message(n))
    assert sink.flush(force=True) == 2
    assert sink.pending() == 0
    assert len(list((tmp_path / "spool").glob("*.rejected"))) == 1


def test_a_refused_batch_is_split_to_find_the_bad_event(fake, tmp_path):
    clock = Clock()
    sink = make_sink(fake.url, tmp_path / "spool", clock=clock, linger=3600, wall=lambda: 0.0)
    for n in range(5):
        sink.send(message(n))
    fake.state.refuse_events(lambda e: payload_n(e) == 2)
    assert sink.flush(force=True) == 0          # batch refused -> one at a time from now on
    clock.t += 1
    assert sink.flush(force=True) == 4          # the bad one is refused alone: set aside
    assert [payload_n(e) for e in fake.state.received] == [0, 1, 3, 4]
    assert len(list((tmp_path / "spool").glob("*.rejected"))) == 1 and sink.pending() == 0
    statuses = [x[2] for x in fake.state.log if x[1] == "/events"]
    assert statuses == [400, 200, 200, 400, 200, 200]   # singles for the refused batch only
    for n in range(5, 8):
        sink.send(message(n))
    sink.flush(force=True)
    assert [x[2] for x in fake.state.log if x[1] == "/events"][len(statuses):] == [200]   # batches again


# --- the big one: the server dies mid-stream, the process restarts -------------------------------------

def test_server_killed_mid_stream_every_event_arrives_exactly_once(tmp_path):
    state = FakeState()
    fake = FakeWazuhAPI(state)
    port = fake.port
    clock = Clock()
    spool = tmp_path / "spool"
    sink = make_sink(fake.url, spool, clock=clock, batch_size=7, linger=3600, wall=lambda: 0.0)
    for n in range(50):
        sink.send(message(n))
    sent_before = len(state.received)
    assert sent_before == 49                      # whole batches of 7 went out; one waits
    fake.stop()                                   # the manager's API goes down
    for n in range(50, 120):
        sink.send(message(n))
        clock.t += 0.5
    assert len(state.received) == sent_before
    sink.close()                                  # the scorer stops too (nothing to lose)
    assert sink.pending() == 120 - sent_before

    fake = FakeWazuhAPI(state, port=port)         # both come back
    try:
        sink2 = make_sink(fake.url, spool, clock=clock, batch_size=7, linger=3600, wall=lambda: 0.0)
        assert sink2.flush(force=True) == 120 - sent_before
        assert sink2.pending() == 0
    finally:
        fake.stop()
    got = [payload_n(e) for e in state.received]
    assert got == list(range(120))               # all, in order, none twice


def test_queue_sink_spool_is_drained_by_the_api_sink(fake, tmp_path):
    spool = tmp_path / "spool"
    q = QueueSink(tmp_path / "no-analysisd-here", spool)
    for n in range(4):
        assert q.send(message(n)) is False        # no socket: kept
    sink = make_sink(fake.url, spool)
    assert sink.flush() == 4
    assert [payload_n(e) for e in fake.state.received] == [0, 1, 2, 3]


# --- serve picks the sink -----------------------------------------------------------------------------

def test_serve_uses_the_api_sink_when_configured(tmp_path, monkeypatch):
    import argparse

    from mimizuku.integratord.options import OptionsError
    from mimizuku.serve.config import add_arguments, config_from_args
    from mimizuku.serve.pipeline import make_event_sink

    p = argparse.ArgumentParser()
    add_arguments(p)
    conf = tmp_path / "api.json"
    conf.write_text(json.dumps({"url": "https://127.0.0.1:55000", "user": USER, "password": PASSWORD}))
    os.chmod(conf, 0o644)
    a = p.parse_args(["--wazuh-home", str(tmp_path), "--sink", "api", "--api-config", str(conf)])
    with pytest.raises(OptionsError) as e:
        config_from_args(a)
    assert "chmod 600" in str(e.value) and PASSWORD not in str(e.value)
    os.chmod(conf, 0o600)
    cfg = config_from_args(a)
    assert cfg.sink == "api" and PASSWORD not in repr(cfg)
    sink = make_event_sink(cfg, lambda lvl, m: None)
    try:
        assert isinstance(sink, ApiEventSink) and sink.spool.directory == cfg.spool_dir / "events"
    finally:
        sink.api.close()
    a = p.parse_args(["--wazuh-home", str(tmp_path)])
    assert isinstance(make_event_sink(config_from_args(a), lambda lvl, m: None), QueueSink)
