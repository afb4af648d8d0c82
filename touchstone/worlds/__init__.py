"""The worlds, by name. A plain dict of import paths: each world is one module, imported on use so
that `touchstone --help` does not load AeroSandbox or the sandbox machinery."""

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


def get_world(name: str, **kwargs) -> World:
    if name not in WORLDS:
        raise UserError(f"unknown world '{name}' (choose from {', '.join(WORLDS)})")
    module, cls = WORLDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**kwargs)


__all__ = ["WORLDS", "Verdict", "World", "get_world"]
