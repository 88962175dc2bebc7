"""`mimizuku retrain --dask`: only a mutual-TLS cluster, or an explicit --dask-insecure (issue 17, item 2).

The job runs as root and unpickles what Dask workers return; over plain tcp:// anyone who can
reach the scheduler can register a worker. Here: tcp:// (and a bare host:port) is refused before
anything connects; tls:// without the three files, or with a key others may read, is refused;
--dask-insecure runs with a loud warning; a real mutual-TLS LocalCluster (certificates made with
``cryptography``) trains end to end; a worker or client without a certificate of the cluster's
CA cannot join.
"""
from __future__ import annotations

import asyncio
import datetime
import socket
from pathlib import Path

import pytest
import retrain_trees as T

from mimizuku.nightly.cli import main

distributed = pytest.importorskip("distributed")
x509 = pytest.importorskip("cryptography.x509")

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

ALERTS = T.fleet(days=4, scale=0.02)
DAYS = T.days_of(ALERTS)
LAST = DAYS[-1]


# --- certificates ------------------------------------------------------------------------------

def _name(cn: str):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(cn: str, ca_key=None, ca_name=None, *, ca: bool = False):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_name or _name(cn))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(cn), x509.DNSName("localhost")]), critical=False))
    cert = b.sign(ca_key or key, hashes.SHA256())
    return key, cert


def _write_pki(d: Path, prefix: str = "") -> dict:
    """A CA, the scheduler's and workers' certificate and the job's client certificate, as files
    (keys 0600)."""
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _issue(f"{prefix}mimizuku-dask-ca", ca=True)
    files = {"ca": d / "ca.pem"}
    files["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    for role in ("node", "client"):
        key, cert = _issue(f"{prefix}{role}", ca_key, ca_cert.subject)
        files[f"{role}_cert"] = d / f"{role}.pem"
        files[f"{role}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{role}_key"] = d / f"{role}.key"
        files[f"{role}_key"].write_bytes(_key_pem(key))
        files[f"{role}_key"].chmod(0o600)
    return files


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _write_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_cluster(pki):
    """A scheduler and two in-process workers that speak only mutual TLS (their certificate
    from the cluster's CA, and they demand one from every peer)."""
    from distributed.security import Security

    sec = Security(require_encryption=True, tls_ca_file=str(pki["ca"]),
                   tls_scheduler_cert=str(pki["node_cert"]), tls_scheduler_key=str(pki["node_key"]),
                   tls_worker_cert=str(pki["node_cert"]), tls_worker_key=str(pki["node_key"]),
                   tls_client_cert=str(pki["node_cert"]), tls_client_key=str(pki["node_key"]))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, protocol="tls://",
                                  host="127.0.0.1", security=sec, dashboard_address=None) as c:
        assert c.scheduler_address.startswith("tls://")
        yield c


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    d = tmp_path_factory.mktemp("tree") / "wazuh"
    T.write_tree(d, ALERTS)
    return d


def _retrain(capfd, home: Path, *extra: str):
    capfd.readouterr()
    code = main(["retrain", "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--summary-json",
                 "--max-rate-ratio", "1000", "--days", str(len(DAYS)), *extra])
    out, err = capfd.readouterr()
    return code, T.summary_of(out.encode()), err


def _tls_options(pki) -> list:
    return ["--dask-tls-ca", str(pki["ca"]), "--dask-tls-cert", str(pki["client_cert"]),
            "--dask-tls-key", str(pki["client_key"])]


# --- refused before connecting -------------------------------------------------------------------

class Doorbell:
    """A listening socket that counts (and at once closes) every connection made to it."""

    def __init__(self) -> None:
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.knocks = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.knocks += 1
            conn.close()

    def close(self) -> int:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()
        return self.knocks


@pytest.fixture
def doorbell():
    d = Doorbell()
    yield d
    d.close()


@pytest.mark.parametrize("form", ["tcp://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_plain_tcp_is_refused_before_anything_connects(tree, capfd, doorbell, form):
    """Without --dask-insecure: exit 2 (usage), a message that says why and what to do, and not
    one connection to the address."""
    addr = form.format(port=doorbell.port)
    code, s, _ = _retrain(capfd, tree, "--dask", addr, "--dask-timeout", "2")
    assert doorbell.close() == 0  # nothing connected
    assert code == 2 and s["exit_code"] == 2 and s["status"] == "failed", s
    assert "neither encrypted nor authenticated" in s["error"] and "--dask-insecure" in s["error"]
    assert "tls://" in s["error"]
    assert not (tree / "mimizuku" / "models" / "versions").exists() or \
        not any((tree / "mimizuku" / "models" / "versions").iterdir())


def test_the_environment_scheduler_is_held_to_the_same_rule(tree, capfd, monkeypatch):
    monkeypatch.setenv("MIMIZUKU_DASK_SCHEDULER", f"tcp://127.0.0.1:{_closed_port()}")
    code, s, _ = _retrain(capfd, tree, "--dask-timeout", "2")
    assert code == 2 and "neither encrypted nor authenticated" in s["error"]


def test_tls_without_the_certificates_is_refused(tree, tmp_path, capfd, pki):
    code, s, _ = _retrain(capfd, tree, "--dask", "tls://127.0.0.1:1")
    assert code == 2 and "needs mutual TLS" in s["error"], s
    # the defaults under <wazuh-home>/etc/mimizuku/dask/ are named
    assert str(tree / "etc" / "mimizuku" / "dask" / "ca.pem") in s["error"]
    assert "--dask-tls-key" in s["error"]
    code, s, _ = _retrain(capfd, tree, "--dask", "tls://127.0.0.1:1", "--dask-tls-ca", str(pki["ca"]),
                          "--dask-tls-cert", str(pki["client_cert"]), "--dask-tls-key", str(tmp_path / "nope"))
    assert code == 2 and f"--dask-tls-key {tmp_path / 'nope'}" in s["error"]


def test_the_client_key_is_read_as_a_secret(tree, tmp_path, capfd, pki):
    key = tmp_path / "client.key"
    key.write_bytes(pki["client_key"].read_bytes())
    key.chmod(0o644)
    args = ["--dask", "tls://127.0.0.1:1", "--dask-tls-ca", str(pki["ca"]), "--dask-tls-cert",
            str(pki["client_cert"]), "--dask-tls-key", str(key)]
    code, s, _ = _retrain(capfd, tree, *args)
    assert code == 2 and "readable or writable by group or others" in s["error"], s
    assert "PRIVATE KEY" not in s["error"]
    key.chmod(0o600)
    key.write_bytes(b"/etc/ssl/private/other.key")  # Dask would take a one-line value as a path
    code, s, _ = _retrain(capfd, tree, *args)
    assert code == 2 and "is not a PEM private key" in s["error"], s


def test_the_library_refuses_tcp_without_tls_too(tree, doorbell):
    """PartitionedFit used directly (not through the command): the same rule, before connecting."""
    from mimizuku.nightly.partitions import DaskUnavailable, PartitionedFit

    with pytest.raises(DaskUnavailable, match="without mutual TLS"):
        PartitionedFit(None, {}, dask_timeout=2).fit(str(tree), days=len(DAYS) + 1,
                                                     dask=f"tcp://127.0.0.1:{doorbell.port}")
    assert doorbell.close() == 0


# --- allowed ---------------------------------------------------------------------------------------

def test_dask_insecure_runs_with_a_loud_warning(tree, tmp_path, capfd):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(tree, home)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                                  host="127.0.0.1", dashboard_address=None) as c:
        assert c.scheduler_address.startswith("tcp://")
        code, s, _ = _retrain(capfd, home, "--dask", c.scheduler_address, "--dask-insecure")
    assert code == 0, s
    assert s["counts"]["dask"]["workers"] == 1
    assert any("--dask-insecure" in w and "WITHOUT encryption" in w for w in s["warnings"]), s
    log = (home / "logs" / "mimizuku" / "retrain.log").read_text()
    assert "WARNING: --dask-insecure" in log  # the log (and stderr: fd 2 is the log in --summary-json)


def test_dask_insecure_warning_reaches_stderr(tree, tmp_path, capfd):
    """Without --summary-json the warning is on stderr (and a refused run is still exit 2 there)."""
    capfd.readouterr()
    code = main(["retrain", "--wazuh-home", str(tree), "--day", LAST, "--no-batch", "--days", str(len(DAYS)),
                 "--dask", f"tcp://127.0.0.1:{_closed_port()}", "--dask-insecure", "--dask-timeout", "1",
                 "--log-file", str(tmp_path / "r.log")])
    _, err = capfd.readouterr()
    assert code == 3  # nothing listens: exit 3 as before, after the warning
    assert "WARNING: --dask-insecure" in err and "WITHOUT encryption" in err


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mutual_tls_cluster_trains_end_to_end(tree, tmp_path, capfd, pki, tls_cluster):
    import shutil

    local, dask = tmp_path / "local", tmp_path / "dask"
    shutil.copytree(tree, local)
    shutil.copytree(tree, dask)
    code_l, s_l, _ = _retrain(capfd, local)
    code_d, s_d, _ = _retrain(capfd, dask, "--dask", tls_cluster.scheduler_address, *_tls_options(pki))
    assert code_l == code_d == 0, (s_l, s_d)
    assert s_d["counts"]["dask"]["partitions"] == len(DAYS) and s_d["counts"]["dask"]["workers"] >= 1
    assert not any("insecure" in w for w in s_d.get("warnings", []))
    assert s_d["counts"]["trained"] == s_l["counts"]["trained"]
    assert s_d["counts"]["alerts_read"] == s_l["counts"]["alerts_read"] == len(ALERTS)


def test_default_certificate_paths_under_the_wazuh_home(tree, tmp_path, capfd, pki, tls_cluster):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(tree, home)
    d = home / "etc" / "mimizuku" / "dask"
    d.mkdir(parents=True)
    for src, dst in (("ca", "ca.pem"), ("client_cert", "client.pem"), ("client_key", "client.key")):
        (d / dst).write_bytes(pki[src].read_bytes())
    (d / "client.key").chmod(0o600)
    code, s, _ = _retrain(capfd, home, "--dask", tls_cluster.scheduler_address)
    assert code == 0 and s["counts"]["dask"]["workers"] >= 1, s


# --- who cannot join ---------------------------------------------------------------------------------

def test_a_client_of_another_ca_cannot_reach_the_scheduler(tree, tmp_path, capfd, tls_cluster):
    """The job with a certificate the cluster's CA did not sign: the TLS handshake fails, exit 3."""
    other = _write_pki(tmp_path / "other", prefix="rogue-")
    code, s, _ = _retrain(capfd, tree, "--dask", tls_cluster.scheduler_address, "--dask-timeout", "3",
                          "--dask-tls-ca", str(other["ca"]), "--dask-tls-cert", str(other["client_cert"]),
                          "--dask-tls-key", str(other["client_key"]))
    assert code == 3 and "cannot reach the Dask scheduler" in s["error"], s


def _join(address: str, sec) -> set:
    """Start a worker against ``address``; the workers the scheduler saw while it ran."""
    from distributed import Worker

    async def join() -> set:
        w = Worker(address, security=sec, nthreads=1, dashboard=False)
        try:
            await asyncio.wait_for(w.start(), 5)
            return {w.address}
        finally:
            await w.close(timeout=2)

    return asyncio.run(join())


def test_a_worker_of_another_ca_cannot_join(tmp_path, pki, tls_cluster):
    """A worker whose certificate another CA signed is not registered, and one with the
    cluster's certificate is (the refusal is the certificate's doing)."""
    from distributed.security import Security

    other = _write_pki(tmp_path / "other", prefix="rogue-")
    rogue = Security(require_encryption=True, tls_ca_file=str(pki["ca"]),  # trusts the scheduler
                     tls_worker_cert=str(other["node_cert"]), tls_worker_key=str(other["node_key"]))
    before = set(tls_cluster.scheduler_info["workers"])
    with pytest.raises((OSError, TimeoutError, asyncio.TimeoutError)):
        _join(tls_cluster.scheduler_address, rogue)
    assert set(tls_cluster.scheduler_info["workers"]) == before
    good = Security(require_encryption=True, tls_ca_file=str(pki["ca"]),
                    tls_worker_cert=str(pki["node_cert"]), tls_worker_key=str(pki["node_key"]))
    assert len(_join(tls_cluster.scheduler_address, good)) == 1


def _recv_over_tls(address: str, ctx) -> bytes:
    host, port = address[len("tls://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        with ctx.wrap_socket(raw) as tls:   # TLS 1.3: the server's verdict comes with the first read
            return tls.recv(1)


def test_a_peer_without_a_client_certificate_is_cut_off_in_the_handshake(pki, tls_cluster):
    """Anyone may open a TCP connection to the scheduler; without a certificate of the cluster's
    CA it is closed in the TLS handshake (Dask's own client cannot even try: it needs a
    certificate to speak tls://). With the cluster's certificate the scheduler talks (its
    comm handshake)."""
    import ssl

    ctx = ssl.create_default_context(cafile=str(pki["ca"]))
    ctx.check_hostname = False
    with pytest.raises(ssl.SSLError, match="EOF|CERTIFICATE_REQUIRED|certificate required"):
        _recv_over_tls(tls_cluster.scheduler_address, ctx)
    ctx.load_cert_chain(str(pki["client_cert"]), str(pki["client_key"]))
    assert len(_recv_over_tls(tls_cluster.scheduler_address, ctx)) == 1
