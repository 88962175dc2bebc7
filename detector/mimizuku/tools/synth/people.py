"""What the people of the fleet do: admins' sessions through the bastion and their tasks, Ansible
runs, deploys of the web app, the weekly patch day and unattended upgrades, a new admin's
onboarding, and the oddities that keep benign data from being too regular.
"""
from __future__ import annotations

import random
import re
from datetime import timedelta
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from mimizuku.tools.synth.catalogues import (
    ADMIN_PREF,
    BASTION_CMDS,
    CHECK_CMDS,
    KERNEL,
    PACKAGES,
    ROOT_CMDS,
    TASKS,
    TOOLS,
    WAZUH_AGENT,
)
from mimizuku.tools.synth.fleet import DAY_MS, HOUR_MS, MIN_MS, ROLES
from mimizuku.tools.synth.formats import hexs, rand_token, stable_int
from mimizuku.tools.synth.hosts import ADMIN_UID, ADMINS, NEW_ADMIN, Actor, Cursor, Host

_RELEASE_TEMPLATE = (
    "public/index.php", "public/.htaccess", "public/robots.txt", "public/favicon.ico", "public/build/manifest.json",
    "public/build/entrypoints.json", "public/build/app.{h}.js", "public/build/app.{h}.css", "public/build/runtime.{h}.js",
    "public/build/vendors.{h}.js", "bin/console", "composer.json", "composer.lock", "symfony.lock", "config/bundles.php",
    "config/services.yaml", "config/routes.yaml", "config/packages/framework.yaml", "config/packages/doctrine.yaml",
    "config/packages/security.yaml", "config/packages/twig.yaml", "config/packages/monolog.yaml", "src/Kernel.php",
) + tuple(f"src/Controller/{x}Controller.php" for x in ("Home", "Product", "Cart", "Checkout", "Account", "Api/Order",
                                                          "Api/Payment", "Admin/Dashboard")) + tuple(
    f"src/Entity/{x}.php" for x in ("Product", "Order", "OrderLine", "Customer", "Payment", "Address")) + tuple(
    f"src/Repository/{x}Repository.php" for x in ("Product", "Order", "Customer", "Payment")) + tuple(
    f"src/Service/{x}.php" for x in ("PriceCalculator", "Mailer", "PaymentGateway", "StockService", "Thumbnailer")) + tuple(
    f"templates/{x}.html.twig" for x in ("base", "home/index", "product/show", "product/list", "cart/index",
                                        "checkout/index", "checkout/done", "account/orders", "admin/dashboard")) + (
    "translations/messages.en.yaml", "translations/messages.de.yaml", "vendor/autoload.php",
    "vendor/composer/autoload_classmap.php", "vendor/composer/autoload_real.php", "vendor/composer/autoload_static.php",
    "vendor/composer/installed.json", "REVISION")

_release_cache: Dict[str, tuple] = {}


def _release_files(sha: str) -> tuple:
    """The files of one release of the web app: (relative path, content key, size)."""
    got = _release_cache.get(sha)
    if got is not None:
        return got
    rr = random.Random("release:" + sha)
    out = []
    for tpl in _RELEASE_TEMPLATE:
        rel = tpl.replace("{h}", sha[:8])
        changed = "{h}" in tpl or rel in ("REVISION", "composer.lock") or rr.random() < 0.2
        key = f"rel|{rel}|{sha if changed else 'base'}"
        out.append((rel, key, 120 + stable_int(key, 90_000)))
    got = tuple(out)
    if len(_release_cache) > 256:
        _release_cache.clear()
    _release_cache[sha] = got
    return got


def _bump_version(v: str) -> str:
    m = re.search(r"(\d+)(\D*)$", v)
    if not m:
        return v + ".1"
    return v[:m.start(1)] + str(int(m.group(1)) + 1) + m.group(2)


class PeopleAtWork:
    """The World's people at work: admins, deploys, patching, onboarding, oddities."""

    # -- people at work
    def _admins(self, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        admins = list(ADMINS) + ([NEW_ADMIN] if d > self.onboard_day else [])
        for adm in admins:
            for _ in range(self.n(r, 9, weekend, 0.08)):
                self._admin_session(Cursor(self.office_t(r, day_t, weekend), r), adm)
        if r.random() < 0.25 * self.periodic:
            self._ansible_run(Cursor(self.office_t(r, day_t, weekend), r), r.choice(ADMINS), "site.yml")

    def _servers(self) -> List[Host]:
        return [h for h in self.hosts if h.role not in ("workstation", "bastion")]

    def _admin_session(self, c: Cursor, adm: str, *, src: Optional[str] = None, targets: Optional[List[Host]] = None,
                       task: Optional[str] = None) -> None:
        """An admin's working session: in through the bastion, onto one or two servers, a task."""
        r = c.r
        hour = (c.t - self.t0) % DAY_MS // HOUR_MS
        if src is None:
            src = self.office_ip[adm] if (8 <= hour < 18 and r.random() < 0.75) else self.vpn_ip[adm]
        if targets is None:
            pref = ADMIN_PREF.get(adm, ROLES)
            pool = [h for h in self._servers() if h.role in pref] or self._servers()
            targets = r.sample(pool, min(len(pool), r.choice((1, 1, 1, 2)))) if pool else []
        bastions = self.by_role.get("bastion")
        if bastions:
            b = bastions[0]
            a = self.ssh_login(c, b, adm, src, user_session=r.random() < 0.3)
            for argv in r.sample(BASTION_CMDS, r.randrange(0, 3)):
                self.run(c, a, argv, gap=(2, 40))
            for tgt in targets:
                self.run(c, a, ["ssh", tgt.name], gap=(0.3, 1.2))
                self._admin_task(c, tgt, adm, b.ip, task)
            if not targets:
                self._task_check(c, a)
            self.ssh_logout(c, a)
        else:
            for tgt in targets:
                self._admin_task(c, tgt, adm, src, task)

    def _admin_task(self, c: Cursor, h: Host, adm: str, src: str, task: Optional[str]) -> None:
        r = c.r
        a = self.ssh_login(c, h, adm, src, user_session=r.random() < 0.2)
        c.adv(2, 20)
        if task is None:
            task = r.choice(TASKS.get(h.role if h.role != "web" else f"web-{h.web}", ("check",)) + ("check", "root_shell"))
        getattr(self, "_task_" + task)(c, a)
        c.adv(3, 60)
        self.ssh_logout(c, a)

    def _task_check(self, c: Cursor, a: Actor) -> None:
        r = c.r
        for argv in r.sample(CHECK_CMDS, r.randrange(2, 5)):
            self.run(c, a, argv, gap=(2, 25))
        if r.random() < 0.6:
            self.sudo(c, a, ["tail", "-n", "200", "/var/log/syslog"])
        if r.random() < 0.4:
            self.sudo(c, a, ["journalctl", "-p", "err", "-b", "--no-pager"])

    def _task_root_shell(self, c: Cursor, a: Actor) -> None:
        r = c.r
        root = self.root_shell_open(c, a)
        for argv in r.sample(ROOT_CMDS, r.randrange(2, 6)):
            self.run(c, root, argv, gap=(3, 40))
        self.root_shell_close(c, a, root)

    def _task_nginx_edit(self, c: Cursor, a: Actor) -> None:
        root, _ = self.sudo_open(c, a, ["vim", "/etc/nginx/sites-available/shop.conf"])
        self.edit(c, root, "/etc/nginx/sites-available/shop.conf",
                  diff=f"{c.r.randrange(10, 80)}c{c.r.randrange(10, 80)}\n<     client_max_body_size 20m;\n---\n>     client_max_body_size 32m;\n")
        self.sudo_close(c, a)
        self.sudo(c, a, ["nginx", "-t"])
        self.sudo(c, a, ["systemctl", "reload", "nginx"])

    def _task_nginx_reload(self, c: Cursor, a: Actor) -> None:
        self.sudo(c, a, ["tail", "-n", "200", "/var/log/nginx/error.log"])
        self.sudo(c, a, ["systemctl", "restart", "php7.4-fpm"])
        self.sudo(c, a, ["systemctl", "reload", "nginx"])

    def _task_apache_edit(self, c: Cursor, a: Actor) -> None:
        root, _ = self.sudo_open(c, a, ["vim", "/etc/apache2/sites-available/shop.conf"])
        self.edit(c, root, "/etc/apache2/sites-available/shop.conf",
                  diff=f"{c.r.randrange(10, 60)}a{c.r.randrange(10, 60)}\n>     Header always set X-Frame-Options DENY\n")
        self.sudo_close(c, a)
        self.sudo(c, a, ["apache2ctl", "configtest"])
        self.sudo(c, a, ["systemctl", "reload", "apache2"])

    def _task_apache_reload(self, c: Cursor, a: Actor) -> None:
        self.sudo(c, a, ["tail", "-n", "200", "/var/log/apache2/error.log"])
        self.sudo(c, a, ["systemctl", "reload", "apache2"])

    def _task_psql(self, c: Cursor, a: Actor) -> None:
        root, _ = self.sudo_open(c, a, ["psql"], target="postgres", command="/usr/bin/psql")
        self.run(c, root, ["psql"], gap=(30, 600))
        self.sudo_close(c, a, "postgres")
        if c.r.random() < 0.3:
            self.sudo(c, a, ["vacuumdb", "--all", "--analyze-in-stages"], target="postgres", dur=(20, 200))

    def _task_pg_edit(self, c: Cursor, a: Actor) -> None:
        root, _ = self.sudo_open(c, a, ["vim", "/etc/postgresql/12/main/postgresql.conf"])
        self.edit(c, root, "/etc/postgresql/12/main/postgresql.conf",
                  diff=f"{c.r.randrange(100, 700)}c{c.r.randrange(100, 700)}\n< work_mem = 8MB\n---\n> work_mem = 16MB\n")
        self.sudo_close(c, a)
        self.sudo(c, a, ["systemctl", "reload", "postgresql"])

    def _task_mailq(self, c: Cursor, a: Actor) -> None:
        self.run(c, a, ["mailq"], gap=(2, 20))
        self.sudo(c, a, ["tail", "-n", "100", "/var/log/mail.log"])
        if c.r.random() < 0.2:
            self.sudo(c, a, ["postsuper", "-d", "ALL", "deferred"])

    def _task_docker(self, c: Cursor, a: Actor) -> None:
        self.sudo(c, a, ["docker", "ps", "-a"])
        self.sudo(c, a, ["docker", "system", "df"])
        if c.r.random() < 0.25:
            self.sudo(c, a, ["systemctl", "restart", "gitlab-runner"])

    def _task_wazuh(self, c: Cursor, a: Actor) -> None:
        self.sudo(c, a, ["/var/ossec/bin/wazuh-control", "status"])
        self.sudo(c, a, ["tail", "-n", "100", "/var/ossec/logs/ossec.log"])
        self.sudo(c, a, ["/var/ossec/bin/agent_control", "-l"])

    def _ansible_run(self, c: Cursor, adm: str, playbook: str, *, hook: Optional[Callable] = None) -> None:
        """An admin runs a playbook from the bastion: ansible logs in to every server and becomes root."""
        r = c.r
        bastions = self.by_role.get("bastion")
        if not bastions:
            return
        b = bastions[0]
        a = self.ssh_login(c, b, adm, self.office_ip[adm])
        self.run(c, a, ["git", "-C", "infra", "pull", "--ff-only"], gap=(2, 10))
        self.run(c, a, ["ansible-playbook", "-i", "inventory/prod", playbook], path="/usr/bin/ansible-playbook",
                 cwd=f"/home/{adm}/infra", gap=(2, 8))
        for h in [x for x in self.hosts if x.role != "workstation"]:
            hc = Cursor(c.t + r.randrange(200, 4000), r)
            tmp = f"/home/{adm}/.ansible/tmp/ansible-tmp-{hc.t // 1000}.{r.randrange(10 ** 5, 10 ** 6)}-{r.randrange(1000, 99999)}-{r.randrange(10 ** 13, 10 ** 14)}"
            x = self.ssh_login(hc, h, adm, b.ip if h is not b else "127.0.0.1", history=False,
                               command=f"/bin/sh -c 'echo ~{adm} && sleep 0'")
            become = f"BECOME-SUCCESS-{rand_token(r, 32, 'abcdefghijklmnopqrstuvwxyz')}"
            module = f"{tmp}/AnsiballZ_{r.choice(('setup', 'apt', 'user', 'copy', 'systemd'))}.py"
            root, sp = self.sudo_open(hc, x, ["/bin/sh", "-c", f"echo {become} ; /usr/bin/python3 {module}"],
                                      command=f"/bin/sh -c echo {become} ; /usr/bin/python3 {module}")
            sh = self.run(hc, root, ["/bin/sh", "-c", f"echo {become} ; /usr/bin/python3 {module}"], gap=(0.01, 0.05))
            py = self.run(hc, root, ["/usr/bin/python3", module], ppid=sh, gap=(0.3, 3))
            if hook is not None:
                hook(hc, h, root, py)
            self.sudo_close(hc, x)
            self.ssh_logout(hc, x)
        self.ssh_logout(c, a)

    # -- deploys
    def _deploys(self, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        for _ in range(self.n(r, 4, weekend, 0.1)):
            self._deploy(Cursor(self.office_t(r, day_t, weekend), r))

    def _deploy(self, c: Cursor) -> None:
        """A release of the web app: CI builds it and ships it to every web server over ssh."""
        r = c.r
        webs = self.by_role.get("web") or []
        runners = self.by_role.get("ci") or []
        sha = hexs(r, 40)
        src = runners[0].ip if runners else self.vpn_ip["alice"]
        a = None
        if runners:
            runner = r.choice(runners)
            src = runner.ip
            a = self._ci_job(c, runner, ("web", "webapp", "node"), sha=sha)
        for w in webs:
            rel = f"/var/www/app/releases/{sha}"
            if a is not None:
                self.run(c, a, ["ssh", "-o", "StrictHostKeyChecking=no", f"deploy@{w.ip}", "mkdir", "-p", rel],
                         gap=(0.05, 0.2))
                rs = self.run(c, a, ["rsync", "-az", "--delete", "--exclude=.git", "./", f"deploy@{w.ip}:{rel}/"],
                              gap=(0.01, 0.05))
                self.run(c, a, ["ssh", "-l", "deploy", w.ip, "rsync", "--server", "-logDtprze.iLsfxCIvu", "--delete",
                                ".", f"{rel}/"], ppid=rs, gap=(0.05, 0.2))
            rc = Cursor(c.t + r.randrange(200, 900), r)
            self._deploy_to(rc, w, sha, src)
            c.t = max(c.t, rc.t) + r.randrange(500, 4000)

    def _deploy_to(self, c: Cursor, w: Host, sha: str, src: str) -> None:
        r = c.r
        rel = f"/var/www/app/releases/{sha}"
        a = self.ssh_login(c, w, "deploy", src, history=False, command=f"mkdir -p {rel}")
        self.run(c, a, ["mkdir", "-p", rel], gap=(0.05, 0.3))
        self.ssh_logout(c, a)
        a = self.ssh_login(c, w, "deploy", src, history=False,
                           command=f"rsync --server -logDtprze.iLsfxCIvu --delete . {rel}/")
        rs = self.run(c, a, ["rsync", "--server", "-logDtprze.iLsfxCIvu", "--delete", ".", f"{rel}/"], gap=(0.05, 0.3))
        who = (1500, 1500, 1500, 1500, rs, a.pid, "/usr/bin/rsync", "/usr/bin/bash", "/home/deploy", "/home/deploy")
        for relpath, key, size in _release_files(sha):
            self.fim(c, w, f"{rel}/{relpath}", "add", who, owner="deploy", key=key, size=size)
            c.t += r.randrange(3, 90)
        c.adv(0.2, 2)
        self.ssh_logout(c, a)
        svc = "php7.4-fpm" if w.web == "nginx" else "apache2"
        a = self.ssh_login(c, w, "deploy", src, history=False,
                           command=f"ln -sfn {rel} /var/www/app/current && sudo systemctl reload {svc}")
        self.run(c, a, ["ln", "-sfn", rel, "/var/www/app/current"], gap=(0.01, 0.1))
        self.sudo(c, a, ["systemctl", "reload", svc], dur=(0.2, 1.5))
        self.ssh_logout(c, a)
        rels = self.releases.setdefault(w.name, [hexs(random.Random(f"{self.seed}:{w.name}:rel{k}"), 40)
                                                 for k in range(4)])
        rels.append(sha)
        if len(rels) > 5:
            old = rels.pop(0)
            a = self.ssh_login(c, w, "deploy", src, history=False, command=f"rm -rf /var/www/app/releases/{old}")
            rm = self.run(c, a, ["rm", "-rf", f"/var/www/app/releases/{old}"], gap=(0.05, 0.2))
            who = (1500, 1500, 1500, 1500, rm, a.pid, "/usr/bin/rm", "/usr/bin/bash", "/home/deploy", "/home/deploy")
            for relpath, _key, _size in _release_files(old):
                self.fim(c, w, f"/var/www/app/releases/{old}/{relpath}", "delete", who)
                c.t += r.randrange(1, 12)
            self.ssh_logout(c, a)

    # -- packages
    def _pkg_applies(self, h: Host, roles: Optional[Tuple[str, ...]]) -> bool:
        if roles is None:
            return True
        return h.role in roles or (h.web is not None and f"web-{h.web}" in roles)

    def _security_pkgs(self, r: random.Random, h: Host, lo: int, hi: int) -> List[tuple]:
        pool = [p for p in PACKAGES if p[4] and self._pkg_applies(h, p[3])]
        return r.sample(pool, min(len(pool), r.randrange(lo, hi + 1)))

    def _dpkg_install(self, c: Cursor, root: Actor, h: Host, pkgs: Sequence[tuple], parent_exe: str,
                      new: bool = False) -> None:
        """dpkg unpacking and configuring packages: commands, dpkg.log lines, changed files."""
        r = c.r
        if not pkgs:
            return
        debs = [f"/var/cache/apt/archives/{p[0]}_{self._next_version(h, p, peek=True)}_amd64.deb" for p in pkgs]
        dp = self.run(c, root, ["/usr/bin/dpkg", "--status-fd", "35", "--no-triggers", "--unpack",
                                "--auto-deconfigure"] + debs[:6], gap=(0.1, 0.6))
        who = (0, 0, 0, root.auid, dp, root.pid, "/usr/bin/dpkg", parent_exe, root.cwd, root.cwd)
        whodata = True
        versions = []
        for p in pkgs:
            old = self.pkg_version.get((h.name, p[0]), p[1])
            ver = self._next_version(h, p)
            versions.append((p, old, ver))
            if new:
                self.at(c.t, self._b_dpkg, h, "install", p[0], ver)
            for f in p[2]:
                mode = h.fim_mode(f)
                if mode == "whodata" and r.random() < 0.3 and whodata:
                    self.fim(c, h, f + ".dpkg-new", "add", who, key=f"dist|{f}|{ver}",
                             size=18_000 + stable_int(f + ver, 2_500_000), perm="rwxr-xr-x" if "/bin/" in f else "rw-r--r--")
                    self.fim(c, h, f + ".dpkg-new", "delete", who)
                if new:
                    self.fim(c, h, f, "add", who, key=f"dist|{f}|{ver}", size=18_000 + stable_int(f + ver, 2_500_000),
                             perm="rwxr-xr-x" if "/bin/" in f else "rw-r--r--")
                else:
                    self.fim(c, h, f, "modify", who, key=f"dist|{f}|{ver}",
                             size=18_000 + stable_int(f + ver, 2_500_000), new_inode=True)
                c.t += r.randrange(5, 400)
            c.adv(0.2, 2.5)
        for p, old, ver in versions:
            self.at(c.t, self._b_dpkg, h, "status half-configured", p[0], ver)
            c.adv(0.02, 0.2)
            if r.random() < 0.6:
                self.run(c, root, [f"/var/lib/dpkg/info/{p[0]}.postinst", "configure", "" if new else old],
                         path=f"/var/lib/dpkg/info/{p[0]}.postinst", ppid=dp, gap=(0.05, 1.5))
            self.at(c.t, self._b_dpkg, h, "status installed", p[0], ver)
            c.adv(0.05, 0.6)
        self.run(c, root, ["/usr/bin/dpkg", "--status-fd", "35", "--configure", "--pending"], gap=(0.05, 0.3))
        self.run(c, root, ["ldconfig"], gap=(0.1, 1))
        self.run(c, root, ["/usr/bin/mandb", "--quiet"], gap=(0.5, 4))

    def _next_version(self, h: Host, p: tuple, peek: bool = False) -> str:
        key = (h.name, p[0])
        cur = self.pkg_version.get(key, p[1])
        nxt = _bump_version(cur)
        if not peek:
            self.pkg_version[key] = nxt
        return nxt

    def _week_updates(self, d: int) -> List[tuple]:
        wr = random.Random(f"mimizuku-synth:{self.seed}:patch:{(self.start + timedelta(days=d)).isocalendar()[1]}")
        pkgs = wr.sample(PACKAGES, wr.randrange(5, 15))
        if wr.random() < 0.35:
            pkgs.append(KERNEL)
        if wr.random() < 0.25:
            pkgs.append(WAZUH_AGENT)
        return pkgs

    def _patch_day(self, d: int, day_t: int, r: random.Random) -> None:
        """The weekly patch window: an admin upgrades every server, one after the other."""
        updates = self._week_updates(d)
        adm = r.choice(("alice", "carol"))
        c = Cursor(day_t + 10 * HOUR_MS + r.randrange(90 * MIN_MS), r)
        bastions = self.by_role.get("bastion")
        b = bastions[0] if bastions else None
        src = b.ip if b else self.office_ip[adm]
        outer = self.ssh_login(c, b, adm, self.office_ip[adm]) if b else None
        order = [h for h in self.hosts if h.role in ("web", "db", "mail", "manager")] + ([b] if b else [])
        for h in order:
            if not self._keep(r):  # periodic work thins out below scale 1 like cron does
                continue
            self._patch_host(c, h, adm, src if h is not b else self.office_ip[adm], updates)
            c.adv(20, 240)
        if outer is not None:
            self.ssh_logout(c, outer)

    def _patch_host(self, c: Cursor, h: Host, adm: str, src: str, updates: Sequence[tuple]) -> None:
        r = c.r
        a = self.ssh_login(c, h, adm, src)
        root, _ = self.sudo_open(c, a, ["apt-get", "update"])
        ag = self.run(c, root, ["apt-get", "update"], gap=(0.2, 1))
        for m in ("http", "http", "http", "gpgv", "gpgv", "gpgv", "store"):
            self.run(c, root, [f"/usr/lib/apt/methods/{m}"], path=f"/usr/lib/apt/methods/{m}", ppid=ag, gap=(0.1, 2))
        self.sudo_close(c, a)
        mine = [p for p in updates if self._pkg_applies(h, p[3])]
        root, _ = self.sudo_open(c, a, ["apt-get", "-y", "upgrade"])
        root.pid = self.run(c, root, ["apt-get", "-y", "upgrade"], gap=(2, 20))
        root.exe = "/usr/bin/apt-get"
        self._dpkg_install(c, root, h, [p for p in mine if p[0] not in ("linux-image", "wazuh-agent")],
                           "/usr/bin/apt-get")
        kernel = any(p[0] == "linux-image" for p in mine)
        if kernel:
            kv = f"5.4.0-{170 + (c.t - self.t0) // (7 * DAY_MS)}-generic"
            kp = (f"linux-image-{kv}", "", tuple(f"/boot/{x}-{kv}" for x in ("vmlinuz", "System.map", "config")),
                  None, True)
            self._dpkg_install(c, root, h, [kp], "/usr/bin/apt-get", new=True)
            self.run(c, root, ["update-initramfs", "-u", "-k", kv], path="/usr/sbin/update-initramfs", gap=(5, 30))
            self.fim(c, h, f"/boot/initrd.img-{kv}", "add", None, size=r.randrange(60_000_000, 90_000_000))
        agent_up = any(p[0] == "wazuh-agent" for p in mine) and not h.is_manager
        if any(p[0] == "wazuh-agent" for p in mine):
            pkg = ("wazuh-manager",) + WAZUH_AGENT[1:] if h.is_manager else WAZUH_AGENT
            self._dpkg_install(c, root, h, [pkg], "/usr/bin/apt-get")
        if agent_up:
            self.at(c.t + r.randrange(500, 3000), self._b_ossec, h, "506", "")
            self.at(c.t + r.randrange(5000, 15000), self._b_ossec, h, "503", "")
            c.adv(15, 30)
        self.sudo_close(c, a)
        if h.is_manager and any(p[0] == "wazuh-agent" for p in mine):
            self.sudo(c, a, ["systemctl", "restart", "wazuh-manager"], dur=(5, 20))
            self.at(c.t, self._b_ossec, h, "502", "")
            c.adv(5, 20)
        if kernel:
            self.sudo(c, a, ["reboot"], dur=(0.5, 2))
            if not h.is_manager:
                self.at(c.t + r.randrange(10_000, 40_000), self._b_ossec, h, "506", "")
                self.at(c.t + r.randrange(70_000, 150_000), self._b_ossec, h, "503", "")
            else:
                self.at(c.t + r.randrange(70_000, 150_000), self._b_ossec, h, "502", "")
            c.adv(90, 200)
            return
        self.ssh_logout(c, a)

    def _unattended(self, d: int, day_t: int, r: random.Random) -> None:
        """unattended-upgrades (06:00 + up to an hour) installs a security fix now and then."""
        for h in self.hosts:
            if r.random() >= (0.5 if h.role == "workstation" else 0.3):
                continue
            # workstations are off at 06:00: anacron runs the timer once the developer boots up
            hour = 8.6 if h.role == "workstation" else 6
            c = Cursor(day_t + int(hour * HOUR_MS) + r.randrange(HOUR_MS), r)
            a = self.timer_actor(c, h)
            dl = self.run(c, a, ["/usr/lib/apt/apt.systemd.daily", "install"], path="/usr/lib/apt/apt.systemd.daily")
            uu = self.run(c, a, ["/usr/bin/python3", "/usr/bin/unattended-upgrade"], path="/usr/bin/unattended-upgrade",
                          ppid=dl, gap=(5, 40))
            a.pid = uu
            a.exe = "/usr/bin/python3.8"
            self._dpkg_install(c, a, h, self._security_pkgs(r, h, 1, 2), "/usr/bin/python3.8")

    def _onboarding(self, d: int, day_t: int, r: random.Random) -> None:
        """A new admin joins: accounts created everywhere by ansible, then her first logins and sudo."""
        servers = [h for h in self.hosts if h.role != "workstation"]
        if not servers:
            return
        t = day_t + 10 * HOUR_MS + r.randrange(60 * MIN_MS)
        uid = ADMIN_UID[NEW_ADMIN]

        def create(hc: Cursor, h: Host, root: Actor, py: int) -> None:
            ua = self.run(hc, root, ["useradd", "-m", "-s", "/bin/bash", "-G", "sudo", "-c", "Erin Example", NEW_ADMIN],
                          ppid=py, gap=(0.01, 0.05))
            h.add_user(NEW_ADMIN, uid, uid, f"/home/{NEW_ADMIN}")
            self.syslog(hc.t, h, "5901", "useradd", ua, f"new group: name={NEW_ADMIN}, GID={uid}", {}, None)
            self.syslog(hc.t + 2, h, "5902", "useradd", ua,
                        f"new user: name={NEW_ADMIN}, UID={uid}, GID={uid}, home=/home/{NEW_ADMIN}, shell=/bin/bash, "
                        f"from=none", {}, None)
            who = (0, 0, 0, root.auid, ua, py, "/usr/sbin/useradd", "/usr/bin/python3.8", "/root", "/root")
            for f in ("/etc/group", "/etc/gshadow", "/etc/passwd", "/etc/shadow", "/etc/group-", "/etc/gshadow-",
                      "/etc/passwd-", "/etc/shadow-"):
                self.fim(hc, h, f, "modify", who, new_inode=True)
                hc.t += r.randrange(2, 30)
            for f in (".bashrc", ".profile", ".bash_logout"):
                self.fim(hc, h, f"/home/{NEW_ADMIN}/{f}", "add", who, owner=NEW_ADMIN, key=f"skel|{f}")
            hc.adv(0.3, 2)
            whop = (0, 0, 0, root.auid, py, root.pid, "/usr/bin/python3.8", "/usr/bin/dash", "/root", "/root")
            self.fim(hc, h, f"/home/{NEW_ADMIN}/.ssh/authorized_keys", "add", whop, owner=NEW_ADMIN,
                     perm="rw-------", size=103)

        self._ansible_run(Cursor(t, r), "alice", "users.yml", hook=create)
        for h in self.hosts:
            if h.role != "workstation":
                self.fts_login.discard((NEW_ADMIN, h.name))
        c = Cursor(t + r.randrange(40 * MIN_MS, 90 * MIN_MS), r)
        self._admin_session(c, NEW_ADMIN, src=self.office_ip[NEW_ADMIN], task="check")
        c.adv(600, 3600)
        self._admin_session(c, NEW_ADMIN, src=self.office_ip[NEW_ADMIN], task="root_shell")

    def _oddities(self, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        """Rare but benign: the things that make a naive detector cry wolf."""
        p = self.periodic
        servers = self._servers()
        webs = self.by_role.get("web") or []
        wss = self.by_role.get("workstation") or []
        if servers and r.random() < 0.25 * p:  # an admin installs a tool
            h = r.choice(servers)
            tool = r.choice(TOOLS)
            c = Cursor(self.office_t(r, day_t, weekend), r)
            adm = r.choice(ADMINS)
            a = self.ssh_login(c, h, adm, self.vpn_ip[adm] if not self.by_role.get("bastion") else self.by_role["bastion"][0].ip)
            root, _ = self.sudo_open(c, a, ["apt-get", "install", "-y", tool[0]])
            root.pid = self.run(c, root, ["apt-get", "install", "-y", tool[0]], gap=(2, 10))
            root.exe = "/usr/bin/apt-get"
            self._dpkg_install(c, root, h, [tool], "/usr/bin/apt-get", new=True)
            self.sudo_close(c, a)
            self.ssh_logout(c, a)
        if webs and r.random() < 0.15 * p:  # hotfix deployed late in the evening
            self._deploy(Cursor(day_t + 21 * HOUR_MS + r.randrange(150 * MIN_MS), r))
        if servers and r.random() < 0.2 * p:  # on-call at night: restart a service after a page
            adm = r.choice(("dave", "bob"))
            c = Cursor(day_t + HOUR_MS + r.randrange(4 * HOUR_MS), r)
            tgt = r.choice(webs or servers)
            self._admin_session(c, adm, src=self.vpn_ip[adm], targets=[tgt],
                                task=("nginx_reload" if tgt.web == "nginx" else "apache_reload") if tgt.web else "check")
        if self.by_role.get("bastion") and r.random() < 0.05 * p:  # an admin adds a new key of hers
            adm = r.choice(ADMINS)
            b = self.by_role["bastion"][0]
            c = Cursor(self.office_t(r, day_t, weekend), r)
            a = self.ssh_login(c, b, adm, self.office_ip[adm])
            self.edit(c, a, f"/home/{adm}/.ssh/authorized_keys",
                      diff=f"1a2\n> ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rand_token(r, 43)} {adm}@laptop-2024\n")
            self.ssh_logout(c, a)
        if wss and r.random() < 0.3 * p and not weekend:  # a developer checks a port with netcat
            h = r.choice(wss)
            c = Cursor(self.office_t(r, day_t), r)
            a = Actor(h, h.owner, auid=1000, ses=h.next_ses(), tty="pts/2", cwd=f"/home/{h.owner}", pid=h.next_pid(r))
            db = (self.by_role.get("db") or self.hosts)[0]
            self.run(c, a, ["nc", "-zv", db.ip, "5432"], gap=(3, 30))
            self.run(c, a, ["nc", "-zv", "-w", "2", db.ip, "22"], gap=(3, 30))
        if webs and r.random() < 0.1 * p:  # an admin empties a log that grew too big
            h = r.choice(webs)
            adm = r.choice(ADMINS)
            c = Cursor(self.office_t(r, day_t, weekend), r)
            a = self.ssh_login(c, h, adm, (self.by_role.get("bastion") or [h])[0].ip)
            log = "/var/log/nginx/error.log" if h.web == "nginx" else "/var/log/apache2/error.log"
            self.sudo(c, a, ["truncate", "-s", "0", log])
            self.at(c.t + r.randrange(1000, 9000), self._b_ossec, h, "592", log)
            self.ssh_logout(c, a)
        dbs = self.by_role.get("db") or servers
        if dbs and r.random() < 0.05 * p:  # root's crontab edited by an admin
            h = r.choice(dbs)
            adm = r.choice(ADMINS)
            c = Cursor(self.office_t(r, day_t, weekend), r)
            a = self.ssh_login(c, h, adm, (self.by_role.get("bastion") or [h])[0].ip)
            root, _ = self.sudo_open(c, a, ["crontab", "-e"])
            ct = self.run(c, root, ["crontab", "-e"], gap=(20, 120))
            self.fim(c, h, "/var/spool/cron/crontabs/root", "modify",
                     (0, 0, 0, a.auid, ct, root.pid, "/usr/bin/crontab", "/usr/bin/sudo", a.cwd, a.cwd),
                     new_inode=True, diff="3c3\n< 30 1 * * * /usr/local/bin/pg-backup.sh\n---\n> 45 1 * * * /usr/local/bin/pg-backup.sh\n")
            self.syslog(c.t, h, "2833", "crontab", ct, "(root) REPLACE (root)", {}, None, "/var/log/syslog")
            self.sudo_close(c, a)
            self.ssh_logout(c, a)
        if webs and r.random() < 0.05 * p:  # the deploy user edits its own crontab
            h = r.choice(webs)
            c = Cursor(self.office_t(r, day_t, weekend), r)
            a = self.ssh_login(c, h, "deploy", self.vpn_ip["alice"])
            ct = self.run(c, a, ["crontab", "-e"], gap=(20, 120))
            self.fim(c, h, "/var/spool/cron/crontabs/deploy", "modify",
                     (1500, 1500, 1500, 1500, ct, a.pid, "/usr/bin/crontab", "/usr/bin/bash", a.cwd, a.cwd),
                     new_inode=True, diff="2a3\n> 0 3 * * 0 cd /var/www/app/current && php bin/console cache:clear\n")
            self.syslog(c.t, h, "2832", "crontab", ct, "(deploy) REPLACE (deploy)", {}, None, "/var/log/syslog")
            self.ssh_logout(c, a)
        if wss and r.random() < 0.04 * p:  # curl | bash installer on a workstation
            h = r.choice(wss)
            c = Cursor(self.office_t(r, day_t), r)
            a = Actor(h, h.owner, auid=1000, ses=h.next_ses(), tty="pts/1", cwd=f"/home/{h.owner}", pid=h.next_pid(r))
            self.run(c, a, ["curl", "-fsSL", "https://deb.nodesource.com/setup_18.x"], gap=(0.1, 1))
            root, _ = self.sudo_open(c, a, ["-E", "bash", "-"], command="/usr/bin/bash -")
            bp = self.run(c, root, ["bash", "-"], gap=(0.5, 2))
            for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "gnupg"], ["gpg", "--dearmor"]):
                self.run(c, root, argv, ppid=bp, gap=(1, 10))
            self.fim(c, h, "/etc/apt/sources.list.d/nodesource.list", "add", None, size=56)
            self.sudo_close(c, a)
