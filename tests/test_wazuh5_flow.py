"""The Wazuh 5.x flow end to end, on a real OpenSearch node: WCS events in ``wazuh-events-v5-*`` are
followed by the resident scorer (``--follow-indexer``, schema chosen by the index name), mapped to
alerts, scored, and come out as documents of the anomaly data stream (``--sink none --index-url``),
which is what ``install.sh`` sets up on a 5.x manager. Needs a real OpenSearch node.
"""
from __future__ import annotations

import json
import os
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from test_serve_support import Daemon, Scratch, wait_until
from test_wcs import EXECVE, FIM, SSHD, SUDO


def _http(method, url, body=None, ndjson=False, ok_missing=False):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/x-ndjson" if ndjson else "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        if ok_missing and e.code == 404:
            return None
        raise


@pytest.fixture
def node(opensearch_node):
    return opensearch_node.url.rstrip("/")


def test_wcs_events_followed_in_the_indexer_become_anomaly_documents(node):
    tag = os.urandom(3).hex()
    events, stream = f"wazuh-events-v5-system-activity-t{tag}", f"mimizuku-anomalies-t{tag}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    docs = []
    for i, d in enumerate([FIM, EXECVE, SUDO, SSHD] * 3):
        docs.append({**d, "@timestamp": (now - timedelta(seconds=60 - i)).strftime("%Y-%m-%dT%H:%M:%S.000Z")})
    _http("PUT", f"{node}/{events}", {"mappings": {"dynamic_templates": [
        {"s": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
        "properties": {"@timestamp": {"type": "date"}}}})
    scratch = Scratch()
    try:
        lines = b"".join(json.dumps({"index": {"_id": f"ev{i}"}}).encode() + b"\n" + json.dumps(d).encode() + b"\n"
                         for i, d in enumerate(docs))
        assert not _http("POST", f"{node}/{events}/_bulk?refresh=true", lines, ndjson=True)["errors"]
        scratch.install_version("v1")
        cfg = scratch.config(follow_indexer=f"{node}/{events}", from_start=True, indexer_lag=1.0,
                             indexer_interval=0.2, sink="none", index_url=node, index_stream=stream,
                             index_all_scores=True)

        def indexed():
            r = _http("POST", f"{node}/{stream}/_search?size=100", {"query": {"match_all": {}}}, ok_missing=True)
            return [h["_source"] for h in r["hits"]["hits"]] if r else []

        d = Daemon(cfg)
        try:
            assert wait_until(lambda: d.server.counters.scored >= len(docs), 60), d.server.counters
            assert wait_until(lambda: (_http("POST", f"{node}/{stream}/_refresh", ok_missing=True) or True)
                              and len(indexed()) == len(docs), 60)
        finally:
            d.stop()
        got = indexed()
        assert sorted(doc["source"]["alert_id"] for doc in got) == sorted(f"ev{i}" for i in range(len(docs)))
        assert {doc["agent"]["name"] for doc in got} == {"web-01"}
        assert {"550", "80792", "5402", "decoder/sshd/0:ssh_login"} == {doc["rule"]["id"] for doc in got}
        assert d.server.counters.events_sent == 0 and not list((scratch.spool / "events").glob("*"))
    finally:
        scratch.close()
        for path in (f"/{events}", f"/_data_stream/{stream}", f"/_index_template/{stream}"):
            try:
                _http("DELETE", node + path, ok_missing=True)
            except OSError:
                pass
