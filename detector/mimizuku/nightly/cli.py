"""The nightly job's commands: ``mimizuku retrain`` (and ``python -m mimizuku.nightly``), ``mimizuku report``.

Argument parsing, the output discipline of the wodle (``--summary-json``: nothing but the summary
line on stdout and stderr), logging and SIGTERM live here; the run itself is ``job.retrain``.
"""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import signal
import sys
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from mimizuku.core.text import printable
from mimizuku.nightly import job
from mimizuku.nightly.config import RetrainConfig
from mimizuku.nightly.job import Terminated, retrain, summary_line, usage_error_summary

__all__ = ["add_parser", "run", "main", "add_report_parser", "run_report"]

log = logging.getLogger("mimizuku.retrain")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku retrain``: add the subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "retrain", help="nightly job: retrain from the archive, validate, install, analyse the day",
        description=job.__doc__.split("\n\n")[0].split("\n", 1)[0] + " See docs/nightly.md.",
        epilog="Exit codes: 0 ok, 1 internal error, 2 usage, 3 no alerts, 4 model error, 5 not enough "
               "data, 6 locked (another run), 7 validation refused, 143 SIGTERM.")
    RetrainConfig.add_arguments(p)
    p.set_defaults(func=run)
    return p


def _wazuh_home(a: argparse.Namespace) -> Path:
    """--wazuh-home as given, else its default (options not given are None: the table's default)."""
    return Path(a.wazuh_home or RetrainConfig.setting("wazuh_home").default)


def _log_path(a: argparse.Namespace) -> Optional[Path]:
    if a.log_file:
        return Path(a.log_file)
    logs = _wazuh_home(a) / "logs"
    return logs / "mimizuku" / "retrain.log" if logs.is_dir() else None


@contextmanager
def _stdio(summary_json: bool, log_path: Optional[Path]) -> Iterator[Tuple[int, bool]]:
    """Yields (fd for the summary line, whether stderr reaches a person).

    With ``--summary-json``, fd 1 (and fd 2 unless it is a terminal) point to the log file for
    the whole run (the wodle turns every stdout/stderr line into an event); restored after.
    """
    err_tty = os.isatty(2)
    if not summary_json:
        yield 1, True
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    target = -1
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            target = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o640)
        except OSError:
            target = -1
    if target < 0:
        target = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(target if not err_tty else 2, 1)
        if not err_tty:
            os.dup2(target, 2)
        yield saved_out, err_tty
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        for fd in (saved_out, saved_err, target):
            try:
                os.close(fd)
            except OSError:
                pass


@contextmanager
def _logging(log_path: Optional[Path], to_stderr: bool, verbose: bool) -> Iterator[None]:
    logger = logging.getLogger("mimizuku")
    old = (logger.level, logger.propagate, list(logger.handlers))
    handlers: List[logging.Handler] = []
    fmt = logging.Formatter("%(asctime)s mimizuku retrain[%(process)d]: %(levelname)s: %(message)s")
    if log_path is not None:
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            h = logging.handlers.RotatingFileHandler(log_path, maxBytes=5 << 20, backupCount=3, encoding="utf-8")
            h.setFormatter(fmt)
            h.setLevel(logging.DEBUG if verbose else logging.INFO)
            handlers.append(h)
        except OSError:
            pass
    if to_stderr:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("mimizuku retrain: %(levelname)s: %(message)s"))
        h.setLevel(logging.DEBUG if verbose else logging.INFO)
        handlers.append(h)
    logger.handlers = handlers
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    logging.captureWarnings(True)
    pyw = logging.getLogger("py.warnings")
    old_w = (list(pyw.handlers), pyw.propagate)
    pyw.handlers, pyw.propagate = list(handlers), False
    try:
        yield
    finally:
        for h in handlers:
            try:
                h.close()
            except Exception:
                pass
        logger.setLevel(old[0])
        logger.propagate = old[1]
        logger.handlers = old[2]
        pyw.handlers, pyw.propagate = old_w
        logging.captureWarnings(False)


@contextmanager
def _sigterm() -> Iterator[None]:
    def handler(signum, frame):  # only raises in the main thread: the run unwinds, lock released
        raise Terminated()

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _human(summary: Dict[str, Any]) -> str:
    m = summary["mimizuku"]
    c = m.get("counts", {})
    lines = [f"mimizuku retrain: {m['status']}: model in use {m.get('version') or 'none'}"
             + (f" (candidate {m['candidate_version']})" if m.get("candidate_version") else "")]
    if m.get("error"):
        lines.append(f"  why: {m['error']}")
    hold = c.get("holdout")
    if "alerts_read" in c:
        judge = f"the hold-out model {hold['version']}" if hold else "the current model"
        lines.append(f"  read {c['alerts_read']:,} alerts ({c.get('bad_lines', 0)} bad lines, "
                     f"{c.get('damaged_files', 0)} damaged files, missing days: {', '.join(c.get('missing_days') or []) or 'none'}); "
                     f"excluded {c.get('excluded_flagged', 0):,} flagged by {judge}")
    if hold:
        lines.append(f"  first run: the day was analysed by {hold['version']}, trained on the days up to "
                     f"{hold['until']} (it never saw the day); the model installed learned without its anomalies")
    if "day" in c:
        d = c["day"]
        lines.append(f"  {d['date']}: {d['scored']:,} alerts scored, {d['anomalies']:,} anomalies, "
                     f"{d['clusters']:,} DBSCAN clusters, {d['noise']:,} noise")
    found = m.get("anomalies") or []
    for a in found:
        more = f" (+{a['repeats']} repeats)" if a.get("repeats") else ""
        if a.get("update_of"):
            more += f" (update of {printable(a['update_of'], 40)})"
        lines.append(f"    {printable(a.get('timestamp'), 40)[:19]}  {printable(a.get('agent'), 14):<14} "
                     f"{printable(a.get('detector'), 8):<8} {a.get('score_pct', 0):>3}%  "
                     f"{printable(a.get('severity'), 8):<8} {printable(a.get('reason'), 100)}{more}")
    if "day" in c and c["day"].get("anomalies", 0) > len(found):
        lines.append(f"    ... {c['day']['anomalies'] - len(found):,} more in the report")
    sl = c.get("syslog")
    if isinstance(sl, dict) and sl.get("selected"):
        from mimizuku.outputs.syslog import sent_text

        lines.append("  syslog: " + sent_text(sl, m.get("syslog_file")))
    for w in m.get("warnings", []):
        lines.append(f"  warning: {w}")
    if m.get("report"):
        lines.append(f"  report: {m['report']}")
    lines.append(f"  took {m['durations_ms'].get('total', 0) / 1000:.1f} s; exit {m['exit_code']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Entry point of ``mimizuku retrain`` (the CLI calls this with the parsed arguments)."""
    log_path = _log_path(args)
    verbose = bool(getattr(args, "retrain_verbose", False) or getattr(args, "verbose", False))
    with _stdio(args.summary_json, log_path) as (out_fd, stderr_ok), \
            _logging(log_path, stderr_ok, verbose), _sigterm():
        try:
            cfg = RetrainConfig.from_args(args)
            cfg.progress = stderr_ok and os.isatty(2)
        except (ValueError, OSError) as e:
            summary = usage_error_summary(_wazuh_home(args), args.model_dir, str(e))
        else:
            summary = retrain(cfg)
        code = int(summary["mimizuku"]["exit_code"])
        log.info("summary: %s", summary_line(summary))
        text = summary_line(summary) if args.summary_json else _human(summary)
        data = (text + "\n").encode("utf-8", "replace")
        while data:
            try:
                data = data[os.write(out_fd, data):]
            except BrokenPipeError:
                break
    return code


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mimizuku.nightly {retrain,rollback,report} ...`` (the same parsers the CLI uses)."""
    from mimizuku.store.versions import add_rollback_parser

    ap = argparse.ArgumentParser(prog="mimizuku")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_parser(sub)
    add_rollback_parser(sub)
    add_report_parser(sub)
    try:
        a = ap.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    return int(a.func(a))


# --- command line: mimizuku report ------------------------------------------------------------

def add_report_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku report``: an HTML report of scored records, or of one day of the archive."""
    p = subparsers.add_parser(
        "report", help="write a self-contained HTML report (of a day of the archive, or of scored records)",
        description="Either --input records.jsonl (scored records, as `mimizuku score --format jsonl` writes "
                    "them) or a day of the alert archive (--day, default yesterday), scored with the model "
                    "in use and clustered with DBSCAN. Writes nothing to SQL or syslog. Exit codes: 0 done, "
                    "2 usage, 3 no alerts that day, 4 model error; with --input those of the report module "
                    "(65 bad input, 66 missing input, 73 cannot write).")
    p.add_argument("--input", "-i", action="append", help="scored records, JSON lines (repeatable)")
    p.add_argument("--run", help="with --input: JSON file with the run's dict")
    p.add_argument("--clusters", help="with --input: JSON file {alert id: DBSCAN label}")
    p.add_argument("--coords", help="with --input: JSON file {alert id: [x, y]}")
    p.add_argument("--top", type=int, default=50, help="rows in the top-anomalies table (default 50)")
    p.add_argument("--title", help="page title")
    p.add_argument("--out", "-o", help="HTML file to write (default: <wazuh-home>/logs/mimizuku/reports/"
                                       "mimizuku-<day>-<version>.html)")
    p.add_argument("--day", help="day to analyse, YYYY-MM-DD (default yesterday)")
    p.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    p.add_argument("--alerts", help="alert source instead of <wazuh-home>'s archive")
    p.add_argument("--model-dir", help="model root (default <wazuh-home>/mimizuku/models)")
    p.set_defaults(func=run_report)
    return p


def run_report(args: argparse.Namespace) -> int:
    if args.input:
        from mimizuku.outputs import report

        if not args.out:
            print("mimizuku report: --out is required with --input", file=sys.stderr)
            return 2
        argv: List[str] = []
        for i in args.input:
            argv += ["--input", i]
        argv += ["--out", args.out, "--top", str(args.top)]
        for opt in ("run", "clusters", "coords", "title"):
            if getattr(args, opt):
                argv += [f"--{opt}", getattr(args, opt)]
        return report.main(argv)

    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.nightly import day_analysis
    from mimizuku.sources.reader import AlertSourceError
    from mimizuku.store.model_dir import ModelError
    from mimizuku.store.versions import resolve_model_dir

    try:
        day = date.fromisoformat(args.day) if args.day else date.today() - timedelta(days=1)
    except ValueError:
        print(f"mimizuku report: --day {args.day!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    model_dir = args.model_dir or os.path.join(args.wazuh_home, "mimizuku", "models")
    try:
        model = Mimizuku.load_model(resolve_model_dir(model_dir))
    except ModelError as e:
        print(f"mimizuku report: cannot load the model from {model_dir}: {e}", file=sys.stderr)
        return 4
    source = args.alerts or args.wazuh_home
    try:
        analysis = day_analysis.analyse_day(model, source, day, progress=sys.stderr.isatty())
    except AlertSourceError as e:
        print(f"mimizuku report: {e}", file=sys.stderr)
        return 3
    if not analysis.records:
        print(f"mimizuku report: no alerts for {day} in {source}", file=sys.stderr)
        return 3
    out = Path(args.out) if args.out else Path(args.wazuh_home) / "logs" / "mimizuku" / "reports" / \
        f"mimizuku-{day}-{analysis.model_version}.html"
    run = {"day": str(day), "model_version": analysis.model_version, **{"day_" + k: v for k, v in analysis.summary().items()}}
    try:
        path = day_analysis.write_day_report(analysis, out, run, {"model_dir": model_dir, "input": source})
    except OSError as e:
        print(f"mimizuku report: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 73
    s = analysis.summary()
    print(f"mimizuku report: {day}: {s['scored']:,} alerts scored, {s['anomalies']:,} anomalies, "
          f"{s['clusters']:,} clusters, {s['noise']:,} noise -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
