"""Model versions: the current pointer, rollback, keep-last-K, leftovers, the lock (no training)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from mimizuku.store.model_dir import ModelError, load_model_dir, save_model_dir
from mimizuku.store.versions import (
    Locked,
    ModelStore,
    RunLock,
    VersionError,
    current_version,
    resolve_model_dir,
    run_rollback,
)


def _make(store: ModelStore, v: str, install: bool = True) -> str:
    """A small real model directory (persistence format) as version ``v``."""
    store.ensure()
    save_model_dir(store.version_dir(v), {"payload": {"version": v}}, {"model_version": v}, group=store.group())
    if install:
        store.install(v)
    return v


V = [f"20261121T02300{i}Z-00000{i}" for i in range(8)]


def test_install_switches_an_atomic_relative_symlink(tmp_path):
    s = ModelStore(tmp_path / "models")
    assert resolve_model_dir(s.root) == s.root and current_version(s.root) is None
    _make(s, V[0])
    assert os.readlink(s.current_link) == f"versions/{V[0]}"
    assert resolve_model_dir(s.root) == s.root / "current"
    objects, manifest = load_model_dir(resolve_model_dir(s.root))
    assert objects["payload"] == {"version": V[0]} and manifest["model_version"] == V[0]
    assert _make(s, V[1]) and current_version(s.root) == V[1]
    assert s.history()["installed"] == [V[0], V[1]]
    assert not [p for p in s.root.iterdir() if p.name.startswith(".current.tmp-")]
    # the root and versions/ are not writable by group/others (the loader would refuse them)
    for d in (s.root, s.versions_dir, s.versions_dir / V[1]):
        assert d.stat().st_mode & 0o022 == 0


def test_install_refuses_incomplete_or_hostile_versions(tmp_path):
    s = ModelStore(tmp_path / "models")
    s.ensure()
    (s.versions_dir / V[0]).mkdir()  # no manifest
    with pytest.raises(VersionError, match="not a complete model"):
        s.install(V[0])
    for bad in ("../x", ".hidden", "a/b", "", "x" * 65, "current\n"):
        with pytest.raises(VersionError, match="invalid model version"):
            s.install(bad)
    assert current_version(s.root) is None


def test_readers_always_see_a_complete_version_while_current_moves(tmp_path):
    s = ModelStore(tmp_path / "models")
    for v in V[:3]:
        _make(s, v)
    errors, loads = [], [0]
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            try:
                objects, manifest = load_model_dir(resolve_model_dir(s.root))
                assert objects["payload"]["version"] == manifest["model_version"]
                loads[0] += 1
            except Exception as e:  # pragma: no cover - the failure being tested for
                errors.append(repr(e))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(150):
            s.install(V[i % 3])
    finally:
        stop.set()
        t.join()
    assert errors == [] and loads[0] > 0


def test_rollback_walks_back_and_skips_what_it_left(tmp_path):
    s = ModelStore(tmp_path / "models")
    for v in V[:4]:
        _make(s, v)
    assert s.previous_version() == V[2]
    assert s.rollback() == (V[3], V[2])
    assert s.rollback() == (V[2], V[1])  # rollback, rollback walks back
    assert s.history()["retired"] == [V[2], V[3]]
    _make(s, V[4])  # a new model after rolling back
    assert s.previous_version() == V[1]  # not the versions rolled back from
    assert s.rollback(V[3]) == (V[4], V[3])  # explicit target: allowed, and no longer retired
    assert V[3] not in s.history()["retired"]
    with pytest.raises(VersionError, match="no model version"):
        s.rollback("20990101T000000Z-ffffff")
    assert [e["action"] for e in s.history()["log"]][-4:] == ["rollback", "rollback", "install", "rollback"]


def test_rollback_verifies_the_target(tmp_path):
    s = ModelStore(tmp_path / "models")
    _make(s, V[0])
    _make(s, V[1])
    f = s.versions_dir / V[0] / "payload.json"
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x55
    f.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch"):
        s.rollback()
    assert current_version(s.root) == V[1]
    os.chmod(s.versions_dir / V[0], 0o777)  # writable by others: a pickle someone could plant
    with pytest.raises(ModelError):
        s.rollback(V[0])
    assert current_version(s.root) == V[1]


def test_prune_keeps_the_last_k_installed_and_the_current(tmp_path):
    s = ModelStore(tmp_path / "models")
    for v in V[:6]:
        _make(s, v)
    assert s.prune(3) == V[:3]
    assert s.versions() == V[3:6]
    s.rollback(V[3])  # current is now the oldest kept one
    assert s.prune(1) == [V[4]]  # V[5] is the last installed, V[3] is current
    assert current_version(s.root) == V[3]
    assert s.versions() == [V[3], V[5]]
    with pytest.raises(ValueError):
        s.prune(0)


def test_clean_leftovers_of_killed_runs(tmp_path):
    s = ModelStore(tmp_path / "models")
    _make(s, V[0])
    # what a run killed at each point leaves behind
    (s.versions_dir / f".{V[1]}.tmp-abc123").mkdir()  # killed inside persistence's save
    (s.versions_dir / f".{V[1]}.tmp-abc123" / "files.joblib").write_bytes(b"partial")
    _make(s, V[2], install=False)  # saved completely, killed before the switch
    os.symlink(f"versions/{V[2]}", s.root / ".current.tmp-999-abcdef")  # killed inside the switch
    (s.root / ".history.json.tmp-999-abcdef").write_text("{")
    assert current_version(s.root) == V[0]
    removed = s.clean_leftovers()
    assert sorted(removed) == sorted([f"versions/.{V[1]}.tmp-abc123", f"versions/{V[2]}",
                                      ".current.tmp-999-abcdef", ".history.json.tmp-999-abcdef"])
    assert s.versions() == [V[0]] and current_version(s.root) == V[0]
    assert s.clean_leftovers() == []


def test_switch_recorded_after_a_kill_between_switch_and_history(tmp_path):
    s = ModelStore(tmp_path / "models")
    _make(s, V[0])
    _make(s, V[1], install=False)
    # what a run killed between the switch and the history write leaves: ``current`` (a relative
    # symlink, switched by one rename) already points to the new version
    os.symlink(f"versions/{V[1]}", s.root / "current.new")
    os.replace(s.root / "current.new", s.current_link)
    assert s.clean_leftovers() == []  # the current version is never an orphan
    assert current_version(s.root) == V[1]
    assert s.history()["installed"] == [V[0], V[1]]


def test_without_history_no_version_is_treated_as_orphan(tmp_path):
    s = ModelStore(tmp_path / "models")
    _make(s, V[0])
    _make(s, V[1], install=False)
    s.history_path.unlink()
    assert s.clean_leftovers() == []
    assert s.versions() == [V[0], V[1]]


def test_lock_is_exclusive_and_says_who_holds_it(tmp_path):
    s = ModelStore(tmp_path / "models")
    with s.lock("retrain"):
        with pytest.raises(Locked, match=rf"retrain, pid {os.getpid()}"):
            RunLock(s.root / ".lock").acquire()
        # another process too (flock locks belong to open file descriptions)
        code = subprocess.run([sys.executable, "-c", (
            "import sys; from mimizuku.store.versions import ModelStore, Locked\n"
            f"try:\n ModelStore({str(s.root)!r}).lock().acquire()\nexcept Locked: sys.exit(6)\n")]).returncode
        assert code == 6
    with s.lock():  # released
        pass


def test_adopts_a_plain_model_directory(tmp_path):
    root = tmp_path / "models"
    save_model_dir(root, {"payload": {"version": "plain"}}, {"model_version": V[5]})
    s = ModelStore(root)
    assert resolve_model_dir(root) == root  # read as it is until adopted
    assert s.adopt_plain_model() == V[5]
    assert current_version(root) == V[5]
    assert not (root / "manifest.json").exists() and not (root / "payload.json").exists()
    objects, _ = load_model_dir(resolve_model_dir(root))
    assert objects["payload"] == {"version": "plain"}
    assert s.adopt_plain_model() is None


def test_rollback_cli_exit_codes(tmp_path, capsys):
    import argparse

    s = ModelStore(tmp_path / "models")

    def call(version=None, list_=False):
        return run_rollback(argparse.Namespace(version=version, wazuh_home="/nonexistent", model_dir=str(s.root),
                                               list=list_))

    assert call(list_=True) == 4
    _make(s, V[0])
    _make(s, V[1])
    assert call() == 0 and current_version(s.root) == V[0]
    assert "now " + V[0] in capsys.readouterr().out
    assert call() == 4
    assert call("../../../etc") == 4
    assert "invalid model version" in capsys.readouterr().err
    with s.lock("retrain"):
        assert call(V[1]) == 6
    assert call(list_=True) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("*  " + V[0])  # current
    assert lines[1].startswith(" r " + V[1])  # retired: left by the rollback
