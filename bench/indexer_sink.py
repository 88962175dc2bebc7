"""Anomaly documents into a real OpenSearch node: documents/s with bulk writes, and nothing lost
or duplicated across a node restart mid-run (issue 18 part 2).

Records: generated alerts (``tools/synth``) scored by a model fitted on three other generated days
(``--synthetic``: the same record copied with new ids, to measure the sink alone). Every record
becomes a document (``all_scores``: the heaviest case); ids cycle over two managers.

Runs, each into its own data stream:

1. **scorer-like**: ``IndexSink.add`` with 64 records per call (the resident scorer's micro-batch:
   one spool item, one fsync per call), documents sent by the sink's own thread (``start``, as in
   the scorer) in bulks of up to 5,000 once due;
2. **nightly-like**: ``add`` with 5,000 records per call (the nightly job's chunks: one spool item
   each), sent by the sink's thread while the next chunk is built;
3. **restart**: scorer-like, and after a third of the records the node is stopped (SIGTERM), the
   writing goes on (documents are kept in the spool), after two thirds it is started again on the
   same data and ports, the spool is drained; then the first 10 % of the records are sent again
   (a replayed spool). Printed: documents created, 409 duplicates avoided, the final count, which
   must equal N.

The node: ``--url`` (runs 1 and 2 only: a node we did not start cannot be restarted), else one of
our own from ``.ci/opensearch.sh``'s launcher (built by that script when needed), started here
with a data directory that survives the restart. The figures include the node's work on the same
2 shared cores.

    python bench/indexer_sink.py [--records 100000] [--synthetic] [--url http://127.0.0.1:9200]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "detector"))
PROJECT = ROOT / ".ci" / "opensearch"
CLASSPATH = PROJECT / "target" / "classpath.txt"
MAIN = "org.mimizuku.ci.TestNode"


# --- the node ------------------------------------------------------------------------------------

def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _get(url: str, timeout: float = 3.0) -> Dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as r:
        return json.loads(r.read().decode())


def _request(url: str, method: str = "GET", body: Any = None) -> Dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with opener.open(req, timeout=60) as r:
        return json.loads(r.read().decode())


class OwnNode:
    """An OpenSearch node this bench starts, stops and starts again on the same data (the launcher
    of ``.ci/opensearch.sh``, which wipes its home at each start: not what a restart test wants)."""

    def __init__(self, base: Path, heap: str = "512m"):
        self.base = base
        self.home = base / "node"
        self.heap = heap
        self.port, self.transport = _free_port(), _free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.url = f"http://127.0.0.1:{self.port}"

    @staticmethod
    def build() -> None:
        if CLASSPATH.exists():
            return
        env = dict(os.environ, MIMIZUKU_OPENSEARCH_DIR=tempfile.mkdtemp(prefix="os-build-"))
        for cmd in ("start", "stop"):   # builds the launcher, then stops the node it started
            subprocess.run(["bash", str(ROOT / ".ci" / "opensearch.sh"), cmd], env=env, check=True,
                           stdout=subprocess.DEVNULL)

    def start(self, timeout: float = 180.0) -> float:
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        cp = f"{PROJECT / 'target' / 'classes'}:{CLASSPATH.read_text().strip()}"
        log = open(self.base / "node.log", "ab")
        self.proc = subprocess.Popen(
            ["java", f"-Xms{self.heap}", f"-Xmx{self.heap}", "-XX:+UseSerialGC", "-Xss1m", "-Djava.awt.headless=true",
             "-Dfile.encoding=UTF-8", "-Dlog4j2.disable.jmx=true", f"-Djava.io.tmpdir={self.home}",
             "-cp", cp, MAIN, str(self.home), str(self.port), str(self.transport)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        log.close()
        end = t0 + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the node exited ({self.proc.returncode}); see {self.base / 'node.log'}")
            try:
                if _get(f"{self.url}/_cluster/health?wait_for_status=yellow&timeout=1s")["status"] in ("yellow", "green"):
                    return time.monotonic() - t0
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("the node did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


# --- records -------------------------------------------------------------------------------------

def scored_records(n: int, synthetic: bool) -> List[Dict[str, Any]]:
    if synthetic:
        sys.path.insert(0, str(ROOT / "tests"))
        from test_index_sink import record

        base = record(0)
        out = []
        for i in range(n):
            r = dict(base, id=f"bench.{i}")
            r["fields"] = dict(base["fields"], srcip=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
            out.append(r)
        return out
    from mimizuku.engine.estimator import Mimizuku
    from mimizuku.tools.synth import FleetConfig, generate

    t0 = time.monotonic()
    model = Mimizuku().fit(list(generate(FleetConfig(days=3, scale=0.05, attacks=False, seed=1))))
    alerts: List[Dict[str, Any]] = []
    seed = 7
    while len(alerts) < 1.3 * n:   # not every alert is scored by a detector
        for a in generate(FleetConfig(days=2, scale=0.25, seed=seed)):
            a.pop("_label", None)
            a["id"] = f"bench.{len(alerts)}"
            alerts.append(a)
        seed += 1
    records = model.score_records(alerts)[:n]
    print(f"records: {len(records)} scored by a fitted model in {time.monotonic() - t0:.1f} s "
          f"({sum(1 for r in records if r.get('anomaly'))} anomalies)")
    return records


def pairs(records: List[Dict[str, Any]]) -> List[Any]:
    return [(r, {"manager": {"name": f"manager-{i % 2}"}}) for i, r in enumerate(records)]


# --- runs ----------------------------------------------------------------------------------------

def make_sink(url: str, spool: Path, stream: str) -> Any:
    from mimizuku.delivery.index_sink import IndexClient, IndexCredentials, IndexSink

    return IndexSink(IndexClient(IndexCredentials(url), timeout=(2.0, 60.0)), spool, stream=stream, all_scores=True,
                     linger=0.5, retry_base=0.5, retry_max=2.0, max_items=1_000_000,
                     log=lambda lvl, msg: print(f"  [{lvl}] {msg}") if lvl == "error" else None)


def count(url: str, stream: str) -> int:
    _request(f"{url}/{stream}/_refresh", "POST")
    return int(_get(f"{url}/{stream}/_count")["count"])


def drain(sink: Any, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while sink.pending() and time.monotonic() < end:
        sink.flush(force=True)
        if sink.pending():
            time.sleep(0.05)


def run_throughput(url: str, work: Path, items: List[Any], per_call: int, name: str) -> Dict[str, Any]:
    stream = f"mimizuku-bench-{name}"
    sink = make_sink(url, work / name / "index", stream)
    t0 = time.monotonic()
    sink.start()   # as the resident scorer and the nightly job do: bulks go out from the sink's own thread
    for i in range(0, len(items), per_call):
        sink.add(items[i: i + per_call])
    drain(sink)
    sink.close()
    took = time.monotonic() - t0
    n = count(url, stream)
    return {"run": name, "docs": len(items), "seconds": took, "docs_s": len(items) / took, "count": n,
            "created": sink.totals.created, "duplicates": sink.totals.duplicates, "requests": sink.requests}


def run_restart(node: OwnNode, work: Path, items: List[Any]) -> Dict[str, Any]:
    stream = "mimizuku-bench-restart"
    sink = make_sink(node.url, work / "restart" / "index", stream).start()
    n = len(items)
    stop_at, start_at = n // 3, 2 * n // 3
    restarted: Dict[str, Any] = {}
    t0 = time.monotonic()
    max_pending = 0
    for i in range(0, n, 64):
        if stop_at <= i < stop_at + 64:
            t_stop = time.monotonic()
            node.stop()
            print(f"  node stopped after {i} records ({time.monotonic() - t_stop:.1f} s to stop)")
        if start_at <= i < start_at + 64:
            print(f"  starting the node again after {i} records ({sink.pending()} spool items waiting)")
            th = threading.Thread(target=lambda: restarted.update(took=node.start()), daemon=True)
            th.start()
        sink.add(items[i: i + 64])
        max_pending = max(max_pending, sink.pending())
    th.join()
    print(f"  node answered again {restarted.get('took', 0):.1f} s after its start")
    drain(sink)
    written = time.monotonic() - t0
    first = count(node.url, stream)
    created, dups = sink.totals.created, sink.totals.duplicates
    replay = items[: n // 10]   # the same documents again: a replayed spool, a retried batch
    sink.add(replay)
    drain(sink)
    sink.close()
    final = count(node.url, stream)
    return {"docs": n, "seconds": written, "created": created, "duplicates_in_run": dups,
            "replayed": len(replay), "duplicates_on_replay": sink.totals.duplicates - dups,
            "count_after_run": first, "final_count": final, "max_spool_items": max_pending,
            "rejected": sink.totals.rejected, "pending": sink.pending()}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--synthetic", action="store_true", help="one record copied with new ids (the sink alone)")
    ap.add_argument("--url", default=None, help="an existing node (no restart run)")
    ap.add_argument("--heap", default="512m")
    a = ap.parse_args(argv)
    records = scored_records(a.records, a.synthetic)
    items = pairs(records)
    work = Path(tempfile.mkdtemp(prefix="bench-index-sink-"))
    node: Optional[OwnNode] = None
    try:
        if a.url:
            url = a.url.rstrip("/")
        else:
            OwnNode.build()
            node = OwnNode(work / "opensearch", a.heap)
            print(f"node: started in {node.start():.1f} s at {node.url}")
            url = node.url
        print(f"OpenSearch {_get(url)['version']['number']} at {url}; {os.cpu_count()} CPUs")
        warm = run_throughput(url, work, items[: min(len(items), 10_000)], 5000, "warm-up")
        print(f"warm-up (JIT, template, first data stream): {warm['docs']} documents in {warm['seconds']:.1f} s")
        print(f"{'run':<34}{'docs':>8}{'seconds':>9}{'docs/s':>9}{'bulks':>7}{'count':>8}")
        for per_call, name in ((64, "scorer-like"), (5000, "nightly-like")):
            r = run_throughput(url, work, items, per_call, name)
            label = f"{name} ({per_call} per add)"
            print(f"{label:<34}{r['docs']:>8}{r['seconds']:>9.2f}{r['docs_s']:>9.0f}{r['requests']:>7}{r['count']:>8}"
                  f"   created {r['created']}, 409 {r['duplicates']}")
        if node is None:
            print("restart run skipped: the node was given with --url")
            return 0
        print("restart run (scorer-like; node stopped after 1/3 of the records, started again after 2/3):")
        r = run_restart(node, work, items)
        ok = r["final_count"] == r["docs"] and r["pending"] == 0 and r["rejected"] == 0
        print(f"  records {r['docs']}, written and drained in {r['seconds']:.1f} s; spool peaked at "
              f"{r['max_spool_items']} items")
        print(f"  created {r['created']}, 409 duplicates avoided during the run {r['duplicates_in_run']}, "
              f"count {r['count_after_run']}")
        print(f"  replay of {r['replayed']}: 409 duplicates avoided {r['duplicates_on_replay']}")
        print(f"  final count {r['final_count']} == {r['docs']} records: {'yes' if ok else 'NO'} "
              f"(nothing lost, nothing duplicated)")
        return 0 if ok else 1
    finally:
        if node is not None:
            node.stop()
        shutil.rmtree(work, ignore_errors=True)
        random.seed()


if __name__ == "__main__":
    sys.exit(main())
