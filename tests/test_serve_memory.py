"""What keeps the resident scorer's memory flat: every structure that grows with the alerts has a
cap (the handled-id window and its journal, the engine's memo caches), and the cyclic GC runs
where the scorer decides, so a replaced model is still freed. (The figures: bench/throughput.py.)"""
from __future__ import annotations

import functools
import gc
import json
import sys
import types
import weakref
from types import SimpleNamespace

import pytest
from test_serve_support import Daemon, Scratch, traffic, wait_until

from mimizuku.integratord import client
from mimizuku.serve.caches import EngineCaches, package_lru_caches
from mimizuku.serve.config import JOURNAL_NAME
from mimizuku.serve.handled import HandledIds


@pytest.fixture
def scratch():
    s = Scratch()
    s.install_version("v1")
    s.col = s.analysisd()
    yield s
    s.col.close()
    s.close()


def score(sock, alert):
    outcome, ans = client.deliver(str(sock), json.dumps(alert).encode(), 10.0)
    assert outcome == "acked", (outcome, ans)
    return json.loads(ans)["status"]


def journal_lines(path):
    n = 0
    for p in (path, path.with_name(path.name + ".1")):
        if p.exists():
            n += len(p.read_text().splitlines())
    return n


# --- the handled-id window and its journal --------------------------------------------------------

def test_handled_ids_window_and_two_generation_journal_stay_bounded(tmp_path):
    j = tmp_path / "handled.ids"
    window = 1000
    ids = [HandledIds.digest(f"1763000000.{i}") for i in range(5500)]
    h = HandledIds(j, window)
    for k in range(0, len(ids), 100):
        h.add(ids[k:k + 100])
        assert len(h) <= window
        assert journal_lines(j) <= 2 * window            # the journal is rotated, not appended forever
    assert (tmp_path / "handled.ids.1").exists()
    assert len(j.read_text().splitlines()) < window      # the live generation
    assert len(h) == window and ids[-window] in h and ids[-window - 1] not in h
    h.close()
    again = HandledIds(j, window)                  # a restart knows the same window
    assert len(again) == window and ids[-1] in again and ids[-window] in again and ids[-window - 1] not in again
    again.add(ids[-5:])                                  # re-adding known ids changes nothing in memory
    assert len(again) == window
    again.close()


def test_handled_ids_reads_a_single_file_journal_of_earlier_versions(tmp_path):
    j = tmp_path / "handled.ids"
    ids = [HandledIds.digest(f"old.{i}") for i in range(1500)]
    j.write_text("".join(f"{h:016x}\n" for h in ids))
    h = HandledIds(j, 1000)
    assert len(h) == 1000 and ids[-1] in h and ids[500] in h and ids[499] not in h
    h.close()


def test_exactly_once_holds_for_the_window_across_rotation_and_restart(scratch):
    cfg = scratch.config(dedupe_window=50)
    alerts = traffic(130, "w")
    d = Daemon(cfg)
    try:
        for a in alerts:
            assert score(cfg.socket, a) == "scored"
        assert len(scratch.col.wait_for(130, 10)) == 130
        assert len(d.server.scorer.handled) == 50
    finally:
        d.stop()
    assert (cfg.state_dir / (JOURNAL_NAME + ".1")).exists()   # rotated at least once
    d = Daemon(scratch.config(dedupe_window=50))
    try:
        for a in alerts[-50:]:                           # the last window: recognised after the restart
            assert score(cfg.socket, a) == "duplicate"
        assert score(cfg.socket, alerts[0]) == "scored"  # older than the window: documented as forgotten
    finally:
        d.stop()
    ids = scratch.col.ids()
    assert len(ids) == 131 and ids.count(alerts[0]["id"]) == 2
    assert all(ids.count(a["id"]) == 1 for a in alerts[1:])


# --- the engine's memo caches -----------------------------------------------------------------------

@pytest.fixture
def fake_package():
    pkg = types.ModuleType("mzfakepkg")
    sub = types.ModuleType("mzfakepkg.tokens")

    @functools.lru_cache(maxsize=100_000)
    def tokens(text):
        return tuple(text.split("/"))

    sub.tokens = tokens
    sys.modules["mzfakepkg"] = pkg
    sys.modules["mzfakepkg.tokens"] = sub
    yield tokens
    del sys.modules["mzfakepkg"], sys.modules["mzfakepkg.tokens"]


def test_engine_caches_cap_the_detectors_and_the_package_lru_caches(fake_package):
    tokens = fake_package
    caches = EngineCaches(100, package="mzfakepkg")
    model = SimpleNamespace(detectors_={"files": SimpleNamespace(_CACHE_MAX=200_000),
                                        "commands": SimpleNamespace(_CACHE_MAX=200_000)})
    caches.adopt(model)
    assert [d._CACHE_MAX for d in model.detectors_.values()] == [100, 100]
    assert list(caches.sizes().values()) == [0]
    for i in range(2000):                                # 20x the cap, trimmed every 10 (a batch)
        tokens(f"/tmp/{i}/x")
        if i % 10 == 9:
            caches.trim()
        assert tokens.cache_info().currsize <= 100 + 10
    assert caches.cleared >= 15
    assert tokens("/tmp/1999/x") == ("", "tmp", "1999", "x")   # still a working cache


def test_engine_caches_find_the_lru_caches_of_the_real_package():
    import mimizuku.core.fields as fields
    import mimizuku.engine.features as features

    found = {id(f) for f in package_lru_caches()}
    expected = [obj for mod in (features, fields) for obj in vars(mod).values()
                if callable(obj) and hasattr(obj, "cache_clear") and hasattr(obj, "cache_info")]
    assert expected and all(id(f) in found for f in expected)


def test_the_daemon_holds_every_engine_cache_to_its_cap(scratch):
    cap = 40
    d = Daemon(scratch.config(cache_entries=cap))
    try:
        sock = str(d.server.cfg.socket)
        for a in traffic(400, "c"):
            assert score(sock, a) == "scored"
        scorer = d.server.scorer
        dets = scorer.model.detectors_.values()
        assert all(det._CACHE_MAX == cap for det in dets)
        for det in dets:
            for name in ("_cache", "_nn_cache"):
                assert len(det.__dict__.get(name, {})) <= cap + 1
        lru = scorer.caches.lru_caches
        assert lru and all(f.cache_info().currsize <= cap + 10 for f in lru)
        # the cap did something: more distinct keys went through than it holds
        assert sum(f.cache_info().misses for f in lru) > cap and scorer.caches.cleared > 0
        st = d.server.status()["engine_caches"]
        assert st["max_entries"] == cap and st["cleared"] == scorer.caches.cleared
    finally:
        d.stop()


# --- the cyclic GC -----------------------------------------------------------------------------------

def test_automatic_gc_is_off_while_serving_and_restored_after(scratch):
    assert gc.isenabled()
    d = Daemon(scratch.config())
    try:
        assert not gc.isenabled()
        assert d.server.scorer.collections >= 1 and gc.get_freeze_count() > 0
    finally:
        d.stop()
    assert gc.isenabled()


def test_a_replaced_model_is_freed_even_if_it_holds_a_cycle(scratch):
    d = Daemon(scratch.config())
    try:
        old = d.server.scorer.model
        old._test_cycle = [old]          # frozen since its swap: only a collection that sees it frees it
        ref = weakref.ref(old)
        del old
        scratch.install_version("v2")
        d.server.request_reload()
        assert wait_until(lambda: d.server.model_version == "v2", 60)
        assert wait_until(lambda: ref() is None, 10)
    finally:
        d.stop()
