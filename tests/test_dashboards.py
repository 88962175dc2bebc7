"""`mimizuku dashboards`: the saved objects (ndjson) for the Wazuh dashboard and their import.

No OpenSearch Dashboards server runs here, so the objects are tested in two ways:
(a) their structure: each object's type, id and attributes, references that resolve, visState /
    searchSourceJSON / panelsJSON that parse;
(b) what each panel shows: its filters and aggregations are turned into the ``_search`` the
    dashboards would send (:func:`panel_search`, following OpenSearch Dashboards' agg configs:
    bucket aggregations nested in the order of ``aggs``, ``terms`` ordered by the count metric,
    filters in ``bool.filter``) and run against a real OpenSearch node on indexed anomaly
    documents; the buckets must be exactly the counts indexed.
The import runs against a small HTTP server that checks the multipart body and the headers.
"""
from __future__ import annotations

import base64
import email.parser
import email.policy
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mimizuku.delivery.index_docs import build_document, index_template
from mimizuku.tools import dashboards as dash

ROOT = Path(__file__).resolve().parent.parent


def objects():
    return [json.loads(line) for line in dash.to_ndjson(dash.saved_objects()).decode("utf-8").splitlines()]


# --- (a) structure --------------------------------------------------------------------------------

def test_every_object_is_well_formed_and_every_reference_resolves():
    objs = objects()
    ids = [(o["type"], o["id"]) for o in objs]
    assert len(ids) == len(set(ids))
    have = set(ids)
    assert Counter(t for t, _ in ids) == {"index-pattern": 2, "visualization": 12, "dashboard": 2}
    for o in objs:
        assert set(o) >= {"type", "id", "attributes", "references", "migrationVersion"}
        assert o["attributes"].get("title")
        for ref in o["references"]:
            assert (ref["type"], ref["id"]) in have, (o["id"], ref)
        names = {r["name"] for r in o["references"]}
        if o["type"] == "visualization":
            vis = json.loads(o["attributes"]["visState"])
            assert vis["title"] == o["attributes"]["title"] and vis["type"] in ("histogram", "pie", "table")
            assert vis["aggs"][0]["type"] == "count" and len(vis["aggs"]) >= 2
            src = json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
            assert src["indexRefName"] in names
            for f in src["filter"]:
                assert f["meta"]["indexRefName"] in names
                assert ("query" in f) != ("exists" in f)
        if o["type"] == "dashboard":
            panels = json.loads(o["attributes"]["panelsJSON"])
            assert len(panels) == 6 and {p["panelRefName"] for p in panels} == names
            json.loads(o["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])


def test_each_layout_has_the_panels_the_issue_asks_for():
    for key, layout in dash.LAYOUTS.items():
        vis = {o["id"]: json.loads(o["attributes"]["visState"]) for o in objects()
               if o["type"] == "visualization" and o["id"].startswith(f"mimizuku-{key}-")}
        fields = {a["params"].get("field") for v in vis.values() for a in v["aggs"]}
        assert {layout.time_field, layout.severity, layout.agent, layout.detector, layout.tactic,
                layout.reason, layout.run_split} <= fields


def test_export_writes_the_ndjson(tmp_path):
    out = tmp_path / "d.ndjson"
    p = run_cli("dashboards", "export", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == dash.to_ndjson(dash.saved_objects())
    p = run_cli("dashboards", "export", "--layout", "anomalies")
    assert p.returncode == 0 and all(json.loads(x)["id"].startswith("mimizuku-anomalies-")
                                     for x in p.stdout.splitlines())
    p = run_cli("dashboards", "export", "-o", str(tmp_path / "missing" / "d.ndjson"))
    assert p.returncode == dash.EXIT_OUTPUT and "cannot write" in p.stderr


def run_cli(*args, env=None):
    e = dict(os.environ, PYTHONPATH=str(ROOT / "detector"))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "mimizuku", *args], capture_output=True, text=True,
                          timeout=120, env=e)


# --- (b) what the panels show, on a real node ------------------------------------------------------

def panel_search(vis_obj, time_field, interval="1d"):
    """The ``_search`` body the dashboards send for one visualization (size 0, filters + aggs)."""
    vis = json.loads(vis_obj["attributes"]["visState"])
    src = json.loads(vis_obj["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert src["query"]["query"] == ""  # no KQL: the filters are all there is
    must = []
    for f in src["filter"]:
        if f["meta"]["disabled"]:
            continue
        clause = f["query"] if "query" in f else {"exists": f["exists"]}
        must.append({"bool": {"must_not": [clause]}} if f["meta"]["negate"] else clause)
    must.append({"range": {time_field: {"gte": "2026-11-01T00:00:00Z", "lt": "2026-12-01T00:00:00Z"}}})
    root: dict = {}
    level = root
    for agg in vis["aggs"]:
        if agg["type"] == "count":
            continue
        p = agg["params"]
        if agg["type"] == "terms":
            assert p["orderBy"] == "1"  # by the count metric
            body = {"terms": {"field": p["field"], "size": p["size"], "order": {"_count": p["order"]}}}
        elif agg["type"] == "date_histogram":
            body = {"date_histogram": {"field": p["field"], "fixed_interval": interval,
                                       "min_doc_count": p["min_doc_count"]}}
        else:
            raise AssertionError(agg["type"])
        level[agg["id"]] = body
        level = body.setdefault("aggs", {})
    return {"size": 0, "query": {"bool": {"filter": must}}, "aggs": root}


def flatten(aggs, prefix=()):
    """{(bucket key, ...): doc_count} at the deepest level of a nested aggregation answer."""
    (name, agg), = [(k, v) for k, v in aggs.items() if isinstance(v, dict) and "buckets" in v]
    out = {}
    for b in agg["buckets"]:
        key = prefix + (b.get("key_as_string", b["key"]),)
        inner = {k: v for k, v in b.items() if isinstance(v, dict) and "buckets" in v}
        out.update(flatten(inner, key) if inner else {key: b["doc_count"]})
    return out


def http(method, url, body=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/x-ndjson" if isinstance(body, bytes)
                                          else "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def node(opensearch_node):
    """The session's real OpenSearch node (tests/opensearch_node.py), as a base URL."""
    return opensearch_node.url.rstrip("/")


SEVERITIES = ["low"] * 5 + ["medium"] * 4 + ["high"] * 2 + ["critical"]
AGENTS = ["web-01", "web-02", "db-01"]
DETECTORS = ["files", "commands", "context"]
TACTICS = [None, "Execution", "Persistence", "Execution"]
REASONS = ["never seen for agent", "rare hour", "burst of 394 alerts"]
RUNS = ["ok", "ok", "kept", "failed", "ok"]


def expected_anomalies():
    """The anomalies indexed: i-th has severity SEVERITIES[i], agent, detector, tactic, reasons."""
    out = []
    for i, sev in enumerate(SEVERITIES):
        day = 3 + i % 2
        out.append({"ts": f"2026-11-{day:02d}T{10 + i % 5:02d}:00:00Z", "severity": sev, "agent": AGENTS[i % 3],
                    "detector": DETECTORS[i % 3 if i < 9 else 0], "tactic": TACTICS[i % 4],
                    "reasons": REASONS[: 1 + i % 3]})
    return out


def anomaly_records():
    """Scored records (docs/records.md) of the anomalies, one non-anomaly; model version per night."""
    recs = []
    for i, a in enumerate(expected_anomalies()):
        rec = {"id": f"1763.{i}", "timestamp": a["ts"], "agent": {"id": f"00{i % 3 + 1}", "name": a["agent"],
                                                                  "ip": "10.0.0.1"},
               "rule": {"id": "550", "level": 7, "groups": ["syscheck"]}, "location": "syscheck",
               "detector": a["detector"], "score": 0.8, "score_pct": 80, "threshold": 0.7, "anomaly": True,
               "severity": a["severity"], "reasons": a["reasons"], "scores": {a["detector"]: 0.8}, "fields": {},
               "model_version": "v-" + a["ts"][:10]}
        if a["tactic"]:
            rec["mitre"] = {"id": "T1059.004", "technique": "Unix Shell", "tactic": a["tactic"], "table": "1"}
        recs.append(rec)
    recs.append({"id": "1763.99", "timestamp": "2026-11-03T09:00:00Z", "agent": {"id": "001", "name": "web-01"},
                 "rule": {"id": "5715", "level": 3, "groups": ["sshd"]}, "detector": "context", "score": 0.1,
                 "anomaly": False, "severity": "none", "reasons": [], "model_version": "v-2026-11-03"})
    return recs


def anomaly_document(record):
    """The indexer sink's document for a record: what the anomaly dashboard reads."""
    return build_document(record, "manager")


def anomaly_index_template(pattern):
    t = index_template(pattern, replicas=0)
    t["priority"] = 500
    return t


def wazuh_alert_docs():
    """Alerts as Wazuh 4.x indexes them (our rules: rule.groups, the event under data.mimizuku),
    plus the job's summary alerts and an unrelated alert."""
    docs = []
    for i, a in enumerate(expected_anomalies()):
        m = {"score": "0.8", "score_pct": "80", "anomaly": "true", "severity": a["severity"],
             "detector": a["detector"], "reason": "; ".join(a["reasons"]), "agent": a["agent"]}
        if a["tactic"]:
            m["mitre"] = {"id": "T1059.004", "technique": "Unix Shell", "tactic": a["tactic"]}
        docs.append({"timestamp": a["ts"].replace("Z", "+0000"), "id": f"1.{i}", "location": "mimizuku",
                     "agent": {"id": f"00{i % 3 + 1}", "name": a["agent"]},
                     "rule": {"id": "119003", "level": 8, "groups": ["mimizuku", "anomaly"]},
                     "data": {"integration": "mimizuku", "mimizuku": m}})
    docs.append({"timestamp": "2026-11-03T09:00:00.000+0000", "agent": {"id": "001", "name": "web-01"},
                 "rule": {"id": "5715", "level": 3, "groups": ["syslog", "sshd"]}, "data": {"srcip": "1.2.3.4"}})
    docs.append({"timestamp": "2026-11-03T09:00:00.000+0000", "agent": {"id": "001", "name": "web-01"},
                 "rule": {"id": "119001", "level": 0, "groups": ["mimizuku"]},
                 "data": {"integration": "mimizuku", "mimizuku": {"anomaly": "false", "severity": "none"}}})
    for i, status in enumerate(RUNS):
        docs.append({"timestamp": f"2026-11-{3 + i % 2:02d}T02:30:00.000+0000", "location": "command_mimizuku",
                     "agent": {"id": "000", "name": "manager"},
                     "rule": {"id": "119011", "level": 3, "groups": ["mimizuku", "mimizuku_job"]},
                     "data": {"integration": "mimizuku", "mimizuku": {"job": "retrain", "status": status}}})
    return docs


#: The parts of Wazuh 4.x's index template (extensions/elasticsearch/7.x/wazuh-template.json in
#: wazuh/wazuh 4.14) the panels read: keywords, the timestamp's format, and every other string
#: (``data.mimizuku.*``) a keyword through its ``string_as_keyword`` dynamic template.
WAZUH_ALERTS_MAPPING = {
    "dynamic_templates": [{"string_as_keyword": {"mapping": {"type": "keyword"}, "match_mapping_type": "string"}}],
    "date_detection": False,
    "properties": {"timestamp": {"type": "date", "format": "date_optional_time||epoch_millis"},
                   "rule": {"properties": {"groups": {"type": "keyword"}, "id": {"type": "keyword"},
                                           "level": {"type": "long"}}},
                   "agent": {"properties": {"id": {"type": "keyword"}, "name": {"type": "keyword"}}},
                   "location": {"type": "keyword"}, "id": {"type": "keyword"}}}

def load(node, index, mapping, docs, data_stream=False):
    if data_stream:
        http("PUT", f"{node}/_index_template/{index}-test", anomaly_index_template(index))
    else:
        http("PUT", f"{node}/{index}", {"settings": {"number_of_replicas": 0}, "mappings": mapping})
    lines = b"".join(json.dumps({"create": {}}).encode() + b"\n" + json.dumps(d).encode() + b"\n" for d in docs)
    r = http("POST", f"{node}/{index}/_bulk?refresh=true", lines)
    assert not r["errors"], r


@pytest.fixture(scope="module")
def indexed(node):
    suffix = os.urandom(4).hex()
    alerts, anomalies = f"wazuh-alerts-4.x-test-{suffix}", f"mimizuku-anomalies-test-{suffix}"
    load(node, alerts, WAZUH_ALERTS_MAPPING, wazuh_alert_docs())
    load(node, anomalies, None, [anomaly_document(r) for r in anomaly_records()], data_stream=True)
    yield {"alerts": alerts, "anomalies": anomalies}
    for path in (f"/{alerts}", f"/_data_stream/{anomalies}", f"/_index_template/{anomalies}-test"):
        try:
            http("DELETE", node + path)
        except OSError:
            pass


def shown(node, index, key, name, interval="1d"):
    layout = dash.LAYOUTS[key]
    (vis,) = [o for o in objects() if o["id"] == f"mimizuku-{key}-{name}"]
    ip = [o for o in objects() if o["id"] == f"mimizuku-{key}-index-pattern"][0]
    assert ip["attributes"]["title"] == layout.index  # the panel reads the pattern the test fills
    r = http("POST", f"{node}/{index}/_search", panel_search(vis, layout.time_field, interval))
    assert r["_shards"]["failed"] == 0
    return flatten(r["aggregations"])


@pytest.mark.parametrize("key", ["alerts", "anomalies"])
def test_every_panel_shows_what_was_indexed(node, indexed, key):
    index = indexed[key]
    exp = expected_anomalies()
    day = {"alerts": lambda ts: ts[:10] + "T00:00:00.000Z", "anomalies": lambda ts: ts[:10] + "T00:00:00.000Z"}[key]
    assert shown(node, index, key, "over-time") == dict(Counter((day(a["ts"]), a["severity"]) for a in exp))
    assert shown(node, index, key, "by-agent") == {(k,): v for k, v in Counter(a["agent"] for a in exp).items()}
    assert shown(node, index, key, "by-detector") == {(k,): v for k, v in Counter(a["detector"] for a in exp).items()}
    assert shown(node, index, key, "by-tactic") == {(k,): v for k, v in Counter(a["tactic"] for a in exp
                                                                                 if a["tactic"]).items()}
    if key == "anomalies":  # each reason of the array counts once per anomaly
        reasons = Counter(r for a in exp for r in a["reasons"])
    else:  # the 4.x event carries the reasons joined (mimizuku.reason)
        reasons = Counter("; ".join(a["reasons"]) for a in exp)
    assert shown(node, index, key, "top-reasons") == {(k,): v for k, v in reasons.items()}
    if key == "alerts":
        runs = Counter((f"2026-11-{3 + i % 2:02d}T00:00:00.000Z", s) for i, s in enumerate(RUNS))
    else:  # each night's model, over every document it scored
        runs = Counter((r["timestamp"][:10] + "T00:00:00.000Z", r["model_version"]) for r in anomaly_records())
    assert shown(node, index, key, "nightly-runs") == dict(runs)


# --- import ----------------------------------------------------------------------------------------

class FakeDashboards(BaseHTTPRequestHandler):
    """POST /api/saved_objects/_import: records the request, answers like the dashboards."""
    answer = {"success": True, "successCount": 16}
    status = 200
    seen: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, self.headers, body))  # case-insensitive, as HTTP
        raw = json.dumps(type(self).answer).encode()
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *a):
        pass


@pytest.fixture
def fake():
    FakeDashboards.seen = []
    FakeDashboards.answer = {"success": True, "successCount": 16}
    FakeDashboards.status = 200
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeDashboards)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def creds_file(tmp_path, mode=0o600, **conf):
    p = tmp_path / "dashboards.json"
    p.write_text(json.dumps(conf or {"username": "admin", "password": "s3cr3t pass"}))
    os.chmod(p, mode)
    return p


def test_import_posts_the_objects_as_multipart_with_the_xsrf_header(fake, tmp_path):
    cfg = creds_file(tmp_path)
    p = run_cli("dashboards", "import", fake + "/", "--config", str(cfg))
    assert p.returncode == 0, p.stderr
    assert "imported 16 saved objects" in p.stdout and "s3cr3t" not in p.stdout + p.stderr
    (path, headers, body), = FakeDashboards.seen
    assert path == "/api/saved_objects/_import?overwrite=true"
    assert headers["osd-xsrf"] == "true"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"admin:s3cr3t pass").decode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + headers["Content-Type"].encode() + b"\r\n\r\n" + body)
    (part,) = list(msg.iter_parts())
    assert part.get_param("name", header="content-disposition") == "file"
    assert part.get_filename().endswith(".ndjson")
    assert part.get_payload(decode=True) == dash.to_ndjson(dash.saved_objects())


def test_import_without_a_credentials_file_sends_no_password(fake, tmp_path):
    p = run_cli("dashboards", "import", fake, "--layout", "alerts",
                env={"MIMIZUKU_DASHBOARDS_CONFIG": str(tmp_path / "absent.json")})
    assert p.returncode == 0, p.stderr
    (_, headers, _), = FakeDashboards.seen
    assert "Authorization" not in headers


def test_a_refused_import_is_an_error_that_names_the_objects(fake, tmp_path):
    FakeDashboards.answer = {"success": False, "successCount": 0, "errors": [
        {"id": "mimizuku-alerts-by-agent", "type": "visualization", "error": {"type": "missing_references"}}]}
    p = run_cli("dashboards", "import", fake, "--config", str(creds_file(tmp_path)))
    assert p.returncode == dash.EXIT_REFUSED and "visualization/mimizuku-alerts-by-agent: missing_references" in p.stderr
    FakeDashboards.status, FakeDashboards.answer = 401, {"statusCode": 401}
    p = run_cli("dashboards", "import", fake, "--config", str(creds_file(tmp_path)))
    assert p.returncode == dash.EXIT_AUTH and "s3cr3t" not in p.stderr


def test_unsafe_urls_and_credentials_are_refused(fake, tmp_path):
    p = run_cli("dashboards", "import", "http://192.0.2.7:5601", "--config", str(creds_file(tmp_path)))
    assert p.returncode == dash.EXIT_USAGE and "in clear" in p.stderr
    p = run_cli("dashboards", "import", "https://admin:pw@192.0.2.7")
    assert p.returncode == dash.EXIT_USAGE and "must not carry a user" in p.stderr
    p = run_cli("dashboards", "import", fake, "--config", str(creds_file(tmp_path, mode=0o644)))
    assert p.returncode == dash.EXIT_CONFIG and "chmod 600" in p.stderr
    assert FakeDashboards.seen == []


def test_tls_is_verified_by_default(tmp_path):
    """An https server with a self-signed certificate: refused (exit 11) unless its CA is given."""
    import shutil
    import ssl

    if not shutil.which("openssl"):
        pytest.skip("no openssl to make a certificate")
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    FakeDashboards.seen = []
    FakeDashboards.answer, FakeDashboards.status = {"success": True, "successCount": 16}, 200
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeDashboards)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"https://localhost:{srv.server_address[1]}"
        cfg = creds_file(tmp_path)
        p = run_cli("dashboards", "import", url, "--config", str(cfg))
        assert p.returncode == dash.EXIT_TLS and "--ca-bundle" in p.stderr
        assert FakeDashboards.seen == []
        p = run_cli("dashboards", "import", url, "--config", str(cfg), "--ca-bundle", str(cert))
        assert p.returncode == 0, p.stderr
        assert len(FakeDashboards.seen) == 1
        p = run_cli("dashboards", "import", url, "--config", str(cfg), "--insecure")  # a test bench, said
        assert p.returncode == 0 and "not verifying" in p.stderr and len(FakeDashboards.seen) == 2
    finally:
        srv.shutdown()
        srv.server_close()
