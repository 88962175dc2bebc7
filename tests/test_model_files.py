"""Model files that cannot run code when loaded, and a manifest that must agree with them
(issue 17, items 14 and 13).

Whoever can publish to the cluster (the key holder, or whoever took the training node) writes
model files every manager loads. Pickles would run their code there; the plain-data format
(``mimizuku.store.plain_state``) builds nothing but plain values, arrays and the trusted classes.
The crafted models below are re-checksummed and owned as a real publisher's would be: every
check before decoding passes, so only the format stands between them and the process.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import pickle

import alert_factory as F
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pickled_model import pickle_model

from mimizuku import Mimizuku
from mimizuku.engine.detectors.files import FileIntegrityDetector
from mimizuku.store import publication as ms
from mimizuku.store.model_dir import (
    FORMAT_VERSION,
    ModelError,
    ModelFormatWarning,
    ModelIntegrityError,
    load_model_dir,
    verify_model_dir,
)
from mimizuku.store.plain_state import PlainStateError, dump_state, load_state
from mimizuku.store.versions import ModelStore, current_version, resolve_model_dir


class Evil:
    """Unpickling it writes the marker file: the side effect that must never happen."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.fixture(scope="module")
def model():
    return Mimizuku().fit(F.normal_fleet(days=4))


@pytest.fixture(scope="module")
def alerts():
    return F.normal_fleet(days=1, seed=5) + [a for kind in F.attacks().values() for a in kind]


def _records(model, alerts):
    return [json.dumps(r, sort_keys=True) for r in model.score_records(alerts)]


def _rechecksum(directory):
    """What a publisher does after changing files: the manifest lists their new sums."""
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    for name in manifest["files"]:
        data = (directory / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    path.write_text(json.dumps(manifest))


def _craft(directory, marker):
    """Every model file but the JSON trees replaced by a pickle that writes ``marker`` when
    unpickled (whatever the format: joblib files of format 1 are pickles, and numpy reads a
    pickle given as an .npz when allowed to); the manifest re-checksummed."""
    manifest = json.loads((directory / "manifest.json").read_text())
    for name in manifest["files"]:
        if not name.endswith(".json"):
            (directory / name).write_bytes(pickle.dumps(Evil(marker)))
    _rechecksum(directory)


# --------------------------------------------------------------------------- the format itself


def test_round_trip_gives_identical_records(tmp_path, model, alerts):
    model.save_model(tmp_path / "m")
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["format_version"] == FORMAT_VERSION == 2
    assert sorted(manifest["files"]) == sorted(f"{n}.{s}" for n in ("files", "commands", "context")
                                               for s in ("json", "npz"))
    back = Mimizuku.load_model(tmp_path / "m")
    assert _records(back, alerts) == _records(model, alerts)
    assert sum(json.loads(r)["anomaly"] for r in _records(back, alerts)) > 0


def test_loading_a_model_unpickles_nothing(tmp_path, model, alerts, monkeypatch):
    """The files a model is saved to load with every way to unpickle disabled."""
    model.save_model(tmp_path / "m")
    import joblib

    def refuse(*a, **k):
        raise AssertionError("a model load unpickled something")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(joblib, "load", refuse)
    back = Mimizuku.load_model(tmp_path / "m")
    assert _records(back, alerts[:200]) == _records(model, alerts[:200])


def test_a_pickle_in_place_of_a_model_file_runs_nothing(tmp_path, model):
    model.save_model(tmp_path / "m")
    marker = tmp_path / "ran"
    _craft(tmp_path / "m", marker)
    verify_model_dir(tmp_path / "m")  # every check before decoding passes: sums, owners, modes
    with pytest.raises(ModelIntegrityError, match=r"refusing to load .*\.json: the arrays are not a readable \.npz.*pickled"):
        Mimizuku.load_model(tmp_path / "m")
    assert not marker.exists()


def test_an_object_array_in_the_npz_runs_nothing(tmp_path, model):
    model.save_model(tmp_path / "m")
    marker = tmp_path / "ran"
    target = tmp_path / "m" / "commands.npz"
    names = np.load(target, allow_pickle=False).files
    buf = io.BytesIO()
    np.savez(buf, **{n: np.array([Evil(marker)], dtype=object) for n in names})
    target.write_bytes(buf.getvalue())
    _rechecksum(tmp_path / "m")
    with pytest.raises(ModelIntegrityError, match="commands.json: an array cannot be read safely .*allow_pickle=False"):
        Mimizuku.load_model(tmp_path / "m")
    assert not marker.exists()


@pytest.mark.parametrize("node, message", [
    ({"O": "posix.system", "S": {}}, "class 'posix.system' is not among the trusted classes"),
    ({"O": "builtins.eval", "S": {"x": "1"}}, "class 'builtins.eval' is not among the trusted classes"),
    ({"O": "Evil", "S": {}}, "class 'Evil' is not among the trusted classes"),
    ({"O": "TailCalibrator", "S": {"__class__": "x"}}, "not plain identifiers"),
    ({"O": "TailCalibrator", "S": {"__reduce__": "x"}}, "not plain identifiers"),
    ({"__reduce__": ["os.system", ["id"]]}, "unknown or malformed node '__reduce__'"),
    ({"R": 0}, "reference 0 to nothing written before it"),
    ({"A": "../../etc/passwd"}, "unknown or malformed node 'A'"),
])
def test_a_crafted_tree_is_refused_by_name(tmp_path, model, node, message):
    model.save_model(tmp_path / "m")
    path = tmp_path / "m" / "files.json"
    doc = json.loads(path.read_text())
    doc["value"]["S"]["threshold_"] = node   # smuggled into the detector's attributes
    path.write_text(json.dumps(doc))
    _rechecksum(tmp_path / "m")
    with pytest.raises(ModelIntegrityError, match=message):
        Mimizuku.load_model(tmp_path / "m")


def test_a_detector_class_not_trusted_is_refused_at_the_top(tmp_path, model):
    model.save_model(tmp_path / "m")
    path = tmp_path / "m" / "context.json"
    doc = json.loads(path.read_text())
    doc["value"]["O"] = "subprocess.Popen"
    path.write_text(json.dumps(doc))
    _rechecksum(tmp_path / "m")
    with pytest.raises(ModelIntegrityError, match="refusing to load .*context.json: class 'subprocess.Popen'"):
        Mimizuku.load_model(tmp_path / "m")


def test_the_codec_refuses_what_it_cannot_write_as_plain_data():
    with pytest.raises(PlainStateError, match="not plain data and not a trusted class"):
        dump_state({"f": print}, {})
    with pytest.raises(PlainStateError, match="array of Python objects"):
        dump_state(np.array([object()], dtype=object), {})
    doc, arrays = dump_state({("a", 1): [1.5, float("inf")], "s": frozenset({"x"})}, {})
    assert load_state(doc, arrays, {}) == {("a", 1): [1.5, float("inf")], "s": frozenset({"x"})}


def test_shared_values_come_back_where_they_were():
    """Tuples, frozensets and instances met twice are written once and referred to after: every
    reference must come back to the object it named (keys and values of a mapping included)."""
    a, b, c = ("a", ("x",)), ("b",), frozenset({("x",), "y"})
    value = {a: b, b: a, ("k",): c, ("l",): [c, b, a], "nested": {a: {b: c}}}
    doc, arrays = dump_state(value, {})
    back = load_state(doc, arrays, {})
    assert back == value
    assert back[("l",)][0] is back[("k",)] and back[("l",)][2] is back[b]


_hashable = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5)
                         | st.floats(allow_nan=False),
                         lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3), max_leaves=8)
_values = st.recursive(_hashable | st.floats(),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_hashable, inner, max_size=3)
                       | st.dictionaries(st.text(max_size=4), inner, max_size=3) | st.sets(_hashable, max_size=3),
                       max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(_values)
def test_any_plain_value_round_trips(value):
    doc, arrays = dump_state(value, {})
    back = load_state(doc, arrays, {})
    assert _identical(back, value)


def _identical(a, b) -> bool:
    """Equal, with types (a tuple is no list), NaN and the sign of 0.0 counting, orders of
    mappings too (sets have none)."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (a != a and b != b) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_identical(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(_identical(k, m) and _identical(v, w)
                                        for (k, v), (m, w) in zip(a.items(), b.items()))
    return a == b


def test_a_signed_publication_of_a_crafted_model_runs_nothing_on_a_node(tmp_path, model):
    """The audit's case: the key holder (or the trainer's attacker) publishes a crafted model,
    signed; a node syncs it (every file matches the signed manifest) and refuses to load it."""
    key = ms.load_key(ms.generate_key(tmp_path / "etc" / "cluster.key"))
    trainer, node = ModelStore(tmp_path / "trainer"), ModelStore(tmp_path / "node")
    trainer.ensure()
    v = model.model_version_
    model.save_model(trainer.version_dir(v), group=trainer.group())
    marker = tmp_path / "ran"
    _craft(trainer.version_dir(v), marker)
    trainer.install(v)
    ms.publish(trainer.root, tmp_path / "pub", key, activation_delay=0)
    assert ms.sync_once(ms.DirectorySource(tmp_path / "pub"), node.root, key).action == "switched"
    assert current_version(node.root) == v
    with pytest.raises(ModelError):
        Mimizuku.load_model(resolve_model_dir(node.root))
    assert not marker.exists()


def test_the_signed_manifest_covers_the_new_files(tmp_path, model):
    key = ms.load_key(ms.generate_key(tmp_path / "etc" / "cluster.key"))
    trainer, node = ModelStore(tmp_path / "trainer"), ModelStore(tmp_path / "node")
    trainer.ensure()
    v = model.model_version_
    model.save_model(trainer.version_dir(v), group=trainer.group())
    trainer.install(v)
    ms.publish(trainer.root, tmp_path / "pub", key, activation_delay=0)
    for name in ("files.json", "files.npz"):
        path = tmp_path / "pub" / "versions" / v / name
        good = path.read_bytes()
        path.write_bytes(good[:-2] + bytes([good[-2] ^ 1]) + good[-1:])
        with pytest.raises(ms.PublicationRefused, match=f"{name} does not match its manifest"):
            ms.sync_once(ms.DirectorySource(tmp_path / "pub"), node.root, key)
        path.write_bytes(good)
    ms.sync_once(ms.DirectorySource(tmp_path / "pub"), node.root, key)
    assert Mimizuku.load_model(resolve_model_dir(node.root)).model_version_ == v


def test_a_round_trip_on_the_generated_fleet_gives_identical_records(tmp_path):
    """The generator's fleet (mimizuku.tools.synth) at a budget that flags bursts and repeats:
    where a mapping's shared keys once came back wrong (see the test above)."""
    import retrain_trees as T

    alerts = T.fleet(days=8, scale=0.02)
    days = T.days_of(alerts)
    current = Mimizuku(contamination=0.003).fit([a for a in alerts if a["timestamp"][:10] < days[-2]])
    current.save_model(tmp_path / "m")
    back = Mimizuku.load_model(tmp_path / "m")
    want = _records(current, alerts)
    assert _records(back, alerts) == want
    assert sum(json.loads(r)["anomaly"] for r in want) > 20


class OwnDetector(FileIntegrityDetector):
    """A detector class of a user's own (``add_rule``)."""


def test_a_detector_class_of_ones_own_needs_trust_class(tmp_path, monkeypatch):
    from mimizuku.engine import model_state

    monkeypatch.setattr(model_state, "_ADDED", {})
    own = Mimizuku().add_rule(OwnDetector(contamination=0.001)).fit(F.normal_fleet(days=4))
    with pytest.raises(ValueError, match="'files' cannot be saved: .*OwnDetector is not plain data and not a trusted class"):
        own.save_model(tmp_path / "m")
    assert not (tmp_path / "m").exists()
    model_state.trust_class(OwnDetector)
    own.save_model(tmp_path / "m")
    back = Mimizuku.load_model(tmp_path / "m")
    assert type(back.detectors_["files"]) is OwnDetector
    monkeypatch.setattr(model_state, "_ADDED", {})   # another process, which does not trust it
    with pytest.raises(ModelIntegrityError, match="class 'OwnDetector' is not among the trusted classes"):
        Mimizuku.load_model(tmp_path / "m")
    with pytest.raises(ValueError, match="another class named FsNotify is trusted already"):
        model_state.trust_class(type("FsNotify", (FileIntegrityDetector,), {}))


# --------------------------------------------------------------------------- the pickled format 1


def test_a_pickled_model_still_loads_with_a_warning_naming_the_release(tmp_path, model, alerts):
    pickle_model(model, tmp_path / "old")
    with pytest.warns(ModelFormatWarning, match=r"pickled format 1.*mimizuku 1\.1 no longer loads it"):
        back = Mimizuku.load_model(tmp_path / "old")
    assert _records(back, alerts) == _records(model, alerts)
    back.save_model(tmp_path / "new")   # saved again: the plain format
    assert json.loads((tmp_path / "new" / "manifest.json").read_text())["format_version"] == 2


def test_a_pickled_model_is_still_checked_before_unpickling(tmp_path, model):
    pickle_model(model, tmp_path / "old")
    marker = tmp_path / "ran"
    (tmp_path / "old" / "files.joblib").write_bytes(pickle.dumps(Evil(marker)))  # not re-checksummed
    with pytest.raises(ModelIntegrityError, match=r"files.joblib has \d+ bytes, the manifest says"):
        Mimizuku.load_model(tmp_path / "old")
    assert not marker.exists()


# --------------------------------------------------------------------------- the manifest agrees


def _edit_manifest(directory, change):
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("change, message", [
    (lambda m: m["detectors"]["commands"].update(threshold=0.99),
     r"disagrees with the model files: detector 'commands': the manifest says threshold 0\.99, the model file 0\."),
    (lambda m: m["detectors"]["files"].update(contamination=0.2),
     r"detector 'files': the manifest says contamination 0\.2, the model file 0\.0001"),
    (lambda m: m["detectors"]["context"].update({"class": "CommandDetector"}),
     "detector 'context': the manifest says class 'CommandDetector', the model file 'ContextDetector'"),
    (lambda m: m["detectors"]["files"].pop("threshold"), "detector 'files': the manifest has no threshold"),
    (lambda m: m["detectors"].pop("context"),
     r"model files hold detector\(s\) \['context'\] the manifest does not list"),
    (lambda m: m["detectors"].update(extra=dict(m["detectors"]["files"])),
     r"the manifest lists detector\(s\) \['extra'\] whose model files are not there"),
    (lambda m: m["peer_groups"].append({"id": "g99", "members": ["evil"], "label": []}),
     "peer_groups differ from the detectors'"),
])
def test_a_hand_edited_manifest_fails_the_load_naming_the_disagreement(tmp_path, model, change, message):
    model.save_model(tmp_path / "m")
    _edit_manifest(tmp_path / "m", change)
    with pytest.raises(ModelIntegrityError, match=message):
        Mimizuku.load_model(tmp_path / "m")


def test_a_detector_removed_with_its_files_entries_is_refused(tmp_path, model):
    """Removing a detector from the manifest entirely (its entry and its checksums) leaves its
    files unlisted: refused, not dropped without a word."""
    model.save_model(tmp_path / "m")

    def drop(m):
        del m["detectors"]["context"]
        del m["files"]["context.json"], m["files"]["context.npz"]
    _edit_manifest(tmp_path / "m", drop)
    with pytest.raises(ModelIntegrityError, match="model files not listed in its manifest: context.json, context.npz"):
        Mimizuku.load_model(tmp_path / "m")


def test_the_manifest_of_a_pickled_model_is_checked_too(tmp_path, model):
    pickle_model(model, tmp_path / "old")
    _edit_manifest(tmp_path / "old", lambda m: m["detectors"]["files"].update(threshold=0.01))
    with pytest.warns(ModelFormatWarning), pytest.raises(ModelIntegrityError, match="threshold 0.01"):
        Mimizuku.load_model(tmp_path / "old")


def test_objects_of_a_model_directory_are_loaded_as_saved(tmp_path, model):
    """The store alone (no estimator): the detectors come back as instances of their classes."""
    from mimizuku.engine.model_state import trusted_classes

    model.save_model(tmp_path / "m")
    objects, _ = load_model_dir(tmp_path / "m", trusted_classes=trusted_classes())
    assert {n: type(d).__name__ for n, d in objects.items()} == {
        "files": "FileIntegrityDetector", "commands": "CommandDetector", "context": "ContextDetector"}
    with pytest.raises(ModelIntegrityError, match="class 'FileIntegrityDetector' is not among the trusted classes"):
        load_model_dir(tmp_path / "m", names=["files"])   # no classes trusted: plain data only
