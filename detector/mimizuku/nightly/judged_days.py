"""The judged days: which alerts of each complete day the model of that time flagged.

river's filter judges each sample once, with the model of its time. A run records, per complete
day it judged, the ids its model flagged (``<model-dir>/verdicts/<day>.json``); later runs take
those days as judged and score only the days nobody judged yet (normally yesterday and today).
A day is judged again when the analysts' verdicts (``mimizuku.engine.feedback``) changed since:
each file records the digest of the verdicts it was judged with.
"""
from __future__ import annotations

import json
import os
from datetime import date, timedelta
from typing import Any, Dict, Iterable, Optional

from mimizuku.store.versions import ModelStore

__all__ = ["VERDICTS", "load_verdicts", "save_verdicts"]

VERDICTS = "verdicts"
_VERDICT_MAX_BYTES = 64 << 20


def load_verdicts(store: ModelStore, days: Iterable[str], feedback: str = "") -> Dict[str, set]:
    """Ids flagged on each of ``days`` by the model of that time (days without a file, or judged
    with other analysts' verdicts than ``feedback``, a ``FeedbackSet.digest``: none)."""
    out: Dict[str, set] = {}
    for day in days:
        try:
            with open(store.root / VERDICTS / f"{day}.json", "rb") as f:
                obj = json.loads(f.read(_VERDICT_MAX_BYTES))
        except (OSError, ValueError):
            continue
        if (isinstance(obj, dict) and obj.get("day") == day and isinstance(obj.get("flagged"), list)
                and obj.get("feedback", "") == feedback):
            out[day] = {x for x in obj["flagged"] if isinstance(x, str)}
    return out


def save_verdicts(store: ModelStore, filt: Any, version: Optional[str], today: date,
                   days: int, feedback: str = "") -> int:
    """Record what the model in use flagged on each complete day it judged; prune old files."""
    d = store.root / VERDICTS
    d.mkdir(mode=0o750, exist_ok=True)
    n = 0
    for day, count in filt.judged_per_day.items():
        if day == "-" or day >= today.isoformat():
            continue  # today is still being written: judged again next time
        try:
            date.fromisoformat(day)
        except ValueError:
            continue
        data = json.dumps({"day": day, "model_version": version, "alerts": count, "feedback": feedback,
                           "flagged": sorted(set(filt.judged_flagged.get(day, [])))}).encode()
        tmp = d / f".{day}.json.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, d / f"{day}.json")
        n += 1
    oldest = (today - timedelta(days=days + 31)).isoformat()
    for p in d.iterdir():
        if p.name.endswith(".json") and p.name[:10] < oldest or p.name.startswith("."):
            try:
                p.unlink()
            except OSError:
                pass
    return n

