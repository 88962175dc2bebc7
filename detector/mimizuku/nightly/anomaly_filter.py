"""river's ``AnomalyFilter`` for a batch: never learn from what the model in use flags."""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from mimizuku.core import fields

__all__ = ["AnomalyFilter"]


class AnomalyFilter:
    """Streams training alerts, dropping those ``model`` flags as anomalies.

    The flag is the one ``Mimizuku.score_records`` gives (a detector's calibrated score at or
    above its threshold and not ignored, or an abuse file), computed per batch without building
    records; a burst's repeats (``repeat_of``, ``mimizuku.engine.repeats``) are flagged here too: they
    are as far from normal as the anomaly they repeat, only not raised again. Also counts the
    alerts per day and the current model's anomalies per day, for the validation of the next
    model. ``model=None`` lets everything through (and still counts);
    ``exclude=False`` scores and counts but lets the flagged alerts through too.

    ``verdicts``: river's filter judges each sample once, with the model of its time. A run
    records which alerts of each complete day its model flagged (``<model-dir>/verdicts``); later
    runs exclude those and score only the days nobody judged yet (normally yesterday and today),
    which keeps the nightly cost of the filter to about one day of scoring.

    ``share_keys(new_model)``: the current detectors have just computed each alert's key (the
    costly part: fields, tokens, rate windows); a new detector of the same class and parameters
    would compute the very same key from the very same stream, so it is handed over instead of
    computed twice. Rates in the keys are then counted over the whole stream, flagged alerts
    included — as the scorer counts them.
    """

    def __init__(self, model: Any = None, exclude: bool = True, batch_size: int = 2048, on_batch=None,
                 verdicts: Optional[Dict[str, Any]] = None):
        self.model = model
        self.exclude = exclude
        #: day -> ids an earlier run's model flagged that day: those days are not scored again
        self.verdicts: Dict[str, Any] = dict(verdicts or {})
        self.judged_per_day: Counter = Counter()
        self.judged_flagged: Dict[str, List[str]] = {}
        self.from_verdicts = 0
        self.batch_size = batch_size
        self.on_batch = on_batch
        self.seen = 0
        self.excluded = 0
        self.flagged = 0
        self.per_day: Counter = Counter()
        self.flagged_per_day: Counter = Counter()
        self.excluded_by_detector: Counter = Counter()
        self._memo: Dict[Tuple[str, int], Any] = {}
        self._shared: List[Any] = []
        self.shared_detectors: List[str] = []

    def __call__(self, alerts: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        dets = list(self.model.detectors_.values()) if self.model is not None else []
        for d in dets:
            d.start_stream()
        batch: List[Dict[str, Any]] = []
        for a in alerts:
            batch.append(a)
            if len(batch) >= self.batch_size:
                yield from self._pass(batch, dets)
                batch = []
        if batch:
            yield from self._pass(batch, dets)

    #: the counters a partition's filter hands back (``partial_state``) and a total adds up
    _COUNTERS = ("judged_per_day", "per_day", "flagged_per_day", "excluded_by_detector")
    _TOTALS = ("from_verdicts", "seen", "excluded", "flagged")

    def partial_state(self) -> Dict[str, Any]:
        """The counts and ids of what this filter judged: picklable, for ``merge_state``."""
        state: Dict[str, Any] = {k: getattr(self, k) for k in self._COUNTERS + self._TOTALS}
        state["judged_flagged"] = self.judged_flagged
        state["shared_detectors"] = list(self.shared_detectors)
        return state

    def merge_state(self, state: Dict[str, Any]) -> None:
        """Add a partition's ``partial_state`` (partitions in stream order) to this filter's
        counts: the total of a training read in partitions (mimizuku.nightly.partitions)."""
        for k in self._COUNTERS:
            getattr(self, k).update(state[k])
        for k in self._TOTALS:
            setattr(self, k, getattr(self, k) + int(state[k]))
        for day, ids in state["judged_flagged"].items():
            self.judged_flagged.setdefault(day, []).extend(ids)
        for name in state.get("shared_detectors", ()):
            if name not in self.shared_detectors:
                self.shared_detectors.append(name)

    def share_keys(self, new: Any) -> List[str]:
        """Let ``new``'s detectors reuse the keys computed here (see the class docstring)."""
        if self.model is None:
            return []
        try:
            dets = new._new_detectors()
        except Exception:  # pragma: no cover - an estimator without that hook: no sharing
            return []
        memo = self._memo
        for d in dets:
            old = self.model.detectors_.get(d.name)
            if old is not None and type(old) is type(d) and old.get_params() == d.get_params():
                def key(alert: Dict[str, Any], _orig=d.key, _name=d.name) -> Any:
                    k = memo.get((_name, id(alert)))
                    return _orig(alert) if k is None else k

                d.key = key  # shadows the method on this instance, removed by unshare()
                self.shared_detectors.append(d.name)
            new.add_rule(d)
        self._shared = dets
        self._new = new
        return list(self.shared_detectors)

    def unshare(self) -> None:
        """Undo ``share_keys`` (before the new model is saved: nothing of this may be pickled)."""
        for d in self._shared:
            d.__dict__.pop("key", None)
        if self._shared:
            self._new.rules = []
        self._shared = []
        self._memo.clear()

    def flags(self, batch: Sequence[Dict[str, Any]], dets: Sequence[Any]) -> List[bool]:
        hit = [False] * len(batch)
        by: List[Optional[str]] = [None] * len(batch)
        memo = self._memo
        memo.clear()  # the previous batch has been consumed
        share = bool(self._shared)
        for d in dets:
            idx = [i for i, a in enumerate(batch) if d.applies(a)]
            if not idx:
                continue
            keys = [d.key(batch[i]) for i in idx]
            if share:
                name = d.name
                for i, k in zip(idx, keys):
                    memo[(name, id(batch[i]))] = k
            scores = d.calibrate(d.raw_scores(keys))
            thr = d.threshold_
            for i, s in zip(idx, scores):
                if s >= thr and not hit[i] and d.ignored(batch[i]) is None:
                    hit[i] = True
                    by[i] = d.name
        m = self.model
        for i, a in enumerate(batch):
            if hit[i]:
                if m._ignored(a) is not None:
                    hit[i] = False
            elif m._abuse(a) is not None:
                hit[i] = True
                by[i] = "abuse"
        for i, h in enumerate(hit):
            if h:
                self.excluded_by_detector[by[i] or "?"] += 1
        return hit

    def _pass(self, batch: List[Dict[str, Any]], dets: Sequence[Any]) -> Iterator[Dict[str, Any]]:
        days = []
        for a in batch:
            ts = fields.timestamp(a)
            days.append(ts[:10] if ts and len(ts) >= 10 else "-")
        hit = [False] * len(batch)
        verdicts = self.verdicts
        if dets:
            need = [i for i, d in enumerate(days) if d not in verdicts]
            if need:
                sub = self.flags([batch[i] for i in need], dets)
                for i, h in zip(need, sub):
                    hit[i] = h
                    d = days[i]
                    self.judged_per_day[d] += 1
                    if h:
                        aid = fields.alert_id(batch[i])
                        if aid is not None:
                            self.judged_flagged.setdefault(d, []).append(aid)
        for i, d in enumerate(days):
            if d in verdicts:
                aid = fields.alert_id(batch[i])
                hit[i] = aid is not None and aid in verdicts[d]
                self.from_verdicts += 1
        for a, h, day in zip(batch, hit, days):
            self.per_day[day] += 1
            self.seen += 1
            if h:
                self.flagged_per_day[day] += 1
                self.flagged += 1
                if self.exclude:
                    self.excluded += 1
                    continue
            yield a
        if self.on_batch is not None:
            self.on_batch(self)

