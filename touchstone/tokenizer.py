"""Byte-level BPE tokenizer: train one with Hugging Face `tokenizers`, load any through transformers.

    touchstone tokenizer train data/orig --out tokenizer --vocab-size 8192

Guaranteed:
- byte-level, so every string round-trips (`decode(encode(s)) == s`) and there is no unknown token;
- every digit is its own token, whatever number it is in (the pre-tokenizer splits digits apart before
  the byte-level split, as LLaMA's and PaLM's do): with merged digits `87576` was `8|75|7|6` and ` 131`
  ` 1|31`, so the same digit in the same place was a different token from number to number (what that
  did and did not change in learning to compare numbers: docs/learning-curves.md);
- every token of `touchstone.prompts.SPECIAL_TOKENS` is reserved, in that order, at ids 0..11
  (`<|endoftext|>` is 0 and separates documents; `<|pad|>` is 1), and never produced by merges;
- the output directory loads with `AutoTokenizer.from_pretrained(dir)` and carries a MANIFEST.json
  (written last), so an interrupted training never leaves a complete-looking tokenizer.

Training data may be a prepared data directory (its train split), a text/JSONL file, or a folder of
them; text is streamed to the trainer, whose memory grows with the number of distinct words, not
with the size of the corpus. `world_texts` adds the worlds' own rendered text (`data prepare` does,
`PrepareConfig.world_records`), so the words the judge is asked about ("thousand", "larger", capital
and colour names) are in the vocabulary rather than spelled in fragments (`one| th|ous|and` when the
tokenizer saw the standard library's documentation alone).
"""

from __future__ import annotations

import functools
import itertools
import random
from collections.abc import Iterable, Iterator
from pathlib import Path

from touchstone.data.config import PrepareConfig
from touchstone.data.shards import read_texts
from touchstone.data.sources import read_source
from touchstone.errors import UserError
from touchstone.files import atomic_dir, check_output, write_manifest
from touchstone.prompts import EOS, PAD, SPECIAL_TOKENS
from touchstone.worlds import WORLDS, get_world, world_class

# 2**16: token ids are stored as uint16 in the prepared shards.
MAX_VOCAB = 65536
TEXT_SEED = 1  # any seed but the held-out suites' (the text is never trained on as records)


def _training_texts(data: str | Path) -> Iterator[str]:
    """Texts to train on: a prepared directory's train split, or anything `data prepare` can read."""
    path = Path(data)
    train = path / "text" / "train.jsonl.gz"
    if train.is_file():
        yield from read_texts(train)
        return
    for text, _source in read_source(str(data), PrepareConfig()):
        yield text


@functools.lru_cache(maxsize=4)
def world_texts(records: int, seed: int = TEXT_SEED) -> tuple[str, ...]:
    """About `records` records' worth of text (`World.texts`) from each world that does not read the corpus
    (the language world's sentences are the corpus's own), made once per process. The worlds are looked
    up here, not at import, so importing the tokenizer loads no world module."""
    names = [name for name in WORLDS if not world_class(name).reads_corpus]
    return tuple(t for name in names for t in get_world(name).texts(random.Random(seed), records))


def train_from_texts(texts: Iterable[str], out: str | Path, vocab_size: int = 8192, overwrite: bool = False) -> Path:
    """Train a byte-level BPE on `texts` and save it (atomically) as an AutoTokenizer directory."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if not len(SPECIAL_TOKENS) + 256 <= vocab_size <= MAX_VOCAB:
        raise UserError(f"vocab size {vocab_size}: must be between {len(SPECIAL_TOKENS) + 256} and {MAX_VOCAB}")
    tok = Tokenizer(models.BPE())
    # Digits first, one per piece, so that no merge can join them; then GPT-2's byte-level split.
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Peek so that an empty corpus is a clear error rather than a tokenizer with no merges.
    texts = iter(texts)
    first = next(texts, None)
    if first is None:
        raise UserError("tokenizer: no training text (the data is empty after filtering)")
    tok.train_from_iterator(itertools.chain([first], texts), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=PAD,
        additional_special_tokens=SPECIAL_TOKENS[2:],
        model_max_length=1 << 20,
        clean_up_tokenization_spaces=False,
    )
    with atomic_dir(out, overwrite=overwrite) as staging:
        fast.save_pretrained(staging)
        write_manifest(staging, {"kind": "tokenizer", "vocab_size": len(fast)})
    return Path(out)


def train_tokenizer(data: str | Path, out: str | Path, vocab_size: int = 8192, overwrite: bool = False) -> Path:
    """Train on `data` (a prepared directory, a text or JSONL file, or a folder) and save to `out`
    (an existing `out` only with `overwrite`, and only one Touchstone wrote)."""
    check_output(out, overwrite=overwrite, directory=True, kind="tokenizer")
    return train_from_texts(_training_texts(data), out, vocab_size, overwrite)


def load_tokenizer(path: str | Path):
    """A transformers PreTrainedTokenizerFast from a tokenizer, model or prepared data directory."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such tokenizer directory")
    if (path / "tokenizer").is_dir() and not (path / "tokenizer.json").exists():
        path = path / "tokenizer"  # a prepared data directory
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load a tokenizer ({str(e).splitlines()[0]})") from None
