"""The command line: ``mimizuku generate`` and ``python -m mimizuku.tools.synth`` (options, progress on a
terminal, the summary on stderr).
"""
from __future__ import annotations

import argparse
import gzip as _gzip
import json
import os
import sys
import time
from datetime import date
from typing import Any, Dict, Iterable, Iterator, Optional, Sequence

from mimizuku.tools.synth.fleet import EPISODE_KINDS, LABEL_KEY, FleetConfig
from mimizuku.tools.synth.world import episodes, generate
from mimizuku.tools.synth.writers import alert_json, strip_labels, write_archive_tree, write_jsonl


def _progress(alerts: Iterable[Dict[str, Any]], total_days: int, stream: Any) -> Iterator[Dict[str, Any]]:
    """Show days and alert counts on a terminal while generating (nothing when not a tty)."""
    show = hasattr(stream, "isatty") and stream.isatty()
    n = 0
    last_day = None
    day_no = 0
    t0 = time.monotonic()
    last = t0
    for a in alerts:
        n += 1
        if show:
            day = a["timestamp"][:10]
            if day != last_day:
                last_day = day
                day_no += 1
            now = time.monotonic()
            if now - last > 0.5:
                last = now
                stream.write(f"\rgenerating: day {day_no}/{total_days}, {n:,} alerts, {n / (now - t0):,.0f}/s ")
                stream.flush()
        yield a
    if show:
        stream.write("\r" + " " * 70 + "\r")
        stream.flush()


def _tee_jsonl(alerts: Iterable[Dict[str, Any]], fh: Any) -> Iterator[Dict[str, Any]]:
    for a in alerts:
        fh.write(alert_json(a) + "\n")
        yield a


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m mimizuku.tools.synth --out DIR [--jsonl FILE] --days 14 --seed 0 [--scale X]
    [--no-attacks]``. Exit codes: 0 done, 1 could not write, 2 bad arguments."""
    p = argparse.ArgumentParser(prog="mimizuku generate",
                                description="Generate realistic Wazuh alerts for a small fleet, with labelled attacks.")
    p.add_argument("--out", help="write a Wazuh archive tree under DIR/logs/alerts/")
    p.add_argument("--jsonl", help="write all alerts to FILE, one JSON per line (.gz to compress, - for stdout)")
    p.add_argument("--days", type=int, default=14, help="days of activity (default 14)")
    p.add_argument("--start", help="first day, YYYY-MM-DD (default: today minus --days)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--scale", type=float, default=1.0,
                   help="activity scale; 1 = ~20k alerts per weekday, 5.5 = ~1M over 14 days (default 1)")
    p.add_argument("--attack-days", type=int, default=2, help="attacks only in the last N days (default 2)")
    p.add_argument("--episodes", help="comma-separated episode kinds (default: all): " + ",".join(EPISODE_KINDS))
    p.add_argument("--no-attacks", action="store_true", help="benign activity only")
    p.add_argument("--part-lines", type=int, help="rotate the daily files every N alerts (archive tree only)")
    p.add_argument("--no-alerts-json", action="store_true", help="do not keep today's file as alerts.json")
    p.add_argument("--episodes-out", help="write the episode metadata (JSON) to FILE")
    p.add_argument("--no-labels", action="store_true", help="drop the _label key (exactly what Wazuh writes)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    args = p.parse_args(argv)
    if not args.out and not args.jsonl:
        p.print_usage(sys.stderr)
        sys.stderr.write("mimizuku generate: error: give --out DIR and/or --jsonl FILE\n")
        return 2
    try:
        start = date.fromisoformat(args.start) if args.start else None
        cfg = FleetConfig(days=args.days, start=start, seed=args.seed, scale=args.scale, attack_days=args.attack_days,
                          episodes=[k.strip() for k in args.episodes.split(",") if k.strip()] if args.episodes else None,
                          attacks=not args.no_attacks)
        cfg.check()
        eps = episodes(cfg)
        alerts: Iterable[Dict[str, Any]] = _progress(generate(cfg), cfg.days, sys.stderr)
    except ValueError as e:
        sys.stderr.write(f"mimizuku generate: error: {e}\n")
        return 2
    counts = {"attack": 0}

    def count(it: Iterable[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
        for a in it:
            if a[LABEL_KEY]["attack"]:
                counts["attack"] += 1
            yield a

    alerts = count(alerts)
    if args.no_labels:
        alerts = strip_labels(alerts)
    t0 = time.monotonic()
    summary: Dict[str, Any] = {}
    try:
        if args.out and args.jsonl and args.jsonl != "-":
            tmp = f"{args.jsonl}.tmp-{os.getpid()}"
            opener = (lambda: _gzip.open(tmp, "wt", encoding="utf-8", newline="\n", compresslevel=6)) \
                if args.jsonl.endswith(".gz") else (lambda: open(tmp, "w", encoding="utf-8", newline="\n"))
            with opener() as fh:
                summary = write_archive_tree(args.out, _tee_jsonl(alerts, fh),
                                             today_as_alerts_json=not args.no_alerts_json, part_lines=args.part_lines)
            os.replace(tmp, args.jsonl)
            total = summary["alerts"]
        elif args.out:
            if args.jsonl == "-":
                alerts = _tee_jsonl(alerts, sys.stdout)
            summary = write_archive_tree(args.out, alerts, today_as_alerts_json=not args.no_alerts_json,
                                         part_lines=args.part_lines)
            total = summary["alerts"]
        else:
            total = write_jsonl(args.jsonl, alerts)
        if args.episodes_out:
            with open(args.episodes_out, "w", encoding="utf-8") as fh:
                json.dump(eps, fh, indent=2)
                fh.write("\n")
    except ValueError as e:
        sys.stderr.write(f"mimizuku generate: error: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"mimizuku generate: cannot write: {e}\n")
        return 1
    if not args.quiet:
        took = time.monotonic() - t0
        where = []
        if args.out:
            where.append(f"{len(summary.get('files', []))} files under {os.path.join(args.out, 'logs', 'alerts')}")
        if args.jsonl:
            where.append(args.jsonl)
        sys.stderr.write(f"{total:,} alerts ({counts['attack']:,} in {len(eps)} attack episodes) over {cfg.days} days "
                         f"in {took:.1f}s -> {'; '.join(where)}\n")
    return 0
