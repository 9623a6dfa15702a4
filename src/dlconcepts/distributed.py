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


def rank_from_environment() -> int:
    """This process's rank as torchrun set it (0 outside torchrun), readable before and after the group."""
    return int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0


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


# -- `dlc run LAB --nproc N`: torch.distributed.run, launched from the CLI -----------------------------

# Where the workers of a `dlc run --nproc` job leave the one line of a mistake (one file per rank): the
# launcher prints the lowest rank's line once, instead of N copies and torchrun's report of failed children.
ERROR_DIR_VARIABLE = "DLC_ERROR_DIR"


def report_error_for_launcher(message: str) -> bool:
    """Under `dlc run --nproc`, leave `message` for the launcher and return True; otherwise False."""
    folder = os.environ.get(ERROR_DIR_VARIABLE)
    if not folder or not launched_by_torchrun():
        return False
    with open(os.path.join(folder, f"rank-{rank_from_environment():05d}"), "w", encoding="utf-8") as fh:
        fh.write(message)
    return True


def launch(nproc: int, module_args: list[str]) -> str | None:
    """Run `python -m dlconcepts MODULE_ARGS` in `nproc` processes on this machine with
    torch.distributed.run (a standalone c10d rendezvous on a free port). Returns None when every
    process succeeded, else the first failed rank's one-line message."""
    import logging
    import tempfile

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0", "--module", "dlconcepts",
                       *module_args])
    # torchrun's agent narrates its workers' lives, failures included, on loggers that each set their own
    # level; the workers speak for themselves, and a failure is told once, below.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # what torchrun would set, without its warning
    with tempfile.TemporaryDirectory(prefix="dlc-errors-") as folder:
        os.environ[ERROR_DIR_VARIABLE] = folder
        try:
            run(args)
            return None
        except ChildFailedError as exc:
            messages = sorted(os.listdir(folder))
            if messages:
                with open(os.path.join(folder, messages[0]), encoding="utf-8") as fh:
                    return fh.read().strip()
            rank, failure = min(exc.failures.items())
            return f"process {rank} of {nproc} failed with exit code {failure.exitcode}; run without --nproc to see why"
        finally:
            os.environ.pop(ERROR_DIR_VARIABLE, None)
