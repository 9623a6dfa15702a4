"""Shape arithmetic of convolutional networks: every layer's output size, parameters and multiply-adds, by formula.

A convolution or pooling window of size K, dilated by D (its taps D apart, so it spans D·(K−1)+1 pixels),
slides with stride S over an input of W pixels padded by P on each side. It fits

    W_out = ⌊(W + 2P − D·(K−1) − 1) / S⌋ + 1                (PyTorch, nn.Conv2d / nn.MaxPool2d docs)

times along that axis; for D = 1 this is the familiar ⌊(W + 2P − K)/S⌋ + 1. Pools may round up instead
(`ceil_mode=True`), but never so far that the last window would start beyond the input and its left padding.
The slides' example: AlexNet's first layer (K=11, S=4, P=2) turns 224 pixels into ⌊(224+4−11)/4⌋+1 = 55.

Multiply-adds (MACs) are counted where nearly all the arithmetic is:
- Conv2d: each output element is a sum over (C_in/groups)·K_h·K_w products → out_elements·(C_in/groups)·K_h·K_w;
- ConvTranspose2d: each input element is spread over (C_out/groups)·K_h·K_w outputs → in_elements·(C_out/groups)·K_h·K_w;
- Linear: in_features·out_features per row.
Biases, BatchNorm, activations and pools (additions or comparisons, one per element) are left out: they are
well under 1% of a CNN's total.

`shape_table` computes all of this from the formulas alone, without running the model: it traces the
model's forward once with torch.fx to learn which layer feeds which (so ResNet's shortcut branches are
followed too) and pushes the input shape through the formulas. `forward_shapes` records what a real
forward pass produces (forward hooks), and `disagreements` compares the two.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import fx, nn

from dlconcepts.errors import UserError
from dlconcepts.nets.cnn import CNN_MODELS, DEFAULT_INPUT, build_cnn, check_model_name

Shape = tuple[int, ...]

# --- the formulas ----------------------------------------------------------------------------------


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """Output length along one axis of a conv or pool: ⌊(W + 2P − D·(K−1) − 1)/S⌋ + 1 (⌈·⌉ with ceil_mode).

    With ceil_mode the last window must still start inside the input or its left padding, else it is
    dropped: PyTorch's rule `if (out − 1)·S ≥ W + P: out −= 1`. May return 0 or less: the input is too small.
    """
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1  # ceiling division, exact for negative spans too
        if (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return span // stride + 1


def conv_transpose_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                               output_padding: int = 0) -> int:
    """Output length of a transposed convolution, the inverse map: (W−1)·S − 2P + D·(K−1) + output_padding + 1."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def _pair(value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, Sequence):
        return int(value[0]), int(value[1])
    return int(value), int(value)


# --- one row of the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerShape:
    """One layer of the table: `name` is its qualified module name (or 'flatten', 'add' for functions)."""

    name: str
    layer_type: str  # the module's class name, or the function's name
    description: str  # e.g. "3→64, 11×11, stride 4, pad 2"
    output_shape: Shape
    parameters: int
    mult_adds: int
    is_module: bool = True  # False for a function called in forward() (flatten, the residual add)


@dataclass(frozen=True)
class ShapeTable:
    """Every layer's output shape, parameters and multiply-adds for one input shape (batch of 1)."""

    model_name: str
    input_shape: Shape  # (C, H, W) of one image
    layers: tuple[LayerShape, ...]

    @property
    def total_parameters(self) -> int:
        return sum(layer.parameters for layer in self.layers)

    @property
    def total_mult_adds(self) -> int:
        return sum(layer.mult_adds for layer in self.layers)

    def text(self) -> str:
        from dlconcepts.report.markdown import plain_table

        rows: list[tuple[str, ...]] = [("layer", "type", "output shape", "parameters", "multiply-adds")]
        for layer in self.layers:
            kind = f"{layer.layer_type}({layer.description})" if layer.description else layer.layer_type
            rows.append((layer.name, kind, str(list(layer.output_shape)), f"{layer.parameters:,}", f"{layer.mult_adds:,}"))
        rows.append(("total", "", "", f"{self.total_parameters:,}", f"{self.total_mult_adds:,}"))
        shape = "x".join(map(str, self.input_shape))
        head = (f"{self.model_name or 'model'} on a {shape} input (batch of 1): "
                f"{self.total_parameters:,} parameters, {_in_units(self.total_mult_adds)} multiply-adds\n"
                "output size per axis: ⌊(W + 2P − D·(K−1) − 1)/S⌋ + 1; "
                "multiply-adds: conv out_elements·(C_in/groups)·K·K, linear in·out\n\n")
        return head + plain_table(rows)


def _in_units(count: int) -> str:
    return f"{count / 1e9:.3f} G" if count >= 10**8 else f"{count / 1e6:.3f} M"


# --- rules for each kind of layer ------------------------------------------------------------------


class _TooSmall(Exception):
    """A layer's output would have no pixels; carries the layer's name for the message."""

    def __init__(self, layer: str, message: str):
        super().__init__(message)
        self.layer = layer


def _describe(module: nn.Module) -> str:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kh, kw = _pair(module.kernel_size)
        text = f"{module.in_channels}→{module.out_channels}, {kh}×{kw}"
        text += f", stride {_pair(module.stride)[0]}" if _pair(module.stride) != (1, 1) else ""
        text += f", pad {_pair(module.padding)[0]}" if not isinstance(module.padding, str) and _pair(module.padding) != (0, 0) else ""
        text += f", dilation {_pair(module.dilation)[0]}" if _pair(module.dilation) != (1, 1) else ""
        return text + (f", groups {module.groups}" if module.groups != 1 else "")
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kh, kw = _pair(module.kernel_size)
        text = f"{kh}×{kw}, stride {_pair(module.stride)[0]}"
        text += f", pad {_pair(module.padding)[0]}" if _pair(module.padding) != (0, 0) else ""
        return text + (", ceil_mode" if module.ceil_mode else "")
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        h, w = _pair(module.output_size) if module.output_size is not None else ("·", "·")
        return f"→ {h}×{w}"
    if isinstance(module, nn.Linear):
        return f"{module.in_features}→{module.out_features}"
    if isinstance(module, nn.BatchNorm2d):
        return str(module.num_features)
    if isinstance(module, nn.Dropout):
        return f"p={module.p}"
    return ""


def _spatial(name: str, module: nn.Module, in_shape: Shape, sizes: tuple[int, int]) -> Shape:
    if min(sizes) < 1:
        h, w = in_shape[-2:]
        raise _TooSmall(name, f"layer {name} ({type(module).__name__} {_describe(module)}) would turn {h}×{w} "
                              f"into {sizes[0]}×{sizes[1]}")
    return (*in_shape[:-2], *sizes)


def _check_channels(name: str, module: nn.Module, in_shape: Shape, expected: int) -> None:
    if len(in_shape) != 4 or in_shape[1] != expected:
        got = in_shape[1] if len(in_shape) > 1 else "no"
        raise UserError(f"layer {name} ({type(module).__name__} {_describe(module)}) expects {expected} input "
                        f"channels but gets {got} (shape {list(in_shape)}); give --input as {expected}xHxW")


def _module_rule(name: str, module: nn.Module, in_shape: Shape) -> tuple[Shape, int]:
    """(output shape, multiply-adds) of one module applied to `in_shape`, by formula."""
    if isinstance(module, nn.Conv2d):
        _check_channels(name, module, in_shape, module.in_channels)
        if isinstance(module.padding, str):  # 'same' keeps the size (stride 1 only), 'valid' is padding 0
            padding = (0, 0) if module.padding == "valid" else None
        else:
            padding = _pair(module.padding)
        kernel, stride, dilation = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
        sizes = tuple(
            in_shape[2 + i] if padding is None
            else conv_output_size(in_shape[2 + i], kernel[i], stride[i], padding[i], dilation[i])
            for i in range(2)
        )
        out = _spatial(name, module, (in_shape[0], module.out_channels, *in_shape[2:]), sizes)  # type: ignore[arg-type]
        return out, math.prod(out) * (module.in_channels // module.groups) * kernel[0] * kernel[1]
    if isinstance(module, nn.ConvTranspose2d):
        _check_channels(name, module, in_shape, module.in_channels)
        kernel, stride, dilation = _pair(module.kernel_size), _pair(module.stride), _pair(module.dilation)
        padding, extra = _pair(module.padding), _pair(module.output_padding)
        sizes = tuple(conv_transpose_output_size(in_shape[2 + i], kernel[i], stride[i], padding[i], dilation[i], extra[i])
                      for i in range(2))
        out = _spatial(name, module, (in_shape[0], module.out_channels, *in_shape[2:]), sizes)  # type: ignore[arg-type]
        return out, math.prod(in_shape) * (module.out_channels // module.groups) * kernel[0] * kernel[1]
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel, stride, padding = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        dilation = _pair(module.dilation) if isinstance(module, nn.MaxPool2d) else (1, 1)
        sizes = tuple(conv_output_size(in_shape[-2 + i], kernel[i], stride[i], padding[i], dilation[i], module.ceil_mode)
                      for i in range(2))
        return _spatial(name, module, in_shape, sizes), 0  # type: ignore[arg-type]
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        target = module.output_size if isinstance(module.output_size, Sequence) else (module.output_size,) * 2
        sizes = tuple(in_shape[-2 + i] if t is None else int(t) for i, t in enumerate(target))
        return _spatial(name, module, in_shape, sizes), 0  # type: ignore[arg-type]
    if isinstance(module, nn.Linear):
        if in_shape[-1] != module.in_features:
            raise UserError(f"layer {name} (Linear {_describe(module)}) expects {module.in_features} input features "
                            f"but gets {in_shape[-1]} (shape {list(in_shape)})")
        return (*in_shape[:-1], module.out_features), math.prod(in_shape[:-1]) * module.in_features * module.out_features
    if isinstance(module, nn.Flatten):
        return _flatten(in_shape, module.start_dim, module.end_dim), 0
    if isinstance(module, nn.BatchNorm2d):
        _check_channels(name, module, in_shape, module.num_features)
        return in_shape, 0
    if isinstance(module, _SHAPE_PRESERVING):
        return in_shape, 0
    raise NotImplementedError(f"shape arithmetic does not know layer {name} ({type(module).__name__})")


_SHAPE_PRESERVING = (
    nn.ReLU, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.Softmax, nn.LogSoftmax,
    nn.Dropout, nn.Dropout2d, nn.Identity, nn.BatchNorm1d, nn.LocalResponseNorm,
)


def _flatten(shape: Shape, start_dim: int = 0, end_dim: int = -1) -> Shape:
    start, end = start_dim % len(shape), end_dim % len(shape)
    return (*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])


# Functions a forward() may call between modules, and what they do to shapes.
_FUNCTION_RULES: dict[Callable, tuple[str, Callable[..., Shape]]] = {
    torch.flatten: ("flatten", lambda s, start_dim=0, end_dim=-1: _flatten(s, start_dim, end_dim)),
    operator.add: ("add", lambda a, b: tuple(torch.broadcast_shapes(a, b))),
    operator.iadd: ("add", lambda a, b: tuple(torch.broadcast_shapes(a, b))),
    torch.add: ("add", lambda a, b: tuple(torch.broadcast_shapes(a, b))),
    torch.relu: ("relu", lambda s: s),
    nn.functional.relu: ("relu", lambda s, inplace=False: s),
}
_METHOD_RULES: dict[str, Callable[..., Shape]] = {
    "flatten": lambda s, start_dim=0, end_dim=-1: _flatten(s, start_dim, end_dim),
    "relu": lambda s: s,
}


# --- pushing a shape through a whole model ---------------------------------------------------------


def _traced(model: nn.Module) -> fx.Graph:
    return fx.symbolic_trace(model).graph


def _propagate(model: nn.Module, graph: fx.Graph, input_shape: Shape) -> list[LayerShape]:
    """Every layer's output shape from the formulas, in the order forward() calls them. Runs nothing."""
    shapes: dict[fx.Node, Shape] = {}
    seen_modules: set[str] = set()
    rows: list[LayerShape] = []

    def shape_of(arg: object) -> object:
        return shapes[arg] if isinstance(arg, fx.Node) else arg

    for node in graph.nodes:
        if node.op == "placeholder":
            shapes[node] = (1, *input_shape)
        elif node.op == "call_module":
            module = model.get_submodule(str(node.target))
            out, macs = _module_rule(str(node.target), module, shapes[node.args[0]])
            # A module called twice (ResNet's relu) owns its parameters once.
            params = 0 if node.target in seen_modules else sum(p.numel() for p in module.parameters())
            seen_modules.add(str(node.target))
            shapes[node] = out
            rows.append(LayerShape(str(node.target), type(module).__name__, _describe(module), out, params, macs))
        elif node.op in ("call_function", "call_method"):
            if node.op == "call_function" and node.target in _FUNCTION_RULES:
                label, rule = _FUNCTION_RULES[node.target]
            elif node.op == "call_method" and node.target in _METHOD_RULES:
                label, rule = str(node.target), _METHOD_RULES[str(node.target)]
            else:
                raise NotImplementedError(f"shape arithmetic does not know the operation {node.target} in forward()")
            args = [shape_of(a) for a in node.args]
            kwargs = {k: shape_of(v) for k, v in node.kwargs.items()}
            shapes[node] = rule(*args, **kwargs)
            rows.append(LayerShape(label, label, "", shapes[node], 0, 0, is_module=False))
        elif node.op != "output":
            raise NotImplementedError(f"shape arithmetic does not know the graph node {node.op} {node.target}")
    return rows


def _smallest_square_input(model: nn.Module, graph: fx.Graph, channels: int, limit: int = 1024) -> int | None:
    """The smallest H=W for which no layer's output vanishes (sizes only grow with the input), or None."""
    def fits(size: int) -> bool:
        try:
            _propagate(model, graph, (channels, size, size))
        except (_TooSmall, UserError):
            return False
        return True

    if not fits(limit):
        return None
    low, high = 1, limit
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle + 1, high)
    return low


def _built_for(model_name: str) -> str:
    natural = DEFAULT_INPUT.get(model_name)
    return f"; {model_name} is built for {'x'.join(map(str, natural))}" if natural else ""


def shape_table(model: nn.Module, input_shape: Shape, model_name: str = "") -> ShapeTable:
    """The per-layer table for one (C, H, W) input, from the formulas only (the model is not run).

    Raises UserError when the input does not fit the model: wrong channel count, a Linear layer that
    gets another number of features than it was built for, or an input so small that some layer's
    output would have no pixels (the message names that layer and the smallest input that works).
    """
    graph = _traced(model)
    label = model_name or type(model).__name__
    shape_text = "x".join(map(str, input_shape))
    try:
        rows = _propagate(model, graph, tuple(input_shape))
    except _TooSmall as exc:
        smallest = _smallest_square_input(model, graph, input_shape[0])
        hint = f"; the smallest square input it takes is {input_shape[0]}x{smallest}x{smallest}" if smallest else _built_for(model_name)
        raise UserError(f"input {shape_text} is too small for {label}: {exc}{hint}") from None
    except UserError as exc:
        raise UserError(f"input {shape_text} does not fit {label}: {exc}{_built_for(model_name)}") from None
    return ShapeTable(model_name, tuple(input_shape), tuple(rows))


# --- what a real forward pass does -----------------------------------------------------------------


def forward_shapes(model: nn.Module, input_shape: Shape, device: torch.device | str | None = None) -> list[tuple[str, str, Shape]]:
    """(layer name, type, output shape) of every leaf module, in call order, from one real forward pass.

    Runs a batch of 1 zeros in eval mode on `device` (default: where the model's parameters are).
    """
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    records: list[tuple[str, str, Shape]] = []
    handles = []
    for name, module in model.named_modules():
        if name and not any(True for _ in module.children()):
            def hook(mod: nn.Module, _inputs: object, output: torch.Tensor, name: str = name) -> None:
                records.append((name, type(mod).__name__, tuple(output.shape)))
            handles.append(module.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return records


def disagreements(table: ShapeTable, measured: Sequence[tuple[str, str, Shape]]) -> list[str]:
    """Where the formula's shapes differ from a forward pass's (module layers, in call order); [] when none."""
    formula = [(layer.name, layer.layer_type, layer.output_shape) for layer in table.layers if layer.is_module]
    problems = [f"{f[0]}: formula {list(f[2])}, forward pass {list(m[2])}" for f, m in zip(formula, measured) if f != m]
    if len(formula) != len(measured):
        problems.append(f"formula has {len(formula)} module calls, forward pass {len(measured)}")
    return problems


# --- the command line's entry points ---------------------------------------------------------------


def parse_input_shape(text: str) -> Shape:
    """'3x224x224' → (3, 224, 224): channels × height × width of one image, all positive integers."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--input '{text}' is not CxHxW with three positive whole numbers, e.g. 3x224x224")
    return shape


def explain_model(name: str, input_text: str | None = None, num_classes: int | None = None) -> tuple[nn.Module, ShapeTable]:
    """A registered CNN and its shape table for `input_text` (default: the model's natural input)."""
    check_model_name(name)
    input_shape = parse_input_shape(input_text) if input_text is not None else DEFAULT_INPUT[name]
    model = build_cnn(name, num_classes)
    return model, shape_table(model, input_shape, name)


def torchinfo_summary(model: nn.Module, input_shape: Shape, device: torch.device | str | None = None) -> str:
    """torchinfo's own summary of `model` (an independent count of shapes, parameters and mult-adds)."""
    import torchinfo  # imported here: only --summary needs it, and it is slow to import

    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    stats = torchinfo.summary(model, input_size=(1, *input_shape), col_names=("output_size", "num_params", "mult_adds"),
                              depth=4, device=device, verbose=0, mode="eval")
    # torchinfo 1.8 prints its unit enum as "(Units.MEGABYTES)" on Python >= 3.11; show the plain unit.
    units = {"NONE": "", "KILOBYTES": "k", "MEGABYTES": "M", "GIGABYTES": "G", "TERABYTES": "T"}
    return re.sub(r"\(Units\.(\w+)\)", lambda m: f"({units.get(m.group(1), m.group(1))})", str(stats))


__all__ = [
    "CNN_MODELS",
    "LayerShape",
    "ShapeTable",
    "conv_output_size",
    "conv_transpose_output_size",
    "disagreements",
    "explain_model",
    "forward_shapes",
    "parse_input_shape",
    "shape_table",
    "torchinfo_summary",
]
