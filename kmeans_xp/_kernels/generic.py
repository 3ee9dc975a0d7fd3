"""The generic kernels: the array API standard alone.

* ``assign``: nearest centre of each row of a block, with the partial
  squared distance ``||c||^2 - 2 x.c`` of that centre (add ``||x||^2`` for
  the full squared distance).
* ``accumulate``: per-cluster weighted sums and weights of a block, added
  into running accumulators (a segment sum).

Everything else on ``Kernels`` is a default that a backend file may
replace where a benchmark row shows the gain (see benchmarks/README.md):
``assigner`` (per-pass preparation of the centres), ``move`` and
``running_sums`` (incremental Lloyd sums), ``fused_step`` (assign and
accumulate in one kernel), ``fused_potentials`` (k-means++'s candidates in
one kernel), ``cluster_sums``,
``sq_row_norms``, ``sq_distances_to``, ``sq_sum``, ``column_sums``,
``cumulative_sum``, the accumulator dtype (``sum_dtype``), how the host
reads small results (``host_values``, ``cheap_reads``), and how blocks are
cut and run (``rows_per_block``, ``threaded``, ``pool_context``,
``shifted_block``). This is what array_api_strict and
unknown libraries run. Inputs are trusted: the public functions have
validated shapes, dtypes and devices already. Nothing here writes into an
array: arrays may be immutable (JAX).
"""

from __future__ import annotations

import contextlib

from .. import _blocks
from .._array_api import device_of, to_host

__all__ = ["Kernels"]


class Kernels:
    """Generic array-API kernels for namespace ``xp``."""

    #: Bytes of working memory one (rows x clusters) block may use.
    block_bytes = 1 << 20
    #: Whether blocks may run on a thread pool (kernels release the GIL).
    threaded = False
    #: Whether Lloyd should update the cluster sums with the rows that
    #: changed cluster only, instead of summing every row each iteration:
    #: worth it where ``accumulate`` costs as much as ``assign`` (CPU).
    incremental_sums = False
    #: Whether reading a value from an array costs no device wait (host
    #: arrays); GPU kernels say False and the block runner then asks fewer
    #: questions of the data.
    cheap_reads = True
    #: Whether blocks may be shifted by a vector (dense data). Sparse data
    #: may not: a shifted block is dense.
    shiftable = True

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

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        """``assign`` with ``centers`` fixed: a function ``Xb -> (labels,
        partial)`` for one pass, so per-pass preparation of the centres
        (transposes, scaling) is done once rather than once per block.

        With ``partial=False`` the caller promises not to read the second
        result, and fast paths may return None for it (saving a gather).
        With ``compact=True`` fast paths may return labels in a smaller
        integer dtype that holds every label (Lloyd keeps them so from pass
        to pass and casts them once at the end).
        """
        return lambda Xb: self.assign(Xb, centers, centers_sqnorm)

    def accumulate(self, X, labels, weights, sums, counts):
        """Add each row of ``X`` (times its weight) to its cluster's sum.

        Parameters
        ----------
        X : array of shape (n_rows, n_features)
        labels : integer array of shape (n_rows,)
        weights : array of shape (n_rows,) or None for unit weights
        sums : array of shape (n_clusters, n_features)
        counts : array of shape (n_clusters,)

        Returns
        -------
        sums, counts : the updated accumulators; fast paths update in place.
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

    def move(self, X, old_labels, new_labels, weights, sums, counts):
        """Rows that changed cluster: each row of ``X`` (times its weight)
        is added to its new cluster and taken from its old one, in
        ``sums`` and ``counts`` (see ``accumulate``; fast paths update in
        place)."""
        xp = self.xp
        if weights is None:
            weights = xp.ones((X.shape[0],), dtype=X.dtype, device=device_of(X))
        return self.accumulate(
            xp.concat([X, X]),
            xp.concat([new_labels, old_labels]),
            xp.concat([weights, -weights]),
            sums,
            counts,
        )

    def sum_dtype(self, dtype):
        """The dtype of the per-cluster sums and weights that ``accumulate``
        adds into, for data of ``dtype``: the data's own here (sums over
        blocks, pairwise); GPU kernels, whose atomic adds go one row at a
        time, say float64."""
        return dtype

    def running_sums(self, sums, counts):
        """The cluster sums and weights kept from pass to pass for
        incremental updates (see ``incremental_sums``)."""
        return sums, counts

    def cluster_sums(self, X, labels, weights, n_clusters: int):
        """``accumulate`` into zeros: new arrays ``(sums, counts)`` of
        shapes (n_clusters, n_features) and (n_clusters,)."""
        xp, device = self.xp, device_of(X)
        dtype = self.sum_dtype(X.dtype)
        return self.accumulate(
            X,
            labels,
            weights,
            xp.zeros((n_clusters, X.shape[1]), dtype=dtype, device=device),
            xp.zeros((n_clusters,), dtype=dtype, device=device),
        )

    def fused_step(self, centers, centers_sqnorm, *, want_inertia: bool, compact: bool = False,
                   moves_only: bool = False):
        """``assign`` and ``accumulate`` of a block fused into one kernel,
        where a backend has one for these centres; None (here) means Lloyd
        runs ``assigner`` then ``accumulate`` (or ``move``).

        Returns ``step(X, weights, previous, sums, counts, out=None) -> (labels,
        sums, counts, inertia, n_changed)``: the block's labels (a smaller
        integer dtype where ``compact``), its rows added into ``sums`` and
        ``counts`` (of ``sum_dtype``; only once nothing is left to
        allocate, so a block that runs out of memory can be retried), the
        block's inertia (0.0 unless ``want_inertia``) and how many labels
        differ from ``previous`` (0 where it is None). With ``moves_only``
        (incremental sums, see ``move``) only the rows whose label differs
        from ``previous`` are added to their new cluster and taken from
        their old one. ``out`` (of ``fused_label_dtype``, the block's rows
        of the pass's labels, with ``compact``) receives the labels, then
        returned. See ``numba.FusedNumpyKernels``.
        """
        return None

    def fused_label_dtype(self, n_clusters: int):
        """The integer dtype of ``fused_step``'s compact labels for
        ``n_clusters`` centres (the pass's labels array is made in it)."""
        return self.xp.int32

    def fused_potentials(self, points):
        """k-means++'s evaluation of candidate ``points`` in one kernel,
        where a backend has one; None (here) means products and minima.

        Returns ``potentials(X, X_sqnorm, closest, weights) -> (totals,
        d2)``: ``d2`` of shape (n_rows, n_points) the squared distances of
        the rows to the points, clamped at 0 and capped at ``closest``
        (each row's distance to the centres so far; None: no cap), and
        ``totals`` their weighted column sums (float64). ``X_sqnorm`` and
        ``weights`` may be None (computed there; unit weights).
        """
        return None

    def sq_row_norms(self, X):
        """Squared Euclidean norm of each row, array of shape (n_rows,)."""
        return self.xp.sum(X * X, axis=1)

    def sq_distances_to(self, X, centers, labels):
        """``sum((X - centers[labels])**2, axis=1)``: each row's squared
        distance to its labelled centre, array of shape (n_rows,)."""
        return self.sq_row_norms(X - self.xp.take(centers, labels, axis=0))

    def sq_sum(self, A):
        """``sum(A**2)`` over every element, as a 0-d array on the device."""
        return self.xp.sum(A * A)

    def column_sums(self, X, weights=None):
        """``sum(weights[:, None] * X, axis=0)`` (unit weights when None),
        array of shape (n_features,)."""
        if weights is not None:
            X = weights[:, None] * X
        return self.xp.sum(X, axis=0)

    def rows_per_block(self, n_samples: int, width: int, itemsize: int) -> int:
        """Rows per block for (rows x width) work arrays of ``itemsize``."""
        return _blocks.block_rows(n_samples, width, itemsize, self.block_bytes)

    def cumulative_sum(self, x):
        """Inclusive cumulative sum of a 1-d array (k-means++ sampling)."""
        return self.xp.cumulative_sum(x)

    def host_values(self, a) -> list:
        """The values of a small 1-d array as a Python list: one device
        read, whatever its length."""
        return to_host(a).tolist()

    def count_nonempty(self, labels, n_clusters: int) -> int:
        """How many of the ``n_clusters`` labels occur in ``labels``."""
        return int(self.xp.unique_values(labels).shape[0])

    def pool_context(self):
        """A context manager held while blocks run on the thread pool."""
        return contextlib.nullcontext()

    def row_block(self, X, start: int, stop: int):
        """Rows ``start:stop`` of ``X``, unshifted (a view where the
        library makes one)."""
        return X[start:stop, :]

    def take_rows(self, X, indices):
        """Rows ``indices`` of ``X`` as a dense array (initial centres,
        relocated rows: a few rows)."""
        return self.xp.take(X, indices, axis=0)

    def select_rows(self, X, indices):
        """Rows ``indices`` of ``X`` in X's own format (batches, subsets)."""
        return self.xp.take(X, indices, axis=0)

    def data_device(self, X):
        """The device of data ``X``."""
        return device_of(X)

    def shifted_block(self, X, start: int, stop: int, shift):
        """Rows ``start:stop`` of ``X`` minus ``shift``: a new array."""
        return X[start:stop, :] - shift
