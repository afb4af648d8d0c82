"""The judge on a tiny random model: symmetry under swapping, probabilities, foreign models, the CLI."""

import asyncio
import json

import pytest

from touchstone import cli, prompts
from touchstone.judge import AsyncJudge, Judge

TEXT = (
    "The cat sat on the mat. The dogs run in the park. 17 + 25 = 42. Paris is the capital of France. "
    "A wing with a long span has less induced drag. "
) * 20


def tiny_model_dir(path, seed: int = 0, n_positions: int = 128):
    """A byte-level BPE with Touchstone's special tokens and a random 2-layer GPT-2, saved as a model dir."""
    import torch
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from touchstone.tokenizer import train_from_texts

    train_from_texts([TEXT], path / "tok", vocab_size=320)
    tok = AutoTokenizer.from_pretrained(str(path / "tok"))
    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=n_positions, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0
    )
    out = path / "model"
    GPT2LMHeadModel(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("judge"))


@pytest.fixture(scope="module")
def judge(model_dir):
    return Judge.load(model_dir)


def test_swapping_the_versions_swaps_the_probabilities(judge):
    r1 = judge.pair("The cat sat.", "The cat sit.", prompt="Which is grammatical?")
    r2 = judge.pair("The cat sit.", "The cat sat.", prompt="Which is grammatical?")
    assert r1["p_a"] == pytest.approx(r2["p_b"], abs=1e-6) and r1["p_b"] == pytest.approx(r2["p_a"], abs=1e-6)
    assert r1["p_a"] + r1["p_b"] == pytest.approx(1.0)
    assert r1["p_a"] != pytest.approx(0.5, abs=1e-9)  # a random model does have an opinion to swap


def test_pair_averages_the_log_odds_of_both_orders(judge):
    import math

    asked = judge._log_odds([prompts.pair_prompt("q", "x", "y"), prompts.pair_prompt("q", "y", "x")], judge.ab)
    lo = [x for x, working in asked]
    assert [working for _, working in asked] == [None, None]  # a judge not trained to work first
    expect = 1 / (1 + math.exp(-(lo[0] - lo[1]) / 2))
    assert judge.pair("x", "y", prompt="q")["p_a"] == pytest.approx(expect, rel=1e-9)


def test_batched_pairs_equal_one_at_a_time(judge):
    recs = [{"prompt": "Sum?", "a": str(i), "b": str(i + 1) * (i % 4 + 1)} for i in range(9)]
    batched = Judge(judge.model, judge.tokenizer, batch_size=4).pairs(recs)
    for r, b in zip(recs, batched):
        assert judge.pair(r["a"], r["b"], r["prompt"])["p_a"] == pytest.approx(b["p_a"], abs=1e-5)


def test_claim_probabilities_and_choice(judge):
    r = judge.claim("Paris is the capital of France.")
    assert r["p_true"] + r["p_false"] == pytest.approx(1.0)
    assert r["choice"] == (r["p_true"] >= 0.5)


def test_claims_by_contrast_read_the_pair_answers_and_the_rest_directly(judge):
    import random

    from touchstone.evaluate import claim_contrast
    from touchstone.worlds import get_world
    from touchstone.worlds.code import CLAIM

    code = get_world("code")
    item = code.sample(random.Random(3))
    statement = CLAIM.format(code=item["completion"].rstrip("\n"), name=item["entry_point"], test=item["test"])
    records = [
        {"statement": statement, "label": True, "world": "code"},
        {"statement": "Paris is the capital of France.", "label": True, "world": "facts"},
        {"statement": "A statement of no world.", "label": False},
    ]
    asked = code.contrast(records[0], random.Random(0), 3)
    assert len(asked) == 3 and all(q["a"] == item["completion"] and q["b"] != q["a"] for q in asked)
    assert code.contrast(records[1], random.Random(0), 3) == []  # not a code claim: nothing to mutate

    out = judge.claims(records, contrast=claim_contrast(3))
    assert [v["method"] for v in out] == ["contrast", "direct", "direct"]
    # The contrast claim's p_true is the mean pair answer over exactly the questions its world asks.
    seeded = claim_contrast(3)(records[0])
    expect = sum(v["p_a"] for v in judge.pairs(seeded)) / len(seeded)
    assert out[0]["p_true"] == pytest.approx(expect, abs=1e-6) and out[0]["choice"] == (expect >= 0.5)
    for got, direct in zip(out[1:], judge.claims(records[1:])):  # the others as if no contrast were asked
        assert got["p_true"] == pytest.approx(direct["p_true"], abs=1e-6)


def test_foreign_model_gets_the_answer_tokens(tmp_path):
    """A tokenizer without our special tokens: they are added and the embeddings resized."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(
        [TEXT],
        trainers.BpeTrainer(
            vocab_size=300, special_tokens=["<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<eos>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2))
    j = Judge(model, tok)
    assert model.get_input_embeddings().weight.shape[0] == len(tok) > 300
    assert j.pair("a", "b")["choice"] in ("a", "b")


def test_async_judge_answers_concurrent_questions(judge):
    aj = AsyncJudge(judge)

    async def main():
        return await asyncio.gather(*[aj.pair(str(i), str(i + 1)) for i in range(5)], aj.claim("It is."))

    out = asyncio.run(main())
    assert out[0]["p_a"] == pytest.approx(judge.pair("0", "1")["p_a"], abs=1e-5)
    assert out[-1]["p_true"] == pytest.approx(judge.claim("It is.")["p_true"], abs=1e-5)


def test_judge_cli_prints_json(model_dir, capsys):
    assert cli.main(["judge", str(model_dir), "--a", "yes", "--b", "no", "--prompt", "?"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["choice"] in ("a", "b") and out["p_a"] + out["p_b"] == pytest.approx(1.0)


def test_judge_cli_needs_both_versions(model_dir, capsys):
    assert cli.main(["judge", str(model_dir), "--a", "yes"]) == 2
    assert "--b" in capsys.readouterr().err


def test_the_working_is_written_greedily_and_a_padded_batch_writes_what_each_row_alone_would(judge):
    import torch

    from touchstone.judge import encode, write_working

    tok = judge.tokenizer
    prefixes = [encode(tok, t) for t in ("The cat", "Paris is the capital of France. The dogs run", "17")]
    stop = tok.convert_tokens_to_ids(prompts.ANSWER)
    with torch.no_grad():
        batch = write_working(judge.model, prefixes, 12, stop, tok.pad_token_id)
        alone = [write_working(judge.model, [p], 12, stop, tok.pad_token_id)[0] for p in prefixes]
    assert batch == alone and all(len(w) <= 12 and stop not in w for w in batch)
