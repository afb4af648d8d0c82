"""The worlds: rendered records agree with their verifiers, mutations change verdicts, flipped labels
are caught. Real data from ../shared/data where a world needs it (skipped when absent)."""

from __future__ import annotations

import gzip
import json
import random
import re

import pytest
from test_debate import A as DEBATE_A

from touchstone.files import shared_data
from touchstone.records import is_pair
from touchstone.worlds import get_world

SHARED = shared_data()
BOOK = SHARED / "gutenberg" / "11.txt"  # Alice's Adventures in Wonderland, small
needs_book = pytest.mark.skipif(not BOOK.is_file(), reason="shared Gutenberg text not present")


def make(name: str):
    if name == "language":
        if not BOOK.is_file():
            pytest.skip("shared Gutenberg text not present")
        return get_world("language", source=str(BOOK))
    return get_world(name)


CHEAP = ["numbers", "facts", "colour", "language"]
N = {"wing": 6}  # each wing record runs the solver twice


def flipped(rec: dict) -> dict:
    rec = dict(rec)
    rec["label"] = ("b" if rec["label"] == "a" else "a") if is_pair(rec) else (not rec["label"])
    return rec


@pytest.mark.parametrize("name", CHEAP + ["wing"])
def test_rendered_records_agree_with_the_verifier(name):
    world = make(name)
    records = world.render(random.Random(1), N.get(name, 60))
    assert len(records) == N.get(name, 60)
    assert all(r["verdict"]["ok"] and world.verify_record(r).ok for r in records)


@pytest.mark.parametrize("name", CHEAP + ["wing"])
def test_verify_record_catches_a_flipped_label(name):
    world = make(name)
    records = world.render(random.Random(2), N.get(name, 40))
    assert not any(world.verify_record(flipped(r)).ok for r in records)


@pytest.mark.parametrize("name", CHEAP + ["wing"])
def test_render_puts_the_correct_answer_on_both_sides(name):
    world = make(name)
    records = world.render(random.Random(3), N.get(name, 80) * 2)
    pair_labels = {r["label"] for r in records if is_pair(r)}
    claim_labels = {r["label"] for r in records if not is_pair(r)}
    assert pair_labels == {"a", "b"} and claim_labels == {True, False}


@pytest.mark.parametrize("name", CHEAP)
def test_mutate_turns_a_true_item_false(name):
    world = make(name)
    rng = random.Random(4)
    for _ in range(30):
        item = world.sample(rng)
        assert world.verify(item).ok
        assert not world.verify(world.mutate(item, rng)).ok


def test_numbers_words_read_back_exactly():
    from touchstone.worlds.number_words import parse_number, to_words

    rng = random.Random(5)
    for n in [0, 13, 40, 100, 1000, 999_999] + [rng.randint(0, 999_999) for _ in range(500)]:
        assert parse_number(to_words(n)) == n


def test_numbers_claim_in_words_is_checked_exactly():
    world = get_world("numbers")
    from touchstone.records import claim_record

    true = claim_record("Eighty-one is larger than fifty-three.", True, world="numbers", kind="larger")
    assert world.verify_record(true).ok
    assert not world.verify_record(flipped(true)).ok


def test_a_numbers_comparison_claim_restates_as_the_pair_its_truth_answers():
    """The contrast of a comparison claim is its pair question with the claim's first number as a: the
    tool labels that pair a exactly when the claim is true. Other claims get no contrast."""
    from touchstone.records import pair_record

    world = get_world("numbers")
    records = world.render(random.Random(8), 400)
    comparisons = [r for r in records if not is_pair(r) and r["kind"] in ("larger", "smaller")]
    assert len(comparisons) > 40 and {r["label"] for r in comparisons} == {True, False}
    for rec in comparisons:
        (asked,) = world.contrast(rec, random.Random(0), 1)
        restated = pair_record(asked["prompt"], asked["a"], asked["b"], "a", world="numbers", kind=rec["kind"])
        assert world.verify_record(restated).ok == rec["label"], rec["statement"]
    others = [r for r in records if not is_pair(r) and r["kind"] not in ("larger", "smaller")]
    assert others and all(world.contrast(r, random.Random(0), 3) == [] for r in others)
    assert world.contrast({"statement": "Not about numbers."}, random.Random(0), 1) == []


def test_colour_distance_separates_gross_and_subtle_wrong_names():
    world = get_world("colour")
    rng = random.Random(6)
    distances = []
    for _ in range(40):
        item = world.sample(rng)
        wrong = world.mutate(item, rng)
        distances.append(world.verify(wrong).evidence["delta_e2000"])
    assert min(distances) >= 10.0  # never an ambiguous "wrong" name
    assert min(distances) < 20 and max(distances) > 40  # both close neighbours and far-off names occur


def test_colour_records_show_shades_never_the_reference_colours():
    # Exact references as wrong options made the held-out suite reward memorising against the truth
    # (see touchstone/worlds/colour.py); a shown colour may equal a reference only by rare coincidence.
    from touchstone.worlds.colour import COLOUR_RE, to_hex

    world = get_world("colour")
    refs = {ref for _, ref in world.palette["flat"]}
    shown = [
        to_hex(c)
        for r in world.render(random.Random(8), 300)
        for c in re.findall(COLOUR_RE, " ".join(str(r.get(k, "")) for k in ("prompt", "a", "b", "statement")))
    ]
    assert len(shown) >= 300
    assert sum(c in refs for c in shown) / len(shown) < 0.03


def test_colour_works_without_the_xkcd_file(tmp_path):
    world = get_world("colour", xkcd=str(tmp_path / "missing.txt"))
    assert world.xkcd is None
    records = world.render(random.Random(7), 20)
    assert all(world.verify_record(r).ok for r in records)


def test_facts_false_statements_are_false_by_lookup():
    world = get_world("facts")
    assert world.verify({"kind": "capital", "city": "Nairobi", "country": "Kenya"}).ok
    assert not world.verify({"kind": "capital", "city": "Mombasa", "country": "Kenya"}).ok


def test_facts_every_true_capital_claim_reads_back_true():
    from touchstone.records import claim_record
    from touchstone.worlds.facts import statement, tables

    world = get_world("facts")
    for country in tables()["with_capital"]:
        item = {"kind": "capital", "city": tables()["countries"][country]["capital"], "country": country}
        assert world.verify_record(claim_record(statement(item), True, world="facts", kind="fact")).ok, item


@needs_book
def test_language_never_uses_evaluation_sentences(tmp_path):
    from touchstone.worlds.language import LanguageWorld

    blimp = sorted((SHARED / "blimp" / "data").glob("*.jsonl.gz"))
    if not blimp:
        pytest.skip("BLiMP not present")
    with gzip.open(blimp[0], "rt", encoding="utf-8") as f:
        good = [json.loads(line)["sentence_good"] for line in f][:50]
    corpus = tmp_path / "mixed.txt"
    corpus.write_text("\n\n".join(good + [BOOK.read_text(encoding="utf-8")[:200_000]]), encoding="utf-8")
    sentences = set(LanguageWorld(str(corpus)).sentences)
    assert sentences and not sentences & set(good)


def test_language_irregular_corruption_exchanges_past_and_participle():
    from touchstone.worlds.corruptions import corrupt

    rng = random.Random(0)
    assert corrupt("By then she had written the letter.", "irregular", rng) == "By then she had wrote the letter."
    assert corrupt("Went the others home with him.", "irregular", rng) == "Gone the others home with him."
    assert corrupt("The others stayed at home.", "irregular", rng) is None


def test_language_number_corruption_breaks_agreement_only_where_a_neighbour_fixes_it():
    from touchstone.worlds.corruptions import corrupt, number_table

    table = number_table(
        ["He read a book there.", "They sold these books cheaply.", "She had a good time.", "The dogs barked loudly."]
    )
    assert table == {"book": ("books", False), "books": ("book", True)}  # "good": no "these goods" seen
    rng = random.Random(0)
    assert corrupt("These books are old and worn.", "number", rng, nouns=table) == "These book are old and worn."
    assert corrupt("The book is on the shelf.", "number", rng, nouns=table) == "The books is on the shelf."
    # No determiner or verb fixes the number here, so flipping it would leave a good sentence.
    assert corrupt("He liked the books of his father.", "number", rng, nouns=table) is None


def test_language_verb_corruption_breaks_subject_verb_agreement():
    from touchstone.worlds.corruptions import corrupt, verb_table

    verbs = verb_table(["Then she walks home.", "Then they walk home.", "He always smiles.", "They always smile."])
    assert verbs == {"walks": ("walk", False), "walk": ("walks", True)}  # "alway" is never seen after "they"
    rng = random.Random(0)
    assert (
        corrupt("Every morning she walks to the river.", "verb", rng, verbs=verbs)
        == "Every morning she walk to the river."
    )
    assert corrupt("At dawn they walk to the river.", "verb", rng, verbs=verbs) == "At dawn they walks to the river."
    assert corrupt("The fox will walk to the river.", "verb", rng, verbs=verbs) is None


def test_language_npi_corruption_only_where_nothing_licenses_ever():
    from touchstone.worlds.corruptions import corrupt

    rng = random.Random(0)
    assert corrupt("She has really tried to help him.", "npi", rng) == "She has ever tried to help him."
    for licensed in (
        "She has not really tried to help him.",
        "If she has really tried, she will win.",
        "She has really tried the hardest of all.",
    ):
        assert corrupt(licensed, "npi", rng) is None, licensed
    assert corrupt("He was really kind to her.", "npi", rng) is None  # "He was ever kind" is old but good


def test_language_render_balances_the_substituted_words():
    """No word may sit on the corrupted side much more often than on the original side: otherwise a judge
    can learn the word ("an", "these") instead of the grammar."""
    from collections import Counter

    from touchstone.worlds.corruptions import OPS, WordBalance

    records = get_world("language").render(random.Random(3), 1500)  # the embedded corpus
    ops = Counter(r["verdict"]["evidence"]["op"] for r in records)
    assert ops["agreement"] > 80 and ops["number"] > 50 and ops["verb"] > 10 and ops["npi"] > 10, ops
    balance = WordBalance()
    for r in records:
        # "npi" is exempt by design (see touchstone.worlds.language.corrupt); the grammar's pairs are
        # balanced by their own coin (touchstone.worlds.grammar), not by this bookkeeping.
        if r["verdict"]["evidence"]["op"] in OPS and r["verdict"]["evidence"]["op"] != "npi":
            balance.add(r["verdict"]["evidence"]["original"], r["verdict"]["evidence"]["corrupted"])
    words = set(balance.inserted) | set(balance.removed)
    assert max(abs(balance.inserted[w] - balance.removed[w]) for w in words) <= balance.slack


def test_grammar_pairs_differ_where_their_phenomenon_says():
    """Each phenomenon's two sentences differ in the one place it names, and rebuild from their choices."""
    from touchstone.worlds import grammar

    nouns = {"box": ("boxes", False), "boxes": ("box", True), "hour": ("hours", False), "hours": ("hour", True)}
    g = grammar.Grammar(nouns, ["Tom", "Mary"])
    singular_verbs = {"is", "was", "isn't", "wasn't", "has", "hasn't"} | {v[1] for v in grammar.TRANSITIVE}
    rng = random.Random(0)
    for _ in range(200):
        for phenomenon in grammar.PHENOMENA:
            good, bad, choices = g.pair(phenomenon, rng)
            assert good != bad and grammar.build(choices) == (good, bad)
            assert "a hour" not in good.lower() and "an box" not in good.lower()
            g_words, b_words = good.rstrip(".?").split(), bad.rstrip(".?").split()
            changed = [(x, y) for x, y in zip(g_words, b_words) if x != y]
            if phenomenon == "wh_gap":
                assert len(g_words) == len(b_words) and len(changed) == 1
                assert "that" in changed[0] and {"what", "who"} & {*changed[0]}
            elif phenomenon == "attractor":
                assert len(g_words) == len(b_words) and len(changed) == 1
                # the verb agrees with the head noun, never with the nearer one
                assert (changed[0][0] in singular_verbs) != choices["head_plural"]
            elif phenomenon == "wh_question":  # the same words moved, an object added, or "who" for a pronoun
                assert good.endswith("?") and bad.endswith("?")
                variant = choices["variant"]
                if variant in (0, 2):
                    assert sorted(g_words) == sorted(b_words) and g_words != b_words
                elif variant == 1:
                    assert bad.startswith(good[:-1] + " ")
                else:
                    assert changed == [(choices["pronoun"], "who")]
            else:  # the NPI phenomena: "ever" stays, its licensor moves or goes
                assert "ever" in g_words and "ever" in b_words
                assert ("not" in b_words) <= ("not" in g_words) or phenomenon == "npi_scope"
    assert grammar.build(
        {
            "phenomenon": "question_npi",
            "subject": "the boys",
            "subject_plural": True,
            "other": "Tom",
            "other_plural": False,
            "object": "the box",
            "verb": 0,
            "verb2": 0,
            "variant": 1,
            "aux": "do",
        }
    ) == ("Do the boys ever bring the box?", "The boys do ever bring the box.")


def test_language_grammar_records_are_checked_by_rebuilding_them():
    world = get_world("language")
    records = [r for r in world.render(random.Random(4), 300) if "choices" in r["verdict"]["evidence"]]
    assert len(records) > 40
    assert all(world.verify_record(r).ok for r in records)
    rec = json.loads(json.dumps(next(r for r in records if r["verdict"]["evidence"]["op"] == "wh_gap")))
    rec["verdict"]["evidence"]["choices"]["variant"] ^= 1  # gap and no gap: the recorded pair no longer follows
    assert world.verify_record(rec).reason == "not_rebuilt"
    rec = json.loads(json.dumps(records[1]))
    rec["verdict"]["evidence"]["choices"]["phenomenon"] = "nonsense"
    assert not world.verify_record(rec).ok


@needs_book
def test_language_record_with_an_edited_side_fails():
    world = make("language")
    rec = next(r for r in world.render(random.Random(8), 20) if is_pair(r))
    bad = "b" if rec["label"] == "a" else "a"
    rec[bad] = rec[bad] + " Indeed."
    assert not world.verify_record(rec).ok


def test_wing_figures_are_consistent():
    from touchstone.worlds.wing import analyze

    design = {**DEBATE_A, "altitude": 1000, "max_span": 12.0}  # the debate tests' first design, lower down
    f = analyze(design)
    assert f["feasible"], f
    assert f["L_over_D"] == pytest.approx(f["CL"] / f["CD"], rel=1e-3)
    assert f["wing_loading"] == pytest.approx(4000 / f["wing_area"], rel=1e-3)
    heavy = analyze({**design, "weight": 400_000})
    assert not heavy["feasible"] and heavy["reason"] == "cannot_lift"
    assert analyze({**design, "max_span": 8.0})["reason"] == "span_limit"


def test_wing_mutation_changes_the_figures():
    world = get_world("wing")
    rng = random.Random(9)
    item = world.sample(rng)
    assert world.verify(world.mutate(item, rng)).evidence != world.verify(item).evidence


def test_plot_wings_writes_a_png(tmp_path):
    from touchstone.worlds.wing import plot_wings

    rng = random.Random(10)
    world = get_world("wing")
    item = world.sample(rng)
    out = tmp_path / "wings.png"
    plot_wings([item, world.mutate(item, rng)], out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_facts_suite_asks_taught_facts_in_phrasings_training_never_uses():
    from touchstone.synth import heldout_suite
    from touchstone.worlds.facts import UNTAUGHT_BUCKET, pair_items, parse_statement
    from touchstone.worlds.splits import bucket

    world = get_world("facts")

    def true_facts(records):
        """The true fact of each pair (its right version) and of each true claim, as items."""
        return [
            pair_items(r)["ab".index(r["label"])] if is_pair(r) else parse_statement(r["statement"])
            for r in records
            if r["label"] is not False
        ]

    train = world.render(random.Random(3), 1500)
    taught = {bucket(world, item) for item in true_facts(train)}
    assert UNTAUGHT_BUCKET not in taught and 0 in taught  # the held-out suite's facts are taught
    assert {r["kind"] for r in train} == {"fact"}  # in the training phrasings only
    for name, wanted in (("facts", 0), ("facts-untaught", UNTAUGHT_BUCKET)):
        suite = heldout_suite(name)[1]
        assert all(world.verify_record(r).ok for r in suite)
        assert {r["kind"].split(":")[0] for r in suite} == {"question", "rephrased"}
        assert {bucket(world, item) for item in true_facts(suite)} == {wanted}


def test_numbers_derivation_is_the_working_read_from_the_record_text():
    from touchstone.records import claim_record, pair_record
    from touchstone.worlds import get_world

    w = get_world("numbers")
    assert w.derivation(
        claim_record("Seventy-five times thirteen is 900.", False, world="numbers", kind="product")
    ) == (" Seventy-five is 75. thirteen is 13. 75 * 13 = 975.")
    assert w.derivation(pair_record("What is 37 plus 45?", "82", "83", "a", world="numbers", kind="sum")) == (
        " 37 + 45 = 82."
    )
    assert w.derivation(
        pair_record("Which list is in increasing order?", "3, 9, 5", "3, 5, 9", "b", world="numbers", kind="order")
    ) == (" In increasing order: 3, 5, 9.")
    assert w.derivation(claim_record("6 is larger than 12.", False, world="numbers", kind="larger")) == (
        " 6 has 1 digit and 12 has 2."
    )
    assert w.derivation(claim_record("The moon is made of cheese.", False, world="numbers", kind="larger")) is None
    assert get_world("language").derivation(claim_record("Cats sleep.", True, world="language", kind="x")) is None


def test_facts_derivation_is_the_true_fact_in_the_training_phrasing_only():
    from touchstone.records import claim_record, pair_record
    from touchstone.synth import heldout_suite
    from touchstone.worlds.facts import HELDOUT_PATTERNS, PATTERNS

    w = get_world("facts")
    assert w.derivation(claim_record("The capital of France is Lyon.", False, world="facts", kind="x")) == (
        " Paris is the capital of France."
    )
    assert w.derivation(claim_record("Mombasa lies in Uganda.", False, world="facts", kind="x")) == (
        " Mombasa is a city in Kenya."
    )
    question = pair_record("On which continent is Kenya?", "Asia", "Africa", "b", world="facts", kind="x")
    assert w.derivation(question) == " Kenya is in Africa."
    assert w.derivation(claim_record("Atlantis is in Europe.", True, world="facts", kind="x")) is None
    # Every derivation of the training and held-out records is a training-phrasing statement.
    for rec in w.render(random.Random(3), 60) + heldout_suite("facts")[1][:60]:
        fact = w.derivation(rec).strip()
        assert any(p.fullmatch(fact) for _, p in PATTERNS)
        assert not any(p.fullmatch(fact) for _, p in HELDOUT_PATTERNS)
        assert w.verify_record(claim_record(fact, True, world="facts", kind="fact")).ok


def test_code_and_wing_derivations_read_the_verdict_and_follow_the_order_shown():
    from touchstone.records import swapped

    def sides(text: str) -> tuple[str, str]:
        first, second = text.split(" The second")
        return first.removeprefix(" The first"), second

    code, wing = get_world("code"), get_world("wing")
    for world in (code, wing):
        pair = next(r for r in world.render(random.Random(5), 12) if is_pair(r))
        assert swapped(swapped(pair)) == pair and swapped(pair)["label"] != pair["label"]
        assert sides(world.derivation(swapped(pair))) == sides(world.derivation(pair))[::-1]
    pair = next(r for r in code.render(random.Random(5), 12) if is_pair(r))
    good = "a" if pair["label"] == "a" else "b"
    parts = code.derivation(pair).split(" The second ")
    assert ("passes its tests" in parts[0]) == (good == "a") and ("fails: " in parts[1]) == (good == "a")
    assert code.derivation({k: v for k, v in pair.items() if k != "verdict"}) is None  # code is never run for it
    claim = next(r for r in wing.render(random.Random(6), 12) if not is_pair(r))
    unverified = {k: v for k, v in claim.items() if k != "verdict"}
    assert wing.derivation(unverified) == wing.derivation(claim)  # the simulator, run again, says the same
    assert wing.derivation(claim).rstrip(".").endswith("feasible") == bool(claim["label"])


def test_colour_derivation_names_each_nearest_reference_and_its_distance():
    from touchstone.records import claim_record, pair_record
    from touchstone.worlds import get_world

    w = get_world("colour")
    d, ref = w.distance("#fe0101", "red")
    assert w.derivation(claim_record("The colour #fe0101 is red.", True, world="colour", kind="x")) == (
        f" red is {ref}, {d:.0f} from #fe0101."
    )
    pair = pair_record("What is the name of the colour rgb(254, 1, 1)?", "red", "blue", "a", world="colour", kind="x")
    text = w.derivation(pair)
    assert text.startswith(" rgb(254, 1, 1) is #fe0101. red is ") and "; blue is " in text
    assert w.derivation(claim_record("The colour #fe0101 is not a colour.", True, world="colour", kind="x")) is None
