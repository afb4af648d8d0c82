"""The judge: the language model itself answering "which version is correct / better?" and "is this true?".

    touchstone judge models/gen-0003 --prompt "What is 17 + 25?" --a 42 --b 43
    touchstone judge models/gen-0003 --statement "Paris is the capital of France."

The question is written with `touchstone.prompts` and the answer is read from the model's next-token
distribution at the `<|answer|>` position, renormalized over the two answer tokens (<|A|>/<|B|> for a
pair, <|true|>/<|false|> for a claim). Nothing is sampled. A model fine-tuned to work first
(`FinetuneConfig.working_first`, kept in its config.json) first writes its working after `<|work|>`,
greedily, until it writes `<|answer|>` (or a quarter of its context, as in training), and is read there;
the verdict then carries what it wrote ("working").

Guaranteed:
- position bias is removed: a pair is asked in both orders, (a, b) and (b, a), and the two log-odds for
  "a is better" are averaged, so swapping a and b swaps p_a and p_b (up to float rounding);
- p_a + p_b = 1 and p_true + p_false = 1; ties go to "a" (a pair) and to true (a claim);
- a model from elsewhere that lacks the special tokens gets them added and its embeddings resized (its
  answers are then meaningless until it is fine-tuned, but the judge runs);
- prompts longer than the context keep their end (the answer position), losing the start;
- scoring is in fp32 (the verdicts are what the loop gates on; bf16 is not worth a flipped verdict).

A claim can also be judged against mutants of itself (`claims(..., contrast=...)`, `touchstone eval
--contrast K`): the pair question "this version or its mutant?" asked of each, where the claim's world can
mutate it without knowing its truth (code). Off by default, and the loop's gate reads claims directly.

`AsyncJudge` lets many coroutines ask at once: their questions are gathered into batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from pathlib import Path

from touchstone import prompts
from touchstone.distributed import ONE_PROCESS, Shards
from touchstone.generate import load_model
from touchstone.model import context_length
from touchstone.records import is_pair
from touchstone.report import progress_bar


def ensure_special_tokens(model, tokenizer) -> list[str]:
    """Add any of `prompts.SPECIAL_TOKENS` the tokenizer lacks (resizing the embeddings); return them."""
    vocab = tokenizer.get_vocab()
    missing = [t for t in prompts.SPECIAL_TOKENS if t not in vocab]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing})
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = prompts.PAD
    return missing


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of a question, after <|endoftext|> as every training document is."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.convert_tokens_to_ids(prompts.EOS)
    return [eos] + ids


def right_padded_hidden(model, seqs: list[list[int]], pad_id: int):
    """The last hidden states of one right-padded forward pass over `seqs` (rows, width, hidden).

    Right padding needs no attention mask: with causal attention, padding after a position cannot
    change it. The output layer is left to the caller, for the positions it reads."""
    import torch

    width = max(len(s) for s in seqs)
    x = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = torch.tensor(s)
    return model.base_model(input_ids=x.to(next(model.parameters()).device)).last_hidden_state


def last_logits(model, seqs: list[list[int]], pad_id: int):
    """Next-token logits (fp32) after the last token of each sequence; only those positions go through
    the output layer."""
    import torch

    hidden = right_padded_hidden(model, seqs, pad_id)
    rows = torch.arange(len(seqs), device=hidden.device)
    last = torch.tensor([len(s) - 1 for s in seqs], device=hidden.device)
    return model.get_output_embeddings()(hidden[rows, last]).float()


def write_working(model, prefixes: list[list[int]], max_new: int, stop_id: int, pad_id: int) -> list[list[int]]:
    """What the model writes greedily after each prefix, up to `stop_id` (not included) or `max_new`
    tokens: one left-padded batch through `generate`, which takes each row's positions from the mask."""
    import torch

    width = max(len(p) for p in prefixes)
    x = torch.full((len(prefixes), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(x)
    for i, p in enumerate(prefixes):
        x[i, width - len(p) :], mask[i, width - len(p) :] = torch.tensor(p), 1
    device = next(model.parameters()).device
    y = model.generate(
        x.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new,
        do_sample=False,
        eos_token_id=stop_id,
        pad_token_id=pad_id,
    )
    out = []
    for row in y[:, width:].tolist():
        out.append(row[: row.index(stop_id)] if stop_id in row else row)
    return out


class Judge:
    """A loaded model answering pairs and claims; see the module docstring for what is guaranteed.
    `shards`: under a launcher, every process asks its share of the batches and gets all the answers
    (`touchstone.distributed.Shards`); the answers are those of one process."""

    def __init__(self, model, tokenizer, batch_size: int = 32, shards: Shards = ONE_PROCESS):
        self.model, self.tokenizer, self.batch_size, self.shards = model, tokenizer, batch_size, shards
        ensure_special_tokens(model, tokenizer)
        model.eval()
        ids = tokenizer.convert_tokens_to_ids
        self.ab = [ids(prompts.ANSWER_A), ids(prompts.ANSWER_B)]
        self.tf = [ids(prompts.ANSWER_TRUE), ids(prompts.ANSWER_FALSE)]
        self.max_len = context_length(model)
        self.working_first = bool(getattr(model.config, "touchstone_working_first", False))
        self.max_working = self.max_len // 4  # training keeps a derivation to a quarter of the context
        self.work_id, self.answer_id = ids(prompts.WORK), ids(prompts.ANSWER)

    @classmethod
    def load(cls, model_dir: str | Path, batch_size: int = 32) -> Judge:
        model, tokenizer = load_model(model_dir)
        return cls(model, tokenizer, batch_size)

    def _log_odds(self, texts: list[str], answers: list[int], progress: bool = False) -> list[tuple[float, str | None]]:
        """(log p(answers[0]) - log p(answers[1]), the working written first or None) after each text
        (a question ending in <|answer|>), in length-sorted batches."""
        import torch

        room = self.max_working + 1 if self.working_first else 0  # <|work|>, the working and <|answer|>
        seqs = [encode(self.tokenizer, t)[-(self.max_len - room) :] for t in texts]
        order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]), reverse=True)
        bar = progress_bar(len(seqs), "judge", progress)
        pad = self.tokenizer.pad_token_id

        def score(chunk: list[int]) -> list[tuple[float, str | None]]:
            asked, written = [seqs[i] for i in chunk], [None] * len(chunk)
            if self.working_first:
                prefixes = [s[:-1] + [self.work_id] for s in asked]
                workings = write_working(self.model, prefixes, self.max_working, self.answer_id, pad)
                asked = [p + w + [self.answer_id] for p, w in zip(prefixes, workings)]
                written = [self.tokenizer.decode(w) for w in workings]
            logp = torch.log_softmax(last_logits(self.model, asked, pad), dim=-1)[:, answers]
            bar.update(len(chunk))
            return list(zip((logp[:, 0] - logp[:, 1]).tolist(), written))

        with torch.inference_mode():
            out = self.shards.per_item(score, order, self.batch_size, len(seqs))
        bar.close()
        return out

    def pairs(self, records: list[dict], progress: bool = False, orders: bool = False) -> list[dict]:
        """{"choice", "p_a", "p_b"} for each record with `a`, `b` and optional `prompt`; with `orders`,
        also "orders": p(a is better) as read from each order alone, {"a_first", "b_first"} (how much
        the position sways the model: the two agree for a judge without position bias)."""
        texts = []
        for r in records:
            p = r.get("prompt") or ""
            texts += [prompts.pair_prompt(p, r["a"], r["b"]), prompts.pair_prompt(p, r["b"], r["a"])]
        asked = self._log_odds(texts, self.ab, progress)
        lo = [x for x, _ in asked]
        out = []
        for i in range(len(records)):
            # (a, b) asks "is the first better?", (b, a) asks it of b: its negation is a's log-odds.
            combined = (lo[2 * i] - lo[2 * i + 1]) / 2
            p_a, p_b = _sigmoid(combined), _sigmoid(-combined)
            out.append({"choice": "a" if p_a >= p_b else "b", "p_a": p_a, "p_b": p_b})
            if orders:
                out[-1]["orders"] = {"a_first": _sigmoid(lo[2 * i]), "b_first": _sigmoid(-lo[2 * i + 1])}
            if self.working_first:
                out[-1]["working"] = {"a_first": asked[2 * i][1], "b_first": asked[2 * i + 1][1]}
        return out

    def claims(self, records: list[dict], progress: bool = False, contrast=None) -> list[dict]:
        """{"choice": bool, "p_true", "p_false"} for each record with a `statement`.

        `contrast` (optional) maps a claim record to pair questions that set it against mutants of itself
        (`World.contrast`). A claim that gets any is read through the pair answer instead: p_true is the
        mean p(a) over its contrasts, each asked in both orders ("method": "contrast"). Why: a small
        judge learns to pick the working one of two functions long before it can judge one function
        alone (it has nothing to compare; the README's results), and a working function should beat its
        mutants while a broken one meets them as equals. The others are read from <|true|>/<|false|>
        ("method": "direct")."""
        asked = [contrast(r) if contrast is not None else [] for r in records]
        direct = [i for i, q in enumerate(asked) if not q]
        lo = self._log_odds([prompts.claim_prompt(records[i]["statement"]) for i in direct], self.tf, progress)
        out: list[dict] = [{}] * len(records)
        for i, (x, working) in zip(direct, lo):
            out[i] = {"choice": x >= 0, "p_true": _sigmoid(x), "p_false": _sigmoid(-x), "method": "direct"}
            if working is not None:
                out[i]["working"] = working
        flat = [(i, q) for i, qs in enumerate(asked) for q in qs]
        answers = self.pairs([q for _, q in flat], progress)
        wins: dict[int, list[float]] = {}
        for (i, _), v in zip(flat, answers):
            wins.setdefault(i, []).append(v["p_a"])
        for i, ps in wins.items():
            p = sum(ps) / len(ps)
            out[i] = {"choice": p >= 0.5, "p_true": p, "p_false": 1 - p, "method": "contrast", "contrasts": len(ps)}
        return out

    def pair(self, a: str, b: str, prompt: str = "", kind: str | None = None) -> dict:
        # `kind` is part of the record, not of the question the model sees; kept for the CLI's contract.
        return self.pairs([{"prompt": prompt, "a": a, "b": b, "kind": kind}])[0]

    def claim(self, statement: str) -> dict:
        return self.claims([{"statement": statement}])[0]

    def records(self, records: list[dict], progress: bool = False, contrast=None, orders: bool = False) -> list[dict]:
        """Judge a mixed list of pair and claim records, keeping their order (`contrast`: see `claims`,
        `orders`: see `pairs`)."""
        pi = [i for i, r in enumerate(records) if is_pair(r)]
        ci = [i for i, r in enumerate(records) if "a" not in r]
        out: list[dict] = [{}] * len(records)
        for i, v in zip(pi, self.pairs([records[i] for i in pi], progress, orders)):
            out[i] = v
        for i, v in zip(ci, self.claims([records[i] for i in ci], progress, contrast)):
            out[i] = v
        return out


class AsyncJudge:
    """`await aj.pair(...)` / `await aj.claim(...)` from many coroutines at once: questions that arrive
    together are answered in one batch, in a worker thread, so the event loop never blocks.

    A batch starts when the first waiting question has waited `max_wait` seconds or `max_batch` questions
    are waiting, whichever comes first; questions that arrive while a batch runs form the next one. After
    a batch of one question nobody is waiting to share the next, so that one starts at once: a lone
    client pays no wait (measured: 50 against 36 requests/s at one client, benchmarks/bench_serve.py).
    `max_batch=1` answers one question per forward pass (the benchmark's peer). A caller that stops
    waiting (a timeout) loses only its own answer. `orders`: pair answers carry each order's reading
    (`Judge.pairs`)."""

    def __init__(self, judge: Judge, max_wait: float = 0.0, max_batch: int | None = None, orders: bool = False):
        self.judge = judge
        self.orders = orders
        self.max_wait = max_wait
        self.max_batch = max_batch or 4 * judge.batch_size
        self._pending: list[tuple[dict, asyncio.Future]] = []
        self._running = False
        self._full = asyncio.Event()
        self._last_batch = 0  # questions in the batch answered last

    async def pair(self, a: str, b: str, prompt: str = "") -> dict:
        return await self._submit({"prompt": prompt, "a": a, "b": b})

    async def claim(self, statement: str) -> dict:
        return await self._submit({"statement": statement})

    async def _submit(self, record: dict) -> dict:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((record, future))
        if len(self._pending) >= self.max_batch:
            self._full.set()
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # let every coroutine that is ready queue its question first
        try:
            while self._pending:
                if self.max_wait > 0 and self._last_batch > 1 and len(self._pending) < self.max_batch:
                    self._full.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self.max_wait)
                batch = [(r, f) for r, f in self._pending[: self.max_batch] if not f.done()]
                del self._pending[: self.max_batch]
                if not batch:
                    continue
                self._last_batch = len(batch)
                try:
                    results = await asyncio.to_thread(self.judge.records, [r for r, _ in batch], orders=self.orders)
                except Exception as e:  # noqa: BLE001 - hand the failure to every waiting caller
                    for _, f in batch:
                        if not f.done():
                            f.set_exception(e)
                    continue
                for (_, f), r in zip(batch, results):
                    if not f.done():  # its caller may have given up meanwhile
                        f.set_result(r)
        finally:
            self._running = False


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))
