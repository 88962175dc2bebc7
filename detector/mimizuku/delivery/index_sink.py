"""Anomalies (and, if asked, every score) as documents in the indexer: ``mimizuku-anomalies``.

Why: the Wazuh event carries one anomaly to analysisd and the dashboards' alert index; a data
stream of our own keeps every anomaly with its score, reasons, ATT&CK technique, story and the
identity of the alert it came from, queryable and with its own retention, whatever the rules and
flood control made of it.

How (docs/indexer.md, "Anomaly documents"):

* **Spool first.** :meth:`IndexSink.add` writes the documents of one call (a micro-batch of the
  scorer, a chunk of the nightly day) as ONE item of a durable spool (``core/spool.py``: one
  fsync per call, not per document), then sends what is due. The caller's alerts are settled
  only once that item is on disk, so nothing is lost while the indexer is down, is slow or the
  process dies: the spool is sent, oldest first, when it answers again.
* **Bulk writes.** ``POST /<stream>/_bulk`` with ``create`` actions, at most ``batch_docs``
  documents and ``batch_bytes`` bytes per request. Each item's answer decides its fate: 201
  created; 409 (the id is there: a resend) counts as delivered, never as a second document; 429
  and 5xx (and a whole request that failed or timed out) are sent again -- only those items --
  after an exponential backoff with jitter (a ``Retry-After`` is honoured); 400 and other 4xx
  (a mapping the document does not fit) set the document aside in the dead-letter spool with a
  log line, and the rest goes on. A spool item is deleted once each of its documents was
  delivered or set aside.
* **Setup once per process:** the index template (``PUT _index_template/<stream>``) before the
  first write, then the ISM retention policy; a node without the ISM plugin (404) is logged once
  and the documents still go in.
* **Credentials** as for the indexer source: a root-only JSON file (``core/private_file.py``;
  the source's ``indexer.json`` does), or ``MIMIZUKU_INDEXER_USER``/``PASSWORD``/``CA``; never a
  command line. TLS is verified by default; plain ``http://`` only to the loopback, or anywhere
  with ``"allow_http": true`` in that file (as ``delivery/wazuh_api.py``).
"""
from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import quote, urlsplit

from mimizuku.core.hosts import is_loopback
from mimizuku.core.logfn import LogFn, no_log
from mimizuku.core.settings import Setting, clamped
from mimizuku.core.spool import MISSING, Spool, SpoolError
from mimizuku.core.text import printable
from mimizuku.delivery.failure_notice import FailureNotice
from mimizuku.delivery.index_docs import (
    DEFAULT_STREAM,
    build_document,
    doc_id,
    encode_document,
    index_template,
    ism_policy,
)
from mimizuku.delivery.wazuh_api import parse_retry_after

__all__ = ["IndexConfigError", "IndexCredentials", "IndexClient", "IndexSink", "IndexResult",
           "load_index_credentials", "index_sink_from_settings", "index_settings", "sink_for", "DEFAULT_CREDENTIALS", "DEAD_LETTER_DIR"]

log = logging.getLogger("mimizuku.index")

#: read when no credentials file is named (the indexer source's file: same keys)
DEFAULT_CREDENTIALS = "/var/ossec/etc/mimizuku/indexer.json"
ENV_USER, ENV_PASSWORD, ENV_CA = "MIMIZUKU_INDEXER_USER", "MIMIZUKU_INDEXER_PASSWORD", "MIMIZUKU_INDEXER_CA"
#: the keys of the credentials file this sink uses; the indexer source's other keys are left to it
CREDENTIAL_KEYS = ("url", "username", "password", "ca_bundle", "verify_tls", "allow_http")
#: documents set aside (refused by the indexer): beside the sink's spool
DEAD_LETTER_DIR = "index-rejected"
MAX_CREDENTIALS_BYTES = 1 << 20
#: item statuses sent again (the indexer is busy or a shard is not there yet)
RETRY_ITEM = frozenset({408, 429, 500, 502, 503, 504})
#: what a bulk answer needs to say: each item's status and error (not its index, version, shards...)
BULK_PARAMS = {"filter_path": "errors,items.*.status,items.*.error"}


class IndexConfigError(ValueError):
    """The sink cannot be set up: no URL, unsafe credentials file, plain http to another host."""


@dataclass(frozen=True)
class IndexCredentials:
    """Where the indexer is and who we are there; ``repr`` never shows the password."""

    url: str
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    ca_bundle: Optional[str] = None
    verify_tls: bool = True
    allow_http: bool = False

    @property
    def tls_verify(self) -> Union[bool, str]:
        if not self.verify_tls:
            return False
        return self.ca_bundle or True


def check_index_url(url: str, *, allow_http: bool = False) -> str:
    """``scheme://host:port`` of the indexer (a path is ignored: the stream is a setting).

    The password goes with every request: plain ``http://`` is accepted to the loopback, and to
    another host only with ``allow_http`` (the credentials file's ``"allow_http": true``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError as e:
        raise IndexConfigError(f"indexer url is not a URL: {e}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise IndexConfigError("indexer url must look like https://indexer:9200")
    if parts.username is not None or parts.password is not None:
        raise IndexConfigError("the indexer url carries credentials: put them in the credentials file (mode 600) "
                               f"or {ENV_USER}/{ENV_PASSWORD}, never on a command line")
    if parts.query or parts.fragment:
        raise IndexConfigError("the indexer url must not have a query or fragment")
    if parts.scheme.lower() == "http" and not allow_http and not is_loopback(parts.hostname):
        raise IndexConfigError(f"refusing to send the indexer password in clear to {parts.hostname} (http://): use "
                               f"https://{parts.netloc}, or set \"allow_http\": true in the credentials file if "
                               f"the network in between is trusted")
    return f"{parts.scheme.lower()}://{parts.netloc}"


def load_index_credentials(url: Optional[str], path: "os.PathLike[str] | str | None" = None, *,
                           env: Optional[Mapping[str, str]] = None,
                           default_path: Optional[str] = DEFAULT_CREDENTIALS) -> IndexCredentials:
    """Credentials from ``path`` (else ``default_path`` when it exists), then the environment;
    ``url`` (when given) wins over the file's ``url``. A file group or others can read is refused."""
    from mimizuku.core.private_file import read_private_json

    env = os.environ if env is None else env
    conf: Dict[str, Any] = {}
    chosen = os.fspath(path) if path is not None else (default_path if default_path and
                                                          os.path.lexists(default_path) else None)
    if chosen is not None:
        raw = read_private_json(chosen, what="indexer credentials file", limit=MAX_CREDENTIALS_BYTES,
                                error=IndexConfigError)
        if isinstance(raw.get("indexer"), dict):   # {"indexer": {...}} in a shared file
            raw = raw["indexer"]
        conf = {k: raw[k] for k in CREDENTIAL_KEYS if k in raw}
        for k in ("url", "username", "password", "ca_bundle"):
            if conf.get(k) is not None and not isinstance(conf[k], str):
                raise IndexConfigError(f"indexer credentials file {chosen}: {k} must be a string")
        for k in ("verify_tls", "allow_http"):
            if k in conf and not isinstance(conf[k], bool):
                raise IndexConfigError(f"indexer credentials file {chosen}: {k} must be true or false")
    for key, var in (("username", ENV_USER), ("password", ENV_PASSWORD), ("ca_bundle", ENV_CA)):
        if env.get(var):
            conf[key] = env[var]
    if url:
        conf["url"] = url
    if not conf.get("url"):
        raise IndexConfigError(f"no indexer url: give one (https://indexer:9200) or 'url' in {chosen or default_path}")
    if (conf.get("username") is None) != (conf.get("password") is None):
        raise IndexConfigError("give both the indexer user and its password, or neither")
    ca = conf.get("ca_bundle") or None
    if ca is not None and not os.path.isfile(ca):
        raise IndexConfigError(f"indexer CA bundle not found: {ca}")
    allow_http = bool(conf.get("allow_http", False))
    return IndexCredentials(url=check_index_url(conf["url"], allow_http=allow_http), username=conf.get("username"),
                            password=conf.get("password"), ca_bundle=ca,
                            verify_tls=bool(conf.get("verify_tls", True)), allow_http=allow_http)


# --- HTTP --------------------------------------------------------------------------------------------

class IndexUnavailable(Exception):
    """The request did not get an answer (refused, timed out, TLS failure)."""


class IndexClient:
    """The few requests the sink makes, on one ``requests.Session`` (no retries of its own: the
    sink keeps what failed and decides when to send it again)."""

    def __init__(self, creds: IndexCredentials, *, timeout: Tuple[float, float] = (5.0, 30.0), session: Any = None):
        import requests

        self.creds = creds
        self.base = creds.url
        self.timeout = timeout
        if creds.url.startswith("http://") and creds.username:
            log.warning("the indexer password goes to %s in clear (http://, %s); use https", creds.url,
                        "explicitly allowed" if creds.allow_http else "loopback only")
        if creds.tls_verify is False:
            log.warning("TLS certificate verification of %s is DISABLED (verify_tls=false): give the indexer's CA "
                        "with ca_bundle instead", creds.url)
        s = session if session is not None else requests.Session()
        s.verify = creds.tls_verify
        s.trust_env = False   # no ~/.netrc credentials or proxies from the environment
        if creds.username is not None:
            s.auth = (creds.username, creds.password or "")
        s.headers.update({"Accept": "application/json", "User-Agent": "mimizuku-index-sink"})
        self.session = s
        self.requests = 0

    def _scrub(self, text: str) -> str:
        pw = self.creds.password
        return text.replace(pw, "***") if pw and len(pw) >= 3 else text

    def call(self, method: str, path: str, body: Union[None, bytes, Dict[str, Any]] = None, *,
             ndjson: bool = False, params: Optional[Dict[str, str]] = None) -> Tuple[int, Any, Dict[str, str]]:
        """(status, parsed JSON or text, headers); no answer at all raises :class:`IndexUnavailable`."""
        import requests

        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/x-ndjson" if ndjson else "application/json"}
        self.requests += 1
        try:
            r = self.session.request(method, self.base + path, data=data, params=params, headers=headers,
                                     timeout=self.timeout, allow_redirects=False)
        except requests.exceptions.SSLError as e:
            raise IndexUnavailable(self._scrub(f"TLS verification of {self.base} failed ({_short(e)}): give the CA "
                                               f"that signed the indexer's certificate (ca_bundle, {ENV_CA})")) from None
        except requests.exceptions.RequestException as e:
            raise IndexUnavailable(self._scrub(f"{method} {self.base}{path}: {type(e).__name__}: {_short(e)}")) from None
        try:
            payload: Any = _loads(r.content)
        except ValueError:
            payload = r.text[:500]
        return r.status_code, payload, dict(r.headers)

    def close(self) -> None:
        self.session.close()


def _loads(data: bytes) -> Any:
    """JSON of an answer (orjson when installed: a bulk answer has an item per document)."""
    try:
        import orjson
    except ImportError:  # pragma: no cover
        return json.loads(data)
    return orjson.loads(data)


def _text(v: Any) -> Optional[str]:
    return v if isinstance(v, str) and v else None


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def error_text(payload: Any) -> str:
    """``type: reason`` of an OpenSearch error answer (one line, cut)."""
    err = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(err, dict):
        text = f"{err.get('type', '?')}: {err.get('reason', '')}"
        cause = err.get("caused_by")
        if isinstance(cause, dict) and cause.get("reason"):
            text += f" ({cause.get('type', '?')}: {cause['reason']})"
        return printable(" ".join(text.split()), 500)
    if isinstance(err, str):
        return printable(err, 500)
    return printable(" ".join(str(payload).split()), 200) if payload else ""


# --- the sink ----------------------------------------------------------------------------------------

@dataclass
class IndexResult:
    """What one flush did."""

    created: int = 0
    duplicates: int = 0
    rejected: int = 0
    retried: int = 0


class IndexSink:
    """Documents of scored records into a data stream, through a durable spool (see the module).

    ``client``: an :class:`IndexClient` (or anything with ``call``). ``all_scores``: index every
    record given, not only anomalies. ``clock``/``sleep``/``rng`` are injectable for tests.
    """

    def __init__(self, client: Any, spool_dir: "os.PathLike[str] | str", *, stream: str = DEFAULT_STREAM,
                 all_scores: bool = False, manager: Optional[str] = None, log: Optional[LogFn] = None,
                 batch_docs: int = 5000, batch_bytes: int = 16 << 20, linger: float = 1.0,
                 retention_days: int = 90, replicas: Optional[int] = None, max_items: int = 100_000,
                 retry_base: float = 1.0, retry_max: float = 120.0, auth_retry: float = 60.0,
                 dead_letter_dir: "os.PathLike[str] | str | None" = None,
                 clock: Callable[[], float] = time.monotonic, rng: Optional[random.Random] = None):
        if batch_docs < 1 or batch_bytes < 1024:
            raise ValueError("batch_docs must be >= 1 and batch_bytes >= 1024")
        self.client = client
        self.stream = stream
        self.all_scores = all_scores
        self.manager = manager
        self.log = log if log is not None else no_log
        self.spool = Spool(spool_dir, max_items=max_items, log=self.log)
        dead = Path(dead_letter_dir) if dead_letter_dir is not None else Path(spool_dir).parent / DEAD_LETTER_DIR
        self.dead = Spool(dead, max_items=100_000, log=self.log)
        self.batch_docs = batch_docs
        self.batch_bytes = batch_bytes
        self.linger = linger
        self.retention_days = retention_days
        self.replicas = replicas
        self.retry_base, self.retry_max, self.auth_retry = retry_base, retry_max, auth_retry
        self.clock = clock
        self.rng = rng or random.Random()
        self.notice = FailureNotice(spool_dir, "index", self.log)
        self.path = "/" + quote(stream, safe="") + "/_bulk"
        self.set_up = False
        self.ism = "unknown"           # "installed", "absent" (no ISM plugin), "refused"
        self.retry_at = 0.0
        self.failures = 0
        self.oldest_at: Optional[float] = None   # when what waits in the spool was first kept
        self._done: Dict[str, set] = {}         # spool file -> indices of its documents delivered or set aside
        self._count: Dict[str, int] = {}        # spool file -> its number of documents (as last read)
        self._unsent = 0                        # documents kept by this process and not sent yet
        self.totals = IndexResult()
        self._lock = threading.Lock()           # one bulk at a time (the sending thread, a direct send)
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._stopping = False
        self.spooled = 0
        self.requests = 0

    # -- what goes in ------------------------------------------------------------------------------
    def wants(self, record: Mapping[str, Any]) -> bool:
        return self.all_scores or bool(record.get("anomaly"))

    def documents(self, records: Iterable[Any]) -> List[Tuple[str, str]]:
        """``(id, JSON)`` per record to index: ``records`` are records or ``(record, alert)`` pairs
        (the alert names the manager: ``manager.name``)."""
        out: List[Tuple[str, str]] = []
        for item in records:
            rec, alert = item if isinstance(item, tuple) else (item, None)
            if not self.wants(rec):
                continue
            try:
                mgr = alert.get("manager") if isinstance(alert, dict) else None
                manager = _text(mgr.get("name") if isinstance(mgr, dict) else None) or \
                    _text(rec.get("manager")) or self.manager
                doc = build_document(rec, manager)
                out.append((doc_id(manager, rec.get("id"), rec.get("detector")), encode_document(doc)))
            except Exception as e:   # this record only (the alert was scored; its event went its way)
                self.log("error", f"alert {printable(rec.get('id'), 80)} scored, but no index document can be "
                                  f"built for it ({type(e).__name__}: {printable(e, 200)})")
        return out

    def add(self, records: Iterable[Any], deadline: Optional[float] = None) -> int:
        """Keep the documents of ``records`` (durably, in one spool item per ``batch_docs``), then send
        what is due. Returns how many documents were kept. Raises ``SpoolError`` only when they can
        be neither kept nor sent: the caller must then not settle those alerts."""
        docs = self.documents(records)
        wake = False
        for i in range(0, len(docs), self.batch_docs):
            chunk = docs[i: i + self.batch_docs]
            try:
                self.spool.put({"v": 1, "docs": [list(d) for d in chunk]})
            except SpoolError:
                if not self._send_direct(chunk):
                    raise
                continue
            self.spooled += len(chunk)
            self._unsent += len(chunk)
            if self.oldest_at is None:
                self.oldest_at = self.clock()
                wake = True
        if not docs:
            return 0
        if self._thread is None:
            self.flush(deadline)
        elif wake or self._unsent >= self.batch_docs:
            self._wake.set()
        return len(docs)

    def pending(self) -> int:
        try:
            return len(self.spool)
        except SpoolError:
            return 0

    # -- what goes out -----------------------------------------------------------------------------
    def start(self) -> "IndexSink":
        """Send from a thread of its own from now on (the resident scorer): ``add`` only keeps the
        documents and wakes it, so a bulk of thousands of documents, or an indexer that answers
        slowly, never holds up scoring. Without it, ``add`` and ``flush`` send in the caller's
        thread (the nightly job). :meth:`close` stops the thread."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="mimizuku-index-sink", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self._idle_wait())
            self._wake.clear()
            if self._stopping:
                break
            try:
                self._flush(None, False)
            except Exception as e:   # never die: what is kept stays kept
                self.log("error", f"index sink: {type(e).__name__}: {printable(e, 300)}; retrying in 5 s")
                self._wake.wait(5.0)

    def _idle_wait(self) -> float:
        """Until the backoff ends or the oldest kept document's linger is over (the counters are
        hints written by two threads: at worst a batch goes out a little early or late)."""
        now = self.clock()
        if now < self.retry_at:
            return min(self.retry_at - now, 5.0)
        oldest = self.oldest_at
        if oldest is not None:
            return max(0.01, min(self.linger - (now - oldest), 1.0))
        return 1.0

    def flush(self, deadline: Optional[float] = None, *, force: bool = False) -> IndexResult:
        """Send what waits, oldest first, in bulks, until the spool is empty, the indexer fails,
        ``deadline`` or nothing is due (fewer than ``batch_docs`` documents kept for less than
        ``linger`` seconds, unless ``force``). With the sending thread running (:meth:`start`)
        this only wakes it."""
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._wake.set()
            return IndexResult()
        return self._flush(deadline, force)

    def _flush(self, deadline: Optional[float], force: bool) -> IndexResult:
        with self._lock:
            return self._flush_locked(deadline, force)

    def _flush_locked(self, deadline: Optional[float], force: bool) -> IndexResult:
        result = IndexResult()
        empty_rounds = 0
        while True:
            now = self.clock()
            if (deadline is not None and now >= deadline) or now < self.retry_at:
                break
            if not force and self.oldest_at is not None and self._unsent < self.batch_docs and \
                    now - self.oldest_at < self.linger:
                break   # not due: decided before the spool is listed (the scorer asks every round)
            try:
                paths = self.spool.paths()
            except SpoolError:
                break
            if not paths:
                self.oldest_at = None
                self._unsent = 0
                break
            batch, files, size = self._batch(paths)
            if not batch:   # what was in reach was delivered already or unreadable: look again
                empty_rounds += 1
                if empty_rounds > 3:
                    break
                continue
            if not self.set_up and not self._setup():
                break
            if not self._bulk(batch, files, result):
                break
            self._unsent = max(0, self._unsent - len(batch))
            full = len(batch) >= self.batch_docs or size >= self.batch_bytes
            # a full bulk leaves a backlog (a restart, an outage): the next one goes at once
            self.oldest_at = None if full or not self.pending() else now
        for k, v in vars(result).items():
            setattr(self.totals, k, getattr(self.totals, k) + v)
        return result

    def close(self, timeout: float = 5.0) -> None:
        """Send what may be sent within ``timeout`` seconds; the rest stays in the spool."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join(timeout + sum(self.client.timeout) if hasattr(self.client, "timeout") else timeout + 60)
        try:
            self._flush(self.clock() + timeout, True)
        finally:
            close = getattr(self.client, "close", None)
            if close is not None:
                close()

    def __enter__(self) -> "IndexSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------------
    def _batch(self, paths: Sequence[Path]) -> Tuple[List[Tuple[Path, int, str, str]], List[Path], int]:
        """Documents not yet delivered, from the oldest spool items, up to the batch bounds."""
        batch: List[Tuple[Path, int, str, str]] = []
        files: List[Path] = []
        size = 0
        for p in paths:
            item = Spool.load(p, log=self.log)
            if item is MISSING:
                self._done.pop(str(p), None)
                self._count.pop(str(p), None)
                continue
            docs = item.get("docs") if isinstance(item, dict) else None
            if not isinstance(docs, list) or not all(isinstance(d, list) and len(d) == 2 and
                                                     all(isinstance(x, str) and "\n" not in x for x in d)
                                                     for d in docs):
                # what we write never has a raw newline: one would cut the bulk's NDJSON framing
                Spool.set_aside_bad(p, self.log, "is not a batch of index documents")
                continue
            done = self._done.get(str(p), set())
            self._count[str(p)] = len(docs)
            files.append(p)
            for i, (did, src) in enumerate(docs):
                if i in done:
                    continue
                if batch and (len(batch) >= self.batch_docs or size + len(src) > self.batch_bytes):
                    return batch, files, size
                batch.append((p, i, did, src))
                size += len(src) + 64
            if len(batch) >= self.batch_docs:
                break
        if not batch:   # every item in reach was fully delivered already (acks lost): drop them
            for p in files:
                self._finish_file(p)
        return batch, files, size

    def _body(self, batch: Sequence[Tuple[Path, int, str, str]]) -> bytes:
        parts: List[str] = []
        for _, _, did, src in batch:
            parts.append('{"create":{"_id":%s}}\n' % json.dumps(did))
            parts.append(src)
            parts.append("\n")
        return "".join(parts).encode("utf-8")

    def _bulk(self, batch: List[Tuple[Path, int, str, str]], files: List[Path], result: IndexResult) -> bool:
        """One bulk request; True when every item was settled (go on), False to back off."""
        self.requests += 1
        try:
            status, payload, headers = self.client.call("POST", self.path, self._body(batch), ndjson=True,
                                                        params=BULK_PARAMS)
        except IndexUnavailable as e:
            return self._failed("unavailable", f"cannot write documents to the indexer: {e}", None)
        if status in (401, 403):
            return self._failed(f"http{status}", f"the indexer refused to take documents in {self.stream} ({status} "
                                f"{error_text(payload)}): the user needs create_doc/write on {self.stream}",
                                self.auth_retry)
        if status == 413 and len(batch) > 1:   # too large: halve the batch for the rest of the run
            self.batch_docs = max(1, len(batch) // 2)
            self.log("warning", f"the indexer refused a bulk of {len(batch)} documents as too large; "
                                f"sending at most {self.batch_docs} per request")
            return True
        if status != 200 or not isinstance(payload, dict) or not isinstance(payload.get("items"), list) \
                or len(payload["items"]) != len(batch):
            wait = parse_retry_after(headers.get("Retry-After")) if status in (429, 503) else None
            return self._failed(f"http{status}", f"the indexer answered {status} to a bulk of {len(batch)} documents "
                                f"({error_text(payload)}); they stay in {self.spool.directory} and are sent again", wait)
        retry: List[Tuple[int, str]] = []
        if payload.get("errors") is False:   # every item created: no need to look at each
            result.created += len(batch)
            for path, i, _, _ in batch:
                self._done.setdefault(str(path), set()).add(i)
            payload["items"] = ()
        for (path, i, did, src), item in zip(batch, payload["items"]):
            res = next(iter(item.values()), {}) if isinstance(item, dict) and item else {}
            st = res.get("status") if isinstance(res, dict) else None
            if st in (200, 201):
                result.created += 1
            elif st == 409:
                result.duplicates += 1
            elif isinstance(st, int) and st not in RETRY_ITEM and 400 <= st < 500 and st not in (401, 403, 404):
                if not self._dead_letter(did, src, st, error_text(res)):
                    retry.append((st, error_text(res)))
                    continue
                result.rejected += 1
            else:
                retry.append((st, error_text(res)))
                result.retried += 1
                continue
            self._done.setdefault(str(path), set()).add(i)
        for p in files:
            self._finish_file(p)
        if retry:
            st, why = retry[0]
            return self._failed("partial", f"the indexer took {len(batch) - len(retry)} of {len(batch)} documents; "
                                f"{len(retry)} ({st} {why}) stay in {self.spool.directory} and are sent again",
                                None, "warning")
        self.failures = 0
        self.retry_at = 0.0
        if self.notice.current() is not None:
            self.notice.recovered(f"the indexer takes documents in {self.stream} again; {self.pending()} "
                                  f"spooled batches still to send")
        return True

    def _finish_file(self, path: Path) -> None:
        """Delete a spool item once each of its documents was delivered or set aside."""
        key = str(path)
        if len(self._done.get(key, ())) >= self._count.get(key, 1 << 62):
            Spool.ack(path)
            self._done.pop(key, None)
            self._count.pop(key, None)

    def _dead_letter(self, did: str, src: str, status: int, why: str) -> bool:
        try:
            where = self.dead.put({"stream": self.stream, "_id": did, "status": status, "error": why, "doc": src})
        except SpoolError as e:
            self.log("error", f"the indexer refused document {did} ({status} {why}) and it cannot be set aside "
                              f"({e}): it stays in {self.spool.directory}")
            return False
        self.log("error", f"the indexer refused document {did} ({status} {why}); set aside as {where}")
        return True

    def _failed(self, kind: str, message: str, wait: Optional[float], level: str = "error") -> bool:
        if wait is None:   # exponential, with jitter so that many senders do not come back together
            base = min(self.retry_max, self.retry_base * (2 ** min(self.failures, 20)))
            wait = base / 2 + self.rng.uniform(0, base / 2)
        self.failures += 1
        self.retry_at = self.clock() + max(0.0, wait)
        self.notice.failing(kind, message + (f"; next try in {wait:.1f} s" if level == "error" else ""), level)
        return False

    def _setup(self) -> bool:
        """The template (needed: without it a data stream cannot be created), then the ISM policy
        (optional: a node without the plugin gets the documents, the log says so)."""
        body = index_template(self.stream, replicas=self.replicas)
        try:
            status, payload, _ = self.client.call("PUT", "/_index_template/" + quote(self.stream, safe=""), body)
        except IndexUnavailable as e:
            return self._failed("unavailable", f"cannot write documents to the indexer: {e}", None)
        if status in (401, 403):
            # a user allowed to write documents but not templates: the operator installs it
            self.log("warning", f"cannot install the index template {self.stream} ({status} {error_text(payload)}); "
                                f"writing anyway: install it with PUT _index_template/{self.stream} (docs/indexer.md)")
        elif status >= 500 or status == 429:
            return self._failed(f"http{status}", f"the indexer answered {status} to the index template "
                                f"({error_text(payload)})", None)
        elif status >= 300:
            self.log("error", f"the indexer refused the index template {self.stream} ({status} {error_text(payload)}); "
                              f"writing anyway")
        self._setup_ism()
        self.set_up = True
        return True

    def _setup_ism(self) -> None:
        path = "/_plugins/_ism/policies/" + quote(self.stream, safe="")
        try:
            status, payload, _ = self.client.call("PUT", path, ism_policy(self.stream,
                                                                         retention_days=self.retention_days))
        except IndexUnavailable as e:
            self.ism = "unknown"
            self.log("warning", f"cannot install the retention policy: {e}")
            return
        if status in (200, 201):
            self.ism = "installed"
            self.log("info", f"retention policy {self.stream} installed: documents kept {self.retention_days} days")
        elif status == 409:   # already there (maybe edited by the operator): kept as it is
            self.ism = "installed"
        elif status in (400, 404, 405) and "no handler" in error_text(payload).lower() or status == 404:
            self.ism = "absent"
            self.log("warning", f"the indexer has no Index State Management plugin ({status}): documents in "
                                f"{self.stream} are never deleted by it; delete old backing indices yourself "
                                f"(docs/indexer.md, 'Anomaly documents')")
        else:
            self.ism = "refused"
            self.log("warning", f"the indexer refused the retention policy {self.stream} ({status} "
                                f"{error_text(payload)}); documents are kept until deleted")

    def _send_direct(self, chunk: List[Tuple[str, str]]) -> bool:
        """Last resort when the spool cannot keep the documents: one bulk, if allowed now; True
        only when every document was delivered or set aside."""
        with self._lock:
            if self.clock() < self.retry_at:
                return False
            if not self.set_up and not self._setup():
                return False
            fake = Path(self.spool.directory) / ".direct"
            result = IndexResult()
            ok = self._bulk([(fake, i, d, s) for i, (d, s) in enumerate(chunk)], [], result)
            self._done.pop(str(fake), None)
            return ok


def check_stream_name(name: Any) -> str:
    """A name OpenSearch takes for a data stream: lower case, digits, ``-_.``, not starting with
    ``-_.+`` (checked at start rather than refused by the indexer on every bulk)."""
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,199}", name):
        raise ValueError(f"--index-stream {name!r}: use lower-case letters, digits, '-', '_' or '.', "
                         f"starting with a letter or digit")
    return name


def _path(text: str) -> Optional[Path]:
    return Path(text) if text else None


_path.__name__ = "path"


def index_settings(group: Optional[str] = None) -> Tuple[Setting, ...]:
    """The rows of the sink's settings, declared once for ``mimizuku serve`` and ``mimizuku retrain``
    (:mod:`mimizuku.core.settings`)."""
    return (
        Setting("index_url", None, "also write anomalies as documents to the indexer's data stream (--index-stream), "
                "e.g. https://indexer:9200 (no URL: 'url' of the credentials file; docs/indexer.md, 'Anomaly "
                "documents')", metavar="URL", nargs="?", const="", group=group),
        Setting("index_credentials", None, "root-only JSON file with the indexer's username, password, ca_bundle "
                f"(default {DEFAULT_CREDENTIALS}, the indexer source's, when it exists; or {ENV_USER}/"
                f"{ENV_PASSWORD}/{ENV_CA})", type=_path, metavar="PATH", group=group),
        Setting("index_all_scores", False, "with --index-url: a document for every scored alert, not only anomalies",
                switch=True, group=group),
        Setting("index_stream", DEFAULT_STREAM, "with --index-url: the data stream (and its template and retention "
                "policy)", metavar="NAME", group=group, check=check_stream_name),
        Setting("index_retention_days", 90, "with --index-url: days the retention policy (ISM) keeps documents",
                type=clamped(int, 1), metavar="DAYS", group=group),
    )


def index_sink_from_settings(url: Optional[str], credentials: "os.PathLike[str] | str | None",
                             spool_dir: "os.PathLike[str] | str", *, log: Optional[LogFn] = None,
                             default_path: Optional[str] = DEFAULT_CREDENTIALS, timeout: Tuple[float, float] = (5.0, 30.0),
                             **kw: Any) -> IndexSink:
    """An :class:`IndexSink` from the command's settings (url, credentials file); raises
    :class:`IndexConfigError` on a bad or unsafe setting."""
    creds = load_index_credentials(url, credentials, default_path=default_path)
    return IndexSink(IndexClient(creds, timeout=timeout), spool_dir, log=log, **kw)


def sink_for(cfg: Any, spool_dir: "os.PathLike[str] | str", log: Optional[LogFn] = None, *,
             default_path: Optional[str] = DEFAULT_CREDENTIALS, **kw: Any) -> Optional[IndexSink]:
    """The sink a command's configuration (the :func:`index_settings` fields) asks for, or None."""
    if cfg.index_url is None:
        return None
    return index_sink_from_settings(cfg.index_url or None, cfg.index_credentials, spool_dir, log=log,
                                    default_path=default_path, stream=cfg.index_stream,
                                    all_scores=cfg.index_all_scores, retention_days=cfg.index_retention_days, **kw)
