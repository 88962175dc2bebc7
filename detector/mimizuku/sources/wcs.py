"""Wazuh 5.x events (Wazuh Common Schema) as the alerts the detectors read.

Wazuh 5.0 has no alerts.json and no analysisd rules: its engine decodes every log into a document
of the Wazuh Common Schema (ECS 9.1 plus ``wazuh.*``) and indexes it into ``wazuh-events-v5-<category>-*``;
detection (Sigma rules) writes findings into ``wazuh-findings-v5-*``. The detectors, and every
accessor in :mod:`mimizuku.core.fields`, read the 4.x alert layout. :func:`to_alert` turns one WCS
document into that layout, so nothing downstream changes (the one seam the architecture keeps
for this: "Wazuh 5.0 replaces rooms 1–2 of the travel above, not the engine").

Sources of the field names (read, not guessed):
* wazuh/wazuh-indexer-plugins, branch 5.0.0: ``wcs/stateless/events/main/docs/fields.csv`` (the
  events template: ``@timestamp``, ``wazuh.agent.{id,name,host.ip}``, ``wazuh.protocol.location``,
  ``wazuh.integration.{name,category,decoders}``, ``wazuh.cluster.node``, ``event.*``, ``file.*``,
  ``process.*``, ``user.{name,id,effective,target}``, ``source.ip``) and
  ``wcs/stateless/events/findings/docs/fields.csv`` (findings: ``rule.{id,title,level,tags}``).
* wazuh/wazuh, branch 5.0.0: ``docs/ref/modules/engine/README.md`` (a processed event: the agent
  under ``wazuh.agent``, the log's origin in ``wazuh.protocol.location``) and
  ``src/syscheckd/src/file/file.c`` (FIM's stateless event: ``file.path``, ``event.type`` one of
  ``added``, ``modified``, ``deleted``; who-data under ``file.audit``).

What a 5.x event becomes: the FIM detector's alerts (``syscheck``; rule 550/553/554 by change
type, as 4.x's rules would have said), the command detector's audited commands (``data.audit``:
execve arguments from ``process.args``; rule 80792) and sudo (``data.srcuser``/``dstuser``,
``data.command``; rule 5402); every event, for the context detector, gets a rule id naming what
decoded it (the last decoder and ``event.action``), a level from ``event.severity`` (or a
finding's ``rule.level``) and groups from the integration and ``event.category``.
Standard library only; tolerant of missing or oddly typed fields (``None``/absent, never raises).
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

__all__ = ["to_alert", "is_wcs", "hit_alert", "schema_of_index", "SCHEMAS", "WCS_READ_DEFAULTS", "LEVELS"]

#: Document layouts an indexer source can read: ``wazuh-4`` (wazuh-alerts-4.x-*: already alerts)
#: and ``wcs`` (Wazuh 5.x events, mapped by :func:`to_alert`).
SCHEMAS = ("wazuh-4", "wcs")

#: How the indexer is read for WCS documents when not configured otherwise: the time is
#: ``@timestamp`` (there is no ``timestamp``) and, with no per-manager alert id, the document
#: ``_id`` breaks ties in the sort (unique per index).
WCS_READ_DEFAULTS = {"time_field": "@timestamp", "tiebreakers": ("_id",)}

#: A finding's keyword severity (rules-4x-to-5x.md: informational, low, medium, high, critical) as
#: a 4.x level, so the context detector's level feature keeps its scale.
LEVELS = {"informational": 2, "low": 5, "medium": 8, "high": 12, "critical": 15}

#: Index name prefixes of Wazuh 5.x's WCS documents (rules-4x-to-5x.md: events and findings).
WCS_INDEX_PREFIXES = ("wazuh-events-", "wazuh-findings-")


def schema_of_index(pattern: str) -> str:
    """``wcs`` for an index pattern of 5.x events or findings, else ``wazuh-4`` (the alerts): so
    ``--follow-indexer https://indexer:9200/wazuh-events-v5-*`` needs no other setting."""
    names = [p.strip() for p in (pattern or "").split(",") if p.strip()]
    return "wcs" if names and all(p.startswith(WCS_INDEX_PREFIXES) for p in names) else "wazuh-4"


FIM_RULE_BY_TYPE = {"added": "554", "creation": "554", "modified": "550", "change": "550",
                    "deleted": "553", "deletion": "553"}


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _s(v: Any) -> Optional[str]:
    """A scalar as text (the first of a list: ECS allows arrays for most keywords)."""
    if isinstance(v, list):
        v = v[0] if v else None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
    return v if isinstance(v, str) and v else None


def _strs(v: Any) -> List[str]:
    if isinstance(v, str):
        return [v] if v else []
    return [x for x in v if isinstance(x, str) and x] if isinstance(v, list) else []


def _first(doc: Dict[str, Any], *paths: str) -> Optional[str]:
    for p in paths:
        v = _s(_get(doc, *p.split(".")))
        if v is not None:
            return v
    return None


def is_wcs(doc: Any) -> bool:
    """A WCS document (``wazuh.agent`` or ``wazuh.integration``), not a 4.x alert (``rule.groups``)."""
    return isinstance(doc, dict) and isinstance(doc.get("wazuh"), dict) and not isinstance(_get(doc, "rule", "groups"), list)


def _fim(doc: Dict[str, Any], alert: Dict[str, Any]) -> Optional[str]:
    """``syscheck`` from a FIM event; the 4.x rule id of its change type, or None."""
    path = _s(_get(doc, "file", "path"))
    kinds = [k.lower() for k in _strs(_get(doc, "event", "type")) + _strs(_get(doc, "event", "action"))]
    module = (_first(doc, "wazuh.integration.name", "event.module") or "").lower()
    change = next((k for k in kinds if k in FIM_RULE_BY_TYPE), None)
    if not path or change is None or not (module in ("fim", "syscheck") or "file" in _strs(_get(doc, "event", "category"))):
        return None
    sc: Dict[str, Any] = {"path": path, "event": {"creation": "added", "change": "modified",
                                                  "deletion": "deleted"}.get(change, change)}
    owner, uid = _first(doc, "file.owner"), _first(doc, "file.uid")
    if owner:
        sc["uname_after"] = owner
    if uid:
        sc["uid_after"] = uid
    audit: Dict[str, Any] = {}
    who = _get(doc, "file", "audit")  # FIM's who-data as the agent sends it (file.c, events.c)
    if isinstance(who, dict):
        pairs = (("user", "user_name", "user_id"), ("effective_user", "effective_name", "effective_uid"),
                 ("login_user", "audit_name", "audit_uid"))
        for key, name, ident in pairs:
            if _s(who.get(name)):
                audit[key] = {"name": _s(who.get(name)), "id": _s(who.get(ident))}
        if _s(who.get("process_name")) or _s(who.get("process_id")):
            audit["process"] = {"name": _s(who.get("process_name")), "id": _s(who.get("process_id")),
                                "ppid": _s(who.get("ppid"))}
    for key, prefix in (("user", "user"), ("effective_user", "user.effective")):
        name = _first(doc, prefix + ".name")
        if name and key not in audit:
            audit[key] = {"name": name, "id": _first(doc, prefix + ".id")}
    if "process" not in audit and _first(doc, "process.name", "process.pid"):
        audit["process"] = {"name": _first(doc, "process.name"), "id": _first(doc, "process.pid"),
                            "ppid": _first(doc, "process.parent.pid")}
    if audit:
        sc["audit"] = audit
    alert["syscheck"] = sc
    return FIM_RULE_BY_TYPE[change]


def _command(doc: Dict[str, Any], data: Dict[str, Any]) -> Optional[str]:
    """``data.audit`` / sudo fields from a process event; the 4.x rule id, or None."""
    args = _strs(_get(doc, "process", "args"))
    line = _first(doc, "process.command_line")
    name = (_first(doc, "process.name") or "").rsplit("/", 1)[-1]
    target = _first(doc, "user.target.name", "user.effective.name")
    if name == "sudo" and (line or args) and _first(doc, "user.name"):
        data.update({k: v for k, v in (("srcuser", _first(doc, "user.name")), ("dstuser", target),
                                       ("command", line or " ".join(args))) if v})
        return "5402"
    categories = _strs(_get(doc, "event", "category"))
    if "process" not in categories or not (args or line):
        return None
    audit: Dict[str, Any] = {}
    if args:
        audit["execve"] = {f"a{i}": a for i, a in enumerate(args)}
    else:
        audit["command"] = line
    for key, path in (("exe", "process.executable"), ("uid", "user.name"), ("euid", "user.effective.name"),
                      ("pid", "process.pid"), ("ppid", "process.parent.pid"),
                      ("auid", "process.entry_leader.user.name"), ("session", "process.entry_leader.entity_id")):
        v = _first(doc, path)
        if v:
            audit[key] = v
    if "uid" not in audit and _first(doc, "user.id"):
        audit["uid"] = _first(doc, "user.id")
    data["audit"] = audit
    return "80792"


def to_alert(doc: Dict[str, Any], doc_id: Optional[str] = None) -> Dict[str, Any]:
    """The 4.x alert layout of one WCS document (``_source``); ``doc_id`` is its ``_id``."""
    if not isinstance(doc, dict):
        return {}
    alert: Dict[str, Any] = {}
    ts = _first(doc, "@timestamp", "event.created")
    if ts:
        alert["timestamp"] = ts
    if doc_id:
        alert["id"] = doc_id
    agent = {k: v for k, v in (("id", _first(doc, "wazuh.agent.id", "agent.id")),
                               ("name", _first(doc, "wazuh.agent.name", "agent.name")),
                               ("ip", _first(doc, "wazuh.agent.host.ip", "host.ip"))) if v}
    if agent:
        alert["agent"] = agent
    node = _first(doc, "wazuh.cluster.node")
    if node:
        alert["manager"] = {"name": node}
    where = _first(doc, "wazuh.protocol.location", "log.file.path")
    if where:
        alert["location"] = where
    data: Dict[str, Any] = {}
    for key, path in (("srcip", "source.ip"), ("srcuser", "user.name"), ("dstuser", "user.target.name")):
        v = _first(doc, path)
        if v:
            data[key] = v
    fim_rule = _fim(doc, alert)
    rid = fim_rule or _command(doc, data)
    if fim_rule:  # a file change: who changed it is in syscheck, not a login's users
        data.pop("srcuser", None)
        data.pop("dstuser", None)
    if data:
        alert["data"] = data
    integration = _first(doc, "wazuh.integration.name")
    decoders = _strs(_get(doc, "wazuh", "integration", "decoders"))
    action = _first(doc, "event.action")
    groups = [g for g in (_first(doc, "wazuh.integration.category"), integration) if g]
    groups += [c for c in _strs(_get(doc, "event", "category")) if c not in groups]
    groups += {"550": ["syscheck"], "553": ["syscheck"], "554": ["syscheck"], "80792": ["audit", "audit_command"],
               "5402": ["sudo"]}.get(rid or "", [])
    if rid is None:
        # a finding names its Sigma rule; an event, what decoded it and what happened
        rid = _first(doc, "rule.id") or ":".join(x for x in (decoders[-1] if decoders else integration, action) if x) \
            or "wcs"
    level = LEVELS.get((_first(doc, "rule.level") or "").lower())
    if level is None:
        try:
            level = max(0, min(16, int(_get(doc, "event", "severity"))))
        except (TypeError, ValueError):
            level = 3
    rule: Dict[str, Any] = {"id": rid, "level": level, "groups": groups}
    desc = _first(doc, "rule.title", "rule.description", "event.reason")
    if desc:
        rule["description"] = desc
    alert["rule"] = rule
    return alert


def hit_alert(hit: Dict[str, Any], schema: str = "wazuh-4") -> Optional[Dict[str, Any]]:
    """The alert of one indexer hit: its ``_source`` (4.x; ``timestamp`` filled from
    ``@timestamp`` when missing), or, for ``wcs``, :func:`to_alert` of it. None without a source."""
    src = hit.get("_source") if isinstance(hit, dict) else None
    if not isinstance(src, dict):
        return None
    if schema == "wcs":
        return to_alert(src, _s(hit.get("_id")))
    if "timestamp" not in src and "@timestamp" in src:
        src["timestamp"] = src["@timestamp"]
    return src
