"""Linear regression by gradient descent, with the gradients written by hand (slides: "ML model (1)").

The course's three steps, for `n = 1..N` examples with features `x_i^n`:

1. function  ŷ^n = Σ_i w_i x_i^n + b
2. loss      L(w, b) = Σ_n (ŷ^n − y^n)²            (a sum over examples, as on the slide, not a mean)
3. minimize  w ← w − η ∂L/∂w,  b ← b − η ∂L/∂b     (slide "Gradient descent to find two parameters")

with the gradients, by the chain rule through ŷ^n:

    ∂L/∂w_i = Σ_n 2 (ŷ^n − y^n) x_i^n        ∂L/∂b = Σ_n 2 (ŷ^n − y^n)

L is a quadratic in θ = (w, b) with constant Hessian H = 2 AᵀA, A = [X 1]. One step maps the error
e = θ − θ* to (I − ηH) e, so gradient descent converges exactly when |1 − ηλ| < 1 for every
eigenvalue λ of H, i.e. when η < 2/λ_max; above that rate the error along the top eigenvector grows
by |1 − ηλ_max| > 1 per step and the loss explodes. The slowest direction shrinks by 1 − ηλ_min per
step, so the number of steps grows with the condition number λ_max/λ_min.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _as_data(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"X must be (N, d) and y (N,) or (N, 1) with the same N; got X {X.shape}, y {y.shape}")
    return X, y


def predict(X: np.ndarray, w: np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """ŷ^n = Σ_i w_i x_i^n + b.

    `w` may carry leading batch axes, shape (..., d) with `b` of shape (...): then ŷ has shape (..., N),
    one prediction per example for every (w, b) at once (used to draw the loss surface).
    """
    X = np.asarray(X, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return w @ X.T + b[..., None]


def loss(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float | np.ndarray) -> np.ndarray:
    """L(w, b) = Σ_n (ŷ^n − y^n)², the slide's sum of squares. Batched over leading axes of w, b like `predict`."""
    X, y = _as_data(X, y)
    residual = predict(X, w, b) - y
    return np.sum(residual**2, axis=-1)


def gradients(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> tuple[np.ndarray, float]:
    """(∂L/∂w, ∂L/∂b) by hand: ∂L/∂w_i = Σ_n 2(ŷ^n − y^n) x_i^n, ∂L/∂b = Σ_n 2(ŷ^n − y^n)."""
    X, y = _as_data(X, y)
    _, grad_w, grad_b = _loss_and_gradients(X, y, np.asarray(w, dtype=np.float64), float(b))
    return grad_w, grad_b


def _loss_and_gradients(X: np.ndarray, y: np.ndarray, w: np.ndarray, b: float) -> tuple[float, np.ndarray, float]:
    """L and its gradients from one residual; X, y, w already float64 arrays (the descent's inner loop)."""
    residual = X @ w + b - y  # ŷ^n − y^n
    # ∂L/∂ŷ^n = 2 (ŷ^n − y^n), ∂ŷ^n/∂w_i = x_i^n, ∂ŷ^n/∂b = 1
    return float(residual @ residual), 2.0 * residual @ X, float(2.0 * residual.sum())


def hessian(X: np.ndarray) -> np.ndarray:
    """H = 2 AᵀA with A = [X 1]: the loss's constant second derivative in θ = (w_1..w_d, b)."""
    A = np.column_stack([np.asarray(X, dtype=np.float64), np.ones(len(X))])
    return 2.0 * A.T @ A


def critical_learning_rate(X: np.ndarray) -> float:
    """2 / λ_max(H): gradient descent on L converges for every η below it and diverges above it."""
    return 2.0 / float(np.linalg.eigvalsh(hessian(X))[-1])


def least_squares(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The closed-form minimizer of L: numpy.linalg.lstsq on [X 1], the bias as the last column."""
    X, y = _as_data(X, y)
    A = np.column_stack([X, np.ones(len(X))])
    theta, *_ = np.linalg.lstsq(A, y, rcond=None)
    return theta[:-1], float(theta[-1])


@dataclass(frozen=True)
class DescentPath:
    """Everything gradient descent visited: row k holds the parameters before step k+1.

    `w` is (steps+1, d), `b`, `loss` are (steps+1,), `grad_w` (steps+1, d) and `grad_b` (steps+1,) are
    the hand gradients at those parameters. `stop` is 'max steps', 'converged' (gradient norm below
    the tolerance) or 'diverged' (loss non-finite or exploded); when diverged, the last row is the
    first bad one, kept so the explosion shows on a plot.
    """

    w: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    grad_w: np.ndarray
    grad_b: np.ndarray
    lr: float
    stop: str

    @property
    def diverged(self) -> bool:
        return self.stop == "diverged"

    @property
    def steps(self) -> int:
        return len(self.loss) - 1


def gradient_descent(
    X: np.ndarray,
    y: np.ndarray,
    lr: float,
    steps: int,
    w0: np.ndarray | None = None,
    b0: float = 0.0,
    grad_tol: float = 0.0,
    explode_factor: float = 1e12,
) -> DescentPath:
    """Run `steps` updates w ← w − η ∂L/∂w, b ← b − η ∂L/∂b from (w0, b0) (zeros by default).

    Stops early when the gradient norm falls to `grad_tol` ('converged'), or when the loss is not
    finite or exceeds `explode_factor` × the starting loss ('diverged'): a loss that big means
    η > 2/λ_max (see the module docstring), and going on would only overflow to inf and NaN.
    """
    X, y = _as_data(X, y)
    if not (lr > 0 and np.isfinite(lr)):
        raise ValueError(f"learning rate must be a positive number, got {lr}")
    d = X.shape[1]
    w = np.zeros(d) if w0 is None else np.array(w0, dtype=np.float64).reshape(d)
    b = float(b0)
    ws, bs, losses = np.empty((steps + 1, d)), np.empty(steps + 1), np.empty(steps + 1)
    gws, gbs = np.empty((steps + 1, d)), np.empty(steps + 1)
    stop, last = "max steps", steps
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected below and reported as divergence
        for step in range(steps + 1):
            ws[step], bs[step] = w, b
            losses[step], gws[step], gbs[step] = _loss_and_gradients(X, y, w, b)
            exploded = losses[0] > 0 and losses[step] > explode_factor * losses[0]  # a start at L = 0 cannot explode
            if not np.isfinite(losses[step]) or exploded:
                stop, last = "diverged", step
                break
            if step < steps and np.sqrt(gws[step] @ gws[step] + gbs[step] ** 2) <= grad_tol:
                stop, last = "converged", step
                break
            w = w - lr * gws[step]
            b = b - lr * gbs[step]
    keep = slice(0, last + 1)
    return DescentPath(ws[keep], bs[keep], losses[keep], gws[keep], gbs[keep], float(lr), stop)
