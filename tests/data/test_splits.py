import numpy as np
import pytest

from dlconcepts.data import train_valid_test_split
from dlconcepts.errors import UserError


def test_parts_are_disjoint_and_cover_every_row():
    s = train_valid_test_split(100, np.random.default_rng(0), 0.2, 0.2)
    rows = np.concatenate([s.train, s.valid, s.test])
    assert sorted(rows.tolist()) == list(range(100))
    assert (len(s.train), len(s.valid), len(s.test)) == (60, 20, 20)


def test_seed_decides_the_split():
    a = train_valid_test_split(50, np.random.default_rng(1))
    b = train_valid_test_split(50, np.random.default_rng(1))
    c = train_valid_test_split(50, np.random.default_rng(2))
    assert np.array_equal(a.test, b.test) and not np.array_equal(a.test, c.test)


def test_stratified_parts_keep_class_balance():
    y = np.array([0] * 90 + [1] * 30)
    s = train_valid_test_split(len(y), np.random.default_rng(0), 0.25, 0.25, stratify=y)
    for part in (s.train, s.valid, s.test):
        assert np.mean(y[part]) == pytest.approx(0.25, abs=0.02)


def test_impossible_fractions_are_refused():
    with pytest.raises(UserError, match="leave nothing to train on"):
        train_valid_test_split(10, np.random.default_rng(0), 0.5, 0.5)
