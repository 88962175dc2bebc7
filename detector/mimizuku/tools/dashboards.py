"""Dashboards for the Wazuh dashboard (OpenSearch Dashboards): saved objects as ndjson, and their import.

``mimizuku dashboards export [-o FILE]`` writes the saved objects; ``mimizuku dashboards import URL``
loads them through the dashboards' saved-objects import API (``POST /api/saved_objects/_import``,
multipart, header ``osd-xsrf: true``). Two sets of panels, one per place anomalies are kept:

* ``alerts``: Wazuh 4.x, where anomalies come back as Wazuh alerts in ``wazuh-alerts-*``, filtered
  to our rule group (``rule.groups: mimizuku``; the event's fields under ``data.mimizuku.*``).
* ``anomalies``: the indexer sink's ``mimizuku-anomalies`` data stream (one document per anomaly,
  fields under ``mimizuku.*``), also what Wazuh 5.x installs use.

Each panel is a plain ``visualization`` (aggregation-based: a date histogram and ``terms``
buckets), whose query is a list of phrase and exists filters in its ``searchSourceJSON``: nothing a panel
shows depends on KQL, so a test can run each panel's exact query and aggregation against a real
node (``tests/test_dashboards.py``). Field names are declared once, in :data:`LAYOUTS`.

Why our own index patterns (``mimizuku-wazuh-alerts``) instead of the Wazuh dashboard's
``wazuh-alerts-*``: an import with ``overwrite=true`` replaces objects of the same id, and the Wazuh
plugin's own pattern (its field list, its default) must never be replaced by ours.
"""
from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import ssl
import sys
import uuid
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib import error as urlerror
from urllib import request as urlrequest
from urllib.parse import urlsplit

from mimizuku.core.hosts import is_loopback
from mimizuku.core.private_file import read_private_json

log = logging.getLogger("mimizuku.dashboards")

__all__ = ["LAYOUTS", "Layout", "saved_objects", "to_ndjson", "import_objects", "DashboardsError",
           "add_parser", "run"]

EXIT_OK, EXIT_USAGE, EXIT_OUTPUT = 0, 2, 3
EXIT_REFUSED, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_TLS, EXIT_CONFIG = 8, 9, 10, 11, 12

#: The saved-objects format these objects follow (OpenSearch Dashboards 1.x/2.x: the Wazuh
#: dashboard 4.x and 5.x); the dashboards migrate them on import.
VIS_MIGRATION = "7.10.0"
DASHBOARD_MIGRATION = "7.9.3"
INDEX_PATTERN_MIGRATION = "7.6.0"
CONFIG_PATH = "/var/ossec/etc/mimizuku/dashboards.json"
MAX_ANSWER = 4 << 20


#: A filter value meaning "the field is present" (an exists filter) rather than a phrase.
EXISTS = None


@dataclass(frozen=True)
class Layout:
    """Where one kind of index keeps what the panels show (field names as the index maps them)."""
    key: str
    title: str
    index: str            # index pattern title
    time_field: str
    anomaly_filters: Tuple[Tuple[str, Any], ...]   # filters selecting our anomalies
    run_filters: Tuple[Tuple[str, Any], ...]       # filters selecting the nightly job's runs
    severity: str
    agent: str
    detector: str
    tactic: str
    reason: str
    run_split: str        # what splits the nightly job's runs over time
    runs_title: str


#: The two layouts. ``alerts``: our Wazuh rules (wazuh_rules/mimizuku_rules.xml) turn each event into
#: an alert whose JSON fields the json decoder puts under ``data.`` (``data.mimizuku.severity``); the
#: agent is the alert's own (the event's location names it); the nightly job's summary line is an alert
#: of group ``mimizuku_job`` with ``data.mimizuku.status``. ``anomalies``: the indexer sink's document
#: (``delivery/index_docs.py``: the scored record under ``mimizuku.*``, the technique under ``mitre``,
#: ``mimizuku.reasons`` text with a ``.keyword``); the sink writes no document per run of the nightly
#: job, so its panel shows each night's model taking over (``mimizuku.model_version`` over time, every
#: document scored).
LAYOUTS: Dict[str, Layout] = {
    "alerts": Layout(
        key="alerts", title="Wazuh alerts (4.x)", index="wazuh-alerts-*", time_field="timestamp",
        anomaly_filters=(("rule.groups", "mimizuku"), ("rule.groups", "anomaly")),
        run_filters=(("rule.groups", "mimizuku_job"),),
        severity="data.mimizuku.severity", agent="agent.name", detector="data.mimizuku.detector",
        tactic="data.mimizuku.mitre.tactic", reason="data.mimizuku.reason", run_split="data.mimizuku.status",
        runs_title="Nightly job runs by status"),
    "anomalies": Layout(
        key="anomalies", title="anomaly index", index="mimizuku-anomalies*", time_field="@timestamp",
        anomaly_filters=(("mimizuku.anomaly", True),), run_filters=(),
        severity="mimizuku.severity", agent="agent.name", detector="mimizuku.detector",
        tactic="mitre.tactic", reason="mimizuku.reasons.keyword", run_split="mimizuku.model_version",
        runs_title="Nightly job runs: the model version that scored"),
}


def _id(layout: Layout, name: str) -> str:
    # stable ids: a second import replaces the first instead of adding copies
    return f"mimizuku-{layout.key}-{name}"


def _filter(field: str, value: Any, i: int) -> Dict[str, Any]:
    """A filter as the dashboards' filter bar writes it: type phrase (``query.match_phrase`` is
    what runs) or, for :data:`EXISTS`, type exists (``exists``)."""
    meta = {"alias": None, "negate": False, "disabled": False, "key": field,
            "indexRefName": f"kibanaSavedObjectMeta.searchSourceJSON.filter[{i}].meta.index"}
    if value is EXISTS:
        return {"meta": {**meta, "type": "exists", "value": "exists"}, "exists": {"field": field},
                "$state": {"store": "appState"}}
    return {"meta": {**meta, "type": "phrase", "params": {"query": value}},
            "query": {"match_phrase": {field: value}}, "$state": {"store": "appState"}}


def _search_source(layout: Layout, filters: Sequence[Tuple[str, Any]]) -> Tuple[str, List[Dict[str, str]]]:
    ip = _id(layout, "index-pattern")
    refs = [{"name": "kibanaSavedObjectMeta.searchSourceJSON.index", "type": "index-pattern", "id": ip}]
    fl = []
    for i, (field, value) in enumerate(filters):
        fl.append(_filter(field, value, i))
        refs.append({"name": f"kibanaSavedObjectMeta.searchSourceJSON.filter[{i}].meta.index",
                     "type": "index-pattern", "id": ip})
    source = {"query": {"query": "", "language": "kuery"}, "filter": fl,
              "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index"}
    return json.dumps(source, separators=(",", ":")), refs


def _terms(agg_id: str, field: str, size: int, schema: str) -> Dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "terms", "schema": schema,
            "params": {"field": field, "orderBy": "1", "order": "desc", "size": size, "otherBucket": False,
                       "missingBucket": False}}


def _histogram(agg_id: str, field: str) -> Dict[str, Any]:
    return {"id": agg_id, "enabled": True, "type": "date_histogram", "schema": "segment",
            "params": {"field": field, "useNormalizedOpenSearchInterval": True, "interval": "auto",
                       "drop_partials": False, "min_doc_count": 1, "extended_bounds": {}}}


_COUNT = {"id": "1", "enabled": True, "type": "count", "schema": "metric", "params": {}}


def _vis_params(kind: str) -> Dict[str, Any]:
    if kind == "pie":
        return {"type": "pie", "addTooltip": True, "addLegend": True, "legendPosition": "right",
                "isDonut": True, "labels": {"show": False, "values": True, "last_level": True, "truncate": 100}}
    if kind == "table":
        return {"perPage": 10, "showPartialRows": False, "showMetricsAtAllLevels": False, "showTotal": False,
                "totalFunc": "sum", "percentageCol": ""}
    return {"type": "histogram", "addTooltip": True, "addLegend": True, "legendPosition": "right",
            "times": [], "addTimeMarker": False,
            "seriesParams": [{"show": True, "type": "histogram", "mode": "stacked", "data": {"id": "1", "label": "Count"},
                              "valueAxis": "ValueAxis-1"}],
            "categoryAxes": [{"id": "CategoryAxis-1", "type": "category", "position": "bottom", "show": True,
                              "labels": {"show": True, "truncate": 100}, "title": {}}],
            "valueAxes": [{"id": "ValueAxis-1", "name": "LeftAxis-1", "type": "value", "position": "left",
                           "show": True, "labels": {"show": True, "rotate": 0, "truncate": 100},
                           "title": {"text": "Count"}}]}


def _panels(layout: Layout) -> List[Tuple[str, str, str, List[Dict[str, Any]], Sequence[Tuple[str, Any]]]]:
    """(name, title, vis type, aggs, filters) of every panel, in dashboard order."""
    a, runs = layout.anomaly_filters, layout.run_filters
    when = layout.time_field
    return [
        ("over-time", "Anomalies over time by severity", "histogram",
         [_COUNT, _histogram("2", when), _terms("3", layout.severity, 5, "group")], a),
        ("by-agent", "Anomalies by agent", "histogram", [_COUNT, _terms("2", layout.agent, 20, "segment")], a),
        ("by-detector", "Anomalies by detector", "pie", [_COUNT, _terms("2", layout.detector, 5, "segment")], a),
        ("by-tactic", "Anomalies by MITRE ATT&CK tactic", "pie", [_COUNT, _terms("2", layout.tactic, 14, "segment")], a),
        ("top-reasons", "Top reasons", "table", [_COUNT, _terms("2", layout.reason, 20, "bucket")], a),
        ("nightly-runs", layout.runs_title, "histogram",
         [_COUNT, _histogram("2", when), _terms("3", layout.run_split, 5, "group")], runs),
    ]


def saved_objects(layouts: Sequence[str] = ("alerts", "anomalies")) -> List[Dict[str, Any]]:
    """The saved objects (index pattern, visualizations, dashboard) of the given layouts."""
    out: List[Dict[str, Any]] = []
    for key in layouts:
        layout = LAYOUTS[key]
        ip = _id(layout, "index-pattern")
        out.append({"type": "index-pattern", "id": ip, "migrationVersion": {"index-pattern": INDEX_PATTERN_MIGRATION},
                    "references": [], "attributes": {"title": layout.index, "timeFieldName": layout.time_field}})
        panels, refs = [], []
        for n, (name, title, kind, aggs, filters) in enumerate(_panels(layout)):
            vid = _id(layout, name)
            source, vrefs = _search_source(layout, filters)
            vis = {"title": f"Mimizuku: {title}", "type": kind, "aggs": aggs, "params": _vis_params(kind)}
            out.append({"type": "visualization", "id": vid, "migrationVersion": {"visualization": VIS_MIGRATION},
                        "references": vrefs,
                        "attributes": {"title": vis["title"], "description": f"{title} ({layout.title})",
                                       "visState": json.dumps(vis, separators=(",", ":")), "uiStateJSON": "{}",
                                       "version": 1, "kibanaSavedObjectMeta": {"searchSourceJSON": source}}})
            ref = f"panel_{n}"
            panels.append({"version": "2.19.0", "panelIndex": str(n + 1), "embeddableConfig": {},
                           "gridData": {"x": 0 if n % 2 == 0 else 24, "y": 15 * (n // 2), "w": 24, "h": 15,
                                        "i": str(n + 1)}, "panelRefName": ref})
            refs.append({"name": ref, "type": "visualization", "id": vid})
        out.append({"type": "dashboard", "id": _id(layout, "dashboard"),
                    "migrationVersion": {"dashboard": DASHBOARD_MIGRATION}, "references": refs,
                    "attributes": {"title": f"Mimizuku anomalies ({layout.title})",
                                   "description": f"Mimizuku's anomalies in {layout.index}", "version": 1,
                                   "panelsJSON": json.dumps(panels, separators=(",", ":")),
                                   "optionsJSON": json.dumps({"hidePanelTitles": False, "useMargins": True}),
                                   "timeRestore": True, "timeFrom": "now-7d", "timeTo": "now",
                                   "refreshInterval": {"pause": True, "value": 0},
                                   "kibanaSavedObjectMeta": {"searchSourceJSON": json.dumps(
                                       {"query": {"query": "", "language": "kuery"}, "filter": []})}}})
    return out


def to_ndjson(objects: Sequence[Dict[str, Any]]) -> bytes:
    """One object per line, as the export API writes and the import API reads."""
    return b"".join(json.dumps(o, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"
                    for o in objects)


# --- import ------------------------------------------------------------------------------------

class DashboardsError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def check_url(url: str) -> str:
    """``https://host[:port][/base]`` of the dashboards; plain http only to the loopback (the
    password travels in every request); no credentials in the URL (they would be in argv)."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise DashboardsError(f"{url!r} is not a URL: {e}", EXIT_USAGE) from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise DashboardsError(f"dashboards URL {url!r} must look like https://dashboard:443", EXIT_USAGE)
    if parts.username or parts.password:
        raise DashboardsError("the dashboards URL must not carry a user or password; put them in the "
                              f"credentials file ({CONFIG_PATH})", EXIT_USAGE)
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise DashboardsError(f"refusing to send the password in clear to {parts.hostname} (http://): "
                              f"use https://{parts.netloc}", EXIT_USAGE)
    if parts.query or parts.fragment:
        raise DashboardsError("the dashboards URL must not have a query", EXIT_USAGE)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def load_credentials(path: Optional[str]) -> Tuple[Optional[str], Optional[str], Optional[str]]:
    """(user, password, ca_bundle) from a root-only JSON file; (None, None, None) when the default
    file does not exist (a dashboard without security); a named file must exist."""
    p = path or os.environ.get("MIMIZUKU_DASHBOARDS_CONFIG") or CONFIG_PATH
    if not path and not os.path.exists(p):
        return None, None, None
    conf = read_private_json(p, what="dashboards credentials file", limit=65536, error=_ConfigError)
    user, password, ca = conf.get("username"), conf.get("password"), conf.get("ca_bundle")
    for k, v in (("username", user), ("password", password), ("ca_bundle", ca)):
        if v is not None and not isinstance(v, str):
            raise _ConfigError(f"dashboards credentials file {p}: {k} must be a string")
    if (user is None) != (password is None):
        raise _ConfigError(f"dashboards credentials file {p}: give both username and password, or neither")
    return user, password, ca


class _ConfigError(Exception):
    pass


def multipart(body: bytes, filename: str = "mimizuku-dashboards.ndjson") -> Tuple[bytes, str]:
    """A multipart/form-data body with one part, field ``file`` (what the import API reads)."""
    boundary = "mimizuku-" + uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
            "Content-Type: application/ndjson\r\n\r\n").encode("ascii")
    return head + body + f"\r\n--{boundary}--\r\n".encode("ascii"), f"multipart/form-data; boundary={boundary}"


def import_objects(url: str, ndjson: bytes, *, user: Optional[str] = None, password: Optional[str] = None,
                   ca_bundle: Optional[str] = None, verify: bool = True, timeout: float = 30.0,
                   tenant: Optional[str] = None) -> Dict[str, Any]:
    """POST the objects to ``<url>/api/saved_objects/_import?overwrite=true``; the dashboards'
    answer (``success``, ``successCount``), or :class:`DashboardsError` (an answer with
    ``success: false`` is an error: it names the objects refused)."""
    base = check_url(url)
    body, ctype = multipart(ndjson)
    req = urlrequest.Request(base + "/api/saved_objects/_import?overwrite=true", data=body, method="POST")
    req.add_header("Content-Type", ctype)
    req.add_header("osd-xsrf", "true")
    if tenant:
        req.add_header("securitytenant", tenant)  # the security plugin's tenant (global / private)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
        req.add_header("Authorization", "Basic " + token)
    ctx = None
    if base.startswith("https://"):
        ctx = ssl.create_default_context(cafile=ca_bundle)
        if not verify:   # --insecure: a test bench (warned about by the command)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
    # no proxies from the environment: the password goes to the URL given, nowhere else
    opener = urlrequest.build_opener(urlrequest.ProxyHandler({}), urlrequest.HTTPSHandler(context=ctx))
    try:
        with opener.open(req, timeout=timeout) as resp:
            raw = resp.read(MAX_ANSWER)
    except urlerror.HTTPError as e:
        detail = e.read(4096).decode("utf-8", "replace").strip()
        if e.code in (401, 403):
            raise DashboardsError(f"the dashboards refused user {user or '(none)'}: HTTP {e.code}", EXIT_AUTH) from None
        raise DashboardsError(f"the dashboards answered HTTP {e.code}: {detail[:300]}", EXIT_REFUSED) from None
    except urlerror.URLError as e:
        reason = e.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise DashboardsError(f"TLS verification of {base} failed ({reason.verify_message}); give the CA "
                                  "with --ca-bundle or ca_bundle in the credentials file", EXIT_TLS) from None
        raise DashboardsError(f"cannot reach the dashboards at {base}: {reason}", EXIT_UNREACHABLE) from None
    except OSError as e:
        raise DashboardsError(f"cannot reach the dashboards at {base}: {e}", EXIT_UNREACHABLE) from None
    try:
        answer = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DashboardsError(f"the dashboards at {base} answered something that is not JSON", EXIT_REFUSED) from None
    if not isinstance(answer, dict) or answer.get("success") is not True:
        errors = answer.get("errors") if isinstance(answer, dict) else None
        names = ", ".join(f"{e.get('type')}/{e.get('id')}: {(e.get('error') or {}).get('type')}"
                          for e in (errors or [])[:10] if isinstance(e, dict))
        raise DashboardsError(f"the dashboards refused the import: {names or answer}", EXIT_REFUSED)
    return answer


# --- command line --------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku dashboards export|import``."""
    p = subparsers.add_parser(
        "dashboards", help="write or import the dashboards (saved objects) for the Wazuh dashboard",
        description="Saved objects (ndjson) for the Wazuh dashboard: anomalies over time by severity, by agent, "
                    "by detector, by MITRE tactic, top reasons and the nightly job's runs, for wazuh-alerts-* "
                    "(Wazuh 4.x) and the mimizuku-anomalies index.",
        epilog="Exit codes: 0 done, 2 usage, 3 cannot write the file, 8 import refused, 9 authentication, "
               "10 dashboards unreachable, 11 TLS verification, 12 credentials file unusable.")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    e = sub.add_parser("export", help="write the saved objects as ndjson")
    e.add_argument("--output", "-o", default="-", help="file to write (default: standard output)")
    e.add_argument("--layout", choices=("all", *LAYOUTS), default="all",
                   help="alerts: wazuh-alerts-* (4.x); anomalies: the mimizuku-anomalies index (default all)")
    i = sub.add_parser("import", help="load the saved objects through the dashboards' import API")
    i.add_argument("url", help="the dashboards' base URL, e.g. https://dashboard:443")
    i.add_argument("--layout", choices=("all", *LAYOUTS), default="all")
    i.add_argument("--config", metavar="PATH",
                   help=f"JSON credentials file, mode 600: username, password, ca_bundle (default {CONFIG_PATH})")
    i.add_argument("--ca-bundle", metavar="PATH", help="CA certificate(s) of the dashboards' certificate")
    i.add_argument("--insecure", action="store_true", help="do not verify the TLS certificate (test benches only)")
    i.add_argument("--tenant", help="security plugin tenant to import into (e.g. global)")
    i.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    p.set_defaults(func=run)
    return p


def run(a: argparse.Namespace) -> int:
    layouts = tuple(LAYOUTS) if a.layout == "all" else (a.layout,)
    data = to_ndjson(saved_objects(layouts))
    try:
        if a.action == "export":
            if a.output == "-":
                sys.stdout.buffer.write(data)
                sys.stdout.flush()
            else:
                try:
                    with open(a.output, "wb") as f:
                        f.write(data)
                except OSError as e:
                    raise DashboardsError(f"cannot write {a.output}: {e.strerror or e}", EXIT_OUTPUT) from None
            return EXIT_OK
        try:
            user, password, ca = load_credentials(a.config)
        except _ConfigError as e:
            raise DashboardsError(str(e), EXIT_CONFIG) from None
        if a.insecure:
            log.warning("not verifying the dashboards' TLS certificate (--insecure)")
        answer = import_objects(a.url, data, user=user, password=password, ca_bundle=a.ca_bundle or ca,
                                verify=not a.insecure, timeout=a.timeout, tenant=a.tenant)
        print(f"mimizuku dashboards: imported {answer.get('successCount')} saved objects into {check_url(a.url)}")
        return EXIT_OK
    except DashboardsError as e:
        print(f"mimizuku dashboards: error: {e}", file=sys.stderr)
        return e.code
