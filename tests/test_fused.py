"""The fused numba kernel (kmeans_xp._kernels.numba) against the numpy kernels, and
the numpy-only fallback when numba is missing or disabled.

numpy only: the fused kernel serves numpy arrays (and torch CPU tensors
through numpy views). Tests that run numba importorskip it.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import array_api_compat.numpy as np_xp
import numpy as np
import pytest

import kmeans_xp
from kmeans_xp import KMeans
from kmeans_xp._kernels import get_kernels
from kmeans_xp._kernels import numba as _fused
from kmeans_xp._kernels.numpy import NumpyKernels
from kmeans_xp._testing import fused_kernels


def _numba():
    pytest.importorskip("numba")


def _data(n, d, k, dtype, seed=0, offset=0.0):
    rng = np.random.default_rng(seed)
    X = (rng.standard_normal((n, d)) + offset).astype(dtype)
    centers = X[rng.choice(n, size=k, replace=False)].copy() if k <= n else (
        rng.standard_normal((k, d)).astype(dtype)
    )
    return X, centers


def _reference(X, centers, weights=None):
    """The numpy kernels' labels and partials, and float64 segment sums."""
    csq = np.einsum("ij,ij->i", centers, centers)
    labels, partial = NumpyKernels(np_xp).assign(X, centers, csq)
    k, d = centers.shape
    w = np.ones(X.shape[0]) if weights is None else weights.astype(np.float64)
    sums = np.zeros((k, d))
    np.add.at(sums, labels, w[:, None] * X.astype(np.float64))
    counts = np.bincount(labels, weights=w, minlength=k)
    d2 = ((X.astype(np.float64) - centers[labels].astype(np.float64)) ** 2).sum(axis=1)
    return labels, partial, sums, counts, float(np.sum(w * d2))


# (n, d, k): k=1 and k=2, fewer rows than a tile (4) and than a chunk, a
# row count that is no multiple of 4, k not a multiple of 8 and above 8,
# enough rows for the parallel path (4096).
SHAPES = [(1, 3, 1), (3, 2, 2), (7, 4, 3), (1003, 5, 1), (1003, 5, 2), (2000, 7, 13),
          (5001, 16, 8), (4099, 3, 40)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_assign_matches_numpy_float64(shape, parallel):
    _numba()
    n, d, k = shape
    X, centers = _data(n, d, k, np.float64)
    X_before = X.copy()
    ref_labels, ref_partial, *_ = _reference(X, centers)
    labels = np.empty(n, dtype=np.int32)
    partial = np.empty(n, dtype=np.float64)
    csq = np.einsum("ij,ij->i", centers, centers)
    _fused.assign_labels(X, centers, csq, labels, partial, parallel=parallel)
    np.testing.assert_array_equal(labels, ref_labels)
    scale = 1 + np.abs(ref_partial).max()
    np.testing.assert_allclose(partial, ref_partial, rtol=0, atol=1e-10 * scale)
    np.testing.assert_array_equal(X, X_before)


@pytest.mark.parametrize("shape", [(1003, 5, 2), (5001, 16, 8), (4099, 32, 64)],
                         ids=lambda s: "x".join(map(str, s)))
def test_assign_float32_close_to_float64(shape):
    _numba()
    n, d, k = shape
    X, centers = _data(n, d, k, np.float32)
    csq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(n, dtype=np.int32)
    partial = np.empty(n, dtype=np.float32)
    _fused.assign_labels(X, centers, csq, labels, partial)
    assert partial.dtype == np.float32
    # Exact float64 distances: the fused label's is the lowest, up to
    # float32 round-off (near-ties may go either way, as in numpy's).
    d2 = ((X[:, None, :].astype(np.float64) - centers[None].astype(np.float64)) ** 2).sum(-1)
    chosen = d2[np.arange(n), labels]
    np.testing.assert_allclose(chosen, d2.min(axis=1), rtol=1e-4, atol=1e-3)
    ref_labels, ref_partial, *_ = _reference(X, centers)
    assert np.mean(labels == ref_labels) > 0.999
    np.testing.assert_allclose(partial, ref_partial, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("k", [3, 9, 17, 40])
def test_ties_go_to_the_first_centre(k):
    _numba()
    X, centers = _data(600, 4, k, np.float64)
    # The last centre repeats the first: across a tile of 8 for k=9 and 17.
    centers[-1] = centers[0]
    csq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(600, dtype=np.int32)
    _fused.assign_labels(X, centers, csq, labels)
    assert not np.any(labels == k - 1)
    assert np.any(labels == 0)
    np.testing.assert_array_equal(labels, _reference(X, centers)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ties_within_a_row_group_tile_go_to_the_first_centre(dtype):
    # The row groups (k >= 32) keep a minimum per lane: a centre repeated
    # in another lane of the same tile of 16, and in the next tile, never
    # wins over the first.
    _numba()
    X, centers = _data(600, 5, 40, dtype, seed=3)
    centers[20] = centers[18]
    centers[39] = centers[18]
    csq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(600, dtype=np.int32)
    _fused.assign_labels(X, centers, csq, labels)
    assert not np.any((labels == 20) | (labels == 39))
    assert np.any(labels == 18)


@pytest.mark.parametrize("k", [10, 40])
def test_all_centres_equal_give_label_zero(k):
    _numba()
    X, _ = _data(50, 3, 1, np.float64)
    centers = np.repeat(X[:1], k, axis=0)
    labels = np.empty(50, dtype=np.int32)
    _fused.assign_labels(X, centers, np.einsum("ij,ij->i", centers, centers), labels)
    np.testing.assert_array_equal(labels, 0)


@pytest.mark.parametrize("order", ["fortran", "strided"])
def test_non_contiguous_input(order):
    _numba()
    X, centers = _data(2001, 12, 5, np.float64)
    Xn = np.asfortranarray(X) if order == "fortran" else np.repeat(X, 2, axis=1)[:, ::2]
    assert not Xn.flags.c_contiguous
    csq = np.einsum("ij,ij->i", centers, centers)
    labels = np.empty(2001, dtype=np.int32)
    _fused.assign_labels(Xn, centers, csq, labels)
    np.testing.assert_array_equal(labels, _reference(X, centers)[0])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("weighted", [False, True], ids=["unit", "weighted"])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_lloyd_block_stats_match_numpy_float64(shape, weighted, parallel):
    _numba()
    n, d, k = shape
    X, centers = _data(n, d, k, np.float64)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, n) if weighted else None
    ref_labels, _, ref_sums, ref_counts, ref_inertia = _reference(X, centers, weights)
    csq = np.einsum("ij,ij->i", centers, centers)
    sums = np.zeros((k, d))
    counts = np.zeros(k)
    old = np.random.default_rng(2).integers(0, k, n).astype(np.int32)
    labels = old.copy()
    inertia, n_changed = _fused.lloyd_block_stats(
        X, centers, csq, weights, sums, counts, labels, parallel=parallel
    )
    np.testing.assert_array_equal(labels, ref_labels)
    assert n_changed == int(np.sum(old != ref_labels))
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(counts, ref_counts, rtol=1e-10, atol=0)
    assert inertia == pytest.approx(ref_inertia, rel=1e-10, abs=1e-10)


def test_lloyd_block_stats_adds_into_accumulators():
    _numba()
    X, centers = _data(3000, 6, 5, np.float64)
    csq = np.einsum("ij,ij->i", centers, centers)
    sums = np.full((5, 6), 2.0)
    counts = np.full(5, 3.0)
    labels = np.zeros(3000, dtype=np.int32)
    _, _ = _fused.lloyd_block_stats(X, centers, csq, None, sums, counts, labels,
                                    want_inertia=False)
    _, _, ref_sums, ref_counts, _ = _reference(X, centers)
    np.testing.assert_allclose(sums, ref_sums + 2.0, rtol=1e-10)
    np.testing.assert_allclose(counts, ref_counts + 3.0, rtol=1e-12)


def test_lloyd_block_stats_float32_sums_in_float64():
    _numba()
    X, centers = _data(5001, 16, 8, np.float32)
    csq = np.einsum("ij,ij->i", centers, centers)
    sums, counts = np.zeros((8, 16)), np.zeros(8)
    labels = np.zeros(5001, dtype=np.int32)
    _fused.lloyd_block_stats(X, centers, csq, None, sums, counts, labels)
    # Sums of the float32 rows in float64: exact up to float64 round-off.
    expect = np.zeros((8, 16))
    np.add.at(expect, labels, X.astype(np.float64))
    np.testing.assert_allclose(sums, expect, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=8))


@pytest.mark.parametrize(("dtype", "k", "variant"), [
    (np.float32, 3, "lanes8"), (np.float32, 8, "lanes8"), (np.float32, 9, "tiles16"),
    (np.float64, 8, "tiles8"), (np.float64, 13, "tiles16"), (np.float32, 16, "tiles16"),
    (np.float32, 17, "rows16"), (np.float32, 40, "rows16"), (np.float64, 33, "rows16"),
])
@pytest.mark.parametrize("parallel", [False, True])
def test_each_kernel_variant_matches_numpy(dtype, k, variant, parallel):
    # A fit compiles only the block kernel its centres and dtype take: each
    # one, serial and over numba's threads, labels and sums as numpy does.
    _numba()
    assert _fused.kernel_variant(np.dtype(dtype), _fused.prepare_centers(
        np.zeros((k, 3), dtype=dtype), np.zeros(k, dtype=dtype))[0].shape[1]) == variant
    X, centers = _data(5003, 6, k, dtype)  # over _PARALLEL_MIN_ROWS, a ragged tail
    csq = np.einsum("ij,ij->i", centers, centers)
    ref_labels, _, ref_sums, ref_counts, _ = _reference(X, centers)
    labels, _ = _fused.assign_labels(X, centers, csq, np.empty(5003, dtype=np.int32),
                                     parallel=parallel)
    step_labels = np.zeros(5003, dtype=np.int32)
    sums, counts = np.zeros((k, 6)), np.zeros(k)
    _fused.lloyd_block_stats(X, centers, csq, None, sums, counts, step_labels,
                             parallel=parallel)
    np.testing.assert_array_equal(step_labels, labels)
    if dtype == np.float64:
        np.testing.assert_array_equal(labels, ref_labels)
        np.testing.assert_allclose(sums, ref_sums, rtol=1e-10, atol=1e-10)
    else:
        assert np.mean(labels == ref_labels) > 0.999
    expect = np.zeros((k, 6))
    np.add.at(expect, labels, X.astype(np.float64))
    np.testing.assert_allclose(sums, expect, rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=k))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("d", [1, 7, 16, 19])
@pytest.mark.parametrize("k", [3, 8, 13, 40])
def test_a_rows_result_does_not_depend_on_where_it_sits(dtype, d, k):
    # Rows shifted by 1, 5 and 13 land in other lanes, tiles or leftover
    # rows: the same labels and partial scores, bit for bit.
    _numba()
    X, centers = _data(1000, d, k, dtype, seed=d + k)
    csq = np.einsum("ij,ij->i", centers, centers)
    labels, partial = np.empty(1000, np.int32), np.empty(1000, dtype)
    _fused.assign_labels(X, centers, csq, labels, partial, parallel=False)
    for shift in (1, 5, 13):
        shifted = np.empty(1000 - shift, np.int32), np.empty(1000 - shift, dtype)
        _fused.assign_labels(X[shift:], centers, csq, *shifted, parallel=False)
        np.testing.assert_array_equal(shifted[0], labels[shift:])
        np.testing.assert_array_equal(shifted[1], partial[shift:])


def test_kernels_class_assign_matches_numpy_kernels():
    _numba()
    X, centers = _data(3001, 10, 20, np.float64)
    csq = np.einsum("ij,ij->i", centers, centers)
    labels, partial = _fused.FusedNumpyKernels(np_xp).assign(X, centers, csq)
    ref_labels, ref_partial = NumpyKernels(np_xp).assign(X, centers, csq)
    assert labels.dtype == ref_labels.dtype
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(partial, ref_partial, rtol=1e-10, atol=1e-10)


def _fit(X, centers, *, fused, max_iter=30, tol=0.0, sample_weight=None):
    model = KMeans(centers.shape[0], init=centers, n_init=1, max_iter=max_iter, tol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with fused_kernels(fused):
            expected = _fused.FusedNumpyKernels if fused else NumpyKernels
            assert type(get_kernels(np_xp, "cpu")) is expected
            return model.fit(X, sample_weight=sample_weight)


# Whole fits: (n, d, k, offset). One block (the latency path), several
# blocks, data far from the origin (shifted blocks on the runner's threads),
# and k=300 where the rule keeps BLAS.
FITS = [(1000, 2, 3, 0.0), (60_000, 16, 8, 0.0), (20_000, 8, 12, 50.0), (5000, 4, 300, 0.0)]


@pytest.mark.parametrize("case", FITS, ids=lambda c: "x".join(map(str, c)))
def test_whole_fit_matches_numpy_path_float64(case):
    _numba()
    n, d, k, offset = case
    X, centers = _data(n, d, k, np.float64, offset=offset)
    X_before = X.copy()
    ref = _fit(X, centers, fused=False)
    got = _fit(X, centers, fused=True)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(got.cluster_centers_, ref.cluster_centers_, rtol=1e-10,
                               atol=1e-10)
    assert got.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    np.testing.assert_array_equal(X, X_before)


@pytest.mark.parametrize("weighted", [False, True])
def test_running_sums_moved_in_the_kernel_match_numpy_moves(monkeypatch, weighted):
    # Once few rows change cluster, Lloyd keeps running sums: the fused
    # kernel moves the changed rows itself (fused_moves) or leaves them to
    # numpy's ``move``; the same fit either way, and passes of both kinds ran.
    _numba()
    import kmeans_xp._lloyd

    X, centers = _data(60_000, 16, 8, np.float64)
    w = np.random.default_rng(4).uniform(0.5, 2.0, X.shape[0]) if weighted else None
    incremental = []
    real_pass = kmeans_xp._lloyd._lloyd_pass_into

    def logged_pass(problem, centers, **kwargs):
        incremental.append(kwargs.get("previous_sums") is not None)
        return real_pass(problem, centers, **kwargs)

    monkeypatch.setattr(kmeans_xp._lloyd, "_lloyd_pass_into", logged_pass)
    fits = {}
    for in_kernel in (True, False):
        monkeypatch.setattr(_fused.FusedNumpyKernels, "fused_moves", in_kernel)
        fits[in_kernel] = _fit(X, centers, fused=True, sample_weight=w)
    assert any(incremental) and not all(incremental)
    np.testing.assert_array_equal(fits[True].labels_, fits[False].labels_)
    np.testing.assert_allclose(fits[True].cluster_centers_, fits[False].cluster_centers_,
                               rtol=1e-10, atol=1e-10)
    assert fits[True].inertia_ == pytest.approx(fits[False].inertia_, rel=1e-10)


def test_whole_fit_weighted_float64():
    _numba()
    X, centers = _data(30_000, 6, 10, np.float64)
    w = np.random.default_rng(3).uniform(0.1, 3.0, X.shape[0])
    ref = _fit(X, centers, fused=False, sample_weight=w)
    got = _fit(X, centers, fused=True, sample_weight=w)
    np.testing.assert_array_equal(got.labels_, ref.labels_)
    np.testing.assert_allclose(got.cluster_centers_, ref.cluster_centers_, rtol=1e-10,
                               atol=1e-10)
    assert got.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)


def test_whole_fit_float32_close():
    _numba()
    X, centers = _data(50_000, 16, 8, np.float32)
    ref = _fit(X, centers, fused=False, max_iter=10)
    got = _fit(X, centers, fused=True, max_iter=10)
    assert got.cluster_centers_.dtype == np.float32
    assert np.mean(got.labels_ == ref.labels_) > 0.999
    np.testing.assert_allclose(got.cluster_centers_, ref.cluster_centers_, rtol=1e-4,
                               atol=1e-4)
    assert got.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)


def test_fused_step_only_where_the_rule_says():
    _numba()
    with fused_kernels(True):
        kernels = get_kernels(np_xp, "cpu")
    few, _ = _data(100, 32, 64, np.float64)
    many = np.random.default_rng(1).standard_normal((1024, 128))
    sq = kernels.sq_row_norms
    assert kernels.fused_step(few, sq(few), want_inertia=False) is not None
    assert kernels.fused_step(many, sq(many), want_inertia=False) is None
    with fused_kernels(False):
        plain = get_kernels(np_xp, "cpu")
    assert plain.fused_step(few, sq(few), want_inertia=False) is None


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("compact", [False, True])
def test_fused_step_is_assign_then_accumulate(weighted, compact):
    # The step Lloyd runs per block: the numpy kernels' labels, float64
    # sums added into the accumulators, inertia and changed labels.
    _numba()
    X, centers = _data(2001, 5, 11, np.float64)
    w = np.random.default_rng(2).uniform(0.5, 2.0, X.shape[0]) if weighted else None
    kernels = _fused.FusedNumpyKernels(np_xp)
    csq = kernels.sq_row_norms(centers)
    previous = np.random.default_rng(3).integers(0, 11, X.shape[0]).astype(np.uint8)
    sums, counts = np.ones((11, 5)), np.ones(11)
    step = kernels.fused_step(centers, csq, want_inertia=True, compact=compact)
    labels, got_sums, got_counts, inertia, changed = step(X, w, previous, sums, counts)
    ref_labels, _, ref_sums, ref_counts, ref_inertia = _reference(X, centers, w)
    np.testing.assert_array_equal(labels, ref_labels)
    assert labels.dtype == (np.uint8 if compact else np.intp)
    assert got_sums is sums and got_counts is counts  # added in place
    np.testing.assert_allclose(sums, ref_sums + 1, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(counts, ref_counts + 1, rtol=1e-12)
    assert inertia == pytest.approx(ref_inertia, rel=1e-10)
    assert changed == np.count_nonzero(ref_labels != previous)
    assert kernels.sum_dtype(np.float32) == np.float64


@pytest.mark.parametrize("moves_only", [False, True])
def test_fused_step_writes_labels_into_out_and_leaves_previous(moves_only):
    # Lloyd hands each block its rows of the pass's label array: the labels
    # land there, the previous labels (the last pass's result) stay as
    # they were, and the changes are counted against them.
    _numba()
    X, centers = _data(1500, 6, 9, np.float64)
    kernels = _fused.FusedNumpyKernels(np_xp)
    csq = kernels.sq_row_norms(centers)
    ref_labels, _, ref_sums, ref_counts, _ = _reference(X, centers, None)
    previous = ref_labels.astype(np.int32)
    previous[::7] = (previous[::7] + 1) % 9
    kept = previous.copy()
    # Running sums of ``previous`` for the moves; zeros when summing afresh.
    if moves_only:
        sums, counts = kernels.cluster_sums(X, previous, None, 9)
    else:
        sums, counts = np.zeros((9, 6)), np.zeros(9)
    out = np.full(2000, -1, dtype=np.int32)
    step = kernels.fused_step(centers, csq, want_inertia=False, compact=True,
                              moves_only=moves_only)
    labels, sums, counts, _, changed = step(X, None, previous, sums, counts, out[100:1600])
    assert labels.base is out
    np.testing.assert_array_equal(out[100:1600], ref_labels)
    assert (out[:100] == -1).all() and (out[1600:] == -1).all()
    np.testing.assert_array_equal(previous, kept)
    assert changed == np.count_nonzero(ref_labels != kept)
    np.testing.assert_allclose(sums, ref_sums, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(counts, ref_counts, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("label_dtype", [np.uint8, np.int32, np.intp])
@pytest.mark.parametrize("d", [1, 2, 16, 33])
def test_sq_distances_to_matches_numpy_kernels(dtype, label_dtype, d):
    # The exact distances of the final assignment, in one pass: numpy's
    # gathered differences, in X's dtype, for any labels' dtype and for
    # rows that are not C-ordered.
    _numba()
    X, centers = _data(777, d, 5, dtype)
    labels = np.random.default_rng(d).integers(0, 5, X.shape[0]).astype(label_dtype)
    fused = _fused.FusedNumpyKernels(np_xp)
    with fused_kernels(False):
        plain = get_kernels(np_xp, "cpu")
    for rows in (X, np.asfortranarray(X), X[::2]):
        got = fused.sq_distances_to(rows, centers, labels[: rows.shape[0]])
        ref = plain.sq_distances_to(rows, centers, labels[: rows.shape[0]])
        assert got.dtype == dtype
        rtol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("n_rows", [1, 3, 257, 1030])
@pytest.mark.parametrize("n_points", [2, 5, 8])
@pytest.mark.parametrize("capped", [False, True])
def test_fused_potentials_match_products_float64(n_rows, n_points, capped):
    # k-means++'s candidate pass: capped squared distances and their
    # weighted column sums, as the products and minima compute them.
    _numba()
    X, points = _data(max(n_rows, n_points), 9, n_points, np.float64, seed=n_rows)
    X = X[:n_rows]
    rng = np.random.default_rng(n_points)
    w = rng.uniform(0.5, 2.0, n_rows)
    closest = rng.uniform(0.0, 30.0, n_rows) if capped else None
    kernels = _fused.FusedNumpyKernels(np_xp)
    xsq = kernels.sq_row_norms(X)
    totals, d2 = kernels.fused_potentials(points)(X, xsq, closest, w)
    ref = np.maximum(xsq[:, None] + X @ (-2 * points.T) + kernels.sq_row_norms(points), 0)
    if capped:
        ref = np.minimum(ref, closest[:, None])
    np.testing.assert_allclose(d2, ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(totals, w @ ref, rtol=1e-10)
    assert kernels.fused_potentials(np.zeros((9, 9))) is None  # wider than a tile
    assert kernels.fused_potentials(np.zeros((1, 9))) is None  # one point: BLAS


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_rows", [3000, 300_000])  # one block; the block runner
def test_kmeans_plusplus_picks_the_same_rows_float64(weighted, n_rows):
    _numba()
    from kmeans_xp import kmeans_plusplus

    X, _ = _data(n_rows, 6, 1, np.float64)
    w = np.random.default_rng(5).uniform(0.5, 2.0, n_rows) if weighted else None
    picks = {}
    for on in (True, False):
        with fused_kernels(on):
            picks[on] = kmeans_plusplus(X, 20, sample_weight=w, random_state=3)
    np.testing.assert_array_equal(picks[True][1], picks[False][1])
    np.testing.assert_array_equal(picks[True][0], picks[False][0])


def test_prefer_fused_rule():
    assert _fused.prefer_fused(8, 16)
    assert _fused.prefer_fused(64, 32)
    assert _fused.prefer_fused(128, 128)
    assert _fused.prefer_fused(1024, 16)  # few features: fused further
    assert not _fused.prefer_fused(1024, 32)
    assert _fused.prefer_fused(512, 64)
    assert not _fused.prefer_fused(512, 128)
    assert _fused.prefer_fused(256, 128)
    assert not _fused.prefer_fused(1024, 128)
    assert not _fused.prefer_fused(256, 200)  # beyond the features measured
    assert _fused.prefer_fused(128, 200)
    assert not _fused.prefer_fused(4096, 2)  # beyond the centres measured


# ------------------------------------------------------------ fallback


def test_fused_kernels_by_default_where_numba_is_installed(monkeypatch):
    monkeypatch.delenv(_fused.ENABLE_ENV, raising=False)
    assert _fused.enabled() == _fused.available()
    expected = _fused.FusedNumpyKernels if _fused.available() else NumpyKernels
    assert type(get_kernels(np_xp, "cpu")) is expected
    monkeypatch.setenv(_fused.ENABLE_ENV, "0")
    assert not _fused.enabled()
    assert type(get_kernels(np_xp, "cpu")) is NumpyKernels


def test_numpy_path_when_switched_off():
    X, centers = _data(20_000, 8, 6, np.float64)
    got = _fit(X, centers, fused=False)
    _, ref_centers = _lloyd_reference(X, centers)
    np.testing.assert_allclose(got.cluster_centers_, ref_centers, rtol=1e-10, atol=1e-10)


def test_numpy_path_when_numba_missing(monkeypatch):
    # As if numba were not installed: the import of the jitted module fails.
    monkeypatch.setitem(sys.modules, "numba", None)
    monkeypatch.delitem(sys.modules, "kmeans_xp._kernels._numba_jit", raising=False)
    monkeypatch.delattr(kmeans_xp._kernels, "_numba_jit", raising=False)
    monkeypatch.setattr(_fused, "_STATE", {"module": None, "checked": False})
    monkeypatch.delenv(_fused.ENABLE_ENV, raising=False)
    assert not _fused.available() and not _fused.enabled()
    X, centers = _data(20_000, 8, 6, np.float64)
    assert type(get_kernels(np_xp, "cpu")) is NumpyKernels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = KMeans(6, init=centers, n_init=1, max_iter=30, tol=0).fit(X)
    _, ref_centers = _lloyd_reference(X, centers)
    np.testing.assert_allclose(got.cluster_centers_, ref_centers, rtol=1e-10, atol=1e-10)


def test_import_does_not_import_numba():
    code = (
        "import sys, kmeans_xp, kmeans_xp._kernels.numba; "
        "assert 'numba' not in sys.modules, 'numba imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _lloyd_reference(X, centers, max_iter=30):
    """Plain Lloyd in numpy float64 (no kmeans_xp code): labels and centres
    after ``max_iter`` iterations or at strict convergence."""
    labels = None
    for _ in range(max_iter):
        d2 = ((X[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
        new_labels = np.argmin(d2, axis=1)
        if labels is not None and np.array_equal(new_labels, labels):
            break
        labels = new_labels
        centers = np.stack([
            X[labels == j].mean(axis=0) if np.any(labels == j) else centers[j]
            for j in range(centers.shape[0])
        ])
    return labels, centers


def test_lloyd_groups_hold_whole_tiles_and_row_groups():
    # The fused step labels SUB_ROWS rows at a time: a multiple of every
    # block kernel's rows leaves no rows of a group to the one-row loop.
    _numba()
    from kmeans_xp._kernels import _numba_jit as jit

    for rows in (jit.LANE_ROWS, jit.TILE_ROWS, jit.GROUP_ROWS_FLOAT32, jit.GROUP_ROWS_FLOAT64):
        assert jit.SUB_ROWS % rows == 0
    # The row groups read whole vectors of centres: the padding holds them.
    assert _fused.TILE_WIDTHS[1] % jit.GROUP_CENTERS == 0


@pytest.mark.parametrize("label_dtype", [np.int64, np.int16, np.uint8])
@pytest.mark.parametrize("k", [8, 13, 40])
def test_labels_in_other_integer_dtypes(label_dtype, k):
    # Each block kernel stores its labels in the output's integer width.
    _numba()
    X, centers = _data(1001, 7, k, np.float32)
    csq = np.einsum("ij,ij->i", centers, centers)
    expect, _ = _fused.assign_labels(X, centers, csq, np.empty(1001, np.int32), parallel=False)
    labels, _ = _fused.assign_labels(X, centers, csq, np.empty(1001, label_dtype),
                                     parallel=False)
    np.testing.assert_array_equal(labels, expect)


@pytest.mark.parametrize(("k", "dtype"), [(255, np.uint8), (256, np.int32), (300, np.int32)])
def test_compact_labels_fit_the_centres(k, dtype):
    # A fused pass's labels are uint8 up to 255 centres and int32 beyond,
    # in the step, the assigner and through a whole fit.
    _numba()
    X, centers = _data(3000, 4, k, np.float32, seed=k)
    kernels = _fused.FusedNumpyKernels(np_xp)
    assert kernels.fused_label_dtype(k) == dtype
    csq = kernels.sq_row_norms(centers)
    ref_labels = _reference(X, centers)[0]
    step = kernels.fused_step(centers, csq, want_inertia=False, compact=True)
    labels = step(X, None, None, np.zeros((k, 4)), np.zeros(k))[0]
    assert labels.dtype == dtype
    assert np.mean(labels == ref_labels) > 0.999
    assigned, _ = kernels.assigner(centers, csq, partial=False, compact=True)(X)
    assert assigned.dtype == dtype
    np.testing.assert_array_equal(assigned, labels)
    with fused_kernels(True):
        model = KMeans(k, init=centers, n_init=1, max_iter=3).fit(X)
    assert model.labels_.dtype == np.int64
    assert model.labels_.max() < k
