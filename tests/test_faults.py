"""Surviving faults: out of memory, interrupted fits, pickling and moving a
model between backends, and concurrent predict/transform.

Faults are injected on CPU through a fake kernel object: ``KMeans`` takes
its kernels from ``kmeans_xp._problem.get_kernels``, so a wrapper there sees
every block of every pass (fit, predict, transform, score).
"""

import pickle
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import kmeans_xp._kmeans
import kmeans_xp._problem
from kmeans_xp import KMeans, NotFittedError
from kmeans_xp._array_api import array_namespace, oom_errors
from kmeans_xp._testing import assert_array_like, to_numpy
from kmeans_xp.exceptions import MemoryRetryWarning


def blobs(n_samples=600, n_features=3, n_centers=4, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.uniform(-10, 10, size=(n_centers, n_features))
    y = rng.integers(0, n_centers, size=n_samples)
    return centers[y] + rng.standard_normal((n_samples, n_features))


def _backend_oom(xp):
    """The backend's own out-of-memory type (MemoryError for numpy-like)."""
    error = oom_errors(xp)[-1]
    return error("CUDA out of memory (injected by the test)")


class FaultyKernels:
    """Wraps real kernels; ``fault(method, X)`` may raise before or after
    the real call. Attribute access falls through to the real kernels."""

    def __init__(self, kernels, before=None, after=None):
        self._kernels = kernels
        self._before = before
        self._after = after

    def __getattr__(self, name):
        return getattr(self._kernels, name)

    def assign(self, X, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(X)

    def assigner(self, centers, centers_sqnorm, **options):
        real = self._kernels.assigner(centers, centers_sqnorm, **options)

        def assign(X):
            if self._before:
                self._before("assign", X)
            out = real(X)
            if self._after:
                self._after("assign", X)
            return out

        return assign

    def column_sums(self, X, weights=None):
        if self._before:
            self._before("column_sums", X)
        return self._kernels.column_sums(X, weights)

    def accumulate(self, X, labels, weights, sums, counts):
        if self._before:
            self._before("accumulate", X)
        out = self._kernels.accumulate(X, labels, weights, sums, counts)
        if self._after:
            self._after("accumulate", X)
        return out

    def move(self, X, old_labels, new_labels, weights, sums, counts):
        if self._before:
            self._before("accumulate", X)
        out = self._kernels.move(X, old_labels, new_labels, weights, sums, counts)
        if self._after:
            self._after("accumulate", X)
        return out

    def fused_step(self, centers, centers_sqnorm, **options):
        # One kernel that both assigns and accumulates: the fault points of
        # both (numpy arrays with numba installed).
        real = self._kernels.fused_step(centers, centers_sqnorm, **options)
        if real is None:
            return None

        def step(X, *args):
            if self._before:
                self._before("assign", X)
                self._before("accumulate", X)
            out = real(X, *args)
            if self._after:
                self._after("assign", X)
                self._after("accumulate", X)
            return out

        return step

    def fused_potentials(self, points):
        # k-means++'s candidates in one kernel (numpy arrays with numba):
        # the fault point of the column sums it computes, on its capped
        # distances. It returns fresh arrays, so failing after it is as
        # failing inside it.
        real = self._kernels.fused_potentials(points)
        if real is None:
            return None

        def potentials(X, *args):
            totals, d2 = real(X, *args)
            if self._before:
                self._before("column_sums", d2)
            return totals, d2

        return potentials

    def cluster_sums(self, X, labels, weights, n_clusters):
        # The same fault points as ``accumulate``: sums from zeros.
        if self._before:
            self._before("accumulate", X)
        out = self._kernels.cluster_sums(X, labels, weights, n_clusters)
        if self._after:
            self._after("accumulate", X)
        return out


def _inject(monkeypatch, *, before=None, after=None):
    real = kmeans_xp._problem.get_kernels
    monkeypatch.setattr(
        kmeans_xp._problem,
        "get_kernels",
        lambda xp, device=None: FaultyKernels(real(xp, device), before, after),
    )


# --- out of memory: halve the block, warn once, same result ----------------------


def _oom_above(max_rows, method="assign"):
    """A fault that raises the backend's OOM error for blocks over max_rows.

    The backend is the block's own: a fit on torch CPU tensors runs numpy
    code on views of them, where running out of memory is a MemoryError.
    """
    seen = []

    def fault(name, X):
        if name == method and X.shape[0] > max_rows:
            seen.append(X.shape[0])
            raise _backend_oom(array_namespace(X))

    return fault, seen


def test_oom_in_assign_halves_blocks_warns_once_same_result(xp, to_xp, monkeypatch):
    X = to_xp(blobs())
    init = to_xp(blobs()[[0, 150, 300, 450]])
    expected = KMeans(4, init=init, random_state=0).fit(X)

    fault, seen = _oom_above(max_rows=100)
    _inject(monkeypatch, before=fault)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        km = KMeans(4, init=init, random_state=0).fit(X)
    retries = [w for w in caught if issubclass(w.category, MemoryRetryWarning)]

    assert seen, "the fake kernel never saw a block large enough to fail"
    assert len(retries) == 1, [str(w.message) for w in retries]
    assert "out of memory" in str(retries[0].message)
    assert_array_like(km.cluster_centers_, X)
    np.testing.assert_array_equal(to_numpy(km.labels_), to_numpy(expected.labels_))
    np.testing.assert_allclose(
        to_numpy(km.cluster_centers_), to_numpy(expected.cluster_centers_), rtol=1e-12, atol=1e-12
    )
    assert km.inertia_ == pytest.approx(expected.inertia_, rel=1e-12)


def _assert_one_block_tried_then_runner(monkeypatch, X, make_model, fault, seen):
    """Fit with ``fault`` injected: the one-block path (600 rows) must be
    tried first, then the runner (halved blocks, one warning) must give the
    fault-free result."""
    expected = make_model().fit(X)
    _inject(monkeypatch, before=fault)
    with pytest.warns(MemoryRetryWarning):
        km = make_model().fit(X)
    assert seen[0] == 600, seen  # the one-block path was tried first
    np.testing.assert_array_equal(to_numpy(km.labels_), to_numpy(expected.labels_))
    np.testing.assert_allclose(
        to_numpy(km.cluster_centers_), to_numpy(expected.cluster_centers_), rtol=1e-6, atol=1e-6
    )


def test_oom_in_one_block_cluster_sums_falls_back_to_the_runner(xp, to_xp, monkeypatch):
    # Small data sum their clusters on one block outside the block runner;
    # out of memory there, the runner takes over and halves its blocks.
    X = to_xp(blobs())
    init = to_xp(blobs()[[0, 150, 300, 450]])
    fault, seen = _oom_above(max_rows=100, method="accumulate")
    _assert_one_block_tried_then_runner(
        monkeypatch, X, lambda: KMeans(4, init=init, random_state=0), fault, seen
    )


def test_oom_in_one_block_kmeans_plusplus_falls_back_to_the_runner(xp, to_xp, monkeypatch):
    # Small data run k-means++ on one block outside the block runner; out of
    # memory there, the runner takes over and halves its blocks.
    seen = []

    def fault(name, A):
        # Only the candidates' potentials: (rows, 2 + ln 8 = 4 candidates).
        if name == "column_sums" and A.shape[1] == 4 and A.shape[0] > 100:
            seen.append(A.shape[0])
            raise _backend_oom(array_namespace(A))

    _assert_one_block_tried_then_runner(
        monkeypatch, to_xp(blobs()), lambda: KMeans(8, random_state=0), fault, seen
    )


def test_oom_in_predict_and_transform(xp, to_xp, monkeypatch):
    X = to_xp(blobs())
    km = KMeans(4, random_state=0).fit(X)
    labels, distances = to_numpy(km.predict(X)), to_numpy(km.transform(X))

    fault, _ = _oom_above(max_rows=64)
    _inject(monkeypatch, before=fault)
    with pytest.warns(MemoryRetryWarning):
        np.testing.assert_array_equal(to_numpy(km.predict(X)), labels)
    # transform uses no assign kernel; predict's retries must not leak into it.
    np.testing.assert_allclose(to_numpy(km.transform(X)), distances)


def test_oom_on_a_single_row_is_raised_not_retried_forever(xp, to_xp, monkeypatch):
    X = to_xp(blobs(n_samples=40))
    fault, seen = _oom_above(max_rows=0)
    _inject(monkeypatch, before=fault)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryRetryWarning)
        with pytest.raises(oom_errors(xp)):
            KMeans(2, init=to_xp(blobs(n_samples=40)[:2]), random_state=0).fit(X)
    assert seen[-1] == 1 and len(seen) < 20  # halved down to one row, then gave up


@pytest.mark.parametrize(
    "n_clusters, fails", [(4, "arange"), (100, "dot"), (300, "flatnonzero")]
)
def test_accumulate_touches_nothing_until_its_allocations_succeed(monkeypatch, n_clusters, fails):
    # The block runner retries a block that ran out of memory, so the kernel
    # must not have added part of it into the accumulators: everything that
    # allocates comes before the in-place updates. Fail a late allocation
    # of the one-hot path (k=4), of the long-run path (k=100: the third
    # run's product) and of the short-run path (k=300).
    import array_api_compat.numpy as np_xp

    from kmeans_xp._kernels.numpy import NumpyKernels

    rng = np.random.default_rng(0)
    X = rng.standard_normal((1000, 3))
    labels = rng.integers(0, n_clusters, size=1000)
    sums, counts = np.ones((n_clusters, 3)), np.ones(n_clusters)
    real = getattr(np, fails)
    calls = []

    def out_of_memory(*args, **kwargs):
        calls.append(1)
        if fails == "dot" and len(calls) < 3:
            return real(*args, **kwargs)
        raise MemoryError("injected")

    monkeypatch.setattr(np, fails, out_of_memory)
    with pytest.raises(MemoryError):
        NumpyKernels(np_xp).accumulate(X, labels, None, sums, counts)
    assert calls
    np.testing.assert_array_equal(sums, 1.0)
    np.testing.assert_array_equal(counts, 1.0)


# --- interrupted fits: all or nothing ---------------------------------------------


def _interrupt_after(n_calls, exc):
    calls = []

    def fault(name, X):
        if name == "assign":
            calls.append(1)
            if len(calls) > n_calls:
                raise exc

    return fault, calls


def _assign_calls_of_a_fit(monkeypatch, fit):
    """How many assign calls a clean ``fit()`` makes."""
    fault, calls = _interrupt_after(10**9, None)
    _inject(monkeypatch, before=fault)
    fit()
    monkeypatch.undo()
    return len(calls)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("device lost")], ids=repr)
@pytest.mark.parametrize("where", [0.0, 0.5, 1.0])
def test_interrupted_fit_keeps_the_previous_model(xp, to_xp, monkeypatch, exc, where):
    X, X_new = to_xp(blobs()), to_xp(blobs(seed=1))
    km = KMeans(4, n_init=2, random_state=0).fit(X)
    before = dict(vars(km))
    predicted = to_numpy(km.predict(X))
    # Interrupt at the first, a middle, or the very last assign call.
    total = _assign_calls_of_a_fit(monkeypatch, lambda: KMeans(4, n_init=2, random_state=0).fit(X_new))
    fault, _ = _interrupt_after(int(where * (total - 1)), exc)

    _inject(monkeypatch, before=fault)
    with pytest.raises(type(exc)):
        km.fit(X_new)
    monkeypatch.undo()

    assert vars(km).keys() == before.keys()
    for name, value in before.items():
        assert vars(km)[name] is value, f"{name} was replaced by an interrupted fit"
    np.testing.assert_array_equal(to_numpy(km.predict(X)), predicted)


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("device lost")], ids=repr)
def test_interrupted_first_fit_leaves_an_unfitted_estimator(xp, to_xp, monkeypatch, exc):
    km = KMeans(4, n_init=2, random_state=0)
    params = dict(vars(km))
    _inject(monkeypatch, before=_interrupt_after(2, exc)[0])
    with pytest.raises(type(exc)):
        km.fit(to_xp(blobs()))
    monkeypatch.undo()
    assert vars(km) == params  # no fitted attribute at all, not even n_features_in_
    with pytest.raises(NotFittedError):
        km.predict(to_xp(blobs()))


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("device lost")], ids=repr)
def test_interrupted_minibatch_fit_is_all_or_nothing(monkeypatch, exc):
    try:
        from kmeans_xp import MiniBatchKMeans
    except ImportError:
        pytest.skip("MiniBatchKMeans is not available")
    X = blobs()
    km = MiniBatchKMeans(4, random_state=0).fit(X)
    before = dict(vars(km))
    fresh = MiniBatchKMeans(4, random_state=0)
    params = dict(vars(fresh))
    _inject(monkeypatch, before=_interrupt_after(3, exc)[0])
    with pytest.raises(type(exc)):
        km.fit(blobs(seed=1))
    _inject(monkeypatch, before=_interrupt_after(3, exc)[0])
    with pytest.raises(type(exc)):
        fresh.fit(X)
    monkeypatch.undo()
    assert vars(km).keys() == before.keys()
    assert all(vars(km)[name] is value for name, value in before.items())
    assert vars(fresh) == params


def test_not_fitted_error_is_also_sklearns():
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    with pytest.raises(sklearn_exceptions.NotFittedError):
        KMeans(2).predict(blobs())
    with pytest.raises(NotFittedError):
        KMeans(2).transform(blobs())


# --- pickling and moving a model between backends -------------------------------


def test_fitted_model_pickles(xp, to_xp):
    X = to_xp(blobs())
    km = KMeans(4, random_state=0).fit(X)
    clone = pickle.loads(pickle.dumps(km))
    assert_array_like(clone.cluster_centers_, km.cluster_centers_)
    np.testing.assert_array_equal(
        to_numpy(clone.cluster_centers_), to_numpy(km.cluster_centers_)
    )
    np.testing.assert_array_equal(to_numpy(clone.predict(X)), to_numpy(km.labels_))
    assert clone.get_params() == km.get_params()


def test_to_numpy_gives_a_host_model_and_leaves_the_original(xp, to_xp):
    X_np = blobs()
    X = to_xp(X_np)
    km = KMeans(4, random_state=0, init="random").fit(X)
    centers = km.cluster_centers_
    host = km.to_numpy()

    assert host is not km and km.cluster_centers_ is centers
    for name in ("cluster_centers_", "labels_"):
        assert type(getattr(host, name)) is np.ndarray, name
        np.testing.assert_array_equal(getattr(host, name), to_numpy(getattr(km, name)))
    assert host.inertia_ == km.inertia_ and host.n_iter_ == km.n_iter_
    np.testing.assert_array_equal(host.predict(X_np), to_numpy(km.predict(X)))
    # The host model pickles without the original backend's arrays.
    assert type(pickle.loads(pickle.dumps(host)).cluster_centers_) is np.ndarray


def test_to_namespace_moves_a_model_onto_the_backend(xp, device, to_xp):
    X_np = blobs()
    host = KMeans(4, random_state=0).fit(X_np)
    moved = host.to_namespace(xp, device=device)
    X = to_xp(X_np)
    assert_array_like(moved.cluster_centers_, X)
    labels = moved.predict(X)
    assert_array_like(labels, X, dtype=labels.dtype)
    np.testing.assert_array_equal(to_numpy(labels), host.labels_)


def test_to_numpy_before_fit_raises():
    with pytest.raises(NotFittedError):
        KMeans(2).to_numpy()


def test_predict_across_backends_names_both_then_works_after_conversion():
    torch = pytest.importorskip("torch")
    X_np = blobs()
    km = KMeans(4, random_state=0).fit(torch.asarray(X_np))
    with pytest.raises(TypeError, match="X is a numpy array but this model was fitted on torch"):
        km.predict(X_np)
    np.testing.assert_array_equal(km.to_numpy().predict(X_np), km.labels_.numpy())
    back = km.to_numpy().to_namespace(torch)
    assert isinstance(back.cluster_centers_, torch.Tensor)
    np.testing.assert_array_equal(back.predict(torch.asarray(X_np)).numpy(), km.labels_.numpy())


def test_predict_on_another_device_names_both():
    xps = pytest.importorskip("array_api_strict")
    X_np = blobs()
    km = KMeans(4, random_state=0).fit(xps.asarray(X_np, device=xps.Device("device1")))
    with pytest.raises(ValueError, match="X is on device .*CPU_DEVICE.* centres are on .*device1"):
        km.predict(xps.asarray(X_np))
    moved = km.to_namespace(xps, device=xps.Device("CPU_DEVICE"))
    np.testing.assert_array_equal(to_numpy(moved.predict(xps.asarray(X_np))), to_numpy(km.labels_))


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_half_precision_torch_model_converts_to_numpy(dtype_name):
    torch = pytest.importorskip("torch")
    X = torch.asarray(blobs(), dtype=getattr(torch, dtype_name))
    km = KMeans(4, random_state=0).fit(X)
    host = km.to_numpy()
    # numpy has float16 but no bfloat16: that one arrives as float32.
    expected = np.float16 if dtype_name == "float16" else np.float32
    assert host.cluster_centers_.dtype == expected
    np.testing.assert_array_equal(
        host.cluster_centers_.astype(np.float32), km.cluster_centers_.float().numpy()
    )


# --- concurrent predict / transform ---------------------------------------------


def test_concurrent_predicts_leave_blas_threads_as_they_were():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    X = blobs(n_samples=70_000, n_features=2)
    km = KMeans(4, random_state=0, max_iter=5).fit(X)
    before = blas_threads()
    try:
        for _ in range(5):
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda _: km.predict(X), range(16)))
        after = blas_threads()
    finally:
        # Give later tests the limits this one found.
        for n_threads in set(before):
            threadpoolctl.threadpool_limits(limits=n_threads, user_api="blas")
    assert after == before


def test_predict_and_transform_from_many_threads(xp, to_xp):
    # 70k rows: numpy blocks are spread over the shared worker pool, so
    # concurrent callers also share that pool.
    X = to_xp(blobs(n_samples=70_000, n_features=2))
    km = KMeans(4, random_state=0, max_iter=5).fit(X)
    slices = [slice(0, 70_000), slice(1_000, 50_000), slice(123, 777)]
    labels = {s.start: to_numpy(km.predict(X[s, :])) for s in slices}
    distances = {s.start: to_numpy(km.transform(X[s, :])) for s in slices}
    start = threading.Barrier(6)

    def work(s):
        start.wait(timeout=60)
        return s, to_numpy(km.predict(X[s, :])), to_numpy(km.transform(X[s, :]))

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(work, slices * 2))
    for s, got_labels, got_distances in results:
        np.testing.assert_array_equal(got_labels, labels[s.start])
        np.testing.assert_array_equal(got_distances, distances[s.start])


def test_fit_memory_is_linear_in_n_not_n_times_k():
    import tracemalloc

    n_samples, n_clusters = 100_000, 100
    X = blobs(n_samples=n_samples, n_features=2)
    tracemalloc.start()
    try:
        KMeans(n_clusters, random_state=0, max_iter=3).fit(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # An (n x k) float64 matrix is 80 MB; the bound is X-sized arrays
    # (labels, k-means++ distances) plus fixed-size blocks.
    assert peak < n_samples * n_clusters * 8 / 4, f"peak {peak / 1e6:.1f} MB"
    assert peak < 20 * X.nbytes, f"peak {peak / 1e6:.1f} MB for X of {X.nbytes / 1e6:.1f} MB"
