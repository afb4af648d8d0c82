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

from touchstone.errors import UserError
from touchstone.files import shared_data
from touchstone.records import claim_record, pair_record
from touchstone.synth import in_split
from touchstone.worlds import grammar
from touchstone.worlds.base import Verdict, World

MAX_SENTENCES = 40_000  # enough variety; reading more only costs time
MAX_CHARS_PER_FILE = 2_000_000
SENTENCES_PER_KIND = 50  # sentences `render` tries for one corruption kind before drawing another kind
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
# Words that fix the number of the noun after them, and verbs that fix the number of their subject.
SINGULAR_DETERMINERS = {"a", "an", "this", "that", "each", "every", "another"}
PLURAL_DETERMINERS = {"these", "those", "many", "several", "few", "both"}
SINGULAR_VERBS = {"is", "was", "has", "does"}
PLURAL_VERBS = {"are", "were", "have", "do"}
# Subjects that fix a present-tense verb's form: "he runs", "they run".
THIRD_PERSON_SINGULAR = {"he", "she", "it"}
OTHER_SUBJECTS = {"i", "we", "you", "they"}
# "ever" needs a licensor (negation, a question, "only", "if", a superlative, ...). The "npi" corruption
# puts it in place of one of these adverbs after a subject or an auxiliary, in a sentence with no word
# that might license it: "She has really tried" -> "She has ever tried". Not after "is"/"was": "He
# was ever kind" is old but good English.
NPI_ADVERBS = {"really", "clearly", "certainly", "often", "always", "usually", "sometimes", "probably",
               "surely", "truly", "also", "already", "just", "once"}
NPI_HOSTS = THIRD_PERSON_SINGULAR | OTHER_SUBJECTS | {"has", "have", "had", "will", "would", "could", "can",
                                                       "should", "shall", "may", "might", "must", "did"}
NPI_LICENSORS = {"not", "no", "never", "nobody", "nothing", "none", "nor", "neither", "nowhere", "without",
                 "hardly", "scarcely", "barely", "seldom", "rarely", "few", "little", "only", "if", "whether",
                 "unless", "before", "than", "all", "every", "any", "anyone", "anything", "anybody", "each",
                 "first", "last", "ever", "too", "who", "which", "what", "whoever", "whatever", "when", "cannot",
                 "doubt", "doubted", "deny", "denied"}


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


def _paired_forms(sentences, singular_after: set[str], plural_after: set[str], to_plural) -> dict[str, tuple[str, bool]]:
    """Words attested in both numbers, each mapped to (its other form, whether it is the plural form):
    a word seen after one of `singular_after` whose `to_plural` form is seen after one of `plural_after`.
    Attestation in both contexts stands in for a part-of-speech tagger."""
    seen_singular, seen_plural = set(), set()
    for sentence in sentences:
        words = sentence.lower().split()
        for left, word in zip(words, words[1:]):
            if left in singular_after and word.isalpha():
                seen_singular.add(word)
            elif left in plural_after and word.isalpha():
                seen_plural.add(word)
    closed_class = set(FUNCTION_WORDS) | set(AGREEMENT) | set(DETERMINERS) | set(PRONOUNS) | set(IRREGULAR)
    table = {}
    for singular in sorted(seen_singular - closed_class):
        plural = to_plural(singular)
        if len(singular) > 2 and plural != singular and plural in seen_plural and plural not in closed_class:
            table[singular], table[plural] = (plural, False), (singular, True)
    return table


def number_table(sentences) -> dict[str, tuple[str, bool]]:
    """Nouns in both numbers: seen after a singular determiner ("this book") with the plural `inflect`
    gives seen after a plural one ("these books"). "a good" alone does not make "good" a noun unless
    "these goods" occurs too."""
    import inflect

    return _paired_forms(sentences, SINGULAR_DETERMINERS, PLURAL_DETERMINERS, inflect.engine().plural_noun)


def verb_table(sentences) -> dict[str, tuple[str, bool]]:
    """Present-tense verbs in both forms: seen after he/she/it ("she runs") with the form `inflect` gives
    for a plural subject seen after I/we/you/they ("they run"). "he always" yields "alway", never seen."""
    import inflect

    return _paired_forms(sentences, THIRD_PERSON_SINGULAR, OTHER_SUBJECTS, inflect.engine().plural_verb)


def _number_spots(words: list[str], bare: list[int], table: dict[str, tuple[str, bool]]) -> list[int]:
    """Nouns whose number is fixed by a neighbour: a determiner before them ("these books"), or, for the
    subject at the start of a sentence, the verb after them ("The books are"). Flipping the noun breaks
    that agreement. A noun elsewhere is left alone: "the dogs barked" -> "the dog barked" is still fine."""
    spots = []
    for i in bare:
        word = words[i].lower()
        if i == 0 or word not in table:
            continue
        plural = table[word][1]
        before = words[i - 1].lower()
        if before in (PLURAL_DETERMINERS if plural else SINGULAR_DETERMINERS):
            spots.append(i)
        elif i == 1 and before == "the" and words[2].lower() in (PLURAL_VERBS if plural else SINGULAR_VERBS):
            spots.append(i)  # words[2] exists: i is bare, and the last word never is
    return spots


def _verb_spots(words: list[str], bare: list[int], verbs: dict, nouns: dict) -> list[int]:
    """Present-tense verbs whose form is fixed by the subject just before them: a pronoun ("she runs",
    "they run") or, at the start of a sentence, "The" and a noun ("The dogs run")."""
    spots = []
    for i in bare:
        word = words[i].lower()
        if i == 0 or word not in verbs:
            continue
        plural = verbs[word][1]
        before = words[i - 1].lower()
        if before in (OTHER_SUBJECTS if plural else THIRD_PERSON_SINGULAR):
            spots.append(i)
        elif i == 2 and words[0].lower() == "the" and before in nouns and nouns[before][1] == plural:
            spots.append(i)
    return spots


def _npi_spots(words: list[str], bare: list[int]) -> list[int]:
    """Adverbs that "ever" could take the place of, in a sentence where nothing licenses "ever"."""
    lower = [w.lower().strip(",;.") for w in words]
    if any(w in NPI_LICENSORS or w.endswith(("n't", "est")) for w in lower):
        return []
    return [i for i in bare if i > 0 and lower[i] in NPI_ADVERBS and lower[i - 1] in NPI_HOSTS]


def _substitutions(words: list[str], bare: list[int], op: str, nouns: dict | None,
                   verbs: dict | None) -> list[tuple[int, str]]:
    """(position, replacement) for every place where the word-for-word corruption `op` applies."""
    nouns, verbs = nouns or {}, verbs or {}
    if op == "number":
        return [(i, nouns[words[i].lower()][0]) for i in _number_spots(words, bare, nouns)]
    if op == "verb":
        return [(i, verbs[words[i].lower()][0]) for i in _verb_spots(words, bare, verbs, nouns)]
    if op == "npi":
        return [(i, "ever") for i in _npi_spots(words, bare)]
    table = {"agreement": AGREEMENT, "determiner": DETERMINERS, "pronoun": PRONOUNS, "irregular": IRREGULAR}[op]
    return [(i, table[words[i].lower()]) for i in bare if words[i].lower() in table]


def corrupt(sentence: str, op: str, rng: random.Random, nouns: dict | None = None, verbs: dict | None = None,
            allow=None) -> str | None:
    """`sentence` with one corruption of kind `op`, or None when the sentence offers none.

    `nouns` and `verbs` are the tables of the "number" and "verb" ops (`number_table`, `verb_table`);
    `allow(old, new)`, when given, vetoes word substitutions (the render's balance of words, see
    `WordBalance`). "npi" is exempt: "ever" without a licensor is the error itself, and a good sentence
    never loses its "ever" to a corruption, so that word cannot be balanced."""
    words = sentence.split()
    # Positions of bare words (no attached punctuation), never the last word (it carries the full stop).
    bare = [i for i, w in enumerate(words[:-1]) if w.isalpha()]
    if op == "swap":
        spots = [i for i in bare if i > 0 and i + 1 in bare and words[i].lower() != words[i + 1].lower()]
        if not spots:
            return None
        i = rng.choice(spots)
        words[i], words[i + 1] = words[i + 1], words[i]
    elif op in ("drop", "double"):
        spots = [i for i in bare if i > 0 and words[i].lower() in FUNCTION_WORDS]
        if not spots:
            return None
        i = rng.choice(spots)
        if op == "drop":
            del words[i]
        else:
            words.insert(i, words[i])
    else:
        subs = [(i, new) for i, new in _substitutions(words, bare, op, nouns, verbs)
                if allow is None or op == "npi" or allow(words[i].lower(), new.lower())]
        if not subs:
            return None
        i, new = rng.choice(subs)
        words[i] = _recase(new, words[i]) if i == 0 else new
    out = " ".join(words)
    return out if out != sentence else None


OPS = ("swap", "agreement", "drop", "double", "determiner", "pronoun", "irregular", "number", "verb", "npi")
# `render` draws among the corpus's corruptions and the grammar's phenomena alike (touchstone.worlds.grammar).
KINDS = OPS + grammar.PHENOMENA


class WordBalance:
    """Keeps every substituted word about as often on the original side of a record as on the corrupted
    side, so that no single word gives the corruption away.

    Without it the corpus's own frequencies decide: "a" is far commoner than "an", so a -> an happens
    far more often than an -> a, and a judge learns that "an" (or "these", "are", a plural noun) marks
    the worse sentence, a cue that fails on any other test. Measured with the pairwise objective on a
    micro model pretrained 60 minutes on the shared English corpus (BLiMP 58.41%, all 67 paradigms):
    unbalanced records lowered BLiMP in all four runs (56.6-58.2%); balanced ones, with the "number"
    corruption, raised it to 58.74% (2,110 pairs of the default corpus, 264 steps) and 59.73% (4,132
    pairs of the default and English corpora, 517 steps), and with "verb" and "npi" as well to 60.99%
    (4,133 pairs, 517 steps). A substitution old -> new is allowed while
    `new` has not been inserted `slack` times more often than removed, and `old` not removed `slack`
    times more often than inserted.
    """

    def __init__(self, slack: int = 2):
        self.slack = slack
        self.inserted: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()

    def allows(self, old: str, new: str) -> bool:
        return (self.inserted[new] < self.removed[new] + self.slack
                and self.removed[old] < self.inserted[old] + self.slack)

    def add(self, original: str, corrupted: str) -> None:
        """Count the words a substitution exchanged (nothing for a swap, drop or double)."""
        a, b = original.split(), corrupted.split()
        if len(a) == len(b):
            changed = [(x.lower(), y.lower()) for x, y in zip(a, b) if x != y]
            if len(changed) == 1:
                old, new = changed[0]
                self.removed[old] += 1
                self.inserted[new] += 1


class LanguageWorld(World):
    name = "language"
    # 2: the "irregular" corruption; 3: the "number" corruption and balanced words; 4: "verb" and "npi";
    # 5: the grammar's phenomena
    version = 5

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
        if norm(good) in banned or norm(bad) in banned or not in_split(self, {"original": good}):
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
                if not in_split(self, {"original": original}):
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
                a, b = (original, text) if label == "a" else (text, original)
                rec = pair_record(PAIR_PROMPT, a, b, label, world=self.name, kind="grammatical",
                                  source=self.source_name)
            else:
                shown = rng.choice([original, text])
                rec = claim_record(f'"{shown}" is a well-formed English sentence.', shown == original,
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
        if "choices" in evidence:  # a pair of the grammar: it must rebuild from its recorded choices
            try:
                rebuilt = grammar.build(evidence["choices"])
            except (KeyError, IndexError, TypeError, ValueError):
                rebuilt = None
            if rebuilt != (original, corrupted):
                return Verdict(False, 0.0, "not_rebuilt", evidence)
        elif record.get("source") == self.source_name and original not in self._sentence_set:
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
