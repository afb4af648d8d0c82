"""Pretraining speed: tokens/s and MFU per size, and our loop against transformers' Trainer.

    python benchmarks/bench_pretrain.py                         # a few minutes on 2 idle cores
    python benchmarks/bench_pretrain.py --steps 30 --sizes micro,small --variants default,eager,compiled --repeats 3

Prints, all measured in this one run:
- the machine's matmul peak (GFLOP/s) for fp32 and bf16 (large square torch.matmul);
- for each size: parameters, tokens/s of `touchstone.train.pretrain` (with its defaults; `--variants` adds
  eager fp32 and compiled fp32), and MFU = tokens/s * FLOPs per token / the peak of the precision
  used, with FLOPs per token = 6 * N (N without the position table, with the tied output layer)
  + 12 * n_layer * n_embd * seq_len (attention scores and values);
- tokens/s of a plain Hugging Face `Trainer` on the same model, data and batch, and our ratio to it.
Data: byte-level BPE (8192 tokens) shards of tiny Shakespeare, built in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from touchstone.files import shared_data
from touchstone.model import SIZES
from touchstone.train.common import Windows, fast_bf16
from touchstone.train.pretrain import PretrainConfig, pretrain, resolve

SHAKESPEARE = str(shared_data() / "tinyshakespeare" / "input.txt")


def matmul_peak(dtype, budget_s: float = 3.0) -> float:
    """Best GFLOP/s of square matmuls, growing the size until one product takes ~0.2 s."""
    best, n = 0.0, 256
    deadline = time.monotonic() + budget_s
    while n <= 4096 and time.monotonic() < deadline:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        reps, t0 = 0, time.monotonic()
        while reps < 3 or time.monotonic() - t0 < 0.3:
            a @ b
            reps += 1
        dt = (time.monotonic() - t0) / reps
        best = max(best, 2 * n**3 / dt / 1e9)
        if dt > 0.2:
            break
        n *= 2
    return best


def make_data(root: Path, vocab: int = 8192) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    from touchstone.prompts import EOS, PAD, SPECIAL_TOKENS

    docs = [d for d in Path(SHAKESPEARE).read_text(encoding="utf-8").split("\n\n") if d.strip()]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(docs, vocab_size=vocab, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token=EOS, pad_token=PAD)
    tok.save_pretrained(root / "tokenizer")
    (root / "tokens").mkdir()
    ids = [i for d in docs for i in tok(d)["input_ids"] + [tok.eos_token_id]]
    cut = len(ids) * 95 // 100
    np.asarray(ids[:cut], dtype=np.uint16).tofile(root / "tokens" / "train.bin")
    np.asarray(ids[cut:], dtype=np.uint16).tofile(root / "tokens" / "val.bin")
    return root


def flops_per_token(size: str, n_params: int, seq_len: int) -> float:
    s = SIZES[size]
    n = n_params - seq_len * s["n_embd"]  # position embeddings are a lookup, not a matmul
    return 6 * n + 12 * s["n_layer"] * s["n_embd"] * seq_len


def ours(data: Path, out: Path, size: str, steps: int, **kw) -> dict:
    s = SIZES[size]
    cfg = PretrainConfig(
        size=size, eval_every=10**6, minutes=10**6, tokens=steps * s["batch_size"] * s["seq_len"], **kw
    )
    path = pretrain(str(data), out, cfg)
    manifest = json.loads((path / "MANIFEST.json").read_text())
    return {"tokens_per_s": manifest["tokens_per_s"], "parameters": manifest["parameters"], "cfg": resolve(cfg)}


def trainer(data: Path, out: Path, size: str, steps: int, bf16: bool, attention: str | None = None) -> float:
    """Tokens/s of a plain transformers Trainer on the same model, data windows and batch.

    `attention` overrides the library's default attention kernel (sdpa), e.g. "eager" as our loop uses."""
    from transformers import AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from touchstone.train.pretrain import initial_model

    cfg = resolve(PretrainConfig(size=size, compile=False, bf16=bf16))
    tok = AutoTokenizer.from_pretrained(str(data / "tokenizer"))
    model = initial_model(cfg, len(tok), tok.eos_token_id)
    if attention:
        model.set_attn_implementation(attention)
    train = Windows(data / "tokens" / "train.bin", cfg.seq_len)

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return train.n

        def __getitem__(self, i):
            x, _ = train.batch([i])
            return {"input_ids": x[0], "labels": x[0]}

    stamps = []

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            if not stamps:
                stamps.append(time.monotonic())

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.monotonic())

    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=cfg.batch_size,
        max_steps=steps,
        learning_rate=cfg.lr,
        lr_scheduler_type="cosine",
        warmup_steps=1,
        weight_decay=0.1,
        adam_beta2=0.95,
        max_grad_norm=1.0,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        bf16=bf16,
        disable_tqdm=True,
        logging_steps=10**6,
        dataloader_num_workers=0,
        seed=0,
    )
    Trainer(model=model, args=args, train_dataset=DS(), callbacks=[Clock()]).train()
    # From the first step's start to the last step's end, as our loop times its own steps.
    return (len(stamps) - 1) * cfg.batch_size * cfg.seq_len / (stamps[-1] - stamps[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="nano,micro,small")
    p.add_argument("--steps", type=int, default=4, help="optimizer steps per measurement")
    p.add_argument("--repeats", type=int, default=1, help="best of N runs (the machine may be shared)")
    p.add_argument("--trainer-size", default="micro", help="size for the Trainer comparison ('' to skip)")
    p.add_argument(
        "--variants",
        default="default",
        help="comma list of: default (resolved defaults), eager (fp32, no compile), compiled (fp32 + compile)",
    )
    a = p.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fast bf16 units: {fast_bf16()}")
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(f"matmul peak: fp32 {peak32:.1f} GFLOP/s, bf16 {peak16:.1f} GFLOP/s")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_data(tmp / "data")
        runs = 0

        def best_of(fn):
            nonlocal runs
            results = []
            for _ in range(a.repeats):
                runs += 1
                results.append(fn(tmp / f"run-{runs}"))
            return max(results, key=lambda r: r["tokens_per_s"])

        for size in [s for s in a.sizes.split(",") if s]:
            choices = {
                "default": {},
                "eager": {"compile": False, "bf16": False},
                "compiled": {"compile": True, "bf16": False},
            }
            for name in a.variants.split(","):
                kw = choices[name]
                r = best_of(lambda out: ours(data, out, size, a.steps, **kw))  # noqa: B023 - called at once
                cfg = r["cfg"]
                gflops = r["tokens_per_s"] * flops_per_token(size, r["parameters"], cfg.seq_len) / 1e9
                peak = peak16 if cfg.bf16 else peak32
                print(
                    f"RESULT {size:5s} {name:8s} params {r['parameters'] / 1e6:6.2f}M  compile={cfg.compile!s:5s} "
                    f"bf16={cfg.bf16!s:5s}  {r['tokens_per_s']:7.0f} tokens/s  {gflops:6.1f} GFLOP/s  "
                    f"MFU {100 * gflops / peak:5.1f}% of the {'bf16' if cfg.bf16 else 'fp32'} peak "
                    f"({100 * gflops / peak16:.1f}% of bf16, {100 * gflops / peak32:.1f}% of fp32)"
                )
        if a.trainer_size:
            # Alternate the two loops so that load from other processes hits both alike; best of each.
            size, ours_best, hf_best, hf_eager_best = a.trainer_size, 0.0, 0.0, 0.0
            bf16 = resolve(PretrainConfig(size=size)).bf16
            for r in range(a.repeats):
                o = ours(data, tmp / f"cmp-ours-{r}", size, a.steps)["tokens_per_s"]
                h = trainer(data, tmp / f"cmp-hf-{r}", size, a.steps, bf16)
                he = trainer(data, tmp / f"cmp-hf-eager-{r}", size, a.steps, bf16, attention="eager")
                ours_best, hf_best, hf_eager_best = max(ours_best, o), max(hf_best, h), max(hf_eager_best, he)
                print(
                    f"round {r}: ours {o:.0f} tokens/s, HF Trainer {h:.0f} tokens/s, "
                    f"HF Trainer with eager attention {he:.0f} tokens/s"
                )
            print(
                f"RESULT {size} ours (defaults) {ours_best:.0f} tokens/s, HF Trainer (its defaults, no compile, "
                f"bf16={bf16}) {hf_best:.0f} tokens/s: ratio {ours_best / hf_best:.2f}x"
            )
            print(
                f"RESULT {size} against HF Trainer with eager attention (its fastest kernel here) "
                f"{hf_eager_best:.0f} tokens/s: ratio {ours_best / hf_eager_best:.2f}x"
            )


if __name__ == "__main__":
    main()
