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
Measured on a micro model pretrained 60 minutes on the shared English corpus (BLiMP 58.41% on all 67
paradigms, 66,993 pairs):
- "answer" on 14,000 records of all six worlds (875 steps, lr 1e-4) gave BLiMP 58.82% and raised the
  held-out suites (code 46.7 -> 68.7%, facts 52.0 -> 62.3%).
- "pairwise" on language records whose substituted words were unbalanced (language world version 2)
  lowered BLiMP in every setting tried: 58.15% (lr 1e-4, 500 steps), 56.61% (lr 5e-4, 1000 steps),
  57.57% (sentences of another corpus than the one pretrained on, lr 3e-4), 56.78% (versions scored
  with no prompt, exactly as BLiMP is, lm_weight 1), although its loss fell: it learned the
  corruptions' own words ("an", "these") rather than agreement.
- "pairwise" on balanced records with the noun-number corruption (version 3, `WordBalance`), 4,132
  pairs of the default and English corpora, lr 1e-4, 517 steps: BLiMP 59.73% (determiner-noun
  agreement 77.4 -> 83.0%, anaphor agreement 79.4 -> 83.4%, irregular forms 81.3 -> 84.4%;
  subject-verb agreement unmoved at 55.4%).
- The same with the "verb" and "npi" corruptions too (version 4, 4,133 pairs, 517 steps): BLiMP
  60.99% (NPI licensing 40.5 -> 53.0%, determiner-noun agreement 84.0%).
- The same with the grammar's pairs (version 5, `touchstone.worlds.grammar`, two fifths of 4,000 pairs,
  500 steps): BLiMP 65.28% [64.91, 65.64] (65.30% with --seed 1), the best of all runs (NPI licensing 73.0%, island effects
  41.1 -> 53.1%). Five times as many pairs for one epoch did not help (62.76% on 20,000 pairs of an
  earlier grammar that scored 63.23% on 4,000).
- One model with both skills, in two runs: "answer" on the five other worlds' 10,000 records and the
  4,000 language pairs (one epoch, 875 steps, 12 minutes), then "pairwise" on the language pairs (500
  steps): BLiMP 64.47% [64.10, 64.83]; held-out suites code 65.7, facts 60.8, wing 62.3, language 56.5,
  numbers 54.7, colour 46.0% (600 records, wing 400), where the first run alone had reached 66.0, 56.8,
  56.5, 56.2, 56.5 and 49.3% (and BLiMP 58.04%). English-val perplexity 45.9 -> 51.1; with
  lm_weight 1.0 in both runs it was 51.2 all the same, and BLiMP fell to 63.18%. The other order (pairwise, then answer; on a GPU, the answer run stopped
  at 561 of 1,750 steps) gave BLiMP 61.77%; "mix" on all of it (stopped at 370 of 1,750 steps) 61.81%.
- More data for the two worlds left near chance: "answer" on 20,000 numbers and 20,000 colour records
  (lr 1e-4, stopped by a 15-minute budget at 1,910 of 2,500 steps) gave numbers 61.3% [57.4, 65.1] and
  colour 50.3%, against 56.5 and 48.3% after the 2,000-record run above (colour on its version-2
  suite). Per kind, numbers' comparisons rose to 67-68% (from 48-57) while sums stayed at 48%. At lr
  5e-4 (10 minutes, 1,197 steps) it was worse: numbers 56.5%, colour 48.3%, perplexity 54.1. Digits are
  already single tokens here, so tokenization is not what holds sums back.
- Claims as twins (each training claim written beside the opposite statement of the same item, so an
  item's own features cannot predict the label): on the code world alone (2,000 records, 2 epochs, one
  run each) held-out claims rose 46.8 -> 55.7%, but over all six worlds (500 records each, 2 epochs,
  seeds 1 and 2) the suites scored 54.3/53.9% against 55.6/54.5% with lone claims, and the claims'
  AUC stayed 0.46-0.59 either way. The worlds keep lone claims.
"answer" stays the default because it is what the judge reads, for every world; for the language
model's own preference between sentences (minimal-pair evaluation), "pairwise" on language records
is the one that helps; run after "answer" it kept the judge's gains (one run of each order).
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

OBJECTIVES = ("answer", "pairwise", "mix")
DEFAULT_EPOCHS = 2.0


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
    from touchstone.files import read_jsonl
    from touchstone.records import jsonl_files, parse_label

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

    from touchstone.likelihood import batch_logprobs
    from touchstone.judge import context_length, encode, last_logits

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


def heldout_loss(model, windows, n: int = 32, batch_size: int = 8) -> float | None:
    """Mean next-token loss over the first `n` validation windows (None without any)."""
    import torch

    from touchstone.pretrain import lm_loss

    idx = list(range(min(n, windows.n)))
    if not idx:
        return None
    total = 0.0
    with torch.inference_mode():
        for i in range(0, len(idx), batch_size):
            x, y = (t.to(next(model.parameters()).device) for t in windows.batch(idx[i:i + batch_size]))
            total += float(lm_loss(model, x, y)) * len(x)
    return total / len(idx)


def judge_accuracy(model, tokenizer, records: list[dict]) -> float:
    from touchstone.judge import Judge

    verdicts = Judge(model, tokenizer).records(records)
    return sum(str(v["choice"]).lower() == str(r["label"]).lower() for r, v in zip(records, verdicts)) / len(records)


def finetune(model_dir: str | Path, data_files: list[str], out: str | Path, cfg: FinetuneConfig | None = None,
             loop: dict | None = None, overwrite: bool = False, callback=None) -> dict:
    """Fine-tune the model in `model_dir` on the pair/claim records of `data_files`; write a model dir to `out`.
    `loop`: the self-improvement loop's generation, champion and recipe, kept in recipe.yaml.
    `callback(steps_done, model, tokenizer)`: called before the first step and after every step
    (`touchstone.study` measures learning curves with it); the time it takes is not counted against `minutes`."""
    import torch

    from touchstone import pretrain as tp
    from touchstone.files import check_output
    from touchstone.generate import load_model
    from touchstone.judge import ensure_special_tokens
    from touchstone.pretrain import Sampler, Windows, default_bf16, default_device, lm_loss, lr_at, make_optimizer

    cfg = cfg or FinetuneConfig()
    if cfg.objective not in OBJECTIVES:
        raise UserError(f"objective '{cfg.objective}': unknown (choose from {', '.join(OBJECTIVES)})")
    if (cfg.epochs is not None and cfg.epochs <= 0) or cfg.batch_size < 1 or cfg.lr <= 0 or cfg.lm_weight < 0 or (cfg.minutes is not None and cfg.minutes <= 0):
        raise UserError("finetune: epochs, batch_size, lr and minutes must be positive, lm_weight at least 0")
    check_output(out, overwrite=overwrite, directory=True, kind="model")
    records = read_records(data_files)
    model, tokenizer = load_model(model_dir)
    ensure_special_tokens(model, tokenizer)
    device = torch.device(default_device())
    model.to(device)
    bf16 = default_bf16(device.type) if cfg.bf16 is None else cfg.bf16
    seq_len = min(256, model.config.n_positions if hasattr(model.config, "n_positions") else 256)
    train_lm = val_lm = None
    if cfg.text_data:
        tokens = Path(cfg.text_data) / "tokens"
        if not (tokens / "train.bin").is_file():
            raise UserError(f"{cfg.text_data}: not a prepared data directory (no tokens/train.bin)")
        train_lm = Windows(tokens / "train.bin", seq_len)
        val_lm = Windows(tokens / "val.bin", seq_len) if (tokens / "val.bin").is_file() else None
    rng = random.Random(cfg.seed)
    probe = rng.sample(records, min(cfg.eval_records, len(records)))
    model.eval()
    before = {"judge_accuracy": judge_accuracy(model, tokenizer, probe),
              "heldout_loss": heldout_loss(model, val_lm) if val_lm else None}

    torch.manual_seed(cfg.seed)
    epochs = cfg.epochs if cfg.epochs is not None or cfg.minutes is not None else DEFAULT_EPOCHS
    steps = max(1, math.ceil(epochs * len(records) / cfg.batch_size)) if epochs is not None else None
    opt = make_optimizer(model, cfg.lr, weight_decay=0.0)  # short runs: decay would only pull toward zero
    lm_sampler = Sampler(train_lm.n, cfg.seed) if train_lm is not None and train_lm.n else None
    order: list[dict] = []
    losses, start = [], tp.clock()
    budget = cfg.minutes * 60 if cfg.minutes else None
    # Warmup: 5% of the steps; under a time budget, 5% of the time (at most 200 steps, `lr_at`).
    warmup = max(1, steps // 20) if steps is not None else None
    paused = 0.0  # seconds spent in the callback, off the clock of the budget

    def call_back():
        nonlocal paused
        if callback is not None:
            t0 = tp.clock()
            callback(step, model, tokenizer)
            model.train()
            paused += tp.clock() - t0

    step = 0
    model.train()
    call_back()
    while steps is None or step < steps:
        # Under a time budget the run trains until the deadline and the schedule follows the fraction of
        # the time spent (or of the steps, if further along), as pretraining's does.
        spent = max((tp.clock() - start - paused) / budget, step / steps if steps else 0.0) if budget else None
        if step > 0 and spent is not None and spent >= 1:
            print(f"finetune: time budget of {cfg.minutes:g} min reached at step {step}"
                  f"{f'/{steps}' if steps else ''}", file=sys.stderr)
            break
        if len(order) < cfg.batch_size:
            fresh = records[:]
            rng.shuffle(fresh)
            order += fresh
        batch, order = order[:cfg.batch_size], order[cfg.batch_size:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.lr, warmup, steps, spent)
        loss = judge_loss(model, tokenizer, batch, cfg.objective, bf16)
        if lm_sampler is not None and cfg.lm_weight > 0:
            x, y = (t.to(device) for t in train_lm.batch(lm_sampler.take(max(1, cfg.batch_size // 4))))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                loss = loss + cfg.lm_weight * lm_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == (steps or 0) - 1:
            print(f"finetune step {step + 1}/{steps or '-'} loss {losses[-1]:.4f}", file=sys.stderr)
        step += 1
        call_back()
    model.eval()
    after = {"judge_accuracy": judge_accuracy(model, tokenizer, probe),
             "heldout_loss": heldout_loss(model, val_lm) if val_lm else None}
    stats = {
        "records": len(records), "pairs": sum("a" in r for r in records), "steps": len(losses), "steps_planned": steps,
        "objective": cfg.objective, "minutes": round((tp.clock() - start - paused) / 60, 2),
        "loss_first": losses[0], "loss_last": sum(losses[-10:]) / len(losses[-10:]),
        "judge_accuracy_before": before["judge_accuracy"], "judge_accuracy_after": after["judge_accuracy"],
        "perplexity_before": math.exp(before["heldout_loss"]) if before["heldout_loss"] is not None else None,
        "perplexity_after": math.exp(after["heldout_loss"]) if after["heldout_loss"] is not None else None,
    }
    _save(out, model.cpu(), tokenizer, cfg, stats, model_dir, data_files, loop, overwrite)
    return {"out": str(out), **stats}


def _save(out, model, tokenizer, cfg: FinetuneConfig, stats: dict, base: str | Path, data_files: list[str],
          loop: dict | None = None, overwrite: bool = False) -> None:
    import yaml

    from touchstone import __version__
    from touchstone.evaluate import weights_sha256
    from touchstone.files import atomic_dir, sha256_file, write_manifest, write_text_atomic
    from touchstone.pretrain import git_commit
    from touchstone.records import jsonl_files

    recipe = {
        "stage": "finetune",
        "config": to_dict(cfg),
        "base": {"path": str(Path(base).resolve()), "weights_sha256": weights_sha256(base)},
        "data": [{"path": str(p.resolve()), "sha256": sha256_file(p)} for name in data_files for p in jsonl_files(name)],
        "trainer": {"touchstone": __version__, "git_commit": git_commit()},
    }
    if loop is not None:
        recipe["loop"] = loop
    rows = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in stats.items())
    report = f"# Fine-tuning report\n\nFrom `{base}`, objective `{cfg.objective}`.\n\n| | |\n|---|---|\n{rows}\n"
    with atomic_dir(out, overwrite=overwrite) as stage:
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        write_text_atomic(stage / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
        write_text_atomic(stage / "report.md", report)
        write_manifest(stage, {"kind": "model", "stage": "finetune", **stats})
