"""Where and how a run computes: device choice, seeding, threads, determinism.

Nothing here is global state of the package: `Runtime` is made once per run and handed down.
(Seeding does touch the RNGs of python, numpy and torch themselves; that is what seeding means.)
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch

from dlconcepts.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")

# torch's own choice at start-up (one thread per core), so that a run after a single-threaded one
# in the same process (dlc run all) gets every core back.
TORCH_DEFAULT_THREADS = torch.get_num_threads()


@dataclass(frozen=True)
class Runtime:
    """How a run computes. `device_note` says why this device was chosen."""

    device: torch.device
    device_name: str
    device_note: str
    seed: int
    threads: int
    deterministic: bool

    def as_dict(self) -> dict:
        return {
            "device": str(self.device),
            "device_name": self.device_name,
            "device_note": self.device_note,
            "seed": self.seed,
            "threads": self.threads,
            "deterministic": self.deterministic,
        }


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def describe_device(device: torch.device) -> str:
    """A device's name as a run log shows it: 'cuda NVIDIA H100 80GB HBM3', 'mps', 'cpu'."""
    if device.type == "cuda":
        return f"cuda {torch.cuda.get_device_name(device)}"
    return device.type


def choose_device(requested: str = "auto", prefers_cpu: str = "") -> tuple[torch.device, str]:
    """Pick the device for a run and say why.

    auto tries cuda, then mps, then cpu. `prefers_cpu` is a lab's reason to stay on the CPU under
    auto (a tiny MLP launches more kernels than it does arithmetic; a GPU is slower there).
    An explicit request is obeyed, or refused with a message when that device is absent.
    """
    if requested not in DEVICE_CHOICES:
        raise UserError(f"--device {requested!r} is not known; use one of {', '.join(DEVICE_CHOICES)}")
    if requested == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for but no CUDA GPU is visible to torch; use --device cpu or auto")
        return torch.device("cuda"), "asked for with --device cuda"
    if requested == "mps":
        if not _mps_available():
            raise UserError("--device mps was asked for but MPS is not available; use --device cpu or auto")
        return torch.device("mps"), "asked for with --device mps"
    if requested == "cpu":
        return torch.device("cpu"), "asked for with --device cpu"
    accelerator = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else None
    if accelerator is None:
        return torch.device("cpu"), "auto: no GPU found"
    if prefers_cpu:
        return torch.device("cpu"), f"auto: {accelerator} is present, but {prefers_cpu}; pass --device {accelerator} to use it anyway"
    return torch.device(accelerator), f"auto: {accelerator} found"


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (every device). Call before any model is built."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_for_rank(seed: int, rank: int) -> int:
    """The seed of process `rank`'s own random stream in a data-parallel run with run seed `seed`.

    Under torchrun every rank runs the same program from the same run seed; a generator seeded the same
    on every rank (augmentation warps, for one) would give rank 1's k-th row the very draws rank 0's
    k-th row got, step after step. Rank 0 keeps `seed` itself, so a one-process run and rank 0 draw
    exactly what they drew before there were ranks. Every other rank gets a 64-bit hash of the pair
    (seed, rank) from NumPy's `SeedSequence` (a mixing function made for deriving independent streams
    from related keys), not `seed + rank`: labs already use seed + 1, seed + 2 … for streams of their
    own, and rank 1 of seed s would then replay another stream of the run, or rank 0 of seed s + 1.
    """
    if seed < 0 or rank < 0:
        raise ValueError(f"seed and rank must be >= 0; got seed={seed}, rank={rank}")
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1, np.uint64)[0])


def make_runtime(
    device: str = "auto",
    seed: int = 0,
    threads: int | None = None,
    deterministic: bool = False,
    prefers_cpu: str = "",
) -> Runtime:
    """Apply the run's settings to torch and return them as a `Runtime`.

    Without `threads`, a lab that `prefers_cpu` (a tiny model) runs on one thread, any other on all cores.
    """
    if seed < 0:
        raise UserError(f"--seed {seed} is impossible; use a seed >= 0")
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads} is impossible; use 1 or more")
    dev, note = choose_device(device, prefers_cpu)
    if threads is None:
        # A tiny model's products are too small to split: extra threads only wait on each other, and
        # on a busy machine they wait for a core (measured: 8–12× slower with 2 threads than with 1).
        threads = 1 if prefers_cpu and dev.type == "cpu" else TORCH_DEFAULT_THREADS
    torch.set_num_threads(threads)
    if deterministic:
        # cuBLAS needs this before its first call to be reproducible (PyTorch reproducibility notes).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    seed_everything(seed)
    return Runtime(
        device=dev,
        device_name=describe_device(dev),
        device_note=note,
        seed=seed,
        threads=torch.get_num_threads(),
        deterministic=deterministic,
    )
