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

from typing import Any, Dict, List, Optional

from mimizuku.core.records import score_pct
from mimizuku.core.severity import SEVERITY_RANK
from mimizuku.engine.flag_rule import FlagRule

__all__ = ["SendPolicy", "apply_policy", "SEVERITY_RANK"]


class SendPolicy:
    """The policy of one set of options, judging one record at a time (``send(record)``), so a
    caller that also needs the records the policy drops (flood control counts repeats into a
    burst) keeps their order. ``options``: any object with ``send``, ``detectors`` (a set of names,
    or None for all), ``thresholds`` (a mapping) and ``min_severity``."""

    def __init__(self, options: Any) -> None:
        self.options = options
        self.floor = SEVERITY_RANK[options.min_severity]
        self.rule = FlagRule(thresholds=options.thresholds)

    def send(self, rec: Any) -> Optional[Dict[str, Any]]:
        """The record to send for ``rec`` (a copy when a threshold override judged it again), or
        None. The input record is not modified."""
        if not isinstance(rec, dict):
            return None
        options = self.options
        det = rec.get("detector")
        if options.detectors is not None and det not in options.detectors:
            return None
        t = self.rule.override(det)
        if t is not None:
            rec = dict(rec)
            now_anomaly = self.rule.judge_record(rec).anomaly
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
        reportable = bool(rec.get("anomaly")) and SEVERITY_RANK.get(rec.get("severity"), 0) >= self.floor
        return rec if reportable or options.send == "all" else None


def apply_policy(records: List[Dict[str, Any]], options: Any) -> List[Dict[str, Any]]:
    """The records to send, in order: threshold overrides, detector choice, minimum severity, send
    mode (``SendPolicy``). The input records are not modified."""
    policy = SendPolicy(options)
    return [r for r in map(policy.send, records) if r is not None]
