"""A stateful stand-in for the Wazuh server API (port 55000), for tests only.

Implements what Mimizuku uses, with the documented shapes (Wazuh 4.x API spec and framework):

* ``POST /security/user/authenticate`` -- HTTP basic; ``{"data": {"token": <JWT>}, "error": 0}``;
  401 on bad credentials. Tokens carry ``exp`` (configurable lifetime); an expired, revoked or
  unknown token gets 401 ``{"title": "Unauthorized", "detail": "Invalid token"}``.
* ``POST /events`` -- ``{"events": [str, ...]}``; more than 100 events -> 400 "Events bulk size
  exceeded"; more than ``events_limit`` requests per ``events_window`` seconds -> 429 (error
  6005), optionally with ``Retry-After``; answers the AffectedItemsWazuhResult shape
  (``affected_items``, ``failed_items`` with ``error.code``/``message`` and ``id`` = the events).
* ``PUT /logtest`` -- ``{"event", "log_format", "location"[, "token"]}``; a new session token when
  none is given; the event is decoded and matched against a rules file with the emulation in
  ``wazuh_emulation.Ruleset`` (Wazuh regex semantics), answering ``output.rule`` with id, level,
  description (``$(field)`` expanded), groups, and ``alert``. ``DELETE /logtest/sessions/{token}``.

Faults are injected per path: an HTTP status for the next N requests (``fail_next``), a delay
(``delay_next``; the request is then processed or dropped), a permission refused (``deny``),
per-event failures on /events (``fail_events``). Everything received is recorded in
:class:`FakeState`, which outlives a server restart on the same port.
"""
from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "wazuh_rules" / "mimizuku_rules.xml"


def _b64(obj: Any) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Fault:
    status: int = 500
    count: int = 1
    retry_after: Optional[str] = None
    body: Optional[Dict[str, Any]] = None


@dataclass
class Delay:
    seconds: float
    count: int = 1
    process: bool = False     # True: do the work, then answer late (the answer may be lost)


@dataclass
class FakeState:
    users: Dict[str, str] = field(default_factory=lambda: {"wazuh-wui": "S3cret.Pass+word"})
    token_lifetime: float = 900.0
    events_limit: int = 30
    events_window: float = 60.0
    events_max: int = 100
    retry_after_header: Optional[str] = None     # sent with the 429 of the rate limit
    rules_path: Path = RULES
    tokens: Dict[str, Tuple[str, float]] = field(default_factory=dict)     # token -> (user, exp)
    issued: List[str] = field(default_factory=list)                       # every token ever issued
    received: List[str] = field(default_factory=list)                     # events forwarded
    event_requests: List[float] = field(default_factory=list)             # times of /events requests
    log: List[Tuple[str, str, int]] = field(default_factory=list)         # (method, path, status)
    headers_seen: List[Dict[str, str]] = field(default_factory=list)
    faults: Dict[str, List[Fault]] = field(default_factory=dict)
    delays: Dict[str, List[Delay]] = field(default_factory=dict)
    denied: Dict[str, str] = field(default_factory=dict)                  # path -> missing action
    event_failures: List[Tuple[Callable[[str], bool], int, str]] = field(default_factory=list)
    refused: List[Callable[[str], bool]] = field(default_factory=list)    # whole request -> 400
    sessions: Dict[str, int] = field(default_factory=dict)
    closed_sessions: List[str] = field(default_factory=list)
    logtest_rules_override: Dict[str, Optional[int]] = field(default_factory=dict)  # severity -> rule id
    lock: threading.Lock = field(default_factory=threading.Lock)

    # -- fault injection ------------------------------------------------------------------------
    def fail_next(self, path: str, status: int = 500, count: int = 1, retry_after: Optional[str] = None,
                  body: Optional[Dict[str, Any]] = None) -> None:
        self.faults.setdefault(path, []).append(Fault(status, count, retry_after, body))

    def delay_next(self, path: str, seconds: float, count: int = 1, process: bool = False) -> None:
        self.delays.setdefault(path, []).append(Delay(seconds, count, process))

    def deny(self, path: str, action: str) -> None:
        self.denied[path] = action

    def fail_events(self, predicate: Callable[[str], bool], code: int = 1014,
                    message: str = "Error communicating with queue") -> None:
        self.event_failures.append((predicate, code, message))

    def refuse_events(self, predicate: Callable[[str], bool]) -> None:
        """A request holding a matching event is refused as a whole (400), like a schema error."""
        self.refused.append(predicate)

    def revoke_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def issue(self, user: str) -> str:
        now = time.time()
        exp = now + self.token_lifetime
        token = ".".join([_b64({"typ": "JWT", "alg": "ES512"}),
                          _b64({"iss": "wazuh", "aud": "Wazuh API REST", "nbf": int(now), "exp": exp,
                                "sub": user, "run_as": False, "rbac_roles": [1], "rbac_mode": "white"}),
                          secrets.token_urlsafe(32)])
        with self.lock:
            self.tokens[token] = (user, exp)
            self.issued.append(token)
        return token

    def _take(self, table: Dict[str, List[Any]], path: str) -> Any:
        with self.lock:
            queue = table.get(path) or []
            if not queue:
                return None
            item = queue[0]
            item.count -= 1
            if item.count <= 0:
                queue.pop(0)
            return item


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # keep test output clean
        pass

    # -- plumbing -------------------------------------------------------------------------------
    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return ValueError

    def _send(self, status: int, obj: Any, headers: Optional[Dict[str, str]] = None) -> None:
        st = self.server.state
        with st.lock:
            st.log.append((self.command, self.path.split("?")[0], status))
        data = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _problem(self, status: int, title: str, detail: str, error: Optional[int] = None,
                 headers: Optional[Dict[str, str]] = None) -> None:
        body: Dict[str, Any] = {"title": title, "detail": detail}
        if error is not None:
            body["error"] = error
        self._send(status, body, headers)

    def _user(self) -> Optional[str]:
        auth = self.headers.get("Authorization") or ""
        if not auth.startswith("Bearer "):
            return None
        st = self.server.state
        with st.lock:
            entry = st.tokens.get(auth[7:])
        if entry is None or entry[1] <= time.time():
            return None
        return entry[0]

    def _dispatch(self) -> None:
        st = self.server.state
        path = self.path.split("?")[0]
        body = self._body()
        with st.lock:
            st.headers_seen.append(dict(self.headers))
        delay = st._take(st.delays, path)
        if delay is not None and not delay.process:
            time.sleep(delay.seconds)
            self.close_connection = True
            return  # dropped: the client times out, nothing was done
        reply = self._route(path, body)
        if delay is not None:
            time.sleep(delay.seconds)   # done, but the answer comes late (may be lost)
        if reply is not None:
            self._send(*reply)

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    # -- routes ---------------------------------------------------------------------------------
    def _route(self, path: str, body: Any) -> Optional[Tuple[int, Any, Dict[str, str]]]:
        st = self.server.state
        fault = st._take(st.faults, path)
        if fault is not None:
            hdr = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            return fault.status, fault.body or {"title": "Internal Server Error" if fault.status >= 500 else "Error",
                                                "detail": f"injected {fault.status}"}, hdr
        if path == "/security/user/authenticate" and self.command in ("POST", "GET"):
            return self._authenticate()
        user = self._user()
        if user is None:
            return 401, {"title": "Unauthorized", "detail": "Invalid token"}, {}
        if path in st.denied:
            return 403, {"title": "Permission Denied", "error": 4000,
                         "detail": "Permission denied: Resource type: *:*",
                         "remediation": f"Please, make sure you have permissions to execute the current "
                                        f"request. Action: {st.denied[path]}"}, {}
        if path == "/events" and self.command == "POST":
            return self._events(body)
        if path == "/logtest" and self.command == "PUT":
            return self._logtest(body)
        if path.startswith("/logtest/sessions/") and self.command == "DELETE":
            token = path.rsplit("/", 1)[1]
            with st.lock:
                st.sessions.pop(token, None)
                st.closed_sessions.append(token)
            return 200, {"data": {"affected_items": [], "total_affected_items": 0}, "message": "Session removed",
                         "error": 0}, {}
        return 404, {"title": "Not Found", "detail": f"{self.command} {path}"}, {}

    def _authenticate(self) -> Tuple[int, Any, Dict[str, str]]:
        st = self.server.state
        auth = self.headers.get("Authorization") or ""
        ok_user = None
        if auth.startswith("Basic "):
            try:
                user, pw = base64.b64decode(auth[6:]).decode("latin1").split(":", 1)
            except (ValueError, UnicodeDecodeError):
                user, pw = "", ""
            if st.users.get(user) == pw and user:
                ok_user = user
        if ok_user is None:
            return 401, {"title": "Unauthorized", "detail": "Invalid credentials"}, {}
        return 200, {"data": {"token": st.issue(ok_user)}, "error": 0}, {}

    def _events(self, body: Any) -> Tuple[int, Any, Dict[str, str]]:
        st = self.server.state
        now = time.time()
        with st.lock:
            st.event_requests.append(now)
            recent = [t for t in st.event_requests if t > now - st.events_window]
        if len(recent) > st.events_limit:
            hdr = {"Retry-After": st.retry_after_header} if st.retry_after_header else {}
            return 429, {"title": "Too Many Requests", "detail": "Maximum number of requests per minute reached",
                         "error": 6005}, hdr
        if not isinstance(body, dict) or not isinstance(body.get("events"), list) \
                or not all(isinstance(e, str) for e in body["events"]):
            return 400, {"title": "Bad Request", "detail": "'events' must be a list of strings"}, {}
        events = body["events"]
        if len(events) > st.events_max:
            return 400, {"title": "Events bulk size exceeded",
                         "detail": "The size of the events bulk is exceeding the limit"}, {}
        if any(pred(ev) for ev in events for pred in st.refused):
            return 400, {"title": "Bad Request", "detail": "invalid event in the request"}, {}
        affected: List[str] = []
        failed: Dict[Tuple[int, str], List[str]] = {}
        for ev in events:
            for pred, code, msg in st.event_failures:
                if pred(ev):
                    failed.setdefault((code, msg), []).append(ev)
                    break
            else:
                affected.append(ev)
        with st.lock:
            st.received.extend(affected)
        n_failed = sum(len(v) for v in failed.values())
        error = 0 if not n_failed else (1 if not affected else 2)
        msg = {0: "All events were forwarded to analisysd", 2: "Some events were forwarded to analisysd",
               1: "No events were forwarded to analisysd"}[error]
        return 200, {"data": {"affected_items": affected, "total_affected_items": len(affected),
                              "total_failed_items": n_failed,
                              "failed_items": [{"error": {"code": c, "message": m, "remediation": ""}, "id": ids}
                                               for (c, m), ids in failed.items()]},
                     "message": msg, "error": error}, {}

    def _logtest(self, body: Any) -> Tuple[int, Any, Dict[str, str]]:
        from wazuh_emulation import Ruleset, parse_queue_message

        st = self.server.state
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("event", "log_format", "location")):
            return 400, {"title": "Bad Request", "detail": "event, log_format and location are required"}, {}
        messages: List[str] = []
        token = body.get("token")
        codemsg = 0
        with st.lock:
            if not token or token not in st.sessions:
                if token:
                    messages.append(f"WARNING: (7309): '{token}' is not a valid token")
                token = secrets.token_hex(4)
                st.sessions[token] = 0
                messages.append(f"INFO: (7202): Session initialized with token '{token}'")
                codemsg = 1
            st.sessions[token] += 1
        loc = body["location"].replace("|", "||").replace(":", "|:")
        ev = parse_queue_message(f"1:{loc}:{body['event']}".encode())
        if body["log_format"] != "json":
            ev.decoder = None
        output: Dict[str, Any] = {"timestamp": "2025-01-01T00:00:00.000000Z", "full_log": body["event"],
                                  "location": body["location"], "agent": {"id": "000", "name": "manager"},
                                  "manager": {"name": "manager"}, "id": "1735689600.0"}
        if ev.decoder:
            output["decoder"] = {"name": "json"}
            output["data"] = ev.payload
        alert = False
        ruleset = Ruleset(st.rules_path)
        rule = ruleset.match(ev)
        sev = (ev.fields.get("mimizuku.severity") if isinstance(ev.fields.get("mimizuku.severity"), str) else None)
        if sev in st.logtest_rules_override:   # a "manager" whose rules differ from ours
            rid = st.logtest_rules_override[sev]
            rule = ruleset.rules.get(rid) if rid is not None else None
        if rule is not None:
            output["rule"] = {"id": str(rule.id), "level": rule.level, "description": ruleset.description(rule, ev),
                              "groups": rule.groups, "firedtimes": 1, "mail": False}
            alert = rule.level >= 3
        return 200, {"error": 0, "data": {"token": token, "messages": messages, "output": output,
                                          "alert": alert, "codemsg": codemsg}}, {}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    state: FakeState

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.connections: List[Any] = []

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections.append(request)
        super().process_request(request, client_address)

    def sever(self) -> None:
        """Cut every open (keep-alive) connection, as a dying server does."""
        for conn in self.connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                conn.close()
            except OSError:
                pass
        self.connections.clear()


class FakeWazuhAPI:
    """The fake on 127.0.0.1 (port 0 = any free one); ``tls`` = (certfile, keyfile) for HTTPS."""

    def __init__(self, state: Optional[FakeState] = None, port: int = 0,
                 tls: Optional[Tuple[str, str]] = None):
        self.state = state or FakeState()
        self.tls = tls
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.state = self.state
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._server.sever()
        self._thread.join(5)

    def __enter__(self) -> "FakeWazuhAPI":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def self_signed_cert(directory: Path, host: str = "127.0.0.1") -> Tuple[str, str]:
    """A CA-less self-signed certificate for ``host`` (``cryptography`` required): (cert, key) paths."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-wazuh-manager")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host)),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)
