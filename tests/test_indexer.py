"""The Wazuh indexer as an alert source, against the stateful fake OpenSearch of fake_indexer.py
and, for the tests that need no injected fault (``indexer`` fixture), a REAL OpenSearch 2.19 node
too (tests/opensearch_node.py; those cases skip, saying why, when no node can be had)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from datetime import datetime, timezone

import pytest
from fake_indexer import FakeIndexer, load_export
from opensearch_node import fresh_namespace

from mimizuku.core.fields import own_event_query
from mimizuku.sources.errors import ReadStats
from mimizuku.sources.indexer import (
    IndexerAuthError,
    IndexerConfig,
    IndexerConfigError,
    IndexerError,
    IndexerSource,
    IndexerUnavailable,
)
from mimizuku.sources.reader import iter_alerts, read_alerts
from mimizuku.sources.timestamps import parse_timestamp
from mimizuku.tools import synth

EXPORT = "/work/shared/data/opensearch-export/sample-alerts-predict-2024-04-01.json"
USER, PASSWORD = "mimizuku", "s3cret-Pa55"
REAL_FAST = dict(backoff=0.001, max_backoff=0.01, retries=4)
FAST = dict(REAL_FAST, username=USER, password=PASSWORD)


@pytest.fixture(scope="module")
def fleet():
    cfg = synth.FleetConfig(days=2, scale=0.15, seed=11, start=datetime(2026, 3, 2).date())
    al = [{k: v for k, v in a.items() if k != "_label"} for a in synth.generate(cfg)]
    # the plugin's own events, as they reach the indexer: both markers
    own = []
    for i, a in enumerate(al[100:130]):
        o = json.loads(json.dumps(a))
        o["id"] = f"own.{i}"
        o["location"] = "mimizuku"
        if i % 2:
            o["rule"]["groups"] = ["mimizuku", "anomaly"]
        else:
            o.setdefault("data", {})["integration"] = "mimizuku"
        own.append(o)
    return al, own


def _sort_key(a):
    return (round(parse_timestamp(a["timestamp"]) * 1000), a["id"], a["manager"]["name"])


@pytest.fixture()
def fake(fleet):
    al, own = fleet
    with FakeIndexer(al + own) as f:
        yield f


def _src(fake, **kw):
    opts = dict(FAST)
    opts.update(kw)
    return IndexerSource(fake.url + "/wazuh-alerts-4.x-*", **opts)


@pytest.fixture(scope="module")
def real_fleet(opensearch_node, fleet):
    """The fleet and the own events on the REAL node, in daily indices of 3 shards as the Wazuh
    template has them (pages merge across shards and indices); read-only."""
    al, own = fleet
    with fresh_namespace(opensearch_node) as ns:
        ns.install_alerts_template(shards=3)
        ns.index_alerts(al + own)
        yield ns


class Backend:
    """Where a test reads the fleet: the fake (``fake`` set; it also shows the requests) or the
    real node (``ns`` set: anonymous plain HTTP, the node has no security plugin)."""

    def __init__(self, fake=None, ns=None):
        self.fake, self.ns = fake, ns

    def src(self, **kw):
        if self.fake is not None:
            return _src(self.fake, **kw)
        return IndexerSource(self.ns.alerts_url, **dict(REAL_FAST, **kw))

    def open_pits(self) -> int:
        if self.fake is not None:
            return len(self.fake.pits)
        return len(self.ns.request("GET", "/_search/point_in_time/_all").get("pits", []))


@pytest.fixture(params=["fake", "real"])
def indexer(request):
    if request.param == "fake":
        return Backend(fake=request.getfixturevalue("fake"))
    return Backend(ns=request.getfixturevalue("real_fleet"))


def _write_jsonl(path, alerts):
    with open(path, "w", encoding="utf-8") as f:
        for a in alerts:
            f.write(json.dumps(a) + "\n")
    return str(path)


# -- paging ------------------------------------------------------------------------------------------

def test_paging_returns_every_alert_once_in_sort_order(indexer, fleet):
    al, own = fleet
    src = indexer.src(page_size=97)
    got = list(src)
    assert len(got) == len(al) > 97 * 20
    assert [a["id"] for a in got] == [a["id"] for a in sorted(al, key=_sort_key)]
    assert src.stats["pages"] >= len(al) // 97
    assert src.stats["pits_opened"] == src.stats["pits_closed"] == 1
    assert indexer.open_pits() == 0  # the PIT was deleted at the end
    fake = indexer.fake
    if fake is None:
        return
    searches = [b for m, p, b in fake.requests if p == "/_search"]
    assert all("pit" in b and b["size"] == 97 for b in searches)
    assert all(b["sort"][0] == {"timestamp": {"order": "asc"}} for b in searches)
    assert searches[1]["search_after"] and "search_after" not in searches[0]


def test_stopping_early_still_deletes_the_pit(indexer):
    src = indexer.src(page_size=50)
    it = iter(src)
    first = [next(it) for _ in range(120)]
    assert len(first) == 120 and indexer.open_pits() == 1
    it.close()
    assert indexer.open_pits() == 0


@pytest.mark.parametrize("where", ["fake", "real"])
def test_export_fixture_read_from_indexer_equals_the_export_file(where, request):
    """An export of a real Wazuh indexer, served by the fake or indexed again (its ids, the
    Wazuh alerts mapping) into the real node."""
    docs = load_export(EXPORT)
    with contextlib.ExitStack() as stack:
        if where == "fake":
            src = _src(stack.enter_context(FakeIndexer(docs)), page_size=40)
        else:
            ns = request.getfixturevalue("opensearch")
            ns.install_alerts_template()
            ns.bulk([d["_source"] for d in docs], index=ns.prefix + "wazuh-alerts-4.x-2024.04.01",
                    ids=[d["_id"] for d in docs])
            src = IndexerSource(ns.alerts_url, page_size=40, **REAL_FAST)
        st_idx, st_file = ReadStats(), ReadStats()
        a_idx = list(iter_alerts(src, stats=st_idx))
        a_file = list(iter_alerts(EXPORT, stats=st_file))
    assert len(a_idx) == len(a_file) == 326
    key = lambda a: a["id"]  # noqa: E731
    assert sorted(a_idx, key=key) == sorted(a_file, key=key)
    assert (st_idx.alerts, st_idx.own_events, st_idx.total_bad) == (st_file.alerts, st_file.own_events, 0)
    assert st_idx.files == 1


def test_iter_alerts_on_indexer_equals_the_same_alerts_json(indexer, fleet, tmp_path):
    al, own = fleet
    path = _write_jsonl(tmp_path / "alerts.json", sorted(al + own, key=_sort_key))
    st_i, st_f = ReadStats(), ReadStats()
    a_i = list(iter_alerts(indexer.src(page_size=500), stats=st_i))
    a_f = list(iter_alerts(path, stats=st_f))
    assert a_i == a_f
    assert st_i.alerts == st_f.alerts == len(al)
    assert st_f.own_events == len(own) and st_i.own_events == 0  # the server already excluded them


def test_url_string_source_with_credentials_from_the_environment(fake, fleet, monkeypatch):
    al, _ = fleet
    monkeypatch.setenv("MIMIZUKU_INDEXER_USER", USER)
    monkeypatch.setenv("MIMIZUKU_INDEXER_PASSWORD", PASSWORD)
    monkeypatch.delenv("MIMIZUKU_INDEXER_CONFIG", raising=False)
    got, st = read_alerts(fake.url + "/wazuh-alerts-4.x-*")
    assert st.alerts == len(al) == len(got)


# -- window, query, own events ---------------------------------------------------------------------

def test_window_and_query_filter_match_the_file_reader(indexer, fleet, tmp_path):
    al, own = fleet
    path = _write_jsonl(tmp_path / "alerts.json", sorted(al + own, key=_sort_key))
    since = datetime(2026, 3, 2, 9, 30, tzinfo=timezone.utc)
    until = datetime(2026, 3, 3, 4, 0, tzinfo=timezone.utc)
    agent = al[len(al) // 2]["agent"]["id"]
    src = indexer.src(query=json.dumps({"term": {"agent.id": agent}}))
    got = list(iter_alerts(src, since=since, until=until))
    want = [a for a in iter_alerts(path, since=since, until=until) if a["agent"]["id"] == agent]
    assert got == want and 0 < len(got) < len(al) // 4
    fake = indexer.fake
    if fake is None:
        return
    body = next(b for m, p, b in fake.requests if p == "/_search")
    filters = body["query"]["bool"]["filter"]
    assert {"term": {"agent.id": agent}} in filters
    rng = next(c["range"]["timestamp"] for c in filters if "range" in c)
    assert rng["gte"] == int(since.timestamp() * 1000) and rng["lt"] == int(until.timestamp() * 1000)


def test_day_window_uses_each_alerts_wall_clock_like_the_archives(indexer, fleet, tmp_path):
    al, own = fleet
    path = _write_jsonl(tmp_path / "alerts.json", sorted(al + own, key=_sort_key))
    got = list(iter_alerts(indexer.src(), since="2026-03-03", until="2026-03-03"))
    want = list(iter_alerts(path, since="2026-03-03", until="2026-03-03"))
    assert got == want and 0 < len(got) < len(al)


def test_own_events_are_excluded_by_the_query_and_again_by_the_reader(indexer, fleet):
    al, own = fleet
    body_q = indexer.src().build_query()
    assert own_event_query() in body_q["bool"]["must_not"]  # both marks, at our locations only
    raw = list(indexer.src(exclude_own=False))
    assert len(raw) == len(al) + len(own)  # the server no longer filters ...
    st = ReadStats()
    got = list(iter_alerts(indexer.src(exclude_own=False), stats=st))
    assert st.own_events == len(own) and len(got) == len(al)  # ... the reader still does
    assert not any(a["id"].startswith("own.") for a in got)


# -- failures and recovery -----------------------------------------------------------------------------

def test_pit_expiry_mid_read_resumes_without_loss_or_repeat(fake, fleet):
    al, _ = fleet
    fake.expire_pit_after(5)
    src = _src(fake, page_size=100)
    it = iter(src)
    got = [next(it) for _ in range(250)]
    # documents indexed meanwhile: one behind the cursor (not in this read), one ahead (read)
    behind = dict(al[0], id="late.behind")
    ahead = dict(al[-1], id="late.ahead", timestamp=al[-1]["timestamp"])
    fake.add([behind, ahead])
    got += list(it)
    ids = [a["id"] for a in got]
    assert len(ids) == len(set(ids))
    expected = [a["id"] for a in sorted(al + [ahead], key=_sort_key)]
    assert ids == expected
    assert src.stats["pit_renewals"] == 1
    assert fake.pits == {}


def test_retry_after_of_429_is_honoured_and_capped(fake, fleet, monkeypatch):
    import urllib3.util.retry as r

    slept = []
    monkeypatch.setattr(r.time, "sleep", lambda s: slept.append(s))
    al, _ = fleet
    fake.fail_next(429, 1, retry_after="7")
    fake.fail_next(429, 1, retry_after="99999")
    got = list(_src(fake, page_size=2000, max_retry_after=30))
    assert len(got) == len(al)
    assert 7 in slept and 30 in slept and max(slept) == 30


def test_5xx_and_timeouts_are_retried(fake, fleet):
    al, _ = fleet
    fake.fail_next(503, 2)
    fake.fail_next(502, 1)
    fake.delay_next(1.5, 1)
    src = _src(fake, page_size=3000, read_timeout=0.5)
    got = list(src)
    assert [a["id"] for a in got] == [a["id"] for a in sorted(al, key=_sort_key)]


def test_partial_answers_are_retried_not_used(fake, fleet):
    al, _ = fleet
    src = _src(fake, page_size=500)
    it = iter(src)
    first = [next(it) for _ in range(10)]
    fake.partial_next(1)
    got = first + list(it)
    assert len(got) == len(al) and src.stats["retried_pages"] == 1


def test_persistent_5xx_gives_a_clear_error(fake):
    fake.fail_next(500, 50)
    with pytest.raises(IndexerUnavailable, match=r"500.*after 2 retries"):
        list(_src(fake, retries=2))


def test_wrong_password_fails_clearly_without_the_password(fake, caplog):
    caplog.set_level(logging.DEBUG)
    bad = "Wr0ng-but-SECRET-pw"
    src = _src(fake, password=bad)
    with pytest.raises(IndexerAuthError) as ei:
        list(src)
    msg = str(ei.value)
    assert "401" in msg and USER in msg and bad not in msg
    assert bad not in repr(src) and bad not in repr(src.config)
    assert bad not in caplog.text
    # the fake saw exactly one attempt: a refusal is not retried
    assert len(fake.requests) == 1


def test_unreachable_indexer_and_missing_index():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with pytest.raises(IndexerUnavailable, match="cannot reach the indexer"):
        list(IndexerSource(f"http://127.0.0.1:{port}/wazuh-alerts-4.x-*", retries=1, backoff=0.001))
    with FakeIndexer(load_export(EXPORT)) as f:
        with pytest.raises(IndexerError, match="index wazuh-alerts-4.x-1999.01.01 does not exist"):
            list(IndexerSource(f.url + "/wazuh-alerts-4.x-1999.01.01", **FAST))
        assert list(IndexerSource(f.url + "/nothing-*", **FAST)) == []  # a pattern may match nothing


def test_cluster_without_pit_falls_back_to_search_after(fleet):
    al, own = fleet
    with FakeIndexer(al + own, pit_supported=False) as f:
        src = _src(f, page_size=300)
        got = list(src)
        assert [a["id"] for a in got] == [a["id"] for a in sorted(al, key=_sort_key)]
        assert src.stats["pits_opened"] == 0
        assert any(p == "/wazuh-alerts-4.x-*/_search" for m, p, b in f.requests)
        with pytest.raises(IndexerError, match="no point-in-time API"):
            list(_src(f, pit=True))


# -- configuration ------------------------------------------------------------------------------------

def test_config_file_must_be_private(tmp_path, fake):
    p = tmp_path / "indexer.json"
    p.write_text(json.dumps({"url": fake.url, "username": USER, "password": PASSWORD, "page_size": 333}))
    os.chmod(p, 0o644)
    with pytest.raises(IndexerConfigError, match="chmod 600") as ei:
        IndexerSource(config_file=str(p))
    assert PASSWORD not in str(ei.value)
    os.chmod(p, 0o620)
    with pytest.raises(IndexerConfigError):
        IndexerSource(config_file=str(p))
    os.chmod(p, 0o600)
    src = IndexerSource(config_file=str(p))
    assert src.config.page_size == 333 and src.config.index_pattern == "wazuh-alerts-4.x-*"
    assert len(list(src)) > 0


def test_bad_settings_are_refused_clearly(tmp_path):
    with pytest.raises(IndexerConfigError, match="carries credentials") as ei:
        IndexerSource("https://admin:hunter22@indexer:9200/wazuh-alerts-4.x-*")
    assert "hunter22" not in str(ei.value)
    with pytest.raises(IndexerConfigError, match="not JSON"):
        IndexerSource("https://indexer:9200", query="{not json")
    with pytest.raises(IndexerConfigError, match="unknown indexer setting"):
        IndexerSource("https://indexer:9200", config_file=_private(tmp_path, {"pasword": "x"}))
    with pytest.raises(IndexerConfigError, match="both"):
        IndexerSource("https://indexer:9200", username="u")
    with pytest.raises(IndexerConfigError, match="CA bundle not found"):
        IndexerSource("https://indexer:9200", ca_bundle=str(tmp_path / "nope.pem"))
    s = IndexerSource("https://indexer:9200/wazuh-alerts-4.x-2026.*", config_file=_private(tmp_path, {}))
    assert s.config.base_url == "https://indexer:9200" and s.config.index_pattern == "wazuh-alerts-4.x-2026.*"
    assert s.session.verify is True  # TLS verified by default


def _private(tmp_path, data):
    p = tmp_path / f"c{len(os.listdir(tmp_path))}.json"
    p.write_text(json.dumps(data))
    os.chmod(p, 0o600)
    return str(p)


# -- the estimator ------------------------------------------------------------------------------------

def test_fit_on_the_indexer_equals_fit_on_the_file(indexer, fleet, tmp_path):
    from mimizuku import Mimizuku

    al, own = fleet
    path = _write_jsonl(tmp_path / "alerts.json", sorted(al + own, key=_sort_key))
    m_file = Mimizuku().fit(path)
    m_idx = Mimizuku().fit(indexer.src(page_size=700))
    assert m_idx.n_alerts_ == m_file.n_alerts_ == len(al)
    test = al[::7]
    s_file = [r["score"] for r in m_file.score_records(test)]
    s_idx = [r["score"] for r in m_idx.score_records(test)]
    assert len(s_file) == len(test) and s_file == s_idx


def test_credentials_never_travel_in_clear_beyond_the_loopback(caplog):
    """As the Wazuh API client (issue 17 item 8): a password over plain http:// to another host is
    refused unless the config file says "allow_http": true; to the loopback it goes, with a warning."""
    with pytest.raises(IndexerConfigError, match="in clear"):
        IndexerConfig.from_sources("http://indexer.example:9200", env={}, username="u", password="p")
    IndexerConfig.from_sources("http://indexer.example:9200", env={}, username="u", password="p", allow_http=True)
    IndexerConfig.from_sources("http://indexer.example:9200", env={})          # no password: nothing to leak
    for host in ("127.0.0.1", "localhost", "[::1]"):
        IndexerConfig.from_sources(f"http://{host}:9200", env={}, username="u", password="p")
    with caplog.at_level(logging.WARNING):
        IndexerSource("http://127.0.0.2:9200", env={}, username="u", password="p")
    assert "credentials over plain http to http://127.0.0.2:9200" in caplog.text
