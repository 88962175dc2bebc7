"""RetrainConfig: one settings table makes the fields, the `mimizuku retrain` options (with help,
in their groups) and the checks of their values."""
import argparse

import pytest

from mimizuku.nightly.cli import add_parser
from mimizuku.nightly.config import DEFAULT_MIN_ALERTS, RetrainConfig


def _parser():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers()
    return add_parser(sub), ap


def _cfg(*argv):
    _, ap = _parser()
    return RetrainConfig.from_args(ap.parse_args(["retrain", *argv]))


def test_defaults_and_paths_under_the_wazuh_home(monkeypatch):
    monkeypatch.delenv("MIMIZUKU_DASK_SCHEDULER", raising=False)
    c = _cfg()
    assert str(c.wazuh_home) == "/var/ossec" and str(c.model_dir) == "/var/ossec/mimizuku/models"
    assert (c.days, c.keep, c.day, c.dask, c.retention_days) == (14, 5, None, None, 90.0)
    assert c.min_alerts == DEFAULT_MIN_ALERTS and c.min_alerts is not DEFAULT_MIN_ALERTS
    assert c.anomaly_filter and c.batch and c.sql and c.syslog and c.report and not c.resend_syslog
    assert c.sql_url == "sqlite:////var/ossec/mimizuku/models/mimizuku.db"
    assert c.params == {"contamination": None, "n_neighbors": None, "eps": None, "min_samples": None}


def test_options_set_fields(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMIZUKU_DASK_SCHEDULER", "tcp://sched:8786")
    url = tmp_path / "db"
    url.write_text("mysql://u:pw@h/db\n")
    url.chmod(0o600)
    c = _cfg("--wazuh-home", str(tmp_path), "--days", "3", "--day", "2026-01-02", "--detectors", "files, commands",
             "--contamination", "0.01", "--learn-flagged", "--min-alerts", "files=3", "--no-batch",
             "--db-url-file", str(url), "--no-retention", "--no-syslog", "--no-report", "--syslog-select", "all",
             "--dask-insecure")
    assert c.model_dir == tmp_path / "mimizuku" / "models" and c.days == 3 and str(c.day) == "2026-01-02"
    assert c.params["detectors"] == ("files", "commands") and c.params["contamination"] == 0.01
    assert not (c.anomaly_filter or c.batch or c.syslog or c.report) and c.retention_days is None
    assert c.min_alerts == {**DEFAULT_MIN_ALERTS, "files": 3} and c.db_url == "mysql://u:pw@h/db"
    assert c.syslog_select == "all" and c.dask == "tcp://sched:8786"   # --dask's default: the environment
    assert c.dask_insecure and c.dask_tls is None
    assert _cfg("--dask", "local").dask is None


@pytest.mark.parametrize("argv, message", [
    (["--days", "0"], "--days must be a whole number >= 1, got 0"),
    (["--keep", "0"], "--keep must be >= 1"),
    (["--day", "yesterday"], "--day 'yesterday' is not a date (YYYY-MM-DD)"),
    (["--min-alerts", "files=x"], "give N or DETECTOR=N"),
    (["--min-alerts", "-1"], "must be >= 0"),
    (["--dask", "nowhere"], "is not a Dask scheduler address"),
    (["--dask-timeout", "0"], "--dask-timeout must be in (0, 3600] seconds"),
])
def test_values_are_checked_with_the_option_in_the_message(argv, message):
    with pytest.raises(ValueError) as e:
        _cfg(*argv)
    assert message in str(e.value)
    with pytest.raises(ValueError):  # the same checks for keywords
        RetrainConfig(days=0)


def test_every_option_has_help_and_the_groups_are_kept():
    p, _ = _parser()
    groups = {g.title: [a.option_strings[0] for a in g._group_actions] for g in p._action_groups}
    assert groups["where"][:2] == ["--wazuh-home", "--model-dir"]
    assert "--learn-flagged" in groups["model (default: the current model's settings)"]
    assert {"--no-batch", "--no-sql", "--no-retention", "--no-syslog", "--no-report", "--summary-json",
            "--verbose"} <= set(groups["outputs"])
    assert groups["validation"] == ["--min-alerts", "--max-rate-ratio", "--rate-floor", "--max-day-rate"]
    for action in p._actions:
        assert action.help, action.option_strings


def test_the_db_url_file_is_read_as_a_secret(tmp_path):
    """issue 17, item 7: a URL file others may read is refused (its content never quoted)."""
    url = tmp_path / "db"
    url.write_text("mysql://u:s3cret@h/db\n")
    url.chmod(0o644)
    with pytest.raises(ValueError) as e:
        _cfg("--wazuh-home", str(tmp_path), "--db-url-file", str(url))
    assert "readable or writable by group or others" in str(e.value) and "s3cret" not in str(e.value)
    link = tmp_path / "link"
    link.symlink_to(url)
    url.chmod(0o600)
    with pytest.raises(ValueError, match="symlink"):
        _cfg("--wazuh-home", str(tmp_path), "--db-url-file", str(link))
    assert _cfg("--wazuh-home", str(tmp_path), "--db-url-file", str(url)).db_url == "mysql://u:s3cret@h/db"
