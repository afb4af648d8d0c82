"""Typed configuration: a dataclass is the single source of truth.

Each field carries its help text in `metadata["help"]`; `add_arguments` builds CLI flags from it, a YAML
file can overlay it (`load_yaml`), and an unknown key is an error naming the key. The resolved config is
written beside every artifact it produced (`dump_yaml`). YAML is parsed with `yaml.safe_load`, never
executed.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from touchstone.errors import UserError
from touchstone.files import read_text

T = TypeVar("T")


def field(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    min: float | None = None,
    above: float | None = None,
    max: float | None = None,
    choices: tuple | None = None,
    **kw,
) -> Any:
    """A dataclass field with help text and its allowed values, checked wherever a config is built
    (YAML or command line): at least `min`, more than `above`, at most `max`, one of `choices`.
    Mutable defaults go through default_factory."""
    meta = {"help": help, "min": min, "above": above, "max": max, "choices": choices}
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=meta, **kw)
    return dataclasses.field(default=default, metadata=meta, **kw)


def range_problem(value, min=None, above=None, max=None, choices=None) -> str | None:
    """What is wrong with `value` against its field's bounds (e.g. "must be at least 1"), or None.
    Written as `not value >= min` so that NaN fails every bound."""
    if choices is not None and value not in choices:
        return f"expected one of {', '.join(map(str, choices))}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if min is not None and not value >= min:
            return f"must be at least {min}"
        if above is not None and not value > above:
            return f"must be more than {above}"
        if max is not None and not value <= max:
            return f"must be at most {max}"
        if value != value or value in (float("inf"), float("-inf")):
            return "expected a finite number"
    return None


def check_range(value, where: str, min=None, above=None, max=None, choices=None):
    """`value` if it lies within the bounds (None always does), else a UserError naming `where`."""
    problem = None if value is None else range_problem(value, min, above, max, choices)
    if problem:
        raise UserError(f"{where}: {problem}, got {value!r}")
    return value


def number_type(kind: type, min=None, above=None, max=None):
    """An argparse type: a `kind` (int or float) number within the bounds, checked as `check_range` checks a
    YAML value; a bad one is argparse's one-line error naming the flag."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got {text!r}"
            ) from None
        problem = range_problem(value, min, above, max)
        if problem:
            raise argparse.ArgumentTypeError(f"{problem}, got {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def _base_type(tp):
    """int for `int`, `int | None`, `Optional[int]`; the type itself otherwise."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _coerce(value: Any, tp, where: str) -> Any:
    base = _base_type(tp)
    if value is None:
        return None
    if base in (list, dict) or typing.get_origin(base) in (list, dict):
        want = typing.get_origin(base) or base
        if not isinstance(value, want):
            raise UserError(f"{where}: expected a {'list' if want is list else 'mapping'}, got {type(value).__name__}")
        return value
    if base in (int, float) and isinstance(value, bool):  # YAML's `yes` is not a number
        raise UserError(f"{where}: expected {base.__name__}, got {value!r}")
    if base in (int, float) and not isinstance(value, (int, float, str)):
        raise UserError(f"{where}: expected {base.__name__}, got {type(value).__name__}")
    if (base is str and not isinstance(value, (str, int, float))) or (base is bool and isinstance(value, (list, dict))):
        raise UserError(f"{where}: expected {base.__name__}, got {type(value).__name__}")
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if base in (int, float, str):
            if base is int and isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return base(value)
    except (TypeError, ValueError):
        raise UserError(f"{where}: expected {base.__name__}, got {value!r}") from None
    return value


def from_dict(cls: type[T], data: dict, where: str = "config", flags: tuple[str, ...] = ()) -> T:
    """Build `cls` from a dict; unknown keys, badly typed values and values out of their field's range
    are UserErrors naming the key (`--key-name` for the keys in `flags`, given on the command line)."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UserError(f"{where}: unknown key '{key}' (known: {', '.join(fields)})")
        at = flag(key) if key in flags else f"{where}: key '{key}'"
        sub = _base_type(hints[key])
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            kwargs[key] = from_dict(sub, value, f"{where}: {key}")
        else:
            meta = fields[key].metadata
            kwargs[key] = check_range(
                _coerce(value, hints[key], at),
                at,
                meta.get("min"),
                meta.get("above"),
                meta.get("max"),
                meta.get("choices"),
            )
    return cls(**kwargs)


def load_yaml(cls: type[T], path: str | Path, overrides: dict | None = None) -> T:
    path = Path(path)
    text = read_text(path, "YAML file of settings")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise UserError(f"{at}: invalid YAML ({getattr(e, 'problem', None) or str(e).splitlines()[0]})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of settings (key: value lines), got a YAML {type(data).__name__}")
    overrides = overrides or {}
    return from_dict(cls, {**data, **overrides}, where=str(path), flags=tuple(overrides))


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def dump_yaml(obj) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def flag(name: str) -> str:
    """The command-line flag of a field: `batch_size` is `--batch-size`."""
    return "--" + name.replace("_", "-")


def cli_fields(cls, only: tuple[str, ...] | None = None) -> list:
    """The fields of `cls` (or those named in `only`) that are command-line flags: the scalars; lists and
    mappings are set in a YAML file."""
    hints = typing.get_type_hints(cls)
    return [
        f
        for f in dataclasses.fields(cls)
        if (only is None or f.name in only) and _base_type(hints[f.name]) in (bool, int, float, str)
    ]


def add_arguments(parser, cls, only: tuple[str, ...] | None = None) -> None:
    """Add a `--flag` per scalar field of `cls` (or of those named in `only`): the field's help and
    default as its --help, its allowed values refused by argparse as the user types them. Every flag
    defaults to None, so `overrides_from_args` returns only what the user gave, and the rest comes from
    the dataclass's defaults and the YAML file over them."""
    hints = typing.get_type_hints(cls)
    for f in cli_fields(cls, only):
        base, meta = _base_type(hints[f.name]), f.metadata
        default = f.default if f.default is not dataclasses.MISSING else None
        text = meta.get("help", "").replace("%", "%%")  # argparse formats help with %
        if default is not None and "default" not in text:
            text += f" (default: {default})"
        kw: dict[str, Any] = {"dest": f.name, "default": None, "help": text}
        if base is bool:
            kw["action"] = argparse.BooleanOptionalAction
        elif meta.get("choices") is not None:
            kw.update(type=base, choices=meta["choices"])
        elif base in (int, float):
            kw["type"] = number_type(base, meta.get("min"), meta.get("above"), meta.get("max"))
        parser.add_argument(flag(f.name), **kw)


def overrides_from_args(args: argparse.Namespace, cls) -> dict:
    """The flags of `cls` that the user gave on the command line, by field name."""
    return {f.name: getattr(args, f.name) for f in cli_fields(cls) if getattr(args, f.name, None) is not None}


class Config:
    """Mixin for config dataclasses: `Cfg.load(yaml_path_or_None, overrides)`."""

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None):
        if path is None:
            overrides = overrides or {}
            return from_dict(cls, overrides, where=cls.__name__, flags=tuple(overrides))
        return load_yaml(cls, path, overrides)
