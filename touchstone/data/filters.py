"""Filtering. The filter contract: a filter is made from the config, `make(cfg) -> check`, and a check
is text -> drop reason, or None to keep. `filtered` applies them in `FILTERS`' order and counts every drop
by its reason; datatrove_blocks.ReasonFilter runs the same checks as datatrove blocks.
"""

from __future__ import annotations

import functools
import itertools
import multiprocessing
import re
from collections import Counter
from collections.abc import Iterable, Iterator

from touchstone.data.clean import WORD, cleaned
from touchstone.data.config import PrepareConfig
from touchstone.data.sources import Doc, batches


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
        words = WORD.findall(text.lower())
        if len(words) >= 20:
            top, count = Counter(itertools.pairwise(words)).most_common(1)[0]
            if count > 1 and count * (len(top[0]) + len(top[1])) > cfg.max_top_ngram * len(text):
                return "repeated_ngrams"
        return None

    return check


FILTERS = (length_filter, binary_filter, repetition_filter)  # the first that objects names the drop


def filtered(docs: Iterable[Doc], cfg: PrepareConfig, drops: Counter) -> Iterator[Doc]:
    checks = [make(cfg) for make in FILTERS]
    for text, source in docs:
        reason = next((r for check in checks if (r := check(text))), None)
        if reason:
            drops[reason] += 1
        else:
            yield text, source


def _clean_and_filter(batch: list[Doc], cfg: PrepareConfig) -> tuple[list[Doc], Counter]:
    drops: Counter = Counter()
    return list(filtered(cleaned(batch, cfg), cfg, drops)), drops


def cleaned_and_filtered(docs: Iterable[Doc], cfg: PrepareConfig, drops: Counter) -> Iterator[Doc]:
    """`filtered(cleaned(docs))`, fanned out over `cfg.workers` processes in order when asked."""
    if cfg.workers <= 1:
        yield from filtered(cleaned(docs, cfg), cfg, drops)
        return
    work = functools.partial(_clean_and_filter, cfg=cfg)
    with multiprocessing.get_context("spawn").Pool(cfg.workers) as pool:
        for kept, batch_drops in pool.imap(work, batches(docs, 16)):
            drops.update(batch_drops)
            yield from kept
