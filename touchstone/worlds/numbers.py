"""Numbers: comparisons, sums, products and orderings, written in digits or in English words.

Items are plain dicts, e.g. {"op": "larger", "x": 81, "y": 53, "words": true} ("eighty-one is larger
than fifty-three") or {"op": "sum", "x": 37, "y": 45, "claimed": 82, "words": false} ("37 plus 45 is
82"). Verification is exact integer arithmetic on the parsed numbers.

Guaranteed: every rendered record is re-verified from its own text (`verify_record` parses the words
or digits back), so a record whose label disagrees with the arithmetic is caught.
Not covered: negative numbers, fractions, numbers of a million or more in words.
The number words are in `touchstone.worlds.number_words`.
"""

from __future__ import annotations

import random
import re

from touchstone.records import claim_record, is_pair, pair_record
from touchstone.worlds.base import (
    Grower,
    Verdict,
    World,
    agreement,
    claim_agreement,
    ordered,
)
from touchstone.worlds.number_words import MAX_WORDS, parse_number, to_words

OPS = ("larger", "smaller", "sum", "product", "order")


def say(n: int, words: bool) -> str:
    return to_words(n) if words else str(n)


def statement(item: dict) -> str:
    """The item as one English sentence."""
    text = _statement(item)
    return text[0].upper() + text[1:]


def _statement(item: dict) -> str:
    w = item.get("words", False)
    op = item["op"]
    if op in ("larger", "smaller"):
        return f"{say(item['x'], w)} is {op} than {say(item['y'], w)}."
    if op in ("sum", "product"):
        verb = "plus" if op == "sum" else "times"
        return f"{say(item['x'], w)} {verb} {say(item['y'], w)} is {say(item['claimed'], w)}."
    return ", ".join(say(v, w) for v in item["values"]) + " are in increasing order."


CLAIM_PATTERNS = [
    (re.compile(r"(?P<x>.+) is (?P<op>larger|smaller) than (?P<y>.+)\."), None),
    (re.compile(r"(?P<x>.+) (?P<op>plus|times) (?P<y>.+) is (?P<claimed>.+)\."), None),
    (re.compile(r"(?P<values>.+) are in increasing order\."), "order"),
]


def parse_statement(text: str) -> dict:
    """The inverse of `statement`; ValueError when the text is not one of its forms."""
    for pattern, op in CLAIM_PATTERNS:
        m = pattern.fullmatch(text.strip())
        if not m:
            continue
        g = m.groupdict()
        words = not any(ch.isdigit() for ch in text)
        if op == "order":
            return {"op": "order", "values": [parse_number(v) for v in g["values"].split(",")], "words": words}
        item = {
            "op": {"plus": "sum", "times": "product"}.get(g["op"], g["op"]),
            "x": parse_number(g["x"]),
            "y": parse_number(g["y"]),
            "words": words,
        }
        if "claimed" in g:
            item["claimed"] = parse_number(g["claimed"])
        return item
    raise ValueError(f"not a numbers statement: {text!r}")


def truth(item: dict) -> int | bool:
    op = item["op"]
    if op == "order":
        return sorted(item["values"]) == item["values"] and len(set(item["values"])) == len(item["values"])
    if op not in OPS:
        raise ValueError(f"unknown op {op!r} (choose from {', '.join(OPS)})")
    x, y = item["x"], item["y"]
    if op == "larger":
        return x > y
    if op == "smaller":
        return x < y
    if op == "sum":
        return x + y
    return x * y


# Pair questions: the prompt asks, a and b answer.
PAIR_PROMPTS = {
    "larger": "Which number is larger?",
    "smaller": "Which number is smaller?",
    "order": "Which list is in increasing order?",
}
PAIR_PROMPT_RE = re.compile(r"What is (?P<x>.+) (?P<op>plus|times) (?P<y>.+)\?")


def comparison(x: int, y: int) -> str:
    """Where two numbers part: their lengths, or the first digit at which they differ."""
    sx, sy = str(x), str(y)
    if len(sx) != len(sy):
        return f" {x} has {digits(len(sx))} and {y} has {len(sy)}."
    i = next(k for k in range(len(sx)) if sx[k] != sy[k])
    return f" {x} and {y} have {digits(len(sx))} each and first differ at digit {i + 1}: {sx[i]} against {sy[i]}."


def digits(n: int) -> str:
    return f"{n} digit" + ("s" if n != 1 else "")


def working(op: str, texts: list[str]) -> str:
    """The derivation of a record about the numbers written as `texts`: numbers in words are first given
    in digits; then for a comparison where the two numbers part (`comparison`), for a sum or product its
    value, for an order the list sorted. A ValueError when a text is not a number."""
    values = [parse_number(t) for t in texts]
    out = "".join(f" {t.strip()} is {v}." for t, v in zip(texts, values) if t.strip() != str(v))
    if op in ("larger", "smaller"):
        x, y = values
        return out + (comparison(x, y) if x != y else f" {x} and {y} are equal.")
    if op == "sum":
        return out + f" {values[0]} + {values[1]} = {values[0] + values[1]}."
    if op == "product":
        return out + f" {values[0]} * {values[1]} = {values[0] * values[1]}."
    return out + " In increasing order: " + ", ".join(map(str, sorted(values))) + "."


def number_texts(record: dict) -> tuple[str, list[str]]:
    """(op, the numbers as written) of a pair or claim record of this world; a ValueError for other text.
    For an order pair, the numbers of version a (version b holds the same ones)."""
    if not is_pair(record):
        for pattern, op in CLAIM_PATTERNS:
            m = pattern.fullmatch(record["statement"].strip())
            if m and op == "order":
                return "order", m["values"].split(",")
            if m:
                return {"plus": "sum", "times": "product"}.get(m["op"], m["op"]), [m["x"], m["y"]]
        raise ValueError("not a numbers statement")
    m = PAIR_PROMPT_RE.fullmatch(record["prompt"])
    if m:
        return ("sum" if m["op"] == "plus" else "product"), [m["x"], m["y"]]
    if record["prompt"] == PAIR_PROMPTS["order"]:
        return "order", record["a"].split(",")
    for op in ("larger", "smaller"):
        if record["prompt"] == PAIR_PROMPTS[op]:
            return op, [record["a"], record["b"]]
    raise ValueError("not a numbers question")


class NumbersWorld(World):
    name = "numbers"
    version = 1

    def sample(self, rng: random.Random) -> dict:
        op = rng.choice(OPS)
        words = rng.random() < 0.5
        top = rng.choice([20, 100, 1000, 100_000])
        x, y = rng.randint(0, top), rng.randint(0, top)
        while x == y:
            y = rng.randint(0, top)
        if op in ("larger", "smaller"):
            x, y = (max(x, y), min(x, y)) if op == "larger" else (min(x, y), max(x, y))
            return {"op": op, "x": x, "y": y, "words": words}
        if op == "sum":
            return {"op": op, "x": x, "y": y, "claimed": x + y, "words": words}
        if op == "product":
            x, y = x % 1000, y % 1000  # keep products below a million so they have words
            return {"op": op, "x": x, "y": y, "claimed": x * y, "words": words}
        values = sorted(rng.sample(range(top + 5), rng.randint(3, 5)))
        return {"op": "order", "values": values, "words": words}

    def mutate(self, item: dict, rng: random.Random) -> dict:
        """The contrasting item: operands swapped, a near-miss result, or two list entries swapped."""
        item = dict(item)
        if item["op"] in ("larger", "smaller"):
            item["x"], item["y"] = item["y"], item["x"]
        elif item["op"] in ("sum", "product"):
            true = truth(item)
            # Near misses a careless reader would accept: off by one, by ten, or one digit changed.
            choices = [true + 1, true - 1, true + 10, true - 10, true + 100]
            if true >= 10:
                digits = list(str(true))
                i = rng.randrange(len(digits))
                digits[i] = str((int(digits[i]) + rng.randint(1, 9)) % 10)
                if digits[0] != "0":
                    choices.append(int("".join(digits)))
            item["claimed"] = rng.choice([c for c in choices if 0 <= c <= MAX_WORDS and c != true])
        else:
            values = list(item["values"])
            i, j = sorted(rng.sample(range(len(values)), 2))
            values[i], values[j] = values[j], values[i]
            item["values"] = values
        return item

    def contrast(self, record: dict, rng: random.Random, k: int) -> list[dict]:
        """A comparison claim as the pair question it restates: "x is larger than y." is "Which number
        is larger?" with x as a and y as b, whose answer is a exactly when the claim holds. Made from the
        claim's text alone, so it is blind to the claim's truth. Sums, products and orders have no such
        restatement: a mutant of a false one is as false as it is, and the judge meets two wrong versions
        as equals, so those claims are read directly."""
        try:
            item = parse_statement(record["statement"])
        except (KeyError, ValueError):
            return []
        if item["op"] not in ("larger", "smaller") or k < 1:
            return []
        w = item["words"]
        return [{"prompt": PAIR_PROMPTS[item["op"]], "a": say(item["x"], w), "b": say(item["y"], w)}]

    def verify(self, item: dict) -> Verdict:
        true = truth(item)
        if item["op"] in ("sum", "product"):
            ok = item["claimed"] == true
            return Verdict(
                ok, float(ok), "correct" if ok else "wrong_answer", {"claimed": item["claimed"], "actual": true}
            )
        return Verdict(
            bool(true),
            float(true),
            "correct" if true else "false",
            {k: item[k] for k in ("x", "y", "values") if k in item},
        )

    # ------------------------------------------------------------------------------------ records
    def _pair(self, item: dict, rng: random.Random) -> tuple[str, str, str]:
        """(prompt, correct answer, wrong answer) for the item."""
        w = item["words"]
        op = item["op"]
        if op in ("larger", "smaller"):
            return PAIR_PROMPTS[op], say(item["x"], w), say(item["y"], w)
        if op in ("sum", "product"):
            verb = "plus" if op == "sum" else "times"
            wrong = self.mutate(item, rng)["claimed"]
            return f"What is {say(item['x'], w)} {verb} {say(item['y'], w)}?", say(truth(item), w), say(wrong, w)
        right = ", ".join(say(v, w) for v in item["values"])
        wrong = ", ".join(say(v, w) for v in self.mutate(item, rng)["values"])
        return PAIR_PROMPTS["order"], right, wrong

    def record(self, item: dict, rng: random.Random) -> dict:
        """Half pairs and half claims."""
        if rng.random() < 0.5:
            prompt, right, wrong = self._pair(item, rng)
            label = rng.choice("ab")
            a, b = ordered(label, right, wrong)
            return pair_record(prompt, a, b, label, world=self.name, kind=item["op"], source="numbers")
        shown = item if rng.random() < 0.5 else self.mutate(item, rng)
        return claim_record(statement(shown), self.verify(shown).ok, world=self.name, kind=item["op"], source="numbers")

    def verify_record(self, record: dict) -> Verdict:
        """Does the record's label agree with the arithmetic? Parses the record's own text."""
        try:
            if not is_pair(record):
                return claim_agreement(record, self.verify(parse_statement(record["statement"])))
            prompt, a, b = record["prompt"], record["a"], record["b"]
            m = PAIR_PROMPT_RE.fullmatch(prompt)
            if m:
                x, y = parse_number(m["x"]), parse_number(m["y"])
                true = x + y if m["op"] == "plus" else x * y
                right = {"a": parse_number(a) == true, "b": parse_number(b) == true}
                evidence = {"actual": true}
            elif prompt == PAIR_PROMPTS["order"]:
                right = {
                    k: truth({"op": "order", "values": [parse_number(v) for v in s.split(",")]})
                    for k, s in (("a", a), ("b", b))
                }
                evidence = {}
            elif prompt in (PAIR_PROMPTS["larger"], PAIR_PROMPTS["smaller"]):
                xa, xb = parse_number(a), parse_number(b)
                bigger = xa > xb if prompt == PAIR_PROMPTS["larger"] else xa < xb
                right = {"a": bigger, "b": not bigger and xa != xb}
                evidence = {"a": xa, "b": xb}
            else:
                raise ValueError(f"unknown question {prompt!r}")
        except (ValueError, KeyError, TypeError) as e:
            return Verdict(False, 0.0, "unparseable", {"error": str(e)})
        if right["a"] == right["b"]:
            return Verdict(False, 0.0, "ambiguous", {**evidence, "a_correct": right["a"], "b_correct": right["b"]})
        expected = "a" if right["a"] else "b"
        return agreement(record["label"] == expected, {**evidence, "correct": expected})

    def derivation(self, record: dict) -> str | None:
        """The arithmetic behind the answer, from the record's own text (`working`)."""
        try:
            op, texts = number_texts(record)
            return working(op, texts)
        except (KeyError, ValueError):
            return None

    # ------------------------------------------------------------------------------------ growing
    champion_tokens = 8

    def champion_prompts(self, rng: random.Random, n: int) -> tuple[list[str], list[dict]]:
        """ "X plus Y is" / "X times Y is" for n sums and products of the training split."""
        items = []
        while len(items) < n:
            item = self.sample(rng)
            if item["op"] in ("sum", "product") and self.in_split(item):
                items.append(item)
        prompts = []
        for item in items:
            verb = "plus" if item["op"] == "sum" else "times"
            text = f"{say(item['x'], item['words'])} {verb} {say(item['y'], item['words'])} is"
            prompts.append(text[0].upper() + text[1:])
        return prompts, items

    def champion_records(
        self, items: list[dict], prompts: list[str], completions: list[str], rng: random.Random, source: str
    ) -> tuple[list[dict], int]:
        """Each completed sentence parsed and checked exactly: a claim labelled by the arithmetic (true or
        false, whichever it was)."""
        out, unparseable = [], 0
        for item, prompt, completion in zip(items, prompts, completions):
            answer = completion.split("\n")[0].split(".")[0].strip()
            sentence = f"{prompt} {answer}."
            try:
                claimed = parse_statement(sentence)
            except ValueError:
                unparseable += 1
                continue
            out.append(claim_record(sentence, self.verify(claimed).ok, world=self.name, kind=item["op"], source=source))
        return out, unparseable

    def grower(self, rng: random.Random, generation: int) -> Grower:
        return _ClaimMutations(self, rng, generation)


class _ClaimMutations(Grower):
    """A numbers claim parsed back into its item and mutated (a near-miss result, swapped operands)."""

    def __init__(self, world: NumbersWorld, rng: random.Random, generation: int):
        self.world, self.rng, self.generation = world, rng, generation

    def takes(self, record: dict) -> bool:
        return not is_pair(record)

    def grow(self, record: dict) -> dict | None:
        item = parse_statement(record["statement"])
        if not self.world.in_split(item):
            return None
        new = self.world.mutate(item, self.rng)
        return claim_record(
            statement(new),
            self.world.verify(new).ok,
            world=self.world.name,
            kind=item["op"],
            source="mutation",
            parent=record["id"],
            generation=self.generation,
        )
