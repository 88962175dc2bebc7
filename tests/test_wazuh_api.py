"""The Wazuh API client against a local fake of the API: login, token renewal, every failure mode,
credentials handling (file permissions, environment) and secrets kept out of logs and errors."""
from __future__ import annotations

import json
import logging
import os
import socket
import time

import pytest
from fake_wazuh_api import FakeWazuhAPI, self_signed_cert

from mimizuku.delivery import wazuh_api as W

USER, PASSWORD = "wazuh-wui", "S3cret.Pass+word"


@pytest.fixture
def fake():
    with FakeWazuhAPI() as f:
        yield f


class Sleeps(list):
    def __call__(self, seconds):
        self.append(seconds)


def client(fake, **kw):
    kw.setdefault("sleep", Sleeps())
    kw.setdefault("backoff", 0.01)
    return W.WazuhAPI(fake.url, USER, kw.pop("password", PASSWORD), **kw)


def secrets_of(fake):
    return [PASSWORD] + list(fake.state.issued)


# --- login and tokens ------------------------------------------------------------------------------

def test_authenticates_once_and_reuses_the_token(fake):
    api = client(fake)
    for i in range(3):
        assert api.send_events([json.dumps({"n": i})]).accepted == [0]
    assert api.authentications == 1
    assert fake.state.log.count(("POST", "/security/user/authenticate", 200)) == 1
    user, exp = next(iter(fake.state.tokens.values()))
    assert api.token_expires == pytest.approx(exp)   # read from the JWT's exp claim


def test_token_is_renewed_before_it_expires(fake):
    offset = [0.0]
    api = client(fake, clock=lambda: time.time() + offset[0], renew_margin=60)
    api.send_events(["{}"])
    offset[0] = 900 - 30        # 30 s left, less than the 60 s margin
    api.send_events(["{}"])
    assert api.authentications == 2
    assert not [x for x in fake.state.log if x[2] == 401]   # renewed before, never refused


def test_an_expired_token_is_refused_and_renewed_once(fake):
    fake.state.token_lifetime = 0.3
    # the client's clock lags the server's: it believes the token is still good and uses it
    api = client(fake, renew_margin=0, clock=lambda: time.time() - 100)
    api.send_events(["{}"])
    time.sleep(0.35)
    assert api.send_events(["{}"]).accepted == [0]
    assert ("POST", "/events", 401) in fake.state.log
    assert api.authentications == 2
    assert len(fake.state.received) == 2


def test_a_revoked_token_is_renewed_and_the_call_repeated_once(fake):
    api = client(fake)
    api.send_events(["{}"])
    fake.state.revoke_tokens()
    assert api.send_events(['{"b":1}']).accepted == [0]
    assert fake.state.received == ["{}", '{"b":1}']


def test_wrong_password_is_a_clear_authentication_error_without_the_password(fake):
    api = client(fake, password="not-the-Password!")
    with pytest.raises(W.AuthenticationFailed) as e:
        api.send_events(["{}"])
    assert "wrong user or password" in str(e.value) and e.value.status == 401
    assert "not-the-Password!" not in str(e.value) and "not-the-Password!" not in repr(e.value)
    assert fake.state.received == []


def test_jwt_expiry_reads_exp_and_tolerates_garbage():
    import base64

    payload = base64.urlsafe_b64encode(json.dumps({"exp": 1700000000}).encode()).rstrip(b"=").decode()
    assert W.jwt_expiry(f"x.{payload}.sig") == 1700000000
    for bad in ("", "abc", "a.!!!.c", "a.e30.c", f"a.{base64.urlsafe_b64encode(b'[1]').decode()}.c"):
        assert W.jwt_expiry(bad) is None


# --- failures ----------------------------------------------------------------------------------------

def test_forbidden_names_the_missing_permission(fake):
    fake.state.deny("/events", "event:ingest")
    with pytest.raises(W.Forbidden) as e:
        client(fake).send_events(["{}"])
    assert "event:ingest" in str(e.value) and "403" in str(e.value)


def test_429_honours_retry_after_seconds_then_succeeds(fake):
    fake.state.fail_next("/events", 429, retry_after="2")
    sleeps = Sleeps()
    assert client(fake, sleep=sleeps).send_events(["{}"]).accepted == [0]
    assert sleeps == [2.0]
    assert fake.state.received == ["{}"]


def test_429_retry_after_is_capped_and_reported_when_retries_run_out(fake):
    fake.state.fail_next("/events", 429, count=5, retry_after="9999")
    sleeps = Sleeps()
    api = client(fake, sleep=sleeps, retries=1, retry_after_max=7)
    with pytest.raises(W.RateLimited) as e:
        api.send_events(["{}"])
    assert sleeps == [7] and e.value.retry_after == 7 and e.value.status == 429
    assert fake.state.received == []


def test_retry_after_as_http_date():
    now = 1_700_000_000.0
    date = "Tue, 14 Nov 2023 22:13:40 GMT"      # now + 20 s
    assert W.parse_retry_after(date, now) == pytest.approx(20.0)
    assert W.parse_retry_after("3", now) == 3.0
    assert W.parse_retry_after("soon", now) is None and W.parse_retry_after(None) is None


def test_5xx_is_retried_with_growing_jittered_backoff(fake):
    fake.state.fail_next("/events", 503, count=3)
    sleeps = Sleeps()
    api = client(fake, sleep=sleeps, retries=3, backoff=1.0)
    assert api.send_events(["{}"]).accepted == [0]
    assert len(sleeps) == 3
    for attempt, s in enumerate(sleeps):
        assert 2 ** attempt / 2 <= s <= 2 ** attempt   # half fixed, half random
    assert fake.state.received == ["{}"]


def test_5xx_after_the_last_retry_is_a_server_error(fake):
    fake.state.fail_next("/events", 502, count=10)
    with pytest.raises(W.ServerError) as e:
        client(fake, retries=2).send_events(["{}"])
    assert "502" in str(e.value)
    assert [x[2] for x in fake.state.log if x[1] == "/events"] == [502, 502, 502]


def test_timeout_is_retried_then_reported(fake):
    fake.state.delay_next("/events", 0.6, count=1)
    api = client(fake, timeout=(2.0, 0.2), retries=1)
    assert api.send_events(["{}"]).accepted == [0]
    fake.state.delay_next("/events", 0.6, count=2)
    with pytest.raises(W.ApiTimeout) as e:
        api.send_events(["{}"])
    assert "no answer" in str(e.value)


def test_connection_refused_is_unreachable():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    api = W.WazuhAPI(f"http://127.0.0.1:{port}", USER, PASSWORD, retries=1, backoff=0.01, sleep=Sleeps())
    with pytest.raises(W.ApiUnreachable) as e:
        api.send_events(["{}"])
    assert "cannot connect" in str(e.value)


def test_more_than_100_events_are_refused_before_sending(fake):
    with pytest.raises(ValueError):
        client(fake).send_events(["{}"] * 101)
    assert not [x for x in fake.state.log if x[1] == "/events"]


def test_bad_request_is_not_retried(fake):
    fake.state.fail_next("/events", 400, count=3, body={"title": "Bad Request", "detail": "nope"})
    with pytest.raises(W.BadRequest):
        client(fake, retries=3).send_events(["{}"])
    assert [x[2] for x in fake.state.log if x[1] == "/events"] == [400]


def test_partial_failure_is_mapped_to_indices(fake):
    fake.state.fail_events(lambda e: '"bad"' in e, code=1014)
    events = ['{"a":1}', '{"x":"bad"}', '{"a":2}', '{"x":"bad"}']
    r = client(fake).send_events(events)
    assert r.accepted == [0, 2]
    assert [(i, c) for i, c, _ in r.failed] == [(1, 1014), (3, 1014)]
    assert fake.state.received == ['{"a":1}', '{"a":2}']


def test_events_result_without_item_lists_means_all_forwarded():
    r = W.parse_events_result(["a", "b"], {"data": {"message": "The events were forwarded to analisysd"}, "error": 0})
    assert r.accepted == [0, 1] and r.failed == []


# --- TLS -----------------------------------------------------------------------------------------------

@pytest.fixture
def tls_fake(tmp_path):
    pytest.importorskip("cryptography", reason="the TLS test generates a certificate with cryptography")
    cert, key = self_signed_cert(tmp_path)
    with FakeWazuhAPI(tls=(cert, key)) as f:
        yield f, cert


def test_tls_is_verified_by_default_and_the_error_says_how_to_fix_it(tls_fake):
    fake, cert = tls_fake
    api = W.WazuhAPI(fake.url, USER, PASSWORD, retries=0)
    with pytest.raises(W.TlsError) as e:
        api.send_events(["{}"])
    assert "ca_bundle" in str(e.value) and W.ENV_CA in str(e.value)
    assert fake.state.received == []


def test_tls_with_the_ca_bundle_works(tls_fake):
    fake, cert = tls_fake
    api = W.WazuhAPI(fake.url, USER, PASSWORD, verify=cert)
    assert api.send_events(["{}"]).accepted == [0]


def test_tls_verification_off_only_explicitly_and_with_a_warning(tls_fake, caplog):
    fake, cert = tls_fake
    with caplog.at_level(logging.WARNING, logger="mimizuku.api"):
        api = W.WazuhAPI(fake.url, USER, PASSWORD, verify=False)
    assert "DISABLED" in caplog.text
    assert api.send_events(["{}"]).accepted == [0]


# --- credentials ----------------------------------------------------------------------------------------

def write_conf(path, obj, mode=0o600):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    os.chmod(path, mode)
    return path


CONF = {"url": "https://manager.example:55000", "user": USER, "password": PASSWORD}


def test_credentials_file_readable_by_others_is_refused(tmp_path):
    for mode in (0o644, 0o640, 0o604, 0o620):
        p = write_conf(tmp_path / "api.json", CONF, mode)
        with pytest.raises(W.ApiConfigError) as e:
            W.load_credentials(p, env={})
        assert "chmod 600" in str(e.value) and PASSWORD not in str(e.value)
    p = write_conf(tmp_path / "api.json", CONF, 0o600)
    c = W.load_credentials(p, env={})
    assert (c.url, c.user, c.password) == (CONF["url"], USER, PASSWORD)


def test_credentials_file_owned_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the file to another user")
    p = write_conf(tmp_path / "api.json", CONF)
    os.chown(p, 65534, 65534)
    with pytest.raises(W.ApiConfigError) as e:
        W.load_credentials(p, env={})
    assert "belongs to uid 65534" in str(e.value)


def test_credentials_file_symlink_is_refused(tmp_path):
    real = write_conf(tmp_path / "real.json", CONF)
    link = tmp_path / "api.json"
    link.symlink_to(real)
    with pytest.raises(W.ApiConfigError):
        W.load_credentials(link, env={})


def test_credentials_file_errors_never_quote_the_password(tmp_path):
    p = write_conf(tmp_path / "api.json", '{"user": "u", "password": "' + PASSWORD + '",,}')
    with pytest.raises(W.ApiConfigError) as e:
        W.load_credentials(p, env={})
    assert PASSWORD not in str(e.value)
    p = write_conf(tmp_path / "api.json", dict(CONF, pasword=PASSWORD))
    with pytest.raises(W.ApiConfigError) as e:
        W.load_credentials(p, env={})
    assert "pasword" in str(e.value) and PASSWORD not in str(e.value)


def test_environment_overrides_and_suffices(tmp_path):
    env = {W.ENV_USER: "env-user", W.ENV_PASSWORD: "env-pass", W.ENV_URL: "https://10.0.0.1:55000"}
    c = W.load_credentials(None, env=env, default_path=str(tmp_path / "missing.json"))
    assert (c.url, c.user, c.password, c.source) == ("https://10.0.0.1:55000", "env-user", "env-pass", "environment")
    p = write_conf(tmp_path / "api.json", CONF)
    c = W.load_credentials(p, env={W.ENV_PASSWORD: "other"})
    assert (c.user, c.password) == (USER, "other") and "environment" in c.source


def test_missing_credentials_say_where_to_put_them(tmp_path):
    with pytest.raises(W.ApiConfigError) as e:
        W.load_credentials(None, env={}, default_path=str(tmp_path / "api.json"))
    assert W.ENV_USER in str(e.value) and "api.json" in str(e.value)
    with pytest.raises(W.ApiConfigError):
        W.load_credentials(tmp_path / "explicit-but-missing.json", env={})


def test_url_with_credentials_or_wrong_scheme_is_refused(tmp_path):
    for url in ("https://admin:pw@manager:55000", "ftp://manager", "manager:55000"):
        p = write_conf(tmp_path / "api.json", dict(CONF, url=url))
        with pytest.raises(W.ApiConfigError):
            W.load_credentials(p, env={})


def test_plain_http_is_refused_beyond_the_loopback_unless_allowed(tmp_path, caplog):
    """issue 17, item 8: the password in clear over http:// only where it never leaves the host,
    or by explicit choice; a warning either way."""
    p = write_conf(tmp_path / "api.json", dict(CONF, url="http://manager.example:55000"))
    with pytest.raises(W.ApiConfigError) as e:
        W.load_credentials(p, env={})
    assert "in clear" in str(e.value) and "allow_http" in str(e.value) and PASSWORD not in str(e.value)
    with pytest.raises(W.ApiConfigError):
        W.WazuhAPI("http://10.0.0.5:55000", USER, PASSWORD)
    p = write_conf(tmp_path / "api.json", dict(CONF, url="http://manager.example:55000", allow_http=True))
    c = W.load_credentials(p, env={})
    assert c.allow_http and c.url == "http://manager.example:55000"
    with caplog.at_level(logging.WARNING):
        W.WazuhAPI.from_credentials(c)
        W.WazuhAPI("http://127.0.0.1:55000", USER, PASSWORD)
        W.WazuhAPI("http://[::1]:55000", USER, PASSWORD)
    assert sum("in clear" in r.getMessage() for r in caplog.records) == 3
    p = write_conf(tmp_path / "api.json", dict(CONF, allow_http="yes"))
    with pytest.raises(W.ApiConfigError, match="allow_http must be true or false"):
        W.load_credentials(p, env={})


def test_repr_never_shows_the_password_or_token(fake):
    c = W.ApiCredentials(url=fake.url, user=USER, password=PASSWORD)
    assert PASSWORD not in repr(c) and PASSWORD not in str(c)
    api = W.WazuhAPI.from_credentials(c)
    api.send_events(["{}"])
    assert fake.state.issued
    for secret in secrets_of(fake):
        assert secret not in repr(api) and secret not in str(api)


def test_secrets_never_reach_logs_or_errors(fake, caplog):
    errors = []
    with caplog.at_level(logging.DEBUG):
        api = client(fake, retries=1, renew_margin=0)
        api.send_events(["{}"])
        fake.state.revoke_tokens()
        fake.state.fail_next("/events", 503, count=5)
        for call in (lambda: api.send_events(["{}"]),
                     lambda: client(fake, password="wrong-Pass-123").send_events(["{}"])):
            try:
                call()
            except W.ApiError as e:
                errors.append(str(e) + repr(e))
    assert len(errors) == 2
    text = caplog.text + "\n".join(errors)
    for secret in secrets_of(fake) + ["wrong-Pass-123"]:
        assert secret not in text
    import base64

    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in text
