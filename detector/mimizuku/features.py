"""Turning paths and command lines into tokens a distance can compare.

Paths are normalised as the original Mimizuku did (hex runs of 7–40 characters and digit runs
removed, separators split) so that release directories, temp files and PIDs do not make every
path unique; directory prefixes are kept as tokens too, so that "where in the tree" counts.
Standard library only.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import List, Tuple

_HEX_RE = re.compile(r"[a-f0-9]{7,40}", re.IGNORECASE)
# random names: 6+ alphanumerics with a digit followed by a letter inside (cc0PJNd1, venv-amch1aed)
_MIXED_RE = re.compile(r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[0-9][A-Za-z])[A-Za-z0-9]{6,}(?![A-Za-z0-9])")
_DIGITS_RE = re.compile(r"\d+")
_PATH_SPLIT_RE = re.compile(r"[./\-_\\\s]+")
_CMD_SPLIT_RE = re.compile(r"[\s/=:,;'\"]+")
_SHELL_META_RE = re.compile(r"(>&|<&|&&|\|\||[|;<>`]|\$\(|/dev/tcp|/dev/udp|base64|\\x[0-9a-f]{2})", re.IGNORECASE)
_ALNUM_RE = re.compile(r"[a-z0-9]", re.IGNORECASE)
_URLISH_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)

MAX_TOKENS = 64
MAX_TEXT = 4096


def strip_volatile(text: str) -> str:
    """Remove random-looking names, hash-like hex runs and digit runs (temp files, release ids, PIDs)."""
    return _DIGITS_RE.sub("", _HEX_RE.sub("", _MIXED_RE.sub("*", text)))


@lru_cache(maxsize=65536)
def path_tokens(path: str) -> Tuple[str, ...]:
    """Tokens of a normalised path: its words, its first directory prefixes and its extension."""
    path = path[:MAX_TEXT]
    norm = strip_volatile(path.lower())
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


@lru_cache(maxsize=65536)
def command_tokens(command: str) -> Tuple[str, ...]:
    """Tokens of a command line: the program, its normalised words, and shell constructs.

    Shell metacharacters (redirections, pipes, ``/dev/tcp``) are kept as tokens of their own
    because they are what separates ``bash -i >& /dev/tcp/…`` from an ordinary ``bash`` call.
    """
    command = command[:MAX_TEXT]
    tokens: List[str] = []
    parts = command.split()
    if parts:
        prog = parts[0].rsplit("/", 1)[-1]
        tokens.append("prog:" + strip_volatile(prog.lower())[:64])
    for m in _SHELL_META_RE.findall(command):
        tokens.append("meta:" + m.lower())
    for p in parts[1:MAX_TOKENS]:
        if p.startswith("-") and len(p) < 24:
            tokens.append("flag:" + p)
        if _URLISH_RE.match(p):
            tokens.append("url:" + p.split("://", 1)[0].lower())
    words = [w for w in _CMD_SPLIT_RE.split(strip_volatile(command.lower())) if len(w) > 1 and not w.startswith("-") and _ALNUM_RE.search(w)]
    tokens.extend("w:" + w[:64] for w in words[:MAX_TOKENS])
    return tuple(dict.fromkeys(tokens))


def command_shape(command: str, limit: int = 160) -> str:
    s = " ".join(command.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"
