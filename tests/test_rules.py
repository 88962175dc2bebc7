"""wazuh_rules/mimizuku_rules.xml: loads on a manager (wazuh-facts.md 3) and fires as intended.

Field values are checked in the form analysisd gives them (strings from the json decoder),
with Wazuh's own regex semantics (wazuhregex emulates OS_Regex/PCRE2).
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

pytest.importorskip("wazuhregex", reason="test dependency wazuhregex (pip install wazuhregex)")

from wazuh_emulation import RulesError, Ruleset, parse_queue_message, regex_match  # noqa: E402

from mimizuku.delivery import events
from mimizuku.engine.techniques import table_rows

RULES = Path(__file__).resolve().parent.parent / "wazuh_rules" / "mimizuku_rules.xml"
#: Stock rule ids the file must not reuse (a sample spread over the stock ranges).
STOCK_IDS = [1, 550, 553, 554, 5402, 5715, 31101, 80792, 87105, 99999]


@pytest.fixture(scope="module")
def rules():
    return Ruleset(RULES, known_ids=STOCK_IDS)


def record(sev="high", pct=96, anomaly=None, detector="files", agent=("005", "app-03", "10.1.1.3")):
    anomaly = (sev != "none") if anomaly is None else anomaly
    return {"id": "1700000000.77", "timestamp": "2026-11-20T10:15:02.123+0000",
            "agent": {"id": agent[0], "name": agent[1], "ip": agent[2]},
            "rule": {"id": "550", "level": 7, "description": "Integrity checksum changed.", "groups": ["syscheck"]},
            "location": "syscheck", "detector": detector, "score": pct / 100, "score_pct": pct, "threshold": 0.8,
            "anomaly": anomaly, "severity": sev, "reasons": ["/etc/shadow is rarely modified"] if anomaly else [],
            "fields": {"path": "/etc/shadow"}, "model_version": "v1"}


def job_line(**m):
    return b"1:command_mimizuku:" + json.dumps({"integration": "mimizuku", "mimizuku": m}).encode()


# --- load-time checks ----------------------------------------------------------------------------

def test_file_loads_with_every_load_time_rule(rules):
    assert 119000 in rules.rules and [r.id for r in rules.roots] == [119000]
    for r in rules.rules.values():
        assert 100000 <= r.id <= 120000 and 0 <= r.level <= 16
        assert "mimizuku" in r.groups
        assert "no_full_log" in r.options
    base = rules.rules[119000]
    assert base.level == 0 and base.decoded_as == "json"
    assert [(f.name, f.pattern) for f in base.fields] == [("integration", "^mimizuku$")]


def test_file_has_no_xml_declaration_and_one_root_group():
    text = RULES.read_text()
    assert not text.lstrip().startswith("<?xml")
    assert len(re.findall(r"<group name=", text)) == 1


@pytest.mark.parametrize("mutation, message", [
    (lambda t: t.replace('<rule id="119003" level="8">', '<rule id="119003" level="17">'), "level"),
    (lambda t: t.replace('<rule id="119003" level="8">', '<rule id="1190030" level="8">'), "6 digits"),
    (lambda t: t.replace('<rule id="119003" level="8">', '<rule id="99000" level="8">'), "custom ids"),
    (lambda t: t.replace('<rule id="119003" level="8">', '<rule id="119002" level="8">'), "duplicate"),
    (lambda t: t.replace("<if_sid>119005</if_sid>", "<if_sid>119099</if_sid>"), "not defined earlier"),
    (lambda t: t.replace("<if_sid>119005</if_sid>", "<if_sid>11900x</if_sid>"), "invalid if_sid"),
    (lambda t: t.replace("<options>no_full_log</options>", "<colour>red</colour>", 1), "unknown element"),
    (lambda t: t.replace("<options>no_full_log</options>", "<options>no_fulllog</options>", 1), "unknown option"),
    (lambda t: t.replace("<decoded_as>json</decoded_as>", "<decoded_as>jsn</decoded_as>"), "unknown decoder"),
    (lambda t: t.replace("^99$|^100$", "^(99|100)$"), "invalid osregex"),
    (lambda t: t.replace("</group>\n", "", 1), "XML error"),
    (lambda t: "<?xml version='1.0'?>\n" + t, "declaration"),
])
def test_the_checks_catch_what_would_break_a_manager(tmp_path, mutation, message):
    bad = tmp_path / "bad_rules.xml"
    bad.write_text(mutation(RULES.read_text()))
    with pytest.raises(RulesError, match=message):
        Ruleset(bad, known_ids=STOCK_IDS)


def test_a_rule_reusing_a_stock_id_is_caught(tmp_path):
    bad = tmp_path / "bad_rules.xml"
    bad.write_text(RULES.read_text())
    with pytest.raises(RulesError, match="duplicate"):
        Ruleset(bad, known_ids=STOCK_IDS + [119004])


# --- field patterns against the strings our events produce ------------------------------------

#: Every string form each matched field can take in our events (json decoder output).
FORMS = {
    "integration": ["mimizuku", "virustotal", "mimizuku2", "xmimizuku"],
    "mimizuku.anomaly": ["true", "false"],
    "mimizuku.severity": list(events.SEVERITIES) + ["severe"],
    "mimizuku.score_pct": [str(i) for i in range(0, 101)] + ["990", "1000", "0.990000"],
    "mimizuku.status": ["ok", "kept", "failed", "okay", "not-ok", "running"],
    "mimizuku.job": ["retrain", "cluster", "a b"],
    "mimizuku.feedback.action": ["add", "import", "revoke", "unknown", "added", "re-add"],
    # every technique id of the table, and near misses (a prefix, a sub-technique, another case)
    "mimizuku.mitre.id": sorted({r["id"] for r in table_rows()}) + ["T1059", "T1059.0041", "XT1496", "T1496 "],
}
#: What each (rule, field) pattern is meant to accept among FORMS; everything else must not match.
INTENDED = {
    (119000, "integration"): {"mimizuku"},
    (119001, "mimizuku.anomaly"): {"false"},
    (119002, "mimizuku.anomaly"): {"true"}, (119002, "mimizuku.severity"): {"low"},
    (119003, "mimizuku.anomaly"): {"true"}, (119003, "mimizuku.severity"): {"medium"},
    (119004, "mimizuku.anomaly"): {"true"}, (119004, "mimizuku.severity"): {"high"},
    (119005, "mimizuku.anomaly"): {"true"}, (119005, "mimizuku.severity"): {"critical"},
    (119006, "mimizuku.anomaly"): {"true"}, (119006, "mimizuku.severity"): {"none", "severe"},
    (119007, "mimizuku.score_pct"): {"99", "100"},
    (119010, "mimizuku.job"): {"retrain", "cluster"},
    (119011, "mimizuku.status"): {"ok"},
    (119012, "mimizuku.status"): {"kept"},
    (119013, "mimizuku.status"): {"failed"},
    (119014, "mimizuku.status"): {"okay", "not-ok", "running"},
    (119020, "mimizuku.feedback.action"): {"add", "import", "revoke"},
    # one rule per technique under the bands (119100...) and one under 119007 (119150...)
    **{(base + i, "mimizuku.mitre.id"): {r["id"]} for base in (119100, 119150) for i, r in enumerate(table_rows())},
}


def test_every_field_pattern_matches_exactly_the_intended_forms(rules):
    seen = set()
    for rule in rules.rules.values():
        for cond in rule.fields:
            key = (rule.id, cond.name)
            assert key in INTENDED, f"no expectation for {key}"
            seen.add(key)
            matched = {v for v in FORMS[cond.name] if regex_match(cond.pattern, cond.type, v) != cond.negate}
            assert matched == INTENDED[key], key
    assert seen == set(INTENDED)


# --- events from our own code, through the emulated analysisd ---------------------------------

@pytest.mark.parametrize("sev, pct, want, level", [
    ("low", 82, 119002, 5), ("medium", 91, 119003, 8), ("high", 96, 119004, 10),
    ("critical", 98, 119005, 12), ("critical", 99, 119007, 13), ("critical", 100, 119007, 13),
    ("bogus", 97, 119006, 6),
])
def test_anomaly_levels_rise_with_severity(rules, sev, pct, want, level):
    rec = record(sev, pct)
    if sev == "bogus":
        rec["severity"] = "none"  # an anomaly without a known severity (events maps unknown to "none")
    ev = parse_queue_message(events.event_message(rec))
    rule = rules.match(ev)
    assert (rule.id, rule.level) == (want, level)
    assert "anomaly" in rule.groups and "mimizuku" in rule.groups
    assert rules.matching_siblings(ev, rule) == []
    desc = rules.description(rule, ev)
    assert "app-03" in desc and "files detector" in desc and "/etc/shadow is rarely modified" in desc
    assert f"{pct}%" in desc and "(null)" not in desc


def test_non_anomalous_scores_stay_at_level_zero(rules):
    ev = parse_queue_message(events.event_message(record("none", 40)))
    rule = rules.match(ev)
    assert (rule.id, rule.level) == (119001, 0)
    assert "(null)" not in rules.description(rule, ev)


@pytest.mark.parametrize("detector, agent", itertools.product(
    ["files", "commands", "context"], [("000", "wazuh-manager", None), ("017", "ws-17", "fe80::7")]))
def test_description_names_agent_detector_and_reason(rules, detector, agent):
    ev = parse_queue_message(events.event_message(record("medium", 91, detector=detector, agent=agent)))
    desc = rules.description(rules.match(ev), ev)
    name = agent[1] if agent[0] != "000" else "wazuh-manager"
    assert name in desc and f"{detector} detector" in desc and "rarely modified" in desc


@pytest.mark.parametrize("line, want, level", [
    ({"job": "retrain", "status": "ok", "version": "20261121T020000Z-ab12cd"}, 119011, 3),
    ({"job": "retrain", "status": "kept", "version": "v7", "error": "new model flagged 9% of a quiet day"}, 119012, 7),
    ({"job": "retrain", "status": "failed", "version": "v7", "error": "no alerts archived for 2026-11-20"}, 119013, 9),
    ({"job": "retrain", "status": "exploded"}, 119014, 6),
])
def test_nightly_job_summary_lines(rules, line, want, level):
    ev = parse_queue_message(job_line(**line))
    assert ev.location == "command_mimizuku"
    rule = rules.match(ev)
    assert (rule.id, rule.level) == (want, level)
    assert rules.matching_siblings(ev, rule) == []
    desc = rules.description(rule, ev)
    assert "retrain" in desc and "(null)" not in desc
    if line["status"] == "failed":
        assert level >= 3 and "mimizuku_job_failed" in rule.groups and line["error"] in desc


def test_other_json_events_do_not_match(rules):
    for payload in ({"integration": "virustotal", "virustotal": {"malicious": 1}},
                    {"mimizuku": {"anomaly": True, "severity": "high"}}):
        ev = parse_queue_message(b"1:virustotal:" + json.dumps(payload).encode())
        assert rules.match(ev) is None
    assert rules.match(parse_queue_message(b"1:/var/log/syslog:mimizuku anomaly true")) is None


# --- analysts' verdicts (mimizuku feedback): the audit event -----------------------------------

@pytest.mark.parametrize("action", ["add", "import", "revoke"])
def test_a_verdict_change_becomes_a_low_level_audit_alert(rules, action):
    change = {"action": action, "id": "fb-0123456789ab", "verdict": "false-positive", "scope": "agent-account",
              "by": "alice", "note": "pentest\n1:forged:line", "alert_id": "1794060120.2200",
              "situations": [{"detector": "commands", "content": '["command", ["prog:bash"]]', "agent": "web-01",
                              "account": "www-data"}]}
    ev = parse_queue_message(events.feedback_message(change))
    assert ev.location == "mimizuku"
    rule = rules.match(ev)
    assert (rule.id, rule.level) == (119020, 3)
    assert "mimizuku_feedback" in rule.groups and "anomaly" not in rule.groups
    assert rules.matching_siblings(ev, rule) == []
    desc = rules.description(rule, ev)
    assert "alice" in desc and action in desc and "fb-0123456789ab" in desc and "web-01" in desc
    assert "(null)" not in desc


# --- ATT&CK techniques (mimizuku.engine.techniques) --------------------------------------------

@pytest.mark.parametrize("sev, pct, level", [("medium", 91, 12), ("critical", 98, 12), ("critical", 100, 13)])
def test_a_technique_reaches_wazuhs_mitre_views(rules, sev, pct, level):
    rec = record(sev, pct, detector="commands")
    rec["mitre"] = {"id": "T1059.004", "technique": "Command and Scripting Interpreter: Unix Shell (reverse shell)",
                    "tactic": "execution", "table": "2026.12-1"}
    ev = parse_queue_message(events.event_message(rec))
    rule = rules.match(ev)
    assert rule.level == level and "mitre_technique" in rule.groups
    assert rule.mitre == ["T1059.004"]
    assert rules.matching_siblings(ev, rule) == []
    desc = rules.description(rule, ev)
    assert "T1059.004" in desc and "Unix Shell" in desc and "(null)" not in desc


def test_every_technique_of_the_table_has_its_rules(rules):
    ids = [r["id"] for r in table_rows()]
    for base, parents in ((119100, {119002, 119003, 119004, 119005, 119006}), (119150, {119007})):
        for i, tid in enumerate(ids):
            rule = rules.rules[base + i]
            assert set(rule.if_sid) == parents
            assert [(f.name, f.pattern) for f in rule.fields] == [("mimizuku.mitre.id", f"^{tid}$")]


# --- only our own locations (issue 17 item 3) --------------------------------------------------

FORGED = {"integration": "mimizuku", "mimizuku": {"anomaly": "true", "severity": "critical", "score_pct": 100,
                                                  "detector": "files", "agent": "web-01", "reason": "forged"}}
FORGED_JOB = {"integration": "mimizuku", "mimizuku": {"job": "retrain", "status": "ok", "version": "v9"}}


def queue_line(location: str, payload) -> bytes:
    return f"1:{location}:".encode() + json.dumps(payload).encode()


@pytest.mark.parametrize("location", [
    "[001] (web-01) 10.0.0.5->/var/log/app.json",       # a JSON log an agent ships
    "[001] (web-01) any->/var/log/app.json",
    "[001] (web-01) any->/var/log/uploads/x->mimizuku",  # a file named to end like ours
    "[001] (web-01) any->command_mimizuku",              # an agent's own command wodle
    "/var/log/app.json",                                 # the manager's own log files
])
def test_a_forged_event_from_a_log_does_not_reach_our_rules(rules, location):
    for payload in (FORGED, FORGED_JOB):
        ev = parse_queue_message(queue_line(location, payload))
        assert ev.decoder == "json" and ev.get("integration") == "mimizuku"
        assert rules.match(ev) is None, location


def test_our_events_match_from_every_place_they_are_sent(rules):
    rec = record("critical", 100)
    ev = parse_queue_message(events.event_message(rec))          # attached to the agent
    assert ev.rule_location == "(app-03) 10.1.1.3->mimizuku" and rules.match(ev).id == 119007
    rec["agent"] = {"id": "000", "name": "manager"}
    assert rules.match(parse_queue_message(events.event_message(rec))).id == 119007
    payload = json.loads(events.event_message(rec).split(b":", 2)[2])
    assert rules.match(parse_queue_message(queue_line("API-Webhook", payload))).id == 119007  # the API sink
    v6 = record("critical", 100, agent=("007", "db-1", "fe80::1"))
    assert rules.match(parse_queue_message(events.event_message(v6))).id == 119007


def test_a_job_summary_is_only_taken_from_the_managers_command_wodle(rules):
    assert rules.match(parse_queue_message(queue_line("command_mimizuku", FORGED_JOB))).id == 119011
    for location in ("mimizuku", "API-Webhook", "[001] (web-01) any->mimizuku"):
        rule = rules.match(parse_queue_message(queue_line(location, FORGED_JOB)))
        assert rule is not None and rule.id == 119000 and rule.level == 0, location  # no job alert
