"""pandas DataFrames as alert sources: rows back to the nested dicts Wazuh wrote.

A frame from ``pd.read_json(lines=True)`` holds nested dicts, one from ``pd.json_normalize``
dotted columns; either way each row becomes an alert dict with dotted columns nested again and
missing cells (NaN, None, NaT, NA) left out, so the reader treats it like a line of alerts.json.
pandas is never imported here: a frame can only come from a program that imported it.
"""
from __future__ import annotations

import sys
from datetime import datetime
from typing import Any, Dict, Iterator, Tuple

__all__ = ["is_frame", "frame_rows"]

_MISSING = object()  # a cell without a value


def is_frame(obj: Any) -> bool:
    """Whether ``obj`` is a pandas DataFrame (False when pandas was never imported)."""
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(obj, pd.DataFrame)


def frame_rows(df: Any, step: int = 5000) -> Iterator[Dict[str, Any]]:
    """Rows of a DataFrame as alert dicts: dotted columns nested again, missing values dropped."""
    pd = sys.modules["pandas"]
    missing = (pd.NaT, pd.NA) if hasattr(pd, "NA") else (pd.NaT,)
    cols = [str(c) for c in df.columns]
    paths = [c.split(".") if "." in c else None for c in cols]
    for start in range(0, len(df), step):
        part = df.iloc[start:start + step]
        for values in part.itertuples(index=False, name=None):
            row: Dict[str, Any] = {}
            made: set = set()
            for col, path, v in zip(cols, paths, values):
                v = _plain(v, missing)
                if v is _MISSING:
                    continue
                if path is None:
                    old = row.get(col)
                    if isinstance(old, dict) and isinstance(v, dict):
                        merged = dict(v)
                        merged.update(old)
                        row[col] = merged
                    else:
                        row[col] = v
                    continue
                node = row
                ok = True
                for k in path[:-1]:
                    nxt = node.get(k)
                    if nxt is None:
                        nxt = node[k] = {}
                        made.add(id(nxt))
                    elif not isinstance(nxt, dict):
                        ok = False
                        break
                    elif id(nxt) not in made:
                        nxt = node[k] = dict(nxt)  # never change a dict the frame holds
                        made.add(id(nxt))
                    node = nxt
                if ok:
                    node[path[-1]] = v
                else:
                    row[col] = v
            yield row


def _plain(v: Any, missing: Tuple[Any, ...]) -> Any:
    """A cell as a plain JSON-like value; ``_MISSING`` for a missing one (NaN, None, NaT, NA)."""
    if v is None or v is missing[0] or (len(missing) > 1 and v is missing[1]):
        return _MISSING
    t = type(v)
    if t is float:
        return _MISSING if v != v else v
    if t is str or t is int or t is bool or t is dict or t is list:
        if t is dict:
            return dict(v)  # the frame's object must not be changed by later nesting
        return v
    if isinstance(v, datetime):
        return v.isoformat()
    mod = t.__module__
    if mod == "numpy":
        if hasattr(v, "tolist"):
            v = v.tolist()
            if isinstance(v, float) and v != v:
                return _MISSING
            return v
    return v


# --- planning and the public entry points -----------------------------------------------------
