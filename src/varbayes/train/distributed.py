"""Devices and processes through Lightning Fabric, and evaluation that counts each example once.

A run started by `torchrun --nproc-per-node N -m varbayes run ...` (or Fabric's launcher) sees
the torch elastic environment variables and trains with DDP; the CPU uses the gloo backend.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lightning_fabric import Fabric


def world_size_from_env() -> int:
    """Number of processes of this run according to torchrun's environment (1 if none)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def make_fabric(accelerator: str = "cpu") -> Fabric:
    """A launched Fabric: one process, or DDP over the processes torchrun started."""
    from lightning_fabric import Fabric  # imported here: it takes seconds (torch._dynamo)

    check_accelerator(accelerator)
    world = world_size_from_env()
    if world > 1:
        local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
        nodes = max(world // local, 1)
        fabric = Fabric(accelerator=accelerator, strategy="ddp", devices=local, num_nodes=nodes)
    else:
        fabric = Fabric(accelerator=accelerator, devices=1)
    fabric.launch()
    return fabric


def check_accelerator(accelerator: str) -> None:
    """One-line error when the asked-for device type is not available here (instead of
    Lightning's multi-line traceback); "auto" and "cpu" always work."""
    from varbayes.errors import VarbayesError

    if accelerator == "cuda" and not torch.cuda.is_available():
        raise VarbayesError(f"accelerator=cuda was asked for but CUDA is not available here "
                            f"(torch {torch.__version__}); use accelerator=cpu or auto")
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise VarbayesError("accelerator=mps was asked for but MPS is not available here; use "
                            "accelerator=cpu or auto")


def shard_bounds(n: int, rank: int, world: int) -> tuple[int, int]:
    """Contiguous [start, stop) of n items for `rank`; shards differ in size by at most one
    and no item is repeated (unlike a padding distributed sampler)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def sharded_map(
    fabric: Fabric | None, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Apply `fn` to every row of `x` exactly once across ranks and return all outputs, in
    order, on every rank. `fn` maps a batch (first dim) to outputs whose first dim matches."""
    world = 1 if fabric is None else fabric.world_size
    rank = 0 if fabric is None else fabric.global_rank
    start, stop = shard_bounds(len(x), rank, world)
    device = x.device if fabric is None else fabric.device
    parts = [fn(x[i:min(i + batch_size, stop)].to(device)) for i in range(start, stop, batch_size)]
    local = torch.cat(parts) if parts else None
    if world == 1:
        assert local is not None
        return local.cpu()
    sizes = [shard_bounds(len(x), r, world) for r in range(world)]
    longest = max(b - a for a, b in sizes)
    if local is None:  # a rank with no rows still takes part in the gather
        probe = fn(x[:1].to(device))
        local = probe[:0]
    pad = torch.zeros((longest - len(local), *local.shape[1:]), dtype=local.dtype,
                      device=local.device)
    gathered = fabric.all_gather(torch.cat([local, pad]))  # (world, longest, ...)
    return torch.cat([gathered[r, : b - a] for r, (a, b) in enumerate(sizes)]).cpu()
