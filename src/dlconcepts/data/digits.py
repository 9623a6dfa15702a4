"""Handwritten digits as image tensors: scikit-learn's bundled 8×8 digits, or MNIST from the user's disk.

scikit-learn ships 1,797 digits of 8×8 pixels with grey levels 0–16 (the UCI optical recognition
set); they are on disk with scikit-learn, so every lab runs offline. MNIST (70,000 digits of 28×28)
is not shipped: a user who has the four IDX files points `--set mnist=DIR` at them and the same
labs run on MNIST. Nothing is ever downloaded.

Both loaders return an `ImageSet`: float32 images of shape [n, 1, H, W] scaled to [0, 1] (so a
Bernoulli / binary cross-entropy decoder is well defined) and int64 labels.

IDX format (http://yann.lecun.com/exdb/mnist/, "FILE FORMATS"): a big-endian header — two zero
bytes, a type code (0x08 = unsigned byte), the number of dimensions d — then d big-endian uint32
sizes, then the data in C order.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlconcepts.data.splits import Split, train_valid_test_split
from dlconcepts.errors import UserError

DIGIT_CLASSES = tuple(str(d) for d in range(10))

# The four MNIST files, by the names they are distributed under (optionally gzipped).
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class ImageSet:
    """Images [n, 1, H, W] float32 in [0, 1], labels [n] int64, and where they came from.

    `predefined_test` holds the row indices of a test set fixed by the data's authors (MNIST's
    10,000 t10k digits), or None where the lab must draw its own split (the bundled digits).
    """

    images: np.ndarray
    labels: np.ndarray
    name: str
    description: str
    predefined_test: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def flat(self) -> np.ndarray:
        """Each image as one row of H·W pixels, for MLPs, PCA and the like."""
        return self.images.reshape(len(self.images), -1)


def load_digits() -> ImageSet:
    """scikit-learn's 1,797 bundled 8×8 digits, grey levels 0–16 divided by 16."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]
    return ImageSet(
        images=images,
        labels=bunch.target.astype(np.int64),
        name="digits",
        description=f"scikit-learn's bundled handwritten digits: {len(images)} images of 8×8, 10 classes",
    )


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or .gz) into a NumPy array of the shape its header declares."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read IDX file '{path}': {exc.strerror or exc}") from None
    except gzip.BadGzipFile:
        raise UserError(f"'{path}' ends in .gz but is not gzip data; unpack it or give the plain IDX file") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise UserError(f"'{path}' is not an IDX file (its first bytes are not 0, 0, type, ndim); "
                        "give the MNIST files as distributed, e.g. train-images-idx3-ubyte")
    ndim = raw[3]
    header_end = 4 + 4 * ndim
    if len(raw) < header_end:
        raise UserError(f"IDX file '{path}' is truncated inside its header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header_end != expected:
        raise UserError(f"IDX file '{path}' declares shape {list(shape)} ({expected} data bytes) but holds "
                        f"{len(raw) - header_end}; the file is truncated or not the one named")
    return np.frombuffer(raw, dtype=dtype, offset=header_end).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for candidate in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / candidate).is_file():
            return directory / candidate
    raise UserError(f"MNIST folder '{directory}' has no '{stem}' (or '{stem}.gz'); it needs the four IDX files "
                    f"{', '.join(MNIST_FILES.values())}")


def check_mnist_folder(directory: str | Path) -> None:
    """Refuse a folder that is not there or lacks one of the four IDX files, before any work starts."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"MNIST folder '{directory}' does not exist; point mnist= at the folder holding the IDX files")
    for stem in MNIST_FILES.values():
        _find(directory, stem)


def load_mnist(directory: str | Path) -> ImageSet:
    """MNIST from the four IDX files in `directory`: 60,000 training then 10,000 test digits."""
    directory = Path(directory)
    check_mnist_folder(directory)
    parts = {key: read_idx(_find(directory, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        images, labels = parts[f"{split}_images"], parts[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise UserError(f"MNIST {split} files disagree: images {list(images.shape)}, labels {list(labels.shape)}; "
                            "expected [n, 28, 28] images and [n] labels")
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise UserError(f"MNIST {split} labels must be digits 0–9; found {int(labels.min())}–{int(labels.max())}")
    images = np.concatenate([parts["train_images"], parts["test_images"]]).astype(np.float32) / 255.0
    labels = np.concatenate([parts["train_labels"], parts["test_labels"]]).astype(np.int64)
    n_train = len(parts["train_labels"])
    return ImageSet(
        images=images[:, None, :, :],
        labels=labels,
        name="mnist",
        description=f"MNIST from {directory}: {n_train} training and {len(labels) - n_train} test images of "
                    f"{images.shape[1]}×{images.shape[2]}",
        predefined_test=np.arange(n_train, len(labels)),
    )


def load_digit_images(mnist: str = "") -> ImageSet:
    """The labs' one entry point: MNIST from `mnist` when a folder is given, else the bundled digits."""
    return load_mnist(mnist) if mnist else load_digits()


def split_images(data: ImageSet, rng: np.random.Generator, valid_fraction: float, test_fraction: float,
                 train_limit: int = 0) -> Split:
    """Stratified train / valid / test rows of an ImageSet.

    The bundled digits are cut three ways by class; MNIST keeps its own 10,000 test digits
    (`predefined_test`, `test_fraction` unused) and its validation part comes from its training part.
    `train_limit` > 0 keeps that many training images, drawn at random (a quick look at MNIST on a CPU).
    """
    if data.predefined_test is None:
        split = train_valid_test_split(len(data), rng, valid_fraction, test_fraction, stratify=data.labels)
    else:
        fit_rows = np.setdiff1d(np.arange(len(data)), data.predefined_test)
        inner = train_valid_test_split(len(fit_rows), rng, valid_fraction, 0.0, stratify=data.labels[fit_rows])
        split = Split(fit_rows[inner.train], fit_rows[inner.valid], np.asarray(data.predefined_test))
    if len(split.valid) == 0 or len(split.test) == 0:
        raise UserError(f"{data.name} has too few images for a validation and a test part ({len(split.train)} train, "
                        f"{len(split.valid)} valid, {len(split.test)} test); give more images or a larger valid_fraction")
    if 0 < train_limit < len(split.train):
        keep = np.sort(rng.choice(split.train, size=train_limit, replace=False))
        split = Split(keep, split.valid, split.test)
    return split
