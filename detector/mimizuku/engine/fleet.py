"""Fleet waves: the same new situation appearing on several agents at once.

A change rolled out to a fleet (a new admin account created on every server, a kernel upgrade and
the reboots after it) reaches each host as something that host never did in training: a wave of
the same novelty, one host after another, within minutes. An intrusion is one host doing
something new; a roll-out is many hosts doing the *same* new thing at the same time.

``FleetWave.spread`` counts, for a situation described without its agent (the signature), on how
many *other* agents it appeared as new within the trailing ``window``. The detectors divide an
alert's raw score by ``1 + spread``: the first host of a wave is judged in full (an attacker's
first step is never discounted), the second counts half, the fifth a fifth. An attacker acting
on one host gets nothing from this; one who does the same new thing on several hosts within the
window is one incident, raised by its first alert.

Only new situations enter (the detector decides what is new for the agent), so routine activity
that fires everywhere all day (sudo, cron) never forms a wave that could hide something. Memory
is bounded: ``max_signatures`` signatures (oldest quarter dropped when full), each with the
agents seen within the window.
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, List, Optional, Tuple

import numpy as np

from mimizuku.core import fields
from mimizuku.core.bounded import make_room
from mimizuku.core.json_keys import decode_key, keyed_rows


class FleetWave:
    """Per signature, the agents on which it appeared as new, and when (trailing window)."""

    def __init__(self, window: int = 3600, max_signatures: int = 4096, max_agents: int = 4096):
        self.window = window
        self.max_signatures = max_signatures
        self.max_agents = max_agents
        self._seen: Dict[Hashable, Dict[str, int]] = {}

    def spread(self, signature: Hashable, agent: str, t: Optional[int]) -> int:
        """Other agents on which ``signature`` appeared as new within ``window`` before ``t``;
        records this agent."""
        if t is None:
            return 0
        seen = self._seen
        agents = seen.get(signature)
        if agents is None:
            make_room(seen, self.max_signatures)
            seen[signature] = {agent: t}
            return 0
        lo = t - self.window
        stale = [a for a, s in agents.items() if s < lo]
        for a in stale:
            del agents[a]
        n = sum(1 for a, s in agents.items() if a != agent and s <= t)
        if agent not in agents and len(agents) >= self.max_agents:
            del agents[min(agents, key=agents.__getitem__)]
        agents[agent] = max(t, agents.get(agent, t))
        return n

    def reset(self) -> None:
        self._seen = {}

    def to_json(self, max_keys: int) -> Dict[str, Any]:
        """The waves as JSON (``mimizuku.engine.stream_snapshot``): the ``max_keys`` signatures
        met last, each with its agents and when; signatures no JSON can hold are left out."""
        return {"window": self.window,
                "seen": keyed_rows((signature, [[a, t] for a, t in agents.items()])
                                   for signature, agents in list(self._seen.items())[-max_keys:])}

    @classmethod
    def from_json(cls, doc: Dict[str, Any]) -> "FleetWave":
        """The waves ``to_json`` wrote (``TypeError``/``ValueError`` for anything else)."""
        w = cls(int(doc["window"]))
        for signature, agents in doc["seen"]:
            seen = {}
            for agent, t in agents[-w.max_agents:]:
                if not isinstance(agent, str) or type(t) is not int:
                    raise ValueError("a wave's agent is (name, whole seconds)")
                seen[agent] = t
            make_room(w._seen, w.max_signatures)
            w._seen[decode_key(signature)] = seen
        return w

    def tracked(self) -> Tuple[int, int]:
        """(signatures tracked, most agents tracked for one signature) now. Public: memory is
        bounded (``max_signatures``, ``max_agents``), and the bounds are checked from outside."""
        return len(self._seen), max((len(a) for a in self._seen.values()), default=0)


def shared_along_waves(raw: np.ndarray, waves: List[int]) -> np.ndarray:
    """Raw scores divided by ``1 + wave``: the k-th other agent of a wave counts 1/(k+1)."""
    w = np.fromiter(waves, dtype=float, count=len(waves))
    return raw / (1.0 + w) if w.any() else raw


def wave_reason(wave: int, window: float) -> str:
    return (f"the same new situation appeared on {wave} other agent(s) within {window} s "
            f"(a fleet-wide change: score divided by {wave + 1})")


class WaveJudged:
    """Mixin for the LOF detectors: a new situation's raw score shared along its fleet wave.

    The key ends with the wave: on how many other agents the same situation (the key without its
    agent, ``_signature``) appeared as new within ``wave_window`` — new meaning that the agent
    scope (``scopes()[0]``) has a token never seen there. ``raw_scores`` divides by ``1 + wave``.
    Training keys carry 0: a wave is judged against the stream, not learnt (``observe`` counts
    as ``LOFDetector.observe`` does, with the wave set to 0).
    """

    wave_window = 3600
    _WAVE_AT = -1  # where the wave sits in the key (subclasses: a fixed index, after the channel)

    def _signature(self, key) -> Hashable:
        """The situation without its agent (first) and its wave (a wave goes through one
        channel, or none: the channel is part of it)."""
        return key[1:self._WAVE_AT]

    def with_wave(self, key, alert: Dict[str, Any]):
        """``key`` with its fleet wave appended (0 while fitting or when nothing in it is new)."""
        counts = self.__dict__.get("token_counts_")
        if counts is None or self.__dict__.get("_counts") is not None:
            return key + (0,)
        memo = self.__dict__.get("_known")
        if memo is None:
            memo = self._known = {}
        known = memo.get(key)
        if known is None:  # once per distinct situation: is everything in it known on its agent?
            scope = self.scopes(key)[0]
            seen = counts.get((scope[0], scope[1]))
            known = seen is not None and all(t in seen for t in scope[2])
            make_room(memo, self._CACHE_MAX)
            memo[key] = known
        if known:
            return key + (0,)
        agent = key[0]
        t = fields.alert_seconds(alert)
        tracker = self.__dict__.get("_wave")
        if tracker is None:
            tracker = self._wave = FleetWave(self.wave_window)
        return key + (tracker.spread(self._signature(key), agent, t),)

    def training_key(self, key):
        """The key as training counts it: what depends on the stream read so far (the wave) is
        set aside, so that a model does not depend on where its training stream was cut. Training
        counts situations, never waves: a key may come from a model in use (the nightly job shares
        the keys its filter computed), whose stream had waves."""
        at = self._WAVE_AT
        return key[:at] + (0,) + key[at + 1:] if key[at] else key

    def _wave_of(self, key) -> int:
        return key[self._WAVE_AT] if len(key) > self._WAVE_AT else 0

    def start_stream(self) -> None:
        super().start_stream()
        self._wave = FleetWave(self.wave_window)

    def raw_scores(self, keys):
        return shared_along_waves(super().raw_scores(keys), [self._wave_of(k) for k in keys])

    def explain(self, key, alert: Dict[str, Any]) -> List[str]:
        reasons = super().explain(key, alert)
        wave = self._wave_of(key)
        if wave:
            reasons.insert(0, wave_reason(wave, self.wave_window))
        return reasons

    _MEMOS = ("_known",)
    _UNSAVED = ("_wave",)
    _STREAM = (("wave", "_wave", "wave_window"),)  # waves in progress go on in a new model
