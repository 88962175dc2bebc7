"""What to generate: the fleet's hosts (``HostSpec``, ``default_fleet``) and the options of one run
(``FleetConfig``), with the names every part of the generator shares: the host roles, the episode
kinds, the label key and the time units. Apart from the rest because it is the generator's
public configuration, checked before anything is planned.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import List, Optional, Sequence

ROLES = ("manager", "web", "db", "bastion", "ci", "mail", "workstation")

#: Attack episode kinds, in the order they are planned.
EPISODE_KINDS = (
    "web_shell",
    "reverse_shell",
    "persistence",
    "uid0_user",
    "ssh_key_backdoor",
    "miner",
    "log_wiping",
    "suid_shell",
    "unusual_login_sudo",
    "ssh_bruteforce_success",
    "web_scan_flood",
)

LABEL_KEY = "_label"

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
MIN_MS = 60_000


@dataclass(frozen=True)
class HostSpec:
    """One monitored host. ``agent_id`` is assigned in order ("001", ...) when left empty;
    the manager (role ``manager``) is always agent ``000``."""

    name: str
    role: str
    ip: Optional[str] = None
    agent_id: Optional[str] = None
    #: web role only: ``nginx`` (with php-fpm) or ``apache`` (mod_php).
    web_server: str = "nginx"
    #: workstation role only: the developer who owns it.
    owner: Optional[str] = None


def default_fleet() -> List[HostSpec]:
    """The fleet of the docs: manager, 2 web, db, bastion, 2 CI runners, mail, 2 workstations."""
    return [
        HostSpec("wazuh-manager", "manager", "10.20.1.5", "000"),
        HostSpec("web-01", "web", "10.20.1.11", web_server="nginx"),
        HostSpec("web-02", "web", "10.20.1.12", web_server="apache"),
        HostSpec("db-01", "db", "10.20.1.21"),
        HostSpec("bastion-01", "bastion", "10.20.1.30"),
        HostSpec("ci-runner-01", "ci", "10.20.1.41"),
        HostSpec("ci-runner-02", "ci", "10.20.1.42"),
        HostSpec("mail-01", "mail", "10.20.1.51"),
        HostSpec("dev-ws-01", "workstation", "10.20.10.21", owner="frank"),
        HostSpec("dev-ws-02", "workstation", "10.20.10.22", owner="grace"),
    ]


@dataclass
class FleetConfig:
    """What to generate.

    ``scale`` multiplies the rate of every activity (CI jobs, logins, web traffic, internet
    noise, deploys, uploads...). ``scale=1`` gives about 20,000 alerts per weekday and
    10,000 per weekend day for the default fleet (~240,000 over 14 days); ``scale=5.5`` gives
    ~1,000,000 over 14 days. Periodic work (cron, timers, scans, the weekly patch run) keeps its
    fixed times: below 1 it is thinned in proportion, above 1 it does not grow, so volume is
    linear in ``scale`` up to 1 and slightly below linear above.

    Attacks happen only in the last ``attack_days`` days, so everything before is clean
    training data. ``episodes`` lists the kinds to plant (default: one of each of
    :data:`EPISODE_KINDS`); a kind may be repeated.
    """

    hosts: Optional[List[HostSpec]] = None
    days: int = 14
    start: Optional[date] = None
    seed: int = 0
    scale: float = 1.0
    attack_days: int = 2
    episodes: Optional[Sequence[str]] = None
    attacks: bool = True
    manager_name: str = "wazuh-manager"
    #: weekday (0 = Monday) when admins patch the servers.
    patch_weekday: int = 1

    def resolved_start(self) -> date:
        """``start``, or today (UTC) minus ``days``."""
        if self.start is not None:
            return self.start
        return datetime.now(timezone.utc).date() - timedelta(days=self.days)

    def resolved_hosts(self) -> List[HostSpec]:
        """The hosts with agent ids filled in and the configuration checked."""
        specs = list(self.hosts) if self.hosts is not None else default_fleet()
        if not specs:
            raise ValueError("FleetConfig.hosts is empty: give at least one host")
        out: List[HostSpec] = []
        seen_names = set()
        seen_ids = set()
        next_id = 1
        for spec in specs:
            if not isinstance(spec, HostSpec):
                raise ValueError(f"FleetConfig.hosts: expected HostSpec, got {type(spec).__name__}")
            if spec.role not in ROLES:
                raise ValueError(f"host {spec.name!r}: unknown role {spec.role!r} (known: {', '.join(ROLES)})")
            if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", spec.name or ""):
                raise ValueError(f"host name {spec.name!r} is not a valid hostname")
            if spec.name in seen_names:
                raise ValueError(f"duplicate host name {spec.name!r}")
            seen_names.add(spec.name)
            agent_id = spec.agent_id
            if spec.role == "manager":
                agent_id = "000"
            if agent_id is None:
                while f"{next_id:03d}" in seen_ids or any(s.agent_id == f"{next_id:03d}" for s in specs):
                    next_id += 1
                agent_id = f"{next_id:03d}"
                next_id += 1
            if agent_id in seen_ids:
                raise ValueError(f"duplicate agent id {agent_id!r}")
            seen_ids.add(agent_id)
            ip = spec.ip or f"10.20.2.{len(out) + 10}"
            out.append(HostSpec(spec.name, spec.role, ip, agent_id, spec.web_server, spec.owner))
        if sum(1 for s in out if s.role == "manager") > 1:
            raise ValueError("only one host may have the role 'manager'")
        return out

    def resolved_episodes(self) -> List[str]:
        """The episode kinds to plant, checked."""
        if not self.attacks or self.attack_days <= 0:
            return []
        kinds = list(EPISODE_KINDS) if self.episodes is None else list(self.episodes)
        for k in kinds:
            if k not in EPISODE_KINDS:
                raise ValueError(f"unknown episode kind {k!r} (known: {', '.join(EPISODE_KINDS)})")
        return kinds

    def check(self) -> None:
        if not isinstance(self.days, int) or self.days < 1:
            raise ValueError(f"FleetConfig.days must be an integer >= 1, got {self.days!r}")
        if not isinstance(self.attack_days, int) or self.attack_days < 0:
            raise ValueError(f"FleetConfig.attack_days must be an integer >= 0, got {self.attack_days!r}")
        try:
            scale = float(self.scale)
        except (TypeError, ValueError):
            raise ValueError(f"FleetConfig.scale must be a number, got {self.scale!r}") from None
        if not (scale > 0 and math.isfinite(scale)):
            raise ValueError(f"FleetConfig.scale must be a positive number, got {self.scale!r}")
        if not (0 <= int(self.patch_weekday) <= 6):
            raise ValueError("FleetConfig.patch_weekday must be 0..6")
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", self.manager_name or ""):
            raise ValueError(f"manager_name {self.manager_name!r} is not a valid hostname")
        self.resolved_hosts()
        self.resolved_episodes()
