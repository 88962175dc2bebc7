"""A failure reported once, not once per event: shared by every process that delivers.

The integration script runs once per alert; when analysisd's socket or the API is down, each
call would log the same failure again. A small state file per topic remembers across processes
that the failure was reported (and of which kind), so the log says when it starts, when its kind
changes and when it ends.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from mimizuku.core.atomic import write_atomic
from mimizuku.core.logfn import LogFn


class FailureNotice:
    """Remembers across processes that a failure was already reported, so it is logged once.

    The state is one small file per topic (``<directory>/.<topic>.failing``) holding the kind of
    the current failure; a new kind is reported again, and the recovery is reported once.
    """

    def __init__(self, directory: "os.PathLike[str] | str", topic: str, log: LogFn):
        self.path = Path(directory) / f".{topic}.failing"
        self.log = log

    def current(self) -> Optional[str]:
        try:
            return self.path.read_text(encoding="utf-8").strip() or "unknown"
        except OSError:
            return None

    def failing(self, kind: str, message: str, level: str = "error") -> None:
        if self.current() == kind:
            return
        self.log(level, message)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, (kind + "\n").encode("utf-8"), fsync=False)
        except OSError:
            pass  # cannot remember: we may log again next time, which is acceptable

    def recovered(self, message: str) -> None:
        if self.current() is None:
            return
        try:
            self.path.unlink()
        except FileNotFoundError:
            return  # somebody else reported the recovery
        except OSError:
            pass
        self.log("info", message)
