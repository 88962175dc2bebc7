"""The part of the Wazuh 4.x ruleset the generator fires: rule ids with their levels, descriptions,
groups, compliance arrays and MITRE mappings (as analysisd expands them), and decoder names.
Apart because it is data copied from ``ruleset/rules/*.xml`` and changes only when Wazuh's does.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

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


DEC_SSHD = {"parent": "sshd", "name": "sshd"}
DEC_PAM = {"parent": "pam", "name": "pam"}
