"""Context detector: identity switches as prior knowledge, and calibration on cross-fitted scores."""
from __future__ import annotations

import datetime as dt

import alert_factory as F
import numpy as np

from mimizuku.engine.detectors.context import ContextDetector, is_privilege_change

SESSION = ["pam", "syslog", "authentication_success"]


def _routine(days: int, agents=("web-01", "db-01")):
    """Sessions and cron every hour on a few hosts; no su/sudo anywhere."""
    out = []
    for d in range(days):
        for h in range(24):
            t = F.BASE + dt.timedelta(days=d, hours=h, minutes=5)
            for i, ag in enumerate(agents):
                out.append(F.event(t, "5501", desc="PAM: Login session opened.", groups=SESSION,
                                   agent=ag, agent_id=f"{i + 1:03d}"))
                out.append(F.event(t + dt.timedelta(minutes=1), "2830", desc="cron", groups=["syslog", "cron"],
                                   agent=ag, agent_id=f"{i + 1:03d}"))
    return out


def test_is_privilege_change_uses_wazuh_su_and_sudo_groups():
    assert is_privilege_change(("syslog", "su", "authentication_success"))
    assert is_privilege_change(["syslog", "sudo"])
    assert not is_privilege_change(("pam", "syslog", "authentication_success"))
    assert not is_privilege_change(())


def test_first_identity_switch_on_a_host_is_further_from_normal_than_a_new_session_rule():
    det = ContextDetector().fit(_routine(days=4))
    t = F.BASE + dt.timedelta(days=5, hours=10, minutes=5)
    su = F.event(t, "5304", desc="User successfully changed UID.", groups=["syslog", "su", "authentication_success"])
    # the same shape of novelty (new rule id, one new group, same level) without an identity switch
    ssh = F.event(t, "5715", desc="sshd: authentication success.", groups=["syslog", "sshd", "authentication_success"])
    det.start_stream()
    raw = det.raw_scores([det.key(su), det.key(ssh)])
    assert raw[0] > raw[1] > 0
    det.start_stream()
    assert det.predict([su])[0] == 1
    why = det.explain(det.key(su), su)
    assert any("switches identity" in r and "'web-01'" in r for r in why)
    assert not any("switches identity" in r for r in det.explain(det.key(ssh), ssh))


def test_identity_switch_seen_on_the_host_in_training_is_not_a_reason():
    alerts = _routine(days=4)
    for d in range(4):
        for h in (9, 10, 11, 14, 15):
            t = F.BASE + dt.timedelta(days=d, hours=h, minutes=20)
            alerts.append(F.event(t, "5402", desc="Successful sudo to ROOT executed.", groups=["syslog", "sudo"]))
    det = ContextDetector().fit(alerts)
    sudo = F.event(F.BASE + dt.timedelta(days=5, hours=10, minutes=20), "5402",
                   desc="Successful sudo to ROOT executed.", groups=["syslog", "sudo"])
    det.start_stream()
    assert det.predict([sudo])[0] == 0
    assert not any("switches identity" in r for r in det.explain(det.key(sudo), sudo))


def _with_one_day_bursts(days: int):
    """Routine activity plus, on each day, a burst of a rule that fires on that day only."""
    alerts = _routine(days)
    for d in range(days):
        t = F.BASE + dt.timedelta(days=d, hours=3)
        alerts += [F.event(t + dt.timedelta(seconds=90 * i), f"9{d:02d}", desc="maintenance", groups=["syslog"])
                   for i in range(8)]
    alerts.sort(key=lambda a: a["timestamp"])
    return alerts


def test_calibration_uses_cross_fitted_scores_over_days():
    alerts = _with_one_day_bursts(days=4)
    det = ContextDetector(contamination=0.01).fit(alerts)
    # every burst (8 alerts, one day each) is its own dense region in-sample: raw 0 ...
    det.start_stream()
    burst_keys = {det.situation(det.key(a)) for a in alerts if a["rule"]["id"].startswith("9")}
    assert all(k in set(det.core_keys_) for k in burst_keys)
    # ... but a model of the other days has never seen it: the calibrator knows new days bring such things
    bursts = sum(1 for a in alerts if a["rule"]["id"].startswith("9"))
    novel_share = det.calibrator_.tail_probability([1e-9])[0]
    assert novel_share >= 0.9 * bursts / len(alerts)
    assert len(det.decision_scores_) == len(det.calibration_weights_)
    assert det.calibration_weights_.sum() == len(alerts)


def test_a_new_days_burst_like_the_training_ones_is_not_flagged():
    alerts = _with_one_day_bursts(days=4)
    det = ContextDetector(contamination=0.01).fit(alerts)
    t = F.BASE + dt.timedelta(days=5, hours=3)
    burst = [F.event(t + dt.timedelta(seconds=90 * i), "977", desc="maintenance", groups=["syslog"])
             for i in range(8)]
    det.start_stream()
    assert det.predict(burst).sum() == 0
    # the in-sample calibration (what the detector did before) would have flagged it
    from mimizuku.engine.calibration import TailCalibrator

    det2 = ContextDetector(contamination=0.01)
    det2.begin_fit()
    for a in alerts:
        det2.observe(a)
    counts = det2.partial_state()["counts"]
    keys = list(counts)
    w = np.array([counts[k] for k in keys], dtype=float)
    in_sample = TailCalibrator(0.01).fit(det.raw_scores(keys), w)
    det.start_stream()
    raw = det.raw_scores([det.key(a) for a in burst])
    assert (in_sample.transform(raw) >= in_sample.threshold_).any()


def test_single_day_training_keeps_in_sample_calibration():
    alerts = _routine(days=1)
    det = ContextDetector().fit(alerts)
    assert not hasattr(det, "calibration_weights_")
    assert len(det.decision_scores_) == det.n_keys_


def test_partial_states_merge_to_the_same_calibration():
    alerts = _with_one_day_bursts(days=4)
    whole = ContextDetector(contamination=0.01).fit(alerts)
    half = len(alerts) // 2
    parts = []
    for chunk in (alerts[:half], alerts[half:]):
        d = ContextDetector(contamination=0.01)
        d.begin_fit()
        for a in chunk:
            d.observe(a)
        parts.append(d.partial_state())
    merged = ContextDetector(contamination=0.01)
    merged.begin_fit()
    for p in parts:
        merged.merge_state(p)
    merged.end_fit()
    assert merged.threshold_ == whole.threshold_
    np.testing.assert_allclose(merged.decision_scores_, whole.decision_scores_)
    np.testing.assert_allclose(merged.calibrator_.tail_, whole.calibrator_.tail_)


# --- recurrence: what comes back on recur_days days is routine, however few its alerts ----------

def _with_a_daily_login(hours, days: int = 4):
    """Routine activity, plus grace logging in on dev-ws-01 once on each of the first days, at
    these hours (08:40 one day, 09:40 the next...): a desktop's morning."""
    alerts = _routine(days, agents=("web-01", "db-01", "dev-ws-01"))
    for d, h in enumerate(hours):
        alerts.append(F.event(F.BASE + dt.timedelta(days=d, hours=h, minutes=40), "5501",
                              desc="PAM: Login session opened.", groups=SESSION, agent="dev-ws-01",
                              agent_id="003", user="grace"))
    alerts.sort(key=lambda a: a["timestamp"])
    return alerts


def _grace_logs_in(det, hour: int = 8):
    det.start_stream()
    login = F.event(F.BASE + dt.timedelta(days=5, hours=hour, minutes=45), "5501", desc="PAM: Login session opened.",
                    groups=SESSION, agent="dev-ws-01", agent_id="003", user="grace")
    return float(det.raw_scores([det.key(login)])[0]), int(det.predict([login])[0])


def test_a_login_on_three_days_is_routine_though_it_is_three_alerts():
    """Three alerts are fewer than min_samples (5): counted by alerts, a morning login seen on three
    days stays noise and is flagged on the fourth. Its neighbourhood (08:40, 09:40, 08:40: nearby
    hours) recurred on three days: routine."""
    alerts = _with_a_daily_login([8, 9, 8])
    det = ContextDetector(contamination=0.01).fit(alerts)
    assert _grace_logs_in(det) == (0.0, 0)
    off = ContextDetector(contamination=0.01, recur_days=0).fit(alerts)   # switched off: alerts only
    raw, flagged = _grace_logs_in(off)
    assert raw > 0 and flagged == 1
    # two days are not enough at the default, and enough when asked for two
    two = _with_a_daily_login([8, 9])
    assert _grace_logs_in(ContextDetector(contamination=0.01).fit(two))[0] > 0
    assert _grace_logs_in(ContextDetector(contamination=0.01, recur_days=2).fit(two)) == (0.0, 0)


def test_alerts_of_one_day_at_several_hours_are_not_days():
    """Three alerts on one day at 08, 09 and 10 are three alerts, not three days (summing a day per
    situation made such a block core on AIT shaw, where a new su then looked close to normal)."""
    alerts = _routine(4, agents=("web-01", "db-01", "dev-ws-01"))
    alerts += [F.event(F.BASE + dt.timedelta(days=1, hours=h, minutes=40), "5501", desc="PAM: Login session opened.",
                       groups=SESSION, agent="dev-ws-01", agent_id="003", user="grace") for h in (8, 9, 10)]
    alerts.sort(key=lambda a: a["timestamp"])
    det = ContextDetector(contamination=0.01).fit(alerts)
    assert not any(k[0][3] == "dev-ws-01" and k[0][4] == "grace" for k in det.core_keys_)
    assert _grace_logs_in(det)[0] > 0


def test_block_density_counts_distinct_days_over_the_neighbourhood():
    det = ContextDetector()
    pts = np.array([[0.0, 0.0], [0.1, 0.0], [3.0, 0.0]])      # two neighbours and one far away
    w = np.array([1.0, 1.0, 1.0])
    day = [1 << 0 | 1 << 2, 1 << 1, 1 << 0 | 1 << 1 | 1 << 2]  # days {0, 2}, {1}; the far one {0, 1, 2}
    np.testing.assert_array_equal(det.block_density(pts, w, day), [5, 5, 5])
    np.testing.assert_array_equal(det.block_density(pts, w, [1, 1 << 1, 1]), w)   # two days in all: as counted
    # a cross-fitted half (its weights scaled by 2): two days of its parity are as four of the whole
    np.testing.assert_array_equal(det.block_density(pts[:1], w[:1], [1 << 0 | 1 << 2], day_scale=2.0), [5])
    np.testing.assert_array_equal(ContextDetector(recur_days=0).block_density(pts, w, day), w)


def test_recur_days_is_validated_at_fit():
    import pytest

    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match="recur_days"):
            ContextDetector(recur_days=bad).fit(_routine(2))
