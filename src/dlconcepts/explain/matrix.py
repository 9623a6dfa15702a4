"""The course's MLP as matrix operations, walked through: each layer by hand next to PyTorch's own output.

The slides ("Matrix operation", "Use Excel to verify") build
`MyNet = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2), nn.Linear(2, 1))`, print its parameters,
name them after the nodes they join (w13 … w6y, b3 … b_y) and recompute each layer as
`HiddenLayer1 = X.mm(W1ᵀ) + b1`. This module does that for any `nn.Sequential` of `nn.Linear` layers
with ReLU, Sigmoid or Tanh between them:

1. `layers_from_sequential` reads the module into `scratch.mlp.Layer`s (W, b, activation);
2. `walk_through` runs the module once, capturing every layer's own output with forward hooks,
   and recomputes the same layers by hand with `scratch.mlp.forward_as_matrices`;
3. the result prints the parameters with the course's names and each layer's hand result, the
   module's result and their largest difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlconcepts.errors import UserError
from dlconcepts.nets import mlp
from dlconcepts.scratch.mlp import (
    ACTIVATIONS,
    Layer,
    LayerOutputs,
    forward_as_matrices,
    layer_sizes_of,
    node_names,
    parameter_names,
)

# --- the slides' numbers ------------------------------------------------------------------------
# "Matrix operation": the parameters PyTorch printed for MyNet (printed to 4 decimals), and X.
COURSE_LAYER_SIZES = (2, 3, 2, 1)
COURSE_WEIGHTS = (
    ([[0.4727, -0.5188], [-0.5681, -0.6032], [-0.0252, -0.3011]], [-0.6986, -0.6602, -0.4860]),
    ([[-0.5549, 0.2550, 0.4584], [0.2930, 0.0849, -0.3146]], [0.1677, 0.0736]),
    ([[0.4106, -0.3618]], [-0.2270]),
)
COURSE_X = ((1.0, 2.0), (2.0, 3.0), (10.0, 5.0))
# What the slides print for HiddenLayer1 (n3 n4 n5) and HiddenLayer2 (n6 n7). PyTorch computed them
# from the unrounded weights, so recomputing from the 4-decimal weights above differs in the 4th
# decimal (tests/explain/test_matrix.py derives by how much at most).
SLIDE_LAYER_OUTPUTS = (
    ((-1.2635, -2.4348, -1.1135), (-1.3097, -3.6061, -1.4398), (1.4340, -9.3577, -2.2441)),
    ((-0.2625, -0.1530), (-0.6852, -0.1632), (-4.0429, 0.4054)),
)
# "Fully connected feed forward network is implemented as matrix operation": y = σ(w·x + b),
# σ([[1, −2], [−1, 1]]·[1, −1] + [1, 0]) = σ([4, −2]) = [0.98, 0.12].
SLIDE_SIGMOID_EXAMPLE = {"W": [[1.0, -2.0], [-1.0, 1.0]], "x": [1.0, -1.0], "b": [1.0, 0.0]}

# The modules a layer may end in, by the activation name `scratch.mlp` uses for them.
_ACTIVATION_MODULES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.Identity: "identity",
}
SUPPORTED = "nn.Linear, each optionally followed by one nn.ReLU, nn.Sigmoid, nn.Tanh or nn.Identity"


def course_network(activation: str = "identity", dtype: torch.dtype = torch.float64) -> nn.Sequential:
    """The slides' `MyNet` with the slides' printed weights; `activation` (if not identity) after each hidden layer.

    In float64 the weights are the printed 4-decimal numbers to double precision, so a walk-through
    compares hand and module arithmetic on exactly the same numbers.
    """
    _check_activation(activation)
    modules: list[nn.Module] = []
    for i, (W, b) in enumerate(COURSE_WEIGHTS):
        linear = nn.Linear(len(W[0]), len(W)).to(dtype)
        with torch.no_grad():
            linear.weight.copy_(torch.tensor(W, dtype=dtype))
            linear.bias.copy_(torch.tensor(b, dtype=dtype))
        modules.append(linear)
        if activation != "identity" and i < len(COURSE_WEIGHTS) - 1:
            modules.append(_activation_module(activation))
    return nn.Sequential(*modules)


def random_network(
    layer_sizes: Sequence[int], activation: str = "identity", seed: int = 0, dtype: torch.dtype = torch.float64
) -> nn.Sequential:
    """`nets.mlp(layer_sizes, activation)` with PyTorch's default initialization drawn from `seed`.

    The global torch RNG is left as it was, so asking for a network does not shift anyone's seed.
    """
    _check_activation(activation)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return mlp(tuple(layer_sizes), activation).to(dtype)


def example_inputs(n_inputs: int, seed: int = 0, rows: int = 3) -> np.ndarray:
    """The course's X when the network takes 2 inputs; otherwise `rows` rows of small seeded integers."""
    if n_inputs == len(COURSE_X[0]):
        return np.array(COURSE_X)
    return np.random.default_rng(seed).integers(-5, 11, size=(rows, n_inputs)).astype(np.float64)


def choose_network(
    layer_sizes: Sequence[int] | None = None, activation: str = "identity", seed: int | None = None
) -> tuple[nn.Sequential, np.ndarray, str]:
    """The network, its inputs X and a one-line description, in float64.

    The course's network with the slides' weights unless other layer sizes or a seed are asked for;
    then a seeded random `nets.mlp`. `activation` goes after every hidden layer either way.
    """
    _check_activation(activation)
    act = "" if activation == "identity" else f", {activation} after each hidden layer"
    if (layer_sizes is None or tuple(layer_sizes) == COURSE_LAYER_SIZES) and seed is None:
        return course_network(activation), np.array(COURSE_X), f"the course's MyNet with the slides' weights{act}"
    sizes = tuple(layer_sizes or COURSE_LAYER_SIZES)
    seed = 0 if seed is None else seed
    arrow = "→".join(map(str, sizes))
    return (random_network(sizes, activation, seed), example_inputs(sizes[0], seed),
            f"a random MLP {arrow} (PyTorch's default initialization, seed {seed}){act}")


def parse_layer_sizes(text: str) -> tuple[int, ...]:
    """'2,3,2,1' -> (2, 3, 2, 1); anything else is a UserError that shows the expected form."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise UserError(
            f"layer sizes {text!r} are not at least two positive integers separated by commas, e.g. 2,3,2,1"
        )
    return sizes


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise UserError(f"activation {activation!r} is not supported; use one of {', '.join(ACTIVATIONS)}")


def _activation_module(activation: str) -> nn.Module:
    return next(cls for cls, name in _ACTIVATION_MODULES.items() if name == activation)()


# --- step 1: the module as matrices --------------------------------------------------------------


@dataclass(frozen=True)
class _LayerModules:
    """Where one layer lives in the Sequential: its Linear, and the activation module after it (if any)."""

    linear: nn.Linear
    linear_name: str
    activation: nn.Module | None
    activation_name: str


def _split_into_layers(net: nn.Module) -> list[_LayerModules]:
    if not isinstance(net, nn.Sequential):
        raise UserError(f"expected an nn.Sequential of {SUPPORTED}; got {type(net).__name__}")
    found: list[_LayerModules] = []
    # Not named_children(): it skips a module instance that appears twice (one nn.ReLU reused after
    # every layer), and the Sequential still calls it twice.
    for name, module in net._modules.items():
        if isinstance(module, nn.Linear):
            if module.bias is None:
                raise UserError(f"layer {name} is nn.Linear without a bias; the walk-through needs X·Wᵀ + b")
            found.append(_LayerModules(module, name, None, "identity"))
        elif type(module) in _ACTIVATION_MODULES:
            if not found or found[-1].activation is not None:
                raise UserError(f"module {name} ({type(module).__name__}) does not follow an nn.Linear; supported: {SUPPORTED}")
            last = found[-1]
            found[-1] = _LayerModules(last.linear, last.linear_name, module, _ACTIVATION_MODULES[type(module)])
        else:
            raise UserError(f"module {name} ({type(module).__name__}) is not supported; supported: {SUPPORTED}")
    if not found:
        raise UserError(f"the Sequential has no nn.Linear layer; supported: {SUPPORTED}")
    for before, after in zip(found, found[1:]):
        if before.linear.out_features != after.linear.in_features:
            raise UserError(
                f"layer {before.linear_name} gives {before.linear.out_features} outputs but layer "
                f"{after.linear_name} expects {after.linear.in_features} inputs"
            )
    return found


def layers_from_sequential(net: nn.Module) -> list[Layer]:
    """The Sequential as `scratch.mlp.Layer`s: W (outputs × inputs) and b as float64 arrays, and the activation."""
    return [
        Layer(
            W=part.linear.weight.detach().cpu().to(torch.float64).numpy().copy(),
            b=part.linear.bias.detach().cpu().to(torch.float64).numpy().copy(),
            activation=part.activation_name,
        )
        for part in _split_into_layers(net)
    ]


# --- step 2: by hand and by the module ------------------------------------------------------------


@dataclass(frozen=True)
class LayerStep:
    """One layer of the walk-through: its parameters with the course's names, and both computations."""

    number: int  # 1-based, as the slides count W1, W2, W3
    layer: Layer
    linear_name: str  # the module's name inside the Sequential, e.g. '0' for MyNet[0]
    weight_names: list[list[str]]  # same shape as W: [['w13', 'w23'], ...]
    bias_names: list[str]
    input_names: list[str]  # x1 x2, or the previous layer's n3 n4 n5
    output_names: list[str]
    inputs: np.ndarray  # what this layer received (X for the first layer), as the hand computation used it
    hand: LayerOutputs  # Z = inputs·Wᵀ + b and A = f(Z), by scratch.mlp in float64
    module_Z: np.ndarray  # the nn.Linear's own output
    module_A: np.ndarray  # the activation module's own output (= module_Z when there is none)

    @property
    def max_abs_diff(self) -> float:
        return float(max(np.max(np.abs(self.hand.Z - self.module_Z)), np.max(np.abs(self.hand.A - self.module_A))))

    def title(self) -> str:
        W = self.layer.W
        act = "" if self.layer.activation == "identity" else f", then {self.layer.activation}"
        return f"layer {self.number}: Linear({W.shape[1]}, {W.shape[0]}){act} -> {' '.join(self.output_names)}"


@dataclass(frozen=True)
class Walkthrough:
    """Every layer of a network on inputs X, by hand and by the module; `text()` prints it."""

    X: np.ndarray
    layer_sizes: tuple[int, ...]
    steps: list[LayerStep]
    dtype: str  # the module's dtype, e.g. 'torch.float64'

    @property
    def max_abs_diff(self) -> float:
        return max(step.max_abs_diff for step in self.steps)

    def parameter_rows(self) -> list[tuple[str, ...]]:
        """Every parameter: layer, the course's name, its value, and where PyTorch keeps it."""
        rows: list[tuple[str, ...]] = [("layer", "name", "value", "PyTorch entry")]
        for step in self.steps:
            for j, names in enumerate(step.weight_names):
                for i, name in enumerate(names):
                    rows.append((str(step.number), name, f"{step.layer.W[j, i]:.4f}", f"{step.linear_name}.weight[{j}, {i}]"))
            for j, name in enumerate(step.bias_names):
                rows.append((str(step.number), name, f"{step.layer.b[j]:.4f}", f"{step.linear_name}.bias[{j}]"))
        return rows

    def text(self, decimals: int = 4) -> str:
        """The walk-through for a terminal, in the slides' order: parameters, then each layer's matrices."""
        arrow = "→".join(map(str, self.layer_sizes))
        out = [f"MLP {arrow} ({self.dtype}); inputs X, one row per example, columns {' '.join(self.steps[0].input_names)}:"]
        out.append(_matrix_text(self.X, decimals, "  "))
        for step in self.steps:
            out.append("")
            out.append(step.title())
            for j, names in enumerate(step.weight_names):
                pairs = "  ".join(f"{n} = {step.layer.W[j, i]: .{decimals}f}" for i, n in enumerate(names))
                out.append(f"  {pairs}   {step.bias_names[j]} = {step.layer.b[j]: .{decimals}f}")
            source = "X" if step.number == 1 else f"layer {step.number - 1}"
            out.append(f"  by hand, {source}·W{step.number}ᵀ + b{step.number}  ({' '.join(step.output_names)}):")
            out.append(_matrix_text(step.hand.Z, decimals, "    "))
            out.append(f"  the module's own output, net[{step.linear_name}](…):")
            out.append(_matrix_text(step.module_Z, decimals, "    "))
            if step.layer.activation != "identity":
                out.append(f"  by hand, {step.layer.activation}(z):")
                out.append(_matrix_text(step.hand.A, decimals, "    "))
                out.append(f"  the module's own {step.layer.activation}:")
                out.append(_matrix_text(step.module_A, decimals, "    "))
            out.append(f"  max |hand − module| = {step.max_abs_diff:.3g}")
        out.append("")
        out.append(f"largest difference over all layers: {self.max_abs_diff:.3g}")
        return "\n".join(out) + "\n"


def _matrix_text(M: np.ndarray, decimals: int, indent: str) -> str:
    cells = [[f"{v:.{decimals}f}" for v in row] for row in np.atleast_2d(M)]
    width = max(len(c) for row in cells for c in row)
    return "\n".join(indent + "[" + "  ".join(c.rjust(width) for c in row) + "]" for row in cells)


def walk_through(net: nn.Module, X: np.ndarray | Sequence[Sequence[float]]) -> Walkthrough:
    """Run `net` on X once (forward hooks record each layer's own output) and recompute every layer by hand."""
    parts = _split_into_layers(net)
    layers = layers_from_sequential(net)
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != layers[0].W.shape[1]:
        raise UserError(f"X must have one row per example and {layers[0].W.shape[1]} columns; got shape {X.shape}")
    dtype = parts[0].linear.weight.dtype
    device = parts[0].linear.weight.device

    # Sequential calls its children in order, so the hooks record Linear, activation, Linear, ... in
    # call order (one hook per distinct module: a module used twice still reports each call once).
    calls: list[torch.Tensor] = []
    modules = {id(m): m for part in parts for m in (part.linear, part.activation) if m is not None}
    handles = [m.register_forward_hook(lambda _m, _args, out: calls.append(out.detach())) for m in modules.values()]
    try:
        with torch.no_grad():
            net(torch.as_tensor(X, dtype=dtype, device=device))
    finally:
        for handle in handles:
            handle.remove()
    recorded = iter(c.cpu().to(torch.float64).numpy() for c in calls)

    hand = forward_as_matrices(X, layers)
    sizes = layer_sizes_of(layers)
    names = parameter_names(sizes)
    nodes = node_names(sizes)
    steps = []
    inputs = X
    for k, (part, layer, out) in enumerate(zip(parts, layers, hand)):
        module_Z = next(recorded)
        module_A = next(recorded) if part.activation is not None else module_Z
        steps.append(LayerStep(
            number=k + 1, layer=layer, linear_name=part.linear_name, weight_names=names[k][0], bias_names=names[k][1],
            input_names=nodes[k], output_names=nodes[k + 1], inputs=inputs, hand=out, module_Z=module_Z, module_A=module_A,
        ))
        inputs = out.A
    return Walkthrough(X=X, layer_sizes=sizes, steps=steps, dtype=str(dtype))


def sigmoid_example() -> LayerOutputs:
    """The slide's one-line example: Z = [4, −2] and A = σ(Z) ≈ [0.98, 0.12], by `scratch.mlp`.

    The slide writes W·x with x a column; as a row of X this is x·Wᵀ — the same numbers.
    """
    ex = SLIDE_SIGMOID_EXAMPLE
    (out,) = forward_as_matrices(np.array([ex["x"]]), [Layer(np.array(ex["W"]), np.array(ex["b"]), "sigmoid")])
    return LayerOutputs(Z=out.Z[0], A=out.A[0])
