"""The contract every world keeps.

A world is a domain where truth can be checked by a tool. It can
- `sample(rng)`: draw a fresh item (a plain JSON-able dict);
- `mutate(item, rng)`: turn an item into a contrasting version (usually a worse or false one);
- `verify(item)`: check an item with the world's tool and return a `Verdict`;
- `render(rng, n)`: turn verified items into pair and claim records.

The same `verify` serves evaluation, synthesis and data linting, so the metric and the training
signal cannot drift apart.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any


def record_text(rec: dict) -> list[str]:
    """The texts of a pair (prompt, a, b) or claim (statement) record."""
    return [rec[k] for k in ("prompt", "a", "b", "statement") if rec.get(k)]


@dataclass
class Verdict:
    ok: bool  # the item is correct / true / passes
    score: float  # a graded measure where the world has one (L/D, distance, fraction of tests passed)
    reason: str  # a short machine-readable status: "pass", "wrong_answer", "syntax_error", ...
    evidence: dict[str, Any] = field(default_factory=dict)  # what a person would want to see

    def to_dict(self) -> dict:
        return asdict(self)


class World:
    """Base class; subclasses set `name` and implement the four methods."""

    name: str = ""
    version: int = 1  # bump when sampling, rendering or verification changes (held-out suites key on it)
    split: str = "train"  # "heldout" or "gate" renders only the reserved items (touchstone.synth.in_split)

    def sample(self, rng: random.Random) -> dict:
        raise NotImplementedError

    def mutate(self, item: dict, rng: random.Random) -> dict:
        raise NotImplementedError

    def verify(self, item: dict) -> Verdict:
        raise NotImplementedError

    def render(self, rng: random.Random, n: int) -> list[dict]:
        """n verified pair/claim records (see touchstone.records); each carries its verdict."""
        raise NotImplementedError

    def verify_record(self, record: dict) -> Verdict:
        """Does a pair or claim record's label agree with the tool? Read from the record's own text."""
        raise NotImplementedError

    def contrast(self, record: dict, rng: random.Random, k: int) -> list[dict]:
        """Up to k pair questions {"prompt", "a", "b"} setting a claim record's own version (a) against
        mutants of it (b), written without knowing whether the claim is true, so the judge may use them
        (see `touchstone.judge.Judge.claims`). Empty where the world cannot: its mutations need the truth
        (numbers computes the right sum to miss it, facts looks up the right capital)."""
        return []

    def texts(self, rng: random.Random, n: int) -> list[str]:
        """The text of about n records, for tokenizer training (`touchstone.tokenizer.world_texts`): the
        questions and versions exactly as `render` writes them. Worlds whose tool is slow write the
        same templates without running it."""
        return [part for rec in self.render(rng, n) for part in record_text(rec)]

    def verify_many(self, objs: list[dict]) -> list[Verdict]:
        """Records or raw items, in order; worlds with an expensive tool override this to fan out."""
        return [self.verify_record(o) if ("a" in o or "statement" in o) else self.verify(o) for o in objs]
