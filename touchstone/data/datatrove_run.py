"""`touchstone data prepare --executor local|slurm|ray`: the plain path's stages as datatrove pipelines.

    touchstone data prepare ../shared/data/gutenberg web.parquet --out data/orig --executor local --tasks 4 --workers 2

The stages, each a datatrove pipeline of `tasks` tasks (shards of the input) unless noted (the blocks
are in datatrove_blocks.py, the one-task stages 7 and 9 in datatrove_finish.py):
1. clean: datatrove's JsonlReader, ParquetReader (record batches) and HuggingFaceDatasetReader, and
   `TextReader` for text files (sources.read_text_file's blocks) -> `Chunks` (clean.cleaned) -> the
   three filters of filters.py as `ReasonFilter` blocks (drops counted by reason) -> JsonlWriter ->
   ExactDedupSignature;
2. exact-find: ExactFindDedups (the content-hash index, sharded by hash range on disk);
3. minhash-signatures: ExactDedupFilter -> JsonlWriter -> MinhashDedupSignature;
4. minhash-buckets (one task per LSH band): MinhashDedupBuckets; 5. minhash-clusters (one task):
   MinhashDedupCluster; 6. split: MinhashDedupFilter -> `Split` (split.split_key / split_of) -> JsonlWriter;
7. tokenizer (one task): the plain path's lending of train documents, then the tokenizer trained or copied;
8. tokenize: datatrove's DocumentTokenizer (unshuffled: uint16 ids, <|endoftext|> after every document);
9. assemble (one task): the per-task files concatenated into the plain path's layout (gzip members and
   token files concatenate as they are) and MANIFEST.json, built in a staging directory and renamed into place.
Stages 3-5 and the MinHash filter are left out when `near_dup_threshold` is 1.

Guarantees:
- cleaning, chunking, the filters, exact dedup and the split are the plain path's own functions, so they
  keep and drop the same chunks, and a chunk's split depends on its text alone. Exact dedup keeps the
  first occurrence, as the plain path does: a chunk's priority is its file's place in the input (up to
  65,534 files; later files share the lowest priority), and within one file the earlier chunk wins;
- near duplicates: datatrove's MinHash on word 5-grams with the plain path's word pattern and the LSH bands
  that datasketch chooses for `near_dup_threshold` and `num_perm`, so the two paths agree on nearly every
  chunk (tests/test_data_datatrove.py measures it). They are not identical: datatrove keeps one chunk of
  each cluster of near duplicates (not always the first), datasketch keeps every chunk not close to a kept one;
- memory per task does not grow with the corpus beyond its own shard: both dedup indexes are files on disk,
  sorted per task and merged as streams; only MinhashDedupCluster holds the duplicate pairs (not every chunk);
- resumable: a killed or failed run, rerun with the same sources and settings, skips the tasks datatrove
  marked complete (`logs/STAGE/completions/`) in the work directory `.OUT.datatrove` beside OUT; OUT itself
  appears only once complete, atomically, and the work directory is removed after a local or ray run.
Not guaranteed: the order of documents inside a split follows the tasks, not the input; the gzip headers
carry a timestamp, so text files are identical record for record, not byte for byte (token shards are);
a malformed JSONL line is skipped with a warning by datatrove's reader, where the plain path stops with an
error; a trained tokenizer learns from the train split alone (the plain path adds the worlds' text,
`world_records`); a resumed run does not notice sources edited in between. Slurm leaves the work directory
for you to remove.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

from datasketch import MinHashLSH
from datatrove.pipeline.base import PipelineStep
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
from datatrove.pipeline.readers import (
    HuggingFaceDatasetReader,
    JsonlReader,
    ParquetReader,
)
from datatrove.pipeline.tokens import DocumentTokenizer
from datatrove.pipeline.writers import JsonlWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.text import TextNormConfig

from touchstone.config import to_dict
from touchstone.data.config import PrepareConfig
from touchstone.data.datatrove_blocks import (
    Chunks,
    RankReader,
    ReasonFilter,
    SourceAdapter,
    Split,
    TextReader,
    Words,
    exact_content,
    first_file_first,
    text_record_of,
)
from touchstone.data.datatrove_finish import Assemble, TrainTokenizer
from touchstone.data.filters import FILTERS
from touchstone.data.finish import given_tokenizer
from touchstone.data.shards import eos_id
from touchstone.data.sources import (
    file_kind,
    hf_spec,
    read_hf,
    saved_to_disk,
    source_files,
)
from touchstone.data.split import SPLITS
from touchstone.distributed import join_ray
from touchstone.errors import UserError
from touchstone.files import is_binary, write_json_atomic

ENGINES = ("local", "slurm", "ray")
# Settings that change neither the result nor the work directory's layout: a run may resume under others.
RUN_ONLY = ("executor", "workers", "slurm_partition", "slurm_time")


def readers(sources: list[str], cfg: PrepareConfig, work: Path) -> list[PipelineStep]:
    """datatrove readers over every input file (sources.source_files' choice and order), one per kind."""
    listed: dict[str, list[str]] = {"text": [], "jsonl": [], "parquet": []}
    origins: dict[str, dict] = {}
    steps: list[PipelineStep] = []
    order = 0
    for src in sources:
        if src.startswith("hf:"):
            next(read_hf(src, cfg.text_field), None)  # a dataset that does not load: one line, here
            name, config, split = hf_spec(src)
            on_disk = saved_to_disk(name)
            steps.append(
                HuggingFaceDatasetReader(
                    name,
                    None if on_disk else {"name": config or None, "split": split},
                    streaming=not on_disk,
                    load_from_disk=on_disk,
                    adapter=SourceAdapter(cfg.text_field, {}),
                    default_metadata={"source": src, "order": order},
                )
            )
            order += 1
            continue
        for path in source_files(src):
            kind = file_kind(path)
            if kind == "text" and is_binary(path):  # the plain path's first check, before any work
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
            steps.append(
                classes[kind](os.sep, paths_file=str(paths_file), adapter=SourceAdapter(cfg.text_field, origins))
            )
    return steps


def lsh_bands(cfg: PrepareConfig) -> tuple[int, int]:
    """(bands, rows per band) that datasketch picks for the threshold, so both paths draw the same S-curve."""
    lsh = MinHashLSH(threshold=cfg.near_dup_threshold, num_perm=cfg.num_perm)
    return lsh.b, lsh.r


def stages(
    sources: list[str], out: Path, cfg: PrepareConfig, work: Path, overwrite: bool = False
) -> list[tuple[str, list, int]]:
    """The pipelines, in order: (name, blocks, tasks)."""
    n = cfg.tasks
    w = str(work)
    exact = ExactDedupConfig(content_getter=exact_content, document_priority=first_file_first)
    near = cfg.near_dup_threshold < 1
    plan = [
        (
            "clean",
            [
                *readers(sources, cfg, work),
                Chunks(cfg),
                *(ReasonFilter(f, cfg) for f in FILTERS),
                JsonlWriter(f"{w}/chunks", "${rank}.jsonl", compression=None),
                ExactDedupSignature(f"{w}/exact/sigs", exact, finder_workers=n),
            ],
            n,
        ),
        ("exact-find", [ExactFindDedups(f"{w}/exact/sigs", f"{w}/exact/dups", exact)], n),
    ]
    unique = [RankReader(f"{w}/chunks"), ExactDedupFilter(f"{w}/exact/dups", exact)]
    if near:
        bands, rows = lsh_bands(cfg)
        # dedup.shingles lowercases and keeps \w+ runs; datatrove's defaults would also fold digits and accents.
        # sha1: datatrove hashes shingles as str, which the installed xxhash (4.x) refuses.
        minhash = MinhashConfig(
            n_grams=5,
            num_buckets=bands,
            hashes_per_bucket=rows,
            seed=1,
            norm_config=TextNormConfig(norm_numbers=False, norm_unicode_diacritics=False),
            hash_config=HashConfig(hash_fc="sha1"),
        )
        plan += [
            (
                "minhash-signatures",
                [
                    *unique,
                    JsonlWriter(f"{w}/unique", "${rank}.jsonl", compression=None),
                    MinhashDedupSignature(f"{w}/minhash/sigs", minhash, language=Words()),
                ],
                n,
            ),
            (
                "minhash-buckets",
                [MinhashDedupBuckets(f"{w}/minhash/sigs", f"{w}/minhash/buckets", config=minhash)],
                bands,
            ),
            (
                "minhash-clusters",
                [MinhashDedupCluster(f"{w}/minhash/buckets", f"{w}/minhash/clusters", config=minhash)],
                1,
            ),
        ]
        unique = [RankReader(f"{w}/unique"), MinhashDedupFilter(f"{w}/minhash/clusters")]
    plan.append(
        (
            "split",
            [*unique, Split(cfg), JsonlWriter(f"{w}/text", "${split}/${rank}.jsonl.gz", adapter=text_record_of)],
            n,
        )
    )
    plan.append(("tokenizer", [TrainTokenizer(sources, cfg, work)], 1))
    tokenize = []
    # Batches of shards.write_shard's size: datatrove's default (10,000 documents) holds all their Encodings at once.
    for split in SPLITS:
        (work / "text" / split).mkdir(parents=True, exist_ok=True)
        tokenize += [
            JsonlReader(f"{w}/text/{split}", glob_pattern="*.jsonl.gz"),
            DocumentTokenizer(
                f"{w}/tokens/{split}",
                tokenizer_name_or_path=f"{w}/tokenizer/tokenizer.json",
                eos_token=eos_token(cfg),
                save_filename=split,
                shuffle_documents=False,
                save_final_metadata=False,
                batch_size=512,
            ),
        ]
    plan.append(("tokenize", tokenize, n))
    plan.append(("assemble", [Assemble(sources, out, cfg, work, overwrite)], 1))
    return plan


def eos_token(cfg: PrepareConfig) -> str:
    """The token after every document: shards.eos_id's choice (a trained tokenizer has <|endoftext|>)."""
    if not cfg.tokenizer:
        return "<|endoftext|>"
    tok = given_tokenizer(cfg.tokenizer)
    return tok.convert_ids_to_tokens(eos_id(tok))


def executors(plan, cfg: PrepareConfig, work: Path) -> list:
    """One datatrove executor per stage. Slurm chains them with job dependencies; local and ray are run one
    after the other by `run`, which checks each stage finished before the next starts."""
    execs = []
    for name, pipeline, tasks in plan:
        common = {
            "pipeline": pipeline,
            "tasks": tasks,
            "workers": min(cfg.workers, tasks),
            "logging_dir": str(work / "logs" / name),
        }
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
            execs.append(
                SlurmPipelineExecutor(
                    **common,
                    time=cfg.slurm_time,
                    partition=cfg.slurm_partition,
                    job_name=f"touchstone-{name}",
                    venv_path=venv,
                    depends=execs[-1] if execs else None,
                )
            )
    return execs


def run(execs) -> None:
    for ex in execs:
        ex.run()
        if missing := ex.get_incomplete_ranks():
            raise UserError(
                f"{ex.logging_dir.path}: {len(missing)} of {ex.world_size} tasks did not finish "
                "(their logs are in logs/ there); run the same command again to resume"
            )


def _job(sources: list[str], cfg: PrepareConfig) -> dict:
    return {"sources": list(sources), "config": {k: v for k, v in to_dict(cfg).items() if k not in RUN_ONLY}}


def prepare_datatrove(sources: list[str], out: str | Path, cfg: PrepareConfig, overwrite: bool = False) -> dict:
    """prepare.prepare on datatrove (see the module docstring); returns the manifest's summary, or for slurm
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
            raise UserError(
                f"{work}: exists and is not a datatrove work directory of ours; remove it or choose another --out"
            )
        if json.loads(marker.read_text(encoding="utf-8")) != job:
            print(f"{work}: left by a run of other sources or settings; starting afresh", file=sys.stderr)
            shutil.rmtree(work)
        else:
            print(f"{work}: resuming (tasks already complete are skipped)", file=sys.stderr)
    work.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, job)
    execs = executors(stages(sources, out, cfg, work, overwrite), cfg, work)
    if cfg.executor == "slurm":
        execs[-1].run()  # submits every stage, each job depending on the one before
        return {"submitted": [ex.job_id for ex in execs], "work": str(work), "out": str(out)}
    if cfg.executor == "ray":
        join_ray(cfg.workers)
    run(execs)
    manifest = json.loads((out / "MANIFEST.json").read_text(encoding="utf-8"))
    shutil.rmtree(work)
    return {k: v for k, v in manifest.items() if k != "files"}
