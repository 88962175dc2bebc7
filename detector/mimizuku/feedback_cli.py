"""`mimizuku feedback add | list | revoke | import`: the analyst's verdicts (docs/feedback.md).

A verdict is given on one alert and stored about its *situation* (``mimizuku.engine.feedback``),
worked out by the model that scores it: the alert is read from ``--input`` (anything the reader
accepts) and scored as the scorer would, and the situations of the detectors that flagged it
(else of the one its record speaks for) are stored with the scope, expiry, author and note.
Changes go to the verdict store (``mimizuku.store.feedback``) under its lock, then to SQL,
syslog and Wazuh (``mimizuku.feedback_audit``).

Exit codes: 0 done; 2 usage; 3 input (alert not found, unknown verdict id, an import with bad
lines: the good ones are applied, each bad one reported); 4 the model or the verdict store is
missing or unsafe.
"""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from mimizuku.core.text import printable
from mimizuku.engine.feedback import (
    DEFAULT_EXPIRY,
    DEFAULT_SCOPE,
    MAX_TEXT,
    SCOPES,
    VERDICTS,
    FeedbackEntry,
    FeedbackFormatError,
    FeedbackSet,
    check_id,
    entry_json_line,
    iso,
    new_id,
    parse_expiry,
    situations_of,
)

__all__ = ["add_parsers", "entry_for", "find_alert", "window_args", "parse_import", "FeedbackCommandError", "MAX_LINE"]

EXIT_OK, EXIT_USAGE, EXIT_INPUT, EXIT_MODEL = 0, 2, 3, 4
#: the longest import line read (an alert with its full log fits easily)
MAX_LINE = 1 << 20


class FeedbackCommandError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# --- parsers ------------------------------------------------------------------------------------

def _store_args(p: argparse.ArgumentParser, model_required: bool) -> None:
    p.add_argument("--model-dir", "-m", required=model_required,
                   help="model directory or model root (locates the verdict store beside it)")
    p.add_argument("--store", help="verdict store file (default <model-dir>/../feedback/feedback.json)")
    p.add_argument("--group", default="wazuh", help="group given read access to the store (default wazuh)")


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db-url", help="SQLAlchemy URL for the feedback table (default: the nightly job's "
                                    "<model-root>/mimizuku.db when it exists)")
    p.add_argument("--wazuh-home", type=Path, default=Path("/var/ossec"),
                   help="Wazuh installation: its queue socket gets the audit event (default /var/ossec)")
    p.add_argument("--no-syslog", action="store_true", help="do not write the change to syslog")


def window_args(p: argparse.ArgumentParser) -> None:
    """Where in ``--input`` the alert is: its day or time span (the stream is scored from there)."""
    p.add_argument("--since", help="first day or time to read (YYYY-MM-DD[THH:MM:SS])")
    p.add_argument("--until", help="last day (inclusive) or time (exclusive) to read")


def _by_default() -> str:
    """Who is deciding: the user behind sudo, else the user running the command."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def add_parsers(sub: Any) -> None:
    """``mimizuku feedback add | list | revoke | import``."""
    f = sub.add_parser("feedback", help="analysts' verdicts: mark false positives and confirmed incidents "
                                        "(docs/feedback.md)")
    fs = f.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")

    a = fs.add_parser("add", help="give a verdict on one alert: stored for its situation, scope and time")
    _store_args(a, True)
    a.add_argument("--input", "-i", nargs="+", metavar="PATH",
                   help="where the alert is: alerts.json, an archive, a logs/alerts tree or an indexer URL "
                        "(without it: the alert's scored record in the SQL store, --db-url)")
    a.add_argument("--alert-id", required=True, help="the alert's id (its record's id)")
    window_args(a)
    a.add_argument("--verdict", required=True, choices=VERDICTS,
                   help="false-positive: stop flagging this situation (still scored and recorded, learnt "
                        "at the next retrain); confirmed: an incident, always flagged, never learnt")
    a.add_argument("--scope", choices=SCOPES, default=DEFAULT_SCOPE,
                   help=f"how far the verdict reaches (default {DEFAULT_SCOPE})")
    a.add_argument("--expires", help="30d, 12h, 45m, 2w, an ISO time or never (default: "
                                     + ", ".join(f"{k} {v}" for k, v in DEFAULT_EXPIRY.items()) + ")")
    a.add_argument("--note", default="", help="why (kept with the verdict)")
    a.add_argument("--by", help="who decided (default: the user behind sudo, else the current user)")
    _audit_args(a)
    a.set_defaults(func=cmd_add)

    ls = fs.add_parser("list", help="list the verdicts (active, expired and revoked)")
    _store_args(ls, False)
    ls.add_argument("--format", choices=("table", "jsonl"), default="table",
                    help="table for a person, jsonl for a tool (what feedback import reads)")
    ls.set_defaults(func=cmd_list)

    r = fs.add_parser("revoke", help="stop a verdict from applying (it stays listed, revoked)")
    r.add_argument("id", help="the verdict's id (fb-...)")
    _store_args(r, False)
    r.add_argument("--by", help="who revokes it (default: the user behind sudo, else the current user)")
    _audit_args(r)
    r.set_defaults(func=cmd_revoke)

    i = fs.add_parser("import", help="add verdicts from a JSON-lines file a case-management or SOAR tool wrote")
    i.add_argument("file", help="JSON lines (docs/feedback.md); - for standard input")
    _store_args(i, False)
    i.add_argument("--by", help="author of lines that name none (default: the current user)")
    _audit_args(i)
    i.set_defaults(func=cmd_import)


# --- shared -------------------------------------------------------------------------------------

def _store(a: argparse.Namespace):
    from mimizuku.store.feedback import FeedbackStore, default_path

    if a.store:
        return FeedbackStore(a.store, a.group)
    if not a.model_dir:
        raise FeedbackCommandError("give --model-dir (the store is beside it) or --store", EXIT_USAGE)
    return FeedbackStore(default_path(a.model_dir), a.group)


def _audit(a: argparse.Namespace):
    from mimizuku.feedback_audit import Audit

    return Audit(db_url=a.db_url, model_dir=a.model_dir, home=a.wazuh_home, syslog=not a.no_syslog)


def _load_model(model_dir: str):
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.store.model_dir import ModelError

    try:
        return Mimizuku.load_model(model_dir, feedback=None)
    except ModelError as e:
        raise FeedbackCommandError(f"cannot load model from {model_dir}: {e}", EXIT_MODEL)


def entry_for(model: Any, scored: Any, verdict: str, *, scope: str = DEFAULT_SCOPE, expires: Optional[str] = None,
              note: str = "", by: str, now: Optional[float] = None, source: str = "cli",
              vid: Optional[str] = None, detectors: Optional[Tuple[str, ...]] = None) -> FeedbackEntry:
    """The verdict on one scored alert (``Mimizuku.iter_scored``'s ``ScoredAlert``): about the
    situations of ``detectors``, by default those that flagged it, else the one its record
    speaks for."""
    if verdict not in VERDICTS:
        raise FeedbackFormatError(f"verdict must be one of {', '.join(VERDICTS)}")
    if scope not in SCOPES:
        raise FeedbackFormatError(f"scope must be one of {', '.join(SCOPES)}")
    if scored.verdict is None:
        raise FeedbackFormatError("no detector of the model scores this alert: it has no situation to judge")
    for what, text, limit in (("note", note, MAX_TEXT), ("by", by, 255)):
        if not isinstance(text, str) or len(text) > limit or (what == "by" and not text):
            raise FeedbackFormatError(f"{what} must be a{' non-empty' if what == 'by' else ''} string of at "
                                      f"most {limit} characters")
    t = time.time() if now is None else now
    names = detectors or scored.verdict.detectors or (scored.verdict.best,)
    sits = situations_of(scored.scored, names, model.peer_groups())
    if not sits:
        raise FeedbackFormatError("the detectors that judge this alert cannot take a verdict")
    rid = scored.record["id"] if scored.record is not None else _alert_id(scored.alert)
    return FeedbackEntry(vid or new_id(), verdict, scope, tuple(sits), t, by,
                         parse_expiry(expires if expires is not None else DEFAULT_EXPIRY[verdict], t),
                         note, rid, source)


def find_alert(model: Any, inputs: List[str], alert_id: str, since: Optional[str] = None,
               until: Optional[str] = None) -> Any:
    """The alert ``alert_id`` of ``inputs`` as the model scores it in its stream (``ScoredAlert``)."""
    from mimizuku.core import fields
    from mimizuku.sources.reader import AlertSourceError

    try:
        for s in model.iter_scored(inputs, since=since, until=until):
            if fields.alert_id(s.alert) == alert_id or (s.record is not None and s.record["id"] == alert_id):
                return s
    except AlertSourceError as e:
        raise FeedbackCommandError(str(e), EXIT_INPUT)
    raise FeedbackCommandError(f"no alert with id {alert_id!r} in {' '.join(inputs)}", EXIT_INPUT)


def alert_of_row(row: Dict[str, Any]) -> Dict[str, Any]:
    """The alert as far as its SQL record (``alerts`` row, ``mimizuku.outputs.sql``) tells it:
    agent, rule, and the fields the detectors key on (path and the event its rule names, command
    line, user, source address), in the shape the readers give them."""
    from mimizuku.core.fields import COMMAND_RULES, SUDO_RULES

    rid, user, cmd = row.get("rule_id"), row.get("user"), row.get("command")
    alert: Dict[str, Any] = {
        "id": row.get("alert_id"),
        "timestamp": row["timestamp"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000" if row.get("timestamp") else None,
        "agent": {"id": row.get("agent_id"), "name": row.get("agent_name"), "ip": row.get("agent_ip")},
        "rule": {"id": rid, "level": row.get("rule_level"), "description": row.get("rule_description")},
        "location": row.get("location"),
    }
    data: Dict[str, Any] = {}
    if row.get("path"):
        alert["syscheck"] = {"path": row["path"], "audit": {"effective_user": {"name": user}} if user else {}}
    elif cmd and rid in SUDO_RULES:
        data.update(command=cmd, srcuser=user)
    elif cmd and rid in COMMAND_RULES:
        data["audit"] = {"execve": {"a0": cmd}}
        if user:
            alert["full_log"] = f'type=EXECVE UID="{user}"'
    elif user:
        data["srcuser"] = user
    if row.get("srcip"):
        data["srcip"] = row["srcip"]
    if data:
        alert["data"] = data
    return {k: v for k, v in alert.items() if v is not None}


def _from_sql(a: argparse.Namespace, model: Any) -> Tuple[Any, Tuple[str, ...]]:
    """The alert ``--alert-id`` rebuilt from its SQL record and judged by the model, and the
    detectors the verdict is about: the one its record spoke for, with those that flag the
    rebuilt alert."""
    from mimizuku.feedback_audit import Audit
    from mimizuku.outputs.sql.sink import SqlOutputError, SqlSink

    url = Audit(db_url=a.db_url, model_dir=a.model_dir, syslog=False).db_url
    if not url:
        raise FeedbackCommandError("give --input (where the alert is), or --db-url when the SQL store holds its "
                                   "scored record", EXIT_USAGE)
    try:
        sink = SqlSink(url)
        try:
            row = sink.find_alert(a.alert_id)
        finally:
            sink.close()
    except SqlOutputError as e:
        raise FeedbackCommandError(f"cannot read the SQL store: {e}", EXIT_INPUT)
    if row is None:
        raise FeedbackCommandError(f"no scored record of alert {a.alert_id!r} in the SQL store: give --input",
                                   EXIT_INPUT)
    if row.get("truncated"):
        raise FeedbackCommandError(f"the SQL record of alert {a.alert_id!r} was cut to its column sizes: its "
                                   f"situation cannot be rebuilt from it; give --input", EXIT_INPUT)
    scored = model.judge_batch([alert_of_row(row)])[0]
    if scored.verdict is None or row.get("detector") not in scored.scored:
        raise FeedbackCommandError(f"the SQL record of alert {a.alert_id!r} does not rebuild into an alert its "
                                   f"detector {row.get('detector')!r} scores: give --input", EXIT_INPUT)
    return scored, tuple(dict.fromkeys((row["detector"],) + scored.verdict.detectors))


def _append(store: Any, entries: List[FeedbackEntry]) -> List[FeedbackEntry]:
    """Add entries under the store's lock; an id already stored is skipped. Returns those added."""
    def change(rows: List[Any]) -> List[FeedbackEntry]:
        have = {r.get("id") for r in rows if isinstance(r, dict)}
        added = [e for e in entries if e.id not in have]
        rows.extend(e.to_json() for e in added)
        return added

    return store.update(change)


def _run(fn, a: argparse.Namespace) -> int:
    from mimizuku.store.feedback import FeedbackStoreError

    try:
        return fn(a)
    except FeedbackCommandError as e:
        print(f"mimizuku feedback: error: {printable(e, 2000)}", file=sys.stderr)
        return e.code
    except FeedbackStoreError as e:
        print(f"mimizuku feedback: error: {printable(e, 2000)}", file=sys.stderr)
        return EXIT_MODEL
    except FeedbackFormatError as e:
        print(f"mimizuku feedback: error: {printable(e, 2000)}", file=sys.stderr)
        return EXIT_USAGE


# --- the commands -------------------------------------------------------------------------------

def cmd_add(a: argparse.Namespace) -> int:
    return _run(_add, a)


def _add(a: argparse.Namespace) -> int:
    from mimizuku.feedback_audit import change_of

    store = _store(a)
    model = _load_model(a.model_dir)
    detectors = None
    if a.input:
        scored = find_alert(model, a.input, a.alert_id, a.since, a.until)
    else:
        scored, detectors = _from_sql(a, model)
    entry = entry_for(model, scored, a.verdict, scope=a.scope, expires=a.expires, note=a.note,
                      by=a.by or _by_default(), detectors=detectors)
    if a.verdict == "false-positive" and not scored.flagged and detectors is None:
        print(f"mimizuku feedback: note: the model in use does not flag alert {printable(a.alert_id, 200)}",
              file=sys.stderr)
    _append(store, [entry])
    _audit(a).tell([change_of("add", entry.to_json())])
    print(entry.id)
    return EXIT_OK


def cmd_list(a: argparse.Namespace) -> int:
    return _run(_list, a)


def _list(a: argparse.Namespace) -> int:
    store = _store(a)
    fs = FeedbackSet.from_json(store.load(), str(store.path))
    now = time.time()
    if a.format == "jsonl":
        for e in fs.entries:
            sys.stdout.write(entry_json_line(e) + "\n")
        return EXIT_OK
    print("  ".join(["id".ljust(15), "state".ljust(7), "verdict".ljust(14), "scope".ljust(13), "by".ljust(12),
                     "given".ljust(20), "expires".ljust(20), "situation"]))
    for e in fs.entries:
        s = e.situations[0]
        print("  ".join([e.id.ljust(15), e.state(now).ljust(7), e.verdict.ljust(14), e.scope.ljust(13),
                         printable(e.by, 12, ellipsis="…").ljust(12), (iso(e.created_at) or "-").ljust(20),
                         (iso(e.expires_at) or "never").ljust(20), printable(s.summary(), 160, ellipsis="…")]))
    return EXIT_OK


def cmd_revoke(a: argparse.Namespace) -> int:
    return _run(_revoke, a)


def _revoke(a: argparse.Namespace) -> int:
    from mimizuku.feedback_audit import change_of

    store = _store(a)
    by = a.by or _by_default()
    now = time.time()

    def change(rows: List[Any]) -> Optional[Dict[str, Any]]:
        for r in rows:
            if isinstance(r, dict) and r.get("id") == a.id:
                if r.get("revoked_at") is not None:
                    return None
                r["revoked_at"], r["revoked_by"] = iso(now), by
                return dict(r)
        raise FeedbackCommandError(f"no verdict {a.id!r} in {store.path}", EXIT_INPUT)

    got = store.update(change)
    if got is None:
        print(f"mimizuku feedback: verdict {printable(a.id, 60)} was already revoked", file=sys.stderr)
        return EXIT_OK
    _audit(a).tell([change_of("revoke", got)])
    print(a.id)
    return EXIT_OK


def cmd_import(a: argparse.Namespace) -> int:
    return _run(_import, a)


def _read_lines(path: str) -> Iterable[bytes]:
    if path == "-":
        yield from sys.stdin.buffer
        return
    try:
        f = open(path, "rb")
    except OSError as e:
        raise FeedbackCommandError(f"cannot read {path}: {e.strerror or e}", EXIT_INPUT)
    with f:
        while True:
            line = f.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE and not line.endswith(b"\n"):
                while True:  # the rest of an over-long line
                    more = f.readline(MAX_LINE + 1)
                    if not more or more.endswith(b"\n"):
                        break
            yield line


def parse_import(lines: Iterable[bytes], *, model: Any = None, by: str = "import",
                 now: Optional[float] = None) -> Tuple[List[FeedbackEntry], List[Tuple[int, str]]]:
    """The verdicts of an import (docs/feedback.md) and the problems of its bad lines, as (line
    number, what is wrong). Never raises on content: a line is taken whole or not at all.

    A line is one JSON object: either a verdict on an alert (``verdict``, ``alert``: the Wazuh
    alert, optional ``scope``, ``expires``, ``note``, ``by``, ``id``; needs ``model`` to work out
    its situation) or a stored verdict as ``feedback list --format jsonl`` writes it."""
    t = time.time() if now is None else now
    entries: List[FeedbackEntry] = []
    problems: List[Tuple[int, str]] = []
    seen = set()
    for n, raw in enumerate(lines, 1):
        try:
            if len(raw) > MAX_LINE:
                raise FeedbackFormatError(f"longer than {MAX_LINE} bytes")
            text = raw.decode("utf-8").strip()
            if not text:
                continue
            obj = json.loads(text)
            e = _import_line(obj, model, by, t)
            if e.id in seen:
                raise FeedbackFormatError(f"id {e.id} given twice in this file")
            seen.add(e.id)
            entries.append(e)
        except (FeedbackFormatError, UnicodeDecodeError) as ex:
            problems.append((n, str(ex)))
        except (ValueError, RecursionError) as ex:
            problems.append((n, f"not JSON: {type(ex).__name__}"))
        except Exception as ex:  # an alert the engine could not score: reported, the import goes on
            problems.append((n, f"cannot be judged: {type(ex).__name__}: {ex}"))
    return entries, problems


_LINE_KEYS = {"verdict", "alert", "scope", "expires", "note", "by", "id"}


def _import_line(obj: Any, model: Any, by: str, now: float) -> FeedbackEntry:
    if not isinstance(obj, dict):
        raise FeedbackFormatError("a line is a JSON object")
    if "situations" in obj:   # a stored verdict (feedback list --format jsonl)
        e = FeedbackEntry.from_json(obj)
        e.source = "import"
        return e
    unknown = sorted(set(obj) - _LINE_KEYS)
    if unknown:
        raise FeedbackFormatError(f"unknown field(s): {', '.join(printable(k, 40) for k in unknown[:5])}")
    for k in ("scope", "expires", "note", "by", "id", "verdict"):
        if k in obj and not isinstance(obj[k], str):
            raise FeedbackFormatError(f"{k} must be a string")
    if obj.get("verdict") not in VERDICTS:
        raise FeedbackFormatError(f"verdict must be one of {', '.join(VERDICTS)}")
    alert = obj.get("alert")
    if not isinstance(alert, dict):
        raise FeedbackFormatError("alert (the Wazuh alert, a JSON object) is missing")
    if model is None:
        raise FeedbackFormatError("a line with an alert needs --model-dir (the model works out its situation)")
    vid = obj.get("id")
    if vid is not None:
        check_id(vid)
    scored = model.judge_batch([alert])[0]
    return entry_for(model, scored, obj["verdict"], scope=obj.get("scope") or DEFAULT_SCOPE,
                     expires=obj.get("expires"), note=obj.get("note") or "", by=obj.get("by") or by,
                     now=now, source="import", vid=vid)


def _alert_id(alert: Dict[str, Any]) -> str:
    from mimizuku.core import fields
    from mimizuku.core.alert_identity import content_id

    return fields.alert_id(alert) or content_id(alert)


def _import(a: argparse.Namespace) -> int:
    from mimizuku.feedback_audit import change_of

    store = _store(a)
    model = _load_model(a.model_dir) if a.model_dir else None
    entries, problems = parse_import(_read_lines(a.file), model=model, by=a.by or _by_default())
    for n, why in problems:
        print(f"mimizuku feedback import: line {n} skipped: {printable(why, 500)}", file=sys.stderr)
    added = _append(store, entries) if entries else []
    _audit(a).tell([change_of("import", e.to_json()) for e in added])
    for e in added:
        print(e.id)
    print(f"imported {len(added)} verdict(s); {len(entries) - len(added)} already present; "
          f"{len(problems)} bad line(s) skipped", file=sys.stderr)
    return EXIT_INPUT if problems else EXIT_OK
