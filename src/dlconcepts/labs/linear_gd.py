"""Lab `linear-gd`: linear regression by gradient descent, the gradients written by hand.

Two data sets of the course: its three points X = [[1,2],[2,3],[10,5]], y = 3·x1 + 2·x2, and its
noisy line y = 3x + U(0,1)·100. On each, gradient descent with the hand gradients of
`scratch.linear_regression` walks from (w, b) = 0 to the closed-form least-squares solution
(numpy.linalg.lstsq), torch autograd runs the same descent in float64 and its gradients are compared
with the hand ones at every step, and a learning-rate study shows too small, good and too large.

The learning rates are read off the data: L is quadratic with Hessian H = 2·[X 1]ᵀ[X 1], and gradient
descent converges exactly when η < 2/λ_max(H). Every rate in this lab is a fraction of that critical rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dlconcepts.config import param
from dlconcepts.data import noisy_line
from dlconcepts.errors import ConfigError
from dlconcepts.explain.matrix import COURSE_X as MATRIX_COURSE_X
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.report import figures  # noqa: F401  (sets matplotlib's Agg backend before pyplot is used)
from dlconcepts.scratch import linear_regression as lr_scratch

COURSE_X = np.array(MATRIX_COURSE_X)  # slides, "Matrix operation": the three rows of X
COURSE_Y = COURSE_X @ np.array([3.0, 2.0])  # y = 3·x1 + 2·x2 = [7, 12, 40]


@dataclass(frozen=True)
class Config:
    steps: int = param(
        50_000, "most gradient-descent steps per run; a run stops earlier once ‖∇L‖ guarantees the tolerance",
        positive=True,
    )
    lr_fraction: float = param(
        0.9, "learning rate of the main fit, as a fraction of the critical rate 2/λ_max (≥ 1 diverges)", positive=True
    )
    study_fractions: tuple[float, ...] = param(
        (0.02, 0.9, 1.05), "learning rates of the study, as fractions of 2/λ_max: too small, good, too large",
        positive=True,
    )
    tolerance: float = param(1e-6, "largest accepted |(w, b) − lstsq| after the main fit", positive=True)

    def check(self) -> None:
        if self.lr_fraction >= 1:
            raise ConfigError(
                f"lr_fraction={self.lr_fraction:g} puts the main fit at η ≥ 2/λ_max, where gradient descent diverges; "
                "choose a value below 1 (study_fractions may go above 1 to show divergence)"
            )


@dataclass(frozen=True)
class Problem:
    name: str
    X: np.ndarray
    y: np.ndarray
    description: str


def _problems(seed: int) -> list[Problem]:
    line = noisy_line(np.random.default_rng(seed))
    return [
        Problem("three points", COURSE_X, COURSE_Y, "the course's X = [[1,2],[2,3],[10,5]], y = 3·x1 + 2·x2"),
        Problem("noisy line", line.X, line.y[:, 0], line.description),
    ]


# --- the reference: the same descent by torch autograd --------------------------------------------


def _autograd_descent(problem: Problem, lr: float, steps: int) -> dict[str, np.ndarray]:
    """The same descent with torch autograd computing the gradients, in float64; records every step.

    The update θ ← θ − η ∂L/∂θ is the slide's; only the gradient comes from `torch.autograd.grad`
    instead of the hand formula, so any difference between the two paths is a difference in gradients.
    """
    X = torch.as_tensor(problem.X, dtype=torch.float64)
    y = torch.as_tensor(problem.y, dtype=torch.float64)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)  # the hand descent's start: (w, b) = 0
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    ws, bs = torch.empty(steps + 1, X.shape[1], dtype=torch.float64), torch.empty(steps + 1, dtype=torch.float64)
    grads_w, grads_b = torch.empty_like(ws), torch.empty_like(bs)
    for step in range(steps + 1):
        loss = ((X @ w + b - y) ** 2).sum()
        grad_w, grad_b = torch.autograd.grad(loss, (w, b))
        with torch.no_grad():
            ws[step], bs[step], grads_w[step], grads_b[step] = w, b, grad_w, grad_b
            w -= lr * grad_w
            b -= lr * grad_b
    return {"w": ws.numpy(), "b": bs.numpy(), "grad_w": grads_w.numpy(), "grad_b": grads_b.numpy()}


# --- the lab --------------------------------------------------------------------------------------


def _grad_tol(lambda_min: float, cfg: Config) -> float:
    """Stop when ‖∇L‖ ≤ λ_min · tolerance / 100: since θ − θ* = H⁻¹∇L, then ‖θ − θ*‖ ≤ ‖∇L‖/λ_min ≤ tolerance/100."""
    return lambda_min * cfg.tolerance / 100


def _fit(problem: Problem, cfg: Config, ctx: LabContext) -> dict:
    H = lr_scratch.hessian(problem.X)
    eigenvalues = np.linalg.eigvalsh(H)
    critical = 2.0 / eigenvalues[-1]
    lr = cfg.lr_fraction * critical
    path = lr_scratch.gradient_descent(problem.X, problem.y, lr, cfg.steps, grad_tol=_grad_tol(eigenvalues[0], cfg))
    w_star, b_star = lr_scratch.least_squares(problem.X, problem.y)
    loss_star = float(lr_scratch.loss(problem.X, problem.y, w_star, b_star))
    gap = float(max(np.abs(path.w[-1] - w_star).max(), abs(path.b[-1] - b_star)))

    reference = _autograd_descent(problem, lr, path.steps)
    grad_diff = float(max(np.abs(path.grad_w - reference["grad_w"]).max(), np.abs(path.grad_b - reference["grad_b"]).max()))
    grad_scale = float(max(np.abs(path.grad_w).max(), np.abs(path.grad_b).max()))
    path_diff = float(max(np.abs(path.w - reference["w"]).max(), np.abs(path.b - reference["b"]).max()))
    # The slowest direction (eigenvalue λ_min) shrinks by |1 − ηλ_min| per step, the fastest by |1 − ηλ_max|.
    rate = float(max(abs(1 - lr * eigenvalues[0]), abs(1 - lr * eigenvalues[-1])))
    ctx.log(f"  {problem.name}: η = {lr:.4g} ({cfg.lr_fraction:g} × 2/λ_max), {path.steps} steps ({path.stop}); "
            f"|θ − lstsq| = {gap:.3g}; max |hand − autograd| gradient {grad_diff:.3g}")
    return {
        "problem": problem, "path": path, "w_star": w_star, "b_star": b_star, "loss_star": loss_star,
        "metrics": {
            "lambda_min": float(eigenvalues[0]), "lambda_max": float(eigenvalues[-1]),
            "condition_number": float(eigenvalues[-1] / eigenvalues[0]), "critical_lr": float(critical),
            "lr": float(lr), "steps": path.steps, "stop": path.stop, "contraction_per_step": rate,
            "w_gd": path.w[-1], "b_gd": float(path.b[-1]), "w_lstsq": w_star, "b_lstsq": b_star,
            "loss_gd": float(path.loss[-1]), "loss_lstsq": loss_star, "max_abs_gap_to_lstsq": gap,
            "within_tolerance": gap <= cfg.tolerance,
            "max_abs_grad_diff_hand_vs_autograd": grad_diff, "max_abs_grad": grad_scale,
            "max_rel_grad_diff_hand_vs_autograd": grad_diff / grad_scale,
            "max_abs_param_diff_hand_vs_autograd": path_diff,
        },
    }


def _study(problem: Problem, fit: dict, cfg: Config) -> list[dict]:
    critical = fit["metrics"]["critical_lr"]
    runs = []
    for fraction in cfg.study_fractions:
        grad_tol = _grad_tol(fit["metrics"]["lambda_min"], cfg)
        path = lr_scratch.gradient_descent(problem.X, problem.y, fraction * critical, cfg.steps, grad_tol=grad_tol)
        gap = float(max(np.abs(path.w[-1] - fit["w_star"]).max(), abs(path.b[-1] - fit["b_star"])))
        if path.diverged:
            verdict = f"diverged at step {path.steps}"
        elif gap <= cfg.tolerance:
            verdict = f"converged in {path.steps} steps"
        else:
            verdict = f"too slow: |θ − lstsq| = {gap:.2g} after {path.steps} steps"
        runs.append({"fraction": fraction, "lr": fraction * critical, "path": path, "gap": gap, "verdict": verdict})
    return runs


def run(cfg: Config, ctx: LabContext) -> Result:
    problems = _problems(ctx.runtime.seed)
    fits = {p.name: _fit(p, cfg, ctx) for p in problems}
    studies = {p.name: _study(p, fits[p.name], cfg) for p in problems}

    ctx.run.save_figure(_path_figure(fits), "gd_path",
                        "Gradient descent on contours of L − L* (levels evenly spaced in log over six decades, "
                        "dark = low). Left: the noisy line and the fit. Middle: the path in the (w, b) plane. Right: "
                        "the three points' path in the (w1, w2) plane, drawn on the slice of L through the minimum "
                        "(b = b*).")
    ctx.run.save_figure(_study_figure(studies, fits), "learning_rates",
                        "Learning-rate study: L − L* per step (log scale) for rates given as fractions of the "
                        "critical rate 2/λ_max; a diverging run ends at the × where its loss exploded.")
    line = fits["noisy line"]
    model = nn.Linear(1, 1, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(line["path"].w[-1]).reshape(1, 1))
        model.bias.fill_(float(line["path"].b[-1]))
    ctx.run.save_model({"model": model.state_dict(), "data": "noisy line", "lr": line["metrics"]["lr"],
                        "steps": line["metrics"]["steps"]})

    rows = [("data", "parameter", "gradient descent", "lstsq", "|difference|")]
    for name, fit in fits.items():
        m = fit["metrics"]
        labels = [f"w{i + 1}" for i in range(len(m["w_gd"]))] if len(m["w_gd"]) > 1 else ["w"]
        for label, a, b in zip(labels + ["b"], [*m["w_gd"], m["b_gd"]], [*m["w_lstsq"], m["b_lstsq"]]):
            rows.append((name, label, f"{a:.10g}", f"{b:.10g}", f"{abs(a - b):.2e}"))
    study_rows = [(name, f"{r['fraction']:g} × 2/λ_max", f"{r['lr']:.4g}", r["verdict"])
                  for name, runs in studies.items() for r in runs]
    rows += [("", "", "", "", ""), ("data", "learning rate", "η", "outcome", "")]
    rows += [(*r, "") for r in study_rows]

    findings = []
    for name, fit in fits.items():
        m = fit["metrics"]
        findings.append(
            f"{name}: H = 2·[X 1]ᵀ[X 1] has eigenvalues from λ_min = {m['lambda_min']:.4g} to λ_max = {m['lambda_max']:.4g} "
            f"(condition number {m['condition_number']:.4g}), so gradient descent converges for η < 2/λ_max = "
            f"{m['critical_lr']:.4g} and diverges above it. At η = {m['lr']:.4g} the slowest direction shrinks by "
            f"1 − ηλ_min = {1 - m['lr'] * m['lambda_min']:.6f} per step — that is why it takes thousands of steps."
        )
        findings.append(
            f"{name}: after {m['steps']} steps, max |(w, b) − lstsq| = {m['max_abs_gap_to_lstsq']:.3g} "
            f"({'within' if m['within_tolerance'] else 'NOT within'} the tolerance {cfg.tolerance:g}"
            f"{'; quick mode runs fewer steps' if ctx.quick and not m['within_tolerance'] else ''}). "
            f"Hand gradients vs torch autograd over all {m['steps'] + 1} steps: max |difference| "
            f"{m['max_abs_grad_diff_hand_vs_autograd']:.3g} on gradients up to {m['max_abs_grad']:.3g} (relative "
            f"{m['max_rel_grad_diff_hand_vs_autograd']:.2g}, float64 round-off); parameters along the two paths differ by at most "
            f"{m['max_abs_param_diff_hand_vs_autograd']:.3g}."
        )
    for name, runs in studies.items():
        text = "; ".join(f"η = {r['fraction']:g} × 2/λ_max: {r['verdict']}" for r in runs)
        findings.append(f"{name}, learning rates: {text}.")
    between = [f for f in cfg.study_fractions + (cfg.lr_fraction,) if 0.5 < f < 1]
    if between:
        findings.append(
            f"A rate between 1/λ_max and 2/λ_max (here {max(between):g} × 2/λ_max) still converges: along the steepest "
            "direction it overshoots the valley floor every step (1 − ηλ_max < 0, the zigzag in the path figure) "
            "but by less than it was off, so the overshoot shrinks."
        )

    worst_gap = max(f["metrics"]["max_abs_gap_to_lstsq"] for f in fits.values())
    worst_grad = max(f["metrics"]["max_abs_grad_diff_hand_vs_autograd"] for f in fits.values())
    return Result(
        metrics={
            **{name.replace(" ", "_"): fit["metrics"] for name, fit in fits.items()},
            "learning_rate_study": {
                name.replace(" ", "_"): [
                    {"fraction_of_critical": r["fraction"], "lr": r["lr"], "stop": r["path"].stop,
                     "steps_run": r["path"].steps, "final_loss": float(r["path"].loss[-1]), "gap_to_lstsq": r["gap"],
                     "verdict": r["verdict"]}
                    for r in runs
                ]
                for name, runs in studies.items()
            },
            "max_abs_gap_to_lstsq": worst_gap,
            "max_abs_grad_diff_hand_vs_autograd": worst_grad,
        },
        table=rows,
        findings=findings,
        headline=f"|GD − lstsq| ≤ {worst_gap:.2g}; hand vs autograd gradients ≤ {worst_grad:.2g}",
    )


# --- figures --------------------------------------------------------------------------------------


def _log_contour(ax, U: np.ndarray, V: np.ndarray, excess: np.ndarray, n: int = 18) -> None:
    """Contours of L − L* at levels spaced evenly in log (a factor ~2.2 apart over six decades), dark = low."""
    import matplotlib.pyplot as plt

    top = float(np.nanmax(excess))
    levels = np.geomspace(top * 1e-6, top, n)
    ax.contour(U, V, excess, levels=levels, colors=plt.cm.viridis(np.linspace(0, 0.9, n)), linewidths=0.8)


def _path_figure(fits: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15.5, 4.8))
    line = fits["noisy line"]
    p, path = line["problem"], line["path"]

    ax = axes[0]
    ax.scatter(p.X[:, 0], p.y, s=14, color="0.4", label="data")
    xs = np.linspace(p.X.min(), p.X.max(), 2)
    ax.plot(xs, path.w[-1][0] * xs + path.b[-1], color="C3", lw=2.2, label=f"GD: ŷ = {path.w[-1][0]:.4f}x + {path.b[-1]:.3f}")
    ax.plot(xs, line["w_star"][0] * xs + line["b_star"], color="k", lw=1, ls="--", label="lstsq")
    ax.set(xlabel="x", ylabel="y", title="noisy line and the fitted ŷ = wx + b")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)

    # (w, b) plane: the window spans the start (0, 0) and the minimum with a margin.
    ax = axes[1]
    w_path, b_path = path.w[:, 0], path.b
    w_lo, w_hi = min(w_path.min(), 0) - 0.6, max(w_path.max(), line["w_star"][0]) + 0.6
    b_lo, b_hi = min(b_path.min(), 0) - 15, max(b_path.max(), line["b_star"]) + 15
    W, B = np.meshgrid(np.linspace(w_lo, w_hi, 300), np.linspace(b_lo, b_hi, 300))
    L = lr_scratch.loss(p.X, p.y, W[..., None], B)
    excess = L - line["loss_star"]
    _log_contour(ax, W, B, excess)
    _draw_path(ax, w_path, b_path)
    ax.plot(line["w_star"][0], line["b_star"], marker="*", color="k", ms=14, ls="none", label="lstsq minimum")
    ax.set(xlabel="w", ylabel="b", title=f"noisy line: path of (w, b), η = {path.lr:.3g}")
    ax.legend(fontsize=8, loc="center left")

    # (w1, w2) plane of the three points, on the slice b = b*.
    ax = axes[2]
    three = fits["three points"]
    p, path = three["problem"], three["path"]
    w1, w2 = path.w[:, 0], path.w[:, 1]
    W1, W2 = np.meshgrid(np.linspace(min(w1.min(), 0) - 1, max(w1.max(), 3) + 1, 300),
                         np.linspace(min(w2.min(), 0) - 1, max(w2.max(), 2) + 1, 300))
    L = lr_scratch.loss(p.X, p.y, np.stack([W1, W2], axis=-1), np.full(W1.shape, three["b_star"]))
    excess = L - three["loss_star"]
    _log_contour(ax, W1, W2, excess)
    _draw_path(ax, w1, w2)
    ax.plot(three["w_star"][0], three["w_star"][1], marker="*", color="k", ms=14, ls="none", label="lstsq minimum")
    ax.set(xlabel="w1", ylabel="w2", title=f"three points: path of (w1, w2) at b = b*, η = {path.lr:.3g}")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _draw_path(ax, u: np.ndarray, v: np.ndarray, first: int = 25) -> None:
    """The whole path as a line, its first steps as dots (where the zigzag shows), start and end marked."""
    ax.plot(u, v, color="C3", lw=1.2, label=f"GD path ({len(u) - 1} steps)")
    ax.plot(u[:first], v[:first], color="C3", marker="o", ms=3, lw=0.6, label=f"first {first - 1} steps")
    ax.plot(u[0], v[0], marker="s", color="C1", ms=8, ls="none", label="start (0, 0)")


def _study_figure(studies: dict, fits: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(studies), figsize=(6.2 * len(studies), 4.2), squeeze=False)
    for ax, (name, runs) in zip(axes[0], studies.items()):
        loss_star = fits[name]["loss_star"]
        for i, r in enumerate(runs):
            excess = r["path"].loss - loss_star
            steps = np.arange(len(excess))
            shown = np.where(excess > 0, excess, np.nan)  # exact zeros (round-off at the minimum) have no log
            label = f"η = {r['fraction']:g} × 2/λ_max = {r['lr']:.3g}: {r['verdict']}"
            ax.plot(steps + 1, shown, color=f"C{i}", lw=1.4, label=label)
            if r["path"].diverged:
                ax.plot(steps[-1] + 1, shown[-1], marker="x", color=f"C{i}", ms=10, mew=2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set(xlabel="step + 1 (log scale)", ylabel="L − L*  (log scale)", title=f"{name}: learning-rate study")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    return fig


LAB = Lab(
    id="linear-gd",
    title="Linear regression by gradient descent, gradients by hand",
    function="ŷ = Σ wᵢxᵢ + b",
    loss="L = Σ (ŷ − y)²",
    minimizer="gradient descent, gradients by hand",
    data="3 points X=[[1,2],[2,3],[10,5]], y=3x1+2x2; a noisy line",
    typical_time="~10 s (quick ~1 s)",
    config=Config,
    run=run,
    quick={"steps": 2000},
    prefers_cpu="a linear model on 40 rows is too small to gain from a GPU",
)
