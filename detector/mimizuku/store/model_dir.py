"""Saving and loading fitted model directories without trusting what is on disk.

Model files are plain data (format 2, ``mimizuku.store.plain_state``): a JSON tree and a numpy
``.npz`` per fitted object, loaded without calling anything the files name; the only classes built
are those the caller lists as trusted. Models of format 1 are pickles (``joblib``), which run
whatever code they name when loaded: they still load, behind the same checks, with a
``ModelFormatWarning``, until mimizuku 1.1 (``PICKLE_FORMAT_DROPPED_IN``). Either way a model
directory is only loaded when nobody but a trusted user could have written it, and only after
every byte has been checked against a manifest of SHA-256 checksums.

Layout of a model directory::

    <dir>/manifest.json        format version, library versions, file checksums, caller's metadata
    <dir>/<name>.json          format 2: one fitted object per name, its state as a JSON tree ...
    <dir>/<name>.npz           ... and its arrays (numpy.savez, read with allow_pickle=False)
    <dir>/<name>.joblib        format 1 (read only): one pickled object per name (joblib.dump)

Writing (``save_model_dir``) builds the whole directory in a temporary sibling on the same
filesystem (fsync'd), then swaps it in:

* On Linux with ``renameat2(RENAME_EXCHANGE)`` (glibc >= 2.28, most local filesystems) the old and
  the new directory trade places in one atomic step: a reader opening ``<dir>`` sees either the
  complete old model or the complete new one, never a partial one and never nothing.
* Elsewhere (other systems, old kernels, filesystems without exchange) the old directory is renamed
  aside, the new one renamed in, the old one deleted. A reader can then find *no* model for the
  instant between the two renames (``ModelNotFoundError``, retry), but still never a partial one.
* A crash at any point leaves ``<dir>`` holding one complete model (or, in the fallback's window,
  the old model under a hidden ``.<name>.old-*`` sibling). Hidden ``.<name>.tmp-*`` /
  ``.<name>.old-*`` siblings left by a crash are removed by the next save. Saves to the same
  parent directory are serialised with ``flock`` on the parent, so this clean-up never touches
  another save in progress.

Loading (``load_model_dir``) checks everything *before* decoding anything:

* Trusted owners: root always; plus the effective uid when it is not root (a user may load their
  own model, root never loads one a non-root user wrote), or instead ``trusted_owner_uids``.
* The path to the directory is walked component by component from ``/`` with ``O_NOFOLLOW``
  file descriptors (no race between check and use). Every directory on the way must be owned by a
  trusted uid and not writable by group or others - unless it has the sticky bit (like ``/tmp``),
  where others cannot rename or delete what they do not own, and the next component's ownership is
  checked anyway. Symlinks on the way to the directory are followed only when owned by a trusted
  uid (they can only sit in directories that passed the check above).
* The model directory itself, ``manifest.json`` and every model file must be owned by a trusted
  uid and not writable by group or others (no sticky-bit exception). Symlinks *inside* the model
  directory are refused outright, whatever they point to: ``save_model_dir`` never writes any.
* The manifest parses, has the expected shape and a supported ``format_version``; file names in
  it are plain ``<name>.json`` and ``<name>.npz`` (format 2, both for every name) or
  ``<name>.joblib`` (format 1), no paths. The scikit-learn version it records matches the
  installed one (unless ``check_versions=False``).
* Every listed file exists, has the recorded size and SHA-256; no unlisted model-like file
  (``*.json``, ``*.npz``, ``*.joblib``, ``*.pkl``, ``*.pickle``...) lies in the directory. Each
  file is read once: the bytes that were hashed are the bytes that get decoded.

POSIX only (uses ``O_NOFOLLOW``, ``dir_fd`` and ``flock``). Standard library only at import time;
numpy (and joblib, for format 1) is imported when a model is actually written or read.
"""
from __future__ import annotations

import errno
import hashlib
import hmac
import io
import json
import os
import platform
import re
import shutil
import stat
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from mimizuku.core.atomic import fsync_dir
from mimizuku.store.plain_state import PlainStateError, dump_state, load_state

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "ModelError",
    "ModelNotFoundError",
    "ModelIntegrityError",
    "ModelSecurityError",
    "ModelVersionError",
    "ModelFormatWarning",
    "PICKLE_FORMAT_VERSION",
    "PICKLE_FORMAT_DROPPED_IN",
    "save_model_dir",
    "load_model_dir",
    "read_manifest",
    "verify_model_dir",
    "trusted_uids",
    "rename_exchange",
]

#: the format written: plain data (a JSON tree and an .npz per object)
FORMAT_VERSION = 2
#: the pickled format of earlier releases: read (with a ModelFormatWarning), never written
PICKLE_FORMAT_VERSION = 1
#: the release that no longer reads format 1
PICKLE_FORMAT_DROPPED_IN = "1.1"
MANIFEST_NAME = "manifest.json"
PICKLE_SUFFIX = ".joblib"
#: the files of one object, by format
_OBJECT_SUFFIXES = {FORMAT_VERSION: (".json", ".npz"), PICKLE_FORMAT_VERSION: (PICKLE_SUFFIX,)}

_NAME_RE = re.compile(r"[a-z0-9_]+")
_FILE_RES = {FORMAT_VERSION: re.compile(r"[a-z0-9_]+\.(?:json|npz)"),
             PICKLE_FORMAT_VERSION: re.compile(r"[a-z0-9_]+\.joblib")}
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
# Anything that looks like a pickle (any of these among its dot-separated suffixes, so
# "x.joblib.gz" too) and is not in the manifest is refused: it was not written by us, and a
# future loader globbing the directory must never pick it up.
_PICKLE_SUFFIXES = frozenset({"joblib", "pkl", "pickle", "pck", "sav"})
#: ... and so is any unlisted file of format 2's kinds: the manifest and the files agree both ways
_MODEL_SUFFIXES = _PICKLE_SUFFIXES | {"json", "npz", "npy"}
_RESERVED_KEYS = ("format_version", "created", "libraries", "files")
_LIBRARIES = ("scikit-learn", "numpy", "scipy", "pandas", "joblib")
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_MAX_SYMLINK_HOPS = 40
_DIR_MODE = 0o750
_FILE_MODE = 0o640
_RENAME_EXCHANGE = 2
_RETRAIN = "retrain with `mimizuku train`"


class ModelError(Exception):
    """A model directory cannot be used; the message says what is wrong and how to fix it."""


class ModelNotFoundError(ModelError):
    """No model directory, no manifest, or no detector of the requested name."""


class ModelIntegrityError(ModelError):
    """The model directory does not match its manifest, or the manifest is malformed."""


class ModelSecurityError(ModelError):
    """Ownership or permissions would let an untrusted user plant a pickle."""


class ModelVersionError(ModelError):
    """Written by another model format or scikit-learn version than the one installed."""


class ModelFormatWarning(FutureWarning):
    """A model of the pickled format 1 was loaded: retrain (or re-save) it before that format
    stops loading (``PICKLE_FORMAT_DROPPED_IN``). A FutureWarning: shown by default, as an
    operator must act on it."""


# --------------------------------------------------------------------------------------------
# versions


def _installed_version(dist: str) -> Optional[str]:
    """Version of an installed distribution, without importing it (keeps `status` fast)."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _library_versions() -> Dict[str, Optional[str]]:
    from mimizuku._version import __version__

    versions: Dict[str, Optional[str]] = {"mimizuku": __version__}
    for dist in _LIBRARIES:
        versions[dist] = _installed_version(dist)
    versions["python"] = platform.python_version()
    return versions


# --------------------------------------------------------------------------------------------
# manifest shape


def _validate_manifest(manifest: Any, where: str) -> Dict[str, Any]:
    """Check the shape of a parsed manifest; raise ModelIntegrityError / ModelVersionError."""

    def bad(what: str) -> ModelIntegrityError:
        return ModelIntegrityError(f"malformed model manifest {where}: {what}; {_RETRAIN}")

    if not isinstance(manifest, dict):
        raise bad("top level is not a JSON object")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise bad(f"format_version is missing or not an integer ({version!r})")
    if version not in _OBJECT_SUFFIXES:
        raise ModelVersionError(
            f"model {where} has format_version {version}, this mimizuku reads formats "
            f"{PICKLE_FORMAT_VERSION} and {FORMAT_VERSION}; upgrade mimizuku or {_RETRAIN}"
        )
    if not isinstance(manifest.get("created"), str):
        raise bad("'created' is missing or not a string")
    libraries = manifest.get("libraries")
    if not isinstance(libraries, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in libraries.items()
    ):
        raise bad("'libraries' must map library names to version strings")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise bad("'files' must be an object")
    file_re = _FILE_RES[version]
    for fname, entry in files.items():
        if not isinstance(fname, str) or not file_re.fullmatch(fname):
            form = "<name>.json or <name>.npz" if version == FORMAT_VERSION else "<name>.joblib"
            raise bad(f"file name {fname!r} is not of the form {form}")
        if not isinstance(entry, dict):
            raise bad(f"entry for {fname} is not an object")
        digest = entry.get("sha256")
        size = entry.get("bytes")
        if not isinstance(digest, str) or not _SHA256_RE.fullmatch(digest):
            raise bad(f"sha256 of {fname} is not 64 lowercase hex digits")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise bad(f"size of {fname} is not a non-negative integer")
    names = object_files(manifest)
    for name, fnames in names.items():
        if len(fnames) != len(_OBJECT_SUFFIXES[version]):
            missing = [name + s for s in _OBJECT_SUFFIXES[version] if name + s not in fnames]
            raise bad(f"object {name!r} lacks {', '.join(missing)} in 'files'")
    return manifest


def object_files(manifest: Dict[str, Any]) -> Dict[str, List[str]]:
    """Object name -> its files listed in a (shape-checked) manifest, in the order listed. Public:
    what the manifest says the directory holds, which a loader checks against what it expects."""
    out: Dict[str, List[str]] = {}
    for fname in manifest["files"]:
        out.setdefault(fname.rsplit(".", 1)[0], []).append(fname)
    return out


def _parse_manifest(data: bytes, where: str) -> Dict[str, Any]:
    try:
        parsed = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ModelIntegrityError(
            f"model manifest {where} is not valid JSON ({e}); {_RETRAIN}"
        ) from None
    return _validate_manifest(parsed, where)


def _check_versions(manifest: Dict[str, Any], where: str) -> None:
    saved = manifest["libraries"].get("scikit-learn")
    installed = _installed_version("scikit-learn")
    if saved is None or saved == installed:
        return  # saved None: nothing in the model needed scikit-learn
    now = "scikit-learn is not installed" if installed is None else f"{installed} is installed"
    raise ModelVersionError(
        f"model {where} was trained with scikit-learn {saved}, but {now}; fitted models do not "
        f"carry across scikit-learn versions: {_RETRAIN}"
    )


# --------------------------------------------------------------------------------------------
# trust checks


def trusted_uids(trusted_owner_uids: Optional[Iterable[int]] = None) -> Set[int]:
    """The uids that may own what a load walks through: root always; by default also the
    effective uid when it is not root, or instead ``trusted_owner_uids``. Public: it is the trust
    policy the module docstring states, checked on its own."""
    if trusted_owner_uids is not None:
        return {0} | {int(u) for u in trusted_owner_uids}
    euid = os.geteuid()
    return {0} if euid == 0 else {0, euid}


def _owner_problem(st: os.stat_result, trusted: Set[int]) -> Optional[str]:
    if st.st_uid not in trusted:
        return f"is owned by uid {st.st_uid}, not by a trusted user (uids {sorted(trusted)})"
    return None


def _writable_problem(st: os.stat_result, *, sticky_ok: bool) -> Optional[str]:
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        if sticky_ok and stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX:
            return None
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _refuse(path: str, problem: str, fix: str) -> ModelSecurityError:
    return ModelSecurityError(
        f"refusing to load model: {path} {problem}; an untrusted writer could change what this "
        f"process scores (or, in a pickled model, run code as it). Fix: {fix}, or {_RETRAIN}"
    )


def _check_node(st: os.stat_result, path: str, trusted: Set[int], *, sticky_ok: bool) -> None:
    problem = _owner_problem(st, trusted)
    if problem:
        raise _refuse(path, problem, f"chown root {path} (or the user mimizuku runs as)")
    problem = _writable_problem(st, sticky_ok=sticky_ok)
    if problem:
        raise _refuse(path, problem, f"chmod go-w {path}")


def _join(parts: List[str]) -> str:
    return "/" + "/".join(parts)


def _open_trusted_dir(directory: "os.PathLike[str] | str", trusted: Set[int]) -> Tuple[int, str]:
    """Open `directory` walking from / with O_NOFOLLOW, checking every step; return (fd, path).

    Returns a file descriptor of the model directory itself, so nothing can swap the directory
    between this check and the reads that follow.
    """
    todo = list(reversed(os.path.abspath(os.fspath(directory)).split("/")))
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    root = os.open("/", dir_flags)
    stack: List[Tuple[int, str]] = [(root, "")]  # (fd, component name)
    hops = 0
    try:
        _check_node(os.fstat(root), "/", trusted, sticky_ok=True)
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop()[0])
                continue
            parent_fd = stack[-1][0]
            here = _join([n for _, n in stack[1:]] + [name])
            try:
                st = os.lstat(name, dir_fd=parent_fd)
            except FileNotFoundError:
                raise ModelNotFoundError(
                    f"no model directory at {os.fspath(directory)} ({here} does not exist); "
                    f"train one with `mimizuku train`"
                ) from None
            if stat.S_ISLNK(st.st_mode):
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    raise ModelSecurityError(f"too many symbolic links resolving {directory}")
                problem = _owner_problem(st, trusted)
                if problem:
                    raise _refuse(here, "is a symbolic link that " + problem,
                                  f"replace the link {here} with the real path")
                target = os.readlink(name, dir_fd=parent_fd)
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop()[0])
                todo.extend(reversed(target.split("/")))
                continue
            if not stat.S_ISDIR(st.st_mode):
                raise ModelNotFoundError(f"{here} is not a directory, so not a model directory")
            try:
                fd = os.open(name, dir_flags, dir_fd=parent_fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):  # swapped for a link/file meanwhile
                    raise ModelSecurityError(f"{here} changed while being checked; try again") from None
                raise
            stack.append((fd, name))
            _check_node(os.fstat(fd), here, trusted, sticky_ok=True)
        path = _join([n for _, n in stack[1:]])
        _check_node(os.fstat(stack[-1][0]), path, trusted, sticky_ok=False)
        fd = stack.pop()[0]  # handed to the caller, not closed below
        return fd, path
    finally:
        for other, _ in stack:
            os.close(other)


def _open_member(dir_fd: int, dir_path: str, name: str, trusted: Optional[Set[int]],
                 missing: type) -> Tuple[int, os.stat_result]:
    """Open a regular file inside the model directory, refusing symlinks and unsafe owners."""
    path = f"{dir_path.rstrip('/')}/{name}"
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        if missing is ModelNotFoundError:
            raise ModelNotFoundError(
                f"no model in {dir_path}: {name} is missing; train one with `mimizuku train`"
            ) from None
        raise ModelIntegrityError(
            f"model {dir_path} is incomplete: {name} is listed in the manifest but missing; "
            f"{_RETRAIN}"
        ) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _refuse(path, "is a symbolic link (model files must be regular files)",
                          f"replace {path} with a regular file") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ModelIntegrityError(f"{path} is not a regular file; {_RETRAIN}")
        if trusted is not None:
            _check_node(st, path, trusted, sticky_ok=False)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _read_fd(fd: int, limit: int, what: str) -> bytes:
    chunks = []
    total = 0
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > limit:
            raise ModelIntegrityError(f"{what} is larger than expected ({limit} bytes); {_RETRAIN}")
        chunks.append(chunk)


def _looks_like_model_file(name: str) -> bool:
    return any(part in _MODEL_SUFFIXES for part in name.lower().split(".")[1:])


def _verify(directory, *, names: Optional[List[str]], check_versions: bool,
            trusted_owner_uids: Optional[Iterable[int]], keep: bool
            ) -> Tuple[Dict[str, Any], Dict[str, Dict[str, bytes]]]:
    """All checks; returns the manifest and (if `keep`) the verified bytes of the wanted objects'
    files: name -> {file suffix: bytes}."""
    trusted = trusted_uids(trusted_owner_uids)
    dir_fd, dir_path = _open_trusted_dir(directory, trusted)
    try:
        fd, _st = _open_member(dir_fd, dir_path, MANIFEST_NAME, trusted, ModelNotFoundError)
        try:
            raw = _read_fd(fd, _MAX_MANIFEST_BYTES, MANIFEST_NAME)
        finally:
            os.close(fd)
        manifest = _parse_manifest(raw, dir_path)
        if check_versions:
            _check_versions(manifest, dir_path)
        files: Dict[str, Dict[str, Any]] = manifest["files"]
        by_name = object_files(manifest)

        wanted = list(names) if names is not None else list(by_name)
        for name in wanted:
            if name not in by_name:
                have = ", ".join(sorted(by_name)) or "none"
                raise ModelNotFoundError(
                    f"model {dir_path} has no detector {name!r} (it has: {have}); {_RETRAIN}"
                )

        extra = sorted(e for e in os.listdir(dir_fd)
                       if e not in files and e != MANIFEST_NAME and _looks_like_model_file(e))
        if extra:
            raise ModelIntegrityError(
                f"model {dir_path} holds model files not listed in its manifest: "
                f"{', '.join(extra)}; remove them or {_RETRAIN}"
            )

        verified: Dict[str, Dict[str, bytes]] = {}
        keep_files = {f for n in wanted for f in by_name[n]} if keep else set()
        for fname, entry in files.items():
            path = f"{dir_path.rstrip('/')}/{fname}"
            fd, st = _open_member(dir_fd, dir_path, fname, trusted, ModelIntegrityError)
            try:
                if st.st_size != entry["bytes"]:
                    raise ModelIntegrityError(
                        f"{path} has {st.st_size} bytes, the manifest says {entry['bytes']}: "
                        f"the model was altered or truncated; {_RETRAIN}"
                    )
                data = _read_fd(fd, entry["bytes"], path)
            finally:
                os.close(fd)
            digest = hashlib.sha256(data).hexdigest()
            if not hmac.compare_digest(digest, entry["sha256"]):
                raise ModelIntegrityError(
                    f"checksum mismatch for {path} (sha256 {digest}, manifest "
                    f"{entry['sha256']}): the model was altered or corrupted; {_RETRAIN}"
                )
            if fname in keep_files:
                name, suffix = fname.rsplit(".", 1)
                verified.setdefault(name, {})["." + suffix] = data
        return manifest, verified
    finally:
        os.close(dir_fd)


# --------------------------------------------------------------------------------------------
# public API: reading


def read_manifest(directory: "os.PathLike[str] | str") -> Dict[str, Any]:
    """Parse and shape-check ``manifest.json`` (no ownership checks, no unpickling).

    For display (``mimizuku status``); use ``verify_model_dir`` to know whether it may be loaded.
    """
    path = os.path.abspath(os.fspath(directory))
    try:
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ModelNotFoundError(
            f"no model directory at {path}; train one with `mimizuku train`"
        ) from None
    except NotADirectoryError:
        raise ModelNotFoundError(f"{path} is not a directory, so not a model directory") from None
    try:
        fd, _st = _open_member(dir_fd, path, MANIFEST_NAME, None, ModelNotFoundError)
        try:
            raw = _read_fd(fd, _MAX_MANIFEST_BYTES, MANIFEST_NAME)
        finally:
            os.close(fd)
    finally:
        os.close(dir_fd)
    return _parse_manifest(raw, path)


def verify_model_dir(directory: "os.PathLike[str] | str", *, names: Optional[List[str]] = None,
                     check_versions: bool = True,
                     trusted_owner_uids: Optional[Set[int]] = None) -> Dict[str, Any]:
    """Run every check ``load_model_dir`` runs, without unpickling; return the manifest."""
    manifest, _ = _verify(directory, names=names, check_versions=check_versions,
                          trusted_owner_uids=trusted_owner_uids, keep=False)
    return manifest


def load_model_dir(directory: "os.PathLike[str] | str", *, names: Optional[List[str]] = None,
                   check_versions: bool = True, trusted_owner_uids: Optional[Set[int]] = None,
                   trusted_classes: Optional[Dict[str, type]] = None
                   ) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Verify the whole directory, then decode the objects named (all by default).

    Returns ``(objects, manifest)``. ``trusted_owner_uids``: owners to trust besides root
    (default: the effective uid when not root). ``trusted_classes``: name -> class of the
    instances the files may hold (format 2; default none: plain data only). A model of the
    pickled format 1 is unpickled after the same checks, with a ``ModelFormatWarning``. Raises a
    ``ModelError`` subclass.
    """
    manifest, verified = _verify(directory, names=names, check_versions=check_versions,
                                 trusted_owner_uids=trusted_owner_uids, keep=True)
    where = os.path.abspath(os.fspath(directory))
    if manifest["format_version"] == PICKLE_FORMAT_VERSION:
        return _unpickle(verified, where), manifest
    objects: Dict[str, Any] = {}
    for name, data in verified.items():
        try:
            objects[name] = load_state(data[".json"], data[".npz"], trusted_classes or {})
        except PlainStateError as e:
            raise ModelIntegrityError(
                f"refusing to load {where}/{name}.json: {e}; model files hold plain data only "
                f"(nothing in them is run); {_RETRAIN}"
            ) from None
    return objects, manifest


def _unpickle(verified: Dict[str, Dict[str, bytes]], where: str) -> Dict[str, Any]:
    """Format 1: pickles, loaded (after every check) until ``PICKLE_FORMAT_DROPPED_IN``."""
    import joblib

    from mimizuku.store.legacy_names import legacy_module_names

    warnings.warn(
        f"model {where} is in the pickled format {PICKLE_FORMAT_VERSION}, which can run code when "
        f"loaded; mimizuku {PICKLE_FORMAT_DROPPED_IN} no longer loads it: retrain with "
        f"`mimizuku train` (or load and save_model it again) to write format {FORMAT_VERSION}",
        ModelFormatWarning, stacklevel=3)
    objects: Dict[str, Any] = {}
    with legacy_module_names():  # models saved before the package was split by role
        for name, data in verified.items():
            objects[name] = joblib.load(io.BytesIO(data[PICKLE_SUFFIX]))
    return objects


# --------------------------------------------------------------------------------------------
# public API: writing


def _sha256_of(path: Path) -> Tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _create_file(path: Path, gid: int) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    if gid != -1:
        os.fchown(fd, -1, gid)
    os.fchmod(fd, _FILE_MODE)
    return fd


def _resolve_gid(group: "int | str | None") -> int:
    if group is None:
        return -1
    if isinstance(group, int):
        return group
    import grp

    return grp.getgrnam(group).gr_gid


def rename_exchange(parent_fd: int, a: str, b: str) -> bool:
    """Atomically swap two entries of a directory with renameat2(RENAME_EXCHANGE).

    Returns False when unavailable here (not Linux, libc without renameat2, old kernel,
    filesystem without support) so the caller falls back; raises OSError on real failures.
    Public: it is the one step of a save that depends on the system, so it is checked against
    the kernel on its own, and replaced (returning False) to run the fallback anywhere.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(parent_fd, os.fsencode(a), parent_fd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", -1)):
        return False
    raise OSError(err, os.strerror(err), b)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _make_parents(path: Path) -> None:
    """mkdir -p with mode 0755 for every level (os.makedirs leaves intermediate ones to umask)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for p in reversed(missing):
        try:
            os.mkdir(p, 0o755)
        except FileExistsError:
            pass


def _json_default(value: Any) -> Any:
    """Let callers put numpy scalars and arrays (thresholds, counts) in the manifest."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"manifest value {value!r} of type {type(value).__name__} is not JSON")


def _is_replaceable(target: Path) -> bool:
    """Only ever replace (and so delete) an empty directory or a previous model directory."""
    try:
        entries = os.listdir(target)
    except FileNotFoundError:
        return True
    return not entries or MANIFEST_NAME in entries


def save_model_dir(directory: "os.PathLike[str] | str", objects: Dict[str, Any],
                   manifest: Optional[Dict[str, Any]] = None, *,
                   group: "int | str | None" = None,
                   trusted_classes: Optional[Dict[str, type]] = None) -> Dict[str, Any]:
    """Write ``objects`` (name -> fitted object) and a checksum manifest, atomically.

    ``manifest`` holds the caller's metadata (training window, counts, thresholds...), merged at
    the top level; it may not override the keys this module owns. ``group`` (gid or name), if
    given, becomes the group of the directory and files (e.g. so a scorer running as ``wazuh``
    can read a model root trained). ``trusted_classes``: name -> class of the instances the
    objects may hold besides plain data (``mimizuku.store.plain_state``); anything else is a
    ``ValueError`` before a byte is written. Returns the manifest written (as JSON types, the same as
    ``load_model_dir`` returns). Replacing an existing directory is refused unless it is empty or
    a model directory (holds ``manifest.json``). If ``directory`` is a symlink, its target is
    replaced; missing parents are created with mode 0755.
    """
    if not objects:
        raise ValueError("save_model_dir: no objects to save")
    for name in objects:
        if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
            raise ValueError(f"save_model_dir: object name {name!r} must match [a-z0-9_]+")
    encoded: Dict[str, Tuple[bytes, bytes]] = {}
    for name, obj in objects.items():  # fail before writing anything
        try:
            encoded[name] = dump_state(obj, trusted_classes or {})
        except PlainStateError as e:
            raise ValueError(f"save_model_dir: object {name!r} cannot be saved: {e}") from None
    extra_meta = dict(manifest or {})
    clash = sorted(k for k in extra_meta if k in _RESERVED_KEYS)
    if clash:
        raise ValueError(f"save_model_dir: manifest keys {clash} are reserved for the model format")
    try:  # fail before writing anything
        json.dumps(extra_meta, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as e:
        raise ValueError(f"save_model_dir: manifest is not JSON-serialisable: {e}") from None
    gid = _resolve_gid(group)

    target = Path(os.path.realpath(os.fspath(directory)))
    parent = target.parent
    if target == parent:
        raise ValueError("save_model_dir: cannot use / as a model directory")
    _make_parents(parent)
    if target.exists() and not target.is_dir():
        raise ModelError(f"cannot save model to {target}: it exists and is not a directory")

    import fcntl

    parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(parent_fd, fcntl.LOCK_EX)  # one save per parent at a time; released on close
        if not _is_replaceable(target):
            raise ModelError(
                f"refusing to replace {target}: it is not a model directory (no {MANIFEST_NAME}) "
                f"and not empty; choose another path or empty it"
            )
        # Leftovers of saves that crashed (the lock guarantees none is running now).
        for entry in os.listdir(parent_fd):
            if entry.startswith((f".{target.name}.tmp-", f".{target.name}.old-")):
                _remove(parent / entry)

        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=parent))  # mode 0700
        try:
            files: Dict[str, Dict[str, Any]] = {}
            for name, parts in encoded.items():
                for suffix, payload in zip(_OBJECT_SUFFIXES[FORMAT_VERSION], parts):
                    fname = name + suffix
                    fd = _create_file(tmp / fname, gid)
                    with os.fdopen(fd, "wb") as f:
                        f.write(payload)
                        f.flush()
                        os.fsync(f.fileno())
                    digest, size = _sha256_of(tmp / fname)
                    files[fname] = {"sha256": digest, "bytes": size}

            written: Dict[str, Any] = {
                "format_version": FORMAT_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "libraries": _library_versions(),
                "files": files,
            }
            written.update(extra_meta)
            data = json.dumps(written, indent=2, sort_keys=True, allow_nan=False,
                              default=_json_default).encode("utf-8")
            fd = _create_file(tmp / MANIFEST_NAME, gid)
            with os.fdopen(fd, "wb") as f:
                f.write(data + b"\n")
                f.flush()
                os.fsync(f.fileno())
            if gid != -1:
                os.chown(tmp, -1, gid)
            os.chmod(tmp, _DIR_MODE)
            fsync_dir(tmp)

            if not target.exists():
                os.rename(tmp.name, target.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
            elif rename_exchange(parent_fd, tmp.name, target.name):
                _remove(tmp)  # now holds the old model
            else:
                aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=parent))
                os.rmdir(aside)  # only wanted a fresh unique name
                os.rename(target.name, aside.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
                try:
                    os.rename(tmp.name, target.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
                except BaseException:
                    os.rename(aside.name, target.name, src_dir_fd=parent_fd, dst_dir_fd=parent_fd)
                    raise
                _remove(aside)
            os.fsync(parent_fd)
        finally:
            _remove(tmp)  # no-op after a successful rename; cleans up after a failure
    finally:
        os.close(parent_fd)
    return json.loads(data)
