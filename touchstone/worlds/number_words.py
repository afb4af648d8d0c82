"""English number words, written and read back: 1205 <-> "one thousand two hundred five".

Written here (about thirty lines) rather than taken from num2words, because the numbers world's
verifier must also read them back exactly, and a parser for one fixed spelling is simpler than
following a package's spelling choices (num2words writes "and", commas, and varies by version).
"""

from __future__ import annotations

import re

ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
WORD_VALUE = {w: i for i, w in enumerate(ONES)} | {w: 10 * i for i, w in enumerate(TENS) if w}
MAX_WORDS = 999_999


def to_words(n: int) -> str:
    """American English without "and": 1205 -> "one thousand two hundred five"."""
    if not 0 <= n <= MAX_WORDS:
        raise ValueError(f"{n} is outside 0..{MAX_WORDS}")
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("-" + ONES[n % 10] if n % 10 else "")
    if n < 1000:
        return ONES[n // 100] + " hundred" + (" " + to_words(n % 100) if n % 100 else "")
    return to_words(n // 1000) + " thousand" + (" " + to_words(n % 1000) if n % 1000 else "")


def parse_number(text: str) -> int:
    """Digits ("1,205" or "1205") or the words `to_words` writes; ValueError for anything else."""
    text = text.strip().lower()
    if re.fullmatch(r"\d{1,3}(,\d{3})*|\d+", text):
        return int(text.replace(",", ""))
    total = current = 0
    words = text.replace("-", " ").split()
    if not words:
        raise ValueError("empty number")
    for w in words:
        if w in WORD_VALUE:
            current += WORD_VALUE[w]
        elif w == "hundred" and current:
            current *= 100
        elif w == "thousand" and current and not total:
            total, current = current * 1000, 0
        elif w != "and":
            raise ValueError(f"not a number word: {w!r}")
    return total + current
