"""``mimizuku check``: are our rules loaded on the manager? Sample events through ``PUT /logtest``.

After an install, a user wants to see that analysisd knows the Mimizuku rules. This command logs in
to the Wazuh API, builds one sample event per rule band -- anomaly events with the scorer's own
code (:mod:`mimizuku.delivery.events`), one per severity, plus the nightly job's summary lines -- sends each
through wazuh-logtest (one logtest session) and shows which rule fired. What a sample should fire
is worked out from the rules file itself (``mimizuku_rules.xml``: its ``if_sid`` tree and field
patterns), so the check follows the rules when they change. Anything that did not fire as expected
is listed, and so are rules no sample reaches.

Exit codes:
  0   every sample fired the rule expected from the rules file
  2   usage error
  3   the rules file cannot be read or parsed
  8   some expected rules did not fire (rules not installed, not loaded, or different)
  9   authentication failed or the API user lacks a permission (logtest:run)
  10  the API is unreachable or unusable (connection refused, timeouts, 5xx, 429)
  11  TLS verification failed (give the manager's CA: ca_bundle / --ca-bundle / MIMIZUKU_API_CA)
  12  no usable credentials (missing, malformed, or a credentials file others can read)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mimizuku.core.text import printable
from mimizuku.delivery import events

EXIT_OK, EXIT_USAGE, EXIT_RULES = 0, 2, 3
EXIT_MISSING, EXIT_AUTH, EXIT_UNREACHABLE, EXIT_TLS, EXIT_CONFIG = 8, 9, 10, 11, 12

RULES_NAME = "mimizuku_rules.xml"
#: location the nightly job's summary lines arrive with (the command wodle's tag)
JOB_LOCATION = "command_mimizuku"


class RulesFileError(ValueError):
    """The rules file cannot be read or is not a Wazuh rules file."""


# --- the rules file: enough of analysisd's matching to know what a sample should fire ------------

@dataclass
class RuleDef:
    id: int
    level: int
    index: int
    description: str
    if_sid: List[int] = field(default_factory=list)
    decoded_as: Optional[str] = None
    fields: List[Tuple[str, "re.Pattern[str]", bool]] = field(default_factory=list)
    location: Optional[Tuple["re.Pattern[str]", bool]] = None
    evaluable: bool = True          # False: uses conditions this module does not emulate
    children: List["RuleDef"] = field(default_factory=list)


_OS_CLASSES = {"d": r"\d", "D": r"\D", "w": r"[A-Za-z0-9@_\-]", "W": r"[^A-Za-z0-9@_\-]", "s": r"\s",
               "S": r"\S", "t": r"\t", ".": r".", "p": r"[()*+,\-.:;<=>?\[\]!\"'#$%&|{}]"}


def os_regex(pattern: str) -> "re.Pattern[str]":
    """Translate an OS_Regex pattern (``^ $ | \\d \\w \\s \\S \\p \\. * + ?`` and groups) to ``re``.

    Raises ValueError for anything outside that small syntax.
    """
    out: List[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            if i + 1 >= len(pattern):
                raise ValueError("trailing backslash")
            n = pattern[i + 1]
            out.append(_OS_CLASSES.get(n, re.escape(n)))
            i += 2
            continue
        if c in "^$|()*+?":
            out.append(c)
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out))


def os_match(pattern: str) -> "re.Pattern[str]":
    """Translate an OS_Match pattern (``<location>``'s default type) to ``re``: alternatives split
    at ``|``, each a literal text, anchored by a leading ``^`` and/or a trailing ``$``; case
    never matters (os_match_compile.c). A leading ``!`` (negation) raises ValueError."""
    if pattern.startswith("!"):
        raise ValueError("negated OS_Match pattern")
    alternatives = []
    for part in pattern.split("|"):
        head, body, tail = "", part, ""
        if body.startswith("^"):
            head, body = "^", body[1:]
        if body.endswith("$"):
            tail, body = "$", body[:-1]
        alternatives.append(f"{head}{re.escape(body)}{tail}")
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _condition(kind: str, value: str) -> "re.Pattern[str]":
    """A rule condition's pattern as ``re``; ValueError for a type this module does not emulate."""
    if kind == "osregex":
        return os_regex(value)
    if kind == "osmatch":
        return os_match(value)
    if kind == "pcre2":
        return re.compile(value)  # the PCRE2 our file uses ((?:), classes, anchors) is also re's
    raise ValueError(kind)


def rule_location(location: str) -> str:
    """What analysisd matches ``<location>`` against for a message sent with ``location``: an
    agent's ``[<id>] (<name>) <ip>-><tag>`` loses its ``[<id>] `` (cleanevent.c ``OS_CleanMSG``)."""
    if location.startswith("["):
        close = location.find("]")
        return location[close + 2:] if close >= 0 else location
    return location


def parse_rules(path: "os.PathLike[str] | str") -> Dict[int, RuleDef]:
    """The rules of one Wazuh rules file, by id, children linked (file order kept)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise RulesFileError(f"cannot read rules file {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise RulesFileError(f"rules file {path} is not UTF-8") from None
    try:
        root = ET.fromstring(f"<root>{text}</root>")
    except ET.ParseError as e:
        raise RulesFileError(f"rules file {path} is not valid XML: {e}") from None
    rules: Dict[int, RuleDef] = {}
    index = 0
    for el in root.iter("rule"):
        try:
            rule = RuleDef(id=int(el.attrib["id"]), level=int(el.attrib["level"]), index=index,
                           description=(el.findtext("description") or "").strip())
        except (KeyError, ValueError):
            raise RulesFileError(f"rules file {path}: a rule without a numeric id and level") from None
        index += 1
        for child in el:
            tag, value = child.tag, (child.text or "").strip()
            if tag == "if_sid":
                rule.if_sid = [int(x) for x in re.split(r"[\s,]+", value) if x.isdigit()]
            elif tag == "decoded_as":
                rule.decoded_as = value
            elif tag in ("field", "location"):
                # rules.c: <field> is OS_Regex unless told, <location> OS_Match
                kind = child.attrib.get("type", "osregex" if tag == "field" else "osmatch")
                try:
                    rx = _condition(kind, value)
                except (ValueError, re.error):
                    rule.evaluable = False
                    continue
                negate = child.attrib.get("negate") == "yes"
                if tag == "location":
                    rule.location = (rx, negate)
                else:
                    rule.fields.append((child.attrib.get("name", ""), rx, negate))
            elif tag in ("description", "options", "group", "mitre"):
                pass
            else:
                rule.evaluable = False
        rules[rule.id] = rule
    for rule in rules.values():
        for parent in rule.if_sid:
            if parent in rules:
                rules[parent].children.append(rule)
    if not rules:
        raise RulesFileError(f"rules file {path} defines no rule")
    return rules


def flatten(payload: Dict[str, Any]) -> Dict[str, str]:
    """What Wazuh's json decoder makes of an object: ``a.b.c`` keys, every scalar a string."""
    out: Dict[str, str] = {}

    def walk(obj: Dict[str, Any], prefix: str) -> None:
        for k, v in obj.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, key + ".")
            elif isinstance(v, list):
                continue  # arrays are not matched by <field>
            elif v is None:
                out[key] = "null"
            elif isinstance(v, bool):
                out[key] = "true" if v else "false"
            elif isinstance(v, int):
                out[key] = "%i" % v
            elif isinstance(v, float):
                out[key] = "%i" % v if v.is_integer() else "%f" % v
            else:
                out[key] = str(v)

    walk(payload, "")
    return out


def _matches(rule: RuleDef, decoded: Dict[str, str], location: str) -> bool:
    if rule.decoded_as is not None and rule.decoded_as != "json":
        return False
    if rule.location is not None:
        rx, negate = rule.location
        if bool(rx.search(rule_location(location))) == negate:
            return False
    for name, rx, negate in rule.fields:
        value = decoded.get(name)
        if value is None:
            return False
        if bool(rx.search(value)) == negate:
            return False
    return True


def _ordered(rules: Sequence[RuleDef]) -> List[RuleDef]:
    # analysisd tries level-0 children first, then the higher levels first, then file order
    return sorted(rules, key=lambda r: (-(99 if r.level == 0 else r.level), r.index))


def expected_chain(rules: Dict[int, RuleDef], payload: Dict[str, Any], location: str) -> Optional[List[RuleDef]]:
    """Root-to-leaf rules a JSON event sent with ``location`` should pass through; the last one
    fires. None: not knowable."""
    decoded = flatten(payload)
    level = _ordered([r for r in rules.values() if not r.if_sid])
    chain: List[RuleDef] = []
    while level:
        for rule in level:
            if not rule.evaluable:
                return None
            if _matches(rule, decoded, location):
                chain.append(rule)
                level = _ordered(rule.children)
                break
        else:
            break
    return chain


# --- the samples ---------------------------------------------------------------------------------

@dataclass
class Sample:
    name: str
    location: str
    event: str
    payload: Dict[str, Any]


def _record(score: float, severity: str, anomaly: bool = True) -> Dict[str, Any]:
    return {"id": "mimizuku-check", "timestamp": "2025-01-01T00:00:00.000+0000", "detector": "files",
            "score": score, "anomaly": anomaly, "severity": severity, "threshold": 0.5,
            "model_version": "check", "reasons": ["sample event sent by mimizuku check"],
            "rule": {"id": "550", "level": 7, "description": "Integrity checksum changed."},
            "agent": {"id": "000", "name": "manager"}, "fields": {"path": "/etc/mimizuku-check", "event": "modified"}}


def samples() -> List[Sample]:
    """One event per band of our rules: the scorer's events (built by :mod:`mimizuku.delivery.events`, as
    ``serve`` does) and the nightly job's summary lines."""
    from mimizuku.delivery.api_sink import split_message

    records = [
        ("score, not anomalous", _record(0.20, "none", anomaly=False)),
        ("low anomaly", _record(0.60, "low")),
        ("medium anomaly", _record(0.75, "medium")),
        ("high anomaly", _record(0.90, "high")),
        ("critical anomaly", _record(0.95, "critical")),
        ("critical anomaly, score 99 %", _record(0.99, "critical")),
        ("anomaly, unknown severity", _record(0.80, "unknown")),
    ]
    from mimizuku.engine.techniques import table_rows

    for t in table_rows():  # each ATT&CK technique's two rules (under the bands, under 119007)
        for name, score, sev in ((f"high anomaly, ATT&CK {t['id']}", 0.90, "high"),
                                 (f"critical anomaly, score 99 %, ATT&CK {t['id']}", 0.99, "critical")):
            rec = _record(score, sev)
            rec["mitre"] = {"id": t["id"], "technique": t["technique"], "tactic": t["tactic"]}
            records.append((name, rec))
    out: List[Sample] = []
    for name, rec in records:
        _, loc, event = split_message(events.event_message(rec))
        out.append(Sample(name, loc, event, json.loads(event)))
    for status in ("ok", "kept", "failed", "unknown"):
        inner: Dict[str, Any] = {"job": "retrain", "status": status, "version": "check"}
        if status != "ok":
            inner["error"] = "sample summary sent by mimizuku check"
        payload = {"integration": events.TAG, events.TAG: inner}
        out.append(Sample(f"nightly job, status {status}", JOB_LOCATION,
                          json.dumps(payload, ensure_ascii=True, separators=(",", ":")), payload))
    # an analyst's verdict (mimizuku feedback): the audit event
    change = {"action": "add", "id": "fb-000000000000", "verdict": "false-positive", "scope": "agent-account",
              "by": "mimizuku-check", "note": "sample event sent by mimizuku check",
              "situations": [{"detector": "files", "content": "[]", "agent": "manager", "account": "root"}]}
    _, loc, event = split_message(events.feedback_message(change))
    out.append(Sample("analyst's verdict, audit", loc, event, json.loads(event)))
    return out


# --- the check -----------------------------------------------------------------------------------

@dataclass
class SampleResult:
    name: str
    expected: Optional[Dict[str, Any]]
    fired: Optional[Dict[str, Any]]
    alert: bool
    status: str                       # "ok", "missing", "unknown" (no expectation)
    messages: List[str] = field(default_factory=list)

    def as_dict(self) -> Dict[str, Any]:
        return {"sample": self.name, "expected": self.expected, "fired": self.fired, "alert": self.alert,
                "status": self.status, "messages": self.messages}


def _rule_info(rule: RuleDef) -> Dict[str, Any]:
    return {"id": str(rule.id), "level": rule.level, "description": rule.description}


def run_check(api: Any, rules: Dict[int, RuleDef], sample_list: Optional[List[Sample]] = None
              ) -> Tuple[List[SampleResult], List[str], List[str]]:
    """Send every sample through logtest; (results, missing rule ids, rule ids no sample reaches)."""
    sample_list = samples() if sample_list is None else sample_list
    results: List[SampleResult] = []
    reached: set = set()
    token: Optional[str] = None
    try:
        for s in sample_list:
            chain = expected_chain(rules, s.payload, s.location)
            expected = chain[-1] if chain else None
            if chain:
                reached.update(r.id for r in chain)
            data = api.logtest(s.event, log_format="json", location=s.location, token=token)
            token = data.get("token") if isinstance(data.get("token"), str) else token
            output = data.get("output") if isinstance(data.get("output"), dict) else {}
            rule = output.get("rule") if isinstance(output.get("rule"), dict) else None
            fired = None
            if rule is not None:
                fired = {"id": str(rule.get("id")), "level": rule.get("level"),
                         "description": str(rule.get("description") or "")}
            if expected is None:
                status = "unknown"
            elif fired is not None and fired["id"] == str(expected.id):
                status = "ok"
            else:
                status = "missing"
            msgs = [str(m) for m in data.get("messages") or [] if isinstance(m, (str, int))]
            results.append(SampleResult(s.name, _rule_info(expected) if expected else None, fired,
                                        bool(data.get("alert")), status, msgs))
    finally:
        if token:
            api.end_logtest_session(token)
    missing = sorted({r.expected["id"] for r in results if r.status == "missing" and r.expected},
                     key=int)
    not_reached = [str(i) for i in sorted(rules) if i not in reached]
    return results, missing, not_reached


# --- command line --------------------------------------------------------------------------------

def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """``mimizuku check``: add the subcommand to the CLI's subparsers."""
    p = subparsers.add_parser(
        "check", help="send sample events through the manager's wazuh-logtest (API) and show which rules fire",
        description="Send sample Mimizuku events through the manager's wazuh-logtest (PUT /logtest) and show "
                    "which of our rules fired, and which are missing. Credentials: see docs/api.md "
                    "(a mode-600 JSON file or MIMIZUKU_API_* variables; never on the command line).",
        epilog="Exit codes: 0 all expected rules fired, 2 usage, 3 rules file unreadable, 8 rules missing, "
               "9 authentication/permission, 10 API unreachable, 11 TLS verification, 12 credentials unusable.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wazuh-home", default="/var/ossec", help="Wazuh installation (default /var/ossec)")
    p.add_argument("--api-config", metavar="PATH",
                   help="JSON credentials file, mode 600 (default <wazuh-home>/etc/mimizuku/api.json; "
                        "MIMIZUKU_API_* environment variables override its keys)")
    p.add_argument("--rules", metavar="PATH", help=f"our rules file to compare with (default "
                                                   f"<wazuh-home>/etc/rules/{RULES_NAME}, else the source tree's)")
    p.add_argument("--ca-bundle", metavar="PATH", help="CA certificate(s) that signed the API's certificate")
    p.add_argument("--insecure", action="store_true",
                   help="do not verify the API's TLS certificate (a warning is logged; prefer --ca-bundle)")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each answer (default 10)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of a table")


def default_rules(home: Path) -> Optional[Path]:
    for cand in (home / "etc" / "rules" / RULES_NAME,
                 Path(__file__).resolve().parents[2] / "wazuh_rules" / RULES_NAME):
        if cand.is_file():
            return cand
    return None


def _table(results: List[SampleResult], missing: List[str], not_reached: List[str], url: str,
           rules_path: Path) -> str:
    lines = [f"Wazuh API {url}: rules checked against {rules_path}", ""]
    head = ["sample".ljust(30), "expected".ljust(8), "fired".ljust(8), "level", "result ", "description"]
    lines.append("  ".join(head))
    for r in results:
        exp = r.expected["id"] if r.expected else "?"
        fired = r.fired["id"] if r.fired else "-"
        level = str(r.fired["level"]) if r.fired else "-"
        desc = r.fired["description"] if r.fired else "(no rule fired)"
        lines.append("  ".join([printable(r.name, 30).ljust(30), exp.ljust(8), fired.ljust(8), level.ljust(5),
                                {"ok": "ok", "missing": "MISSING", "unknown": "?"}[r.status].ljust(7),
                                printable(desc, 120)]))
    lines.append("")
    if missing:
        lines.append(f"MISSING: rule(s) {', '.join(missing)} did not fire. Are {RULES_NAME} installed in "
                     f"/var/ossec/etc/rules/ and the manager restarted since? (wazuh-analysisd -t shows errors)")
    else:
        lines.append(f"all {sum(r.status == 'ok' for r in results)} samples fired the expected rule")
    if not_reached:
        lines.append(f"note: no sample reaches rule(s) {', '.join(not_reached)} (parents fire instead)")
    return "\n".join(lines)


def _fail(a: argparse.Namespace, code: int, message: str) -> int:
    if getattr(a, "json", False):
        print(json.dumps({"ok": False, "exit_code": code, "error": message}, ensure_ascii=False))
    else:
        print(f"mimizuku check: error: {message}", file=sys.stderr)
    return code


def run(a: argparse.Namespace) -> int:
    """Entry point of ``mimizuku check``; returns the exit code."""
    from mimizuku.delivery import wazuh_api as W

    home = Path(a.wazuh_home)
    rules_path = Path(a.rules) if a.rules else default_rules(home)
    if rules_path is None:
        return _fail(a, EXIT_RULES, f"no rules file: give --rules PATH (looked for "
                                    f"{home / 'etc' / 'rules' / RULES_NAME})")
    try:
        rules = parse_rules(rules_path)
    except RulesFileError as e:
        return _fail(a, EXIT_RULES, str(e))
    if a.timeout <= 0:
        return _fail(a, EXIT_USAGE, "--timeout must be positive")
    try:
        creds = W.load_credentials(a.api_config, default_path=str(home / "etc" / "mimizuku" / "api.json"))
    except W.ApiConfigError as e:
        return _fail(a, EXIT_CONFIG, str(e))
    if a.ca_bundle:
        if not os.path.isfile(a.ca_bundle):
            return _fail(a, EXIT_USAGE, f"--ca-bundle {a.ca_bundle} is not a file")
        verify: Any = a.ca_bundle
    else:
        verify = creds.tls_verify
    if a.insecure:
        verify = False
    try:
        api = W.WazuhAPI(creds.url, creds.user, creds.password, verify=verify,
                         timeout=(min(5.0, a.timeout), a.timeout), retries=2)
    except W.ApiConfigError as e:
        return _fail(a, EXIT_CONFIG, str(e))
    try:
        results, missing, not_reached = run_check(api, rules)
    except W.TlsError as e:
        return _fail(a, EXIT_TLS, str(e))
    except (W.AuthenticationFailed, W.Forbidden) as e:
        return _fail(a, EXIT_AUTH, str(e))
    except W.ApiError as e:
        return _fail(a, EXIT_UNREACHABLE, str(e))
    finally:
        api.close()
    code = EXIT_MISSING if missing else EXIT_OK
    if a.json:
        print(json.dumps({"ok": not missing, "exit_code": code, "url": creds.url, "user": creds.user,
                          "rules_file": str(rules_path), "samples": [r.as_dict() for r in results],
                          "missing": missing, "not_exercised": not_reached}, ensure_ascii=False))
    else:
        print(_table(results, missing, not_reached, creds.url, rules_path))
    return code


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="mimizuku check", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    try:
        a = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    import logging

    logging.basicConfig(level=logging.WARNING, format="mimizuku check: %(levelname)s: %(message)s")
    return run(a)


if __name__ == "__main__":
    sys.exit(main())
