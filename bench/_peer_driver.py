"""Runs the peer (PyPI ``mimizuku`` 0.2.36) for the benchmarks, inside the peer's own venv.

Executed as ``.bench-venv/bin/python bench/_peer_driver.py COMMAND ...`` by ``bench/_common.py``;
it imports only the peer and its dependencies, never the project. Results go to a JSON file
(``--out``); the peer's own prints (one line per alert when predicting) go to /dev/null.

Commands:

* ``fit --train FILE --model DIR --out JSON``: the peer's public API (``Mimizuku()``,
  ``add_rule(FsNotify(...))``, ``add_rule(AuditCommand(...))``, ``fit``, ``save_model``).
* ``score --model DIR --test FILE --out JSON``: per-alert scores, which the public API does not
  give (``predict`` returns only the anomalies, without ids). Mirrors the peer's
  ``load_and_preprocess`` line by line (``filter_line``, ``orjson.loads``, ``is_target_event``)
  to keep each targeted alert's line number, then ``process_alerts`` -> X,
  ``model.score_samples(X)`` (sklearn: lower = more abnormal; written negated, so higher = more
  anomalous) and flags ``score_samples(X) < model.offset_``, which is exactly sklearn's
  ``LocalOutlierFactor.predict(X) == -1`` (``decision_function = score_samples - offset_``).
* ``predict --model DIR --test FILE --out JSON``: times the public ``Mimizuku.load_model`` and
  ``predict(path)`` (reading the file included), for throughput. Note: its FsNotify drops
  duplicate anomaly rows (same host, path, event, user), so ``predict`` lists fewer anomalies
  than ``score`` flags alerts; the two agree once those duplicates are removed.
"""
import argparse
import contextlib
import json
import os
import sys
import time


def _silenced():
    """The peer prints one line per alert in predict: send it to /dev/null (cheapest sink)."""
    return contextlib.redirect_stdout(open(os.devnull, "w"))


def _rules(n_neighbors, contamination):
    from mimizuku.rules.audit_command import AuditCommand
    from mimizuku.rules.fs_notify import FsNotify

    return [FsNotify(n_neighbors=n_neighbors, contamination=contamination),
            AuditCommand(n_neighbors=n_neighbors, contamination=contamination)]


def _fitted(rule):
    return hasattr(rule.model, "offset_") and hasattr(rule.model, "n_samples_fit_")


def cmd_fit(a):
    from mimizuku import Mimizuku

    t0 = time.perf_counter()
    m = Mimizuku()
    for r in _rules(a.n_neighbors, a.contamination):
        m.add_rule(r)
    with _silenced():
        m.fit(a.train)
    t1 = time.perf_counter()
    os.makedirs(a.model, exist_ok=True)
    m.save_model(a.model)
    t2 = time.perf_counter()
    rules = {r.name(): {"trained": _fitted(r), "train_alerts": int(r.model.n_samples_fit_) if _fitted(r) else 0}
             for r in m.rules}
    return {"fit_s": t1 - t0, "save_s": t2 - t1, "rules": rules}


def _targets(rule, path):
    """(line number, alert) of the alerts this rule would read, exactly as load_and_preprocess."""
    import orjson

    out, errors = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh):
            if rule.filter_line(line):
                continue
            try:
                alert = orjson.loads(line)
                if rule.is_target_event(alert):
                    out.append((lineno, alert))
            except orjson.JSONDecodeError:
                pass
            except Exception:  # the peer itself would crash here (KeyError on a missing field)
                errors += 1
    return out, errors


def cmd_score(a):
    from mimizuku import Mimizuku

    t0 = time.perf_counter()
    m = Mimizuku.load_model(a.model)
    rules = {}
    for rule in m.rules:
        targets, errors = _targets(rule, a.test)
        entry = {"trained": _fitted(rule), "lines": [t[0] for t in targets], "errors": errors,
                 "score": [], "flag": []}
        if entry["trained"] and targets:
            with _silenced():
                X, _ = rule.process_alerts([t[1] for t in targets], fit=False)
            s = rule.model.score_samples(X)
            entry["score"] = [float(-v) for v in s]
            entry["flag"] = [bool(v < rule.model.offset_) for v in s]
        rules[rule.name()] = entry
    return {"score_s": time.perf_counter() - t0, "rules": rules}


def cmd_predict(a):
    from mimizuku import Mimizuku

    t0 = time.perf_counter()
    m = Mimizuku.load_model(a.model)
    t1 = time.perf_counter()
    with _silenced():
        preds = m.predict(a.test)
    t2 = time.perf_counter()
    n = sum(len(p["predictions"]) for p in (preds or []) if p.get("predictions") is not None)
    return {"load_s": t1 - t0, "score_s": t2 - t1, "anomalies": n}


def main(argv=None):
    p = argparse.ArgumentParser(prog="_peer_driver")
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--train", required=True)
    f.add_argument("--n-neighbors", type=int, default=5)
    f.add_argument("--contamination", type=float, default=0.001)
    for name in ("score", "predict"):
        s = sub.add_parser(name)
        s.add_argument("--test", required=True)
    for s in sub.choices.values():
        s.add_argument("--model", required=True)
        s.add_argument("--out", required=True)
    a = p.parse_args(argv)
    import importlib.metadata

    result = {"cmd_fit": cmd_fit, "cmd_score": cmd_score, "cmd_predict": cmd_predict}["cmd_" + a.cmd](a)
    result["peer_version"] = importlib.metadata.version("mimizuku")
    with open(a.out, "w") as fh:
        json.dump(result, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
