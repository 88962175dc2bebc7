"""Generated Wazuh archive trees and installed models for the retrain/batch/versions tests."""
from __future__ import annotations

import glob
import gzip
import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from mimizuku.tools import synth

ROOT = Path(__file__).resolve().parent.parent
_CACHE: Dict[tuple, List[Dict[str, Any]]] = {}


def fleet(days: int = 14, scale: float = 0.03, seed: int = 0, attacks: bool = True,
          start: Optional[date] = None, attack_days: int = 2) -> List[Dict[str, Any]]:
    """Generated alerts (cached per configuration: generation is the slow part)."""
    key = (days, scale, seed, attacks, start, attack_days)
    if key not in _CACHE:
        cfg = synth.FleetConfig(days=days, scale=scale, seed=seed, attacks=attacks, start=start,
                                attack_days=attack_days)
        _CACHE[key] = list(synth.generate(cfg))
    return _CACHE[key]


def write_tree(root: Path, alerts: Sequence[Dict[str, Any]], *, part_lines: Optional[int] = None,
               strip_labels: bool = True) -> Dict[str, Any]:
    """The alerts as ``root/logs/alerts/YYYY/Mon/ossec-alerts-DD[-NNN].json.gz``."""
    al = [{k: v for k, v in a.items() if k != "_label"} for a in alerts] if strip_labels else list(alerts)
    return synth.write_archive_tree(root, al, part_lines=part_lines)


def day_files(root: Path, day: str) -> List[str]:
    y, m, d = day.split("-")
    mon = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[int(m) - 1]
    return sorted(glob.glob(str(root / "logs" / "alerts" / y / mon / f"ossec-alerts-{d}*")))


def remove_day(root: Path, day: str) -> int:
    files = day_files(root, day)
    for f in files:
        os.unlink(f)
    return len(files)


def corrupt_line(path: str, garbage: bytes = b'{"rule": {"id": "5501", "level": 3\n') -> None:
    """Insert a broken JSON line in the middle of a (gzip) day file."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        lines = f.read().splitlines(keepends=True)
    lines.insert(len(lines) // 2, garbage)
    with opener(path, "wb") as f:
        f.write(b"".join(lines))


def days_of(alerts: Sequence[Dict[str, Any]]) -> List[str]:
    return sorted({a["timestamp"][:10] for a in alerts})


def install_model(model_root: Path, model) -> str:
    """Save a fitted ``Mimizuku`` as a version and make it current (what a retrain would do)."""
    from mimizuku.store.versions import ModelStore

    store = ModelStore(model_root)
    store.ensure()
    model.save_model(store.version_dir(model.model_version_), group=store.group())
    store.install(model.model_version_)
    return model.model_version_


def run_cli(args: Sequence[str], *, env: Optional[Dict[str, str]] = None, **kw) -> subprocess.CompletedProcess:
    """``python -m mimizuku.nightly ARGS`` in a fresh interpreter (stdin closed, pipes not TTYs)."""
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "mimizuku.nightly", *args], capture_output=True,
                          env=e, stdin=subprocess.DEVNULL, timeout=kw.pop("timeout", 300), **kw)


def popen_cli(args: Sequence[str], *, env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "mimizuku.nightly", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=e)


def wait_for_marker(proc: subprocess.Popen, marker: bytes, timeout: float = 120.0,
                    log: Optional[Path] = None) -> bytes:
    """Read the child's stderr (or ``log``) until ``marker`` shows up (the child is then blocked
    at a pause point)."""
    import select
    import time

    buf = b""
    deadline = time.monotonic() + timeout
    fd = proc.stderr.fileno()
    while marker not in buf:
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"marker {marker!r} not seen; so far: {buf[-2000:]!r}")
        if log is not None:
            time.sleep(0.1)
            buf = log.read_bytes() if log.exists() else b""
            continue
        r, _, _ = select.select([fd], [], [], min(left, 1.0))
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                continue
            buf += chunk
    return buf


def summary_of(stdout: bytes) -> Dict[str, Any]:
    lines = stdout.decode().splitlines()
    assert len(lines) == 1, f"expected exactly one line on stdout, got {len(lines)}: {stdout[:2000]!r}"
    return json.loads(lines[0])["mimizuku"]


def yesterday() -> str:
    return (date.today() - timedelta(days=1)).isoformat()
