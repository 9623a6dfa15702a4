"""DigitsCNN works on 8×8 and 28×28 digits with one parameter count; MLP widths for a parameter budget."""

import pytest
import torch
from torch import nn

from dlconcepts.nets.cnn import DigitsCNN
from dlconcepts.nets.mlp import mlp, mlp_parameter_count, mlp_sizes_for_budget


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_digits_cnn_takes_8x8_and_28x28_and_counts_by_hand():
    model = DigitsCNN((16, 32), num_classes=10)
    assert model(torch.rand(3, 1, 8, 8)).shape == (3, 10)
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    # conv weights (no bias) + BatchNorm γ, β per channel + the Linear layer:
    by_hand = (1 * 16 * 9 + 16 * 16 * 9 + 16 * 32 * 9 + 32 * 32 * 9) + 2 * (16 + 16 + 32 + 32) + (32 + 1) * 10
    assert _count(model) == by_hand == 16_794
    assert model.first_filters.shape == (16, 1, 3, 3)
    pooled = DigitsCNN((8, 16), pooled_size=2, convs_per_stage=1)
    assert pooled(torch.rand(2, 1, 8, 8)).shape == (2, 10) and pooled(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert _count(pooled) == (9 * 8 + 8 * 16 * 9) + 2 * (8 + 16) + (16 * 4 + 1) * 10
    with pytest.raises(ValueError):
        DigitsCNN(())


def test_mlp_parameter_count_matches_torch():
    for sizes in [(64, 10), (64, 224, 10), (784, 30, 30, 10)]:
        assert mlp_parameter_count(sizes) == _count(mlp(sizes))


@pytest.mark.parametrize("inputs,depth,budget", [(64, 1, 16_794), (64, 2, 16_794), (64, 3, 16_794), (784, 2, 65_834), (64, 3, 50)])
def test_mlp_sizes_for_budget_is_the_closest_width(inputs, depth, budget):
    sizes = mlp_sizes_for_budget(inputs, 10, depth, budget)
    assert len(sizes) == depth + 2 and len(set(sizes[1:-1])) == 1
    best = min(range(1, 2000), key=lambda h: abs(mlp_parameter_count((inputs, *[h] * depth, 10)) - budget))
    assert sizes[1] == best  # brute force over every width agrees
    if budget > 1000:
        assert abs(mlp_parameter_count(sizes) - budget) / budget < 0.05
