"""The spool (core/spool.py): a put costs the same at any size, the spool is bounded by bytes, and
a write that does not reach the disk whole fails loudly (issue 17 items 10 and 11)."""
from __future__ import annotations

import errno
import json
import logging
import os
import time

import pytest

from mimizuku.core import spool as spool_mod
from mimizuku.core.spool import Spool, SpoolError, SpoolFull


def _fill(directory, n, size=64):
    """``n`` items laid down directly (as a long outage would leave them), quickly."""
    directory.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"x": "y" * size}).encode()
    for i in range(n):
        (directory / f"{i:020d}-0000001-000000-aaaaaa.json").write_bytes(body)
    return len(body)


def test_put_does_not_list_the_directory_whatever_its_size(tmp_path, monkeypatch):
    """2,000 puts into a spool of 20,000 items: one scan (the first use), then none; the old put
    listed and sorted the whole directory each time (minutes here)."""
    d = tmp_path / "alerts"
    _fill(d, 20_000)
    sp = Spool(d)
    listings = []
    real_listdir, real_scandir = os.listdir, os.scandir
    monkeypatch.setattr(os, "listdir", lambda p=".": listings.append(p) or real_listdir(p))
    monkeypatch.setattr(os, "scandir", lambda p=".": listings.append(p) or real_scandir(p))
    t0 = time.monotonic()
    for i in range(2000):
        sp.put({"i": i})
    elapsed = time.monotonic() - t0
    assert len(listings) <= 1, f"{len(listings)} listings of the spool for 2,000 puts"
    # each put still fsyncs (about 3 ms here, 7 s in all): the bound only catches the pathological
    assert elapsed < 60, f"2,000 puts took {elapsed:.1f} s"
    monkeypatch.undo()
    assert sp.usage()[0] == 22_000 == len(sp)


def test_the_count_follows_puts_acks_and_bad_items(tmp_path):
    sp = Spool(tmp_path / "s")
    paths = [sp.put({"i": i}) for i in range(5)]
    assert sp.usage() == (5, sum(p.stat().st_size for p in paths))
    Spool.ack(paths[0])
    Spool.ack(paths[0])                      # twice (two consumers): counted out once
    paths[1].write_bytes(b"{" * paths[1].stat().st_size)   # not JSON any more (same size)
    assert Spool.load(paths[1]) is spool_mod.MISSING
    assert sp.usage() == (3, sum(p.stat().st_size for p in paths[2:]))


def test_the_spool_is_bounded_by_bytes_and_refuses_with_a_clear_error(tmp_path):
    sp = Spool(tmp_path / "s", max_bytes=1000)
    n = 0
    with pytest.raises(SpoolFull) as e:
        while True:
            sp.put({"pad": "z" * 90})
            n += 1
    assert 0 < n <= 10 and "bytes" in str(e.value) and "full" in str(e.value)
    assert sum(p.stat().st_size for p in sp.paths()) <= 1000
    assert isinstance(e.value, SpoolError)   # callers that handle SpoolError keep working
    Spool.ack(sp.paths()[0])                 # room again
    sp.put({"pad": "z" * 90})


def test_a_wrong_counter_is_corrected_by_a_scan_before_refusing(tmp_path):
    sp = Spool(tmp_path / "s", max_items=3)
    for i in range(3):
        sp.put({"i": i})
    for p in sp.paths():                     # removed behind the counter's back (by hand)
        p.unlink()
    sp.put({"i": "fits"})                    # the counter said full: a scan says otherwise
    assert sp.usage()[0] == 1
    (tmp_path / "s" / ".usage").write_bytes(b"garbage")
    assert sp.usage()[0] == 1                # unreadable counter: rebuilt


def _no_partial_files(d):
    return [n for n in os.listdir(d) if n.startswith(".tmp-")]


def test_a_short_write_is_completed(tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])))   # 7 bytes a call
    sp = Spool(tmp_path / "s")
    p = sp.put({"alert": "x" * 100})
    monkeypatch.undo()
    assert json.loads(p.read_bytes()) == {"alert": "x" * 100}


def test_a_write_that_writes_nothing_fails_instead_of_looping(tmp_path, monkeypatch):
    calls = []

    def nothing(fd, data):
        calls.append(1)
        if len(calls) > 1000:                 # the old loop never ended: fail the test instead
            raise AssertionError("write_all kept calling write(2)")
        return 0

    sp = Spool(tmp_path / "s")
    monkeypatch.setattr(os, "write", nothing)
    with pytest.raises(SpoolError):
        sp.put({"a": 1})
    monkeypatch.undo()
    assert not sp.paths() and not _no_partial_files(tmp_path / "s") and sp.usage() == (0, 0)


def test_a_write_that_claims_more_than_it_wrote_is_caught_before_the_rename(tmp_path, monkeypatch):
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[: len(data) // 2])) and len(data))
    sp = Spool(tmp_path / "s")
    with pytest.raises(SpoolError) as e:
        sp.put({"alert": "x" * 100})
    monkeypatch.undo()
    assert "bytes reached the disk" in str(e.value)
    assert not sp.paths() and not _no_partial_files(tmp_path / "s")


def test_enospc_raises_and_leaves_nothing(tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    sp = Spool(tmp_path / "s")
    monkeypatch.setattr(os, "write", full)
    with pytest.raises(SpoolError) as e:
        sp.put({"a": 1})
    monkeypatch.undo()
    assert "No space left" in str(e.value)
    assert not sp.paths() and not _no_partial_files(tmp_path / "s") and sp.usage() == (0, 0)


def test_an_unreadable_item_is_set_aside_and_logged(tmp_path, caplog):
    sp = Spool(tmp_path / "s")
    good = sp.put({"a": 1})
    bad = sp.put({"b": 2})
    bad.write_bytes(b'{"b": 2, "trunc')
    said = []
    assert [obj for _, obj in Spool(sp.directory, log=lambda lvl, msg: said.append((lvl, msg))).items()] == [{"a": 1}]
    assert bad.with_suffix(".bad").exists() and good.exists()
    assert said and said[0][0] == "error" and str(bad.with_suffix(".bad")) in said[0][1]
    # without a log callable it goes to the logging module
    again = sp.put({"c": 3})
    again.write_bytes(b"\xff")
    with caplog.at_level(logging.WARNING, logger="mimizuku.spool"):
        assert Spool.load(again) is spool_mod.MISSING
    assert str(again.with_suffix(".bad")) in caplog.text


# --- the integratord call when the alert spool cannot take the alert (item 11, item 13) -----------

def _full_disk_under(monkeypatch, *parts):
    """``write(2)`` fails with ENOSPC for files under ``<spool>/<part>`` (found by the fd's path),
    and works for everything else (the log, analysisd's socket)."""
    real = os.write

    def write(fd, data):
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            where = ""
        if any(f"/spool/{p}/" in where for p in parts):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_the_call_reports_a_spool_it_cannot_write_and_what_became_of_the_alert(tmp_path, monkeypatch):
    from integration_fakes import fake_scorer
    from test_integration import Env, alert

    from mimizuku.integratord import call as it

    if not os.path.exists("/proc/self/fd"):
        pytest.skip("needs /proc")
    env = Env(tmp_path)
    _full_disk_under(monkeypatch, "alerts")
    # scored without a safety copy: exit 0, the failure said once in the log
    from wazuh_emulation import FakeAnalysisd

    with FakeAnalysisd(env.queue) as fa:
        assert env.call(alert(0.97), scorer=fake_scorer) == it.EXIT_OK
        assert len(fa.receive(wait=1)) == 1
    assert "cannot write to spool" in env.log() and "No space left" in env.log()
    assert not [n for n in os.listdir(env.spool / "alerts") if not n.startswith(".")]   # nothing truncated
    # neither kept nor scored: exit 5, said so
    def no_model(alerts, opts):
        raise it.ModelMissing("no trained model yet")

    assert env.call(alert(0.97, id="2"), scorer=no_model) == it.EXIT_LOST
    assert "alert 2 lost: it could neither be kept nor scored" in env.log()
    # scored, but its event could be kept neither (analysisd down, event spool full): the log
    # says it was scored and that the event is what is lost, not "alert lost"
    _full_disk_under(monkeypatch, "alerts", "events")
    assert env.call(alert(0.97, id="3"), scorer=fake_scorer) == it.EXIT_LOST
    log = env.log()
    assert "alert 3 scored, but its event can neither be sent nor kept" in log
    assert "alert 3 scored, but neither it (alert spool) nor its event (event spool) could be kept" in log
    assert "alert 3 lost" not in log


def test_an_item_json_cannot_hold_is_refused_with_a_spool_error(tmp_path):
    deep = {"leaf": 1}
    for _ in range(5000):
        deep = {"d": deep}
    sp = Spool(tmp_path / "s")
    for item in (deep, {"x": object()}, {"x": {1, 2}}):
        with pytest.raises(spool_mod.UnstorableItem) as e:
            sp.put(item)
        assert isinstance(e.value, SpoolError)
    assert not sp.paths() and sp.usage() == (0, 0)


def test_an_item_too_big_to_be_ours_is_set_aside_unread(tmp_path, monkeypatch):
    """A member of the group that writes the spool can drop any file there: one far larger than
    any item the spool writes is set aside as *.bad (logged), never read into memory whole."""
    monkeypatch.setattr(spool_mod, "MAX_ITEM_BYTES", 1024)
    sp = Spool(tmp_path / "s")
    p = sp.put({"x": "a" * 2000})
    small = sp.put({"x": "b"})
    logged = []
    assert Spool.load(p, log=lambda level, msg: logged.append(msg)) is spool_mod.MISSING
    assert p.with_suffix(".bad").exists() and "over 1024 bytes" in logged[0]
    assert Spool.load(small) == {"x": "b"}


def test_an_item_no_decoder_takes_is_set_aside_unless_the_caller_quarantines(tmp_path):
    """JSON nested past the parser (RecursionError, not ValueError) in an event or document spool
    is set aside as *.bad like any unreadable item, so a planted file cannot stop every drain; the
    alert spool's readers (the call, the scorer) ask for it raised, and quarantine the alert."""
    sp = Spool(tmp_path / "s")
    p = sp.put({"x": 1})
    p.write_bytes(b'{"d":' * 100_000 + b"1" + b"}" * 100_000)
    with pytest.raises(RecursionError):
        Spool.load(p, quarantines=True)
    assert p.exists()
    logged = []
    assert Spool.load(p, log=lambda level, msg: logged.append(msg)) is spool_mod.MISSING
    assert p.with_suffix(".bad").exists() and "cannot be decoded (RecursionError" in logged[0]
