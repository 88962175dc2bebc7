"""Setting one alert aside when handling it failed in a way nobody foresaw.

An alert that makes the engine, an encoder or any other step raise must not take the rest of the
stream down with it, and must not vanish either: its bytes are copied, exactly as they came, into
a quarantine directory where an operator finds them (and can replay them once the cause is
fixed), and the caller goes on. The integratord call and the resident scorer share this layout,
so one place holds every such alert:

``<directory>/<time_ns>-<sha256[:16]>.alert``  the payload, byte for byte (0640)
``<directory>/<time_ns>-<sha256[:16]>.reason`` one line: why it was set aside (0640)

The same payload set aside twice (a scorer retrying it) is kept once. The directory is bounded
in count and in bytes: past either bound :func:`set_aside` raises :class:`QuarantineFull` and the
caller must report the alert as lost, rather than fill the disk. Standard library only (the
integratord fast path's full path uses it).
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Union

from mimizuku.core.atomic import write_atomic
from mimizuku.core.text import printable

__all__ = ["DIR_NAME", "MAX_ITEMS", "MAX_BYTES", "QuarantineFull", "set_aside"]

#: the quarantine's directory under the spool directory (the call's and the scorer's alike)
DIR_NAME = "quarantine"

#: at most this many alerts are kept aside
MAX_ITEMS = 1000
#: and at most this many bytes (payloads and reasons together)
MAX_BYTES = 256 * 1024 * 1024
ALERT_SUFFIX = ".alert"
REASON_SUFFIX = ".reason"


class QuarantineFull(OSError):
    """The quarantine directory cannot take the alert (bounds reached, not writable)."""


def _usage(directory: Path) -> "tuple[int, int, dict]":
    """(alerts kept, bytes used, {hash: path of its copy})."""
    count = used = 0
    by_hash = {}
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
                continue
            try:
                used += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
            if entry.name.endswith(ALERT_SUFFIX):
                count += 1
                digest = entry.name[:-len(ALERT_SUFFIX)].rpartition("-")[2]
                by_hash[digest] = Path(entry.path)
    return count, used, by_hash


def set_aside(directory: Union[str, "os.PathLike[str]"], payload: Union[bytes, str], reason: str, *,
              max_items: int = MAX_ITEMS, max_bytes: int = MAX_BYTES) -> Path:
    """Keep ``payload`` (the alert as it came) in ``directory`` with ``reason``; return its path.

    Raises :class:`QuarantineFull` when the bounds are reached or the directory cannot be
    written; the caller then says the alert is lost (it must not pretend it was kept).
    """
    data = payload.encode("utf-8", "surrogateescape") if isinstance(payload, str) else bytes(payload)
    why = (printable(reason, 2000) + "\n").encode("utf-8", "replace")
    digest = hashlib.sha256(data).hexdigest()[:16]
    where = Path(directory)
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o750)
        count, used, by_hash = _usage(where)
    except OSError as e:
        raise QuarantineFull(f"cannot use quarantine directory {where}: {e.strerror or e}") from e
    if digest in by_hash:
        return by_hash[digest]  # already kept: once is enough
    if count >= max_items:
        raise QuarantineFull(f"quarantine {where} is full ({count} alerts, at most {max_items})")
    if used + len(data) + len(why) > max_bytes:
        raise QuarantineFull(f"quarantine {where} is full ({used} bytes used, at most {max_bytes}; "
                             f"this alert has {len(data)})")
    stem = f"{time.time_ns():020d}-{digest}"
    target = where / (stem + ALERT_SUFFIX)
    try:
        write_atomic(where / (stem + REASON_SUFFIX), why, mode=0o640, fsync=False)
        write_atomic(target, data, mode=0o640, sync_dir=True)
    except OSError as e:
        raise QuarantineFull(f"cannot write to quarantine {where}: {e.strerror or e}") from e
    return target
