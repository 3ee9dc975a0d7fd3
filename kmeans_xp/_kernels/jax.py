"""JAX kernels: the generic ``assign`` and a native segment sum.

JAX arrays are immutable, so ``accumulate`` returns new accumulators (the
generic code never relies on in-place updates).
"""

from __future__ import annotations

from .generic import Kernels

__all__ = ["JaxKernels", "kernels"]


def kernels(xp, device=None) -> JaxKernels:
    """The kernels for JAX arrays (CPU or GPU)."""
    return JaxKernels(xp)


class JaxKernels(Kernels):
    """JAX: ``jax.ops.segment_sum`` in place of the generic one-hot product,
    which costs n x k memory and k times the flops of a scatter-add."""

    # XLA runs its own threads; blocks as large as the GPU ones.
    block_bytes = 1 << 26

    def accumulate(self, X, labels, weights, sums, counts):
        import jax

        n_clusters = sums.shape[0]
        if weights is None:
            rows, row_weights = X, self.xp.ones(labels.shape, dtype=counts.dtype)
        else:
            rows, row_weights = X * weights[:, None], weights
        # The sums of rows with equal labels are added, as a segment sum must.
        block_sums = jax.ops.segment_sum(rows, labels, num_segments=n_clusters)
        block_counts = jax.ops.segment_sum(row_weights, labels, num_segments=n_clusters)
        return sums + block_sums, counts + block_counts
