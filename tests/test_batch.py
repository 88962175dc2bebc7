"""Batch analysis of a day: scoring, DBSCAN over the context features, SQL/syslog delivery, report."""
from __future__ import annotations

import json
import sqlite3
from datetime import date

import numpy as np
import pytest
import retrain_trees as T
from sklearn.cluster import DBSCAN
from sklearn.feature_extraction import DictVectorizer

from mimizuku.engine.estimator import Mimizuku
from mimizuku.nightly import day_analysis as batch
from mimizuku.nightly.cli import main
from mimizuku.nightly.clustering import ContextClusterer

ALERTS = [{k: v for k, v in a.items() if k != "_label"} for a in T.fleet(days=8, scale=0.02)]
DAYS = T.days_of(ALERTS)
LAST = DAYS[-1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("tree")
    T.write_tree(d, ALERTS, part_lines=200)
    return d


@pytest.fixture(scope="module")
def model():
    # a few hundred training alerts cannot vouch for the default share (1e-4): the budget of a
    # small fleet
    return Mimizuku(contamination=1e-3).fit([a for a in ALERTS if a["timestamp"][:10] < LAST])


@pytest.fixture(scope="module")
def day(model, tree):
    return batch.analyse_day(model, str(tree), date.fromisoformat(LAST))


def test_score_day_keeps_records_aligned_with_situations(day):
    last = [a for a in ALERTS if a["timestamp"][:10] == LAST]
    assert day.n_alerts == len(last) == len(day.records) == len(day.situations)
    assert [r["id"] for r in day.records] == [a["id"] for a in last]
    assert all(s is not None for s in day.situations)
    # the situation is the context detector's own point for that alert
    clusterer = ContextClusterer()
    assert list(clusterer.situations(last)) == day.situations
    assert day.n_anomalies > 0  # out of sample: the attack day has anomalies
    assert all(r["cluster"] is not None and r["cluster"] >= -1 for r in day.records)



def test_scoring_a_day_leaves_the_model_as_it_was(day, model):
    import pickle

    ctx = model.detectors_["context"]
    assert "key" not in ctx.__dict__  # the keys come through Mimizuku.iter_scored: nothing is shadowed
    assert pickle.loads(pickle.dumps(ctx)).key.__func__ is type(ctx).key


def test_alert_without_id_is_matched_to_its_record(tmp_path, model):
    last = [dict(a) for a in ALERTS if a["timestamp"][:10] == LAST][:50]
    del last[10]["id"]
    T.write_tree(tmp_path, last, strip_labels=False)
    d = batch.analyse_day(model, str(tmp_path), date.fromisoformat(LAST))
    assert len(d.records) == 50 and d.records[10]["id"].startswith("sha1:")
    assert d.situations == list(ContextClusterer().situations(last))


def test_per_block_dbscan_equals_dbscan_on_the_whole_feature_space(day, model):
    c = ContextClusterer.from_model(model)
    mine = c.fit_predict_situations(day.situations)
    U, w = c.situations_, c.situation_weights_
    fd = c.feature_detector()
    X = np.hstack([DictVectorizer(sparse=False).fit_transform([fd.block_features(s[0]) for s in U]),
                   np.array([fd.continuous_features(*s[1:]) for s in U])])
    whole = DBSCAN(eps=c.eps, min_samples=c.min_samples, algorithm="kd_tree").fit_predict(X, sample_weight=w)
    assert len(U) > 100 and len(set(whole)) > 5
    # the same partition (labels may be numbered differently) and the same noise
    pairs = set(zip(whole.tolist(), c.situation_labels_.tolist()))
    assert len(pairs) == len(set(whole)) == len(set(c.situation_labels_))
    assert all((a == -1) == (b == -1) for a, b in pairs)
    # labels per alert follow their situation; noise is -1
    pos = {s: i for i, s in enumerate(U)}
    assert all(mine[i] == c.situation_labels_[pos[s]] for i, s in enumerate(day.situations))


def _sit(groups, agent="web-01", hour=10, rate=2, rid="5710"):
    return ((rid, tuple(groups), 5, agent, "", "none", ""), hour, rate, -1)


def test_blocks_closer_than_eps_are_clustered_together():
    """Same rule, agent and user, rule groups differing in one of three: within eps, one cluster."""
    c = ContextClusterer(eps=0.5, min_samples=5)
    a, b = _sit(("sshd", "authentication_failed", "syslog")), _sit(("sshd", "authentication_failed", "x"))
    far = _sit(("sshd", "authentication_failed", "syslog"), agent="db-01")
    labels = c.fit_predict_situations([a] * 3 + [b] * 3 + [far] * 3)
    assert set(labels[:6]) == {0}  # 3 + 3 >= min_samples only together
    assert set(labels[6:]) == {-1}  # another agent: a block of its own, too small
    assert c.n_clusters_ == 1


def test_names_are_not_ordinal_codes(day):
    """Renaming agents and users (which reorders any label encoding) changes nothing."""
    def rename(s):
        block = list(s[0])
        block[3] = "zz-" + block[3][::-1]
        block[4] = ("u-" + block[4][::-1]) if block[4] else ""
        return (tuple(block),) + tuple(s[1:])

    c = ContextClusterer()
    a = c.fit_predict_situations(day.situations)
    b = c.fit_predict_situations([rename(s) for s in day.situations])
    assert a.tolist() == b.tolist()


def test_coords_for_the_report(day):
    coords = day.coords()
    assert len(coords) == len(day.records)
    xs = [x for x, _ in coords.values()]
    assert 0 <= min(xs) and max(xs) <= 24


def test_sql_writes_are_idempotent(day, tmp_path):
    url = "sqlite:///" + str(tmp_path / "m.db")
    run = {"run_id": f"{LAST}@{day.model_version}", "model_version": day.model_version, "status": "ok"}
    first = batch.deliver(day.records, run, sql_url=url, spool_root=tmp_path / "spool", syslog=False)
    assert first.warnings == []
    assert first.counts["sql"]["alerts_inserted"] == len(day.records)
    assert first.counts["sql"]["outliers_inserted"] == sum(1 for r in day.records if r["anomaly"] or r["cluster"] == -1)
    with sqlite3.connect(tmp_path / "m.db") as db:
        snap = db.execute("select (select count(*) from alerts), (select count(*) from outliers), "
                          "(select count(*) from runs), (select sum(cluster = -1) from alerts)").fetchone()
    assert snap[3] == day.n_noise
    again = batch.deliver(day.records, run, sql_url=url, spool_root=tmp_path / "spool", syslog=False)
    assert again.counts["sql"]["alerts_inserted"] == 0 and again.counts["sql"]["outliers_inserted"] == 0
    assert again.counts["sql"]["alerts_existing"] == len(day.records)
    with sqlite3.connect(tmp_path / "m.db") as db:
        assert db.execute("select (select count(*) from alerts), (select count(*) from outliers), "
                          "(select count(*) from runs), (select sum(cluster = -1) from alerts)").fetchone() == snap


def test_retention_through_the_sink(tmp_path, model):
    """A day older than the retention is written, then deleted by the sink's retention."""
    old = [{k: v for k, v in a.items() if k != "_label"}
           for a in T.fleet(days=2, scale=0.02, start=date(2024, 3, 4), attacks=False)]
    T.write_tree(tmp_path / "old", old)
    d = batch.analyse_day(model, str(tmp_path / "old"), date(2024, 3, 5))
    assert d.n_alerts > 0
    url = "sqlite:///" + str(tmp_path / "m.db")
    out = batch.deliver(d.records, {"run_id": "old"}, sql_url=url, spool_root=tmp_path / "spool",
                        retention_days=30, syslog=False)
    c = out.counts["sql"]
    assert c["alerts_inserted"] == len(d.records)
    assert c["retention_deleted"] == c["alerts_inserted"] + c["outliers_inserted"]
    with sqlite3.connect(tmp_path / "m.db") as db:
        assert db.execute("select count(*) from alerts").fetchone() == (0,)
        assert db.execute("select count(*) from runs").fetchone() == (1,)  # run history kept


def test_syslog_one_line_per_selected_record(day, tmp_path):
    path = tmp_path / "logs" / "anomaly.syslog"
    out = batch.deliver(day.records, {"run_id": "x"}, sql_url=None, spool_root=tmp_path / "spool",
                        syslog_file=path, syslog_select="outliers")
    want = sum(1 for r in day.records if r["anomaly"] or r["cluster"] == -1)
    assert out.counts["syslog"]["selected"] == want
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == want and all(ln.startswith("<") and " mimizuku " in ln for ln in lines)


def test_syslog_server_down_is_a_warning(day, tmp_path):
    out = batch.deliver(day.records, {"run_id": "x"}, sql_url=None, spool_root=tmp_path / "spool",
                        syslog_file=None, syslog_remote="tcp://127.0.0.1:1")
    assert out.warnings and out.warnings[0].startswith("syslog:")
    assert out.counts["syslog"]["spooled"] == day.n_anomalies


def test_report_command_for_a_day_and_for_records(tmp_path, tree, model, capsys):
    models = tmp_path / "models"
    T.install_model(models, model)
    out = tmp_path / "r.html"
    assert main(["report", "--day", LAST, "--wazuh-home", str(tree), "--model-dir", str(models),
                 "--out", str(out)]) == 0
    html = out.read_text()
    assert "DBSCAN" in html and "data:image/png;base64," in html and LAST in html
    assert main(["report", "--day", "2001-01-01", "--wazuh-home", str(tree), "--model-dir", str(models),
                 "--out", str(out)]) == 3
    assert main(["report", "--day", LAST, "--wazuh-home", str(tree), "--model-dir", str(tmp_path / "none")]) == 4
    assert main(["report", "--day", "yesterday-ish", "--wazuh-home", str(tree)]) == 2
    recs = tmp_path / "recs.jsonl"
    recs.write_text("\n".join(json.dumps(r) for r in Mimizuku.load_model(models / "current").score_records(
        [a for a in ALERTS if a["timestamp"][:10] == LAST][:200])) + "\n")
    assert main(["report", "--input", str(recs), "--out", str(tmp_path / "r2.html")]) == 0
    assert (tmp_path / "r2.html").read_text().startswith("<!DOCTYPE html>")
