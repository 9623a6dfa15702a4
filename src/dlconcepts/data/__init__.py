"""Where examples come from: the course's generators, seeded splits and scaling."""

from dlconcepts.data.course import (
    Dataset,
    GaussianBlobs,
    noisy_cubic,
    noisy_line,
    quadratic,
    two_gaussian_blobs,
)
from dlconcepts.data.scaling import Standardizer
from dlconcepts.data.splits import Split, train_valid_test_split

__all__ = [
    "Dataset",
    "GaussianBlobs",
    "Split",
    "Standardizer",
    "noisy_cubic",
    "noisy_line",
    "quadratic",
    "train_valid_test_split",
    "two_gaussian_blobs",
]
