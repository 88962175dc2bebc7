"""What integratord hands the script: its argv and the ``<options>`` JSON, read and checked.

Both the per-alert call (:mod:`mimizuku.integratord.call`) and the resident scorer
(``mimizuku serve --options``) read the same options, so their keys, defaults and checks live here,
apart from what one call does with them. Standard library only.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from mimizuku.core.severity import SEVERITY_RANK
from mimizuku.core.spool import DEFAULT_MAX_BYTES

NAME = "mimizuku"
#: integratord's default when it passes none (and Wazuh < 4.8, which passes none).
DEFAULT_TIMEOUT = 10
DEFAULT_RETRIES = 3
MAX_OPTIONS_BYTES = 64 * 1024
#: digits of the timeout and retries integratord passes (a longer number is no setting: int()
#: of over 4,300 digits raised ValueError past Python's limit, not UsageError)
MAX_NUMBER_DIGITS = 9

#: Keys of the ``<options>`` JSON object and what they mean (the README's Wazuh section lists them too).
OPTION_KEYS = {
    "model_dir": "directory of the trained model (default <wazuh>/mimizuku/models)",
    "socket": "resident scorer socket (mimizuku serve); when set, alerts go to it first",
    "socket_timeout": "seconds to wait for the resident scorer's acknowledgement (default 2)",
    "fallback": '"spool" (default: keep alerts for the resident scorer when it is down) or "in-process"',
    "queue": "analysisd queue socket (default <wazuh>/queue/sockets/queue)",
    "spool_dir": "where alerts and events wait (default <wazuh>/mimizuku/spool)",
    "log_file": "log file (default <wazuh>/logs/integrations.log)",
    "send": '"anomalies" (default) or "all" (every score is sent, level-0 rule)',
    "detectors": "list of detectors whose results are reported (default: all)",
    "thresholds": 'per-detector score thresholds overriding the model\'s, e.g. {"files": 0.9, "*": 0.95}',
    "min_severity": "lowest severity reported as an anomaly event (default low)",
    "max_batch": "most alerts scored per call (default 200)",
    "max_spool": "most alerts kept waiting (default 100000)",
    "max_spool_bytes": "most bytes of alerts kept waiting (default 536870912: 512 MiB)",
    "ignore_users": "users whose alerts are never anomalies (passed to the engine)",
}


class UsageError(ValueError):
    """argv is not what integratord writes."""


class OptionsError(ValueError):
    """The options file is not a JSON object with known keys and sensible values."""


@dataclass
class Invocation:
    alert_file: str
    api_key: str = ""
    hook_url: str = ""
    debug: bool = False
    options_file: str = ""
    timeout: int = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES


def parse_argv(argv: Sequence[str]) -> Invocation:
    """integratord's argv: alert, api_key, hook_url, "debug"|"", options|"", timeout, retries, quirk.

    Wazuh 4.8+ passes all eight in that order (empty strings kept); older versions stop after the
    options file and append the literal ``> /dev/null 2>&1`` (integratord's quirk, ignored here).
    The tail is read by content, so both layouts work.
    """
    if len(argv) < 2 or not argv[1]:
        raise UsageError("usage: custom-mimizuku ALERT_FILE [API_KEY HOOK_URL debug OPTIONS_FILE TIMEOUT RETRIES]")
    inv = Invocation(alert_file=argv[1])
    inv.api_key = argv[2] if len(argv) > 2 else ""
    inv.hook_url = argv[3] if len(argv) > 3 else ""
    ints: List[int] = []
    for tok in argv[4:]:
        t = tok.strip()
        if not t or t.startswith(">"):
            continue
        if t == "debug":
            inv.debug = True
        elif t.isascii() and t.isdigit():   # str.isdigit alone takes "²", which int() refuses
            if len(t) > MAX_NUMBER_DIGITS:
                raise UsageError(f"timeout or retries out of range ({len(t)} digits)")
            ints.append(int(t))
        elif not inv.options_file:
            inv.options_file = tok
        else:
            raise UsageError(f"unexpected argument {tok!r}")
    if ints and ints[0] > 0:
        inv.timeout = ints[0]
    if len(ints) > 1:
        inv.retries = ints[1]
    return inv


def wazuh_home(script: Optional[str] = None) -> Path:
    """The Wazuh installation the script lives in (``<home>/integrations/custom-mimizuku``)."""
    script = script or sys.argv[0]
    return Path(os.path.realpath(script)).parent.parent


@dataclass
class Options:
    home: Path
    model_dir: Path
    queue: Path
    spool_dir: Path
    log_file: Path
    socket: Optional[Path] = None
    send: str = "anomalies"
    detectors: Optional[frozenset] = None
    thresholds: Dict[str, float] = field(default_factory=dict)
    min_severity: str = "low"
    max_batch: int = 200
    max_spool: int = 100_000
    max_spool_bytes: int = DEFAULT_MAX_BYTES
    ignore_users: Tuple[str, ...] = ()
    socket_timeout: Optional[float] = None
    fallback: str = "spool"

    @classmethod
    def defaults(cls, home: Path) -> "Options":
        return cls(home=home, model_dir=home / NAME / "models", queue=home / "queue" / "sockets" / "queue",
                   spool_dir=home / NAME / "spool", log_file=home / "logs" / "integrations.log")


def _path(v: Any, key: str, home: Path) -> Path:
    if not isinstance(v, str) or not v or "\x00" in v:
        raise OptionsError(f"option {key!r} must be a non-empty path")
    p = Path(v)
    return p if p.is_absolute() else home / p


def load_options(path: str, home: Path) -> Options:
    """Parse the ``<options>`` JSON integratord wrote (empty path or empty text: defaults)."""
    opts = Options.defaults(home)
    if not path:
        return opts
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_OPTIONS_BYTES + 1)
    except OSError as e:
        raise OptionsError(f"cannot read options file {path}: {e.strerror}") from e
    if len(raw) > MAX_OPTIONS_BYTES:
        raise OptionsError("options file is larger than 64 KiB")
    text = raw.decode("utf-8", "replace").strip()
    if not text:
        return opts
    try:
        data = json.loads(text)
    except ValueError as e:
        raise OptionsError(f"options are not valid JSON ({e})") from e
    except RecursionError:
        raise OptionsError("options are not valid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise OptionsError("options must be a JSON object")
    unknown = sorted(set(data) - set(OPTION_KEYS))
    if unknown:
        raise OptionsError(f"unknown option(s): {', '.join(unknown)} (known: {', '.join(sorted(OPTION_KEYS))})")
    for key in ("model_dir", "queue", "spool_dir", "log_file", "socket"):
        if key in data and data[key] is not None:
            setattr(opts, key, _path(data[key], key, home))
    if "send" in data:
        if data["send"] not in ("anomalies", "all"):
            raise OptionsError('option "send" must be "anomalies" or "all"')
        opts.send = data["send"]
    if data.get("detectors") is not None:
        d = data["detectors"]
        if not isinstance(d, list) or not all(isinstance(x, str) for x in d):
            raise OptionsError('option "detectors" must be a list of names')
        opts.detectors = frozenset(d)
    if data.get("thresholds") is not None:
        t = data["thresholds"]
        if not isinstance(t, dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in t.values()):
            raise OptionsError('option "thresholds" must map detector names (or "*") to numbers in [0, 1]')
        opts.thresholds = {str(k): float(v) for k, v in t.items()}
    if "min_severity" in data:
        if not isinstance(data["min_severity"], str) or data["min_severity"] not in SEVERITY_RANK \
                or data["min_severity"] == "none":
            raise OptionsError('option "min_severity" must be one of low, medium, high, critical')
        opts.min_severity = data["min_severity"]
    for key in ("max_batch", "max_spool", "max_spool_bytes"):
        if key in data:
            v = data[key]
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise OptionsError(f"option {key!r} must be a positive integer")
            setattr(opts, key, v)
    if data.get("socket_timeout") is not None:
        v = data["socket_timeout"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 600:
            raise OptionsError('option "socket_timeout" must be a number of seconds in (0, 600]')
        opts.socket_timeout = float(v)
    if "fallback" in data:
        if data["fallback"] not in ("spool", "in-process"):
            raise OptionsError('option "fallback" must be "spool" or "in-process"')
        opts.fallback = data["fallback"]
    if data.get("ignore_users") is not None:
        u = data["ignore_users"]
        if not isinstance(u, list) or not all(isinstance(x, str) for x in u):
            raise OptionsError('option "ignore_users" must be a list of user names')
        opts.ignore_users = tuple(u)
    return opts
