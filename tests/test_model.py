"""The estimator: the original library's API, records, lists, persistence and its refusals."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import alert_factory as F
import pandas as pd
import pytest

from mimizuku import Mimizuku
from mimizuku.store.model_dir import ModelError, ModelIntegrityError, ModelSecurityError, ModelVersionError

ATK = F.attacks()
ATTACKS = [a for kind in ATK.values() for a in kind]


@pytest.fixture(scope="module")
def fleet():
    return F.normal_fleet(days=4)


@pytest.fixture(scope="module")
def model(fleet):
    return Mimizuku().fit(fleet)


def _write_jsonl(path, alerts):
    with open(path, "w") as f:
        for a in alerts:
            f.write(json.dumps(a) + "\n")
    return path


def test_readme_examples_run_as_written(tmp_path, fleet):
    """Both usage examples of the original README, verbatim, in a fresh interpreter."""
    _write_jsonl(tmp_path / "training.json", fleet)
    _write_jsonl(tmp_path / "test.json", F.normal_fleet(days=1, seed=9) + ATTACKS)
    example1 = textwrap.dedent('''
        import pandas as pd
        from mimizuku import Mimizuku

        # Initialize the model with custom settings
        model = Mimizuku(contamination=0.001, n_neighbors=5)

        # Train the model using a Wazuh alert log file or DataFrame
        model.fit("./training.json")

        # Save the trained model for later use
        model.save_model("./models")
    ''')
    example2 = textwrap.dedent('''
        import pandas as pd

        from mimizuku import Mimizuku
        from mimizuku.rules.audit_command import AuditCommand
        from mimizuku.rules.fs_notify import FsNotify

        # Initialize the model
        n_neighbors = 5
        contamination = 0.001
        ignore_user_names = ["root"]

        fsn = FsNotify(
            n_neighbors=n_neighbors,
            contamination=contamination,
        )
        ac = AuditCommand(
            n_neighbors=n_neighbors,
            contamination=contamination,
            ignore_user_names=ignore_user_names,
        )

        model = Mimizuku()
        model.add_rule(fsn)
        model.add_rule(ac)

        # Train the model with a log file or DataFrame
        model.fit("./training.json")

        # Save the trained model
        model.save_model("./models")

        # Load the model and use it for prediction
        loaded_model = Mimizuku.load_model("./models")
        anomalies_df = loaded_model.predict("./test.json")

        # Display detected anomalies
        print("Detected anomalies:")
        print(anomalies_df)
        anomalies_df.to_json("./anomalies.json", orient="records")
    ''')
    for code in (example1, example2):
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
    assert (tmp_path / "models" / "manifest.json").exists()
    out = pd.read_json(tmp_path / "anomalies.json", orient="records")
    # example 2 has only the file and command detectors; root's commands are ignored
    assert set(out["detector"]) <= {"files", "commands"}
    flagged = set(out["original_path"].dropna()) | set(out["original_command"].dropna())
    assert "/root/.ssh/authorized_keys" in flagged
    assert any("/dev/tcp" in c for c in out["original_command"].dropna())
    assert not any("useradd" in c for c in out["original_command"].dropna())  # run by root: ignored


def test_predict_returns_anomalies_with_original_columns(model):
    df = model.predict(F.normal_fleet(days=1, seed=5) + ATTACKS)
    assert isinstance(df, pd.DataFrame)
    for col in ("id", "timestamp", "agent_name", "detector", "score", "severity", "reasons",
                "original_hostname", "original_path", "original_event", "original_effective_user",
                "original_command", "original_user"):
        assert col in df.columns
    assert df["anomaly"].all()
    assert set(df["id"]) == {a["id"] for a in ATTACKS}
    assert (df["reasons"].map(len) > 0).all()


def test_score_returns_every_scored_alert_and_accepts_all_input_kinds(model, tmp_path, fleet):
    alerts = F.normal_fleet(days=1, seed=5)
    a = model.score(alerts)
    assert len(a) == len(alerts)
    b = model.score(_write_jsonl(tmp_path / "x.json", alerts))
    c = model.score(pd.DataFrame(alerts))
    d = model.score(alerts[0])
    assert list(a["score"]) == list(b["score"]) == list(c["score"])
    assert d["score"].iloc[0] == a["score"].iloc[0]


def test_records_follow_the_schema(model):
    recs = model.score_records(ATTACKS + F.normal_fleet(days=1, seed=5)[:50])
    keys = {"id", "timestamp", "agent", "rule", "location", "detector", "score", "score_pct", "threshold",
            "anomaly", "severity", "reasons", "scores", "fields", "model_version"}
    for r in recs:
        assert keys <= set(r)
        assert 0 <= r["score"] <= 1 and r["score_pct"] == round(100 * r["score"])
        assert r["severity"] in ("none", "low", "medium", "high", "critical")
        assert (r["severity"] == "none") == (not r["anomaly"])
        assert r["detector"] in r["scores"]
        json.dumps(r)  # serialisable as is


def test_own_events_are_never_scored(model):
    own = F.event(F.BASE, "100201", groups=["mimizuku", "anomaly"])
    own2 = F.event(F.BASE, "100201")
    own2["data"] = {"integration": "mimizuku", "mimizuku": {"score": "0.9"}}
    own["location"] = own2["location"] = "mimizuku"
    assert model.score_records([own, own2]) == []


def test_an_own_mark_outside_our_locations_is_scored(model):
    """Issue 17 item 3: the mark is text any log line can carry; only our locations make it ours."""
    forged = F.event(F.BASE, "100201", groups=["mimizuku", "anomaly"])
    forged["data"] = {"integration": "mimizuku", "mimizuku": {"severity": "critical"}}
    forged["location"] = "/var/log/app.json"
    assert [r["id"] for r in model.score_records([forged])] == [forged["id"]]


def test_ignore_users_and_files_are_never_flagged_abuse_always(fleet):
    atk = ATK
    m = Mimizuku(ignore_users=["www-data"], ignore_files=["/root/.ssh/"], abuse_files=["*.so.1", "passwd"]).fit(fleet)
    recs = {r["id"]: r for r in m.score_records(ATTACKS + F.normal_fleet(days=1, seed=5))}
    for a in atk["webshell"] + atk["reverse_shell"] + atk["miner"]:  # all by www-data
        r = recs[a["id"]]
        assert not r["anomaly"] and r["reasons"] and "ignore_users" in r["reasons"][0]
    assert not recs[atk["ssh_key"][0]["id"]]["anomaly"]  # ignored path (and user)
    p = recs[atk["uid0_user"][0]["id"]]
    assert p["anomaly"] and p["severity"] == "critical" and "abuse file" in p["reasons"][0]
    libs = [r for r in recs.values() if (r["fields"].get("path") or "").endswith(".so.1")]
    assert libs and all(r["anomaly"] and "always flagged" in r["reasons"][0] for r in libs)


def test_load_model_overrides_lists(tmp_path, model):
    model.save_model(tmp_path / "m")
    m2 = Mimizuku.load_model(tmp_path / "m", ignore_users=["www-data"])
    assert m2.ignore_users == ["www-data"]
    r = m2.score_records(F.attacks()["reverse_shell"])[0]
    assert not r["anomaly"]
    r = Mimizuku.load_model(tmp_path / "m").score_records(F.attacks()["reverse_shell"])[0]
    assert r["anomaly"]


def test_save_load_round_trip_gives_identical_scores(tmp_path, model):
    alerts = ATTACKS + F.normal_fleet(days=1, seed=5)
    model.save_model(tmp_path / "m")
    m2 = Mimizuku.load_model(tmp_path / "m")
    a = [(r["id"], r["score"], r["anomaly"], r["reasons"]) for r in model.score_records(alerts)]
    b = [(r["id"], r["score"], r["anomaly"], r["reasons"]) for r in m2.score_records(alerts)]
    assert a == b
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert set(man["detectors"]) == {"files", "commands", "context"}
    assert man["detectors"]["files"]["alerts"] > 0 and man["detectors"]["context"]["threshold"] > 0
    assert man["training"]["window"]["first"] <= man["training"]["window"]["last"]
    assert all(len(v["sha256"]) == 64 for v in man["files"].values())


def test_tampered_model_is_refused(tmp_path, model):
    model.save_model(tmp_path / "m")
    f = tmp_path / "m" / "context.npz"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError):
        Mimizuku.load_model(tmp_path / "m")


def test_model_writable_by_others_is_refused(tmp_path, model):
    model.save_model(tmp_path / "m")
    os.chmod(tmp_path / "m" / "files.npz", 0o666)
    with pytest.raises(ModelSecurityError):
        Mimizuku.load_model(tmp_path / "m")


def test_mismatched_sklearn_version_is_refused(tmp_path, model):
    model.save_model(tmp_path / "m")
    p = tmp_path / "m" / "manifest.json"
    man = json.loads(p.read_text())
    man["libraries"]["scikit-learn"] = "0.0.1"
    p.write_text(json.dumps(man))
    with pytest.raises(ModelVersionError):
        Mimizuku.load_model(tmp_path / "m")


def test_missing_model_is_a_model_error(tmp_path):
    with pytest.raises(ModelError):
        Mimizuku.load_model(tmp_path / "nothing-here")


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="not fitted"):
        Mimizuku().predict([F.fim(F.BASE, "/etc/hosts")])


def test_detectors_without_data_are_skipped_not_fatal():
    only_events = [F.event(F.BASE.replace(hour=h), r) for h in range(24) for r in ("5501", "5502", "5715")]
    m = Mimizuku().fit(only_events)
    assert set(m.detectors_) == {"context"}
    assert set(m.skipped_detectors_) == {"files", "commands"}
    assert m.score_records([F.fim(F.BASE, "/etc/passwd")])[0]["detector"] == "context"


def test_hostile_text_survives_scoring(model):
    evil = F.fim(F.BASE, "/var/www/x\n<14>1 2026-11-21T00:00:00Z forged - - - - fake line\x1b[31m\x00';DROP TABLE alerts;--",
                 user="www-data\r\nroot", process="p\x07")
    evil["syscheck"]["path"] += "é"
    r = model.score_records([evil])[0]
    assert r["anomaly"]
    assert r["fields"]["path"] == evil["syscheck"]["path"]  # kept verbatim; outputs escape it
    json.dumps(r)
