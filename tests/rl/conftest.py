import pytest


@pytest.fixture(autouse=True)
def _ppo_on_one_thread(one_torch_thread):
    """PPO's networks are tiny: every test here runs on one thread, as the labs run them."""
