"""Sparse data behind the seam: the two kernels for row blocks of a
scipy.sparse matrix or array (CSR or CSC, and cupyx.scipy.sparse through the
same calls) and of a torch sparse CSR tensor, without densifying X.

Only the data is sparse: centres, sums, labels and distances are dense
arrays (numpy for scipy, cupy for cupyx, torch for torch). Working memory
per block is its (rows x n_clusters) scores or its nonzeros' temporaries,
within a byte budget (``block_budget``), never (rows x n_features); the
products read the centres in cache-sized slices rather than through a
transposed (n_features x n_clusters) copy.

* ``assign``: ``||c||^2 - 2 X c`` with sparse-dense products per block.
* ``accumulate``: each stored value is scatter-added into its row's
  cluster's sum (``numpy.add.at``, ``cupyx.scatter_add``, torch's
  ``index_put_``): no (rows x n_features) and no extra (n_clusters x
  n_features) array.
* distances to the labelled centres (inertia) over each row's stored values
  only, as scikit-learn computes sparse inertia.

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
    "CupyxSparseKernels",
    "ScipySparseKernels",
    "TorchSparseKernels",
    "block_budget",
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
    return (
        module.startswith("torch")
        and getattr(X, "layout", None) is not None
        and str(X.layout) != "torch.strided"
    )


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

    #: Bytes per stored value of a block that its passes allocate at once
    #: (row ids, gathered labels or centre values, weighted values or
    #: squares: 8 each; 24 measured with tracemalloc on numpy, one more
    #: 8 for cupy's row ids).
    nnz_bytes = 32
    #: The thinnest slice of the centres a product reads (see ``_product``):
    #: each slice is one more pass over the block.
    min_slice_bytes = 1 << 22

    def __init__(self, sparse=None, dense=None, block_bytes: int | None = None):
        if sparse is None:
            import scipy.sparse as sparse
        #: ``scipy.sparse`` or ``cupyx.scipy.sparse``
        self.sparse = sparse
        #: ``numpy`` or ``cupy``: the library of the dense arrays.
        self.dense = np if dense is None else dense
        #: What a block's temporaries may take (``block_budget`` of X).
        self.block_bytes = block_budget(None) if block_bytes is None else int(block_bytes)

    @classmethod
    def for_array(cls, X):
        """The kernels for scipy or cupyx sparse ``X``, with X's block
        budget."""
        budget = block_budget(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
        if type(X).__module__.startswith("cupyx"):
            return CupyxSparseKernels(block_bytes=budget)
        return ScipySparseKernels(block_bytes=budget)

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
        block.indptr = X.indptr[start : stop + 1] - X.indptr.dtype.type(first)
        # Known once for X (validation sums duplicates): cupyx would
        # otherwise check each block before its product, a kernel and a sync.
        block.has_canonical_format = X.has_canonical_format
        return block

    def rows_per_block(self, X, n_clusters: int, block_bytes: int | None = None) -> int:
        """Rows per block; see ``_rows_per_block``."""
        block_bytes = self.block_bytes if block_bytes is None else block_bytes
        itemsize = X.dtype.itemsize
        width = self._slice_width(n_clusters, X.shape[1], itemsize)
        return _rows_per_block(
            X.shape[0],
            X.nnz,
            n_clusters,
            itemsize,
            block_bytes,
            slice_width=0 if width == n_clusters else width,
            nnz_bytes=self.nnz_bytes,
        )

    # -- products with the dense centres ------------------------------------------

    def _slice_width(self, n_points: int, n_features: int, itemsize: int) -> int:
        """Centres per slice of ``-2 C^T`` (see ``_product``): all of them
        up to twice the block budget, else even slices of at most the
        budget (``min_slice_bytes`` at least)."""
        total = n_points * n_features * itemsize
        if total <= 2 * self.block_bytes:
            return n_points
        n_slices = -(-total // max(self.block_bytes, self.min_slice_bytes))
        return max(1, -(-n_points // n_slices))

    def _product(self, points):
        """A function ``Xb -> Xb @ (-2 points^T)``, a new dense (n_rows,
        n_points) array, for the dense ``points`` of one pass.

        scipy's CSR-dense product gathers one row of the dense operand,
        ``-2 P^T`` (d x k), per stored value: fast while that operand stays
        in cache. Up to twice the block budget it is made once, for every
        block; larger ones are read in slices of about the budget, each
        transposed per block into one buffer, so no (d x k) copy of the
        centres is held and each slice is read from cache (twice as fast
        as the whole at k = 64 and 128 on the sparse rows of
        benchmarks/README.md).
        """
        dense = self.dense
        n_points, n_features = points.shape
        width = self._slice_width(n_points, n_features, points.dtype.itemsize)
        if width == n_points:
            points_t = dense.empty((n_features, n_points), dtype=points.dtype)
            dense.multiply(points.T, -2, out=points_t)
            return lambda Xb: Xb @ points_t

        def product(Xb):
            out = dense.empty((Xb.shape[0], n_points), dtype=points.dtype)
            buffer = dense.empty(n_features * width, dtype=points.dtype)
            for first in range(0, n_points, width):
                last = min(first + width, n_points)
                # A contiguous (d x m) view of the buffer: scipy reads it
                # without copying.
                sliced = buffer[: n_features * (last - first)].reshape(n_features, last - first)
                dense.multiply(points[first:last].T, -2, out=sliced)
                out[:, first:last] = Xb @ sliced
            return out

        return product

    # -- the seam --------------------------------------------------------------

    def sq_row_norms(self, Xb):
        """Squared norm of each row: array of shape (n_rows,)."""
        Xb = _as_csr(Xb)
        return self.dense.bincount(
            self._row_ids(Xb), weights=Xb.data * Xb.data, minlength=Xb.shape[0]
        ).astype(Xb.dtype, copy=False)

    def assign(self, Xb, centers, centers_sqnorm):
        """Nearest centre of each row, and ``||c||^2 - 2 x.c`` for it.

        Returns ``(labels, partial)``: int64 and X's dtype, shape (n_rows,).
        The first centre wins ties, as in the dense kernels.
        """
        return self.assigner(centers, centers_sqnorm)(Xb)

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        """``assign`` with the centres fixed, as the dense kernels offer."""
        product = self._product(centers)
        dense = self.dense

        def assign(Xb):
            scores = product(Xb)  # dense (n_rows, n_clusters): -2 x.c
            scores += centers_sqnorm[None, :]
            labels = dense.argmin(scores, axis=1)
            best = dense.take_along_axis(scores, labels[:, None], axis=1)[:, 0] if partial else None
            return labels.astype(dense.int64, copy=False), best

        return assign

    def accumulate(self, Xb, labels, weights, sums, counts):
        """Add each row (times its weight) to its cluster's sum, in place:
        each stored value goes to (its row's cluster, its column), so no
        (n_rows x n_features) and no second (n_clusters x n_features) array
        is made.

        ``sums`` (n_clusters, n_features) and ``counts`` (n_clusters,) are
        dense; returns them.
        """
        dense = self.dense
        Xb = _as_csr(Xb)
        row_ids = self._row_ids(Xb)
        values = Xb.data.astype(sums.dtype, copy=False)
        if weights is not None:
            weights = weights.astype(sums.dtype, copy=False)
            values = values * weights[row_ids]
        self._scatter_add(sums, labels[row_ids], Xb.indices, values)  # a new rows array
        counts += dense.bincount(labels, weights=weights, minlength=sums.shape[0]).astype(
            counts.dtype, copy=False
        )
        return sums, counts

    def _scatter_add(self, sums, rows, columns, values):
        """``sums[rows, columns] += values``, repeated pairs accumulating;
        ``rows`` (the caller's temporary) may be overwritten."""
        if sums.flags.c_contiguous:
            # numpy's add.at is fast on one flat index and slow on a pair.
            flat = rows.astype(np.int64, copy=False)
            flat *= sums.shape[1]
            flat += columns
            np.add.at(sums.reshape(-1), flat, values)
        else:
            np.add.at(sums, (rows, columns), values)

    def _gather(self, centers, rows, columns):
        """``centers[rows, columns]``; ``rows`` may be overwritten."""
        if not centers.flags.c_contiguous:
            return centers[rows, columns]
        # A flat take: half the time of the pair of indices.
        flat = rows.astype(np.int64, copy=False)
        flat *= centers.shape[1]
        flat += columns
        return centers.reshape(-1).take(flat)

    def cluster_sums(self, Xb, labels, weights, n_clusters: int, dtype=None):
        """``accumulate`` into zeros: new dense ``(sums, counts)``."""
        dtype = Xb.dtype if dtype is None else dtype
        sums = self.dense.zeros((n_clusters, Xb.shape[1]), dtype=dtype)
        counts = self.dense.zeros((n_clusters,), dtype=dtype)
        return self.accumulate(Xb, labels, weights, sums, counts)

    def dense_sq_row_norms(self, A):
        """Squared norm of each row of a dense array, with no squared copy
        of it (the centres, k x d, once a pass)."""
        return self.dense.einsum("ij,ij->i", A, A)

    def sq_sum(self, A):
        """``sum(A**2)`` of a dense array (or of a block's values), with no
        squared copy of A (the centres' shift, k x d, every iteration). Not
        a BLAS dot: on a busy machine its threads wait on each other."""
        return np.einsum("i,i->", A.ravel(), A.ravel())

    def sq_distances(self, Xb, Xb_sqnorm, points):
        """Squared distances (n_rows, n_points) of the rows to a few dense
        ``points`` (k-means++ candidates), clamped at 0."""
        d2 = self._product(points)(Xb)
        d2 += Xb_sqnorm[:, None]
        d2 += self.dense_sq_row_norms(points)[None, :]
        return self.dense.maximum(d2, 0, out=d2)

    def sq_distances_to(self, Xb, centers, labels):
        """Each row's squared distance to its labelled centre: (n_rows,).

        Over the row's stored values only, as scikit-learn's sparse inertia:
        ``||c||^2 + sum((x_j - c_j)^2 - c_j^2)``, with no product against
        every centre.
        """
        dense = self.dense
        Xb = _as_csr(Xb)
        row_ids = self._row_ids(Xb)
        at_nonzeros = self._gather(centers, labels[row_ids], Xb.indices)
        terms = Xb.data - at_nonzeros
        terms *= terms
        at_nonzeros *= at_nonzeros
        terms -= at_nonzeros
        d2 = dense.bincount(row_ids, weights=terms, minlength=Xb.shape[0]).astype(
            centers.dtype, copy=False
        )
        d2 += self.dense_sq_row_norms(centers)[labels]
        return dense.maximum(d2, 0, out=d2)

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

    def __init__(self, block_bytes: int | None = None):
        import cupy
        import cupyx.scipy.sparse

        super().__init__(cupyx.scipy.sparse, cupy, block_bytes)

    def rows_per_block(self, X, n_clusters: int, block_bytes: int | None = None) -> int:
        block_bytes = self.block_bytes if block_bytes is None else block_bytes
        return _rows_per_block(
            X.shape[0], X.nnz, n_clusters, X.dtype.itemsize, block_bytes, nnz_bytes=self.nnz_bytes
        )

    def _product(self, points):
        # cuSPARSE reads the dense operand in Fortran order: points.T of
        # C-ordered points already is, so it is used as it is (a contiguous
        # copy would be converted back, per block).
        def product(Xb):
            out = Xb @ points.T
            out *= -2
            return out

        return product

    def sq_sum(self, A):
        return self.dense.vdot(A, A)  # cuBLAS

    def _gather(self, centers, rows, columns):
        return centers[rows, columns]

    def _scatter_add(self, sums, rows, columns, values):
        import cupyx

        cupyx.scatter_add(sums, (rows, columns), values)

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
            crow[start : stop + 1] - first,
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
        if block_bytes is None:
            block_bytes = block_budget(
                sum(a.numel() * a.element_size() for a in (values, crow, cols))
            )
        return _rows_per_block(
            X.shape[0], values.shape[0], n_clusters, values.element_size(), block_bytes
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

    def sq_sum(self, A):
        """``sum(A**2)`` of a dense tensor or of a block's values."""
        return (A * A).sum()

    def dense_sq_row_norms(self, A):
        return (A * A).sum(dim=1)

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


def block_budget(storage: int | None) -> int:
    """The bytes a block's temporaries may take for sparse X whose nonzeros
    take ``storage`` bytes: an eighth of it, between 256 KiB and 16 MiB (16
    MiB when unknown), so that a pass's working memory stays a fraction of
    the nonzeros' storage (the sparse row of the issue: below twice it)."""
    if storage is None:
        return 1 << 24
    return int(min(1 << 24, max(1 << 18, storage // 8)))


def _rows_per_block(
    n_samples, nnz, n_clusters, itemsize, block_bytes, *, slice_width=0, nnz_bytes=40
) -> int:
    """Rows per block so that everything a block allocates at once stays
    within ``block_bytes``: per row, its label and partial distance (16
    bytes) plus the larger of the (rows x n_clusters) scores with one
    (rows x ``slice_width``) slice of them (the assignment) and the
    temporaries of its stored values, ``nnz_bytes`` each (row norms, sums,
    distances). The centres' transposed copy or slice comes on top (at most
    twice ``block_bytes``, see ``ScipySparseKernels._product``).
    """
    nnz_per_row = nnz / max(1, n_samples)
    per_row = 16 + max((n_clusters + slice_width) * itemsize, math.ceil(nnz_per_row * nnz_bytes))
    return int(max(1, min(n_samples, block_bytes // per_row)))


def _as_csr(Xb):
    """A block as CSR (blocks are; CSC only reaches here from direct calls)."""
    return Xb if Xb.format == "csr" else Xb.tocsr()


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
