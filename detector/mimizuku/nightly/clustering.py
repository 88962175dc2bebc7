"""DBSCAN over the context detector's feature space: the clusters of the nightly day analysis.

Feature space: the context detector's (``detectors/context.py``), so the nightly clusters and the
live context scores speak about the same thing. An alert is a point made of one-hot blocks (rule,
rule groups, level, agent, user, source-address class, Windows event or IDS signature — never
ordinal codes, so no distance between arbitrary label numbers), the hour of day on a circle,
and log2 rates (this rule on this agent, this source) in the trailing window. Identical points
("situations") are clustered once, weighted by how many alerts of the day they stand for
(``sample_weight``), so a day of 70,000 alerts is a few thousand points.

DBSCAN runs per group of blocks that lie within ``eps`` of each other: two points whose blocks
are farther apart than ``eps`` can never be neighbours, so the groups are independent and
clustering each one is exactly DBSCAN on the whole space. The groups are found from the block
distances themselves (a radius-``eps`` neighbour graph, connected components), not assumed:
blocks that differ only in rule groups or level (closer than ``eps``) are clustered together
with their one-hot features. Labels are unique across the day; ``-1`` is noise, the outliers.
"""
from __future__ import annotations

import logging
from collections import Counter
from typing import TYPE_CHECKING, Any, Dict, Hashable, Iterable, Iterator, List, Optional, Sequence, Tuple

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# numpy / scikit-learn are imported where they are used: `mimizuku --help` must not pay for them.

__all__ = ["ContextClusterer", "Situation"]

log = logging.getLogger("mimizuku.batch")

Situation = Tuple[Hashable, ...]


class ContextClusterer:
    """DBSCAN over the context detector's feature space (scikit-learn style).

    ``fit_predict(alerts)`` labels alerts given in stream order (rates depend on order);
    ``fit_predict_situations(situations)`` labels precomputed situations. After fitting:
    ``labels_`` (per input), ``n_clusters_``, ``situations_`` (distinct points) and
    ``situation_labels_``.
    """

    def __init__(self, eps: float = 0.5, min_samples: int = 5, rate_window: int = 60,
                 hour_weight: float = 0.35, rate_weight: float = 0.5):
        self.eps = eps
        self.min_samples = min_samples
        self.rate_window = rate_window
        self.hour_weight = hour_weight
        self.rate_weight = rate_weight

    @classmethod
    def from_model(cls, model: Any, eps: Optional[float] = None,
                   min_samples: Optional[int] = None) -> "ContextClusterer":
        """Same feature space and DBSCAN parameters as the model's context detector."""
        ctx = getattr(model, "detectors_", {}).get("context")
        p: Dict[str, Any] = {}
        if ctx is not None:
            params = ctx.get_params()
            p = {k: params[k] for k in ("eps", "min_samples", "rate_window", "hour_weight", "rate_weight")
                 if k in params}
        else:
            p = {"eps": getattr(model, "eps", 0.5), "min_samples": getattr(model, "min_samples", 5),
                 "rate_window": getattr(model, "rate_window", 60)}
        if eps is not None:
            p["eps"] = eps
        if min_samples is not None:
            p["min_samples"] = min_samples
        return cls(**p)

    # -- the feature space -----------------------------------------------------------------------
    def feature_detector(self):
        """A fresh context detector used only for its features (its own rate windows)."""
        from mimizuku.engine.detectors.context import ContextDetector

        d = ContextDetector(eps=self.eps, min_samples=self.min_samples, rate_window=self.rate_window,
                            hour_weight=self.hour_weight, rate_weight=self.rate_weight)
        d.start_stream()
        return d

    def situations(self, alerts: Iterable[Dict[str, Any]]) -> Iterator[Optional[Situation]]:
        """The situation of each alert, in order (``None`` for one without a rule id)."""
        d = self.feature_detector()
        for a in alerts:
            yield d.situation(d.key(a)) if d.applies(a) else None

    # -- clustering ------------------------------------------------------------------------------
    def fit_predict(self, alerts: Iterable[Dict[str, Any]], y=None) -> "np.ndarray":
        sits = list(self.situations(alerts))
        return self.fit_predict_situations(sits)

    def fit_predict_situations(self, sits: Sequence[Optional[Situation]]) -> "np.ndarray":
        """Labels per input situation (``-2`` for ``None``: not clustered)."""
        import numpy as np
        from sklearn.cluster import DBSCAN

        from mimizuku.engine.detectors.context import MAX_EPS

        if not 0 < self.eps:
            raise ValueError("eps must be > 0")
        if self.eps > MAX_EPS:
            log.info("eps %.2f exceeds the context detector's block separation; blocks are merged by distance", self.eps)
        counts = Counter(s for s in sits if s is not None)
        uniq: List[Situation] = list(counts)
        weights = np.fromiter((counts[s] for s in uniq), dtype=float, count=len(uniq))
        labels_u = np.full(len(uniq), -1, dtype=int)
        if uniq:
            fd = self.feature_detector()
            cont = np.array([fd.continuous_features(*s[1:]) for s in uniq], dtype=float)
            blocks = list(dict.fromkeys(s[0] for s in uniq))
            bpos = {b: i for i, b in enumerate(blocks)}
            sit_block = np.fromiter((bpos[s[0]] for s in uniq), dtype=int, count=len(uniq))
            comp, Xb = self._block_components(blocks, fd)
            members: Dict[int, List[int]] = {}
            for i, b in enumerate(sit_block):
                members.setdefault(int(comp[b]), []).append(i)
            next_label = 0
            for c in sorted(members, key=lambda c: members[c][0]):  # order of first appearance
                idx = np.asarray(members[c])
                if len(idx) == 1:
                    lab = np.where(weights[idx] >= self.min_samples, 0, -1)
                else:
                    if len({int(sit_block[i]) for i in idx}) == 1:
                        X = cont[idx]
                    else:  # blocks within eps of each other: cluster them with their one-hot part
                        X = np.hstack([Xb[sit_block[idx]].toarray(), cont[idx]])
                    lab = DBSCAN(eps=self.eps, min_samples=self.min_samples, algorithm="kd_tree").fit_predict(
                        X, sample_weight=weights[idx])
                labels_u[idx] = np.where(lab >= 0, lab + next_label, -1)
                if (lab >= 0).any():
                    next_label += int(lab.max()) + 1
            self.n_clusters_ = next_label
        else:
            self.n_clusters_ = 0
        pos = {s: i for i, s in enumerate(uniq)}
        self.situations_ = uniq
        self.situation_weights_ = weights
        self.situation_labels_ = labels_u
        self.labels_ = np.fromiter((labels_u[pos[s]] if s is not None else -2 for s in sits),
                                   dtype=int, count=len(sits))
        return self.labels_

    def _block_components(self, blocks: List[Hashable], fd: Any):
        """Connected components of blocks closer than eps (one-hot distance), and the block rows."""
        import numpy as np
        from scipy.sparse.csgraph import connected_components
        from sklearn.feature_extraction import DictVectorizer
        from sklearn.neighbors import radius_neighbors_graph

        Xb = DictVectorizer(sparse=True).fit_transform([fd.block_features(b) for b in blocks]).tocsr()
        if len(blocks) == 1:
            return np.zeros(1, dtype=int), Xb
        g = radius_neighbors_graph(Xb, radius=self.eps, mode="connectivity", include_self=False)
        _, comp = connected_components(g, directed=False)
        return comp, Xb
