"""The datatrove path's one-task stages: the tokenizer (after the plain path's lending of train documents
to an empty split) and the assembly of the per-task files into the plain path's layout and manifest."""

from __future__ import annotations

import heapq
import json
import os
import shutil
from collections import Counter
from pathlib import Path

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.dedup import MinhashDedupFilter
from datatrove.pipeline.dedup.exact_dedup import ExactDedupFilter

from touchstone.data.config import PrepareConfig
from touchstone.data.datatrove_blocks import Chunks, Split
from touchstone.data.filters import FILTERS
from touchstone.data.finish import no_text_left, save_tokenizer, summary_of
from touchstone.data.shards import GzJsonlWriter, read_records, read_texts
from touchstone.data.split import SPLITS, empty_splits, split_key
from touchstone.files import atomic_dir, write_json_atomic, write_manifest
from touchstone.tokenizer import load_tokenizer


class TrainTokenizer(PipelineStep):
    """The plain path's lending (a split the hash left empty gets the train documents nearest the
    boundary), then the tokenizer: trained on the train split, or the one given."""

    type = "🔤 - TOKENIZER"
    name = "tokenizer"

    def __init__(self, sources: list[str], cfg: PrepareConfig, work: Path):
        super().__init__()
        self.sources, self.cfg, self.work = sources, cfg, work

    def run(self, docs=None, rank: int = 0, world_size: int = 1):
        counts, drops = tally(self.work)
        if not any(counts[f"documents_{s}"] for s in SPLITS):
            raise no_text_left(self.sources, drops)
        lend(self.work, self.cfg)
        out = self.work / "tokenizer"
        shutil.rmtree(out, ignore_errors=True)  # a previous attempt's
        save_tokenizer((t for f in split_files(self.work, "train") for t in read_texts(f)), out, self.cfg)


def split_files(work: Path, split: str) -> list[Path]:
    return sorted((work / "text" / split).glob("*.jsonl.gz"))


def lend(work: Path, cfg: PrepareConfig) -> None:
    """split.lent_keys over the split files. The decision is written first (lent.json) and applied after,
    both idempotent, so that a task killed halfway and run again neither loses nor doubles a document."""
    decision = work / "lent.json"
    if not decision.exists():
        lent = {}
        if empty := empty_splits({s for s in SPLITS if split_files(work, s)}, cfg):
            n_train = 0

            def train_records():
                nonlocal n_train
                for f in split_files(work, "train"):
                    for rec in read_records(f):
                        n_train += 1
                        yield rec

            lowest = heapq.nsmallest(len(empty), train_records(), key=lambda r: split_key(r["id"], cfg.seed))
            for split in empty:
                if n_train - len(lent) > 1 and lowest:
                    lent[split] = lowest.pop(0)
        write_json_atomic(decision, lent)
    lent = json.loads(decision.read_text(encoding="utf-8"))
    for split, rec in lent.items():
        _write_records(work / "text" / split / "00000.jsonl.gz", [rec])
    gone = {rec["id"] for rec in lent.values()}
    for f in split_files(work, "train") if gone else []:
        recs = list(read_records(f))  # one task's file, and only in a corpus small enough to need lending
        if any(r["id"] in gone for r in recs):
            _write_records(f, [r for r in recs if r["id"] not in gone])


def _write_records(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    w = GzJsonlWriter(tmp)
    for rec in records:
        w.write(rec)
    w.close()
    os.replace(tmp, path)


class Assemble(PipelineStep):
    """The per-task files into the plain path's layout, with its manifest, built aside and renamed into place."""

    type = "📦 - ASSEMBLE"
    name = "assemble"

    def __init__(self, sources: list[str], out: Path, cfg: PrepareConfig, work: Path, overwrite: bool):
        super().__init__()
        self.sources, self.out, self.cfg, self.work = sources, out, cfg, work
        self.overwrite = overwrite  # prepare checked the output before any task ran

    def run(self, docs=None, rank: int = 0, world_size: int = 1):
        work = self.work
        counts, drops = tally(work)
        lent = json.loads((work / "lent.json").read_text(encoding="utf-8"))
        for split, rec in lent.items():
            counts["documents_train"] -= 1
            counts["chars_train"] -= len(rec["text"])
            counts[f"documents_{split}"] += 1
            counts[f"chars_{split}"] += len(rec["text"])
        counts["chunks_kept"] = sum(counts[f"documents_{s}"] for s in SPLITS)

        with atomic_dir(self.out, overwrite=self.overwrite) as stage:
            (stage / "text").mkdir()
            (stage / "tokens").mkdir()
            for split in SPLITS:
                parts = split_files(work, split)
                if parts:
                    _concat(parts, stage / "text" / f"{split}.jsonl.gz")
                else:
                    GzJsonlWriter(stage / "text" / f"{split}.jsonl.gz").close()
                _concat(sorted((work / "tokens" / split).glob("*.ds")), stage / "tokens" / f"{split}.bin")
                counts[f"tokens_{split}"] = (stage / "tokens" / f"{split}.bin").stat().st_size // 2
            shutil.copytree(work / "tokenizer", stage / "tokenizer")
            vocab_size = len(load_tokenizer(stage / "tokenizer"))
            write_manifest(stage, summary_of(self.sources, counts, drops, vocab_size, self.cfg))


def tally(work: Path) -> tuple[Counter, Counter]:
    """The plain path's counts (before lending) and drop reasons, from the stages' datatrove stats."""
    stats = read_stats(work / "logs")

    def block(name: str) -> Counter:  # a block that counted nothing left no entry
        return stats.get(name, Counter())

    counts = Counter({k: block(Chunks.name)[k] for k in ("documents", "bytes_in")})
    drops: Counter = Counter()
    for check in FILTERS:
        for label, n in block(check.__name__).items():
            if label.startswith("dropped_"):
                drops[label.removeprefix("dropped_")] += n
    drops["exact_duplicate"] = block(ExactDedupFilter.name)["dropped"]
    drops["near_duplicate"] = block(MinhashDedupFilter.name)["dropped"]
    counts.update(block(Split.name))
    return counts, +drops


def _concat(parts: list[Path], dest: Path) -> None:
    with open(dest, "wb") as f:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, f, 1 << 20)


def read_stats(logs: Path) -> dict[str, Counter]:
    """Every block's counters, summed over the tasks of every stage: {block name: {label: total}}. The
    block name is datatrove's (its type stripped), so our blocks are found under the names they set."""
    totals: dict[str, Counter] = {}
    for f in sorted(logs.glob("*/stats/*.json")):
        for block in json.loads(f.read_text(encoding="utf-8")):
            name = block["name"].split(": ", 1)[-1]
            c = totals.setdefault(name, Counter())
            for label, value in block["stats"].items():
                c[label] += value if isinstance(value, (int, float)) else value.get("total", 0)
    return totals
