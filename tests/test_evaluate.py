"""The evaluation harness on a tiny random model: scoring, skipping, formats, metrics, provenance, errors."""

import gzip
import json

import pytest
import torch
from test_judge import tiny_model_dir

from touchstone import cli
from touchstone.errors import UserError
from touchstone.evaluate import evaluate, parse_spec
from touchstone.generate import load_model
from touchstone.likelihood import score_minimal_pairs
from touchstone.metrics import classification, wilson

PAIRS = [
    ("The cat sat on the mat.", "The cat sat on mat the."),
    ("The dogs run in the park.", "The dogs runs in the park."),
    ("Paris is the capital of France.", "Paris are the capital of France."),
    ("Same.", "Same."),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("eval"))


@pytest.fixture(scope="module")
def blimp_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("blimp")
    for name, pairs in (("agreement", PAIRS[:2]), ("order", PAIRS[2:])):
        with gzip.open(d / f"{name}.jsonl.gz", "wt", encoding="utf-8") as f:
            for good, bad in pairs:
                f.write(json.dumps({"sentence_good": good, "sentence_bad": bad, "linguistics_term": name}) + "\n")
    return d


def manual_logprob(model, tok, sentence: str) -> float:
    """lm-evaluation-harness's way: context [BOS], continuation " " + sentence, one unbatched pass."""
    import torch

    ids = [tok.bos_token_id] + tok(" " + sentence, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].double(), -1)
    return sum(float(logp[t, ids[t + 1]]) for t in range(len(ids) - 1))


def test_minimal_pair_verdicts_equal_a_direct_log_prob_computation(model_dir):
    model, tok = load_model(model_dir)
    pairs = [{"sentence_good": g, "sentence_bad": b} for g, b in PAIRS[:3]] * 2
    pairs += [{"sentence_good": b, "sentence_bad": g} for g, b in PAIRS[:3]]
    got = score_minimal_pairs(model, tok, pairs, batch_size=4)
    expect = [
        manual_logprob(model, tok, p["sentence_good"]) > manual_logprob(model, tok, p["sentence_bad"]) for p in pairs
    ]
    assert got == expect and any(got) and not all(got)


def test_continuation_logprobs_equal_direct_computation(model_dir):
    from touchstone.likelihood import continuation_logprobs

    model, tok = load_model(model_dir)
    sents = [g for g, _ in PAIRS[:3]]
    reqs = [([tok.bos_token_id], tok(" " + s, add_special_tokens=False)["input_ids"]) for s in sents]
    for got, s in zip(continuation_logprobs(model, reqs, batch_size=2), sents):
        assert got == pytest.approx(manual_logprob(model, tok, s), abs=1e-4)


def test_identical_pairs_are_skipped_and_counted(model_dir, blimp_dir):
    r = evaluate(model_dir, [f"minimal-pairs:{blimp_dir}"])["tasks"][f"minimal-pairs:{blimp_dir}"]
    assert r["n"] == 3 and r["skipped_identical"] == 1
    assert set(r["per_file"]) == {"agreement", "order"} and r["per_file"]["order"]["n"] == 1
    assert r["accuracy"] == pytest.approx(sum(v["accuracy"] * v["n"] for v in r["per_file"].values()) / 3)


def test_claims_csv_is_read_and_judged(model_dir, tmp_path):
    f = tmp_path / "claims.csv"
    f.write_text('statement,label\n"Paris is in France.",1\nThe sun is cold.,false\nTwo is even.,true\n')
    r = evaluate(model_dir, [f"claims:{f}"])["tasks"][f"claims:{f}"]
    assert r["n"] == 3 and r["claims"]["per_label"]["true"]["support"] == 2


def test_metrics_on_a_hand_checked_confusion_matrix():
    # gold a a a b b, predicted a a b b a: tp(a)=2, fp(a)=1, fn(a)=1; tp(b)=1, fp(b)=1, fn(b)=1.
    m = classification(list("aaabb"), list("aabba"), ["a", "b"])
    assert m["accuracy"] == pytest.approx(3 / 5) and m["n"] == 5
    assert m["per_label"]["a"]["precision"] == pytest.approx(2 / 3) and m["per_label"]["a"]["recall"] == pytest.approx(
        2 / 3
    )
    assert m["per_label"]["b"]["precision"] == pytest.approx(1 / 2) and m["per_label"]["b"]["f1"] == pytest.approx(
        1 / 2
    )
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def test_wilson_interval_matches_the_formula_and_brackets_the_rate():
    lo, hi = wilson(81, 100)  # reference values of the Wilson interval for 81/100
    assert lo == pytest.approx(0.7222, abs=1e-4) and hi == pytest.approx(0.8749, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and 0 < wilson(0, 10)[1] < 0.35


def test_results_json_has_provenance_and_a_report(model_dir, blimp_dir, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": "?", "a": g, "b": b, "label": "a"}) + "\n" for g, b in PAIRS))
    text = tmp_path / "t.txt"
    text.write_text("The cat sat on the mat. " * 10)
    out = tmp_path / "res" / "eval.json"
    assert (
        cli.main(
            [
                "eval",
                str(model_dir),
                "--task",
                f"pairs:{pairs}",
                f"perplexity:{text}",
                f"minimal-pairs:{blimp_dir}",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    prov = res["provenance"]
    assert len(prov["model_sha256"]) == 64 and prov["touchstone_version"]
    assert prov["task_versions"][f"pairs:{pairs}"].startswith("sha256:")
    assert res["tasks"][f"perplexity:{text}"]["bits_per_byte"] > 0
    assert (out.parent / "eval.md").is_file() and (out.parent / "eval-paradigms.png").stat().st_size > 1000


def test_suite_spec_uses_the_world_version(model_dir):
    from touchstone.worlds import get_world

    res = evaluate(model_dir, ["suite:numbers"], limit=20)
    assert res["tasks"]["suite:numbers"]["n"] == 20
    assert res["provenance"]["task_versions"]["suite:numbers"] == str(get_world("numbers").version)


def test_suite_accuracy_is_broken_down_by_record_kind(model_dir, tmp_path):
    from touchstone.report import write_report
    from touchstone.worlds.numbers import OPS

    res = evaluate(model_dir, ["suite:numbers"], limit=40)
    task = res["tasks"]["suite:numbers"]
    per_kind = task["per_kind"]
    assert set(per_kind) <= set(OPS) and len(per_kind) >= 3
    assert sum(v["n"] for v in per_kind.values()) == task["n"] == 40
    assert sum(v["correct"] for v in per_kind.values()) == task["correct"]
    for v in per_kind.values():
        assert v["accuracy"] == v["correct"] / v["n"] and v["ci95"][0] <= v["accuracy"] <= v["ci95"][1]
    report = write_report(res, tmp_path).read_text()
    assert "`suite:numbers` by kind" in report and "| sum |" in report


def test_contrast_reads_code_claims_through_pairs_and_is_recorded(model_dir, tmp_path):
    import random

    from touchstone.worlds import get_world
    from touchstone.worlds.code import CLAIM

    item = get_world("code").sample(random.Random(5))
    code_claim = CLAIM.format(code=item["completion"].rstrip("\n"), name=item["entry_point"], test=item["test"])
    f = tmp_path / "claims.jsonl"
    f.write_text(
        json.dumps({"statement": code_claim, "label": True, "world": "code"})
        + "\n"
        + json.dumps({"statement": "Paris is in France.", "label": True})
        + "\n"
    )
    res = evaluate(model_dir, [f"claims:{f}"], contrast=2)
    assert res["tasks"][f"claims:{f}"]["claims_by_contrast"] == 1
    assert res["provenance"]["config"]["claim_contrast"] == 2
    assert "claims_by_contrast" not in evaluate(model_dir, [f"claims:{f}"])["tasks"][f"claims:{f}"]
    with pytest.raises(UserError, match="--contrast"):
        evaluate(model_dir, [f"claims:{f}"], contrast=-1)


def test_kinds_that_name_their_item_are_grouped_by_question_type(model_dir, tmp_path):
    f = tmp_path / "claims.jsonl"
    kinds = ["gcd:off_by_one", "fibonacci:off_by_one", "gcd:syntax_error"]
    f.write_text(
        "".join(json.dumps({"statement": f"Claim {i}.", "label": True, "kind": k}) + "\n" for i, k in enumerate(kinds))
    )
    per_kind = evaluate(model_dir, [f"claims:{f}"])["tasks"][f"claims:{f}"]["per_kind"]
    assert {k: v["n"] for k, v in per_kind.items()} == {"off_by_one": 2, "syntax_error": 1}


def test_bleu_task_scores_greedy_generations(model_dir, tmp_path):
    f = tmp_path / "gen.jsonl"
    f.write_text(json.dumps({"prompt": "The cat", "reference": "sat on the mat.", "max_new_tokens": 5}) + "\n")
    r = evaluate(model_dir, [f"bleu:{f}"])["tasks"][f"bleu:{f}"]
    assert r["n"] == 1 and 0 <= r["bleu"] <= 100


@pytest.mark.parametrize("spec", ["nonsense", "pairs:/no/such/file.jsonl", "suite:atlantis", "perplexity:/nope"])
def test_bad_spec_is_a_user_error_with_exit_2(model_dir, spec, capsys):
    with pytest.raises(UserError):
        parse_spec(spec)
    assert cli.main(["eval", str(model_dir), "--task", spec]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_bf16_verdicts_equal_fp32(model_dir):
    model, tok = load_model(model_dir)
    pairs = [{"sentence_good": g, "sentence_bad": b} for g, b in PAIRS[:3]] * 3
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert score_minimal_pairs(model, tok, pairs, bf16=True) == score_minimal_pairs(model, tok, pairs)
    # the bf16 pass runs on a copy: the caller's model keeps its dtype and weights
    assert next(model.parameters()).dtype == torch.float32
    assert all(v.equal(weights[k]) for k, v in model.state_dict().items())


def test_the_bf16_scorer_computes_the_same_function(model_dir):
    from touchstone.likelihood import bf16_scorer

    model, _ = load_model(model_dir)
    x = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.inference_mode():
        want = model(x).logits.log_softmax(-1)
        got = bf16_scorer(model)(x).logits.float().log_softmax(-1)
    assert (got - want).abs().max() < 0.1


def test_shared_prefix_rows_give_the_same_differences_as_separate_sentences(model_dir):
    """One row per pair (tree attention mask) equals scoring each sentence alone, prefix cases included."""
    from touchstone.likelihood import pair_differences

    model, tok = load_model(model_dir)
    cases = [(g, b) for g, b in PAIRS[:3]] + [("The cat sat.", "The cat sat on the mat."), ("A dog.", "The dog.")]
    ids = [
        (tok(" " + g, add_special_tokens=False)["input_ids"], tok(" " + b, add_special_tokens=False)["input_ids"])
        for g, b in cases
    ]
    got = pair_differences(model, tok.bos_token_id, ids).tolist()
    for d, (g, b) in zip(got, cases):
        assert d == pytest.approx(manual_logprob(model, tok, g) - manual_logprob(model, tok, b), abs=1e-4)


def test_aevaluate_runs_tasks_from_asyncio(model_dir, tmp_path):
    import asyncio

    from touchstone.evaluate import aevaluate

    f = tmp_path / "claims.jsonl"
    f.write_text(json.dumps({"statement": "Two is even.", "label": 1}) + "\n")
    res = asyncio.run(aevaluate(model_dir, [f"claims:{f}"]))
    assert res["tasks"][f"claims:{f}"] == evaluate(model_dir, [f"claims:{f}"])["tasks"][f"claims:{f}"]
