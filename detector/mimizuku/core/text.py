"""Attacker-controlled text made safe for one line of a log or a terminal.

Paths, commands, user names and error messages quoted from alerts come from agents, which are
not trusted: a newline would forge a log line, an escape sequence would rewrite a terminal. Every
place that prints such text goes through :func:`printable`: control and other non-printable
characters become ``\\xNN`` / ``\\uNNNN`` escapes and the length is capped.
"""
from __future__ import annotations

from typing import Any


def printable(text: Any, limit: int = 500, *, ellipsis: str = "...") -> str:
    """``text`` with every non-printable character escaped, at most ``limit`` characters of it
    (then ``ellipsis``). Spaces stay; tabs, newlines, escapes, surrogates and format characters
    are escaped."""
    s = str(text)
    cut = s[:limit]
    if cut.isprintable():
        out = cut
    else:
        out = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}"
                      for ch in cut)
    return out + (ellipsis if len(s) > limit else "")
