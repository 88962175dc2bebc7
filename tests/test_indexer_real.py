"""The indexer source, day slices and retraining against a REAL OpenSearch 2.19 node: what the
fake-or-real tests of tests/test_indexer.py and tests/test_indexer_follow.py do not cover.

The node comes from tests/opensearch_node.py (``MIMIZUKU_TEST_OPENSEARCH_URL``, set by .ci/run,
or one started from .ci/opensearch.sh); without one these tests skip, saying why. The alerts are
indexed as Wazuh's filebeat module indexes them: into daily ``wazuh-alerts-4.x-YYYY.MM.DD``
indices with the mapping of the Wazuh 4.x alerts template (keywords, ``timestamp`` a date),
under a prefix of the test's own. The node runs without the security plugin, so the source talks
plain HTTP without credentials.

The fake of fake_indexer.py keeps what a real node will not do on demand: PIT expiry by time,
429, 5xx, timeouts, partial answers, 401 (tests/test_indexer.py, tests/test_indexer_follow.py).
Here the engine decides mapping, sort, point-in-time and query semantics.
"""
from __future__ import annotations

import json
import os

import pytest
import test_indexer
from opensearch_node import fresh_namespace
from test_indexer import REAL_FAST, _sort_key
from test_indexer_follow import T0, alert

from mimizuku.core.fields import own_event_query
from mimizuku.sources.errors import ReadStats
from mimizuku.sources.indexer import IndexerError, IndexerSource
from mimizuku.sources.reader import iter_alerts

# test_indexer's fleet and its copy on the real node (module-scoped fixtures of this module too)
fleet = test_indexer.fleet
real_fleet = test_indexer.real_fleet


def _src(ns, **kw):
    return IndexerSource(ns.alerts_url, **dict(REAL_FAST, **kw))


def _open_pits(node) -> int:
    return len(node.request("GET", "/_search/point_in_time/_all").get("pits", []))


# -- the node ---------------------------------------------------------------------------------------

def test_node_is_opensearch_2_19_with_point_in_time(opensearch_node, real_fleet):
    assert opensearch_node.version.startswith("2.19.")
    # PIT and search_after are core in 2.19: no plugin serves them here
    pit = opensearch_node.request("POST", f"/{real_fleet.alerts_pattern}/_search/point_in_time",
                                  params={"keep_alive": "1m"})["pit_id"]
    opensearch_node.request("DELETE", "/_search/point_in_time", {"pit_id": [pit]})
    assert len(real_fleet.indices()) == 2  # one index per UTC day, as filebeat writes them


# -- paging -----------------------------------------------------------------------------------------

def test_paging_without_pit_reads_the_same(real_fleet, fleet):
    al, _ = fleet
    src = _src(real_fleet, page_size=500, pit=False)
    assert [a["id"] for a in src] == [a["id"] for a in sorted(al, key=_sort_key)]
    assert src.stats["pits_opened"] == 0


def test_pit_lost_mid_read_is_reopened_and_the_read_resumes(real_fleet, fleet, opensearch_node):
    """A real node's answer for a point in time that is gone (all PITs deleted mid-read, as a
    restarted node loses them): the source recognises it, opens a new one and resumes after its
    cursor -- nothing lost, nothing repeated."""
    al, _ = fleet
    src = _src(real_fleet, page_size=100)
    it = iter(src)
    got = [next(it) for _ in range(250)]
    opensearch_node.request("DELETE", "/_search/point_in_time/_all")
    got += list(it)
    assert [a["id"] for a in got] == [a["id"] for a in sorted(al, key=_sort_key)]
    assert src.stats["pit_renewals"] == 1 and _open_pits(opensearch_node) == 0


# -- window, query, own events ----------------------------------------------------------------------

def test_the_own_event_query_matches_exactly_the_own_events(real_fleet, fleet, opensearch_node):
    """``core.fields.own_event_query`` run by the engine on the Wazuh mapping (``terms`` on the
    ``location`` keyword, ``term`` on the ``rule.groups`` keyword array)."""
    _, own = fleet
    q = {"query": own_event_query(), "size": 1000, "_source": ["id"]}
    hits = opensearch_node.request("POST", f"/{real_fleet.alerts_pattern}/_search", q)["hits"]["hits"]
    assert sorted(h["_source"]["id"] for h in hits) == sorted(o["id"] for o in own)


def test_forged_marks_at_other_locations_are_not_excluded(opensearch):
    """Any log line can carry the marks (rule.groups, data.integration); only at our locations
    is an alert our own. The engine applies the ``terms`` on the ``location`` keyword."""
    base = alert(0, T0)
    forged = [dict(base, id="f.1", n=1, rule={"level": 3, "id": "5501", "groups": ["mimizuku"]}),
              dict(base, id="f.2", n=2, data={"integration": "mimizuku"}),
              dict(base, id="f.3", n=3, location="API-Webhook")]  # our location without a mark
    own = [dict(base, id="o.1", n=4, location="command_mimizuku", data={"integration": "mimizuku"}),
           dict(base, id="o.2", n=5, location="API-Webhook", rule={"level": 3, "id": "1", "groups": ["mimizuku"]})]
    opensearch.index_alerts(forged + own)
    assert sorted(a["id"] for a in _src(opensearch)) == ["f.1", "f.2", "f.3"]


# -- missing indices ----------------------------------------------------------------------------------

def test_missing_concrete_index_is_a_clear_error(opensearch):
    with pytest.raises(IndexerError, match="wazuh-alerts-4.x-1999.01.01 does not exist"):
        list(IndexerSource(f"{opensearch.url}/{opensearch.prefix}wazuh-alerts-4.x-1999.01.01", **REAL_FAST))


@pytest.mark.parametrize("pit", [None, True])
def test_a_pattern_matching_no_index_reads_nothing_and_keeps_the_pit(opensearch, pit):
    """OpenSearch refuses a PIT on a pattern that matches no index (400 "invalid id: [null]"),
    which is not a cluster without the PIT API: the read is empty, and once the index exists the
    same source reads it with a point in time."""
    src = _src(opensearch, pit=pit)
    assert list(src) == []
    opensearch.index_alerts([alert(i, T0 + i) for i in range(3)])
    assert [a["n"] for a in src] == [0, 1, 2]
    assert src.stats["pits_opened"] == src.stats["pits_closed"] == 1


# -- day slices and retraining -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def boundary_index(opensearch_node):
    from test_distributed_fit_indexer import BOUNDARY_DOCS

    with fresh_namespace(opensearch_node) as ns:
        ns.install_alerts_template()
        ns.index_alerts(BOUNDARY_DOCS, index="wazuh-alerts-4.x-boundary")
        yield ns


@pytest.fixture
def anonymous_config(tmp_path, monkeypatch):
    """A root-only config file without credentials (the node has no users) and a small page."""
    cfg = tmp_path / "indexer.json"
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"page_size": 150, "backoff": 0.001, "max_backoff": 0.01, "retries": 2}, f)
    monkeypatch.setenv("MIMIZUKU_INDEXER_CONFIG", str(cfg))
    for k in ("MIMIZUKU_INDEXER_URL", "MIMIZUKU_INDEXER_QUERY", "MIMIZUKU_INDEXER_CA",
              "MIMIZUKU_INDEXER_USER", "MIMIZUKU_INDEXER_PASSWORD"):
        monkeypatch.delenv(k, raising=False)
    return cfg


@pytest.mark.parametrize("window", [
    {}, {"since": "2026-03-02"}, {"until": "2026-03-02"}, {"since": "2026-03-02", "until": "2026-03-03"},
    {"since": "2026-03-01T23:59:59.999+00:00", "until": "2026-03-02T00:00:00.001+00:00"},
])
def test_day_slices_together_read_exactly_the_one_read(boundary_index, anonymous_config, window):
    from mimizuku.nightly.partitions import add_stats, partitions_of

    src = IndexerSource(boundary_index.alerts_url, page_size=1)
    whole = ReadStats()
    one = [a["id"] for a in iter_alerts(src, stats=whole, **window)]
    total = ReadStats()
    got = []
    parts = partitions_of(src, stats=total, **window)
    for p in parts:
        st = ReadStats()
        got += [a["id"] for a in p.for_worker().alerts(st)]  # each slice as a worker reads it
        add_stats(total, st)
    assert got == one and len(set(got)) == len(got) > 0
    assert total.alerts == whole.alerts and total.own_events == whole.own_events
    if not window:
        assert one[-1] == "1.9999" and parts[-1].label == "undated"  # the hit without a time, last
        assert "1.0006" not in one  # own event
        assert one.index("1.0004") < one.index("1.0003")  # 22:30 UTC sorts before midnight UTC


@pytest.fixture(scope="module")
def retrain_index(opensearch_node):
    """test_distributed_fit's fleet and the plugin's own events, as test_distributed_fit_indexer
    gives them to the fake."""
    from test_distributed_fit_indexer import CLEAN, _own_events

    with fresh_namespace(opensearch_node) as ns:
        ns.install_alerts_template(shards=3)
        ns.index_alerts(CLEAN + _own_events())
        yield ns, CLEAN


def test_retrain_from_the_indexer_equals_the_archive_model(retrain_index, anonymous_config, tmp_path, capfd):
    """``mimizuku retrain --input URL`` on the real node gives the model of the same alerts
    laid out as an archive tree."""
    import retrain_trees as T
    from test_distributed_fit import ALERTS, SCORING, _fitted
    from test_distributed_fit_indexer import _retrain

    from mimizuku.engine.estimator import Mimizuku

    ns, clean = retrain_index
    tree, idx = tmp_path / "tree", tmp_path / "idx"
    T.write_tree(tree, ALERTS)
    idx.mkdir()
    code_t, s_t = _retrain(capfd, tree, str(tree))
    code_i, s_i = _retrain(capfd, idx, ns.alerts_url)
    assert code_t == code_i == 0, (s_t, s_i)
    assert s_i["counts"]["alerts_read"] == len(clean) and s_i["counts"]["own_events"] == 0
    for k in ("alerts_read", "days_with_alerts", "trained_on", "trained"):
        assert s_t["counts"][k] == s_i["counts"][k], k
    a = Mimizuku.load_model(tree / "mimizuku" / "models" / "current")
    b = Mimizuku.load_model(idx / "mimizuku" / "models" / "current")
    for name in a.detectors_:
        assert _fitted(a.detectors_[name]) == _fitted(b.detectors_[name]), name
    ra, rb = a.score_records(SCORING), b.score_records(SCORING)
    assert [(r["id"], r["score"], r["anomaly"]) for r in ra] == [(r["id"], r["score"], r["anomaly"]) for r in rb]


def test_retrain_on_dask_from_the_indexer_equals_local(retrain_index, anonymous_config, tmp_path, capfd):
    distributed = pytest.importorskip("distributed")
    from test_distributed_fit import DAYS, assert_same_training
    from test_distributed_fit_indexer import _retrain

    ns, clean = retrain_index
    local, dask = tmp_path / "local", tmp_path / "dask"
    local.mkdir()
    dask.mkdir()
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster:
        code_l, s_l = _retrain(capfd, local, ns.alerts_url)
        code_d, s_d = _retrain(capfd, dask, ns.alerts_url, "--dask", cluster.scheduler_address)
    assert code_l == code_d == 0, (s_l, s_d)
    assert s_d["counts"]["alerts_read"] == len(clean) and s_d["counts"]["dask"]["partitions"] >= len(DAYS)
    assert_same_training(local, dask, s_l, s_d)

