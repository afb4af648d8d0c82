"""Step 5, train: a challenger fine-tuned on a draw from data/new (minus quarantined records, hard
examples repeated) plus the language-model loss on data/orig, starting from `Generation.base`: the
champion, or the last rejected challenger when the gate found that one no worse."""

from __future__ import annotations

import random

from touchstone.files import MANIFEST, read_json, write_jsonl_atomic
from touchstone.loop.config import LoopConfig
from touchstone.loop.generation import Generation, by_world
from touchstone.loop.recipe import Recipe, load_recipe, recipe_settings
from touchstone.loop.workspace import Workspace, ids_in, records
from touchstone.train.finetune import finetune


def weighted(pool: list[dict], k: int, mixture: dict, rng: random.Random) -> list[dict]:
    """k records without replacement, each world's share proportional to its mixture weight."""
    if k <= 0 or not pool:
        return []
    groups = by_world(pool)
    total = sum(mixture.get(w, 0) for w in groups)
    out = []
    for w, recs in sorted(groups.items()):
        share = round(k * mixture.get(w, 0) / total) if total else 0
        out += rng.sample(recs, min(share, len(recs)))
    return out


def training_draw(ws: Workspace, cfg: LoopConfig, g: Generation, recipe: Recipe) -> list[dict]:
    """The challenger's training records: the recipe's share from this generation and the rest from
    older ones, each world weighted by the mixture, quarantined records out, rewritten ones (rework's
    fixed.jsonl) in place of their originals, hard ones repeated."""
    rng = random.Random(g.seed(cfg, "draw"))
    reworked = ws.rework_dirs()
    quarantined = ids_in(d / "quarantine.jsonl" for d in reworked)
    fixes = {r["rework"]["original_id"]: r for d in reworked for r in records(d / "fixed.jsonl")}
    hard = ids_in(d / "hard.jsonl" for d in reworked)
    pools = {"new": [], "old": []}
    for p in ws.new_files():
        for r in records(p):
            if r["id"] in quarantined or recipe.mixture.get(r["world"], 0) <= 0:
                continue
            pools["new" if p == ws.new_file(g.number) else "old"].append(fixes.get(r["id"], r))
    want_new = round(recipe.train_records * (recipe.new_fraction if pools["old"] else 1.0))
    draw = weighted(pools["new"], want_new, recipe.mixture, rng)
    draw += weighted(pools["old"], recipe.train_records - len(draw), recipe.mixture, rng)
    draw += [r for r in draw if r["id"] in hard] * (recipe.hard_weight - 1)
    rng.shuffle(draw)
    return draw


def train(ws: Workspace, cfg: LoopConfig, g: Generation) -> dict:
    """Write generations/gen-NNNN/train.jsonl and the challenger models/gen-NNNN."""
    out = ws.model(g.number)
    recipe = load_recipe(ws.recipes / f"{g.challenger}.yaml")
    if not (out / MANIFEST).exists():
        draw = training_draw(ws, cfg, g, recipe)
        write_jsonl_atomic(g.dir / "train.jsonl", draw)
        trainer = recipe.trainer(text_data=str(ws.orig), seed=g.seed(cfg, "train"), minutes=cfg.train_minutes)
        finetune(
            ws.models / g.base,
            [str(g.dir / "train.jsonl")],
            out,
            trainer,
            loop={"generation": g.number, "champion": g.champion, "base": g.base, "recipe": recipe_settings(recipe)},
        )
    manifest = read_json(out / MANIFEST)
    return {"base": g.base, **{k: v for k, v in manifest.items() if k != "files"}}
