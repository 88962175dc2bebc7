"""Fleet waves (mimizuku.engine.fleet): the same new situation on several agents within the hour is a
roll-out; the first host is judged in full, the k-th other one gets 1/(1+k) of its raw score."""
from __future__ import annotations

import datetime as dt

import alert_factory as F
import numpy as np
import pytest

from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.context import ContextDetector
from mimizuku.engine.fleet import FleetWave

M = dt.timedelta(minutes=1)
HOSTS = (("web-01", "001"), ("web-02", "002"), ("db-01", "003"))
DAY = F.BASE + dt.timedelta(days=6, hours=10)


@pytest.fixture(scope="module")
def fleet():
    return F.normal_fleet(days=4)


def test_wave_counts_other_agents_within_the_window():
    w = FleetWave(window=600)
    assert w.spread("sig", "a", 0) == 0
    assert w.spread("sig", "a", 10) == 0          # the same agent again is no wave
    assert w.spread("sig", "b", 20) == 1
    assert w.spread("sig", "c", 30) == 2
    assert w.spread("other", "d", 40) == 0        # another situation
    assert w.spread("sig", "d", 615) == 2         # a (10) expired; b (20) and c (30) inside
    assert w.spread("sig", "e", 2000) == 0        # everything expired
    assert w.spread("sig", "f", None) == 0        # no time: no wave


def test_wave_memory_is_bounded():
    w = FleetWave(window=3600, max_signatures=100, max_agents=10)
    for i in range(1000):
        w.spread(("sig", i), "a", i)
    for i in range(50):
        w.spread("many", f"agent-{i}", 1000 + i)
    signatures, most_agents = w.tracked()
    assert signatures <= 100 and most_agents <= 10
    assert w.spread("many", "one-more", 1050) == 10   # the ten newest agents, not all fifty


# --- context -------------------------------------------------------------------------------

def _new_user(t, host, hid):
    return F.event(t, "5902", level=8, desc="New user added to the system.", groups=["adduser", "syslog"],
                   agent=host, agent_id=hid, user="erin")


@pytest.fixture(scope="module")
def context(fleet):
    return ContextDetector().fit(fleet)


def _raw(det, alerts):
    """Raw scores of alerts read as one stream (the detector's per-stream state starts anew)."""
    det.start_stream()
    return det.raw_scores([det.key(a) for a in alerts])


def test_context_rollout_is_shared_along_the_wave(context):
    wave = [_new_user(DAY + i * M, h, hid) for i, (h, hid) in enumerate(HOSTS)]
    raw = _raw(context, wave)
    alone = np.array([_raw(context, [a])[0] for a in wave])   # each host on its own
    assert (alone > 0).all()
    assert np.allclose(raw, alone / np.array([1, 2, 3]))
    keys = [context.key(a) for a in wave]
    context.start_stream()
    keys = [context.key(a) for a in wave]
    assert "fleet-wide change" in context.explain(keys[2], wave[2])[0]
    assert not any("fleet-wide" in r for r in context.explain(keys[0], wave[0]))


def _probe(t, host, hid, srcip=None):
    return F.event(t, "31101", level=5, desc="Web server 400 error code.", groups=["web", "accesslog", "attack"],
                   agent=host, agent_id=hid, srcip=srcip)


def _bursts(make, **kw):
    """Four alerts a second apart on each host, the hosts a minute apart."""
    return [make(DAY + i * M + j * dt.timedelta(seconds=1), h, hid, **kw)
            for i, (h, hid) in enumerate(HOSTS) for j in range(4)]


def test_context_one_host_and_bursts_from_a_source_are_no_wave(context):
    # the same new situation on one host only, an hour and more apart, or as a burst from one
    # address on each host (a scan)
    apart = [_new_user(DAY + i * 90 * M, h, hid) for i, (h, hid) in enumerate(HOSTS)]
    assert np.allclose(_raw(context, apart), [_raw(context, [a])[0] for a in apart])
    burst = _bursts(_probe, srcip="203.0.113.9")
    keys_raw = _raw(context, burst)
    context.start_stream()
    waves = [context.key(a)[7] for a in burst]
    assert waves[0] == 0 and max(waves[1:4]) == 0          # a burst: none of it is a wave
    assert waves[4] == 1                                   # the next host's first alert is,
    assert waves[5:8] == [0, 0, 0]                         # the rest of its burst is not
    assert keys_raw[5] == pytest.approx(_raw(context, burst[:4] + burst[4:6])[5])


def _package(t, host, hid):
    return F.event(t, "2902", level=7, desc="New dpkg (Debian Package) installed.",
                   groups=["config_changed", "dpkg", "syslog"], agent=host, agent_id=hid)


def test_context_a_burst_naming_no_source_joins_the_wave(context):
    # an upgrade rolled out host after host: dpkg fires several times a minute on each, with no
    # source address. The first host is judged in full; all of the next hosts' bursts share
    burst = _bursts(_package)
    context.start_stream()
    waves = [context.key(a)[7] for a in burst]
    assert waves == [0] * 4 + [1] * 4 + [2] * 4
    raw = _raw(context, burst)
    alone = _raw(context, burst[4:8])                      # the second host's burst on its own
    assert (alone > 0).all()
    assert np.allclose(raw[4:8], alone / 2)
    # the same bursts from an address are scans: no wave (the rule above, switched on by srcip)
    sourced = _bursts(_probe, srcip="198.51.100.7")
    context.start_stream()
    assert [context.key(a)[7] for a in sourced][4:8] == [1, 0, 0, 0]


def _logins_on_every_host(start):
    """alice's ssh login from the same address on each host, a minute apart."""
    return [F.event(start + i * M, "5715", desc="sshd: authentication success.",
                    groups=["syslog", "sshd", "authentication_success"], agent=h, agent_id=hid,
                    srcip="10.1.2.3", user="alice") for i, (h, hid) in enumerate(HOSTS)]


def test_context_routine_situations_never_form_a_wave(context, fleet):
    # logins that happen everywhere every day: known blocks at known hours
    usual = _logins_on_every_host(F.BASE + dt.timedelta(days=6, hours=10))
    context.start_stream()
    assert [context.key(a)[7] for a in usual] == [0, 0, 0]


# --- commands ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def commands(fleet):
    det = CommandDetector()
    return det.fit([a for a in fleet if det.applies(a)])


def test_commands_rollout_is_shared_along_the_wave(commands):
    wave = [F.command(DAY + i * 10 * M, ["reboot"], user="root", agent=h, agent_id=hid)
            for i, (h, hid) in enumerate(HOSTS)]
    raw = _raw(commands, wave)
    alone = np.array([_raw(commands, [a])[0] for a in wave])
    assert np.allclose(raw, alone / np.array([1, 2, 3]))
    assert commands.predict(wave[:1]).tolist() == [1]       # the first host is judged in full
    commands.start_stream()
    keys = [commands.key(a) for a in wave]
    assert "fleet-wide change" in commands.explain(keys[1], wave[1])[0]


def test_commands_a_different_user_or_a_known_command_is_no_wave(commands):
    first = F.command(DAY, ["reboot"], user="root", agent="web-01", agent_id="001")
    other_user = F.command(DAY + M, ["reboot"], user="mallory", agent="web-02", agent_id="002")
    routine = F.command(DAY + 2 * M, ["/usr/sbin/logrotate", "/etc/logrotate.conf"], user="root",
                        agent="db-01", agent_id="003")
    commands.start_stream()
    assert [commands.key(a)[6] for a in (first, other_user, routine)] == [0, 0, 0]


def test_context_a_known_rule_at_an_hour_never_seen_forms_a_wave(context):
    # logins at 03:00 (never at that hour in training) on every host within minutes
    logins = _logins_on_every_host(F.BASE + dt.timedelta(days=6, hours=3))
    context.start_stream()
    assert [context.key(a)[7] for a in logins] == [0, 1, 2]


def test_training_never_counts_waves_even_from_shared_keys(commands, fleet):
    # the nightly job lets the new model reuse the keys its filter (a model in use) computed
    wave = [F.command(DAY + i * 10 * M, ["reboot"], user="root", agent=h, agent_id=hid)
            for i, (h, hid) in enumerate(HOSTS)]
    commands.start_stream()
    shared = {id(a): commands.key(a) for a in wave}
    assert [k[6] for k in shared.values()] == [0, 1, 2]
    new = CommandDetector()
    new.begin_fit()
    for a in [a for a in fleet if new.applies(a)] + wave:
        new.observe(a, key=shared.get(id(a)))   # the seam the nightly job counts shared keys through
    new.end_fit()
    assert all(k[6] == 0 for k in new.ref_keys_)
    assert sum(1 for k in new.ref_keys_ if "prog:reboot" in k[1]) == 3   # one situation per agent


def test_context_keys_without_a_started_stream_still_track_waves(context):
    # a model as loaded from disk holds no stream state, and is asked for keys without a
    # start_stream (the resident scorer's first alerts after loading it)
    import pickle

    loaded = pickle.loads(pickle.dumps(context))
    wave = [_new_user(DAY + i * M, h, hid) for i, (h, hid) in enumerate(HOSTS)]
    assert [loaded.key(a)[7] for a in wave] == [0, 1, 2]
