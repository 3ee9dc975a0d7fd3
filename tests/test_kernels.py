"""The backend seam: ``assign``, ``accumulate`` and ``sq_row_norms``.

Both the generic array-API ``Kernels`` and the fast path ``get_kernels``
picks are checked on every conftest backend against a plain numpy float64
reference: repeated labels, empty clusters, weights, ties (first index
wins), float32 and float64, and float32 data far from the origin.
"""

import numpy as np
import pytest

from kmeans_xp._blocks import BlockRunner
from kmeans_xp._kernels import Kernels, get_kernels
from kmeans_xp._kernels.numpy import NumpyKernels
from kmeans_xp._lloyd import data_mean_and_variance
from kmeans_xp._problem import Problem
from kmeans_xp._testing import assert_array_like, to_numpy

RTOL = {"float64": 1e-12, "float32": 1e-5}


@pytest.fixture(params=["generic", "native", "gpu-class"])
def kernels(request, xp, device):
    """The generic kernels, the ones ``get_kernels`` picks for xp, and the
    GPU kernel classes run on CPU arrays (see conftest)."""
    if request.param == "generic":
        return Kernels(xp)
    if request.param == "native":
        return get_kernels(xp, device)
    return request.getfixturevalue("gpu_class_kernels")


@pytest.fixture(params=["float64", "float32"])
def dtype_name(request):
    return request.param


def _ref_assign(X, C):
    """Nearest centre (first on ties) and squared distance, float64."""
    X, C = np.asarray(X, np.float64), np.asarray(C, np.float64)
    d2 = ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    return d2.argmin(1), d2.min(1)


def _ref_accumulate(X, labels, weights, n_clusters):
    w = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    sums = np.zeros((n_clusters, X.shape[1]))
    np.add.at(sums, labels, np.asarray(X, np.float64) * w[:, None])
    counts = np.zeros(n_clusters)
    np.add.at(counts, labels, w)
    return sums, counts


def test_get_kernels_picks_native_for_numpy():
    import array_api_compat.numpy as np_xp

    assert isinstance(get_kernels(np_xp, "cpu"), NumpyKernels)


def test_get_kernels_generic_for_unknown(xp, device, backend):
    kernels = get_kernels(xp, device)
    assert kernels.xp is xp
    if backend.value.startswith("array_api_strict"):
        assert type(kernels) is Kernels


@pytest.mark.parametrize(
    "n_clusters, n_rows, n_features",
    [
        (3, 300, 5),
        (40, 300, 5),
        (128, 3000, 5),
        (200, 300, 5),
        (1024, 600, 16),
        (200, 300, 120),
        (200, 3000, 120),
        (300, 500, 160),
    ],
)
def test_assign_matches_reference(
    kernels, xp, to_xp, rng, dtype_name, n_clusters, n_rows, n_features
):
    # numpy: running minimum for few centres (3); minimum over transposed
    # scores up to 128 centres; then a per-row argmin, with ||c||^2 folded
    # into the product for many centres per feature (200 x 5, 1024 x 16),
    # else added from a tiled copy in one chunk (200 x 300 in float32) or
    # several (200 x 3000; 200 x 300 in float64), or broadcast (300).
    X_np = rng.standard_normal((n_rows, n_features)).astype(dtype_name)
    C_np = rng.standard_normal((n_clusters, n_features)).astype(dtype_name)
    X, C = to_xp(X_np), to_xp(C_np)
    labels, partial = kernels.assign(X, C, kernels.sq_row_norms(C))
    assert_array_like(partial, X)
    assert_array_like(labels, X, dtype=labels.dtype)
    assert xp.isdtype(labels.dtype, "integral")
    ref_labels, ref_d2 = _ref_assign(X_np, C_np)
    got_d2 = to_numpy(partial).astype(np.float64) + (X_np.astype(np.float64) ** 2).sum(1)
    np.testing.assert_allclose(got_d2, ref_d2, rtol=RTOL[dtype_name] * 100, atol=1e-4)
    got = to_numpy(labels)
    # Where float32 round-off could swap two nearly equidistant centres the
    # chosen one must still be (nearly) as close as the reference.
    mismatch = got != ref_labels
    d2_all = ((X_np[:, None].astype(np.float64) - C_np[None].astype(np.float64)) ** 2).sum(-1)
    chosen = d2_all[np.arange(len(got)), got]
    np.testing.assert_allclose(chosen[mismatch], ref_d2[mismatch], rtol=1e-4)
    if dtype_name == "float64":
        np.testing.assert_array_equal(got, ref_labels)


def test_assign_ties_pick_first_index(kernels, to_xp, dtype_name):
    # Exact ties in any arithmetic: integer-valued data, mirrored centres and
    # duplicated centres.
    X_np = np.array([[0.0, 0.0], [0.0, 3.0], [2.0, 0.0], [5.0, 5.0]], dtype=dtype_name)
    C_np = np.array(
        [[-1.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.0, 5.0], [1.0, 0.0]], dtype=dtype_name
    )
    labels, _ = kernels.assign(to_xp(X_np), to_xp(C_np), kernels.sq_row_norms(to_xp(C_np)))
    np.testing.assert_array_equal(to_numpy(labels), [0, 0, 1, 2])


@pytest.mark.parametrize("n_copies", [1, 6, 50])
def test_assign_ties_many_centres_pick_first_index(kernels, to_xp, dtype_name, n_copies):
    # 3 distinct centres repeated: 3, 18 or 150 centres (the three numpy
    # strategies);
    # every row is equidistant from all copies of its nearest centre.
    base = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]], dtype=dtype_name)
    C_np = np.concatenate([base] * n_copies)
    X_np = np.array([[0.0, 1.0], [4.0, 1.0], [1.0, 4.0], [2.0, 0.0]], dtype=dtype_name)
    C = to_xp(C_np)
    labels, _ = kernels.assign(to_xp(X_np), C, kernels.sq_row_norms(C))
    # Row 3 is equidistant from centres 0 and 1: the first wins.
    np.testing.assert_array_equal(to_numpy(labels), [0, 1, 2, 0])


def test_assigner_equals_assign(kernels, to_xp, rng, dtype_name):
    X = to_xp(rng.standard_normal((50, 4)).astype(dtype_name))
    C = to_xp(rng.standard_normal((6, 4)).astype(dtype_name))
    c2 = kernels.sq_row_norms(C)
    a_labels, a_partial = kernels.assign(X, C, c2)
    f = kernels.assigner(C, c2)
    b_labels, b_partial = f(X)
    np.testing.assert_array_equal(to_numpy(a_labels), to_numpy(b_labels))
    np.testing.assert_array_equal(to_numpy(a_partial), to_numpy(b_partial))


@pytest.mark.parametrize("n_clusters", [1, 3, 40, 200])
def test_compact_labels_are_the_labels(kernels, to_xp, rng, dtype_name, n_clusters):
    # Lloyd's passes ask for compact labels (uint8 on numpy's BLAS kernels
    # up to 128 centres, int32 from the fused kernel): the same labels, ties
    # included, in any integer dtype.
    X_np = rng.integers(-3, 4, size=(300, 3)).astype(dtype_name)  # many ties
    C_np = rng.integers(-3, 4, size=(n_clusters, 3)).astype(dtype_name)
    X, C = to_xp(X_np), to_xp(C_np)
    c2 = kernels.sq_row_norms(C)
    labels, partial = kernels.assigner(C, c2)(X)
    compact, compact_partial = kernels.assigner(C, c2, compact=True)(X)
    assert kernels.xp.isdtype(compact.dtype, "integral")
    np.testing.assert_array_equal(to_numpy(compact), to_numpy(labels))
    np.testing.assert_array_equal(to_numpy(compact_partial), to_numpy(partial))
    np.testing.assert_array_equal(to_numpy(labels), _ref_assign(X_np, C_np)[0])
    if type(kernels) is NumpyKernels and n_clusters <= 128:
        assert compact.dtype == np.uint8


@pytest.mark.parametrize("compact", [False, True])
def test_column_minimum_in_parts_matches_whole_block(monkeypatch, rng, compact):
    # numpy's column minimum (17-128 centres) works on equal parts of a
    # block whose scores outgrow ``column_min_bytes``: the labels (ties
    # included) and partial scores are those of the whole block at once.
    import array_api_compat.numpy as np_xp

    X = rng.integers(-3, 4, size=(1001, 3)).astype(np.float32)  # many ties
    C = rng.integers(-3, 4, size=(40, 3)).astype(np.float32)
    kernels = NumpyKernels(np_xp)
    c2 = kernels.sq_row_norms(C)
    whole = kernels.assigner(C, c2, compact=compact)(X)
    # Parts of at most 300 rows: four parts of 250 or 251.
    monkeypatch.setattr(NumpyKernels, "column_min_bytes", 40 * 4 * 300)
    parts = NumpyKernels(np_xp).assigner(C, c2, compact=compact)(X)
    assert parts[0].dtype == whole[0].dtype
    np.testing.assert_array_equal(parts[0], whole[0])
    np.testing.assert_array_equal(parts[1], whole[1])
    np.testing.assert_array_equal(whole[0], _ref_assign(X, C)[0])


@pytest.mark.parametrize("n_clusters", [3, 40, 200])
def test_assigner_reused_across_block_sizes_and_threads(kernels, to_xp, rng, n_clusters):
    # Fast paths keep per-thread score buffers from block to block and pass
    # to pass: blocks that grow, shrink and run on two threads at once must
    # each get their own right answer, and returned arrays must not alias
    # the buffers.
    from concurrent.futures import ThreadPoolExecutor

    X_np = rng.standard_normal((700, 5))
    C_np = X_np[:n_clusters].copy()
    X, C = to_xp(X_np), to_xp(C_np)
    assign = kernels.assigner(C, kernels.sq_row_norms(C))
    bounds = [(0, 50), (50, 400), (400, 410), (410, 700)]
    results = [assign(X[a:b, :]) for a, b in bounds]
    with ThreadPoolExecutor(2) as pool:
        results += list(pool.map(lambda ab: assign(X[ab[0]:ab[1], :]), bounds))
    ref_labels, ref_d2 = _ref_assign(X_np, C_np)
    sq = (X_np**2).sum(1)
    for (a, b), (labels, partial) in zip(bounds + bounds, results):
        np.testing.assert_array_equal(to_numpy(labels), ref_labels[a:b])
        np.testing.assert_allclose(to_numpy(partial) + sq[a:b], ref_d2[a:b], atol=1e-9)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_clusters, n_rows", [(4, 200), (20, 200), (40, 2000), (300, 1000)])
def test_accumulate_matches_reference(kernels, xp, device, to_xp, rng, dtype_name,
                                      weighted, n_clusters, n_rows):
    # The numpy strategies: a one-hot product for few clusters (4) or few
    # rows (20 x 200); one product per run of a label for long runs
    # (40 x 2000); rounds over the runs for short ones (300 x 1000, most
    # clusters empty).
    n_features = 3
    X_np = rng.standard_normal((n_rows, n_features)).astype(dtype_name)
    # Only even labels are used: every odd cluster stays empty.
    labels_np = 2 * rng.integers(0, (n_clusters + 1) // 2, size=n_rows)
    labels_np[:10] = labels_np[0]  # a run of one label
    w_np = rng.uniform(0.0, 3.0, size=n_rows).astype(dtype_name) if weighted else None
    sums0 = rng.standard_normal((n_clusters, n_features)).astype(dtype_name)
    counts0 = rng.uniform(0, 5, size=n_clusters).astype(dtype_name)
    X = to_xp(X_np)
    labels = xp.asarray(labels_np, dtype=xp.int64, device=device)
    w = None if w_np is None else to_xp(w_np)
    X_before = to_numpy(X).copy()
    # Copies: numpy fast paths add in place into the accumulators.
    sums, counts = kernels.accumulate(X, labels, w, to_xp(sums0.copy()), to_xp(counts0.copy()))
    assert_array_like(sums, X)
    assert_array_like(counts, X)
    ref_sums, ref_counts = _ref_accumulate(X_np, labels_np, w_np, n_clusters)
    tol = RTOL[dtype_name] * 10
    np.testing.assert_allclose(to_numpy(sums), sums0 + ref_sums, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(to_numpy(counts), counts0 + ref_counts, rtol=tol, atol=tol)
    np.testing.assert_array_equal(to_numpy(X), X_before)  # input untouched


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_clusters", [1, 3, 16, 40])
def test_cluster_sums_are_accumulate_into_zeros(kernels, xp, device, to_xp, rng, dtype_name,
                                                weighted, n_clusters):
    # numpy has its own path up to 16 clusters (one block of the latency row).
    X_np = rng.standard_normal((300, 2)).astype(dtype_name)
    labels_np = rng.integers(0, n_clusters, size=300)
    w_np = rng.uniform(0.0, 3.0, size=300).astype(dtype_name) if weighted else None
    X = to_xp(X_np)
    labels = xp.asarray(labels_np, dtype=xp.int64, device=device)
    w = None if w_np is None else to_xp(w_np)
    sums, counts = kernels.cluster_sums(X, labels, w, n_clusters)
    # GPU kernels sum into float64 (see Kernels.sum_dtype).
    assert_array_like(sums, X, dtype=kernels.sum_dtype(X.dtype))
    assert_array_like(counts, X, dtype=kernels.sum_dtype(X.dtype))
    assert tuple(sums.shape) == (n_clusters, 2) and tuple(counts.shape) == (n_clusters,)
    ref_sums, ref_counts = _ref_accumulate(X_np, labels_np, w_np, n_clusters)
    tol = RTOL[dtype_name] * 10
    np.testing.assert_allclose(to_numpy(sums), ref_sums, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(to_numpy(counts), ref_counts, rtol=tol, atol=tol)
    np.testing.assert_array_equal(to_numpy(X), X_np)  # input untouched


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n_clusters", [3, 64, 300])
def test_move_is_add_to_new_and_take_from_old(kernels, xp, device, to_xp, rng, dtype_name,
                                              weighted, n_clusters):
    # numpy: a signed one-hot product up to 128 clusters, sorted sums above.
    X_np = rng.standard_normal((500, 3)).astype(dtype_name)
    old_np = rng.integers(0, n_clusters, size=500)
    new_np = (old_np + rng.integers(1, n_clusters, size=500)) % n_clusters
    new_np[:5] = old_np[:5]  # a row may also stay where it was
    w_np = rng.uniform(0.0, 3.0, size=500).astype(dtype_name) if weighted else None
    sums0 = rng.standard_normal((n_clusters, 3)).astype(dtype_name)
    counts0 = rng.uniform(0, 5, size=n_clusters).astype(dtype_name)
    X = to_xp(X_np)
    old = xp.asarray(old_np, dtype=xp.int64, device=device)
    new = xp.asarray(new_np, dtype=xp.int64, device=device)
    w = None if w_np is None else to_xp(w_np)
    sums, counts = kernels.move(X, old, new, w, to_xp(sums0.copy()), to_xp(counts0.copy()))
    assert_array_like(sums, X)
    assert_array_like(counts, X)
    gained_sums, gained_counts = _ref_accumulate(X_np, new_np, w_np, n_clusters)
    lost_sums, lost_counts = _ref_accumulate(X_np, old_np, w_np, n_clusters)
    tol = RTOL[dtype_name] * 10
    np.testing.assert_allclose(
        to_numpy(sums), sums0 + gained_sums - lost_sums, rtol=tol, atol=tol * 10
    )
    np.testing.assert_allclose(
        to_numpy(counts), counts0 + gained_counts - lost_counts, rtol=tol, atol=tol * 10
    )
    np.testing.assert_array_equal(to_numpy(X), X_np)  # input untouched


def test_accumulate_single_row_and_single_cluster(kernels, xp, device, to_xp, dtype_name):
    X_np = np.array([[1.5, -2.0]], dtype=dtype_name)
    labels = xp.asarray([0], dtype=xp.int64, device=device)
    sums, counts = kernels.accumulate(
        to_xp(X_np), labels, None, to_xp(np.zeros((1, 2), dtype_name)),
        to_xp(np.zeros(1, dtype_name)),
    )
    np.testing.assert_array_equal(to_numpy(sums), X_np)
    np.testing.assert_array_equal(to_numpy(counts), [1.0])


def test_sq_distances_to_labelled_centres(kernels, xp, device, to_xp, rng, dtype_name):
    X_np = rng.standard_normal((200, 5)).astype(dtype_name)
    C_np = rng.standard_normal((7, 5)).astype(dtype_name)
    labels_np = rng.integers(0, 7, size=200)
    X = to_xp(X_np)
    d2 = kernels.sq_distances_to(X, to_xp(C_np), xp.asarray(labels_np, device=device))
    assert_array_like(d2, X)
    ref = ((X_np.astype(np.float64) - C_np[labels_np]) ** 2).sum(1)
    np.testing.assert_allclose(to_numpy(d2), ref, rtol=RTOL[dtype_name])
    np.testing.assert_array_equal(to_numpy(X), X_np)  # input untouched


def test_sq_row_norms(kernels, to_xp, rng, dtype_name):
    X_np = rng.standard_normal((40, 7)).astype(dtype_name)
    X = to_xp(X_np)
    got = kernels.sq_row_norms(X)
    assert_array_like(got, X)
    np.testing.assert_allclose(to_numpy(got), (X_np.astype(np.float64) ** 2).sum(1),
                               rtol=RTOL[dtype_name] * 10)


@pytest.mark.parametrize("n_features", [1, 2, 3, 7])
def test_sq_row_norms_narrow_rows(kernels, to_xp, rng, dtype_name, n_features):
    # Up to two columns numpy adds columns of squares instead of einsum.
    X_np = rng.standard_normal((50, n_features)).astype(dtype_name) * 3 + 1
    got = kernels.sq_row_norms(to_xp(X_np))
    np.testing.assert_allclose(to_numpy(got), (X_np.astype(np.float64) ** 2).sum(1),
                               rtol=RTOL[dtype_name] * 10)


@pytest.mark.parametrize("n_features", [1, 2])
def test_numpy_narrow_sq_row_norms_equal_einsum_bitwise(rng, dtype_name, n_features):
    # Two squares have one sum in any order: centre norms, hence labels at
    # near-ties, stay those of scikit-learn (einsum row norms).
    import array_api_compat.numpy as np_xp

    X_np = rng.standard_normal((5000, n_features)).astype(dtype_name) * 3 + 1
    got = NumpyKernels(np_xp).sq_row_norms(X_np)
    np.testing.assert_array_equal(got, np.einsum("ij,ij->i", X_np, X_np))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(1000, 2), (300, 33)])
def test_column_sums(kernels, to_xp, rng, dtype_name, weighted, shape):
    X_np = (rng.standard_normal(shape) + 5).astype(dtype_name)
    w_np = rng.uniform(0.0, 2.0, shape[0]).astype(dtype_name) if weighted else None
    X = to_xp(X_np)
    X_before = to_numpy(X).copy()
    got = kernels.column_sums(X, None if w_np is None else to_xp(w_np))
    assert_array_like(got, X)
    w = np.ones(shape[0]) if w_np is None else w_np.astype(np.float64)
    ref = (X_np.astype(np.float64) * w[:, None]).sum(0)
    np.testing.assert_allclose(to_numpy(got), ref, rtol=RTOL[dtype_name] * 10)
    np.testing.assert_array_equal(to_numpy(X), X_before)


def test_sq_sum_is_a_device_scalar(kernels, to_xp, rng, dtype_name):
    # The data-mean pass adds these per block on the device: a 0-d array
    # of the block's namespace, device and dtype, the block untouched.
    A_np = rng.standard_normal((40, 3)).astype(dtype_name)
    A = to_xp(A_np)
    got = kernels.sq_sum(A)
    assert_array_like(got, A)
    assert got.shape == ()
    ref = float((A_np.astype(np.float64) ** 2).sum())
    assert float(got) == pytest.approx(ref, rel=RTOL[dtype_name] * 10)
    np.testing.assert_array_equal(to_numpy(A), A_np)


def test_far_from_origin_float32_does_not_degrade(kernels, xp, device, to_xp, rng):
    # Three tight clusters around 1e6 in float32: |x|^2 ~ 1e12 swamps the
    # distances unless blocks are shifted by the data mean first.
    base = rng.uniform(-5, 5, size=(3, 2))
    y = rng.integers(0, 3, size=600)
    X64 = base[y] + 0.3 * rng.standard_normal((600, 2))
    X_np = (X64 + 1e6).astype(np.float32)
    C_np = (base + 1e6).astype(np.float32)
    X = to_xp(X_np)
    runner = BlockRunner(X, None, xp=xp, kernels=kernels, rows=128, n_workers=2)
    problem = Problem(runner=runner, kernels=kernels, weights=None, xp=xp)
    shift, _ = data_mean_and_variance(problem, need_variance=False)
    centers = to_xp(C_np) - shift
    assign = kernels.assigner(centers, kernels.sq_row_norms(centers))

    def step(Xb, start, stop, acc):
        labels, partial = assign(Xb)
        sums, counts = kernels.accumulate(Xb, labels, None, *acc)
        return (sums, counts), (labels, partial + kernels.sq_row_norms(Xb))

    def make_acc():
        return problem.zeros((3, 2)), problem.zeros((3,))

    accs, outs = runner.map(step, make_acc)
    labels = np.concatenate([to_numpy(o[0]) for o in outs])
    d2 = np.concatenate([to_numpy(o[1]) for o in outs])
    ref_labels, ref_d2 = _ref_assign(X_np.astype(np.float64), C_np.astype(np.float64))
    np.testing.assert_array_equal(labels, ref_labels)
    # float32 with the shift: squared distances good to ~1e-3 absolute
    # (values ~1, coordinates ~1e6 cost 0.06 of rounding each).
    np.testing.assert_allclose(d2, ref_d2, atol=0.2)
    sums = sum((to_numpy(a[0]).astype(np.float64) for a in accs[1:]),
               to_numpy(accs[0][0]).astype(np.float64))
    counts = sum((to_numpy(a[1]) for a in accs[1:]), to_numpy(accs[0][1]))
    got_centers = sums / counts[:, None] + to_numpy(shift).astype(np.float64)
    ref_sums, ref_counts = _ref_accumulate(X_np.astype(np.float64), ref_labels, None, 3)
    np.testing.assert_array_equal(counts, ref_counts)
    # The float32 grid spacing at 1e6 is 0.0625: means are exact to that.
    np.testing.assert_allclose(got_centers, ref_sums / ref_counts[:, None], atol=0.07)
