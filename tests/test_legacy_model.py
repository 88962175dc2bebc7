"""A model written by the release before the package was split by role loads and scores the same.

The fixture (tests/data/legacy-1.0.0.dev0/README.md) was written by commit 321ce61: its pickles
name the old flat modules (``mimizuku.detectors.files``, ``mimizuku.calibration``, ...).
"""
import gzip
import json
import tarfile
from importlib import metadata
from pathlib import Path

import pytest

from mimizuku import Mimizuku
from mimizuku.store.model_dir import ModelVersionError

DATA = Path(__file__).parent / "data" / "legacy-1.0.0.dev0"


@pytest.fixture
def legacy_model(tmp_path):
    with tarfile.open(DATA / "model.tgz") as tar:
        tar.extractall(tmp_path, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(tmp_path)
    model_dir = tmp_path / "model"
    saved = json.loads((model_dir / "manifest.json").read_text())["libraries"]["scikit-learn"]
    if saved != metadata.version("scikit-learn"):
        pytest.skip(f"the fixture was written with scikit-learn {saved}; fitted models do not carry "
                    f"across scikit-learn versions (installed: {metadata.version('scikit-learn')})")
    return model_dir


def _records(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_pickles_name_the_old_flat_modules(legacy_model):
    raw = (legacy_model / "files.joblib").read_bytes()
    assert b"mimizuku.detectors.files" in raw and b"mimizuku.engine" not in raw


def test_a_model_of_the_flat_layout_loads_and_scores_identically(legacy_model):
    model = Mimizuku.load_model(legacy_model)
    got = [json.loads(json.dumps(r, sort_keys=True)) for r in model.score_records(DATA / "test.jsonl.gz")]
    want = _records(DATA / "expected.jsonl.gz")
    assert len(got) == len(want) == 1267
    assert sum(r["anomaly"] for r in got) == sum(r["anomaly"] for r in want) > 0
    for g, w in zip(got, want):
        assert g["model_version"] == w["model_version"]  # the model's own, read from its manifest
        assert g == w


def test_the_old_names_do_not_outlive_the_load(legacy_model):
    import sys

    Mimizuku.load_model(legacy_model)
    assert "mimizuku.detectors.files" not in sys.modules
    assert "mimizuku.calibration" not in sys.modules


def test_a_version_mismatch_is_still_refused(legacy_model):
    manifest = legacy_model / "manifest.json"
    m = json.loads(manifest.read_text())
    m["libraries"]["scikit-learn"] = "0.0.1"
    manifest.write_text(json.dumps(m))
    with pytest.raises(ModelVersionError):
        Mimizuku.load_model(legacy_model)
