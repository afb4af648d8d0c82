"""The contract every world keeps.

A world is a domain where truth can be checked by a tool. It can
- `sample(rng)`: draw a fresh item (a plain JSON-able dict);
- `mutate(item, rng)`: turn an item into a contrasting version (usually a worse or false one);
- `verify(item)`: check an item with the world's tool and return a `Verdict`;
- `render(rng, n)`: turn verified items of its split into pair and claim records (`record` writes one);
- `verify_record(record)`: check a record's label against the tool, from the record's own text.

What the rest of Touchstone needs to know about one world is asked of it here, never decided by its
name elsewhere: which items it may train on (`in_split`, `touchstone.worlds.splits`), the size of its
held-out suite and any further suites (`suite_size`, `extra_suites`), whether it reads a corpus
(`reads_corpus`), what the champion can write for it (`champion_prompts`, `champion_records`) and how
its existing records grow new ones (`grower`).

The same `verify` serves evaluation, synthesis and data linting, so the metric and the training
signal cannot drift apart.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from touchstone.records import is_judged
from touchstone.worlds import splits


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


def agreement(agree: bool, evidence: dict, score: float | None = None, reason: str = "agrees") -> Verdict:
    """The verdict on a record's label: ok when it agrees with the tool (score 1/0 unless given)."""
    return Verdict(agree, float(agree) if score is None else score, reason if agree else "label_disagrees", evidence)


def claim_agreement(record: dict, v: Verdict) -> Verdict:
    """Does a claim's label agree with the tool's verdict `v` on its statement?"""
    return agreement(v.ok == bool(record["label"]), {"statement_is": v.ok, **v.evidence})


def pair_agreement(record: dict, va: Verdict, vb: Verdict, evidence: dict) -> Verdict:
    """Does a pair's label name the one side the tool accepts? "ambiguous" when both or neither pass."""
    if va.ok == vb.ok:
        return Verdict(False, 0.0, "ambiguous", evidence)
    return agreement(record["label"] == ("a" if va.ok else "b"), evidence)


def verified_evidence(record: dict) -> dict | None:
    """The evidence of the verdict a record was verified with, when that verdict agrees with its label;
    None for a record never verified (or one whose label the tool rejected)."""
    verdict = record.get("verdict")
    if not isinstance(verdict, dict) or verdict.get("ok") is not True or not isinstance(verdict.get("evidence"), dict):
        return None
    return verdict["evidence"]


def ordered(label: str, right, wrong) -> tuple:
    """(a, b): the right version on the side `label` names."""
    return (right, wrong) if label == "a" else (wrong, right)


# What `Grower.grow` returns for a candidate it made but labels later, in one batch (`Grower.finish`).
LATER = object()


class Grower:
    """One pass of mutations over a world's existing records (`touchstone.grow.mutate_records`)."""

    def takes(self, record: dict) -> bool:
        """Is this record one the world can mutate into a new candidate?"""
        raise NotImplementedError

    def grow(self, record: dict):
        """A new candidate record, None when this record gives none, or `LATER`; a ValueError when no
        mutation applies or the record's text is not one this world writes."""
        raise NotImplementedError

    def finish(self) -> list[dict]:
        """The candidates `grow` answered `LATER` for, labelled together."""
        return []


class World:
    """Base class; subclasses set `name` and implement sample, mutate, verify, verify_record and
    `record` (or `render` itself, where the tool runs in batches)."""

    name: str = ""
    version: int = 1  # bump when sampling, rendering or verification changes (held-out suites key on it)
    split: str = "train"  # "heldout" or "gate" renders only the reserved items (`in_split`)
    # Records in the world's held-out suite. 600 because the loop's measured gains are a few points, and
    # the paired 95% interval of a gain over six worlds of 300 was about as wide as the gains.
    suite_size: int = 600
    extra_suites: ClassVar[dict[str, str]] = {}  # further held-out suites of this world: suite name -> split
    reads_corpus: bool = False  # made with `source=` a corpus (`touchstone.worlds.get_world(corpus=...)`)
    # Whether `verify_record` can answer a question a person typed, from its text alone (the web app's
    # tool verdict beside the judge's); language cannot: it needs the provenance its own records carry.
    reads_typed_questions: bool = True
    champion_tokens: int = 0  # tokens the champion writes per sample, where it can write one (`champion_prompts`)

    def sample(self, rng: random.Random) -> dict:
        raise NotImplementedError

    def mutate(self, item: dict, rng: random.Random) -> dict:
        raise NotImplementedError

    def verify(self, item: dict) -> Verdict:
        raise NotImplementedError

    def inputs(self) -> tuple:
        """What this world's records depend on besides its code and `version` (a corpus, a data file):
        suites made from other inputs are other suites."""
        return ()

    def in_split(self, item: dict) -> bool:
        """Is `item` one this world's split may render? (`touchstone.worlds.splits`)"""
        return splits.in_split(self, item)

    def record(self, item: dict, rng: random.Random) -> dict | None:
        """One pair or claim record about `item` (its verdict is `render`'s to add), or None for none."""
        raise NotImplementedError

    def render(self, rng: random.Random, n: int) -> list[dict]:
        """n records of items in this world's split (see touchstone.records), each re-verified from its own
        text; a record the tool does not confirm is dropped."""
        out = []
        while len(out) < n:
            item = self.sample(rng)
            if not self.in_split(item):
                continue
            rec = self.record(item, rng)
            if rec is None:
                continue
            rec["verdict"] = self.verify_record(rec).to_dict()
            if rec["verdict"]["ok"]:
                out.append(rec)
        return out

    def verify_record(self, record: dict) -> Verdict:
        """Does a pair or claim record's label agree with the tool? Read from the record's own text."""
        raise NotImplementedError

    def contrast(self, record: dict, rng: random.Random, k: int) -> list[dict]:
        """Up to k pair questions {"prompt", "a", "b"} setting a claim record's own version (a) against
        mutants of it (b), written without knowing whether the claim is true, so the judge may use them
        (see `touchstone.judge.Judge.claims`). Empty where the world cannot: its mutations need the truth
        (numbers computes the right sum to miss it, facts looks up the right capital)."""
        return []

    def derivation(self, record: dict) -> str | None:
        """The working the world's tool does to reach a pair or claim record's answer, in words (where two
        numbers first differ), computed from the record's own text; None where the world writes none.
        Fine-tuning trains the judge to write it after its answer token (`FinetuneConfig.derivation_weight`),
        where the answer position never sees it, or before (`FinetuneConfig.working_first`), where the
        judge writes its own before it answers."""
        return None

    def texts(self, rng: random.Random, n: int) -> list[str]:
        """The text of about n records, for tokenizer training (`touchstone.tokenizer.world_texts`): the
        questions and versions exactly as `render` writes them. Worlds whose tool is slow write the
        same templates without running it."""
        return [part for rec in self.render(rng, n) for part in record_text(rec)]

    def verify_many(self, objs: list[dict]) -> list[Verdict]:
        """Records or raw items, in order; worlds with an expensive tool override this to fan out."""
        return [self.verify_record(o) if is_judged(o) else self.verify(o) for o in objs]

    # ------------------------------------------------------------------------------- growing
    def champion_prompts(self, rng: random.Random, n: int) -> tuple[list[str], list[dict]]:
        """(prompts, items): n beginnings the champion completes, and the items they come from; none
        where the world has no sample a small model can write and the tool can check in one step."""
        return [], []

    def champion_records(
        self, items: list[dict], prompts: list[str], completions: list[str], rng: random.Random, source: str
    ) -> tuple[list[dict], int]:
        """(records labelled by the tool, completions that could not be read) from what the champion
        wrote after each of `champion_prompts`."""
        return [], 0

    def grower(self, rng: random.Random, generation: int) -> Grower | None:
        """A pass of mutations over this world's existing records, or None where it has none."""
        return None
