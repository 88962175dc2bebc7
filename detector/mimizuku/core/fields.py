"""Where things live in a Wazuh alert: one place that knows the alert layout.

Standard library only: the integration client, the event sink and the detectors all read
alerts through these helpers, so a change of layout (Wazuh 5, indexer exports) is made here once.
Every helper tolerates missing or oddly typed fields and returns ``None``/empty instead of raising.
"""
from __future__ import annotations

import datetime
import ipaddress
from functools import lru_cache
from typing import Any, Dict, List, Optional, Tuple

#: The rule group and ``data.integration`` value that mark the plugin's own events.
OWN_NAME = "mimizuku"
#: The alert ``location`` of every event the plugin injects, and only of those (issue 17 item 3):
#: the queue socket's ``1:mimizuku:`` (also ``[<id>] (<agent>) <ip>->mimizuku``: the alert keeps
#: what follows ``->``), the manager API's ``POST /events`` (``API-Webhook``, set by the manager)
#: and the nightly job's command wodle (``command_<tag>``). A JSON line an agent ships has its
#: file's path there, so writing ``"integration": "mimizuku"`` into a log does not make it ours.
OWN_LOCATIONS = frozenset({OWN_NAME, "API-Webhook", "command_" + OWN_NAME})

FIM_RULES = frozenset({"550", "553", "554"})
COMMAND_RULES = frozenset({"80792"})
SUDO_RULES = frozenset({"5402"})

_UID_MARK = ' UID="'
_AUID_MARK = ' AUID="'
#: The audit "unset" login uid / session id ((uint32)-1): a process that never logged in.
_AUDIT_UNSET = frozenset({"4294967295", "-1", "unset"})
_ARG_KEYS = tuple(f"a{i}" for i in range(64))


def dig(d: Any, *keys: str) -> Any:
    """``d[k1][k2]…``, or None when any step is missing or not a mapping."""
    try:
        for k in keys:
            d = d[k]
        return d
    except (KeyError, TypeError, IndexError):
        return None


_get = dig


def _str(v: Any) -> Optional[str]:
    if v is None:
        return None
    if isinstance(v, str):
        return v if v != "" else None
    if isinstance(v, (int, float, bool)):
        return str(v)
    return None


def is_alert(a: Any) -> bool:
    """An alert is a JSON object with a ``rule`` object (integratord skips anything else)."""
    return isinstance(a, dict) and isinstance(a.get("rule"), dict)


def is_own_event(a: Dict[str, Any]) -> bool:
    """True for events the plugin itself injected (feedback loop guard): marked as ours (rule
    group or ``data.integration``) AND at one of :data:`OWN_LOCATIONS`. The mark alone is text
    anyone can log; such an alert is scored like any other instead of being skipped unseen."""
    if location(a) not in OWN_LOCATIONS:
        return False
    groups = _get(a, "rule", "groups")
    if isinstance(groups, list) and OWN_NAME in groups:
        return True
    return _get(a, "data", "integration") == OWN_NAME


def own_event_query() -> Dict[str, Any]:
    """:func:`is_own_event` as an indexer (OpenSearch) query clause, for a ``must_not``: the
    server leaves out what the reader would drop, and nothing more."""
    marked = {"bool": {"should": [{"term": {"rule.groups": OWN_NAME}}, {"term": {"data.integration": OWN_NAME}}],
                       "minimum_should_match": 1}}
    return {"bool": {"filter": [{"terms": {"location": sorted(OWN_LOCATIONS)}}, marked]}}


def alert_id(a: Dict[str, Any]) -> Optional[str]:
    return _str(a.get("id")) or _str(a.get("_id"))


def timestamp(a: Dict[str, Any]) -> Optional[str]:
    """The alert time as written by Wazuh (``timestamp``, or ``@timestamp`` in exports)."""
    return _str(a.get("timestamp")) or _str(a.get("@timestamp"))


def rule_id(a: Dict[str, Any]) -> Optional[str]:
    try:
        v = a["rule"]["id"]
    except (KeyError, TypeError, IndexError):
        return None
    return v if isinstance(v, str) and v else _str(v)


def rule_level(a: Dict[str, Any]) -> int:
    try:
        return int(_get(a, "rule", "level") or 0)
    except (TypeError, ValueError):
        return 0


def rule_groups(a: Dict[str, Any]) -> List[str]:
    g = _get(a, "rule", "groups")
    return [x for x in g if isinstance(x, str)] if isinstance(g, list) else []


#: groups of Wazuh's own (``ossec``) alerts that report more than the agent's or manager's life
#: cycle: file integrity, rootcheck, and what Wazuh classes as an attack (592, a log shrinking)
_NOT_LIFECYCLE = frozenset({"syscheck", "rootcheck", "attacks"})


def is_lifecycle(groups) -> bool:
    """Whether an alert of these rule groups is the Wazuh agent's or manager's own life cycle
    (started, stopped, a log rotated: group ``ossec`` and none of ``_NOT_LIFECYCLE``)."""
    if "ossec" not in groups:   # most alerts: no set built (the lineage asks for every alert)
        return False
    return not _NOT_LIFECYCLE.intersection(groups)


def rule_description(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "rule", "description"))


def agent_id(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "agent", "id"))


def agent_name(a: Dict[str, Any]) -> Optional[str]:
    try:
        v = a["agent"]["name"]
    except (KeyError, TypeError, IndexError):
        return None
    return v if isinstance(v, str) and v else _str(v)


def agent_ip(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "agent", "ip"))


def location(a: Dict[str, Any]) -> Optional[str]:
    return _str(a.get("location"))


# --- file integrity -------------------------------------------------------------------------

def is_fim(a: Dict[str, Any]) -> bool:
    return isinstance(a.get("syscheck"), dict) and file_path(a) is not None


def file_path(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "syscheck", "path"))


def file_event(a: Dict[str, Any]) -> Optional[str]:
    ev = _str(_get(a, "syscheck", "event"))
    if ev:
        return ev
    return {"550": "modified", "553": "deleted", "554": "added"}.get(rule_id(a) or "")


def file_account(a: Dict[str, Any]) -> Tuple[Optional[str], Any]:
    """``(name, uid)`` of who changed the file: whodata effective user, else user, else login
    user, else the owner after; ``(None, None)`` without ``syscheck``."""
    sc = a.get("syscheck")
    if not isinstance(sc, dict):
        return None, None
    for who in ("effective_user", "user", "login_user"):
        name = _str(_get(sc, "audit", who, "name"))
        if name:
            return name, _get(sc, "audit", who, "id")
    return _str(sc.get("uname_after")), sc.get("uid_after")


def file_user(a: Dict[str, Any]) -> Optional[str]:
    """Who changed the file (see :func:`file_account`)."""
    return file_account(a)[0]


def file_process(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "syscheck", "audit", "process", "name"))


# --- commands ---------------------------------------------------------------------------------

def is_command(a: Dict[str, Any]) -> bool:
    rid = rule_id(a)
    if rid in COMMAND_RULES:
        audit = _get(a, "data", "audit")
        return isinstance(audit, dict) and bool(
            (isinstance(audit.get("execve"), dict) and audit["execve"]) or _str(audit.get("command"))
            or _str(audit.get("exe")) or _str(_get(a, "data", "command")))
    if rid in SUDO_RULES:
        return _str(_get(a, "data", "command")) is not None
    return False


def command_argv(a: Dict[str, Any]) -> List[str]:
    """The command's argument vector: ``data.audit.execve.a0..aN`` in numeric order."""
    execve = _get(a, "data", "audit", "execve")
    if isinstance(execve, dict) and execve:
        # usual case: a0, a1, … (and argc) and nothing else
        fast = []
        for key in _ARG_KEYS:
            v = execve.get(key)
            if not isinstance(v, str) or not v:
                break
            fast.append(v)
        if fast and len(fast) == len(execve) - ("argc" in execve):
            return fast
        items = []
        for k, v in execve.items():
            if not (isinstance(k, str) and len(k) > 1 and k[0] == "a" and k[1:].isdigit() and k[1:].isascii()):
                continue
            sv = _str(v)
            if sv is not None:
                # numeric order without int(): an index of 5,000 digits is past Python's limit
                # for integer conversion (ValueError), and a bad key must not fail a run
                digits = k[1:].lstrip("0") or "0"
                items.append(((len(digits), digits), sv))
        items.sort()
        if items:
            return [v for _, v in items]
    return []


def command_line(a: Dict[str, Any]) -> Optional[str]:
    argv = command_argv(a)
    if argv:
        return " ".join(argv)
    return (
        _str(_get(a, "data", "command"))
        or _str(_get(a, "data", "audit", "command"))
        or _str(_get(a, "data", "audit", "exe"))
    )


def command_exe(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "data", "audit", "exe"))


def command_user(a: Dict[str, Any]) -> Optional[str]:
    """Who ran it: enriched ``UID="name"`` in full_log, sudo's srcuser, else the audit uid."""
    if rule_id(a) in SUDO_RULES:
        return _str(_get(a, "data", "srcuser")) or _str(_get(a, "data", "dstuser"))
    name = _enriched_name(a, _UID_MARK)
    if name:
        return name
    return _str(_get(a, "data", "audit", "uid")) or _str(_get(a, "data", "audit", "auid"))


def _enriched_name(a: Dict[str, Any], mark: str) -> Optional[str]:
    """A user name auditd's enrichment wrote into ``full_log`` (``UID="bob"``), or None."""
    full_log = a.get("full_log")
    if isinstance(full_log, str):
        i = full_log.find(mark)
        if i >= 0:
            start = i + len(mark)
            end = full_log.find('"', start, start + 65)
            if end > start:
                return full_log[start:end]
    return None


def command_run_as(a: Dict[str, Any]) -> Optional[str]:
    if rule_id(a) in SUDO_RULES:
        return _str(_get(a, "data", "dstuser"))
    return _str(_get(a, "data", "audit", "euid"))


# --- who ran it, in which session, from which process ---------------------------------------
# These tie alerts to each other (mimizuku.engine.correlate): a command to its login session, a file
# change to the process that made it, a process to its parent.

def login_user(a: Dict[str, Any]) -> Optional[str]:
    """The user who logged in (audit AUID, whodata ``login_user``): it survives ``sudo``/``su``."""
    if "syscheck" in a:
        u = _str(_get(a, "syscheck", "audit", "login_user", "name"))
        if u:
            return u
    audit = _get(a, "data", "audit")
    if not isinstance(audit, dict):
        return None
    name = _enriched_name(a, _AUID_MARK)
    if name:
        return None if name == "unset" else name
    auid = _str(audit.get("auid"))
    return None if auid in _AUDIT_UNSET else auid


def audit_session(a: Dict[str, Any]) -> Optional[str]:
    """The audit login session of a command; None for processes outside any login (daemons)."""
    ses = _str(_get(a, "data", "audit", "session"))
    return None if ses is None or ses in _AUDIT_UNSET else ses


def process_ids(a: Dict[str, Any]) -> Optional[tuple]:
    """``(pid, ppid)`` of the process behind a command (audit) or a file change (whodata)."""
    if "syscheck" in a:
        proc = _get(a, "syscheck", "audit", "process")
        if isinstance(proc, dict):
            pid = _str(proc.get("id"))
            if pid:
                return pid, _str(proc.get("ppid"))
    audit = _get(a, "data", "audit")
    if isinstance(audit, dict):
        pid = _str(audit.get("pid"))
        if pid:
            return pid, _str(audit.get("ppid"))
    return None


# --- users and addresses ----------------------------------------------------------------------

def src_ip(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "data", "srcip")) or _str(_get(a, "data", "src_ip"))


#: the most of a requested URL a record keeps (a request line can be as long as the server allows)
MAX_URL_CHARS = 1024


def web_url(a: Dict[str, Any]) -> Optional[str]:
    """The URL a web access log line requested (Wazuh's web-accesslog decoder: ``data.url``),
    at most ``MAX_URL_CHARS`` characters."""
    u = _str(_get(a, "data", "url"))
    return u[:MAX_URL_CHARS] if u else None


def src_user(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "data", "srcuser"))


def dst_user(a: Dict[str, Any]) -> Optional[str]:
    return _str(_get(a, "data", "dstuser"))


def any_user(a: Dict[str, Any]) -> Optional[str]:
    """The most specific user name the alert carries, whatever its source."""
    if "syscheck" in a and is_fim(a):
        u = file_user(a)
        if u:
            return u
    data = a.get("data")
    if not isinstance(data, dict):
        return None
    if is_command(a):
        u = command_user(a)
        if u:
            return u
    return (
        src_user(a)
        or dst_user(a)
        or _str(_get(a, "data", "user"))
        or _str(_get(a, "data", "win", "eventdata", "targetUserName"))
        or _str(_get(a, "data", "win", "eventdata", "subjectUserName"))
    )


def ip_class(ip: Optional[str]) -> str:
    """A coarse class of an address: none, loopback, private, link-local, multicast, public, invalid."""
    if not ip:
        return "none"
    return _ip_class(ip)


@lru_cache(maxsize=65536)
def _ip_class(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip.strip().split("%")[0])
    except ValueError:
        return "invalid"
    if addr.is_loopback:
        return "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.is_private:
        return "private"
    return "public"


def ids_signature(a: Dict[str, Any]) -> Optional[str]:
    """The IDS signature of a Suricata/Snort alert (its identity: the rule id is generic)."""
    sig = _str(_get(a, "data", "alert", "signature_id")) or _str(_get(a, "data", "alert", "signature"))
    if sig:
        return sig
    groups = rule_groups(a)
    if "suricata" in groups or "ids" in groups:
        return rule_description(a)  # Wazuh puts the signature into the description
    return None


def win_event(a: Dict[str, Any]) -> Optional[str]:
    """``provider:eventID`` of a Windows event, if the alert is one."""
    system = _get(a, "data", "win", "system")
    if not isinstance(system, dict):
        return None
    eid = _str(system.get("eventID"))
    prov = _str(system.get("providerName"))
    if eid is None and prov is None:
        return None
    return f"{prov or ''}:{eid or ''}"


def win_command_line(a: Dict[str, Any]) -> Optional[str]:
    """A Windows event's command line or PowerShell script block (Sysmon 1, Security 4688,
    PowerShell 4104), or None."""
    ev = dig(a, "data", "win", "eventdata")
    if not isinstance(ev, dict):
        return None
    for k in ("commandLine", "CommandLine", "scriptBlockText", "ScriptBlockText"):
        v = _str(ev.get(k))
        if v:
            return v
    return None


def key_fields(a: Dict[str, Any]) -> Dict[str, str]:
    """The fields a person wants to see next to an anomaly (only those present)."""
    out: Dict[str, str] = {}
    if "syscheck" in a and is_fim(a):
        out["path"] = file_path(a)
        out["event"] = file_event(a)
        out["process"] = file_process(a)
    if isinstance(a.get("data"), dict):
        if is_command(a):
            out["command"] = command_line(a)
        out["srcip"] = src_ip(a)
        out["url"] = web_url(a)
        out["srcuser"] = src_user(a)
        out["dstuser"] = dst_user(a)
    out["user"] = any_user(a)
    out["login_user"] = login_user(a)
    out["session"] = audit_session(a)
    ids = process_ids(a)
    if ids:
        out["pid"], out["ppid"] = ids
    return {k: v for k, v in out.items() if v is not None}


# --- time -------------------------------------------------------------------------------------

@lru_cache(maxsize=4096)
def _day_epoch(date: str) -> Optional[int]:
    try:
        y, m, d = int(date[0:4]), int(date[5:7]), int(date[8:10])
        # days since epoch (civil calendar), no timezone: only differences matter here
        return (datetime.date(y, m, d) - datetime.date(1970, 1, 1)).days * 86400
    except (ValueError, TypeError):
        return None


def seconds_and_hour(ts: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """Whole seconds (manager-local clock) and hour of day from a Wazuh timestamp, cheaply."""
    if not ts or len(ts) < 19 or ts[10] not in "T " or ts[13] != ":" or ts[16] != ":":
        return None, None
    day = _day_epoch(ts[:10])
    try:
        h, mi, s = int(ts[11:13]), int(ts[14:16]), int(ts[17:19])
    except ValueError:
        return None, None
    if day is None or not (0 <= h < 24):
        return None, None
    return day + h * 3600 + mi * 60 + s, h


def alert_seconds(alert: Dict[str, Any]) -> Optional[int]:
    """Whole seconds of an alert's timestamp (``seconds_and_hour``), None without a usable one."""
    return seconds_and_hour(timestamp(alert))[0]
