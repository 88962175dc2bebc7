"""Batch correlation: alerts tied to an anomaly by session, process, login, ssh hop or source."""
import copy
import datetime as dt
import itertools

import alert_factory as F

from mimizuku.core import fields
from mimizuku.engine.correlate import build_ties, correlate
from mimizuku.sources.timestamps import parse_timestamp

_n = itertools.count()


def _rec(t, score=0.01, *, anomaly=False, severity="none", agent="web-01", agent_ip="10.0.0.2", rule="80792",
         groups=("audit", "audit_command"), reasons=(), **f):
    i = next(_n)
    return {"id": f"r{i}", "timestamp": F.ts(F.BASE + dt.timedelta(seconds=t)),
            "agent": {"name": agent, "id": "001", "ip": agent_ip},
            "rule": {"id": rule, "groups": list(groups)}, "detector": "context", "score": score,
            "score_pct": round(100 * score), "threshold": 0.5, "anomaly": anomaly, "severity": severity,
            "reasons": list(reasons), "fields": {k: str(v) for k, v in f.items()}}


def _seed(t, **kw):
    return _rec(t, 0.9, anomaly=True, severity="high", reasons=["odd command"], **kw)


def _login(t, rule="5501", user="bob", **kw):
    return _rec(t, rule=rule, groups=("pam", "syslog", "authentication_success"), user=user, **kw)


def _by_id(out):
    return {r["id"]: r for r in out}


def test_a_session_is_lifted_under_the_threshold_and_other_sessions_are_not():
    s1 = [_rec(0, command="-bash", session=7, pid=100, ppid=1, login_user="bob"),
          _rec(2, command="sudo -i", session=7, pid=101, ppid=100, login_user="bob"),
          _seed(5, command="cat /etc/shadow", session=7, pid=102, ppid=101, login_user="bob")]
    other = _rec(4, command="ls", session=8, pid=200, ppid=1, login_user="bob")
    recs = s1 + [other]
    before = copy.deepcopy(recs)
    out = _by_id(correlate(recs))
    assert recs == before  # inputs untouched
    for r in s1[:2]:
        got = out[r["id"]]
        assert got["related_to"] == s1[2]["id"]
        assert abs(got["score"] - 0.9 * 0.9 * 0.5) < 1e-9   # decay x seed x threshold: ranks, not flagged
        assert not got["anomaly"] and got["severity"] == "none"
    assert "related_to" not in out[other["id"]] and out[other["id"]]["score"] == 0.01


def test_flag_related_turns_lifted_alerts_into_anomalies_with_the_tie_in_the_reason():
    recs = [_rec(0, command="-bash", session=7, pid=100, ppid=1, login_user="bob"),
            _seed(5, command="cat /etc/shadow", session=7, pid=102, ppid=100, login_user="bob"),
            _rec(6, command="id", session=7, pid=103, ppid=100, login_user="bob",
                 reasons=["ignored: user 'bob' is in ignore_users"])]
    out = correlate(recs, flag_related=True)
    assert out[0]["anomaly"] and abs(out[0]["score"] - 0.81) < 1e-9 and out[0]["severity"] != "none"
    reason = out[0]["reasons"][0]
    assert recs[1]["id"] in reason and "odd command" in reason
    assert reason.startswith(("same login session", "same process tree"))
    assert not out[2]["anomaly"]  # an ignored alert is lifted in rank but never flagged


def test_process_tree_runs_up_and_down_from_the_seed_but_not_to_siblings():
    # a daemon (no login session): the web server spawns two shells; the second is the odd one
    parent = _rec(0, command="php-fpm: pool www", pid=50, ppid=1)
    sibling = _rec(1, command="convert a.jpg b.jpg", pid=51, ppid=50)
    seed = _seed(2, command="sh -c id", pid=52, ppid=50)
    child = _rec(3, command="wget http://x/y", pid=53, ppid=52)
    dropped = _rec(4, path="/tmp/y", event="added", pid=53, ppid=52, rule="554", groups=("syscheck",))
    out = _by_id(correlate([parent, sibling, seed, child, dropped]))
    assert out[parent["id"]].get("related_to") == seed["id"]
    assert out[child["id"]].get("related_to") == seed["id"]
    assert out[dropped["id"]].get("related_to") == seed["id"]   # the file change made by the child
    assert "related_to" not in out[sibling["id"]]


def test_a_seed_with_a_big_subtree_does_not_lift_it():
    seed = _seed(0, command="apt-get upgrade", pid=10, ppid=1)
    kids = [_rec(1 + i / 100, path=f"/usr/lib/x{i}.so", event="modified", pid=1000 + i, ppid=10, rule="550",
                 groups=("syscheck",)) for i in range(60)]
    few = _seed(0, command="sh -c x", pid=20, ppid=1, agent="db-01")
    few_kids = [_rec(1, command="id", pid=21, ppid=20, agent="db-01")]
    out = _by_id(correlate([seed] + kids + [few] + few_kids))
    assert not any("related_to" in out[k["id"]] for k in kids)
    assert out[few_kids[0]["id"]].get("related_to") == few["id"]


def test_login_lines_tie_to_the_one_running_session_of_that_user():
    session = [_rec(10, command="-bash", session=7, pid=100, ppid=1, login_user="bob"),
               _seed(20, command="cat /etc/shadow", session=7, pid=101, ppid=100, login_user="bob")]
    accepted = _rec(9, rule="5715", groups=("sshd", "authentication_success"), user="bob", srcip="203.0.113.5")
    opened = _login(10)
    failed = _rec(8, rule="5760", groups=("sshd", "authentication_failed"), user="bob", srcip="10.1.1.1")
    someone_else = _login(10, user="carol")
    out = _by_id(correlate(session + [accepted, opened, failed, someone_else]))
    assert out[accepted["id"]].get("related_to") == session[1]["id"]
    assert out[opened["id"]].get("related_to") == session[1]["id"]
    assert "related_to" not in out[failed["id"]]          # a failure is not a line of the login
    assert "related_to" not in out[someone_else["id"]]


def test_login_lines_are_left_alone_when_two_sessions_of_the_user_run():
    recs = [_rec(10, command="-bash", session=7, pid=100, ppid=1, login_user="bob"),
            _seed(20, command="cat /etc/shadow", session=7, pid=101, ppid=100, login_user="bob"),
            _rec(11, command="-bash", session=9, pid=300, ppid=1, login_user="bob"),
            _rec(21, command="ls", session=9, pid=301, ppid=300, login_user="bob")]
    opened = _login(15)
    out = _by_id(correlate(recs + [opened]))
    assert "related_to" not in out[opened["id"]]


def test_an_ssh_hop_ties_the_login_on_the_next_host_to_the_session_it_came_from():
    bastion = [_rec(0, command="-bash", session=7, pid=100, ppid=1, login_user="dave", agent="bastion",
                    agent_ip="10.0.0.30"),
               _rec(3, command="ssh db-01", session=7, pid=101, ppid=100, login_user="dave", agent="bastion",
                    agent_ip="10.0.0.30")]
    db = [_rec(5, rule="5715", groups=("sshd", "authentication_success"), user="dave", srcip="10.0.0.30",
               agent="db-01", agent_ip="10.0.0.21"),
          _rec(6, command="-bash", session=3, pid=500, ppid=1, login_user="dave", agent="db-01", agent_ip="10.0.0.21"),
          _seed(9, command="chmod u+s /usr/local/bin/.sh", session=3, pid=501, ppid=500, login_user="dave",
                agent="db-01", agent_ip="10.0.0.21")]
    out = _by_id(correlate(bastion + db))
    for r in bastion + db[:2]:
        assert out[r["id"]].get("related_to") == db[2]["id"], r["fields"]


def test_a_public_source_burst_is_tied_while_gaps_are_short():
    burst = [_rec(i * 2, rule="5710", groups=("sshd", "invalid_login"), srcip="185.220.101.7", srcuser=f"u{i}")
             for i in range(30)]
    success = _seed(62, rule="5715", groups=("sshd", "authentication_success"), srcip="185.220.101.7")
    later = _rec(62 + 400, rule="5710", groups=("sshd",), srcip="185.220.101.7")      # gap > max_gap
    private = [_rec(10, rule="5710", groups=("sshd",), srcip="10.9.9.9"),
               _seed(12, rule="5715", groups=("sshd",), srcip="10.9.9.9")]
    other_agent = _rec(30, rule="5710", groups=("sshd",), srcip="185.220.101.7", agent="db-01")
    out = _by_id(correlate(burst + [success, later, other_agent] + private, max_gap=300))
    assert all(out[r["id"]].get("related_to") == success["id"] for r in burst)
    assert "related_to" not in out[later["id"]]
    assert "related_to" not in out[other_agent["id"]]
    assert "related_to" not in out[private[0]["id"]]     # internal addresses are shared, not an actor


def test_a_web_request_for_a_dropped_file_ties_it_and_the_requests_source_to_the_file():
    """A web shell: probes from an address, a .php file dropped under the web root (the anomaly),
    the request for it from the same address. The request is tied to the file by its path, and
    the probes through their source; a request for another file, or before the drop, is not."""
    ip = "58.158.70.176"
    probes = [_rec(i * 3, rule="31101", groups=("web", "accesslog"), srcip=ip, url=u)
              for i, u in enumerate(("/.env", "/upload.php", "/admin/upload"))]
    before = _rec(20, rule="31108", groups=("web", "accesslog"), srcip="203.0.113.9", url="/uploads/2025/x_41.php")
    drop = _seed(90, rule="554", groups=("ossec", "syscheck"), path="/var/www/app/uploads/2025/x_41.php",
                 event="added")
    use = _rec(200, rule="31108", groups=("web", "accesslog"), srcip=ip, url="/uploads/2025/x_41.php?c=id%3Buname")
    other = _rec(210, rule="31108", groups=("web", "accesslog"), srcip="198.51.100.4", url="/uploads/2025/y_41.php")
    elsewhere = _rec(220, rule="31108", groups=("web", "accesslog"), srcip="198.51.100.5",
                     url="/uploads/2025/x_41.php", agent="web-02")
    suffix = _rec(230, rule="31108", groups=("web", "accesslog"), srcip="198.51.100.6", url="/2025/x_41.php")
    partial = _rec(240, rule="31108", groups=("web", "accesslog"), srcip="198.51.100.7", url="/5/x_41.php")
    out = _by_id(correlate(probes + [before, drop, use, other, elsewhere, suffix, partial], max_gap=300))
    assert out[use["id"]]["related_to"] == drop["id"]
    assert all(out[p["id"]].get("related_to") == drop["id"] for p in probes)   # the same source, before
    assert out[suffix["id"]]["related_to"] == drop["id"]                       # the path's end, segment-wise
    for r in (before, other, elsewhere):
        assert "related_to" not in out[r["id"]]
    assert "related_to" not in out[partial["id"]]        # "/5/x_41.php" is not a segment-wise end of ".../2025/"
    g = build_ties([drop, use], [0.0, 110.0])
    assert g.peers[0] == [(1, "served")]


def test_a_file_the_web_server_wrote_ties_the_source_that_stood_out_among_the_probes_before():
    """A web shell never requested through a logged URL: the attacker's probes, then the file
    www-data wrote (the anomaly). The source that stood out in the minutes before is tied; a
    passer-by is not, nor anyone when two sources probed alike, when root wrote the file, or
    when the probes are older than ``max_gap``."""
    def probes(ip, n, t0=0, agent="web-01"):
        return [_rec(t0 + i * 3, rule="31101", groups=("web", "accesslog"), srcip=ip, url=f"/p{i}.php", agent=agent)
                for i in range(n)]

    def drop(t, user="www-data"):
        return _seed(t, rule="554", groups=("ossec", "syscheck"), path="/var/www/app/uploads/2025/x_41.php",
                     event="added", user=user)

    attacker, passer = probes("58.158.70.176", 4), probes("182.149.226.123", 1, t0=30)
    d = drop(150)
    out = _by_id(correlate(attacker + passer + [d], max_gap=300))
    assert all(out[p["id"]].get("related_to") == d["id"] for p in attacker)
    assert "related_to" not in out[passer[0]["id"]]
    assert (3, "planted") in build_ties(attacker + [d], [0.0, 3.0, 6.0, 9.0, 150.0]).peers[4]
    tied = probes("93.184.216.34", 4, t0=1)                             # two sources alike: nobody
    out = _by_id(correlate(probes("58.158.70.176", 4) + tied + [drop(150)], max_gap=300))
    assert all("related_to" not in r for r in out.values() if r["rule"]["id"] == "31101")
    for late in (drop(150, user="root"), drop(400)):                    # root wrote it; probes too old
        out = _by_id(correlate(probes("58.158.70.176", 4) + [late], max_gap=300))
        assert all("related_to" not in r for r in out.values() if r["rule"]["id"] == "31101")
    other = probes("58.158.70.176", 4, agent="web-02")                  # another agent's probes
    out = _by_id(correlate(other + [drop(150)], max_gap=300))
    assert all("related_to" not in r for r in out.values() if r["rule"]["id"] == "31101")


def test_low_severity_seeds_do_not_spread_and_lifts_never_lower():
    recs = [_rec(0, 0.55, anomaly=True, severity="low", command="x", session=7, pid=1, ppid=0, login_user="bob"),
            _rec(1, command="y", session=7, pid=2, ppid=1, login_user="bob"),
            _rec(2, 0.45, command="z", session=7, pid=3, ppid=1, login_user="bob"),
            _seed(3, command="w", session=7, pid=4, ppid=1, login_user="bob")]
    recs[0]["severity"] = "low"
    out = correlate(recs, min_severity="high")
    assert out[1]["related_to"] == recs[3]["id"]          # the high seed lifts
    assert out[2]["score"] == 0.45 and "related_to" not in out[2]   # never lowered
    out2 = correlate(recs[:3], min_severity="medium")
    assert all("related_to" not in r for r in out2)       # the low-severity seed alone lifts nothing


def test_ties_are_built_from_the_alerts_own_identifiers():
    """End to end from Wazuh-shaped alerts: fields.key_fields carries what correlate needs."""
    t0 = F.BASE + dt.timedelta(hours=3)
    cmd = F.command(t0, ["-bash"], user="bob")
    cmd["data"]["audit"].update({"session": "42", "pid": "900", "ppid": "1", "auid": "1001"})
    cmd["full_log"] += ' AUID="bob"'
    fim = F.fim(t0 + dt.timedelta(seconds=5), "/home/bob/.bash_history", user="bob", process="/usr/bin/bash")
    fim["syscheck"]["audit"]["process"].update({"id": "900", "ppid": "1"})
    fim["syscheck"]["audit"]["login_user"] = {"id": "1001", "name": "bob"}
    daemon = F.command(t0, ["sh", "-c", "x"], user="www-data")
    daemon["data"]["audit"].update({"session": "4294967295", "pid": "77", "ppid": "1", "auid": "4294967295"})
    kf = [fields.key_fields(a) for a in (cmd, fim, daemon)]
    assert kf[0]["login_user"] == "bob" and kf[0]["session"] == "42" and (kf[0]["pid"], kf[0]["ppid"]) == ("900", "1")
    assert kf[1]["login_user"] == "bob" and kf[1]["pid"] == "900" and "session" not in kf[1]
    assert "session" not in kf[2] and "login_user" not in kf[2]   # audit's unset ids are not identities
    recs = [{"id": str(i), "timestamp": a["timestamp"], "agent": a["agent"], "rule": a["rule"], "fields": f}
            for i, (a, f) in enumerate(zip((cmd, fim, daemon), kf))]
    g = build_ties(recs, [parse_timestamp(r["timestamp"]) for r in recs])
    assert g.parent[1] == 0                      # the file change was made by that shell
    assert set(g.story(0, 10)) == {1}            # and nothing ties the daemon to it


def test_a_session_id_seen_again_later_or_for_another_user_is_another_session():
    cron = _rec(0, command="sadc 1 1", session=4269, pid=10, ppid=9, login_user="root")
    day_later = [_rec(86_400, command="-bash", session=4269, pid=500, ppid=1, login_user="dave"),
                 _seed(86_405, command="chmod u+s /usr/local/bin/.sh", session=4269, pid=501, ppid=500,
                       login_user="dave")]
    same_user_later = _rec(86_400 + 7 * 3600, command="ls", session=4269, pid=900, ppid=1, login_user="dave")
    opened = _login(86_399, user="dave")
    out = _by_id(correlate([cron] + day_later + [same_user_later, opened]))
    assert out[day_later[0]["id"]].get("related_to") == day_later[1]["id"]
    assert out[opened["id"]].get("related_to") == day_later[1]["id"]   # one running session: tied
    assert "related_to" not in out[cron["id"]]
    assert "related_to" not in out[same_user_later["id"]]   # 7 h of silence (> window) ends a session


def test_a_flagged_burst_is_walked_once_not_once_per_alert(monkeypatch):
    """A scan of thousands of flagged alerts is one story: walking it from every alert is quadratic."""
    import mimizuku.engine.correlate as C

    calls = []
    real = C._Graph.story

    def counting(self, seed, *a, **kw):
        calls.append(seed)
        return real(self, seed, *a, **kw)

    monkeypatch.setattr(C._Graph, "story", counting)
    burst = [_rec(i * 0.05, 0.9, anomaly=True, severity="high", rule="31101", groups=("web",),
                  srcip="185.220.101.7") for i in range(2000)]
    out = correlate(burst)
    assert len(calls) == 1
    assert all(r["anomaly"] for r in out)   # seeds keep their own scores and flags


def test_an_anomaly_told_within_its_story_seeds_too_but_a_bursts_repeat_does_not():
    """An anomaly folded into its account's story (mimizuku.engine.stories) is a situation of its
    own: the alerts tied to it rank next to it, as they did when it was raised on its own; a
    burst's repeat (repeat_of without a story) seeds only through its opener."""
    member = _rec(5, 0.9, command="cat /etc/shadow", session=7, pid=102, ppid=100, login_user="bob",
                  reasons=["part of the story of ...", "odd command"])
    member.update(repeat_of="r-opener", story={"of": "r-opener", "since": "x", "anomalies": 2, "duration_s": 5})
    tied = _rec(0, command="-bash", session=7, pid=100, ppid=1, login_user="bob")
    repeat = _rec(50, 0.9, command="nc", session=9, pid=300, ppid=1, login_user="eve")
    repeat["repeat_of"] = "r-other"
    tied2 = _rec(45, command="-bash", session=9, pid=299, ppid=1, login_user="eve")
    out = _by_id(correlate([tied, member, tied2, repeat]))
    assert out[tied["id"]]["related_to"] == member["id"]
    assert "related_to" not in out[tied2["id"]]


def test_a_web_requests_url_is_a_key_field_and_capped():
    a = F.event(F.BASE, "31108", groups=("web", "accesslog"), srcip="185.220.101.7")
    a["data"]["url"] = "/uploads/x.php?c=" + "A" * 5000
    kf = fields.key_fields(a)
    assert kf["url"].startswith("/uploads/x.php?c=AAA") and len(kf["url"]) == fields.MAX_URL_CHARS
    assert "url" not in fields.key_fields(F.event(F.BASE, "5501"))
