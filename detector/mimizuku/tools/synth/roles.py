"""What each host does by itself, day after day: cron, systemd timers, log rotation, rootcheck and
FIM scans, and the work of its role (web traffic, database backups, mail, CI jobs, a developer's
workstation, internet noise against exposed SSH).
"""
from __future__ import annotations

import random
from datetime import timedelta
from typing import Optional, Tuple

from mimizuku.tools.synth.catalogues import (
    BOT_PATHS,
    BOT_UAS,
    BROWSER_UAS,
    C_SOURCES,
    CI_PROJECTS,
    DEV_CMDS,
    GO_PACKAGES,
    MAIL_PROBE_USERS,
    NPM_POSTINSTALL,
    PYTEST_SUBPROCS,
    ROOTCHECK_FP,
    SSH_WORDLIST,
    USER_404,
)
from mimizuku.tools.synth.fleet import DAY_MS, HOUR_MS, MIN_MS
from mimizuku.tools.synth.formats import hexs, public_ip, rand_token, stable_int
from mimizuku.tools.synth.hosts import MAIL_USERS, Actor, Cursor, Host
from mimizuku.tools.synth.ruleset import DEC_PAM


class HostRoutines:
    """The World's routines of each host and the work of its role, planned day by day."""

    def _keep(self, r: random.Random) -> bool:
        return self.periodic >= 1.0 or r.random() < self.periodic

    def _periodic(self, h: Host, d: int, day_t: int, wd: int, r: random.Random) -> None:
        """cron, systemd timers, log rotation, rootcheck: the same things at the same times."""
        c = Cursor(day_t, r)
        for k in range(144):  # sysstat: 5-55/10 * * * * root debian-sa1 1 1
            if not self._keep(r):
                continue
            c.t = day_t + (5 + 10 * k) * MIN_MS + r.randrange(30, 900)
            a = self.cron_actor(c, h)
            sh = self.run(c, a, ["/bin/sh", "-c", "command -v debian-sa1 > /dev/null && debian-sa1 1 1"],
                          gap=(0.002, 0.02))
            sa = self.run(c, a, ["debian-sa1", "1", "1"], path="/usr/lib/sysstat/debian-sa1", ppid=sh,
                          gap=(0.003, 0.03))
            self.run(c, a, ["/usr/lib/sysstat/sadc", "-F", "-L", "-S", "DISK", "1", "1", "/var/log/sysstat"],
                     ppid=sa)
        for hr in range(24):  # 17 * * * * root cd / && run-parts --report /etc/cron.hourly
            if not self._keep(r):
                continue
            c.t = day_t + hr * HOUR_MS + 17 * MIN_MS + r.randrange(20, 700)
            a = self.cron_actor(c, h)
            sh = self.run(c, a, ["/bin/sh", "-c", "   cd / && run-parts --report /etc/cron.hourly"], gap=(0.002, 0.02))
            self.run(c, a, ["run-parts", "--report", "/etc/cron.hourly"], ppid=sh)
        if self._keep(r):  # 25 6 * * * root test -x /usr/sbin/anacron || ( cd / && run-parts --report /etc/cron.daily )
            c.t = day_t + 6 * HOUR_MS + 25 * MIN_MS + r.randrange(20, 900)
            self._cron_daily(c, h, self.cron_actor(c, h))
        if self._keep(r):  # logrotate.timer, daily at midnight, then logcollector sees the rotations
            c.t = day_t + r.randrange(200, 40_000)
            a = self.timer_actor(c, h)
            lr = self.run(c, a, ["/usr/sbin/logrotate", "/etc/logrotate.conf"], gap=(0.1, 1.5))
            sh = self.run(c, a, ["/bin/sh", "-c", "\n\t\t/usr/lib/rsyslog/rsyslog-rotate\n\t", "logrotate_script",
                                 "/var/log/syslog"], ppid=lr, gap=(0.002, 0.02))
            rr = self.run(c, a, ["/usr/lib/rsyslog/rsyslog-rotate"], path="/usr/lib/rsyslog/rsyslog-rotate", ppid=sh,
                          gap=(0.002, 0.02))
            self.run(c, a, ["systemctl", "kill", "-s", "HUP", "rsyslog.service"], ppid=rr, gap=(0.05, 0.5))
            rotated = ["/var/log/syslog"]
            if h.web == "nginx":
                sh = self.run(c, a, ["/bin/sh", "-c", "\n\t\tinvoke-rc.d nginx rotate >/dev/null 2>&1\n\t",
                                     "logrotate_script", "/var/log/nginx/*.log"], ppid=lr, gap=(0.002, 0.02))
                self.run(c, a, ["invoke-rc.d", "nginx", "rotate"], path="/usr/sbin/invoke-rc.d", ppid=sh)
                rotated += ["/var/log/nginx/access.log", "/var/log/nginx/error.log"]
            elif h.web == "apache":
                sh = self.run(c, a, ["/bin/sh", "-c", "\n\t\tif invoke-rc.d apache2 status > /dev/null 2>&1; then "
                                     "\\\n\t\t    invoke-rc.d apache2 reload > /dev/null 2>&1; \\\n\t\tfi;\n\t",
                                     "logrotate_script", "/var/log/apache2/*.log"], ppid=lr, gap=(0.002, 0.02))
                self.run(c, a, ["invoke-rc.d", "apache2", "reload"], path="/usr/sbin/invoke-rc.d", ppid=sh)
                rotated += ["/var/log/apache2/access.log", "/var/log/apache2/error.log"]
            if wd == 6:
                rotated += ["/var/log/auth.log", "/var/log/kern.log"] + (["/var/log/mail.log"] if h.role == "mail" else [])
            for path in rotated:
                self.at(c.t + r.randrange(1000, 9000), self._b_ossec, h, "591", path)
        for _ in range(self.n(r, 1.2 if h.role == "ci" else 0.08)):  # auditd rotates audit.log by size
            self.at(day_t + r.randrange(DAY_MS), self._b_ossec, h, "591", "/var/log/audit/audit.log")
        for hh in (int(r.uniform(6, 7.9) * HOUR_MS), int(r.uniform(18, 19.9) * HOUR_MS)):  # apt-daily.timer
            if not self._keep(r):
                continue
            c.t = day_t + hh
            a = self.timer_actor(c, h)
            dl = self.run(c, a, ["/usr/lib/apt/apt.systemd.daily", "update"], path="/usr/lib/apt/apt.systemd.daily")
            self.run(c, a, ["apt-config", "shell", "StampDir", "Dir::State::Periodic"], ppid=dl, gap=(0.01, 0.1))
            self.run(c, a, ["apt-get", "-qq", "-y", "update"], ppid=dl, gap=(2, 9))
        for hh in (int(r.uniform(0.5, 11.5) * HOUR_MS), int(r.uniform(12.5, 23.5) * HOUR_MS)):  # motd-news.timer
            if not self._keep(r):
                continue
            c.t = day_t + hh
            a = self.timer_actor(c, h)
            mn = self.run(c, a, ["/etc/update-motd.d/50-motd-news", "--force"], path="/etc/update-motd.d/50-motd-news",
                          gap=(0.01, 0.1))
            self.run(c, a, ["curl", "--connect-timeout", "3", "--max-time", "30", "-A", "curl/7.68.0 Ubuntu/20.04",
                            "-o-", "https://motd.ubuntu.com"], ppid=mn)
        if h.role == "ci":  # docker-prune.timer
            if self._keep(r):
                c.t = day_t + 3 * HOUR_MS + r.randrange(5 * MIN_MS)
                self.run(c, self.timer_actor(c, h), ["docker", "system", "prune", "-af", "--filter", "until=72h"])
        if h.role == "web":
            for hh in (int(r.uniform(0, 12) * HOUR_MS), int(r.uniform(12, 24) * HOUR_MS)):  # certbot.timer
                if self._keep(r):
                    c.t = day_t + hh
                    self.run(c, self.timer_actor(c, h), ["/usr/bin/certbot", "-q", "renew"], path="/usr/bin/certbot")
            for k in range(96):  # */15 * * * * deploy php bin/console app:queue:process
                if not self._keep(r):
                    continue
                c.t = day_t + k * 15 * MIN_MS + r.randrange(20, 900)
                a = self.cron_actor(c, h, "deploy")
                sh = self.run(c, a, ["/bin/sh", "-c", "cd /var/www/app/current && php bin/console app:queue:process "
                                     "--time-limit=840 >> /var/www/app/shared/var/log/queue.log 2>&1"], gap=(0.002, 0.02))
                self.run(c, a, ["php", "bin/console", "app:queue:process", "--time-limit=840"],
                         cwd="/var/www/app/current", ppid=sh)
        if h.role == "db" and self._keep(r):  # 30 1 * * * root /usr/local/bin/pg-backup.sh
            c.t = day_t + HOUR_MS + 30 * MIN_MS + r.randrange(10, 900)
            self._db_backup(c, h, d)
        if h.role == "mail" and self._keep(r):
            c.t = day_t + 4 * HOUR_MS + r.randrange(HOUR_MS)
            a = self.cron_actor(c, h)
            sh = self.run(c, a, ["/bin/sh", "-c", "test -x /usr/bin/sa-update && /usr/bin/sa-update --gpghomedir "
                                 "/var/lib/spamassassin/sa-update-keys"], gap=(0.002, 0.02))
            self.run(c, a, ["sa-update", "--gpghomedir", "/var/lib/spamassassin/sa-update-keys"],
                     path="/usr/bin/sa-update", ppid=sh)
        self._rootcheck(h, day_t, r, (day_t, day_t + DAY_MS))

    def _cron_daily(self, c: Cursor, h: Host, a: Actor) -> None:
        sh = self.run(c, a, ["/bin/sh", "-c", "test -x /usr/sbin/anacron || ( cd / && run-parts --report "
                             "/etc/cron.daily )"], gap=(0.002, 0.02))
        rp = self.run(c, a, ["run-parts", "--report", "/etc/cron.daily"], ppid=sh, gap=(0.01, 0.1))
        for script, inner in (
                ("apport", [["/usr/bin/systemctl", "is-enabled", "apport.service"]]),
                ("apt-compat", [["/usr/bin/systemctl", "is-system-running"]]),
                ("bsdmainutils", []),
                ("dpkg", [["/usr/bin/systemctl", "is-system-running"]]),
                ("logrotate", [["/usr/bin/systemctl", "is-system-running"]]),
                ("man-db", [["/usr/bin/systemctl", "is-system-running"]]),
                ("popularity-contest", []),
                ("update-notifier-common", [["/usr/lib/update-notifier/package-data-downloader"]])):
            sp = self.run(c, a, [f"/etc/cron.daily/{script}"], path=f"/etc/cron.daily/{script}", ppid=rp,
                          gap=(0.01, 0.3))
            for argv in inner:
                self.run(c, a, argv, ppid=sp, gap=(0.01, 0.2))

    def _rootcheck(self, h: Host, day_t: int, r: random.Random, window: Tuple[int, int]) -> None:
        findings = ROOTCHECK_FP.get(h.role, ())
        if not findings:
            return
        for k in range(2):
            t = day_t + h.scan_offset + k * 12 * HOUR_MS + 41 * MIN_MS
            if window[0] <= t < window[1] and self._keep(r):
                for i, (title, path, msg) in enumerate(findings):
                    self.at(t + i * 1500 + r.randrange(900), self._b_rootcheck, h, title, path, msg)

    def _flush_scans(self, day_t: int) -> None:
        """Scheduled FIM: changes queued on a host are reported at its next 12-hourly scan."""
        for h in self.hosts:
            if not h.pending_scan:
                continue
            for k in range(2):
                ts = day_t + h.scan_offset + k * 12 * HOUR_MS
                due = sorted((v[0], p) for p, v in h.pending_scan.items() if v[0] < ts)
                step = ts + 20_000 + stable_int(h.name, 60_000)
                for _, path in due:
                    _, op, spec = h.pending_scan.pop(path)
                    step += 40 + stable_int(path, 700)
                    self.at(step, self._b_fim, h, path, op, "scheduled", None, spec)

    # -- roles
    def _role_manager(self, h: Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        c = Cursor(day_t, r)
        for _ in range(self.n(r, 12)):  # the vulnerability detector / cluster checks shelling out
            c.t = day_t + r.randrange(DAY_MS)
            self.run(c, self.timer_actor(c, h, "root"), ["/var/ossec/bin/wazuh-control", "status"],
                     path="/var/ossec/bin/wazuh-control")

    def _role_web(self, h: Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        reqs: list = []
        site = "https://shop.example.com"
        for _ in range(self.n(r, 700, weekend, 0.85)):
            t = day_t + r.randrange(DAY_MS)
            x = r.random()
            if x < 0.6:
                ip = r.choice(self.botnet)
                url = r.choice(BOT_PATHS)
                status = 403 if url.startswith(("/.git", "/server-status", "/.ht")) else 404
                reqs.append((t, ip, r.choice(("GET", "GET", "GET", "POST", "HEAD")), url, status, r.randrange(150, 560),
                             "-", r.choice(BOT_UAS)))
            elif x < 0.88:
                ip = public_ip(r)
                url = r.choice(USER_404)
                reqs.append((t, ip, "GET", url, 404, r.randrange(900, 5200), site + r.choice(("/", "/blog/", "/shop/")),
                             r.choice(BROWSER_UAS)))
            else:
                ip = public_ip(r)
                url = f"/api/v1/orders/{r.randrange(10000, 99999)}"
                reqs.append((t, ip, r.choice(("GET", "PUT")), url, r.choice((401, 403, 401)), 61, "-",
                             r.choice(("okhttp/4.12.0", "ShopApp/3.2.1 (iPhone; iOS 17.1)", "python-requests/2.31.0"))))
        for _ in range(self.n(r, 6)):  # small scans by bots: a burst of probes from one address
            ip = r.choice(self.botnet)
            t = day_t + r.randrange(DAY_MS - 10 * MIN_MS)
            ua = r.choice(BOT_UAS)
            for url in r.sample(BOT_PATHS, r.randrange(10, min(40, len(BOT_PATHS)))):
                t += r.randrange(300, 5000)
                reqs.append((t, ip, "GET", url, 404, r.randrange(150, 560), "-", ua))
        for _ in range(self.n(r, 3)):
            t = self.office_t(r, day_t, weekend)
            reqs.append((t, public_ip(r), "POST", r.choice(("/api/v1/cart/checkout", "/api/v1/payments/confirm",
                                                            "/account/login")), r.choice((500, 500, 502)),
                         r.randrange(180, 600), site + "/cart/", r.choice(BROWSER_UAS)))
        self.web_requests(h, reqs)
        exe = "/usr/sbin/php-fpm7.4" if h.web == "nginx" else "/usr/sbin/apache2"
        master = 800 + stable_int(h.name + exe, 400)
        c = Cursor(day_t, r)
        for _ in range(self.n(r, 45, weekend, 0.35)):  # user uploads: the app stores and thumbnails them
            c.t = self.office_t(r, day_t, weekend)
            worker = master + 1 + r.randrange(60)
            www = Actor(h, "www-data", cwd="/var/www/app/current/public", pid=worker, exe=exe, ppid=master)
            dt = self.start + timedelta(days=d)
            name = hexs(r, 16)
            up = f"/var/www/app/shared/uploads/{dt.year}/{dt.month:02d}/{name}.jpg"
            self.fim(c, h, up, "add", (33, 33, 33, None, worker, master, exe, exe, "/", "/"), owner="www-data",
                     size=r.randrange(40_000, 2_400_000))
            c.adv(0.05, 0.4)
            thumb = up[:-4] + "_300x300.jpg"
            sh = self.run(c, www, ["sh", "-c", f"convert '{up}' -resize 300x300 -strip '{thumb}'"], gap=(0.002, 0.02))
            cv = self.run(c, www, ["convert", up, "-resize", "300x300", "-strip", thumb], ppid=sh, gap=(0.1, 0.6))
            self.fim(c, h, thumb, "add", (33, 33, 33, None, cv, sh, "/usr/bin/convert-im6.q16", "/usr/bin/dash",
                                          "/var/www/app/current/public", "/var/www/app/current/public"),
                     owner="www-data", size=r.randrange(9_000, 60_000))
        for _ in range(self.n(r, 70, weekend, 0.4)):  # order confirmation mails
            c.t = self.office_t(r, day_t, weekend)
            worker = master + 1 + r.randrange(60)
            www = Actor(h, "www-data", cwd="/var/www/app/current/public", pid=worker, exe=exe, ppid=master)
            sh = self.run(c, www, ["sh", "-c", "/usr/sbin/sendmail -t -i"], gap=(0.002, 0.02))
            self.run(c, www, ["/usr/sbin/sendmail", "-t", "-i"], ppid=sh)

    def _role_db(self, h: Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        return None  # backups are periodic; admin work is planned fleet-wide

    def _db_backup(self, c: Cursor, h: Host, d: int) -> None:
        a = self.cron_actor(c, h)
        stamp = (self.start + timedelta(days=d)).isoformat()
        sh = self.run(c, a, ["/bin/sh", "-c", "/usr/local/bin/pg-backup.sh >> /var/log/pg-backup.log 2>&1"],
                      gap=(0.002, 0.02))
        bk = self.run(c, a, ["/usr/local/bin/pg-backup.sh"], path="/usr/local/bin/pg-backup.sh", ppid=sh,
                      gap=(0.01, 0.05))
        for argv in (["date", "+%F"], ["mkdir", "-p", f"/var/backups/postgres/{stamp}"],
                     ["runuser", "-u", "postgres", "--", "pg_dump", "-Fc", "appdb", "-f",
                      f"/var/backups/postgres/{stamp}/appdb.dump"],
                     ["find", "/var/backups/postgres", "-mindepth", "1", "-maxdepth", "1", "-mtime", "+7", "-exec",
                      "rm", "-rf", "{}", "+"]):
            self.run(c, a, argv, ppid=bk, gap=(0.05, 40) if argv[0] == "runuser" else (0.01, 0.3))
        bastions = self.by_role.get("bastion")
        if not bastions:
            return
        rs = self.run(c, a, ["rsync", "-a", "--delete", "/var/backups/postgres/",
                             f"svc-backup@{bastions[0].ip}:/srv/backups/{h.name}/"], ppid=bk, gap=(0.01, 0.05))
        self.run(c, a, ["ssh", "-l", "svc-backup", bastions[0].ip, "rsync", "--server", "-logDtpre.iLsfxCIvu",
                        "--delete", ".", f"/srv/backups/{h.name}/"], ppid=rs, gap=(0.2, 0.6))
        b = bastions[0]
        sv = self.ssh_login(c, b, "svc-backup", h.ip, history=False,
                            command=f"rsync --server -logDtpre.iLsfxCIvu --delete . /srv/backups/{h.name}/")
        self.run(c, sv, ["rsync", "--server", "-logDtpre.iLsfxCIvu", "--delete", ".", f"/srv/backups/{h.name}/"],
                 gap=(5, 60))
        self.ssh_logout(c, sv)

    def _role_bastion(self, h: Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        if h.exposed_ssh:
            self._internet_ssh(h, day_t, r, 170)

    def _role_mail(self, h: Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        self._internet_ssh(h, day_t, r, 60)
        dec = {"parent": "dovecot", "name": "dovecot"}
        c = Cursor(day_t, r)
        for u in MAIL_USERS:
            logins = [(self.office_t(r, day_t, weekend), self.office_ip[u]) for _ in range(self.n(r, 16, weekend, 0.1))]
            logins += [(day_t + r.randrange(18 * HOUR_MS, 23 * HOUR_MS), self.home_ip[u])
                       for _ in range(self.n(r, 1.5, weekend, 2.0))]
            logins += [(day_t + r.randrange(7 * HOUR_MS, 23 * HOUR_MS),
                        self.mobile_ip[u] if r.random() < 0.7 else public_ip(r)) for _ in range(self.n(r, 2))]
            for t, ip in logins:
                c.t = t
                sess = rand_token(r, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                self.syslog(t, h, "9701", "dovecot", None,
                            f"imap-login: Login: user=<{u}>, method=PLAIN, rip={ip}, lip={h.ip}, "
                            f"mpid={h.next_pid(r)}, TLS, session=<{sess}>", dec, None, "/var/log/mail.log")
        attempts = []
        for _ in range(self.n(r, 40)):
            ip = r.choice(self.botnet)
            t = day_t + r.randrange(DAY_MS - HOUR_MS)
            for _k in range(1 + int(r.expovariate(1 / 6.0))):
                t += r.randrange(2000, 40_000)
                attempts.append((t, r.choice(MAIL_PROBE_USERS), ip, r.choice((1, 1, 2, 3))))
        self.dovecot_failures(h, attempts)

    def _role_ci(self, h: Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        for _ in range(self.n(r, 75, weekend, 0.12)):
            self._ci_job(Cursor(self.office_t(r, day_t, weekend), r), h, r.choices(CI_PROJECTS, weights=(35, 30, 20, 15))[0])
        for _ in range(self.n(r, 2)):  # nightly scheduled pipelines
            self._ci_job(Cursor(day_t + 2 * HOUR_MS + r.randrange(40 * MIN_MS), r), h, r.choice(CI_PROJECTS),
                         nightly=True)

    def _role_workstation(self, h: Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        if weekend and r.random() > 0.12:
            return
        if weekend:
            on = day_t + r.randrange(10 * HOUR_MS, 16 * HOUR_MS)
            off = on + r.randrange(HOUR_MS, 3 * HOUR_MS)
        else:
            on = day_t + 8 * HOUR_MS + r.randrange(90 * MIN_MS)
            off = day_t + 17 * HOUR_MS + r.randrange(150 * MIN_MS)
        dev = h.owner
        c = Cursor(on, r)
        gdm = h.next_pid(r)
        self.syslog(c.t, h, "5501", "gdm-password]", gdm,
                    f"pam_unix(gdm-password:session): session opened for user {dev} by (uid=0)", DEC_PAM,
                    {"dstuser": dev, "uid": "0"})
        c.adv(200, 600)  # anacron catches up with cron.daily after boot
        if self._keep(r):
            self._cron_daily(c, h, self.timer_actor(c, h))
        self._rootcheck(h, day_t, r, (on, off))
        ses = h.next_ses()
        for _ in range(self.n(r, 34, weekend, 0.3)):
            c.t = r.randrange(on, off)
            a = Actor(h, dev, auid=1000, ses=ses, tty=f"pts/{r.randrange(0, 4)}",
                       cwd=f"/home/{dev}/src/{r.choice(('api', 'webapp', 'libfoo', 'tools'))}", pid=h.next_pid(r))
            for _k in range(r.randrange(4, 30)):
                argv = list(r.choice(DEV_CMDS))
                pid = self.run(c, a, argv, gap=(1, 50))
                if argv[:2] == ["git", "push"]:
                    self.run(c, a, ["ssh", "git@gitlab.example.internal", "git-receive-pack 'group/project.git'"],
                             ppid=pid, gap=(0.5, 3))
                elif argv[0] == "make":
                    for _j in range(r.randrange(2, 8)):
                        self.run(c, a, ["cc", "-O2", "-g", "-Wall", "-c", "-o", f"build/{rand_token(r, 6)}.o",
                                        f"src/{rand_token(r, 6)}.c"], ppid=pid, gap=(0.1, 1.5))
        for _ in range(self.n(r, 0.5, weekend, 0.2)):  # sudo for the occasional system chore
            c.t = r.randrange(on, off)
            a = Actor(h, dev, auid=1000, ses=ses, tty="pts/1", cwd=f"/home/{dev}", pid=h.next_pid(r))
            x = r.random()
            if x < 0.5:
                self.sudo(c, a, ["apt", "update"])
                self.sudo(c, a, ["apt", "upgrade", "-y"], dur=(30, 200))
                root = Actor(h, "root", auid=1000, ses=ses, tty="pts/1", cwd=f"/home/{dev}", pid=h.next_pid(r))
                self._dpkg_install(c, root, h, self._security_pkgs(r, h, 1, 4), "/usr/bin/apt")
            elif x < 0.8:
                self.sudo(c, a, ["systemctl", "restart", "docker"])
            else:
                root, _ = self.sudo_open(c, a, ["vim", "/etc/hosts"])
                self.edit(c, root, "/etc/hosts", diff="12a13\n> 10.20.30.40 staging.example.internal\n")
                self.sudo_close(c, a)
        for _ in range(self.n(r, 2, weekend, 0.2)):  # cupsd rewrites its subscriptions
            c.t = r.randrange(on, off)
            self.fim(c, h, "/etc/cups/subscriptions.conf", "modify", None, new_inode=True)
        self.syslog(off, h, "5502", "gdm-password]", gdm, f"pam_unix(gdm-password:session): session closed for user {dev}",
                    DEC_PAM, {"dstuser": dev})

    def _internet_ssh(self, h: Host, day_t: int, r: random.Random, base: float) -> None:
        attempts = []
        accounts = set(h.users)
        for _ in range(self.n(r, base)):
            ip = r.choice(self.botnet) if r.random() < 0.75 else public_ip(r)
            t = day_t + r.randrange(DAY_MS - HOUR_MS)
            port = r.randrange(30000, 65000)
            if r.random() < 0.25:
                attempts.append((t, "noident", "", ip, port, h.next_pid(r)))
                continue
            style = r.random()
            k = min(120, 1 + int(r.expovariate(1 / 7.0)))
            fast = r.random() < 0.6
            tries_on_conn = 0
            for _k in range(k):
                t += r.randrange(700, 6000) if fast else r.randrange(15_000, 180_000)
                user = "root" if style < 0.35 else r.choice(SSH_WORDLIST)
                pid = h.next_pid(r)
                port = r.randrange(30000, 65000)
                if user in accounts:
                    attempts.append((t, "failed", user, ip, port, pid))
                    tries_on_conn += 1
                    if tries_on_conn >= 6:
                        attempts.append((t + r.randrange(50, 400), "maxauth", user, ip, port, pid))
                        tries_on_conn = 0
                else:
                    attempts.append((t, "invalid", user, ip, port, pid))
                    attempts.append((t + r.randrange(800, 3500), "failed_invalid", user, ip, port, pid))
        self.ssh_attempts(h, attempts)

    # -- CI
    def _ci_job(self, c: Cursor, h: Host, project: Tuple[str, str, str], *, nightly: bool = False,
                sha: Optional[str] = None) -> Actor:
        """One GitLab CI job on a shell-executor runner: git prelude, then the project's build."""
        r = c.r
        group, proj, kind = project
        bdir = f"/home/gitlab-runner/builds/{self.runner_token[h.name]}/{r.randrange(4)}/{group}/{proj}"
        a = Actor(h, "gitlab-runner", cwd=bdir, pid=700 + stable_int(h.name + ":runner", 300),
                   exe="/usr/bin/gitlab-runner")
        sha = sha or hexs(r, 40)
        pipe = r.randrange(41000, 99000)
        a.pid = self.run(c, a, ["bash", "--login"], gap=(0.05, 0.3))
        a.exe = "/usr/bin/bash"
        token = "glcbt-64_" + rand_token(r, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
        remote = f"https://gitlab-ci-token:{token}@gitlab.example.internal/{group}/{proj}.git"
        tmpl = f"{bdir}.tmp/git-template"
        for argv in (["git", "config", "-f", f"{tmpl}/config", "fetch.recurseSubmodules", "false"],
                     ["git", "init", bdir, "--template", tmpl],
                     ["git", "remote", "set-url", "origin", remote],
                     ["git", "-c", "http.userAgent=gitlab-runner 16.5.0 linux/amd64", "fetch", "origin",
                      f"+refs/pipelines/{pipe}:refs/pipelines/{pipe}", "--depth", "20", "--prune", "--quiet"],
                     ["git", "checkout", "-f", "-q", sha],
                     ["git", "clean", "-ffdx"]):
            p = self.run(c, a, argv, gap=(0.05, 1.0))
            if argv[-1] == "--quiet":
                self.run(c, a, ["/usr/lib/git-core/git-remote-https", "origin", remote],
                         path="/usr/lib/git-core/git-remote-https", ppid=p, gap=(0.4, 3))
        getattr(self, "_ci_" + kind)(c, a, bdir, sha, nightly)
        return a

    def _ci_c(self, c: Cursor, a: Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        mk = self.run(c, a, ["make", "-j4"], gap=(0.05, 0.3))
        objs = []
        for name in r.sample(C_SOURCES, r.randrange(8, len(C_SOURCES))):
            obj = f"build/obj/{name}.o"
            objs.append(obj)
            gcc = self.run(c, a, ["gcc", "-O2", "-Wall", "-Wextra", "-fPIC", "-Iinclude", "-c", "-o", obj,
                                  f"src/{name}.c"], ppid=mk, gap=(0.01, 0.05))
            tmp = f"/tmp/cc{rand_token(r, 6, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')}.s"
            self.run(c, a, ["/usr/lib/gcc/x86_64-linux-gnu/9/cc1", "-quiet", "-Iinclude", f"src/{name}.c", "-quiet",
                            "-dumpbase", f"{name}.c", "-mtune=generic", "-march=x86-64", "-auxbase-strip", obj, "-O2",
                            "-Wall", "-Wextra", "-fPIC", "-o", tmp], ppid=gcc, gap=(0.2, 2.5))
            self.run(c, a, ["as", "--64", "-o", obj, tmp], ppid=gcc, gap=(0.02, 0.3))
        ln = self.run(c, a, ["gcc", "-shared", "-o", "build/libfoo.so.1.4.2"] + objs[:4], ppid=mk, gap=(0.01, 0.05))
        cl = self.run(c, a, ["/usr/lib/gcc/x86_64-linux-gnu/9/collect2", "-plugin",
                             "/usr/lib/gcc/x86_64-linux-gnu/9/liblto_plugin.so", "--build-id", "--eh-frame-hdr",
                             "-m", "elf_x86_64", "-shared", "-o", "build/libfoo.so.1.4.2"],
                      path="/usr/lib/gcc/x86_64-linux-gnu/9/collect2", ppid=ln, gap=(0.01, 0.05))
        self.run(c, a, ["/usr/bin/ld", "-plugin", "/usr/lib/gcc/x86_64-linux-gnu/9/liblto_plugin.so", "--build-id",
                        "-m", "elf_x86_64", "-shared", "-o", "build/libfoo.so.1.4.2"], ppid=cl, gap=(0.1, 1))
        self.run(c, a, ["ar", "rcs", "build/libfoo.a"] + objs[:5], ppid=mk, gap=(0.05, 0.5))
        self.run(c, a, ["./build/test_runner", "--junit", "report.xml"], path=f"{bdir}/build/test_runner",
                 gap=(2, 30))

    def _ci_go(self, c: Cursor, a: Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        for verb, target in (("build", "./cmd/api"), ("test", "./...")):
            argv = ["go", verb, "-o", "bin/api", target] if verb == "build" else ["go", "test", "-race", target]
            go = self.run(c, a, argv, gap=(0.1, 0.8))
            gb = f"/tmp/go-build{r.randrange(10 ** 8, 10 ** 10)}"
            pkgs = r.sample(GO_PACKAGES, r.randrange(10, len(GO_PACKAGES)))
            for k, pkg in enumerate(pkgs, 1):
                work = f"{gb}/b{k:03d}"
                self.run(c, a, ["/usr/local/go/pkg/tool/linux_amd64/compile", "-o", f"{work}/_pkg_.a", "-trimpath",
                                f"{work}=>", "-p", pkg, "-lang=go1.21", "-complete", "-buildid",
                                f"{rand_token(r, 20)}/{rand_token(r, 20)}", "-goversion", "go1.21.4", "-c=4",
                                "-nolocalimports", "-importcfg", f"{work}/importcfg", "-pack"],
                         path="/usr/local/go/pkg/tool/linux_amd64/compile", ppid=go, gap=(0.05, 1.2))
            if verb == "build":
                self.run(c, a, ["/usr/local/go/pkg/tool/linux_amd64/link", "-o", f"{gb}/b001/exe/a.out", "-importcfg",
                                f"{gb}/b001/importcfg.link", "-buildmode=exe", "-extld=gcc", f"{gb}/b001/_pkg_.a"],
                         path="/usr/local/go/pkg/tool/linux_amd64/link", ppid=go, gap=(0.5, 4))
            else:
                for k, pkg in enumerate(pkgs[:r.randrange(2, 7)], 1):
                    name = pkg.rsplit("/", 1)[-1]
                    self.run(c, a, [f"{gb}/b{k:03d}/{name}.test", "-test.paniconexit0", "-test.timeout=10m0s"],
                             path=f"{gb}/b{k:03d}/{name}.test", ppid=go, gap=(0.5, 6))
        if nightly:
            self.run(c, a, ["go", "list", "-m", "-u", "all"], gap=(1, 5))

    def _ci_node(self, c: Cursor, a: Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        npm = self.run(c, a, ["npm", "ci"], path="/usr/bin/npm", gap=(0.5, 3))
        for pkg, script in r.sample(NPM_POSTINSTALL, r.randrange(3, len(NPM_POSTINSTALL))):
            sh = self.run(c, a, ["sh", "-c", script], cwd=f"{bdir}/node_modules/{pkg}", ppid=npm, gap=(0.01, 0.1))
            self.run(c, a, script.split(), cwd=f"{bdir}/node_modules/{pkg}", ppid=sh, gap=(0.2, 3))
        wp = self.run(c, a, ["node", "node_modules/.bin/webpack", "--mode", "production"], gap=(0.5, 2))
        for _ in range(r.randrange(2, 5)):
            self.run(c, a, ["node", f"{bdir}/node_modules/terser-webpack-plugin/dist/minify.js"], ppid=wp, gap=(0.5, 8))
        jest = self.run(c, a, ["node", "node_modules/.bin/jest", "--ci", "--reporters=default", "--reporters=jest-junit"],
                        gap=(0.3, 1))
        for _ in range(4):
            self.run(c, a, ["node", f"{bdir}/node_modules/jest-worker/build/workers/processChild.js"], ppid=jest,
                     gap=(0.05, 0.3))
        c.adv(5, 40)
        self.run(c, a, ["php", "/usr/local/bin/composer", "install", "--no-dev", "--optimize-autoloader",
                        "--no-interaction"], gap=(3, 20))
        self.run(c, a, ["php", "vendor/bin/phpunit", "--log-junit", "report.xml"], gap=(3, 30))
        if nightly:
            self.run(c, a, ["npm", "audit", "--audit-level=high"], path="/usr/bin/npm", gap=(2, 10))
            self.run(c, a, ["trivy", "image", "--exit-code", "0", "--severity", "HIGH,CRITICAL",
                            "registry.example.internal/web/webapp:latest"], path="/usr/local/bin/trivy", gap=(5, 60))
        else:
            self.run(c, a, ["docker", "build", "-t", f"registry.example.internal/web/webapp:{sha[:8]}", "."], gap=(10, 90))
            self.run(c, a, ["docker", "push", f"registry.example.internal/web/webapp:{sha[:8]}"], gap=(3, 30))

    def _ci_python(self, c: Cursor, a: Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        venv = f"/tmp/venv-{rand_token(r, 8)}"
        py = f"{venv}/bin/python"
        self.run(c, a, ["python3", "-m", "venv", venv], gap=(1, 4))
        pip = self.run(c, a, [py, "-m", "pip", "install", "-q", "-r", "requirements.txt"], path=py, gap=(0.2, 1))
        for _ in range(r.randrange(0, 4)):
            env = f"/tmp/pip-build-env-{rand_token(r, 8)}"
            self.run(c, a, [py, "-c", "import setuptools, tokenize;__file__='setup.py';exec(compile(...))",
                            "bdist_wheel", "-d", f"/tmp/pip-wheel-{rand_token(r, 8)}"], path=py,
                     cwd=f"{env}/src", ppid=pip, gap=(1, 8))
        c.adv(5, 40)
        pt = self.run(c, a, [py, "-m", "pytest", "-q", "--junitxml=report.xml"], path=py, gap=(0.5, 2))
        for argv in r.sample(PYTEST_SUBPROCS, r.randrange(1, len(PYTEST_SUBPROCS))):
            self.run(c, a, argv, ppid=pt, gap=(0.05, 2))
        self.run(c, a, [py, "-m", "flake8", "src"], path=py, gap=(1, 6))
