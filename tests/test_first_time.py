"""Wazuh's first-time rules (10100 a user's first login on a host, 5403 their first sudo) are
judged by whether other users do the same there: the account catching up with its kind counts
less than a first time nobody's kind ever had on that host."""
from __future__ import annotations

import copy
import datetime as dt

import alert_factory as F
import pytest

from mimizuku import Mimizuku
from mimizuku.engine.detectors import context


def _quiet_host(days: int = 4):
    """db-02: hourly cron only, nobody logs in or runs sudo there."""
    out = []
    for d in range(days):
        for h in range(24):
            t = F.BASE + dt.timedelta(days=d, hours=h, minutes=5)
            out.append(F.command(t, ["/usr/sbin/logrotate", "/etc/logrotate.conf"], user="root",
                                 agent="db-02", agent_id="004"))
    return out


@pytest.fixture(scope="module")
def model():
    alerts = F.normal_fleet(days=4) + _quiet_host()
    alerts.sort(key=lambda a: a["timestamp"])
    return Mimizuku().fit(alerts)


def _first_login(agent: str, agent_id: str, user: str = "erin"):
    t = F.BASE + dt.timedelta(days=5, hours=11)
    return F.event(t, "10100", level=4, desc="First time user logged in.",
                   groups=["syslog", "fts", "authentication_success"], agent=agent, agent_id=agent_id,
                   srcip="10.1.2.9", user=user)


def _raw(model, alert) -> float:
    """The context detector's raw score of ``alert`` on a fresh copy of ``model`` (scores are
    memoised per situation, so each reading starts from the fitted state)."""
    d = copy.deepcopy(model).detectors_["context"]
    return float(d.raw_scores([d.key(alert)])[0])


def test_a_first_login_where_others_log_in_counts_less(model, monkeypatch):
    d = copy.deepcopy(model).detectors_["context"]
    busy = _first_login("web-01", "001")                 # deploy and alice log in there daily
    assert d.first_time_users_[("web-01", "authentication_success")] >= {"deploy", "alice"}
    assert d.novelty_of(d.key(busy)[:4]) == ("first", 2)
    on = _raw(model, busy)
    why = d.explain(d.key(busy), busy)
    assert any(r.startswith("a first time for 'erin' on 'web-01', but 2 other user(s)") for r in why)
    monkeypatch.setattr(context, "FIRST_TIME_RULES", {})  # switched off: any rule new to the agent
    assert d.novelty_of(d.key(busy)[:4])[0] == "rule"
    off = _raw(model, busy)
    assert off > 0 and on == pytest.approx(off / 3, rel=0.01)


def test_a_first_login_where_nobody_logs_in_is_judged_in_full(model, monkeypatch):
    d = copy.deepcopy(model).detectors_["context"]
    quiet = _first_login("db-02", "004")
    assert d.novelty_of(d.key(quiet)[:4])[0] == "rule"   # nobody's first time: no discount
    on = _raw(model, quiet)
    monkeypatch.setattr(context, "FIRST_TIME_RULES", {})
    assert on == pytest.approx(_raw(model, quiet))
    assert copy.deepcopy(model).score_records([quiet])[0]["anomaly"]


def test_the_users_own_history_does_not_count_as_others(model):
    """alice's own logins on web-01 are not "other users" for alice's first-time alert."""
    d = model.detectors_["context"]
    assert d.novelty_of(d.key(_first_login("web-01", "001", user="alice"))[:4]) == ("first", 1)


def test_who_did_what_travels_with_the_saved_model(model, tmp_path):
    model.save_model(tmp_path / "m")
    back = Mimizuku.load_model(tmp_path / "m")
    d = back.detectors_["context"]
    assert d.first_time_users_ == model.detectors_["context"].first_time_users_
    busy = _first_login("web-01", "001")
    assert d.novelty_of(d.key(busy)[:4]) == ("first", 2)
