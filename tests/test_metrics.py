"""Cluster metrics: scikit-learn's values, on every backend, on the device."""

import numpy as np
import pytest
from sklearn import metrics as skm

from kmeans_xp import metrics
from kmeans_xp._testing import assert_array_like, to_numpy


def _data(rng, n=240, d=4):
    X = rng.normal(size=(n, d))
    labels = rng.integers(0, 4, size=n)
    X[labels == 1] += 4.0
    X[labels == 2] -= 3.0
    return X, labels


SCORES = ["silhouette_score", "calinski_harabasz_score", "davies_bouldin_score"]


@pytest.mark.parametrize("name", SCORES)
def test_scores_match_sklearn_on_every_backend(name, xp, to_xp, rng):
    X, labels = _data(rng)
    X_xp, labels_xp = to_xp(X), to_xp(labels)
    score = getattr(metrics, name)(X_xp, labels_xp)
    assert_array_like(score, X_xp)
    assert score.ndim == 0
    np.testing.assert_allclose(float(score), getattr(skm, name)(X, labels), rtol=1e-10)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_silhouette_samples_match_sklearn(metric, xp, to_xp, rng):
    X, labels = _data(rng, n=300)
    X_xp = to_xp(X)
    values = metrics.silhouette_samples(X_xp, to_xp(labels), metric=metric)
    assert_array_like(values, X_xp)
    expected = skm.silhouette_samples(X, labels, metric=metric)
    np.testing.assert_allclose(to_numpy(values), expected, rtol=1e-10, atol=1e-12)


def test_float32_stays_float32(xp, to_xp, rng):
    X, labels = _data(rng)
    X_xp = to_xp(X, dtype=xp.float32)
    for name in SCORES:
        score = getattr(metrics, name)(X_xp, to_xp(labels))
        assert_array_like(score, X_xp)
        np.testing.assert_allclose(float(score), getattr(skm, name)(X, labels), rtol=1e-4)


@pytest.mark.parametrize("by_matmul", [True, False], ids=["matmul", "accumulate"])
def test_silhouette_tiles_cover_every_pair(by_matmul, monkeypatch, xp, to_xp, rng):
    # Tiny tiles: many (row block x column block) tiles and diagonal tiles;
    # both ways of adding a tile into cluster sums.
    monkeypatch.setattr(metrics, "_tile_size", lambda X, xp: 17)
    if not by_matmul:
        monkeypatch.setattr(metrics, "_MATMUL_MAX_LABELS", 0)
    X, labels = _data(rng, n=101)
    values = metrics.silhouette_samples(to_xp(X), to_xp(labels))
    np.testing.assert_allclose(
        to_numpy(values), skm.silhouette_samples(X, labels), rtol=1e-10, atol=1e-12
    )


def test_sample_size_draws_sklearns_subset(rng):
    X, labels = _data(rng, n=500)
    ours = metrics.silhouette_score(X, labels, sample_size=120, random_state=7)
    theirs = skm.silhouette_score(X, labels, sample_size=120, random_state=7)
    assert float(ours) == pytest.approx(theirs, rel=1e-10)


def test_sample_size_on_device(xp, to_xp, rng):
    X, labels = _data(rng, n=400)
    X_xp = to_xp(X)
    score = metrics.silhouette_score(X_xp, to_xp(labels), sample_size=100, random_state=1)
    assert_array_like(score, X_xp)
    expected = skm.silhouette_score(X, labels, sample_size=100, random_state=1)
    assert float(score) == pytest.approx(expected, rel=1e-10)


def test_singletons_string_labels_and_degenerate_clusters():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [9.0, 9.0], [9.0, 9.0]])
    labels = np.array(["a", "a", "b", "c", "c"])
    np.testing.assert_allclose(
        metrics.silhouette_samples(X, labels), skm.silhouette_samples(X, labels), rtol=1e-10
    )
    for name in SCORES:
        assert float(getattr(metrics, name)(X, labels)) == pytest.approx(
            getattr(skm, name)(X, labels), rel=1e-10
        )
    # Every cluster a single repeated point: CH is 1, DB is 0 (scikit-learn).
    X = np.array([[0.0], [0.0], [3.0], [3.0]])
    labels = np.array([0, 0, 1, 1])
    assert float(metrics.calinski_harabasz_score(X, labels)) == 1.0
    assert float(metrics.davies_bouldin_score(X, labels)) == 0.0


def test_input_not_modified(rng):
    X, labels = _data(rng)
    X_copy, labels_copy = X.copy(), labels.copy()
    metrics.silhouette_score(X, labels, metric="cosine")
    metrics.davies_bouldin_score(X, labels)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(labels, labels_copy)


@pytest.mark.parametrize(
    "labels, error, match",
    [
        (np.zeros(6, dtype=int), ValueError, "Number of labels is 1"),
        (np.arange(6), ValueError, "Number of labels is 6"),
        (np.array([0, 1, 0]), ValueError, r"shape \(6,\)"),
        (np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]), None, None),
    ],
)
def test_bad_labels(labels, error, match):
    X = np.arange(12.0).reshape(6, 2)
    if error is None:  # float labels are encoded like strings
        metrics.silhouette_score(X, labels)
        return
    with pytest.raises(error, match=match):
        metrics.silhouette_score(X, labels)


def test_bad_parameters():
    X = np.arange(12.0).reshape(6, 2)
    labels = np.array([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="metric"):
        metrics.silhouette_score(X, labels, metric="manhattan")
    with pytest.raises(TypeError, match="sample_size"):
        metrics.silhouette_score(X, labels, sample_size=0.5)
    with pytest.raises(ValueError, match="NaN"):
        metrics.davies_bouldin_score(np.full((6, 2), np.nan), labels)


def test_labels_from_another_namespace_are_refused(rng):
    torch = pytest.importorskip("torch")
    X, labels = _data(rng)
    with pytest.raises(TypeError, match="labels is a numpy array"):
        metrics.silhouette_score(torch.asarray(X), labels)
