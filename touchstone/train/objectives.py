"""The fine-tuning objectives (`FinetuneConfig.objective`, described in `touchstone.train.finetune`): the
loss of one batch of records, on the judge's own question format (touchstone.prompts).

Under data parallelism each process computes the loss of its share of the global batch as that share's
part of the whole batch's mean, so the sum of the ranks' gradients is the gradient of the whole batch.

Derivations: where a record's world writes out the working behind its answer (`World.derivation`, from
the record's own text, e.g. where two numbers first differ), the answer objective also trains the model
to write that working, weighted by `derivation_weight`:
- after the answer token (the default): the answer position comes before the derivation, so what the
  judge reads is unchanged and judging needs no generation; the derivation only shapes what the model
  learns to represent. Why: on the number-comparison probe (docs/learning-curves.md), a model that also
  had to predict the derivation left the plateau where the answer-only model sat at chance;
- before it (`working_first`): question, <|work|>, the working, <|answer|>, and the answer read at that
  <|answer|>. The model learns to write the working (and the <|answer|> that ends it) and to answer from
  it; the judge then writes its own working before every verdict (`touchstone.judge`). Why: an answer
  read before the working has to be computed in one forward pass, where the working is many small steps
  the model can read back.
"""

from __future__ import annotations

import functools

from touchstone import prompts
from touchstone.judge import encode, right_padded_hidden
from touchstone.likelihood import batch_logprobs
from touchstone.model import context_length
from touchstone.records import swapped
from touchstone.worlds import WORLDS, get_world

OBJECTIVES = ("answer", "pairwise", "mix")


def answer_examples(rec: dict) -> list[tuple[str, str]]:
    """(question, answer token) for the answer objective: a pair in both orders, a claim once."""
    if "a" in rec:
        first, second = (
            (prompts.ANSWER_A, prompts.ANSWER_B) if rec["label"] == "a" else (prompts.ANSWER_B, prompts.ANSWER_A)
        )
        return [
            (prompts.pair_prompt(rec["prompt"], rec["a"], rec["b"]), first),
            (prompts.pair_prompt(rec["prompt"], rec["b"], rec["a"]), second),
        ]
    return [(prompts.claim_prompt(rec["statement"]), prompts.ANSWER_TRUE if rec["label"] else prompts.ANSWER_FALSE)]


@functools.cache
def _world(name: str):
    return get_world(name)


def derivations(rec: dict) -> list[str | None]:
    """The derivation to train after each of `answer_examples(rec)`'s answers (None: none), from the
    record's world: for a pair, the working of each order as it is shown."""
    if rec.get("world") not in WORLDS:
        return [None] * (2 if "a" in rec else 1)
    world = _world(rec["world"])
    if "a" in rec:
        return [world.derivation(rec), world.derivation(swapped(rec))]
    return [world.derivation(rec)]


def derivation_tokens(tokenizer, rec: dict, ctx: int) -> list[list[int]]:
    """`derivations(rec)` as token ids, each at most a quarter of the context so the question keeps the
    rest; empty where there is none."""
    return [tokenizer(d, add_special_tokens=False)["input_ids"][: ctx // 4] if d else [] for d in derivations(rec)]


class DerivationTokens:
    """`derivation_tokens` of every record of a run, computed once when the run starts: a derivation is
    fixed by its record, and computing and tokenizing it again at every step and epoch cost time the
    training needs. Looked up by record object, so the records must outlive it (the run holds both)."""

    def __init__(self, tokenizer, records: list[dict], ctx: int):
        self.records = records
        self.by_record = {id(r): derivation_tokens(tokenizer, r, ctx) for r in records}

    def __call__(self, rec: dict) -> list[list[int]]:
        return self.by_record[id(rec)]


def answer_positions(
    model, seqs: list[list[int]], answer_at: list[int], tails: list[list[int]], tail_at: list[int], pad_id: int
):
    """One right-padded forward pass over sequences of a question, its answer and a derivation: the fp32
    logits at each answer position, and the mean next-token loss of each sequence's derivation (`tails`,
    found at `tail_at` in its sequence; zero where empty). Only those positions go through the output layer."""
    import torch
    import torch.nn.functional as F

    hidden = right_padded_hidden(model, seqs, pad_id)
    device = hidden.device
    head = model.get_output_embeddings()
    rows = torch.arange(len(seqs), device=device)
    answers = head(hidden[rows, torch.tensor(answer_at, device=device)]).float()
    tail_loss = torch.zeros(len(seqs), device=device)
    # The derivation's k-th token, at tail_at + k, is predicted from the position before it.
    where = [(i, tail_at[i] - 1 + k) for i, t in enumerate(tails) for k in range(len(t))]
    if where:
        r, c = (torch.tensor(v, device=device) for v in zip(*where))
        target = torch.tensor([tok for t in tails for tok in t], device=device)
        losses = F.cross_entropy(head(hidden[r, c]).float(), target, reduction="none")
        tail_loss = tail_loss.index_add(0, r, losses / torch.tensor([len(tails[i]) for i in r.tolist()], device=device))
    return answers, tail_loss


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


def judge_loss(*args, **kwargs):
    """The fine-tuning loss of one batch of records under `objective`, with `judge_loss_parts`' arguments.
    With `whole`, the global batch of which `batch` is this process's share: the share's part of the whole
    batch's mean loss."""
    return sum(judge_loss_parts(*args, **kwargs))


def judge_loss_parts(
    model,
    tokenizer,
    batch: list[dict],
    objective: str,
    bf16: bool,
    whole: list[dict] | None = None,
    derivation_weight: float = 0.0,
    derivation_tokens_of=None,
    working_first: bool = False,
):
    """`judge_loss` as the terms that sum to it, each a scalar tensor computed when the previous one has
    been taken: one per length group of answer questions, then the pairwise term. Training calls
    backward on each as it comes, so only one group's activations are held at a time (a whole batch's
    were the largest part of fine-tuning's memory); the summed gradient is the same.
    `derivation_tokens_of`: a record's derivations as token ids (`DerivationTokens`, computed once per
    run); without it they are computed here. `working_first`: each derivation goes before the answer
    (the module docstring), ended by <|answer|>, which is trained with it."""
    import torch
    import torch.nn.functional as F

    whole = batch if whole is None else whole
    device = next(model.parameters()).device
    answered_records = [r for r in batch if answered(r, objective)]
    answers = [ex for r in answered_records for ex in answer_examples(r)]
    if answers:
        ctx = context_length(model)
        if derivation_weight > 0:
            tokens_of = derivation_tokens_of or (lambda r: derivation_tokens(tokenizer, r, ctx))
            tails = [t for r in answered_records for t in tokens_of(r)]
        else:
            tails = [[] for _ in answers]
        questions = [encode(tokenizer, q)[-(ctx - 1 - len(t)) :] for (q, _), t in zip(answers, tails)]
        answer_ids = tokenizer.convert_tokens_to_ids([a for _, a in answers])
        if working_first:
            # question less its <|answer|>, <|work|>, working, <|answer|>: the working and the <|answer|>
            # that closes it are the tail, from the position after <|work|>.
            work, close = tokenizer.convert_tokens_to_ids([prompts.WORK, prompts.ANSWER])
            tails = [t + [close] for t in tails]
            seqs = [q[:-1] + [work] + t for q, t in zip(questions, tails)]
            answer_at, tail_at = [len(s) - 1 for s in seqs], [len(q) for q in questions]
        else:
            seqs = [q + ([a] + t if t else []) for q, a, t in zip(questions, answer_ids, tails)]
            answer_at = [len(q) - 1 for q in questions]
            tail_at = [len(q) + 1 for q in questions]
        pair_ids = tokenizer.convert_tokens_to_ids([prompts.ANSWER_A, prompts.ANSWER_B])
        claim_ids = tokenizer.convert_tokens_to_ids([prompts.ANSWER_TRUE, prompts.ANSWER_FALSE])
        choices = torch.tensor(
            [pair_ids if a in (prompts.ANSWER_A, prompts.ANSWER_B) else claim_ids for _, a in answers], device=device
        )
        target = torch.tensor([int(a in (prompts.ANSWER_B, prompts.ANSWER_FALSE)) for _, a in answers], device=device)
        denominator = sum(len(answer_examples(r)) for r in whole if answered(r, objective))
        for group in length_groups([len(q) for q in seqs]):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits, tail_loss = answer_positions(
                    model,
                    [seqs[i] for i in group],
                    [answer_at[i] for i in group],
                    [tails[i] for i in group],
                    [tail_at[i] for i in group],
                    tokenizer.pad_token_id,
                )
            # Cross-entropy over the two answer tokens the judge reads (its renormalized log-odds), not
            # over the whole vocabulary: a full-vocabulary loss first spends its steps lifting tokens
            # that pretraining never saw, and the judge ignores every other token anyway.
            idx = torch.tensor(group, device=device)
            answer = F.cross_entropy(logits.gather(1, choices[idx]), target[idx], reduction="sum")
            yield (answer + derivation_weight * tail_loss.sum()) / denominator
    pairs = [r for r in batch if "a" in r]
    if objective != "answer" and pairs:
        # One term: a pair's two versions may fall in different length groups, and its margin needs both.
        reqs = [req for r in pairs for req in version_requests(tokenizer, r)]
        groups = length_groups([len(c) + len(x) for c, x in reqs])
        scores = torch.cat([batch_logprobs(model, [reqs[i] for i in g], bf16) for g in groups])
        where = torch.tensor([i for g in groups for i in g], device=device)
        s = torch.zeros_like(scores).scatter(0, where, scores)  # back in request order
        margins = F.logsigmoid(s[0::2] - s[1::2])
        yield -(margins.mean() if whole is batch else margins.sum() / sum("a" in r for r in whole))


def answered(rec: dict, objective: str) -> bool:
    """Whether `objective` trains the answer token on `rec`: always, but for a pair under "pairwise"."""
    return objective != "pairwise" or "a" not in rec
