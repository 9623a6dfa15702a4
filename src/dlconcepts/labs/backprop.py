"""Lab `backprop`: the slides' sigmoid network x1, x2 → n3, n4, n5 → n6, n7 → y, differentiated by hand.

The network and its weights are the slides' own (the `nn.Sequential(Linear(2,3), Linear(3,2),
Linear(2,1))` whose parameters the slides print), with σ after every layer as the slides write
n3 = σ(x1·w13 + x2·w23 + b3) … y = σ(n6·w6y + n7·w7y + b_y). The data are the slides' three rows
X = [[1,2],[2,3],[10,5]] with y = 3·x1 + 2·x2 scaled into (0, 1), where a sigmoid output can reach it.

Every gradient is computed four ways — backpropagation as matrices (`scratch.backprop.backward`),
the slides' chain rule as a sum of named products (`chain_rule_terms`), torch autograd, and central
finite differences — all in float64, then one gradient-descent step by hand is held against
`torch.optim.SGD`. A randomized check repeats the comparison on networks of several depths,
widths and activations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlconcepts.config import param
from dlconcepts.errors import ConfigError
from dlconcepts.explain.matrix import COURSE_WEIGHTS
from dlconcepts.explain.matrix import COURSE_X as MATRIX_COURSE_X
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets import ACTIVATIONS as TORCH_ACTIVATIONS
from dlconcepts.report import figures  # noqa: F401  (sets matplotlib's Agg backend before pyplot is used)
from dlconcepts.scratch import backprop as bp
from dlconcepts.scratch.mlp import ACTIVATIONS, Layer, forward_as_matrices, node_labels

COURSE_X = np.array(MATRIX_COURSE_X)  # the slides' three rows, "Matrix operation"
COURSE_Y = (COURSE_X @ np.array([3.0, 2.0])).reshape(-1, 1)  # y = 3·x1 + 2·x2 = [7, 12, 40]
# The slides' printout of MyNet's parameters (4 decimals), nn.Linear layout: W is (outputs, inputs).
SLIDE_WEIGHTS = COURSE_WEIGHTS
CHECK_ACTIVATIONS = ("sigmoid", "tanh", "relu")
SHOWN_TERMS = ("w6y", "w57", "w13")  # the slides' examples, one per layer


@dataclass(frozen=True)
class Config:
    weights: str = param("slide", "the slides' printed weights, or random ones drawn from the seed", choices=("slide", "random"))
    hidden: tuple[int, ...] = param((3, 2), "hidden layer widths (the slides': 3, 2)", positive=True)
    activation: str = param("sigmoid", "activation after every layer, the output included", choices=tuple(ACTIVATIONS))
    target_scale: float = param(50.0, "y = 3·x1 + 2·x2 is divided by this, so targets lie in (0, 1)", positive=True)
    lr: float = param(0.5, "η of the one gradient-descent step w ← w − η ∂L/∂w", positive=True)
    fd_eps: float = param(1e-5, "step ε of the central finite differences", positive=True, maximum=1e-2)
    check_depths: tuple[int, ...] = param((1, 2, 3, 4), "hidden-layer counts of the randomized check", positive=True)
    check_seeds: int = param(3, "random networks per depth and activation in the randomized check", minimum=0)
    check_max_width: int = param(6, "widest layer of the randomized check (widths drawn from 1 to this)", minimum=1)

    def check(self) -> None:
        if self.weights == "slide" and self.hidden != (3, 2):
            raise ConfigError(
                f"weights=slide needs hidden=3,2 (the slides' network), got hidden={','.join(map(str, self.hidden))}; "
                "add --set weights=random for other sizes"
            )


# --- torch twin of a list of scratch layers: the independent reference ----------------------------


def _torch_network(layers: list[Layer]) -> nn.Sequential:
    """nn.Sequential(Linear, activation, …) in float64 holding exactly the scratch layers' weights."""
    modules: list[nn.Module] = []
    for layer in layers:
        W = torch.as_tensor(np.asarray(layer.W, dtype=np.float64))
        linear = nn.Linear(W.shape[1], W.shape[0], dtype=torch.float64)
        with torch.no_grad():
            linear.weight.copy_(W)
            linear.bias.copy_(torch.as_tensor(np.asarray(layer.b, dtype=np.float64)))
        modules += [linear, TORCH_ACTIVATIONS[layer.activation]()]
    return nn.Sequential(*modules)


def _linears(model: nn.Sequential) -> list[nn.Linear]:
    return [m for m in model if isinstance(m, nn.Linear)]


def _autograd_gradients(model: nn.Sequential, X: np.ndarray, Y: np.ndarray) -> list[bp.LayerGradients]:
    """∂L/∂W, ∂L/∂b by torch autograd, L = nn.MSELoss() (mean, as in scratch.backprop)."""
    model.zero_grad()
    loss = nn.MSELoss()(model(torch.as_tensor(X)), torch.as_tensor(Y))
    loss.backward()
    return [bp.LayerGradients(m.weight.grad.numpy().copy(), m.bias.grad.numpy().copy()) for m in _linears(model)]


def _max_diff(a: list[bp.LayerGradients], b: list[bp.LayerGradients]) -> float:
    return float(max(max(np.abs(x.dW - y.dW).max(), np.abs(x.db - y.db).max()) for x, y in zip(a, b)))


# --- the lab --------------------------------------------------------------------------------------


def _course_layers(cfg: Config, seed: int) -> list[Layer]:
    if cfg.weights == "slide":
        return [Layer(np.array(W), np.array(b), cfg.activation) for W, b in SLIDE_WEIGHTS]
    return bp.random_layers((2, *cfg.hidden, 1), np.random.default_rng(seed), cfg.activation, cfg.activation)


def _fd_margin_ok(margin: float, eps: float) -> bool:
    """Finite differences are valid unless a ReLU input lies near its kink z = 0.

    Perturbing one parameter by ε moves a unit's z by ε·|∂z/∂θ|, a few ε for weights and activations
    of order one; a margin of 100·ε keeps every perturbation on one side of the kink. (Were it
    crossed, the estimate would be off by about |∂z/∂θ|·|downstream slope| — far above 1e-8 — so a
    check cannot pass by mistake; the margin only avoids false alarms.)
    """
    return margin > 100 * eps


def _all_layers_alive(X: np.ndarray, layers: list[Layer]) -> bool:
    """False when every ReLU of some layer is off on every row: nothing flows back, all gradients below are 0."""
    outputs = forward_as_matrices(X, layers)
    return all((out.A > 0).any() for layer, out in zip(layers, outputs) if layer.activation == "relu")


def _random_problem(rng: np.random.Generator, activation: str, depth: int, cfg: Config):
    """A random network with `depth` hidden layers and data for it, redrawn until no ReLU input is near its kink
    and no ReLU layer is dead (a comparison of zeros with zeros would prove nothing)."""
    for _ in range(1000):
        sizes = tuple(int(s) for s in rng.integers(1, cfg.check_max_width + 1, size=depth + 2))
        layers = bp.random_layers(sizes, rng, activation, "identity")  # a linear output, as in nets.mlp
        X = rng.normal(size=(5, sizes[0]))
        Y = rng.normal(size=(5, sizes[-1]))
        if _fd_margin_ok(bp.kink_margin(X, layers), cfg.fd_eps) and _all_layers_alive(X, layers):
            return sizes, layers, X, Y
    raise ConfigError(f"no random {activation} network kept its ReLUs alive and 100·fd_eps away from 0; "
                      "lower fd_eps or raise check_max_width")


def _randomized_check(cfg: Config, seed: int) -> list[dict]:
    rows = []
    for a, activation in enumerate(CHECK_ACTIVATIONS):
        for depth in cfg.check_depths:
            for k in range(cfg.check_seeds):
                sizes, layers, X, Y = _random_problem(np.random.default_rng([seed, a, depth, k]), activation, depth, cfg)
                _, hand = bp.mse_and_gradients(X, Y, layers)
                auto = _autograd_gradients(_torch_network(layers), X, Y)
                fd = bp.central_difference_gradients(bp.mse_of(X, Y), layers, cfg.fd_eps)
                rows.append({
                    "activation": activation, "hidden_layers": depth, "layer_sizes": list(sizes),
                    "parameters": sum(np.size(layer.W) + np.size(layer.b) for layer in layers),
                    "max_abs_diff_hand_vs_autograd": _max_diff(hand, auto),
                    "max_abs_diff_hand_vs_finite_diff": _max_diff(hand, fd),
                })
    return rows


def run(cfg: Config, ctx: LabContext) -> Result:
    X, Y = COURSE_X, COURSE_Y / cfg.target_scale
    layers = _course_layers(cfg, ctx.runtime.seed)
    sizes = bp.layer_sizes_of(layers)

    # Forward and backward by hand, then the three other ways.
    loss, hand = bp.mse_and_gradients(X, Y, layers)
    chain = bp.chain_rule_terms(X, Y, layers)
    model = _torch_network(layers)
    auto = _autograd_gradients(model, X, Y)
    margin = bp.kink_margin(X, layers)
    fd_ok = _fd_margin_ok(margin, cfg.fd_eps)
    fd = bp.central_difference_gradients(bp.mse_of(X, Y), layers, cfg.fd_eps)
    named = {way: bp.named_values(layers, g) for way, g in (("hand", hand), ("autograd", auto), ("finite_diff", fd))}
    named["chain_rule"] = {name: chain[name].value for name in named["hand"]}
    table = []
    for name, value in named["hand"].items():
        diffs = {way: abs(value - named[way][name]) for way in ("chain_rule", "autograd", "finite_diff")}
        table.append({"parameter": name, "hand": value, "chain_rule": named["chain_rule"][name],
                      "autograd": named["autograd"][name], "finite_diff": named["finite_diff"][name],
                      **{f"abs_diff_{way}": d for way, d in diffs.items()}})
    max_auto = max(r["abs_diff_autograd"] for r in table)
    max_fd = max(r["abs_diff_finite_diff"] for r in table)
    max_chain = max(r["abs_diff_chain_rule"] for r in table)
    ctx.log(f"  L = {loss:.6g}; max |hand − autograd| {max_auto:.2e}, |hand − finite diff| {max_fd:.2e}, "
            f"|hand − chain rule| {max_chain:.2e}")

    # One step w ← w − η ∂L/∂w, by hand and by torch.optim.SGD from the same weights.
    stepped = bp.sgd_step(layers, hand, cfg.lr)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    _autograd_gradients(model, X, Y)
    optimizer.step()
    sgd_diff = float(max(
        max(np.abs(layer.W - m.weight.detach().numpy()).max(), np.abs(layer.b - m.bias.detach().numpy()).max())
        for layer, m in zip(stepped, _linears(model))
    ))
    loss_after = bp.mse_loss(forward_as_matrices(X, stepped)[-1].A, Y)
    ctx.log(f"  one step η = {cfg.lr:g}: L {loss:.6g} → {loss_after:.6g}; max |hand − torch.optim.SGD| {sgd_diff:.2e}")

    checks = _randomized_check(cfg, ctx.runtime.seed)
    random_auto = max((r["max_abs_diff_hand_vs_autograd"] for r in checks), default=float("nan"))
    random_fd = max((r["max_abs_diff_hand_vs_finite_diff"] for r in checks), default=float("nan"))

    ctx.run.save_figure(_network_figure(layers, named["hand"], X, loss), "network_gradients",
                        "The network with ∂L/∂w on every edge (red > 0, blue < 0, width ∝ |∂L/∂w|) and ∂L/∂b under "
                        "every node; the numbers are backpropagation's, over the three examples.")
    ctx.run.save_figure(_check_figure(table, checks), "gradient_check",
                        "Left: |difference| from backpropagation per parameter of the course's network (log scale; "
                        "exact agreement drawn at the floor). Right: the largest difference per activation and depth "
                        "over the random networks; dashed: the 1e-8 criterion.")
    ctx.run.save_model({"model": model.state_dict(), "layer_sizes": list(sizes), "activation": cfg.activation,
                        "weights": cfg.weights, "after_sgd_steps": 1})

    rows = [("parameter", "backprop (hand)", "chain rule (slides)", "autograd", "finite difference", "max |diff|")]
    for r in table:
        worst = max(r["abs_diff_chain_rule"], r["abs_diff_autograd"], r["abs_diff_finite_diff"])
        rows.append((r["parameter"], f"{r['hand']:.12g}", f"{r['chain_rule']:.12g}", f"{r['autograd']:.12g}",
                     f"{r['finite_diff']:.12g}", f"{worst:.1e}"))
    rows += [("", "", "", "", "", ""), ("randomized check", "networks", "largest |hand − autograd|",
                                        "largest |hand − finite diff|", "", "")]
    for activation in CHECK_ACTIVATIONS:
        group = [r for r in checks if r["activation"] == activation]
        if group:
            rows.append((activation, f"{len(group)} (depths {','.join(map(str, cfg.check_depths))})",
                         f"{max(r['max_abs_diff_hand_vs_autograd'] for r in group):.1e}",
                         f"{max(r['max_abs_diff_hand_vs_finite_diff'] for r in group):.1e}", "", ""))

    findings = [
        f"Network {'→'.join(map(str, sizes))}, {cfg.activation} after every layer, {cfg.weights} weights; "
        f"L = mean over the 3 examples of (ŷ − y)², targets y/{cfg.target_scale:g} = "
        f"{', '.join(f'{v:.3g}' for v in Y[:, 0])}; predictions {', '.join(f'{v:.4g}' for v in forward_as_matrices(X, layers)[-1].A[:, 0])}; "
        f"L = {loss:.10g}.",
        f"Largest |difference| over all {len(table)} parameters: backprop vs autograd {max_auto:.1e}, vs the slides' "
        f"chain rule {max_chain:.1e}, vs central finite differences (ε = {cfg.fd_eps:g}) {max_fd:.1e} "
        f"— {'within' if max(max_auto, max_fd, max_chain) <= 1e-8 else 'NOT within'} 1e-8."
        + ("" if fd_ok else f" (A ReLU input lies {margin:.1e} from its kink z = 0, within 100·ε: the finite "
                              "differences of the weights feeding it step across the kink and are not valid there.)"),
    ]
    if max(abs(v) for v in named["hand"].values()) == 0:
        findings.append("Every gradient is exactly 0: the inputs of some layer's ReLUs are all negative on every row "
                        "(dead units), so nothing flows back and the step changes nothing; try activation=sigmoid or tanh.")
    for name in SHOWN_TERMS:
        if name in chain:
            findings.append(_chain_text(chain[name]))
    findings.append(
        f"One step w ← w − η ∂L/∂w with η = {cfg.lr:g}: L goes from {loss:.10g} to {loss_after:.10g}; the hand update "
        f"and torch.optim.SGD's agree to {sgd_diff:.1e} (largest |difference| over all weights and biases)."
    )
    if checks:
        findings.append(
            f"Randomized check: {len(checks)} networks ({', '.join(CHECK_ACTIVATIONS)}; {','.join(map(str, cfg.check_depths))} "
            f"hidden layers; widths 1–{cfg.check_max_width}; linear output; 5 examples): largest |hand − autograd| "
            f"{random_auto:.1e}, largest |hand − finite diff| {random_fd:.1e}. The ReLU networks' data are redrawn until "
            "no unit's input lies within 100·ε of the kink (where finite differences would step across it) and no "
            "ReLU layer is dead on every row."
        )
    return Result(
        metrics={
            "layer_sizes": list(sizes), "activation": cfg.activation, "weights": cfg.weights, "loss": loss,
            "gradient_table": table,
            "max_abs_diff_hand_vs_autograd": max_auto, "max_abs_diff_hand_vs_finite_diff": max_fd,
            "max_abs_diff_hand_vs_chain_rule": max_chain, "relu_kink_margin": margin, "finite_differences_valid": fd_ok,
            "chain_rule_terms": {name: _chain_record(chain[name]) for name in SHOWN_TERMS if name in chain},
            "sgd": {"lr": cfg.lr, "loss_before": loss, "loss_after": loss_after,
                    "max_abs_diff_hand_vs_torch_sgd": sgd_diff},
            "randomized_check": checks,
            "randomized_max_abs_diff_hand_vs_autograd": random_auto,
            "randomized_max_abs_diff_hand_vs_finite_diff": random_fd,
        },
        table=rows,
        findings=findings,
        headline=f"hand vs autograd {max(max_auto, random_auto if checks else 0):.0e}, vs finite diff "
        f"{max(max_fd, random_fd if checks else 0):.0e}; SGD step {sgd_diff:.0e}",
    )


def _chain_text(rule: bp.ChainRule) -> str:
    """'∂L/∂w57 = ∂L/∂y · ∂y/∂n7 · ∂n7/∂w57: example 1: (a) · (b) · (c) = p; summed over the 3 examples: v'."""
    numbers = " + ".join(" · ".join(f"({f.value[0]:.4g})" for f in path.factors) for path in rule.paths)
    first = sum(float(path.product[0]) for path in rule.paths)
    n = len(rule.paths[0].factors[0].value)
    return (f"{rule.formula()} (sum over the {n} examples). Example 1: {numbers} = {first:.6g}; "
            f"summed over the examples: {rule.value:.10g}.")


def _chain_record(rule: bp.ChainRule) -> dict:
    return {
        "formula": rule.formula(),
        "paths": [{"factors": {f.label: f.value for f in path.factors}, "product": path.product} for path in rule.paths],
        "value": rule.value,
    }


# --- figures --------------------------------------------------------------------------------------


def _network_figure(layers: list[Layer], grads: dict[str, float], X: np.ndarray, loss: float):
    import matplotlib.pyplot as plt

    sizes = bp.layer_sizes_of(layers)
    labels = node_labels(sizes)
    names = [[("x" if level == 0 else "n" if level < len(sizes) - 1 else "") + lab for lab in level_labels]
             for level, level_labels in enumerate(labels)]
    position = {}
    for level, size in enumerate(sizes):
        for j in range(size):
            position[(level, j)] = (level * 3.0, (size - 1) / 2 - j)
    scale = max(abs(v) for v in grads.values()) or 1.0
    fig, ax = plt.subplots(figsize=(2.6 * len(sizes) + 2, 1.3 * max(sizes) + 2))
    params = bp.parameter_names(sizes)
    for l, (W_names, b_names) in enumerate(params):
        for j, row in enumerate(W_names):
            for i, name in enumerate(row):
                (x0, y0), (x1, y1) = position[(l, i)], position[(l + 1, j)]
                g = grads[name]
                ax.plot([x0, x1], [y0, y1], color="C3" if g > 0 else "C0", lw=0.6 + 5 * abs(g) / scale, alpha=0.75, zorder=1)
                t = 0.32 + 0.36 * (i / max(len(row) - 1, 1))  # stagger the labels of edges into one node
                ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0), f"{name}\n{g:.3g}", fontsize=7, ha="center", va="center",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "0.8", "alpha": 0.9}, zorder=3)
        for j, name in enumerate(b_names):
            x, y = position[(l + 1, j)]
            ax.text(x, y - 0.33, f"{name}: {grads[name]:.3g}", fontsize=7, ha="center", va="top", color="0.25", zorder=3)
    for (level, j), (x, y) in position.items():
        ax.scatter([x], [y], s=900, color="white", edgecolor="k", zorder=4)
        ax.text(x, y, names[level][j], ha="center", va="center", fontsize=10, zorder=5)
    ax.set_title(f"∂L/∂w on every edge, ∂L/∂b under every node (L = {loss:.4g}, mean over {len(X)} examples)")
    ax.set_axis_off()
    ax.margins(0.08, 0.15)
    fig.tight_layout()
    return fig


def _check_figure(table: list[dict], checks: list[dict]):
    import matplotlib.pyplot as plt

    floor = 1e-20  # exact agreement (difference 0) has no logarithm; it is drawn here and said so in the legend
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.4), gridspec_kw={"width_ratios": [2.2, 1]})
    ax = axes[0]
    names = [r["parameter"] for r in table]
    x = np.arange(len(names))
    ways = (("autograd", "torch autograd"), ("finite_diff", "central finite differences"), ("chain_rule", "slides' chain rule"))
    for k, (way, label) in enumerate(ways):
        values = np.maximum([r[f"abs_diff_{way}"] for r in table], floor)
        ax.bar(x + (k - 1) * 0.27, values, width=0.27, label=f"|backprop − {label}|", color=f"C{k}")
    ax.axhline(1e-8, color="k", ls="--", lw=1, label="criterion 1e-8")
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, 1e-6)
    ax.set_xticks(x, names, rotation=0, fontsize=8)
    ax.set_ylabel(f"|difference| (0 drawn at {floor:g})")
    ax.set_title("course network: every gradient, four ways")
    ax.legend(fontsize=8, loc="upper left", ncol=2)
    ax.grid(alpha=0.3, axis="y")

    ax = axes[1]
    if checks:
        groups = sorted({(r["activation"], r["hidden_layers"]) for r in checks}, key=lambda g: (CHECK_ACTIVATIONS.index(g[0]), g[1]))
        x = np.arange(len(groups))
        for k, (key, label) in enumerate((("max_abs_diff_hand_vs_autograd", "vs autograd"),
                                          ("max_abs_diff_hand_vs_finite_diff", "vs finite diff"))):
            values = []
            for g in groups:
                values.append(max(max(r[key] for r in checks if (r["activation"], r["hidden_layers"]) == g), floor))
            ax.bar(x + (k - 0.5) * 0.4, values, width=0.4, label=label, color=f"C{k}")
        ax.axhline(1e-8, color="k", ls="--", lw=1)
        ax.set_xticks(x, [f"{a}\n{d}" for a, d in groups], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylim(floor / 3, 1e-6)
        ax.set_xlabel("activation / hidden layers")
        ax.legend(fontsize=8, loc="upper left")
    ax.set_title("random networks: largest |difference|")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig


LAB = Lab(
    id="backprop",
    title="Backpropagation by hand on the slides' sigmoid network",
    function="{activation} MLP 2→{hidden}→1",
    loss="MSE",
    minimizer="one SGD step, gradients by backpropagation",
    data="the slides' 3 points, y = (3x1 + 2x2) / target_scale",
    typical_time="~2 s (quick ~1 s)",
    config=Config,
    run=run,
    quick={"check_depths": (1, 2), "check_seeds": 1},
    prefers_cpu="a 2→3→2→1 network on 3 rows is too small to gain from a GPU",
)
