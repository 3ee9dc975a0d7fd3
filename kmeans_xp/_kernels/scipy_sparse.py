"""Sparse data behind the seam: scipy.sparse CSR matrices and arrays (and
cupyx.scipy.sparse, which has the same calls) with dense centres.

``SparseKernels`` adapts the block kernels of ``kmeans_xp._sparse`` to the
``Kernels`` interface, so Lloyd, k-means++, MiniBatch and the prediction
methods run on sparse blocks unchanged. Blocks are row slices sharing X's
nonzeros; they are never shifted (``shiftable = False``: a shifted sparse
block is dense), and no (rows x n_features) array is made. Methods that
also meet dense arrays hand them to the generic kernels, except the squared
norms and sums of the centres, which the library's block kernels compute
without a squared (k x d) copy.
"""

from __future__ import annotations

from .._sparse import ScipySparseKernels, is_sparse
from .generic import Kernels

__all__ = ["SparseKernels", "kernels"]


def kernels(xp, X) -> SparseKernels:
    """The kernels for sparse ``X`` (scipy or cupyx CSR) whose dense
    arrays live in namespace ``xp``."""
    return SparseKernels(xp, X, ScipySparseKernels.for_array(X))


class SparseKernels(Kernels):
    """Sparse row blocks, dense centres: ``impl`` holds the library's block
    kernels (``_sparse.ScipySparseKernels`` or ``TorchSparseKernels``)."""

    shiftable = False
    # scipy's sparse products hold the GIL: threads would only queue.
    threaded = False
    incremental_sums = False

    def __init__(self, xp, X, impl):
        super().__init__(xp)
        self.impl = impl
        self._X = X

    # -- blocks ---------------------------------------------------------------

    def rows_per_block(self, n_samples: int, width: int, itemsize: int) -> int:
        """Rows per block for (rows x width) scores and the block's nonzero
        temporaries (see ``_sparse._rows_per_block``)."""
        return self.impl.rows_per_block(self._X, width)

    def row_block(self, X, start: int, stop: int):
        return self.impl.row_block(X, start, stop)

    def shifted_block(self, X, start: int, stop: int, shift):
        raise RuntimeError("sparse blocks are never shifted (the shift would densify them)")

    def take_rows(self, X, indices):
        return self.impl.dense_rows(X, indices)

    def select_rows(self, X, indices):
        return self.impl.select_rows(X, indices)

    def data_device(self, X):
        return "cpu" if self.impl.dense.__name__ == "numpy" else X.data.device

    # -- the seam -------------------------------------------------------------

    def assign(self, X, centers, centers_sqnorm):
        return self.impl.assign(X, centers, centers_sqnorm)

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        return self.impl.assigner(centers, centers_sqnorm, partial=partial)

    def accumulate(self, X, labels, weights, sums, counts):
        if not is_sparse(X):
            return super().accumulate(X, labels, weights, sums, counts)
        return self.impl.accumulate(X, labels, weights, sums, counts)

    def cluster_sums(self, X, labels, weights, n_clusters: int):
        if not is_sparse(X):
            return super().cluster_sums(X, labels, weights, n_clusters)
        return self.impl.cluster_sums(X, labels, weights, n_clusters)

    def sq_row_norms(self, X):
        return self.impl.sq_row_norms(X) if is_sparse(X) else self.impl.dense_sq_row_norms(X)

    def sq_distances_to(self, X, centers, labels):
        if not is_sparse(X):
            return super().sq_distances_to(X, centers, labels)
        return self.impl.sq_distances_to(X, centers, labels)

    def sq_sum(self, A):
        return self.impl.sq_sum(self._values(A) if is_sparse(A) else A)

    def column_sums(self, X, weights=None):
        if not is_sparse(X):
            return super().column_sums(X, weights)
        return self._column_sums(X, weights)

    def _values(self, A):
        return A.data

    def _column_sums(self, X, weights):
        dense = self.impl.dense
        if weights is None:
            return dense.asarray(X.sum(axis=0)).ravel().astype(X.dtype, copy=False)
        return dense.asarray(X.T @ weights).ravel().astype(X.dtype, copy=False)
