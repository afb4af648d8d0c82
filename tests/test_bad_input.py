"""Bad input to every command: one line on stderr naming the culprit, exit status 2, no traceback, and
nothing that existed before touched (no file changed, none removed, none added).

Each case runs `touchstone.cli.main(argv)` in-process over one shared set of fixtures (a nano model, a
prepared data directory, records, broken files of every kind); the fixtures are fingerprinted before
and after every case."""

import hashlib
import json
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from touchstone import cli

WORDS = (
    "the cat dog sat on a mat and ran to river under old green tree while small bird sang "
    "over hill far away near town where people walk every day with bread milk"
).split()


def tiny_data(root: Path) -> Path:
    """A prepared data directory (tokenizer + uint16 shards) of synthetic text, made in a second."""
    import random

    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from touchstone.prompts import EOS, SPECIAL_TOKENS

    rng = random.Random(0)
    docs = [" ".join(rng.choice(WORDS) for _ in range(60)) + "." for _ in range(300)]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(docs, vocab_size=400, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, pad_token="<|pad|>")
    tok.save_pretrained(root / "tokenizer")
    (root / "tokens").mkdir()
    for split, part in (("train", docs[:270]), ("val", docs[270:])):
        ids = [i for d in part for i in tok(d)["input_ids"] + [tok.eos_token_id]]
        np.asarray(ids, dtype=np.uint16).tofile(root / "tokens" / f"{split}.bin")
    return root


def unwritable(root: Path) -> Path:
    """A directory no file can be created in: a read-only one, or /sys for root (who ignores modes)."""
    if os.geteuid() == 0:
        return Path("/sys")
    d = root / "readonly"
    d.mkdir()
    d.chmod(0o500)
    return d


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from touchstone.records import claim_record, pair_record
    from touchstone.train.pretrain import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("bad")
    data = tiny_data(root / "data")
    cfg = PretrainConfig(
        size="nano", tokens=2 * 8 * 32, batch_size=8, seq_len=32, eval_every=2, compile=False, bf16=False, device="cpu"
    )
    model = pretrain(str(data), root / "model", cfg)
    p = {"root": root, "data": data, "model": model, "nope": root / "does-not-exist", "ro": unwritable(root)}

    def put(name, content):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        p[name.replace(".", "_").replace("/", "_")] = path
        return path

    recs = [
        pair_record("What is 2 + 2?", "4", "5", "a", world="numbers", kind="sum", source="test"),
        claim_record("2 plus 2 is 4.", True, world="numbers", kind="sum", source="test"),
    ]
    put("records.jsonl", "".join(json.dumps(r) + "\n" for r in recs))
    put("text.txt", "A plain sentence of text.\n" * 20)
    put("binary.bin", bytes(range(256)) * 8)
    put("badutf8.txt", b"good line\nbad \xff\xfe byte\n")
    put("list.yaml", "- size\n- nano\n")
    put("scalar.yaml", "42\n")
    put("badtype.yaml", "lr: fast\n")
    put("badyaml.yaml", "size: [nano\n")
    put("unknown.yaml", "sise: nano\n")
    put("sources.yaml", "sources: 5\n")
    put("malformed.jsonl", '{"sentence_good": "A cat sleeps."}\n{not json\n')
    design = {
        "span": 10,
        "root_chord": 1.2,
        "taper": 0.5,
        "sweep": 0,
        "twist": -2,
        "airfoil": "naca2412",
        "speed": 40,
        "altitude": 1000,
        "weight": 5000,
    }
    put("design_a.json", json.dumps(design))
    put("design_str.json", json.dumps({**design, "span": "ten"}))
    put("design_neg.json", json.dumps({**design, "span": -3}))
    put("design_foil.json", json.dumps({**design, "airfoil": "../../etc"}))
    put("design_list.json", "[1, 2]")
    put("existing.jsonl", "keep me\n")
    put("pair_types.jsonl", json.dumps({"a": 1, "b": [2], "label": "a"}) + "\n")
    put("claims.csv", b"statement,label\n\xff\xfe,1\n")
    (root / "userdir").mkdir()
    put("userdir/records.jsonl", (root / "records.jsonl").read_text())
    p["userdir"] = root / "userdir"
    (root / "emptydir").mkdir()
    p["emptydir"] = root / "emptydir"
    # Models whose MANIFEST.json is malformed.
    for name, manifest in (
        ("files_list", {"files": ["model.safetensors"]}),
        ("no_sha", {"files": {"model.safetensors": {"bytes": 1}}}),
        ("not_json", None),
        ("escapes", {"files": {"../records.jsonl": {"sha256": "0" * 64}}}),
    ):
        d = root / f"model_{name}"
        shutil.copytree(model, d)
        (d / "MANIFEST.json").write_text("{not json" if manifest is None else json.dumps(manifest))
        p[f"model_{name}"] = d
    truncated = root / "model_truncated"
    shutil.copytree(model, truncated)
    w = truncated / "model.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    (truncated / "MANIFEST.json").unlink()
    p["model_truncated"] = truncated
    # Workspaces with a broken ledger: garbage bytes, a truncated database, another program's database.
    for name in ("garbage", "truncated", "foreign"):
        (root / f"ws_{name}").mkdir()
        p[f"ws_{name}"] = root / f"ws_{name}"
    (root / "ws_garbage" / "ledger.sqlite").write_bytes(b"this is not a database at all" * 100)
    from touchstone.loop.ledger import Ledger

    led = Ledger(root / "full.sqlite")
    led.db.executemany(
        "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(f"id{i}", 1, "numbers", "pair", "a", "ok " * 50, "test") for i in range(3000)],
    )
    led.close()
    full = (root / "full.sqlite").read_bytes()
    (root / "full.sqlite").unlink()
    (root / "ws_truncated" / "ledger.sqlite").write_bytes(full[: len(full) // 3])
    db = sqlite3.connect(root / "ws_foreign" / "ledger.sqlite")
    db.execute("CREATE TABLE photos (id INTEGER)")
    db.commit()
    db.close()
    from touchstone.data.config import PrepareConfig
    from touchstone.data.prepare import prepare

    put("corpus/a.txt", "\n\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))))
    p["corpus"] = root / "corpus"
    prepare(
        [str(root / "corpus")], root / "prepared", PrepareConfig(min_chars=10, vocab_size=300, near_dup_threshold=1.0)
    )
    p["prepared"] = root / "prepared"
    return p


# (id, argv, what the one line must name). {name} is a fixture path.
CASES = [
    # --config that is not a mapping of settings
    ("config-list", "data prepare {corpus} --out {root}/o --config {list_yaml}", "list.yaml"),
    ("config-scalar", "pretrain --out {root}/o --config {scalar_yaml}", "scalar.yaml"),
    ("config-binary", "finetune {model} --data {records_jsonl} --out {root}/o --config {binary_bin}", "binary.bin"),
    ("config-utf8", "run --workspace {root}/ws --config {badutf8_txt}", "badutf8.txt"),
    ("config-dir", "pretrain --out {root}/o --config {emptydir}", "emptydir"),
    ("config-missing", "pretrain --out {root}/o --config {nope}", "does-not-exist"),
    ("config-badtype", "pretrain --out {root}/o --config {badtype_yaml}", "'lr'"),
    ("config-badyaml", "pretrain --out {root}/o --config {badyaml_yaml}", "badyaml.yaml"),
    ("config-unknown", "pretrain --out {root}/o --config {unknown_yaml}", "'sise'"),
    ("config-sources", "run --workspace {root}/ws --config {sources_yaml}", "'sources'"),
    # output paths: a directory, under a file, unwritable, already there
    ("prepare-out-file", "data prepare {corpus} --out {existing_jsonl}", "existing.jsonl"),
    ("prepare-out-under-file", "data prepare {corpus} --out {existing_jsonl}/o", "existing.jsonl"),
    ("prepare-out-unwritable", "data prepare {corpus} --out {ro}/o", "{ro}/o"),
    ("prepare-out-exists", "data prepare {corpus} --out {prepared}", "--overwrite"),
    ("prepare-out-not-ours", "data prepare {corpus} --out {userdir} --overwrite", "userdir"),
    ("synth-out-dir", "synth numbers --n 3 --out {emptydir}", "emptydir"),
    ("synth-out-under-file", "synth numbers --n 3 --out {existing_jsonl}/x.jsonl", "existing.jsonl"),
    ("synth-out-unwritable", "synth numbers --n 3 --out {ro}/x.jsonl", "{ro}/x.jsonl"),
    ("synth-out-exists", "synth numbers --n 3 --out {existing_jsonl}", "existing.jsonl"),
    ("eval-out-dir", "eval {model} --task suite:numbers --json {emptydir}", "emptydir"),
    ("eval-out-under-file", "eval {model} --task suite:numbers --json {existing_jsonl}/r.json", "existing.jsonl"),
    ("eval-out-unwritable", "eval {model} --task suite:numbers --json {ro}/r.json", "{ro}/r.json"),
    ("eval-out-exists", "eval {model} --task suite:numbers --json {existing_jsonl}", "existing.jsonl"),
    ("eval-report-file", "eval {model} --task suite:numbers --report {existing_jsonl}", "existing.jsonl"),
    ("debate-plot-dir", "debate {model} {design_a_json} {design_a_json} --plot {emptydir}", "emptydir"),
    (
        "debate-plot-under-file",
        "debate {model} {design_a_json} {design_a_json} --plot {existing_jsonl}/p.png",
        "existing.jsonl",
    ),
    ("debate-plot-unwritable", "debate {model} {design_a_json} {design_a_json} --plot {ro}/p.png", "{ro}/p.png"),
    ("lint-fix-file", "lint {records_jsonl} --no-verify --fix {existing_jsonl}", "existing.jsonl"),
    ("lint-fix-under-file", "lint {records_jsonl} --no-verify --fix {existing_jsonl}/d", "existing.jsonl"),
    ("lint-fix-unwritable", "lint {records_jsonl} --no-verify --fix {ro}/d", "{ro}/d"),
    ("lint-fix-holds-input", "lint {userdir}/records.jsonl --no-verify --fix {userdir}", "userdir"),
    ("lint-fix-not-ours", "lint {userdir}/records.jsonl --no-verify --fix {userdir} --overwrite", "MANIFEST.json"),
    ("tokenizer-out-file", "tokenizer train {text_txt} --out {existing_jsonl}", "existing.jsonl"),
    ("pretrain-out-file", "pretrain --data {data} --out {existing_jsonl}", "existing.jsonl"),
    ("pretrain-out-exists", "pretrain --data {data} --out {model}", "--overwrite"),
    ("finetune-out-exists", "finetune {model} --data {records_jsonl} --out {model}", "--overwrite"),
    ("finetune-out-unwritable", "finetune {model} --data {records_jsonl} --out {ro}/m", "{ro}/m"),
    # model directories with a malformed MANIFEST.json
    ("judge-manifest-list", "judge {model_files_list} --a x --b y", "MANIFEST.json"),
    ("judge-manifest-no-sha", "judge {model_no_sha} --a x --b y", "MANIFEST.json"),
    ("judge-manifest-not-json", "judge {model_not_json} --statement x", "MANIFEST.json"),
    ("judge-manifest-escapes", "judge {model_escapes} --statement x", "MANIFEST.json"),
    ("finetune-manifest-list", "finetune {model_files_list} --data {records_jsonl} --out {root}/o", "MANIFEST.json"),
    ("finetune-manifest-no-sha", "finetune {model_no_sha} --data {records_jsonl} --out {root}/o", "MANIFEST.json"),
    ("generate-truncated-weights", "generate {model_truncated} --prompt hi", "model_truncated"),
    # broken ledgers and workspaces
    ("status-garbage-ledger", "status --workspace {ws_garbage}", "ledger.sqlite"),
    ("history-garbage-ledger", "history --workspace {ws_garbage}", "ledger.sqlite"),
    ("run-garbage-ledger", "run --workspace {ws_garbage} --generations 1", "ledger.sqlite"),
    ("status-truncated-ledger", "status --workspace {ws_truncated}", "ledger.sqlite"),
    ("history-truncated-ledger", "history --workspace {ws_truncated}", "ledger.sqlite"),
    ("run-truncated-ledger", "run --workspace {ws_truncated} --generations 1", "ledger.sqlite"),
    ("status-foreign-ledger", "status --workspace {ws_foreign}", "ledger.sqlite"),
    ("run-foreign-ledger", "run --workspace {ws_foreign} --generations 1", "ledger.sqlite"),
    ("status-workspace-file", "status --workspace {existing_jsonl}", "existing.jsonl"),
    ("history-workspace-file", "history --workspace {existing_jsonl}", "existing.jsonl"),
    ("run-workspace-file", "run --workspace {existing_jsonl} --generations 1", "existing.jsonl"),
    # debate design files
    ("debate-binary", "debate {model} {binary_bin} {design_a_json}", "binary.bin"),
    ("debate-utf8", "debate {model} {design_a_json} {badutf8_txt}", "badutf8.txt"),
    ("debate-string-number", "debate {model} {design_str_json} {design_a_json}", "'span'"),
    ("debate-negative-span", "debate {model} {design_neg_json} {design_a_json}", "'span'"),
    ("debate-bad-airfoil", "debate {model} {design_foil_json} {design_a_json}", "'airfoil'"),
    ("debate-not-object", "debate {model} {design_list_json} {design_a_json}", "design_list.json"),
    ("debate-malformed", "debate {model} {design_a_json} {malformed_jsonl}", "malformed.jsonl"),
    ("debate-dir", "debate {model} {emptydir} {design_a_json}", "emptydir"),
    # text a task reads
    ("eval-perplexity-binary", "eval {model} --task perplexity:{binary_bin}", "binary.bin"),
    ("eval-perplexity-utf8", "eval {model} --task perplexity:{badutf8_txt}", "badutf8.txt"),
    ("eval-pairs-binary", "eval {model} --task pairs:{binary_bin}", "binary.bin"),
    ("eval-claims-malformed", "eval {model} --task claims:{malformed_jsonl}", "malformed.jsonl"),
    ("eval-minimal-pairs-binary", "eval {model} --task minimal-pairs:{binary_bin}", "binary.bin"),
    ("eval-bad-spec", "eval {model} --task nonsense", "nonsense"),
    ("eval-pairs-not-text", "eval {model} --task pairs:{pair_types_jsonl}", "'a'"),
    ("eval-claims-csv-utf8", "eval {model} --task claims:{claims_csv}", "claims.csv"),
    ("prepare-missing-tokenizer", "data prepare {corpus} --out {root}/o --tokenizer {nope}", "does-not-exist"),
    ("eval-unknown-suite", "eval {model} --task suite:astrology", "astrology"),
    ("perplexity-binary", "perplexity {model} {binary_bin}", "binary.bin"),
    ("perplexity-dir", "perplexity {model} {emptydir}", "emptydir"),
    ("verify-binary", "verify numbers {binary_bin}", "binary.bin"),
    ("verify-unknown-world", "verify astrology {records_jsonl}", "astrology"),
    ("finetune-data-binary", "finetune {model} --data {binary_bin} --out {root}/o", "binary.bin"),
    (
        "finetune-text-data-file",
        "finetune {model} --data {records_jsonl} --text-data {text_txt} --out {root}/o",
        "text.txt",
    ),
    ("pretrain-data-file", "pretrain --data {text_txt} --out {root}/o", "text.txt"),
    ("prepare-binary-source", "data prepare {binary_bin} --out {root}/o", "binary.bin"),
    ("prepare-missing-source", "data prepare {nope} --out {root}/o", "does-not-exist"),
    ("tokenizer-binary", "tokenizer train {binary_bin} --out {root}/o", "binary.bin"),
    ("synth-language-binary-source", "synth language --n 3 --source {binary_bin} --out {root}/o.jsonl", "binary.bin"),
    ("lint-binary", "lint {binary_bin} --no-verify", "binary.bin"),
    # numbers out of range
    ("pretrain-lr-negative", "pretrain --data {data} --out {root}/o --lr -1", "--lr"),
    ("pretrain-lr-nan", "pretrain --data {data} --out {root}/o --lr nan", "--lr"),
    ("pretrain-batch-0", "pretrain --data {data} --out {root}/o --batch-size 0", "--batch-size"),
    ("pretrain-seq-0", "pretrain --data {data} --out {root}/o --seq-len 0", "--seq-len"),
    ("pretrain-minutes-negative", "pretrain --data {data} --out {root}/o --minutes -1", "--minutes"),
    ("run-generations-0", "run --workspace {root}/ws --generations 0", "--generations"),
    ("run-generations-negative", "run --workspace {root}/ws --generations -1", "--generations"),
    ("run-hours-negative", "run --workspace {root}/ws --hours -1", "--hours"),
    ("run-hours-nan", "run --workspace {root}/ws --hours nan", "--hours"),
    ("prepare-workers-0", "data prepare {corpus} --out {root}/o --workers 0", "--workers"),
    ("prepare-min-chars-negative", "data prepare {corpus} --out {root}/o --min-chars -5", "--min-chars"),
    ("prepare-min-over-max", "data prepare {corpus} --out {root}/o --min-chars 500 --max-chars 100", "min_chars"),
    ("finetune-epochs-0", "finetune {model} --data {records_jsonl} --out {root}/o --epochs 0", "--epochs"),
    ("finetune-objective", "finetune {model} --data {records_jsonl} --out {root}/o --objective guess", "--objective"),
    ("generate-tokens-0", "generate {model} --prompt hi --max-new-tokens 0", "--max-new-tokens"),
    ("generate-top-p", "generate {model} --prompt hi --top-p 2", "--top-p"),
    ("generate-temperature", "generate {model} --prompt hi --temperature -1", "--temperature"),
    ("eval-batch-0", "eval {model} --task suite:numbers --batch-size 0", "--batch-size"),
    ("eval-limit-0", "eval {model} --task suite:numbers --limit 0", "--limit"),
    ("eval-contrast-negative", "eval {model} --task suite:code --contrast -1", "--contrast"),
    ("synth-n-negative", "synth numbers --n -1 --out {root}/o.jsonl", "--n"),
    ("tokenizer-vocab-0", "tokenizer train {text_txt} --out {root}/o --vocab-size 0", "--vocab-size"),
    # a bad evaluation set is an error, not a set quietly skipped
    ("lint-eval-set-binary", "lint {records_jsonl} --no-verify --eval-set {binary_bin}", "binary.bin"),
    ("lint-eval-set-malformed", "lint {records_jsonl} --no-verify --eval-set {malformed_jsonl}", "malformed.jsonl"),
    ("lint-eval-set-utf8", "lint {records_jsonl} --no-verify --eval-set {badutf8_txt}", "badutf8.txt"),
    ("lint-eval-set-missing", "lint {records_jsonl} --no-verify --eval-set {nope}", "does-not-exist"),
    # arguments checked before a model loads (the model path does not even exist)
    ("judge-needs-b", "judge {nope} --a x", "--b"),
    ("judge-statement-and-pair", "judge {nope} --statement x --a y --b z", "--statement"),
    ("eval-bad-file-before-model", "eval {nope} --task perplexity:{binary_bin}", "binary.bin"),
    ("debate-bad-design-before-model", "debate {nope} {design_str_json} {design_a_json}", "'span'"),
    ("perplexity-bad-file-before-model", "perplexity {nope} {badutf8_txt}", "badutf8.txt"),
    ("finetune-out-before-model", "finetune {nope} --data {records_jsonl} --out {existing_jsonl}", "existing.jsonl"),
]


def fingerprint(root: Path) -> dict:
    """Every file under `root` with its content hash, and every directory: what a case must leave alone."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


@pytest.mark.parametrize("argv,culprit", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(env, capsys, argv, culprit):
    fields = {k: str(v) for k, v in env.items()}
    args = [a.format(**fields) for a in argv.split()]
    culprit = culprit.format(**fields)
    before = fingerprint(env["root"])
    code = cli.main(args)  # an unexpected exception fails the test with its traceback
    err = capsys.readouterr().err.strip().splitlines()
    # A command may print progress before it fails; the error itself is its last line, and the only one.
    errors = [line for line in err if "error" in line.lower()]
    assert code == 2, err
    assert len(errors) == 1 and culprit in errors[-1], err
    assert not any("Traceback" in line for line in err)
    assert fingerprint(env["root"]) == before
