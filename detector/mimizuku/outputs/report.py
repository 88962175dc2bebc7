"""One self-contained HTML page for a run: what was scored, what stood out, and why.

``write_report(path, records, run=..., clusters=...)`` draws the plots with matplotlib's Agg
backend and embeds them as base64 PNG data URIs, so the single file can be mailed, archived or
opened from the Wazuh manager without any other resource. All text that came from alerts (agent
names, paths, command lines, reasons) is HTML-escaped, and plot labels are escaped for
matplotlib's mathtext; the page's Content-Security-Policy allows no script at all.

``main(argv)`` is ``mimizuku report --input records.jsonl --out report.html``.
"""
from __future__ import annotations

import argparse
import base64
import gzip
import html
import io
import json
import math
import statistics
import sys
import warnings
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from mimizuku._version import __version__
from mimizuku.core.atomic import write_atomic
from mimizuku.core.fields import dig as _get
from mimizuku.outputs import parse_timestamp

__all__ = ["write_report", "render_report", "read_records", "main"]

EX_OK, EX_USAGE, EX_DATAERR, EX_NOINPUT, EX_CANTCREAT = 0, 2, 65, 66, 73

DETECTOR_COLORS = {"files": "#1f77b4", "commands": "#ff7f0e", "context": "#2ca02c"}
SEVERITY_ORDER = ["critical", "high", "medium", "low", "none"]
SEVERITY_COLORS = {"critical": "#7b1fa2", "high": "#d32f2f", "medium": "#f57c00", "low": "#fbc02d", "none": "#9e9e9e"}
DISPLAY_CAP = 300  # characters of one attacker-controlled value shown in a table cell


# --- small helpers ---------------------------------------------------------------------------

def _esc(value: Any, cap: int = DISPLAY_CAP) -> str:
    """HTML-escaped, bounded text; control characters shown as ``\\xNN`` so nothing is hidden."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    s = s.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    if len(s) > cap:
        s = s[:cap] + f"… [+{len(s) - cap} chars]"
    s = "".join(c if (c.isprintable() or c == " ") else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                for c in s)
    return html.escape(s, quote=True)


def _label(value: Any, cap: int = 32) -> str:
    """Text safe for a matplotlib label: bounded, no controls, ``$`` escaped (no mathtext)."""
    s = "" if value is None else str(value)
    s = "".join(c if c.isprintable() else "?" for c in s)
    if len(s) > cap:
        s = s[:cap - 1] + "…"
    return s.replace("$", r"\$")  # matplotlib shows "\$" as "$" and never enters mathtext


def _score(r: Mapping[str, Any]) -> Optional[float]:
    try:
        f = float(r.get("score"))
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _cluster_of(r: Mapping[str, Any], clusters: Optional[Mapping[str, Any]]) -> Optional[int]:
    v = clusters.get(str(r.get("id"))) if clusters is not None and r.get("id") is not None else None
    if v is None:
        v = r.get("cluster")
    try:
        return None if v is None or isinstance(v, bool) else int(v)
    except (TypeError, ValueError):
        return None


def _when(ts: Any) -> str:
    """Alert time as ``YYYY-MM-DD HH:MM:SS`` UTC, or the raw value (escaped) if unparseable."""
    t = parse_timestamp(ts)
    return f"{t:%Y-%m-%d %H:%M:%S}" if t is not None else _esc(ts, 40)


def _key_field(r: Mapping[str, Any]) -> Tuple[str, Any]:
    f = r.get("fields") if isinstance(r.get("fields"), Mapping) else {}
    for k in ("path", "command", "srcip", "user"):
        if f.get(k):
            return k, f[k]
    return "", None


# --- plots -----------------------------------------------------------------------------------

def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=100)
    return fig


def _png(fig) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # glyphs missing from the default font (CJK, emoji)
        fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _plot_scores(records: Sequence[Mapping[str, Any]]) -> Optional[str]:
    by_det: Dict[str, List[float]] = defaultdict(list)
    thresholds: Dict[str, List[float]] = defaultdict(list)
    anomalies: Counter = Counter()
    for r in records:
        s = _score(r)
        if s is None:
            continue
        det = str(r.get("detector") or "unknown")
        by_det[det].append(s)
        try:
            t = float(r.get("threshold"))
            if math.isfinite(t):
                thresholds[det].append(t)
        except (TypeError, ValueError):
            pass
        if r.get("anomaly"):
            anomalies[det] += 1
    if not by_det:
        return None
    dets = sorted(by_det)
    fig = _figure(4.2 * len(dets), 3.4)
    axes = fig.subplots(1, len(dets), squeeze=False)[0]
    bins = [i / 40 for i in range(41)]
    for ax, det in zip(axes, dets):
        ax.hist(by_det[det], bins=bins, color=DETECTOR_COLORS.get(det, "#607d8b"), alpha=0.85)
        ax.set_yscale("log")
        ax.set_ylim(bottom=0.7)  # a bin of one alert stays visible
        ax.set_xlim(0, 1)
        if thresholds[det]:
            t = statistics.median(thresholds[det])
            ax.axvline(t, color="#d32f2f", linestyle="--", linewidth=1.6, label=f"threshold {t:.2f}")
            ax.legend(loc="upper center", fontsize=8)
        ax.set_title(f"{_label(det)}: {len(by_det[det]):,} scored, {anomalies[det]:,} anomalies", fontsize=10)
        ax.set_xlabel("calibrated score")
    axes[0].set_ylabel("alerts (log scale)")
    fig.tight_layout()
    return _png(fig)


def _bar_counts(title: str, counts: Sequence[Tuple[str, int]], color: str, xlabel: str,
                totals: Optional[Mapping[str, int]] = None) -> Optional[str]:
    """Horizontal bars of anomaly counts, each labelled "n of N scored (p %)"."""
    if not counts:
        return None
    n = len(counts)
    fig = _figure(9, max(2.0, 0.3 * n + 1.1))
    ax = fig.subplots()
    labels = [_label(k, 40) for k, _ in counts][::-1]
    values = [v for _, v in counts][::-1]
    keys = [k for k, _ in counts][::-1]
    ax.barh(range(n), values, color=color, height=0.7)
    top = max(values) if values else 0
    for i, (k, v) in enumerate(zip(keys, values)):
        text = f" {v:,}"
        if totals is not None and totals.get(k):
            text += f" of {totals[k]:,} scored ({100 * v / totals[k]:.1f} %)"
        ax.text(v, i, text, va="center", fontsize=8)
    ax.set_xlim(0, max(1, top) * 1.45)  # room for the labels
    ax.set_yticks(range(n))
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=11)
    fig.tight_layout()
    return _png(fig)


def _plot_hours(records: Sequence[Mapping[str, Any]]) -> Tuple[Optional[str], int]:
    """Alerts and anomalies per hour (per day when the span exceeds two weeks); (png, dated)."""
    all_t: List[datetime] = []
    anom_t: List[datetime] = []
    for r in records:
        t = parse_timestamp(r.get("timestamp"))
        if t is None:
            continue
        all_t.append(t)
        if r.get("anomaly"):
            anom_t.append(t)
    if not all_t:
        return None, 0
    lo, hi = min(all_t), max(all_t)
    step = timedelta(hours=1) if hi - lo <= timedelta(days=14) else timedelta(days=1)
    unit = "hour" if step == timedelta(hours=1) else "day"

    def bucket(t: datetime) -> datetime:
        return t.replace(minute=0, second=0, microsecond=0) if unit == "hour" else \
            t.replace(hour=0, minute=0, second=0, microsecond=0)

    all_c, an_c = Counter(bucket(t) for t in all_t), Counter(bucket(t) for t in anom_t)
    start, end = bucket(lo), bucket(hi)
    xs, cur = [], start
    while cur <= end:
        xs.append(cur)
        cur += step
    from matplotlib import dates as mdates

    fig = _figure(11, 3.6)
    ax = fig.subplots()
    width = (1 / 24 if unit == "hour" else 1) * 0.9
    xn = [mdates.date2num(x.replace(tzinfo=None)) for x in xs]
    ax.bar(xn, [all_c.get(x, 0) for x in xs], width=width, color="#b0bec5", label="scored", align="edge")
    ax.bar(xn, [an_c.get(x, 0) for x in xs], width=width, color="#d32f2f", label="anomalies", align="edge")
    ax.set_yscale("symlog")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M" if unit == "hour" else "%Y-%m-%d"))
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=14))
    for lab in ax.get_xticklabels():
        lab.set_rotation(30)
        lab.set_horizontalalignment("right")
    ax.set_ylabel("alerts")
    ax.set_title(f"Alerts and anomalies per {unit} (UTC)", fontsize=11)
    ax.legend(loc="upper right", fontsize=8)
    return _png(fig), len(all_t)


def _plot_clusters(labels: Sequence[int], coords: Optional[Sequence[Tuple[float, float, int]]]) -> Optional[str]:
    if not labels:
        return None
    sizes = Counter(labels)
    noise = sizes.pop(-1, 0)
    top = sizes.most_common(30)
    ncols = 2 if coords else 1
    fig = _figure(7 * ncols, 4)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    ax = axes[0]
    names = [f"#{c}" for c, _ in top] + (["noise"] if noise else [])
    values = [n for _, n in top] + ([noise] if noise else [])
    colors = ["#5c6bc0"] * len(top) + (["#d32f2f"] if noise else [])
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels(names, rotation=60, fontsize=7)
    if values and max(values) > 50 * max(1, min(values)):
        ax.set_yscale("log")  # a few huge clusters would flatten all the others
        ax.set_ylabel("alerts (log scale)")
    else:
        ax.set_ylabel("alerts")
    more = f" (largest 30 of {len(sizes)})" if len(sizes) > 30 else ""
    ax.set_title(f"DBSCAN cluster sizes{more}; noise = -1", fontsize=11)
    if coords:
        ax2 = axes[1]
        pts = [(x, y, c) for x, y, c in coords if math.isfinite(x) and math.isfinite(y)]
        clustered = [(x, y, c) for x, y, c in pts if c != -1]
        noisy = [(x, y) for x, y, c in pts if c == -1]
        if clustered:
            ax2.scatter([p[0] for p in clustered], [p[1] for p in clustered], c=[p[2] for p in clustered],
                        cmap="tab20", s=6, alpha=0.7, linewidths=0)
        if noisy:
            ax2.scatter([p[0] for p in noisy], [p[1] for p in noisy], c="#d32f2f", marker="x", s=14,
                        linewidths=0.8, label="noise")
            ax2.legend(loc="upper right", fontsize=8)
        ax2.set_title("2-D projection, colour = cluster", fontsize=11)
    fig.tight_layout()
    return _png(fig)


# --- the page --------------------------------------------------------------------------------

_CSS = """
code.cmd{display:block;white-space:pre-wrap;word-break:break-all;font-size:11px;background:#f5f5f5;padding:4px}
body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;margin:24px auto;max-width:1300px;
color:#212121;padding:0 16px}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #e0e0e0;padding-bottom:4px}
.sub{color:#616161;margin-top:0}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #e0e0e0;border-radius:6px;padding:10px 14px;
min-width:130px}.card b{display:block;font-size:22px}.card span{color:#616161;font-size:12px}
table{border-collapse:collapse;width:100%;font-size:13px}th,td{border:1px solid #e0e0e0;padding:4px 6px;
text-align:left;vertical-align:top}th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.wrap{word-break:break-all;max-width:380px}ul.reasons{margin:0;padding-left:16px}
img{max-width:100%;display:block;margin:8px 0}
.sev{display:inline-block;padding:1px 6px;border-radius:8px;color:#fff;font-size:11px}
.kv td:first-child{width:220px;color:#616161}
.none{color:#9e9e9e}td.time{white-space:nowrap}
"""


def _img(b64: Optional[str], alt: str) -> str:
    if not b64:
        return f'<p class="none">No data for: {html.escape(alt)}.</p>'
    return f'<img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{b64}">'


def _sev(s: Any) -> str:
    s = str(s or "none")
    color = SEVERITY_COLORS.get(s, "#9e9e9e")
    return f'<span class="sev" style="background:{color}">{_esc(s, 12)}</span>'


def _run_table(run: Optional[Mapping[str, Any]]) -> str:
    if not run:
        return ""
    rows = []
    for k, v in run.items():
        if isinstance(v, Mapping):
            for k2, v2 in v.items():
                rows.append((f"{k}.{k2}", v2))
        else:
            rows.append((k, v))
    body = "".join(f"<tr><td>{_esc(k, 80)}</td><td>{_esc(json.dumps(v, default=str) if isinstance(v, (list, dict)) else v)}</td></tr>"
                   for k, v in rows)
    return f'<h2>Run</h2><table class="kv">{body}</table>'


def feedback_command(model_dir: Any, input_path: Any, alert_id: Any, verdict: str = "false-positive",
                     scope: str = "agent-account", day: Optional[str] = None) -> str:
    """The exact ``mimizuku feedback add`` command for one alert, quoted for a shell (``day``:
    read only that day of ``input_path``)."""
    import shlex

    argv = ["mimizuku", "feedback", "add", "--model-dir", str(model_dir), "--input", str(input_path)]
    if day:
        argv += ["--since", day, "--until", day]
    argv += ["--alert-id", str(alert_id), "--verdict", verdict, "--scope", scope]
    return " ".join(shlex.quote(x) for x in argv)


def _verdict_cell(r: Mapping[str, Any], feedback: Mapping[str, Any]) -> str:
    """The commands that give this anomaly a verdict (docs/feedback.md), to copy."""
    aid = r.get("id")
    if not isinstance(aid, str) or not aid:
        return "<td></td>"
    day = str(r.get("timestamp") or "")[:10] or None
    cmds = [(v, feedback_command(feedback.get("model_dir", "MODEL_DIR"), feedback.get("input", "INPUT"), aid, v,
                                 day=day)) for v in ("false-positive", "confirmed")]
    return ("<td class='wrap'><details><summary>give a verdict</summary>"
            + "".join(f"<p>{v}:</p><code class='cmd'>{_esc(c, 4000)}</code>" for v, c in cmds)
            + "</details></td>")


def render_report(records: Iterable[Mapping[str, Any]], *, run: Optional[Mapping[str, Any]] = None,
                  clusters: Optional[Mapping[str, Any]] = None,
                  coords: Optional[Mapping[str, Sequence[float]]] = None, top: int = 50,
                  title: str = "Mimizuku anomaly report",
                  peer_groups: Optional[Sequence[Mapping[str, Any]]] = None,
                  feedback: Optional[Mapping[str, Any]] = None) -> str:
    """The report as an HTML string (see :func:`write_report`)."""
    feedback = feedback or {}
    recs = [r for r in records if isinstance(r, Mapping)]
    anomalies = [r for r in recs if r.get("anomaly")]
    det_total = Counter(str(r.get("detector") or "unknown") for r in recs)
    det_anom = Counter(str(r.get("detector") or "unknown") for r in anomalies)
    agent_total = Counter(str(_get(r, "agent", "name") or "(no agent)") for r in recs)
    agent_anom = Counter(str(_get(r, "agent", "name") or "(no agent)") for r in anomalies)
    sev = Counter(str(r.get("severity") or "none") for r in anomalies)
    labels = {id(r): _cluster_of(r, clusters) for r in recs}
    clustered = [c for c in labels.values() if c is not None]
    n_clusters = len({c for c in clustered if c != -1})
    n_noise = sum(1 for c in clustered if c == -1)
    times = [t for t in (parse_timestamp(r.get("timestamp")) for r in recs) if t is not None]
    span = f"{min(times):%Y-%m-%d %H:%M} – {max(times):%Y-%m-%d %H:%M} UTC" if times else "no timestamps"

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        png_scores = _plot_scores(recs)
        png_det = _bar_counts("Anomalies per detector",
                              sorted(((d, det_anom.get(d, 0)) for d in det_total), key=lambda kv: -kv[1]),
                              "#d32f2f", "anomalies", totals=det_total)
        agents_top = agent_anom.most_common(25)
        png_agents = _bar_counts(f"Anomalies per agent (top {len(agents_top)} of {len(agent_anom)})", agents_top,
                                 "#d32f2f", "anomalies", totals=agent_total) if agents_top else None
        png_hours, _ = _plot_hours(recs)
        pts = None
        if coords and clustered:
            pts = []
            for r in recs:
                xy = coords.get(str(r.get("id"))) if r.get("id") is not None else None
                c = labels[id(r)]
                if xy is not None and c is not None and len(xy) >= 2:
                    try:
                        pts.append((float(xy[0]), float(xy[1]), c))
                    except (TypeError, ValueError):
                        pass
        png_clusters = _plot_clusters(clustered, pts) if clustered else None

    # per-cluster table: size, anomalies, top rules and agents
    cluster_rows = ""
    if clustered:
        members: Dict[int, List[Mapping[str, Any]]] = defaultdict(list)
        for r in recs:
            c = labels[id(r)]
            if c is not None:
                members[c].append(r)
        order = sorted(members, key=lambda c: (c != -1, -len(members[c])))[:31]
        for c in order:
            ms = members[c]
            rules = Counter((str(_get(r, "rule", "id") or "?"), str(_get(r, "rule", "description") or "")) for r in ms)
            agents = Counter(str(_get(r, "agent", "name") or "?") for r in ms)
            rules_html = "<br>".join(f"{_esc(rid, 16)} {_esc(desc, 90)} ({n:,})" for (rid, desc), n in rules.most_common(3))
            agents_html = ", ".join(f"{_esc(a, 40)} ({n:,})" for a, n in agents.most_common(3))
            name = "noise (-1)" if c == -1 else f"#{c}"
            cluster_rows += (f"<tr><td>{name}</td><td class='num'>{len(ms):,}</td>"
                             f"<td class='num'>{sum(1 for r in ms if r.get('anomaly')):,}</td>"
                             f"<td class='wrap'>{rules_html}</td><td class='wrap'>{agents_html}</td></tr>")

    ranked = sorted(anomalies, key=lambda r: -(_score(r) or 0.0))[:top]
    top_rows = ""
    for r in ranked:
        k, v = _key_field(r)
        reasons = r.get("reasons") if isinstance(r.get("reasons"), list) else []
        c = labels[id(r)]
        top_rows += (
            f"<tr><td class='num'>{(_score(r) or 0):.3f}</td><td>{_sev(r.get('severity'))}</td>"
            f"<td>{_esc(r.get('detector'), 16)}</td><td class='time'>{_when(r.get('timestamp'))}</td>"
            f"<td>{_esc(_get(r, 'agent', 'name'), 60)}</td>"
            f"<td>{_esc(_get(r, 'rule', 'id'), 16)} {_esc(_get(r, 'rule', 'description'), 120)}</td>"
            f"<td class='num'>{'' if c is None else c}</td>"
            f"<td class='wrap'>{_esc(k)}{': ' if k else ''}{_esc(v)}</td>"
            f"<td class='wrap'><ul class='reasons'>{''.join(f'<li>{_esc(x)}</li>' for x in reasons[:10])}</ul></td>"
            f"{_verdict_cell(r, feedback)}</tr>")

    cards = [
        (f"{len(recs):,}", "alerts scored"),
        (f"{len(anomalies):,}", f"anomalies ({100 * len(anomalies) / len(recs):.2f} %)" if recs else "anomalies"),
    ] + [(f"{sev.get(s, 0):,}", s) for s in SEVERITY_ORDER[:4]] + [
        (f"{len(agent_total):,}", "agents"),
        (f"{n_clusters:,}", "DBSCAN clusters") if clustered else ("–", "not clustered"),
        (f"{n_noise:,}", "DBSCAN noise") if clustered else ("–", "noise"),
    ]
    cards_html = "".join(f'<div class="card"><b>{v}</b><span>{html.escape(k)}</span></div>' for v, k in cards)
    run_id = _get(run, "run_id") if run else None
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title, 120)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title, 120)}</h1>",
        f'<p class="sub">{"run " + _esc(run_id, 80) + " · " if run_id else ""}{span} · generated {generated} '
        f"by mimizuku {html.escape(__version__)}</p>",
        f'<div class="cards">{cards_html}</div>',
        _run_table(run),
        "<h2>Scores</h2>",
        _img(png_scores, "score distribution per detector with the threshold"),
        "<h2>Anomalies per detector</h2>",
        _img(png_det, "anomalies per detector"),
        "<h2>Anomalies per agent</h2>",
        _img(png_agents, "anomalies per agent"),
        "<h2>Anomalies over time</h2>",
        _img(png_hours, "alerts and anomalies per hour"),
        "<h2>DBSCAN clusters</h2>",
    ]
    if clustered:
        parts += [_img(png_clusters, "DBSCAN cluster sizes"),
                  "<table><tr><th>cluster</th><th>alerts</th><th>anomalies</th><th>top rules</th>"
                  f"<th>top agents</th></tr>{cluster_rows}</table>"]
    else:
        parts.append('<p class="none">No cluster labels were given for this run.</p>')
    parts.append(_peer_table(peer_groups, agent_total, agent_anom))
    parts += [
        f"<h2>Top anomalies ({len(ranked):,} of {len(anomalies):,})</h2>",
        "<table><tr><th>score</th><th>severity</th><th>detector</th><th>time (UTC)</th><th>agent</th><th>rule</th>"
        f"<th>cluster</th><th>key field</th><th>reasons</th><th>verdict</th></tr>{top_rows}</table>"
        if ranked else '<p class="none">No anomalies.</p>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _peer_table(groups: Optional[Sequence[Mapping[str, Any]]], alerts: Counter, anomalies: Counter) -> str:
    """The model's peer groups (``mimizuku.engine.peers``): who counts as whose peer, what they
    share, and this run's alerts and anomalies per group."""
    rows = [g for g in (groups or ()) if isinstance(g, Mapping) and isinstance(g.get("members"), list)]
    if not rows:
        return ""
    out = []
    for g in rows[:100]:
        members = [str(m) for m in g["members"]]
        shown = ", ".join(members[:12]) + (f", … ({len(members)} agents)" if len(members) > 12 else "")
        label = ", ".join(str(t) for t in (g.get("label") or [])[:5]) or "–"
        out.append(f"<tr><td>{_esc(g.get('id'), 16)}</td><td>{_esc(shown, 600)}</td><td>{_esc(label, 200)}</td>"
                   f"<td>{sum(alerts.get(m, 0) for m in members):,}</td>"
                   f"<td>{sum(anomalies.get(m, 0) for m in members):,}</td></tr>")
    return ("<h2>Peer groups</h2><p class=\"sub\">Agents that do the same work, learnt from training "
            "(rules, programs, directories); what is routine for an agent's peers counts less when it is "
            "new on the agent, what none of them ever did counts in full. A group of one has no peers.</p>"
            "<table><tr><th>group</th><th>agents</th><th>what they share</th><th>alerts</th><th>anomalies</th></tr>"
            + "".join(out) + "</table>")


def write_report(path: Any, records: Iterable[Mapping[str, Any]], *, run: Optional[Mapping[str, Any]] = None,
                 clusters: Optional[Mapping[str, Any]] = None,
                 coords: Optional[Mapping[str, Sequence[float]]] = None, top: int = 50,
                 title: str = "Mimizuku anomaly report",
                 peer_groups: Optional[Sequence[Mapping[str, Any]]] = None,
                 feedback: Optional[Mapping[str, Any]] = None) -> Path:
    """Write ONE self-contained HTML file for a run and return its path.

    ``records``: scored records (docs/records.md). ``run``: the run's dict (id, model version,
    counts, durations ...), shown as a table. ``clusters``: alert id -> DBSCAN label (-1 =
    noise); records' own ``cluster`` keys are used otherwise. ``coords``: alert id -> (x, y), a
    2-D projection to scatter-plot the clusters. ``peer_groups``: the model's (``Mimizuku.peer_groups().
    to_json()``), shown as a table. ``feedback``: ``model_dir`` and ``input`` for the exact
    ``mimizuku feedback add`` command shown with each anomaly (placeholders when not given).
    The file is written atomically.
    """
    out = Path(path)
    text = render_report(records, run=run, clusters=clusters, coords=coords, top=top, title=title,
                         peer_groups=peer_groups, feedback=feedback)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out, text.encode("utf-8"), mode=0o644)
    return out


# --- command line ------------------------------------------------------------------------------

def _open_text(path: str):
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    if path.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, "r", encoding="utf-8", errors="replace")


def read_records(path: str) -> Tuple[List[Dict[str, Any]], int, Optional[int]]:
    """Records from a JSON-lines file (``.gz`` and ``-`` work; a JSON array file too).
    Returns (records, malformed line count, first malformed line number)."""
    records: List[Dict[str, Any]] = []
    bad, first_bad = 0, None
    with _open_text(path) as f:
        head = f.read(1)
        if head == "[":
            data = json.loads(head + f.read())
            return [r for r in data if isinstance(r, dict)], sum(1 for r in data if not isinstance(r, dict)), None
        lineno = 0
        for line in _prefixed(head, f):
            lineno += 1
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                obj = None
            if isinstance(obj, dict):
                records.append(obj)
            else:
                bad += 1
                first_bad = first_bad or lineno
    return records, bad, first_bad


def _prefixed(head: str, f) -> Iterable[str]:
    first = True
    for line in f:
        if first:
            first = False
            yield head + line
        else:
            yield line
    if first and head:
        yield head


def _load_json(path: Optional[str], what: str) -> Any:
    if not path:
        return None
    with _open_text(path) as f:
        return json.load(f)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        argv = argv[1:]
    ap = argparse.ArgumentParser(prog="mimizuku report", description="Write a self-contained HTML report of scored records.")
    ap.add_argument("--input", "-i", required=True, action="append",
                    help="scored records, JSON lines (.gz ok, - for stdin); repeatable")
    ap.add_argument("--out", "-o", required=True, help="HTML file to write")
    ap.add_argument("--run", help="JSON file with the run's dict (id, model version, counts ...)")
    ap.add_argument("--clusters", help="JSON file: {alert id: DBSCAN label}")
    ap.add_argument("--coords", help="JSON file: {alert id: [x, y]} (2-D projection of the clusters)")
    ap.add_argument("--top", type=int, default=50, help="rows in the top-anomalies table (default 50)")
    ap.add_argument("--title", default="Mimizuku anomaly report")
    try:
        args = ap.parse_args(argv)
    except SystemExit as e:
        return EX_USAGE if e.code else EX_OK
    records: List[Dict[str, Any]] = []
    bad_total = 0
    try:
        for p in args.input:
            recs, bad, first_bad = read_records(p)
            records += recs
            if bad:
                bad_total += bad
                print(f"mimizuku report: {p}: skipped {bad} malformed line(s), first at line {first_bad}",
                      file=sys.stderr)
        run = _load_json(args.run, "run")
        clusters = _load_json(args.clusters, "clusters")
        coords = _load_json(args.coords, "coords")
    except FileNotFoundError as e:
        print(f"mimizuku report: cannot read {e.filename}: no such file", file=sys.stderr)
        return EX_NOINPUT
    except (OSError, ValueError) as e:
        print(f"mimizuku report: cannot read input: {e}", file=sys.stderr)
        return EX_DATAERR
    if bad_total and not records:
        print("mimizuku report: no valid record in the input", file=sys.stderr)
        return EX_DATAERR
    for name, obj in (("--run", run), ("--clusters", clusters), ("--coords", coords)):
        if obj is not None and not isinstance(obj, dict):
            print(f"mimizuku report: {name} must hold a JSON object", file=sys.stderr)
            return EX_DATAERR
    try:
        out = write_report(args.out, records, run=run, clusters=clusters, coords=coords, top=args.top,
                           title=args.title)
    except OSError as e:
        print(f"mimizuku report: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
        return EX_CANTCREAT
    n_anom = sum(1 for r in records if r.get("anomaly"))
    print(f"mimizuku report: {len(records):,} records, {n_anom:,} anomalies -> {out}")
    return EX_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
