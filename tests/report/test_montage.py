"""The feature-map montage: every map in its own tile, scaled to its own range, blank gaps between."""

import numpy as np

from dlconcepts.report.figures import montage


def test_montage_places_and_scales_each_map():
    maps = np.stack([np.arange(6.0).reshape(2, 3) * (i + 1) for i in range(4)] + [np.full((2, 3), 7.0)])
    tiled = montage(maps, ncols=2, gap=1)
    assert tiled.shape == (3 * 2 + 2, 2 * 3 + 1)  # 3 rows of tiles, 2 columns, 1-pixel gaps
    expected = np.arange(6.0).reshape(2, 3) / 5  # (m − min) / (max − min), the same for every multiple
    np.testing.assert_allclose(tiled[0:2, 0:3], expected)
    np.testing.assert_allclose(tiled[3:5, 4:7], expected)  # map 3: second row, second column
    np.testing.assert_array_equal(tiled[6:8, 0:3], 0.5)  # a constant map shows mid-grey
    assert np.isnan(tiled[2]).all() and np.isnan(tiled[:, 3]).all()  # the gaps
    assert np.isnan(tiled[6:8, 4:7]).all()  # the unused last tile stays blank
