"""The integration's policy: which scored records become Wazuh events, and how.

The ``<integration>`` options (``mimizuku.integratord.call.Options``; the resident scorer has the
same) choose the detectors to report (``detectors``), override thresholds (``thresholds``: per
detector or ``"*"``), set a minimum severity (``min_severity``) and the send mode (``send``:
``anomalies`` or ``all``). Threshold overrides judge each record again through the flag rule
(``mimizuku.engine.flag_rule``): an ignored alert does not become an anomaly under a lowered
threshold, an abuse file stays flagged under a raised one, and a repeat stays a repeat.

Standard library only (the integration's in-process path imports it before the engine).
"""
from __future__ import annotations

from typing import Any, Dict, List

from mimizuku.core.records import score_pct
from mimizuku.core.severity import SEVERITY_RANK
from mimizuku.engine.flag_rule import FlagRule

__all__ = ["apply_policy", "SEVERITY_RANK"]



def apply_policy(records: List[Dict[str, Any]], options: Any) -> List[Dict[str, Any]]:
    """The records to send: threshold overrides, detector choice, minimum severity, send mode.

    ``options``: any object with ``send``, ``detectors`` (a set of names, or None for all),
    ``thresholds`` (a mapping) and ``min_severity``. The input records are not modified."""
    out = []
    floor = SEVERITY_RANK[options.min_severity]
    rule = FlagRule(thresholds=options.thresholds)
    for rec in records:
        if not isinstance(rec, dict):
            continue
        det = rec.get("detector")
        if options.detectors is not None and det not in options.detectors:
            continue
        t = rule.override(det)
        if t is not None:
            rec = dict(rec)
            now_anomaly = rule.judge_record(rec).anomaly
            if now_anomaly != bool(rec.get("anomaly")):
                if now_anomaly:
                    if rec.get("severity") in (None, "none"):
                        rec["severity"] = "low"
                    rec["reasons"] = list(rec.get("reasons") or []) + [
                        f"score {score_pct(rec)}% is at or above the configured threshold {round(100 * t)}%"]
                else:
                    rec["severity"] = "none"
                    rec["reasons"] = []
                rec["anomaly"] = now_anomaly
            rec["threshold"] = t
        reportable = bool(rec.get("anomaly")) and SEVERITY_RANK.get(rec.get("severity"), 0) >= floor
        if reportable or options.send == "all":
            out.append(rec)
    return out
