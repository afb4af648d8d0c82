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

from touchstone.errors import UserError

T = TypeVar("T")


def field(default: Any = dataclasses.MISSING, help: str = "", **kw) -> Any:
    """A dataclass field with help text (mutable defaults go through default_factory)."""
    if isinstance(default, (list, dict)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return dataclasses.field(default=default, metadata={"help": help}, **kw)


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


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build `cls` from a dict; unknown keys and badly typed values are UserErrors naming the key."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise UserError(f"{where}: unknown key '{key}' (known: {', '.join(fields)})")
        sub = _base_type(hints[key])
        if dataclasses.is_dataclass(sub) and isinstance(value, dict):
            kwargs[key] = from_dict(sub, value, f"{where}: {key}")
        else:
            kwargs[key] = _coerce(value, hints[key], f"{where}: key '{key}'")
    return cls(**kwargs)


def load_yaml(cls: type[T], path: str | Path, overrides: dict | None = None) -> T:
    import yaml

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: invalid YAML ({str(e).splitlines()[0]})") from None
    return from_dict(cls, {**data, **(overrides or {})}, where=str(path))


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def dump_yaml(obj) -> str:
    import yaml

    return yaml.safe_dump(to_dict(obj), sort_keys=False)


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """Add a `--flag` per field of `cls` (default None, so only flags the user gave override)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        base = _base_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{f.metadata.get('help', '')} (default: {default})"
        if base is bool:
            parser.add_argument(flag, dest=f.name, default=None, action=argparse.BooleanOptionalAction, help=help_text)
        elif base in (int, float, str):
            parser.add_argument(flag, dest=f.name, type=base, default=None, help=help_text)


def overrides_from_args(args: argparse.Namespace, cls) -> dict:
    """The fields of `cls` that the user set on the command line."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


class Config:
    """Mixin for config dataclasses: `Cfg.load(yaml_path_or_None, overrides)`."""

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: dict | None = None):
        if path is None:
            return from_dict(cls, overrides or {}, where=cls.__name__)
        return load_yaml(cls, path, overrides)
