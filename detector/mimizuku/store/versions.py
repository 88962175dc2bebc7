"""Model versions: one directory per trained model, a ``current`` pointer, rollback, retention, a lock.

Layout of a model root (``--model-dir``, ``/var/ossec/mimizuku/models`` on a manager)::

    current -> versions/<version>     relative symlink, the model in use
    versions/<version>/               one model directory as ``persistence`` writes it
    history.json                      versions in the order they were installed, and a log
    .lock                             ``flock``'d by ``mimizuku retrain`` and ``mimizuku rollback``

Why a symlink: switching it is one ``rename(2)`` of a fresh temporary symlink over ``current``,
atomic on POSIX. A reader that opens ``<root>/current`` (``resolve_model_dir``) resolves the link
once; ``persistence.load_model_dir`` walks the path with ``O_NOFOLLOW`` descriptors and reads every
file through the descriptor of the version directory it reached, so it always loads one complete
version, never a mix, even when ``current`` moves while it loads. Version directories are never
modified after they are written (``persistence`` renames a complete, fsync'd directory into place),
and only versions older than the last ``keep`` installs are ever deleted.

Crash safety (SIGKILL at any point): a run writes its version, then switches ``current``, then
records the install in ``history.json``. Killed before the switch, ``current`` is untouched and
what it left (``persistence``'s hidden ``.<version>.tmp-*`` directories, a complete version that was
never switched to, a temporary symlink) is removed by ``clean_leftovers`` at the next run, under
the lock. Killed after the switch, the new version is in use and is recorded by the next run.

A reader needing no scikit-learn can use ``resolve_model_dir`` / ``current_version`` (standard
library only). A plain model directory (``manifest.json`` directly in the root, as
``mimizuku train -m DIR`` writes) is still read as it is, and adopted as a version by the first
retrain.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import re
import secrets
import shutil
import stat
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from mimizuku.core.atomic import fsync_dir, removed_on_failure, write_atomic
from mimizuku.core.text import printable

__all__ = [
    "CURRENT",
    "VERSIONS",
    "HISTORY",
    "LOCK",
    "ModelStore",
    "Locked",
    "VersionError",
    "RunLock",
    "resolve_model_dir",
    "current_version",
    "add_rollback_parser",
    "run_rollback",
]

CURRENT = "current"
VERSIONS = "versions"
HISTORY = "history.json"
LOCK = ".lock"
MANIFEST = "manifest.json"

#: exit codes of ``mimizuku rollback`` (the ``mimizuku`` CLI's numbering)
EXIT_OK, EXIT_USAGE, EXIT_MODEL, EXIT_LOCKED = 0, 2, 4, 6

_VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
_DIR_MODE = 0o750
_HISTORY_LOG_MAX = 200
PathLike = Union[str, "os.PathLike[str]"]


class VersionError(Exception):
    """A version that does not exist, is incomplete, or a pointer that cannot be switched."""


class Locked(Exception):
    """Another run holds the model root's lock."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def check_version_name(version: str) -> str:
    """A version id as a directory name: no path, no leading dot, bounded."""
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise VersionError(f"invalid model version {printable(version, 200)!r}: expected letters, digits, "
                           f"'.', '_' or '-' (e.g. 20261121T023000Z-4d5e6f)")
    return version


def resolve_model_dir(model_dir: PathLike) -> Path:
    """The directory a reader should load: ``<root>/current`` when the root holds versions, else
    the root itself (a plain model directory, or nothing yet: the loader says what is missing)."""
    root = Path(os.fspath(model_dir))
    cur = root / CURRENT
    if os.path.lexists(cur):
        return cur
    return root


def current_version(model_dir: PathLike) -> Optional[str]:
    """The version ``current`` points to (``None`` without one); cheap enough to poll for changes."""
    try:
        target = os.readlink(Path(os.fspath(model_dir)) / CURRENT)
    except OSError:
        return None
    parts = target.rstrip("/").split("/")
    if len(parts) == 2 and parts[0] == VERSIONS and _VERSION_RE.match(parts[1]):
        return parts[1]
    return None


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<root>/.lock`` held for one run.

    The kernel releases it when the process dies (SIGKILL included), so a lock is never stale;
    the file itself is never deleted (deleting a lock file races with the next locker). It holds
    who locked it, for the message the second run prints.
    """

    def __init__(self, path: PathLike, what: str = "run"):
        self.path = Path(os.fspath(path))
        self.what = what
        self.fd: Optional[int] = None

    def acquire(self) -> "RunLock":
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.path, flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = ""
            try:
                info = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "{}")
                holder = f" ({info.get('what', 'a run')}, pid {int(info.get('pid'))}, since {info.get('started')})"
            except (ValueError, TypeError, OSError, AttributeError):
                pass
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise Locked(f"another mimizuku retrain or rollback is running on {self.path.parent}"
                             f"{printable(holder, 200)}; this run did nothing") from None
            raise
        info = json.dumps({"what": self.what, "pid": os.getpid(), "started": _now()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, info, 0)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            finally:
                os.close(self.fd)
                self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class ModelStore:
    """The versioned model root. Methods that change it expect the caller to hold ``lock()``."""

    def __init__(self, root: PathLike):
        self.root = Path(os.path.abspath(os.fspath(root)))
        self.versions_dir = self.root / VERSIONS
        self.current_link = self.root / CURRENT
        self.history_path = self.root / HISTORY

    # -- layout --------------------------------------------------------------------------------
    def ensure(self) -> None:
        """Create the root and ``versions/`` (mode 0750, ``versions/`` in the root's group)."""
        for d in (self.root, self.versions_dir):
            if not d.is_dir():
                d.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
                os.chmod(d, _DIR_MODE)
        gid = self.root.stat().st_gid
        if self.versions_dir.stat().st_gid != gid:
            try:
                os.chown(self.versions_dir, -1, gid)
            except OSError:
                pass

    def group(self) -> int:
        """The gid new versions get: the root's (``wazuh`` on a manager, so the scorer can read)."""
        return self.root.stat().st_gid

    def lock(self, what: str = "run") -> RunLock:
        self.root.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        return RunLock(self.root / LOCK, what)

    def version_dir(self, version: str) -> Path:
        return self.versions_dir / check_version_name(version)

    def is_complete(self, version: str) -> bool:
        d = self.versions_dir / version
        return d.is_dir() and not d.is_symlink() and (d / MANIFEST).is_file()

    # -- state -----------------------------------------------------------------------------------
    def current_version(self) -> Optional[str]:
        return current_version(self.root)

    def current_dir(self) -> Optional[Path]:
        v = self.current_version()
        return self.versions_dir / v if v is not None and self.is_complete(v) else None

    def has_plain_model(self) -> bool:
        """A model written straight into the root (``mimizuku train -m <root>``)."""
        return (self.root / MANIFEST).is_file()

    def versions(self) -> List[str]:
        """Complete versions, oldest first: in install order, unrecorded ones first by name."""
        try:
            names = [e.name for e in os.scandir(self.versions_dir)
                     if not e.name.startswith(".") and _VERSION_RE.match(e.name) and self.is_complete(e.name)]
        except FileNotFoundError:
            return []
        order = {v: i for i, v in enumerate(self.history().get("installed", []))}
        return sorted(names, key=lambda v: (v in order, order.get(v, 0), v))

    def history(self) -> Dict[str, Any]:
        """``{"installed": [...], "retired": [...], "log": [...]}``; empty when missing or unreadable."""
        try:
            with open(self.history_path, "rb") as f:
                h = json.loads(f.read(4 << 20).decode("utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(h, dict):
            return {}
        out: Dict[str, Any] = {}
        for k in ("installed", "retired"):
            v = h.get(k)
            out[k] = [x for x in v if isinstance(x, str)] if isinstance(v, list) else []
        out["log"] = [x for x in h.get("log", []) if isinstance(x, dict)] if isinstance(h.get("log"), list) else []
        return out

    def _write_history(self, h: Dict[str, Any]) -> None:
        h = dict(h)
        h["log"] = list(h.get("log", []))[-_HISTORY_LOG_MAX:]
        data = json.dumps(h, indent=1, sort_keys=True).encode("utf-8")
        write_atomic(self.history_path, data + b"\n", mode=0o640, sync_dir=True)

    def _record(self, action: str, version: str, previous: Optional[str], **extra: Any) -> None:
        h = self.history() or {"installed": [], "retired": [], "log": []}
        if action in ("install", "adopt") and version not in h["installed"]:
            h["installed"].append(version)
        retired = set(h.get("retired", []))
        retired.discard(version)
        if action == "rollback" and previous:
            retired.add(previous)
        h["retired"] = sorted(retired)
        entry = {"at": _now(), "action": action, "version": version, "from": previous}
        entry.update(extra)
        h["log"].append(entry)
        self._write_history(h)

    # -- the pointer -----------------------------------------------------------------------------
    def _point_to(self, version: str) -> None:
        if os.path.lexists(self.current_link) and not self.current_link.is_symlink():
            raise VersionError(f"{self.current_link} is not a symbolic link; move it away so the "
                               f"model pointer can be managed")
        tmp = self.root / f".{CURRENT}.tmp-{os.getpid()}-{secrets.token_hex(3)}"
        os.symlink(f"{VERSIONS}/{version}", tmp)
        with removed_on_failure(tmp):
            os.replace(tmp, self.current_link)  # rename(2): readers see the old or the new target
        fsync_dir(self.root)

    def install(self, version: str, action: str = "install", **extra: Any) -> Optional[str]:
        """Make ``version`` (complete, already written) the current one; returns the previous one."""
        check_version_name(version)
        if not self.is_complete(version):
            raise VersionError(f"model version {version} is not a complete model directory in {self.versions_dir}")
        previous = self.current_version()
        self._point_to(version)
        self._record(action, version, previous, **extra)
        return previous

    def record_current(self) -> None:
        """Record a current version the history misses (a run killed right after switching)."""
        cur = self.current_version()
        h = self.history()
        if cur is not None and h and cur not in h.get("installed", []) and self.is_complete(cur):
            self._record("install", cur, None, note="recorded after an interrupted run")

    def previous_version(self) -> Optional[str]:
        """Where ``rollback`` goes by default: the newest version installed before the current
        one that still exists and that no rollback left (so rollback, rollback walks back)."""
        cur = self.current_version()
        h = self.history()
        installed = [v for v in h.get("installed", []) if self.is_complete(v)]
        retired = set(h.get("retired", []))
        if cur in installed:
            before = installed[: installed.index(cur)]
        else:
            before = [v for v in self.versions() if cur is None or v < cur]
        for v in reversed(before):
            if v != cur and v not in retired:
                return v
        return None

    def rollback(self, to: Optional[str] = None, *, verify: bool = True) -> Tuple[Optional[str], str]:
        """Point ``current`` to ``to`` (default: ``previous_version()``); returns (old, new).

        The target is verified first (checksums, ownership, permissions: ``verify_model_dir``)
        so a rollback never switches to a model the scorer would refuse.
        """
        cur = self.current_version()
        if to is None:
            to = self.previous_version()
            if to is None:
                have = ", ".join(self.versions()) or "none"
                raise VersionError(f"no earlier model version to roll back to (current: {cur or 'none'}; "
                                   f"versions: {have})")
        check_version_name(to)
        if not self.is_complete(to):
            have = ", ".join(self.versions()) or "none"
            raise VersionError(f"no model version {to} in {self.versions_dir} (versions: {have})")
        if verify:
            from mimizuku.store.model_dir import verify_model_dir

            verify_model_dir(self.versions_dir / to)
        self._point_to(to)
        self._record("rollback", to, cur)
        return cur, to

    # -- clean-up --------------------------------------------------------------------------------
    def clean_leftovers(self) -> List[str]:
        """Remove what interrupted runs left: temporary directories and symlinks, and versions
        written but never switched to. Only under the lock (no save can be in progress)."""
        removed: List[str] = []
        try:
            root_entries = list(os.scandir(self.root))
        except FileNotFoundError:
            return removed
        for e in root_entries:
            if e.name.startswith((f".{CURRENT}.tmp-", f".{HISTORY}.tmp-")):
                _remove(Path(e.path))
                removed.append(e.name)
        self.record_current()
        h = self.history()
        known = set(h.get("installed", [])) if h else None
        cur = self.current_version()
        try:
            entries = list(os.scandir(self.versions_dir))
        except FileNotFoundError:
            return removed
        for e in entries:
            p = Path(e.path)
            if e.name.startswith("."):  # persistence's .<name>.tmp-* / .<name>.old-*
                _remove(p)
                removed.append(f"{VERSIONS}/{e.name}")
            elif known is not None and e.name != cur and e.name not in known and self.is_complete(e.name):
                _remove(p)  # written by a run that died before switching to it
                removed.append(f"{VERSIONS}/{e.name}")
        if removed and self.versions_dir.is_dir():
            fsync_dir(self.versions_dir)
        return removed

    def prune(self, keep: int) -> List[str]:
        """Delete all but the ``keep`` most recently installed versions (never the current one)."""
        if keep < 1:
            raise ValueError("keep must be >= 1")
        cur = self.current_version()
        vs = self.versions()
        doomed = [v for v in vs[: max(0, len(vs) - keep)] if v != cur]
        for v in doomed:
            _remove(self.versions_dir / v)
        if doomed:
            self._record("prune", cur or "", None, removed=doomed)
        return doomed

    def adopt_plain_model(self) -> Optional[str]:
        """Move a plain model (``manifest.json`` in the root) into ``versions/`` and point to it.

        The files are copied into a hidden directory, verified, renamed in, switched to, and only
        then removed from the root (manifest first, so the root stops being a model at once).
        """
        if not self.has_plain_model() or self.current_version() is not None:
            return None
        from mimizuku.store.model_dir import read_manifest, verify_model_dir

        manifest = read_manifest(self.root)
        verify_model_dir(self.root, check_versions=False)
        version = manifest.get("model_version")
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            version = "adopted-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        names = [MANIFEST] + sorted(manifest.get("files", {}))
        self.ensure()
        tmp = self.versions_dir / f".{version}.tmp-adopt-{secrets.token_hex(3)}"
        os.mkdir(tmp, 0o700)
        try:
            for n in names:
                shutil.copy2(self.root / n, tmp / n)
                os.chmod(tmp / n, 0o640)
                os.chown(tmp / n, -1, self.group())
            os.chown(tmp, -1, self.group())
            os.chmod(tmp, _DIR_MODE)
            fsync_dir(tmp)
            verify_model_dir(tmp, check_versions=False)
            os.rename(tmp, self.versions_dir / version)
        except BaseException:
            _remove(tmp)
            raise
        self.install(version, action="adopt")
        for n in names:
            try:
                os.unlink(self.root / n)
            except FileNotFoundError:
                pass
        return version

    def describe(self) -> List[Dict[str, Any]]:
        """Every version with its manifest summary, for ``mimizuku rollback --list``."""
        from mimizuku.store.model_dir import ModelError, read_manifest

        cur = self.current_version()
        retired = set(self.history().get("retired", []))
        out = []
        for v in self.versions():
            item: Dict[str, Any] = {"version": v, "current": v == cur, "retired": v in retired}
            try:
                m = read_manifest(self.versions_dir / v)
                item["created"] = m.get("created")
                item["alerts"] = (m.get("training") or {}).get("alerts")
                item["detectors"] = sorted((m.get("detectors") or {}))
            except ModelError as e:
                item["error"] = str(e)
            out.append(item)
        return out


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


# --- command line: mimizuku rollback -----------------------------------------------------------

def _default_model_dir(wazuh_home: str) -> str:
    return os.path.join(wazuh_home, "mimizuku", "models")


def add_rollback_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku rollback [VERSION] [--list]``: go back to an earlier model version."""
    p = subparsers.add_parser(
        "rollback", help="point the model in use back to an earlier version (default: the previous one)",
        description="Switch the model in use (the `current` pointer of the model directory) to an "
                    "earlier version: the one installed before the current one, or VERSION. "
                    "The target is verified first. Exit codes: 0 done, 2 usage, 4 no such version or "
                    "it fails verification, 6 a retrain or rollback is running.")
    p.add_argument("version", nargs="?", help="version to switch to (see --list)")
    p.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    p.add_argument("--model-dir", help="model root (default <wazuh-home>/mimizuku/models)")
    p.add_argument("--list", action="store_true", help="list the versions and exit")
    p.set_defaults(func=run_rollback)
    return p


def run_rollback(args: argparse.Namespace) -> int:
    from mimizuku.store.model_dir import ModelError

    store = ModelStore(args.model_dir or _default_model_dir(args.wazuh_home))
    if args.list:
        if not store.versions_dir.is_dir():
            print(f"mimizuku rollback: no model versions in {store.root}", file=sys.stderr)
            return EXIT_MODEL
        for item in store.describe():
            flags = ("*" if item["current"] else " ") + ("r" if item["retired"] else " ")
            extra = f"  {item.get('created') or '-'}  alerts={item.get('alerts')}  " \
                    f"{','.join(item.get('detectors') or [])}" if "error" not in item else f"  ({item['error']})"
            print(f"{flags} {item['version']}{extra}")
        return EXIT_OK
    try:
        with store.lock("rollback"):
            old, new = store.rollback(args.version)
    except Locked as e:
        print(f"mimizuku rollback: {e}", file=sys.stderr)
        return EXIT_LOCKED
    except (VersionError, ModelError) as e:
        print(f"mimizuku rollback: error: {e}", file=sys.stderr)
        return EXIT_MODEL
    print(f"mimizuku rollback: model in use is now {new} (was {old or 'none'})")
    return EXIT_OK
