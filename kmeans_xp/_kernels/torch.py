"""torch kernels: fused addmm and min+argmin, segment sums into float64.

They serve GPU tensors, and CPU tensors under ``simulated_gpu()`` or where
the estimators do not run them as numpy (``_fit.host_twin``: the one way
CPU tensors reach numpy's kernels)."""

from __future__ import annotations

from .. import _blocks
from .._array_api import numpy_view
from . import SIMULATION
from .generic import Kernels

__all__ = ["TorchKernels", "kernels"]


def kernels(xp, device=None) -> Kernels:
    """torch's kernels; on a GPU (or any CPU tensor under ``simulated_gpu()``)
    in blocks sized from the device's free memory (the (1M, 128, 4096) GPU
    row)."""
    found = TorchKernels(xp)
    if device is not None:
        found.device = device
        found.on_gpu = getattr(device, "type", None) != "cpu" or SIMULATION.torch
    return found


def free_memory(device) -> int:
    """Free bytes on a torch device (the simulation's figure on CPU)."""
    import torch

    if getattr(device, "type", None) == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(SIMULATION.free_bytes)


def is_alloc_failure(exc: BaseException) -> bool:
    """Whether a RuntimeError is an allocation failure in disguise (cuBLAS
    reports its own as CUBLAS_STATUS_ALLOC_FAILED, not as an OOM)."""
    text = str(exc)
    return "ALLOC_FAILED" in text or "out of memory" in text


class TorchKernels(Kernels):
    """torch on GPUs: fused addmm, fused min+argmin, ``index_add_`` into
    float64 sums and counts (one-hot products, bitwise repeatable, under
    ``torch.use_deterministic_algorithms(True)``)."""

    # Not threaded (the base's default): one stream of large blocks is best
    # on a GPU, and on CPU tensors torch's own ops spread over the cores.
    #: Device reads are waits on a GPU: the block runner then never asks
    #: whether the shift is zero (see ``BlockRunner.shift``).
    cheap_reads = False
    #: Set by ``kernels`` for a device tensor: blocks then come from the
    #: device's free memory.
    on_gpu = False
    device = None

    def sum_dtype(self, dtype):
        # A float32 counter stops at 2**24, and one-row-at-a-time atomic
        # adds into float32 sums drift: float64 accumulators (MPS has none).
        import torch

        if getattr(self.device, "type", None) == "mps":
            return dtype
        return torch.float64

    def rows_per_block(self, n_samples: int, width: int, itemsize: int) -> int:
        if not self.on_gpu:
            return super().rows_per_block(n_samples, width, itemsize)
        return _blocks.device_block_rows(n_samples, width, itemsize, free_memory(self.device))

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        import torch

        # C^T made contiguous once per pass, not once per block.
        centers_t = centers.T.contiguous()

        def assign(Xb):
            try:
                # One kernel for ||c||^2 - 2 x.c and one pass for min and argmin.
                scores = torch.addmm(centers_sqnorm, Xb, centers_t, alpha=-2)
                partial, labels = torch.min(scores, dim=1)
            except RuntimeError as exc:
                _reraise_alloc_failure(exc)
                raise
            return labels, partial

        return assign

    def assign(self, X, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(X)

    def accumulate(self, X, labels, weights, sums, counts):
        import torch

        # Every allocation comes before the in-place adds: an out-of-memory
        # error then leaves the accumulators untouched and the block can be
        # retried without counting it twice.
        try:
            rows = X if X.dtype == sums.dtype else X.to(sums.dtype)
            if weights is None:
                row_weights = rows.new_ones(labels.shape[0])
            else:
                row_weights = weights.to(sums.dtype)
                rows = rows * row_weights[:, None]
            if torch.are_deterministic_algorithms_enabled():
                block_sums, block_counts = _onehot_sums(rows, labels, row_weights, sums.shape[0])
        except RuntimeError as exc:
            _reraise_alloc_failure(exc)
            raise
        if torch.are_deterministic_algorithms_enabled():
            return sums + block_sums, counts + block_counts
        _scatter_add(sums, labels, rows)
        _scatter_add(counts, labels, row_weights)
        return sums, counts

    def cluster_sums(self, X, labels, weights, n_clusters: int):
        dtype = self.sum_dtype(X.dtype)
        return self.accumulate(
            X, labels, weights,
            X.new_zeros((n_clusters, X.shape[1]), dtype=dtype),
            X.new_zeros((n_clusters,), dtype=dtype),
        )

    def sq_row_norms(self, X):
        return (X * X).sum(dim=1)

    def host_values(self, a) -> list:
        return a.tolist()

    def cumulative_sum(self, x):
        import torch

        if not (x.is_floating_point() and torch.are_deterministic_algorithms_enabled()):
            return torch.cumsum(x, 0)
        # A float cumsum on CUDA has no deterministic kernel (it raises in
        # deterministic mode); an integer one has. Fixed point at 2**-62 of
        # the total: draws differ from the float sums only on increments
        # below that.
        total = x.sum(dtype=torch.float64)
        total = torch.where(total > 0, total, torch.ones_like(total))
        steps = torch.floor(x.to(torch.float64) * (2.0**62 / total))
        return torch.cumsum(steps.to(torch.int64), 0).to(torch.float64)


def _onehot_sums(rows, labels, row_weights, n_clusters: int):
    """Per-cluster sums and weights as a one-hot product: no atomics, so the
    same input gives the same bits on every run."""
    import torch

    onehot = (labels[None, :] == torch.arange(n_clusters, device=labels.device)[:, None])
    onehot = onehot.to(rows.dtype)
    return onehot @ rows, onehot @ row_weights


def _scatter_add(dest, labels, rows) -> None:
    """``dest[labels[i]] += rows[i]`` for every i, in place: GPU atomics.
    Simulated on CPU by ``np.add.at``, which adds one row at a time in
    ``dest``'s dtype as atomics do (torch's CPU index_add_ sums in parallel
    parts and would hide a saturating accumulator)."""
    if SIMULATION.torch and dest.device.type == "cpu":
        import numpy as np

        with SIMULATION.internal():
            np.add.at(numpy_view(dest), numpy_view(labels), numpy_view(rows))
        return
    dest.index_add_(0, labels, rows)


def _reraise_alloc_failure(exc: RuntimeError) -> None:
    """Raise an allocation failure that arrives as a plain RuntimeError
    (cuBLAS) as torch's OutOfMemoryError, which the block runner retries."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    if not isinstance(exc, oom) and is_alloc_failure(exc):
        raise oom(str(exc)) from exc
