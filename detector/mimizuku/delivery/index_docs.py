"""Scored records as indexer documents: the data stream's template, its retention policy, the ids.

Why a module of its own: what a document looks like (and how it is mapped) is a contract with
whoever queries ``mimizuku-anomalies`` -- dashboards, alerting, an analyst -- and it must not
change with how documents travel (:mod:`mimizuku.delivery.index_sink`). Standard library only.

* **Ids** (:func:`doc_id`): a hash of (manager name, alert id, detector). Documents are written
  with ``op_type=create`` (a data stream takes nothing else), and a ``create`` of an id that is
  already there is answered 409: a resend after a lost answer, a restart or a replayed spool never
  makes a second document.
* **Mapping** (:func:`index_template`): keywords for what is filtered on, ``ip`` only for values
  that are addresses (checked here: one non-address string in an ``ip`` field would have the whole
  document refused), floats for scores, a date for ``@timestamp`` (the alert's own time, in UTC),
  the reasons as text with a keyword copy. The root is ``dynamic: false``: a key a later release
  adds is kept in ``_source`` and cannot make a document fail.
* **Retention** (:func:`ism_policy`): an Index State Management policy that rolls the backing
  index over and deletes it after ``retention_days``. ISM is a plugin; a node without it gets
  the documents anyway, and the sink says that retention is then the operator's job.
"""
from __future__ import annotations

import functools
import hashlib
import ipaddress
import json
import math
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, Mapping, Optional

from mimizuku.core.records import story_agents

__all__ = ["DEFAULT_STREAM", "TEMPLATE_VERSION", "doc_id", "build_document", "encode_document",
           "index_template", "ism_policy", "valid_ip", "utc_timestamp"]

#: the data stream (and template, and ISM policy) name
DEFAULT_STREAM = "mimizuku-anomalies"
#: raised whenever the mapping changes (``_meta.version`` of the template)
TEMPLATE_VERSION = 2  # 2: story.agents (a person's story across hosts)
#: longest keyword indexed (longer values stay in ``_source``; a command line can be long)
KEYWORD_LIMIT = 1024

_KW = {"type": "keyword", "ignore_above": KEYWORD_LIMIT}
_FIELD_NAMES = ("path", "event", "process", "command", "user", "srcip", "url", "srcuser", "dstuser",
                "login_user", "session", "pid", "ppid")


def doc_id(manager: Optional[str], alert_id: Any, detector: Any) -> str:
    """The document's id: the same alert scored again (same manager, same detector) gets the same
    id, so ``create`` refuses it (409) instead of indexing it twice. 32 hex characters."""
    text = "\x1f".join(str(x if x is not None else "") for x in (manager, alert_id, detector))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


@functools.lru_cache(maxsize=8192)
def valid_ip(value: Any) -> Optional[str]:
    """``value`` as an address an ``ip`` field takes, or None (a hostname, ``any``, garbage).
    Memoised: a fleet's agent and source addresses repeat."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


_FORMATS = ("%Y-%m-%dT%H:%M:%S.%f%z", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%d %H:%M:%S%z")


def _parse_iso(text: str) -> Optional[datetime]:
    try:
        return datetime.fromisoformat(text)   # fast; from 3.11 it takes 'Z' and '+0100' too
    except ValueError:
        pass
    if text.endswith("Z"):
        text = text[:-1] + "+0000"
    for fmt in _FORMATS:   # Wazuh's '+0000' on Python < 3.11
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    return None


def utc_timestamp(value: Any) -> Optional[str]:
    """An alert's ``timestamp`` (``2026-11-20T10:00:00.123+0000``, ``...Z``, epoch seconds) as
    ``2026-11-20T10:00:00.123Z``, or None when it is not a time with a zone."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            t = datetime.fromtimestamp(float(value), timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str) and 10 <= len(value) <= 64:
        t = _parse_iso(value.strip())
        if t is None or t.tzinfo is None:
            return None
        t = t.astimezone(timezone.utc)
    else:
        return None
    return t.isoformat(timespec="milliseconds")[:-6] + "Z"   # '+00:00' -> 'Z' (t is in UTC)


def _str(v: Any) -> Optional[str]:
    return None if v is None else str(v)


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _int(v: Any) -> Optional[int]:
    if isinstance(v, bool):
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _some(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def _drop_none(d: Dict[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None and v != {}}


def build_document(record: Mapping[str, Any], manager: Optional[str] = None, *,
                   indexed_at: Optional[str] = None) -> Dict[str, Any]:
    """The document for one scored record (docs/records.md). ``manager``: the manager the alert
    came from (its ``manager.name``), else the record's ``manager``. ``indexed_at``: the
    ``@timestamp`` when the alert's own time cannot be read (then ``source.timestamp`` keeps the
    text as written)."""
    manager = manager or _str(record.get("manager"))
    agent = record.get("agent") if isinstance(record.get("agent"), dict) else {}
    rule = record.get("rule") if isinstance(record.get("rule"), dict) else {}
    fields = record.get("fields") if isinstance(record.get("fields"), dict) else {}
    ts = record.get("timestamp")
    reasons = record.get("reasons")
    scores = record.get("scores") if isinstance(record.get("scores"), dict) else {}
    doc: Dict[str, Any] = {
        "@timestamp": utc_timestamp(ts) or indexed_at or utc_timestamp(datetime.now(timezone.utc).timestamp()),
        "manager": _some({"name": manager}),
        "agent": _some({"id": _str(agent.get("id")), "name": _str(agent.get("name")),
                             "ip": valid_ip(agent.get("ip")), "address": _str(agent.get("ip"))}),
        "rule": _some({"id": _str(rule.get("id")), "level": _int(rule.get("level")),
                            "description": _str(rule.get("description")),
                            "groups": [str(g) for g in rule.get("groups") or [] if g is not None] or None}),
        "source": _some({"alert_id": _str(record.get("id")), "timestamp": _str(ts),
                              "location": _str(record.get("location"))}),
        "mimizuku": _some({
            "score": _number(record.get("score")),
            "score_pct": _int(record.get("score_pct")),
            "threshold": _number(record.get("threshold")),
            "anomaly": bool(record.get("anomaly")),
            "severity": _str(record.get("severity")),
            "detector": _str(record.get("detector")),
            "model_version": _str(record.get("model_version")),
            "reasons": [str(r) for r in reasons] if isinstance(reasons, list) else None,
            "scores": {str(k): f for k, v in scores.items() if (f := _number(v)) is not None} or None,
            "repeat_of": _str(record.get("repeat_of")),
            "related_to": _str(record.get("related_to")),
            "cluster": _int(record.get("cluster")),
        }),
        "fields": {str(k): str(v) for k, v in fields.items() if v is not None and not isinstance(v, (dict, list))},
        "srcip": valid_ip(fields.get("srcip")),
    }
    mitre = record.get("mitre")
    if isinstance(mitre, dict):
        doc["mitre"] = _some({k: _str(mitre.get(k)) for k in ("id", "technique", "tactic", "table")})
    for name, count in (("story", "anomalies"), ("episode", "alerts")):
        obj = record.get(name)
        if isinstance(obj, dict):
            doc[name] = _some({"of": _str(obj.get("of")), "since": _str(obj.get("since")),
                                    count: _int(obj.get(count)), "duration_s": _number(obj.get("duration_s"))})
            named = [a for a in (_str(x) for x in story_agents(obj)) if a] if name == "story" else []
            if named:  # a person's story across hosts
                doc[name]["agents"] = named
    return _drop_none(doc)


def encode_document(doc: Mapping[str, Any]) -> str:
    """One line of JSON (what goes into the bulk body and the spool); orjson when installed (five
    times faster here; :func:`build_document` leaves no NaN for it to turn into null)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover - a runtime dependency, but core-like modules do without
        return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return orjson.dumps(doc).decode("utf-8")


def _mappings() -> Dict[str, Any]:
    float_ = {"type": "float"}
    int_ = {"type": "integer"}
    return {
        "dynamic": False,
        "_meta": {"managed_by": "mimizuku", "version": TEMPLATE_VERSION},
        "dynamic_templates": [
            {"fields_as_keywords": {"path_match": "fields.*", "mapping": dict(_KW)}},
            {"scores_as_floats": {"path_match": "mimizuku.scores.*", "mapping": float_}},
        ],
        "properties": {
            "@timestamp": {"type": "date"},
            "manager": {"properties": {"name": _KW}},
            "agent": {"properties": {"id": _KW, "name": _KW, "ip": {"type": "ip"}, "address": _KW}},
            "rule": {"properties": {"id": _KW, "level": int_, "description": {"type": "text"}, "groups": _KW}},
            "source": {"properties": {"alert_id": _KW, "timestamp": _KW, "location": _KW}},
            "mimizuku": {"properties": {
                "score": float_, "score_pct": int_, "threshold": float_, "anomaly": {"type": "boolean"},
                "severity": _KW, "detector": _KW, "model_version": _KW,
                "reasons": {"type": "text", "fields": {"keyword": dict(_KW)}},
                "scores": {"type": "object", "dynamic": True},
                "repeat_of": _KW, "related_to": _KW, "cluster": int_}},
            "fields": {"type": "object", "dynamic": True,
                       "properties": {n: dict(_KW) for n in _FIELD_NAMES}},
            "srcip": {"type": "ip"},
            "mitre": {"properties": {"id": _KW, "technique": _KW, "tactic": _KW, "table": _KW}},
            "story": {"properties": {"of": _KW, "since": _KW, "anomalies": int_, "duration_s": float_,
                                      "agents": _KW}},
            "episode": {"properties": {"of": _KW, "since": _KW, "alerts": int_, "duration_s": float_}},
        },
    }


def index_template(stream: str = DEFAULT_STREAM, *, shards: int = 1, replicas: Optional[int] = None,
                   priority: int = 200) -> Dict[str, Any]:
    """The body of ``PUT _index_template/<stream>``: a data stream named ``stream`` (its backing
    indices ``.ds-<stream>-NNNNNN``) with the mapping above. ``replicas``: None leaves it to the
    cluster's default (a single-node indexer with 1 replica would stay yellow)."""
    settings: Dict[str, Any] = {"number_of_shards": shards, "refresh_interval": "5s"}
    if replicas is not None:
        settings["number_of_replicas"] = replicas
    return {
        "index_patterns": [stream],
        "data_stream": {},
        "priority": priority,
        "_meta": {"managed_by": "mimizuku", "version": TEMPLATE_VERSION},
        "template": {
            "settings": settings,
            "mappings": _mappings(),
        },
    }


def ism_policy(stream: str = DEFAULT_STREAM, *, retention_days: int = 90, rollover_age: str = "1d",
               rollover_size: str = "10gb") -> Dict[str, Any]:
    """The body of ``PUT _plugins/_ism/policies/<stream>``: roll the stream's write index over
    daily (or at ``rollover_size``), delete a backing index ``retention_days`` after it was
    rolled over. The ``ism_template`` attaches it to every new backing index of the stream."""
    return {"policy": {
        "description": f"mimizuku: keep {stream} documents {retention_days} days",
        "default_state": "hot",
        "states": [
            {"name": "hot",
             "actions": [{"rollover": {"min_index_age": rollover_age, "min_size": rollover_size}}],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{retention_days}d"}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [stream], "priority": 100}],
    }}


def template_fields(template: Mapping[str, Any]) -> Iterable[str]:
    """Dotted names of every mapped field of a template (tests, the bench's checks)."""
    def walk(props: Mapping[str, Any], prefix: str) -> Iterable[str]:
        for k, v in props.items():
            if "properties" in v:
                yield from walk(v["properties"], prefix + k + ".")
            else:
                yield prefix + k
    return walk(template["template"]["mappings"]["properties"], "")
