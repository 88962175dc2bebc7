"""Process lineage: which change channel a command or a file change came through.

Most legitimate change on a managed fleet comes through a few channels: the package manager
(``apt-get``, ``dpkg``, ``unattended-upgrade``, ``yum``…) and the configuration management that
runs the same way on every server (an ansible module, a puppet or chef run, ``salt-call``). What
such a channel changes is, by design, new: a user that did not exist, a kernel never installed, a
config file the playbook just wrote. Judging its *content* for novelty turns every roll-out into
a wave of anomalies; what stays telling is *how* (a reverse-shell construct is one wherever it
comes from) and *where* (a channel writing under a tree nobody writes to on that host).

Wazuh alerts carry the process tree: audited commands have ``pid``/``ppid`` and who-data file
changes the process' ``id``/``ppid``. ``ProcessLineage`` follows that tree as alerts stream by:

* a command is the *head* of a channel when it is one of the tools above (``change_channel``:
  prior knowledge, as Wazuh's own rules know what dpkg is), and it passes its channel to its
  descendants through their ``ppid``. The head itself is judged as any command (a payload
  started from an odd place is news) unless a channel started it (apt running dpkg);
* a file change takes the channel of the process that made it (or that process' parent);
* a file change with no process recorded (a scheduled scan, or realtime without who-data) in a
  tree only packages write to (``PACKAGE_TREES``: /usr, /boot, /lib…) takes the channel of the
  package run that preceded it on that agent within ``scan_window`` (a scheduled scan finds what
  changed since the previous scan: Wazuh's default frequency is 12 h, a day covers one delayed
  scan). Package runs are seen as commands and as Wazuh's dpkg/yum log rules. Such a channel is
  marked ``~scan``: it rests on a day-long look-back, so training does not count it (a model must
  not depend on where its training stream was cut into partitions);
* a channel counts only where it is *routine*: its head ran on that agent in training
  (``routine``). A channel that never ran on a host (an attacker bringing his own "ansible"
  onto a web server) vouches for nothing.

Only processes that belong to a channel are remembered, in a map bounded by ``max_entries``
(oldest quarter dropped when full), and an entry older than ``max_age`` is not trusted (pids are
reused). So the cost per alert is a couple of dict look-ups and memory does not grow with the
stream.

What this does not see: an attacker who already has root on a host where ansible routinely runs
and starts an ansible payload himself gets the channel's benefit of the doubt for what that
payload changes; one who replaces a binary under /usr on a host the day its packages were
upgraded, seen only by a scheduled scan, gets the package run's. The detectors keep judging how
(shell constructs) and where (new trees), the context detector keeps judging his login and
identity switches, and the channel's head (the payload's command line) is judged as any command.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any, Dict, FrozenSet, Iterable, Optional, Sequence, Tuple

from mimizuku.core import fields
from mimizuku.core.bounded import put_newest

#: programs that install and upgrade packages (command or who-data process basenames)
PACKAGE_TOOLS = frozenset({
    "apt", "apt-get", "aptitude", "unattended-upgrade", "unattended-upgrades", "dpkg", "rpm",
    "rpmkeys", "yum", "dnf", "microdnf", "zypper", "apk", "pacman", "snap", "snapd", "flatpak",
})
#: configuration-management agents, by program or script basename
CONFIG_TOOLS = {
    "ansible-playbook": "ansible", "ansible-pull": "ansible", "puppet": "puppet",
    "chef-client": "chef", "chef-solo": "chef", "salt-call": "salt", "salt-minion": "salt",
    "cf-agent": "cfengine",
}
#: Wazuh rule groups of package-manager logs (dpkg.log, yum.log): a package run without auditd
PACKAGE_LOG_GROUPS = {"dpkg": "package:dpkg", "yum": "package:yum"}
#: the trees packages own and nothing else writes to (FHS: /usr, /boot, the library and binary
#: directories); /etc, /var, /opt and homes are not among them: admins and programs write there
PACKAGE_TREES = ("/usr/", "/boot/", "/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
#: the payload ansible copies to a managed host and runs there (``AnsiballZ_<module>.py``)
_ANSIBLE_PAYLOAD = re.compile(r"(?:^|/)AnsiballZ_[A-Za-z0-9_]+\.py$")
#: interpreters whose first non-option argument is the program that actually runs
_INTERPRETERS = re.compile(r"^(?:python[0-9.]*|ruby[0-9.]*|perl[0-9.]*|sh|bash|dash)$")


def _base(word: str) -> str:
    return word.rsplit("/", 1)[-1]


#: where the package manager installs programs; a "dpkg" anywhere else is not the package manager
SYSTEM_PROGRAM_DIRS = ("/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/", "/usr/lib/", "/usr/libexec/", "/opt/")


def system_program(path: Optional[str]) -> bool:
    """Whether an executable path is one packages install (unknown or bare names pass: the
    command line alone does not say where a program lives)."""
    return not path or "/" not in path or path.startswith(SYSTEM_PROGRAM_DIRS)


def change_channel(argv: Sequence[str]) -> Optional[str]:
    """The change channel a command *is* the head of (``package:apt-get``, ``config:ansible``), or None.

    A program named by path must live where packages install programs (``system_program``).

    The program is ``argv[0]``, or for an interpreter (``python3``, ``ruby``) its script: ansible
    runs ``python3 …/AnsiballZ_user.py``, unattended-upgrades ``python3 /usr/bin/unattended-upgrade``.
    """
    if not argv or not system_program(argv[0]):
        return None
    prog = _base(argv[0])
    if _INTERPRETERS.match(prog):
        script = next((w for w in argv[1:4] if not w.startswith("-")), "")
        if _ANSIBLE_PAYLOAD.search(script):
            return "config:ansible"
        prog = _base(script)
    if prog in PACKAGE_TOOLS:
        return "package:" + prog
    tool = CONFIG_TOOLS.get(prog)
    return "config:" + tool if tool else None


def command_channel_head(alert: Dict[str, Any]) -> Optional[str]:
    """The channel an audited or sudo command is the head of (see ``change_channel``); never a
    program outside the system's program directories (``/tmp/apt-get`` is no package manager)."""
    if not system_program(fields.command_exe(alert)):
        return None
    argv = fields.command_argv(alert)
    if not argv:
        line = fields.command_line(alert)
        if not line:
            return None
        argv = line.split()
    ch = change_channel(argv)
    if ch is None and fields.rule_id(alert) in fields.SUDO_RULES:
        # sudo runs ansible's payload inside ``/bin/sh -c 'echo BECOME-SUCCESS-…; python3 …'``
        line = fields.command_line(alert) or ""
        ch = next((c for c in (change_channel(p.split()) for p in line.split(";")) if c), None)
    return ch


#: marks a channel laid to a change by time (a scan after a package run), not by process tree
BY_SCAN = "~scan"
#: seconds after a package run on an agent within which the agent's (or manager's) own stop and
#: start events are that run's: upgrading wazuh-agent restarts it (rules 506, 503) in seconds
RESTART_WINDOW = 60


def trust_key(channel: str) -> str:
    """What routine use vouches for: any package tool for the package channel (apt runs dpkg,
    unattended-upgrades runs both), each configuration-management tool for itself."""
    return "package" if channel.startswith("package:") else channel


def in_package_tree(path: Optional[str]) -> bool:
    """Whether a path lies in a tree that only packages write to (``PACKAGE_TREES``)."""
    return bool(path) and path.startswith(PACKAGE_TREES)


class ProcessLineage:
    """Follows the process tree across alerts and says which routine change channel an alert is in.

    ``routine``: the (agent, ``trust_key``) pairs learnt as routine: their heads ran at least
    ``min_heads`` times on that agent in training (``learnt``). ``None`` while learning: then every
    channel counts (training keys must not depend on where partitions start; a channel that turns
    out not to be routine on an agent was seen there at most once).
    """

    def __init__(self, routine: Optional[Iterable[Tuple[str, str]]] = None, *,
                 max_entries: int = 65536, max_age: int = 6 * 3600, min_heads: int = 2,
                 scan_window: int = 24 * 3600):
        self.routine: Optional[FrozenSet[Tuple[str, str]]] = None if routine is None else frozenset(
            (str(a), str(c)) for a, c in routine)
        self.max_entries = max_entries
        self.max_age = max_age
        self.min_heads = min_heads
        self.scan_window = scan_window
        self.heads: Counter = Counter()
        #: agent -> (channel, time) of its latest package run (bounded like the process map)
        self._package_runs: Dict[str, Tuple[str, Optional[int]]] = {}
        self._procs: Dict[Tuple[str, str], Tuple[str, Optional[int]]] = {}
        self._batch: Dict[int, str] = {}
        self._one: Optional[Tuple[Dict[str, Any], str]] = None

    # -- what was learnt --------------------------------------------------------------------
    def learnt(self) -> FrozenSet[Tuple[str, str]]:
        """The (agent, trust key) pairs whose heads ran at least ``min_heads`` times in this stream."""
        return frozenset(k for k, n in self.heads.items() if n >= self.min_heads)

    def trusted(self, agent: str, channel: str) -> bool:
        if not channel:
            return False
        if self.routine is None:  # learning: every channel, so that training keys do not depend
            return True           # on where a stream was cut into partitions
        return (agent, trust_key(channel)) in self.routine

    # -- following the tree -----------------------------------------------------------------
    def _parent(self, agent: str, pid: Optional[str], alert: Dict[str, Any]) -> Optional[str]:
        if not pid:
            return None
        hit = self._procs.get((agent, pid))
        if hit is None:
            return None
        ch, seen = hit
        t = fields.alert_seconds(alert)
        if t is not None and seen is not None and not (-60 <= t - seen <= self.max_age):
            return None  # a reused pid
        return ch

    def _remember(self, agent: str, pid: Optional[str], channel: str, t: Optional[int]) -> None:
        if channel.startswith("package:"):
            put_newest(self._package_runs, agent, (channel, t), self.max_entries)
        if pid:
            put_newest(self._procs, (agent, pid), (channel, t), self.max_entries)

    def _package_run(self, agent: str, t: Optional[int], window: Optional[int] = None) -> Optional[str]:
        """The channel of the package run on the agent that a change at ``t`` can be laid to: up
        to ``window`` seconds before it (default ``scan_window``: a scan-time change)."""
        hit = self._package_runs.get(agent)
        if hit is None or t is None or hit[1] is None:
            return None
        ch, seen = hit
        return ch if -60 <= t - seen <= (self.scan_window if window is None else window) else None

    def observe(self, alert: Dict[str, Any]) -> str:
        """The change channel of this alert ("" for none), trusted or not; remembers its process."""
        if "syscheck" in alert:
            if not fields.is_fim(alert):
                return ""
            agent = fields.agent_name(alert) or ""
            proc = fields.file_process(alert)
            if proc and _base(proc) in PACKAGE_TOOLS and system_program(proc):
                return "package:" + _base(proc)
            ids = fields.process_ids(alert)
            if not ids:
                if proc or not in_package_tree(fields.file_path(alert)):
                    return ""
                # no process recorded (scheduled scan): the package run since the last scan
                run = self._package_run(agent, fields.alert_seconds(alert))
                return run + BY_SCAN if run else ""
            return self._parent(agent, ids[0], alert) or self._parent(agent, ids[1], alert) or ""
        if not fields.is_command(alert):
            groups = fields.rule_groups(alert)
            log = next((PACKAGE_LOG_GROUPS[g] for g in groups if g in PACKAGE_LOG_GROUPS), None)
            if log:  # dpkg.log / yum.log: a package run even where commands are not audited
                agent = fields.agent_name(alert) or ""
                self.heads[(agent, trust_key(log))] += 1
                self._remember(agent, None, log, fields.alert_seconds(alert))
                return log
            if fields.is_lifecycle(groups):
                # the agent (or manager) stopping and starting as its own package is upgraded
                run = self._package_run(fields.agent_name(alert) or "", fields.alert_seconds(alert),
                                        RESTART_WINDOW)
                return run or ""
            return ""
        agent = fields.agent_name(alert) or ""
        head = command_channel_head(alert)
        ids = fields.process_ids(alert)
        if head:
            # a head starts its channel for what it runs; the head itself is judged as any
            # command (a payload started from an odd place is news), unless a channel started it
            self.heads[(agent, trust_key(head))] += 1
            inherited = self._parent(agent, ids[1], alert) if ids else None
            self._remember(agent, ids[0] if ids else None, head, fields.alert_seconds(alert))
            return inherited or ""
        channel = self._parent(agent, ids[1], alert) if ids else None
        if channel:
            self._remember(agent, ids[0], channel, fields.alert_seconds(alert))
        return channel or ""

    def channel_of(self, alert: Dict[str, Any]) -> str:
        """The *routine* change channel of this alert, "" when none (observes it if not annotated)."""
        one = self._one
        if one is not None and one[0] is alert:
            ch = one[1]
        else:
            ch = self._batch.get(id(alert))
            if ch is None:
                ch = self.observe(alert)
        agent = fields.agent_name(alert) or ""
        return ch if ch and self.trusted(agent, ch) else ""

    def annotate(self, alerts: Sequence[Dict[str, Any]]) -> None:
        """Observe a batch in stream order before the detectors key it (parents before children)."""
        self._batch = {id(a): self.observe(a) for a in alerts}

    def annotate_one(self, alert: Dict[str, Any]) -> None:
        """Observe one alert before the detectors key it (training: one alert at a time)."""
        self._one = (alert, self.observe(alert))

    def forget_batch(self) -> None:
        """Drop the annotations (the alerts they were keyed by may be gone: ids are reused)."""
        self._batch = {}
        self._one = None

    def tracked_processes(self) -> int:
        """How many processes the map of processes in flight holds now. Public: the map is
        bounded (``max_entries``, newest kept), and the bound is checked from outside."""
        return len(self._procs)

    def take_stream(self, old: "ProcessLineage") -> None:
        """Continue the stream another lineage was following (a hot reload of the model): the
        processes in flight keep their channel; what is routine stays this model's."""
        self.import_stream_state(old.export_stream_state())

    def export_stream_state(self) -> Dict[str, Any]:
        """The processes this lineage follows (copies), for the lineage of a new model."""
        return {"procs": dict(self._procs), "package_runs": dict(self._package_runs)}

    def import_stream_state(self, state: Dict[str, Any]) -> None:
        """Follow on from ``export_stream_state`` of another lineage (see :meth:`take_stream`)."""
        self._procs = dict(state["procs"])
        self._package_runs = dict(state["package_runs"])

    def __getstate__(self):
        # what was learnt travels (to Dask workers, in copies); the processes of a stream do not
        state = self.__dict__.copy()
        for k in ("_procs", "_package_runs", "_batch", "_one"):
            state.pop(k, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.start_stream()

    def start_stream(self) -> None:
        """A new stream: forget the processes (not what was learnt)."""
        self._procs = {}
        self._package_runs = {}
        self.forget_batch()


class ChannelAware:
    """Mixin for a detector that asks which routine change channel an alert came through: it is
    given the model's ``lineage`` (``mimizuku.engine.estimator`` attaches it), which a model file
    never holds (it is the stream state of the model that owns the detector)."""

    lineage: Optional[ProcessLineage]

    def channel_of(self, alert: Dict[str, Any]) -> str:
        """The routine change channel of the alert ("" without a lineage tracker)."""
        lineage = self.__dict__.get("lineage")
        return lineage.channel_of(alert) if lineage is not None else ""

    _UNSAVED = ("lineage",)  # the stream state of the model that owns this detector

    def __copy__(self):
        """A copy without caches (as pickling gives) that still follows its model's lineage:
        the nightly job's per-thread copies of a model in use must judge channels as it does."""
        new = self.__class__.__new__(self.__class__)
        new.__dict__.update(self.__getstate__())
        if self.__dict__.get("lineage") is not None:
            new.lineage = self.lineage
        return new


class ChannelJudged(ChannelAware):
    """Mixin for the LOF detectors: a change made through a routine channel is judged by novelty alone.

    Local Outlier Factor measures how far a situation is from the known ones by everything in it,
    content included (the new user's name, the new kernel's files). For a change a routine channel
    made, content is the channel's decision, not evidence: its raw score is the novelty term
    alone, over the tokens its ``scopes`` keep (how and where). Subclasses say where the channel
    sits in their key (``_CHANNEL_AT``) and give the detector a ``lineage`` (set by the model).
    """

    _CHANNEL_AT = -1  # where the channel sits in the key (subclasses: a fixed index)

    def channel(self, key) -> str:
        """The routine change channel a key carries ("" for none), as ``channel_of`` found it
        for the alert. Public: what a key says about its alert's channel, checked from outside."""
        at = self._CHANNEL_AT
        return key[at] if len(key) > at else ""

    def _channel_raw(self, keys, raw, leave_out: int = 0):
        for i, k in enumerate(keys):
            if self.channel(k):
                raw[i] = self.novelty_weight * self.novelty(k, leave_out=leave_out)
        return raw

    def _fit_keys(self, keys, weights):
        return self._channel_raw(keys, super()._fit_keys(keys, weights), leave_out=1)

    def _raw(self, keys):
        return self._channel_raw(keys, super()._raw(keys))

