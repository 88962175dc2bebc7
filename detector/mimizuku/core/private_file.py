"""Reading a file that holds a secret (API and indexer credentials, the cluster key).

One rule for all of them: a regular file (never through a symlink), owned by root or by the user
running mimizuku, that nobody else may read or write; checked on the open descriptor, so nothing
can be swapped between the check and the read. The first half of that rule (a regular file
owned by root or by that user, ``check_owned``) is also what a file that is no secret but decides
what mimizuku does must pass (the verdict store). Standard library only.
"""
from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict, Type

__all__ = ["check_owned", "read_private_file", "read_private_json"]


def check_owned(st: os.stat_result, path: str, *, what: str, error: Type[Exception], why: str = "") -> None:
    """``error`` unless ``st`` (of the open descriptor) is a regular file owned by root or by the
    user running mimizuku; ``why`` ends the refusal (what the file could do in other hands)."""
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{what} {path} is not a regular file")
    if st.st_uid not in (0, os.geteuid()):
        raise error(f"{what} {path} belongs to uid {st.st_uid}, not root or the user running mimizuku "
                    f"(uid {os.geteuid()}); refusing it{why}")


def read_private_file(path: "os.PathLike[str] | str", *, what: str, limit: int,
                      error: Type[Exception], missing_hint: str = "") -> bytes:
    """The bytes of ``path`` (at most ``limit``), or ``error`` saying what is wrong with it.

    ``what`` names the file in messages ("API credentials file"); ``missing_hint`` is added when
    the file does not exist. Messages never quote the content.
    """
    p = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        raise error(f"{what} {p} not found{missing_hint}") from None
    except OSError as e:
        raise error(f"cannot open {what} {p}: {e.strerror or e} "
                    f"(it must be a regular file, not a symlink)") from None
    try:
        st = os.fstat(fd)
        check_owned(st, p, what=what, error=error)
        if st.st_mode & 0o077:
            raise error(f"{what} {p} is readable or writable by group or others "
                        f"(mode {stat.S_IMODE(st.st_mode):04o}); it holds a secret: chmod 600 {p}")
        data = os.read(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise error(f"{what} {p} is larger than {limit} bytes")
    return data


def read_private_json(path: "os.PathLike[str] | str", *, what: str, limit: int,
                      error: Type[Exception]) -> Dict[str, Any]:
    """A private file holding one JSON object. A parse error names only the line: the message of
    a JSON error may quote the text, which holds a password."""
    raw = read_private_file(path, what=what, limit=limit, error=error)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise error(f"{what} {os.fspath(path)} is not valid JSON (line {getattr(e, 'lineno', '?')})") from None
    if not isinstance(obj, dict):
        raise error(f"{what} {os.fspath(path)} must hold one JSON object")
    return obj
