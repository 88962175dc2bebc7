"""Batch correlation: alerts tied to an anomaly by source or user inherit a share of it."""
import copy
import datetime as dt

import alert_factory as F
from mimizuku.correlate import correlate, entities


def _rec(i, t, score, *, anomaly=False, severity="none", srcip=None, user=None, agent="web-01", reasons=()):
    f = {}
    if srcip:
        f["srcip"] = srcip
    if user:
        f["user"] = user
    return {"id": str(i), "timestamp": F.ts(F.BASE + dt.timedelta(seconds=t)), "agent": {"name": agent, "id": "001"},
            "rule": {"id": "5710"}, "detector": "context", "score": score, "score_pct": round(100 * score),
            "threshold": 0.5, "anomaly": anomaly, "severity": severity, "reasons": list(reasons), "fields": f}


def test_failures_before_a_flagged_success_are_lifted_with_a_reason():
    recs = [_rec(i, i, 0.05, srcip="198.51.100.7") for i in range(20)]
    recs.append(_rec(99, 30, 0.9, anomaly=True, severity="high", srcip="198.51.100.7",
                     reasons=["login after 40 failures"]))
    recs.append(_rec(100, 10, 0.05, srcip="192.0.2.1"))              # another source: untouched
    recs.append(_rec(101, 10, 0.05, srcip="198.51.100.7", agent="db-01"))  # another agent: untouched
    before = copy.deepcopy(recs)
    out = correlate(recs, window=60, decay=0.9)
    assert recs == before  # inputs untouched
    lifted = [r for r in out if r["id"] not in ("99", "100", "101")]
    assert all(r["anomaly"] and abs(r["score"] - 0.81) < 1e-9 for r in lifted)
    assert all(r["related_to"] == "99" for r in lifted)
    assert "198.51.100.7" in lifted[0]["reasons"][0] and "login after 40 failures" in lifted[0]["reasons"][0]
    assert not out[-2]["anomaly"] and not out[-1]["anomaly"]


def test_window_low_severity_seeds_and_root_do_not_spread():
    recs = [_rec(0, 0, 0.9, anomaly=True, severity="low", user="bob"),
            _rec(1, 5, 0.1, user="bob"),
            _rec(2, 0, 0.95, anomaly=True, severity="critical", user="root"),
            _rec(3, 5, 0.1, user="root"),
            _rec(4, 0, 0.95, anomaly=True, severity="critical", user="eve"),
            _rec(5, 2000, 0.1, user="eve")]
    out = correlate(recs, window=900)
    assert not out[1]["anomaly"]   # a low-severity seed does not spread
    assert not out[3]["anomaly"]   # root is everyone's user: not an identity
    assert not out[5]["anomaly"]   # outside the window


def test_lift_never_lowers_and_ignored_alerts_stay_unflagged():
    recs = [_rec(0, 0, 0.8, anomaly=True, severity="high", user="eve"),
            _rec(1, 1, 0.95, anomaly=True, severity="critical", user="eve"),
            _rec(2, 1, 0.0, user="eve", reasons=["ignored: user 'eve' is in ignore_users"])]
    out = correlate(recs)
    assert out[1]["score"] == 0.95
    assert out[0]["score"] == 0.855 and out[0]["anomaly"]
    assert not out[2]["anomaly"]


def test_entities():
    r = _rec(0, 0, 0.1, srcip="10.0.0.9", user="alice")
    r["fields"]["dstuser"] = "root"
    assert entities(r) == [("web-01", "source", "10.0.0.9"), ("web-01", "user", "alice")]
