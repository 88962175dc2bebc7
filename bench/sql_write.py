#!/usr/bin/env python3
"""SQL write throughput of ``mimizuku.outputs.sql.SqlSink`` (rows/s), SQLite and MariaDB.

    python bench/sql_write.py [--rows 200000] [--batch-size 5000] [--mysql-url URL]

Writes N synthetic scored records (docs/records.md shape, ~10 % anomalies, DBSCAN labels with
noise) into fresh tables (best of --repeat, with the client's and the MariaDB server's CPU
seconds, so a busy machine can be told from a slow writer), then writes the same run again (the idempotent re-run: nothing new may
be inserted). Prints rows/s for both passes. The MariaDB URL comes from ``--mysql-url`` or
``$MIMIZUKU_BENCH_MYSQL_URL`` / ``$MIMIZUKU_TEST_MYSQL_URL`` (``eval "$(bash .ci/mariadb.sh)"``
sets the latter). The MariaDB tables are DROPPED first: point it at a test database only.

"cpu-bound rows/s" is rows / max(client CPU s, server CPU s): the writer prepares batch n+1 while
the server stores batch n, so on a machine where both get a core that is the rate to expect; on a
machine shared with other jobs the wall-clock "rows/s" falls below it.

Target (issue: nightly job): >= 20,000 rows/s to MariaDB (wall clock). There is no peer figure: the PyPI
package mimizuku 0.2.36 has no SQL output. For scale, the same rows are also written by a bare
SQLAlchemy ``executemany`` of pre-built rows (no conversion, no idempotency check) in the same
run, which bounds what any SQLAlchemy writer could do here.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "detector"))

import sqlalchemy as sa  # noqa: E402

from mimizuku.outputs import sql as sqlout  # noqa: E402
from mimizuku.outputs.sql import SqlSink  # noqa: E402
from mimizuku.outputs.sql.rows import rows_for  # noqa: E402

TARGET_MYSQL = 20_000


def make_records(n: int, seed: int = 7):
    rnd = random.Random(seed)
    agents = [(f"{i:03d}", f"host-{i:02d}", f"10.0.{i // 250}.{i % 250}") for i in range(40)]
    rules = [("550", 7, "Integrity checksum changed."), ("554", 5, "File added to the system."),
             ("80792", 3, "Audit: Command: /usr/bin/curl"), ("5402", 3, "Successful sudo to ROOT executed."),
             ("5715", 3, "sshd: authentication success."), ("31101", 5, "Web server 400 error code.")]
    dets = {"550": "files", "554": "files", "80792": "commands", "5402": "commands"}
    base = 1_705_312_800  # 2024-01-15T10:00:00Z
    out, clusters = [], {}
    for i in range(n):
        a = agents[rnd.randrange(len(agents))]
        r = rules[rnd.randrange(len(rules))]
        det = dets.get(r[0], "context")
        score = rnd.random()
        anomaly = score > 0.9
        t = base + i * 86_400 // max(n, 1)
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{i % 1000:03d}+0000"
        fields = {"user": rnd.choice(["root", "www-data", "alice", "bob"])}
        if det == "files":
            fields["path"] = f"/var/www/html/uploads/{rnd.randrange(10_000)}/index.php"
            fields["event"] = "modified"
        elif det == "commands":
            fields["command"] = f"curl -s http://198.51.100.{rnd.randrange(255)}/x.sh -o /tmp/{i}.sh"
        else:
            fields["srcip"] = f"203.0.113.{rnd.randrange(255)}"
        rid = f"{t}.{i}"
        out.append({
            "id": rid, "timestamp": ts,
            "agent": {"id": a[0], "name": a[1], "ip": a[2]},
            "rule": {"id": r[0], "level": r[1], "description": r[2], "groups": ["ossec"]},
            "location": "syscheck" if det == "files" else "/var/log/audit/audit.log",
            "detector": det, "score": score, "score_pct": round(100 * score), "threshold": 0.9,
            "anomaly": anomaly, "severity": "high" if anomaly else "none",
            "reasons": [f"rare {det} pattern for {a[1]}", "first time seen"] if anomaly else [],
            "scores": {det: score}, "fields": fields, "model_version": "bench-1",
        })
        clusters[rid] = -1 if rnd.random() < 0.03 else rnd.randrange(12)
    return out, clusters


def reset(engine) -> None:
    with engine.begin() as conn:
        for t in (sqlout.outliers, sqlout.alerts, sqlout.runs, sqlout.schema_info):
            t.drop(conn, checkfirst=True)


def bare_executemany(url: str, records, clusters, batch_size: int) -> float:
    """Rows/s of a plain executemany of already-converted rows into the same table."""
    eng = sa.create_engine(sqlout.prepare_url(url))
    reset(eng)
    sqlout.metadata.create_all(eng)
    from datetime import datetime
    labels = [clusters.get(r["id"]) for r in records]
    rows, _ = rows_for(records, labels, "bare", "bench-1", datetime.utcnow())
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        with eng.begin() as conn:
            conn.execute(sa.insert(sqlout.alerts), rows[i:i + batch_size])
    dt = time.perf_counter() - t0
    reset(eng)
    eng.dispose()
    return len(rows) / dt


def server_cpu() -> float:
    """CPU seconds used so far by the private MariaDB of .ci/mariadb.sh (nan if not readable)."""
    try:
        base = os.environ.get("MIMIZUKU_MARIADB_DIR", "/tmp/mimizuku-mariadb")
        pid = open(os.path.join(base, "mysqld.pid")).read().strip()
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def run_one(label: str, url: str, records, clusters, batch_size: int, spool: Path, repeat: int) -> dict:
    """Best of ``repeat`` fresh-table writes, then one idempotent re-run."""
    sink = SqlSink(url, spool_dir=spool, batch_size=batch_size)
    run = {"run_id": f"bench-{label}", "model_version": "bench-1", "status": "ok"}
    best = None
    for _ in range(repeat):
        sink.drop_schema()
        sink.ensure_schema()  # table creation is not part of the write
        c0, s0 = time.process_time(), server_cpu()
        t0 = time.perf_counter()
        c1 = sink.write_run(run, records, clusters)
        t1 = time.perf_counter()
        sample = {"first_s": t1 - t0, "client_cpu": time.process_time() - c0, "server_cpu": server_cpu() - s0}
        assert c1["alerts_inserted"] == len(records), c1
        if best is None or sample["first_s"] < best["first_s"]:
            best = sample
    t1 = time.perf_counter()
    c2 = sink.write_run(run, records, clusters)
    t2 = time.perf_counter()
    with sink.engine.connect() as conn:
        n_alerts = conn.execute(sa.select(sa.func.count()).select_from(sqlout.alerts)).scalar()
        n_out = conn.execute(sa.select(sa.func.count()).select_from(sqlout.outliers)).scalar()
    sink.close()
    assert n_alerts == len(records), n_alerts
    assert c2["alerts_inserted"] == 0 and c2["alerts_existing"] == len(records), c2
    return {"label": label, "rows": len(records), "outliers": n_out, **best,
            "first_rps": len(records) / best["first_s"],
            "rerun_s": t2 - t1, "rerun_rps": len(records) / (t2 - t1)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--mysql-url", default=os.environ.get("MIMIZUKU_BENCH_MYSQL_URL") or os.environ.get("MIMIZUKU_TEST_MYSQL_URL"))
    ap.add_argument("--repeat", type=int, default=3, help="fresh-table writes per target; the best is shown")
    ap.add_argument("--no-bare", action="store_true", help="skip the bare executemany comparison")
    args = ap.parse_args(argv)

    print(f"generating {args.rows:,} records ...", flush=True)
    records, clusters = make_records(args.rows)
    tmp = Path(tempfile.mkdtemp(prefix="mimizuku-bench-sql-"))
    targets = [("sqlite", f"sqlite:///{tmp / 'bench.db'}")]
    if args.mysql_url:
        # the same server through both drivers: PyMySQL (pure Python, always installed) and
        # mysqlclient (C, the optional [mysql] extra that mysql:// URLs use when it is there)
        base = sa.engine.make_url(args.mysql_url)
        for label, driver in (("mariadb/pymysql", "pymysql"), ("mariadb/mysqlclient", "mysqldb")):
            if driver == "mysqldb" and importlib.util.find_spec("MySQLdb") is None:
                print("mariadb/mysqlclient: skipped (pip install mysqlclient; needs libmariadb-dev)")
                continue
            u = base.set(drivername=f"{base.get_backend_name()}+{driver}")
            targets.append((label, u.render_as_string(hide_password=False)))
    else:
        print("MariaDB: skipped (no --mysql-url / MIMIZUKU_TEST_MYSQL_URL; run: eval \"$(bash .ci/mariadb.sh)\")")
    status = 0
    try:
        print(f"{'target':<19} {'rows':>8} {'outliers':>9} {'write s':>8} {'rows/s':>9} {'client cpu s':>13} "
              f"{'server cpu s':>13} {'cpu-bound rows/s':>17} {'rerun s':>8} {'rerun rows/s':>13} {'bare rows/s':>12}")
        for label, url in targets:
            r = run_one(label, url, records, clusters, args.batch_size, tmp / f"spool-{label}", args.repeat)
            bare = "-" if args.no_bare else f"{bare_executemany(url, records, clusters, args.batch_size):,.0f}"
            server_cpu = "-" if label == "sqlite" else f"{r['server_cpu']:.2f}"
            # what the two overlapping stages allow when each has a core to itself (busy machines)
            busiest = max(r["client_cpu"], 0 if label == "sqlite" or r["server_cpu"] != r["server_cpu"] else r["server_cpu"])
            bound = f"{r['rows'] / busiest:,.0f}" if busiest > 0 else "-"
            print(f"{label:<19} {r['rows']:>8,} {r['outliers']:>9,} {r['first_s']:>8.2f} {r['first_rps']:>9,.0f} "
                  f"{r['client_cpu']:>13.2f} {server_cpu:>13} {bound:>17} {r['rerun_s']:>8.2f} "
                  f"{r['rerun_rps']:>13,.0f} {bare:>12}", flush=True)
            if label.startswith("mariadb"):
                ok = r["first_rps"] >= TARGET_MYSQL
                print(f"target: >= {TARGET_MYSQL:,} rows/s to MariaDB via {label.split('/')[1]} -> "
                      f"{'met' if ok else 'NOT met'} (best of {args.repeat}; the client and the server "
                      f"share this machine's cores)")
                status = 0 if ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
