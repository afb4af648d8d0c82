"""The language world's corruptions: one word-level edit that makes a plain sentence worse (`OPS`,
described in `touchstone.worlds.language`), the corpus-learnt noun and verb tables two of them need,
and the balance of substituted words that keeps any one word from giving a corruption away.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter

FUNCTION_WORDS = [
    "the",
    "a",
    "an",
    "of",
    "to",
    "in",
    "and",
    "that",
    "for",
    "with",
    "on",
    "at",
    "by",
    "it",
    "is",
    "was",
    "be",
    "as",
]
AGREEMENT = {
    "is": "are",
    "are": "is",
    "was": "were",
    "were": "was",
    "has": "have",
    "have": "has",
    "does": "do",
    "do": "does",
}
DETERMINERS = {"a": "an", "an": "a", "this": "these", "these": "this", "that": "those", "those": "that"}
PRONOUNS = {
    "he": "him",
    "him": "he",
    "she": "her",
    "they": "them",
    "them": "they",
    "i": "me",
    "me": "I",
    "we": "us",
    "us": "we",
    "himself": "herself",
    "herself": "himself",
    "themselves": "himself",
    "myself": "me",
}
# Irregular verbs whose past tense and past participle differ, so exchanging them is always an error
# ("She went home" / "She gone home"; "It had begun" / "It had began"). Verbs whose two forms are
# the same ("held", "put") are left out, and so is "bit", far more often a noun than a verb.
_PAST_PARTICIPLE = {
    "went": "gone",
    "saw": "seen",
    "did": "done",
    "took": "taken",
    "wrote": "written",
    "ate": "eaten",
    "broke": "broken",
    "spoke": "spoken",
    "chose": "chosen",
    "drove": "driven",
    "gave": "given",
    "knew": "known",
    "rose": "risen",
    "began": "begun",
    "sang": "sung",
    "drank": "drunk",
    "ran": "run",
    "came": "come",
    "became": "become",
    "forgot": "forgotten",
    "hid": "hidden",
    "fell": "fallen",
    "froze": "frozen",
    "stole": "stolen",
    "wore": "worn",
    "tore": "torn",
    "threw": "thrown",
    "grew": "grown",
    "flew": "flown",
    "drew": "drawn",
    "shook": "shaken",
    "rode": "ridden",
    "forgave": "forgiven",
    "showed": "shown",
    "sank": "sunk",
    "mistook": "mistaken",
}
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
NPI_ADVERBS = {
    "really",
    "clearly",
    "certainly",
    "often",
    "always",
    "usually",
    "sometimes",
    "probably",
    "surely",
    "truly",
    "also",
    "already",
    "just",
    "once",
}
NPI_HOSTS = (
    THIRD_PERSON_SINGULAR
    | OTHER_SUBJECTS
    | {"has", "have", "had", "will", "would", "could", "can", "should", "shall", "may", "might", "must", "did"}
)
NPI_LICENSORS = {
    "not",
    "no",
    "never",
    "nobody",
    "nothing",
    "none",
    "nor",
    "neither",
    "nowhere",
    "without",
    "hardly",
    "scarcely",
    "barely",
    "seldom",
    "rarely",
    "few",
    "little",
    "only",
    "if",
    "whether",
    "unless",
    "before",
    "than",
    "all",
    "every",
    "any",
    "anyone",
    "anything",
    "anybody",
    "each",
    "first",
    "last",
    "ever",
    "too",
    "who",
    "which",
    "what",
    "whoever",
    "whatever",
    "when",
    "cannot",
    "doubt",
    "doubted",
    "deny",
    "denied",
}


def _recase(new: str, old: str) -> str:
    return new[0].upper() + new[1:] if old[0].isupper() else new


def _paired_forms(
    sentences, singular_after: set[str], plural_after: set[str], to_plural
) -> dict[str, tuple[str, bool]]:
    """Words attested in both numbers, each mapped to (its other form, whether it is the plural form):
    a word seen after one of `singular_after` whose `to_plural` form is seen after one of `plural_after`.
    Attestation in both contexts stands in for a part-of-speech tagger."""
    seen_singular, seen_plural = set(), set()
    for sentence in sentences:
        words = sentence.lower().split()
        for left, word in itertools.pairwise(words):
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


def _fixed_spots(
    words: list[str], bare: list[int], table: dict[str, tuple[str, bool]], before: tuple[set[str], set[str]], at_start
) -> list[int]:
    """Words of `table` whose number is fixed by the word before them (one of `before[plural]`) or, at
    the start of a sentence, by `at_start(i, plural)`."""
    spots = []
    for i in bare:
        word = words[i].lower()
        if i == 0 or word not in table:
            continue
        plural = table[word][1]
        if words[i - 1].lower() in before[plural] or at_start(i, plural):
            spots.append(i)
    return spots


def _number_spots(words: list[str], bare: list[int], table: dict[str, tuple[str, bool]]) -> list[int]:
    """Nouns whose number is fixed by a neighbour: a determiner before them ("these books"), or, for the
    subject at the start of a sentence, the verb after them ("The books are"). Flipping the noun breaks
    that agreement. A noun elsewhere is left alone: "the dogs barked" -> "the dog barked" is still fine."""

    def subject(i: int, plural: bool) -> bool:  # words[2] exists: i is bare, and the last word never is
        return i == 1 and words[0].lower() == "the" and words[2].lower() in (PLURAL_VERBS if plural else SINGULAR_VERBS)

    return _fixed_spots(words, bare, table, (SINGULAR_DETERMINERS, PLURAL_DETERMINERS), subject)


def _verb_spots(words: list[str], bare: list[int], verbs: dict, nouns: dict) -> list[int]:
    """Present-tense verbs whose form is fixed by the subject just before them: a pronoun ("she runs",
    "they run") or, at the start of a sentence, "The" and a noun ("The dogs run")."""

    def subject(i: int, plural: bool) -> bool:
        noun = words[1].lower()
        return i == 2 and words[0].lower() == "the" and noun in nouns and nouns[noun][1] == plural

    return _fixed_spots(words, bare, verbs, (THIRD_PERSON_SINGULAR, OTHER_SUBJECTS), subject)


def _npi_spots(words: list[str], bare: list[int]) -> list[int]:
    """Adverbs that "ever" could take the place of, in a sentence where nothing licenses "ever"."""
    lower = [w.lower().strip(",;.") for w in words]
    if any(w in NPI_LICENSORS or w.endswith(("n't", "est")) for w in lower):
        return []
    return [i for i in bare if i > 0 and lower[i] in NPI_ADVERBS and lower[i - 1] in NPI_HOSTS]


def _substitutions(
    words: list[str], bare: list[int], op: str, nouns: dict | None, verbs: dict | None
) -> list[tuple[int, str]]:
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


def corrupt(
    sentence: str, op: str, rng: random.Random, nouns: dict | None = None, verbs: dict | None = None, allow=None
) -> str | None:
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
        subs = [
            (i, new)
            for i, new in _substitutions(words, bare, op, nouns, verbs)
            if allow is None or op == "npi" or allow(words[i].lower(), new.lower())
        ]
        if not subs:
            return None
        i, new = rng.choice(subs)
        words[i] = _recase(new, words[i]) if i == 0 else new
    out = " ".join(words)
    return out if out != sentence else None


OPS = ("swap", "agreement", "drop", "double", "determiner", "pronoun", "irregular", "number", "verb", "npi")


class WordBalance:
    """Keeps every substituted word about as often on the original side of a record as on the corrupted
    side, so that no single word gives the corruption away.

    Without it the corpus's own frequencies decide: "a" is far commoner than "an", so a -> an happens
    far more often than an -> a, and a judge learns that "an" (or "these", "are", a plural noun) marks
    the worse sentence, a cue that fails on any other test (fine-tuning on unbalanced records lowered
    BLiMP; on balanced ones it rose). A substitution old -> new is allowed while `new` has not been
    inserted `slack` times more often than removed, and `old` not removed `slack` times more often
    than inserted.
    """

    def __init__(self, slack: int = 2):
        self.slack = slack
        self.inserted: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()

    def allows(self, old: str, new: str) -> bool:
        return (
            self.inserted[new] < self.removed[new] + self.slack and self.removed[old] < self.inserted[old] + self.slack
        )

    def add(self, original: str, corrupted: str) -> None:
        """Count the words a substitution exchanged (nothing for a swap, drop or double)."""
        a, b = original.split(), corrupted.split()
        if len(a) == len(b):
            changed = [(x.lower(), y.lower()) for x, y in zip(a, b) if x != y]
            if len(changed) == 1:
                old, new = changed[0]
                self.removed[old] += 1
                self.inserted[new] += 1
