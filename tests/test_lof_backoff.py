"""Hierarchical novelty: a user's first use of what their peers do is weaker evidence than news to the host."""
from __future__ import annotations

import datetime as dt

import alert_factory as F
import pytest

from mimizuku.engine.detectors.commands import CommandDetector
from mimizuku.engine.detectors.files import FileIntegrityDetector

ADMIN_COMMANDS = [["ls", "-la", "/var/log"], ["systemctl", "status", "nginx"], ["journalctl", "-xe"],
                  ["df", "-h"], ["tail", "-n", "200", "/var/log/syslog"], ["sudo", "-i"]]
WEB_COMMANDS = [["sh", "-c"], ["/usr/sbin/sendmail", "-t", "-i"], ["convert", "in.jpg", "out.jpg"]]


def _cmd(t, argv, user, uid):
    a = F.command(t, argv, user=user, agent="bastion-01")
    a["data"]["audit"]["uid"] = a["data"]["audit"]["euid"] = str(uid)
    return a


def _training():
    t, out = F.BASE, []
    for day in range(5):
        for i, (user, uid) in enumerate([("alice", 1001), ("bob", 1002), ("carol", 1003)]):
            for j, argv in enumerate(ADMIN_COMMANDS):
                out.append(_cmd(t + dt.timedelta(days=day, minutes=10 * i + j), argv, user, uid))
        # dave is an admin too, but in training only ever checked the disks
        out.append(_cmd(t + dt.timedelta(days=day, hours=2), ["df", "-h"], "dave", 1004))
        out.append(_cmd(t + dt.timedelta(days=day, hours=2, minutes=1), ["du", "-sh", "/srv"], "dave", 1004))
        for j, argv in enumerate(WEB_COMMANDS * 3):
            out.append(_cmd(t + dt.timedelta(days=day, hours=3, minutes=j), argv, "www-data", 33))
    return out


class NoBackoff(CommandDetector):
    def peer_group(self, key):
        return None


@pytest.fixture(scope="module")
def fitted():
    alerts = _training()
    return CommandDetector().fit(alerts), NoBackoff().fit(alerts)


def test_token_common_for_peers_scores_lower_than_token_new_to_the_agent(fitted):
    det, _ = fitted
    t = F.BASE + dt.timedelta(days=6)
    peer_habit = _cmd(t, ["journalctl", "-xe"], "dave", 1004)       # new for dave, routine for admins
    news = _cmd(t, ["ncat", "-lvp", "4444"], "dave", 1004)          # new for the whole agent
    k_habit, k_news = det.key(peer_habit), det.key(news)
    assert det.novelty(k_habit) < det.novelty(k_news)
    assert det.score_samples([peer_habit])[0] < det.score_samples([news])[0]


def test_backoff_lowers_a_peer_habit_and_leaves_news_alone(fitted):
    det, flat = fitted
    t = F.BASE + dt.timedelta(days=6)
    peer_habit = _cmd(t, ["journalctl", "-xe"], "dave", 1004)
    news = _cmd(t, ["ncat", "-lvp", "4444"], "dave", 1004)
    assert det.novelty(det.key(peer_habit)) < flat.novelty(flat.key(peer_habit))
    assert det.novelty(det.key(news)) == pytest.approx(flat.novelty(flat.key(news)))


def test_peers_are_users_of_the_same_kind(fitted):
    # www-data (a system account) reading logs is not what its kind does, however common for admins
    det, flat = fitted
    t = F.BASE + dt.timedelta(days=6)
    odd = _cmd(t, ["tail", "-n", "200", "/var/log/syslog"], "www-data", 33)
    assert det.novelty(det.key(odd)) == pytest.approx(flat.novelty(flat.key(odd)))
    same_for_admin = _cmd(t, ["tail", "-n", "200", "/var/log/syslog"], "dave", 1004)
    assert det.novelty(det.key(same_for_admin)) < det.novelty(det.key(odd))


def test_a_new_user_doing_what_peers_do_is_not_a_constant_surprise(fitted):
    det, flat = fitted
    t = F.BASE + dt.timedelta(days=6)
    newcomer = _cmd(t, ["ls", "-la", "/var/log"], "erin", 1005)
    newcomer_odd = _cmd(t, ["nmap", "-sS", "10.0.0.0/24"], "erin", 1005)
    assert det.novelty(det.key(newcomer)) < flat.novelty(flat.key(newcomer))
    assert det.novelty(det.key(newcomer)) < det.novelty(det.key(newcomer_odd))
    # that the user is new still shows, in the agent's scope
    assert any("erin" in r for r in det.rare_tokens(det.key(newcomer)))


def test_the_user_is_never_their_own_peer():
    # leave-one-out in training: a token only this user used is news, not a peer habit
    users = {"w:du": frozenset({"dave"}), "w:df": frozenset({"dave", "alice"}),
             "w:ls": frozenset({"alice", "bob", "carol", "dave"})}
    backed = CommandDetector.backed_off
    assert backed((users, 3, "dave"), ["w:du"]) == pytest.approx(0.5)            # as without back-off
    assert backed((users, 3, "dave"), ["w:df"]) == pytest.approx(0.5 * (1 - 1 / 2))  # one peer halves
    assert backed((users, 3, "dave"), ["w:ls"]) == pytest.approx(0.5 * (1 - 3 / 4))  # three peers: a quarter
    # tokens no peer used are not hidden by a peer habit next to them
    assert backed((users, 3, "dave"), ["w:ls", "w:du", "w:nc"]) == pytest.approx(1.0)


def _fim(t, path, user, uid, process):
    a = F.fim(t, path, user=user, process=process, agent="db-01")
    for who in ("effective_user", "user"):
        a["syscheck"]["audit"][who]["id"] = str(uid)
    return a


def test_files_new_admin_editing_own_history_backs_off_to_admins():
    t, alerts = F.BASE, []
    for day in range(4):
        for i, (user, uid) in enumerate([("alice", 1001), ("bob", 1002), ("carol", 1003)]):
            alerts.append(_fim(t + dt.timedelta(days=day, minutes=i), f"/home/{user}/.bash_history", user, uid,
                               "/usr/bin/bash"))
        for i, lib in enumerate(("libssl.so", "libxml2.so", "libz.so")):
            alerts.append(_fim(t + dt.timedelta(days=day, hours=1, minutes=i), f"/usr/lib/x86_64-linux-gnu/{lib}",
                               "root", 0, "/usr/bin/dpkg"))
        alerts.append(_fim(t + dt.timedelta(days=day, hours=2), "/etc/hosts", "root", 0, "/usr/bin/vim.basic"))
    det = FileIntegrityDetector().fit(alerts)
    later = t + dt.timedelta(days=6)
    own = det.key(_fim(later, "/home/erin/.bash_history", "erin", 1005, "/usr/bin/bash"))
    odd = det.key(_fim(later, "/etc/sudoers.d/erin", "erin", 1005, "/usr/bin/tee"))
    assert det.novelty(own) < det.novelty(odd)
    # a package manager writing a file named after a new package, where it always writes
    pkg = det.key(_fim(later, "/usr/lib/x86_64-linux-gnu/libpam.so", "root", 0, "/usr/bin/dpkg"))
    by_hand = det.key(_fim(later, "/usr/lib/x86_64-linux-gnu/libpam.so", "root", 0, "/usr/bin/cp"))
    assert det.novelty(pkg) < det.novelty(by_hand)
