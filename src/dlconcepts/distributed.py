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
import sys
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
        if _launcher_folder() is not None:
            _keep_echoes_of_a_peer_failure_quiet()
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank,
                 backend=dist.get_backend())


def leave(group: Group, wait_for_peers: bool = True) -> None:
    """Tear the group down. After a finished run every rank first waits for the others: a rank that
    destroyed its gloo group while a peer was still in its last collective died of SIGABRT at exit
    ("terminate called without an active exception"; 2 runs in 7 here). After a failure it does not
    wait, since the peers may be blocked in a collective this rank will never join; under `dlc run --nproc`
    it first records whether it is the job's first failure, while its peers cannot know of it yet (they
    learn of it when this rank's connections close)."""
    if group.distributed and dist.is_initialized():
        if wait_for_peers:
            dist.barrier()
        else:
            _record_failure(group.rank)
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


def max_over_ranks(values: torch.Tensor, group: Group) -> torch.Tensor:
    """The element-wise maximum of `values` over all ranks (a copy; the input is left alone)."""
    top = values.detach().clone()
    if group.distributed:
        dist.all_reduce(top, op=dist.ReduceOp.MAX)
    return top


def broadcast_from_main(obj: object, group: Group) -> object:
    """Rank 0's `obj` on every rank (a picklable object, e.g. a checkpoint read on rank 0's disk)."""
    if not group.distributed:
        return obj
    box = [obj if group.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: object, group: Group) -> list[object]:
    """Every rank's `obj`, in rank order, on every rank (picklable objects, small ones: results)."""
    if not group.distributed:
        return [obj]
    out: list[object] = [None] * group.world_size
    dist.all_gather_object(out, obj)
    return out


# -- BatchNorm over the global batch ------------------------------------------------------------------

class SyncBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch, on any device.

    torch's own `nn.SyncBatchNorm` runs only on GPUs; this one sums each channel's count, sum and sum of
    squares over the ranks with the autograd-aware `all_reduce` of `torch.distributed.nn`, so N
    processes normalize (and backpropagate) exactly as one process with the whole batch would, and keep
    the same running statistics. In eval mode, or in a group of one, it is plain BatchNorm.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (batch, channels, ...); got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [d for d in range(input.dim()) if d != 1]
        count = torch.tensor(float(input.numel() // input.shape[1]), dtype=input.dtype, device=input.device)
        stats = torch.cat([count.reshape(1), input.sum(dims), (input * input).sum(dims)])
        stats = all_reduce(stats)  # the sum over ranks; its backward sends each rank its share of the gradient
        channels = input.shape[1]
        n, total, squares = stats[0], stats[1:1 + channels], stats[1 + channels:]
        mean = total / n
        var = squares / n - mean * mean  # biased, as BatchNorm normalizes with
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_((var * n / (n - 1)).detach(), alpha=momentum)
        shape = [1, channels] + [1] * (input.dim() - 2)
        out = (input - mean.reshape(shape)) / torch.sqrt(var.reshape(shape) + self.eps)
        if self.affine:
            out = out * self.weight.reshape(shape) + self.bias.reshape(shape)
        return out


def with_synchronized_batchnorm(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """`module` with every BatchNorm layer synchronized over the ranks: torch's `nn.SyncBatchNorm` on CUDA,
    ours elsewhere. The new layers hold the very same parameter and buffer tensors, so an optimizer
    made over the model's parameters before still updates them."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, SyncBatchNorm):
        synced = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        if module.track_running_stats:
            synced.running_mean, synced.running_var = module.running_mean, module.running_var
            synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, with_synchronized_batchnorm(child, device))
    return module


def data_parallel(model: torch.nn.Module, device: torch.device, group: Group) -> tuple[torch.nn.Module, torch.nn.Module]:
    """`model` made ready for data parallel training in `group` (the Trainer's and the VAETrainer's one
    wrapping): BatchNorm synchronized over the ranks (batch statistics of the global batch, as one process
    computes them), DistributedDataParallel around it (on CUDA driving the GPU `join` made current), which
    starts every rank from rank 0's weights and averages the gradients in backward. Every rank was seeded
    alike so that the models start alike; from here on each rank > 0 draws its dropout masks from a stream of
    its own (rank 0 keeps its stream, so one process and rank 0 draw what they drew before).
    Returns (the plain model, the module the training steps call)."""
    from torch.nn.parallel import DistributedDataParallel

    from dlconcepts.runtime import seed_for_rank

    model = with_synchronized_batchnorm(model, device)
    ids = [torch.cuda.current_device()] if device.type == "cuda" else None
    wrapped = DistributedDataParallel(model, device_ids=ids)
    if group.rank > 0:
        torch.manual_seed(seed_for_rank(torch.initial_seed(), group.rank))
    return model, wrapped


# -- `dlc run LAB --nproc N`: torch.distributed.run, launched from the CLI -----------------------------

# Where the workers of a `dlc run --nproc` job leave word for the launcher, which tells a failure once, in
# one line, instead of N copies and torchrun's report of failed children. Each attempt of the job (torchrun's
# restarts count them) has its own files:
#   attempt-K-rank-NNNNN   the one line of a mistake the user can fix, from rank N;
#   attempt-K-first        the rank that failed first, created exclusively, so that exactly one rank claims it.
# Once one rank fails, its peers fail too: in their next collective (gloo: "Connection closed by peer"), or
# by torchrun's SIGTERM. Those failures only echo the first one, and telling them would send the reader to
# the wrong process.
ERROR_DIR_VARIABLE = "DLC_ERROR_DIR"

# True in a worker that failed after a peer had (see `_record_failure`).
_failed_after_a_peer = False


def _launcher_folder() -> str | None:
    """The folder of the `dlc run --nproc` launcher this worker reports to; None outside such a job."""
    folder = os.environ.get(ERROR_DIR_VARIABLE)
    return folder if folder and launched_by_torchrun() else None


def _attempt() -> int:
    """Which attempt of the job this worker belongs to: 0, then 1, 2, ... after torchrun's restarts."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))


def report_error_for_launcher(message: str) -> bool:
    """Under `dlc run --nproc`, leave `message` for the launcher and return True; otherwise False."""
    folder = _launcher_folder()
    if folder is None:
        return False
    path = os.path.join(folder, f"attempt-{_attempt()}-rank-{rank_from_environment():05d}")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(message)
    return True


def _record_failure(rank: int) -> None:
    """Under `dlc run --nproc`, claim the job's first failure for `rank`, or learn that a peer failed first."""
    global _failed_after_a_peer
    folder = _launcher_folder()
    if folder is None:
        return
    try:
        fd = os.open(os.path.join(folder, f"attempt-{_attempt()}-first"), os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        _failed_after_a_peer = True
        return
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(str(rank))


def _keep_echoes_of_a_peer_failure_quiet() -> None:
    """Print no traceback for an exception that only echoes a peer's failure (the launcher tells the first
    one); every other exception keeps its traceback, printed by the hook that was there before (torch's,
    which prefixes each line with the rank)."""
    previous = sys.excepthook

    def excepthook(kind, value, traceback) -> None:
        if not _failed_after_a_peer:
            previous(kind, value, traceback)

    sys.excepthook = excepthook


def _first_failure(folder: str, failures: dict, nproc: int) -> str:
    """The one line that tells why a job failed: in its last attempt, the first failed rank's own line (a
    mistake the user can fix), or else which process failed and how it ended. `failures`: torchrun's
    ProcessFailure of each failed rank, by rank."""
    firsts, lines = {}, {}
    for name in os.listdir(folder):
        _, attempt, kind, *of_rank = name.split("-")  # attempt-K-first, attempt-K-rank-NNNNN
        with open(os.path.join(folder, name), encoding="utf-8") as fh:
            text = fh.read().strip()
        if kind == "first" and text:
            firsts[int(attempt)] = int(text)
        elif kind == "rank":
            lines[int(attempt), int(of_rank[0])] = text
    last = max([*firsts, *(attempt for attempt, _ in lines)], default=None)
    ranks_with_a_line = sorted(rank for attempt, rank in lines if attempt == last)
    rank = firsts.get(last, ranks_with_a_line[0] if ranks_with_a_line else min(failures))
    if (last, rank) in lines:
        return lines[last, rank]
    failure = failures.get(rank, failures[min(failures)])
    return f"process {rank} of {nproc} failed with exit code {failure.exitcode}; run without --nproc to see why"


class LauncherStopped(Exception):
    """The launcher got SIGTERM or SIGINT: torchrun stopped its workers with SIGTERM, and rank 0 said where
    its checkpoint is."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


def launch(nproc: int, module_args: list[str], max_restarts: int = 0) -> str | None:
    """Run `python -m dlconcepts MODULE_ARGS` in `nproc` processes on this machine with
    torch.distributed.run (a standalone c10d rendezvous on a free port). Returns None when every
    process succeeded, else the first failed rank's one-line message; raises `LauncherStopped` when the
    launcher itself was told to stop (Ctrl-C reaches only the launcher: torchrun starts each worker in a
    session of its own, and stops them with SIGTERM, which makes each save its checkpoint)."""
    import logging
    import tempfile

    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(["--standalone", f"--nproc-per-node={nproc}", f"--max-restarts={max_restarts}", "--module", "dlconcepts",
                       *module_args])
    # torchrun's agent narrates its workers' lives, failures included, on loggers that each set their own
    # level; the workers speak for themselves, and a failure is told once, below.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # what torchrun would set, without its warning
    if max_restarts:
        # Restarted workers sharing the agent's store read the last round's gloo addresses and fail to connect
        # (pytorch/pytorch#135712; 2 restarts in 3 here): a store of the round's own on a fresh port avoids it.
        os.environ.setdefault("TORCH_DISABLE_SHARE_RDZV_TCP_STORE", "1")
    with tempfile.TemporaryDirectory(prefix="dlc-errors-") as folder:
        os.environ[ERROR_DIR_VARIABLE] = folder
        try:
            run(args)
            return None
        except ChildFailedError as exc:
            return _first_failure(folder, exc.failures, nproc)
        except SignalException as exc:
            raise LauncherStopped(int(exc.sigval)) from None
        finally:
            os.environ.pop(ERROR_DIR_VARIABLE, None)
