"""BisectingKMeans on every backend, against scikit-learn's where its
algorithm is deterministic (well separated data)."""

from __future__ import annotations

import numpy as np
import pytest

from kmeans_xp import BisectingKMeans, NotFittedError
from kmeans_xp._testing import assert_array_like, same_partition, to_numpy


def line_groups(seed=0):
    """Four tight groups on the x axis: 25 rows at 0 and 25 at 10 (group
    G1, the most rows), 10 at 100 and 10 at 140 (G23, the largest inertia).

    The first bisection always separates G1 from G23. With three clusters,
    "biggest_inertia" then splits G23 and "largest_cluster" splits G1.
    """
    rng = np.random.default_rng(seed)
    x = np.concatenate([
        rng.normal(0, 0.1, 25), rng.normal(10, 0.1, 25),
        rng.normal(100, 0.1, 10), rng.normal(140, 0.1, 10),
    ])
    y = rng.normal(0, 0.1, x.shape[0])
    return np.stack([x, y], axis=1)


def _sklearn_bisecting():
    return pytest.importorskip("sklearn.cluster").BisectingKMeans


def _same_centers(ours, theirs, atol=1e-6) -> bool:
    """Equal sets of rows, whatever their order."""
    ours = np.asarray(sorted(map(tuple, np.round(ours, 6))))
    theirs = np.asarray(sorted(map(tuple, np.round(theirs, 6))))
    return ours.shape == theirs.shape and np.allclose(ours, theirs, atol=atol)


@pytest.mark.parametrize("strategy", ["biggest_inertia", "largest_cluster"])
@pytest.mark.parametrize("init", ["random", "k-means++"])
def test_same_partition_and_centers_as_sklearn(xp, to_xp, strategy, init):
    X = line_groups()
    theirs = _sklearn_bisecting()(
        n_clusters=3, bisecting_strategy=strategy, init=init, random_state=0
    ).fit(X)
    ours = BisectingKMeans(
        n_clusters=3, bisecting_strategy=strategy, init=init, random_state=0
    ).fit(to_xp(X))
    assert_array_like(ours.cluster_centers_, to_xp(X))
    assert same_partition(to_numpy(ours.labels_), theirs.labels_)
    assert _same_centers(to_numpy(ours.cluster_centers_), theirs.cluster_centers_)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-9)
    # The strategies really split different leaves on this data.
    sizes = sorted(np.bincount(to_numpy(ours.labels_)).tolist())
    assert sizes == ([10, 10, 50] if strategy == "biggest_inertia" else [20, 25, 25])


def test_predict_descends_the_tree_as_sklearn(xp, to_xp):
    X = line_groups()
    theirs = _sklearn_bisecting()(n_clusters=3, random_state=0).fit(X)
    ours = BisectingKMeans(n_clusters=3, random_state=0).fit(to_xp(X))
    # Our label of each of their clusters, read off the training rows.
    to_ours = {int(t): int(o) for t, o in zip(theirs.labels_, to_numpy(ours.labels_))}
    grid = np.stack([np.linspace(-20, 160, 361), np.zeros(361)], axis=1)
    predicted = to_numpy(ours.predict(to_xp(grid)))
    expected = np.array([to_ours[int(t)] for t in theirs.predict(grid)])
    np.testing.assert_array_equal(predicted, expected)
    # x = 61 is closer to the G1 subtree's centre (5) than to G23's (120),
    # but its nearest leaf centre is G2's (100): the tree decides.
    point = to_xp(np.array([[61.0, 0.0]]))
    g1 = int(to_numpy(ours.labels_)[0])
    assert int(to_numpy(ours.predict(point))[0]) == g1
    nearest = int(np.argmin(to_numpy(ours.transform(point))[0]))
    assert nearest != g1


def test_fit_predict_transform_score_agree(xp, to_xp):
    X = line_groups(seed=1)
    Xb = to_xp(X)
    est = BisectingKMeans(n_clusters=4, random_state=0, n_init=2)
    labels = est.fit_predict(Xb)
    assert_array_like(labels, Xb, dtype=labels.dtype)
    np.testing.assert_array_equal(to_numpy(labels), to_numpy(est.predict(Xb)))
    assert sorted(np.unique(to_numpy(labels)).tolist()) == [0, 1, 2, 3]
    distances = est.transform(Xb)
    assert_array_like(distances, Xb)
    assert tuple(distances.shape) == (X.shape[0], 4)
    centers = to_numpy(est.cluster_centers_)
    np.testing.assert_allclose(
        to_numpy(distances), np.linalg.norm(X[:, None, :] - centers[None], axis=2), atol=1e-9
    )
    # Well separated groups: every row's leaf is its nearest centre.
    assert est.score(Xb) == pytest.approx(-est.inertia_, rel=1e-9)
    np.testing.assert_allclose(
        to_numpy(est.fit_transform(Xb)), to_numpy(distances), atol=1e-9
    )


def test_one_cluster_is_the_mean(xp, to_xp):
    X = line_groups()
    est = BisectingKMeans(n_clusters=1).fit(to_xp(X))
    np.testing.assert_allclose(to_numpy(est.cluster_centers_), X.mean(axis=0)[None], atol=1e-9)
    assert not to_numpy(est.predict(to_xp(X))).any()
    assert est.inertia_ == pytest.approx(((X - X.mean(axis=0)) ** 2).sum(), rel=1e-9)


def test_float32_kept_and_input_unchanged(xp, to_xp):
    X = line_groups().astype(np.float32)
    Xb = to_xp(X)
    before = to_numpy(Xb).copy()
    est = BisectingKMeans(n_clusters=3, random_state=0).fit(Xb)
    assert_array_like(est.cluster_centers_, Xb)
    np.testing.assert_array_equal(to_numpy(Xb), before)


def test_integer_weights_equal_repeated_rows():
    X = line_groups()
    weights = np.arange(X.shape[0]) % 3 + 1
    weighted = BisectingKMeans(n_clusters=3, random_state=0).fit(X, sample_weight=weights)
    repeated = BisectingKMeans(n_clusters=3, random_state=0).fit(np.repeat(X, weights, axis=0))
    assert _same_centers(weighted.cluster_centers_, repeated.cluster_centers_)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-9)


def test_same_seed_same_result_and_callable_init():
    X = line_groups()
    a = BisectingKMeans(n_clusters=4, random_state=3).fit(X)
    b = BisectingKMeans(n_clusters=4, random_state=3).fit(X)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    calls = []

    def first_rows(X, n_clusters, random_state):
        calls.append(n_clusters)
        return X[:n_clusters]

    est = BisectingKMeans(n_clusters=3, init=first_rows).fit(X)
    assert calls == [2, 2]  # one 2-means fit per split
    assert len(np.unique(est.labels_)) == 3


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_clusters": 0}, "n_clusters"),
        ({"init": "k-means||"}, "init"),
        ({"init": np.zeros((2, 2))}, "init"),
        ({"n_init": 0}, "n_init"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"copy_x": "yes"}, "copy_x"),
        ({"algorithm": "full"}, "algorithm"),
        ({"bisecting_strategy": "smallest"}, "bisecting_strategy"),
    ],
)
def test_bad_parameters_raise_before_work(params, match):
    with pytest.raises(ValueError, match=match):
        BisectingKMeans(**params).fit(line_groups())


def test_bad_data_and_unfitted_use_raise():
    X = line_groups()
    with pytest.raises(ValueError, match="n_clusters"):
        BisectingKMeans(n_clusters=X.shape[0] + 1).fit(X)
    with pytest.raises(NotFittedError):
        BisectingKMeans().predict(X)
    est = BisectingKMeans(n_clusters=2).fit(X)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :1])


def test_namespace_mismatch_raises():
    torch = pytest.importorskip("torch")
    X = line_groups()
    est = BisectingKMeans(n_clusters=2, random_state=0).fit(X)
    with pytest.raises(TypeError, match="numpy"):
        est.predict(torch.asarray(X))


def test_elkan_and_copy_x_give_lloyd_results():
    X = line_groups()
    lloyd = BisectingKMeans(n_clusters=3, random_state=0).fit(X)
    elkan = BisectingKMeans(n_clusters=3, random_state=0, algorithm="elkan", copy_x=False).fit(X)
    np.testing.assert_array_equal(lloyd.labels_, elkan.labels_)
    np.testing.assert_array_equal(lloyd.cluster_centers_, elkan.cluster_centers_)


def test_to_namespace_converts_the_tree():
    torch = pytest.importorskip("torch")
    X = line_groups()
    est = BisectingKMeans(n_clusters=3, random_state=0).fit(X)
    moved = est.to_namespace(torch)
    labels = moved.predict(torch.asarray(X))
    assert isinstance(labels, torch.Tensor)
    np.testing.assert_array_equal(labels.numpy(), est.predict(X))
    assert isinstance(est._bisecting_tree.left.center, np.ndarray)  # the original is unchanged


def test_dask_input_is_refused_with_a_reason():
    da = pytest.importorskip("dask.array")
    with pytest.raises(TypeError, match="compute X first"):
        BisectingKMeans(n_clusters=2).fit(da.from_array(line_groups(), chunks=20))
