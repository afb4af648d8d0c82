"""Log-likelihood scoring: the summed log-probability of a continuation, and minimal pairs.

`batch_logprobs` is also fine-tuning's pairwise loss, so the metric and the training signal cannot drift
apart. Minimal pairs (`score_minimal_pairs`) are scored as lm-evaluation-harness scores BLiMP: the context
is the tokenizer's BOS token (EOS if it has none) and the continuation is " " + sentence. Log-likelihood
work is length-sorted and batched. With bf16, minimal pairs are scored by a bf16 copy of the model
(`bf16_scorer`) and every pair whose score difference is within `NEAR_TIE` nats is rescored in fp32 by
the original, so verdicts equal the fp32 ones unless bf16 moves a pair's difference by more than that
margin (docs/evaluation.md: how far it was measured to move them; benchmarks/bench_eval.py counts it).
"""

from __future__ import annotations

from touchstone.distributed import ONE_PROCESS, Shards
from touchstone.model import context_length
from touchstone.report import progress_bar

# nats: the margin within which a bf16 verdict is rescored in fp32 (docs/evaluation.md: over 3x the
# largest move measured).
NEAR_TIE = 0.5
EXACT_TIE = 1e-3  # nats; the shared-prefix fp32 scoring differs from the plain one only by float rounding


def batch_logprobs(model, requests: list[tuple[list[int], list[int]]], bf16: bool = False):
    """Summed log-probability of each continuation given its context, in one right-padded forward pass
    (a float32 tensor, differentiable: fine-tuning's pairwise loss is this same function). Requests are
    (context_ids, continuation_ids) with a non-empty context; sequences longer than the model's context
    keep their end, as lm-evaluation-harness does."""
    import torch

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
        mask[row, t - min(len(cont), t) : t] = True  # positions whose next token is a continuation token
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


def continuation_logprobs(
    model,
    requests: list[tuple[list[int], list[int]]],
    batch_size: int = 64,
    bf16: bool = False,
    progress: bool = False,
    shards: Shards = ONE_PROCESS,
) -> list[float]:
    """`batch_logprobs` over many requests: longest first, so padding is small and memory peaks early.
    `shards`: the batches split over a launcher's processes, every process getting all the results."""
    import torch

    order = sorted(range(len(requests)), key=lambda i: len(requests[i][0]) + len(requests[i][1]), reverse=True)
    bar = progress_bar(len(requests), "log-likelihood", progress)

    def score(chunk: list[int]) -> list[float]:
        bar.update(len(chunk))
        return batch_logprobs(model, [requests[i] for i in chunk], bf16).tolist()

    with torch.inference_mode():
        out = shards.per_item(score, order, batch_size, len(requests))
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
    call). The copy's verdicts are only a first pass; near-ties are rescored with the fp32 original
    (`score_minimal_pairs`)."""
    import copy

    import torch

    return copy.deepcopy(model).to(torch.bfloat16).eval()


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
        x[r, : len(tokens)], pos[r, : len(tokens)] = torch.tensor(tokens), torch.tensor(positions)
        allow[r, 1 + n_good :, 1 + k : 1 + n_good] = False  # the bad branch does not see good's own tokens
    r_idx, p_idx, tok, sign = (torch.tensor(v, device=device) for v in zip(*targets)) if targets else ([],) * 4
    diffs = torch.zeros(len(rows), device=device)
    if not targets:
        return diffs
    hidden = model.base_model(
        input_ids=x.to(device), position_ids=pos.to(device), attention_mask=allow[:, None].to(device)
    ).last_hidden_state
    logits = model.get_output_embeddings()(hidden[r_idx, p_idx]).float()
    logp = logits.gather(1, tok[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
    return diffs.index_add(0, r_idx, sign * logp)


def score_minimal_pairs(
    model,
    tokenizer,
    pairs: list[dict],
    batch_size: int = 64,
    bf16: bool = False,
    progress: bool = False,
    shards: Shards = ONE_PROCESS,
) -> list[bool]:
    """For each {sentence_good, sentence_bad}: does good get the higher summed log-probability?
    A tie counts as wrong. Scored with `pair_differences` (shared prefix once, length-sorted batches);
    differences within `EXACT_TIE` nats (or `NEAR_TIE` with bf16) are rescored with `continuation_logprobs`
    in fp32, the plain one-sentence-per-row computation, so the verdicts are the fp32 ones. `shards`: the
    batches of both passes split over a launcher's processes, every process getting every verdict."""
    import torch

    prefix = _prefix_id(tokenizer)
    texts = [" " + s for p in pairs for s in (p["sentence_good"], p["sentence_bad"])]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    tokens = [(ids[2 * i], ids[2 * i + 1]) for i in range(len(pairs))]
    fits = [i for i, (g, b) in enumerate(tokens) if 1 + max(len(g), len(b)) <= context_length(model)]
    # Sorted by the length of the row pair_differences builds (good + bad after the shared prefix).
    order = sorted(fits, key=lambda i: sum(map(len, tokens[i])) - _shared_prefix(*tokens[i]), reverse=True)
    scorer = bf16_scorer(model) if bf16 else model
    bar = progress_bar(len(pairs), "minimal pairs", progress)

    def score(chunk: list[int]) -> list[float]:
        bar.update(len(chunk))
        return pair_differences(scorer, prefix, [tokens[i] for i in chunk]).tolist()

    with torch.inference_mode():
        diffs = shards.per_item(score, order, batch_size, len(pairs))  # 0.0 for the pairs that do not fit
    bar.close()
    margin = NEAR_TIE if bf16 else EXACT_TIE
    redo = sorted(set(range(len(pairs))) - set(fits) | {i for i in fits if abs(diffs[i]) < margin})
    requests = [([prefix], tokens[i][k]) for i in redo for k in (0, 1)]
    exact = continuation_logprobs(model, requests, batch_size, shards=shards)
    for j, i in enumerate(redo):
        diffs[i] = exact[2 * j] - exact[2 * j + 1]
    return [d > 0 for d in diffs]
