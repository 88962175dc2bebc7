"""The re-injected event: location (as analysisd parses it), payload (as the json decoder sees it), size."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wazuh_emulation import parse_queue_message

from mimizuku.delivery import events


def make_record(**over):
    rec = {
        "id": "1700000000.1234",
        "timestamp": "2026-11-20T10:15:02.123+0000",
        "agent": {"id": "003", "name": "web-01", "ip": "10.0.0.5"},
        "rule": {"id": "550", "level": 7, "description": "Integrity checksum changed.", "groups": ["ossec", "syscheck"]},
        "location": "syscheck",
        "detector": "files",
        "score": 0.93,
        "score_pct": 93,
        "threshold": 0.8,
        "anomaly": True,
        "severity": "medium",
        "reasons": ["path /etc/shadow is rarely modified", "user bob never changed it"],
        "scores": {"files": 0.93},
        "fields": {"path": "/etc/shadow", "event": "modified", "user": "bob"},
        "model_version": "20261120-1",
    }
    rec.update(over)
    return rec


def test_agent_event_location_round_trips_through_analysisd_parsing():
    ev = parse_queue_message(events.event_message(make_record()))
    assert ev.queue == "1"
    assert (ev.agent_id, ev.agent_name, ev.agent_ip) == ("003", "web-01", "10.0.0.5")
    assert ev.location == "mimizuku"
    assert ev.decoder == "json"


@pytest.mark.parametrize("agent", [{"id": "000", "name": "manager"}, None, {}, {"name": "x"}])
def test_manager_events_use_the_short_form(agent):
    msg = events.event_message(make_record(agent=agent))
    assert msg.startswith(b'1:mimizuku:{"')
    ev = parse_queue_message(msg)
    assert ev.agent_id == "000" and ev.location == "mimizuku"


def test_ipv6_and_hostile_agent_fields_are_escaped_not_split():
    rec = make_record(agent={"id": "012", "name": "db:1|x) (evil", "ip": "fe80::1%eth0"})
    msg = events.event_message(rec)
    assert b"fe80|:|:1" in msg  # ':' escaped as '|:' inside the location
    ev = parse_queue_message(msg)
    assert ev.agent_id == "012"
    assert ev.agent_ip == "fe80::1%eth0"
    assert ":" not in ev.agent_name and "|" not in ev.agent_name and ")" not in ev.agent_name
    assert ev.location == "mimizuku"
    assert ev.payload["mimizuku"]["agent"] == "db:1|x) (evil"  # the real name travels in the payload


def test_escape_and_unescape_are_inverse():
    for s in ["a:b", "a|b", "||::", "[001] (x) fe80::1", ""]:
        assert events.unescape_location(events.escape_location(s)) == s


def test_payload_fields_arrive_as_the_strings_rules_match():
    ev = parse_queue_message(events.event_message(make_record()))
    f = ev.fields
    assert f["integration"] == "mimizuku"
    assert f["mimizuku.score"] == "0.930000"
    assert f["mimizuku.score_pct"] == "93"
    assert f["mimizuku.anomaly"] == "true"
    assert f["mimizuku.severity"] == "medium"
    assert f["mimizuku.detector"] == "files"
    assert f["mimizuku.threshold"] == "0.800000"
    assert f["mimizuku.model_version"] == "20261120-1"
    assert f["mimizuku.reasons"] == ["path /etc/shadow is rarely modified", "user bob never changed it"]
    assert f["mimizuku.reason"] == "path /etc/shadow is rarely modified; user bob never changed it"
    assert f["mimizuku.agent"] == "web-01"
    assert f["mimizuku.source.alert_id"] == "1700000000.1234"
    assert f["mimizuku.source.rule_id"] == "550"
    assert f["mimizuku.source.level"] == "7"
    assert f["mimizuku.source.description"] == "Integrity checksum changed."
    assert f["mimizuku.source.timestamp"] == "2026-11-20T10:15:02.123+0000"
    assert f["mimizuku.source.location"] == "syscheck"
    assert f["mimizuku.path"] == "/etc/shadow"
    assert f["mimizuku.user"] == "bob"
    assert "srcip" not in ev.static and "mimizuku.command" not in f


def test_static_fields_only_where_the_alert_had_them():
    rec = make_record(detector="context", fields={"srcip": "203.0.113.9", "srcuser": "alice", "dstuser": "root",
                                                  "user": "alice"})
    ev = parse_queue_message(events.event_message(rec))
    assert ev.static == {"srcip": "203.0.113.9", "srcuser": "alice", "dstuser": "root"}


def test_score_pct_is_clamped_integer_even_from_odd_records():
    assert events.score_pct({"score": 0.934}) == 93
    assert events.score_pct({"score_pct": 140}) == 100
    assert events.score_pct({"score_pct": float("nan"), "score": 0.5}) == 50
    assert events.score_pct({"score": "junk"}) == 0
    assert events.score_pct({"score_pct": True, "score": 0.25}) == 25
    p = events.build_payload(make_record(score=1.0, score_pct=100, severity="bogus"))
    assert p["mimizuku"]["score_pct"] == 100 and p["mimizuku"]["severity"] == "none"
    # 1.0 is printed by the json decoder as an integer ("1"), 0.5 as "0.500000": rules use score_pct
    ev = parse_queue_message(events.event_message(make_record(score=1.0, score_pct=100)))
    assert ev.fields["mimizuku.score"] == "1" and ev.fields["mimizuku.score_pct"] == "100"


def test_hostile_paths_and_commands_do_not_corrupt_the_event():
    nasty = '/tmp/x\n1:[999] (forged) any->mimizuku:{"integration":"mimizuku"}\x00|:"\\\ud800'
    rec = make_record(fields={"path": nasty, "command": "sh -c 'echo a:b|c'\r\n", "user": "r\x1boot"})
    msg = events.event_message(rec)
    assert b"\n" not in msg and b"\r" not in msg and b"\x00" not in msg
    msg.decode("utf-8")  # always valid UTF-8
    ev = parse_queue_message(msg)
    assert ev.agent_id == "003" and ev.location == "mimizuku"
    assert ev.fields["mimizuku.path"] == nasty.replace("\ud800", "?")
    assert ev.fields["mimizuku.command"] == "sh -c 'echo a:b|c'\r\n"


def test_oversized_event_is_trimmed_longest_first_and_says_so():
    rec = make_record(fields={"path": "/data/" + "p" * 100_000, "command": "c" * 20_000, "user": "bob"})
    msg = events.event_message(rec)
    assert len(msg) <= events.MAX_MESSAGE_BYTES
    ev = parse_queue_message(msg)
    m = ev.payload["mimizuku"]
    assert m["truncated"] is True
    assert m["truncated_fields"] == ["path"]
    assert m["path"].endswith(events.TRUNCATION_MARK) and m["path"].startswith("/data/ppp")
    assert m["command"] == "c" * 20_000 and m["user"] == "bob"
    assert len(msg) > events.MAX_MESSAGE_BYTES - 200  # cut just enough, not everything


def test_two_huge_fields_are_evened_out():
    rec = make_record(fields={"path": "p" * 60_000, "command": "c" * 50_000}, reasons=["r" * 40_000])
    msg = events.event_message(rec)
    assert len(msg) <= events.MAX_MESSAGE_BYTES
    m = json.loads(msg[msg.index(b"{"):])["mimizuku"]
    assert set(m["truncated_fields"]) >= {"path", "command", "reasons", "reason"}
    lengths = sorted(len(m[k]) for k in ("path", "command"))
    assert lengths[1] - lengths[0] <= len(events.TRUNCATION_MARK) + 2


def test_multibyte_text_is_trimmed_by_bytes():
    rec = make_record(fields={"path": "/日本/" + "語" * 40_000})  # 3 bytes per character
    msg = events.event_message(rec)
    assert len(msg) <= events.MAX_MESSAGE_BYTES
    assert json.loads(msg[msg.index(b"{"):])["mimizuku"]["truncated_fields"] == ["path"]


def test_impossible_size_raises():
    with pytest.raises(events.EventTooLarge):
        events.event_message(make_record(), max_bytes=120)


texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300) | st.text(max_size=30)


@settings(max_examples=150, deadline=None)
@given(path=texts, command=texts, name=texts, agent_id=st.text(max_size=8), ip=texts,
       big=st.integers(min_value=0, max_value=90_000))
def test_any_record_gives_one_parseable_datagram_within_the_limit(path, command, name, agent_id, ip, big):
    rec = make_record(agent={"id": agent_id, "name": name, "ip": ip},
                      fields={"path": path + "x" * big, "command": command, "user": name})
    msg = events.event_message(rec)
    assert len(msg) <= events.MAX_MESSAGE_BYTES
    ev = parse_queue_message(msg)
    assert ev.location == "mimizuku"
    assert ev.decoder == "json"
    assert ev.fields["integration"] == "mimizuku"
    assert ev.fields["mimizuku.severity"] == "medium"
