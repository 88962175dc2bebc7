"""What every detector shares: keys, weighted training, calibration, caching.

A detector sees an alert through its *key*: a small hashable tuple of the values it models
(for files: agent, path tokens, event, user, process). Training counts keys instead of keeping
rows, so a million alerts that repeat a few thousand situations cost a few thousand rows, and
duplicates become weights rather than the degenerate neighbourhoods that break LOF on raw rows.

Conventions (PyOD / scikit-learn): ``decision_scores_`` and ``raw_scores`` are raw, higher =
more anomalous; ``score_samples`` gives calibrated scores in [0, 1]; ``threshold_`` and
``predict`` (1 = anomaly) come from the one calibrator.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Dict, FrozenSet, Hashable, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from sklearn.base import BaseEstimator

from mimizuku.core import fields
from mimizuku.core.bounded import make_room
from mimizuku.engine.calibration import TailCalibrator
from mimizuku.engine.repeats import DEFAULT_GAP, Episode, RepeatWindows

Key = Tuple[Hashable, ...]

log = logging.getLogger(__name__)


class NotEnoughData(ValueError):
    """The detector saw too few alerts of its kind to learn what is normal."""


def user_matches(user: Optional[str], users: Iterable[str]) -> bool:
    return user is not None and user in set(users)


class Detector(BaseEstimator):
    """Base class: subclasses define ``name``, ``applies``, ``key``, ``_fit_keys``, ``_raw``."""

    name = "base"
    min_keys = 2  # distinct situations needed to fit

    # -- what subclasses provide -----------------------------------------------------------------
    def applies(self, alert: Dict[str, Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def key(self, alert: Dict[str, Any]) -> Key:  # pragma: no cover - abstract
        raise NotImplementedError

    def key_scheme(self) -> Any:
        """How ``key`` reads an alert beyond the parameters: equal for two detectors of one class
        and parameters whose keys may stand in for each other (``Mimizuku.same_keys_as``). A
        rule added to a key gives fitted models of before it another scheme."""
        return None

    def _fit_keys(self, keys: List[Key], weights: np.ndarray) -> np.ndarray:  # pragma: no cover
        """Fit on distinct keys; return the raw training score of each key."""
        raise NotImplementedError

    def _raw(self, keys: List[Key]) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def explain(self, key: Key, alert: Dict[str, Any]) -> List[str]:  # pragma: no cover
        raise NotImplementedError

    def is_new(self, key: Key) -> bool:
        """Whether the situation is new for its entity (agent, account): something it never did
        in training. Only a new situation may be annotated with an ATT&CK technique
        (``mimizuku.engine.techniques``); False by default: never."""
        return False

    def ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        """Why this alert must never be flagged by this detector (None if it may be)."""
        return None

    def defers(self, alert: Dict[str, Any]) -> Optional[str]:
        """Why this detector leaves this alert to the others, though it scored it (None: it
        does not). Unlike ``ignored``, the alert still trains it: only its flag is withheld."""
        return None

    def feedback_situation(self, key: Key) -> Optional[Tuple[str, str, str]]:
        """(what happened, agent, account) of a key, for analysts' verdicts
        (``mimizuku.engine.feedback``): what happened is the part of the key a verdict judges,
        without its entity, rates or waves, as canonical JSON text. None: this detector's
        alerts cannot be given a verdict."""
        return None

    # -- what a model file does not hold ---------------------------------------------------------
    #: memos: derived from the fitted state and rebuilt on first use. Dropped when pickled and
    #: when a refit in place begins (it must not answer from the model it replaces). Each class
    #: (mixins too) names only its own; ``_declared`` collects them along the MRO.
    _MEMOS: Tuple[str, ...] = ("_cache",)
    #: per-process state that is not a memo (stream and training state): never pickled
    _UNSAVED: Tuple[str, ...] = ("_counts", "_repeats")

    @classmethod
    def _declared(cls, name: str) -> FrozenSet[str]:
        return frozenset(a for c in cls.__mro__ for a in c.__dict__.get(name, ()))

    def start_stream(self) -> None:
        """Reset per-stream state (the context detector's rate windows; every detector's
        repeat windows). Subclasses that keep more call this first."""
        self._repeats = RepeatWindows(self.repeat_window)

    # -- the stream handed to a successor (the resident scorer's hot reload) ------------------------
    #: per-stream state a new model may continue: (piece, attribute, the window it depends on).
    #: Each class (mixins too) names only its own; ``_declared`` collects them along the MRO.
    _STREAM: Tuple[Tuple[str, str, str], ...] = (("repeats", "_repeats", "repeat_window"),)

    def export_stream_state(self) -> Dict[str, Tuple[Any, Any]]:
        """The stream state this detector holds: piece -> (its window, the state itself).

        The objects themselves, not copies: the detector exporting them is being replaced."""
        return {piece: (getattr(self, window, None), self.__dict__[attr])
                for piece, attr, window in self._declared("_STREAM") if attr in self.__dict__}

    def import_stream_state(self, state: Dict[str, Tuple[Any, Any]]) -> FrozenSet[str]:
        """Continue the stream another detector was following (``export_stream_state`` of the
        same detector in the model being replaced): each piece is taken only where its window is
        the same here; the others start empty. Returns the pieces taken."""
        taken = []
        for piece, attr, window in self._declared("_STREAM"):
            got = state.get(piece)
            if got is not None and got[0] == getattr(self, window, None):
                setattr(self, attr, got[1])
                taken.append(piece)
        return frozenset(taken)

    # -- repeats (mimizuku.engine.repeats) --------------------------------------------------------------
    #: the longest pause (seconds) inside one episode of a flagged situation: its alerts are
    #: counted with its opener until it pauses longer (a class default, so models pickled
    #: before it still load)
    repeat_window = DEFAULT_GAP
    #: what a repeat has in common with its anomaly, for its reason
    repeat_what = "the same situation"

    def repeat_situation(self, key: Key) -> Optional[Hashable]:
        """What makes two anomalies of this detector the same news, or None: never a repeat."""
        return None

    def judge_repeat(self, key: Key, alert: Dict[str, Any], band: str,
                     alert_id: str) -> Tuple[Optional[str], Optional[Episode]]:
        """(the id of the anomaly whose episode this flagged alert continues, or None: it is
        raised, opening an episode or updating one that climbed a band; the situation's episode
        as it stands after this alert, or None: this detector never groups it). An episode goes
        on while no pause of ``repeat_window`` seconds comes between its alerts."""
        situation = self.repeat_situation(key)
        if situation is None:
            return None, None
        windows = self._repeat_windows()
        opener = windows.judge(situation, fields.alert_seconds(alert), band, alert_id, fields.timestamp(alert) or "")
        return opener, windows.episode(situation)

    def _repeat_windows(self) -> RepeatWindows:
        windows = self.__dict__.get("_repeats")
        if windows is None:  # stream state handed over without it, or a model pickled before it
            windows = self._repeats = RepeatWindows(self.repeat_window)
        return windows

    # -- training --------------------------------------------------------------------------------
    def begin_fit(self) -> None:
        for memo in self._declared("_MEMOS"):
            self.__dict__.pop(memo, None)
        self._counts: Counter = Counter()
        self.start_stream()

    def observe(self, alert: Dict[str, Any], key: Optional[Key] = None) -> None:
        """Count a training alert. ``key``: its key, when a detector of the same class and
        parameters already computed it from the same stream (``Mimizuku.same_keys_as``)."""
        self._counts[self.key(alert) if key is None else key] += 1

    def training_counts(self) -> "Counter[Key]":
        """What ``observe`` (and ``merge_state``) counted since ``begin_fit``: situation ->
        alerts. Read only, between ``begin_fit`` and ``end_fit`` (the peer groups are learnt
        from it before the detectors fit)."""
        return self._counts

    def profile_terms(self, key: Key) -> Optional[Tuple[str, List[str]]]:
        """(agent, terms) a counted situation adds to its agent's profile, for the peer groups
        (``mimizuku.engine.peers``); None: this situation says nothing about a role."""
        return None

    #: the agents' peer groups (``mimizuku.engine.peers``), shared by the model's detectors; a
    #: class default (None: no back-off to peers), so models pickled before it still load
    peer_groups_ = None

    def use_peer_groups(self, groups) -> None:
        """Back off to these peer groups (before ``end_fit``: training scores use them too)."""
        self.peer_groups_ = groups

    def partial_state(self) -> Dict[str, Any]:
        """What ``observe`` has counted since ``begin_fit``: picklable, mergeable (never alerts)."""
        return {"counts": self._counts}

    def merge_state(self, state: Dict[str, Any]) -> None:
        """Add a partition's ``partial_state`` (after ``begin_fit``, partitions in stream order:
        situations keep the order they were first seen in). The state is consumed: it may be
        adopted as is."""
        counts = state["counts"]
        if not self._counts:
            self._counts = counts if type(counts) is Counter else Counter(counts)
        else:
            self._counts.update(counts)

    def end_fit(self) -> "Detector":
        counts = self._counts
        del self._counts
        if len(counts) < self.min_keys:
            raise NotEnoughData(
                f"{self.name}: {sum(counts.values())} alert(s) in {len(counts)} distinct situation(s); "
                f"at least {self.min_keys} distinct situations are needed"
            )
        keys = list(counts)
        weights = np.fromiter((counts[k] for k in keys), dtype=float, count=len(keys))
        self.n_alerts_ = int(weights.sum())
        self.n_keys_ = len(keys)
        raw = self._fit_keys(keys, weights)
        self.decision_scores_ = raw
        self.calibrator_ = TailCalibrator(self.contamination).fit(raw, weights)
        self.threshold_ = float(self.calibrator_.threshold_)
        self.start_stream()
        return self

    def note_resolution(self) -> None:
        """Say when training is too small for ``contamination``: the threshold then rests on
        ``MIN_TAIL_ALERTS`` training alerts (``mimizuku.engine.calibration``) instead. Called once
        a fit is complete (``fit``, ``Mimizuku.fit_partitions``)."""
        eff = getattr(self.calibrator_, "effective_contamination_", self.contamination)
        if eff > self.contamination:
            log.warning("%s: %s training alerts resolve a share of %.2g at best, not %g: flagging at %.2g "
                        "(train on more days for the finer budget)", self.name, f"{self.n_alerts_:,}", eff,
                        self.contamination, eff)

    def fit(self, alerts: Iterable[Dict[str, Any]], y=None) -> "Detector":
        self.begin_fit()
        for a in alerts:
            if self.applies(a) and not self.ignored(a):
                self.observe(a)
        self.end_fit()
        self.note_resolution()
        return self

    # -- scoring ---------------------------------------------------------------------------------
    #: entries per memo cache (keys' raw scores, nearest neighbours, reasons); a full cache drops
    #: its oldest quarter (make_room), so memory stays bounded. The resident scorer sets a smaller
    #: cap per instance.
    _CACHE_MAX = 200_000

    def raw_scores(self, keys: Sequence[Key]) -> np.ndarray:
        """Raw scores of keys, computed once per distinct key (memoised)."""
        cache = self.__dict__.setdefault("_cache", {})
        got = [cache.get(k) for k in keys]
        missing = list(dict.fromkeys(k for k, v in zip(keys, got) if v is None))
        if missing:
            fresh = {k: float(v) for k, v in zip(missing, self._raw(missing))}
            # make room only now, and answer from what was read before: the oldest quarter it
            # drops may hold keys of this very batch
            make_room(cache, self._CACHE_MAX, len(fresh))
            cache.update(fresh)
            got = [fresh[k] if v is None else v for k, v in zip(keys, got)]
        return np.fromiter(got, dtype=float, count=len(keys))

    def memo_sizes(self) -> Dict[str, int]:
        """Entries now held in each of this detector's memo caches (those that are maps), by
        memo. Public: every memo is bounded (``_CACHE_MAX``, its oldest quarter dropped when
        full), and a bound is checked from outside."""
        memos = {m: self.__dict__.get(m) for m in sorted(self._declared("_MEMOS"))}
        return {m: len(v) for m, v in memos.items() if isinstance(v, dict)}

    def prepare(self) -> None:
        """Build what scoring needs before the first alert, rather than in it (the resident
        scorer calls this while loading a model). Nothing by default."""

    def calibrate(self, raw) -> np.ndarray:
        return self.calibrator_.transform(raw)

    def score_samples(self, alerts: Sequence[Dict[str, Any]]) -> np.ndarray:
        """Calibrated scores in [0, 1] of alerts this detector applies to (higher = more anomalous)."""
        self.start_stream()
        return self.calibrate(self.raw_scores([self.key(a) for a in alerts]))

    def decision_function(self, alerts: Sequence[Dict[str, Any]]) -> np.ndarray:
        """Calibrated score minus the threshold: positive means anomalous."""
        return self.score_samples(alerts) - self.threshold_

    def predict(self, alerts: Sequence[Dict[str, Any]]) -> np.ndarray:
        """1 for anomalies, 0 for normal alerts (PyOD's convention)."""
        return (self.decision_function(alerts) >= 0).astype(int)

    def __getstate__(self):
        state = self.__dict__.copy()
        for k in self._declared("_MEMOS") | self._declared("_UNSAVED"):
            state.pop(k, None)
        return state

    @property
    def fitted(self) -> bool:
        return hasattr(self, "calibrator_")
