"""What pretraining and fine-tuning share: token windows and their order, the learning-rate schedule,
the optimizer, the language-model loss, the device, and the finished model directory.

Guaranteed: a window order is a pure function of (seed, epoch, cursor), so a stored position resumes it
exactly; `lr_at` is a pure function of the step and the budget spent.

torch and numpy are imported inside the functions that use them: the configs import this module, and
commands that never train (`touchstone --help`, the loop's recipe) must not pay for them.
"""

from __future__ import annotations

import math
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from touchstone import __version__
from touchstone.errors import UserError
from touchstone.files import atomic_dir, write_manifest, write_text_atomic

# Warmup when the config gives none: the first 5% of the budget, at most 200 steps.
WARMUP_FRACTION, MAX_WARMUP = 0.05, 200


# ------------------------------------------------------------------------------------------- device
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


def clock() -> float:
    """Seconds, for time budgets (one name, so tests can give training a clock of their own)."""
    return time.monotonic()


def budget_spent(seconds: float, deadline: float | None, step: int, max_steps: int | None) -> float | None:
    """The fraction of a time budget used (None without one): the clock's, or the step count's if that is
    further along, so the rate has decayed whichever budget ends the run."""
    if deadline is None:
        return None
    return max(seconds / deadline, step / max_steps if max_steps else 0.0)


# --------------------------------------------------------------------------------------------- data
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
        rows = np.stack([np.asarray(self.ids[i * t : i * t + t + 1], dtype=np.int64) for i in indices])
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


class RecordOrder:
    """The records in a fresh shuffle per pass, taken a batch at a time; a batch may span two passes."""

    def __init__(self, records: list[dict], rng: random.Random):
        self.records, self.rng, self.queue = records, rng, []

    def take(self, n: int) -> list[dict]:
        if len(self.queue) < n:
            fresh = self.records[:]
            self.rng.shuffle(fresh)
            self.queue += fresh
        batch, self.queue = self.queue[:n], self.queue[n:]
        return batch


def text_windows(text_data: str | None, seq_len: int) -> tuple[Windows | None, Windows | None]:
    """(train, validation) windows of the prepared data directory `text_data`; (None, None) without it."""
    if not text_data:
        return None, None
    tokens = Path(text_data) / "tokens"
    if not (tokens / "train.bin").is_file():
        raise UserError(f"{text_data}: not a prepared data directory (no tokens/train.bin)")
    val = Windows(tokens / "val.bin", seq_len) if (tokens / "val.bin").is_file() else None
    return Windows(tokens / "train.bin", seq_len), val


# --------------------------------------------------------------------------------- schedule, optimizer
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

    The fused kernel matters on a CPU: the default per-tensor loop made a step many times slower
    (docs/training.md has the figures).
    """
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=True)
    except (RuntimeError, TypeError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, foreach=True)


def set_lr(opt, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------------------------------- losses
def lm_loss(model, x, y):
    """Mean next-token cross-entropy (nats) of `model` on inputs `x` and targets `y`."""
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
        except Exception as e:  # any compiler failure falls back to eager
            if not self.compiled:
                raise
            print(
                f"torch.compile failed ({type(e).__name__}: {str(e).splitlines()[0][:120]}); running eagerly",
                file=sys.stderr,
            )
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


def mean_lm_loss(model, windows: Windows, indices, batch_size: int, bf16: bool = False) -> float | None:
    """Mean next-token loss (nats) of `model` over the windows at `indices`; None when there are none.
    The model is evaluated in eval mode and handed back in the mode it came in."""
    import torch

    if not len(indices):
        return None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = 0.0
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(indices), batch_size):
            x, y = (t.to(device) for t in windows.batch(indices[i : i + batch_size]))
            total += float(lm_loss(model, x, y)) * len(x)
    model.train(was_training)
    return total / len(indices)


# -------------------------------------------------------------------------------------------- output
def git_commit() -> str | None:
    try:
        r = subprocess.run(
            ["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if r.returncode != 0:
        return None
    return r.stdout.strip() or None


def trainer(**extra) -> dict:
    """The recipe's `trainer` entry: the code that made the model."""
    return {"touchstone": __version__, "git_commit": git_commit(), **extra}


def save_model_dir(
    out: Path,
    model,
    tokenizer,
    recipe: dict,
    report: str,
    manifest: dict,
    overwrite: bool = False,
    tensorboard: Path | None = None,
) -> None:
    """Write a finished model directory atomically: weights and tokenizer (`save_pretrained`),
    recipe.yaml, report.md, a copy of `tensorboard`'s logs if there are any, and MANIFEST.json last."""
    with atomic_dir(out, overwrite=overwrite) as stage:
        model.save_pretrained(stage)
        tokenizer.save_pretrained(stage)
        write_text_atomic(stage / "recipe.yaml", yaml.safe_dump(recipe, sort_keys=False))
        write_text_atomic(stage / "report.md", report)
        if tensorboard is not None and tensorboard.is_dir():
            shutil.copytree(tensorboard, stage / "tensorboard")
        write_manifest(stage, {"kind": "model", **manifest})
