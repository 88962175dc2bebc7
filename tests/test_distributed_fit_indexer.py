"""Training from the Wazuh indexer in day slices, locally or on Dask, gives one model.

The indexer (the stateful fake OpenSearch of fake_indexer.py) holds the alerts of
test_distributed_fit's fleet plus the plugin's own events. ``mimizuku retrain --input URL`` runs
locally and on a ``distributed.LocalCluster`` of two in-process workers: the models must be equal
(compared as test_distributed_fit compares them), and equal to the model trained from the same
alerts laid out as an archive tree. The tasks carry no credential: the workers take theirs from
the environment (shared with this process, as the workers are in-process), set with monkeypatch.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import retrain_trees as T
from fake_indexer import FakeIndexer
from test_distributed_fit import ALERTS, DAYS, LAST, SCORING, _fitted, assert_same_training

from mimizuku.engine.estimator import Mimizuku
from mimizuku.nightly.cli import main
from mimizuku.sources.errors import ReadStats
from mimizuku.sources.reader import iter_alerts
from mimizuku.store.versions import current_version

distributed = pytest.importorskip("distributed")

USER, PASSWORD = "mimizuku", "s3cret-Pa55"
SECRET = PASSWORD.encode()
CLEAN = [{k: v for k, v in a.items() if k != "_label"} for a in ALERTS]


def _own_events():
    """The plugin's own events as they reach the indexer (both markers): never trained on."""
    out = []
    for i, a in enumerate(CLEAN[200:240]):
        o = json.loads(json.dumps(a))
        o["id"] = f"own.{i}"
        o["location"] = "mimizuku"
        if i % 2:
            o["rule"]["groups"] = ["mimizuku", "anomaly"]
        else:
            o.setdefault("data", {})["integration"] = "mimizuku"
        out.append(o)
    return out


@pytest.fixture(scope="module")
def fake():
    with FakeIndexer(CLEAN + _own_events(), user=USER, password=PASSWORD) as f:
        yield f


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as c:
        yield c


@pytest.fixture
def creds(tmp_path, monkeypatch):
    """Credentials in the environment (the driver's and the in-process workers'); a root-only
    config file (ours) with a small page size, so each slice pages."""
    cfg = tmp_path / "indexer.json"
    fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"page_size": 150, "backoff": 0.001, "max_backoff": 0.01, "retries": 2}, f)
    monkeypatch.setenv("MIMIZUKU_INDEXER_CONFIG", str(cfg))
    monkeypatch.setenv("MIMIZUKU_INDEXER_USER", USER)
    monkeypatch.setenv("MIMIZUKU_INDEXER_PASSWORD", PASSWORD)
    for k in ("MIMIZUKU_INDEXER_URL", "MIMIZUKU_INDEXER_QUERY", "MIMIZUKU_INDEXER_CA"):
        monkeypatch.delenv(k, raising=False)
    return cfg


@pytest.fixture
def sent(monkeypatch):
    """What the driver hands to Client.submit (the task's arguments), recorded."""
    calls = []
    orig = distributed.Client.submit

    def submit(self, func, *args, **kw):
        calls.append(args)
        return orig(self, func, *args, **kw)

    monkeypatch.setattr(distributed.Client, "submit", submit)
    return calls


def _retrain(capfd, home: Path, url: str, *extra: str):
    capfd.readouterr()
    code = main(["retrain", "--wazuh-home", str(home), "--input", url, "--day", LAST, "--no-batch",
                 "--summary-json", "--max-rate-ratio", "1000", "--days", str(len(DAYS)), *extra])
    out, _ = capfd.readouterr()
    return code, T.summary_of(out.encode())


def _pit_opens(fake) -> int:
    return sum(1 for m, p, _ in list(fake.requests) if m == "POST" and p.endswith("/_search/point_in_time"))


def test_indexer_slices_on_dask_equal_local(fake, cluster, creds, sent, tmp_path, capfd):
    url = fake.url + "/wazuh-alerts-4.x-*"
    local, dask = tmp_path / "local", tmp_path / "dask"
    local.mkdir()
    dask.mkdir()
    before = _pit_opens(fake)
    code_l, s_l = _retrain(capfd, local, url)
    local_pits = _pit_opens(fake) - before
    assert not sent  # no Dask without --dask
    code_d, s_d = _retrain(capfd, dask, url, "--dask", cluster.scheduler_address)
    assert code_l == code_d == 0, (s_l, s_d)
    c = s_d["counts"]
    assert c["alerts_read"] == len(CLEAN) and c["own_events"] == 0  # excluded in the query
    assert c["days_with_alerts"] == len(DAYS)
    # one task per UTC day of the (widened) window, spread over both workers, each a slice
    n = c["dask"]["partitions"]
    assert n == len(sent) >= len(DAYS) and c["dask"]["workers"] == 2
    assert c["files"] == s_l["counts"]["files"] == n  # local runs read the same slices
    assert local_pits >= n  # a point in time per slice
    parts = [args[0] for args in sent]
    assert all(p.shippable and p.plans[0][0] == "indexer" for p in parts)
    assert [p.label for p in parts][1:len(DAYS) + 1] == DAYS
    # no credential in what travels: the partitions, the job, nor the slices' own state
    for args in sent:
        assert SECRET not in pickle.dumps(args[0]) and SECRET not in pickle.dumps(args[2])
        assert all(pl[1].source is None for pl in args[0].plans)
    assert_same_training(local, dask, s_l, s_d)


def test_indexer_model_equals_the_archive_model(fake, creds, tmp_path, capfd):
    """The same alerts as day files: UTC days here are the managers' days, so the partitions hold
    the same alerts in the same order and the model is the same."""
    tree, idx = tmp_path / "tree", tmp_path / "idx"
    T.write_tree(tree, ALERTS)
    idx.mkdir()
    code_t, s_t = _retrain(capfd, tree, str(tree))
    code_i, s_i = _retrain(capfd, idx, fake.url + "/wazuh-alerts-4.x-*")
    assert code_t == code_i == 0, (s_t, s_i)
    for k in ("alerts_read", "days_with_alerts", "trained_on", "trained"):
        assert s_t["counts"][k] == s_i["counts"][k], k
    a = Mimizuku.load_model(tree / "mimizuku" / "models" / "current")
    b = Mimizuku.load_model(idx / "mimizuku" / "models" / "current")
    assert sorted(a.detectors_) == sorted(b.detectors_) == ["commands", "context", "files"]
    for name in a.detectors_:
        assert _fitted(a.detectors_[name]) == _fitted(b.detectors_[name]), name
    ra, rb = a.score_records(SCORING), b.score_records(SCORING)
    assert [(r["id"], r["score"], r["anomaly"], r["reasons"]) for r in ra] == \
        [(r["id"], r["score"], r["anomaly"], r["reasons"]) for r in rb]


@pytest.mark.parametrize("worker_env", ["none", "refused"])
def test_worker_without_credentials_fails_the_run_and_keeps_the_model(fake, cluster, creds, tmp_path, capfd,
                                                                      monkeypatch, worker_env):
    """The driver has credentials, the workers have none (or refused ones): exit 3 as for any
    worker failure, a message that says what every worker needs, the model in use kept."""
    from mimizuku.nightly import partitions as distributed_fit

    url = fake.url + "/wazuh-alerts-4.x-*"
    home = tmp_path / "home"
    home.mkdir()
    code, _ = _retrain(capfd, home, url)
    assert code == 0
    models = home / "mimizuku" / "models"
    before = current_version(models)
    parts = distributed_fit.partitions_of(url, days=len(DAYS) + 1)  # the driver's: bound, with credentials
    if worker_env == "none":
        monkeypatch.delenv("MIMIZUKU_INDEXER_USER")
        monkeypatch.delenv("MIMIZUKU_INDEXER_PASSWORD")
    else:
        monkeypatch.setenv("MIMIZUKU_INDEXER_PASSWORD", "wrong-" + PASSWORD[::-1])
    monkeypatch.setattr(distributed_fit, "partitions_of", lambda *a, **k: parts)
    code, s = _retrain(capfd, home, url, "--dask", cluster.scheduler_address)
    assert code == 3 and s["status"] == "failed", s
    assert "cannot read the indexer slice" in s["error"] and "current model is kept" in s["error"]
    if worker_env == "none":
        assert "no indexer credentials" in s["error"] and "every machine" in s["error"]
    else:
        assert "401" in s["error"] and "refused the credentials" in s["error"]
    assert PASSWORD not in json.dumps(s) and PASSWORD[::-1] not in json.dumps(s)
    assert current_version(models) == before
    assert [p.name for p in (models / "versions").iterdir()] == [before]
    # the same partitions read locally (bound to the driver's source) still read everything
    from mimizuku.nightly.partitions import PartitionedFit

    assert PartitionedFit(None, {}).fit(url, days=len(DAYS) + 1).detectors_


# --- the slices themselves -----------------------------------------------------------------------

def _doc(i, ts, **extra):
    d = {"id": f"1.{i:04d}", "timestamp": ts, "rule": {"id": "5501", "level": 3, "groups": ["pam"],
                                                        "description": "login"},
         "agent": {"id": "001", "name": "web"}, "manager": {"name": "m1"}, "location": "journald"}
    d.update(extra)
    return d


BOUNDARY_DOCS = [
    _doc(1, "2026-03-01T10:00:00.000+0000"),
    _doc(2, "2026-03-01T23:59:59.999+0000"),
    _doc(3, "2026-03-02T00:00:00.000+0000"),     # exactly midnight UTC: the next day's slice
    _doc(4, "2026-03-02T00:30:00.000+0200"),     # 22:30 UTC the day before, 00:30 on its wall clock
    _doc(5, "2026-03-02T12:00:00.000+0000"),
    _doc(6, "2026-03-02T12:00:00.000+0000", rule={"id": "100900", "level": 10, "groups": ["mimizuku"],
                                                  "description": "own"}, location="mimizuku"),
    _doc(7, "2026-03-03T23:00:00.000-0500"),     # 04:00 UTC on 03-04
    _doc(8, "2026-03-05T08:00:00.000+0000"),
    {"id": "1.9999", "rule": {"id": "1", "level": 1, "description": "no time"}, "agent": {"id": "000"},
     "manager": {"name": "m1"}},                 # no timestamp: only an unbounded read has it
]


@pytest.mark.parametrize("window", [
    {}, {"since": "2026-03-02"}, {"until": "2026-03-02"}, {"since": "2026-03-02", "until": "2026-03-03"},
    {"since": "2026-03-02T00:00:00+00:00", "until": "2026-03-04T04:00:00+00:00"},
    {"since": "2026-03-01T23:59:59.999+00:00", "until": "2026-03-02T00:00:00.001+00:00"},
])
def test_slices_together_read_exactly_the_one_read(window, tmp_path, monkeypatch):
    from mimizuku.nightly.partitions import add_stats, partitions_of
    from mimizuku.sources.indexer import IndexerSource

    monkeypatch.delenv("MIMIZUKU_INDEXER_CONFIG", raising=False)
    with FakeIndexer(BOUNDARY_DOCS, user=USER, password=PASSWORD) as f:
        src = IndexerSource(f.url, username=USER, password=PASSWORD, page_size=1,
                            config_file=str(_empty_config(tmp_path)))
        whole = ReadStats()
        one = [a["id"] for a in iter_alerts(src, stats=whole, **window)]
        total = ReadStats()
        parts = partitions_of(src, stats=total, **window)
        got = []
        for p in parts:
            assert SECRET not in pickle.dumps(p) and SECRET not in pickle.dumps(p.for_worker())
            st = ReadStats()
            got += [a["id"] for a in p.alerts(st)]
            add_stats(total, st)
        assert got == one and len(set(got)) == len(got)
        assert total.alerts == whole.alerts and total.own_events == whole.own_events \
            and total.skipped_by_window == whole.skipped_by_window
        slices = [p.plans[0][1] for p in parts]
        # half-open, cut at UTC midnights, each within one UTC day
        for s in slices:
            if s.since_ms is not None and s.until_ms is not None:
                assert s.since_ms < s.until_ms
                assert (s.until_ms - 1) // 86_400_000 == s.since_ms // 86_400_000
        for a, b in zip(slices, slices[1:]):
            if not b.undated:
                assert a.until_ms == b.since_ms
    if not window:
        assert "1.9999" in one and one[-1] == "1.9999" and slices[-1].undated  # the undated hit, last
        assert [p.label for p in parts] == ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04",
                                            "2026-03-05", "undated"]
        assert "1.0006" not in one  # own event
        assert one.index("1.0004") < one.index("1.0003")  # 22:30 UTC sorts before midnight


def test_midnight_belongs_to_the_next_day(tmp_path, monkeypatch):
    from mimizuku.nightly.partitions import partitions_of
    from mimizuku.sources.indexer import IndexerSource

    monkeypatch.delenv("MIMIZUKU_INDEXER_CONFIG", raising=False)
    with FakeIndexer(BOUNDARY_DOCS, user=USER, password=PASSWORD) as f:
        src = IndexerSource(f.url, username=USER, password=PASSWORD, config_file=str(_empty_config(tmp_path)))
        days = {p.label: [a["id"] for a in p.alerts(ReadStats())] for p in partitions_of(src)}
    assert days["2026-03-01"] == ["1.0001", "1.0004", "1.0002"]  # 22:30 UTC, whatever its wall clock
    assert days["2026-03-02"] == ["1.0003", "1.0005"]
    assert days["2026-03-03"] == [] and days["2026-03-04"] == ["1.0007"]
    assert days["undated"] == ["1.9999"]


def _empty_config(tmp_path: Path) -> Path:
    p = tmp_path / "empty-indexer.json"
    if not p.exists():
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("{}")
    return p


def test_a_slice_opens_with_this_machines_credentials_and_the_drivers_settings(tmp_path):
    """Credentials and transport from the worker's own config; what to read from the slice —
    also over the worker's own query."""
    from mimizuku.sources.indexer import IndexerConfigError, IndexerSource

    drv = IndexerSource("http://127.0.0.1:9/alerts-*", username="nightly-trainer", password=PASSWORD, page_size=77,
                        query={"term": {"agent.id": "001"}}, config_file=str(_empty_config(tmp_path)))
    [sl] = drv.day_slices(0.0, False, 86_400.0, False)  # one UTC day, both ends given: one slice, no request
    assert sl.source is drv and pickle.loads(pickle.dumps(sl)).source is None
    assert SECRET not in pickle.dumps(sl) and b"nightly-trainer" not in pickle.dumps(sl)
    wcfg = tmp_path / "worker.json"
    fd = os.open(wcfg, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"username": "w", "password": "wpw", "read_timeout": 7.0, "page_size": 5}, fh)
    env = {"MIMIZUKU_INDEXER_QUERY": '{"term": {"agent.id": "999"}}'}
    w = sl.unbound().open(config_file=str(wcfg), env=env)
    assert (w.config.username, w.config.password, w.config.read_timeout) == ("w", "wpw", 7.0)
    assert (w.config.page_size, w.config.query, w.config.index_pattern) == (77, {"term": {"agent.id": "001"}},
                                                                             "alerts-*")
    with pytest.raises(IndexerConfigError, match="no indexer credentials"):
        sl.unbound().open(config_file=str(_empty_config(tmp_path)), env={})
    # a reader without credentials needs none on the workers
    anon = IndexerSource("http://127.0.0.1:9", config_file=str(_empty_config(tmp_path)))._slice(None, None, False)
    assert anon.open(config_file=str(_empty_config(tmp_path)), env={}).config.username is None
