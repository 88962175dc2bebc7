"""Context detector: is this alert usual for this rule, host, user, hour and rate?

In the spirit of AnomalyHunter: every alert becomes a point — rule id, rule groups, level,
agent, user, source-address class, Windows provider/event id or IDS signature (one-hot, never
ordinal codes), hour
of day (on a circle), and how often this rule fired on this agent in the trailing window (log2
scale, so a dirb flood or a brute force stands out from the same rule at its usual rate) — and
DBSCAN (weighted by how often each situation occurred) finds the dense regions of normal activity.

Every categorical difference costs more than ``eps`` (one-hot weights >= eps), so DBSCAN
neighbourhoods never cross a *block* (same rule, agent, user, address class, Windows event):
clustering each block on its own (hour, rate) points is exactly DBSCAN on the whole space, at a
fraction of the cost. DBSCAN has no ``predict``: a new alert's raw score is its distance to the
nearest core sample beyond ``eps`` (0 for core and border points: they belong to a cluster),
searched across blocks in order of block distance.

A new situation that appears on several agents at once is a roll-out, not an intrusion
(``mimizuku.engine.fleet``): when an alert's block was never seen in training (or its rule never fired
on its agent at that hour), it is the only alert of its rule on its agent within the rate window
or it names no source address (a burst from an address is a scan or a flood, and a scan of
several hosts is no roll-out; a burst with no source is the host's own doing, like the dpkg
alerts of an upgrade), and the same block (but for the agent) appeared as new on ``k`` other
agents within the last hour, its raw score is divided by ``1 + k``. The first host of a wave is
judged in full.

A failed login's user is the account an attempt *named*, which whoever tries chooses: an internet
brute force names a new one every few seconds. It is no entity, so the blocks of
``FAILED_LOGIN_GROUPS`` carry no user (the source address class and the rates still tell a brute
force); a model fitted before this rule keeps the users its blocks were fitted with.
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict, deque
from functools import reduce
from operator import or_
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

from mimizuku.core import fields
from mimizuku.core.bounded import make_room
from mimizuku.core.fields import seconds_and_hour
from mimizuku.core.json_keys import decode_key, keyed_rows
from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.engine.baselines import EntityBaselines
from mimizuku.engine.calibration import TailCalibrator
from mimizuku.engine.detectors.base import Detector, Key
from mimizuku.engine.fleet import FleetWave, shared_along_waves, wave_reason
from mimizuku.engine.lineage import BY_SCAN, ChannelAware

# feature weights: categorical ones must exceed eps / sqrt(2) so blocks never touch
W_RULE, W_GROUPS, W_LEVEL, W_AGENT, W_USER, W_IPCLASS, W_WIN = 1.0, 0.5, 0.5, 1.0, 0.7, 0.6, 1.0
MAX_EPS = min(W_RULE, W_AGENT, W_USER, W_IPCLASS, W_WIN) * math.sqrt(2) * 0.99
#: Wazuh's own rule groups for switching identity: ``su`` (syslog su rules 5300-5306) and ``sudo``
#: (5400-5407), see ruleset/rules/0020-syslog_rules.xml. An identity switch where none happened in
#: training is a step further from normal than a new session or service rule: W_PRIV is added to
#: the distance from any block that is not one (prior knowledge, not learnt from the data).
PRIVILEGE_GROUPS = frozenset({"su", "sudo"})
W_PRIV = 0.7
#: Wazuh's rule groups for a failed or refused login (sshd 5710/5712/5758/5760/5763, PAM 5503,
#: Dovecot 9705/9751, Windows 4625 …): the account such an alert names is an attempt's choice, not
#: who acted, and is left out of the block (module docstring).
FAILED_LOGIN_GROUPS = frozenset({"authentication_failed", "authentication_failures", "invalid_login"})
#: the days a training situation occurred on, as bits of (day mod DAY_BITS) since the epoch: a
#: window longer than that counts fewer days (never more). The modulus is even, so a bit keeps its
#: day's parity: EVEN_DAYS selects the even days (the cross-fitted halves).
DAY_BITS = 64
EVEN_DAYS = int("01" * (DAY_BITS // 2), 2)


class RateTracker:
    """Alerts per key in a trailing window, in one-second buckets (bounded memory per key)."""

    def __init__(self, window: int = 60):
        self.window = window
        self._q: Dict[Any, Deque[List[int]]] = {}
        self._n: Dict[Any, int] = {}
        self._ops = 0

    def observe(self, key: Any, t: Optional[int]) -> int:
        if t is None:
            return 1
        q = self._q.get(key)
        if q is None:
            q = self._q[key] = deque()
            self._n[key] = 0
        if q and t <= q[-1][0] - self.window:
            return 1  # older than the whole window (a replayed spool or archive): not part of this burst
        n = self._n[key]
        while q and q[0][0] <= t - self.window:
            n -= q.popleft()[1]
        if q and q[-1][0] == t:
            q[-1][1] += 1
        elif q and q[-1][0] > t:  # out of order: count it in the newest bucket
            q[-1][1] += 1
        else:
            q.append([t, 1])
        n += 1
        self._n[key] = n
        self._ops += 1
        if self._ops % 100_000 == 0:
            self._prune(t)
        return n

    def _prune(self, now: int) -> None:
        for k in [k for k, q in self._q.items() if not q or q[-1][0] <= now - self.window]:
            del self._q[k]
            del self._n[k]

    def to_json(self, max_keys: int) -> Dict[str, Any]:
        """The windows as JSON (``mimizuku.engine.stream_snapshot``): the ``max_keys`` keys seen
        last, each with its one-second buckets; keys no JSON can hold are left out."""
        newest = max((q[-1][0] for q in self._q.values() if q), default=None)
        if newest is None:
            return {"window": self.window, "keys": []}
        live = [(q[-1][0], k) for k, q in self._q.items() if q and q[-1][0] > newest - self.window]
        live.sort(key=lambda x: x[0])
        return {"window": self.window,
                "keys": keyed_rows((k, [list(b) for b in self._q[k]]) for _, k in live[-max_keys:])}

    @classmethod
    def from_json(cls, doc: Dict[str, Any]) -> "RateTracker":
        """The windows ``to_json`` wrote (``TypeError``/``ValueError`` for anything else)."""
        t = cls(int(doc["window"]))
        for key, buckets in doc["keys"]:
            q: Deque[List[int]] = deque()
            for at, n in buckets:
                if type(at) is not int or type(n) is not int or n < 1 or (q and at <= q[-1][0]):
                    raise ValueError("rate buckets must be increasing whole seconds with counts >= 1")
                q.append([at, n])
            if q:
                k = decode_key(key)
                t._q[k] = q
                t._n[k] = sum(b[1] for b in q)
        return t


#: Wazuh's first-time rules (written with ``<if_fts/>``: analysisd raises them the first time a
#: user does something on a host) and the rule group of what they are the first of. Such a rule
#: has "never fired on this agent" for every user's first time by construction, so that is no news;
#: what tells a surprising first time from an ordinary one is whether *other* users do the same
#: there: a new admin's first login on a host where four admins log in daily is the account
#: catching up with its kind, a first sudo on a host where nobody ever ran sudo is an escalation
#: (AIT shaw's is raised in full). See ``ContextDetector.novelty_of`` and docs/detection.md 1.
FIRST_TIME_RULES = {"10100": "authentication_success", "5403": "sudo"}


def is_privilege_change(groups) -> bool:
    """True for Wazuh's su/sudo rules (by rule group, so local rules in those groups count too)."""
    return not PRIVILEGE_GROUPS.isdisjoint(groups)


def rate_bin(count: int) -> int:
    return max(0, int(count).bit_length() - 1)  # floor(log2(count))


class ContextDetector(ChannelAware, Detector):
    """DBSCAN over the context of every alert; score = distance to the nearest core sample."""

    name = "context"
    #: trailing window of fleet waves (s); a class default so models pickled before it still load
    wave_window = 3600
    #: days a situation must recur on to be routine by itself (see ``block_density``); a class
    #: default so models pickled before it still load (and refit)
    recur_days = 3
    _MEMOS = ("_nn_cache", "_why_cache")
    #: the stream's rate windows and fleet waves; training's running maxima (fitted: max_rate_…)
    _UNSAVED = ("_rates", "_wave", "_max_rate", "_max_src", "_day_bits")
    #: what a new model continues (a hot reload): the rate windows and the waves in progress
    _STREAM = (("rates", "_rates", "rate_window"), ("wave", "_wave", "wave_window"))

    def __init__(self, eps=0.5, min_samples=5, contamination=DEFAULT_CONTAMINATION, rate_window=60,
                 hour_weight=0.35, rate_weight=0.5, ignore_users=(), wave_window=3600, recur_days=3):
        self.eps = eps
        self.min_samples = min_samples
        self.contamination = contamination
        self.rate_window = rate_window
        self.hour_weight = hour_weight
        self.rate_weight = rate_weight
        self.ignore_users = ignore_users
        self.wave_window = wave_window
        self.recur_days = recur_days

    def applies(self, alert: Dict[str, Any]) -> bool:
        return fields.rule_id(alert) is not None

    def ignored(self, alert: Dict[str, Any]) -> Optional[str]:
        if not self.ignore_users:
            return None
        user = fields.any_user(alert)
        if user is not None and user in self.ignore_users:
            return f"user {user!r} is in ignore_users"
        return None

    def defers(self, alert: Dict[str, Any]) -> Optional[str]:
        """What the package manager does where it runs routinely (a dpkg line, a file dpkg
        wrote) is new by design: the files and commands detectors judge how and where it
        changed things, and the command that started the run is judged as any command; its
        context (a rule never seen on that host) is the package's choice, not evidence. A
        change only a scheduled scan laid to a run (``~scan``) is still judged here."""
        ch = self.channel_of(alert)
        if ch.startswith("package:") and not ch.endswith(BY_SCAN):
            return f"made by the package manager ({ch[len('package:'):]}), routine on its agent"
        return None

    def start_stream(self) -> None:
        super().start_stream()
        self._rates = RateTracker(self.rate_window)
        self._wave = FleetWave(self.wave_window)

    # a burst's repeats: the same block (rule, groups, level, agent, user, address class, event)
    # and source, without a long pause (mimizuku.engine.repeats)
    repeat_what = "the same rule, agent, user and source"

    def repeat_situation(self, key: Key):
        return key[0], key[6] if len(key) > 6 else None

    # -- the point of an alert -------------------------------------------------------------------
    def key(self, alert: Dict[str, Any]) -> Key:
        rid = fields.rule_id(alert) or "?"
        agent = fields.agent_name(alert) or fields.agent_id(alert) or "?"
        groups = tuple(sorted(fields.rule_groups(alert)))
        user = fields.any_user(alert) or ""
        if user and self._tries_name_nobody() and FAILED_LOGIN_GROUPS.intersection(groups):
            user = ""
        block = (
            rid,
            groups,
            fields.rule_level(alert),
            agent,
            user,
            fields.ip_class(fields.src_ip(alert)),
            fields.win_event(alert) or fields.ids_signature(alert) or "",
        )
        t, hour = seconds_and_hour(fields.timestamp(alert))
        rates = self.__dict__.get("_rates")
        if rates is None:
            self.start_stream()
            rates = self._rates
        count = rates.observe((agent, rid), t)
        src = fields.src_ip(alert)
        src_count = rates.observe(("src", agent, src), t) if src else 0
        # an alert of a block never seen in training: on how many other agents it just appeared
        # (fleet wave). A burst from a source address is never part of a wave: scans and floods
        # hitting several hosts are what such bursts are. A burst that names no source is the
        # host's own doing, and a roll-out's change is often one (an upgrade: dpkg fires eight
        # times in a minute on each host), so it joins the wave
        known = self.__dict__.get("block_index_")
        wave = 0
        if known is not None and t is not None and (count == 1 or not src) and (
                block not in known or not self.block_hours_.get((agent, rid), 0) >> hour & 1):
            tracker = self.__dict__.get("_wave")
            if tracker is None:  # stream state handed over without it (a hot reload keeps _rates)
                tracker = self._wave = FleetWave(self.wave_window)
            wave = tracker.spread(block[:3] + block[4:], agent, t)
        # situation (block, hour, rule-rate bin, source-rate bin) + the exact counts for reasons
        return (block, -1 if hour is None else hour, rate_bin(count),
                rate_bin(src_count) if src_count else -1, count, src_count, src, wave)

    def key_scheme(self) -> Any:
        return "failed-login-users-ignored" if self._tries_name_nobody() else None

    def _tries_name_nobody(self) -> bool:
        """Whether a failed login's user is left out of its block: always, but in a model fitted
        before that rule (fitted state without ``failed_login_users_``), whose blocks hold them."""
        d = self.__dict__
        return "block_index_" not in d or d.get("failed_login_users_") == "ignored"

    def feedback_situation(self, key: Key):
        """What happened: the rule; to whom: the agent and the alert's user."""
        block = key[0]
        return json.dumps(["rule", block[0]]), block[3], block[4]

    def profile_terms(self, key: Key):
        """A situation tells its agent's role by its rule (``mimizuku.engine.peers``)."""
        block = key[0]
        return block[3], ["rule:" + block[0]]

    @staticmethod
    def situation(key: Key) -> Key:
        """The situation a key counts as: (block, hour, rule-rate bin, source-rate bin).

        The exact counts, the source and the wave ride along in the key for reasons but must not
        split situations. Public: it is the unit training counts and DBSCAN clusters, which the
        nightly day analysis (``ContextClusterer``) clusters too."""
        return key[:4]

    def observe(self, alert: Dict[str, Any], key: Optional[Key] = None) -> None:
        k = self.key(alert) if key is None else key
        s = self.situation(k)
        self._counts[s] += 1
        t = fields.alert_seconds(alert)
        if t is not None:
            day = t // 86400
            if day % 2:
                self._odd_day_counts[s] += 1
            self._day_bits[s] |= 1 << (day % DAY_BITS)
        pair = (s[0][3], s[0][0])
        if k[4] > self._max_rate.get(pair, 0):
            self._max_rate[pair] = k[4]
        if k[5] > self._max_src.get(pair, 0):
            self._max_src[pair] = k[5]

    def begin_fit(self) -> None:
        super().begin_fit()
        # the keys counted from here on, and so the model fitted on them, leave a failed login's
        # user out, a refit of a model fitted before that rule too (_tries_name_nobody)
        self.failed_login_users_ = "ignored"
        self._max_rate: Dict[Tuple[str, str], int] = {}
        self._max_src: Dict[Tuple[str, str], int] = {}
        self._odd_day_counts: Counter = Counter()
        self._day_bits: Dict[Key, int] = defaultdict(int)

    def partial_state(self) -> Dict[str, Any]:
        state = super().partial_state()
        state["max_rate"] = self._max_rate
        state["max_src"] = self._max_src
        state["odd_day_counts"] = self._odd_day_counts
        state["day_bits"] = dict(self._day_bits)
        return state

    def merge_state(self, state: Dict[str, Any]) -> None:
        super().merge_state(state)
        self._odd_day_counts.update(state.get("odd_day_counts") or {})
        for s, bits in (state.get("day_bits") or {}).items():
            self._day_bits[s] |= bits
        for mine, theirs in ((self._max_rate, state.get("max_rate") or {}),
                             (self._max_src, state.get("max_src") or {})):
            for pair, n in theirs.items():
                if n > mine.get(pair, 0):
                    mine[pair] = n

    def continuous_features(self, hour: int, rbin: int, sbin: int) -> Tuple[float, float, float, float]:
        """A situation's coordinates within its block: the hour on a circle, the rule-rate and
        source-rate bins, scaled by ``hour_weight`` and ``rate_weight``. Public: with
        ``block_features`` it is this detector's feature space, which the nightly day analysis
        clusters in and tests compare with one DBSCAN over the whole space."""
        if hour < 0:
            hx = hy = 0.0
        else:
            a = 2 * math.pi * hour / 24
            hx, hy = self.hour_weight * math.cos(a), self.hour_weight * math.sin(a)
        return hx, hy, self.rate_weight * rbin, self.rate_weight * max(sbin, 0)

    @staticmethod
    def block_features(block) -> Dict[str, float]:
        """A block's categorical features (one-hot, each weight above ``eps`` so that blocks
        never touch), by name. Public: see ``continuous_features``."""
        rid, groups, level, agent, user, ipc, win = block
        d = {"r=" + rid: W_RULE, "a=" + agent: W_AGENT, "u=" + (user or "-"): W_USER,
             "ip=" + ipc: W_IPCLASS, "w=" + (win or "-"): W_WIN, "level": W_LEVEL * min(level, 16) / 16}
        if is_privilege_change(groups):
            d["privilege_change"] = W_PRIV
        if groups:
            g = W_GROUPS / math.sqrt(len(groups))
            for x in groups:
                d["g=" + x] = g
        return d

    # -- fitting -------------------------------------------------------------------------------
    def block_density(self, points: np.ndarray, weights: np.ndarray, day_bits: List[int],
                      day_scale: float = 1.0) -> np.ndarray:
        """The weights DBSCAN counts towards ``min_samples`` in one block: a situation's alerts,
        or ``min_samples`` when its neighbourhood (the situations of its block within ``eps``:
        nearby hours and rates) occurred on at least ``recur_days`` distinct days of training.

        Counting alerts alone asks a daily job, a desktop's morning login or a twice-daily
        rootcheck scan for ``min_samples`` days of training before it is routine: with five days
        of training they were the bulk of the false positives on the tuning seeds (generator seeds
        0 and 5). Days are counted as a union over the neighbourhood (a login at 08:00 on Monday
        and Wednesday and at 09:00 on Tuesday is three days), never summed per situation: three
        alerts of one day at three hours stay three alerts (summing made such a block core on AIT
        shaw, and a new ``su`` on that host then looked close to normal). ``day_scale``: the
        cross-fitted halves' factor (their weights are scaled to the whole training set)."""
        if self.recur_days <= 0 or not any(day_bits):
            return weights
        need = self.recur_days / day_scale
        if _popcount(reduce(or_, day_bits, 0)) < need:
            return weights   # not even the whole block recurs
        if len(points) == 1:
            union = day_bits
        else:
            nbrs = NearestNeighbors(radius=self.eps).fit(points).radius_neighbors(points, return_distance=False)
            union = [reduce(or_, (day_bits[j] for j in nb), 0) for nb in nbrs]
        recurs = np.fromiter((_popcount(u) >= need for u in union), dtype=bool, count=len(union))
        return np.where(recurs, np.maximum(weights, self.min_samples), weights)

    def _fit_keys(self, keys: List[Key], weights: np.ndarray, day_scale: float = 1.0) -> np.ndarray:
        """``day_scale``: see ``block_density``; the days each key occurred on are the ones
        ``observe`` counted (``_day_bits``; a cross-fitted half is given its parity's)."""
        if not 0 < self.eps <= MAX_EPS:
            raise ValueError(f"eps must be in (0, {MAX_EPS:.2f}] so that categorical differences exceed it")
        if isinstance(self.recur_days, bool) or not isinstance(self.recur_days, int) or self.recur_days < 0:
            raise ValueError("recur_days must be an int >= 0 (0: density counts alerts only)")
        fit_days = self.__dict__.get("_day_bits") or {}
        self.max_rate_ = self.__dict__.pop("_max_rate", {})
        self.max_src_ = self.__dict__.pop("_max_src", {})
        by_block: Dict[Any, List[int]] = defaultdict(list)
        for i, (block, *_) in enumerate(keys):
            by_block[block].append(i)
        blocks = list(by_block)
        self.blocks_ = blocks
        self.block_index_ = {b: j for j, b in enumerate(blocks)}
        cont = np.array([self.continuous_features(h, r, sb) for (_, h, r, sb) in keys], dtype=float)
        is_core = np.zeros(len(keys), dtype=bool)
        labels = np.full(len(keys), -1, dtype=int)
        self.block_cores_: Dict[int, np.ndarray] = {}
        self.block_core_keys_: Dict[int, List[Key]] = {}
        self.block_core_weights_: Dict[int, np.ndarray] = {}
        next_label = 0
        for j, b in enumerate(blocks):
            idx = np.asarray(by_block[b])
            density = self.block_density(cont[idx], weights[idx], [fit_days.get(keys[i], 0) for i in idx],
                                         day_scale)
            if len(idx) == 1:
                core = density >= self.min_samples
                lab = np.where(core, 0, -1)
            else:
                db = DBSCAN(eps=self.eps, min_samples=self.min_samples, algorithm="kd_tree")
                lab = db.fit_predict(cont[idx], sample_weight=density)
                core = np.zeros(len(idx), dtype=bool)
                core[db.core_sample_indices_] = True
            labels[idx] = np.where(lab >= 0, lab + next_label, -1)
            next_label += int(lab.max()) + 1 if (lab >= 0).any() else 0
            is_core[idx] = core
            if core.any():
                self.block_cores_[j] = cont[idx[core]]
                self.block_core_keys_[j] = [keys[i] for i in idx[core]]
                self.block_core_weights_[j] = weights[idx[core]]
        if not self.block_cores_:  # too little data for any dense region: every situation is a reference
            for j, b in enumerate(blocks):
                idx = np.asarray(by_block[b])
                self.block_cores_[j] = cont[idx]
                self.block_core_keys_[j] = [keys[i] for i in idx]
                self.block_core_weights_[j] = weights[idx]
            is_core[:] = True
        self.core_blocks_ = np.array(sorted(self.block_cores_), dtype=int)
        # every core sample in one array (with the position of its block in core_blocks_)
        self.core_points_ = np.vstack([self.block_cores_[j] for j in self.core_blocks_])
        self.core_pos_ = np.concatenate([np.full(len(self.block_cores_[j]), pos)
                                         for pos, j in enumerate(self.core_blocks_)])
        self.core_keys_ = [k for j in self.core_blocks_ for k in self.block_core_keys_[j]]
        self.core_weights_ = np.concatenate([self.block_core_weights_[j] for j in self.core_blocks_])
        del self.block_cores_, self.block_core_keys_, self.block_core_weights_
        # the blocks that hold cores as dense rows over the features they use
        vocab: Dict[str, int] = {}
        feats = [self.block_features(blocks[j]) for j in self.core_blocks_]
        for f in feats:
            for name in f:
                vocab.setdefault(name, len(vocab))
        B = np.zeros((len(feats), len(vocab)))
        for r, f in enumerate(feats):
            for name, v in f.items():
                B[r, vocab[name]] = v
        self._index_core_blocks()
        self.core_block_vocab_ = vocab
        self.core_block_matrix_ = B
        self.core_block_sqnorm_ = (B * B).sum(axis=1)
        self.labels_ = labels
        self.n_clusters_ = next_label
        self.block_hours_: Dict[Tuple[str, str], int] = defaultdict(int)
        self.agent_users_: Dict[str, set] = defaultdict(set)
        self.agent_rules_: Dict[str, set] = defaultdict(set)
        self.privilege_agents_ = set()
        first_of: Dict[Tuple[str, str], set] = defaultdict(set)   # (agent, group) -> its users
        bases = set(FIRST_TIME_RULES.values())
        for (block, h, *_), w in zip(keys, weights):
            rid, agent, user = block[0], block[3], block[4]
            if user:
                for g in bases.intersection(block[1]):
                    first_of[(agent, g)].add(user)
            if is_privilege_change(block[1]):
                self.privilege_agents_.add(agent)
            if h >= 0:
                self.block_hours_[(agent, rid)] |= 1 << h
            self.agent_users_[agent].add(user)
            self.agent_rules_[agent].add(rid)
        self.block_hours_ = dict(self.block_hours_)
        self.agent_users_ = dict(self.agent_users_)
        self.agent_rules_ = dict(self.agent_rules_)
        # who did, on each agent, what a first-time rule is the first of (FIRST_TIME_RULES)
        self.first_time_users_ = {k: frozenset(v) for k, v in first_of.items()}
        # each agent's (and account's) history of rules: how surprising a new one is there
        self.baselines_ = EntityBaselines("distinct rules").fit(
            ((b[3], b[4], b[0], w) for (b, *_), w in zip(keys, weights)), self.peer_groups_)
        raw = np.zeros(len(keys))
        rest = np.flatnonzero(~is_core)
        if rest.size:
            raw[rest] = self._raw([keys[i] for i in rest])
        return raw

    def end_fit(self) -> "ContextDetector":
        """Fit as every detector does, then calibrate on cross-fitted training scores.

        In-sample, every situation seen ``min_samples`` times is its own core sample and scores 0,
        so in-sample scores say how unusual training was *to itself*: with short training (days)
        that tail is a handful of one-off situations, and the threshold lands among them. New
        days bring new situations far more often. So the calibrator is fitted on out-of-sample
        scores (split-conformal): alerts of odd days scored by a model of even days and vice
        versa. ``decision_scores_`` are those scores (with the weights the calibrator used).
        Training that spans a single day keeps the in-sample calibration.
        """
        odd = self.__dict__.pop("_odd_day_counts", None) or Counter()
        counts = self._counts
        super().end_fit()
        day_bits = self.__dict__.pop("_day_bits", None) or {}
        cross = self._cross_fitted_scores(counts, odd, day_bits)
        if cross is not None:
            raw, w = cross
            self.decision_scores_ = raw
            self.calibration_weights_ = w
            self.calibrator_ = TailCalibrator(self.contamination).fit(raw, w)
            self.threshold_ = float(self.calibrator_.threshold_)
        return self

    def _cross_fitted_scores(self, counts, odd, day_bits) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """Raw scores of each day-parity half under a model of the other half, with weights."""
        even = Counter({k: n - odd.get(k, 0) for k, n in counts.items() if n - odd.get(k, 0) > 0})
        odd = Counter({k: n for k, n in odd.items() if n > 0})
        if len(even) < self.min_keys or len(odd) < self.min_keys:
            return None
        total = float(sum(counts.values()))
        raws, ws = [], []
        for train, test, parity in ((even, odd, EVEN_DAYS), (odd, even, ~EVEN_DAYS)):
            keys = list(train)
            w = np.fromiter((train[k] for k in keys), dtype=float, count=len(keys))
            half = ContextDetector(**self.get_params())
            half.use_peer_groups(self.peer_groups_)
            # weights scaled to the whole training set: density means the same as in the full model
            scale = total / w.sum()
            half._day_bits = {k: day_bits.get(k, 0) & parity for k in keys}
            half._fit_keys(keys, w * scale, day_scale=scale)
            tk = list(test)
            raws.append(half._raw(tk))
            ws.append(np.fromiter((test[k] for k in tk), dtype=float, count=len(tk)))
        raw, w = np.concatenate(raws), np.concatenate(ws)
        order = np.lexsort((w, raw))  # independent of the order situations were first seen in
        return raw[order], w[order]

    # -- scoring -------------------------------------------------------------------------------
    def raw_scores(self, keys):
        # a fleet wave: the k-th other agent's share (see the module docstring)
        return shared_along_waves(super().raw_scores([self.situation(k) for k in keys]),
                                  [k[7] if len(k) > 7 else 0 for k in keys])

    def _block_rows(self, blocks) -> Tuple[np.ndarray, np.ndarray]:
        """Query blocks as rows over the core blocks' features (+ the squared norm of the rest)."""
        vocab = self.core_block_vocab_
        Q = np.zeros((len(blocks), len(vocab)))
        extra = np.zeros(len(blocks))
        for r, b in enumerate(blocks):
            for name, v in self.block_features(b).items():
                c = vocab.get(name)
                if c is None:
                    extra[r] += v * v
                else:
                    Q[r, c] = v
        return Q, (Q * Q).sum(axis=1) + extra

    def _nearest_many(self, sits: List[Key]) -> Tuple[np.ndarray, np.ndarray]:
        """Distance to the nearest core sample and its index, for many situations at once.

        Blocks are visited in order of block distance, and a search stops as soon as the next
        block is farther than the best core found: usually only the situation's own block.
        """
        if not hasattr(self, "core_block_start_"):
            self._index_core_blocks()
        by_block: Dict[Any, List[int]] = defaultdict(list)
        for i, s in enumerate(sits):
            by_block[s[0]].append(i)
        blocks = list(by_block)
        Q, qn = self._block_rows(blocks)
        db = np.sqrt(np.maximum(qn[:, None] + self.core_block_sqnorm_[None, :] - 2.0 * Q @ self.core_block_matrix_.T, 0.0))
        C = np.array([self.continuous_features(h, r, sb) for (_, h, r, sb) in sits], dtype=float)
        dist = np.full(len(sits), np.inf)
        idx = np.zeros(len(sits), dtype=int)
        pts = self.core_points_
        for qb, block in enumerate(blocks):
            rows = np.asarray(by_block[block])
            c = C[rows]
            for p in np.argsort(db[qb], kind="stable"):
                if db[qb, p] >= dist[rows].max():
                    break
                lo, hi = self.core_block_start_[p], self.core_block_start_[p + 1]
                d2 = ((pts[lo:hi][None, :, :] - c[:, None, :]) ** 2).sum(axis=2) + db[qb, p] ** 2
                m = d2.argmin(axis=1)
                d = np.sqrt(d2[np.arange(len(rows)), m])
                better = d < dist[rows]
                dist[rows[better]] = d[better]
                idx[rows[better]] = lo + m[better]
        return dist, idx

    def _index_core_blocks(self) -> None:
        # cores are stored grouped by block position; where each block's cores start
        counts = np.bincount(self.core_pos_, minlength=len(self.core_blocks_))
        self.core_block_start_ = np.concatenate([[0], np.cumsum(counts)])

    def _nearest(self, key: Key) -> Tuple[float, Optional[Key], int]:
        """Distance to the nearest core sample, that sample's key and weight (memoised)."""
        sit = key[:4]
        cache = self.__dict__.setdefault("_nn_cache", {})
        hit = cache.get(sit)
        if hit is None:
            d, i = self._nearest_many([sit])
            hit = self._remember(sit, float(d[0]), int(i[0]))
        return hit

    def _remember(self, sit: Key, dist: float, i: int):
        cache = self.__dict__.setdefault("_nn_cache", {})
        make_room(cache, self._CACHE_MAX)
        hit = cache[sit] = (dist, self.core_keys_[i], int(self.core_weights_[i]))
        return hit

    def _raw(self, keys: List[Key]) -> np.ndarray:
        # within eps of a core sample is a DBSCAN border point: part of a cluster, i.e. normal;
        # only the distance beyond eps (noise) counts as anomalous
        sits = [k[:4] for k in keys]
        dist, idx = self._nearest_many(sits)
        for s_, d, i in zip(sits, dist, idx):
            self._remember(s_, float(d), int(i))
        raw = np.maximum(0.0, dist - self.eps)
        return raw * np.fromiter((self.peer_factor(s_) for s_ in sits), dtype=float, count=len(sits))

    def novelty_of(self, sit: Key) -> Tuple[str, int]:
        """What is new about a situation for its agent, and on how many of the agent's peers
        (``mimizuku.engine.peers``) it was not: ("rule", k) — the rule never fired on the agent
        in training, on k peers it did; ("hour", k) — never at that hour, on k peers it did;
        ("first", k) — a first-time rule (``FIRST_TIME_RULES``) never fired on the agent, whose
        base k other users did there in training; ("", 0) — neither."""
        (rid, _g, _l, agent, user, *_), hour = sit[0], sit[1]
        mask = self.block_hours_.get((agent, rid))
        if mask is None and rid not in self.agent_rules_.get(agent, ()):
            what = "rule"
        elif hour >= 0 and mask and not mask >> hour & 1:
            what = "hour"
        else:
            return "", 0
        base = FIRST_TIME_RULES.get(rid) if what == "rule" else None
        if base is not None:  # a model fitted before first_time_users_ judges it as any new rule
            others = self.__dict__.get("first_time_users_", {}).get((agent, base), frozenset()) - {user}
            if others:
                return "first", len(others)
        pg = self.peer_groups_
        peers = pg.peers(agent) if pg is not None else ()
        if what == "rule":
            k = sum(1 for p in peers if rid in self.agent_rules_.get(p, ()))
        else:
            k = sum(1 for p in peers if self.block_hours_.get((p, rid), 0) >> hour & 1)
        return what, k

    def is_new(self, key: Key) -> bool:
        """New for its entity: an agent never seen, a rule it never fired (or not at that
        hour), or a user never seen on it."""
        block = key[0]
        agent, user = block[3], block[4]
        if agent not in self.agent_rules_ or (user and user not in self.agent_users_.get(agent, ())):
            return True
        if "baselines_" not in self.__dict__:
            return block[0] not in self.agent_rules_[agent]
        return bool(self.novelty_of(key[:4])[0])

    def peer_factor(self, sit: Key) -> float:
        """The raw score's share for what is new for its agent but routine for its peers: a rule
        new to the agent that k of its peers fire, or a known rule at a new hour that k peers
        fire then, is divided by ``1 + k``; so is a user's first time (a first-time rule) at what k
        other users do on the agent (1 for the rest; models fitted before peer groups: 1).

        The entity's own history (``baselines_``, mimizuku.engine.baselines) names it in the
        reasons but does not weigh the score here: weighing a new rule by the agent's Good–Turing
        surprise was measured on the tuning sets (generator seed 0, AIT shaw and fox) and missed
        su/sudo episodes on busy hosts without removing false positives (docs/detection.md)."""
        if "baselines_" not in self.__dict__:
            return 1.0
        what, k = self.novelty_of(sit)
        return 1.0 / (1.0 + k) if what else 1.0

    # -- reasons -------------------------------------------------------------------------------
    def explain(self, key: Key, alert: Dict[str, Any]) -> List[str]:
        cache = self.__dict__.setdefault("_why_cache", {})
        ck = (key[:4], fields.rule_description(alert))
        hit = cache.get(ck)
        if hit is None:
            make_room(cache, max(1, self._CACHE_MAX // 2))
            hit = cache[ck] = self._explain(key, alert)
        reasons = list(hit)
        (rid, _, _, agent, *_), _, rbin, sbin = key[:4]
        count = key[4] if len(key) > 4 else 2 ** rbin
        usual = self.max_rate_.get((agent, rid))
        if usual is not None and count > max(2 * usual, usual + 2):
            reasons.insert(0, f"{self._rule_name(rid, alert)} fired {count}× within {self.rate_window} s "
                              f"on {agent!r} (training maximum {usual})")
        wave = key[7] if len(key) > 7 else 0
        if wave:
            reasons.insert(0, wave_reason(wave, self.wave_window))
        src_count = key[5] if len(key) > 5 else 0
        usual_src = self.max_src_.get((agent, rid), 0)
        if src_count and src_count > max(2 * usual_src, usual_src + 2):
            reasons.insert(0, f"source {key[6]} produced {src_count} alerts on {agent!r} within "
                              f"{self.rate_window} s (for rule {rid} in training at most {usual_src})")
        return reasons

    def _explain(self, key: Key, alert: Dict[str, Any]) -> List[str]:
        # the count-independent part; the rate reason is added per alert in explain()
        (rid, groups, _, agent, user, ipc, win), hour, rbin, sbin = key[:4]
        reasons = []
        rname = self._rule_name(rid, alert)
        known = getattr(self, "privilege_agents_", None)
        if known is not None and is_privilege_change(groups) and agent not in known:
            reasons.append(f"{rname} switches identity (su/sudo): none did on {agent!r} in training")
        if agent not in self.agent_rules_:
            reasons.append(f"agent {agent!r} never seen in training")
        elif rid not in self.agent_rules_[agent]:
            reasons.append(f"{rname} never fired on {agent!r} in training")
            if "baselines_" in self.__dict__:
                reasons.append(self.baselines_.describe(agent, user, f"rule {rid}"))
        what, k = self.novelty_of(key[:4]) if "baselines_" in self.__dict__ else ("", 0)
        if what == "first":
            reasons.append(f"a first time for {user!r} on {agent!r}, but {k} other user(s) did that "
                           f"({FIRST_TIME_RULES[rid]}) there in training (score divided by {1 + k})")
        elif what:
            pg = self.peer_groups_
            if pg is None or not pg.peers(agent):
                reasons.append(f"{agent!r} has no peers (agents doing the same work): judged in full")
            elif k:
                reasons.append(f"routine for its peers: {k} of {pg.describe_group(agent)} "
                               f"{'fired it' if what == 'rule' else 'fired it at that hour'} in training "
                               f"(score divided by {1 + k})")
            else:
                reasons.append(f"never seen among its peers ({pg.describe_group(agent)})")
        else:
            mask = self.block_hours_.get((agent, rid), 0)
            if hour >= 0 and mask and not mask & (1 << hour):
                hours = [h for h in range(24) if mask & (1 << h)]
                reasons.append(f"{rname} never fired on {agent!r} at {hour:02d}:00 in training "
                               f"(seen at {_hours(hours)})")
        if agent in self.agent_users_ and user and user not in self.agent_users_[agent]:
            reasons.append(f"user {user!r} never seen on {agent!r} in training")
        dist, near, n = self._nearest(key)
        if near is not None:
            reasons.append(f"nearest normal example: {self.describe(near)} (seen {n}×, distance {dist:.2f})")
        return reasons

    @staticmethod
    def _rule_name(rid: str, alert: Dict[str, Any]) -> str:
        desc = fields.rule_description(alert)
        return f"rule {rid}" + (f" ({desc})" if desc else "")

    def describe(self, key: Key) -> str:
        (rid, _, level, agent, user, ipc, win), hour, rbin, sbin = key[:4]
        parts = [f"rule {rid} (level {level}) on {agent!r}"]
        if user:
            parts.append(f"user {user!r}")
        if ipc != "none":
            parts.append(f"{ipc} source")
        if win:
            parts.append(f"event {win!r}")
        if hour >= 0:
            parts.append(f"around {hour:02d}:00")
        parts.append(f"about {2 ** rbin}–{2 ** (rbin + 1) - 1} per {self.rate_window} s")
        if sbin >= 0:
            parts.append(f"its source about {2 ** sbin}–{2 ** (sbin + 1) - 1} times")
        return ", ".join(parts)


def _hours(hours: List[int]) -> str:
    if len(hours) > 8:
        return f"{len(hours)} different hours, {hours[0]:02d}–{hours[-1]:02d}"
    return ", ".join(f"{h:02d}" for h in hours)


def _popcount(bits: int) -> int:
    return bin(bits).count("1")   # int.bit_count is Python 3.10+
