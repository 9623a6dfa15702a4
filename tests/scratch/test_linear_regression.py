"""Linear regression by hand: gradients against torch autograd and finite differences, descent against lstsq."""

import numpy as np
import pytest
import torch

from dlconcepts.data import noisy_line
from dlconcepts.scratch import linear_regression as lr

COURSE_X = np.array([[1.0, 2.0], [2.0, 3.0], [10.0, 5.0]])
COURSE_Y = np.array([7.0, 12.0, 40.0])


def problems():
    line = noisy_line(np.random.default_rng(0))
    return {"three points": (COURSE_X, COURSE_Y), "noisy line": (line.X, line.y[:, 0])}


def autograd_gradients(X, y, w, b):
    w = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = ((torch.as_tensor(X) @ w + b - torch.as_tensor(y)) ** 2).sum()
    loss.backward()
    return w.grad.numpy(), float(b.grad)


@pytest.mark.parametrize("name", ["three points", "noisy line"])
def test_hand_gradients_equal_autograd_and_finite_differences(name):
    X, y = problems()[name]
    rng = np.random.default_rng(1)
    for _ in range(5):
        w, b = rng.normal(size=X.shape[1]) * 3, float(rng.normal() * 10)
        gw, gb = lr.gradients(X, y, w, b)
        aw, ab = autograd_gradients(X, y, w, b)
        scale = max(np.abs(gw).max(), abs(gb))
        # Both sum the same N products in float64; they may differ by a few ulps of the largest gradient.
        np.testing.assert_allclose(gw, aw, rtol=0, atol=1e-14 * scale)
        assert abs(gb - ab) <= 1e-14 * scale
        # L is quadratic, so the central difference has no truncation error, only round-off: each
        # L, a sum of N squares, is off by at most about N·u·|L| (u = 1.1e-16), so the quotient is
        # off by at most about N·u·|L|/ε; we allow 4× that.
        eps = 1e-3
        fd_w = [(lr.loss(X, y, w + eps * e, b) - lr.loss(X, y, w - eps * e, b)) / (2 * eps) for e in np.eye(len(w))]
        fd_b = (lr.loss(X, y, w, b + eps) - lr.loss(X, y, w, b - eps)) / (2 * eps)
        tol = 4 * len(y) * np.finfo(float).eps / 2 * float(lr.loss(X, y, w, b)) / eps
        np.testing.assert_allclose(gw, fd_w, rtol=0, atol=tol)
        assert abs(gb - fd_b) <= tol


def test_loss_and_predict_batch_over_parameter_grids():
    w = np.array([[3.0, 2.0], [0.0, 0.0]])
    b = np.array([0.0, 1.0])
    assert lr.predict(COURSE_X, w, b).shape == (2, 3)
    np.testing.assert_allclose(lr.loss(COURSE_X, COURSE_Y, w, b), [0.0, 36 + 121 + 39**2])


@pytest.mark.parametrize("name", ["three points", "noisy line"])
def test_gradient_descent_reaches_least_squares_within_1e_6(name):
    X, y = problems()[name]
    eigenvalues = np.linalg.eigvalsh(lr.hessian(X))
    eta = 0.9 * lr.critical_learning_rate(X)
    w_star, b_star = lr.least_squares(X, y)
    # The error e = θ − θ* obeys e ← (I − ηH) e, so ‖e_k‖ ≤ ρ^k ‖e_0‖ with ρ = max |1 − ηλ|.
    # Run exactly the steps that bound promises for 1e-8, then ask for 1e-6.
    rho = max(abs(1 - eta * eigenvalues[0]), abs(1 - eta * eigenvalues[-1]))
    e0 = np.linalg.norm(np.append(w_star, b_star))
    steps = int(np.ceil(np.log(1e-8 / e0) / np.log(rho)))
    path = lr.gradient_descent(X, y, eta, steps)
    assert path.stop == "max steps" and path.steps == steps
    assert np.abs(path.w[-1] - w_star).max() <= 1e-6
    assert abs(path.b[-1] - b_star) <= 1e-6
    assert path.loss[-1] == pytest.approx(float(lr.loss(X, y, w_star, b_star)), rel=1e-9, abs=1e-9)


def test_least_squares_solves_the_normal_equations_and_the_exact_data():
    w, b = lr.least_squares(COURSE_X, COURSE_Y)
    np.testing.assert_allclose(w, [3.0, 2.0], atol=1e-12)
    assert abs(b) < 1e-12
    X, y = problems()["noisy line"]
    A = np.column_stack([X, np.ones(len(X))])
    theta = np.linalg.solve(A.T @ A, A.T @ y)
    w, b = lr.least_squares(X, y)
    np.testing.assert_allclose(np.append(w, b), theta, rtol=1e-10)
    gw, gb = lr.gradients(X, y, w, b)  # the minimum is where the hand gradient vanishes
    assert np.abs(gw).max() < 1e-7 and abs(gb) < 1e-9


@pytest.mark.parametrize("name", ["three points", "noisy line"])
def test_the_critical_rate_separates_convergence_from_divergence(name):
    X, y = problems()[name]
    critical = lr.critical_learning_rate(X)
    below = lr.gradient_descent(X, y, 0.98 * critical, 3000)
    above = lr.gradient_descent(X, y, 1.02 * critical, 3000)
    assert not below.diverged and below.loss[-1] < below.loss[0]
    assert above.diverged and above.steps < 3000
    assert np.isfinite(above.loss[:-1]).all()  # stopped before overflowing to inf/NaN


def test_a_huge_rate_is_flagged_diverged_not_crashing():
    path = lr.gradient_descent(COURSE_X, COURSE_Y, 1e6, 100)
    assert path.diverged and path.steps <= 3


def test_gradient_tolerance_stops_as_converged():
    critical = lr.critical_learning_rate(COURSE_X)
    path = lr.gradient_descent(COURSE_X, COURSE_Y, 0.9 * critical, 100_000, grad_tol=1e-6)
    assert path.stop == "converged" and path.steps < 100_000
    assert np.hypot(np.linalg.norm(path.grad_w[-1]), path.grad_b[-1]) <= 1e-6


def test_hand_descent_follows_torch_sgd_step_by_step():
    X, y = problems()["noisy line"]
    eta = 0.9 * lr.critical_learning_rate(X)
    path = lr.gradient_descent(X, y, eta, 200)
    model = torch.nn.Linear(1, 1, dtype=torch.float64)
    torch.nn.init.zeros_(model.weight)
    torch.nn.init.zeros_(model.bias)
    opt = torch.optim.SGD(model.parameters(), lr=eta)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    for k in range(200):
        opt.zero_grad()
        ((model(Xt)[:, 0] - yt) ** 2).sum().backward()
        np.testing.assert_allclose(model.weight.grad.numpy()[0], path.grad_w[k], rtol=1e-12, atol=1e-9)
        opt.step()
    np.testing.assert_allclose(model.weight.detach().numpy()[0], path.w[-1], rtol=1e-12)
    np.testing.assert_allclose(float(model.bias.detach()), path.b[-1], rtol=1e-10)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="learning rate"):
        lr.gradient_descent(COURSE_X, COURSE_Y, -0.1, 10)
    with pytest.raises(ValueError, match="same N"):
        lr.gradients(COURSE_X, COURSE_Y[:2], np.zeros(2), 0.0)
