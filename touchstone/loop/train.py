"""Step 5, train: a challenger fine-tuned on a draw from data/new (minus quarantined records, hard
examples repeated) plus the language-model loss on data/orig, starting from `Generation.base`: the
champion, or the last rejected challenger when the gate found that one no worse.

With the `launcher` setting (e.g. `torchrun --nproc-per-node 8`) the fine-tuning runs data parallel in
the processes the launcher starts: the step writes the job (base, records, output, trainer settings) to
generations/gen-NNNN/train-job.json and runs `LAUNCHER -m touchstone.loop.train JOB`; every process
reads the job and calls `finetune`, which joins their group (touchstone.train.finetune). The launcher
runs in a session of its own, so Ctrl-C in the terminal lets the training finish, as any step does;
SIGTERM to the loop stops it and every process it started.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import signal
import subprocess
import sys

from touchstone.config import from_dict, to_dict
from touchstone.errors import UserError
from touchstone.files import MANIFEST, read_json, write_json_atomic, write_jsonl_atomic
from touchstone.loop.config import LoopConfig
from touchstone.loop.generation import Generation, by_world
from touchstone.loop.recipe import Recipe, load_recipe, recipe_settings
from touchstone.loop.workspace import Workspace, ids_in, records
from touchstone.train.finetune import FinetuneConfig, finetune

STOP_GRACE_SECONDS = 10  # how long the launched training gets to stop on SIGTERM before it is killed


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
        job = {
            "base": str(ws.models / g.base),
            "data": [str(g.dir / "train.jsonl")],
            "out": str(out),
            "trainer": to_dict(trainer),
            "loop": {"generation": g.number, "champion": g.champion, "base": g.base, "recipe": recipe_settings(recipe)},
        }
        if cfg.launcher:
            write_json_atomic(g.dir / "train-job.json", job)
            launch(cfg.launcher, g.dir / "train-job.json")
        else:
            run_job(job)
    manifest = read_json(out / MANIFEST)
    return {"base": g.base, **{k: v for k, v in manifest.items() if k != "files"}}


def run_job(job: dict) -> None:
    """Fine-tune as `job` says; under a launcher, this process's part of it."""
    trainer = from_dict(FinetuneConfig, job["trainer"], "train job: trainer")
    finetune(job["base"], job["data"], job["out"], trainer, loop=job["loop"])


def launch(launcher: str, job_file) -> None:
    """Run the job under `launcher` and wait for it; a failed launch is a UserError with its exit status."""
    command = [*shlex.split(launcher), "-m", "touchstone.loop.train", str(job_file)]
    proc = subprocess.Popen(command, start_new_session=True)
    try:
        status = proc.wait()
    except BaseException:  # Terminated (SIGTERM) or anything else: stop the launcher and what it started
        stop_session(proc)
        raise
    if status != 0:
        raise UserError(f"challenger training under launcher '{launcher}' failed with exit status {status}")


def stop_session(proc: subprocess.Popen) -> None:
    """SIGTERM to the launcher's whole session (torchrun passes it on to its workers), then SIGKILL to
    whatever is left after STOP_GRACE_SECONDS."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


if __name__ == "__main__":  # one process of a launched training: `LAUNCHER -m touchstone.loop.train JOB`
    try:
        run_job(read_json(sys.argv[1]))
    except UserError as e:
        print(f"touchstone: error: {e}", file=sys.stderr)
        sys.exit(2)
