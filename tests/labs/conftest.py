import pytest
import torch


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """run_lab sets torch's thread count for the whole process; put it back after each lab test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
