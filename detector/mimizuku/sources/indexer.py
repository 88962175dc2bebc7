"""The Wazuh indexer (OpenSearch) as an alert source: ``wazuh-alerts-4.x-*`` read page by page.

Why: large deployments keep months of alerts in the indexer, from every manager of a cluster,
and the archives of one node are only its own share. ``IndexerSource`` reads them with the same
reader interface as the archives -- ``iter_alerts("https://indexer:9200/wazuh-alerts-4.x-*")``
or ``iter_alerts(IndexerSource(...))`` -- so training, scoring and the nightly job take an
indexer URL wherever they take a path.

How it reads (see ``docs/indexer.md``):

* **Point in time + ``search_after``** (OpenSearch >= 2.4): ``POST /<index>/_search/point_in_time``
  freezes the view, ``POST /_search`` with ``{"pit": ..., "sort": [timestamp, id, manager.name],
  "search_after": <last sort values>}`` pages through it, ``DELETE /_search/point_in_time`` frees
  it at the end -- also when the read fails or the caller stops early. A PIT that expired
  mid-read (a slow consumer, a node restart) is recreated and the read resumes after the last
  sort values: the sort is a total order, so nothing is lost and nothing comes twice.
* **Without PIT** (older OpenSearch, Elasticsearch): the same sorted ``search_after`` paging on ``POST
  /<index>/_search`` against the live index. Chosen over the scroll API because it holds no server state and
  resumes from a cursor; the price is no frozen view (a document indexed behind the cursor is not in this read).
* The query is ``bool``: ``filter`` = the time window (``range`` on ``timestamp`` in epoch
  milliseconds) and the user's query (JSON query DSL), ``must_not`` = the plugin's own events
  (``rule.groups: mimizuku`` or ``data.integration: mimizuku``, at one of the locations only the
  plugin's events have: ``core.fields.own_event_query``); the reader drops own events again.
* HTTP: one ``requests.Session``; connection errors, read timeouts, 429 and 5xx are retried with exponential
  backoff (urllib3 ``Retry``), a 429/503 ``Retry-After`` is honoured up to ``max_retry_after`` seconds.
  TLS is verified by default (``ca_bundle`` for a private CA).
  Credentials come from a root-only config file or the environment, never from the command line
  (a URL with ``user:password@`` is refused) and never appear in logs or error messages.
* **Slices** (``IndexerSource.day_slices``): training reads the window as one slice per UTC day
  of the time field -- half-open ``[day start, next day start)``, cut to the window -- so that
  ``mimizuku retrain --dask`` can read the days on Dask workers, each slice with its own point in
  time; local training reads the same slices one after another. The slices together return
  exactly the hits of the one read (the window's open ends stay open; when no bound is given at
  all, a last slice holds the hits without a time). A slice carries the URL, index, query, window
  and the other ``SLICE_SETTINGS``, never a credential: a worker builds its own
  ``IndexerSource`` from its own config file or environment, so every worker needs the same
  root-only ``/var/ossec/etc/mimizuku/indexer.json`` (or ``MIMIZUKU_INDEXER_*``) as the driver.

``requests`` is imported when a source is first used, so ``import mimizuku`` stays cheap."""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from dataclasses import fields as dc_fields
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import quote, urlsplit, urlunsplit

from mimizuku.core.fields import own_event_query
from mimizuku.core.hosts import is_loopback
from mimizuku.sources.errors import (
    IndexerAuthError,
    IndexerConfigError,
    IndexerError,
    IndexerUnavailable,
)
from mimizuku.sources.wcs import SCHEMAS, WCS_READ_DEFAULTS, hit_alert, schema_of_index

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_INDEX",
    "IndexerAuthError",
    "IndexerConfig",
    "IndexerConfigError",
    "IndexerError",
    "IndexerSlice",
    "IndexerSource",
    "IndexerUnavailable",
    "is_indexer_url",
]

log = logging.getLogger(__name__)

DEFAULT_INDEX = "wazuh-alerts-4.x-*"
#: read when no other config file is named (``MIMIZUKU_INDEXER_CONFIG`` names another)
DEFAULT_CONFIG_FILE = "/var/ossec/etc/mimizuku/indexer.json"
ENV_PREFIX = "MIMIZUKU_INDEXER_"

#: The sort: the Wazuh template maps ``timestamp`` as a date, ``id`` and ``manager.name`` as
#: keywords. ``id`` ("<epoch>.<offset in alerts.json>") is unique per manager, so with the manager
#: name the three keys order every alert of a cluster totally -- what ``search_after`` needs.
DEFAULT_TIEBREAKERS = ("id", "manager.name")
#: Wall-clock window bounds (dates, naive datetimes) are compared with each alert's own local
#: time; offsets run from -12:00 to +14:00, so the server-side range is widened by this much and
#: the reader applies the exact bound.
WALL_CLOCK_MARGIN_S = 15 * 3600
#: What decides WHICH alerts a read returns and in what order: these settings travel with an
#: :class:`IndexerSlice` to the Dask workers. Everything else -- user, password, CA bundle, TLS,
#: timeouts, retries -- each worker takes from its own config file or environment.
SLICE_SETTINGS = ("index", "query", "time_field", "tiebreakers", "exclude_own", "page_size", "keep_alive", "pit",
                  "schema")
DAY_MS = 86_400_000


_WARNED_PLAIN_HTTP: set = set()


class _PitExpired(Exception):
    """The point in time is gone (expired, or its node restarted): recreate it and resume."""


class _NoPit(Exception):
    """The cluster has no point-in-time API."""


def is_indexer_url(source: Any) -> bool:
    """Whether an alert source is an indexer URL (``http(s)://host:port[/index-pattern]``)."""
    return isinstance(source, str) and re.match(r"(?i)https?://", source) is not None


@dataclass
class IndexerConfig:
    """Where and how to read. ``from_sources`` fills it: defaults < config file < environment <
    explicit values. ``password`` is kept out of ``repr``."""

    url: Optional[str] = None                 # https://indexer:9200[/index-pattern]
    index: Optional[str] = None               # default: the URL's path, else wazuh-alerts-4.x-*
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    ca_bundle: Optional[str] = None           # PEM file of the CA that signed the indexer's cert
    verify_tls: bool = True
    allow_http: bool = False                  # credentials over plain http beyond the loopback, by choice
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    retries: int = 5
    backoff: float = 0.5                      # seconds, doubled per retry ...
    max_backoff: float = 30.0                 # ... up to this
    max_retry_after: float = 120.0            # a longer Retry-After is cut to this
    page_size: int = 1000
    keep_alive: str = "2m"                    # of the point in time, renewed by every page
    pit: Optional[bool] = None                # None: use it when the cluster has it
    query: Optional[Any] = None               # query DSL (dict or JSON text) ANDed to the window
    time_field: str = "timestamp"
    tiebreakers: Tuple[str, ...] = DEFAULT_TIEBREAKERS
    exclude_own: bool = True
    schema: Optional[str] = None              # wazuh-4 | wcs (5.x events); None: by the index (sources/wcs)

    # -- building ----------------------------------------------------------------------------------
    @classmethod
    def from_sources(cls, url: Optional[str] = None, *, config_file: Optional[str] = None,
                     env: Optional[Dict[str, str]] = None, **overrides: Any) -> "IndexerConfig":
        env = os.environ if env is None else env
        values: Dict[str, Any] = {}
        path = config_file or env.get(ENV_PREFIX + "CONFIG")
        explicit = path is not None
        path = path or DEFAULT_CONFIG_FILE
        if explicit or os.path.exists(path):
            values.update(load_config_file(path))
        for key, name in (("url", "URL"), ("username", "USER"), ("password", "PASSWORD"),
                          ("ca_bundle", "CA"), ("query", "QUERY")):
            v = env.get(ENV_PREFIX + name)
            if v:
                values[key] = v
        if url:
            values["url"] = url
        values.update({k: v for k, v in overrides.items() if v is not None})
        known = {f.name for f in dc_fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise IndexerConfigError(f"unknown indexer setting(s): {', '.join(unknown)} "
                                     f"(known: {', '.join(sorted(known))})")
        if "tiebreakers" in values:
            values["tiebreakers"] = tuple(values["tiebreakers"])
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        if not self.url:
            raise IndexerConfigError(f"no indexer URL: give one (https://indexer:9200/{DEFAULT_INDEX}), "
                                     f"set {ENV_PREFIX}URL or 'url' in {DEFAULT_CONFIG_FILE}")
        parts = urlsplit(self.url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise IndexerConfigError(f"not an indexer URL: {_safe_url(self.url)} (expected https://host:9200)")
        if parts.username is not None or parts.password is not None:
            raise IndexerConfigError(
                "the indexer URL carries credentials: put them in the config file (root-only) or in "
                f"{ENV_PREFIX}USER/{ENV_PREFIX}PASSWORD, never on a command line")
        if parts.query or parts.fragment:
            raise IndexerConfigError(f"the indexer URL must not have a query or fragment: {_safe_url(self.url)}")
        if self.username and parts.scheme.lower() == "http" and not self.allow_http and not is_loopback(parts.hostname):
            raise IndexerConfigError(f"refusing to send the indexer password in clear to {_safe_url(self.url)}: use "
                                     f'https://, or set "allow_http": true in {DEFAULT_CONFIG_FILE} on a trusted network')
        for name in ("page_size", "retries"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "page_size" else 0):
                raise IndexerConfigError(f"indexer setting {name}={v!r}: give a whole number")
        if self.page_size > 10_000:
            raise IndexerConfigError("indexer page_size is at most 10000 (index.max_result_window)")
        if (self.username is None) != (self.password is None):
            raise IndexerConfigError("give both the indexer user and its password, or neither")
        if self.ca_bundle and not os.path.isfile(self.ca_bundle):
            raise IndexerConfigError(f"indexer CA bundle not found: {self.ca_bundle}")
        if isinstance(self.query, str):
            try:
                self.query = json.loads(self.query) if self.query.strip() else None
            except ValueError as e:
                raise IndexerConfigError(f"the indexer query is not JSON: {e}") from None
        self.schema = self.schema or schema_of_index(self.index_pattern)
        if self.schema not in SCHEMAS:
            raise IndexerConfigError(f"indexer schema {self.schema!r}: one of {', '.join(SCHEMAS)}")
        if self.schema == "wcs" and (self.time_field, self.tiebreakers) == ("timestamp", DEFAULT_TIEBREAKERS):
            self.time_field, self.tiebreakers = WCS_READ_DEFAULTS["time_field"], WCS_READ_DEFAULTS["tiebreakers"]
        if self.query is not None and not isinstance(self.query, dict):
            raise IndexerConfigError("the indexer query must be a JSON object (query DSL), "
                                     'e.g. {"term": {"agent.id": "001"}}')

    # -- derived ----------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        p = urlsplit(self.url or "")
        return urlunsplit((p.scheme.lower(), p.netloc, "", "", "")).rstrip("/")

    @property
    def index_pattern(self) -> str:
        if self.index:
            return self.index
        path = urlsplit(self.url or "").path.strip("/")
        return path or DEFAULT_INDEX

    @property
    def display(self) -> str:
        """The source as shown in logs and errors: base URL and index, nothing else."""
        return f"{self.base_url}/{self.index_pattern}"


def load_config_file(path: str) -> Dict[str, Any]:
    """The settings of a JSON config file that only its owner (root, or whoever runs us) can read.

    The file holds the indexer password: one that a group or other users can read or write is
    refused, and so is one owned by another user (they could swap the indexer for theirs).
    """
    from mimizuku.core.private_file import read_private_json

    data = read_private_json(path, what="indexer config file", limit=1 << 20, error=IndexerConfigError)
    if isinstance(data.get("indexer"), dict):  # allow {"indexer": {...}} in a shared file
        data = data["indexer"]
    return data


def _safe_url(url: str) -> str:
    """A URL without any userinfo, for messages."""
    try:
        p = urlsplit(url)
        host = p.hostname or ""
        if p.port:
            host += f":{p.port}"
        return urlunsplit((p.scheme, host, p.path, "", ""))
    except ValueError:
        return "<unparsable URL>"


def _parse_keep_alive_s(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", text.strip())
    if not m:
        raise IndexerConfigError(f"keep_alive={text!r}: use e.g. '2m' or '90s'")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


class IndexerSource:
    """Alerts of a Wazuh indexer, as the reader of :func:`mimizuku.sources.reader.iter_alerts` takes them.

    ``IndexerSource("https://indexer:9200/wazuh-alerts-4.x-*", page_size=5000)`` -- other keyword
    arguments are :class:`IndexerConfig` fields. Iterating it yields ``_source`` dicts (alerts);
    :meth:`hits` yields the raw hits (``_id``, ``_index``, ``sort``, ``_source``) for callers that
    need a cursor (the follower). ``stats`` counts requests, pages, hits, retries and PIT renewals.
    """

    #: how :mod:`mimizuku.sources.reader` recognises an indexer source without importing this module
    is_indexer_source = True

    def __init__(self, url: Optional[str] = None, *, config: Optional[IndexerConfig] = None,
                 config_file: Optional[str] = None, session: Any = None, **settings: Any) -> None:
        self.config = config if config is not None else IndexerConfig.from_sources(
            url, config_file=config_file, **settings)
        self.config.check()
        self._keep_alive_s = _parse_keep_alive_s(self.config.keep_alive)
        self._session = session
        self._pit_supported: Optional[bool] = self.config.pit
        self.stats: Dict[str, int] = {"requests": 0, "pages": 0, "hits": 0, "pits_opened": 0,
                                      "pits_closed": 0, "pit_renewals": 0, "retried_pages": 0}
        if self.config.username and self.config.base_url.startswith("http://") \
                and self.config.base_url not in _WARNED_PLAIN_HTTP:
            _WARNED_PLAIN_HTTP.add(self.config.base_url)  # once per process (a source per slice)
            log.warning("sending indexer credentials over plain http to %s", self.config.base_url)

    def __repr__(self) -> str:
        return f"IndexerSource({self.config.display!r})"

    def __str__(self) -> str:
        return self.config.display

    # -- HTTP ---------------------------------------------------------------------------------------
    @property
    def session(self) -> Any:
        if self._session is None:
            self._session = self._make_session()
        return self._session

    def _make_session(self) -> Any:
        import requests

        from mimizuku.core.http_retry import retry_adapter

        cfg = self.config
        # searches are reads: POST is safe to repeat (methods=None)
        adapter = retry_adapter(cfg.retries, cfg.backoff, methods=None, max_retry_after=cfg.max_retry_after,
                                max_backoff=cfg.max_backoff, status=cfg.retries, other=0,
                                pool_connections=2, pool_maxsize=4)
        s = requests.Session()
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        s.verify = cfg.ca_bundle if cfg.ca_bundle else bool(cfg.verify_tls)
        s.trust_env = False  # no proxy or netrc credentials picked up behind our back
        if cfg.username is not None:
            s.auth = (cfg.username, cfg.password or "")
        s.headers.update({"Content-Type": "application/json", "Accept": "application/json",
                          "User-Agent": "mimizuku-indexer"})
        return s

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> "IndexerSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _scrub(self, text: str) -> str:
        pw = self.config.password
        if pw:
            text = text.replace(pw, "***")
        return text

    def _request(self, method: str, path: str, body: Optional[Dict[str, Any]] = None,
                 params: Optional[Dict[str, str]] = None) -> Tuple[int, Any]:
        """(status, parsed JSON or text); transport failures become ``IndexerUnavailable``."""
        import requests

        cfg = self.config
        url = cfg.base_url + path
        data = json.dumps(body, separators=(",", ":")).encode("utf-8") if body is not None else None
        self.stats["requests"] += 1
        try:
            r = self.session.request(method, url, data=data, params=params,
                                     timeout=(cfg.connect_timeout, cfg.read_timeout))
        except requests.exceptions.SSLError as e:
            raise IndexerUnavailable(self._scrub(
                f"TLS verification failed for {cfg.base_url}: {_reason(e)} (give the CA that signed the "
                f"indexer's certificate: 'ca_bundle' in the config file or {ENV_PREFIX}CA)")) from None
        except requests.exceptions.Timeout as e:
            raise IndexerUnavailable(self._scrub(
                f"the indexer at {cfg.base_url} did not answer in time after {cfg.retries} retries "
                f"({_reason(e)})")) from None
        except requests.exceptions.RequestException as e:
            raise IndexerUnavailable(self._scrub(
                f"cannot reach the indexer at {cfg.base_url} after {cfg.retries} retries: {_reason(e)}")) from None
        try:
            payload: Any = _loads(r.content)
        except ValueError:
            payload = r.text[:500]
        finally:
            r.close()
        return r.status_code, payload

    def _fail(self, status: int, payload: Any, what: str) -> IndexerError:
        """The error for an unexpected answer, with the indexer's reason (never a credential)."""
        cfg = self.config
        typ, reason = _error_of(payload)
        who = f"user {cfg.username!r}" if cfg.username else "anonymous access"
        if status == 401:
            return IndexerAuthError(self._scrub(
                f"the indexer at {cfg.base_url} refused the credentials of {who} (401 Unauthorized): "
                f"check the user and password in the config file or {ENV_PREFIX}USER/{ENV_PREFIX}PASSWORD"))
        if status == 403:
            return IndexerAuthError(self._scrub(
                f"the indexer at {cfg.base_url} denied {what} on {cfg.index_pattern} to {who} (403 Forbidden"
                f"{': ' + reason if reason else ''}); it needs read and point-in-time permissions on the index"))
        if typ == "index_not_found_exception" or (status == 404 and "no such index" in reason):
            return IndexerError(self._scrub(f"index {cfg.index_pattern} does not exist on {cfg.base_url}"))
        if status == 429 or status >= 500:
            return IndexerUnavailable(self._scrub(
                f"the indexer at {cfg.base_url} still answers {status} to {what} after {cfg.retries} retries"
                f"{': ' + reason if reason else ''}"))
        return IndexerError(self._scrub(
            f"the indexer at {cfg.base_url} answered {status} to {what}: {typ + ': ' if typ else ''}{reason}"))

    # -- the query ----------------------------------------------------------------------------------
    def sort_spec(self) -> List[Dict[str, Any]]:
        cfg = self.config
        spec: List[Dict[str, Any]] = [{cfg.time_field: {"order": "asc"}}]
        for f in cfg.tiebreakers:
            spec.append({f: {"order": "asc", "unmapped_type": "keyword"}})
        return spec

    def build_query(self, since_ms: Optional[int] = None, until_ms: Optional[int] = None,
                    extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """``bool``: filter = window + user query (+ ``extra``), must_not = our own events."""
        cfg = self.config
        filters: List[Dict[str, Any]] = []
        if since_ms is not None or until_ms is not None:
            rng: Dict[str, Any] = {"format": "epoch_millis"}
            if since_ms is not None:
                rng["gte"] = int(since_ms)
            if until_ms is not None:
                rng["lt"] = int(until_ms)
            filters.append({"range": {cfg.time_field: rng}})
        if cfg.query:
            filters.append(cfg.query)
        if extra:
            filters.append(extra)
        b: Dict[str, Any] = {"filter": filters}
        if cfg.exclude_own:
            b["must_not"] = [own_event_query()]
        return {"bool": b}

    # -- point in time ------------------------------------------------------------------------------
    def _open_pit(self) -> str:
        path = "/" + quote(self.config.index_pattern, safe="*,-_.") + "/_search/point_in_time"
        status, payload = self._request("POST", path, params={"keep_alive": self.config.keep_alive})
        if status == 200 and isinstance(payload, dict) and isinstance(payload.get("pit_id"), str):
            self.stats["pits_opened"] += 1
            return payload["pit_id"]
        typ, reason = _error_of(payload)
        if status in (400, 404, 405, 501) and typ != "index_not_found_exception" and \
                "no such index" not in reason:
            raise _NoPit(f"{status} {typ} {reason}")
        raise self._fail(status, payload, "creating a point in time")

    def _close_pit(self, pit_id: Optional[str]) -> None:
        if not pit_id:
            return
        try:
            status, payload = self._request("DELETE", "/_search/point_in_time", {"pit_id": [pit_id]})
        except IndexerError as e:
            log.warning("could not delete the point in time (it expires by itself): %s", e)
            return
        if status == 200:
            self.stats["pits_closed"] += 1
        elif status != 404:
            log.warning("could not delete the point in time (%s); it expires by itself", status)

    # -- reading -------------------------------------------------------------------------------------
    def hits(self, since_ms: Optional[int] = None, until_ms: Optional[int] = None, *,
             search_after: Optional[List[Any]] = None, use_pit: Optional[bool] = None,
             extra_query: Optional[Dict[str, Any]] = None, page_size: Optional[int] = None,
             source: bool = True) -> Iterator[Dict[str, Any]]:
        """Every hit in ``[since_ms, until_ms)`` (epoch milliseconds), in sort order, page by page.

        ``search_after`` resumes after those sort values. ``use_pit=False`` reads the live index
        (what the follower does: a PIT per poll would be wasted). ``source=False`` asks for ids
        and sort values only. Memory: one page.
        """
        size = page_size or self.config.page_size
        query = self.build_query(since_ms, until_ms, extra_query)
        want_pit = self._pit_supported if use_pit is None else use_pit
        if want_pit is not False:
            pit_id: Optional[str] = None
            try:
                pit_id = self._open_pit()
            except _NoPit as e:
                # OpenSearch 2.x refuses a PIT on a pattern that matches no index (400 "invalid id: [null]"):
                # an empty search tells that from a cluster without the API; there is nothing to read
                empty = self._search("/" + quote(self.config.index_pattern, safe="*,-_.") + "/_search", {"size": 0})
                if (empty.get("_shards") or {}).get("total") == 0:
                    return
                if want_pit is True:
                    raise IndexerError(f"the indexer at {self.config.base_url} has no point-in-time API "
                                       f"({self._scrub(str(e)).strip()}); set \"pit\": false") from None
                log.info("indexer %s has no point-in-time API: paging the live index with search_after",
                         self.config.base_url)
                self._pit_supported = False
            else:
                self._pit_supported = True
                holder = [pit_id]
                try:
                    yield from self._pages(query, size, search_after, holder, source)
                finally:
                    self._close_pit(holder[0])
                return
        yield from self._pages(query, size, search_after, None, source)

    def _pages(self, query: Dict[str, Any], size: int, after: Optional[List[Any]],
               pit: Optional[List[Optional[str]]], source: bool = True) -> Iterator[Dict[str, Any]]:
        sort = self.sort_spec()
        renewals_in_a_row = 0
        while True:
            body: Dict[str, Any] = {"size": size, "sort": sort, "query": query, "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            if not source:
                body["_source"] = False
            try:
                if pit is not None:
                    body["pit"] = {"id": pit[0], "keep_alive": self.config.keep_alive}
                    resp = self._search("/_search", body)
                    if isinstance(resp.get("pit_id"), str):
                        pit[0] = resp["pit_id"]  # the id may change between pages: use the latest
                else:
                    resp = self._search("/" + quote(self.config.index_pattern, safe="*,-_.") + "/_search", body)
            except _PitExpired:
                renewals_in_a_row += 1
                if renewals_in_a_row > 3:
                    raise IndexerUnavailable(
                        f"the point in time on {self.config.display} keeps expiring; raise keep_alive "
                        f"(now {self.config.keep_alive}) or read faster") from None
                log.warning("the point in time expired mid-read: opening a new one and resuming after %s",
                            after)
                self._close_pit(pit[0])  # type: ignore[index]
                pit[0] = None  # type: ignore[index]
                pit[0] = self._open_pit()  # type: ignore[index]
                self.stats["pit_renewals"] += 1
                continue
            renewals_in_a_row = 0
            hits = resp.get("hits", {}).get("hits")
            if not isinstance(hits, list):
                raise IndexerError(f"unexpected answer from {self.config.base_url}: no hits.hits")
            self.stats["pages"] += 1
            if not hits:
                return
            self.stats["hits"] += len(hits)
            last = hits[-1].get("sort")
            if not isinstance(last, list):
                raise IndexerError(f"the indexer at {self.config.base_url} returned hits without sort values")
            full = len(hits) >= size
            yield from hits
            hits = resp = None  # type: ignore[assignment]  # one page in memory, not two
            if not full:
                return
            after = last

    def _search(self, path: str, body: Dict[str, Any]) -> Dict[str, Any]:
        """One page; partial answers (timed out, failed shards) are retried, never used."""
        for attempt in range(self.config.retries + 1):
            status, payload = self._request("POST", path, body)
            if status == 200 and isinstance(payload, dict):
                shards = payload.get("_shards") or {}
                failed = shards.get("failed") or 0
                if not failed and not payload.get("timed_out"):
                    return payload
                if "pit" in body and _context_missing(payload):
                    raise _PitExpired()
                why = f"{failed} shard(s) failed" if failed else "timed out"
            elif "pit" in body and status in (400, 404) and _context_missing(payload):
                raise _PitExpired()
            else:
                raise self._fail(status, payload, "a search")
            self.stats["retried_pages"] += 1
            if attempt < self.config.retries:
                delay = min(self.config.max_backoff, self.config.backoff * (2 ** attempt))
                log.warning("partial answer from the indexer (%s): retrying the page in %.1fs", why, delay)
                time.sleep(delay)
        raise IndexerUnavailable(f"the indexer at {self.config.base_url} gave only partial answers "
                                 f"({why}) after {self.config.retries} retries")

    def alerts(self, since_ms: Optional[int] = None, until_ms: Optional[int] = None) -> Iterator[Dict[str, Any]]:
        """The ``_source`` of every hit (``timestamp`` filled from ``@timestamp`` when missing)."""
        for h in self.hits(since_ms, until_ms):
            src = hit_alert(h, self.config.schema)
            if src is not None:
                yield src

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self.alerts()

    def read_window(self, lo: Optional[float], lo_wall: bool, hi: Optional[float],
                    hi_wall: bool) -> Iterator[Dict[str, Any]]:
        """Hits for a reader window (epoch seconds; wall-clock bounds widened, the reader refines)."""
        return self.hits(*_server_range(lo, lo_wall, hi, hi_wall))

    # -- slices ---------------------------------------------------------------------------------------
    def day_slices(self, lo: Optional[float], lo_wall: bool, hi: Optional[float],
                   hi_wall: bool) -> List["IndexerSlice"]:
        """The reader window's server range cut at every UTC midnight of the time field.

        Each slice is half-open ``[since_ms, until_ms)``; the first and last are cut to the
        range. An open end of the window stays open (the first/last alert's day is asked for, so
        the days in between are known); with no bound at all and more than one day, a last
        slice holds the hits that have no time. Together the slices return exactly what ``read_window`` returns, in the
        same order. The slices are bound to this source for local reads; pickled, they carry no
        credentials (see :class:`IndexerSlice`)."""
        since_ms, until_ms = _server_range(lo, lo_wall, hi, hi_wall)
        first, last = since_ms, until_ms            # last: exclusive
        if since_ms is None or until_ms is None:
            if since_ms is None:
                first = self._time_edge(since_ms, until_ms, "asc")
            if until_ms is None:
                edge = self._time_edge(since_ms, until_ms, "desc")
                last = None if edge is None else edge + 1
        if first is None or last is None or first >= last:  # nothing dated in range: one read
            return [self._slice(since_ms, until_ms, False)]
        cuts = [first]
        day = first - first % DAY_MS + DAY_MS       # the next UTC midnight after first
        while day < last:
            cuts.append(day)
            day += DAY_MS
        cuts.append(last)
        bounds = list(zip(cuts[:-1], cuts[1:]))
        out = []
        for i, (a, b) in enumerate(bounds):
            out.append(self._slice(since_ms if i == 0 else a, until_ms if i == len(bounds) - 1 else b, False,
                                   label=_utc_day(a)))
        if since_ms is None and until_ms is None and len(bounds) > 1:
            out.append(self._slice(None, None, True))  # sorted last by the one read too
        return out

    def _slice(self, since_ms: Optional[int], until_ms: Optional[int], undated: bool,
               label: Optional[str] = None) -> "IndexerSlice":
        cfg = self.config
        settings = {name: getattr(cfg, name) for name in SLICE_SETTINGS}
        settings["index"] = cfg.index_pattern
        settings["tiebreakers"] = tuple(cfg.tiebreakers)
        if isinstance(settings["query"], dict):
            settings["query"] = json.loads(json.dumps(settings["query"]))  # a copy of its own
        if label is None:
            label = "undated" if undated else (_utc_day(since_ms) if since_ms is not None else "indexer")
        s = IndexerSlice(url=cfg.base_url, settings=settings, since_ms=since_ms, until_ms=until_ms,
                         undated=undated, auth=cfg.username is not None, label=label)
        s.source = self
        return s

    def _time_edge(self, since_ms: Optional[int], until_ms: Optional[int], order: str) -> Optional[int]:
        """The time (epoch ms) of the first (``asc``) or last (``desc``) dated hit in range."""
        tf = self.config.time_field
        body = {"size": 1, "sort": [{tf: {"order": order}}], "_source": False, "track_total_hits": False,
                "query": self.build_query(since_ms, until_ms, {"exists": {"field": tf}})}
        resp = self._search("/" + quote(self.config.index_pattern, safe="*,-_.") + "/_search", body)
        hits = (resp.get("hits") or {}).get("hits") or []
        if not hits or not isinstance(hits[0], dict):
            return None
        v = (hits[0].get("sort") or [None])[0]
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        return int(v)


@dataclass
class IndexerSlice:
    """One time slice of an indexer read: ``[since_ms, until_ms)`` of the time field (``None``:
    open), or the hits without a time (``undated``).

    Picklable and free of secrets: the URL (never with credentials), the ``SLICE_SETTINGS`` and
    whether the reader used credentials (``auth``). Where it is read, :meth:`open` builds an
    ``IndexerSource`` from that machine's own config file / environment. A slice made by
    ``IndexerSource.day_slices`` is bound to that source (``source``) for local reads; the binding
    is never pickled. Also a source of :func:`mimizuku.sources.reader.iter_alerts` (the reader refines
    with its window)."""

    url: str
    settings: Dict[str, Any]
    since_ms: Optional[int]
    until_ms: Optional[int]
    undated: bool = False
    auth: bool = False
    label: str = "indexer"
    source: Any = field(default=None, repr=False, compare=False)   # bound IndexerSource, not pickled

    is_indexer_source = True
    is_slice = True

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["source"] = None  # the bound source holds the credentials: never pickled
        return state

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __str__(self) -> str:
        where = f"{self.url}/{self.settings.get('index')}"
        if self.undated:
            return f"{where} (alerts without {self.settings.get('time_field')})"
        return f"{where} [{_iso_ms(self.since_ms)}, {_iso_ms(self.until_ms)})"

    def unbound(self) -> "IndexerSlice":
        """A copy without the bound source: what goes to a Dask worker."""
        return dataclasses.replace(self, source=None)

    def bind(self, source: "IndexerSource") -> "IndexerSlice":
        return dataclasses.replace(self, source=source)

    def open(self, config_file: Optional[str] = None, env: Optional[Dict[str, str]] = None) -> "IndexerSource":
        """This machine's ``IndexerSource`` for the slice: credentials, CA, TLS and timeouts from
        its own config file / environment, what to read from the slice. Raises
        ``IndexerConfigError`` when the reader used credentials and none are configured here."""
        cfg = IndexerConfig.from_sources(self.url, config_file=config_file, env=env)
        cfg = dataclasses.replace(cfg, url=self.url, **self.settings)
        cfg.check()
        if self.auth and cfg.username is None:
            raise IndexerConfigError(
                f"no indexer credentials on this machine for {self.url}: every machine that reads "
                f"indexer slices (each Dask worker) needs the same root-only {DEFAULT_CONFIG_FILE} as the "
                f"driver ({ENV_PREFIX}CONFIG names another) or {ENV_PREFIX}USER and {ENV_PREFIX}PASSWORD")
        return IndexerSource(config=cfg)

    def read_window(self, lo: Optional[float] = None, lo_wall: bool = True, hi: Optional[float] = None,
                    hi_wall: bool = True) -> Iterator[Dict[str, Any]]:
        """The slice's hits (its range is fixed; the reader applies its exact window to them)."""
        src = self.source
        opened = src is None
        if opened:
            src = self.open()
        try:
            extra = None
            if self.undated:
                extra = {"bool": {"must_not": [{"exists": {"field": src.config.time_field}}]}}
            yield from src.hits(self.since_ms, self.until_ms, extra_query=extra)
        finally:
            if opened:
                src.close()

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        for h in self.read_window():
            src = hit_alert(h, self.settings.get("schema", "wazuh-4"))
            if src is not None:
                yield src


def _server_range(lo: Optional[float], lo_wall: bool, hi: Optional[float],
                  hi_wall: bool) -> Tuple[Optional[int], Optional[int]]:
    """``[since_ms, until_ms)`` for a reader window: wall-clock bounds are widened by the largest
    UTC offset (the reader refines each alert against its own wall clock)."""
    since_ms = until_ms = None
    if lo is not None:
        since_ms = int((lo - (WALL_CLOCK_MARGIN_S if lo_wall else 0)) * 1000)
    if hi is not None:
        until_ms = int((hi + (WALL_CLOCK_MARGIN_S if hi_wall else 0)) * 1000) + (1 if hi_wall else 0)
    return since_ms, until_ms


def _utc_day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000.0, timezone.utc).strftime("%Y-%m-%d")


def _iso_ms(ms: Optional[int]) -> str:
    if ms is None:
        return "open"
    return datetime.fromtimestamp(ms / 1000.0, timezone.utc).isoformat(timespec="milliseconds")


def _loads(data: bytes) -> Any:
    """orjson when installed (a page of 5,000 alerts parses in a third of the time)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover
        return json.loads(data)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ValueError(str(e)) from None


def _reason(e: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the URL's query or headers."""
    inner: Any = e
    for _ in range(4):
        nxt = getattr(inner, "reason", None) or (inner.args[0] if getattr(inner, "args", None) else None)
        if nxt is None or nxt is inner or isinstance(nxt, str):
            break
        inner = nxt
    text = str(inner)
    return text[:300]


def _error_of(payload: Any) -> Tuple[str, str]:
    """(type, reason) of an OpenSearch error answer, whatever its shape."""
    if isinstance(payload, dict):
        err = payload.get("error")
        if isinstance(err, dict):
            typ = str(err.get("type") or "")
            reason = str(err.get("reason") or "")
            rc = err.get("root_cause")
            if isinstance(rc, list) and rc and isinstance(rc[0], dict):
                typ = str(rc[0].get("type") or typ)
                reason = str(rc[0].get("reason") or reason)
            return typ, reason[:300]
        if isinstance(err, str):
            return "", err[:300]
        return "", json.dumps(payload)[:300]
    return "", str(payload)[:300]


def _context_missing(payload: Any) -> bool:
    """Whether an answer says the search context (the PIT) is gone."""
    text = json.dumps(payload)[:20000] if not isinstance(payload, str) else payload
    return "search_context_missing_exception" in text or "No search context found" in text
