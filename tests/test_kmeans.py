"""KMeans, k_means and kmeans_plusplus on every backend of the conftest fixture.

Oracles: the numpy float64 run of kmeans_xp itself, and scikit-learn's
KMeans given the same initial centres.
"""

import copy
import warnings

import numpy as np
import pytest

import kmeans_xp._blocks
import kmeans_xp._fit
import kmeans_xp._kernels.numpy
import kmeans_xp._kmeans
import kmeans_xp._problem
from kmeans_xp import ConvergenceWarning, KMeans, k_means, kmeans_plusplus
from kmeans_xp._testing import assert_array_like, same_partition, to_numpy

TOL = {"float64": 1e-10, "float32": 1e-4}


def blobs(n_samples=600, n_features=3, n_centers=4, *, seed=0, std=1.0, offset=0.0):
    """Well separated Gaussian blobs (host numpy, float64) and their labels."""
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(n_centers, n_features))
    y = rng.integers(0, n_centers, size=n_samples)
    X = centers[y] + std * rng.standard_normal((n_samples, n_features)) + offset
    return X, y


@pytest.fixture(params=["float64", "float32"])
def dtype_name(request):
    return request.param


def _xp_dtype(xp, name):
    return getattr(xp, name)


def _sklearn_kmeans():
    return pytest.importorskip("sklearn.cluster").KMeans


# --- outputs live where the inputs live -------------------------------------


def test_fitted_attributes_in_input_namespace_device_dtype(xp, to_xp, dtype_name):
    X_np, _ = blobs()
    X = to_xp(X_np, dtype=_xp_dtype(xp, dtype_name))
    km = KMeans(n_clusters=4, random_state=0).fit(X)

    assert_array_like(km.cluster_centers_, X)
    assert tuple(km.cluster_centers_.shape) == (4, 3)
    assert_array_like(km.labels_, X, dtype=km.labels_.dtype)
    assert xp.isdtype(km.labels_.dtype, "integral")
    assert tuple(km.labels_.shape) == (600,)
    assert isinstance(km.inertia_, float) and km.inertia_ > 0
    assert isinstance(km.n_iter_, int) and 1 <= km.n_iter_ <= 300
    assert km.n_features_in_ == 3

    labels = km.predict(X)
    assert_array_like(labels, X, dtype=km.labels_.dtype)
    np.testing.assert_array_equal(to_numpy(labels), to_numpy(km.labels_))

    distances = km.transform(X)
    assert_array_like(distances, X)
    assert tuple(distances.shape) == (600, 4)
    np.testing.assert_array_equal(to_numpy(distances).argmin(axis=1), to_numpy(labels))

    assert km.score(X) == pytest.approx(-km.inertia_, rel=TOL[dtype_name] * 10)


def test_fit_predict_and_fit_transform_match_fit(xp, to_xp):
    X = to_xp(blobs()[0])
    labels = KMeans(4, random_state=3).fit_predict(X)
    km = KMeans(4, random_state=3).fit(X)
    np.testing.assert_array_equal(to_numpy(labels), to_numpy(km.labels_))
    distances = KMeans(4, random_state=3).fit_transform(X)
    np.testing.assert_allclose(to_numpy(distances), to_numpy(km.transform(X)))


def test_k_means_function_returns_centers_labels_inertia(xp, to_xp):
    X = to_xp(blobs()[0])
    centers, labels, inertia, n_iter = k_means(X, 4, random_state=0, return_n_iter=True)
    km = KMeans(4, random_state=0).fit(X)
    assert_array_like(centers, X)
    np.testing.assert_array_equal(to_numpy(centers), to_numpy(km.cluster_centers_))
    np.testing.assert_array_equal(to_numpy(labels), to_numpy(km.labels_))
    assert inertia == km.inertia_ and n_iter == km.n_iter_


# --- the same results on every backend ---------------------------------------


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_same_partition_as_numpy_for_the_same_seed(xp, to_xp, init):
    X_np, _ = blobs(n_samples=500, n_centers=5, seed=1)
    ref = KMeans(5, init=init, n_init=2, random_state=42).fit(X_np)
    km = KMeans(5, init=init, n_init=2, random_state=42).fit(to_xp(X_np))
    assert same_partition(km.labels_, ref.labels_)
    np.testing.assert_allclose(to_numpy(km.cluster_centers_), ref.cluster_centers_, rtol=1e-10)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)


def test_kmeans_plusplus_same_rows_on_every_backend(xp, to_xp):
    X_np, _ = blobs(n_samples=300, n_centers=6, seed=2)
    ref_centers, ref_indices = kmeans_plusplus(X_np, 6, random_state=7)
    X = to_xp(X_np)
    centers, indices = kmeans_plusplus(X, 6, random_state=7)
    assert_array_like(centers, X)
    assert_array_like(indices, X, dtype=indices.dtype)
    np.testing.assert_array_equal(to_numpy(indices), ref_indices)
    np.testing.assert_array_equal(to_numpy(centers), X_np[ref_indices])


def test_kmeans_plusplus_no_weights_and_unit_weights_draw_the_same_rows(xp, to_xp):
    # Every draw goes through the same cumulative sums with or without
    # weights; a host-side uniform draw differed here (seed 299: row 71201
    # against 71200).
    X_np = np.random.default_rng(0).standard_normal((100_003, 3)).astype(np.float32)
    X, ones = to_xp(X_np), to_xp(np.ones(X_np.shape[0], dtype=np.float32))
    for seed in (5, 299):
        _, plain = kmeans_plusplus(X, 2, random_state=seed)
        _, unit = kmeans_plusplus(X, 2, sample_weight=ones, random_state=seed)
        np.testing.assert_array_equal(to_numpy(plain), to_numpy(unit))


@pytest.mark.parametrize("weighted", [False, True])
def test_kmeans_plusplus_same_rows_in_one_block_or_many(xp, to_xp, monkeypatch, weighted):
    # Small data take a one-block path that keeps the block, its row norms
    # and the candidates' distances between rounds; large data recompute
    # them block by block, in products of other shapes whose last bits may
    # differ. Both draw the same rows unless a draw lands on a boundary.
    X_np, _ = blobs(n_samples=300, n_centers=6, seed=4)
    w = to_xp(np.random.default_rng(0).uniform(0.5, 2.0, 300)) if weighted else None
    X = to_xp(X_np)
    _, one_block = kmeans_plusplus(X, 6, sample_weight=w, random_state=3)
    real = kmeans_xp._blocks.block_rows
    monkeypatch.setattr(kmeans_xp._blocks, "block_rows", lambda *args: min(64, real(*args)))
    _, many_blocks = kmeans_plusplus(X, 6, sample_weight=w, random_state=3)
    np.testing.assert_array_equal(to_numpy(many_blocks), to_numpy(one_block))


def test_kmeans_plusplus_spreads_and_respects_weights(xp, to_xp):
    X_np, y = blobs(n_samples=400, n_centers=4, seed=3, std=0.1)
    _, indices = kmeans_plusplus(to_xp(X_np), 4, random_state=0)
    # Well separated tight blobs: greedy k-means++ picks one row per blob.
    assert sorted(y[to_numpy(indices)].tolist()) == [0, 1, 2, 3]
    weights = np.ones(400)
    weights[y == 0] = 0.0
    _, indices = kmeans_plusplus(
        to_xp(X_np), 3, sample_weight=to_xp(weights), random_state=0
    )
    assert not np.any(y[to_numpy(indices)] == 0)


# --- equal to scikit-learn given the same initial centres --------------------


@pytest.fixture(params=["one block", "many blocks"])
def blocks(request, monkeypatch):
    """Data in one block (small fits), or in 64-row blocks: the thread pool
    and the incremental cluster sums of large fits run on small data."""
    if request.param == "many blocks":
        real = kmeans_xp._blocks.block_rows
        monkeypatch.setattr(
            kmeans_xp._blocks, "block_rows", lambda *args: min(64, real(*args))
        )
    return request.param


def _sklearn_reference(dtype_name: str, weighted: bool):
    """Overlapping blobs, their first 5 rows as initial centres, weights,
    and scikit-learn's Lloyd fit from those centres."""
    X_np, _ = blobs(n_samples=800, n_features=4, n_centers=5, seed=4, std=2.5)
    X_np = X_np.astype(dtype_name)
    init = X_np[:5].copy()
    w_np = np.random.default_rng(0).uniform(0.5, 2.0, size=800).astype(dtype_name)
    kwargs = {"sample_weight": w_np} if weighted else {}
    ref = _sklearn_kmeans()(5, init=init, n_init=1, algorithm="lloyd").fit(X_np, **kwargs)
    return X_np, init, w_np, ref


@pytest.mark.parametrize("weighted", [False, True])
def test_equals_sklearn_given_the_same_initial_centres(xp, to_xp, dtype_name, weighted, blocks):
    X_np, init, w_np, ref = _sklearn_reference(dtype_name, weighted)

    dtype = _xp_dtype(xp, dtype_name)
    X = to_xp(X_np, dtype=dtype)
    kwargs = {"sample_weight": to_xp(w_np, dtype=dtype)} if weighted else {}
    km = KMeans(5, init=to_xp(init, dtype=dtype), n_init=1).fit(X, **kwargs)

    rtol = TOL[dtype_name]
    np.testing.assert_array_equal(to_numpy(km.labels_), ref.labels_)
    np.testing.assert_allclose(
        to_numpy(km.cluster_centers_), ref.cluster_centers_, rtol=rtol, atol=rtol
    )
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=rtol)
    assert km.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("weighted", [False, True])
def test_gpu_kernel_classes_fit_like_sklearn(
    xp, to_xp, gpu_class_kernels, monkeypatch, weighted, blocks
):
    # The passes a CUDA tensor or CuPy array gets (one stream, no thread
    # pool, full sums every pass), run here on CPU arrays.
    monkeypatch.setattr(kmeans_xp._problem, "get_kernels", lambda xp, device=None: gpu_class_kernels)
    monkeypatch.setattr(kmeans_xp._fit, "numpy_twin", lambda xp, device: None)
    X_np, init, w_np, ref = _sklearn_reference("float64", weighted)
    kwargs = {"sample_weight": to_xp(w_np)} if weighted else {}
    km = KMeans(5, init=to_xp(init), n_init=1).fit(to_xp(X_np), **kwargs)

    assert_array_like(km.cluster_centers_, to_xp(X_np))
    np.testing.assert_array_equal(to_numpy(km.labels_), ref.labels_)
    np.testing.assert_allclose(to_numpy(km.cluster_centers_), ref.cluster_centers_, rtol=1e-10)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    assert km.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(to_numpy(km.predict(to_xp(X_np))), ref.labels_)


@pytest.mark.parametrize("weighted", [False, True])
def test_incremental_sums_equal_full_sums_over_many_passes(monkeypatch, weighted):
    """numpy keeps float64 running sums that only the moved rows update
    and sums afresh after some multiple of n updates (lowered here so that
    it happens within the run). Over 40-52 passes of uniform float32 data in
    64-row blocks the fit matches one that sums every row on every pass,
    and every pass runs with float32 centres."""
    import kmeans_xp._lloyd

    real = kmeans_xp._blocks.block_rows
    monkeypatch.setattr(kmeans_xp._blocks, "block_rows", lambda *args: min(64, real(*args)))
    monkeypatch.setattr(kmeans_xp._lloyd, "_WIDE_RESUM_FACTOR", 0.2)
    passes = []
    real_pass = kmeans_xp._lloyd._lloyd_pass_into

    def logged_pass(problem, centers, **kwargs):
        previous = kwargs.get("previous_sums")
        passes.append((previous is not None, centers.dtype))
        if previous is not None:
            assert previous[0].dtype == previous[1].dtype == np.float64
        return real_pass(problem, centers, **kwargs)

    monkeypatch.setattr(kmeans_xp._lloyd, "_lloyd_pass_into", logged_pass)
    rng = np.random.default_rng(8)
    X = rng.uniform(size=(3000, 16)).astype(np.float32)
    w = rng.uniform(0.5, 2.0, size=3000).astype(np.float32) if weighted else None
    init = X[:20].copy()
    incremental = KMeans(20, init=init, n_init=1, max_iter=80, tol=0).fit(X, sample_weight=w)
    incremental_passes = list(passes)
    monkeypatch.setattr(kmeans_xp._kernels.numpy.NumpyKernels, "incremental_sums", False)
    full = KMeans(20, init=init, n_init=1, max_iter=80, tol=0).fit(X, sample_weight=w)
    assert incremental.n_iter_ == full.n_iter_ >= 40
    flags = [updated for updated, _ in incremental_passes]
    assert sum(flags) > 30 and not all(flags[2:])  # incremental, and summed afresh
    assert {dtype for _, dtype in incremental_passes} == {np.dtype(np.float32)}
    assert incremental.cluster_centers_.dtype == np.float32
    assert incremental.labels_.dtype == full.labels_.dtype == np.int64  # compact in the passes
    np.testing.assert_array_equal(incremental.labels_, full.labels_)
    np.testing.assert_allclose(incremental.cluster_centers_, full.cluster_centers_, rtol=1e-5, atol=1e-5)


def test_weighted_cluster_emptied_by_incremental_sums_is_relocated():
    """A weighted float32 fit whose clusters empty during incremental
    passes: the running weights of an emptied cluster keep a round-off
    residue, which must not pass for a live cluster (it would escape the
    relocation and get a centre made of residues). Same fit as
    scikit-learn's."""
    SKKMeans = _sklearn_kmeans()
    rng = np.random.default_rng(6)
    n, k = 3000, 100
    X = rng.standard_normal((n, 2)) + rng.uniform(-8, 8, (6, 2))[rng.integers(0, 6, n)]
    X = X.astype(np.float32)
    w = rng.uniform(0.1, 3, n).astype(np.float32)
    init = rng.uniform(-10, 10, (k, 2)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = SKKMeans(k, init=init, n_init=1, max_iter=60, tol=0, algorithm="lloyd").fit(
            X, sample_weight=w
        )
        km = KMeans(k, init=init, n_init=1, max_iter=60, tol=0).fit(X, sample_weight=w)
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, atol=1e-4)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-5)


def test_running_sums_are_float64_on_numpy():
    import array_api_compat.numpy as np_xp

    sums, counts = np.ones((3, 2), np.float32), np.ones(3, np.float32)
    wide = kmeans_xp._kernels.numpy.NumpyKernels(np_xp).running_sums(sums, counts)
    assert [a.dtype for a in wide] == [np.float64, np.float64]
    same = kmeans_xp._kernels.Kernels(np_xp).running_sums(sums, counts)
    assert same[0] is sums and same[1] is counts


def test_equals_sklearn_with_an_empty_cluster_relocated(xp, to_xp, blocks):
    SKKMeans = _sklearn_kmeans()
    X_np, _ = blobs(n_samples=300, n_features=2, n_centers=3, seed=5)
    init = np.vstack([X_np[:2], [[1e3, 1e3]]])  # the third centre attracts nothing
    ref = SKKMeans(3, init=init, n_init=1, max_iter=50).fit(X_np)
    km = KMeans(3, init=to_xp(init), max_iter=50).fit(to_xp(X_np))
    centers = to_numpy(km.cluster_centers_)
    assert np.all(np.isfinite(centers))
    assert not np.any(np.all(centers == 0, axis=1))
    np.testing.assert_array_equal(to_numpy(km.labels_), ref.labels_)
    np.testing.assert_allclose(centers, ref.cluster_centers_, rtol=1e-10)
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)


def test_max_iter_reached_labels_match_returned_centres(xp, to_xp):
    X = to_xp(blobs(n_samples=500, n_centers=6, seed=6, std=3.0)[0])
    km = KMeans(6, init="random", n_init=1, max_iter=1, random_state=0).fit(X)
    assert km.n_iter_ == 1
    np.testing.assert_array_equal(to_numpy(km.labels_), to_numpy(km.predict(X)))


def test_tol_is_relative_to_feature_variance(xp, to_xp):
    X_np = blobs(n_samples=500, n_centers=6, seed=6, std=3.0)[0]
    strict = KMeans(6, init="random", tol=0, random_state=0).fit(to_xp(X_np))
    loose = KMeans(6, init="random", tol=10.0, random_state=0).fit(to_xp(X_np))
    assert loose.n_iter_ < strict.n_iter_
    # Scaling the data scales the variance: the same iterations stop.
    scaled = KMeans(6, init="random", tol=10.0, random_state=0).fit(to_xp(X_np * 100))
    assert scaled.n_iter_ == loose.n_iter_


# --- precision, dtypes, degenerate data ----------------------------------------


def test_float32_far_from_the_origin_keeps_its_precision(xp, to_xp):
    X_np, y = blobs(n_samples=600, n_features=2, n_centers=3, seed=7, std=0.5)
    init = np.stack([X_np[y == c][0] for c in range(3)])
    ref = KMeans(3, init=init).fit(X_np)
    offset = 1e6
    X32 = to_xp((X_np + offset).astype(np.float32), dtype=xp.float32)
    km = KMeans(3, init=to_xp((init + offset).astype(np.float32), dtype=xp.float32)).fit(X32)
    assert same_partition(km.labels_, ref.labels_)
    # float32 spacing at 1e6 is 0.0625: centres agree to that resolution.
    np.testing.assert_allclose(
        to_numpy(km.cluster_centers_).astype(np.float64) - offset, ref.cluster_centers_, atol=0.07
    )
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=2e-2)


def test_integer_and_bool_input_become_the_default_float(xp, to_xp):
    X_np = np.array([[0, 0], [0, 1], [10, 10], [10, 11]], dtype=np.int32)
    X = to_xp(X_np, dtype=xp.int32)
    km = KMeans(2, random_state=0).fit(X)
    info = xp.__array_namespace_info__()
    expected = info.default_dtypes(device=km.cluster_centers_.device)["real floating"]
    if "torch" in xp.__name__:
        import torch

        expected = torch.get_default_dtype()
    assert km.cluster_centers_.dtype == expected
    assert sorted(to_numpy(km.cluster_centers_).tolist()) == [[0.0, 0.5], [10.0, 10.5]]
    km_bool = KMeans(2, random_state=0).fit(to_xp(X_np > 5, dtype=xp.bool))
    assert km_bool.cluster_centers_.dtype == expected


def test_float16_accumulates_in_float32_and_returns_float16():
    torch = pytest.importorskip("torch")
    X_np, _ = blobs(n_samples=300, n_features=2, n_centers=3, seed=8)
    for X in (X_np.astype(np.float16), torch.asarray(X_np, dtype=torch.float16)):
        km = KMeans(3, random_state=0).fit(X)
        assert km.cluster_centers_.dtype == X.dtype
        ref = KMeans(3, random_state=0).fit(X_np.astype(np.float16).astype(np.float32))
        assert same_partition(km.labels_, ref.labels_)


def test_torch_tensors_that_need_grad_or_are_strided_fit_without_a_graph():
    # torch CPU fits run numpy code on views of the tensors: a tensor that
    # requires grad, or a transposed (strided) one, must still work, come
    # back as tensors without autograd history, and stay unmodified.
    torch = pytest.importorskip("torch")
    X_np, _ = blobs(n_samples=300, n_features=3, n_centers=3, seed=2)
    X = torch.asarray(np.ascontiguousarray(X_np.T)).T.requires_grad_(True)
    before = X.detach().clone()
    init = torch.asarray(X_np[[0, 100, 200]]).requires_grad_(True)
    km = KMeans(3, init=init, n_init=1).fit(X)
    ref = KMeans(3, init=X_np[[0, 100, 200]], n_init=1).fit(X_np)
    assert isinstance(km.cluster_centers_, torch.Tensor)
    assert not km.cluster_centers_.requires_grad and km.cluster_centers_.grad_fn is None
    assert km.labels_.dtype == torch.int64
    np.testing.assert_array_equal(km.labels_.numpy(), ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_.numpy(), ref.cluster_centers_, rtol=1e-12)
    assert torch.equal(X.detach(), before)


def test_the_input_array_is_never_modified(xp, to_xp):
    X_np, _ = blobs()
    X = to_xp(X_np)
    w = to_xp(np.linspace(0.5, 2.0, 600))
    init = to_xp(X_np[:4])
    before = [to_numpy(a).copy() for a in (X, w, init)]
    km = KMeans(4, init=init).fit(X, sample_weight=w)
    km.predict(X)
    km.transform(X)
    km.score(X, sample_weight=w)
    for original, a in zip(before, (X, w, init)):
        np.testing.assert_array_equal(to_numpy(a), original)


def test_all_identical_points_give_finite_centres_and_a_warning(xp, to_xp):
    X = to_xp(np.full((20, 3), 7.0))
    with pytest.warns(ConvergenceWarning, match="distinct clusters"):
        km = KMeans(3, random_state=0).fit(X)
    centers = to_numpy(km.cluster_centers_)
    np.testing.assert_array_equal(centers, np.full((3, 3), 7.0))
    assert km.inertia_ == 0.0


def test_as_many_clusters_as_points(xp, to_xp):
    X_np = np.random.default_rng(0).standard_normal((12, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        km = KMeans(12, random_state=0).fit(to_xp(X_np))
    assert km.inertia_ == pytest.approx(0.0, abs=1e-20)
    centers = to_numpy(km.cluster_centers_)
    np.testing.assert_allclose(centers[np.lexsort(centers.T)], X_np[np.lexsort(X_np.T)], rtol=1e-12)


def test_duplicate_points_cluster_together(xp, to_xp):
    X_np = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0], [9.0, 0.0]]), 10, axis=0)
    km = KMeans(3, random_state=0).fit(to_xp(X_np))
    assert same_partition(km.labels_, np.repeat([0, 1, 2], 10))
    assert km.inertia_ == pytest.approx(0.0, abs=1e-20)


def test_best_of_n_init_runs(xp, to_xp):
    X = to_xp(blobs(n_samples=400, n_centers=8, seed=9, std=2.0)[0])
    one = KMeans(8, init="random", n_init=1, random_state=11).fit(X)
    best = KMeans(8, init="random", n_init=6, random_state=11).fit(X)
    assert best.inertia_ <= one.inertia_


def test_sample_weight_integer_weights_equal_repeated_rows(xp, to_xp):
    X_np, _ = blobs(n_samples=200, n_centers=3, seed=10)
    counts = np.random.default_rng(1).integers(1, 4, size=200)
    init = X_np[:3]
    weighted = KMeans(3, init=to_xp(init)).fit(
        to_xp(X_np), sample_weight=to_xp(counts.astype(np.float64))
    )
    repeated = KMeans(3, init=to_xp(init)).fit(to_xp(np.repeat(X_np, counts, axis=0)))
    np.testing.assert_allclose(
        to_numpy(weighted.cluster_centers_), to_numpy(repeated.cluster_centers_), rtol=1e-10
    )
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-10)


# --- cosine (spherical) k-means ------------------------------------------------


def _spherical_kmeans_reference(X, init, max_iter=300):
    """Direct numpy spherical k-means: argmax of dot products, normalised means."""
    X = X / np.linalg.norm(X, axis=1, keepdims=True)
    centers = init / np.linalg.norm(init, axis=1, keepdims=True)
    labels = None
    for _ in range(max_iter):
        new_labels = np.argmax(X @ centers.T, axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        for j in range(centers.shape[0]):
            if np.any(labels == j):
                mean = X[labels == j].sum(axis=0)
                centers[j] = mean / np.linalg.norm(mean)
    inertia = np.sum(1.0 - np.sum(X * centers[labels], axis=1))
    return centers, labels, inertia


def test_cosine_matches_a_direct_spherical_kmeans(xp, to_xp):
    rng = np.random.default_rng(12)
    directions = rng.standard_normal((4, 8))
    y = rng.integers(0, 4, size=400)
    X_np = (directions[y] + 0.3 * rng.standard_normal((400, 8))) * rng.uniform(0.5, 5, (400, 1))
    init = X_np[:4]
    centers_ref, labels_ref, inertia_ref = _spherical_kmeans_reference(X_np, init.copy())

    X = to_xp(X_np)
    km = KMeans(4, init=to_xp(init), metric="cosine", tol=0).fit(X)
    assert_array_like(km.cluster_centers_, X)
    np.testing.assert_array_equal(to_numpy(km.labels_), labels_ref)
    np.testing.assert_allclose(to_numpy(km.cluster_centers_), centers_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(to_numpy(km.cluster_centers_), axis=1), 1.0)
    assert km.inertia_ == pytest.approx(inertia_ref, rel=1e-10)
    assert km.score(X) == pytest.approx(-inertia_ref, rel=1e-10)
    cosine_distances = to_numpy(km.transform(X))
    X_unit = X_np / np.linalg.norm(X_np, axis=1, keepdims=True)
    np.testing.assert_allclose(cosine_distances, 1 - X_unit @ centers_ref.T, atol=1e-10)
    np.testing.assert_array_equal(to_numpy(km.predict(X)), labels_ref)


def test_cosine_inertia_is_weighted(xp, to_xp):
    X_np = np.random.default_rng(13).standard_normal((100, 3))
    w_np = np.random.default_rng(14).uniform(0, 3, size=100)
    km = KMeans(3, metric="cosine", random_state=0).fit(to_xp(X_np), sample_weight=to_xp(w_np))
    X_unit = X_np / np.linalg.norm(X_np, axis=1, keepdims=True)
    similarity = np.sum(X_unit * to_numpy(km.cluster_centers_)[to_numpy(km.labels_)], axis=1)
    assert km.inertia_ == pytest.approx(np.sum(w_np * (1 - similarity)), rel=1e-10)


def test_cosine_rejects_zero_rows(xp, to_xp):
    X = to_xp(np.array([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="zero norm"):
        KMeans(2, metric="cosine").fit(X)


# --- scikit-learn API ------------------------------------------------------------


def test_get_set_params_and_repr():
    km = KMeans(3, init="random", random_state=1)
    params = km.get_params()
    assert params["n_clusters"] == 3 and params["init"] == "random"
    assert set(params) == {
        "n_clusters", "init", "n_init", "max_iter", "tol", "verbose", "random_state", "metric",
        "progress", "copy_x", "algorithm", "process_group", "device", "array_namespace",
        "device_block_bytes",
    }
    assert km.set_params(n_clusters=5) is km and km.n_clusters == 5
    assert repr(km) == "KMeans(init='random', n_clusters=5, random_state=1)"
    with pytest.raises(ValueError, match="Invalid parameter 'k'"):
        km.set_params(k=2)


def test_clone_grid_search_and_pipeline_with_sklearn():
    sklearn = pytest.importorskip("sklearn")
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = blobs(n_samples=200, n_centers=3)
    km = KMeans(3, random_state=0)
    cloned = clone(km)
    assert cloned is not km and cloned.get_params() == km.get_params()
    pipe = make_pipeline(StandardScaler(), KMeans(3, random_state=0)).fit(X)
    assert pipe.predict(X).shape == (200,)
    assert pipe.transform(X).shape == (200, 3)
    search = GridSearchCV(KMeans(random_state=0), {"n_clusters": [2, 3]}, cv=2).fit(X)
    assert search.best_params_["n_clusters"] in (2, 3)
    assert sklearn.base.is_clusterer(KMeans()) if hasattr(sklearn.base, "is_clusterer") else True


def test_verbose_prints_iterations(capsys):
    X, _ = blobs(n_samples=100, n_centers=2)
    KMeans(2, random_state=0, verbose=1).fit(X)
    out = capsys.readouterr().out
    assert "Iteration 0, inertia" in out and "Converged" in out


def test_refit_replaces_every_attribute():
    X1, _ = blobs(n_samples=100, n_features=2, n_centers=2, seed=1)
    X2, _ = blobs(n_samples=50, n_features=3, n_centers=2, seed=2)
    km = KMeans(2, random_state=0).fit(X1)
    old = copy.copy(km.__dict__)
    km.fit(X2)
    assert km.n_features_in_ == 3 and km.labels_.shape == (50,)
    assert km.cluster_centers_ is not old["cluster_centers_"]


class RecordingProgress:
    """A progress object that records every call it gets."""

    def __init__(self):
        self.calls = []

    def start_run(self, run, n_init, max_iter):
        self.calls.append(("start", run, n_init, max_iter))

    def iteration(self, i, inertia, center_shift):
        assert isinstance(inertia, float) and isinstance(center_shift, float)
        self.calls.append(("iteration", i, inertia, center_shift))

    def end_run(self, n_iter, converged):
        self.calls.append(("end", n_iter, converged))


def test_progress_hears_every_run_and_iteration(xp, to_xp):
    X, _ = blobs(n_samples=300, n_centers=3)
    progress = RecordingProgress()
    km = KMeans(3, init="random", n_init=2, random_state=0, progress=progress).fit(to_xp(X))
    starts = [c for c in progress.calls if c[0] == "start"]
    ends = [c for c in progress.calls if c[0] == "end"]
    assert [c[1:] for c in starts] == [(0, 2, 300), (1, 2, 300)]
    assert len(ends) == 2 and all(c[2] for c in ends)  # blobs converge
    # Iterations of each run are numbered from 0, as many as end_run says.
    runs, current = [], None
    for call in progress.calls:
        if call[0] == "start":
            current = []
        elif call[0] == "iteration":
            current.append(call)
        else:
            runs.append((current, call[1]))
    for iterations, n_iter in runs:
        assert [c[1] for c in iterations] == list(range(n_iter))
        assert all(c[2] >= 0 and c[3] >= 0 for c in iterations)
    # At strict convergence the last pass's labels are the fitted ones and
    # its centres their means: the best run's last inertia is inertia_.
    last = min(iterations[-1][2] for iterations, _ in runs)
    assert last == pytest.approx(km.inertia_, rel=1e-6)


def test_progress_false_and_k_means_progress():
    X, _ = blobs(n_samples=100, n_centers=2)
    a = KMeans(2, random_state=0, progress=False).fit(X)
    progress = RecordingProgress()
    centers, labels, inertia = k_means(X, 2, random_state=0, progress=progress)
    assert progress.calls[0] == ("start", 0, 1, 300) and progress.calls[-1][0] == "end"
    np.testing.assert_array_equal(labels, a.labels_)
    assert KMeans(2, progress=progress).get_params()["progress"] is progress


def test_verbose_prints_like_sklearn(capsys):
    X, _ = blobs(n_samples=100, n_centers=2)
    KMeans(2, random_state=0, verbose=1, tol=0).fit(X)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Initialization complete"
    iterations = [line for line in lines if line.startswith("Iteration ")]
    assert iterations[0].startswith("Iteration 0, inertia ") and iterations[0].endswith(".")
    assert lines[-1].startswith("Converged at iteration ") and "strict convergence" in lines[-1]


JAX_WITHOUT_X64 = """
import warnings
warnings.simplefilter("error")
import jax, jax.numpy as jnp, numpy as np
from kmeans_xp import KMeans
X = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
km = KMeans(4, random_state=0).fit(jnp.asarray(X))
ref = KMeans(4, random_state=0).fit(X)
assert km.cluster_centers_.dtype == jnp.float32, km.cluster_centers_.dtype
assert km.labels_.dtype == jnp.int32, km.labels_.dtype
assert np.array_equal(np.asarray(km.labels_), ref.labels_)
assert km.predict(jnp.asarray(X)).dtype == jnp.int32
# A float64 numpy model moves to JAX in the dtypes JAX has (no warning).
moved = KMeans(4, random_state=0).fit(X.astype(np.float64)).to_namespace(jnp)
assert moved.cluster_centers_.dtype == jnp.float32 and moved.labels_.dtype == jnp.int32
try:
    jax.jit(lambda X: KMeans(2).fit(X).cluster_centers_)(jnp.asarray(X))
except TypeError as exc:
    assert "jax.jit" in str(exc)
else:
    raise AssertionError("no error inside jit")
print("ok")
"""


def test_jax_without_x64_fits_in_float32_and_int32_and_refuses_jit():
    # x64 is a process-wide switch (on in this test session): a fresh process.
    import os
    import subprocess
    import sys

    pytest.importorskip("jax")
    env = dict(os.environ, JAX_ENABLE_X64="0", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", JAX_WITHOUT_X64], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
