"""Sparse data behind the seam: the two kernels for row blocks of a
scipy.sparse matrix or array (CSR or CSC, and cupyx.scipy.sparse through the
same calls) and of a torch sparse CSR tensor, without densifying X.

Only the data is sparse: centres, sums, labels and distances are dense
arrays (numpy for scipy, torch for torch). Working memory per block is one
(rows x n_clusters) score array plus the block's own nonzeros, never
(rows x n_features).

* ``assign``: ``||c||^2 - 2 X c`` with one sparse-dense product per block.
* ``accumulate``: the per-cluster sums as a product of a sparse one-hot
  matrix (clusters x rows, the weights as values) with the block, whose
  nonzeros are then added into the dense sums: no (rows x n_features) and no
  extra (n_clusters x n_features) array.

Sparse data is never shifted by its mean (that would densify it); the fit
measures distances in the original coordinates, as scikit-learn does for
sparse input.

Nothing here imports scipy, cupyx or torch at module import: the kernels are
built by ``sparse_kernels(X)`` from the modules of the array at hand.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ScipySparseKernels",
    "TorchSparseKernels",
    "is_sparse",
    "iter_row_blocks",
    "lloyd_pass",
    "sparse_kernels",
    "sparse_module",
]


def is_sparse(X) -> bool:
    """scipy.sparse / cupyx.scipy.sparse matrices and arrays, and torch
    sparse tensors, recognised without importing their libraries."""
    module = type(X).__module__
    if module.startswith(("scipy.sparse", "cupyx.scipy.sparse")):
        return True
    return module.startswith("torch") and getattr(X, "layout", None) is not None and str(X.layout) != "torch.strided"


def sparse_module(X) -> str:
    """The ``kmeans_xp._kernels`` module with the kernels for sparse ``X``."""
    return "torch_sparse" if type(X).__module__.startswith("torch") else "scipy_sparse"


def sparse_kernels(X):
    """The kernel object for sparse array ``X``.

    Raises TypeError for a sparse format the kernels do not handle (e.g.
    COO, DOK or a torch COO tensor), naming the conversion to make.
    """
    module = type(X).__module__
    if module.startswith(("scipy.sparse", "cupyx.scipy.sparse")):
        if X.format not in ("csr", "csc"):
            raise TypeError(
                f"sparse X in {X.format!r} format is not supported; convert it with "
                "X.tocsr() (CSR is the format k-means reads row blocks from)."
            )
        return ScipySparseKernels.for_array(X)
    if module.startswith("torch"):
        import torch

        if X.layout is not torch.sparse_csr:
            raise TypeError(
                f"torch sparse X with layout {X.layout} is not supported; convert it with "
                "X.to_sparse_csr()."
            )
        return TorchSparseKernels()
    raise TypeError(f"{type(X).__name__} is not a sparse array.")


class ScipySparseKernels:
    """Kernels for scipy.sparse blocks with numpy centres; cupyx.scipy.sparse
    blocks with cupy centres share them (``CupyxSparseKernels``), the two
    libraries having the same calls."""

    def __init__(self, sparse=None, dense=None):
        if sparse is None:
            import scipy.sparse as sparse
        #: ``scipy.sparse`` or ``cupyx.scipy.sparse``
        self.sparse = sparse
        #: ``numpy`` or ``cupy``: the library of the dense arrays.
        self.dense = np if dense is None else dense

    @classmethod
    def for_array(cls, X):
        """The kernels for scipy or cupyx sparse ``X``."""
        if type(X).__module__.startswith("cupyx"):
            return CupyxSparseKernels()
        return ScipySparseKernels()

    # -- blocks --------------------------------------------------------------

    def row_block(self, X, start: int, stop: int):
        """Rows ``start:stop`` of X as CSR. For CSR X the block shares X's
        ``data`` and ``indices`` (views); only its row pointers are new."""
        if X.format != "csr":
            # Row slices of CSC touch every column: callers convert CSC to
            # CSR once, at validation (one copy of the nonzeros).
            return X[start:stop].tocsr()
        first, last = int(X.indptr[start]), int(X.indptr[stop])
        maker = self.sparse.csr_array if _is_sparse_array(X) else self.sparse.csr_matrix
        block = maker((stop - start, X.shape[1]), dtype=X.dtype)
        # Set the parts directly: the constructor would copy slices much
        # smaller than their base array ("pruning").
        block.data = X.data[first:last]
        block.indices = X.indices[first:last]
        block.indptr = X.indptr[start:stop + 1] - X.indptr.dtype.type(first)
        return block

    def rows_per_block(self, X, n_clusters: int, block_bytes: int | None = None) -> int:
        """Rows per block; see ``_rows_per_block``."""
        storage = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
        return _rows_per_block(X.shape[0], X.nnz, storage, n_clusters, X.dtype.itemsize, block_bytes)

    # -- the seam --------------------------------------------------------------

    def sq_row_norms(self, Xb):
        """Squared norm of each row: array of shape (n_rows,)."""
        if Xb.format == "csr":
            row_ids = self._row_ids(Xb)
            return self.dense.bincount(row_ids, weights=Xb.data * Xb.data, minlength=Xb.shape[0]).astype(
                Xb.dtype, copy=False
            )
        return self.dense.asarray(Xb.multiply(Xb).sum(axis=1)).ravel().astype(Xb.dtype, copy=False)

    def assign(self, Xb, centers, centers_sqnorm):
        """Nearest centre of each row, and ``||c||^2 - 2 x.c`` for it.

        Returns ``(labels, partial)``: int64 and X's dtype, shape (n_rows,).
        The first centre wins ties, as in the dense kernels.
        """
        scores = Xb @ centers.T  # dense (n_rows, n_clusters)
        scores *= -2
        scores += centers_sqnorm[None, :]
        labels = self.dense.argmin(scores, axis=1)
        partial = self.dense.take_along_axis(scores, labels[:, None], axis=1)[:, 0]
        return labels.astype(self.dense.int64, copy=False), partial

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        """``assign`` with the centres fixed, as the dense kernels offer."""
        centers_t = self.dense.ascontiguousarray(centers.T)
        dense = self.dense

        def assign(Xb):
            scores = Xb @ centers_t
            scores *= -2
            scores += centers_sqnorm[None, :]
            labels = dense.argmin(scores, axis=1)
            best = dense.take_along_axis(scores, labels[:, None], axis=1)[:, 0] if partial else None
            return labels.astype(dense.int64, copy=False), best

        return assign

    def accumulate(self, Xb, labels, weights, sums, counts):
        """Add each row (times its weight) to its cluster's sum, in place.

        ``sums`` (n_clusters, n_features) and ``counts`` (n_clusters,) are
        dense; returns them.
        """
        n_clusters, n_rows = sums.shape[0], Xb.shape[0]
        values = (
            self.dense.ones(n_rows, dtype=sums.dtype) if weights is None else weights.astype(sums.dtype, copy=False)
        )
        onehot = self.sparse.csr_matrix(
            (values, (labels, self.dense.arange(n_rows))), shape=(n_clusters, n_rows)
        )
        block_sums = (onehot @ Xb).tocsr()  # at most one nonzero per nonzero of Xb
        block_sums.sum_duplicates()
        cluster_of = self._row_ids(block_sums)
        # Canonical CSR: each (cluster, column) once, so a fancy-index add
        # accumulates correctly.
        sums[cluster_of, block_sums.indices] += block_sums.data
        counts += self.dense.bincount(labels, weights=values, minlength=n_clusters).astype(counts.dtype, copy=False)
        return sums, counts

    def cluster_sums(self, Xb, labels, weights, n_clusters: int, dtype=None):
        """``accumulate`` into zeros: new dense ``(sums, counts)``."""
        dtype = Xb.dtype if dtype is None else dtype
        sums = self.dense.zeros((n_clusters, Xb.shape[1]), dtype=dtype)
        counts = self.dense.zeros((n_clusters,), dtype=dtype)
        return self.accumulate(Xb, labels, weights, sums, counts)

    def sq_distances(self, Xb, Xb_sqnorm, points):
        """Squared distances (n_rows, n_points) of the rows to a few dense
        ``points`` (k-means++ candidates), clamped at 0."""
        d2 = Xb @ points.T
        d2 *= -2
        d2 += Xb_sqnorm[:, None]
        d2 += (points * points).sum(axis=1)[None, :]
        return self.dense.maximum(d2, 0, out=d2)

    def sq_distances_to(self, Xb, centers, labels):
        """Each row's squared distance to its labelled centre: (n_rows,)."""
        d2 = self.sq_distances(Xb, self.sq_row_norms(Xb), centers)
        return self.dense.take_along_axis(d2, labels[:, None], axis=1)[:, 0]

    def dense_rows(self, X, indices):
        """Rows ``indices`` of X as a dense array (k-means++ and random
        initial centres: a few rows only)."""
        return self.dense.asarray(X[self.dense.asarray(indices)].toarray())

    def select_rows(self, X, indices):
        """Rows ``indices`` (repeats allowed) of CSR X, as CSR."""
        return X[self.dense.asarray(indices)]

    def _row_ids(self, Xb):
        """Row index of each stored value of a CSR block."""
        return self.dense.repeat(self.dense.arange(Xb.shape[0]), self.dense.diff(Xb.indptr))


class CupyxSparseKernels(ScipySparseKernels):
    """``ScipySparseKernels`` for cupyx.scipy.sparse blocks and cupy
    centres: only what CuPy does differently is here."""

    def __init__(self):
        import cupy
        import cupyx.scipy.sparse

        super().__init__(cupyx.scipy.sparse, cupy)

    def _row_ids(self, Xb):
        # cupy.repeat takes no cupy array of repeats before CuPy 14.1: the
        # row of each stored value is the number of rows ending at or
        # before it.
        cupy = self.dense
        positions = cupy.arange(Xb.indices.shape[0], dtype=Xb.indptr.dtype)
        return cupy.searchsorted(Xb.indptr[1:], positions, side="right")


class TorchSparseKernels:
    """Kernels for torch sparse CSR tensors with dense torch centres, on
    the tensors' device."""

    def __init__(self):
        import torch

        self.torch = torch

    def row_block(self, X, start: int, stop: int):
        """Rows ``start:stop`` of a CSR tensor, sharing its values and column
        indices (views); only the row pointers are new."""
        torch = self.torch
        crow = X.crow_indices()
        first, last = int(crow[start]), int(crow[stop])
        return torch.sparse_csr_tensor(
            crow[start:stop + 1] - first,
            X.col_indices()[first:last],
            X.values()[first:last],
            size=(stop - start, X.shape[1]),
            dtype=X.dtype,
            device=X.device,
            # Slices of a valid tensor are valid: skip the O(nnz) check.
            check_invariants=False,
        )

    def rows_per_block(self, X, n_clusters: int, block_bytes: int | None = None) -> int:
        """Rows per block; see ``_rows_per_block``."""
        values, crow, cols = X.values(), X.crow_indices(), X.col_indices()
        storage = sum(a.numel() * a.element_size() for a in (values, crow, cols))
        return _rows_per_block(
            X.shape[0], values.shape[0], storage, n_clusters, values.element_size(), block_bytes
        )

    def _row_ids(self, Xb):
        torch = self.torch
        crow = Xb.crow_indices()
        rows = torch.arange(Xb.shape[0], device=crow.device)
        return torch.repeat_interleave(rows, crow[1:] - crow[:-1])

    def sq_row_norms(self, Xb):
        torch = self.torch
        values = Xb.values()
        out = torch.zeros(Xb.shape[0], dtype=values.dtype, device=values.device)
        return out.index_add_(0, self._row_ids(Xb), values * values)

    def assign(self, Xb, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(Xb)

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        torch = self.torch
        centers_t = centers.T.contiguous()

        def assign(Xb):
            scores = torch.addmm(centers_sqnorm[None, :], Xb, centers_t, alpha=-2)
            best, labels = torch.min(scores, dim=1)
            return labels, (best if partial else None)

        return assign

    def accumulate(self, Xb, labels, weights, sums, counts):
        """Per-nonzero scatter-add into the dense sums, in place: each
        stored value goes to (its row's cluster, its column)."""
        torch = self.torch
        row_ids = self._row_ids(Xb)
        values = Xb.values()
        if weights is not None:
            values = values * weights[row_ids]
        sums.index_put_((labels[row_ids], Xb.col_indices()), values.to(sums.dtype), accumulate=True)
        if weights is None:
            weights = torch.ones(Xb.shape[0], dtype=counts.dtype, device=counts.device)
        counts.index_add_(0, labels, weights.to(counts.dtype))
        return sums, counts

    def cluster_sums(self, Xb, labels, weights, n_clusters: int, dtype=None):
        torch = self.torch
        dtype = Xb.dtype if dtype is None else dtype
        sums = torch.zeros((n_clusters, Xb.shape[1]), dtype=dtype, device=Xb.device)
        counts = torch.zeros((n_clusters,), dtype=dtype, device=Xb.device)
        return self.accumulate(Xb, labels, weights, sums, counts)

    def sq_distances(self, Xb, Xb_sqnorm, points):
        torch = self.torch
        d2 = torch.addmm(Xb_sqnorm[:, None], Xb, points.T.contiguous(), alpha=-2)
        d2 += (points * points).sum(dim=1)[None, :]
        return d2.clamp_(min=0)

    def sq_distances_to(self, Xb, centers, labels):
        d2 = self.sq_distances(Xb, self.sq_row_norms(Xb), centers)
        return d2.gather(1, labels[:, None])[:, 0]

    def select_rows(self, X, indices):
        """Rows ``indices`` (repeats allowed) of a CSR tensor, as a new CSR
        tensor holding only their nonzeros."""
        torch = self.torch
        crow = X.crow_indices()
        indices = torch.as_tensor(indices, device=crow.device, dtype=crow.dtype)
        starts = crow[indices]
        lengths = crow[indices + 1] - starts
        new_crow = torch.zeros(indices.shape[0] + 1, dtype=crow.dtype, device=crow.device)
        new_crow[1:] = torch.cumsum(lengths, 0)
        # Position in X of each kept nonzero: its row's start in X plus its
        # rank within the row.
        offsets = torch.repeat_interleave(starts - new_crow[:-1], lengths)
        positions = offsets + torch.arange(int(new_crow[-1]), dtype=crow.dtype, device=crow.device)
        return torch.sparse_csr_tensor(
            new_crow,
            X.col_indices()[positions],
            X.values()[positions],
            size=(indices.shape[0], X.shape[1]),
            dtype=X.dtype,
            device=X.device,
            check_invariants=False,
        )

    def dense_rows(self, X, indices):
        """Rows ``indices`` of X as a dense tensor (a few rows only)."""
        return self.select_rows(X, indices).to_dense()


def _rows_per_block(n_samples, nnz, storage, n_clusters, itemsize, block_bytes=None) -> int:
    """Rows per block so that the (rows x n_clusters) scores and the block's
    nonzero temporaries (value, column, row id: about 24 bytes each) each
    stay within ``block_bytes``: by default an eighth of X's own storage,
    between 256 KiB and 16 MiB, so a pass's working memory stays a fraction
    of the nonzeros' storage (the sparse row of the issue: below twice it).
    """
    if block_bytes is None:
        block_bytes = min(1 << 24, max(1 << 18, storage // 8))
    by_scores = block_bytes // max(1, n_clusters * itemsize)
    nnz_per_row = max(1.0, nnz / max(1, n_samples))
    by_nonzeros = block_bytes // max(1, math.ceil(nnz_per_row * 24))
    return int(max(1, min(n_samples, by_scores, by_nonzeros)))


def _is_sparse_array(X) -> bool:
    """scipy's ``*_array`` classes (as opposed to ``*_matrix``)."""
    return "array" in type(X).__name__


def iter_row_blocks(X, rows: int, kernels=None):
    """``(start, stop, block)`` for consecutive row blocks of sparse X.

    This is how the block runner slices sparse data: by row pointers, so a
    CSR block is a view of X's nonzeros, and no shift is applied.
    """
    kernels = sparse_kernels(X) if kernels is None else kernels
    for start in range(0, X.shape[0], rows):
        stop = min(start + rows, X.shape[0])
        yield start, stop, kernels.row_block(X, start, stop)


def lloyd_pass(X, centers, weights=None, *, rows=None, kernels=None):
    """One Lloyd pass over sparse X: labels, new cluster sums and weights,
    and the inertia under ``centers``.

    The reference driver for integration: the in-memory block runner does
    this with ``kernels.assigner`` and ``kernels.accumulate``, per block.

    Parameters
    ----------
    X : sparse array of shape (n_samples, n_features), CSR (or CSC)
    centers : dense array of shape (n_clusters, n_features)
    weights : dense array of shape (n_samples,), optional
    rows : int, optional
        Rows per block; ``kernels.rows_per_block`` when None.

    Returns
    -------
    labels : integer array of shape (n_samples,)
    sums : dense array of shape (n_clusters, n_features)
    counts : dense array of shape (n_clusters,)
    inertia : float
    """
    kernels = sparse_kernels(X) if kernels is None else kernels
    n_clusters = centers.shape[0]
    rows = kernels.rows_per_block(X, n_clusters) if rows is None else rows
    centers_sqnorm = (centers * centers).sum(**_axis_kw(centers, 1))
    assign = kernels.assigner(centers, centers_sqnorm)
    sums = counts = None
    labels_parts = []
    inertia = 0.0
    for start, stop, Xb in iter_row_blocks(X, rows, kernels):
        labels, partial = assign(Xb)
        w = None if weights is None else weights[start:stop]
        d2 = partial + kernels.sq_row_norms(Xb)
        d2 = d2.clip(0) if hasattr(d2, "clip") else d2
        inertia += float((d2 if w is None else w * d2).sum())
        if sums is None:
            sums, counts = kernels.cluster_sums(Xb, labels, w, n_clusters, dtype=centers.dtype)
        else:
            kernels.accumulate(Xb, labels, w, sums, counts)
        labels_parts.append(labels)
    labels = labels_parts[0] if len(labels_parts) == 1 else _concat(labels_parts)
    return labels, sums, counts, inertia


def _axis_kw(a, axis):
    return {"dim": axis} if type(a).__module__.startswith("torch") else {"axis": axis}


def _concat(parts):
    if type(parts[0]).__module__.startswith("torch"):
        import torch

        return torch.cat(parts)
    if type(parts[0]).__module__.startswith("cupy"):
        import cupy

        return cupy.concatenate(parts)
    return np.concatenate(parts)
