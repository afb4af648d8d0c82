"""The training recipe of a challenger, and how the loop mutates it.

A recipe is every setting that turns the champion plus the workspace's data into a challenger: the
optimizer, the objective, how many records and from which worlds, how recent data and hard examples
are weighted (the curriculum). It is one YAML file per generation in `WORKSPACE/recipes/`, and a copy
travels inside the model directory it produced, with the trainer's version and git commit.

Each generation starts from the champion's recipe and changes one or two settings (`mutate`), so a
change that won promotion is kept and one that lost is forgotten: a simple hill-climb over recipes,
judged by the gate. The model size is part of generation 0's recipe only: a challenger continues from
the champion's weights, so a size change would mean pretraining anew, which one generation's budget
does not allow.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, replace
from pathlib import Path

import yaml

from touchstone.config import Config, field, from_dict, to_dict
from touchstone.errors import UserError
from touchstone.files import read_text
from touchstone.train.finetune import OBJECTIVES, FinetuneConfig
from touchstone.worlds import WORLDS

WORLD_NAMES = tuple(WORLDS)

# The trainer's settings a recipe holds (their types, bounds and help are FinetuneConfig's). The rest of
# FinetuneConfig is the loop's to set: text_data (data/orig), seed (drawn per generation) and minutes
# (train_minutes); bf16 and eval_records stay at the trainer's defaults.
TRAINER_SETTINGS = ("lr", "epochs", "batch_size", "objective", "lm_weight")


def default_trainer() -> FinetuneConfig:
    # epochs 3 rather than FinetuneConfig's None, which under the loop's time budget would mean "as many
    # as fit"; lr and batch size are the trainer's defaults (touchstone.train.finetune says why).
    return FinetuneConfig(epochs=3.0)


@dataclass
class Recipe(Config):
    finetune: FinetuneConfig = dataclasses.field(
        default_factory=default_trainer,
        metadata={"help": f"the trainer's settings ({', '.join(TRAINER_SETTINGS)}; see touchstone.finetune)"},
    )
    # 12,000 at 3 epochs: about 1,100 steps of 32, what a nano challenger trains in train_minutes (the
    # deadline stops a larger model sooner; its schedule follows the clock).
    train_records: int = field(12000, help="records drawn from data/new for one challenger", min=1)
    new_fraction: float = field(
        0.5, help="curriculum: share of the draw taken from this generation's records", min=0, max=1
    )
    hard_weight: int = field(
        2, help="copies of a record the champion judged wrong (verifier agreeing with the label)", min=1
    )
    mixture: dict = field(dict.fromkeys(WORLD_NAMES, 1.0), help="relative weight of each world in the draw")

    def check(self, where: str = "recipe") -> Recipe:
        """Refuse settings no trainer could use, naming the key."""
        t = self.finetune
        bad = None
        if not t.lr > 0:
            bad = "lr"
        elif not (t.epochs or 0) > 0:
            bad = "epochs"
        elif t.batch_size < 1:
            bad = "batch_size"
        elif t.objective not in OBJECTIVES:
            bad = "objective"
        elif t.lm_weight < 0:
            bad = "lm_weight"
        if bad:
            raise UserError(f"{where}: key '{bad}' has an unusable value {getattr(t, bad)!r}")
        if self.train_records < 1:
            bad = "train_records"
        elif not 0 <= self.new_fraction <= 1:
            bad = "new_fraction"
        elif self.hard_weight < 1:
            bad = "hard_weight"
        if bad:
            raise UserError(f"{where}: key '{bad}' has an unusable value {getattr(self, bad)!r}")
        unknown = set(self.mixture) - set(WORLD_NAMES)
        if unknown:
            raise UserError(f"{where}: key 'mixture': unknown world '{min(unknown)}'")
        if any(not isinstance(v, (int, float)) or v < 0 for v in self.mixture.values()) or not any(
            self.mixture.values()
        ):
            raise UserError(f"{where}: key 'mixture': weights must be non-negative numbers, not all zero")
        return self

    def trainer(self, **loop_set) -> FinetuneConfig:
        """The fine-tuning config of this recipe, with the settings the loop sets (text_data, seed, minutes)."""
        return replace(self.finetune, **loop_set)


def recipe_from_settings(data: dict, where: str = "recipe") -> Recipe:
    """A checked recipe from a mapping: `finetune: {...}` (any of TRAINER_SETTINGS) and the recipe's own keys.
    The trainer's settings may also stand at the top level, as in recipe files and loop configs written
    before the recipe held a FinetuneConfig (`lr: 3e-4` beside `train_records`)."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of recipe settings, got {type(data).__name__}")
    data = dict(data)
    trainer = data.pop("finetune", None) or {}
    if not isinstance(trainer, dict):
        raise UserError(f"{where}: key 'finetune': expected a mapping, got {type(trainer).__name__}")
    for key in trainer:
        if key not in TRAINER_SETTINGS:
            raise UserError(f"{where}: finetune: unknown key '{key}' (known: {', '.join(TRAINER_SETTINGS)})")
    for key in TRAINER_SETTINGS:
        if key in data:
            if key in trainer:
                raise UserError(f"{where}: key '{key}' given twice, at the top and under 'finetune'")
            trainer[key] = data.pop(key)
    recipe = from_dict(Recipe, data, where=where)
    recipe.finetune = from_dict(FinetuneConfig, {**to_dict(default_trainer()), **trainer}, where=f"{where}: finetune")
    return recipe.check(where)


def recipe_settings(recipe: Recipe) -> dict:
    """The recipe as its file holds it: the trainer's settings under `finetune`, then the recipe's own."""
    doc = to_dict(recipe)
    doc["finetune"] = {k: doc["finetune"][k] for k in TRAINER_SETTINGS}
    return doc


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        data = yaml.safe_load(read_text(path, "YAML recipe")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: cannot read recipe ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of recipe settings, got a YAML {type(data).__name__}")
    data.pop("trainer", None)  # provenance written beside the settings, not a setting
    data.pop("changes", None)
    return recipe_from_settings(data, str(path))


def recipe_yaml(recipe: Recipe, changes: list[str] | None = None, trainer: dict | None = None) -> str:
    doc = recipe_settings(recipe)
    if changes is not None:
        doc["changes"] = changes
    if trainer is not None:
        doc["trainer"] = trainer
    return yaml.safe_dump(doc, sort_keys=False)


# Each mutation: (name, function(recipe, rng) -> (recipe, description)). Bounds keep a generation's
# training inside its time budget and the optimizer in a range where fine-tuning is stable.
def _scale(value: float, rng: random.Random, low: float, high: float) -> float:
    return min(high, max(low, value * rng.choice((0.5, 2.0))))


def _trainer(r: Recipe, **changes) -> Recipe:
    return replace(r, finetune=replace(r.finetune, **changes))


def _lr(r, rng):
    new = _scale(r.finetune.lr, rng, 1e-4, 4e-3)  # nano pretrains at 3.1e-3; at 1e-4 it moved nothing in 375 steps
    return _trainer(r, lr=new), f"lr {r.finetune.lr:g} -> {new:g}"


def _epochs(r, rng):
    new = min(4.0, max(0.5, r.finetune.epochs + rng.choice((-0.5, 0.5))))
    return _trainer(r, epochs=new), f"epochs {r.finetune.epochs:g} -> {new:g}"


# The objective is not mutated: "pairwise" alone never trains the answer token the gate reads, and "mix"
# diverged at the loop's learning rate (README, "The loop"). A recipe file may still name either.


def _lm_weight(r, rng):
    new = min(2.0, max(0.05, r.finetune.lm_weight * rng.choice((0.5, 2.0))))
    return _trainer(r, lm_weight=new), f"lm_weight {r.finetune.lm_weight:g} -> {new:g}"


def _train_records(r, rng):
    # Past 16,000 records the training ends at the deadline rather than the draw, even for nano.
    new = int(min(16000, max(2000, r.train_records * rng.choice((2 / 3, 1.5)))))
    return replace(r, train_records=new), f"train_records {r.train_records} -> {new}"


def _new_fraction(r, rng):
    new = round(min(0.9, max(0.1, r.new_fraction + rng.choice((-0.2, 0.2)))), 2)
    return replace(r, new_fraction=new), f"new_fraction {r.new_fraction:g} -> {new:g}"


def _hard_weight(r, rng):
    new = min(4, max(1, r.hard_weight + rng.choice((-1, 1))))
    return replace(r, hard_weight=new), f"hard_weight {r.hard_weight} -> {new}"


def _mixture(r, rng):
    world = rng.choice(sorted(r.mixture))
    old = r.mixture[world]
    new = min(4.0, max(0.25, old * rng.choice((0.5, 2.0))))
    return replace(r, mixture={**r.mixture, world: new}), f"mixture[{world}] {old:g} -> {new:g}"


MUTATIONS = (_lr, _epochs, _lm_weight, _train_records, _new_fraction, _hard_weight, _mixture)


def mutate(recipe: Recipe, rng: random.Random, n_changes: int | None = None) -> tuple[Recipe, list[str]]:
    """The recipe with one or two settings changed, and a line describing each change."""
    n = n_changes or rng.choice((1, 2))
    changes = []
    for fn in rng.sample(MUTATIONS, n):
        recipe, what = fn(recipe, rng)
        changes.append(what)
    return recipe.check(), changes
