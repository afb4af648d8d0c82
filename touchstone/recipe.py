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

import random
from dataclasses import dataclass, replace
from pathlib import Path

from touchstone.config import Config, field, from_dict, to_dict
from touchstone.errors import UserError
from touchstone.train.finetune import OBJECTIVES

WORLD_NAMES = ("numbers", "code", "wing", "colour", "language", "facts")


@dataclass
class Recipe(Config):
    # 1e-4: on a loop's code pairs (gen-0 micro model, batch 16, 80 steps) the answer loss on 128
    # records held out of the same pool fell from 0.698 to 0.646 at 1e-4 and to 0.663 at 3e-4, and
    # stayed at 0.693 (the label prior) at 1e-3, the old default. No 5-generation run at 1e-3 promoted a
    # challenger; the first at 1e-4 did (+3.4 points over generation 0 on the held-out suites).
    lr: float = field(1e-4, help="peak AdamW learning rate of the fine-tuning", above=0)
    epochs: float = field(2.0, help="passes over the generation's training draw", above=0)
    batch_size: int = field(16, help="records per step", min=1)
    # "answer" by default: it trains exactly what the gate reads, at half the cost per record of "mix".
    objective: str = field("answer", help="answer | pairwise | mix (see touchstone.finetune)", choices=OBJECTIVES)
    lm_weight: float = field(0.5, help="weight of the language-model loss on data/orig (keeps the LM skill)", min=0)
    train_records: int = field(2000, help="records drawn from data/new for one challenger", min=1)
    new_fraction: float = field(0.5, help="curriculum: share of the draw taken from this generation's records", min=0, max=1)
    hard_weight: int = field(2, help="copies of a record the champion judged wrong (verifier agreeing with the label)", min=1)
    mixture: dict = field({w: 1.0 for w in WORLD_NAMES}, help="relative weight of each world in the draw")

    def check(self, where: str = "recipe") -> "Recipe":
        """Refuse settings no trainer could use, naming the key."""
        from touchstone.train.finetune import OBJECTIVES

        bad = None
        if not self.lr > 0:
            bad = "lr"
        elif not self.epochs > 0:
            bad = "epochs"
        elif self.batch_size < 1:
            bad = "batch_size"
        elif self.objective not in OBJECTIVES:
            bad = "objective"
        elif self.lm_weight < 0:
            bad = "lm_weight"
        elif self.train_records < 1:
            bad = "train_records"
        elif not 0 <= self.new_fraction <= 1:
            bad = "new_fraction"
        elif self.hard_weight < 1:
            bad = "hard_weight"
        if bad:
            raise UserError(f"{where}: key '{bad}' has an unusable value {getattr(self, bad)!r}")
        unknown = set(self.mixture) - set(WORLD_NAMES)
        if unknown:
            raise UserError(f"{where}: key 'mixture': unknown world '{sorted(unknown)[0]}'")
        if any(not isinstance(v, (int, float)) or v < 0 for v in self.mixture.values()) or not any(self.mixture.values()):
            raise UserError(f"{where}: key 'mixture': weights must be non-negative numbers, not all zero")
        return self


def load_recipe(path: str | Path) -> Recipe:
    import yaml

    from touchstone.files import read_text

    path = Path(path)
    try:
        data = yaml.safe_load(read_text(path, "YAML recipe")) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: cannot read recipe ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of recipe settings, got a YAML {type(data).__name__}")
    data.pop("trainer", None)  # provenance written beside the settings, not a setting
    data.pop("changes", None)
    return from_dict(Recipe, data, where=str(path)).check(str(path))


def recipe_yaml(recipe: Recipe, changes: list[str] | None = None, trainer: dict | None = None) -> str:
    import yaml

    doc = to_dict(recipe)
    if changes is not None:
        doc["changes"] = changes
    if trainer is not None:
        doc["trainer"] = trainer
    return yaml.safe_dump(doc, sort_keys=False)


# Each mutation: (name, function(recipe, rng) -> (recipe, description)). Bounds keep a generation's
# training inside its time budget and the optimizer in a range where fine-tuning is stable.
def _scale(value: float, rng: random.Random, low: float, high: float) -> float:
    return min(high, max(low, value * rng.choice((0.5, 2.0))))


def _lr(r, rng):
    new = _scale(r.lr, rng, 1e-5, 5e-4)  # at 1e-3 fine-tuning collapsed to the label prior (see Recipe.lr)
    return replace(r, lr=new), f"lr {r.lr:g} -> {new:g}"


def _epochs(r, rng):
    new = min(3.0, max(0.5, r.epochs + rng.choice((-0.5, 0.5))))
    return replace(r, epochs=new), f"epochs {r.epochs:g} -> {new:g}"


# The objective is not mutated. "pairwise" alone never trains the answer token the gate reads (three of
# five generations lost to that mutation in one run), and "mix" diverged at the loop's learning rate:
# its loss rose from 5.2 to 9.2 and from 6.5 to 15.6 within 100 steps in two generations of one run, and
# the validation perplexity of another doubled (175 -> 354). A recipe file may still name either.


def _lm_weight(r, rng):
    new = min(2.0, max(0.05, r.lm_weight * rng.choice((0.5, 2.0))))
    return replace(r, lm_weight=new), f"lm_weight {r.lm_weight:g} -> {new:g}"


def _train_records(r, rng):
    # 2250 records took 7.7-10 minutes to train for micro here; the bound keeps a generation near 10 minutes.
    new = int(min(2000, max(500, r.train_records * rng.choice((2 / 3, 1.5)))))
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
