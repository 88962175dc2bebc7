"""Stand-ins for the parts of a Wazuh 4.x manager the integration meets (wazuh-facts.md, 1-3).

* :class:`Integratord` runs an integration script the way wazuh-integratord does: filters, temp
  alert/options files with the real naming, the exact argv, the "writable by our user" refusal
  (exit 127), one alert at a time, waits for the child, deletes the temp files.
* :class:`FakeAnalysisd` binds the AF_UNIX datagram queue socket and parses what arrives the way
  analysisd does (``OS_CleanMSG``: first unescaped ``:``, ``|`` unescaping, the agent location
  form) and flattens JSON payloads like the ``json`` decoder (every scalar becomes a string).
* :class:`Ruleset` loads a rules XML file, checks it against the load-time rules analysisd applies,
  and matches decoded events with Wazuh's regex semantics (``wazuhregex``), children tried in
  analysisd's order (level 0 first, then higher levels first).
"""
from __future__ import annotations

import grp
import json
import os
import pwd
import random
import re
import select
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

# --- analysisd: the queue message -------------------------------------------------------------

#: Top-level JSON keys the json decoder puts into Wazuh's static fields (wazuh-facts.md 2).
STATIC_KEYS = frozenset({"srcip", "dstip", "srcport", "dstport", "srcuser", "dstuser", "user", "id", "status",
                         "url", "action", "protocol", "data", "extra_data", "systemname"})
MAX_DATAGRAM = 65536
MAX_DYNAMIC_FIELDS = 256


@dataclass
class QueueEvent:
    """One datagram as analysisd sees it after pre-decoding and the json decoder."""

    raw: bytes
    queue: str
    location: str                 # as in the resulting alert (the tag for agent events)
    full_location: str            # unescaped location string as received
    rule_location: str            # what <location> is matched against: "[<id>] " removed
    agent_id: str
    agent_name: Optional[str]
    agent_ip: Optional[str]
    log: str
    decoder: Optional[str] = None
    static: Dict[str, str] = field(default_factory=dict)
    fields: Dict[str, Union[str, List[str]]] = field(default_factory=dict)
    payload: Any = None

    def get(self, name: str) -> Optional[Union[str, List[str]]]:
        """``FindField``: dynamic fields by case-insensitive name; static fields by name."""
        if name in self.static:
            return self.static[name]
        low = name.lower()
        for k, v in self.fields.items():
            if k.lower() == low:
                return v
        return None


def find_unescaped(text: str, char: str, escape: str = "|") -> int:
    """Index of the first ``char`` not escaped by ``escape`` (``wstr_chr_escape``), or -1."""
    escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif c == char:
            return i
        elif c == escape:
            escaped = True
    return -1


def unescape(text: str, escape: str = "|") -> str:
    """``wstr_unescape``: ``|x`` becomes ``x`` (so ``||`` is ``|`` and ``|:`` is ``:``)."""
    out, i = [], 0
    while i < len(text):
        if text[i] == escape and i + 1 < len(text):
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _scalar(v: Any) -> Optional[str]:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        f = float(v)
        if f.is_integer() and -2**31 <= f <= 2**31 - 1:
            return "%i" % int(f)          # cJSON valueint == valuedouble
        return "%f" % f
    if isinstance(v, str):
        return v
    return None


def flatten_json(obj: Dict[str, Any]) -> Tuple[Dict[str, str], Dict[str, Union[str, List[str]]]]:
    """What the json decoder makes of an object: (static fields, dynamic fields ``a.b.c``)."""
    static: Dict[str, str] = {}
    dynamic: Dict[str, Union[str, List[str]]] = {}

    def put(key: str, value: Union[str, List[str]]) -> None:
        if key in STATIC_KEYS and isinstance(value, str):
            static[key] = value
        elif len(dynamic) < MAX_DYNAMIC_FIELDS:
            dynamic[key] = value

    def walk(o: Dict[str, Any], parent: Optional[str]) -> None:
        for k, v in o.items():
            key = f"{parent}.{k}" if parent else k
            if isinstance(v, dict):
                walk(v, key)
            elif isinstance(v, list):
                put(key, [s for s in (_scalar(x) for x in v if not isinstance(x, (dict, list))) if s is not None])
            else:
                s = _scalar(v)
                if s is not None:
                    put(key, s)

    walk(obj, None)
    return static, dynamic


def parse_queue_message(data: bytes) -> QueueEvent:
    """Parse ``<q>:<location>:<log>`` as ``OS_CleanMSG`` does, then the json decoder."""
    text = data.decode("utf-8", "replace")
    if len(text) < 3 or text[1] != ":":
        raise ValueError(f"bad queue message {text[:40]!r}")
    queue, rest = text[0], text[2:]
    colon = find_unescaped(rest, ":")
    if colon < 0:
        raise ValueError("no location separator")
    full_location = unescape(rest[:colon])
    log = rest[colon + 1:]
    agent_id, name, ip, loc = "000", None, None, full_location
    rule_location = full_location
    if full_location.startswith("["):
        close = full_location.find("]")
        if close < 0:
            raise ValueError("agent location without ']'")
        agent_id = full_location[1:close]
        after = full_location[close + 2:] if len(full_location) > close + 1 else ""
        rule_location = after  # OS_CleanMSG: lf->location = what follows "] "
        m = re.match(r"\((.*?)\) (.*?)->(.*)$", after, re.S)
        if not m:
            raise ValueError(f"agent location not '(name) ip->tag': {after!r}")
        name, ip, loc = m.group(1), m.group(2), m.group(3)
    ev = QueueEvent(raw=data, queue=queue, location=loc, full_location=full_location,
                    rule_location=rule_location, agent_id=agent_id, agent_name=name, agent_ip=ip, log=log)
    if re.match(r'\{\s*"', log):
        try:
            payload = json.loads(log)
        except ValueError:
            payload = None
        if isinstance(payload, dict):
            ev.decoder = "json"
            ev.payload = payload
            ev.static, ev.fields = flatten_json(payload)
    return ev


class FakeAnalysisd:
    """The queue socket, bound by us; datagrams are parsed on :meth:`receive`."""

    def __init__(self, path: Union[str, Path], group: Optional[str] = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        if group is not None:
            os.chown(self.path, 0, grp.getgrnam(group).gr_gid)
        self.oversize: List[int] = []

    def receive(self, wait: float = 0.0) -> List[QueueEvent]:
        """Everything queued now (waiting up to ``wait`` s for the first datagram)."""
        out: List[QueueEvent] = []
        timeout = wait
        while True:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return out
            data = self.sock.recv(1 << 20)
            if len(data) > MAX_DATAGRAM - 1:
                self.oversize.append(len(data))
            out.append(parse_queue_message(data))
            timeout = 0.0

    def stop(self) -> None:
        """analysisd goes down but leaves its socket file behind (connection refused)."""
        self.sock.close()

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> "FakeAnalysisd":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --- analysisd: the rules ---------------------------------------------------------------------

#: Every element a rule may contain (src/analysisd/rules.c, v4.x).
RULE_ELEMENTS = frozenset("""
regex match decoded_as category cve info time weekday description ignore check_if_ignored
srcip srcgeoip srcport dstip dstgeoip dstport user url id data extra_data hostname program_name
status protocol system_name action compiled_rule field location list
if_sid if_group if_level if_fts if_matched_regex if_matched_group if_matched_sid
same_source_ip same_srcip same_src_port same_srcport same_dst_port same_dstport same_srcuser same_user
same_location same_id check_diff same_field same_dstip same_agent same_url same_srcgeoip same_protocol
same_action same_data same_extra_data same_status same_system_name same_dstgeoip
different_url different_srcip different_srcgeoip different_dstip different_src_port different_srcport
different_dst_port different_dstport different_location different_protocol different_action
different_srcuser different_user different_id different_data different_extra_data different_status
different_system_name different_dstgeoip different_field
not_same_source_ip not_same_user not_same_agent not_same_id not_same_field global_frequency
options mitre group
""".split())
RULE_ATTRIBUTES = frozenset({"id", "level", "maxsize", "timeframe", "frequency", "accuracy", "noalert",
                             "ignore", "overwrite"})
RULE_OPTIONS = frozenset({"alert_by_email", "no_email_alert", "no_log", "no_full_log", "no_counter"})
#: Elements that are conditions (a rule needs at least one).
CONDITION_ELEMENTS = RULE_ELEMENTS - {"description", "options", "group", "mitre", "info", "category", "cve"}
STOCK_DECODERS = frozenset({"json", "ossec", "syscheck_integrity_changed", "windows_eventchannel", "sshd"})
CUSTOM_ID_RANGE = (100000, 120000)


class RulesError(ValueError):
    """The file would stop analysisd from starting (or silently lose a rule)."""


@dataclass
class FieldCond:
    name: str
    pattern: str
    type: str = "osregex"
    negate: bool = False


@dataclass
class Rule:
    id: int
    level: int
    index: int
    description: str = ""
    groups: List[str] = field(default_factory=list)
    if_sid: List[int] = field(default_factory=list)
    decoded_as: Optional[str] = None
    fields: List[FieldCond] = field(default_factory=list)
    location: Optional[FieldCond] = None
    options: List[str] = field(default_factory=list)
    children: List["Rule"] = field(default_factory=list)
    mitre: List[str] = field(default_factory=list)

    @property
    def priority(self) -> int:
        return 99 if self.level == 0 else self.level  # analysisd: level 0 sorts first


_REGEX_CACHE: Dict[Tuple[str, str], Any] = {}


def _regex(pattern: str, kind: str):
    """A compiled pattern; raises RulesError when analysisd would refuse it at load time."""
    key = (pattern, kind)
    if key not in _REGEX_CACHE:
        from wazuhregex import WazuhRegex

        r = WazuhRegex(pattern)
        engine = {"osregex": "OS_Regex", "pcre2": "PCRE2", "osmatch": None}[kind]
        error = r.validation_errors().get(engine) if engine else None
        if error:
            raise RulesError(f"invalid {kind} pattern {pattern!r}: {error}")
        _REGEX_CACHE[key] = r
    return _REGEX_CACHE[key]


def regex_match(pattern: str, kind: str, value: str) -> bool:
    r = _regex(pattern, kind)
    if kind == "pcre2":
        return r.pcre2_regex(value)[0]
    if kind == "osmatch":
        return r.os_match(value)[0]
    return r.os_regex(value)[0]


class Ruleset:
    """The rules of one file, checked like analysisd does at load time."""

    def __init__(self, path: Union[str, Path], known_ids: Sequence[int] = ()):
        self.path = Path(path)
        self.rules: Dict[int, Rule] = {}
        self.roots: List[Rule] = []
        self.warnings: List[str] = []
        self._load(set(known_ids))

    def _load(self, known: set) -> None:
        text = self.path.read_text(encoding="utf-8")
        if text.lstrip().startswith("<?xml"):
            raise RulesError("XML declaration is not accepted by OS_XML")
        try:
            root = ET.fromstring(f"<root>{text}</root>")
        except ET.ParseError as e:
            raise RulesError(f"XML error: {e}") from e
        index = 0
        for top in root:
            if top.tag != "group":
                raise RulesError(f"invalid root element {top.tag!r}: only 'group' is allowed")
            if list(top.attrib) != ["name"] or not top.attrib["name"]:
                raise RulesError("root group must have exactly the attribute name")
            top_groups = [g for g in top.attrib["name"].split(",") if g.strip()]
            if len(top) == 0:
                raise RulesError("group without any rule")
            for el in top:
                if el.tag != "rule":
                    raise RulesError(f"{el.tag!r} is not a valid element (only rule)")
                rule = self._rule(el, index, top_groups)
                index += 1
                if rule.id in self.rules or rule.id in known:
                    raise RulesError(f"duplicate rule id {rule.id} (analysisd drops it: 7612)")
                for parent in rule.if_sid:
                    if parent not in self.rules and parent not in known:
                        raise RulesError(f"rule {rule.id}: if_sid {parent} is not defined earlier (7617)")
                self.rules[rule.id] = rule
                if rule.if_sid:
                    for parent in rule.if_sid:
                        if parent in self.rules:
                            self.rules[parent].children.append(rule)
                else:
                    self.roots.append(rule)

    def _rule(self, el: ET.Element, index: int, top_groups: List[str]) -> Rule:
        bad = set(el.attrib) - RULE_ATTRIBUTES
        if bad:
            raise RulesError(f"invalid rule attribute(s) {sorted(bad)}")
        try:
            rid, level = el.attrib["id"], el.attrib["level"]
        except KeyError as e:
            raise RulesError(f"rule without {e.args[0]}") from e
        if not re.fullmatch(r"\d{1,6}", rid):
            raise RulesError(f"bad rule id {rid!r} (at most 6 digits)")
        if not re.fullmatch(r"\d{1,2}", level) or not 0 <= int(level) <= 16:
            raise RulesError(f"rule {rid}: level {level!r} not in 0-16")
        rule = Rule(id=int(rid), level=int(level), index=index, groups=list(top_groups))
        if not CUSTOM_ID_RANGE[0] <= rule.id <= CUSTOM_ID_RANGE[1]:
            raise RulesError(f"rule {rid}: custom ids are {CUSTOM_ID_RANGE[0]}-{CUSTOM_ID_RANGE[1]}")
        conditions = 0
        for child in el:
            tag, value = child.tag, (child.text or "").strip()
            if tag not in RULE_ELEMENTS:
                raise RulesError(f"rule {rid}: unknown element <{tag}>")
            if tag in CONDITION_ELEMENTS:
                conditions += 1
            if tag == "description":
                rule.description = child.text or ""
            elif tag == "group":
                rule.groups += [g for g in value.split(",") if g.strip()]
            elif tag == "if_sid":
                ids = [x for x in re.split(r"[\s,]+", value) if x]
                if not ids or not all(x.isdigit() for x in ids):
                    raise RulesError(f"rule {rid}: empty or invalid if_sid {value!r} (7618/7619)")
                rule.if_sid = [int(x) for x in ids]
            elif tag == "decoded_as":
                if value not in STOCK_DECODERS:
                    raise RulesError(f"rule {rid}: unknown decoder {value!r}")
                rule.decoded_as = value
            elif tag in ("field", "location"):
                attrs = dict(child.attrib)
                name = attrs.pop("name", None)
                # rules.c: <field> defaults to OS_Regex, <location> to OS_Match
                kind = attrs.pop("type", "osregex" if tag == "field" else "osmatch")
                negate = attrs.pop("negate", "no")
                if tag == "field" and not name:
                    raise RulesError(f"rule {rid}: <field> without name")
                if attrs or kind not in ("osregex", "osmatch", "pcre2") or negate not in ("yes", "no"):
                    raise RulesError(f"rule {rid}: bad attributes on <{tag}>")
                if not value:
                    raise RulesError(f"rule {rid}: empty <{tag}>")
                _regex(value, kind)
                cond = FieldCond(name or "location", value, kind, negate == "yes")
                if tag == "field":
                    rule.fields.append(cond)
                else:
                    rule.location = cond
            elif tag == "options":
                if value not in RULE_OPTIONS:
                    raise RulesError(f"rule {rid}: unknown option {value!r}")
                rule.options.append(value)
            elif tag == "mitre":
                # <mitre><id>T1110</id>...</mitre>: the ids Wazuh copies into rule.mitre.id
                for sub in child:
                    if sub.tag != "id" or not (sub.text or "").strip():
                        raise RulesError(f"rule {rid}: <mitre> holds <id> elements only")
                    rule.mitre.append(sub.text.strip())
            else:
                raise RulesError(f"rule {rid}: element <{tag}> is valid for Wazuh but not emulated here")
        if conditions == 0:
            raise RulesError(f"rule {rid}: a rule with no options")
        if not rule.description:
            raise RulesError(f"rule {rid}: no description")
        return rule

    # -- matching -----------------------------------------------------------------------------

    def _matches(self, rule: Rule, ev: QueueEvent) -> bool:
        if rule.decoded_as is not None and ev.decoder != rule.decoded_as:
            return False
        if rule.location is not None:
            # rules.c matches lf->location: "(<agent>) <ip>-><tag>" for an agent's event, the
            # plain string for the manager's own (cleanevent.c), not the alert's "location"
            if rule.location.negate == regex_match(rule.location.pattern, rule.location.type, ev.rule_location):
                return False
        for cond in rule.fields:
            value = ev.get(cond.name)
            if value is None or isinstance(value, list):
                return False  # arrays are not matched by <field> (kept as JSON arrays)
            if regex_match(cond.pattern, cond.type, value) == cond.negate:
                return False
        return True

    @staticmethod
    def _ordered(rules: List[Rule]) -> List[Rule]:
        return sorted(rules, key=lambda r: (-r.priority, r.index))

    def match(self, ev: QueueEvent) -> Optional[Rule]:
        """The rule analysisd would fire: first matching root, then its first matching child..."""
        level = self._ordered(self.roots)
        best = None
        while level:
            for rule in level:
                if self._matches(rule, ev):
                    best = rule
                    level = self._ordered(rule.children)
                    break
            else:
                break
        return best

    def matching_siblings(self, ev: QueueEvent, rule: Rule) -> List[Rule]:
        """Other children of ``rule``'s parents that also match (should be none: no order luck)."""
        out = []
        for parent_id in rule.if_sid:
            for sib in self.rules[parent_id].children:
                if sib is not rule and self._matches(sib, ev):
                    out.append(sib)
        return out

    def description(self, rule: Rule, ev: QueueEvent) -> str:
        """The alert's rule.description with ``$(field)`` expanded."""
        def sub(m: "re.Match[str]") -> str:
            v = ev.get(m.group(1))
            if v is None:
                return "(null)"
            return ",".join(v) if isinstance(v, list) else v
        return re.sub(r"\$\(([^)]+)\)", sub, rule.description)


# --- integratord ------------------------------------------------------------------------------

@dataclass
class Call:
    argv: List[str]
    returncode: int
    output: str
    seconds: float
    alert_file: str
    options_file: Optional[str]
    hung: bool = False


def _identity(user: Optional[str]) -> Tuple[int, int, List[int]]:
    if user is None:
        return os.getuid(), os.getgid(), os.getgroups()
    pw = pwd.getpwnam(user)
    gids = [g.gr_gid for g in grp.getgrall() if user in g.gr_mem] + [pw.pw_gid]
    return pw.pw_uid, pw.pw_gid, gids


def writable_by(path: Union[str, Path], user: Optional[str]) -> bool:
    """``access(path, W_OK)`` as ``user`` would get it (root can write anything)."""
    if user is None:
        return os.access(path, os.W_OK)
    uid, _, gids = _identity(user)
    if uid == 0:
        return True
    st = os.stat(path)
    if st.st_uid == uid:
        return bool(st.st_mode & 0o200)
    if st.st_gid in gids:
        return bool(st.st_mode & 0o020)
    return bool(st.st_mode & 0o002)


class Integratord:
    """Runs ``<integrations_dir>/<name>`` for alerts, one at a time, like wazuh-integratord."""

    def __init__(self, script: Union[str, Path], *, options: Optional[str] = None, api_key: str = "",
                 hook_url: str = "", debug: bool = False, timeout: int = 10, retries: int = 3,
                 version: Tuple[int, int] = (4, 14), level: Optional[int] = None, group: Optional[str] = None,
                 rule_id: Optional[str] = None, run_as: Optional[str] = None, check_as: Optional[str] = None,
                 cwd: Optional[Union[str, Path]] = None, tmp_dir: str = "/tmp", safety_timeout: float = 120.0,
                 env: Optional[Dict[str, str]] = None):
        self.script = Path(script)
        self.name = self.script.name
        if not (self.name.startswith("custom-") or self.name in ("slack", "pagerduty", "virustotal", "shuffle",
                                                                   "maltiverse")):
            raise ValueError("integration names must start with custom-")
        self.options, self.api_key, self.hook_url = options, api_key, hook_url
        self.debug, self.timeout, self.retries, self.version = debug, timeout, retries, version
        self.level, self.group, self.rule_id = level, group, rule_id
        self.run_as = run_as
        self.check_as = check_as if check_as is not None else run_as
        self.cwd = str(cwd or self.script.parent.parent)
        self.tmp_dir = tmp_dir
        self.safety_timeout = safety_timeout
        self.env = env if env is not None else {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C"}
        self.calls: List[Call] = []
        self.leftover_files: List[str] = []

    def wants(self, alert: Dict[str, Any]) -> bool:
        rule = alert.get("rule")
        if not isinstance(rule, dict):
            return False
        if self.level is not None and int(rule.get("level", 0)) < self.level:
            return False
        if self.group is not None:
            groups = rule.get("groups") or []
            if not any(g in groups for g in self.group.split(",") if g):
                return False
        if self.rule_id is not None:
            try:
                rid = int(str(rule.get("id")))
            except ValueError:
                return False
            if rid not in {int(x) for x in self.rule_id.split(",") if x.strip()}:
                return False
        return True

    def _tmp(self, suffix: str) -> str:
        return os.path.join(self.tmp_dir, f"{self.name}-{int(time.time())}-{random.randint(0, 2**31 - 1)}.{suffix}")

    def argv(self, alert_file: str, options_file: Optional[str]) -> List[str]:
        argv = [str(self.script), alert_file, self.api_key or "", self.hook_url or "",
                "debug" if self.debug else "", options_file or ""]
        if self.version >= (4, 8):
            argv += [str(self.timeout), str(self.retries)]
        if not self.debug:
            argv.append("> /dev/null 2>&1")
        return argv

    def send(self, alert: Union[Dict[str, Any], str]) -> Optional[Call]:
        """Hand one alert (dict, or a raw line) to the script; None when the filters skip it."""
        if isinstance(alert, dict):
            if not self.wants(alert):
                return None
            line = json.dumps(alert, ensure_ascii=False, separators=(",", ":"))  # cJSON_PrintUnformatted
        else:
            line = alert
        alert_file = self._tmp("alert")
        options_file = self._tmp("options") if self.options is not None else None
        owner = pwd.getpwnam(self.run_as) if self.run_as and os.getuid() == 0 else None
        for path, content in ((alert_file, line), (options_file, self.options)):
            if path is None:
                continue
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
            if owner is not None:
                os.chown(path, owner.pw_uid, owner.pw_gid)
        argv = self.argv(alert_file, options_file)
        start = time.monotonic()
        try:
            if writable_by(self.script, self.check_as) or not os.access(self.script, os.X_OK):
                call = Call(argv, 127, "refused: script writable by the integratord user or not executable",
                            0.0, alert_file, options_file)
            else:
                kwargs: Dict[str, Any] = {}
                if owner is not None:
                    kwargs.update(user=owner.pw_uid, group=owner.pw_gid, extra_groups=[owner.pw_gid])
                try:
                    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.cwd,
                                       env=self.env, timeout=self.safety_timeout, **kwargs)
                    call = Call(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                                time.monotonic() - start, alert_file, options_file)
                except subprocess.TimeoutExpired as e:
                    call = Call(argv, -9, (e.stdout or b"").decode("utf-8", "replace"),
                                time.monotonic() - start, alert_file, options_file, hung=True)
                except OSError as e:  # exec failed: integratord's child exits 127
                    call = Call(argv, 127, str(e), time.monotonic() - start, alert_file, options_file)
        finally:
            for path in (alert_file, options_file):
                if path:
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        self.leftover_files.append(path)  # the script must not delete them
        self.calls.append(call)
        return call


# --- users, trees -------------------------------------------------------------------------------

def ensure_wazuh_user() -> Optional[str]:
    """Create system user and group ``wazuh`` (root only); returns a reason when impossible."""
    try:
        pwd.getpwnam("wazuh")
        grp.getgrnam("wazuh")
        return None
    except KeyError:
        pass
    if os.geteuid() != 0:
        return "needs root to create the wazuh user"
    if shutil.which("useradd") is None or shutil.which("groupadd") is None:
        return "useradd/groupadd not available"
    try:
        try:
            grp.getgrnam("wazuh")
        except KeyError:
            subprocess.run(["groupadd", "--system", "wazuh"], check=True, capture_output=True)
        subprocess.run(["useradd", "--system", "--gid", "wazuh", "--home-dir", "/var/ossec", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", "wazuh"], check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        return f"cannot create user wazuh: {e.stderr.decode(errors='replace').strip()}"
    return None


def make_scratch_manager(base: Union[str, Path], version: str = "v4.14.7") -> Path:
    """A minimal /var/ossec look-alike: dirs, ``bin/wazuh-control info``, ossec.conf.

    Created traversable by user ``wazuh`` (root:wazuh 0750 top directory when run as root).
    """
    home = Path(base)
    for d in ("bin", "etc/rules", "etc/decoders", "integrations", "logs", "queue/sockets", "framework/python/bin"):
        (home / d).mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o755)
    control = home / "bin" / "wazuh-control"
    control.write_text("#!/bin/sh\n# stand-in for wazuh-control: only 'info'\n"
                       "if [ \"$1\" = info ]; then\n"
                       f"  echo 'WAZUH_VERSION=\"{version}\"'\n  echo 'WAZUH_REVISION=\"40714\"'\n"
                       "  echo 'WAZUH_TYPE=\"server\"'\nfi\n")
    os.chmod(control, 0o750)
    (home / "etc" / "ossec.conf").write_text(
        "<!-- Wazuh - Manager - Default configuration -->\n"
        "<ossec_config>\n  <global>\n    <jsonout_output>yes</jsonout_output>\n  </global>\n</ossec_config>\n"
        "\n<ossec_config>\n  <localfile>\n    <log_format>syslog</log_format>\n"
        "    <location>/var/log/syslog</location>\n  </localfile>\n</ossec_config>\n")
    os.chmod(home / "etc" / "ossec.conf", 0o660)
    return home
