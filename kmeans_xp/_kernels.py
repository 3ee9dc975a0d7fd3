"""The backend seam: the two kernels everything else is built on.

* ``assign``: nearest centre of each row of a block, with the partial
  squared distance ``||c||^2 - 2 x.c`` of that centre (add ``||x||^2`` for
  the full squared distance).
* ``accumulate``: per-cluster weighted sums and weights of a block, added
  into running accumulators (a segment sum).

``Kernels`` holds the generic versions, written with the array API standard
alone; they are what array_api_strict and unknown libraries run. The
subclasses below replace them with native calls where a benchmark row of
``benchmarks/run.py`` shows the gain. Inputs are trusted: the public
functions have validated shapes, dtypes and devices already.
"""

from __future__ import annotations

from ._array_api import (
    device_of,
    is_cupy_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)


class Kernels:
    """Generic array-API kernels for namespace ``xp``."""

    #: Bytes of working memory one (rows x clusters) block may use.
    block_bytes = 1 << 20
    #: Whether blocks may run on a thread pool (kernels release the GIL).
    threaded = False

    def __init__(self, xp):
        self.xp = xp

    def assign(self, X, centers, centers_sqnorm):
        """Nearest centre per row.

        Parameters
        ----------
        X : array of shape (n_rows, n_features)
        centers : array of shape (n_clusters, n_features)
        centers_sqnorm : array of shape (n_clusters,)
            ``sum(centers**2, axis=1)``.

        Returns
        -------
        labels : integer array of shape (n_rows,)
            Index of the nearest centre; the first one on ties.
        partial : array of shape (n_rows,)
            ``||c||^2 - 2 x.c`` for that centre.
        """
        xp = self.xp
        scores = centers_sqnorm[None, :] - 2 * (X @ centers.T)
        return xp.argmin(scores, axis=1), xp.min(scores, axis=1)

    def accumulate(self, X, labels, weights, sums, counts):
        """Add each row of ``X`` (times its weight) to its cluster's sum.

        ``weights`` is an array of shape (n_rows,) or None for unit weights.
        Returns the updated ``(sums, counts)``; fast paths update in place.
        """
        xp = self.xp
        n_clusters = sums.shape[0]
        # The standard has no scatter-add; a one-hot product accumulates
        # repeated labels correctly and needs only matmul.
        ids = xp.arange(n_clusters, dtype=labels.dtype, device=device_of(X))
        onehot = xp.astype(labels[:, None] == ids[None, :], X.dtype)
        if weights is not None:
            onehot = onehot * weights[:, None]
        return sums + onehot.T @ X, counts + xp.sum(onehot, axis=0)

    def sq_row_norms(self, X):
        """Squared Euclidean norm of each row."""
        return self.xp.sum(X * X, axis=1)


class NumpyKernels(Kernels):
    """numpy: BLAS matmul into one buffer, in-place accumulation."""

    # Cache-resident blocks: the (200k, 32, 64) and (1M, 16, 8) rows.
    block_bytes = 1 << 18
    # numpy releases the GIL in BLAS and ufunc loops: use every core.
    threaded = True

    def assign(self, X, centers, centers_sqnorm):
        import numpy as np

        scores = X @ (-2 * centers).T
        scores += centers_sqnorm
        labels = np.argmin(scores, axis=1)
        partial = np.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
        return labels, partial

    def accumulate(self, X, labels, weights, sums, counts):
        import numpy as np

        n_clusters = sums.shape[0]
        if weights is None:
            counts += np.bincount(labels, minlength=n_clusters).astype(counts.dtype)
        else:
            counts += np.bincount(labels, weights=weights, minlength=n_clusters).astype(
                counts.dtype
            )
        if n_clusters <= 128:
            # Few clusters: a one-hot GEMM beats bincount per feature
            # (the (1M, 16, 8) and (200k, 32, 64) rows).
            onehot = np.zeros((X.shape[0], n_clusters), dtype=X.dtype)
            onehot[np.arange(X.shape[0]), labels] = 1 if weights is None else weights
            sums += onehot.T @ X
            return sums, counts
        # Many clusters: sort the rows by label and add runs of equal labels
        # (the (100k, 128, 1024) row); O(n d) instead of O(n k d).
        order = np.argsort(labels, kind="stable")
        sorted_labels = labels[order]
        rows = X[order] if weights is None else X[order] * weights[order, None]
        starts = np.flatnonzero(
            np.concatenate(([True], sorted_labels[1:] != sorted_labels[:-1]))
        )
        sums[sorted_labels[starts]] += np.add.reduceat(rows, starts, axis=0)
        return sums, counts

    def sq_row_norms(self, X):
        import numpy as np

        return np.einsum("ij,ij->i", X, X)


class TorchKernels(Kernels):
    """torch: fused addmm, fused min+argmin, index_add_."""

    block_bytes = 1 << 20

    def assign(self, X, centers, centers_sqnorm):
        import torch

        # One kernel for ||c||^2 - 2 x.c and one pass for min and argmin.
        scores = torch.addmm(centers_sqnorm, X, centers.T, alpha=-2)
        partial, labels = torch.min(scores, dim=1)
        return labels, partial

    def accumulate(self, X, labels, weights, sums, counts):
        if weights is None:
            sums.index_add_(0, labels, X)
            counts.index_add_(0, labels, X.new_ones(labels.shape[0]))
        else:
            sums.index_add_(0, labels, X * weights[:, None])
            counts.index_add_(0, labels, weights)
        return sums, counts

    def sq_row_norms(self, X):
        return (X * X).sum(dim=1)


class CupyKernels(Kernels):
    """CuPy: cuBLAS matmul and atomic scatter-add."""

    block_bytes = 1 << 30

    def assign(self, X, centers, centers_sqnorm):
        import cupy

        scores = X @ (-2 * centers).T
        scores += centers_sqnorm
        labels = cupy.argmin(scores, axis=1)
        partial = cupy.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
        return labels, partial

    def accumulate(self, X, labels, weights, sums, counts):
        import cupyx

        # cupyx.scatter_add accumulates repeated indices (atomicAdd);
        # fancy-index += would keep only one of them.
        if weights is None:
            cupyx.scatter_add(sums, labels, X)
            cupyx.scatter_add(counts, labels, 1)
        else:
            cupyx.scatter_add(sums, labels, X * weights[:, None])
            cupyx.scatter_add(counts, labels, weights)
        return sums, counts


def get_kernels(xp, device=None) -> Kernels:
    """The kernels for namespace ``xp``: native where one exists, else generic."""
    if is_numpy_namespace(xp):
        return NumpyKernels(xp)
    if is_torch_namespace(xp):
        kernels = TorchKernels(xp)
        if device is not None and getattr(device, "type", "cpu") != "cpu":
            # Large blocks keep a GPU busy (the (1M, 128, 4096) GPU row).
            kernels.block_bytes = 1 << 30
        return kernels
    if is_cupy_namespace(xp):
        return CupyKernels(xp)
    return Kernels(xp)
