"""Memo caches of the detectors: bounded, and a full one loses its oldest quarter, not everything."""
from mimizuku.core.bounded import make_room


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

    from mimizuku.engine.detectors.base import Detector

    calls = []

    class Echo(Detector):
        name = "echo"
        _CACHE_MAX = 64

        def _raw(self, keys):
            calls.append(list(keys))
            return np.array([float(k) for k in keys])

    d = Echo()
    for start in range(0, 1000, 16):
        keys = list(range(start, start + 16))
        assert list(d.raw_scores(keys)) == [float(k) for k in keys]
        assert d.memo_sizes()["_cache"] <= 64
    calls.clear()
    d.raw_scores([999])
    assert calls == []                                # a recent key is answered from the cache
    d.raw_scores([0])
    assert calls == [[0]]                             # the oldest was dropped


def test_a_full_cache_answers_a_batch_whose_old_keys_it_drops_to_make_room():
    """A batch mixing the cache's oldest key with new ones: making room for the new ones drops
    the old one, which must still be answered (it raised KeyError and failed the whole batch)."""
    import numpy as np

    from mimizuku.engine.detectors.base import Detector

    calls = []

    class Echo(Detector):
        name = "echo"
        _CACHE_MAX = 8

        def _raw(self, keys):
            calls.append(list(keys))
            return np.array([float(k) for k in keys])

    d = Echo()
    d.raw_scores(list(range(8)))                      # full: 0 is the oldest
    calls.clear()
    assert list(d.raw_scores([0, 100, 101])) == [0.0, 100.0, 101.0]
    assert calls == [[100, 101]]                      # 0 was a hit, not recomputed
    assert d.memo_sizes()["_cache"] <= 8
    calls.clear()
    d.raw_scores([101])
    d.raw_scores([0])
    assert calls == [[0]]                             # 101 kept, 0 dropped to make room


def test_sparse_rows_equal_the_hashers_dense_rows_with_collisions_and_a_tiny_name_memo():
    """Scoring builds rows from remembered columns; they must be the hasher's rows exactly: names
    of one row that share a column add up (8 columns force collisions), and a memo that drops
    names while a batch needs them must not change a value."""
    import random

    import numpy as np

    from mimizuku.engine.detectors.lof import HashedGroups

    rng = random.Random(3)
    vec = HashedGroups({"a": 1.0, "b": 0.5}, n_features=8)
    for cap in (4, 65536):
        groups = [{"a": [f"t{rng.randrange(40)}" for _ in range(rng.randrange(0, 6))],
                   "b": [f"u{rng.randrange(40)}" for _ in range(rng.randrange(1, 4))]} for _ in range(50)]
        dense = vec.rows(groups).astype(np.float64)
        for start in range(0, 50, 7):                  # in small batches, as the scorer asks
            got = vec.sparse_rows(groups[start:start + 7], cap=cap)
            back = np.zeros((got.n, 8))
            back[got.row, got.col] = got.value
            assert np.array_equal(back, dense[start:start + 7])
        assert vec.memo_size() <= max(cap, 7 * 9)     # the cap, or one batch's names


def test_lof_distances_of_sparse_queries_are_the_exact_ones():
    """The sparse product gives float64-exact distances (float32 BLAS was off by up to 8e-4),
    rounded to float32 as LocalOutlierFactor's k-distances are; a reference queried again is at
    distance 0 from itself."""
    import alert_factory as F
    import numpy as np
    from sklearn.metrics import pairwise_distances

    from mimizuku.engine.detectors.commands import CommandDetector

    det = CommandDetector().fit(F.normal_fleet(days=2, seed=4))
    keys = det.ref_keys_[:40]
    X = det.feature_rows(keys).astype(np.float64)
    truth = np.sort(pairwise_distances(X, det.ref_X_.astype(np.float64)), axis=1)[:, :det.k_]
    dist, ind = det.neighbours(keys)
    assert np.array_equal(dist, truth.astype(np.float32).astype(np.float64))
    assert (dist[:, 0] == 0).all()


def test_sparse_neighbour_search_in_bounded_chunks_gives_the_same_answer():
    """A fit scores thousands of situations at once; chunks bounded by the reference entries
    they touch keep its memory flat, and must not change a distance or a neighbour."""
    import alert_factory as F
    import numpy as np

    from mimizuku.engine.detectors.commands import CommandDetector

    det = CommandDetector().fit(F.normal_fleet(days=2, seed=4))
    keys = list(det.ref_keys_) + [det.key(a) for kind in F.attacks().values() for a in kind if det.applies(a)]
    whole = det.neighbours(keys)
    det.CHUNK_ENTRIES = 300
    chunks = det.neighbour_chunks(keys)
    assert len(chunks) > 3 and chunks[0][0] == 0 and chunks[-1][1] == len(keys)
    assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    small = det.neighbours(keys)
    assert np.array_equal(whole[0], small[0]) and np.array_equal(whole[1], small[1])


def test_a_refit_in_place_answers_as_a_fresh_fit_not_from_the_old_memos():
    """Memo caches (scores, nearest neighbours, reasons) and LOF's column copy of the references
    belong to one fit: refitting the same object must not answer from the previous model."""
    import datetime as dt

    import alert_factory as F

    from mimizuku.engine.detectors import CommandDetector, ContextDetector
    from mimizuku.engine.detectors import FileIntegrityDetector as FileDetector

    a = F.normal_fleet(days=2, seed=1)
    b = F.normal_fleet(days=3, seed=2)
    t = F.BASE + dt.timedelta(days=6, hours=3)
    b += [F.command(t + dt.timedelta(minutes=i), ["/usr/bin/nc", "-lvp", "4444"], user="deploy") for i in range(9)]
    b += [F.fim(t + dt.timedelta(minutes=i), "/var/www/html/shell.php", event="added", user="www-data",
                process="/usr/sbin/apache2") for i in range(9)]
    probe = [F.command(t, ["/usr/bin/nc", "-lvp", "4444"], user="deploy"),
             F.fim(t, "/var/www/html/shell.php", event="added", user="www-data", process="/usr/sbin/apache2"),
             F.event(t, "5501", desc="PAM: Login session opened.", groups=["pam", "syslog"])]
    for cls in (CommandDetector, FileDetector, ContextDetector):
        det = cls()
        mine = [x for x in probe if det.applies(x)]
        det.fit(a)
        before = det.score_samples(mine)
        det.explain(det.key(mine[0]), mine[0])            # fills the reasons' memos too
        det.fit(b)
        fresh = cls().fit(b)
        assert list(det.score_samples(mine)) == list(fresh.score_samples(mine)), cls.__name__
        assert det.explain(det.key(mine[0]), mine[0]) == fresh.explain(fresh.key(mine[0]), mine[0])
        if cls is not ContextDetector:
            assert list(before) != list(fresh.score_samples(mine)), cls.__name__   # the probe can tell
