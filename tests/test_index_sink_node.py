"""Anomaly documents against a REAL OpenSearch 2.19 node (tests/opensearch_node.py; skipped, with
the reason, where none can run): the template makes a data stream, documents are queryable by
their typed fields, a resend is a 409 and never a second document, a refused document goes to the
dead-letter spool, and the node's lack of the ISM plugin is handled."""
from __future__ import annotations

import json
import random

import pytest
from test_index_sink import record

from mimizuku.core.spool import Spool
from mimizuku.delivery.index_docs import doc_id
from mimizuku.delivery.index_sink import IndexClient, IndexCredentials, IndexSink


@pytest.fixture
def stream(opensearch):
    """A data stream name in the test's namespace; the stream is deleted afterwards (its backing
    indices are named .ds-<stream>-NNNNNN, outside the namespace's prefix)."""
    name = opensearch.prefix + "anomalies"
    try:
        yield name
    finally:
        opensearch.request("DELETE", f"/_data_stream/{name}", ok=(200, 404))


def _sink(opensearch, stream, tmp_path, **kw):
    logs = []
    kw.setdefault("linger", 0.0)
    sink = IndexSink(IndexClient(IndexCredentials(opensearch.url)), tmp_path / "spool" / "index", stream=stream,
                     log=lambda lvl, msg: logs.append((lvl, msg)), rng=random.Random(0), **kw)
    return sink, logs


def _count(opensearch, stream, query=None):
    opensearch.request("POST", f"/{stream}/_refresh")
    body = {"query": query} if query else None
    return int(opensearch.request("POST" if body else "GET", f"/{stream}/_count", body)["count"])


def test_documents_are_indexed_into_a_data_stream_and_queryable(opensearch, stream, tmp_path):
    sink, logs = _sink(opensearch, stream, tmp_path, manager="node-1")
    records = [record(i, srcip=("10.0.0.%d" % i) if i % 2 else "not-an-ip") for i in range(20)]
    records[3]["mitre"] = None
    assert sink.add(records) == 20 and sink.pending() == 0
    assert sink.totals.created == 20 and sink.totals.rejected == 0
    ds = opensearch.request("GET", f"/_data_stream/{stream}")["data_streams"][0]
    assert ds["indices"][0]["index_name"].startswith(f".ds-{stream}-")
    assert _count(opensearch, stream) == 20
    # typed fields: ip ranges, keyword terms, float ranges, dates, the reasons' keyword copy
    assert _count(opensearch, stream, {"term": {"srcip": "10.0.0.0/24"}}) == 10
    assert _count(opensearch, stream, {"term": {"fields.srcip": "not-an-ip"}}) == 10
    assert _count(opensearch, stream, {"term": {"mitre.id": "T1059.004"}}) == 19
    assert _count(opensearch, stream, {"range": {"mimizuku.score": {"gte": 0.9}}}) == 20
    assert _count(opensearch, stream, {"range": {"@timestamp": {"gte": "2026-11-20T09:00:00Z",
                                                                "lt": "2026-11-20T09:00:01Z"}}}) == 20
    assert _count(opensearch, stream, {"term": {"mimizuku.reasons.keyword": "never ran nc -e on web-1"}}) == 20
    assert _count(opensearch, stream, {"match": {"mimizuku.reasons": "nc"}}) == 20
    assert _count(opensearch, stream, {"term": {"agent.ip": "192.168.1.10"}}) == 20
    hit = opensearch.request("POST", f"/{stream}/_search", {"query": {"ids": {"values": [
        doc_id("node-1", "1732000000.5", "commands")]}}})["hits"]["hits"]
    assert hit and hit[0]["_source"]["source"]["alert_id"] == "1732000000.5"
    mapping = opensearch.request("GET", f"/{stream}/_mapping")
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert props["srcip"]["type"] == "ip" and props["mimizuku"]["properties"]["score"]["type"] == "float"


def test_a_resend_is_never_a_second_document(opensearch, stream, tmp_path):
    sink, _ = _sink(opensearch, stream, tmp_path)
    sink.add([record(i) for i in range(10)])
    again, _ = _sink(opensearch, stream, tmp_path)   # another process, same ids
    again.add([record(i) for i in range(10)] + [record(10)])
    assert again.totals.duplicates == 10 and again.totals.created == 1
    assert _count(opensearch, stream) == 11


def test_a_document_the_mapping_refuses_is_set_aside_and_the_rest_goes_in(opensearch, stream, tmp_path):
    sink, logs = _sink(opensearch, stream, tmp_path)
    good = sink.documents([record(1), record(2)])
    bad = ("bad-doc", json.dumps({"@timestamp": "not a date", "srcip": "nope"}))
    sink.spool.put({"v": 1, "docs": [list(good[0]), list(bad), list(good[1])]})
    sink.flush(force=True)
    assert sink.pending() == 0 and sink.totals.created == 2 and sink.totals.rejected == 1
    dead = list(Spool(tmp_path / "spool" / "index-rejected").items())
    assert len(dead) == 1 and dead[0][1]["_id"] == "bad-doc" and dead[0][1]["status"] == 400
    assert any("set aside" in m for _, m in logs)
    assert _count(opensearch, stream) == 2


def test_a_node_without_ism_is_said_once_and_still_written_to(opensearch, stream, tmp_path):
    sink, logs = _sink(opensearch, stream, tmp_path)
    sink.add([record(1)])
    has_ism = sink.ism == "installed"
    if has_ism:   # a node with the plugin: the policy is there
        opensearch.request("DELETE", f"/_plugins/_ism/policies/{stream}", ok=(200, 404))
    else:
        assert sink.ism == "absent"
        assert sum("Index State Management" in m for _, m in logs) == 1
    assert _count(opensearch, stream) == 1
