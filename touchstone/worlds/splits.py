"""Which items a world may train on, and which it keeps for the held-out suites and the gate sets.

Each world reserves two slices of its item space: the sha256 of (world name, canonical item) picks one
of `HELDOUT_EVERY` buckets (`bucket`); bucket 0 is "heldout", bucket 1 is "gate", the rest is "train".
A world whose `split` is "train" (the default) only renders train items; its held-out suite
(`touchstone.synth.heldout_suite`) renders heldout items, and the loop draws each generation's gate set
from gate items. So a training record never shares its primary item (the same sentence, fact, colour,
design or sum) with a suite or a gate record, not only its id: the gate measures what the suites
measure, judging unseen items, rather than recall of colours trained on under another wording.

A world may keep another policy by overriding `World.in_split`: the facts world teaches every fact
but one bucket, and its suite and gate ask taught facts in phrasings no training record uses
(`touchstone.worlds.facts`).

Not guaranteed: that a contrasting item made by `mutate` is itself unreserved (it is never the primary
item of a record, so it cannot make two records equal).
"""

from __future__ import annotations

import copy
import hashlib
import json

HELDOUT_EVERY = 8  # one item in eight is reserved for the held-out suites, one for gate sets
SPLIT_BUCKETS = {"heldout": 0, "gate": 1}  # every other bucket is "train"


def bucket(world, item) -> int:
    """Which of the `HELDOUT_EVERY` buckets `item` falls in: a hash of the world's name and the item."""
    key = json.dumps(item, sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{world.name}\0{key}".encode()).hexdigest()
    return int(digest[:8], 16) % HELDOUT_EVERY


def in_split(world, item) -> bool:
    """Is `item` in the world's split ("train", "heldout" or "gate") by the buckets above?"""
    bucket_ = bucket(world, item)
    if world.split == "train":
        return bucket_ not in SPLIT_BUCKETS.values()
    return bucket_ == SPLIT_BUCKETS[world.split]


def split_world(world, split: str):
    """A copy of `world` that renders only the items of `split`."""
    part = copy.copy(world)
    part.split = split
    return part
