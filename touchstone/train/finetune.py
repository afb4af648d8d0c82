"""Fine-tuning: teach a model to judge pair and claim records while keeping its language-model skill.

    touchstone finetune models/gen-0000 --data numbers.jsonl language.jsonl --out models/gen-0001 \\
        --text-data data/orig

Objectives (`objective`), all on the judge's own question format (touchstone.prompts):
- "answer":   cross-entropy on the answer token, over the two answer tokens the judge compares: every
              pair is asked in both orders (so the model cannot learn a position), every claim once.
              This is exactly what the judge reads. The default.
- "pairwise": Bradley-Terry on sequence log-likelihood: -log sigmoid(log p(good | prompt) - log p(bad |
              prompt)), each version scored as the evaluation scores a sentence (" " + text after the
              context). It teaches the model to prefer the right version as text, which is what
              minimal-pair evaluation (BLiMP) reads; claims have no pair, so they always use "answer".
- "mix":      the sum of both.
"answer" stays the default because it is what the judge reads, for every world; for the language
model's own preference between sentences (minimal-pair evaluation), "pairwise" on language records
is the one that helps; run after "answer" it kept the judge's gains (docs/training.md has the runs).
With `text_data` (a prepared data directory), `lm_weight` x the language-model loss on its training
tokens is added at every step, and perplexity on its validation tokens is reported before and after;
`derivation_weight` x the loss of each record's working after its answer (`touchstone.train.objectives`).

Data parallel: under `torchrun` (WORLD_SIZE > 1) every process joins a process group, gloo on CPUs and
nccl on GPUs (`touchstone.distributed`). A step draws one global batch of `batch_size * world_size`
records (and of language-model windows) and rank r trains on the r-th share; each rank's loss is its
share's part of the global batch's mean and the ranks' gradients are summed in one all-reduce, so a step
equals, up to float rounding, one process with `batch_size * world_size`, and the epochs take
proportionally fewer steps. Rank 0 alone measures the model before and after, calls `callback`, prints
and saves; every rank returns its report.

Guaranteed: the output is a complete model directory (weights, tokenizer, recipe.yaml, report.md,
MANIFEST.json last) that appears atomically; a bad record is a one-line UserError naming file:line;
runs are reproducible for a given seed on one machine. bf16 autocast only where the CPU runs bf16
natively (or on a GPU; elsewhere it is emulated, slower than fp32). Not guaranteed: identical weights
across torch versions or thread counts.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from touchstone.config import Config, field, to_dict
from touchstone.distributed import barrier, broadcast, broadcast_object, launched, process_group, sum_gradients
from touchstone.errors import UserError
from touchstone.evaluate import weights_sha256
from touchstone.files import check_output, read_jsonl, sha256_file
from touchstone.generate import load_model
from touchstone.judge import Judge, ensure_special_tokens
from touchstone.model import context_length
from touchstone.records import is_pair, jsonl_files, judge_right, parse_record
from touchstone.train.common import (
    RecordOrder,
    Sampler,
    Windows,
    budget_spent,
    clock,
    default_bf16,
    default_device,
    lm_loss,
    lr_at,
    make_optimizer,
    mean_lm_loss,
    save_model_dir,
    set_lr,
    text_windows,
    trainer,
)
from touchstone.train.objectives import OBJECTIVES, DerivationTokens, judge_loss_parts

DEFAULT_EPOCHS = 2.0
LM_SEQ_LEN = 256  # tokens per window of the language-model loss (or the model's context, if shorter)
HELDOUT_WINDOWS = 32  # validation windows of text_data whose perplexity is reported before and after


@dataclass
class FinetuneConfig(Config):
    epochs: float | None = field(
        None,
        help="passes over the records, fractions allowed (default: 2, or as many as fit when minutes is given)",
        above=0,
    )
    # 1e-3 and 32: every curve in docs/learning-curves.md that left chance was trained so; at 1e-4 nano
    # moved nothing in 375 steps. (Before derivations, 1e-3 collapsed answer-only training to the label prior.)
    lr: float = field(1e-3, help="peak AdamW learning rate (warmup, then cosine decay to a tenth)", above=0)
    batch_size: int = field(32, help="records per step", min=1)
    objective: str = field("answer", help="answer | pairwise | mix (see the module docstring)", choices=OBJECTIVES)
    lm_weight: float = field(0.5, help="weight of the language-model loss on text_data (0: off)", min=0)
    text_data: str | None = field(None, help="prepared data directory for the language-model loss and perplexity")
    # 0.25 (docs/learning-curves.md): on the six-world mixture from nano, 3.0 and 3.1 points above 1.0 on
    # two seeds; on number comparisons alone from micro, level with 1.0 (93.4% of the comparison records
    # both), which was 71-75% of comparison pairs with no derivation at all.
    derivation_weight: float = field(
        0.25,
        help="weight of the next-token loss on the working a record's world writes with its answer "
        "(after it, or before it with working_first; touchstone.train.objectives; 0: off)",
        min=0,
    )
    working_first: bool = field(
        False,
        help="train the working before the answer, so the judge writes its own working before every "
        "verdict (touchstone.train.objectives; needs derivation_weight above 0)",
    )
    seed: int = field(0, help="seed for data order")
    bf16: bool | None = field(None, help="bf16 autocast (default: on a GPU or a CPU with native bf16)")
    eval_records: int = field(
        256, help="records (from the training data) whose judge accuracy is reported before/after", min=0
    )
    minutes: float | None = field(
        None,
        help="train until this many minutes have passed, the schedule following the "
        "clock (with epochs as well: whichever ends first)",
        above=0,
    )


def read_records(files: list[str]) -> list[dict]:
    """Pair and claim records from JSONL files or folders; anything else is a UserError naming the line."""
    out = []
    for f in [p for name in files for p in jsonl_files(name)]:
        for lineno, obj in read_jsonl(f):
            out.append(parse_record(obj, f"{f}:{lineno}"))
    if not out:
        raise UserError("finetune: no records in the data files")
    return out


def heldout_loss(model, windows: Windows | None) -> float | None:
    """Mean next-token loss over the first `HELDOUT_WINDOWS` validation windows (None without any)."""
    if windows is None:
        return None
    return mean_lm_loss(model, windows, list(range(min(HELDOUT_WINDOWS, windows.n))), batch_size=8)


def judge_accuracy(model, tokenizer, records: list[dict]) -> float | None:
    """The judge's accuracy on `records`; None without any (`eval_records: 0`)."""
    if not records:
        return None
    verdicts = Judge(model, tokenizer).records(records)
    return sum(judge_right(r, v) for r, v in zip(records, verdicts)) / len(records)


def measured(model, tokenizer, probe: list[dict], val_lm: Windows | None) -> dict:
    """What the report compares before and after training: judge accuracy on `probe`, held-out LM loss."""
    return {"judge_accuracy": judge_accuracy(model, tokenizer, probe), "heldout_loss": heldout_loss(model, val_lm)}


def check_config(cfg: FinetuneConfig) -> FinetuneConfig:
    if cfg.objective not in OBJECTIVES:
        raise UserError(f"objective '{cfg.objective}': unknown (choose from {', '.join(OBJECTIVES)})")
    positive = (cfg.epochs, cfg.minutes, cfg.lr, cfg.batch_size)
    if any(v is not None and v <= 0 for v in positive) or cfg.lm_weight < 0 or cfg.derivation_weight < 0:
        raise UserError(
            "finetune: epochs, batch_size, lr and minutes must be positive, lm_weight and derivation_weight at least 0"
        )
    if cfg.working_first and cfg.derivation_weight <= 0:
        raise UserError("finetune: working_first needs derivation_weight above 0 (the working is what it trains)")
    return cfg


def finetune(
    model_dir: str | Path,
    data_files: list[str],
    out: str | Path,
    cfg: FinetuneConfig | None = None,
    loop: dict | None = None,
    overwrite: bool = False,
    callback=None,
) -> dict:
    """Fine-tune the model in `model_dir` on the pair/claim records of `data_files`; write a model dir to `out`.
    `loop`: the self-improvement loop's generation, champion and recipe, kept in recipe.yaml.
    `callback(steps_done, model, tokenizer)`: called before the first step and after every step
    (`touchstone.train.study` measures learning curves with it); the time it takes is not counted against `minutes`.

    Under a distributed launcher (WORLD_SIZE > 1) every process calls this and gets rank 0's report; see
    the module docstring."""
    if not launched():
        return train_and_save(model_dir, data_files, out, cfg, loop, overwrite, callback, 0, 1)
    with process_group(default_device() == "cuda", "finetune") as (rank, world):
        report = train_and_save(model_dir, data_files, out, cfg, loop, overwrite, callback, rank, world)
        barrier()  # the other ranks return only once rank 0 has saved the model
        return broadcast_object(report)


def train_and_save(
    model_dir,
    data_files: list[str],
    out,
    cfg: FinetuneConfig | None,
    loop: dict | None,
    overwrite: bool,
    callback,
    rank: int,
    world: int,
) -> dict | None:
    """This process's part of a fine-tuning: every rank trains on its share, rank 0 alone measures the model
    before and after, calls `callback` and saves; the report (None on the other ranks)."""
    import torch

    cfg = check_config(cfg or FinetuneConfig())
    check_output(out, overwrite=overwrite, directory=True, kind="model")
    records = read_records(data_files)
    model, tokenizer = load_model(model_dir)
    ensure_special_tokens(model, tokenizer)
    model.config.touchstone_working_first = cfg.working_first  # saved in config.json; the judge reads it
    # Under torchrun, `process_group` has already made this process's own GPU the current one.
    device = torch.device("cuda", torch.cuda.current_device()) if default_device() == "cuda" else torch.device("cpu")
    model.to(device)
    bf16 = default_bf16(device.type) if cfg.bf16 is None else cfg.bf16
    train_lm, val_lm = text_windows(cfg.text_data, min(LM_SEQ_LEN, context_length(model)))
    rng = random.Random(cfg.seed)
    probe = rng.sample(records, min(cfg.eval_records, len(records)))  # on every rank: the draws stay in step
    model.eval()
    measure = rank == 0
    before = measured(model, tokenizer, probe, val_lm) if measure else None

    torch.manual_seed(cfg.seed)
    run = FinetuneRun(cfg, model, tokenizer, records, rng, train_lm, bf16, callback if measure else None, rank, world)
    run.train()
    if not measure:
        return None
    model.eval()
    after = measured(model, tokenizer, probe, val_lm)
    stats = {
        "records": len(records),
        "pairs": sum(map(is_pair, records)),
        "steps": len(run.losses),
        "steps_planned": run.steps,
        "objective": cfg.objective,
        "minutes": round(run.seconds() / 60, 2),
        "loss_first": run.losses[0],
        "loss_last": sum(run.losses[-10:]) / len(run.losses[-10:]),
        "judge_accuracy_before": before["judge_accuracy"],
        "judge_accuracy_after": after["judge_accuracy"],
        "perplexity_before": math.exp(before["heldout_loss"]) if before["heldout_loss"] is not None else None,
        "perplexity_after": math.exp(after["heldout_loss"]) if after["heldout_loss"] is not None else None,
        **({"world_size": world, "records_per_step": cfg.batch_size * world} if world > 1 else {}),
    }
    save_model_dir(
        Path(out),
        model.cpu(),
        tokenizer,
        recipe(cfg, model_dir, data_files, loop),
        report(cfg, model_dir, stats),
        {"stage": "finetune", **stats},
        overwrite,
    )
    return {"out": str(out), **stats}


class FinetuneRun:
    """The steps of one fine-tuning: optimizer, record order, language-model windows, budget and losses.
    Its clock leaves out the time spent in the callback, so a study's evaluations cost no training time.
    With several ranks, a step draws one global batch of `batch_size * world` records and rank r trains on
    the r-th share; the ranks' gradients are summed (`sum_gradients`), so every rank takes the same step."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        model,
        tokenizer,
        records: list[dict],
        rng: random.Random,
        train_lm: Windows | None,
        bf16: bool,
        callback=None,
        rank: int = 0,
        world: int = 1,
    ):
        self.cfg, self.model, self.tokenizer, self.bf16, self.callback = cfg, model, tokenizer, bf16, callback
        self.rank, self.world = rank, world
        self.device = next(model.parameters()).device
        epochs = cfg.epochs if cfg.epochs is not None or cfg.minutes is not None else DEFAULT_EPOCHS
        per_step = cfg.batch_size * world
        self.steps = max(1, math.ceil(epochs * len(records) / per_step)) if epochs is not None else None
        self.opt = make_optimizer(model, cfg.lr, weight_decay=0.0)  # short runs: decay would only pull toward zero
        self.train_lm = train_lm
        self.lm_sampler = Sampler(train_lm.n, cfg.seed) if train_lm is not None and train_lm.n else None
        self.order = RecordOrder(records, rng)
        self.derivation_tokens = None  # the records' derivations as tokens, computed once here
        if cfg.derivation_weight > 0:
            self.derivation_tokens = DerivationTokens(tokenizer, records, context_length(model))
        self.losses: list[float] = []
        self.start = clock()
        self.deadline = cfg.minutes * 60 if cfg.minutes else None
        # Warmup: 5% of the steps; under a time budget, 5% of the time (at most 200 steps, `lr_at`).
        self.warmup = max(1, self.steps // 20) if self.steps is not None else None
        self.paused = 0.0  # seconds spent in the callback, off the clock of the budget
        self.step = 0

    def seconds(self) -> float:
        """Training time so far: the clock less the callback's time."""
        return clock() - self.start - self.paused

    def call_back(self) -> None:
        if self.callback is not None:
            t0 = clock()
            self.callback(self.step, self.model, self.tokenizer)
            self.model.train()
            self.paused += clock() - t0

    def train(self) -> None:
        self.model.train()
        self.call_back()
        while self.steps is None or self.step < self.steps:
            # Under a time budget the run trains until the deadline and the schedule follows the fraction of
            # the time spent (or of the steps, if further along), as pretraining's does.
            spent = self.spent()
            if self.step > 0 and spent is not None and spent >= 1:
                if self.rank == 0:
                    print(
                        f"finetune: time budget of {self.cfg.minutes:g} min reached at step {self.step}"
                        f"{f'/{self.steps}' if self.steps else ''}",
                        file=sys.stderr,
                    )
                break
            self.train_step(spent)
            self.step += 1
            self.call_back()

    def spent(self) -> float | None:
        frac = budget_spent(self.seconds(), self.deadline, self.step, self.steps)
        if frac is None or self.world == 1:
            return frac
        # Rank 0's clock for all: one schedule, and every rank stops at the same step.
        return broadcast(int(frac * 1e6)) / 1e6

    def train_step(self, spent: float | None) -> None:
        import torch

        cfg = self.cfg
        whole = self.order.take(cfg.batch_size * self.world)
        batch = whole[self.rank * cfg.batch_size : (self.rank + 1) * cfg.batch_size]
        set_lr(self.opt, lr_at(self.step, cfg.lr, self.warmup, self.steps, spent))
        self.opt.zero_grad(set_to_none=True)
        parts = judge_loss_parts(
            self.model,
            self.tokenizer,
            batch,
            cfg.objective,
            self.bf16,
            whole=whole if self.world > 1 else None,
            derivation_weight=cfg.derivation_weight,
            derivation_tokens_of=self.derivation_tokens,
            working_first=cfg.working_first,
        )
        loss = 0.0
        for part in parts:  # each term's backward before the next forward: one term's activations at a time
            part.backward()
            loss += float(part.detach())
        if self.lm_sampler is not None and cfg.lm_weight > 0:
            part = cfg.lm_weight * self.lm_share()
            if isinstance(part, torch.Tensor):
                part.backward()
                loss += float(part.detach())
        total = sum_gradients(self.model, torch.tensor(loss)) if self.world > 1 else loss
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.losses.append(total)
        if self.rank == 0 and (self.step % 50 == 0 or self.step == (self.steps or 0) - 1):
            print(f"finetune step {self.step + 1}/{self.steps or '-'} loss {self.losses[-1]:.4f}", file=sys.stderr)

    def lm_share(self):
        """The language-model loss of this rank's share of the step's windows, as its part of their mean."""
        import torch

        windows = self.lm_sampler.take(max(1, self.cfg.batch_size * self.world // 4))
        share = windows[self.rank * len(windows) // self.world : (self.rank + 1) * len(windows) // self.world]
        if not share:
            return 0.0
        x, y = (t.to(self.device) for t in self.train_lm.batch(share))
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            part = lm_loss(self.model, x, y)
        return part if self.world == 1 else part * len(share) / len(windows)


def recipe(cfg: FinetuneConfig, base: str | Path, data_files: list[str], loop: dict | None) -> dict:
    """recipe.yaml of a fine-tuned model: its config, the base model and the data, by hash."""
    out = {
        "stage": "finetune",
        "config": to_dict(cfg),
        "base": {"path": str(Path(base).resolve()), "weights_sha256": weights_sha256(base)},
        "data": [
            {"path": str(p.resolve()), "sha256": sha256_file(p)} for name in data_files for p in jsonl_files(name)
        ],
        "trainer": trainer(),
    }
    if loop is not None:
        out["loop"] = loop
    return out


def report(cfg: FinetuneConfig, base: str | Path, stats: dict) -> str:
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in stats.items())
    return f"# Fine-tuning report\n\nFrom `{base}`, objective `{cfg.objective}`.\n\n| | |\n|---|---|\n{rows}\n"
