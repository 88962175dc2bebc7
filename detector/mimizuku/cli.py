"""`mimizuku` command line: argv handled here, failures mapped to exit codes here.

Exit codes (stable; scripts and the command wodle rely on them):
  0  success
  1  unexpected internal error (a bug: the message says where)
  2  usage error (bad arguments)
  3  input error: a path that does not exist or cannot be read, or no alerts in the input
  4  model error: missing, tampered, unsafe (writable by others / wrong owner) or incompatible
  5  not enough data to train any detector
  6  locked: another retrain or rollback is running (retrain, rollback)
  7  validation refused the new model; the current one is kept (retrain)
  130 / 143  interrupted (SIGINT / SIGTERM)
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.core.text import printable

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL, EXIT_DATA = 0, 1, 2, 3, 4, 5

log = logging.getLogger("mimizuku")


class CliError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def _window_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--days", type=int, help="only the last N days of an archive tree")
    p.add_argument("--since", help="first day or time to read (YYYY-MM-DD[THH:MM:SS])")
    p.add_argument("--until", help="last day (inclusive) or time (exclusive) to read")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mimizuku", description="Anomaly detection for Wazuh alerts.")
    ap.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    ap.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="learn what is normal from alerts and save a model")
    t.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH",
                   help="alerts.json files, .json.gz archives, a logs/alerts tree or an indexer export")
    _window_args(t)
    t.add_argument("--model-dir", "-m", required=True, help="directory to write the model into")
    t.add_argument("--contamination", type=float, default=DEFAULT_CONTAMINATION,
                   help=f"share of benign alerts a model may flag (default {DEFAULT_CONTAMINATION:g})")
    t.add_argument("--n-neighbors", type=int, default=5, help="LOF neighbours (default 5)")
    t.add_argument("--context-contamination", type=float, default=None,
                   help="alert budget of the context detector, which scores every alert (default: --contamination)")
    t.add_argument("--detectors", default="files,commands,context", help="comma list of files, commands, context")
    t.add_argument("--ignore-user", action="append", default=[], metavar="USER", help="never flag this user (repeatable)")
    t.add_argument("--ignore-file", action="append", default=[], metavar="PATH", help="never flag this path prefix or glob")
    t.add_argument("--abuse-file", action="append", default=[], metavar="PATH", help="always flag this path, basename or glob")

    s = sub.add_parser("score", help="score alerts with a saved model")
    s.add_argument("--model-dir", "-m", required=True,
                   help="model directory, or a model root kept by the nightly job (its current version)")
    s.add_argument("--input", "-i", nargs="+", required=True, metavar="PATH",
                   help="alerts to score: alerts.json files, .json.gz archives, a logs/alerts tree or an indexer URL")
    _window_args(s)
    s.add_argument("--all", action="store_true", help="print every scored alert, not only anomalies")
    s.add_argument("--format", choices=("table", "jsonl"), default="table",
                   help="table: one line per alert for a person; jsonl: one scored record per line "
                        "(docs/records.md) (default table)")
    s.add_argument("--output", "-o", help="write to this file instead of standard output")
    s.add_argument("--correlate", action="store_true",
                   help="batch mode: rank alerts tied to an anomaly (same login session, process tree, login, "
                        "ssh hop or source burst) just under it, with related_to (mimizuku.engine.correlate)")
    s.add_argument("--flag-related", action="store_true",
                   help="with --correlate: flag the tied alerts as anomalies too, each with a reason naming its seed")

    sub.add_parser("generate", add_help=False,
                   help="write realistic sample alerts (a fleet with labelled attacks); "
                        "options: `mimizuku generate --help`")

    from mimizuku.nightly import cli as retrain
    from mimizuku.serve import command as serve
    from mimizuku.serve import status
    from mimizuku.store import versions

    retrain.add_parser(sub)
    versions.add_rollback_parser(sub)
    retrain.add_report_parser(sub)
    serve.add_parser(sub)
    status.add_parser(sub)
    from mimizuku.store import publication as model_sync

    model_sync.add_parsers(sub)
    from mimizuku.tools import rules_check as check

    check.add_parser(sub)
    from mimizuku import explain, feedback_cli

    feedback_cli.add_parsers(sub)
    explain.add_parser(sub)
    from mimizuku.tools import dashboards

    dashboards.add_parser(sub)

    d = sub.add_parser("demo", help="generate sample data, train on it and score its last days")
    d.add_argument("--out", default="./demo", help="working directory (default ./demo)")
    d.add_argument("--days", type=int, default=10, help="days of generated activity (default 10)")
    d.add_argument("--scale", type=float, default=0.3, help="fleet activity scale (1.0 ≈ 20k alerts/day; default 0.3)")
    d.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    return ap


def _version() -> str:
    from mimizuku._version import __version__

    return __version__


def _progress() -> bool:
    return sys.stderr.isatty()


def _read_error(e: Exception) -> CliError:
    return CliError(str(e), EXIT_INPUT)


def cmd_train(a: argparse.Namespace) -> int:
    from mimizuku.engine.detectors.base import NotEnoughData
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.sources.reader import AlertSourceError

    dets = tuple(x.strip() for x in a.detectors.split(",") if x.strip())
    model = Mimizuku(contamination=a.contamination, n_neighbors=a.n_neighbors, detectors=dets,
                     context_contamination=a.context_contamination,
                     ignore_users=a.ignore_user, ignore_files=a.ignore_file, abuse_files=a.abuse_file)
    try:
        model.fit(a.input, days=a.days, since=a.since, until=a.until, progress=_progress())
    except AlertSourceError as e:
        raise _read_error(e)
    except NotEnoughData as e:
        code = EXIT_INPUT if str(e).startswith("no alerts") else EXIT_DATA
        raise CliError(str(e), code)
    except ValueError as e:
        raise CliError(str(e), EXIT_USAGE)
    manifest = model.save_model(a.model_dir)
    summary = {"model_dir": os.path.abspath(a.model_dir), "model_version": manifest.get("model_version"),
               "alerts": model.n_alerts_, "read": model.read_stats_,
               "detectors": {n: {"alerts": d["alerts"], "situations": d["situations"]}
                             for n, d in manifest["detectors"].items()},
               "skipped_detectors": model.skipped_detectors_}
    print(json.dumps(summary, ensure_ascii=False))
    return EXIT_OK


def _load(model_dir: str):
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.store.model_dir import ModelError

    try:
        return Mimizuku.load_model(model_dir)
    except ModelError as e:
        raise CliError(f"cannot load model from {model_dir}: {e}", EXIT_MODEL)


def _table_row(r: Dict[str, Any]) -> str:
    f = r["fields"]
    what = f.get("path") or f.get("command") or f"rule {r['rule']['id']}"
    reason = r["reasons"][0] if r["reasons"] else ""
    return "  ".join([
        printable(r["timestamp"] or "-", 24, ellipsis="…").ljust(24),
        printable(r["agent"]["name"] or "-", 20, ellipsis="…").ljust(20),
        r["detector"].ljust(8),
        f"{r['score']:.3f}",
        r["severity"].ljust(8),
        printable(what, 60, ellipsis="…").ljust(60),
        printable(reason, 140, ellipsis="…"),
    ])


TABLE_HEADER = "  ".join(["timestamp".ljust(24), "agent".ljust(20), "detector", "score", "severity",
                          "what".ljust(60), "why"])


def cmd_score(a: argparse.Namespace) -> int:
    """Score an input; stdout (or ``--output``) gets nothing until a row is ready: an input error
    is said on stderr alone, not after a table header on a terminal (issue 17, item 13), and an
    existing ``--output`` file is left as it was."""
    from mimizuku.sources.reader import AlertSourceError, ReadStats

    model = _load(a.model_dir)
    opened: List[Any] = []
    stats = ReadStats()
    n = flagged = 0

    def out() -> Any:
        if not opened:
            opened.append(open(a.output, "w", encoding="utf-8") if a.output else sys.stdout)
            if a.format == "table":
                opened[0].write(TABLE_HEADER + "\n")
        return opened[0]

    try:
        records = model.iter_records(a.input, days=a.days, since=a.since, until=a.until,
                                     progress=_progress(), stats=stats)
        if a.correlate:
            from mimizuku.engine.correlate import correlate

            records = correlate(list(records), flag_related=a.flag_related)
        for r in records:
            n += 1
            flagged += r["anomaly"]
            if not (a.all or r["anomaly"]):
                continue
            out().write((json.dumps(r, ensure_ascii=False) if a.format == "jsonl" else _table_row(r)) + "\n")
        if stats.alerts == 0:
            raise CliError(f"no alerts in the input ({stats})", EXIT_INPUT)
        out()  # read and scored: the table has its header even without a row, --output exists
    except AlertSourceError as e:
        raise _read_error(e)
    finally:
        if a.output and opened:
            opened[0].close()
    print(f"scored {n} alerts, {flagged} anomalies; read: {stats}", file=sys.stderr)
    return EXIT_OK


def cmd_demo(a: argparse.Namespace) -> int:
    """Everything on embedded defaults: sample fleet → train on the quiet days → score the rest."""
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.tools import synth

    os.makedirs(a.out, exist_ok=True)
    cfg = synth.FleetConfig(days=a.days, seed=a.seed, attack_days=2, scale=a.scale)
    tree = os.path.join(a.out, "wazuh")
    alerts = list(synth.generate(cfg))
    synth.write_archive_tree(tree, alerts)
    stamps = sorted({x["timestamp"][:10] for x in alerts})
    split = stamps[-2]  # the last two days may hold attacks
    print(f"generated {len(alerts)} alerts for {len(stamps)} days under {tree}", file=sys.stderr)
    model = Mimizuku().fit([x for x in alerts if x["timestamp"][:10] < split], progress=_progress())
    model_dir = os.path.join(a.out, "model")
    model.save_model(model_dir)
    print(f"trained on the days before {split}; model in {model_dir}", file=sys.stderr)
    test = [x for x in alerts if x["timestamp"][:10] >= split]
    recs = model.score_records(test)
    flagged = [r for r, x in zip(recs, test) if r["anomaly"]]
    print(TABLE_HEADER)
    for r in flagged:
        print(_table_row(r))
    by_id = {x.get("id"): x for x in test}
    caught = {by_id[r["id"]]["_label"]["episode"] for r in flagged if by_id.get(r["id"], {}).get("_label", {}).get("attack")}
    episodes = {x["_label"]["episode"] for x in test if x.get("_label", {}).get("attack")}
    print(f"\n{len(flagged)} anomalies among {len(recs)} scored alerts; "
          f"attack episodes caught: {len(caught)}/{len(episodes)}", file=sys.stderr)
    return EXIT_OK


def cmd_serve(a: argparse.Namespace) -> int:
    from mimizuku.serve import command as serve

    return serve.run(a)


def cmd_status(a: argparse.Namespace) -> int:
    from mimizuku.serve import status

    return status.run(a)


COMMANDS = {"train": cmd_train, "score": cmd_score, "demo": cmd_demo, "serve": cmd_serve, "status": cmd_status}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:  # the generator has its own options (python -m mimizuku.tools.synth)
        from mimizuku.tools import synth

        try:
            return synth.main(argv[1:])
        except SystemExit as e:  # its argparse: usage errors exit 2, --help exits 0
            return int(e.code or 0)
    ap = build_parser()
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:  # argparse exits 2 on usage errors, 0 on --help
        return int(e.code or 0)
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING,
                        format="mimizuku: %(levelname)s: %(message)s")
    try:
        handler = COMMANDS.get(a.command)
        return handler(a) if handler is not None else a.func(a)
    except CliError as e:
        print(f"mimizuku {a.command}: error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"mimizuku {a.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as e:  # a bug: say so clearly, with the place
        import traceback

        tb = traceback.extract_tb(e.__traceback__)[-1]
        print(f"mimizuku {a.command}: internal error: {type(e).__name__}: {e} "
              f"(at {os.path.basename(tb.filename)}:{tb.lineno}; run with -v and report it)", file=sys.stderr)
        if a.verbose:
            traceback.print_exc()
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
