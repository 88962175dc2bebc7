"""Shared by the resident-scorer tests: one real model per session, a scratch manager, a daemon.

The model is trained once per process with the engine on generated alerts
(``FleetConfig(days=3, scale=0.05)``) and saved as many times as a test needs (each copy with its
own version id), so every test scores with the real engine without paying for training again.
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from wazuh_emulation import FakeAnalysisd, ensure_wazuh_user

from mimizuku.integratord.options import Options
from mimizuku.serve.config import ServeConfig
from mimizuku.serve.server import Server

ROOT = Path(__file__).resolve().parent.parent
_CACHE: Dict[str, Any] = {}


def fitted_model():
    """The engine trained once per test session (3 generated days, small fleet)."""
    if "model" not in _CACHE:
        from mimizuku.engine.estimator import Mimizuku
        from mimizuku.tools.synth import FleetConfig, generate

        train = list(generate(FleetConfig(days=3, scale=0.05, attacks=False, seed=1)))
        _CACHE["model"] = Mimizuku().fit(train)
    return _CACHE["model"]


def save_model(directory: Path, version: str) -> Path:
    m = fitted_model()
    saved = m.model_version_
    m.model_version_ = version
    try:
        m.save_model(directory)
    finally:
        m.model_version_ = saved
    return directory


def traffic(n: int, prefix: str = "t", seed: int = 5) -> List[Dict[str, Any]]:
    """``n`` generated alerts (repeating the fleet if needed), each with a unique id."""
    key = ("traffic", seed)
    if key not in _CACHE:
        from mimizuku.tools.synth import FleetConfig, generate

        _CACHE[key] = list(generate(FleetConfig(days=1, scale=0.05, attacks=False, seed=seed)))
    base = _CACHE[key]
    out = []
    for i in range(n):
        a = json.loads(json.dumps(base[i % len(base)]))
        a.pop("_label", None)
        a["id"] = f"{prefix}.{i}"
        out.append(a)
    return out


def as_root() -> bool:
    return os.geteuid() == 0


class Scratch:
    """A /var/ossec look-alike: models (versions + current pointer), spool, run dir, queue."""

    def __init__(self, wazuh_user: bool = False):
        self.base = Path(tempfile.mkdtemp(prefix="mimizuku-serve-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.home = self.base / "ossec"
        for d in ("logs/alerts", "queue/sockets", "integrations", "mimizuku/models/versions",
                  "mimizuku/spool", "mimizuku/run"):
            (self.home / d).mkdir(parents=True, exist_ok=True)
        for d in ("", "logs", "queue", "mimizuku", "mimizuku/models", "mimizuku/models/versions"):
            os.chmod(self.home / d, 0o755 if d in ("", "logs", "queue", "mimizuku") else 0o750)
        self.models = self.home / "mimizuku" / "models"
        self.spool = self.home / "mimizuku" / "spool"
        self.run = self.home / "mimizuku" / "run"
        self.queue = self.home / "queue" / "sockets" / "queue"
        self.user: Optional[str] = None
        if wazuh_user and as_root():
            reason = ensure_wazuh_user()
            if reason:
                pytest.skip(reason)
            self.user = "wazuh"
            uid, gid = pwd.getpwnam("wazuh").pw_uid, grp.getgrnam("wazuh").gr_gid
            (self.spool / "alerts").mkdir()
            for d in (self.spool, self.spool / "alerts", self.run, self.home / "logs"):
                os.chown(d, uid, gid)
                os.chmod(d, 0o770)
            os.chown(self.home / "integrations", 0, gid)
            os.chmod(self.home / "integrations", 0o750)

    def install_version(self, version: str, current: bool = True) -> Path:
        d = save_model(self.models / "versions" / version, version)
        if current:
            self.point_current(version)
        return d

    def point_current(self, version: str) -> None:
        link = self.models / "current"
        tmp = self.models / ".current.tmp"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(f"versions/{version}", tmp)
        os.replace(tmp, link)

    def config(self, **kw: Any) -> ServeConfig:
        opts = Options.defaults(self.home)
        send = kw.pop("send", "all")
        opts.send = send
        kw.setdefault("flood_window", 0)
        kw.setdefault("watch_interval", 0.2)
        kw.setdefault("poll_interval", 0.05)
        return ServeConfig.for_home(self.home, options=opts, model_dir=self.models, **kw)

    def analysisd(self) -> "Collector":
        return Collector(FakeAnalysisd(self.queue))

    def spooled_alerts(self) -> int:
        d = self.spool / "alerts"
        return len([p for p in d.glob("*.json")]) if d.exists() else 0

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


class Collector:
    """Drains the fake analysisd socket in the background; events by source alert id."""

    def __init__(self, fake: FakeAnalysisd):
        self.fake = fake
        self.events: List[Any] = []
        self._stop = False
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                got = self.fake.receive(wait=0.05)
            except OSError:
                return
            self.events.extend(got)

    def ids(self) -> List[str]:
        return [ev.payload["mimizuku"]["source"]["alert_id"] for ev in list(self.events) if ev.payload]

    def wait_for(self, n: int, timeout: float = 60.0) -> List[str]:
        end = time.monotonic() + timeout
        while time.monotonic() < end and len(self.events) < n:
            time.sleep(0.02)
        return self.ids()

    def close(self) -> None:
        self._stop = True
        self._t.join()
        self.fake.close()


class Daemon:
    """``Server`` in a thread of the test process (signals are driven by request_*)."""

    def __init__(self, cfg: ServeConfig, wait_model: bool = True):
        self.server = Server(cfg)
        self.code: Optional[int] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.server.ready_event.wait(30), "daemon did not start"
        if wait_model:
            assert self.server.model_event.wait(60), "daemon did not load its model"
            end = time.monotonic() + 30
            while not self.server.ready and time.monotonic() < end:
                time.sleep(0.01)

    def _run(self) -> None:
        self.code = self.server.serve_forever(install_signals=False)

    def stop(self, timeout: float = 60.0) -> Optional[int]:
        self.server.request_stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "daemon did not stop"
        return self.code


def wait_until(cond, timeout: float = 90.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


def write_client_script(scratch: Scratch) -> Path:
    """The real ``custom-mimizuku`` with an interpreter integratord's user can run."""
    script = scratch.home / "integrations" / "custom-mimizuku"
    body = (ROOT / "integrations" / "custom-mimizuku").read_text().splitlines()[1:]
    python = "/usr/bin/python3" if scratch.user else sys.executable
    lines = [f"#!{python} -I", f"import sys; sys.path.insert(0, {str(ROOT / 'detector')!r})"] + body
    script.write_text("\n".join(lines) + "\n")
    if scratch.user:
        os.chown(script, 0, grp.getgrnam("wazuh").gr_gid)
        os.chmod(script, 0o750)
    else:
        os.chmod(script, 0o550)
    return script
