"""The token files a pretraining run reads: a prepared data directory's own shards, or a copy
re-tokenized for another tokenizer, and the embedded default corpus when no data is given."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from touchstone.corpus import default_sources
from touchstone.data.config import PrepareConfig
from touchstone.data.prepare import prepare
from touchstone.errors import UserError
from touchstone.files import MANIFEST, atomic_file, cache_dir, read_jsonl
from touchstone.tokenizer import load_tokenizer


def default_data() -> Path:
    """The embedded default corpus, prepared once into the cache and reused."""
    # "-2": prepared with the digit-splitting tokenizer trained on the worlds' text too; a cache of the
    # earlier tokenizer is left alone and not reused.
    path = cache_dir() / "default-corpus-2"
    if not (path / MANIFEST).exists():
        print(f"preparing the embedded default corpus into {path} (once)", file=sys.stderr)
        prepare(default_sources(), path, PrepareConfig())
    return path


def data_dir_of(data: str | Path | None) -> Path:
    """The prepared data directory a run trains on (None: the embedded corpus); UserError if it is none."""
    data_dir = Path(data) if data is not None else default_data()
    if not data_dir.is_dir():
        raise UserError(
            f"{data_dir}: no such data directory"
            if not data_dir.exists()
            else f"{data_dir}: not a directory (expected a prepared data directory)"
        )
    return data_dir


def data_id(path: Path) -> dict:
    """What identifies a token file for a resume: its path and size."""
    return {"file": str(path), "bytes": path.stat().st_size}


def token_files(data_dir: Path, tokenizer, run_dir: Path) -> tuple[Path, Path, str]:
    """The train/val token files for `tokenizer`: the data's own shards, or a re-tokenized copy."""
    import numpy as np

    tokens = data_dir / "tokens"
    if not (tokens / "train.bin").is_file():
        raise UserError(
            f"{data_dir}: not a prepared data directory (no tokens/train.bin); run `touchstone data prepare`"
        )
    own = data_dir / "tokenizer"
    if own.is_dir() and load_tokenizer(own).get_vocab() == tokenizer.get_vocab():
        return tokens / "train.bin", tokens / "val.bin", "uint16"
    # A different tokenizer (--init-from a foreign model, or --tokenizer): re-tokenize the cleaned text
    # once into the run directory; ids go to uint32 when the vocabulary does not fit uint16.
    dtype = "uint16" if len(tokenizer) <= 65536 else "uint32"
    vocab_id = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:12]
    out = run_dir / f"tokens-{vocab_id}"
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(f"{tokenizer.name_or_path}: tokenizer has no end-of-text token to separate documents")
    for split in ("train", "val"):
        src, dst = data_dir / "text" / f"{split}.jsonl.gz", out / f"{split}.bin"
        if dst.exists():
            continue
        if not src.is_file():
            raise UserError(f"{src}: missing; needed to re-tokenize the data for {tokenizer.name_or_path}")
        with atomic_file(dst, "wb") as f:
            for lineno, rec in read_jsonl(src):
                if not isinstance(rec.get("text"), str):
                    raise UserError(f"{src}:{lineno}: missing key 'text'")
                ids = tokenizer(rec["text"], add_special_tokens=False)["input_ids"] + [eos]
                f.write(np.asarray(ids, dtype=dtype).tobytes())
    return out / "train.bin", out / "val.bin", dtype
