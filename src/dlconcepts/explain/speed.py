"""How fast the matrix operations run: one CPU thread, all CPU threads, and a GPU when there is one.

The course's slide "Use parallel computing to speed up matrix operation" (seed/000_d8a1240394ee839b.txt,
the slide after "Use Excel to verify") writes the network as matrix products,
y = σ(W^L … σ(W² σ(W¹x + b¹) + b²) … + b^L), and moves the tensors to `cuda` when
`torch.cuda.is_available()`. This module measures what that buys, in three parts, read top to bottom:

1. what is counted — the floating-point operations (FLOPs) of a matmul and of an MLP training step;
2. where it runs — the measurement targets: the CPU with 1 thread, the CPU with all threads, CUDA, MPS;
3. how it is timed — warm-up, synchronisation, calls batched until a repeat is long enough to time,
   several repeats, median and minimum.

The numbers are throughputs, GFLOP/s = FLOPs / seconds / 1e9, so that sizes and devices compare on one
scale. A timing is a measurement on a shared machine: it varies from run to run; nothing here or in
its tests asserts that one setting is faster than another.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from dlconcepts.errors import UserError

DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "float64": torch.float64}
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


# --- 1. what is counted -------------------------------------------------------------------------

def matmul_flops(n: int) -> int:
    """FLOPs of an n×n by n×n matrix product: 2n³.

    Each of the n² entries of the result is a dot product of length n: n multiplications and n − 1
    additions, counted as n multiply-adds = 2n FLOPs (the convention of BLAS benchmarks and of
    torch.utils.flop_counter), so 2n · n² = 2n³.
    """
    return 2 * n**3


def linear_forward_flops(batch: int, fan_in: int, fan_out: int) -> int:
    """FLOPs of Linear(fan_in, fan_out) on a batch: the product X·Wᵀ of [B, in] by [in, out] is 2·B·in·out.

    The bias add (B·out) is left out: it is one addition per output against `in` multiply-adds.
    """
    return 2 * batch * fan_in * fan_out


def mlp_training_step_flops(layer_sizes: Sequence[int], batch: int) -> int:
    """FLOPs of one training step (forward, backward) of an MLP with `layer_sizes`, counting the matmuls only.

    Per Linear layer with input A [B, in], weight W [out, in] and output gradient δ [B, out]:
      forward          Z = A·Wᵀ          2·B·in·out
      weight gradient  ∂L/∂W = δᵀ·A      2·B·in·out
      input gradient   ∂L/∂A = δ·W       2·B·in·out — except for the first layer: the data X need no
                                          gradient, and autograd skips that product.
    So a step is 3× the forward FLOPs minus the first layer's input gradient (≈ 3× for a deep net).
    Left out, because they grow as B·width or as the parameter count while the matmuls grow as
    B·width²: bias adds and bias gradients, the activations and their derivatives, the MSE loss, and
    the optimizer's update (2 FLOPs per parameter for plain SGD). At width 64 they add a few percent;
    at width 1024 and more, well under one percent.
    """
    sizes = [int(s) for s in layer_sizes]
    if len(sizes) < 2 or min(sizes) < 1 or batch < 1:
        raise ValueError(f"need layer_sizes of at least (inputs, outputs), all >= 1, and batch >= 1; got {sizes}, {batch}")
    layers = list(zip(sizes[:-1], sizes[1:]))
    forward = sum(linear_forward_flops(batch, i, o) for i, o in layers)
    weight_gradients = forward
    input_gradients = sum(linear_forward_flops(batch, i, o) for i, o in layers[1:])
    return forward + weight_gradients + input_gradients


def training_mlp_sizes(width: int) -> tuple[int, int, int, int]:
    """The MLP whose training step is timed: `width` inputs, two hidden layers of `width`, one output
    (a regression MLP like the course's, made wide enough for its matmuls to dominate)."""
    return (width, width, width, 1)


def linear_layer_sizes(model: nn.Module) -> tuple[int, ...]:
    """(inputs, hidden…, outputs) of an MLP made of Linear layers; ValueError when they do not chain."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no Linear layer to count")
    for a, b in zip(linears[:-1], linears[1:]):
        if a.out_features != b.in_features:
            raise ValueError(f"Linear layers do not chain: {a.out_features} outputs into {b.in_features} inputs")
    return (linears[0].in_features, *(m.out_features for m in linears))


# --- 2. where it runs ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One place to measure: a torch device, and for the CPU the number of threads to use."""

    key: str  # a short name for metrics: "cpu-1-thread", "cpu-2-threads", "cuda", "mps"
    label: str  # what a table or a legend shows: "CPU 1 thread", "CUDA (NVIDIA H100 …)"
    device: torch.device
    threads: int | None  # CPU only; None for an accelerator (its host thread count is left alone)

    @property
    def is_accelerator(self) -> bool:
        return self.device.type != "cpu"


@dataclass(frozen=True)
class MeasurementPlan:
    """The targets to measure, and a sentence for each device that was not measured and why."""

    targets: tuple[Target, ...]
    absent: tuple[str, ...]
    all_threads: int


def cpu_target(threads: int) -> Target:
    plural = "thread" if threads == 1 else "threads"
    return Target(f"cpu-{threads}-{plural}", f"CPU {threads} {plural}", torch.device("cpu"), threads)


def measurement_plan(devices: str = "auto", all_threads: int | None = None) -> MeasurementPlan:
    """Which targets to measure.

    The CPU is always measured twice, with 1 thread and with all threads. "All threads" is
    `torch.get_num_threads()` when this is called (pass `all_threads` to override): the number torch
    itself would use — one per physical core by default, or what `--threads` / OMP_NUM_THREADS set —
    rather than `os.cpu_count()`, which also counts hyper-threads that share a core's arithmetic units.
    devices="auto" adds CUDA and MPS when torch sees them and reports them absent otherwise;
    "cpu" measures the CPU only; "cuda"/"mps" ask for that accelerator and refuse when it is absent.
    """
    if devices not in DEVICE_CHOICES:
        raise UserError(f"devices={devices!r} is not known; use one of {', '.join(DEVICE_CHOICES)}")
    threads = torch.get_num_threads() if all_threads is None else int(all_threads)
    if threads < 1:
        raise UserError(f"all_threads={threads} is impossible; use 1 or more")
    targets = [cpu_target(1)] if threads == 1 else [cpu_target(1), cpu_target(threads)]
    absent: list[str] = []
    found = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    for kind in ("cuda", "mps"):
        wanted = devices in ("auto", kind)
        if found[kind] and wanted:
            name = f"CUDA ({torch.cuda.get_device_name(0)})" if kind == "cuda" else "MPS (Apple GPU)"
            targets.append(Target(kind, name, torch.device(kind), None))
        elif devices == kind:
            raise UserError(f"devices={kind} was asked for but torch.{'cuda' if kind == 'cuda' else 'backends.mps'}"
                            f".is_available() is False; use devices=auto or cpu")
        elif not found[kind]:
            check = "torch.cuda.is_available()" if kind == "cuda" else "torch.backends.mps.is_available()"
            absent.append(f"{kind.upper()}: not measured, {check} is False on this machine")
        else:
            absent.append(f"{kind.upper()}: present but not measured (devices={devices})")
    return MeasurementPlan(tuple(targets), tuple(absent), threads)


# --- 3. how it is timed -------------------------------------------------------------------------

@dataclass(frozen=True)
class Timing:
    """Seconds per call of one operation at one size on one target, over `repeats` repeats."""

    operation: str  # "matmul" or "training step"
    size: int  # n of the n×n matmul, or the MLP's width
    target: Target
    flops: int  # per call
    seconds: tuple[float, ...]  # per call, one value per repeat
    calls_per_repeat: int
    cores_busy: float  # this process's CPU seconds over wall seconds during the timed repeats

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min_s(self) -> float:
        return min(self.seconds)

    @property
    def gflops(self) -> float:
        """Throughput at the median time: the typical speed, robust to one disturbed repeat."""
        return self.flops / self.median_s / 1e9

    @property
    def best_gflops(self) -> float:
        """Throughput at the fastest repeat: closest to what the hardware can do undisturbed."""
        return self.flops / self.min_s / 1e9

    @property
    def spread(self) -> float:
        """Median over fastest repeat. Close to 1 on a quiet machine; well above it when other work
        competed for the cores during some repeats (or all of them, which no spread can reveal)."""
        return self.median_s / self.min_s

    @property
    def cpu_share(self) -> float | None:
        """For a CPU target, the share of the asked-for cores' time this process actually got:
        cores_busy / threads. A threaded product keeps every thread busy (idle threads spin while
        waiting for work), so on a quiet machine this is close to 1; well below 1 means other
        processes held some of the cores, and a threaded product then waits for its slowest thread."""
        return None if self.target.threads is None else self.cores_busy / self.target.threads

    def as_dict(self) -> dict:
        return {
            "operation": self.operation, "size": self.size, "target": self.target.key,
            "flops": self.flops, "median_s": self.median_s, "min_s": self.min_s,
            "gflops": self.gflops, "best_gflops": self.best_gflops, "spread": self.spread,
            "seconds": list(self.seconds), "calls_per_repeat": self.calls_per_repeat,
            "cores_busy": self.cores_busy, "cpu_share": self.cpu_share,
        }


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits until `device` has finished its queued work.

    CUDA and MPS calls return as soon as the kernel is queued; without this wait a timer measures
    the launch, not the arithmetic. The CPU computes before returning: nothing to wait for.
    """
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


@contextmanager
def threads_set_to(threads: int | None) -> Iterator[None]:
    """`with threads_set_to(n):` runs the body with torch using n CPU threads and restores the previous
    count afterwards, even when the body raises (None leaves the count alone)."""
    previous = torch.get_num_threads()
    try:
        if threads is not None:
            torch.set_num_threads(threads)
        yield
    finally:
        torch.set_num_threads(previous)


def _seconds_for(call: Callable[[], object], calls: int, sync: Callable[[], None]) -> float:
    sync()  # start from an idle device: earlier queued work must not be billed to this repeat
    start = time.perf_counter()
    for _ in range(calls):
        call()
    sync()
    return time.perf_counter() - start


@dataclass(frozen=True)
class CallTimes:
    """What `time_calls` measured: seconds per call (one per repeat), calls batched in each repeat,
    and the cores this process kept busy meanwhile (CPU seconds of all its threads over wall seconds)."""

    seconds: tuple[float, ...]
    calls_per_repeat: int
    cores_busy: float


def time_calls(
    call: Callable[[], object],
    device: torch.device,
    repeats: int = 5,
    warmup: int = 1,
    min_repeat_seconds: float = 0.01,
    max_calls: int = 1 << 16,
) -> CallTimes:
    """Seconds per call of `call` on `device`, one value per repeat.

    Warm-up calls first: the first call pays for one-off work (thread pools, cuBLAS handles, kernel
    selection, page faults of new buffers) that a training loop pays once, not every step.
    Then, like `timeit`'s autorange, calls are batched — 1, 2, 4, … per repeat — until one repeat
    lasts at least `min_repeat_seconds`, so a 5-µs product is not timed below the clock's and the
    loop's resolution. Each repeat's time is divided by its calls. The process's CPU time over the
    timed repeats is kept too: it tells whether the threads asked for actually got their cores.
    """
    if repeats < 1 or warmup < 0 or min_repeat_seconds < 0:
        raise ValueError(f"need repeats >= 1, warmup >= 0, min_repeat_seconds >= 0; got {repeats}, {warmup}, {min_repeat_seconds}")
    sync = synchronizer(device)
    for _ in range(warmup):
        call()
    sync()
    calls = 1
    while _seconds_for(call, calls, sync) < min_repeat_seconds and calls < max_calls:
        calls *= 2
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    seconds = tuple(_seconds_for(call, calls, sync) / calls for _ in range(repeats))
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start
    return CallTimes(seconds, calls, cpu / wall if wall > 0 else float("nan"))


def time_matmul(
    n: int,
    target: Target,
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    warmup: int = 1,
    min_repeat_seconds: float = 0.01,
    seed: int = 0,
) -> Timing:
    """Time C = A·B for n×n matrices of standard normal values on `target` (2n³ FLOPs per call).

    The product is written into a preallocated C (`out=`), so the time is the arithmetic and the
    memory traffic of the product, not the allocation of a new result.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=generator, dtype=dtype).to(target.device)
    b = torch.randn(n, n, generator=generator, dtype=dtype).to(target.device)
    c = torch.empty(n, n, dtype=dtype, device=target.device)
    with threads_set_to(target.threads):
        measured = time_calls(lambda: torch.mm(a, b, out=c), target.device, repeats, warmup, min_repeat_seconds)
    return Timing("matmul", n, target, matmul_flops(n), measured.seconds, measured.calls_per_repeat, measured.cores_busy)


def time_training_step(
    model: nn.Module,
    batch: int,
    target: Target,
    dtype: torch.dtype = torch.float32,
    repeats: int = 5,
    warmup: int = 1,
    min_repeat_seconds: float = 0.01,
    lr: float = 1e-4,
    seed: int = 0,
) -> Timing:
    """Time one training step of an MLP on `target`: forward, MSE loss, backward, plain SGD update.

    The step runs on a copy of `model` (moved to the target's device and dtype), so the caller's
    model keeps its initial weights whatever the number of timed steps. Inputs and targets are
    standard normal values: the step's speed does not depend on what is learned. `size` in the
    returned Timing is the width of the first hidden layer; the FLOPs are `mlp_training_step_flops`.
    """
    sizes = linear_layer_sizes(model)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, sizes[0], generator=generator, dtype=dtype).to(target.device)
    y = torch.randn(batch, sizes[-1], generator=generator, dtype=dtype).to(target.device)
    net = copy.deepcopy(model).to(device=target.device, dtype=dtype)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss_fn = nn.MSELoss()

    def step() -> None:
        optimizer.zero_grad()
        loss_fn(net(x), y).backward()
        optimizer.step()

    with threads_set_to(target.threads):
        measured = time_calls(step, target.device, repeats, warmup, min_repeat_seconds)
    width = sizes[1] if len(sizes) > 2 else sizes[0]
    return Timing("training step", width, target, mlp_training_step_flops(sizes, batch), measured.seconds,
                  measured.calls_per_repeat, measured.cores_busy)


# --- a busy machine -----------------------------------------------------------------------------

# A timing is "disturbed" when other processes evidently took cores from it. Two signs:
# - its CPU share fell below 0.85: quiet 2-thread products and steps kept 0.95–1.01 of both cores busy on
#   the 2-core machine this was developed on, and 0.39–0.75 with one competing busy process;
# - its median is more than 25% above its fastest repeat: quiet repeats agreed within 6% there.
MIN_CPU_SHARE = 0.85
NOISY_SPREAD = 1.25


def is_disturbed(timing: Timing) -> bool:
    """Whether other work on the machine evidently took cores from this measurement (see the limits above).
    A machine busy in the same way during every repeat of a GPU timing goes unseen: there is no CPU share."""
    share = timing.cpu_share
    return (share is not None and share < MIN_CPU_SHARE) or timing.spread > NOISY_SPREAD


def measure_until_quiet(measure: Callable[[], Timing], retries: int) -> tuple[Timing, int]:
    """Run `measure` until it returns an undisturbed timing, at most 1 + `retries` times: (timing, attempts).

    Other processes come and go; a second try usually finds the cores free. When every try is
    disturbed, the one with the shortest median is returned — the least disturbed — and
    `is_disturbed` still says so, for the report to show.
    """
    attempts = [measure()]
    while is_disturbed(attempts[-1]) and len(attempts) <= retries:
        attempts.append(measure())
    best = attempts[-1] if not is_disturbed(attempts[-1]) else min(attempts, key=lambda t: t.median_s)
    return best, len(attempts)


# --- comparing the timings ----------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """One timing set against the others of the same operation and size.

    share_of_peak: GFLOP/s over the peak of the same target, the peak being the GFLOP/s of the
    largest matmul measured there (a middle size can pass it: then the share is above 1).
    speedup_over_one_thread: median seconds on the CPU with 1 thread over median seconds here.
    speedup_over_all_threads: the same against the CPU with all threads, for accelerators only.
    """

    timing: Timing
    peak_gflops: float
    share_of_peak: float
    speedup_over_one_thread: float | None
    speedup_over_all_threads: float | None


def peak_gflops(timings: Sequence[Timing], target: Target) -> float:
    """GFLOP/s of the largest matmul measured on `target`."""
    matmuls = [t for t in timings if t.operation == "matmul" and t.target == target]
    if not matmuls:
        raise ValueError(f"no matmul was timed on {target.label}: the peak needs one")
    return max(matmuls, key=lambda t: t.size).gflops


def compare(timings: Sequence[Timing], plan: MeasurementPlan) -> list[Comparison]:
    """Speed-ups and shares of peak for every timing, in the order given."""
    by_key = {(t.operation, t.size, t.target.key): t for t in timings}
    one_thread = plan.targets[0].key
    all_threads = next((t.key for t in plan.targets if not t.is_accelerator and t.threads == plan.all_threads), one_thread)
    peaks = {target.key: peak_gflops(timings, target) for target in plan.targets
             if any(t.target == target for t in timings)}

    def speedup(timing: Timing, base_key: str) -> float | None:
        base = by_key.get((timing.operation, timing.size, base_key))
        return None if base is None else base.median_s / timing.median_s

    rows = []
    for t in timings:
        peak = peaks[t.target.key]
        rows.append(Comparison(
            timing=t, peak_gflops=peak, share_of_peak=t.gflops / peak,
            speedup_over_one_thread=speedup(t, one_thread),
            speedup_over_all_threads=speedup(t, all_threads) if t.target.is_accelerator else None,
        ))
    return rows
