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
