"""``RetrainConfig``: everything one run of ``mimizuku retrain`` needs, declared once.

Each setting is one row of ``SETTINGS`` (``mimizuku.core.settings``): the dataclass field, the
``mimizuku retrain`` option with its help and group, and the check of its value, whether it comes
from the command line or from a keyword. Rows with ``flags=()`` are fields without an option.
Defaults that depend on another setting (paths under ``--wazuh-home``) are filled in after the
checks; ``RetrainConfig.from_args`` adds what only the command line has (the
``$MIMIZUKU_DASK_SCHEDULER`` default of ``--dask``).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.core.settings import Setting, Settings
from mimizuku.delivery.index_sink import index_settings
from mimizuku.outputs.syslog import DEFAULT_UDP_RATE
from mimizuku.outputs.syslog_format import DEFAULT_MAX_BYTES, DEFAULT_UDP_MAX, check_max_bytes

__all__ = ["RetrainConfig", "SETTINGS", "DEFAULT_MIN_ALERTS", "check_dask_address", "dask_setting",
           "min_alerts_from", "printable_line"]

DEFAULT_MIN_ALERTS = {"files": 20, "commands": 20, "context": 200}

WHERE = "where"
MODEL = "model (default: the current model's settings)"
DASK = "Dask (optional: pip install mimizuku[cluster])"
CLUSTER = "cluster of managers (docs/cluster.md)"
VALIDATION = "validation"
OUTPUTS = "outputs"


@dataclass(frozen=True)
class RepeatedSetting(Setting):
    """A setting whose option is given once per value (``--min-alerts files=20 --min-alerts 50``):
    the check receives the list of texts."""

    def add_to(self, parser: Any) -> None:
        parser.add_argument(*self.option_flags, action="append", metavar=self.metavar, dest=self.arg_dest,
                            help=self.help_text().replace("%", "%%"))


def _absolute(value: Any) -> Path:
    return Path(os.path.abspath(value))  # paths in the summary are absolute


def _path(value: Any) -> Optional[Path]:
    return Path(value) if value else None


def _whole_days(value: Any) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"--days must be a whole number >= 1, got {value!r}")
    return value


def _keep(value: Any) -> int:
    if value < 1:
        raise ValueError("--keep must be >= 1")
    return value


def _day(value: Any) -> Optional[date]:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"--day {value!r} is not a date (YYYY-MM-DD)") from None


def _detectors(value: Any) -> Optional[tuple]:
    if isinstance(value, str):
        return tuple(x.strip() for x in value.split(",") if x.strip()) or None
    return tuple(value) if value else None


def _min_alerts(value: Any) -> Dict[str, int]:
    return dict(value) if isinstance(value, dict) else min_alerts_from(value)


def _syslog_max_bytes(value: Any) -> int:
    return check_max_bytes(value, "--syslog-max-bytes")


def _syslog_udp_rate(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"--syslog-udp-rate must be a number of datagrams per second >= 0, got {value!r}")
    return value


def _dask_timeout(value: Any) -> float:
    if not (isinstance(value, (int, float)) and 0 < value <= 3600):
        raise ValueError(f"--dask-timeout must be in (0, 3600] seconds, got {value!r}")
    return value


_DASK_ADDRESS = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?[^\s/:]+:\d{1,5}\Z|[a-z][a-z0-9+.-]*://\S+\Z")


def check_dask_address(address: Any) -> str:
    """A Dask scheduler address (``tcp://host:8786``, ``tls://...``, ``host:8786``) or ValueError."""
    text = str(address).strip()
    if not text or not text.isprintable() or not _DASK_ADDRESS.match(text):
        raise ValueError(f"--dask {printable_line(address, 100)!r} is not a Dask scheduler address "
                         f"(e.g. tls://scheduler:8786)")
    return text


def printable_line(text: Any, limit: int = 500) -> str:
    """``text`` on one printable line of at most ``limit`` characters (for messages and the summary)."""
    s = " ".join(str(text).split())
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def min_alerts_from(items: Optional[Sequence[str]]) -> Dict[str, int]:
    """The minimum training alerts per detector from ``--min-alerts`` texts (``N``: every detector;
    ``DETECTOR=N``: that one), over the defaults."""
    out = dict(DEFAULT_MIN_ALERTS)
    for it in items or ():
        if "=" in it:
            name, _, n = it.partition("=")
            names = [name.strip()]
        else:
            names, n = list(out), it
        try:
            value = int(n)
        except ValueError:
            raise ValueError(f"--min-alerts {it!r}: give N or DETECTOR=N (e.g. files=20)") from None
        if value < 0:
            raise ValueError(f"--min-alerts {it!r}: must be >= 0")
        for nm in names:
            out[nm] = value
    return out


def dask_setting(arg: Optional[str]) -> Optional[str]:
    """--dask, else the MIMIZUKU_DASK_SCHEDULER setting; "local" (either place) means no Dask."""
    value = arg if arg is not None else (os.environ.get("MIMIZUKU_DASK_SCHEDULER") or None)
    return None if value is None or value.strip().lower() == "local" else value


SETTINGS = (
    Setting("wazuh_home", Path("/var/ossec"), "Wazuh installation (default /var/ossec)", group=WHERE,
            check=_absolute),
    Setting("model_dir", None, "model root with versions/ and current (default <wazuh-home>/mimizuku/models)",
            group=WHERE),
    Setting("source", None, "alert source instead of <wazuh-home>'s logs/alerts archive",
            flags=("--input", "-i"), metavar="INPUT", group=WHERE),
    Setting("days", 14, "archived days to learn from, plus today (default 14); with --day, the days ending on it",
            type=int, group=WHERE, check=_whole_days),
    Setting("day", None, "day to analyse and validate on, YYYY-MM-DD (default yesterday); when given, the "
            "training window ends on it: nothing after it is read", group=WHERE, check=_day),
    Setting("keep", 5, "model versions to keep (default 5)", type=int, group=WHERE, check=_keep),
    # model parameters; None = the current model's, else the library defaults
    Setting("contamination", None, f"share of benign alerts a model may flag (a first model: {DEFAULT_CONTAMINATION:g})", type=float, group=MODEL),
    Setting("n_neighbors", None, "LOF neighbours (default 5)", type=int, group=MODEL),
    Setting("detectors", None, "comma list of files, commands, context", group=MODEL, check=_detectors),
    Setting("eps", None, "DBSCAN eps of the context detector (default 0.5)", type=float, group=MODEL),
    Setting("min_samples", None, "DBSCAN min_samples (default 5)", type=int, group=MODEL),
    Setting("anomaly_filter", True,
            "also learn from alerts the current model flags (disables the anomaly filter)",
            flags=("--learn-flagged",), negate=True, group=MODEL),
    Setting("holdout", True,
            "first run (no model yet): train on all days at once, the analysed day included (by default "
            "a first model is trained on the days before it, analyses it, and filters the model installed)",
            flags=("--no-holdout",), negate=True, group=MODEL),
    # training on a Dask cluster (mimizuku.nightly.partitions): the scheduler's address, None = locally
    Setting("dask", None,
            "read and count the archive's days on this Dask cluster (tls://scheduler:8786, with mutual TLS: "
            "--dask-tls-*); every worker must see the archive at the same path. Default: $MIMIZUKU_DASK_SCHEDULER "
            "when set (a setting for the wodle's environment or the service), else locally; "
            "--dask local forces a local run", metavar="SCHEDULER_ADDRESS", group=DASK,
            check=check_dask_address),
    Setting("dask_timeout", 30.0, "time to reach the scheduler and find a worker (default 30)", type=float,
            metavar="SECONDS", group=DASK, check=_dask_timeout),
    # mutual TLS with the scheduler and workers (mimizuku.nightly.dask_security): required for tls://
    Setting("dask_tls_ca", None, "CA that signed the scheduler's and workers' certificates, PEM "
            "(default <wazuh-home>/etc/mimizuku/dask/ca.pem)", metavar="FILE", group=DASK, check=_path),
    Setting("dask_tls_cert", None, "this job's client certificate, PEM "
            "(default <wazuh-home>/etc/mimizuku/dask/client.pem)", metavar="FILE", group=DASK, check=_path),
    Setting("dask_tls_key", None, "the client certificate's private key, PEM; root-only, mode 0600 "
            "(default <wazuh-home>/etc/mimizuku/dask/client.key)", metavar="FILE", group=DASK, check=_path),
    Setting("dask_insecure", False,
            "allow a tcp:// scheduler: no encryption, no authentication; anyone who can reach it can run "
            "code as this job's user (root). Only on a network you trust", switch=True, group=DASK),
    # a cluster of managers (mimizuku.store.publication): publish each installed model for the nodes
    Setting("publish_to", None,
            "after installing a new model, publish it here for `mimizuku sync` on the other nodes",
            metavar="DIR", group=CLUSTER, check=_path),
    Setting("cluster_key", None, "key that signs the publication (default <wazuh-home>/etc/mimizuku/cluster.key)",
            metavar="FILE", group=CLUSTER, check=_path),
    Setting("activation_delay", 60.0, "nodes switch this long after publishing (default 60)", type=float,
            metavar="SECONDS", group=CLUSTER),
    # validation
    RepeatedSetting("min_alerts", None,
                    "minimum training alerts per detector (default files=20, commands=20, context=200)",
                    metavar="[DET=]N", group=VALIDATION, check=_min_alerts,
                    factory=lambda: dict(DEFAULT_MIN_ALERTS)),
    Setting("max_rate_ratio", 3.0,
            "the day's anomaly count may be at most this times the current model's (default 3)", type=float,
            group=VALIDATION),
    Setting("rate_floor", 0.005, "... or this share of the day's alerts, whichever is more (default 0.005)",
            type=float, group=VALIDATION),
    Setting("min_count", 5, "... and never fewer than this many anomalies", flags=()),
    Setting("max_day_rate", 0.05, "share of the day's alerts a first model may raise as anomalies (a burst's repeats not counted; default 0.05)",
            type=float, group=VALIDATION),
    Setting("calibration_tolerance", 3.0, "training anomaly share <= this x contamination", flags=()),
    # the run's output, the batch analysis and its outputs
    Setting("summary_json", False,
            "print only the one-line JSON summary on stdout (the wodle's mode, the README's Wazuh section)",
            switch=True, group=OUTPUTS),
    Setting("batch", True, "retrain only: no analysis of the day, no outputs", negate=True, group=OUTPUTS),
    Setting("db_url", None, "SQLAlchemy URL (default sqlite:///<model-dir>/mimizuku.db; "
                            "MySQL/MariaDB: mysql://user:pw@host/db)", flags=("--db",), metavar="DB", group=OUTPUTS),
    Setting("db_url_file", None, "read the database URL from this file (keeps the password out of ps)",
            group=OUTPUTS),
    Setting("sql", True, "do not write to SQL", negate=True, group=OUTPUTS),
    Setting("retention_days", 90.0, "delete SQL rows older than this (default 90; 0 keeps none)", type=float,
            group=OUTPUTS),
    Setting("retention", True, "never delete SQL rows", negate=True, group=OUTPUTS),
    Setting("syslog_file", None, "syslog file (default <wazuh-home>/logs/mimizuku/anomaly.syslog)", group=OUTPUTS,
            check=_path),
    Setting("syslog_remote", None, "also send to udp://host:514 or tcp://host:601", group=OUTPUTS),
    Setting("syslog_format", "rfc5424", "syslog message format: RFC 5424 with structured data, or CEF in an "
            "RFC 5424 header", choices=("rfc5424", "cef"), group=OUTPUTS),
    Setting("syslog_max_bytes", DEFAULT_MAX_BYTES,
            f"most bytes of one syslog message on every transport, header included (default {DEFAULT_MAX_BYTES}, "
            f"rsyslog's maxMessageSize; a UDP datagram at most {DEFAULT_UDP_MAX}); a longer record is cut on a "
            "character and says so", type=int, metavar="BYTES", group=OUTPUTS, check=_syslog_max_bytes),
    Setting("syslog_udp_rate", DEFAULT_UDP_RATE,
            f"UDP datagrams per second at most (default {DEFAULT_UDP_RATE:g}; 0: unpaced, a burst may overflow "
            "the receiver's buffer)", type=float, metavar="N", group=OUTPUTS, check=_syslog_udp_rate),
    Setting("syslog_select", "anomalies", "records sent to syslog (default anomalies; outliers adds DBSCAN noise)",
            choices=("anomalies", "outliers", "all"), group=OUTPUTS),
    Setting("syslog", True, "do not write syslog", negate=True, group=OUTPUTS),
    Setting("resend_syslog", False, "send the day to syslog again even if already sent", switch=True,
            group=OUTPUTS),
    *index_settings(group=OUTPUTS),
    Setting("report_dir", None, "HTML reports (default <wazuh-home>/logs/mimizuku/reports)", group=OUTPUTS,
            check=_path),
    Setting("report", True, "no HTML report", negate=True, group=OUTPUTS),
    Setting("keep_reports", 30, "reports to keep (default 30)", type=int, group=OUTPUTS),
    Setting("spool_dir", None, "undelivered SQL/syslog/index output (default <wazuh-home>/mimizuku/spool)",
            group=OUTPUTS, check=_path),
    Setting("log_file", None, "log file (default <wazuh-home>/logs/mimizuku/retrain.log when writable)",
            group=OUTPUTS, check=_path),
    Setting("verbose", False, "log more", switch=True, flags=("--verbose", "-v"), dest="retrain_verbose",
            group=OUTPUTS),
    Setting("progress", False, "progress bars on stderr (a terminal)", flags=()),
)

#: the model parameters among the settings (``RetrainConfig.params``)
MODEL_PARAMS = ("contamination", "n_neighbors", "eps", "min_samples")


class RetrainConfig(Settings, table=SETTINGS):
    """Everything a run needs (``SETTINGS``); ``from_args`` builds it from the command line."""

    #: mutual TLS for the Dask scheduler (``dask_security.DaskTLS``), loaded from the dask_tls_* files
    dask_tls: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model_dir is None:
            self.model_dir = self.wazuh_home / "mimizuku" / "models"
        self.model_dir = _absolute(self.model_dir)
        if self.source is None:
            self.source = str(self.wazuh_home)
        if self.syslog_file is None:
            self.syslog_file = self.wazuh_home / "logs" / "mimizuku" / "anomaly.syslog"
        if self.report_dir is None:
            self.report_dir = self.wazuh_home / "logs" / "mimizuku" / "reports"
        if self.spool_dir is None:
            self.spool_dir = self.wazuh_home / "mimizuku" / "spool"
        if self.db_url_file:
            # a secret like every other (mimizuku.core.private_file): root's (or ours), 0600, no
            # symlink; the message never quotes the content
            from mimizuku.core.private_file import read_private_file

            raw = read_private_file(self.db_url_file, what="--db-url-file", limit=8192, error=ValueError)
            try:
                self.db_url = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                raise ValueError(f"--db-url-file {self.db_url_file} is not UTF-8 text") from None
        if not self.retention:
            self.retention_days = None
        if self.dask:
            self._check_dask_transport()

    def _check_dask_transport(self) -> None:
        """Mutual TLS for a scheduler outside this process, or ``--dask-insecure`` (issue 17, item
        2): checked here, before anything connects; the key is read now, as a secret."""
        from mimizuku.nightly.dask_security import default_tls_dir, load_dask_tls

        tls_dir = default_tls_dir(self.wazuh_home)
        self.dask_tls = load_dask_tls(self.dask, ca=self.dask_tls_ca or tls_dir / "ca.pem",
                                      cert=self.dask_tls_cert or tls_dir / "client.pem",
                                      key=self.dask_tls_key or tls_dir / "client.key",
                                      insecure=self.dask_insecure)

    def wazuh_home_problem(self) -> Optional[str]:
        """Why ``wazuh_home`` cannot be the Wazuh installation, or None. Checked before a run
        creates anything under it (a typo made ``./typo/mimizuku/models/...``, issue 17 item 13):
        it must be a directory, and when its archive is the source, one with ``logs/`` or
        ``etc/`` (a manager has both; ``mimizuku generate --out DIR`` writes ``DIR/logs/alerts``)."""
        home = Path(self.wazuh_home)
        if not home.is_dir():
            return (f"--wazuh-home {home}: no such directory (the Wazuh installation, e.g. /var/ossec); "
                    f"nothing was created")
        if str(self.source) == str(home) and not any((home / d).is_dir() for d in ("logs", "etc")):
            return (f"--wazuh-home {home} does not look like a Wazuh installation (no logs/ or etc/ in it); "
                    f"give the right directory, or the alerts with --input; nothing was created")
        return None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RetrainConfig":
        """The configuration the ``mimizuku retrain`` options give (``ValueError``, ``OSError``)."""
        values = cls.values_from_args(args)
        values["dask"] = dask_setting(values.get("dask"))
        return cls(**values)

    @property
    def params(self) -> Dict[str, Any]:
        """The model parameters given (None: the current model's, else the library default)."""
        p: Dict[str, Any] = {k: getattr(self, k) for k in MODEL_PARAMS}
        if self.detectors:
            p["detectors"] = self.detectors
        return p

    @property
    def sql_url(self) -> Optional[str]:
        if not self.sql:
            return None
        if self.db_url:
            return self.db_url
        return "sqlite:///" + str((Path(self.model_dir) / "mimizuku.db").absolute())

    @property
    def batch_day(self) -> date:
        return self.day or (date.today() - timedelta(days=1))

    @property
    def window(self) -> List[date]:
        """The days the training reads, oldest first: the ``--days`` days before today and today
        (still being written), or with ``--day`` the ``--days`` days that end on it."""
        if self.day is not None:
            return [self.day - timedelta(days=i) for i in range(self.days - 1, -1, -1)]
        today = date.today()
        return [today - timedelta(days=i) for i in range(self.days, -1, -1)]
