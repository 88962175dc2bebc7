"""Every pattern that sees alert text runs in linear time (issue 17, item 1).

Alert text (paths, command lines, agent fields, timestamps, the JSON lines themselves) comes from
agents, and any unprivileged user on an audited agent chooses it. A backtracking pattern that
takes a second on one hostile argument stalls the single-threaded scorer for every other client
(the audit measured 8.9 s of delay behind 8 such alerts). So:

* ``test_every_pattern_is_registered`` scans the package's source (and the integratord script)
  with ``ast`` for every call of ``re``, ``fnmatch`` (and ``re2``/``regex``, should they appear)
  and fails on one that ``PATTERNS`` below does not list, either with the public functions
  through which alert text reaches it (``Alert``) or with the reason no alert text reaches it
  (``NotAlertText``). A new pattern cannot slip in unjudged; a stale entry fails too.
* ``test_pattern_is_linear_on_hostile_text`` runs, for each alert-text pattern and each of its
  public functions, the classic ReDoS families built from the pattern's own alphabet (long
  repetitions of each piece and of each pair of pieces, a final mismatch, a prefix that reaches
  the pattern's guarded part) at 4,096 characters, then the slowest of them at 65,536, through the
  real function, and asserts a generous bound: 50 ms per call at 4 KiB (a linear call costs well
  under 1 ms there; the package-file pattern issue 17 measured took 200 ms-1 s) and 16 times that
  at 64 KiB (linear growth: a quadratic pattern fast at 4 KiB is 256 times slower at 64 KiB).

Why each pattern is linear is said next to its entry; the timing only catches the pathological
case, the figures themselves are in ``bench/adversarial.py``.
"""
from __future__ import annotations

import ast
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Tuple

import pytest

from mimizuku.delivery import events, flood
from mimizuku.engine import features, lineage, techniques
from mimizuku.engine.detectors import commands, files
from mimizuku.outputs import clean_text, syslog
from mimizuku.outputs import parse_timestamp as outputs_parse_timestamp
from mimizuku.sources import decoding, timestamps

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "detector" / "mimizuku"
SCRIPTS = (ROOT / "integrations" / "custom-mimizuku",)

#: modules whose calls compile or apply a pattern, and the calls that do
ENGINES = {
    "re": {"compile", "match", "search", "sub", "subn", "findall", "finditer", "split", "fullmatch"},
    "fnmatch": {"fnmatch", "fnmatchcase", "filter", "translate"},
    "re2": {"compile", "match", "search", "sub", "subn", "findall", "finditer", "split", "fullmatch"},
    "regex": {"compile", "match", "search", "sub", "subn", "findall", "finditer", "split", "fullmatch"},
}

SHORT, LONG = 4096, 65536
#: per call, at 4 KiB; 16 times that at 64 KiB
BOUND_S = 0.050


# --- the registry -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    """A pattern alert text reaches: through ``probes`` (names in ``PROBES``); hostile inputs are
    built from ``alphabet`` (pieces of the pattern's own language) after ``prefix`` (what reaches
    its guarded part), ending in each of ``tails`` (a final mismatch, or none); ``extra`` are
    whole inputs known to be hard for it. ``why`` says why it is linear."""

    probes: Tuple[str, ...]
    alphabet: Tuple[str, ...]
    why: str
    prefix: str = ""
    tails: Tuple[str, ...] = ("!", "")
    extra: Tuple[str, ...] = ()


@dataclass(frozen=True)
class NotAlertText:
    """A pattern no alert text reaches: ``why`` says what it reads instead."""

    why: str


SEPARATORS = ("/", " ", "=", ":", ",", ";", "'", '"', "\t")
WORDY = ("a", "0", "a0", "A", "-", "_", ".", "aaaaaaa", "0a0a0a")

#: (module under detector/mimizuku, or the script's path from the repository root; the engine
#: call; the pattern's source text, or the expression that builds it) -> what it sees
PATTERNS: Dict[Tuple[str, str, str], object] = {
    # --- engine/features.py: every command line and path the detectors featurise ----------------
    ("engine/features.py", "re.compile", r"[a-f0-9]{7,40}"): Alert(
        ("strip_volatile", "path_tokens", "command_tokens", "path_shape"), ("a", "0", "f", "g", "a0", "-"),
        "one bounded class run: at most 40 characters tried per start"),
    ("engine/features.py", "re.compile",
     r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[0-9][A-Za-z])[A-Za-z0-9]{6,}(?![A-Za-z0-9])"): Alert(
        ("strip_volatile", "path_tokens", "command_tokens", "path_shape"), ("a", "0", "a0", "0a", "-", "A"),
        "starts only where an alphanumeric run starts (lookbehind); the lookahead and the run each "
        "scan that run once"),
    ("engine/features.py", "re.compile", r"\d+"): Alert(
        ("strip_volatile", "path_tokens", "command_tokens", "path_shape"), ("0", "a", "0a"),
        "one class, one quantifier"),
    ("engine/features.py", "re.compile", r"(?<=[A-Za-z0-9][-_.])[A-Za-z0-9]{8,}(?![A-Za-z0-9])"): Alert(
        ("strip_shapes", "command_tokens", "path_tokens"), ("a-", "a_", "a.", "bcdfghjk", "a", "-", "0"),
        "starts only right after a separator (lookbehind); the greedy run ends where the lookahead "
        "holds, so each run is scanned once"),
    ("engine/features.py", "re.compile", r"(?<![A-Za-z0-9])[A-Za-z]{20,}(?![A-Za-z0-9])"): Alert(
        ("strip_shapes", "command_tokens", "path_tokens"), ("a", "b", "0", "-", "bcdfg"),
        "starts only where an alphanumeric run starts; backs off over that run once"),
    ("engine/features.py", "re.compile", r"(?<![^\s=:'\"(])(/home/)[^/\s'\"]+(?=/|$|[\s'\"])"): Alert(
        ("strip_shapes", "command_tokens", "path_tokens"), ("/home/", "a", " ", "'", "/home/a", "/"),
        "a literal, then one class that excludes the literal's last character: runs never overlap",
        prefix="/home/"),
    ("engine/features.py", "re.compile", r"[^/\s'\"]+"): Alert(
        ("fold_package_files", "strip_shapes", "command_tokens"),
        ("a_", "a-", "_a-a", ".deb", ".rpm", "a", "_", "-", "."),
        "one class; each word it yields is cut with str methods (fold_package_files)",
        tails=(".deb.rpm", ".deb", ".x.rpm", "!", ""),
        extra=("x0001a" + "_a-a" * 1100 + "_a-.deb.rpm", "x0001a" + "_a-" * 1400 + ".deb.rpm", ".deb_" * 900)),
    ("engine/features.py", "re.compile",
     r"(/var/lib/dpkg/info/)[^/\s'\"]+?\.(preinst|postinst|prerm|postrm|config|triggers)\b"): Alert(
        ("strip_shapes", "command_tokens", "path_tokens"), ("a", ".", ".postinst", ".postinstx", "a.", ".p"),
        "a literal, then a lazy class that excludes '/' (runs never overlap) tried against a "
        "bounded alternation at each step", prefix="/var/lib/dpkg/info/"),
    ("engine/features.py", "re.compile", r"[./\-_\\\s]+"): Alert(
        ("path_tokens",), (".", "/", "-", "_", "\\", " ", "a"), "one class, one quantifier (split)"),
    ("engine/features.py", "re.compile", r"[\s/=:,;'\"]+"): Alert(
        ("command_tokens",), SEPARATORS + ("a",), "one class, one quantifier (split)"),
    ("engine/features.py", "re.compile",
     r"(>&|<&|&&|\|\||[|;<>`]|\$\(|/dev/tcp|/dev/udp|base64|\\x[0-9a-f]{2})"): Alert(
        ("command_tokens",), (">", "&", "|", "$", "/dev/tc", "base6", "\\x0", "\\x"),
        "an alternation of fixed-length branches, no quantifier around it"),
    ("engine/features.py", "re.compile", r"[a-z0-9]"): Alert(
        ("command_tokens",), ("-", "/", "a"), "one character"),
    ("engine/features.py", "re.compile", r"^[a-z][a-z0-9+.-]*://"): Alert(
        ("command_tokens",), ("a", "+", ".", "-", ":/", ":"), "anchored: one start, one class run"),
    ("engine/features.py", "re.compile", r"(?<=://)[^/\s@]+@"): Alert(
        ("hide_url_credentials", "command_tokens"), ("://", "a", "@", ":", "://a", "/"),
        "starts only after '://', and the class excludes '/': runs never overlap", prefix="https://"),
    # --- engine/detectors/commands.py: file-name words of a command (volatile slots) -----------
    ("engine/detectors/commands.py", "re.compile", r"w:([a-z0-9_+*-]{1,64})\.([a-z]{1,5})"): Alert(
        ("file_words",), ("a", ".", "a.", "-", "_", ".o"),
        "fullmatch of bounded quantifiers on one token (tokens are at most 66 characters)"),
    ("engine/detectors/commands.py", "re.compile", r"\d+"): Alert(
        ("fold_text",), ("0", "a.o", "0.o"), "one class, one quantifier (on a matched name)"),
    ("engine/detectors/commands.py", "re.compile",
     r"(?<![^\s/=:,;'\"])[A-Za-z0-9_+*-]{1,64}\.([A-Za-z0-9]{1,5})(?![^\s/=:,;'\"])"): Alert(
        ("fold_text",), ("a", ".", "a.", "a.o", " ", "/", "a.oooooo", "_"),
        "bounded quantifiers ({1,64}, {1,5}): at most 320 steps per start, starts only after a separator"),
    # --- engine/detectors/files.py: ignore/abuse globs from settings, on alert paths ------------
    ("engine/detectors/files.py", "fnmatch.fnmatchcase", "p"): Alert(
        ("path_matches",), ("a", "/", ".", "a/", "*", "?"),
        "fnmatch translates each '*' into an atomic lazy group ((?>.*?x), Python 3.11; a lookahead "
        "and backreference before): anchored, no segment is retried; the patterns are the operator's"),
    # --- engine/lineage.py: the change channel of an audited command ---------------------------
    ("engine/lineage.py", "re.compile", r"(?:^|/)AnsiballZ_[A-Za-z0-9_]+\.py$"): Alert(
        ("change_channel",), ("AnsiballZ_", "/AnsiballZ_", "a", "_", ".py", "/", "."),
        "a literal, then one class that excludes '/' and '.': runs never overlap"),
    ("engine/lineage.py", "re.compile", r"^(?:python[0-9.]*|ruby[0-9.]*|perl[0-9.]*|sh|bash|dash)$"): Alert(
        ("change_channel",), ("python", "3", ".", "3.", "sh"), "anchored: one start, one class run",
        prefix="python"),
    # --- delivery/: the anomaly event and flood control ---------------------------------------
    ("delivery/events.py", "re.compile", r"[^0-9A-Za-z_-]"): Alert(
        ("event_location",), ("a", ":", "(", ")", "->", " "), "one character (sub)"),
    ("delivery/events.py", "re.compile", r"[^0-9A-Za-z_.\-]"): Alert(
        ("event_location",), ("a", ":", "(", ")", "->", " "), "one character (sub)"),
    ("delivery/events.py", "re.compile", r"[^0-9A-Za-z.:%/_-]"): Alert(
        ("event_location",), ("a", ":", "(", ")", "->", " "), "one character (sub)"),
    ("delivery/flood.py", "re.compile", r"(?<![0-9A-Za-z])[0-9a-fA-F]{6,}(?![0-9A-Za-z])"): Alert(
        ("flood_signature",), ("a", "0", "g", "a0", "/", "-"),
        "starts only where an alphanumeric run starts; backs off over that run once"),
    ("delivery/flood.py", "re.compile", r"\d+"): Alert(
        ("flood_signature",), ("0", "a", "/"), "one class, one quantifier"),
    ("delivery/flood.py", "re.compile", r"\s+"): Alert(
        ("flood_signature",), (" ", "\t", "a"), "one class, one quantifier (split once)"),
    # --- outputs/: timestamps, SQL text, syslog ----------------------------------------------
    ("outputs/__init__.py", "re.compile",
     r"^\s*(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
     r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?\s*$"): Alert(
        ("outputs_parse_timestamp",), (" ", "0", "2022-01-25T00:00", "+", ":", "Z"),
        "two adjacent \\s* could share a run of spaces (quadratic), but parse_timestamp refuses "
        "text over 64 characters before matching", prefix="2022-01-25T00:00:00"),
    ("outputs/__init__.py", "re.compile", "[\ud800-\udfff]"): Alert(
        ("clean_text",), ("\ud800", "a", "\udfff"), "one character (sub)"),
    ("outputs/syslog_format.py", "re.compile",
     "[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]"): Alert(
        ("escape_controls",), ("\n", "a", "\u2028", "\x85", "\ufeff"), "one character (sub)"),
    ("outputs/syslog.py", "re.compile", "re.escape(self.path.name) + '\\\\.(\\\\d+)$'"): NotAlertText(
        "names of the sink's own rotated files in its directory"),
    ("outputs/syslog.py", "re.sub", "[^A-Za-z0-9_.-]"): NotAlertText(
        "the name of a configured syslog destination (a spool directory name)"),
    # --- sources/: the alert reader ---------------------------------------------------------
    ("sources/decoding.py", "re.compile", "[ \\t\\n\\r\\x00\\ufeff]*"): Alert(
        ("document_elements",), (" ", "\n", "\x00", "\ufeff", "["), "one class, one quantifier, match at a position"),
    ("sources/decoding.py", "re.compile", b'"(?:[^"\\\\]|\\\\.)*(?:"|\\\\?\\Z)|[\\[\\]{}]'): Alert(
        ("raw_deeper_than",), ('"', "\\", "[", "]", "{", "a", '\\"'),
        "the loop's branches start with different bytes and its end always matches (a quote, or the "
        "end past a lone backslash): nothing is given back, an unterminated string runs to the end"),
    ("sources/timestamps.py", "re.compile", r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2})\Z"): Alert(
        ("sources_parse_timestamp",), ("0", "-", "T", "2022-01-25T00"), "fixed length, anchored"),
    ("sources/timestamps.py", "re.compile", r"([+-])(\d{2}):?(\d{2})\Z"): Alert(
        ("sources_parse_timestamp",), ("0", "+", ":", "+00:00"), "fixed length, anchored",
        prefix="2022-01-25T00:00:00"),
    ("sources/archive.py", "re.compile", r"ossec-alerts-(\d{2})(?:-(\d{3,}))?\.json(\.gz)?\Z"): NotAlertText(
        "names of day files in the manager's archive tree (written by wazuh-analysisd)"),
    ("sources/archive.py", "re.compile", r"\d{4}\Z"): NotAlertText("year directory names in the archive tree"),
    ("sources/archive.py", "re.search", r"([+-]\d{2})(\d{2})\Z"): NotAlertText(
        "a --since/--until option of the operator"),
    ("sources/follow.py", "re.compile", r"^ossec-alerts-(\d{2})(?:-(\d{3}))?\.json(\.gz)?$"): NotAlertText(
        "names of day files in the manager's archive tree"),
    ("sources/indexer.py", "re.match", "(?i)https?://"): NotAlertText("an alert source given by the operator"),
    ("sources/indexer.py", "re.fullmatch", r"(\d+)(ms|s|m|h)"): NotAlertText("the keep_alive setting"),
    # --- store/: model directories (their names are checked before any file is read) ---------
    ("store/model_dir.py", "re.compile", r"[a-z0-9_]+"): NotAlertText(
        "detector names in a model manifest (a signed or root-written file), fullmatch of one class"),
    ("store/model_dir.py", "re.compile", r"[a-z0-9_]+\.(?:json|npz)"): NotAlertText(
        "file names in a model manifest, fullmatch of one class and a literal"),
    ("store/plain_state.py", "re.compile", r"[A-Za-z_][A-Za-z0-9_]*"): NotAlertText(
        "attribute names in a model's plain-data file (root-written, checksummed), fullmatch of one class"),
    ("store/plain_state.py", "re.compile", r"a[0-9]+"): NotAlertText(
        "array names in a model's .npz (root-written, checksummed), fullmatch of one class"),
    ("delivery/index_sink.py", "re.fullmatch", r"[a-z0-9][a-z0-9._-]{0,199}"): NotAlertText(
        "the --index-stream setting, bounded"),
    ("engine/feedback.py", "re.compile", r"\Afb-[0-9a-f]{4,32}\Z"): NotAlertText(
        "a verdict id (feedback revoke, the verdict store, a SOAR import line), anchored and bounded"),
    ("engine/feedback.py", "re.compile", r"\A([0-9]{1,6})([smhdw])\Z"): NotAlertText(
        "a verdict's --expires, anchored and bounded"),
    ("tools/rules_check.py", "re.compile", "'|'.join(alternatives)"): NotAlertText(
        "<location> patterns (OS_Match) of our own rules files"),
    ("tools/rules_check.py", "re.compile", "value"): NotAlertText(
        "<location type=\"pcre2\"> patterns of our own rules files"),
    ("store/model_dir.py", "re.compile", r"[a-z0-9_]+\.joblib"): NotAlertText(
        "file names in a model manifest, fullmatch of one class and a literal"),
    ("store/model_dir.py", "re.compile", r"[0-9a-f]{64}"): NotAlertText("digests in a model manifest, fixed length"),
    ("store/versions.py", "re.compile", r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z"): NotAlertText(
        "model version names (directory names in the store), bounded"),
    ("store/publication.py", "re.compile", r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z"): NotAlertText(
        "file names in a publication index, bounded"),
    # --- settings and tools -------------------------------------------------------------------
    ("nightly/config.py", "re.compile",
     r"(?:[a-z][a-z0-9+.-]*://)?[^\s/:]+:\d{1,5}\Z|[a-z][a-z0-9+.-]*://\S+\Z"): NotAlertText(
        "the --dask-scheduler setting"),
    ("tools/rules_check.py", "re.compile", "''.join(out)"): NotAlertText(
        "OS_Regex of our own rules files, run by `mimizuku check` on the events it generates"),
    ("tools/rules_check.py", "re.split", r"[\s,]+"): NotAlertText("if_sid lists of our own rules files"),
    ("tools/synth/writers.py", "re.match", r"^\d{4}-\d{2}-\d{2}$"): NotAlertText("the generator's --start option"),
    ("tools/synth/people.py", "re.search", r"(\d+)(\D*)$"): NotAlertText(
        "names in the generator's own fleet description (quadratic on a long digit run: not attacker text)"),
    ("tools/synth/formats.py", "re.compile", '["\\x00-\\x20\\x7f-\\U0010ffff]'): NotAlertText(
        "values the generator writes into the alerts it makes"),
    ("tools/synth/fleet.py", "re.match", r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"): NotAlertText(
        "host and manager names of the generator's fleet description, bounded"),
}


# --- the public functions alert text reaches the patterns through ------------------------------

def _techniques(s: str) -> object:
    alert = {"rule": {"groups": ["audit_command"]}, "data": {"audit": {"command": s, "execve": {"a0": s}}},
             "syscheck": {"path": s}}
    return techniques.match(alert)


def _document(s: str) -> object:
    try:
        return list(decoding.document_elements(iter([s[i:i + 1024] for i in range(0, len(s), 1024)]), 1 << 20))
    except (decoding.DocumentError, decoding.DocumentTooLong):
        return None


def uncached(fn: Callable[[str], object], s: str) -> object:
    """``fn(s)`` computed, not remembered from an earlier call (the token memos)."""
    features._path_tokens.cache_clear()
    features._command_tokens.cache_clear()
    return fn(s)


#: name -> a call of the real public function with one hostile string in the place alert text takes
PROBES: Dict[str, Callable[[str], object]] = {
    "strip_shapes": features.strip_shapes,
    "strip_volatile": features.strip_volatile,
    "fold_package_files": features.fold_package_files,
    "hide_url_credentials": features.hide_url_credentials,
    "path_shape": features.path_shape,
    "path_tokens": lambda s: uncached(features.path_tokens, s),
    "command_tokens": lambda s: uncached(features.command_tokens, s),
    "file_words": lambda s: (commands.file_words(uncached(features.command_tokens, "cc " + s)),
                             commands.file_words(("prog:cc", "w:" + s))),
    "fold_text": lambda s: commands.fold_text(s, frozenset({"o", "c", "oooo"})),
    "path_matches": lambda s: files.path_matches(s, ("*a*a*a*a*b", "/a/*/*.php", "a?a?a*[ab]", "*/a/*/*/b")),
    "change_channel": lambda s: (lineage.change_channel(["/usr/bin/" + s, "x"]),
                                 lineage.change_channel(["/usr/bin/python3", s]),
                                 lineage.change_channel([s])),
    "event_location": lambda s: events.location({"id": s, "name": s, "ip": s}),
    "flood_signature": lambda s: flood.signature(
        {"agent": {"id": "001"}, "detector": "files", "rule": {"id": "550"}, "fields": {"path": s}})
        + flood.signature({"agent": {"id": "001"}, "detector": "commands", "fields": {"command": s}}),
    "outputs_parse_timestamp": outputs_parse_timestamp,
    "sources_parse_timestamp": lambda s: (timestamps.parse_timestamp(s), timestamps.parse_timestamp_manual(s)),
    "clean_text": clean_text,
    "escape_controls": lambda s: (syslog.escape_controls(s), syslog.sd_escape(s)),
    "document_elements": _document,
    "raw_deeper_than": lambda s: decoding.raw_deeper_than(s.encode("utf-8", "surrogatepass"), 64),
    "techniques": _techniques,
}


# --- the scan -------------------------------------------------------------------------------

def _sources() -> Iterator[Tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(PACKAGE).as_posix(), path
    for path in SCRIPTS:
        yield path.relative_to(ROOT).as_posix(), path


def _pattern_text(node: ast.expr):
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        return node.value
    return ast.unparse(node)


def pattern_calls(tree: ast.AST, module: str) -> Iterator[Tuple[str, str, object]]:
    """(module, "engine.call", pattern) of every engine call in ``tree``; raises on a form the
    scan cannot see through (``from re import compile``)."""
    aliases: Dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in ENGINES:
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module in ENGINES:
            raise AssertionError(f"{module}: `from {node.module} import ...` hides its calls from this scan: "
                                 f"import the module and call {node.module}.<name>")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id in aliases):
            engine = aliases[node.func.value.id]
            if node.func.attr not in ENGINES[engine]:
                continue
            # the pattern: the first argument, the second for fnmatch(name, pattern)
            index = 1 if engine == "fnmatch" and node.func.attr != "translate" else 0
            arg = node.args[index] if len(node.args) > index else next(
                (k.value for k in node.keywords if k.arg in ("pattern", "pat")), None)
            yield module, f"{engine}.{node.func.attr}", _pattern_text(arg) if arg is not None else "?"


def _found() -> List[Tuple[str, str, object]]:
    out = []
    for module, path in _sources():
        out.extend(pattern_calls(ast.parse(path.read_text(encoding="utf-8")), module))
    return out


def test_every_pattern_is_registered():
    found = _found()
    assert len(found) > 30, "the scan found too few patterns: is it still reading the package?"
    missing = [k for k in found if k not in PATTERNS]
    assert not missing, ("patterns no entry of PATTERNS judges (add each with its adversarial alphabet "
                         "and public functions, or the reason no alert text reaches it): "
                         + "; ".join(repr(k) for k in missing))
    stale = [k for k in PATTERNS if k not in found]
    assert not stale, "entries of PATTERNS that match no pattern in the source: " + "; ".join(map(repr, stale))


def test_the_scan_sees_aliases_and_rejects_hidden_imports():
    tree = ast.parse("import re as r\nimport fnmatch\nX = r.compile('a+b')\nfnmatch.fnmatchcase(s, '*x')\n"
                     "r.escape(s)\n")
    assert list(pattern_calls(tree, "m.py")) == [("m.py", "re.compile", "a+b"), ("m.py", "fnmatch.fnmatchcase", "*x")]
    with pytest.raises(AssertionError, match="from re import"):
        list(pattern_calls(ast.parse("from re import compile\n"), "m.py"))


def test_every_alert_pattern_names_real_probes():
    for key, entry in PATTERNS.items():
        assert isinstance(entry, (Alert, NotAlertText)), key
        if isinstance(entry, Alert):
            assert entry.probes and all(p in PROBES for p in entry.probes), key
            assert entry.alphabet and entry.why, key
        else:
            assert entry.why, key


# --- the timing -----------------------------------------------------------------------------

def families(entry: Alert) -> List[Tuple[str, str]]:
    """The ReDoS families for ``entry``, as (unit, tail): each piece of its alphabet repeated,
    each ordered pair of pieces alternated, all pieces in turn, before each tail."""
    pieces = list(dict.fromkeys(entry.alphabet))
    units = pieces + [a + b for a in pieces for b in pieces if a != b] + ["".join(pieces)]
    return [(unit, tail) for unit in units for tail in entry.tails] + [(text, "") for text in entry.extra]


def hostile_text(entry: Alert, unit: str, tail: str, size: int) -> str:
    """``size`` characters: the prefix, ``unit`` repeated, ``tail``."""
    room = max(0, size - len(entry.prefix) - len(tail))
    return entry.prefix + (unit * (room // len(unit) + 1))[:room] + tail


def _cost(call: Callable[[str], object], text: str, bound: float) -> float:
    """CPU seconds one call takes (the best of up to three when the first is over ``bound``):
    process time, not wall time, since a machine shared with other jobs deschedules us for
    longer than the bound (a CI rehearsal beside two benchmarks measured 82 ms of wall time for
    a few ms of work), while a pathological pattern costs CPU every time."""
    best = float("inf")
    for _ in range(3):
        t0 = time.process_time()
        call(text)
        best = min(best, time.process_time() - t0)
        if best < bound:
            break
    return best


#: alert text that reaches no pattern but is matched all the same (str ``in``: CPython's search
#: is linear in the text for a fixed needle; the technique table's needles are short and fixed)
PLAIN_MATCHING: Dict[Tuple[str, str, str], Alert] = {
    ("engine/techniques.py", "str.__contains__", "TECHNIQUES"): Alert(
        ("techniques",), ("vssadmin delete shadow", "a", " ", "/", "nc -", "bash -i >& /dev/tc"),
        "substring search of fixed needles in at most MAX_TEXT characters"),
}

ALERT_CASES = [pytest.param(key, probe, id=f"{key[0]}:{probe}:{str(key[2])[:40]}")
               for key, entry in {**PATTERNS, **PLAIN_MATCHING}.items() if isinstance(entry, Alert)
               for probe in entry.probes]


def test_every_probe_is_used():
    used = {p for entry in {**PATTERNS, **PLAIN_MATCHING}.values() if isinstance(entry, Alert) for p in entry.probes}
    assert used == set(PROBES)


@pytest.mark.parametrize("key, probe", ALERT_CASES)
def test_pattern_is_linear_on_hostile_text(key, probe):
    entry = PATTERNS.get(key) or PLAIN_MATCHING[key]
    call = PROBES[probe]
    timed = []
    for unit, tail in families(entry):
        text = hostile_text(entry, unit, tail, SHORT)
        spent = _cost(call, text, BOUND_S)
        assert spent < BOUND_S, f"{probe} took {spent * 1000:.0f} ms on {len(text)} hostile characters: {text[:80]!r}..."
        timed.append((spent, unit, tail))
    # the slowest families again at 64 KiB: linear growth is 16x, a quadratic one 256x
    timed.sort(key=lambda t: t[0], reverse=True)
    for _spent, unit, tail in timed[:3]:
        text = hostile_text(entry, unit, tail, LONG)
        spent = _cost(call, text, 16 * BOUND_S)
        assert spent < 16 * BOUND_S, (f"{probe} took {spent * 1000:.0f} ms on {len(text)} hostile characters "
                                      f"(not linear): {text[:80]!r}...")
