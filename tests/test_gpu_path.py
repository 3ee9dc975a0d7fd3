"""The GPU code path, proven on CPU under ``simulated_gpu()``: the kernel
class and block budget it picks, exact sums past 2**24 rows a cluster, the
host-sync budget, determinism, autograd inputs and out-of-memory retries.

Every backend-parametrised test of the suite also runs on the simulated
backends (``torch-gpusim``, ``cupy-sim`` in conftest); the tests here check
what only the simulation can show.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest

from kmeans_xp import KMeans, MiniBatchKMeans
from kmeans_xp._kernels import SIMULATION, get_kernels
from kmeans_xp._testing import simulated_gpu, to_numpy
from kmeans_xp.exceptions import MemoryRetryWarning

torch = pytest.importorskip("torch")
import array_api_compat.torch as torch_xp  # noqa: E402

from kmeans_xp._blocks import device_block_rows  # noqa: E402
from kmeans_xp._kernels.cupy import CupyKernels  # noqa: E402
from kmeans_xp._kernels.torch import TorchKernels, _scatter_add  # noqa: E402
from kmeans_xp._problem import make_problem  # noqa: E402

CPU = torch.device("cpu")


def blobs(n=3000, d=4, k=5, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    return (centres[rng.integers(0, k, n)] + rng.normal(size=(n, d))).astype(dtype)


# --- the switch -------------------------------------------------------------


def test_torch_cpu_tensors_run_the_numpy_code_in_every_estimator(monkeypatch):
    # One road for CPU tensors: fit, predict, transform, score, MiniBatch
    # fit and partial_fit run numpy on views; torch's kernels never run.
    from kmeans_xp import MiniBatchKMeans

    def refuse(*args, **kwargs):
        raise AssertionError("torch kernels ran on CPU tensors")

    X = torch.from_numpy(blobs(n=600))
    km_np = KMeans(5, n_init=1, random_state=0).fit(X.numpy())
    monkeypatch.setattr(TorchKernels, "assigner", refuse)
    monkeypatch.setattr(TorchKernels, "accumulate", refuse)
    km = KMeans(5, n_init=1, random_state=0).fit(X)
    assert isinstance(km.cluster_centers_, torch.Tensor) and isinstance(km.labels_, torch.Tensor)
    np.testing.assert_array_equal(km.labels_.numpy(), km_np.labels_)
    assert isinstance(km.predict(X), torch.Tensor)
    assert isinstance(km.transform(X), torch.Tensor)
    assert km.score(X) == pytest.approx(km_np.score(X.numpy()))
    mb = MiniBatchKMeans(5, batch_size=100, n_init=1, random_state=0).fit(X)
    mb_np = MiniBatchKMeans(5, batch_size=100, n_init=1, random_state=0).fit(X.numpy())
    np.testing.assert_array_equal(mb.cluster_centers_.numpy(), mb_np.cluster_centers_)
    assert isinstance(mb.counts_, torch.Tensor) and isinstance(mb.labels_, torch.Tensor)
    mb.partial_fit(X[:200])
    mb_np.partial_fit(X[:200].numpy())
    np.testing.assert_array_equal(mb.cluster_centers_.numpy(), mb_np.cluster_centers_)


def test_simulated_gpu_gives_cpu_tensors_the_cuda_kernels_and_budget():
    assert not get_kernels(torch_xp, CPU).on_gpu
    with simulated_gpu(free_bytes=64 << 20):
        kernels = get_kernels(torch_xp, CPU)
        assert type(kernels) is TorchKernels and kernels.on_gpu and not kernels.threaded
        assert not kernels.cheap_reads
        X = torch.zeros((1_000_000, 16))
        problem = make_problem(X, None, torch_xp, CPU, 8)
        # Blocks from the (fake) free memory, every temporary counted.
        assert problem.runner.rows == device_block_rows(1_000_000, 16, 4, 64 << 20)
        assert problem.runner.rows * 16 * 16 <= (64 << 20) // 4
        assert problem.runner.n_workers == 1
    with simulated_gpu(free_bytes=16 << 20):
        smaller = make_problem(X, None, torch_xp, CPU, 8).runner.rows
    assert smaller < problem.runner.rows
    assert not get_kernels(torch_xp, CPU).on_gpu  # switched off again


def test_simulated_cupy_runs_cupy_kernels_on_numpy():
    import sys

    import array_api_compat.numpy as np_xp

    real = sys.modules.get("cupy")
    with simulated_gpu(torch=False, cupy=True):
        assert type(get_kernels(np_xp, "cpu")) is CupyKernels
        X = blobs()
        km = KMeans(5, n_init=1, random_state=0).fit(X)
    assert sys.modules.get("cupy") is real  # stand-ins removed
    ref = KMeans(5, n_init=1, random_state=0).fit(X)
    np.testing.assert_allclose(km.cluster_centers_, ref.cluster_centers_, rtol=1e-10)


def test_simulated_scatter_add_saturates_float32_as_gpu_atomics_do():
    # The simulation adds one row at a time in the destination's dtype: a
    # float32 counter at 2**24 does not move, as on a GPU.
    with simulated_gpu():
        dest = torch.full((1,), 2.0**24, dtype=torch.float32)
        _scatter_add(dest, torch.zeros(10, dtype=torch.int64), torch.ones(10))
        assert dest.item() == 2.0**24
        wide = torch.full((1,), 2.0**24, dtype=torch.float64)
        _scatter_add(wide, torch.zeros(10, dtype=torch.int64), torch.ones(10, dtype=torch.float64))
        assert wide.item() == 2.0**24 + 10


# --- exact sums at any size -------------------------------------------------


@pytest.mark.parametrize("backend_kind", ["torch", "cupy"])
def test_counts_past_2_24_rows_a_cluster_stay_exact(backend_kind):
    # 2**24 + 3 rows of one feature in one cluster: a float32 counter would
    # stop at 2**24, and float32 sums drift.
    n = 2**24 + 3
    X_np = np.full((n, 1), 0.75, dtype=np.float32)
    X_np[::2] = 0.25
    if backend_kind == "torch":
        X, xp, device, sim = torch.from_numpy(X_np), torch_xp, CPU, {}
    else:
        import array_api_compat.numpy as xp

        X, device, sim = X_np, "cpu", {"torch": False, "cupy": True}
    with simulated_gpu(**sim):
        problem = make_problem(X, None, xp, device, 1)
        problem.runner.shift = None
        kernels = problem.kernels
        labels = xp.zeros((n,), dtype=xp.int64, device=device)
        sums, counts = kernels.cluster_sums(X, labels, None, 1)
    assert float(to_numpy(counts)[0]) == n
    expected = X_np.astype(np.float64).sum()
    assert float(to_numpy(sums)[0, 0]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("backend_kind", ["torch", "cupy", "numpy"])
def test_minibatch_running_counts_past_2_24_stay_exact(backend_kind):
    # A cluster of weight 2**24, then four steps of one row each: a float32
    # running count would stay at 2**24 (2**24 + 1 rounds back to it).
    if backend_kind == "torch":
        to_xp, sim = torch.from_numpy, {}
    else:
        to_xp, sim = np.asarray, {"torch": False, "cupy": backend_kind == "cupy"}
    heavy = np.array([2.0**24], dtype=np.float32)
    simulation = simulated_gpu(**sim) if backend_kind != "numpy" else contextlib.nullcontext()
    with simulation:
        km = MiniBatchKMeans(1, batch_size=1, random_state=0)
        km.partial_fit(to_xp(np.zeros((1, 1), dtype=np.float32)), sample_weight=to_xp(heavy))
        for _ in range(4):
            km.partial_fit(to_xp(np.ones((1, 1), dtype=np.float32)))
    assert km.counts_.dtype == km.cluster_centers_.dtype  # published in X's dtype
    assert float(to_numpy(km.counts_)[0]) == 2.0**24 + 4
    assert float(to_numpy(km.cluster_centers_)[0, 0]) == pytest.approx(4 / (2**24 + 4), rel=1e-6)


def _big_rows(n=20_000_000):
    rng = np.random.default_rng(0)
    return (0.25 + rng.standard_normal((n, 1))).astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True])
def test_k1_fit_on_20M_float32_rows_gives_the_float64_mean(weighted):
    X_np = _big_rows()
    w_np = None
    expected = X_np.astype(np.float64).mean()
    if weighted:
        w_np = np.where(np.arange(X_np.shape[0]) % 3 == 0, 2.0, 0.5).astype(np.float32)
        expected = (X_np[:, 0].astype(np.float64) * w_np).sum() / w_np.astype(np.float64).sum()
    with simulated_gpu():
        km = KMeans(1, n_init=1, init="random", random_state=0, max_iter=2).fit(
            torch.from_numpy(X_np), sample_weight=None if w_np is None else torch.from_numpy(w_np)
        )
    assert km.cluster_centers_.dtype == torch.float32
    assert float(km.cluster_centers_[0, 0]) == pytest.approx(expected, rel=1e-5)


# --- the sync budget ----------------------------------------------------------

_READS = ("item", "__bool__", "__float__", "__int__", "__index__", "tolist", "cpu", "numpy")
_UPLOADS = ("as_tensor", "tensor", "from_numpy", "asarray")


class SyncCounter:
    """Counts device-to-host reads and host-to-device copies of torch
    tensors made while ``counting`` (the simulation's internals excluded)."""

    def __init__(self):
        self.reads = 0
        self.uploads = 0
        self.active = False

    @contextlib.contextmanager
    def counting(self):
        self.reads = self.uploads = 0
        self.active = True
        try:
            yield self
        finally:
            self.active = False

    def _counts(self):
        return self.active and not SIMULATION.in_internal


@pytest.fixture
def syncs(monkeypatch):
    """A ``SyncCounter`` on patched torch methods, under ``simulated_gpu()``."""
    counter = SyncCounter()

    def read(name):
        original = getattr(torch.Tensor, name)

        def counted(*args, **kwargs):
            if counter._counts():
                counter.reads += 1
            return original(*args, **kwargs)

        return counted

    def upload(name):
        original = getattr(torch, name)

        def counted(data, *args, **kwargs):
            if counter._counts() and not isinstance(data, torch.Tensor):
                counter.uploads += 1
            return original(data, *args, **kwargs)

        return counted

    for name in _READS:
        monkeypatch.setattr(torch.Tensor, name, read(name))
    for name in _UPLOADS:
        monkeypatch.setattr(torch, name, upload(name))
    with simulated_gpu():
        yield counter


#: Reads of a fit besides its iterations: the checks of X at the door, the
#: data mean and offset, the variance (tol > 0), the best run's inertia.
FIT_READS = 4
#: Reads of a MiniBatch fit besides its steps: the checks of X (and weights)
#: at the door, the data mean and offset, the inertias of the candidate
#: initialisations (together), the final inertia.
MINIBATCH_FIT_READS = 4
#: Uploads of a k-means++ fit: its uniform draws and the last row index.
INIT_UPLOADS = 2


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_fit_reads_the_device_once_per_iteration(syncs, init):
    # Overlapping blobs and tol=0: the fit runs max_iter iterations.
    X = torch.from_numpy(blobs(n=4000, k=12, seed=1) / 4)
    seen = {}
    for max_iter in (1, 3, 7):
        km = KMeans(12, init=init, n_init=1, max_iter=max_iter, tol=0, random_state=0)
        with syncs.counting():
            km.fit(X)
        seen[km.n_iter_] = (syncs.reads, syncs.uploads)
        assert syncs.reads <= km.n_iter_ + FIT_READS, (km.n_iter_, syncs.reads)
        assert syncs.uploads <= INIT_UPLOADS
    assert len(seen) == 3  # three different iteration counts
    (n1, (r1, _)), *_, (n7, (r7, _)) = sorted(seen.items())
    assert r7 - r1 == n7 - n1  # exactly one read per extra iteration


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_weights_and_an_init_array_are_checked_in_the_read_of_x(syncs, metric):
    X = torch.from_numpy(blobs(n=4000, k=12, seed=1) / 4)
    w = torch.from_numpy(np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0]))
    init = X[:12] + 1.0
    km = KMeans(12, init=init, n_init=1, max_iter=4, tol=0, metric=metric)
    with syncs.counting():
        km.fit(X, sample_weight=w)
    # X, the weights (finite, non-negative, largest, total), the init array
    # (and the zero-norm rows of cosine): one read at the door.
    assert syncs.reads <= km.n_iter_ + FIT_READS


def test_fit_with_tolerance_reads_once_per_iteration(syncs):
    X = torch.from_numpy(blobs(n=4000, k=6, seed=2))
    km = KMeans(6, n_init=1, tol=1e-2, random_state=0)
    with syncs.counting():
        km.fit(X)
    assert km.n_iter_ >= 2
    # The pass after the converged M-step is the final E-step: n_iter + 1
    # passes, each with its read, and the variance for the tolerance.
    assert syncs.reads <= km.n_iter_ + 1 + FIT_READS


def test_kmeans_plusplus_uploads_its_draws_once(syncs):
    X = torch.from_numpy(blobs(n=2000, k=5))
    for k in (3, 20):
        with syncs.counting():
            KMeans(k, n_init=1, max_iter=1, random_state=0).fit(X)
        assert syncs.uploads <= INIT_UPLOADS


def test_kmeans_plusplus_draws_are_the_same_on_every_path():
    from kmeans_xp import kmeans_plusplus

    X = blobs(n=2000, k=7)
    _, expected = kmeans_plusplus(X, 7, random_state=3)
    with simulated_gpu():
        _, picked = kmeans_plusplus(torch.from_numpy(X), 7, random_state=3)
    np.testing.assert_array_equal(to_numpy(picked), expected)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("method", ["predict", "transform", "score"])
def test_predict_transform_and_score_read_at_most_once(syncs, method, metric, weighted):
    # The checks of X (its magnitude; zero rows for cosine) and of the
    # weights are read together; score reads them with its inertia.
    X = torch.from_numpy(blobs())
    w = torch.from_numpy(np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0]))
    km = KMeans(5, n_init=1, metric=metric, random_state=0).fit(X)
    args = {"sample_weight": w} if weighted and method != "transform" else {}
    with syncs.counting():
        getattr(km, method)(X, **args)
    assert syncs.reads <= 1 and syncs.uploads == 0


def test_score_on_bad_input_raises_after_its_one_read(syncs):
    X = torch.from_numpy(blobs())
    km = KMeans(5, n_init=1, random_state=0).fit(X)
    bad = X.clone()
    bad[7, 1] = float("nan")
    with syncs.counting(), pytest.raises(ValueError, match="NaN or infinity"):
        km.score(bad)
    assert syncs.reads == 1
    w = torch.ones(X.shape[0], dtype=X.dtype)
    w[3] = -1.0
    with syncs.counting(), pytest.raises(ValueError, match="negative"):
        km.score(X, sample_weight=w)
    assert syncs.reads == 1


def test_validation_reads_once_whatever_the_size_of_X(syncs):
    # 3 * 2**20 rows of 4 features: three blocks of the magnitude check of X
    # (4M values each), which used to read the device once per block.
    n = 3 << 20
    rng = np.random.default_rng(0)
    X = torch.from_numpy(rng.standard_normal((n, 4), dtype=np.float32))
    w = torch.from_numpy(rng.uniform(0.5, 2.0, n).astype(np.float32))
    km = KMeans(2, init="random", n_init=1, max_iter=1, tol=0, random_state=0)
    with syncs.counting():
        km.fit(X, sample_weight=w)
    assert syncs.reads <= km.n_iter_ + FIT_READS + 1
    with syncs.counting():
        km.predict(X)
    assert syncs.reads <= 1
    with syncs.counting():
        km.score(X, sample_weight=w)
    assert syncs.reads <= 1
    bad = X.clone()
    bad[-1, 0] = float("inf")  # in the last block
    with syncs.counting(), pytest.raises(ValueError, match="NaN or infinity"):
        km.predict(bad)
    assert syncs.reads == 1


# --- MiniBatchKMeans: one read per step ------------------------------------


def _reassignments(monkeypatch):
    """Count the steps that move light centres (their picks are drawn)."""
    import kmeans_xp._minibatch as minibatch

    calls = []
    original = minibatch.distinct_rows

    def counted(problem, n, rng):
        calls.append(n)
        return original(problem, n, rng)

    monkeypatch.setattr(minibatch, "distinct_rows", counted)
    return calls


@pytest.mark.parametrize("weighted", [False, True])
def test_minibatch_fit_reads_the_device_once_per_step(syncs, monkeypatch, weighted):
    X = torch.from_numpy(blobs(n=4000, k=12, seed=1) / 4)
    w = None
    if weighted:
        w = torch.from_numpy(np.random.default_rng(0).uniform(0.5, 2.0, X.shape[0]))
    reassigned = _reassignments(monkeypatch)
    seen = {}
    for max_iter in (1, 2, 4):
        # Random initial centres and a high reassignment ratio: light
        # centres move on many steps, so the reassignment is within the
        # count; three candidate initialisations, whose inertias are read
        # together.
        params = dict(init="random", n_init=3, batch_size=500, reassignment_ratio=0.5)
        mb = MiniBatchKMeans(
            12, max_iter=max_iter, max_no_improvement=None, random_state=0, **params
        )
        with syncs.counting():
            mb.fit(X, sample_weight=w)
        seen[mb.n_steps_] = syncs.reads
        assert syncs.reads <= mb.n_steps_ + MINIBATCH_FIT_READS, (mb.n_steps_, syncs.reads)
    assert len(reassigned) > 8, "too few steps reassigned a centre"
    assert sorted(seen) == [8, 16, 32]
    assert seen[32] - seen[8] == 32 - 8  # exactly one read per extra step


def test_minibatch_fit_with_tolerance_reads_once_per_step(syncs):
    X = torch.from_numpy(blobs(n=4000, k=6, seed=2))
    mb = MiniBatchKMeans(6, batch_size=200, tol=1e-3, max_no_improvement=None, random_state=0)
    with syncs.counting():
        mb.fit(X)
    assert mb.n_steps_ < (100 * 4000) // 200  # stopped by the tolerance
    # The variance for the tolerance, and the step after the converged one,
    # whose read shows the convergence (and which is undone).
    assert syncs.reads <= mb.n_steps_ + 1 + MINIBATCH_FIT_READS + 1


@pytest.mark.parametrize("compute_labels", [False, True])
def test_minibatch_partial_fit_reads_once_per_step(syncs, monkeypatch, compute_labels):
    X = torch.from_numpy(blobs(n=4000, k=12, seed=1) / 4)
    reassigned = _reassignments(monkeypatch)
    params = dict(init="random", reassignment_ratio=0.5, random_state=0)
    mb = MiniBatchKMeans(12, compute_labels=compute_labels, **params)
    # Each call: the checks of the batch, its step (and its inertia).
    per_call = 2 + compute_labels
    with syncs.counting():
        mb.partial_fit(X[:400])
    assert syncs.reads <= per_call + 1  # + the first batch's mean (the shift)
    for start in range(400, 4000, 400):
        with syncs.counting():
            mb.partial_fit(X[start : start + 400])
        assert syncs.reads <= per_call, (start, syncs.reads)
    assert mb.n_steps_ == 10 and reassigned


# --- determinism and autograd ---------------------------------------------


def _atomics_in_random_order(monkeypatch):
    """Make the simulated GPU scatter-add add its rows in a new order on
    every call, as GPU atomics may (the simulation's ``np.add.at`` adds
    them in row order, which would make any fit repeat bitwise). Returns
    the list of calls."""
    import kmeans_xp._kernels.torch as torch_kernels

    original = torch_kernels._scatter_add
    orders = np.random.default_rng(0)
    calls = []

    def scatter_add(dest, labels, rows):
        calls.append(labels.shape[0])
        order = torch.from_numpy(orders.permutation(labels.shape[0]))
        original(dest, labels[order], rows[order])

    monkeypatch.setattr(torch_kernels, "_scatter_add", scatter_add)
    return calls


@contextlib.contextmanager
def _deterministic_algorithms():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def test_atomics_in_another_order_give_other_bits(monkeypatch):
    # What the deterministic mode is for: without it, float64 sums added in
    # another order differ in their last bits.
    calls = _atomics_in_random_order(monkeypatch)
    X = torch.from_numpy(blobs(n=3000, k=6))
    labels = torch.from_numpy(np.random.default_rng(1).integers(0, 6, 3000))
    with simulated_gpu():
        kernels = get_kernels(torch_xp, CPU)
        first, _ = kernels.cluster_sums(X, labels, None, 6)
        second, _ = kernels.cluster_sums(X, labels, None, 6)
    assert calls and not torch.equal(first, second)
    with simulated_gpu(), _deterministic_algorithms():
        first, _ = kernels.cluster_sums(X, labels, None, 6)
        second, _ = kernels.cluster_sums(X, labels, None, 6)
    assert torch.equal(first, second)


def test_deterministic_mode_fits_repeat_bitwise_without_atomics_or_float_cumsum(monkeypatch):
    original = torch.cumsum

    def cuda_like_cumsum(x, *args, **kwargs):
        # CUDA has no deterministic float cumsum: it raises there.
        if torch.are_deterministic_algorithms_enabled() and x.is_floating_point():
            raise RuntimeError("cumsum_cuda_kernel does not have a deterministic implementation")
        return original(x, *args, **kwargs)

    monkeypatch.setattr(torch, "cumsum", cuda_like_cumsum)
    atomics = _atomics_in_random_order(monkeypatch)
    X = torch.from_numpy(blobs(n=3000, k=6, dtype=np.float32))
    w = torch.from_numpy(np.random.default_rng(0).uniform(0.5, 2, 3000).astype(np.float32))
    with _deterministic_algorithms(), simulated_gpu():
        a = KMeans(6, n_init=2, random_state=0).fit(X, sample_weight=w)
        b = KMeans(6, n_init=2, random_state=0).fit(X, sample_weight=w)
        mb_params = dict(
            batch_size=256, init="random", max_iter=3, reassignment_ratio=0.5, random_state=0
        )
        mb_a = MiniBatchKMeans(6, **mb_params).fit(X, sample_weight=w)
        mb_b = MiniBatchKMeans(6, **mb_params).fit(X, sample_weight=w)
    # Sums by one-hot products: no scatter-add was made.
    assert atomics == []
    assert torch.equal(a.cluster_centers_, b.cluster_centers_)
    assert torch.equal(a.labels_, b.labels_)
    assert torch.equal(mb_a.cluster_centers_, mb_b.cluster_centers_)
    assert torch.equal(mb_a.counts_, mb_b.counts_)
    ref = KMeans(6, n_init=2, random_state=0).fit(X.numpy(), sample_weight=w.numpy())
    np.testing.assert_allclose(a.cluster_centers_.numpy(), ref.cluster_centers_, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("simulated", [False, True])
def test_requires_grad_inputs_give_results_without_a_graph(simulated):
    X = torch.from_numpy(blobs()).requires_grad_(True)
    w = torch.ones(X.shape[0], dtype=X.dtype, requires_grad=True)
    init = X[:5].detach().clone().requires_grad_(True)
    with simulated_gpu() if simulated else contextlib.nullcontext():
        km = KMeans(5, init=init, n_init=1).fit(X, sample_weight=w)
        transformed = km.transform(X)
    for result in (km.cluster_centers_, transformed):
        assert result.grad_fn is None and not result.requires_grad


# --- device memory and faults -----------------------------------------------


def _failing_over(monkeypatch, module, name, max_rows, error):
    """Make ``module.name`` raise ``error`` for blocks over ``max_rows`` rows
    (its first argument's rows, or its second for addmm)."""
    original = getattr(module, name)
    calls = {"failed": 0}

    def faulty(*args, **kwargs):
        rows = args[1].shape[0] if name == "addmm" else args[0].shape[0]
        if rows > max_rows:
            calls["failed"] += 1
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, faulty)
    return calls


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    ],
    ids=["cublas-alloc", "torch-oom"],
)
def test_out_of_memory_halves_the_block_and_gives_the_same_fit(monkeypatch, error):
    X_np = blobs(n=6000, k=5, seed=3)
    X = torch.from_numpy(X_np)
    with simulated_gpu():
        expected = KMeans(5, n_init=1, random_state=0).fit(X)
        calls = _failing_over(monkeypatch, torch, "addmm", 700, error)
        with pytest.warns(MemoryRetryWarning):
            km = KMeans(5, n_init=1, random_state=0).fit(X)
    assert calls["failed"] > 0
    np.testing.assert_allclose(km.cluster_centers_.numpy(), expected.cluster_centers_.numpy(), rtol=1e-12)
    np.testing.assert_array_equal(km.labels_.numpy(), expected.labels_.numpy())
    assert km.inertia_ == pytest.approx(expected.inertia_, rel=1e-12)


def test_out_of_memory_in_the_sums_does_not_count_a_block_twice(monkeypatch):
    # The float64 copy of the block fails for large blocks: the accumulators
    # must be untouched so that the retried halves are each added once.
    X = torch.from_numpy(blobs(n=6000, k=5, seed=4).astype(np.float32))
    with simulated_gpu():
        expected = KMeans(5, n_init=1, random_state=0).fit(X)
        original = torch.Tensor.to

        def faulty_to(self, *args, **kwargs):
            if self.ndim == 2 and self.shape[0] > 500 and args and args[0] == torch.float64:
                raise torch.OutOfMemoryError("CUDA out of memory")
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, "to", faulty_to)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MemoryRetryWarning)
            km = KMeans(5, n_init=1, random_state=0).fit(X)
    np.testing.assert_allclose(km.cluster_centers_.numpy(), expected.cluster_centers_.numpy(), rtol=1e-6)
    assert km.inertia_ == pytest.approx(expected.inertia_, rel=1e-6)


def test_cupy_out_of_memory_halves_the_block(monkeypatch):
    X = blobs(n=6000, k=5, seed=5)
    with simulated_gpu(torch=False, cupy=True):
        import cupy  # the stand-in

        expected = KMeans(5, n_init=1, random_state=0).fit(X)
        calls = _failing_over(
            monkeypatch, cupy, "argmin", 800, cupy.cuda.memory.OutOfMemoryError("out of memory")
        )
        with pytest.warns(MemoryRetryWarning):
            km = KMeans(5, n_init=1, random_state=0).fit(X)
    assert calls["failed"] > 0
    np.testing.assert_allclose(km.cluster_centers_, expected.cluster_centers_, rtol=1e-12)


# --- half precision without a copy ------------------------------------------


@pytest.mark.parametrize("kind", ["numpy-float16", "torch-float16", "torch-bfloat16", "gpusim-float16"])
def test_half_precision_fits_on_float32_blocks_and_returns_its_dtype(kind):
    X32 = blobs(n=3000, k=5, dtype=np.float32)
    X16 = X32.astype(np.float16)
    if kind == "numpy-float16":
        X = X16
    elif kind == "torch-bfloat16":
        X = torch.from_numpy(X32).to(torch.bfloat16)
    else:
        X = torch.from_numpy(X16)
    with simulated_gpu() if kind.startswith("gpusim") else contextlib.nullcontext():
        km = KMeans(5, n_init=1, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == X.dtype
    # The same fit as on the float32 values of the half-precision rows.
    ref = KMeans(5, n_init=1, random_state=0).fit(to_numpy(X).astype(np.float32)
                                                 if kind != "torch-bfloat16"
                                                 else X.to(torch.float32).numpy())
    centers = km.cluster_centers_
    centers = centers.to(torch.float32).numpy() if kind.startswith(("torch", "gpusim")) else centers
    np.testing.assert_allclose(
        centers.astype(np.float32), ref.cluster_centers_,
        rtol=1e-2, atol=1e-2,
    )
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=1e-4)


@pytest.mark.slow
def test_half_precision_fit_takes_at_most_half_of_X_extra():
    import tracemalloc

    # 1M x 64 float16, k=64 (random init and 3 iterations: k-means++ makes
    # k passes, each casting every block, and adds only O(n) vectors).
    X = np.random.default_rng(0).standard_normal((1_000_000, 64)).astype(np.float16)
    tracemalloc.start()
    try:
        km = KMeans(64, init="random", n_init=1, max_iter=3, random_state=0).fit(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert km.cluster_centers_.dtype == np.float16
    assert peak <= 0.5 * X.nbytes, peak / X.nbytes
