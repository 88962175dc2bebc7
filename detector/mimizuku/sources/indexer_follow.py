"""Follow the Wazuh indexer: new alerts of every manager of a cluster, with a persisted bookmark.

Why: one resident scorer can then serve a whole cluster (``mimizuku serve --follow-indexer URL``)
instead of a daemon on every node. The follower has the interface of
:class:`mimizuku.sources.follow.AlertFollower` -- ``read(max_lines)`` -> ``[(line, mark)]``,
``commit(mark)``, ``save(fsync)``, ``close()`` -- so the daemon's pipeline is the same.

Alerts become searchable late and out of order (each node's filebeat buffer, the index refresh
interval of 5 s): a cursor on the last sort values would skip an alert that shows up after a
later one was read. So every poll re-queries from ``high-water - lag`` (the newest alert time
handled, minus the lag window) and drops what it has already handled, by document ``_id``:

1. an ids-only pass (``_source: false``) over ``timestamp >= high_water - lag`` finds the ids
   not handled yet -- the overlap costs ids and sort values, not whole alerts;
2. those documents are fetched (``ids`` query, same sort) and returned.

Bookmark (JSON, written atomically with ``os.replace``): the floor (where following began), the
high-water time of the handled alerts and the ids handled in ``[high_water - lag, high_water]``
with their times. Only *committed* alerts (scored and their events sent or kept) enter it.

Guarantee -- no alert missed, none scored twice, across restarts -- under one condition: every
alert is searchable within ``lag`` seconds of its ``timestamp``, and managers' clocks agree to
within that margin. Then an alert not yet visible when a later one was handled has a time above
``high_water - lag``, so a later poll still covers it; and every alert in the covered range that
was already handled is in the bookmark. An alert that becomes visible later than that is missed
(it is counted in no statistic, as nothing is seen of it): raise ``lag``. Uncommitted alerts are
read again after a restart (their times are above the bookmark's lower bound).
"""
from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from mimizuku.core.atomic import write_atomic
from mimizuku.core.logfn import LogFn, no_log
from mimizuku.sources.follow import FollowError
from mimizuku.sources.wcs import hit_alert

__all__ = ["IndexerBookmark", "IndexerFollower", "DEFAULT_LAG_S", "DEFAULT_INTERVAL_S"]

#: seconds an alert may take from its timestamp to being searchable (filebeat + refresh 5 s)
DEFAULT_LAG_S = 60.0
#: seconds between two polls once caught up
DEFAULT_INTERVAL_S = 5.0


@dataclass
class IndexerBookmark:
    """What ``mimizuku status`` shows of the follower's position (the id set is not shown)."""

    source: str
    floor_ms: Optional[int] = None        # alerts before this were never to be read
    high_water_ms: Optional[int] = None   # the newest alert time handled
    handled_ids: int = 0                  # ids remembered in the lag window


class IndexerFollower:
    """New alerts of an :class:`~mimizuku.sources.indexer.IndexerSource`, for ``mimizuku serve``.

    ``lag`` (seconds) is the guarantee's condition (see the module docstring); ``interval`` the
    pause between polls once caught up; ``from_start`` reads the whole index on the first start
    (``since`` a datetime/epoch seconds to start there), else following starts now.
    ``stats``: hits examined, duplicates dropped, alerts returned, polls, requests.
    """

    def __init__(self, source: Any, bookmark_file: "os.PathLike[str] | str", *,
                 lag: float = DEFAULT_LAG_S, interval: float = DEFAULT_INTERVAL_S,
                 from_start: bool = False, since: Optional[float] = None,
                 batch: int = 1000, log: Optional[LogFn] = None,
                 clock: Callable[[], float] = time.time) -> None:
        if lag < 0 or interval < 0:
            raise ValueError("lag and interval must be >= 0 seconds")
        self.source = source
        self.path = str(source)                     # shown in the daemon's messages
        self.bookmark_file = Path(bookmark_file)
        self.lag_ms = int(lag * 1000)
        self.interval = interval
        self.from_start = from_start
        self.since = since
        self.batch = max(1, int(batch))
        self.log = log or no_log
        self.clock = clock
        self.stats = {"polls": 0, "hits_seen": 0, "duplicates": 0, "returned": 0, "committed": 0,
                      "future_alerts": 0}
        # read side: what was handed out (committed or not), so a poll does not return it twice
        self._read: Dict[str, int] = {}
        self._read_hw: Optional[int] = None
        # committed side: what the bookmark holds
        self._done: Dict[str, int] = {}
        self._done_hw: Optional[int] = None
        self._floor: Optional[int] = None
        self._pending: Deque[Tuple[int, str, int]] = deque()   # (mark, id, time ms), in read order
        self._buf: Deque[Tuple[bytes, int]] = deque()
        self._seq = 0
        self._next_poll = 0.0
        self._dirty = False
        self._started = False
        self.bookmark: Optional[IndexerBookmark] = None

    # -- bookmark -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._started = True
        data = self._load()
        if data is None:
            if self.from_start:
                self._floor = int(self.since * 1000) if self.since is not None else None
            else:
                self._floor = int((self.since if self.since is not None else self.clock()) * 1000)
            self._dirty = True
            where = ("its start" if self._floor is None else
                     f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(self._floor / 1000))}")
            self.log("info", f"following {self.path} from {where} (no bookmark yet)")
        else:
            self._floor = data.get("floor_ms")
            self._done_hw = data.get("high_water_ms")
            self._done = {str(k): int(t) for t, k in data.get("handled", [])}
            self.log("info", f"resuming {self.path}: {len(self._done)} alert ids in the lag window")
        self._read = dict(self._done)
        self._read_hw = self._done_hw
        self._update_bookmark()

    def _load(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.bookmark_file, "rb") as f:
                data = json.loads(f.read(1 << 28).decode("utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise FollowError(f"bookmark {self.bookmark_file} is unreadable ({e}); move it away to "
                              "start following from now") from None
        ok = isinstance(data, dict) and data.get("kind") == "indexer" and \
            isinstance(data.get("handled", []), list) and \
            all(isinstance(x, list) and len(x) == 2 and isinstance(x[0], int) for x in data.get("handled", [])) and \
            all(isinstance(data.get(k), (int, type(None))) for k in ("floor_ms", "high_water_ms"))
        if not ok:
            raise FollowError(f"bookmark {self.bookmark_file} is not an indexer bookmark; move it away to "
                              "start following from now")
        if data.get("source") not in (None, self.path):
            self.log("warning", f"the bookmark was written for {data.get('source')}, now following "
                                f"{self.path}: using it anyway")
        return data

    def _update_bookmark(self) -> None:
        self.bookmark = IndexerBookmark(self.path, self._floor, self._done_hw, len(self._done))

    def save(self, fsync: bool = False) -> bool:
        """Persist the committed position if it moved; True when written."""
        if not self._started or not self._dirty:
            return False
        data = {"kind": "indexer", "version": 1, "source": self.path, "lag_s": self.lag_ms / 1000,
                "floor_ms": self._floor, "high_water_ms": self._done_hw,
                "handled": sorted([t, k] for k, t in self._done.items())}
        write_atomic(self.bookmark_file, json.dumps(data, separators=(",", ":")).encode("utf-8"), mode=0o640,
                     fsync=fsync)
        self._dirty = False
        return True

    def commit(self, mark: int) -> None:
        """The alert of ``mark`` and every one read before it have been handled."""
        moved = False
        while self._pending and self._pending[0][0] <= mark:
            _, key, t = self._pending.popleft()
            self._done[key] = t
            if self._done_hw is None or t > self._done_hw:
                if t <= self._now_ms() + self.lag_ms:  # a manager's clock far ahead must not skip others
                    self._done_hw = t
            moved = True
            self.stats["committed"] += 1
        if moved:
            self._prune(self._done, self._done_hw)
            self._dirty = True
            self._update_bookmark()

    def _prune(self, keys: Dict[str, int], hw: Optional[int]) -> None:
        if hw is None:
            return
        low = hw - self.lag_ms
        if len(keys) > 64 and min(keys.values()) >= low:
            return
        for k in [k for k, t in keys.items() if t < low]:
            del keys[k]

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    # -- reading ---------------------------------------------------------------------------------------
    def read(self, max_lines: int = 1000) -> List[Tuple[bytes, int]]:
        """Alerts available now (at most ``max_lines``), each as ``(JSON line, mark)``."""
        if not self._started:
            self.start()
        out: List[Tuple[bytes, int]] = []
        while len(out) < max_lines:
            if not self._buf:
                if self.clock() < self._next_poll:
                    break
                try:
                    found = self._poll()
                except Exception as e:  # IndexerError and anything the transport raises
                    self._next_poll = self.clock() + max(self.interval, 1.0)
                    raise FollowError(str(e)) from None
                if not found:
                    self._next_poll = self.clock() + self.interval
                    break
            out.append(self._buf.popleft())
        self.stats["returned"] += len(out)
        return out

    def _poll(self) -> int:
        """One step: the not yet handled alerts above ``high_water - lag`` (at most ``batch``)."""
        self.stats["polls"] += 1
        lower = None if self._read_hw is None else self._read_hw - self.lag_ms
        if self._floor is not None:
            lower = self._floor if lower is None else max(lower, self._floor)
        new: List[str] = []
        seen_now = set()
        for h in self.source.hits(lower, None, use_pit=False, source=False):
            self.stats["hits_seen"] += 1
            key = _key(h)
            if key in self._read or key in seen_now:
                self.stats["duplicates"] += 1
                continue
            seen_now.add(key)
            new.append(key)
            if len(new) >= self.batch:
                break
        if not new:
            return 0
        got = 0
        for h in self.source.hits(lower, None, use_pit=False, extra_query={"ids": {"values": new}},
                                  page_size=min(len(new), 10_000)):
            key = _key(h)
            if key in self._read:
                continue
            src = hit_alert(h, getattr(getattr(self.source, "config", None), "schema", "wazuh-4"))
            if src is None:
                continue
            t = _time_of(h)
            self._read[key] = t
            if self._read_hw is None or t > self._read_hw:
                if t <= self._now_ms() + self.lag_ms:
                    self._read_hw = t
                else:
                    self.stats["future_alerts"] += 1
            self._seq += 1
            self._pending.append((self._seq, key, t))
            self._buf.append((json.dumps(src, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
                              self._seq))
            got += 1
        self._prune(self._read, self._read_hw)
        return got

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if close is not None:
            close()
        self._buf.clear()


def _key(hit: Dict[str, Any]) -> str:
    """What makes a document the same document: its ``_id`` (kept across a reindex)."""
    k = hit.get("_id")
    if isinstance(k, str) and k:
        return k
    return json.dumps(hit.get("sort"), separators=(",", ":"))


def _time_of(hit: Dict[str, Any]) -> int:
    s = hit.get("sort")
    if isinstance(s, list) and s and isinstance(s[0], (int, float)) and not isinstance(s[0], bool):
        return int(s[0])
    return 0
