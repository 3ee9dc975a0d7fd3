"""torch kernels: fused addmm and min+argmin, index_add_ segment sums on
GPUs; on CPU tensors, the numpy kernels on zero-copy views."""

from __future__ import annotations

from .._array_api import numpy_view
from .generic import Kernels
from .numpy import NumpyKernels

__all__ = ["TorchCPUKernels", "TorchKernels", "kernels"]


def kernels(xp, device=None) -> Kernels:
    """numpy's kernels on views for CPU tensors; torch's own elsewhere, in
    large blocks that keep a GPU busy (the (1M, 128, 4096) GPU row)."""
    if device is not None and getattr(device, "type", None) == "cpu":
        return TorchCPUKernels(xp)
    found = TorchKernels(xp)
    if device is not None:
        found.block_bytes = 1 << 30
    return found


class TorchKernels(Kernels):
    """torch: fused addmm, fused min+argmin, index_add_."""

    block_bytes = 1 << 20
    # CPU tensors get TorchCPUKernels (see get_kernels); these serve GPUs,
    # where one stream of large blocks is best.
    threaded = False

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        import torch

        # C^T made contiguous once per pass, not once per block.
        centers_t = centers.T.contiguous()

        def assign(Xb):
            # One kernel for ||c||^2 - 2 x.c and one pass for min and argmin.
            scores = torch.addmm(centers_sqnorm, Xb, centers_t, alpha=-2)
            partial, labels = torch.min(scores, dim=1)
            return labels, partial

        return assign

    def assign(self, X, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(X)

    def accumulate(self, X, labels, weights, sums, counts):
        # Allocate before the in-place adds: an out-of-memory error then
        # leaves the accumulators untouched and the block can be retried.
        if weights is None:
            rows, row_weights = X, X.new_ones(labels.shape[0])
        else:
            rows, row_weights = X * weights[:, None], weights
        sums.index_add_(0, labels, rows)
        counts.index_add_(0, labels, row_weights)
        return sums, counts

    def sq_row_norms(self, X):
        return (X * X).sum(dim=1)


class TorchCPUKernels(TorchKernels):
    """torch on CPU: numpy's kernels on zero-copy views of the same memory.

    A CPU tensor and ``tensor.numpy()`` share one buffer, so this is no host
    round trip. torch's OpenMP ops under a Python thread pool oversubscribe
    the cores, and numpy's pooled single-thread BLAS path was 1.5-2x faster
    on the (100k, 128, 1024) row. ``KMeans.fit`` goes further and runs the
    whole fit as numpy on views (``_array_api.numpy_twin``); these kernels
    serve the passes that stay in torch (predict, transform, score, metrics,
    a fit with a callable init).
    """

    block_bytes = NumpyKernels.block_bytes
    threaded = True
    incremental_sums = True

    def rows_per_block(self, n_samples: int, width: int, itemsize: int) -> int:
        return self._numpy.rows_per_block(n_samples, width, itemsize)

    def __init__(self, xp):
        super().__init__(xp)
        import array_api_compat.numpy as np_xp

        self._numpy = NumpyKernels(np_xp)

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        import torch

        assign_np = self._numpy.assigner(
            numpy_view(centers), numpy_view(centers_sqnorm), partial=partial
        )

        def assign(Xb):
            labels, part = assign_np(numpy_view(Xb))
            return torch.from_numpy(labels), None if part is None else torch.from_numpy(part)

        return assign

    def assign(self, X, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(X)

    def accumulate(self, X, labels, weights, sums, counts):
        # The numpy kernel adds in place into views of the torch tensors.
        self._numpy.accumulate(
            numpy_view(X),
            numpy_view(labels),
            numpy_view(weights),
            numpy_view(sums),
            numpy_view(counts),
        )
        return sums, counts

    def move(self, X, old_labels, new_labels, weights, sums, counts):
        self._numpy.move(
            numpy_view(X),
            numpy_view(old_labels),
            numpy_view(new_labels),
            numpy_view(weights),
            numpy_view(sums),
            numpy_view(counts),
        )
        return sums, counts

    def pool_context(self):
        return self._numpy.pool_context()

    def shifted_block(self, X, start, stop, shift):
        import numpy as np
        import torch

        # numpy here too: one torch op per block wakes torch's OpenMP team,
        # whose spinning threads starved the pool (the (200k, 32, 64) torch
        # row ran 7x slower than numpy).
        if isinstance(shift, torch.Tensor):
            shift = numpy_view(shift)
        return torch.from_numpy(np.subtract(numpy_view(X)[start:stop], shift))
