"""Model directories: round trip, tamper/permission/ownership refusals, atomic replacement."""
from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import joblib
import numpy as np
import pytest
from pickled_model import write_pickled_model

from mimizuku.store import model_dir as persistence
from mimizuku.store.model_dir import (
    FORMAT_VERSION,
    ModelError,
    ModelFormatWarning,
    ModelIntegrityError,
    ModelNotFoundError,
    ModelSecurityError,
    ModelVersionError,
    load_model_dir,
    read_manifest,
    save_model_dir,
    verify_model_dir,
)

NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown files to another user")


def _touch(path):
    """Called on unpickling a Booby: leaves a marker proving the pickle was loaded."""
    Path(path).write_text("unpickled")
    return "booby"


class Booby:
    """An object whose unpickling has a visible side effect."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


@pytest.fixture
def lof():
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(0)
    return LocalOutlierFactor(n_neighbors=5, novelty=True).fit(rng.normal(size=(40, 3)))


@pytest.fixture
def model(tmp_path):
    directory = tmp_path / "model"
    save_model_dir(directory, {"fim": {"a": 1, "b": [1, 2, 3]}, "context": np.arange(10)},
                   {"thresholds": {"fim": 1.5}, "counts": {"fim": 40}})
    return directory


def _rewrite_manifest(directory, change):
    path = Path(directory) / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _flip_byte(path, offset=-1):
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0x01
    Path(path).write_bytes(bytes(data))


# ---------------------------------------------------------------------------- round trip


def test_round_trip_of_plain_data_and_arrays(tmp_path):
    directory = tmp_path / "m"
    meta = {"training_window": ["2024-01-01", "2024-01-31"], "counts": {"fim": 40},
            "thresholds": {"fim": 1.25}}
    key = ("web-01", ("w:etc", "dir:/etc"), "modified")
    fim = {"ref_keys_": [key, key], "counts": {key: 3, ("x",): 1}, "agents": frozenset({"a", "b"}),
           "users": {"root"}, "X": np.arange(12, dtype=np.float32).reshape(3, 4), "k": np.int64(5),
           "scale": np.float64(0.25), "nan": float("nan"), "big": 2 ** 70}
    written = save_model_dir(directory, {"fim": fim, "info": {"k": [1, 2]}}, meta)

    objects, manifest = load_model_dir(directory)
    assert manifest == written
    assert set(objects) == {"fim", "info"}
    assert objects["info"] == {"k": [1, 2]}
    got = objects["fim"]
    assert got["ref_keys_"] == [key, key] and got["ref_keys_"][0] is got["ref_keys_"][1]  # shared once
    assert got["counts"] == {key: 3, ("x",): 1} and got["agents"] == frozenset({"a", "b"})
    assert got["users"] == {"root"} and got["big"] == 2 ** 70 and got["nan"] != got["nan"]
    assert got["X"].dtype == np.float32
    np.testing.assert_array_equal(got["X"], fim["X"])
    assert type(got["k"]) is np.int64 and got["k"] == 5 and type(got["scale"]) is np.float64

    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["thresholds"] == {"fim": 1.25}
    assert manifest["training_window"] == ["2024-01-01", "2024-01-31"]
    import sklearn

    assert manifest["libraries"]["scikit-learn"] == sklearn.__version__
    assert set(manifest["libraries"]) >= {"mimizuku", "scikit-learn", "numpy", "scipy", "pandas",
                                          "joblib", "python"}
    assert sorted(manifest["files"]) == ["fim.json", "fim.npz", "info.json", "info.npz"]
    for fname in manifest["files"]:
        import hashlib

        data = (directory / fname).read_bytes()
        assert manifest["files"][fname] == {"sha256": hashlib.sha256(data).hexdigest(),
                                            "bytes": len(data)}
    assert manifest["created"].endswith("+00:00")


def test_a_fitted_scikit_learn_object_is_refused_before_writing(tmp_path, lof):
    """Only plain data and the caller's trusted classes are written: a LocalOutlierFactor is
    neither, and nothing is left behind."""
    with pytest.raises(ValueError, match="'fim' cannot be saved: .*LocalOutlierFactor is not plain data"):
        save_model_dir(tmp_path / "m", {"fim": lof, "info": {"k": [1, 2]}})
    assert list(tmp_path.iterdir()) == []


def test_modes_and_manifest_on_disk(model):
    assert stat.S_IMODE(model.stat().st_mode) == 0o750
    for entry in model.iterdir():
        assert stat.S_IMODE(entry.stat().st_mode) == 0o640, entry
    assert read_manifest(model) == json.loads((model / "manifest.json").read_text())
    assert verify_model_dir(model)["counts"] == {"fim": 40}


def test_load_selected_names(model):
    objects, _ = load_model_dir(model, names=["context"])
    assert list(objects) == ["context"]
    np.testing.assert_array_equal(objects["context"], np.arange(10))
    with pytest.raises(ModelNotFoundError, match="no detector 'commands'"):
        load_model_dir(model, names=["commands"])


def test_group_option_sets_group(tmp_path):
    gid = os.getegid()
    directory = tmp_path / "g"
    save_model_dir(directory, {"a": 1}, group=gid)
    assert directory.stat().st_gid == gid
    assert (directory / "a.json").stat().st_gid == gid and (directory / "a.npz").stat().st_gid == gid


@pytest.mark.parametrize("bad", ["Fim", "../x", "", "a.b", "a-b", "x/y"])
def test_bad_object_names_rejected(tmp_path, bad):
    with pytest.raises(ValueError, match="must match"):
        save_model_dir(tmp_path / "m", {bad: 1})
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("key", ["files", "format_version", "libraries", "created"])
def test_reserved_manifest_keys_rejected(tmp_path, key):
    with pytest.raises(ValueError, match="reserved"):
        save_model_dir(tmp_path / "m", {"a": 1}, {key: "x"})


def test_numpy_values_in_manifest_become_json(tmp_path):
    written = save_model_dir(tmp_path / "m", {"a": 1},
                             {"thresholds": {"fim": np.float32(0.5)}, "counts": np.array([1, 2])})
    assert written["thresholds"] == {"fim": 0.5} and written["counts"] == [1, 2]
    assert load_model_dir(tmp_path / "m")[1] == written


def test_unserialisable_manifest_rejected_before_writing(tmp_path):
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_model_dir(tmp_path / "m", {"a": 1}, {"threshold": float("nan")})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        save_model_dir(tmp_path / "m", {"a": 1}, {"when": object()})
    assert list(tmp_path.iterdir()) == []


def test_empty_objects_rejected(tmp_path):
    with pytest.raises(ValueError):
        save_model_dir(tmp_path / "m", {})


# ---------------------------------------------------------------------------- tampering


def test_unpickling_side_effect_happens_for_untampered_model(tmp_path):
    """Control for the tamper tests: loading this (pickled, format 1) model really does run the
    marker code."""
    marker = tmp_path / "marker"
    write_pickled_model(tmp_path / "m", {"a": Booby(marker), "b": {"x": 1}})
    verify_model_dir(tmp_path / "m")
    assert not marker.exists()  # verify never unpickles
    with pytest.warns(ModelFormatWarning, match="pickled format 1.*mimizuku 1.1 no longer loads it"):
        objects, _ = load_model_dir(tmp_path / "m")
    assert objects["a"] == "booby"
    assert marker.exists()


@pytest.mark.parametrize("tampered", ["a.joblib", "b.joblib"])
def test_flipped_byte_refused_before_any_unpickling(tmp_path, tampered):
    marker = tmp_path / "marker"
    directory = tmp_path / "m"
    write_pickled_model(directory, {"a": Booby(marker), "b": {"x": list(range(50))}})
    _flip_byte(directory / tampered, offset=len((directory / tampered).read_bytes()) // 2)
    with pytest.raises(ModelIntegrityError, match=f"checksum mismatch for .*{tampered}"):
        load_model_dir(directory)
    assert not marker.exists()


def test_truncated_file_refused(model):
    path = model / "fim.npz"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(ModelIntegrityError, match="bytes, the manifest says"):
        load_model_dir(model)


def test_missing_directory(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model directory"):
        load_model_dir(tmp_path / "nope")
    with pytest.raises(ModelNotFoundError):
        read_manifest(tmp_path / "nope")


def test_missing_manifest(model):
    (model / "manifest.json").unlink()
    with pytest.raises(ModelNotFoundError, match="manifest.json is missing"):
        load_model_dir(model)
    with pytest.raises(ModelNotFoundError):
        read_manifest(model)


def test_listed_file_missing(model):
    (model / "context.npz").unlink()
    with pytest.raises(ModelIntegrityError, match="context.npz is listed in the manifest but missing"):
        load_model_dir(model)


@pytest.mark.parametrize("extra", ["evil.joblib", "evil.pkl", "Evil.PICKLE", "x.joblib.gz", "m.sav", "evil.npz",
                                   "evil.json", "evil.npy"])
def test_unlisted_pickle_refused(model, extra):
    joblib.dump({"evil": True}, model / extra)
    os.chmod(model / extra, 0o640)
    with pytest.raises(ModelIntegrityError, match="not listed in its manifest"):
        load_model_dir(model)


@pytest.mark.parametrize("extra", ["README.txt", "notes.saved.txt", "plot.png"])
def test_unlisted_non_pickle_file_tolerated(model, extra):
    (model / extra).write_text("notes")
    os.chmod(model / extra, 0o640)
    objects, _ = load_model_dir(model)
    assert objects["fim"]["a"] == 1


def test_malformed_manifest_json(model):
    (model / "manifest.json").write_text('{"format_version": 1, "files": ')
    with pytest.raises(ModelIntegrityError, match="not valid JSON"):
        load_model_dir(model)
    with pytest.raises(ModelIntegrityError):
        read_manifest(model)


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(files={"../../etc/evil.joblib": {"sha256": "0" * 64, "bytes": 1}}),
     "not of the form"),
    (lambda m: m.update(files=[]), "'files' must be an object"),
    (lambda m: m["files"]["fim.npz"].update(sha256="xyz"), "sha256"),
    (lambda m: m["files"]["fim.json"].update(bytes=-1), "size"),
    (lambda m: m["files"].update({"evil.joblib": m["files"]["fim.json"]}), "not of the form <name>.json or"),
    (lambda m: m["files"].pop("fim.npz"), "object 'fim' lacks fim.npz"),
    (lambda m: m.pop("format_version"), "format_version"),
    (lambda m: m.update(format_version="1"), "format_version"),
    (lambda m: m.update(libraries=None), "libraries"),
])
def test_malformed_manifest_shape(model, change, message):
    _rewrite_manifest(model, change)
    with pytest.raises(ModelIntegrityError, match=message):
        load_model_dir(model)


def test_manifest_not_an_object(model):
    (model / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ModelIntegrityError, match="not a JSON object"):
        read_manifest(model)


def test_unknown_format_version(model):
    _rewrite_manifest(model, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ModelVersionError, match=f"format_version {FORMAT_VERSION + 1}"):
        load_model_dir(model)
    with pytest.raises(ModelVersionError):
        read_manifest(model)


def test_sklearn_version_mismatch(model):
    import sklearn

    _rewrite_manifest(model, lambda m: m["libraries"].update({"scikit-learn": "0.0.1"}))
    with pytest.raises(ModelVersionError) as info:
        load_model_dir(model)
    message = str(info.value)
    assert "0.0.1" in message and sklearn.__version__ in message and "mimizuku train" in message
    with pytest.raises(ModelVersionError):
        verify_model_dir(model)
    objects, manifest = load_model_dir(model, check_versions=False)
    assert objects["fim"]["b"] == [1, 2, 3]
    assert manifest["libraries"]["scikit-learn"] == "0.0.1"


def test_errors_share_base_class():
    for cls in (ModelNotFoundError, ModelIntegrityError, ModelSecurityError, ModelVersionError):
        assert issubclass(cls, ModelError)


# ---------------------------------------------------------------------------- permissions


@pytest.mark.parametrize("target", ["fim.npz", "fim.json", "manifest.json", "."])
@pytest.mark.parametrize("bits", [stat.S_IWGRP, stat.S_IWOTH])
def test_group_or_other_writable_refused(model, target, bits):
    path = model / target
    os.chmod(path, stat.S_IMODE(path.stat().st_mode) | bits)
    with pytest.raises(ModelSecurityError, match="writable by group or others"):
        load_model_dir(model)
    with pytest.raises(ModelSecurityError):
        verify_model_dir(model)


def test_sticky_bit_does_not_excuse_a_writable_model_directory(model):
    os.chmod(model, 0o1777)
    with pytest.raises(ModelSecurityError, match="writable by group or others"):
        load_model_dir(model)


def test_other_writable_parent_refused_unless_sticky(tmp_path):
    parent = tmp_path / "shared"
    parent.mkdir()
    save_model_dir(parent / "m", {"a": 1})
    os.chmod(parent, 0o777)
    with pytest.raises(ModelSecurityError, match=f"{parent} is writable by group or others"):
        load_model_dir(parent / "m")
    os.chmod(parent, 0o1777)  # sticky, like /tmp: others cannot replace root's entries
    assert load_model_dir(parent / "m")[0] == {"a": 1}


def test_read_manifest_does_not_check_permissions(model):
    os.chmod(model / "manifest.json", 0o666)
    assert read_manifest(model)["counts"] == {"fim": 40}


@needs_root
@pytest.mark.parametrize("target", ["fim.npz", "fim.json", "manifest.json", "."])
def test_owned_by_other_user_refused_for_root(model, target):
    os.chown(model / target, NOBODY, -1)
    with pytest.raises(ModelSecurityError, match=f"owned by uid {NOBODY}"):
        load_model_dir(model)
    # the caller may explicitly trust that user
    objects, _ = load_model_dir(model, trusted_owner_uids={NOBODY})
    assert objects["fim"]["a"] == 1


@needs_root
def test_parent_owned_by_other_user_refused(tmp_path):
    parent = tmp_path / "home"
    parent.mkdir()
    save_model_dir(parent / "m", {"a": 1})
    os.chown(parent, NOBODY, -1)
    with pytest.raises(ModelSecurityError, match=f"{parent} is owned by uid {NOBODY}"):
        load_model_dir(parent / "m")


def test_trusted_uids_policy(monkeypatch):
    monkeypatch.setattr(persistence.os, "geteuid", lambda: 0)
    assert persistence.trusted_uids(None) == {0}
    monkeypatch.setattr(persistence.os, "geteuid", lambda: 1000)
    assert persistence.trusted_uids(None) == {0, 1000}
    assert persistence.trusted_uids({42}) == {0, 42}


# ---------------------------------------------------------------------------- symlinks


def test_symlink_swapped_in_for_model_file_refused(model, tmp_path):
    elsewhere = tmp_path / "elsewhere.npz"
    elsewhere.write_bytes((model / "fim.npz").read_bytes())  # same bytes, same checksum
    os.chmod(elsewhere, 0o640)
    (model / "fim.npz").unlink()
    (model / "fim.npz").symlink_to(elsewhere)
    with pytest.raises(ModelSecurityError, match="symbolic link"):
        load_model_dir(model)


def test_symlinked_manifest_refused(model, tmp_path):
    copy = tmp_path / "manifest-copy.json"
    copy.write_bytes((model / "manifest.json").read_bytes())
    (model / "manifest.json").unlink()
    (model / "manifest.json").symlink_to(copy)
    with pytest.raises(ModelSecurityError, match="symbolic link"):
        load_model_dir(model)


def test_directory_reached_through_trusted_symlink(model, tmp_path):
    link = tmp_path / "current"
    link.symlink_to("model")  # relative target
    assert load_model_dir(link)[0]["fim"]["a"] == 1
    nested = tmp_path / "sub"
    nested.mkdir()
    (nested / "up").symlink_to("../model")
    assert load_model_dir(nested / "up")[0]["fim"]["a"] == 1


@needs_root
def test_directory_symlink_owned_by_other_user_refused(model, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(model)
    os.lchown(link, NOBODY, -1)
    with pytest.raises(ModelSecurityError, match="symbolic link"):
        load_model_dir(link)


# ---------------------------------------------------------------------------- atomic replace


def _siblings(directory):
    return sorted(p.name for p in Path(directory).parent.iterdir() if p.name.startswith("."))


def test_save_over_existing_model_replaces_it(model):
    save_model_dir(model, {"fim": {"a": 2}}, {"counts": {"fim": 7}})
    objects, manifest = load_model_dir(model)
    assert objects == {"fim": {"a": 2}}  # old 'context' file is gone with the old directory
    assert manifest["counts"] == {"fim": 7}
    assert _siblings(model) == []


def test_fallback_swap_without_rename_exchange(model, monkeypatch):
    monkeypatch.setattr(persistence, "rename_exchange", lambda *a: False)
    save_model_dir(model, {"fim": {"a": 3}})
    assert load_model_dir(model)[0] == {"fim": {"a": 3}}
    assert _siblings(model) == []


def test_reader_sees_complete_new_model_right_after_swap(model, monkeypatch):
    """At the moment the old directory is being deleted, the path already holds the new model."""
    seen = []
    real_rmtree = shutil.rmtree

    def spy(path, *args, **kwargs):
        if Path(path) != model:
            seen.append(load_model_dir(model)[0])
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", spy)
    save_model_dir(model, {"fim": {"a": 4}})
    assert {"fim": {"a": 4}} in seen


def test_crash_mid_save_keeps_old_model(model, monkeypatch):
    real_create = persistence._create_file
    calls = []

    def failing_create(path, gid):
        calls.append(path.name)
        if len(calls) == 3:   # the second object's first file
            raise OSError("disk full (simulated)")
        return real_create(path, gid)

    monkeypatch.setattr(persistence, "_create_file", failing_create)
    with pytest.raises(OSError, match="simulated"):
        save_model_dir(model, {"fim": {"a": 99}, "context": np.zeros(3)})
    assert calls == ["fim.json", "fim.npz", "context.json"]
    objects, manifest = load_model_dir(model)
    assert objects["fim"] == {"a": 1, "b": [1, 2, 3]}
    assert manifest["counts"] == {"fim": 40}
    assert _siblings(model) == []


def test_leftovers_of_a_hard_crash_are_cleaned_by_next_save(model):
    leftover = model.parent / ".model.tmp-deadbeef"
    leftover.mkdir()
    (leftover / "fim.joblib").write_bytes(b"partial")
    aside = model.parent / ".model.old-cafe"
    aside.mkdir()
    unrelated = model.parent / ".other.tmp-1"
    unrelated.mkdir()
    save_model_dir(model, {"fim": 5})
    assert _siblings(model) == [".other.tmp-1"]
    assert load_model_dir(model)[0] == {"fim": 5}


def test_refuses_to_replace_non_model_directory(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "data.txt").write_text("keep me")
    with pytest.raises(ModelError, match="not a model directory"):
        save_model_dir(precious, {"a": 1})
    assert (precious / "data.txt").read_text() == "keep me"
    assert _siblings(precious) == []


def test_refuses_to_replace_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ModelError, match="not a directory"):
        save_model_dir(path, {"a": 1})
    assert path.read_text() == "x"


def test_saves_into_empty_existing_directory_and_creates_parents(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    save_model_dir(empty, {"a": 1})
    assert load_model_dir(empty)[0] == {"a": 1}
    deep = tmp_path / "x" / "y" / "m"
    save_model_dir(deep, {"a": 2})
    assert load_model_dir(deep)[0] == {"a": 2}


def test_missing_parents_created_without_group_write(tmp_path):
    old = os.umask(0o002)
    try:
        save_model_dir(tmp_path / "x" / "y" / "m", {"a": 1})
    finally:
        os.umask(old)
    for d in (tmp_path / "x", tmp_path / "x" / "y"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o755
    assert load_model_dir(tmp_path / "x" / "y" / "m")[0] == {"a": 1}


def test_save_through_symlink_replaces_target(model, tmp_path):
    link = tmp_path / "current"
    link.symlink_to(model)
    save_model_dir(link, {"fim": 6})
    assert link.is_symlink()
    assert load_model_dir(model)[0] == {"fim": 6}


@pytest.mark.skipif(not os.uname().sysname == "Linux", reason="renameat2 is Linux-only")
def test_rename_exchange_swaps_two_directories(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "from_a").touch()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "from_b").touch()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        swapped = persistence.rename_exchange(fd, "a", "b")
    finally:
        os.close(fd)
    if not swapped:
        pytest.skip("renameat2(RENAME_EXCHANGE) unsupported here; the fallback is tested above")
    assert os.listdir(tmp_path / "a") == ["from_b"]
    assert os.listdir(tmp_path / "b") == ["from_a"]
