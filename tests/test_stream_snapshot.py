"""The stream state written to disk and read back (``mimizuku.engine.stream_snapshot``): a model
that loads it scores what follows exactly as the model that wrote it would have; the in-process
path of the integration keeps its rate windows from call to call; a bad file is refused.

Uses the stream of test_serve_reload (each piece of stream state changes the records after the
cut there, so "the same records" means every piece went over)."""
from __future__ import annotations

import copy
import json
import os

import pytest
from test_serve_reload import continuous, fitted_model, stream

from mimizuku.engine import stream_snapshot as snap


def _through_disk(tmp_path, old):
    path = tmp_path / snap.FILE_NAME
    assert snap.save_snapshot(path, old) > 0
    new = copy.deepcopy(fitted_model())
    new.start_stream()
    taken = snap.import_snapshot(new, snap.load_snapshot(path))
    return new, taken


def test_a_model_that_reads_the_file_continues_the_stream_exactly(tmp_path):
    before, after = stream()
    old = copy.deepcopy(fitted_model())
    list(old.iter_records(before))
    new, taken = _through_disk(tmp_path, old)
    assert set(taken["context"]) == {"rates", "repeats", "wave"} and "lineage" in taken
    assert list(new.iter_records(after, new_stream=False)) == continuous()
    # JSON through and through: no pickle in the file
    doc = json.loads((tmp_path / snap.FILE_NAME).read_text())
    assert doc["format"] == snap.FORMAT and doc["model_version"] == fitted_model().model_version_


def test_without_the_file_the_records_differ():
    before, after = stream()
    new = copy.deepcopy(fitted_model())
    new.start_stream()
    assert list(new.iter_records(after, new_stream=False)) != continuous()


def test_each_piece_is_bounded_to_the_most_recent():
    before, _ = stream()
    old = copy.deepcopy(fitted_model())
    list(old.iter_records(before))
    doc = snap.export_snapshot(old, max_keys=3)
    ctx = doc["detectors"]["context"]
    assert 0 < len(ctx["rates"]["keys"]) <= 3 and len(ctx["repeats"]["open"]) <= 3
    assert all(len(v) <= 3 for v in doc["lineage"].values())
    full = snap.export_snapshot(old)
    assert ctx["rates"]["keys"] == full["detectors"]["context"]["rates"]["keys"][-3:]


@pytest.mark.parametrize("damage", ["foreign", "bad_bucket", "bad_key", "bad_lineage", "not_a_dict"])
def test_a_damaged_document_is_refused_and_nothing_is_taken(damage):
    before, _ = stream()
    old = copy.deepcopy(fitted_model())
    list(old.iter_records(before))
    doc = json.loads(json.dumps(snap.export_snapshot(old)))
    rates = doc["detectors"]["context"]["rates"]["keys"]
    if damage == "foreign":
        doc["format"] = "something-else/1"
    elif damage == "bad_bucket":
        rates[0][1] = [[5, 1], [3, 1]]                  # not increasing
    elif damage == "bad_key":
        rates[0][0] = {"a": 1}                          # never written by encode_key
    elif damage == "bad_lineage":
        doc["lineage"]["procs"] = [[["a", "1"], 7, 1]]  # a channel is text
    else:
        doc = [doc]
    new = copy.deepcopy(fitted_model())
    new.start_stream()
    empty = snap.export_snapshot(new)
    with pytest.raises(snap.SnapshotError):
        snap.import_snapshot(new, doc)
    assert snap.export_snapshot(new, now=empty["written_at"]) == empty


def test_a_symlink_an_oversized_file_and_garbage_are_refused(tmp_path, monkeypatch):
    assert snap.load_snapshot(tmp_path / "none.json") is None
    target = tmp_path / "elsewhere.json"
    target.write_text("{}")
    os.symlink(target, tmp_path / "link.json")
    with pytest.raises(snap.SnapshotError, match="cannot open"):
        snap.load_snapshot(tmp_path / "link.json")
    (tmp_path / "bad.json").write_bytes(b"\x80\x04\x95 not json")   # a pickle's first bytes
    with pytest.raises(snap.SnapshotError, match="not JSON"):
        snap.load_snapshot(tmp_path / "bad.json")
    monkeypatch.setattr(snap, "MAX_BYTES", 10)
    (tmp_path / "big.json").write_text(json.dumps({"x": "y" * 20}))
    with pytest.raises(snap.SnapshotError, match="over 10 bytes"):
        snap.load_snapshot(tmp_path / "big.json")
    old = copy.deepcopy(fitted_model())
    list(old.iter_records(stream()[0][:50]))
    assert snap.save_snapshot(tmp_path / "s.json", old) == 0 and not (tmp_path / "s.json").exists()


def _scan(n):
    """One source hitting a web server n times, a second apart (a context-detector alert)."""
    import datetime as dt

    before, _ = stream()
    base = next(a for a in before if a.get("data", {}).get("srcip") and a["rule"]["id"].startswith("31"))
    t0 = dt.datetime.strptime(base["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    out = []
    for i in range(n):
        a = copy.deepcopy(base)
        a["id"] = f"scan.{i}"
        a["timestamp"] = (t0 + dt.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        out.append(a)
    return out


def test_the_in_process_path_keeps_its_rate_windows_from_call_to_call(tmp_path):
    """Scored one alert per call (one process per alert, the scorer down), a scan ends where one
    stream of the whole scan ends; with the stream state removed between calls it does not."""
    from mimizuku.integratord import call
    from mimizuku.integratord.options import Options

    home = tmp_path / "ossec"
    opts = Options.defaults(home)
    fitted_model().save_model(str(opts.model_dir))
    opts.spool_dir.mkdir(parents=True)
    scan = _scan(40)
    one = copy.deepcopy(fitted_model())
    whole = list(one.iter_records(scan))
    state = opts.spool_dir / snap.FILE_NAME

    def per_call(keep: bool):
        out = []
        for a in scan:
            call.forget_engine()
            if not keep and state.exists():
                state.unlink()
            out.extend(call.score_in_process([a], opts))
        return out

    kept = per_call(True)
    assert [r["score"] for r in kept] == [r["score"] for r in whole]
    assert [r.get("repeat_of") for r in kept] == [r.get("repeat_of") for r in whole]
    lost = per_call(False)
    assert lost[-1]["score"] < kept[-1]["score"]
    assert {r["score"] for r in lost} == {lost[0]["score"]}        # every call looks like the first
    call.forget_engine()


def test_the_in_process_path_reports_a_bad_file_and_scores_anyway(tmp_path):
    from mimizuku.integratord import call
    from mimizuku.integratord.options import Options

    opts = Options.defaults(tmp_path / "ossec")
    fitted_model().save_model(str(opts.model_dir))
    opts.spool_dir.mkdir(parents=True)
    (opts.spool_dir / snap.FILE_NAME).write_text("not json")
    said = []
    call.forget_engine()
    recs = call.score_in_process(_scan(1), opts, log=lambda level, msg: said.append((level, msg)))
    assert len(recs) == 1 and said and said[0][0] == "warning" and "stream state not used" in said[0][1]
    # and the call leaves a good file behind for the next one
    assert json.loads((opts.spool_dir / snap.FILE_NAME).read_text())["format"] == snap.FORMAT
    call.forget_engine()
