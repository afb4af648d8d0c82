"""New candidates beyond the worlds' own generators: the champion's samples, and mutations of records
the workspace already holds. Every candidate still goes through its world's verifier before it can
enter data/new; here they are only proposed.

The champion's own samples (so that the model's output becomes training material once checked):
- numbers: the champion completes "X plus Y is" / "X times Y is"; the completed sentence is parsed and
  checked exactly, and becomes a claim labelled by the arithmetic (true or false, whichever it was);
- code: the champion writes the body of a template function from its signature; the sandbox runs it
  against the template's tests. The result becomes a claim ("this function passes its tests", labelled
  by the sandbox), and when it fails, a pair of the reference against the champion's version.
The other worlds have no sample the champion can write and a tool can check in one step (a wing design
or a colour needs structured output a small model does not produce), so they grow by mutation only.

Mutations of existing records: a numbers or code claim is parsed back into its item and mutated by its
world (a near-miss result, a broken function); a language pair's original sentence gets a fresh
corruption. Held-out items stay out: every grown record's primary item is checked with `in_split`.
"""

from __future__ import annotations

import random

from touchstone.records import claim_record, pair_record
from touchstone.synth import in_split


def _complete(model, tokenizer, prompts: list[str], max_new_tokens: int, seed: int) -> list[str]:
    """One sampled continuation per prompt (temperature 0.8): varied enough to be right and wrong."""
    from touchstone.generate import sample

    return [sample(model, tokenizer, p, max_new_tokens=max_new_tokens, temperature=0.8, n=1, seed=seed + i)[0]
            for i, p in enumerate(prompts)]


def champion_numbers(model, tokenizer, rng: random.Random, n: int, source: str) -> tuple[list[dict], int]:
    """(claims from the champion's completed sums and products, count of unparseable completions)."""
    from touchstone.worlds.numbers import NumbersWorld, parse_statement, say

    world = NumbersWorld()
    items = []
    while len(items) < n:
        item = world.sample(rng)
        if item["op"] in ("sum", "product") and in_split(world, item):
            items.append(item)
    prompts = []
    for item in items:
        verb = "plus" if item["op"] == "sum" else "times"
        text = f"{say(item['x'], item['words'])} {verb} {say(item['y'], item['words'])} is"
        prompts.append(text[0].upper() + text[1:])
    out, unparseable = [], 0
    for item, prompt, completion in zip(items, prompts, _complete(model, tokenizer, prompts, 8, rng.randrange(2**31))):
        answer = completion.split("\n")[0].split(".")[0].strip()
        sentence = f"{prompt} {answer}."
        try:
            claimed = parse_statement(sentence)
        except ValueError:
            unparseable += 1
            continue
        ok = world.verify(claimed).ok
        out.append(claim_record(sentence, ok, world="numbers", kind=item["op"], source=source))
    return out, unparseable


def _function_body(signature: str, completion: str) -> str:
    """The champion's function: the signature and the indented lines that follow it."""
    lines = []
    for line in completion.split("\n"):
        if line.strip() and not line.startswith((" ", "\t")):
            break
        lines.append(line)
    return signature + "\n" + "\n".join(lines).rstrip() + "\n"


def champion_code(model, tokenizer, rng: random.Random, n: int, source: str) -> list[dict]:
    """Claims (and pairs, for failures) from functions the champion wrote, labelled by the sandbox."""
    from touchstone.worlds.code import CLAIM, PAIR_PROMPT, CodeWorld

    world = CodeWorld()
    items = [it for it in world.sample_many(rng, n) if in_split(world, it)]
    signatures = [it["completion"].split("\n")[0] for it in items]
    completions = _complete(model, tokenizer, [s + "\n" for s in signatures], 64, rng.randrange(2**31))
    written = [{**it, "completion": _function_body(sig, c)} for it, sig, c in zip(items, signatures, completions)]
    out = []
    for item, mine, verdict in zip(items, written, world.verify_many(written)):
        name, test = item["entry_point"], item["test"]
        kind = f"{name}:champion"
        out.append(claim_record(CLAIM.format(code=mine["completion"].rstrip("\n"), name=name, test=test),
                                verdict.ok, world="code", kind=kind, source=source))
        if not verdict.ok:
            label = rng.choice("ab")
            a, b = (item["completion"], mine["completion"]) if label == "a" else (mine["completion"], item["completion"])
            out.append(pair_record(PAIR_PROMPT.format(name=name, test=test), a, b, label, world="code", kind=kind,
                                   source=source))
    return out


def mutate_records(records: list[dict], rng: random.Random, n: int, generation: int, worlds: dict) -> list[dict]:
    """Up to n new candidates, each a mutation of an existing numbers/code claim or language pair;
    `worlds` maps names to the World objects to use (the language world knows its corpus)."""
    from touchstone.worlds.numbers import parse_statement, statement

    from touchstone.worlds.language import WordBalance

    code_claims = []  # (item, mutant, parent id): labelled together by one sandbox batch below
    balance = WordBalance()  # language mutations keep their words balanced, as the world's render does
    usable = [r for r in records if r["world"] in worlds and ((r["world"] in ("numbers", "code") and "statement" in r)
                                                          or (r["world"] == "language" and "a" in r))]
    out = []
    for rec in rng.sample(usable, min(len(usable), 2 * n)):
        if len(out) >= n:
            break
        world = worlds[rec["world"]]
        try:
            if rec["world"] == "numbers":
                item = parse_statement(rec["statement"])
                if not in_split(world, item):
                    continue
                new = world.mutate(item, rng)
                out.append(claim_record(statement(new), world.verify(new).ok, world="numbers", kind=item["op"],
                                        source="mutation", parent=rec["id"], generation=generation))
            elif rec["world"] == "code":
                (item,) = world.items_of_record(rec)
                code_claims.append((item, world.mutate(item, rng), rec["id"]))
                out.append(None)  # placeholder, so that `n` counts code claims too
            else:
                from touchstone.worlds.language import PAIR_PROMPT

                original = rec[rec["label"]]
                if "choices" in ((rec.get("verdict") or {}).get("evidence") or {}):
                    continue  # a grammar pair: its good side is no corpus sentence to corrupt afresh
                if not in_split(world, {"original": original}):
                    continue
                bad = world.mutate({"text": original, "original": original, "op": None}, rng, allow=balance.allows)
                if bad["text"] == rec["b" if rec["label"] == "a" else "a"]:
                    continue  # the same corruption again: nothing new
                balance.add(original, bad["text"])
                label = rng.choice("ab")
                a, b = (original, bad["text"]) if label == "a" else (bad["text"], original)
                new_rec = pair_record(PAIR_PROMPT, a, b, label, world="language", kind="grammatical",
                                      source=rec.get("source") or "", parent=rec["id"], generation=generation)
                # The language verifier checks a record against its recorded original and corruption.
                new_rec["verdict"] = {"evidence": {"original": original, "corrupted": bad["text"], "op": bad["op"]}}
                out.append(new_rec)
        except ValueError:
            continue  # no mutation applies, or the record's text is not one this world writes
    out = [r for r in out if r is not None]
    if code_claims:
        from touchstone.worlds.code import CLAIM

        mutants = [m for _, m, _ in code_claims]
        for (item, new, parent), v in zip(code_claims, worlds["code"].verify_many(mutants)):
            text = CLAIM.format(code=new["completion"].rstrip("\n"), name=item["entry_point"], test=item["test"])
            out.append(claim_record(text, v.ok, world="code", kind=f"{item['entry_point']}:{new['mutation']}",
                                    source="mutation", parent=parent, generation=generation))
    return out
