"""report.py: the HTML parses, embeds the PNG plots, shows the right counts, escapes hostile text."""
from __future__ import annotations

import base64
import gzip
import json
import struct
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest

pytest.importorskip("matplotlib")

from mimizuku.outputs.report import main, render_report, write_report  # noqa: E402

T0 = datetime(2024, 1, 15, 0, 0, tzinfo=timezone.utc)
SCRIPT_PATH = '<script>alert("pwned")</script>/etc/passwd'
ATTR_AGENT = '"><img src=x onerror=alert(1)>'
MATH_AGENT = "$\\frac{$ broken mathtext"


def make_record(i: int, *, anomaly: bool, score: float, detector: str = "files", agent: str = "web-01",
                hours: float = 0.0, **over) -> dict:
    ts = T0 + timedelta(hours=hours, seconds=i)
    fields = {"user": "root"}
    if detector == "files":
        fields["path"] = f"/etc/app/{i}.conf"
    elif detector == "commands":
        fields["command"] = f"/usr/bin/curl http://example.invalid/{i}"
    else:
        fields["srcip"] = "203.0.113.7"
    rec = {
        "id": f"{int(ts.timestamp())}.{i}",
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "agent": {"id": "001", "name": agent, "ip": "10.0.0.1"},
        "rule": {"id": "550", "level": 7, "description": "Integrity checksum changed.", "groups": ["syscheck"]},
        "location": "syscheck",
        "detector": detector,
        "score": score,
        "score_pct": round(100 * score),
        "threshold": 0.8,
        "anomaly": anomaly,
        "severity": ("critical" if score > 0.97 else "high") if anomaly else "none",
        "reasons": [f"unusual {detector} on {agent}", "rare hour"] if anomaly else [],
        "scores": {detector: score},
        "fields": fields,
        "model_version": "2024-01-14.1",
    }
    rec.update(over)
    return rec


def dataset():
    recs, clusters, coords = [], {}, {}
    dets = ["files", "commands", "context"]
    for i in range(300):
        det = dets[i % 3]
        anomaly = i % 7 == 0  # 7 and the 5 agents are coprime: every agent has anomalies
        score = 0.85 + (i % 7) / 100 if anomaly else (i % 70) / 100
        agent = ["web-01", "web-02", "db-01", ATTR_AGENT, MATH_AGENT][i % 5]
        recs.append(make_record(i, anomaly=anomaly, score=score, detector=det, agent=agent, hours=i / 15))
    hostile = make_record(999, anomaly=True, score=0.999, agent=ATTR_AGENT)
    hostile["fields"]["path"] = SCRIPT_PATH
    hostile["reasons"] = ["reason with <b>markup</b> & ampersand", "line\nbreak"]
    recs.append(hostile)
    for k, r in enumerate(recs):
        c = -1 if k % 11 == 0 else k % 4
        clusters[r["id"]] = c
        coords[r["id"]] = [float(c) + (k % 5) / 10, float(-c) + (k % 3) / 10]
    return recs, clusters, coords


class Page(HTMLParser):
    """Collects what the tests look at: tags, images, cards, table rows and all text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.imgs, self.text = [], [], []
        self.cards, self._card, self._in = {}, None, None
        self.rows, self._row, self._cell = [], None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "img":
            self.imgs.append(a)
        if tag == "div" and a.get("class") == "card":
            self._card = []
        if tag in ("b", "span") and self._card is not None:
            self._in = tag
        if tag == "tr":
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "div" and self._card is not None:
            if len(self._card) == 2:
                self.cards[self._card[1]] = self._card[0]
            self._card = None
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._card is not None and self._in:
            self._card.append(data)
            self._in = None
        if self._cell is not None:
            self._cell.append(data)


def parse(html_text: str) -> Page:
    p = Page()
    p.feed(html_text)
    p.close()
    return p


def png_size(b64: str):
    raw = base64.b64decode(b64, validate=True)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", raw[16:24])
    return w, h


def test_report_structure_counts_and_images(tmp_path):
    recs, clusters, coords = dataset()
    run = {"run_id": "nightly-2024-01-15", "model_version": "2024-01-14.1", "counts": {"alerts": len(recs)}}
    out = write_report(tmp_path / "sub" / "report.html", recs, run=run, clusters=clusters, coords=coords, top=10)
    assert out.is_file()
    page = parse(out.read_text(encoding="utf-8"))

    # self-contained: every image is an embedded PNG, nothing is loaded from elsewhere
    assert len(page.imgs) == 5  # scores, detectors, agents, hours, clusters (sizes + projection)
    for img in page.imgs:
        assert img["src"].startswith("data:image/png;base64,")
        w, h = png_size(img["src"].split(",", 1)[1])
        assert w > 200 and h > 100
    for tag, attrs in page.tags:
        assert tag not in ("script", "link", "iframe", "object")
        for k, v in attrs.items():
            assert not k.startswith("on"), (tag, k)
            if k in ("src", "href"):
                assert v.startswith("data:image/png;base64,")

    n_anom = sum(r["anomaly"] for r in recs)
    noise = sum(1 for r in recs if clusters[r["id"]] == -1)
    assert page.cards["alerts scored"] == f"{len(recs):,}"
    assert page.cards[f"anomalies ({100 * n_anom / len(recs):.2f} %)"] == f"{n_anom:,}"
    assert page.cards["critical"] == str(sum(r["severity"] == "critical" for r in recs))
    assert page.cards["high"] == str(sum(r["severity"] == "high" for r in recs))
    assert page.cards["agents"] == "5"
    assert page.cards["DBSCAN clusters"] == "4" and page.cards["DBSCAN noise"] == f"{noise:,}"

    text = "".join(page.text)
    assert "nightly-2024-01-15" in text and f"Top anomalies (10 of {n_anom})" in text

    # the top-anomalies table: highest score first, hostile text shown as text
    top = [r for r in page.rows if len(r) == 10 and r[0] != "score"]   # the last cell: the verdict commands
    assert len(top) == 10
    scores = [float(r[0]) for r in top]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(0.999)
    assert top[0][4] == ATTR_AGENT and top[0][7] == f"path: {SCRIPT_PATH}"
    assert "reason with <b>markup</b> & ampersand" in top[0][8] and "line\\x0abreak" in top[0][8]
    assert "mimizuku feedback add --model-dir MODEL_DIR" in top[0][9] and "--verdict confirmed" in top[0][9]

    # the cluster table: noise first, sizes add up
    ctab = [r for r in page.rows if len(r) == 5 and r[0] != "cluster"]
    assert ctab[0][0] == "noise (-1)" and int(ctab[0][1].replace(",", "")) == noise
    assert sum(int(r[1].replace(",", "")) for r in ctab) == len(recs)


def test_hostile_text_is_escaped_in_the_source():
    recs, clusters, _ = dataset()
    html_text = render_report(recs, clusters=clusters)
    assert "<script>" not in html_text and "<img src=x" not in html_text
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;/etc/passwd" in html_text
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html_text
    assert "default-src 'none'" in html_text  # CSP: no script can run even if something slipped


def test_without_clusters_and_empty_input(tmp_path):
    recs, _, _ = dataset()
    for r in recs:
        r.pop("cluster", None)
    page = parse(render_report(recs))
    assert len(page.imgs) == 4 and "No cluster labels were given" in "".join(page.text)
    empty = parse(render_report([]))
    assert empty.imgs == [] and empty.cards["alerts scored"] == "0"
    assert "No anomalies." in "".join(empty.text)


def test_long_span_and_odd_values_do_not_break_plots():
    recs = [make_record(i, anomaly=i % 3 == 0, score=0.9 if i % 3 == 0 else 0.1, hours=24 * i) for i in range(30)]
    recs.append(make_record(100, anomaly=True, score=0.9, timestamp="not a time"))
    recs[-1]["score"] = float("nan")
    recs.append(make_record(101, anomaly=False, score=0.1, detector="context", agent=None))
    recs[-1]["score"] = "x"
    recs.append("not a record")
    page = parse(render_report(recs, run={"run_id": "r", "figures": {"x": [1, 2]}}))
    assert len(page.imgs) == 4 and page.cards["alerts scored"] == "32"


def write_jsonl(path, recs, extra_lines=()):
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
        for line in extra_lines:
            f.write(line + "\n")


def test_main_writes_report_and_reports_bad_lines(tmp_path, capsys):
    recs, clusters, coords = dataset()
    inp = tmp_path / "records.jsonl.gz"
    with gzip.open(inp, "wt", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
        f.write("{truncated\n")
    (tmp_path / "clusters.json").write_text(json.dumps(clusters))
    (tmp_path / "coords.json").write_text(json.dumps(coords))
    (tmp_path / "run.json").write_text(json.dumps({"run_id": "cli-run"}))
    out = tmp_path / "report.html"
    rc = main(["report", "--input", str(inp), "--out", str(out), "--clusters", str(tmp_path / "clusters.json"),
               "--coords", str(tmp_path / "coords.json"), "--run", str(tmp_path / "run.json")])
    cap = capsys.readouterr()
    assert rc == 0
    assert "skipped 1 malformed line(s), first at line 302" in cap.err
    assert f"{len(recs):,} records" in cap.out
    page = parse(out.read_text(encoding="utf-8"))
    assert len(page.imgs) == 5 and "cli-run" in "".join(page.text)


def test_main_exit_codes(tmp_path, capsys):
    good = tmp_path / "r.jsonl"
    write_jsonl(good, [make_record(1, anomaly=True, score=0.9)])
    assert main(["--input", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.html")]) == 66
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [], ["garbage", "[1, 2]"])
    assert main(["--input", str(bad), "--out", str(tmp_path / "o.html")]) == 65
    arr = tmp_path / "clusters.json"
    arr.write_text("[1, 2]")
    assert main(["--input", str(good), "--out", str(tmp_path / "o.html"), "--clusters", str(arr)]) == 65
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["--input", str(good), "--out", str(blocker / "o.html")]) == 73
    assert main(["--out", str(tmp_path / "o.html")]) == 2
    assert not (tmp_path / "o.html").exists()
    assert main(["--input", str(good), "--out", str(tmp_path / "o.html")]) == 0
    capsys.readouterr()
