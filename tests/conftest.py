import matplotlib
import pytest
import torch

matplotlib.use("Agg")


@pytest.fixture
def one_torch_thread():
    """Tiny models run fastest on one thread; on a busy 2-core machine a second one only waits.
    Modules whose models are tiny use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
