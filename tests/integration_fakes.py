"""A stand-in engine for the integration tests: records shaped as docs/records.md describes.

Scores are a deterministic function of what the alert is about (path, command line, or rule and
agent), so a test can pick alerts that do or do not come out anomalous. Standard library only, so
the wrapper scripts built from it run under any interpreter the ``wazuh`` user can execute.
"""
from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Dict, List, Optional

from mimizuku.core import fields

THRESHOLD = 0.8
MODEL_VERSION = "fake-1"


def severity_of(score: float) -> str:
    if score < THRESHOLD:
        return "none"
    if score >= 0.99:
        return "critical"
    if score >= 0.95:
        return "high"
    if score >= 0.9:
        return "medium"
    return "low"


def subject(alert: Dict[str, Any]):
    """(detector, the text the score is derived from)."""
    if fields.is_fim(alert):
        return "files", fields.file_path(alert)
    if fields.is_command(alert):
        return "commands", fields.command_line(alert)
    return "context", f"{fields.rule_id(alert)}|{fields.agent_name(alert)}"


def score_of(alert: Dict[str, Any]) -> float:
    """``mimizuku_test_score`` in the alert wins; otherwise a hash of the subject."""
    forced = (alert.get("data") or {}).get("mimizuku_test_score") if isinstance(alert.get("data"), dict) else None
    if isinstance(forced, (int, float)):
        return float(forced)
    _, text = subject(alert)
    h = int(hashlib.sha1(str(text).encode("utf-8", "replace")).hexdigest()[:8], 16)
    return (h % 1000) / 1000.0


def record(alert: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    det, text = subject(alert)
    if text is None:
        return None
    score = score_of(alert)
    sev = severity_of(score)
    anomaly = sev != "none"
    return {
        "id": fields.alert_id(alert) or "sha1:" + hashlib.sha1(repr(alert).encode()).hexdigest(),
        "timestamp": fields.timestamp(alert),
        "agent": {"id": fields.agent_id(alert), "name": fields.agent_name(alert), "ip": fields.agent_ip(alert)},
        "rule": {"id": fields.rule_id(alert), "level": fields.rule_level(alert),
                 "description": fields.rule_description(alert), "groups": fields.rule_groups(alert)},
        "location": fields.location(alert),
        "detector": det,
        "score": score,
        "score_pct": round(100 * score),
        "threshold": THRESHOLD,
        "anomaly": anomaly,
        "severity": sev,
        "reasons": [f"{det}: {text} is rare for this host"] if anomaly else [],
        "scores": {det: score},
        "fields": fields.key_fields(alert),
        "model_version": MODEL_VERSION,
    }


def fake_scorer(alerts: List[Dict[str, Any]], options: Any = None) -> List[Dict[str, Any]]:
    """Same contract as ``integration.score_in_process``; env knobs for the subprocess tests."""
    delay = float(os.environ.get("FAKE_SCORER_DELAY", "0") or 0)
    if delay:
        if os.environ.get("FAKE_SCORER_BLOCK_ALARM"):
            import signal

            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # like C code that never returns
        end = time.monotonic() + delay
        while time.monotonic() < end:
            time.sleep(0.05)
    out = []
    for a in alerts:
        if isinstance(a.get("data"), dict) and a["data"].get("mimizuku_test_boom"):
            raise RuntimeError("engine exploded on this alert")
        r = record(a)
        if r is not None:
            out.append(r)
    return out


WRAPPER = """#!{python} -I
# test wrapper: the real integration code with the stand-in engine
import sys
sys.path[:0] = [{detector!r}, {tests!r}]
from integration_fakes import fake_scorer
from mimizuku.integratord.call import run
sys.exit(run(sys.argv, in_process=fake_scorer))
"""
