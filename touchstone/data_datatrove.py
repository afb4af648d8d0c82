"""`touchstone data prepare --executor local|slurm|ray`: data.py's stages as datatrove pipelines.

    touchstone data prepare ../shared/data/gutenberg web.parquet --out data/orig --executor local --tasks 4 --workers 2

The stages, each a datatrove pipeline of `tasks` tasks (shards of the input) unless noted:
1. clean: datatrove's JsonlReader, ParquetReader (record batches) and HuggingFaceDatasetReader, and
   `TextReader` for text files (data.read_text_file's blocks) -> `Chunks` (data.cleaned) -> data.py's
   three filters as `ReasonFilter` blocks (drops counted by reason) -> JsonlWriter -> ExactDedupSignature;
2. exact-find: ExactFindDedups (the content-hash index, sharded by hash range on disk);
3. minhash-signatures: ExactDedupFilter -> JsonlWriter -> MinhashDedupSignature;
4. minhash-buckets (one task per LSH band): MinhashDedupBuckets; 5. minhash-clusters (one task):
   MinhashDedupCluster; 6. split: MinhashDedupFilter -> `Split` (data.split_key / split_of) -> JsonlWriter;
7. tokenizer (one task): the train-split lending of data.py, then the tokenizer trained or copied;
8. tokenize: datatrove's DocumentTokenizer (unshuffled: uint16 ids, <|endoftext|> after every document);
9. assemble (one task): the per-task files concatenated into data.py's layout (gzip members and token
   files concatenate as they are) and MANIFEST.json, built in a staging directory and renamed into place.
Stages 3-5 and the MinHash filter are left out when `near_dup_threshold` is 1.

Guarantees:
- cleaning, chunking, the filters, exact dedup and the split are data.py's own functions, so they keep
  and drop the same chunks, and a chunk's split depends on its text alone. Exact dedup keeps the first
  occurrence, as data.py does: a chunk's priority is its file's place in the input (up to 65,534 files;
  later files share the lowest priority), and within one file the earlier chunk wins;
- near duplicates: datatrove's MinHash on word 5-grams with data.py's word pattern and the LSH bands that
  datasketch chooses for `near_dup_threshold` and `num_perm`, so the two paths agree on nearly every chunk
  (tests/test_data_datatrove.py measures it). They are not identical: datatrove keeps one chunk of each
  cluster of near duplicates (not always the first), datasketch keeps every chunk not close to a kept one;
- memory per task does not grow with the corpus beyond its own shard: both dedup indexes are files on disk,
  sorted per task and merged as streams; only MinhashDedupCluster holds the duplicate pairs (not every chunk);
- resumable: a killed or failed run, rerun with the same sources and settings, skips the tasks datatrove
  marked complete (`logs/STAGE/completions/`) in the work directory `.OUT.datatrove` beside OUT; OUT itself
  appears only once complete, atomically, and the work directory is removed after a local or ray run.
Not guaranteed: the order of documents inside a split follows the tasks, not the input; the gzip headers
carry a timestamp, so text files are identical record for record, not byte for byte (token shards are);
a malformed JSONL line is skipped with a warning by datatrove's reader, where data.py stops with an error;
a resumed run does not notice sources edited in between. Slurm leaves the work directory for you to remove.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers.base import BaseDiskReader
from datatrove.pipeline.readers.jsonl import JsonlReader
from datatrove.utils.word_tokenizers import WordTokenizer

from touchstone import data
from touchstone.config import to_dict
from touchstone.errors import UserError

ENGINES = ("local", "slurm", "ray")
FILTERS = (data.length_filter, data.binary_filter, data.repetition_filter)  # data.filtered's order
# Settings that change neither the result nor the work directory's layout: a run may resume under others.
RUN_ONLY = ("executor", "workers", "slurm_partition", "slurm_time")


# -------------------------------------------------------------------------------------------- blocks
class SourceAdapter:
    """Reader adapter: the text field picked per record as data.py picks it, and where the record came from."""

    def __init__(self, text_field: str, origins: dict[str, dict]):
        self.text_field = text_field
        self.origins = origins  # reader path -> {"source": as data.py names it, "order": place in the input}

    def __call__(self, reader, record: dict, path: str, id_in_file) -> dict:
        key = data._pick_field(record.keys(), self.text_field, f"{path}:{id_in_file}")
        text = record[key]
        if not isinstance(text, str):
            raise UserError(f"{path}:{id_in_file}: key '{key}' should be a string, got {type(text).__name__}")
        meta = dict(self.origins.get(path, {}))
        if not text:  # datatrove's readers skip empty texts; data.py counts them, dropped too_short
            text, meta["empty"] = " ", True
        return {"text": text, "id": f"{path}/{id_in_file}", "metadata": meta}


class TextReader(BaseDiskReader):
    """Text files as data.read_text_file's blocks (about 1 MB, cut at blank lines), one document each."""

    name = "text"

    def read_file(self, filepath: str):
        path = Path(self.data_folder.resolve_paths(filepath))
        for i, (block, _) in enumerate(data.read_text_file(path, data.TEXT_BLOCK_CHARS)):
            if doc := self.get_document_from_dict({"text": block}, filepath, i):
                yield doc


class RankReader(JsonlReader):
    """The file this task's rank wrote in an earlier stage: a dedup index refers to documents by their
    place in that one file, so the usual sharding of a folder over tasks would not line up."""

    name = "rank file"

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        name = f"{rank:05d}.jsonl"
        if self.data_folder.exists(name):
            yield from self.read_files_shard([name])


class Chunks(PipelineStep):
    """data.cleaned: Unicode repair and normalization, then cut into chunks of about `chunk_chars`."""

    type = "✂️ - CLEAN"
    name = "chunks"

    def __init__(self, cfg: data.PrepareConfig):
        super().__init__()
        self.cfg = cfg

    def run(self, docs, rank: int = 0, world_size: int = 1):
        for doc in docs:
            raw = "" if doc.metadata.pop("empty", False) else doc.text
            self.stat_update("documents")
            self.stat_update("bytes_in", value=len(raw.encode("utf-8")))
            for i, (text, _) in enumerate(data.cleaned([(raw, "")], self.cfg)):
                yield Document(text=text, id=f"{doc.id}/{i}", metadata=doc.metadata)


class ReasonFilter(BaseFilter):
    """One of data.py's filters (text -> drop reason or None) as a datatrove filter: datatrove counts each
    drop as `dropped_REASON`."""

    def __init__(self, make_check, cfg: data.PrepareConfig):
        self.name = make_check.__name__  # before BaseFilter names its stats
        super().__init__()
        self.check = make_check(cfg)

    def filter(self, doc: Document):
        reason = self.check(doc.text)
        return (False, reason) if reason else True


class Words(WordTokenizer):
    """data.shingles' words (the `\\w+` runs), for datatrove's MinHash shingles."""

    def word_tokenize(self, text: str) -> list[str]:
        return data._WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [text]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in data._WORD.finditer(text)]


class Split(PipelineStep):
    """data.split_key / split_of: the text record's id decides the split; tagged for the writer's file name."""

    type = "🔀 - SPLIT"
    name = "split"

    def __init__(self, cfg: data.PrepareConfig):
        super().__init__()
        self.cfg = cfg

    def run(self, docs, rank: int = 0, world_size: int = 1):
        from touchstone.records import text_record

        for doc in docs:
            rec = text_record(doc.text, doc.metadata["source"])
            split = data.split_of(data.split_key(rec["id"], self.cfg.seed), self.cfg)
            doc.id = rec["id"]
            doc.metadata["split"] = split
            self.stat_update(f"documents_{split}")
            self.stat_update(f"chars_{split}", value=len(doc.text))
            yield doc


def text_record_of(writer, doc: Document) -> dict:
    """JsonlWriter adapter: data.py's text record, keys in its (sorted) order."""
    return {"id": doc.id, "source": doc.metadata["source"], "text": doc.text}


def exact_content(doc: Document) -> bytes:
    return doc.text.encode("utf-8")


def first_file_first(doc: Document) -> int:
    """ExactDedupConfig priority (1-65535, highest kept): earlier files win, as in data.exact_dedup."""
    return max(1, 65535 - doc.metadata["order"])


class TrainTokenizer(PipelineStep):
    """data.py's lending (a split the hash left empty gets the train documents nearest the boundary), then
    the tokenizer: trained on the train split, or the one given."""

    type = "🔤 - TOKENIZER"
    name = "tokenizer"

    def __init__(self, sources: list[str], cfg: data.PrepareConfig, work: Path):
        super().__init__()
        self.sources, self.cfg, self.work = sources, cfg, work

    def run(self, docs=None, rank: int = 0, world_size: int = 1):
        from touchstone.files import MANIFEST
        from touchstone.tokenizer import load_tokenizer, train_from_texts

        counts, drops = tally(self.work, self.cfg)
        if not any(counts[f"documents_{s}"] for s in data.SPLITS):
            raise UserError(f"{', '.join(self.sources)}: no text left after filtering "
                            f"(dropped: {dict(drops) or 'nothing read'})")
        lend(self.work, self.cfg)
        out = self.work / "tokenizer"
        shutil.rmtree(out, ignore_errors=True)  # a previous attempt's
        if self.cfg.tokenizer:
            load_tokenizer(self.cfg.tokenizer).save_pretrained(out)
        else:
            texts = (t for f in split_files(self.work, "train") for t in data.read_texts(f))
            train_from_texts(texts, out, self.cfg.vocab_size)
        (out / MANIFEST).unlink(missing_ok=True)


def split_files(work: Path, split: str) -> list[Path]:
    return sorted((work / "text" / split).glob("*.jsonl.gz"))


def lend(work: Path, cfg: data.PrepareConfig) -> None:
    """data._lent over the split files. The decision is written first (lent.json) and applied after, both
    idempotent, so that a task killed halfway and run again neither loses nor doubles a document."""
    import heapq

    from touchstone.files import write_json_atomic

    decision = work / "lent.json"
    if not decision.exists():
        lent = {}
        fractions = {"val": cfg.val_fraction, "test": cfg.test_fraction}
        if empty := [s for s in ("val", "test") if not split_files(work, s) and fractions[s] > 0]:
            n_train = 0

            def train_records():
                nonlocal n_train
                for f in split_files(work, "train"):
                    for rec in data.read_records(f):
                        n_train += 1
                        yield rec

            lowest = heapq.nsmallest(len(empty), train_records(), key=lambda r: data.split_key(r["id"], cfg.seed))
            for split in empty:
                if n_train - len(lent) > 1 and lowest:
                    lent[split] = lowest.pop(0)
        write_json_atomic(decision, lent)
    lent = json.loads(decision.read_text(encoding="utf-8"))
    for split, rec in lent.items():
        _write_records(work / "text" / split / "00000.jsonl.gz", [rec])
    gone = {rec["id"] for rec in lent.values()}
    for f in split_files(work, "train") if gone else []:
        recs = list(data.read_records(f))  # one task's file, and only in a corpus small enough to need lending
        if any(r["id"] in gone for r in recs):
            _write_records(f, [r for r in recs if r["id"] not in gone])


def _write_records(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    w = data._GzJsonl(tmp)
    for rec in records:
        w.write(rec)
    w.close()
    os.replace(tmp, path)


class Assemble(PipelineStep):
    """The per-task files into data.py's layout, with its manifest, built aside and renamed into place."""

    type = "📦 - ASSEMBLE"
    name = "assemble"

    def __init__(self, sources: list[str], out: Path, cfg: data.PrepareConfig, work: Path, overwrite: bool):
        super().__init__()
        self.sources, self.out, self.cfg, self.work = sources, out, cfg, work
        self.overwrite = overwrite  # prepare checked the output before any task ran

    def run(self, docs=None, rank: int = 0, world_size: int = 1):
        from touchstone import __version__
        from touchstone.files import atomic_dir, write_manifest
        from touchstone.tokenizer import load_tokenizer

        work = self.work
        counts, drops = tally(work, self.cfg)
        lent = json.loads((work / "lent.json").read_text(encoding="utf-8"))
        for split, rec in lent.items():
            counts["documents_train"] -= 1
            counts["chars_train"] -= len(rec["text"])
            counts[f"documents_{split}"] += 1
            counts[f"chars_{split}"] += len(rec["text"])
        counts["chunks_kept"] = sum(counts[f"documents_{s}"] for s in data.SPLITS)

        with atomic_dir(self.out, overwrite=self.overwrite) as stage:
            (stage / "text").mkdir()
            (stage / "tokens").mkdir()
            for split in data.SPLITS:
                parts = split_files(work, split)
                if parts:
                    _concat(parts, stage / "text" / f"{split}.jsonl.gz")
                else:
                    data._GzJsonl(stage / "text" / f"{split}.jsonl.gz").close()
                _concat(sorted((work / "tokens" / split).glob("*.ds")), stage / "tokens" / f"{split}.bin")
                counts[f"tokens_{split}"] = (stage / "tokens" / f"{split}.bin").stat().st_size // 2
            shutil.copytree(work / "tokenizer", stage / "tokenizer")
            summary = {"kind": "prepared-data", "touchstone": __version__, "sources": list(self.sources),
                       "counts": dict(counts), "dropped": dict(sorted(drops.items())),
                       "vocab_size": len(load_tokenizer(stage / "tokenizer")), "dtype": "uint16",
                       "config": to_dict(self.cfg)}
            write_manifest(stage, summary)


def tally(work: Path, cfg: data.PrepareConfig) -> tuple[Counter, Counter]:
    """data.prepare's counts (before lending) and drop reasons, from the stages' datatrove stats."""
    from datatrove.pipeline.dedup import MinhashDedupFilter
    from datatrove.pipeline.dedup.exact_dedup import ExactDedupFilter

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


# ---------------------------------------------------------------------------------------------- plan
def readers(sources: list[str], cfg: data.PrepareConfig, work: Path) -> list[PipelineStep]:
    """datatrove readers over every input file (data.source_files' choice and order), one per kind."""
    from datatrove.pipeline.readers import HuggingFaceDatasetReader, ParquetReader

    listed: dict[str, list[str]] = {"text": [], "jsonl": [], "parquet": []}
    origins: dict[str, dict] = {}
    steps: list[PipelineStep] = []
    order = 0
    for src in sources:
        if src.startswith("hf:"):
            next(data.read_hf(src, cfg.text_field), None)  # a dataset that does not load: one line, here
            name, config, split = data.hf_spec(src)
            on_disk = Path(name, "state.json").exists() or Path(name, "dataset_dict.json").exists()
            steps.append(HuggingFaceDatasetReader(
                name, None if on_disk else {"name": config or None, "split": split}, streaming=not on_disk,
                load_from_disk=on_disk, adapter=SourceAdapter(cfg.text_field, {}),
                default_metadata={"source": src, "order": order}))
            order += 1
            continue
        for path in data.source_files(src):
            kind = data.file_kind(path)
            if kind == "text" and data._is_binary(path):  # data.py's first check, before any work
                raise UserError(f"{path}: binary file (NUL bytes), not text")
            rel = os.path.abspath(path).lstrip(os.sep)
            listed[kind].append(rel)
            origins[rel] = {"source": str(path), "order": order}
            order += 1
    (work / "inputs").mkdir(parents=True, exist_ok=True)
    classes = {"text": TextReader, "jsonl": JsonlReader, "parquet": ParquetReader}
    for kind, rels in listed.items():
        if rels:
            paths_file = work / "inputs" / f"{kind}.txt"
            paths_file.write_text("".join(r + "\n" for r in rels), encoding="utf-8")
            steps.append(classes[kind](os.sep, paths_file=str(paths_file), adapter=SourceAdapter(cfg.text_field, origins)))
    return steps


def lsh_bands(cfg: data.PrepareConfig) -> tuple[int, int]:
    """(bands, rows per band) that datasketch picks for the threshold, so both paths draw the same S-curve."""
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.num_perm)
    return lsh.b, lsh.r


def stages(sources: list[str], out: Path, cfg: data.PrepareConfig, work: Path,
           overwrite: bool = False) -> list[tuple[str, list, int]]:
    """The pipelines, in order: (name, blocks, tasks)."""
    from datatrove.pipeline.dedup import (
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.dedup.exact_dedup import (
        ExactDedupConfig,
        ExactDedupFilter,
        ExactDedupSignature,
        ExactFindDedups,
    )
    from datatrove.pipeline.dedup.minhash import MinhashConfig
    from datatrove.pipeline.tokens import DocumentTokenizer
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashing import HashConfig
    from datatrove.utils.text import TextNormConfig

    n = cfg.tasks
    w = str(work)
    exact = ExactDedupConfig(content_getter=exact_content, document_priority=first_file_first)
    near = cfg.near_dup_threshold < 1
    plan = [
        ("clean", [*readers(sources, cfg, work), Chunks(cfg), *(ReasonFilter(f, cfg) for f in FILTERS),
                   JsonlWriter(f"{w}/chunks", "${rank}.jsonl", compression=None),
                   ExactDedupSignature(f"{w}/exact/sigs", exact, finder_workers=n)], n),
        ("exact-find", [ExactFindDedups(f"{w}/exact/sigs", f"{w}/exact/dups", exact)], n),
    ]
    unique = [RankReader(f"{w}/chunks"), ExactDedupFilter(f"{w}/exact/dups", exact)]
    if near:
        bands, rows = lsh_bands(cfg)
        # data.shingles lowercases and keeps \w+ runs; datatrove's defaults would also fold digits and accents.
        # sha1: datatrove hashes shingles as str, which the installed xxhash (4.x) refuses.
        minhash = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows, seed=1,
                                norm_config=TextNormConfig(norm_numbers=False, norm_unicode_diacritics=False),
                                hash_config=HashConfig(hash_fc="sha1"))
        plan += [
            ("minhash-signatures", [*unique, JsonlWriter(f"{w}/unique", "${rank}.jsonl", compression=None),
                                    MinhashDedupSignature(f"{w}/minhash/sigs", minhash, language=Words())], n),
            ("minhash-buckets", [MinhashDedupBuckets(f"{w}/minhash/sigs", f"{w}/minhash/buckets", config=minhash)],
             bands),
            ("minhash-clusters", [MinhashDedupCluster(f"{w}/minhash/buckets", f"{w}/minhash/clusters",
                                                      config=minhash)], 1),
        ]
        unique = [RankReader(f"{w}/unique"), MinhashDedupFilter(f"{w}/minhash/clusters")]
    plan.append(("split", [*unique, Split(cfg), JsonlWriter(f"{w}/text", "${split}/${rank}.jsonl.gz",
                                                            adapter=text_record_of)], n))
    plan.append(("tokenizer", [TrainTokenizer(sources, cfg, work)], 1))
    tokenize = []
    # Batches of data.write_shard's size: datatrove's default of 10,000 documents holds ~0.7 GB of Encodings.
    for split in data.SPLITS:
        (work / "text" / split).mkdir(parents=True, exist_ok=True)
        tokenize += [JsonlReader(f"{w}/text/{split}", glob_pattern="*.jsonl.gz"),
                     DocumentTokenizer(f"{w}/tokens/{split}", tokenizer_name_or_path=f"{w}/tokenizer/tokenizer.json",
                                       eos_token=eos_token(cfg), save_filename=split, shuffle_documents=False,
                                       save_final_metadata=False, batch_size=512)]
    plan.append(("tokenize", tokenize, n))
    plan.append(("assemble", [Assemble(sources, out, cfg, work, overwrite)], 1))
    return plan


def eos_token(cfg: data.PrepareConfig) -> str:
    """The token after every document: data.eos_id's choice (a trained tokenizer has <|endoftext|>)."""
    if not cfg.tokenizer:
        return "<|endoftext|>"
    from touchstone.tokenizer import MAX_VOCAB, load_tokenizer

    tok = load_tokenizer(cfg.tokenizer)
    if len(tok) > MAX_VOCAB:
        raise UserError(f"{cfg.tokenizer}: vocabulary of {len(tok)} does not fit uint16 shards (at most {MAX_VOCAB})")
    return tok.convert_ids_to_tokens(data.eos_id(tok))


def executors(plan, cfg: data.PrepareConfig, work: Path) -> list:
    """One datatrove executor per stage. Slurm chains them with job dependencies; local and ray are run one
    after the other by `run`, which checks each stage finished before the next starts."""
    execs = []
    for name, pipeline, tasks in plan:
        common = {"pipeline": pipeline, "tasks": tasks, "workers": min(cfg.workers, tasks),
                  "logging_dir": str(work / "logs" / name)}
        if cfg.executor == "local":
            from datatrove.executor import LocalPipelineExecutor

            execs.append(LocalPipelineExecutor(**common))
        elif cfg.executor == "ray":
            from datatrove.executor import RayPipelineExecutor

            execs.append(RayPipelineExecutor(**common, cpus_per_task=1))
        else:
            from datatrove.executor import SlurmPipelineExecutor

            if not cfg.slurm_partition:
                raise UserError("config: key 'slurm_partition' is required with --executor slurm")
            venv = sys.prefix if sys.prefix != sys.base_prefix else None
            execs.append(SlurmPipelineExecutor(**common, time=cfg.slurm_time, partition=cfg.slurm_partition,
                                               job_name=f"touchstone-{name}", venv_path=venv,
                                               depends=execs[-1] if execs else None))
    return execs


def run(execs) -> None:
    for ex in execs:
        ex.run()
        if missing := ex.get_incomplete_ranks():
            raise UserError(f"{ex.logging_dir.path}: {len(missing)} of {ex.world_size} tasks did not finish "
                            "(their logs are in logs/ there); run the same command again to resume")


def _job(sources: list[str], cfg: data.PrepareConfig) -> dict:
    return {"sources": list(sources), "config": {k: v for k, v in to_dict(cfg).items() if k not in RUN_ONLY}}


def _ray_init(cfg: data.PrepareConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()  # an existing cluster, where touchstone is installed
    else:  # a cluster of this machine: its workers import this same touchstone
        root = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        ray.init(num_cpus=cfg.workers, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})


def prepare_datatrove(sources: list[str], out: str | Path, cfg: data.PrepareConfig, overwrite: bool = False) -> dict:
    """data.prepare on datatrove (see the module docstring); returns the manifest's summary, or for slurm
    the submitted job ids."""
    if cfg.executor not in ENGINES:
        raise UserError(f"config: key 'executor' must be one of {', '.join(ENGINES)}, got {cfg.executor!r}")
    if cfg.workers < 1 or cfg.tasks < 0:
        raise UserError("config: key 'workers' must be at least 1 and 'tasks' at least 0")
    cfg = dataclasses.replace(cfg, tasks=cfg.tasks or cfg.workers)
    out = Path(out)
    work = out.parent / f".{out.name}.datatrove"
    job = _job(sources, cfg)
    marker = work / "job.json"
    if work.exists():
        if not marker.exists():
            raise UserError(f"{work}: exists and is not a datatrove work directory of ours; remove it or choose "
                            "another --out")
        if json.loads(marker.read_text(encoding="utf-8")) != job:
            print(f"{work}: left by a run of other sources or settings; starting afresh", file=sys.stderr)
            shutil.rmtree(work)
        else:
            print(f"{work}: resuming (tasks already complete are skipped)", file=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    from touchstone.files import write_json_atomic

    write_json_atomic(marker, job)
    execs = executors(stages(sources, out, cfg, work, overwrite), cfg, work)
    if cfg.executor == "slurm":
        execs[-1].run()  # submits every stage, each job depending on the one before
        return {"submitted": [ex.job_id for ex in execs], "work": str(work), "out": str(out)}
    if cfg.executor == "ray":
        _ray_init(cfg)
    run(execs)
    manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    shutil.rmtree(work)
    return {k: v for k, v in manifest.items() if k != "files"}

