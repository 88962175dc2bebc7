"""Batch correlation: alerts that belong to the same story as an anomaly inherit a share of it.

A streaming scorer judges each alert when it arrives, so the failed logins before a successful
brute force, the ``sshd`` and PAM lines of an attacker's login, the ``-bash`` and ``sudo -i`` that
came before the odd command, look as ordinary as they are on their own. With a batch in hand
(``mimizuku score --correlate``) we can do what an analyst does: follow the identifiers Wazuh
already records from one alert to the next, and let each alert tied to an anomaly inherit a
discounted share of it.

The ties are concrete, never "same user within a quarter of an hour" (that spreads one odd CI
command to a whole day of builds):

* ``session``: audited commands of one login session (``data.audit.session``; daemons have none);
* ``process``: a command and its parent command, a file change and the process that made it
  (audit ``pid``/``ppid``, who-data ``process.id``). From an anomaly the tie runs up to its
  ancestors and down to its descendants, never sideways to siblings: a CI job's other steps are
  not tainted by one odd step, what the odd step started is;
* ``login``: the sshd/PAM/sudo lines of a user on an agent and the audited session of that user
  running at that moment (one session only: ambiguous cases are left alone);
* ``hop``: an ``ssh`` login on one agent from another agent's address, and the session on that
  other agent that was running as the same user at that moment (lateral movement);
* ``source``: alerts from one public address on one agent with gaps shorter than ``max_gap`` (a
  scan, a password-guessing run and the login that ends it);
* ``served``: a file added or changed on an agent and a later web request there for that file
  (the request's path, query left out, is the end of the file's path: ``/uploads/x.php`` and
  ``/var/www/app/uploads/x.php``), within ``window``. A web shell is a file dropped, then
  requested: the request carries the attacker's address, and through it the probes before;
* ``planted``: a file the web server's account added on an agent (an upload, a dropped shell)
  and the public source that was probing that agent's web server in the ``max_gap`` before it,
  when one source stands out: at least ``PLANTED_MIN`` requests and twice as many as any other.
  A shell that is never requested through a logged URL still has its uploader's probes.
  Measured on the tuning sets only: generator seed 0 on 14 days, correlated ROC-AUC 0.9925 →
  0.9988, on 5 training days 0.9875 → 0.9937 (its web shell's six probes, at score 0 on their
  own, now rank with the shell); seeds 3 and 5 unchanged.

Only anomalies of at least ``min_severity`` seed a story. By default a tied alert's score becomes
``decay × seed score × threshold`` when that is higher than its own: it ranks next to its anomaly,
under the threshold, and is reported through ``related_to`` as part of that anomaly's story
rather than as one more anomaly (one incident, not twenty alerts). With ``flag_related=True`` it
becomes ``decay × seed score`` and an anomaly when that reaches its threshold, with a reason
naming the seed and the tie.
"""
from __future__ import annotations

from collections import defaultdict, deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Tuple

from mimizuku.core.fields import ip_class
from mimizuku.core.severity import SEVERITIES
from mimizuku.engine.calibration import severity
from mimizuku.engine.flag_rule import FlagRule
from mimizuku.sources.reader import parse_timestamp

#: the flag rule with the model's own thresholds (a lifted record is judged like any other)
_AS_TRAINED = FlagRule()

#: How each tie is described in the reason of a lifted alert.
TIES = {
    "session": "same login session",
    "process": "same process tree",
    "login": "the login of the session",
    "hop": "ssh hop of the session",
    "source": "same source burst",
    "served": "the web request for the file",
    "planted": "the web probes before the file was written",
}

#: accounts web servers write files as (Debian's and Red Hat's, nginx's, SUSE's, Arch's)
WEB_ACCOUNTS = frozenset({"www-data", "apache", "nginx", "wwwrun", "http"})
#: requests a source must have made to be the one that planted a file (a ``planted`` tie)
PLANTED_MIN = 3
#: web requests remembered per agent while looking for the source that planted a file
_PLANTED_LOOKBACK = 256

#: files changed on one agent under one name that a web request may be for (the latest first)
_SERVED_CANDIDATES = 8

#: Rule groups of the lines a login leaves (sshd accepted, PAM session, sudo/su): failures are not.
_LOGIN_GROUPS = frozenset({"authentication_success", "pam", "sudo"})

#: Slack around a session's first and last command when matching sshd/PAM lines to it (s).
SESSION_SLACK = 15.0


class _Graph:
    """Ties between record indices: peer ties go both ways, process ties have a direction."""

    def __init__(self, n: int) -> None:
        self.peers: List[List[Tuple[int, str]]] = [[] for _ in range(n)]
        self.parent: List[Optional[int]] = [None] * n
        self.children: List[List[int]] = [[] for _ in range(n)]

    def peer(self, i: int, j: int, kind: str) -> None:
        if i != j:
            self.peers[i].append((j, kind))
            self.peers[j].append((i, kind))

    def set_parent(self, child: int, parent: int) -> None:
        if child != parent and self.parent[child] is None:
            self.parent[child] = parent
            self.children[parent].append(child)

    def subtree_size(self, i: int, limit: int) -> int:
        """Descendants of ``i``, counted up to ``limit``."""
        n, todo = 0, list(self.children[i])
        while todo and n < limit:
            j = todo.pop()
            n += 1
            todo.extend(self.children[j])
        return n

    def story(self, seed: int, limit: int, max_descendants: int = 50,
              peers_only: Optional[set] = None) -> Dict[int, str]:
        """Records tied to ``seed`` (index → kind of the tie that reached it), at most ``limit``.

        Process ties are followed up to the ancestors or down to the descendants, never up then
        down, so siblings are not reached through their common parent. A subtree of more than
        ``max_descendants`` records is bulk work (a package upgrade, a build), not one story, and
        is not descended into. Records reached through peer ties alone are added to
        ``peers_only``: their own story is this one.
        """
        reached: Dict[int, str] = {}
        seen = {(seed, _ANY)}
        todo = deque([(seed, _ANY)])
        while todo and len(reached) < limit:
            i, mode = todo.popleft()
            steps = [(j, kind, mode) for j, kind in self.peers[i]]
            if mode != _DOWN and self.parent[i] is not None:
                steps.append((self.parent[i], "process", _UP))
            if mode != _UP and self.children[i] and \
                    self.subtree_size(i, max_descendants + 1) <= max_descendants:
                steps.extend((c, "process", _DOWN) for c in self.children[i])
            for j, kind, m in steps:
                if (j, m) in seen or (j, _ANY) in seen:
                    continue
                seen.add((j, m))
                if j != seed and j not in reached:
                    reached[j] = kind
                if m == _ANY and peers_only is not None:
                    peers_only.add(j)
                todo.append((j, m))
        return reached


_ANY, _UP, _DOWN = 0, 1, 2


def _agent(r: Dict[str, Any]) -> str:
    a = r.get("agent") or {}
    return str(a.get("name") or a.get("id") or "?")


def build_ties(recs: List[Dict[str, Any]], times: List[Optional[float]], *, max_gap: float = 300.0,
               process_window: float = 6 * 3600.0) -> _Graph:
    """Tie records together by session, process, login, ssh hop, source burst, the web request
    for a changed file and the probes before a file the web server wrote (see module doc)."""
    g = _Graph(len(recs))
    order = sorted((i for i, t in enumerate(times) if t is not None), key=lambda i: times[i])
    fields_of = [r.get("fields") or {} for r in recs]

    # processes: a record's parent is the latest earlier command whose pid is its ppid (or, for a
    # file change, the command that is the changing process itself)
    pids: Dict[Tuple[str, str], List[Tuple[float, int]]] = defaultdict(list)
    writers: Dict[Tuple[str, str], List[Tuple[float, int]]] = defaultdict(list)
    for i in order:
        f = fields_of[i]
        agent = _agent(recs[i])
        t = times[i]
        candidates = []
        if "path" in f and f.get("pid"):
            candidates.append(f["pid"])
        if f.get("ppid"):
            candidates.append(f["ppid"])
        for want in candidates:
            lst = pids.get((agent, want)) or writers.get((agent, want))
            if lst and t - lst[-1][0] <= process_window:
                g.set_parent(i, lst[-1][1])
                break
        if f.get("pid"):
            if "path" not in f:
                pids[(agent, f["pid"])].append((t, i))
            elif (agent, f["pid"]) not in pids:
                # a long-running process (a PHP worker) is seen only through the files it
                # writes: what it spawns next descends from that change
                writers[(agent, f["pid"])].append((t, i))

    # sessions: consecutive records of one (agent, session), a record without a session of its
    # own (a file change) taking its parent's; span and login user per session
    session_of: List[Optional[str]] = [None] * len(recs)
    current: Dict[Tuple[str, str], Tuple[str, str, int]] = {}   # (agent, ses) -> key of its open span
    last_in_session: Dict[Tuple[str, str, int], int] = {}
    spans: Dict[Tuple[str, str, int], List[Any]] = {}
    for i in order:
        f = fields_of[i]
        ses = f.get("session")
        if ses is None and g.parent[i] is not None:
            ses = session_of[g.parent[i]]
        if ses is None:
            continue
        session_of[i] = ses
        agent, user, t = _agent(recs[i]), f.get("login_user"), times[i]
        key = current.get((agent, ses))
        if key is not None:
            span = spans[key]
            # a session id seen again after a long silence, or for another login user, is a new
            # session (ids restart after a reboot)
            if t - span[1] > process_window or (user and span[2] and user != span[2]):
                key = None
        if key is None:
            key = (agent, ses, i)
            current[(agent, ses)] = key
            spans[key] = [t, t, user, i]
        else:
            g.peer(last_in_session[key], i, "session")
            span = spans[key]
            span[1] = t
            span[2] = span[2] or user
        last_in_session[key] = i

    # logins: sshd/PAM/sudo lines (no session of their own) to the one session running for that
    # user on that agent; ssh hops to the session on the agent the connection came from
    # sessions indexed by (agent, login user), and by agent (user None) for root's PAM lines
    sessions: Dict[Tuple[str, Optional[str]], List[Tuple[float, float, int]]] = defaultdict(list)
    for (agent, _ses, _gen), (start, end, user, first) in spans.items():
        if user is not None:
            sessions[(agent, user)].append((start, end, first))
        sessions[(agent, None)].append((start, end, first))
    agent_ip: Dict[str, str] = {}
    named = set()
    for r in recs:
        a = r.get("agent") or {}
        name = _agent(r)
        if a.get("ip") and name not in named:
            named.add(name)
            agent_ip.setdefault(str(a["ip"]), name)

    def running(agent: str, t: float, user: Optional[str]) -> Optional[int]:
        hits = [first for start, end, first in sessions.get((agent, user), ())
                if start - SESSION_SLACK <= t <= end + SESSION_SLACK]
        return hits[0] if len(hits) == 1 else None

    for i in order:
        f = fields_of[i]
        if f.get("session") is not None or f.get("pid") is not None:
            continue
        user = f.get("srcuser") or f.get("user")
        if not user or not _LOGIN_GROUPS.intersection((recs[i].get("rule") or {}).get("groups") or ()):
            continue
        agent = _agent(recs[i])
        t = times[i]
        s = running(agent, t, user)
        if s is None and user == "root" and f.get("dstuser") == "root":
            s = running(agent, t, None)   # root's PAM lines inside someone's `sudo -i`
        if s is not None:
            g.peer(i, s, "login")
        src = f.get("srcip")
        if src and src in agent_ip and agent_ip[src] != agent:
            h = running(agent_ip[src], t, user)
            if h is not None:
                g.peer(i, h, "hop")

    # sources: alerts from one public address on one agent, chained while the gaps are short
    last_from: Dict[Tuple[str, str], int] = {}
    for i in order:
        src = fields_of[i].get("srcip")
        if not src or ip_class(src) != "public":
            continue
        key = (_agent(recs[i]), src)
        prev = last_from.get(key)
        if prev is not None and times[i] - times[prev] <= max_gap:
            g.peer(prev, i, "source")
        last_from[key] = i

    # served: a web request for a file added or changed on its agent before it
    changed: Dict[Tuple[str, str], Deque[Tuple[float, int, str]]] = {}
    for i in order:
        f = fields_of[i]
        path, url = f.get("path"), f.get("url")
        if path and f.get("event") in ("added", "modified"):
            name = path.rpartition("/")[2]
            if name:
                changed.setdefault((_agent(recs[i]), name), deque(maxlen=_SERVED_CANDIDATES)).appendleft(
                    (times[i], i, path))
        elif url:
            want = url.partition("?")[0].partition("#")[0]
            if not want.startswith("/") or want.endswith("/"):
                continue
            for t, j, p in changed.get((_agent(recs[i]), want.rpartition("/")[2]), ()):
                if times[i] - t <= process_window and p.endswith(want):
                    g.peer(j, i, "served")
                    break

    # planted: a file the web server's account added, and the source that stood out among the
    # agent's web requests just before it
    requests: Dict[str, Deque[Tuple[float, int, str]]] = {}
    for i in order:
        f = fields_of[i]
        src = f.get("srcip")
        if f.get("url") and src and ip_class(src) == "public":
            requests.setdefault(_agent(recs[i]), deque(maxlen=_PLANTED_LOOKBACK)).append((times[i], i, src))
        elif f.get("path") and f.get("event") == "added" and f.get("user") in WEB_ACCOUNTS:
            per: Dict[str, List[int]] = defaultdict(list)
            for t, j, s in requests.get(_agent(recs[i]), ()):
                if 0 <= times[i] - t <= max_gap:
                    per[s].append(j)
            ranked = sorted(per.values(), key=len, reverse=True)
            stands_out = ranked and len(ranked[0]) >= PLANTED_MIN and (
                len(ranked) == 1 or len(ranked[0]) >= 2 * len(ranked[1]))
            if stands_out:
                g.peer(i, ranked[0][-1], "planted")
    return g


def _seed_band(r: Dict[str, Any]) -> str:
    """The severity an anomaly seeds with: its own; for one folded into its account's story
    (``mimizuku.engine.stories``: a situation of its own, told within the story rather than raised)
    the band its score has; "none" for anything else (a burst's repeats seed through their opener)."""
    if r.get("anomaly"):
        return r["severity"] if r.get("severity") in SEVERITIES else "none"
    if r.get("story") and r.get("repeat_of"):
        return severity(float(r.get("score") or 0.0), float(r.get("threshold") or 1.0), True)
    return "none"


def correlate(records: Iterable[Dict[str, Any]], *, window: float = 6 * 3600.0, decay: float = 0.9,
              min_severity: str = "medium", max_gap: float = 300.0,
              max_story: int = 5000, flag_related: bool = False) -> List[Dict[str, Any]]:
    """Return the records with the alerts tied to an anomaly lifted towards it.

    Records are copied, not modified. A lifted record gets ``related_to`` (the seed's id), and
    when it becomes an anomaly, a reason naming the seed and the tie. ``window`` bounds how far
    back a parent process is looked for, ``max_gap`` the gap inside a source burst, ``max_story``
    the records one seed can reach.
    """
    recs = [dict(r) for r in records]
    floor = SEVERITIES.index(min_severity)
    times = [parse_timestamp(r.get("timestamp")) for r in recs]
    g = build_ties(recs, times, max_gap=max_gap, process_window=window)
    seeds = sorted((i for i, r in enumerate(recs)
                    if times[i] is not None and SEVERITIES.index(_seed_band(r)) >= floor),
                   key=lambda i: -recs[i]["score"])
    best: Dict[int, Tuple[float, int, str]] = {}
    told: set = set()   # seeds whose story a stronger seed's story already is (a burst, a session)
    for s in seeds:
        if s in told:
            continue
        share = decay * recs[s]["score"]
        for j, kind in g.story(s, max_story, peers_only=told).items():
            # under the threshold (ranked, not flagged) unless tied alerts are flagged too
            lifted = round(share if flag_related else share * recs[j]["threshold"], 6)
            if lifted > recs[j]["score"] and (j not in best or lifted > best[j][0]):
                best[j] = (lifted, s, kind)
    for j, (lifted, s, kind) in best.items():
        r, seed = recs[j], recs[s]
        dt = times[s] - times[j]
        when = f"{abs(dt):.0f} s {'before' if dt > 0 else 'after'} it" if dt else "at the same time"
        r["score"] = lifted
        r["score_pct"] = int(round(100 * lifted))
        r["related_to"] = seed["id"]
        if not r["anomaly"] and _AS_TRAINED.judge_record(r).anomaly:  # the one flag rule, on the lifted score
            r["anomaly"] = True
            r["severity"] = severity(lifted, r["threshold"], True)
            r["reasons"] = [f"{TIES[kind]} as anomaly {seed['id']} on {seed['agent'].get('name')!r} "
                            f"({seed['detector']}, score {seed['score']:.2f}, {when}): "
                            + (seed["reasons"][0] if seed["reasons"] else "")]
    return recs
