"""The 1000 ImageNet-1k class names, in the index order of the classifiers trained on it.

`files/imagenet_classes.txt` holds one name per line: line i (counting from 0) is the name of output i
of AlexNet, VGG or ResNet trained on ImageNet (ILSVRC-2012), the same order torchvision's weights use.
Shipped with the package so that `dlc` can name a prediction offline, without downloading anything.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

CLASSES_FILE = "imagenet_classes.txt"
NUM_IMAGENET_CLASSES = 1000


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    text = resources.files("dlconcepts.data").joinpath("files", CLASSES_FILE).read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != NUM_IMAGENET_CLASSES:  # a damaged install would silently mislabel every prediction
        raise RuntimeError(f"{CLASSES_FILE} has {len(names)} names, expected {NUM_IMAGENET_CLASSES}; reinstall dlconcepts")
    return names


def imagenet_class_names() -> list[str]:
    """The 1000 class names; element i names output i of an ImageNet classifier."""
    return list(_names())
