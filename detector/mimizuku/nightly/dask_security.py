"""Who the nightly job lets into its Dask cluster: mutual TLS, or an explicit ``--dask-insecure``.

``mimizuku retrain`` runs as root, and Dask unpickles whatever a worker returns. Over plain
``tcp://`` anyone who can reach the scheduler can register a worker, get a partition and return a
pickle that runs code as root in the job (issue 17, item 2). So a scheduler outside this process
is used only over ``tls://`` with Dask's mutual TLS (``distributed.security.Security``,
``require_encryption=True``): the job shows a client certificate, and the scheduler and every
worker must show a certificate signed by the cluster's own CA. ``inproc://`` (a
``LocalCluster(processes=False)`` inside this process) needs nothing: no other host can join it.
Any other address (``tcp://``, a bare ``host:port``, ``ws://``, ``ucx://``) is refused before a
connection is tried, unless the operator says ``--dask-insecure`` — then the run warns loudly.

The client key is a secret: it is read like every other one (``core/private_file.py``: a regular
file of root or the user running mimizuku, mode 0600, no symlink) and handed to Dask as PEM text,
so the bytes that were checked are the bytes used. The CA and the certificate are public. Dask
itself is imported only when a client is made (``security()``): a local run never loads it.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mimizuku.core.private_file import read_private_file

__all__ = ["DaskTLS", "TLS_SCHEME", "IN_PROCESS_SCHEME", "dask_scheme", "needs_tls", "insecure_warning",
           "load_dask_tls", "default_tls_dir"]

TLS_SCHEME = "tls"
IN_PROCESS_SCHEME = "inproc"
#: the largest key / certificate file read (a PEM RSA-8192 key is about 6.5 KiB)
MAX_PEM_BYTES = 64 << 10


@dataclass(frozen=True)
class DaskTLS:
    """The job's side of Dask's mutual TLS: the cluster's CA, the job's certificate and its key
    (PEM text, read as a secret; never shown in a repr)."""

    ca_file: Path
    cert_file: Path
    key_pem: str = field(repr=False)

    def security(self) -> Any:
        """The ``distributed.security.Security`` a ``Client`` needs: encryption required, the
        CA checks the scheduler and workers, the certificate and key identify the job."""
        from distributed.security import Security

        return Security(require_encryption=True, tls_ca_file=str(self.ca_file),
                        tls_client_cert=str(self.cert_file), tls_client_key=self.key_pem)


def dask_scheme(address: str) -> str:
    """The scheme of a Dask address (Dask's default, ``tcp``, for ``host:port``)."""
    head, sep, _ = address.partition("://")
    return head.lower() if sep else "tcp"


def needs_tls(address: str) -> bool:
    """Whether the address is a scheduler this job may only use with mutual TLS: anything but an
    in-process cluster."""
    return dask_scheme(address) != IN_PROCESS_SCHEME


def default_tls_dir(wazuh_home: Path) -> Path:
    """Where the CA, certificate and key are looked for when no option names them."""
    return Path(wazuh_home) / "etc" / "mimizuku" / "dask"


def insecure_warning(address: str) -> str:
    """The warning of a run that uses an unauthenticated scheduler (``--dask-insecure``)."""
    return (f"--dask-insecure: the Dask scheduler at {address} is used WITHOUT encryption or "
            f"authentication; any host that can reach it can register a worker and run code as the "
            f"user of this job (root) through the results it returns. Use tls:// with the "
            f"--dask-tls-* certificates (docs/cluster.md)")


def _public_pem(path: Path, what: str) -> None:
    """A certificate file Dask will read: a regular file (we check it exists before connecting,
    so a typo is a usage error, not a TLS failure)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise ValueError(f"{what} {path}: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{what} {path} is not a regular file")
    if st.st_size > MAX_PEM_BYTES:
        raise ValueError(f"{what} {path} is larger than {MAX_PEM_BYTES} bytes")


def load_dask_tls(address: str, *, ca: Optional[Path], cert: Optional[Path], key: Optional[Path],
                  insecure: bool) -> Optional[DaskTLS]:
    """What ``address`` needs, checked before anything connects (``ValueError`` = usage error).

    ``tls://``: the three files (the key read as a secret). ``inproc://``: nothing (None).
    Anything else: refused, unless ``insecure`` (None: the caller warns)."""
    scheme = dask_scheme(address)
    if scheme == IN_PROCESS_SCHEME:
        return None
    if scheme != TLS_SCHEME:
        if insecure:
            return None
        raise ValueError(
            f"--dask {address}: a {scheme}:// scheduler is neither encrypted nor authenticated: any host "
            f"that can reach it can register a worker, and this job (root) unpickles what workers "
            f"return. Use tls://host:port with mutual TLS (--dask-tls-ca, --dask-tls-cert, "
            f"--dask-tls-key; docs/cluster.md), or --dask-insecure on a network you trust")
    given = (("--dask-tls-ca", ca), ("--dask-tls-cert", cert), ("--dask-tls-key", key))
    missing = [f"{opt} {p}" if p is not None else opt for opt, p in given if p is None or not os.path.lexists(p)]
    if missing:
        raise ValueError(f"--dask {address} needs mutual TLS: the cluster's CA, this job's certificate "
                         f"and its key; missing: {', '.join(missing)} (docs/cluster.md)")
    assert ca is not None and cert is not None and key is not None
    _public_pem(ca, "--dask-tls-ca")
    _public_pem(cert, "--dask-tls-cert")
    raw = read_private_file(key, what="--dask-tls-key", limit=MAX_PEM_BYTES, error=ValueError)
    try:
        pem = raw.decode("ascii")
    except UnicodeDecodeError:
        pem = ""
    # Dask takes a value with a newline as PEM text, anything else as a path: only a real PEM key
    if "-----BEGIN" not in pem or "PRIVATE KEY-----" not in pem or "\n" not in pem:
        raise ValueError(f"--dask-tls-key {key} is not a PEM private key")
    return DaskTLS(Path(ca), Path(cert), pem)
