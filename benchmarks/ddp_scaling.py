"""How many images per second does cnn-digits's CNN train on with 1 and 2 processes (and on 1..N GPUs)?

The workload is the lab's own: `DigitsCNN` with the lab's default channels, dropout and pooling, trained by
the `Trainer` with the lab's recipe (AdamW, label-smoothed cross-entropy, the random warps of
`cnn_digits.training_warps` with each rank's own stream) on scikit-learn's 8×8 digits, repeated to fill
`--steps` global batches of `--batch` images. Several processes run it data parallel under
`python -m torch.distributed.run --standalone --nproc-per-node N` (gloo on the CPU, NCCL between GPUs): the
same global batch, each rank B/N of its rows, DistributedDataParallel averaging the gradients, BatchNorm
synchronized over the ranks — everything `dlc run cnn-digits --nproc N` does per step.

Each contender is a fresh run of this file as a worker: it builds the model, trains `--warmup` untimed steps
(allocator, thread pool, the first collectives), waits for every rank, then times `--steps` steps and waits
again (so the time is the slowest rank's; on CUDA after synchronizing). images/s = steps × batch / seconds.
Contenders take turns, round after round, starting one place later each round, so machine noise hits them
alike; the table shows the median of `--repeats` rounds.

On the CPU the contenders share the machine's cores: 1 process with 1 thread, 1 process with one thread per
core, and 2 processes with (cores // 2) threads each — so "2 processes" and "1 process, all threads" use
the same cores and their ratio says what splitting the batch over processes buys or costs. With CUDA GPUs,
1..N processes with one GPU each.

Run it with `.venv/bin/python benchmarks/ddp_scaling.py [--steps N] [--repeats N] [--batch B] [--json PATH]`.
On a machine shared with other work the numbers are noisy: compare ratios measured in the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from common import load_average, positive_int

WORKER_TIMEOUT_S = 600  # one contender's run, start-up included; a hung rendezvous must not hang the benchmark
SEED = 0


# -- the worker: one contender's run, in each of its processes -------------------------------------------------


def worker(args: argparse.Namespace) -> None:
    """Train the lab's CNN for warmup + steps global batches in this process group; rank 0 writes the timing."""
    import numpy as np
    from torch import nn

    from dlconcepts import distributed
    from dlconcepts.data.digits import load_digits
    from dlconcepts.labs.cnn_digits import Config, training_warps
    from dlconcepts.nets.cnn import DigitsCNN
    from dlconcepts.train import Trainer

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    group = distributed.join(device)
    cfg = Config()
    digits = load_digits()
    # The digits repeated: warmup + steps global batches of exactly `batch` images each.
    rows = np.resize(np.arange(len(digits.labels)), args.batch * (args.warmup + args.steps))
    # On the device before the clock starts, so the timed fit copies nothing.
    X = torch.as_tensor(digits.images[rows]).to(device)
    y = torch.as_tensor(digits.labels[rows]).to(device, torch.long)
    torch.manual_seed(SEED)
    model = DigitsCNN(cfg.channels, num_classes=10, in_channels=1, dropout=cfg.dropout, pooled_size=cfg.pooled_size)
    warps = training_warps(cfg, SEED, group.rank) if args.augment else None
    trainer = Trainer(model, nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), "adamw", lr=cfg.lr,
                      weight_decay=cfg.weight_decay, batch_size=args.batch, device=device, seed=SEED, augment=warps,
                      group=group)
    warm = args.batch * args.warmup
    trainer.fit(X[:warm], y[:warm], epochs=1)
    wait_for_everyone(group, device)
    start = time.perf_counter()
    history = trainer.fit(X[warm:], y[warm:], epochs=1)
    wait_for_everyone(group, device)
    seconds = time.perf_counter() - start
    if group.is_main:
        Path(args.out).write_text(json.dumps({"seconds": seconds, "steps": trainer.steps - args.warmup,
                                              "world_size": group.world_size,
                                              "final_loss": history.epochs[-1]["train_loss"]}))
    distributed.leave(group)


def wait_for_everyone(group: Any, device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()  # kernels run asynchronously: the clock must wait for them
    if group.distributed:
        torch.distributed.barrier()


# -- the contenders ------------------------------------------------------------------------------------------


@dataclass
class Contender:
    name: str
    device: str
    processes: int
    threads: int  # per process
    batch: int  # global
    seconds: list[float] = field(default_factory=list)
    final_loss: float = float("nan")

    def images_per_s(self, steps: int) -> list[float]:
        return [steps * self.batch / s for s in self.seconds]

    def median(self, steps: int) -> float:
        return statistics.median(self.images_per_s(steps))


def usable_cpus() -> int:
    # The CPUs this process may run on (a container or taskset can allow fewer than os.cpu_count()).
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def contenders(cpu_batch: int, gpu_batch: int, skip_cpu: bool) -> list[Contender]:
    cores = usable_cpus()
    lineup = []
    if not skip_cpu:
        lineup.append(Contender("cpu: 1 process x 1 thread", "cpu", 1, 1, cpu_batch))
        if cores > 1:
            lineup.append(Contender(f"cpu: 1 process x {cores} threads", "cpu", 1, cores, cpu_batch))
            per_process = max(1, cores // 2)
            lineup.append(Contender(f"cpu: 2 processes x {per_process} thread{'s' if per_process > 1 else ''}",
                                    "cpu", 2, per_process, cpu_batch))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for n in range(1, gpus + 1):
        lineup.append(Contender(f"cuda: {n} process{'es' if n > 1 else ''} x 1 GPU", "cuda", n, 1, gpu_batch))
    return lineup


def run_with_timeout(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run `cmd` in its own process group; past `timeout`, kill the whole group (torchrun and its workers)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise RuntimeError(f"did not finish within {timeout} s: {' '.join(cmd)}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def measure(contender: Contender, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="ddp-scaling-") as folder:
        out = Path(folder) / "result.json"
        worker_args = [__file__, "--worker", "--device", contender.device, "--threads", str(contender.threads),
                       "--batch", str(contender.batch), "--steps", str(args.steps), "--warmup", str(args.warmup),
                       "--out", str(out)] + ([] if args.augment else ["--no-augment"])
        if contender.processes == 1:
            cmd = [sys.executable, *worker_args]
        else:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc-per-node={contender.processes}", *worker_args]
        # torchrun would set OMP_NUM_THREADS=1 (with a warning); each contender says its own.
        env = {**os.environ, "OMP_NUM_THREADS": str(contender.threads)}
        done = run_with_timeout(cmd, env, WORKER_TIMEOUT_S)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{contender.name} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        result = json.loads(out.read_text())
    if result["steps"] != args.steps or result["world_size"] != contender.processes:
        raise RuntimeError(f"{contender.name}: expected {args.steps} steps on {contender.processes} processes, "
                           f"got {result}")
    contender.seconds.append(result["seconds"])
    contender.final_loss = result["final_loss"]


def benchmark(lineup: list[Contender], args: argparse.Namespace) -> None:
    for r in range(args.repeats):
        k = r % len(lineup)
        for contender in lineup[k:] + lineup[:k]:
            measure(contender, args)
            print(f"  round {r + 1}: {contender.name}: {contender.images_per_s(args.steps)[-1]:.0f} images/s", flush=True)


# -- the report ------------------------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"cpu": cpu_model(), "cpus_usable": usable_cpus(), "cpu_count": os.cpu_count(), "gpus": gpus,
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform()}


def table(lineup: list[Contender], steps: int) -> str:
    header = f"{'contender':<34} {'global batch':>12} {'images/s':>10} {'min-max':>15} {'x first of its device':>22}"
    lines = [header, "-" * len(header)]
    first: dict[str, float] = {}
    for c in lineup:
        rates = c.images_per_s(steps)
        base = first.setdefault(c.device, c.median(steps))
        lines.append(f"{c.name:<34} {c.batch:>12} {c.median(steps):>10.0f} {f'{min(rates):.0f}-{max(rates):.0f}':>15} "
                     f"{c.median(steps) / base:>22.2f}")
    return "\n".join(lines)


def ratios(lineup: list[Contender], steps: int) -> list[str]:
    """The 2-vs-1 comparisons in words."""
    cpu = [c for c in lineup if c.device == "cpu"]
    out = []
    two = next((c for c in cpu if c.processes == 2), None)
    if two is not None:
        for one in (c for c in cpu if c.processes == 1):
            out.append(f"{two.name} / {one.name}: {two.median(steps) / one.median(steps):.2f}")
    gpus = [c for c in lineup if c.device == "cuda"]
    for c in gpus[1:]:
        out.append(f"{c.name} / {gpus[0].name}: {c.median(steps) / gpus[0].median(steps):.2f} "
                   f"(ideal {c.processes}.00)")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=60, help="timed global batches per measurement (default 60)")
    parser.add_argument("--warmup", type=positive_int, default=10, help="untimed global batches before them (default 10)")
    parser.add_argument("--repeats", type=positive_int, default=3, help="interleaved rounds; the median is shown (default 3)")
    parser.add_argument("--batch", type=positive_int, default=64, help="global batch on the CPU (default 64, the lab's)")
    parser.add_argument("--gpu-batch", type=positive_int, default=1024, help="global batch on GPUs (default 1024)")
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train without the lab's warps")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU contenders")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    # The worker's own options (set by the benchmark when it launches a contender).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=positive_int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    lineup = contenders(args.batch, args.gpu_batch, args.gpu_only)
    info = machine()
    from dlconcepts.labs.cnn_digits import Config

    print(f"cnn-digits CNN {'->'.join(map(str, Config().channels))} channels on 8x8 digits, Trainer with the lab's recipe (AdamW, label smoothing, "
          f"{'warps' if args.augment else 'no warps'}), float32\n"
          f"machine: {info['cpu']}, {info['cpus_usable']} usable CPUs; GPUs: {', '.join(info['gpus']) or 'none'}; "
          f"torch {info['torch']}, Python {info['python']}\n"
          f"median of {args.repeats} interleaved rounds of {args.steps} global batches, each after {args.warmup} "
          f"warm-up batches\n", flush=True)
    load_before = load_average()
    benchmark(lineup, args)
    print()
    print(table(lineup, args.steps))
    print(f"\n1-minute load average: {load_before} before, {load_average()} after, on {info['cpus_usable']} CPUs")
    for line in ratios(lineup, args.steps):
        print(line)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "machine": info, "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats,
            "augment": args.augment,
            "contenders": [{"name": c.name, "device": c.device, "processes": c.processes, "threads_per_process": c.threads,
                            "global_batch": c.batch, "images_per_s": c.images_per_s(args.steps),
                            "median_images_per_s": c.median(args.steps), "final_loss": c.final_loss} for c in lineup],
        }, indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
