"""install.sh against a scratch /var/ossec tree with a real wazuh user and group (root only).

The engine's interpreter is a small venv made from the system Python with the checkout on its path
(a .pth file), so no test reinstalls scikit-learn; the pip path is exercised once with --no-deps.
"""
from __future__ import annotations

import grp
import hashlib
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from wazuh_emulation import ensure_wazuh_user, make_scratch_manager

ROOT = Path(__file__).resolve().parent.parent
INSTALL = ROOT / "install.sh"
BEGIN = "<!-- BEGIN mimizuku: added by mimizuku install.sh, removed by its uninstall option -->"
SYSTEM_PYTHON = "/usr/bin/python3"



# --- the ossec.conf blocks (no root needed, but kept here with the installer) ---------------------

INTEGRATION_ELEMENTS = {"name", "hook_url", "api_key", "level", "rule_id", "group", "event_location",
                        "alert_format", "max_log", "options", "timeout", "retries"}
WODLE_COMMAND_OPTIONS = {"disabled", "tag", "command", "interval", "day", "wday", "time", "run_on_start",
                         "timeout", "ignore_output", "verify_md5", "verify_sha1", "verify_sha256",
                         "skip_verification"}


def test_conf_blocks_use_only_known_elements():
    import json

    integ = ET.parse(ROOT / "ossec_conf" / "integration.xml").getroot().find("integration")
    assert {c.tag for c in integ} <= INTEGRATION_ELEMENTS
    assert integ.findtext("name") == "custom-mimizuku" and integ.findtext("alert_format") == "json"
    assert int(integ.findtext("timeout")) >= 5 and int(integ.findtext("level")) >= 3
    opts = json.loads(integ.findtext("options"))
    from mimizuku.integratord.options import OPTION_KEYS
    assert set(opts) <= set(OPTION_KEYS)
    wodle = ET.parse(ROOT / "ossec_conf" / "wodle_retrain.xml").getroot().find("wodle")
    assert wodle.get("name") == "command"
    assert {c.tag for c in wodle} <= WODLE_COMMAND_OPTIONS
    assert wodle.findtext("tag") == "mimizuku"
    assert wodle.findtext("interval") and wodle.findtext("time") and int(wodle.findtext("timeout")) > 0
    assert wodle.findtext("command").startswith("/var/ossec/mimizuku/venv/bin/mimizuku retrain")
    lf = ET.parse(ROOT / "ossec_conf" / "localfile_syslog.xml").getroot().find("localfile")
    assert lf.findtext("location") == "/var/ossec/logs/mimizuku/anomaly.syslog"


# --- helpers ---------------------------------------------------------------------------------------

def snapshot(home: Path, skip=("logs",)) -> dict:
    """path -> (type, mode, owner, group, sha256) for everything under home."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(home):
        rel = Path(dirpath).relative_to(home)
        if rel.parts and rel.parts[0] in skip:
            continue
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = os.lstat(p)
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else ""
            out[str(p.relative_to(home))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, digest)
    return out


class Tree:
    def __init__(self, version="v4.14.7"):
        if os.geteuid() != 0:
            pytest.skip("install.sh needs root (CI runs as root)")
        reason = ensure_wazuh_user()
        if reason:
            pytest.skip(reason)
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            pytest.skip("no system python3 the wazuh user can run")
        self.base = Path(tempfile.mkdtemp(prefix="mimizuku-inst-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        self.home = make_scratch_manager(self.base / "ossec", version=version)
        gid = grp.getgrnam("wazuh").gr_gid
        os.chown(self.home, 0, gid)
        os.chmod(self.home, 0o750)
        os.chown(self.home / "etc" / "ossec.conf", 0, gid)
        self.uid, self.gid = pwd.getpwnam("wazuh").pw_uid, gid

    def engine_venv(self) -> Path:
        """A venv of the system Python that imports mimizuku from the checkout (stdlib part only)."""
        venv = self.base / "engine-venv"
        subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next(venv.glob("lib/python3*/site-packages"))
        (site / "mimizuku-checkout.pth").write_text(str(ROOT / "detector") + "\n")
        return venv

    def install(self, *args, check=True):
        p = subprocess.run(["bash", str(INSTALL), "--prefix", str(self.home), *args],
                           capture_output=True, text=True, timeout=300)
        if check:
            assert p.returncode == 0, p.stdout + p.stderr
        return p

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def tree():
    t = Tree()
    yield t
    t.close()


def mode_owner(p: Path):
    st = os.stat(p)
    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


# --- install / idempotence / uninstall --------------------------------------------------------

def test_install_permissions_and_merged_conf(tree):
    venv = tree.engine_venv()
    before_conf = (tree.home / "etc" / "ossec.conf").read_text()
    out = tree.install("--venv", str(venv), "--no-pip").stdout
    assert "restart" in out and "wazuh-logtest" in out
    h = tree.home
    script = h / "integrations" / "custom-mimizuku"
    assert mode_owner(script) == (0o750, "root", "wazuh")
    assert script.read_text().splitlines()[0] == f"#!{venv}/bin/python3 -IS"
    assert script.read_text().splitlines()[1:] == (ROOT / "integrations" / "custom-mimizuku").read_text().splitlines()[1:]
    rules = h / "etc" / "rules" / "mimizuku_rules.xml"
    assert mode_owner(rules) == (0o640, "root", "wazuh")
    assert rules.read_bytes() == (ROOT / "wazuh_rules" / "mimizuku_rules.xml").read_bytes()
    assert mode_owner(h / "mimizuku") == (0o750, "root", "wazuh")
    assert mode_owner(h / "mimizuku" / "spool") == (0o750, "wazuh", "wazuh")
    assert mode_owner(h / "mimizuku" / "models") == (0o750, "root", "wazuh")
    conf = (h / "etc" / "ossec.conf").read_text()
    assert conf.startswith(before_conf) and conf.count(BEGIN) == 1
    assert mode_owner(h / "etc" / "ossec.conf") == (0o660, "root", "wazuh")
    section = conf[conf.index(BEGIN):]
    root = ET.fromstring("<root>" + section + "</root>")
    integ = root.find("ossec_config/integration")
    assert integ.findtext("name") == "custom-mimizuku"
    assert f'"model_dir": "{h}/mimizuku/models"' in integ.findtext("options")
    assert root.find("ossec_config/wodle").findtext("command").startswith(f"{venv}/bin/mimizuku retrain --wazuh-home {h} ")
    assert "/var/ossec" not in section
    backups = list((h / "etc").glob("ossec.conf.mimizuku-*.bak"))
    assert len(backups) == 1 and backups[0].read_text() == before_conf
    # the installed script runs for user wazuh: argv check through the real file
    p = subprocess.run(["runuser", "-u", "wazuh", "--", str(script)], capture_output=True, text=True)
    assert p.returncode == 2  # usage error: it imported mimizuku and parsed argv


def test_second_run_changes_nothing_and_dry_run_changes_nothing(tree):
    venv = tree.engine_venv()
    tree.install("--venv", str(venv), "--no-pip")
    first = snapshot(tree.home)
    out = tree.install("--venv", str(venv), "--no-pip").stdout
    assert "already has the current mimizuku section" in out
    assert snapshot(tree.home) == first
    tree.install("--venv", str(venv), "--no-pip", "--dry-run")
    assert snapshot(tree.home) == first


def test_dry_run_on_a_fresh_manager_changes_nothing(tree):
    venv = tree.engine_venv()
    before = snapshot(tree.home)
    out = tree.install("--venv", str(venv), "--no-pip", "--dry-run").stdout
    assert "would" in out or "installing" in out
    assert snapshot(tree.home) == before


def test_uninstall_removes_exactly_what_was_added(tree):
    venv = tree.engine_venv()
    before = snapshot(tree.home)
    tree.install("--venv", str(venv), "--no-pip", "--with-syslog-localfile")
    assert "anomaly.syslog" in (tree.home / "etc" / "ossec.conf").read_text()
    (tree.home / "mimizuku" / "spool" / "pending.json").write_text("{}")  # data written since
    tree.install("--uninstall")
    after = snapshot(tree.home)
    added = set(after) - set(before)
    assert added == {"mimizuku", "mimizuku/spool", "mimizuku/spool/pending.json",
                     "mimizuku/install-manifest"}  # data kept, and no backup of ossec.conf left
    assert all(after[k] == v for k, v in before.items())  # ...and everything else is as before
    assert set(before) <= set(after)
    tree.install("--uninstall", "--purge")
    after = snapshot(tree.home)
    assert after == before


@pytest.mark.parametrize("ending", [b"", b"\n", b"\n\n"])
def test_uninstall_is_byte_exact_whatever_ossec_conf_ended_with(tree, ending):
    """issue 17, item 13: an ossec.conf without a final newline got one from install (before the
    section) that uninstall left, and uninstall left its own .bak; now the tree is as before, byte
    for byte, and a section the user wrote after is kept with its newline."""
    venv = tree.engine_venv()
    conf = tree.home / "etc" / "ossec.conf"
    conf.write_bytes(conf.read_bytes().rstrip(b"\n") + ending)
    original = conf.read_bytes()
    before = snapshot(tree.home)
    tree.install("--venv", str(venv), "--no-pip")
    assert conf.read_bytes().startswith(original) and BEGIN.encode() in conf.read_bytes()
    tree.install("--uninstall", "--purge")
    assert conf.read_bytes() == original
    assert snapshot(tree.home) == before
    # the user added something after the section: it stays, and so does the newline before it
    tree.install("--venv", str(venv), "--no-pip")
    conf.write_bytes(conf.read_bytes() + b"<!-- user note -->\n")
    tree.install("--uninstall", "--purge")
    assert conf.read_bytes() == original + (b"\n" if not ending else b"") + b"<!-- user note -->\n"


def test_reinstall_over_an_edited_section_restores_it(tree):
    venv = tree.engine_venv()
    tree.install("--venv", str(venv), "--no-pip")
    conf = tree.home / "etc" / "ossec.conf"
    good = conf.read_text()
    conf.write_text(good.replace("<timeout>10</timeout>", "<timeout>99</timeout>") + "\n<!-- user note -->\n")
    tree.install("--venv", str(venv), "--no-pip")
    text = conf.read_text()
    assert text.count(BEGIN) == 1 and "<timeout>10</timeout>" in text and "<!-- user note -->" in text


@pytest.mark.parametrize("version, message", [("v4.7.5", "not supported"), ("v5.0.0", "not supported"),
                                              ("garbage", "not supported")])
def test_unsupported_wazuh_versions_are_refused_untouched(version, message):
    t = Tree(version=version)
    try:
        before = snapshot(t.home)
        p = t.install("--no-venv", "--python", SYSTEM_PYTHON, check=False)
        assert p.returncode != 0 and message in p.stderr
        assert snapshot(t.home) == before
    finally:
        t.close()


def test_interpreter_the_wazuh_user_cannot_run_is_refused(tree):
    if not str(Path(sys.executable).resolve()).startswith("/root/"):
        pytest.skip("the test interpreter is not in a private directory")
    before = snapshot(tree.home)
    p = tree.install("--no-venv", "--python", sys.executable, check=False)
    assert p.returncode != 0 and "user wazuh cannot run" in p.stderr
    assert snapshot(tree.home) == before


def test_an_interpreter_in_a_private_directory_is_refused_with_the_way_out(tree):
    """issue 17, item 13: integratord runs the script as wazuh; an interpreter under a directory
    only root can enter (as /root) is refused, and the message says how to pick another one. The
    option it names exists and works."""
    private = tree.base / "root-only"
    private.mkdir(mode=0o700)
    venv = private / "engine-venv"
    shutil.move(str(tree.engine_venv()), str(venv))
    before = snapshot(tree.home)
    p = tree.install("--no-venv", "--python", str(venv / "bin" / "python3"), check=False)
    assert p.returncode != 0 and "user wazuh cannot run" in p.stderr
    assert "--python /usr/bin/python3" in p.stderr and "/root" in p.stderr
    assert snapshot(tree.home) == before
    assert "--python PY" in tree.install("--help").stdout


def test_failure_while_committing_rolls_everything_back(tree):
    venv = tree.engine_venv()
    rules = tree.home / "etc" / "rules" / "mimizuku_rules.xml"
    rules.mkdir()  # a directory where the rules file must go: the commit fails half-way
    (rules / "keep").write_text("x")
    before = snapshot(tree.home)
    p = tree.install("--venv", str(venv), "--no-pip", check=False)
    assert p.returncode != 0 and "restoring the previous state" in p.stderr
    assert snapshot(tree.home) == before
    assert not list((tree.home / "etc").glob(".mimizuku-stage.*"))


def test_a_manual_block_outside_the_section_is_not_duplicated(tree):
    venv = tree.engine_venv()
    conf = tree.home / "etc" / "ossec.conf"
    conf.write_text(conf.read_text() + "<ossec_config><integration><name>custom-mimizuku</name>"
                                       "<alert_format>json</alert_format></integration></ossec_config>\n")
    before = snapshot(tree.home)
    p = tree.install("--venv", str(venv), "--no-pip", check=False)
    assert p.returncode != 0 and "another custom-mimizuku" in p.stderr
    assert snapshot(tree.home) == before


def test_pip_path_creates_the_venv_and_uninstall_removes_it(tree):
    """The real venv + pip install path, without dependencies (seen through system site-packages)."""
    venv = tree.home / "mimizuku" / "venv"
    p = tree.install("--python", SYSTEM_PYTHON, "--system-site-packages",
                     "--pip-args", "--no-deps --no-build-isolation --no-index", check=False)
    if p.returncode != 0 and ("No module named pip" in p.stderr or "ensurepip" in p.stderr
                              or "setuptools" in p.stderr or "cannot create the virtualenv" in p.stderr):
        pytest.skip("system python cannot build the project offline: " + p.stderr.strip()[-200:])
    assert p.returncode == 0, p.stdout + p.stderr
    assert (venv / "bin" / "python3").exists()
    r = subprocess.run(["runuser", "-u", "wazuh", "--", str(venv / "bin" / "python3"), "-I", "-c",
                        "import mimizuku.integratord.call, mimizuku; print(mimizuku.__file__)"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and str(venv) in r.stdout, r.stderr
    tree.install("--uninstall")
    assert not venv.exists()
