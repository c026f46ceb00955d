"""torch.distributed for `torchrun`: one process per GPU (or CPU worker), the same command alone.

Under torchrun (WORLD_SIZE > 1) the process group starts with NCCL on CUDA and gloo on the CPU;
every rank trains on its shard of each epoch, gradients are averaged by DistributedDataParallel,
metrics are summed across ranks, and only rank 0 writes files or prints. Without torchrun every
function here is a no-op for a single process.
"""

from __future__ import annotations

import os

import torch


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def setup() -> None:
    """Join the process group once when launched by torchrun."""
    import torch.distributed as dist

    if world_size() > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)


def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) if world_size() > 1 else torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def sum_across(values: list[float]) -> list[float]:
    """Sum per-rank figures (loss sums, counts) over all ranks."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor)
    return tensor.tolist()


def shard(order: torch.Tensor) -> torch.Tensor:
    """This rank's share of an epoch's sample order, padded so every rank takes as many steps
    (as torch's DistributedSampler does)."""
    world = world_size()
    if world == 1:
        return order
    padded = torch.cat([order, order[: (-len(order)) % world]])
    return padded[rank() :: world]
