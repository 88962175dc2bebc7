"""What makes an alert the same alert, wherever it is counted.

The scorer's record id, the resident scorer's exactly-once journal and the SQL store's unique key
all need an identity for an alert. Wazuh gives each alert an ``id`` (unique per manager); an alert
without one (a hand-made file, another tool's export) is identified by a hash of its canonical
JSON, computed here and nowhere else, so the same alert gets the same identity in every room.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

PREFIX = "sha1:"


def canonical_json(obj: Any) -> bytes:
    """The alert as sorted, compact JSON bytes (orjson when installed: the same bytes, faster).

    Never raises: an alert nested deeper than either encoder goes (orjson stops at 255 levels,
    the json module at the interpreter's recursion limit) is written by a loop instead (issue 17,
    item 4: such an alert took the scorer down with RecursionError)."""
    try:
        import orjson

        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    except Exception:  # orjson missing or an exotic value: the slower, more lenient path
        try:
            return json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8", "replace")
        except (RecursionError, ValueError, TypeError):
            return _flat_json(obj).encode("utf-8", "replace")


def _flat_json(obj: Any) -> str:
    """Sorted, compact JSON of any depth, by an explicit stack (no recursion)."""
    out = []
    stack: list = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, Mapping):
            pairs = sorted(item.items(), key=lambda kv: str(kv[0]))
            stack.append(_Raw("}"))
            for i in range(len(pairs) - 1, -1, -1):      # pushed backwards: popped in order
                k, v = pairs[i]
                stack.append(v)
                stack.append(_Raw(json.dumps(str(k), ensure_ascii=False) + ":"))
                if i:
                    stack.append(_Raw(","))
            stack.append(_Raw("{"))
        elif isinstance(item, (list, tuple)):
            stack.append(_Raw("]"))
            for i in range(len(item) - 1, -1, -1):       # pushed backwards: popped in order
                stack.append(item[i])
                if i:
                    stack.append(_Raw(","))
            stack.append(_Raw("["))
        else:
            try:
                out.append(json.dumps(item, default=str, ensure_ascii=False))
            except (ValueError, TypeError):
                out.append(json.dumps(str(item), ensure_ascii=False))
    return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def content_id(obj: Any) -> str:
    """``sha1:<hex>`` of the canonical JSON: the id of an alert that has none."""
    return PREFIX + hashlib.sha1(canonical_json(obj)).hexdigest()


def bounded_id(text: str, max_len: int) -> str:
    """``text`` when it fits in ``max_len`` characters, else its ``sha1:`` hash (a column's width)."""
    return text if len(text) <= max_len else PREFIX + hashlib.sha1(text.encode("utf-8")).hexdigest()


def alert_key(alert: Mapping[str, Any]) -> str:
    """An alert across a cluster: its ``id`` with the manager that wrote it (ids are unique per
    manager only; one scorer may serve a whole cluster), else its content id."""
    aid = alert.get("id")
    if isinstance(aid, str) and aid:
        manager = alert.get("manager")
        name = manager.get("name") if isinstance(manager, Mapping) else None
        return f"{aid}@{name}" if isinstance(name, str) and name else aid
    return content_id(alert)
