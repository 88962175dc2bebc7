"""A small client for the Wazuh server API (port 55000): JWT login, retries, clear errors.

Used by ``mimizuku check`` (``PUT /logtest``) and by the off-box event sink
(:mod:`mimizuku.delivery.api_sink`, ``POST /events``). Not on the integration's fast path: it imports
``requests``, so nothing there may import this module.

* Credentials come from a root-only JSON file (:data:`DEFAULT_CONFIG`, refused when group/other
  can read or write it or when it belongs to somebody else) and/or the environment
  (``MIMIZUKU_API_URL``, ``MIMIZUKU_API_USER``, ``MIMIZUKU_API_PASSWORD``, ``MIMIZUKU_API_CA``),
  never from the command line. The password and the token never appear in ``repr()``, in log
  lines or in exception messages.
* ``POST /security/user/authenticate`` (HTTP basic) gives a JWT; its ``exp`` claim is read (no
  signature check: the server checks it) and the token is renewed ``renew_margin`` seconds before
  it expires, and once more when a request is answered 401.
* Connection errors, 5xx and 429 are retried with exponential backoff and jitter; a 429's
  ``Retry-After`` (seconds or an HTTP date) is honoured, capped.
* TLS verification is on by default; ``ca_bundle`` names the CA that signed the manager's
  certificate; ``verify=False`` only by explicit choice, and it is logged as a warning.
"""
from __future__ import annotations

import base64
import email.utils
import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from mimizuku.core.hosts import is_loopback

log = logging.getLogger("mimizuku.api")

#: Where ``mimizuku check`` and ``serve --sink api`` look for credentials by default.
DEFAULT_CONFIG = "/var/ossec/etc/mimizuku/api.json"
DEFAULT_URL = "https://localhost:55000"
ENV_URL, ENV_USER, ENV_PASSWORD, ENV_CA = ("MIMIZUKU_API_URL", "MIMIZUKU_API_USER",
                                           "MIMIZUKU_API_PASSWORD", "MIMIZUKU_API_CA")
#: Keys accepted in the JSON credentials file.
CONFIG_KEYS = frozenset({"url", "user", "password", "ca_bundle", "verify", "allow_http"})
#: Wazuh's default token lifetime (``auth_token_exp_timeout``), used when ``exp`` cannot be read.
DEFAULT_TOKEN_LIFETIME = 900.0
AUTH_PATH = "/security/user/authenticate"
MAX_CONFIG_BYTES = 64 * 1024
REDACTED = "***"


# --- errors -------------------------------------------------------------------------------------

class ApiError(Exception):
    """Something went wrong talking to the Wazuh API; ``str()`` says what and what to do."""

    def __init__(self, message: str, *, status: Optional[int] = None, retry_after: Optional[float] = None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class ApiConfigError(ApiError, ValueError):
    """The credentials cannot be used: missing, unsafe file permissions, malformed."""


class AuthenticationFailed(ApiError):
    """401 on ``/security/user/authenticate``: wrong user or password."""


class Forbidden(ApiError):
    """403: the API user lacks a permission (the message names it when the server does)."""


class RateLimited(ApiError):
    """429 after the allowed retries; ``retry_after`` says how long to wait (seconds)."""


class ServerError(ApiError):
    """5xx after the allowed retries."""


class ApiTimeout(ApiError):
    """No answer within the timeout (after the allowed retries)."""


class ApiUnreachable(ApiError):
    """The API could not be reached (connection refused, DNS, reset)."""


class TlsError(ApiError):
    """The server's certificate could not be verified."""


class BadRequest(ApiError):
    """4xx other than 401/403/429: the request itself is wrong (never retried)."""


class BadResponse(ApiError):
    """The answer is not the JSON the API documents."""


# --- credentials --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ApiCredentials:
    """Where the API is and who we are there. ``repr()`` never shows the password."""

    url: str
    user: str
    password: str = field(repr=False)
    ca_bundle: Optional[str] = None
    verify: bool = True
    source: str = "?"
    #: plain http:// to a host other than the loopback, by explicit choice (``check_url``)
    allow_http: bool = False

    def __repr__(self) -> str:
        return (f"ApiCredentials(url={self.url!r}, user={self.user!r}, password={REDACTED!r}, "
                f"ca_bundle={self.ca_bundle!r}, verify={self.verify!r}, source={self.source!r})")

    __str__ = __repr__

    @property
    def tls_verify(self) -> Union[bool, str]:
        """The value for ``requests``' ``verify``: the CA bundle path, True or (explicitly) False."""
        if not self.verify:
            return False
        return self.ca_bundle or True


def check_url(url: str, *, allow_http: bool = False) -> str:
    """An ``https://host[:port]`` base URL without credentials, path suffix stripped of '/'.

    Plain ``http://`` carries the API password in clear: accepted to the loopback (it never leaves
    the host; a warning is logged when the client starts), anywhere else only with ``allow_http``
    (the credentials file's ``"allow_http": true``)."""
    try:
        parts = urlsplit(url)
    except ValueError as e:
        raise ApiConfigError(f"API url {url!r} is not a URL: {e}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ApiConfigError(f"API url {url!r} must look like https://manager:55000")
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise ApiConfigError(f"refusing to send the API password in clear to {parts.hostname} (http://): use "
                             f"https://{parts.netloc} (the Wazuh API's default), or set \"allow_http\": true "
                             f"in the credentials file if the network in between is trusted")
    if parts.username or parts.password:
        raise ApiConfigError("API url must not carry a user or password; put them in the credentials file")
    if parts.query or parts.fragment:
        raise ApiConfigError(f"API url {parts.scheme}://{parts.netloc}{parts.path} must not have a query")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def read_config_file(path: "os.PathLike[str] | str") -> Dict[str, Any]:
    """The JSON credentials file, refused unless only its owner (root or us) can read it.

    Opened without following symlinks and checked on the open descriptor (no race between the
    check and the read).
    """
    from mimizuku.core.private_file import read_private_json

    path = os.fspath(path)
    obj = read_private_json(path, what="API credentials file", limit=MAX_CONFIG_BYTES, error=ApiConfigError)
    unknown = sorted(set(obj) - CONFIG_KEYS)
    if unknown:
        raise ApiConfigError(f"API credentials file {path}: unknown key(s) {unknown}; "
                             f"known: {sorted(CONFIG_KEYS)}")
    for k in ("url", "user", "password", "ca_bundle"):
        if k in obj and obj[k] is not None and not isinstance(obj[k], str):
            raise ApiConfigError(f"API credentials file {path}: {k} must be a string")
    for k in ("verify", "allow_http"):
        if k in obj and not isinstance(obj[k], bool):
            raise ApiConfigError(f"API credentials file {path}: {k} must be true or false")
    return obj


def load_credentials(path: "os.PathLike[str] | str | None" = None, *,
                     env: Optional[Mapping[str, str]] = None,
                     default_path: Optional[str] = DEFAULT_CONFIG) -> ApiCredentials:
    """Credentials from ``path`` (or ``default_path`` when it exists), overridden by the environment.

    An explicitly given ``path`` must exist. Environment variables override single keys, so
    ``MIMIZUKU_API_USER`` + ``MIMIZUKU_API_PASSWORD`` alone are enough (url defaults to
    :data:`DEFAULT_URL`).
    """
    env = os.environ if env is None else env
    conf: Dict[str, Any] = {}
    sources: List[str] = []
    if path is not None:
        conf = read_config_file(path)
        sources.append(os.fspath(path))
    elif default_path and os.path.lexists(default_path):
        conf = read_config_file(default_path)
        sources.append(default_path)
    for key, var in (("url", ENV_URL), ("user", ENV_USER), ("password", ENV_PASSWORD), ("ca_bundle", ENV_CA)):
        v = env.get(var)
        if v:
            conf[key] = v
            if "environment" not in sources:
                sources.append("environment")
    where = " + ".join(sources) or "nowhere"
    if not conf.get("user") or not conf.get("password"):
        raise ApiConfigError(
            f"no Wazuh API credentials (looked in {path or default_path} and the environment): "
            f"write {{\"url\": ..., \"user\": ..., \"password\": ...}} to {path or default_path} "
            f"(mode 600) or set {ENV_USER} and {ENV_PASSWORD}")
    ca = conf.get("ca_bundle") or None
    if ca is not None and not os.path.isfile(ca):
        raise ApiConfigError(f"CA bundle {ca} (from {where}) does not exist or is not a file")
    allow_http = bool(conf.get("allow_http", False))
    return ApiCredentials(url=check_url(conf.get("url") or DEFAULT_URL, allow_http=allow_http), user=str(conf["user"]),
                          password=str(conf["password"]), ca_bundle=ca,
                          verify=bool(conf.get("verify", True)), source=where, allow_http=allow_http)


# --- helpers ------------------------------------------------------------------------------------

def jwt_expiry(token: str) -> Optional[float]:
    """The ``exp`` claim (epoch seconds) of a JWT, read without checking the signature."""
    try:
        payload = token.split(".")[1]
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        exp = json.loads(raw.decode("utf-8")).get("exp")
    except (IndexError, ValueError, AttributeError, UnicodeDecodeError, TypeError):
        return None
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        import datetime as _dt

        when = when.replace(tzinfo=_dt.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _detail(body: Any) -> str:
    """The server's explanation: ``title: detail`` of a problem response, or ``message``."""
    if not isinstance(body, dict):
        return ""
    parts = [str(body[k]) for k in ("title", "detail") if isinstance(body.get(k), (str, int))]
    if not parts and isinstance(body.get("message"), str):
        parts.append(body["message"])
    if isinstance(body.get("remediation"), str):
        parts.append(f"({body['remediation']})")
    return ": ".join(parts[:2]) + (" " + parts[2] if len(parts) > 2 else "")


@dataclass
class EventsResult:
    """What ``POST /events`` did with each event of a batch (by index in the batch)."""

    accepted: List[int]
    failed: List[Tuple[int, int, str]]   # (index, Wazuh error code, message)
    message: str = ""


# --- the client ---------------------------------------------------------------------------------

Timeout = Union[float, Tuple[float, float]]


class WazuhAPI:
    """Client of one Wazuh manager's API on a ``requests.Session``.

    ``retries`` is how many times a failed attempt (connection error, timeout, 5xx, 429) is
    repeated; each call may lower it (``retries=0`` for callers that keep and resend themselves).
    ``sleep`` and ``clock`` (epoch seconds, as the token's ``exp``) are injectable for tests.
    """

    def __init__(self, url: str, user: str, password: str, *, verify: Union[bool, str] = True,
                 timeout: Timeout = (5.0, 30.0), retries: int = 3, backoff: float = 0.5,
                 backoff_max: float = 30.0, retry_after_max: float = 120.0, renew_margin: float = 60.0,
                 session: Any = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time, user_agent: Optional[str] = None,
                 allow_http: bool = False):
        import requests

        self.url = check_url(url, allow_http=allow_http)
        if self.url.startswith("http://"):
            log.warning("the Wazuh API password goes to %s in clear (http://, %s); use https", self.url,
                        "explicitly allowed" if allow_http else "loopback only")
        self.user = user
        self.__password = password
        self.verify = verify
        if verify is False:
            log.warning("TLS certificate verification of %s is DISABLED (verify=false): anybody on the path "
                        "can read the API password; give the manager's CA with ca_bundle instead", self.url)
            try:
                import urllib3

                urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            except Exception:  # pragma: no cover - urllib3 always comes with requests
                pass
        self.timeout = timeout
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.retry_after_max = retry_after_max
        self.renew_margin = renew_margin
        self.sleep = sleep
        self.clock = clock
        self.session = session if session is not None else requests.Session()
        self.session.verify = verify
        self.session.trust_env = False   # no ~/.netrc credentials or proxies from the environment
        if user_agent is None:
            from mimizuku._version import __version__

            user_agent = f"mimizuku/{__version__}"
        self.session.headers["User-Agent"] = user_agent
        self.__token: Optional[str] = None
        self.token_expires: Optional[float] = None
        self.authentications = 0

    @classmethod
    def from_credentials(cls, creds: ApiCredentials, **kw: Any) -> "WazuhAPI":
        return cls(creds.url, creds.user, creds.password, verify=creds.tls_verify, allow_http=creds.allow_http, **kw)

    def __repr__(self) -> str:
        return (f"WazuhAPI(url={self.url!r}, user={self.user!r}, verify={self.verify!r}, "
                f"authenticated={self.__token is not None})")

    __str__ = __repr__

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> "WazuhAPI":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- secrets never leave ----------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in (self.__password, self.__token):
            if secret and len(secret) >= 3:
                text = text.replace(secret, REDACTED)
        return text

    def _error(self, cls: type, message: str, **kw: Any) -> ApiError:
        return cls(self._scrub(message), **kw)

    # -- authentication ---------------------------------------------------------------------------

    @property
    def authenticated(self) -> bool:
        return self.__token is not None

    def token_valid(self) -> bool:
        """A token we may still use for at least ``renew_margin`` seconds."""
        if self.__token is None:
            return False
        return self.token_expires is None or self.token_expires - self.clock() > self.renew_margin

    def authenticate(self) -> None:
        """Log in (``POST /security/user/authenticate``, HTTP basic) and keep the JWT."""
        self.__token = None
        body = self._call("POST", AUTH_PATH, auth=(self.user, self.__password), retries=self.retries,
                          authenticating=True)
        token = body.get("data", {}).get("token") if isinstance(body.get("data"), dict) else None
        if not isinstance(token, str) or not token:
            raise self._error(BadResponse, f"{self.url}{AUTH_PATH} answered without data.token")
        self.__token = token
        exp = jwt_expiry(token)
        self.token_expires = exp if exp is not None else self.clock() + DEFAULT_TOKEN_LIFETIME
        self.authentications += 1
        log.debug("authenticated to %s as %s; token valid for %.0f s", self.url, self.user,
                  self.token_expires - self.clock())

    def forget_token(self) -> None:
        self.__token = None
        self.token_expires = None

    # -- requests ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, json_body: Any = None, params: Optional[Dict[str, Any]] = None,
                retries: Optional[int] = None) -> Dict[str, Any]:
        """One authenticated API call; returns the decoded JSON body or raises an :class:`ApiError`.

        A 401 (token expired or revoked) re-authenticates once and repeats the call once.
        """
        retries = self.retries if retries is None else max(0, int(retries))
        if not self.token_valid():
            self.authenticate()
        try:
            return self._call(method, path, json_body=json_body, params=params, retries=retries)
        except _Unauthorized:
            log.info("token refused by %s (expired or revoked): authenticating again", self.url)
            self.authenticate()
            try:
                return self._call(method, path, json_body=json_body, params=params, retries=retries)
            except _Unauthorized as e:
                raise self._error(AuthenticationFailed, f"{self.url}{path}: the API refused a fresh token "
                                                        f"(401 {e}); check the API user", status=401) from None

    def _delay(self, attempt: int) -> float:
        base = min(self.backoff_max, self.backoff * (2 ** attempt))
        return base / 2 + random.uniform(0, base / 2)

    def _call(self, method: str, path: str, *, json_body: Any = None, params: Optional[Dict[str, Any]] = None,
              auth: Optional[Tuple[str, str]] = None, retries: int = 0, authenticating: bool = False) -> Dict[str, Any]:
        import requests

        url = self.url + path
        attempt = 0
        while True:
            headers = {}
            if not authenticating and self.__token is not None:
                headers["Authorization"] = f"Bearer {self.__token}"
            failure: Optional[ApiError] = None
            wait: Optional[float] = None
            try:
                resp = self.session.request(method, url, json=json_body, params=params, headers=headers,
                                            auth=auth, timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.SSLError as e:
                raise self._error(TlsError, (
                    f"TLS verification of {self.url} failed ({_reason(e)}). The Wazuh API uses a self-signed "
                    f"certificate by default: give its CA with \"ca_bundle\": \"/path/to/root-ca.pem\" in the "
                    f"credentials file or {ENV_CA}=/path/to/root-ca.pem (on the manager the certificate is "
                    f"/var/ossec/api/configuration/ssl/server.crt)")) from None
            except (requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout,
                    requests.exceptions.Timeout) as e:
                failure = self._error(ApiTimeout, f"{method} {url}: no answer within {self._timeout_text()} "
                                                  f"({type(e).__name__})")
            except requests.exceptions.ConnectionError as e:
                failure = self._error(ApiUnreachable, f"{method} {url}: cannot connect ({_reason(e)}); "
                                                      f"is wazuh-apid running and port 55000 reachable?")
            except requests.exceptions.RequestException as e:
                raise self._error(ApiError, f"{method} {url}: {type(e).__name__}: {_reason(e)}") from None
            else:
                status = resp.status_code
                body = _json(resp)
                if 200 <= status < 300:
                    if not isinstance(body, dict):
                        raise self._error(BadResponse, f"{method} {url}: answer is not a JSON object "
                                                       f"(HTTP {status})", status=status)
                    return body
                detail = _detail(body)
                if status == 401:
                    if authenticating:
                        raise self._error(AuthenticationFailed, (
                            f"authentication as {self.user!r} at {self.url} failed (401"
                            f"{': ' + detail if detail else ''}): wrong user or password"), status=401)
                    raise _Unauthorized(self._scrub(detail or "401"))
                if status == 403:
                    hint = detail or "permission denied"
                    what = ("the API refused to issue a token (too many failed logins block the address for "
                            "a while)" if authenticating else "the API user lacks a permission")
                    raise self._error(Forbidden, f"{method} {path}: 403 {hint} -- {what}; "
                                                 f"grant it to {self.user!r} in the Wazuh RBAC settings "
                                                 f"(e.g. event:ingest for /events, logtest:run for /logtest)",
                                      status=403)
                if status == 429:
                    wait = parse_retry_after(resp.headers.get("Retry-After"), self.clock())
                    if wait is not None:
                        wait = min(wait, self.retry_after_max)
                    failure = self._error(RateLimited, (
                        f"{method} {path}: 429 {detail or 'too many requests'}"
                        + (f"; retry after {wait:.0f} s" if wait is not None else "")), status=429, retry_after=wait)
                elif status >= 500:
                    failure = self._error(ServerError, f"{method} {path}: server error {status}"
                                                       f"{': ' + detail if detail else ''}", status=status)
                else:
                    raise self._error(BadRequest, f"{method} {path}: {status} {detail or resp.reason}",
                                      status=status)
            if attempt >= retries:
                raise failure
            delay = wait if wait is not None else self._delay(attempt)
            log.info("%s; retrying in %.1f s (attempt %d of %d)", failure, delay, attempt + 2, retries + 1)
            self.sleep(delay)
            attempt += 1

    def _timeout_text(self) -> str:
        t = self.timeout
        if isinstance(t, tuple):
            return f"{t[0]:g} s to connect / {t[1]:g} s to answer"
        return f"{t:g} s"

    # -- endpoints --------------------------------------------------------------------------------

    def logtest(self, event: str, *, log_format: str = "json", location: str = "mimizuku",
                token: Optional[str] = None) -> Dict[str, Any]:
        """``PUT /logtest``: the ``data`` of the answer (``token``, ``output``, ``alert``, ``messages``,
        ``codemsg``). Pass the returned ``token`` again to stay in the same logtest session."""
        body: Dict[str, Any] = {"event": event, "log_format": log_format, "location": location}
        if token:
            body["token"] = token
        answer = self.request("PUT", "/logtest", json_body=body)
        data = answer.get("data")
        if not isinstance(data, dict):
            raise self._error(BadResponse, "PUT /logtest answered without a data object")
        return data

    def end_logtest_session(self, token: str) -> None:
        """``DELETE /logtest/sessions/{token}`` (best effort: sessions also time out by themselves)."""
        from urllib.parse import quote

        try:
            self.request("DELETE", f"/logtest/sessions/{quote(token, safe='')}", retries=0)
        except ApiError as e:
            log.debug("could not close the logtest session: %s", e)

    def send_events(self, events: Sequence[str], *, retries: Optional[int] = None) -> EventsResult:
        """``POST /events`` (Wazuh 4.6+): at most 100 events; which ones analysisd got and which not.

        The API answers 200 with ``error`` 0 (all), 2 (some) or 1 (none) and lists the events it
        could not forward in ``data.failed_items`` (``{"error": {"code", "message"}, "id": [event...]}``).
        """
        events = list(events)
        if not events:
            return EventsResult([], [])
        if len(events) > 100:
            raise ValueError("POST /events takes at most 100 events per request")
        answer = self.request("POST", "/events", json_body={"events": events}, retries=retries)
        return parse_events_result(events, answer)


class _Unauthorized(Exception):
    """401 on an authenticated call (internal: triggers one re-authentication)."""


def parse_events_result(events: Sequence[str], answer: Mapping[str, Any]) -> EventsResult:
    """Map ``POST /events``' answer back onto the batch's indices.

    Failed items are named by the event text itself; identical events are matched in order.
    Older managers answer ``{"data": {"message": ...}}`` without item lists: all were accepted.
    """
    data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
    failed_items = data.get("failed_items") if isinstance(data.get("failed_items"), list) else []
    fails: Dict[str, List[Tuple[int, str]]] = {}
    for item in failed_items:
        if not isinstance(item, dict):
            continue
        err = item.get("error") if isinstance(item.get("error"), dict) else {}
        code = err.get("code") if isinstance(err.get("code"), int) else 0
        msg = str(err.get("message") or "")[:300]
        ids = item.get("id")
        ids = ids if isinstance(ids, list) else [ids]
        for ev in ids:
            # the API may return the event as sent (a string) or parsed: compare as sent
            key = ev if isinstance(ev, str) else json.dumps(ev, separators=(",", ":"), ensure_ascii=False)
            fails.setdefault(key, []).append((code, msg))
    accepted: List[int] = []
    failed: List[Tuple[int, int, str]] = []
    total_failed = data.get("total_failed_items")
    for i, ev in enumerate(events):
        queue = fails.get(ev)
        if queue:
            code, msg = queue.pop(0)
            failed.append((i, code, msg))
        else:
            accepted.append(i)
    if isinstance(total_failed, int) and total_failed > len(failed) and not failed_items:
        # the server says some failed but does not say which: trust nothing, resend all
        return EventsResult([], [(i, 0, "failed (not itemised by the server)") for i in range(len(events))],
                            str(answer.get("message") or ""))
    return EventsResult(accepted, failed, str(answer.get("message") or ""))


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _reason(exc: BaseException) -> str:
    """The innermost useful reason of a requests/urllib3 exception, on one line."""
    text = str(exc)
    for marker in ("[SSL:", "certificate verify failed", "Connection refused", "Name or service not known",
                   "timed out", "Connection reset", "hostname"):
        i = text.find(marker)
        if i >= 0:
            end = text.find(")", i)
            return text[i: end if end > i else i + 160][:200]
    return " ".join(text.split())[:200]
