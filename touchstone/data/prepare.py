"""`prepare`: the stages of `touchstone data prepare` chained into one prepared directory (the package
docstring, touchstone/data/__init__.py, says what it writes and guarantees)."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from touchstone.data.config import PrepareConfig
from touchstone.data.dedup import exact_dedup, near_dedup
from touchstone.data.filters import cleaned_and_filtered
from touchstone.data.finish import no_text_left, save_tokenizer, summary_of
from touchstone.data.shards import GzJsonlWriter, read_records, read_texts, write_shard
from touchstone.data.sources import Doc, read_source, source_files
from touchstone.data.split import SPLITS, lent_keys, split_key, split_of
from touchstone.errors import UserError
from touchstone.files import atomic_dir, check_output, write_manifest
from touchstone.records import text_record
from touchstone.tokenizer import load_tokenizer, world_texts


def check_prepare(sources: list[str], out: Path, cfg: PrepareConfig, overwrite: bool) -> None:
    """Everything that can be wrong before any work: sources, settings, the output path."""
    if not sources:
        raise UserError("data prepare: no sources given")
    for src in sources:  # fail fast on a missing path, before any work
        if not src.startswith("hf:"):
            source_files(src)
    if not 0 <= cfg.val_fraction + cfg.test_fraction < 1:
        raise UserError("config: val_fraction + test_fraction must be in [0, 1)")
    if not 0 < cfg.near_dup_threshold <= 1:
        raise UserError("config: key 'near_dup_threshold' must be in (0, 1]")
    if cfg.tokenizer and not Path(cfg.tokenizer).is_dir():
        raise UserError(f"{cfg.tokenizer}: no such tokenizer directory")
    if cfg.min_chars > cfg.max_chars:
        raise UserError(f"config: key 'min_chars' ({cfg.min_chars}) is above 'max_chars' ({cfg.max_chars})")
    check_output(out, overwrite=overwrite, directory=True, kind="prepared-data")


def prepare(sources: list[str], out: str | Path, cfg: PrepareConfig | None = None, overwrite: bool = False) -> dict:
    """Prepare `sources` into `out` (see touchstone/data/__init__.py); returns the manifest's summary. An
    existing `out` is replaced only with `overwrite`, and only if it is a directory Touchstone wrote."""
    cfg = cfg or PrepareConfig()
    out = Path(out)
    check_prepare(sources, out, cfg, overwrite)
    if cfg.executor is not None:  # the same stages as datatrove pipelines
        # Here, not at the top: datatrove is an optional dependency, loaded only for an executor.
        from touchstone.data.datatrove_run import prepare_datatrove

        return prepare_datatrove(sources, out, cfg, overwrite=overwrite)

    drops: Counter = Counter()
    counts: Counter = Counter()

    def raw_docs() -> Iterator[Doc]:
        for src in sources:
            for text, source in read_source(src, cfg):
                counts["documents"] += 1
                counts["bytes_in"] += len(text.encode("utf-8"))
                yield text, source

    with atomic_dir(out, overwrite=overwrite) as stage:
        (stage / "text").mkdir()
        (stage / "tokens").mkdir()
        # Pass 1: everything kept goes to one staging file; only split keys stay in memory.
        kept_path = stage / "kept.jsonl.gz"
        kept = GzJsonlWriter(kept_path, level=1)  # read once, then deleted
        keys = []
        docs = near_dedup(exact_dedup(cleaned_and_filtered(raw_docs(), cfg, drops), drops), cfg, drops)
        for text, source in docs:
            rec = text_record(text, source)
            keys.append(split_key(rec["id"], cfg.seed))
            kept.write(rec)
        kept.close()
        if not keys:
            raise no_text_left(sources, drops)
        counts["chunks_kept"] = len(keys)

        # Pass 2: the split files.
        lent = lent_keys(keys, cfg)
        writers = {name: GzJsonlWriter(stage / "text" / f"{name}.jsonl.gz") for name in SPLITS}
        for rec, key in zip(read_records(kept_path), keys):
            name = lent.get(key) or split_of(key, cfg)
            writers[name].write(rec)
            counts[f"documents_{name}"] += 1
            counts[f"chars_{name}"] += len(rec["text"])
        for w in writers.values():
            w.close()
        kept_path.unlink()

        # Pass 3: the tokenizer, then the shards.
        texts = read_texts(stage / "text" / "train.jsonl.gz")
        if cfg.world_records and not cfg.tokenizer:  # the worlds' text, made only to train on
            texts = itertools.chain(texts, world_texts(cfg.world_records))
        save_tokenizer(texts, stage / "tokenizer", cfg)
        tok = load_tokenizer(stage / "tokenizer")
        for name in SPLITS:
            counts[f"tokens_{name}"] = write_shard(
                stage / "text" / f"{name}.jsonl.gz", tok, stage / "tokens" / f"{name}.bin"
            )
        summary = summary_of(sources, counts, drops, len(tok), cfg)
        write_manifest(stage, summary)
    return summary
