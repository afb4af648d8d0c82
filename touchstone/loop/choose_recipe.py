"""Step 4, recipe: the recipe of the model the challenger trains from (see `Generation.base`) with one or
two settings mutated (touchstone.loop.recipe), written to recipes/gen-NNNN.yaml."""

from __future__ import annotations

import random

from touchstone.files import write_text_atomic
from touchstone.loop.config import LoopConfig
from touchstone.loop.generation import Generation
from touchstone.loop.recipe import load_recipe, mutate, recipe_from_settings, recipe_settings, recipe_yaml
from touchstone.loop.workspace import Workspace


def choose_recipe(ws: Workspace, cfg: LoopConfig, g: Generation) -> dict:
    if g.recipe_override is not None:
        recipe, changes = g.recipe_override.check(), ["given by the caller"]
    else:
        base_path = ws.recipes / f"{g.base}.yaml"
        base = load_recipe(base_path) if base_path.exists() else recipe_from_settings(cfg.recipe, "config: recipe")
        recipe, changes = mutate(base, random.Random(g.seed(cfg, "recipe")))
    write_text_atomic(ws.recipes / f"{g.challenger}.yaml", recipe_yaml(recipe, changes))
    return {"base": g.base, "changes": changes, "recipe": recipe_settings(recipe)}
