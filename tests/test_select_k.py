"""select_k: recovers the number of blobs on every backend, scores match
scikit-learn, and bad input fails before any fit."""

import dataclasses

import numpy as np
import pytest
from sklearn import metrics as skm

from kmeans_xp import KMeans, SelectKResult, select_k
from kmeans_xp._select_k import CRITERIA, _best_k, _kneedle
from kmeans_xp._testing import assert_array_like, same_partition, to_numpy
from kmeans_xp.datasets import make_blobs


def _blobs(n_blobs, per_blob=60, seed=0):
    """Well separated blobs on a 3 x 3 grid, 12 standard deviations apart."""
    grid = np.array([[12.0 * i, 12.0 * j] for i in range(3) for j in range(3)])
    centers = np.random.default_rng(seed).permutation(grid)[:n_blobs]
    return make_blobs(per_blob * n_blobs, centers=centers, random_state=seed)


def test_select_k_on_every_backend(xp, to_xp):
    X, y = _blobs(3, per_blob=40)
    X_xp = to_xp(X)
    result = select_k(X_xp, range(2, 6), random_state=0)
    assert isinstance(result, SelectKResult)
    assert result.best_k == 3
    assert result.k_values == [2, 3, 4, 5]
    for name in ("inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "fit_time"):
        values = getattr(result, name)
        assert len(values) == 4 and all(isinstance(v, float) for v in values)
    model = result.best_model
    assert isinstance(model, KMeans) and model.n_clusters == 3
    assert_array_like(model.cluster_centers_, X_xp)
    assert same_partition(model.labels_, y)
    # Scores of the chosen k against scikit-learn on the host.
    labels = to_numpy(model.labels_)
    i = result.k_values.index(3)
    assert result.silhouette[i] == pytest.approx(skm.silhouette_score(X, labels), rel=1e-9)
    assert result.calinski_harabasz[i] == pytest.approx(
        skm.calinski_harabasz_score(X, labels), rel=1e-9
    )
    assert result.davies_bouldin[i] == pytest.approx(skm.davies_bouldin_score(X, labels), rel=1e-9)
    assert result.inertia[i] == pytest.approx(model.inertia_)


@pytest.mark.parametrize("n_blobs", range(3, 9))
def test_every_criterion_recovers_the_number_of_blobs(n_blobs):
    X, _ = _blobs(n_blobs, seed=n_blobs)
    result = select_k(X, random_state=0)
    for criterion in CRITERIA:
        chosen = _best_k(dataclasses.replace(result, criterion=criterion))
        assert chosen == n_blobs, f"{criterion} chose {chosen}"


def test_each_criterion_sets_best_k_and_model():
    X, _ = _blobs(4)
    for criterion in CRITERIA:
        result = select_k(X, range(2, 8), criterion=criterion, random_state=1)
        assert result.best_k == 4 and result.best_model.n_clusters == 4
        assert len(result.scores) == 6


def test_silhouette_sample_and_callback():
    X, _ = _blobs(3, per_blob=100)
    seen = []
    result = select_k(
        X, [4, 2, 3], sample_size=120, random_state=0, callback=lambda k, rec: seen.append(k)
    )
    assert seen == [2, 3, 4]
    assert result.silhouette_sample_size == 120
    assert result.best_k == 3
    full = select_k(X, [2, 3, 4], sample_size=None, random_state=0)
    np.testing.assert_allclose(result.silhouette, full.silhouette, atol=0.05)
    assert "*" in result.to_table().splitlines()[2]


def test_sample_weight_scales_inertia():
    X, _ = _blobs(3, per_blob=30)
    plain = select_k(X, [2, 3], random_state=3)
    doubled = select_k(X, [2, 3], random_state=3, sample_weight=np.full(X.shape[0], 2.0))
    np.testing.assert_allclose(doubled.inertia, 2 * np.asarray(plain.inertia), rtol=1e-10)


def test_kneedle_rule():
    # A sharp knee at 4 on a decreasing curve; a straight line has none.
    assert _kneedle([2, 3, 4, 5, 6, 7], [100.0, 60.0, 10.0, 9.0, 8.0, 7.0]) == 4
    assert _kneedle([2, 3], [5.0, 1.0]) == 2
    assert _kneedle([2, 3, 4, 5], [1.0, 1.0, 1.0, 1.0]) == 2


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"criterion": "gap"}, "criterion"),
        ({"k_range": []}, "empty"),
        ({"k_range": [1, 2]}, ">= 2"),
        ({"k_range": [2, 30]}, "too large"),
        ({"k_range": [2.5]}, "ints"),
        ({"metric": "manhattan"}, "metric"),
    ],
)
def test_bad_parameters(kwargs, match):
    X = np.random.default_rng(0).normal(size=(20, 2))
    with pytest.raises(ValueError, match=match):
        select_k(X, **kwargs)


def test_cosine_select_k_scores_unit_rows(xp, to_xp):
    # Three directions in 5-D, each point scaled by a random length:
    # cosine k-means finds the directions, whatever the lengths.
    rng = np.random.default_rng(0)
    directions = np.eye(5)[:3]
    labels = np.repeat(np.arange(3), 40)
    X = (directions[labels] + 0.1 * rng.normal(size=(120, 5))) * rng.uniform(0.5, 20, (120, 1))
    result = select_k(to_xp(X), range(2, 6), metric="cosine", random_state=0)
    assert result.best_k == 3
    assert result.best_model.metric == "cosine"
    best = to_numpy(result.best_model.labels_)
    assert same_partition(best, labels)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    i = result.k_values.index(3)
    assert result.silhouette[i] == pytest.approx(
        skm.silhouette_score(X, best, metric="cosine"), rel=1e-9
    )
    assert result.davies_bouldin[i] == pytest.approx(skm.davies_bouldin_score(unit, best), rel=1e-9)
