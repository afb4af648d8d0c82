"""Contamination: whether a training record overlaps an evaluation set (lint's E013).

The evaluation sets are BLiMP, HumanEval and WikiText-2 by default (`default_eval_sets`: under
$TOUCHSTONE_EVAL_DATA, else the shared data folder), or any files and folders given. A record overlaps
when one of its sentences is an evaluation sentence, or when it shares a run of `NGRAM` words with an
evaluation text, both after `normalize`. Not caught: paraphrases of evaluation items.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import read_jsonl, read_text, shared_data

NGRAM = 13


def normalize(text: str) -> str:
    """Case, spacing and punctuation folded, so trivially reformatted copies still match."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.findall(r"\w+", text))


def _ngrams(norm: str) -> set[int]:
    words = norm.split()
    return {hash(" ".join(words[i : i + NGRAM])) for i in range(len(words) - NGRAM + 1)}


def _pieces(text: str) -> list[str]:
    """Lines and sentences of a text, normalized: the units compared with evaluation sentences."""
    out = []
    for line in text.splitlines():
        for sent in re.split(r"(?<=[.!?])\s+", line):
            norm = normalize(sent)
            if norm.count(" ") >= 2:  # three words or more
                out.append(norm)
    return out


def default_eval_sets() -> list[Path]:
    root = os.environ.get("TOUCHSTONE_EVAL_DATA")
    base = Path(root) if root else shared_data()
    found = [base / "blimp", base / "humaneval", base / "wikitext2" / "raw", base / "wikitext2" / "tokens"]
    return [p for p in found if p.exists()]


class EvalIndex:
    """Normalized evaluation sentences and the hashes of their 13-word runs."""

    def __init__(self, paths: list[Path]):
        self.sentences: set[str] = set()
        self.ngrams: set[int] = set()
        self.names: list[str] = [str(p) for p in paths]
        for path in paths:
            if not path.exists():
                raise UserError(f"{path}: no such evaluation set")
            files = (
                [path]
                if path.is_file()
                else sorted(p for p in path.rglob("*") if p.is_file() and not p.name.lower().startswith("readme"))
            )
            for f in files:
                for text, prose in _eval_texts(f):
                    if prose:  # code lines ("return total") are too common to match one by one
                        self.sentences.update(_pieces(text))
                    self.ngrams |= _ngrams(normalize(text))

    def overlap(self, text: str) -> str | None:
        """A short description of the first overlap, or None."""
        for piece in _pieces(text):
            if piece in self.sentences:
                return f"contains the evaluation sentence {piece[:60]!r}"
            if self.ngrams and not _ngrams(piece).isdisjoint(self.ngrams):
                return f"shares a {NGRAM}-word run with an evaluation set near {piece[:60]!r}"
        if self.ngrams and not _ngrams(normalize(text)).isdisjoint(self.ngrams):
            return f"shares a {NGRAM}-word run with an evaluation set"
        return None


def _eval_texts(path: Path):
    """The texts of one evaluation file: JSONL string fields that look like data, or text lines.

    Strict: a binary or undecodable file, a malformed JSON line, or a file with nothing to match is a
    UserError, since skipping it would quietly leave the records unchecked against that set."""
    name = path.name[:-3] if path.suffix == ".gz" else path.name
    found = 0
    if name.endswith((".jsonl", ".json")):
        for lineno, obj in read_jsonl(path):
            texts = [
                (obj[key], key not in ("prompt", "canonical_solution"))
                for key in (
                    "sentence_good",
                    "sentence_bad",
                    "text",
                    "statement",
                    "prompt",
                    "canonical_solution",
                    "a",
                    "b",
                )
                if isinstance(obj.get(key), str)
            ]
            if not texts:
                raise UserError(
                    f"{path}:{lineno}: evaluation record with none of the keys sentence_good, "
                    "sentence_bad, text, statement, prompt, canonical_solution, a, b"
                )
            found += len(texts)
            yield from texts
    else:
        for line in read_text(path, "evaluation text file").splitlines():
            if line.strip():
                found += 1
                yield line, True
    if not found:
        raise UserError(f"{path}: an empty evaluation set")
