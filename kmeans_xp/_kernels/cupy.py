"""CuPy kernels: cuBLAS matmul and atomic scatter-add into float64."""

from __future__ import annotations

from .. import _blocks
from .generic import Kernels

__all__ = ["CupyKernels", "kernels"]


def kernels(xp, device=None) -> CupyKernels:
    """The kernels for CuPy arrays."""
    return CupyKernels(xp)


class CupyKernels(Kernels):
    """CuPy: cuBLAS matmul and atomic scatter-add, with float64 sums and
    counts (a float32 counter stops at 2**24, and atomics add one row at a
    time)."""

    cheap_reads = False

    def sum_dtype(self, dtype):
        import cupy

        return cupy.float64

    def rows_per_block(self, n_samples: int, width: int, itemsize: int) -> int:
        import cupy

        free_bytes = cupy.cuda.Device().mem_info[0]
        return _blocks.device_block_rows(n_samples, width, itemsize, free_bytes)

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        import cupy

        # -2 C^T once per pass, contiguous for cuBLAS.
        centers_t = cupy.ascontiguousarray((-2 * centers).T)
        want_partial = partial

        def assign(Xb):
            scores = Xb @ centers_t
            scores += centers_sqnorm
            labels = cupy.argmin(scores, axis=1)
            if not want_partial:
                return labels, None
            # A gather of n values, not a second pass over the block.
            return labels, scores[cupy.arange(labels.shape[0]), labels]

        return assign

    def assign(self, X, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(X)

    def accumulate(self, X, labels, weights, sums, counts):
        import cupyx

        # cupyx.scatter_add accumulates repeated indices (atomicAdd);
        # fancy-index += would keep only one of them. Allocations first, so
        # an out-of-memory error leaves the accumulators untouched and the
        # block is not counted twice on its retry.
        rows = X if X.dtype == sums.dtype else X.astype(sums.dtype)
        if weights is None:
            row_weights = 1
        else:
            row_weights = weights.astype(sums.dtype)
            rows = rows * row_weights[:, None]
        cupyx.scatter_add(sums, labels, rows)
        cupyx.scatter_add(counts, labels, row_weights)
        return sums, counts
