"""The featurisers and the estimator's score path on any alert (issue 17, fuzzing): the detectors'
keys and feature groups, the command and path tokens, and one alert scored as ``serve`` scores it
never raise, stay bounded, and give a record an event and a syslog line can be made of."""
import copy

import fuzz_targets as T
import pytest
from fuzz_budget import FUZZ, hostile_text, json_values, share
from hypothesis import example, given
from hypothesis import strategies as st

#: (where in the alert, what) pairs an agent controls
placements = st.lists(st.tuples(st.sampled_from(T.TEXT_PLACES), st.one_of(hostile_text, json_values)), max_size=6)


@st.composite
def alerts(draw):
    """A generated alert of some kind with hostile values put where agents put text."""
    base = copy.deepcopy(draw(st.sampled_from(T.templates())))
    for place, value in draw(placements):
        T.put(base, place, value)
    return base


@FUZZ
@given(hostile_text)
@example("\ud800")
@example("x0001a" + "_a-a" * 1100 + "_a-.deb.rpm")
@example("curl https://user:secret@" + "a" * 5000)
def test_tokens_of_any_text_are_bounded(text):
    T.check_tokens(text)


def _as_alert(d):
    """What the reader lets through to the detectors: a dict with a ``rule`` dict."""
    return dict(d, rule=d["rule"] if isinstance(d.get("rule"), dict) else {})


@FUZZ
@given(st.one_of(alerts(), st.dictionaries(st.sampled_from(["rule", "syscheck", "data", "agent", "id", "x"]),
                                            json_values, max_size=6).map(_as_alert)))
def test_detectors_featurise_any_alert(alert):
    T.check_featurise(alert)


@FUZZ
@given(st.binary(max_size=600))
def test_detectors_featurise_alerts_made_of_any_bytes(data):
    T.check_featurise(T.alert_from_bytes(data))


@share(0.5)
@given(alerts())
def test_the_score_path_takes_any_alert(alert):
    T.check_score(alert)


@pytest.mark.parametrize("place", [("data", "audit", "execve", "a1"), ("syscheck", "path"), ("agent", "name"),
                                   ("data", "srcuser")])
def test_a_lone_surrogate_is_scored_not_raised(place):
    """A lone surrogate (a JSON ``\\ud800`` escape the standard library's parser lets through:
    the in-process path, indexer exports, the Python API) failed the feature hasher's UTF-8
    encoding, and with it the whole batch the alert was scored in."""
    for template in T.templates():
        alert = copy.deepcopy(template)
        T.put(alert, place, "evil\ud800" + place[-1])
        T.check_score(alert)


def test_the_token_memos_keep_no_more_of_a_text_than_its_tokens_read():
    """The token memos were keyed by the whole text: each of their entries held an agent's
    64 KiB argument although only its first MAX_TEXT characters are read (8,192 entries, the
    resident scorer's cap, were half a GiB per memo). Keyed by the cut text, texts that differ
    only past it share one entry, and the memo holds kilobytes."""
    import gc
    import tracemalloc

    from mimizuku.engine import features

    features._command_tokens.cache_clear()
    features._path_tokens.cache_clear()
    head = "/usr/bin/curl " + "a/" * features.MAX_TEXT
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100):
            text = head + "x" * 60_000 + str(i)      # 64 KiB, distinct past MAX_TEXT only
            features.command_tokens(text)
            features.path_tokens(text)
            del text
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, f"the token memos hold {held / 1e6:.1f} MB for one distinct cut text"
    assert features.command_tokens(head + "y" * 10) == features.command_tokens(head + "z" * 10)
