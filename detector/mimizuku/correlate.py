"""Batch correlation: alerts that share a source or a user with an anomaly are part of its story.

A streaming scorer judges each alert when it arrives, so the failed logins that precede a
successful brute force, or the PAM session around an attacker's commands, look as ordinary as the
internet's background noise. With a whole day in hand (the nightly job, ``mimizuku score
--correlate``) we can do what an analyst does: group alerts into incidents by the entities they
share — the same source address or the same user on the same agent, within a time window — and
let each alert inherit a discounted share of the strongest anomaly it is tied to.

Only anomalies of at least ``min_severity`` seed an incident (a low-severity anomaly does not
drag its neighbours with it), a related alert's score is ``decay × seed score`` and is never
raised above its seed, and the reason names the seed, so the grouping can always be explained.
"""
from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any, Dict, Iterable, List, Optional, Tuple

from .alerts import parse_timestamp
from .calibration import SEVERITIES, severity

Entity = Tuple[str, str, str]


def entities(record: Dict[str, Any]) -> List[Entity]:
    """The (agent, kind, value) entities an alert involves: its source address and its users."""
    agent = record["agent"].get("name") or record["agent"].get("id") or "?"
    f = record.get("fields", {})
    out = []
    if f.get("srcip"):
        out.append((agent, "source", f["srcip"]))
    for key in ("user", "srcuser", "dstuser"):
        u = f.get(key)
        if u and u not in ("root", "SYSTEM"):  # everyone's alerts name root: not an identity
            out.append((agent, "user", u))
    return list(dict.fromkeys(out))


def correlate(records: Iterable[Dict[str, Any]], *, window: float = 900.0, decay: float = 0.9,
              min_severity: str = "medium") -> List[Dict[str, Any]]:
    """Return the records with related alerts lifted towards the anomalies they share an entity with.

    Records are copied, not modified. A lifted record gets ``related_to`` (the seed's id) and a
    reason; it becomes an anomaly only if the lifted score reaches its threshold.
    """
    recs = [dict(r) for r in records]
    floor = SEVERITIES.index(min_severity)
    times = [parse_timestamp(r.get("timestamp")) for r in recs]
    # seeds per entity, in time order
    seeds: Dict[Entity, List[Tuple[float, int]]] = defaultdict(list)
    for i, r in enumerate(recs):
        if r["anomaly"] and times[i] is not None and SEVERITIES.index(r["severity"]) >= floor:
            for e in entities(r):
                seeds[e].append((times[i], i))
    for lst in seeds.values():
        lst.sort()
    for i, r in enumerate(recs):
        t = times[i]
        if t is None:
            continue
        best: Optional[Tuple[float, int, Entity]] = None
        for e in entities(r):
            lst = seeds.get(e)
            if not lst:
                continue
            lo = bisect.bisect_left(lst, (t - window, -1))
            hi = bisect.bisect_right(lst, (t + window, len(recs)))
            for ts, j in lst[lo:hi]:
                if j == i:
                    continue
                s = recs[j]["score"]
                if best is None or s > best[0]:
                    best = (s, j, e)
        if best is None:
            continue
        lifted = round(decay * best[0], 6)
        if lifted <= r["score"]:
            continue
        seed = recs[best[1]]
        _, kind, value = best[2]
        dt = times[best[1]] - t
        when = f"{abs(dt):.0f} s {'before' if dt > 0 else 'after'} it" if dt else "at the same time"
        r["score"] = lifted
        r["score_pct"] = int(round(100 * lifted))
        r["related_to"] = seed["id"]
        if lifted >= r["threshold"] and not r["anomaly"] and not _ignored(r):
            r["anomaly"] = True
            r["severity"] = severity(lifted, r["threshold"], True)
            r["reasons"] = [f"same {kind} {value!r} on {seed['agent'].get('name')!r} as anomaly {seed['id']} "
                            f"({seed['detector']}, score {seed['score']:.2f}, {when}): "
                            + (seed["reasons"][0] if seed["reasons"] else "")]
    return recs


def _ignored(r: Dict[str, Any]) -> bool:
    return any(x.startswith("ignored:") for x in r.get("reasons", []))
