"""Scored records to SQL: SQLite by default, MySQL/MariaDB (or anything SQLAlchemy speaks) by URL.

Writes are batched (one transaction per batch, ``executemany``), idempotent (unique alert id;
rows already present are skipped with the dialect's insert-or-ignore) and go through bound
parameters only. What cannot be written because the database is down, locked or refuses our
credentials is kept in a durable spool and written first, in order, by the next ``write_run`` or
``flush_spool`` - nothing is lost. SQLAlchemy Core, no ORM: bulk rows stay plain dicts. The
tables are in ``mimizuku.outputs.sql.schema``, the record-to-row conversion in
``mimizuku.outputs.sql.rows``; this module holds the database side: URLs, drivers, the writer
threads, the spool and retention.
"""
from __future__ import annotations

import json
import logging
import math
import os
import queue
import threading
from collections.abc import Mapping as MappingABC
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Engine, make_url

from mimizuku.core.spool import Spool, SpoolError
from mimizuku.outputs import (
    OutputDataError,
    OutputError,
    OutputUnavailableError,
    default_spool_dir,
    parse_timestamp,
)
from mimizuku.outputs.sql.rows import alert_key, cluster_of, feedback_row, normalise_run, rows_for, run_row, utc_naive
from mimizuku.outputs.sql.schema import SCHEMA_VERSION, alerts, feedback, metadata, outliers, runs, schema_info

__all__ = [
    "SqlSink",
    "SqlOutputError",
    "SqlUnavailableError",
    "SqlDataError",
    "default_url",
    "mask_url",
    "mysql_driver",
    "prepare_url",
    "DEFAULT_DB_FILE",
]

log = logging.getLogger(__name__)

#: Format of the spool items this module writes (raw records, so replays survive schema changes).
_SPOOL_FORMAT = 1

DEFAULT_DB_FILE = "mimizuku.db"
#: Dialects whose insert-or-ignore is executed as one driver-level executemany per batch.
_BULK_DIALECTS = ("sqlite", "mysql", "mariadb")

# --- errors ------------------------------------------------------------------------------------


class SqlOutputError(OutputError):
    """Base of the SQL sink's errors."""


class SqlUnavailableError(SqlOutputError, OutputUnavailableError):
    """Database unreachable, locked, or our credentials refused; the data is in the spool."""


class SqlDataError(SqlOutputError, OutputDataError):
    """The database refused some rows themselves; those batches were set aside as ``*.bad``."""


# --- helpers -----------------------------------------------------------------------------------

def mysql_driver() -> str:
    """The driver for a ``mysql://`` URL that names none: mysqlclient (C escaping, the faster
    writer) when installed (``pip install mimizuku[mysql]``), else PyMySQL (pure Python, always there)."""
    import importlib.util

    return "mysqldb" if importlib.util.find_spec("MySQLdb") is not None else "pymysql"


def default_url(directory: Optional[os.PathLike] = None) -> str:
    """``sqlite:///<directory or cwd>/mimizuku.db``: a file database, nothing to set up."""
    d = Path(directory) if directory is not None else Path.cwd()
    return "sqlite:///" + str((d / DEFAULT_DB_FILE).absolute())


def mask_url(url: Any) -> str:
    """The URL as text with its password replaced by ``***`` (safe for logs and errors)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparseable: show no part of it that could hold a secret
        return "<unparseable database URL>"


def prepare_url(url: Any) -> URL:
    """The URL a sink connects to: MySQL/MariaDB get the default driver (``mysql_driver``) when
    none is named and ``charset=utf8mb4``; a SQLite file gets its directory created."""
    try:
        u = make_url(url)
    except Exception as e:
        raise SqlOutputError(f"invalid database URL {mask_url(url)}: {e.__class__.__name__}") from None
    if u.get_backend_name() in ("mysql", "mariadb"):
        if "+" not in u.drivername:
            u = u.set(drivername=f"{u.get_backend_name()}+{mysql_driver()}")
        u = u.update_query_dict({"charset": "utf8mb4"})
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" \
            and not u.database.startswith("file:"):
        try:
            Path(u.database).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # connecting fails then, with a clear error, and the data is spooled
    return u


def _mysql_datetime(dt: datetime) -> str:
    return dt.isoformat(" ", "microseconds")


def _jsonable(item: Any) -> Any:
    """The item as the spool can store it (odd value types from a producer become strings)."""
    return json.loads(json.dumps(item, default=str))


# --- the sink ----------------------------------------------------------------------------------

class SqlSink:
    """Writes runs, alerts and outliers to one database; see the module docstring.

    ``url``: SQLAlchemy URL (``None`` = :func:`default_url`); MySQL/MariaDB URLs always get
    ``charset=utf8mb4``. ``spool_dir``: where undeliverable batches wait (``None`` =
    :func:`mimizuku.outputs.default_spool_dir`). ``retention_days``: when set, every
    ``write_run`` ends with ``apply_retention(retention_days)``. ``timeout``: seconds to wait for
    a connection or a lock before giving up and spooling. ``writers``: writer threads, each on
    its own connection (default: 2 for MySQL/MariaDB, 1 for SQLite).
    """

    def __init__(self, url: Optional[str] = None, *, spool_dir: Optional[os.PathLike] = None,
                 batch_size: int = 5000, retention_days: Optional[float] = None, timeout: float = 10.0,
                 echo: bool = False, writers: Optional[int] = None):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.url: URL = prepare_url(url if url is not None else default_url())
        self.masked_url = mask_url(self.url)
        self.batch_size = int(batch_size)
        self.retention_days = retention_days
        self.timeout = float(timeout)
        self.spool = Spool(spool_dir if spool_dir is not None else default_spool_dir("sql", self.masked_url))
        self._schema_ready = False
        self._compiled: Dict[str, Any] = {}
        self.writers = writers
        self._counts_lock = threading.Lock()
        self._schema_lock = threading.Lock()
        try:
            self.engine: Engine = self._create_engine(echo)
        except ImportError as e:
            raise SqlOutputError(f"cannot use {self.masked_url}: driver missing ({e}); "
                                 f"install it (e.g. pip install PyMySQL)", destination=self.masked_url) from e

    # -- construction --------------------------------------------------------------------------
    def _create_engine(self, echo: bool) -> Engine:
        backend = self.url.get_backend_name()
        kw: Dict[str, Any] = {"pool_pre_ping": True, "echo": echo}
        if backend == "sqlite":
            kw["connect_args"] = {"timeout": self.timeout}
        elif backend in ("mysql", "mariadb"):
            driver = self.url.get_driver_name()
            if driver in ("pymysql", "mysqldb"):
                # a server that stops answering must not hang the nightly job forever
                kw["connect_args"] = {"connect_timeout": max(1, int(math.ceil(self.timeout))),
                                      "read_timeout": 600, "write_timeout": 600}
            kw["pool_recycle"] = 3600
        return sa.create_engine(self.url, **kw)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "SqlSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- errors --------------------------------------------------------------------------------
    def _reason(self, e: BaseException) -> str:
        """One line, bounded, password-free description of a driver error."""
        orig = getattr(e, "orig", None) or e
        text = f"{orig.__class__.__name__}: {orig}"
        pw = self.url.password
        if pw and len(str(pw)) >= 3:
            text = text.replace(str(pw), "***")
        text = " ".join(text.split())
        return text[:400]

    def _unavailable(self, e: BaseException, spooled: int) -> SqlUnavailableError:
        where = f"; {spooled} batch(es) kept in spool {self.spool.directory}" if spooled else ""
        pending = len(self.spool)
        return SqlUnavailableError(
            f"cannot write to {self.masked_url}: {self._reason(e)}{where} "
            f"({pending} pending, written first next time)",
            destination=self.masked_url, spooled=spooled, spool_dir=self.spool.directory)

    @staticmethod
    def _is_data_error(e: BaseException) -> bool:
        return isinstance(e, (sa_exc.DataError, sa_exc.IntegrityError, TypeError, ValueError))

    # -- schema --------------------------------------------------------------------------------
    def ensure_schema(self) -> None:
        """Create missing tables and check the schema version (once per sink).

        Raises :class:`SqlUnavailableError` when the database cannot be reached."""
        try:
            self._ensure_schema()
        except sa_exc.SQLAlchemyError as e:
            raise self._unavailable(e, 0) from e

    def drop_schema(self) -> None:
        """Drop this sink's tables and forget that the schema was created: the next write starts
        from empty tables (benchmarks that time fresh-table writes; never used by the product)."""
        with self._schema_lock, self.engine.begin() as conn:
            for table in (feedback, outliers, alerts, runs, schema_info):
                table.drop(conn, checkfirst=True)
            self._schema_ready = False

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:  # writer threads: one creates, the others wait
            if not self._schema_ready:
                self._create_schema()

    def _create_schema(self) -> None:
        metadata.create_all(self.engine, checkfirst=True)
        with self.engine.begin() as conn:
            found = conn.execute(sa.select(schema_info.c.version).where(schema_info.c.name == "mimizuku")).scalar()
            if found is None:
                conn.execute(self._insert_ignore(schema_info, "name"), [{"name": "mimizuku", "version": SCHEMA_VERSION}])
            elif int(found) > SCHEMA_VERSION:
                raise SqlOutputError(
                    f"{self.masked_url} holds schema version {found}, newer than this mimizuku's "
                    f"{SCHEMA_VERSION}: upgrade mimizuku", destination=self.masked_url)
        self._schema_ready = True

    def _insert_ignore(self, table: sa.Table, key: str) -> Any:
        """INSERT that skips rows whose unique ``key`` is already present (idempotent writes)."""
        name = self.engine.dialect.name
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table).on_conflict_do_nothing(index_elements=[key])
        if name in ("mysql", "mariadb"):
            return sa.insert(table).prefix_with("IGNORE", dialect=name)
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing(index_elements=[key])
        return sa.insert(table)  # rows are pre-filtered against existing keys below

    def _upsert_run(self, conn: sa.Connection, row: Dict[str, Any]) -> None:
        name = self.engine.dialect.name
        update = {k: v for k, v in row.items() if k != "run_id"}
        if name == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            conn.execute(sqlite_insert(runs).values(**row).on_conflict_do_update(index_elements=["run_id"], set_=update))
        elif name in ("mysql", "mariadb"):
            from sqlalchemy.dialects.mysql import insert as mysql_insert

            conn.execute(mysql_insert(runs).values(**row).on_duplicate_key_update(**update))
        else:
            res = conn.execute(sa.update(runs).where(runs.c.run_id == row["run_id"]).values(**update))
            if not res.rowcount:
                conn.execute(sa.insert(runs).values(**row))

    # -- delivery ------------------------------------------------------------------------------
    def _existing(self, conn: sa.Connection, table: sa.Table, keys: List[str]) -> set:
        found: set = set()
        for i in range(0, len(keys), 900):  # below SQLite's bound-parameter limit
            chunk = keys[i:i + 900]
            found.update(conn.execute(sa.select(table.c.alert_id).where(table.c.alert_id.in_(chunk))).scalars())
        return found

    def _bulk_insert(self, table: sa.Table) -> Tuple[str, Optional[Tuple[str, ...]], List[Tuple[str, Any]]]:
        """The insert-or-ignore for ``table`` compiled once by SQLAlchemy for this dialect:
        (SQL text with bound-parameter placeholders, positional order or None, the column type
        processors that turn Python values into driver values)."""
        cached = self._compiled.get(table.name)
        if cached is None:
            dialect = self.engine.dialect
            cols = [c for c in table.columns if c.name != "id"]
            stmt = self._insert_ignore(table, "alert_id").values({c.name: sa.bindparam(c.name, type_=c.type) for c in cols})
            compiled = stmt.compile(dialect=dialect)
            procs = []
            mysql = dialect.name in ("mysql", "mariadb")
            for c in cols:
                if mysql and isinstance(c.type, sa.DateTime):
                    # PyMySQL's own datetime escaping costs 3.4 us a value; ISO text is 10x cheaper
                    # and MariaDB reads it into DATETIME(6) exactly.
                    p = _mysql_datetime
                elif mysql and isinstance(c.type, sa.Boolean):
                    p = int
                else:
                    p = c.type.dialect_impl(dialect).bind_processor(dialect)
                if p is not None:
                    procs.append((c.name, p))
            order = tuple(compiled.positiontup) if compiled.positional else None
            cached = (str(compiled), order, procs)
            self._compiled[table.name] = cached
        return cached

    def _driver_params(self, table: sa.Table, rows: List[Dict[str, Any]]) -> List[Any]:
        """Rows as the driver takes them for the compiled bulk insert (type processors applied)."""
        if not rows or self.engine.dialect.name not in _BULK_DIALECTS:
            return rows
        _sql, order, procs = self._bulk_insert(table)
        if procs:
            for r in rows:
                for name, p in procs:
                    v = r[name]
                    if v is not None:
                        r[name] = p(v)
        return [tuple(r[k] for k in order) for r in rows] if order else rows

    def _insert_new(self, conn: sa.Connection, table: sa.Table, params: List[Any]) -> Tuple[int, int]:
        """(inserted, already present), with one ``executemany`` of the whole batch.

        SQLite and MySQL/MariaDB skip duplicates themselves (insert-or-ignore) and report the
        inserted count as the row count. The statement is compiled by SQLAlchemy and executed at
        the driver level: per-row SQLAlchemy parameter handling would halve MariaDB throughput.
        Other dialects pre-filter the keys that already exist."""
        if not params:
            return 0, 0
        if self.engine.dialect.name not in _BULK_DIALECTS:
            existing = self._existing(conn, table, [r["alert_id"] for r in params])
            new = [r for r in params if r["alert_id"] not in existing]
            if new:
                conn.execute(self._insert_ignore(table, "alert_id"), new)
            return len(new), len(params) - len(new)
        sql, _order, _procs = self._bulk_insert(table)
        res = conn.exec_driver_sql(sql, params)
        inserted = res.rowcount
        if inserted is None or inserted < 0 or inserted > len(params):  # driver gave no usable count
            inserted = len(params)
        return inserted, len(params) - inserted

    def _prepare(self, item: Mapping[str, Any]) -> Tuple[Any, ...]:
        """Turn one spool-format item into driver-ready rows (CPU work, no database)."""
        kind = item.get("kind")
        written = datetime.now(timezone.utc).replace(tzinfo=None)
        if kind == "alerts":
            records = item.get("records") or []
            labels = item.get("clusters") or [None] * len(records)
            a_rows, o_rows = rows_for(records, labels, item.get("run_id"), item.get("model_version"), written)
            return ("alerts", self._driver_params(alerts, a_rows), self._driver_params(outliers, o_rows))
        if kind == "run":
            return ("run", run_row(item.get("run") or {}, written))
        raise ValueError(f"unknown spool item kind {kind!r}")

    def _write_prepared(self, prepared: Tuple[Any, ...], counts: Dict[str, int]) -> None:
        """Write one prepared item in its own transaction (counts updated under a lock: several
        writer threads share them)."""
        self._ensure_schema()
        if prepared[0] == "alerts":
            with self.engine.begin() as conn:
                ai, ae = self._insert_new(conn, alerts, prepared[1])
                oi, oe = self._insert_new(conn, outliers, prepared[2])
            with self._counts_lock:
                counts["alerts_inserted"] += ai
                counts["alerts_existing"] += ae
                counts["outliers_inserted"] += oi
                counts["outliers_existing"] += oe
        else:
            with self.engine.begin() as conn:
                self._upsert_run(conn, prepared[1])
            with self._counts_lock:
                counts["runs_written"] += 1

    def _writer_count(self) -> int:
        """Writer threads: one per connection. A MySQL/MariaDB server stores batch n while the
        driver escapes batch n+1 on another connection; SQLite has one writer at a time anyway."""
        if self.writers is not None:
            return max(1, int(self.writers))
        return 2 if self.engine.dialect.name in ("mysql", "mariadb") else 1

    def _pipeline(self, source: Iterable[Tuple[Optional[Path], Dict[str, Any]]], counts: Dict[str, int],
                  on_written: Callable[[Optional[Path]], None],
                  ) -> Tuple[Optional[BaseException], List[Tuple[Optional[Path], Dict[str, Any]]]]:
        """Write ``(spool path or None, item)`` pairs: this thread prepares the next items while
        writer threads (:meth:`_writer_count`, each on its own connection) have earlier ones in
        the database. Alert batches may commit in any order (they are idempotent); a run row is
        written only after every batch before it has been written.

        Items the database refuses as data are set aside as ``*.bad``. The first other failure
        stops the writers; returns ``(that error or None, the items not written, in order)``.
        Items of ``source`` not consumed yet are left in it for the caller.
        """
        n_writers = self._writer_count()
        jobs: "queue.Queue[Any]" = queue.Queue(maxsize=n_writers + 1)
        stop = threading.Event()
        failure: List[BaseException] = []
        pending: List[Tuple[int, Optional[Path], Dict[str, Any]]] = []
        lock = self._counts_lock

        def write_one(seq: int, path: Optional[Path], item: Dict[str, Any], prepared: Any) -> None:
            if stop.is_set():
                with lock:
                    pending.append((seq, path, item))
                return
            try:
                if isinstance(prepared, BaseException):
                    raise prepared
                self._write_prepared(prepared, counts)
            except Exception as e:
                if self._is_data_error(e):
                    try:
                        self._set_aside(item, path, e)
                        with lock:
                            counts["set_aside"] += 1
                        return
                    except Exception as e2:  # cannot even set it aside: keep it pending
                        e = e2
                with lock:
                    failure.append(e)
                    pending.append((seq, path, item))
                stop.set()
                return
            on_written(path)

        def writer() -> None:
            while True:
                job = jobs.get()
                try:
                    if job is None:
                        return
                    write_one(*job)
                finally:
                    jobs.task_done()

        threads = [threading.Thread(target=writer, name=f"mimizuku-sql-writer-{i}", daemon=True)
                   for i in range(n_writers)]
        for t in threads:
            t.start()
        leftover: Optional[Tuple[int, Optional[Path], Dict[str, Any]]] = None
        seq = 0
        try:
            for path, item in source:
                seq += 1
                if stop.is_set():
                    leftover = (seq, path, item)
                    break
                try:
                    prepared: Any = self._prepare(item)
                except Exception as e:  # a malformed item: the writer sets it aside, in order
                    prepared = e
                if isinstance(prepared, tuple) and prepared[0] == "run":
                    jobs.join()  # every batch before it is in the database (or has failed)
                    write_one(seq, path, item, prepared)
                else:
                    jobs.put((seq, path, item, prepared))
        finally:
            for _t in threads:
                jobs.put(None)
            for t in threads:
                t.join()
        if leftover is not None:
            pending.append(leftover)
        if failure:
            self._schema_ready = False
        pending.sort(key=lambda p: p[0])
        return (failure[0] if failure else None), [(p, it) for _s, p, it in pending]

    def _items(self, run: Dict[str, Any], records: Iterable[Mapping[str, Any]],
               clusters: Optional[Mapping[str, Any]]) -> Iterator[Dict[str, Any]]:
        """Spool-format items for a run: alert batches in order, then the run row."""
        batch: List[Mapping[str, Any]] = []
        labels: List[Optional[int]] = []

        def item() -> Dict[str, Any]:
            return {"format": _SPOOL_FORMAT, "kind": "alerts", "run_id": run["run_id"],
                    "model_version": run.get("model_version"), "records": batch, "clusters": labels}

        for rec in records:
            if rec.__class__ is not dict and not isinstance(rec, MappingABC):
                continue
            batch.append(rec)
            labels.append(cluster_of(rec, alert_key(rec), clusters))
            if len(batch) >= self.batch_size:
                yield item()
                batch, labels = [], []
        if batch:
            yield item()
        yield {"format": _SPOOL_FORMAT, "kind": "run", "run": run}

    @staticmethod
    def _new_counts() -> Dict[str, int]:
        return {"alerts_inserted": 0, "alerts_existing": 0, "outliers_inserted": 0, "outliers_existing": 0,
                "runs_written": 0, "spool_replayed": 0, "spool_alerts_inserted": 0, "spooled": 0, "set_aside": 0,
                "retention_deleted": 0}

    def _set_aside(self, item: Any, path: Optional[Path], e: BaseException) -> Path:
        """Keep a batch the database refuses as ``*.bad`` next to the spool (not lost, not retried)."""
        if path is None:
            path = self.spool.put(_jsonable(item))
        bad = path.with_suffix(".bad")
        os.replace(path, bad)
        log.error("SQL %s refused a batch (%s); kept as %s", self.masked_url, self._reason(e), bad)
        return bad

    def _raise_for(self, e: BaseException, spooled: int) -> None:
        if isinstance(e, sa_exc.SQLAlchemyError):
            raise self._unavailable(e, spooled) from e
        if isinstance(e, OutputError):
            e.spooled, e.spool_dir = spooled, self.spool.directory
        raise e

    def flush_spool(self, counts: Optional[Dict[str, int]] = None) -> int:
        """Write pending spooled batches in order; returns how many were written.

        Raises :class:`SqlUnavailableError` (leaving the rest in place) when the database is
        still unavailable.
        """
        counts = counts if counts is not None else self._new_counts()
        before = counts["spool_replayed"]

        def ack(path: Optional[Path]) -> None:
            if path is not None:
                self.spool.ack(path)
            counts["spool_replayed"] += 1

        try:
            error, _pending = self._pipeline(self.spool.items(), counts, ack)  # pending stay on disk
        except SpoolError as e:
            raise SqlOutputError(str(e), destination=self.masked_url, spool_dir=self.spool.directory) from e
        if error is not None:
            self._raise_for(error, 0)
        return counts["spool_replayed"] - before

    def write_run(self, run: Optional[Mapping[str, Any]], records: Iterable[Mapping[str, Any]],
                  clusters: Optional[Mapping[str, Any]] = None) -> Dict[str, int]:
        """Write a run's records (and its ``runs`` row) idempotently; returns counts.

        ``clusters`` maps alert id -> DBSCAN label (-1 = noise); without it a record's own
        ``cluster`` key is used if present. Spooled batches from earlier failures go first. On an
        unavailable database the remaining batches are spooled and :class:`SqlUnavailableError`
        is raised; batches the database refuses as data (or unreadable spool items) are set aside
        as ``*.bad`` and :class:`SqlDataError` is raised at the end, with ``.counts``.

        Counts: ``alerts_inserted``/``alerts_existing`` and ``outliers_*`` for these records,
        ``runs_written``, ``spool_replayed`` (earlier batches written first) and
        ``spool_alerts_inserted``, ``spooled``, ``set_aside``, ``retention_deleted``.
        """
        counts = self._new_counts()
        run_n = normalise_run(run)
        items = self._items(run_n, records, clusters)

        def spool_rest(first: Sequence[Dict[str, Any]]) -> int:
            k = 0
            try:
                for it in first:
                    self.spool.put(_jsonable(it))
                    k += 1
                for it in items:
                    self.spool.put(_jsonable(it))
                    k += 1
            except SpoolError as se:
                raise SqlOutputError(f"cannot write to {self.masked_url} and cannot spool either: {se}; "
                                     f"{k} batch(es) kept", destination=self.masked_url, spooled=k,
                                     spool_dir=self.spool.directory) from se
            counts["spooled"] += k
            return k

        replay = self._new_counts()
        try:
            self.flush_spool(replay)
        except Exception as e:  # earlier batches still pending: these must wait behind them
            k = spool_rest(())
            if isinstance(e, SqlUnavailableError):
                raise self._unavailable(e.__cause__ or e, k) from e.__cause__
            if isinstance(e, OutputError):
                e.spooled, e.spool_dir = k, self.spool.directory
            raise
        finally:
            counts["spool_replayed"] = replay["spool_replayed"]
            counts["spool_alerts_inserted"] = replay["alerts_inserted"]
            counts["set_aside"] = replay["set_aside"]
        error, pending = self._pipeline(((None, it) for it in items), counts, lambda _p: None)
        if error is not None:
            self._raise_for(error, spool_rest([it for _p, it in pending]))
        if self.retention_days is not None:
            counts["retention_deleted"] = sum(self.apply_retention(self.retention_days).values())
        if counts["set_aside"]:
            err = SqlDataError(f"{self.masked_url} refused {counts['set_aside']} batch(es); everything else was "
                               f"written; the refused ones are kept as *.bad in {self.spool.directory}",
                               destination=self.masked_url, spool_dir=self.spool.directory)
            err.counts = counts
            raise err
        return counts

    # -- retention -----------------------------------------------------------------------------
    def find_alert(self, alert_id: str) -> Optional[Dict[str, Any]]:
        """The ``alerts`` row of one scored alert (column -> value), or None when it is not there.
        Raises :class:`SqlUnavailableError` when the database cannot be reached."""
        try:
            self._ensure_schema()
            with self.engine.connect() as conn:
                row = conn.execute(sa.select(alerts).where(alerts.c.alert_id == alert_id)).mappings().first()
        except sa_exc.SQLAlchemyError as e:
            raise self._unavailable(e, 0) from e
        return dict(row) if row is not None else None

    def write_feedback(self, changes: Sequence[Mapping[str, Any]]) -> int:
        """Write changes of analysts' verdicts to the ``feedback`` table (``feedback_row``); a
        change already written (same ``change_id``) is skipped. Returns the rows written; raises
        :class:`SqlUnavailableError` when the database cannot be reached (the verdict store keeps
        the change: it can be written again)."""
        if not changes:
            return 0
        now = datetime.now(timezone.utc)
        rows = [feedback_row(c, now) for c in changes]
        try:
            self._ensure_schema()
            with self.engine.begin() as conn:
                ids = [r["change_id"] for r in rows]
                have = set(conn.execute(sa.select(feedback.c.change_id).where(feedback.c.change_id.in_(ids))).scalars())
                fresh = [r for r in rows if r["change_id"] not in have]
                if fresh:
                    conn.execute(sa.insert(feedback), fresh)
        except sa_exc.SQLAlchemyError as e:
            raise self._unavailable(e, 0) from e
        return len(fresh)

    def apply_retention(self, days: float, *, now: Optional[datetime] = None, include_runs: bool = False) -> Dict[str, int]:
        """Delete alerts and outliers older than ``days`` (by alert time; by write time when the
        alert had none). Runs (the model-version history) only with ``include_runs``.
        Returns deleted row counts per table."""
        if days is None or float(days) < 0:
            raise ValueError("retention days must be >= 0")
        try:
            return self._apply_retention(float(days), now, include_runs)
        except sa_exc.SQLAlchemyError as e:
            raise self._unavailable(e, 0) from e

    def _apply_retention(self, days: float, now: Optional[datetime], include_runs: bool) -> Dict[str, int]:
        self._ensure_schema()
        now_dt = utc_naive(parse_timestamp(now)) if now is not None else datetime.now(timezone.utc).replace(tzinfo=None)
        cutoff = now_dt - timedelta(days=days)
        deleted: Dict[str, int] = {}
        with self.engine.begin() as conn:
            for t in (alerts, outliers):
                cond = sa.or_(t.c.timestamp < cutoff, sa.and_(t.c.timestamp.is_(None), t.c.written < cutoff))
                deleted[t.name] = conn.execute(sa.delete(t).where(cond)).rowcount or 0
            if include_runs:
                when = sa.func.coalesce(runs.c.finished, runs.c.started, runs.c.written)
                deleted["runs"] = conn.execute(sa.delete(runs).where(when < cutoff)).rowcount or 0
        return deleted
