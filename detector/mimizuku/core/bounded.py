"""Bounded memo maps: a full one drops its oldest quarter (dicts keep insertion order).

Shared by the detectors' memo caches, the fleet-wave tracker, the repeat windows and the process
lineage: everything the resident scorer keeps per distinct key must stay under a cap, and clearing
a full map at once makes the next batches recompute every frequent key together (a latency
spike). Dropping the oldest quarter spreads that cost. Standard library only.
"""
from __future__ import annotations

from itertools import islice
from typing import Any, Dict


def make_room(cache: Dict[Any, Any], cap: int, incoming: int = 1) -> None:
    """Drop the oldest entries of ``cache`` so that ``incoming`` new ones fit under ``cap``:
    a quarter of it, or more if the batch needs more room."""
    if len(cache) + incoming > cap:
        drop = max(len(cache) // 4, len(cache) + incoming - cap)
        for k in list(islice(cache, drop)):
            del cache[k]


def put_newest(d: Dict[Any, Any], key: Any, value: Any, cap: int) -> None:
    """Insert ``key`` as the newest entry (moved to the end if present); a full map makes room."""
    if key in d:
        del d[key]
    else:
        make_room(d, cap)
    d[key] = value
