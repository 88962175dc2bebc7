"""`mimizuku retrain`: the nightly job end to end on generated archive trees.

Fast settings: the default fleet at a small scale, written with ``part_lines`` so days have
``-001`` gzip parts: 14 days at scale 0.03 (~8,400 alerts) for the archive-reading test, 8 days
at scale 0.02 for the others. Each retrain takes a few seconds.
"""
from __future__ import annotations

import json
import shutil
import signal
import sqlite3
from pathlib import Path

import pytest
import retrain_trees as T

from mimizuku.engine.estimator import Mimizuku
from mimizuku.nightly.anomaly_filter import AnomalyFilter
from mimizuku.nightly.cli import main
from mimizuku.nightly.config import RetrainConfig
from mimizuku.nightly.job import retrain, summary_line
from mimizuku.store.versions import ModelStore, current_version

ALERTS14 = T.fleet(days=14, scale=0.03)
ALERTS = T.fleet(days=8, scale=0.02)
DAYS = T.days_of(ALERTS)
LAST = DAYS[-1]
assert T.days_of(ALERTS14)[-1] == LAST


def _strip(alerts):
    return [{k: v for k, v in a.items() if k != "_label"} for a in alerts]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tree (gz parts) and a model root where one retrain already installed a model."""
    d = tmp_path_factory.mktemp("base")
    T.write_tree(d, ALERTS, part_lines=150)
    code = main(["retrain", "--wazuh-home", str(d), "--day", LAST, "--no-batch", "--summary-json"])
    assert code == 0
    return d


@pytest.fixture
def home(base, tmp_path):
    """A private copy of the base tree and its model root (symlinks kept)."""
    d = tmp_path / "wazuh"
    shutil.copytree(base, d, symlinks=True)
    return d


RULES = T.ROOT / "wazuh_rules" / "mimizuku_rules.xml"


def _alert_for(line: str):
    """(rule id, level, description) analysisd gives the summary line (tests/wazuh_emulation)."""
    from wazuh_emulation import Ruleset, parse_queue_message

    rules = Ruleset(RULES)
    ev = parse_queue_message(b"1:command_mimizuku:" + line.encode())
    rule = rules.match(ev)
    return rule.id, rule.level, rules.description(rule, ev)


def _run(capfd, *args):
    capfd.readouterr()
    code = main(["retrain", *args, "--summary-json"])
    out, _err = capfd.readouterr()
    return code, T.summary_of(out.encode())


def test_retrain_from_generated_tree_with_gz_parts_missing_day_and_corrupt_line(tmp_path, capfd):
    home = tmp_path / "wazuh"
    days14 = T.days_of(ALERTS14)
    assert len(days14) == 14
    info = T.write_tree(home, ALERTS14, part_lines=150)
    assert any("-001.json.gz" in f for f in info["files"])
    missing = days14[4]
    n_missing = sum(1 for a in ALERTS14 if a["timestamp"][:10] == missing)
    assert T.remove_day(home, missing) >= 2
    T.corrupt_line(T.day_files(home, days14[7])[-1])

    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST)

    assert code == 0, s
    assert s["status"] == "ok" and s["exit_code"] == 0 and "error" not in s
    models = home / "mimizuku" / "models"
    assert s["version"] == current_version(models)
    assert (models / "current" / "manifest.json").is_file()
    c = s["counts"]
    assert c["alerts_read"] == len(ALERTS14) - n_missing
    assert c["bad_lines"] == 1
    assert c["missing_days"] == [missing]
    # no model before: a hold-out model of the days before the analysed one judged the window
    assert c["holdout"]["until"] == days14[-2]
    assert c["trained_on"] == c["alerts_read"] - c["excluded_flagged"]
    # the day was analysed, clustered and written to SQLite under the model root
    day = c["day"]
    n_last = sum(1 for a in ALERTS14 if a["timestamp"][:10] == LAST)
    assert day["date"] == LAST and day["alerts"] == n_last == day["scored"]
    assert day["clusters"] >= 1 and 0 <= day["noise"] < n_last
    with sqlite3.connect(models / "mimizuku.db") as db:
        rows = db.execute("select count(*), count(distinct cluster), sum(cluster = -1) from alerts").fetchone()
        assert rows[0] == n_last
        assert rows[2] == day["noise"]
        assert db.execute("select count(*) from runs").fetchone()[0] == 1
        assert db.execute("select model_version from runs").fetchone()[0] == c["holdout"]["version"]
    # the report is written and linked
    report = Path(s["report"])
    assert report.is_file() and report.parent == home / "logs" / "mimizuku" / "reports"
    html = report.read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html and "DBSCAN" in html
    # the manifest records what the run excluded and how it validated
    manifest = json.loads((models / "current" / "manifest.json").read_text())
    assert manifest["retrain"]["validation"]["ok"] is True
    assert manifest["training"]["read"]["bad_json"] == 1


def test_summary_line_only_output_in_wodle_mode(home):
    """The wodle reads stdout and stderr from one pipe: with --summary-json nothing but the line."""
    p = T.run_cli(["retrain", "--wazuh-home", str(home), "--day", LAST, "--no-report", "--summary-json"])
    assert p.returncode == 0, p.stderr
    assert p.stderr == b""
    s = T.summary_of(p.stdout)
    line = p.stdout.decode().rstrip("\n")
    assert line.isascii() and len(line) < 64 * 1024
    outer = json.loads(line)
    assert outer["integration"] == "mimizuku" and s["job"] == "retrain" and " " not in s["job"]
    assert s["status"] == "ok" and s["previous_version"] and s["version"] != s["previous_version"]
    rule, level, desc = _alert_for(line)
    assert (rule, level) == (119011, 3) and s["version"] in desc
    # the log went to the log file instead
    log = (home / "logs" / "mimizuku" / "retrain.log").read_text()
    assert "installed" in log and s["version"] in log


def test_flagged_alerts_are_excluded_from_retraining(tmp_path, capfd):
    """river's AnomalyFilter: what the current model flags never reaches the new model."""
    home = tmp_path / "wazuh"
    T.write_tree(home, ALERTS)
    clean = _strip([a for a in ALERTS if a["timestamp"][:10] < DAYS[-2]])  # before the attack days
    current = Mimizuku(contamination=0.003).fit(clean)  # enough flagged on this small fleet for bursts
    models = home / "mimizuku" / "models"
    T.install_model(models, current)
    stream = _strip(ALERTS)
    # flagged: raised, or a repeat of what was raised (mimizuku.engine.repeats)
    recs = current.score_records(stream)
    flagged_ids = {r["id"] for r in recs if r["anomaly"] or r.get("repeat_of")}
    assert len(flagged_ids) > 20 and any(r.get("repeat_of") for r in recs)

    # the filter drops exactly what the model's own scoring flags
    f = AnomalyFilter(current)
    kept_ids = {a["id"] for a in f(stream)}
    assert f.excluded == len(flagged_ids)
    assert kept_ids == {a["id"] for a in stream} - flagged_ids

    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--max-rate-ratio", "1000")
    assert code == 0, s
    assert s["counts"]["excluded_flagged"] == len(flagged_ids)
    assert s["counts"]["trained_on"] == len(stream) - len(flagged_ids)
    filtered = Mimizuku.load_model(models / "current")
    assert filtered.n_alerts_ == len(stream) - len(flagged_ids)
    assert s["counts"]["days_judged"] == len(DAYS) and s["counts"]["days_from_verdicts"] == 0

    # the verdicts of the model in use are kept per complete day; the next run with the same
    # model in use judges only the day analysed and takes the other days' verdicts as they were
    verdicts = {p.stem: json.loads(p.read_text()) for p in (models / "verdicts").glob("*.json")}
    assert sorted(verdicts) == DAYS
    assert {i for v in verdicts.values() for i in v["flagged"]} == flagged_ids
    assert {v["model_version"] for v in verdicts.values()} == {current.model_version_}
    T.install_model(models, current)
    code, s1 = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--max-rate-ratio", "1000")
    assert code == 0
    assert s1["counts"]["days_judged"] == 1 and s1["counts"]["days_from_verdicts"] == len(DAYS) - 1
    assert s1["counts"]["excluded_flagged"] == len(flagged_ids)

    # the same run learning from everything (the filter off) learns the flagged alerts as normal
    T.install_model(models, current)  # back to the same current model
    code, s2 = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--learn-flagged",
                    "--max-rate-ratio", "1000")
    assert code == 0, s2
    assert s2["counts"]["excluded_flagged"] == 0 and s2["counts"]["flagged_by_current"] == len(flagged_ids)
    unfiltered = Mimizuku.load_model(models / "current")
    flagged_alerts = [a for a in stream if a["id"] in flagged_ids]
    still_filtered = sum(r["anomaly"] for r in filtered.score_records(flagged_alerts))
    still_unfiltered = sum(r["anomaly"] for r in unfiltered.score_records(flagged_alerts))
    assert still_filtered > still_unfiltered


def test_validation_refuses_model_whose_day_rate_explodes(home, capfd):
    """A broken model (contamination 0.2: a fifth of every day flagged) is not installed."""
    models = home / "mimizuku" / "models"
    before = current_version(models)
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--contamination", "0.2")
    assert code == 7
    assert s["status"] == "kept" and s["version"] == before
    assert s["candidate_version"] and s["candidate_version"] != before
    assert "anomaly rate on " + LAST in s["error"]
    assert s["validation"]["ok"] is False and s["validation"]["anomalies"] > s["validation"]["allowed"]
    assert current_version(models) == before
    rule, level, desc = _alert_for(summary_line({"integration": "mimizuku", "mimizuku": s}))
    assert (rule, level) == (119012, 7) and before in desc and "refused" in desc
    assert not (models / "versions" / s["candidate_version"]).exists()


def test_validation_refuses_model_trained_on_too_few_alerts(home, capfd):
    """The archive shrank to 150 alerts: too few for the context detector, previous model kept."""
    models = home / "mimizuku" / "models"
    before = current_version(models)
    for day in DAYS:
        T.remove_day(home, day)
    T.write_tree(home, [a for a in ALERTS if a["timestamp"][:10] == LAST][:150])
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch")
    assert code == 7 and s["status"] == "kept" and s["version"] == before
    assert "context: 150 alert(s), fewer than the minimum 200" in s["error"]
    assert current_version(models) == before


def test_first_model_refused_when_broken_is_a_failure(tmp_path, capfd):
    home = tmp_path / "wazuh"
    T.write_tree(home, ALERTS)
    # half the alerts asked for as anomalies: far more raised than a first model may raise (0.3 was
    # enough before situations recurring on three days counted as routine: it now stays within the bound)
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--contamination", "0.5")
    assert code == 7 and s["status"] == "failed" and s["version"] == ""
    assert "no model in use" in s["error"]
    assert current_version(home / "mimizuku" / "models") is None


def test_no_alerts_is_an_input_failure(tmp_path, capfd):
    home = tmp_path / "wazuh"
    (home / "logs" / "alerts").mkdir(parents=True)
    code, s = _run(capfd, "--wazuh-home", str(home))
    assert code == 3 and s["status"] == "failed" and "alerts" in s["error"]
    rule, level, desc = _alert_for(summary_line({"integration": "mimizuku", "mimizuku": s}))
    assert (rule, level) == (119013, 9) and s["error"] in desc


def test_rollback_goes_back_and_verifies(home, capfd):
    models = home / "mimizuku" / "models"
    first = current_version(models)
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch")
    assert code == 0
    second = s["version"]
    assert second != first and current_version(models) == second

    capfd.readouterr()
    assert main(["rollback", "--model-dir", str(models)]) == 0
    assert current_version(models) == first
    assert f"now {first}" in capfd.readouterr().out
    # nothing older than the first one
    assert main(["rollback", "--model-dir", str(models)]) == 4
    assert "no earlier model version" in capfd.readouterr().err
    # explicitly forward again, and a version that does not exist
    assert main(["rollback", second, "--model-dir", str(models)]) == 0 and current_version(models) == second
    assert main(["rollback", "20990101T000000Z-000000", "--model-dir", str(models)]) == 4
    assert main(["rollback", "../../etc", "--model-dir", str(models)]) == 4
    # a tampered version is never switched to
    victim = models / "versions" / first / "context.npz"
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    capfd.readouterr()
    assert main(["rollback", first, "--model-dir", str(models)]) == 4
    assert "checksum mismatch" in capfd.readouterr().err
    assert current_version(models) == second
    assert main(["rollback", "--list", "--model-dir", str(models)]) == 0
    listing = capfd.readouterr().out.splitlines()
    assert [ln[:1] for ln in listing if second in ln] == ["*"]
    assert [ln[:1] for ln in listing if first in ln] == [" "]


def test_keeps_last_k_versions(home, capfd):
    models = home / "mimizuku" / "models"
    first = current_version(models)
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--keep", "2")
    assert code == 0 and s["counts"]["versions_pruned"] == 0
    assert sorted(p.name for p in (models / "versions").iterdir()) == sorted([first, s["version"]])
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--keep", "1")
    assert code == 0 and s["counts"]["versions_pruned"] == 2
    assert [p.name for p in (models / "versions").iterdir()] == [s["version"]] == [current_version(models)]


def test_second_run_is_refused_by_the_lock_and_sigterm_keeps_current(home, capfd):
    """A run blocked mid-training holds the lock: a second run and a rollback are refused (exit 6).
    Then SIGTERM (the wodle's timeout) ends it with a failed summary line, current untouched."""
    models = home / "mimizuku" / "models"
    before = current_version(models)
    p = T.popen_cli(["retrain", "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--summary-json"],
                    env={"MIMIZUKU_RETRAIN_PAUSE_AT": "training", "MIMIZUKU_RETRAIN_PAUSE_SECONDS": "120"})
    try:  # in wodle mode stderr goes to the log file, so the marker is there
        T.wait_for_marker(p, b"paused at training", log=home / "logs" / "mimizuku" / "retrain.log")
        code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch")
        assert code == 6
        assert s["status"] == "failed" and "another mimizuku retrain or rollback is running" in s["error"]
        assert f"pid {p.pid}" in s["error"]
        assert s["version"] == before
        assert main(["rollback", "--model-dir", str(models)]) == 6
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        p.kill()
        p.wait()
    assert p.returncode == 143 and err == b""
    s = T.summary_of(out)
    assert s["status"] == "failed" and "SIGTERM" in s["error"] and s["version"] == before
    assert current_version(models) == before
    with ModelStore(models).lock("test"):  # released with the process
        pass


@pytest.mark.parametrize("stage", ["training", "install"])
def test_killed_run_leaves_current_untouched_and_is_cleaned_next_run(home, capfd, stage):
    models = home / "mimizuku" / "models"
    before = current_version(models)
    versions_before = {p.name for p in (models / "versions").iterdir()}
    p = T.popen_cli(["retrain", "--wazuh-home", str(home), "--day", LAST, "--no-batch"],
                    env={"MIMIZUKU_RETRAIN_PAUSE_AT": stage, "MIMIZUKU_RETRAIN_PAUSE_SECONDS": "120"})
    try:
        T.wait_for_marker(p, f"paused at {stage}".encode())
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert p.returncode == -signal.SIGKILL
    assert current_version(models) == before
    assert Mimizuku.load_model(models / "current").model_version_ == before
    leftovers = {p.name for p in (models / "versions").iterdir()} - versions_before
    if stage == "install":  # written completely, never switched to: an orphan
        assert len(leftovers) == 1
    else:
        assert leftovers == set()

    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch")
    assert code == 0
    assert s["counts"]["leftovers_cleaned"] == len(leftovers)
    assert {p.name for p in (models / "versions").iterdir()} == versions_before | {s["version"]}


def test_batch_writes_are_idempotent_and_syslog_not_repeated(home, capfd):
    models = home / "mimizuku" / "models"
    db = models / "mimizuku.db"
    code, s1 = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-report", "--syslog-select", "outliers")
    assert code == 0
    n_last = sum(1 for a in ALERTS if a["timestamp"][:10] == LAST)
    assert s1["counts"]["sql"]["alerts_inserted"] == n_last
    assert s1["counts"]["syslog"]["selected"] >= s1["counts"]["day"]["noise"] > 0
    syslog = home / "logs" / "mimizuku" / "anomaly.syslog"
    lines = syslog.read_text().splitlines()
    assert len(lines) == s1["counts"]["syslog"]["selected"] > 0
    with sqlite3.connect(db) as c:
        before = c.execute("select count(*), (select count(*) from outliers) from alerts").fetchone()

    code, s2 = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-report", "--syslog-select", "outliers")
    assert code == 0
    assert s2["counts"]["sql"]["alerts_inserted"] == 0
    assert s2["counts"]["sql"]["alerts_existing"] == n_last
    assert s2["counts"]["sql"]["outliers_inserted"] == 0
    assert "syslog" not in s2["counts"] and "already sent" in s2["counts"]["syslog_skipped"]
    assert syslog.read_text().splitlines() == lines
    with sqlite3.connect(db) as c:
        assert c.execute("select count(*), (select count(*) from outliers) from alerts").fetchone() == before


def test_database_down_is_a_warning_not_a_failure(home, capfd, tmp_path):
    spool = tmp_path / "spool"
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-report", "--no-syslog",
                   "--db", "mysql+pymysql://u:secret-pw@127.0.0.1:1/none", "--spool-dir", str(spool))
    assert code == 0 and s["status"] == "ok"
    assert any(w.startswith("SQL:") for w in s["warnings"])
    assert "secret-pw" not in json.dumps(s)
    assert s["counts"]["sql"]["spooled"] >= 1
    assert any(spool.glob("sql-*/*.json"))


def test_summary_line_is_bounded_and_cannot_be_split():
    huge = {"integration": "mimizuku", "mimizuku": {"job": "retrain", "status": "failed", "version": "",
                                                     "error": "x\ny\u2028z", "warnings": ["w" * 5000] * 50,
                                                     "validation": {"reasons": ["r" * 10000] * 10}}}
    line = summary_line(huge)
    assert "\n" not in line and "\u2028" not in line and line.isascii()
    assert len(line) < 64 * 1024
    assert json.loads(line)["mimizuku"]["status"] == "failed"


def test_demo_defaults_use_sqlite_and_syslog_file_under_home(tmp_path):
    """The README's first command: only --wazuh-home, everything else embedded defaults."""
    home = tmp_path / "demo"
    T.write_tree(home, ALERTS)
    cfg = RetrainConfig(wazuh_home=home, day=None)
    assert cfg.sql_url == "sqlite:///" + str(home / "mimizuku" / "models" / "mimizuku.db")
    assert cfg.syslog_file == home / "logs" / "mimizuku" / "anomaly.syslog"
    assert cfg.spool_dir == home / "mimizuku" / "spool"
    s = retrain(RetrainConfig(wazuh_home=home, day=None, report=False))["mimizuku"]
    assert s["status"] == "ok"
    assert (home / "mimizuku" / "models" / "mimizuku.db").is_file()


def test_retrain_publishes_for_the_cluster_and_a_node_syncs(home, tmp_path):
    """--publish-to: the installed model is published (signed) and a node's sync installs it; a
    missing key is a warning, the local install stands."""
    from mimizuku.store import publication as model_sync

    pub, node = tmp_path / "pub", tmp_path / "node-models"
    s = retrain(RetrainConfig(wazuh_home=home, day=None, batch=False, publish_to=pub))["mimizuku"]
    assert s["status"] == "ok" and "published" not in s["counts"]
    assert any("not published" in w and "cluster key" in w for w in s["warnings"])
    key = home / "etc" / "mimizuku" / "cluster.key"
    model_sync.generate_key(key)
    s = retrain(RetrainConfig(wazuh_home=home, day=None, batch=False, publish_to=pub, activation_delay=0))["mimizuku"]
    assert s["status"] == "ok" and s["counts"]["published"]["version"] == s["version"]
    r = model_sync.sync_once(model_sync.DirectorySource(pub), node, model_sync.load_key(key))
    assert r.action == "switched" and current_version(node) == s["version"]
    assert Mimizuku.load_model(node).model_version_ == s["version"]


def test_the_nightly_job_keeps_a_confirmed_situation_out_of_training_for_good(home, tmp_path, capfd):
    """An analyst confirms an alert the model in use does not flag (routine for its agent and
    account): tonight's retrain drops every alert of that situation, on the days already judged
    too (their judged-day files name other verdicts), and learns everything else as before
    (issue 16)."""
    from mimizuku.engine.feedback import situations_of
    from mimizuku.feedback_cli import entry_for
    from mimizuku.store.feedback import FeedbackStore, default_path

    models = home / "mimizuku" / "models"
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch")   # a night with a model
    assert code == 0 and s["counts"]["days_judged"] > 0
    assert list((models / "verdicts").glob("*.json"))            # the days it judged are recorded
    control = tmp_path / "control"
    shutil.copytree(home, control, symlinks=True)
    before = Mimizuku.load_model(models, feedback=None)
    window = [a for a in _strip(ALERTS) if a["timestamp"][:10] <= LAST]
    scored = list(before.iter_scored(window))
    pick = next(x for x in scored if x.record is not None and not x.flagged and x.verdict.best == "commands")
    e = entry_for(before, pick, "confirmed", by="analyst")
    covered = sum(1 for x in scored if x.record is not None and not x.flagged
                  and any(e.covers(sit) for sit in situations_of(x.scored, x.scored)))
    assert covered > 1                                             # a routine situation: many alerts
    FeedbackStore(default_path(models)).update(lambda rows: rows.append(e.to_json()))
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST, "--no-batch")
    assert code == 0 and s["status"] == "ok"
    code, c = _run(capfd, "--wazuh-home", str(control), "--day", LAST, "--no-batch")
    assert code == 0 and c["counts"]["days_from_verdicts"] > 0      # without verdicts: judged days reused
    assert s["counts"]["days_from_verdicts"] == 0                  # with one: judged again
    assert s["counts"]["excluded_flagged"] - c["counts"]["excluded_flagged"] == covered
    assert c["counts"]["trained"]["commands"] - s["counts"]["trained"]["commands"] == covered
    # and with the verdict, the scorer flags the situation whatever its score
    rec = Mimizuku.load_model(models).score_records([pick.alert])[0]
    assert rec["anomaly"] and rec["confirmed_by"] == e.id


@pytest.mark.parametrize("kind", ["missing", "not-wazuh"])
def test_a_mistyped_wazuh_home_is_refused_before_anything_is_created(tmp_path, capfd, kind):
    """issue 17, item 13: `retrain --wazuh-home ./typo` created ./typo/mimizuku/models/... and then
    failed; now it is a usage error (exit 2) and nothing is created. A directory without logs/ or
    etc/ (not a Wazuh home) is refused the same way when it is the alert source."""
    home = tmp_path / "typo"
    if kind == "not-wazuh":
        home.mkdir()
    code, s = _run(capfd, "--wazuh-home", str(home), "--day", LAST)
    assert code == 2 and s["exit_code"] == 2 and s["status"] == "failed", s
    assert "nothing was created" in s["error"] and str(home) in s["error"]
    assert ("no such directory" if kind == "missing" else "does not look like a Wazuh installation") in s["error"]
    if kind == "missing":
        assert not home.exists()
    else:
        assert list(home.iterdir()) == []


def test_the_readme_first_commands_still_work(tmp_path, capfd):
    """`mimizuku generate --out ./demo ... && mimizuku retrain --wazuh-home ./demo`: the generated
    tree (logs/alerts only) is a Wazuh home to retrain."""
    from mimizuku.cli import main as cli_main

    demo = tmp_path / "demo"
    assert cli_main(["generate", "--out", str(demo), "--scale", "0.05", "--days", "6", "-q"]) == 0
    assert sorted(p.name for p in demo.iterdir()) == ["logs"]
    code, s = _run(capfd, "--wazuh-home", str(demo), "--no-batch", "--max-rate-ratio", "1000")
    assert code == 0, s
