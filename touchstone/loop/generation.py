"""What a step knows of its generation: `Generation`, handed to every step with the workspace and the
loop's settings, and the seeds the steps draw with."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from touchstone.loop.config import LoopConfig
from touchstone.loop.ledger import Ledger
from touchstone.loop.recipe import Recipe
from touchstone.loop.workspace import Workspace, ids_in, training_base
from touchstone.synth import heldout_ids


def derive_seed(*parts) -> int:
    """A seed derived from its parts, stable across runs and Python processes."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big") % (2**31 - 1)


def by_world(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["world"], []).append(r)
    return out


@dataclass
class Generation:
    """Generation `number` as its steps see it: the champion when it began (the gate compares against that
    one even after a restart), the model its challenger trains from (`base`), its worlds, the ledger, and
    its directory (generations/gen-NNNN: gate set, candidates, training draw, gate result)."""

    number: int
    champion: str
    base: str
    ledger: Ledger
    worlds: dict
    dir: Path
    recipe_override: Recipe | None = None

    @property
    def challenger(self) -> str:
        return f"gen-{self.number:04d}"

    def seed(self, cfg: LoopConfig, *parts) -> int:
        """The seed of one draw of this generation (`parts` name the draw)."""
        return derive_seed(cfg.seed, self.number, *parts)

    def banned_ids(self, ws: Workspace) -> set[str]:
        """Ids that may never enter data/new: the held-out suites and every gate set so far."""
        ids = set()
        for world in self.worlds.values():
            ids |= heldout_ids(world)
        return ids | ids_in(sorted(ws.generations.glob("gen-*/gate.jsonl")))


def open_generation(
    ws: Workspace, cfg: LoopConfig, ledger: Ledger, number: int, recipe_override: Recipe | None = None
) -> Generation:
    """Start generation `number` in the ledger (a resumed one keeps its first champion) and describe it."""
    ledger.start_generation(number, ws.champion())
    champion = ledger.generation(number)["champion_before"]
    return Generation(
        number,
        champion,
        training_base(ws, ledger, number) or champion,
        ledger,
        ws.worlds(cfg.worlds),
        ws.gen_dir(number),
        recipe_override,
    )
