"""The worlds, by name. A plain dict of import paths: each world is one module, imported on use so
that `touchstone --help` does not load every world's tables and tools."""

from __future__ import annotations

import importlib

from touchstone.errors import UserError
from touchstone.worlds.base import Verdict, World

WORLDS = {
    "numbers": "touchstone.worlds.numbers:NumbersWorld",
    "code": "touchstone.worlds.code:CodeWorld",
    "wing": "touchstone.worlds.wing:WingWorld",
    "colour": "touchstone.worlds.colour:ColourWorld",
    "language": "touchstone.worlds.language:LanguageWorld",
    "facts": "touchstone.worlds.facts:FactsWorld",
}


def world_class(name: str) -> type[World]:
    """The World subclass registered as `name`; a UserError naming the choices for an unknown one."""
    if name not in WORLDS:
        raise UserError(f"unknown world '{name}' (choose from {', '.join(WORLDS)})")
    module, cls = WORLDS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def get_world(name: str, corpus: str | None = None, **kwargs) -> World:
    """The world `name`, made with `kwargs`; `corpus` (a path) is its source where the world reads one
    (`World.reads_corpus`) and is ignored by the others."""
    cls = world_class(name)
    if corpus is not None and cls.reads_corpus:
        kwargs["source"] = corpus
    return cls(**kwargs)


__all__ = ["WORLDS", "Verdict", "World", "get_world", "world_class"]
