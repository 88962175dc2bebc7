"""The SQL output's tables, and the column sizes that bound every text written to them.

Four tables, created when missing: ``alerts`` (every scored alert with its score and DBSCAN
cluster), ``outliers`` (the alerts that are anomalies or DBSCAN noise), ``runs`` (one row per
nightly run: model version, counts, durations, figures) and ``feedback`` (one row per change of
an analyst's verdict: given, imported, revoked; ``mimizuku feedback``, docs/feedback.md). A ``mimizuku_schema`` row records the
schema version. The sizes live here beside the columns they size, and the row builders
(``mimizuku.outputs.sql.rows``) cut attacker-controlled text to them.
"""
from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import mysql as mysql_types

__all__ = [
    "SCHEMA_VERSION", "metadata", "schema_info", "runs", "alerts", "outliers", "feedback",
    "ID_LEN", "AGENT_ID_LEN", "AGENT_NAME_LEN", "IP_LEN", "RULE_ID_LEN", "DESCRIPTION_LEN",
    "LOCATION_LEN", "DETECTOR_LEN", "SEVERITY_LEN", "PATH_LEN", "COMMAND_LEN", "USER_LEN",
    "VERSION_LEN", "STATUS_LEN", "MAX_REASONS", "REASON_LEN",
]

#: Bumped whenever a table changes; a database written by a newer schema is refused.
SCHEMA_VERSION = 1

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
NOTE_LEN = 1024
SITUATION_LEN = 2048

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

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", _PK, primary_key=True, autoincrement=True),
    sa.Column("change_id", sa.String(ID_LEN), nullable=False, unique=True),  # one per change: retries are idempotent
    sa.Column("feedback_id", sa.String(ID_LEN), nullable=False),
    sa.Column("action", sa.String(STATUS_LEN), nullable=False),  # add, import, revoke
    sa.Column("verdict", sa.String(STATUS_LEN)),
    sa.Column("scope", sa.String(STATUS_LEN)),
    sa.Column("author", sa.String(USER_LEN)),   # the verdict's "by"
    sa.Column("note", sa.String(NOTE_LEN)),
    sa.Column("alert_id", sa.String(ID_LEN)),
    sa.Column("agent_name", sa.String(AGENT_NAME_LEN)),
    sa.Column("account", sa.String(USER_LEN)),
    sa.Column("detector", sa.String(DETECTOR_LEN)),
    sa.Column("situation", sa.String(SITUATION_LEN)),
    sa.Column("expires", _TIME),
    sa.Column("changed", _TIME, nullable=False),
    sa.Column("truncated", sa.Boolean, nullable=False),
    sa.Column("written", _TIME, nullable=False),
    sa.Index("ix_feedback_feedback_id", "feedback_id"),
    sa.Index("ix_feedback_changed", "changed"),
    **_MYSQL,
)
