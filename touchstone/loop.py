"""The re-train button: `touchstone run`, the loop that improves the model with no human involved.

    touchstone run                       # ./workspace, five generations
    touchstone run --hours 8             # as many generations as fit
    touchstone status / touchstone history

Generation 0 prepares the embedded default corpus into data/orig, copies its tokenizer, pretrains
models/gen-0000 and scores it on every world's held-out suite; it becomes the champion. Then each
generation runs these steps, each recorded in the ledger with its wall time:

1. synthesize  candidates from each world's generator, the champion's own samples (touchstone.grow)
               and mutations of existing records; plus this generation's gate set, drawn fresh from
               the worlds' gate items, which training records never use (touchstone.synth)
2. verify      every candidate re-checked by its world's verifier; only agreeing records, new and
               outside the held-out suites and gate sets, enter data/new/gen-NNNN.jsonl with their verdict
3. rework      the training-data compiler over all of data/new (schema, duplicates, conflicting labels,
               evaluation overlap), a re-verification audit of older records, and the records where the
               champion's judgement and the label disagree, re-checked: the verifier upholding the label
               makes a hard example, overruling it quarantines the record. Output: data/rework/gen-NNNN/
               (fixed, quarantine, hard: each with the reason and the original id). data/orig is
               hash-checked against its manifest at the start of every generation.
4. recipe      the recipe of the model trained on (see 5) with one or two settings mutated (touchstone.recipe)
5. train       a challenger fine-tuned on a draw from data/new (minus quarantined, hard examples
               repeated) plus the language-model loss on data/orig, starting from the champion, or
               from the last rejected challenger when the gate found that one no worse (training_base)
6. gate        champion and challenger on the gate set (McNemar's exact test) and on every held-out
               suite (regression guard); see touchstone.gate. Promotion moves models/CHAMPION.

Crash safety. Every file that matters is written to a staging path, fsynced and renamed; a model
directory appears whole or not at all; models/CHAMPION is replaced atomically and only ever names a
complete model. A step's ledger row is committed after its files are in place, so on restart the loop
redoes exactly the steps without a row; their outputs are rewritten whole, so nothing is duplicated,
and the gate compares against the champion recorded when the generation began. Two loops on one
workspace: an exclusive lock (flock, released by the kernel even on kill -9) makes the second refuse.

SIGTERM (systemd, `docker stop`) stops at once, exit status 143; the unfinished step is redone by the
next run, as after kill -9. Ctrl-C (SIGINT) lets the current step finish, then stops; a second Ctrl-C
stops at once. The state stays consistent either way.

Growth over a long run: rejected challengers' weights and training draws are deleted (their eval.json,
recipe.yaml and report.md stay; `keep_rejected` keeps everything), and so is every finished generation's
candidates.jsonl (the ledger keeps its counts); `benchmarks/soak.py` measures what remains.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from touchstone.config import Config, field, from_dict, to_dict
from touchstone.errors import Terminated, UserError
from touchstone.files import (MANIFEST, check_manifest, read_json, read_jsonl, write_json_atomic, write_jsonl_atomic,
                              write_text_atomic)
from touchstone.model import DEPTHS
from touchstone.recipe import WORLD_NAMES, Recipe

STEPS = ("synthesize", "verify", "rework", "recipe", "train", "gate")


@dataclass
class LoopConfig(Config):
    size: str = field("micro", help="model size of generation 0 (nano | micro | small)", choices=tuple(DEPTHS))
    pretrain_minutes: float = field(10.0, help="pretraining budget of generation 0, in minutes", above=0)
    sources: list = field([], help="what data/orig is prepared from (default: the embedded corpus)")
    worlds: list = field(list(WORLD_NAMES), help="the worlds the loop synthesizes from and is gated on")
    records_per_world: int = field(300, help="candidates from each world's generator per generation", min=0)
    own_samples: int = field(32, help="champion samples per generation for each world that has them (numbers, code)", min=0)
    mutations: int = field(100, help="candidates made by mutating existing records, per generation", min=0)
    # 200 per world. Near chance two judges disagree on about half the records, so McNemar's test at
    # one-sided 0.05 with 80% power needs a gain of about 2.5 * sqrt(0.5 / n): 7.2 points on the 600
    # records of 100 per world, where a measured run rejected gains of 4.5 and 4.6 points (p = 0.085,
    # 0.069); 5.1 points on 1,200. Measured cost: generations of 8.7-9.5 minutes against 7.8-8.9 (the
    # gate step 108-126 s against 90-99 s; the code world's gate records run in the sandbox).
    gate_per_world: int = field(200, help="fresh gate records per world per generation", min=1)
    reverify_sample: int = field(200, help="older records re-verified per generation (a rolling audit)", min=0)
    disagreement_sample: int = field(300, help="this generation's records the champion judges, to find disagreements", min=0)
    alpha: float = field(0.05, help="gate significance level (one-sided McNemar exact test)", above=0, max=1)
    tolerance: float = field(0.05, help="largest accuracy drop on any held-out suite a promotion may cause", min=0, max=1)
    # 5: measured generations took 2.5-4.5 minutes besides training, and five of them plus generation 0
    # must fit in an hour.
    train_minutes: float = field(5.0, help="time budget of a challenger's training (keeps a generation under 10 minutes)", above=0)
    keep_rejected: bool = field(False, help="keep rejected challengers' weights and training draws (default: "
                                "only their eval.json, recipe.yaml and report.md)")
    seed: int = field(0, help="seed of everything the loop draws")
    recipe: dict = field({}, help="settings overlaying the default recipe of generation 1")


# -------------------------------------------------------------------------------------- workspace
class Workspace:
    """The paths of one workspace (layout in DESIGN.md) and its lock."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.orig = self.root / "data" / "orig"
        self.new = self.root / "data" / "new"
        self.rework = self.root / "data" / "rework"
        self.tokenizer = self.root / "tokenizer"
        self.models = self.root / "models"
        self.recipes = self.root / "recipes"
        self.generations = self.root / "generations"
        self.reports = self.root / "reports"
        self.ledger_path = self.root / "ledger.sqlite"
        self.config_path = self.root / "config.yaml"

    def model(self, gen: int) -> Path:
        return self.models / f"gen-{gen:04d}"

    def gen_dir(self, gen: int) -> Path:
        return self.generations / f"gen-{gen:04d}"

    def champion(self) -> str | None:
        """The champion's name, from models/CHAMPION (None before generation 0 has one)."""
        p = self.models / "CHAMPION"
        if not p.exists():
            return None
        try:
            name = p.read_bytes().decode("utf-8").strip()
        except (OSError, UnicodeDecodeError):
            name = None
        if not name or not re.fullmatch(r"gen-\d{4,}", name):
            raise UserError(f"{p}: corrupt (expected the name of a model in {self.models}, like gen-0003)")
        return name

    def check_root(self, for_run: bool = False) -> None:
        """The root is a directory (or absent); `for_run`: and holds nothing but a workspace's own entries,
        so that a loop never fills (or cleans) a folder that is not a workspace."""
        from touchstone.staging import LEFTOVER

        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{self.root}: a file, not a workspace directory; choose another --workspace")
        if for_run and self.root.is_dir() and not self.ledger_path.exists():
            own = {"LOCK", self.config_path.name, self.ledger_path.name, "data", "models", "tokenizer", "recipes",
                   "generations", "reports"}
            for entry in sorted(self.root.iterdir()):
                m = LEFTOVER.fullmatch(entry.name)
                if entry.name not in own and not entry.name.startswith(self.ledger_path.name) and not (m and m["name"] in own):
                    raise UserError(f"{self.root}: not a Touchstone workspace (no ledger.sqlite) and not empty "
                                    f"({entry.name}); choose a new or empty --workspace")

    def set_champion(self, name: str) -> None:
        check_manifest(self.models / name, verify_hashes=False)  # only a complete model may be named
        write_text_atomic(self.models / "CHAMPION", name + "\n")

    @contextlib.contextmanager
    def lock(self):
        """Exclusive use of the workspace; a second loop gets a UserError at once."""
        import fcntl

        self.check_root()
        self.root.mkdir(parents=True, exist_ok=True)
        f = open(self.root / "LOCK", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise UserError(f"{self.root}: in use by another loop ({holder}); one loop per workspace") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.close()

    def clean_staging(self) -> None:
        """Remove what interrupted atomic writes left behind (hidden staging files and directories of
        dead processes; a version moved aside mid-swap is put back, see `files.clean_leftovers`), and
        rejected challengers `drop_rejected` had hidden but not yet deleted."""
        from touchstone.staging import clean_leftovers

        for parent in (self.root, self.orig.parent, self.new, self.rework, self.models, self.recipes,
                       self.generations, self.reports, self.tokenizer.parent):
            if not parent.is_dir():
                continue
            clean_leftovers(parent)
            for p in parent.glob(".*.rejected"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            for d in parent.glob("gen-*"):
                if d.is_dir():
                    clean_leftovers(d)


# -------------------------------------------------------------------------------------- helpers
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
            print(f"\n{name}: stopping now; the same command resumes the unfinished step", file=sys.stderr,
                  flush=True)
            raise Terminated(signum)
        self.requested = True
        print(f"\n{name}: finishing the current step, then stopping (signal again to stop now)", file=sys.stderr,
              flush=True)

    def __exit__(self, *exc):
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        return False


def _seed(*parts) -> int:
    """A seed derived from its parts, stable across runs and Python processes."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "big") % (2**31 - 1)


def draw_gate(world, n: int, taken: set[str], seed: int, rounds: int = 10) -> list[dict]:
    """Up to n verified gate records of `world` whose ids are not in `taken`.

    Earlier gates' ids are banned (a gate that chose a champion is spent), so a world with a finite item
    space (facts: a few hundred countries) would otherwise gate on fewer records each generation. Draw
    again, with a seed derived from `seed` and the round, for what is still missing, up to `rounds` draws;
    round 0 alone (seed `seed`) is what a world with room to spare gets, so its gate set does not change."""
    from touchstone.worlds.splits import split_world

    out: list[dict] = []
    seen = set(taken)
    for k in range(rounds):
        need = n - len(out)
        if need <= 0:
            break
        for r in split_world(world, "gate").render(random.Random(_seed(seed, k) if k else seed), need):
            if r["id"] not in seen and (r.get("verdict") or {}).get("ok") and len(out) < n:
                seen.add(r["id"])
                out.append(r)
    return out


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _records(path: Path) -> list[dict]:
    return [obj for _, obj in read_jsonl(path)] if path.exists() else []


def _new_files(ws: Workspace) -> list[Path]:
    return sorted(ws.new.glob("gen-*.jsonl"))


def _ids_in(paths) -> set[str]:
    return {r["id"] for p in paths for r in _records(p)}


def make_worlds(ws: Workspace, names: list[str]) -> dict:
    """The loop's worlds; the language world reads its sentences from data/orig (the workspace's corpus)."""
    from touchstone.worlds import get_world

    return {n: get_world(n, source=str(ws.orig)) if n == "language" else get_world(n) for n in names}


# ---------------------------------------------------------------------------- held-out suites
def suite_scores(model_dir: Path, worlds: dict) -> dict[str, dict]:
    """Per world: the judge's accuracy on the held-out suite and the per-record correctness, cached in
    the model directory's eval.json (the model never changes, the suites are versioned)."""
    from touchstone.judge import Judge
    from touchstone.synth import heldout_suite

    cache = model_dir / "eval.json"
    have = json.loads(cache.read_text(encoding="utf-8")).get("suites", {}) if cache.exists() else {}
    suites = {name: heldout_suite(world) for name, world in worlds.items()}
    todo = [w for w in worlds if w not in have or have[w].get("version") != suites[w][0]
            or have[w].get("n") != len(suites[w][1])]  # a suite of another size is another suite
    if todo:
        judge = Judge.load(model_dir)
        for w in todo:
            records = suites[w][1]
            verdicts = judge.records(records)
            correct = [str(v["choice"]).lower() == str(r["label"]).lower() for r, v in zip(records, verdicts)]
            have[w] = {"version": suites[w][0], "n": len(correct), "accuracy": sum(correct) / len(correct),
                       "correct": [int(c) for c in correct]}
        write_json_atomic(cache, {"suites": have})
    return {w: have[w] for w in worlds}


def judge_correct(model_dir: Path, records: list[dict]) -> list[bool]:
    from touchstone.judge import Judge

    verdicts = Judge.load(model_dir).records(records)
    return [str(v["choice"]).lower() == str(r["label"]).lower() for r, v in zip(records, verdicts)]


# ----------------------------------------------------------------------------------- generation 0
def bootstrap(ws: Workspace, cfg: LoopConfig, ledger, stop: Stop) -> bool:
    """Prepare data/orig, the tokenizer, pretrain gen-0000 and score it; False if stopped early."""
    from touchstone.files import atomic_dir, write_manifest

    done = ledger.done_steps(0)
    ledger.start_generation(0, "")

    def step(name, fn):
        if name in done:
            return True
        if stop.requested:
            return False
        _say(f"generation 0: {name}")
        t0 = time.monotonic()
        summary = fn()
        with ledger.transaction():
            ledger.finish_step(0, name, time.monotonic() - t0, summary)
        return True

    def prepare_orig():
        from touchstone.corpus import default_sources
        from touchstone.data.config import PrepareConfig
        from touchstone.data.prepare import prepare

        if not (ws.orig / MANIFEST).exists():
            prepare(cfg.sources or default_sources(), ws.orig, PrepareConfig(seed=cfg.seed))
        manifest = json.loads((ws.orig / MANIFEST).read_text(encoding="utf-8"))
        return {"manifest_sha256": hashlib.sha256((ws.orig / MANIFEST).read_bytes()).hexdigest(),
                **{k: manifest[k] for k in ("counts", "dropped") if k in manifest}}

    def copy_tokenizer():
        with atomic_dir(ws.tokenizer, overwrite=True) as stage:
            for p in (ws.orig / "tokenizer").iterdir():
                shutil.copy2(p, stage / p.name)
            write_manifest(stage, {"kind": "tokenizer", "from": str(ws.orig / "tokenizer")})
        return {"files": sorted(p.name for p in ws.tokenizer.iterdir())}

    def pretrain_gen0():
        from touchstone.train.pretrain import PretrainConfig, pretrain

        out = ws.model(0)
        if not (out / MANIFEST).exists():
            resume = (out.parent / f".{out.name}.run" / "checkpoint").exists()
            pcfg = PretrainConfig(size=cfg.size, minutes=cfg.pretrain_minutes, seed=cfg.seed)
            pretrain(ws.orig, out, pcfg, resume=resume)
        shutil.rmtree(out.parent / f".{out.name}.run", ignore_errors=True)  # token cache and checkpoint
        return {k: v for k, v in json.loads((out / MANIFEST).read_text()).items() if k != "files"}

    def baseline():
        scores = suite_scores(ws.model(0), make_worlds(ws, cfg.worlds))
        ws.set_champion("gen-0000")
        with ledger.transaction():
            ledger.set_metrics(0, "gen-0000", {f"suite:{w}": s for w, s in scores.items()})
            ledger.decide(0, "gen-0000", "initial", "pretrained from scratch", None,
                          {"suites": {w: s["accuracy"] for w, s in scores.items()}})
        return {"suites": {w: s["accuracy"] for w, s in scores.items()}}

    for name, fn in (("prepare", prepare_orig), ("tokenizer", copy_tokenizer), ("pretrain", pretrain_gen0),
                     ("baseline", baseline)):
        if not step(name, fn):
            return False
    if ws.champion() is None:  # killed between the baseline row and the pointer: finish it
        ws.set_champion("gen-0000")
    return True


# ---------------------------------------------------------------------------------- a generation
class Generation:
    """One turn of the loop; each method is a step, returning the summary the ledger keeps."""

    def __init__(self, ws: Workspace, cfg: LoopConfig, ledger, gen: int, recipe_override: Recipe | None = None):
        self.ws, self.cfg, self.ledger, self.gen = ws, cfg, ledger, gen
        self.dir = ws.gen_dir(gen)
        self.champion = ledger.generation(gen)["champion_before"]
        self.champion_dir = ws.models / self.champion
        self.challenger = f"gen-{gen:04d}"
        self.recipe_override = recipe_override
        self.worlds = make_worlds(ws, cfg.worlds)
        self.base = training_base(ws, ledger, gen) or self.champion

    @property
    def base_dir(self) -> Path:
        return self.ws.models / self.base

    def banned_ids(self) -> set[str]:
        """Ids that may never enter data/new: the held-out suites and every gate set so far."""
        from touchstone.synth import heldout_ids

        ids = set()
        for world in self.worlds.values():
            ids |= heldout_ids(world)
        return ids | _ids_in(sorted(self.ws.generations.glob("gen-*/gate.jsonl")))

    # 1 ------------------------------------------------------------------------------------------
    def synthesize(self) -> dict:
        from touchstone.generate import load_model
        from touchstone.grow import champion_code, champion_numbers, mutate_records

        cfg, gen = self.cfg, self.gen
        candidates, made = [], {}
        for w in cfg.worlds:
            recs = self.worlds[w].render(random.Random(_seed(cfg.seed, gen, w, "synth")), cfg.records_per_world)
            candidates += recs
            made[f"{w}/generator"] = len(recs)
        unparseable = 0
        if cfg.own_samples and ({"numbers", "code"} & set(cfg.worlds)):
            model, tokenizer = load_model(self.champion_dir)
            rng = random.Random(_seed(cfg.seed, gen, "own"))
            source = f"champion:{self.champion}"
            if "numbers" in cfg.worlds:
                recs, unparseable = champion_numbers(model, tokenizer, rng, cfg.own_samples, source)
                candidates += recs
                made["numbers/champion"] = len(recs)
            if "code" in cfg.worlds:
                recs = champion_code(model, tokenizer, rng, cfg.own_samples, source)
                candidates += recs
                made["code/champion"] = len(recs)
        in_new = [r for p in _new_files(self.ws) for r in _records(p)]
        existing = [r for r in in_new if r["world"] in cfg.worlds]
        if cfg.mutations and existing:
            recs = mutate_records(existing, random.Random(_seed(cfg.seed, gen, "mutate")), cfg.mutations, gen,
                                  self.worlds)
            candidates += recs
            made["mutation"] = len(recs)
        for r in candidates:
            r["generation"] = gen
            r.setdefault("parent", None)
        # The gate set: fresh records drawn with their own seed from the worlds' gate items, which no
        # training record ever uses (touchstone.synth.in_split); the id check below is a second guard.
        taken = self.banned_ids() | {r["id"] for r in candidates} | {r["id"] for r in in_new}
        gate = []
        for w in cfg.worlds:
            gate += draw_gate(self.worlds[w], cfg.gate_per_world, taken, _seed(cfg.seed, gen, w, "gate"))
        self.dir.mkdir(parents=True, exist_ok=True)
        write_jsonl_atomic(self.dir / "gate.jsonl", gate)
        write_jsonl_atomic(self.dir / "candidates.jsonl", candidates)
        return {"candidates": len(candidates), "made": made, "gate": len(gate),
                "champion_unparseable_numbers": unparseable}

    # 2 ------------------------------------------------------------------------------------------
    def verify(self) -> dict:
        from touchstone.records import schema_errors

        candidates = _records(self.dir / "candidates.jsonl")
        reserved = self.banned_ids()
        earlier = _ids_in(p for p in _new_files(self.ws) if p.name != f"gen-{self.gen:04d}.jsonl")
        by_world: dict[str, list[dict]] = {}
        for r in candidates:
            by_world.setdefault(r["world"], []).append(r)
        kept, seen, stats = [], set(), {}
        for w, recs in sorted(by_world.items()):
            verdicts = self.worlds[w].verify_many(recs)
            for r, v in zip(recs, verdicts):
                source = "champion" if str(r.get("source", "")).startswith("champion") else (
                    "mutation" if r.get("source") == "mutation" else "generator")
                row = stats.setdefault((w, source), {"world": w, "source": source, "made": 0, "verified": 0,
                                                     "rejected": 0, "reasons": {}})
                row["made"] += 1
                why = None
                if not v.ok:
                    why = v.reason
                elif r["id"] in reserved:
                    why = "held_out_or_gate"
                elif r["id"] in earlier:
                    why = "already_in_data_new"
                elif r["id"] in seen:
                    why = "duplicate"
                elif schema_errors(r):
                    why = "schema"
                if why:
                    row["rejected"] += 1
                    row["reasons"][why] = row["reasons"].get(why, 0) + 1
                    continue
                row["verified"] += 1
                seen.add(r["id"])
                kept.append({**r, "verdict": v.to_dict()})
        write_jsonl_atomic(self.ws.new / f"gen-{self.gen:04d}.jsonl", kept)
        with self.ledger.transaction():
            self.ledger.add_candidates(self.gen, list(stats.values()))
            self.ledger.add_records(self.gen, kept)
        return {"verified": len(kept), "rejected": sum(s["rejected"] for s in stats.values()),
                "by_world": {w: sum(s["verified"] for s in stats.values() if s["world"] == w) for w in by_world}}

    # 3 ------------------------------------------------------------------------------------------
    def rework(self) -> dict:
        from touchstone.files import atomic_dir, write_manifest
        from touchstone.lint import lint_files

        cfg, rng = self.cfg, random.Random(_seed(self.cfg.seed, self.gen, "rework"))
        files = _new_files(self.ws)
        this = self.ws.new / f"gen-{self.gen:04d}.jsonl"
        # The compiler's static checks over everything; its verification is the audit below.
        entries, _ = lint_files([str(p) for p in files], verify=False)
        fixed, quarantine, hard = [], [], []
        for e in entries:
            if e.quarantined:
                quarantine.append({**e.rec, "rework": {"reasons": [f"{d.code}: {d.message}" for d in e.diags if d.error],
                                                        "original_id": e.original_id, "source": e.where}})
            elif e.fixed:
                fixed.append({**e.rec, "parent": e.original_id,
                              "rework": {"reasons": [f"{d.code}: {d.message}" for d in e.diags],
                                         "original_id": e.original_id, "source": e.where}})
        done = {r["id"] for r in quarantine}
        # Rolling audit: older records re-verified with the current verifiers.
        older = [e.rec for e in entries if not e.where.startswith(str(this)) and e.rec.get("id") not in done]
        audit = rng.sample(older, min(cfg.reverify_sample, len(older)))
        reverify_failed = 0
        for w, recs in _group(audit).items():
            for r, v in zip(recs, self.worlds[w].verify_many(recs)):
                if not v.ok:
                    reverify_failed += 1
                    done.add(r["id"])
                    quarantine.append({**r, "rework": {"reasons": [f"reverify: {v.reason}"], "original_id": r["id"],
                                                       "source": "audit"}})
        # Disagreements: where the champion's judgement differs from the label, ask the verifier again.
        recent = [r for r in _records(this) if r["id"] not in done]
        probe = rng.sample(recent, min(cfg.disagreement_sample, len(recent)))
        disagreements = [r for r, ok in zip(probe, judge_correct(self.champion_dir, probe) if probe else []) if not ok]
        for w, recs in _group(disagreements).items():
            for r, v in zip(recs, self.worlds[w].verify_many(recs)):
                note = {"original_id": r["id"], "source": f"champion {self.champion} disagreed with the label"}
                if v.ok:
                    hard.append({**r, "rework": {"reasons": ["verifier upholds the label"], **note}})
                else:
                    quarantine.append({**r, "rework": {"reasons": [f"verifier overrules the label: {v.reason}"], **note}})
        with atomic_dir(self.ws.rework / f"gen-{self.gen:04d}", overwrite=True) as stage:
            write_jsonl_atomic(stage / "fixed.jsonl", fixed)
            write_jsonl_atomic(stage / "quarantine.jsonl", quarantine)
            write_jsonl_atomic(stage / "hard.jsonl", hard)
            write_manifest(stage, {"fixed": len(fixed), "quarantined": len(quarantine), "hard": len(hard)})
        return {"linted": len(entries), "fixed": len(fixed), "quarantined": len(quarantine), "hard": len(hard),
                "audited": len(audit), "audit_failed": reverify_failed, "probed": len(probe),
                "disagreements": len(disagreements)}

    # 4 ------------------------------------------------------------------------------------------
    def recipe(self) -> dict:
        from touchstone.recipe import load_recipe, mutate, recipe_yaml

        if self.recipe_override is not None:
            recipe, changes = self.recipe_override.check(), ["given by the caller"]
        else:
            base_path = self.ws.recipes / f"{self.base}.yaml"
            base = load_recipe(base_path) if base_path.exists() else from_dict(Recipe, self.cfg.recipe, "config: recipe").check()
            recipe, changes = mutate(base, random.Random(_seed(self.cfg.seed, self.gen, "recipe")))
        write_text_atomic(self.ws.recipes / f"{self.challenger}.yaml", recipe_yaml(recipe, changes))
        return {"base": self.base, "changes": changes, "recipe": to_dict(recipe)}

    # 5 ------------------------------------------------------------------------------------------
    def training_draw(self, recipe: Recipe) -> list[dict]:
        """The challenger's training records: the recipe's share from this generation and the rest from
        older ones, each world weighted by the mixture, quarantined records out, hard ones repeated."""
        rng = random.Random(_seed(self.cfg.seed, self.gen, "draw"))
        reworked = sorted(self.ws.rework.glob("gen-*"))
        quarantined = _ids_in(d / "quarantine.jsonl" for d in reworked)
        fixes = {r["rework"]["original_id"]: r for d in reworked for r in _records(d / "fixed.jsonl")}
        hard = _ids_in(d / "hard.jsonl" for d in reworked)
        name = f"gen-{self.gen:04d}.jsonl"
        pools = {"new": [], "old": []}
        for p in _new_files(self.ws):
            for r in _records(p):
                if r["id"] in quarantined or recipe.mixture.get(r["world"], 0) <= 0:
                    continue
                pools["new" if p.name == name else "old"].append(fixes.get(r["id"], r))
        want_new = round(recipe.train_records * (recipe.new_fraction if pools["old"] else 1.0))
        draw = _weighted(pools["new"], want_new, recipe.mixture, rng)
        draw += _weighted(pools["old"], recipe.train_records - len(draw), recipe.mixture, rng)
        draw += [r for r in draw if r["id"] in hard] * (recipe.hard_weight - 1)
        rng.shuffle(draw)
        return draw

    def train(self) -> dict:
        from touchstone.train.finetune import FinetuneConfig, finetune
        from touchstone.recipe import load_recipe

        out = self.ws.model(self.gen)
        recipe = load_recipe(self.ws.recipes / f"{self.challenger}.yaml")
        if not (out / MANIFEST).exists():
            draw = self.training_draw(recipe)
            write_jsonl_atomic(self.dir / "train.jsonl", draw)
            fcfg = FinetuneConfig(epochs=recipe.epochs, lr=recipe.lr, batch_size=recipe.batch_size,
                                  objective=recipe.objective, lm_weight=recipe.lm_weight, text_data=str(self.ws.orig),
                                  seed=_seed(self.cfg.seed, self.gen, "train"), minutes=self.cfg.train_minutes)
            finetune(self.base_dir, [str(self.dir / "train.jsonl")], out, fcfg,
                     loop={"generation": self.gen, "champion": self.champion, "base": self.base, "recipe": to_dict(recipe)})
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return {"base": self.base, **{k: v for k, v in manifest.items() if k != "files"}}

    # 6 ------------------------------------------------------------------------------------------
    def gate(self) -> dict:
        from touchstone.gate import decide, mcnemar, regressed_suites

        records = _records(self.dir / "gate.jsonl")
        champ = judge_correct(self.champion_dir, records)
        chall = judge_correct(self.ws.model(self.gen), records)
        test = mcnemar(champ, chall)
        per_world = {}
        for w in self.cfg.worlds:
            idx = [i for i, r in enumerate(records) if r["world"] == w]
            if idx:
                per_world[w] = {"n": len(idx), "champion": sum(champ[i] for i in idx) / len(idx),
                                "challenger": sum(chall[i] for i in idx) / len(idx)}
        s_champ = suite_scores(self.champion_dir, self.worlds)
        s_chall = suite_scores(self.ws.model(self.gen), self.worlds)
        correct = {w: [bool(c) for c in s["correct"]] for w, s in s_champ.items()}
        correct_chall = {w: [bool(c) for c in s["correct"]] for w, s in s_chall.items()}
        promote, reason = decide(test, correct, correct_chall, self.cfg.alpha, self.cfg.tolerance)
        # A rejected challenger that is no worse than the champion stays the next challenger's base (see
        # training_base); one that lost significantly, on the gate or any suite, is dropped.
        worse = (mcnemar(chall, champ)["p_value"] < self.cfg.alpha
                 or bool(regressed_suites(correct, correct_chall, self.cfg.alpha, self.cfg.tolerance)))
        stats = {"gate": test, "gate_per_world": per_world, "base": self.base, "continue": not promote and not worse,
                 "suites_champion": {w: s["accuracy"] for w, s in s_champ.items()},
                 "suites_challenger": {w: s["accuracy"] for w, s in s_chall.items()},
                 "alpha": self.cfg.alpha, "tolerance": self.cfg.tolerance}
        write_json_atomic(self.dir / "gate.json", {"promote": promote, "reason": reason, **stats})
        if promote:
            self.ws.set_champion(self.challenger)
        with self.ledger.transaction():
            self.ledger.set_metrics(self.gen, self.champion, {"gate": {"accuracy": test["champion_accuracy"], "n": test["n"]}})
            self.ledger.set_metrics(self.gen, self.challenger, {"gate": {"accuracy": test["challenger_accuracy"], "n": test["n"]},
                                                                **{f"suite:{w}": s for w, s in s_chall.items()}})
            self.ledger.set_metrics(self.gen, self.champion, {f"suite:{w}": s for w, s in s_champ.items()})
            self.ledger.set_counts(self.gen, data_counts(self.ws))
            self.ledger.decide(self.gen, self.challenger, "promoted" if promote else "rejected", reason,
                               test["p_value"], stats)
        return {"promote": promote, "reason": reason, "p_value": test["p_value"]}


def _group(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["world"], []).append(r)
    return out


def _weighted(pool: list[dict], k: int, mixture: dict, rng: random.Random) -> list[dict]:
    """k records without replacement, each world's share proportional to its mixture weight."""
    if k <= 0 or not pool:
        return []
    by_world = _group(pool)
    total = sum(mixture.get(w, 0) for w in by_world)
    out = []
    for w, recs in sorted(by_world.items()):
        share = round(k * mixture.get(w, 0) / total) if total else 0
        out += rng.sample(recs, min(share, len(recs)))
    return out


def data_counts(ws: Workspace) -> dict[str, int]:
    def count(paths):
        return sum(sum(1 for _ in read_jsonl(p)) for p in paths if p.exists())

    manifest = read_json(ws.orig / MANIFEST) if (ws.orig / MANIFEST).exists() else {}
    counts = manifest.get("counts", {})
    return {"data/orig": int(counts.get("chunks_kept", 0)),
            "data/new": count(_new_files(ws)),
            "data/rework/quarantine": count(ws.rework.glob("gen-*/quarantine.jsonl")),
            "data/rework/fixed": count(ws.rework.glob("gen-*/fixed.jsonl")),
            "data/rework/hard": count(ws.rework.glob("gen-*/hard.jsonl"))}


def run_generation(ws: Workspace, cfg: LoopConfig, ledger, gen: int, stop: Stop,
                   recipe_override: Recipe | None = None) -> bool:
    """Run (or resume) generation `gen`; False if it stopped before the end."""
    ledger.start_generation(gen, ws.champion())
    g = Generation(ws, cfg, ledger, gen, recipe_override)
    done = ledger.done_steps(gen)
    if not done:
        check_manifest(ws.orig)  # data/orig untouched since ingest (raises naming the changed file)
    for name in STEPS:
        if name in done:
            continue
        if stop.requested:
            return False
        _say(f"generation {gen}: {name}")
        t0 = time.monotonic()
        summary = getattr(g, name)()
        with ledger.transaction():
            ledger.finish_step(gen, name, time.monotonic() - t0, summary)
    if not cfg.keep_rejected:
        drop_rejected(ws, ledger, keep=training_base(ws, ledger, gen + 1))
    return True


def training_base(ws: Workspace, ledger, gen: int) -> str | None:
    """The model generation `gen`'s challenger continues from when it is not the champion: the previous
    generation's rejected challenger, if the gate found it no worse than the champion ("continue").

    Why: one generation's fine-tuning (a few hundred steps here) is rarely enough for a significant win,
    and a rejected challenger's training would otherwise be thrown away. Continuing it lets training
    accumulate across generations while the champion moves only when the gate says so."""
    prev = ledger.generation(gen - 1) if gen > 1 else None
    if not prev or prev["decision"] != "rejected" or not json.loads(prev["stats"] or "{}").get("continue"):
        return None
    name = f"gen-{gen - 1:04d}"
    return name if (ws.models / name / MANIFEST).exists() else None


# What a rejected challenger's directory keeps once its weights go: what status, history and a person
# reading the workspace use (its held-out scores, the recipe that made it, its training report).
KEPT_OF_REJECTED = ("eval.json", "recipe.yaml", "report.md")


def drop_rejected(ws: Workspace, ledger, keep: str | None) -> None:
    """Delete what finished generations no longer need (idempotent, so a crash is harmless): the weights,
    tokenizer and manifest of every rejected challenger except `keep`, and its training draw; and every
    finished generation's candidates.jsonl, which only its verify step reads (the ledger keeps the counts).

    Without this a long run grows by a model per generation (55 MB for micro)."""
    from touchstone.staging import fsync_dir

    for g in ledger.generations():
        if g["gen"] == 0 or not g["decision"]:
            continue
        (ws.gen_dir(g["gen"]) / "candidates.jsonl").unlink(missing_ok=True)
        doomed = ws.model(g["gen"])
        if g["decision"] != "rejected" or doomed.name == keep or not doomed.is_dir():
            continue
        (ws.gen_dir(g["gen"]) / "train.jsonl").unlink(missing_ok=True)
        if (doomed / MANIFEST).exists():
            (doomed / MANIFEST).unlink()  # first: from here on the directory is incomplete and never loaded
            fsync_dir(doomed)
        for p in doomed.iterdir():
            if p.name not in KEPT_OF_REJECTED:
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        if not any(doomed.iterdir()):
            doomed.rmdir()


# -------------------------------------------------------------------------------------------- run
def check_config(cfg: LoopConfig, where: str = "config") -> None:
    """What a field's type and range cannot say: known worlds, sources as paths, a usable recipe."""
    if not cfg.worlds or not all(isinstance(w, str) for w in cfg.worlds):
        raise UserError(f"{where}: key 'worlds': a list of one or more world names")
    unknown = set(cfg.worlds) - set(WORLD_NAMES)
    if unknown:
        raise UserError(f"{where}: key 'worlds': unknown world {sorted(unknown)[0]!r} (known: {', '.join(WORLD_NAMES)})")
    if not all(isinstance(s, str) and s for s in cfg.sources):
        raise UserError(f"{where}: key 'sources': a list of paths (or hf:NAME datasets)")
    from_dict(Recipe, cfg.recipe, f"{where}: recipe").check(f"{where}: recipe")


def _finished(ledger) -> list[dict]:
    return [g for g in ledger.generations() if g["gen"] > 0 and g["decision"]]


def run(workspace: str | Path, cfg: LoopConfig | None = None, generations: int | None = 5, hours: float | None = None,
        recipe_override: Recipe | None = None) -> dict:
    """Bootstrap the workspace if needed, then run generations until the workspace has `generations`
    finished ones, `hours` have passed, or a signal arrives (both None: run forever)."""
    from touchstone.config import dump_yaml, load_yaml
    from touchstone.ledger import Ledger

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per model load would drown the loop's own progress lines
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
                _say(f"{ws.config_path}: this workspace's settings are used; start a new workspace to change them")
            cfg = saved
        else:
            cfg = cfg or LoopConfig()
            write_text_atomic(ws.config_path, dump_yaml(cfg))
        ledger = Ledger(ws.ledger_path)
        try:
            if not bootstrap(ws, cfg, ledger, stop):
                return {"stopped": True}
            while not stop.requested:
                finished = _finished(ledger)
                if generations is not None and len(finished) >= generations:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    break
                open_gen = [g["gen"] for g in ledger.generations() if g["gen"] > 0 and not g["decision"]]
                gen = open_gen[0] if open_gen else (finished[-1]["gen"] + 1 if finished else 1)
                if not run_generation(ws, cfg, ledger, gen, stop, recipe_override):
                    break
                print(scoreboard(ledger, gen), flush=True)
                write_reports(ws, ledger)
            _say("stopped" if stop.requested else "done")
            print(status(ws.root, ledger=ledger))
            return {"finished": len(_finished(ledger)), "champion": ws.champion(), "stopped": stop.requested}
        finally:
            ledger.close()


# ---------------------------------------------------------------------------------- reporting
def scoreboard(ledger, gen: int) -> str:
    g = ledger.generation(gen)
    stats = json.loads(g["stats"] or "{}")
    lines = [f"generation {gen}: {g['decision'].upper()}  {g['challenger']} vs {g['champion_before']}", f"  {g['reason']}",
             f"  {'suite':<10} {'champion':>9} {'challenger':>11}"]
    for w, acc in stats.get("suites_champion", {}).items():
        lines.append(f"  {w:<10} {acc:>9.3f} {stats['suites_challenger'][w]:>11.3f}")
    return "\n".join(lines)


def _open_ledger(workspace):
    from touchstone.ledger import Ledger

    ws = Workspace(workspace)
    ws.check_root()
    if not ws.ledger_path.exists():
        raise UserError(f"{ws.root}: not a Touchstone workspace (no ledger.sqlite); start one with `touchstone run`")
    return ws, Ledger(ws.ledger_path)


def status(workspace: str | Path, ledger=None) -> str:
    ws = Workspace(workspace)
    own = ledger is None
    if own:
        ws, ledger = _open_ledger(workspace)
    try:
        gens = ledger.generations()
        finished = [g for g in gens if g["gen"] > 0 and g["decision"]]
        champion = ws.champion()
        lines = [f"workspace   {ws.root}", f"champion    {champion or '(none yet)'}",
                 f"generations {len(finished)} finished: {sum(g['decision'] == 'promoted' for g in finished)} promoted, "
                 f"{sum(g['decision'] == 'rejected' for g in finished)} rejected"]
        for g in gens:
            if not g["decision"]:
                steps = ledger.done_steps(g["gen"])
                lines.append(f"in progress generation {g['gen']}: done {', '.join(steps) or 'nothing yet'}")
        if ws.orig.exists():
            counts = data_counts(ws)
            lines.append("data        " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        if champion and (ws.models / champion / "eval.json").exists():
            suites = read_json(ws.models / champion / "eval.json").get("suites", {})
            lines.append("held-out    " + ", ".join(f"{w} {s['accuracy']:.3f}" for w, s in suites.items()))
        for g in finished[-5:]:
            lines.append(f"gen {g['gen']:>4}  {g['decision']:<9} {g['reason']}")
        return "\n".join(lines)
    finally:
        if own:
            ledger.close()


def history(workspace: str | Path) -> str:
    ws, ledger = _open_ledger(workspace)
    try:
        png = write_reports(ws, ledger)
        return (ws.reports / "history.md").read_text(encoding="utf-8") + (f"\nplot: {png}\n" if png else "")
    finally:
        ledger.close()


def write_reports(ws: Workspace, ledger) -> Path | None:
    """reports/history.md (decisions, held-out scores, step times) and reports/history.png."""
    gens = [g for g in ledger.generations() if g["decision"]]
    suites = {}
    for g in gens:
        stats = json.loads(g["stats"] or "{}")
        champ = stats.get("suites") if g["gen"] == 0 else (
            stats.get("suites_challenger") if g["decision"] == "promoted" else stats.get("suites_champion"))
        suites[g["gen"]] = champ or {}
    worlds = sorted({w for s in suites.values() for w in s})
    lines = ["# Loop history", "", "| gen | decision | challenger | trained from | champion before | p | reason |",
             "|---|---|---|---|---|---|---|"]
    for g in gens:
        p = f"{g['p_value']:.3g}" if g["p_value"] is not None else ""
        base = json.loads(g["stats"] or "{}").get("base", "")
        lines.append(f"| {g['gen']} | {g['decision']} | {g['challenger']} | {base} | {g['champion_before'] or ''} | {p} "
                     f"| {g['reason']} |")
    lines += ["", "Held-out suite accuracy of the champion after each generation:", "",
              "| gen | " + " | ".join(worlds) + " | mean |", "|---" * (len(worlds) + 2) + "|"]
    for gen, s in suites.items():
        if s:
            lines.append(f"| {gen} | " + " | ".join(f"{s.get(w, float('nan')):.3f}" for w in worlds)
                         + f" | {sum(s.values()) / len(s):.3f} |")
    lines += _against_generation_0(ws)
    times: dict[int, dict[str, float]] = {}
    for gen, step, seconds in ledger.step_times():
        times.setdefault(gen, {})[step] = seconds
    steps = [s for s in ("prepare", "tokenizer", "pretrain", "baseline") + STEPS if any(s in t for t in times.values())]
    lines += ["", "Wall time per step (minutes):", "", "| gen | " + " | ".join(steps) + " | total |",
              "|---" * (len(steps) + 2) + "|"]
    for gen, t in sorted(times.items()):
        lines.append(f"| {gen} | " + " | ".join(f"{t[s] / 60:.1f}" if s in t else "" for s in steps)
                     + f" | {sum(t.values()) / 60:.1f} |")
    ws.reports.mkdir(parents=True, exist_ok=True)
    write_text_atomic(ws.reports / "history.md", "\n".join(lines) + "\n")
    if not suites or not worlds:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = sorted(suites)
    for w in worlds:
        ax.plot(xs, [suites[x].get(w, float("nan")) for x in xs], marker="o", label=w)
    ax.set_xlabel("generation")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.set_ylabel("held-out accuracy (champion)")
    ax.set_ylim(0, 1)
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.legend(fontsize=8, ncol=3)
    ax.set_title("Held-out suites per generation")
    fig.tight_layout()
    png = ws.reports / "history.png"
    tmp = png.with_name(".history.png.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, png)
    return png


def _against_generation_0(ws: Workspace) -> list[str]:
    """Lines comparing the champion with generation 0 on the same held-out records (paired 95% CI)."""
    from touchstone.gate import paired_difference

    champion = ws.champion()
    first, last = ws.model(0) / "eval.json", ws.models / str(champion) / "eval.json"
    if not champion or champion == "gen-0000" or not first.exists() or not last.exists():
        return []
    before = read_json(first).get("suites", {})
    after = read_json(last).get("suites", {})
    lines = ["", f"Champion {champion} against generation 0 on the held-out suites (paired, 95% CI):", "",
             "| suite | n | gen 0 | champion | difference | 95% CI |", "|---|---|---|---|---|---|"]
    pooled_before, pooled_after = [], []
    for w in sorted(set(before) & set(after)):
        if before[w]["version"] != after[w]["version"] or before[w]["n"] != after[w]["n"]:
            continue
        b, a = [bool(x) for x in before[w]["correct"]], [bool(x) for x in after[w]["correct"]]
        pooled_before += b
        pooled_after += a
        d = paired_difference(b, a)
        lines.append(f"| {w} | {d['n']} | {d['before']:.3f} | {d['after']:.3f} | {d['difference']:+.3f} | "
                     f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |")
    if pooled_before:
        d = paired_difference(pooled_before, pooled_after)
        lines.append(f"| all | {d['n']} | {d['before']:.3f} | {d['after']:.3f} | {d['difference']:+.3f} | "
                     f"[{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |")
    return lines


# -------------------------------------------------------------------------------------- checking
def check_invariants(workspace: str | Path) -> list[str]:
    """What is wrong with a workspace at rest (empty when consistent): the champion is a complete model,
    data/orig matches its manifest, data/new holds no duplicate and no unverified record, and every
    finished verify step's records are all there."""
    from touchstone.ledger import Ledger

    ws, problems = Workspace(workspace), []
    champion = ws.champion()
    if champion is not None:
        try:
            check_manifest(ws.models / champion)
        except UserError as e:
            problems.append(f"champion: {e}")
    if (ws.orig / MANIFEST).exists():
        try:
            check_manifest(ws.orig)
        except UserError as e:
            problems.append(f"data/orig: {e}")
    ids = []
    for p in _new_files(ws):
        for r in _records(p):
            ids.append(r["id"])
            if not (r.get("verdict") or {}).get("ok"):
                problems.append(f"{p}: record {r['id'][:12]} has no passing verdict")
    if len(ids) != len(set(ids)):
        problems.append(f"data/new: {len(ids) - len(set(ids))} duplicate record(s)")
    if ws.ledger_path.exists():
        ledger = Ledger(ws.ledger_path)
        try:
            for g in ledger.generations():
                if "verify" in ledger.done_steps(g["gen"]):
                    path = ws.new / f"gen-{g['gen']:04d}.jsonl"
                    want = {r[0] for r in ledger.db.execute("SELECT id FROM records WHERE gen = ?", (g["gen"],))}
                    if want != {r["id"] for r in _records(path)}:
                        problems.append(f"{path}: differs from the ledger's verified records of generation {g['gen']}")
                if g["decision"] == "promoted" and g["gen"] > 0 and not (ws.model(g["gen"]) / MANIFEST).exists():
                    problems.append(f"generation {g['gen']}: promoted model is missing")
        finally:
            ledger.close()
    return problems
