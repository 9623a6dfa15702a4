import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """PPO's networks are tiny: one thread, as the labs run them (extra threads only wait on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
