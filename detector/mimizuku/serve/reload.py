"""Hot reload: a new model is found, loaded and verified aside, and takes over the stream.

The scorer must not stop for a new model: loading one takes seconds (checksums, ownership, the
detectors' indexes: :func:`mimizuku.store.model_dir.load_model_dir`) and alerts keep coming. So
the model directory (or its ``current`` version pointer, :func:`resolve_model_dir`) is watched by
:func:`model_fingerprint`; on a change or ``SIGHUP`` (:meth:`ModelReload.request_reload`) the new
model is loaded in a background thread and offered to the scorer, which swaps it in between two
batches (:meth:`mimizuku.serve.pipeline.Scorer.offer`). A model that fails verification is
refused, the old one kept, and that is logged and shown by ``mimizuku status``.

The analysts' verdicts (``mimizuku feedback``, :mod:`mimizuku.store.feedback`) are watched the
same way but more often (:data:`FEEDBACK_POLL`): a changed store is read in the loop, between two
batches, and the model in use judges with it from the next batch on; a store that cannot be
read safely is refused (logged, shown by ``mimizuku status``) and the verdicts in use are kept.

What the old model was following goes on in the new one (:func:`carry_stream_state`): rate
windows, fleet waves in progress, open repeat windows and processes in flight, through the
detectors' and the lineage's public ``export_stream_state`` / ``import_stream_state``.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from mimizuku.engine.stories import StoryWindows

log = logging.getLogger("mimizuku.serve")

#: seconds between two looks at the verdict store: a verdict reaches the scorer within this (and
#: one batch), well inside the 5 s an analyst is promised
FEEDBACK_POLL = 1.0


# --- which model: the version pointer ------------------------------------------------------------

def resolve_model_dir(model_dir: Path) -> Path:
    """The directory holding the model to load, with every symlink resolved.

    The layout of :mod:`mimizuku.store.versions`: ``<root>/current -> versions/<version>`` when the
    root holds versions, else the root itself (a plain model directory). Resolving once, here,
    makes the fingerprint and the load refer to the same version directory even if ``current``
    moves in between (the next watch tick picks the newer one up).
    """
    try:
        from mimizuku.store.versions import resolve_model_dir as _resolve
    except ImportError:  # pragma: no cover - versions.py ships with the package
        def _resolve(root):
            cur = Path(root) / "current"
            return cur if os.path.lexists(cur) else Path(root)
    return Path(os.path.realpath(_resolve(model_dir)))


def model_fingerprint(model_dir: Path) -> Optional[Tuple[str, int, int, int]]:
    """What changes when another model is installed: resolved dir + its manifest's identity."""
    try:
        d = resolve_model_dir(model_dir)
        st = os.stat(d / "manifest.json")
    except (OSError, ValueError):
        return None
    return str(d), st.st_ino, st.st_mtime_ns, st.st_size


#: BLAS / OpenMP pools limited to one thread: the engine's matrices are small, and their worker
#: threads (spinning between calls) took a core from the server's loop and the clients under steady
#: load (p99 latency 160 ms -> 25 ms at 3,000 alerts/s on 2 cores).
MATH_THREADS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def single_threaded_math() -> None:
    """One thread for the math libraries, those loaded already and those to come."""
    for name in MATH_THREADS:
        os.environ.setdefault(name, "1")   # for libraries loaded later
    try:
        from threadpoolctl import threadpool_limits  # scikit-learn's dependency

        threadpool_limits(1)               # for those already loaded
    except Exception:  # pragma: no cover - threadpoolctl missing or odd platform
        pass


def carry_stream_state(old: Any, new: Any) -> bool:
    """Give the new model the old one's stream state: the context detector's per-agent rate
    windows (same window length only), each detector's fleet waves in progress and open repeat
    windows (``mimizuku.engine.repeats``; same window lengths only), the open stories
    (``mimizuku.engine.stories``; same window only), and the processes the lineage is following. Returns whether the rate windows came along; the rest is carried where it fits
    and otherwise starts empty."""
    old_d, new_d = getattr(old, "detectors_", {}), getattr(new, "detectors_", {})
    rates = False
    for name, nd in new_d.items():
        od = old_d.get(name)
        if od is None:
            continue
        try:
            taken = nd.import_stream_state(od.export_stream_state())
        except Exception:  # a detector that cannot take it: its stream starts empty
            continue
        rates = rates or (name == "context" and "rates" in taken)
    try:
        ol, nl = getattr(old, "lineage_", None), getattr(new, "lineage_", None)
        if ol is not None and nl is not None:
            nl.import_stream_state(ol.export_stream_state())
    except Exception:  # the new model follows processes from now on
        pass
    if isinstance(getattr(old, "stories", None), StoryWindows) and old.stories.window == getattr(new, "story_window", None):
        new.stories = old.stories  # the agents' and accounts' stories go on (mimizuku.engine.stories)
    return rates


# --- the watch and the loader --------------------------------------------------------------------

class ModelReload:
    """The :class:`~mimizuku.serve.server.Server`'s model watch and background loader (a mixin).

    The host provides ``cfg``, ``scorer``, ``error(message)`` and ``wake()``, and calls
    :meth:`init_reload` once, :meth:`check_model` on its watch timer and
    :meth:`reload_if_requested` once per round of its loop."""

    def init_reload(self) -> None:
        self.last_reload: Dict[str, Any] = {}
        self.model_version: Optional[str] = None
        self.model_manifest: Dict[str, Any] = {}
        self._reload_wanted = False
        self._loading = False
        self._failed_fp: Any = None
        self._offered_fp: Any = None
        self.model_event = threading.Event()   # tests: a model is in use
        self.reload_done = threading.Condition()
        self.reloads = 0
        self._next_reload_at = 0.0
        from mimizuku.store.feedback import FeedbackStore, default_path

        self.feedback_store = FeedbackStore(getattr(self.cfg, "feedback", None) or default_path(self.cfg.model_dir))
        self.feedback_set: Any = None
        self.feedback_status: Dict[str, Any] = {"path": str(self.feedback_store.path), "verdicts": 0}
        self._feedback_fp: Any = None
        self._feedback_next = 0.0
        self.feedback_done = threading.Condition()   # tests: a verdict store was read
        self.feedback_loads = 0

    def request_reload(self) -> str:
        """What ``SIGHUP`` and the ``reload`` request ask: load the model again at the next round,
        or, within ``reload_interval`` of the last one, once that interval is over (issue 17 item
        5: a client asking every half second kept half a core loading models). Returns what the
        asker is told: ``reload requested``, or ``throttled`` when it joins one already waiting."""
        waiting = self._reload_wanted or time.monotonic() < self._next_reload_at
        self._reload_wanted = True
        self.wake()
        return "throttled" if waiting else "reload requested"

    def reload_if_requested(self) -> None:
        now = time.monotonic()
        if now >= self._feedback_next:
            self._feedback_next = now + FEEDBACK_POLL
            self.check_feedback()
        if self._reload_wanted and now >= self._next_reload_at:
            self._reload_wanted = False
            self._next_reload_at = time.monotonic() + self.cfg.reload_interval
            log.info("reload requested")
            self.check_model(force=True)

    def check_feedback(self) -> None:
        """Loop thread, between batches: read the verdict store again if it changed, and judge
        with it from the next batch on (an unreadable or unsafe store is refused, the verdicts
        in use kept)."""
        fp = self.feedback_store.fingerprint()
        if fp == self._feedback_fp:
            return
        self._feedback_fp = fp
        from mimizuku.engine.feedback import FeedbackSet

        try:
            fs = FeedbackSet.from_json(self.feedback_store.load(), str(self.feedback_store.path))
        except Exception as e:
            self.error(f"verdict store {self.feedback_store.path} refused ({type(e).__name__}: {e}); "
                       f"still judging with the {len(self.feedback_set or ())} verdict(s) read before")
            self.feedback_status.update({"error": f"{type(e).__name__}: {e}", "at": time.time()})
        else:
            self.feedback_set = fs
            self.feedback_status = {"path": str(self.feedback_store.path), "verdicts": len(fs), "at": time.time()}
            if self.scorer.model is not None:
                self.scorer.model.set_feedback(fs)
            log.info("verdict store %s read: %d verdict(s)", self.feedback_store.path, len(fs))
        with self.feedback_done:
            self.feedback_loads += 1
            self.feedback_done.notify_all()

    def check_model(self, force: bool = False) -> None:
        """Load the model if it changed (``force``: even if not) in a background thread."""
        if self._loading:
            if force:
                self._reload_wanted = True  # after the load in progress
            return
        fp = model_fingerprint(self.cfg.model_dir)
        if fp is None:
            if force:
                self.error(f"reload requested but there is no model in {self.cfg.model_dir}")
            return
        if not force and fp in (self.scorer.fingerprint, self._failed_fp, self._offered_fp):
            return
        self._loading = True
        threading.Thread(target=self._load, args=(fp,), name="mimizuku-loader", daemon=True).start()

    def _load(self, fp: Any) -> None:
        """Loader thread: load and verify, then offer the model to the scorer (or refuse it)."""
        path = fp[0]
        t0 = time.monotonic()
        try:
            from mimizuku.engine.estimator import Mimizuku

            kw = {"ignore_users": list(self.cfg.options.ignore_users)} if self.cfg.options.ignore_users else {}
            model = Mimizuku.load_model(path, feedback=None, **kw)   # the watched verdicts: model_switched
            single_threaded_math()
            for det in model.detectors_.values():
                det.prepare()   # here, not in the first batch after the swap
        except Exception as e:
            kind = type(e).__name__
            self._failed_fp = fp
            kept = self.model_version or "none"
            self.error(f"model {path} refused ({kind}: {e}); still using {kept}")
            self.last_reload = {"at": time.time(), "ok": False, "path": path, "error": f"{kind}: {e}",
                                "kept": kept}
            with self.reload_done:
                self.reloads += 1
                self.reload_done.notify_all()
            self._loading = False
            self.wake()
            return
        log.info("model %s (version %s) verified and loaded in %.1f s", path,
                 getattr(model, "model_version_", "?"), time.monotonic() - t0)
        self._failed_fp = None
        self._offered_fp = fp
        self.scorer.offer(model, fp, path)
        self._loading = False

    def model_switched(self, new: Any, had_old: bool, carried: Optional[bool]) -> None:
        """Scorer thread, between two batches: the new model is in use."""
        prev = self.model_version
        if hasattr(new, "set_feedback"):
            new.set_feedback(self.feedback_set)
        self.model_version = getattr(new, "model_version_", "unversioned")
        self.model_manifest = getattr(new, "manifest_", {}) or {}
        self.last_reload = {"at": time.time(), "ok": True, "path": self.scorer.model_path,
                            "version": self.model_version, "previous": prev,
                            "rate_windows": ("carried over" if had_old else "continued from the stream state file")
                            if carried else ("empty" if had_old else "new")}
        if not had_old:
            log.info("scoring with model version %s (rate windows %s)", self.model_version,
                     "continued from the stream state file" if carried else "start empty")
        else:
            log.info("switched from model %s to %s (rate windows %s)", prev, self.model_version,
                     "carried over" if carried else "start empty")
        self.model_event.set()
        with self.reload_done:
            self.reloads += 1
            self.reload_done.notify_all()
        self.wake()
