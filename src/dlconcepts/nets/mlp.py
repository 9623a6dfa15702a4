"""The multilayer perceptron, built as the course writes it: `nn.Sequential` of Linear layers and activations.

`mlp((1, 30, 15, 1), "relu")` is `Sequential(Linear(1,30), ReLU(), Linear(30,15), ReLU(), Linear(15,1))`:
every hidden layer is followed by the activation (and dropout, when asked); the output layer is
left linear, so regression outputs are unbounded and classifiers output logits for CrossEntropyLoss.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "elu": nn.ELU,  # smooth below 0, so no unit dies; the autoencoders train better with it
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}


def mlp(layer_sizes: Sequence[int], activation: str = "relu", dropout: float = 0.0) -> nn.Sequential:
    """An MLP with `layer_sizes = (inputs, hidden..., outputs)`, linear output (logits for classifiers)."""
    if len(layer_sizes) < 2 or any(int(s) < 1 for s in layer_sizes):
        raise ValueError(f"layer_sizes must be at least (inputs, outputs), all >= 1; got {tuple(layer_sizes)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation {activation!r} is not one of {', '.join(ACTIVATIONS)}")
    layers: list[nn.Module] = []
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    for i, (fan_in, fan_out) in enumerate(pairs):
        layers.append(nn.Linear(int(fan_in), int(fan_out)))
        if i < len(pairs) - 1:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def mlp_parameter_count(layer_sizes: Sequence[int]) -> int:
    """Weights and biases of `mlp(layer_sizes)`: Σ (fan_in + 1) · fan_out over its Linear layers."""
    return sum((int(a) + 1) * int(b) for a, b in zip(layer_sizes[:-1], layer_sizes[1:]))


def mlp_sizes_for_budget(inputs: int, outputs: int, depth: int, budget: int) -> tuple[int, ...]:
    """Layer sizes (inputs, h, …, h, outputs) with `depth` hidden layers of one width h, h chosen so
    that the parameter count is as close to `budget` as a whole number of units allows.

    For comparing models "at the same parameter budget": the count grows with h (linearly for one
    hidden layer, quadratically for more), so the best h is found by bisection and its neighbour.
    """
    if depth < 1 or budget < 1:
        raise ValueError(f"need depth >= 1 and budget >= 1; got depth={depth}, budget={budget}")

    def count(h: int) -> int:
        return mlp_parameter_count((inputs, *([h] * depth), outputs))

    low, high = 1, 1
    while count(high) < budget:
        high *= 2
    while high - low > 1:  # invariant: count(low) < budget <= count(high), or low = high - 1
        mid = (low + high) // 2
        if count(mid) < budget:
            low = mid
        else:
            high = mid
    h = min((low, high), key=lambda w: abs(count(w) - budget))
    return (inputs, *([h] * depth), outputs)
