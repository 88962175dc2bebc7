"""`mimizuku explain`: why one alert got the score it got, and what an analyst can do about it.

For one alert, scored as the scorer scores it (``Mimizuku.iter_scored``: the same stream, the
same flag rule, the installed verdicts): each detector's raw and calibrated score against its
threshold, the history of the entity the score was judged against (``engine.baselines``), the
three nearest normal situations the LOF detectors know, the reasons, the analysts' verdicts that apply
(or would, were they not expired or revoked), and the ``mimizuku feedback add`` commands for it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, Dict, List, Optional

from mimizuku.core.text import printable
from mimizuku.engine.feedback import Situation
from mimizuku.outputs.report import feedback_command

__all__ = ["add_parser", "explain_scored"]


def add_parser(sub: Any) -> None:
    from mimizuku.feedback_cli import window_args

    p = sub.add_parser("explain", help="explain one alert's score: detectors, entity history, nearest normal "
                                       "examples, reasons, verdicts")
    p.add_argument("--model-dir", "-m", required=True, help="model directory or model root")
    p.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH", help="where the alert is")
    p.add_argument("--alert-id", required=True, help="the alert's id (its record's id)")
    window_args(p)
    p.add_argument("--format", choices=("text", "json"), default="text",
                   help="text for a person (default), json for a tool")
    p.set_defaults(func=cmd_explain)


def _history(d: Any, agent: str, account: str) -> Optional[Dict[str, Any]]:
    base = d.__dict__.get("baselines_")
    if base is None:
        return None
    h = base.history(agent, account)
    return {"level": h.level, "entity": h.entity, "distinct": h.distinct, "alerts": h.alerts,
            "seen_once": h.singletons, "chance_of_something_new": round(h.unseen_mass, 6)}


#: nearest normal situations shown per detector
NEAREST = 3


def _nearest(d: Any, key: Any) -> List[Dict[str, Any]]:
    """The training situations nearest to this one (the LOF detectors' references), nearest first."""
    if not hasattr(d, "neighbours") or not hasattr(d, "describe"):
        return []
    try:
        dist, ind = d.neighbours([key], min(NEAREST, len(d.ref_keys_)))
    except Exception:  # a detector fitted without references: nothing to show
        return []
    return [{"situation": d.describe(d.ref_keys_[int(i)]), "distance": round(float(x), 6),
             "seen_in_training": int(d.ref_weights_[int(i)])} for x, i in zip(dist[0], ind[0])]


def explain_scored(model: Any, scored: Any, *, model_dir: str = "MODEL_DIR",
                   input_path: str = "INPUT") -> Dict[str, Any]:
    """Everything ``mimizuku explain`` shows for one ``ScoredAlert``, as plain data."""
    rule = model.flag_rule()
    rec = scored.record or {}
    k = len(scored.scored)
    dets = []
    sits: List[Situation] = []
    for name, (s, key, d) in scored.scored.items():
        part = d.feedback_situation(key)
        agent, account = (part[1], part[2]) if part else ("", "")
        if part:
            sits.append(Situation(name, *part))
        dets.append({
            "detector": name,
            "raw_score": round(float(d.raw_scores([key])[0]), 6),
            "score": round(float(s), 6),
            "threshold": round(float(rule.threshold(name, d.threshold_, k)), 6),
            "flagged": name in (scored.verdict.detectors if scored.verdict else ()),
            "situation": part[0] if part else None,
            "history": _history(d, agent, account),
            "nearest_normal": _nearest(d, key),
            "reasons": d.explain(key, scored.alert),
        })
    now = time.time()
    verdicts = []
    fb = model.feedback
    for e in (fb.entries if fb is not None else ()):
        if any(e.covers(s) for s in sits):
            verdicts.append({"id": e.id, "verdict": e.verdict, "scope": e.scope, "by": e.by, "state": e.state(now),
                             "applies": e.active(now), "note": e.note})
    aid = rec.get("id") or ""
    return {
        "alert_id": aid, "agent": (rec.get("agent") or {}).get("name"), "timestamp": rec.get("timestamp"),
        "anomaly": bool(rec.get("anomaly")), "severity": rec.get("severity"), "detector": rec.get("detector"),
        "suppressed_by": rec.get("suppressed_by"), "confirmed_by": rec.get("confirmed_by"),
        "reasons": rec.get("reasons") or [], "detectors": dets, "verdicts": verdicts,
        "feedback_commands": {v: feedback_command(model_dir, input_path, aid, v)
                              for v in ("false-positive", "confirmed")},
    }


def _text(x: Dict[str, Any]) -> List[str]:
    p = printable
    state = ("suppressed by " + x["suppressed_by"]) if x["suppressed_by"] else \
        ("anomaly, " + str(x["severity"])) if x["anomaly"] else "not an anomaly"
    out = [f"alert {p(x['alert_id'], 80)} on {p(x['agent'] or '-', 80)} at {p(x['timestamp'] or '-', 40)}: {state}"]
    for r in x["reasons"]:
        out.append(f"  why: {p(r, 400)}")
    for d in x["detectors"]:
        out.append(f"\n[{d['detector']}] raw {d['raw_score']:.4f}, calibrated {d['score']:.4f} against threshold "
                   f"{d['threshold']:.4f}: {'flagged' if d['flagged'] else 'not flagged'}")
        if d["situation"]:
            out.append(f"  situation: {p(d['situation'], 300)}")
        h = d["history"]
        if h:
            out.append(f"  judged against {h['level']} {p(h['entity'], 120)}: {h['distinct']:,} distinct in "
                       f"{h['alerts']:,} alerts ({h['seen_once']:,} seen once; chance of something new "
                       f"{h['chance_of_something_new']:.4f})")
        for n in d["nearest_normal"]:
            out.append(f"  nearest normal: {p(n['situation'], 300)} (distance {n['distance']:.4f}, seen "
                       f"{n['seen_in_training']:,} times in training)")
        for r in d["reasons"]:
            out.append(f"  - {p(r, 400)}")
    out.append("")
    if x["verdicts"]:
        for v in x["verdicts"]:
            out.append(f"verdict {v['id']}: {v['verdict']}, scope {v['scope']}, by {p(v['by'], 60)}, {v['state']}"
                       f"{'' if v['applies'] else ' (would apply)'}")
    else:
        out.append("no analyst's verdict covers this alert")
    out.append("to mark it a false positive:  " + p(x["feedback_commands"]["false-positive"], 2000))
    out.append("to confirm it as an incident: " + p(x["feedback_commands"]["confirmed"], 2000))
    return out


def cmd_explain(a: argparse.Namespace) -> int:
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.feedback_cli import FeedbackCommandError, find_alert
    from mimizuku.store.model_dir import ModelError

    try:
        model = Mimizuku.load_model(a.model_dir)
        scored = find_alert(model, a.input, a.alert_id, a.since, a.until)
    except ModelError as e:
        print(f"mimizuku explain: error: cannot load model from {a.model_dir}: {printable(e, 1000)}", file=sys.stderr)
        return 4
    except FeedbackCommandError as e:
        print(f"mimizuku explain: error: {printable(e, 1000)}", file=sys.stderr)
        return e.code
    if scored.record is None:
        print(f"mimizuku explain: error: no detector of the model scores alert {printable(a.alert_id, 200)}",
              file=sys.stderr)
        return 3
    x = explain_scored(model, scored, model_dir=a.model_dir, input_path=a.input[0])
    if a.format == "json":
        print(json.dumps(x, ensure_ascii=True, default=str))
    else:
        print("\n".join(_text(x)))
    return 0
