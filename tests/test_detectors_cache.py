"""Memo caches of the detectors: bounded, and a full one loses its oldest quarter, not everything."""
from mimizuku.detectors.base import make_room


def test_make_room_drops_the_oldest_quarter_and_keeps_the_rest():
    cache = {i: i for i in range(100)}
    make_room(cache, 100)
    assert len(cache) == 75 and min(cache) == 25 and max(cache) == 99


def test_make_room_leaves_a_cache_with_room_alone_and_makes_room_for_a_big_batch():
    cache = {i: i for i in range(10)}
    make_room(cache, 100, incoming=50)
    assert len(cache) == 10
    cache = {i: i for i in range(100)}
    make_room(cache, 100, incoming=60)
    assert len(cache) == 40 and min(cache) == 60   # room for the whole batch, the newest kept


def test_a_detector_cache_stays_under_its_cap_and_keeps_recent_keys():
    import numpy as np

    from mimizuku.detectors.base import Detector

    class Echo(Detector):
        name = "echo"

        def _raw(self, keys):
            return np.array([float(k) for k in keys])

    d = Echo()
    d._CACHE_MAX = 64
    for start in range(0, 1000, 16):
        keys = list(range(start, start + 16))
        assert list(d.raw_scores(keys)) == [float(k) for k in keys]
        assert len(d._cache) <= 64
    assert 999 in d._cache and 0 not in d._cache
