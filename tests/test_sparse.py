"""Sparse kernels against the dense results: scipy.sparse CSR/CSC matrices
and arrays, torch sparse CSR tensors (on CPU here), and cupyx.scipy.sparse
CSR/CSC through its stand-in on scipy (``kmeans_xp._testing_sparse``, under
``simulated_gpu(cupy=True)``: the cupy-sim backend of conftest)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from kmeans_xp._sparse import is_sparse, iter_row_blocks, lloyd_pass, sparse_kernels
from kmeans_xp._testing import simulated_gpu, to_numpy

scipy_sparse = pytest.importorskip("scipy.sparse")

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")

CONTAINERS = [
    "csr_matrix",
    "csr_array",
    "csc_matrix",
    "csc_array",
    "torch_csr",
    "cupyx_csr_matrix",
    "cupyx_csc_matrix",
    "cupyx_csr_array",
]


def random_sparse(n_samples=300, n_features=40, density=0.1, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n_samples, n_features)) * (
        rng.random((n_samples, n_features)) < density
    )
    dense[7] = 0.0  # an empty row
    return dense.astype(dtype)


def make(container, dense):
    if container == "torch_csr":
        torch = pytest.importorskip("torch")
        return torch.asarray(dense).to_sparse_csr()
    if container.startswith("cupyx_"):
        import cupyx.scipy.sparse  # the stand-in, under the container fixture

        return getattr(cupyx.scipy.sparse, container.removeprefix("cupyx_"))(dense)
    return getattr(scipy_sparse, container)(dense)


def like(X, a):
    """Dense array ``a`` in the library of sparse X's dense arrays."""
    if type(X).__module__.startswith("torch"):
        import torch

        return torch.asarray(np.asarray(a))
    if type(X).__module__.startswith("cupyx"):
        import cupy

        return cupy.asarray(np.asarray(a))
    return np.asarray(a)


def host(a):
    """A dense array (numpy, torch or cupy) on the host, as numpy."""
    return to_numpy(a)


def dense_of(X):
    """Sparse X as a dense numpy array (cupyx through the host copy)."""
    if hasattr(X, "to_dense"):
        return host(X.to_dense())
    return (X.get() if type(X).__module__.startswith("cupyx") else X).toarray()


@pytest.fixture(params=CONTAINERS)
def container(request):
    """The sparse container; the cupyx ones hold the cupy-sim backend's
    simulation (numpy arrays stand for cupy ones) for the test."""
    if not request.param.startswith("cupyx_"):
        yield request.param
        return
    with simulated_gpu(torch=False, cupy=True):
        yield request.param


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def _random_csr(rng, n_samples, n_features, per_row):
    """A CSR matrix with ``per_row`` random columns (possibly repeated) a row."""
    indices = np.sort(
        rng.integers(0, n_features, (n_samples, per_row), dtype=np.int32), axis=1
    ).ravel()
    indptr = np.arange(0, n_samples * per_row + 1, per_row, dtype=np.int32)
    return scipy_sparse.csr_matrix(
        (rng.random(indices.size), indices, indptr), shape=(n_samples, n_features)
    )


def _dense_assign(dense, centers):
    d2 = ((dense[:, None, :] - centers[None]) ** 2).sum(axis=2)
    return d2.argmin(axis=1), d2.min(axis=1)


def test_is_sparse_and_unsupported_formats():
    dense = random_sparse()
    assert is_sparse(scipy_sparse.csr_matrix(dense)) and is_sparse(scipy_sparse.coo_array(dense))
    assert not is_sparse(dense)
    with pytest.raises(TypeError, match=r"X.tocsr\(\)"):
        sparse_kernels(scipy_sparse.coo_matrix(dense))
    torch = pytest.importorskip("torch")
    assert not is_sparse(torch.asarray(dense))
    with pytest.raises(TypeError, match="to_sparse_csr"):
        sparse_kernels(torch.asarray(dense).to_sparse())


def test_row_norms_assign_and_distances_equal_dense(container, dtype):
    dense = random_sparse(dtype=dtype)
    X = make(container, dense)
    kernels = sparse_kernels(X)
    centers = dense[[0, 50, 100, 150]] + 0.01
    rtol = 1e-4 if dtype == np.float32 else 1e-10
    norms = kernels.sq_row_norms(kernels.row_block(X, 0, X.shape[0]))
    np.testing.assert_allclose(
        host(norms), (dense.astype(np.float64) ** 2).sum(axis=1), rtol=rtol, atol=rtol
    )
    expected_labels, expected_d2 = _dense_assign(
        dense.astype(np.float64), centers.astype(np.float64)
    )
    c = like(X, centers)
    Xb = kernels.row_block(X, 0, X.shape[0])
    labels, partial = kernels.assign(Xb, c, (c * c).sum(1))
    np.testing.assert_array_equal(host(labels), expected_labels)
    np.testing.assert_allclose(host(partial) + host(norms), expected_d2, rtol=rtol, atol=10 * rtol)
    to_labelled = kernels.sq_distances_to(Xb, c, labels)
    np.testing.assert_allclose(host(to_labelled), expected_d2, rtol=rtol, atol=10 * rtol)
    # k-means++: distances of every row to a few candidate rows.
    candidates = kernels.dense_rows(X, [3, 9])
    np.testing.assert_allclose(host(candidates), dense[[3, 9]])
    d2 = kernels.sq_distances(Xb, norms, candidates)
    expected = ((dense[:, None, :].astype(np.float64) - dense[None, [3, 9]]) ** 2).sum(axis=2)
    np.testing.assert_allclose(host(d2), expected, rtol=rtol, atol=10 * rtol)


@pytest.mark.parametrize("weighted", [False, True])
def test_accumulate_equals_dense_sums(container, weighted):
    dense = random_sparse()
    X = make(container, dense)
    kernels = sparse_kernels(X)
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 5, dense.shape[0])
    weights = rng.random(dense.shape[0]) if weighted else None
    w = np.ones(dense.shape[0]) if weights is None else weights
    expected_sums = np.stack(
        [(w[labels == j, None] * dense[labels == j]).sum(axis=0) for j in range(5)]
    )
    expected_counts = np.array([w[labels == j].sum() for j in range(5)])
    Xb = kernels.row_block(X, 0, X.shape[0])
    sums, counts = kernels.cluster_sums(
        Xb, like(X, labels), None if weights is None else like(X, weights), 5
    )
    np.testing.assert_allclose(host(sums), expected_sums, atol=1e-12)
    np.testing.assert_allclose(host(counts), expected_counts, atol=1e-12)
    # Accumulating a second time adds to the running sums.
    kernels.accumulate(
        Xb, like(X, labels), None if weights is None else like(X, weights), sums, counts
    )
    np.testing.assert_allclose(host(sums), 2 * expected_sums, atol=1e-12)
    np.testing.assert_allclose(host(counts), 2 * expected_counts, atol=1e-12)


def test_row_blocks_are_views_of_csr_nonzeros(container):
    dense = random_sparse()
    X = make(container, dense)
    blocks = list(iter_row_blocks(X, 64))
    assert [(a, b) for a, b, _ in blocks][-1] == (256, 300)
    for start, stop, block in blocks:
        np.testing.assert_array_equal(dense_of(block), dense[start:stop])
    if "csr" in container and container != "torch_csr":
        assert np.shares_memory(blocks[1][2].data, X.data)
    if container == "torch_csr":
        assert (
            blocks[1][2].values().untyped_storage().data_ptr()
            == X.values().untyped_storage().data_ptr()
        )


def test_lloyd_with_sparse_blocks_equals_the_dense_fit(container):
    """Lloyd driven by the sparse kernels over several blocks reaches the
    same labels and centres as kmeans_xp's dense fit from the same init."""
    from kmeans_xp import KMeans

    dense = random_sparse(n_samples=400, n_features=30, density=0.2, seed=3)
    weights = np.random.default_rng(2).random(dense.shape[0]) + 0.5
    X = make(container, dense)
    init = dense[[1, 2, 3, 4, 5]].copy()
    centers = like(X, init)
    w = like(X, weights)
    for _ in range(100):
        labels, sums, counts, inertia = lloyd_pass(X, centers, w, rows=96)
        new_centers = sums / counts[:, None]
        if float(((new_centers - centers) ** 2).sum()) == 0:
            break
        centers = new_centers
    reference = KMeans(n_clusters=5, init=init, n_init=1, tol=0, max_iter=100).fit(
        dense, sample_weight=weights
    )
    np.testing.assert_array_equal(host(labels), reference.labels_)
    np.testing.assert_allclose(host(centers), reference.cluster_centers_, atol=1e-10)
    assert inertia == pytest.approx(reference.inertia_, rel=1e-10)


def test_input_is_not_modified(container):
    dense = random_sparse()
    X = make(container, dense)
    lloyd_pass(X, like(X, dense[:3] + 1), rows=50)
    np.testing.assert_array_equal(dense_of(X), dense)


def test_working_memory_below_twice_the_nonzeros():
    """A pass over a 20k x 5k CSR at 0.1% density allocates (tracemalloc
    peak) less than twice the matrix's own storage."""
    n_samples, n_features, per_row = 20_000, 5_000, 5
    rng = np.random.default_rng(0)
    X = _random_csr(rng, n_samples, n_features, per_row)
    storage = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    centers = X[:16].toarray() + 0.01
    tracemalloc.start()
    try:
        lloyd_pass(X, centers)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * storage, (peak, storage)


# -- the estimators on sparse input -------------------------------------------


def test_kmeans_on_sparse_equals_the_dense_fit(container):
    """Same initial centres: the same centres, labels, inertia and
    iterations as the dense fit; predict, transform and score agree; the
    centres are dense arrays of the sparse data's library."""
    from kmeans_xp import KMeans

    dense = random_sparse(n_samples=400, density=0.2)
    X = make(container, dense)
    init = dense[[0, 50, 100, 150, 200]]
    weights = np.random.default_rng(1).random(dense.shape[0])
    ours = KMeans(5, init=like(X, init), n_init=1).fit(X, sample_weight=like(X, weights))
    ref = KMeans(5, init=init, n_init=1).fit(dense, sample_weight=weights)
    assert type(ours.cluster_centers_) is type(like(X, init))
    np.testing.assert_allclose(host(ours.cluster_centers_), ref.cluster_centers_, atol=1e-12)
    np.testing.assert_array_equal(host(ours.labels_), ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    assert ours.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(host(ours.predict(X)), ref.predict(dense))
    np.testing.assert_allclose(host(ours.transform(X)), ref.transform(dense), atol=1e-10)
    assert ours.score(X) == pytest.approx(ref.score(dense), rel=1e-10)


def test_kmeans_plusplus_on_sparse_picks_the_dense_rows(container):
    from kmeans_xp import KMeans, kmeans_plusplus

    dense = random_sparse(density=0.3)
    X = make(container, dense)
    centers, indices = kmeans_plusplus(X, 6, random_state=3)
    ref_centers, ref_indices = kmeans_plusplus(dense, 6, random_state=3)
    np.testing.assert_array_equal(host(indices), ref_indices)
    np.testing.assert_array_equal(host(centers), ref_centers)
    # The seeded default fit (k-means++, then Lloyd) matches too.
    ours, ref = KMeans(4, random_state=0).fit(X), KMeans(4, random_state=0).fit(dense)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)


def test_minibatch_on_sparse_equals_the_dense_fit(container):
    from kmeans_xp import MiniBatchKMeans

    dense = random_sparse(n_samples=1000, density=0.2)
    X = make(container, dense)
    params = dict(n_clusters=4, batch_size=64, random_state=0, max_iter=5)
    ours, ref = MiniBatchKMeans(**params).fit(X), MiniBatchKMeans(**params).fit(dense)
    np.testing.assert_allclose(host(ours.cluster_centers_), ref.cluster_centers_, atol=1e-12)
    np.testing.assert_array_equal(host(ours.labels_), ref.labels_)
    assert ours.n_steps_ == ref.n_steps_
    stream, ref_stream = MiniBatchKMeans(**params), MiniBatchKMeans(**params)
    for start in range(0, 1000, 250):
        stream.partial_fit(make(container, dense[start : start + 250]))
        ref_stream.partial_fit(dense[start : start + 250])
    np.testing.assert_allclose(
        host(stream.cluster_centers_), ref_stream.cluster_centers_, atol=1e-12
    )


def test_bisecting_on_sparse_equals_the_dense_fit(container):
    from kmeans_xp import BisectingKMeans

    dense = random_sparse(n_samples=400, density=0.2)
    X = make(container, dense)
    ours, ref = (
        BisectingKMeans(5, random_state=0).fit(X),
        BisectingKMeans(5, random_state=0).fit(dense),
    )
    np.testing.assert_allclose(host(ours.cluster_centers_), ref.cluster_centers_, atol=1e-12)
    np.testing.assert_array_equal(host(ours.labels_), ref.labels_)
    np.testing.assert_array_equal(host(ours.predict(X)), ref.predict(dense))
    np.testing.assert_allclose(host(ours.transform(X)), ref.transform(dense), atol=1e-10)


@pytest.mark.parametrize("fmt", ["coo", "dok", "lil"])
def test_unsupported_scipy_formats_say_to_convert(fmt):
    from kmeans_xp import KMeans

    X = scipy_sparse.random(20, 5, density=0.5, format=fmt, random_state=0)
    with pytest.raises(TypeError, match=r"format is not supported; convert it with X\.tocsr\(\)"):
        KMeans(2).fit(X)


def test_sparse_validation_errors():
    from kmeans_xp import KMeans

    X = scipy_sparse.random(20, 5, density=0.5, format="csr", random_state=0)
    bad = X.copy()
    bad.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(2).fit(bad)
    with pytest.raises(ValueError, match="cosine"):
        KMeans(2, metric="cosine").fit(X)
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"to_sparse_csr\(\)"):
        KMeans(2).fit(torch.asarray(X.toarray()).to_sparse())
    # Integer data become float64, as dense integer data do.
    ints = scipy_sparse.csr_matrix(np.arange(40).reshape(20, 2) % 7)
    assert KMeans(2, random_state=0).fit(ints).cluster_centers_.dtype == np.float64


def test_sparse_input_is_not_modified_by_fits():
    """CSC input (converted to CSR on a copy) and non-canonical CSR (summed
    on a copy) come back unchanged; the fit equals the dense one."""
    from kmeans_xp import KMeans

    dense = random_sparse(density=0.3)
    csc = scipy_sparse.csc_matrix(dense)
    before = csc.data.copy()
    KMeans(3, random_state=0).fit(csc)
    np.testing.assert_array_equal(csc.data, before)
    assert csc.format == "csc"
    # The same entry stored twice: 1 + 2 at (0, 0).
    dup = scipy_sparse.csr_matrix(
        (np.array([1.0, 2.0, 5.0]), np.array([0, 0, 1]), np.array([0, 2, 3, 3])), shape=(3, 2)
    )
    ref_dense = dup.toarray()
    ours = KMeans(2, init=ref_dense[:2], n_init=1).fit(dup)
    ref = KMeans(2, init=ref_dense[:2], n_init=1).fit(ref_dense)
    assert dup.nnz == 3 and not dup.has_canonical_format
    assert ours.inertia_ == pytest.approx(ref.inertia_)


def test_kmeans_fit_working_memory_below_twice_the_nonzeros():
    """A whole KMeans fit (k-means++ and Lloyd) on a 40k x 20k CSR at 0.1%
    density allocates (tracemalloc peak) less than twice the matrix's own
    storage: no densified copy, no mean shift."""
    from kmeans_xp import KMeans

    n_samples, n_features, per_row = 40_000, 20_000, 20
    rng = np.random.default_rng(0)
    X = _random_csr(rng, n_samples, n_features, per_row)
    X.sum_duplicates()  # canonical, as a TF-IDF matrix is: no copy in the fit
    storage = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    tracemalloc.start()
    try:
        KMeans(8, n_init=1, max_iter=3, random_state=0).fit(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * storage, (peak, storage)


@pytest.mark.parametrize("n_clusters", [32, 64, 128])
def test_fit_working_memory_at_larger_k(n_clusters):
    """benchmarks/run.py's sparse row at a fifth of its size: a 20k x 10k
    CSR with 50 stored values a row, where a dense (k x d) array takes the
    same share of the nonzeros' storage as at 100k x 50k (0.21, 0.42 and
    0.85 of it at k = 32, 64, 128). From given centres, as the benchmark
    fits, the working memory (tracemalloc peak) stays below twice the
    storage at k = 32 and 64. At k = 128 four dense (k x d) arrays at the
    M-step (the validated initial centres, the centres, the sums, the new
    centres) already take 3.4 x the storage: there the bound is those four
    and half the storage for the rest (blocks, slices, labels)."""
    from kmeans_xp import KMeans

    n_samples, n_features, per_row = 20_000, 10_000, 50
    rng = np.random.default_rng(0)
    X = _random_csr(rng, n_samples, n_features, per_row)
    X.sum_duplicates()
    storage = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    init = X[rng.choice(n_samples, n_clusters, replace=False)].toarray()
    tracemalloc.start()
    try:
        KMeans(n_clusters, init=init, n_init=1, max_iter=3, tol=0).fit(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    centers_bytes = init.nbytes
    bound = 2 * storage if n_clusters <= 64 else 4 * centers_bytes + storage // 2
    assert peak < bound, (peak / storage, centers_bytes / storage)


def test_readme_tfidf_example(capsys):
    """The README's TF-IDF example runs and prints what it says."""
    pytest.importorskip("sklearn")
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"<!-- tfidf-example -->\n```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(code, "README.md:tfidf-example", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out.split("\n")[:3] == ["ndarray", "1.0", "[ True]"]


# -- cupyx.scipy.sparse through its stand-in ----------------------------------


def test_cupyx_stand_in_is_installed_only_in_the_simulation_and_acts_as_cupyx():
    """The stand-in classes pass for cupyx's (module, names, ``get``) and
    refuse what cupyx refuses, so code that runs on them does not lean on
    scipy behaviour that cupyx lacks."""
    import sys

    dense = random_sparse()
    with simulated_gpu(torch=False, cupy=True):
        import cupy
        import cupyx.scipy.sparse as cs

        X = cs.csr_matrix(dense)
        assert type(X).__module__.startswith("cupyx.scipy.sparse") and is_sparse(X)
        host_copy = X.get()
        assert type(host_copy) is scipy_sparse.csr_matrix
        np.testing.assert_array_equal(host_copy.toarray(), dense)
        assert type(X.sum(axis=1)) is np.ndarray  # cupy arrays, never numpy.matrix
        assert type(cs.csr_array(dense).get()) is scipy_sparse.csr_array
        with pytest.raises(ValueError, match="float32, float64"):
            cs.csr_matrix(np.arange(6).reshape(2, 3))  # cupyx has no integer data
        with pytest.raises(ValueError, match="cupy arrays"):
            cs.csr_matrix(([1.0], [0], [0, 1]), shape=(1, 1))
        with pytest.raises(ValueError, match="repeats"):
            cupy.repeat(cupy.arange(3), cupy.asarray([1, 2, 0]))  # CuPy < 14.1
        with pytest.raises(TypeError, match="ambiguous"):
            len(X)
    assert "cupyx.scipy.sparse" not in sys.modules


def test_cupyx_fit_keeps_the_data_sparse():
    """A KMeans fit on cupyx CSR (stand-in) allocates far less than a dense
    copy of X would take, and its centres, labels and distances are dense
    cupy arrays (numpy arrays stand for them in the simulation)."""
    from kmeans_xp import KMeans

    n_samples, n_features, per_row = 4000, 2000, 10
    rng = np.random.default_rng(0)
    indices = np.sort(rng.choice(n_features, (n_samples, per_row)), axis=1).ravel()
    host_X = scipy_sparse.csr_matrix(
        (rng.random(indices.size), indices, np.arange(0, indices.size + 1, per_row)),
        shape=(n_samples, n_features),
    )
    host_X.sum_duplicates()
    dense_bytes = n_samples * n_features * 8
    init = host_X[:8].toarray()
    with simulated_gpu(torch=False, cupy=True):
        import cupyx.scipy.sparse as cs

        X = cs.csr_matrix(host_X)
        tracemalloc.start()
        try:
            km = KMeans(8, init=init, n_init=1, max_iter=5).fit(X)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < dense_bytes / 20, (peak, dense_bytes)
        assert type(km.cluster_centers_) is np.ndarray and km.cluster_centers_.shape == (
            8,
            n_features,
        )
        assert type(km.transform(X)) is np.ndarray
    ref = KMeans(8, init=init, n_init=1, max_iter=5).fit(host_X.toarray())
    np.testing.assert_array_equal(km.labels_, ref.labels_)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, atol=1e-12)
