"""Indexer paging throughput: ``iter_alerts`` over a (fake) Wazuh indexer, PIT + ``search_after``.

Why: training from the indexer reads months of alerts page by page; this shows alerts/s,
pages/s and the reader's peak memory (flat: one page at a time) for two page sizes, next to
the same alerts read from an ``alerts.json`` file in the same run (the archive path).

The server is ``tests/fake_indexer.py`` (stateful OpenSearch fake, stdlib HTTP server) run in
its own process on 127.0.0.1 of the same machine, so its JSON encoding and HTTP handling take
CPU from the same cores: figures are a lower bound for the client, not a measure of OpenSearch.
Each client runs in a fresh process so its peak RSS is its own.

``--opensearch URL`` reads from a REAL OpenSearch 2.19 node instead (``.ci/opensearch.sh`` starts
one on loopback: ``eval "$(bash .ci/opensearch.sh)"`` then ``--opensearch
"$MIMIZUKU_TEST_OPENSEARCH_URL"``): the alerts are indexed into daily indices with the Wazuh
alerts mapping under a prefix of the run's own, read, and deleted; no credentials (the test node
has no security plugin). Its figures include the engine's work (sort, fetch of ``_source``) on
the same cores.

    python bench/indexer_paging.py [--alerts 200000] [--page-sizes 1000,5000] [--opensearch URL]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
USER, PASSWORD = "bench", "bench-Pa55word"
START = date(2026, 1, 7)


def _alerts(n: int) -> List[Dict[str, Any]]:
    from mimizuku.tools import synth

    out: List[Dict[str, Any]] = []
    days, scale = 14, max(0.05, n / 200_000.0)
    for a in synth.generate(synth.FleetConfig(days=days, scale=scale, seed=5, start=START)):
        a.pop("_label", None)
        out.append(a)
        if len(out) >= n:
            break
    return out


def _serve(n: int) -> None:
    """Child: hold ``n`` generated alerts in a fake indexer; print its URL; serve until stdin closes."""
    sys.path.insert(0, str(ROOT / "tests"))
    from fake_indexer import FakeIndexer

    alerts = _alerts(n)
    if os.environ.get("BENCH_WRITE_FILE"):
        with open(os.environ["BENCH_WRITE_FILE"], "w", encoding="utf-8") as f:
            for a in alerts:
                f.write(json.dumps(a, separators=(",", ":")) + "\n")
    fake = FakeIndexer(alerts, user=USER, password=PASSWORD).start()
    del alerts
    print(json.dumps({"url": fake.url, "alerts": len(fake.visible)}), flush=True)
    sys.stdin.read()  # the parent closes our stdin to stop us
    fake.stop()


def _client(url: str, page_size: int, auth: bool = True) -> None:
    """Child: read everything of ``url`` (with its index pattern) through ``iter_alerts`` and
    print the figures; the fake's credentials when ``auth``."""
    from mimizuku.sources.errors import ReadStats
    from mimizuku.sources.indexer import IndexerSource
    from mimizuku.sources.reader import iter_alerts

    creds = dict(username=USER, password=PASSWORD) if auth else {}
    src = IndexerSource(url, page_size=page_size, **creds)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    stats = ReadStats()
    t = time.perf_counter()
    n = 0
    for _ in iter_alerts(src, stats=stats):
        n += 1
    dt = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"alerts": n, "seconds": dt, "pages": src.stats["pages"], "requests": src.stats["requests"],
                      "peak_rss_kib": rss, "rss_before_read_kib": rss0}))


def _file_client(path: str) -> None:
    from mimizuku.sources.reader import iter_alerts

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    n = sum(1 for _ in iter_alerts(path))
    dt = time.perf_counter() - t
    print(json.dumps({"alerts": n, "seconds": dt, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                      "rss_before_read_kib": rss0}))


def _child(*args: str) -> Dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONWARNINGS="ignore"))
    return json.loads(out.stdout.strip().splitlines()[-1])


class _Server:
    def __init__(self, n: int, write_file: Optional[str] = None) -> None:
        env = dict(os.environ)
        if write_file:
            env["BENCH_WRITE_FILE"] = write_file
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(n)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the fake indexer did not start")
        info = json.loads(line)
        self.url, self.alerts = info["url"], info["alerts"]

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def _figures(r: Dict[str, Any], page_size: int) -> Dict[str, Any]:
    return {"page_size": page_size, "alerts": r["alerts"], "seconds": round(r["seconds"], 2),
            "alerts_per_s": round(r["alerts"] / r["seconds"]), "pages": r["pages"],
            "pages_per_s": round(r["pages"] / r["seconds"], 1),
            "peak_rss_mib": round(r["peak_rss_kib"] / 1024, 1),
            "rss_growth_while_reading_mib": round((r["peak_rss_kib"] - r["rss_before_read_kib"]) / 1024, 1)}


def _load_real(url: str, n: int, path: str) -> None:
    """Child: index ``n`` generated alerts into a real node under a new prefix and write the same
    alerts to ``path``; print the prefix (own process: the client's RSS must not inherit ours)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from opensearch_node import IndexNamespace, OpenSearchNode

    alerts = _alerts(n)
    with open(path, "w", encoding="utf-8") as f:
        for al in alerts:
            f.write(json.dumps(al, separators=(",", ":")) + "\n")
    ns = IndexNamespace(OpenSearchNode(url), f"mzbench-{os.getpid()}-")
    t = time.perf_counter()
    ns.install_alerts_template(shards=3)
    ns.index_alerts(alerts)
    print(json.dumps({"prefix": ns.prefix, "seconds": time.perf_counter() - t, "alerts": ns.count(),
                      "indices": len(ns.indices())}))


def _real_rows(url: str, n: int, sizes: List[int], path: str) -> List[Dict[str, Any]]:
    """Read ``n`` generated alerts from a real node with each page size (they are indexed by a
    child, into a namespace of this run's own, deleted at the end)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from opensearch_node import IndexNamespace, OpenSearchNode

    node = OpenSearchNode(url.rstrip("/"))
    version = node.request("GET", "/")["version"]["number"]
    loaded = _child("--load-opensearch", node.url, str(n), path)
    ns = IndexNamespace(node, loaded["prefix"])
    try:
        print(f"OpenSearch {version} at {node.url}: {loaded['alerts']:,} generated alerts indexed in "
              f"{loaded['indices']} daily indices of 3 shards in {loaded['seconds']:.1f}s (same machine; "
              f"{os.cpu_count()} CPUs)")
        return [_figures(_child("--client", ns.alerts_url, str(ps), "anon"), ps) for ps in sizes]
    finally:
        ns.delete()


def run_paging_bench(n_alerts: int, page_size: int) -> Dict[str, Any]:
    """Read ``n_alerts`` generated alerts from a fake indexer in pages of ``page_size``."""
    srv = _Server(n_alerts)
    try:
        return _figures(_child("--client", srv.url + "/wazuh-alerts-4.x-*", str(page_size), "auth"), page_size)
    finally:
        srv.stop()


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=200_000)
    ap.add_argument("--page-sizes", default="1000,5000")
    ap.add_argument("--opensearch", metavar="URL", help="a real OpenSearch node (http://127.0.0.1:PORT) "
                    "instead of the fake")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--client", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--file-client", help=argparse.SUPPRESS)
    ap.add_argument("--load-opensearch", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.serve:
        _serve(a.serve)
        return 0
    if a.client:
        _client(a.client[0], int(a.client[1]), a.client[2] == "auth")
        return 0
    if a.load_opensearch:
        _load_real(a.load_opensearch[0], int(a.load_opensearch[1]), a.load_opensearch[2])
        return 0
    if a.file_client:
        _file_client(a.file_client)
        return 0
    import tempfile

    sizes = [int(x) for x in a.page_sizes.split(",") if x.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "alerts.json")
        if a.opensearch:
            rows = _real_rows(a.opensearch, a.alerts, sizes, path)
        else:
            t = time.perf_counter()
            srv = _Server(a.alerts, write_file=path)
            print(f"fake indexer with {srv.alerts:,} generated alerts ready in {time.perf_counter() - t:.1f}s "
                  f"(same machine, own process; {os.cpu_count()} CPUs)")
            rows = []
            try:
                for ps in sizes:
                    rows.append(_figures(_child("--client", srv.url + "/wazuh-alerts-4.x-*", str(ps), "auth"), ps))
            finally:
                srv.stop()
        ref = _child("--file-client", path)
    print(f"{'source':<28}{'alerts':>9}{'s':>8}{'alerts/s':>10}{'pages/s':>9}{'peak RSS':>10}{'RSS +read':>11}")
    for r in rows:
        print(f"{'indexer, page ' + str(r['page_size']):<28}{r['alerts']:>9,}{r['seconds']:>8.2f}"
              f"{r['alerts_per_s']:>10,}{r['pages_per_s']:>9}{r['peak_rss_mib']:>8} M{r['rss_growth_while_reading_mib']:>9} M")
    fr = ref["alerts"] / ref["seconds"]
    print(f"{'alerts.json (same alerts)':<28}{ref['alerts']:>9,}{ref['seconds']:>8.2f}{round(fr):>10,}{'-':>9}"
          f"{ref['peak_rss_kib'] / 1024:>8.1f} M{(ref['peak_rss_kib'] - ref['rss_before_read_kib']) / 1024:>9.1f} M")
    print(json.dumps({"indexer": rows, "file_reference": {"alerts": ref["alerts"], "alerts_per_s": round(fr)}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
