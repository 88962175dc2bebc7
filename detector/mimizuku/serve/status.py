"""``mimizuku status``: is the resident scorer running, with which model, and is anything stuck?

Asks the daemon over its socket (``{"op": "status"}``). When it does not answer, says so and shows
what can be read from disk: the model's manifest (version and age, without loading it), the
spool depths, the last status the daemon wrote and the follow bookmark.

Exit codes: 0 running and scoring; 1 running but not scoring (no model yet, catching up on the
spool) or its last model reload was refused; 2 usage; 3 not running.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from mimizuku.core.text import printable

EXIT_OK, EXIT_DEGRADED, EXIT_USAGE, EXIT_DOWN = 0, 1, 2, 3


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku status`` (the lead wires it into cli.py)."""
    p = subparsers.add_parser("status", help="state of the resident scorer (model, counters, spool, errors)",
                              description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    p.add_argument("--socket", help="the scorer's socket (default <home>/mimizuku/run/serve.sock)")
    p.add_argument("--model-dir", help="model directory (default <home>/mimizuku/models)")
    p.add_argument("--spool-dir", help="spool directory (default <home>/mimizuku/spool)")
    p.add_argument("--state-dir", help="the scorer's state directory (default <home>/mimizuku/run)")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the scorer (default 3)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def _paths(a: argparse.Namespace) -> Dict[str, Path]:
    home = Path(a.wazuh_home)
    state = Path(a.state_dir) if a.state_dir else home / "mimizuku" / "run"
    return {"socket": Path(a.socket) if a.socket else state / "serve.sock",
            "model_dir": Path(a.model_dir) if a.model_dir else home / "mimizuku" / "models",
            "spool_dir": Path(a.spool_dir) if a.spool_dir else home / "mimizuku" / "spool",
            "state_dir": state}


def _count(d: Path) -> Optional[int]:
    try:
        return sum(1 for n in os.listdir(d) if n.endswith(".json") and not n.startswith("."))
    except FileNotFoundError:
        return 0
    except OSError:
        return None


def from_disk(paths: Dict[str, Path]) -> Dict[str, Any]:
    """What can be known without the daemon."""
    from mimizuku.serve.config import BOOKMARK_NAME, STATUS_NAME

    out: Dict[str, Any] = {"running": False, "socket": str(paths["socket"])}
    d, m, error = _installed_manifest(paths)
    if error is None:
        out["model"] = {"version": m.get("model_version"), "created": m.get("created"), "path": str(d),
                        "dir": str(paths["model_dir"])}
        out["peer_groups"] = _rows(m.get("peer_groups"))
    else:
        out["model"] = {"version": None, "dir": str(paths["model_dir"]), "error": error}
    out["spool"] = {"alerts": _count(paths["spool_dir"] / "alerts"), "events": _count(paths["spool_dir"] / "events")}
    if (paths["spool_dir"] / "index").is_dir():   # anomaly documents the indexer has not taken yet
        out["spool"]["index"] = _count(paths["spool_dir"] / "index")
    try:
        last = json.loads((paths["state_dir"] / STATUS_NAME).read_text(encoding="utf-8"))
        out["last_status"] = {k: last.get(k) for k in ("written", "pid", "counters", "last_reload", "errors")}
    except (OSError, ValueError):
        pass
    try:
        out["follow_bookmark"] = json.loads((paths["state_dir"] / BOOKMARK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    return out


def _rows(groups: Any) -> List[Dict[str, Any]]:
    """The manifest's peer groups, only the well-formed rows."""
    if not isinstance(groups, list):
        return []
    return [g for g in groups if isinstance(g, dict) and isinstance(g.get("members"), list)]


def _installed_manifest(paths: Dict[str, Path]) -> Tuple[Optional[Path], Dict[str, Any], Optional[str]]:
    """(the installed model's directory, its manifest, None), read without loading the model, or
    (None, {}, why not)."""
    from mimizuku.serve.reload import resolve_model_dir
    from mimizuku.store.model_dir import ModelError, read_manifest

    try:
        d = resolve_model_dir(paths["model_dir"])
        return d, read_manifest(d), None
    except (ModelError, OSError, ValueError) as e:
        return None, {}, str(e)


def _peer_groups(paths: Dict[str, Path]) -> List[Dict[str, Any]]:
    """The installed model's peer groups (``mimizuku.engine.peers``), read from its manifest."""
    return _rows(_installed_manifest(paths)[1].get("peer_groups"))


def _age(created: Optional[str]) -> str:
    if not created:
        return "age unknown"
    from datetime import datetime, timezone

    try:
        t = datetime.fromisoformat(created.replace("Z", "+00:00"))
        if t.tzinfo is None:
            t = t.replace(tzinfo=timezone.utc)
        s = (datetime.now(timezone.utc) - t).total_seconds()
    except ValueError:
        return "age unknown"
    return _dur(s) + " old"


def _dur(s: float) -> str:
    s = int(max(0, s))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d"


def _when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def render(st: Dict[str, Any]) -> List[str]:
    lines: List[str] = []
    m = st.get("model") or {}
    if st.get("running"):
        state = "ready" if st.get("ready") else ("catching up on the spool" if m.get("version") else "waiting for a model")
        lines.append(f"mimizuku serve: running (pid {st.get('pid')}, up {_dur(st.get('uptime_s') or 0)}), {state}")
    else:
        lines.append(f"mimizuku serve: NOT running (no answer on {printable(st.get('socket'))})")
    if m.get("version"):
        lines.append(f"model:        {printable(m['version'])} ({_age(m.get('created'))}), {printable(m.get('path'))}")
    else:
        lines.append(f"model:        none ({printable(m.get('error') or 'not loaded')})")
    lr = st.get("last_reload") or (st.get("last_status") or {}).get("last_reload") or {}
    if lr:
        if lr.get("ok"):
            lines.append(f"last reload:  {_when(lr.get('at'))} ok, version {printable(lr.get('version'))}"
                         f" (rate windows {lr.get('rate_windows', '-')})")
        else:
            lines.append(f"last reload:  {_when(lr.get('at'))} REFUSED {printable(lr.get('path'))}: {printable(lr.get('error'))}"
                         f"; kept {printable(lr.get('kept'))}")
    fb = st.get("feedback") or {}
    if fb:
        lines.append(f"verdicts:      {fb.get('verdicts', 0)} from {printable(fb.get('path'))}"
                     + (f"; last read REFUSED: {printable(fb.get('error'))}" if fb.get("error") else ""))
    c = st.get("counters") or (st.get("last_status") or {}).get("counters")
    if c:
        prefix = "alerts:      " if st.get("running") else "last run:    "
        lines.append(f"{prefix} {c.get('received', 0)} received, {c.get('scored', 0)} scored, "
                     f"{c.get('duplicates', 0)} duplicates dropped, {c.get('skipped_own', 0)} own events skipped, "
                     f"{c.get('quarantined', c.get('engine_failed', 0))} quarantined")
        fl = st.get("flood") or {}
        lines.append(f"anomalies:     {c.get('anomalies', 0)}; events {c.get('events_sent', 0)} sent, "
                     f"{c.get('events_spooled', 0)} kept for analysisd, {c.get('events_not_kept', c.get('events_lost', 0))} not kept (alerts scored again)"
                     + (f"; flood control suppressed {fl.get('suppressed', 0)} in {fl.get('summaries', 0)} summaries"
                        if fl else ""))
    sp = st.get("spool") or {}
    q = st.get("queue_depth")
    lines.append(f"waiting:       {q if q is not None else '-'} in the queue; spool: {sp.get('alerts')} alerts, "
                 f"{sp.get('events')} events" + (f", {sp['index']} batches of index documents" if "index" in sp else ""))
    fo = st.get("follow")
    bm = (fo or {}).get("bookmark") or st.get("follow_bookmark")
    if bm:
        lines.append(f"follow:        {printable(bm.get('path'))} at byte {bm.get('offset')} of "
                     f"{printable(bm.get('archive') or 'inode %s' % bm.get('inode'))}")
    groups = st.get("peer_groups") or []
    if groups:
        peered = [g for g in groups if len(g["members"]) > 1]
        lines.append(f"peer groups:   {len(groups)} ({len(peered)} with peers; an agent alone backs off to the fleet)")
        for g in peered[:10]:
            members = [printable(m) for m in g["members"]]
            label = ", ".join(printable(t) for t in (g.get("label") or [])[:3])
            lines.append(f"  {printable(g.get('id'))}: {', '.join(members[:8])}"
                         f"{f' … ({len(members)} agents)' if len(members) > 8 else ''}"
                         f"{f' — {label}' if label else ''}")
        if len(peered) > 10:
            lines.append(f"  … {len(peered) - 10} more (mimizuku status --json lists them all)")
    errs = st.get("errors") or (st.get("last_status") or {}).get("errors") or []
    for e in errs[-5:]:
        lines.append(f"error:         {_when(e.get('at'))} {printable(e.get('message'))}")
    return lines


def collect(a: argparse.Namespace) -> Tuple[Dict[str, Any], int]:
    from mimizuku.integratord import client

    paths = _paths(a)
    try:
        ans = client.call(paths["socket"], {"op": "status"}, timeout=a.timeout)
        st = ans.get("status") if isinstance(ans, dict) and ans.get("ok") else None
    except (OSError, ValueError):
        st = None
    if not isinstance(st, dict):
        return from_disk(paths), EXIT_DOWN
    st.setdefault("peer_groups", _peer_groups(paths))
    refused = (st.get("last_reload") or {}).get("ok") is False
    return st, EXIT_OK if st.get("ready") and not refused else EXIT_DEGRADED


def run(a: argparse.Namespace) -> int:
    st, code = collect(a)
    if a.json:
        print(json.dumps(dict(st, exit_code=code), default=str, ensure_ascii=False))
    else:
        print("\n".join(render(st)))
    return code


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mimizuku status", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return EXIT_USAGE if e.code else 0
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
