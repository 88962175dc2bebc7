"""Turning paths and command lines into tokens a distance can compare.

Paths are normalised as the original Mimizuku did (hex runs of 7–40 characters and digit runs
removed, separators split) so that release directories, temp files and PIDs do not make every
path unique; directory prefixes are kept as tokens too, so that "where in the tree" counts.

Beyond that, parts that are instances of a shape rather than names are reduced to the shape:

* random components of compound names (``venv-ylmvdvbc``, ``pip-wheel-lmdnfmeb``, ansible's
  ``BECOME-SUCCESS-<32 random letters>``): a component after a ``-``/``_``/``.`` that is too poor
  in vowels or has a consonant run no word has (the usual gibberish tests of temp-name and DGA
  detectors), or a long run of letters with many distinct characters;
* the owner's name in ``/home/<name>/`` (``/home/~/``): every account's home has the same
  layout, and who acts is the user field's business, not the path's;
* Debian/RPM package files and maintainer scripts (``nginx-core_1.18.0-0ubuntu1.6_amd64.deb``,
  ``/var/lib/dpkg/info/nginx-core.postinst``): the package name is whatever was upgraded today.

Standard library only.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import List, Optional, Tuple

_HEX_RE = re.compile(r"[a-f0-9]{7,40}", re.IGNORECASE)
# random names: 6+ alphanumerics with a digit followed by a letter inside (cc0PJNd1, venv-amch1aed)
_MIXED_RE = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[0-9][A-Za-z])[A-Za-z0-9]{6,}(?![A-Za-z0-9])")
_DIGITS_RE = re.compile(r"\d+")
# a component of a compound name: after a separator, up to the next non-alphanumeric character
# (8+ characters: looks_random judges nothing shorter, so shorter ones are not even matched)
_COMPONENT_RE = re.compile(r"(?<=[A-Za-z0-9][-_.])[A-Za-z0-9]{8,}(?![A-Za-z0-9])")
# a long run of letters anywhere (random ids without a separator)
_LONG_RUN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{20,}(?![A-Za-z0-9])")
_VOWELS = frozenset("aeiouy")
# /home/<name>/ (not /home itself); the name is the account's, the layout is everyone's
_HOME_RE = re.compile(r"(?<![^\s=:'\"(])(/home/)[^/\s'\"]+(?=/|$|[\s'\"])")
# Debian and RPM package files (name_version_arch.deb, name-version-release.arch.rpm): folded by
# ``fold_package_files`` in linear time (a regular expression for them backtracked for a second
# on one 4 KiB argument of underscores and hyphens: issue 17)
_WORD_RUN_RE = re.compile(r"[^/\s'\"]+")
_ARCH_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
# dpkg maintainer scripts: /var/lib/dpkg/info/<package>[:arch].postinst
_DPKG_SCRIPT_RE = re.compile(r"(/var/lib/dpkg/info/)[^/\s'\"]+?\.(preinst|postinst|prerm|postrm|config|triggers)\b", re.IGNORECASE)
_PATH_SPLIT_RE = re.compile(r"[./\-_\\\s]+")
_CMD_SPLIT_RE = re.compile(r"[\s/=:,;'\"]+")
_SHELL_META_RE = re.compile(r"(>&|<&|&&|\|\||[|;<>`]|\$\(|/dev/tcp|/dev/udp|base64|\\x[0-9a-f]{2})", re.IGNORECASE)
_ALNUM_RE = re.compile(r"[a-z0-9]", re.IGNORECASE)
_URLISH_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: the user-information part of a URL (``https://gitlab-ci-token:glcbt-…@host``): a credential
_URL_USERINFO_RE = re.compile(r"(?<=://)[^/\s@]+@")

MAX_TOKENS = 64
MAX_TEXT = 4096


def looks_random(word: str) -> bool:
    """Whether an alphanumeric name component looks machine-generated rather than like a word.

    Words (and the abbreviations programs are named with) alternate consonants and vowels;
    random letters do not. Of 8+ characters: a run of five consonants (``bjkxp724``), or under
    a fifth vowels (``lmdnfmeb``), or 20+ letters with a run of four (``rnzneawoang...``).
    Shorter names (``chkpwd``, ``https``) are too often real abbreviations to judge."""
    if len(word) < 8:
        return False
    letters = [c for c in word.lower() if c.isalpha()]
    if len(letters) < 5:
        return False
    run = longest = 0
    for c in letters:
        run = 0 if c in _VOWELS else run + 1
        longest = max(longest, run)
    if longest >= 5 or sum(c in _VOWELS for c in letters) < 0.2 * len(letters):
        return True
    return len(letters) >= 20 and longest >= 4


def _random_to_star(m: "re.Match[str]") -> str:
    return "*" if looks_random(m.group(0)) else m.group(0)


def hide_url_credentials(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://*@host``: a CI job token or a password in a
    command line is neither evidence (it changes every job) nor something to repeat in reasons,
    model files, SQL or syslog."""
    if "://" in text and "@" in text:
        return _URL_USERINFO_RE.sub("*@", text)
    return text


def strip_shapes(text: str) -> str:
    """Reduce instances to their shape: URL credentials, random name components, home owners,
    package files."""
    text = hide_url_credentials(text)
    text = _COMPONENT_RE.sub(_random_to_star, text)
    text = _LONG_RUN_RE.sub(_random_to_star, text)
    # the last three only where their literal part occurs: the package-file pattern backtracks
    # over every word, and this runs for every new command line the resident scorer sees
    if "/home/" in text:
        text = _HOME_RE.sub(r"\1~", text)
    low = text.lower()
    if ".deb" in low or ".rpm" in low:
        text = fold_package_files(text)
    if "/var/lib/dpkg/info/" in low:
        text = _DPKG_SCRIPT_RE.sub(lambda m: m.group(1) + "*." + m.group(2).lower(), text)
    return text


def fold_package_files(text: str) -> str:
    """Package files named after today's packages, reduced to their kind: ``nginx_1.24.0-2_amd64.deb``
    -> ``*.deb``, ``nginx-1.24.0-1.el9.x86_64.rpm`` -> ``*.rpm``; the rest of the text as it was.

    A word (a run without ``/``, whitespace or quotes) that holds ``<name>_<version>_<arch>.deb``
    or ``<name>-<version>-<release>.<arch>.rpm`` (each part non-empty; version and release without
    the separator; the arch letters and digits, ``_`` too for rpm), ending at a word boundary, has
    that part replaced, and the word's rest is read again. Linear in the text: each word is cut
    with ``str`` methods, and of its ``.deb``/``.rpm`` endings only the last ``_PKG_TRIES`` are
    tried (the longest name wins, as with a greedy pattern)."""
    out: List[str] = []
    pos = 0
    for m in _WORD_RUN_RE.finditer(text):
        out.append(text[pos:m.start()])
        out.append(_fold_word(m.group(0)))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


#: ``.deb``/``.rpm`` endings tried per word, from the last: a word of thousands of them is no package
_PKG_TRIES = 4


def _fold_word(word: str) -> str:
    done: List[str] = []
    while True:
        low = word.lower()
        end = _package_end(word, low)
        if end is None:
            done.append(word)
            return "".join(done)
        done.append("*" + low[end - 4:end])
        word = word[end:]


def _package_end(word: str, low: str) -> Optional[int]:
    """Where the longest package file at the start of ``word`` ends (None: there is none)."""
    for ext, named in ((".deb", _deb_name), (".rpm", _rpm_name)):   # a .deb first, as ever
        hi = len(low)
        for _ in range(_PKG_TRIES):
            i = low.rfind(ext, 0, hi)
            if i < 0:
                break
            hi = i
            end = i + 4
            if end < len(word) and (word[end].isalnum() or word[end] == "_"):
                continue      # no word boundary after the extension
            if named(low[:i]):
                return end
    return None


def _deb_name(stem: str) -> bool:
    parts = stem.rsplit("_", 2)
    return len(parts) == 3 and all(parts) and all(c in _ARCH_CHARS for c in parts[2])


def _rpm_name(stem: str) -> bool:
    head, dot, arch = stem.rpartition(".")
    if not dot or not arch or not all(c in _ARCH_CHARS or c == "_" for c in arch):
        return False
    parts = head.rsplit("-", 2)
    return len(parts) == 3 and all(parts)


def strip_volatile(text: str, hash_names: bool = True) -> str:
    """Remove random-looking names, hash-like hex runs and digit runs (temp files, release ids, PIDs).
    ``hash_names``: a hex run of letters and digits becomes ``*`` (``_hex_run``); False reads it as
    models fitted before that rule do (dropped, unless ``_MIXED_RE`` saw it)."""
    return _strip_runs(strip_shapes(text), hash_names)


def _hex_run(m: "re.Match[str]") -> str:
    """A hex run with letters and digits is a hash-like name, ``*`` as ``_MIXED_RE`` makes of one
    (whichever way its letters fall: ``092b9a734a7979ef`` has a digit before a letter, which
    ``_MIXED_RE`` looks for, ``ffe3648132533088`` has not, and one upload's name must not
    normalise otherwise than the next); a run of digits alone or letters alone is dropped."""
    run = m.group(0)
    return "" if run.isdigit() or run.isalpha() else "*"


def _strip_runs(text: str, hash_names: bool = True) -> str:
    """The second half of :func:`strip_volatile`, for text already reduced by :func:`strip_shapes`."""
    return _DIGITS_RE.sub("", _HEX_RE.sub(_hex_run if hash_names else "", _MIXED_RE.sub("*", text)))


def path_tokens(path: str, hash_names: bool = True) -> Tuple[str, ...]:
    """Tokens of a normalised path: its words, its first directory prefixes and its extension
    (of its first ``MAX_TEXT`` characters)."""
    return _path_tokens(path[:MAX_TEXT], hash_names)


# The memos are keyed by the text already cut to MAX_TEXT: keyed by the whole text, each entry
# held an agent's 64 KiB argument (issue 17: 8,192 entries of serve's cap were half a GiB).
@lru_cache(maxsize=65536)
def _path_tokens(path: str, hash_names: bool = True) -> Tuple[str, ...]:
    norm = strip_volatile(path.lower(), hash_names)
    parts = [p for p in norm.split("/") if p]
    tokens: List[str] = []
    prefix = ""
    for depth, part in enumerate(parts[:-1][:4]):  # directory prefixes: /etc, /etc/ssh ...
        prefix += "/" + part
        tokens.append("dir:" + prefix)
    words = [w for w in _PATH_SPLIT_RE.split(norm) if w]
    tokens.extend("w:" + w for w in words[:MAX_TOKENS])
    base = parts[-1] if parts else ""
    ext = base.rsplit(".", 1)[1][:16] if "." in base.strip(".") else ""
    if ext:
        tokens.append("ext:" + ext)
        # the kind of file in this directory (the nearest one with a name left after
        # normalisation, so uploads/2026/11/x.php counts as uploads): a .php among uploads is news
        parent = next((p.strip("*") for p in reversed(parts[:-1]) if p.strip("*")), "")
        if parent:
            tokens.append("in:" + parent[:32] + "|" + ext)
    if base.startswith("."):
        tokens.append("hidden")
    return tuple(dict.fromkeys(tokens))


def path_shape(path: str) -> str:
    """A short normalised rendering of a path for people (``/var/www/releases/*/index.php``)."""
    return _DIGITS_RE.sub("*", _HEX_RE.sub("*", _MIXED_RE.sub("*", path[:MAX_TEXT]))).replace("**", "*")


def command_tokens(command: str, hash_names: bool = True) -> Tuple[str, ...]:
    """Tokens of a command line: the program, its normalised words, and shell constructs.

    Shell metacharacters (redirections, pipes, ``/dev/tcp``) are kept as tokens of their own
    because they are what separates ``bash -i >& /dev/tcp/…`` from an ordinary ``bash`` call.
    """
    return _command_tokens(command[:MAX_TEXT], hash_names)


@lru_cache(maxsize=65536)
def _command_tokens(command: str, hash_names: bool = True) -> Tuple[str, ...]:
    command = strip_shapes(command)
    tokens: List[str] = []
    parts = command.split()
    if parts:
        prog = parts[0].rsplit("/", 1)[-1]
        tokens.append("prog:" + strip_volatile(prog.lower(), hash_names)[:64])
    for m in _SHELL_META_RE.findall(command):
        tokens.append("meta:" + m.lower())
    for p in parts[1:MAX_TOKENS]:
        if p.startswith("-") and len(p) < 24:
            tokens.append("flag:" + p)
        if _URLISH_RE.match(p):
            tokens.append("url:" + p.split("://", 1)[0].lower())
    # the shapes are already reduced, and reducing commutes with lower(): reduce only once
    words = [w for w in _CMD_SPLIT_RE.split(_strip_runs(command.lower(), hash_names)) if len(w) > 1 and not w.startswith("-") and _ALNUM_RE.search(w)]
    tokens.extend("w:" + w[:64] for w in words[:MAX_TOKENS])
    return tuple(dict.fromkeys(tokens))


def command_shape(command: str, limit: int = 160) -> str:
    """A command line as reasons quote it: one line, URL credentials hidden, at most ``limit``."""
    s = " ".join(hide_url_credentials(command).split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def account_class(uid) -> str:
    """The kind of account a numeric uid belongs to, by the usual Linux ranges (login.defs).

    ``root`` (0), ``system`` (1–999 and nobody, 65534: daemons such as www-data), ``person``
    (1000 and up: people and the accounts admins create), ``""`` when unknown or unset
    (auditd's 4294967295). Users of one class on a host are each other's peers."""
    try:
        n = int(str(uid).strip())
    except (TypeError, ValueError):
        return ""
    if n == 0:
        return "root"
    if 0 < n < 1000 or n == 65534:
        return "system"
    if 1000 <= n < 4294967295:
        return "person"
    return ""
