"""Reading: every source of `data prepare` streamed as raw (text, source) documents.

A source is a folder (recursively: .txt, .md, .jsonl, .jsonl.gz, .parquet), one of those files, another
file read as plain text, or `hf:NAME[:CONFIG][@SPLIT]` (a Hugging Face dataset, streamed). Nothing is held
whole in memory: text files come in paragraph blocks, JSONL line by line, Parquet in record batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from touchstone.data.config import PrepareConfig
from touchstone.errors import UserError
from touchstone.files import is_binary, read_jsonl, read_lines

Doc = tuple[str, str]  # (text, source)
FOLDER_SUFFIXES = (".txt", ".md", ".jsonl", ".jsonl.gz", ".parquet")
# Text files are read in blocks of about this size (cut at blank lines), then chunked.
TEXT_BLOCK_CHARS = 1 << 20

T = TypeVar("T")


def batches(items: Iterable[T], n: int) -> Iterator[list[T]]:
    """`items` in lists of `n` (the last one shorter)."""
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def read_text_file(path: Path, block_chars: int) -> Iterator[Doc]:
    """A text file as blocks of about `block_chars`, cut at blank lines (at any line if there are none).

    Decoded line by line (`files.read_lines`), so that invalid UTF-8 is reported with its line and a huge
    file is never held in memory.
    """
    if is_binary(path):
        raise UserError(f"{path}: binary file (NUL bytes), not text")
    lines: list[str] = []
    size = 0
    for _, line in read_lines(path):
        lines.append(line)
        size += len(line)
        if size >= block_chars and (not line.strip() or size >= 4 * block_chars):
            yield "".join(lines), str(path)
            lines, size = [], 0
    if lines:
        yield "".join(lines), str(path)


def pick_text_field(names: Iterable[str], want: str, where: str) -> str:
    """The field of a record (or column of a table) that holds its text: `want`, or for the default
    "text" RefinedWeb's "content"; a UserError naming `where` when there is neither."""
    names = list(names)
    if want in names:
        return want
    if want == "text" and "content" in names:  # RefinedWeb and similar web dumps
        return "content"
    raise UserError(f"{where}: no text field '{want}' (fields: {', '.join(names) or 'none'}); use --text-field")


def text_of(record: dict, text_field: str, where: str) -> str:
    """The text of one JSON record (`pick_text_field`); a non-string text is a UserError naming `where`."""
    key = pick_text_field(record.keys(), text_field, where)
    if not isinstance(record[key], str):
        raise UserError(f"{where}: key '{key}' should be a string, got {type(record[key]).__name__}")
    return record[key]


def read_jsonl_texts(path: Path, text_field: str) -> Iterator[Doc]:
    for lineno, obj in read_jsonl(path):
        yield text_of(obj, text_field, f"{path}:{lineno}"), str(path)


def read_parquet(path: Path, text_field: str) -> Iterator[Doc]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    key = pick_text_field(pf.schema_arrow.names, text_field, str(path))
    for batch in pf.iter_batches(batch_size=1024, columns=[key]):
        for value in batch.column(0).to_pylist():
            if value is not None:
                yield str(value), str(path)


def hf_spec(spec: str) -> tuple[str, str, str]:
    """`hf:NAME[:CONFIG][@SPLIT]` -> (NAME, CONFIG or "", SPLIT or "train")."""
    rest, _, split = spec[3:].partition("@")
    name, _, config = rest.partition(":")
    return name, config, split or "train"


def saved_to_disk(name: str) -> bool:
    """Whether the dataset NAME is a folder written by `save_to_disk` (read with `load_from_disk`)."""
    return Path(name, "state.json").exists() or Path(name, "dataset_dict.json").exists()


def read_hf(spec: str, text_field: str) -> Iterator[Doc]:
    """`hf:NAME[:CONFIG][@SPLIT]` through `datasets`, streaming (a local folder works as NAME)."""
    import datasets

    name, config, split = hf_spec(spec)
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise UserError(f"{spec}: no such dataset folder {name}")
    try:
        if saved_to_disk(name):
            ds = datasets.load_from_disk(name)
            ds = (ds[split] if isinstance(ds, datasets.DatasetDict) else ds).to_iterable_dataset()
        else:
            ds = datasets.load_dataset(name, config or None, split=split, streaming=True)
        first = next(iter(ds), None)
    except Exception as e:  # noqa: BLE001 - datasets raises many types (not found, offline, bad config, bad split)
        raise UserError(f"{spec}: cannot load dataset ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if first is None:
        return
    key = pick_text_field(first.keys(), text_field, spec)
    for row in ds:
        if isinstance(row.get(key), str):
            yield row[key], spec


def file_kind(path: Path) -> str:
    """How a source file is read: "jsonl", "parquet" or "text"."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    return "parquet" if name.endswith(".parquet") else "text"


def read_file(path: Path, cfg: PrepareConfig) -> Iterator[Doc]:
    kind = file_kind(path)
    if kind == "jsonl":
        return read_jsonl_texts(path, cfg.text_field)
    if kind == "parquet":
        return read_parquet(path, cfg.text_field)
    return read_text_file(path, TEXT_BLOCK_CHARS)


def source_files(src: str) -> list[Path]:
    """The files a source path names: itself, or the supported files under a folder (sorted)."""
    path = Path(src)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*")
        if p.is_file()
        and p.name.lower().endswith(FOLDER_SUFFIXES)
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise UserError(f"{path}: no .txt, .md, .jsonl, .jsonl.gz or .parquet files in this folder")
    return files


def read_source(src: str, cfg: PrepareConfig) -> Iterator[Doc]:
    """Every raw document of one source, streamed."""
    if src.startswith("hf:"):
        yield from read_hf(src, cfg.text_field)
        return
    for path in source_files(src):
        yield from read_file(path, cfg)
