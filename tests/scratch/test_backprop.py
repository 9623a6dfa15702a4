"""Backpropagation by hand == torch autograd == central finite differences, in float64."""

import ast
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dlconcepts.labs.backprop import COURSE_X, COURSE_Y, SLIDE_WEIGHTS
from dlconcepts.scratch import backprop as bp
from dlconcepts.scratch.mlp import Layer, forward_as_matrices

TORCH_ACTIVATION = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "identity": lambda z: z}
EPS = 1e-5  # finite-difference step; error ~ε²·|L'''| + u·|L|/ε ≈ 1e-10 for values of order one
CRITERION = 1e-8  # the bound for hand vs autograd vs finite differences


def slide_layers(activation="sigmoid"):
    return [Layer(np.array(W), np.array(b), activation) for W, b in SLIDE_WEIGHTS]


def autograd(X, Y, layers):
    """An independent reference: torch's own ops on the same weights, MSE with reduction='mean'."""
    params = [(torch.tensor(np.asarray(l.W, dtype=np.float64), requires_grad=True),
               torch.tensor(np.asarray(l.b, dtype=np.float64), requires_grad=True)) for l in layers]
    A = torch.as_tensor(np.asarray(X, dtype=np.float64))
    for (W, b), layer in zip(params, layers):
        A = TORCH_ACTIVATION[layer.activation](A @ W.T + b)
    loss = torch.nn.functional.mse_loss(A, torch.as_tensor(np.asarray(Y, dtype=np.float64)))
    loss.backward()
    return float(loss.detach()), [bp.LayerGradients(W.grad.numpy(), b.grad.numpy()) for W, b in params]


def max_diff(a, b):
    return max(max(np.abs(x.dW - y.dW).max(), np.abs(x.db - y.db).max()) for x, y in zip(a, b))


# Not ReLU: with the slide's weights a ReLU output unit is dead on all three rows (z_y < 0), every
# gradient is 0 and the comparison would prove nothing; ReLU is covered by the random networks below.
@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_course_network_hand_equals_autograd_and_finite_differences(activation):
    X, Y = COURSE_X, COURSE_Y / 50
    layers = slide_layers(activation)
    loss, hand = bp.mse_and_gradients(X, Y, layers)
    ref_loss, auto = autograd(X, Y, layers)
    assert loss == pytest.approx(ref_loss, rel=1e-14)
    assert max_diff(hand, auto) <= 1e-14  # the same float64 arithmetic in another order: round-off only
    fd = bp.central_difference_gradients(bp.mse_of(X, Y), layers, EPS)
    assert max_diff(hand, fd) <= CRITERION
    assert max(np.abs(g.dW).max() for g in hand) > 1e-6  # the comparison is not between zeros


def random_problem(seed, depth, activation):
    """A seeded random network and data; for ReLU redrawn until every unit's input is 100·ε from the kink
    and no ReLU layer is off on every row (a dead layer passes back only zeros)."""
    rng = np.random.default_rng([seed, depth, ["sigmoid", "tanh", "relu"].index(activation)])
    output_activation = "identity" if seed % 2 == 0 else activation  # both kinds of output layer
    while True:
        sizes = [int(rng.integers(1, 5)), *(int(w) for w in rng.integers(1, 7, size=depth)), int(rng.integers(1, 4))]
        layers = bp.random_layers(sizes, rng, activation, output_activation)
        X = rng.normal(size=(6, sizes[0]))
        Y = rng.normal(size=(6, sizes[-1]))
        alive = all((o.A > 0).any() for l, o in zip(layers, forward_as_matrices(X, layers)) if l.activation == "relu")
        if bp.kink_margin(X, layers) > 100 * EPS and alive:
            return sizes, layers, X, Y


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_random_networks_hand_equals_autograd_and_finite_differences(depth, activation, seed):
    sizes, layers, X, Y = random_problem(seed, depth, activation)
    assert bp.layer_sizes_of(layers) == tuple(sizes)
    _, hand = bp.mse_and_gradients(X, Y, layers)
    _, auto = autograd(X, Y, layers)
    assert max_diff(hand, auto) <= 1e-14
    fd = bp.central_difference_gradients(bp.mse_of(X, Y), layers, EPS)
    assert max_diff(hand, fd) <= CRITERION
    for g, layer in zip(hand, layers):
        assert g.dW.shape == np.shape(layer.W) and g.db.shape == np.shape(layer.b)
        assert np.abs(g.dW).max() > 1e-6  # every layer has gradients to compare, not zeros against zeros


def test_finite_differences_catch_a_wrong_gradient():
    # The checks above can fail: a hand gradient with one factor missing is caught at once.
    X, Y = COURSE_X, COURSE_Y / 50
    layers = slide_layers()
    _, hand = bp.mse_and_gradients(X, Y, layers)
    fd = bp.central_difference_gradients(bp.mse_of(X, Y), layers, EPS)
    wrong = [bp.LayerGradients(g.dW * (1.0 if i else 0.5), g.db) for i, g in enumerate(hand)]
    assert max_diff(wrong, fd) > 100 * CRITERION


def test_chain_rule_terms_are_the_slides_formulas_and_sum_to_backprop():
    X, Y = COURSE_X, COURSE_Y / 50
    layers = slide_layers()
    _, hand = bp.mse_and_gradients(X, Y, layers)
    named = bp.named_values(layers, hand)
    terms = bp.chain_rule_terms(X, Y, layers)
    assert set(terms) == set(named)
    assert terms["w6y"].formula() == "∂L/∂w6y = ∂L/∂y · ∂y/∂w6y"
    assert terms["w57"].formula() == "∂L/∂w57 = ∂L/∂y · ∂y/∂n7 · ∂n7/∂w57"
    assert terms["w13"].formula() == (
        "∂L/∂w13 = ∂L/∂y · ∂y/∂n6 · ∂n6/∂n3 · ∂n3/∂w13 + ∂L/∂y · ∂y/∂n7 · ∂n7/∂n3 · ∂n3/∂w13"
    )
    for name, rule in terms.items():
        assert rule.value == pytest.approx(named[name], rel=1e-12, abs=1e-17)
    # The factors by their definitions, example by example: ∂L/∂y = 2(ŷ − y)/N, ∂y/∂n7 = σ'(z_y)·w7y, ∂n7/∂w57 = σ'(z7)·n5.
    out = forward_as_matrices(X, layers)
    y_hat, n5, n7 = out[2].A[:, 0], out[0].A[:, 2], out[1].A[:, 1]
    factors = {f.label: f.value for f in terms["w57"].paths[0].factors}
    np.testing.assert_allclose(factors["∂L/∂y"], 2 * (y_hat - Y[:, 0]) / 3, rtol=1e-14)
    np.testing.assert_allclose(factors["∂y/∂n7"], y_hat * (1 - y_hat) * layers[2].W[0, 1], rtol=1e-14)
    np.testing.assert_allclose(factors["∂n7/∂w57"], n7 * (1 - n7) * n5, rtol=1e-14)


def test_chain_rule_terms_on_a_deeper_network_with_two_outputs():
    rng = np.random.default_rng(5)
    layers = bp.random_layers((3, 4, 3, 2), rng, "tanh", "identity")
    X, Y = rng.normal(size=(4, 3)), rng.normal(size=(4, 2))
    _, hand = bp.mse_and_gradients(X, Y, layers)
    named = bp.named_values(layers, hand)
    terms = bp.chain_rule_terms(X, Y, layers)
    assert len(terms["w14"].paths) == 3 * 2  # through each of the 3 nodes of the next layer, to each of 2 outputs
    for name, rule in terms.items():
        assert rule.value == pytest.approx(named[name], rel=1e-12, abs=1e-16)


def test_one_hand_sgd_step_equals_torch_optim_sgd():
    X, Y = COURSE_X, COURSE_Y / 50
    layers = slide_layers()
    _, hand = bp.mse_and_gradients(X, Y, layers)
    stepped = bp.sgd_step(layers, hand, lr=0.5)

    modules = []
    for layer in layers:
        linear = torch.nn.Linear(2, 2, dtype=torch.float64)
        linear.weight = torch.nn.Parameter(torch.tensor(layer.W, dtype=torch.float64))
        linear.bias = torch.nn.Parameter(torch.tensor(layer.b, dtype=torch.float64))
        modules += [linear, torch.nn.Sigmoid()]
    model = torch.nn.Sequential(*modules)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    torch.nn.MSELoss()(model(torch.as_tensor(X)), torch.as_tensor(Y)).backward()
    opt.step()
    for layer, linear in zip(stepped, modules[::2]):
        np.testing.assert_allclose(layer.W, linear.weight.detach().numpy(), rtol=0, atol=1e-15)
        np.testing.assert_allclose(layer.b, linear.bias.detach().numpy(), rtol=0, atol=1e-15)
    assert not np.allclose(stepped[0].W, layers[0].W)  # the step moved the weights
    assert bp.mse_loss(forward_as_matrices(X, stepped)[-1].A, Y) < bp.mse_loss(forward_as_matrices(X, layers)[-1].A, Y)


def test_named_values_use_the_course_names_in_order():
    layers = slide_layers()
    named = bp.named_values(layers, [bp.LayerGradients(l.W, l.b) for l in layers])
    assert list(named)[:7] == ["w13", "w23", "w14", "w24", "w15", "w25", "b3"]
    assert list(named)[-3:] == ["w6y", "w7y", "b_y"]
    assert named["w57"] == SLIDE_WEIGHTS[1][0][1][2] and named["b_y"] == SLIDE_WEIGHTS[2][1][0]


def test_mse_is_the_mean_and_refuses_broadcasting_shapes():
    assert bp.mse_loss(np.array([[1.0], [3.0]]), np.array([[0.0], [0.0]])) == 5.0
    with pytest.raises(ValueError, match="differ in shape"):
        bp.mse_loss(np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(ValueError, match="not one of"):
        bp.random_layers((2, 1), np.random.default_rng(0), "softmax")


def test_scratch_imports_only_numpy_and_the_standard_library():
    """scratch/ is the math by hand: no torch, nothing of dlconcepts (relative imports inside scratch are fine)."""
    scratch = Path(bp.__file__).parent
    allowed = {"numpy", "__future__"} | set(sys.stdlib_module_names)
    for path in sorted(scratch.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:
                    assert node.level == 1, f"{path.name} imports from outside scratch: {ast.unparse(node)}"
                    continue
                roots = [node.module.split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in allowed, f"{path.name} imports {root!r}; scratch/ may use only numpy and the standard library"
