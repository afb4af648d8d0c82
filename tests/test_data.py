"""data prepare: dedup, split, shards, manifest, atomicity, every input format, and bad input."""

import gzip
import json
import random
from collections import Counter

import numpy as np
import pytest

import touchstone.data.prepare as prepare_module
from touchstone import cli
from touchstone.data.clean import clean
from touchstone.data.config import PrepareConfig
from touchstone.data.dedup import near_dedup
from touchstone.data.filters import filtered
from touchstone.data.prepare import prepare
from touchstone.data.shards import load_shard, read_records, read_texts
from touchstone.data.sources import read_source, read_text_file
from touchstone.data.split import SPLITS
from touchstone.files import MANIFEST, check_manifest, sha256_file

WORDS = (
    "river stone light garden window morning silver quiet forest letter paper winter candle bridge "
    "harbor meadow lantern orchard thunder velvet marble violet sparrow willow copper ember"
).split()


def paragraph(rng: random.Random, n_words: int = 60) -> str:
    return " ".join(rng.choice(WORDS) + rng.choice(["", "s", "ed", "ing", "ly"]) for _ in range(n_words)) + "."


def distinct_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [paragraph(rng) for _ in range(n)]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# Tiny but complete: a small vocabulary keeps tokenizer training fast.
FAST = dict(vocab_size=300, min_chars=20, val_fraction=0.1, test_fraction=0.1)


def kept_texts(out) -> list[str]:
    return [t for name in SPLITS for t in read_texts(out / "text" / f"{name}.jsonl.gz")]


def run_cli(argv, capsys):
    code = cli.main(argv)
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------------------------- dedup
def test_dedup_removes_planted_exact_and_near_duplicates_and_keeps_distinct(tmp_path):
    texts = distinct_texts(30)
    exact = texts[3]
    words = texts[5].split()
    near = " ".join(words[:-1] + ["lanterns."])  # last word of sixty changed: Jaccard about 0.96
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in texts + [exact, near]])
    summary = prepare([str(src)], tmp_path / "out", PrepareConfig(**FAST))
    kept = kept_texts(tmp_path / "out")
    assert sorted(kept) == sorted(texts)
    assert summary["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}


def test_near_dedup_keeps_texts_below_threshold():
    rng = random.Random(1)
    base = paragraph(rng, 80).split()
    # Every fourth word changed: most 5-word shingles differ, so the texts are not near duplicates.
    other = [w if i % 4 else "thunderous" for i, w in enumerate(base)]
    docs = [(" ".join(base), "s"), (" ".join(other), "s")]
    drops = Counter()
    assert len(list(near_dedup(docs, PrepareConfig(), drops))) == 2 and not drops


# --------------------------------------------------------------------------------------------- split
def test_split_is_deterministic_and_disjoint(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in distinct_texts(60)])
    cfg = PrepareConfig(**FAST)
    prepare([str(src)], tmp_path / "a", cfg)
    prepare([str(src)], tmp_path / "b", cfg)
    ids = {}
    for name in SPLITS:
        a = (tmp_path / "a" / "text" / f"{name}.jsonl.gz").read_bytes()
        assert a == (tmp_path / "b" / "text" / f"{name}.jsonl.gz").read_bytes()
        ids[name] = {r["id"] for r in read_records(tmp_path / "a" / "text" / f"{name}.jsonl.gz")}
        assert ids[name], f"{name} split is empty"
    assert not (ids["train"] & ids["val"] or ids["train"] & ids["test"] or ids["val"] & ids["test"])


def test_adding_documents_never_moves_a_document_to_another_split(tmp_path):
    texts = distinct_texts(60)
    cfg = PrepareConfig(**FAST)

    def splits(rows, out):
        prepare([str(write_jsonl(tmp_path / f"{out}.jsonl", rows))], tmp_path / out, cfg)
        return {r["text"]: name for name in SPLITS for r in read_records(tmp_path / out / "text" / f"{name}.jsonl.gz")}

    small = splits([{"text": t} for t in texts], "small")
    large = splits([{"text": t} for t in distinct_texts(40, seed=9) + texts], "large")
    assert {t: large[t] for t in small} == small


# ------------------------------------------------------------------------------------ shards, manifest
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prep")
    folder = tmp / "books"
    (folder / "sub").mkdir(parents=True)
    rng = random.Random(2)
    # A "novel" in one file: many paragraphs, cut into chunks.
    (folder / "novel.txt").write_text("\n\n".join(paragraph(rng) for _ in range(40)), encoding="utf-8")
    (folder / "sub" / "notes.md").write_text("# Notes\n\n" + paragraph(rng) + "\n", encoding="utf-8")
    out = tmp / "out"
    summary = prepare([str(folder)], out, PrepareConfig(chunk_chars=1000, **FAST))
    return out, summary


def test_long_document_is_cut_into_chunks(prepared):
    out, summary = prepared
    assert summary["counts"]["documents"] == 2
    assert summary["counts"]["chunks_kept"] > 10
    assert all(len(t) <= 1000 for t in kept_texts(out))


def test_shards_decode_back_to_the_text(prepared):
    from touchstone.tokenizer import load_tokenizer

    out, _ = prepared
    tok = load_tokenizer(out)
    for name in SPLITS:
        ids = load_shard(out / "tokens" / f"{name}.bin")
        assert ids.dtype == np.uint16
        texts = list(read_texts(out / "text" / f"{name}.jsonl.gz"))
        assert tok.decode(ids.tolist()) == "".join(t + "<|endoftext|>" for t in texts)


def test_manifest_hashes_match_every_file(prepared):
    out, summary = prepared
    manifest = check_manifest(out)
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    assert set(manifest["files"]) == files
    for name, meta in manifest["files"].items():
        assert sha256_file(out / name) == meta["sha256"]
    assert manifest["config"]["chunk_chars"] == 1000 and manifest["counts"] == summary["counts"]


def test_interrupted_prepare_leaves_no_complete_looking_output(tmp_path, monkeypatch):
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in distinct_texts(20)])
    out = tmp_path / "out"

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(prepare_module, "write_shard", crash)
        with pytest.raises(KeyboardInterrupt):
            prepare([str(src)], out, PrepareConfig(**FAST))
    assert list(tmp_path.iterdir()) == [src]  # no output, no staging left behind
    prepare([str(src)], out, PrepareConfig(**FAST))  # re-running redoes cleanly
    before = (out / MANIFEST).read_bytes()
    with monkeypatch.context() as m:
        m.setattr(prepare_module, "write_shard", crash)
        with pytest.raises(KeyboardInterrupt):
            prepare([str(src)], out, PrepareConfig(**FAST), overwrite=True)
    assert (out / MANIFEST).read_bytes() == before  # the previous complete output is untouched
    check_manifest(out)


# ------------------------------------------------------------------------------------------- formats
def test_parquet_source(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = distinct_texts(12)
    pq.write_table(pa.table({"text": texts, "n": list(range(12))}), tmp_path / "x.parquet", row_group_size=5)
    prepare([str(tmp_path / "x.parquet")], tmp_path / "out", PrepareConfig(**FAST))
    assert sorted(kept_texts(tmp_path / "out")) == sorted(texts)


def test_hf_dataset_from_local_files(tmp_path):
    texts = distinct_texts(12, seed=3)
    (tmp_path / "ds").mkdir()
    write_jsonl(tmp_path / "ds" / "train.jsonl", [{"text": t} for t in texts])
    prepare([f"hf:{tmp_path / 'ds'}@train"], tmp_path / "out", PrepareConfig(**FAST))
    assert sorted(kept_texts(tmp_path / "out")) == sorted(texts)


def test_hf_dataset_saved_to_disk(tmp_path):
    import datasets

    texts = distinct_texts(12, seed=4)
    datasets.Dataset.from_dict({"text": texts}).save_to_disk(str(tmp_path / "saved"))
    docs = list(read_source(f"hf:{tmp_path / 'saved'}", PrepareConfig()))
    assert [t for t, _ in docs] == texts


def test_refinedweb_content_field_is_recognized(tmp_path):
    texts = distinct_texts(5, seed=5)
    src = tmp_path / "web.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"content": t, "url": "http://x"}) + "\n" for t in texts)
    assert [t for t, _ in read_source(str(src), PrepareConfig())] == texts


def test_cleaning_repairs_unicode_and_whitespace():
    assert clean("caf\u00c3\u00a9  \r\n\r\n\r\n\r\nnext  ") == "café\n\nnext"
    assert clean("Cafe\u0301") == "Café"  # NFC
    assert clean("Hello", lowercase=True) == "hello"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("short", "too_short"),
        ("word " * 10 + "\0" * 3 + "word " * 20, "binary"),
        ("the same line here\n" * 20, "repeated_lines"),
        ("lorem ipsum " * 40, "repeated_ngrams"),
    ],
)
def test_filters_drop_with_reason(text, reason):
    drops = Counter()
    assert list(filtered([(text, "s")], PrepareConfig(min_chars=20), drops)) == []
    assert drops == {reason: 1}


def test_filters_keep_dialogue_with_repeated_speaker_names():
    rng = random.Random(6)
    text = "\n".join(f"{'ROMEO:' if i % 2 else 'JULIET:'}\n{paragraph(rng, 12)}" for i in range(20))
    drops = Counter()
    assert len(list(filtered([(text, "s")], PrepareConfig(), drops))) == 1, drops


# ----------------------------------------------------------------------------------------- bad input
def bad(tmp_path, capsys, argv):
    code, err = run_cli(["data", "prepare", *argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    return err


def test_missing_path(tmp_path, capsys):
    assert "nope: no such file or directory" in bad(tmp_path, capsys, [str(tmp_path / "nope")])


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert "empty: no .txt" in bad(tmp_path, capsys, [str(tmp_path / "empty")])


def test_binary_file(tmp_path, capsys):
    (tmp_path / "x.txt").write_bytes(b"\x7fELF\x02\x01\x00\x00" + bytes(range(256)))
    assert "x.txt: binary file" in bad(tmp_path, capsys, [str(tmp_path / "x.txt")])


def test_invalid_utf8_names_file_and_line(tmp_path, capsys):
    (tmp_path / "x.txt").write_bytes(b"fine line\nsecond line\nbad \xff\xfe here\n")
    assert "x.txt:3: invalid UTF-8" in bad(tmp_path, capsys, [str(tmp_path / "x.txt")])


def test_malformed_jsonl_line(tmp_path, capsys):
    (tmp_path / "x.jsonl").write_text('{"text": "ok"}\n{"text": oops}\n')
    assert "x.jsonl:2: malformed JSON" in bad(tmp_path, capsys, [str(tmp_path / "x.jsonl")])


def test_jsonl_without_text_field(tmp_path, capsys):
    write_jsonl(tmp_path / "x.jsonl", [{"body": "hello"}])
    assert "x.jsonl:1: no text field 'text'" in bad(tmp_path, capsys, [str(tmp_path / "x.jsonl")])


def test_parquet_without_text_column(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["a", "b"]}), tmp_path / "x.parquet")
    err = bad(tmp_path, capsys, [str(tmp_path / "x.parquet")])
    assert "x.parquet: no text field 'text'" in err and "body" in err


def test_unknown_config_key(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("min_chars: 10\nmin_charz: 5\n")
    write_jsonl(tmp_path / "x.jsonl", [{"text": "hello"}])
    err = bad(tmp_path, capsys, [str(tmp_path / "x.jsonl"), "--config", str(tmp_path / "c.yaml")])
    assert "unknown key 'min_charz'" in err


def test_refuses_to_replace_a_folder_that_is_not_prepared_data(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    write_jsonl(tmp_path / "x.jsonl", [{"text": t} for t in distinct_texts(5)])
    code, err = run_cli(["data", "prepare", str(tmp_path / "x.jsonl"), "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and "is not a prepared data directory" in err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


# ------------------------------------------------------------------------------------ options, CLI
def test_workers_give_the_same_output_as_one_process(tmp_path):
    rows = [{"text": t} for t in distinct_texts(40)] + [{"text": "tiny"}]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    one = prepare([str(src)], tmp_path / "one", PrepareConfig(**FAST))
    two = prepare([str(src)], tmp_path / "two", PrepareConfig(workers=2, **FAST))
    assert one["counts"] == two["counts"] and one["dropped"] == two["dropped"] == {"too_short": 1}
    for name in SPLITS:
        assert (tmp_path / "one" / "tokens" / f"{name}.bin").read_bytes() == (
            tmp_path / "two" / "tokens" / f"{name}.bin"
        ).read_bytes()


def test_given_tokenizer_is_used_instead_of_training_one(prepared, tmp_path, capsys):
    out, _ = prepared
    src = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in distinct_texts(20, seed=7)])
    code = cli.main(
        ["data", "prepare", str(src), "--out", str(tmp_path / "o"), "--tokenizer", str(out), "--min-chars", "20"]
    )
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["config"]["tokenizer"] == str(out)
    assert (tmp_path / "o" / "tokenizer" / "tokenizer.json").read_bytes() == (
        out / "tokenizer" / "tokenizer.json"
    ).read_bytes()


def test_text_files_are_streamed_in_blocks_cut_at_blank_lines(tmp_path):
    rng = random.Random(8)
    text = "\n\n".join(paragraph(rng, 20) for _ in range(50)) + "\n"
    (tmp_path / "big.txt").write_text(text, encoding="utf-8")
    blocks = [b for b, _ in read_text_file(tmp_path / "big.txt", block_chars=1000)]
    assert len(blocks) > 5 and "".join(blocks) == text
    assert all(b.endswith("\n\n") for b in blocks[:-1]) and max(map(len, blocks)) < 1000 + 300
