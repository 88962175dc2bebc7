"""The scorer's wire protocol and the integration's options on any input (issue 17, fuzzing):
requests round-trip, any answer line is read as ack, refusal or unreadable (never an exception),
any options file gives Options or OptionsError, any argv an Invocation or UsageError."""
import json

import fuzz_targets as T
from fuzz_budget import FUZZ, hostile_text, json_values
from hypothesis import example, given
from hypothesis import strategies as st

from mimizuku.integratord import options


@FUZZ
@given(st.binary(max_size=2048))
@example(b"[" * 200_000)
@example(b'{"id":' * 50_000)
@example(b'{"id":"x","ok":false,"code":"bad_request"}')
@example(b'{"id":"x","ok":true}' + b"\xff")
@example(b"\xed\xa0\x80")
def test_any_answer_line_is_ack_refusal_or_unreadable(data):
    T.check_protocol_bytes(data)


@FUZZ
@given(json_values, st.one_of(hostile_text, st.integers(), json_values))
@example({"a": "\u2028\n\x00"}, "x" * 128)
def test_requests_and_answers_round_trip(alert, rid):
    T.check_protocol_round_trip(alert, rid)


options_docs = st.one_of(
    st.binary(max_size=600),
    st.dictionaries(st.sampled_from(sorted(options.OPTION_KEYS) + ["x", ""]), json_values, max_size=6).map(
        lambda d: json.dumps(d).encode()),
    st.fixed_dictionaries({}, optional={k: json_values for k in options.OPTION_KEYS}).map(
        lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
)


@FUZZ
@given(options_docs)
@example(b"[" * 60_000)
@example(b'{"min_severity": []}')
@example(b'{"send": {}}')
@example(b'{"thresholds": {"files": NaN}}')
@example(b'{"socket_timeout": Infinity}')
@example(b'{"max_batch": 1e400}')
@example(b'{"model_dir": "\\ud800"}')
def test_any_options_file_gives_options_or_its_error(data):
    T.check_options(data)


@FUZZ
@given(st.lists(st.one_of(hostile_text, st.sampled_from(["debug", "", "0", "10", "-1", "> /dev/null 2>&1",
                                                          "99999999999999999999", "/tmp/o.json"])), max_size=10))
@example(["custom-mimizuku", "/tmp/a.json", "", "", "0" * 4301])    # ValueError past int()'s digit limit
@example(["custom-mimizuku", "/tmp/a.json", "", "", "/tmp/o.json", "\u00b2"])   # "²".isdigit(), int() refuses it
def test_any_argv_gives_an_invocation_or_usage(argv):
    T.check_argv(argv)


# --- what the fuzzing found (each failed before its fix) -----------------------------------------

def test_json_nested_past_the_parser_is_a_value_error_not_a_recursion_error(tmp_path):
    """A line of brackets made protocol.loads raise RecursionError, which neither parse_answer nor
    the fast path's options reading (forward) catches: the client died instead of reading an
    unreadable answer, and the script instead of ignoring bad options."""
    import pytest

    from mimizuku.integratord import protocol

    with pytest.raises(ValueError):
        protocol.loads("[" * 100_000)
    assert protocol.parse_answer(b"[" * 100_000, b"1-2-3") == (None, "unreadable answer")
    deep = tmp_path / "options.json"
    deep.write_bytes(b"[" * 60_000)
    with pytest.raises(options.OptionsError, match="nested too deeply"):
        options.load_options(str(deep), tmp_path)


def test_an_unhashable_min_severity_is_an_options_error(tmp_path):
    """``"min_severity": []`` raised TypeError (a list looked up in a dict), not OptionsError."""
    import pytest

    p = tmp_path / "options.json"
    for value in ([], {}, [["low"]]):
        p.write_text(json.dumps({"min_severity": value}))
        with pytest.raises(options.OptionsError, match="min_severity"):
            options.load_options(str(p), tmp_path)


def test_numbers_in_argv_that_are_no_setting_are_a_usage_error():
    """A timeout of 4,301 digits raised ValueError (int()'s limit), and "²" (a digit to
    str.isdigit) raised ValueError from int(): neither is UsageError, which the call reports
    with its exit code; the first is now UsageError, the second a word like any other."""
    import pytest

    with pytest.raises(options.UsageError, match="out of range"):
        options.parse_argv(["custom-mimizuku", "/tmp/a.json", "", "", "/tmp/o.json", "9" * 4301])
    inv = options.parse_argv(["custom-mimizuku", "/tmp/a.json", "", "", "\u00b2", "12", "4"])
    assert (inv.options_file, inv.timeout, inv.retries) == ("\u00b2", 12, 4)
