"""explain/speed.py: FLOP counts by hand and against torch's own FLOP counter; the timing's mechanics.

No test here asserts that anything is fast or that threads help: the machine is shared and its
timings are noise-prone. What is checked is what the code promises whatever the clock says:
the counts, positive finite times, the thread count restored, synchronisation around timed
regions, absent devices skipped and reported.
"""

import math

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dlconcepts.errors import UserError
from dlconcepts.explain import speed
from dlconcepts.explain.speed import (
    MeasurementPlan,
    Target,
    Timing,
    compare,
    cpu_target,
    linear_forward_flops,
    linear_layer_sizes,
    matmul_flops,
    measurement_plan,
    mlp_training_step_flops,
    threads_set_to,
    time_calls,
    time_matmul,
    time_training_step,
    training_mlp_sizes,
)
from dlconcepts.nets import mlp


def counted_by_torch(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


# --- FLOP counts ---------------------------------------------------------------------------------

def test_matmul_flops_by_hand_and_by_torch():
    # 2×2 by 2×2: 4 entries, each 2 multiply-adds = 4 FLOPs -> 16; 3×3: 9 entries × 3 × 2 = 54.
    assert matmul_flops(1) == 2
    assert matmul_flops(2) == 16
    assert matmul_flops(3) == 54
    for n in (1, 5, 17):
        a = torch.randn(n, n)
        assert counted_by_torch(lambda: torch.mm(a, a)) == matmul_flops(n)


def test_linear_forward_flops_by_hand_and_by_torch():
    # batch 4, 5 -> 7: the product [4,5]·[5,7] has 28 entries of 5 multiply-adds: 28 · 5 · 2 = 280.
    assert linear_forward_flops(4, 5, 7) == 280
    layer = nn.Linear(5, 7)
    x = torch.randn(4, 5)
    assert counted_by_torch(lambda: layer(x)) == 280  # the bias add is not counted, by torch either


def test_training_step_flops_by_hand():
    # layers 5->7, 7->3, 3->2 on batch 4: forward 2·4·(35 + 21 + 6) = 496; weight gradients 496;
    # input gradients of layers 2 and 3 only: 2·4·(21 + 6) = 216.
    assert mlp_training_step_flops((5, 7, 3, 2), 4) == 496 + 496 + 216


@pytest.mark.parametrize("sizes, batch", [((5, 7, 3, 2), 4), ((16, 16, 16, 1), 8), ((3, 1), 2)])
def test_training_step_flops_match_torch_counter(sizes, batch):
    model = mlp(sizes, "relu")
    x, y = torch.randn(batch, sizes[0]), torch.randn(batch, sizes[-1])
    assert counted_by_torch(lambda: nn.MSELoss()(model(x), y).backward()) == mlp_training_step_flops(sizes, batch)
    # When the data do need a gradient, autograd computes the first layer's input gradient too: 3× forward.
    x.requires_grad_(True)
    forward = sum(linear_forward_flops(batch, i, o) for i, o in zip(sizes[:-1], sizes[1:]))
    assert counted_by_torch(lambda: nn.MSELoss()(model(x), y).backward()) == 3 * forward


def test_flop_helpers_refuse_nonsense():
    with pytest.raises(ValueError):
        mlp_training_step_flops((5,), 4)
    with pytest.raises(ValueError):
        mlp_training_step_flops((5, 0, 1), 4)
    with pytest.raises(ValueError):
        linear_layer_sizes(nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 1)))
    with pytest.raises(ValueError):
        linear_layer_sizes(nn.Sequential(nn.ReLU()))
    assert linear_layer_sizes(mlp(training_mlp_sizes(8))) == (8, 8, 8, 1)


# --- devices -------------------------------------------------------------------------------------

def no_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_absent_devices_are_skipped_and_reported(monkeypatch):
    no_gpus(monkeypatch)
    plan = measurement_plan("auto", all_threads=2)
    assert [t.key for t in plan.targets] == ["cpu-1-thread", "cpu-2-threads"]
    assert [t.threads for t in plan.targets] == [1, 2]
    assert len(plan.absent) == 2
    assert "CUDA" in plan.absent[0] and "torch.cuda.is_available() is False" in plan.absent[0]
    assert "MPS" in plan.absent[1] and "torch.backends.mps.is_available() is False" in plan.absent[1]
    with pytest.raises(UserError, match="devices=cuda was asked for"):
        measurement_plan("cuda")
    with pytest.raises(UserError, match="devices=mps was asked for"):
        measurement_plan("mps")
    with pytest.raises(UserError, match="not known"):
        measurement_plan("tpu")


def test_present_gpu_is_measured_unless_cpu_only(monkeypatch):
    no_gpus(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "Pretend GPU")
    plan = measurement_plan("auto", all_threads=4)
    assert [t.key for t in plan.targets] == ["cpu-1-thread", "cpu-4-threads", "cuda"]
    cuda = plan.targets[-1]
    assert cuda.is_accelerator and cuda.threads is None and cuda.label == "CUDA (Pretend GPU)"
    cpu_only = measurement_plan("cpu", all_threads=4)
    assert [t.key for t in cpu_only.targets] == ["cpu-1-thread", "cpu-4-threads"]
    assert any("CUDA: present but not measured" in a for a in cpu_only.absent)


def test_all_threads_default_is_torchs_count_and_one_thread_is_not_measured_twice(monkeypatch):
    no_gpus(monkeypatch)
    assert measurement_plan().all_threads == torch.get_num_threads()
    assert [t.key for t in measurement_plan(all_threads=1).targets] == ["cpu-1-thread"]


# --- timing mechanics ----------------------------------------------------------------------------

@pytest.fixture
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


def test_threads_are_set_inside_and_restored_after_even_on_error(two_threads):
    with threads_set_to(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == 2
    with pytest.raises(RuntimeError):
        with threads_set_to(1):
            raise RuntimeError("interrupted measurement")
    assert torch.get_num_threads() == 2
    with threads_set_to(None):
        assert torch.get_num_threads() == 2


def test_time_matmul_gives_positive_finite_times_and_restores_threads(two_threads):
    timing = time_matmul(16, cpu_target(1), repeats=3, min_repeat_seconds=0.001)
    assert torch.get_num_threads() == 2
    assert (timing.operation, timing.size, timing.flops) == ("matmul", 16, 2 * 16**3)
    assert len(timing.seconds) == 3 and timing.calls_per_repeat >= 1
    assert all(math.isfinite(s) and s > 0 for s in timing.seconds)
    assert timing.min_s <= timing.median_s
    assert timing.best_gflops >= timing.gflops > 0
    assert math.isfinite(timing.cores_busy) and timing.cores_busy >= 0
    assert timing.cpu_share == timing.cores_busy  # one thread asked for


def test_time_training_step_restores_threads_and_leaves_the_model_untouched(two_threads):
    model = mlp(training_mlp_sizes(8), "relu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    timing = time_training_step(model, 4, cpu_target(1), repeats=2, min_repeat_seconds=0.001, lr=0.1)
    assert torch.get_num_threads() == 2
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert (timing.operation, timing.size) == ("training step", 8)
    assert timing.flops == mlp_training_step_flops((8, 8, 8, 1), 4)
    assert all(math.isfinite(s) and s > 0 for s in timing.seconds)


class FakeClock:
    """perf_counter that advances only when the timed call runs: exact, noise-free timing."""

    def __init__(self, seconds_per_call: float):
        self.now = 0.0
        self.seconds_per_call = seconds_per_call
        self.calls = 0

    def perf_counter(self) -> float:
        return self.now

    def call(self) -> None:
        self.now += self.seconds_per_call
        self.calls += 1


def test_calls_are_batched_until_a_repeat_is_long_enough(monkeypatch):
    tick = 2.0**-11  # ≈ 0.5 ms, a power of two so that sums of ticks are exact in floating point
    clock = FakeClock(tick)
    monkeypatch.setattr(speed.time, "perf_counter", clock.perf_counter)
    measured = time_calls(clock.call, torch.device("cpu"), repeats=3, warmup=2, min_repeat_seconds=8 * tick)
    # 1, 2, 4 calls are shorter than 8 ticks; 8 calls last exactly 8 ticks.
    assert measured.calls_per_repeat == 8
    assert measured.seconds == (tick, tick, tick)
    assert clock.calls == 2 + (1 + 2 + 4 + 8) + 3 * 8  # warm-up, calibration, timed repeats
    capped = time_calls(clock.call, torch.device("cpu"), repeats=1, min_repeat_seconds=10.0, max_calls=16)
    assert capped.calls_per_repeat == 16


@pytest.mark.parametrize("kind", ["cuda", "mps"])
def test_accelerators_are_synchronized_around_every_timed_region(monkeypatch, kind):
    events = []
    if kind == "cuda":
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *_: events.append("sync"))
    else:
        monkeypatch.setattr(torch.mps, "synchronize", lambda: events.append("sync"))
    time_calls(lambda: events.append("call"), torch.device(kind), repeats=2, warmup=1, min_repeat_seconds=0)
    # warm-up call, then a sync; calibration and each repeat: sync, call, sync.
    assert events == ["call", "sync"] + ["sync", "call", "sync"] * 3


def test_time_calls_refuses_nonsense():
    with pytest.raises(ValueError):
        time_calls(lambda: None, torch.device("cpu"), repeats=0)


# --- a busy machine ------------------------------------------------------------------------------

def test_disturbed_means_cores_taken_or_repeats_spread():
    two = cpu_target(2)
    gpu = Target("cuda", "CUDA (pretend)", torch.device("cuda"), None)
    assert not speed.is_disturbed(Timing("matmul", 8, two, 1024, (1.0, 1.05), 1, 1.9))  # 95% of 2 cores, 5% spread
    assert speed.is_disturbed(Timing("matmul", 8, two, 1024, (1.0, 1.05), 1, 1.2))  # 60% of 2 cores
    assert speed.is_disturbed(Timing("matmul", 8, two, 1024, (1.0, 2.0, 3.0), 1, 2.0))  # median 2× the fastest
    assert not speed.is_disturbed(Timing("matmul", 8, gpu, 1024, (1.0,), 1, 0.3))  # a GPU's host thread may idle


def test_measure_until_quiet_retries_only_disturbed_timings():
    one = cpu_target(1)
    quiet, busy, busier = ((Timing("matmul", 8, one, 1024, (s,), 1, share)) for s, share in
                           ((1.0, 1.0), (2.0, 0.5), (3.0, 0.4)))
    queue = [busy, quiet, busier]
    assert speed.measure_until_quiet(lambda: queue.pop(0), retries=2) == (quiet, 2)
    queue = [busier, busy, busier, quiet]
    assert speed.measure_until_quiet(lambda: queue.pop(0), retries=2) == (busy, 3)  # all disturbed: the fastest
    queue = [busy, quiet]
    assert speed.measure_until_quiet(lambda: queue.pop(0), retries=0) == (busy, 1)


# --- comparing -----------------------------------------------------------------------------------

def test_speedups_and_shares_of_peak_by_hand():
    one, two = cpu_target(1), cpu_target(2)
    gpu = Target("cuda", "CUDA (pretend)", torch.device("cuda"), None)
    plan = MeasurementPlan((one, two, gpu), (), 2)
    timings = [
        Timing("matmul", 10, one, 2000, (1e-6, 2e-6, 3e-6), 1, 1.0),  # median 2 µs: 1 GFLOP/s
        Timing("matmul", 20, one, 16000, (4e-6,), 1, 1.0),  # 4 GFLOP/s: the peak of `one`
        Timing("matmul", 10, two, 2000, (1e-6,), 1, 1.0),  # 2 GFLOP/s
        Timing("matmul", 20, two, 16000, (2e-6,), 1, 1.0),  # 8 GFLOP/s: the peak of `two`
        Timing("matmul", 10, gpu, 2000, (4e-6,), 1, 1.0),  # 0.5 GFLOP/s
        Timing("matmul", 20, gpu, 16000, (0.5e-6,), 1, 1.0),  # 32 GFLOP/s: the peak of `gpu`
    ]
    assert timings[0].median_s == 2e-6 and timings[0].min_s == 1e-6
    assert timings[0].gflops == pytest.approx(1.0) and timings[0].best_gflops == pytest.approx(2.0)
    assert timings[2].cpu_share == 0.5 and timings[4].cpu_share is None  # 1 of 2 cores; a GPU has no share
    rows = compare(timings, plan)
    share = [r.share_of_peak for r in rows]
    assert share == pytest.approx([0.25, 1.0, 0.25, 1.0, 0.5 / 32, 1.0])
    assert [r.speedup_over_one_thread for r in rows] == pytest.approx([1, 1, 2, 2, 0.5, 8])
    assert [r.speedup_over_all_threads for r in rows][:4] == [None] * 4
    assert [r.speedup_over_all_threads for r in rows][4:] == pytest.approx([0.25, 4])
