"""make_blobs: host generator, delivered in any namespace/device/dtype."""

import numpy as np
import pytest

from kmeans_xp._testing import to_numpy
from kmeans_xp.datasets import demo_blobs, make_blobs


def test_numpy_default():
    X, y, centers = make_blobs(101, n_features=3, centers=4, random_state=0, return_centers=True)
    assert X.shape == (101, 3) and X.dtype == np.float64
    assert y.shape == (101,) and y.dtype == np.int64
    assert np.bincount(y).tolist() == [26, 25, 25, 25]
    assert centers.shape == (4, 3) and np.all(np.abs(centers) <= 10)
    for k in range(4):  # each blob sits around its centre
        np.testing.assert_allclose(X[y == k].mean(axis=0), centers[k], atol=0.7)


def test_same_data_on_every_backend(xp, device):
    expected_X, expected_y = make_blobs(50, centers=[[0.0, 1.0], [5.0, 5.0]], random_state=3)
    X, y = make_blobs(50, centers=[[0.0, 1.0], [5.0, 5.0]], random_state=3,
                      xp=xp, device=device, dtype="float32")
    assert X.dtype == xp.float32 and y.dtype == xp.int64
    assert X.device == device and y.device == device
    np.testing.assert_allclose(to_numpy(X), expected_X.astype(np.float32))
    np.testing.assert_array_equal(to_numpy(y), expected_y)


def test_counts_stds_and_order():
    X, y = make_blobs([3, 5], centers=[[0.0], [100.0]], cluster_std=[0.0, 1.0], shuffle=False,
                      random_state=0)
    assert y.tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    np.testing.assert_array_equal(X[:3], 0.0)
    assert np.all(np.abs(X[3:] - 100.0) < 5)


def test_demo_blobs_are_fixed():
    X1, y1 = demo_blobs(n_samples=600)
    X2, y2 = demo_blobs(n_samples=600)
    np.testing.assert_array_equal(X1, X2)
    assert X1.shape == (600, 2) and np.bincount(y1).tolist() == [100] * 6


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"n_samples": 0}, "n_samples"),
        ({"centers": 0}, "centers"),
        ({"centers": [1.0, 2.0]}, "centers"),
        ({"n_samples": [2, 3], "centers": 3}, "blob sizes"),
        ({"cluster_std": -1.0}, "cluster_std"),
    ],
)
def test_bad_parameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_blobs(**kwargs)
