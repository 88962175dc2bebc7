"""install.sh and the resident scorer's systemd unit (root only): rendered for the prefix and the
virtualenv, enabled and restarted through systemctl, stopped and removed by --uninstall; skipped
with --no-systemd. systemctl is a stand-in that records its calls, the unit goes to a scratch
directory (--systemd-dir), so the host's systemd is never touched."""
from __future__ import annotations

import configparser
import os
import subprocess

import pytest
from test_install import INSTALL, Tree, mode_owner


@pytest.fixture
def tree():
    t = Tree()
    t.units = t.base / "units"
    t.units.mkdir()
    t.bin = t.base / "bin"
    t.bin.mkdir()
    t.calls = t.base / "systemctl.log"
    fake = t.bin / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {t.calls}\n")
    os.chmod(fake, 0o755)
    yield t
    t.close()


def install(t, *args):
    env = dict(os.environ, PATH=f"{t.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    p = subprocess.run(["bash", str(INSTALL), "--prefix", str(t.home), *args], capture_output=True, text=True,
                       timeout=300, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def calls(t):
    return t.calls.read_text().splitlines() if t.calls.exists() else []


def test_unit_installed_enabled_and_removed(tree):
    venv = tree.engine_venv()
    install(tree, "--venv", str(venv), "--no-pip", "--systemd-dir", str(tree.units))
    unit = tree.units / "mimizuku-serve.service"
    assert mode_owner(unit) == (0o644, "root", "root")
    cp = configparser.ConfigParser(interpolation=None, strict=False)
    cp.read_string(unit.read_text())
    svc = cp["Service"]
    assert svc["User"] == "wazuh" and svc["Restart"] == "on-failure"
    assert svc["ExecStart"] == f"{venv}/bin/python3 -m mimizuku.serve --wazuh-home {tree.home}"
    assert "/var/ossec" not in "".join(v for k, v in svc.items())
    assert cp["Install"]["WantedBy"] == "multi-user.target"
    assert calls(tree) == ["daemon-reload", "enable mimizuku-serve.service", "restart mimizuku-serve.service"]
    assert mode_owner(tree.home / "mimizuku" / "run") == (0o750, "wazuh", "wazuh")
    # the command the unit runs works for user wazuh (it parses its arguments)
    p = subprocess.run(["runuser", "-u", "wazuh", "--", f"{venv}/bin/python3", "-m", "mimizuku.serve", "--help"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "--follow" in p.stdout
    tree.calls.unlink()
    install(tree, "--uninstall")
    assert not unit.exists()
    assert calls(tree) == ["disable --now mimizuku-serve.service", "daemon-reload"]
    assert not (tree.home / "mimizuku" / "run").exists()


def test_no_systemd_option_installs_no_unit(tree):
    venv = tree.engine_venv()
    out = install(tree, "--venv", str(venv), "--no-pip", "--systemd-dir", str(tree.units), "--no-systemd").stdout
    assert list(tree.units.iterdir()) == [] and calls(tree) == []
    assert "run the resident scorer as user wazuh yourself" in out
