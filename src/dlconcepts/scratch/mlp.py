"""An MLP as matrix operations: each layer is `X·Wᵀ + b`, then an activation.

Weights follow PyTorch's `nn.Linear` layout, W of shape (outputs, inputs), so `W` and `b` can be
taken straight from a module's state_dict. The course numbers the nodes of its network
x1, x2 → n3, n4, n5 → n6, n7 → y and names each weight after the two nodes it joins (w13 joins
x1 to n3, w6y joins n6 to y); `parameter_names` gives those names for any layer sizes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def sigmoid(z: np.ndarray) -> np.ndarray:
    """σ(z) = 1 / (1 + e^(−z)), computed without overflow for large |z|."""
    z = np.asarray(z, dtype=np.float64)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def relu(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0)


def identity(z: np.ndarray) -> np.ndarray:
    return np.asarray(z, dtype=np.float64)


ACTIVATIONS = {"identity": identity, "sigmoid": sigmoid, "tanh": np.tanh, "relu": relu}


@dataclass(frozen=True)
class Layer:
    """One layer: W of shape (outputs, inputs), b of shape (outputs,), then `activation` by name."""

    W: np.ndarray
    b: np.ndarray
    activation: str = "identity"


@dataclass(frozen=True)
class LayerOutputs:
    """What one layer computed: the weighted sums Z = X·Wᵀ + b and the activations A = f(Z)."""

    Z: np.ndarray
    A: np.ndarray


def forward_as_matrices(X: np.ndarray, layers: Sequence[Layer]) -> list[LayerOutputs]:
    """Run X (rows = examples) through the layers; returns every layer's Z and A, first to last."""
    A = np.asarray(X, dtype=np.float64)
    outputs = []
    for layer in layers:
        Z = A @ np.asarray(layer.W, dtype=np.float64).T + np.asarray(layer.b, dtype=np.float64)
        A = ACTIVATIONS[layer.activation](Z)
        outputs.append(LayerOutputs(Z=Z, A=A))
    return outputs


def node_labels(layer_sizes: Sequence[int]) -> list[list[str]]:
    """Course numbering: inputs 1..d, then every hidden node numbered on; a single output is 'y'.

    (2, 3, 2, 1) -> [['1', '2'], ['3', '4', '5'], ['6', '7'], ['y']]. Several outputs are y1, y2, ...
    """
    labels, k = [], 1
    for size in layer_sizes[:-1]:
        labels.append([str(k + i) for i in range(size)])
        k += size
    last = layer_sizes[-1]
    labels.append(["y"] if last == 1 else [f"y{i + 1}" for i in range(last)])
    return labels


def node_names(layer_sizes: Sequence[int]) -> list[list[str]]:
    """Display names of every node, as on the slides: inputs x1, x2; hidden n3, n4, ...; output y (or y1, y2, ...)."""
    labels = node_labels(layer_sizes)
    names = [[f"x{label}" for label in labels[0]]]
    names += [[f"n{label}" for label in hidden] for hidden in labels[1:-1]]
    names.append(list(labels[-1]))
    return names


def layer_sizes_of(layers: Sequence[Layer]) -> tuple[int, ...]:
    """(inputs, outputs of layer 1, ..., outputs of the last layer)."""
    return (int(np.shape(layers[0].W)[1]), *(int(np.shape(layer.W)[0]) for layer in layers))


def parameter_names(layer_sizes: Sequence[int]) -> list[tuple[list[list[str]], list[str]]]:
    """For each layer, the course's names of W's entries (same shape as W) and of b's entries.

    (2, 3, 2, 1) gives W1 names [['w13', 'w23'], ['w14', 'w24'], ['w15', 'w25']], b1 names
    ['b3', 'b4', 'b5'], ..., W3 names [['w6y', 'w7y']], b3 names ['b_y']. When a node label has
    more than one character the two labels are joined with '_' (w10_12) so names stay unambiguous.
    """
    labels = node_labels(layer_sizes)
    out = []
    for src, dst in zip(labels[:-1], labels[1:]):
        def weight(i: str, j: str) -> str:
            return f"w{i}{j}" if len(i) == 1 and len(j) == 1 else f"w{i}_{j}"

        W = [[weight(i, j) for i in src] for j in dst]
        b = [f"b_{j}" if j.startswith("y") else f"b{j}" for j in dst]
        out.append((W, b))
    return out
