"""Calibrated scores: in [0, 1], monotone, one threshold meaning the same rarity everywhere."""
import alert_factory as F
import numpy as np
import pytest

from mimizuku.engine.calibration import MAX_RELAX, MIN_TAIL_ALERTS, TailCalibrator, severity
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
            # the share the threshold was drawn at: contamination, or what a small training resolves
            eff = det.calibrator_.effective_contamination_
            assert eff == max(c, min(MAX_RELAX * c, MIN_TAIL_ALERTS / det.calibrator_.total_weight_))
            assert rate <= eff * 1.0001, (name, rate)
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


def test_a_threshold_rests_on_at_least_min_tail_alerts():
    """1e-4 of 30,000 alerts is three: the threshold is drawn where MIN_TAIL_ALERTS lie instead;
    with enough alerts, at contamination. Switched off (min_tail 0), the three decide."""
    rng = np.random.default_rng(7)
    small, large = rng.lognormal(size=30_000), rng.lognormal(size=400_000)
    cal = TailCalibrator(1e-4).fit(small)
    assert cal.effective_contamination_ == pytest.approx(MIN_TAIL_ALERTS / 30_000)
    assert (cal.transform(small) >= cal.threshold_).sum() == pytest.approx(MIN_TAIL_ALERTS, abs=1)
    off = TailCalibrator(1e-4, min_tail=0).fit(small)
    assert off.effective_contamination_ == 1e-4 and (off.transform(small) >= off.threshold_).sum() <= 3
    big = TailCalibrator(1e-4).fit(large)
    assert big.effective_contamination_ == 1e-4
    tiny = TailCalibrator(1e-4).fit(small[:1000])        # 20 of 1,000 would be 2 %: capped
    assert tiny.effective_contamination_ == pytest.approx(MAX_RELAX * 1e-4)


def test_beyond_the_training_maximum_the_tail_starts_below_one_in_n():
    """Nothing in training was that unusual: p <= 1 / (N + 1), however often the maximum occurred."""
    raw = np.concatenate([np.linspace(0, 1, 1000), np.full(500, 2.0)])   # the maximum seen 500 times
    cal = TailCalibrator(1e-3).fit(raw)
    assert cal.tail_probability(np.array([2.0]))[0] == pytest.approx(500 / 1500)
    assert cal.tail_probability(np.array([2.0 + 1e-9]))[0] <= 1 / 1501
