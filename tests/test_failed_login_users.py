"""A failed login's user is the account an attempt named, chosen by whoever tries: the context
detector leaves it out of the block (``FAILED_LOGIN_GROUPS``), so an internet brute force that
names a new account every few seconds is the routine it is on an exposed host, not a new
situation per name. Logins that succeed keep their user; a model fitted before the rule keeps
the users its blocks were fitted with."""
from __future__ import annotations

import copy
import datetime as dt
import random

import alert_factory as F
import pytest

from mimizuku import Mimizuku
from mimizuku.engine.detectors import context

GROUPS = ["syslog", "sshd", "authentication_failed", "invalid_login"]


def _try(t: dt.datetime, user: str, ip: str):
    return F.event(t, "5710", level=5, desc="sshd: Attempt to login using a non-existent user",
                   groups=GROUPS, agent="web-01", agent_id="001", srcip=ip, user=user)


def _internet_noise(days: int = 4, seed: int = 1):
    """Three tries an hour on web-01, each naming another account, from another address."""
    rng = random.Random(seed)
    out = []
    for d in range(days):
        for h in range(24):
            for _ in range(3):
                t = F.BASE + dt.timedelta(days=d, hours=h, minutes=rng.randrange(60))
                out.append(_try(t, "u%06x" % rng.getrandbits(24), f"203.0.113.{rng.randrange(1, 250)}"))
    return out


def _training():
    alerts = F.normal_fleet(days=4) + _internet_noise()
    alerts.sort(key=lambda a: a["timestamp"])
    return alerts


@pytest.fixture(scope="module")
def model():
    return Mimizuku().fit(_training())


NEXT_DAY = F.BASE + dt.timedelta(days=5, hours=11, minutes=7)


def _raw(model, alert) -> float:
    """The context detector's raw score of ``alert`` (on a copy: scores are memoised)."""
    d = copy.deepcopy(model).detectors_["context"]
    return float(d.raw_scores([d.key(alert)])[0])


def test_a_try_naming_a_new_account_is_routine(model):
    d = copy.deepcopy(model).detectors_["context"]
    a, b = _try(NEXT_DAY, "never-seen", "198.51.100.4"), _try(NEXT_DAY, "nor-this-one", "198.51.100.5")
    assert d.key(a)[0][4] == "" and d.key(a)[0] == d.key(b)[0]    # one block, whatever the name
    assert _raw(model, a) == 0.0                                   # inside the tries' cluster
    assert not copy.deepcopy(model).score_records([a])[0]["anomaly"]


def test_switched_off_every_new_name_is_a_new_situation(monkeypatch):
    monkeypatch.setattr(context, "FAILED_LOGIN_GROUPS", frozenset())
    off = Mimizuku().fit(_training())
    a = _try(NEXT_DAY, "never-seen", "198.51.100.4")
    assert off.detectors_["context"].key(a)[0][4] == "never-seen"
    assert _raw(off, a) > 0.5                                       # a block of its own, far from any


def test_a_login_that_succeeds_keeps_its_user(model):
    d = model.detectors_["context"]
    ok = F.event(NEXT_DAY, "5715", desc="sshd: authentication success.",
                 groups=["syslog", "sshd", "authentication_success"], agent="web-01", agent_id="001",
                 srcip="10.1.2.3", user="mallory")
    assert d.key(ok)[0][4] == "mallory"


def test_a_model_fitted_before_the_rule_keeps_its_users(model, tmp_path):
    model.save_model(tmp_path / "m")
    back = Mimizuku.load_model(tmp_path / "m")
    a = _try(NEXT_DAY, "never-seen", "198.51.100.4")
    assert back.detectors_["context"].key(a)[0][4] == ""          # the rule travels with the model
    old = copy.deepcopy(model)
    del old.detectors_["context"].__dict__["failed_login_users_"]   # as fitted before the rule
    assert old.detectors_["context"].key(a)[0][4] == "never-seen"
    # the nightly job must not train a new model on keys such a model computed
    assert "context" in Mimizuku().same_keys_as(model)
    assert "context" not in Mimizuku().same_keys_as(old)
    # refitting it keys as new models do
    old.fit(_training())
    assert old.detectors_["context"].key(a)[0][4] == ""
