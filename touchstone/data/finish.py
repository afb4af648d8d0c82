"""What the plain path (prepare.py) and the datatrove path (datatrove_blocks.py) finish alike: the
tokenizer given or trained, and the summary that MANIFEST.json carries beside its file list."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from touchstone import __version__
from touchstone.config import to_dict
from touchstone.data.config import PrepareConfig
from touchstone.errors import UserError
from touchstone.files import MANIFEST
from touchstone.tokenizer import MAX_VOCAB, load_tokenizer, train_from_texts


def given_tokenizer(path: str):
    """The tokenizer `--tokenizer` names, refused if its ids do not fit the uint16 shards."""
    tok = load_tokenizer(path)
    if len(tok) > MAX_VOCAB:
        raise UserError(f"{path}: vocabulary of {len(tok)} does not fit uint16 shards (at most {MAX_VOCAB})")
    return tok


def save_tokenizer(texts: Iterable[str], out: Path, cfg: PrepareConfig) -> None:
    """The tokenizer of a prepared directory into `out`: `cfg.tokenizer` copied, else one trained on
    `texts` (read only then)."""
    if cfg.tokenizer:
        given_tokenizer(cfg.tokenizer).save_pretrained(out)
    else:
        train_from_texts(texts, out, cfg.vocab_size)
    # The directory's own manifest covers the tokenizer's files; a nested one would go unhashed.
    (out / MANIFEST).unlink(missing_ok=True)


def no_text_left(sources: list[str], drops: Counter) -> UserError:
    return UserError(f"{', '.join(sources)}: no text left after filtering (dropped: {dict(drops) or 'nothing read'})")


def summary_of(sources: list[str], counts: Counter, drops: Counter, vocab_size: int, cfg: PrepareConfig) -> dict:
    """What MANIFEST.json says beside its file list."""
    return {
        "kind": "prepared-data",
        "touchstone": __version__,
        "sources": list(sources),
        "counts": dict(counts),
        "dropped": dict(sorted(drops.items())),
        "vocab_size": vocab_size,
        "dtype": "uint16",
        "config": to_dict(cfg),
    }
