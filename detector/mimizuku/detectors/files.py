"""File-integrity detector: which files change, how, by whom and on which host.

Local Outlier Factor (as in the original Mimizuku) over the normalised path, the event, the
user who made the change (whodata effective user, else the owner after), the process, and the
agent — plus agent×directory and user×directory tokens, so "www-data writing under /etc" or
"a web server changing /root/.ssh" stand apart even when each value alone is common.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import fields
from ..features import path_shape, path_tokens
from .base import Key
from .lof import LOFDetector


def path_matches(path: str, patterns: Sequence[str]) -> Optional[str]:
    """The first pattern that matches: a glob (``*``, ``?``, ``[``), else a path prefix, else a basename."""
    base = path.rsplit("/", 1)[-1]
    for p in patterns:
        if any(c in p for c in "*?["):
            if fnmatch.fnmatchcase(path, p) or fnmatch.fnmatchcase(base, p):
                return p
        elif path == p or base == p or (p.endswith("/") and path.startswith(p)) or path.startswith(p.rstrip("/") + "/"):
            return p
    return None


class FileIntegrityDetector(LOFDetector):
    """LOF over file-integrity changes (rules 550/553/554, any alert with ``syscheck.path``)."""

    name = "files"
    group_weights = {"path": 1.0, "event": 0.5, "user": 0.6, "process": 0.6, "agent": 0.4,
                     "agent_dir": 0.5, "user_dir": 0.5}

    def __init__(self, n_neighbors=5, contamination=0.001, ignore_files=(), ignore_users=(),
                 max_samples=20000, n_features=1024, novelty_weight=0.5):
        super().__init__(n_neighbors=n_neighbors, contamination=contamination,
                         max_samples=max_samples, n_features=n_features, novelty_weight=novelty_weight)
        self.ignore_files = ignore_files
        self.ignore_users = ignore_users

    def applies(self, alert: Dict[str, Any]) -> bool:
        return fields.is_fim(alert)

    def ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        path = fields.file_path(alert) or ""
        m = path_matches(path, self.ignore_files) if self.ignore_files else None
        if m:
            return f"path matches ignore_files entry {m!r}"
        user = fields.file_user(alert) if self.ignore_users else None
        if user is not None and user in self.ignore_users:
            return f"user {user!r} is in ignore_users"
        return None

    def key(self, alert: Dict[str, Any]) -> Key:
        path = fields.file_path(alert) or ""
        return (
            fields.agent_name(alert) or "",
            path_tokens(path),
            fields.file_event(alert) or "",
            fields.file_user(alert) or "",
            fields.file_process(alert) or "",
        )

    def example(self, alert: Dict[str, Any]) -> str:
        return path_shape(fields.file_path(alert) or "")[:200]

    @staticmethod
    def _dirs(tokens: Tuple[str, ...]) -> List[str]:
        return [t for t in tokens if t.startswith("dir:")][:2]

    def groups(self, key: Key) -> Dict[str, List[str]]:
        agent, toks, event, user, proc = key
        dirs = self._dirs(toks)
        return {
            "path": list(toks),
            "event": [event],
            "user": [user or "?"],
            "process": [proc or "?"],
            "agent": [agent],
            "agent_dir": [agent + "|" + d for d in dirs],
            "user_dir": [(user or "?") + "|" + d for d in dirs],
        }

    def scopes(self, key: Key):
        agent, toks, event, user, proc = key
        kinds = [t for t in toks if t.startswith("in:")]
        words = [t for t in toks if t.startswith(("w:", "ext:"))] + kinds + self._dirs(toks)
        extra = [f"user:{user}"] if user else []
        extra += [f"process:{proc}"] if proc else []
        out = [("agent", agent, words + extra + [f"event:{event}"])]
        if user:
            out.append(("user", user, self._dirs(toks) + kinds + ([f"process:{proc}"] if proc else [])))
        return out

    def describe(self, key: Key) -> str:
        agent, toks, event, user, proc = key
        shape = self.examples_.get(key, "?")
        by = f" by {user}" if user else ""
        via = f" via {proc}" if proc else ""
        return f"{shape} {event}{by}{via} on {agent}"


#: The name the original library used.
FsNotify = FileIntegrityDetector
