"""The loop's settings (`touchstone run --config FILE`; saved as WORKSPACE/config.yaml)."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
from dataclasses import dataclass

from touchstone.config import Config, field
from touchstone.errors import UserError
from touchstone.loop.recipe import WORLD_NAMES, recipe_from_settings
from touchstone.model import DEPTHS


@dataclass
class LoopConfig(Config):
    # nano: step for step it learned the six worlds as micro did, at a seventh of the cost of a step
    # (docs/learning-curves.md, "The same run from nano"); at this budget a judge is limited by steps.
    size: str = field("nano", help="model size of generation 0 (nano | micro | small)", choices=tuple(DEPTHS))
    pretrain_minutes: float = field(10.0, help="pretraining budget of generation 0, in minutes", above=0)
    sources: list = field([], help="what data/orig is prepared from (default: the embedded corpus)")
    worlds: list = field(list(WORLD_NAMES), help="the worlds the loop synthesizes from and is gated on")
    # 1,000: a nano challenger trains on about 36,000 records a generation (train_records, three epochs).
    records_per_world: int = field(1000, help="candidates from each world's generator per generation", min=0)
    own_samples: int = field(
        32, help="champion samples per generation for each world that has them (numbers, code)", min=0
    )
    mutations: int = field(100, help="candidates made by mutating existing records, per generation", min=0)
    # 200 per world: near chance two judges disagree on about half the records, so McNemar's test at
    # one-sided 0.05 with 80% power needs a gain of about 2.5 * sqrt(0.5 / n), 5.1 points on 1,200
    # records against 7.2 on 600 (README: the loop's measured runs).
    gate_per_world: int = field(200, help="fresh gate records per world per generation", min=1)
    reverify_sample: int = field(200, help="older records re-verified per generation (a rolling audit)", min=0)
    disagreement_sample: int = field(
        300, help="this generation's records the champion judges, to find disagreements", min=0
    )
    alpha: float = field(0.05, help="gate significance level (one-sided McNemar exact test)", above=0, max=1)
    tolerance: float = field(
        0.05, help="largest accuracy drop on any held-out suite a promotion may cause", min=0, max=1
    )
    # 5: five generations besides training, plus generation 0, must fit in an hour.
    train_minutes: float = field(
        5.0, help="time budget of a challenger's training (keeps a generation under 10 minutes)", above=0
    )
    verify_on: str = field(
        "local",
        help="where the verify step checks candidates: local (this machine's pools) or ray "
        "(a Ray cluster: RAY_ADDRESS, else one started on this machine)",
        choices=("local", "ray"),
    )
    launcher: str = field(
        "",
        help="command that starts the challenger's training on several processes, e.g. "
        "'torchrun --nproc-per-node 8' (default: in the loop's own process)",
    )
    keep_rejected: bool = field(
        False,
        help="keep rejected challengers' weights and training draws (default: "
        "only their eval.json, recipe.yaml and report.md)",
    )
    seed: int = field(0, help="seed of everything the loop draws")
    recipe: dict = field({}, help="settings overlaying the default recipe of generation 1")


def check_config(cfg: LoopConfig, where: str = "config") -> None:
    """What a field's type and range cannot say: known worlds, sources as paths, a usable recipe."""
    if not cfg.worlds or not all(isinstance(w, str) for w in cfg.worlds):
        raise UserError(f"{where}: key 'worlds': a list of one or more world names")
    unknown = set(cfg.worlds) - set(WORLD_NAMES)
    if unknown:
        raise UserError(f"{where}: key 'worlds': unknown world {min(unknown)!r} (known: {', '.join(WORLD_NAMES)})")
    if not all(isinstance(s, str) and s for s in cfg.sources):
        raise UserError(f"{where}: key 'sources': a list of paths (or hf:NAME datasets)")
    recipe_from_settings(cfg.recipe, f"{where}: recipe")
    if cfg.verify_on == "ray" and importlib.util.find_spec("ray") is None:
        raise UserError(f"{where}: key 'verify_on': ray is not installed (pip install -e '.[scale]')")
    if cfg.launcher:
        try:
            program = shlex.split(cfg.launcher)[0]
        except (ValueError, IndexError):
            raise UserError(f"{where}: key 'launcher': not a command line: {cfg.launcher!r}") from None
        if shutil.which(program) is None:
            raise UserError(f"{where}: key 'launcher': {program!r} is not an installed program")
