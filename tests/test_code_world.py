"""The code world: templates, mutations with the right status, records, and HumanEval in the sandbox."""

import gzip
import json
import random

import pytest

from touchstone.files import shared_data
from touchstone.records import is_pair
from touchstone.worlds import get_world
from touchstone.worlds.code import CodeWorld
from touchstone.worlds.programs import humaneval_item, mutate_source

HUMANEVAL = shared_data() / "humaneval" / "HumanEval.jsonl.gz"
needs_humaneval = pytest.mark.skipif(not HUMANEVAL.exists(), reason="HumanEval data not present")


@pytest.fixture(scope="module")
def world():
    return get_world("code")


def _problems():
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _broken(problem, kind):
    """A HumanEval reference solution with one simple mutation whose status is known."""
    body = problem["canonical_solution"]
    return {
        "syntax_error": "    return (\n" + body,
        "runtime_error": "    1 / 0\n" + body,
        "timeout": "    while True:\n        pass\n" + body,
        "wrong_answer": "    return object()\n",
    }[kind]


def test_template_items_pass_and_mutants_fail_with_their_status(world):
    rng = random.Random(0)
    item = world.sample(rng)
    assert world.verify(item).reason == "pass"
    expect = {"syntax_error": "syntax_error", "infinite_loop": "timeout"}
    for kind, reason in expect.items():
        assert world.verify(world.mutate(item, rng, kind=kind)).reason == reason


def test_undefined_name_is_a_runtime_error(world):
    src = "def f(x):\n    y = x + 1\n    return y\n"
    broken = mutate_source(src, "undefined_name", random.Random(1))
    item = {"completion": broken, "entry_point": "f", "test": "def check(candidate):\n    assert candidate(1) == 2\n"}
    v = world.verify(item)
    assert v.reason == "runtime_error" and "NameError" in v.evidence["message"]


def test_mutations_change_only_the_code():
    src = "def f(values):\n    total = 0\n    for v in values:\n        total += v * 2\n    return total\n"
    for kind in ("flip_operator", "off_by_one", "wrong_return", "delete_line", "infinite_loop"):
        broken = mutate_source(src, kind, random.Random(3))
        assert broken and broken != src and broken.startswith("def f(values):")


def test_rendered_records_are_valid_and_reverify(world):
    from touchstone.records import schema_errors

    records = world.render(random.Random(5), 8)
    assert len(records) == 8 and {r["label"] for r in records if is_pair(r)} <= {"a", "b"}
    assert all(not schema_errors(r) and r["verdict"]["ok"] for r in records)
    assert all(v.ok for v in world.verify_many(records))


def test_flipped_label_is_caught(world):
    rec = next(r for r in world.render(random.Random(6), 6) if is_pair(r))
    flipped = {**rec, "label": "b" if rec["label"] == "a" else "a"}
    assert world.verify_record(flipped).reason == "label_disagrees"


@needs_humaneval
def test_humaneval_subset_passes_and_mutants_fail(world):
    problems = _problems()[::16]
    assert all(v.ok for v in world.verify_many([humaneval_item(p) for p in problems]))
    for kind in ("syntax_error", "runtime_error", "wrong_answer"):
        verdicts = world.verify_many([humaneval_item(p, _broken(p, kind)) for p in problems])
        assert [v.reason for v in verdicts] == [kind] * len(problems), kind
    v = world.verify(humaneval_item(problems[0], _broken(problems[0], "timeout")))
    assert v.reason == "timeout"


@pytest.mark.slow
@needs_humaneval
def test_all_humaneval_solutions_pass_and_mutants_fail(world):
    problems = _problems()
    verdicts = world.verify_many([humaneval_item(p) for p in problems])
    assert sum(v.ok for v in verdicts) == len(problems) == 164
    for kind in ("syntax_error", "runtime_error", "wrong_answer"):
        verdicts = world.verify_many([humaneval_item(p, _broken(p, kind)) for p in problems])
        assert [v.reason for v in verdicts] == [kind] * len(problems), kind
    assert {v.reason for v in world.verify_many([humaneval_item(p, _broken(p, "timeout")) for p in problems[::8]])} == {
        "timeout"
    }


def test_code_that_does_not_parse_has_no_mutation():
    import random

    assert mutate_source("def gcd(a, b):\n", "flip_operator", random.Random(0)) is None
    with pytest.raises(ValueError):
        CodeWorld().mutate({"completion": "def gcd(a, b):\n", "entry_point": "gcd", "test": ""}, random.Random(0))
