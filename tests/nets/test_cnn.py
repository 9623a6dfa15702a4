"""The CNN families: reference parameter counts, torchvision-compatible state_dicts, and load_weights.

This file needs only the package, torch and pytest; the comparison with torchvision runs where torchvision
is installed (a second CI environment) and is skipped elsewhere.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from dlconcepts.errors import UserError
from dlconcepts.nets.cnn import (
    CNN_MODELS,
    DEFAULT_INPUT,
    build_cnn,
    guess_architecture,
    load_weights,
)

# Reference counts with each model's default classes: AlexNet, VGG-11 and ResNet-18 as published (and as
# torchvision counts them); the course CNN and LeNet-5 by hand:
#   course-cnn: (3·32·9+32) + (32·8·9+8) + (2048·500+500) + (500·100+100) + (100·2+2)
#   lenet5:     (1·6·25+6) + (6·16·25+16) + (400·120+120) + (120·84+84) + (84·10+10)
PARAMETER_COUNTS = {
    "course-cnn": 896 + 2312 + 1_024_500 + 50_100 + 202,
    "lenet5": 156 + 2416 + 48_120 + 10_164 + 850,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "resnet18": 11_689_512,
}
# Small inputs that each architecture accepts, to keep forward passes fast on a CPU.
SMALL_INPUT = {"course-cnn": (3, 64, 64), "lenet5": (1, 28, 28), "alexnet": (3, 63, 63),
               "vgg11": (3, 32, 32), "resnet18": (3, 32, 32)}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, num_classes: int | None = None) -> nn.Module:
    # Shapes without memory or random initialization: counting VGG-11's 133M parameters takes no time.
    with torch.device("meta"):
        return build_cnn(name, num_classes)


@pytest.mark.parametrize("name", list(PARAMETER_COUNTS))
def test_parameter_counts_equal_the_reference_architectures(name):
    assert parameter_count(meta_model(name)) == PARAMETER_COUNTS[name]


def test_registry_and_default_inputs_cover_the_same_models():
    assert set(CNN_MODELS) == set(DEFAULT_INPUT) == set(PARAMETER_COUNTS)


def test_alexnet_first_layer_turns_224_pixels_into_64_maps_of_55x55():
    # The slides: conv1_out.shape == torch.Size([1, 64, 55, 55]).
    conv1 = build_cnn("alexnet").features[0]
    assert tuple(conv1(torch.zeros(1, 3, 224, 224)).shape) == (1, 64, 55, 55)


@pytest.mark.parametrize("name", list(CNN_MODELS))
def test_every_model_gives_one_logit_per_class(name):
    torch.manual_seed(0)
    model = build_cnn(name, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *SMALL_INPUT[name]))
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()


def test_num_classes_changes_only_the_last_layer():
    default, ten = meta_model("resnet18"), meta_model("resnet18", 10)
    assert parameter_count(default) - parameter_count(ten) == (1000 - 10) * (512 + 1)


def test_state_dict_names_follow_torchvision():
    # Spot checks that hold without torchvision installed; the full comparison is further down.
    shapes = {name: {k: tuple(v.shape) for k, v in meta_model(name).state_dict().items()}
              for name in ("alexnet", "vgg11", "resnet18")}
    assert shapes["alexnet"]["features.0.weight"] == (64, 3, 11, 11)
    assert shapes["alexnet"]["classifier.6.weight"] == (1000, 4096)
    assert shapes["vgg11"]["features.18.weight"] == (512, 512, 3, 3)
    assert shapes["vgg11"]["classifier.0.weight"] == (4096, 25088)
    assert shapes["resnet18"]["layer2.0.downsample.0.weight"] == (128, 64, 1, 1)
    assert shapes["resnet18"]["layer4.1.bn2.num_batches_tracked"] == ()
    assert shapes["resnet18"]["fc.weight"] == (1000, 512)
    assert len(shapes["alexnet"]) == 16 and len(shapes["vgg11"]) == 22 and len(shapes["resnet18"]) == 122


def randomize_batchnorm(model: nn.Module, seed: int) -> None:
    """Fresh BatchNorm layers are the identity in eval mode; random statistics make a comparison see them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)


@pytest.mark.parametrize("wrap", ["plain", "model", "state_dict", "module-prefix"])
def test_saved_weights_load_back_into_a_fresh_model(tmp_path, wrap):
    torch.manual_seed(0)
    trained = build_cnn("resnet18", 10)
    randomize_batchnorm(trained, 0)
    state = trained.state_dict()
    saved = {"plain": state, "model": {"model": state, "epoch": 3},
             "state_dict": {"state_dict": state, "best_loss": 0.5},
             "module-prefix": {f"module.{k}": v for k, v in state.items()}}[wrap]
    path = tmp_path / "weights.pt"
    torch.save(saved, path)
    torch.manual_seed(1)
    fresh = build_cnn("resnet18", 10)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(fresh.eval()(x), trained.eval()(x))  # different before loading
        assert load_weights(fresh, path) is fresh
        assert torch.equal(fresh.eval()(x), trained.eval()(x))


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_weights(build_cnn("lenet5"), tmp_path / "nothing.pt")


def test_garbage_file_is_a_user_error(tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is not a weights file\n" * 10)
    with pytest.raises(UserError, match="not a PyTorch weights file"):
        load_weights(build_cnn("lenet5"), path)


class NotWeights:
    pass


def test_pickled_object_is_refused_by_weights_only(tmp_path):
    path = tmp_path / "object.pt"
    path.write_bytes(pickle.dumps({"model": NotWeights()}, protocol=2))
    with pytest.raises(UserError, match="weights_only=True"):
        load_weights(build_cnn("lenet5"), path)


def test_a_dict_without_tensors_is_not_a_state_dict(tmp_path):
    path = tmp_path / "numbers.pt"
    torch.save({"epoch": 3, "loss": 0.5}, path)
    with pytest.raises(UserError, match="holds no state_dict"):
        load_weights(build_cnn("lenet5"), path)


def test_weights_of_another_architecture_name_the_keys_and_the_architecture(tmp_path):
    path = tmp_path / "lenet.pt"
    torch.save(build_cnn("lenet5").state_dict(), path)
    with pytest.raises(UserError) as caught:
        load_weights(build_cnn("course-cnn"), path)
    message = str(caught.value)
    assert "\n" not in message
    assert "missing keys (classifier.1.weight" in message
    assert "unexpected keys (classifier.0.weight" in message
    assert "seems to be for 'lenet5'" in message


def test_other_class_count_names_the_shape_and_the_architecture(tmp_path):
    path = tmp_path / "resnet10.pt"
    torch.save(build_cnn("resnet18", 10).state_dict(), path)
    with pytest.raises(UserError) as caught:
        load_weights(build_cnn("resnet18"), path)
    message = str(caught.value)
    assert "fc.weight (10, 512) vs (1000, 512)" in message
    assert "seems to be for 'resnet18'" in message


def test_guess_architecture_knows_every_model_and_nothing_else():
    for name in CNN_MODELS:
        assert guess_architecture(meta_model(name, 3).state_dict()) == name
    assert guess_architecture({"weight": torch.zeros(2, 2)}) is None


# --- against torchvision, where it is installed ------------------------------------------------------

TORCHVISION_INPUT = {"alexnet": (3, 64, 64), "vgg11": (3, 32, 32), "resnet18": (3, 32, 32)}


@pytest.mark.torchvision
@pytest.mark.parametrize("name", list(TORCHVISION_INPUT))
def test_torchvision_weights_load_into_ours_and_give_the_same_outputs(tmp_path, name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = getattr(torchvision.models, name)(weights=None)  # weights=None: nothing is downloaded
    randomize_batchnorm(reference, 1)
    reference.eval()

    ours = build_cnn(name)
    reference_shapes = [(k, tuple(v.shape)) for k, v in reference.state_dict().items()]
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == reference_shapes
    assert parameter_count(ours) == parameter_count(reference) == PARAMETER_COUNTS[name]

    path = tmp_path / f"{name}-torchvision.pt"
    torch.save(reference.state_dict(), path)
    load_weights(ours, path).eval()
    x = torch.randn(2, *TORCHVISION_INPUT[name])
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
