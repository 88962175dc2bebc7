"""The event formatter and the syslog formatter on any record (issue 17, fuzzing): one line,
valid UTF-8, the structure its reader parses, and no field, line or location alert text forges.

Records come from the score path (every field an alert's), so they are fuzzed as the scorer
makes them and as anything of the record's shape. The syslog checks are only those that hold
whatever its byte cap (being changed elsewhere): one record, parseable."""
import copy

import fuzz_targets as T
from fuzz_budget import FUZZ, hostile_text, json_values, share
from hypothesis import example, given
from hypothesis import strategies as st

from mimizuku.delivery import events

SEVERITIES = st.sampled_from(["none", "low", "medium", "high", "critical", None, "x", 3])
agents = st.one_of(st.none(), json_values, st.fixed_dictionaries(
    {}, optional={"id": st.one_of(hostile_text, st.sampled_from(["001", "000", "1|:2", "00:1"]), json_values),
                  "name": st.one_of(hostile_text, json_values), "ip": st.one_of(hostile_text, json_values)}))


@st.composite
def records(draw):
    """Anything of a scored record's shape (docs/records.md), its text hostile."""
    text = st.one_of(hostile_text, json_values)
    rec = {
        "id": draw(text), "timestamp": draw(st.one_of(text, st.sampled_from(["2026-11-01T00:00:00.000+0000",
                                                                           "9999-12-31T23:59:59-2359"]))),
        "detector": draw(st.one_of(st.sampled_from(["files", "commands", "context"]), text)),
        "score": draw(st.one_of(st.floats(allow_nan=True), text)), "threshold": draw(st.one_of(st.floats(), text)),
        "anomaly": draw(st.one_of(st.booleans(), json_values)), "severity": draw(SEVERITIES),
        "model_version": draw(text), "location": draw(text),
        "reasons": draw(st.one_of(st.lists(hostile_text, max_size=30), json_values)),
        "agent": draw(agents),
        "rule": draw(st.one_of(json_values, st.fixed_dictionaries({}, optional={
            "id": text, "level": st.one_of(st.integers(), json_values), "description": text}))),
        "fields": draw(st.one_of(json_values, st.dictionaries(
            st.sampled_from(["path", "command", "user", "event", "process", "srcip", "srcuser", "dstuser"]),
            text, max_size=8))),
        "episode": draw(st.one_of(st.none(), json_values)), "mitre": draw(st.one_of(st.none(), json_values)),
    }
    drop = draw(st.sets(st.sampled_from(sorted(rec)), max_size=6))
    return {k: v for k, v in rec.items() if k not in drop}


@FUZZ
@given(records())
@example({"agent": {"id": "001) (x) 1.2.3.4->mimizuku:", "name": "a:b|c", "ip": "::1"}, "fields": {"path": "\n1:x:{}"}})
@example({"agent": {"id": "0" * 5000}, "reasons": ["\u2028" * 40000] * 20})
@example({"reasons": 1, "rule": None, "fields": None})    # raised TypeError (iterating an int)
@example({"reasons": "one string", "fields": {"path": 7}})
@example({"detector": "/home/" * 10876, "rule": {"id": "/dev/tcp/" * 7230}})   # did not fit: EventTooLarge
@example({"score": 1.797693134862316e+306})    # OverflowError: round(100 * score) of inf
@example({"score": 10 ** 400, "threshold": -10 ** 400})   # OverflowError: float() of the int
def test_any_record_makes_one_event_with_only_our_fields(record):
    T.check_event(record)


@share(0.5)
@given(records(), st.integers(64, 4096))
def test_events_cut_to_any_size_stay_whole(record, max_bytes):
    T.check_event(record, max_bytes=max_bytes)


@FUZZ
@given(records())
@example({"fields": {"command": 'x"] [evil@1 a="b'}, "agent": {"name": "\\"}, "reasons": ["\r\n<13>1 forged"]})
@example({"fields": {"path": "\x85\u2028\u2029\x0b\x0c" * 100, "user": "\ud800"}, "rule": {"description": "a|b\\"}})
def test_any_record_makes_one_syslog_line_a_receiver_parses(record):
    T.check_syslog(record)


@share(0.4)
@given(st.sampled_from(range(64)), st.lists(st.tuples(st.sampled_from(T.TEXT_PLACES), hostile_text), max_size=4))
def test_records_the_scorer_makes_of_hostile_alerts_travel(i, puts):
    alert = copy.deepcopy(T.templates()[i % len(T.templates())])
    for place, value in puts:
        T.put(alert, place, value)
    T.check_score(alert)   # the record's event and syslog line, checked as above


def test_the_location_of_an_event_cannot_be_moved_by_the_agent_fields():
    loc = events.location({"id": "001", "name": "web:1) (x", "ip": "1.2.3.4->evil:"})
    assert events.split_location(loc + ":{}")[0].endswith("->" + events.TAG)
    assert events.split_location(loc + ":{}")[0].count("->") == 1


def test_an_event_fits_whatever_the_length_of_the_fields_never_trimmed():
    """The detector name and the rule id are never trimmed (rules match them whole); a 64 KiB
    one (the fuzzer's, from a rule id of an indexer export or the Python API) made the event not
    fit at all: EventTooLarge, and the scorer logged the anomaly and dropped it."""
    msg = events.event_message({"detector": "d" * 70_000, "rule": {"id": "9" * 70_000}, "anomaly": True})
    assert len(msg) <= events.MAX_MESSAGE_BYTES


def test_a_score_past_float_range_is_clamped_not_raised():
    """round(100 * 1.8e306) is round(inf): OverflowError, and float(10**400) too; a record's
    score is clamped to [0, 1] before its percentage is taken."""
    for score in (1.797693134862316e+306, 10 ** 400, -10 ** 400):
        events.event_message({"score": score, "threshold": score, "detector": "files"})
