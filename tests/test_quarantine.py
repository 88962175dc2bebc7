"""core/quarantine.py: an alert that could not be handled is kept aside, bounded (issue 17 item 4)."""
import os
import stat

import pytest

from mimizuku.core.quarantine import QuarantineFull, set_aside


def test_set_aside_keeps_the_bytes_and_the_reason(tmp_path):
    payload = b'{"id": "1", "rule": {"id": "550"}, "odd": "\xff"}'
    path = set_aside(tmp_path / "q", payload, "RecursionError: too deep\nsecond line")
    assert path.read_bytes() == payload
    assert stat.S_IMODE(os.stat(path).st_mode) & 0o027 == 0
    reason = path.with_suffix(".reason").read_text()
    assert "RecursionError" in reason and reason.count("\n") == 1  # one line


def test_same_payload_is_kept_once(tmp_path):
    first = set_aside(tmp_path, "{}", "a")
    assert set_aside(tmp_path, "{}", "b") == first
    assert len(list(tmp_path.glob("*.alert"))) == 1


def test_bounded_in_count_and_bytes(tmp_path):
    set_aside(tmp_path / "n", "1", "r", max_items=1)
    with pytest.raises(QuarantineFull):
        set_aside(tmp_path / "n", "2", "r", max_items=1)
    with pytest.raises(QuarantineFull):
        set_aside(tmp_path / "b", "x" * 100, "r", max_bytes=50)
    assert not list((tmp_path / "b").iterdir())
