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
    """The alert as sorted, compact JSON bytes (orjson when installed: the same bytes, faster)."""
    try:
        import orjson

        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
    except Exception:  # orjson missing or an exotic value: the slower, more lenient path
        return json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode("utf-8", "replace")


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
