"""End to end with the real engine: train, then alerts through the integratord emulator, the real
``integrations/custom-mimizuku`` scoring in-process, the fake analysisd and the rules.

The script runs as the test's user (the engine's interpreter is usually under a private
directory); integratord's permission check is still made for user ``wazuh`` when root.
Each call imports pandas and scikit-learn (the in-process path), so few alerts are sent.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from wazuh_emulation import FakeAnalysisd, Integratord, Ruleset, ensure_wazuh_user, make_scratch_manager

from mimizuku.core import fields

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RULES = ROOT / "wazuh_rules" / "mimizuku_rules.xml"
SEVERITY_RULE = {"low": 119002, "medium": 119003, "high": 119004, "critical": 119005}

model = pytest.importorskip("mimizuku.engine.estimator", reason="the engine (detector/mimizuku/model.py) is not there yet")


def read_alerts(path: Path):
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        docs = json.loads(text)
        docs = docs if isinstance(docs, list) else [docs]
    except ValueError:
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [d for d in docs if fields.is_alert(d)]


def fim(i, path, user, agent=("004", "db-02", "10.0.0.6")):
    return {"timestamp": "2026-11-20T10:%02d:%02d.000+0000" % (i // 60 % 60, i % 60), "id": f"1700000000.{i}",
            "rule": {"id": "550", "level": 7, "description": "Integrity checksum changed.",
                     "groups": ["ossec", "syscheck", "syscheck_entry_modified", "syscheck_file"]},
            "agent": {"id": agent[0], "name": agent[1], "ip": agent[2]}, "location": "syscheck",
            "full_log": f"File '{path}' modified", "decoder": {"name": "syscheck_integrity_changed"},
            "syscheck": {"path": path, "event": "modified", "mode": "whodata",
                         "audit": {"effective_user": {"id": "0", "name": user}, "process": {"name": "vim"}}}}


class EngineManager:
    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="mimizuku-e2e-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.home = make_scratch_manager(self.base / "ossec")
        self.check_as = None
        if os.geteuid() == 0 and ensure_wazuh_user() is None:
            import grp

            self.check_as = "wazuh"
            gid = grp.getgrnam("wazuh").gr_gid
        self.script = self.home / "integrations" / "custom-mimizuku"
        src = (ROOT / "integrations" / "custom-mimizuku").read_text().splitlines()[1:]
        self.script.write_text("\n".join([f"#!{sys.executable} -IS"] + src) + "\n")  # as install.sh
        if self.check_as:
            os.chown(self.script, 0, gid)
        os.chmod(self.script, 0o750 if self.check_as else 0o500)  # never writable by "integratord"
        self.models = self.home / "mimizuku" / "models"
        self.models.parent.mkdir(parents=True)
        os.chmod(self.models.parent, 0o750)

    def train(self, alerts):
        m = model.Mimizuku().fit(alerts)
        m.save_model(self.models)
        return model.Mimizuku.load_model(self.models)

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def em():
    m = EngineManager()
    yield m
    m.close()


def run_through(em: EngineManager, alerts, options):
    rules = Ruleset(RULES)
    queue = em.home / "queue" / "sockets" / "queue"
    got = []
    with FakeAnalysisd(queue) as fa:
        d = Integratord(em.script, options=json.dumps(options), timeout=60, check_as=em.check_as,
                        safety_timeout=120, env={"PATH": "/usr/bin:/bin", "LANG": "C"})
        for a in alerts:
            call = d.send(a)
            assert call is not None and call.returncode == 0 and not call.hung, call.output
            got += fa.receive(wait=0.2)
        got += fa.receive(wait=0.5)
        assert fa.oversize == []
    return rules, got


def check_events(rules, got, records):
    by_id = {r["id"]: r for r in records}
    assert sorted(e.fields["mimizuku.source.alert_id"] for e in got) == sorted(by_id)
    for ev in got:
        r = by_id[ev.fields["mimizuku.source.alert_id"]]
        assert ev.fields["mimizuku.model_version"] == r["model_version"]
        assert ev.fields["mimizuku.score_pct"] == str(r["score_pct"])
        rule = rules.match(ev)
        if not r["anomaly"]:
            want = 119001
        else:
            want = SEVERITY_RULE.get(r["severity"], 119006)
            if want == 119005 and r["score_pct"] >= 99:
                want = 119007
        assert rule is not None and rule.id == want, (r, ev.fields)
        assert rules.matching_siblings(ev, rule) == []
        assert "(null)" not in rules.description(rule, ev)
        assert ev.agent_id == (r["agent"]["id"] or "000")


def test_real_alerts_scored_in_process_reach_the_intended_rules(em):
    train_file = DATA / "ait-ldsv1.1" / "ossec_insect.json"
    test_file = DATA / "ait-ldsv1.1" / "ossec_spiral.json"
    if not train_file.exists():
        pytest.skip("shared/data (AIT-LDS v1.1) not available")
    rng = random.Random(7)
    normal = ["/etc/hosts", "/etc/resolv.conf", "/var/www/html/index.html", "/etc/nginx/nginx.conf"]
    training = read_alerts(train_file) + [fim(i, rng.choice(normal), rng.choice(["root", "deploy"]))
                                          for i in range(300)]
    engine = em.train(training)
    spiral = read_alerts(test_file)
    sample = [spiral[0], spiral[-1],
              fim(9001, "/etc/shadow", "mallory", agent=("007", "web-07", "10.0.0.7")),
              fim(9002, "/etc/hosts", "root")]
    expected = engine.score_records(sample)
    assert expected, "the engine scored none of the sample alerts"
    rules, got = run_through(em, sample, {"model_dir": str(em.models), "send": "all"})
    check_events(rules, got, expected)
    assert (em.home / "mimizuku" / "spool" / "alerts").exists()
    assert not list((em.home / "mimizuku" / "spool" / "alerts").glob("*.json"))


def test_generated_alerts_anomalies_reach_the_intended_rules(em):
    synth = pytest.importorskip("mimizuku.tools.synth", reason="the generator (mimizuku.tools.synth) is not there yet")
    if not hasattr(synth, "generate") or not hasattr(synth, "FleetConfig"):
        pytest.skip("mimizuku.tools.synth has no generate()/FleetConfig yet")
    alerts = list(synth.generate(synth.FleetConfig(days=3, scale=0.05, attack_days=1, seed=3)))
    cut = len(alerts) * 2 // 3
    engine = em.train(alerts[:cut])
    records = {r["id"]: r for r in engine.score_records(alerts[cut:])}
    anomalous = [a for a in alerts[cut:] if records.get(fields.alert_id(a), {}).get("anomaly")]
    normal = [a for a in alerts[cut:] if fields.alert_id(a) in records and not records[fields.alert_id(a)]["anomaly"]]
    sample = anomalous[:3] + normal[:1]
    if not anomalous:
        pytest.skip("the generated test days hold no anomaly for this model")
    expected = [r for r in engine.score_records(sample) if r["anomaly"]]
    rules, got = run_through(em, sample, {"model_dir": str(em.models)})
    check_events(rules, got, expected)


def test_script_with_the_site_free_shebang_finds_the_venv_package(tmp_path):
    """install.sh's shebang is `<venv>/bin/python3 -IS`: no `site`, so the script itself must put
    the virtualenv's site-packages on the path (the package installed there, no .pth file)."""
    import subprocess

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    (site / "mimizuku").symlink_to(Path(__file__).resolve().parents[1] / "detector" / "mimizuku")
    script = tmp_path / "integrations" / "custom-mimizuku"  # no ../detector next to it
    script.parent.mkdir()
    body = (Path(__file__).resolve().parents[1] / "integrations" / "custom-mimizuku").read_text().splitlines()[1:]
    script.write_text("\n".join([f"#!{venv}/bin/python3 -IS"] + body) + "\n")
    script.chmod(0o750)
    p = subprocess.run([str(script)], capture_output=True, text=True)
    assert p.returncode == 2, p.stderr  # imported mimizuku from the venv and rejected the argv
    # and without the package in the venv it says so (exit 6), not a traceback
    (site / "mimizuku").unlink()
    p = subprocess.run([str(script)], capture_output=True, text=True)
    assert p.returncode == 6 and "cannot import mimizuku" in p.stderr
