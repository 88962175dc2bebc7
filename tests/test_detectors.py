"""Each detector on its own: what it learns, what it flags, and why it says so."""
from __future__ import annotations

import datetime as dt

import alert_factory as F
import numpy as np
import pytest

from mimizuku.engine.detectors.base import NotEnoughData
from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.context import ContextDetector, RateTracker, rate_bin, seconds_and_hour
from mimizuku.engine.detectors.files import FileIntegrityDetector, path_matches


@pytest.fixture(scope="module")
def fleet():
    return F.normal_fleet(days=4)


@pytest.fixture(scope="module")
def held_out():
    return F.normal_fleet(days=2, seed=7)


def _fit(det, alerts):
    return det.fit([a for a in alerts if det.applies(a)])


# --- file integrity ------------------------------------------------------------------------------

def test_files_flags_attack_paths_not_routine_changes(fleet, held_out):
    det = _fit(FileIntegrityDetector(), fleet)
    normal = [a for a in held_out if det.applies(a)]
    assert det.predict(normal).sum() == 0
    atk = F.attacks()
    bad = [atk["webshell"][0], atk["ssh_key"][0], atk["uid0_user"][0], atk["miner"][0]]
    assert det.predict(bad).tolist() == [1, 1, 1, 1]
    # attacks score above every routine change
    assert det.score_samples(bad).min() > det.score_samples(normal).max()


def test_files_reasons_name_new_tokens_and_nearest_example(fleet):
    det = _fit(FileIntegrityDetector(), fleet)
    alert = F.attacks()["ssh_key"][0]
    why = det.explain(det.key(alert), alert)
    text = " | ".join(why)
    assert "authorized" in text and "www-data" in text
    assert any(r.startswith("nearest normal example:") for r in why)


def test_files_duplicates_become_weights_not_degenerate_scores():
    # one path seen 5,000 times and a few others once: LOF on raw rows would give -1e10 scores
    t = F.BASE
    alerts = [F.fim(t + dt.timedelta(seconds=i), "/etc/hosts") for i in range(5000)]
    alerts += [F.fim(t, p) for p in ("/etc/resolv.conf", "/etc/hostname", "/usr/bin/ls", "/usr/bin/cp",
                                     "/usr/bin/mv", "/usr/sbin/sshd", "/etc/ssh/sshd_config")]
    det = _fit(FileIntegrityDetector(), alerts)
    assert det.n_keys_ == 8 and det.n_alerts_ == 5007
    assert np.isfinite(det.decision_scores_).all()
    assert np.abs(det.decision_scores_).max() < 10
    s = det.score_samples([F.fim(t, "/etc/hosts"), F.fim(t, "/usr/bin/ls")])
    assert (s < det.threshold_).all()


def test_files_needs_more_than_one_situation():
    det = FileIntegrityDetector()
    with pytest.raises(NotEnoughData):
        det.fit([F.fim(F.BASE, "/etc/hosts")] * 10)


def test_path_matches_prefix_glob_basename():
    assert path_matches("/var/cache/apt/x.bin", ["/var/cache/"]) == "/var/cache/"
    assert path_matches("/var/cache/apt/x.bin", ["/var/cache"]) == "/var/cache"
    assert path_matches("/var/cachefoo/x", ["/var/cache"]) is None
    assert path_matches("/tmp/a/b.swp", ["*.swp"]) == "*.swp"
    assert path_matches("/usr/local/bin/nc", ["nc"]) == "nc"
    assert path_matches("/usr/local/bin/ncat", ["nc"]) is None


# --- commands ------------------------------------------------------------------------------------

def test_commands_flags_reverse_shell_and_backdoor_user(fleet, held_out):
    det = _fit(CommandDetector(), fleet)
    normal = [a for a in held_out if det.applies(a)]
    assert det.predict(normal).sum() == 0
    atk = F.attacks()
    bad = [atk["reverse_shell"][0], atk["uid0_user"][1], atk["miner"][1], atk["webshell"][1]]
    assert det.predict(bad).tolist() == [1, 1, 1, 1]
    why = " | ".join(det.explain(det.key(bad[0]), bad[0]))
    assert "/dev/tcp" in why and ">&" in why


def test_commands_read_sudo_5402():
    t = F.BASE
    sudo = []
    for i in range(60):
        a = F.event(t + dt.timedelta(minutes=i), "5402", desc="Successful sudo to ROOT executed.",
                    groups=["syslog", "sudo"], user="root")
        a["data"].update({"srcuser": "alice", "command": "/usr/bin/systemctl restart nginx" if i % 2 else "/usr/bin/journalctl -u nginx"})
        sudo.append(a)
    det = CommandDetector()
    assert all(det.applies(a) for a in sudo)
    _fit(det, sudo)
    odd = dict(sudo[0], data=dict(sudo[0]["data"], command="/bin/bash -c 'chmod u+s /tmp/.sh'"))
    assert det.predict([odd])[0] == 1 and det.predict([sudo[1]])[0] == 0


# --- context -------------------------------------------------------------------------------------

def test_context_flags_flood_new_rule_and_new_user(fleet, held_out):
    det = _fit(ContextDetector(), fleet)
    assert det.predict(held_out).sum() == 0
    t = F.BASE + dt.timedelta(days=6, hours=10)
    flood = [F.event(t + dt.timedelta(milliseconds=100 * i), "5501", desc="PAM: Login session opened.",
                     groups=["pam", "syslog", "authentication_success"], user="deploy") for i in range(400)]
    det.start_stream()
    keys = [det.key(a) for a in flood]
    scores = det.calibrate(det.raw_scores(keys))
    assert scores[0] < det.threshold_          # the first alert of the burst is ordinary
    assert (scores[-100:] >= det.threshold_).all()  # the flood is not
    why = det.explain(keys[-1], flood[-1])
    assert any("within 60 s" in r and "training maximum" in r for r in why)
    new_rule = F.event(t, "100999", level=12, desc="Something new", groups=["local"])
    det.start_stream()
    assert det.predict([new_rule])[0] == 1
    assert any("never fired on 'web-01'" in r for r in det.explain(det.key(new_rule), new_rule))


def test_context_dbscan_decomposition_matches_global_dbscan(fleet):
    """Per-block DBSCAN must give the same core samples as DBSCAN over the whole space."""
    from sklearn.cluster import DBSCAN
    from sklearn.feature_extraction import FeatureHasher

    det = ContextDetector()
    det.begin_fit()
    for a in fleet:
        det.observe(a)
    counts = det.partial_state()["counts"]
    keys = list(counts)
    w = np.array([counts[k] for k in keys], dtype=float)
    det.end_fit()
    hasher = FeatureHasher(n_features=2**20, input_type="dict", alternate_sign=False)
    B = hasher.transform([det.block_features(k[0]) for k in keys]).toarray()
    C = np.array([det.continuous_features(h, r, sb) for (_, h, r, sb) in keys])
    # keep only the used columns to make the global DBSCAN cheap
    B = B[:, np.flatnonzero(np.abs(B).sum(axis=0))]
    X = np.hstack([B, C])
    glob = DBSCAN(eps=det.eps, min_samples=det.min_samples).fit(X, sample_weight=w)
    global_cores = {keys[i] for i in glob.core_sample_indices_}
    assert global_cores == set(det.core_keys_)
    assert ((glob.labels_ == -1) == (det.labels_ == -1)).all()


def test_rate_tracker_window_and_order():
    r = RateTracker(window=60)
    assert [r.observe("k", t) for t in (0, 1, 1, 30)] == [1, 2, 3, 4]
    assert r.observe("k", 61) == 2       # 0, 1, 1 fell out of (1, 61]
    assert r.observe("k", 50) == 3       # late alert counted, not crashed
    assert r.observe("other", 61) == 1
    assert r.observe("k", None) == 1     # no time: no rate information
    assert [rate_bin(n) for n in (1, 2, 3, 4, 1000)] == [0, 1, 1, 2, 9]


def test_seconds_and_hour_parses_wazuh_and_rejects_garbage():
    s, h = seconds_and_hour("2026-11-20T10:15:02.123+0000")
    s2, _ = seconds_and_hour("2026-11-21T10:15:02.000+0000")
    assert h == 10 and s2 - s == 86400
    assert seconds_and_hour("2022-01-17T09:44:35.000000Z")[1] == 9
    for bad in (None, "", "yesterday", "2026-13-40T99:99:99", "2026-11-20T25:00:00"):
        assert seconds_and_hour(bad) == (None, None)


def test_context_eps_must_stay_below_categorical_gap(fleet):
    with pytest.raises(ValueError):
        _fit(ContextDetector(eps=2.0), fleet)


def test_numpy_lof_scoring_equals_scikit_learn(fleet):
    """Scoring runs LOF in numpy from the fitted graph; it must agree with LocalOutlierFactor."""
    det = _fit(CommandDetector(), fleet)
    probe = [k for k in det.ref_keys_[:5]] + [det.key(a) for kind in F.attacks().values() for a in kind
                                              if det.applies(a)]
    X = det.feature_rows(probe)
    ours = det.local_outlier_factors(probe)
    theirs = -det.lof_.score_samples(X)
    assert np.allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_saved_detector_does_not_carry_the_fitted_lof(fleet, tmp_path):
    import joblib

    det = _fit(FileIntegrityDetector(), fleet)
    joblib.dump(det, tmp_path / "d.joblib")
    back = joblib.load(tmp_path / "d.joblib")
    assert not hasattr(back, "lof_")
    alerts = [a for a in F.normal_fleet(days=1, seed=11) if det.applies(a)]
    assert np.allclose(back.score_samples(alerts), det.score_samples(alerts))


def test_rate_tracker_ignores_alerts_older_than_its_window():
    r = RateTracker(window=60)
    for t in range(1000, 1030):
        r.observe("k", t)
    assert r.observe("k", 100) == 1        # a replayed old alert is not part of the current burst
    assert r.observe("k", 1030) == 31      # and did not inflate it
