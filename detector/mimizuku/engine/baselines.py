"""Entity baselines: how surprising something new is for the entity it happens to.

One calibration per detector judges every host by the fleet's average. But a new command from a
web server's ``www-data``, which ran one distinct command 201 times in training, is far more
surprising than a new command on a CI runner that runs hundreds of never-seen commands a day. So
novelty is judged against the history of its *entity*, at the most specific level that has
enough history to say anything, backing off when it has too little:

    agent × account  →  agent  →  the agent's peer group (mimizuku.engine.peers)  →  the fleet

At each level the history is the situations counted there in training (a detector decides what a
situation is: a rule for the context detector, a command for the command detector, a path for
the file detector). The estimator of "how likely is the next alert to be something never seen
here" is Good–Turing's unseen mass ``(N1 + 1) / (N + 1)``: ``N1`` situations seen exactly once,
``N`` alerts (the ``+ 1`` keeps a history without singletons from claiming certainty). Its
surprise is ``-log10`` of that. A level is used when it holds at least ``min_history`` alerts;
the fleet always answers.

``factor`` gives the surprise *relative to the fleet's typical entity* (the median over agents,
``reference_``; clipped to ``[1/max_factor, max_factor]``): an entity as varied as a typical host
gets 1, a narrow one more, a broad one less. The LOF detectors weigh novelty by each scope's own
Good–Turing surprise (``mimizuku.engine.detectors.lof``); the context detector measured this factor
and does not weigh its score by it (docs/detection.md). Every detector's reasons name the entity
and its history (``describe``).

Plain data, standard library only; fitted from (agent, account, situation, alerts) counts.
"""
from __future__ import annotations

import math
import statistics
from collections import Counter
from typing import Dict, Hashable, Iterable, NamedTuple, Tuple

#: alerts a level needs before it speaks for the entity (fewer: back off one level)
MIN_HISTORY = 30
#: the relative surprise is clipped to [1 / MAX_FACTOR, MAX_FACTOR]
MAX_FACTOR = 2.0


class History(NamedTuple):
    """What one level knew of an entity: which level, its name, distinct situations, alerts,
    situations seen once."""

    level: str
    entity: str
    distinct: int
    alerts: int
    singletons: int

    @property
    def unseen_mass(self) -> float:
        """Good–Turing: the chance that the next alert here is a situation never seen here."""
        return (self.singletons + 1.0) / (self.alerts + 1.0)

    @property
    def surprise(self) -> float:
        return -math.log10(self.unseen_mass)


class _Tally:
    __slots__ = ("alerts", "counts")

    def __init__(self) -> None:
        self.alerts = 0
        self.counts: Counter = Counter()

    def add(self, situation: Hashable, n: int) -> None:
        self.alerts += n
        self.counts[situation] += n

    def summary(self) -> Tuple[int, int, int]:
        return len(self.counts), self.alerts, sum(1 for v in self.counts.values() if v == 1)


class EntityBaselines:
    """Per-entity histories with back-off (see the module docstring).

    ``what``: how reasons name a situation (``"distinct rules"``, ``"distinct commands"``)."""

    def __init__(self, what: str = "distinct situations", min_history: int = MIN_HISTORY,
                 max_factor: float = MAX_FACTOR):
        self.what = what
        self.min_history = min_history
        self.max_factor = max_factor

    def fit(self, counts: Iterable[Tuple[str, str, Hashable, int]], peer_groups=None) -> "EntityBaselines":
        """``counts``: (agent, account or "", situation, alerts) as training counted them."""
        pairs: Dict[Tuple[str, str], _Tally] = {}
        agents: Dict[str, _Tally] = {}
        fleet = _Tally()
        for agent, account, situation, n in counts:
            n = int(n)
            if n <= 0:
                continue
            if account:
                t = pairs.get((agent, account))
                if t is None:
                    t = pairs[(agent, account)] = _Tally()
                t.add(situation, n)
            t = agents.get(agent)
            if t is None:
                t = agents[agent] = _Tally()
            t.add(situation, n)
            fleet.add(situation, n)
        groups: Dict[str, _Tally] = {}
        if peer_groups is not None:
            for agent, tally in agents.items():
                gid = peer_groups.group(agent)
                if gid is not None and len(peer_groups.members_[gid]) > 1:
                    g = groups.get(gid)
                    if g is None:
                        g = groups[gid] = _Tally()
                    for s, n in tally.counts.items():
                        g.add(s, n)
        # only the summaries are kept: (distinct, alerts, singletons) per entity
        self.pairs_ = {k: t.summary() for k, t in pairs.items()}
        self.agents_ = {k: t.summary() for k, t in agents.items()}
        self.groups_ = {k: t.summary() for k, t in groups.items()}
        self.fleet_ = fleet.summary()
        self.peer_groups_ = peer_groups
        usable = [History("agent", a, *s).surprise for a, s in self.agents_.items() if s[1] >= self.min_history]
        self.reference_ = statistics.median(usable) if usable else History("fleet", "", *self.fleet_).surprise
        return self

    def history(self, agent: str, account: str = "") -> History:
        """The most specific level with at least ``min_history`` alerts (the fleet at last)."""
        if account:
            s = self.pairs_.get((agent, account))
            if s is not None and s[1] >= self.min_history:
                return History("account", f"{account!r} on {agent!r}", *s)
        s = self.agents_.get(agent)
        if s is not None and s[1] >= self.min_history:
            return History("agent", repr(agent), *s)
        pg = self.peer_groups_
        gid = pg.group(agent) if pg is not None else None
        s = self.groups_.get(gid) if gid is not None else None
        if s is not None and s[1] >= self.min_history:
            return History("peer group", pg.describe_group(agent), *s)
        return History("fleet", "the fleet", *self.fleet_)

    def factor(self, agent: str, account: str = "") -> float:
        """How much more surprising news is for this entity than for the fleet's typical one."""
        f = self.history(agent, account).surprise / max(self.reference_, 1e-9)
        return min(self.max_factor, max(1.0 / self.max_factor, f))

    def describe(self, agent: str, account: str = "", new: str = "this one") -> str:
        """The entity's history as a reason: ``'www-data' on 'web-01' had 1 distinct command
        in 201 alerts in training; this one is new``."""
        h = self.history(agent, account)
        plural = self.what if h.distinct != 1 else self.what.rstrip("s")
        return (f"{h.entity} had {h.distinct:,} {plural} in {h.alerts:,} alerts in training "
                f"({h.singletons:,} seen once); {new} is new there")
