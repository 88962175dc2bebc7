"""Tests of the synthetic Wazuh alert generator (mimizuku.tools.synth)."""
from __future__ import annotations

import collections
import gzip
import json
import os
import re
from datetime import date, datetime, timedelta, timezone

import pytest

from mimizuku.core import fields
from mimizuku.tools.synth import (
    EPISODE_KINDS,
    FleetConfig,
    HostSpec,
    episodes,
    generate,
    main,
    strip_labels,
    write_archive_tree,
    write_jsonl,
)

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
ID_RE = re.compile(r"^(\d+)\.(\d+)$")
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
START = date(2025, 3, 3)  # a Monday; Tuesday is patch day
# Rule levels of the Wazuh 4.x ruleset (0015-ossec, 0095-sshd, 0085-pam, 0020-syslog, 0245-web, 0365-auditd).
WAZUH_LEVELS = {"550": 7, "553": 7, "554": 5, "5715": 3, "5710": 5, "5712": 10, "5760": 5, "5763": 10,
                "5402": 3, "5501": 3, "5502": 3, "80792": 3, "31101": 5, "31151": 10, "2902": 7, "2904": 7,
                "10100": 4, "5902": 8, "592": 8, "591": 3}


def _cfg(**kw):
    base = dict(days=4, start=START, seed=11, scale=0.05, attack_days=2)
    base.update(kw)
    return FleetConfig(**base)


@pytest.fixture(scope="module")
def alerts():
    return list(generate(_cfg()))


@pytest.fixture(scope="module")
def eps():
    return episodes(_cfg())


def _by_episode(alerts):
    out = collections.defaultdict(list)
    for a in alerts:
        if a["_label"]["attack"]:
            out[a["_label"]["episode"]].append(a)
    return out


# ------------------------------------------------------------------------------- determinism

def test_same_seed_same_alerts_other_seed_other_alerts(alerts):
    again = list(generate(_cfg()))
    assert again == alerts
    other = list(generate(_cfg(seed=12)))
    assert [a["full_log"] for a in other[:200] if "full_log" in a] != \
           [a["full_log"] for a in alerts[:200] if "full_log" in a]


def test_benign_activity_does_not_depend_on_attacks(alerts):
    quiet = list(generate(_cfg(attacks=False)))
    assert all(not a["_label"]["attack"] for a in quiet)
    benign = [a for a in alerts if not a["_label"]["attack"]]
    assert len(benign) == len(quiet)
    assert [a["timestamp"] for a in benign] == [a["timestamp"] for a in quiet]
    assert [a["rule"]["id"] for a in benign] == [a["rule"]["id"] for a in quiet]


# ------------------------------------------------------------------------------- alert layout

def test_every_alert_has_the_wazuh_layout(alerts):
    assert len(alerts) > 1000
    for a in alerts:
        keys = list(a)
        assert keys[:5] == ["timestamp", "rule", "agent", "manager", "id"], keys
        assert keys[-2:] == ["location", "_label"], keys
        assert TS_RE.match(a["timestamp"]), a["timestamp"]
        rule = a["rule"]
        assert isinstance(rule["level"], int) and 0 < rule["level"] <= 15
        assert isinstance(rule["id"], str) and rule["id"].isdigit()
        assert isinstance(rule["description"], str) and rule["description"]
        assert isinstance(rule["firedtimes"], int) and rule["firedtimes"] >= 1
        assert isinstance(rule["mail"], bool)
        assert rule["groups"] and all(isinstance(g, str) for g in rule["groups"])
        assert not any(g.startswith(("pci_dss_", "gdpr_", "hipaa_", "nist_800_53_", "tsc_", "gpg13_"))
                       for g in rule["groups"]), rule["groups"]
        if "mitre" in rule:
            m = rule["mitre"]
            assert list(m) == ["id", "tactic", "technique"] and len(m["id"]) == len(m["technique"])
        agent = a["agent"]
        assert re.match(r"^\d{3}$", agent["id"]) and agent["name"]
        assert ("ip" in agent) == (agent["id"] != "000")
        assert a["manager"]["name"]
        assert ID_RE.match(a["id"])
        assert isinstance(a["decoder"], dict)
        assert isinstance(a["location"], str) and a["location"]
        lab = a["_label"]
        assert set(lab) == {"attack", "episode", "kind"} and isinstance(lab["attack"], bool)
        if rule["id"] in WAZUH_LEVELS:
            assert rule["level"] == WAZUH_LEVELS[rule["id"]], rule
        if rule.get("frequency"):
            assert a.get("previous_output") and a["previous_output"].count("\n") == rule["frequency"] - 2


def test_fim_alerts(alerts):
    fim = [a for a in alerts if "syscheck" in a]
    assert {a["rule"]["id"] for a in fim} == {"550", "553", "554"}
    modes = collections.Counter()
    for a in fim:
        sc = a["syscheck"]
        ev = {"550": "modified", "553": "deleted", "554": "added"}[a["rule"]["id"]]
        assert sc["event"] == ev and a["location"] == "syscheck"
        assert a["full_log"].startswith(f"File '{sc['path']}' {ev}\nMode: {sc['mode']}\n")
        assert sc["mode"] in ("whodata", "realtime", "scheduled")
        modes[sc["mode"]] += 1
        for k in ("size_after", "perm_after", "uid_after", "gid_after", "md5_after", "sha1_after", "sha256_after",
                  "uname_after", "gname_after", "mtime_after"):
            assert isinstance(sc[k], str), k
        assert isinstance(sc["inode_after"], int)
        assert len(sc["md5_after"]) == 32 and len(sc["sha256_after"]) == 64
        if ev == "modified":
            assert sc["changed_attributes"]
            assert f"Changed attributes: {','.join(sc['changed_attributes'])}\n" in a["full_log"]
            for attr in sc["changed_attributes"]:
                before = {"size": "size_before", "permission": "perm_before", "md5": "md5_before",
                          "mtime": "mtime_before", "inode": "inode_before"}.get(attr)
                if before:
                    assert before in sc, (attr, sc)
        if sc["mode"] == "whodata":
            au = sc["audit"]
            assert set(au) >= {"user", "process", "group", "effective_user"}
            assert set(au["process"]) == {"id", "name", "cwd", "parent_name", "parent_cwd", "ppid"}
            assert au["process"]["name"].startswith("/")
            assert fields.file_user(a) and fields.file_process(a)
        else:
            assert "audit" not in sc
    assert modes["whodata"] and modes["realtime"] and modes["scheduled"]


def test_audit_command_alerts(alerts):
    cmds = [a for a in alerts if a["rule"]["id"] == "80792"]
    assert len(cmds) > 500
    hidden = 0
    for a in cmds:
        au = a["data"]["audit"]
        assert au["key"] == "audit-wazuh-c" and au["type"] == "SYSCALL" and au["syscall"] == "59"
        assert a["rule"]["description"] == f"Audit: Command: {au['exe']}."
        for k in ("uid", "euid", "auid", "gid", "pid", "ppid", "session", "id"):
            assert isinstance(au[k], str) and au[k].isdigit(), k
        argc = int(au["execve"]["argc"])
        args = {k: v for k, v in au["execve"].items() if k != "argc"}
        assert argc >= 1 and set(args) <= {f"a{i}" for i in range(min(argc, 8))}
        assert ' UID="' in a["full_log"] and "\x1dARCH=x86_64" in a["full_log"]
        assert a["full_log"].startswith("type=SYSCALL msg=audit(")
        record = a["full_log"].split(" type=EXECVE msg=audit(", 1)[1].split(" type=CWD ", 1)[0]
        tokens = record.split(": ", 1)[1].split(" ")
        assert tokens[0] == f"argc={argc}" and len(tokens) == argc + 1
        for i, tok in enumerate(tokens[1:]):
            name, _, value = tok.partition("=")
            assert name == f"a{i}"
            if value.startswith('"'):
                assert value.endswith('"') and len(value) > 2
                if i < 8:
                    assert args[name] == value[1:-1]
            else:  # auditd hex-encodes an argument with a space, quote, control or non-ASCII byte
                raw = bytes.fromhex(value)
                assert raw == b"" or re.search(rb'[\x00-\x20"\x7f-\xff]', raw), raw
                assert name not in args
                hidden += 1
        assert fields.is_command(a) and fields.command_user(a)
    assert hidden > 50


def test_timestamps_in_order_within_the_period(alerts):
    ts = [a["timestamp"] for a in alerts]
    assert ts == sorted(ts)
    assert ts[0][:10] >= START.isoformat()
    assert ts[-1][:10] <= (START + timedelta(days=3)).isoformat()


def test_ids_unique_increasing_and_from_the_alert_second(alerts):
    ids = [tuple(int(x) for x in ID_RE.match(a["id"]).groups()) for a in alerts]
    assert len(set(ids)) == len(ids)
    assert all(x < y for x, y in zip(ids, ids[1:]))
    for a, (sec, _) in zip(alerts, ids):
        stamp = datetime.strptime(a["timestamp"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        assert int(stamp.timestamp()) == sec


# ------------------------------------------------------------------------------- episodes and labels

def test_episode_metadata_matches_the_labelled_alerts(alerts, eps):
    by_ep = _by_episode(alerts)
    assert {e["episode"] for e in eps} == set(by_ep)
    assert sorted(e["kind"] for e in eps) == sorted(EPISODE_KINDS)
    for e in eps:
        got = by_ep[e["episode"]]
        assert e["n_alerts"] == len(got) > 0
        assert e["start"] == min(a["timestamp"] for a in got)
        assert e["end"] == max(a["timestamp"] for a in got)
        assert e["hosts"] == sorted({a["agent"]["name"] for a in got})
        assert e["host"] in e["hosts"]
        assert all(a["_label"]["kind"] == e["kind"] for a in got)
        assert e["episode"] == f"{e['kind']}#1"


def test_no_attack_before_the_attack_window(alerts):
    first_attack_day = (START + timedelta(days=2)).isoformat()
    attack = [a for a in alerts if a["_label"]["attack"]]
    assert attack and all(a["timestamp"][:10] >= first_attack_day for a in attack)
    assert all(a["_label"] == {"attack": False, "episode": "-", "kind": "-"}
               for a in alerts if not a["_label"]["attack"])
    one = list(generate(_cfg(attack_days=1, episodes=["web_scan_flood", "miner", "miner"])))
    last = (START + timedelta(days=3)).isoformat()
    kinds = collections.Counter(a["_label"]["episode"] for a in one if a["_label"]["attack"])
    assert set(kinds) == {"web_scan_flood#1", "miner#1", "miner#2"}
    assert all(a["timestamp"][:10] == last for a in one if a["_label"]["attack"])


def _has(got, pred):
    return any(pred(a) for a in got)


def _cmd(a):
    return fields.command_line(a) if a["rule"]["id"] == "80792" else ""


def test_each_episode_kind_has_its_telltale_alerts(alerts):
    ep = {k.split("#")[0]: v for k, v in _by_episode(alerts).items()}
    ws = ep["web_shell"]
    assert _has(ws, lambda a: a["rule"]["id"] == "554" and a["syscheck"]["path"].startswith("/var/www/")
                and a["syscheck"]["path"].endswith(".php") and fields.file_user(a) == "www-data")
    assert _has(ws, lambda a: a["rule"]["id"] == "80792" and fields.command_user(a) == "www-data"
                and a["data"]["audit"]["euid"] == "33")
    assert _has(ep["reverse_shell"], lambda a: re.search(r"^(nc |bash -i|python3 -c|sh -c)", _cmd(a)))
    assert _has(ep["persistence"], lambda a: "syscheck" in a and re.search(
        r"^(/var/spool/cron/crontabs/root|/etc/systemd/system/.+\.service|/etc/rc\.local)$", a["syscheck"]["path"]))
    uid0 = ep["uid0_user"]
    assert _has(uid0, lambda a: _cmd(a).startswith("useradd -o -u 0"))
    assert _has(uid0, lambda a: a["rule"]["id"] == "5902" and "UID=0" in a["full_log"])
    assert _has(uid0, lambda a: a["rule"]["id"] == "550" and a["syscheck"]["path"] == "/etc/passwd"
                and fields.file_process(a) == "/usr/sbin/useradd")
    assert _has(ep["ssh_key_backdoor"], lambda a: a["rule"]["id"] == "550"
                and a["syscheck"]["path"].endswith("/.ssh/authorized_keys"))
    assert _has(ep["miner"], lambda a: "stratum+tcp://" in _cmd(a))
    assert _has(ep["log_wiping"], lambda a: a["rule"]["id"] == "592" or _cmd(a).startswith(("shred", "truncate")))
    suid = ep["suid_shell"]
    assert _has(suid, lambda a: a["rule"]["id"] == "554" and a["syscheck"]["path"] == "/usr/local/bin/.sh")
    assert _has(suid, lambda a: a["rule"]["id"] == "550" and "s" in a["syscheck"]["perm_after"]
                and "permission" in a["syscheck"]["changed_attributes"])
    login = ep["unusual_login_sudo"]
    first = next(a for a in login if a["rule"]["id"] in ("5715", "10100"))
    assert fields.ip_class(fields.src_ip(first)) == "public" and int(first["timestamp"][11:13]) < 6
    assert _has(login, lambda a: a["rule"]["id"] == "5402" and "su" in a["data"]["command"])
    bf = ep["ssh_bruteforce_success"]
    ips = {fields.src_ip(a) for a in bf if fields.src_ip(a)}
    assert len(ips) == 1
    assert sum(a["rule"]["id"] in ("5710", "5760") for a in bf) >= 8
    assert _has(bf, lambda a: a["rule"]["id"] in ("5712", "5763"))
    ok = [i for i, a in enumerate(bf) if a["rule"]["id"] in ("5715", "10100")]
    assert ok and all(bf[i]["rule"]["id"] not in ("5710", "5760") for i in range(ok[0] + 1, len(bf)))
    scan = ep["web_scan_flood"]
    four = [a for a in scan if a["rule"]["id"] in ("31101", "31151")]
    assert len(four) >= 100 and len({fields.src_ip(a) for a in four}) == 1
    t0 = datetime.strptime(four[0]["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    t1 = datetime.strptime(four[-1]["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    assert (t1 - t0).total_seconds() < 300
    assert _has(scan, lambda a: a["rule"]["id"] == "31151")


def test_benign_data_has_confounders(alerts):
    benign = [a for a in alerts if not a["_label"]["attack"]]
    rids = collections.Counter(a["rule"]["id"] for a in benign)
    assert rids["10100"] >= 1  # the new admin's first login
    assert rids["5902"] >= 1  # her account being created
    assert rids["5712"] + rids["5763"] + rids["31151"] + rids["9751"] >= 1  # internet noise that gets nowhere
    assert rids["2902"] >= 1  # patch day
    assert _has(benign, lambda a: a["rule"]["id"] == "554" and a["syscheck"]["path"].startswith("/var/www/")
                and fields.file_user(a) == "www-data")  # uploads written by the web server


def test_strip_labels(alerts):
    plain = list(strip_labels(alerts[:50]))
    assert all("_label" not in a for a in plain) and all("_label" in a for a in alerts[:50])
    assert [a["id"] for a in plain] == [a["id"] for a in alerts[:50]]


# ------------------------------------------------------------------------------- volume

def test_scale_controls_volume_roughly_linearly():
    small = sum(1 for _ in generate(_cfg(days=3, scale=0.1, attacks=False)))
    big = sum(1 for _ in generate(_cfg(days=3, scale=0.3, attacks=False)))
    assert 2.6 < big / small < 3.4, (small, big)


# ------------------------------------------------------------------------------- files

def _read_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def test_write_jsonl_plain_and_gzip(tmp_path, alerts):
    some = alerts[:300]
    p = tmp_path / "a.jsonl"
    assert write_jsonl(p, some) == 300
    assert _read_lines(str(p)) == some
    g = tmp_path / "a.jsonl.gz"
    assert write_jsonl(g, some) == 300
    with open(g, "rb") as fh:
        assert fh.read(2) == b"\x1f\x8b"
    assert _read_lines(str(g)) == some
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_archive_tree_past_days_today_and_parts(tmp_path):
    today = datetime.now(timezone.utc).date()
    cfg = FleetConfig(days=3, start=today - timedelta(days=2), seed=5, scale=0.03, attack_days=1)
    al = list(generate(cfg))
    per_day = collections.Counter(a["timestamp"][:10] for a in al)
    res = write_archive_tree(tmp_path, al)
    base = tmp_path / "logs" / "alerts"
    expect = []
    for k in range(3):
        d = cfg.resolved_start() + timedelta(days=k)
        name = f"ossec-alerts-{d.day:02d}.json" + ("" if d == today else ".gz")
        expect.append(str(base / str(d.year) / MONTHS[d.month - 1] / name))
    assert sorted(res["files"]) == sorted(expect)
    assert res["alerts"] == len(al) and res["days"] == 3
    live = base / "alerts.json"
    assert res["alerts_json"] == str(live)
    assert os.stat(live).st_ino == os.stat(expect[-1]).st_ino  # a hard link, as analysisd keeps it
    total = []
    for path in sorted(expect):
        rows = _read_lines(path)
        assert len({r["timestamp"][:10] for r in rows}) == 1
        total += rows
    assert sorted(total, key=lambda a: a["timestamp"]) == sorted(al, key=lambda a: a["timestamp"])

    parts = tmp_path / "parts"
    busiest = max(per_day, key=per_day.get)
    res = write_archive_tree(parts, al, part_lines=per_day[busiest] // 2 + 1)
    names = sorted(os.path.basename(f) for f in res["files"])
    dd = busiest[8:10]
    ext = ".json" if busiest == today.isoformat() else ".json.gz"
    assert f"ossec-alerts-{dd}.json.gz" in names  # the first part is rotated, hence compressed
    assert f"ossec-alerts-{dd}-001{ext}" in names
    assert all(re.match(r"^ossec-alerts-\d{2}(-\d{3})?\.json(\.gz)?$", n) for n in names)
    assert sum(len(_read_lines(f)) for f in res["files"]) == len(al)
    assert all(f.endswith(".gz") for f in res["files"][:-1])  # rotated parts are compressed


def test_archive_tree_of_past_days_has_no_alerts_json(tmp_path):
    al = list(generate(FleetConfig(days=2, start=date(2024, 12, 31), seed=1, scale=0.02, attacks=False)))
    res = write_archive_tree(tmp_path, al)
    assert res["alerts_json"] is None and not (tmp_path / "logs" / "alerts" / "alerts.json").exists()
    assert sorted(os.path.relpath(f, tmp_path) for f in res["files"]) == [
        os.path.join("logs", "alerts", "2024", "Dec", "ossec-alerts-31.json.gz"),
        os.path.join("logs", "alerts", "2025", "Jan", "ossec-alerts-01.json.gz")]
    for f in res["files"]:
        with gzip.open(f, "rt") as fh:
            assert all(json.loads(line)["rule"]["id"] for line in fh)


def test_archive_tree_refuses_unordered_alerts(tmp_path, alerts):
    with pytest.raises(ValueError):
        write_archive_tree(tmp_path, list(reversed(alerts)))


# ------------------------------------------------------------------------------- configuration and CLI

@pytest.mark.parametrize("kw", [dict(days=0), dict(scale=0), dict(scale=float("nan")), dict(attack_days=-1),
                                dict(episodes=["web_shell", "nope"]),
                                dict(hosts=[HostSpec("a", "web"), HostSpec("a", "db")]),
                                dict(hosts=[HostSpec("a", "mainframe")]), dict(hosts=[])])
def test_bad_configuration_is_refused(kw):
    with pytest.raises(ValueError):
        generate(_cfg(**kw))


def test_custom_fleet():
    hosts = [HostSpec("www1", "web", "192.168.5.10"), HostSpec("jump", "bastion", "192.168.5.2")]
    al = list(generate(_cfg(hosts=hosts, days=3, scale=0.1)))
    assert {a["agent"]["name"] for a in al} == {"www1", "jump"}
    assert {a["agent"]["id"] for a in al} == {"001", "002"}
    eps = episodes(_cfg(hosts=hosts, days=3, scale=0.1))
    assert {h for e in eps for h in e["hosts"]} <= {"www1", "jump"}
    assert sum(e["n_alerts"] for e in eps) == sum(a["_label"]["attack"] for a in al)


def test_cli_writes_tree_jsonl_and_episodes(tmp_path, capsys):
    out, jl, ep = tmp_path / "tree", tmp_path / "all.jsonl.gz", tmp_path / "eps.json"
    rc = main(["--out", str(out), "--jsonl", str(jl), "--episodes-out", str(ep), "--days", "2", "--seed", "3",
               "--scale", "0.02", "--start", "2025-01-06", "--attack-days", "1"])
    assert rc == 0
    rows = _read_lines(str(jl))
    assert rows and any(r["_label"]["attack"] for r in rows)
    files = sorted(os.listdir(out / "logs" / "alerts" / "2025" / "Jan"))
    assert files == ["ossec-alerts-06.json.gz", "ossec-alerts-07.json.gz"]
    meta = json.loads(ep.read_text())
    assert sum(e["n_alerts"] for e in meta) == sum(r["_label"]["attack"] for r in rows)
    assert "alerts" in capsys.readouterr().err


def test_cli_errors(tmp_path, capsys):
    assert main(["--days", "1"]) == 2
    assert main(["--jsonl", str(tmp_path / "x.jsonl"), "--days", "0"]) == 2
    assert main(["--jsonl", str(tmp_path / "x.jsonl"), "--episodes", "bogus"]) == 2
    assert main(["--jsonl", str(tmp_path / "missing" / "x.jsonl"), "--days", "1", "--scale", "0.01"]) == 1
    err = capsys.readouterr().err
    assert "bogus" in err and "cannot write" in err


def test_cli_no_labels(tmp_path):
    jl = tmp_path / "plain.jsonl"
    assert main(["--jsonl", str(jl), "--days", "1", "--scale", "0.01", "--no-labels", "-q",
                 "--start", "2025-01-06"]) == 0
    rows = _read_lines(str(jl))
    assert rows and all("_label" not in r for r in rows)
