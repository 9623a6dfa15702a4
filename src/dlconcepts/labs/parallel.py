"""Lab `parallel`: how much parallel computing speeds up the matrix operations of a network.

The course's slide "Use parallel computing to speed up matrix operation" (seed/000_d8a1240394ee839b.txt,
after "Use Excel to verify") writes the MLP as matrix products, y = σ(W^L … σ(W¹x + b¹) … + b^L), and
moves its tensors to `cuda` when one is available. This lab measures what that buys on the machine
it runs on: an n×n matmul for growing n, and one training step of a width→width→width→1 MLP for
growing width, each on the CPU with 1 thread, on the CPU with all threads, and on CUDA or MPS when
torch sees one. It reports GFLOP/s, the speed-ups, and the share of the measured peak (the largest
matmul on the same device) that each size reaches. The timing itself lives in `explain/speed.py`.

Times vary from run to run (shared machines, clock boost, other processes); the seed fixes the
matrices and the model, not the clock.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from dlconcepts.config import param
from dlconcepts.explain.speed import (
    DEVICE_CHOICES,
    DTYPES,
    MIN_CPU_SHARE,
    NOISY_SPREAD,
    Comparison,
    MeasurementPlan,
    Timing,
    compare,
    is_disturbed,
    matmul_flops,
    measure_until_quiet,
    measurement_plan,
    time_matmul,
    time_training_step,
    training_mlp_sizes,
)
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import mlp
import dlconcepts.report.figures  # noqa: F401 — sets matplotlib's file-only backend before pyplot loads


@dataclass(frozen=True)
class Config:
    sizes: tuple[int, ...] = param((64, 128, 256, 512, 1024, 2048), "n of the n×n by n×n matmuls to time; the largest sets each device's peak", positive=True, maximum=8192)
    widths: tuple[int, ...] = param((64, 256, 1024, 2048), "widths of the MLP width→width→width→1 whose training step is timed", positive=True, maximum=8192)
    batch: int = param(256, "rows per training step", positive=True)
    devices: str = param("auto", "auto: CPU 1 thread, CPU all threads, CUDA/MPS if present; cpu: CPU only; cuda/mps: CPU and that GPU (refused if absent)", choices=DEVICE_CHOICES)
    dtype: str = param("float32", "floating-point type of the matrices and the model", choices=tuple(DTYPES))
    repeats: int = param(5, "timed repeats per measurement; the median is reported, the minimum kept", positive=True)
    warmup: int = param(1, "untimed calls before timing (thread pools, GPU handles, first-touch of memory)", minimum=0)
    min_repeat_seconds: float = param(0.02, "calls are batched until one repeat lasts this long, so tiny sizes are timed above the clock's resolution", minimum=0)
    retries: int = param(2, "re-measurements of a timing disturbed by other processes (CPU share or spread off); 0 = none", minimum=0)


def run(cfg: Config, ctx: LabContext) -> Result:
    plan = measurement_plan(cfg.devices)
    dtype = DTYPES[cfg.dtype]
    sizes, widths = sorted(set(cfg.sizes)), sorted(set(cfg.widths))
    ctx.log(f"  measuring on: {', '.join(t.label for t in plan.targets)} "
            f"(all threads = torch.get_num_threads() = {plan.all_threads})")
    for note in plan.absent:
        ctx.log(f"  {note}")

    # Built before any timing and only copied by it: the saved model is the seeded initial one.
    models = {w: mlp(training_mlp_sizes(w), "relu") for w in widths}
    timing_options = dict(dtype=dtype, repeats=cfg.repeats, warmup=cfg.warmup,
                          min_repeat_seconds=cfg.min_repeat_seconds, seed=ctx.runtime.seed)
    load_before = _load_average()
    # Size by size, every target in turn: a pair that is compared is measured close together in time,
    # so a change of load on a shared machine disturbs both rather than one side of the comparison.
    timings: list[Timing] = []
    attempts = 0

    def measure(what, *args) -> None:
        nonlocal attempts
        timing, tries = measure_until_quiet(lambda: what(*args, **timing_options), cfg.retries)
        timings.append(timing)
        attempts += tries
        name = "matmul n" if timing.operation == "matmul" else "training step width"
        ctx.log(f"  {name}={timing.size} on {timing.target.label}: {_duration(timing.median_s)}, {timing.gflops:.1f} GFLOP/s"
                + (f" ({tries} tries)" if tries > 1 else "") + (" — disturbed" if is_disturbed(timing) else ""))

    for n in sizes:
        for target in plan.targets:
            measure(time_matmul, n, target)
    for w in widths:
        for target in plan.targets:
            measure(time_training_step, models[w], cfg.batch, target)
    load = (load_before, _load_average())
    rows = compare(timings, plan)

    ctx.run.save_figure(_gflops_figure(rows, plan, "matmul", "n (matrices n×n)", "matmul C = A·B"),
                        "matmul_gflops",
                        "GFLOP/s of an n×n matmul (2n³ FLOPs) against n, per device, log-log; dotted: "
                        "each device's peak, its largest matmul.")
    ctx.run.save_figure(_gflops_figure(rows, plan, "training step", "width of the MLP width→width→width→1",
                                       f"MLP training step, batch {cfg.batch}"),
                        "training_step_gflops",
                        "GFLOP/s of one MLP training step (forward, MSE, backward, SGD; matmul FLOPs only) "
                        "against width, per device; dotted: each device's matmul peak.")
    ctx.run.save_figure(_speedup_figure(rows, plan), "speedup",
                        "Speed-up over the CPU with 1 thread (and of a GPU over all CPU threads) against size; "
                        "dashed: the ideal speed-up, the number of threads.")
    smallest = widths[0]
    ctx.run.save_model({"model": models[smallest].state_dict(), "layer_sizes": list(training_mlp_sizes(smallest)),
                        "activation": "relu",
                        "note": "initial weights of the smallest MLP whose training step was timed; trained on nothing"})

    findings = _findings(rows, plan, cfg, smallest, load, attempts)
    largest = [r for r in rows if r.timing.operation == "matmul" and r.timing.size == sizes[-1]]
    headline = f"matmul n={sizes[-1]}: " + ", ".join(f"{r.timing.target.label} {r.timing.gflops:.0f} GFLOP/s" for r in largest)
    return Result(
        metrics={
            "targets": [t.key for t in plan.targets],
            "absent": list(plan.absent),
            "all_threads": plan.all_threads,
            "cpu_count": os.cpu_count(),
            "load_average_1min": {"before": load[0], "after": load[1]},
            "peak_gflops": {t.key: next(r.peak_gflops for r in rows if r.timing.target == t) for t in plan.targets},
            "timings": [{**r.timing.as_dict(), "share_of_peak": r.share_of_peak,
                         "speedup_over_one_thread": r.speedup_over_one_thread,
                         "speedup_over_all_threads": r.speedup_over_all_threads} for r in rows],
            "model_saved": f"width {smallest}",
            "measurements": len(timings),
            "attempts": attempts,
            "disturbed": sum(is_disturbed(t) for t in timings),
        },
        table=_table(rows),
        findings=findings,
        headline=headline,
    )


# --- the report ---------------------------------------------------------------------------------

def _load_average() -> float | None:
    """The 1-minute load average (runnable processes, this one included); None where the OS has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _times(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}×"


def _table(rows: Sequence[Comparison]) -> list[tuple[str, ...]]:
    header = ("operation", "size", "device", "median time (fastest)", "GFLOP/s (median)", "share of peak",
              "speed-up over CPU 1 thread", "speed-up over CPU all threads", "CPU cores busy")
    order = sorted(rows, key=lambda r: (r.timing.operation != "matmul", r.timing.size))

    def cores(t: Timing) -> str:
        busy = f"{t.cores_busy:.2f}" + ("" if t.target.threads is None else f" of {t.target.threads}")
        return busy + (" ⚠ disturbed" if is_disturbed(t) else "")

    return [header] + [
        (r.timing.operation, str(r.timing.size), r.timing.target.label,
         f"{_duration(r.timing.median_s)} ({_duration(r.timing.min_s)})", f"{r.timing.gflops:.1f}",
         f"{100 * r.share_of_peak:.0f}%", _times(r.speedup_over_one_thread), _times(r.speedup_over_all_threads),
         cores(r.timing))
        for r in order
    ]


def _findings(rows: Sequence[Comparison], plan: MeasurementPlan, cfg: Config, smallest_width: int,
              load: tuple[float | None, float | None], attempts: int) -> list[str]:
    one, many = plan.targets[0], next((t for t in plan.targets if not t.is_accelerator and t.threads == plan.all_threads), None)
    if many == one:
        many = None
    gpus = [t for t in plan.targets if t.is_accelerator]

    def of(operation: str, target) -> list[Comparison]:
        return sorted((r for r in rows if r.timing.operation == operation and r.timing.target == target),
                      key=lambda r: r.timing.size)

    def pair_disturbed(r: Comparison) -> bool:
        base = next(b for b in of(r.timing.operation, one) if b.timing.size == r.timing.size)
        return is_disturbed(r.timing) or is_disturbed(base.timing)

    def caveat(r: Comparison) -> str:
        return " (disturbed: see the caution below)" if pair_disturbed(r) else ""

    out = [f"Measured: {'; '.join(t.label for t in plan.targets)}. 'All threads' is torch.get_num_threads() = "
           f"{plan.all_threads} at the start of the lab. " + (" ".join(f"{a}." for a in plan.absent) if plan.absent else "")]

    if many is not None:
        mm = of("matmul", many)
        big = mm[-1]
        ideal = many.threads
        out.append(f"With {ideal} threads the n={big.timing.size} matmul runs {big.speedup_over_one_thread:.2f}× as fast "
                   f"as with 1 thread ({big.timing.gflops:.0f} vs {big.timing.gflops / big.speedup_over_one_thread:.0f} "
                   f"GFLOP/s; the ideal is {ideal}×, {100 * big.speedup_over_one_thread / ideal:.0f}% of it reached)"
                   f"{caveat(big)}.")
        # Threads "pay off" once they bring at least half of the ideal gain: 1.5× with 2 threads.
        # Only undisturbed pairs are judged: a busy machine makes threads look useless at any size.
        pays_off = 1 + (ideal - 1) / 2
        clean = [r for r in mm if not pair_disturbed(r)]
        weak = [r for r in clean if r.speedup_over_one_thread < pays_off]
        if weak:
            single = {r.timing.size: r for r in of("matmul", one)}
            small = weak[0]
            sizes = ", ".join(f"n={r.timing.size} ({r.speedup_over_one_thread:.2f}×)" for r in weak)
            out.append(
                f"Threads gain less than half of the ideal at {sizes}. The n={small.timing.size} product is "
                f"{matmul_flops(small.timing.size) / 1e6:.2f} MFLOP, done in {_duration(single[small.timing.size].timing.median_s)} "
                f"on one thread and {_duration(small.timing.median_s)} on {ideal}: handing parts of it to other threads "
                f"and waiting for them to finish costs microseconds whatever n is, so it pays only once the product "
                f"takes much longer than that.")
        elif clean:
            out.append(f"Threads bring at least half of the ideal gain at every undisturbed size measured, "
                       f"from n={clean[0].timing.size} up.")

    for target in plan.targets:
        mm = of("matmul", target)
        first_near_peak = next((r for r in mm if r.share_of_peak >= 0.9), mm[-1])
        above = [r for r in mm[:-1] if r.share_of_peak > 1.10]  # within 10%: the repeats' own noise
        sentence = (f"On {target.label} the smallest matmul (n={mm[0].timing.size}) reaches {100 * mm[0].share_of_peak:.0f}% "
                    f"of the peak ({mm[-1].peak_gflops:.0f} GFLOP/s at n={mm[-1].timing.size}); 90% is first reached at "
                    f"n={first_near_peak.timing.size}.")
        if is_disturbed(mm[-1].timing):
            sentence += (f" The peak measurement itself was disturbed (see the caution below): shares on {target.label} "
                         "are overstated, and sizes above 100% mean the peak is too low, not that they are faster.")
        elif above:
            sentence += (" " + ", ".join(f"n={r.timing.size}" for r in above) + " ran faster than the largest size "
                         f"({', '.join(f'{100 * r.share_of_peak:.0f}%' for r in above)}): the peak here is the largest "
                         "size's speed, and a size that fits the caches better, or a quieter moment, can beat it.")
        out.append(sentence)

    for target in plan.targets:
        steps = of("training step", target)
        big, small = steps[-1], steps[0]
        out.append(f"On {target.label} one training step of the width-{big.timing.size} MLP (batch {cfg.batch}) runs at "
                   f"{big.timing.gflops:.0f} GFLOP/s, {100 * big.share_of_peak:.0f}% of the matmul peak; at width "
                   f"{small.timing.size} it reaches {100 * small.share_of_peak:.0f}% ({_duration(small.timing.median_s)} a step): "
                   f"its matmuls are small ({cfg.batch}×{small.timing.size} by {small.timing.size}×{small.timing.size}), "
                   "so the fixed cost of each of the step's operations (Python, autograd, dispatch) and the "
                   "elementwise work not counted as FLOPs (activations, loss, update) weigh more than the arithmetic"
                   + (" (disturbed: see the caution below)." if is_disturbed(big.timing) or is_disturbed(small.timing) else "."))
        if many is not None and target == many:
            out.append(f"With {many.threads} threads the training step runs {big.speedup_over_one_thread:.2f}× as fast at "
                       f"width {big.timing.size}{caveat(big)}, and {small.speedup_over_one_thread:.2f}× at width "
                       f"{small.timing.size}{caveat(small)}.")

    for gpu in gpus:
        mm = of("matmul", gpu)
        big = mm[-1]
        wins = [r for r in mm if r.speedup_over_all_threads is not None and r.speedup_over_all_threads > 1]
        text = (f"{gpu.label} runs the n={big.timing.size} matmul {big.speedup_over_all_threads:.1f}× faster than all CPU "
                f"threads ({big.timing.gflops:.0f} GFLOP/s); ")
        text += (f"it beats the CPU from n={wins[0].timing.size} on" if wins and wins == mm[mm.index(wins[0]):]
                 else "it is slower than the CPU at " + ", ".join(f"n={r.timing.size}" for r in mm if r not in wins))
        steps = of("training step", gpu)
        out.append(text + f"; the width-{steps[-1].timing.size} training step is "
                   f"{steps[-1].speedup_over_all_threads:.1f}× faster than on all CPU threads, the width-"
                   f"{steps[0].timing.size} one {steps[0].speedup_over_all_threads:.2f}× (a GPU launches a kernel per "
                   f"operation; tiny ones cost more to launch than to compute).")

    disturbed = [r.timing for r in rows if is_disturbed(r.timing)]
    if attempts > len(rows):
        out.append(f"Other work on the machine disturbed some measurements (CPU share below {MIN_CPU_SHARE} or median "
                   f"more than {NOISY_SPREAD - 1:.0%} above the fastest repeat); they were measured again, up to "
                   f"{cfg.retries} more times: {attempts} measurements for {len(rows)} results, "
                   f"{len(disturbed)} still disturbed.")
    if disturbed:
        # The worst first (least of its cores got), at most six: the table marks every one.
        ranked = sorted(disturbed, key=lambda t: (t.cpu_share if t.cpu_share is not None else 1.0, -t.spread))
        listed = "; ".join(
            f"{t.operation} {t.size} on {t.target.label}"
            + (f" (CPU share {t.cpu_share:.2f})" if t.cpu_share is not None and t.cpu_share < MIN_CPU_SHARE else "")
            + (f" (median {t.spread:.1f}× the fastest)" if t.spread > NOISY_SPREAD else "")
            for t in ranked[:6]) + (f"; and {len(ranked) - 6} more" if len(ranked) > 6 else "")
        load_text = ("" if None in load else f" The 1-minute load average was {load[0]:.2f} before and {load[1]:.2f} "
                     f"after the measurements, on {os.cpu_count()} logical CPUs.")
        out.append(f"Caution: {len(disturbed)} of {len(rows)} measurements were disturbed by other work on the machine "
                   f"(marked ⚠ in the table): {listed}. A threaded product waits for its slowest thread, so a core "
                   f"taken by another process can make threads slower than one; these numbers say more about the "
                   f"load than about parallel computing; rerun on a quiet machine for clean speed-ups.{load_text}")
    out.append(f"model.pt holds the initial weights of the smallest timed MLP ({'→'.join(map(str, training_mlp_sizes(smallest_width)))}); "
               "the timing trained copies of it on random numbers, so it has learned nothing.")
    return out


# --- figures ------------------------------------------------------------------------------------

def _gflops_figure(rows: Sequence[Comparison], plan: MeasurementPlan, operation: str, xlabel: str, title: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.4))
    for i, target in enumerate(plan.targets):
        mine = sorted((r for r in rows if r.timing.operation == operation and r.timing.target == target),
                      key=lambda r: r.timing.size)
        color = f"C{i}"
        ax.plot([r.timing.size for r in mine], [r.timing.gflops for r in mine], "o-", color=color, label=target.label)
        ax.axhline(mine[0].peak_gflops, color=color, ls=":", lw=1, label=f"{target.label}: peak (largest matmul)")
    disturbed = [r.timing for r in rows if r.timing.operation == operation and is_disturbed(r.timing)]
    if disturbed:
        ax.scatter([t.size for t in disturbed], [t.gflops for t in disturbed], s=110, facecolors="none",
                   edgecolors="red", linewidths=1.5, zorder=5, label="disturbed by other processes")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    sizes = sorted({r.timing.size for r in rows if r.timing.operation == operation})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    _plain_log_labels(ax.yaxis)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("GFLOP/s (median of the repeats)")
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _speedup_figure(rows: Sequence[Comparison], plan: MeasurementPlan):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10.4, 4.0))
    many = [t for t in plan.targets if not t.is_accelerator and t.threads != 1]
    for ax, operation, xlabel in ((axes[0], "matmul", "n (matrices n×n)"), (axes[1], "training step", "MLP width")):
        for i, target in enumerate(plan.targets[1:], start=1):
            mine = sorted((r for r in rows if r.timing.operation == operation and r.timing.target == target),
                          key=lambda r: r.timing.size)
            x = [r.timing.size for r in mine]
            ax.plot(x, [r.speedup_over_one_thread for r in mine], "o-", color=f"C{i}", label=f"{target.label} over CPU 1 thread")
            base_disturbed = {r.timing.size for r in rows if r.timing.operation == operation
                              and r.timing.target == plan.targets[0] and is_disturbed(r.timing)}
            hit = [r for r in mine if is_disturbed(r.timing) or r.timing.size in base_disturbed]
            if hit:
                ax.scatter([r.timing.size for r in hit], [r.speedup_over_one_thread for r in hit], s=110,
                           facecolors="none", edgecolors="red", linewidths=1.5, zorder=5,
                           label="disturbed by other processes")
            if target.is_accelerator:
                ax.plot(x, [r.speedup_over_all_threads for r in mine], "s--", color=f"C{i}",
                        label=f"{target.label} over all CPU threads")
        for t in many:
            ax.axhline(t.threads, color="grey", ls="--", lw=1, label=f"ideal for {t.threads} threads")
        ax.axhline(1, color="k", lw=0.8)
        sizes = sorted({r.timing.size for r in rows if r.timing.operation == operation})
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        if any(t.is_accelerator for t in plan.targets):
            ax.set_yscale("log")
            _plain_log_labels(ax.yaxis)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("speed-up (× faster)")
        ax.set_title(f"{operation}: speed-up")
        ax.grid(alpha=0.3, which="both")
        if len(plan.targets) > 1:
            ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _plain_log_labels(axis) -> None:
    """Ticks on a log axis at 1, 2, 5 × powers of ten, labelled as plain numbers (20, 50, 100, 200)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(NullFormatter())

LAB = Lab(
    id="parallel",
    title="Parallel computing speeds up the matrix operations: CPU threads and GPU, measured",
    function="X·W (matmul) and an MLP training step",
    loss="MSE (training step)",
    minimizer="none (measures speed)",
    data="seeded random matrices",
    typical_time="~10 s (quick ~2 s)",
    config=Config,
    run=run,
    quick={"sizes": (32, 64, 128), "widths": (32, 64), "batch": 64, "repeats": 3, "min_repeat_seconds": 0.005},
    prefers_cpu="",
)
