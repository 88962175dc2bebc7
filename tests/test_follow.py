"""Following alerts.json: bookmark, midnight relink, intra-day rotation, gzip, restarts, truncation.

A small stand-in for analysisd writes day files under ``logs/alerts/YYYY/Mon/`` and keeps
``alerts.json`` a hard link to the current one, relinking it (new inode) at "midnight" and on
intra-day rotation exactly as ``getloglocation.c`` does; monitord's compression is a gzip of the
old day file followed by deleting it. Every test checks that each line is read exactly once.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from mimizuku.sources.follow import MAX_LINE_BYTES, AlertFollower, Bookmark, FollowError


class Analysisd:
    def __init__(self, root: Path):
        self.alerts = root / "logs" / "alerts"
        self.alerts.mkdir(parents=True)
        self.link = self.alerts / "alerts.json"
        self.current = None
        self.n = 0

    def open_day(self, day: int, part: int = 0, month: str = "Nov") -> Path:
        d = self.alerts / "2026" / month
        d.mkdir(parents=True, exist_ok=True)
        name = f"ossec-alerts-{day:02d}.json" if not part else f"ossec-alerts-{day:02d}-{part:03d}.json"
        p = d / name
        p.touch()
        if self.link.exists():
            self.link.unlink()
        os.link(p, self.link)
        self.current = p
        return p

    def write(self, k: int, partial_tail: bytes = b"") -> list:
        ids = []
        with open(self.current, "ab") as f:
            for _ in range(k):
                self.n += 1
                ids.append(f"1763000000.{self.n}")
                f.write(json.dumps({"id": ids[-1], "rule": {"id": "5501", "level": 3}}).encode() + b"\n")
            f.write(partial_tail)
        return ids

    def compress(self, path: Path) -> None:
        with open(path, "rb") as src, gzip.open(str(path) + ".gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        path.unlink()


def ids_of(lines):
    return [json.loads(raw)["id"] for raw, _ in lines]


def drain(f: AlertFollower, commit=True):
    out = []
    while True:
        got = f.read(1000)
        if not got:
            return out
        out += got
        if commit:
            f.commit(got[-1][1])


@pytest.fixture
def wz(tmp_path):
    return Analysisd(tmp_path)


def follower(wz, tmp_path, **kw):
    return AlertFollower(wz.link, tmp_path / "bookmark", **kw)


def test_tail_partial_lines_and_resume(wz, tmp_path):
    wz.open_day(21)
    first = wz.write(5, partial_tail=b'{"id": "half')
    f = follower(wz, tmp_path, from_start=True)
    got = drain(f)
    assert ids_of(got) == first  # the half-written line is not returned yet
    with open(wz.current, "ab") as fh:
        fh.write(b'-done", "rule": {"id": "1"}}\n')
    more = drain(f)
    assert ids_of(more) == ["half-done"]
    f.save()
    f.close()
    bm = Bookmark.load(tmp_path / "bookmark")
    assert bm.offset == os.path.getsize(wz.current) and bm.archive == "2026/Nov/ossec-alerts-21.json"
    later = wz.write(3)
    f2 = follower(wz, tmp_path)
    assert ids_of(drain(f2)) == later  # nothing read twice, nothing missed


def test_uncommitted_lines_are_read_again_after_restart(wz, tmp_path):
    wz.open_day(21)
    ids = wz.write(10)
    f = follower(wz, tmp_path, from_start=True)
    got = f.read(10)
    f.commit(got[3][1])  # only the first four were handled
    f.save()
    f.close()
    f2 = follower(wz, tmp_path)
    assert ids_of(drain(f2)) == ids[4:]


def test_midnight_relink_while_running(wz, tmp_path):
    wz.open_day(21)
    a = wz.write(4)
    f = follower(wz, tmp_path, from_start=True)
    assert ids_of(drain(f)) == a
    b = wz.write(3)          # written to the old day just before midnight, not read yet
    wz.open_day(22)          # relink: alerts.json is a new inode
    c = wz.write(2)
    assert ids_of(drain(f)) == b + c
    assert f.stats["rotations"] == 1
    f.save()
    assert Bookmark.load(tmp_path / "bookmark").archive == "2026/Nov/ossec-alerts-22.json"


def test_restart_after_relink_reads_rest_of_old_plain_file(wz, tmp_path):
    wz.open_day(21)
    a = wz.write(4)
    f = follower(wz, tmp_path, from_start=True)
    assert ids_of(drain(f)) == a
    f.save()
    f.close()
    b = wz.write(3)          # while we are stopped
    wz.open_day(22)
    c = wz.write(5)
    f2 = follower(wz, tmp_path)
    assert ids_of(drain(f2)) == b + c


def test_restart_after_midnight_gzip_and_intraday_parts(wz, tmp_path):
    day21 = wz.open_day(21)
    a = wz.write(4)
    f = follower(wz, tmp_path, from_start=True)
    assert ids_of(drain(f)) == a
    f.save()
    f.close()
    b = wz.write(3)
    part1 = wz.open_day(21, part=1)  # intra-day rotation
    c = wz.write(2)
    part2 = wz.open_day(21, part=2)
    d = wz.write(2)
    wz.open_day(22)                  # midnight
    e = wz.write(3)
    for p in (day21, part1, part2):
        wz.compress(p)               # monitord: gzip and delete the old day's files
    f2 = follower(wz, tmp_path)
    assert ids_of(drain(f2)) == b + c + d + e
    assert f2.stats["catch_up_files"] == 3


def test_restart_across_days_reads_whole_missing_days(wz, tmp_path):
    wz.open_day(20)
    a = wz.write(2)
    f = follower(wz, tmp_path, from_start=True)
    drain(f)
    f.save()
    f.close()
    b = wz.write(1)
    wz.open_day(21)
    c = wz.write(2)
    wz.open_day(22)
    d = wz.write(2)
    f2 = follower(wz, tmp_path)
    assert ids_of(drain(f2)) == b + c + d and a


def test_restart_when_old_file_is_gone(wz, tmp_path):
    day21 = wz.open_day(21)
    wz.write(2)
    f = follower(wz, tmp_path, from_start=True)
    drain(f)
    f.save()
    f.close()
    wz.write(2)
    wz.open_day(22)
    c = wz.write(2)
    day21.unlink()
    logs = []
    f2 = AlertFollower(wz.link, tmp_path / "bookmark", log=lambda lvl, msg: logs.append((lvl, msg)))
    assert ids_of(drain(f2)) == c
    assert any(lvl == "warning" and "gone" in msg for lvl, msg in logs)


def test_truncation_and_replaced_first_line(wz, tmp_path):
    wz.open_day(21)
    wz.write(5)
    f = follower(wz, tmp_path, from_start=True)
    drain(f)
    with open(wz.current, "r+b") as fh:     # copytruncate-style: same inode, shorter
        fh.truncate(0)
    wz.n = 100
    new = wz.write(2)
    assert ids_of(drain(f)) == new and f.stats["truncations"] == 1
    # same inode rewritten with other content of at least the old length
    wz.write(20)
    drain(f)
    size = os.path.getsize(wz.current)
    with open(wz.current, "r+b") as fh:
        fh.seek(0)
        fh.write(b'{"id": "X", "rule": {"id": "2"}}' + b" " * 20)
    f.save()
    f.close()
    f3 = follower(wz, tmp_path)
    assert os.path.getsize(wz.current) == size
    got = drain(f3)
    assert f3.stats["truncations"] == 1 and got  # first line changed: read again from the start


def test_too_long_lines_are_skipped_without_being_held(wz, tmp_path):
    wz.open_day(21)
    a = wz.write(1)
    with open(wz.current, "ab") as fh:
        fh.write(b'{"id": "big", "x": "' + b"A" * (3 * MAX_LINE_BYTES) + b'"}\n')
    b = wz.write(1)
    f = follower(wz, tmp_path, from_start=True)
    assert ids_of(drain(f)) == a + b and f.stats["too_long"] == 1


def test_first_start_without_bookmark_begins_at_the_end(wz, tmp_path):
    wz.open_day(21)
    wz.write(5, partial_tail=b'{"id": "1763000000.6", "ru')
    f = follower(wz, tmp_path)
    assert drain(f) == []
    with open(wz.current, "ab") as fh:
        fh.write(b'le": {"id": "1"}}\n')
    new = wz.write(2)
    assert ids_of(drain(f)) == ["1763000000.6"] + new


def test_missing_file_then_created(wz, tmp_path):
    f = follower(wz, tmp_path)
    assert drain(f) == []
    wz.open_day(21)
    a = wz.write(2)
    assert ids_of(drain(f)) == a


def test_bad_bookmark_is_reported(wz, tmp_path):
    wz.open_day(21)
    (tmp_path / "bookmark").write_text("{not json")
    with pytest.raises(FollowError):
        follower(wz, tmp_path).read()


def test_two_relinks_between_reads_skip_nothing(wz, tmp_path):
    wz.open_day(21)
    a = wz.write(2)
    f = follower(wz, tmp_path, from_start=True)
    assert ids_of(drain(f)) == a
    b = wz.write(1)
    wz.open_day(21, part=1)
    c = wz.write(2)
    wz.open_day(22)
    d = wz.write(2)
    assert ids_of(drain(f)) == b + c + d
