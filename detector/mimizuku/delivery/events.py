"""The event Mimizuku sends back into analysisd for a scored alert: location string and payload.

Wazuh's own senders (``integrations/virustotal.py``) write ``1:<location>:<json>`` datagrams to
``queue/sockets/queue``. To keep the event attached to the agent the alert came from, the location
is ``[<id>] (<name>) <ip|any>->mimizuku`` with ``|`` and ``:`` escaped as ``||`` and ``|:``
(analysisd splits the datagram at the first unescaped ``:``); events about the manager itself
(agent ``000``) use ``1:mimizuku:<json>``.

The payload is one JSON object starting with ``{"`` so that the stock ``json`` decoder reads it.
That decoder turns every scalar into a string, which is why the integer ``score_pct`` exists: rules
match it as text. A datagram never exceeds 65,535 bytes: the longest string fields are cut first and
the event says which (``mimizuku.truncated``, ``mimizuku.truncated_fields``).

Standard library only (the integration script imports this on its fast path).
"""
from __future__ import annotations

import json
import math
import re
from typing import Any, Dict, List, Mapping, Optional, Tuple

from mimizuku.core.records import finite_float, score_pct, story_agents
from mimizuku.core.severity import SEVERITIES

#: Location tag, ``data.integration`` value and rule group of the plugin's events.
TAG = "mimizuku"
#: analysisd's ordinary log queue (decoders and rules run on it).
QUEUE_ID = "1"
#: Largest datagram the official senders write (analysisd's limit is 65,536 bytes).
MAX_MESSAGE_BYTES = 65535

#: Key fields copied from the record into the event (see ``mimizuku.core.fields.key_fields``).
KEY_FIELDS = ("path", "event", "process", "command", "user")
#: Copied to the payload's top level, where analysisd fills its static fields (srcip gets GeoIP).
STATIC_FIELDS = ("srcip", "srcuser", "dstuser")
#: At most this many reasons travel in one event (each one is also length-capped by trimming).
MAX_REASONS = 20
#: Agent names are at most 128 characters in Wazuh; anything longer is not a real name.
MAX_AGENT_NAME = 128

TRUNCATION_MARK = "...[truncated]"

_AGENT_ID_BAD = re.compile(r"[^0-9A-Za-z_-]")
_AGENT_NAME_BAD = re.compile(r"[^0-9A-Za-z_.\-]")
_AGENT_IP_BAD = re.compile(r"[^0-9A-Za-z.:%/_-]")
#: Fields never shortened: short enums and numbers the rules match on.
_UNTRIMMABLE = frozenset({"integration", "score", "score_pct", "anomaly", "severity", "detector",
                          "threshold", "truncated", "truncated_fields", "level", "rule_id"})


class EventTooLarge(ValueError):
    """Even with every string field emptied the event does not fit (never happens with records)."""


def escape_location(text: str) -> str:
    """Escape ``|`` and ``:`` the way analysisd expects inside a location (``||``, ``|:``)."""
    return text.replace("|", "||").replace(":", "|:")


def _unescape(text: str, stop_at_colon: bool) -> Tuple[str, int]:
    """``text`` with analysisd's ``|`` escapes undone, and where it stopped: with ``stop_at_colon``
    at the first ``:`` no ``|`` escapes (-1 when there is none), else at the end."""
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "|" and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
            continue
        if stop_at_colon and c == ":":
            return "".join(out), i
        out.append(c)
        i += 1
    return "".join(out), -1 if stop_at_colon else len(text)


def unescape_location(text: str) -> str:
    """Inverse of :func:`escape_location` (what analysisd's ``wstr_unescape`` does)."""
    return _unescape(text, False)[0]


def split_location(text: str) -> Tuple[str, str]:
    """``(location, rest)`` of ``<location>:<rest>``: analysisd ends the location at the first
    ``:`` not escaped by ``|``; the location comes back unescaped. ValueError without one."""
    location, end = _unescape(text, True)
    if end < 0:
        raise ValueError("no ':' after the location")
    return location, text[end + 1:]


def _clean(value: Any, bad: "re.Pattern[str]", limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value)
    return bad.sub("_", value)[:limit]


def location(agent: Optional[Mapping[str, Any]], tag: str = TAG) -> str:
    """The location part of the datagram for an event about ``agent`` (already escaped).

    Agent fields come from the alert; they are reduced to the characters Wazuh allows in agent
    ids, names and addresses, so a hostile value cannot move the ``:`` that ends the location.
    """
    agent = agent if isinstance(agent, Mapping) else {}
    agent_id = _clean(agent.get("id"), _AGENT_ID_BAD, 16)
    if not agent_id or agent_id == "000":
        return tag
    name = _clean(agent.get("name"), _AGENT_NAME_BAD, MAX_AGENT_NAME) or "unknown"
    ip = _clean(agent.get("ip"), _AGENT_IP_BAD, 64) or "any"
    return escape_location(f"[{agent_id}] ({name}) {ip}") + "->" + tag


def _str_or_none(v: Any) -> Optional[str]:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float, bool)):
        return str(v)
    return None


def build_payload(record: Mapping[str, Any], tag: str = TAG) -> Dict[str, Any]:
    """The JSON object re-injected for one scored record (see docs/records.md for the input)."""
    rule = record.get("rule") if isinstance(record.get("rule"), Mapping) else {}
    agent = record.get("agent") if isinstance(record.get("agent"), Mapping) else {}
    fields = record.get("fields") if isinstance(record.get("fields"), Mapping) else {}
    severity = record.get("severity")
    if severity not in SEVERITIES:
        severity = "none"
    given = record.get("reasons")
    reasons = [r for r in given if isinstance(r, str)][:MAX_REASONS] if isinstance(given, (list, tuple)) else []

    m: Dict[str, Any] = {
        "score": round(min(1.0, max(0.0, finite_float(record.get("score")))), 6),
        "score_pct": score_pct(record),
        "anomaly": bool(record.get("anomaly")),
        "severity": severity,
        "detector": _short(record.get("detector")) or "unknown",
        "threshold": round(finite_float(record.get("threshold")), 6),
        "model_version": _str_or_none(record.get("model_version")) or "unknown",
        "reasons": reasons,
        "reason": "; ".join(reasons) if reasons else "no reason given",
        "agent": _str_or_none(agent.get("name")) or "manager",
    }
    source = {
        "alert_id": _str_or_none(record.get("id")),
        "rule_id": _short(rule.get("id")),
        "level": rule.get("level") if isinstance(rule.get("level"), int) and not isinstance(rule.get("level"), bool) else None,
        "description": _str_or_none(rule.get("description")),
        "timestamp": _str_or_none(record.get("timestamp")),
        "location": _str_or_none(record.get("location")),
    }
    m["source"] = {k: v for k, v in source.items() if v is not None}
    # an update of a burst (mimizuku.engine.repeats), news in an agent and account's story
    # (mimizuku.engine.stories): how far it has come
    for name, count in (("episode", "alerts"), ("story", "anomalies")):
        ep = record.get(name)
        if isinstance(ep, Mapping):
            counts = {k: ep.get(k) for k in (count, "duration_s")
                      if isinstance(ep.get(k), int) and not isinstance(ep.get(k), bool)}
            m[name] = {**{k: v for k in ("of", "since") if (v := _str_or_none(ep.get(k)))}, **counts}
            if name == "story" and isinstance(ep.get("agents"), list):  # a person's story across hosts
                m[name]["agents"] = [a for a in (_clean(x, _AGENT_NAME_BAD, MAX_AGENT_NAME)
                                                 for x in story_agents(ep)) if a]
    mitre = record.get("mitre")
    if isinstance(mitre, Mapping):  # an ATT&CK technique (mimizuku.engine.techniques): Wazuh's MITRE views
        got = {k: v for k in ("id", "technique", "tactic") if (v := _str_or_none(mitre.get(k)))}
        if "id" in got:
            m["mitre"] = got
    for k in KEY_FIELDS:
        v = _str_or_none(fields.get(k))
        if v:
            m[k] = v
    payload: Dict[str, Any] = {"integration": tag, tag: m}
    for k in STATIC_FIELDS:
        v = _str_or_none(fields.get(k))
        if v:
            payload[k] = v
    return payload


#: Longest detector name or rule id carried: both are never trimmed (rules match them whole), so
#: an unbounded one made the event not fit at all (a 64 KiB rule id: EventTooLarge, the event lost)
MAX_NAME = 64


def _short(v: Any) -> Optional[str]:
    s = _str_or_none(v)
    return s[:MAX_NAME] if s is not None else None


def _dumps(obj: Any) -> bytes:
    # ensure_ascii=False keeps non-ASCII compact; "replace" turns lone surrogates (from odd input)
    # into "?" so the datagram is always valid UTF-8 that cJSON accepts.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8", "replace")


def _string_leaves(obj: Any, path: Tuple = ()) -> List[Tuple[Tuple, str]]:
    out: List[Tuple[Tuple, str]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in _UNTRIMMABLE:
                continue
            out.extend(_string_leaves(v, path + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.extend(_string_leaves(v, path + (i,)))
    elif isinstance(obj, str):
        out.append((path, obj))
    return out


def _set(obj: Any, path: Tuple, value: str) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _field_name(path: Tuple) -> str:
    return ".".join(str(p) for p in path if not isinstance(p, int))


def encode_message(loc: str, payload: Dict[str, Any], max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """``1:<loc>:<payload>`` as bytes, at most ``max_bytes`` long.

    When too long, the longest string field is cut (down to the length of the next longest, or
    further if that is still not enough), repeatedly, and the payload records what was cut.
    """
    head = f"{QUEUE_ID}:{loc}:".encode("utf-8", "replace")
    body = _dumps(payload)
    if len(head) + len(body) <= max_bytes:
        return head + body

    payload = json.loads(body)  # a private deep copy we may cut
    inner = payload.get(TAG) if isinstance(payload.get(TAG), dict) else payload
    cut: List[str] = []
    inner["truncated"] = True
    inner["truncated_fields"] = cut
    mark = TRUNCATION_MARK
    for _ in range(50):
        body = _dumps(payload)
        excess = len(head) + len(body) - max_bytes
        if excess <= 0:
            return head + body
        leaves = [(p, v[: -len(mark)] if v.endswith(mark) else v) for p, v in _string_leaves(payload)]
        leaves = [(p, v) for p, v in leaves if v]
        if not leaves:
            break
        leaves.sort(key=lambda pv: len(pv[1]), reverse=True)
        # Water-filling: find the length L such that cutting every field longer than L down to L
        # (plus the mark) frees enough bytes; the longest fields lose the most.
        total_chars = sum(len(v) for _, v in leaves)
        per_char = max(1.0, sum(len(_dumps(v)) - 2 for _, v in leaves) / max(1, total_chars))
        need = int(math.ceil(excess / per_char)) + 8
        lengths = [len(v) for _, v in leaves]
        target = 0
        for k in range(1, len(lengths) + 1):
            # cutting the k longest to L frees sum(top k) - k*(L + len(mark)) characters
            L = (sum(lengths[:k]) - need) // k - len(mark)
            nxt = lengths[k] if k < len(lengths) else 0
            if L >= nxt:
                target = max(0, L)
                break
        for path, base in leaves:
            if len(base) > target:
                _set(payload, path, base[:target] + mark)
                name = _field_name(path)
                if name.startswith(TAG + "."):
                    name = name[len(TAG) + 1:]
                if name not in cut:
                    cut.append(name)
        cut.sort()
    raise EventTooLarge(f"event does not fit in {max_bytes} bytes even after trimming")


def event_message(record: Mapping[str, Any], *, tag: str = TAG, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """The complete datagram for one scored record."""
    return encode_message(location(record.get("agent"), tag), build_payload(record, tag), max_bytes)


#: what an analyst did to a verdict (``mimizuku feedback``): the audit event's ``action``
FEEDBACK_ACTIONS = ("add", "import", "revoke")
#: the verdict's fields an audit event carries (``FeedbackEntry.to_json``), and its situation's
_FEEDBACK_FIELDS = ("id", "verdict", "scope", "by", "note", "alert_id", "expires_at", "source")
_SITUATION_FIELDS = ("agent", "account", "detector", "content")


def feedback_message(change: Mapping[str, Any], *, tag: str = TAG, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """The audit event of one change of an analyst's verdict (a rule of ``mimizuku_rules.xml``
    makes it a low-level alert): ``change`` holds ``action`` and the verdict as
    ``FeedbackEntry.to_json`` writes it. Location ``mimizuku`` (the manager). Text from an
    imported line is the other tool's: it travels as JSON strings, cut like an anomaly's."""
    action = change.get("action")
    f: Dict[str, Any] = {"action": action if action in FEEDBACK_ACTIONS else "unknown"}
    for k in _FEEDBACK_FIELDS:
        v = _str_or_none(change.get(k))
        if v:
            f[k] = v
    sits = change.get("situations")
    first = sits[0] if isinstance(sits, list) and sits and isinstance(sits[0], Mapping) else {}
    for k in _SITUATION_FIELDS:
        v = _str_or_none(first.get(k))
        if v:
            f["situation" if k == "content" else k] = v
    return encode_message(tag, {"integration": tag, tag: {"feedback": f}}, max_bytes)
