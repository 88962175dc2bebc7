"""Model directories of the pickled format 1, as releases before plain-data models wrote them.

This release never writes format 1 (``mimizuku.store.model_dir`` only reads it, with a
``ModelFormatWarning``, until ``PICKLE_FORMAT_DROPPED_IN``); the tests that prove it still loads
behind the same checks write it here, exactly as ``save_model_dir`` of those releases did:
``<name>.joblib`` per object (joblib.dump) and a manifest of their sizes and SHA-256.
"""
from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Optional

import joblib
import sklearn

import mimizuku
from mimizuku.store import model_dir


def write_pickled_model(directory, objects: Dict[str, Any], meta: Optional[Dict[str, Any]] = None) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True)
    os.chmod(directory, 0o750)
    files = {}
    for name, obj in objects.items():
        path = directory / f"{name}.joblib"
        joblib.dump(obj, path)
        os.chmod(path, 0o640)
        data = path.read_bytes()
        files[path.name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    manifest = {"format_version": model_dir.PICKLE_FORMAT_VERSION,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "libraries": {"mimizuku": mimizuku.__version__, "scikit-learn": sklearn.__version__,
                              "joblib": joblib.__version__}, "files": files}
    manifest.update(meta or {})
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=lambda v: v.tolist()))
    os.chmod(directory / "manifest.json", 0o640)
    return directory


def pickle_model(model, directory) -> Path:
    """A fitted ``Mimizuku`` written as format 1 (its detectors pickled, its manifest)."""
    return write_pickled_model(directory, dict(model.detectors_), model.manifest())
