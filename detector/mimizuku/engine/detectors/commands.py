"""Command detector: which programs, with which arguments, are run by whom and where.

Local Outlier Factor over the tokens of audited commands (rule 80792, ``data.audit.execve``) and
sudo commands (rule 5402, ``data.command``), the user, the user it ran as, and the agent —
plus user×program and agent×program tokens. Shell constructs (``>&``, pipes, ``/dev/tcp``)
are tokens of their own, because they are what reverse shells are made of.

The same new command on several agents within an hour is a roll-out (``mimizuku.engine.fleet``): the
raw score of the k-th other agent's is divided by ``1 + k``.

A command run by a routine change channel (``mimizuku.engine.lineage``: a descendant of the package
manager or of the fleet's configuration management; the tool itself is judged as any command)
runs what the channel decided: ``update-initramfs`` during a kernel upgrade, ``useradd`` when a
playbook onboards an admin. Its program and words are then not evidence, nor is the account it
became; how it runs — shell constructs, URLs — still is.

Some argument positions are variables, not evidence: a developer's compiler gets a fresh file
name almost every time (``cc -c -o build/foxosg.o src/vhuwzl.c``), as gcc's ``as`` gets its
``/tmp/cc*.s``. As template-mining log parsers (Drain) learn which positions of a log line vary,
training learns *volatile slots* — (agent, program, file extension) where most occurrences were
fresh names (``volatile_slots_``) — and the key then folds a name in such a slot into a placeholder
(``foxosg.o`` -> ``*.o``, token ``var:*.o``), in training and scoring alike. A project that
compiles the same files again and again has no volatile slot, so its first ``rootkit.c`` is
still new; directory words (``/tmp/rk.o``: ``tmp``), programs, flags, URLs and shell constructs
are never folded. How surprising a new word is on a host (the novelty term's Good–Turing
surprise) is still measured on the names as they came. See docs/volatile-arguments.md.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from typing import Any, Dict, FrozenSet, Iterable, List, Optional, Tuple

import numpy as np

from mimizuku.core import fields
from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.engine.detectors.base import Key
from mimizuku.engine.detectors.lof import LOFDetector
from mimizuku.engine.features import account_class, command_shape, command_tokens
from mimizuku.engine.fleet import WaveJudged
from mimizuku.engine.lineage import ChannelJudged

#: Volatile-slot thresholds. 20 distinct names: fewer is what one person's few one-off builds or
#: downloads give (and what an attacker who ran a tool a few times in the training window could
#: plant); 20 names in at most 40 uses of one program with one extension is a generator of names,
#: not a habit. 0.5: at least every other use brings a name never seen before, i.e. a new name
#: is what this slot usually holds; a project rebuilding its 50 files daily sits near 0.01.
VOLATILE_MIN_WORDS = 20
VOLATILE_MIN_FRESH = 0.5


class CommandDetector(WaveJudged, ChannelJudged, LOFDetector):
    """LOF over audited and sudo commands."""

    name = "commands"
    group_weights = {"command": 1.0, "user": 0.6, "run_as": 0.3, "agent": 0.4,
                     "user_prog": 0.5, "agent_prog": 0.4}

    def __init__(self, n_neighbors=5, contamination=DEFAULT_CONTAMINATION, ignore_users=(), ignore_user_ids=(),
                 max_samples=20000, n_features=1024, novelty_weight=0.5,
                 volatile_min_words=VOLATILE_MIN_WORDS, volatile_min_fresh=VOLATILE_MIN_FRESH):
        super().__init__(n_neighbors=n_neighbors, contamination=contamination,
                         max_samples=max_samples, n_features=n_features, novelty_weight=novelty_weight)
        self.ignore_users = ignore_users
        self.ignore_user_ids = ignore_user_ids
        #: a slot is volatile with at least this many distinct names (None or 0: never fold) ...
        self.volatile_min_words = volatile_min_words
        #: ... and at least this share of its occurrences being first sightings
        self.volatile_min_fresh = volatile_min_fresh

    def __setstate__(self, state):
        super().__setstate__(state)
        # models pickled before volatile slots existed: the defaults (get_params must answer);
        # without ``volatile_slots_`` they fold nothing, as they were fitted
        self.__dict__.setdefault("volatile_min_words", VOLATILE_MIN_WORDS)
        self.__dict__.setdefault("volatile_min_fresh", VOLATILE_MIN_FRESH)

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
        agent = fields.agent_name(alert) or ""
        toks = command_tokens(cmd, self._hash_names())
        slots = self._slot_exts()
        if slots and toks:
            toks = fold_volatile(toks, slots.get((agent, toks[0])))
        return self.with_wave((
            agent,
            toks,
            fields.command_user(alert) or "",
            fields.command_run_as(alert) or "",
            self.user_kind(alert),
            self.channel_of(alert),
        ), alert)

    _CHANNEL_AT, _WAVE_AT = 5, 6

    # -- volatile argument slots --------------------------------------------------------------
    def begin_fit(self) -> None:
        super().begin_fit()
        # a refit starts clean: keys are counted unfolded, the slots are learnt in end_fit
        self.__dict__.pop("volatile_slots_", None)

    def observe(self, alert: Dict[str, Any], key: Optional[Key] = None) -> None:
        k = self.key(alert) if key is None else key
        if _has_folded(k[1]):
            # a key folded by the model in use (the nightly job shares the keys its anomaly
            # filter computed): training counts names as they are, and learns the slots anew
            k = CommandDetector.key(self, alert)
        self._count(self.training_key(k), alert)

    def end_fit(self) -> "CommandDetector":
        # after merge_state: the slots are learnt from every partition's counts together
        counts = self._counts
        slots = self.learn_volatile_slots(counts) if self.volatile_min_words else {}
        self.volatile_slots_ = slots
        self.__dict__.pop("_slots_by_prog", None)
        if slots:
            # distinct keys that differ only by a folded name would be duplicate LOF rows:
            # merge them (counts add up; the first one seen gives the example) before fitting
            by_prog = self._slot_exts()
            examples = self.__dict__.get("_examples") or {}
            merged: Counter = Counter()
            merged_examples: Dict[Key, str] = {}
            for k, n in counts.items():
                exts = by_prog.get((k[0], k[1][0])) if k[1] else None
                toks = fold_volatile(k[1], exts)
                fk = k if toks is k[1] else k[:1] + (toks,) + k[2:]
                merged[fk] += n
                if fk not in merged_examples and k in examples:
                    ex = examples[k]
                    merged_examples[fk] = ex if fk is k else fold_text(ex, exts)
            self._counts = merged
            self._examples = merged_examples
            self._unfolded = counts   # for the scopes' surprise (_fit_token_counts)
        return super().end_fit()

    def _fit_token_counts(self, keys: List[Key], weights) -> None:
        """Token counts of the folded keys, with each scope's surprise measured on the names as
        they came. The fold says that a fresh name in a volatile slot is no evidence; it does not
        make the host quieter than it is: a CI runner whose assembler reads a new temporary file
        every job still sees new words all day, and a new word there is still less news (the
        Good–Turing missing mass counts the fresh names as the singletons they were)."""
        unfolded = self.__dict__.pop("_unfolded", None)
        surprise = None
        if unfolded is not None:
            super()._fit_token_counts(list(unfolded), np.fromiter(unfolded.values(), dtype=float, count=len(unfolded)))
            surprise = self.scope_surprise_
        super()._fit_token_counts(keys, weights)
        if surprise is not None:
            self.scope_surprise_ = surprise

    def learn_volatile_slots(self, counts: "Counter[Key]") -> Dict[Tuple[str, str, str], Tuple[int, int]]:
        """(agent, program token, extension) -> (distinct names, occurrences) of the volatile slots.

        An occurrence is a file-name word (``file_words``) of a command in that slot, weighted
        by the alerts of its key; names already reduced to a shape (``*.o``) are no evidence
        either way and are left out. Volatile: at least ``volatile_min_words`` distinct names,
        and at least ``volatile_min_fresh`` of the occurrences were first sightings (distinct /
        occurrences). Per agent: a developer's workstation that names every object file anew
        and a CI runner that rebuilds the same sources (gcc's ``cc1`` is ``prog:cc`` too, digits
        being stripped) are different slots, and neither dilutes nor lends to the other."""
        names: Dict[Tuple[str, str, str], set] = defaultdict(set)
        seen: Counter = Counter()
        for k, n in counts.items():
            for prog, stem, ext in file_words(k[1]):
                if "*" in stem:
                    continue
                slot = (k[0], prog, ext)
                names[slot].add(stem)
                seen[slot] += n
        min_words = int(self.volatile_min_words)
        return {slot: (len(ws), int(seen[slot])) for slot, ws in names.items()
                if len(ws) >= min_words and len(ws) >= self.volatile_min_fresh * seen[slot]}

    def _slot_exts(self) -> Dict[Tuple[str, str], FrozenSet[str]]:
        """The fitted volatile slots: (agent, program) -> extensions ({} before fitting and for
        models fitted before slots existed)."""
        by_prog = self.__dict__.get("_slots_by_prog")
        if by_prog is None:
            slots = self.__dict__.get("volatile_slots_") or {}
            acc: Dict[Tuple[str, str], set] = defaultdict(set)
            for agent, prog, ext in slots:
                acc[(agent, prog)].add(ext)
            by_prog = self._slots_by_prog = {p: frozenset(e) for p, e in acc.items()}
        return by_prog

    @staticmethod
    def user_kind(alert: Dict[str, Any]) -> str:
        """The user's peer class: sudo's users are sudoers; audited commands go by the uid's range."""
        if fields.rule_id(alert) in fields.SUDO_RULES:
            return "sudoer"
        return account_class(fields._str(fields._get(alert, "data", "audit", "uid")))

    def peer_group(self, key: Key):
        agent, user = key[0], key[2]
        if not user or self.channel(key):
            return None
        return (agent, key[4] if len(key) > 4 else ""), user

    situation_noun = "distinct commands"

    def account_of(self, key: Key) -> str:
        return key[2] or ""

    def feedback_situation(self, key: Key):
        """What happened: the normalised command tokens (volatile arguments folded); to whom: the
        agent and the account that ran it."""
        return json.dumps(["command", list(key[1])]), key[0], key[2]

    def profile_terms(self, key: Key):
        """A command tells its agent's role by its program (``mimizuku.engine.peers``)."""
        return key[0], [self._prog(key[1])]

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
        if self.channel(key):
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
        channel = self.channel(key)
        through = f" through {channel}" if channel else ""
        return f"`{shape}`{by}{through} on {agent}"

    _MEMOS = ("_slots_by_prog",)  # rebuilt from volatile_slots_ on first use
    _UNSAVED = ("_unfolded",)     # training only


#: tokens that say how a command runs rather than what it runs (see ``features.command_tokens``)
_HOW = ("meta:", "url:")


#: the prefix of a folded name's token (``var:*.o``; reasons show it as ``*.o``)
FOLDED = "var:"

#: a command word that names a file: a stem of name characters (letters, digits, ``_ + - *``; no
#: dot, so neither ``pool.example.com`` nor ``x.tar.gz`` qualifies) and a short alphanumeric
#: extension with a letter (``.o``, ``.c``, ``.py``, ``.json``). Words are lower-cased and
#: split at ``/``, so directories are words of their own and never part of a name.
_FILE_WORD_RE = re.compile(r"w:([a-z0-9_+*-]{1,64})\.([a-z]{1,5})")
#: the same in the raw command text (for the examples reasons quote)
_DIGITS_RE = re.compile(r"\d+")   # tokens have none left (features strips them); raw text has
_FILE_TEXT_RE = re.compile(r"(?<![^\s/=:,;'\"])[A-Za-z0-9_+*-]{1,64}\.([A-Za-z0-9]{1,5})(?![^\s/=:,;'\"])")


def file_words(toks: Iterable[str]) -> List[Tuple[str, str, str]]:
    """(program token, stem, extension) of the file-name words of a command's tokens.

    Nothing for a command that carries a URL: its words are a host and a remote path, not local
    files, and stay as they are. (Command words have no digits left: ``features`` strips them.)"""
    toks = tuple(toks)
    if not toks or not toks[0].startswith("prog:") or any(t.startswith("url:") for t in toks):
        return []
    out = []
    for t in toks:
        if t.startswith("w:"):
            m = _FILE_WORD_RE.fullmatch(t)
            if m:
                out.append((toks[0], m.group(1), m.group(2)))
    return out


def fold_volatile(toks: Tuple[str, ...], exts: Optional[FrozenSet[str]]) -> Tuple[str, ...]:
    """``toks`` with the file names whose extension is in ``exts`` (the volatile slots of the
    command's agent and program) folded: ``w:foxosg.o`` -> ``var:*.o``. The very tuple when
    nothing folds."""
    if not exts:
        return toks
    folded = {f"w:{stem}.{ext}": FOLDED + "*." + ext for _p, stem, ext in file_words(toks) if ext in exts}
    if not folded:
        return toks
    return tuple(dict.fromkeys(folded.get(t, t) for t in toks))


def fold_text(text: str, exts: Optional[FrozenSet[str]]) -> str:
    """A command line with the names of its volatile slots shown as ``*.ext`` (for reasons)."""
    if not exts:
        return text

    def sub(m: "re.Match[str]") -> str:
        return "*." + m.group(1) if _DIGITS_RE.sub("", m.group(1).lower()) in exts else m.group(0)

    return _FILE_TEXT_RE.sub(sub, text)


def _has_folded(toks: Iterable[str]) -> bool:
    return any(t.startswith(FOLDED) for t in toks)


#: The name the original library used.
AuditCommand = CommandDetector
