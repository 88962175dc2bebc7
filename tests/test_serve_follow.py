"""``mimizuku serve --follow``: alerts.json tailed by the daemon across a midnight relink and an
intra-day rotation, stopped, the day files relinked and gzipped while it is down, restarted: every
alert scored exactly once. And the daemon as a real process driven by signals (SIGHUP reload,
SIGTERM graceful stop with the bookmark persisted)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_follow import Analysisd
from test_serve_support import ROOT, Daemon, Scratch, traffic, wait_until

from mimizuku.sources.follow import Bookmark


@pytest.fixture
def scratch():
    s = Scratch()
    s.install_version("v1")
    s.col = s.analysisd()
    s.wz = Analysisd(s.base / "wz")
    yield s
    s.col.close()
    s.close()


def write(wz, alerts):
    with open(wz.current, "ab") as f:
        for a in alerts:
            f.write(json.dumps(a).encode() + b"\n")


def test_follow_relink_rotation_and_restart(scratch):
    wz = scratch.wz
    alerts = traffic(200, "f")
    wz.open_day(21)
    write(wz, alerts[:40])
    d = Daemon(scratch.config(follow=wz.link, from_start=True))
    try:
        assert wait_until(lambda: len(scratch.col.ids()) == 40)
        write(wz, alerts[40:50])
        wz.open_day(21, part=1)            # intra-day rotation while running
        write(wz, alerts[50:60])
        wz.open_day(22)                    # midnight while running
        write(wz, alerts[60:80])
        assert wait_until(lambda: len(scratch.col.ids()) == 80)
        write(wz, alerts[80:90], )
        with open(wz.current, "ab") as f:
            f.write(b'{"id": "half-written", "ru')  # analysisd is in the middle of a line
    finally:
        d.stop()
    bm = Bookmark.load(scratch.run / "follow.bookmark")
    assert bm.archive == "2026/Nov/ossec-alerts-22.json"
    # while stopped: the rest of day 22, a rotation part, then midnight, and monitord gzips day 22
    with open(wz.current, "ab") as f:
        f.write(b'le": {"id": "1"}}\n')
    write(wz, alerts[90:120])
    day22 = wz.current
    wz.open_day(22, part=1)
    write(wz, alerts[120:150])
    day22_1 = wz.current
    wz.open_day(23)
    write(wz, alerts[150:170])
    wz.compress(day22)
    wz.compress(day22_1)
    d = Daemon(scratch.config(follow=wz.link))
    try:
        write(wz, alerts[170:200])
        assert wait_until(lambda: len(scratch.col.ids()) >= 201 and d.server.follow_in_flight == 0)
        time.sleep(0.3)
        ids = scratch.col.ids()
        want = [a["id"] for a in alerts[:90]] + ["half-written"] + [a["id"] for a in alerts[90:]]
        assert sorted(ids) == sorted(want)     # nothing missed, nothing twice (the half line once complete)
        assert ids == want                     # and in file order
        assert d.server.follower.stats["catch_up_files"] == 2
    finally:
        d.stop()


def test_follow_and_socket_feed_one_pipeline_without_duplicates(scratch):
    from mimizuku.integratord import client

    wz = scratch.wz
    alerts = traffic(30, "both")
    wz.open_day(21)
    d = Daemon(scratch.config(follow=wz.link, from_start=True))
    try:
        for a in alerts[:15]:
            assert client.deliver(str(d.server.cfg.socket), json.dumps(a).encode(), 5)[0] == "acked"
        write(wz, alerts)                  # the same alerts also appear in alerts.json
        assert wait_until(lambda: d.server.counters.received == 45 and d.server.follow_in_flight == 0)
        time.sleep(0.2)
        assert sorted(scratch.col.ids()) == sorted(a["id"] for a in alerts)
        assert d.server.counters.duplicates == 15
    finally:
        d.stop()


def _wait_file(path, timeout=60):
    return wait_until(lambda: os.path.exists(path), timeout)


def test_daemon_process_signals(scratch):
    wz = scratch.wz
    alerts = traffic(20, "sig")
    wz.open_day(21)
    write(wz, alerts[:10])
    env = dict(os.environ, PYTHONPATH=str(ROOT / "detector"))
    cmd = [sys.executable, "-m", "mimizuku.serve", "--wazuh-home", str(scratch.home),
           "--model-dir", str(scratch.models), "--follow", str(wz.link), "--from-start",
           "--options", json.dumps({"send": "all"}), "--flood-window", "0", "--watch-interval", "3600"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_until(lambda: len(scratch.col.ids()) == 10, 120)
        scratch.install_version("v2", current=False)
        scratch.point_current("v2")       # watch interval is an hour: only SIGHUP can pick it up
        p.send_signal(signal.SIGHUP)
        from mimizuku.integratord import client

        sock = scratch.run / "serve.sock"
        assert wait_until(lambda: client.call(sock, {"op": "status"})["status"]["model"]["version"] == "v2", 60)
        write(wz, alerts[10:20])
        assert wait_until(lambda: len(scratch.col.ids()) == 20, 60)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    text = out.decode(errors="replace")
    assert p.returncode == 0, text
    assert "switched from model v1 to v2" in text and "stopped" in text
    versions = [ev.payload["mimizuku"]["model_version"] for ev in scratch.col.events]
    assert versions == ["v1"] * 10 + ["v2"] * 10
    bm = Bookmark.load(scratch.run / "follow.bookmark")
    assert bm.offset == os.path.getsize(wz.current)
    assert not (scratch.run / "serve.sock").exists()
    st = json.loads((scratch.run / "status.json").read_text())
    assert st["running"] is False and st["counters"]["scored"] == 20
