"""What a model file may hold, and whether a model's manifest agrees with its files.

**The trusted classes.** Model files are plain data (``mimizuku.store.plain_state``): loading
one builds no object but plain values, numpy arrays, and instances of the classes listed in
``TRUSTED_CLASSES`` - the detectors and the fitted parts they hold (calibrator, peer groups,
entity baselines). The list is explicit and closed: a file naming any other class, or
``os.system``, is refused before anything is built. Each class is named by a short name (what the
file says) and the module and attribute it is found at. Importing a listed module is the only
thing a name can cause; ``rules/``'s classes (the original library's ``FsNotify`` and
``AuditCommand``) are named rather than imported here, as this room may not import that one, and
are imported only when a model holding them is saved or loaded.

Fitted state only: the detectors' own ``__getstate__`` leaves out memos, training and stream
state (``Detector._MEMOS``, ``_UNSAVED``), as it did for pickles; the fitted
``LocalOutlierFactor`` is not kept (scoring runs on the arrays it left), and no other
scikit-learn object is, so the files hold no scikit-learn internals at all.

**The manifest against the files.** ``manifest.json`` restates, for people and for ``mimizuku
status``, what the detectors hold: which detectors, their class, threshold, contamination,
alerts and situations, and the peer groups. Loading used to take the detector list from the
manifest and ignore the rest, so a hand edit was either silently dropped (a changed threshold)
or silently obeyed (a removed detector). ``check_manifest`` makes any disagreement an error that
names it.
"""
from __future__ import annotations

import importlib
import numbers
from typing import Any, Dict, List, Mapping, Tuple

__all__ = ["TRUSTED_CLASSES", "ManifestMismatch", "trust_class", "trusted_classes", "check_manifest"]

#: name written in model files -> (module, attribute): every class a model file may hold
TRUSTED_CLASSES: Dict[str, Tuple[str, str]] = {
    "FileIntegrityDetector": ("mimizuku.engine.detectors.files", "FileIntegrityDetector"),
    "CommandDetector": ("mimizuku.engine.detectors.commands", "CommandDetector"),
    "ContextDetector": ("mimizuku.engine.detectors.context", "ContextDetector"),
    "TailCalibrator": ("mimizuku.engine.calibration", "TailCalibrator"),
    "PeerGroups": ("mimizuku.engine.peers", "PeerGroups"),
    "EntityBaselines": ("mimizuku.engine.baselines", "EntityBaselines"),
    "FsNotify": ("mimizuku.rules.fs_notify", "FsNotify"),
    "AuditCommand": ("mimizuku.rules.audit_command", "AuditCommand"),
}


#: classes a program added with ``trust_class`` (its own detectors): name -> class
_ADDED: Dict[str, type] = {}


def trust_class(cls: type) -> type:
    """Let model files hold instances of ``cls`` (a detector class of your own, given to
    ``Mimizuku.add_rule``), by its class name, in this process: call it before saving and before
    loading such a model, as skops' ``trusted=[...]``. Its state must be plain data too. Returns
    ``cls`` (usable as a class decorator)."""
    name = cls.__name__
    known = TRUSTED_CLASSES.get(name)
    if (known is not None and known != (cls.__module__, cls.__qualname__)) or _ADDED.get(name, cls) is not cls:
        raise ValueError(f"another class named {name} is trusted already: rename {cls.__qualname__}")
    _ADDED[name] = cls
    return cls


class ManifestMismatch(ValueError):
    """The manifest says something the model files do not (the message names it)."""


def trusted_classes() -> Dict[str, type]:
    """``TRUSTED_CLASSES`` resolved (the modules imported on first use), and the classes
    ``trust_class`` added: name -> class."""
    out = {}
    for name, (module, attr) in TRUSTED_CLASSES.items():
        cls = getattr(importlib.import_module(module), attr)
        if cls.__name__ != name:  # an alias (FsNotify = FileIntegrityDetector) would be ambiguous
            raise TypeError(f"trusted class {name} resolves to {cls.__qualname__}")
        out[name] = cls
    out.update((n, c) for n, c in _ADDED.items() if n not in out)
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal, numbers by value (JSON gives a float back to the bit; an int may stand for it)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, numbers.Real) and isinstance(b, numbers.Real):
        return float(a) == float(b)
    return a == b


#: what the manifest restates of each detector: manifest key -> the detector's attribute (None: its class)
_RESTATED = (("class", None), ("threshold", "threshold_"), ("contamination", "contamination"),
             ("alerts", "n_alerts_"), ("situations", "n_keys_"))


def check_manifest(manifest: Mapping[str, Any], detectors: Mapping[str, Any], where: str) -> None:
    """Raise ``ManifestMismatch`` naming the first disagreement between the manifest and the
    detectors loaded from the model files: a detector listed without its files or files no
    detector lists, a class, threshold, contamination, alert or situation count that differs,
    or peer groups other than the detectors'."""
    listed = manifest.get("detectors")
    if not isinstance(listed, dict):
        raise ManifestMismatch(f"model {where}: the manifest has no 'detectors' section")
    missing = sorted(set(listed) - set(detectors))
    if missing:
        raise ManifestMismatch(f"model {where}: the manifest lists detector(s) {missing} whose model files "
                               f"are not there")
    unlisted = sorted(set(detectors) - set(listed))
    if unlisted:
        raise ManifestMismatch(f"model {where}: model files hold detector(s) {unlisted} the manifest does "
                               f"not list (an entry was removed from manifest.json?)")
    problems: List[str] = []
    for name, det in detectors.items():
        entry = listed[name]
        if not isinstance(entry, dict):
            raise ManifestMismatch(f"model {where}: the manifest's entry for detector {name!r} is not an object")
        for key, attr in _RESTATED:
            have = type(det).__name__ if attr is None else getattr(det, attr, None)
            if key not in entry:
                problems.append(f"detector {name!r}: the manifest has no {key} (the model file says {have!r})")
            elif not _same(entry[key], have):
                problems.append(f"detector {name!r}: the manifest says {key} {entry[key]!r}, the model file "
                                f"{have!r}")
    if problems:
        raise ManifestMismatch(f"model {where}: manifest.json disagrees with the model files: "
                               + "; ".join(problems) + " (manifest.json is not a setting: retrain, or "
                               "override thresholds in the integration's options)")
    groups = next((d.peer_groups_ for d in detectors.values() if getattr(d, "peer_groups_", None) is not None), None)
    if groups is not None and "peer_groups" in manifest and manifest["peer_groups"] != groups.to_json():
        raise ManifestMismatch(f"model {where}: manifest.json's peer_groups differ from the detectors' "
                               f"(the groups are learnt in training: retrain to change them)")
