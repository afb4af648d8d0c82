"""`touchstone data prepare`: sources -> clean text -> filters -> dedup -> split -> tokenizer -> token shards.

    touchstone data prepare ../shared/data/gutenberg ../shared/data/tinyshakespeare --out data/orig
    touchstone data prepare corpus.jsonl.gz web.parquet hf:wikitext:wikitext-2-raw-v1@train --out data/orig

Output:
    DIR/text/{train,val,test}.jsonl.gz   text records {"id", "text", "source"} after cleaning
    DIR/tokenizer/                        AutoTokenizer-loadable (trained on the train split unless given)
    DIR/tokens/{train,val,test}.bin       uint16 token ids, every document followed by <|endoftext|>
    DIR/MANIFEST.json                     counts, drop reasons, sha256 of every file, resolved config

Sources: a folder (recursively: .txt, .md, .jsonl, .jsonl.gz, .parquet), any of those files, another
file read as plain text, or `hf:NAME[:CONFIG][@SPLIT]` for `datasets.load_dataset(NAME, CONFIG,
split=SPLIT, streaming=True)` (NAME may be a local folder; a `save_to_disk` folder is read too).
JSONL, Parquet and datasets take their text from `text_field`; RefinedWeb's `content` is used when
`text` is absent.

The stages, in order, one module each, each a generator over (text, source) documents:
- config.py   `PrepareConfig`, the settings of every stage;
- sources.py  reading: every source streamed as raw documents;
- clean.py    Unicode repair and NFC (ftfy), line endings, trailing spaces, runs of blank lines, optional
              lowercasing; then long documents (a novel in one file) are cut at paragraph boundaries into
              chunks of about `chunk_chars`, the unit of everything below;
- filters.py  each filter is a function text -> drop reason or None, and every drop is counted by reason
              (too_short, too_long, binary, repeated_lines, repeated_ngrams);
- dedup.py    exact dedup by content hash, then near-duplicate removal with MinHash LSH (word 5-gram
              shingles, `near_dup_threshold` estimated Jaccard similarity); the first occurrence is kept;
- split.py    train/val/test by a hash of the content (and `seed`): a document's split depends on its text
              alone, so re-running or adding sources never moves it. The one exception: when a small corpus
              would leave val or test empty, the kept train documents closest to the boundary are lent to it;
- shards.py   the text-record files, and the uint16 token shards of a byte-level BPE tokenizer trained on
              the train split and the worlds' text (touchstone.tokenizer), or the `tokenizer` given;
- finish.py   what the plain and the datatrove path finish alike: the tokenizer, the manifest's summary;
- prepare.py  `prepare`: the stages chained into one prepared directory.

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
sharded into `tasks`, with both dedup indexes on disk (datatrove_run.py says what it keeps identical and
what not; datatrove_blocks.py holds the per-document stages as datatrove blocks, datatrove_finish.py the
tokenizer and assembly). On one machine the plain path is simpler and fast enough; `workers` fans
cleaning and filtering out over local processes.

This package's __init__ imports nothing: `touchstone.tokenizer` reads sources through `sources.py`
while `prepare.py` trains tokenizers, and importing one stage never loads the others.
"""
