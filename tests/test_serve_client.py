"""``custom-mimizuku`` run by the integratord emulator against the resident scorer: daemon up,
down, slow, and restarted in the middle of a stream. Every alert must end up scored exactly once
(counted at the fake analysisd: ``send: all`` gives one event per scored alert), and every call
must exit 0 quickly enough for integratord. As root the script runs as user ``wazuh``."""
from __future__ import annotations

import json
import threading
import time

import pytest
from test_serve_support import Daemon, Scratch, traffic, wait_until, write_client_script
from wazuh_emulation import Integratord


@pytest.fixture
def env():
    s = Scratch(wazuh_user=True)
    s.install_version("v1")
    s.script = write_client_script(s)
    s.col = s.analysisd()
    yield s
    s.col.close()
    s.close()


def integratord(s, socket_timeout=2.0):
    opts = {"socket": str(s.run / "serve.sock"), "socket_timeout": socket_timeout, "send": "all",
            "spool_dir": str(s.spool)}
    return Integratord(s.script, options=json.dumps(opts), run_as=s.user, timeout=10)


def exactly_once(s, alerts, timeout=60):
    want = sorted(a["id"] for a in alerts)
    assert wait_until(lambda: len(s.col.ids()) >= len(want) and s.spooled_alerts() == 0, timeout), \
        (len(s.col.ids()), s.spooled_alerts())
    time.sleep(0.3)  # anything extra (a duplicate) would arrive now
    assert sorted(s.col.ids()) == want


def test_daemon_up_each_call_acknowledged(env):
    d = Daemon(env.config())
    try:
        itd = integratord(env)
        alerts = traffic(8, "up")
        calls = [itd.send(a) for a in alerts]
        assert [c.returncode for c in calls] == [0] * 8
        assert env.spooled_alerts() == 0          # nothing left behind: the scorer took each one
        exactly_once(env, alerts)
        assert itd.leftover_files == []
        # a malformed alert still goes the full path: rejected with exit 3, kept aside
        bad = itd.send('{"not": "an alert"}')
        assert bad.returncode == 3
        own = itd.send({"rule": {"id": "119004", "level": 10, "groups": ["mimizuku", "anomaly"]},
                        "id": "own.1", "data": {"integration": "mimizuku"}, "location": "mimizuku"})
        assert own.returncode == 0 and len(env.col.events) == 8
    finally:
        d.stop()


def test_daemon_down_alerts_spooled_then_scored_in_order(env):
    itd = integratord(env)
    alerts = traffic(6, "down")
    calls = [itd.send(a) for a in alerts]
    assert [c.returncode for c in calls] == [0] * 6
    assert env.spooled_alerts() == 6 and env.col.events == []
    log = (env.home / "logs" / "integrations.log").read_text()
    assert log.count("is not running") == 1        # logged once, not once per alert
    d = Daemon(env.config())
    try:
        exactly_once(env, alerts)
        assert env.col.ids() == [a["id"] for a in alerts]   # drained oldest first
    finally:
        d.stop()


def test_daemon_slow_alerts_spooled_and_not_scored_twice(env):
    d = Daemon(env.config())
    try:
        itd = integratord(env, socket_timeout=0.3)
        d.server.scorer.hold.set()                 # the scorer stalls
        alerts = traffic(4, "slow")
        calls = [itd.send(a) for a in alerts]
        assert [c.returncode for c in calls] == [0] * 4
        assert all(c.seconds < 5 for c in calls)
        assert env.spooled_alerts() == 4           # kept by the clients after the timeout
        d.server.scorer.hold.clear()               # it catches up: scores them, and the spooled copies are duplicates
        exactly_once(env, alerts)
        assert d.server.counters.duplicates == 4
    finally:
        d.stop()


def test_daemon_restarting_mid_stream(env):
    d = Daemon(env.config())
    itd = integratord(env, socket_timeout=1.0)
    alerts = traffic(40, "restart")
    codes = []

    def stream():
        for a in alerts:
            codes.append(itd.send(a).returncode)

    t = threading.Thread(target=stream)
    t.start()
    try:
        assert wait_until(lambda: len(codes) >= 10, 60)
        d.stop()                                   # graceful: accepted alerts are finished
        assert wait_until(lambda: len(codes) >= 20, 60)   # meanwhile clients spool
        d = Daemon(env.config())                   # back: drains the spool, then live again
        t.join(120)
        assert codes == [0] * 40
        exactly_once(env, alerts)
    finally:
        t.join(1)
        d.stop()
