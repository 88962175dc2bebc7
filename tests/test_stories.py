"""Stories: the anomalies of one agent and account are raised once, then only with news."""
from __future__ import annotations

import copy
import datetime as dt

import alert_factory as F
import pytest

from mimizuku import Mimizuku
from mimizuku.core import fields
from mimizuku.core.severity import SEVERITY_RANK
from mimizuku.engine import stories
from mimizuku.engine import stream_snapshot as snap
from mimizuku.engine.stories import (
    BAND_SETTLE,
    EFFECT_SETTLE,
    KIND_SETTLE,
    RESTART_SETTLE,
    StoryWindows,
    is_effect,
    judge_alert,
    story_key,
)
from mimizuku.serve.reload import carry_stream_state

# --- the windows ------------------------------------------------------------------------------

K = ("web-01", "www-data")
CMD = ("commands", "80792")


def test_a_story_folds_what_brings_no_news_until_a_pause():
    w = StoryWindows(window=60)
    assert w.judge(K, 100, "high", CMD, "a1", "T100") is None            # opens
    st = w.judge(K, 130, "high", CMD, "a2")
    assert st is not None and st.opener == "a1" and st.anomalies == 2 and st.since == "T100"
    assert w.judge(K, 150, "medium", CMD, "a3").opener == "a1"           # a lower band: no news
    assert w.judge(("web-01", "deploy"), 151, "high", CMD, "b1") is None  # another account: its own
    assert w.judge(("db-01", "www-data"), 152, "high", CMD, "c1") is None  # another agent: its own
    assert w.judge(K, 300, "high", CMD, "a4") is None                    # a pause longer than 60 s
    assert w.judge(K, 310, "high", CMD, "a5").opener == "a4"
    assert w.story(K).duration == 10 and w.story(("nobody", None)) is None


@pytest.mark.parametrize("news", ["band", "detector", "rule", "technique"])
def test_news_is_raised_and_joins_the_story(news):
    w = StoryWindows(window=60)
    assert w.judge(K, 0, "medium", CMD, "a1", technique="T1059.004") is None
    band, kind, tech = "medium", CMD, "T1059.004"
    if news == "band":
        band = "high"
    elif news == "detector":
        kind = ("files", "80792")
    elif news == "rule":
        kind = ("commands", "5402")
    else:
        tech = "T1003.008"
    t = KIND_SETTLE + 5                                                     # after one action's burst
    assert w.judge(K, t, band, kind, "a2", technique=tech) is None        # raised
    assert w.judge(K, t + 1, band, kind, "a3", technique=tech).opener == "a1"  # the same again: folded
    assert w.story(K).anomalies == 3 and w.story(K).told == t


def test_a_new_kind_within_seconds_of_a_raise_is_the_same_action(monkeypatch):
    """useradd is rules 5901, 5902 and file changes within a second: told in the story; a higher
    band once ``BAND_SETTLE`` passed or a new technique that close is still raised, and so is a
    new kind once it settled."""
    useradd, files = ("context", "5902"), ("files", "554")
    w = StoryWindows(window=60)
    assert w.judge(K, 0, "medium", ("context", "5901"), "a1") is None
    assert w.judge(K, 1, "medium", useradd, "a2").opener == "a1"          # a new rule, 1 s later
    assert w.judge(K, 2, "low", files, "a3").opener == "a1"               # a new detector, 2 s later
    assert w.judge(K, 3, "high", files, "a4") is None                     # a higher band: raised
    assert w.judge(K, 4, "high", ("files", "550"), "a5").opener == "a1"   # settling from the raise at 3
    assert w.judge(K, 5, "high", files, "a6", technique="T1098.004") is None   # a new technique
    assert w.judge(K, 5 + KIND_SETTLE, "high", ("commands", "80792"), "a7") is None   # settled
    assert w.story(K).anomalies == 7
    monkeypatch.setattr(stories, "KIND_SETTLE", 0)                        # switched off: every new kind
    off = StoryWindows(window=60)
    assert off.judge(K, 0, "medium", ("context", "5901"), "b1") is None
    assert off.judge(K, 1, "medium", useradd, "b2") is None


def test_a_higher_band_within_seconds_of_a_raise_is_the_same_action(monkeypatch):
    """``sudo reboot``: sudo's line and the audit trail's sudo and reboot within 50 ms, scored
    apart (low, medium, critical): raised once, the story's band the highest of them; a higher
    band after ``BAND_SETTLE`` is news, a higher-band effect that close folds too. Switched off,
    each climb is raised."""
    host = ("wazuh-manager", None)
    w = StoryWindows(window=900)
    assert w.judge(K, 0, "low", CMD, "a1", agent="m") is None
    assert w.judge(K, 0, "medium", ("commands", "5402"), "a2", agent="m").opener == "a1"
    assert w.judge(K, 0, "critical", CMD, "a3", agent="m").opener == "a1"
    assert w.story(K).top == SEVERITY_RANK["critical"] and w.story(K).told == 0
    assert w.judge(host, 1, "critical", ("context", "502"), "e1", agent="m", effect=True).opener == "a1"
    later = StoryWindows(window=900)
    assert later.judge(K, 0, "low", CMD, "b1") is None
    assert later.judge(K, BAND_SETTLE, "medium", CMD, "b2") is None          # settled: news
    assert later.judge(K, BAND_SETTLE + 1, "high", CMD, "b3").opener == "b1"  # settling from b2
    monkeypatch.setattr(stories, "BAND_SETTLE", 0)                        # switched off
    off = StoryWindows(window=900)
    assert off.judge(K, 0, "low", CMD, "c1") is None
    assert off.judge(K, 0, "medium", ("commands", "5402"), "c2") is None


def test_the_agent_starting_after_a_reboot_joins_for_longer_than_a_file_change():
    """The manager reports itself started 78 s after the admin's ``sudo reboot`` (raised): told in
    that story; a file changed as long after the last anomaly there is news (an attacker's next
    step); so is the start once ``RESTART_SETTLE`` passed."""
    def ossec(t, rid, desc):
        return F.event(F.BASE + dt.timedelta(seconds=t), rid, desc=desc, groups=["ossec", "pci_dss_10.6.1"],
                       agent="wazuh-manager", agent_id="000")

    reboot = F.command(F.BASE, ["sudo", "reboot"], user="alice", agent="wazuh-manager", agent_id="000")
    w = StoryWindows(window=900)
    assert judge_alert(w, reboot, "high", "commands", "r1") is None
    st = judge_alert(w, ossec(78, "502", "Wazuh server started."), "medium", "context", "s1")
    assert st is not None and st.opener == "r1"
    assert EFFECT_SETTLE < 78 < RESTART_SETTLE
    change = F.fim(F.BASE + dt.timedelta(seconds=78 + EFFECT_SETTLE), "/etc/passwd", agent="wazuh-manager",
                   agent_id="000")
    assert judge_alert(w, change, "medium", "files", "f1") is None            # a file: news
    late = StoryWindows(window=900)
    assert judge_alert(late, reboot, "high", "commands", "r2") is None
    assert judge_alert(late, ossec(RESTART_SETTLE + 1, "502", "Wazuh server started."), "medium", "context",
                       "s2") is None
    assert fields.is_lifecycle(["ossec", "pci_dss_10.6.1"]) and not fields.is_lifecycle(["ossec", "attacks"])
    assert not fields.is_lifecycle(["ossec", "syscheck"]) and not fields.is_lifecycle(["ossec", "rootcheck"])


def test_an_effect_on_the_host_joins_the_story_of_its_last_anomaly(monkeypatch):
    """deploy runs ``crontab -e`` on web-01 (raised); cron reports the crontab changed 30 s later
    with no account, dpkg and FIM report what an upgrade changed: effects on the host, told in
    the story of its last anomaly, each one extending the chain. A higher band or a new technique
    is raised, so is an action (not an effect), and an effect once the host was quiet for
    ``EFFECT_SETTLE``."""
    host = ("web-01", None)
    w = StoryWindows(window=900)
    assert w.judge(K, 0, "high", CMD, "a1", agent="web-01") is None
    st = w.judge(host, 30, "medium", ("context", "2832"), "e1", agent="web-01", effect=True)
    assert st is not None and st.opener == "a1" and st.anomalies == 2 and w.owner("web-01") == K
    e2 = w.judge(host, 30 + EFFECT_SETTLE - 1, "low", ("files", "550"), "e2", agent="web-01", effect=True)
    assert e2.opener == "a1"
    assert w.story(host) is None                                          # joined K's story, opened none
    t = 30 + EFFECT_SETTLE                                                # after e2, in the chain
    assert w.judge(host, t, "critical", ("files", "550"), "e3", agent="web-01", effect=True) is None   # a higher band
    assert w.owner("web-01") == host
    assert w.judge(("db-01", None), t + 1, "low", ("context", "2904"), "d1", agent="db-01", effect=True) is None
    assert w.judge(("web-01", "alice"), t + 5, "low", ("context", "5501"), "n1", agent="web-01") is None  # an action
    assert w.judge(K, t + 20, "low", CMD, "t1", agent="web-01", effect=True, technique="T1053.003") is None
    assert w.judge(K, t + 20 + EFFECT_SETTLE, "low", ("context", "2902"), "q1", agent="web-01",
                   effect=True) is None                                   # a quiet spell: its own news
    assert w.judge(("web-01", "old"), 5, "low", CMD, "o1", agent="web-01") is None   # replayed, older
    assert w.owner("web-01") == K                                         # the host's last anomaly stays
    assert is_effect(["ossec", "syscheck", "syscheck_entry_modified"]) and is_effect(("syslog", "dpkg"))
    assert not is_effect(["ossec", "attacks"]) and not is_effect(["syslog", "sshd"]) and not is_effect([])
    monkeypatch.setattr(stories, "EFFECT_SETTLE", 0)                      # switched off
    off = StoryWindows(window=900)
    assert off.judge(K, 0, "high", CMD, "b1", agent="web-01") is None
    assert off.judge(host, 30, "medium", ("context", "2832"), "b2", agent="web-01", effect=True) is None


def test_no_time_an_older_alert_or_a_zero_window_never_folds():
    w = StoryWindows(window=60)
    assert w.judge(K, None, "low", CMD, "a1") is None
    assert w.judge(K, None, "low", CMD, "a2") is None
    assert w.judge(K, 500, "low", CMD, "a3") is None
    assert w.judge(K, 400, "low", CMD, "a4") is None                     # replayed out of order
    assert w.judge(K, 510, "low", CMD, "a5").opener == "a3"              # the open story is kept
    off = StoryWindows(window=0)
    assert all(off.judge(K, t, "low", CMD, f"x{t}") is None for t in range(10))


def test_stories_are_bounded_and_survive_json():
    w = StoryWindows(window=60, max_entries=100)
    for i in range(1000):
        w.judge(("agent", str(i)), 10, "low", CMD, f"a{i}", technique="T1")
    assert len(w) <= 100
    back = StoryWindows.from_json(w.to_json(max_keys=50))
    assert len(back) == 50 and back.window == 60
    st = back.story(("agent", "999"))
    assert st == w.story(("agent", "999"))
    assert back.judge(("agent", "999"), 20, "low", CMD, "y").opener == "a999"
    # the agents a person's story reached survive; a snapshot from before them (nine columns) loads
    w.judge((None, "alice"), 10, "low", CMD, "p1", agent="web-01")
    w.judge((None, "alice"), 11, "low", CMD, "p2", agent="db-01")
    doc = w.to_json(max_keys=5)
    assert StoryWindows.from_json(doc).story((None, "alice")).agents == {"web-01", "db-01"}
    old = {"window": 60, "open": [row[:9] for row in doc["open"]]}
    assert StoryWindows.from_json(old).story((None, "alice")).agents == frozenset()
    # when the last raise came survives; a snapshot from before it (ten columns) reads the start
    w.judge((None, "alice"), 12 + KIND_SETTLE, "low", ("files", "554"), "p3", agent="db-01")
    doc = w.to_json(max_keys=5)
    assert StoryWindows.from_json(doc).story((None, "alice")).told == 12 + KIND_SETTLE
    old = {"window": 60, "open": [row[:10] for row in doc["open"]]}
    assert StoryWindows.from_json(old).story((None, "alice")).told == 10
    # each agent's last anomaly survives (effects go on joining its story); older snapshots have none
    w.judge((None, "alice"), 13 + KIND_SETTLE, "low", ("files", "550"), "p4", agent="db-01", effect=True)
    doc = w.to_json(max_keys=5)
    assert StoryWindows.from_json(doc).owner("db-01") == (None, "alice")
    assert StoryWindows.from_json({k: v for k, v in doc.items() if k != "last_on"}).owner("db-01") is None
    with pytest.raises(ValueError):
        StoryWindows.from_json(dict(doc, last_on=[[["x", None], "db-01", "soon"]]))
    bad = {"window": 60, "open": [row[:10] + [9] for row in doc["open"]]}      # raised before it began
    with pytest.raises(ValueError):
        StoryWindows.from_json(bad)
    with pytest.raises((TypeError, ValueError)):
        StoryWindows.from_json({"window": 60, "open": [[["a", "b"], 1, "T", 0, 0, 0, 1, [], []]]})


def _as_person(alert, auid: str):
    """``alert`` run by someone who logged in as ``auid`` (auditd's enriched AUID)."""
    alert["full_log"] += f' AUID="{auid}"'
    alert["data"]["audit"]["auid"] = "1001"
    return alert


def test_the_account_is_the_login_user_else_the_user_else_the_source():
    t = F.BASE
    assert story_key(F.command(t, ["/usr/bin/id"], user="www-data")) == ("web-01", "www-data")
    # a person's story crosses hosts; root and a bare auid are nobody in particular
    assert story_key(_as_person(F.command(t, ["/usr/bin/id"], user="root"), "alice")) == (None, "alice")
    assert story_key(_as_person(F.command(t, ["/usr/bin/id"], user="root", agent="db-01"), "alice")) == (None, "alice")
    assert story_key(_as_person(F.command(t, ["/usr/bin/id"], user="deploy"), "root")) == ("web-01", "root")
    sudo = F.event(t, "5402", groups=("syslog", "sudo"))
    sudo["data"] = {"srcuser": "alice", "dstuser": "root", "command": "/usr/sbin/reboot"}
    assert story_key(sudo) == (None, "alice")                      # who invoked sudo is a person too
    sudo["rule"]["groups"] = ["syslog"]
    assert story_key(sudo)[0] == "web-01"
    bare = F.command(t, ["/usr/bin/id"], user="deploy")
    bare["data"]["audit"]["auid"] = "1001"
    assert story_key(bare) == ("web-01", "1001")
    assert story_key(F.event(t, "31101", srcip="203.0.113.9")) == ("web-01", "203.0.113.9")
    assert story_key(F.event(t, "1002")) == ("web-01", None)


# --- in the engine ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    return Mimizuku(contamination=0.001, n_neighbors=5).fit(F.normal_fleet(days=4))


def _intrusion(t0: dt.datetime):
    """www-data on web-01 runs five commands never seen there, drops a web shell, and deploy on
    db-01 runs one: the web-01 commands are one story, the file and db-01 are news."""
    cmds = [["/usr/bin/id"], ["/usr/bin/uname", "-a"], ["/usr/bin/hostname"], ["/usr/bin/nproc"],
            ["/usr/bin/lscpu"]]
    alerts = [F.command(t0 + dt.timedelta(seconds=20 * i), c, user="www-data") for i, c in enumerate(cmds)]
    alerts.append(F.fim(t0 + dt.timedelta(seconds=130), "/var/www/html/up.php", event="added", user="www-data",
                        process="php-fpm"))
    alerts.append(F.command(t0 + dt.timedelta(seconds=140), ["/usr/bin/whoami"], user="deploy", agent="db-01",
                            agent_id="003"))
    alerts.append(F.command(t0 + dt.timedelta(minutes=30), ["/usr/bin/lsblk"], user="www-data"))  # after a pause
    return alerts


def test_an_intrusion_is_one_story_with_news_raised(model):
    recs = model.score_records(_intrusion(F.BASE + dt.timedelta(days=5, hours=10)))
    assert all(r["scores"][r["detector"]] >= r["threshold"] for r in recs)   # every one is above its threshold
    raised = [r["anomaly"] for r in recs]
    assert raised[0] and raised[5] and raised[6] and raised[7]               # opener, new kind, other host, pause
    folded = [r for r in recs[1:5] if not r["anomaly"]]
    assert len(folded) >= 3                                                  # the web-01 commands after the first
    opener = recs[0]["id"]
    for r in folded:
        assert r["repeat_of"] == opener and r["severity"] == "none" and r["story"]["of"] == opener
        assert r["reasons"][0].startswith(f"part of the story of 'web-01' as 'www-data' that anomaly {opener}")
        assert len(r["reasons"]) > 1                                         # its own reasons are kept
    assert [r["story"]["anomalies"] for r in folded] == sorted(r["story"]["anomalies"] for r in folded)
    # news is raised as the story's next chapter, and its Wazuh event says so
    from mimizuku.delivery.events import build_payload

    news = recs[5]
    assert news["detector"] == "files" and news["story"]["of"] == opener and "repeat_of" not in news
    # what is new comes first (the summary and the event's first reason), the story after it
    assert not news["reasons"][0].startswith("news in the story")
    assert news["reasons"][-1].startswith(f"news in the story of 'web-01' as 'www-data' that anomaly {opener}")
    assert build_payload(news)["mimizuku"]["story"]["of"] == opener
    assert "story" not in recs[0] and "story" not in recs[6] and "story" not in recs[7]
    # the DataFrame of anomalies is what was raised
    assert len(model.predict(_intrusion(F.BASE + dt.timedelta(days=5, hours=10)))) == sum(raised)


def test_a_persons_roll_out_across_hosts_is_one_story(model, monkeypatch):
    """alice runs the same new command on three hosts within a minute (a roll-out): one story
    across agents, raised once, naming the hosts; a file change she makes is news. Keyed by agent
    (the person's story switched off), each host raises its own."""
    t0 = F.BASE + dt.timedelta(days=5, hours=10)
    hosts = [("web-01", "001"), ("db-01", "003"), ("web-02", "002")]

    def roll_out():
        out = [_as_person(F.command(t0 + dt.timedelta(seconds=10 * i), ["/usr/bin/ansible-playbook", "users.yml"],
                                    user="root", agent=a, agent_id=i_d), "alice")
               for i, (a, i_d) in enumerate(hosts)]
        f = F.fim(t0 + dt.timedelta(seconds=40), "/etc/sudoers.d/alice", event="added", user="root",
                  process="python3", agent="db-01", agent_id="003")
        f["syscheck"]["audit"]["login_user"] = {"id": "1001", "name": "alice"}
        return out + [f]

    model.start_stream()
    recs = model.score_records(roll_out())
    assert all(r["scores"][r["detector"]] >= r["threshold"] for r in recs)
    assert [r["anomaly"] for r in recs] == [True, False, False, True]
    opener = recs[0]["id"]
    assert recs[2]["repeat_of"] == opener and recs[2]["story"]["agents"] == ["db-01", "web-01", "web-02"]
    assert recs[1]["reasons"][0].startswith(f"part of the story of 'alice' across agents that anomaly {opener}")
    assert recs[3]["story"]["of"] == opener and recs[3]["detector"] == "files"   # news: another detector
    from mimizuku.delivery.events import build_payload
    assert build_payload(recs[2])["mimizuku"]["story"]["agents"] == ["db-01", "web-01", "web-02"]

    import mimizuku.engine.stories as stories
    monkeypatch.setattr(stories, "SHARED_LOGINS", frozenset({"root", "alice"}))  # alice is nobody in particular
    model.start_stream()
    assert [r["anomaly"] for r in model.score_records(roll_out())] == [True, True, True, True]


def test_without_stories_every_anomaly_is_raised(model, monkeypatch):
    monkeypatch.setattr(model, "story_window", 0)
    recs = model.score_records(_intrusion(F.BASE + dt.timedelta(days=5, hours=10)))
    assert all(r["anomaly"] for r in recs) and not any("story" in r for r in recs)


def test_stories_go_on_through_a_reload_and_the_snapshot(model, tmp_path):
    alerts = _intrusion(F.BASE + dt.timedelta(days=5, hours=10))
    old = copy.deepcopy(model)
    first = list(old.iter_records(alerts[:2]))
    opener = first[0]["id"]
    for new in (copy.deepcopy(model), copy.deepcopy(model)):
        new.start_stream()
        assert not list(new.iter_records(alerts[2:3], new_stream=False))[0].get("repeat_of")  # alone: raised
    reloaded = copy.deepcopy(model)
    reloaded.start_stream()
    carry_stream_state(old, reloaded)
    assert list(reloaded.iter_records(alerts[2:3], new_stream=False))[0]["repeat_of"] == opener
    path = tmp_path / snap.FILE_NAME
    assert snap.save_snapshot(path, old) > 0
    restored = copy.deepcopy(model)
    restored.start_stream()
    assert "stories" in snap.import_snapshot(restored, snap.load_snapshot(path))
    assert list(restored.iter_records(alerts[2:3], new_stream=False))[0]["repeat_of"] == opener


def test_training_still_excludes_story_members(model):
    """A folded anomaly stays flagged: the nightly anomaly filter (judge_batch) never learns it."""
    alerts = _intrusion(F.BASE + dt.timedelta(days=5, hours=10))
    verdicts = model.judge_batch(alerts)
    assert all(s.verdict.flagged for s in verdicts)


def test_a_file_changed_right_after_an_anomaly_on_its_host_is_told_in_its_story(model, monkeypatch):
    """deploy's ``crontab -e`` on web-01 is raised; root's change to an nginx file 50 s later is an
    effect on the host (FIM): told in deploy's story, with the reason; 200 s later it is raised."""
    t0 = F.BASE + dt.timedelta(days=5, hours=10)

    def alerts():
        return [F.command(t0, ["/usr/bin/crontab", "-e"], user="deploy"),
                F.fim(t0 + dt.timedelta(seconds=50), "/etc/nginx/conf.d/shop.conf", user="root", process="vim"),
                F.fim(t0 + dt.timedelta(seconds=200), "/etc/nginx/conf.d/shop2.conf", user="root", process="vim")]

    model.start_stream()
    recs = model.score_records(alerts())
    assert all(r["scores"][r["detector"]] >= r["threshold"] for r in recs)
    assert [r["anomaly"] for r in recs] == [True, False, True]
    assert recs[1]["repeat_of"] == recs[0]["id"] and recs[1]["story"]["of"] == recs[0]["id"]
    assert recs[1]["reasons"][0].startswith("an effect on its host right after an anomaly there: part of the story "
                                            f"of 'web-01' as 'deploy' that anomaly {recs[0]['id']}")
    monkeypatch.setattr(stories, "EFFECT_SETTLE", 0)                      # switched off: raised
    model.start_stream()
    assert [r["anomaly"] for r in model.score_records(alerts())][:2] == [True, True]
