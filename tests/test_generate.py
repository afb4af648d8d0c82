"""Generation and perplexity on a tiny trained model."""

import math

import pytest
from test_pretrain import make_data, nano

from touchstone import cli
from touchstone.errors import UserError
from touchstone.files import shared_data
from touchstone.generate import generate, load_model, perplexity
from touchstone.train.pretrain import pretrain


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    data = make_data(tmp_path_factory.mktemp("data"))
    return pretrain(str(data), tmp_path_factory.mktemp("models") / "m", nano(tokens=3 * 16 * 64))


def test_generate_returns_n_reproducible_texts(model_dir):
    texts = generate(model_dir, "ROMEO:", max_new_tokens=12, temperature=1.0, top_k=50, top_p=0.95, n=3, seed=1)
    assert len(texts) == 3 and all(isinstance(t, str) and t for t in texts)
    assert texts == generate(model_dir, "ROMEO:", max_new_tokens=12, temperature=1.0, n=3, seed=1)


def test_generate_cli_prints_prompt_and_continuation(model_dir, capsys):
    assert cli.main(["generate", str(model_dir), "--prompt", "KING", "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("KING")


def test_perplexity_is_finite_and_bits_per_byte_consistent(model_dir, tmp_path):
    text = open(shared_data() / "tinyshakespeare" / "input.txt", encoding="utf-8").read()[-3000:]
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    r = perplexity(model_dir, f)
    _model, tok = load_model(model_dir)
    assert r["tokens"] == len(tok(text)["input_ids"]) > 64  # longer than the context: several windows
    assert r["bytes"] == len(text.encode("utf-8"))
    assert math.isfinite(r["perplexity"]) and r["perplexity"] > 1
    total_bits = math.log2(r["perplexity"]) * r["tokens"]
    assert r["bits_per_byte"] == pytest.approx(total_bits / r["bytes"], rel=1e-9)


def test_perplexity_of_short_text_equals_one_forward_pass(model_dir, tmp_path):
    import torch

    text = "First Citizen:\nBefore we proceed any further, hear me speak."
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    model, tok = load_model(model_dir)
    ids = torch.tensor([[tok.eos_token_id] + tok(text)["input_ids"]])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert perplexity(model_dir, f)["perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-5)


def test_incomplete_model_dir_is_a_user_error(model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(UserError, match="model.safetensors"):
        load_model(broken)
