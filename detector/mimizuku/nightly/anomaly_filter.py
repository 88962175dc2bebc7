"""river's ``AnomalyFilter`` for a batch: never learn from what the model in use flags."""
from __future__ import annotations

from collections import Counter
from typing import Any, Dict, Iterable, Iterator, List, Optional

from mimizuku.core import fields

__all__ = ["AnomalyFilter"]


class AnomalyFilter:
    """Streams training alerts, dropping those ``model`` flags as anomalies.

    The flag is the flag rule's (``mimizuku.engine.flag_rule``, ``Verdict.flagged``), the one
    ``Mimizuku.score_records`` gives, judged per batch without building records
    (``Mimizuku.judge_batch``); a burst's repeats (``repeat_of``, ``mimizuku.engine.repeats``) are
    flagged here too: they are as far from normal as the anomaly they repeat, only not raised
    again. Also counts the
    alerts per day and the current model's anomalies per day, for the validation of the next
    model. ``model=None`` lets everything through (and still counts);
    ``exclude=False`` scores and counts but lets the flagged alerts through too.

    ``verdicts``: river's filter judges each sample once, with the model of its time. A run
    records which alerts of each complete day its model flagged (``<model-dir>/verdicts``); later
    runs exclude those and score only the days nobody judged yet (normally yesterday and today),
    which keeps the nightly cost of the filter to about one day of scoring.

    ``share_keys(new_model)``: the current detectors have just computed each alert's key (the
    costly part: fields, tokens, rate windows); a new detector of the same class and parameters
    would compute the very same key from the very same stream (``Mimizuku.same_keys_as``), so
    the filter, called with ``with_keys=True``, yields the ``ScoredAlert`` that carries them and
    ``Mimizuku.count_partition(..., shared_keys=...)`` counts them instead of computing them
    twice. Rates in the keys are then counted over the whole stream, flagged alerts included —
    as the scorer counts them.
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
        self.shared_detectors: List[str] = []

    def __call__(self, alerts: Iterable[Dict[str, Any]], *, with_keys: bool = False) -> Iterator[Any]:
        """The alerts that pass, in order. ``with_keys``: for those the model judged, the
        ``ScoredAlert`` (the alert with its keys) instead of the alert."""
        if self.model is not None:
            self.model.start_stream()
        batch: List[Dict[str, Any]] = []
        for a in alerts:
            batch.append(a)
            if len(batch) >= self.batch_size:
                yield from self._pass(batch, with_keys)
                batch = []
        if batch:
            yield from self._pass(batch, with_keys)

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
        """The detectors of ``new`` that may count the keys computed here (see the class docstring)."""
        if self.model is None:
            return []
        names = new.same_keys_as(self.model)
        self.shared_detectors.extend(n for n in names if n not in self.shared_detectors)
        return names

    def _pass(self, batch: List[Dict[str, Any]], with_keys: bool) -> Iterator[Any]:
        days = []
        for a in batch:
            ts = fields.timestamp(a)
            days.append(ts[:10] if ts and len(ts) >= 10 else "-")
        hit = [False] * len(batch)
        judged: List[Any] = list(batch) if with_keys else []
        verdicts = self.verdicts
        if self.model is not None:
            need = [i for i, d in enumerate(days) if d not in verdicts]
            if need:
                for i, s in zip(need, self.model.judge_batch([batch[i] for i in need])):
                    d = days[i]
                    self.judged_per_day[d] += 1
                    if with_keys:
                        judged[i] = s
                    if s.flagged:
                        hit[i] = True
                        self.excluded_by_detector[s.verdict.flagged_by or "?"] += 1
                        aid = fields.alert_id(batch[i])
                        if aid is not None:
                            self.judged_flagged.setdefault(d, []).append(aid)
        for i, d in enumerate(days):
            if d in verdicts:
                aid = fields.alert_id(batch[i])
                hit[i] = aid is not None and aid in verdicts[d]
                self.from_verdicts += 1
        for i, (h, day) in enumerate(zip(hit, days)):
            self.per_day[day] += 1
            self.seen += 1
            if h:
                self.flagged_per_day[day] += 1
                self.flagged += 1
                if self.exclude:
                    self.excluded += 1
                    continue
            yield judged[i] if with_keys else batch[i]
        if self.on_batch is not None:
            self.on_batch(self)
