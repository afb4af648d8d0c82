"""Data parallelism under a launcher (`torchrun`, `accelerate launch`): joining the process group and
agreeing on values across ranks.

Every process joins one group: gloo on CPUs, nccl on GPUs with rank r on GPU LOCAL_RANK. Without a
launcher (WORLD_SIZE unset or 1) nothing here is used and a run is a single process.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from touchstone.errors import UserError


def launched() -> bool:
    """True in a process a distributed launcher started with others (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


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
                raise UserError(f"{command}: process {local_rank} of this node has no GPU of its own ({gpus} visible); "
                                f"start at most {gpus} per node, or add --device cpu")
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


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()
