"""Scored records as SQL rows: the conversion that runs once per alert, and the run row.

Every text value is bounded to its column (cut and marked: the row's ``truncated`` is set),
scores that are not finite become NULL, times become naive UTC, and an alert without a usable id
gets a hash of itself as its unique key, so a write stays idempotent. No database here: the sink
(``mimizuku.outputs.sql.sink``) prepares rows with these functions before it holds a connection.
"""
from __future__ import annotations

import json
import math
import uuid
from collections.abc import Mapping as MappingABC
from datetime import datetime, timezone
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from mimizuku.core.alert_identity import bounded_id, content_id
from mimizuku.outputs import bound_text, clean_text, parse_timestamp
from mimizuku.outputs.sql.schema import (
    AGENT_ID_LEN,
    AGENT_NAME_LEN,
    COMMAND_LEN,
    DESCRIPTION_LEN,
    DETECTOR_LEN,
    ID_LEN,
    IP_LEN,
    LOCATION_LEN,
    MAX_REASONS,
    NOTE_LEN,
    PATH_LEN,
    REASON_LEN,
    RULE_ID_LEN,
    SEVERITY_LEN,
    SITUATION_LEN,
    STATUS_LEN,
    USER_LEN,
    VERSION_LEN,
)

__all__ = ["rows_for", "run_row", "feedback_row", "normalise_run", "alert_key", "cluster_of", "utc_naive", "json_text"]


def utc_naive(dt: Optional[datetime]) -> Optional[datetime]:
    """Columns hold naive UTC (DATETIME has no zone in MySQL/SQLite)."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def _finite(x: Any) -> Optional[float]:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(x: Any) -> Optional[int]:
    if isinstance(x, bool):
        return int(x)
    try:
        return int(x)
    except (TypeError, ValueError, OverflowError):
        return None


def json_text(obj: Any) -> str:
    """A value as JSON text for a JSON column (sorted keys, odd types as strings, cleaned)."""
    return clean_text(json.dumps(obj, ensure_ascii=False, default=str, sort_keys=True))


def alert_key(rec: Mapping[str, Any]) -> str:
    """The unique key: the alert id, hashed when absent or longer than the column."""
    raw = clean_text(rec.get("id"))
    return bounded_id(raw, ID_LEN) if raw else content_id(rec)


def _reasons(x: Any) -> Tuple[str, bool]:
    items = x if isinstance(x, (list, tuple)) else ([] if x is None else [x])
    out, cut = [], len(items) > MAX_REASONS
    for r in items[:MAX_REASONS]:
        s, t = bound_text(r, REASON_LEN)
        cut = cut or t
        out.append(s if s is not None else "")
    return json_text(out), cut


def cluster_of(rec: Mapping[str, Any], key: str, clusters: Optional[Mapping[str, Any]]) -> Optional[int]:
    """The alert's DBSCAN label: from ``clusters`` by its key (or id) when given, else its own."""
    if clusters is not None:
        v = clusters.get(key)
        if v is None and rec.get("id") is not None:
            v = clusters.get(str(rec.get("id")))
        return _int(v)
    return _int(rec.get("cluster"))


def _text(value: Any, limit: int) -> Tuple[Optional[str], bool]:
    """Fast path of :func:`bound_text` for the common short ASCII string."""
    if value is None:
        return None, False
    if value.__class__ is str and len(value) <= limit and value.isascii():
        return value, False
    return bound_text(value, limit)


_EMPTY: Mapping[str, Any] = {}


def rows_for(records: Sequence[Mapping[str, Any]], cluster_labels: Sequence[Optional[int]],
              run_id: Optional[str], model_version: Optional[str], written: datetime,
              ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """``(alert rows, outlier rows)`` for one batch; duplicates within the batch keep the first.

    Every text value is bounded to its column (cut and marked, ``truncated`` set); scores that
    are not finite become NULL. Written for speed: this runs once per alert.
    """
    alert_rows: List[Dict[str, Any]] = []
    outlier_rows: List[Dict[str, Any]] = []
    seen = set()
    run_id, _ = _text(run_id, ID_LEN)
    model_version, _ = _text(model_version, VERSION_LEN)
    for rec, cluster in zip(records, cluster_labels):
        if rec.__class__ is not dict and not isinstance(rec, MappingABC):
            continue
        key = alert_key(rec)
        if key in seen:
            continue
        seen.add(key)
        # exact-type checks first: isinstance() against an ABC costs more than the rest of a field
        agent = rec.get("agent")
        if agent.__class__ is not dict and not isinstance(agent, MappingABC):
            agent = _EMPTY
        rule = rec.get("rule")
        if rule.__class__ is not dict and not isinstance(rule, MappingABC):
            rule = _EMPTY
        fields = rec.get("fields")
        if fields.__class__ is not dict and not isinstance(fields, MappingABC):
            fields = _EMPTY
        agent_id, c1 = _text(agent.get("id"), AGENT_ID_LEN)
        agent_name, c2 = _text(agent.get("name"), AGENT_NAME_LEN)
        agent_ip, c3 = _text(agent.get("ip"), IP_LEN)
        rule_id, c4 = _text(rule.get("id"), RULE_ID_LEN)
        rule_desc, c5 = _text(rule.get("description"), DESCRIPTION_LEN)
        location, c6 = _text(rec.get("location"), LOCATION_LEN)
        detector, c7 = _text(rec.get("detector"), DETECTOR_LEN)
        severity, c8 = _text(rec.get("severity"), SEVERITY_LEN)
        path, c9 = _text(fields.get("path"), PATH_LEN)
        command, c10 = _text(fields.get("command"), COMMAND_LEN)
        user, c11 = _text(fields.get("user"), USER_LEN)
        srcip, c12 = _text(fields.get("srcip"), IP_LEN)
        mv = rec.get("model_version")
        if mv is not None:
            mv, c13 = _text(mv, VERSION_LEN)
        else:
            mv, c13 = model_version, False
        reasons_in = rec.get("reasons")
        if not reasons_in:
            reasons, c14 = "[]", False
        else:
            reasons, c14 = _reasons(reasons_in)
        score = rec.get("score")
        if score.__class__ is not float or not math.isfinite(score):
            score = _finite(score)
        threshold = rec.get("threshold")
        if threshold.__class__ is not float or not math.isfinite(threshold):
            threshold = _finite(threshold)
        level = rule.get("level")
        if level.__class__ is not int:
            level = _int(level)
        ts = utc_naive(parse_timestamp(rec.get("timestamp")))
        anomaly = bool(rec.get("anomaly"))
        alert_rows.append({
            "alert_id": key, "run_id": run_id, "timestamp": ts,
            "agent_id": agent_id, "agent_name": agent_name, "agent_ip": agent_ip,
            "rule_id": rule_id, "rule_level": level, "rule_description": rule_desc,
            "location": location, "detector": detector, "score": score, "threshold": threshold,
            "anomaly": anomaly, "severity": severity, "cluster": cluster, "reasons": reasons,
            "path": path, "command": command, "user": user, "srcip": srcip, "model_version": mv,
            "truncated": c1 or c2 or c3 or c4 or c5 or c6 or c7 or c8 or c9 or c10 or c11 or c12 or c13 or c14,
            "written": written,
        })
        noise = cluster == -1
        if anomaly or noise:
            outlier_rows.append({
                "alert_id": key, "run_id": run_id, "timestamp": ts, "agent_name": agent_name,
                "rule_id": rule_id, "detector": detector, "score": score, "anomaly": anomaly,
                "noise": noise, "cluster": cluster, "severity": severity, "reasons": reasons,
                "written": written,
            })
    return alert_rows, outlier_rows


def _iso(x: Any) -> Optional[str]:
    dt = parse_timestamp(x)
    return dt.isoformat() if dt is not None else None


def normalise_run(run: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A JSON-serialisable copy of the run with a run id (spool items must survive a restart)."""
    run = dict(run or {})
    out: Dict[str, Any] = {
        "run_id": clean_text(run.get("run_id")) or uuid.uuid4().hex,
        "started": _iso(run.get("started")),
        "finished": _iso(run.get("finished")),
        "model_version": clean_text(run.get("model_version")),
        "status": clean_text(run.get("status")),
    }
    for k in ("counts", "durations", "figures"):
        v = run.get(k)
        out[k] = json.loads(json_text(v)) if v is not None else None
    return out


def run_row(r: Mapping[str, Any], written: datetime) -> Dict[str, Any]:
    """The ``runs`` row of a run as spooled (see ``normalise_run``), text bounded to its columns."""

    def b(v: Any, n: int) -> Optional[str]:
        return bound_text(v, n)[0]

    return {
        "run_id": b(r.get("run_id"), ID_LEN),
        "started": utc_naive(parse_timestamp(r.get("started"))),
        "finished": utc_naive(parse_timestamp(r.get("finished"))),
        "model_version": b(r.get("model_version"), VERSION_LEN),
        "status": b(r.get("status"), STATUS_LEN),
        "counts": json_text(r.get("counts")) if r.get("counts") is not None else None,
        "durations": json_text(r.get("durations")) if r.get("durations") is not None else None,
        "figures": json_text(r.get("figures")) if r.get("figures") is not None else None,
        "written": written,
    }


def feedback_row(change: Mapping[str, Any], written: datetime) -> Dict[str, Any]:
    """The ``feedback`` row of one change of an analyst's verdict: ``change`` holds ``change_id``,
    ``action`` and the verdict as ``FeedbackEntry.to_json`` writes it (its first situation names
    the agent, account and detector). Imported lines come from another tool: every text is
    bounded like an alert's."""
    sits = change.get("situations") if isinstance(change.get("situations"), list) else []
    first = sits[0] if sits and isinstance(sits[0], MappingABC) else _EMPTY
    cut = False
    out: Dict[str, Any] = {}
    for col, value, limit in (("change_id", change.get("change_id"), ID_LEN), ("feedback_id", change.get("id"), ID_LEN),
                              ("action", change.get("action"), STATUS_LEN), ("verdict", change.get("verdict"), STATUS_LEN),
                              ("scope", change.get("scope"), STATUS_LEN), ("author", change.get("by"), USER_LEN),
                              ("note", change.get("note"), NOTE_LEN), ("alert_id", change.get("alert_id"), ID_LEN),
                              ("agent_name", first.get("agent"), AGENT_NAME_LEN), ("account", first.get("account"), USER_LEN),
                              ("detector", first.get("detector"), DETECTOR_LEN),
                              ("situation", first.get("content"), SITUATION_LEN)):
        out[col], c = _text(value if isinstance(value, str) else None, limit)
        cut = cut or c
    out["expires"] = utc_naive(parse_timestamp(change.get("expires_at")))
    out["changed"] = utc_naive(parse_timestamp(change.get("changed_at"))) or utc_naive(written)
    out["truncated"] = cut
    out["written"] = utc_naive(written)
    return out
