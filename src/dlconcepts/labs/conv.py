"""Lab `conv`: what a convolution does to a photo, computed twice — by conv2d and by hand in NumPy.

The course's slide: AlexNet's first layer turns a 224×224 photo into 64 feature maps of 55×55.
This lab walks there step by step on one of scikit-learn's bundled photos:

1. the ImageNet preprocessing (resize the shorter side to 256, centre-crop 224, scale to [0, 1],
   normalize each channel), shown as images;
2. hand-made filters (RGB → grey, Sobel edges, Laplacian, box and Gaussian blur) applied with
   `torch.nn.functional.conv2d` and with the NumPy convolution of `scratch/conv.py`, side by side,
   with the largest difference between the two (the issue's bound: 1e-5 in float32);
3. the feature maps of the first layers of the course's small CNN (on the photo resized to 64×64)
   and of AlexNet (64 maps of 55×55, then 192 of 27×27) as image grids — their first layers are
   recomputed by hand too;
4. max-pooling, before and after, with the shapes.

The networks start from random weights (seeded): their feature maps show what random filters do.
With `--set weights=FILE` (a torchvision AlexNet or ResNet-18 state_dict already on disk, chosen
with `--set arch=...`; nothing downloads) the maps come from the trained filters and the network
classifies the 224×224 crop: the five most probable of the 1000 ImageNet classes are logged and
put in the report.

Nothing is trained here: step 2 (loss) and step 3 (minimizer) are those the weights were trained with.
model.pt keeps the filters behind the feature maps shown (the first two convolution layers of both
networks, under their state_dict keys prefixed `course_cnn.` and `alexnet.`), not whole networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dlconcepts.config import param
from dlconcepts.data.imagenet import imagenet_class_names
from dlconcepts.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SAMPLE_PHOTOS,
    Preprocessed,
    center_crop,
    imagenet_preprocess,
    load_photo,
    normalize,
    resize_shorter_side,
    to_image,
)
from dlconcepts.errors import ConfigError
from dlconcepts.explain import filters
from dlconcepts.explain.conv import conv_output_size, shape_table
from dlconcepts.labs.base import Lab, LabContext, Result
from dlconcepts.nets.cnn import build_cnn, load_weights
from dlconcepts.report import figures
from dlconcepts.scratch import conv as hand

HAND_CONV_BOUND = 1e-5  # the issue: the NumPy convolution equals conv2d to 1e-5 (float32)
CLASSIFIERS = ("alexnet", "resnet18")
COURSE_CNN_SIZE = 64  # the course's small CNN takes 64×64 RGB


@dataclass(frozen=True)
class Config:
    photo: str = param("china", "which of scikit-learn's bundled photos", choices=SAMPLE_PHOTOS)
    filter_on: str = param("photo", "what the hand filters run on: the whole photo (427×640) or the 224×224 crop",
                           choices=("photo", "crop"))
    blur_size: int = param(5, "side of the box and Gaussian blur kernels (odd)", minimum=1, maximum=31)
    sigma: float = param(1.0, "σ of the Gaussian blur, in pixels", positive=True)
    weights: str = param("", "a local torchvision state_dict file for `arch` (e.g. alexnet-owt-7be5be79.pth); "
                             "'' = random weights and no classification")
    arch: str = param("alexnet", "the network the weight file is for", choices=CLASSIFIERS)

    def check(self) -> None:
        if self.blur_size % 2 == 0:
            raise ConfigError(f"blur_size={self.blur_size} is even; use an odd size so the kernel has a centre pixel")
        if self.weights and not Path(self.weights).is_file():
            raise ConfigError(f"weights={self.weights!r}: no such file; give the path of a state_dict for {self.arch} "
                              "saved with torch.save (nothing downloads), or leave weights empty")


@dataclass(frozen=True)
class Comparison:
    """One convolution computed by conv2d and by hand: both outputs and their largest difference."""

    name: str
    torch_out: np.ndarray
    hand_out: np.ndarray
    products: int  # how many products each output sums: C_in · k_h · k_w

    @property
    def max_abs_diff(self) -> float:
        return float(np.abs(self.torch_out - self.hand_out).max())


def compare_conv(name: str, x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None, **geometry) -> Comparison:
    """conv2d (on the CPU, float32) against the NumPy convolution on the same float32 numbers.

    The CPU, because a GPU's float32 convolution may round through TF32 and would then differ by
    more than the rounding of float32 itself.
    """
    x, weight = np.asarray(x, np.float32), np.asarray(weight, np.float32)
    bias = None if bias is None else np.asarray(bias, np.float32)
    with torch.no_grad():
        ours = F.conv2d(torch.from_numpy(x), torch.from_numpy(weight),
                        None if bias is None else torch.from_numpy(bias), **geometry).numpy()
    return Comparison(name, ours, hand.conv2d(x, weight, bias, **geometry), int(np.prod(weight.shape[1:])))


def compare_layer(name: str, layer: torch.nn.Conv2d, x: torch.Tensor) -> Comparison:
    """A network's Conv2d layer recomputed by hand, with the layer's own weights, stride, padding, dilation."""
    k_h, k_w = layer.kernel_size
    geometry = dict(stride=layer.stride, padding=layer.padding, dilation=layer.dilation)
    label = (f"{name} ({layer.in_channels} → {layer.out_channels}, {k_h}×{k_w}, stride {layer.stride[0]}, "
             f"padding {layer.padding[0]})")
    bias = None if layer.bias is None else layer.bias.detach().cpu().numpy()
    return compare_conv(label, x.cpu().numpy(), layer.weight.detach().cpu().numpy(), bias, **geometry)


def run(cfg: Config, ctx: LabContext) -> Result:
    seed = ctx.runtime.seed
    trained = None
    if cfg.weights:  # first: a file that does not fit is refused before any work is done
        trained = load_weights(build_cnn(cfg.arch), cfg.weights).eval()
        ctx.log(f"  loaded {cfg.arch} weights from {cfg.weights}")
    photo = load_photo(cfg.photo)
    pre = imagenet_preprocess(photo)
    small = normalize(center_crop(resize_shorter_side(pre.original, COURSE_CNN_SIZE), COURSE_CNN_SIZE))
    top, left, crop = pre.crop_box
    ctx.log(f"  photo '{cfg.photo}' {list(pre.original.shape)} → resized {list(pre.resized.shape)} → "
            f"crop at ({top}, {left}) {list(pre.cropped.shape)} → normalized; course CNN input {list(small.shape)}")
    ctx.run.save_figure(_preprocessing_figure(cfg.photo, pre, small), "preprocessing",
                        "The ImageNet preprocessing: resize the shorter side to 256, centre-crop 224 (white box), "
                        "normalize each channel; and the 64×64 input of the course's CNN.")

    # -- hand-made filters: conv2d == NumPy -------------------------------------------------------
    colour = (pre.original if cfg.filter_on == "photo" else pre.cropped).numpy()[None]  # [1, 3, H, W] in [0, 1]
    grey = compare_conv("RGB → grey (1×1, 3 → 1 channels)", colour, filters.luma_weight())
    comparisons = [grey]
    kernels = filters.hand_filters(cfg.blur_size, cfg.sigma)
    for name, kernel in kernels.items():
        comparisons.append(compare_conv(name, grey.torch_out, filters.as_weight(kernel), padding=kernel.shape[0] // 2))
    gauss = filters.gaussian(cfg.blur_size, cfg.sigma)
    comparisons.append(compare_conv("Gaussian on colour (3 → 3 channels)", colour, filters.per_channel_weight(gauss),
                                    padding=cfg.blur_size // 2))
    for c in comparisons:
        ctx.log(f"  {c.name}: {list(c.torch_out.shape)}, max |conv2d − NumPy| = {c.max_abs_diff:.2e}")
    ctx.run.save_figure(
        _filters_figure(comparisons, [filters.luma_weight()[0, :, 0, 0], *kernels.values(), gauss]),
        "filters",
        "Each hand-made filter applied by conv2d (left) and by the NumPy convolution written out by hand "
        "(middle); right, their difference, with its maximum in the title. Edge filters are red where the "
        "image gets brighter to the right (Sobel x) or downwards (Sobel y); the lines along the border come "
        "from the zero padding.",
    )

    # -- the networks' first layers ----------------------------------------------------------------
    torch.manual_seed(seed)
    course = build_cnn("course-cnn").eval()
    torch.manual_seed(seed)
    alexnet = trained if trained is not None and cfg.arch == "alexnet" else build_cnn("alexnet").eval()
    origin = {"course-cnn": f"random init, seed {seed}",
              "alexnet": f"weights {Path(cfg.weights).name}" if cfg.weights and cfg.arch == "alexnet" else f"random init, seed {seed}"}

    device = ctx.runtime.device
    course, alexnet = course.to(device), alexnet.to(device)
    c1, c_pool, c2 = course.features[0], course.features[2], course.features[3]
    a1, a_pool, a2 = alexnet.features[0], alexnet.features[2], alexnet.features[3]
    with torch.no_grad():  # each layer called on its own: the nets' ReLUs work in place, the maps are kept
        course_conv1 = c1(small[None].to(device))  # [1, 32, 64, 64]
        course_pool1 = c_pool(torch.relu(course_conv1))  # [1, 32, 32, 32]
        course_conv2 = c2(course_pool1)  # [1, 8, 32, 32]
        alex_conv1 = a1(pre.batch.to(device))  # [1, 64, 55, 55]: the slide's shape
        alex_pool1 = a_pool(torch.relu(alex_conv1))  # [1, 64, 27, 27]
        alex_conv2 = a2(alex_pool1)  # [1, 192, 27, 27]
    course_conv1, course_pool1, course_conv2, alex_conv1, alex_pool1, alex_conv2 = (
        t.cpu() for t in (course_conv1, course_pool1, course_conv2, alex_conv1, alex_pool1, alex_conv2))

    course_hand = compare_layer("course CNN conv1", c1, small[None])
    alex_hand = compare_layer("AlexNet conv1", a1, pre.batch)
    pools = {
        f"course CNN MaxPool {_window(c_pool)}": (course_conv1, course_pool1, c_pool),
        f"AlexNet MaxPool {_window(a_pool)}": (alex_conv1, alex_pool1, a_pool),
    }
    pool_diffs = {}
    for name, (before, after, pool) in pools.items():
        by_hand = hand.max_pool2d(torch.relu(before).numpy(), pool.kernel_size, pool.stride, pool.padding, pool.dilation)
        pool_diffs[name] = float(np.abs(by_hand - after.numpy()).max())
    for c in (course_hand, alex_hand):
        ctx.log(f"  {c.name}: {list(c.torch_out.shape)}, max |conv2d − NumPy| = {c.max_abs_diff:.2e}")
    ctx.log("  max-pool by hand vs F.max_pool2d: " + ", ".join(f"{k} {v:.1e}" for k, v in pool_diffs.items()))

    ctx.run.save_figure(
        _feature_maps_figure(to_image(pre.cropped), {
            f"conv1: {_shape(course_conv1)}": course_conv1[0].numpy(),
            f"conv2 (after ReLU, pool): {_shape(course_conv2)}": course_conv2[0].numpy(),
        }, f"course CNN, {origin['course-cnn']}: feature maps of its first two layers on the 64×64 photo", [8, 4],
            input_image=to_image(small * _std() + _mean()), height=4.2),
        "feature_maps_course_cnn",
        f"The course CNN's first two convolution layers ({origin['course-cnn']}): every feature map, each scaled to "
        "its own range (bright = strong response).",
    )
    ctx.run.save_figure(
        _feature_maps_figure(to_image(pre.cropped), {f"conv1: {_shape(alex_conv1)}": alex_conv1[0].numpy()},
                             f"AlexNet, {origin['alexnet']}: 64 feature maps of 55×55 from the 224×224 crop", [8],
                             height=7.0),
        "feature_maps_alexnet_conv1",
        f"AlexNet's first layer ({origin['alexnet']}): 64 filters of 11×11, stride 4, turn the 224×224 photo into "
        "64 maps of 55×55 (the course's slide); each map scaled to its own range.",
    )
    ctx.run.save_figure(
        _feature_maps_figure(to_image(pre.cropped), {f"conv2: {_shape(alex_conv2)}": alex_conv2[0].numpy()},
                             f"AlexNet, {origin['alexnet']}: conv2 after ReLU and 3×3 max-pool", [16],
                             height=7.0),
        "feature_maps_alexnet_conv2",
        f"AlexNet's second convolution layer ({origin['alexnet']}): 192 maps of 27×27.",
    )
    ctx.run.save_figure(
        _max_pool_figure({name: (torch.relu(b)[0].numpy(), a[0].numpy(), (_first(pool.kernel_size), _first(pool.stride)))
                          for name, (b, a, pool) in pools.items()}),
        "max_pool",
        "Max-pooling keeps the largest value of each window: a feature map before and after (shapes in the "
        "titles), and a patch of it in numbers (the first window outlined).",
    )

    # -- classification, only with weights ---------------------------------------------------------
    top5: list[dict] = []
    if trained is not None:
        names = imagenet_class_names()
        with torch.no_grad():
            probs = torch.softmax(trained.to(device)(pre.batch.to(device)), dim=1)[0].cpu()  # the net outputs logits
        p, idx = probs.topk(5)
        top5 = [{"rank": r + 1, "index": int(i), "name": names[int(i)], "probability": float(q)}
                for r, (q, i) in enumerate(zip(p, idx))]
        ctx.log(f"  top-5 of {cfg.arch} ({Path(cfg.weights).name}): "
                + "; ".join(f"{t['name']} {t['probability']:.3g}" for t in top5))
        ctx.run.save_figure(_top5_figure(to_image(pre.cropped), top5, f"{cfg.arch}, {Path(cfg.weights).name}"), "top5",
                            f"The five most probable ImageNet classes for the 224×224 crop, by {cfg.arch}.")
    else:
        ctx.log("  no weights: the networks are random, nothing is classified (set weights=FILE to classify)")

    # The filters behind every feature map shown (not the whole nets: AlexNet alone is 244 MB), so the
    # maps can be recomputed; the keys are the networks' own state_dict keys with a prefix.
    shown_layers = {f"course_cnn.features.{i}": course.features[i] for i in (0, 3)}
    shown_layers.update({f"alexnet.features.{i}": alexnet.features[i] for i in (0, 3)})
    ctx.run.save_model({
        "model": {f"{name}.{key}": value.detach().cpu() for name, layer in shown_layers.items()
                  for key, value in layer.state_dict().items()},
        "origin": origin, "photo": cfg.photo,
    })

    # -- what it found ----------------------------------------------------------------------------
    size, kernel1, stride1, pad1 = pre.batch.shape[-1], a1.kernel_size[0], a1.stride[0], a1.padding[0]  # the slide's formula
    formula = {layer.name: layer.output_shape for layer in shape_table(alexnet, tuple(pre.batch.shape[1:]), "alexnet").layers}
    all_comparisons = [*comparisons, course_hand, alex_hand]
    worst = max(c.max_abs_diff for c in comparisons)  # the bound is on the hand-made filters
    within = worst <= HAND_CONV_BOUND
    rows: list[tuple[str, ...]] = [("computation", "output shape", "largest difference, conv2d vs NumPy by hand")]
    rows += [(c.name, _shape(c.torch_out), f"{c.max_abs_diff:.2e}") for c in all_comparisons]
    rows += [(f"{k} (after ReLU)", _shape(pools[k][1]), f"{v:.1e}") for k, v in pool_diffs.items()]
    rows += [(f"top-{t['rank']}: {t['name']}", f"class {t['index']}", f"p = {t['probability']:.3g}") for t in top5]

    findings = [
        f"The NumPy convolution written out by hand equals conv2d on all {len(comparisons)} hand-made filters: the "
        f"largest difference is {worst:.1e}, {'within' if within else 'OUTSIDE'} the bound {HAND_CONV_BOUND:g} "
        "(float32 rounding: the hand loops add the products in another order).",
        "On the networks' first layers the hand convolution differs from conv2d by at most "
        + " and ".join(f"{c.max_abs_diff:.1e} ({c.name.split(' (')[0]}, sums of {c.products} "
                       f"products; {c.max_abs_diff / max(float(np.abs(c.torch_out).max()), 1e-30):.1e} of its largest output)"
                       for c in (course_hand, alex_hand)) + ".",
        f"AlexNet's first layer turns the {_shape(pre.batch)} photo into {_shape(alex_conv1)} feature maps: "
        f"⌊({size} + 2·{pad1} − {kernel1}) / {stride1}⌋ + 1 = {conv_output_size(size, kernel1, stride1, pad1)}, as on "
        f"the course's slide (the shape formulas of explain/conv.py give {_shape_text(formula['features.0'])}); its "
        f"{_window(a_pool)} max-pool takes them to {_shape(alex_pool1)}.",
        f"Max-pooling by hand picks the very same values as F.max_pool2d (largest difference {max(pool_diffs.values()):.0e}).",
    ]
    if trained is None:
        findings.append(
            f"The feature maps come from random weights (seed {seed}), so they show what random filters do, not what "
            "AlexNet learned; classification needs --set weights=FILE (a torchvision alexnet or resnet18 state_dict "
            "on disk, with --set arch=...; nothing downloads).")
    else:
        findings.append(f"{cfg.arch} with {Path(cfg.weights).name} ranks '{top5[0]['name']}' first "
                        f"(p = {top5[0]['probability']:.3g}); the top five hold {sum(t['probability'] for t in top5):.3g} "
                        "of the probability.")
        if cfg.arch != "alexnet":
            findings.append(f"AlexNet's feature maps still come from random weights (seed {seed}): the weight file is "
                            f"for {cfg.arch}.")

    metrics = {
        "photo": cfg.photo,
        "photo_shape": list(pre.original.shape), "resized_shape": list(pre.resized.shape),
        "crop_top_left": [top, left], "network_input_shape": list(pre.batch.shape),
        "filter_max_abs_diff": {c.name: c.max_abs_diff for c in comparisons},
        "course_cnn_conv1_shape": list(course_conv1.shape), "course_cnn_conv2_shape": list(course_conv2.shape),
        "course_cnn_conv1_max_abs_diff": course_hand.max_abs_diff,
        "alexnet_conv1_shape": list(alex_conv1.shape), "alexnet_pool1_shape": list(alex_pool1.shape),
        "alexnet_conv2_shape": list(alex_conv2.shape), "alexnet_conv1_max_abs_diff": alex_hand.max_abs_diff,
        "alexnet_shapes_by_formula": {name: list(formula[name]) for name in ("features.0", "features.2", "features.3")},
        "max_pool_max_abs_diff": pool_diffs,
        "hand_conv_max_abs_diff": worst, "hand_conv_within_bound": within, "hand_conv_bound": HAND_CONV_BOUND,
        "network_layers_max_abs_diff": max(course_hand.max_abs_diff, alex_hand.max_abs_diff),
        "weights": cfg.weights, "arch": cfg.arch if cfg.weights else "", "top5": top5,
    }
    headline = f"AlexNet conv1 {_shape(alex_conv1)}; hand conv == conv2d to {worst:.1e}"
    if top5:
        headline += f"; {cfg.arch} says '{top5[0]['name']}' ({top5[0]['probability']:.2g})"
    return Result(metrics=metrics, table=rows, findings=findings, headline=headline)


# -- figures ---------------------------------------------------------------------------------------

def _first(value) -> int:
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


def _window(pool: torch.nn.MaxPool2d) -> str:
    k, s = _first(pool.kernel_size), _first(pool.stride)
    return f"{k}×{k}" + (f", stride {s}" if s != k else "")


def _shape(t) -> str:
    return _shape_text(t.shape)


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


def _mean() -> torch.Tensor:
    return torch.tensor(IMAGENET_MEAN).view(3, 1, 1)


def _std() -> torch.Tensor:
    return torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _preprocessing_figure(photo_name: str, pre: Preprocessed, small: torch.Tensor):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig = plt.figure(figsize=(15, 7.2))
    grid = fig.add_gridspec(2, 4, height_ratios=[1, 1])
    top, left, size = pre.crop_box
    panels = [
        (pre.original, f"1. the photo '{photo_name}': {_shape(pre.original)}"),
        (pre.resized, f"2. shorter side → 256: {_shape(pre.resized)}"),
        (pre.cropped, f"3. centre crop 224 at ({top}, {left}): {_shape(pre.cropped)}"),
        (small * _std() + _mean(), f"course CNN: shorter side → 64, crop 64: {_shape(small)}"),
    ]
    for i, (image, title) in enumerate(panels):
        ax = fig.add_subplot(grid[0, i])
        ax.imshow(to_image(image), interpolation="nearest" if image.shape[-1] < 100 else "antialiased")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if i == 1:
            ax.add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, edgecolor="white", lw=2))
    limit = float(pre.normalized.abs().max())
    for c, channel in enumerate("RGB"):
        ax = fig.add_subplot(grid[1, c])
        im = ax.imshow(pre.normalized[c].numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"4. {channel} normalized: (x − {_mean()[c].item():.3f}) / {_std()[c].item():.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    ax = fig.add_subplot(grid[1, 3])
    for c, (channel, color) in enumerate(zip("RGB", ("tab:red", "tab:green", "tab:blue"))):
        ax.hist(pre.cropped[c].flatten().numpy(), bins=50, histtype="step", color=color, ls="--", label=f"{channel} in [0, 1]")
        ax.hist(pre.normalized[c].flatten().numpy(), bins=50, histtype="step", color=color, label=f"{channel} normalized")
    ax.set_title("pixel values before (dashed) and after", fontsize=9)
    ax.set_xlabel("value")
    ax.legend(fontsize=7)
    fig.suptitle("ImageNet preprocessing: what AlexNet and ResNet expect as input", fontsize=12)
    fig.tight_layout()
    return fig


def _show_kernel(ax, kernel: np.ndarray, title: str) -> None:
    kernel = np.atleast_2d(kernel)
    limit = float(np.abs(kernel).max())
    ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
    small_values = kernel.size > 9
    for (i, j), v in np.ndenumerate(kernel):
        text = f"{v:.3f}" if small_values or not float(v).is_integer() else f"{v:g}"
        ax.text(j, i, text, ha="center", va="center", fontsize=6.5 if small_values else 9,
                color="white" if abs(v) > 0.6 * limit else "black")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)


def _filters_figure(comparisons: list[Comparison], kernels: list[np.ndarray]):
    import matplotlib.pyplot as plt

    h, w = comparisons[0].torch_out.shape[-2:]
    panel_h = 3.0 * h / w
    fig, axes = plt.subplots(len(comparisons), 4, figsize=(13, (panel_h + 0.5) * len(comparisons)),
                             gridspec_kw={"width_ratios": [0.55, 1, 1, 1.12]}, layout="constrained")
    for row, (c, kernel) in enumerate(zip(comparisons, kernels)):
        ax_k, ax_t, ax_h, ax_d = axes[row]
        if row == 0:
            _show_kernel(ax_k, kernel[None], "weights R, G, B")
        else:
            _show_kernel(ax_k, kernel, "kernel" + (" (each channel)" if c.torch_out.shape[1] == 3 else ""))
        if c.torch_out.shape[1] == 3:
            show = dict()
            images = [np.clip(o[0].transpose(1, 2, 0), 0, 1) for o in (c.torch_out, c.hand_out)]
        else:
            out = c.torch_out[0, 0]
            signed = out.min() < -1e-6
            limit = float(np.percentile(np.abs(out), 99.5)) or 1.0
            show = dict(cmap="RdBu_r", vmin=-limit, vmax=limit) if signed else dict(cmap="gray", vmin=0, vmax=1)
            images = [c.torch_out[0, 0], c.hand_out[0, 0]]
        for ax, image, who in ((ax_t, images[0], "conv2d"), (ax_h, images[1], "NumPy by hand")):
            ax.imshow(image, **show)
            ax.set_title(f"{c.name}\n{who}: {_shape(c.torch_out)}", fontsize=8.5)
            ax.set_xticks([])
            ax.set_yticks([])
        diff = np.abs(c.torch_out - c.hand_out)[0].max(axis=0)
        im = ax_d.imshow(diff, cmap="magma", vmin=0, vmax=max(float(diff.max()), 1e-12))
        ax_d.set_title(f"|difference|: max {c.max_abs_diff:.1e}", fontsize=8.5)
        ax_d.set_xticks([])
        ax_d.set_yticks([])
        fig.colorbar(im, ax=ax_d, fraction=0.046, pad=0.02, format="%.1e")
    fig.suptitle(f"hand-made filters: conv2d vs the NumPy convolution (bound {HAND_CONV_BOUND:g})", fontsize=12)
    return fig


def _feature_maps_figure(photo: np.ndarray, layers: dict[str, np.ndarray], title: str, ncols: list[int],
                         input_image: np.ndarray | None = None, height: float = 6.0):
    import matplotlib.pyplot as plt

    tiles = [figures.montage(maps, n) for maps, n in zip(layers.values(), ncols)]
    shown = photo if input_image is None else input_image
    widths = [1.0] + [t.shape[1] / t.shape[0] for t in tiles]  # every panel the same height
    fig, axes = plt.subplots(1, 1 + len(tiles), figsize=(0.8 * height * sum(widths) + 0.3, height),
                             gridspec_kw={"width_ratios": widths}, layout="constrained")
    axes[0].imshow(shown, interpolation="nearest" if shown.shape[0] < 100 else "antialiased")
    axes[0].set_title(f"input {shown.shape[0]}×{shown.shape[1]}", fontsize=10)
    cmap = plt.get_cmap("gray").with_extremes(bad="white")  # the NaN gaps between tiles
    for ax, tile, name in zip(axes[1:], tiles, layers):
        ax.imshow(tile, cmap=cmap, interpolation="nearest")
        ax.set_title(name, fontsize=10)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=11)
    return fig


def _busiest(maps: np.ndarray) -> int:
    """The channel whose map varies the most: the clearest one to show."""
    return int(np.argmax(maps.reshape(len(maps), -1).std(axis=1)))


def _max_pool_figure(pools: dict[str, tuple[np.ndarray, np.ndarray, tuple[int, int]]]):
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    fig, axes = plt.subplots(len(pools), 4, figsize=(16, 4.1 * len(pools)), gridspec_kw={"width_ratios": [1, 1, 1.1, 0.75]})
    for row, (name, (before, after, (k, s))) in enumerate(pools.items()):
        c = _busiest(before)
        m_before, m_after = before[c], after[c]
        out_n = 3  # a 3×3 corner of the output, from the input patch it reads
        patch_n = (out_n - 1) * s + k
        # the input patch whose values vary the most (an edge), aligned to the pooling grid
        scores = [(m_before[i * s: i * s + patch_n, j * s: j * s + patch_n].std(), i, j)
                  for i in range(0, (m_before.shape[0] - patch_n) // s + 1, out_n)
                  for j in range(0, (m_before.shape[1] - patch_n) // s + 1, out_n)]
        _, pi, pj = max(scores)
        patch = m_before[pi * s: pi * s + patch_n, pj * s: pj * s + patch_n]
        pooled = m_after[pi: pi + out_n, pj: pj + out_n]
        vmax = float(m_before.max()) or 1.0
        ax = axes[row, 0]
        ax.imshow(m_before, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.add_patch(Rectangle((pj * s - 0.5, pi * s - 0.5), patch_n, patch_n, fill=False, edgecolor="red", lw=1.5))
        ax.set_title(f"{name}\nbefore (map {c} after ReLU): {before.shape[-2]}×{before.shape[-1]}", fontsize=9)
        ax = axes[row, 1]
        ax.imshow(m_after, cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.add_patch(Rectangle((pj - 0.5, pi - 0.5), out_n, out_n, fill=False, edgecolor="red", lw=1.5))
        ax.set_title(f"after: {after.shape[-2]}×{after.shape[-1]}  (all {len(after)} maps: "
                     f"[1, {len(before)}, {before.shape[-2]}, {before.shape[-1]}] → "
                     f"[1, {len(after)}, {after.shape[-2]}, {after.shape[-1]}])", fontsize=9)
        lo, hi = float(patch.min()), float(patch.max())
        winner = np.unravel_index(np.argmax(patch[:k, :k]), (k, k))  # the first window's maximum
        for ax, values, title in ((axes[row, 2], patch, f"the red {patch_n}×{patch_n} input patch"),
                                  (axes[row, 3], pooled, f"its {out_n}×{out_n} max-pooled output")):
            ax.imshow(values, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1)
            for (i, j), v in np.ndenumerate(values):
                bold = values is patch and (i, j) == winner or values is pooled and (i, j) == (0, 0)
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7.5 if values.shape[0] > 5 else 10,
                        color="white" if v < lo + 0.6 * (hi - lo) else "black", fontweight="bold" if bold else "normal")
            ax.set_title(title, fontsize=9)
        axes[row, 2].add_patch(Rectangle((-0.5, -0.5), k, k, fill=False, edgecolor="red", lw=2))
        axes[row, 3].add_patch(Rectangle((-0.5, -0.5), 1, 1, fill=False, edgecolor="red", lw=2))
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle("max-pooling: the largest value of each window (window outlined in red → its output cell)", fontsize=12)
    fig.tight_layout()
    return fig


def _top5_figure(photo: np.ndarray, top5: list[dict], who: str):
    import matplotlib.pyplot as plt

    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
    ax_img.imshow(photo)
    ax_img.set_xticks([])
    ax_img.set_yticks([])
    ax_img.set_title("the 224×224 crop", fontsize=10)
    names = [t["name"] for t in top5][::-1]
    probs = [t["probability"] for t in top5][::-1]
    ax_bar.barh(names, probs, color="tab:blue")
    for y, p in enumerate(probs):
        ax_bar.text(p, y, f" {p:.3g}", va="center", fontsize=9)
    ax_bar.set_xlim(0, max(1e-3, max(probs)) * 1.25)
    ax_bar.set_xlabel("softmax probability")
    ax_bar.set_title(f"top-5 ImageNet classes ({who})", fontsize=10)
    fig.tight_layout()
    return fig


LAB = Lab(
    id="conv",
    title="Convolution on a photo: filters by hand and by conv2d, feature maps of a small CNN and AlexNet",
    function="conv2d layers of the course CNN (64×64) and AlexNet (224×224 → 64 maps of 55×55); "
             "classifier {arch} when weights are given",
    loss="none here: nothing is trained (the weights' own loss was cross-entropy on ImageNet)",
    minimizer="none here: random init (seeded) or a weight file",
    data="scikit-learn's bundled photos china.jpg and flower.jpg (427×640 RGB)",
    typical_time="~4 s of CPU, ~9 s on 2 shared cores (quick about the same: figures dominate)",
    config=Config,
    run=run,
    quick={"filter_on": "crop"},
    prefers_cpu="one photo through the first layers; the NumPy comparison runs on the CPU anyway",
    path_options=("weights",),
)
