"""ATT&CK-aware severity: what a new situation looks like, in MITRE ATT&CK's words.

Mimizuku is anomaly-based: an alert is raised because it is new for its entity, never because it
matches a signature. But among new situations some look like an attacker's technique — a reverse
shell, a download piped into a shell, a SUID bit, a miner's pool — and an analyst should see
those first. So this table of technique *indicators* (Linux and Windows) is consulted only for
a situation that a detector already judged new for its entity (``Detector.is_new``); then, and
only then, it

* lifts the detector's calibrated score by ``SCORE_LIFT`` (a tail probability about four times
  smaller: a new situation that also looks like a technique is that much rarer among benign ones),
  which may carry a new situation just under the threshold over it;
* raises the anomaly's severity one band (``low`` -> ``medium`` -> ``high`` -> ``critical``);
* names the technique in the record and the Wazuh event (``mimizuku.mitre.id``, ``technique``,
  ``tactic``), so that a rule of ``mimizuku_rules.xml`` carries it into Wazuh's MITRE views.

A routine situation is never touched, however much it looks like a technique: the backup job's
``crontab -l`` and the admin's daily ``chmod u+s`` on a build artefact stay what they were.

Indicators are plain substrings of the lower-cased text (the command line, the changed path, the
Windows event's command line or script), each an ``all of`` group of ``any of`` lists: matching is
linear in the text whatever an attacker writes (no regular expression sees alert text here). Only
the first ``MAX_TEXT`` characters are read. The table is versioned (``TABLE_VERSION``); the
records carry the version that matched. docs/techniques.md lists it for people.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from mimizuku.core import fields

#: the table's version: written into every record a technique annotates
TABLE_VERSION = "2026.12-1"
#: calibrated-score lift of a new situation that matches a technique (0.1 on the log scale of
#: ``mimizuku.engine.calibration``: a tail probability 10**0.6, about 4, times smaller)
SCORE_LIFT = 0.1
#: characters of a text the indicators read
MAX_TEXT = 4096


class Technique(NamedTuple):
    """One indicator: ATT&CK id, technique and tactic names, where it looks (``command``: a
    command line, Windows ones included; ``path``: a changed file), and ``all_of`` groups of
    ``any_of`` substrings (lower case)."""

    id: str
    technique: str
    tactic: str
    where: str
    all_of: Tuple[Tuple[str, ...], ...]


def _t(tid: str, name: str, tactic: str, where: str, *groups: Sequence[str]) -> Technique:
    return Technique(tid, name, tactic, where, tuple(tuple(g) for g in groups))


#: The table: most specific first (the first match names the alert's technique).
TECHNIQUES: Tuple[Technique, ...] = (
    # -- execution and command and control ---------------------------------------------------
    _t("T1059.004", "Command and Scripting Interpreter: Unix Shell (reverse shell)", "execution",
       "command", ("/dev/tcp/", "/dev/udp/", "nc -e", "ncat -e", "nc.traditional -e", "socat exec:",
                   "socat tcp", "mkfifo /tmp", "0<&196", "sh -i >&", "bash -i >&")),
    _t("T1059.006", "Command and Scripting Interpreter: Python (pty spawn)", "execution",
       "command", ("pty.spawn", "socket.socket(",)),
    _t("T1059.001", "Command and Scripting Interpreter: PowerShell (encoded or hidden)", "execution",
       "command", ("powershell", "pwsh"), ("-encodedcommand", "-enc ", "-e ", "frombase64string",
                                           "-windowstyle hidden", "-w hidden", "downloadstring", "iex(", "iex ")),
    _t("T1105", "Ingress Tool Transfer (download and execute)", "command-and-control",
       "command", ("curl ", "wget ", "fetch ", "tftp ", "certutil -urlcache", "bitsadmin /transfer"),
       ("| sh", "|sh", "| bash", "|bash", "chmod +x", "-o /tmp/", "-o /dev/shm/", "-o /var/tmp/",
        "-urlcache", "/transfer")),
    _t("T1496", "Resource Hijacking (cryptocurrency miner)", "impact",
       "command", ("stratum+tcp://", "stratum+ssl://", "xmrig", "minerd", "cpuminer", "--donate-level",
                   "nicehash", "supportxmr", "nanopool", "monero")),
    # -- privilege escalation and persistence ---------------------------------------------------
    _t("T1548.001", "Abuse Elevation Control Mechanism: Setuid and Setgid", "privilege-escalation",
       "command", ("chmod u+s", "chmod g+s", "chmod +s", "chmod a+s", "chmod 4755", "chmod 4777", "chmod 4750",
                   "chmod 4711", "chmod 6755", "chmod 6777", "chmod 2755")),
    _t("T1136.001", "Create Account: Local Account (uid 0)", "persistence",
       "command", ("useradd", "adduser", "usermod"), ("-u 0", "--uid 0", "-o -u", "-ou 0")),
    _t("T1098.004", "Account Manipulation: SSH Authorized Keys", "persistence",
       "command", ("authorized_keys",)),
    _t("T1098.004", "Account Manipulation: SSH Authorized Keys", "persistence",
       "path", ("/.ssh/authorized_keys",)),
    _t("T1053.003", "Scheduled Task/Job: Cron", "persistence",
       "command", ("crontab ", "/etc/cron", "/var/spool/cron")),
    _t("T1053.003", "Scheduled Task/Job: Cron", "persistence",
       "path", ("/etc/cron", "/var/spool/cron", "/etc/anacrontab")),
    _t("T1543.002", "Create or Modify System Process: Systemd Service", "persistence",
       "path", ("/etc/systemd/system/", "/lib/systemd/system/", "/usr/lib/systemd/system/", "/.config/systemd/user/")),
    _t("T1543.002", "Create or Modify System Process: Systemd Service", "persistence",
       "command", ("systemctl enable", "systemctl daemon-reload"), (".service", "enable")),
    _t("T1574.006", "Hijack Execution Flow: Dynamic Linker Hijacking", "persistence",
       "path", ("/etc/ld.so.preload",)),
    _t("T1548.003", "Abuse Elevation Control Mechanism: Sudo and Sudo Caching", "privilege-escalation",
       "path", ("/etc/sudoers",)),
    _t("T1505.003", "Server Software Component: Web Shell", "persistence",
       "path", ("/var/www/", "/srv/www/", "/usr/share/nginx/", "/inetpub/wwwroot/"),
       (".php", ".phtml", ".jsp", ".jspx", ".asp", ".aspx", ".cgi")),
    _t("T1547.001", "Boot or Logon Autostart Execution: Registry Run Keys", "persistence",
       "command", ("reg add", "reg.exe add", "new-itemproperty", "set-itemproperty"),
       ("\\currentversion\\run",)),
    _t("T1053.005", "Scheduled Task/Job: Scheduled Task", "persistence",
       "command", ("schtasks /create", "schtasks.exe /create", "register-scheduledtask")),
    # -- defence evasion, credential access, impact ---------------------------------------------
    _t("T1070.002", "Indicator Removal: Clear Linux or Mac System Logs", "defense-evasion",
       "command", ("/var/log",), ("rm ", "shred", "truncate", "> /var/log", ">/var/log", "cat /dev/null", "unlink")),
    _t("T1070.003", "Indicator Removal: Clear Command History", "defense-evasion",
       "command", ("history -c", "unset histfile", "histfile=/dev/null", ".bash_history")),
    _t("T1070.001", "Indicator Removal: Clear Windows Event Logs", "defense-evasion",
       "command", ("wevtutil cl", "wevtutil.exe cl", "clear-eventlog")),
    _t("T1564.001", "Hide Artifacts: Hidden Files and Directories (executable in a temporary directory)",
       "defense-evasion", "path", ("/dev/shm/", "/tmp/.", "/var/tmp/.")),
    _t("T1564.001", "Hide Artifacts: Hidden Files and Directories (executable in a temporary directory)",
       "defense-evasion", "command", ("/dev/shm/", "/tmp/.", "/var/tmp/."), ("./", "chmod", "nohup", "exec")),
    _t("T1003.001", "OS Credential Dumping: LSASS Memory", "credential-access",
       "command", ("mimikatz", "sekurlsa", "lsass.dmp", "comsvcs.dll, minidump", "procdump")),
    _t("T1003.008", "OS Credential Dumping: /etc/passwd and /etc/shadow", "credential-access",
       "command", ("/etc/shadow", "unshadow")),
    _t("T1490", "Inhibit System Recovery", "impact",
       "command", ("vssadmin delete shadows", "wbadmin delete", "bcdedit /set", "shadowcopy delete")),
)


def _text_of(alert: Mapping[str, Any], where: str) -> Optional[str]:
    if where == "command":
        text = fields.command_line(alert) if fields.is_command(alert) else None
        if text is None:
            text = fields.win_command_line(alert)
    else:
        text = fields.file_path(alert) if fields.is_fim(alert) else None
    if not text:
        return None
    return text[:MAX_TEXT].lower()


def match(alert: Mapping[str, Any], table: Sequence[Technique] = TECHNIQUES) -> Optional[Technique]:
    """The first technique whose indicator the alert's text holds (None: none does)."""
    texts: Dict[str, Optional[str]] = {}
    for t in table:
        if t.where not in texts:
            texts[t.where] = _text_of(alert, t.where)
        text = texts[t.where]
        if text is not None and all(any(s in text for s in group) for group in t.all_of):
            return t
    return None


def as_record(t: Technique) -> Dict[str, str]:
    """The record's and the event's ``mitre`` object."""
    return {"id": t.id, "technique": t.technique, "tactic": t.tactic, "table": TABLE_VERSION}


def table_rows() -> List[Dict[str, str]]:
    """The table for people (docs, ``mimizuku status``): id, technique, tactic, where."""
    seen, out = set(), []
    for t in TECHNIQUES:
        if t.id not in seen:
            seen.add(t.id)
            out.append({"id": t.id, "technique": t.technique, "tactic": t.tactic})
    return out
