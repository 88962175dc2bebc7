"""Attacker-controlled text made safe for one line of a log or a terminal.

Paths, commands, user names and error messages quoted from alerts come from agents, which are
not trusted: a newline would forge a log line, an escape sequence would rewrite a terminal. Every
place that prints such text goes through :func:`printable`: control and other non-printable
characters become ``\\xNN`` / ``\\uNNNN`` escapes and the length is capped.
"""
from __future__ import annotations

from typing import Any


def printable(text: Any, limit: int = 500, *, ellipsis: str = "...") -> str:
    """``text`` with every non-printable character escaped, at most ``limit`` characters long
    (cut text ends in ``ellipsis``, within the limit, so table columns stay aligned). Spaces stay;
    tabs, newlines, escapes, surrogates and format characters become ``\\xNN`` / ``\\uNNNN``."""
    s = str(text)
    head = s[: limit + 1]  # escapes only lengthen: this much input is always enough
    out = head if head.isprintable() else "".join(
        ch if ch.isprintable() else f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" for ch in head)
    if len(out) <= limit and len(head) == len(s):
        return out
    return out[: max(0, limit - len(ellipsis))] + ellipsis
