"""A REAL OpenSearch 2.19 node for the tests (the Wazuh indexer 4.12-4.14 is OpenSearch 2.19).

Why: the fake of ``fake_indexer.py`` answers what we believed OpenSearch answers; the real engine
decides mapping, sort, point-in-time and query details for itself. The fake stays for the faults
a real node will not produce on demand (PIT expiry mid-read, 429, 5xx, partial answers).

Where the node comes from, first that applies:

1. ``MIMIZUKU_TEST_OPENSEARCH_URL`` (``.ci/run`` sets it from ``.ci/opensearch.sh``);
2. else, when ``java`` and ``mvn`` are on PATH (a developer machine), this module starts one with
   ``.ci/opensearch.sh`` in a directory of the session's own and stops it at the end of the
   session (the first start downloads OpenSearch's jars from Maven Central into ``~/.m2``);
3. else the tests that need it skip, saying why. ``MIMIZUKU_TEST_NO_OPENSEARCH=1`` skips them
   on purpose.

Fixtures (imported by ``conftest.py``): ``opensearch_node`` (session: the node, an
:class:`OpenSearchNode`) and ``opensearch`` (per test: an :class:`IndexNamespace`, a unique
index prefix whose indices and templates are deleted after the test)::

    def test_x(opensearch):
        opensearch.install_alerts_template()             # the Wazuh 4.x alerts mapping
        opensearch.index_alerts(alerts)                  # into <prefix>wazuh-alerts-4.x-YYYY.MM.DD
        src = IndexerSource(opensearch.alerts_url)       # http://127.0.0.1:PORT/<prefix>wazuh-alerts-4.x-*

The node has no security plugin: plain HTTP on 127.0.0.1, no users.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "opensearch.sh"
URL_ENV = "MIMIZUKU_TEST_OPENSEARCH_URL"
OPT_OUT_ENV = "MIMIZUKU_TEST_NO_OPENSEARCH"
ALERTS_PATTERN = "wazuh-alerts-4.x-*"

#: The mapping of the Wazuh 4.x alerts template (``wazuh-template.json`` of wazuh/wazuh, legacy
#: ``_template`` on ``wazuh-alerts-4.x-*``) for the fields Mimizuku reads, queries or sorts on:
#: strings are keywords (its ``string_as_keyword`` dynamic template, no date detection),
#: ``timestamp`` is a date in ``date_optional_time||epoch_millis``, ``rule.level`` a long,
#: ``full_log`` text. Written out here (not copied) so the tests index what the indexer holds.
WAZUH_ALERTS_MAPPING: Dict[str, Any] = {
    "dynamic_templates": [{"string_as_keyword": {"match_mapping_type": "string",
                                                 "mapping": {"type": "keyword"}}}],
    "date_detection": False,
    "properties": {
        "@timestamp": {"type": "date"},
        "timestamp": {"type": "date", "format": "date_optional_time||epoch_millis"},
        "agent": {"properties": {"id": {"type": "keyword"}, "name": {"type": "keyword"},
                                 "ip": {"type": "keyword"}}},
        "manager": {"properties": {"name": {"type": "keyword"}}},
        "cluster": {"properties": {"name": {"type": "keyword"}, "node": {"type": "keyword"}}},
        "id": {"type": "keyword"},
        "location": {"type": "keyword"},
        "full_log": {"type": "text"},
        "previous_log": {"type": "text"},
        "message": {"type": "text"},
        "rule": {"properties": {
            "id": {"type": "keyword"}, "level": {"type": "long"}, "description": {"type": "keyword"},
            "groups": {"type": "keyword"}, "firedtimes": {"type": "long"}, "mail": {"type": "boolean"},
            "mitre": {"properties": {"id": {"type": "keyword"}, "tactic": {"type": "keyword"},
                                     "technique": {"type": "keyword"}}}}},
        "decoder": {"properties": {"name": {"type": "keyword"}, "parent": {"type": "keyword"}}},
        "data": {"properties": {"integration": {"type": "keyword"}, "srcip": {"type": "keyword"},
                                "dstuser": {"type": "keyword"}, "srcuser": {"type": "keyword"}}},
        "syscheck": {"properties": {"path": {"type": "keyword"}, "event": {"type": "keyword"},
                                    "mtime_after": {"type": "date", "format": "date_optional_time"},
                                    "mtime_before": {"type": "date", "format": "date_optional_time"},
                                    "size_after": {"type": "long"}, "size_before": {"type": "long"}}},
    },
}
#: the template's index settings that change what a search sees (3 shards in the template; the
#: tests default to 1, a test about paging across shards asks for more)
WAZUH_ALERTS_SETTINGS: Dict[str, Any] = {
    "index.refresh_interval": "5s",
    "index.number_of_replicas": 0,
    "index.mapping.total_fields.limit": 10000,
}


class OpenSearchError(AssertionError):
    """The test node answered an unexpected status (the test's setup failed, not the code)."""


@dataclass
class OpenSearchNode:
    """A running node: its URL and a small HTTP helper (``requests``, no proxies from the env)."""

    url: str
    version: str = ""
    started_here: bool = False

    def __post_init__(self) -> None:
        import requests

        self._http = requests.Session()
        self._http.trust_env = False

    def request(self, method: str, path: str, body: Any = None, *, params: Optional[Dict[str, Any]] = None,
                ok: Sequence[int] = (200, 201), ndjson: Optional[str] = None) -> Any:
        """The parsed answer of ``method path``; raises :class:`OpenSearchError` on another status."""
        headers = {"Content-Type": "application/x-ndjson" if ndjson is not None else "application/json"}
        data = ndjson.encode() if ndjson is not None else (None if body is None else json.dumps(body).encode())
        r = self._http.request(method, self.url + path, data=data, params=params, headers=headers, timeout=60)
        try:
            payload = r.json()
        except ValueError:
            payload = r.text
        if r.status_code not in ok:
            raise OpenSearchError(f"{method} {path}: {r.status_code} {str(payload)[:500]}")
        return payload

    def close(self) -> None:
        self._http.close()


def index_for_day(prefix: str, timestamp: str) -> str:
    """The daily index Wazuh's filebeat module writes an alert to: ``wazuh-alerts-4.x-YYYY.MM.DD``
    of the alert's time in UTC."""
    from mimizuku.sources.timestamps import parse_timestamp

    day = datetime.fromtimestamp(parse_timestamp(timestamp), timezone.utc)
    return f"{prefix}wazuh-alerts-4.x-{day:%Y.%m.%d}"


class IndexNamespace:
    """One test's share of the node: every index and template it makes starts with ``prefix``."""

    def __init__(self, node: OpenSearchNode, prefix: str) -> None:
        self.node = node
        self.prefix = prefix

    @property
    def url(self) -> str:
        return self.node.url

    @property
    def alerts_pattern(self) -> str:
        return self.prefix + ALERTS_PATTERN

    @property
    def alerts_url(self) -> str:
        """The indexer URL Mimizuku takes: ``http://127.0.0.1:PORT/<prefix>wazuh-alerts-4.x-*``."""
        return f"{self.node.url}/{self.alerts_pattern}"

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        return self.node.request(method, path, body, **kw)

    def install_alerts_template(self, shards: int = 1) -> None:
        """The Wazuh 4.x alerts template (legacy ``_template``, as Wazuh installs it) on this
        namespace's ``wazuh-alerts-4.x-*``."""
        settings = dict(WAZUH_ALERTS_SETTINGS, **{"index.number_of_shards": shards})
        self.request("PUT", f"/_template/{self.prefix}wazuh",
                     {"order": 0, "index_patterns": [self.alerts_pattern], "settings": settings,
                      "mappings": WAZUH_ALERTS_MAPPING})

    def create_index(self, name: str, *, mappings: Optional[Dict[str, Any]] = None, shards: int = 1,
                     settings: Optional[Dict[str, Any]] = None) -> str:
        """An index ``<prefix><name>`` (the name is given without the prefix); its full name.
        An index matching the namespace's alerts template gets the template's mapping too."""
        full = self.prefix + name
        body: Dict[str, Any] = {"settings": dict({"index.number_of_shards": shards, "index.number_of_replicas": 0},
                                                 **(settings or {}))}
        if mappings is not None:
            body["mappings"] = mappings
        self.request("PUT", "/" + full, body)
        return full

    def bulk(self, docs: Iterable[Dict[str, Any]], *, index: str, refresh: bool = True,
             ids: Optional[Sequence[str]] = None) -> List[str]:
        """Index documents into ``index`` (a full name); their ``_id``s. Any item error fails."""
        return self._bulk([(index, d, None if ids is None else ids[i]) for i, d in enumerate(docs)], refresh)

    def _bulk(self, items: Sequence[Any], refresh: bool) -> List[str]:
        """``(index, document, _id or None)`` items through ``_bulk``, refreshed once at the end."""
        out: List[str] = []
        chunk = 5000
        for start in range(0, len(items), chunk):
            lines = []
            for index, doc, _id in items[start:start + chunk]:
                lines.append(json.dumps({"index": {"_index": index, **({"_id": _id} if _id is not None else {})}}))
                lines.append(json.dumps(doc))
            last = start + chunk >= len(items)
            resp = self.request("POST", "/_bulk", ndjson="\n".join(lines) + "\n",
                                params={"refresh": "true"} if refresh and last else None)
            if resp.get("errors"):
                bad = [it for it in resp["items"] if it["index"].get("error")][:3]
                raise OpenSearchError(f"bulk indexing failed: {json.dumps(bad)[:800]}")
            out.extend(it["index"]["_id"] for it in resp["items"])
        return out

    def index_alerts(self, alerts: Iterable[Dict[str, Any]], *, refresh: bool = True,
                     index: Optional[str] = None) -> List[str]:
        """Index Wazuh alerts as the filebeat module does: each into the daily index of its
        ``timestamp`` (UTC), or all into ``index`` (a name without the prefix). Installs the
        alerts template first if this namespace has none. The ``_id``s, in the given order."""
        if not self.request("GET", f"/_template/{self.prefix}wazuh", ok=(200, 404)):
            self.install_alerts_template()
        return self._bulk([(self.prefix + index if index else
                            index_for_day(self.prefix, a.get("timestamp") or a["@timestamp"]), a, None)
                           for a in alerts], refresh)

    def refresh(self) -> None:
        self.request("POST", f"/{self.prefix}*/_refresh")

    def count(self, pattern: Optional[str] = None) -> int:
        return int(self.request("GET", f"/{pattern or self.alerts_pattern}/_count")["count"])

    def indices(self) -> List[str]:
        rows = self.request("GET", f"/_cat/indices/{self.prefix}*", params={"format": "json", "h": "index"})
        return sorted(r["index"] for r in rows)

    def delete(self) -> None:
        """Every index and legacy/composable template of this namespace."""
        self.request("DELETE", f"/{self.prefix}*", params={"expand_wildcards": "all"}, ok=(200, 404))
        for kind in ("_template", "_index_template"):
            try:
                found = self.request("GET", f"/{kind}/{self.prefix}*", ok=(200, 404))
            except OpenSearchError:
                continue
            names = (found.keys() if kind == "_template" else
                     [t["name"] for t in found.get("index_templates", [])]) if isinstance(found, dict) else []
            for name in names:
                self.request("DELETE", f"/{kind}/{name}", ok=(200, 404))


@contextmanager
def fresh_namespace(node: OpenSearchNode) -> Iterator[IndexNamespace]:
    """A new index namespace on ``node``, deleted afterwards (for module-scoped fixtures)."""
    ns = IndexNamespace(node, f"mzt-{uuid.uuid4().hex[:10]}-")
    try:
        yield ns
    finally:
        ns.delete()


def _start_node(base: Path) -> OpenSearchNode:
    """A node from ``.ci/opensearch.sh`` in ``base`` (skips the test when it cannot start)."""
    env = dict(os.environ, MIMIZUKU_OPENSEARCH_DIR=str(base))
    started = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True,
                             timeout=1200)
    line = next((ln for ln in started.stdout.splitlines() if ln.startswith(f"export {URL_ENV}=")), None)
    if started.returncode != 0 or line is None:
        pytest.skip(f"the OpenSearch test node did not start (.ci/opensearch.sh exit {started.returncode}): "
                    f"{started.stderr.strip()[-600:]}")
    url = line.split("=", 1)[1].strip().strip("'\"")
    return OpenSearchNode(url, started_here=True)


def _stop_node(base: Path) -> None:
    env = dict(os.environ, MIMIZUKU_OPENSEARCH_DIR=str(base))
    subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="session")
def opensearch_node(tmp_path_factory):
    """The session's real OpenSearch node (see the module docstring for where it comes from)."""
    if os.environ.get(OPT_OUT_ENV) == "1":
        pytest.skip(f"{OPT_OUT_ENV}=1: the tests against a real OpenSearch node are switched off")
    base: Optional[Path] = None
    url = os.environ.get(URL_ENV)
    if url:
        node = OpenSearchNode(url.rstrip("/"))
    else:
        missing = [t for t in ("java", "mvn") if shutil.which(t) is None]
        if missing:
            pytest.skip(f"no OpenSearch node: {URL_ENV} is not set (.ci/run sets it from .ci/opensearch.sh) "
                        f"and {' and '.join(missing)} not installed, so none can be built here "
                        f"(needs Java 17 and Maven with access to Maven Central)")
        base = tmp_path_factory.mktemp("opensearch")
        node = _start_node(base)
    try:
        info = node.request("GET", "/")
    except Exception as e:  # noqa: BLE001 - any failure to reach it is a reason to skip, said
        if base is not None:
            _stop_node(base)
        pytest.skip(f"the OpenSearch node at {node.url} does not answer: {e}")
    node.version = info["version"]["number"]
    try:
        yield node
    finally:
        node.close()
        if base is not None:
            _stop_node(base)


@pytest.fixture()
def opensearch(opensearch_node):
    """A clean index namespace on the real node for one test; removed afterwards."""
    with fresh_namespace(opensearch_node) as ns:
        yield ns
