"""Minimal pairs built from a small English grammar, for the constructions a corpus rarely offers.

The language world's corruptions need a corpus sentence that already has the construction they
break, and plain sentences of novels seldom do: in the 20,287 plain sentences of the shared English
corpus there are 13 questions with "ever" and about 100 embedded "what"/"who" clauses. This module
writes such sentences itself, each with a minimally different ungrammatical twin:

- `wh_gap`:      "Tom knew what the boys brought." / "Tom knew that the boys brought." (an object gap
                 needs a wh-word; also across a relative clause, "what the boys that found Mary
                 brought"), its converse with no gap, "Tom knew that the boys brought the
                 box." / "Tom knew what the boys brought the box." (so neither "that" nor "what" marks
                 the worse side). Relative clauses, whose "that" does take a gap ("the box that the
                 boys brought"), are left out: as pairs against "... brought the book" they halved
                 the model's preference for "what" over "that" before a gap;
- `question_npi`: "Did the boys ever bring the box?" / "The boys did ever bring the box." ("ever" is
                 licensed by the question; half the time with a verb that needs no object), and by a
                 negation or "only": "The boys did not ever ...", "Only the boys did ever ...";
- `npi_scope`:   "The boy that had found the box has not ever described Tom." / "The boy that had not
                 found the box has ever described Tom." (the negation must be in the clause of "ever");
- `wh_question`: "Which box did Tom bring?" / "Which did Tom bring box?", "What did Tom bring?" / "What
                 did Tom bring the box?", and a wh-phrase taken out of one conjunct or out of a
                 wh-clause (see `wh_question`);
- `attractor`:   "The box near the boys is broken." / "The box near the boys are broken." and "The boys
                 that describe Tom bring the box." / "The boys that describe Tom brings the box." (the
                 verb agrees with the head noun, not with the nearer one).

Nouns and names come from the corpus (`number_table`, `corpus_names`), so the vocabulary is the
corpus's own; the transitive verbs are a fixed list of verbs that need an
object (a gap after "that" is only an error when the verb cannot stand alone: "Tom knew that the boys
ate" is fine, "... that the boys brought" is not).

Every pair is rebuilt from its recorded `choices` by `build`, which is how a record is verified.
"""

from __future__ import annotations

import functools
import itertools
import random
import re
from collections import Counter


def _verbs(words: str) -> list[tuple[str, str, str, str]]:
    """(base, third person singular, past, past participle) of each verb of `words`: a regular verb is
    its base alone ("need"), an irregular one "base/past/participle" ("bring/brought/brought")."""
    verbs = []
    for word in words.split():
        base, *forms = word.split("/")
        consonant_y = base.endswith("y") and base[-2] not in "aeiou"
        third = (
            base[:-1] + "ies"
            if consonant_y
            else base + "es"
            if base.endswith(("s", "sh", "ch", "x", "z"))
            else base + "s"
        )
        past = base[:-1] + "ied" if consonant_y else base + "d" if base.endswith("e") else base + "ed"
        verbs.append((base, third, *(forms or (past, past))))
    return verbs


# Verbs that need an object.
TRANSITIVE = _verbs("""
    bring/brought/brought find/found/found describe mention need like hate admire praise fix examine
    discuss reveal lift wear/wore/worn borrow destroy repair greet thank blame take/took/taken carry
    hire resemble annoy hide/hid/hidden sell/sold/sold keep/kept/kept buy/bought/bought
    forgive/forgave/forgiven choose/chose/chosen
""")
# Verbs that need no object (questions with "ever" are as often about them: "Had Tom ever smiled?").
INTRANSITIVE = _verbs("""
    arrive laugh smile sleep/slept/slept wait complain return cry fall/fell/fallen rest
    speak/spoke/spoken agree succeed hesitate vanish wander listen recover
    travel/travelled/travelled sing/sang/sung
""")
# Verbs taking both a "that" clause and a "what/who" clause.
# (for a singular subject, for a plural one)
EMBEDDING = [
    ("knew", "knew"),
    ("knows", "know"),
    ("remembered", "remembered"),
    ("remembers", "remember"),
    ("forgot", "forgot"),
    ("has forgotten", "have forgotten"),
    ("discovered", "discovered"),
    ("found out", "found out"),
    ("noticed", "noticed"),
    ("heard", "heard"),
    ("had learned", "had learned"),
    ("will find out", "will find out"),
    ("saw", "saw"),
    ("understood", "understood"),
]
PREPOSITIONS = ["of", "near", "behind", "beside", "with", "for", "from", "under"]
ADJECTIVES = ["broken", "ready", "lost", "gone", "useful", "here", "new", "old", "famous", "strange"]
# Verbs that agree with their subject, (singular, plural); those of "has" take a participle and an object.
AGREEING = [
    ("is", "are"),
    ("was", "were"),
    ("isn't", "aren't"),
    ("wasn't", "weren't"),
    ("has", "have"),
    ("hasn't", "haven't"),
]
# Names for a corpus with few of its own (the embedded default corpus is documentation).
MIN_NAMES = 20
FALLBACK_NAMES = ["Alice", "Tom", "Jane", "Henry", "Emma", "Arthur", "Lucy", "Walter", "Mary", "George"]
SUBJECT_OF = {"was", "had", "said", "did", "would", "could", "is", "has", "will", "went", "looked"}
SINGULAR_DET, PLURAL_DET = ["the", "a", "this", "that"], ["the", "these", "those", "some"]
# (base, past participle) of verbs a question can reach into: "What did Tom think she brought?"
BRIDGE = [
    ("think", "thought"),
    ("say", "said"),
    ("believe", "believed"),
    ("know", "known"),
    ("remember", "remembered"),
    ("hear", "heard"),
    ("suppose", "supposed"),
]
QUESTION_AUX = ["did", "will", "would", "could", "can", "should", "might", "had", "does", "has"]
PHENOMENA = ("wh_gap", "question_npi", "npi_scope", "attractor", "wh_question")


def corpus_names(sentences, minimum: int = 5) -> list[str]:
    """Capitalized words seen inside a sentence at least `minimum` times, never in lower case, and at
    least twice as the subject of "was", "had", "said", ...: the corpus's people and places
    ("Elizabeth", "London"), not its adjectives ("English")."""
    seen, subject, lower = Counter(), Counter(), set()
    for sentence in sentences:
        words = re.findall(r"[A-Za-z]+", sentence)
        lower.update(w for w in words if w.islower())
        seen.update(w for w in words[1:] if w[0].isupper() and w[1:].islower())
        subject.update(w for w, nxt in itertools.pairwise(words) if w[0].isupper() and nxt in SUBJECT_OF)
    return sorted(
        w for w, c in seen.items() if c >= minimum and subject[w] >= 2 and w.lower() not in lower and w != "I"
    )


class Grammar:
    """Minimal pairs from a lexicon: `nouns` as `number_table` gives them, `names` as `corpus_names` gives
    them (`FALLBACK_NAMES` when there are fewer than `MIN_NAMES`)."""

    def __init__(self, nouns: dict[str, tuple[str, bool]], names: list[str]):
        self.singular = sorted(w for w, (_, plural) in nouns.items() if not plural)
        self.nouns = nouns
        self.names = names if len(names) >= MIN_NAMES else FALLBACK_NAMES
        if not self.singular:
            raise ValueError("the grammar needs at least one noun in both numbers")

    @functools.cached_property
    def _inflect(self):
        import inflect

        return inflect.engine()

    def article(self, noun: str) -> str:
        """ "a" or "an" before `noun`, by its sound ("an hour", "a unit")."""
        return self._inflect.a(noun)

    # --- pieces ---------------------------------------------------------------------------------
    def noun_phrase(self, rng: random.Random, plural: bool | None = None, name_ok: bool = True) -> tuple[str, bool]:
        """(phrase, is plural): a name or a determiner and a noun of the asked number."""
        if plural is None and name_ok and rng.random() < 0.3:
            return rng.choice(self.names), False
        plural = rng.random() < 0.5 if plural is None else plural
        noun = rng.choice(self.singular)
        if plural:
            return f"{rng.choice(PLURAL_DET)} {self.nouns[noun][0]}", True
        det = rng.choice(SINGULAR_DET)
        return (self.article(noun) if det == "a" else f"{det} {noun}"), False

    # --- phenomena ------------------------------------------------------------------------------
    def choose(self, phenomenon: str, rng: random.Random) -> dict:
        """The random choices one pair of `phenomenon` is built from (JSON-friendly)."""
        subject, subject_plural = self.noun_phrase(rng)
        other, other_plural = self.noun_phrase(rng)
        obj, _ = self.noun_phrase(rng)
        c = {
            "phenomenon": phenomenon,
            "subject": subject,
            "subject_plural": subject_plural,
            "other": other,
            "other_plural": other_plural,
            "object": obj,
            "verb": rng.randrange(len(TRANSITIVE)),
            "verb2": rng.randrange(len(TRANSITIVE)),
            "variant": rng.randrange(2),
        }
        if phenomenon == "wh_gap":
            c["embedding"] = rng.choice(EMBEDDING)[subject_plural]
            c["wh"] = rng.choice(["what", "who"])
            # half the time the clause's subject carries a relative clause: the gap is further away
            c["relative"] = rng.random() < 0.5
            c["object2"] = self.noun_phrase(rng)[0]
            c["form"] = rng.choice(["past", "present", "perfect", "pluperfect", "negated", "future"])
        elif phenomenon == "question_npi":
            c["aux"] = rng.choice(["did", "do", "has", "had", "will", "would", "could", "can", "should", "might"])
            c["variant"] = rng.randrange(3)
            c["intransitive"] = rng.randrange(len(INTRANSITIVE)) if rng.random() < 0.5 else None
        elif phenomenon == "npi_scope":  # a relative clause needs a noun, not a name, to hang on
            c["subject"], c["subject_plural"] = self.noun_phrase(rng, name_ok=False)
            c["aux"] = rng.choice(["has", "had", "will", "can", "would"])
        elif phenomenon == "wh_question":
            c["aux"] = rng.choice(QUESTION_AUX)
            c["variant"] = rng.randrange(4)
            noun = rng.choice(self.singular)
            c["noun"] = self.nouns[noun][0] if rng.random() < 0.5 else noun
            c["which"] = rng.choice(["which", "what", "whose"])
            c["bridge"] = rng.randrange(len(BRIDGE))
            c["pronoun"] = rng.choice(["he", "she", "they", "we"])
        elif phenomenon == "attractor":
            head, head_plural = self.noun_phrase(rng, name_ok=False)
            near, _ = self.noun_phrase(rng, plural=not head_plural)
            c.update(
                head=head,
                head_plural=head_plural,
                near=near,
                preposition=rng.choice(PREPOSITIONS),
                adjective=rng.choice(ADJECTIVES),
                be=rng.choice(AGREEING),
            )
        return c

    def pair(self, phenomenon: str, rng: random.Random) -> tuple[str, str, dict]:
        """(good, bad, choices) for a new pair of `phenomenon`."""
        c = self.choose(phenomenon, rng)
        good, bad = build(c)
        return good, bad, c


def build(c: dict) -> tuple[str, str]:
    """(good, bad) for recorded choices; the same choices always give the same pair."""
    verb, verb2 = TRANSITIVE[c["verb"]], TRANSITIVE[c["verb2"]]
    subject, other, obj = c["subject"], c["other"], c["object"]
    if c["phenomenon"] == "wh_gap":
        if c.get("relative"):
            other = f"{other} that {verb2[2]} {c['object2']}"
        clause = f"{other} {verb_phrase(verb, c['form'], c['other_plural'])}"
        if c["variant"]:  # a gap: only the wh-word can introduce it
            good = f"{subject} {c['embedding']} {c['wh']} {clause}"
            bad = f"{subject} {c['embedding']} that {clause}"
        else:  # no gap: only "that" can
            good = f"{subject} {c['embedding']} that {clause} {obj}"
            bad = f"{subject} {c['embedding']} {c['wh']} {clause} {obj}"
        return sentence(good), sentence(bad)
    if c["phenomenon"] == "question_npi":
        aux = agree_aux(c["aux"], c["subject_plural"])
        if c.get("intransitive") is not None:
            verb, obj = INTRANSITIVE[c["intransitive"]], ""
        form = verb[3] if aux in ("has", "have", "had") else verb[0]
        predicate = f"{form} {obj}".rstrip()
        bad = sentence(f"{subject} {aux} ever {predicate}")
        if c["variant"] == 2:
            return sentence(f"only {subject} {aux} ever {predicate}"), bad
        if c["variant"] == 1:
            return sentence(f"{aux} {subject} ever {predicate}", "?"), bad
        return sentence(f"{subject} {aux} not ever {predicate}"), bad
    if c["phenomenon"] == "npi_scope":
        aux = agree_aux(c["aux"], c["subject_plural"])
        form = verb2[3] if aux in ("has", "have", "had") else verb2[0]
        relative = verb[3]
        good = f"{subject} that had {relative} {other} {aux} not ever {form} {obj}"
        bad = f"{subject} that had not {relative} {other} {aux} ever {form} {obj}"
        return sentence(good), sentence(bad)
    if c["phenomenon"] == "attractor":
        head, plural = c["head"], c["head_plural"]
        if c["variant"]:  # a prepositional phrase between the subject and its verb
            start = f"{head} {c['preposition']} {c['near']}"
            rest = f"{verb[3]} {obj}" if c["be"][0].startswith("has") else c["adjective"]
            good_be, bad_be = c["be"][plural], c["be"][not plural]
            return sentence(f"{start} {good_be} {rest}"), sentence(f"{start} {bad_be} {rest}")
        # a relative clause between the subject and its verb
        start = f"{head} that {verb2[2]} {c['near']}"
        good_verb, bad_verb = (verb[0], verb[1]) if plural else (verb[1], verb[0])
        return sentence(f"{start} {good_verb} {obj}"), sentence(f"{start} {bad_verb} {obj}")
    if c["phenomenon"] == "wh_question":
        return wh_question(c, verb)
    raise ValueError(f"unknown phenomenon {c['phenomenon']!r}")


def wh_question(c: dict, verb: tuple[str, str, str, str]) -> tuple[str, str]:
    """A question's wh-phrase must leave a gap, whole and outside an island:
    0 "Which box did Tom bring?" / "Which did Tom bring box?" (the noun stays with "which"),
    1 "What did Tom bring?" / "What did Tom bring the box?" (a gap, not an object),
    2 "What did Tom and the boys bring?" / "What did Tom bring and the boys?" (not out of one conjunct),
    3 "What did Tom think she brought?" / "What did Tom think who brought?" (not out of a wh-clause)."""
    subject, obj, variant = c["subject"], c["object"], c["variant"]
    if variant == 2:  # a coordinated subject is plural: keep to auxiliaries of one form
        aux = {"does": "did", "has": "had"}.get(c["aux"], c["aux"])
    else:
        aux = agree_aux(c["aux"], c["subject_plural"])
    participle = aux in ("has", "have", "had")
    form = verb[3] if participle else verb[0]
    if variant == 0:
        return sentence(f"{c['which']} {c['noun']} {aux} {subject} {form}", "?"), sentence(
            f"{c['which']} {aux} {subject} {form} {c['noun']}", "?"
        )
    if variant == 1:
        return sentence(f"what {aux} {subject} {form}", "?"), sentence(f"what {aux} {subject} {form} {obj}", "?")
    if variant == 2:
        return sentence(f"what {aux} {subject} and {c['other']} {form}", "?"), sentence(
            f"what {aux} {subject} {form} and {c['other']}", "?"
        )
    bridge = BRIDGE[c["bridge"]][1 if participle else 0]
    return sentence(f"what {aux} {subject} {bridge} {c['pronoun']} {verb[2]}", "?"), sentence(
        f"what {aux} {subject} {bridge} who {verb[2]}", "?"
    )


def verb_phrase(verb: tuple[str, str, str, str], form: str, plural: bool) -> str:
    """A finite verb phrase with no object: past, present (agreeing), or an auxiliary and the verb."""
    base, third, past, participle = verb
    return {
        "past": past,
        "present": base if plural else third,
        "perfect": ("have " if plural else "has ") + participle,
        "pluperfect": "had " + participle,
        "negated": "did not " + base,
        "future": "will " + base,
    }[form]


def agree_aux(aux: str, plural: bool) -> str:
    """An auxiliary in the form its subject needs: does/do, has/have; the others have one form."""
    forms = {"do": ("does", "do"), "does": ("does", "do"), "has": ("has", "have"), "have": ("has", "have")}
    return forms[aux][plural] if aux in forms else aux


def sentence(text: str, end: str = ".") -> str:
    """Capitalize the first letter and end the sentence."""
    return text[0].upper() + text[1:] + end
