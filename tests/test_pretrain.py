"""Pretraining: one step moves every weight, exact resume, gradient accumulation, reload, bad input."""

import itertools
import json

import numpy as np
import pytest

from touchstone import cli
from touchstone.files import shared_data
from touchstone.train.pretrain import PretrainConfig, initial_model, pretrain, resolve

SHAKESPEARE = str(shared_data() / "tinyshakespeare" / "input.txt")


def make_data(root, n_chars=60_000):
    """A tiny prepared data directory: a 512-token byte-level BPE and uint16 shards of real text."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from touchstone.prompts import EOS, SPECIAL_TOKENS

    text = open(SHAKESPEARE, encoding="utf-8").read()[:n_chars]
    docs = [d for d in text.split("\n\n") if d.strip()]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(docs, vocab_size=512, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, pad_token="<|pad|>")
    tok.save_pretrained(root / "tokenizer")
    (root / "tokens").mkdir()
    eos = tok.eos_token_id
    cut = len(docs) * 9 // 10
    for split, part in (("train", docs[:cut]), ("val", docs[cut:])):
        ids = [i for d in part for i in tok(d)["input_ids"] + [eos]]
        np.asarray(ids, dtype=np.uint16).tofile(root / "tokens" / f"{split}.bin")
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("data"))


def nano(**kw):
    # The CPU, also where a GPU is visible: the exact-resume tests need its deterministic kernels.
    base = dict(
        size="nano",
        tokens=4 * 16 * 64,
        eval_every=2,
        compile=False,
        bf16=False,
        seq_len=64,
        batch_size=16,
        device="cpu",
    )
    return PretrainConfig(**{**base, **kw})


def weights(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


class Crash(Exception):
    pass


def crash_after_first_checkpoint(monkeypatch):
    """Make the run die right after its first checkpoint is written, like a killed process."""
    import touchstone.train.pretrain_run as run

    real = run.save_checkpoint

    def save_then_crash(run_dir, state):
        real(run_dir, state)
        raise Crash(state["step"])

    monkeypatch.setattr(run, "save_checkpoint", save_then_crash)


def test_one_step_changes_every_trainable_parameter(data, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = nano(tokens=16 * 64)
    out = pretrain(str(data), tmp_path / "m", cfg)
    tok = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    before = dict(initial_model(resolve(cfg), len(tok), tok.eos_token_id).named_parameters())
    after = dict(AutoModelForCausalLM.from_pretrained(str(out)).named_parameters())
    assert before.keys() == after.keys()
    unchanged = [n for n, p in before.items() if p.requires_grad and p.detach().equal(after[n].detach())]
    assert unchanged == []


def test_resumed_run_equals_uninterrupted_run(data, tmp_path, monkeypatch):
    cfg = nano(tokens=6 * 16 * 64, eval_every=2)
    whole = weights(pretrain(str(data), tmp_path / "whole", cfg))
    with monkeypatch.context() as m:
        crash_after_first_checkpoint(m)
        with pytest.raises(Crash):
            pretrain(str(data), tmp_path / "resumed", cfg)
    assert not (tmp_path / "resumed").exists()  # an interrupted run never looks finished
    resumed = weights(pretrain(None, tmp_path / "resumed", PretrainConfig(), resume=True))
    assert whole.keys() == resumed.keys()
    assert all(whole[k].equal(resumed[k]) for k in whole)


def test_gradient_accumulation_equals_large_batch(data):
    import torch

    from touchstone.train.common import LossFn, Sampler, Windows, accumulate

    cfg = resolve(nano())
    model = initial_model(cfg, 512, 0)
    train = Windows(data / "tokens" / "train.bin", cfg.seq_len)
    loss_fn = LossFn(model, compile=False)

    def grads(batch_size, n):
        model.zero_grad(set_to_none=True)
        sampler = Sampler(train.n, seed=0)
        loss = accumulate(loss_fn, (train.batch(sampler.take(batch_size)) for _ in range(n)), n, bf16=False)
        return loss, [p.grad.clone() for p in model.parameters()]

    big_loss, big = grads(16, 1)
    acc_loss, acc = grads(4, 4)
    assert acc_loss == pytest.approx(big_loss, rel=1e-6)
    assert all(torch.allclose(g, h, rtol=1e-4, atol=1e-7) for g, h in zip(big, acc))


def test_saved_model_reloads_with_the_trained_weights(data, tmp_path):
    """The reloaded model reproduces the validation loss measured by the training model itself."""
    from transformers import AutoModelForCausalLM, pipeline

    from touchstone.train.common import Windows, mean_lm_loss
    from touchstone.train.pretrain_run import EVAL_BATCHES

    out = pretrain(str(data), tmp_path / "m", nano(tokens=3 * 16 * 64))
    manifest = json.loads((out / "MANIFEST.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(str(out))
    val = Windows(data / "tokens" / "val.bin", 64)
    idx = np.unique(np.linspace(0, val.n - 1, min(val.n, EVAL_BATCHES * 16)).astype(int))
    assert mean_lm_loss(model, val, idx, 16, bf16=False) == pytest.approx(manifest["val_loss"], abs=1e-5)
    text = pipeline("text-generation", model=str(out))("The", max_new_tokens=5, do_sample=False)[0]["generated_text"]
    assert text.startswith("The") and len(text) > 3
    assert "size: nano" in (out / "recipe.yaml").read_text()


def test_device_cuda_without_a_gpu_is_a_one_line_error(monkeypatch):
    import torch

    from touchstone.errors import UserError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="'device' is cuda, but no GPU"):
        resolve(nano(device="cuda"))


def test_pretrain_on_a_gpu_saves_a_model_that_reloads_on_the_cpu(data, tmp_path):
    """Trained on the GPU, the saved model gives the CPU the validation loss the GPU measured."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no GPU visible")
    from transformers import AutoModelForCausalLM

    from touchstone.train.common import Windows, mean_lm_loss
    from touchstone.train.pretrain_run import EVAL_BATCHES

    out = pretrain(str(data), tmp_path / "g", nano(tokens=3 * 16 * 64, device="cuda"))
    manifest = json.loads((out / "MANIFEST.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(str(out))
    val = Windows(data / "tokens" / "val.bin", 64)
    idx = np.unique(np.linspace(0, val.n - 1, min(val.n, EVAL_BATCHES * 16)).astype(int))
    assert mean_lm_loss(model, val, idx, 16, bf16=False) == pytest.approx(manifest["val_loss"], abs=1e-3)
    assert "device: cuda" in (out / "recipe.yaml").read_text()


def run_cli(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("damage", ["flip-bytes", "no-manifest"])
def test_corrupt_checkpoint_is_a_one_line_error(data, tmp_path, monkeypatch, capsys, damage):
    with monkeypatch.context() as m:
        crash_after_first_checkpoint(m)
        with pytest.raises(Crash):
            pretrain(str(data), tmp_path / "m", nano(tokens=4 * 16 * 64))
    ckpt = tmp_path / ".m.run" / "checkpoint"
    if damage == "flip-bytes":
        raw = bytearray((ckpt / "state.pt").read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        (ckpt / "state.pt").write_bytes(bytes(raw))
    else:
        (ckpt / "MANIFEST.json").unlink()
    capsys.readouterr()
    code, err = run_cli(["pretrain", "--data", str(data), "--out", str(tmp_path / "m"), "--resume"], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1 and "checkpoint" in err


def test_unknown_config_key_is_a_one_line_error(data, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("size: nano\nlearning_rate: 0.1\n")
    code, err = run_cli(
        ["pretrain", "--data", str(data), "--out", str(tmp_path / "m"), "--config", str(recipe)], capsys
    )
    assert code == 2 and len(err.splitlines()) == 1 and "learning_rate" in err
    assert not (tmp_path / "m").exists()


class FakeClock:
    """Training time that passes only when a step trains: `cost(n)` seconds for the n-th training pass."""

    def __init__(self, cost):
        self.now, self.passes, self.cost = 0.0, 0, cost

    def __call__(self) -> float:
        return self.now

    def tick(self):
        self.passes += 1
        self.now += self.cost(self.passes)


def test_a_time_budget_trains_until_the_deadline_on_the_clock_s_schedule(data, tmp_path, monkeypatch):
    import touchstone.train.pretrain_run as tp

    # A machine busy at the start: the first three passes take 20 s each, then every step 1 s. Planned
    # from timed warm-up passes, a 2-minute budget became 5 steps; it must train until the deadline.
    clock = FakeClock(lambda n: 20.0 if n <= 3 else 1.0)
    real_accumulate, real_lr_at, rates = tp.accumulate, tp.lr_at, []

    def accumulate(*args, **kw):
        clock.tick()
        return real_accumulate(*args, **kw)

    def lr_at(*args, **kw):
        rates.append(real_lr_at(*args, **kw))
        return rates[-1]

    monkeypatch.setattr(tp, "clock", clock)
    monkeypatch.setattr(tp, "accumulate", accumulate)
    monkeypatch.setattr(tp, "lr_at", lr_at)
    out = pretrain(str(data), tmp_path / "m", nano(tokens=None, minutes=2, eval_every=1000))
    steps = json.loads((out / "MANIFEST.json").read_text())["steps"]
    assert steps == clock.passes == 3 + 60  # 60 s busy, then one step a second until 120 s
    peak = resolve(nano()).lr
    assert max(rates) > 0.9 * peak  # a slow start spends the warmup's share of the time, not the peak
    assert rates[-1] == pytest.approx(peak / 10, rel=0.05)  # the last step is on the decayed rate
    after_peak = rates[rates.index(max(rates)) :]
    assert all(a >= b for a, b in itertools.pairwise(after_peak))


def test_lr_follows_the_fraction_of_a_time_budget():
    from touchstone.train.common import MAX_WARMUP, lr_at

    assert lr_at(0, 1.0, None, None, spent=0.0) == pytest.approx(1 / MAX_WARMUP)  # warming up
    assert lr_at(5, 1.0, None, None, spent=0.05) == pytest.approx(1.0, rel=0.01)  # 5% of the time: warm
    assert lr_at(10, 1.0, None, None, spent=0.5) == pytest.approx(0.55)  # half way down the cosine
    assert lr_at(10, 1.0, None, None, spent=1.0) == pytest.approx(0.1)
    assert lr_at(10, 1.0, 4, 100) == lr_at(10, 1.0, 4, 100, spent=None)  # a step budget as before
