"""The nightly job's first run and its window: a first model never learns the day it analyses,
and ``--day D --days N`` reads the N days that end on D, nothing after.

Generated fleet (14 days at scale 0.03, attacks planted on the last two days, labels stripped
from the archive and kept here to judge the result)."""
from __future__ import annotations

import sqlite3
from datetime import date, timedelta

import pytest
import retrain_trees as T

from mimizuku.nightly.cli import main

ALERTS = T.fleet(days=14, scale=0.03)
DAYS = T.days_of(ALERTS)
LAST = DAYS[-1]
EPISODES = {a["_label"]["episode"] for a in ALERTS
            if a.get("_label", {}).get("attack") and a["timestamp"][:10] == LAST}
EPISODE_OF = {a["id"]: a["_label"]["episode"] for a in ALERTS if a.get("_label", {}).get("attack")}


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("tree")
    T.write_tree(d, ALERTS)
    return d


def _run(capfd, home, *args):
    capfd.readouterr()
    code = main(["retrain", "--wazuh-home", str(home), *args, "--summary-json"])
    out, _err = capfd.readouterr()
    return code, T.summary_of(out.encode())


def _copy(tree, tmp_path):
    import shutil

    home = tmp_path / "wazuh"
    shutil.copytree(tree, home, symlinks=True)
    return home


def _caught(home):
    """Planted episodes of the analysed day with at least one raised anomaly (from SQL)."""
    with sqlite3.connect(home / "mimizuku" / "models" / "mimizuku.db") as db:
        ids = [r[0] for r in db.execute("select alert_id from alerts where anomaly = 1")]
    return {EPISODE_OF[i] for i in ids if i in EPISODE_OF and EPISODE_OF[i] in EPISODES}


def test_first_run_analyses_the_day_with_a_model_that_never_saw_it(tree, tmp_path, capfd):
    assert len(EPISODES) >= 4
    home = _copy(tree, tmp_path)
    code, s = _run(capfd, home, "--day", LAST)
    assert code == 0, s
    hold = s["counts"]["holdout"]
    assert hold["until"] == DAYS[-2] and hold["version"] != s["version"]
    # most planted episodes of the day are raised (all of them at the README's scale: the
    # quality of detection itself is measured by bench/quality.py), and the summary names them
    caught = _caught(home)
    assert len(caught) * 2 > len(EPISODES), caught
    found = s["anomalies"]
    assert found and len(found) <= 20 and s["counts"]["day"]["anomalies"] >= len(found)
    assert all(a["timestamp"].startswith(LAST) for a in found)
    assert [a["score_pct"] for a in found] == sorted((a["score_pct"] for a in found), reverse=True)
    assert not any(a["reason"].startswith("update of anomaly") for a in found)
    # the model installed learned the window without what the hold-out model flagged
    c = s["counts"]
    assert c["excluded_flagged"] > 0 and c["trained_on"] == c["alerts_read"] - c["excluded_flagged"]
    with sqlite3.connect(home / "mimizuku" / "models" / "mimizuku.db") as db:
        assert db.execute("select model_version from runs").fetchone()[0] == hold["version"]
    # syslog lines in a file under the Wazuh home
    lines = (home / "logs" / "mimizuku" / "anomaly.syslog").read_text().splitlines()
    assert s["syslog_file"] == str(home / "logs" / "mimizuku" / "anomaly.syslog")
    assert len(lines) == s["counts"]["syslog"]["selected"] > 0


def test_without_the_holdout_the_first_model_learns_the_attacks_it_should_show(tree, tmp_path, capfd):
    with_holdout = _copy(tree, tmp_path / "a")
    assert _run(capfd, with_holdout, "--day", LAST)[0] == 0
    home = _copy(tree, tmp_path / "b")
    code, s = _run(capfd, home, "--day", LAST, "--no-holdout")
    assert code == 0, s
    assert "holdout" not in s["counts"] and s["counts"]["excluded_flagged"] == 0
    assert len(_caught(home)) < len(_caught(with_holdout))


def test_second_run_has_a_model_and_no_holdout(tree, tmp_path, capfd):
    home = _copy(tree, tmp_path)
    assert _run(capfd, home, "--day", DAYS[-2], "--no-batch")[0] == 0
    code, s = _run(capfd, home, "--day", LAST)
    assert code == 0 and "holdout" not in s["counts"]


def test_day_anchors_the_window_nothing_after_it_is_read(tree, tmp_path, capfd):
    home = _copy(tree, tmp_path)
    day = DAYS[-4]
    code, s = _run(capfd, home, "--day", day, "--days", "5", "--no-batch")
    assert code == 0, s
    first = (date.fromisoformat(day) - timedelta(days=4)).isoformat()
    want = sum(1 for a in ALERTS if first <= a["timestamp"][:10] <= day)
    assert s["counts"]["alerts_read"] == want
    assert s["counts"]["days_with_alerts"] == 5 and s["counts"]["missing_days"] == []


def test_first_run_with_no_day_before_the_analysed_one_learns_it_and_says_so(tree, tmp_path, capfd):
    home = _copy(tree, tmp_path)
    code, s = _run(capfd, home, "--day", LAST, "--days", "1")
    assert "holdout" not in s["counts"]
    assert any("learns the day it analyses" in w for w in s.get("warnings", [])), s


def test_the_found_list_gives_an_update_its_why_and_what_it_updates():
    from mimizuku.nightly.job import found_anomalies

    base = {"timestamp": f"{LAST}T10:00:00.000+0000", "agent": {"name": "web-01"}, "detector": "context",
            "severity": "high", "anomaly": True}
    recs = [dict(base, id="a1", score=0.7, reasons=["source 203.0.113.9 produced 40 alerts"]),
            dict(base, id="a2", anomaly=False, repeat_of="a1", score=0.7, reasons=["repeats anomaly a1"]),
            dict(base, id="a3", score=0.9, episode={"of": "a1", "alerts": 3},
                 reasons=["update of anomaly a1: high now; 3 alerts", "source 203.0.113.9 produced 90 alerts"])]
    found = found_anomalies(recs)
    assert [f["reason"] for f in found] == ["source 203.0.113.9 produced 90 alerts",
                                            "source 203.0.113.9 produced 40 alerts"]
    assert found[0]["update_of"] == "a1" and "update_of" not in found[1]
    assert found[1]["repeats"] == 1
