"""data prepare on datatrove: the same documents in the same splits as the plain path, the same manifest,
every reader, resume after a kill, and the Slurm and Ray executors."""

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from touchstone.config import to_dict
from touchstone.data.clean import cleaned
from touchstone.data.config import PrepareConfig
from touchstone.data.filters import FILTERS, filtered
from touchstone.data.prepare import prepare
from touchstone.data.shards import read_records, write_shard
from touchstone.data.split import SPLITS
from touchstone.files import MANIFEST, check_manifest, shared_data

pytest.importorskip("datatrove")
from touchstone.data.datatrove_blocks import Chunks, ReasonFilter
from touchstone.data.datatrove_run import executors, stages

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(vocab_size=300, val_fraction=0.02, test_fraction=0.02)
SHARED = shared_data()
ENGLISH = [SHARED / "gutenberg", SHARED / "wikitext2" / "tokens" / "valid.txt", SHARED / "tinyshakespeare"]
needs_english = pytest.mark.skipif(not all(p.exists() for p in ENGLISH), reason="shared English corpus absent")


def records_by_split(out: Path) -> dict[str, set]:
    return {s: {(r["id"], r["source"]) for r in read_records(out / "text" / f"{s}.jsonl.gz")} for s in SPLITS}


def assert_equivalent(plain: Path, scaled: Path, tolerance: float = 0.01) -> float:
    """Filters and exact dedup identical, no document in another split, near-dup decisions differing on at most
    `tolerance` of the chunks that reached near dedup; returns that fraction."""
    a, b = (json.loads((d / MANIFEST).read_text()) for d in (plain, scaled))
    for reason in set(a["dropped"]) | set(b["dropped"]):
        if reason != "near_duplicate":
            assert a["dropped"].get(reason, 0) == b["dropped"].get(reason, 0), reason
    assert a["counts"]["documents"] == b["counts"]["documents"]
    assert a["counts"]["bytes_in"] == b["counts"]["bytes_in"]
    ra, rb = records_by_split(plain), records_by_split(scaled)
    split_a = {rec: s for s, recs in ra.items() for rec in recs}
    split_b = {rec: s for s, recs in rb.items() for rec in recs}
    assert all(split_a[rec] == split_b[rec] for rec in split_a.keys() & split_b.keys())
    differ = len(split_a.keys() ^ split_b.keys())
    reached = a["counts"]["chunks_kept"] + a["dropped"].get("near_duplicate", 0)
    assert differ <= tolerance * reached, (differ, reached)
    assert set(a["files"]) == set(b["files"])
    assert {k: v for k, v in a.items() if k not in ("files", "counts", "dropped", "config")} == {
        k: v for k, v in b.items() if k not in ("files", "counts", "dropped", "config")
    }
    return differ / reached


def english_slice(root: Path) -> list[str]:
    """About 1 MB of the shared English corpus (the start of seven of its files), plus planted junk and
    duplicates across files."""
    root.mkdir()
    for src in sorted((SHARED / "gutenberg").glob("*.txt"))[:5] + [
        SHARED / "tinyshakespeare" / "input.txt",
        ENGLISH[1],
    ]:
        (root / f"{src.parent.name}-{src.name}").write_text(src.read_text(encoding="utf-8")[:150_000], encoding="utf-8")
    rng = random.Random(0)
    # From past the slice, so that its near duplicate below has no third party in the slice.
    para = (SHARED / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[500_000:503_000]
    junk = [
        "too short",
        "\x01\x02\x03 binary-looking \x04\x05" * 20,
        "the same line\n" * 40,
        " ".join(["spam eggs"] * 60),
    ]
    words = para.split()
    near = " ".join(w if rng.random() > 0.02 else "zzz" for w in words)
    for name in ("a.jsonl", "b.jsonl"):  # `para` twice in each file, and in two files (exact duplicates)
        rows = [{"text": t} for t in junk + [para, para, near, ""]]
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return [str(root)]


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    if not all(p.exists() for p in ENGLISH):
        pytest.skip("shared English corpus absent")
    tmp = tmp_path_factory.mktemp("slice")
    sources = english_slice(tmp / "src")
    prepare(sources, tmp / "plain", PrepareConfig(**FAST))
    return tmp, sources


def scaled(tmp: Path, sources, tasks: int, workers: int = 1, **kw) -> Path:
    out = tmp / f"dt-{tasks}-{workers}"
    if not out.exists():
        prepare(sources, out, PrepareConfig(executor="local", tasks=tasks, workers=workers, **FAST, **kw))
    return out


# ----------------------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("tasks,workers", [(2, 1), (4, 2)])
def test_same_documents_in_the_same_splits_as_the_plain_path(english, tasks, workers):
    tmp, sources = english
    out = scaled(tmp, sources, tasks, workers)
    assert_equivalent(tmp / "plain", out)
    manifest = check_manifest(out)
    assert manifest["dropped"]["too_short"] >= 2 and manifest["dropped"]["exact_duplicate"] >= 3
    assert not (tmp / f".{out.name}.datatrove").exists()  # the work directory is gone once done


def test_exact_duplicates_keep_the_first_files_copy(english):
    tmp, sources = english
    out = scaled(tmp, sources, 2)
    sources_of = Counter(r["source"] for s in SPLITS for r in read_records(out / "text" / f"{s}.jsonl.gz"))
    assert not any(src.endswith("b.jsonl") for src in sources_of)  # everything in b.jsonl was in a.jsonl first


def test_shards_are_the_trainers_format(english):
    from touchstone.tokenizer import load_tokenizer

    tmp, sources = english
    out = scaled(tmp, sources, 2)
    tok = load_tokenizer(out)
    for split in SPLITS:
        again = tmp / f"again-{split}.bin"
        write_shard(out / "text" / f"{split}.jsonl.gz", tok, again)
        assert again.read_bytes() == (out / "tokens" / f"{split}.bin").read_bytes()


@pytest.mark.slow
@needs_english
@pytest.mark.parametrize("tasks", [2, 4])
def test_whole_english_corpus_matches_the_plain_path(tmp_path_factory, tasks):
    tmp = tmp_path_factory.mktemp(f"english{tasks}")
    sources = [str(p) for p in ENGLISH]
    prepare(sources, tmp / "plain", PrepareConfig(**FAST))
    out = tmp / "dt"
    prepare(sources, out, PrepareConfig(executor="local", tasks=tasks, workers=2, **FAST))
    differ = assert_equivalent(tmp / "plain", out)
    print(f"tasks={tasks}: near-dup decisions differ on {differ:.2%} of chunks")


# --------------------------------------------------------------------------------------------- readers
def test_every_reader_gives_the_plain_paths_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(1)
    words = "river stone light garden window morning silver quiet forest letter paper winter".split()
    texts = [" ".join(rng.choice(words) for _ in range(40)) for _ in range(60)]
    # RefinedWeb's schema, written in several row groups so that it is read batch by batch.
    web = pa.table(
        {
            "content": texts[:30],
            "url": [f"http://x/{i}" for i in range(30)],
            "timestamp": pa.array([1_700_000_000_000] * 30, pa.timestamp("ms")),
            "dump": ["CC-MAIN-2023-06"] * 30,
            "segment": ["1674764494974.22"] * 30,
        }
    )
    pq.write_table(web, tmp_path / "web.parquet", row_group_size=7)
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[30:45]))
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts[45:]))
    sources = [str(tmp_path / "web.parquet"), str(tmp_path / "docs.jsonl"), f"hf:{tmp_path / 'ds'}@train"]
    cfg = dict(vocab_size=300, min_chars=20, val_fraction=0.1, test_fraction=0.1, near_dup_threshold=1.0)
    prepare(sources, tmp_path / "plain", PrepareConfig(**cfg))
    prepare(sources, tmp_path / "dt", PrepareConfig(executor="local", tasks=2, **cfg))
    assert records_by_split(tmp_path / "plain") == records_by_split(tmp_path / "dt")
    assert sum(len(v) for v in records_by_split(tmp_path / "dt").values()) == 60


def test_filter_blocks_count_the_reasons_data_py_counts():
    from datatrove.data import Document

    cfg = PrepareConfig(min_chars=20)
    texts = [
        "short",
        "a line\nlong enough to keep\n" * 12,
        "text \ufffd\ufffd\ufffd mangled " * 10,
        "to be or not " * 30,
        "A sentence that says one thing, then another sentence that says another.",
    ]
    drops: Counter = Counter()
    kept = [t for t, _ in filtered(cleaned([(t, "") for t in texts], cfg), cfg, drops)]
    docs = Chunks(cfg)(Document(text=t, id=str(i), metadata={}) for i, t in enumerate(texts))
    blocks = [ReasonFilter(f, cfg) for f in FILTERS]
    for block in blocks:
        docs = block(docs)
    assert [d.text for d in docs] == kept
    counted = Counter(
        {
            k.removeprefix("dropped_"): v.total
            for b in blocks
            for k, v in b.stats.stats.items()
            if k.startswith("dropped_")
        }
    )
    assert counted == drops
    assert set(drops) == {"too_short", "repeated_lines", "binary", "repeated_ngrams"}


# ---------------------------------------------------------------------------------------------- resume
def test_killed_run_resumes_from_its_completed_tasks(english):
    tmp, sources = english
    out = tmp / "killed"
    work = tmp / ".killed.datatrove"
    cmd = [
        sys.executable,
        "-m",
        "touchstone",
        "data",
        "prepare",
        *sources,
        "--out",
        str(out),
        "--executor",
        "local",
        "--tasks",
        "4",
        "--workers",
        "1",
        "--vocab-size",
        "300",
    ]
    cfg_file = tmp / "fractions.yaml"
    cfg_file.write_text("val_fraction: 0.02\ntest_fraction: 0.02\n")
    cmd += ["--config", str(cfg_file)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    done = work / "logs" / "clean" / "completions"
    while proc.poll() is None and not (done.exists() and any(done.iterdir())):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not out.exists()  # nothing complete-looking yet
    finished = sorted(p.name for p in done.iterdir())
    assert 1 <= len(finished) < 4 or (work / "logs" / "exact-find").exists()

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming" in again.stderr
    assert re.search(r"Skipping \d+ already completed tasks|all \d+ tasks have already been completed", again.stderr)
    check_manifest(out)
    assert records_by_split(out) == records_by_split(scaled(tmp, sources, 4))
    assert not work.exists()


def test_refuses_a_work_directory_that_is_not_its_own(tmp_path, capsys):
    from touchstone import cli

    (tmp_path / "t.txt").write_text("words " * 50)
    (tmp_path / ".out.datatrove").mkdir()
    (tmp_path / ".out.datatrove" / "mine.txt").write_text("keep me")
    code = cli.main(["data", "prepare", str(tmp_path / "t.txt"), "--out", str(tmp_path / "out"), "--executor", "local"])
    assert code == 2 and "not a datatrove work directory" in capsys.readouterr().err
    assert (tmp_path / ".out.datatrove" / "mine.txt").exists()


# ------------------------------------------------------------------------------------------- executors
def test_slurm_and_ray_get_the_same_pipeline(tmp_path):
    import dill
    from datatrove.executor import RayPipelineExecutor, SlurmPipelineExecutor

    (tmp_path / "t.txt").write_text("words and more words. " * 40)
    sources = [str(tmp_path / "t.txt")]
    cfg = PrepareConfig(tasks=3, workers=2, slurm_partition="cpu", **FAST)
    layouts = {}
    for engine, cls in (("slurm", SlurmPipelineExecutor), ("ray", RayPipelineExecutor)):
        run_cfg = PrepareConfig(**{**to_dict(cfg), "executor": engine})
        work = tmp_path / engine
        execs = executors(stages(sources, tmp_path / "out", run_cfg, work), run_cfg, work)
        assert all(isinstance(ex, cls) for ex in execs)
        layouts[engine] = [(ex.world_size, [type(s).__name__ for s in ex.pipeline]) for ex in execs]
        for ex in execs:
            dill.loads(dill.dumps(ex))  # what Slurm's jobs (and Ray's workers) unpickle
        if engine == "slurm":
            assert all(ex.depends is before for ex, before in zip(execs[1:], execs))
            assert execs[0].get_sbatch_args()["partition"] == "cpu"
    assert layouts["slurm"] == layouts["ray"]
    assert [tasks for tasks, _ in layouts["ray"]][:2] == [3, 3]


def test_slurm_needs_a_partition(tmp_path, capsys):
    from touchstone import cli

    (tmp_path / "t.txt").write_text("words " * 50)
    code = cli.main(["data", "prepare", str(tmp_path / "t.txt"), "--out", str(tmp_path / "out"), "--executor", "slurm"])
    assert code == 2 and "slurm_partition" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_runs_the_pipeline_for_real(english):
    pytest.importorskip("ray")
    import ray

    tmp, sources = english
    out = tmp / "ray"
    try:
        prepare(sources, out, PrepareConfig(executor="ray", tasks=2, workers=2, **FAST))
    finally:
        ray.shutdown()
    assert records_by_split(out) == records_by_split(scaled(tmp, sources, 2))
    check_manifest(out)
