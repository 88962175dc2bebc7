"""Settings declared once: one table drives a command's dataclass, its options and their help.

A long-running command (``serve``, ``retrain``) has a dozen or more settings. Declared three times
(a dataclass field, an ``add_argument`` call, a line copying one into the other) they drift: a
default changed in one place and not the others, an option without help. Here each setting is one
:class:`Setting` row; a :class:`Settings` subclass names its table and becomes a dataclass with
those fields, :meth:`Settings.add_arguments` adds the options (with their defaults in the help),
and :meth:`Settings.from_args` turns parsed options back into an instance, validating each value
with the row's ``check``.

    SETTINGS = (
        Setting("max_batch", 64, "most alerts scored together", type=int, check=at_least(1)),
        Setting("sink", "queue", "where events go", choices=("queue", "api")),
    )

    class ServeConfig(Settings, table=SETTINGS):
        ...

Standard library only: the table is read by commands that must start fast.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Optional, Sequence, Tuple

_MISSING = object()


@dataclass(frozen=True)
class Setting:
    """One setting: a dataclass field and (unless ``flags`` is empty) one command-line option.

    ``type`` converts the option's text (and is the field's annotation); ``check`` validates and
    normalises a value wherever it comes from (option or keyword), raising ``ValueError`` with a
    message that names the option. ``negate``: the option is ``--no-<name>`` and stores False.
    ``factory``: a default made anew for each instance (lists, dicts).
    """

    name: str
    default: Any
    help: str
    type: Optional[Callable[[str], Any]] = None
    flags: Optional[Tuple[str, ...]] = None
    choices: Optional[Sequence[Any]] = None
    metavar: Optional[str] = None
    group: Optional[str] = None
    check: Optional[Callable[[Any], Any]] = None
    negate: bool = False
    switch: bool = False
    nargs: Optional[str] = None
    const: Any = None
    factory: Optional[Callable[[], Any]] = None
    dest: Optional[str] = None

    @property
    def option_flags(self) -> Tuple[str, ...]:
        if self.flags is not None:
            return self.flags
        stem = self.name.replace("_", "-")
        return (f"--no-{stem}",) if self.negate else (f"--{stem}",)

    @property
    def arg_dest(self) -> str:
        return self.dest or self.name

    def help_text(self) -> str:
        if self.negate or self.switch or self.default is None or self.factory is not None:
            return self.help
        if "(default" in self.help:
            return self.help
        shown = self.default
        if isinstance(shown, Path):
            shown = str(shown)
        return f"{self.help} (default {shown})"

    def add_to(self, parser: Any) -> None:
        kw: Dict[str, Any] = {"help": self.help_text().replace("%", "%%"), "dest": self.arg_dest}
        if self.negate:
            kw.update(action="store_false", default=self.default)
        elif self.switch:
            kw.update(action="store_true", default=self.default)
        else:
            kw["default"] = None  # "not given": from_args keeps the field's default
            for k in ("type", "choices", "metavar", "nargs", "const"):
                v = getattr(self, k)
                if v is not None:
                    kw[k] = v
        parser.add_argument(*self.option_flags, **kw)


def at_least(low: float, what: str = "") -> Callable[[Any], Any]:
    """A ``check`` that refuses values below ``low``."""

    def check(value: Any) -> Any:
        if value is None or isinstance(value, bool) or value < low:
            raise ValueError(f"{what or 'value'} must be >= {low}, got {value!r}")
        return value

    return check


def in_range(low: float, high: float, what: str = "") -> Callable[[Any], Any]:
    """A ``check`` that refuses values outside ``[low, high]``."""

    def check(value: Any) -> Any:
        if value is None or isinstance(value, bool) or not low <= value <= high:
            raise ValueError(f"{what or 'value'} must be in [{low}, {high}], got {value!r}")
        return value

    return check


def clamped(convert: Callable[[str], Any], low: Any) -> Callable[[str], Any]:
    """An option ``type``: ``convert`` the text, then raise a value below ``low`` to ``low``.

    For options that bring a value into range rather than refuse it. Only the command line is
    clamped (a value given in code is taken as it is, as a ``check`` would not); argparse still
    names ``convert`` when the text does not convert ("invalid int value")."""

    def clamp(text: str) -> Any:
        return max(low, convert(text))

    clamp.__name__ = getattr(convert, "__name__", "value")
    return clamp


class Settings:
    """Base of a command's configuration: subclasses pass ``table=`` and become dataclasses.

    Fields not in the table (computed paths, objects) may still be declared on the subclass
    with annotations as usual; they come after the table's fields.
    """

    TABLE: ClassVar[Tuple[Setting, ...]] = ()

    def __init_subclass__(cls, table: Sequence[Setting] = (), **kw: Any) -> None:
        super().__init_subclass__(**kw)
        own = dict(cls.__dict__.get("__annotations__", {}))
        annotations: Dict[str, Any] = {}
        for s in table:
            if s.name in own:
                raise TypeError(f"{cls.__name__}.{s.name} is declared twice (in the table and the class)")
            annotations[s.name] = "Any"
            if s.factory is not None:
                setattr(cls, s.name, dataclasses.field(default_factory=s.factory))
            else:
                value = s.default
                if isinstance(value, (list, dict, set)):
                    raise TypeError(f"setting {s.name}: a mutable default needs factory=")
                setattr(cls, s.name, value)
        annotations.update(own)
        cls.__annotations__ = annotations
        cls.TABLE = tuple(table)
        dataclass(cls)

    def __post_init__(self) -> None:
        for s in self.TABLE:
            if s.check is not None:
                value = getattr(self, s.name)
                if value is not None or s.default is not None:
                    setattr(self, s.name, s.check(value))

    # -- the command line ---------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, *, skip: Sequence[str] = ()) -> None:
        """One option per setting of the table, in argument groups where a row names one."""
        groups: Dict[str, Any] = {}
        for s in cls.TABLE:
            if s.flags == () or s.name in skip:
                continue
            target: Any = parser
            if s.group:
                target = groups.get(s.group)
                if target is None:
                    target = groups[s.group] = parser.add_argument_group(s.group)
            s.add_to(target)

    @classmethod
    def values_from_args(cls, args: argparse.Namespace) -> Dict[str, Any]:
        """The settings the command line gave (options not given keep the table's default)."""
        out: Dict[str, Any] = {}
        for s in cls.TABLE:
            if s.flags == ():
                continue
            value = getattr(args, s.arg_dest, _MISSING)
            if value is _MISSING or value is None:
                continue
            if (s.negate or s.switch) and value == s.default:
                continue
            out[s.name] = value
        return out

    @classmethod
    def setting(cls, name: str) -> Setting:
        for s in cls.TABLE:
            if s.name == name:
                return s
        raise KeyError(name)
