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
past tense and past participle exchanged (went/gone, saw/seen, had written/had wrote, ...); a noun's
number flipped where a determiner or the verb fixes it (this book/these book, The dogs are/The dog
are), for the nouns of `number_table`; a present-tense verb's form flipped after its subject (she
walks/she walk, they walk/they walks), for the verbs of `verb_table`; "ever" where nothing licenses it
(She has really tried/She has ever tried). Beside them, pairs the corpus rarely offers are built from a
small grammar with the corpus's own nouns and names (`touchstone.worlds.grammar`: a wh-word and its
gap, in a clause or a question; "ever" and what licenses it; agreement across a nearer noun). `render` draws
each kind about equally often and balances the substituted words (`WordBalance`).

Verification: an item {"text", "original", "op"} is ok when its text is the original and the original
is a sentence of the loaded corpus. A record is checked against its recorded source (the verdict's
evidence keeps the original and the corruption, and for a grammar pair the choices it is rebuilt
from), so a flipped label or an edited side is caught.
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
from collections import Counter
from pathlib import Path

from touchstone.corpus import default_sources
from touchstone.errors import UserError
from touchstone.files import read_jsonl, shared_data
from touchstone.records import claim_record, is_pair, pair_record
from touchstone.worlds import grammar
from touchstone.worlds.base import Grower, Verdict, World, agreement, ordered, verified_evidence
from touchstone.worlds.corruptions import (
    OPS,
    WordBalance,
    corrupt,
    number_table,
    verb_table,
)

MAX_SENTENCES = 40_000  # enough variety; reading more only costs time
MAX_CHARS_PER_FILE = 2_000_000
SENTENCES_PER_KIND = 50  # sentences `render` tries for one corruption kind before drawing another kind
SENTENCE_RE = re.compile(r"[A-Z][A-Za-z]*(?:[ ][A-Za-z][A-Za-z'-]*[,;]?)+[.]")
ABBREVIATIONS = {"mr", "mrs", "dr", "st", "messrs", "mme", "esq", "vs", "no"}
PAIR_PROMPT = "Which sentence is better written?"
CLAIM_RE = re.compile(r'"(?P<s>.+)" is a well-formed English sentence\.')


def norm(sentence: str) -> str:
    """The comparison key for decontamination: lower-case words only."""
    return " ".join(re.findall(r"[a-z']+", sentence.lower()))


@functools.lru_cache(maxsize=1)
def eval_sentences() -> frozenset[str]:
    """Normalized sentences of the evaluation sets present on this machine (never training items)."""
    keys: set[str] = set()
    blimp = shared_data() / "blimp" / "data"
    for path in sorted(blimp.glob("*.jsonl*")) if blimp.is_dir() else []:
        with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as f:
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
        for _, obj in read_jsonl(path):
            if isinstance(obj.get("text"), str):
                yield obj["text"]
        return
    text = path.read_text(encoding="utf-8", errors="replace")[:MAX_CHARS_PER_FILE]
    start, end = text.find("*** START OF"), text.find("*** END OF")
    if start >= 0:  # a Project Gutenberg book: only the body between its markers
        text = text[text.find("\n", start) + 1 : end if end > start else None]
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


# `render` draws among the corpus's corruptions and the grammar's phenomena alike (touchstone.worlds.grammar).
KINDS = OPS + grammar.PHENOMENA


class LanguageWorld(World):
    name = "language"
    # 2: the "irregular" corruption; 3: the "number" corruption and balanced words; 4: "verb" and "npi";
    # 5: the grammar's phenomena
    version = 5
    reads_corpus = True
    reads_typed_questions = False

    def __init__(self, source: str | list[str] | None = None):
        if source is None:
            source = default_sources()
        self.sources = tuple(str(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source))
        self.source_name = "language:" + ",".join(Path(s).name for s in self.sources)[:120]

    def inputs(self) -> tuple:
        return self.sources

    @property
    def sentences(self) -> tuple[str, ...]:
        sentences = load_sentences(self.sources)
        if not sentences:
            raise UserError(f"{', '.join(self.sources)}: no plain English sentences found")
        return sentences

    @functools.cached_property
    def _sentence_set(self) -> frozenset[str]:
        return frozenset(self.sentences)

    @functools.cached_property
    def nouns(self) -> dict[str, tuple[str, bool]]:
        """The noun table of the "number" corruption, learnt from this corpus (`number_table`)."""
        return number_table(self.sentences)

    @functools.cached_property
    def verbs(self) -> dict[str, tuple[str, bool]]:
        """The verb table of the "verb" corruption, learnt from this corpus (`verb_table`)."""
        return verb_table(self.sentences)

    @functools.cached_property
    def grammar(self) -> grammar.Grammar | None:
        """The grammar of the constructions the corpus rarely offers, with this corpus's nouns and names
        (None when the corpus has no noun seen in both numbers)."""
        return grammar.Grammar(self.nouns, grammar.corpus_names(self.sentences)) if self.nouns else None

    def grammar_pair(self, phenomenon: str, rng: random.Random) -> tuple[str, str, dict] | None:
        """(good, bad, choices) of the grammar, or None when its sentences are in an evaluation set, in the
        other split, or the grammar is unavailable."""
        if self.grammar is None:
            return None
        good, bad, choices = self.grammar.pair(phenomenon, rng)
        banned = eval_sentences()
        if norm(good) in banned or norm(bad) in banned or not self.in_split({"original": good}):
            return None
        return good, bad, choices

    def sample(self, rng: random.Random) -> dict:
        s = rng.choice(self.sentences)
        return {"text": s, "original": s, "op": None}

    def mutate(self, item: dict, rng: random.Random, allow=None) -> dict:
        """A corrupted copy of the original; ops are tried in random order until one applies (`allow`:
        see `corrupt`)."""
        for op in rng.sample(OPS, len(OPS)):
            text = corrupt(item["original"], op, rng, nouns=self.nouns, verbs=self.verbs, allow=allow)
            if text is not None:
                return {"text": text, "original": item["original"], "op": op}
        raise ValueError(f"no corruption applies to {item['original']!r}")

    def verify(self, item: dict) -> Verdict:
        attested = item["original"] in self._sentence_set
        ok = item["text"] == item["original"] and attested
        reason = "original" if ok else ("not_in_corpus" if not attested else f"corrupted:{item.get('op')}")
        return Verdict(ok, float(ok), reason, {"original": item["original"], "op": item.get("op")})

    def render(self, rng: random.Random, n: int) -> list[dict]:
        """`n` records, each corruption kind about equally often: the kind is drawn first, then sentences
        until one offers it within the word balance (`WordBalance`). Drawing the sentence first would let
        the swap, which applies almost everywhere, fill most records once the balance starts refusing."""
        out = []
        balance = WordBalance()
        tries = 0
        ops, hits, misses = list(KINDS), Counter(), Counter()
        while len(out) < n:
            op = rng.choice(ops)
            choices = None
            for _ in range(SENTENCES_PER_KIND):
                tries += 1
                if tries > 50 * n + 1000:
                    raise UserError(f"{self.source_name}: too few usable sentences for {n} records")
                if op in grammar.PHENOMENA:
                    made = self.grammar_pair(op, rng)
                    if made is not None:
                        original, text, choices = made
                        break
                    continue
                original = self.sample(rng)["original"]
                if not self.in_split({"original": original}):
                    continue
                text = corrupt(original, op, rng, nouns=self.nouns, verbs=self.verbs, allow=balance.allows)
                if text is not None:
                    break
            else:
                # This corpus rarely offers `op` (or the balance holds it back): draw another kind, and
                # stop asking for a kind that missed ten times before ever applying (a small corpus
                # may have no "these books" at all).
                misses[op] += 1
                if misses[op] == 10 and not hits[op] and len(ops) > 1:
                    ops.remove(op)
                continue
            hits[op] += 1
            evidence = {"original": original, "corrupted": text, "op": op}
            if choices is None:
                balance.add(original, text)
            else:
                evidence["choices"] = choices
            if rng.random() < 0.5:
                label = rng.choice("ab")
                a, b = ordered(label, original, text)
                rec = pair_record(
                    PAIR_PROMPT, a, b, label, world=self.name, kind="grammatical", source=self.source_name
                )
            else:
                shown = rng.choice([original, text])
                rec = claim_record(
                    f'"{shown}" is a well-formed English sentence.',
                    shown == original,
                    world=self.name,
                    kind="grammatical",
                    source=self.source_name,
                )
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
        if "choices" in evidence:  # a pair of the grammar: it must rebuild from its recorded choices
            try:
                rebuilt = grammar.build(evidence["choices"])
            except (KeyError, IndexError, TypeError, ValueError):
                rebuilt = None
            if rebuilt != (original, corrupted):
                return Verdict(False, 0.0, "not_rebuilt", evidence)
        elif record.get("source") == self.source_name and original not in self._sentence_set:
            return Verdict(False, 0.0, "not_in_corpus", evidence)
        if not is_pair(record):
            m = CLAIM_RE.fullmatch(record["statement"])
            shown = m["s"] if m else None
            if shown not in (original, corrupted):
                return Verdict(False, 0.0, "unrecorded_text", evidence)
            agree = (shown == original) == bool(record["label"])
        else:
            if {record.get("a"), record.get("b")} != {original, corrupted}:
                return Verdict(False, 0.0, "unrecorded_text", evidence)
            agree = record[record["label"]] == original
        return agreement(agree, evidence)

    def derivation(self, record: dict) -> str | None:
        """The sentence as it was written, from the verdict the record was verified with: for a pair
        the better side, for a claim its correction (or itself, when it is the original)."""
        original = (verified_evidence(record) or {}).get("original")
        return f" Well formed: {original}" if isinstance(original, str) else None

    def grower(self, rng: random.Random, generation: int) -> Grower:
        return _PairMutations(self, rng, generation)


class _PairMutations(Grower):
    """A language pair's original sentence given a fresh corruption, its words balanced as `render`
    balances them. Grammar pairs are left alone: their good side is no corpus sentence to corrupt."""

    def __init__(self, world: LanguageWorld, rng: random.Random, generation: int):
        self.world, self.rng, self.generation = world, rng, generation
        self.balance = WordBalance()

    def takes(self, record: dict) -> bool:
        return is_pair(record)

    def grow(self, record: dict) -> dict | None:
        original = record[record["label"]]
        if "choices" in ((record.get("verdict") or {}).get("evidence") or {}):
            return None
        if not self.world.in_split({"original": original}):
            return None
        bad = self.world.mutate(
            {"text": original, "original": original, "op": None}, self.rng, allow=self.balance.allows
        )
        if bad["text"] == record["b" if record["label"] == "a" else "a"]:
            return None  # the same corruption again: nothing new
        self.balance.add(original, bad["text"])
        label = self.rng.choice("ab")
        a, b = ordered(label, original, bad["text"])
        new = pair_record(
            PAIR_PROMPT,
            a,
            b,
            label,
            world=self.world.name,
            kind="grammatical",
            source=record.get("source") or "",
            parent=record["id"],
            generation=self.generation,
        )
        # The language verifier checks a record against its recorded original and corruption.
        new["verdict"] = {"evidence": {"original": original, "corrupted": bad["text"], "op": bad["op"]}}
        return new
