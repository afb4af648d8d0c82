"""Evaluation under torchrun on the CPU (gloo): two processes, each scoring its share of the batches, give
exactly the numbers of one process, and only rank 0 prints them."""

import gzip
import itertools
import json
import re

import pytest
import torch
from test_judge import TEXT, tiny_model_dir
from test_pretrain_ddp import torchrun

from touchstone.distributed import Shards
from touchstone.evaluate import evaluate
from touchstone.files import write_jsonl_atomic

BATCH = 4  # small, so that every task has several batches and an uneven last one for the two ranks to split

# The eval command, counting the batches this process scored itself (the work `Shards` splits).
COUNTING = """
import atexit, os, sys
from touchstone import cli
from touchstone.distributed import Shards
scored = [0]
real = Shards.map
def counting_map(self, score, batches):
    def counted(batch):
        scored[0] += 1
        return score(batch)
    return real(self, counted, batches)
Shards.map = counting_map
atexit.register(lambda: print(f"rank {os.environ['RANK']} scored {scored[0]} batches", file=sys.stderr))
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    """One spec of each kind that scores batches: pairs and claims, minimal pairs, perplexity, BLEU, a suite."""
    d = tmp_path_factory.mktemp("eval-ddp")
    model = tiny_model_dir(d)
    words = TEXT.split()
    sentences = [" ".join(words[i : i + 6]) for i in range(0, 90, 3)]  # 30 overlapping sentences
    write_jsonl_atomic(
        d / "pairs.jsonl",
        [
            {"prompt": "Which reads better?", "a": s, "b": s[::-1], "label": "ab"[i % 2]}
            for i, s in enumerate(sentences)
        ],
    )
    write_jsonl_atomic(d / "claims.jsonl", [{"statement": s, "label": i % 3 == 0} for i, s in enumerate(sentences)])
    with gzip.open(d / "blimp.jsonl.gz", "wt", encoding="utf-8") as f:
        for s in sentences[:13]:
            f.write(json.dumps({"sentence_good": s, "sentence_bad": " ".join(reversed(s.split()))}) + "\n")
    (d / "text.txt").write_text(TEXT * 4, encoding="utf-8")
    write_jsonl_atomic(d / "bleu.jsonl", [{"prompt": s, "reference": t} for s, t in itertools.pairwise(sentences[:6])])
    specs = [
        f"pairs:{d / 'pairs.jsonl'}",
        f"claims:{d / 'claims.jsonl'}",
        f"minimal-pairs:{d / 'blimp.jsonl.gz'}",
        f"perplexity:{d / 'text.txt'}",
        f"bleu:{d / 'bleu.jsonl'}",
        "suite:numbers",
    ]
    return model, specs


def test_two_processes_give_the_numbers_of_one(tasks, tmp_path, monkeypatch):
    model, specs = tasks
    out, script = tmp_path / "two.json", tmp_path / "counting.py"
    script.write_text(COUNTING)
    flags = ["--batch-size", str(BATCH), "--limit", "30"]
    r = torchrun(str(script), "eval", str(model), "--task", *specs, "--json", str(out), *flags)
    two = json.loads(out.read_text())
    batches = []
    real = Shards.map
    monkeypatch.setattr(Shards, "map", lambda self, score, todo: batches.append(len(todo)) or real(self, score, todo))
    # One thread, as torchrun gives each of its processes: a matrix product's sums then run in one order.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = evaluate(model, specs, batch_size=BATCH, limit=30)
    finally:
        torch.set_num_threads(threads)
    # Each rank scored its own batches, about half of one process's, and together all of them.
    per_rank = [int(n) for n in re.findall(r"rank \d scored (\d+) batches", r.stderr)]
    assert len(per_rank) == 2 and sum(per_rank) == sum(batches) and min(per_rank) >= sum(batches) // 2 - len(batches)
    assert two["provenance"]["config"]["processes"] == 2 and one["provenance"]["config"]["processes"] == 1
    # Exactly equal, not within a tolerance: each batch is the one a single process builds.
    assert two["tasks"] == one["tasks"]
    assert r.stdout.count(f'"{specs[0]}"') == 1  # rank 0 alone prints the figures
