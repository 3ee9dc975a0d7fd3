"""Sparse data behind the seam: torch sparse CSR tensors (CPU or CUDA)
with dense torch centres, through ``_sparse.TorchSparseKernels``.

The same adapter as ``scipy_sparse.SparseKernels``; only the few calls on
the tensors' own parts differ.
"""

from __future__ import annotations

from .._sparse import TorchSparseKernels
from .scipy_sparse import SparseKernels

__all__ = ["TorchCSRKernels", "kernels"]


def kernels(xp, X) -> TorchCSRKernels:
    """The kernels for torch sparse CSR tensor ``X``."""
    return TorchCSRKernels(xp, X, TorchSparseKernels())


class TorchCSRKernels(SparseKernels):
    """``SparseKernels`` for torch sparse CSR tensors."""

    def rows_per_block(self, n_samples: int, width: int, itemsize: int) -> int:
        return self.impl.rows_per_block(self._X, width)

    def data_device(self, X):
        return X.device

    def _values(self, A):
        return A.values()

    def _column_sums(self, X, weights):
        torch = self.impl.torch
        values = X.values()
        if weights is not None:
            values = values * weights[self.impl._row_ids(X)]
        out = torch.zeros(X.shape[1], dtype=values.dtype, device=values.device)
        return out.index_add_(0, X.col_indices(), values)
