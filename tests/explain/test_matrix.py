"""The matrix walk-through: the slides' golden values, the course's names, hand == module, and `dlc explain matrix`."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from dlconcepts.cli import main
from dlconcepts.errors import UserError
from dlconcepts.explain.matrix import (
    COURSE_X, choose_network, course_network, layers_from_sequential, parse_layer_sizes, random_network,
    sigmoid_example, walk_through,
)
from dlconcepts.nets import mlp

# The slides ("Matrix operation", "Use Excel to verify"), typed in here independently of the package.
SLIDE_W = [
    np.array([[0.4727, -0.5188], [-0.5681, -0.6032], [-0.0252, -0.3011]]),
    np.array([[-0.5549, 0.2550, 0.4584], [0.2930, 0.0849, -0.3146]]),
    np.array([[0.4106, -0.3618]]),
]
SLIDE_B = [np.array([-0.6986, -0.6602, -0.4860]), np.array([0.1677, 0.0736]), np.array([-0.2270])]
SLIDE_X = np.array([[1.0, 2.0], [2.0, 3.0], [10.0, 5.0]])
SLIDE_LAYER1 = np.array([[-1.2635, -2.4348, -1.1135], [-1.3097, -3.6061, -1.4398], [1.4340, -9.3577, -2.2441]])
SLIDE_LAYER2 = np.array([[-0.2625, -0.1530], [-0.6852, -0.1632], [-4.0429, 0.4054]])

# --- the bound on the gap between the slides' printout and a recomputation from its rounded weights ---
# The slides print W and b rounded to 4 decimals (|true − printed| <= δ = 5e-5 per entry) but computed
# the layers from the true float32 weights, and print the layers rounded too (another δ).
# Layer 1, row x:  z_true − z_ours = x·(W − W̃)ᵀ + (b − b̃), so
#     |gap_j| <= δ·(Σ_i |x_i| + 1)                                    [weight and bias rounding]
#              + γ·(Σ_i |x_i|·|W_ji| + |b_j|)                         [PyTorch's float32 arithmetic]
#              + δ                                                    [the printout's own rounding]
# with |W_ji| <= |W̃_ji| + δ, and γ = (n+1)·u/(1 − (n+1)·u), u = 2^-24, the classic bound on the
# rounding error of an n-term dot product plus a bias (Higham, Accuracy and Stability, §3.1).
# Layer 2 is computed from the true layer 1 h (not its printout): with h̃ our layer 1 and e1 the
# layer-1 bound above without the printout term,
#     z2_true − z2_ours = (h − h̃)·W2ᵀ + h̃·(W2 − W̃2)ᵀ + (b2 − b̃2), so
#     |gap_j| <= Σ_k e1_k·(|W̃2_jk| + δ) + δ·(Σ_k |h̃_k| + 1) + γ·(Σ_k |h_k|·|W2_jk| + |b2_j|) + δ
# with |h_k| <= |h̃_k| + e1_k. Every term is an upper bound, so the slides' values must lie inside it.
DELTA = 5e-5
UNIT = 2.0**-24


def gamma(n_terms: int) -> float:
    return n_terms * UNIT / (1 - n_terms * UNIT)


def layer1_bound(X, W, b):
    """e1 per entry, without the printout's rounding: weight/bias rounding plus float32 arithmetic."""
    absX = np.abs(X)
    rounding = DELTA * (absX.sum(axis=1, keepdims=True) + 1)
    arithmetic = gamma(X.shape[1] + 1) * (absX @ (np.abs(W) + DELTA).T + np.abs(b) + DELTA)
    return rounding + arithmetic


def layer2_bound(h_ours, e1, W2, b2):
    propagated = e1 @ (np.abs(W2) + DELTA).T
    rounding = DELTA * (np.abs(h_ours).sum(axis=1, keepdims=True) + 1)
    h_abs = np.abs(h_ours) + e1
    arithmetic = gamma(h_ours.shape[1] + 1) * (h_abs @ (np.abs(W2) + DELTA).T + np.abs(b2) + DELTA)
    return propagated + rounding + arithmetic


def gaps_and_bounds(walk):
    (s1, s2, _) = walk.steps
    e1 = layer1_bound(SLIDE_X, SLIDE_W[0], SLIDE_B[0])
    e2 = layer2_bound(s1.hand.Z, e1, SLIDE_W[1], SLIDE_B[1])
    return (np.abs(s1.hand.Z - SLIDE_LAYER1), e1 + DELTA), (np.abs(s2.hand.Z - SLIDE_LAYER2), e2 + DELTA)


def test_course_network_holds_the_slides_weights_exactly():
    net = course_network()
    assert [type(m) for m in net] == [nn.Linear, nn.Linear, nn.Linear]
    for linear, W, b in zip(net, SLIDE_W, SLIDE_B):
        assert linear.weight.dtype == torch.float64
        assert np.array_equal(linear.weight.detach().numpy(), W) and np.array_equal(linear.bias.detach().numpy(), b)
    assert np.array_equal(np.array(COURSE_X), SLIDE_X)


def test_golden_layer_outputs_of_the_slides_within_the_derived_rounding_bound():
    walk = walk_through(course_network(), SLIDE_X)
    for gap, bound in gaps_and_bounds(walk):
        assert np.all(gap <= bound), (gap, bound)
        # the bound is tight enough to mean something: at most a few units in the 4th decimal
        assert bound.max() < 2e-3
    # and the hand results are X·Wᵀ + b of the slides' numbers, in plain NumPy
    assert np.allclose(walk.steps[0].hand.Z, SLIDE_X @ SLIDE_W[0].T + SLIDE_B[0], rtol=0, atol=1e-15)


def test_the_golden_check_fails_when_one_weight_is_off_in_the_third_decimal():
    net = course_network()
    with torch.no_grad():
        net[0].weight[0, 0] += 1e-3  # w13 0.4727 -> 0.4737: n3 for x = [10, 5] moves by 1e-2
    (gap1, bound1), _ = gaps_and_bounds(walk_through(net, SLIDE_X))
    assert not np.all(gap1 <= bound1)


def test_rows_of_the_slides_printout_that_differ_from_the_rounded_weights():
    # Recomputing from the printed weights does not reproduce every printed digit (the brief's example).
    walk = walk_through(course_network(), SLIDE_X)
    assert round(walk.steps[0].hand.Z[0, 1], 4) == -2.4347 and SLIDE_LAYER1[0, 1] == -2.4348
    assert round(walk.steps[0].hand.Z[2, 0], 4) == 1.4344 and SLIDE_LAYER1[2, 0] == 1.4340


def test_sigmoid_one_line_example():
    out = sigmoid_example()
    assert out.Z.tolist() == [4.0, -2.0]
    assert [round(a, 2) for a in out.A] == [0.98, 0.12]
    exact = [1 / (1 + math.exp(-4.0)), 1 / (1 + math.exp(2.0))]
    reference = torch.sigmoid(torch.tensor([4.0, -2.0], dtype=torch.float64)).tolist()
    assert out.A.tolist() == pytest.approx(exact, rel=1e-15, abs=0)
    assert out.A.tolist() == pytest.approx(reference, rel=1e-15, abs=0)


def test_parameter_names_and_where_pytorch_keeps_them():
    walk = walk_through(course_network(), SLIDE_X)
    rows = walk.parameter_rows()[1:]
    assert [r[1] for r in rows] == [
        "w13", "w23", "w14", "w24", "w15", "w25", "b3", "b4", "b5",
        "w36", "w46", "w56", "w37", "w47", "w57", "b6", "b7",
        "w6y", "w7y", "b_y",
    ]
    state = course_network().state_dict()
    for _, name, value, entry in rows:
        key, index = entry.split("[")
        idx = tuple(int(i) for i in index.rstrip("]").split(","))
        assert f"{state[key][idx].item():.4f}" == value
    assert dict((r[1], r[2]) for r in rows)["w57"] == "-0.3146"
    assert dict((r[1], r[2]) for r in rows)["w6y"] == "0.4106"


@pytest.mark.parametrize(
    "sizes, activation",
    [((2, 3, 2, 1), "identity"), ((2, 3, 2, 1), "sigmoid"), ((1, 1), "relu"), ((5, 7, 3), "tanh"),
     ((4, 8, 8, 8, 2), "relu"), ((3, 6, 4), "sigmoid")],
)
def test_hand_equals_module_in_float64(sizes, activation):
    net = random_network(sizes, activation, seed=sum(sizes))
    X = np.random.default_rng(1).normal(size=(6, sizes[0])) * 3
    walk = walk_through(net, X)
    assert walk.layer_sizes == sizes
    assert walk.max_abs_diff <= 1e-12
    with torch.no_grad():
        direct = net(torch.tensor(X)).numpy()
    assert np.max(np.abs(walk.steps[-1].hand.A - direct)) <= 1e-12
    # the hooks really recorded the activation module's output, not the Linear's
    if activation == "relu" and len(sizes) > 2:
        assert (walk.steps[0].module_A >= 0).all() and (walk.steps[0].module_Z < 0).any()


def test_float32_modules_are_compared_in_their_own_precision():
    net = random_network((2, 3, 1), "tanh", seed=0, dtype=torch.float32)
    walk = walk_through(net, SLIDE_X)
    assert walk.dtype == "torch.float32"
    assert 0 < walk.max_abs_diff < 1e-5  # float32 arithmetic against the float64 hand computation


def test_sequential_conversion_accepts_identity_and_shared_activation_modules():
    shared = nn.Tanh()
    net = nn.Sequential(nn.Linear(2, 3), shared, nn.Linear(3, 3), shared, nn.Linear(3, 1))
    assert [layer.activation for layer in layers_from_sequential(net)] == ["tanh", "tanh", "identity"]
    assert walk_through(net.double(), SLIDE_X).max_abs_diff <= 1e-12
    assert [layer.activation for layer in layers_from_sequential(mlp((2, 4, 1), "identity"))] == ["identity", "identity"]


@pytest.mark.parametrize(
    "net, message",
    [
        (nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1), nn.Linear(3, 1)), "Dropout) is not supported"),
        (nn.Sequential(nn.ReLU(), nn.Linear(2, 1)), "does not follow an nn.Linear"),
        (nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sigmoid(), nn.Linear(3, 1)), "does not follow an nn.Linear"),
        (nn.Sequential(nn.Linear(2, 3), nn.Linear(4, 1)), "expects 4 inputs"),
        (nn.Sequential(nn.Linear(2, 3, bias=False)), "without a bias"),
        (nn.Sequential(), "has no nn.Linear"),
        (nn.Linear(2, 3), "expected an nn.Sequential"),
    ],
)
def test_unsupported_networks_are_refused_naming_what_is_supported(net, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        layers_from_sequential(net)


def test_choose_network_and_layer_parsing():
    net, X, text = choose_network()
    assert "slides' weights" in text and len(net) == 3 and np.array_equal(X, SLIDE_X)
    net, X, text = choose_network((3, 4, 2), "relu", 5)
    assert X.shape == (3, 3) and "seed 5" in text and isinstance(net[1], nn.ReLU)
    again = choose_network((3, 4, 2), "relu", 5)[0]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    assert parse_layer_sizes("2,3,2,1") == (2, 3, 2, 1)
    for bad in ("2", "2,x", "2,0,1", "", "2,,1"):
        with pytest.raises(UserError, match="e.g. 2,3,2,1"):
            parse_layer_sizes(bad)


# --- the command -----------------------------------------------------------------------------------


def test_dlc_explain_matrix_prints_the_walk_through(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", "matrix"]) == 0
    out = capsys.readouterr().out
    for text in ("w13 =  0.4727", "w57 = -0.3146", "w6y =  0.4106", "b_y = -0.2270", "-9.3572", "max |hand − module|"):
        assert text in out
    assert not list(tmp_path.iterdir())  # nothing written without --excel
    assert main(["explain", "matrix", "--layers", "3,4,2", "--activation", "sigmoid", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "random MLP 3→4→2" in out and "sigmoid(z)" in out and "w4_y1" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["--layers", "2,x"], "not at least two positive integers"),
        (["--layers", "2"], "not at least two positive integers"),
        (["--activation", "softmax"], "activation 'softmax' is not supported"),
        (["--excel", "OUT/walk.csv"], "must end in .xlsx"),
        (["--excel", "OUT/blocker/walk.xlsx"], "cannot write"),
        (["--excel", "OUT/dir.xlsx"], "cannot write"),
        (["--seed", "x"], "invalid int value"),
    ],
)
def test_dlc_explain_matrix_user_errors(args, message, tmp_path, capsys):
    (tmp_path / "blocker").write_text("a file where a folder would have to be")
    (tmp_path / "dir.xlsx").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code = main(["explain", "matrix", *[a.replace("OUT", str(tmp_path)) for a in args]])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.startswith("dlc: error: ") and captured.err.count("\n") == 1 and message in captured.err
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
