"""How long the property tests fuzz: a short budget by default (the whole fuzz set in well under
a minute in CI, the same examples every run), a long one with ``MIMIZUKU_FUZZ_LONG=1`` (random
examples, a hundred times more of them: run it before a release or after touching a parser)."""
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

settings.register_profile("mimizuku-fuzz-ci", max_examples=60, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile("mimizuku-fuzz-long", max_examples=6000, deadline=None,
                          suppress_health_check=list(HealthCheck), print_blob=True)
LONG = os.environ.get("MIMIZUKU_FUZZ_LONG", "") not in ("", "0")
#: the decorator of every fuzz test (``settings(FUZZ, max_examples=...)`` scales one test's share)
FUZZ = settings.get_profile("mimizuku-fuzz-long" if LONG else "mimizuku-fuzz-ci")


def share(fraction: float) -> settings:
    """``FUZZ`` with a fraction of its examples (for tests whose one example costs more)."""
    return settings(FUZZ, max_examples=max(5, int(FUZZ.max_examples * fraction)))


# --- strategies --------------------------------------------------------------------------------

#: pieces attackers repeat: separators, escapes, the literals patterns look for, line breaks
HOSTILE_PIECES = ("a", "0", "-", "_", ".", "/", " ", "'", '"', "\\", "=", ":", "|", "[", "]", "{", "}",
                  "\n", "\r", "\x00", "\x1b[2J", "\u2028", "\x85", "\ufeff", "\u202e", "->", "://", "@",
                  ".deb", ".rpm", "/home/", "/var/lib/dpkg/info/", "\\x41", "$(", "&&", "/dev/tcp/",
                  "AnsiballZ_", "python3", "%", "#012", '\\"', "\\u0000")

surrogates = st.integers(0xD800, 0xDFFF).map(chr)
chars = st.one_of(st.characters(), surrogates, st.sampled_from("\x00\n\r\t\x1b\x7f\x85\u2028\u2029\ufeff\u202e"))
#: text an agent could send: anything, hostile pieces, and long runs of them
hostile_text = st.one_of(
    st.text(chars, max_size=200),
    st.lists(st.sampled_from(HOSTILE_PIECES), max_size=60).map("".join),
    st.tuples(st.sampled_from(HOSTILE_PIECES), st.integers(1, 20000), st.text(chars, max_size=5)).map(
        lambda t: t[0] * t[1] + t[2]),
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-2 ** 80, 2 ** 80),
                    st.floats(allow_nan=True, allow_infinity=True), hostile_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=5), st.dictionaries(st.text(chars, max_size=12), inner, max_size=5)), max_leaves=25)
