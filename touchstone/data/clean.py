"""Cleaning: Unicode repair and NFC, line endings, trailing spaces, runs of blank lines, optional
lowercasing; then long documents cut at paragraph boundaries into chunks, the unit of every later stage.

Guaranteed: the same text always gives the same chunks; a single line is never cut (a line longer than
`max_chars` is dropped by the length filter instead).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from touchstone.data.config import PrepareConfig
from touchstone.data.sources import Doc

# A word wherever the pipeline counts words: the repetition filter's 2-grams, the dedup shingles.
WORD = re.compile(r"\w+")
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING = re.compile(r"[ \t\u00a0]+\n")
# ftfy only changes text with non-ASCII characters, HTML entities or control characters; skipping the
# paragraphs without any (most of an English corpus) makes cleaning several times faster.
_NEEDS_FTFY = re.compile(r"[^\t\n\x20-\x7e]|&")


def _fix(text: str) -> str:
    import ftfy

    if not _NEEDS_FTFY.search(text):
        return text
    return "\n\n".join(
        ftfy.fix_text(p, normalization="NFC") if _NEEDS_FTFY.search(p) else p for p in text.split("\n\n")
    )


def clean(text: str, lowercase: bool = False) -> str:
    """Unicode repair + NFC, Unix line endings, no trailing spaces, at most one blank line in a row."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _BLANK_RUNS.sub("\n\n", _TRAILING.sub("\n", _fix(text) + "\n")).strip()
    return text.lower() if lowercase else text


def _pack(pieces: Iterable[str], size: int, sep: str) -> Iterator[str]:
    """Consecutive pieces joined by `sep` into groups of about `size` characters: a group is closed
    before the piece that would take it past `size` (a piece longer than `size` stands alone)."""
    group: list[str] = []
    n = 0
    for piece in pieces:
        if group and n + len(piece) > size:
            yield sep.join(group)
            group, n = [], 0
        group.append(piece)
        n += len(piece) + len(sep)
    if group:
        yield sep.join(group)


def chunks(text: str, size: int) -> Iterator[str]:
    """Cut at paragraph boundaries (blank lines) into pieces of at most about `size` characters; a
    paragraph longer than `size` is cut at line boundaries; a single line is never cut."""
    if len(text) <= size:
        yield text
        return
    pieces = (
        piece
        for para in text.split("\n\n")
        for piece in ([para] if len(para) <= size else _pack(para.split("\n"), size, "\n"))
    )
    yield from _pack(pieces, size, "\n\n")


def cleaned(docs: Iterable[Doc], cfg: PrepareConfig) -> Iterator[Doc]:
    for text, source in docs:
        for piece in chunks(clean(text, cfg.lowercase), cfg.chunk_chars):
            yield piece.strip(), source
