"""Data parallelism under a launcher (`torchrun`, `accelerate launch`): joining the process group,
agreeing on values across ranks, and splitting batched work over them.

Every process joins one group: gloo on CPUs, nccl on GPUs with rank r on GPU LOCAL_RANK. Without a
launcher (WORLD_SIZE unset or 1) nothing here is used and a run is a single process.

`join_ray` connects to a Ray cluster, for the engines that run on one (datatrove's executor, the worlds'
verification: touchstone.worlds.on_ray).

Training splits each step's batch (pretrain, finetune); evaluation splits its list of batches
(`Shards`): rank r computes batches r, r + world, ... exactly as one process would have built them, so
every batch, and with it every score, is the one a single process computes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from touchstone.errors import UserError


def launched() -> bool:
    """True in a process a distributed launcher started with others (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def first_process() -> bool:
    """True in a single process and in a launcher's rank 0: the one that prints a command's result."""
    return os.environ.get("RANK", "0") == "0"


@contextlib.contextmanager
def process_group(on_gpu: bool, command: str) -> Iterator[tuple[int, int]]:
    """(rank, world size) of this process inside the launcher's process group, joined for the duration
    unless the caller has joined it already. `on_gpu`: one GPU per process (nccl), else CPU tensors (gloo)."""
    import torch
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        if on_gpu:
            local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
            if local_rank >= gpus:
                raise UserError(
                    f"{command}: process {local_rank} of this node has no GPU of its own ({gpus} visible); "
                    f"start at most {gpus} per node, or add --device cpu"
                )
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if on_gpu else "gloo")
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        if owned:
            dist.destroy_process_group()


def broadcast(value: int) -> int:
    """Rank 0's `value`, on every rank."""
    import torch
    import torch.distributed as dist

    # nccl moves only GPU tensors; gloo, CPU ones.
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, 0)
    return int(t)


def broadcast_object(obj):
    """Rank 0's `obj` (anything picklable), on every rank."""
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def sum_gradients(model, loss) -> float:
    """Sum every trainable parameter's gradient, and `loss`, over the ranks in one all-reduce; return the
    summed loss. For losses computed outside the model's forward (fine-tuning reads the last hidden states
    through `base_model` and the output layer directly), which DistributedDataParallel's hooks do not see."""
    import torch
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:  # every rank must contribute a tensor of the same shape
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params] + [loss.detach().reshape(1).to(params[0].grad.dtype)])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
        offset += p.numel()
    return float(flat[-1])


@dataclass(frozen=True)
class Shards:
    """Batched work split over the processes of a group: process `rank` of `world` computes batches
    rank, rank + world, ...; `map` gathers everyone's results, in batch order, on every process."""

    rank: int = 0
    world: int = 1

    def map(self, score: Callable[[Sequence], list], batches: Sequence[Sequence]) -> list[list]:
        """score(batch) for every batch, each computed by one process; the results of all of them on
        every process. Every process must call it with the same batches."""
        mine = {b: score(batch) for b, batch in enumerate(batches) if b % self.world == self.rank}
        if self.world == 1:
            return [mine[b] for b in range(len(batches))]
        import torch.distributed as dist

        parts: list[dict | None] = [None] * self.world
        dist.all_gather_object(parts, mine)  # pickled Python values: the scores are a few floats per item
        merged = {b: r for part in parts for b, r in part.items()}
        return [merged[b] for b in range(len(batches))]

    def per_item(self, score: Callable[[list[int]], list], order: list[int], batch_size: int, n: int) -> list:
        """A value for each of n items: the items `order` lists, cut in that order into batches of
        `batch_size`, scored by `map` (score(indices) gives one value per index); 0.0 for items not in
        `order`. On every process."""
        batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
        out = [0.0] * n
        for batch, values in zip(batches, self.map(score, batches)):
            for i, v in zip(batch, values):
                out[i] = v
        return out


ONE_PROCESS = Shards()


def join_ray(num_cpus: int | None = None) -> None:
    """Connect this process to Ray: the cluster at RAY_ADDRESS (where touchstone is installed), else a
    cluster of this machine with `num_cpus` CPUs (all, for None) whose workers import this same checkout."""
    import ray

    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
        return
    root = str(Path(__file__).resolve().parents[1])  # the folder holding touchstone/
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    ray.init(num_cpus=num_cpus, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": path}})


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()
