"""The stream state of a model as a bounded, versioned JSON file, so scoring goes on where it was.

A rate window (the context detector's "source X produced 394 alerts within 60 s"), a repeat
window and a fleet wave exist only in the process that follows the stream. The resident scorer
keeps them in memory; the integration's in-process path (the scorer is down, one process per
alert) starts empty on every call, so a scan scored there looked like one alert at a time
(measured: a dirb scan at 42 % in-process against 42 -> 72 % in the scorer). So the scorer writes
what it follows to ``<spool>/stream-state.json`` every ``stream_state_interval`` seconds and when
it stops; the in-process path reads it before scoring and writes it back after, and a scorer that
starts reads it too: the stream goes on across restarts, and across the two paths.

The file is JSON, never a pickle (anyone who can write the spool could otherwise run code in the
scorer); a damaged, foreign, oversized or symlinked file is refused with ``SnapshotError`` and the
stream starts empty, as it did before. Each piece is bounded (``MAX_KEYS`` entries, the most
recent) and taken only by a detector whose window is the same (``import_stream_state``); what no
window covers any more is dropped by the windows themselves as time moves on. The processes the
lineage follows (``ProcessLineage.export_stream_state``: the channel each one runs in) go along,
and so do the agents' and accounts' open stories (``mimizuku.engine.stories``).
"""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from mimizuku.core.atomic import write_atomic
from mimizuku.core.json_keys import decode_key, keyed_rows

__all__ = ["FORMAT", "FILE_NAME", "MAX_BYTES", "MAX_KEYS", "SnapshotError", "export_snapshot",
           "import_snapshot", "save_snapshot", "load_snapshot", "restore_snapshot"]

FORMAT = "mimizuku-stream-state/1"
FILE_NAME = "stream-state.json"
#: the most a snapshot may weigh; a bigger one is neither written nor read
MAX_BYTES = 16 << 20
#: entries kept per piece of each detector (the most recent)
MAX_KEYS = 20_000


def pieces() -> Dict[str, Any]:
    """The classes of the pieces a detector exports (``Detector._STREAM``), by piece name.
    Imported here, not at the top: the per-alert call and the scorer import this module (its
    file name, its readers) before anything loads the engine's numerics."""
    from mimizuku.engine.detectors.context import RateTracker
    from mimizuku.engine.fleet import FleetWave
    from mimizuku.engine.repeats import RepeatWindows

    return {"rates": RateTracker, "repeats": RepeatWindows, "wave": FleetWave}


class SnapshotError(Exception):
    """A stream-state file that cannot be used (the stream starts empty)."""


def export_snapshot(model: Any, *, max_keys: int = MAX_KEYS, now: Optional[float] = None) -> Dict[str, Any]:
    """The stream state ``model`` (a fitted ``Mimizuku``) follows now, as a JSON document."""
    classes = pieces()
    detectors: Dict[str, Dict[str, Any]] = {}
    for name, det in model.detectors_.items():
        written = {}
        for piece, (window, obj) in det.export_stream_state().items():
            if piece in classes and isinstance(obj, classes[piece]) and window == obj.window:
                written[piece] = obj.to_json(max_keys)
        if written:
            detectors[name] = written
    doc = {"format": FORMAT, "model_version": getattr(model, "model_version_", None),
           "written_at": round(time.time() if now is None else now, 3), "detectors": detectors}
    lineage = getattr(model, "lineage_", None)
    if lineage is not None:
        doc["lineage"] = _lineage_json(lineage.export_stream_state(), max_keys)
    stories = getattr(model, "stories", None)
    if stories is not None and len(stories):
        doc["stories"] = stories.to_json(max_keys)
    return doc


def _lineage_json(state: Dict[str, Any], max_keys: int) -> Dict[str, Any]:
    """The processes the lineage follows: (agent, pid) -> (channel, seen at), and per agent the
    package run in progress; the most recent ``max_keys`` of each."""
    return {part: keyed_rows((key, channel, seen)
                             for key, (channel, seen) in list(state.get(part, {}).items())[-max_keys:])
            for part in ("procs", "package_runs")}


def _lineage_state(doc: Dict[str, Any]) -> Dict[str, Any]:
    state: Dict[str, Any] = {}
    for part in ("procs", "package_runs"):
        rows = {}
        for key, channel, seen in doc[part]:
            if not isinstance(channel, str) or not (seen is None or type(seen) is int):
                raise ValueError("a followed process is (key, channel, whole seconds or null)")
            rows[decode_key(key)] = (channel, seen)
        state[part] = rows
    return state


def import_snapshot(model: Any, doc: Dict[str, Any]) -> Dict[str, List[str]]:
    """Continue the stream of ``doc`` in ``model``: per detector, the pieces taken (a piece whose
    window differs from this detector's starts empty), and ``lineage`` when the processes it
    followed were taken. ``SnapshotError`` for a document that is not a snapshot, or damaged:
    nothing is taken then."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("detectors"), dict):
        raise SnapshotError(f"not a stream-state document ({FORMAT})")
    classes = pieces()
    staged: Dict[str, Dict[str, Any]] = {}
    lineage = getattr(model, "lineage_", None)
    followed = stories = None
    try:
        for name, given in doc["detectors"].items():
            if name not in model.detectors_ or not isinstance(given, dict):
                continue
            staged[name] = {piece: (body["window"], classes[piece].from_json(body))
                            for piece, body in given.items() if piece in classes}
        if lineage is not None and isinstance(doc.get("lineage"), dict):
            followed = _lineage_state(doc["lineage"])
        if isinstance(doc.get("stories"), dict) and hasattr(model, "stories"):
            from mimizuku.engine.stories import StoryWindows

            stories = StoryWindows.from_json(doc["stories"])
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise SnapshotError(f"damaged stream-state document: {type(e).__name__}: {e}") from None
    taken = {name: sorted(model.detectors_[name].import_stream_state(state)) for name, state in staged.items()}
    if followed is not None:
        lineage.import_stream_state(followed)
        taken["lineage"] = ["package_runs", "procs"]
    if stories is not None and stories.window == getattr(model, "story_window", None):
        model.stories = stories
        taken["stories"] = ["open"]
    return taken


def save_snapshot(path: "os.PathLike[str] | str", model: Any, *, mode: int = 0o640) -> int:
    """Write the stream state of ``model`` to ``path`` atomically; returns the bytes written
    (0 when over ``MAX_BYTES``: then nothing is written). Raises ``OSError``."""
    data = json.dumps(export_snapshot(model), separators=(",", ":"), ensure_ascii=True).encode("ascii")
    if len(data) > MAX_BYTES:
        return 0
    write_atomic(path, data, mode=mode, fsync=False)
    return len(data)


def load_snapshot(path: "os.PathLike[str] | str") -> Optional[Dict[str, Any]]:
    """The document at ``path``, or None when there is none. ``SnapshotError`` when it cannot be
    used: a symlink or not a regular file, over ``MAX_BYTES``, not JSON."""
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SnapshotError(f"cannot open {p}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise SnapshotError(f"{p} is not a regular file")
        if st.st_size > MAX_BYTES:
            raise SnapshotError(f"{p} is over {MAX_BYTES} bytes")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES + 1)
    finally:
        os.close(fd)
    try:
        return json.loads(data)
    except ValueError as e:
        raise SnapshotError(f"{p} is not JSON: {e}") from None


def restore_snapshot(path: "os.PathLike[str] | str", model: Any) -> Optional[Dict[str, List[str]]]:
    """Continue in ``model`` the stream written at ``path``: the pieces taken (``import_snapshot``),
    or None when there is no file. ``SnapshotError`` when the file cannot be used."""
    doc = load_snapshot(path)
    return None if doc is None else import_snapshot(model, doc)
