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
tokens is added at every step, and perplexity on its validation tokens is reported before and after.

Guaranteed: the output is a complete model directory (weights, tokenizer, recipe.yaml, report.md,
MANIFEST.json last) that appears atomically; a bad record is a one-line UserError naming file:line;
runs are reproducible for a given seed on one machine. bf16 autocast is used only where the CPU runs
bf16 natively (or on a GPU); elsewhere it is emulated and slower than fp32.
Not guaranteed: identical weights across torch versions or thread counts.
"""

from __future__ import annotations

import math
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from touchstone import prompts
from touchstone.config import Config, field, to_dict
from touchstone.errors import UserError
from touchstone.evaluate import batch_logprobs, weights_sha256
from touchstone.files import check_output, read_jsonl, sha256_file
from touchstone.generate import load_model
from touchstone.judge import Judge, encode, ensure_special_tokens, last_logits
from touchstone.model import context_length
from touchstone.records import jsonl_files, parse_label
from touchstone.train.common import (
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
    trainer,
)

OBJECTIVES = ("answer", "pairwise", "mix")
DEFAULT_EPOCHS = 2.0
LM_SEQ_LEN = 256  # tokens per window of the language-model loss (or the model's context, if shorter)
HELDOUT_WINDOWS = 32  # validation windows of text_data whose perplexity is reported before and after


@dataclass
class FinetuneConfig(Config):
    epochs: float | None = field(None, help="passes over the records, fractions allowed (default: 2, or as many as "
                                            "fit when minutes is given)", above=0)
    # 1e-4 as the loop's recipe (touchstone.recipe.Recipe.lr says what it was measured against).
    lr: float = field(1e-4, help="peak AdamW learning rate (warmup, then cosine decay to a tenth)", above=0)
    batch_size: int = field(16, help="records per step", min=1)
    objective: str = field("answer", help="answer | pairwise | mix (see the module docstring)", choices=OBJECTIVES)
    lm_weight: float = field(0.5, help="weight of the language-model loss on text_data (0: off)", min=0)
    text_data: str | None = field(None, help="prepared data directory for the language-model loss and perplexity")
    seed: int = field(0, help="seed for data order")
    bf16: bool | None = field(None, help="bf16 autocast (default: on a GPU or a CPU with native bf16)")
    eval_records: int = field(256, help="records (from the training data) whose judge accuracy is reported before/after", min=0)
    minutes: float | None = field(None, help="train until this many minutes have passed, the schedule following the "
                                             "clock (with epochs as well: whichever ends first)", above=0)


def read_records(files: list[str]) -> list[dict]:
    """Pair and claim records from JSONL files or folders; anything else is a UserError naming the line."""
    out = []
    for f in [p for name in files for p in jsonl_files(name)]:
        for lineno, obj in read_jsonl(f):
            where = f"{f}:{lineno}"
            if "a" in obj or "b" in obj:
                for key in ("a", "b", "label"):
                    if not isinstance(obj.get(key), str):
                        raise UserError(f"{where}: missing key '{key}'")
                if obj["label"] not in ("a", "b"):
                    raise UserError(f"{where}: key 'label' must be \"a\" or \"b\", got {obj['label']!r}")
                out.append({**obj, "prompt": obj.get("prompt") or ""})
            elif "statement" in obj:
                if "label" not in obj:
                    raise UserError(f"{where}: missing key 'label'")
                out.append({**obj, "label": parse_label(obj["label"], where)})
            else:
                raise UserError(f"{where}: not a pair (a, b, label) or claim (statement, label) record")
    if not out:
        raise UserError("finetune: no records in the data files")
    return out


def answer_examples(rec: dict) -> list[tuple[str, str]]:
    """(question, answer token) for the answer objective: a pair in both orders, a claim once."""
    if "a" in rec:
        first, second = (prompts.ANSWER_A, prompts.ANSWER_B) if rec["label"] == "a" else (prompts.ANSWER_B, prompts.ANSWER_A)
        return [(prompts.pair_prompt(rec["prompt"], rec["a"], rec["b"]), first),
                (prompts.pair_prompt(rec["prompt"], rec["b"], rec["a"]), second)]
    return [(prompts.claim_prompt(rec["statement"]), prompts.ANSWER_TRUE if rec["label"] else prompts.ANSWER_FALSE)]


def version_requests(tokenizer, rec: dict) -> list[tuple[list[int], list[int]]]:
    """(context, continuation) for the good then the bad version of a pair, scored as evaluation scores text."""
    eos = tokenizer.convert_tokens_to_ids(prompts.EOS)
    ctx = [eos] + (tokenizer(rec["prompt"], add_special_tokens=False)["input_ids"] if rec["prompt"] else [])
    good, bad = (rec["a"], rec["b"]) if rec["label"] == "a" else (rec["b"], rec["a"])
    return [(ctx, tokenizer(" " + v, add_special_tokens=False)["input_ids"]) for v in (good, bad)]


def length_groups(lengths: list[int], slack: float = 0.7) -> list[list[int]]:
    """Indices of `lengths`, longest first, cut into groups whose shortest is at least `slack` x their
    longest. A batch mixes worlds whose questions run from 20 to 350 tokens; padded to one width it
    was 2.7x its real tokens (measured on a loop's records). Forward passes over such groups give the
    same loss and gradient as one padded batch, at a fraction of the work."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    groups: list[list[int]] = []
    for i in order:
        if groups and lengths[i] >= slack * lengths[groups[-1][0]]:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


def judge_loss(model, tokenizer, batch: list[dict], objective: str, bf16: bool):
    """The fine-tuning loss of one batch of records under `objective`."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    loss = torch.zeros((), device=device)
    answers = [ex for r in batch if objective != "pairwise" or "a" not in r for ex in answer_examples(r)]
    if answers:
        seqs = [encode(tokenizer, q)[-context_length(model):] for q, _ in answers]
        pair_ids = tokenizer.convert_tokens_to_ids([prompts.ANSWER_A, prompts.ANSWER_B])
        claim_ids = tokenizer.convert_tokens_to_ids([prompts.ANSWER_TRUE, prompts.ANSWER_FALSE])
        choices = torch.tensor([pair_ids if a in (prompts.ANSWER_A, prompts.ANSWER_B) else claim_ids
                                for _, a in answers], device=device)
        target = torch.tensor([int(a in (prompts.ANSWER_B, prompts.ANSWER_FALSE)) for _, a in answers], device=device)
        total = torch.zeros((), device=device)
        for group in length_groups([len(q) for q in seqs]):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = last_logits(model, [seqs[i] for i in group], tokenizer.pad_token_id)
            # Cross-entropy over the two answer tokens the judge reads (its renormalized log-odds), not
            # over the whole vocabulary: a full-vocabulary loss first spends its steps lifting tokens
            # that pretraining never saw, and the judge ignores every other token anyway.
            idx = torch.tensor(group, device=device)
            total = total + F.cross_entropy(logits.gather(1, choices[idx]), target[idx], reduction="sum")
        loss = loss + total / len(answers)
    pairs = [r for r in batch if "a" in r]
    if objective != "answer" and pairs:
        reqs = [req for r in pairs for req in version_requests(tokenizer, r)]
        groups = length_groups([len(c) + len(x) for c, x in reqs])
        scores = torch.cat([batch_logprobs(model, [reqs[i] for i in g], bf16) for g in groups])
        where = torch.tensor([i for g in groups for i in g], device=device)
        s = torch.zeros_like(scores).scatter(0, where, scores)  # back in request order
        loss = loss - F.logsigmoid(s[0::2] - s[1::2]).mean()
    return loss


def heldout_loss(model, windows: Windows | None) -> float | None:
    """Mean next-token loss over the first `HELDOUT_WINDOWS` validation windows (None without any)."""
    if windows is None:
        return None
    return mean_lm_loss(model, windows, list(range(min(HELDOUT_WINDOWS, windows.n))), batch_size=8)


def judge_accuracy(model, tokenizer, records: list[dict]) -> float:
    verdicts = Judge(model, tokenizer).records(records)
    return sum(str(v["choice"]).lower() == str(r["label"]).lower() for r, v in zip(records, verdicts)) / len(records)


def check_config(cfg: FinetuneConfig) -> FinetuneConfig:
    if cfg.objective not in OBJECTIVES:
        raise UserError(f"objective '{cfg.objective}': unknown (choose from {', '.join(OBJECTIVES)})")
    if ((cfg.epochs is not None and cfg.epochs <= 0) or cfg.batch_size < 1 or cfg.lr <= 0 or cfg.lm_weight < 0
            or (cfg.minutes is not None and cfg.minutes <= 0)):
        raise UserError("finetune: epochs, batch_size, lr and minutes must be positive, lm_weight at least 0")
    return cfg


def text_windows(text_data: str | None, seq_len: int) -> tuple[Windows | None, Windows | None]:
    """(train, validation) windows of the prepared data directory `text_data`; (None, None) without it."""
    if not text_data:
        return None, None
    tokens = Path(text_data) / "tokens"
    if not (tokens / "train.bin").is_file():
        raise UserError(f"{text_data}: not a prepared data directory (no tokens/train.bin)")
    val = Windows(tokens / "val.bin", seq_len) if (tokens / "val.bin").is_file() else None
    return Windows(tokens / "train.bin", seq_len), val


def finetune(model_dir: str | Path, data_files: list[str], out: str | Path, cfg: FinetuneConfig | None = None,
             loop: dict | None = None, overwrite: bool = False, callback=None) -> dict:
    """Fine-tune the model in `model_dir` on the pair/claim records of `data_files`; write a model dir to `out`.
    `loop`: the self-improvement loop's generation, champion and recipe, kept in recipe.yaml.
    `callback(steps_done, model, tokenizer)`: called before the first step and after every step
    (`touchstone.train.study` measures learning curves with it); the time it takes is not counted against `minutes`."""
    import torch

    cfg = check_config(cfg or FinetuneConfig())
    check_output(out, overwrite=overwrite, directory=True, kind="model")
    records = read_records(data_files)
    model, tokenizer = load_model(model_dir)
    ensure_special_tokens(model, tokenizer)
    device = torch.device(default_device())
    model.to(device)
    bf16 = default_bf16(device.type) if cfg.bf16 is None else cfg.bf16
    train_lm, val_lm = text_windows(cfg.text_data, min(LM_SEQ_LEN, context_length(model)))
    rng = random.Random(cfg.seed)
    probe = rng.sample(records, min(cfg.eval_records, len(records)))
    model.eval()
    before = {"judge_accuracy": judge_accuracy(model, tokenizer, probe), "heldout_loss": heldout_loss(model, val_lm)}

    torch.manual_seed(cfg.seed)
    run = FinetuneRun(cfg, model, tokenizer, records, rng, train_lm, bf16, callback)
    run.train()
    model.eval()
    after = {"judge_accuracy": judge_accuracy(model, tokenizer, probe), "heldout_loss": heldout_loss(model, val_lm)}
    stats = {
        "records": len(records), "pairs": sum("a" in r for r in records), "steps": len(run.losses),
        "steps_planned": run.steps, "objective": cfg.objective, "minutes": round(run.seconds() / 60, 2),
        "loss_first": run.losses[0], "loss_last": sum(run.losses[-10:]) / len(run.losses[-10:]),
        "judge_accuracy_before": before["judge_accuracy"], "judge_accuracy_after": after["judge_accuracy"],
        "perplexity_before": math.exp(before["heldout_loss"]) if before["heldout_loss"] is not None else None,
        "perplexity_after": math.exp(after["heldout_loss"]) if after["heldout_loss"] is not None else None,
    }
    save_model_dir(Path(out), model.cpu(), tokenizer, recipe(cfg, model_dir, data_files, loop),
                   report(cfg, model_dir, stats), {"stage": "finetune", **stats}, overwrite)
    return {"out": str(out), **stats}


class RecordOrder:
    """The records in a fresh shuffle per pass, taken a batch at a time; a batch may span two passes."""

    def __init__(self, records: list[dict], rng: random.Random):
        self.records, self.rng, self.queue = records, rng, []

    def take(self, n: int) -> list[dict]:
        if len(self.queue) < n:
            fresh = self.records[:]
            self.rng.shuffle(fresh)
            self.queue += fresh
        batch, self.queue = self.queue[:n], self.queue[n:]
        return batch


class FinetuneRun:
    """The steps of one fine-tuning: optimizer, record order, language-model windows, budget and losses.
    Its clock leaves out the time spent in the callback, so a study's evaluations cost no training time."""

    def __init__(self, cfg: FinetuneConfig, model, tokenizer, records: list[dict], rng: random.Random,
                 train_lm: Windows | None, bf16: bool, callback=None):
        self.cfg, self.model, self.tokenizer, self.bf16, self.callback = cfg, model, tokenizer, bf16, callback
        self.device = next(model.parameters()).device
        epochs = cfg.epochs if cfg.epochs is not None or cfg.minutes is not None else DEFAULT_EPOCHS
        self.steps = max(1, math.ceil(epochs * len(records) / cfg.batch_size)) if epochs is not None else None
        self.opt = make_optimizer(model, cfg.lr, weight_decay=0.0)  # short runs: decay would only pull toward zero
        self.train_lm = train_lm
        self.lm_sampler = Sampler(train_lm.n, cfg.seed) if train_lm is not None and train_lm.n else None
        self.order = RecordOrder(records, rng)
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
            spent = budget_spent(self.seconds(), self.deadline, self.step, self.steps)
            if self.step > 0 and spent is not None and spent >= 1:
                print(f"finetune: time budget of {self.cfg.minutes:g} min reached at step {self.step}"
                      f"{f'/{self.steps}' if self.steps else ''}", file=sys.stderr)
                break
            self.train_step(spent)
            self.step += 1
            self.call_back()

    def train_step(self, spent: float | None) -> None:
        import torch

        cfg = self.cfg
        batch = self.order.take(cfg.batch_size)
        set_lr(self.opt, lr_at(self.step, cfg.lr, self.warmup, self.steps, spent))
        loss = judge_loss(self.model, self.tokenizer, batch, cfg.objective, self.bf16)
        if self.lm_sampler is not None and cfg.lm_weight > 0:
            x, y = (t.to(self.device) for t in self.train_lm.batch(self.lm_sampler.take(max(1, cfg.batch_size // 4))))
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                loss = loss + cfg.lm_weight * lm_loss(self.model, x, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.losses.append(float(loss.detach()))
        if self.step % 50 == 0 or self.step == (self.steps or 0) - 1:
            print(f"finetune step {self.step + 1}/{self.steps or '-'} loss {self.losses[-1]:.4f}", file=sys.stderr)


def recipe(cfg: FinetuneConfig, base: str | Path, data_files: list[str], loop: dict | None) -> dict:
    """recipe.yaml of a fine-tuned model: its config, the base model and the data, by hash."""
    out = {
        "stage": "finetune",
        "config": to_dict(cfg),
        "base": {"path": str(Path(base).resolve()), "weights_sha256": weights_sha256(base)},
        "data": [{"path": str(p.resolve()), "sha256": sha256_file(p)} for name in data_files for p in jsonl_files(name)],
        "trainer": trainer(),
    }
    if loop is not None:
        out["loop"] = loop
    return out


def report(cfg: FinetuneConfig, base: str | Path, stats: dict) -> str:
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in stats.items())
    return f"# Fine-tuning report\n\nFrom `{base}`, objective `{cfg.objective}`.\n\n| | |\n|---|---|\n{rows}\n"
