"""Side-by-side k-means benchmark: kmeans_xp against scikit-learn, faiss and
fast-pytorch-kmeans, on the same data, the same initial centres and a fixed
number of Lloyd iterations (tol=0).

Usage::

    python benchmarks/run.py            # every CPU configuration (minutes)
    python benchmarks/run.py --quick    # fewer iterations, under 2 minutes
    python benchmarks/run.py --gpu-only # the GPU configurations (needs CUDA)
    python benchmarks/run.py --configs 200k-32-64,latency

Prints a table, writes ``benchmarks/results.json`` and a bar chart
``benchmarks/results.png`` (see ``benchmarks/README.md``). Peers that are
not installed are skipped with a note; nothing here is a runtime dependency
of kmeans_xp (``pip install kmeans_xp[bench]``).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import sys
import time
import tracemalloc
from dataclasses import dataclass, field

import numpy as np

from kmeans_xp.cli import _atomic_output

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Config:
    name: str
    n: int
    d: int
    k: int
    kind: str = "lloyd"  # "lloyd", "latency", "memory", "gpu-lloyd", "gpu-memory"
    iters: int = 10
    quick_iters: int = 3
    gpu: bool = False


# --quick runs half the iterations or fewer, not a handful: with 5 and 2,
# the first passes and the fixed costs (data mean, final assignment)
# decided its rows (on one machine 0.97x and 1.02x against 1.16x-1.28x in
# full runs); with 10 and 4 it gave 1.23x and 1.21x, in 44 s on 2 cores.
CONFIGS = {
    c.name: c
    for c in [
        Config("200k-32-64", 200_000, 32, 64, iters=20, quick_iters=10),
        Config("1M-16-8", 1_000_000, 16, 8, iters=20, quick_iters=10),
        Config("100k-128-1024", 100_000, 128, 1024, iters=10, quick_iters=4),
        Config("latency-1k-2-3", 1_000, 2, 3, kind="latency"),
        Config("memory-1M-32-1024", 1_000_000, 32, 1024, kind="memory", iters=2, quick_iters=1),
        Config("gpu-1M-128-4096", 1_000_000, 128, 4096, kind="gpu-lloyd", iters=10,
               quick_iters=5, gpu=True),
        Config("gpu-10M-64-1024", 10_000_000, 64, 1024, kind="gpu-memory", iters=3,
               quick_iters=2, gpu=True),
        # B=64 problems of (n, d, k); --quick runs 8 of them (see batched_rows).
        Config("batched-64x20k-16-256", 20_000, 16, 256, kind="batched", iters=10, quick_iters=3),
        Config("gpu-batched-64x20k-16-256", 20_000, 16, 256, kind="batched", iters=20,
               quick_iters=5, gpu=True),
        Config("pq-50k-32-8x8", 50_000, 32, 256, kind="pq"),
        # Host memmap streamed to a device in blocks vs the in-memory fit.
        Config("stream-500k-32-64", 500_000, 32, 64, kind="stream", iters=10, quick_iters=4),
        Config("gpu-stream-10M-64-1024", 10_000_000, 64, 1024, kind="stream", iters=5,
               quick_iters=2, gpu=True),
        # torch.distributed: 2 gloo processes on half the rows each vs one.
        Config("dist-400k-32-64", 400_000, 32, 64, kind="dist", iters=10, quick_iters=4),
        # 100k x 50k CSR at 0.1% density (50 nonzeros a row). Each dense
        # (k x d) array (centres, sums) is k * 0.0066 x the nonzeros' storage
        # here, and a Lloyd step holds up to four: see benchmarks/README.md.
        # The k = 64 and 128 rows (not in the default run: minutes) are where
        # those arrays approach and pass twice the storage.
        Config("sparse-100k-50k-32", 100_000, 50_000, 32, kind="sparse", iters=5, quick_iters=2),
        Config("sparse-100k-50k-64", 100_000, 50_000, 64, kind="sparse", iters=5, quick_iters=2),
        Config("sparse-100k-50k-128", 100_000, 50_000, 128, kind="sparse", iters=5,
               quick_iters=2),
    ]
}
CPU_DEFAULT = ["200k-32-64", "1M-16-8", "100k-128-1024", "latency-1k-2-3", "memory-1M-32-1024",
               "batched-64x20k-16-256", "pq-50k-32-8x8", "stream-500k-32-64", "dist-400k-32-64",
               "sparse-100k-50k-32"]
GPU_DEFAULT = ["gpu-1M-128-4096", "gpu-10M-64-1024", "gpu-batched-64x20k-16-256",
               "gpu-stream-10M-64-1024"]


@dataclass
class Row:
    config: str
    impl: str
    device: str
    seconds: float | None = None  # per iteration (per fit for latency)
    limit_seconds: float | None = None
    inertia: float | None = None
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def fraction(self):
        if self.seconds and self.limit_seconds:
            return self.limit_seconds / self.seconds
        return None


# --------------------------------------------------------------- helpers


def _have(module: str) -> bool:
    try:
        __import__(module)
        return True
    except Exception:
        return False


def _cuda_available() -> bool:
    if not _have("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def _cupy_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def _sync(device: str) -> None:
    """Wait for queued GPU work, so every timed call ends on the host."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
    elif device == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()


def _timed_call(fn, device: str = "cpu") -> tuple[float, object]:
    """Wall time of one call (GPU work synchronised on both sides) and its
    result. The garbage collector is off during the call, as in ``timeit``:
    collecting right before it flushed the CPU caches and added about
    0.5 ms to every implementation's whole fit on the latency row. GPU
    calls still follow a collection, so that tensors left in reference
    cycles by an earlier call do not crowd the device."""
    if device != "cpu":
        gc.collect()
    _sync(device)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        elapsed = time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()
    return elapsed, out


def _best_time(fn, repeats: int, device: str = "cpu") -> tuple[float, object]:
    """Best wall time of ``repeats`` calls of ``fn`` (warmed up by the
    caller), and the result of the last call."""
    best, out = math.inf, None
    for _ in range(repeats):
        t, out = _timed_call(fn, device)
        best = min(best, t)
    return best, out


def _best_times(calls: dict, repeats: int) -> dict:
    """Best wall time of ``repeats`` calls of each ``(fn, device)`` in
    ``calls``, and the result of its last call, timed in rounds: every
    implementation once per round, so that all of them sample the same
    moments of a shared machine, instead of one of them a quiet minute and
    the next a busy one. Each round starts one implementation further on,
    so that none always runs right after the same neighbour (kmeans_xp's
    numpy fits ran 5% slower right after fast-pytorch-kmeans's multi-second
    fits than after another kmeans_xp fit; scikit-learn's did not). A call
    that raises drops its implementation, whose entry is then the
    exception."""
    best = {key: (math.inf, None) for key in calls}
    keys = list(calls)
    for round_index in range(repeats):
        start = round_index % max(1, len(keys))
        for key in keys[start:] + keys[:start]:
            fn, device = calls[key]
            if isinstance(best[key][1], Exception):
                continue
            try:
                t, out = _timed_call(fn, device)
            except Exception as exc:  # a peer failing must not stop the run
                best[key] = (math.inf, exc)
                continue
            best[key] = (min(best[key][0], t), out)
    return best


def make_data(cfg: Config, seed: int = 0):
    """Gaussian blobs (float32) and ``k`` distinct rows as initial centres."""
    rng = np.random.default_rng(seed)
    n_blobs = max(cfg.k, 4)
    # Overlapping blobs: Lloyd keeps moving for the timed iterations
    # (well separated ones converge early and end the run before max_iter).
    means = rng.normal(scale=1.0, size=(n_blobs, cfg.d)).astype(np.float32)
    X = np.empty((cfg.n, cfg.d), dtype=np.float32)
    step = 1 << 20
    for start in range(0, cfg.n, step):
        stop = min(cfg.n, start + step)
        X[start:stop] = means[rng.integers(n_blobs, size=stop - start)]
        X[start:stop] += rng.standard_normal((stop - start, cfg.d), dtype=np.float32)
    init = X[np.sort(rng.choice(cfg.n, size=cfg.k, replace=False))].copy()
    return X, init


def reference_inertia(X: np.ndarray, centers: np.ndarray) -> float:
    """sum ||x - c||^2 to the nearest centre, in float64, in blocks."""
    C = np.asarray(centers, dtype=np.float64)
    c2 = (C * C).sum(1)
    total = 0.0
    for start in range(0, X.shape[0], 8192):
        B = X[start : start + 8192].astype(np.float64)
        d2 = (B * B).sum(1)[:, None] - 2 * B @ C.T + c2
        total += float(np.maximum(d2.min(1), 0).sum())
    return total


# --------------------------------------------------------- machine limits


def cpu_limits(quick: bool) -> dict:
    """float32 GEMM rate (FLOP/s) and read bandwidth (B/s) of this CPU: the
    best of numpy and torch, so the limit is never understated."""
    size = 2048 if quick else 4096
    a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
    a @ a
    t, _ = _best_time(lambda: a @ a, 3)
    gemm = 2 * size**3 / t
    big = np.ones(1 << 27, dtype=np.float32)  # 512 MiB, far beyond any cache
    big.sum()
    t, _ = _best_time(big.sum, 3)
    bandwidth = big.nbytes / t
    if _have("torch"):
        import torch

        ta = torch.from_numpy(a)
        ta @ ta
        t, _ = _best_time(lambda: ta @ ta, 3)
        gemm = max(gemm, 2 * size**3 / t)
        tb = torch.from_numpy(big)
        tb.sum()
        t, _ = _best_time(tb.sum, 3)
        bandwidth = max(bandwidth, big.nbytes / t)
    return {"gemm_flops": gemm, "read_bytes_per_s": bandwidth}


def gpu_limits() -> dict:
    """float32 GEMM rate and read bandwidth of CUDA device 0 (torch; TF32
    off, as kmeans_xp computes in true float32)."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    size = 8192
    a = torch.randn(size, size, device="cuda")
    a @ a
    t, _ = _best_time(lambda m=a: m @ m, 5, "cuda")
    big = torch.ones(1 << 30, device="cuda")  # 4 GiB
    big.sum()
    tb, _ = _best_time(big.sum, 5, "cuda")
    del a, big
    torch.cuda.empty_cache()
    return {"gemm_flops": 2 * size**3 / t, "read_bytes_per_s": 4 * (1 << 30) / tb}


def limit_seconds(cfg: Config, limits: dict, itemsize: int = 4) -> float:
    """Lower bound on one Lloyd iteration: the distance GEMM at peak rate or
    one read of X at full bandwidth, whichever is slower."""
    gemm = 2 * cfg.n * cfg.k * cfg.d / limits["gemm_flops"]
    read = cfg.n * cfg.d * itemsize / limits["read_bytes_per_s"]
    return max(gemm, read)


# ---------------------------------------------------------- implementations
# Each returns (seconds per iteration, final centres as numpy) or raises.


# Each prepare_* warms its implementation up (imports, kernel compilation,
# allocator pools) and returns ``(fit, device, centers)``: the call to time,
# where it runs, and the final centres (numpy) of a fitted model.


def _check_iterations(km, iters: int) -> None:
    if km.n_iter_ != iters:
        raise RuntimeError(f"converged after {km.n_iter_} of {iters} iterations")


def _kernels_of(backend: str):
    """``numpy-plain``: kmeans_xp's plain numpy kernels, as without numba
    (``numpy`` takes the fused numba kernel where numba is installed)."""
    import contextlib

    from kmeans_xp._testing import fused_kernels

    return fused_kernels(False) if backend == "numpy-plain" else contextlib.nullcontext()


def prepare_kmeans_xp(X, init, iters, *, backend: str):
    from kmeans_xp import KMeans
    from kmeans_xp._array_api import to_host

    if backend in ("numpy", "numpy-plain"):
        Xb, Cb, device = X, init, "cpu"
    elif backend in ("torch", "torch-cuda"):
        import torch

        device = "cuda" if backend == "torch-cuda" else "cpu"
        Xb, Cb = torch.from_numpy(X).to(device), torch.from_numpy(init).to(device)
    elif backend == "cupy":
        import cupy

        device = "cupy"
        Xb, Cb = cupy.asarray(X), cupy.asarray(init)
    else:
        raise ValueError(backend)

    def fit(max_iter=iters):
        import warnings

        with warnings.catch_warnings(), _kernels_of(backend):
            # Blob data can leave a cluster empty: relocated, as in sklearn.
            warnings.simplefilter("ignore")
            return KMeans(len(init), init=Cb, n_init=1, max_iter=max_iter, tol=0).fit(Xb)

    fit(1)

    def centers(km):
        _check_iterations(km, iters)
        return to_host(km.cluster_centers_)

    return fit, device, centers


def prepare_sklearn(X, init, iters):
    import warnings

    from sklearn.cluster import KMeans

    def fit(max_iter=iters):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return KMeans(len(init), init=init, n_init=1, max_iter=max_iter, tol=0,
                          algorithm="lloyd").fit(X)

    fit(1)

    def centers(km):
        _check_iterations(km, iters)
        return km.cluster_centers_

    return fit, "cpu", centers


def prepare_faiss(X, init, iters, *, gpu: bool):
    import faiss

    def fit(niter=iters):
        # max_points_per_centroid large: train on every row, like the others.
        km = faiss.Kmeans(X.shape[1], len(init), niter=niter, gpu=gpu, seed=0,
                          min_points_per_centroid=1, max_points_per_centroid=1 << 30)
        km.train(X, init_centroids=init)
        return km

    fit(1)
    # faiss syncs before returning to numpy.
    return fit, "cpu", lambda km: km.centroids


def prepare_fast_pytorch(X, init, iters, *, device: str):
    import torch
    from fast_pytorch_kmeans import KMeans

    Xt = torch.from_numpy(X).to(device)
    Ct = torch.from_numpy(init).to(device)

    def fit(max_iter=iters):
        km = KMeans(len(init), max_iter=max_iter, tol=-1.0, verbose=0)
        km.fit_predict(Xt, centroids=Ct.clone())
        return km

    fit(1)
    return fit, device, lambda km: km.centroids.cpu().numpy()


# ---------------------------------------------------------------- configs


def lloyd_rows(cfg: Config, X, init, iters, repeats, limits, *, gpu: bool) -> list[Row]:
    """One row per implementation, same data, centres and iteration count,
    timed in rounds (see ``_best_times``)."""
    impls = []
    if gpu:
        if _cuda_available():
            impls.append(("kmeans_xp", "torch-cuda",
                          lambda: prepare_kmeans_xp(X, init, iters, backend="torch-cuda")))
        if _cupy_available():
            impls.append(("kmeans_xp", "cupy",
                          lambda: prepare_kmeans_xp(X, init, iters, backend="cupy")))
        impls.append(("faiss", "faiss-gpu", lambda: prepare_faiss(X, init, iters, gpu=True)))
        impls.append(("fast-pytorch-kmeans", "torch-cuda",
                      lambda: prepare_fast_pytorch(X, init, iters, device="cuda")))
    else:
        impls.append(("kmeans_xp", "numpy",
                      lambda: prepare_kmeans_xp(X, init, iters, backend="numpy")))
        if _have("numba"):
            impls.append(("kmeans_xp", "numpy-plain",
                          lambda: prepare_kmeans_xp(X, init, iters, backend="numpy-plain")))
        impls.append(("kmeans_xp", "torch",
                      lambda: prepare_kmeans_xp(X, init, iters, backend="torch")))
        impls.append(("scikit-learn", "numpy", lambda: prepare_sklearn(X, init, iters)))
        impls.append(("faiss", "faiss-cpu", lambda: prepare_faiss(X, init, iters, gpu=False)))
        impls.append(("fast-pytorch-kmeans", "torch",
                      lambda: prepare_fast_pytorch(X, init, iters, device="cpu")))
    needs = {"numpy": None, "numpy-plain": None, "torch": "torch", "torch-cuda": "torch", "cupy": "cupy",
             "faiss-cpu": "faiss", "faiss-gpu": "faiss"}
    peers = {"scikit-learn": "sklearn", "fast-pytorch-kmeans": "fast_pytorch_kmeans"}
    limit = limit_seconds(cfg, limits)
    rows, calls, results = [], {}, {}
    for impl, device, prepare in impls:
        row = Row(cfg.name, impl, device, limit_seconds=limit)
        rows.append(row)
        module = peers.get(impl) or needs.get(device)
        if module and not _have(module):
            row.note = f"skipped: {module} not installed"
        elif device == "faiss-gpu" and not (_have("faiss") and _faiss_gpus() > 0):
            row.note = "skipped: faiss has no GPU support here (faiss-cpu)"
        else:
            try:
                fit, sync_device, centers = prepare()
            except Exception as exc:  # a peer failing must not stop the run
                row.note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
            else:
                calls[len(rows) - 1] = (fit, sync_device)
                results[len(rows) - 1] = centers
    for index, (seconds, km) in _best_times(calls, repeats).items():
        row = rows[index]
        try:
            if isinstance(km, Exception):
                raise km
            row.inertia = reference_inertia(X, results[index](km))
            row.seconds = seconds / iters
        except Exception as exc:
            row.note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    for row in rows:
        print(_format_row(row), flush=True)
    _check_agreement(rows)
    return rows


def _faiss_gpus() -> int:
    import faiss

    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def _check_agreement(rows: list[Row], rtol: float = 1e-3) -> None:
    """Flag rows whose final inertia differs from kmeans_xp/numpy's (or the
    first kmeans_xp row's): the implementations did not do the same work."""
    ref = next((r for r in rows if r.impl == "kmeans_xp" and r.inertia is not None), None)
    if ref is None:
        return
    for r in rows:
        if r.inertia is not None and abs(r.inertia - ref.inertia) > rtol * abs(ref.inertia):
            r.note = (r.note + " " if r.note else "") + (
                f"WARNING inertia {r.inertia:.6g} vs {ref.inertia:.6g}"
            )
            print(f"  ! {r.impl}/{r.device}: {r.note}", flush=True)


def latency_rows(cfg: Config, repeats: int, seeds: int) -> list[Row]:
    """A whole ``fit`` (k-means++ init, n_init=1, default tol) on tiny data:
    fixed overhead is all there is to measure.

    How many iterations a fit takes depends on its initial centres, and the
    same seed draws other centres in each library; so every implementation
    is timed over ``seeds`` seeds (best of ``repeats`` calls each, in rounds
    as ``_best_times`` does) and the medians of the times and of the
    iteration counts are reported.
    """
    import warnings

    X, _ = make_data(cfg)
    impls = []
    from kmeans_xp import KMeans

    impls.append(("kmeans_xp", "numpy", lambda seed: KMeans(cfg.k, n_init=1, random_state=seed).fit(X)))
    if _have("numba"):
        def plain(seed):
            with _kernels_of("numpy-plain"):
                return KMeans(cfg.k, n_init=1, random_state=seed).fit(X)

        impls.append(("kmeans_xp", "numpy-plain", plain))
    if _have("torch"):
        import torch

        Xt = torch.from_numpy(X)
        impls.append(
            ("kmeans_xp", "torch", lambda seed: KMeans(cfg.k, n_init=1, random_state=seed).fit(Xt))
        )
    if _have("sklearn"):
        from sklearn.cluster import KMeans as SKKMeans

        def theirs(seed):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return SKKMeans(cfg.k, n_init=1, random_state=seed).fit(X)

        impls.append(("scikit-learn", "numpy", theirs))
    for _, _, fit in impls:
        fit(0)  # warm-up: imports and first-call costs
    times = {i: [] for i in range(len(impls))}
    n_iters = {i: [] for i in range(len(impls))}
    for seed in range(seeds):
        calls = {i: ((lambda fit=fit, seed=seed: fit(seed)), "cpu") for i, (_, _, fit) in enumerate(impls)}
        for i, (t, km) in _best_times(calls, repeats).items():
            if isinstance(km, Exception):
                raise km
            times[i].append(t)
            n_iters[i].append(km.n_iter_)
    rows = []
    for i, (impl, device, _) in enumerate(impls):
        median_iters = float(np.median(n_iters[i]))
        note = f"whole fit, median over {seeds} seeds ({int(median_iters)} iterations)"
        rows.append(Row(cfg.name, impl, device, seconds=float(np.median(times[i])), note=note,
                        extra={"n_iter_median": median_iters}))
    for row in rows:
        print(_format_row(row), flush=True)
    return rows


def memory_rows(cfg: Config, iters: int) -> list[Row]:
    """Peak working memory of ``fit`` beyond X itself, as a fraction of X's
    size: tracemalloc for numpy (numpy reports its buffers to it)."""
    from kmeans_xp import KMeans

    X, init = make_data(cfg)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        KMeans(cfg.k, init=init, n_init=1, max_iter=iters, tol=0).fit(X)
    seconds = (time.perf_counter() - t0) / iters
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    ratio = peak / X.nbytes
    row = Row(cfg.name, "kmeans_xp", "numpy", seconds=seconds,
              note=f"peak working memory {peak / 2**20:.1f} MiB = {ratio:.3f} x X",
              extra={"peak_bytes": peak, "x_bytes": X.nbytes, "ratio": ratio})
    print(_format_row(row), flush=True)
    return [row]


def sparse_rows(cfg: Config, iters: int, repeats: int) -> list[Row]:
    """A scipy CSR matrix at 0.1% density: kmeans_xp's fit time against
    scikit-learn's on the same matrix and initial centres, and kmeans_xp's
    peak working memory (tracemalloc, its own call) against the nonzeros'
    storage (data, indices, row pointers)."""
    import warnings

    import scipy.sparse

    from kmeans_xp import KMeans

    rng = np.random.default_rng(0)
    per_row = max(1, cfg.d // 1000)
    indices = np.sort(rng.integers(0, cfg.d, (cfg.n, per_row), dtype=np.int32), axis=1).ravel()
    indptr = np.arange(0, cfg.n * per_row + 1, per_row, dtype=np.int64)
    X = scipy.sparse.csr_matrix((rng.random(indices.size), indices, indptr), shape=(cfg.n, cfg.d))
    X.sum_duplicates()
    storage = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    init = X[rng.choice(cfg.n, cfg.k, replace=False)].toarray()

    def ours():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return KMeans(cfg.k, init=init, n_init=1, max_iter=iters, tol=0).fit(X)

    calls = {"kmeans_xp": (ours, "cpu")}
    if _have("sklearn"):
        fit, _, _ = prepare_sklearn(X, init, iters)
        calls["sklearn"] = (fit, "cpu")
    ours()  # warm-up
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    ours()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    rows = []
    for impl, (seconds, km) in _best_times(calls, repeats).items():
        row = Row(cfg.name, impl, "scipy.sparse", seconds=seconds / iters, inertia=km.inertia_)
        if impl == "kmeans_xp":
            ratio = peak / storage
            row.note = (f"peak working memory {peak / 2**20:.1f} MiB = {ratio:.3f} x nnz storage"
                        f" (one k x d array: {init.nbytes / storage:.3f} x)")
            row.extra = {"peak_bytes": peak, "nnz_bytes": storage, "ratio": ratio}
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def gpu_memory_rows(cfg: Config, iters: int) -> list[Row]:
    """A fit on the large GPU configuration: it must finish without running
    out of memory; peak memory from ``torch.cuda.max_memory_allocated``."""
    rows = []
    if not _cuda_available():
        return [Row(cfg.name, "kmeans_xp", "torch-cuda", note="skipped: no CUDA device")]
    import torch

    from kmeans_xp import KMeans

    gen = torch.Generator(device="cuda").manual_seed(0)
    X = torch.randn(cfg.n, cfg.d, device="cuda", generator=gen)
    init = X[:cfg.k].clone()
    x_bytes = X.numel() * X.element_size()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t0 = time.perf_counter()
    try:
        KMeans(cfg.k, init=init, n_init=1, max_iter=iters, tol=0).fit(X)
        torch.cuda.synchronize()
        seconds = (time.perf_counter() - t0) / iters
        peak = torch.cuda.max_memory_allocated() - base
        ratio = peak / x_bytes
        rows.append(Row(cfg.name, "kmeans_xp", "torch-cuda", seconds=seconds,
                        note=f"fit OK; peak working memory {peak / 2**20:.0f} MiB = "
                             f"{ratio:.3f} x X",
                        extra={"peak_bytes": peak, "x_bytes": x_bytes, "ratio": ratio}))
    except Exception as exc:
        rows.append(Row(cfg.name, "kmeans_xp", "torch-cuda",
                        note=f"FAILED: {type(exc).__name__}: {str(exc)[:80]}"))
    for row in rows:
        print(_format_row(row), flush=True)
    return rows


def batched_rows(cfg: Config, iters: int, repeats: int, quick: bool) -> list[Row]:
    """B independent problems of (n, d, k) from the same initial centres,
    ``iters`` Lloyd iterations (tol=0): ``batched_k_means`` against a Python
    loop of ``k_means`` fits and fast-pytorch-kmeans's ``MultiKMeans``.
    Seconds are per iteration of all B problems; inertia is summed over
    them. --quick runs B=8."""
    n_problems = 8 if quick else 64
    parts = [make_data(cfg, seed=b) for b in range(n_problems)]
    X = np.stack([p[0] for p in parts])
    init = np.stack([p[1] for p in parts])
    del parts
    device = "cuda" if cfg.gpu else "cpu"
    name = f"{cfg.name}" if n_problems == 64 else f"{cfg.name} (B={n_problems})"
    rows = []
    if cfg.gpu and not _cuda_available():
        return [Row(name, "-", "torch-cuda", note="skipped: no CUDA device: NOT VERIFIED")]

    def as_backend(a, backend):
        if backend == "numpy":
            return a
        import torch

        return torch.from_numpy(a).to(device)

    def batched(backend):
        import kmeans_xp

        Xb, Ib = as_backend(X, backend), as_backend(init, backend)
        def fit(max_iter=iters):
            return kmeans_xp.batched_k_means(Xb, cfg.k, init=Ib, max_iter=max_iter, tol=0.0)

        return fit, lambda out: out[0]

    def loop(backend):
        import kmeans_xp

        Xb, Ib = as_backend(X, backend), as_backend(init, backend)

        def fit(max_iter=iters):
            return [kmeans_xp.k_means(Xb[b], cfg.k, init=Ib[b], n_init=1, max_iter=max_iter,
                                      tol=0.0)[0] for b in range(n_problems)]

        return fit, lambda out: out

    def multi():
        import torch
        from fast_pytorch_kmeans import MultiKMeans

        Xt, It = torch.from_numpy(X).to(device), torch.from_numpy(init).to(device)

        def fit(max_iter=iters):
            km = MultiKMeans(cfg.k, max_iter=max_iter, tol=-1.0, verbose=0)
            km.fit_predict(Xt, centroids=It.clone())
            return km

        return fit, lambda km: km.centroids

    backend = "torch-cuda" if cfg.gpu else "numpy"
    impls = [("kmeans_xp batched", backend, lambda: batched(backend)),
             ("kmeans_xp loop", backend, lambda: loop(backend))]
    if not cfg.gpu:
        impls.append(("kmeans_xp batched", "torch", lambda: batched("torch")))
    impls.append(("fast-pytorch-kmeans", "torch-cuda" if cfg.gpu else "torch", multi))
    calls, results = {}, {}
    for impl, where, prepare in impls:
        rows.append(Row(name, impl, where))
        module = "fast_pytorch_kmeans" if impl.startswith("fast") else (
            None if where == "numpy" else "torch")
        if module and not _have(module):
            rows[-1].note = f"skipped: {module} not installed"
            continue
        try:
            fit, centers = prepare()
            _timed_call(lambda fit=fit: fit(1), device)  # warm-up: one iteration
        except Exception as exc:  # noqa: BLE001 (a peer failing must not stop the run)
            rows[-1].note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
            continue
        calls[len(rows) - 1], results[len(rows) - 1] = (fit, device), centers
    # Best of at most 3: the loop and MultiKMeans take many seconds a call.
    for index, (seconds, out) in _best_times(calls, min(repeats, 3)).items():
        row = rows[index]
        try:
            if isinstance(out, Exception):
                raise out
            centers = results[index](out)
            row.inertia = sum(reference_inertia(X[b], _host(centers[b])) for b in range(n_problems))
            row.seconds = seconds / iters
        except Exception as exc:  # noqa: BLE001
            row.note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    loop_row = next((r for r in rows if r.impl == "kmeans_xp loop" and r.seconds), None)
    for row in rows:
        if loop_row and row.seconds and row is not loop_row:
            row.note = (row.note + " " if row.note else "") + (
                f"{loop_row.seconds / row.seconds:.2f}x the loop")
        print(_format_row(row), flush=True)
    _check_agreement(rows)
    return rows


def pq_rows(cfg: Config, iters: int, repeats: int, quick: bool) -> list[Row]:
    """Product quantisation of (n, d) embeddings into 8 codes of 8 bits:
    kmeans_xp's ``ProductQuantizer`` against faiss's, trained on the same
    data. ``seconds`` is the whole fit (not per iteration); the note gives
    the mean squared reconstruction error of the training data. --quick
    trains on 10k rows with 6 bits."""
    n_samples, n_bits = (10_000, 6) if quick else (cfg.n, 8)
    n_subspaces = 8
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(cfg.d, cfg.d)).astype(np.float32) / np.sqrt(cfg.d)
    means = 3 * rng.normal(size=(64, cfg.d)).astype(np.float32)
    X = rng.standard_normal((n_samples, cfg.d), dtype=np.float32) @ mixing
    X += means[rng.integers(0, 64, n_samples)]
    name = cfg.name if not quick else f"{cfg.name} (quick: 10k, 6 bits)"

    def ours():
        from kmeans_xp import ProductQuantizer

        pq = ProductQuantizer(n_subspaces, n_bits, random_state=0).fit(X)
        return pq, pq.decode(pq.encode(X))

    def theirs():
        import faiss

        pq = faiss.ProductQuantizer(cfg.d, n_subspaces, n_bits)
        pq.train(X)
        return pq, pq.decode(pq.compute_codes(X))

    rows, calls = [], {}
    for impl, where, fn, module in [("kmeans_xp ProductQuantizer", "numpy", ours, None),
                                    ("faiss ProductQuantizer", "faiss-cpu", theirs, "faiss")]:
        rows.append(Row(name, impl, where))
        if module and not _have(module):
            rows[-1].note = f"skipped: {module} not installed"
            continue
        calls[len(rows) - 1] = (fn, "cpu")
    # A fit takes seconds: fewer repeats than the per-iteration rows.
    for index, (seconds, out) in _best_times(calls, max(1, min(repeats, 2))).items():
        row = rows[index]
        if isinstance(out, Exception):
            row.note = f"failed: {type(out).__name__}: {str(out)[:80]}"
            continue
        row.seconds = seconds
        row.extra["mse"] = float(np.mean((out[1] - X) ** 2))
        row.note = f"fit {seconds:.2f} s, reconstruction MSE {row.extra['mse']:.5g}"
    faiss_row = next((r for r in rows if r.impl.startswith("faiss") and "mse" in r.extra), None)
    for row in rows:
        if faiss_row and "mse" in row.extra and row is not faiss_row:
            row.note += f" ({row.extra['mse'] / faiss_row.extra['mse']:.4f}x faiss's)"
        print(_format_row(row), flush=True)
    return rows


def stream_rows(cfg: Config, iters: int, repeats: int) -> list[Row]:
    """A float32 memmap streamed to a device in blocks
    (``KMeans(device=...)``) against the in-memory fit of the same data
    already there, from the same initial centres, ``iters`` iterations
    (tol=0). CPU: torch CPU target with a 16 MiB block budget vs the
    in-memory numpy fit. GPU: torch CUDA, default 64 MiB blocks, vs the
    in-memory fit of X on the GPU (X must fit there for that row)."""
    import tempfile

    from kmeans_xp import KMeans

    X, init = make_data(cfg)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.f32")
        mm = np.memmap(path, dtype=np.float32, mode="w+", shape=X.shape)
        mm[:] = X
        mm.flush()
        del mm
        memmap = np.memmap(path, dtype=np.float32, mode="r", shape=X.shape)
        params = dict(init=init, n_init=1, max_iter=iters, tol=0)
        import torch

        sync = "cuda" if cfg.gpu else "cpu"
        if cfg.gpu:
            X_dev = torch.from_numpy(X).to("cuda")
            targets = [("memmap->cuda", dict(device=torch.device("cuda")))]
            rows = [Row(cfg.name, "kmeans_xp in-memory", "torch-cuda")]
        else:
            import array_api_compat.numpy as np_xp

            X_dev = X
            # numpy target: the cost of the block copies alone; torch CPU
            # target: also torch's CPU kernels (in memory, torch CPU
            # tensors run the numpy code instead).
            targets = [("memmap->numpy", dict(device="cpu", array_namespace=np_xp)),
                       ("memmap->torch", dict(device=torch.device("cpu")))]
            rows = [Row(cfg.name, "kmeans_xp in-memory", "numpy")]
        calls = {0: (lambda: KMeans(cfg.k, **params).fit(X_dev), sync)}
        for where, target in targets:
            budget = None if cfg.gpu else 1 << 24
            calls[len(rows)] = (
                lambda target=target, budget=budget: KMeans(
                    cfg.k, device_block_bytes=budget, **target, **params).fit(memmap),
                sync,
            )
            rows.append(Row(cfg.name, "kmeans_xp streamed", where))
        best = _best_times(calls, max(1, min(repeats, 3)))
    for index, (seconds, out) in best.items():
        row = rows[index]
        if isinstance(out, Exception):
            row.note = f"failed: {type(out).__name__}: {str(out)[:80]}"
            continue
        row.seconds, row.inertia = seconds / iters, float(out.inertia_)
    for row in rows[1:]:
        if rows[0].seconds and row.seconds:
            row.note = f"{row.seconds / rows[0].seconds:.2f}x the in-memory time"
    for row in rows:
        print(_format_row(row), flush=True)
    return rows


def _dist_worker(rank, world, port, cfg_name, iters, repeats, out_path):
    """One rank of ``distributed_rows``: fits its half of the rows."""
    import torch.distributed as dist

    from kmeans_xp import KMeans

    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        # One core per rank: the two processes share the machine as the
        # single process's block threads do.
        os.sched_setaffinity(0, {cores[rank % len(cores)]})
    try:  # and one BLAS thread: two spinning on one core stall each other
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    try:
        cfg = CONFIGS[cfg_name]
        X, init = make_data(cfg)
        shard = X[X.shape[0] * rank // world: X.shape[0] * (rank + 1) // world].copy()
        del X
        best = math.inf
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            km = KMeans(cfg.k, init=init, n_init=1, max_iter=iters, tol=0,
                        process_group="default").fit(shard)
            best = min(best, time.perf_counter() - t0)
        if rank == 0:
            with open(out_path, "w") as f:
                json.dump({"seconds": best, "inertia": float(km.inertia_)}, f)
    finally:
        dist.destroy_process_group()


def distributed_rows(cfg: Config, iters: int, repeats: int) -> list[Row]:
    """``KMeans(process_group=...)`` on 2 gloo processes, each holding half
    the rows on one core of its own, against one process on all rows with
    its usual block threads on all cores, from the same initial centres
    (tol=0). On 2 cores the ratio shows the driver's overhead (an
    all-reduce of k x d + k + 2 numbers per iteration, two processes), not
    a cluster's speed-up."""
    import socket
    import tempfile

    import torch.multiprocessing as mp

    from kmeans_xp import KMeans

    rows = [Row(cfg.name, "kmeans_xp 1 process", "numpy"),
            Row(cfg.name, "kmeans_xp 2 x gloo", "numpy")]
    X, init = make_data(cfg)
    fit = lambda: KMeans(cfg.k, init=init, n_init=1, max_iter=iters, tol=0).fit(X)  # noqa: E731
    seconds, out = _best_times({0: (fit, "cpu")}, max(1, min(repeats, 3)))[0]
    if not isinstance(out, Exception):
        rows[0].seconds, rows[0].inertia = seconds / iters, float(out.inertia_)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "dist.json")
        try:
            mp.spawn(_dist_worker, args=(2, port, cfg.name, iters, max(1, min(repeats, 3)),
                                         out_path), nprocs=2, join=True)
            with open(out_path) as f:
                res = json.load(f)
            rows[1].seconds, rows[1].inertia = res["seconds"] / iters, res["inertia"]
        except Exception as exc:  # a peer crashed: report it, keep the others
            rows[1].note = f"failed: {type(exc).__name__}: {str(exc)[:80]}"
    if rows[0].seconds and rows[1].seconds:
        rows[1].note = (f"{rows[0].seconds / rows[1].seconds:.2f}x faster than one process; "
                        f"inertia {rows[1].inertia / rows[0].inertia:.6f}x")
    for row in rows:
        print(_format_row(row), flush=True)
    return rows


def _host(a) -> np.ndarray:
    """A numpy copy of a numpy array or torch tensor (results only)."""
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


# ---------------------------------------------------------------- output


def _format_row(r: Row) -> str:
    sec = f"{r.seconds * 1e3:10.3f}" if r.seconds else f"{'-':>10}"
    frac = f"{r.fraction:6.1%}" if r.fraction else f"{'-':>6}"
    return f"{r.config:<18} {r.impl:<20} {r.device:<11} {sec} {frac}  {r.note}"


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'config':<18} {'implementation':<20} {'device':<11} {'ms/iter':>10} "
          f"{'limit':>6}  {'vs scikit-learn':>15}  note")
    for r in rows:
        sk = next((o for o in rows if o.config == r.config and o.impl == "scikit-learn"
                   and o.seconds), None)
        ratio = f"{sk.seconds / r.seconds:14.2f}x" if (sk and r.seconds) else f"{'-':>15}"
        sec = f"{r.seconds * 1e3:10.3f}" if r.seconds else f"{'-':>10}"
        frac = f"{r.fraction:6.1%}" if r.fraction else f"{'-':>6}"
        print(f"{r.config:<18} {r.impl:<20} {r.device:<11} {sec} {frac}  {ratio}  {r.note}")
    print("\nms/iter: seconds per Lloyd iteration (latency rows: per whole fit). "
          "limit: fraction of the machine limit max(2nkd/GEMM, n*d*4/bandwidth). "
          "vs scikit-learn: its time / this row's (>1 is faster).")


def plot(rows: list[Row], path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no chart")
        return
    timed = [r for r in rows if r.seconds]
    configs = list(dict.fromkeys(r.config for r in timed))
    if not configs:  # every row skipped (--gpu-only without a GPU)
        print("no timed rows: no chart")
        return
    fig, axes = plt.subplots(1, len(configs), figsize=(3.2 * len(configs), 4), squeeze=False)
    for ax, config in zip(axes[0], configs):
        sel = [r for r in timed if r.config == config]
        sk = next((r for r in sel if r.impl == "scikit-learn"), None)
        if all("ratio" in r.extra for r in sel):
            values = [r.extra["ratio"] for r in sel]
            ax.set_ylabel("working memory / size of X")
            ax.axhline(0.25, color="red", lw=0.8)  # the target
        elif sk is not None:
            values = [sk.seconds / r.seconds for r in sel]
            ax.set_ylabel("speed vs scikit-learn (x)")
            ax.axhline(1.0, color="grey", lw=0.8)
        else:
            values = [r.fraction or 0.0 for r in sel]
            ax.set_ylabel("fraction of machine limit")
        labels = [f"{r.impl}\n{r.device}" for r in sel]
        colors = ["tab:blue" if r.impl == "kmeans_xp" else "tab:gray" for r in sel]
        ax.bar(range(len(sel)), values, color=colors)
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_title(config, fontsize=9)
    fig.tight_layout()
    with _atomic_output(path) as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    print(f"chart: {path}")


def _cpu_name() -> str:
    """The CPU model (Linux names it in /proc/cpuinfo, where
    ``platform.processor()`` is often empty): results differ by machine."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and repeats")
    parser.add_argument("--configs", default=None,
                        help=f"comma-separated subset of {', '.join(CONFIGS)}")
    parser.add_argument("--gpu-only", action="store_true", help="only the GPU configurations")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (min kept)")
    parser.add_argument("--out", default=os.path.join(HERE, "results"),
                        help="path prefix of the .json and .png outputs")
    args = parser.parse_args(argv)
    # Checked before minutes of timing, not when the results are written.
    out_dir = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(out_dir):
        parser.error(f"--out {args.out}: directory {out_dir} does not exist")
    if not os.access(out_dir, os.W_OK):
        parser.error(f"--out {args.out}: directory {out_dir} is not writable")

    if args.configs:
        names = [c.strip() for c in args.configs.split(",") if c.strip()]
        unknown = [c for c in names if c not in CONFIGS]
        if unknown:
            parser.error(f"unknown configs {unknown}; choose from {list(CONFIGS)}")
    elif args.gpu_only:
        names = GPU_DEFAULT
    else:
        names = CPU_DEFAULT + (GPU_DEFAULT if _cuda_available() else [])
    # Best of 5 rounds: on a shared 2-core machine one row of a run could
    # swing 10% with no change of code in best of 3 (the numpy and torch CPU
    # rows, which run the same code, came 0.90x and 1.00x in one run).
    # --quick keeps the best of 2: one preempted call no longer decides a
    # row (36 s instead of 28 on 2 cores).
    repeats = args.repeats or (2 if args.quick else 5)

    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, {_cpu_name()}")
    for module in ["torch", "sklearn", "faiss", "fast_pytorch_kmeans", "cupy"]:
        if not _have(module):
            print(f"note: {module} not installed; its rows are skipped")
    limits = {}
    if any(not CONFIGS[n].gpu for n in names):
        limits["cpu"] = cpu_limits(args.quick)
    if any(CONFIGS[n].gpu for n in names) and _cuda_available():
        limits["gpu"] = gpu_limits()
    for where, lim in limits.items():
        print(f"{where} limit: float32 GEMM {lim['gemm_flops'] / 1e9:.1f} GFLOP/s, "
              f"read bandwidth {lim['read_bytes_per_s'] / 1e9:.1f} GB/s")

    rows: list[Row] = []
    for name in names:
        cfg = CONFIGS[name]
        iters = cfg.quick_iters if args.quick else cfg.iters
        print(f"\n== {name}: n={cfg.n}, d={cfg.d}, k={cfg.k}, {iters} iterations ==",
              flush=True)
        if cfg.gpu and not _cuda_available() and not _cupy_available():
            rows.append(Row(cfg.name, "-", "gpu", note="skipped: no GPU: NOT VERIFIED"))
            print(_format_row(rows[-1]))
            continue
        if cfg.kind == "latency":
            # A fit of a few milliseconds is easily preempted on a shared
            # machine: the best of 10 calls per seed (5 with --quick) for
            # every implementation alike.
            rows += latency_rows(cfg, max(repeats, 5 if args.quick else 10),
                                 seeds=7 if args.quick else 21)
        elif cfg.kind == "memory":
            rows += memory_rows(cfg, iters)
        elif cfg.kind == "gpu-memory":
            rows += gpu_memory_rows(cfg, iters)
        elif cfg.kind == "stream":
            rows += stream_rows(cfg, iters, repeats)
        elif cfg.kind == "dist":
            rows += distributed_rows(cfg, iters, repeats)
        elif cfg.kind == "sparse":
            rows += sparse_rows(cfg, iters, repeats)
        elif cfg.kind in ("batched", "pq"):
            rows += (batched_rows if cfg.kind == "batched" else pq_rows)(cfg, iters, repeats, args.quick)
        else:
            X, init = make_data(cfg)
            rows += lloyd_rows(cfg, X, init, iters, repeats,
                               limits["gpu" if cfg.gpu else "cpu"], gpu=cfg.gpu)
            del X
    print_table(rows)
    result = {
        "machine": {"python": platform.python_version(), "numpy": np.__version__,
                    "cpus": os.cpu_count(), "cpu": _cpu_name(), "argv": sys.argv[1:]},
        "limits": limits,
        "rows": [dict(r.__dict__, fraction=r.fraction) for r in rows],
    }
    # Written whole or not at all: a failure leaves no half-written file.
    with _atomic_output(args.out + ".json") as f:
        f.write(json.dumps(result, indent=1).encode())
    print(f"json: {args.out}.json")
    plot(rows, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
