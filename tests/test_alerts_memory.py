"""Reading streams: peak memory does not grow with the size of the file."""
from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import pytest

from mimizuku.sources.errors import ReadStats
from mimizuku.sources.reader import iter_alerts

SMALL, LARGE = 30_000, 120_000


def alert_bytes(i: int) -> bytes:
    return json.dumps({
        "timestamp": f"2026-11-20T10:{i // 60 % 60:02d}:{i % 60:02d}.123+0000",
        "rule": {"level": 3, "id": "5715", "groups": ["syslog", "sshd", "authentication_success"]},
        "agent": {"id": "001", "name": "web-01"}, "id": f"1732097702.{i}",
        "full_log": f"Accepted publickey for user{i % 97} from 10.0.{i % 250}.7 port 22 ssh2",
    }, separators=(",", ":")).encode()


def write_file(path: Path, n: int, kind: str) -> Path:
    block = [alert_bytes(i) for i in range(1000)]
    if kind == "export":  # one JSON document, pretty-printed like an indexer response
        with open(path, "w") as f:
            f.write('{"took": 1, "hits": {"total": {"value": %d}, "hits": [\n' % n)
            for i in range(n):
                sep = ",\n" if i < n - 1 else "\n"
                f.write('  {"_index": "wazuh-alerts", "_source": ' + block[i % 1000].decode() + "}" + sep)
            f.write("]}}\n")
        return path
    data = b"\n".join(block) + b"\n"
    opener = gzip.open(path, "wb", compresslevel=1) if kind == "gz" else open(path, "wb")
    with opener as f:
        for _ in range(n // 1000):
            f.write(data)
    return path


def peak_while_reading(path: Path) -> tuple[int, ReadStats]:
    st = ReadStats()
    tracemalloc.start()
    try:
        for _ in iter_alerts(path, stats=st):
            pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, st


@pytest.mark.parametrize("kind", ["lines", "gz", "export"])
def test_peak_memory_does_not_scale_with_file_size(tmp_path, kind):
    small = write_file(tmp_path / f"small.{kind}", SMALL, kind)
    large = write_file(tmp_path / f"large.{kind}", LARGE, kind)
    peak_small, st_small = peak_while_reading(small)
    peak_large, st_large = peak_while_reading(large)
    assert (st_small.alerts, st_large.alerts) == (SMALL, LARGE)
    size_large = large.stat().st_size if kind != "gz" else LARGE * len(alert_bytes(0))
    # reading the whole file would cost at least its size; streaming costs about a chunk
    assert peak_large < size_large / 4
    assert peak_large < peak_small * 1.5 + (1 << 20), (peak_small, peak_large)
