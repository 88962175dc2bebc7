"""The integration's logic, called in-process with a stand-in engine (no pandas, no model)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from integration_fakes import fake_scorer
from wazuh_emulation import FakeAnalysisd

from mimizuku.core.spool import Spool
from mimizuku.engine.policy import apply_policy
from mimizuku.integratord import call as it
from mimizuku.integratord import options

FIM = {
    "timestamp": "2026-11-20T10:15:02.123+0000",
    "rule": {"level": 7, "description": "Integrity checksum changed.", "id": "550", "groups": ["ossec", "syscheck"]},
    "agent": {"id": "003", "name": "web-01", "ip": "10.0.0.5"},
    "manager": {"name": "wazuh"},
    "id": "1700000000.1",
    "full_log": "File '/etc/shadow' modified",
    "syscheck": {"path": "/etc/shadow", "event": "modified", "mode": "whodata",
                 "audit": {"effective_user": {"id": "1000", "name": "bob"}}},
    "decoder": {"name": "syscheck_integrity_changed"},
    "location": "syscheck",
}


def alert(score=None, **over):
    a = json.loads(json.dumps(FIM))
    a.update(over)
    if score is not None:
        a.setdefault("data", {})["mimizuku_test_score"] = score
    return a


class Env:
    """A scratch Wazuh home with a fake analysisd, and a way to make integratord-style calls."""

    def __init__(self, tmp_path: Path):
        self.home = tmp_path / "ossec"
        (self.home / "logs").mkdir(parents=True)
        (self.home / "integrations").mkdir()
        self.script = self.home / "integrations" / "custom-mimizuku"
        self.queue = self.home / "queue" / "sockets" / "queue"
        self.spool = self.home / "mimizuku" / "spool"
        self.n = 0

    def call(self, a, options=None, scorer=fake_scorer, timeout="10", raw=None, argv_tail=None):
        self.n += 1
        af = self.home / f"custom-mimizuku-1700000000-{self.n}.alert"
        af.write_text(raw if raw is not None else json.dumps(a, separators=(",", ":")))
        of = ""
        if options is not None:
            of = str(self.home / f"custom-mimizuku-1700000000-{self.n}.options")
            Path(of).write_text(options if isinstance(options, str) else json.dumps(options))
        tail = argv_tail if argv_tail is not None else ["", of, timeout, "3", "> /dev/null 2>&1"]
        argv = [str(self.script), str(af), "", ""] + tail
        return it.run(argv, home=self.home, in_process=scorer, arm_watchdog=False)

    def log(self) -> str:
        p = self.home / "logs" / "integrations.log"
        return p.read_text() if p.exists() else ""

    def pending_alerts(self) -> int:
        return len(Spool(self.spool / "alerts"))

    def pending_events(self) -> int:
        return len(Spool(self.spool / "events"))


@pytest.fixture
def env(tmp_path):
    return Env(tmp_path)


# --- argv and options --------------------------------------------------------------------------

def test_argv_of_wazuh_4_8_and_later():
    inv = options.parse_argv(["x", "/tmp/custom-mimizuku-1-2.alert", "", "", "", "/tmp/custom-mimizuku-1-2.options",
                         "7", "5", "> /dev/null 2>&1"])
    assert (inv.alert_file, inv.options_file, inv.timeout, inv.retries, inv.debug) == \
        ("/tmp/custom-mimizuku-1-2.alert", "/tmp/custom-mimizuku-1-2.options", 7, 5, False)


def test_argv_of_older_wazuh_and_debug_mode():
    inv = options.parse_argv(["x", "/tmp/a.alert", "KEY", "http://hook", "debug", "/tmp/a.options"])
    assert (inv.api_key, inv.hook_url, inv.debug, inv.options_file, inv.timeout, inv.retries) == \
        ("KEY", "http://hook", True, "/tmp/a.options", options.DEFAULT_TIMEOUT, options.DEFAULT_RETRIES)
    inv = options.parse_argv(["x", "/tmp/a.alert", "", "", "", "", "> /dev/null 2>&1"])
    assert inv.options_file == "" and inv.timeout == options.DEFAULT_TIMEOUT


@pytest.mark.parametrize("argv", [["x"], ["x", ""], ["x", "a", "", "", "", "o", "1", "2", "extra-path"]])
def test_bad_argv_is_a_usage_error(argv):
    with pytest.raises(options.UsageError):
        options.parse_argv(argv)


def test_options_defaults_and_relative_paths(tmp_path):
    home = tmp_path
    o = options.load_options("", home)
    assert o.model_dir == home / "mimizuku" / "models" and o.queue == home / "queue" / "sockets" / "queue"
    f = tmp_path / "o.options"
    f.write_text('{"model_dir": "m", "send": "all", "detectors": ["files"], "thresholds": {"*": 0.9},'
                 ' "min_severity": "high", "max_batch": 5}')
    o = options.load_options(str(f), home)
    assert (o.model_dir, o.send, o.detectors, o.thresholds, o.min_severity, o.max_batch) == \
        (home / "m", "all", frozenset({"files"}), {"*": 0.9}, "high", 5)


@pytest.mark.parametrize("text", ["{", "[]", '{"colour": 1}', '{"send": "some"}', '{"thresholds": {"files": 2}}',
                                  '{"max_batch": 0}', '{"min_severity": "none"}', '{"model_dir": ""}'])
def test_bad_options_are_refused(tmp_path, text):
    f = tmp_path / "o.options"
    f.write_text(text)
    with pytest.raises(options.OptionsError):
        options.load_options(str(f), tmp_path)


# --- policy -----------------------------------------------------------------------------------

def rec(score, sev, det="files"):
    return {"detector": det, "score": score, "score_pct": round(score * 100), "threshold": 0.8,
            "anomaly": sev != "none", "severity": sev, "reasons": ["r"] if sev != "none" else []}


def test_policy_filters_and_overrides():
    home = Path("/nonexistent")
    o = options.Options.defaults(home)
    recs = [rec(0.5, "none"), rec(0.85, "low"), rec(0.97, "high", "commands")]
    assert [r["score"] for r in apply_policy(recs, o)] == [0.85, 0.97]
    o.send = "all"
    assert len(apply_policy(recs, o)) == 3
    o.send, o.min_severity = "anomalies", "medium"
    assert [r["score"] for r in apply_policy(recs, o)] == [0.97]
    o.min_severity, o.detectors = "low", frozenset({"commands"})
    assert [r["detector"] for r in apply_policy(recs, o)] == ["commands"]
    o.detectors, o.thresholds = None, {"files": 0.4, "*": 0.99}
    out = {r["score"]: r for r in apply_policy(recs, o)}
    assert set(out) == {0.5, 0.85}
    assert out[0.5]["anomaly"] and out[0.5]["severity"] == "low" and "threshold 40%" in out[0.5]["reasons"][-1]
    assert recs[0]["anomaly"] is False  # the input records are not modified


# --- one call ---------------------------------------------------------------------------------

def test_anomaly_is_sent_and_the_spool_emptied(env):
    with FakeAnalysisd(env.queue) as fa:
        assert env.call(alert(0.97)) == it.EXIT_OK
        got = fa.receive(wait=1)
    assert len(got) == 1
    ev = got[0]
    assert (ev.agent_id, ev.location) == ("003", "mimizuku")
    assert ev.fields["mimizuku.severity"] == "high" and ev.fields["mimizuku.path"] == "/etc/shadow"
    assert ev.fields["mimizuku.source.alert_id"] == "1700000000.1"
    assert env.pending_alerts() == 0 and env.pending_events() == 0


def test_normal_alert_sends_nothing_unless_send_all(env):
    with FakeAnalysisd(env.queue) as fa:
        assert env.call(alert(0.2)) == it.EXIT_OK
        assert fa.receive(wait=0.2) == []
        assert env.call(alert(0.2), options={"send": "all"}) == it.EXIT_OK
        got = fa.receive(wait=1)
    assert [e.fields["mimizuku.anomaly"] for e in got] == ["false"]
    assert env.pending_alerts() == 0


def test_own_events_are_dropped_before_anything_else(env):
    calls = []

    def scorer(alerts, opts):
        calls.append(alerts)
        return []

    own = alert(0.99, rule={"id": "119004", "level": 10, "groups": ["mimizuku", "anomaly"]}, location="mimizuku")
    assert env.call(own, scorer=scorer) == it.EXIT_OK
    own2 = alert(0.99, data={"integration": "mimizuku"}, location="mimizuku")
    assert env.call(own2, scorer=scorer) == it.EXIT_OK
    assert calls == [] and not (env.spool / "alerts").exists()


def test_a_forged_own_mark_from_an_agents_log_is_scored(env):
    """Issue 17 item 3: "integration": "mimizuku" written into a log an agent ships is not our
    event (its location is the agent's file): the call scores it instead of skipping it."""
    calls = []

    def scorer(alerts, opts):
        calls.append([a["id"] for a in alerts])
        return []

    forged = alert(0.99, id="1700000000.66", location="/var/log/app.json", decoder={"name": "json"},
                   data={"integration": "mimizuku", "mimizuku": {"severity": "critical", "anomaly": "true"}})
    assert env.call(forged, scorer=scorer) == it.EXIT_OK
    assert calls == [["1700000000.66"]]


def _fill(queue_path) -> int:
    """Fill the queue socket's receive queue the way a hung analysisd leaves it: sends block."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.connect(str(queue_path))
    s.setblocking(False)
    n = 0
    try:
        while n < 200_000:
            s.send(b"1:filler:x")
            n += 1
    except BlockingIOError:
        return n
    finally:
        s.close()
    raise AssertionError("the queue socket never filled up")


def _spooled_event(env) -> None:
    Spool(env.spool / "events").put({"message": '1:mimizuku:{"integration":"mimizuku","mimizuku":{"n":1}}'})


def test_a_call_leaves_the_event_spool_to_a_live_scorer_while_analysisd_hangs(env):
    """Issue 17 item 12: the scorer holds the spool (core/spool.hold_owner) and does not answer,
    analysisd's queue is full. The call waits for the acknowledgement only (0.3 s here), spools the
    alert and flushes nothing; it used to spend a whole send timeout (2 s) on the scorer's spool."""
    import socket
    import time

    from mimizuku.core.spool import hold_owner, release_owner

    _spooled_event(env)
    owner = hold_owner(env.spool)
    scorer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # listens, never answers: stuck
    scorer.bind(str(env.home / "serve.sock"))
    scorer.listen(8)
    try:
        with FakeAnalysisd(env.queue) as fa:
            filled = _fill(env.queue)
            opts = {"socket": str(env.home / "serve.sock"), "socket_timeout": 0.3}
            t0 = time.monotonic()
            assert env.call(alert(0.97), options=opts) == it.EXIT_OK
            took = time.monotonic() - t0
            assert took < 1.5, f"the call took {took:.2f} s"
            assert env.pending_events() == 1 and env.pending_alerts() == 1
            assert len(fa.receive()) == filled  # nothing of ours was sent
    finally:
        scorer.close()
        release_owner(owner)


@pytest.mark.parametrize("lock", ["none", "released"])
def test_without_a_live_scorer_the_call_still_flushes_the_event_spool(env, lock):
    from mimizuku.core.spool import hold_owner, release_owner

    _spooled_event(env)
    if lock == "released":  # a scorer that ran and stopped leaves the file, not the lock
        release_owner(hold_owner(env.spool))
    with FakeAnalysisd(env.queue) as fa:
        opts = {"socket": str(env.home / "no-scorer.sock")}
        assert env.call(alert(0.97), options=opts) == it.EXIT_OK
        assert [e.payload["mimizuku"]["n"] for e in fa.receive(wait=1)] == [1]
        assert env.pending_events() == 0


def test_queue_down_keeps_events_and_logs_once(env):
    assert env.call(alert(0.97)) == it.EXIT_OK
    assert env.call(alert(0.99, id="1700000000.2")) == it.EXIT_OK
    assert env.pending_alerts() == 0 and env.pending_events() == 2
    assert env.log().count("cannot send events") == 1
    with FakeAnalysisd(env.queue) as fa:
        assert env.call(alert(0.2, id="1700000000.3")) == it.EXIT_OK  # flushes the backlog
        got = fa.receive(wait=1)
    assert [e.fields["mimizuku.source.alert_id"] for e in got] == ["1700000000.1", "1700000000.2"]
    assert env.pending_events() == 0
    assert env.log().count("reachable again") == 1


def test_missing_model_keeps_alerts_until_one_exists(env):
    # the real in-process scorer with an empty model directory: no heavy import, alerts wait
    opts = {"model_dir": str(env.home / "mimizuku" / "models")}
    assert env.call(alert(0.97), options=opts, scorer=None) == it.EXIT_OK
    assert env.call(alert(0.97, id="2"), options=opts, scorer=None) == it.EXIT_OK
    assert env.pending_alerts() == 2
    assert env.log().count("no trained model") == 1
    with FakeAnalysisd(env.queue) as fa:
        assert env.call(alert(0.2, id="3"), options=opts) == it.EXIT_OK  # an engine now: backlog drained
        got = fa.receive(wait=1)
    assert len(got) == 2 and env.pending_alerts() == 0
    assert env.log().count("scoring works again") == 1


def test_engine_failure_on_one_alert_sets_it_aside(env):
    backlog = Spool(env.spool / "alerts")
    backlog.put(alert(0.97, id="a"))
    backlog.put(alert(0.97, id="b", data={"mimizuku_test_boom": True}))
    with FakeAnalysisd(env.queue) as fa:
        assert env.call(alert(0.97, id="c")) == it.EXIT_OK
        got = fa.receive(wait=1)
    assert sorted(e.fields["mimizuku.source.alert_id"] for e in got) == ["a", "c"]
    assert env.pending_alerts() == 0
    kept = list((env.spool / "quarantine").glob("*.alert"))  # set aside where every such alert goes
    assert len(kept) == 1 and json.loads(kept[0].read_bytes())["id"] == "b"
    assert "cannot be scored" in env.log() and str(kept[0]) in env.log()


def test_backlog_is_scored_in_bounded_batches(env):
    seen = []

    def scorer(alerts, opts):
        seen.append(len(alerts))
        return fake_scorer(alerts, opts)

    backlog = Spool(env.spool / "alerts")
    for i in range(7):
        backlog.put(alert(0.2, id=str(i)))
    assert env.call(alert(0.2, id="7"), options={"max_batch": 3}, scorer=scorer) == it.EXIT_OK
    assert seen == [3, 3, 2] and env.pending_alerts() == 0


@pytest.mark.parametrize("exc, code", [(ImportError("No module named sklearn"), it.EXIT_ENGINE)])
def test_broken_engine_keeps_the_alert(env, exc, code):
    def scorer(alerts, opts):
        raise exc

    assert env.call(alert(0.97), scorer=scorer) == code
    assert env.pending_alerts() == 1


def test_model_error_is_a_real_failure_that_keeps_the_alert(env):
    from mimizuku.store.model_dir import ModelIntegrityError

    def scorer(alerts, opts):
        raise ModelIntegrityError("checksum of files.joblib does not match the manifest")

    assert env.call(alert(0.97), scorer=scorer) == it.EXIT_MODEL
    assert env.call(alert(0.97), scorer=scorer) == it.EXIT_MODEL
    assert env.pending_alerts() == 2
    assert env.log().count("cannot be used") == 1


def test_invalid_alert_is_rejected_with_a_copy(env):
    assert env.call(None, raw='{"rule": {"id": "1"') == it.EXIT_BAD_ALERT
    assert env.call(None, raw='{"no_rule": 1}') == it.EXIT_BAD_ALERT
    assert env.call(None, raw=b"\xff\xfe{".decode("latin-1")) == it.EXIT_BAD_ALERT
    assert len(Spool(env.spool / "rejected")) == 3
    assert env.pending_alerts() == 0


def test_missing_alert_file(env):
    code = it.run([str(env.script), str(env.home / "gone.alert"), "", "", "", "", "10", "3"], home=env.home,
                  in_process=fake_scorer, arm_watchdog=False)
    assert code == it.EXIT_BAD_ALERT
    assert "cannot read alert file" in env.log()


def test_bad_options_keep_the_alert_and_fail_loudly(env):
    assert env.call(alert(0.97), options="{not json") == it.EXIT_USAGE
    assert env.call(alert(0.97), options='{"colour": "red"}') == it.EXIT_USAGE
    assert env.pending_alerts() == 2
    assert env.log().count("bad <options>") == 2  # two different problems, each reported once


def test_usage_error_exit_code(env):
    assert it.run([str(env.script)], home=env.home, arm_watchdog=False) == it.EXIT_USAGE


def test_unwritable_spool_scores_directly_or_reports_the_loss(env, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    opts = {"spool_dir": str(blocker / "spool")}
    with FakeAnalysisd(env.queue) as fa:
        assert env.call(alert(0.97), options=opts) == it.EXIT_OK  # scored and sent without a copy
        assert len(fa.receive(wait=1)) == 1
    opts["model_dir"] = str(tmp_path / "no-model")
    assert env.call(alert(0.97), options=opts, scorer=None) == it.EXIT_LOST


def test_log_lines_cannot_be_forged_by_alert_content(env):
    def scorer(alerts, opts):
        raise RuntimeError("bad path /tmp/x\n2026/01/01 00:00:00 mimizuku[1] INFO: all good")

    env.call(alert(0.97), scorer=scorer)
    lines = env.log().splitlines()
    assert not any(line.startswith("2026/01/01") for line in lines)
    assert any("\\x0a2026/01/01" in line for line in lines)


def test_timeout_inside_scoring_keeps_alerts_and_exits_zero(env):
    import time

    def slow(alerts, opts):
        time.sleep(5)
        return fake_scorer(alerts, opts)

    af = env.home / "slow.alert"
    af.write_text(json.dumps(alert(0.97)))
    t0 = time.monotonic()
    code = it.run([str(env.script), str(af), "", "", "", "", "1", "3"], home=env.home, in_process=slow)
    assert code == it.EXIT_OK
    assert time.monotonic() - t0 < 1.0  # (not a timing test: the 5 s sleep was cut short)
    assert env.pending_alerts() == 1
    assert "did not finish within the 1s timeout" in env.log()


HEAVY = ("pandas", "numpy", "scipy", "sklearn", "joblib", "mimizuku.engine.estimator")


@pytest.mark.parametrize("case", ["own_event", "no_model"])
def test_paths_that_do_not_score_import_only_the_standard_library(env, case):
    """A fresh interpreter: the own-event drop and the "no model yet" path never load the engine."""
    import subprocess

    a = alert(0.97, rule={"id": "119004", "level": 10, "groups": ["mimizuku"]}, location="mimizuku") \
        if case == "own_event" else alert(0.97)
    af = env.home / "x.alert"
    af.write_text(json.dumps(a))
    code = f"""
import sys
sys.path.insert(0, {str(Path(it.__file__).parent.parent.parent)!r})
from pathlib import Path
from mimizuku.integratord import call
rc = call.run([{str(env.script)!r}, {str(af)!r}, "", "", "", "", "10", "3"], home=Path({str(env.home)!r}))
print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))
"""
    p = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split(None, 1) == ["0", "[]\n"]
    assert env.pending_alerts() == (1 if case == "no_model" else 0)
