"""The alerts themselves, built when an event is emitted, in time order: ids, ``firedtimes``,
first-time-seen rules and file states depend on what came before. One builder per source
(syslog, sshd, sudo, audit commands, FIM with whodata, web access lines, dpkg, Wazuh's own
events, rootcheck), each shaped exactly as analysisd writes it.
"""
from __future__ import annotations

import time
from typing import Any, Dict, List, Optional, Tuple

from mimizuku.tools.synth.fleet import DAY_MS
from mimizuku.tools.synth.formats import (
    HEX_NEEDED,
    audit_proctitle,
    dpkg_ts,
    hashes,
    iso_local,
    stable_int,
    syslog_ts,
)
from mimizuku.tools.synth.hosts import (
    REPORT_CHANGES,
    S_GID,
    S_GNAME,
    S_INODE,
    S_MD5,
    S_MTIME,
    S_PERM,
    S_SHA1,
    S_SHA256,
    S_SIZE,
    S_UID,
    S_UNAME,
    Host,
)
from mimizuku.tools.synth.ruleset import DEC_SSHD, RULES

# Executables: argv[0] -> (exe as audit reports it, file mode of the binary).
_EXE = {
    "sh": "/usr/bin/dash", "bash": "/usr/bin/bash", "-bash": "/usr/bin/bash", "python3": "/usr/bin/python3.8",
    "python": "/usr/bin/python3.8", "nc": "/usr/bin/nc.openbsd", "vim": "/usr/bin/vim.basic",
    "vi": "/usr/bin/vim.basic", "gcc": "/usr/bin/x86_64-linux-gnu-gcc-9", "cc": "/usr/bin/x86_64-linux-gnu-gcc-9",
    "as": "/usr/bin/x86_64-linux-gnu-as", "ld": "/usr/bin/x86_64-linux-gnu-ld.bfd", "ar": "/usr/bin/x86_64-linux-gnu-ar",
    "php": "/usr/bin/php7.4", "php7.4": "/usr/bin/php7.4", "convert": "/usr/bin/convert-im6.q16",
    "sendmail": "/usr/sbin/sendmail", "useradd": "/usr/sbin/useradd", "usermod": "/usr/sbin/usermod",
    "adduser": "/usr/bin/perl", "chpasswd": "/usr/sbin/chpasswd", "logrotate": "/usr/sbin/logrotate",
    "nginx": "/usr/sbin/nginx", "apache2ctl": "/usr/bin/dash", "sshd": "/usr/sbin/sshd", "runuser": "/usr/sbin/runuser",
    "pg_dump": "/usr/lib/postgresql/12/bin/pg_dump", "psql": "/usr/lib/postgresql/12/bin/psql",
    "vacuumdb": "/usr/lib/postgresql/12/bin/vacuumdb", "postqueue": "/usr/sbin/postqueue",
    "postsuper": "/usr/sbin/postsuper", "mailq": "/usr/sbin/sendmail", "ldconfig": "/usr/sbin/ldconfig.real",
    "update-initramfs": "/usr/bin/dash", "unattended-upgr": "/usr/bin/python3.8", "node": "/usr/bin/node",
    "docker": "/usr/bin/docker", "go": "/usr/local/go/bin/go", "gitlab-runner": "/usr/bin/gitlab-runner",
    "ansible-playbook": "/usr/bin/python3.8", "iptables": "/usr/sbin/iptables-legacy", "ss": "/usr/bin/ss",
    "kubectl": "/usr/local/bin/kubectl", "code": "/usr/share/code/code", "make": "/usr/bin/make",
    "fstrim": "/usr/sbin/fstrim", "e2scrub_all": "/usr/bin/bash", "tmpreaper": "/usr/sbin/tmpreaper",
    "certbot": "/usr/bin/python3.8", "sa-update": "/usr/bin/perl", "apt-get": "/usr/bin/apt-get", "apt": "/usr/bin/apt",
    "dpkg": "/usr/bin/dpkg", "systemctl": "/usr/bin/systemctl", "journalctl": "/usr/bin/journalctl",
    "useradd.real": "/usr/sbin/useradd", "crontab": "/usr/bin/crontab", "passwd": "/usr/bin/passwd",
    "su": "/usr/bin/su", "sudo": "/usr/bin/sudo", "wazuh-control": "/usr/bin/bash",
    "agent_control": "/var/ossec/bin/agent_control", "nohup": "/usr/bin/nohup", "ssh": "/usr/bin/ssh",
    "rsync": "/usr/bin/rsync", "pip": "/usr/bin/python3.8", "composer": "/usr/bin/php7.4",
}
# Interpreted scripts by path: audit reports the interpreter as exe and the script in PATH.
_SCRIPTS = {
    "/usr/lib/sysstat/debian-sa1": "/usr/bin/dash", "/usr/lib/sysstat/sa1": "/usr/bin/dash",
    "/usr/lib/apt/apt.systemd.daily": "/usr/bin/dash", "/usr/bin/unattended-upgrade": "/usr/bin/python3.8",
    "/usr/local/bin/pg-backup.sh": "/usr/bin/bash", "/usr/sbin/update-initramfs": "/usr/bin/dash",
    "/var/ossec/bin/wazuh-control": "/usr/bin/bash", "/usr/bin/certbot": "/usr/bin/python3.8",
    "/usr/sbin/adduser": "/usr/bin/perl", "/usr/bin/ansible-playbook": "/usr/bin/python3.8",
    "/usr/sbin/apache2ctl": "/usr/bin/dash", "/usr/sbin/e2scrub_all": "/usr/bin/bash",
    "/usr/local/bin/composer": "/usr/bin/php7.4", "/usr/bin/npm": "/usr/bin/node",
    "/usr/lib/update-notifier/update-motd-updates-available": "/usr/bin/dash",
}


def _resolve_exe(argv0: str, cwd: str) -> Tuple[str, str, str, str]:
    """(exe, comm, PATH item 0 name, mode) for a command as the kernel audit sees it."""
    base = argv0.rsplit("/", 1)[-1]
    comm = base[:15]
    if "/" in argv0:
        path = argv0 if argv0.startswith("/") else (cwd.rstrip("/") + "/" + argv0[2:] if argv0.startswith("./")
                                                      else cwd.rstrip("/") + "/" + argv0)
        if path.startswith(("/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/")) and path.count("/") <= 3:
            exe = _EXE.get(base) or ("/usr/sbin/" if "/sbin/" in path else "/usr/bin/") + base
        else:
            exe = _SCRIPTS.get(path, path)
        return exe, comm, argv0, "0100755"
    exe = _EXE.get(argv0) or ("/usr/bin/" + argv0)
    return exe, comm, (exe if argv0 not in ("-bash",) else "/usr/bin/bash"), "0100755"


_ARGV_CACHE: Dict[tuple, tuple] = {}
_SUID_BINARIES = {"/usr/bin/sudo": "0104755", "/usr/bin/su": "0104755", "/usr/bin/passwd": "0104755",
                  "/usr/bin/crontab": "0102755", "/usr/bin/chsh": "0104755", "/usr/bin/mount": "0104755"}


_BIN_DIRS = ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/", "/usr/local/bin/", "/usr/local/sbin/")
_CHANGED_NAMES = ((S_SIZE, "size"), (S_PERM, "permission"), (S_UID, "uid"), (S_UNAME, "user_name"),
                  (S_GID, "gid"), (S_GNAME, "group_name"), (S_MTIME, "mtime"), (S_INODE, "inode"),
                  (S_MD5, "md5"), (S_SHA1, "sha1"), (S_SHA256, "sha256"))


class AlertBuilders:
    """The World's alert builders (``_alert`` and one ``_b_*`` per source), run at emission time."""

    # ---------------------------------------------------------------- the alert itself
    def _ts(self, sec: int, ms: int) -> str:
        day = sec // 86400
        if day != self._ts_day:
            self._ts_day = day
            self._ts_prefix = time.strftime("%Y-%m-%dT", time.gmtime(sec))
        sod = sec - day * 86400
        return f"{self._ts_prefix}{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}.{ms:03d}+0000"

    def _alert(self, t: int, h: Host, rid: str, *, decoder: dict, location: str, full_log: Optional[str] = None,
               data: Optional[dict] = None, predecoder: Optional[dict] = None, syscheck: Optional[dict] = None,
               previous_output: Optional[str] = None, description: Optional[str] = None) -> Dict[str, Any]:
        r = RULES[rid]
        n = self.fired.get(rid, 0) + 1
        self.fired[rid] = n
        rule: Dict[str, Any] = {"level": r.level, "description": description or r.description, "id": rid}
        if r.mitre is not None:
            rule["mitre"] = {"id": list(r.mitre[0]), "tactic": list(r.mitre[1]), "technique": list(r.mitre[2])}
        if r.frequency:
            rule["frequency"] = r.frequency
        rule["firedtimes"] = n
        rule["mail"] = r.mail
        rule["groups"] = list(r.groups)
        for k, v in r.compliance:
            rule[k] = list(v)
        sec, ms = divmod(t, 1000)
        day = (t - self.t0) // DAY_MS
        if day != self.offset_day:
            self.offset_day = day
            self.offset = 0
        aid = f"{sec}.{self.offset}"
        self.offset += 236 + len(full_log or "") + len(rule["description"]) + len(location) + (len(previous_output)
                                                                                              if previous_output else 0)
        if h.is_manager:
            agent = {"id": "000", "name": h.name}
        else:
            agent = {"id": h.agent_id, "name": h.name, "ip": h.ip}
        alert: Dict[str, Any] = {"timestamp": self._ts(sec, ms), "rule": rule, "agent": agent,
                                 "manager": {"name": self.manager_name}, "id": aid}
        if previous_output:
            alert["previous_output"] = previous_output
        if full_log is not None:
            alert["full_log"] = full_log
        if syscheck is not None:
            alert["syscheck"] = syscheck
        if predecoder is not None:
            alert["predecoder"] = predecoder
        alert["decoder"] = decoder
        if data:
            alert["data"] = data
        alert["location"] = location
        return alert

    # ---------------------------------------------------------------- builders (emission time)
    @staticmethod
    def syslog_line(t: int, h: Host, prog: str, pid: Optional[int], msg: str) -> str:
        head = f"{prog}[{pid}]" if pid else prog
        return f"{syslog_ts(t // 1000)} {h.name} {head}: {msg}"

    def _b_syslog(self, t: int, h: Host, rid: str, prog: str, pid: Optional[int], msg: str, decoder: dict,
                  data: Optional[dict], location: str = "/var/log/auth.log", prev: Optional[str] = None) -> dict:
        sts = syslog_ts(t // 1000)
        head = f"{prog}[{pid}]" if pid else prog
        return self._alert(t, h, rid, full_log=f"{sts} {h.name} {head}: {msg}",
                           predecoder={"program_name": prog, "timestamp": sts, "hostname": h.name},
                           decoder=dict(decoder), data=data, location=location, previous_output=prev)

    def _b_ssh_accept(self, t: int, h: Host, user: str, ip: str, port: int, pid: int, method: str, fp: str) -> dict:
        key = (user, h.name)
        if key in self.fts_login:
            rid = "5715"
        else:
            self.fts_login.add(key)
            rid = "10100"
        if method == "publickey":
            msg = f"Accepted publickey for {user} from {ip} port {port} ssh2: ED25519 SHA256:{fp}"
        else:
            msg = f"Accepted password for {user} from {ip} port {port} ssh2"
        return self._b_syslog(t, h, rid, "sshd", pid, msg, DEC_SSHD,
                              {"srcip": ip, "srcport": str(port), "dstuser": user})

    def _b_sudo(self, t: int, h: Host, user: str, tty: str, pwd: str, target: str, command: str) -> dict:
        if target != "root":
            rid = "5407"
        elif (user, h.name) in self.fts_sudo:
            rid = "5402"
        else:
            rid = "5403"
        self.fts_sudo.add((user, h.name))
        msg = f"{user:>8} : TTY={tty} ; PWD={pwd} ; USER={target} ; COMMAND={command}"
        data = {"srcuser": user, "dstuser": target, "tty": tty, "pwd": pwd, "command": command}
        return self._b_syslog(t, h, rid, "sudo", None, msg,
                              {"parent": "sudo", "name": "sudo",
                               "ftscomment": "First time user executed the sudo command"}, data)

    def _b_cmd(self, t: int, h: Host, argv: Tuple[str, ...], path: Optional[str], cwd: str, pid: int, ppid: int,
               uid: int, gid: int, euid: int, egid: int, auid: Optional[int], ses: Optional[int], tty: str) -> dict:
        if path:
            exe = _SCRIPTS.get(path, path)
            comm = path.rsplit("/", 1)[-1][:15]
            fname = path
        else:
            exe, comm, fname, _ = _resolve_exe(argv[0], cwd)
        st = h.files.get(fname) or h.files.get(exe)
        if st is not None and "s" in st[S_PERM]:
            mode = "0104755"
        else:
            mode = _SUID_BINARIES.get(exe, "0100755")
        h.serial += 1 + (t % 5)
        serial = h.serial
        sec, ms = divmod(t - 2 - (t % 37), 1000)
        stamp = f"{sec}.{ms:03d}:{serial}"
        auid_s = "4294967295" if auid is None else str(auid)
        ses_s = "4294967295" if ses is None else str(ses)
        un = h.uname(uid)
        eun = h.uname(euid)
        gn = h.gname(gid)
        egn = h.gname(egid)
        an = "unset" if auid is None else h.uname(auid)
        got = _ARGV_CACHE.get(argv)
        if got is None:
            exec_items: List[Tuple[str, str]] = [("argc", str(len(argv)))]
            parts = []
            for i, arg in enumerate(argv):
                if arg and not HEX_NEEDED.search(arg):
                    parts.append(f'a{i}="{arg}"')
                    if i < 8:
                        exec_items.append((f"a{i}", arg))
                else:
                    parts.append(f"a{i}={arg.encode('utf-8', 'surrogateescape').hex().upper()}")
            got = (tuple(exec_items), " ".join(parts), audit_proctitle(argv))
            if len(_ARGV_CACHE) > 20000:
                _ARGV_CACHE.clear()
            _ARGV_CACHE[argv] = got
        execve = dict(got[0])
        exec_log, proctitle = got[1], got[2]
        cwd_log = f'"{cwd}"' if not HEX_NEEDED.search(cwd) else cwd.encode("utf-8", "surrogateescape").hex().upper()
        ino = h.inode(fname if fname.startswith("/") else cwd + "/" + fname)
        ptr = (t * 2654435761 + pid) & 0xFFFFFFFFF
        item1 = exe if exe != fname and path else "/lib64/ld-linux-x86-64.so.2"
        full = (f"type=SYSCALL msg=audit({stamp}): arch=c000003e syscall=59 success=yes exit=0 "
                f"a0={0x55d000000000 + ptr:x} a1={0x55d000100000 + ptr:x} a2={0x55d000200000 + ptr:x} a3=8 items=2 "
                f"ppid={ppid} pid={pid} auid={auid_s} uid={uid} gid={gid} euid={euid} suid={euid} fsuid={euid} "
                f"egid={egid} sgid={egid} fsgid={egid} tty={tty} ses={ses_s} comm=\"{comm}\" exe=\"{exe}\" "
                f"subj=unconfined key=\"audit-wazuh-c\"\x1dARCH=x86_64 SYSCALL=execve AUID=\"{an}\" UID=\"{un}\" "
                f"GID=\"{gn}\" EUID=\"{eun}\" SUID=\"{eun}\" FSUID=\"{eun}\" EGID=\"{egn}\" SGID=\"{egn}\" "
                f"FSGID=\"{egn}\" type=EXECVE msg=audit({stamp}): argc={len(argv)} {exec_log} "
                f"type=CWD msg=audit({stamp}): cwd={cwd_log} type=PATH msg=audit({stamp}): item=0 name=\"{fname}\" "
                f"inode={ino} dev=fd:00 mode={mode} ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 "
                f"cap_fe=0 cap_fver=0 cap_frootid=0\x1dOUID=\"root\" OGID=\"root\" type=PATH msg=audit({stamp}): "
                f"item=1 name=\"{item1}\" inode={h.inode(item1)} dev=fd:00 mode=0100755 ouid=0 ogid=0 rdev=00:00 "
                f"nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\x1dOUID=\"root\" OGID=\"root\" "
                f"type=PROCTITLE msg=audit({stamp}): proctitle={proctitle}")
        audit = {"type": "SYSCALL", "id": str(serial), "arch": "c000003e", "syscall": "59", "success": "yes",
                 "exit": "0", "ppid": str(ppid), "pid": str(pid), "auid": auid_s, "uid": str(uid), "gid": str(gid),
                 "euid": str(euid), "suid": str(euid), "fsuid": str(euid), "egid": str(egid), "sgid": str(egid),
                 "fsgid": str(egid), "tty": tty, "session": ses_s, "command": comm, "exe": exe,
                 "key": "audit-wazuh-c", "execve": execve, "cwd": cwd,
                 "file": {"name": fname, "inode": str(ino), "mode": mode}}
        return self._alert(t, h, "80792", full_log=full, decoder={"parent": "auditd", "name": "auditd"},
                           data={"audit": audit}, location="/var/log/audit/audit.log",
                           description=f"Audit: Command: {exe}.")

    # -- file integrity
    def _initial_state(self, h: Host, path: str) -> list:
        key = h.name + "|" + path
        dist = path.startswith(_BIN_DIRS) or path.startswith(("/usr/lib/", "/boot/"))
        owner, group = "root", "root"
        uid = gid = 0
        if dist:
            perm = "rw-r--r--" if (".so" in path or path.startswith("/boot/")) and "/bin/" not in path else "rwxr-xr-x"
            size = 18_000 + stable_int(path, 2_500_000)
            content = "dist|" + path
        else:
            perm = "rw-r--r--"
            size = 60 + stable_int(key, 9000)
            content = key
            parts = path.split("/")
            if path.startswith("/home/") and len(parts) > 2:
                owner = group = parts[2]
            elif path.startswith("/var/www/app/shared/"):
                owner = group = "www-data"
            elif path.startswith("/var/www/"):
                owner = group = "deploy"
            elif path.startswith("/var/spool/cron/crontabs/"):
                owner, group, perm = parts[-1], "crontab", "rw-------"
            if path in ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"):
                group, perm = "shadow", "rw-r-----"
            elif path == "/etc/sudoers" or path.startswith("/etc/sudoers.d/"):
                perm = "r--r-----"
            elif path.endswith(("/authorized_keys", "/.bash_history", "/.viminfo", "/.lesshst")):
                perm = "rw-------"
            uid = h.uid(owner) if owner in h.users else 1000 + stable_int(owner, 999)
            gid = next((g for g, n in h.groups.items() if n == group), uid)
        md5, sha1, sha256 = hashes(content)
        mtime = self.t0 // 1000 - 86400 * (20 + stable_int(key + "m", 700)) - stable_int(key + "s", 86400)
        return [size, perm, str(uid), str(gid), owner, group, mtime, h.inode(path), md5, sha1, sha256]

    def _b_fim(self, t: int, h: Host, path: str, op: str, mode: str, who: Optional[tuple], spec: dict) -> dict:
        sec = t // 1000
        before: Optional[list] = None
        if op == "add":
            owner = spec.get("owner", "root")
            group = spec.get("group", owner)
            uid = h.uid(owner) if owner in h.users else 1000 + stable_int(owner, 999)
            gid = next((g for g, n in h.groups.items() if n == group), uid)
            content = spec.get("key") or f"{h.name}|{path}|{t}"
            size = spec.get("size")
            if size is None:
                size = 40 + stable_int(content, 12000)
            ino = h.inode(path) + (t // 1000) % 9973
            md5, sha1, sha256 = hashes(content)
            after = [int(size), spec.get("perm", "rw-r--r--"), str(uid), str(gid), owner, group, sec, ino,
                     md5, sha1, sha256]
            h.files[path] = after
            rid, event, decoder = "554", "added", "syscheck_new_entry"
        elif op == "delete":
            after = h.files.pop(path, None) or self._initial_state(h, path)
            rid, event, decoder = "553", "deleted", "syscheck_deleted"
        else:
            before = h.files.get(path) or self._initial_state(h, path)
            after = list(before)
            if op == "modify":
                size = spec.get("size")
                if size is None:
                    size = max(0, before[S_SIZE] + spec.get("delta", stable_int(f"{path}{t}", 420) - 140))
                after[S_SIZE] = int(size)
                after[S_MTIME] = sec
                content = spec.get("key") or f"{h.name}|{path}|{t}"
                after[S_MD5], after[S_SHA1], after[S_SHA256] = hashes(content)
                if spec.get("new_inode"):
                    after[S_INODE] = before[S_INODE] + 1 + (t // 1000) % 7919
            elif op == "chmod":
                after[S_PERM] = spec["perm"]
            elif op == "chown":
                after[S_UNAME] = spec["owner"]
                after[S_UID] = str(h.uid(spec["owner"]))
                after[S_GNAME] = spec.get("group", spec["owner"])
                after[S_GID] = str(h.gid(spec.get("group", spec["owner"])))
            h.files[path] = after
            rid, event, decoder = "550", "modified", "syscheck_integrity_changed"
        sc: Dict[str, Any] = {"path": path, "mode": mode}
        changed: List[str] = []
        comments: List[str] = []
        if before is not None:
            for idx, name in _CHANGED_NAMES:
                if before[idx] != after[idx]:
                    changed.append(name)

        def pair(idx: int, bname: str, aname: str, as_int: bool = False) -> None:
            if before is not None and before[idx] != after[idx]:
                sc[bname] = before[idx] if as_int else str(before[idx])
            sc[aname] = after[idx] if as_int else str(after[idx])

        pair(S_SIZE, "size_before", "size_after")
        pair(S_PERM, "perm_before", "perm_after")
        pair(S_UID, "uid_before", "uid_after")
        pair(S_GID, "gid_before", "gid_after")
        pair(S_MD5, "md5_before", "md5_after")
        pair(S_SHA1, "sha1_before", "sha1_after")
        pair(S_SHA256, "sha256_before", "sha256_after")
        pair(S_UNAME, "uname_before", "uname_after")
        pair(S_GNAME, "gname_before", "gname_after")
        if before is not None and before[S_MTIME] != after[S_MTIME]:
            sc["mtime_before"] = iso_local(before[S_MTIME])
        sc["mtime_after"] = iso_local(after[S_MTIME])
        pair(S_INODE, "inode_before", "inode_after", as_int=True)
        diff = spec.get("diff")
        if diff and op == "modify" and path.startswith(REPORT_CHANGES) and mode != "scheduled":
            sc["diff"] = diff
        if changed:
            sc["changed_attributes"] = changed
        sc["event"] = event
        if who is not None and mode == "whodata":
            uid, gid, euid, auid, pid, ppid, exe, pexe, cwd, pcwd = who
            audit: Dict[str, Any] = {
                "user": {"id": str(uid), "name": h.uname(uid)},
                "process": {"id": str(pid), "name": exe, "cwd": cwd, "parent_name": pexe, "parent_cwd": pcwd,
                            "ppid": str(ppid)},
                "group": {"id": str(gid), "name": h.gname(gid)},
            }
            if auid is not None:
                audit["login_user"] = {"id": str(auid), "name": h.uname(auid)}
            audit["effective_user"] = {"id": str(euid), "name": h.uname(euid)}
            sc["audit"] = audit
        if before is not None:
            b, a = before, after
            if b[S_SIZE] != a[S_SIZE]:
                comments.append(f"Size changed from '{b[S_SIZE]}' to '{a[S_SIZE]}'\n")
            if b[S_PERM] != a[S_PERM]:
                comments.append(f"Permissions changed from '{b[S_PERM]}' to '{a[S_PERM]}'\n")
            if b[S_UID] != a[S_UID]:
                comments.append(f"Ownership was '{b[S_UID]}', now it is '{a[S_UID]}'\n")
            if b[S_UNAME] != a[S_UNAME]:
                comments.append(f"User name was '{b[S_UNAME]}', now it is '{a[S_UNAME]}'\n")
            if b[S_GID] != a[S_GID]:
                comments.append(f"Group ownership was '{b[S_GID]}', now it is '{a[S_GID]}'\n")
            if b[S_GNAME] != a[S_GNAME]:
                comments.append(f"Group name was '{b[S_GNAME]}', now it is '{a[S_GNAME]}'\n")
            if b[S_MTIME] != a[S_MTIME]:
                comments.append(f"Old modification time was: '{b[S_MTIME]}', now it is '{a[S_MTIME]}'\n")
            if b[S_INODE] != a[S_INODE]:
                comments.append(f"Old inode was: '{b[S_INODE]}', now it is '{a[S_INODE]}'\n")
            if b[S_MD5] != a[S_MD5]:
                comments.append(f"Old md5sum was: '{b[S_MD5]}'\nNew md5sum is : '{a[S_MD5]}'\n")
                comments.append(f"Old sha1sum was: '{b[S_SHA1]}'\nNew sha1sum is : '{a[S_SHA1]}'\n")
                comments.append(f"Old sha256sum was: '{b[S_SHA256]}'\nNew sha256sum is : '{a[S_SHA256]}'\n")
        full = f"File '{path}' {event}\nMode: {mode}\n"
        if changed:
            full += f"Changed attributes: {','.join(changed)}\n" + "".join(comments)
        return self._alert(t, h, rid, full_log=full, syscheck=sc, decoder={"name": decoder}, location="syscheck")

    # -- other sources
    def _b_web(self, t: int, h: Host, rid: str, line: str, data: dict, prev: Optional[str]) -> dict:
        loc = "/var/log/nginx/access.log" if h.web == "nginx" else "/var/log/apache2/access.log"
        return self._alert(t, h, rid, full_log=line, decoder={"name": "web-accesslog"}, data=data, location=loc,
                           previous_output=prev)

    def _b_dpkg(self, t: int, h: Host, status: str, pkg: str, version: str) -> dict:
        rid = {"status installed": "2902", "status half-configured": "2904", "install": "2901"}[status]
        line = f"{dpkg_ts(t // 1000)} {status} {pkg}:amd64 {version}"
        data = {"dpkg_status": status, "package": pkg, "arch": "amd64", "version": version}
        return self._alert(t, h, rid, full_log=line, decoder={"name": "dpkg-decoder"}, data=data,
                           location="/var/log/dpkg.log")

    def _b_ossec(self, t: int, h: Host, rid: str, text: str) -> dict:
        if rid == "502":
            self.fired = {}
            return self._alert(t, h, rid, full_log="ossec: Manager started.", decoder={"name": "ossec"},
                               location="wazuh-monitord")
        if rid in ("503", "506"):
            word = "started" if rid == "503" else "stopped"
            extra = f"{h.name}->any"
            return self._alert(t, h, rid, full_log=f"ossec: Agent {word}: '{extra}'.",
                               decoder={"parent": "ossec", "name": "ossec"}, data={"extra_data": extra},
                               location="wazuh-agent" if rid == "503" else "wazuh-remoted")
        what = "File rotated (inode changed)" if rid == "591" else "File size reduced (inode remained)"
        return self._alert(t, h, rid, full_log=f"ossec: {what}: '{text}'.", decoder={"name": "ossec"},
                           location="wazuh-logcollector")

    def _b_rootcheck(self, t: int, h: Host, title: str, path: str, msg: str) -> dict:
        return self._alert(t, h, "510", full_log=msg, decoder={"name": "rootcheck"},
                           data={"title": title, "file": path}, location="rootcheck")
