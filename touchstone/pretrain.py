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
group, gloo on CPUs and nccl on GPUs (rank r on GPU LOCAL_RANK), and wraps the model in
DistributedDataParallel. The per-process batch stays `batch_size`: each optimizer step
draws one global batch of `batch_size * world_size` windows per micro-batch from the shared sampler and
rank r trains on the r-th share, so a step sees `batch_size * grad_accum * world_size` sequences and
`--tokens` is reached in proportionally fewer steps; DDP averages the gradients, which makes a step
equal, up to float rounding, to one process with `batch_size * world_size`. Rank 0 alone validates,
prints, checkpoints and saves the model; the others wait for it in the next gradient all-reduce and at
a final barrier. The step count of a `--minutes` budget and the stop at the deadline are rank 0's
decisions, broadcast, so every rank runs the same number of steps. The sampler position is the same
on every rank, so rank 0's checkpoint resumes all of them; a checkpoint resumes only with the number
of processes that wrote it. The loss on the progress bar is rank 0's share of the batch.
(`--multi_gpu` is accelerate's name for its torchrun launcher; it works on CPUs too.)

Time budgets: under `--minutes` the run trains until the deadline and the learning-rate schedule
follows the fraction of the time spent (`lr_at`), so a machine that is busy for a while costs steps
but never ends a run early. (Turning the budget into a step count from three timed warm-up passes
did: on a machine busy for a moment at the start, a 10-minute run planned 84 steps and stopped after
about 4 minutes, where quiet runs take 724-832.) With `--tokens` as well, the run stops at whichever
comes first, the schedule at the larger of the two fractions.

Not guaranteed: bitwise equality under bf16 autocast or torch.compile across resumes (kernels may be
chosen differently), and with `--minutes` the number of steps depends on the machine's speed; a
resumed time-budgeted run is not bitwise equal to an uninterrupted one (its schedule follows the
clock). A `--tokens` budget is exact.

Why a plain loop rather than transformers' `Trainer`: on 2 CPU cores the Trainer's per-step
machinery (callbacks, dataloader workers, logging, accelerate wrapping) costs a measurable share of
the step (`benchmarks/bench_pretrain.py` prints the ratio), and its resume replays the data loader
rather than storing the exact window position. The loop below is short enough to read in one sitting.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

from touchstone.config import Config, field, from_dict, to_dict
from touchstone.errors import UserError
from touchstone.model import DEPTHS
from touchstone.files import (MANIFEST, atomic_dir, atomic_file, check_manifest, check_output, write_manifest,
                              write_text_atomic)

EVAL_BATCHES = 8  # validation windows = EVAL_BATCHES * batch_size, spread evenly over the val split
CHECKPOINT_SECONDS = 600  # also checkpoint at least this often, whatever eval_every says
DEFAULT_MINUTES = 10.0
# Warmup when the config gives none: the first 5% of the budget, at most 200 steps.
WARMUP_FRACTION, MAX_WARMUP = 0.05, 200


@dataclass
class PretrainConfig(Config):
    size: str = field("micro", help="nano | micro | small: the one size dial (shape, lr, batch, context follow)", choices=tuple(DEPTHS))
    minutes: float | None = field(None, help="wall-clock training budget in minutes (10 if --tokens is not given)", above=0)
    tokens: int | None = field(None, help="token budget: stop after this many training tokens", min=1)
    lr: float | None = field(None, help="peak learning rate (default: from the size)", above=0)
    batch_size: int | None = field(None, help="sequences per micro-batch (default: from the size)", min=1)
    grad_accum: int = field(1, help="micro-batches per optimizer step (effective batch = batch_size * grad_accum)", min=1)
    seq_len: int | None = field(None, help="tokens per sequence (default: from the size; capped by the model)", min=1)
    warmup: int | None = field(None, help="linear warmup steps before the cosine decay (default: 5% of the budget, <= 200 steps)", min=0)
    eval_every: int = field(50, help="validate and checkpoint every N optimizer steps", min=1)
    seed: int = field(0, help="seed for initialization and data order")
    compile: bool | None = field(None, help="torch.compile the loss (default: with bf16, micro and larger)")
    bf16: bool | None = field(None, help="bf16 autocast (default: on a GPU with bf16, or a CPU with bf16 matrix units, AMX/AVX512-BF16)")
    device: str | None = field(None, help="cpu | cuda (default: cuda when a GPU is visible, else cpu)", choices=("cpu", "cuda"))
    tensorboard: bool = field(False, help="write TensorBoard logs (copied into the model directory)")
    init_from: str | None = field(None, help="local HF causal-LM directory to continue from (uses its tokenizer)")
    tokenizer: str | None = field(None, help="tokenizer directory (default: the init model's, else the data's)")


# ------------------------------------------------------------------------------------------ helpers
def fast_bf16() -> bool:
    """True where bf16 matmuls run on matrix units; elsewhere bf16 is emulated and far slower than fp32."""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def default_bf16(device: str) -> bool:
    """bf16 autocast where it runs natively: a GPU that has it (Ampere and later), or a CPU's matrix units."""
    import torch

    return torch.cuda.is_bf16_supported() if device == "cuda" else fast_bf16()


def default_cache() -> Path:
    if os.environ.get("TOUCHSTONE_CACHE"):
        return Path(os.environ["TOUCHSTONE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "touchstone"


def default_data() -> Path:
    """The embedded default corpus, prepared once into the cache and reused."""
    # "-2": prepared with the digit-splitting tokenizer trained on the worlds' text too; a cache of the
    # earlier tokenizer is left alone and not reused.
    path = default_cache() / "default-corpus-2"
    if not (path / MANIFEST).exists():
        from touchstone.corpus import default_sources
        from touchstone.data import PrepareConfig, prepare

        print(f"preparing the embedded default corpus into {path} (once)", file=sys.stderr)
        prepare(default_sources(), path, PrepareConfig())
    return path


def git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.strip() or None


def _load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    if not Path(path).is_dir():
        raise UserError(f"{path}: no such tokenizer directory")
    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: cannot load tokenizer ({str(e).splitlines()[0]})") from None


class Windows:
    """One split of token ids (np.memmap) read as non-overlapping windows of seq_len + 1 tokens."""

    def __init__(self, path: Path, seq_len: int, dtype="uint16"):
        import numpy as np

        if not path.is_file():
            raise UserError(f"{path}: no such token file")
        if path.stat().st_size == 0:
            self.ids = np.zeros(0, dtype=dtype)
        else:
            # memmap: the split is paged in on demand, never loaded whole (nanoGPT does the same).
            self.ids = np.memmap(path, dtype=dtype, mode="r")
        self.path, self.seq_len = path, seq_len
        self.n = max(0, (len(self.ids) - 1) // seq_len)

    def batch(self, indices):
        import numpy as np
        import torch

        t = self.seq_len
        rows = np.stack([np.asarray(self.ids[i * t: i * t + t + 1], dtype=np.int64) for i in indices])
        rows = torch.from_numpy(rows)
        return rows[:, :-1], rows[:, 1:]


class Sampler:
    """Window order: a fresh permutation per epoch from (seed, epoch); the position is two integers."""

    def __init__(self, n: int, seed: int, epoch: int = 0, cursor: int = 0):
        self.n, self.seed, self.epoch, self.cursor = n, seed, epoch, cursor
        self._perm = None

    def take(self, k: int) -> list[int]:
        import numpy as np

        out = []
        while len(out) < k:
            if self._perm is None:
                self._perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
            out.append(int(self._perm[self.cursor]))
            self.cursor += 1
            if self.cursor == self.n:
                self.epoch, self.cursor, self._perm = self.epoch + 1, 0, None
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor}


def _vocab_equal(a, b) -> bool:
    return a.get_vocab() == b.get_vocab()


def token_files(data_dir: Path, tokenizer, run_dir: Path) -> tuple[Path, Path, str]:
    """The train/val token files for `tokenizer`: the data's own shards, or a re-tokenized copy."""
    import numpy as np

    tokens = data_dir / "tokens"
    if not (tokens / "train.bin").is_file():
        raise UserError(f"{data_dir}: not a prepared data directory (no tokens/train.bin); run `touchstone data prepare`")
    own = data_dir / "tokenizer"
    if own.is_dir() and _vocab_equal(_load_tokenizer(own), tokenizer):
        return tokens / "train.bin", tokens / "val.bin", "uint16"
    # A different tokenizer (--init-from a foreign model, or --tokenizer): re-tokenize the cleaned text
    # once into the run directory; ids go to uint32 when the vocabulary does not fit uint16.
    from touchstone.files import read_jsonl

    dtype = "uint16" if len(tokenizer) <= 65536 else "uint32"
    vocab_id = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()[:12]
    out = run_dir / f"tokens-{vocab_id}"
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(f"{tokenizer.name_or_path}: tokenizer has no end-of-text token to separate documents")
    for split in ("train", "val"):
        src, dst = data_dir / "text" / f"{split}.jsonl.gz", out / f"{split}.bin"
        if dst.exists():
            continue
        if not src.is_file():
            raise UserError(f"{src}: missing; needed to re-tokenize the data for {tokenizer.name_or_path}")
        with atomic_file(dst, "wb") as f:
            for lineno, rec in read_jsonl(src):
                if not isinstance(rec.get("text"), str):
                    raise UserError(f"{src}:{lineno}: missing key 'text'")
                ids = tokenizer(rec["text"], add_special_tokens=False)["input_ids"] + [eos]
                f.write(np.asarray(ids, dtype=dtype).tobytes())
    return out / "train.bin", out / "val.bin", dtype


def clock() -> float:
    """Seconds, for time budgets (one name, so tests can give training a clock of their own)."""
    return time.monotonic()


def lr_at(step: int, peak: float, warmup: int | None, max_steps: int | None, spent: float | None = None) -> float:
    """Linear warmup to `peak`, then cosine decay to peak/10 at the end of the budget.

    A step budget alone (`spent` None): warmup over `warmup` steps, decay from there to `max_steps`.
    A time budget: `spent` is the fraction of it used (0..1, or the larger of the time and step
    fractions when there are both), and the decay follows it; `warmup` None warms up over the first
    `WARMUP_FRACTION` of the time or `MAX_WARMUP` steps, whichever ends first."""
    if spent is None:
        if step < warmup:
            return peak * (step + 1) / warmup
        progress = (step - warmup) / max(1, max_steps - warmup)
    else:
        ramp = (step + 1) / warmup if warmup else max((step + 1) / MAX_WARMUP, spent / WARMUP_FRACTION)
        if ramp < 1:
            return peak * ramp
        progress = spent
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_optimizer(model, lr: float, weight_decay: float = 0.1):
    """AdamW; weight decay only on matrices (not biases or LayerNorm gains), as in GPT-2 practice.

    The fused kernel matters on a CPU: for micro (14M parameters) one step took 0.24 s fused against
    6.7 s with the default per-tensor loop, about half of a whole training step.
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)


def lm_loss(model, x, y):
    import torch.nn.functional as F

    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().flatten(0, 1), y.flatten())


class LossFn:
    """`lm_loss`, compiled when asked; if compilation fails, says so in one line and runs eagerly."""

    def __init__(self, model, compile: bool):
        import functools

        import torch

        self.eager = functools.partial(lm_loss, model)
        self.fn = torch.compile(self.eager) if compile else self.eager
        self.compiled = compile
        self.device = next(model.parameters()).device

    def forward_backward(self, x, y, scale: float = 1.0) -> float:
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        try:
            loss = self.fn(x, y)
            (loss * scale).backward()
        except Exception as e:  # noqa: BLE001 - any compiler failure falls back to eager
            if not self.compiled:
                raise
            print(f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); running eagerly",
                  file=sys.stderr)
            self.fn, self.compiled = self.eager, False
            loss = self.fn(x, y)
            (loss * scale).backward()
        return float(loss.detach())


def accumulate(loss_fn: LossFn, micro_batches, n: int, bf16: bool, no_sync=None) -> float:
    """Add the gradient of the mean loss over `n` equal micro-batches to .grad; return that mean loss.

    Each micro-batch's loss is scaled by 1/n, so the summed gradient equals one batch n times larger.
    `no_sync` (DDP's) skips the gradient all-reduce on all but the last micro-batch.
    """
    import contextlib

    import torch

    total = 0.0
    for i, (x, y) in enumerate(micro_batches):
        sync = no_sync() if no_sync is not None and i < n - 1 else contextlib.nullcontext()
        with sync, torch.autocast(loss_fn.device.type, dtype=torch.bfloat16, enabled=bf16):
            total += loss_fn.forward_backward(x, y, 1.0 / n)
    return total / n


def initial_model(cfg: PretrainConfig, vocab_size: int, eos_id: int):
    """The model before training: `init_from`'s weights, or a fresh GPT-2 of `cfg.size` seeded by cfg.seed."""
    import torch
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel

    from touchstone.model import make_config

    torch.manual_seed(cfg.seed)
    if cfg.init_from:
        if not (Path(cfg.init_from) / "config.json").is_file():
            raise UserError(f"{cfg.init_from}: not a model directory (no config.json)")
        try:
            return AutoModelForCausalLM.from_pretrained(cfg.init_from, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise UserError(f"{cfg.init_from}: cannot load model ({str(e).splitlines()[0]})") from None
    padded = -(-vocab_size // 64) * 64  # a multiple of 64 keeps the output matmul on fast kernels
    return GPT2LMHeadModel(make_config(cfg.size, padded, n_positions=cfg.seq_len, bos_token_id=eos_id,
                                       eos_token_id=eos_id))


def resolve(cfg: PretrainConfig) -> PretrainConfig:
    """Fill the size-derived defaults (lr, batch_size, seq_len, compile, bf16, device)."""
    import torch

    from touchstone.model import size_defaults

    s = size_defaults(cfg.size)
    device = cfg.device or default_device()
    if device not in ("cpu", "cuda"):
        raise UserError(f"config: key 'device' must be cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("config: key 'device' is cuda, but no GPU is visible to torch")
    bf16 = cfg.bf16 if cfg.bf16 is not None else default_bf16(device)
    if cfg.grad_accum < 1 or cfg.eval_every < 1:
        raise UserError("config: key 'grad_accum' and 'eval_every' must be at least 1")
    if cfg.minutes is not None and cfg.minutes <= 0 or cfg.tokens is not None and cfg.tokens <= 0:
        raise UserError("config: key 'minutes'/'tokens': the budget must be positive")
    return replace(
        cfg,
        lr=cfg.lr if cfg.lr is not None else s["lr"],
        batch_size=cfg.batch_size or s["batch_size"],
        seq_len=cfg.seq_len or s["seq_len"],
        minutes=cfg.minutes if cfg.minutes is not None or cfg.tokens is not None else DEFAULT_MINUTES,
        bf16=bf16,
        device=device,
        # Measured (benchmarks/bench_pretrain.py): compile pays for itself where it fuses bf16 casts
        # around AMX matmuls; in fp32 on AVX2 it gained nothing and cost a minute of compilation.
        compile=cfg.compile if cfg.compile is not None else bf16 and cfg.size != "nano",
    )


def evaluate(model, val: Windows, indices, batch_size: int, bf16: bool) -> float | None:
    """Mean next-token loss (nats) over the fixed validation windows; None if the split is too short."""
    import torch

    if not len(indices):
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(indices), batch_size):
            x, y = (t.to(device) for t in val.batch(indices[i: i + batch_size]))
            total += float(lm_loss(model, x, y)) * len(x)
    model.train(was_training)
    return total / len(indices)


# -------------------------------------------------------------------------------------- checkpoints
def save_checkpoint(run_dir: Path, state: dict) -> None:
    """Write the whole training state atomically; the previous checkpoint stays valid until the rename."""
    import torch

    with atomic_dir(run_dir / "checkpoint", overwrite=True) as stage:
        torch.save(state, stage / "state.pt")
        write_manifest(stage, {"kind": "pretrain-checkpoint", "step": state["step"],
                               "device": state["config"].get("device") or "cpu"})


def load_checkpoint(run_dir: Path) -> dict:
    import pickle
    import zipfile

    import torch

    path = run_dir / "checkpoint"
    if not path.is_dir():
        raise UserError(f"{path}: nothing to resume (no checkpoint); run without --resume")
    check_manifest(path)  # a half-written or altered checkpoint fails here, naming the file
    try:
        return torch.load(path / "state.pt", weights_only=True, map_location="cpu")
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as e:
        raise UserError(f"{path / 'state.pt'}: unreadable checkpoint ({str(e).splitlines()[0][:200]})") from None


def _data_id(path: Path) -> dict:
    return {"file": str(path), "bytes": path.stat().st_size}


# -------------------------------------------------------------------------------------------- train
def pretrain(data: str | Path | None, out: str | Path, cfg: PretrainConfig | None = None, resume: bool = False,
             overwrite: bool = False) -> Path:
    """Train a model on `data` (a prepared directory; None: the embedded corpus) and save it to `out`.

    Under a distributed launcher (WORLD_SIZE > 1) every process calls this; see the module docstring.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _pretrain(data, out, cfg, resume, 0, 1, overwrite)
    import torch
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        # One GPU per process where the run is on GPUs (nccl), else CPU tensors (gloo).
        on_gpu = run_device(cfg, out, resume) == "cuda"
        if on_gpu:
            local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
            if local_rank >= gpus:
                raise UserError(f"pretrain: process {local_rank} of this node has no GPU of its own ({gpus} visible); "
                                f"start at most {gpus} per node, or add --device cpu")
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if on_gpu else "gloo")
    try:
        out = _pretrain(data, out, cfg, resume, dist.get_rank(), dist.get_world_size(), overwrite)
        dist.barrier()  # the other ranks return only once rank 0 has saved the model
        return out
    finally:
        if owned:
            dist.destroy_process_group()


def run_device(cfg: PretrainConfig | None, out, resume: bool) -> str:
    """The device a run will train on, known before its process group starts: a resumed run's is its
    checkpoint's (the checkpoint's config wins, see `_pretrain`), a new run's is the config's or the default."""
    manifest = Path(out).parent / f".{Path(out).name}.run" / "checkpoint" / MANIFEST
    if resume and manifest.is_file():
        try:
            return json.loads(manifest.read_text()).get("device") or "cpu"  # older checkpoints: CPU runs
        except (OSError, ValueError):
            pass  # `_pretrain` reports the broken checkpoint in one line
    return cfg.device if cfg is not None and cfg.device else default_device()


def _broadcast(value: int) -> int:
    """Rank 0's `value`, on every rank."""
    import torch
    import torch.distributed as dist

    # nccl moves only GPU tensors; gloo, CPU ones.
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return int(t)


def _pretrain(data, out, cfg: PretrainConfig | None, resume: bool, rank: int, world: int,
              overwrite: bool = False) -> Path:
    import numpy as np
    import torch
    from tqdm import tqdm

    from touchstone.model import count_parameters

    out = Path(out)
    run_dir = out.parent / f".{out.name}.run"
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
    data_dir = Path(data) if data is not None else default_data()
    if not data_dir.is_dir():
        raise UserError(f"{data_dir}: no such data directory" if not data_dir.exists()
                        else f"{data_dir}: not a directory (expected a prepared data directory)")
    run_dir.mkdir(parents=True, exist_ok=True)

    tok_dir = cfg.tokenizer or cfg.init_from or data_dir / "tokenizer"
    tokenizer = _load_tokenizer(tok_dir)
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{run_dir}/checkpoint: the run trained on a GPU, and none is visible to torch")
    # Under torchrun, `pretrain` has already made this process's own GPU the current one.
    device = torch.device("cuda", torch.cuda.current_device()) if cfg.device == "cuda" else torch.device("cpu")
    model = initial_model(cfg, len(tokenizer), eos)
    max_pos = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)
    if max_pos and cfg.seq_len > max_pos:
        cfg = replace(cfg, seq_len=max_pos)
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    train_path, val_path, dtype = token_files(data_dir, tokenizer, run_dir)
    train, val = Windows(train_path, cfg.seq_len, dtype), Windows(val_path, cfg.seq_len, dtype)
    if train.n == 0:
        raise UserError(f"{train_path}: fewer than seq_len + 1 = {cfg.seq_len + 1} tokens to train on")
    vocab = model.get_input_embeddings().num_embeddings
    if int(np.max(train.ids)) >= vocab:
        raise UserError(f"{train_path}: token id {int(np.max(train.ids))} >= the model's vocabulary ({vocab}); "
                        f"the tokens were made with another tokenizer")
    data_id = _data_id(train_path)
    val_idx = np.unique(np.linspace(0, val.n - 1, min(val.n, EVAL_BATCHES * cfg.batch_size)).astype(int)) if val.n else []

    if state is None and rank == 0 and (run_dir / "checkpoint").exists():
        # Only now, with the new run's settings and data checked, is the old state given up.
        print(f"discarding the checkpoint of an interrupted run in {run_dir} (use --resume to continue it)",
              file=sys.stderr)
        shutil.rmtree(run_dir / "checkpoint")

    model.to(device)
    model.train()
    if cfg.compile and device.type == "cpu" and cfg.seq_len <= 512 and hasattr(model, "set_attn_implementation"):
        # Attention as plain matmuls + softmax, which the compiler fuses, instead of the CPU
        # flash-attention kernel (an opaque call): for micro on 2 cores a compiled step ran 15% faster
        # (3,241 against 2,817 tokens/s; the flash backward alone was a quarter of the step). The
        # T x T scores this materializes stay small up to 512 tokens. Same mathematics; the saved
        # config does not carry the choice, so the model loads with the library's default.
        model.set_attn_implementation("eager")
    opt = make_optimizer(model, cfg.lr)
    sampler = Sampler(train.n, cfg.seed)
    step, tokens_seen, elapsed0, history = 0, 0, 0.0, []
    max_steps = None
    if state is not None:
        if state["data_id"]["bytes"] != data_id["bytes"]:
            raise UserError(f"{train_path}: differs from the data the checkpoint was trained on ({state['data_id']['file']})")
        if state.get("world_size", 1) != world:
            raise UserError(f"{run_dir}/checkpoint: written by {state.get('world_size', 1)} processes; "
                            f"resume it with as many (this run has {world})")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sampler = Sampler(train.n, cfg.seed, **state["position"])
        step, tokens_seen, elapsed0 = state["step"], state["tokens"], state["elapsed"]
        max_steps, history = state["schedule"]["max_steps"], state["history"]
        torch.set_rng_state(state["rng"]["torch"])

    ddp = None
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    loss_fn = LossFn(ddp or model, cfg.compile)
    no_sync = ddp.no_sync if ddp else None
    tokens_per_step = cfg.batch_size * cfg.grad_accum * cfg.seq_len * world
    start = clock()
    # No warm-up pass: the first step compiles (and `LossFn` falls back to eager if that fails), and a
    # time budget needs no step time measured in advance.
    if state is None and cfg.tokens is not None:
        max_steps = max(1, math.ceil(cfg.tokens / tokens_per_step))
        if cfg.warmup is None:
            cfg = replace(cfg, warmup=max(1, min(MAX_WARMUP, int(WARMUP_FRACTION * max_steps))))
    deadline = cfg.minutes * 60 if cfg.minutes is not None else float("inf")

    writer = None
    if cfg.tensorboard and rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("config: key 'tensorboard': the tensorboard package is not installed") from None
        writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=step)

    def elapsed() -> float:
        return elapsed0 + clock() - start

    def checkpoint():
        save_checkpoint(run_dir, {
            "model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "tokens": tokens_seen,
            "position": sampler.state(), "rng": {"torch": torch.get_rng_state()}, "elapsed": elapsed(),
            "schedule": {"peak_lr": cfg.lr, "warmup": cfg.warmup, "max_steps": max_steps},
            "config": to_dict(cfg), "data": str(data_dir), "data_id": data_id, "history": history,
            **({"world_size": world} if world > 1 else {}),
        })

    def keep_going() -> bool:
        go = (max_steps is None or step < max_steps) and elapsed() < deadline
        if world > 1 and deadline != float("inf"):
            go = bool(_broadcast(go))  # the clocks of the ranks differ; all must stop at the same step
        return go

    def spent() -> float | None:
        """The fraction of a time budget used (None without one): the clock's, or the step count's if that
        is further along, so the rate has decayed whichever budget ends the run."""
        if deadline == float("inf"):
            return None
        frac = max(elapsed() / deadline, step / max_steps if max_steps else 0.0)
        # One schedule for all ranks, or their weights drift (the clocks of the ranks differ).
        return _broadcast(int(frac * 1e6)) / 1e6 if world > 1 else frac

    def validate():
        loss = evaluate(model, val, val_idx, cfg.batch_size, cfg.bf16)
        if loss is not None:
            history.append({"step": step, "tokens": tokens_seen, "val_loss": loss})
            bar.write(f"step {step}/{max_steps or '-'}  val loss {loss:.4f}  ppl {math.exp(loss):.2f}")
            if writer:
                writer.add_scalar("val/loss", loss, step)
                writer.add_scalar("val/perplexity", math.exp(loss), step)
        return loss

    n_params = count_parameters(model)
    if rank == 0:
        procs = f" on {world} processes" if world > 1 else ""
        print(f"pretrain: {n_params / 1e6:.2f}M parameters, {train.n * cfg.seq_len:,} train tokens, "
              f"{f'{max_steps} steps' if max_steps else 'steps until the deadline'} of {tokens_per_step} tokens{procs}, on {device.type}, bf16={cfg.bf16}, "
              f"compile={loss_fn.compiled}",
              file=sys.stderr)
    bar = tqdm(total=max_steps, initial=step, unit="step", dynamic_ncols=True, disable=None if rank == 0 else True)
    train_time, train_tokens, last_ckpt = 0.0, 0, clock()
    while keep_going():
        t0 = clock()
        lr = lr_at(step, cfg.lr, cfg.warmup, max_steps, spent())
        for group in opt.param_groups:
            group["lr"] = lr
        # Every rank draws the same global batch from the same sampler and keeps its own share.
        share = slice(rank * cfg.batch_size, (rank + 1) * cfg.batch_size)
        micro_batches = (train.batch(sampler.take(cfg.batch_size * world)[share]) for _ in range(cfg.grad_accum))
        loss = accumulate(loss_fn, micro_batches, cfg.grad_accum, cfg.bf16, no_sync)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens_seen += tokens_per_step
        train_time += clock() - t0
        train_tokens += tokens_per_step
        tok_s = train_tokens / train_time
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}")
        if writer:
            writer.add_scalar("train/loss", loss, step)
            writer.add_scalar("train/lr", lr, step)
            writer.add_scalar("train/tokens_per_s", tok_s, step)
        if rank == 0 and (step % cfg.eval_every == 0 or clock() - last_ckpt > CHECKPOINT_SECONDS):
            if step % cfg.eval_every == 0 and (max_steps is None or step < max_steps):
                validate()
            checkpoint()
            last_ckpt = clock()
    bar.close()
    if rank != 0:
        return out
    final_loss = validate()
    checkpoint()  # the finished state, so a crash while saving the model below loses nothing
    if writer:
        writer.close()

    stats = {"parameters": n_params, "steps": step, "max_steps": max_steps, "tokens": tokens_seen,
             "tokens_per_s": round(train_tokens / train_time, 1) if train_time else None,
             "minutes": round(elapsed() / 60, 2), "val_loss": final_loss,
             "val_perplexity": math.exp(final_loss) if final_loss is not None else None,
             **({"world_size": world, "tokens_per_step": tokens_per_step} if world > 1 else {})}
    _save_model(out, model, tokenizer, cfg, stats, history, data_dir, data_id, run_dir, overwrite)
    shutil.rmtree(run_dir, ignore_errors=True)
    return out


def _save_model(out, model, tokenizer, cfg, stats, history, data_dir, data_id, run_dir, overwrite: bool = False) -> None:
    import yaml

    from touchstone import __version__
    from touchstone.generate import sample

    model.eval()
    text = sample(model, tokenizer, "The", max_new_tokens=40, temperature=0.8, top_k=50, top_p=0.95, n=1, seed=0)[0]
    recipe = {
        "stage": "pretrain",
        "config": to_dict(cfg),
        "model": {"type": model.config.model_type, "parameters": stats["parameters"]},
        "data": {"path": str(data_dir.resolve()), **data_id},
        "trainer": {"touchstone": __version__, "git_commit": git_commit(),
                    **({"world_size": stats["world_size"]} if "world_size" in stats else {})},
    }
    ppl = f"{stats['val_perplexity']:.2f}" if stats["val_perplexity"] is not None else "n/a (no validation split)"
    loss = f"{stats['val_loss']:.4f}" if stats["val_loss"] is not None else "n/a"
    curve = "\n".join(f"| {h['step']} | {h['tokens']:,} | {h['val_loss']:.4f} | {math.exp(h['val_loss']):.2f} |"
                      for h in history[-12:])
    report = f"""# Pretraining report

| | |
|---|---|
| size | {cfg.size if not cfg.init_from else f"from {cfg.init_from}"} |
| parameters | {stats['parameters']:,} |
| tokens | {stats['tokens']:,} ({stats['steps']} steps) |
| tokens/s | {stats['tokens_per_s']} |
| wall time | {stats['minutes']} min |
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
    with atomic_dir(out, overwrite=overwrite) as stage:
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        write_text_atomic(stage / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
        write_text_atomic(stage / "report.md", report)
        if (run_dir / "tensorboard").is_dir():
            shutil.copytree(run_dir / "tensorboard", stage / "tensorboard")
        write_manifest(stage, {"kind": "model", "stage": "pretrain", **stats})
