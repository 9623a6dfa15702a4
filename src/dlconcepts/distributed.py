"""torch.distributed, as the package uses it: one process group per run, joined from what `torchrun` sets.

Everything here is PyTorch's own engine (`torch.distributed`, gloo on the CPU, NCCL on CUDA); this
module only decides who is who, which rows and which models are whose, and how a number measured on
every rank becomes one number. Run under `torchrun --nproc-per-node N`, each process sees RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them it is the one process of a group
of one, and nothing here talks to anybody.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

# A rank that waits longer than this for the others fails instead of hanging (a crashed peer, a
# mistyped rendezvous address).
DEFAULT_TIMEOUT = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class Group:
    """Who this process is among the processes of one run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory, its figures and its report."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Group()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes (the two backends PyTorch ships for them)."""
    return "nccl" if device.type == "cuda" else "gloo"


def join(device: torch.device, timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> Group:
    """Join the process group `torchrun` describes in the environment (or be a group of one).

    On CUDA each process takes the GPU of its LOCAL_RANK, so N processes on one machine use N GPUs.
    """
    if not launched_by_torchrun():
        return SINGLE
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device), timeout=timeout)
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                 backend=dist.get_backend())


def leave(group: Group) -> None:
    if group.distributed and dist.is_initialized():
        dist.destroy_process_group()


def current() -> Group:
    """The group this process already joined, or a group of one."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")), backend=dist.get_backend())


def rows_of_rank(global_batch: torch.Tensor, group: Group) -> torch.Tensor:
    """This rank's share of one global batch of row indices: every world_size-th row from its rank on.

    The shares of all ranks together are the global batch, so N processes with batches of B/N take
    the same optimizer steps as one process with batches of B — what torch's DistributedSampler does
    with its own permutation; here the permutation is the Trainer's, so one process and N agree.
    """
    return global_batch[group.rank::group.world_size] if group.distributed else global_batch


def slice_of_rank(n_items: int, group: Group) -> slice:
    """This rank's contiguous part of n items (models of a study), the first ranks one longer when
    n does not divide evenly."""
    base, extra = divmod(n_items, group.world_size)
    start = group.rank * base + min(group.rank, extra)
    return slice(start, start + base + (1 if group.rank < extra else 0))


def sum_over_ranks(values: torch.Tensor, group: Group) -> torch.Tensor:
    """The element-wise sum of `values` over all ranks (a copy; the input is left alone)."""
    total = values.detach().clone()
    if group.distributed:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total


def gather_objects(obj: object, group: Group) -> list[object]:
    """Every rank's `obj`, in rank order, on every rank (picklable objects, small ones: results)."""
    if not group.distributed:
        return [obj]
    out: list[object] = [None] * group.world_size
    dist.all_gather_object(out, obj)
    return out
