"""Following the indexer: a persisted bookmark, late documents, restarts -- no miss, no double.

Against the stateful fake of fake_indexer.py and, for the tests that need no injected fault
(``backend`` fixture), a REAL OpenSearch 2.19 node too (tests/opensearch_node.py), where "not yet
searchable" is a real index that was not refreshed."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from fake_indexer import FakeIndexer
from opensearch_node import WAZUH_ALERTS_MAPPING

from mimizuku.sources.follow import FollowError
from mimizuku.sources.indexer import IndexerSource
from mimizuku.sources.indexer_follow import IndexerFollower

USER, PASSWORD = "mimizuku", "s3cret-Pa55"
T0 = datetime(2026, 5, 4, 12, 0, tzinfo=timezone.utc).timestamp()


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def alert(n: int, t: float, manager: str = "node1", **extra) -> dict:
    ms = int(round(t * 1000))
    ts = datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"
    a = {"timestamp": ts, "rule": {"level": 5, "id": "5501", "groups": ["pam"]},
         "agent": {"id": "001", "name": "web"}, "manager": {"name": manager}, "id": f"{int(t)}.{n}",
         "location": "/var/log/auth.log", "n": n}
    a.update(extra)
    return a


class Backend:
    """Where the alerts are: the fake (``fake``) or an index namespace on the real node (``ns``:
    anonymous plain HTTP, the node has no security plugin)."""

    def __init__(self, fake=None, ns=None):
        self.fake, self.ns = fake, ns
        self._late = None

    def add(self, docs):
        if self.fake is not None:
            self.fake.add(docs)
        else:
            self.ns.index_alerts(docs)

    def add_late(self, docs):
        """Indexed but not searchable yet (real: an index with refresh off, not refreshed)."""
        if self.fake is not None:
            self.fake.add(docs, visible=False)
            return
        if self._late is None:
            self._late = self.ns.create_index("wazuh-alerts-4.x-late", mappings=WAZUH_ALERTS_MAPPING,
                                              settings={"index.refresh_interval": "-1"})
        self.ns.bulk(docs, index=self._late, refresh=False)

    def refresh(self):
        if self.fake is not None:
            self.fake.refresh()
        elif self._late is not None:
            self.ns.request("POST", f"/{self._late}/_refresh")

    def source(self, page_size):
        if self.fake is not None:
            return IndexerSource(self.fake.url + "/wazuh-alerts-4.x-*", username=USER, password=PASSWORD,
                                 backoff=0.001, retries=2, page_size=page_size)
        return IndexerSource(self.ns.alerts_url, backoff=0.001, retries=2, page_size=page_size)


def follower(backend, bookmark, clock, **kw):
    if isinstance(backend, FakeIndexer):
        backend = Backend(fake=backend)
    src = backend.source(kw.pop("page_size", 7))
    kw.setdefault("interval", 0)
    kw.setdefault("lag", 60)
    return IndexerFollower(src, bookmark, clock=clock, **kw)


def drain(f, commit=True, limit=10_000):
    got = []
    while True:
        lines = f.read(50)
        if not lines:
            return got
        for raw, mark in lines:
            got.append(json.loads(raw)["n"])
            if commit:
                f.commit(mark)
        if len(got) > limit:
            raise AssertionError("no end")


@pytest.fixture()
def fake():
    with FakeIndexer() as f:
        yield f


@pytest.fixture(params=["fake", "real"])
def backend(request):
    if request.param == "fake":
        return Backend(fake=request.getfixturevalue("fake"))
    return Backend(ns=request.getfixturevalue("opensearch"))


def test_reads_new_alerts_once_even_with_shared_timestamps(backend, tmp_path):
    clock = Clock(T0 + 100)
    # 40 alerts on 4 timestamps, from two managers: page boundaries fall inside a timestamp
    backend.add([alert(i, T0 + (i // 10), manager=f"node{i % 2}") for i in range(40)])
    f = follower(backend, tmp_path / "bm", clock, from_start=True, batch=6)
    assert sorted(drain(f)) == list(range(40))
    assert drain(f) == []  # a second poll finds nothing new
    backend.add([alert(100 + i, T0 + 3, manager="node9") for i in range(5)])  # same time as the last
    assert sorted(drain(f)) == [100, 101, 102, 103, 104]
    assert f.stats["duplicates"] > 0


def test_late_documents_within_the_lag_are_scored_once(backend, tmp_path):
    clock = Clock(T0 + 100)
    backend.add([alert(i, T0 + i) for i in range(10)])
    f = follower(backend, tmp_path / "bm", clock, from_start=True, lag=30)
    assert sorted(drain(f)) == list(range(10))
    # a node's buffer flushes late: alerts older than the newest one handled, within the lag
    backend.add_late([alert(50, T0 + 2), alert(51, T0 + 9)])
    backend.add([alert(20, T0 + 20)])
    assert drain(f) == [20]
    backend.refresh()
    assert sorted(drain(f)) == [50, 51]
    # beyond the lag window (older than high water 20 - 30 s): the documented condition
    backend.add([alert(60, T0 - 15)])
    assert drain(f) == []


def test_restart_resumes_from_the_bookmark_without_miss_or_double(backend, tmp_path):
    clock = Clock(T0 + 100)
    backend.add([alert(i, T0 + i // 3) for i in range(30)])
    bm = tmp_path / "indexer.bookmark"
    f = follower(backend, bm, clock, from_start=True)
    lines = f.read(1000)
    assert len(lines) == 30
    handled = []
    for raw, mark in lines[:17]:  # the daemon stops after handling 17 of them
        handled.append(json.loads(raw)["n"])
        f.commit(mark)
    assert f.save(fsync=True)
    f.close()
    saved = json.loads(bm.read_text())
    assert saved["kind"] == "indexer" and saved["high_water_ms"] is not None
    assert "s3cret" not in bm.read_text()
    # while it is down: new alerts, and a late one for a time already passed
    backend.add([alert(40 + i, T0 + 20 + i) for i in range(5)] + [alert(99, T0 + 3)])
    f2 = follower(backend, bm, clock)
    again = drain(f2)
    assert sorted(handled + again) == sorted(list(range(30)) + [40, 41, 42, 43, 44, 99])
    assert not set(handled) & set(again)
    f2.save()
    f2.close()
    f3 = follower(backend, bm, clock)
    assert drain(f3) == []  # everything committed: nothing scored twice after another restart


def test_uncommitted_alerts_are_read_again_after_a_restart(backend, tmp_path):
    clock = Clock(T0 + 100)
    backend.add([alert(i, T0 + i) for i in range(8)])
    bm = tmp_path / "bm"
    f = follower(backend, bm, clock, from_start=True)
    lines = f.read(100)
    f.commit(lines[2][1])
    f.save()
    f.close()
    f2 = follower(backend, bm, clock)
    assert drain(f2) == [3, 4, 5, 6, 7]


def test_first_start_without_bookmark_begins_now(backend, tmp_path):
    clock = Clock(T0 + 10)
    backend.add([alert(i, T0 + i) for i in range(5)])  # history
    f = follower(backend, tmp_path / "bm", clock)
    assert drain(f) == []
    backend.add([alert(10, T0 + 11), alert(11, T0 + 12)])
    assert drain(f) == [10, 11]
    f.save()
    assert json.loads((tmp_path / "bm").read_text())["floor_ms"] == int((T0 + 10) * 1000)


def test_the_plugins_own_events_never_come_back(backend, tmp_path):
    clock = Clock(T0 + 100)
    backend.add([alert(1, T0), alert(2, T0 + 1, rule={"level": 10, "id": "100200", "groups": ["mimizuku"]}, location="mimizuku"),
              alert(3, T0 + 2, data={"integration": "mimizuku"}, location="API-Webhook"), alert(4, T0 + 3)])
    f = follower(backend, tmp_path / "bm", clock, from_start=True)
    assert drain(f) == [1, 4]


def test_errors_surface_as_follow_errors_and_polling_recovers(fake, tmp_path):
    clock = Clock(T0 + 100)
    fake.add([alert(i, T0 + i) for i in range(3)])
    f = follower(fake, tmp_path / "bm", clock, from_start=True)
    fake.fail_next(503, 3)  # the first try and both retries
    with pytest.raises(FollowError, match="503"):
        f.read(10)
    clock.t += 5
    assert sorted(drain(f)) == [0, 1, 2]


def test_a_damaged_bookmark_is_refused(fake, tmp_path):
    bm = tmp_path / "bm"
    bm.write_text('{"path": "/var/ossec/logs/alerts/alerts.json", "offset": 5}')  # a file bookmark
    with pytest.raises(FollowError, match="not an indexer bookmark"):
        follower(fake, bm, Clock(T0)).read(1)


def test_serve_follows_the_indexer(tmp_path, monkeypatch):
    """``mimizuku serve --follow-indexer``: the option reaches the daemon's follower."""
    import argparse

    from mimizuku.integratord.options import OptionsError
    from mimizuku.serve.config import add_arguments, config_from_args

    p = argparse.ArgumentParser()
    add_arguments(p)
    monkeypatch.setenv("MIMIZUKU_INDEXER_USER", USER)
    monkeypatch.setenv("MIMIZUKU_INDEXER_PASSWORD", PASSWORD)
    a = p.parse_args(["--wazuh-home", str(tmp_path), "--follow-indexer", "https://indexer:9200/wazuh-alerts-4.x-*",
                      "--indexer-lag", "120"])
    cfg = config_from_args(a)
    assert cfg.follow_indexer == "https://indexer:9200/wazuh-alerts-4.x-*" and cfg.indexer_lag == 120
    bad = p.parse_args(["--wazuh-home", str(tmp_path), "--follow-indexer", "https://u:pw@indexer:9200"])
    with pytest.raises(OptionsError, match="carries credentials"):
        config_from_args(bad)
    both = p.parse_args(["--wazuh-home", str(tmp_path), "--follow-indexer", "https://indexer:9200",
                         "--follow", str(tmp_path / "alerts.json")])
    with pytest.raises(OptionsError, match="not both"):
        config_from_args(both)
