"""Wazuh 5.x events (Wazuh Common Schema) mapped to the alert layout the detectors read.

The documents are shaped like the 5.0 schema files (wazuh/wazuh-indexer-plugins 5.0.0:
wcs/stateless/events/main/docs/fields.csv; findings: wcs/stateless/events/findings/docs/fields.csv),
the engine's processed event (wazuh/wazuh 5.0.0: docs/ref/modules/engine/README.md: the agent under
wazuh.agent, the origin in wazuh.protocol.location, the decoders in wazuh.integration.decoders)
and FIM's stateless event (src/syscheckd/src/file/file.c, events.c: event.type added|modified|deleted,
who-data under file.audit). Each test reads the mapped alert through mimizuku.core.fields, the
accessors every detector uses.
"""
from __future__ import annotations

import json
import os
import urllib.request

import pytest

from mimizuku.core import fields as F
from mimizuku.sources.wcs import hit_alert, is_wcs, schema_of_index, to_alert

WAZUH = {"agent": {"id": "002", "name": "web-01", "version": "v5.0.0", "groups": ["default"],
                   "host": {"hostname": "web-01", "ip": ["10.0.0.12"], "os": {"type": "linux"}}},
         "cluster": {"name": "wazuh", "node": "node01"},
         "protocol": {"queue": 49, "location": "/var/log/audit/audit.log"},
         "space": {"name": "standard"}, "schema": {"version": "1.7.0"}}


def wazuh(**integration):
    return {**WAZUH, "integration": integration}


FIM = {"@timestamp": "2026-11-20T12:45:22.000Z",
       "wazuh": {**wazuh(category="system-activity", name="fim", decoders=["decoder/core-wazuh-message/0",
                                                                         "decoder/fim/0"]),
                 "protocol": {"queue": 56, "location": "syscheck"}},
       "event": {"created": "2026-11-20T12:45:22.000Z", "type": ["modified"], "category": ["file"],
                 "collector": "file", "module": "fim", "changed_fields": ["file.size", "file.mtime"]},
       "file": {"path": "/var/spool/cron/crontabs/root", "mode": "whodata", "owner": "root", "uid": "0",
                "audit": {"user_id": "0", "user_name": "root", "process_name": "/usr/bin/crontab",
                          "process_id": 4242, "ppid": 4100, "audit_uid": "1000", "audit_name": "alice",
                          "effective_uid": "0", "effective_name": "root", "cwd": "/root"}}}

EXECVE = {"@timestamp": "2026-11-20T12:45:20.000Z",
          "wazuh": wazuh(category="system-activity", name="auditd",
                         decoders=["decoder/core-wazuh-message/0", "decoder/auditd/0"]),
          "event": {"category": ["process"], "type": ["start"], "action": "executed", "outcome": "success"},
          "process": {"args": ["chmod", "u+s", "/usr/local/bin/.sh"], "args_count": 3,
                      "command_line": "chmod u+s /usr/local/bin/.sh", "executable": "/usr/bin/chmod",
                      "name": "chmod", "pid": 5120, "parent": {"pid": 5001},
                      "entry_leader": {"user": {"name": "alice"}, "entity_id": "7"}},
          "user": {"name": "root", "id": "0", "effective": {"name": "root", "id": "0"}}}

SUDO = {"@timestamp": "2026-11-20T09:01:00.000Z",
        "wazuh": wazuh(category="access-management", name="sudo",
                       decoders=["decoder/core-wazuh-message/0", "decoder/sudo/0"]),
        "event": {"category": ["process"], "type": ["start"], "action": "sudo-command"},
        "process": {"name": "sudo", "command_line": "/usr/bin/systemctl restart nginx"},
        "user": {"name": "alice", "target": {"name": "root"}}}

SSHD = {"@timestamp": "2026-11-20T10:56:15.000Z",
        "wazuh": wazuh(category="access-management", name="sshd",
                       decoders=["decoder/core-wazuh-message/0", "decoder/sshd/0"]),
        "event": {"category": ["authentication"], "type": ["start"], "action": "ssh_login", "outcome": "failure",
                  "severity": 5},
        "source": {"ip": "185.65.65.206", "port": 51022}, "user": {"name": "oracle"}}

FINDING = {**SSHD, "rule": {"id": "6f0bbd2e-7a1f-4c5e-9b1d-6a2c1d3e4f50", "title": "SSH brute force",
                            "level": "high", "tags": ["attack.credential_access"]}}


def test_fim_event_reads_as_a_file_change():
    a = to_alert(FIM, "Qx1")
    assert F.is_alert(a) and F.is_fim(a) and not F.is_command(a)
    assert F.rule_id(a) == "550" and "syscheck" in F.rule_groups(a)
    assert F.file_path(a) == "/var/spool/cron/crontabs/root" and F.file_event(a) == "modified"
    assert F.file_user(a) == "root" and F.file_process(a) == "/usr/bin/crontab"
    assert F.login_user(a) == "alice" and F.process_ids(a) == ("4242", "4100")
    assert (F.agent_id(a), F.agent_name(a), F.agent_ip(a)) == ("002", "web-01", "10.0.0.12")
    assert F.timestamp(a) == "2026-11-20T12:45:22.000Z" and F.alert_id(a) == "Qx1"
    assert F.seconds_and_hour(F.timestamp(a))[1] == 12
    for kind, rid in (("added", "554"), ("deleted", "553")):
        doc = {**FIM, "event": {**FIM["event"], "type": [kind]}}
        assert F.rule_id(to_alert(doc)) == rid and F.file_event(to_alert(doc)) == kind


def test_audited_command_reads_as_an_execve():
    a = to_alert(EXECVE)
    assert F.is_command(a) and not F.is_fim(a) and F.rule_id(a) == "80792"
    assert F.command_argv(a) == ["chmod", "u+s", "/usr/local/bin/.sh"]
    assert F.command_line(a) == "chmod u+s /usr/local/bin/.sh" and F.command_exe(a) == "/usr/bin/chmod"
    assert F.command_user(a) == "root" and F.command_run_as(a) == "root" and F.any_user(a) == "root"
    assert F.login_user(a) == "alice" and F.audit_session(a) == "7"
    assert F.process_ids(a) == ("5120", "5001")
    assert set(F.rule_groups(a)) >= {"audit_command", "process", "auditd"}
    assert F.location(a) == "/var/log/audit/audit.log"
    # a command line without args still is a command
    doc = {**EXECVE, "process": {"command_line": "id -u", "pid": 1}}
    assert F.is_command(to_alert(doc)) and F.command_line(to_alert(doc)) == "id -u"


def test_sudo_reads_as_sudo():
    a = to_alert(SUDO)
    assert F.rule_id(a) == "5402" and F.is_command(a)
    assert F.command_user(a) == "alice" and F.command_run_as(a) == "root"
    assert F.command_line(a) == "/usr/bin/systemctl restart nginx"


def test_other_events_feed_the_context_detector():
    a = to_alert(SSHD)
    assert not F.is_fim(a) and not F.is_command(a)
    assert F.rule_id(a) == "decoder/sshd/0:ssh_login" and F.rule_level(a) == 5
    assert set(F.rule_groups(a)) == {"access-management", "sshd", "authentication"}
    assert F.src_ip(a) == "185.65.65.206" and F.src_user(a) == "oracle" and F.any_user(a) == "oracle"
    assert F.ip_class(F.src_ip(a)) == "public"
    assert F.key_fields(a) == {"srcip": "185.65.65.206", "srcuser": "oracle", "user": "oracle"}
    f = to_alert(FINDING)
    assert F.rule_id(f) == FINDING["rule"]["id"] and F.rule_level(f) == 12
    assert F.rule_description(f) == "SSH brute force"
    assert not F.is_own_event(a)


def test_odd_documents_never_raise():
    for doc in ({}, {"wazuh": "x"}, {"wazuh": {"agent": []}}, {"event": {"type": 5}, "file": {"path": 3}},
                {"process": {"args": "ls"}, "event": {"category": "process"}},
                {"event": {"severity": "high"}, "rule": {"level": 7}}, {"@timestamp": ["2026-11-20T00:00:00Z"]}):
        a = to_alert(doc)
        F.key_fields(a)
        F.rule_level(a)
    assert to_alert([]) == {} and hit_alert({"_id": "x"}, "wcs") is None
    assert is_wcs(FIM) and not is_wcs({"rule": {"groups": ["sshd"]}, "wazuh": {}})


def test_schema_by_index_name():
    from mimizuku.sources.indexer import IndexerConfig, IndexerConfigError

    assert schema_of_index("wazuh-events-v5-*") == schema_of_index("wazuh-findings-v5-security-*") == "wcs"
    assert schema_of_index("wazuh-alerts-4.x-*") == schema_of_index("wazuh-events-v5-*,wazuh-alerts-*") == "wazuh-4"
    cfg = IndexerConfig(url="https://indexer:9200/wazuh-events-v5-*")
    cfg.check()
    assert (cfg.schema, cfg.time_field, cfg.tiebreakers) == ("wcs", "@timestamp", ("_id",))
    cfg = IndexerConfig(url="https://indexer:9200")
    cfg.check()
    assert (cfg.schema, cfg.time_field) == ("wazuh-4", "timestamp")
    with pytest.raises(IndexerConfigError, match="schema"):
        IndexerConfig(url="https://indexer:9200", schema="ecs").check()


def test_hit_alert_keeps_the_4x_path():
    hit = {"_id": "1", "_source": {"@timestamp": "2026-11-20T00:00:00Z", "rule": {"id": "5715"}}}
    assert hit_alert(hit)["timestamp"] == "2026-11-20T00:00:00Z" and hit_alert(hit)["rule"]["id"] == "5715"
    assert F.rule_id(hit_alert({"_id": "2", "_source": SSHD}, "wcs")) == "decoder/sshd/0:ssh_login"


# --- the indexer source on a real node: wazuh-events-v5-* read with schema "wcs" --------------------

def _http(method, url, body=None, ndjson=False):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/x-ndjson" if ndjson else "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


def test_indexer_source_reads_5x_events(tmp_path, opensearch_node):
    url = opensearch_node.url.rstrip("/")
    from mimizuku.sources.indexer import IndexerSource

    index = f"wazuh-events-v5-system-activity-test-{os.urandom(3).hex()}"
    _http("PUT", f"{url}/{index}", {"mappings": {"dynamic_templates": [
        {"s": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
        "properties": {"@timestamp": {"type": "date"}}}})
    try:
        docs = [FIM, EXECVE, SUDO, SSHD] + [{**SSHD, "source": {"ip": f"203.0.113.{i}"}} for i in range(5)]
        lines = b"".join(json.dumps({"index": {}}).encode() + b"\n" + json.dumps(d).encode() + b"\n" for d in docs)
        assert not _http("POST", f"{url}/{index}/_bulk?refresh=true", lines, ndjson=True)["errors"]
        conf = tmp_path / "indexer.json"
        conf.write_text("{}")
        os.chmod(conf, 0o600)
        src = IndexerSource(f"{url}/{index}", page_size=3, config_file=str(conf))  # schema by the index name
        assert src.config.schema == "wcs"
        assert src.config.time_field == "@timestamp" and src.config.tiebreakers == ("_id",)
        got = list(src)
        assert len(got) == len(docs)  # paged by 3 with the _id tiebreaker: nothing lost or repeated
        assert len({a["id"] for a in got}) == len(docs)
        by_rule = {F.rule_id(a) for a in got}
        assert {"550", "80792", "5402", "decoder/sshd/0:ssh_login"} <= by_rule
        assert F.timestamp(got[0]) == "2026-11-20T09:01:00.000Z"  # sorted by @timestamp
    finally:
        _http("DELETE", f"{url}/{index}")
