"""One model for a cluster of managers: the trainer publishes, every node pulls the same version.

Wazuh syncs rules, decoders and lists between cluster nodes, not our models, so one node (the
trainer: normally the master) trains and *publishes*; every node (the trainer included, if it
scores) *syncs* from the publication into its own model store (:mod:`mimizuku.store.versions`), where
its resident scorer picks the new version up as it picks up a local retrain.

A publication is a directory, shared however the site shares files (a read-only NFS export, an
rsync from the trainer, a static HTTPS server over it)::

    published.json                 which version every node must run, from when, signed
    versions/<version>/...         the model directory as persistence wrote it (manifest + files)

``published.json`` holds the version, the sha256 of its ``manifest.json`` (which lists the sha256
and size of every file), the time it was published and ``activate_at``, and an HMAC-SHA256 of all
that with the cluster key (a root-only file every node holds). A node fetches a new version as
soon as it sees it, checks the signature, the manifest hash and every file hash, writes it into
``<model root>/incoming/<version>`` and only switches ``current`` once ``activate_at`` has passed.
Because every node checks the publication every ``interval`` seconds and switches at its first
check after ``activate_at`` (which is later than any node needs to fetch), no two nodes disagree
about the current version for longer than one interval. A rollback on the trainer followed by a
publish sends every node back the same way (without a download when the version is still there).

Model files (every file the manifest lists: the plain-data ``.json`` and ``.npz`` of format 2, or
the pickles of format 1) only ever come from a publication the key signed, are verified file by
file before they are renamed into the store, and are then loaded by the usual checks of
``model_dir`` (owner, permissions, manifest): a writable share or a hostile web server cannot make
a node load anything it did not sign, and what the key signs is plain data that loads without
running code (``mimizuku.store.plain_state``).

A node keeps the publication it last accepted (``synced.json`` in its model root) and refuses a
signed one published earlier, or as early but naming another model: an old ``published.json`` put
back on the share cannot send it back to an old model (a rollback is published anew, so it is
newer). A publication holds user names, hosts and command words: its directories are 0750 and its
files 0640, group the store's (``wazuh`` on a manager).
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import shutil
import stat
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from mimizuku.core.atomic import fsync_dir, write_all, write_atomic
from mimizuku.store.versions import (
    MANIFEST,
    VERSIONS,
    Locked,
    ModelStore,
    VersionError,
    check_version_name,
)

log = logging.getLogger(__name__)

PUBLISHED = "published.json"
INCOMING = "incoming"
#: in a node's model root: the last publication it accepted (replays of older ones are refused)
SYNCED = "synced.json"
#: modes of what a publication holds (user names, hosts, command words): the store's group only
PUB_DIR_MODE, PUB_FILE_MODE = 0o750, 0o640
FORMAT = 1
#: largest file a node accepts from a publication (a model is tens of MiB)
MAX_FILE_BYTES = 2 << 30
MAX_DOC_BYTES = 1 << 20
DEFAULT_ACTIVATION_DELAY = 60.0
DEFAULT_INTERVAL = 15.0
KEEP_PUBLISHED = 3

#: exit codes (the ``mimizuku`` CLI's numbering)
EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_UNREACHABLE, EXIT_LOCKED = 0, 2, 4, 5, 6

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
PathLike = Union[str, "os.PathLike[str]"]


class SyncError(Exception):
    """The publication cannot be read (exit 5): nothing changed on this node."""


class PublicationRefused(SyncError):
    """The publication is there but must not be trusted (bad signature, hash, name): exit 4."""


# --- the cluster key -----------------------------------------------------------------------------

def generate_key(path: PathLike) -> Path:
    """Write a new random key (64 hex digits), mode 0600; refuses to overwrite an existing one."""
    p = Path(os.fspath(path))
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        write_all(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return p


def load_key(path: PathLike) -> bytes:
    """The cluster key, refused unless only its owner (root or this user) can read or write it."""
    from mimizuku.core.private_file import read_private_file

    p = os.fspath(path)
    if not os.path.exists(p):
        raise SyncError(f"cluster key {p} not found (create it on the trainer with "
                        f"`mimizuku publish --new-key {p}` and copy it to every node, mode 0600)")
    raw = read_private_file(p, what="cluster key", limit=4096, error=PublicationRefused).strip()
    if len(raw) < 32:
        raise PublicationRefused(f"cluster key {p} is too short (at least 32 characters)")
    return raw


def _signed_part(doc: Dict[str, Any]) -> bytes:
    part = {k: doc.get(k) for k in ("format", "version", "manifest_sha256", "published_at", "activate_at")}
    return json.dumps(part, sort_keys=True, separators=(",", ":")).encode()


def sign(doc: Dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _signed_part(doc), hashlib.sha256).hexdigest()


# --- publishing (the trainer) ----------------------------------------------------------------------

def _manifest_files(manifest_bytes: bytes, where: str) -> Dict[str, Dict[str, Any]]:
    try:
        manifest = json.loads(manifest_bytes.decode("utf-8"))
        files = manifest["files"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise PublicationRefused(f"{where}: manifest.json is not a model manifest") from None
    if not isinstance(files, dict) or not files:
        raise PublicationRefused(f"{where}: manifest.json lists no files")
    for name, meta in files.items():
        if not isinstance(name, str) or not _NAME_RE.match(name) or name == MANIFEST:
            raise PublicationRefused(f"{where}: manifest names a file {name[:80]!r} that is not a plain file name")
        if not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) \
                or not isinstance(meta.get("bytes"), int) or not 0 <= meta["bytes"] <= MAX_FILE_BYTES:
            raise PublicationRefused(f"{where}: manifest entry for {name!r} has no usable sha256/bytes")
    return files


def publish(model_root: PathLike, to: PathLike, key: bytes, *, version: Optional[str] = None,
            activation_delay: float = DEFAULT_ACTIVATION_DELAY, keep: int = KEEP_PUBLISHED,
            now: Optional[float] = None) -> Dict[str, Any]:
    """Publish ``version`` (default: the store's current one) of ``model_root`` into ``to``.

    The files are copied first (a hidden directory renamed into place), ``published.json`` is
    replaced last: a node reading the publication at any moment sees the old or the new version,
    complete. Returns the ``published.json`` document.
    """
    store = ModelStore(model_root)
    v = version or store.current_version()
    if v is None:
        raise VersionError(f"no current model version in {store.root} to publish (run mimizuku retrain first)")
    check_version_name(v)
    if not store.is_complete(v):
        raise VersionError(f"model version {v} is not complete in {store.versions_dir}")
    from mimizuku.store.model_dir import verify_model_dir

    src = store.versions_dir / v
    verify_model_dir(src)  # never publish what this node would refuse to load
    manifest_bytes = (src / MANIFEST).read_bytes()
    files = _manifest_files(manifest_bytes, str(src))
    pub = Path(os.fspath(to))
    gid = store.group()
    if not pub.exists():
        pub.mkdir(mode=PUB_DIR_MODE, parents=True)
        _restrict(pub, gid, PUB_DIR_MODE)
    if not (pub / VERSIONS).exists():
        (pub / VERSIONS).mkdir(mode=PUB_DIR_MODE)
    _restrict(pub / VERSIONS, gid, PUB_DIR_MODE)
    dest = pub / VERSIONS / v
    if not (dest / MANIFEST).is_file() or (dest / MANIFEST).read_bytes() != manifest_bytes:
        tmp = pub / VERSIONS / f".{v}.tmp-{secrets.token_hex(3)}"
        tmp.mkdir(mode=0o700)
        try:
            for name in list(files) + [MANIFEST]:
                shutil.copyfile(src / name, tmp / name)
                _restrict(tmp / name, gid, PUB_FILE_MODE)
            _restrict(tmp, gid, PUB_DIR_MODE)
            fsync_dir(tmp)
            if dest.exists():
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(pub / VERSIONS)
    else:  # published by an earlier release: world-readable then
        for name in list(files) + [MANIFEST]:
            _restrict(dest / name, gid, PUB_FILE_MODE)
        _restrict(dest, gid, PUB_DIR_MODE)
    t = time.time() if now is None else float(now)
    doc: Dict[str, Any] = {
        "format": FORMAT, "version": v,
        "manifest_sha256": hashlib.sha256(manifest_bytes).hexdigest(),
        "published_at": round(t, 3), "activate_at": round(t + max(0.0, float(activation_delay)), 3),
    }
    doc["signature"] = sign(doc, key)
    write_atomic(pub / PUBLISHED, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode(), mode=PUB_FILE_MODE,
                 sync_dir=True)
    _restrict(pub / PUBLISHED, gid, PUB_FILE_MODE)
    _prune_publication(pub, keep, v)
    log.info("published model %s to %s (nodes switch at %s)", v, pub,
             time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(doc["activate_at"])))
    return doc


def _restrict(path: Path, gid: int, mode: int) -> None:
    """``path`` to the store's group (the scorer's, ``wazuh`` on a manager) and ``mode``: a
    published model names users, hosts and command words, not for every local account. What
    serves the publication (a web server, rsync) must run as root or in that group."""
    try:
        os.chown(path, -1, gid, follow_symlinks=False)
    except PermissionError:  # not root and not in the group: the mode still shuts others out
        pass
    os.chmod(path, mode, follow_symlinks=False)


def _prune_publication(pub: Path, keep: int, current: str) -> None:
    vdir = pub / VERSIONS
    entries = sorted((e for e in os.scandir(vdir) if e.is_dir(follow_symlinks=False) and not e.name.startswith(".")),
                     key=lambda e: e.stat(follow_symlinks=False).st_mtime)
    doomed = [e for e in entries[: max(0, len(entries) - max(1, keep))] if e.name != current]
    for e in doomed:
        shutil.rmtree(e.path, ignore_errors=True)


# --- where a node reads the publication from ------------------------------------------------------

class DirectorySource:
    """A publication on a filesystem this node can read (NFS, an rsync target)."""

    def __init__(self, path: PathLike):
        self.path = Path(os.fspath(path))

    def __str__(self) -> str:
        return str(self.path)

    def read(self, rel: str, limit: int) -> bytes:
        p = self.path / rel
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            raise SyncError(f"{p} not found in the publication") from None
        except OSError as e:
            raise SyncError(f"cannot read {p}: {e.strerror or e}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PublicationRefused(f"{p} is not a regular file")
            chunks, n = [], 0
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                n += len(b)
                if n > limit:
                    raise PublicationRefused(f"{p} is larger than {limit} bytes")
                chunks.append(b)
            return b"".join(chunks)
        finally:
            os.close(fd)


class HttpSource:
    """A publication served over HTTP(S) by any static web server (requests; TLS verified)."""

    def __init__(self, url: str, *, ca_bundle: Optional[str] = None, verify: bool = True,
                 timeout: float = 30.0, retries: int = 3):
        import requests

        from mimizuku.core.http_retry import retry_adapter

        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self.session = requests.Session()
        self.session.verify = ca_bundle if (ca_bundle and verify) else verify
        adapter = retry_adapter(retries, 0.5, methods=("GET",))
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __str__(self) -> str:
        return self.url

    def read(self, rel: str, limit: int) -> bytes:
        import requests

        url = self.url + rel
        try:
            with self.session.get(url, timeout=self.timeout, stream=True) as r:
                if r.status_code != 200:
                    raise SyncError(f"{url}: HTTP {r.status_code}")
                chunks, n = [], 0
                for b in r.iter_content(1 << 20):
                    n += len(b)
                    if n > limit:
                        raise PublicationRefused(f"{url} is larger than {limit} bytes")
                    chunks.append(b)
                return b"".join(chunks)
        except requests.exceptions.SSLError:
            raise SyncError(f"{self.url}: TLS certificate not trusted (give the CA bundle with --ca)") from None
        except requests.exceptions.RequestException as e:
            raise SyncError(f"{url}: {type(e).__name__}") from None


def open_source(where: str, *, ca_bundle: Optional[str] = None, timeout: float = 30.0):
    if where.startswith(("https://", "http://")):
        return HttpSource(where, ca_bundle=ca_bundle, timeout=timeout)
    return DirectorySource(where)


# --- syncing (every node) -------------------------------------------------------------------------

@dataclass
class SyncResult:
    action: str                     # "current" | "staged" | "waiting" | "switched"
    version: str
    previous: Optional[str] = None
    activate_at: Optional[float] = None

    def describe(self) -> str:
        if self.action == "switched":
            return f"switched to {self.version} (was {self.previous or 'none'})"
        if self.action == "waiting":
            return f"{self.version} fetched and verified; switching at {_iso(self.activate_at)}"
        if self.action == "staged":
            return f"{self.version} fetched and verified"
        return f"{self.version} is current"


def _iso(t: Optional[float]) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def read_publication(source: Any, key: bytes) -> Dict[str, Any]:
    """``published.json``, its signature checked."""
    raw = source.read(PUBLISHED, MAX_DOC_BYTES)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        raise PublicationRefused(f"{source}: {PUBLISHED} is not JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise PublicationRefused(f"{source}: {PUBLISHED} is not a format-{FORMAT} publication")
    sig = doc.get("signature")
    if not isinstance(sig, str) or not hmac.compare_digest(sig, sign(doc, key)):
        raise PublicationRefused(f"{source}: {PUBLISHED} is not signed with this node's cluster key")
    v = doc.get("version")
    if not isinstance(v, str):
        raise PublicationRefused(f"{source}: {PUBLISHED} names no version")
    try:
        check_version_name(v)
    except VersionError as e:
        raise PublicationRefused(f"{source}: {e}") from None
    if not isinstance(doc.get("activate_at"), (int, float)) or not isinstance(doc.get("manifest_sha256"), str) \
            or not isinstance(doc.get("published_at"), (int, float)) or isinstance(doc.get("published_at"), bool):
        raise PublicationRefused(f"{source}: {PUBLISHED} lacks published_at, activate_at or manifest_sha256")
    return doc


def _last_accepted(store: ModelStore) -> Optional[Dict[str, Any]]:
    """The publication this node last accepted (``SYNCED`` in its model root), or None."""
    try:
        doc = json.loads((store.root / SYNCED).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise PublicationRefused(f"{store.root / SYNCED} (the publication this node last accepted) cannot be "
                                 f"read: {e}; remove it only if you trust the publication as it is") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("published_at"), (int, float)):
        raise PublicationRefused(f"{store.root / SYNCED} is not a record of a publication")
    return doc


def check_not_replayed(doc: Dict[str, Any], store: ModelStore, source: Any) -> None:
    """Refuse a signed publication older than the one this node accepted last, or one as old
    that names another model: the signature proves who published, not when it was put on the
    share (an old ``published.json`` put back would send the node to an old model). A rollback
    is a new publication (``mimizuku publish`` after ``mimizuku rollback``), so it is newer."""
    seen = _last_accepted(store)
    if seen is None:
        return
    when, then = float(doc["published_at"]), float(seen["published_at"])
    same = (doc["version"], doc["manifest_sha256"]) == (seen.get("version"), seen.get("manifest_sha256"))
    if when < then or (when == then and not same):
        raise PublicationRefused(
            f"{source}: {PUBLISHED} (version {doc['version']}, published {_iso(when)}) is "
            f"{'older than' if when < then else 'as old as but differs from'} the publication this node "
            f"accepted (version {seen.get('version')}, published {_iso(then)}): a replayed publication; "
            f"publish again on the trainer to move the cluster")


def _record(doc: Dict[str, Any]) -> Dict[str, Any]:
    """What a node keeps of a publication it accepted (``SYNCED``)."""
    return {k: doc[k] for k in ("version", "manifest_sha256", "published_at", "activate_at")}


def _remember(store: ModelStore, doc: Dict[str, Any]) -> None:
    write_atomic(store.root / SYNCED, (json.dumps(_record(doc), sort_keys=True) + "\n").encode(), mode=0o640,
                 sync_dir=True)


def _fetch(source: Any, store: ModelStore, doc: Dict[str, Any]) -> Path:
    """Download and verify ``doc``'s version into ``<root>/incoming/<version>``."""
    v = doc["version"]
    incoming = store.root / INCOMING
    final = incoming / v
    if (final / MANIFEST).is_file() and \
            hashlib.sha256((final / MANIFEST).read_bytes()).hexdigest() == doc["manifest_sha256"]:
        return final
    manifest_bytes = source.read(f"{VERSIONS}/{v}/{MANIFEST}", MAX_DOC_BYTES)
    if hashlib.sha256(manifest_bytes).hexdigest() != doc["manifest_sha256"]:
        raise PublicationRefused(f"{source}: {VERSIONS}/{v}/{MANIFEST} does not match the signed publication")
    files = _manifest_files(manifest_bytes, f"{source}{VERSIONS}/{v}")
    store.ensure()
    incoming.mkdir(mode=0o750, exist_ok=True)
    gid = store.group()
    tmp = incoming / f".{v}.tmp-{secrets.token_hex(3)}"
    os.mkdir(tmp, 0o700)
    try:
        for name, meta in sorted(files.items()):
            data = source.read(f"{VERSIONS}/{v}/{name}", meta["bytes"])
            if len(data) != meta["bytes"] or hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise PublicationRefused(f"{source}: {VERSIONS}/{v}/{name} does not match its manifest (tampered "
                                         f"or incomplete); version {v} not installed")
            _write_file(tmp / name, data, gid)
        _write_file(tmp / MANIFEST, manifest_bytes, gid)
        os.chown(tmp, -1, gid)
        os.chmod(tmp, 0o750)
        fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        fsync_dir(incoming)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _write_file(path: Path, data: bytes, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
        os.fchown(fd, -1, gid)
        os.fchmod(fd, 0o640)
    finally:
        os.close(fd)


def sync_once(source: Any, model_root: PathLike, key: bytes, *, now: Optional[float] = None) -> SyncResult:
    """Bring this node's store to the published version: fetch when new, switch when due."""
    store = ModelStore(model_root)
    doc = read_publication(source, key)
    check_not_replayed(doc, store, source)
    v, at = doc["version"], float(doc["activate_at"])
    cur = store.current_version()
    if cur == v:
        if _last_accepted(store) != _record(doc):  # e.g. the same version published again
            _remember(store, doc)
        return SyncResult("current", v, activate_at=at)
    have = store.is_complete(v) and (store.versions_dir / v / MANIFEST).is_file() and \
        hashlib.sha256((store.versions_dir / v / MANIFEST).read_bytes()).hexdigest() == doc["manifest_sha256"]
    staged = None if have else _fetch(source, store, doc)
    t = time.time() if now is None else float(now)
    if t < at:
        return SyncResult("waiting", v, cur, at)
    from mimizuku.store.model_dir import verify_model_dir

    with store.lock("sync"):
        if staged is not None:
            verify_model_dir(staged)
            target = store.versions_dir / v
            if target.exists():
                shutil.rmtree(target)
            os.rename(staged, target)
        previous = store.install(v, action="sync", source=str(source), activate_at=at)
        _remember(store, doc)
    return SyncResult("switched", v, previous, at)


# --- command line ---------------------------------------------------------------------------------

def _default_model_dir(home: str) -> str:
    return os.path.join(home, "mimizuku", "models")


def _default_key(home: str) -> str:
    return os.path.join(home, "etc", "mimizuku", "cluster.key")


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "publish", help="publish the current model for the other cluster nodes (trainer side)",
        description="Copy the current model version into a publication directory and sign it with "
                    "the cluster key; every node running `mimizuku sync` switches to it at the same "
                    "time. Exit codes: 0 published, 2 usage, 4 no model / refused, 5 cannot write.")
    p.add_argument("--to", required=False, help="publication directory (shared with the nodes)")
    p.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    p.add_argument("--model-dir", help="model root (default <wazuh-home>/mimizuku/models)")
    p.add_argument("--key", help="cluster key file (default <wazuh-home>/etc/mimizuku/cluster.key)")
    p.add_argument("--version", help="version to publish (default: the current one; an older one rolls the cluster back)")
    p.add_argument("--activation-delay", type=float, default=DEFAULT_ACTIVATION_DELAY,
                   help="seconds between publishing and the nodes switching (>= the time a node needs "
                        "to fetch a model; default %(default)s)")
    p.add_argument("--new-key", metavar="FILE", help="create a new cluster key file and exit")
    p.set_defaults(func=run_publish)

    s = subparsers.add_parser(
        "sync", help="install the model the trainer published (every cluster node)",
        description="Read the publication (a directory or an http(s) URL), verify its signature and "
                    "every file, and switch this node's current model when the publication says. "
                    "Runs once, or every --interval seconds. Exit codes: 0 ok, 2 usage, 4 publication "
                    "refused (bad signature or file, or older than the one installed: a replay), 5 publication "
                    "unreachable, 6 locked.")
    s.add_argument("--from", dest="source", required=True, help="publication directory or http(s) URL")
    s.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    s.add_argument("--model-dir", help="model root (default <wazuh-home>/mimizuku/models)")
    s.add_argument("--key", help="cluster key file (default <wazuh-home>/etc/mimizuku/cluster.key)")
    s.add_argument("--ca", help="CA bundle for an https publication")
    s.add_argument("--interval", type=float, default=0.0,
                   help="keep running, checking every N seconds (default: once)")
    s.set_defaults(func=run_sync)


def run_publish(a: argparse.Namespace) -> int:
    from mimizuku.store.model_dir import ModelError

    if a.new_key:
        try:
            generate_key(a.new_key)
        except FileExistsError:
            print(f"mimizuku publish: {a.new_key} exists; not overwritten", file=sys.stderr)
            return EXIT_USAGE
        print(f"mimizuku publish: new cluster key in {a.new_key}: copy it to every node (mode 0600)")
        return EXIT_OK
    if not a.to:
        print("mimizuku publish: --to DIR is required", file=sys.stderr)
        return EXIT_USAGE
    try:
        key = load_key(a.key or _default_key(a.wazuh_home))
        doc = publish(a.model_dir or _default_model_dir(a.wazuh_home), a.to, key, version=a.version,
                      activation_delay=a.activation_delay)
    except (PublicationRefused, VersionError, ModelError) as e:  # before SyncError: a subclass
        print(f"mimizuku publish: error: {e}", file=sys.stderr)
        return EXIT_MODEL
    except (SyncError, OSError) as e:
        print(f"mimizuku publish: error: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print(f"mimizuku publish: {doc['version']} published to {a.to}; nodes switch at {_iso(doc['activate_at'])}")
    return EXIT_OK


def run_sync(a: argparse.Namespace) -> int:
    from mimizuku.store.model_dir import ModelError

    root = a.model_dir or _default_model_dir(a.wazuh_home)
    try:
        key = load_key(a.key or _default_key(a.wazuh_home))
    except SyncError as e:
        print(f"mimizuku sync: error: {e}", file=sys.stderr)
        return EXIT_MODEL if isinstance(e, PublicationRefused) else EXIT_USAGE
    source = open_source(a.source, ca_bundle=a.ca)
    last = None
    while True:
        code = EXIT_OK
        try:
            r = sync_once(source, root, key)
            msg = r.describe()
            if r.action != "current" or a.interval <= 0:
                print(f"mimizuku sync: {msg}", flush=True)
        except PublicationRefused as e:
            msg, code = f"refused: {e}", EXIT_MODEL
        except SyncError as e:
            msg, code = f"unreachable: {e}", EXIT_UNREACHABLE
        except Locked as e:
            msg, code = str(e), EXIT_LOCKED
        except (VersionError, ModelError, OSError) as e:
            msg, code = f"refused: {e}", EXIT_MODEL
        if code != EXIT_OK and msg != last:  # a failure is said once, not every interval
            print(f"mimizuku sync: {msg}", file=sys.stderr, flush=True)
        last = msg if code != EXIT_OK else None
        if a.interval <= 0:
            return code
        try:
            time.sleep(a.interval)
        except KeyboardInterrupt:
            return EXIT_OK
