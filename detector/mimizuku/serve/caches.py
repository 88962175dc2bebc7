"""Bounds on the engine's memo caches while the daemon runs for months.

The engine memoises per distinct key, with caps sized for a batch job; a resident process sees an
unbounded stream of distinct keys, so its memory grew until those caps were reached. Kept apart
from the pipeline because it reaches across the whole package (every ``functools.lru_cache`` of
it), not into one model.
"""
from __future__ import annotations

import sys
from typing import Any, Dict, List

#: default of ``--cache-entries``: entries per engine memo cache (see EngineCaches)
CACHE_ENTRIES = 8192


class EngineCaches:
    """Holds every memo cache of the engine to ``entries`` entries, so the daemon's memory is flat.

    The engine memoises per distinct key: the detectors' dicts (raw scores, nearest neighbours,
    reasons; capped by their ``_CACHE_MAX``, 200,000 by default) and the package's
    ``functools.lru_cache`` functions (tokens of every distinct path and command line, 65,536
    each). All are bounded, but so large that distinct keys took millions of alerts to fill them:
    measured over 1,000,000 alerts, the resident size still grew by 47 MiB between 500k and 1M, all
    of it in those caches (docs/serve.md). Here the detectors take ``entries`` as their cap (a
    full cache drops its oldest quarter: ``mimizuku.core.bounded.make_room``) and every lru cache of the package that holds more than
    ``entries`` is cleared (``cache_clear()``) between two batches. Frequent keys come back at
    once; what a small cap costs is recomputing the rare ones.
    """

    def __init__(self, entries: int = CACHE_ENTRIES, package: str = "mimizuku"):
        self.entries = max(1, int(entries))
        self.package = package
        self.cleared = 0
        #: the package's lru cache functions, found when a model is adopted
        self.lru_caches: List[Any] = []

    def adopt(self, model: Any) -> None:
        """Cap ``model``'s detectors and find the package's lru caches (their modules are
        imported once a model is loaded)."""
        for det in getattr(model, "detectors_", {}).values():
            det._CACHE_MAX = self.entries
        self.lru_caches = package_lru_caches(self.package)

    def trim(self) -> int:
        """Clear the lru caches over the cap; returns how many were cleared."""
        n = 0
        for fn in self.lru_caches:
            if fn.cache_info().currsize > self.entries:
                fn.cache_clear()
                n += 1
        self.cleared += n
        return n

    def sizes(self) -> Dict[str, int]:
        return {f"{fn.__module__}.{fn.__qualname__}": fn.cache_info().currsize for fn in self.lru_caches}


def package_lru_caches(package: str = "mimizuku") -> List[Any]:
    """Every ``functools.lru_cache`` function at module level in the imported modules of ``package``."""
    found: Dict[int, Any] = {}
    for name, mod in list(sys.modules.items()):
        if mod is None or not (name == package or name.startswith(package + ".")):
            continue
        for obj in list(vars(mod).values()):
            if callable(obj) and hasattr(obj, "cache_info") and hasattr(obj, "cache_clear"):
                found.setdefault(id(obj), obj)
    return sorted(found.values(), key=lambda f: (getattr(f, "__module__", ""), getattr(f, "__qualname__", "")))
