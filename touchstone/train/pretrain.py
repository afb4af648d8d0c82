"""Pretraining: a GPT-2 architecture language model on prepared token shards, on a CPU or a GPU.

    touchstone pretrain --data data/orig --out models/gen-0000 --size micro --minutes 60
    touchstone pretrain --out /tmp/smoke --size nano --tokens 20000      # seconds; embedded corpus
    touchstone pretrain --data data/orig --out models/gen-0000 --resume   # after an interruption
    torchrun --nproc_per_node 4 -m touchstone pretrain --data data/orig --out models/gen-0000 --size small
    accelerate launch --multi_gpu --num_processes 4 -m touchstone pretrain --data data/orig --out models/gen-0000

Guaranteed:
- the output directory appears only when training finished: a plain Hugging Face model directory
  (`save_pretrained`, safetensors) with the tokenizer, `recipe.yaml` (the resolved config, the data,
  the trainer version and git commit), `report.md`, and MANIFEST.json written last. It loads with
  `AutoModelForCausalLM.from_pretrained(dir)` and `pipeline("text-generation", model=dir)`;
- while training, state lives beside it in `.OUT.run/`: an atomic checkpoint (model, optimizer,
  schedule, step, data position, RNG state) every `eval_every` steps and at least every 10 minutes.
  `--resume` continues exactly where that checkpoint stopped: in fp32 without compile, an interrupted
  and resumed run ends with the same weights as an uninterrupted one. A corrupt or half-written
  checkpoint is a one-line error, never a crash in the middle of training;
- the same seed, data and config give the same model (fp32, no compile, same thread count).

Device: a GPU when torch sees one (`--device cpu` to stay on the CPU), with bf16 autocast where the
GPU has it; the CPU path is the one this project is built and measured on.

Data parallel: under `torchrun` or `accelerate launch` (WORLD_SIZE > 1) every process joins a process
group (`touchstone.distributed`) and wraps the model in DistributedDataParallel. The per-process
batch stays `batch_size`: each optimizer step draws one global batch of `batch_size * world_size`
windows per micro-batch from the shared sampler and rank r trains on the r-th share, so a step sees
`batch_size * grad_accum * world_size` sequences and `--tokens` is reached in proportionally fewer
steps; DDP averages the gradients, which makes a step equal, up to float rounding, to one process with
`batch_size * world_size`. Rank 0 alone validates, prints, checkpoints and saves the model; the others
wait for it in the next gradient all-reduce and at a final barrier. The step count of a `--minutes`
budget and the stop at the deadline are rank 0's decisions, broadcast, so every rank runs the same
number of steps. The sampler position is the same on every rank, so rank 0's checkpoint resumes all of
them; a checkpoint resumes only with the number of processes that wrote it. The loss on the progress
bar is rank 0's share of the batch. (`--multi_gpu` is accelerate's name for its torchrun launcher; it
works on CPUs too.)

Time budgets: under `--minutes` the run trains until the deadline and the learning-rate schedule
follows the fraction of the time spent (`lr_at`), so a machine that is busy for a while costs steps
but never ends a run early (a step count planned from timed warm-up passes did; docs/training.md).
With `--tokens` as well, the run stops at whichever comes first, the schedule at the larger of the two
fractions.

Not guaranteed: bitwise equality under bf16 autocast or torch.compile across resumes (kernels may be
chosen differently), and with `--minutes` the number of steps depends on the machine's speed; a
resumed time-budgeted run is not bitwise equal to an uninterrupted one (its schedule follows the
clock). A `--tokens` budget is exact.

Why a plain loop rather than transformers' `Trainer`: on 2 CPU cores the Trainer's per-step
machinery (callbacks, dataloader workers, logging, accelerate wrapping) costs a measurable share of
the step (`benchmarks/bench_pretrain.py` prints the ratio), and its resume replays the data loader
rather than storing the exact window position. `PretrainRun` is short enough to read in one sitting.
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from touchstone.config import Config, field, from_dict, to_dict
from touchstone.distributed import barrier, launched, process_group
from touchstone.errors import UserError
from touchstone.files import MANIFEST, check_output
from touchstone.generate import sample
from touchstone.model import DEPTHS, context_length, make_config, size_defaults
from touchstone.tokenizer import load_tokenizer
from touchstone.train.checkpoint import checkpoint_device, load_checkpoint, run_dir_of
from touchstone.train.common import (
    default_bf16,
    default_device,
    save_model_dir,
    trainer,
)
from touchstone.train.pretrain_run import PretrainRun
from touchstone.train.tokens import data_dir_of

DEFAULT_MINUTES = 10.0


@dataclass
class PretrainConfig(Config):
    size: str = field(
        "micro",
        help="nano | micro | small: the one size dial (shape, lr, batch, context follow)",
        choices=tuple(DEPTHS),
    )
    minutes: float | None = field(
        None, help="wall-clock training budget in minutes (10 if --tokens is not given)", above=0
    )
    tokens: int | None = field(None, help="token budget: stop after this many training tokens", min=1)
    lr: float | None = field(None, help="peak learning rate (default: from the size)", above=0)
    batch_size: int | None = field(None, help="sequences per micro-batch (default: from the size)", min=1)
    grad_accum: int = field(
        1, help="micro-batches per optimizer step (effective batch = batch_size * grad_accum)", min=1
    )
    seq_len: int | None = field(None, help="tokens per sequence (default: from the size; capped by the model)", min=1)
    warmup: int | None = field(
        None, help="linear warmup steps before the cosine decay (default: 5% of the budget, <= 200 steps)", min=0
    )
    eval_every: int = field(50, help="validate and checkpoint every N optimizer steps", min=1)
    seed: int = field(0, help="seed for initialization and data order")
    compile: bool | None = field(None, help="torch.compile the loss (default: with bf16, micro and larger)")
    bf16: bool | None = field(
        None, help="bf16 autocast (default: on a GPU with bf16, or a CPU with bf16 matrix units, AMX/AVX512-BF16)"
    )
    device: str | None = field(
        None, help="cpu | cuda (default: cuda when a GPU is visible, else cpu)", choices=("cpu", "cuda")
    )
    tensorboard: bool = field(False, help="write TensorBoard logs (copied into the model directory)")
    init_from: str | None = field(None, help="local HF causal-LM directory to continue from (uses its tokenizer)")
    tokenizer: str | None = field(None, help="tokenizer directory (default: the init model's, else the data's)")


def resolve(cfg: PretrainConfig) -> PretrainConfig:
    """Fill the size-derived defaults (lr, batch_size, seq_len, compile, bf16, device)."""
    import torch

    s = size_defaults(cfg.size)
    device = cfg.device or default_device()
    if device not in ("cpu", "cuda"):
        raise UserError(f"config: key 'device' must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("config: key 'device' is cuda, but no GPU is visible to torch")
    bf16 = cfg.bf16 if cfg.bf16 is not None else default_bf16(device)
    if cfg.grad_accum < 1 or cfg.eval_every < 1:
        raise UserError("config: key 'grad_accum' and 'eval_every' must be at least 1")
    if (cfg.minutes is not None and cfg.minutes <= 0) or (cfg.tokens is not None and cfg.tokens <= 0):
        raise UserError("config: key 'minutes'/'tokens': the budget must be positive")
    return replace(
        cfg,
        lr=cfg.lr if cfg.lr is not None else s["lr"],
        batch_size=cfg.batch_size or s["batch_size"],
        seq_len=cfg.seq_len or s["seq_len"],
        minutes=cfg.minutes if cfg.minutes is not None or cfg.tokens is not None else DEFAULT_MINUTES,
        bf16=bf16,
        device=device,
        # Compile pays for itself where it fuses bf16 casts around matrix-unit matmuls; in fp32 it gained
        # nothing and cost a minute of compilation (benchmarks/bench_pretrain.py, docs/training.md).
        compile=cfg.compile if cfg.compile is not None else bf16 and cfg.size != "nano",
    )


def initial_model(cfg: PretrainConfig, vocab_size: int, eos_id: int):
    """The model before training: `init_from`'s weights, or a fresh GPT-2 of `cfg.size` seeded by cfg.seed."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel

    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        if not (Path(cfg.init_from) / "config.json").is_file():
            raise UserError(f"{cfg.init_from}: not a model directory (no config.json)")
        try:
            return AutoModelForCausalLM.from_pretrained(cfg.init_from, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise UserError(f"{cfg.init_from}: cannot load model ({str(e).splitlines()[0]})") from None
    padded = -(-vocab_size // 64) * 64  # a multiple of 64 keeps the output matmul on fast kernels
    return GPT2LMHeadModel(
        make_config(cfg.size, padded, n_positions=cfg.seq_len, bos_token_id=eos_id, eos_token_id=eos_id)
    )


# -------------------------------------------------------------------------------------------- entry
def pretrain(
    data: str | Path | None,
    out: str | Path,
    cfg: PretrainConfig | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train a model on `data` (a prepared directory; None: the embedded corpus) and save it to `out`.

    Under a distributed launcher (WORLD_SIZE > 1) every process calls this; see the module docstring.
    """
    if not launched():
        return train_and_save(data, out, cfg, resume, 0, 1, overwrite)
    with process_group(run_device(cfg, out, resume) == "cuda", "pretrain") as (rank, world):
        out = train_and_save(data, out, cfg, resume, rank, world, overwrite)
        barrier()  # the other ranks return only once rank 0 has saved the model
        return out


def run_device(cfg: PretrainConfig | None, out, resume: bool) -> str:
    """The device a run will train on, known before its process group starts: a resumed run's is its
    checkpoint's (the checkpoint's config wins, see `train_and_save`), a new run's is the config's or the default."""
    device = checkpoint_device(run_dir_of(out)) if resume else None
    return device or (cfg.device if cfg is not None and cfg.device else default_device())


def train_and_save(
    data, out, cfg: PretrainConfig | None, resume: bool, rank: int, world: int, overwrite: bool = False
) -> Path:
    """This process's part of a run: rank 0 trains, validates, checkpoints and saves; the others train."""
    out = Path(out)
    run_dir = run_dir_of(out)
    if (out / MANIFEST).exists() and resume:
        print(f"{out}: already finished; nothing to resume", file=sys.stderr)
        return out
    check_output(out, overwrite=overwrite, directory=True, kind="model")
    state = None
    if resume:
        state = load_checkpoint(run_dir)
        # The checkpoint's resolved config wins: a resumed run must be the same run.
        cfg = from_dict(PretrainConfig, state["config"], where=f"{run_dir}/checkpoint")
        data = data if data is not None else state["data"]
    else:
        cfg = resolve(cfg or PretrainConfig())
    data_dir = data_dir_of(data)
    run_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = load_tokenizer(cfg.tokenizer or cfg.init_from or data_dir / "tokenizer")
    model, device, cfg = build_model(cfg, tokenizer, run_dir)
    run = PretrainRun(cfg, model, tokenizer, device, data_dir, run_dir, state, rank, world)
    run.train()
    if rank != 0:
        return out
    stats = run.finish()
    save_model_dir(
        out,
        model,
        tokenizer,
        recipe(run, stats),
        report(run, stats),
        {"stage": "pretrain", **stats},
        overwrite,
        tensorboard=run_dir / "tensorboard",
    )
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def build_model(cfg: PretrainConfig, tokenizer, run_dir: Path):
    """(model, device, cfg): the model before training, the device it trains on, and the config with
    seq_len capped by the model's context."""
    import torch

    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{run_dir}/checkpoint: the run trained on a GPU, and none is visible to torch")
    # Under torchrun, `process_group` has already made this process's own GPU the current one.
    device = torch.device("cuda", torch.cuda.current_device()) if cfg.device == "cuda" else torch.device("cpu")
    model = initial_model(cfg, len(tokenizer), eos)
    max_pos = context_length(model, unknown=None)
    if max_pos and cfg.seq_len > max_pos:
        cfg = replace(cfg, seq_len=max_pos)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model, device, cfg


# ------------------------------------------------------------------------------------------- output
def recipe(run: PretrainRun, stats: dict) -> dict:
    """recipe.yaml of the finished run: its resolved config, the model, the data and the trainer."""
    return {
        "stage": "pretrain",
        "config": to_dict(run.cfg),
        "model": {"type": run.model.config.model_type, "parameters": stats["parameters"]},
        "data": {"path": str(run.data_dir.resolve()), **run.data_id},
        "trainer": trainer(**({"world_size": stats["world_size"]} if "world_size" in stats else {})),
    }


def report(run: PretrainRun, stats: dict) -> str:
    """report.md of the finished run: its figures, the validation curve and a sample of its text."""
    cfg = run.cfg
    run.model.eval()
    text = sample(
        run.model, run.tokenizer, "The", max_new_tokens=40, temperature=0.8, top_k=50, top_p=0.95, n=1, seed=0
    )[0]
    ppl = f"{stats['val_perplexity']:.2f}" if stats["val_perplexity"] is not None else "n/a (no validation split)"
    loss = f"{stats['val_loss']:.4f}" if stats["val_loss"] is not None else "n/a"
    curve = "\n".join(
        f"| {h['step']} | {h['tokens']:,} | {h['val_loss']:.4f} | {math.exp(h['val_loss']):.2f} |"
        for h in run.history[-12:]
    )
    return f"""# Pretraining report

| | |
|---|---|
| size | {cfg.size if not cfg.init_from else f"from {cfg.init_from}"} |
| parameters | {stats["parameters"]:,} |
| tokens | {stats["tokens"]:,} ({stats["steps"]} steps) |
| tokens/s | {stats["tokens_per_s"]} |
| wall time | {stats["minutes"]} min |
| final val loss | {loss} |
| final val perplexity | {ppl} |

## Validation

| step | tokens | loss | perplexity |
|---|---|---|---|
{curve}

## Sample (temperature 0.8, top-k 50, top-p 0.95)

```
The{text}
```
"""
