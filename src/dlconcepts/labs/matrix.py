"""Lab `matrix`: the course's MLP as matrix operations — by hand, by PyTorch, and by a spreadsheet.

The slides build `MyNet = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 2), nn.Linear(2, 1))`, print
its parameters, name them after the nodes they join (w13 … b_y), recompute each layer as
X·Wᵀ + b and say "Use Excel to verify". This lab does all three with the slides' weights (or a
seeded random MLP): the walk-through comes from `explain.matrix`, the workbook with live formulas
from `explain.spreadsheet`, and — where LibreOffice is installed — the workbook is recalculated by
a real spreadsheet engine and its numbers compared with PyTorch's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlconcepts.config import param
from dlconcepts.errors import ConfigError
from dlconcepts.explain import spreadsheet
from dlconcepts.explain.matrix import (
    COURSE_LAYER_SIZES, SLIDE_LAYER_OUTPUTS, SLIDE_SIGMOID_EXAMPLE, Walkthrough, choose_network, sigmoid_example,
    walk_through,
)
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.report import figures
from dlconcepts.scratch.mlp import ACTIVATIONS


@dataclass(frozen=True)
class Config:
    network: str = param("course", "course = MyNet with the slides' weights; random = a seeded MLP of `layers`",
                         choices=("course", "random"))
    layers: tuple[int, ...] = param(COURSE_LAYER_SIZES, "layer sizes (inputs, hidden..., outputs); the course's is 2,3,2,1",
                                    positive=True)
    activation: str = param("identity", "activation after each hidden layer (the slides' MyNet has none)",
                            choices=tuple(ACTIVATIONS))
    recalculate: bool = param(True, "recalculate the workbook in LibreOffice headless (when installed) and compare with PyTorch")

    def check(self) -> None:
        if len(self.layers) < 2:
            raise ConfigError(f"layers={','.join(map(str, self.layers))} needs at least inputs and outputs, e.g. 2,3,2,1")
        if self.network == "course" and self.layers != COURSE_LAYER_SIZES:
            raise ConfigError("layers applies to network=random (the course's network is 2,3,2,1); "
                              "add --set network=random")


def run(cfg: Config, ctx: LabContext) -> Result:
    seed = ctx.runtime.seed if cfg.network == "random" else None
    net, X, description = choose_network(cfg.layers, cfg.activation, seed)
    walk = walk_through(net, X)
    ctx.log(f"  network: {description}")
    ctx.run.write_text("walkthrough.txt", f"{description}\n\n{walk.text()}")

    workbook = spreadsheet.write_workbook(walk, ctx.run.path / "matrix.xlsx")
    check = None
    if not cfg.recalculate:
        sheet_note = ("the workbook was not recalculated here (recalculate=false, as in quick mode), so it is not verified "
                      "in this run")
    elif spreadsheet.find_soffice() is None:
        sheet_note = ("LibreOffice (soffice) is not installed, so the workbook was NOT recalculated and is not verified "
                      "in this run; install libreoffice-calc to check it")
    else:
        check = spreadsheet.check_against_pytorch(workbook, walk)
        sheet_note = (f"LibreOffice recalculated every formula of matrix.xlsx in {check.seconds:.1f} s; its z and a "
                      f"match PyTorch's to {check.max_rel_diff:.1e} relative (largest over all cells)")
    ctx.log(f"  spreadsheet: {sheet_note}")

    sigma = sigmoid_example()
    ctx.run.save_figure(_parameters_figure(walk), "parameters",
                        "Every weight and bias, named as in the course (w13 joins x1 to n3; b_y is the output's bias).")
    ctx.run.save_figure(_outputs_figure(walk), "layer_outputs",
                        "X and each layer's output z = X·Wᵀ + b (and a = f(z) where there is an activation), "
                        "one row per example, as computed by hand.")
    ctx.run.save_model({"model": net.state_dict(), "layer_sizes": list(walk.layer_sizes), "activation": cfg.activation,
                        "network": cfg.network})

    rows: list[tuple[str, ...]] = [("layer", "parameters (course names)", "by hand: X·Wᵀ + b, then f",
                                    "the module's own output", "largest difference")]
    for step in walk.steps:
        params = "; ".join(f"{n} = {step.layer.W[j, i]:.4f}" for j, names in enumerate(step.weight_names)
                           for i, n in enumerate(names))
        params += "; " + "; ".join(f"{n} = {v:.4f}" for n, v in zip(step.bias_names, step.layer.b))
        rows.append((step.title(), params, _matrix_cell(step.hand.A), _matrix_cell(step.module_A), f"{step.max_abs_diff:.1e}"))

    findings = [f"Network: {description}; run in {walk.dtype}. Hand and module agree to {walk.max_abs_diff:.1e} "
                f"at most (walkthrough.txt has every matrix)."]
    metrics: dict = {
        "network": cfg.network, "layer_sizes": list(walk.layer_sizes), "activation": cfg.activation,
        "max_abs_diff_hand_vs_module": walk.max_abs_diff,
        "layers": [{"name": step.title(), "max_abs_diff": step.max_abs_diff, "z": step.hand.Z, "a": step.hand.A}
                   for step in walk.steps],
        "sigmoid_example": {"z": sigma.Z, "a": sigma.A},
        "spreadsheet_recalculated": check is not None,
        "spreadsheet_max_rel_diff": None if check is None else check.max_rel_diff,
        "spreadsheet_seconds": None if check is None else check.seconds,
    }
    if cfg.network == "course" and cfg.activation == "identity":
        row_sums = np.abs(walk.X).sum(axis=1)
        gaps = [float(np.max(np.abs(step.hand.Z - np.array(printed))))
                for step, printed in zip(walk.steps, SLIDE_LAYER_OUTPUTS)]
        metrics["largest_gap_to_slide_printout"] = gaps
        findings.append(
            f"Against the slides' printed HiddenLayer1 and HiddenLayer2 the largest gaps are {gaps[0]:.1e} and "
            f"{gaps[1]:.1e}: the slides printed the weights rounded to 4 decimals but computed the layers from the "
            f"unrounded ones (a rounding of up to 5e-5 in each weight and bias moves a layer-1 output by up to "
            f"5e-5·(|x1| + |x2| + 1) = {5e-5 * (row_sums.max() + 1):.1e} for x = {walk.X[row_sums.argmax()].tolist()})."
        )
    ex = SLIDE_SIGMOID_EXAMPLE
    findings.append(
        f"The slides' one-line example: σ({ex['W']}·{ex['x']} + {ex['b']}) = σ([{sigma.Z[0]:g}, {sigma.Z[1]:g}]) = "
        f"[{sigma.A[0]:.2f}, {sigma.A[1]:.2f}] ({sigma.A[0]:.6f}, {sigma.A[1]:.6f})."
    )
    findings.append(f"Use Excel to verify: matrix.xlsx has one sheet per layer with W, b, k = MMULT(X, TRANSPOSE(W)), "
                    f"z = k + b (and a = f(z) where a layer has an activation) as live formulas beside PyTorch's values; {sheet_note}.")
    headline = f"hand == module to {walk.max_abs_diff:.0e}; " + (
        f"spreadsheet == PyTorch to {check.max_rel_diff:.0e} relative" if check else "spreadsheet not recalculated")
    return Result(metrics=metrics, table=rows, findings=findings, headline=headline)


def _matrix_cell(M: np.ndarray) -> str:
    """A small matrix in one table cell: rows separated by ';'."""
    return "[" + "; ".join(" ".join(f"{v:.4f}" for v in row) for row in M) + "]"


def _annotated(ax, M: np.ndarray, labels: list[list[str]] | None, limit: float, title: str,
               row_names: list[str], col_names: list[str]) -> None:
    ax.imshow(M, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    small = M.size > 24
    for (i, j), v in np.ndenumerate(M):
        text = f"{v:.4f}" if labels is None else f"{labels[i][j]}\n{v:.4f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=6 if small else 9,
                color="white" if abs(v) > 0.6 * limit else "black")
    ax.set_xticks(range(M.shape[1]), col_names, fontsize=8)
    ax.set_yticks(range(M.shape[0]), row_names, fontsize=8)
    ax.set_title(title, fontsize=10)


def _parameters_figure(walk: Walkthrough):
    import matplotlib.pyplot as plt

    limit = max(float(np.max(np.abs(np.column_stack([s.layer.W, s.layer.b])))) for s in walk.steps)
    widths = [s.layer.W.shape[1] + 1 for s in walk.steps]
    tallest = max(max(s.layer.W.shape[0] for s in walk.steps), 2)
    fig, axes = plt.subplots(1, len(walk.steps), figsize=(1.2 * sum(widths) + 1.5, 0.9 * tallest + 1.6),
                             gridspec_kw={"width_ratios": widths}, squeeze=False)
    for ax, step in zip(axes[0], walk.steps):
        M = np.column_stack([step.layer.W, step.layer.b])
        labels = [[*names, b] for names, b in zip(step.weight_names, step.bias_names)]
        _annotated(ax, M, labels, limit, f"W{step.number} | b{step.number}", step.output_names,
                   [*step.input_names, "bias"])
        ax.axvline(step.layer.W.shape[1] - 0.5, color="k", lw=1.5)
        ax.set_xlabel("from node (columns of W)", fontsize=8)
    axes[0][0].set_ylabel("to node (rows of W)", fontsize=8)
    fig.suptitle("the parameters, named as in the course: w13 joins x1 to n3", fontsize=11)
    fig.tight_layout()
    return fig


def _outputs_figure(walk: Walkthrough):
    import matplotlib.pyplot as plt

    panels = [("X", walk.X, walk.steps[0].input_names)]
    source = "X"
    for step in walk.steps:
        panels.append((f"z{step.number} = {source}·W{step.number}ᵀ + b{step.number}", step.hand.Z, step.output_names))
        source = f"z{step.number}" if step.layer.activation == "identity" else f"a{step.number}"
        if step.layer.activation != "identity":
            panels.append((f"a{step.number} = {step.layer.activation}(z{step.number})", step.hand.A, step.output_names))
    widths = [M.shape[1] for _, M, _ in panels]
    height = 0.55 * walk.X.shape[0] + 1.2
    if sum(widths) <= 18:  # side by side, as the slides write X·Wᵀ + b
        fig, axes = plt.subplots(1, len(panels), figsize=(1.1 * sum(widths) + 1.5, height + 0.6),
                                 gridspec_kw={"width_ratios": widths}, squeeze=False)
        axes = axes[0]
    else:  # wide layers: one matrix under the other, so the figure stays readable
        fig, axes = plt.subplots(len(panels), 1, figsize=(1.1 * max(widths) + 1.5, height * len(panels)), squeeze=False)
        axes = axes[:, 0]
    examples = [f"example {i + 1}" for i in range(walk.X.shape[0])]
    for ax, (title, M, cols) in zip(axes, panels):
        limit = max(float(np.max(np.abs(M))), 1e-12)
        _annotated(ax, M, None, limit, title, examples, cols)
    fig.suptitle("each layer computed as a matrix product, one row per example", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()))  # leave the suptitle its own strip
    return fig


LAB = Lab(
    id="matrix",
    title="The MLP as matrix operations: the course's network by hand, by PyTorch and by a spreadsheet",
    function="MLP {layers} as X·Wᵀ + b, {activation} hidden",
    loss="none (forward pass only)",
    minimizer="none ({network} weights given)",
    data="the slides' X = [[1,2],[2,3],[10,5]]",
    typical_time="~2 s (quick <1 s)",
    config=Config,
    run=run,
    quick={"recalculate": False},
    prefers_cpu="a 2→3→2→1 network on 3 rows is far too small to gain from a GPU",
)
