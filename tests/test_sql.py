"""SqlSink against real databases: SQLite always, MariaDB when MIMIZUKU_TEST_MYSQL_URL is set.

Every test function runs on both (``db`` is parametrised). In CI, ``.ci/run`` does
``eval "$(bash .ci/mariadb.sh)"`` first, which starts a private MariaDB on 127.0.0.1 and exports
the URL. The MariaDB tables are dropped before each test: point the variable at a test database.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

sa = pytest.importorskip("sqlalchemy")

from mimizuku.outputs import OutputError, OutputUnavailableError  # noqa: E402
from mimizuku.outputs import sql as sqlout  # noqa: E402
from mimizuku.outputs.sql import (  # noqa: E402
    COMMAND_LEN,
    PATH_LEN,
    SqlOutputError,
    SqlSink,
    SqlUnavailableError,
    alerts,
    outliers,
    runs,
)
from mimizuku.outputs.sql.schema import feedback as feedback_table  # noqa: E402

MYSQL_URL = os.environ.get("MIMIZUKU_TEST_MYSQL_URL")
T0 = datetime(2024, 1, 15, 10, 0, 0, tzinfo=timezone.utc)


# --- records as docs/records.md defines them -------------------------------------------------

def make_record(i: int, *, day: int = 0, anomaly: bool | None = None, **over) -> dict:
    """One scored record exactly as docs/records.md describes it."""
    anomaly = (i % 5 == 0) if anomaly is None else anomaly
    detector = ("files", "commands", "context")[i % 3]
    score = 0.95 if anomaly else round(0.1 + (i % 50) / 100, 3)
    ts = T0 + timedelta(days=day, seconds=37 * i)
    fields = {"user": f"user{i % 4}"}
    if detector == "files":
        fields.update(path=f"/etc/app/{i}.conf", event="modified")
    elif detector == "commands":
        fields.update(command=f"/usr/bin/curl -s http://example.invalid/{i}", process="curl")
    else:
        fields.update(srcip=f"203.0.113.{i % 250}", srcuser=f"user{i % 4}")
    rec = {
        "id": f"{int(ts.timestamp())}.{day * 100000 + i}",
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{i % 1000:03d}+0000",
        "agent": {"id": f"{i % 7:03d}", "name": f"web-{i % 7:02d}", "ip": f"10.0.0.{i % 7}"},
        "rule": {"id": ("550", "80792", "5715")[i % 3], "level": 7, "description": "Integrity checksum changed.",
                 "groups": ["ossec", "syscheck"]},
        "location": "syscheck",
        "detector": detector,
        "score": score,
        "score_pct": round(100 * score),
        "threshold": 0.9,
        "anomaly": anomaly,
        "severity": "high" if anomaly else "none",
        "reasons": [f"{detector} pattern unseen on web-{i % 7:02d}", "rare at this hour"] if anomaly else [],
        "scores": {detector: score},
        "fields": fields,
        "model_version": "2024-01-14.1",
    }
    rec.update(over)
    return rec


def make_day(n: int, day: int = 0) -> list:
    return [make_record(i, day=day) for i in range(n)]


def clusters_for(records, noise_every: int = 7) -> dict:
    return {r["id"]: (-1 if k % noise_every == 0 else k % 3) for k, r in enumerate(records)}


# --- databases -------------------------------------------------------------------------------

def _drop_all(url: str) -> None:
    eng = sa.create_engine(url)
    try:
        with eng.begin() as conn:
            for t in (feedback_table, outliers, alerts, runs, sqlout.schema_info):
                t.drop(conn, checkfirst=True)
    finally:
        eng.dispose()


def _with_driver(url: str, driver: str) -> str:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    return u.set(drivername=f"{u.get_backend_name()}+{driver}").render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "mariadb", "mariadb-mysqlclient"])
def db(request, tmp_path):
    """A fresh, empty database URL of each kind (MariaDB through PyMySQL and through mysqlclient)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'mimizuku.db'}"
        return
    if not MYSQL_URL:
        pytest.skip("MariaDB: MIMIZUKU_TEST_MYSQL_URL is not set (CI sets it: eval \"$(bash .ci/mariadb.sh)\")")
    url = MYSQL_URL
    if request.param == "mariadb-mysqlclient":
        pytest.importorskip("MySQLdb", reason="mysqlclient is not installed (pip install mimizuku[mysql])")
        url = _with_driver(MYSQL_URL, "mysqldb")
    _drop_all(url)
    yield url
    _drop_all(url)


@pytest.fixture
def mysql_db():
    """A fresh MariaDB database only (for tests that need a server)."""
    if not MYSQL_URL:
        pytest.skip("MariaDB: MIMIZUKU_TEST_MYSQL_URL is not set (CI sets it: eval \"$(bash .ci/mariadb.sh)\")")
    _drop_all(MYSQL_URL)
    yield MYSQL_URL
    _drop_all(MYSQL_URL)


def count(sink: SqlSink, table) -> int:
    with sink.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


def column(sink: SqlSink, col, where=None) -> list:
    q = sa.select(col)
    if where is not None:
        q = q.where(where)
    with sink.engine.connect() as conn:
        return list(conn.execute(q).scalars())


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- writes ----------------------------------------------------------------------------------

def test_write_run_counts_and_idempotent(db, tmp_path):
    recs = make_day(1200)
    clusters = clusters_for(recs)
    expected_outliers = sum(1 for r in recs if r["anomaly"] or clusters[r["id"]] == -1)
    run = {"run_id": "run-2024-01-15", "started": "2024-01-16T00:05:00Z", "finished": "2024-01-16T00:09:00Z",
           "model_version": "2024-01-14.1", "status": "ok", "counts": {"alerts": 1200},
           "durations": {"score_s": 12.5}, "figures": {"report": "report.html"}}
    with SqlSink(db, spool_dir=tmp_path / "spool", batch_size=500) as sink:
        c1 = sink.write_run(run, recs, clusters)
        assert c1["alerts_inserted"] == 1200 and c1["alerts_existing"] == 0
        assert c1["outliers_inserted"] == expected_outliers
        assert count(sink, alerts) == 1200
        assert count(sink, outliers) == expected_outliers
        # the same day again: nothing new
        c2 = sink.write_run(run, recs, clusters)
        assert c2["alerts_inserted"] == 0 and c2["alerts_existing"] == 1200
        assert c2["outliers_inserted"] == 0
        assert count(sink, alerts) == 1200
        assert count(sink, outliers) == expected_outliers
        assert count(sink, runs) == 1
        with sink.engine.connect() as conn:
            row = conn.execute(sa.select(runs)).one()._mapping
            a = conn.execute(sa.select(alerts).where(alerts.c.alert_id == recs[7]["id"])).one()._mapping
            noise_ids = set(conn.execute(sa.select(outliers.c.alert_id).where(outliers.c.noise)).scalars())
        assert row["model_version"] == "2024-01-14.1" and row["status"] == "ok"
        assert json.loads(row["counts"]) == {"alerts": 1200}
        assert json.loads(row["figures"]) == {"report": "report.html"}
        assert row["started"] == datetime(2024, 1, 16, 0, 5)
        assert a["agent_name"] == recs[7]["agent"]["name"] and a["rule_id"] == recs[7]["rule"]["id"]
        assert a["score"] == pytest.approx(recs[7]["score"]) and a["cluster"] == clusters[recs[7]["id"]]
        assert a["timestamp"] == datetime(2024, 1, 15, 10, 4, 19, 7000)
        assert noise_ids == {r["id"] for r in recs if clusters[r["id"]] == -1}
        assert len(sink.spool) == 0


def test_drop_schema_starts_from_empty_tables(db, tmp_path):
    recs = make_day(50)
    run = {"run_id": "run-drop", "model_version": "m", "status": "ok"}
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        assert sink.write_run(run, recs)["alerts_inserted"] == 50
        sink.drop_schema()
        assert not sa.inspect(sink.engine).has_table("alerts")
        assert sink.write_run(run, recs)["alerts_inserted"] == 50  # recreated, nothing "existing"


def test_duplicates_inside_one_batch_and_missing_ids(db, tmp_path):
    r = make_record(1)
    no_id = make_record(2)
    del no_id["id"]
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        c = sink.write_run({"run_id": "r"}, [r, dict(r), no_id, dict(no_id)])
        assert c["alerts_inserted"] == 2
        ids = column(sink, alerts.c.alert_id)
        assert r["id"] in ids and any(i.startswith("sha1:") for i in ids)
        c = sink.write_run({"run_id": "r"}, [no_id])
        assert c["alerts_inserted"] == 0 and count(sink, alerts) == 2


def test_clusters_optional_and_record_cluster_key(db, tmp_path):
    recs = make_day(20)
    recs[3]["cluster"] = -1  # a producer may add keys
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        sink.write_run({"run_id": "r"}, recs)
        labels = dict(zip(column(sink, alerts.c.alert_id), column(sink, alerts.c.cluster)))
        assert labels[recs[3]["id"]] == -1 and labels[recs[4]["id"]] is None
        assert set(column(sink, outliers.c.alert_id)) == {r["id"] for r in recs if r["anomaly"]} | {recs[3]["id"]}


HOSTILE = [
    "/var/www/x'); DROP TABLE alerts;--",
    "a\x00b\x00c",
    "emoji \U0001F600 \U0001F4A9 and \u4e2d\u6587",
    "quote ' double \" backslash \\ percent %s %(x)s ? :name",
    "line1\nline2\r\n<script>alert(1)</script>",
]


def test_hostile_strings_round_trip(db, tmp_path):
    recs = []
    for k, text in enumerate(HOSTILE):
        r = make_record(k, anomaly=True)
        r["fields"] = {"path": text, "command": text, "user": text[:50], "srcip": "203.0.113.9"}
        r["agent"] = {"id": "001", "name": text[:60], "ip": None}
        r["reasons"] = [text, "second"]
        recs.append(r)
    surrogate = make_record(99, anomaly=True)
    surrogate["fields"] = {"path": "/tmp/bad\udc80name"}
    recs.append(surrogate)
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        sink.write_run({"run_id": "hostile"}, recs)
        sink.write_run({"run_id": "hostile"}, recs)  # and the idempotency check with them
        assert count(sink, alerts) == len(recs)
        with sink.engine.connect() as conn:
            rows = {r.alert_id: r for r in conn.execute(sa.select(alerts))}
        for r in recs[:-1]:
            got = rows[r["id"]]
            assert got.path == r["fields"]["path"]
            assert got.command == r["fields"]["command"]
            assert got.agent_name == r["agent"]["name"]
            assert json.loads(got.reasons) == r["reasons"]
            assert not got.truncated
        assert rows[surrogate["id"]].path == "/tmp/bad\ufffdname"
        assert count(sink, outliers) == len(recs)


def test_long_text_is_truncated_and_marked(db, tmp_path):
    r = make_record(1)
    long_cmd = "A" * 50_000 + "\U0001F600" * 10
    r["fields"] = {"command": long_cmd, "path": "/" + "p" * 5000}
    r["reasons"] = ["x" * 5000] * 80
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        sink.write_run({"run_id": "r"}, [r])
        with sink.engine.connect() as conn:
            got = conn.execute(sa.select(alerts)).one()
    assert got.truncated
    assert len(got.command) <= COMMAND_LEN and got.command.startswith("AAAA")
    assert got.command.endswith(f"[+{len(long_cmd) - got.command.index('…')}]")
    assert len(got.path) <= PATH_LEN and "…[+" in got.path
    reasons = json.loads(got.reasons)
    assert len(reasons) == sqlout.MAX_REASONS and all(len(x) <= sqlout.REASON_LEN for x in reasons)


def test_indexes_and_unique_key(db, tmp_path):
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        sink.ensure_schema()
        insp = sa.inspect(sink.engine)
        leading = {tuple(ix["column_names"])[0] for ix in insp.get_indexes("alerts")}
        assert {"timestamp", "agent_name", "rule_id"} <= leading
        uniques = [u["column_names"] for u in insp.get_unique_constraints("alerts")]
        uniques += [ix["column_names"] for ix in insp.get_indexes("alerts") if ix.get("unique")]
        assert ["alert_id"] in uniques
        with sink.engine.connect() as conn:
            v = conn.execute(sa.select(sqlout.schema_info.c.version)).scalar()
        assert v == sqlout.SCHEMA_VERSION


def test_newer_schema_is_refused_and_nothing_lost(db, tmp_path):
    spool = tmp_path / "spool"
    with SqlSink(db, spool_dir=spool) as sink:
        sink.ensure_schema()
        with sink.engine.begin() as conn:
            conn.execute(sa.update(sqlout.schema_info).values(version=sqlout.SCHEMA_VERSION + 1))
    with SqlSink(db, spool_dir=spool) as sink:
        with pytest.raises(SqlOutputError, match="newer"):
            sink.write_run({"run_id": "r"}, make_day(10))
        assert len(sink.spool) == 2  # one alert batch + the run row
        assert count(sink, alerts) == 0


# --- retention -------------------------------------------------------------------------------

def test_retention_deletes_old_rows(db, tmp_path):
    now = T0 + timedelta(days=60)
    old = [make_record(i, day=0, anomaly=True) for i in range(10)]   # 60 days old
    mid = [make_record(i, day=45) for i in range(10)]                # 15 days old
    new = [make_record(i, day=59) for i in range(10)]                # 1 day old
    undated = make_record(500, timestamp=None)
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        sink.write_run({"run_id": "r1", "started": T0.isoformat()}, old + mid + new + [undated])
        assert count(sink, outliers) == 10 + sum(r["anomaly"] for r in mid + new + [undated])
        deleted = sink.apply_retention(30, now=now)
        assert deleted["alerts"] == 10 and deleted["outliers"] == 10
        left = set(column(sink, alerts.c.alert_id))
        assert left == {r["id"] for r in mid + new + [undated]}
        deleted = sink.apply_retention(10, now=now)
        assert deleted["alerts"] == 10
        # an undated row goes by its write time (written just now by the wall clock)
        sink.apply_retention(0.5, now=datetime.now(timezone.utc) + timedelta(days=1))
        assert count(sink, alerts) == 0 and count(sink, outliers) == 0
        assert count(sink, runs) == 1  # model-version history is kept unless asked
        sink.apply_retention(1, now=now, include_runs=True)
        assert count(sink, runs) == 0


def test_retention_days_applied_by_write_run(db, tmp_path):
    with SqlSink(db, spool_dir=tmp_path / "spool", retention_days=30) as sink:
        # alerts from 2024 are far older than 30 days from today's clock
        c = sink.write_run({"run_id": "r"}, make_day(10))
        assert c["alerts_inserted"] == 10 and c["retention_deleted"] >= 10
        assert count(sink, alerts) == 0


# --- faults: nothing lost ---------------------------------------------------------------------

def _broken_urls(db: str, tmp_path: Path):
    """(description, URL that cannot work) pairs for this kind of database."""
    if db.startswith("sqlite"):
        a_dir = tmp_path / "a-directory.db"
        a_dir.mkdir()
        return [("not a database file", f"sqlite:///{a_dir}")]
    u = sa.engine.make_url(db)
    return [
        ("closed port", u.set(port=free_port()).render_as_string(hide_password=False)),
        ("wrong password", u.set(password="wrong-pw-Zq9").render_as_string(hide_password=False)),
    ]


def test_unreachable_then_fixed_nothing_lost(db, tmp_path):
    for k, (what, bad_url) in enumerate(_broken_urls(db, tmp_path)):
        spool = tmp_path / f"spool-{k}"
        day1, day2 = make_day(300, day=2 * k), make_day(200, day=2 * k + 1)
        with SqlSink(bad_url, spool_dir=spool, batch_size=100, timeout=2) as bad:
            with pytest.raises(SqlUnavailableError) as ei:
                bad.write_run({"run_id": f"day1-{k}"}, day1, clusters_for(day1))
            err = ei.value
            assert isinstance(err, OutputUnavailableError) and isinstance(err, OutputError)
            assert err.exit_code == 75 and err.spooled == 4 and len(bad.spool) == 4, what
            assert "wrong-pw-Zq9" not in str(err) and "mimizuku-test-pw" not in str(err)
            assert bad.masked_url in str(err)
            # still down: the new day queues behind the first, nothing is written out of order
            with pytest.raises(SqlUnavailableError):
                bad.write_run({"run_id": f"day2-{k}"}, day2)
            assert len(bad.spool) == 7
        with SqlSink(db, spool_dir=spool, batch_size=100) as good:
            good.ensure_schema()
            before = count(good, alerts)
            c = good.write_run({"run_id": f"day3-{k}"}, [])  # the next run flushes the spool first
            assert c["spool_replayed"] == 7 and len(good.spool) == 0
            assert count(good, alerts) - before == 500
            with good.engine.connect() as conn:
                ids = {r.alert_id: r.id for r in conn.execute(sa.select(alerts.c.alert_id, alerts.c.id))}
                run_ids = set(conn.execute(sa.select(runs.c.run_id)).scalars())
            assert max(ids[r["id"]] for r in day1) < min(ids[r["id"]] for r in day2)  # in order
            assert {f"day1-{k}", f"day2-{k}"} <= run_ids
            noise = set(column(good, outliers.c.alert_id, outliers.c.noise))
            assert {r["id"] for r in day1 if clusters_for(day1)[r["id"]] == -1} <= noise


def test_sqlite_locked_then_released(tmp_path):
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    with SqlSink(url, spool_dir=tmp_path / "spool", timeout=0.2) as sink:
        sink.write_run({"run_id": "r0"}, make_day(5))
        holder = sqlite3.connect(str(path), timeout=0)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            with pytest.raises(SqlUnavailableError, match="locked"):
                sink.write_run({"run_id": "r1"}, make_day(50, day=1))
            assert len(sink.spool) == 2
        finally:
            holder.rollback()
            holder.close()
        assert sink.flush_spool() == 2
        assert count(sink, alerts) == 55 and len(sink.spool) == 0


class TcpProxy:
    """A loopback TCP relay in front of the database: stopping it is the database going away."""

    def __init__(self, target: tuple, port: int = 0):
        self.target, self.port = target, port
        self.conns: list = []
        self.lsock = None

    def start(self) -> "TcpProxy":
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self.port = ls.getsockname()[1]
        self.lsock = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()
        return self

    def _accept(self, ls) -> None:
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                u = socket.create_connection(self.target, timeout=5)
            except OSError:
                c.close()
                continue
            u.settimeout(None)
            self.conns += [c, u]
            threading.Thread(target=self._pump, args=(c, u), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c), daemon=True).start()

    @staticmethod
    def _pump(a, b) -> None:
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        try:
            self.lsock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone does not
        except OSError:
            pass
        self.lsock.close()
        for s in self.conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
        self.conns = []


def test_mariadb_goes_away_and_comes_back(mysql_db, tmp_path):
    """A long-lived sink whose pooled connection dies with the server's reachability."""
    u = sa.engine.make_url(mysql_db)
    proxy = TcpProxy((u.host, u.port or 3306)).start()
    via = u.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    try:
        with SqlSink(via, spool_dir=tmp_path / "spool", batch_size=50, timeout=2) as sink:
            d1, d2, d3 = make_day(120, 1), make_day(120, 2), make_day(120, 3)
            assert sink.write_run({"run_id": "d1"}, d1)["alerts_inserted"] == 120
            proxy.stop()
            with pytest.raises(SqlUnavailableError):
                sink.write_run({"run_id": "d2"}, d2)
            assert len(sink.spool) == 4
            proxy = TcpProxy((u.host, u.port or 3306), port=proxy.port).start()
            c = sink.write_run({"run_id": "d3"}, d3)
            assert c["spool_replayed"] == 4 and c["spool_alerts_inserted"] == 120
            assert c["alerts_inserted"] == 120
            with sink.engine.connect() as conn:
                ids = {r.alert_id: r.id for r in conn.execute(sa.select(alerts.c.alert_id, alerts.c.id))}
            assert len(ids) == 360
            assert max(ids[r["id"]] for r in d2) < min(ids[r["id"]] for r in d3)
    finally:
        proxy.stop()


def test_corrupt_spool_item_is_set_aside_not_blocking(db, tmp_path):
    spool = tmp_path / "spool"
    with SqlSink(db, spool_dir=spool) as sink:
        sink.spool.put({"format": 1, "kind": "no-such-kind"})
        (spool / "99999999999999999998-garbage.json").write_text("{not json")
        sink.spool.put({"format": 1, "kind": "alerts", "run_id": "late", "model_version": "m",
                        "records": make_day(3, day=9), "clusters": [1, 2, -1]})
        with pytest.raises(sqlout.SqlDataError, match="refused 1 batch") as ei:
            sink.write_run({"run_id": "r"}, make_day(4))
        assert ei.value.exit_code == 65
        c = ei.value.counts
        assert c["spool_replayed"] == 1 and c["set_aside"] == 1 and c["alerts_inserted"] == 4
        assert c["spool_alerts_inserted"] == 3
        assert count(sink, alerts) == 7
        assert len(list(spool.glob("*.bad"))) == 2 and len(sink.spool) == 0


def test_default_url_is_a_sqlite_file_in_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MIMIZUKU_SPOOL_DIR", str(tmp_path / "sp"))
    with SqlSink() as sink:
        sink.write_run({"run_id": "r"}, make_day(3))
        assert count(sink, alerts) == 3
    assert (tmp_path / "mimizuku.db").is_file()
    assert sqlout.mask_url("mysql+pymysql://u:secret@h/db") == "mysql+pymysql://u:***@h/db"
    assert "utf8mb4" in str(SqlSink("mysql+pymysql://u:p@127.0.0.1/db?charset=utf8").url)


# --- several writer threads -----------------------------------------------------------------------

@pytest.mark.parametrize("writers", [1, 3])
def test_writer_threads_failure_keeps_unwritten_batches_in_order(db, tmp_path, writers):
    """With several writers, a failure mid-run keeps exactly the batches not written (in their
    order) in the spool, the run row is never written before its batches, and the next run
    writes the rest: nothing lost, nothing twice."""
    from sqlalchemy import exc as sa_exc

    recs = make_day(1000)
    spool = tmp_path / "spool"
    sink = SqlSink(db, spool_dir=spool, batch_size=50, writers=writers)
    inserts, fail_at = [], {7}
    lock = threading.Lock()

    def flaky(conn, cursor, statement, parameters, context, executemany):
        """The server goes away on the 8th batch of alerts (a fault at the database, not in our code)."""
        text = " ".join(statement.split()).lower()
        if not text.startswith("insert"):
            return
        table = "runs" if " into runs " in f" {text} " else "alerts" if " into alerts " in f" {text} " else "other"
        with lock:
            n = sum(1 for t in inserts if t == "alerts")
            inserts.append(table)
        if table == "alerts" and n in fail_at:
            raise sa_exc.OperationalError("INSERT", {}, Exception("server has gone away"))

    sa.event.listen(sink.engine, "before_cursor_execute", flaky)
    with pytest.raises(SqlUnavailableError) as ei:
        sink.write_run({"run_id": "flaky"}, recs, clusters_for(recs))
    assert "alerts" in inserts and "runs" not in inserts  # the run row waits for every batch before it
    written = count(sink, alerts)
    spooled = ei.value.spooled
    assert spooled == len(sink.spool) and spooled >= 2  # the failed batch(es) and the run row at least
    assert written + 50 * (spooled - 1) >= 1000 > written  # every unwritten batch is in the spool
    items = [it for _p, it in sink.spool.items()]
    assert items[-1]["kind"] == "run"
    firsts = [int(it["records"][0]["id"].rsplit(".", 1)[-1]) for it in items if it["kind"] == "alerts"]
    assert firsts == sorted(firsts)  # in their original order
    fail_at.clear()
    c = sink.write_run({"run_id": "next"}, [])
    assert len(sink.spool) == 0 and c["spool_replayed"] == spooled
    assert count(sink, alerts) == 1000 and count(sink, runs) == 2
    assert c["spool_alerts_inserted"] == 1000 - written  # nothing written twice
    sink.close()


def test_default_mysql_driver_is_resolved(monkeypatch):
    from mimizuku.outputs.sql import sink

    u = sink.prepare_url("mysql://u:p@127.0.0.1:1/db")
    assert u.drivername == f"mysql+{sink.mysql_driver()}" and u.query["charset"] == "utf8mb4"
    monkeypatch.setattr(sink, "mysql_driver", lambda: "pymysql")
    assert sink.prepare_url("mariadb://u:p@h/db").drivername == "mariadb+pymysql"
    assert sink.prepare_url("mysql+mysqldb://u:p@h/db").drivername == "mysql+mysqldb"


# --- analysts' verdicts (mimizuku feedback): the audit table and the look-up of one record -------

def test_feedback_changes_are_written_once_and_a_record_is_found_by_its_id(db, tmp_path):
    recs = make_day(20)
    change = {"change_id": "fb-0123456789ab:add", "id": "fb-0123456789ab", "action": "add",
              "verdict": "false-positive", "scope": "agent-account", "by": "alice", "note": "n\u00e9 \U0001F600 " * 300,
              "alert_id": recs[3]["id"], "created_at": "2026-12-07T10:00:00Z", "expires_at": "2027-01-06T10:00:00Z",
              "changed_at": "2026-12-07T10:00:00Z",
              "situations": [{"detector": "commands", "content": "[]", "agent": "web-01", "account": "www-data"}]}
    with SqlSink(db, spool_dir=tmp_path / "spool") as sink:
        sink.write_run({"run_id": "r", "model_version": "m", "status": "ok"}, recs)
        assert sink.write_feedback([change]) == 1
        assert sink.write_feedback([change]) == 0                    # a retry adds nothing
        assert sink.find_alert(recs[3]["id"])["alert_id"] == recs[3]["id"]
        assert sink.find_alert("absent") is None
        with sink.engine.connect() as c:
            t = feedback_table.c
            row = c.execute(sa.select(t.feedback_id, t.author, t.note, t.truncated, t.expires)).one()
    assert row[0] == "fb-0123456789ab" and row[1] == "alice" and row[3]            # the note was cut to its column
    assert row[2].startswith("n\u00e9 \U0001F600") and row[4] == datetime(2027, 1, 6, 10, 0)
