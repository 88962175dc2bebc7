"""The settings table: one row makes a dataclass field, an option with help, and a checked value."""
import argparse

import pytest

from mimizuku.core.settings import Setting, Settings, at_least, clamped


class Demo(Settings, table=(
    Setting("max_batch", 64, "most alerts scored together", type=int, check=at_least(1, "--max-batch")),
    Setting("sink", "queue", "where events go", choices=("queue", "api")),
    Setting("report", True, "no HTML report", negate=True),
    Setting("tags", None, "tags", factory=list, flags=()),
)):
    extra: int = 3


def _parse(argv):
    p = argparse.ArgumentParser()
    Demo.add_arguments(p)
    return p, Demo(**Demo.values_from_args(p.parse_args(argv)))


def test_defaults_come_from_the_table():
    _, cfg = _parse([])
    assert (cfg.max_batch, cfg.sink, cfg.report, cfg.tags, cfg.extra) == (64, "queue", True, [], 3)


def test_options_set_fields_and_are_checked():
    _, cfg = _parse(["--max-batch", "8", "--sink", "api", "--no-report"])
    assert (cfg.max_batch, cfg.sink, cfg.report) == (8, "api", False)
    with pytest.raises(ValueError, match="--max-batch must be >= 1"):
        _parse(["--max-batch", "0"])
    with pytest.raises(ValueError):
        Demo(max_batch=0)


def test_every_option_has_help_with_its_default():
    p, _ = _parse([])
    text = p.format_help()
    assert "most alerts scored together (default 64)" in text
    assert "--tags" not in text  # flags=(): a field, not an option
    for action in p._actions:
        assert action.help, action.option_strings


def test_a_setting_declared_twice_is_refused():
    with pytest.raises(TypeError, match="declared twice"):
        class Twice(Settings, table=(Setting("x", 1, "x"),)):
            x: int = 2


def test_clamped_options_raise_low_values_from_the_command_line_only():
    class Clamp(Settings, table=(Setting("batch", 64, "batch", type=clamped(int, 1)),)):
        pass

    p = argparse.ArgumentParser()
    Clamp.add_arguments(p)
    assert Clamp(**Clamp.values_from_args(p.parse_args(["--batch", "0"]))).batch == 1
    assert Clamp(batch=0).batch == 0
    with pytest.raises(SystemExit):
        p.parse_args(["--batch", "x"])   # "invalid int value", as with type=int
