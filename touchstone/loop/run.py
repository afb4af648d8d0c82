"""The driver, `touchstone run`: generation 0 (the bootstrap), then generation after generation, each step
recorded in the ledger with its wall time; and the signals that stop it (see the package docstring)."""

from __future__ import annotations

import hashlib
import shutil
import signal
import sys
import time
from pathlib import Path

from touchstone.config import dump_yaml, load_yaml, to_dict
from touchstone.corpus import default_sources
from touchstone.data.config import PrepareConfig
from touchstone.data.prepare import prepare
from touchstone.errors import Terminated
from touchstone.files import MANIFEST, atomic_dir, check_manifest, read_json, write_manifest, write_text_atomic
from touchstone.loop.choose_recipe import choose_recipe
from touchstone.loop.config import LoopConfig, check_config
from touchstone.loop.gate import gate
from touchstone.loop.generation import Generation, open_generation
from touchstone.loop.history import scoreboard, status, write_reports
from touchstone.loop.ledger import STEPS, Ledger
from touchstone.loop.recipe import Recipe
from touchstone.loop.rework import rework
from touchstone.loop.suites import suite_scores
from touchstone.loop.synthesize import synthesize
from touchstone.loop.train import train
from touchstone.loop.verify import verify
from touchstone.loop.workspace import Workspace, drop_rejected, training_base
from touchstone.train.pretrain import PretrainConfig, pretrain

# Each step of a generation: (workspace, config, generation) -> the summary its ledger row keeps.
STAGES = dict(zip(STEPS, (synthesize, verify, rework, choose_recipe, train, gate)))


class Stop:
    """SIGTERM stops now; SIGINT (Ctrl-C) asks the loop to stop after the current step, and a second
    SIGINT stops now.

    Why SIGTERM does not wait: supervisors (systemd, `docker stop`) send it and kill about ten seconds
    later, and a step can take ten minutes. Stopping mid-step is safe, as after kill -9: the step has no
    ledger row, its half-written files are staging files that the next run removes, and the next run
    redoes it (pretraining from its last checkpoint). Raising `Terminated` rather than exiting lets
    `finally` blocks and context managers run, so the lock is released and staging files removed."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if signum == signal.SIGTERM or self.requested:
            self.requested = True
            print(f"\n{name}: stopping now; the same command resumes the unfinished step", file=sys.stderr, flush=True)
            raise Terminated(signum)
        self.requested = True
        print(
            f"\n{name}: finishing the current step, then stopping (signal again to stop now)",
            file=sys.stderr,
            flush=True,
        )

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def timed_step(ledger: Ledger, gen: int, name: str, fn) -> dict:
    """Run one step and commit its ledger row (after its files are in place); its summary."""
    say(f"generation {gen}: {name}")
    t0 = time.monotonic()
    summary = fn()
    with ledger.transaction():
        ledger.finish_step(gen, name, time.monotonic() - t0, summary)
    release_memory()
    return summary


def release_memory() -> None:
    """Hand the memory a finished step freed back to the system. glibc keeps freed heap pages for reuse,
    so after fine-tuning a loop that had nothing left alive still held about half a gigabyte more
    (docs/training.md); malloc_trim returns them. Nothing happens where there is no glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# ----------------------------------------------------------------------------------- generation 0
def prepare_orig(ws: Workspace, cfg: LoopConfig) -> dict:
    if not (ws.orig / MANIFEST).exists():
        prepare(cfg.sources or default_sources(), ws.orig, PrepareConfig(seed=cfg.seed))
    manifest = read_json(ws.orig / MANIFEST)
    return {
        "manifest_sha256": hashlib.sha256((ws.orig / MANIFEST).read_bytes()).hexdigest(),
        **{k: manifest[k] for k in ("counts", "dropped") if k in manifest},
    }


def copy_tokenizer(ws: Workspace) -> dict:
    with atomic_dir(ws.tokenizer, overwrite=True) as stage:
        for p in (ws.orig / "tokenizer").iterdir():
            shutil.copy2(p, stage / p.name)
        write_manifest(stage, {"kind": "tokenizer", "from": str(ws.orig / "tokenizer")})
    return {"files": sorted(p.name for p in ws.tokenizer.iterdir())}


def pretrain_first(ws: Workspace, cfg: LoopConfig) -> dict:
    out = ws.model(0)
    if not (out / MANIFEST).exists():
        resume = (out.parent / f".{out.name}.run" / "checkpoint").exists()
        pretrain(
            ws.orig, out, PretrainConfig(size=cfg.size, minutes=cfg.pretrain_minutes, seed=cfg.seed), resume=resume
        )
    shutil.rmtree(out.parent / f".{out.name}.run", ignore_errors=True)  # token cache and checkpoint
    return {k: v for k, v in read_json(out / MANIFEST).items() if k != "files"}


def baseline(ws: Workspace, cfg: LoopConfig, ledger: Ledger) -> dict:
    scores = suite_scores(ws.model(0), ws.worlds(cfg.worlds))
    ws.set_champion("gen-0000")
    with ledger.transaction():
        ledger.set_metrics(0, "gen-0000", {f"suite:{w}": s for w, s in scores.items()})
        ledger.decide(
            0,
            "gen-0000",
            "initial",
            "pretrained from scratch",
            None,
            {"suites": {w: s["accuracy"] for w, s in scores.items()}},
        )
    return {"suites": {w: s["accuracy"] for w, s in scores.items()}}


def bootstrap(ws: Workspace, cfg: LoopConfig, ledger: Ledger, stop: Stop) -> bool:
    """Prepare data/orig, the tokenizer, pretrain gen-0000 and score it; False if stopped early."""
    done = ledger.done_steps(0)
    ledger.start_generation(0, "")
    steps = (
        ("prepare", lambda: prepare_orig(ws, cfg)),
        ("tokenizer", lambda: copy_tokenizer(ws)),
        ("pretrain", lambda: pretrain_first(ws, cfg)),
        ("baseline", lambda: baseline(ws, cfg, ledger)),
    )
    for name, fn in steps:
        if name in done:
            continue
        if stop.requested:
            return False
        timed_step(ledger, 0, name, fn)
    if ws.champion() is None:  # killed between the baseline row and the pointer: finish it
        ws.set_champion("gen-0000")
    return True


# ---------------------------------------------------------------------------------- a generation
def run_step(ws: Workspace, cfg: LoopConfig, g: Generation, name: str) -> dict:
    """Run step `name` of generation `g` (data/orig hash-checked before its first step) and record it."""
    if not g.ledger.done_steps(g.number):
        check_manifest(ws.orig)  # data/orig untouched since ingest (raises naming the changed file)
    summary = timed_step(g.ledger, g.number, name, lambda: STAGES[name](ws, cfg, g))
    if g.ledger.generation(g.number)["decision"] and not cfg.keep_rejected:
        drop_rejected(ws, g.ledger, keep=training_base(ws, g.ledger, g.number + 1))
    return summary


def run_generation(
    ws: Workspace, cfg: LoopConfig, ledger: Ledger, gen: int, stop: Stop, recipe_override: Recipe | None = None
) -> bool:
    """Run (or resume) generation `gen`; False if it stopped before the end."""
    g = open_generation(ws, cfg, ledger, gen, recipe_override)
    done = ledger.done_steps(gen)
    for name in STEPS:
        if name in done:
            continue
        if stop.requested:
            return False
        run_step(ws, cfg, g, name)
    return True


def finished(ledger: Ledger) -> list[dict]:
    return [g for g in ledger.generations() if g["gen"] > 0 and g["decision"]]


def current_generation(ledger: Ledger) -> int:
    """The generation the loop works on: the unfinished one, or the one after the last finished."""
    open_gen = [g["gen"] for g in ledger.generations() if g["gen"] > 0 and not g["decision"]]
    done = finished(ledger)
    return open_gen[0] if open_gen else (done[-1]["gen"] + 1 if done else 1)


def quiet_transformers() -> None:
    """No progress bar per model load: it would drown the loop's own progress lines."""
    from transformers.utils import logging as hf_logging  # transformers: only once a loop really runs

    hf_logging.disable_progress_bar()


def run(
    workspace: str | Path,
    cfg: LoopConfig | None = None,
    generations: int | None = 5,
    hours: float | None = None,
    recipe_override: Recipe | None = None,
) -> dict:
    """Bootstrap the workspace if needed, then run generations until the workspace has `generations`
    finished ones, `hours` have passed, or a signal arrives (both None: run forever)."""
    quiet_transformers()
    ws = Workspace(workspace)
    deadline = time.monotonic() + hours * 3600 if hours else None
    # Everything that can be refused is checked before the workspace is touched (even its LOCK file).
    ws.check_root(for_run=True)
    saved = load_yaml(LoopConfig, ws.config_path) if ws.config_path.exists() else None
    if saved is None:
        check_config(cfg or LoopConfig())
    if ws.ledger_path.exists():
        Ledger(ws.ledger_path).close()  # a broken ledger is refused here, naming it
    with ws.lock(), Stop() as stop:
        ws.clean_staging()
        if saved is not None:
            if cfg is not None and to_dict(cfg) != to_dict(saved):
                say(f"{ws.config_path}: this workspace's settings are used; start a new workspace to change them")
            cfg = saved
        else:
            cfg = cfg or LoopConfig()
            write_text_atomic(ws.config_path, dump_yaml(cfg))
        ledger = Ledger(ws.ledger_path)
        try:
            if not bootstrap(ws, cfg, ledger, stop):
                return {"stopped": True}
            while not stop.requested:
                if generations is not None and len(finished(ledger)) >= generations:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                gen = current_generation(ledger)
                if not run_generation(ws, cfg, ledger, gen, stop, recipe_override):
                    break
                print(scoreboard(ledger, gen), flush=True)
                write_reports(ws, ledger)
            say("stopped" if stop.requested else "done")
            print(status(ws.root, ledger=ledger))
            return {"finished": len(finished(ledger)), "champion": ws.champion(), "stopped": stop.requested}
        finally:
            ledger.close()
