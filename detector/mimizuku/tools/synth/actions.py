"""What a person or a daemon does on a host, scheduled as timed events: run a command, touch a file,
log in over SSH, sudo, open a root shell, edit a file, serve web requests, fail logins (with
analysisd's frequency rules). Host routines, people and attacks are written with these; the
alerts are built later, at emission, by the builders.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from mimizuku.tools.synth.fleet import HOUR_MS
from mimizuku.tools.synth.formats import sudo_path, web_ts
from mimizuku.tools.synth.hosts import Actor, Cursor, Host
from mimizuku.tools.synth.ruleset import DEC_PAM, DEC_SSHD

_WEB_IGNORED_EXT = (".jpg", ".gif", "favicon.ico", ".png", "robots.txt", ".css", ".js", ".jpeg")
_WEB_ATTACK_URL = ("%027", "%00", "%01", "%7f", "%2e%2e", "%0a", "%0d", "../..", "..\\..", "echo;", "cmd.exe",
                   "root.exe", "_mem_bin", "msadc", "/winnt/", "/boot.ini", "/x90/", "default.ida", "/sumthin",
                   "nsiislog.dll", "chmod%", "wget%", "cd%20", "exec%20", "../..//", "%5c../%5c", "././././",
                   "2e%2e%5c%2e")
_CRAWLERS = ("Googlebot", "bingbot", "Yahoo! Slurp", "msnbot")


def _web_line(t: int, ip: str, method: str, url: str, status: int, size: int, ref: str, ua: str) -> str:
    return f'{ip} - - [{web_ts(t // 1000)}] "{method} {url} HTTP/1.1" {status} {size} "{ref}" "{ua}"'


def _web_rule(method: str, url: str, status: int, ua: str) -> Optional[str]:
    """The rule a web access line ends in (None when the ruleset keeps it at level 0)."""
    low = url.lower()
    if 400 <= status < 500:
        if status == 499:
            return None
        if "?" not in url and low.endswith(_WEB_IGNORED_EXT):
            return None
        if any(c in ua for c in _CRAWLERS):
            return None
        return "31101"
    if status == 500:
        return "31122"
    if status in (502, 504):
        return "31120"
    if 200 <= status < 300 and any(p in low for p in _WEB_ATTACK_URL):
        return "31106"
    return None


def _frequency(items: List[Tuple[int, str]], freq: int, timeframe_ms: int, ignore_ms: int = 0) -> List[Optional[str]]:
    """analysisd's frequency correlation for one source: for each child event (time, log line),
    the ``previous_output`` when the composite rule fires on it, else None. Events that made a
    composite fire are consumed; ``ignore`` mutes the rule for a while after it fired."""
    out: List[Optional[str]] = []
    window: List[Tuple[int, str]] = []
    mute_until = -1
    for t, line in items:
        window = [w for w in window if t - w[0] <= timeframe_ms]
        if len(window) + 1 >= freq and t >= mute_until:
            prev = [w[1] for w in reversed(window[-(freq - 1):])]
            out.append("\n".join(prev))
            window = []
            mute_until = t + ignore_ms
        else:
            window.append((t, line))
            out.append(None)
    return out


class Actions:
    """The World's actions: what a person or a daemon does, scheduled as events for the builders."""

    # ---------------------------------------------------------------- planning helpers
    def syslog(self, t: int, h: Host, rid: str, prog: str, pid: Optional[int], msg: str, decoder: dict,
               data: Optional[dict], location: str = "/var/log/auth.log") -> None:
        self.at(t, self._b_syslog, h, rid, prog, pid, msg, decoder, data, location, None)

    def run(self, c: Cursor, a: Actor, argv: Sequence[str], *, path: Optional[str] = None, cwd: Optional[str] = None,
            euser: Optional[str] = None, ppid: Optional[int] = None, gap: Tuple[float, float] = (0.2, 2.5)) -> int:
        """One execve by ``a`` at ``c.t`` (an 80792 alert when the host audits it); returns its pid."""
        h = a.h
        pid = h.next_pid(c.r)
        if euser is None:
            euid, egid = a.euid, a.egid
        else:
            euid = h.uid(euser)
            egid = a.egid
        if h.audited(euid, a.auid):
            self.at(c.t, self._b_cmd, h, tuple(argv), path, cwd or a.cwd, pid, a.pid if ppid is None else ppid,
                    a.uid, a.gid, euid, egid, a.auid, a.ses, a.tty)
        self.last_run = (h, pid, c.t)
        c.adv(*gap)
        return pid

    def who(self, a: Actor, exe: str, pid: int, pexe: Optional[str] = None) -> tuple:
        return (a.uid, a.gid, a.euid, a.auid, pid, a.pid, exe, pexe or a.exe, a.cwd, a.cwd)

    def fim(self, c: Cursor, h: Host, path: str, op: str, who: Optional[tuple] = None, **spec: Any) -> None:
        """A file change; reported according to the host's FIM configuration for ``path``."""
        mode = h.fim_mode(path)
        if mode is None:
            return
        base = c.t
        last = self.last_run
        if who is not None and last[0] is h and last[1] == who[4] and last[2] < c.t:
            base = min(c.t, last[2] + c.r.randrange(30, 700))  # right after the process that did it
        if mode == "scheduled":
            if self.episode_mode:
                t = self._next_scan(h, c.t) + c.r.randrange(500, 90_000)
                self.at(t, self._b_fim, h, path, op, mode, None, spec)
                return
            prev = h.pending_scan.get(path)
            if prev is not None and prev[1] == "add" and op == "delete":
                del h.pending_scan[path]
                return
            if prev is not None and prev[1] == "add":
                op, spec = "add", dict(prev[2], **spec)
            h.pending_scan[path] = (base, op, spec)
            return
        delay = c.r.randrange(250, 2200) if mode == "whodata" else c.r.randrange(120, 1500)
        self.at(base + delay, self._b_fim, h, path, op, mode, who if mode == "whodata" else None, spec)

    def _next_scan(self, h: Host, t: int) -> int:
        base = self.t0 + h.scan_offset
        k = max(0, (t - base) // (12 * HOUR_MS) + 1)
        return base + k * 12 * HOUR_MS

    def ssh_login(self, c: Cursor, h: Host, user: str, ip: str, *, method: str = "publickey",
                  user_session: bool = False, history: bool = True, command: Optional[str] = None) -> Actor:
        """sshd accepts ``user``: 5715 (or 10100 the first time), PAM session, then the login
        shell, or ``bash -c command`` for a remote command."""
        r = c.r
        sshd_pid = h.next_pid(r)
        port = r.randrange(32768, 61000)
        self.at(c.t, self._b_ssh_accept, h, user, ip, port, sshd_pid, method,
                self.keyfp.get(user) or self._fingerprint(r))
        c.adv(0.01, 0.06)
        self.syslog(c.t, h, "5501", "sshd", sshd_pid,
                    f"pam_unix(sshd:session): session opened for user {user} by (uid=0)", DEC_PAM,
                    {"dstuser": user, "uid": "0"})
        if user_session:
            c.adv(0.01, 0.1)
            self.syslog(c.t, h, "5501", "systemd", h.next_pid(r),
                        f"pam_unix(systemd-user:session): session opened for user {user} by (uid=0)", DEC_PAM,
                        {"dstuser": user, "uid": "0"})
        c.adv(0.05, 0.5)
        a = Actor(h, user, auid=h.uid(user), ses=h.next_ses(), tty=f"pts/{r.randrange(0, 5)}", pid=sshd_pid,
                   ppid=sshd_pid)
        if command is None:
            shell = self.run(c, a, ["-bash"], ppid=sshd_pid, gap=(0.4, 3))
        else:
            shell = self.run(c, a, ["bash", "-c", command], ppid=sshd_pid, gap=(0.02, 0.2))
        a.pid = shell
        a.ppid = sshd_pid if history else -sshd_pid
        return a

    def ssh_logout(self, c: Cursor, a: Actor) -> None:
        h = a.h
        if a.ppid > 0:
            path = f"{h.home(a.user)}/.bash_history"
            self.fim(c, h, path, "modify", self.who(a, "/usr/bin/bash", a.pid, "/usr/sbin/sshd"))
        c.adv(0.05, 0.4)
        self.syslog(c.t, h, "5502", "sshd", abs(a.ppid), f"pam_unix(sshd:session): session closed for user {a.user}",
                    DEC_PAM, {"dstuser": a.user})

    def sudo_open(self, c: Cursor, a: Actor, argv: Sequence[str], *, target: str = "root",
                  command: Optional[str] = None) -> Tuple[Actor, int]:
        """``sudo argv`` by ``a``: the sudo execve, sudo's log line (5402/5403/5407) and its PAM
        session. Returns the target-user actor and sudo's pid; close with :meth:`sudo_close`."""
        h = a.h
        sargv = ["sudo"] + (["-u", target] if target != "root" else []) + list(argv)
        sudo_pid = self.run(c, a, sargv, euser="root", gap=(0.005, 0.03))
        if command is None:
            command = " ".join([sudo_path(argv[0])] + list(argv[1:]))
        self.at(c.t, self._b_sudo, h, a.user, a.tty, a.cwd, target, command)
        c.adv(0.003, 0.02)
        self.syslog(c.t, h, "5501", "sudo", None,
                    f"pam_unix(sudo:session): session opened for user {target} by {a.user}(uid=0)", DEC_PAM,
                    {"srcuser": a.user, "dstuser": target, "uid": "0"})
        c.adv(0.003, 0.03)
        root = Actor(h, target, auid=a.auid, ses=a.ses, tty=a.tty, cwd=a.cwd, pid=sudo_pid, exe="/usr/bin/sudo",
                      ppid=a.pid)
        return root, sudo_pid

    def sudo_close(self, c: Cursor, a: Actor, target: str = "root") -> None:
        self.syslog(c.t, a.h, "5502", "sudo", None, f"pam_unix(sudo:session): session closed for user {target}",
                    DEC_PAM, {"dstuser": target})
        c.adv(0.2, 3)

    def sudo(self, c: Cursor, a: Actor, argv: Sequence[str], *, target: str = "root",
             children: Sequence[Sequence[str]] = (), dur: Tuple[float, float] = (0.2, 4)) -> None:
        """A one-shot ``sudo cmd``: the command (and any children it spawns) then the session close."""
        root, _ = self.sudo_open(c, a, argv, target=target)
        pid = self.run(c, root, argv, gap=(0.02, 0.3))
        for ch in children:
            self.run(c, root, ch, ppid=pid, gap=(0.02, 0.5))
        c.adv(*dur)
        self.sudo_close(c, a, target)

    def root_shell_open(self, c: Cursor, a: Actor) -> Actor:
        """``sudo -i``: returns the root login shell actor."""
        root, sudo_pid = self.sudo_open(c, a, ["-i"], command="/bin/bash")
        root.cwd = "/root"
        shell = self.run(c, root, ["-bash"], cwd="/root", gap=(0.3, 2))
        root.pid = shell
        root.exe = "/usr/bin/bash"
        root.ppid = sudo_pid
        return root

    def root_shell_close(self, c: Cursor, a: Actor, root: Actor) -> None:
        self.fim(c, a.h, "/root/.bash_history", "modify", self.who(root, "/usr/bin/bash", root.pid, "/usr/bin/sudo"))
        c.adv(0.05, 0.3)
        self.sudo_close(c, a)

    def edit(self, c: Cursor, a: Actor, path: str, *, diff: Optional[str] = None, minutes: Tuple[float, float] = (0.3, 4)) -> None:
        """``vim path``: swap file, vim's 4913 probe, the write (new inode) and the swap removal."""
        h = a.h
        pid = self.run(c, a, ["vim", path], gap=(0.2, 1.0))
        who = self.who(a, "/usr/bin/vim.basic", pid)
        d, base = path.rsplit("/", 1)
        swp = f"{d}/.{base}.swp"
        self.fim(c, h, swp, "add", who, owner=a.user, size=12288)
        c.adv(minutes[0] * 60, minutes[1] * 60)
        if c.r.random() < 0.5:
            self.fim(c, h, f"{d}/4913", "add", who, owner=a.user, size=0)
            self.fim(c, h, f"{d}/4913", "delete", who)
        self.fim(c, h, path, "modify", who, new_inode=True, diff=diff)
        c.adv(0.3, 8)
        self.fim(c, h, swp, "delete", who)

    def cron_actor(self, c: Cursor, h: Host, user: str = "root") -> Actor:
        """A job started by cron: pam_loginuid gives it the user as login uid, in a new session."""
        return Actor(h, user, auid=h.uid(user), ses=h.next_ses(), tty="(none)", cwd=h.home(user),
                      pid=h.next_pid(c.r), exe="/usr/sbin/cron")

    def timer_actor(self, c: Cursor, h: Host, user: str = "root") -> Actor:
        """A service or timer started by systemd: no login uid."""
        return Actor(h, user, auid=None, ses=None, tty="(none)", cwd="/", pid=1, exe="/usr/lib/systemd/systemd")

    def web_requests(self, h: Host, reqs: Sequence[Tuple[int, str, str, str, int, int, str, str]]) -> None:
        """Access-log lines -> 31101 / 31106 / 31120 / 31122 alerts, with 31151 for bursts of
        4xx from one address (14 within 90 s)."""
        fours: Dict[str, list] = {}
        for t, ip, method, url, status, size, ref, ua in reqs:
            rid = _web_rule(method, url, status, ua)
            if rid is None:
                continue
            line = _web_line(t, ip, method, url, status, size, ref, ua)
            data = {"protocol": method, "srcip": ip, "id": str(status), "url": url}
            if rid == "31101":
                fours.setdefault(ip, []).append((t, line, data))
            else:
                self.at(t, self._b_web, h, rid, line, data, None)
        for items in fours.values():
            items.sort(key=lambda x: x[0])
            prevs = _frequency([(t, line) for t, line, _ in items], 14, 90_000)
            for (t, line, data), prev in zip(items, prevs):
                self.at(t, self._b_web, h, "31151" if prev is not None else "31101", line, data, prev)

    def ssh_attempts(self, h: Host, attempts: Sequence[Tuple[int, str, str, str, int, int]]) -> None:
        """sshd failures from the internet: (t, kind, user, ip, port, pid) with kind in invalid,
        failed_invalid, failed, maxauth, noident; 5712/5763 fire on 8 within 120 s from one address."""
        by_ip: Dict[Tuple[str, str], list] = {}
        for t, kind, user, ip, port, pid in attempts:
            if kind == "invalid":
                msg, rid, data = (f"Invalid user {user} from {ip} port {port}", "5710",
                                  {"srcip": ip, "srcport": str(port), "srcuser": user})
            elif kind == "failed_invalid":
                msg, rid, data = (f"Failed password for invalid user {user} from {ip} port {port} ssh2", "5710",
                                  {"srcip": ip, "srcuser": user})
            elif kind == "failed":
                msg, rid, data = (f"Failed password for {user} from {ip} port {port} ssh2", "5760",
                                  {"srcip": ip, "srcport": str(port), "dstuser": user})
            elif kind == "maxauth":
                msg, rid, data = (f"error: maximum authentication attempts exceeded for {user} from {ip} port {port} "
                                  f"ssh2 [preauth]", "5758", {"srcip": ip, "srcport": str(port), "dstuser": user})
            else:
                msg, rid, data = (f"Did not receive identification string from {ip} port {port}", "5706",
                                  {"srcip": ip, "srcport": str(port)})
            if rid in ("5710", "5760"):
                by_ip.setdefault((ip, rid), []).append((t, pid, msg, data))
            else:
                self.syslog(t, h, rid, "sshd", pid, msg, DEC_SSHD, data)
        for (ip, rid), items in by_ip.items():
            items.sort(key=lambda x: x[0])
            lines = [(t, self.syslog_line(t, h, "sshd", pid, msg)) for t, pid, msg, _ in items]
            prevs = _frequency(lines, 8, 120_000, 60_000)
            comp = "5712" if rid == "5710" else "5763"
            for (t, pid, msg, data), prev in zip(items, prevs):
                self.at(t, self._b_syslog, h, comp if prev is not None else rid, "sshd", pid, msg, DEC_SSHD, data,
                        "/var/log/auth.log", prev)

    def dovecot_failures(self, h: Host, attempts: Sequence[Tuple[int, str, str, int]]) -> None:
        by_ip: Dict[str, list] = {}
        for t, user, ip, n in attempts:
            sess = "".join(chr(65 + (t >> k) % 26) for k in range(0, 48, 3))
            msg = (f"imap-login: Disconnected (auth failed, {n} attempts in {2 + n * 2} secs): user=<{user}>, "
                   f"method=PLAIN, rip={ip}, lip={h.ip}, TLS, session=<{sess}>")
            by_ip.setdefault(ip, []).append((t, msg, {"srcip": ip, "srcuser": f"<{user}>", "dstip": h.ip}))
        for items in by_ip.values():
            items.sort(key=lambda x: x[0])
            prevs = _frequency([(t, self.syslog_line(t, h, "dovecot", None, m)) for t, m, _ in items], 8, 240_000)
            for (t, msg, data), prev in zip(items, prevs):
                self.at(t, self._b_syslog, h, "9751" if prev is not None else "9705", "dovecot", None, msg,
                        {"parent": "dovecot", "name": "dovecot"}, data, "/var/log/mail.log", prev)
