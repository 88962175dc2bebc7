"""A stateful fake Wazuh indexer (OpenSearch 2.x) on 127.0.0.1, for the indexer tests and bench.

It implements what :mod:`mimizuku.sources.indexer` uses, with OpenSearch's request and answer shapes:

* ``POST /<index>/_search/point_in_time?keep_alive=1m`` -> ``{"pit_id", "_shards", "creation_time"}``
  (a PIT is a frozen snapshot of the documents; it expires ``keep_alive`` after its last use);
* ``POST /_search`` with ``{"pit": {"id", "keep_alive"}, ...}`` and ``POST /<index>/_search``:
  ``size``, ``sort`` (fields asc/desc, ``unmapped_type``), ``search_after``, ``_source: false``,
  ``query`` in a subset of the DSL: ``bool`` (must/filter/should/must_not), ``term``,
  ``terms``, ``ids``, ``range`` (gte/gt/lte/lt, epoch_millis or dates), ``exists``, ``match``,
  ``match_all``; hits carry ``_index``, ``_id``, ``_score: null``, ``_source``, ``sort``;
* ``DELETE /_search/point_in_time`` with ``{"pit_id": [...]}``;
* HTTP basic auth (401 with the security plugin's answer), index names by day
  (``wazuh-alerts-4.x-YYYY.MM.DD``; a missing concrete index -> 404 ``index_not_found_exception``).

Writes (the anomaly-document sink, :mod:`mimizuku.delivery.index_sink`): ``PUT _index_template/<name>``
(kept in ``templates``), ``PUT _plugins/_ism/policies/<name>`` (``ism_policies``; ``ism_supported=False``
answers as a node without the plugin), ``POST /<stream>/_bulk`` (NDJSON; a data stream takes only
``create``; an id already there is 409 ``version_conflict_engine_exception``; a value that is not an
address in a field the template maps as ``ip``, or a ``@timestamp`` missing, is 400
``mapper_parsing_exception`` for that item), documents kept in ``streams[name][id]``, and
``GET /<stream>/_count``. ``fail_items([429, None, 503])`` makes the next bulk's items fail in
that order (None: handled normally).

Fault injection: ``fail_next(status, times, retry_after=None)``, ``delay_next(seconds, times)``
(the answer comes after the client's read timeout), ``expire_pits()`` (every open PIT is gone),
``expire_pit_after(n_searches)``, ``pit_supported=False`` (an older cluster), ``partial_next()``
(a 200 answer with a failed shard). ``add(docs, visible=False)`` + ``refresh()`` model late,
not-yet-searchable documents. Requests are recorded in ``requests`` (method, path, body).
"""
from __future__ import annotations

import base64
import bisect
import fnmatch
import itertools
import json
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import parse_qs, unquote, urlsplit

from mimizuku.sources.timestamps import parse_timestamp

_MISSING = object()


def _get(doc: Dict[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return _MISSING
    return cur


def _values(doc: Dict[str, Any], path: str) -> List[Any]:
    v = _get(doc, path)
    if v is _MISSING or v is None:
        return []
    return v if isinstance(v, list) else [v]


def _as_ms(v: Any, fmt: Optional[str] = None) -> Optional[float]:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        if fmt == "epoch_millis" or v.isdigit():
            return float(v)
        t = parse_timestamp(v)
        if t is None and len(v) == 10:
            t = parse_timestamp(v + "T00:00:00Z")
        return None if t is None else float(round(t * 1000.0))
    return None


class _Doc:
    __slots__ = ("index", "id", "source", "raw", "ts_ms")

    def __init__(self, index: str, did: str, source: Dict[str, Any], ts_field: str) -> None:
        self.index = index
        self.id = did
        self.source = source
        self.raw = json.dumps(source, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        v = _get(source, ts_field)
        self.ts_ms = _as_ms(v) if v is not _MISSING else None


class FakeIndexer:
    """The server and its state. Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, docs: Iterable[Dict[str, Any]] = (), *, user: Optional[str] = "mimizuku",
                 password: Optional[str] = "s3cret-Pa55", pit_supported: bool = True,
                 time_field: str = "timestamp", index_prefix: str = "wazuh-alerts-4.x-") -> None:
        self.user, self.password = user, password
        self.pit_supported = pit_supported
        self.time_field = time_field
        self.index_prefix = index_prefix
        self.lock = threading.Lock()
        self.visible: List[_Doc] = []       # searchable now (a new list object at every refresh)
        self.pending: List[_Doc] = []       # indexed but not yet refreshed
        self.pits: Dict[str, Dict[str, Any]] = {}
        self.requests: List[Tuple[str, str, Any]] = []
        self._faults: List[Tuple[str, Any]] = []
        self._expire_after: Optional[int] = None
        self._sorted_cache: Dict[Tuple[int, str], Tuple[List[_Doc], List[_Doc], List[Tuple[Any, ...]]]] = {}
        self._snapshots: Dict[frozenset, List[_Doc]] = {}
        self._ids = itertools.count()
        self.templates: Dict[str, Dict[str, Any]] = {}
        self.ism_policies: Dict[str, Dict[str, Any]] = {}
        self.ism_supported = True
        self.streams: Dict[str, Dict[str, Dict[str, Any]]] = {}
        self.bulk_items: List[int] = []         # the status of every bulk item answered, in order
        self._item_faults: List[Optional[int]] = []
        self.add(docs, visible=True)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> "FakeIndexer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "FakeIndexer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- data ------------------------------------------------------------------------------------------
    def index_for(self, source: Dict[str, Any]) -> str:
        v = _get(source, self.time_field)
        t = _as_ms(v) if v is not _MISSING else None
        day = datetime.fromtimestamp((t or 0) / 1000.0, timezone.utc).strftime("%Y.%m.%d")
        return self.index_prefix + day

    def add(self, docs: Iterable[Dict[str, Any]], visible: bool = True) -> List[str]:
        """Index documents (the ``_source``s); ``visible=False`` keeps them until ``refresh()``."""
        new = []
        for d in docs:
            if "_source" in d and isinstance(d["_source"], dict):
                src, did = d["_source"], d.get("_id")
            else:
                src, did = d, None
            did = did or f"doc{next(self._ids):09d}-{uuid.uuid4().hex[:8]}"
            new.append(_Doc(self.index_for(src), did, src, self.time_field))
        with self.lock:
            if visible:
                self.visible = self.visible + new
                self._changed()
            else:
                self.pending.extend(new)
        return [d.id for d in new]

    def refresh(self) -> None:
        with self.lock:
            if self.pending:
                self.visible = self.visible + self.pending
                self.pending = []
                self._changed()

    def _changed(self) -> None:
        self._sorted_cache.clear()
        self._snapshots.clear()

    def snapshot(self, chosen: set) -> List[_Doc]:
        """The searchable documents of these indices (one list object per state: sorts are cached)."""
        key = frozenset(chosen)
        snap = self._snapshots.get(key)
        if snap is None:
            snap = self._snapshots[key] = [d for d in self.visible if d.index in chosen]
        return snap

    # -- faults ---------------------------------------------------------------------------------------
    def fail_next(self, status: int, times: int = 1, retry_after: Optional[str] = None) -> None:
        with self.lock:
            self._faults.extend([("status", (status, retry_after))] * times)

    def delay_next(self, seconds: float, times: int = 1) -> None:
        with self.lock:
            self._faults.extend([("delay", seconds)] * times)

    def partial_next(self, times: int = 1) -> None:
        with self.lock:
            self._faults.extend([("partial", None)] * times)

    def expire_pits(self) -> None:
        with self.lock:
            self.pits.clear()

    def expire_pit_after(self, searches: int) -> None:
        """Every open PIT disappears after this many more PIT searches."""
        with self.lock:
            self._expire_after = searches

    def fail_items(self, statuses: List[Optional[int]]) -> None:
        """The next bulk items answer these statuses (None: as usual), in order."""
        with self.lock:
            self._item_faults.extend(statuses)

    def stream_docs(self, name: str) -> Dict[str, Dict[str, Any]]:
        with self.lock:
            return dict(self.streams.get(name, {}))

    def _ip_fields(self, name: str) -> List[str]:
        tpl = self.templates.get(name)
        out: List[str] = []

        def walk(props: Dict[str, Any], prefix: str) -> None:
            for k, v in props.items():
                if "properties" in v:
                    walk(v["properties"], prefix + k + ".")
                elif v.get("type") == "ip":
                    out.append(prefix + k)
        if tpl:
            walk(tpl.get("template", {}).get("mappings", {}).get("properties", {}), "")
        return out

    def bulk(self, name: str, raw: bytes) -> Dict[str, Any]:
        """What ``POST /<name>/_bulk`` answers (and does)."""

        lines = [ln for ln in raw.split(b"\n") if ln.strip()]
        if len(lines) % 2:
            raise ValueError("The bulk request must be terminated by a newline [\\n]")
        items: List[Dict[str, Any]] = []
        with self.lock:
            is_stream = any(t.get("data_stream") is not None and fnmatch.fnmatchcase(name, p)
                            for t in self.templates.values() for p in t.get("index_patterns", []))
            ip_fields = self._ip_fields(name)
            store = self.streams.setdefault(name, {})
            for action_line, src_line in zip(lines[0::2], lines[1::2]):
                (op, meta), = json.loads(action_line).items()
                did = meta.get("_id") or uuid.uuid4().hex
                fault = self._item_faults.pop(0) if self._item_faults else None
                res: Dict[str, Any] = {"_index": f".ds-{name}-000001" if is_stream else name, "_id": did}
                src = json.loads(src_line)
                bad_ip = [f for f in ip_fields if _get(src, f) is not _MISSING and not _valid_ip(_get(src, f))]
                if fault is not None:
                    res.update(status=fault, error={"type": "fake_item_fault", "reason": f"injected {fault}"})
                elif is_stream and op != "create":
                    res.update(status=400, error={"type": "illegal_argument_exception", "reason":
                               "only write ops with an op_type of create are allowed in data streams"})
                elif is_stream and "@timestamp" not in src:
                    res.update(status=400, error={"type": "mapper_parsing_exception",
                                                  "reason": "data stream timestamp field [@timestamp] is missing"})
                elif bad_ip:
                    res.update(status=400, error={"type": "mapper_parsing_exception",
                                                  "reason": f"failed to parse field [{bad_ip[0]}] of type [ip]"})
                elif did in store and op == "create":
                    res.update(status=409, error={"type": "version_conflict_engine_exception",
                                                  "reason": f"[{did}]: version conflict, document already exists"})
                else:
                    store[did] = src
                    res.update(status=201, result="created")
                self.bulk_items.append(res["status"])
                items.append({op: res})
        return {"took": 1, "errors": any(i[next(iter(i))]["status"] >= 300 for i in items), "items": items}

    def _take_fault(self) -> Optional[Tuple[str, Any]]:
        with self.lock:
            return self._faults.pop(0) if self._faults else None

    # -- search ---------------------------------------------------------------------------------------
    def _indices(self, pattern: str) -> Tuple[Optional[set], Optional[str]]:
        names = {d.index for d in self.visible}
        chosen: set = set()
        for part in pattern.split(","):
            part = part.strip()
            if not part:
                continue
            if any(c in part for c in "*?"):
                chosen |= {n for n in names if fnmatch.fnmatchcase(n, part)}
            elif part in names:
                chosen.add(part)
            else:
                return None, part
        return chosen, None

    def _sort_keys(self, sort: List[Any]) -> List[Tuple[str, bool]]:
        out = []
        for s in sort or [{"_doc": "asc"}]:
            if isinstance(s, str):
                out.append((s, True))
                continue
            (fname, spec), = s.items()
            order = spec if isinstance(spec, str) else spec.get("order", "asc")
            out.append((fname, order == "asc"))
        return out

    def _key(self, d: _Doc, fields: List[Tuple[str, bool]]) -> Tuple[Any, ...]:
        k: List[Any] = []
        for fname, asc in fields:
            if fname == self.time_field:
                v: Any = d.ts_ms if d.ts_ms is not None else float("inf")
                v = int(v) if v != float("inf") else v
                k.append(v if asc else -v)
            elif fname == "_id":
                k.append(d.id)
            else:
                vals = _values(d.source, fname)
                v = str(vals[0]) if vals else "\uffff"  # missing: last
                k.append(v)
        return tuple(k)

    def _sorted(self, docs: List[_Doc], fields: List[Tuple[str, bool]]) -> Tuple[List[_Doc], List[Tuple[Any, ...]]]:
        ck = (id(docs), json.dumps(fields))
        with self.lock:
            hit = self._sorted_cache.get(ck)
        if hit is not None and hit[0] is docs:  # the entry holds the list: its id is not reused
            return hit[1], hit[2]
        pairs = sorted(((self._key(d, fields), d) for d in docs), key=lambda p: p[0])
        ordered, keys = [d for _, d in pairs], [k for k, _ in pairs]
        with self.lock:
            self._sorted_cache[ck] = (docs, ordered, keys)
        return ordered, keys

    def _match(self, q: Any, d: _Doc) -> bool:
        if not q:
            return True
        (kind, spec), = q.items()
        if kind == "match_all":
            return True
        if kind == "bool":
            for clause in ("must", "filter"):
                cs = spec.get(clause) or []
                cs = cs if isinstance(cs, list) else [cs]
                if not all(self._match(c, d) for c in cs):
                    return False
            mn = spec.get("must_not") or []
            mn = mn if isinstance(mn, list) else [mn]
            if any(self._match(c, d) for c in mn):
                return False
            sh = spec.get("should") or []
            sh = sh if isinstance(sh, list) else [sh]
            if sh:
                need = spec.get("minimum_should_match",
                                0 if (spec.get("must") or spec.get("filter")) else 1)
                if sum(1 for c in sh if self._match(c, d)) < int(need):
                    return False
            return True
        if kind in ("term", "match"):
            (fname, v), = spec.items()
            if isinstance(v, dict):
                v = v.get("value", v.get("query"))
            return str(v) in {str(x) for x in self._field_values(d, fname)}
        if kind == "terms":
            (fname, vs), = spec.items()
            have = {str(x) for x in self._field_values(d, fname)}
            return any(str(v) in have for v in vs)
        if kind == "ids":
            return d.id in set(spec.get("values", []))
        if kind == "exists":
            return bool(self._field_values(d, spec["field"]))
        if kind == "range":
            (fname, r), = spec.items()
            fmt = r.get("format")
            if fname == self.time_field:
                vals = [d.ts_ms] if d.ts_ms is not None else []
            else:
                vals = [_as_ms(x) if not isinstance(x, (int, float)) else x for x in self._field_values(d, fname)]
            for x in vals:
                if x is None:
                    continue
                ok = True
                for op in ("gte", "gt", "lte", "lt"):
                    if op in r:
                        b = _as_ms(r[op], fmt) if fname == self.time_field else float(r[op])
                        ok = ok and {"gte": x >= b, "gt": x > b, "lte": x <= b, "lt": x < b}[op]
                if ok:
                    return True
            return False
        raise ValueError(f"query [{kind}] not supported by the fake")

    def _field_values(self, d: _Doc, fname: str) -> List[Any]:
        if fname == "_id":
            return [d.id]
        if fname == "_index":
            return [d.index]
        return _values(d.source, fname)

    def search(self, docs: List[_Doc], body: Dict[str, Any], pit_id: Optional[str] = None) -> bytes:
        fields = self._sort_keys(body.get("sort"))
        ordered, keys = self._sorted(docs, fields)
        size = int(body.get("size", 10))
        start = 0
        after = body.get("search_after")
        if after is not None:
            if len(after) != len(fields):
                raise ValueError("search_after has %d values but sort has %d" % (len(after), len(fields)))
            ak = tuple(_after_time(a, asc) if f == self.time_field else a for a, (f, asc) in zip(after, fields))
            start = bisect.bisect_right(keys, ak)
        query = body.get("query")
        # sorted by time first: a lower time bound lets us jump, an upper one stop early
        lo = hi = None
        if fields and fields[0] == (self.time_field, True) and isinstance(query, dict):
            lo, hi = self._time_bounds(query)
        if lo is not None:
            start = max(start, bisect.bisect_left(keys, (int(lo) if lo == int(lo) else lo,)))
        out = []
        with_source = body.get("_source", True) is not False
        for i in range(start, len(ordered)):
            d = ordered[i]
            if hi is not None and d.ts_ms is not None and d.ts_ms >= hi:
                break
            if not self._match(query, d):
                continue
            sort_vals = [(v if asc or f != self.time_field else -v) for v, (f, asc) in zip(keys[i], fields)]
            sort_vals = [None if v == "\uffff" else _LONG_MAX if v == float("inf") else
                         _LONG_MIN if v == float("-inf") else v for v in sort_vals]
            parts = [b'{"_index":', json.dumps(d.index).encode(), b',"_id":', json.dumps(d.id).encode(),
                     b',"_score":null']
            if with_source:
                parts += [b',"_source":', d.raw]
            parts += [b',"sort":', json.dumps(sort_vals).encode(), b"}"]
            out.append(b"".join(parts))
            if len(out) >= size:
                break
        head = {"took": 1, "timed_out": False,
                "_shards": {"total": 3, "successful": 3, "skipped": 0, "failed": 0}}
        if pit_id is not None:
            head["pit_id"] = pit_id
        prefix = json.dumps(head)[:-1].encode()
        return (prefix + b',"hits":{"total":{"value":' + str(len(out)).encode() +
                b',"relation":"gte"},"max_score":null,"hits":[' + b",".join(out) + b"]}}")

    def _time_bounds(self, q: Dict[str, Any]) -> Tuple[Optional[float], Optional[float]]:
        """The time range ANDed at the top of a bool filter (what the client sends), if any."""
        b = q.get("bool")
        if not isinstance(b, dict):
            return None, None
        cs = (b.get("filter") or []) + (b.get("must") or [])
        lo = hi = None
        for c in cs if isinstance(cs, list) else [cs]:
            r = c.get("range", {}).get(self.time_field) if isinstance(c, dict) else None
            if r:
                fmt = r.get("format")
                if "gte" in r:
                    lo = _as_ms(r["gte"], fmt)
                if "gt" in r:
                    v = _as_ms(r["gt"], fmt)
                    lo = None if v is None else v + 1e-9
                if "lt" in r:
                    hi = _as_ms(r["lt"], fmt)
                if "lte" in r:
                    v = _as_ms(r["lte"], fmt)
                    hi = None if v is None else v + 1e-9
        return lo, hi


def _handler(fake: FakeIndexer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *a: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def _error(self, status: int, typ: str, reason: str, **extra: Any) -> None:
            err = {"root_cause": [{"type": typ, "reason": reason, **extra}], "type": typ, "reason": reason, **extra}
            self._send(status, {"error": err, "status": status})

        def _body(self) -> Any:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            if self.path.split("?")[0].endswith("/_bulk"):
                return raw   # NDJSON
            return json.loads(raw) if raw else None

        def _auth_ok(self) -> bool:
            if fake.user is None:
                return True
            h = self.headers.get("Authorization", "")
            if h.startswith("Basic "):
                try:
                    u, _, p = base64.b64decode(h[6:]).decode().partition(":")
                except ValueError:
                    return False
                return u == fake.user and p == fake.password
            return False

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def _dispatch(self, method: str) -> None:
            try:
                body = self._body()
            except ValueError:
                return self._error(400, "parse_exception", "request body is not JSON")
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            params = {k: v[0] for k, v in parse_qs(parts.query).items()}
            with fake.lock:
                fake.requests.append((method, path, body))
            fault = fake._take_fault()
            if fault is not None:
                kind, arg = fault
                if kind == "status":
                    status, retry_after = arg
                    if not retry_after:
                        return self._error(status, "fake_fault", f"injected {status}")
                    return self._send(status, {"error": {"type": "too_many_requests", "reason": "injected"},
                                               "status": status}, {"Retry-After": retry_after})
                if kind == "delay":
                    time.sleep(arg)
            if not self._auth_ok():
                # what the security plugin answers
                data = b"Unauthorized"
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="OpenSearch Security"')
                self.send_header("Content-Type", "text/plain; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            try:
                self._route(method, path, params, body, fault)
            except ValueError as e:
                self._error(400, "illegal_argument_exception", str(e))

        def _route(self, method: str, path: str, params: Dict[str, str], body: Any, fault: Any) -> None:
            segs = [s for s in path.split("/") if s]
            if method == "POST" and len(segs) == 3 and segs[1:] == ["_search", "point_in_time"]:
                if not fake.pit_supported:
                    return self._error(400, "illegal_argument_exception",
                                       f"request [{path}] contains unrecognized parameter: [keep_alive]")
                if "keep_alive" not in params:
                    return self._error(400, "action_request_validation_exception", "keep_alive is missing")
                with fake.lock:
                    chosen, missing = fake._indices(segs[0])
                    if chosen is None:
                        return self._error(404, "index_not_found_exception", f"no such index [{missing}]",
                                           index=missing)
                    snap = fake.snapshot(chosen)
                    pid = base64.urlsafe_b64encode(uuid.uuid4().bytes * 3).decode()
                    fake.pits[pid] = {"docs": snap, "expires": time.time() + _keep_alive(params["keep_alive"])}
                return self._send(200, {"pit_id": pid, "_shards": {"total": 3, "successful": 3, "skipped": 0,
                                                                  "failed": 0},
                                        "creation_time": int(time.time() * 1000)})
            if method == "DELETE" and segs == ["_search", "point_in_time"]:
                ids = (body or {}).get("pit_id") or []
                ids = ids if isinstance(ids, list) else [ids]
                res = []
                with fake.lock:
                    for i in ids:
                        res.append({"pit_id": i, "successful": fake.pits.pop(i, None) is not None})
                return self._send(200, {"pits": res})
            if method in ("POST", "GET") and segs == ["_search"]:
                pit = (body or {}).get("pit")
                if not pit:
                    return self._error(400, "action_request_validation_exception", "no index and no pit")
                pid = pit.get("id")
                with fake.lock:
                    if fake._expire_after is not None:
                        fake._expire_after -= 1
                        if fake._expire_after < 0:
                            fake.pits.clear()
                            fake._expire_after = None
                    entry = fake.pits.get(pid)
                    if entry is not None and entry["expires"] < time.time():
                        del fake.pits[pid]
                        entry = None
                    if entry is None:
                        return self._send(404, {
                            "error": {"root_cause": [{"type": "search_context_missing_exception",
                                                      "reason": f"No search context found for id [{abs(hash(pid)) % 1000}]"}],
                                      "type": "search_phase_execution_exception", "reason": "all shards failed",
                                      "phase": "query", "grouped": True}, "status": 404})
                    if "keep_alive" in pit:
                        entry["expires"] = time.time() + _keep_alive(pit["keep_alive"])
                    docs = entry["docs"]
                if fault is not None and fault[0] == "partial":
                    return self._partial(pid)
                return self._send(200, fake.search(docs, body, pit_id=pid))
            if method in ("POST", "GET") and len(segs) == 2 and segs[1] == "_search":
                if (body or {}).get("pit"):
                    return self._error(400, "action_request_validation_exception",
                                       "[indices] cannot be used with point in time")
                with fake.lock:
                    chosen, missing = fake._indices(segs[0])
                    if chosen is None:
                        return self._error(404, "index_not_found_exception", f"no such index [{missing}]",
                                           index=missing)
                    docs = fake.snapshot(chosen)
                if fault is not None and fault[0] == "partial":
                    return self._partial(None)
                return self._send(200, fake.search(docs, body or {}))
            if method == "PUT" and len(segs) == 2 and segs[0] == "_index_template":
                with fake.lock:
                    fake.templates[segs[1]] = body
                return self._send(200, {"acknowledged": True})
            if method == "PUT" and len(segs) == 4 and segs[:3] == ["_plugins", "_ism", "policies"]:
                if not fake.ism_supported:
                    return self._send(400, {"error": f"no handler found for uri [{path}] and method [PUT]",
                                            "status": 400})
                with fake.lock:
                    if segs[3] in fake.ism_policies:
                        return self._error(409, "version_conflict_engine_exception",
                                           f"[{segs[3]}]: version conflict, document already exists")
                    fake.ism_policies[segs[3]] = body
                return self._send(201, {"_id": segs[3], "_version": 1, "policy": body})
            if method == "POST" and len(segs) == 2 and segs[1] == "_bulk":
                return self._send(200, fake.bulk(segs[0], body or b""))
            if method == "GET" and len(segs) == 2 and segs[1] == "_count":
                with fake.lock:
                    if segs[0] not in fake.streams:
                        return self._error(404, "index_not_found_exception", f"no such index [{segs[0]}]")
                    return self._send(200, {"count": len(fake.streams[segs[0]])})
            if method == "GET" and not segs:
                return self._send(200, {"version": {"distribution": "opensearch", "number": "2.19.1"}})
            self._error(400, "illegal_argument_exception", f"no handler for {method} {path}")

        def _partial(self, pid: Optional[str]) -> None:
            resp: Dict[str, Any] = {"took": 1, "timed_out": False,
                                    "_shards": {"total": 3, "successful": 2, "skipped": 0, "failed": 1,
                                                "failures": [{"shard": 1, "index": "wazuh-alerts-4.x-x",
                                                              "reason": {"type": "node_disconnected_exception",
                                                                         "reason": "node left"}}]},
                                    "hits": {"total": {"value": 0, "relation": "eq"}, "max_score": None,
                                             "hits": []}}
            if pid:
                resp["pit_id"] = pid
            self._send(200, resp)

    return Handler


#: the sort value OpenSearch gives a date field a document lacks (asc: Long.MAX_VALUE)
_LONG_MAX, _LONG_MIN = 2 ** 63 - 1, -(2 ** 63)


def _after_time(a: Any, asc: bool) -> Any:
    """A ``search_after`` time value as a sort key (a missing time's Long.MAX/MIN back to inf)."""
    if not isinstance(a, (int, float)) or isinstance(a, bool):
        return a
    v = float("inf") if a in (_LONG_MAX, _LONG_MIN) else int(a)
    return v if asc else -v


def _valid_ip(v: Any) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


def _keep_alive(text: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("ms", "s", "m", "h"):
        if text.endswith(u) and text[: -len(u)].isdigit():
            return int(text[: -len(u)]) * units[u]
    raise ValueError(f"failed to parse keep_alive [{text}]")


def load_export(path: str) -> List[Dict[str, Any]]:
    """The hits of an indexer ``_search`` export, as ``{"_id", "_source"}`` documents."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return [{"_id": h["_id"], "_source": h["_source"]} for h in data["hits"]["hits"]]
