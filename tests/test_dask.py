"""KMeans on Dask arrays, on a real two-process ``LocalCluster``.

The oracle is the in-memory numpy fit from the same initial centres: the
Dask driver runs the same per-block code on each chunk, so labels, centres
(to 1e-10 in float64) and the iteration count must agree.
"""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import kmeans_xp  # noqa: E402
import kmeans_xp._dask as kdask  # noqa: E402
from kmeans_xp import KMeans  # noqa: E402
from kmeans_xp._testing import assert_array_like, same_partition  # noqa: E402

N_SAMPLES, N_FEATURES, N_CLUSTERS = 3000, 5, 6
# Uneven row chunks: the last one is short, as in real data.
CHUNKS = (700, N_FEATURES)


@pytest.fixture(scope="module")
def client():
    """A real cluster: two worker processes with one thread each."""
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def in_process():
    """Dask's single-threaded scheduler: the same graphs, without the ~50 ms
    round trip to the cluster, for tests about results rather than workers."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture(scope="module")
def blobs():
    from sklearn.datasets import make_blobs

    X, _ = make_blobs(N_SAMPLES, n_features=N_FEATURES, centers=N_CLUSTERS, random_state=0)
    return X


@pytest.fixture(scope="module")
def init(blobs):
    # Several rows of one blob: Lloyd needs a few iterations from here.
    return blobs[:N_CLUSTERS].copy()


def _assert_same_fit(dask_model, numpy_model, *, rtol=1e-10):
    assert_array_like(dask_model.cluster_centers_, numpy_model.cluster_centers_)
    np.testing.assert_allclose(
        dask_model.cluster_centers_, numpy_model.cluster_centers_, rtol=0, atol=rtol
    )
    labels = dask_model.labels_
    assert isinstance(labels, da.Array), "labels_ must stay a lazy Dask array"
    labels = labels.compute()
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, numpy_model.labels_)
    assert dask_model.n_iter_ == numpy_model.n_iter_
    assert dask_model.inertia_ == pytest.approx(numpy_model.inertia_, rel=rtol)
    assert dask_model.n_features_in_ == N_FEATURES


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_fit_equals_numpy_given_initial_centres(client, blobs, init, weighted):
    w = np.random.default_rng(1).uniform(0.5, 2.0, N_SAMPLES) if weighted else None
    X = da.from_array(blobs, chunks=CHUNKS)
    w_dask = None if w is None else da.from_array(w, chunks=(500,))  # other chunks
    got = KMeans(N_CLUSTERS, init=init).fit(X, sample_weight=w_dask)
    expected = KMeans(N_CLUSTERS, init=init).fit(blobs, sample_weight=w)
    assert expected.n_iter_ > 2, "the oracle should take several iterations"
    _assert_same_fit(got, expected)


def test_fit_equals_scikit_learn(in_process, blobs, init):
    from sklearn.cluster import KMeans as SKKMeans

    got = KMeans(N_CLUSTERS, init=init).fit(da.from_array(blobs, chunks=CHUNKS))
    expected = SKKMeans(N_CLUSTERS, init=init, n_init=1, algorithm="lloyd").fit(blobs)
    assert same_partition(got.labels_.compute(), expected.labels_)
    np.testing.assert_allclose(got.cluster_centers_, expected.cluster_centers_, atol=1e-10)
    assert got.inertia_ == pytest.approx(expected.inertia_, rel=1e-10)


def test_fit_float32_and_integer_data(in_process, blobs, init):
    X32 = blobs.astype(np.float32)
    got = KMeans(N_CLUSTERS, init=init).fit(da.from_array(X32, chunks=CHUNKS))
    expected = KMeans(N_CLUSTERS, init=init).fit(X32)
    assert got.cluster_centers_.dtype == np.float32
    np.testing.assert_allclose(got.cluster_centers_, expected.cluster_centers_, atol=1e-4)
    assert same_partition(got.labels_.compute(), expected.labels_)

    Xint = np.rint(blobs * 10).astype(np.int32)
    got = KMeans(N_CLUSTERS, init=init * 10).fit(da.from_array(Xint, chunks=CHUNKS))
    expected = KMeans(N_CLUSTERS, init=init * 10).fit(Xint)
    assert got.cluster_centers_.dtype == np.float64
    np.testing.assert_allclose(got.cluster_centers_, expected.cluster_centers_, atol=1e-10)


def test_random_init_matches_numpy_seed_for_seed(in_process, blobs):
    # Unweighted "random" draws the same rows from the same seed as in memory.
    X = da.from_array(blobs, chunks=CHUNKS)
    got = KMeans(N_CLUSTERS, init="random", n_init=3, random_state=7).fit(X)
    expected = KMeans(N_CLUSTERS, init="random", n_init=3, random_state=7).fit(blobs)
    _assert_same_fit(got, expected)


def test_default_init_is_kmeans_parallel(in_process, blobs, monkeypatch):
    calls = []
    original = kdask._kmeans_parallel

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(kdask, "_kmeans_parallel", spy)
    X = da.from_array(blobs, chunks=CHUNKS)
    best = KMeans(N_CLUSTERS, n_init=10, random_state=0).fit(blobs).inertia_
    for seed in range(3):
        got = KMeans(N_CLUSTERS, random_state=seed).fit(X)
        # k-means|| finds the blobs: the best of 10 in-memory k-means++ runs.
        assert got.inertia_ == pytest.approx(best, rel=1e-6)
    assert len(calls) == 3
    again = KMeans(N_CLUSTERS, random_state=2).fit(X)
    np.testing.assert_array_equal(again.cluster_centers_, got.cluster_centers_)


def test_kmeans_parallel_first_centre_is_random(in_process, blobs):
    # Not row 0: the first centre is drawn uniformly (by weight), from any chunk.
    X = da.from_array(blobs, chunks=CHUNKS)
    chunks = kdask._Chunks(X, None)
    shift = np.zeros(N_FEATURES)
    firsts = {
        tuple(kdask._first_center(chunks, shift, np.random.default_rng(seed))[0])
        for seed in range(20)
    }
    assert len(firsts) > 15
    rows = {tuple(r) for r in blobs}
    assert firsts <= rows and tuple(blobs[0]) not in firsts

    # With weights, only rows of positive weight can be drawn.
    w = np.zeros(N_SAMPLES)
    w[2000:2100] = 1.0
    chunks = kdask._Chunks(X, da.from_array(w, chunks=(CHUNKS[0],)))
    for seed in range(5):
        first = kdask._first_center(chunks, shift, np.random.default_rng(seed))[0]
        index = int(np.flatnonzero((blobs == first).all(axis=1))[0])
        assert 2000 <= index < 2100


def test_weighted_kmeans_parallel_ignores_zero_weight_rows(in_process, blobs):
    from sklearn.datasets import make_blobs

    X, y = make_blobs(2000, n_features=3, centers=4, cluster_std=0.3, random_state=3)
    w = (y != 0).astype(np.float64)  # blob 0 carries no weight
    got = KMeans(3, random_state=0).fit(
        da.from_array(X, chunks=(600, 3)), sample_weight=da.from_array(w, chunks=(600,))
    )
    true_centres = np.array([X[y == c].mean(axis=0) for c in (1, 2, 3)])
    distances = np.linalg.norm(got.cluster_centers_[:, None] - true_centres[None], axis=2)
    assert distances.min(axis=0).max() < 0.1


def test_predict_transform_score_are_lazy_and_match(client, blobs, init):
    model = KMeans(N_CLUSTERS, init=init).fit(blobs)
    rng = np.random.default_rng(2)
    X_new = blobs[rng.permutation(N_SAMPLES)[:1000]] + rng.normal(0, 0.1, (1000, N_FEATURES))
    X_dask = da.from_array(X_new, chunks=(300, N_FEATURES))

    labels = model.predict(X_dask)
    assert isinstance(labels, da.Array) and labels.chunks == ((300, 300, 300, 100),)
    np.testing.assert_array_equal(labels.compute(), model.predict(X_new))

    distances = model.transform(X_dask)
    assert isinstance(distances, da.Array)
    assert distances.shape == (1000, N_CLUSTERS) and distances.dtype == np.float64
    np.testing.assert_allclose(distances.compute(), model.transform(X_new), atol=1e-10)

    w = rng.uniform(size=1000)
    assert model.score(X_dask) == pytest.approx(model.score(X_new), rel=1e-10)
    assert model.score(X_dask, sample_weight=w) == pytest.approx(
        model.score(X_new, sample_weight=w), rel=1e-10
    )


def test_fit_survives_a_killed_worker(client, blobs, init, monkeypatch):
    """Kill a worker process after the first Lloyd iteration: Dask recomputes
    its chunks elsewhere and the fit still equals the numpy one."""
    victim = sorted(client.run(os.getpid).values())[0]
    calls = []
    original = kdask._compute

    def compute_then_kill(*collections):
        calls.append(1)
        # Call 1 validates, call 2 is iteration 1; kill before iteration 2.
        if len(calls) == 3:
            os.kill(victim, signal.SIGKILL)
        return original(*collections)

    monkeypatch.setattr(kdask, "_compute", compute_then_kill)
    X = da.from_array(blobs, chunks=CHUNKS)
    got = KMeans(N_CLUSTERS, init=init).fit(X)
    expected = KMeans(N_CLUSTERS, init=init).fit(blobs)
    assert len(calls) > 3, "the worker must die mid-fit, not after it"
    _assert_same_fit(got, expected)
    # The nanny restarts the worker; leave the cluster whole for the next test.
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()


def test_empty_cluster_relocation_matches_numpy(in_process):
    # A centre far from every row empties at once; both drivers move the
    # same farthest row into it.
    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(0, 1, (400, 2)), rng.normal(8, 1, (400, 2))])
    init = np.array([[0.0, 0.0], [8.0, 8.0], [100.0, 100.0]])
    got = KMeans(3, init=init).fit(da.from_array(X, chunks=(150, 2)))
    expected = KMeans(3, init=init).fit(X)
    np.testing.assert_allclose(got.cluster_centers_, expected.cluster_centers_, atol=1e-10)
    np.testing.assert_array_equal(got.labels_.compute(), expected.labels_)
    assert got.n_iter_ == expected.n_iter_


# -- bad input ---------------------------------------------------------------


def test_feature_axis_chunks_rejected(in_process, blobs):
    X = da.from_array(blobs, chunks=(700, 2))
    with pytest.raises(ValueError, match="feature axis"):
        KMeans(N_CLUSTERS).fit(X)
    model = KMeans(N_CLUSTERS, n_init=1, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match="feature axis"):
        model.predict(X)


def test_mixed_namespace_init_rejected(in_process, blobs):
    torch = pytest.importorskip("torch")
    init = torch.asarray(blobs[:N_CLUSTERS])
    with pytest.raises(TypeError, match="init is a torch array"):
        KMeans(N_CLUSTERS, init=init).fit(da.from_array(blobs, chunks=CHUNKS))
    with pytest.raises(TypeError, match="init is a torch array"):
        KMeans(N_CLUSTERS, init=init).fit(blobs)


def test_other_bad_input(in_process, blobs):
    X = da.from_array(blobs, chunks=CHUNKS)
    bad = blobs.copy()
    bad[1234, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        KMeans(N_CLUSTERS).fit(da.from_array(bad, chunks=CHUNKS))
    with pytest.raises(ValueError, match="2-D"):
        KMeans(N_CLUSTERS).fit(X[:, 0])
    with pytest.raises(ValueError, match="unknown size"):
        KMeans(N_CLUSTERS).fit(X[X[:, 0] > 0])
    with pytest.raises(ValueError, match="n_samples=3000 should be >= n_clusters=3001"):
        KMeans(3001).fit(X)
    with pytest.raises(ValueError, match="negative"):
        KMeans(N_CLUSTERS).fit(X, sample_weight=-np.ones(N_SAMPLES))
    with pytest.raises(ValueError, match=r"shape \(3000,\)"):
        KMeans(N_CLUSTERS).fit(X, sample_weight=np.ones(10))
    with pytest.raises(ValueError, match=r"The shape of the initial centers"):
        KMeans(N_CLUSTERS, init=blobs[:2]).fit(X)
    with pytest.raises(ValueError, match="not supported on Dask"):
        KMeans(N_CLUSTERS, metric="cosine").fit(X)

    model = KMeans(N_CLUSTERS, n_init=1, random_state=0).fit(blobs)
    with pytest.raises(ValueError, match="3 features"):
        model.predict(X[:, :3].rechunk({1: -1}))
    with pytest.raises(ValueError, match="NaN"):
        model.predict(da.from_array(bad, chunks=CHUNKS)).compute()
    with pytest.raises(kmeans_xp.NotFittedError):
        KMeans(N_CLUSTERS).predict(X)


@pytest.mark.gpu
def test_cupy_chunks_equal_numpy(blobs, init):
    cupy = pytest.importorskip("cupy")
    try:
        if cupy.cuda.runtime.getDeviceCount() == 0:
            pytest.skip("no CUDA device")
    except Exception as exc:  # CUDA driver missing or broken
        pytest.skip(f"CUDA is unusable: {exc}")
    X = da.from_array(blobs, chunks=CHUNKS).map_blocks(cupy.asarray)
    got = KMeans(N_CLUSTERS, init=cupy.asarray(init)).fit(X)
    expected = KMeans(N_CLUSTERS, init=init).fit(blobs)
    assert isinstance(got.cluster_centers_, cupy.ndarray)
    np.testing.assert_allclose(got.cluster_centers_.get(), expected.cluster_centers_, atol=1e-10)
    np.testing.assert_array_equal(got.labels_.compute().get(), expected.labels_)
    labels = got.predict(X)
    assert isinstance(labels._meta, cupy.ndarray)
