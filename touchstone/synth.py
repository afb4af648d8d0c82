"""Synthesis and verification across worlds, and the held-out suites that training never sees.

    touchstone synth numbers --n 1000 --out numbers.jsonl   # verified pair and claim records
    touchstone verify wing designs.jsonl                     # one JSON verdict per item or record

Held-out suites and gate sets. Each world reserves two slices of its item space: the sha256 of (world
name, canonical item) picks one of `HELDOUT_EVERY` buckets (`in_split`); bucket 0 is "heldout", bucket 1
is "gate", the rest is "train". A world whose `split` is "train" (the default) only renders train items;
`heldout_suite` renders heldout items from a fixed seed; the loop draws each generation's gate set from
gate items. So a training record never shares its primary item (the same sentence, fact, colour, design
or sum) with a suite or a gate record, not only its id: the gate measures what the suites measure,
judging unseen items, rather than recall of colours trained on under another wording. Facts are the
exception: knowledge cannot be judged unseen, so the facts world teaches every fact but one bucket
(`touchstone.worlds.facts.UNTAUGHT_BUCKET`) and its suite and gate ask taught facts in phrasings no
training record uses; `EXTRA_SUITES` names the untaught facts' own suite. `synth` also drops any record
whose id is in the suite, for worlds that do not partition their items.

Guaranteed: `synth` writes atomically and only records whose verdict agrees with their label; every
malformed input line is a one-line `UserError` naming file:line. A suite is deterministic for a given
world version (and, for language, a given corpus); its version number is the world's.
Not guaranteed: that a contrasting item made by `mutate` is itself unreserved (it is never the
primary item of a record, so it cannot make two records equal).
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from pathlib import Path
from typing import Iterator

from touchstone.errors import UserError
from touchstone.files import check_output, read_jsonl, write_jsonl_atomic
from touchstone.records import parse_label

HELDOUT_SEED = 7_000_003  # reserved: never used for training synthesis
HELDOUT_EVERY = 8  # one item in eight is reserved for the held-out suites, one for gate sets
SPLIT_BUCKETS = {"heldout": 0, "gate": 1}  # every other bucket is "train"
# Records per suite. 600 because the loop's measured gains are a few points: with 300 per world (1,700
# over six worlds) the paired 95% interval of the champion's gain over generation 0 was +-3.4 points, and
# two 5-generation runs measured +3.4 and +3.5, each with an interval that touched zero. Wing is
# smaller because each design runs the solver twice.
SUITE_SIZE = {"wing": 400}
DEFAULT_SUITE_SIZE = 600


def bucket(world, item) -> int:
    """Which of the `HELDOUT_EVERY` buckets `item` falls in: a hash of the world's name and the item."""
    key = json.dumps(item, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{world.name}\0{key}".encode("utf-8")).hexdigest()
    return int(digest[:8], 16) % HELDOUT_EVERY


def in_split(world, item) -> bool:
    """Is `item` in this world's split ("train", "heldout" or "gate"; see the module docstring)?"""
    bucket_ = bucket(world, item)
    split = getattr(world, "split", "train")
    if split == "train":
        return bucket_ not in SPLIT_BUCKETS.values()
    return bucket_ == SPLIT_BUCKETS[split]


def split_world(world, split: str):
    """A copy of `world` that renders only the items of `split`."""
    part = copy.copy(world)
    part.split = split
    return part


def _world(world):
    from touchstone.worlds import get_world

    return get_world(world) if isinstance(world, str) else world


_suites: dict[tuple, tuple[int, list[str]]] = {}


# Suites besides the worlds' own: name -> (world, split). "facts-untaught" asks about facts that no
# training record teaches (touchstone.worlds.facts): a judge should be near chance there.
EXTRA_SUITES = {"facts-untaught": ("facts", "untaught")}


def heldout_suite(world) -> tuple[int, list[dict]]:
    """(version, records): the world's deterministic held-out suite, for evaluation only. `world` is a
    name (a world's, or one of `EXTRA_SUITES`) or a World (e.g. a language world over a given corpus);
    suites are cached per process."""
    split = "heldout"
    if isinstance(world, str) and world in EXTRA_SUITES:
        world, split = EXTRA_SUITES[world]
    world = _world(world)
    key = (world.name, split, world.version, getattr(world, "sources", None), getattr(world, "xkcd", None))
    if key not in _suites:
        records = split_world(world, split).render(random.Random(HELDOUT_SEED), SUITE_SIZE.get(world.name, DEFAULT_SUITE_SIZE))
        _suites[key] = (world.version, [json.dumps(r, sort_keys=True) for r in records])
    version, lines = _suites[key]
    return version, [json.loads(line) for line in lines]


def heldout_ids(world) -> set[str]:
    return {r["id"] for r in heldout_suite(world)[1]}


FORMS = {"both": lambda r: True, "pairs": lambda r: "a" in r, "claims": lambda r: "statement" in r}


def synth(world, n: int, out, seed: int = 0, form: str = "both", overwrite: bool = False) -> int:
    """Write n verified records of `world` to `out` (JSONL, .gz allowed) atomically; returns the count.
    `form`: keep "pairs", "claims" or "both" (pairwise fine-tuning, for one, learns from pairs only)."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if form not in FORMS:
        raise UserError(f"--form must be one of {', '.join(FORMS)}, got {form!r}")
    keep = FORMS[form]
    if seed == HELDOUT_SEED:
        raise UserError(f"seed {HELDOUT_SEED} is reserved for the held-out suites")
    check_output(out, overwrite=overwrite)
    world = _world(world)
    banned = heldout_ids(world)
    rng = random.Random(seed)
    records: list[dict] = []
    seen: set[str] = set()
    for _ in range(20):  # top up what decontamination and de-duplication removed
        for rec in world.render(rng, n - len(records)):
            if rec["id"] in banned or rec["id"] in seen or not (rec.get("verdict") or {}).get("ok") or not keep(rec):
                continue
            seen.add(rec["id"])
            records.append(rec)
        if len(records) >= n:
            break
    return write_jsonl_atomic(out, records[:n])


def _entry(path: Path, lineno: int, obj: dict) -> dict:
    """Check one input line's shape; a record keeps its label normalized."""
    where = f"{path}:{lineno}"
    if "a" in obj or "b" in obj:
        for key in ("a", "b", "label"):
            if key not in obj:
                raise UserError(f"{where}: missing key '{key}'")
        if obj["label"] not in ("a", "b"):
            raise UserError(f"{where}: key 'label' must be \"a\" or \"b\", got {obj['label']!r}")
        return {"prompt": "", **obj}
    if "statement" in obj:
        if "label" not in obj:
            raise UserError(f"{where}: missing key 'label'")
        return {**obj, "label": parse_label(obj["label"], where)}
    return obj


def verify_file(world, file) -> Iterator[dict]:
    """One verdict per line of `file`: a pair/claim record is checked with `verify_record` (does its label
    agree with the tool?), anything else is taken as a raw item of the world and checked with `verify`.
    Lines go to the world's `verify_many` in chunks, so worlds with an expensive tool can fan them out."""
    world = _world(world)
    path = Path(file)
    chunk: list[tuple[int, dict]] = []

    def flush():
        objs = [obj for _, obj in chunk]
        try:
            verdicts = world.verify_many(objs)
        except (KeyError, TypeError, ValueError) as e:
            # Find the offending line, so the message names it.
            for lineno, obj in chunk:
                try:
                    world.verify_many([obj])
                except KeyError as e2:
                    raise UserError(f"{path}:{lineno}: missing key {e2}") from None
                except (TypeError, ValueError) as e2:
                    raise UserError(f"{path}:{lineno}: {e2}") from None
            raise UserError(f"{path}: {e}") from None
        for (lineno, obj), v in zip(chunk, verdicts):
            yield {"line": lineno, "id": obj.get("id"), **v.to_dict()}
        chunk.clear()

    for lineno, obj in read_jsonl(path):
        chunk.append((lineno, _entry(path, lineno, obj)))
        if len(chunk) >= 256:
            yield from flush()
    if chunk:
        yield from flush()
