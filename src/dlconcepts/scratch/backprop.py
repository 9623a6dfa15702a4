"""Backpropagation by hand for any MLP given as a list of `scratch.mlp.Layer` (slides: "Machine learning model (2)").

The forward pass is `scratch.mlp.forward_as_matrices`: layer l computes Z_l = A_{l−1}·W_lᵀ + b_l and
A_l = f_l(Z_l), with A_0 = X (rows = examples). The loss is the mean squared error

    L = (1 / (N·K)) Σ_n Σ_k (ŷ_k^n − y_k^n)²        (N examples, K outputs)

— a *mean*, the same as `torch.nn.MSELoss()` with its default reduction='mean'.

Backward, from the output to the input, is the chain rule once per layer:

    δ_L      = ∂L/∂A_L ⊙ f'(Z_L)          with ∂L/∂A_L = 2 (Ŷ − Y) / (N·K)
    ∂L/∂W_l  = δ_lᵀ · A_{l−1}              ∂L/∂b_l = Σ_n δ_l^n
    δ_{l−1}  = (δ_l · W_l) ⊙ f'(Z_{l−1})

`chain_rule_terms` writes the same gradients the way the slides do, one parameter at a time, as a
sum over the paths from that parameter to the output of products of named factors
(∂L/∂w57 = ∂L/∂y · ∂y/∂n7 · ∂n7/∂w57), so the two can be held against each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .losses import mse as mse_loss  # L = mean of (ŷ − y)², like torch.nn.MSELoss()
from .mlp import (
    ACTIVATIONS,
    Layer,
    LayerOutputs,
    forward_as_matrices,
    layer_sizes_of,
    node_names,
    parameter_names,
)

# ---------------------------------------------------------------------------------------------
# Each activation's derivative, beside the activation it differentiates (scratch/mlp.py holds
# f itself). Written from Z and A = f(Z), because σ' and tanh' are cheapest from A.
# ---------------------------------------------------------------------------------------------


def identity_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    return np.ones_like(Z)


def sigmoid_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """σ'(z) = σ(z)(1 − σ(z))."""
    return A * (1.0 - A)


def tanh_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """tanh'(z) = 1 − tanh²(z)."""
    return 1.0 - A**2


def relu_derivative(Z: np.ndarray, A: np.ndarray) -> np.ndarray:
    """relu'(z) = 1 for z > 0, else 0 (at z = 0 we take 0, as torch does)."""
    return (Z > 0).astype(np.float64)


DERIVATIVES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "identity": identity_derivative,
    "sigmoid": sigmoid_derivative,
    "tanh": tanh_derivative,
    "relu": relu_derivative,
}
assert DERIVATIVES.keys() == ACTIVATIONS.keys(), "every activation of scratch.mlp needs its derivative here"


@dataclass(frozen=True)
class LayerGradients:
    """∂L/∂W (same shape as W: outputs × inputs) and ∂L/∂b of one layer."""

    dW: np.ndarray
    db: np.ndarray



def random_layers(
    layer_sizes: Sequence[int],
    rng: np.random.Generator,
    activation: str = "sigmoid",
    output_activation: str = "sigmoid",
) -> list[Layer]:
    """Layers with weights and biases drawn from U(−1/√fan_in, 1/√fan_in), nn.Linear's default range."""
    for name in (activation, output_activation):
        if name not in ACTIVATIONS:
            raise ValueError(f"activation {name!r} is not one of {', '.join(ACTIVATIONS)}")
    layers = []
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    for i, (fan_in, fan_out) in enumerate(pairs):
        bound = 1.0 / np.sqrt(fan_in)
        W = rng.uniform(-bound, bound, size=(fan_out, fan_in))
        b = rng.uniform(-bound, bound, size=fan_out)
        layers.append(Layer(W, b, output_activation if i == len(pairs) - 1 else activation))
    return layers


# ---------------------------------------------------------------------------------------------
# The loss and the backward pass
# ---------------------------------------------------------------------------------------------


def mse_loss_gradient(Y_hat: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """∂L/∂Ŷ = 2 (Ŷ − Y) / (N·K) for the mean squared error."""
    Y_hat, Y = np.asarray(Y_hat, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    return 2.0 * (Y_hat - Y) / Y.size


def backward(
    X: np.ndarray, layers: Sequence[Layer], outputs: Sequence[LayerOutputs], dL_dYhat: np.ndarray
) -> list[LayerGradients]:
    """Gradients of every layer's W and b, given the forward pass `outputs` and ∂L/∂Ŷ (any loss)."""
    X = np.asarray(X, dtype=np.float64)
    grads: list[LayerGradients] = []
    dL_dA = np.asarray(dL_dYhat, dtype=np.float64)
    for l in range(len(layers) - 1, -1, -1):
        layer, out = layers[l], outputs[l]
        A_prev = outputs[l - 1].A if l > 0 else X
        delta = dL_dA * DERIVATIVES[layer.activation](out.Z, out.A)  # ∂L/∂Z_l
        grads.append(LayerGradients(dW=delta.T @ A_prev, db=delta.sum(axis=0)))
        dL_dA = delta @ np.asarray(layer.W, dtype=np.float64)  # ∂L/∂A_{l−1}
    return grads[::-1]


def mse_and_gradients(X: np.ndarray, Y: np.ndarray, layers: Sequence[Layer]) -> tuple[float, list[LayerGradients]]:
    """Forward, the MSE loss, and backward: (L, [∂L/∂W_l, ∂L/∂b_l for every layer])."""
    outputs = forward_as_matrices(X, layers)
    Y_hat = outputs[-1].A
    Y = np.asarray(Y, dtype=np.float64)
    loss = mse_loss(Y_hat, Y)
    return loss, backward(X, layers, outputs, mse_loss_gradient(Y_hat, Y))


def sgd_step(layers: Sequence[Layer], grads: Sequence[LayerGradients], lr: float) -> list[Layer]:
    """One plain gradient-descent update w ← w − η ∂L/∂w on every weight and bias; returns new layers."""
    return [
        Layer(np.asarray(layer.W, dtype=np.float64) - lr * g.dW, np.asarray(layer.b, dtype=np.float64) - lr * g.db,
              layer.activation)
        for layer, g in zip(layers, grads)
    ]


def named_values(layers: Sequence[Layer], grads: Sequence[LayerGradients]) -> dict[str, float]:
    """{course name (w13 … b_y): gradient}, in the order layer by layer, W row by row, then b."""
    named = {}
    for (W_names, b_names), g in zip(parameter_names(layer_sizes_of(layers)), grads):
        for row_names, row in zip(W_names, g.dW):
            named.update(zip(row_names, map(float, row)))
        named.update(zip(b_names, map(float, g.db)))
    return named


# ---------------------------------------------------------------------------------------------
# The independent check: central finite differences
# ---------------------------------------------------------------------------------------------


def central_difference_gradients(
    loss_of: Callable[[list[Layer]], float], layers: Sequence[Layer], eps: float = 1e-5
) -> list[LayerGradients]:
    """∂L/∂θ ≈ (L(θ + ε) − L(θ − ε)) / 2ε for every weight and bias, one at a time.

    The error is about ε²·|L'''|/6 (truncation) plus u·|L|/ε (round-off, u = 1.1e-16 in float64);
    ε = 1e-5 balances the two near 1e-11 for losses and derivatives of order one. A ReLU unit whose
    input lies within ε of its kink breaks the estimate: keep inputs away from z = 0 when checking.
    """
    layers = [Layer(np.array(layer.W, dtype=np.float64), np.array(layer.b, dtype=np.float64), layer.activation)
              for layer in layers]  # private copies, perturbed in place below
    grads = []
    for layer in layers:
        numeric = {}
        for name in ("W", "b"):
            values = getattr(layer, name)
            estimate = np.empty_like(values)
            for idx in np.ndindex(values.shape):
                original = values[idx]
                values[idx] = original + eps
                plus = loss_of(layers)
                values[idx] = original - eps
                minus = loss_of(layers)
                values[idx] = original
                estimate[idx] = (plus - minus) / (2 * eps)
            numeric[name] = estimate
        grads.append(LayerGradients(dW=numeric["W"], db=numeric["b"]))
    return grads


def kink_margin(X: np.ndarray, layers: Sequence[Layer]) -> float:
    """The smallest |z| over every unit with a ReLU (kink at z = 0) and every example; inf when none has one.

    Finite differences step across the kink when this is not much larger than ε.
    """
    outputs = forward_as_matrices(X, layers)
    margins = [np.abs(out.Z).min() for layer, out in zip(layers, outputs) if layer.activation == "relu"]
    return float(min(margins, default=np.inf))


def mse_of(X: np.ndarray, Y: np.ndarray) -> Callable[[list[Layer]], float]:
    """The function layers ↦ MSE on (X, Y), for `central_difference_gradients`."""
    return lambda layers: mse_loss(forward_as_matrices(X, layers)[-1].A, Y)


# ---------------------------------------------------------------------------------------------
# The chain rule as the slides write it
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainFactor:
    """One factor of a chain-rule product, e.g. '∂y/∂n7' with its value for every example."""

    label: str
    value: np.ndarray


@dataclass(frozen=True)
class ChainPath:
    """One path from a parameter to an output: ∂L/∂y · ∂y/∂n7 · ∂n7/∂w57, factors from the loss down."""

    factors: tuple[ChainFactor, ...]

    @property
    def product(self) -> np.ndarray:
        """The product of the factors, per example."""
        return np.prod([f.value for f in self.factors], axis=0)

    def formula(self) -> str:
        return " · ".join(f.label for f in self.factors)


@dataclass(frozen=True)
class ChainRule:
    """∂L/∂(parameter) as the slides write it: a sum over paths of products, summed over the examples."""

    parameter: str
    paths: tuple[ChainPath, ...]

    @property
    def value(self) -> float:
        return float(sum(path.product.sum() for path in self.paths))

    def formula(self) -> str:
        return f"∂L/∂{self.parameter} = " + " + ".join(path.formula() for path in self.paths)


def chain_rule_terms(X: np.ndarray, Y: np.ndarray, layers: Sequence[Layer]) -> dict[str, ChainRule]:
    """For every parameter (w13 … b_y), its gradient of the MSE written as the slides' chain of factors.

    Factors, per example n (node j of layer l has weighted sum z_j and output a_j = f(z_j)):
      ∂L/∂y_k   = 2 (ŷ_k − y_k) / (N·K)          the loss
      ∂a_j/∂a_i = f'(z_j) · w_ij                 one edge, node i to node j (∂y/∂n7, ∂n7/∂n5)
      ∂a_j/∂w_ij = f'(z_j) · a_i                 the parameter's own edge (∂n7/∂w57, ∂y/∂w6y)
      ∂a_j/∂b_j = f'(z_j)
    A parameter feeding node j reaches the outputs along every path j → … → y_k; the gradient is the
    sum over those paths, and over the examples, of the products. The number of paths grows as the
    product of the layer widths after j, so this is for small networks such as the course's.
    """
    X = np.asarray(X, dtype=np.float64)
    outputs = forward_as_matrices(X, layers)
    sizes = layer_sizes_of(layers)
    nodes = node_names(sizes)
    dL_dY = mse_loss_gradient(outputs[-1].A, Y)
    slopes = [DERIVATIVES[layer.activation](out.Z, out.A) for layer, out in zip(layers, outputs)]  # f'(z), per level
    activations = [X] + [out.A for out in outputs]  # a_i at level 0 (inputs) … L (outputs)

    def paths_up(level: int, j: int) -> list[list[ChainFactor]]:
        """All chains of factors from the loss down to node j of `level` (level ≥ 1), each ending at a_j."""
        if level == len(layers):
            return [[ChainFactor(f"∂L/∂{nodes[level][j]}", dL_dY[:, j])]]
        chains = []
        for k in range(sizes[level + 1]):
            W = np.asarray(layers[level].W, dtype=np.float64)  # the layer from `level` to `level + 1`
            edge = ChainFactor(f"∂{nodes[level + 1][k]}/∂{nodes[level][j]}", slopes[level][:, k] * W[k, j])
            chains += [chain + [edge] for chain in paths_up(level + 1, k)]
        return chains

    terms: dict[str, ChainRule] = {}
    for l, (W_names, b_names) in enumerate(parameter_names(sizes)):
        level = l + 1  # the parameters of layer l feed the nodes of this level
        for j, node in enumerate(nodes[level]):
            above = paths_up(level, j)
            for i, name in enumerate(W_names[j]):
                own = ChainFactor(f"∂{node}/∂{name}", slopes[l][:, j] * activations[l][:, i])
                terms[name] = ChainRule(name, tuple(ChainPath((*chain, own)) for chain in above))
            own_b = ChainFactor(f"∂{node}/∂{b_names[j]}", slopes[l][:, j])
            terms[b_names[j]] = ChainRule(b_names[j], tuple(ChainPath((*chain, own_b)) for chain in above))
    return terms
