"""synth / verify_file / held-out suites, and the `touchstone verify` and `touchstone synth` commands."""

from __future__ import annotations

import json
import random

import pytest

from touchstone import synth as S
from touchstone.cli import main
from touchstone.files import read_jsonl, shared_data
from touchstone.records import is_pair, record_type
from touchstone.worlds import get_world
from touchstone.worlds.splits import split_world

BOOK = shared_data() / "gutenberg" / "11.txt"


def test_synth_writes_n_verified_records(tmp_path):
    out = tmp_path / "numbers.jsonl"
    assert S.synth("numbers", 50, out, seed=1) == 50
    records = [obj for _, obj in read_jsonl(out)]
    world = get_world("numbers")
    assert len(records) == 50 and all(world.verify_record(r).ok for r in records)


@pytest.mark.parametrize("name", ["numbers", "facts", "colour"])
def test_heldout_suite_is_deterministic(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TOUCHSTONE_CACHE", str(tmp_path / "first"))
    monkeypatch.setattr(S, "_suites", {})
    first = S.heldout_suite(name)
    monkeypatch.setenv("TOUCHSTONE_CACHE", str(tmp_path / "second"))  # rendered again, not read back
    monkeypatch.setattr(S, "_suites", {})
    assert S.heldout_suite(name) == first
    assert len(first[1]) == get_world(name).suite_size


@pytest.mark.parametrize("name", ["numbers", "facts", "colour"])
def test_heldout_suite_is_disjoint_from_training_records(name):
    _, suite = S.heldout_suite(name)
    train = get_world(name).render(random.Random(11), 2000)
    assert not {r["id"] for r in suite} & {r["id"] for r in train}
    texts = lambda recs: {r.get("statement") or (r["prompt"], r["a"], r["b"]) for r in recs}
    assert not texts(suite) & texts(train)


@pytest.mark.parametrize("name", ["numbers", "facts", "colour"])
def test_gate_items_are_disjoint_from_training_and_heldout_items(name):
    world = get_world(name)
    gate = split_world(world, "gate").render(random.Random(5), 150)
    train = world.render(random.Random(5), 1500)
    _, suite = S.heldout_suite(name)
    texts = lambda recs: {r.get("statement") or (r["prompt"], r["a"], r["b"]) for r in recs}
    assert len(gate) >= 100 and not texts(gate) & texts(train) and not texts(gate) & texts(suite)
    if name == "facts":  # a true fact used in training, as a pair or as a claim, never reaches a gate
        truths = lambda recs: {r[r["label"]] if is_pair(r) else r["statement"] for r in recs if r["label"] is not False}
        assert truths(gate) and not truths(gate) & truths(train)


@pytest.mark.skipif(not BOOK.is_file(), reason="shared Gutenberg text not present")
def test_language_heldout_sentences_never_reach_training():
    world = get_world("language", source=str(BOOK))
    _, suite = S.heldout_suite(world)
    held = {r["verdict"]["evidence"]["original"] for r in suite}
    train = {r["verdict"]["evidence"]["original"] for r in world.render(random.Random(12), 500)}
    assert held and not held & train


def test_verify_file_gives_one_verdict_per_item_and_record(tmp_path):
    records = get_world("numbers").render(random.Random(13), 5)
    lines = records + [{"op": "sum", "x": 2, "y": 3, "claimed": 6}]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n", encoding="utf-8")
    verdicts = list(S.verify_file("numbers", path))
    assert [v["line"] for v in verdicts] == list(range(1, 7))
    assert [v["ok"] for v in verdicts] == [True] * 5 + [False]


@pytest.mark.parametrize(
    "content,needle",
    [
        ('{"op": "sum", "x": 1\n', ":1: malformed JSON"),
        ('{"op": "sum", "x": 1, "y": 2, "claimed": 3}\n{"op": "sum", "x": 1}\n', ":2: missing key 'y'"),
        ('{"a": "1", "b": "2", "label": "c", "prompt": "Which number is larger?"}\n', ":1: key 'label'"),
        ('{"statement": "1 is larger than 2."}\n', ":1: missing key 'label'"),
    ],
)
def test_verify_cli_refuses_malformed_input_in_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    assert main(["verify", "numbers", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err


@pytest.mark.parametrize("form,kind", [("pairs", "pair"), ("claims", "claim")])
def test_synth_keeps_only_the_form_asked_for(tmp_path, form, kind):
    out = tmp_path / f"{form}.jsonl"
    assert S.synth("numbers", 40, out, seed=2, form=form) == 40
    assert all(record_type(obj) == kind for _, obj in read_jsonl(out))


@pytest.mark.parametrize(
    "argv",
    [
        ["synth", "numbers", "--n", "0"],
        ["synth", "nosuchworld", "--n", "3"],
        ["synth", "numbers", "--n", "3", "--seed", str(S.HELDOUT_SEED)],
    ],
)
def test_synth_cli_refuses_bad_arguments_in_one_line(tmp_path, capsys, argv):
    assert main(argv + ["--out", str(tmp_path / "x.jsonl")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert not (tmp_path / "x.jsonl").exists()


def test_synth_cli_then_verify_cli_agree(tmp_path, capsys):
    out = tmp_path / "facts.jsonl.gz"
    assert main(["synth", "facts", "--n", "20", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["verify", "facts", str(out)]) == 0
    verdicts = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(verdicts) == 20 and all(v["ok"] for v in verdicts)


@pytest.mark.slow
def test_wing_heldout_suite_is_disjoint_from_training_records():
    _, suite = S.heldout_suite("wing")
    train = get_world("wing").render(random.Random(14), 200)
    assert len(suite) == get_world("wing").suite_size
    assert not {r["id"] for r in suite} & {r["id"] for r in train}


def test_wing_claims_are_balanced_between_true_and_false():
    # Most sampled designs are feasible; unbalanced claims reward a judge that always says "true"
    # (the suite was 64% true before the world balanced them).
    _, suite = S.heldout_suite("wing")
    claims = [r for r in suite if not is_pair(r)]
    assert len(claims) >= 50 and 0.4 <= sum(bool(r["label"]) for r in claims) / len(claims) <= 0.6


def test_a_rendered_suite_is_read_back_from_the_cache_and_a_broken_one_rendered_again(tmp_path, monkeypatch):
    monkeypatch.setenv("TOUCHSTONE_CACHE", str(tmp_path))
    monkeypatch.setattr(S, "_suites", {})
    version, first = S.heldout_suite("colour")
    (cached,) = (tmp_path / "suites").iterdir()
    assert cached.name.startswith(f"colour-heldout-v{version}-")

    def no_rendering(*args):
        raise AssertionError("rendered although the cache holds the suite")

    monkeypatch.setattr(S, "_suites", {})  # a new process: only the disk cache is left
    monkeypatch.setattr(S, "split_world", no_rendering)
    assert S.heldout_suite("colour") == (version, first)

    monkeypatch.undo()
    monkeypatch.setenv("TOUCHSTONE_CACHE", str(tmp_path))
    monkeypatch.setattr(S, "_suites", {})
    cached.write_text(cached.read_text()[:-40])  # cut short: its last line no longer parses
    assert S.heldout_suite("colour") == (version, first)
    assert [obj for _, obj in read_jsonl(cached)] == first


def test_the_suite_cache_keeps_the_most_recently_used_versions_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TOUCHSTONE_CACHE", str(tmp_path))
    for k in range(5):  # five code versions, each rendering the suite anew
        monkeypatch.setattr(S, "_suites", {})
        monkeypatch.setattr(S, "code_fingerprint", lambda k=k: f"{k:016d}")
        S.heldout_suite("colour")
    kept = sorted(p.name.rsplit("-", 1)[1] for p in (tmp_path / "suites").iterdir())
    assert kept == [f"{k:016d}.jsonl" for k in (2, 3, 4)]
