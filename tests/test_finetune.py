"""Fine-tuning on a tiny set: it learns, keeps a complete model directory, reports perplexity, refuses bad input."""

import random

import pytest
from test_judge import tiny_model_dir

from touchstone.errors import UserError
from touchstone.files import check_manifest, write_jsonl_atomic
from touchstone.records import claim_record, pair_record
from touchstone.train.finetune import FinetuneConfig, finetune, read_records
from touchstone.train.objectives import judge_loss


def records(n: int = 24, seed: int = 0) -> list[dict]:
    """Pairs whose right answer is the version with a cat; claims true exactly when a cat is named."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = rng.choice(["red", "blue", "green", "small", "big", "old"])
        good, bad = f"the {x} cat sat.", f"the {x} dog sat."
        label = rng.choice("ab")
        a, b = (good, bad) if label == "a" else (bad, good)
        out.append(pair_record("Which animal sat?", a, b, label, world="test", kind="animal"))
        out.append(claim_record(f"the {x} {'cat' if i % 2 else 'dog'} sat.", bool(i % 2), world="test", kind="animal"))
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("ft")
    write_jsonl_atomic(d / "train.jsonl", records(8))
    return d, tiny_model_dir(d)


@pytest.fixture(scope="module")
def text_data(setup):
    """A prepared-data directory's token shards, made directly from the tiny tokenizer."""
    import numpy as np
    from test_judge import TEXT
    from transformers import AutoTokenizer

    d, model = setup
    tok = AutoTokenizer.from_pretrained(str(model))
    ids = np.array(tok(TEXT)["input_ids"] * 3, dtype=np.uint16)
    (d / "text" / "tokens").mkdir(parents=True)
    ids[: len(ids) * 3 // 4].tofile(d / "text" / "tokens" / "train.bin")
    ids[len(ids) * 3 // 4 :].tofile(d / "text" / "tokens" / "val.bin")
    return d / "text"


def test_finetuning_improves_judge_accuracy_on_its_data(setup):
    d, model = setup
    r = finetune(model, [str(d / "train.jsonl")], d / "learned", FinetuneConfig(epochs=10, lr=3e-3, batch_size=8))
    # 16 records: a random model's accuracy on them ranges widely with its seed (0.75 for this one).
    assert r["judge_accuracy_after"] >= 0.9 and r["judge_accuracy_after"] >= r["judge_accuracy_before"] + 0.2


def test_output_is_a_complete_model_dir_with_recipe(setup):
    from touchstone.judge import Judge

    d, model = setup
    out = d / "one-step"
    finetune(model, [str(d / "train.jsonl")], out, FinetuneConfig(epochs=0.1, batch_size=4, objective="answer"))
    manifest = check_manifest(out)
    assert {"recipe.yaml", "model.safetensors", "report.md"} <= set(manifest["files"])
    assert "objective: answer" in (out / "recipe.yaml").read_text()
    assert Judge.load(out).pair("the cat", "the dog")["choice"] in ("a", "b")


def test_a_time_budget_stops_early_with_a_complete_model(setup):
    d, model = setup
    out = d / "budgeted"
    r = finetune(model, [str(d / "train.jsonl")], out, FinetuneConfig(epochs=50, batch_size=2, minutes=0.02))
    assert 1 <= r["steps"] < r["steps_planned"] == 400
    check_manifest(out)


def test_lm_loss_and_perplexity_before_and_after(setup, text_data):
    d, model = setup
    r = finetune(
        model,
        [str(d / "train.jsonl")],
        d / "with-lm",
        FinetuneConfig(epochs=0.5, batch_size=8, text_data=str(text_data), lm_weight=1.0),
    )
    assert r["perplexity_before"] > 1 and r["perplexity_after"] > 1
    assert r["perplexity_after"] != r["perplexity_before"]


@pytest.mark.parametrize("objective", ["answer", "pairwise", "mix"])
def test_every_objective_gives_a_finite_loss_with_gradients(setup, objective):
    import math

    from touchstone.generate import load_model

    _d, path = setup
    model, tok = load_model(path)
    loss = judge_loss(model, tok, records(4), objective, bf16=False)
    loss.backward()
    assert math.isfinite(float(loss)) and model.get_input_embeddings().weight.grad.abs().sum() > 0


def test_pairwise_loss_is_bradley_terry_on_sequence_log_likelihoods(setup):
    import torch

    from touchstone.generate import load_model
    from touchstone.likelihood import continuation_logprobs
    from touchstone.train.objectives import version_requests

    _d, path = setup
    model, tok = load_model(path)
    pairs = [r for r in records(6) if "a" in r]
    s = continuation_logprobs(model, [q for r in pairs for q in version_requests(tok, r)])
    expect = -sum(
        torch.nn.functional.logsigmoid(torch.tensor(s[2 * i] - s[2 * i + 1])) for i in range(len(pairs))
    ) / len(pairs)
    with torch.no_grad():
        assert float(judge_loss(model, tok, pairs, "pairwise", bf16=False)) == pytest.approx(float(expect), abs=1e-4)


def test_length_groups_cover_every_index_once_longest_first():
    from touchstone.train.objectives import length_groups

    lengths = [20, 300, 35, 160, 21, 290, 150, 40]
    groups = length_groups(lengths)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert [lengths[g[0]] for g in groups] == sorted((lengths[g[0]] for g in groups), reverse=True)
    assert all(lengths[i] >= 0.7 * lengths[g[0]] for g in groups for i in g)
    assert groups == [[1, 5], [3, 6], [7, 2], [4, 0]]  # ~300, ~150, 35-40, ~20


@pytest.mark.parametrize("objective", ["answer", "pairwise"])
def test_grouping_by_length_gives_the_one_batch_loss(setup, objective):
    """Questions of very different lengths are run in length groups; the loss is the padded batch's."""
    import torch
    import torch.nn.functional as F

    from touchstone import prompts
    from touchstone.generate import load_model
    from touchstone.judge import encode, last_logits
    from touchstone.likelihood import batch_logprobs
    from touchstone.train.objectives import answer_examples, version_requests

    _d, path = setup
    model, tok = load_model(path)
    batch = records(4) + [
        pair_record(
            "Which animal sat? " + "It was a long day. " * 3,
            "the cat sat.",
            "the dog sat.",
            "a",
            world="test",
            kind="animal",
        )
    ]
    with torch.no_grad():
        if objective == "answer":
            answers = [ex for r in batch for ex in answer_examples(r)]
            logits = last_logits(model, [encode(tok, q) for q, _ in answers], tok.pad_token_id)
            ids = {
                a: tok.convert_tokens_to_ids(a)
                for a in (prompts.ANSWER_A, prompts.ANSWER_B, prompts.ANSWER_TRUE, prompts.ANSWER_FALSE)
            }
            pair = [ids[prompts.ANSWER_A], ids[prompts.ANSWER_B]]
            claim = [ids[prompts.ANSWER_TRUE], ids[prompts.ANSWER_FALSE]]
            choices = torch.tensor([pair if a in (prompts.ANSWER_A, prompts.ANSWER_B) else claim for _, a in answers])
            target = torch.tensor([int(a in (prompts.ANSWER_B, prompts.ANSWER_FALSE)) for _, a in answers])
            expect = F.cross_entropy(logits.gather(1, choices), target)
        else:  # pairs only: claims would add their answer loss
            batch = [r for r in batch if "a" in r]
            s = batch_logprobs(model, [q for r in batch for q in version_requests(tok, r)])
            expect = -F.logsigmoid(s[0::2] - s[1::2]).mean()
        assert float(judge_loss(model, tok, batch, objective, bf16=False)) == pytest.approx(float(expect), abs=1e-5)


def test_bad_record_names_its_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"a": "x", "b": "y", "label": "a"}\n{"a": "x", "label": "b"}\n')
    with pytest.raises(UserError, match=r"bad.jsonl:2: missing key 'b'"):
        read_records([str(f)])


def test_unknown_objective_is_a_user_error(setup):
    d, model = setup
    with pytest.raises(UserError, match="objective"):
        finetune(model, [str(d / "train.jsonl")], d / "x", FinetuneConfig(objective="dpo"))


def test_a_time_budget_trains_until_the_deadline_whatever_the_epochs(setup, monkeypatch):
    import touchstone.train.finetune as tf

    d, model = setup
    now, rates, calls = [0.0], [], []
    real_parts, real_lr_at = tf.judge_loss_parts, tf.lr_at

    def judge_loss_parts(*args, **kw):
        calls.append(1)
        now[0] += 2.0 if len(calls) == 1 else 1.0  # the first step slow, as on a machine busy for a moment
        return real_parts(*args, **kw)

    def lr_at(*args, **kw):
        rates.append(real_lr_at(*args, **kw))
        return rates[-1]

    monkeypatch.setattr(tf, "clock", lambda: now[0])
    monkeypatch.setattr(tf, "lr_at", lr_at)
    monkeypatch.setattr(tf, "judge_loss_parts", judge_loss_parts)
    r = finetune(model, [str(d / "train.jsonl")], d / "until-deadline", FinetuneConfig(batch_size=4, minutes=0.5))
    assert r["steps"] == 29 and r["steps_planned"] is None  # 2 s, then 1 s a step, until 30 s: many epochs
    assert rates[-1] == pytest.approx(FinetuneConfig().lr / 10, rel=0.05)


def test_callback_sees_every_step(setup):
    d, model = setup
    seen = []
    finetune(
        model,
        [str(d / "train.jsonl")],
        d / "called",
        FinetuneConfig(epochs=1, batch_size=4),
        callback=lambda step, m, tok: seen.append((step, m.training)),
    )
    assert [s for s, _ in seen] == list(range(5))  # 8 records x 2 / 4 per step: before, then after each of 4


def test_no_probe_records_means_no_accuracy_figures(setup):
    d, model = setup
    r = finetune(
        model, [str(d / "train.jsonl")], d / "no-probe", FinetuneConfig(epochs=1, batch_size=4, eval_records=0)
    )
    assert r["judge_accuracy_before"] is None and r["judge_accuracy_after"] is None


def test_derivation_loss_is_the_next_token_loss_of_the_working_after_the_answer(setup):
    """With derivation_weight w, the loss adds w x each example's mean next-token loss over its world's
    working written after the answer token; records of a world without working add nothing."""
    import torch
    import torch.nn.functional as F

    from touchstone.generate import load_model
    from touchstone.judge import encode
    from touchstone.model import context_length
    from touchstone.train.objectives import DerivationTokens, answer_examples, derivations

    _d, path = setup
    model, tok = load_model(path)
    numbers = [
        pair_record("Which number is larger?", "87612", "87576", "a", world="numbers", kind="larger"),
        claim_record("31 is smaller than 4.", False, world="numbers", kind="smaller"),
    ]
    assert derivations(numbers[0]) == [
        " 87612 and 87576 have 5 digits each and first differ at digit 3: 6 against 5.",
        " 87576 and 87612 have 5 digits each and first differ at digit 3: 5 against 6.",
    ]
    assert derivations(numbers[1]) == [" 31 has 2 digits and 4 has 1."]
    batch = numbers + records(2)
    assert all(d is None for r in records(2) for d in derivations(r))
    with torch.no_grad():
        plain = float(judge_loss(model, tok, batch, "answer", bf16=False))
        weighted = float(judge_loss(model, tok, batch, "answer", bf16=False, derivation_weight=0.5))
        extra, n = 0.0, 0
        for r in batch:
            for (q, a), d in zip(answer_examples(r), derivations(r)):
                n += 1
                if d is None:
                    continue
                tail = tok(d, add_special_tokens=False)["input_ids"][: 128 // 4]  # a quarter of the context at most
                seq = encode(tok, q) + [tok.convert_tokens_to_ids(a)] + tail
                logits = model(input_ids=torch.tensor([seq])).logits[0]
                extra += float(F.cross_entropy(logits[-len(tail) - 1 : -1], torch.tensor(tail)))
    assert weighted == pytest.approx(plain + 0.5 * extra / n, abs=1e-5)
    assert float(judge_loss(model, tok, batch, "answer", bf16=False, derivation_weight=0.0)) == pytest.approx(plain)
    once = DerivationTokens(tok, batch, context_length(model))  # what a run computes when it starts
    with torch.no_grad():
        from_once = judge_loss(
            model, tok, batch, "answer", bf16=False, derivation_weight=0.5, derivation_tokens_of=once
        )
    assert float(from_once) == pytest.approx(weighted, abs=1e-6)


def test_working_first_trains_the_working_and_its_closing_answer_token_before_the_answer(setup):
    """With working_first the sequence is the question less its <|answer|>, <|work|>, the working and
    <|answer|>: the derivation loss covers the working and that <|answer|>, and the answer is read there."""
    import torch
    import torch.nn.functional as F

    from touchstone import prompts
    from touchstone.generate import load_model
    from touchstone.judge import encode, ensure_special_tokens
    from touchstone.train.objectives import answer_examples, derivations

    _d, path = setup
    model, tok = load_model(path)
    ensure_special_tokens(model, tok)
    batch = [
        pair_record("Which number is larger?", "87612", "87576", "a", world="numbers", kind="larger"),
        claim_record("31 is smaller than 4.", False, world="numbers", kind="smaller"),
    ] + records(1)
    ids = tok.convert_tokens_to_ids
    work, close = ids(prompts.WORK), ids(prompts.ANSWER)
    with torch.no_grad():
        got = float(judge_loss(model, tok, batch, "answer", bf16=False, derivation_weight=0.5, working_first=True))
        want, n = 0.0, 0
        for r in batch:
            for (q, a), d in zip(answer_examples(r), derivations(r)):
                n += 1
                tail = (tok(d, add_special_tokens=False)["input_ids"][: 128 // 4] if d else []) + [close]
                seq = encode(tok, q)[:-1] + [work] + tail
                logits = model(input_ids=torch.tensor([seq])).logits[0]
                pair = a in (prompts.ANSWER_A, prompts.ANSWER_B)
                answers = (prompts.ANSWER_A, prompts.ANSWER_B) if pair else (prompts.ANSWER_TRUE, prompts.ANSWER_FALSE)
                choices = ids(list(answers))
                target = int(a in (prompts.ANSWER_B, prompts.ANSWER_FALSE))
                want += float(F.cross_entropy(logits[-1, choices][None], torch.tensor([target])))
                want += 0.5 * float(F.cross_entropy(logits[-len(tail) - 1 : -1], torch.tensor(tail)))
    assert got == pytest.approx(want / n, abs=1e-5)


def test_working_first_needs_a_derivation_weight(setup):
    d, model = setup
    with pytest.raises(UserError, match="working_first"):
        finetune(model, [str(d / "train.jsonl")], d / "wf0", FinetuneConfig(working_first=True, derivation_weight=0))


def test_a_model_trained_to_work_first_is_judged_after_writing_its_working(setup):
    """The flag is kept in the model's config.json; its judge writes a working before each answer and
    answers as the model does at the <|answer|> that follows it."""
    import json

    import torch

    from touchstone import prompts
    from touchstone.judge import Judge, encode, last_logits

    d, model = setup
    numbers = [pair_record("Which number is larger?", "612", "87", "a", world="numbers", kind="larger")]
    write_jsonl_atomic(d / "numbers.jsonl", numbers * 8 + records(4))
    cfg = FinetuneConfig(epochs=2, batch_size=4, working_first=True, eval_records=0)
    finetune(model, [str(d / "numbers.jsonl")], d / "wf", cfg)
    assert json.loads((d / "wf" / "config.json").read_text())["touchstone_working_first"] is True
    judge = Judge.load(d / "wf")
    verdict, claim = judge.records(numbers[:1] + [claim_record("the cat sat.", True, world="test", kind="animal")])
    assert set(verdict["working"]) == {"a_first", "b_first"} and isinstance(claim["working"], str)
    tok = judge.tokenizer
    question = prompts.pair_prompt("Which number is larger?", "612", "87")
    asked = question[: -len(prompts.ANSWER)] + prompts.WORK + verdict["working"]["a_first"] + prompts.ANSWER
    with torch.no_grad():
        logp = torch.log_softmax(last_logits(judge.model, [encode(tok, asked)], tok.pad_token_id), -1)[0]
    a_first = torch.sigmoid(logp[judge.ab[0]] - logp[judge.ab[1]])
    assert float(a_first) == pytest.approx(judge.pairs(numbers[:1], orders=True)[0]["orders"]["a_first"], abs=1e-4)
    assert "working" not in Judge.load(model).records(numbers[:1])[0]  # a model not trained so answers at once
