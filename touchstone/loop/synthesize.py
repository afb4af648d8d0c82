"""Step 1, synthesize: candidates from each world's generator, the champion's own samples
(touchstone.grow) and mutations of existing records; plus this generation's gate set, drawn fresh from
the worlds' gate items, which training records never use (touchstone.synth)."""

from __future__ import annotations

import random

from touchstone.files import write_jsonl_atomic
from touchstone.generate import load_model
from touchstone.grow import mutate_records, own_samples
from touchstone.loop.config import LoopConfig
from touchstone.loop.generation import Generation, derive_seed
from touchstone.loop.workspace import Workspace, records
from touchstone.worlds.splits import split_world


def draw_gate(world, n: int, taken: set[str], seed: int, rounds: int = 10) -> list[dict]:
    """Up to n verified gate records of `world` whose ids are not in `taken`.

    Earlier gates' ids are banned (a gate that chose a champion is spent), so a world with a finite item
    space (facts: a few hundred countries) would otherwise gate on fewer records each generation. Draw
    again, with a seed derived from `seed` and the round, for what is still missing, up to `rounds` draws;
    round 0 alone (seed `seed`) is what a world with room to spare gets, so its gate set does not change."""
    out: list[dict] = []
    seen = set(taken)
    for k in range(rounds):
        need = n - len(out)
        if need <= 0:
            break
        for r in split_world(world, "gate").render(random.Random(derive_seed(seed, k) if k else seed), need):
            if r["id"] not in seen and (r.get("verdict") or {}).get("ok") and len(out) < n:
                seen.add(r["id"])
                out.append(r)
    return out


def synthesize(ws: Workspace, cfg: LoopConfig, g: Generation) -> dict:
    """Write generations/gen-NNNN/candidates.jsonl and gate.jsonl."""
    candidates, made = [], {}
    for w in cfg.worlds:
        recs = g.worlds[w].render(random.Random(g.seed(cfg, w, "synth")), cfg.records_per_world)
        candidates += recs
        made[f"{w}/generator"] = len(recs)
    unparseable = {}
    writers = [w for w in cfg.worlds if g.worlds[w].champion_tokens] if cfg.own_samples else []
    if writers:  # the worlds the champion can write for, in the configured order (one random stream)
        model, tokenizer = load_model(ws.models / g.champion)
        rng = random.Random(g.seed(cfg, "own"))
        for w in writers:
            recs, unparseable[w] = own_samples(
                g.worlds[w], model, tokenizer, rng, cfg.own_samples, f"champion:{g.champion}"
            )
            candidates += recs
            made[f"{w}/champion"] = len(recs)
    in_new = [r for p in ws.new_files() for r in records(p)]
    existing = [r for r in in_new if r["world"] in cfg.worlds]
    if cfg.mutations and existing:
        recs = mutate_records(existing, random.Random(g.seed(cfg, "mutate")), cfg.mutations, g.number, g.worlds)
        candidates += recs
        made["mutation"] = len(recs)
    for r in candidates:
        r["generation"] = g.number
        r.setdefault("parent", None)
    # The gate set: fresh records drawn with their own seed from the worlds' gate items, which no
    # training record ever uses (touchstone.synth.in_split); the id check below is a second guard.
    taken = g.banned_ids(ws) | {r["id"] for r in candidates} | {r["id"] for r in in_new}
    gate = []
    for w in cfg.worlds:
        gate += draw_gate(g.worlds[w], cfg.gate_per_world, taken, g.seed(cfg, w, "gate"))
    g.dir.mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(g.dir / "gate.jsonl", gate)
    write_jsonl_atomic(g.dir / "candidates.jsonl", candidates)
    return {
        "candidates": len(candidates),
        "made": made,
        "gate": len(gate),
        "champion_unparseable": unparseable,
    }
