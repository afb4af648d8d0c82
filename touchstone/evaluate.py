"""The evaluation harness: one model, a list of task specs, one results JSON with provenance.

    touchstone eval models/gen-0003 --task minimal-pairs:../shared/data/blimp/data suite:numbers --json eval.json

Task specs:
  minimal-pairs:PATH  BLiMP-style `sentence_good`/`sentence_bad` (file or folder, .gz read): the summed
                      log-probability of each sentence, good must beat bad. Scored as lm-evaluation-harness
                      scores BLiMP: the context is the tokenizer's BOS token (EOS if it has none) and the
                      continuation is " " + sentence (its default target delimiter). Pairs whose two
                      sentences are identical are skipped and counted. Overall, per-file (paradigm) and
                      per-phenomenon (`linguistics_term`) accuracy. `limit` applies per file.
  pairs:PATH          pair records through the judge: accuracy, precision/recall/F1 per label and macro.
  claims:PATH         claim records or CSV/JSONL with statement,label through the judge: the same metrics.
  perplexity:PATH     perplexity and bits per byte of a text file (see touchstone.generate.perplexity).
  bleu:PATH           JSONL with prompt,reference: greedy continuation of the prompt, corpus BLEU (sacrebleu).
  suite:NAME          a world's held-out suite (touchstone.synth.heldout_suite) through the judge, versioned
                      by the world's version; also `suite:facts-untaught`, facts no training record teaches.

Claims (in claims:, pairs: and suite: files) are read from the judge's <|true|>/<|false|> answer, or, with
`contrast` K > 0, set against K mutants of themselves where their world can mutate without knowing the
truth (code): see `touchstone.judge.Judge.claims`. Results then count `claims_by_contrast`.

Guaranteed: every spec and path is checked before the model loads (a bad one is a one-line UserError);
accuracy comes with a 95% Wilson interval; the results carry provenance (task versions: a world's version
or the sha256 of the task files; the sha256 of the weights; the git commit; the settings). Log-likelihood
work is length-sorted and batched; with bf16 (on by default only where bf16 is fast: a GPU or a CPU with
AMX/AVX512-BF16) minimal pairs are scored by a bf16 copy of the model (`bf16_scorer`), and every pair whose
score difference is within `NEAR_TIE` nats is rescored in fp32 by the original,
so verdicts equal the fp32 ones unless bf16 moves a sentence pair's difference by more than that margin
(measured: see benchmarks/bench_eval.py). Suites are built in this process (their worlds fan
verification out themselves). `aevaluate` is the same call for asyncio code.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
from collections import defaultdict
from pathlib import Path

from touchstone.errors import UserError
from touchstone.records import jsonl_files

KINDS = ("minimal-pairs", "pairs", "claims", "perplexity", "bleu", "suite")
# nats. Measured on 6,700 BLiMP pairs: bf16 moved a pair's difference by at most 0.15 nats (a 10-minute
# micro model) and 0.10 (a random one), so 0.5 is a margin of over 3x; bench_eval.py counts verdicts that
# still differ from fp32 after rescoring (0 of 10,050 on all 67 paradigms).
NEAR_TIE = 0.5
EXACT_TIE = 1e-3  # nats; the shared-prefix fp32 scoring differs from the plain one only by float rounding


# ------------------------------------------------------------------------------------------ metrics
def wilson(correct: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval for a proportion (sound at 0%, 100% and small n, unlike the normal one)."""
    if n == 0:
        return [0.0, 1.0]
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def classification(gold: list, pred: list, labels: list) -> dict:
    """Accuracy with its interval, and precision/recall/F1 per label and macro-averaged."""
    n = len(gold)
    correct = sum(g == p for g, p in zip(gold, pred))
    per_label = {}
    for lab in labels:
        tp = sum(g == lab and p == lab for g, p in zip(gold, pred))
        n_pred, n_gold = sum(p == lab for p in pred), sum(g == lab for g in gold)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_gold if n_gold else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[str(lab)] = {"precision": precision, "recall": recall, "f1": f1, "support": n_gold}
    macro = {f"macro_{m}": sum(v[m] for v in per_label.values()) / max(1, len(labels))
             for m in ("precision", "recall", "f1")}
    return {"accuracy": correct / n if n else None, "ci95": wilson(correct, n), "n": n, "correct": correct,
            **macro, "per_label": per_label}


# ---------------------------------------------------------------------------------- log-likelihoods
def batch_logprobs(model, requests: list[tuple[list[int], list[int]]], bf16: bool = False):
    """Summed log-probability of each continuation given its context, in one right-padded forward pass
    (a float32 tensor, differentiable: fine-tuning's pairwise loss is this same function). Requests are
    (context_ids, continuation_ids) with a non-empty context; sequences longer than the model's context
    keep their end, as lm-evaluation-harness does."""
    import torch

    from touchstone.judge import context_length

    limit = context_length(model) + 1
    seqs = [(ctx + cont)[-limit:] for ctx, cont in requests]
    device = next(model.parameters()).device
    width = max(len(s) for s in seqs) - 1
    x = torch.zeros((len(seqs), width), dtype=torch.long)
    y = torch.zeros((len(seqs), width), dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.bool)
    for row, ((_, cont), s) in enumerate(zip(requests, seqs)):
        t = len(s) - 1
        x[row, :t], y[row, :t] = torch.tensor(s[:-1]), torch.tensor(s[1:])
        mask[row, t - min(len(cont), t):t] = True  # positions whose next token is a continuation token
    x, y, mask = x.to(device), y.to(device), mask.to(device)
    # Right padding needs no attention mask under causal attention; only continuation positions go
    # through the output layer, which is a large part of a small model's work.
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        hidden = model.base_model(input_ids=x).last_hidden_state[mask]
        logits = model.get_output_embeddings()(hidden)
    logits = logits.float()
    token_logp = logits.gather(1, y[mask][:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
    rows = torch.arange(len(seqs), device=device)[:, None].expand_as(mask)[mask]
    return torch.zeros(len(seqs), device=device).index_add(0, rows, token_logp)


def continuation_logprobs(model, requests: list[tuple[list[int], list[int]]], batch_size: int = 64,
                          bf16: bool = False, progress: bool = False) -> list[float]:
    """`batch_logprobs` over many requests: longest first, so padding is small and memory peaks early."""
    import torch

    from touchstone.judge import progress_bar

    order = sorted(range(len(requests)), key=lambda i: len(requests[i][0]) + len(requests[i][1]), reverse=True)
    out = [0.0] * len(requests)
    bar = progress_bar(len(requests), "log-likelihood", progress)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, v in zip(chunk, batch_logprobs(model, [requests[i] for i in chunk], bf16).tolist()):
                out[i] = v
            bar.update(len(chunk))
    bar.close()
    return out


def _prefix_id(tokenizer) -> int:
    # lm-evaluation-harness conditions an empty context on BOS, or on EOS when there is no BOS.
    return tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id


def _shared_prefix(good: list[int], bad: list[int]) -> int:
    k = 0
    while k < min(len(good), len(bad)) and good[k] == bad[k]:
        k += 1
    return k


def bf16_scorer(model):
    """A bf16 copy of `model` for the minimal-pair pass: weights cast once (autocast re-casts them at every
    call, a fifth of a small model's time on CPU) and GPT-2's composed tanh-GELU swapped for PyTorch's
    fused kernel of the same formula. The copy's verdicts are only a first pass; near-ties are rescored
    with the fp32 original (`score_minimal_pairs`)."""
    import copy

    import torch
    from transformers.activations import NewGELUActivation, PytorchGELUTanh

    scorer = copy.deepcopy(model).to(torch.bfloat16).eval()
    for module in list(scorer.modules()):
        for name, child in module.named_children():
            if isinstance(child, NewGELUActivation):
                setattr(module, name, PytorchGELUTanh())
    return scorer


def pair_differences(model, prefix_id: int, pairs: list[tuple[list[int], list[int]]]):
    """log p(good) - log p(bad) for each (good_ids, bad_ids), both after [prefix_id], in ONE forward row
    per pair: [prefix] + good + bad[k:], where k tokens start both sentences. The bad branch restarts
    its positions at 1 + k and may not attend to good's own tokens (a tree-shaped attention mask), so
    each branch sees exactly the context it would see alone; the shared prefix is computed once and its
    log-probabilities, equal on both sides, cancel. Pairs that do not fit the context must be left out."""
    import torch

    rows, targets = [], []  # targets: (row, position, token, +1 good / -1 bad)
    for r, (g, b) in enumerate(pairs):
        k = _shared_prefix(g, b)
        rows.append(([prefix_id] + g + b[k:], list(range(1 + len(g))) + list(range(1 + k, 1 + len(b))), len(g), k))
        targets += [(r, p, g[p], 1.0) for p in range(k, len(g))]  # position p predicts good token p
        bad_from = [k] + list(range(1 + len(g), len(g) + len(b) - k))  # predictors of bad[k:], in order
        targets += [(r, p, t, -1.0) for p, t in zip(bad_from, b[k:])]
    device = next(model.parameters()).device
    width = max(len(t) for t, _, _, _ in rows)
    x = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    allow = torch.tril(torch.ones(width, width, dtype=torch.bool)).repeat(len(rows), 1, 1)
    for r, (tokens, positions, n_good, k) in enumerate(rows):
        x[r, :len(tokens)], pos[r, :len(tokens)] = torch.tensor(tokens), torch.tensor(positions)
        allow[r, 1 + n_good:, 1 + k:1 + n_good] = False  # the bad branch does not see good's own tokens
    r_idx, p_idx, tok, sign = (torch.tensor(v, device=device) for v in zip(*targets)) if targets else ([],) * 4
    diffs = torch.zeros(len(rows), device=device)
    if not targets:
        return diffs
    hidden = model.base_model(input_ids=x.to(device), position_ids=pos.to(device),
                              attention_mask=allow[:, None].to(device)).last_hidden_state
    logits = model.get_output_embeddings()(hidden[r_idx, p_idx]).float()
    logp = logits.gather(1, tok[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
    return diffs.index_add(0, r_idx, sign * logp)


def score_minimal_pairs(model, tokenizer, pairs: list[dict], batch_size: int = 64, bf16: bool = False,
                        progress: bool = False) -> list[bool]:
    """For each {sentence_good, sentence_bad}: does good get the higher summed log-probability?
    A tie counts as wrong. Scored with `pair_differences` (shared prefix once, length-sorted batches);
    differences within `EXACT_TIE` nats (or `NEAR_TIE` with bf16) are rescored with `continuation_logprobs`
    in fp32, the plain one-sentence-per-row computation, so the verdicts are the fp32 ones."""
    import torch

    from touchstone.judge import progress_bar, context_length

    prefix = _prefix_id(tokenizer)
    texts = [" " + s for p in pairs for s in (p["sentence_good"], p["sentence_bad"])]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    tokens = [(ids[2 * i], ids[2 * i + 1]) for i in range(len(pairs))]
    fits = [i for i, (g, b) in enumerate(tokens) if 1 + max(len(g), len(b)) <= context_length(model)]
    # Sorted by the length of the row pair_differences builds (good + bad after the shared prefix).
    order = sorted(fits, key=lambda i: sum(map(len, tokens[i])) - _shared_prefix(*tokens[i]), reverse=True)
    diffs = [0.0] * len(pairs)
    scorer = bf16_scorer(model) if bf16 else model
    bar = progress_bar(len(pairs), "minimal pairs", progress)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, d in zip(chunk, pair_differences(scorer, prefix, [tokens[i] for i in chunk]).tolist()):
                diffs[i] = d
            bar.update(len(chunk))
    bar.close()
    margin = NEAR_TIE if bf16 else EXACT_TIE
    redo = sorted(set(range(len(pairs))) - set(fits) | {i for i in fits if abs(diffs[i]) < margin})
    exact = continuation_logprobs(model, [([prefix], tokens[i][k]) for i in redo for k in (0, 1)], batch_size)
    for j, i in enumerate(redo):
        diffs[i] = exact[2 * j] - exact[2 * j + 1]
    return [d > 0 for d in diffs]


# --------------------------------------------------------------------------------------------- tasks
def parse_spec(spec: str) -> tuple[str, str]:
    """(kind, argument) of a task spec; a malformed spec or a missing path is a UserError."""
    kind, sep, arg = spec.partition(":")
    if not sep or not arg or kind not in KINDS:
        raise UserError(f"task spec '{spec}': expected KIND:PATH or suite:WORLD, KIND one of {', '.join(KINDS)}")
    if kind == "suite":
        from touchstone.worlds import WORLDS

        from touchstone.synth import EXTRA_SUITES

        if arg not in WORLDS and arg not in EXTRA_SUITES:
            raise UserError(f"task spec '{spec}': unknown suite '{arg}' (known: {', '.join([*WORLDS, *EXTRA_SUITES])})")
    elif kind in ("perplexity", "bleu"):
        if not Path(arg).is_file():
            raise UserError(f"task spec '{spec}': {arg}: no such file")
    else:
        jsonl_files(arg)  # a file, or a folder with .jsonl(.gz) files
    return kind, arg


def _files(kind: str, arg: str) -> list[Path]:
    return [Path(arg)] if kind in ("perplexity", "bleu") or Path(arg).is_file() else jsonl_files(arg)


def _minimal_pairs(model, tokenizer, arg, batch_size, limit, bf16) -> dict:
    from touchstone.records import read_minimal_pairs

    items, skipped = [], 0
    for f in jsonl_files(arg):
        stem = f.name.split(".")[0]
        for k, rec in enumerate(read_minimal_pairs(f)):
            if limit is not None and k >= limit:
                break
            if rec["sentence_good"] == rec["sentence_bad"]:
                skipped += 1  # an upstream quirk (BLiMP has 7): no sentence can beat itself
                continue
            items.append((stem, rec.get("linguistics_term"), rec))
    if not items:
        raise UserError(f"{arg}: no minimal pairs to score")
    ok = score_minimal_pairs(model, tokenizer, [r for _, _, r in items], batch_size, bf16, progress=True)
    groups: dict[str, dict] = {"per_file": defaultdict(list), "per_term": defaultdict(list)}
    for (stem, term, _), v in zip(items, ok):
        groups["per_file"][stem].append(v)
        if term:
            groups["per_term"][term].append(v)
    correct = sum(ok)
    result = {"accuracy": correct / len(ok), "ci95": wilson(correct, len(ok)), "n": len(ok), "correct": correct,
              "skipped_identical": skipped}
    for name, g in groups.items():
        if g:
            result[name] = {k: {"accuracy": sum(v) / len(v), "n": len(v)} for k, v in sorted(g.items())}
    return result


def claim_contrast(k: int):
    """A `contrast` for `Judge.claims`: each claim record against k mutants made by its own world
    (`World.contrast`), seeded by the record's statement so every run asks the same questions. Records of
    no known world, or of a world that cannot mutate without the truth, get none (read directly)."""
    from touchstone.worlds import WORLDS, get_world

    worlds: dict = {}

    def contrast(record: dict) -> list[dict]:
        name = record.get("world")
        if name not in WORLDS:
            return []
        if name not in worlds:
            worlds[name] = get_world(name)
        seed = int.from_bytes(hashlib.sha256(record["statement"].encode()).digest()[:8], "big")
        return worlds[name].contrast(record, random.Random(seed), k)

    return contrast


def judge_records(judge, records: list[dict], contrast: int = 0, progress: bool = True) -> dict:
    """Judge a mixed list of pair and claim records: overall accuracy, the metrics of each form (pairs,
    claims) and the accuracy of each record kind. `contrast`: claims against that many mutants of
    themselves where their world can make them (`claim_contrast`); 0 reads every claim directly."""
    verdicts = judge.records(records, progress=progress, contrast=claim_contrast(contrast) if contrast else None)
    gold = [str(r["label"]).lower() for r in records]
    pred = [str(v["choice"]).lower() for v in verdicts]
    overall = classification(gold, pred, [])
    result: dict = {k: overall[k] for k in ("accuracy", "ci95", "n", "correct")}
    if contrast:
        result["claims_by_contrast"] = sum(1 for v in verdicts if v.get("method") == "contrast")
    for form, labels in (("pairs", ["a", "b"]), ("claims", ["true", "false"])):
        idx = [i for i, r in enumerate(records) if ("a" in r) == (form == "pairs")]
        if idx:
            result[form] = classification([gold[i] for i in idx], [pred[i] for i in idx], labels)
    # Per record kind (a world's question type, e.g. numbers' "sum" or "larger"): an overall figure near
    # chance can hide one kind learned and another not. A kind that also names its item, as code's
    # "fibonacci:off_by_one" does, is grouped by the part after the last colon (the mutation).
    by_kind: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        if r.get("kind"):
            by_kind.setdefault(str(r["kind"]).rsplit(":", 1)[-1], []).append(i)
    if by_kind:
        result["per_kind"] = {}
        for kind, idx in sorted(by_kind.items()):
            m = classification([gold[i] for i in idx], [pred[i] for i in idx], [])
            result["per_kind"][kind] = {k: m[k] for k in ("accuracy", "ci95", "n", "correct")}
    return result


def _read_records(kind: str, arg: str, limit) -> list[dict]:
    from touchstone.records import read_claims, read_pairs

    reader = read_pairs if kind == "pairs" else read_claims
    out = [r for f in _files(kind, arg) for r in reader(f)]
    return out[:limit] if limit is not None else out


def _bleu(model, tokenizer, arg, limit) -> dict:
    import sacrebleu

    from touchstone.files import read_jsonl
    from touchstone.generate import sample
    from touchstone.judge import progress_bar

    rows = []
    for lineno, obj in read_jsonl(arg):
        for key in ("prompt", "reference"):
            if not isinstance(obj.get(key), str):
                raise UserError(f"{arg}:{lineno}: missing key '{key}'")
        rows.append(obj)
    rows = rows[:limit] if limit is not None else rows
    hyps = []
    bar = progress_bar(len(rows), "generate", True)
    for r in rows:
        budget = int(r.get("max_new_tokens") or 2 * len(tokenizer(r["reference"])["input_ids"]) + 8)
        text = sample(model, tokenizer, r["prompt"], max_new_tokens=budget, temperature=0.0, n=1)[0].strip()
        # A one-line reference is compared with the first line: a small model rarely stops by itself.
        hyps.append(text.split("\n")[0] if "\n" not in r["reference"].strip() else text)
        bar.update()
    bar.close()
    bleu = sacrebleu.corpus_bleu(hyps, [[r["reference"] for r in rows]])
    return {"accuracy": None, "bleu": bleu.score, "n": len(rows), "signature": str(bleu.format(signature=True))}


def _build_suites(names: list[str]) -> dict[str, tuple[int, list[dict]]]:
    """Held-out suites by world name, built in this process. Not in a process pool: the wing and code
    worlds start pools of their own, and a pool inside a pool worker deadlocked here (seen: an eval of six
    suites sat at 0% CPU for 20 minutes)."""
    from touchstone.synth import heldout_suite

    return {n: heldout_suite(n) for n in names}


# ------------------------------------------------------------------------------------------ evaluate
def weights_sha256(model_dir: str | Path) -> str | None:
    from touchstone.files import sha256_file
    from touchstone.generate import WEIGHTS

    for name in WEIGHTS:
        if (Path(model_dir) / name).is_file():
            return sha256_file(Path(model_dir) / name)
    return None


def _task_version(kind: str, arg: str, suite_versions: dict) -> str:
    if kind == "suite":
        return str(suite_versions[arg])
    from touchstone.files import sha256_bytes, sha256_file

    return "sha256:" + sha256_bytes("".join(sha256_file(f) for f in _files(kind, arg)).encode())[:16]


def evaluate(model_dir: str | Path, specs: list[str], json_out: str | Path | None = None,
             report_dir: str | Path | None = None, batch_size: int = 64, limit: int | None = None,
             bf16: bool | None = None, compile: bool = False, contrast: int = 0, overwrite: bool = False) -> dict:
    """Run every task spec on the model; write the results JSON and a report if asked; return the results.
    `contrast` > 0 judges claims against that many mutants of themselves where their world can make them
    (see `Judge.claims`); the default reads every claim directly."""
    import torch

    from touchstone import __version__
    from touchstone.files import read_text
    from touchstone.generate import load_model, perplexity_of
    from touchstone.judge import Judge
    from touchstone.train.common import default_bf16, default_device, git_commit

    parsed = [(spec, *parse_spec(spec)) for spec in specs]  # all specs checked before the model loads
    if len({s for s, _, _ in parsed}) != len(parsed):
        raise UserError("eval: the same task spec is given twice")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise UserError("eval: batch size and limit must be at least 1")
    if contrast < 0:
        raise UserError(f"eval: --contrast must be 0 or more, got {contrast}")
    if json_out is not None or report_dir is not None:  # before any work: an unwritable output fails now
        check_outputs(json_out, report_dir, overwrite)
    # Every file a task reads is read now, so that a bad one is reported before the model loads.
    loaded = {}
    for spec, kind, arg in parsed:
        if kind in ("pairs", "claims"):
            loaded[spec] = _read_records(kind, arg, limit)
            if not loaded[spec]:
                raise UserError(f"{arg}: no records")
        elif kind == "perplexity":
            loaded[spec] = read_text(arg)
            if not loaded[spec].strip():
                raise UserError(f"{arg}: the text is empty")
    suites = _build_suites([arg for _, kind, arg in parsed if kind == "suite"])
    model, tokenizer = load_model(model_dir)
    device = default_device()
    model.to(device)
    bf16 = default_bf16(device) if bf16 is None else bf16
    if compile:
        model.base_model.forward = torch.compile(model.base_model.forward, dynamic=True)
    judge = None
    tasks = {}
    for spec, kind, arg in parsed:
        if kind in ("pairs", "claims", "suite") and judge is None:
            judge = Judge(model, tokenizer, batch_size)
        if kind == "minimal-pairs":
            tasks[spec] = _minimal_pairs(model, tokenizer, arg, batch_size, limit, bf16)
        elif kind in ("pairs", "claims"):
            tasks[spec] = judge_records(judge, loaded[spec], contrast)
        elif kind == "suite":
            records = suites[arg][1][:limit] if limit is not None else suites[arg][1]
            tasks[spec] = judge_records(judge, records, contrast)
        elif kind == "perplexity":
            r = perplexity_of(model, tokenizer, loaded[spec], batch_size=max(1, batch_size // 8))
            tasks[spec] = {"accuracy": None, "n": r["tokens"], **r}
        else:
            tasks[spec] = _bleu(model, tokenizer, arg, limit)
    results = {
        "model": str(model_dir),
        "tasks": tasks,
        "provenance": {
            "task_versions": {spec: _task_version(kind, arg, {k: v[0] for k, v in suites.items()})
                              for spec, kind, arg in parsed},
            "model_sha256": weights_sha256(model_dir),
            "git_commit": git_commit(),
            "config": {"batch_size": batch_size, "limit": limit, "bf16": bf16, "compile": compile, "device": device,
                       "claim_contrast": contrast,
                       "near_tie_nats": NEAR_TIE, "minimal_pairs_prefix": "BOS (else EOS), continuation ' ' + sentence"},
            "touchstone_version": __version__,
        },
    }
    if json_out is not None:
        from touchstone.files import write_json_atomic

        write_json_atomic(json_out, results)
    if report_dir is not None or json_out is not None:
        from touchstone.report import write_report

        write_report(results, *report_place(json_out, report_dir))
    return results


def report_place(json_out, report_dir) -> tuple[Path, str]:
    """(directory, name) of the Markdown report: `report_dir`, else beside the JSON, named after it."""
    where = Path(report_dir) if report_dir is not None else Path(json_out).parent
    return where, Path(json_out).stem if json_out is not None else "eval"


def check_outputs(json_out, report_dir, overwrite: bool = False) -> None:
    """Refuse, before evaluating, a results path or report files that exist (unless `overwrite`) or
    cannot be written (see `files.check_output`)."""
    from touchstone.files import check_output
    from touchstone.report import report_files

    if json_out is not None:
        check_output(json_out, overwrite=overwrite)
    where, name = report_place(json_out, report_dir)
    if where.exists() and not where.is_dir():
        raise UserError(f"{where}: is a file, not a directory; choose another --report directory")
    for fname in report_files(name):
        check_output(where / fname, overwrite=overwrite)


async def aevaluate(model_dir, specs, **kwargs) -> dict:
    """`evaluate` for asyncio callers: runs in a worker thread, so the event loop keeps serving."""
    return await asyncio.to_thread(evaluate, model_dir, specs, **kwargs)
