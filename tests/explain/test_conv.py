"""Shape arithmetic of CNNs: the formula against PyTorch's own layers, hand counts, torchinfo and the CLI."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from dlconcepts.cli import main
from dlconcepts.errors import UserError
from dlconcepts.explain.conv import (
    conv_output_size,
    conv_transpose_output_size,
    disagreements,
    explain_model,
    forward_shapes,
    parse_input_shape,
    shape_table,
)
from dlconcepts.nets.cnn import CNN_MODELS, DEFAULT_INPUT, build_cnn


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --- the formula, one axis at a time ---------------------------------------------------------------


def test_formula_by_hand():
    assert conv_output_size(224, kernel=11, stride=4, padding=2) == 55  # the slides' AlexNet conv1
    assert conv_output_size(55, kernel=3, stride=2) == 27
    assert conv_output_size(32, kernel=5) == 28  # LeNet's valid convolution
    assert conv_output_size(7, kernel=3, dilation=2) == 3  # a dilated 3×3 spans 5 pixels: 7 − 5 + 1
    assert conv_output_size(6, kernel=3, stride=2) == 2  # ⌊3/2⌋ + 1
    assert conv_output_size(6, kernel=3, stride=2, ceil_mode=True) == 3  # ⌈3/2⌉ + 1
    # ceil_mode would start a 4th window at 6 ≥ W + P = 6, outside the input: it is dropped.
    assert conv_output_size(5, kernel=2, stride=2, padding=1, ceil_mode=True) == 3
    assert conv_output_size(2, kernel=3) == 0  # too small: no window fits


def output_length(layer: nn.Module, size: int) -> int | None:
    try:
        return layer(torch.zeros(1, 1, 1, size)).shape[-1]
    except RuntimeError:  # PyTorch refuses an output of size 0 or less
        return None


CASES = list(itertools.product(range(1, 12), (1, 2, 3, 5), (1, 2, 3), (0, 1, 2), (1, 2)))


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_formula_agrees_with_pytorch_max_pool(ceil_mode):
    checked = 0
    for size, kernel, stride, padding, dilation in CASES:
        if padding > kernel // 2:  # PyTorch's own rule: pad at most half the window
            continue
        pool = nn.MaxPool2d((1, kernel), (1, stride), (0, padding), (1, dilation), ceil_mode=ceil_mode)
        expected = output_length(pool, size)
        formula = conv_output_size(size, kernel, stride, padding, dilation, ceil_mode)
        assert (formula if formula >= 1 else None) == expected, (size, kernel, stride, padding, dilation)
        checked += expected is not None
    assert checked > 100


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_pool_formula_agrees_with_pytorch_avg_pool(ceil_mode):
    for size, kernel, stride, padding, _ in CASES:
        if padding > kernel // 2:
            continue
        pool = nn.AvgPool2d((1, kernel), (1, stride), (0, padding), ceil_mode=ceil_mode)
        formula = conv_output_size(size, kernel, stride, padding, ceil_mode=ceil_mode)
        assert (formula if formula >= 1 else None) == output_length(pool, size), (size, kernel, stride, padding)


def test_conv_formula_agrees_with_pytorch_conv():
    for size, kernel, stride, padding, dilation in CASES:
        conv = nn.Conv2d(1, 1, (1, kernel), (1, stride), (0, padding), (1, dilation))
        formula = conv_output_size(size, kernel, stride, padding, dilation)
        assert (formula if formula >= 1 else None) == output_length(conv, size), (size, kernel, stride, padding, dilation)


def test_transposed_conv_formula_agrees_with_pytorch():
    for size, kernel, stride, padding, dilation in CASES:
        if padding >= kernel:
            continue
        layer = nn.ConvTranspose2d(1, 1, (1, kernel), (1, stride), (0, padding), dilation=(1, dilation))
        formula = conv_transpose_output_size(size, kernel, stride, padding, dilation)
        assert (formula if formula >= 1 else None) == output_length(layer, size)


# --- whole models ----------------------------------------------------------------------------------


def test_alexnet_first_conv_gives_the_slides_shape():
    _, table = explain_model("alexnet")
    first = table.layers[0]
    assert (first.name, first.layer_type, first.output_shape) == ("features.0", "Conv2d", (1, 64, 55, 55))


@pytest.mark.parametrize("name", list(CNN_MODELS))
def test_formula_agrees_with_a_forward_pass_on_every_layer(name):
    smallest = {"course-cnn": (3, 64, 64), "lenet5": (1, 28, 28), "alexnet": (3, 63, 63), "vgg11": (3, 32, 32),
                "resnet18": (3, 17, 23)}  # a non-square input catches a swapped height and width
    model = build_cnn(name)
    conv_and_pool = 0
    for input_shape in {DEFAULT_INPUT[name], smallest[name]}:
        table = shape_table(model, input_shape, name)
        measured = forward_shapes(model, input_shape)
        assert disagreements(table, measured) == []
        assert [layer.output_shape for layer in table.layers if layer.is_module] == [shape for _, _, shape in measured]
        conv_and_pool += sum(kind.endswith(("Conv2d", "Pool2d")) for _, kind, _ in measured)
    assert conv_and_pool >= 4
    assert table.total_parameters == sum(p.numel() for p in model.parameters())


def test_formula_follows_ceil_mode_pools_and_stride_through_a_tiny_model():
    # By hand: ⌊(21−3)/2⌋+1 = 10; ceil: ⌈(10−3)/2⌉+1 = 5; ceil: ⌈(5−2)/2⌉+1 = 3; 4·3·3 = 36 features.
    model = nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.AvgPool2d(2, ceil_mode=True),
                          nn.Flatten(), nn.Linear(36, 3))
    table = shape_table(model, (1, 21, 21))
    assert [layer.output_shape for layer in table.layers] == [(1, 4, 10, 10), (1, 4, 5, 5), (1, 4, 3, 3), (1, 36), (1, 3)]
    assert disagreements(table, forward_shapes(model, (1, 21, 21))) == []
    assert disagreements(table, []) != []  # an empty measurement is a disagreement, not a silent pass


def test_multiply_adds_by_hand_for_a_tiny_model():
    model = nn.Sequential(
        nn.Conv2d(2, 3, kernel_size=3, padding=1),  # 3·4·4 = 48 outputs, each a sum of 2·3·3 = 18 products
        nn.ReLU(),
        nn.MaxPool2d(2),  # comparisons, not counted
        nn.Conv2d(3, 6, kernel_size=1, groups=3),  # 6·2·2 = 24 outputs, each over 3/3 = 1 input channel
        nn.Flatten(),
        nn.Linear(24, 5),  # 24·5 products
    )
    table = shape_table(model, (2, 4, 4))
    assert [layer.mult_adds for layer in table.layers] == [48 * 18, 0, 0, 24 * 1, 0, 24 * 5]
    assert table.total_mult_adds == 864 + 24 + 120
    assert table.total_parameters == (2 * 9 * 3 + 3) + (6 + 6) + (24 * 5 + 5)
    assert disagreements(table, forward_shapes(model, (2, 4, 4))) == []


def bias_and_batchnorm_terms(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """What torchinfo adds to the multiply-adds that we leave out: each bias (and BatchNorm's scale and
    shift) times the number of positions it is applied at."""
    positions: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        positions[module] = output[0, 0].numel() if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)) else 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for handle in handles:
        handle.remove()
    total = 0
    for module, count in positions.items():
        if isinstance(module, nn.BatchNorm2d):
            total += 2 * module.num_features * 1  # torchinfo: scale and shift once per sample
        elif module.bias is not None:
            total += module.bias.numel() * count
    return total


@pytest.mark.parametrize("name, known_gmacs", [("alexnet", 0.71), ("resnet18", 1.81)])
def test_multiply_adds_match_known_totals_and_torchinfo(name, known_gmacs):
    torchinfo = pytest.importorskip("torchinfo")
    model, table = explain_model(name)
    assert round(table.total_mult_adds / 1e9, 2) == known_gmacs
    counted = torchinfo.summary(model, input_size=(1, 3, 224, 224), verbose=0, device="cpu", mode="eval")
    assert counted.total_params == table.total_parameters
    # torchinfo also counts biases and BatchNorm; those are all of the difference.
    assert counted.total_mult_adds - bias_and_batchnorm_terms(model, (3, 224, 224)) == table.total_mult_adds
    assert abs(counted.total_mult_adds / table.total_mult_adds - 1) < 1e-3


# --- bad input -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["3x224", "3x224x224x1", "3xAx224", "0x224x224", "", "3x-1x5"])
def test_malformed_input_shapes_are_refused(text):
    with pytest.raises(UserError, match="CxHxW"):
        parse_input_shape(text)


def test_input_shape_accepts_the_multiplication_sign():
    assert parse_input_shape("3×224×224") == (3, 224, 224)


def test_too_small_input_names_the_layer_and_the_smallest_input():
    with pytest.raises(UserError) as caught:
        explain_model("alexnet", "3x40x40")
    message = str(caught.value)
    assert "features.12" in message and "3x63x63" in message
    explain_model("alexnet", "3x63x63")  # and that smallest input does work
    with pytest.raises(UserError, match="features.12"):
        explain_model("alexnet", "3x62x62")


def test_wrong_channels_and_wrong_feature_counts_are_named():
    with pytest.raises(UserError, match="features.0 .*expects 3 input channels but gets 1"):
        explain_model("alexnet", "1x224x224")
    with pytest.raises(UserError, match="classifier.1 .*expects 2048 input features but gets 512.*3x64x64"):
        explain_model("course-cnn", "3x32x32")


def test_cli_prints_the_table_and_the_check(capsys):
    assert main(["explain", "conv", "--model", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "features.0    Conv2d(1→6, 5×5, pad 2)   [1, 6, 28, 28]" in out
    assert "61,706" in out
    assert "checked: all 11 layer output shapes equal those of a real forward pass" in out


def test_cli_summary_prints_torchinfo(capsys):
    pytest.importorskip("torchinfo")
    assert main(["explain", "conv", "--model", "lenet5", "--summary"]) == 0
    out = capsys.readouterr().out
    assert "Total params: 61,706" in out and "Units." not in out


@pytest.mark.parametrize("argv, words", [
    (["--model", "alexnt"], "did you mean 'alexnet'"),
    (["--model", "alexnet", "--input", "3x224"], "CxHxW"),
    (["--model", "alexnet", "--input", "3x30x30"], "features."),
    (["--model", "lenet5", "--input", "1x8x8"], "too small for lenet5: layer features.3"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(capsys, argv, words):
    assert main(["explain", "conv", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dlc: error: ") and words in err
