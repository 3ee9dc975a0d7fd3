"""The fused numba kernel (``kmeans_xp._kernels.numba``) against the plain
numpy kernels and scikit-learn, side by side in one run: ms per Lloyd iteration
from the same initial centres with a fixed iteration count (``tol=0``), the
fraction of the machine limit (``run.py``'s measure), and the whole-fit
latency of 1000 x 2, k=3 in a warm process. Also checks that the fused
fits end with the numpy fits' labels, centres and inertia.

Usage::

    python benchmarks/fused.py                  # the three Lloyd rows and the latency row
    python benchmarks/fused.py --quick          # fewer iterations and repeats
    python benchmarks/fused.py --configs 1M-16-8 --repeats 7
    python benchmarks/fused.py --rule           # the fused/BLAS sweep over k and d
    python benchmarks/fused.py --variants       # each block kernel on one core, by shape

numpy fits take the fused kernel where numba is installed (unless
``KMEANS_XP_NUMBA=0``); this script switches it on and off around each fit.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run  # noqa: E402  (benchmarks/run.py: data, limits, timing helpers)


def _kernels(fused: bool):
    """Fits inside take the fused kernel, or the plain numpy kernels."""
    from kmeans_xp._testing import fused_kernels

    return fused_kernels(fused)


def _fit(X, init, iters, *, fused: bool):
    from kmeans_xp import KMeans

    def fit():
        with warnings.catch_warnings(), _kernels(fused):
            warnings.simplefilter("ignore")
            model = KMeans(len(init), init=init, n_init=1, max_iter=iters, tol=0)
            return model.fit(X)

    return fit


def lloyd_rows(name: str, iters: int, repeats: int, limits: dict) -> None:
    cfg = run.CONFIGS[name]
    X, init = run.make_data(cfg)
    calls = {
        "numpy kernels": (_fit(X, init, iters, fused=False), "cpu"),
        "fused (numba)": (_fit(X, init, iters, fused=True), "cpu"),
    }
    sk_fit, _, _ = run.prepare_sklearn(X, init, iters)
    calls["scikit-learn"] = (sk_fit, "cpu")
    for fn, _ in calls.values():
        fn()  # warm-up: imports, JIT cache load, allocator
    best = run._best_times(calls, repeats)
    limit = run.limit_seconds(cfg, limits)
    sk_seconds = best["scikit-learn"][0] / iters
    print(f"\n== {name}: n={cfg.n}, d={cfg.d}, k={cfg.k}, {iters} iterations, "
          f"best of {repeats} ==")
    for key, (seconds, model) in best.items():
        if isinstance(model, Exception):
            print(f"{key:16s} failed: {model!r}")
            continue
        per_iter = seconds / iters
        print(f"{key:16s} {per_iter * 1e3:8.2f} ms/iter  {limit / per_iter:6.1%} of limit  "
              f"{sk_seconds / per_iter:5.2f}x scikit-learn  n_iter={model.n_iter_}")
    numpy_model, fused_model = best["numpy kernels"][1], best["fused (numba)"][1]
    same_labels = np.mean(numpy_model.labels_ == fused_model.labels_)
    centers_diff = np.max(np.abs(numpy_model.cluster_centers_ - fused_model.cluster_centers_))
    inertia_rel = abs(numpy_model.inertia_ - fused_model.inertia_) / numpy_model.inertia_
    print(f"fused vs numpy: {same_labels:.6%} labels equal, centres differ by at most "
          f"{centers_diff:.2e}, inertia by {inertia_rel:.2e} (relative)")


def latency_row(repeats: int, seeds: int) -> None:
    from kmeans_xp import KMeans

    cfg = run.CONFIGS["latency-1k-2-3"]
    X, _ = run.make_data(cfg)

    def numpy_fit(seed):
        with _kernels(False):
            return KMeans(3, n_init=1, random_state=seed).fit(X)

    def fused_fit(seed):
        with _kernels(True):
            return KMeans(3, n_init=1, random_state=seed).fit(X)

    numpy_fit(0)
    fused_fit(0)
    times = {"numpy kernels": [], "fused (numba)": []}
    for seed in range(seeds):
        calls = {"numpy kernels": (lambda s=seed: numpy_fit(s), "cpu"),
                 "fused (numba)": (lambda s=seed: fused_fit(s), "cpu")}
        for key, (t, _) in run._best_times(calls, repeats).items():
            times[key].append(t)
    print(f"\n== latency-1k-2-3: whole fit, median over {seeds} seeds of the best of "
          f"{repeats} ==")
    for key, values in times.items():
        print(f"{key:16s} {np.median(values) * 1e3:8.3f} ms")


def rule_sweep(repeats: int) -> None:
    """One assignment pass on one core, fused kernel against the numpy
    (BLAS) assigner, over k and d (float32): where the fused kernel wins.
    CPU time of the calling thread, best of ``repeats``: on a shared
    machine it moves far less than wall time, and both paths scale alike
    over cores (blocks on a pool or ranges on numba's threads)."""
    import time

    import array_api_compat.numpy as np_xp

    from kmeans_xp._kernels.numba import _assign, prepare_centers
    from kmeans_xp._kernels.numpy import NumpyKernels, _blas_controller, _one_blas_thread

    n = 50_000
    rng = np.random.default_rng(0)
    kernels = NumpyKernels(np_xp)
    ks = (3, 8, 16, 32, 64, 128, 256, 512, 1024)
    print(f"\n== fused/BLAS rule: one assignment pass on one core, n={n}, float32, "
          f"fused time / numpy time (below 1: fused wins), best of {repeats} ==")
    print("d \\ k " + "".join(f"{k:>7d}" for k in ks))
    controller = _blas_controller()
    for d in (2, 4, 8, 16, 32, 64, 128):
        X = rng.standard_normal((n, d), dtype=np.float32)
        ratios = []
        for k in ks:
            centers = X[:k].copy()
            csq = (centers * centers).sum(1)
            labels = np.empty(n, np.int32)
            rows = kernels.rows_per_block(n, max(k, d), 4)

            def fused(X=X, centers=centers, csq=csq, labels=labels):
                _assign(X, prepare_centers(centers, csq), labels, None, parallel=False)

            def blas(X=X, centers=centers, csq=csq, rows=rows):
                assign = kernels.assigner(centers, csq, partial=False, compact=True)
                for start in range(0, n, rows):
                    assign(X[start : start + rows])

            times = []
            for once in (fused, blas):
                once()
                best = np.inf
                for _ in range(repeats):
                    t0 = time.thread_time()
                    if controller is None:
                        once()
                    else:
                        with _one_blas_thread(controller):
                            once()
                    best = min(best, time.thread_time() - t0)
                times.append(best)
            ratios.append(times[0] / times[1])
        print(f"{d:<7d}" + "".join(f"{r:7.2f}" for r in ratios), flush=True)


#: (n, d, k, dtype) of ``--variants``: the Lloyd rows' shapes and the
#: edges of the rule (one tile of centres, many centres, few features).
VARIANT_SHAPES = ((200_000, 32, 64, "float32"), (200_000, 32, 64, "float64"),
                  (1_000_000, 16, 8, "float32"), (1_000_000, 16, 8, "float64"),
                  (200_000, 16, 16, "float32"), (200_000, 8, 32, "float32"),
                  (100_000, 64, 64, "float32"), (50_000, 32, 256, "float32"),
                  (50_000, 2, 64, "float32"), (20_000, 128, 1024, "float32"))


def variant_sweep(repeats: int) -> None:
    """Each block kernel that can take the shape's centres, one assignment
    pass on one core (thread CPU time, best of ``repeats``), in ms and
    GFLOP/s (2nkd): the choice ``kernel_variant`` makes, measured."""
    import time

    from kmeans_xp._kernels import _numba_jit
    from kmeans_xp._kernels.numba import _run, kernel_variant, prepare_centers

    print(f"\n== block kernels: one assignment pass on one core, best of {repeats}; "
          "* = the one kmeans_xp takes where the rule picks the fused kernel ==")
    rng = np.random.default_rng(0)
    for n, d, k, dtype in VARIANT_SHAPES:
        X = rng.standard_normal((n, d)).astype(dtype)
        centers = X[rng.choice(n, size=k, replace=False)]
        Ct, csq, _ = prepare_centers(centers, (centers * centers).sum(1))
        labels, partial = np.empty(n, np.int32), np.empty(n, X.dtype)
        chosen = kernel_variant(X.dtype, Ct.shape[1])
        # lanes8 and tiles8 take 8 centres only; tiles16 and rows16 any
        # multiple of 16 (rows16 is not picked at 16, but can run there).
        usable = (("lanes8", "tiles8") if Ct.shape[1] == 8 else ("tiles16", "rows16"))
        cells = []
        for variant in _numba_jit.VARIANTS:
            if variant not in usable or (variant == "lanes8" and X.itemsize != 4):
                continue
            name = f"assign_range_{variant}"
            args = (X, Ct, csq, k, 0, n, labels, partial, 0)
            _run(name, *args)
            best = np.inf
            for _ in range(repeats):
                t0 = time.thread_time()
                _run(name, *args)
                best = min(best, time.thread_time() - t0)
            mark = "*" if variant == chosen else " "
            cells.append(f"{variant}{mark} {best * 1e3:8.2f} ms {2 * n * k * d / best / 1e9:6.1f} GF/s")
        print(f"({n}, {d}, {k}) {dtype:8s} " + "   ".join(cells), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations and repeats")
    parser.add_argument("--configs", default="200k-32-64,1M-16-8,100k-128-1024,latency-1k-2-3")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--rule", action="store_true", help="only the fused/BLAS sweep")
    parser.add_argument("--variants", action="store_true",
                        help="only each block kernel on one core, by shape")
    args = parser.parse_args(argv)

    from kmeans_xp._kernels import numba as fused_kernels

    if not fused_kernels.available():
        print("numba is not installed: nothing to compare")
        return 1
    repeats = args.repeats or (3 if args.quick else 5)
    print(f"{os.cpu_count()} CPUs, {run._cpu_name()}")
    if args.rule:
        rule_sweep(repeats)
        return 0
    if args.variants:
        variant_sweep(repeats)
        return 0
    limits = run.cpu_limits(args.quick)
    print(f"limit: float32 GEMM {limits['gemm_flops'] / 1e9:.1f} GFLOP/s, "
          f"read bandwidth {limits['read_bytes_per_s'] / 1e9:.1f} GB/s")
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if name == "latency-1k-2-3":
            latency_row(max(repeats, 5), 7 if args.quick else 21)
            continue
        cfg = run.CONFIGS[name]
        lloyd_rows(name, cfg.quick_iters if args.quick else cfg.iters, repeats, limits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
