"""Files replaced whole: a crash leaves the old content or the new, never half of either.

Bookmarks, journals, status files, model manifests, history logs and publications are all
written the same way: into a fresh temporary file beside the target (created exclusively and
never through a symlink, so a planted link cannot redirect the write), flushed to disk when the
file matters after a power loss, renamed over the target (``rename(2)`` is atomic), and the
directory synced so the rename itself survives. One implementation, so every writer gets the
same guarantees (and a short ``write(2)`` is never mistaken for a whole one).
"""
from __future__ import annotations

import errno
import os
import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


def fsync_dir(path: PathLike) -> None:
    """Make a rename or a creation in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    """``write(2)`` until every byte is written (a single call may write fewer); a call that
    writes nothing (a full disk that does not say so) raises ``OSError(ENOSPC)`` rather than
    looping forever."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.ENOSPC, "no byte written")
        view = view[n:]


@contextmanager
def removed_on_failure(tmp: PathLike) -> Iterator[None]:
    """Remove the temporary file ``tmp`` when the block fails (then re-raise): a write or a rename
    that did not happen leaves nothing half-done beside its target."""
    try:
        yield
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_atomic(path: PathLike, data: bytes, *, mode: int = 0o640, fsync: bool = True,
                 sync_dir: bool = False) -> None:
    """Replace ``path`` with ``data`` atomically.

    ``fsync``: flush the data before the rename (what must survive a power loss);
    ``sync_dir``: also flush the directory after it (the new name itself). Raises ``OSError``;
    the temporary file is removed when anything fails.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    with removed_on_failure(tmp):
        try:
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    if sync_dir:
        fsync_dir(target.parent)
