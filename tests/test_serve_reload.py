"""A hot reload continues the stream: a model that takes over from another in the middle of a stream
scores what follows exactly as one model that saw the whole stream would.

The state goes over through the public seams ``export_stream_state`` / ``import_stream_state``
of the detectors and the lineage (:func:`mimizuku.serve.reload.carry_stream_state`). The stream
below is built so that each piece of that state changes the records after the swap (rate windows
and repeat windows: bursts of the generated day; fleet waves: a new situation appearing on three
agents before the swap and three after; the lineage: processes of package runs), and the test
checks that too: a piece that stops being carried, or a new piece of stream state that is not
exported, makes the records differ.
"""
from __future__ import annotations

import copy
import datetime as dt
from typing import Any, Dict, List, Tuple

import pytest

from mimizuku.engine.detectors.base import Detector
from mimizuku.engine.lineage import ProcessLineage
from mimizuku.serve.reload import carry_stream_state

_STREAM: Dict[str, Any] = {}


def fitted_model() -> Any:
    """Trained on fixed days (a patch day among them: package runs are routine), so that what
    the stream state changes does not depend on the day the tests run."""
    if "model" not in _STREAM:
        from mimizuku.engine.estimator import Mimizuku
        from mimizuku.tools.synth import FleetConfig, generate

        days = generate(FleetConfig(days=3, start=dt.date(2026, 11, 23), scale=0.05, attacks=False, seed=1))
        # (a small fleet's budget: three days at 5 % scale cannot vouch for the default share)
        _STREAM["model"] = Mimizuku(contamination=1e-3).fit(list(days))
    return _STREAM["model"]


def _wave(base: Dict[str, Any], agents: List[Dict[str, Any]], tag: str) -> List[Dict[str, Any]]:
    """A rule never seen in training fired once on each of ``agents``, a second apart (a roll-out)."""
    t0 = dt.datetime.strptime(base["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z")
    out = []
    for k, agent in enumerate(agents):
        a = copy.deepcopy(base)
        a["agent"] = dict(agent)
        a["rule"] = dict(a["rule"], id="99901", description="a change rolled out")
        a["timestamp"] = (t0 + dt.timedelta(seconds=k + 1)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"
        a["id"] = f"{tag}.{k}"
        out.append(a)
    return out


def stream() -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """(before the swap, after it): a generated day (with attacks, on a patch day), cut in two."""
    if not _STREAM:
        from mimizuku.tools.synth import FleetConfig, generate

        alerts = list(generate(FleetConfig(days=1, start=dt.date(2026, 12, 1), scale=0.05, seed=11)))
        for i, a in enumerate(alerts):
            a.pop("_label", None)
            a["id"] = f"s.{i}"
        agents: List[Dict[str, Any]] = []
        for a in alerts:
            if a.get("agent", {}).get("name") and all(x["name"] != a["agent"]["name"] for x in agents):
                agents.append(a["agent"])
        assert len(agents) >= 6
        half = len(alerts) // 2
        before, after = alerts[:half], alerts[half:]
        _STREAM["before"] = before + _wave(before[-1], agents[:3], "wave-before")
        _STREAM["after"] = _wave(after[0], agents[3:6], "wave-after") + after
    return _STREAM["before"], _STREAM["after"]


def continuous() -> List[Dict[str, Any]]:
    """The records after the cut from one model that saw the whole stream."""
    if "continuous" not in _STREAM:
        before, after = stream()
        model = copy.deepcopy(fitted_model())
        list(model.iter_records(before))
        _STREAM["continuous"] = list(model.iter_records(after, new_stream=False))
    return _STREAM["continuous"]


def after_reload(carry: bool = True) -> Tuple[Any, Any, List[Dict[str, Any]]]:
    """(old model, new model, records after the cut from the new one): the old model scored the
    first half, then the new one (a copy of the same fit, as a reload of an unchanged model
    loads) took its stream state over."""
    before, after = stream()
    old, new = copy.deepcopy(fitted_model()), copy.deepcopy(fitted_model())
    list(old.iter_records(before))
    if carry:
        assert carry_stream_state(old, new)       # True: the rate windows came along
    return old, new, list(new.iter_records(after, new_stream=False))


def test_every_piece_is_exported_and_taken_as_it_is():
    old, new, _ = after_reload()
    pieces = {name: set(det.export_stream_state()) for name, det in old.detectors_.items()}
    assert pieces["context"] == {"rates", "wave", "repeats"}
    waved = [name for name, det in old.detectors_.items() if hasattr(det, "wave_window")]
    assert len(waved) > 1 and all("wave" in pieces[name] for name in waved)
    assert all("repeats" in p for p in pieces.values())
    state = old.lineage_.export_stream_state()
    assert state["procs"] or state["package_runs"]       # the lineage was following processes


def test_the_new_model_continues_the_stream_exactly():
    _, _, records = after_reload()
    assert records == continuous()


def test_without_the_stream_state_the_records_differ():
    """What makes the test above mean something: the stream state matters after the cut."""
    _, _, records = after_reload(carry=False)
    assert records != continuous()


@pytest.mark.parametrize("piece", ["rates", "wave", "repeats", "lineage"])
def test_a_piece_left_behind_changes_the_records(monkeypatch, piece):
    """Each piece of stream state is needed for the records to stay the same (so a future change
    that stops carrying one fails the test above)."""
    if piece == "lineage":
        monkeypatch.setattr(ProcessLineage, "export_stream_state", lambda self: {"procs": {}, "package_runs": {}})
    else:
        export = Detector.export_stream_state

        def without(self: Detector) -> Dict[str, Any]:
            return {k: v for k, v in export(self).items() if k != piece}

        monkeypatch.setattr(Detector, "export_stream_state", without)
    before, after = stream()
    old, new = copy.deepcopy(fitted_model()), copy.deepcopy(fitted_model())
    list(old.iter_records(before))
    carry_stream_state(old, new)
    assert list(new.iter_records(after, new_stream=False)) != continuous()


def test_windows_of_another_length_are_not_carried():
    """A piece goes over only where its window is the same length (the rules of the reload)."""
    old, new = copy.deepcopy(fitted_model()), copy.deepcopy(fitted_model())
    list(old.iter_records(stream()[0][:200]))
    new.detectors_["context"].rate_window = old.detectors_["context"].rate_window + 1
    assert not carry_stream_state(old, new)         # the rate windows start empty
    taken = new.detectors_["context"].export_stream_state()
    given = old.detectors_["context"].export_stream_state()
    assert taken["wave"][1] is given["wave"][1]      # the wave window is the same: waves go on
    assert "rates" not in taken
    # the repeat windows have their own length (the longest pause in an episode): carried
    assert taken["repeats"][1] is given["repeats"][1]
