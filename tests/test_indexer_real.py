"""The indexer source and follow mode against a REAL OpenSearch 2.19 node (tests/opensearch_node.py).

The fake of fake_indexer.py keeps the faults a real node will not produce on demand (PIT expiry
mid-read, 429, 5xx, partial answers); here the engine itself decides mapping, sort, point in
time and query semantics.
"""
from __future__ import annotations

import json
from datetime import datetime

import pytest

from mimizuku.sources.indexer import IndexerSource
from mimizuku.sources.timestamps import parse_timestamp
from mimizuku.tools import synth


@pytest.fixture(scope="module")
def fleet():
    cfg = synth.FleetConfig(days=2, scale=0.15, seed=11, start=datetime(2026, 3, 2).date())
    return [{k: v for k, v in a.items() if k != "_label"} for a in synth.generate(cfg)]


def _sort_key(a):
    return (round(parse_timestamp(a["timestamp"]) * 1000), a["id"], a["manager"]["name"])


def test_node_is_opensearch_2_19(opensearch_node):
    assert opensearch_node.version.startswith("2.19.")


def test_paging_with_pit_returns_every_alert_once_in_sort_order(opensearch, fleet):
    opensearch.index_alerts(fleet)
    src = IndexerSource(opensearch.alerts_url, page_size=97)
    got = list(src)
    assert len(got) == len(fleet) > 97 * 5
    assert [a["id"] for a in got] == [a["id"] for a in sorted(fleet, key=_sort_key)]
    assert src.stats["pits_opened"] == src.stats["pits_closed"] == 1
    print(json.dumps(src.stats))
