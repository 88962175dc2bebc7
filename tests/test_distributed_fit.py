"""`mimizuku retrain --dask`: training read on a Dask cluster gives the model a local run gives.

Each comparison runs the same retrain twice on identical copies of one Wazuh home (archive
tree with gzip parts, a corrupt line and a missing day; optionally a model in use and recorded
verdicts): once locally, once on a ``distributed.LocalCluster`` of three workers. The installed
models must be equal (manifest and model files minus versions and times, keys and weights per
detector, thresholds, identical scores), and so must the run counts and verdicts.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import retrain_trees as T

from mimizuku.engine.estimator import Mimizuku
from mimizuku.nightly.cli import main
from mimizuku.store.versions import current_version

distributed = pytest.importorskip("distributed")

ALERTS = T.fleet(days=8, scale=0.02)
#: a few hundred alerts a day cannot vouch for the default share (1e-4): the budget of a small fleet
SMALL_FLEET = 1e-3
DAYS = T.days_of(ALERTS)
LAST = DAYS[-1]
SCORING = [{k: v for k, v in a.items() if k != "_label"} for a in ALERTS[::3]]
COMPARED_COUNTS = ("alerts_read", "bad_lines", "own_events", "files", "damaged_files", "unreadable_files",
                   "days_with_alerts", "missing_days", "flagged_by_current", "days_judged",
                   "days_from_verdicts", "excluded_flagged", "trained_on", "trained")


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=False,
                                  dashboard_address="127.0.0.1:0") as c:
        yield c


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """An archive with gzip parts, a missing day and a corrupt line (no model yet)."""
    d = tmp_path_factory.mktemp("tree") / "wazuh"
    T.write_tree(d, ALERTS, part_lines=150)
    assert T.remove_day(d, DAYS[2]) >= 1
    T.corrupt_line(T.day_files(d, DAYS[4])[-1])
    return d


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _retrain(capfd, home: Path, *extra: str):
    capfd.readouterr()
    code = main(["retrain", "--wazuh-home", str(home), "--day", LAST, "--no-batch", "--summary-json",
                 "--max-rate-ratio", "1000", "--days", str(len(DAYS)), *extra])
    out, _ = capfd.readouterr()
    return code, T.summary_of(out.encode())


def _manifest(home: Path) -> dict:
    m = json.loads((home / "mimizuku" / "models" / "current" / "manifest.json").read_text())
    for k in ("model_version", "created"):
        m.pop(k)
    return m


def _fitted(det) -> dict:
    """What a detector learned: its situations and their weights, threshold, training scores."""
    out = {"n_alerts": det.n_alerts_, "n_keys": det.n_keys_, "threshold": det.threshold_,
           "decision_scores": det.decision_scores_.tolist()}
    if hasattr(det, "ref_keys_"):
        out["keys"] = list(zip(det.ref_keys_, det.ref_weights_.tolist()))
        out["examples"] = det.examples_
        out["tokens"] = det.token_counts_
    else:
        out["keys"] = list(zip(det.core_keys_, det.core_weights_.tolist()))
        out["blocks"] = det.blocks_
        out["max_rate"], out["max_src"] = det.max_rate_, det.max_src_
    return out


def assert_same_training(local_home: Path, dask_home: Path, s_local: dict, s_dask: dict,
                         same_bytes: bool = True) -> None:
    assert {k: s_local["counts"].get(k) for k in COMPARED_COUNTS} == \
        {k: s_dask["counts"].get(k) for k in COMPARED_COUNTS}
    ma, mb = _manifest(local_home), _manifest(dask_home)
    if not same_bytes:
        assert ma.pop("files").keys() == mb.pop("files").keys()
    assert ma == mb  # with the model files' SHA-256 when same_bytes
    a = Mimizuku.load_model(local_home / "mimizuku" / "models" / "current")
    b = Mimizuku.load_model(dask_home / "mimizuku" / "models" / "current")
    assert sorted(a.detectors_) == sorted(b.detectors_) == ["commands", "context", "files"]
    for name in a.detectors_:
        assert _fitted(a.detectors_[name]) == _fitted(b.detectors_[name]), name
    ra, rb = a.score_records(SCORING), b.score_records(SCORING)
    assert len(ra) == len(rb) == len(SCORING)
    assert [(r["id"], r["score"], r["anomaly"], r["scores"], r["reasons"]) for r in ra] == \
        [(r["id"], r["score"], r["anomaly"], r["scores"], r["reasons"]) for r in rb]


def test_first_model_on_dask_equals_local(tree, tmp_path, cluster, capfd):
    local, dask = _copy(tree, tmp_path / "local"), _copy(tree, tmp_path / "dask")
    code_l, s_l = _retrain(capfd, local)
    code_d, s_d = _retrain(capfd, dask, "--dask", cluster.scheduler_address)
    assert code_l == code_d == 0, (s_l, s_d)
    c = s_d["counts"]
    assert c["bad_lines"] == 1 and c["missing_days"] == [DAYS[2]]
    assert c["alerts_read"] == sum(1 for a in ALERTS if a["timestamp"][:10] != DAYS[2])
    # every day was a task, and the tasks were spread over the workers
    assert c["dask"] == {"partitions": len(DAYS) - 1, "workers": 3}
    assert "dask" not in s_l["counts"]
    assert_same_training(local, dask, s_l, s_d)


def test_anomaly_filter_and_verdicts_on_dask_equal_local(tree, tmp_path, cluster, capfd):
    """A model in use filters the stream on the workers; verdicts recorded by the first run are
    reused by the second: both runs give the same model and the same verdicts as locally."""
    home = _copy(tree, tmp_path / "base")
    clean = [{k: v for k, v in a.items() if k != "_label"} for a in ALERTS if a["timestamp"][:10] < DAYS[-2]]
    current = Mimizuku(contamination=SMALL_FLEET).fit(clean)
    models = home / "mimizuku" / "models"
    T.install_model(models, current)
    local, dask = _copy(home, tmp_path / "local"), _copy(home, tmp_path / "dask")

    code_l, s_l = _retrain(capfd, local)
    code_d, s_d = _retrain(capfd, dask, "--dask", cluster.scheduler_address)
    assert code_l == code_d == 0, (s_l, s_d)
    assert s_d["counts"]["excluded_flagged"] > 20  # the filter did work on the workers
    assert s_d["counts"]["days_judged"] == len(DAYS) - 1 and s_d["counts"]["days_from_verdicts"] == 0
    assert_same_training(local, dask, s_l, s_d)

    def verdicts(h):
        return {p.name: json.loads(p.read_text())["flagged"]
                for p in sorted((h / "mimizuku" / "models" / "verdicts").glob("*.json"))}

    assert verdicts(local) == verdicts(dask) and len(verdicts(dask)) == len(DAYS) - 1  # not the missing day

    # the second night: the same model in use, the recorded verdicts stand for the earlier days
    for h in (local, dask):
        T.install_model(h / "mimizuku" / "models", current)
    code_l, s_l = _retrain(capfd, local)
    code_d, s_d = _retrain(capfd, dask, "--dask", cluster.scheduler_address)
    assert code_l == code_d == 0, (s_l, s_d)
    assert s_d["counts"]["days_from_verdicts"] == len(DAYS) - 2 and s_d["counts"]["days_judged"] == 1
    assert_same_training(local, dask, s_l, s_d)


@pytest.fixture(scope="module")
def process_cluster():
    """Workers in their own processes (under a nanny), over plain tcp:// (the runs say
    --dask-insecure; mutual TLS is tests/test_dask_security.py's); a task that kills its worker is not
    retried elsewhere (allowed-failures 0), to keep the worker-loss test short."""
    import dask

    environ = dict(os.environ)
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        c = distributed.LocalCluster(n_workers=3, threads_per_worker=1, processes=True, host="127.0.0.1",
                                     dashboard_address="127.0.0.1:0")
        try:
            _restore(environ)
            yield c
        finally:
            _close_after_killed_workers(c)
    _restore(environ)


def _close_after_killed_workers(c) -> None:
    """Close a cluster whose workers were killed and restarted by their nannies
    (test_dying_workers_fail_the_run_and_keep_the_model). distributed's cluster object can then
    hear of a dead worker's removal after it dropped that address, and its watcher raises
    KeyError(address) at the very end of close(), after the workers and the scheduler are closed
    (SpecCluster._update_worker_status, as in dask/distributed#5407). Only that error is let
    through, and only once the scheduler is down; anything else fails the teardown."""
    from distributed.core import Status

    try:
        c.close()
    except KeyError as e:
        address = str(e.args[0]) if e.args else ""
        if not address.startswith("tcp://") or address in c.scheduler_info.get("workers", {}):
            raise
        assert c.scheduler.status in (Status.closing, Status.closed), c.scheduler.status


def _restore(environ: dict) -> None:
    """The nanny leaves OMP/OPENBLAS_NUM_THREADS=1, PYTHONHASHSEED... in this process's environment
    (for the workers it spawns): keep them from reaching other tests' subprocesses."""
    for k in set(os.environ) - set(environ):
        del os.environ[k]
    os.environ.update(environ)


def test_worker_processes_give_the_same_model(tree, tmp_path, process_cluster, capfd):
    """Workers in their own processes: the model and verdicts travel pickled, keys come back
    pickled — the model is still the local one."""
    home = _copy(tree, tmp_path / "base")
    current = Mimizuku(contamination=SMALL_FLEET).fit([{k: v for k, v in a.items() if k != "_label"} for a in ALERTS[: len(ALERTS) // 2]])
    T.install_model(home / "mimizuku" / "models", current)
    local, dask = _copy(home, tmp_path / "local"), _copy(home, tmp_path / "dask")
    code_l, s_l = _retrain(capfd, local)
    code_d, s_d = _retrain(capfd, dask, "--dask", process_cluster.scheduler_address, "--dask-insecure")
    assert code_l == code_d == 0, (s_l, s_d)
    assert s_d["counts"]["dask"]["workers"] >= 2 and s_d["counts"]["excluded_flagged"] > 0
    # the pickled files may differ in size (strings that came from other processes are not one
    # shared object any more), not in content
    assert_same_training(local, dask, s_l, s_d, same_bytes=False)


def _kill_worker(part, shared, job):
    os._exit(17)


def test_dying_workers_fail_the_run_and_keep_the_model(tree, tmp_path, process_cluster, capfd, monkeypatch):
    """Worker processes that die on their task: a clear failure (exit 3), the model in use kept,
    nothing installed."""
    import cloudpickle

    from mimizuku.nightly import partitions as distributed_fit

    home = _copy(tree, tmp_path / "home")
    code, _ = _retrain(capfd, home)
    assert code == 0
    models = home / "mimizuku" / "models"
    before = current_version(models)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    monkeypatch.setattr(distributed_fit, "observe_partition", _kill_worker)
    try:
        code, s = _retrain(capfd, home, "--dask", process_cluster.scheduler_address, "--dask-insecure")
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert code == 3 and s["status"] == "failed", s
    assert "Dask training failed on partition" in s["error"] and "KilledWorker" in s["error"]
    assert "current model is kept" in s["error"]
    assert current_version(models) == before
    assert [p.name for p in (models / "versions").iterdir()] == [before]
    process_cluster.scale(3)
    process_cluster.wait_for_workers(3, timeout=60)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def installed(tree, tmp_path, capfd):
    """A home where a local retrain installed a model."""
    home = _copy(tree, tmp_path / "home")
    code, _ = _retrain(capfd, home)
    assert code == 0
    return home


def test_unreachable_scheduler_fails_with_exit_3_and_keeps_the_model(installed, capfd):
    models = installed / "mimizuku" / "models"
    before = current_version(models)
    addr = f"tcp://127.0.0.1:{_closed_port()}"
    code, s = _retrain(capfd, installed, "--dask", addr, "--dask-timeout", "2", "--dask-insecure")
    assert code == 3 and s["status"] == "failed" and s["exit_code"] == 3
    assert f"cannot reach the Dask scheduler at {addr}" in s["error"] and "current model is kept" in s["error"]
    assert s["version"] == before == current_version(models)
    assert len(list((models / "versions").iterdir())) == 1


def test_scheduler_without_workers_fails_with_exit_3(installed, capfd):
    models = installed / "mimizuku" / "models"
    before = current_version(models)
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address="127.0.0.1:0") as c:
        code, s = _retrain(capfd, installed, "--dask", c.scheduler_address, "--dask-timeout", "1")
    assert code == 3 and "has no workers" in s["error"]
    assert current_version(models) == before


def test_worker_that_cannot_see_the_archive_fails_the_run(installed, cluster, monkeypatch):
    """A worker must not train on less than the driver listed: missing archive = cluster failure."""
    from mimizuku.nightly import partitions as distributed_fit
    from mimizuku.nightly.partitions import DaskUnavailable, PartitionedFit, partitions_of

    parts = partitions_of(str(installed), days=len(DAYS) + 1)
    assert [p.label for p in parts] == [d for d in DAYS if d != DAYS[2]]
    assert parts[0].base == str(installed / "logs" / "alerts")
    for p in parts:
        p.base = str(installed / "not-there")  # as a worker on another host would see it
    monkeypatch.setattr(distributed_fit, "partitions_of", lambda *a, **k: parts)
    with pytest.raises(DaskUnavailable, match="cannot see the archive"):
        PartitionedFit(None, {}).fit(str(installed), days=len(DAYS) + 1, dask=cluster.scheduler_address)


def test_bad_dask_address_is_a_usage_error(installed, capfd):
    code, s = _retrain(capfd, installed, "--dask", "not an address")
    assert code == 2 and "is not a Dask scheduler address" in s["error"]


def test_local_retrain_never_imports_dask(installed):
    code = ("import sys; from mimizuku.nightly.cli import main; "
            f"rc = main(['retrain', '--wazuh-home', {str(installed)!r}, '--day', {LAST!r}, '--no-batch', "
            "'--summary-json', '--max-rate-ratio', '1000']); "
            "print(rc, sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "0 []"


def test_partial_fits_merge_like_one_stream():
    """Partitions counted apart and merged in order give the one-stream model when nothing
    depends on the stream (here: a model without the rate-keeping context detector)."""
    from mimizuku.sources.errors import ReadStats

    stream = [{k: v for k, v in a.items() if k != "_label"} for a in ALERTS]
    one = Mimizuku(detectors=("files", "commands")).fit(stream)
    halves = [stream[: len(stream) // 3], stream[len(stream) // 3:]]
    m = Mimizuku(detectors=("files", "commands"))
    parts = [m.count_partition(h) for h in halves]
    assert sum(p.n for p in parts) == len(stream)
    merged = m.fit_partitions(parts, ReadStats())
    for name in one.detectors_:
        assert _fitted(one.detectors_[name]) == _fitted(merged.detectors_[name])
    assert merged.training_window_ == one.training_window_
    # and merging out of order is not the same stream: situations are first seen elsewhere
    swapped = Mimizuku(detectors=("files", "commands")).fit_partitions(
        [Mimizuku(detectors=("files", "commands")).count_partition(h) for h in reversed(halves)], ReadStats())
    assert any(list(one.detectors_[n].ref_keys_) != list(swapped.detectors_[n].ref_keys_)
               for n in one.detectors_)
    assert np.isclose(sum(d.n_alerts_ for d in swapped.detectors_.values()),
                      sum(d.n_alerts_ for d in one.detectors_.values()))


def test_partitions_are_days_and_read_as_one_stream_reads(tree, tmp_path):
    """One partition per day (parts together, in the reader's order); a file linked twice is
    read once and counted as the one-stream reader counts it; the partitions' alerts are the
    stream's alerts."""
    from mimizuku.nightly.partitions import add_stats, partitions_of
    from mimizuku.sources.errors import ReadStats
    from mimizuku.sources.reader import iter_alerts

    home = _copy(tree, tmp_path / "home")
    first = next(f for f in T.day_files(home, DAYS[0]) if f.endswith(f"-{DAYS[0][8:]}.json.gz"))
    os.link(first, first.replace(".json.gz", "-099.json.gz"))  # the same inode under a part's name
    whole = ReadStats()
    stream = [a["id"] for a in iter_alerts(str(home), days=len(DAYS) + 1, stats=whole)]
    total = ReadStats()
    parts = partitions_of(str(home), days=len(DAYS) + 1, stats=total)
    assert [p.label for p in parts] == [d for d in DAYS if d != DAYS[2]]
    assert all(p.shippable for p in parts)
    assert len(parts[0].plans) == len(T.day_files(home, DAYS[0])) - 1  # the link is left out
    ids = []
    for p in parts:
        s = ReadStats()
        ids += [a["id"] for a in p.alerts(s)]
        add_stats(total, s)
    assert ids == stream
    assert total.as_dict() == whole.as_dict() and total.duplicate_files == 1 and total.bad_json == 1

    single = partitions_of(first)
    assert [(p.label, p.base) for p in single] == [(Path(first).name, str(Path(first).parent))]


def test_dask_setting_from_the_environment(monkeypatch):
    """--dask wins; else MIMIZUKU_DASK_SCHEDULER; "local" in either place means a local run."""
    from mimizuku.nightly.config import dask_setting

    monkeypatch.delenv("MIMIZUKU_DASK_SCHEDULER", raising=False)
    assert dask_setting(None) is None
    monkeypatch.setenv("MIMIZUKU_DASK_SCHEDULER", "tcp://10.0.0.5:8786")
    assert dask_setting(None) == "tcp://10.0.0.5:8786"
    assert dask_setting("tcp://other:8786") == "tcp://other:8786"
    assert dask_setting("local") is None
    monkeypatch.setenv("MIMIZUKU_DASK_SCHEDULER", "LOCAL")
    assert dask_setting(None) is None
