"""Tokenizer training and loading, and the embedded default corpus."""

import random

import pytest

from touchstone import cli
from touchstone.corpus import build_corpus, default_sources
from touchstone.files import MANIFEST
from touchstone.prompts import EOS, SPECIAL_TOKENS
from touchstone.tokenizer import load_tokenizer, train_from_texts, train_tokenizer

WORDS = "the a stone river light old new tells apart which version is true better silver gold".split()


def corpus_texts(n=300, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(30)) + "." for _ in range(n)]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return train_from_texts(corpus_texts(), tmp_path_factory.mktemp("tok") / "tok", vocab_size=400)


def test_special_tokens_are_reserved_first_and_kept_whole(tok_dir):
    tok = load_tokenizer(tok_dir)
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == list(range(len(SPECIAL_TOKENS)))
    for special in SPECIAL_TOKENS:
        assert tok.encode(f"x{special}y", add_special_tokens=False)[1:-1] == [tok.convert_tokens_to_ids(special)]
    assert tok.eos_token == EOS and tok.pad_token_id == 1


def test_byte_level_round_trips_any_text(tok_dir):
    tok = load_tokenizer(tok_dir)
    for text in ["stone river", "Ünïcödé ✓ 漢字 🙂", "  two  spaces\n\ttab", "never seen: xqzv"]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_auto_tokenizer_loads_the_directory(tok_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    assert 267 < len(tok) <= 400 and (tok_dir / MANIFEST).exists()
    # Training learned merges: a frequent word is one token.
    assert len(tok.encode(" river", add_special_tokens=False)) == 1


def test_train_from_text_folder_and_file(tmp_path):
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "a.txt").write_text("\n\n".join(corpus_texts(100, 1)))
    (tmp_path / "txt" / "b.md").write_text("\n\n".join(corpus_texts(100, 2)))
    for src in (tmp_path / "txt", tmp_path / "txt" / "a.txt"):
        out = train_tokenizer(src, tmp_path / f"tok-{src.name}", vocab_size=300)
        assert 267 < len(load_tokenizer(out)) <= 300


def test_cli_missing_data_and_bad_vocab_size(tmp_path, capsys):
    assert cli.main(["tokenizer", "train", str(tmp_path / "nope"), "--out", str(tmp_path / "t")]) == 2
    assert "nope: no such file or directory" in capsys.readouterr().err
    (tmp_path / "a.txt").write_text("\n\n".join(corpus_texts(20)))
    assert (
        cli.main(
            ["tokenizer", "train", str(tmp_path / "a.txt"), "--out", str(tmp_path / "t"), "--vocab-size", "100000"]
        )
        == 2
    )
    assert "vocab size 100000" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


# ------------------------------------------------------------------------------------- default corpus
def fake_stdlib(root):
    (root / "pkg").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "pkg" / "__init__.py").write_text('"""The package docstring explains what the package is for."""\n')
    (root / "mod.py").write_text(
        '"""A module docstring long enough to keep, about stones and rivers."""\n'
        'open("SIDE_EFFECT", "w")\n'
        'class Stone:\n    """A stone that tells gold from fake, by the streak it leaves."""\n'
        '    def f(self):\n        """Short."""\n'
    )
    (root / "test" / "test_mod.py").write_text('"""Tests repeat the library and are skipped entirely."""\n')
    (root / "broken.py").write_text("def (:\n")


def test_corpus_extracts_docstrings_without_running_code(tmp_path, monkeypatch):
    fake_stdlib(tmp_path / "lib")
    monkeypatch.chdir(tmp_path)
    out = build_corpus(tmp_path / "lib", tmp_path / "corpus")
    text = (out / "mod.txt").read_text()
    assert "about stones and rivers" in text and "mod.Stone\n\nA stone that tells gold" in text
    assert "Short." not in text
    assert "package is for" in (out / "pkg.txt").read_text()
    assert not (out / "test.txt").exists() and not (tmp_path / "SIDE_EFFECT").exists()
    assert (out / MANIFEST).exists()


def test_default_sources_is_built_once_and_reused(tmp_path, monkeypatch):
    from touchstone import corpus

    calls = []
    real = corpus.build_corpus

    def counting(stdlib, out):
        calls.append(out)
        fake_stdlib(tmp_path / "lib")
        return real(tmp_path / "lib", out)

    monkeypatch.setattr(corpus, "build_corpus", counting)
    first = default_sources(tmp_path / "cache")
    assert default_sources(tmp_path / "cache") == first and len(calls) == 1
    assert (tmp_path / "cache" / "corpus").is_dir() and any(
        p.suffix == ".txt" for p in (tmp_path / "cache" / "corpus").rglob("*")
    )


@pytest.mark.slow
def test_default_corpus_is_megabytes_of_prose(tmp_path):
    from touchstone.data.config import PrepareConfig
    from touchstone.data.prepare import prepare

    (folder,) = default_sources(tmp_path)
    summary = prepare([folder], tmp_path / "out", PrepareConfig())
    assert summary["counts"]["bytes_in"] > 2_000_000 and summary["counts"]["tokens_train"] > 300_000


def numbers_texts(n=300, seed=3):
    """Prose full of numbers, so that a tokenizer free to merge digits would merge the frequent ones."""
    rng = random.Random(seed)
    return [
        " ".join(f"{rng.choice(WORDS)} {rng.choice([19, 20, 131, 1999, 2023, 87576])}" for _ in range(15))
        for _ in range(n)
    ]


def test_a_digit_is_the_same_token_whatever_the_number(tmp_path):
    tok = load_tokenizer(train_from_texts(numbers_texts(), tmp_path / "tok", vocab_size=400))
    digit = {d: tok.convert_tokens_to_ids(d) for d in "0123456789"}
    for text in ("87576", "1999", "131", "2023 and 20"):
        ids = tok.encode(" " + text, add_special_tokens=False)
        assert [i for i in ids if i in digit.values()] == [digit[c] for c in text if c.isdigit()]
        assert tok.decode(ids) == " " + text


def test_world_texts_put_the_worlds_words_in_the_vocabulary(tmp_path):
    from touchstone.tokenizer import world_texts

    texts = list(world_texts(200))
    tok = load_tokenizer(train_from_texts(corpus_texts() + texts, tmp_path / "tok", vocab_size=2000))
    for word in (" thousand", " larger", " capital", " airfoil"):
        assert len(tok.encode(word, add_special_tokens=False)) == 1, word
    for text in texts[:: max(1, len(texts) // 50)]:
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
