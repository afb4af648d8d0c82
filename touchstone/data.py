"""`touchstone data prepare`: sources -> clean text -> filters -> dedup -> split -> tokenizer -> token shards.

    touchstone data prepare ../shared/data/gutenberg ../shared/data/tinyshakespeare --out data/orig
    touchstone data prepare corpus.jsonl.gz web.parquet hf:wikitext:wikitext-2-raw-v1@train --out data/orig

Output (see DESIGN.md):
    DIR/text/{train,val,test}.jsonl.gz   text records {"id", "text", "source"} after cleaning
    DIR/tokenizer/                        AutoTokenizer-loadable (trained on the train split unless given)
    DIR/tokens/{train,val,test}.bin       uint16 token ids, every document followed by <|endoftext|>
    DIR/MANIFEST.json                     counts, drop reasons, sha256 of every file, resolved config

Sources: a folder (recursively: .txt, .md, .jsonl, .jsonl.gz, .parquet), any of those files, another
file read as plain text, or `hf:NAME[:CONFIG][@SPLIT]` for `datasets.load_dataset(NAME, CONFIG,
split=SPLIT, streaming=True)` (NAME may be a local folder; a `save_to_disk` folder is read too).
JSONL, Parquet and datasets take their text from `text_field`; RefinedWeb's `content` is used when
`text` is absent.

Steps, in order, each a generator over (text, source) documents:
1. clean: Unicode repair and NFC (ftfy), line endings, trailing spaces, runs of blank lines, optional
   lowercasing; then long documents (a novel in one file) are cut at paragraph boundaries into chunks
   of about `chunk_chars`, the unit of everything below;
2. filter: each filter is a function text -> drop reason or None, and every drop is counted by reason
   (too_short, too_long, binary, repeated_lines, repeated_ngrams);
3. exact dedup by content hash, then near-duplicate removal with MinHash LSH (word 5-gram shingles,
   `near_dup_threshold` estimated Jaccard similarity); the first occurrence is kept;
4. split into train/val/test by a hash of the content (and `seed`): a document's split depends on its
   text alone, so re-running or adding sources never moves it. The one exception: when a small corpus
   would leave val or test empty, the kept train documents closest to the boundary are lent to it;
5. a byte-level BPE tokenizer trained on the train split and the worlds' text (or `tokenizer` given),
   then uint16 shards.

Guarantees:
- memory is bounded: sources are streamed (text files by paragraph blocks, JSONL line by line, Parquet
  in record batches, datasets in streaming mode) and kept text goes straight to gzip files on disk.
  What grows with the number of documents is the dedup index: one content hash and one MinHash LSH
  entry (num_perm 64-bit values across the bands) per kept chunk, plus 8 bytes of split key;
- the output is built in a staging directory and renamed into place with MANIFEST.json written last,
  so an interrupted prepare leaves either nothing or the previous complete output; re-running redoes
  everything from scratch;
- the same sources and config give byte-identical text files and shards.
Not guaranteed: near-duplicate detection is probabilistic (LSH may miss a pair just above the
threshold or drop one just below it); text inside a single line longer than `max_chars` is dropped,
not cut.

Past one machine: `executor` local, slurm or ray (`pip install touchstone[scale]`) runs the same stages
as datatrove pipelines on its LocalPipelineExecutor, SlurmPipelineExecutor or RayPipelineExecutor,
sharded into `tasks`, with both dedup indexes on disk (data_datatrove.py says what it keeps identical
and what not). On one machine the plain path here is simpler and fast enough; `workers` fans cleaning
and filtering out over local processes.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from touchstone.config import Config, field, to_dict
from touchstone.errors import UserError

Doc = tuple[str, str]  # (text, source)
SPLITS = ("train", "val", "test")
FOLDER_SUFFIXES = (".txt", ".md", ".jsonl", ".jsonl.gz", ".parquet")
# Text files are read in blocks of about this size (cut at blank lines), then chunked.
TEXT_BLOCK_CHARS = 1 << 20


@dataclass
class PrepareConfig(Config):
    text_field: str = field("text", help="JSONL/Parquet/dataset field holding the text (RefinedWeb's 'content' "
                                         "is used when 'text' is absent)")
    lowercase: bool = field(False, help="lowercase all text")
    chunk_chars: int = field(4000, help="long documents are cut at paragraph boundaries into chunks of about this size", min=1)
    min_chars: int = field(64, help="drop chunks shorter than this (characters, after cleaning)", min=0)
    max_chars: int = field(100_000, help="drop chunks longer than this (only a single huge line can be)", min=1)
    max_repeated_lines: float = field(0.3, help="drop chunks where lines repeating an earlier line hold this "
                                                "fraction of the characters", min=0, max=1)
    max_top_ngram: float = field(0.2, help="drop chunks where the most frequent word 2-gram covers this "
                                           "fraction of the characters", min=0, max=1)
    min_printable: float = field(0.9, help="drop chunks with a smaller fraction of text characters (not "
                                           "control, private-use or U+FFFD): binary or mangled content", min=0, max=1)
    near_dup_threshold: float = field(0.8, help="MinHash estimated Jaccard similarity above which a chunk "
                                                "is a near duplicate (1.0 disables near-dup removal)", above=0, max=1)
    num_perm: int = field(128, help="MinHash permutations", min=2)
    val_fraction: float = field(0.01, help="fraction of documents in the validation split", min=0, max=1)
    test_fraction: float = field(0.01, help="fraction of documents in the test split", min=0, max=1)
    seed: int = field(0, help="salts the split hash; a different seed gives a different split")
    vocab_size: int = field(8192, help="vocabulary of the trained tokenizer", min=1)
    tokenizer: str | None = field(None, help="existing tokenizer directory (default: train one on the train split)")
    world_records: int = field(1000, help="records per world whose text joins the train split in training the "
                                          "tokenizer (touchstone.tokenizer.world_texts; 0: the corpus alone)")
    workers: int = field(1, help="processes for cleaning and filtering (1: in this process); with an executor, "
                                 "how many datatrove tasks run at once", min=1)
    executor: str | None = field(None, help="run as datatrove pipelines on its local, slurm or ray executor "
                                            "(default: none, this process; see data_datatrove.py)",
                                 choices=("local", "slurm", "ray"))
    tasks: int = field(0, help="datatrove tasks, the shards the input is cut into (0: as many as workers)", min=0)
    slurm_partition: str | None = field(None, help="Slurm partition the jobs run on (executor slurm)")
    slurm_time: str = field("24:00:00", help="Slurm time limit of each job (executor slurm)")


# ------------------------------------------------------------------------------------------- reading
def _is_binary(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return b"\0" in f.read(8192)
    except (OSError, EOFError):
        raise UserError(f"{path}: cannot read (corrupt or truncated)") from None


def read_text_file(path: Path, block_chars: int) -> Iterator[Doc]:
    """A text file as blocks of about `block_chars`, cut at blank lines (at any line if there are none).

    Decoded line by line so that invalid UTF-8 is reported with its line and a huge file is never
    held in memory.
    """
    if _is_binary(path):
        raise UserError(f"{path}: binary file (NUL bytes), not text")
    lines: list[str] = []
    size = 0
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UserError(f"{path}:{lineno}: invalid UTF-8 ({e.reason} at byte {e.start})") from None
            lines.append(line)
            size += len(line)
            if size >= block_chars and (not line.strip() or size >= 4 * block_chars):
                yield "".join(lines), str(path)
                lines, size = [], 0
    if lines:
        yield "".join(lines), str(path)


def _pick_field(names: Iterable[str], want: str, where: str) -> str:
    names = list(names)
    if want in names:
        return want
    if want == "text" and "content" in names:  # RefinedWeb and similar web dumps
        return "content"
    raise UserError(f"{where}: no text field '{want}' (fields: {', '.join(names) or 'none'}); use --text-field")


def read_jsonl_texts(path: Path, text_field: str) -> Iterator[Doc]:
    from touchstone.files import read_jsonl

    for lineno, obj in read_jsonl(path):
        key = _pick_field(obj.keys(), text_field, f"{path}:{lineno}")
        if not isinstance(obj[key], str):
            raise UserError(f"{path}:{lineno}: key '{key}' should be a string, got {type(obj[key]).__name__}")
        yield obj[key], str(path)


def read_parquet(path: Path, text_field: str) -> Iterator[Doc]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise UserError(f"{path}: not a readable Parquet file ({e})") from None
    key = _pick_field(pf.schema_arrow.names, text_field, str(path))
    for batch in pf.iter_batches(batch_size=1024, columns=[key]):
        for value in batch.column(0).to_pylist():
            if value is not None:
                yield str(value), str(path)


def hf_spec(spec: str) -> tuple[str, str, str]:
    """`hf:NAME[:CONFIG][@SPLIT]` -> (NAME, CONFIG or "", SPLIT or "train")."""
    rest, _, split = spec[3:].partition("@")
    name, _, config = rest.partition(":")
    return name, config, split or "train"


def read_hf(spec: str, text_field: str) -> Iterator[Doc]:
    """`hf:NAME[:CONFIG][@SPLIT]` through `datasets`, streaming (a local folder works as NAME)."""
    import datasets

    name, config, split = hf_spec(spec)
    if name.startswith(("/", "./", "../", "~")) and not Path(name).expanduser().exists():
        raise UserError(f"{spec}: no such dataset folder {name}")
    try:
        if Path(name, "state.json").exists() or Path(name, "dataset_dict.json").exists():
            ds = datasets.load_from_disk(name)  # a save_to_disk folder
            ds = (ds[split] if isinstance(ds, datasets.DatasetDict) else ds).to_iterable_dataset()
        else:
            ds = datasets.load_dataset(name, config or None, split=split, streaming=True)
        first = next(iter(ds), None)
    except Exception as e:  # datasets raises many types (not found, offline, bad config, bad split)
        raise UserError(f"{spec}: cannot load dataset ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if first is None:
        return
    key = _pick_field(first.keys(), text_field, spec)
    for row in ds:
        if isinstance(row.get(key), str):
            yield row[key], spec


def file_kind(path: Path) -> str:
    """How a source file is read: "jsonl", "parquet" or "text"."""
    name = path.name.lower()
    if name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".ndjson")):
        return "jsonl"
    return "parquet" if name.endswith(".parquet") else "text"


def _read_file(path: Path, cfg: PrepareConfig) -> Iterator[Doc]:
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
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(FOLDER_SUFFIXES)
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise UserError(f"{path}: no .txt, .md, .jsonl, .jsonl.gz or .parquet files in this folder")
    return files


def read_source(src: str, cfg: PrepareConfig) -> Iterator[Doc]:
    """Every raw document of one source, streamed."""
    if src.startswith("hf:"):
        yield from read_hf(src, cfg.text_field)
        return
    for path in source_files(src):
        yield from _read_file(path, cfg)


def read_texts(path: str | Path) -> Iterator[str]:
    """The texts of a text-record file (e.g. a prepared directory's text/train.jsonl.gz)."""
    from touchstone.files import read_jsonl

    for _, obj in read_jsonl(path):
        yield obj["text"]


# ------------------------------------------------------------------------------------------ cleaning
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING = re.compile(r"[ \t\u00a0]+\n")
# ftfy only changes text with non-ASCII characters, HTML entities or control characters; skipping the
# paragraphs without any (most of an English corpus) makes cleaning several times faster.
_NEEDS_FTFY = re.compile(r"[^\t\n\x20-\x7e]|&")


def _fix(text: str) -> str:
    import ftfy

    if not _NEEDS_FTFY.search(text):
        return text
    return "\n\n".join(ftfy.fix_text(p, normalization="NFC") if _NEEDS_FTFY.search(p) else p
                        for p in text.split("\n\n"))


def clean(text: str, lowercase: bool = False) -> str:
    """Unicode repair + NFC, Unix line endings, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BLANK_RUNS.sub("\n\n", _TRAILING.sub("\n", _fix(text) + "\n")).strip()
    return text.lower() if lowercase else text


def _line_groups(para: str, size: int) -> Iterator[str]:
    group: list[str] = []
    n = 0
    for line in para.split("\n"):
        if group and n + len(line) > size:
            yield "\n".join(group)
            group, n = [], 0
        group.append(line)
        n += len(line) + 1
    if group:
        yield "\n".join(group)


def chunks(text: str, size: int) -> Iterator[str]:
    """Cut at paragraph boundaries (blank lines) into pieces of at most about `size` characters; a
    paragraph longer than `size` is cut at line boundaries; a single line is never cut."""
    if len(text) <= size:
        yield text
        return
    buf: list[str] = []
    n = 0
    for para in text.split("\n\n"):
        for piece in [para] if len(para) <= size else _line_groups(para, size):
            if buf and n + len(piece) > size:
                yield "\n\n".join(buf)
                buf, n = [], 0
            buf.append(piece)
            n += len(piece) + 2
    if buf:
        yield "\n\n".join(buf)


def cleaned(docs: Iterable[Doc], cfg: PrepareConfig) -> Iterator[Doc]:
    for text, source in docs:
        for piece in chunks(clean(text, cfg.lowercase), cfg.chunk_chars):
            yield piece.strip(), source


# ------------------------------------------------------------------------------------------- filters
# The filter contract: text -> drop reason, or None to keep. `filtered` applies them and counts drops.
_WORD = re.compile(r"\w+")


def length_filter(cfg):
    def check(text: str) -> str | None:
        return "too_short" if len(text) < cfg.min_chars else "too_long" if len(text) > cfg.max_chars else None
    return check


# Control characters (other than tab and newline), private-use characters and U+FFFD (what a decoder
# leaves for bytes it could not read): their share tells binary or mangled content from text.
_NON_TEXT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ue000-\uf8ff\ufffd]")


def binary_filter(cfg):
    def check(text: str) -> str | None:
        if "\0" in text:
            return "binary"
        non_text = len(text) - len(_NON_TEXT.sub("", text))
        return "binary" if non_text > (1 - cfg.min_printable) * len(text) else None
    return check


def repetition_filter(cfg):
    """Gopher-style: many repeated lines, or one word 2-gram covering much of the text."""
    def check(text: str) -> str | None:
        # Characters, not lines, so that dialogue's repeated short speaker names do not count much.
        seen: set[str] = set()
        repeated = 0
        for line in text.split("\n"):
            line = line.strip()
            if line in seen:
                repeated += len(line)
            seen.add(line)
        if repeated > cfg.max_repeated_lines * len(text):
            return "repeated_lines"
        words = _WORD.findall(text.lower())
        if len(words) >= 20:
            top, count = Counter(zip(words, words[1:])).most_common(1)[0]
            if count > 1 and count * (len(top[0]) + len(top[1])) > cfg.max_top_ngram * len(text):
                return "repeated_ngrams"
        return None
    return check


def filtered(docs: Iterable[Doc], cfg: PrepareConfig, drops: Counter) -> Iterator[Doc]:
    checks = [length_filter(cfg), binary_filter(cfg), repetition_filter(cfg)]
    for text, source in docs:
        reason = next((r for check in checks if (r := check(text))), None)
        if reason:
            drops[reason] += 1
        else:
            yield text, source


def _clean_and_filter(batch: list[Doc], cfg: PrepareConfig) -> tuple[list[Doc], Counter]:
    drops: Counter = Counter()
    return list(filtered(cleaned(batch, cfg), cfg, drops)), drops


def _batches(docs: Iterable[Doc], n: int) -> Iterator[list[Doc]]:
    batch = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def cleaned_and_filtered(docs: Iterable[Doc], cfg: PrepareConfig, drops: Counter) -> Iterator[Doc]:
    """`filtered(cleaned(docs))`, fanned out over `cfg.workers` processes in order when asked."""
    if cfg.workers <= 1:
        yield from filtered(cleaned(docs, cfg), cfg, drops)
        return
    import functools
    import multiprocessing

    work = functools.partial(_clean_and_filter, cfg=cfg)
    with multiprocessing.get_context("spawn").Pool(cfg.workers) as pool:
        for kept, batch_drops in pool.imap(work, _batches(docs, 16)):
            drops.update(batch_drops)
            yield from kept


# --------------------------------------------------------------------------------------------- dedup
def exact_dedup(docs: Iterable[Doc], drops: Counter) -> Iterator[Doc]:
    seen: set[bytes] = set()
    for text, source in docs:
        digest = hashlib.sha256(text.encode("utf-8")).digest()[:16]
        if digest in seen:
            drops["exact_duplicate"] += 1
        else:
            seen.add(digest)
            yield text, source


def shingles(text: str, n: int = 5) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {" ".join(words).encode("utf-8")}
    return {" ".join(words[i:i + n]).encode("utf-8") for i in range(len(words) - n + 1)}


def near_dedup(docs: Iterable[Doc], cfg: PrepareConfig, drops: Counter) -> Iterator[Doc]:
    """Drop a document whose MinHash collides in LSH with an earlier kept one."""
    if cfg.near_dup_threshold >= 1.0:
        yield from docs
        return
    import xxhash
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.num_perm)
    # xxhash: several times faster than datasketch's default sha1, and stable across runs.
    template = MinHash(num_perm=cfg.num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest)  # permutations made once
    for i, (text, source) in enumerate(docs):
        m = MinHash(num_perm=cfg.num_perm, seed=1, hashfunc=xxhash.xxh32_intdigest,
                    permutations=template.permutations, scheme=template.scheme)
        m.update_batch(list(shingles(text)))
        if lsh.query(m):
            drops["near_duplicate"] += 1
            continue
        lsh.insert(i, m, check_duplication=False)
        yield text, source


# --------------------------------------------------------------------------------------------- split
def split_key(doc_id: str, seed: int) -> float:
    """A number in [0, 1) from the content id and seed: the document's place in the split."""
    h = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(h[:8], "big") / 2**64


def split_of(key: float, cfg: PrepareConfig) -> str:
    if key < cfg.val_fraction:
        return "val"
    if key < cfg.val_fraction + cfg.test_fraction:
        return "test"
    return "train"


def _lent(keys: list[float], cfg: PrepareConfig) -> dict[float, str]:
    """For a corpus too small to fill val or test by hash alone: the train keys lent to them (the
    lowest ones above the boundary, so the choice still depends only on content)."""
    counts = Counter(split_of(k, cfg) for k in keys)
    train = sorted(k for k in keys if split_of(k, cfg) == "train")
    lent = {}
    for name, fraction in (("val", cfg.val_fraction), ("test", cfg.test_fraction)):
        if counts[name] == 0 and fraction > 0 and len(train) > 1:
            lent[train.pop(0)] = name
    return lent


# ------------------------------------------------------------------------------------------- writing
class _GzJsonl:
    """An append-only gzip JSONL writer (mtime 0, so the bytes depend only on the records)."""

    def __init__(self, path: Path, level: int = 6):
        self.raw = open(path, "wb")
        self.gz = gzip.GzipFile(fileobj=self.raw, mode="wb", compresslevel=level, mtime=0)

    def write(self, rec: dict) -> None:
        self.gz.write((json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))

    def close(self) -> None:
        self.gz.close()
        self.raw.close()


def eos_id(tokenizer) -> int:
    """The id that ends every document in a shard: <|endoftext|>, else the tokenizer's eos token."""
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if eos is None or eos == tokenizer.unk_token_id and tokenizer.unk_token != "<|endoftext|>":
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
        for texts in _batches(read_texts(records_file), batch):
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


def prepare(sources: list[str], out: str | Path, cfg: PrepareConfig | None = None, overwrite: bool = False) -> dict:
    """Prepare `sources` into `out` (see the module docstring); returns the manifest's summary. An existing
    `out` is replaced only with `overwrite`, and only if it is a directory Touchstone wrote."""
    from touchstone import __version__
    from touchstone.files import MANIFEST, atomic_dir, check_output, write_manifest
    from touchstone.records import text_record
    from touchstone.tokenizer import MAX_VOCAB, load_tokenizer, train_from_texts, world_texts

    cfg = cfg or PrepareConfig()
    out = Path(out)
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
    if cfg.executor is not None:  # the same stages as datatrove pipelines
        from touchstone.data_datatrove import prepare_datatrove

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
        kept = _GzJsonl(kept_path, level=1)  # read once, then deleted
        keys = []
        docs = near_dedup(exact_dedup(cleaned_and_filtered(raw_docs(), cfg, drops), drops), cfg, drops)
        for text, source in docs:
            rec = text_record(text, source)
            keys.append(split_key(rec["id"], cfg.seed))
            kept.write(rec)
        kept.close()
        if not keys:
            raise UserError(f"{', '.join(sources)}: no text left after filtering "
                            f"(dropped: {dict(drops) or 'nothing read'})")
        counts["chunks_kept"] = len(keys)

        # Pass 2: the split files.
        lent = _lent(keys, cfg)
        writers = {name: _GzJsonl(stage / "text" / f"{name}.jsonl.gz") for name in SPLITS}
        for rec, key in zip(read_records(kept_path), keys):
            name = lent.get(key) or split_of(key, cfg)
            writers[name].write(rec)
            counts[f"documents_{name}"] += 1
            counts[f"chars_{name}"] += len(rec["text"])
        for w in writers.values():
            w.close()
        kept_path.unlink()

        # Pass 3: the tokenizer, then the shards.
        if cfg.tokenizer:
            tok = load_tokenizer(cfg.tokenizer)
            if len(tok) > MAX_VOCAB:
                raise UserError(f"{cfg.tokenizer}: vocabulary of {len(tok)} does not fit uint16 shards "
                                f"(at most {MAX_VOCAB})")
            tok.save_pretrained(stage / "tokenizer")
        else:
            texts = read_texts(stage / "text" / "train.jsonl.gz")
            if cfg.world_records:
                texts = itertools.chain(texts, world_texts(cfg.world_records))
            train_from_texts(texts, stage / "tokenizer", cfg.vocab_size)
        # The directory's own manifest covers the tokenizer's files; a nested one would go unhashed.
        (stage / "tokenizer" / MANIFEST).unlink(missing_ok=True)
        tok = load_tokenizer(stage / "tokenizer")
        for name in SPLITS:
            counts[f"tokens_{name}"] = write_shard(stage / "text" / f"{name}.jsonl.gz", tok, stage / "tokens" / f"{name}.bin")

        summary = {"kind": "prepared-data", "touchstone": __version__, "sources": list(sources),
                   "counts": dict(counts), "dropped": dict(sorted(drops.items())),
                   "vocab_size": len(tok), "dtype": "uint16", "config": to_dict(cfg)}
        write_manifest(stage, summary)
    return summary


def read_records(path: str | Path) -> Iterator[dict]:
    from touchstone.files import read_jsonl

    for _, obj in read_jsonl(path):
        yield obj


if __name__ == "__main__":  # python -m touchstone.data SRC... OUT
    print(json.dumps(prepare(sys.argv[1:-1], sys.argv[-1]), indent=2))
