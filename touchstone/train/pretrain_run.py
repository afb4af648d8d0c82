"""The training loop of one pretraining run (`touchstone.train.pretrain` builds the model and saves it).

`PretrainRun` holds what changes while a run trains: the optimizer, the window order, the step and token
counts, the budget and the validation history; a checkpoint stores exactly that, so a resumed run
continues where it stopped (see `touchstone.train.pretrain` for the guarantees).
"""

from __future__ import annotations

import math
import shutil
import sys
from dataclasses import replace
from pathlib import Path

from touchstone.config import Config, to_dict
from touchstone.distributed import broadcast
from touchstone.errors import UserError
from touchstone.model import count_parameters
from touchstone.train.checkpoint import save_checkpoint
from touchstone.train.common import (
    MAX_WARMUP,
    WARMUP_FRACTION,
    LossFn,
    Sampler,
    Windows,
    accumulate,
    budget_spent,
    clock,
    lr_at,
    make_optimizer,
    mean_lm_loss,
    set_lr,
)
from touchstone.train.tokens import data_id, token_files

EVAL_BATCHES = 8  # validation windows = EVAL_BATCHES * batch_size, spread evenly over the val split
CHECKPOINT_SECONDS = 600  # also checkpoint at least this often, whatever eval_every says


class PretrainRun:
    """One run in progress: the model and optimizer, the data and its position, the step and token counts,
    the budget and the validation history. Built fresh or from a checkpoint's `state`; `train` steps it
    until the budget ends, `checkpoint` stores it, `finish` validates once more and says what it did."""

    def __init__(
        self,
        cfg: Config,
        model,
        tokenizer,
        device,
        data_dir: Path,
        run_dir: Path,
        state: dict | None,
        rank: int,
        world: int,
    ):
        self.cfg, self.model, self.tokenizer, self.device = cfg, model, tokenizer, device
        self.data_dir, self.run_dir, self.rank, self.world = data_dir, run_dir, rank, world
        self._open_data()
        if state is None and rank == 0 and (run_dir / "checkpoint").exists():
            # Only now, with the new run's settings and data checked, is the old state given up.
            print(
                f"discarding the checkpoint of an interrupted run in {run_dir} (use --resume to continue it)",
                file=sys.stderr,
            )
            shutil.rmtree(run_dir / "checkpoint")
        self._place_model()
        self._restore(state)
        self._wrap()
        self.tokens_per_step = self.cfg.batch_size * self.cfg.grad_accum * self.cfg.seq_len * world
        self.start = clock()
        # No warm-up pass: the first step compiles (and `LossFn` falls back to eager if that fails), and a
        # time budget needs no step time measured in advance.
        if state is None and self.cfg.tokens is not None:
            self.max_steps = max(1, math.ceil(self.cfg.tokens / self.tokens_per_step))
            if self.cfg.warmup is None:
                warmup = max(1, min(MAX_WARMUP, int(WARMUP_FRACTION * self.max_steps)))
                self.cfg = replace(self.cfg, warmup=warmup)
        self.deadline = self.cfg.minutes * 60 if self.cfg.minutes is not None else None
        self.writer = self._open_writer() if self.cfg.tensorboard and rank == 0 else None
        self.train_time, self.train_tokens = 0.0, 0

    # ------------------------------------------------------------------------------------- set-up
    def _open_data(self) -> None:
        import numpy as np

        cfg = self.cfg
        self.train_path, val_path, dtype = token_files(self.data_dir, self.tokenizer, self.run_dir)
        self.windows, self.val = Windows(self.train_path, cfg.seq_len, dtype), Windows(val_path, cfg.seq_len, dtype)
        if self.windows.n == 0:
            raise UserError(f"{self.train_path}: fewer than seq_len + 1 = {cfg.seq_len + 1} tokens to train on")
        vocab, top = self.model.get_input_embeddings().num_embeddings, int(np.max(self.windows.ids))
        if top >= vocab:
            raise UserError(
                f"{self.train_path}: token id {top} >= the model's vocabulary ({vocab}); "
                f"the tokens were made with another tokenizer"
            )
        self.data_id = data_id(self.train_path)
        n = self.val.n
        self.val_idx = np.unique(np.linspace(0, n - 1, min(n, EVAL_BATCHES * cfg.batch_size)).astype(int)) if n else []

    def _place_model(self) -> None:
        self.model.to(self.device)
        self.model.train()
        if (
            self.cfg.compile
            and self.device.type == "cpu"
            and self.cfg.seq_len <= 512
            and hasattr(self.model, "set_attn_implementation")
        ):
            # Attention as plain matmuls + softmax, which the compiler fuses, instead of the CPU
            # flash-attention kernel (an opaque call): a compiled step ran faster (docs/training.md). The
            # T x T scores this materializes stay small up to 512 tokens. Same mathematics; the saved
            # config does not carry the choice, so the model loads with the library's default.
            self.model.set_attn_implementation("eager")

    def _restore(self, state: dict | None) -> None:
        """The optimizer, window order and counters: fresh, or where the checkpoint `state` left them."""
        import torch

        self.opt = make_optimizer(self.model, self.cfg.lr)
        self.sampler = Sampler(self.windows.n, self.cfg.seed)
        self.step, self.tokens_seen, self.elapsed0, self.history, self.max_steps = 0, 0, 0.0, [], None
        if state is None:
            return
        if state["data_id"]["bytes"] != self.data_id["bytes"]:
            raise UserError(
                f"{self.train_path}: differs from the data the checkpoint was trained on ({state['data_id']['file']})"
            )
        if state.get("world_size", 1) != self.world:
            raise UserError(
                f"{self.run_dir}/checkpoint: written by {state.get('world_size', 1)} processes; "
                f"resume it with as many (this run has {self.world})"
            )
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sampler = Sampler(self.windows.n, self.cfg.seed, **state["position"])
        self.step, self.tokens_seen, self.elapsed0 = state["step"], state["tokens"], state["elapsed"]
        self.max_steps, self.history = state["schedule"]["max_steps"], state["history"]
        torch.set_rng_state(state["rng"]["torch"])

    def _wrap(self) -> None:
        """The loss function, over the model wrapped in DistributedDataParallel when there are several ranks."""
        ddp = None
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ddp = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.loss_fn = LossFn(ddp or self.model, self.cfg.compile)
        self.no_sync = ddp.no_sync if ddp else None

    def _open_writer(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError("config: key 'tensorboard': the tensorboard package is not installed") from None
        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step)

    # -------------------------------------------------------------------------------------- steps
    def elapsed(self) -> float:
        return self.elapsed0 + clock() - self.start

    def keep_going(self) -> bool:
        go = (self.max_steps is None or self.step < self.max_steps) and (
            self.deadline is None or self.elapsed() < self.deadline
        )
        if self.world > 1 and self.deadline is not None:
            go = bool(broadcast(go))  # the clocks of the ranks differ; all must stop at the same step
        return go

    def spent(self) -> float | None:
        frac = budget_spent(self.elapsed(), self.deadline, self.step, self.max_steps)
        if frac is None or self.world == 1:
            return frac
        # One schedule for all ranks, or their weights drift (the clocks of the ranks differ).
        return broadcast(int(frac * 1e6)) / 1e6

    def train_step(self) -> tuple[float, float]:
        """One optimizer step on this rank's share of one global batch; (loss, learning rate)."""
        import torch

        cfg = self.cfg
        lr = lr_at(self.step, cfg.lr, cfg.warmup, self.max_steps, self.spent())
        set_lr(self.opt, lr)
        # Every rank draws the same global batch from the same sampler and keeps its own share.
        share = slice(self.rank * cfg.batch_size, (self.rank + 1) * cfg.batch_size)
        micro_batches = (
            self.windows.batch(self.sampler.take(cfg.batch_size * self.world)[share]) for _ in range(cfg.grad_accum)
        )
        loss = accumulate(self.loss_fn, micro_batches, cfg.grad_accum, cfg.bf16, self.no_sync)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        return loss, lr

    def train(self) -> None:
        """Step until the budget ends; rank 0 validates every `eval_every` steps and checkpoints with it."""
        from tqdm import tqdm

        self.n_params = count_parameters(self.model)
        if self.rank == 0:
            print(self.summary(), file=sys.stderr)
        self.bar = tqdm(
            total=self.max_steps,
            initial=self.step,
            unit="step",
            dynamic_ncols=True,
            disable=None if self.rank == 0 else True,
        )
        last_ckpt = clock()
        while self.keep_going():
            t0 = clock()
            loss, lr = self.train_step()
            self.train_time += clock() - t0
            self.train_tokens += self.tokens_per_step
            self.log_step(loss, lr)
            if self.rank == 0 and (self.step % self.cfg.eval_every == 0 or clock() - last_ckpt > CHECKPOINT_SECONDS):
                if self.step % self.cfg.eval_every == 0 and (self.max_steps is None or self.step < self.max_steps):
                    self.validate()
                self.checkpoint()
                last_ckpt = clock()
        self.bar.close()

    def summary(self) -> str:
        cfg, procs = self.cfg, f" on {self.world} processes" if self.world > 1 else ""
        steps = f"{self.max_steps} steps" if self.max_steps else "steps until the deadline"
        return (
            f"pretrain: {self.n_params / 1e6:.2f}M parameters, {self.windows.n * cfg.seq_len:,} train tokens, "
            f"{steps} of {self.tokens_per_step} tokens{procs}, on {self.device.type}, bf16={cfg.bf16}, "
            f"compile={self.loss_fn.compiled}"
        )

    def log_step(self, loss: float, lr: float) -> None:
        tok_s = self.train_tokens / self.train_time
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tok_s:,.0f}")
        if self.writer:
            self.writer.add_scalar("train/loss", loss, self.step)
            self.writer.add_scalar("train/lr", lr, self.step)
            self.writer.add_scalar("train/tokens_per_s", tok_s, self.step)

    def validate(self) -> float | None:
        loss = mean_lm_loss(self.model, self.val, self.val_idx, self.cfg.batch_size, self.cfg.bf16)
        if loss is not None:
            self.history.append({"step": self.step, "tokens": self.tokens_seen, "val_loss": loss})
            self.bar.write(f"step {self.step}/{self.max_steps or '-'}  val loss {loss:.4f}  ppl {math.exp(loss):.2f}")
            if self.writer:
                self.writer.add_scalar("val/loss", loss, self.step)
                self.writer.add_scalar("val/perplexity", math.exp(loss), self.step)
        return loss

    def checkpoint(self) -> None:
        import torch

        cfg = self.cfg
        save_checkpoint(
            self.run_dir,
            {
                "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(),
                "step": self.step,
                "tokens": self.tokens_seen,
                "position": self.sampler.state(),
                "rng": {"torch": torch.get_rng_state()},
                "elapsed": self.elapsed(),
                "schedule": {"peak_lr": cfg.lr, "warmup": cfg.warmup, "max_steps": self.max_steps},
                "config": to_dict(cfg),
                "data": str(self.data_dir),
                "data_id": self.data_id,
                "history": self.history,
                **({"world_size": self.world} if self.world > 1 else {}),
            },
        )

    # ------------------------------------------------------------------------------------- finish
    def finish(self) -> dict:
        """Rank 0, after the last step: validate, checkpoint the finished state (so a crash while saving the
        model loses nothing) and return the figures the manifest and the report carry."""
        final_loss = self.validate()
        self.checkpoint()
        if self.writer:
            self.writer.close()
        return {
            "parameters": self.n_params,
            "steps": self.step,
            "max_steps": self.max_steps,
            "tokens": self.tokens_seen,
            "tokens_per_s": round(self.train_tokens / self.train_time, 1) if self.train_time else None,
            "minutes": round(self.elapsed() / 60, 2),
            "val_loss": final_loss,
            "val_perplexity": math.exp(final_loss) if final_loss is not None else None,
            **({"world_size": self.world, "tokens_per_step": self.tokens_per_step} if self.world > 1 else {}),
        }
