"""The digit loaders: the bundled digits as [n,1,8,8] in [0,1]; IDX files written byte by byte here."""

import gzip
import struct

import numpy as np
import pytest

from dlconcepts.data.digits import MNIST_FILES, load_digit_images, load_digits, load_mnist, read_idx
from dlconcepts.errors import UserError


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file for a uint8 array, header written from the format's description (big-endian)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(directory, n_train=6, n_test=4, gz=False):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)), "train_labels": rng.integers(0, 10, n_train),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)), "test_labels": rng.integers(0, 10, n_test),
    }
    for key, stem in MNIST_FILES.items():
        data = idx_bytes(arrays[key])
        (directory / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def test_bundled_digits_are_scaled_images_with_balanced_classes():
    digits = load_digits()
    assert digits.images.shape == (1797, 1, 8, 8) and digits.images.dtype == np.float32
    assert digits.images.min() == 0.0 and digits.images.max() == 1.0
    assert digits.labels.dtype == np.int64 and set(np.unique(digits.labels)) == set(range(10))
    assert np.bincount(digits.labels).min() >= 170
    assert digits.flat.shape == (1797, 64) and digits.predefined_test is None
    from sklearn.datasets import load_digits as sk
    np.testing.assert_array_equal(digits.flat * 16, sk().data)


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_from_idx_files(tmp_path, gz):
    arrays = write_mnist(tmp_path, gz=gz)
    mnist = load_digit_images(str(tmp_path))
    assert mnist.images.shape == (10, 1, 28, 28) and mnist.image_shape == (1, 28, 28)
    np.testing.assert_allclose(mnist.images[:6, 0] * 255, arrays["train_images"], atol=1e-4)
    np.testing.assert_array_equal(mnist.labels, np.concatenate([arrays["train_labels"], arrays["test_labels"]]))
    np.testing.assert_array_equal(mnist.predefined_test, np.arange(6, 10))


def test_read_idx_shapes_and_errors(tmp_path):
    f = tmp_path / "a"
    f.write_bytes(idx_bytes(np.arange(24).reshape(2, 3, 4)))
    np.testing.assert_array_equal(read_idx(f), np.arange(24).reshape(2, 3, 4))
    f.write_bytes(idx_bytes(np.arange(24).reshape(2, 3, 4))[:-1])
    with pytest.raises(UserError, match="truncated"):
        read_idx(f)
    f.write_bytes(b"PK\x03\x04 not idx")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(f)
    with pytest.raises(UserError, match="cannot read"):
        read_idx(tmp_path / "missing")


def test_mnist_folder_errors_name_the_fix(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    write_mnist(tmp_path)
    (tmp_path / MNIST_FILES["test_labels"]).unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte"):
        load_mnist(tmp_path)
    (tmp_path / MNIST_FILES["test_labels"]).write_bytes(idx_bytes(np.zeros(3)))  # 3 labels for 4 images
    with pytest.raises(UserError, match="disagree"):
        load_mnist(tmp_path)
