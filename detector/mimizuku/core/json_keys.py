"""Hashable keys (tuples of text, numbers, None, nested tuples) as JSON values and back.

The detectors' stream state is keyed by tuples (a situation, a rate key); JSON has no tuple, and
a mapping's keys must be strings. A key is written as nested lists and read back as nested
tuples (a key never holds a list: lists are not hashable). Anything else a key might hold is
refused (``TypeError``) rather than written as something it would not read back as.

Standard library only.
"""
from __future__ import annotations

from typing import Any, Hashable, Iterable, List, Sequence

__all__ = ["encode_key", "decode_key", "keyed_rows"]

_SCALARS = (str, int, float, bool, type(None))


def encode_key(key: Hashable) -> Any:
    """``key`` as a JSON value: tuples become lists, scalars stay (``TypeError`` for the rest)."""
    if isinstance(key, tuple):
        return [encode_key(k) for k in key]
    if isinstance(key, _SCALARS):
        return key
    raise TypeError(f"a key of type {type(key).__name__} cannot be written as JSON")


def keyed_rows(rows: Iterable[Sequence[Any]]) -> List[List[Any]]:
    """Rows ``(key, *values)`` as JSON rows ``[written key, *values]``; a row whose key no JSON
    can hold is left out (what every stream-state piece writes: its entries, keyed by tuples)."""
    out = []
    for key, *values in rows:
        try:
            out.append([encode_key(key), *values])
        except TypeError:
            continue
    return out


def decode_key(value: Any) -> Hashable:
    """The key ``encode_key`` wrote: lists become tuples (``TypeError`` for what it never writes)."""
    if isinstance(value, list):
        return tuple(decode_key(v) for v in value)
    if isinstance(value, _SCALARS):
        return value
    raise TypeError(f"a {type(value).__name__} is not a written key")
