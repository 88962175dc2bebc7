"""Command detector: which programs, with which arguments, are run by whom and where.

Local Outlier Factor over the tokens of audited commands (rule 80792, ``data.audit.execve``) and
sudo commands (rule 5402, ``data.command``), the user, the user it ran as, and the agent —
plus user×program and agent×program tokens. Shell constructs (``>&``, pipes, ``/dev/tcp``)
are tokens of their own, because they are what reverse shells are made of.

The same new command on several agents within an hour is a roll-out (``mimizuku.fleet``): the
raw score of the k-th other agent's is divided by ``1 + k``.

A command run by a routine change channel (``mimizuku.lineage``: a descendant of the package
manager or of the fleet's configuration management; the tool itself is judged as any command)
runs what the channel decided: ``update-initramfs`` during a kernel upgrade, ``useradd`` when a
playbook onboards an admin. Its program and words are then not evidence, nor is the account it
became; how it runs — shell constructs, URLs — still is.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from .. import fields
from ..features import account_class, command_shape, command_tokens
from ..fleet import WaveJudged
from ..lineage import ChannelJudged
from .base import Key
from .lof import LOFDetector


class CommandDetector(WaveJudged, ChannelJudged, LOFDetector):
    """LOF over audited and sudo commands."""

    name = "commands"
    group_weights = {"command": 1.0, "user": 0.6, "run_as": 0.3, "agent": 0.4,
                     "user_prog": 0.5, "agent_prog": 0.4}

    def __init__(self, n_neighbors=5, contamination=0.001, ignore_users=(), ignore_user_ids=(),
                 max_samples=20000, n_features=1024, novelty_weight=0.5):
        super().__init__(n_neighbors=n_neighbors, contamination=contamination,
                         max_samples=max_samples, n_features=n_features, novelty_weight=novelty_weight)
        self.ignore_users = ignore_users
        self.ignore_user_ids = ignore_user_ids

    def applies(self, alert: Dict[str, Any]) -> bool:
        return fields.is_command(alert)

    def ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        user = fields.command_user(alert) if self.ignore_users else None
        if user is not None and user in self.ignore_users:
            return f"user {user!r} is in ignore_users"
        if self.ignore_user_ids:
            uid = fields._str(fields._get(alert, "data", "audit", "uid"))
            if uid is not None and uid in {str(u) for u in self.ignore_user_ids}:
                return f"uid {uid} is in ignore_user_ids"
        return None

    def key(self, alert: Dict[str, Any]) -> Key:
        cmd = fields.command_line(alert) or ""
        return self.with_wave((
            fields.agent_name(alert) or "",
            command_tokens(cmd),
            fields.command_user(alert) or "",
            fields.command_run_as(alert) or "",
            self.user_kind(alert),
            self.channel_of(alert),
        ), alert)

    _CHANNEL_AT, _WAVE_AT = 5, 6

    @staticmethod
    def user_kind(alert: Dict[str, Any]) -> str:
        """The user's peer class: sudo's users are sudoers; audited commands go by the uid's range."""
        if fields.rule_id(alert) in fields.SUDO_RULES:
            return "sudoer"
        return account_class(fields._str(fields._get(alert, "data", "audit", "uid")))

    def peer_group(self, key: Key):
        agent, user = key[0], key[2]
        if not user or self._channel(key):
            return None
        return (agent, key[4] if len(key) > 4 else ""), user

    def example(self, alert: Dict[str, Any]) -> str:
        return command_shape(fields.command_line(alert) or "", 120)

    @staticmethod
    def _prog(toks) -> str:
        return next((t for t in toks if t.startswith("prog:")), "prog:?")

    def groups(self, key: Key) -> Dict[str, List[str]]:
        agent, toks, user, run_as = key[:4]
        kind = "kind:" + (key[4] if len(key) > 4 else "")
        prog = self._prog(toks)
        # the user and, one level up, the kind of account: a new admin lands near the admins
        return {
            "command": list(toks),
            "user": [user or "?", kind],
            "run_as": [run_as or "?"],
            "agent": [agent],
            "user_prog": [(user or "?") + "|" + prog, kind + "|" + prog],
            "agent_prog": [agent + "|" + prog],
        }

    def scopes(self, key: Key):
        agent, toks, user, run_as = key[:4]
        if self._channel(key):
            # a routine change channel decides what it runs: only how it runs is evidence
            return [("agent", agent, [t for t in toks if t.startswith(_HOW)])]
        out = [("agent", agent, list(toks) + ([f"user:{user}"] if user else []))]
        if user:
            out.append(("user", user, list(toks)))
        return out

    def describe(self, key: Key) -> str:
        agent, toks, user, run_as = key[:4]
        shape = self.examples_.get(key, "?")
        by = f" by {user}" if user else ""
        channel = self._channel(key)
        through = f" through {channel}" if channel else ""
        return f"`{shape}`{by}{through} on {agent}"


#: tokens that say how a command runs rather than what it runs (see ``features.command_tokens``)
_HOW = ("meta:", "url:")


#: The name the original library used.
AuditCommand = CommandDetector
