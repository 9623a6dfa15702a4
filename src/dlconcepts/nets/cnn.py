"""Step 1 for images — the convolutional network families of the course, written as our own modules.

A convolution slides a small K×K filter over the image; each filter gives one *feature map*, and a layer
with C_out filters turns a [N, C_in, H, W] tensor into [N, C_out, H', W'] (the size H' is worked out in
`dlconcepts.explain.conv`). Pooling shrinks the maps; a final Linear layer turns them into class logits
(no softmax here: `CrossEntropyLoss` applies log-softmax itself).

The families, smallest first:

- `course-cnn`: the course notebook's small CNN for 64×64 RGB photos and two classes.
- `lenet5`: LeCun et al. 1998, "Gradient-based learning applied to document recognition", for 28×28 digits.
- `alexnet`: Krizhevsky, Sutskever, Hinton 2012 — the slides' first layer turns 224×224 into 64 maps of 55×55.
- `vgg11`: Simonyan & Zisserman 2015, configuration "A": only 3×3 convolutions, stacked.
- `resnet18`: He et al. 2016, "Deep residual learning": y = F(x) + x lets very deep nets train.

AlexNet, VGG-11 and ResNet-18 have the parameter counts of the reference architectures and the same
state_dict key names and shapes as torchvision's models, so a weight file saved from torchvision
(`torch.save(model.state_dict(), path)`) loads into ours with `load_weights`. Nothing is ever downloaded:
the user points at a file they already have.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlconcepts.errors import UserError, did_you_mean

# ----------------------------------------------------------------------------------------------------
# The course's small CNN
# ----------------------------------------------------------------------------------------------------


class CourseCNN(nn.Module):
    """The course notebook's CNN for 64×64 RGB images:

    Conv(3,32,3,1,1)–ReLU–MaxPool(2)–Conv(32,8,3,1,1)–ReLU–MaxPool(2)–Dropout–Linear(8·16·16,500)–ReLU–
    Dropout–Linear(500,100)–ReLU–Dropout–Linear(100,2).

    Padding 1 keeps each 3×3 convolution's output the size of its input, so only the two pools shrink the
    maps: 64 → 32 → 16, hence 8·16·16 = 2048 features. The notebook does not give the dropout rate;
    `dropout=0.5` is nn.Dropout's default.
    """

    def __init__(self, num_classes: int = 2, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 8, kernel_size=3, stride=1, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(8 * 16 * 16, 500),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(500, 100),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(100, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# ----------------------------------------------------------------------------------------------------
# LeNet-5
# ----------------------------------------------------------------------------------------------------


class LeNet5(nn.Module):
    """LeNet-5 for 28×28 grey images: conv 6@5×5 – pool – conv 16@5×5 – pool – 120 – 84 – classes.

    Variant (stated, since "LeNet-5" names several): the original took 32×32 inputs; here conv1 has
    padding 2, so a 28×28 MNIST digit gives the same 28×28 → 14×14 → 10×10 → 5×5 maps and 16·5·5 = 400
    features. The original's trainable average "subsampling" and scaled tanh are replaced by 2×2 **max**
    pooling and ReLU, the usual modern choice: max pooling keeps the strongest response of each window
    (a stroke is present or not), and ReLU avoids tanh's saturated gradients, so it trains faster with Adam.
    Conv2 connects to all 6 maps (the original used a hand-picked sparse table). Parameters: 61,706.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


# ----------------------------------------------------------------------------------------------------
# AlexNet
# ----------------------------------------------------------------------------------------------------


class AlexNet(nn.Module):
    """AlexNet (the single-GPU form with 64-192-384-256-256 filters that torchvision also uses).

    conv1 is 64 filters of 11×11 with stride 4 and padding 2: ⌊(224 + 4 − 11)/4⌋ + 1 = 55, the slides'
    [1, 64, 55, 55]. `AdaptiveAvgPool2d((6, 6))` makes the classifier see 256·6·6 = 9216 features for any
    input of at least 63×63 pixels. Parameters with 1000 classes: 61,100,840.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(256 * 6 * 6, 4096),  # 1
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),  # 4
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),  # 6
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ----------------------------------------------------------------------------------------------------
# VGG
# ----------------------------------------------------------------------------------------------------

# Simonyan & Zisserman 2015, Table 1, configuration A (VGG-11): output channels of each 3×3 conv, "M" = 2×2 max pool.
VGG11_LAYOUT: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _vgg_features(layout: tuple[int | str, ...], in_channels: int = 3) -> nn.Sequential:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = int(item)
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG: stacks of 3×3 convolutions (padding 1 keeps the size) separated by 2×2 max pools that halve it.

    Two stacked 3×3 convolutions see a 5×5 window with fewer parameters than one 5×5 (2·9 vs 25 per channel
    pair) and an extra ReLU. VGG-11 with 1000 classes has 132,863,336 parameters, 123,642,856 of them
    in the three Linear layers.
    """

    def __init__(self, layout: tuple[int | str, ...] = VGG11_LAYOUT, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = _vgg_features(layout)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(4096, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # He initialization for ReLU nets (He et al. 2015): without it an 11-layer VGG barely starts learning.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


# ----------------------------------------------------------------------------------------------------
# ResNet
# ----------------------------------------------------------------------------------------------------


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the BatchNorm right after it has its own shift (beta), a bias would be redundant.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """The residual block of ResNet-18/34: y = ReLU(F(x) + shortcut(x)), F = conv-BN-ReLU-conv-BN (He et al. 2016, eq. 1).

    When the block halves the size (stride 2) or changes the channel count, x cannot be added to F(x) as
    it is; the shortcut is then a 1×1 convolution with that stride plus BatchNorm (eq. 2, "option B").
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_channels, channels, stride)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(channels, channels)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)  # eq. 1: F(x) + x


class ResNet(nn.Module):
    """ResNet with BasicBlocks: a 7×7/2 stem and 3×3/2 max pool, four stages of blocks (64, 128, 256, 512
    channels; every stage after the first starts with stride 2), global average pool, one Linear layer.

    `blocks_per_stage=(2, 2, 2, 2)` is ResNet-18 (1 + 2·2·4 + 1 = 18 weighted layers); with 1000 classes it
    has 11,689,512 parameters. The global average pool makes any input of at least 32×32 work.
    """

    def __init__(self, blocks_per_stage: tuple[int, int, int, int] = (2, 2, 2, 2), num_classes: int = 1000,
                 zero_init_residual: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        channels = 64
        stages: list[nn.Sequential] = []
        for index, (width, blocks) in enumerate(zip((64, 128, 256, 512), blocks_per_stage)):
            stride = 1 if index == 0 else 2
            stage = [BasicBlock(channels, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            # Each block then starts as the identity (Goyal et al. 2017), which helps large-batch training.
            for module in self.modules():
                if isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


# ----------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------

CNN_MODELS: dict[str, Callable[[int], nn.Module]] = {
    "course-cnn": lambda num_classes: CourseCNN(num_classes),
    "lenet5": lambda num_classes: LeNet5(num_classes),
    "alexnet": lambda num_classes: AlexNet(num_classes),
    "vgg11": lambda num_classes: VGG(VGG11_LAYOUT, num_classes),
    "resnet18": lambda num_classes: ResNet((2, 2, 2, 2), num_classes),
}

# Each model's natural input, (channels, height, width) of one image.
DEFAULT_INPUT: dict[str, tuple[int, int, int]] = {
    "course-cnn": (3, 64, 64),
    "lenet5": (1, 28, 28),
    "alexnet": (3, 224, 224),
    "vgg11": (3, 224, 224),
    "resnet18": (3, 224, 224),
}

DEFAULT_CLASSES: dict[str, int] = {"course-cnn": 2, "lenet5": 10, "alexnet": 1000, "vgg11": 1000, "resnet18": 1000}


def check_model_name(name: str) -> str:
    """`name` if it is a registered CNN, else a UserError naming the choices."""
    if name not in CNN_MODELS:
        raise UserError(f"unknown model '{name}'{did_you_mean(name, CNN_MODELS)}; choose one of {', '.join(CNN_MODELS)}")
    return name


def build_cnn(name: str, num_classes: int | None = None) -> nn.Module:
    """A fresh, randomly initialized model from `CNN_MODELS`; `num_classes` defaults to the model's own."""
    check_model_name(name)
    classes = DEFAULT_CLASSES[name] if num_classes is None else int(num_classes)
    if classes < 1:
        raise UserError(f"num_classes must be at least 1, got {num_classes}")
    return CNN_MODELS[name](classes)


# ----------------------------------------------------------------------------------------------------
# Loading weights from a local file
# ----------------------------------------------------------------------------------------------------


def _state_dict_from(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a plain state_dict or of a checkpoint dict that keeps it under 'model' or 'state_dict'."""
    if isinstance(loaded, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), Mapping):
                loaded = loaded[key]
                break
    if not isinstance(loaded, Mapping) or not loaded or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise UserError(
            f"{path} holds no state_dict (a dict of parameter name -> tensor, alone or under 'model'/'state_dict'); "
            "save one with torch.save(model.state_dict(), path)"
        )
    # Weights saved from nn.DataParallel / torch.compile carry a prefix on every key.
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in loaded):
            loaded = {k[len(prefix):]: v for k, v in loaded.items()}
    return dict(loaded)


def guess_architecture(state_dict: Mapping[str, torch.Tensor]) -> str | None:
    """The registered model whose state_dict has exactly these keys and shapes (any class count), or None."""
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    for name in CNN_MODELS:
        with torch.device("meta"):  # shapes only: no memory, no random initialization of 130M numbers
            reference = {k: tuple(v.shape) for k, v in build_cnn(name).state_dict().items()}
        if reference.keys() != shapes.keys():
            continue
        # The last layer may have another number of classes; every other tensor must match.
        differing = [k for k in reference if reference[k] != shapes[k]]
        if all(len(reference[k]) == len(shapes[k]) and reference[k][1:] == shapes[k][1:] for k in differing):
            return name
    return None


def _few(keys: list[str], limit: int = 3) -> str:
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a local weight file into `model` (in place) and return the model. Never downloads.

    Accepts a plain state_dict or a dict holding it under "model" or "state_dict" (a checkpoint). The file
    is read with `weights_only=True`, so a file that would run code when unpickled is refused.
    Every problem — no such file, not a weights file, keys or shapes that differ — is a UserError of one line.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weight file {path} does not exist; give the path of a .pt/.pth file saved with torch.save")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds here (UnpicklingError, RuntimeError, EOFError, ...)
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path} is not a PyTorch weights file readable with weights_only=True ({first_line[:160]})") from None
    state = _state_dict_from(loaded, path)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                   if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or wrong_shape:
        guess = guess_architecture(state)
        seems = f"the file seems to be for '{guess}'" if guess else "the file matches none of " + ", ".join(CNN_MODELS)
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_few(unexpected)})")
        if wrong_shape:
            parts.append(f"{len(wrong_shape)} shapes differ (file vs model: {_few(wrong_shape, 2)})")
        raise UserError(f"{path} does not fit this {type(model).__name__}: {'; '.join(parts)}; {seems}")
    model.load_state_dict(state)
    return model


# ----------------------------------------------------------------------------------------------------
# A small CNN for handwritten digits of any size (lab cnn-digits)
# ----------------------------------------------------------------------------------------------------


class DigitsCNN(nn.Module):
    """A small CNN for grey digits from 8×8 (scikit-learn's) to 28×28 (MNIST): stages of 3×3 convolutions.

    Each stage is `convs_per_stage` × [Conv 3×3 (padding 1) – BatchNorm – ReLU] with `channels[i]` filters;
    a 2×2 max pool sits between stages. Padding 1 keeps each map the size of its input, so an 8×8 digit
    gives 8×8 → 4×4 maps with two stages, a 28×28 one 28×28 → 14×14. `AdaptiveAvgPool2d(pooled_size)`
    then averages each final map down to pooled_size × pooled_size whatever the input size, and one
    Linear layer (after dropout) gives the class logits — so the same network and parameter count serve
    both data sets.

    BatchNorm (Ioffe & Szegedy 2015) normalizes each channel over the mini-batch; it makes the network
    train fast at a high learning rate. The convolutions have no bias since BatchNorm's shift replaces it.
    """

    def __init__(self, channels: tuple[int, ...] = (16, 32), convs_per_stage: int = 2, num_classes: int = 10,
                 in_channels: int = 1, dropout: float = 0.2, pooled_size: int = 1) -> None:
        super().__init__()
        if not channels or min(channels) < 1 or convs_per_stage < 1 or pooled_size < 1:
            raise ValueError(f"need channels >= 1, convs_per_stage >= 1, pooled_size >= 1; got {channels}, "
                             f"{convs_per_stage}, {pooled_size}")
        layers: list[nn.Module] = []
        previous = in_channels
        for stage, width in enumerate(channels):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))
            for _ in range(convs_per_stage):
                layers += [nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
                           nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
                previous = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(previous * pooled_size**2, num_classes))

    @property
    def first_filters(self) -> torch.Tensor:
        """The first layer's filters [channels[0], in_channels, 3, 3]: what the network looks for in the pixels."""
        return self.features[0].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))
