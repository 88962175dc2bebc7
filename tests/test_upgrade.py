"""install.sh over an installed previous release (the flat package layout, commit 321ce61).

A manager that ran the release before the package was split by role has its integration script,
rules, ossec.conf section and systemd unit from that release, and a virtualenv whose package is
upgraded in place. Running today's install.sh over it must leave a working installation: the
script and the unit's command import the new layout as user wazuh, the section is replaced (not
added twice), and a model the old release saved still loads (tests/test_legacy_model.py scores it).
"""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from test_install import BEGIN, ROOT, Tree, mode_owner

PREVIOUS = "321ce61"  # the last commit of the flat layout


def _previous_release(dest: Path) -> Path:
    """The previous release's tree, from this clone's history (skip when the history is not there)."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    p = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", PREVIOUS], capture_output=True)
    if p.returncode != 0:
        pytest.skip(f"commit {PREVIOUS} is not in this clone's history: {p.stderr.decode(errors='replace')[:200]}")
    with tarfile.open(fileobj=io.BytesIO(p.stdout)) as tar:
        tar.extractall(dest, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
    return dest


@pytest.fixture
def tree():
    t = Tree()
    t.units = t.base / "units"
    t.units.mkdir()
    t.bin = t.base / "bin"
    t.bin.mkdir()
    fake = t.bin / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$*\" >> {t.base / 'systemctl.log'}\n")
    os.chmod(fake, 0o755)
    yield t
    t.close()


def _install(t: Tree, checkout: Path, venv: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{t.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    p = subprocess.run(["bash", str(checkout / "install.sh"), "--prefix", str(t.home), "--venv", str(venv),
                        "--no-pip", "--systemd-dir", str(t.units)], capture_output=True, text=True, timeout=300,
                       env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    return p


def _as_wazuh(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "wazuh", "--", *argv], capture_output=True, text=True, timeout=120)


def test_install_over_the_previous_release(tree):
    old = _previous_release(tree.base / "previous")
    assert (old / "detector" / "mimizuku" / "integration.py").exists()  # really the flat layout
    venv = tree.engine_venv()
    pth = next(venv.glob("lib/python3*/site-packages")) / "mimizuku-checkout.pth"
    pth.write_text(str(old / "detector") + "\n")  # the venv holds the previous release
    _install(tree, old, venv)
    script = tree.home / "integrations" / "custom-mimizuku"
    assert "mimizuku.scorer_client" in script.read_text()
    assert _as_wazuh(str(script)).returncode == 2  # the old script works: usage error after importing

    pth.write_text(str(ROOT / "detector") + "\n")  # `pip install -U` of the package in the same venv
    _install(tree, ROOT, venv)

    assert script.read_text().splitlines()[1:] == (ROOT / "integrations" / "custom-mimizuku").read_text().splitlines()[1:]
    assert mode_owner(script) == (0o750, "root", "wazuh")
    assert (tree.home / "etc" / "rules" / "mimizuku_rules.xml").read_bytes() == \
        (ROOT / "wazuh_rules" / "mimizuku_rules.xml").read_bytes()
    assert (tree.home / "etc" / "ossec.conf").read_text().count(BEGIN) == 1
    # the script imports the new layout for user wazuh (usage error: it got as far as parsing argv)
    p = _as_wazuh(str(script))
    assert p.returncode == 2, p.stderr
    # the systemd unit's command, unchanged across the upgrade, runs the new scorer
    unit = (tree.units / "mimizuku-serve.service").read_text()
    assert f"{venv}/bin/python3 -m mimizuku.serve --wazuh-home {tree.home}" in unit
    p = _as_wazuh(f"{venv}/bin/python3", "-m", "mimizuku.serve", "--help")
    assert p.returncode == 0 and "--follow" in p.stdout, p.stderr
    p = _as_wazuh(f"{venv}/bin/python3", "-I", "-c", "import mimizuku.integratord.forward, mimizuku.integratord.call")
    assert p.returncode == 0, p.stderr
