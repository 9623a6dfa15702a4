import numpy as np
import pytest
import torch

from dlconcepts.errors import UserError
from dlconcepts.runtime import choose_device, make_runtime, seed_everything


def test_auto_is_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("dlconcepts.runtime._mps_available", lambda: False)
    device, note = choose_device("auto")
    assert device.type == "cpu" and "no GPU" in note


def test_auto_prefers_cuda_then_respects_a_tiny_lab(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert choose_device("auto")[0].type == "cuda"
    device, note = choose_device("auto", prefers_cpu="a tiny MLP")
    assert device.type == "cpu"
    assert "a tiny MLP" in note and "--device cuda" in note


def test_auto_falls_back_to_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("dlconcepts.runtime._mps_available", lambda: True)
    assert choose_device("auto")[0].type == "mps"


def test_missing_device_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA GPU"):
        choose_device("cuda")
    with pytest.raises(UserError, match="not known"):
        choose_device("tpu")


def test_seeding_makes_models_and_numpy_repeat():
    seed_everything(3)
    a = (torch.nn.Linear(4, 3).weight.clone(), np.random.rand(3))
    seed_everything(3)
    b = (torch.nn.Linear(4, 3).weight.clone(), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_runtime_records_its_settings():
    before = torch.get_num_threads()
    try:
        rt = make_runtime("cpu", seed=5, threads=1)
        assert rt.as_dict()["seed"] == 5 and rt.threads == 1 and rt.device_name == "cpu"
    finally:
        torch.set_num_threads(before)
    with pytest.raises(UserError):
        make_runtime("cpu", seed=-1)
    with pytest.raises(UserError):
        make_runtime("cpu", threads=0)


def test_tiny_labs_take_one_thread_and_others_get_every_core_back():
    from dlconcepts.runtime import TORCH_DEFAULT_THREADS

    try:
        assert make_runtime("cpu", prefers_cpu="a tiny MLP").threads == 1
        assert make_runtime("cpu").threads == TORCH_DEFAULT_THREADS == torch.get_num_threads()
        assert make_runtime("cpu", threads=2, prefers_cpu="a tiny MLP").threads == 2  # asked for: obeyed
    finally:
        torch.set_num_threads(TORCH_DEFAULT_THREADS)
