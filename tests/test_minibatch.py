"""MiniBatchKMeans on every backend, against numpy and scikit-learn oracles.

All randomness comes from the host generator, so one seed gives the same
batches on every backend: float64 backends must reproduce the numpy fit.
"""

from __future__ import annotations

import numpy as np
import pytest

from kmeans_xp import KMeans, MiniBatchKMeans
from kmeans_xp._testing import assert_array_like, same_partition, to_numpy
from kmeans_xp.exceptions import InvalidParameterError

N_CLUSTERS = 5


@pytest.fixture(scope="module")
def blobs():
    """Training rows and held-out rows from the same five blobs."""
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(4000, n_features=6, centers=N_CLUSTERS, cluster_std=1.5, random_state=0)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(X))
    return X[order[:3000]], X[order[3000:]]


@pytest.fixture(scope="module")
def full_kmeans(blobs):
    X, _ = blobs
    return KMeans(N_CLUSTERS, n_init=5, random_state=0).fit(X)


def test_fit_on_every_backend_matches_numpy(xp, device, to_xp, blobs, full_kmeans):
    X_np, X_test = blobs
    params = dict(batch_size=256, random_state=3, max_no_improvement=5)
    expected = MiniBatchKMeans(N_CLUSTERS, **params).fit(X_np)
    X = to_xp(X_np)
    model = MiniBatchKMeans(N_CLUSTERS, **params).fit(X)

    assert_array_like(model.cluster_centers_, X)
    assert_array_like(model.counts_, X)
    assert_array_like(model.labels_, X, dtype=model.labels_.dtype)
    assert model.cluster_centers_.shape == (N_CLUSTERS, 6)
    # The same seed draws the same batches on every backend.
    assert model.n_steps_ == expected.n_steps_
    assert model.n_iter_ == expected.n_iter_
    np.testing.assert_allclose(to_numpy(model.cluster_centers_), expected.cluster_centers_, atol=1e-8)
    np.testing.assert_allclose(to_numpy(model.counts_), expected.counts_, atol=1e-8)
    assert same_partition(model.labels_, expected.labels_)
    assert model.inertia_ == pytest.approx(expected.inertia_, rel=1e-10)
    # And the result is a good clustering: close to a full KMeans fit.
    assert model.inertia_ <= 1.05 * full_kmeans.inertia_

    labels = model.predict(to_xp(X_test))
    assert_array_like(labels, X, dtype=labels.dtype)
    np.testing.assert_array_equal(to_numpy(labels), expected.predict(X_test))
    distances = model.transform(to_xp(X_test))
    assert_array_like(distances, X)
    np.testing.assert_allclose(to_numpy(distances), expected.transform(X_test), atol=1e-8)
    assert model.score(to_xp(X_test)) == pytest.approx(expected.score(X_test), rel=1e-10)


def test_float32_keeps_dtype(xp, device, to_xp, blobs, full_kmeans):
    X_np, _ = blobs
    X = to_xp(X_np, dtype=xp.float32)
    model = MiniBatchKMeans(N_CLUSTERS, batch_size=256, random_state=0).fit(X)
    assert_array_like(model.cluster_centers_, X)
    assert model.inertia_ <= 1.05 * full_kmeans.inertia_


def test_partial_fit_stream_close_to_full_fit(xp, device, to_xp, blobs, full_kmeans):
    """Batches streamed through partial_fit: held-out inertia within 5% of a
    full KMeans fit."""
    X_np, X_test = blobs
    model = MiniBatchKMeans(N_CLUSTERS, random_state=0)
    n_seen = 0
    for _epoch in range(2):
        for start in range(0, len(X_np), 300):
            batch = to_xp(X_np[start : start + 300])
            model.partial_fit(batch)
            n_seen += batch.shape[0]
    assert_array_like(model.cluster_centers_, batch)
    assert model.n_steps_ == 20
    held_out = -model.score(to_xp(X_test))
    assert held_out <= 1.05 * -full_kmeans.score(X_test)
    # Labels and inertia of the last batch.
    assert model.labels_.shape == (300,)
    assert model.inertia_ == pytest.approx(-model.score(batch), rel=1e-8)
    # Counts add up to the rows seen, less what reassignment reset.
    assert float(to_numpy(model.counts_).sum()) <= n_seen


def test_partial_fit_from_torch_dataloader(blobs, full_kmeans):
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    X_np, X_test = blobs
    loader = DataLoader(
        TensorDataset(torch.asarray(X_np)), batch_size=256, shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    model = MiniBatchKMeans(N_CLUSTERS, random_state=0, compute_labels=False)
    for _epoch in range(2):
        for (batch,) in loader:
            model.partial_fit(batch)
    assert isinstance(model.cluster_centers_, torch.Tensor)
    assert model.cluster_centers_.dtype == torch.float64
    assert not hasattr(model, "labels_")
    held_out = -model.score(torch.asarray(X_test))
    assert held_out <= 1.05 * -full_kmeans.score(X_test)


def test_close_to_scikit_learn(blobs):
    from sklearn.cluster import MiniBatchKMeans as SKMiniBatchKMeans

    X, X_test = blobs
    ours = [MiniBatchKMeans(N_CLUSTERS, batch_size=128, random_state=s).fit(X) for s in range(3)]
    theirs = [SKMiniBatchKMeans(N_CLUSTERS, batch_size=128, random_state=s).fit(X) for s in range(3)]
    assert np.median([m.inertia_ for m in ours]) <= 1.02 * np.median([m.inertia_ for m in theirs])


def test_step_count_and_no_early_stopping(blobs):
    X, _ = blobs
    model = MiniBatchKMeans(
        N_CLUSTERS, batch_size=500, max_iter=3, max_no_improvement=None, random_state=0
    ).fit(X)
    assert model.n_steps_ == (3 * 3000) // 500
    assert model.n_iter_ == 3

    stopped = MiniBatchKMeans(N_CLUSTERS, batch_size=100, max_no_improvement=2, random_state=0).fit(X)
    assert stopped.n_steps_ < (100 * 3000) // 100

    by_tol = MiniBatchKMeans(
        N_CLUSTERS, batch_size=100, tol=1e-2, max_no_improvement=None, random_state=0
    ).fit(X)
    assert by_tol.n_steps_ < (100 * 3000) // 100


def test_compute_labels_false_uses_smoothed_inertia(blobs):
    X, _ = blobs
    model = MiniBatchKMeans(N_CLUSTERS, compute_labels=False, random_state=0).fit(X)
    assert not hasattr(model, "labels_")
    full = KMeans(N_CLUSTERS, init=model.cluster_centers_, max_iter=1).fit(X)
    # The smoothed batch inertia estimates the full one.
    assert model.inertia_ == pytest.approx(full.inertia_, rel=0.2)


def test_reassignment_rescues_a_lost_centre(blobs):
    X, _ = blobs
    init = np.concatenate([X[:N_CLUSTERS - 1], np.full((1, 6), 1e3)])
    kept = MiniBatchKMeans(
        N_CLUSTERS, init=init, batch_size=200, reassignment_ratio=0.0, random_state=0
    ).fit(X)
    # Without reassignment the far centre never gets a row.
    assert float(kept.counts_.min()) == 0.0
    np.testing.assert_array_equal(kept.cluster_centers_[-1], init[-1])
    moved = MiniBatchKMeans(N_CLUSTERS, init=init, batch_size=200, random_state=0).fit(X)
    assert np.abs(moved.cluster_centers_).max() < 100
    assert len(np.unique(moved.labels_)) == N_CLUSTERS


def test_sample_weight(blobs):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(3000, n_features=3, centers=4, cluster_std=0.3, random_state=3)
    w = (y != 0).astype(np.float64)  # one blob carries no weight
    model = MiniBatchKMeans(3, batch_size=200, random_state=0).fit(X, sample_weight=w)
    true_centres = np.array([X[y == c].mean(axis=0) for c in (1, 2, 3)])
    distances = np.linalg.norm(model.cluster_centers_[:, None] - true_centres[None], axis=2)
    assert distances.min(axis=0).max() < 0.1
    assert float(model.counts_.sum()) <= w.sum() * 100


def test_inputs_not_modified_and_params_roundtrip(blobs):
    from sklearn.base import clone

    X, _ = blobs
    X_copy = X.copy()
    model = MiniBatchKMeans(N_CLUSTERS, batch_size=64, random_state=0)
    model.fit(X)
    np.testing.assert_array_equal(X, X_copy)
    assert clone(model).get_params() == model.get_params()
    assert model.set_params(batch_size=32).batch_size == 32
    assert repr(MiniBatchKMeans(3, batch_size=10)) == "MiniBatchKMeans(batch_size=10, n_clusters=3)"
    with pytest.raises(InvalidParameterError, match="valid parameters"):
        model.set_params(metric="cosine")


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(init_size=0), "init_size must be >= 1"),
        (dict(max_no_improvement=-1), "max_no_improvement must be >= 0"),
        (dict(reassignment_ratio=-0.5), "reassignment_ratio"),
        (dict(compute_labels="yes"), "compute_labels"),
        (dict(n_init=0), "n_init must be >= 1"),
        (dict(init="k-means"), "init must be one of"),
    ],
)
def test_bad_parameters(blobs, params, match):
    X, _ = blobs
    with pytest.raises(InvalidParameterError, match=match):
        MiniBatchKMeans(N_CLUSTERS, **params).fit(X)
    with pytest.raises(InvalidParameterError, match=match):
        MiniBatchKMeans(N_CLUSTERS, **params).partial_fit(X)


def test_partial_fit_rejects_a_changing_batch(blobs):
    X, _ = blobs
    model = MiniBatchKMeans(N_CLUSTERS, random_state=0).partial_fit(X[:500])
    with pytest.raises(ValueError, match="X has 4 features, but MiniBatchKMeans is expecting 6 features"):
        model.partial_fit(X[500:1000, :4])
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"partial_fit\(\): X is a torch array but this model was fitted on numpy"):
        model.partial_fit(torch.asarray(X[500:1000]))
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=5"):
        MiniBatchKMeans(N_CLUSTERS).partial_fit(X[:3])


def test_mixed_namespace_init_rejected(blobs):
    torch = pytest.importorskip("torch")
    X, _ = blobs
    with pytest.raises(TypeError, match="init is a torch array but X is a numpy array"):
        MiniBatchKMeans(N_CLUSTERS, init=torch.asarray(X[:N_CLUSTERS])).fit(X)


def test_dask_input_rejected(blobs):
    da = pytest.importorskip("dask.array")
    X, _ = blobs
    with pytest.raises(TypeError, match="Dask"):
        MiniBatchKMeans(N_CLUSTERS).fit(da.from_array(X, chunks=(500, 6)))


def test_explicit_init_with_n_init_warns(blobs):
    X, _ = blobs
    with pytest.warns(RuntimeWarning, match="only one init in MiniBatchKMeans instead of n_init=3"):
        MiniBatchKMeans(N_CLUSTERS, init=X[:N_CLUSTERS], n_init=3).fit(X)


def test_pickled_stream_goes_on(blobs):
    import pickle

    X, _ = blobs
    model = MiniBatchKMeans(N_CLUSTERS, random_state=0).partial_fit(X[:1000])
    copy = pickle.loads(pickle.dumps(model))
    model.partial_fit(X[1000:2000])
    copy.partial_fit(X[1000:2000])
    np.testing.assert_array_equal(copy.cluster_centers_, model.cluster_centers_)
    np.testing.assert_array_equal(copy.counts_, model.counts_)
    assert copy.n_steps_ == model.n_steps_ == 2


def test_tolerance_stops_at_the_first_step_within_it(xp, device, to_xp, blobs):
    """A step's centre change is read with the next step's figures (one
    read a step); the fit still ends on the first step whose change is
    within tol, with that step's centres, as reading at once would."""
    import kmeans_xp._minibatch as minibatch

    X_np, _ = blobs
    tol = 1e-3
    abs_tol = tol * float(np.mean(np.var(X_np, axis=0)))
    changes = []
    original = minibatch._State.step

    def recorded(self, batch, centers, *args, **kwargs):
        stepped = original(self, batch, centers, *args, **kwargs)
        if stepped is not None:
            moved = to_numpy(stepped[0]) - to_numpy(centers)
            changes.append((float(np.sum(moved**2)), to_numpy(stepped[0])))
        return stepped

    params = dict(batch_size=100, tol=tol, max_no_improvement=None, random_state=0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(minibatch._State, "step", recorded)
        model = MiniBatchKMeans(N_CLUSTERS, **params).fit(to_xp(X_np))
    n_steps = model.n_steps_
    assert n_steps < (100 * 3000) // 100  # stopped by the tolerance
    # One more step was computed (its read showed the convergence), undone.
    assert len(changes) in (n_steps, n_steps + 1)
    # The first step's change is that of the initial centres: not a test.
    assert all(change > abs_tol for change, _ in changes[1 : n_steps - 1])
    assert changes[n_steps - 1][0] <= abs_tol * (1 + 1e-9)
    last_centers = changes[n_steps - 1][1]
    shift = to_numpy(model.cluster_centers_) - last_centers
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:1], shift.shape), atol=1e-8)
    # The undone step's batch was not drawn: the same fit, and the same
    # partial_fit after it, as on numpy.
    expected = MiniBatchKMeans(N_CLUSTERS, **params).fit(X_np)
    assert n_steps == expected.n_steps_
    model.partial_fit(to_xp(X_np[:300]))
    expected.partial_fit(X_np[:300])
    centers = to_numpy(model.cluster_centers_)
    np.testing.assert_allclose(centers, expected.cluster_centers_, atol=1e-6)
