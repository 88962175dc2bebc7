"""install.sh on a Wazuh 5.x manager (root only): a scratch /var/wazuh-manager with the 5.0 layout.

The layout is the one wazuh/wazuh 5.0.0 installs (docs/guide/migration/manager-configuration-migration.md:
/var/wazuh-manager, etc/wazuh-manager.conf with <wazuh_config>, user and group wazuh-manager;
src/init/inst-functions.sh: bin/wazuh-manager-control and VERSION.json; src/init/wazuh-server.sh: its
``info`` prints WAZUH_VERSION="v5.0.0"; filebeat-to-indexer-connector.md: the <indexer><hosts><host>
block). systemctl is a stand-in that records its calls and the units go to a scratch directory.
"""
from __future__ import annotations

import configparser
import grp
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from test_install import INSTALL, SYSTEM_PYTHON, Tree, mode_owner, snapshot

USER = "wazuh-manager"
CONF = """<wazuh_config>
  <global>
    <agents_disconnection_time>15m</agents_disconnection_time>
  </global>
  <indexer>
    <hosts>
      <host>https://10.0.0.5:9200</host>
      <host>https://10.0.0.6:9200</host>
    </hosts>
    <ssl>
      <certificate_authorities>
        <ca>/var/wazuh-manager/etc/certs/root-ca.pem</ca>
      </certificate_authorities>
    </ssl>
  </indexer>
</wazuh_config>
"""


def ensure_manager_user():
    try:
        pwd.getpwnam(USER)
        grp.getgrnam(USER)
        return None
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        return "useradd not available"
    try:
        try:
            grp.getgrnam(USER)
        except KeyError:
            subprocess.run(["groupadd", "--system", USER], check=True, capture_output=True)
        subprocess.run(["useradd", "--system", "--gid", USER, "--home-dir", "/var/wazuh-manager", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", USER], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        return f"cannot create user {USER}: {e.stderr.decode(errors='replace').strip()}"
    return None


class Manager5:
    """A scratch Wazuh 5.x manager (what install.sh looks at), the units directory and systemctl."""

    def __init__(self, version="v5.0.0", conf=CONF):
        if os.geteuid() != 0:
            pytest.skip("install.sh needs root (CI runs as root)")
        reason = ensure_manager_user()
        if reason:
            pytest.skip(reason)
        if not os.access(SYSTEM_PYTHON, os.X_OK):
            pytest.skip("no system python3")
        self.base = Path(tempfile.mkdtemp(prefix="mimizuku-inst5-", dir="/tmp"))
        os.chmod(self.base, 0o755)
        h = self.home = self.base / "wazuh-manager"
        for d in ("bin", "etc", "logs", "queue/sockets", "var/run"):
            (h / d).mkdir(parents=True)
        control = h / "bin" / "wazuh-manager-control"
        control.write_text("#!/bin/sh\n# stand-in for wazuh-manager-control (src/init/wazuh-server.sh): only 'info'\n"
                           f"if [ \"$1\" = info ]; then\n  echo 'WAZUH_VERSION=\"{version}\"'\n"
                           "  echo 'WAZUH_REVISION=\"beta5\"'\n  echo 'WAZUH_TYPE=\"manager\"'\nfi\n")
        os.chmod(control, 0o750)
        (h / "VERSION.json").write_text('{\n    "version": "5.0.0",\n    "stage": "beta5"\n}\n')
        (h / "etc" / "wazuh-manager.conf").write_text(conf)
        gid = grp.getgrnam(USER).gr_gid
        os.chown(h, 0, gid)
        os.chmod(h, 0o750)
        os.chown(h / "etc" / "wazuh-manager.conf", 0, gid)
        os.chmod(h / "etc" / "wazuh-manager.conf", 0o660)
        self.units = self.base / "units"
        self.units.mkdir()
        self.bin = self.base / "bin"
        self.bin.mkdir()
        self.calls = self.base / "systemctl.log"
        fake = self.bin / "systemctl"
        fake.write_text(f"#!/bin/sh\necho \"$*\" >> {self.calls}\n")
        os.chmod(fake, 0o755)

    engine_venv = Tree.engine_venv

    def install(self, *args, check=True, systemd=True):
        env = dict(os.environ, PATH=f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}")
        extra = ["--systemd-dir", str(self.units)] if systemd else []
        p = subprocess.run(["bash", str(INSTALL), "--prefix", str(self.home), *extra, *args], capture_output=True,
                           text=True, timeout=300, env=env)
        if check:
            assert p.returncode == 0, p.stdout + p.stderr
        return p

    def systemctl_calls(self):
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def unit(self, name):
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        cp.optionxform = str
        cp.read_string((self.units / name).read_text())
        return cp

    def close(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def mgr():
    m = Manager5()
    yield m
    m.close()


def test_installs_the_indexer_scorer_and_the_nightly_timer_and_nothing_of_4x(mgr):
    venv = mgr.engine_venv()
    conf_before = (mgr.home / "etc" / "wazuh-manager.conf").read_bytes()
    out = mgr.install("--venv", str(venv), "--no-pip").stdout
    h = mgr.home
    assert "Wazuh v5.0.0" in out and "indexer.env" in out
    serve = mgr.unit("mimizuku-serve.service")["Service"]
    assert serve["User"] == USER and serve["Group"] == USER
    assert serve["ExecStart"] == (f"{venv}/bin/python3 -m mimizuku.serve --wazuh-home {h} --socket-group {USER} "
                                  "--follow-indexer https://10.0.0.5:9200/wazuh-events-v5-* --sink none "
                                  "--index-url https://10.0.0.5:9200")
    assert serve["EnvironmentFile"] == f"{h}/etc/mimizuku/indexer.env"
    retrain = mgr.unit("mimizuku-retrain.service")["Service"]
    assert retrain["Type"] == "oneshot" and "User" not in retrain   # root: it writes the models
    assert retrain["ExecStart"].startswith(f"{venv}/bin/mimizuku retrain --wazuh-home {h} --model-dir "
                                           f"{h}/mimizuku/models --input https://10.0.0.5:9200/wazuh-events-v5-* ")
    timer = mgr.unit("mimizuku-retrain.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    assert timer["Install"]["WantedBy"] == "timers.target"
    for name in ("mimizuku-serve.service", "mimizuku-retrain.service", "mimizuku-retrain.timer"):
        assert mode_owner(mgr.units / name) == (0o644, "root", "root")
        body = "\n".join(line for line in (mgr.units / name).read_text().splitlines() if not line.startswith("#"))
        assert "/var/wazuh-manager" not in body and "@INDEXER_URL@" not in body
    assert mgr.systemctl_calls() == ["daemon-reload", "enable mimizuku-serve.service",
                                     "restart mimizuku-serve.service", "enable --now mimizuku-retrain.timer"]
    # no <integration>, no XML rules, the manager's configuration untouched
    assert (h / "etc" / "wazuh-manager.conf").read_bytes() == conf_before
    assert not (h / "integrations").exists() and not (h / "etc" / "rules").exists()
    assert not list(h.rglob("custom-mimizuku")) and not list(h.rglob("*.xml"))
    assert mode_owner(h / "mimizuku" / "spool") == (0o750, USER, USER)
    assert mode_owner(h / "mimizuku" / "models") == (0o750, "root", USER)
    assert mode_owner(h / "etc" / "mimizuku") == (0o700, "root", "root")


def test_the_units_command_lines_parse(mgr):
    """The scorer's and the job's command lines, as the units run them, are accepted by their parsers."""
    import shlex

    from mimizuku.serve.config import ServeConfig
    venv = mgr.engine_venv()
    mgr.install("--venv", str(venv), "--no-pip")
    assert "index_url" in {s.name for s in ServeConfig.TABLE}
    for unit, module in (("mimizuku-serve.service", "mimizuku.serve"), ("mimizuku-retrain.service", None)):
        argv = shlex.split(mgr.unit(unit)["Service"]["ExecStart"])
        args = argv[3:] if module else argv[1:]
        cmd = [str(venv / "bin" / "python3"), "-m", module or "mimizuku", *args, "--help"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr


def test_second_run_changes_nothing_and_uninstall_removes_it_all(mgr):
    venv = mgr.engine_venv()
    before, units_before = snapshot(mgr.home), set(os.listdir(mgr.units))
    mgr.install("--venv", str(venv), "--no-pip")
    first = snapshot(mgr.home)
    units = {n: (mgr.units / n).read_bytes() for n in os.listdir(mgr.units)}
    mgr.install("--venv", str(venv), "--no-pip")
    mgr.install("--venv", str(venv), "--no-pip", "--dry-run")
    assert snapshot(mgr.home) == first and {n: (mgr.units / n).read_bytes() for n in os.listdir(mgr.units)} == units
    mgr.calls.unlink()
    mgr.install("--uninstall")
    assert set(os.listdir(mgr.units)) == units_before
    assert mgr.systemctl_calls() == ["disable --now mimizuku-retrain.timer", "disable --now mimizuku-serve.service",
                                     "daemon-reload"]
    assert snapshot(mgr.home) == before


@pytest.mark.parametrize("option, says", [
    ("--with-rules", "no XML rules"), ("--with-integration", "no wazuh-integratord"),
    ("--with-syslog-localfile", "no csyslogd"), ("--no-systemd", "systemd units")])
def test_what_5x_cannot_do_is_refused_untouched(mgr, option, says):
    venv = mgr.engine_venv()
    before = snapshot(mgr.home)
    p = mgr.install("--venv", str(venv), "--no-pip", option, check=False)
    assert p.returncode == 4 and "refused" in p.stderr and says in p.stderr, p.stderr
    assert snapshot(mgr.home) == before and os.listdir(mgr.units) == [] and mgr.systemctl_calls() == []


def test_the_indexer_url_comes_from_the_option_or_the_managers_indexer_block(mgr):
    venv = mgr.engine_venv()
    mgr.install("--venv", str(venv), "--no-pip", "--indexer-url", "https://indexer.example:9200/")
    assert "--follow-indexer https://indexer.example:9200/wazuh-events-v5-* " in \
        mgr.unit("mimizuku-serve.service")["Service"]["ExecStart"]
    for bad, says in (("https://admin:pw@indexer:9200", "credentials"), ("http://10.0.0.5:9200", "https://"),
                      ("https://indexer:9200/x y", "scheme://host")):
        p = mgr.install("--venv", str(venv), "--no-pip", "--indexer-url", bad, check=False)
        assert p.returncode == 1 and says in p.stderr, p.stderr


def test_no_indexer_anywhere_and_a_version_that_does_not_match_the_layout_are_refused():
    m = Manager5(conf="<wazuh_config>\n  <global/>\n</wazuh_config>\n")
    try:
        before = snapshot(m.home)
        p = m.install("--no-venv", "--python", SYSTEM_PYTHON, check=False)
        assert p.returncode == 1 and "--indexer-url" in p.stderr
        assert snapshot(m.home) == before
    finally:
        m.close()
    m = Manager5(version="v4.14.7")
    try:
        p = m.install("--no-venv", "--python", SYSTEM_PYTHON, check=False)
        assert p.returncode == 1 and "not supported" in p.stderr and "5.x layout" in p.stderr
    finally:
        m.close()


# --- the scorer's --sink none (what the 5.x unit runs) ---------------------------------------------

def test_sink_none_needs_the_indexer_sink_and_sends_nothing(tmp_path):
    import argparse

    from mimizuku.integratord.options import OptionsError
    from mimizuku.serve.config import ServeConfig, add_arguments, config_from_args
    from mimizuku.serve.pipeline import NoEventSink, make_event_sink

    p = argparse.ArgumentParser()
    add_arguments(p)
    with pytest.raises(OptionsError, match="--index-url"):
        config_from_args(p.parse_args(["--wazuh-home", str(tmp_path), "--sink", "none"]))
    cfg = ServeConfig(home=tmp_path, sink="none")
    sink = make_event_sink(cfg, lambda *a: None)
    assert isinstance(sink, NoEventSink)
    assert sink.send(b"1:mimizuku:{}") is True and sink.pending() == 0 and sink.flush() == 0
    assert not (tmp_path / "mimizuku" / "spool" / "events").exists()   # nothing kept to grow forever
