"""Synthesis and verification across worlds, and the held-out suites that training never sees.

    touchstone synth numbers --n 1000 --out numbers.jsonl   # verified pair and claim records
    touchstone verify wing designs.jsonl                     # one JSON verdict per item or record

Held-out suites: `heldout_suite` renders a world's "heldout" split (`touchstone.worlds.splits`: items
no training record uses) from a fixed seed, `World.suite_size` records; a world may name further
suites of its own splits (`World.extra_suites`, gathered in `EXTRA_SUITES`). `synth` also drops any
record whose id is in the suite, for worlds that do not partition their items.

Rendering a suite verifies every record (the code suite is about 5,700 sandbox runs, minutes), so a
rendered suite is kept on disk in `cache_dir()/suites`, named by the world, the split, its version, its
inputs and a fingerprint of the code (Touchstone's source, Python's version and those of the libraries
it requires): any change to what renders or verifies it makes a new file, and a stale one is never read.
The three most recently used versions of each suite are kept. A cache file that does not read back is
rendered anew.

Guaranteed: `synth` writes atomically and only records whose verdict agrees with their label; every
malformed input line is a one-line `UserError` naming file:line. A suite is deterministic for a given
world version and inputs (`World.inputs`: for language, a given corpus); its version number is the
world's.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import cache_dir, check_output, read_jsonl, write_jsonl_atomic
from touchstone.records import is_judged, is_pair, parse_record
from touchstone.worlds import WORLDS, World, get_world, world_class
from touchstone.worlds.splits import split_world

HELDOUT_SEED = 7_000_003  # reserved: never used for training synthesis
CACHED_VERSIONS = 3  # rendered versions of each suite kept on disk (say, two checkouts and an upgrade)
# Suites besides the worlds' own: name -> (world, split), as each world declares them.
EXTRA_SUITES = {suite: (name, split) for name in WORLDS for suite, split in world_class(name).extra_suites.items()}
_suites: dict[tuple, tuple[int, list[str]]] = {}


def _world(world) -> World:
    return get_world(world) if isinstance(world, str) else world


def heldout_suite(world) -> tuple[int, list[dict]]:
    """(version, records): the world's deterministic held-out suite, for evaluation only. `world` is a
    name (a world's, or one of `EXTRA_SUITES`) or a World (e.g. a language world over a given corpus);
    suites are cached per process."""
    split = "heldout"
    if isinstance(world, str) and world in EXTRA_SUITES:
        world, split = EXTRA_SUITES[world]
    world = _world(world)
    key = (world.name, split, world.version, world.inputs())
    if key not in _suites:
        _suites[key] = (world.version, [json.dumps(r, sort_keys=True) for r in _cached_suite(world, split)])
    version, lines = _suites[key]
    return version, [json.loads(line) for line in lines]


@functools.cache
def code_fingerprint() -> str:
    """sha256 of every module of the touchstone package, the Python version and the installed version
    of each library touchstone requires (the tools behind the verdicts: NeuralFoil, coloraide...)."""
    import importlib.metadata
    import re
    import sys

    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(sys.version.encode())
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    try:
        required = [r for r in importlib.metadata.requires("touchstone") or [] if "extra ==" not in r]
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that is not installed
        required = []
    for name in sorted(re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in required):
        try:
            digest.update(f"{name}=={importlib.metadata.version(name)}".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{name} missing".encode())
    return digest.hexdigest()


def _cached_suite(world: World, split: str) -> list[dict]:
    inputs = hashlib.sha256(json.dumps(world.inputs(), default=str).encode()).hexdigest()[:12]
    path = cache_dir() / "suites" / f"{world.name}-{split}-v{world.version}-{inputs}-{code_fingerprint()[:16]}.jsonl"
    try:
        records = [obj for _, obj in read_jsonl(path)]
        os.utime(path)  # recently used: kept when older versions are dropped
        return records
    except (UserError, OSError):  # not there yet, or unreadable: render it (again)
        pass
    records = split_world(world, split).render(random.Random(HELDOUT_SEED), world.suite_size)
    try:
        write_jsonl_atomic(path, records)
        # Every code change makes a new file: keep the most recently used few of this suite, drop the rest.
        versions = sorted(path.parent.glob(f"{world.name}-{split}-v*.jsonl"), key=lambda p: p.stat().st_mtime)
        for old in versions[:-CACHED_VERSIONS]:
            old.unlink(missing_ok=True)
    except (OSError, UserError):  # a read-only home: the suite is still right, only not kept
        pass
    return records


def heldout_ids(world) -> set[str]:
    return {r["id"] for r in heldout_suite(world)[1]}


FORMS = {"both": lambda r: True, "pairs": is_pair, "claims": lambda r: not is_pair(r)}


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
        # A pair or claim is checked and normalised; anything else is a raw item of the world.
        chunk.append((lineno, parse_record(obj, f"{path}:{lineno}", text_sides=False) if is_judged(obj) else obj))
        if len(chunk) >= 256:
            yield from flush()
    if chunk:
        yield from flush()
