"""Language: sentences from a corpus and corrupted versions of them; the original is the better one.

Sources (`LanguageWorld(source=...)`, one path or several): a prepared data directory (its
`text/train.jsonl.gz` only, so validation and test text never becomes a judging item), a JSONL(.gz) of
text records, a folder of .txt/.md files, or one text file. Without a source the embedded default
corpus is used (`touchstone.corpus.default_sources()`). Project Gutenberg headers and licences are
skipped. Sentences are kept when they are plain: 6 to 24 words, a capital first letter, a full stop
at the end, letters and light punctuation only, no quotes or digits.

Corruptions (`OPS`): swap two neighbouring words; flip subject-verb agreement (is/are, was/were,
has/have, does/do); drop or double a function word; the wrong determiner (a/an, this/these,
that/those); the wrong pronoun or reflexive (he/him, I/me, himself/herself, ...); an irregular verb's
past tense and past participle exchanged (went/gone, saw/seen, had written/had wrote, ...).

Verification: an item {"text", "original", "op"} is ok when its text is the original and the original
is a sentence of the loaded corpus. A record is checked against its recorded source (the verdict's
evidence keeps the original and the corruption), so a flipped label or an edited side is caught.
Guaranteed: sentences found in the evaluation sets (BLiMP, the WikiText-2 test split under
$TOUCHSTONE_SHARED_DATA when present) are never used, and BLiMP is never a source.
Not guaranteed: that every corruption is ungrammatical (a swap of two adjectives can be harmless);
the original is still, by construction, the attested sentence.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import random
import re
from pathlib import Path

from touchstone.errors import UserError
from touchstone.files import shared_data
from touchstone.records import claim_record, pair_record
from touchstone.synth import in_split
from touchstone.worlds.base import Verdict, World

MAX_SENTENCES = 40_000  # enough variety; reading more only costs time
MAX_CHARS_PER_FILE = 2_000_000
SENTENCE_RE = re.compile(r"[A-Z][A-Za-z]*(?:[ ][A-Za-z][A-Za-z'-]*[,;]?)+[.]")
ABBREVIATIONS = {"mr", "mrs", "dr", "st", "messrs", "mme", "esq", "vs", "no"}
PAIR_PROMPT = "Which sentence is better written?"
CLAIM_RE = re.compile(r'"(?P<s>.+)" is a well-formed English sentence\.')

FUNCTION_WORDS = ["the", "a", "an", "of", "to", "in", "and", "that", "for", "with", "on", "at", "by", "it", "is",
                  "was", "be", "as"]
AGREEMENT = {"is": "are", "are": "is", "was": "were", "were": "was", "has": "have", "have": "has", "does": "do",
             "do": "does"}
DETERMINERS = {"a": "an", "an": "a", "this": "these", "these": "this", "that": "those", "those": "that"}
PRONOUNS = {"he": "him", "him": "he", "she": "her", "they": "them", "them": "they", "i": "me", "me": "I",
            "we": "us", "us": "we", "himself": "herself", "herself": "himself", "themselves": "himself",
            "myself": "me"}
# Irregular verbs whose past tense and past participle differ, so exchanging them is always an error
# ("She went home" / "She gone home"; "It had begun" / "It had began"). Verbs whose two forms are
# the same ("held", "put") are left out, and so is "bit", far more often a noun than a verb.
_PAST_PARTICIPLE = {"went": "gone", "saw": "seen", "did": "done", "took": "taken", "wrote": "written",
                    "ate": "eaten", "broke": "broken", "spoke": "spoken", "chose": "chosen", "drove": "driven",
                    "gave": "given", "knew": "known", "rose": "risen", "began": "begun", "sang": "sung",
                    "drank": "drunk", "ran": "run", "came": "come", "became": "become", "forgot": "forgotten",
                    "hid": "hidden", "fell": "fallen", "froze": "frozen", "stole": "stolen", "wore": "worn",
                    "tore": "torn", "threw": "thrown", "grew": "grown", "flew": "flown", "drew": "drawn",
                    "shook": "shaken", "rode": "ridden", "forgave": "forgiven", "showed": "shown",
                    "sank": "sunk", "mistook": "mistaken"}
IRREGULAR = {**_PAST_PARTICIPLE, **{pp: past for past, pp in _PAST_PARTICIPLE.items()}}


def norm(sentence: str) -> str:
    """The comparison key for decontamination: lower-case words only."""
    return " ".join(re.findall(r"[a-z']+", sentence.lower()))


@functools.lru_cache(maxsize=1)
def eval_sentences() -> frozenset[str]:
    """Normalized sentences of the evaluation sets present on this machine (never training items)."""
    keys: set[str] = set()
    blimp = shared_data() / "blimp" / "data"
    for path in sorted(blimp.glob("*.jsonl*")) if blimp.is_dir() else []:
        with (gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")) as f:
            for line in f:
                obj = json.loads(line)
                keys.update(norm(obj[k]) for k in ("sentence_good", "sentence_bad") if k in obj)
    wiki = shared_data() / "wikitext2" / "raw" / "wiki.test.raw"
    if wiki.is_file():
        keys.update(norm(s) for s in re.split(r"(?<=[.!?])\s+", wiki.read_text(encoding="utf-8")))
    return frozenset(keys)


def _texts(path: Path):
    """The raw texts a source path holds."""
    if path.is_dir() and (path / "text" / "train.jsonl.gz").is_file():
        path = path / "text" / "train.jsonl.gz"
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file() and p.name.endswith((".txt", ".md", ".jsonl", ".jsonl.gz")):
                yield from _texts(p)
        return
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        from touchstone.files import read_jsonl

        for _, obj in read_jsonl(path):
            if isinstance(obj.get("text"), str):
                yield obj["text"]
        return
    text = path.read_text(encoding="utf-8", errors="replace")[:MAX_CHARS_PER_FILE]
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start >= 0:  # a Project Gutenberg book: only the body between its markers
        text = text[text.find("\n", start) + 1:end if end > start else None]
    yield text


def split_sentences(text: str) -> list[str]:
    out = []
    for para in re.split(r"\n\s*\n", text):
        pieces: list[str] = []
        for piece in re.split(r"(?<=[.!?])\s+", " ".join(para.split())):
            # "Mr. Collins returned." is one sentence, not two.
            if pieces and pieces[-1].split()[-1].rstrip(".").lower() in ABBREVIATIONS:
                pieces[-1] += " " + piece
            else:
                pieces.append(piece)
        out += [s for s in pieces if 6 <= len(s.split()) <= 24 and SENTENCE_RE.fullmatch(s) and not s.isupper()]
    return out


@functools.lru_cache(maxsize=4)
def load_sentences(sources: tuple[str, ...]) -> tuple[str, ...]:
    """Unique plain sentences of the sources, in reading order, minus any found in evaluation sets."""
    banned = eval_sentences()
    seen: dict[str, None] = {}
    for src in sources:
        path = Path(src)
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        for text in _texts(path):
            for s in split_sentences(text):
                if s not in seen and norm(s) not in banned:
                    seen[s] = None
            if len(seen) >= MAX_SENTENCES:
                return tuple(seen)
    return tuple(seen)


def _recase(new: str, old: str) -> str:
    return new[0].upper() + new[1:] if old[0].isupper() else new


def corrupt(sentence: str, op: str, rng: random.Random) -> str | None:
    """`sentence` with one corruption of kind `op`, or None when the sentence offers none."""
    words = sentence.split()
    # Positions of bare words (no attached punctuation), never the last word (it carries the full stop).
    bare = [i for i, w in enumerate(words[:-1]) if w.isalpha()]
    if op == "swap":
        spots = [i for i in bare if i > 0 and i + 1 in bare and words[i].lower() != words[i + 1].lower()]
        if not spots:
            return None
        i = rng.choice(spots)
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        table = {"agreement": AGREEMENT, "determiner": DETERMINERS, "pronoun": PRONOUNS, "irregular": IRREGULAR,
                 "drop": dict.fromkeys(FUNCTION_WORDS, ""), "double": {w: w for w in FUNCTION_WORDS}}[op]
        spots = [i for i in bare if words[i].lower() in table and (op not in ("drop", "double") or i > 0)]
        if not spots:
            return None
        i = rng.choice(spots)
        old = words[i]
        new = table[old.lower()]
        if op == "drop":
            del words[i]
        elif op == "double":
            words.insert(i, old)
        else:
            words[i] = _recase(new, old) if i == 0 else new
    out = " ".join(words)
    return out if out != sentence else None


OPS = ("swap", "agreement", "drop", "double", "determiner", "pronoun", "irregular")


class LanguageWorld(World):
    name = "language"
    version = 2  # 2: the "irregular" corruption
    split = "train"

    def __init__(self, source: str | list[str] | None = None):
        if source is None:
            try:
                from touchstone.corpus import default_sources
            except ImportError:
                raise UserError("language: no corpus given and the embedded default corpus is unavailable; "
                                "pass a prepared data directory or text file") from None
            source = default_sources()
        self.sources = tuple(str(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source))
        self.source_name = "language:" + ",".join(Path(s).name for s in self.sources)[:120]

    @property
    def sentences(self) -> tuple[str, ...]:
        sentences = load_sentences(self.sources)
        if not sentences:
            raise UserError(f"{', '.join(self.sources)}: no plain English sentences found")
        return sentences

    @functools.cached_property
    def _sentence_set(self) -> frozenset[str]:
        return frozenset(self.sentences)

    def sample(self, rng: random.Random) -> dict:
        s = rng.choice(self.sentences)
        return {"text": s, "original": s, "op": None}

    def mutate(self, item: dict, rng: random.Random) -> dict:
        """A corrupted copy of the original; ops are tried in random order until one applies."""
        for op in rng.sample(OPS, len(OPS)):
            text = corrupt(item["original"], op, rng)
            if text is not None:
                return {"text": text, "original": item["original"], "op": op}
        raise ValueError(f"no corruption applies to {item['original']!r}")

    def verify(self, item: dict) -> Verdict:
        attested = item["original"] in self._sentence_set
        ok = item["text"] == item["original"] and attested
        reason = "original" if ok else ("not_in_corpus" if not attested else f"corrupted:{item.get('op')}")
        return Verdict(ok, float(ok), reason, {"original": item["original"], "op": item.get("op")})

    def render(self, rng: random.Random, n: int) -> list[dict]:
        out = []
        tries = 0
        while len(out) < n:
            tries += 1
            if tries > 50 * n + 1000:
                raise UserError(f"{self.source_name}: too few usable sentences for {n} records")
            item = self.sample(rng)
            if not in_split(self, {"original": item["original"]}):
                continue
            try:
                bad = self.mutate(item, rng)
            except ValueError:
                continue
            evidence = {"original": item["original"], "corrupted": bad["text"], "op": bad["op"]}
            if rng.random() < 0.5:
                label = rng.choice("ab")
                a, b = (item["text"], bad["text"]) if label == "a" else (bad["text"], item["text"])
                rec = pair_record(PAIR_PROMPT, a, b, label, world=self.name, kind="grammatical",
                                  source=self.source_name)
            else:
                shown = rng.choice([item, bad])
                rec = claim_record(f'"{shown["text"]}" is a well-formed English sentence.', shown is item,
                                   world=self.name, kind="grammatical", source=self.source_name)
            rec["verdict"] = {"ok": True, "score": 1.0, "reason": "agrees", "evidence": evidence}
            rec["verdict"] = self.verify_record(rec).to_dict()
            out.append(rec)
        return out

    def verify_record(self, record: dict) -> Verdict:
        """Check the record against its recorded source: the labelled-better side must be the original
        (and, for records from this corpus, a sentence of it), the other side the recorded corruption."""
        evidence = dict((record.get("verdict") or {}).get("evidence") or {})
        original, corrupted = evidence.get("original"), evidence.get("corrupted")
        if not original or not corrupted:
            return Verdict(False, 0.0, "no_provenance", evidence)
        if record.get("source") == self.source_name and original not in self._sentence_set:
            return Verdict(False, 0.0, "not_in_corpus", evidence)
        if "statement" in record:
            m = CLAIM_RE.fullmatch(record["statement"])
            shown = m["s"] if m else None
            if shown not in (original, corrupted):
                return Verdict(False, 0.0, "unrecorded_text", evidence)
            agree = (shown == original) == bool(record["label"])
        else:
            if {record.get("a"), record.get("b")} != {original, corrupted}:
                return Verdict(False, 0.0, "unrecorded_text", evidence)
            agree = record[record["label"]] == original
        return Verdict(agree, float(agree), "agrees" if agree else "label_disagrees", evidence)
