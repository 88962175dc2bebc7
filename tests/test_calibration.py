"""Calibrated scores: in [0, 1], monotone, one threshold meaning the same rarity everywhere."""
import alert_factory as F
import numpy as np
import pytest

from mimizuku.engine.calibration import TailCalibrator, severity
from mimizuku.engine.estimator import Mimizuku


@pytest.mark.parametrize("c", [0.001, 0.01, 0.05])
def test_training_anomaly_rate_is_near_contamination(c):
    raw = np.random.default_rng(1).lognormal(size=50_000)
    cal = TailCalibrator(c).fit(raw)
    rate = (cal.transform(raw) >= cal.threshold_).mean()
    assert c * 0.8 <= rate <= c * 1.0001


def test_weights_count_like_repeated_samples():
    raw = np.array([0.1, 0.5, 2.0, 3.0])
    w = np.array([100, 10, 3, 1])
    a = TailCalibrator(0.05).fit(raw, w)
    b = TailCalibrator(0.05).fit(np.repeat(raw, w))
    q = np.array([0.0, 0.3, 1.0, 2.5, 10.0])
    assert np.allclose(a.transform(q), b.transform(q))


def test_scores_bounded_monotone_and_unseen_extremes_still_ordered():
    cal = TailCalibrator(0.001).fit(np.random.default_rng(2).exponential(size=20_000))
    q = np.linspace(-5, 40, 500)
    s = cal.transform(q)
    assert s.min() >= 0 and s.max() <= 1
    assert (np.diff(s) >= 0).all()
    top = cal.values_[-1]
    beyond = cal.transform([top + 0.01, top + 0.5, top + 1.0])
    assert beyond[0] < beyond[1] < beyond[2]  # no ties at the top


def test_threshold_is_the_same_for_any_raw_scale():
    rng = np.random.default_rng(3)
    a = TailCalibrator(0.01).fit(rng.normal(size=5000))
    b = TailCalibrator(0.01).fit(1000 * rng.exponential(size=5000))
    assert a.threshold_ == b.threshold_


def test_empty_training_scores_rejected():
    with pytest.raises(ValueError):
        TailCalibrator().fit([])


def test_severity_bands():
    assert severity(0.3, 0.5, False) == "none"
    assert [severity(s, 0.5, True) for s in (0.5, 0.65, 0.8, 0.95)] == ["low", "medium", "high", "critical"]


def test_model_training_anomaly_rate_near_contamination_per_detector():
    alerts = F.normal_fleet(days=6, seed=3)
    for c in (0.01, 0.05):
        m = Mimizuku(contamination=c).fit(alerts)
        for name, det in m.detectors_.items():
            rate = float((det.calibrate(det.decision_scores_) >= det.threshold_) @ _weights(det)) / det.n_alerts_
            assert rate <= c * 1.0001, (name, rate)
        recs = m.score_records(alerts)
        assert all(0.0 <= r["score"] <= 1.0 for r in recs)
        overall = sum(r["anomaly"] for r in recs) / len(recs)
        assert overall <= 3 * c  # three detectors, each at most c on its own share


def _weights(det):
    # the per-key alert counts the calibrator was fitted with (it keeps none: read back from its
    # tail masses)
    raw = det.decision_scores_
    cal = det.calibrator_
    # reconstruct weights from the calibrator's tail masses: mass of each distinct value
    tail = np.append(cal.tail_, 0.0)
    mass = (tail[:-1] - tail[1:]) * cal.total_weight_
    per_value = dict(zip(cal.values_, mass))
    # distribute a value's mass over the keys sharing it, proportionally (equal share is exact
    # for the rate test because all keys with one value are either all flagged or none)
    counts = {}
    for r in raw:
        counts[r] = counts.get(r, 0) + 1
    return np.array([per_value[r] / counts[r] for r in raw])
