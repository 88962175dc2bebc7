"""Module names that model files written before the package was split by role still carry.

A pickle names each object's class by module and qualified name; a model trained by 1.0.0.dev0
(the flat layout: ``mimizuku.detectors.files``, ``mimizuku.calibration``, ...) names modules that
no longer exist. While such a file is unpickled, :func:`legacy_module_names` lets those names
resolve to the modules the classes live in now. Nothing else about loading changes: the file was
already verified (root-owned, checksummed, version-matched) before a byte of it is unpickled, and
only the engine's modules are mapped.
"""
from __future__ import annotations

import importlib
import sys
import threading
from contextlib import contextmanager
from typing import Dict, Iterator

#: old module name -> where it lives now (only modules whose classes a model file may hold)
LEGACY_MODULES: Dict[str, str] = {
    "mimizuku.detectors": "mimizuku.engine.detectors",
    "mimizuku.detectors.base": "mimizuku.engine.detectors.base",
    "mimizuku.detectors.lof": "mimizuku.engine.detectors.lof",
    "mimizuku.detectors.files": "mimizuku.engine.detectors.files",
    "mimizuku.detectors.commands": "mimizuku.engine.detectors.commands",
    "mimizuku.detectors.context": "mimizuku.engine.detectors.context",
    "mimizuku.calibration": "mimizuku.engine.calibration",
    "mimizuku.repeats": "mimizuku.engine.repeats",
    "mimizuku.fleet": "mimizuku.engine.fleet",
    "mimizuku.lineage": "mimizuku.engine.lineage",
    "mimizuku.features": "mimizuku.engine.features",
    "mimizuku.model": "mimizuku.engine.estimator",
    "mimizuku.bounded": "mimizuku.core.bounded",
    "mimizuku.fields": "mimizuku.core.fields",
}

_lock = threading.Lock()


@contextmanager
def legacy_module_names() -> Iterator[None]:
    """Let the old names resolve (as aliases in ``sys.modules``) for the duration of a load."""
    with _lock:
        added = []
        for old, new in LEGACY_MODULES.items():
            if old not in sys.modules:
                sys.modules[old] = importlib.import_module(new)
                added.append(old)
        try:
            yield
        finally:
            for old in added:
                sys.modules.pop(old, None)
