"""Many models at once (`train.many_models.train_many`) against training them one by one.

The workload is the course's "variance of the prediction error" notebook: R = 300 models,
MLP 1→200→150→1 (ReLU), 500 full-batch epochs of Adam (lr 1e-3), each model on its own random
32 of the 40 points of the course's noisy cubic, standardized on its own rows; one process.

1. Thread setting: each contender is probed briefly with 1 thread and with all threads, and the
   faster setting is kept (tiny single models run best on one thread; the stack on all).
2. The one-by-one loop — `Trainer.fit` per model, its fastest configuration (fused Adam) — and the
   vectorized stack train the same R models from the same initial weights on the same rows.
3. The effective GFLOP/s of the vectorized run counts the matrix products analytically
   (`explain.speed.mlp_training_step_flops`: forward, weight and input gradients) and is set against
   the machine's float32 matmul peak, measured in the same run (a 2048×2048 product, all threads).
4. As a check that both time the same computation, the median final training loss of both is printed.

Run: `.venv/bin/python benchmarks/many_models.py [--models 300] [--epochs 500] [--one-by-one N]`.
`--one-by-one N` times only N models one by one and scales the time to R (marked "scaled").
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch import nn

from dlconcepts.data import Standardizer, noisy_cubic
from dlconcepts.explain.speed import cpu_target, mlp_training_step_flops, threads_set_to, time_matmul
from dlconcepts.train import Trainer
from dlconcepts.train.many_models import ManySettings, StackedMLP, seeded_models, train_many

LAYERS = (1, 200, 150, 1)
N_TRAIN = 32
LR = 1e-3


def workload(n_models: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per model: 32 of the 40 cubic points (its own random choice), standardized on those rows."""
    data = noisy_cubic(np.random.default_rng(seed))
    X = np.empty((n_models, N_TRAIN, 1))
    y = np.empty((n_models, N_TRAIN, 1))
    for r in range(n_models):
        rows = np.random.default_rng([seed, r]).permutation(len(data))[:N_TRAIN]
        X[r] = Standardizer().fit_transform(data.X[rows])
        y[r] = Standardizer().fit_transform(data.y[rows])
    return torch.tensor(X, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def run_vectorized(X: torch.Tensor, y: torch.Tensor, seeds: list[int], epochs: int) -> tuple[float, np.ndarray]:
    stack = StackedMLP.from_models(seeded_models(LAYERS, seeds))
    start = time.perf_counter()
    result = train_many(stack, X, y, ManySettings(epochs=epochs, lr=LR))
    return time.perf_counter() - start, result.train_loss[-1]


def run_one_by_one(X: torch.Tensor, y: torch.Tensor, seeds: list[int], epochs: int) -> tuple[float, np.ndarray]:
    models = seeded_models(LAYERS, seeds)
    final = []
    start = time.perf_counter()
    for r, model in enumerate(models):
        history = Trainer(model, nn.MSELoss(), "adam", lr=LR).fit(X[r], y[r], epochs)
        final.append(history.epochs[-1]["train_loss"])
    return time.perf_counter() - start, np.array(final)


def best_threads(run, X, y, seeds, epochs, options) -> tuple[int, dict[int, float]]:
    """Probe each thread count on a short run; the fastest wins."""
    times = {}
    for threads in options:
        with threads_set_to(threads):
            run(X, y, seeds, epochs)  # warm-up
            times[threads] = run(X, y, seeds, epochs)[0]
    return min(times, key=times.get), times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--one-by-one", type=int, default=None, metavar="N",
                        help="time only N models one by one and scale to --models (default: all)")
    args = parser.parse_args(argv)
    all_threads = torch.get_num_threads()
    options = sorted({1, all_threads})
    R, epochs = args.models, args.epochs
    seeds = list(range(R))
    X, y = workload(R)
    flops = R * epochs * mlp_training_step_flops(LAYERS, N_TRAIN)
    print(f"{R} models, MLP {'→'.join(map(str, LAYERS))}, {epochs} epochs, {N_TRAIN} rows each, Adam lr={LR:g}, "
          f"float32; torch {torch.__version__}, {all_threads} threads available", flush=True)

    vec_threads, vec_probe = best_threads(run_vectorized, X, y, seeds, 20, options)
    k = min(R, 20)  # long enough (~0.5 s) that the probe is not decided by noise
    one_threads, one_probe = best_threads(run_one_by_one, X[:k], y[:k], seeds[:k], 50, options)
    print("thread probe: vectorized (20 epochs) " + ", ".join(f"{t}: {s:.2f} s" for t, s in vec_probe.items())
          + f"; one by one ({k} models, 50 epochs) " + ", ".join(f"{t}: {s:.2f} s" for t, s in one_probe.items()),
          flush=True)

    with threads_set_to(vec_threads):
        vec_seconds, vec_loss = run_vectorized(X, y, seeds, epochs)
    n_alone = R if args.one_by_one is None else min(args.one_by_one, R)
    with threads_set_to(one_threads):
        one_seconds, one_loss = run_one_by_one(X[:n_alone], y[:n_alone], seeds[:n_alone], epochs)
    scaled = n_alone < R
    one_seconds_all = one_seconds * R / n_alone
    peak = time_matmul(2048, cpu_target(all_threads), repeats=5).best_gflops
    effective = flops / vec_seconds / 1e9

    print()
    print(f"one by one ({one_threads} thread{'s' if one_threads > 1 else ''}): {one_seconds_all:8.1f} s"
          + (f"  (scaled from {n_alone} models: {one_seconds:.1f} s)" if scaled else ""))
    print(f"vectorized ({vec_threads} thread{'s' if vec_threads > 1 else ''}):  {vec_seconds:8.1f} s")
    print(f"speed-up: {one_seconds_all / vec_seconds:.1f}x")
    print(f"vectorized: {flops / 1e9:.0f} GFLOP of matrix products in {vec_seconds:.1f} s = {effective:.1f} GFLOP/s; "
          f"float32 matmul peak (2048², {all_threads} threads) {peak:.1f} GFLOP/s -> {100 * effective / peak:.0f}% of peak")
    print(f"median final training loss: vectorized {np.median(vec_loss):.6g}, one by one "
          f"{np.median(one_loss):.6g} (same models, same rows; float32 rounding differs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
