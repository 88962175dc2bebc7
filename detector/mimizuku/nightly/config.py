"""``RetrainConfig``: everything one run of ``mimizuku retrain`` needs, and the checks of its values."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

__all__ = ["RetrainConfig", "DEFAULT_MIN_ALERTS", "check_dask_address", "dask_setting", "min_alerts_from",
           "printable_line"]

DEFAULT_MIN_ALERTS = {"files": 20, "commands": 20, "context": 200}


@dataclass
class RetrainConfig:
    """Everything a run needs; ``from_args`` builds it from the command line."""

    wazuh_home: Path = Path("/var/ossec")
    model_dir: Optional[Path] = None         # default <wazuh_home>/mimizuku/models
    source: Optional[Any] = None             # default the archive under wazuh_home
    days: int = 14                           # archived days, plus today
    day: Optional[date] = None               # day analysed; default yesterday
    keep: int = 5
    # model parameters; None = the current model's, else the library defaults
    params: Dict[str, Any] = field(default_factory=dict)
    # validation
    min_alerts: Dict[str, int] = field(default_factory=lambda: dict(DEFAULT_MIN_ALERTS))
    max_rate_ratio: float = 3.0              # day rate may be this many times the current model's
    rate_floor: float = 0.005                # ... or this share of the day's alerts, whichever is more
    min_count: int = 5                       # ... and never fewer than this many anomalies
    max_day_rate: float = 0.05               # bound when there is no current model to compare with
    calibration_tolerance: float = 3.0       # training anomaly share <= this x contamination
    anomaly_filter: bool = True              # drop what the current model flags before training
    # batch analysis and outputs
    batch: bool = True
    db_url: Optional[str] = None             # default sqlite:///<model_dir>/mimizuku.db
    sql: bool = True
    retention_days: Optional[float] = 90.0
    syslog: bool = True
    syslog_file: Optional[Path] = None       # default <wazuh_home>/logs/mimizuku/anomaly.syslog
    syslog_remote: Optional[str] = None
    syslog_select: str = "anomalies"
    resend_syslog: bool = False
    report: bool = True
    report_dir: Optional[Path] = None        # default <wazuh_home>/logs/mimizuku/reports
    keep_reports: int = 30
    spool_dir: Optional[Path] = None         # default <wazuh_home>/mimizuku/spool
    progress: bool = False
    # training on a Dask cluster (mimizuku.nightly.partitions): the scheduler's address, None = locally
    dask: Optional[str] = None
    dask_timeout: float = 30.0               # seconds to reach the scheduler and find a worker
    # a cluster of managers (mimizuku.store.publication): publish each installed model for the nodes
    publish_to: Optional[Path] = None
    cluster_key: Optional[Path] = None       # default <wazuh-home>/etc/mimizuku/cluster.key
    activation_delay: float = 60.0

    def __post_init__(self) -> None:
        self.wazuh_home = Path(os.path.abspath(self.wazuh_home))  # paths in the summary are absolute
        if self.model_dir is None:
            self.model_dir = self.wazuh_home / "mimizuku" / "models"
        self.model_dir = Path(os.path.abspath(self.model_dir))
        if self.source is None:
            self.source = str(self.wazuh_home)
        if self.syslog_file is None:
            self.syslog_file = self.wazuh_home / "logs" / "mimizuku" / "anomaly.syslog"
        if self.report_dir is None:
            self.report_dir = self.wazuh_home / "logs" / "mimizuku" / "reports"
        if self.spool_dir is None:
            self.spool_dir = self.wazuh_home / "mimizuku" / "spool"
        if not isinstance(self.days, int) or self.days < 1:
            raise ValueError(f"--days must be a whole number >= 1, got {self.days!r}")
        if self.keep < 1:
            raise ValueError("--keep must be >= 1")
        if self.dask is not None:
            self.dask = check_dask_address(self.dask)
        if not (isinstance(self.dask_timeout, (int, float)) and 0 < self.dask_timeout <= 3600):
            raise ValueError(f"--dask-timeout must be in (0, 3600] seconds, got {self.dask_timeout!r}")

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


_DASK_ADDRESS = re.compile(r"(?:[a-z][a-z0-9+.-]*://)?[^\s/:]+:\d{1,5}\Z|[a-z][a-z0-9+.-]*://\S+\Z")


def check_dask_address(address: Any) -> str:
    """A Dask scheduler address (``tcp://host:8786``, ``tls://...``, ``host:8786``) or ValueError."""
    text = str(address).strip()
    if not text or not text.isprintable() or not _DASK_ADDRESS.match(text):
        raise ValueError(f"--dask {printable_line(address, 100)!r} is not a Dask scheduler address "
                         f"(e.g. tcp://scheduler:8786)")
    return text



def printable_line(text: Any, limit: int = 500) -> str:
    """``text`` on one printable line of at most ``limit`` characters (for messages and the summary)."""
    s = " ".join(str(text).split())
    s = "".join(c if c.isprintable() else "?" for c in s)
    return s if len(s) <= limit else s[: limit - 1] + "…"



def min_alerts_from(items: Sequence[str]) -> Dict[str, int]:
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

