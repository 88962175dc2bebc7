"""Local Outlier Factor over hashed token features, fitted on distinct situations.

Shared by the file-integrity and command detectors. Each key becomes a dense hashed vector made
of weighted feature groups (each group L2-normalised, then scaled by its weight), so that a
difference in one group costs the same whatever the number of tokens in it. LOF runs in novelty
mode on distinct keys: a situation seen once and one seen ten thousand times are one point each
(their frequency only weighs in calibration), which is what keeps LOF from degenerating on
heavily duplicated alerts.

LOF alone measures *relative* density: where every distinct situation is far from every other
(commands and paths are sparse), a brand-new one looks no sparser than the rest. So the raw
score adds a novelty term: for each scope (this agent, this user), whether the key brings tokens
never seen there (one new token counts half, two or more count fully), times how surprising a
new token is in that scope — ``-log10`` of its
Good–Turing missing mass ``(N1 + 1) / (N + 1)`` (N1 tokens seen once, N token occurrences): a
new word on a CI runner that sees new words all day is no news; on a web server whose www-data
runs the same three commands, it is. It is computed leave-one-alert-out on the training data,
so the calibrator learns how often normal activity brings new tokens:

    raw = log(LOF) + novelty_weight * novelty          (higher = more anomalous)

A user's first use of something is weak evidence when the other users of the same kind on that
host use it all the time (a new admin's first ``-bash``; an admin's first ansible run on a host
where the others run it daily), and strong when nobody like them does (www-data's first
``cat /etc/passwd``). So the user scope backs off to the user's peers (``peer_group``: same
agent, same account class) by how many peers used it there: tokens no peer used count as usual, those some peer used count as
one block discounted by ``1 - k/(k+1)``, ``k`` peers having used them all (one peer halves the
evidence, four leave a fifth): the user did what the role does. A user never
seen at all is judged the same way, token by token, instead of as a constant surprise: that the
user is new is the agent scope's news (``user:<name>`` never seen there), itself discounted by
``k/(k+1)`` for ``k`` users of that kind on the agent (a new admin among four is less news than
a second root or the first person on a host of daemons).

Token counts per agent and per user are kept for this and to explain anomalies.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Dict, FrozenSet, Hashable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from scipy import sparse
from sklearn.feature_extraction import FeatureHasher
from sklearn.neighbors import LocalOutlierFactor

from mimizuku.core.bounded import make_room
from mimizuku.core.records import DEFAULT_CONTAMINATION
from mimizuku.engine.baselines import EntityBaselines
from mimizuku.engine.detectors.base import Detector, Key


def _encodable(name: str) -> str:
    """``name`` as the hasher can take it: the hasher encodes names to UTF-8, which a lone
    surrogate (from a JSON ``\\ud800`` escape the standard library's parser lets through) fails,
    and one such alert would fail the whole batch. Each one becomes ``?``; every other name is
    itself (the same column as ever)."""
    if name.isascii():
        return name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "replace").decode("utf-8")
    return name


class HashedGroups:
    """Feature groups ({group: [tokens]}) → dense float32 rows via the hashing trick."""

    def __init__(self, weights: Dict[str, float], n_features: int = 1024):
        self.weights = weights
        self.n_features = n_features
        self._hasher = FeatureHasher(n_features=n_features, input_type="dict", alternate_sign=False)

    def _named(self, groups: Dict[str, Sequence[str]]) -> Dict[str, float]:
        d: Dict[str, float] = {}
        for g, toks in groups.items():
            toks = [t for t in toks if t]
            if not toks:
                continue
            v = self.weights[g] / np.sqrt(len(toks))
            for t in toks:
                d[_encodable(g + "=" + t)] = v
        return d

    def rows(self, groups_list: Sequence[Dict[str, Sequence[str]]]) -> np.ndarray:
        """Dense rows (fitting: LocalOutlierFactor takes them as they are)."""
        return self._hasher.transform([self._named(g) for g in groups_list]).toarray().astype(np.float32)

    def sparse_rows(self, groups_list: Sequence[Dict[str, Sequence[str]]], cap: int = 65536) -> "SparseRows":
        """The same rows as :meth:`rows`, as (row, column, value) entries (scoring).

        A row holds a few dozen of its 1,024 columns. The hasher's fixed cost per call (about
        0.1 ms) dominated scoring the one or two new situations of a resident scorer's batch,
        so each feature name's column is asked of the hasher once and remembered (``cap`` names
        at most: a full memo drops its oldest quarter)."""
        dicts = [self._named(g) for g in groups_list]
        index = self.__dict__.setdefault("_index", {})
        cols = {n: index.get(n) for d in dicts for n in d}
        new = [n for n, c in cols.items() if c is None]
        if new:
            H = self._hasher.transform([{n: 1.0} for n in new])   # one column per name
            got = dict(zip(new, H.indices[H.indptr[:-1]].tolist()))
            cols.update(got)
            make_room(index, cap, len(got))
            index.update(got)
        n = sum(len(d) for d in dicts)
        r = np.fromiter((i for i, d in enumerate(dicts) for _ in d), dtype=np.int64, count=n)
        c = np.fromiter((cols[k] for d in dicts for k in d), dtype=np.int64, count=n)
        v = np.fromiter((x for d in dicts for x in d.values()), dtype=np.float64, count=n)
        # names of one row hashed to one column add up, as in the hasher; then float32, as rows()
        cell, inv = np.unique(r * self.n_features + c, return_inverse=True)
        v = np.bincount(inv.ravel(), weights=v, minlength=len(cell)).astype(np.float32).astype(np.float64)
        return SparseRows(len(dicts), cell // self.n_features, cell % self.n_features, v)

    def memo_size(self) -> int:
        """Feature names whose column ``sparse_rows`` remembers now. Public: the memo is bounded
        (its ``cap``), and a bound is checked from outside."""
        return len(self.__dict__.get("_index", ()))


class SparseRows(NamedTuple):
    """Hashed rows as sorted (row, column, value) entries; ``n`` rows in all."""

    n: int
    row: np.ndarray
    col: np.ndarray
    value: np.ndarray


class LOFDetector(Detector):
    """LOF novelty detector over keys; subclasses define the key and its feature groups."""

    group_weights: Dict[str, float] = {}

    def __init__(self, n_neighbors=5, contamination=DEFAULT_CONTAMINATION, max_samples=20000, n_features=1024,
                 novelty_weight=0.5):
        self.n_neighbors = n_neighbors
        self.contamination = contamination
        self.max_samples = max_samples
        self.n_features = n_features
        self.novelty_weight = novelty_weight

    # subclasses: key(alert) -> tuple; groups(key) -> {group: [tokens]}; describe(key) -> str;
    # context_of(key) -> [(label, value)] for per-agent/per-user rarity

    #: the scope whose novelty backs off to the peers ``peer_group`` names
    backoff_scope = "user"

    def peer_group(self, key: Key) -> Optional[Tuple[Hashable, str]]:
        """(group, member): the member's peers are the group's other members (None: no back-off)."""
        return None

    def groups(self, key: Key) -> Dict[str, Sequence[str]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self, key: Key) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def example(self, alert: Dict[str, Any]) -> str:  # pragma: no cover - abstract
        """A readable rendering of the alert's situation (kept for nearest-example reasons)."""
        raise NotImplementedError

    def begin_fit(self) -> None:
        super().begin_fit()
        self._examples: Dict[Key, str] = {}
        self.hash_names_ = True

    def _hash_names(self) -> bool:
        """Whether ``key`` reads a hash-like name as ``*`` whichever way its letters fall
        (``features._hex_run``): always, but in a model fitted before that rule (fitted state
        without ``hash_names_``), whose vocabulary holds the names as they were read then."""
        d = self.__dict__
        return "ref_keys_" not in d or d.get("hash_names_") is True

    def key_scheme(self) -> Any:
        return "hash-names" if self._hash_names() else None

    def observe(self, alert: Dict[str, Any], key: Optional[Key] = None) -> None:
        self._count(self.training_key(self.key(alert) if key is None else key), alert)

    def training_key(self, key: Key) -> Key:
        """The key as training counts it (itself here; the fleet-wave mixin sets the wave aside)."""
        return key

    def _count(self, key: Key, alert: Dict[str, Any]) -> None:
        self._counts[key] += 1
        if key not in self._examples:
            self._examples[key] = self.example(alert)

    def partial_state(self) -> Dict[str, Any]:
        state = super().partial_state()
        state["examples"] = self._examples
        return state

    def merge_state(self, state: Dict[str, Any]) -> None:
        super().merge_state(state)
        examples = state.get("examples") or {}
        if not self._examples:
            self._examples = examples
        else:  # the first partition that saw a situation gives its example, as one stream would
            for k, v in examples.items():
                self._examples.setdefault(k, v)

    def _vectorizer(self) -> HashedGroups:
        v = self.__dict__.get("_vec")
        if v is None:
            v = self._vec = HashedGroups(self.group_weights, self.n_features)
        return v

    def feature_rows(self, keys: Sequence[Key]) -> np.ndarray:
        """The keys' dense hashed rows, as fitting gives them to LocalOutlierFactor. Public: the
        feature space LOF runs in, so that scoring can be checked against scikit-learn's own."""
        return self._vectorizer().rows([self.groups(k) for k in keys])

    def _sparse_rows(self, keys: Sequence[Key]) -> SparseRows:
        return self._vectorizer().sparse_rows([self.groups(k) for k in keys], cap=self._CACHE_MAX)

    def _fit_keys(self, keys: List[Key], weights: np.ndarray) -> np.ndarray:
        # reference set: every distinct key, or the most frequent ones plus a sample of the rest
        idx = np.arange(len(keys))
        if len(keys) > self.max_samples:
            order = np.argsort(-weights, kind="stable")
            head = order[: self.max_samples // 2]
            rng = np.random.default_rng(0)
            tail = rng.choice(order[self.max_samples // 2 :], self.max_samples - len(head), replace=False)
            idx = np.sort(np.concatenate([head, tail]))
        ref_keys = [keys[i] for i in idx]
        X = self.feature_rows(ref_keys)
        k = max(1, min(self.n_neighbors, len(ref_keys) - 1))
        self.lof_ = LocalOutlierFactor(n_neighbors=k, novelty=True, algorithm="brute", metric="euclidean")
        self.lof_.fit(X)
        # what scoring needs, from the fitted neighbour graph (public API): each reference's
        # k-distance and local reachability density — scoring then runs in plain numpy
        dist, ind = self.lof_.kneighbors(None, n_neighbors=k)
        self.ref_X_ = X
        self.ref_sqnorm_ = (X.astype(np.float64) ** 2).sum(axis=1)
        self.ref_kdist_ = dist[:, -1]
        reach = np.maximum(dist, self.ref_kdist_[ind])
        self.ref_lrd_ = 1.0 / (reach.mean(axis=1) + 1e-10)
        self.k_ = k
        self.ref_keys_ = ref_keys
        examples = self.__dict__.pop("_examples", {})
        self.examples_ = {k: examples.get(k, "?") for k in ref_keys}
        self.ref_weights_ = weights[idx]
        self._fit_token_counts(keys, weights)
        raw = np.empty(len(keys))
        raw[idx] = self._squash(-self.lof_.negative_outlier_factor_)
        rest = np.setdiff1d(np.arange(len(keys)), idx)
        if rest.size:
            raw[rest] = self._squash(self.local_outlier_factors([keys[i] for i in rest]))
        # leave-one-alert-out novelty: would this alert's tokens have been new without it?
        raw += self.novelty_weight * np.array([self.novelty(k, leave_out=1) for k in keys])
        return raw

    @staticmethod
    def _squash(lof: np.ndarray) -> np.ndarray:
        # LOF ≈ 1 is normal; its scale explodes for isolated points. log keeps the order and
        # gives the calibrator's tail a sensible scale.
        return np.log(np.maximum(lof, 1e-9))

    def prepare(self) -> None:
        self._ref_columns()

    def _ref_columns(self) -> sparse.csr_matrix:
        """The references by column (column -> the references using it, float64), built once.

        A dense product reads the whole reference matrix (8 MB for 2,000 references) for every
        query; this reads only the columns the query uses."""
        RT = self.__dict__.get("_ref_T")
        if RT is None:
            RT = self._ref_T = sparse.csr_matrix(self.ref_X_.T.astype(np.float64))
        return RT

    def _sparse_products(self, Q: "SparseRows", lo: int, hi: int) -> Tuple[np.ndarray, np.ndarray]:
        """Squared norms of rows lo..hi of ``Q`` and their dot products with every reference."""
        a, b = np.searchsorted(Q.row, [lo, hi])
        rows, cols, vals = Q.row[a:b] - lo, Q.col[a:b], Q.value[a:b]
        RT = self._ref_columns()
        n_ref = RT.shape[1]
        starts = RT.indptr[cols]
        lens = RT.indptr[cols + 1] - starts
        total = int(lens.sum())
        pos = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        at = np.repeat(rows, lens) * n_ref + RT.indices[pos]
        dots = np.bincount(at, weights=np.repeat(vals, lens) * RT.data[pos], minlength=(hi - lo) * n_ref)
        qn = np.bincount(rows, weights=vals * vals, minlength=hi - lo)
        return qn, dots.reshape(hi - lo, n_ref)

    #: rows per chunk of a k-neighbours search, and most reference entries a chunk may touch: a
    #: query column that most references use (``user=root``) touches all of them, and a fit
    #: scores thousands of situations at once (1M alerts: 2.5 GiB without this bound)
    CHUNK_ROWS = 512
    CHUNK_ENTRIES = 2_000_000

    def _chunks(self, X: SparseRows) -> List[Tuple[int, int]]:
        n = X.n
        indptr = self._ref_columns().indptr
        per_row = np.bincount(X.row, weights=indptr[X.col + 1] - indptr[X.col], minlength=n)
        out, start, total = [], 0, 0.0
        for r, t in enumerate(per_row.tolist()):
            if r > start and (r - start >= self.CHUNK_ROWS or total + t > self.CHUNK_ENTRIES):
                out.append((start, r))
                start, total = r, 0.0
            total += t
        if n > start:
            out.append((start, n))
        return out

    def neighbour_chunks(self, keys: Sequence[Key]) -> List[Tuple[int, int]]:
        """The (start, end) ranges of ``keys`` a neighbour search runs in, one at a time. Public:
        they bound the search's memory (``CHUNK_ROWS``, ``CHUNK_ENTRIES``), which is checked
        from outside; the answer never depends on them."""
        return self._chunks(self._sparse_rows(keys))

    def neighbours(self, keys: Sequence[Key], k: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Distances to the ``k`` (default ``k_``) nearest references of each key, ascending,
        and those references' indices in ``ref_keys_``. Public: the neighbour search scoring
        uses, checked against exact distances and across chunk sizes."""
        return self._kneighbors(self._sparse_rows(keys), self.k_ if k is None else k)

    def _kneighbors(self, X: SparseRows, k: int):
        """k nearest references (distances ascending, indices) by brute force in chunks."""
        out_d, out_i = [], []
        for start, end in self._chunks(X):
            qn, dots = self._sparse_products(X, start, end)
            d2 = self.ref_sqnorm_[None, :] + qn[:, None] - 2.0 * dots
            np.maximum(d2, 0.0, out=d2)
            idx = np.argpartition(d2, k - 1, axis=1)[:, :k] if k < d2.shape[1] else np.argsort(d2, axis=1)[:, :k]
            # references tied at the k-th distance (duplicate rows): take the lowest indices, as
            # LocalOutlierFactor does, so that scores do not depend on argpartition's order
            kth = np.take_along_axis(d2, idx, axis=1).max(axis=1)
            for r in np.flatnonzero((d2 <= kth[:, None]).sum(axis=1) > k):
                cand = np.flatnonzero(d2[r] <= kth[r])
                idx[r] = cand[np.lexsort((cand, d2[r, cand]))[:k]]
            dk = np.take_along_axis(d2, idx, axis=1)
            order = np.argsort(dk, axis=1)
            out_i.append(np.take_along_axis(idx, order, axis=1))
            out_d.append(np.sqrt(np.take_along_axis(dk, order, axis=1)))
        # to float32 precision, as LocalOutlierFactor gave the references' k-distances for their
        # float32 rows: a training situation seen again is then exactly as dense as in training
        # (a last-bit difference is an anomaly where every training score was the same)
        return np.vstack(out_d).astype(np.float32).astype(np.float64), np.vstack(out_i)

    def local_outlier_factors(self, keys: List[Key]) -> np.ndarray:
        """Local Outlier Factor of new points against the references (as LocalOutlierFactor.score_samples, negated).

        Public: LOF's own number before the novelty term, comparable with scikit-learn's."""
        dist, ind = self.neighbours(keys)
        cache = self.__dict__.setdefault("_nn_cache", {})
        make_room(cache, self._CACHE_MAX, len(keys))
        for k, d0, i0 in zip(keys, dist[:, 0], ind[:, 0]):
            cache[k] = (int(i0), float(d0))
        reach = np.maximum(dist, self.ref_kdist_[ind])
        lrd = 1.0 / (reach.mean(axis=1) + 1e-10)
        return self.ref_lrd_[ind].mean(axis=1) / lrd

    def _raw(self, keys: List[Key]) -> np.ndarray:
        lof = self._squash(self.local_outlier_factors(keys))
        return lof + self.novelty_weight * np.array([self.novelty(k) for k in keys])

    def novelty(self, key: Key, leave_out: int = 0) -> float:
        """Mean over scopes of the surprise of new tokens there (one new token: half, two or more: all).

        What counts is how many tokens are new, not their share: one new word in a long,
        otherwise familiar path (a .php among uploads) is as telling as in a short one. In the
        back-off scope each new token counts ``1 - share`` of the peers that use it."""
        out = []
        peers = self._peers(key)
        for scope, value, toks in self.scopes(key):
            seen = self.token_counts_.get((scope, value))
            total = self.scope_totals_.get((scope, value), 0)
            backoff = peers is not None and scope == self.backoff_scope
            unseen = seen is None or total - leave_out <= 0
            if unseen and not backoff:
                out.append(self.UNSEEN_SCOPE_SURPRISE)  # a new agent or user altogether
                continue
            if not toks:
                out.append(0.0)
                continue
            if unseen:
                new_toks = list(toks)
                surprise = self.UNSEEN_SCOPE_SURPRISE
            else:
                new_toks = [t for t in toks if seen.get(t, 0) - leave_out <= 0]
                surprise = self.scope_surprise_[(scope, value)]
            if backoff:
                out.append(self.backed_off(peers, new_toks) * surprise)
                continue
            new = float(len(new_toks))
            if peers is not None and ("user:" + peers[2]) in new_toks:
                # a user new to this agent, in a role others of the same kind hold here: the
                # more such peers, the less a newcomer among them says
                new -= peers[1] / (peers[1] + 1.0)
            weight = min(1.0, new / 2)
            if scope == "agent" and new_toks:
                # new to this agent, but what its peer agents do routinely: the host catching up
                # with its role (mimizuku.engine.peers); never seen among them: in full
                weight = min(weight, self.agent_backoff(value, new_toks))
            out.append(weight * surprise)
        return float(np.mean(out)) if out else 0.0

    def agent_backoff(self, agent: str, new_toks: Sequence[str]) -> float:
        """How new an agent's new tokens are, given what its peer agents did in training.

        Tokens no peer used count as the scope counts them (one: half, two or more: all); those
        some peer used count as one block (one token: half, two or more: all), divided by
        ``1 + k``, ``k`` peers having used all of them: ``nginx -s reload`` that the web server's
        twin runs daily counts half; a reverse shell whose one never-seen word sits among words
        the peers use still counts in full."""
        used = self.peer_use(agent, new_toks)
        if used is None:
            return 1.0
        unknown, known, joint = 0, 0, None
        for _t, who in used:
            if not who:
                unknown += 1
                continue
            known += 1
            joint = who if joint is None else joint & who
        k = len(joint) if joint else 0
        return min(1.0, unknown / 2 + min(1.0, known / 2) / (1.0 + k))

    def _peers(self, key: Key) -> Optional[Tuple[Dict[str, Any], int, str]]:
        """(token -> members who used it, number of other members, member) for the back-off."""
        users = self.__dict__.get("peer_users_")
        if users is None:  # a model fitted before the back-off existed
            return None
        pg = self.peer_group(key)
        if pg is None:
            return None
        group, member = pg
        members = self.peer_members_.get(group, ())
        others = len(members) - (1 if member in members else 0)
        return users.get(group, {}), others, member

    @staticmethod
    def backed_off(peers: Tuple[Dict[str, Any], int, str], new_toks: Sequence[str]) -> float:
        """How new the user's new tokens are, given what the user's peers do.

        ``peers``: (token -> members who used it, number of other members, member), as the
        back-off scope sees them. Tokens no peer used count as usual (one: half, two or more:
        all). Those some peer used count as one block, discounted by the number ``k`` of peers
        who used all of them: ``1 - k / (k + 1)`` (one peer halves it, four leave a fifth).
        Public: it is the back-off rule the module docstring states, checked on its own."""
        users, _others, member = peers
        unknown = 0
        joint = None
        n_known = 0
        for t in new_toks:
            who = users.get(t)
            if not who or (len(who) == 1 and member in who):
                unknown += 1
                continue
            n_known += 1
            joint = set(who) if joint is None else joint & who
        value = min(1.0, unknown / 2)
        if n_known:
            k = len(joint - {member}) if joint else 0
            value = max(value, min(1.0, n_known / 2) * (1.0 - k / (k + 1.0)))
        return value

    #: how reasons name what an entity's history counts
    situation_noun = "distinct situations"

    def account_of(self, key: Key) -> str:
        """The account a situation belongs to (its user; "" for none)."""
        return ""

    #: surprise of a scope never seen in training (as for a scope that never saw anything new)
    UNSEEN_SCOPE_SURPRISE = 2.0

    #: the hasher and the references' column copy are rebuilt on first use
    _MEMOS = ("_nn_cache", "_vec", "_ref_T")
    #: training examples; and scoring needs only the reference rows, k-distances and lrd: the
    #: fitted LocalOutlierFactor would add a second copy of the references to every saved model
    _UNSAVED = ("_examples", "lof_")

    def nearest(self, key: Key) -> Tuple[Key, float, int]:
        """The nearest training situation, its distance and how often it was seen."""
        hit = self.__dict__.get("_nn_cache", {}).get(key)
        if hit is None:
            dist, ind = self.neighbours([key], 1)
            hit = (int(ind[0, 0]), float(dist[0, 0]))
        i, d = hit
        return self.ref_keys_[i], d, int(self.ref_weights_[i])

    # -- rarity bookkeeping for reasons ----------------------------------------------------------
    def _fit_token_counts(self, keys: List[Key], weights: np.ndarray) -> None:
        counts: Dict[Tuple[str, str], Counter] = defaultdict(Counter)
        totals: Counter = Counter()
        for k, w in zip(keys, weights):
            for scope, value, toks in self.scopes(k):
                c = counts[(scope, value)]
                totals[(scope, value)] += int(w)
                for t in toks:
                    c[t] += int(w)
        self.token_counts_ = {s: dict(c) for s, c in counts.items()}
        # who among each peer group used which token of the back-off scope
        peer_users: Dict[Hashable, Dict[str, set]] = defaultdict(lambda: defaultdict(set))
        peer_members: Dict[Hashable, set] = defaultdict(set)
        for k in keys:
            pg = self.peer_group(k)
            if pg is None:
                continue
            group, member = pg
            peer_members[group].add(member)
            for scope, _value, toks in self.scopes(k):
                if scope == self.backoff_scope:
                    for t in toks:
                        peer_users[group][t].add(member)
        self.peer_members_ = {g: frozenset(m) for g, m in peer_members.items()}
        self.peer_users_ = {g: {t: frozenset(m) for t, m in d.items()} for g, d in peer_users.items()}
        self.scope_totals_ = dict(totals)
        # which agents used each token of the agent scope (the back-off to peer agents); one
        # frozenset per distinct set of agents
        token_agents: Dict[str, set] = defaultdict(set)
        for (scope, value), c in counts.items():
            if scope == "agent":
                for t in c:
                    token_agents[t].add(value)
        interned: Dict[FrozenSet[str], FrozenSet[str]] = {}
        self.agent_token_agents_ = {t: interned.setdefault(frozenset(a), frozenset(a)) for t, a in token_agents.items()}
        # each agent's and account's history of situations (reasons; mimizuku.engine.baselines)
        self.baselines_ = EntityBaselines(self.situation_noun).fit(
            ((k[0], self.account_of(k), k[1], w) for k, w in zip(keys, weights)), self.peer_groups_)
        # Good–Turing: the chance that the next token in this scope is a new one
        self.scope_surprise_ = {
            s: float(-np.log10((sum(1 for v in c.values() if v == 1) + 1) / (sum(c.values()) + 1)))
            for s, c in counts.items()
        }

    def scopes(self, key: Key) -> List[Tuple[str, str, Sequence[str]]]:  # pragma: no cover
        """(scope, value, tokens): e.g. ("agent", "web-01", tokens) for rarity reasons."""
        raise NotImplementedError

    # the same news twice (mimizuku.engine.repeats): the same action seen through a second log (sudo's
    # line and auditd's execve of one command), or the same new thing again within the window
    repeat_what = "the same never-seen words on the same agent"

    def repeat_situation(self, key: Key):
        """The words this alert brings that its agent never saw in training (as its reasons name
        them), or None when there are none (a rare mix of known words is judged alert by alert)."""
        scopes = self.scopes(key)
        if not scopes:
            return None
        scope, value, toks = scopes[0]
        seen = self.token_counts_.get((scope, value))
        if seen is None:  # a new agent: everything is news, nothing is a repeat
            return None
        new = frozenset(_pretty(t) for t in toks if t not in seen)
        return (self.name, value, new) if new else None

    def is_new(self, key: Key) -> bool:
        """New for its entity: a scope (agent, user) never seen, or a token it never saw."""
        for scope, value, toks in self.scopes(key):
            seen = self.token_counts_.get((scope, value))
            if seen is None or any(t not in seen for t in toks):
                return True
        return False

    def rare_tokens(self, key: Key, rare: int = 2) -> List[str]:
        out = []
        for scope, value, toks in self.scopes(key):
            seen = self.token_counts_.get((scope, value))
            if seen is None:
                out.append(f"{scope} {value!r} never seen in training")
                continue
            never_toks = [t for t in dict.fromkeys(toks) if t not in seen]
            never = list(dict.fromkeys(_pretty(t) for t in never_toks))
            seldom = list(dict.fromkeys(f"{_pretty(t)} ({seen[t]}×)" for t in toks if 0 < seen.get(t, 0) <= rare))
            if never:
                out.append(f"never seen for {scope} {value!r}: " + ", ".join(never[:8]))
                if scope == "agent":
                    out.extend(self._peer_reasons(value, never_toks))
            if seldom:
                out.append(f"rarely seen for {scope} {value!r}: " + ", ".join(seldom[:5]))
        return out

    def peer_use(self, agent: str, toks: Sequence[str]) -> Optional[List[Tuple[str, FrozenSet[str]]]]:
        """(token, the agent's peers that used it in training) for each of ``toks``, in order
        (``mimizuku.engine.peers``; empty for none, and for every token of an agent without
        peers); None: a model without peer groups. The one lookup the back-off and the reasons
        share."""
        pg = self.peer_groups_
        used = self.__dict__.get("agent_token_agents_")
        if pg is None or used is None:
            return None
        peers = pg.peers(agent)
        return [(t, used.get(t, frozenset()) & peers if peers else frozenset()) for t in toks]

    def _peer_reasons(self, agent: str, never_toks: Sequence[str]) -> List[str]:
        """What the agent's peers did of what is new on it (``mimizuku.engine.peers``)."""
        used = self.peer_use(agent, never_toks)
        if used is None:
            return []
        pg = self.peer_groups_
        if not pg.peers(agent):
            return [f"{agent!r} has no peers (agents doing the same work): judged in full"]
        routine = [_pretty(t) for t, who in used if who]
        unknown = [_pretty(t) for t, who in used if not who]
        out = []
        if routine:
            out.append(f"routine for its peers ({pg.describe_group(agent)}): " + ", ".join(routine[:8]))
        if unknown:
            out.append(f"never seen among its peers ({pg.describe_group(agent)}): " + ", ".join(unknown[:8]))
        return out

    def explain(self, key: Key, alert: Dict[str, Any]) -> List[str]:
        reasons = self.rare_tokens(key)
        if "baselines_" in self.__dict__ and self.repeat_situation(key) is not None:
            reasons.insert(0, self.baselines_.describe(key[0], self.account_of(key), "this one"))
        near, dist, n = self.nearest(key)
        reasons.append(f"nearest normal example: {self.describe(near)} (seen {n}×, distance {dist:.2f})")
        return reasons


def _pretty(token: str) -> str:
    return token.split(":", 1)[1] if ":" in token and not token.startswith("dir:") else token
