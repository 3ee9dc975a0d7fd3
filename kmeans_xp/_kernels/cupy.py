"""CuPy kernels: cuBLAS matmul and atomic scatter-add."""

from __future__ import annotations

from .generic import Kernels

__all__ = ["CupyKernels", "kernels"]


def kernels(xp, device=None) -> CupyKernels:
    """The kernels for CuPy arrays."""
    return CupyKernels(xp)


class CupyKernels(Kernels):
    """CuPy: cuBLAS matmul and atomic scatter-add."""

    block_bytes = 1 << 30

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
        # fancy-index += would keep only one of them.
        # Allocations first, so an out-of-memory error leaves the
        # accumulators untouched.
        if weights is None:
            rows, row_weights = X, 1
        else:
            rows, row_weights = X * weights[:, None], weights
        cupyx.scatter_add(sums, labels, rows)
        cupyx.scatter_add(counts, labels, row_weights)
        return sums, counts
