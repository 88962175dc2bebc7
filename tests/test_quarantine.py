"""An alert whose handling failed is set aside, not lost and not fatal (issue 17 item 4):
core/quarantine.py (bounded, byte for byte) and the integratord call that uses it."""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from mimizuku.core.quarantine import QuarantineFull, set_aside
from mimizuku.integratord import call as it


def test_set_aside_keeps_the_bytes_and_the_reason(tmp_path):
    payload = b'{"id": "1", "rule": {"id": "550"}, "odd": "\xff"}'
    path = set_aside(tmp_path / "q", payload, "RecursionError: too deep\nsecond line")
    assert path.read_bytes() == payload
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o027 == 0
    reason = path.with_suffix(".reason").read_text()
    assert "RecursionError" in reason and reason.count("\n") == 1  # one line


def test_same_payload_is_kept_once(tmp_path):
    first = set_aside(tmp_path, "{}", "a")
    assert set_aside(tmp_path, "{}", "b") == first
    assert len(list(tmp_path.glob("*.alert"))) == 1


def test_bounded_in_count_and_bytes(tmp_path):
    set_aside(tmp_path / "n", "1", "r", max_items=1)
    with pytest.raises(QuarantineFull):
        set_aside(tmp_path / "n", "2", "r", max_items=1)
    with pytest.raises(QuarantineFull):
        set_aside(tmp_path / "b", "x" * 100, "r", max_bytes=50)
    assert not list((tmp_path / "b").iterdir())


# --- the integratord call: any per-alert failure sets the alert aside (issue 17 item 4) --------

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "integrations" / "custom-mimizuku"


def deep_alert(depth: int, alert_id=None) -> bytes:
    """An alert nested ``depth`` levels deep, without a string id: what took the call down."""
    head = '{"rule":{"id":"550","level":7},"timestamp":"2026-11-20T10:15:02.123+0000",'
    if alert_id is not None:
        head += f'"id":"{alert_id}",'
    return (head + '"agent":{"id":"001","name":"web-01"},"deep":' + '{"a":' * depth + "1" + "}" * depth + "}").encode()


class Home:
    def __init__(self, tmp_path: Path):
        self.home = tmp_path / "ossec"
        (self.home / "logs").mkdir(parents=True)
        (self.home / "integrations").mkdir()
        self.script = self.home / "integrations" / "custom-mimizuku"
        shutil.copy(SCRIPT, self.script)
        self.spool = self.home / "mimizuku" / "spool"
        self.n = 0

    def alert_file(self, data: bytes) -> Path:
        self.n += 1
        p = self.home / f"custom-mimizuku-1700000000-{self.n}.alert"
        p.write_bytes(data)
        return p

    def argv(self, af: Path):
        return [str(self.script), str(af), "", "", "", "", "10", "3", "> /dev/null 2>&1"]

    def script_call(self, data: bytes) -> subprocess.CompletedProcess:
        """The real script in a fresh interpreter, argv as integratord writes it."""
        env = dict(os.environ, PYTHONPATH=str(ROOT / "detector"))
        return subprocess.run([sys.executable, *self.argv(self.alert_file(data))], env=env,
                              capture_output=True, text=True, timeout=120)

    def log_lines(self):
        p = self.home / "logs" / "integrations.log"
        return p.read_text().splitlines() if p.exists() else []

    def kept(self):
        return sorted((self.spool / "quarantine").glob("*.alert"))


@pytest.mark.parametrize("depth", [990, 5000])
def test_a_deep_alert_handed_over_by_integratord_is_set_aside(tmp_path, depth):
    h = Home(tmp_path)
    data = deep_alert(depth)
    done = h.script_call(data)
    assert done.returncode == it.EXIT_QUARANTINED, done.stderr
    assert "Traceback" not in done.stderr
    kept = h.kept()
    assert [k.read_bytes() for k in kept] == [data]                       # byte for byte
    assert stat.S_IMODE(os.stat(kept[0]).st_mode) & 0o027 == 0
    lines = [line for line in h.log_lines() if "ERROR" in line]
    assert len(lines) == 1 and str(kept[0]) in lines[0] and "RecursionError" in lines[0]
    assert not list((h.spool / "alerts").glob("*.json"))                  # nothing left to poison the spool
    # the next call is not affected: its alert waits for the first model as usual
    ok = h.script_call(deep_alert(3, alert_id="1700000000.2"))
    assert ok.returncode == it.EXIT_OK, ok.stderr
    assert len(list((h.spool / "alerts").glob("*.json"))) == 1 and h.kept() == kept


def test_any_unexpected_failure_sets_the_alert_aside_in_process(tmp_path, monkeypatch):
    h = Home(tmp_path)
    af = h.alert_file(deep_alert(2, alert_id="1700000000.3"))

    def broken(*a, **k):
        raise KeyError("a bug nobody foresaw")

    monkeypatch.setattr(it, "load_options", broken)
    assert it.run(h.argv(af), home=h.home, arm_watchdog=False) == it.EXIT_QUARANTINED
    assert [k.read_bytes() for k in h.kept()] == [af.read_bytes()]
    assert "KeyError" in h.kept()[0].with_suffix(".reason").read_text()
    assert sum("set aside as" in line for line in h.log_lines()) == 1


def test_an_alert_that_cannot_even_be_set_aside_is_reported_lost(tmp_path, monkeypatch):
    h = Home(tmp_path)
    af = h.alert_file(deep_alert(2, alert_id="1700000000.4"))

    def full(*a, **k):
        raise QuarantineFull("quarantine is full (1000 alerts, at most 1000)")

    monkeypatch.setattr(it, "load_options", lambda *a, **k: (_ for _ in ()).throw(KeyError("bug")))
    monkeypatch.setattr(it.quarantine, "set_aside", full)
    assert it.run(h.argv(af), home=h.home, arm_watchdog=False) == it.EXIT_LOST
    assert any("nor set aside" in line and "KeyError" in line for line in h.log_lines())


def test_a_failure_after_scoring_sets_only_that_alert_aside(tmp_path, monkeypatch):
    """Not the engine: building the event for one record fails. That alert is set aside, the
    others are sent, the call goes on."""
    from integration_fakes import fake_scorer
    from wazuh_emulation import FakeAnalysisd

    from mimizuku.core.spool import Spool

    h = Home(tmp_path)
    backlog = Spool(h.spool / "alerts")
    for i in ("a", "b"):
        backlog.put(json.loads(deep_alert(2, alert_id=i)) | {"data": {"mimizuku_test_score": 0.97}})
    real = it.apply_policy

    def policy(records, opts):
        if any(r.get("id") == "b" for r in records):
            raise RecursionError("maximum recursion depth exceeded")
        return real(records, opts)

    monkeypatch.setattr(it, "apply_policy", policy)
    af = h.alert_file(json.dumps(json.loads(deep_alert(2, alert_id="c")) |
                                 {"data": {"mimizuku_test_score": 0.97}}).encode())
    with FakeAnalysisd(h.home / "queue" / "sockets" / "queue") as fa:
        assert it.run(h.argv(af), home=h.home, in_process=fake_scorer, arm_watchdog=False) == it.EXIT_OK
        got = sorted(e.fields["mimizuku.source.alert_id"] for e in fa.receive(wait=1))
    assert got == ["a", "c"]
    assert [json.loads(k.read_bytes())["id"] for k in h.kept()] == ["b"]
    assert not list((h.spool / "alerts").glob("*.json"))
