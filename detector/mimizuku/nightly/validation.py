"""Whether a newly trained model may replace the one in use: enough alerts per detector,
calibrated scores, and an anomaly rate on the most recent day within bounds."""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.engine.flag_rule import count_flagged
from mimizuku.nightly.config import RetrainConfig

__all__ = ["Validation", "validate", "choose_validation_day"]


@dataclass
class Validation:
    ok: bool = True
    reasons: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)
    detectors: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    day: Dict[str, Any] = field(default_factory=dict)

    def refuse(self, why: str) -> None:
        self.ok = False
        self.reasons.append(why)

    def as_dict(self) -> Dict[str, Any]:
        return {"ok": self.ok, "reasons": self.reasons, "dropped": self.dropped,
                "detectors": self.detectors, "day": self.day}


def _training_anomaly_share(det: Any) -> Optional[float]:
    """Share of the (weighted) training alerts whose calibrated score reaches the threshold."""
    cal = getattr(det, "calibrator_", None)
    values, tail = getattr(cal, "values_", None), getattr(cal, "tail_", None)
    if values is None or tail is None or len(values) == 0:
        return None
    import numpy as np

    sc = np.asarray(det.calibrate(values), dtype=float)
    above = np.flatnonzero(sc >= det.threshold_)
    return float(tail[above[0]]) if above.size else 0.0


def validate(new: Any, current: Any, cfg: RetrainConfig, *, day_records: Optional[Sequence[Dict[str, Any]]],
             day: Optional[str], prev_day: Tuple[int, int]) -> Validation:
    """Decide whether ``new`` may replace ``current`` (see the module docstring)."""
    import numpy as np

    v = Validation()
    cur_alerts: Dict[str, int] = {}
    if current is not None:
        for name, d in current.detectors_.items():
            cur_alerts[name] = int(getattr(d, "n_alerts_", 0))
    # 1. enough alerts per detector
    for name in list(new.detectors) if not getattr(new, "rules", None) else list(new.detectors_):
        need = int(cfg.min_alerts.get(name, 0))
        det = new.detectors_.get(name)
        n = int(getattr(det, "n_alerts_", 0)) if det is not None else 0
        if n >= need:
            continue
        why = f"{name}: {n} alert(s), fewer than the minimum {need}"
        if name in cur_alerts:  # never trade a detector in use for none
            v.refuse(f"{why} (the current model learned from {cur_alerts[name]})")
        elif det is not None:
            v.dropped[name] = why
            del new.detectors_[name]
            new.skipped_detectors_[name] = why + " (dropped by validation)"
    if not new.detectors_:
        v.refuse("no detector has enough alerts to be used")
    # 2. calibration
    for name, d in new.detectors_.items():
        thr = float(getattr(d, "threshold_", float("nan")))
        share = _training_anomaly_share(d)
        c = float(getattr(d, "contamination", cfg.params.get("contamination", DEFAULT_CONTAMINATION)) or 0.0)
        # the share the threshold was drawn at: a training too small for ``contamination`` rests
        # it on MIN_TAIL_ALERTS alerts instead (mimizuku.engine.calibration)
        c = max(c, float(getattr(getattr(d, "calibrator_", None), "effective_contamination_", 0.0) or 0.0))
        v.detectors[name] = {"alerts": int(getattr(d, "n_alerts_", 0)), "situations": int(getattr(d, "n_keys_", 0)),
                             "threshold": round(thr, 6) if math.isfinite(thr) else None,
                             "train_anomaly_share": None if share is None else round(share, 6)}
        if not (math.isfinite(thr) and 0.0 < thr <= 1.0):
            v.refuse(f"{name}: threshold {thr!r} is not a calibrated score in (0, 1]")
            continue
        cal = getattr(d, "calibrator_", None)
        values = getattr(cal, "values_", None)
        if values is not None and len(values):
            sc = np.asarray(d.calibrate(values), dtype=float)
            if not np.isfinite(sc).all() or sc.min() < 0.0 or sc.max() > 1.0:
                v.refuse(f"{name}: calibrated training scores fall outside [0, 1]")
        if share is not None and share > cfg.calibration_tolerance * c + 1e-12:
            v.refuse(f"{name}: {share:.2%} of the training alerts score above the threshold, "
                     f"expected about {c:.2%} (contamination)")
    # 3. the most recent day, against the current model on the same day
    if day_records is not None:
        n = len(day_records)
        bad = [r for r in day_records if not (isinstance(r.get("score"), (int, float))
                                              and 0.0 <= float(r["score"]) <= 1.0)]
        if bad:
            v.refuse(f"{len(bad)} score(s) of {day} outside [0, 1]")
        # flagged as the flag rule has it, as the anomaly filter counts the current model's: a
        # burst's repeats included
        k = count_flagged(day_records)
        prev_n, prev_k = prev_day
        v.day = {"date": day, "alerts": n, "anomalies": k, "rate": round(k / n, 6) if n else None}
        if n == 0:
            v.day["note"] = "no alerts that day: rate check skipped"
        elif current is not None and prev_n:
            allowed = max(cfg.max_rate_ratio * prev_k, cfg.rate_floor * n, cfg.min_count)
            v.day.update(previous_alerts=prev_n, previous_anomalies=prev_k,
                         previous_rate=round(prev_k / prev_n, 6), allowed=int(math.floor(allowed)))
            if k > allowed:
                v.refuse(f"anomaly rate on {day} is {k}/{n} ({k / n:.2%}), the current model's "
                         f"{prev_k}/{prev_n} ({prev_k / prev_n:.2%}); allowed at most {int(allowed)}")
        else:
            # a first model has nothing to compare with: its *raised* anomalies are bounded (a
            # burst is one story: a scan's thousand repeats are not a thousand anomalies, and a
            # day under attack must not make the first model look broken). An anomaly folded into
            # its account's story (mimizuku.engine.stories) is a situation of its own, so it counts:
            # a broken model must not pass because its flood was told as a few stories
            raised = sum(1 for r in day_records if r.get("anomaly") or r.get("story"))
            allowed = max(cfg.max_day_rate * n, cfg.min_count)
            v.day.update(allowed=int(math.floor(allowed)), raised=raised)
            if raised > allowed:
                v.refuse(f"raised anomalies on {day}: {raised} of {n} alerts ({raised / n:.2%}), above the "
                         f"bound {cfg.max_day_rate:.2%} for a first model")
    return v


def choose_validation_day(per_day: Counter, batch_day: date) -> Optional[str]:
    """The batch day if it had alerts, else the latest earlier day that did."""
    want = batch_day.isoformat()
    if per_day.get(want):
        return want
    days = sorted(d for d, n in per_day.items() if n and d != "-" and d <= want)
    return days[-1] if days else None
