"""The prepared directory's files: text-record files (gzip JSONL, {"id", "text", "source"}) and uint16
token shards, every document's ids followed by <|endoftext|>."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from touchstone.data.sources import batches
from touchstone.errors import UserError
from touchstone.files import jsonl_line, read_jsonl


class GzJsonlWriter:
    """An append-only gzip JSONL writer (mtime 0, so the bytes depend only on the records). Not atomic by
    itself: `prepare` writes inside a staging directory."""

    def __init__(self, path: Path, level: int = 6):
        self.raw = open(path, "wb")  # noqa: SIM115 - the writer owns it until close()
        self.gz = gzip.GzipFile(fileobj=self.raw, mode="wb", compresslevel=level, mtime=0)

    def write(self, rec: dict) -> None:
        self.gz.write(jsonl_line(rec))

    def close(self) -> None:
        self.gz.close()
        self.raw.close()


def read_records(path: str | Path) -> Iterator[dict]:
    """The records of a text-record file (e.g. a prepared directory's text/train.jsonl.gz)."""
    for _, obj in read_jsonl(path):
        yield obj


def read_texts(path: str | Path) -> Iterator[str]:
    """The texts of a text-record file."""
    for rec in read_records(path):
        yield rec["text"]


def eos_id(tokenizer) -> int:
    """The id that ends every document in a shard: <|endoftext|>, else the tokenizer's eos token."""
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if eos is None or (eos == tokenizer.unk_token_id and tokenizer.unk_token != "<|endoftext|>"):
        eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(f"{tokenizer.name_or_path}: tokenizer has no <|endoftext|> or eos token")
    return eos


def write_shard(records_file: Path, tokenizer, out: Path, batch: int = 512) -> int:
    """Token ids of every text in `records_file`, each followed by <|endoftext|>, as uint16; returns
    the number of tokens."""
    import numpy as np

    eos = eos_id(tokenizer)
    backend = tokenizer.backend_tokenizer
    total = 0
    with open(out, "wb") as f:
        for texts in batches(read_texts(records_file), batch):
            for enc in backend.encode_batch(texts, add_special_tokens=False):
                ids = np.array(enc.ids + [eos], dtype=np.uint16)
                f.write(ids.tobytes())
                total += len(ids)
    return total


def load_shard(path: str | Path):
    """A token shard as a read-only numpy memmap of uint16 (an empty array for an empty split)."""
    import numpy as np

    if Path(path).stat().st_size == 0:  # numpy cannot map an empty file
        return np.zeros(0, dtype=np.uint16)
    return np.memmap(path, dtype=np.uint16, mode="r")
