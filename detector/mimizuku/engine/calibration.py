"""Raw detector scores → calibrated scores in [0, 1], a threshold and severities.

The one place where raw scores (LOF values, DBSCAN distances: higher = more anomalous) become
something a person can compare across detectors. A raw score is mapped to its upper-tail
probability under the (weighted) training scores — "how much of normal activity looked at
least this unusual" — and that probability onto a log scale:

    score = log(p) / log(floor)          (clipped to [0, 1])

so the same score means the same rarity for every detector. ``contamination`` fixes the
threshold: an alert is anomalous when p <= contamination, i.e. score >= log(c)/log(floor).
Beyond the largest training score the tail starts at ``1 / (training weight + 1)`` (nothing in
training was that unusual: a conformal p-value) and decays exponentially, so unseen extremes still
rank (no ties at 1.0 that would blur the ordering).
"""
from __future__ import annotations

import math

import numpy as np

from mimizuku.core.records import DEFAULT_CONTAMINATION, SCORE_FLOOR

#: The fewest training alerts a threshold may rest on. A tail share of ``contamination`` among
#: ``N`` training alerts is ``contamination × N`` alerts: with 30,000 alerts and 1e-4, three —
#: noise, and anything a little past them would be "rarer than training". So the threshold is
#: drawn at the share ``max(contamination, MIN_TAIL_ALERTS / N)``: small or short trainings flag
#: at what they can resolve (``effective_contamination_``), large ones at ``contamination``.
#: Never more than ``MAX_RELAX`` times ``contamination``, though: a tiny training would otherwise
#: flag a tenth of what it saw. Chosen on the tuning sets (docs/detection.md).
MIN_TAIL_ALERTS = 20
MAX_RELAX = 10.0


class TailCalibrator:
    """Weighted empirical upper-tail calibration (fit on training raw scores)."""

    def __init__(self, contamination: float = DEFAULT_CONTAMINATION, floor: float = SCORE_FLOOR,
                 min_tail: float = MIN_TAIL_ALERTS):
        self.contamination = contamination
        self.floor = floor
        self.min_tail = min_tail

    def fit(self, raw, sample_weight=None) -> "TailCalibrator":
        raw = np.asarray(raw, dtype=float)
        if raw.size == 0:
            raise ValueError("cannot calibrate on an empty set of training scores")
        w = np.ones_like(raw) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        order = np.argsort(raw, kind="mergesort")
        raw, w = raw[order], w[order]
        values, start = np.unique(raw, return_index=True)
        mass = np.add.reduceat(w, start)
        total = float(mass.sum())
        # tail_[i] = share of training weight with raw >= values_[i]
        self.values_ = values
        self.tail_ = np.cumsum(mass[::-1])[::-1] / total
        self.total_weight_ = total
        top = values[-1]
        # spread of the upper tail: how fast to decay beyond the training maximum
        hi = np.searchsorted(self.tail_, 0.01, side="right")  # first index whose tail share < 1 %
        ref = values[max(0, min(hi, len(values) - 1) - 1)] if len(values) > 1 else 0.0
        self.tail_scale_ = float(max(top - ref, 0.05 * max(abs(top), 1e-3), 1e-6))
        c = float(self.contamination)
        self.effective_contamination_ = max(c, min(MAX_RELAX * c, float(self.min_tail) / total))
        self.threshold_ = self.score_from_p(self.effective_contamination_)
        return self

    def score_from_p(self, p):
        p = np.clip(np.asarray(p, dtype=float), self.floor, 1.0)
        return np.clip(np.log(p) / math.log(self.floor), 0.0, 1.0) + 0.0  # + 0.0: no "-0.0" scores

    def tail_probability(self, raw) -> np.ndarray:
        raw = np.asarray(raw, dtype=float)
        idx = np.searchsorted(self.values_, raw, side="left")  # first value >= raw
        inside = idx < len(self.values_)
        p = np.empty_like(raw)
        p[inside] = self.tail_[idx[inside]]
        over = ~inside
        if over.any():
            # nothing in training was this unusual: as a conformal p-value, at most one in
            # (training weight + 1) — not half the share of the training maximum, which may be
            # a situation seen hundreds of times and would cap every novelty at its rarity
            last = min(self.tail_[-1] * 0.5, 1.0 / (self.total_weight_ + 1.0))
            p[over] = last * np.exp(-(raw[over] - self.values_[-1]) / self.tail_scale_)
        return p

    def transform(self, raw) -> np.ndarray:
        """Calibrated scores in [0, 1] (higher = rarer than more of the training data)."""
        return self.score_from_p(self.tail_probability(raw))


def severity(score: float, threshold: float, anomaly: bool) -> str:
    """Severity band of an anomaly: the way from the threshold to 1.0 cut in four."""
    if not anomaly:
        return "none"
    span = max(1.0 - threshold, 1e-9)
    x = (score - threshold) / span
    if x >= 0.75:
        return "critical"
    if x >= 0.45:
        return "high"
    if x >= 0.2:
        return "medium"
    return "low"
