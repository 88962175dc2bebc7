"""Where generated alerts go: JSON lines (gzipped by suffix, ``-`` for stdout) or a Wazuh archive
tree laid out as a manager keeps it (past days gzipped, intra-day parts, ``alerts.json``
hard-linked to today's file). Both write compact JSON, as analysisd does.
"""
from __future__ import annotations

import gzip as _gzip
import json
import os
import re
import sys
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, Iterator, List, Optional

from mimizuku.core.atomic import removed_on_failure
from mimizuku.tools.synth.fleet import LABEL_KEY
from mimizuku.tools.synth.formats import MONTHS


def strip_labels(alerts: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """The alerts without their ``_label`` (what a Wazuh manager would have written)."""
    for a in alerts:
        if LABEL_KEY in a:
            a = {k: v for k, v in a.items() if k != LABEL_KEY}
        yield a


def alert_json(alert: Dict[str, Any]) -> str:
    return json.dumps(alert, ensure_ascii=False, separators=(",", ":"))


def write_jsonl(path: "os.PathLike[str] | str", alerts: Iterable[Dict[str, Any]], *, gzip: Optional[bool] = None) -> int:
    """Write one alert per line (compact JSON, as analysisd does); ``gzip`` defaults to the
    ``.gz`` suffix. ``path`` ``-`` writes to stdout. Written to a temporary file and renamed, so
    a failure never leaves half a file. Returns the number of alerts written."""
    path = os.fspath(path)
    n = 0
    if path == "-":
        out = sys.stdout
        for a in alerts:
            out.write(alert_json(a) + "\n")
            n += 1
        out.flush()
        return n
    use_gz = path.endswith(".gz") if gzip is None else bool(gzip)
    tmp = f"{path}.tmp-{os.getpid()}"
    with removed_on_failure(tmp):
        if use_gz:
            fh = _gzip.open(tmp, "wt", encoding="utf-8", newline="\n", compresslevel=6)
        else:
            fh = open(tmp, "w", encoding="utf-8", newline="\n")
        with fh:
            for a in alerts:
                fh.write(alert_json(a) + "\n")
                n += 1
        os.replace(tmp, path)
    return n


def write_archive_tree(root: "os.PathLike[str] | str", alerts: Iterable[Dict[str, Any]], *,
                       today_as_alerts_json: bool = True, part_lines: Optional[int] = None) -> Dict[str, Any]:
    """Lay alerts out the way a manager keeps them under ``root/logs/alerts``.

    Past days go to ``YYYY/Mon/ossec-alerts-DD.json.gz`` (gzipped by monitord after midnight).
    If the last day is today (UTC) and ``today_as_alerts_json``, it stays uncompressed as
    ``ossec-alerts-DD.json`` with ``alerts.json`` hard-linked to it. ``part_lines=N`` rotates
    within a day every N alerts the way analysisd names the parts: ``ossec-alerts-DD.json``,
    then ``ossec-alerts-DD-001.json``, ``-002``...; rotated parts are gzipped, the live one is
    not. Alerts must be in time order. Returns ``{"root", "alerts", "days", "files",
    "alerts_json"}``."""
    if part_lines is not None and (not isinstance(part_lines, int) or part_lines < 1):
        raise ValueError(f"part_lines must be a positive integer, got {part_lines!r}")
    base = os.path.join(os.fspath(root), "logs", "alerts")
    os.makedirs(base, exist_ok=True)
    today = datetime.now(timezone.utc).date().isoformat()
    files: List[str] = []
    state: Dict[str, Any] = {"day": None, "fh": None, "path": None, "gz": False, "part": 0, "lines": 0}
    n = 0
    days = 0
    live: Optional[str] = None

    def part_path(day: str, part: int, gz: bool) -> str:
        y, m, dd = day.split("-")
        d = os.path.join(base, y, MONTHS[int(m) - 1])
        os.makedirs(d, exist_ok=True)
        name = f"ossec-alerts-{dd}" + (f"-{part:03d}" if part else "") + ".json" + (".gz" if gz else "")
        return os.path.join(d, name)

    def close(final: bool) -> None:
        fh = state["fh"]
        if fh is None:
            return
        fh.close()
        path = state["path"]
        if not state["gz"] and not final:  # a rotated part of today: compressed like monitord does
            with open(path, "rb") as src, _gzip.open(path + ".gz", "wb", compresslevel=6) as dst:
                while True:
                    chunk = src.read(1 << 20)
                    if not chunk:
                        break
                    dst.write(chunk)
            os.unlink(path)
            path += ".gz"
        files.append(path)
        state["fh"] = None

    def open_part(day: str, part: int) -> None:
        gz = not (today_as_alerts_json and day == today)
        path = part_path(day, part, gz)
        state.update(day=day, part=part, lines=0, gz=gz, path=path,
                     fh=_gzip.open(path, "wt", encoding="utf-8", newline="\n", compresslevel=6) if gz
                     else open(path, "w", encoding="utf-8", newline="\n"))

    try:
        for a in alerts:
            ts = a.get("timestamp") or a.get("@timestamp") or ""
            day = str(ts)[:10]
            if not re.match(r"^\d{4}-\d{2}-\d{2}$", day):
                raise ValueError(f"alert {a.get('id')!r} has no usable timestamp: {ts!r}")
            if day != state["day"]:
                if state["day"] is not None and day < state["day"]:
                    raise ValueError(f"alerts are not in time order ({day} after {state['day']})")
                close(final=False if state["gz"] is False and state["day"] == today else True)
                open_part(day, 0)
                days += 1
            elif part_lines is not None and state["lines"] >= part_lines:
                close(final=False)
                open_part(day, state["part"] + 1)
            state["fh"].write(alert_json(a) + "\n")
            state["lines"] += 1
            n += 1
        if state["fh"] is not None:
            last_live = not state["gz"]
            close(final=True)
            if last_live:
                live = os.path.join(base, "alerts.json")
                if os.path.lexists(live):
                    os.unlink(live)
                try:
                    os.link(files[-1], live)
                except OSError:
                    import shutil
                    shutil.copyfile(files[-1], live)
    finally:
        if state["fh"] is not None:
            state["fh"].close()
    return {"root": os.fspath(root), "alerts": n, "days": days, "files": files, "alerts_json": live}
