"""Peer groups: agents that do the same kind of work, found from what they did in training.

"First time on this host" is news of two kinds. ``gitlab-runner restart`` on a CI runner whose
twin runs it every week is the host catching up with its role; the same command on a database
server, whose peers never ran it, is something nobody of its kind does. The detectors tell the two
apart by backing off from the agent to its *peer group*: what an agent never did but its peers do
routinely counts for less; what none of its peers ever did counts in full.

Groups are learnt, not configured (host names lie; roles drift). Each agent's *profile* is what
the detectors counted for it in training (``Detector.profile_terms``): the Wazuh rules that fired
there, the programs its accounts ran, the directories whose files changed. Terms are weighted
``log(1 + count) × idf``, ``idf = log((1 + agents) / (1 + agents using the term))``: a rule every
agent fires, such as the agent's own keep-alive, weighs nothing (it says nothing about a role);
two hosts sharing the same rare web rules say a lot, each profile scaled to
unit length, and agents are joined by average-linkage clustering on cosine distance, cut where
the average similarity between two groups falls below ``min_similarity``. An agent unlike any
other stays in a group of one: it has no peers, and its back-off goes to the fleet.

Deterministic (same training, same groups, same ids), bounded (``max_agents`` are clustered; any
others join the group whose centroid is most similar, or stay alone), and plain data: the groups
travel in the model manifest as JSON, for ``mimizuku status`` and the report.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Any, Dict, FrozenSet, Iterable, List, Mapping, Optional, Tuple

import numpy as np

#: the lowest average cosine similarity of the profiles inside one group (chosen on generator
#: seed 0: web servers, CI runners and developer workstations pair up; a database server, a mail
#: relay, a bastion and the manager stay alone)
MIN_SIMILARITY = 0.5
#: agents clustered exactly (the distance matrix is max_agents² / 2 floats)
MAX_AGENTS = 2000
#: terms named in a group's label
LABEL_TERMS = 3


class PeerGroups:
    """Agents grouped by their training profiles (see the module docstring).

    Fitted state: ``group_of_`` (agent -> group id), ``members_`` (group id -> agents, sorted),
    ``labels_`` (group id -> the terms that most characterise it)."""

    def __init__(self, min_similarity: float = MIN_SIMILARITY, max_agents: int = MAX_AGENTS):
        self.min_similarity = min_similarity
        self.max_agents = max_agents

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, profiles: Mapping[str, Mapping[str, float]]) -> "PeerGroups":
        """Group agents by their profiles: agent -> {term: count}."""
        if not 0.0 < self.min_similarity <= 1.0:
            raise ValueError("min_similarity must be in (0, 1]")
        agents = sorted(a for a, p in profiles.items() if p)
        terms = sorted({t for a in agents for t in profiles[a]})
        vocab = {t: i for i, t in enumerate(terms)}
        X = np.zeros((len(agents), len(terms)))
        for r, a in enumerate(agents):
            for t, n in profiles[a].items():
                if n > 0:
                    X[r, vocab[t]] = math.log1p(float(n))
        df = (X > 0).sum(axis=0)
        # what every agent does says nothing about a role: weight 0 (no "+ 1" smoothing)
        idf = np.log((1.0 + len(agents)) / (1.0 + df))
        X *= idf
        norms = np.linalg.norm(X, axis=1)
        X /= np.where(norms > 0, norms, 1.0)[:, None]
        # the busiest agents are clustered exactly; the others join the nearest group's centroid
        busy = np.argsort(-np.array([sum(profiles[a].values()) for a in agents]), kind="stable")
        core = np.sort(busy[: self.max_agents])
        labels = _average_linkage(X[core], 1.0 - self.min_similarity)
        assign = np.full(len(agents), -1)
        assign[core] = labels
        rest = np.setdiff1d(np.arange(len(agents)), core)
        if rest.size:
            n_lab = int(labels.max()) + 1
            cent = np.vstack([X[core][labels == g].mean(axis=0) for g in range(n_lab)])
            cent /= np.maximum(np.linalg.norm(cent, axis=1), 1e-12)[:, None]
            sim = X[rest] @ cent.T
            best = sim.argmax(axis=1)
            for j, (r, g) in enumerate(zip(rest, best)):
                assign[r] = g if sim[j, g] >= self.min_similarity else n_lab + j
        # ids by size (largest first), then by first member: stable across identical trainings
        groups: Dict[int, List[int]] = {}     # label -> rows (agents in sorted order)
        for r, g in enumerate(assign):
            groups.setdefault(int(g), []).append(r)
        ordered = sorted(groups.values(), key=lambda rows: (-len(rows), agents[rows[0]]))
        self.members_: Dict[str, Tuple[str, ...]] = {}
        self.group_of_: Dict[str, str] = {}
        self.labels_: Dict[str, List[str]] = {}
        for i, rows in enumerate(ordered, 1):
            gid = f"g{i}"
            ms = tuple(agents[r] for r in rows)
            self.members_[gid] = ms
            for a in ms:
                self.group_of_[a] = gid
            weight = X[rows].mean(axis=0) * (1.0 if len(ms) == 1 else (X[rows] > 0).all(axis=0))
            top = np.argsort(-weight, kind="stable")[:LABEL_TERMS]
            self.labels_[gid] = [terms[t] for t in top if weight[t] > 0]
        return self

    # -- use -----------------------------------------------------------------------------------
    def group(self, agent: str) -> Optional[str]:
        """The agent's group id (None: an agent not seen in training)."""
        return self.__dict__.get("group_of_", {}).get(agent)

    def peers(self, agent: str) -> FrozenSet[str]:
        """The other members of the agent's group (empty: no peers, or an unknown agent)."""
        gid = self.group(agent)
        if gid is None:
            return frozenset()
        return frozenset(self.members_[gid]) - {agent}

    def describe_group(self, agent: str) -> str:
        """How reasons name an agent's group: ``peer group g2 (web-01, web-02)``."""
        gid = self.group(agent)
        if gid is None:
            return "no peer group"
        ms = self.members_[gid]
        shown = ", ".join(ms[:5]) + (f", … ({len(ms)} agents)" if len(ms) > 5 else "")
        return f"peer group {gid} ({shown})"

    # -- plain data (the manifest, status, the report) ---------------------------------------
    def to_json(self) -> List[Dict[str, Any]]:
        """The groups as JSON rows: id, members, label terms (largest group first)."""
        return [{"id": g, "members": list(ms), "label": list(self.labels_.get(g, []))}
                for g, ms in self.__dict__.get("members_", {}).items()]

    @classmethod
    def from_json(cls, rows: Iterable[Mapping[str, Any]]) -> "PeerGroups":
        """The groups ``to_json`` wrote (``ValueError`` for anything else)."""
        pg = cls()
        pg.members_, pg.group_of_, pg.labels_ = {}, {}, {}
        for row in rows:
            gid, members = row["id"], row["members"]
            if not isinstance(gid, str) or not isinstance(members, list) or not all(isinstance(m, str) for m in members):
                raise ValueError("a peer group is {'id': str, 'members': [str], 'label': [str]}")
            pg.members_[gid] = tuple(members)
            pg.labels_[gid] = [str(t) for t in row.get("label") or ()]
            for m in members:
                pg.group_of_[m] = gid
        return pg


def agent_profiles(detectors: Iterable[Any]) -> Dict[str, Counter]:
    """Each agent's profile from what the detectors counted in training (between ``begin_fit``
    and ``end_fit``): term -> alerts, summed over the detectors' ``profile_terms``."""
    profiles: Dict[str, Counter] = {}
    for d in detectors:
        for key, n in d.training_counts().items():
            got = d.profile_terms(key)
            if got is None:
                continue
            agent, terms = got
            c = profiles.get(agent)
            if c is None:
                c = profiles[agent] = Counter()
            for t in terms:
                c[t] += n
    return profiles


def _average_linkage(X: np.ndarray, cut: float) -> np.ndarray:
    """Cluster labels (0..k-1) of unit rows by average linkage on cosine distance, cut at ``cut``."""
    n = len(X)
    if n <= 1:
        return np.zeros(n, dtype=int)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    D = np.clip(1.0 - X @ X.T, 0.0, 2.0)
    np.fill_diagonal(D, 0.0)
    Z = linkage(squareform((D + D.T) / 2.0, checks=False), method="average")
    return fcluster(Z, t=cut, criterion="distance") - 1
