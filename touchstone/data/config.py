"""The settings of `touchstone data prepare`, one dataclass for every stage (their help is the CLI's)."""

from __future__ import annotations

from dataclasses import dataclass

from touchstone.config import Config, field


@dataclass
class PrepareConfig(Config):
    text_field: str = field(
        "text",
        help="JSONL/Parquet/dataset field holding the text (RefinedWeb's 'content' is used when 'text' is absent)",
    )
    lowercase: bool = field(False, help="lowercase all text")
    chunk_chars: int = field(
        4000, help="long documents are cut at paragraph boundaries into chunks of about this size", min=1
    )
    min_chars: int = field(64, help="drop chunks shorter than this (characters, after cleaning)", min=0)
    max_chars: int = field(100_000, help="drop chunks longer than this (only a single huge line can be)", min=1)
    max_repeated_lines: float = field(
        0.3, help="drop chunks where lines repeating an earlier line hold this fraction of the characters", min=0, max=1
    )
    max_top_ngram: float = field(
        0.2, help="drop chunks where the most frequent word 2-gram covers this fraction of the characters", min=0, max=1
    )
    min_printable: float = field(
        0.9,
        help="drop chunks with a smaller fraction of text characters (not "
        "control, private-use or U+FFFD): binary or mangled content",
        min=0,
        max=1,
    )
    near_dup_threshold: float = field(
        0.8,
        help="MinHash estimated Jaccard similarity above which a chunk "
        "is a near duplicate (1.0 disables near-dup removal)",
        above=0,
        max=1,
    )
    num_perm: int = field(128, help="MinHash permutations", min=2)
    val_fraction: float = field(0.01, help="fraction of documents in the validation split", min=0, max=1)
    test_fraction: float = field(0.01, help="fraction of documents in the test split", min=0, max=1)
    seed: int = field(0, help="salts the split hash; a different seed gives a different split")
    vocab_size: int = field(8192, help="vocabulary of the trained tokenizer", min=1)
    tokenizer: str | None = field(None, help="existing tokenizer directory (default: train one on the train split)")
    world_records: int = field(
        1000,
        help="records per world whose text joins the train split in training the "
        "tokenizer (touchstone.tokenizer.world_texts; 0: the corpus alone)",
    )
    workers: int = field(
        1,
        help="processes for cleaning and filtering (1: in this process); with an executor, "
        "how many datatrove tasks run at once",
        min=1,
    )
    executor: str | None = field(
        None,
        help="run as datatrove pipelines on its local, slurm or ray executor "
        "(default: none, this process; see data/datatrove_run.py)",
        choices=("local", "slurm", "ray"),
    )
    tasks: int = field(0, help="datatrove tasks, the shards the input is cut into (0: as many as workers)", min=0)
    slurm_partition: str | None = field(None, help="Slurm partition the jobs run on (executor slurm)")
    slurm_time: str = field("24:00:00", help="Slurm time limit of each job (executor slurm)")
