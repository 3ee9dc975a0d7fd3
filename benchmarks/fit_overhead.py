"""Where a fit's time goes besides its Lloyd passes: fits of 1, 2 and N
iterations from the same centres (``tol=0``), timed in alternation, best of
``--repeats``. The cost of one more iteration is ``(t_N - t_2) / (N - 2)``;
what is left of ``t_N`` (validation, the data-mean pass, the final
assignment and its exact inertia) is the fit's fixed cost, which
``run.py``'s "ms per Lloyd iteration" spreads over the N iterations.

Usage::

    python benchmarks/fit_overhead.py                     # (200k, 32, 64) and (1M, 16, 8)
    python benchmarks/fit_overhead.py --configs 1M-16-8 --repeats 7
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from run import CONFIGS, make_data  # noqa: E402


def measure(cfg, repeats: int) -> dict:
    """Best seconds of fits of 1, 2 and ``cfg.iters`` iterations."""
    from kmeans_xp import KMeans

    X, init = make_data(cfg)
    counts = (1, 2, cfg.iters)

    def fit(max_iter):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # blob data can empty a cluster
            return KMeans(cfg.k, init=init, n_init=1, max_iter=max_iter, tol=0).fit(X)

    for max_iter in counts:
        fit(max_iter)  # compiled kernels, allocator pools
    best = dict.fromkeys(counts, float("inf"))
    for _ in range(repeats):
        for max_iter in counts:
            start = time.perf_counter()
            km = fit(max_iter)
            best[max_iter] = min(best[max_iter], time.perf_counter() - start)
            if km.n_iter_ != max_iter:
                raise RuntimeError(f"converged after {km.n_iter_} of {max_iter} iterations")
    return best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="200k-32-64,1M-16-8")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(f"{'config':<14} {'1 iter':>8} {'2 iters':>8} {'N iters':>10} "
          f"{'per iter':>9} {'fixed':>8} {'run.py figure':>14}  (ms)")
    for name in args.configs.split(","):
        cfg = CONFIGS[name]
        best = measure(cfg, args.repeats)
        n = cfg.iters
        per_iter = (best[n] - best[2]) / (n - 2)
        fixed = best[n] - n * per_iter
        print(f"{name:<14} {best[1] * 1e3:8.1f} {best[2] * 1e3:8.1f} "
              f"{best[n] * 1e3:7.1f} ({n}) {per_iter * 1e3:9.2f} {fixed * 1e3:8.1f} "
              f"{best[n] / n * 1e3:14.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
