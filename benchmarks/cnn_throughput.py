"""How many images per second does LeNet-5 train on: one CPU thread, every CPU thread, and a CUDA GPU?

The workload: `build_cnn("lenet5")` on random 1×28×28 inputs with random labels of 10 classes, mini-batches
of 256, cross-entropy, Adam lr=1e-3, float32 — one training step is forward, loss, backward and update.
Random data is enough: the arithmetic of a step does not depend on the pixel values.

The contenders run side by side in one process:
1. CPU with 1 thread (`torch.set_num_threads(1)`),
2. CPU with all threads (one per CPU this process may use),
3. CUDA, when a GPU is visible.
Each measurement builds a fresh model from the same seed, moves it and the batches to its device, runs
`--warmup` untimed steps (first-call costs: allocator, kernel selection, thread pool start-up), then times
`--steps` steps with `time.perf_counter` (on CUDA after `torch.cuda.synchronize()`, since kernels run
asynchronously). Contenders take turns, round after round, so machine noise hits them alike; the table
shows the median images/s of `--repeats` rounds and its ratio to one CPU thread.

Run it with `.venv/bin/python benchmarks/cnn_throughput.py [--steps N] [--repeats N] [--json results.json]`.
On a machine shared with other work the numbers are noisy: compare ratios measured in the same run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlconcepts.nets.cnn import DEFAULT_INPUT, build_cnn

from common import load_average, positive_int

SEED = 0
MODEL = "lenet5"
BATCH = 256
LR = 1e-3
CLASSES = 10
DISTINCT_BATCHES = 8  # cycled through, so memory stays small however many steps are timed


@dataclass
class Contender:
    name: str
    device: torch.device
    threads: int | None  # CPU threads during its turn; None for a GPU
    seconds: list[float] = field(default_factory=list)
    final_loss: float = float("nan")

    def images_per_s(self, steps: int) -> list[float]:
        return [steps * BATCH / s for s in self.seconds]

    def median(self, steps: int) -> float:
        return statistics.median(self.images_per_s(steps))


def contenders() -> list[Contender]:
    # The CPUs this process may run on (a container or taskset can allow fewer than os.cpu_count()).
    all_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    lineup = [Contender("cpu, 1 thread", torch.device("cpu"), 1)]
    if all_threads > 1:
        lineup.append(Contender(f"cpu, {all_threads} threads", torch.device("cpu"), all_threads))
    if torch.cuda.is_available():
        lineup.append(Contender(f"cuda ({torch.cuda.get_device_name(0)})", torch.device("cuda"), None))
    return lineup


def batches(device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(SEED)
    shape = (BATCH, *DEFAULT_INPUT[MODEL])
    return [
        (torch.randn(shape, generator=generator).to(device), torch.randint(0, CLASSES, (BATCH,), generator=generator).to(device))
        for _ in range(DISTINCT_BATCHES)
    ]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, data: list[tuple[torch.Tensor, torch.Tensor]],
                steps: int) -> torch.Tensor:
    loss_fn = nn.CrossEntropyLoss()  # takes logits: the model has no softmax
    loss = torch.zeros(())
    for step in range(steps):
        X, y = data[step % len(data)]
        loss = loss_fn(model(X), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return loss


def measure(contender: Contender, steps: int, warmup: int) -> None:
    if contender.threads is not None:
        torch.set_num_threads(contender.threads)
    torch.manual_seed(SEED)  # the same initial weights for every contender and every round
    model = build_cnn(MODEL).to(contender.device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    data = batches(contender.device)
    train_steps(model, optimizer, data, warmup)
    synchronize(contender.device)
    start = time.perf_counter()
    loss = train_steps(model, optimizer, data, steps)
    synchronize(contender.device)
    contender.seconds.append(time.perf_counter() - start)
    contender.final_loss = float(loss.item())


def benchmark(lineup: list[Contender], steps: int, warmup: int, repeats: int) -> None:
    for r in range(repeats):
        # Round-robin, starting one place later each round, so no contender always runs first.
        k = r % len(lineup)
        for contender in lineup[k:] + lineup[:k]:
            measure(contender, steps, warmup)


def table(lineup: list[Contender], steps: int) -> str:
    base = lineup[0].median(steps)
    header = f"{'contender':<34} {'images/s':>10} {'min-max':>17} {'x 1 thread':>10} {'final loss':>10}"
    lines = [header, "-" * len(header)]
    for c in lineup:
        rates = c.images_per_s(steps)
        spread = f"{min(rates):.0f}-{max(rates):.0f}"
        lines.append(f"{c.name:<34} {c.median(steps):>10.0f} {spread:>17} {c.median(steps) / base:>10.2f} {c.final_loss:>10.4f}")
    return "\n".join(lines)


def results(lineup: list[Contender], args: argparse.Namespace) -> dict[str, Any]:
    base = lineup[0].median(args.steps)
    return {
        "workload": {"model": MODEL, "input": list(DEFAULT_INPUT[MODEL]), "batch": BATCH, "optimizer": "Adam", "lr": LR,
                     "loss": "CrossEntropyLoss", "steps": args.steps, "warmup_steps": args.warmup, "dtype": "float32"},
        "repeats": args.repeats,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpu_count": os.cpu_count(),
        "contenders": [
            {"name": c.name, "device": str(c.device), "threads": c.threads, "images_per_s": c.images_per_s(args.steps),
             "median_images_per_s": c.median(args.steps), "ratio_to_one_thread": c.median(args.steps) / base,
             "final_loss": c.final_loss}
            for c in lineup
        ],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=positive_int, default=40, help="timed training steps per measurement (default 40)")
    parser.add_argument("--warmup", type=positive_int, default=5, help="untimed steps before each measurement (default 5)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="interleaved rounds; the median is shown (default 5)")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lineup = contenders()
    print(
        f"LeNet-5 training throughput: batches of {BATCH} random 1x28x28 images, cross-entropy, Adam lr={LR:g}, float32\n"
        f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs; median of "
        f"{args.repeats} interleaved rounds of {args.steps} steps, each after {args.warmup} warm-up steps\n",
        flush=True,
    )
    load_before = load_average()
    benchmark(lineup, args.steps, args.warmup, args.repeats)
    print(table(lineup, args.steps))
    # On a busy machine the all-threads contender waits for cores: say how busy it was.
    print(f"\n1-minute load average: {load_before} before, {load_average()} after, on {os.cpu_count()} CPUs")
    if len(lineup) > 1:
        base = lineup[0].median(args.steps)
        print()
        for c in lineup[1:]:
            print(f"{c.name} trains {c.median(args.steps) / base:.2f}x as many images per second as 1 CPU thread")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results(lineup, args), indent=2) + "\n")
        print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
