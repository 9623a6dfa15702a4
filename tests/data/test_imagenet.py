"""The shipped ImageNet class names: 1000 of them, in the index order of ImageNet classifiers."""

from __future__ import annotations

from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from dlconcepts.data.imagenet import CLASSES_FILE, imagenet_class_names


def test_there_are_1000_distinct_names():
    names = imagenet_class_names()
    assert len(names) == 1000 == len(set(names))
    assert all(name and name == name.strip() for name in names)


def test_well_known_indices():
    # Indices every ImageNet tutorial prints (ILSVRC-2012 synset order).
    names = imagenet_class_names()
    assert names[0] == "tench"
    assert names[1] == "goldfish"
    assert names[207] == "golden retriever"
    assert names[281] == "tabby"
    assert names[948] == "Granny Smith"
    assert names[999] == "toilet tissue"


def test_callers_get_their_own_copy():
    first = imagenet_class_names()
    first[0] = "changed"
    assert imagenet_class_names()[0] == "tench"


def test_the_file_is_declared_as_package_data():
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["dlconcepts.data"]
    assert any(Path("files", CLASSES_FILE).match(p) for p in patterns)
