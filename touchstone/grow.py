"""New candidates beyond the worlds' own generators: the champion's samples, and mutations of records
the workspace already holds. Every candidate still goes through its world's verifier before it can
enter data/new; here they are only proposed.

The champion's own samples (`own_samples`), so that the model's output becomes training material once
checked: a world that can check something a small model writes says what to ask and how to read the
answer (`World.champion_prompts`, `World.champion_records`): numbers has the champion complete sums
and products, code has it write a template function's body. The other worlds need structured output
a small model does not produce (a wing design, a colour), so they grow by mutation only.

Mutations of existing records (`mutate_records`): each world that can mutate its records says which
and how (`World.grower`): a numbers or code claim is parsed back into its item and mutated, a language
pair's original sentence gets a fresh corruption. Held-out items stay out: every grown record's primary
item is checked with the world's `in_split`.
"""

from __future__ import annotations

import random

from touchstone.worlds import World
from touchstone.worlds.base import LATER


def _complete(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> list[str]:
    """One sampled continuation per prompt (temperature 0.8): varied enough to be right and wrong."""
    from touchstone.generate import (
        sample,  # imports torch: only when the champion writes
    )

    return [
        sample(model, tokenizer, p, max_new_tokens=max_new_tokens, temperature=0.8, n=1, seed=seed + i)[0]
        for i, p in enumerate(prompts)
    ]


def own_samples(world: World, model, tokenizer, rng: random.Random, n: int, source: str) -> tuple[list[dict], int]:
    """(records, completions that could not be read): what the champion wrote after n of the world's
    prompts, labelled by its tool; nothing for a world the champion cannot write for."""
    if not world.champion_tokens:
        return [], 0
    prompts, items = world.champion_prompts(rng, n)
    completions = _complete(model, tokenizer, prompts, world.champion_tokens, rng.randrange(2**31))
    return world.champion_records(items, prompts, completions, rng, source)


def mutate_records(records: list[dict], rng: random.Random, n: int, generation: int, worlds: dict) -> list[dict]:
    """Up to n new candidates, each a mutation of an existing record of a world that grows its records;
    `worlds` maps names to the World objects to use (the language world knows its corpus)."""
    growers = {name: g for name, world in worlds.items() if (g := world.grower(rng, generation)) is not None}
    usable = [r for r in records if r["world"] in growers and growers[r["world"]].takes(r)]
    out, made = [], 0
    for rec in rng.sample(usable, min(len(usable), 2 * n)):
        if made >= n:
            break
        try:
            new = growers[rec["world"]].grow(rec)
        except ValueError:
            continue  # no mutation applies, or the record's text is not one this world writes
        if new is None:
            continue
        made += 1
        if new is not LATER:
            out.append(new)
    for grower in growers.values():  # candidates labelled in one batch (the code world's sandbox runs)
        out += grower.finish()
    return out
