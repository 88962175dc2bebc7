"""The integration run by the integratord emulator, events checked by the fake analysisd and rules.

As root (CI) the script runs as user ``wazuh`` (created here) from a root:wazuh 0750 file, as on a
manager; otherwise as the current user. The engine is the stand-in from integration_fakes; the
real engine is exercised in test_integration_engine.py.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path

import integration_fakes
import pytest
from wazuh_emulation import FakeAnalysisd, Integratord, Ruleset, ensure_wazuh_user, make_scratch_manager

from mimizuku.core import fields
from mimizuku.core.spool import Spool
from mimizuku.delivery import events

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
RULES = ROOT / "wazuh_rules" / "mimizuku_rules.xml"
SEVERITY_RULE = {"low": 119002, "medium": 119003, "high": 119004, "critical": 119005}


class Manager:
    def __init__(self):
        self.base = Path(tempfile.mkdtemp(prefix="mimizuku-mgr-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.home = make_scratch_manager(self.base / "ossec")
        self.as_root = os.geteuid() == 0
        self.user = None
        if self.as_root:
            reason = ensure_wazuh_user()
            if reason:
                pytest.skip(reason)
            self.user = "wazuh"
        self.python = "/usr/bin/python3" if self.as_root else sys.executable
        if self.as_root and not os.access(self.python, os.X_OK):
            pytest.skip("no interpreter the wazuh user can run")
        self.script = self.home / "integrations" / "custom-mimizuku"
        self.queue = self.home / "queue" / "sockets" / "queue"
        self.spool = self.home / "mimizuku" / "spool"
        self.spool.mkdir(parents=True)
        self.write_script()
        if self.as_root:
            gid = grp.getgrnam("wazuh").gr_gid
            uid = pwd.getpwnam("wazuh").pw_uid
            os.chown(self.home, 0, gid)
            for d in ("logs", "mimizuku/spool"):
                os.chown(self.home / d, uid, gid)
                os.chmod(self.home / d, 0o770)
            for d in ("integrations", "mimizuku", "queue", "queue/sockets"):
                os.chown(self.home / d, 0, gid)
                os.chmod(self.home / d, 0o750 if d != "queue/sockets" else 0o770)

    def write_script(self, mode=None):
        # integratord refuses a script its user can write: root:wazuh 0750 as root, r-x for us otherwise
        mode = mode if mode is not None else (0o750 if self.as_root else 0o550)
        if self.script.exists():
            os.chmod(self.script, 0o700)
        self.script.write_text(integration_fakes.WRAPPER.format(
            python=self.python, detector=str(ROOT / "detector"), tests=str(ROOT / "tests")))
        if self.as_root:
            os.chown(self.script, 0, grp.getgrnam("wazuh").gr_gid)
        os.chmod(self.script, mode)

    def integratord(self, **kw) -> Integratord:
        kw.setdefault("run_as", self.user)
        return Integratord(self.script, **kw)

    def analysisd(self) -> FakeAnalysisd:
        return FakeAnalysisd(self.queue, group="wazuh" if self.as_root else None)

    def log(self) -> str:
        p = self.home / "logs" / "integrations.log"
        return p.read_text() if p.exists() else ""

    def pending_alerts(self) -> int:
        return len(Spool(self.spool / "alerts"))

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def mgr():
    m = Manager()
    yield m
    m.close()


def fim(path, agent=("004", "db-02", "10.0.0.6"), score=None, **extra):
    a = {"timestamp": "2026-11-20T10:15:02.123+0000", "id": f"1700000000.{abs(hash(path)) % 10000}",
         "rule": {"level": 7, "description": "Integrity checksum changed.", "id": "550",
                  "groups": ["ossec", "syscheck", "syscheck_entry_modified", "syscheck_file"]},
         "agent": {"id": agent[0], "name": agent[1], "ip": agent[2]}, "manager": {"name": "wazuh"},
         "full_log": f"File '{path}' modified", "decoder": {"name": "syscheck_integrity_changed"},
         "location": "syscheck", "syscheck": {"path": path, "event": "modified", "mode": "realtime"}}
    if score is not None:
        a["data"] = {"mimizuku_test_score": score}
    a.update(extra)
    return a


def test_script_writable_by_the_integratord_user_is_refused(mgr):
    if mgr.as_root:
        mgr.write_script(mode=0o770)  # group wazuh may write: integratord refuses to run it
    else:
        mgr.write_script(mode=0o755)  # our own file: writable by "integratord" (us)
    d = mgr.integratord()
    call = d.send(fim("/etc/passwd", score=0.99))
    assert call.returncode == 127
    assert mgr.log() == "" and not (mgr.spool / "alerts").exists()
    assert d.leftover_files == [] and not os.path.exists(call.alert_file)


def test_exact_argv_temp_files_and_options(mgr):
    opts = json.dumps({"send": "all", "max_batch": 10})
    with mgr.analysisd() as fa:
        d = mgr.integratord(options=opts, timeout=7, retries=2)
        call = d.send(fim("/etc/hosts", score=0.1))
        got = fa.receive(wait=2)
    assert call.returncode == 0, call.output
    assert call.argv[1].startswith("/tmp/custom-mimizuku-") and call.argv[1].endswith(".alert")
    assert call.argv[5].endswith(".options") and call.argv[6:] == ["7", "2", "> /dev/null 2>&1"]
    assert not os.path.exists(call.alert_file) and not os.path.exists(call.options_file)
    assert d.leftover_files == []
    assert [e.fields["mimizuku.anomaly"] for e in got] == ["false"]  # send=all came from the options file


def test_wazuh_before_4_8_argv_and_debug_mode(mgr):
    with mgr.analysisd() as fa:
        d = mgr.integratord(version=(4, 7), debug=True)
        call = d.send(fim("/etc/sudoers", score=0.97))
        got = fa.receive(wait=2)
    assert len(call.argv) == 6 and call.returncode == 0, call.output
    assert [e.fields["mimizuku.severity"] for e in got] == ["high"]


def load_real_alerts(limit=40):
    out = []
    for name in ("ait-ldsv1.1/ossec_insect.json", "ait-ads-raw-samples/wazuh_attack_lines.json"):
        p = DATA / name
        if not p.exists():
            continue
        text = p.read_text(encoding="utf-8", errors="replace")
        try:
            docs = json.loads(text)
            docs = docs if isinstance(docs, list) else [docs]
        except ValueError:
            docs = [json.loads(line) for line in text.splitlines() if line.strip()]
        out += [d for d in docs if fields.is_alert(d)][: limit // 2]
    return out


def test_end_to_end_alerts_to_rules(mgr):
    real = load_real_alerts()
    if not real:
        pytest.skip("shared/data not available")
    synthetic = [fim(f"/etc/cron.d/job{i}", score=s, agent=("0%02d" % (i + 1), f"host-{i}", "any"))
                 for i, s in enumerate([0.85, 0.92, 0.97, 0.995, 0.3])]
    synthetic.append(fim("/etc/x", agent=("000", "wazuh-manager", "127.0.0.1"), score=0.97))
    alerts = real + synthetic
    expected = {}
    for a in alerts:
        r = integration_fakes.record(a)
        if r and r["anomaly"]:
            expected[r["id"]] = r
    assert len(expected) >= 5
    rules = Ruleset(RULES)
    with mgr.analysisd() as fa:
        d = mgr.integratord(level=3)
        got = []
        for a in alerts:
            call = d.send(a)
            if call is not None:
                assert call.returncode == 0, call.output
                assert not call.hung
            got += fa.receive()
        got += fa.receive(wait=0.5)
        assert fa.oversize == []
    wanted = {k: v for k, v in expected.items() if int(v["rule"]["level"] or 0) >= 3}
    assert sorted(e.fields["mimizuku.source.alert_id"] for e in got) == sorted(wanted)
    assert mgr.pending_alerts() == 0
    for ev in got:
        r = wanted[ev.fields["mimizuku.source.alert_id"]]
        rule = rules.match(ev)
        want = SEVERITY_RULE[r["severity"]]
        if r["severity"] == "critical" and r["score_pct"] >= 99:
            want = 119007
        assert rule is not None and rule.id == want, (ev.fields, rule)
        assert rules.matching_siblings(ev, rule) == []
        agent = r["agent"]
        assert ev.agent_id == (agent["id"] if agent["id"] != "000" else "000")
        desc = rules.description(rule, ev)
        assert "(null)" not in desc and r["detector"] in desc and (agent["name"] or "manager") in desc
        # the resulting alert would come back to integratord: the script must ignore it
        back = {"rule": {"id": str(rule.id), "level": rule.level, "groups": rule.groups}, "agent": agent,
                "data": ev.payload, "location": ev.location, "id": "1700000001.1"}
        assert fields.is_own_event(back)
    # feed our own alerts back in: nothing new comes out
    with mgr.analysisd() as fa:
        d = mgr.integratord()
        call = d.send({"rule": {"id": "119004", "level": 10, "groups": ["mimizuku", "anomaly"]},
                       "agent": {"id": "004", "name": "db-02"}, "data": got[0].payload, "id": "1.2",
                       "location": "mimizuku"})
        assert call.returncode == 0 and fa.receive(wait=0.3) == []


def test_slow_scoring_is_cut_at_the_timeout_and_kept(mgr):
    with mgr.analysisd() as fa:
        d = mgr.integratord(timeout=2, safety_timeout=10,
                            env={"PATH": "/usr/bin:/bin", "FAKE_SCORER_DELAY": "30"})
        call = d.send(fim("/etc/shadow", score=0.99))
        assert call.returncode == 0 and not call.hung, call.output
        assert mgr.pending_alerts() == 1
        assert "did not finish within the 2s timeout" in mgr.log()
        d2 = mgr.integratord(timeout=10)
        call = d2.send(fim("/etc/group", score=0.2))
        assert call.returncode == 0, call.output
        got = fa.receive(wait=2)
    assert [e.fields["mimizuku.path"] for e in got] == ["/etc/shadow"]
    assert mgr.pending_alerts() == 0


def test_hard_backstop_ends_a_call_stuck_in_c_code(mgr):
    d = mgr.integratord(timeout=2, safety_timeout=10,
                        env={"PATH": "/usr/bin:/bin", "FAKE_SCORER_DELAY": "30", "FAKE_SCORER_BLOCK_ALARM": "1"})
    call = d.send(fim("/etc/shadow", score=0.99))
    assert not call.hung
    assert call.returncode == 1 and "Timeout" in call.output
    assert mgr.pending_alerts() == 1  # kept for the next call


def test_event_size_limit_through_the_whole_path(mgr):
    huge = "/srv/" + "d" * 100_000
    with mgr.analysisd() as fa:
        call = mgr.integratord().send(fim(huge, score=0.97))
        got = fa.receive(wait=2)
        assert fa.oversize == []
    assert call.returncode == 0, call.output
    assert len(got) == 1 and len(got[0].raw) <= events.MAX_MESSAGE_BYTES
    assert got[0].fields["mimizuku.truncated"] == "true"
    assert "path" in got[0].fields["mimizuku.truncated_fields"]  # (the reasons quote the path too)
