"""core/: the pieces every room shares (atomic writes, text escaping, severity bands)."""
import os
import stat

import pytest

from mimizuku.core.atomic import write_atomic
from mimizuku.core.severity import SEVERITIES, SEVERITY_RANK
from mimizuku.core.text import printable


def test_write_atomic_replaces_whole_with_the_mode_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "bookmark.json"
    target.write_bytes(b"old")
    write_atomic(target, b"new" * 100_000, mode=0o600, sync_dir=True)
    assert target.read_bytes() == b"new" * 100_000
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bookmark.json"]


def test_write_atomic_never_writes_through_a_planted_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep")
    target = tmp_path / "state"
    target.symlink_to(victim)
    write_atomic(target, b"new")
    assert victim.read_bytes() == b"keep"  # the link was replaced, not followed
    assert not target.is_symlink() and target.read_bytes() == b"new"


def test_write_atomic_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "status.json"
    target.write_bytes(b"old")

    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        write_atomic(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["status.json"]


@pytest.mark.parametrize("text, limit, want", [
    ("plain text", 50, "plain text"),
    ("evil\nforged line", 50, "evil\\x0aforged line"),
    ("\x1b[2Jwipe", 50, "\\x1b[2Jwipe"),
    ("\u202eright-to-left", 50, "\\u202eright-to-left"),
    ("x" * 30, 10, "xxxxxxx..."),
])
def test_printable_escapes_and_caps(text, limit, want):
    out = printable(text, limit)
    assert out == want and len(out) <= limit and out.isprintable()


def test_severity_bands_are_ordered():
    assert [SEVERITY_RANK[s] for s in SEVERITIES] == list(range(5))
    assert SEVERITIES[0] == "none" and SEVERITIES[-1] == "critical"


def test_one_identity_for_an_alert():
    from mimizuku.core.alert_identity import alert_key, bounded_id, content_id

    a = {"rule": {"id": "5402"}, "agent": {"name": "web-01"}, "full_log": "sudo: x"}
    same = {"full_log": "sudo: x", "agent": {"name": "web-01"}, "rule": {"id": "5402"}}  # key order differs
    assert content_id(a) == content_id(same) and content_id(a).startswith("sha1:")
    assert content_id(a) != content_id(dict(a, full_log="sudo: y"))
    assert alert_key(a) == content_id(a)
    assert alert_key({"id": "1.2", "manager": {"name": "m1"}}) == "1.2@m1"  # ids are unique per manager
    assert alert_key({"id": "1.2"}) == "1.2"
    assert bounded_id("short", 10) == "short" and bounded_id("x" * 11, 10).startswith("sha1:")


# --- unchecked conversions never fail a run (issue 17, item 9) ----------------------------------

def test_an_execve_index_of_thousands_of_digits_is_read_not_fatal():
    import alert_factory as F

    from mimizuku import Mimizuku
    from mimizuku.core import fields

    a = F.command(F.BASE, ["ls", "-la"])
    a["data"]["audit"]["execve"]["a" + "9" * 5000] = "tail"
    a["data"]["audit"]["execve"]["a010"] = "ten"            # leading zeros: numeric order still
    assert fields.command_argv(a) == ["ls", "-la", "ten", "tail"]
    m = Mimizuku(contamination=1e-3).fit(F.normal_fleet(days=2))
    assert len(m.score_records([a])) == 1


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                "0001-01-01T00:00:00.000+0100"])
def test_timestamps_past_the_calendar_in_utc_are_none_not_an_error(ts):
    from mimizuku.outputs import parse_timestamp

    assert parse_timestamp(ts) is None
    assert parse_timestamp("2026-11-20T10:15:02.123+0000").year == 2026


def test_an_alert_nested_beyond_every_encoder_still_has_an_identity():
    """issue 17, item 4 (its trigger): an alert 5,000 levels deep without an id raised
    RecursionError in alert_key, which took the resident scorer down."""
    import json

    from mimizuku.core.alert_identity import _flat_json, alert_key, canonical_json

    deep: dict = {"rule": {"id": "5501", "level": 3}, "agent": {"name": "web-01"}}
    cur = deep
    for _ in range(5000):
        cur["x"] = {}
        cur = cur["x"]
    key = alert_key(deep)
    assert key.startswith("sha1:") and key == alert_key(deep)
    # the loop writes what the encoders write, where they can
    plain = {"b": [1, {"z": None, "a": "x"}, [2, 3]], "a": {"q": 1.5, "p": True}, "c": "é"}
    assert _flat_json(plain) == json.dumps(plain, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert canonical_json(deep)[:2] == b'{"'
