"""The verdict store: where analysts' verdicts (``mimizuku feedback``) are kept, safely.

Verdicts are not part of a model: a retrain installs a new version and a rollback an older one,
and the analyst's word must hold across both. So the store lives *beside* the model directory,
never inside it: ``<parent of the model dir>/feedback/feedback.json`` (for the default
``/var/ossec/mimizuku/models``: ``/var/ossec/mimizuku/feedback/feedback.json``); a model root's
``current`` or ``versions/<v>`` resolve to the root first (``default_path``).

One JSON document, ``{"format": 1, "entries": [...]}`` (each entry as
``mimizuku.engine.feedback.FeedbackEntry.to_json`` writes it), replaced whole
(``mimizuku.core.atomic``): a reader sees the old list or the new one. Writers take an exclusive
``flock`` on ``.feedback.lock`` beside it for the whole read-change-write, so two ``feedback add``
run at once both land. The file is created ``0640`` and its directory ``0750``, owned by the
writer (root) with the group that may read it (the scorer's, ``wazuh``); a verdict can hide
alerts, so a reader refuses a store anyone but root (or the user running mimizuku) could have
written: a symlink, another owner, group or other write permission (``FeedbackStoreError``).

Standard library only.
"""
from __future__ import annotations

import fcntl
import grp
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple, TypeVar

from mimizuku.core.atomic import write_atomic
from mimizuku.core.private_file import check_owned
from mimizuku.store.model_dir import ModelError

__all__ = ["FEEDBACK_DIR", "FEEDBACK_NAME", "FORMAT", "FeedbackStoreError", "FeedbackStore", "default_path",
           "model_root"]

FEEDBACK_DIR = "feedback"
FEEDBACK_NAME = "feedback.json"
LOCK_NAME = ".feedback.lock"
FORMAT = 1
#: the largest store read (about 50,000 verdicts)
MAX_BYTES = 64 << 20
#: the group that may read the store when it exists (the scorer's)
DEFAULT_GROUP = "wazuh"

T = TypeVar("T")


class FeedbackStoreError(ModelError):
    """The verdict store cannot be read or written safely (the message says why and how to fix it).
    A model error: what a model judges with is refused like the model itself (exit 4)."""


def model_root(model_dir: "os.PathLike[str] | str") -> Path:
    """The model root a path belongs to: a root's ``current`` or ``versions/<v>`` give the root;
    a plain model directory is its own root."""
    p = Path(os.path.abspath(model_dir))
    if p.name == "current":
        return p.parent
    if p.parent.name == "versions":
        return p.parent.parent
    return p


def default_path(model_dir: "os.PathLike[str] | str") -> Path:
    """The verdict store that belongs to a model directory or model root (see the module docstring)."""
    return model_root(model_dir).parent / FEEDBACK_DIR / FEEDBACK_NAME


def _group_id(group: Optional[str]) -> Optional[int]:
    """The gid of ``group``; None when not given or unknown (a developer machine without wazuh)."""
    if not group:
        return None
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None


class FeedbackStore:
    """One verdict store file (``path``); ``group``: the group given read access when this
    process may set it (root, or a member)."""

    def __init__(self, path: "os.PathLike[str] | str", group: Optional[str] = DEFAULT_GROUP) -> None:
        self.path = Path(path)
        self.group = group

    # -- reading ---------------------------------------------------------------------------------
    def fingerprint(self) -> Optional[Tuple[int, int, int]]:
        """What changes when the store is rewritten (inode, mtime, size); None when absent."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def load(self) -> List[Any]:
        """The entries (raw JSON objects; ``mimizuku.engine.feedback.FeedbackSet.from_json`` parses
        them). An absent store holds none; an unsafe or unreadable one is an error."""
        p = os.fspath(self.path)
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return []
        except OSError as e:
            raise FeedbackStoreError(f"cannot open verdict store {p}: {e.strerror or e} "
                                     f"(it must be a regular file, not a symlink)") from None
        try:
            st = os.fstat(fd)
            self._check_safe(st, p)
            data = b""
            while len(data) <= MAX_BYTES:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        if len(data) > MAX_BYTES:
            raise FeedbackStoreError(f"verdict store {p} is larger than {MAX_BYTES} bytes")
        try:
            doc = json.loads(data) if data.strip() else {"format": FORMAT, "entries": []}
        except ValueError as e:
            raise FeedbackStoreError(f"verdict store {p} is not JSON: {e}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("entries"), list):
            raise FeedbackStoreError(f"verdict store {p} is not {{'format': 1, 'entries': [...]}}")
        if doc.get("format") != FORMAT:
            raise FeedbackStoreError(f"verdict store {p} has format {doc.get('format')!r}; this mimizuku "
                                     f"reads format {FORMAT}: upgrade mimizuku")
        return doc["entries"]

    @staticmethod
    def _check_safe(st: os.stat_result, p: str) -> None:
        check_owned(st, p, what="verdict store", error=FeedbackStoreError, why=" (verdicts hide alerts)")
        if st.st_mode & 0o022:
            raise FeedbackStoreError(f"verdict store {p} is writable by group or others (mode "
                                     f"{stat.S_IMODE(st.st_mode):04o}): refusing it; chmod 640 {p}")

    # -- writing ---------------------------------------------------------------------------------
    def _prepare_dir(self) -> None:
        d = self.path.parent
        if not d.exists():
            d.mkdir(mode=0o750, parents=True, exist_ok=True)
            gid = _group_id(self.group)
            if gid is not None:
                try:
                    os.chown(d, -1, gid)
                except OSError:
                    pass
        st = os.lstat(d)
        if stat.S_ISLNK(st.st_mode) or st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            raise FeedbackStoreError(f"verdict store directory {d} must be a directory owned by root (or the "
                                     f"user running mimizuku) and not writable by group or others")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's writer lock (``flock`` on ``.feedback.lock`` beside it)."""
        self._prepare_dir()
        fd = os.open(self.path.parent / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def update(self, change: Callable[[List[Any]], T]) -> T:
        """Read the entries under the lock, let ``change`` modify the list in place, write it back
        whole; returns what ``change`` returned. Nothing is written when ``change`` raises."""
        with self.locked():
            entries = self.load()
            out = change(entries)
            self._write(entries)
            return out

    def _write(self, entries: List[Any]) -> None:
        data = json.dumps({"format": FORMAT, "entries": entries}, ensure_ascii=True, sort_keys=True,
                          indent=1).encode() + b"\n"
        write_atomic(self.path, data, mode=0o640, sync_dir=True)
        gid = _group_id(self.group)
        if gid is not None:
            try:
                os.chown(self.path, -1, gid)
            except OSError:  # not root and not a member: the file keeps our group
                pass
        os.chmod(self.path, 0o640)
