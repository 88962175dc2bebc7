"""What ``mimizuku serve`` is told: its settings, each declared once, and where its files are.

Every option of the command is one row of :data:`SETTINGS` (:mod:`mimizuku.core.settings`): the
row makes the :class:`ServeConfig` field, the command-line option and its help (with the
default), so a default cannot differ between the option and the field, and no option goes
without help. Paths left unset are derived from ``--wazuh-home`` and the integration options in
one place (:meth:`ServeConfig.__post_init__`); the checks that read files (indexer URL, API
credentials) are made once at start by :func:`config_from_args`, so a bad setting stops the
daemon before it listens rather than at the first alert.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any, Dict, Optional

from mimizuku.core.settings import Setting, Settings, clamped
from mimizuku.delivery.flood import DEFAULT_WINDOW
from mimizuku.delivery.index_sink import index_settings
from mimizuku.integratord.options import Options, OptionsError, load_options
from mimizuku.serve.caches import CACHE_ENTRIES

#: Files of the state directory (``--state-dir``).
SOCKET_NAME = "serve.sock"
BOOKMARK_NAME = "follow.bookmark"
INDEXER_BOOKMARK_NAME = "indexer.bookmark"
JOURNAL_NAME = "handled.ids"
STATUS_NAME = "status.json"


def _given_path(text: str) -> Optional[Path]:
    """A path option: an empty text counts as not given."""
    return Path(text) if text else None


_given_path.__name__ = "path"

SETTINGS = (
    Setting("home", Path("/var/ossec"), "Wazuh installation", type=Path, flags=("--wazuh-home",),
            dest="wazuh_home"),
    Setting("options", None, "integration <options> JSON (text or a file) for policy and paths: send, detectors, "
            "thresholds, min_severity, ignore_users, model_dir, spool_dir, queue, socket"),
    Setting("model_dir", None, "model directory or versions root with a 'current' pointer "
            "(default <home>/mimizuku/models)", type=_given_path),
    Setting("feedback", None, "analysts' verdict store, watched for changes (default "
            "<model-dir>/../feedback/feedback.json; see docs/feedback.md)", type=_given_path),
    Setting("socket", None, "UNIX socket to listen on (default <home>/mimizuku/run/serve.sock)", type=_given_path),
    Setting("spool_dir", None, "spool of alerts and events (default <home>/mimizuku/spool)", type=_given_path),
    Setting("queue", None, "analysisd queue socket (default <home>/queue/sockets/queue)", type=_given_path),
    Setting("state_dir", None, "bookmark, handled-id journal, status (default <home>/mimizuku/run)",
            type=_given_path),
    Setting("sink", "queue", "where events go: analysisd's queue socket (default), the Wazuh API's POST /events "
            "(a scorer not on the manager; see docs/api.md), or none (Wazuh 5.x: no analysisd to take them; "
            "anomalies go to the indexer only, --index-url)", choices=("queue", "api", "none")),
    Setting("api_config", None, "API credentials file for --sink api "
            "(default /var/ossec/etc/mimizuku/api.json + MIMIZUKU_API_*)", type=_given_path, metavar="PATH"),
    *index_settings(),
    Setting("follow", None, "also tail this alerts.json (with a persisted bookmark)", type=_given_path,
            metavar="ALERTS_JSON"),
    Setting("from_start", False, "with --follow and no bookmark yet: read the file from its start", switch=True),
    Setting("follow_indexer", None, "follow the Wazuh indexer instead of a file, e.g. "
            "https://indexer:9200/wazuh-alerts-4.x-* (no URL: 'url' of /var/ossec/etc/mimizuku/indexer.json or "
            "MIMIZUKU_INDEXER_URL; credentials only from that file or MIMIZUKU_INDEXER_USER/PASSWORD; "
            "see docs/indexer.md)", metavar="URL", nargs="?", const=""),
    Setting("indexer_lag", 60.0, "with --follow-indexer: how late an alert may become searchable and still be "
            "scored (default 60)", type=clamped(float, 0.0), metavar="SECONDS"),
    Setting("indexer_interval", 5.0, "with --follow-indexer: seconds between polls once caught up (default 5)",
            type=clamped(float, 0.2), metavar="SECONDS"),
    Setting("flood_window", DEFAULT_WINDOW, "seconds during which look-alike anomalies are aggregated (0: off)",
            type=float),
    Setting("max_batch", 64, "most alerts scored together (default 64: answers go out after each batch)",
            type=clamped(int, 1)),
    Setting("cache_entries", CACHE_ENTRIES, "entries per engine memo cache (the detectors' drop their oldest "
            "quarter when full, the feature functions' are cleared when over): bounds memory (default "
            f"{CACHE_ENTRIES}; larger trades memory for fewer recomputations)", type=clamped(int, 1000)),
    Setting("dedupe_window", 200_000, "alert ids remembered to drop duplicates", type=clamped(int, 1)),
    Setting("watch_interval", 5.0, "seconds between checks for a new model", type=clamped(float, 0.2)),
    Setting("stream_state_interval", 30.0, "seconds between two writes of the stream state (rate and repeat "
            "windows, fleet waves) to <spool>/stream-state.json, read back by the in-process path and at "
            "start; also written at stop (0: never)", type=clamped(float, 0.0)),
    Setting("max_connections", 512, "most client connections at once; a new client past it takes the place of "
            "the connection idle the longest (refused only when none is idle)", type=clamped(int, 1)),
    Setting("idle_timeout", 300.0, "seconds a client connection may stay idle (nothing asked, nothing owed to it) "
            "before it is closed (0: never)", type=clamped(float, 0.0), metavar="SECONDS"),
    Setting("reply_cap", 1 << 20, "bytes of answers a client may leave unread: past it, its requests are not read "
            "until it reads (at least one answer line)", type=clamped(int, 1 << 16), metavar="BYTES"),
    Setting("reply_stall_timeout", 30.0, "seconds a client may stay past --reply-cap before its connection is "
            "closed", type=clamped(float, 0.1), metavar="SECONDS"),
    Setting("reload_interval", 10.0, "seconds between two reloads asked for (SIGHUP, the reload request); "
            "requests in between are answered 'throttled' and coalesced into the next one",
            type=clamped(float, 0.0), metavar="SECONDS"),
    Setting("socket_group", "wazuh", "group that may use the socket when run as root (empty: root only)",
            check=lambda group: group or None),
    Setting("log_file", None, "log here instead of standard error"),
    Setting("verbose", False, "log more", flags=("-v", "--verbose"), switch=True),
)


class ServeConfig(Settings, table=SETTINGS):
    """The daemon's settings (:data:`SETTINGS`), then the tuning that is not an option."""

    poll_interval: float = 0.2
    spool_batch: int = 512
    high_water: int = 10_000
    follow_inflight: int = 4096
    shutdown_timeout: float = 60.0
    event_retry_interval: float = 5.0

    def __post_init__(self) -> None:
        """Paths not given come from the integration options, else from the Wazuh home."""
        super().__post_init__()
        self.home = Path(self.home)
        opts = self.options
        if opts is None:
            opts = self.options = Options.defaults(self.home)
        self.state_dir = self.state_dir or self.home / "mimizuku" / "run"
        self.model_dir = self.model_dir or opts.model_dir
        self.socket = self.socket or opts.socket or self.state_dir / SOCKET_NAME
        self.spool_dir = self.spool_dir or opts.spool_dir
        self.queue = self.queue or opts.queue

    @classmethod
    def for_home(cls, home: Path, **kw: Any) -> "ServeConfig":
        return cls(home=home, **kw)


# --- command line -------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser, verbose: bool = True) -> None:
    """The options of ``mimizuku serve`` (``verbose``: with ``-v``, which ``mimizuku`` has at the top)."""
    ServeConfig.add_arguments(p, skip=() if verbose else ("verbose",))


def _options_arg(value: Optional[str], home: Path) -> Options:
    if not value:
        return Options.defaults(home)
    text = value
    if not value.lstrip().startswith("{"):
        try:
            text = Path(value).read_text(encoding="utf-8")
        except OSError as e:
            raise OptionsError(f"cannot read options file {value}: {e.strerror}") from e
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        f.write(text)
    try:
        return load_options(f.name, home)
    finally:
        os.unlink(f.name)


def config_from_args(a: argparse.Namespace) -> ServeConfig:
    """The configuration the command line gives, with what must be checked before starting."""
    kw: Dict[str, Any] = ServeConfig.values_from_args(a)
    home = kw.get("home", ServeConfig.setting("home").default)
    opts = kw["options"] = _options_arg(kw.get("options"), home)
    for name in ("model_dir", "spool_dir", "queue"):
        if name in kw:
            setattr(opts, name, kw[name])
    if kw.get("follow_indexer") is not None:
        if kw.get("follow"):
            raise OptionsError("give --follow or --follow-indexer, not both")
        from mimizuku.sources.indexer import IndexerError, IndexerSource

        try:
            IndexerSource(kw["follow_indexer"] or None)  # refuse a bad URL or an unsafe config file at start
        except IndexerError as e:
            raise OptionsError(str(e)) from None
    if kw.get("sink") == "none" and kw.get("index_url") is None:
        raise OptionsError("--sink none sends no event, so anomalies would go nowhere: give --index-url "
                           "(the indexer sink, docs/indexer.md) as well")
    if kw.get("sink") == "api":
        from mimizuku.delivery.wazuh_api import ApiConfigError, load_credentials

        default = home / "etc" / "mimizuku" / "api.json"
        if kw.get("api_config") is None:
            kw["api_config"] = default if os.path.lexists(default) else None
        try:
            load_credentials(kw["api_config"], default_path=None)   # refuse a bad or unsafe credentials file at start
        except ApiConfigError as e:
            raise OptionsError(str(e)) from None
    if kw.get("index_url") is not None:
        from mimizuku.delivery.index_sink import IndexConfigError, load_index_credentials

        default = home / "etc" / "mimizuku" / "indexer.json"
        if kw.get("index_credentials") is None:
            kw["index_credentials"] = default if os.path.lexists(default) else None
        try:   # refuse a bad URL or an unsafe credentials file at start
            load_index_credentials(kw["index_url"] or None, kw["index_credentials"], default_path=None)
        except IndexConfigError as e:
            raise OptionsError(str(e)) from None
    try:
        return ServeConfig(**kw)
    except ValueError as e:   # a setting's check (it names the option)
        raise OptionsError(str(e)) from None
