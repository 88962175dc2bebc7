"""The Wazuh archive tree: file selection, order, windows, twins, alerts.json, odd entries."""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import time
from datetime import date, datetime
from pathlib import Path

import pytest

from mimizuku.sources import archive
from mimizuku.sources.archive import archive_files
from mimizuku.sources.errors import AlertSourceError, ReadStats
from mimizuku.sources.reader import iter_alerts, read_alerts

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def alert_line(d: date, n: int, tag: str, hour: int = 10) -> bytes:
    a = {"timestamp": f"{d.isoformat()}T{hour:02d}:{n % 60:02d}:00.000+0000",
         "rule": {"id": "5715", "level": 3, "groups": ["sshd"]},
         "agent": {"id": "001", "name": "a"}, "full_log": f"{tag}#{n}"}
    return json.dumps(a).encode() + b"\n"


def day_path(alerts_dir: Path, d: date, part: int = 0, gz: bool = True) -> Path:
    name = f"ossec-alerts-{d.day:02d}" + (f"-{part:03d}" if part else "") + ".json" + (".gz" if gz else "")
    return alerts_dir / f"{d.year}" / MONTHS[d.month - 1] / name


def write_day(alerts_dir: Path, d: date, part: int = 0, gz: bool = True, n: int = 3,
              hour: int = 10) -> Path:
    p = day_path(alerts_dir, d, part, gz)
    p.parent.mkdir(parents=True, exist_ok=True)
    tag = p.name
    data = b"".join(alert_line(d, i, f"{d.isoformat()}/{tag}", hour) for i in range(n))
    p.write_bytes(gzip.compress(data) if gz else data)
    return p


@pytest.fixture
def ossec(tmp_path):
    """/var/ossec with a year boundary, intra-day parts, a missing day and junk next to it."""
    root = tmp_path / "var" / "ossec"
    alerts_dir = root / "logs" / "alerts"
    specs = [
        (date(2021, 12, 30), 0, True), (date(2021, 12, 31), 0, True),
        (date(2022, 1, 1), 0, True), (date(2022, 1, 1), 1, True), (date(2022, 1, 1), 2, True),
        (date(2022, 1, 1), 999, True), (date(2022, 1, 1), 1000, False),
        (date(2022, 1, 2), 0, True), (date(2022, 1, 4), 0, True),  # 3rd missing
        (date(2022, 2, 1), 0, False),
    ]
    random.Random(7).shuffle(specs)  # creation order must not matter
    for d, part, gz in specs:
        write_day(alerts_dir, d, part, gz)
    jan = alerts_dir / "2022" / "Jan"
    (jan / "ossec-alerts-01.json.sum").write_text("checksums")
    (jan / "ossec-alerts-01.log.gz").write_bytes(gzip.compress(b"** Alert 1: text format\n"))
    (jan / "ossec-alerts-32.json").write_text("{}")  # no such day
    (jan / "ossec-archive-01.json").write_text("{}")
    (alerts_dir / "2022" / "Foo").mkdir()
    (alerts_dir / "2022" / "Foo" / "ossec-alerts-01.json").write_text("{}")
    (alerts_dir / "22").mkdir()
    return root


def names(paths):
    return [f"{p.parent.parent.name}/{p.parent.name}/{p.name}" for p in paths]


ALL = [
    "2021/Dec/ossec-alerts-30.json.gz", "2021/Dec/ossec-alerts-31.json.gz",
    "2022/Jan/ossec-alerts-01.json.gz", "2022/Jan/ossec-alerts-01-001.json.gz",
    "2022/Jan/ossec-alerts-01-002.json.gz", "2022/Jan/ossec-alerts-01-999.json.gz",
    "2022/Jan/ossec-alerts-01-1000.json",
    "2022/Jan/ossec-alerts-02.json.gz", "2022/Jan/ossec-alerts-04.json.gz",
    "2022/Feb/ossec-alerts-01.json",
]


def test_all_files_in_chronological_order_from_any_root(ossec):
    for root in (ossec, ossec / "logs", ossec / "logs" / "alerts", str(ossec)):
        assert names(archive_files(root)) == ALL


@pytest.mark.parametrize("window, expected", [
    (dict(days=3, until="2022-01-02"), ALL[1:8]),                      # over the year boundary
    (dict(days=1, until=date(2022, 1, 1)), ALL[2:7]),                  # one day, all its parts
    (dict(since="2022-01-02", until="2022-01-05"), ALL[7:9]),          # the missing 3rd is fine
    (dict(since="2022-01-31", until="2022-02-28"), ALL[9:]),           # over a month boundary
    (dict(until="2021-12-31"), ALL[:2]),
    (dict(since=datetime(2022, 1, 2, 12)), ALL[7:]),
    (dict(since="2022-01-01", until="2022-01-02T00:00:00"), ALL[2:7]),  # until exclusive
    (dict(since="2023-01-01"), []),
])
def test_window_selects_days(ossec, window, expected):
    assert names(archive_files(ossec, **window)) == expected


def test_days_counts_back_from_today(ossec, monkeypatch):
    monkeypatch.setattr(archive, "today", lambda: date(2022, 1, 2))
    assert names(archive_files(ossec, days=2)) == ALL[2:8]


def test_reading_a_tree_in_order_with_window_and_counts(ossec):
    st = ReadStats()
    got = list(iter_alerts(ossec, days=3, until="2022-01-02", stats=st))
    tags = [a["full_log"].rsplit("#", 1)[0] for a in got]
    expected_files = ALL[1:8]
    assert st.files == len(expected_files)
    assert [t.split("/", 1)[1] for t in dict.fromkeys(tags)] == [n.rsplit("/", 1)[1] for n in expected_files]
    assert st.alerts == 3 * len(expected_files) and st.total_bad == 0
    times = [a["timestamp"] for a in got]
    assert times[0].startswith("2021-12-31") and times[-1].startswith("2022-01-02")


def test_files_outside_the_window_are_not_opened(ossec):
    alerts_dir = ossec / "logs" / "alerts"
    day_path(alerts_dir, date(2021, 12, 30)).write_bytes(b"\x1f\x8b garbage, would be damaged")
    st = ReadStats()
    list(iter_alerts(ossec, since="2022-01-01", until="2022-01-01", stats=st))
    assert st.damaged_files == [] and st.files == 5
    list(iter_alerts(ossec, until="2021-12-31", stats=st))
    assert st.damaged_files == [str(day_path(alerts_dir, date(2021, 12, 30)))]


def test_datetime_window_also_filters_alerts_inside_a_day(tmp_path):
    alerts_dir = tmp_path / "alerts"
    write_day(alerts_dir, date(2022, 1, 25), n=6, hour=11)  # 11:00 .. 11:05
    (alerts_dir / "2022" / "Jan" / "extra").mkdir()
    got, st = read_alerts(alerts_dir, since="2022-01-25T11:02:00", until="2022-01-25T11:04:00")
    assert [a["timestamp"][11:16] for a in got] == ["11:02", "11:03"]
    assert st.skipped_by_window == 4 and st.files == 1


def test_json_and_gz_twins_read_once(tmp_path):
    alerts_dir = tmp_path / "alerts"
    plain = write_day(alerts_dir, date(2022, 1, 5), gz=False, n=4)
    gz = plain.with_name(plain.name + ".gz")
    gz.write_bytes(gzip.compress(plain.read_bytes()))  # compression done, delete pending
    assert archive_files(alerts_dir) == [gz]
    got, st = read_alerts(alerts_dir)
    assert len(got) == 4 and st.files == 1
    # an interrupted compression: the .gz is short, the .json is the whole day
    gz.write_bytes(gzip.compress(plain.read_bytes())[:30])
    assert archive_files(alerts_dir) == [plain]
    got, st = read_alerts(alerts_dir)
    assert len(got) == 4 and st.damaged_files == []


def test_alerts_json_hard_link_is_not_read_twice(ossec):
    alerts_dir = ossec / "logs" / "alerts"
    today = write_day(alerts_dir, date(2022, 2, 2), gz=False, n=5)
    os.link(today, alerts_dir / "alerts.json")
    assert names(archive_files(ossec))[-1] == "2022/Feb/ossec-alerts-02.json"
    assert "alerts.json" not in [p.name for p in archive_files(ossec)]
    got, st = read_alerts([ossec, alerts_dir / "alerts.json"], since="2022-02-02")
    assert len(got) == 5 and st.files == 1 and st.duplicate_files == 1


def test_alerts_json_copy_is_recognised(ossec):
    """A tree copied without hard links: alerts.json is a copy of the day file."""
    alerts_dir = ossec / "logs" / "alerts"
    today = write_day(alerts_dir, date(2022, 2, 2), gz=False, n=5)
    aj = alerts_dir / "alerts.json"
    shutil.copyfile(today, aj)
    t = time.mktime(datetime(2022, 2, 2, 18, 0).timetuple())
    os.utime(aj, (t, t))
    assert "alerts.json" not in [p.name for p in archive_files(ossec)]


def test_alerts_json_alone_or_unmatched_is_read_last(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    alerts_dir.mkdir(parents=True)
    aj = alerts_dir / "alerts.json"
    aj.write_bytes(alert_line(date.today(), 1, "live"))
    assert archive_files(tmp_path) == [aj]  # a fresh manager: no archive yet
    write_day(alerts_dir, date(2022, 1, 1))
    assert archive_files(tmp_path)[-1] == aj
    got, _ = read_alerts(tmp_path)
    assert got[-1]["full_log"] == "live#1"
    assert archive_files(tmp_path, until="2022-01-31") == [day_path(alerts_dir, date(2022, 1, 1))]


def test_day_file_compressed_between_listing_and_reading(tmp_path):
    alerts_dir = tmp_path / "alerts"
    plain = write_day(alerts_dir, date(2022, 1, 5), gz=False, n=3)
    st = ReadStats()
    it = iter_alerts(alerts_dir, stats=st)  # the plan names the .json
    plain.with_name(plain.name + ".gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()  # what monitord does after midnight
    assert len(list(it)) == 3 and st.unreadable_files == [] and st.files == 1


def test_fifo_and_dangling_link_in_the_tree_are_counted_not_blocking(tmp_path):
    alerts_dir = tmp_path / "alerts"
    write_day(alerts_dir, date(2022, 1, 5))
    fifo = day_path(alerts_dir, date(2022, 1, 6), gz=False)
    os.mkfifo(fifo)
    dangling = day_path(alerts_dir, date(2022, 1, 7), gz=False)
    os.symlink(tmp_path / "gone.json", dangling)
    got, st = read_alerts(alerts_dir)
    assert len(got) == 3
    assert sorted(st.unreadable_files) == sorted([str(fifo), str(dangling)])
    assert "2 unreadable" in str(st)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_and_directory_in_the_tree(tmp_path):
    alerts_dir = tmp_path / "alerts"
    write_day(alerts_dir, date(2022, 1, 5))
    locked = write_day(alerts_dir, date(2022, 1, 6))
    locked.chmod(0)
    locked_dir = write_day(alerts_dir, date(2022, 2, 1)).parent
    locked_dir.chmod(0)
    try:
        got, st = read_alerts(alerts_dir)
    finally:
        locked_dir.chmod(0o755)
    assert len(got) == 3
    assert set(st.unreadable_files) == {str(locked), str(locked_dir)}


def test_tree_errors(tmp_path):
    (tmp_path / "empty" / "logs" / "alerts" / "2022" / "Jan").mkdir(parents=True)
    with pytest.raises(AlertSourceError, match="no alert files in .*logs/alerts"):
        iter_alerts(tmp_path / "empty")
    with pytest.raises(AlertSourceError, match="no alert files"):
        archive_files(tmp_path / "empty" / "logs")
    f = tmp_path / "file.json"
    f.write_text("{}")
    with pytest.raises(AlertSourceError, match="not a directory"):
        archive_files(f)
    with pytest.raises(AlertSourceError, match="not a directory"):
        archive_files(tmp_path / "missing")


def test_permission_denied_in_the_tree_is_counted(tmp_path, monkeypatch):
    """The same as above, for root too: the OS refusals are simulated."""
    alerts_dir = tmp_path / "alerts"
    write_day(alerts_dir, date(2022, 1, 5))
    locked = write_day(alerts_dir, date(2022, 1, 6))
    locked_dir = write_day(alerts_dir, date(2022, 2, 1)).parent
    real_open, real_scandir = os.open, os.scandir

    def fake_open(path, flags, *args, **kw):
        if os.fspath(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kw)

    def fake_scandir(path="."):
        if os.fspath(path) == str(locked_dir):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "scandir", fake_scandir)
    got, st = read_alerts(alerts_dir)
    assert len(got) == 3
    assert set(st.unreadable_files) == {str(locked), str(locked_dir)}
