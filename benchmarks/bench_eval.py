"""Minimal-pair (BLiMP) scoring: our accuracy and speed against lm-evaluation-harness on the same model and files.

    python benchmarks/bench_eval.py                               # 6 paradigms x 500 pairs, a random micro model
    python benchmarks/bench_eval.py --model models/gen-0000 --files 67 --limit 1000 --bf16

Prints, all measured in this one run:
- accuracy of `touchstone.evaluate` and of lm-eval (its HFLM on the same loaded model, its BLiMP task
  definition pointed at the local files through the `json` dataset builder), the difference in points,
  and the number of pairs on which the two verdicts differ. lm-eval counts a pair whose sentences are
  identical as right (argmax picks the first of two equal scores); we skip and count such pairs, so the
  comparison scores them lm-eval's way;
- pairs/s of each (model load excluded; each side reads the files and tokenizes, after a warm-up), best
  of `--repeats` interleaved runs, and ours / theirs;
- with --bf16: the pairs/s of the bf16 mode (a bf16 copy of the model, near-ties rescored in fp32; the
  default of `touchstone eval` where bf16 is fast), how many verdicts bf16 alone flips against fp32, and
  how many remain after the rescoring (must be 0).
Without --model, a micro-size GPT-2 (random weights) with a byte-level BPE trained on WikiText-2 is built in a
temporary directory: agreement does not need a trained model. A random model puts a third of all pairs
within the near-tie margin (a trained one: about 8%), so its bf16 speed is the pessimistic case.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from touchstone.files import shared_data

BLIMP = shared_data() / "blimp" / "data"
WIKITEXT = str(shared_data() / "wikitext2" / "raw" / "wiki.test.raw")

TASK_YAML = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {path}
output_type: multiple_choice
validation_split: train
doc_to_text: ""
doc_to_target: 0
doc_to_choice: "{{{{[sentence_good, sentence_bad]}}}}"
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def build_model(tmp: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    from touchstone.model import make_config
    from touchstone.tokenizer import train_from_texts

    text = Path(WIKITEXT).read_text(encoding="utf-8")
    train_from_texts([p for p in text.split("\n") if p.strip()], tmp / "tok", vocab_size=8192)
    tok = AutoTokenizer.from_pretrained(str(tmp / "tok"))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(make_config("micro", len(tok)))
    model.save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    return tmp / "model"


def subset(tmp: Path, n_files: int, limit: int) -> tuple[Path, list[dict]]:
    """The first `limit` pairs of the first `n_files` paradigms, as files both sides read."""
    out = tmp / "blimp"
    out.mkdir()
    pairs = []
    for f in sorted(BLIMP.glob("*.jsonl.gz"))[:n_files]:
        with gzip.open(f, "rt", encoding="utf-8") as src:
            lines = [line for _, line in zip(range(limit), src)]
        (out / f.name.replace(".gz", "")).write_text("".join(lines), encoding="utf-8")
        pairs += [json.loads(line) for line in lines]
    return out, pairs


def lm_eval_verdicts(model, tokenizer, folder: Path, batch_size: int, tmp: Path) -> tuple[list[bool], float]:
    """lm-eval's verdict per pair (in file order) and its seconds, on the already loaded model."""
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tasks_dir = tmp / "tasks"
    tasks_dir.mkdir(parents=True)
    names = []
    for f in sorted(folder.glob("*.jsonl")):
        name = "blimp_local_" + f.stem
        (tasks_dir / f"{name}.yaml").write_text(TASK_YAML.format(name=name, path=f), encoding="utf-8")
        names.append(name)
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)
    tm = TaskManager(include_path=str(tasks_dir))
    lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=tm, limit=2)  # builds the dataset caches
    t = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=tm, log_samples=True)
    seconds = time.perf_counter() - t
    verdicts = []
    for name in names:
        for s in sorted(res["samples"][name], key=lambda s: s["doc_id"]):
            verdicts.append(bool(s["acc"]))
    return verdicts, seconds


def ours(model, tokenizer, folder: Path, batch_size: int, bf16: bool = False) -> tuple[list[bool], float]:
    from touchstone.likelihood import score_minimal_pairs
    from touchstone.records import read_minimal_pairs

    t = time.perf_counter()
    pairs = [r for f in sorted(folder.glob("*.jsonl")) for r in read_minimal_pairs(f)]
    keep = [i for i, p in enumerate(pairs) if p["sentence_good"] != p["sentence_bad"]]
    ok = score_minimal_pairs(model, tokenizer, [pairs[i] for i in keep], batch_size, bf16=bf16)
    seconds = time.perf_counter() - t
    verdicts = [True] * len(pairs)  # lm-eval's convention for identical sentences, for the comparison only
    for i, v in zip(keep, ok):
        verdicts[i] = v
    return verdicts, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="HF model directory (default: a random micro model built here)")
    ap.add_argument("--files", type=int, default=6, help="BLiMP paradigms (files) to use, 67 for all")
    ap.add_argument("--limit", type=int, default=500, help="pairs per paradigm")
    ap.add_argument("--batch-size", type=int, default=64, help="the same for both sides")
    ap.add_argument("--bf16", action="store_true", help="also measure the bf16 mode (fp32 rescoring of near-ties)")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs of each side (best one counts)")
    ap.add_argument("--threads", type=int, help="torch threads for both sides (default: torch's own)")
    args = ap.parse_args()
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    from touchstone.generate import load_model

    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model_dir = Path(args.model) if args.model else build_model(tmp)
        folder, pairs = subset(tmp, args.files, args.limit)
        model, tokenizer = load_model(model_dir)
        print(
            f"model {model_dir} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters), "
            f"{len(pairs)} pairs from {args.files} paradigms, batch {args.batch_size}, torch threads "
            f"{torch.get_num_threads()}"
        )
        from touchstone.likelihood import score_minimal_pairs

        score_minimal_pairs(model, tokenizer, pairs[:8], args.batch_size)  # warm-up, as lm-eval gets one
        modes = [False, True] if args.bf16 else [False]
        seconds = {mode: float("inf") for mode in modes + ["lm-eval"]}
        verdicts = {}
        for r in range(args.repeats):  # interleaved, best of each: the machine is shared and noisy
            for mode in modes:
                verdicts[mode], t = ours(model, tokenizer, folder, args.batch_size, bf16=mode)
                seconds[mode] = min(seconds[mode], t)
            verdicts["lm-eval"], t = lm_eval_verdicts(model, tokenizer, folder, args.batch_size, tmp / f"lm-eval-{r}")
            seconds["lm-eval"] = min(seconds["lm-eval"], t)
        mine, theirs = verdicts[False], verdicts["lm-eval"]
        assert len(mine) == len(theirs) == len(pairs)
        acc_ours, acc_theirs = 100 * sum(mine) / len(mine), 100 * sum(theirs) / len(theirs)
        differ = sum(a != b for a, b in zip(mine, theirs))
        print(
            f"accuracy: touchstone {acc_ours:.2f}%  lm-eval {acc_theirs:.2f}%  difference "
            f"{acc_ours - acc_theirs:+.2f} points  verdicts differing {differ}/{len(pairs)}"
        )
        rate = {mode: len(pairs) / t for mode, t in seconds.items()}
        print(
            f"speed: touchstone fp32 {rate[False]:.0f} pairs/s  lm-eval {rate['lm-eval']:.0f} pairs/s  "
            f"ratio {rate[False] / rate['lm-eval']:.2f}x"
        )
        if args.bf16:
            from touchstone import likelihood

            margin, likelihood.NEAR_TIE = likelihood.NEAR_TIE, -1.0  # a negative margin rescores nothing
            raw, _ = ours(model, tokenizer, folder, args.batch_size, bf16=True)
            likelihood.NEAR_TIE = margin
            print(
                f"speed: touchstone bf16 {rate[True]:.0f} pairs/s  ratio to lm-eval "
                f"{rate[True] / rate['lm-eval']:.2f}x; verdicts differing from fp32: "
                f"{sum(a != b for a, b in zip(raw, mine))} before the fp32 rescoring of near-ties, "
                f"{sum(a != b for a, b in zip(verdicts[True], mine))} after (margin {margin} nats)"
            )


if __name__ == "__main__":
    main()
