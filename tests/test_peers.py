"""Peer groups (mimizuku.engine.peers) and the back-off to them: "first time on this host but
routine for its peers" is told apart from "never seen among its peers"."""
from __future__ import annotations

import datetime as dt

import alert_factory as F
import pytest

from mimizuku import Mimizuku
from mimizuku.engine.peers import PeerGroups

# -- the groups -----------------------------------------------------------------------------------

PROFILES = {
    "web-01": {"rule:31101": 400, "rule:31108": 50, "prog:nginx": 30, "dir:/var/www": 200, "rule:530": 90},
    "web-02": {"rule:31101": 380, "rule:31108": 45, "prog:nginx": 25, "dir:/var/www": 180, "rule:530": 85},
    "ci-01": {"prog:gcc": 900, "prog:make": 300, "prog:git": 200, "rule:80792": 1500, "rule:530": 90},
    "ci-02": {"prog:gcc": 800, "prog:make": 350, "prog:git": 150, "rule:80792": 1400, "rule:530": 80},
    "db-01": {"prog:pg_dump": 20, "dir:/var/lib/postgresql": 300, "rule:530": 90},
}


def test_agents_that_do_the_same_work_are_peers():
    pg = PeerGroups().fit(PROFILES)
    assert pg.peers("web-01") == {"web-02"} and pg.peers("ci-02") == {"ci-01"}
    assert pg.peers("db-01") == frozenset()          # unlike any other: no peers, back-off to the fleet
    assert pg.peers("never-seen") == frozenset() and pg.group("never-seen") is None
    # the label names what the group shares, not what every agent does (rule 530 is everywhere)
    assert "rule:530" not in pg.labels_[pg.group("web-01")]
    assert "peer group" in pg.describe_group("web-01") and "web-02" in pg.describe_group("web-01")


def test_groups_are_deterministic_and_travel_as_json():
    a = PeerGroups().fit(PROFILES).to_json()
    b = PeerGroups().fit(dict(reversed(list(PROFILES.items())))).to_json()
    assert a == b
    back = PeerGroups.from_json(a)
    assert back.to_json() == a and back.peers("web-02") == {"web-01"}
    with pytest.raises(ValueError):
        PeerGroups.from_json([{"id": 3, "members": ["x"]}])
    with pytest.raises(ValueError):
        PeerGroups(min_similarity=0).fit(PROFILES)


def test_agents_beyond_max_agents_join_the_nearest_group_or_stay_alone():
    pg = PeerGroups(max_agents=3).fit(PROFILES)
    assert set(pg.group_of_) == set(PROFILES)
    assert pg.peers("web-01") == {"web-02"}
    assert pg.peers("db-01") == frozenset()


# -- the back-off, through the model --------------------------------------------------------------

def _training():
    alerts = F.normal_fleet(days=5)
    for d in range(5):
        t = F.BASE + dt.timedelta(days=d, hours=12)
        # web-02 reloads nginx daily and its rule fires; web-01 (its peer) never did in training
        alerts.append(F.command(t, ["/usr/sbin/nginx", "-s", "reload"], user="root", agent="web-02", agent_id="002"))
        alerts.append(F.event(t, "31151", level=5, desc="nginx reloaded", groups=["web", "nginx"],
                              agent="web-02", agent_id="002"))
    alerts.sort(key=lambda a: a["timestamp"])
    return alerts


@pytest.fixture(scope="module")
def models():
    """The model with peer groups, and the same model fitted with the back-off switched off."""
    on = Mimizuku().fit(_training())
    mp = pytest.MonkeyPatch()
    mp.setattr(PeerGroups, "peers", lambda self, agent: frozenset())
    try:
        off = Mimizuku().fit(_training())
    finally:
        mp.undo()
    for d in off.detectors_.values():   # and no peers when scoring either
        d.use_peer_groups(None)
    return on, off


def _score(model, alert, detector):
    """(the detector's raw score — the calibrated one is a step function of it, and saturates on a
    training set this small — and the alert's record)."""
    rec = model.score_records([alert])[0]
    d = model.detectors_[detector]
    return float(d.raw_scores([d.key(alert)])[0]), rec


def test_the_model_learns_web_servers_as_peers(models):
    on, _ = models
    assert on.peer_groups().peers("web-01") == {"web-02"}
    assert on.manifest()["peer_groups"] == on.peer_groups().to_json()


def test_a_command_routine_for_the_peers_counts_less_than_one_they_never_ran(models):
    on, off = models
    t = F.BASE + dt.timedelta(days=6, hours=12)
    routine = F.command(t, ["/usr/sbin/nginx", "-s", "reload"], user="root", agent="web-01", agent_id="001")
    s_on, rec = _score(on, routine, "commands")
    s_off, _ = _score(off, routine, "commands")
    assert s_on < s_off - 0.1            # fails with the back-off switched off
    # never seen among web-01's peers: judged in full, as without peers
    novel = F.command(t, ["/usr/bin/ncat", "-lvp", "4444"], user="root", agent="web-01", agent_id="001")
    n_on, rec = _score(on, novel, "commands")
    n_off, _ = _score(off, novel, "commands")
    assert n_on > s_on and n_on == pytest.approx(n_off, abs=0.05)
    assert rec["anomaly"]
    assert any("never seen among its peers" in r for r in rec["reasons"])


def test_a_rule_routine_for_the_peers_counts_less_in_the_context_detector(models):
    on, off = models
    t = F.BASE + dt.timedelta(days=6, hours=12)
    alert = F.event(t, "31151", level=5, desc="nginx reloaded", groups=["web", "nginx"], agent="web-01", agent_id="001")
    s_on, rec = _score(on, alert, "context")
    s_off, _ = _score(off, alert, "context")
    assert s_on == pytest.approx(s_off / 2, rel=0.2)   # one peer fired it: halved (fails when switched off)
    d = on.detectors_["context"]
    key = d.key(alert)
    assert d.novelty_of(key[:4]) == ("rule", 1)
    # the same rule on db-01, whose peers (none) never fired it: no discount
    other = F.event(t, "31151", level=5, desc="nginx reloaded", groups=["web", "nginx"], agent="db-01", agent_id="003")
    assert d.novelty_of(d.key(other)[:4]) == ("rule", 0)
    why = d.explain(key, alert)
    assert any("routine for its peers" in r and "web-02" in r for r in why)


# -- shown where an analyst looks -----------------------------------------------------------------

def test_status_and_report_show_the_groups(models, tmp_path):
    from mimizuku.outputs.report import render_report
    from mimizuku.serve import status

    on, _ = models
    on.save_model(tmp_path / "model")
    paths = {"socket": tmp_path / "none.sock", "model_dir": tmp_path / "model",
             "spool_dir": tmp_path / "spool", "state_dir": tmp_path / "state"}
    st = status.from_disk(paths)
    assert st["peer_groups"] == on.peer_groups().to_json()
    text = "\n".join(status.render(st))
    assert "peer groups:" in text and "web-01, web-02" in text
    groups = on.peer_groups().to_json() + [{"id": "g9", "members": ["<b>evil</b>", "x"], "label": []}]
    page = render_report(on.score_records(_training()[:50]), peer_groups=groups)
    assert "<h2>Peer groups</h2>" in page and "web-01, web-02" in page
    assert "<b>evil</b>" not in page and "&lt;b&gt;evil&lt;/b&gt;" in page
