"""The ``World``: the fleet, the planner that schedules one day's events, and the emission that turns
the events into alerts in time order; ``generate()`` and ``episodes()`` are the generator's entry
points. The World's behaviour comes in parts, one class per module, mixed in here: alert builders
(``builders``), actions (``actions``), host routines (``roles``), people at work (``people``) and
attack episodes (``attacks``). They share the World's state through ``self``.
"""
from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from mimizuku.tools.synth.actions import Actions
from mimizuku.tools.synth.attacks import AttackEpisodes
from mimizuku.tools.synth.builders import AlertBuilders
from mimizuku.tools.synth.fleet import DAY_MS, HOUR_MS, LABEL_KEY, FleetConfig
from mimizuku.tools.synth.formats import poisson, public_ip, rand_token
from mimizuku.tools.synth.hosts import ADMINS, MAIL_USERS, NEW_ADMIN, Host
from mimizuku.tools.synth.people import PeopleAtWork
from mimizuku.tools.synth.roles import HostRoutines

_HOURS = tuple(range(24))
_OFFICE_W = (0.01, 0.01, 0.01, 0.01, 0.01, 0.02, 0.05, 0.25, 0.7, 1.0, 1.0, 0.95, 0.6, 0.9, 1.0, 1.0, 0.9, 0.6, 0.3,
             0.15, 0.1, 0.08, 0.05, 0.02)
_WEEKEND_W = (0.05, 0.03, 0.02, 0.02, 0.02, 0.02, 0.03, 0.05, 0.1, 0.2, 0.3, 0.35, 0.35, 0.35, 0.35, 0.3, 0.3, 0.3, 0.3,
              0.3, 0.25, 0.2, 0.15, 0.08)


def _cum(ws: Sequence[float]) -> Tuple[float, ...]:
    out, s = [], 0.0
    for w in ws:
        s += w
        out.append(s)
    return tuple(out)


_OFFICE_CUM = _cum(_OFFICE_W)
_WEEKEND_CUM = _cum(_WEEKEND_W)


def _fmt_ts(t: int) -> str:
    sec, ms = divmod(int(t), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{ms:03d}+0000"


class World(AlertBuilders, Actions, HostRoutines, PeopleAtWork, AttackEpisodes):
    """Holds the fleet, plans activity into time-stamped events and turns events into alerts.

    Planning (what happens when, who does it) runs ahead, day by day; the alert for an event is
    built when it is emitted, in time order, because ids, ``firedtimes``, first-time-seen rules
    and file states depend on what came before.
    """

    def __init__(self, cfg: FleetConfig) -> None:
        cfg.check()
        self.cfg = cfg
        self.seed = cfg.seed
        self.scale = float(cfg.scale)
        self.periodic = min(1.0, self.scale)
        self.start = cfg.resolved_start()
        self.days = int(cfg.days)
        self.t0 = int(datetime(self.start.year, self.start.month, self.start.day, tzinfo=timezone.utc).timestamp()) * 1000
        self.t_end = self.t0 + self.days * DAY_MS
        self.hosts = [Host(s, self) for s in cfg.resolved_hosts()]
        self.by_role: Dict[str, List[Host]] = {}
        for h in self.hosts:
            self.by_role.setdefault(h.role, []).append(h)
        mgr = self.by_role.get("manager")
        self.manager_name = mgr[0].name if mgr else cfg.manager_name
        self.attack_window = min(self.days, max(0, int(cfg.attack_days)))
        wr = random.Random(f"mimizuku-synth:{self.seed}:world")
        self.botnet = [public_ip(wr) for _ in range(600)]
        self.home_ip = {u: public_ip(wr) for u in MAIL_USERS + (NEW_ADMIN,)}
        self.mobile_ip = {u: public_ip(wr) for u in MAIL_USERS}
        self.office_ip = {u: f"10.20.10.{31 + i}" for i, u in enumerate(MAIL_USERS + (NEW_ADMIN,))}
        self.vpn_ip = {u: f"10.20.200.{11 + i}" for i, u in enumerate(MAIL_USERS + (NEW_ADMIN,))}
        self.keyfp = {u: self._fingerprint(wr) for u in ADMINS + (NEW_ADMIN, "deploy", "svc-backup", "frank", "grace")}
        self.runner_token = {h.name: rand_token(wr, 8, "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789")
                             for h in self.hosts}
        # The new admin joins on the first attack day (so a first login and a new account are in
        # the test window too), or mid-period when there is no attack window.
        self.onboard_day = (self.days - self.attack_window) if self.attack_window else self.days // 2
        self.onboard_day = min(max(self.onboard_day, 0), self.days - 1)
        # emission state
        self.fired: Dict[str, int] = {}
        self.offset = 0
        self.offset_day = -1
        self._ts_day = -1
        self._ts_prefix = ""
        self.fts_login = set()
        self.fts_sudo = set()
        for h in self.hosts:
            if h.role == "workstation":
                self.fts_login.add((h.owner, h.name))
                self.fts_sudo.add((h.owner, h.name))
            else:
                for adm in ADMINS:
                    self.fts_login.add((adm, h.name))
                    self.fts_sudo.add((adm, h.name))
            if h.role == "web":
                self.fts_login.add(("deploy", h.name))
                self.fts_sudo.add(("deploy", h.name))
            if h.role == "bastion":
                self.fts_login.add(("svc-backup", h.name))
        # planning state
        self._seq = 0
        self.buckets: Dict[int, list] = {}
        self.sink: list = []
        self.episode_mode = False
        self.last_run: tuple = (None, 0, 0)
        self.releases: Dict[str, List[str]] = {}
        self.pkg_version: Dict[Tuple[str, str], str] = {}

    @staticmethod
    def _fingerprint(r: random.Random) -> str:
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        return "".join(r.choice(alphabet) for _ in range(43))

    # ---------------------------------------------------------------- scheduling
    def at(self, t: int, fn: Callable, *args: Any) -> None:
        self.sink.append((int(t), fn, args))

    def _bucket(self, events: Iterable[Tuple[int, Callable, tuple]], label: Optional[Tuple[str, str]]) -> None:
        for t, fn, args in events:
            if not (self.t0 <= t < self.t_end):
                continue
            self._seq += 1
            self.buckets.setdefault((t - self.t0) // DAY_MS, []).append((t, self._seq, fn, args, label))

    # ---------------------------------------------------------------- benign activity, one day
    def n(self, r: random.Random, base: float, weekend: bool = False, weekend_factor: float = 1.0) -> int:
        """How many times a daily activity with mean ``base`` (at scale 1) happens today."""
        return poisson(r, base * self.scale * (weekend_factor if weekend else 1.0))

    def office_t(self, r: random.Random, day_t: int, weekend: bool = False) -> int:
        hour = r.choices(_HOURS, cum_weights=_WEEKEND_CUM if weekend else _OFFICE_CUM)[0]
        return day_t + hour * HOUR_MS + r.randrange(HOUR_MS)

    def plan_day(self, d: int) -> None:
        """Schedule one day's benign activity of the whole fleet (some may spill past midnight)."""
        self.sink = []
        day_t = self.t0 + d * DAY_MS
        wd = (self.start + timedelta(days=d)).weekday()
        weekend = wd >= 5
        for h in self.hosts:
            r = random.Random(f"mimizuku-synth:{self.seed}:{d}:{h.name}")
            if h.role != "workstation":
                self._periodic(h, d, day_t, wd, r)
            getattr(self, "_role_" + h.role)(h, d, day_t, weekend, r)
        r = random.Random(f"mimizuku-synth:{self.seed}:{d}:fleet")
        self._admins(d, day_t, weekend, r)
        self._deploys(d, day_t, weekend, r)
        if wd == self.cfg.patch_weekday:
            self._patch_day(d, day_t, r)
        self._unattended(d, day_t, r)
        if d == self.onboard_day:
            self._onboarding(d, day_t, r)
        self._oddities(d, day_t, weekend, r)
        self._flush_scans(day_t)
        self._bucket(self.sink, None)
        self.sink = []


def generate(config: FleetConfig) -> Iterator[Dict[str, Any]]:
    """Alerts of the whole period, in time order, each with its ``_label``. Deterministic for a
    given configuration (seed, start, hosts, scale...). The configuration is checked now."""
    world = World(config)
    return _emit_all(world)


def _emit_all(world: World) -> Iterator[Dict[str, Any]]:
    for p in world.episode_plans():
        world._bucket(p["events"], (p["episode"], p["kind"]))
    for d in range(world.days):
        world.plan_day(d)
        events = world.buckets.pop(d, [])
        events.sort(key=lambda e: (e[0], e[1]))
        for t, _seq, fn, args, label in events:
            alert = fn(t, *args)
            if label is None:
                alert[LABEL_KEY] = {"attack": False, "episode": "-", "kind": "-"}
            else:
                alert[LABEL_KEY] = {"attack": True, "episode": label[0], "kind": label[1]}
            yield alert


def episodes(config: FleetConfig) -> List[Dict[str, Any]]:
    """The attack episodes :func:`generate` plants for ``config``: ``episode`` ("kind#n"),
    ``kind``, ``host`` (the target) and its ``agent_id``, ``hosts`` (every host with an alert
    of the episode: the attacker may come in through the bastion), ``start`` / ``end``
    (timestamps of its first and last alert, formatted like ``alert["timestamp"]``),
    ``n_alerts`` and a ``description``."""
    world = World(config)
    out = []
    for p in world.episode_plans():
        ts = [e[0] for e in p["events"]]
        out.append({
            "episode": p["episode"],
            "kind": p["kind"],
            "host": p["host"].name,
            "agent_id": p["host"].agent_id,
            "hosts": sorted({e[2][0].name for e in p["events"]}),
            "start": _fmt_ts(min(ts)) if ts else None,
            "end": _fmt_ts(max(ts)) if ts else None,
            "n_alerts": len(ts),
            "description": p["description"],
        })
    return out
