"""The fine-tuning objectives (`FinetuneConfig.objective`, described in `touchstone.train.finetune`): the
loss of one batch of records, on the judge's own question format (touchstone.prompts).

Under data parallelism each process computes the loss of its share of the global batch as that share's
part of the whole batch's mean, so the sum of the ranks' gradients is the gradient of the whole batch.
"""

from __future__ import annotations

from touchstone import prompts
from touchstone.judge import encode, last_logits
from touchstone.likelihood import batch_logprobs
from touchstone.model import context_length

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


def judge_loss(model, tokenizer, batch: list[dict], objective: str, bf16: bool, whole: list[dict] | None = None):
    """The fine-tuning loss of one batch of records under `objective`. With `whole`, the global batch of which
    `batch` is this process's share: the share's part of the whole batch's mean loss."""
    return sum(judge_loss_parts(model, tokenizer, batch, objective, bf16, whole))


def judge_loss_parts(model, tokenizer, batch: list[dict], objective: str, bf16: bool, whole: list[dict] | None = None):
    """`judge_loss` as the terms that sum to it, each a scalar tensor computed when the previous one has
    been taken: one per length group of answer questions, then the pairwise term. Training calls
    backward on each as it comes, so only one group's activations are held at a time (a whole batch's
    were the largest part of fine-tuning's memory); the summed gradient is the same."""
    import torch
    import torch.nn.functional as F

    whole = batch if whole is None else whole
    device = next(model.parameters()).device
    answers = [ex for r in batch if answered(r, objective) for ex in answer_examples(r)]
    if answers:
        seqs = [encode(tokenizer, q)[-context_length(model) :] for q, _ in answers]
        pair_ids = tokenizer.convert_tokens_to_ids([prompts.ANSWER_A, prompts.ANSWER_B])
        claim_ids = tokenizer.convert_tokens_to_ids([prompts.ANSWER_TRUE, prompts.ANSWER_FALSE])
        choices = torch.tensor(
            [pair_ids if a in (prompts.ANSWER_A, prompts.ANSWER_B) else claim_ids for _, a in answers], device=device
        )
        target = torch.tensor([int(a in (prompts.ANSWER_B, prompts.ANSWER_FALSE)) for _, a in answers], device=device)
        denominator = sum(len(answer_examples(r)) for r in whole if answered(r, objective))
        for group in length_groups([len(q) for q in seqs]):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = last_logits(model, [seqs[i] for i in group], tokenizer.pad_token_id)
            # Cross-entropy over the two answer tokens the judge reads (its renormalized log-odds), not
            # over the whole vocabulary: a full-vocabulary loss first spends its steps lifting tokens
            # that pretraining never saw, and the judge ignores every other token anyway.
            idx = torch.tensor(group, device=device)
            yield F.cross_entropy(logits.gather(1, choices[idx]), target[idx], reduction="sum") / denominator
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
