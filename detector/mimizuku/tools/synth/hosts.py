"""The fleet's hosts as the generator animates them: accounts, groups, FIM configuration and the
per-host counters (pids, audit sessions, inodes, file states) of a ``Host``; who acts on one
(``Actor``: credentials, tty, working directory) and when (``Cursor``: a time and its RNG).
"""
from __future__ import annotations

import random
from typing import Any, Dict, Optional, Tuple

from mimizuku.tools.synth.fleet import HOUR_MS, HostSpec
from mimizuku.tools.synth.formats import stable_int

_UNSET = 4294967295  # audit's unset auid, (uid_t)-1


_BASE_USERS = (
    ("root", 0, 0, "/root"), ("daemon", 1, 1, "/usr/sbin"), ("bin", 2, 2, "/bin"), ("sys", 3, 3, "/dev"),
    ("www-data", 33, 33, "/var/www"), ("backup", 34, 34, "/var/backups"), ("nobody", 65534, 65534, "/nonexistent"),
    ("systemd-network", 100, 102, "/run/systemd"), ("systemd-resolve", 101, 103, "/run/systemd"),
    ("systemd-timesync", 102, 104, "/run/systemd"), ("messagebus", 103, 106, "/nonexistent"),
    ("syslog", 104, 110, "/home/syslog"), ("_apt", 105, 65534, "/nonexistent"), ("sshd", 109, 65534, "/run/sshd"),
)
_BASE_GROUPS = {0: "root", 1: "daemon", 2: "bin", 3: "sys", 4: "adm", 5: "tty", 27: "sudo", 33: "www-data",
                34: "backup", 42: "shadow", 43: "utmp", 100: "users", 101: "systemd-journal", 102: "systemd-network",
                103: "systemd-resolve", 104: "systemd-timesync", 105: "crontab", 106: "messagebus", 110: "syslog",
                65534: "nogroup"}

ADMINS = ("alice", "bob", "carol", "dave")
NEW_ADMIN = "erin"
ADMIN_UID = {"alice": 1001, "bob": 1002, "carol": 1003, "dave": 1004, "erin": 1005}
MAIL_USERS = ("alice", "bob", "carol", "dave", "frank", "grace", "heidi", "ivan", "judy", "ken", "lena", "mike",
              "nina", "oscar")

# Where file integrity monitoring looks, per role: (prefix, mode). Longest prefix wins.
_FIM_SERVER = (("/etc", "whodata"), ("/usr/bin", "whodata"), ("/usr/sbin", "whodata"), ("/usr/lib", "whodata"),
               ("/usr/local/bin", "whodata"), ("/usr/local/sbin", "whodata"), ("/boot", "scheduled"),
               ("/root", "whodata"), ("/home", "whodata"), ("/var/spool/cron", "whodata"), ("/tmp", "realtime"),
               ("/var/tmp", "realtime"), ("/dev/shm", "realtime"))
_FIM_WEB = _FIM_SERVER + (("/var/www", "whodata"),)
_FIM_CI = (("/etc", "whodata"), ("/usr/bin", "scheduled"), ("/usr/sbin", "scheduled"), ("/usr/lib", "scheduled"),
           ("/usr/local/bin", "whodata"), ("/boot", "scheduled"), ("/root", "whodata"),
           ("/var/spool/cron", "whodata"))
_FIM_WS = (("/etc", "realtime"), ("/usr/bin", "scheduled"), ("/usr/sbin", "scheduled"), ("/usr/lib", "scheduled"),
           ("/usr/local/bin", "scheduled"), ("/boot", "scheduled"), ("/var/spool/cron", "realtime"))

# Text files whose changes Wazuh reports with a diff (<directories report_changes="yes">).
REPORT_CHANGES = ("/etc/", "/root/.ssh/", "/var/spool/cron/", "/home/")

# S_*: indices into a file's state list.
S_SIZE, S_PERM, S_UID, S_GID, S_UNAME, S_GNAME, S_MTIME, S_INODE, S_MD5, S_SHA1, S_SHA256 = range(11)


class Host:
    """A monitored host: identity, accounts, FIM configuration and per-host counters."""

    def __init__(self, spec: HostSpec, world: Any) -> None:
        # world: the World making this host (only its seed is read; not imported, world imports hosts)
        self.spec = spec
        self.name = spec.name
        self.role = spec.role
        self.ip = spec.ip or ""
        self.agent_id = spec.agent_id or "000"
        self.is_manager = spec.role == "manager"
        self.web = (spec.web_server if spec.web_server in ("nginx", "apache") else "nginx") if spec.role == "web" else None
        self.owner = spec.owner or "frank"
        key = f"{world.seed}:{spec.name}"
        self.pid = 2000 + stable_int(key + ":pid", 600000)
        self.serial = 1000 + stable_int(key + ":serial", 900000)
        self.ses = 2 + stable_int(key + ":ses", 3000)
        self.inode_base = 131072 + stable_int(key + ":inode", 4_000_000)
        self.files: Dict[str, list] = {}
        self.inodes: Dict[str, int] = {}
        self.pending_scan: Dict[str, tuple] = {}
        self.scan_offset = stable_int(key + ":scan", 12 * HOUR_MS)
        self.audit_all = spec.role == "ci"
        self.exposed_ssh = spec.role in ("bastion", "mail")
        self.users: Dict[str, Tuple[int, int, str]] = {}
        self.groups: Dict[int, str] = dict(_BASE_GROUPS)
        for name, uid, gid, home in _BASE_USERS:
            self.users[name] = (uid, gid, home)
        if spec.role == "workstation":
            self.users[self.owner] = (1000, 1000, f"/home/{self.owner}")
            self.groups[1000] = self.owner
        else:
            for adm in ADMINS:
                uid = ADMIN_UID[adm]
                self.users[adm] = (uid, uid, f"/home/{adm}")
                self.groups[uid] = adm
        if spec.role == "web":
            self.users["deploy"] = (1500, 1500, "/home/deploy")
            self.groups[1500] = "deploy"
        if spec.role == "db":
            self.users["postgres"] = (113, 118, "/var/lib/postgresql")
            self.groups[118] = "postgres"
        if spec.role == "mail":
            self.users["postfix"] = (114, 119, "/var/spool/postfix")
            self.users["dovecot"] = (115, 120, "/usr/lib/dovecot")
            self.groups.update({119: "postfix", 120: "dovecot", 121: "postdrop"})
        if spec.role == "ci":
            self.users["gitlab-runner"] = (999, 999, "/home/gitlab-runner")
            self.groups.update({999: "gitlab-runner", 998: "docker"})
        if spec.role == "bastion":
            self.users["svc-backup"] = (1600, 1600, "/home/svc-backup")
            self.groups[1600] = "svc-backup"
        self.uid_names = {v[0]: k for k, v in self.users.items()}
        if spec.role == "web":
            fim = _FIM_WEB
        elif spec.role == "ci":
            fim = _FIM_CI
        elif spec.role == "workstation":
            fim = _FIM_WS
        else:
            fim = _FIM_SERVER
        self.fim = tuple(sorted(fim, key=lambda pm: -len(pm[0])))
        self.agent_ip = None if self.is_manager else self.ip

    # -- identities
    def add_user(self, name: str, uid: int, gid: int, home: str) -> None:
        self.users[name] = (uid, gid, home)
        if uid not in self.uid_names:
            self.uid_names[uid] = name
        self.groups.setdefault(gid, name)

    def uname(self, uid: Optional[int]) -> str:
        if uid is None:
            return "unset"
        return self.uid_names.get(uid) or f"unknown({uid})"

    def gname(self, gid: int) -> str:
        return self.groups.get(gid) or f"unknown({gid})"

    def uid(self, user: str) -> int:
        return self.users[user][0] if user in self.users else 1000 + stable_int(user, 1000)

    def gid(self, user: str) -> int:
        return self.users[user][1] if user in self.users else self.uid(user)

    def home(self, user: str) -> str:
        return self.users[user][2] if user in self.users else f"/home/{user}"

    # -- counters (planning time)
    def next_pid(self, r: random.Random) -> int:
        self.pid += 1 + int(r.expovariate(1 / 6.0))
        if self.pid > 4_194_000:
            self.pid = 1200
        return self.pid

    def next_ses(self) -> int:
        self.ses += 1
        return self.ses

    def inode(self, path: str) -> int:
        ino = self.inodes.get(path)
        if ino is None:
            ino = self.inode_base + stable_int(self.name + path, 3_000_000)
            self.inodes[path] = ino
        return ino

    # -- what sees what
    def audited(self, euid: int, auid: Optional[int]) -> bool:
        """The audit rules of this host: every execve on CI runners; elsewhere commands run as
        root (euid 0), by logged-in people (auid >= 1000) and, on web servers, by www-data."""
        if self.audit_all or euid == 0:
            return True
        if auid is not None and 1000 <= auid < _UNSET:
            return True
        return self.role == "web" and euid == 33

    def fim_mode(self, path: str) -> Optional[str]:
        for prefix, mode in self.fim:
            if path == prefix or path.startswith(prefix + "/"):
                return mode
        return None


class Actor:
    """Who runs commands: the process credentials and where the shell sits."""

    __slots__ = ("h", "user", "uid", "gid", "euid", "egid", "auid", "ses", "tty", "cwd", "pid", "exe", "ppid")

    def __init__(self, h: Host, user: str, *, auid: Optional[int] = None, ses: Optional[int] = None,
                 tty: str = "(none)", cwd: Optional[str] = None, pid: int = 1, exe: str = "/usr/bin/bash",
                 euser: Optional[str] = None, ppid: int = 1) -> None:
        self.h = h
        self.user = user
        self.uid = h.uid(user)
        self.gid = h.gid(user)
        eu = euser or user
        self.euid = h.uid(eu)
        self.egid = h.gid(eu)
        self.auid = auid
        self.ses = ses
        self.tty = tty
        self.cwd = cwd or h.home(user)
        self.pid = pid
        self.exe = exe
        self.ppid = ppid


class Cursor:
    """A cursor in time for scripting one session: ``c.t`` in epoch ms, ``c.r`` its RNG."""

    __slots__ = ("t", "r")

    def __init__(self, t: int, r: random.Random) -> None:
        self.t = int(t)
        self.r = r

    def adv(self, lo: float, hi: float) -> int:
        self.t += int(self.r.uniform(lo, hi) * 1000) + 1
        return self.t
