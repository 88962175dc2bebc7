"""``mimizuku check`` against the fake API: rules fired or missing, every failure's exit code."""
from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path

import pytest
from fake_wazuh_api import RULES, FakeState, FakeWazuhAPI, self_signed_cert

from mimizuku.cli import main
from mimizuku.delivery.wazuh_api import ENV_CA, ENV_PASSWORD, ENV_URL, ENV_USER
from mimizuku.tools import rules_check as check

USER, PASSWORD = "wazuh-wui", "S3cret.Pass+word"


@pytest.fixture
def fake():
    with FakeWazuhAPI() as f:
        yield f


@pytest.fixture
def env(monkeypatch, tmp_path):
    for var in (ENV_URL, ENV_USER, ENV_PASSWORD, ENV_CA):
        monkeypatch.delenv(var, raising=False)

    def set_(url, user=USER, password=PASSWORD):
        monkeypatch.setenv(ENV_URL, url)
        monkeypatch.setenv(ENV_USER, user)
        monkeypatch.setenv(ENV_PASSWORD, password)
    return set_


def run(tmp_path, *extra):
    return main(["check", "--wazuh-home", str(tmp_path), "--rules", str(RULES), *extra])


def rule_ids(path=RULES):
    return sorted(int(x) for x in re.findall(r'<rule id="(\d+)"', Path(path).read_text()))


# --- the rules file and the samples -------------------------------------------------------------------

def test_os_regex_translation():
    rx = check.os_regex(r"^99$|^100$")
    assert rx.search("99") and rx.search("100") and not rx.search("199") and not rx.search("9")
    assert check.os_regex(r"^\S+$").search("retrain") and not check.os_regex(r"^\S+$").search("a b")
    assert check.os_regex(r"a.b").search("a.b") and not check.os_regex(r"a.b").search("axb")  # '.' is literal
    assert check.os_regex(r"a\.b").search("axb")                                              # '\.' is any


def test_os_match_translation():
    rx = check.os_match("^command_mimizuku$|->mimizuku$|api")
    assert rx.search("COMMAND_mimizuku") and rx.search("(a) any->mimizuku") and rx.search("x-API-y")
    assert not rx.search("command_mimizuku2") and not rx.search("(a) any->mimizuku.json")
    assert check.os_match("a.b").search("a.b") and not check.os_match("a.b").search("axb")


@pytest.mark.parametrize("location", ["[001] (web-01) 10.0.0.5->/var/log/app.json", "[001] (web-01) any->command_mimizuku",
                                      "[001] (web-01) any->/var/log/x->mimizuku", "/var/log/app.json"])
def test_a_forged_event_from_an_agents_log_fires_nothing_of_ours(location):
    """Issue 17 item 3: the check follows the rules' <location> as analysisd does."""
    rules = check.parse_rules(RULES)
    for s in check.samples():
        assert check.expected_chain(rules, s.payload, location) == [], (s.name, location)


def test_a_job_summary_from_elsewhere_than_the_wodle_is_no_job_alert():
    rules = check.parse_rules(RULES)
    job = next(s for s in check.samples() if s.location == check.JOB_LOCATION)
    assert check.expected_chain(rules, job.payload, check.JOB_LOCATION)[-1].id == 119011
    for location in ("mimizuku", "API-Webhook", "[003] (db) any->mimizuku"):
        assert [r.id for r in check.expected_chain(rules, job.payload, location)] == [119000]


def test_samples_reach_every_rule_of_our_file():
    rules = check.parse_rules(RULES)
    assert sorted(rules) == rule_ids()
    leaves = []
    reached = set()
    for s in check.samples():
        chain = check.expected_chain(rules, s.payload, s.location)
        assert chain, s.name
        leaves.append(chain[-1].id)
        reached.update(r.id for r in chain)
    assert len(set(leaves)) == len(leaves)        # one sample per band: each fires its own rule
    assert reached == set(rules)


def test_samples_are_the_scorers_own_events():
    from mimizuku.delivery import events

    high = next(s for s in check.samples() if s.name == "high anomaly")
    assert high.location == events.TAG
    assert high.payload["integration"] == "mimizuku" and high.payload["mimizuku"]["severity"] == "high"


# --- the command ---------------------------------------------------------------------------------------

def test_all_rules_fire_exit_0_and_a_table(fake, env, tmp_path, capsys):
    env(fake.url)
    assert run(tmp_path) == check.EXIT_OK
    out = capsys.readouterr().out
    for rid in rule_ids():
        if rid not in (119000, 119010):           # parents: their children fire instead
            assert re.search(rf"^\S.*\b{rid}\s+{rid}\s+\d+\s+ok\b", out, re.M), rid
    assert "MISSING" not in out
    assert fake.state.closed_sessions                # the logtest session is closed afterwards


def test_json_output(fake, env, tmp_path, capsys):
    env(fake.url)
    assert run(tmp_path, "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["missing"] == [] and doc["not_exercised"] == []
    assert len(doc["samples"]) == len(check.samples())
    by_name = {s["sample"]: s for s in doc["samples"]}
    assert by_name["high anomaly"]["fired"]["id"] == "119004" and by_name["high anomaly"]["fired"]["level"] == 10
    assert by_name["critical anomaly, score 99 %"]["fired"]["id"] == "119007"
    assert by_name["score, not anomalous"]["alert"] is False


def test_a_rule_missing_on_the_manager_is_listed_and_exit_8(env, tmp_path, capsys):
    # the manager runs an older rules file without the "near certain" rule
    older = tmp_path / "older_rules.xml"
    text = RULES.read_text()
    # (and without the ATT&CK rules under it, which name it in their if_sid)
    older.write_text(re.sub(r'\s*<rule id="(119007|1191[5-9]\d)".*?</rule>', "", text, flags=re.S))
    with FakeWazuhAPI(FakeState(rules_path=older)) as fake:
        env(fake.url)
        assert run(tmp_path, "--json") == check.EXIT_MISSING
    doc = json.loads(capsys.readouterr().out)
    assert doc["missing"][0] == "119007" and doc["ok"] is False
    assert all(119150 <= int(m) < 119200 for m in doc["missing"][1:])
    bad = [s for s in doc["samples"] if s["status"] != "ok"]
    assert [(s["expected"]["id"], s["fired"]["id"]) for s in bad][0] == ("119007", "119005")
    # the critical samples fired the rule under 119005: the band's, or the technique's under the bands
    assert all(s["fired"]["id"] == "119005" or 119100 <= int(s["fired"]["id"]) < 119150 for s in bad)


def test_rules_not_loaded_at_all(env, tmp_path, capsys):
    state = FakeState()
    state.logtest_rules_override = {sev: None for sev in ("none", "low", "medium", "high", "critical")}
    with FakeWazuhAPI(state) as fake:
        env(fake.url)
        assert run(tmp_path) == check.EXIT_MISSING
    out = capsys.readouterr().out
    assert "MISSING" in out and "119004" in out and "(no rule fired)" in out


def test_wrong_password_exit_9_without_the_password(fake, env, tmp_path, capsys):
    env(fake.url, password="wrong-Pass-77")
    assert run(tmp_path) == check.EXIT_AUTH
    err = capsys.readouterr().err
    assert "wrong user or password" in err and "wrong-Pass-77" not in err


def test_missing_logtest_permission_exit_9(fake, env, tmp_path, capsys):
    fake.state.deny("/logtest", "logtest:run")
    env(fake.url)
    assert run(tmp_path) == check.EXIT_AUTH
    assert "logtest:run" in capsys.readouterr().err


def test_unreachable_exit_10(env, tmp_path, capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env(f"http://127.0.0.1:{port}")
    assert run(tmp_path, "--json") == check.EXIT_UNREACHABLE
    doc = json.loads(capsys.readouterr().out)
    assert doc["exit_code"] == 10 and "cannot connect" in doc["error"]


def test_server_errors_exit_10(fake, env, tmp_path):
    fake.state.fail_next("/logtest", 500, count=10)
    env(fake.url)
    assert run(tmp_path, "--timeout", "2") == check.EXIT_UNREACHABLE


def test_tls_exit_11_then_ok_with_the_ca_bundle(env, tmp_path, capsys):
    pytest.importorskip("cryptography", reason="the TLS test generates a certificate with cryptography")
    cert, key = self_signed_cert(tmp_path)
    with FakeWazuhAPI(tls=(cert, key)) as fake:
        env(fake.url)
        assert run(tmp_path) == check.EXIT_TLS
        assert "ca_bundle" in capsys.readouterr().err
        assert run(tmp_path, "--ca-bundle", cert) == check.EXIT_OK


def test_no_credentials_exit_12(env, tmp_path, capsys):
    assert run(tmp_path) == check.EXIT_CONFIG
    assert ENV_USER in capsys.readouterr().err


def test_credentials_file_readable_by_others_exit_12(fake, env, tmp_path, capsys):
    conf = tmp_path / "api.json"
    conf.write_text(json.dumps({"url": fake.url, "user": USER, "password": PASSWORD}))
    os.chmod(conf, 0o644)
    assert run(tmp_path, "--api-config", str(conf)) == check.EXIT_CONFIG
    assert "chmod 600" in capsys.readouterr().err
    os.chmod(conf, 0o600)
    assert run(tmp_path, "--api-config", str(conf)) == check.EXIT_OK


def test_default_credentials_file_under_wazuh_home(fake, env, tmp_path):
    conf = tmp_path / "etc" / "mimizuku" / "api.json"
    conf.parent.mkdir(parents=True)
    conf.write_text(json.dumps({"url": fake.url, "user": USER, "password": PASSWORD}))
    os.chmod(conf, 0o600)
    assert run(tmp_path) == check.EXIT_OK


def test_unreadable_rules_file_exit_3(fake, env, tmp_path, capsys):
    env(fake.url)
    assert main(["check", "--wazuh-home", str(tmp_path), "--rules", str(tmp_path / "nope.xml")]) == check.EXIT_RULES
    bad = tmp_path / "bad.xml"
    bad.write_text("<group name='x'><rule id='1'")
    assert main(["check", "--wazuh-home", str(tmp_path), "--rules", str(bad)]) == check.EXIT_RULES


def test_password_is_not_accepted_on_the_command_line(tmp_path, capsys):
    assert main(["check", "--wazuh-home", str(tmp_path), "--password", "x"]) == 2
