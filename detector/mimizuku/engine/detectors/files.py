"""File-integrity detector: which files change, how, by whom and on which host.

Local Outlier Factor (as in the original Mimizuku) over the normalised path, the event, the
user who made the change (whodata effective user, else the owner after), the process, and the
agent — plus agent×directory and user×directory tokens, so "www-data writing under /etc" or
"a web server changing /root/.ssh" stand apart even when each value alone is common.

The same new change on several agents within an hour is a roll-out (``mimizuku.engine.fleet``): the
raw score of the k-th other agent's is divided by ``1 + k``.

Novelty (see ``lof``) is judged per agent and per user; a user's first change of a kind their
peers (same agent, same account class) make is weak evidence. For changes made by a package
manager, the files' names are today's packages, so only where in the tree it writes counts.
The same holds for any change that came through a routine change channel (``mimizuku.engine.lineage``:
the package manager's tree, the fleet's configuration management): the channel decides what is
changed, so its files' names, the tool it used and the account it became are not evidence — only
where in the tree it writes, and how (added, modified, deleted).
"""
from __future__ import annotations

import fnmatch
import json
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mimizuku.core import fields
from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.engine.detectors.base import Key
from mimizuku.engine.detectors.lof import LOFDetector
from mimizuku.engine.features import account_class, path_shape, path_tokens
from mimizuku.engine.fleet import WaveJudged
from mimizuku.engine.lineage import BY_SCAN, PACKAGE_TOOLS, ChannelJudged, in_package_tree


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


#: programs that install and upgrade packages (who-data process basenames)
PACKAGE_MANAGERS = PACKAGE_TOOLS


def is_package_manager(process: Optional[str]) -> bool:
    """Whether the process that changed a file is a package manager (``/usr/bin/dpkg``)."""
    return bool(process) and process.rsplit("/", 1)[-1] in PACKAGE_MANAGERS


class FileIntegrityDetector(WaveJudged, ChannelJudged, LOFDetector):
    """LOF over file-integrity changes (rules 550/553/554, any alert with ``syscheck.path``)."""

    name = "files"
    group_weights = {"path": 1.0, "event": 0.5, "user": 0.6, "process": 0.6, "agent": 0.4,
                     "agent_dir": 0.5, "user_dir": 0.5}

    def __init__(self, n_neighbors=5, contamination=DEFAULT_CONTAMINATION, ignore_files=(), ignore_users=(),
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
        return self.with_wave((
            fields.agent_name(alert) or "",
            path_tokens(path, self._hash_names()),
            fields.file_event(alert) or "",
            fields.file_user(alert) or "",
            fields.file_process(alert) or "",
            self.user_kind(alert),
            self.channel_of(alert),
        ), alert)

    _CHANNEL_AT, _WAVE_AT = 6, 7

    def feedback_situation(self, key: Key):
        """What happened: the normalised path and the event; to whom: the agent and the file's user."""
        return json.dumps(["path", list(key[1]), key[2]]), key[0], key[3]

    def training_key(self, key: Key) -> Key:
        # a channel laid to a scan-time change by a day-long look-back depends on the stream read
        # so far, as the wave does: training counts the change as made by nobody in particular
        key = super().training_key(key)
        at = self._CHANNEL_AT
        return key[:at] + ("",) + key[at + 1:] if key[at].endswith(BY_SCAN) else key

    @staticmethod
    def user_kind(alert: Dict[str, Any]) -> str:
        """The account class of the user ``fields.file_user`` names."""
        return account_class(fields.file_account(alert)[1])

    def peer_group(self, key: Key):
        agent, user = key[0], key[3]
        if not user or self.channel(key):
            return None
        return (agent, key[5] if len(key) > 5 else ""), user

    situation_noun = "distinct file changes"

    def account_of(self, key: Key) -> str:
        return key[3] or ""

    def profile_terms(self, key: Key):
        """A change tells its agent's role by where it happened (``mimizuku.engine.peers``)."""
        return key[0], self._dirs(key[1])

    def example(self, alert: Dict[str, Any]) -> str:
        return path_shape(fields.file_path(alert) or "")[:200]

    @staticmethod
    def _dirs(tokens: Tuple[str, ...]) -> List[str]:
        return [t for t in tokens if t.startswith("dir:")][:2]

    def groups(self, key: Key) -> Dict[str, List[str]]:
        agent, toks, event, user, proc = key[:5]
        kind = "kind:" + (key[5] if len(key) > 5 else "")
        dirs = self._dirs(toks)
        # the user and, one level up, the kind of account: a new admin lands near the admins
        return {
            "path": list(toks),
            "event": [event],
            "user": [user or "?", kind],
            "process": [proc or "?"],
            "agent": [agent],
            "agent_dir": [agent + "|" + d for d in dirs],
            "user_dir": [(user or "?") + "|" + d for d in dirs] + [kind + "|" + d for d in dirs],
        }

    def scopes(self, key: Key):
        agent, toks, event, user, proc = key[:5]
        channel = self.channel(key)
        if channel:
            # a routine change channel (package upgrade, configuration management) decides what
            # it changes, with which tool, as whom: only where in the tree and how are evidence
            return [("agent", agent, self._channel_where(channel, toks) + [f"event:{event}"])]
        if is_package_manager(proc):
            # what a package manager writes is named after today's packages: only where in the
            # tree it writes (and who, and how) is evidence, not the files' names
            kinds: List[str] = []
            words = self._dirs(toks)
        else:
            kinds = [t for t in toks if t.startswith("in:")]
            words = [t for t in toks if t.startswith(("w:", "ext:"))] + kinds + self._dirs(toks)
        extra = [f"user:{user}"] if user else []
        extra += [f"process:{proc}"] if proc else []
        out = [("agent", agent, words + extra + [f"event:{event}"])]
        if user:
            out.append(("user", user, self._dirs(toks) + kinds + ([f"process:{proc}"] if proc else [])))
        return out

    def _channel_where(self, channel: str, toks: Tuple[str, ...]) -> List[str]:
        """Where a channel's change is, as evidence: nothing inside the trees only packages write
        to when a package run made it; else the directories that are news both for this agent
        and for the whole fleet (``channel_where_``: a playbook writing under /etc on a host
        where /etc never changed is doing what changes /etc on the other hosts; a playbook
        writing under /root/.ssh where nothing in the fleet ever changed is news)."""
        dirs = self._dirs(toks)
        if channel.startswith("package:") and dirs and in_package_tree(dirs[0][4:] + "/"):
            return []
        where = self.__dict__.get("channel_where_", ())
        return [d for d in dirs if d not in where]

    def _fit_keys(self, keys, weights):
        # the directories that change anywhere in the fleet, before the token counts that use it
        self.channel_where_ = frozenset(d for k in keys for d in self._dirs(k[1]))
        return super()._fit_keys(keys, weights)

    def describe(self, key: Key) -> str:
        agent, toks, event, user, proc = key[:5]
        shape = self.examples_.get(key, "?")
        by = f" by {user}" if user else ""
        via = f" via {proc}" if proc else ""
        channel = self.channel(key)
        through = ""
        if channel:
            through = (f" after a {channel[:-len(BY_SCAN)]} run (found by a scan)" if channel.endswith(BY_SCAN)
                       else f" through {channel}")
        return f"{shape} {event}{by}{via}{through} on {agent}"


#: The name the original library used.
FsNotify = FileIntegrityDetector
