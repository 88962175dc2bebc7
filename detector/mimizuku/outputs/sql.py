"""Scored records to SQL: SQLite by default, MySQL/MariaDB (or anything SQLAlchemy speaks) by URL.

Three tables, created when missing: ``alerts`` (every scored alert with its score and DBSCAN
cluster), ``outliers`` (the alerts that are anomalies or DBSCAN noise) and ``runs`` (one row per
nightly run: model version, counts, durations, figures). A ``mimizuku_schema`` row records the
schema version.

Writes are batched (one transaction per batch, ``executemany``), idempotent (unique alert id;
rows already present are skipped with the dialect's insert-or-ignore) and go through bound
parameters only. What cannot be written because the database is down, locked or refuses our
credentials is kept in a durable spool and written first, in order, by the next ``write_run`` or
``flush_spool`` - nothing is lost. SQLAlchemy Core, no ORM: bulk rows stay plain dicts.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import queue
import threading
import uuid
from collections.abc import Mapping as MappingABC
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import mysql as mysql_types
from sqlalchemy.engine import URL, Engine, make_url

from mimizuku.core.spool import Spool, SpoolError
from mimizuku.outputs import (
    OutputDataError,
    OutputError,
    OutputUnavailableError,
    bound_text,
    clean_text,
    default_spool_dir,
    parse_timestamp,
)

__all__ = [
    "SCHEMA_VERSION",
    "SqlSink",
    "SqlOutputError",
    "SqlUnavailableError",
    "SqlDataError",
    "default_url",
    "mask_url",
    "metadata",
    "alerts",
    "outliers",
    "runs",
]

log = logging.getLogger(__name__)

#: Bumped whenever a table changes; a database written by a newer schema is refused.
SCHEMA_VERSION = 1
#: Format of the spool items this module writes (raw records, so replays survive schema changes).
_SPOOL_FORMAT = 1

DEFAULT_DB_FILE = "mimizuku.db"
#: Dialects whose insert-or-ignore is executed as one driver-level executemany per batch.
_BULK_DIALECTS = ("sqlite", "mysql", "mariadb")

# Column sizes (characters). Attacker-controlled text longer than this is cut and marked.
ID_LEN = 64
AGENT_ID_LEN = 32
AGENT_NAME_LEN = 128
IP_LEN = 64
RULE_ID_LEN = 32
DESCRIPTION_LEN = 255
LOCATION_LEN = 512
DETECTOR_LEN = 16
SEVERITY_LEN = 10
PATH_LEN = 1024
COMMAND_LEN = 2048
USER_LEN = 255
VERSION_LEN = 64
STATUS_LEN = 16
MAX_REASONS = 50
REASON_LEN = 1024

# --- schema ------------------------------------------------------------------------------------

_TIME = sa.DateTime().with_variant(mysql_types.DATETIME(fsp=6), "mysql", "mariadb")
_JSON_TEXT = sa.Text().with_variant(mysql_types.MEDIUMTEXT(), "mysql", "mariadb")
_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # INTEGER PRIMARY KEY = rowid in SQLite
# utf8mb4: 4-byte UTF-8 (emoji) round-trips; _bin: ids compare exactly.
_MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

metadata = sa.MetaData()

schema_info = sa.Table(
    "mimizuku_schema",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    **_MYSQL,
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(ID_LEN), primary_key=True),
    sa.Column("started", _TIME),
    sa.Column("finished", _TIME),
    sa.Column("model_version", sa.String(VERSION_LEN)),
    sa.Column("status", sa.String(STATUS_LEN)),
    sa.Column("counts", _JSON_TEXT),
    sa.Column("durations", _JSON_TEXT),
    sa.Column("figures", _JSON_TEXT),
    sa.Column("written", _TIME, nullable=False),
    sa.Index("ix_runs_started", "started"),
    **_MYSQL,
)

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(ID_LEN), nullable=False, unique=True),
    sa.Column("run_id", sa.String(ID_LEN)),
    sa.Column("timestamp", _TIME),
    sa.Column("agent_id", sa.String(AGENT_ID_LEN)),
    sa.Column("agent_name", sa.String(AGENT_NAME_LEN)),
    sa.Column("agent_ip", sa.String(IP_LEN)),
    sa.Column("rule_id", sa.String(RULE_ID_LEN)),
    sa.Column("rule_level", sa.Integer),
    sa.Column("rule_description", sa.String(DESCRIPTION_LEN)),
    sa.Column("location", sa.String(LOCATION_LEN)),
    sa.Column("detector", sa.String(DETECTOR_LEN)),
    sa.Column("score", sa.Double),
    sa.Column("threshold", sa.Double),
    sa.Column("anomaly", sa.Boolean, nullable=False),
    sa.Column("severity", sa.String(SEVERITY_LEN)),
    sa.Column("cluster", sa.Integer),  # DBSCAN label, -1 = noise, NULL = not clustered
    sa.Column("reasons", _JSON_TEXT),  # JSON list of str
    sa.Column("path", sa.String(PATH_LEN)),
    sa.Column("command", sa.String(COMMAND_LEN)),
    sa.Column("user", sa.String(USER_LEN)),
    sa.Column("srcip", sa.String(IP_LEN)),
    sa.Column("model_version", sa.String(VERSION_LEN)),
    sa.Column("truncated", sa.Boolean, nullable=False),  # some text was cut to its column size
    sa.Column("written", _TIME, nullable=False),
    sa.Index("ix_alerts_timestamp", "timestamp"),
    sa.Index("ix_alerts_agent_time", "agent_name", "timestamp"),
    sa.Index("ix_alerts_rule_time", "rule_id", "timestamp"),
    sa.Index("ix_alerts_run", "run_id"),
    sa.Index("ix_alerts_written", "written"),
    **_MYSQL,
)

outliers = sa.Table(
    "outliers",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("alert_id", sa.String(ID_LEN), nullable=False, unique=True),
    sa.Column("run_id", sa.String(ID_LEN)),
    sa.Column("timestamp", _TIME),
    sa.Column("agent_name", sa.String(AGENT_NAME_LEN)),
    sa.Column("rule_id", sa.String(RULE_ID_LEN)),
    sa.Column("detector", sa.String(DETECTOR_LEN)),
    sa.Column("score", sa.Double),
    sa.Column("anomaly", sa.Boolean, nullable=False),  # score >= threshold, not a repeat
    sa.Column("noise", sa.Boolean, nullable=False),  # DBSCAN noise (cluster -1)
    sa.Column("cluster", sa.Integer),
    sa.Column("severity", sa.String(SEVERITY_LEN)),
    sa.Column("reasons", _JSON_TEXT),
    sa.Column("written", _TIME, nullable=False),
    sa.Index("ix_outliers_timestamp", "timestamp"),
    sa.Index("ix_outliers_agent_time", "agent_name", "timestamp"),
    sa.Index("ix_outliers_rule_time", "rule_id", "timestamp"),
    sa.Index("ix_outliers_written", "written"),
    **_MYSQL,
)


# --- errors ------------------------------------------------------------------------------------

class SqlOutputError(OutputError):
    """Base of the SQL sink's errors."""


class SqlUnavailableError(SqlOutputError, OutputUnavailableError):
    """Database unreachable, locked, or our credentials refused; the data is in the spool."""


class SqlDataError(SqlOutputError, OutputDataError):
    """The database refused some rows themselves; those batches were set aside as ``*.bad``."""


# --- helpers -----------------------------------------------------------------------------------

def _mysql_driver() -> str:
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


def _utc_naive(dt: Optional[datetime]) -> Optional[datetime]:
    """Columns hold naive UTC (DATETIME has no zone in MySQL/SQLite)."""
    if dt is None:
        return None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def _finite(x: Any) -> Optional[float]:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _int(x: Any) -> Optional[int]:
    if isinstance(x, bool):
        return int(x)
    try:
        return int(x)
    except (TypeError, ValueError, OverflowError):
        return None


def _json_text(obj: Any) -> str:
    return clean_text(json.dumps(obj, ensure_ascii=False, default=str, sort_keys=True))


def _alert_key(rec: Mapping[str, Any]) -> str:
    """The unique key: the alert id, hashed when absent or longer than the column."""
    raw = clean_text(rec.get("id"))
    if not raw:
        blob = json.dumps(rec, sort_keys=True, default=str, ensure_ascii=True).encode()
        return "sha1:" + hashlib.sha1(blob).hexdigest()
    if len(raw) > ID_LEN:
        return "sha1:" + hashlib.sha1(raw.encode("utf-8")).hexdigest()
    return raw


def _reasons(x: Any) -> Tuple[str, bool]:
    items = x if isinstance(x, (list, tuple)) else ([] if x is None else [x])
    out, cut = [], len(items) > MAX_REASONS
    for r in items[:MAX_REASONS]:
        s, t = bound_text(r, REASON_LEN)
        cut = cut or t
        out.append(s if s is not None else "")
    return _json_text(out), cut


def _cluster_of(rec: Mapping[str, Any], key: str, clusters: Optional[Mapping[str, Any]]) -> Optional[int]:
    if clusters is not None:
        v = clusters.get(key)
        if v is None and rec.get("id") is not None:
            v = clusters.get(str(rec.get("id")))
        return _int(v)
    return _int(rec.get("cluster"))


def _text(value: Any, limit: int) -> Tuple[Optional[str], bool]:
    """Fast path of :func:`bound_text` for the common short ASCII string."""
    if value is None:
        return None, False
    if value.__class__ is str and len(value) <= limit and value.isascii():
        return value, False
    return bound_text(value, limit)


_EMPTY: Mapping[str, Any] = {}


def _rows_for(records: Sequence[Mapping[str, Any]], cluster_labels: Sequence[Optional[int]],
              run_id: Optional[str], model_version: Optional[str], written: datetime,
              ) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """``(alert rows, outlier rows)`` for one batch; duplicates within the batch keep the first.

    Every text value is bounded to its column (cut and marked, ``truncated`` set); scores that
    are not finite become NULL. Written for speed: this runs once per alert.
    """
    alert_rows: List[Dict[str, Any]] = []
    outlier_rows: List[Dict[str, Any]] = []
    seen = set()
    run_id, _ = _text(run_id, ID_LEN)
    model_version, _ = _text(model_version, VERSION_LEN)
    for rec, cluster in zip(records, cluster_labels):
        if rec.__class__ is not dict and not isinstance(rec, MappingABC):
            continue
        key = _alert_key(rec)
        if key in seen:
            continue
        seen.add(key)
        # exact-type checks first: isinstance() against an ABC costs more than the rest of a field
        agent = rec.get("agent")
        if agent.__class__ is not dict and not isinstance(agent, MappingABC):
            agent = _EMPTY
        rule = rec.get("rule")
        if rule.__class__ is not dict and not isinstance(rule, MappingABC):
            rule = _EMPTY
        fields = rec.get("fields")
        if fields.__class__ is not dict and not isinstance(fields, MappingABC):
            fields = _EMPTY
        agent_id, c1 = _text(agent.get("id"), AGENT_ID_LEN)
        agent_name, c2 = _text(agent.get("name"), AGENT_NAME_LEN)
        agent_ip, c3 = _text(agent.get("ip"), IP_LEN)
        rule_id, c4 = _text(rule.get("id"), RULE_ID_LEN)
        rule_desc, c5 = _text(rule.get("description"), DESCRIPTION_LEN)
        location, c6 = _text(rec.get("location"), LOCATION_LEN)
        detector, c7 = _text(rec.get("detector"), DETECTOR_LEN)
        severity, c8 = _text(rec.get("severity"), SEVERITY_LEN)
        path, c9 = _text(fields.get("path"), PATH_LEN)
        command, c10 = _text(fields.get("command"), COMMAND_LEN)
        user, c11 = _text(fields.get("user"), USER_LEN)
        srcip, c12 = _text(fields.get("srcip"), IP_LEN)
        mv = rec.get("model_version")
        if mv is not None:
            mv, c13 = _text(mv, VERSION_LEN)
        else:
            mv, c13 = model_version, False
        reasons_in = rec.get("reasons")
        if not reasons_in:
            reasons, c14 = "[]", False
        else:
            reasons, c14 = _reasons(reasons_in)
        score = rec.get("score")
        if score.__class__ is not float or not math.isfinite(score):
            score = _finite(score)
        threshold = rec.get("threshold")
        if threshold.__class__ is not float or not math.isfinite(threshold):
            threshold = _finite(threshold)
        level = rule.get("level")
        if level.__class__ is not int:
            level = _int(level)
        ts = _utc_naive(parse_timestamp(rec.get("timestamp")))
        anomaly = bool(rec.get("anomaly"))
        alert_rows.append({
            "alert_id": key, "run_id": run_id, "timestamp": ts,
            "agent_id": agent_id, "agent_name": agent_name, "agent_ip": agent_ip,
            "rule_id": rule_id, "rule_level": level, "rule_description": rule_desc,
            "location": location, "detector": detector, "score": score, "threshold": threshold,
            "anomaly": anomaly, "severity": severity, "cluster": cluster, "reasons": reasons,
            "path": path, "command": command, "user": user, "srcip": srcip, "model_version": mv,
            "truncated": c1 or c2 or c3 or c4 or c5 or c6 or c7 or c8 or c9 or c10 or c11 or c12 or c13 or c14,
            "written": written,
        })
        noise = cluster == -1
        if anomaly or noise:
            outlier_rows.append({
                "alert_id": key, "run_id": run_id, "timestamp": ts, "agent_name": agent_name,
                "rule_id": rule_id, "detector": detector, "score": score, "anomaly": anomaly,
                "noise": noise, "cluster": cluster, "severity": severity, "reasons": reasons,
                "written": written,
            })
    return alert_rows, outlier_rows


def _mysql_datetime(dt: datetime) -> str:
    return dt.isoformat(" ", "microseconds")


def _jsonable(item: Any) -> Any:
    """The item as the spool can store it (odd value types from a producer become strings)."""
    return json.loads(json.dumps(item, default=str))


def _iso(x: Any) -> Optional[str]:
    dt = parse_timestamp(x)
    return dt.isoformat() if dt is not None else None


def _normalise_run(run: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """A JSON-serialisable copy of the run with a run id (spool items must survive a restart)."""
    run = dict(run or {})
    out: Dict[str, Any] = {
        "run_id": clean_text(run.get("run_id")) or uuid.uuid4().hex,
        "started": _iso(run.get("started")),
        "finished": _iso(run.get("finished")),
        "model_version": clean_text(run.get("model_version")),
        "status": clean_text(run.get("status")),
    }
    for k in ("counts", "durations", "figures"):
        v = run.get(k)
        out[k] = json.loads(_json_text(v)) if v is not None else None
    return out


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
        self.url: URL = self._prepare_url(url if url is not None else default_url())
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
    @staticmethod
    def _prepare_url(url: Any) -> URL:
        try:
            u = make_url(url)
        except Exception as e:
            raise SqlOutputError(f"invalid database URL {mask_url(url)}: {e.__class__.__name__}") from None
        if u.get_backend_name() in ("mysql", "mariadb"):
            if "+" not in u.drivername:
                u = u.set(drivername=f"{u.get_backend_name()}+{_mysql_driver()}")
            u = u.update_query_dict({"charset": "utf8mb4"})
        if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:" \
                and not u.database.startswith("file:"):
            try:
                Path(u.database).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
            except OSError:
                pass  # connecting fails then, with a clear error, and the data is spooled
        return u

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
            a_rows, o_rows = _rows_for(records, labels, item.get("run_id"), item.get("model_version"), written)
            return ("alerts", self._driver_params(alerts, a_rows), self._driver_params(outliers, o_rows))
        if kind == "run":
            r = item.get("run") or {}

            def b(v: Any, n: int) -> Optional[str]:
                return bound_text(v, n)[0]

            return ("run", {
                "run_id": b(r.get("run_id"), ID_LEN),
                "started": _utc_naive(parse_timestamp(r.get("started"))),
                "finished": _utc_naive(parse_timestamp(r.get("finished"))),
                "model_version": b(r.get("model_version"), VERSION_LEN),
                "status": b(r.get("status"), STATUS_LEN),
                "counts": _json_text(r.get("counts")) if r.get("counts") is not None else None,
                "durations": _json_text(r.get("durations")) if r.get("durations") is not None else None,
                "figures": _json_text(r.get("figures")) if r.get("figures") is not None else None,
                "written": written,
            })
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
            labels.append(_cluster_of(rec, _alert_key(rec), clusters))
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
        run_n = _normalise_run(run)
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
        now_dt = _utc_naive(parse_timestamp(now)) if now is not None else datetime.now(timezone.utc).replace(tzinfo=None)
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
