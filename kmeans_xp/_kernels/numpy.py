"""numpy kernels: BLAS matmul on blocks of 1-4 MiB spread over a thread
pool, with assigners and segment sums tuned per shape of the benchmark rows
(their measurements are in benchmarks/README.md)."""

from __future__ import annotations

import contextlib
import itertools
import threading

from .. import _blocks
from .generic import Kernels

__all__ = ["NumpyKernels", "kernels"]


def kernels(xp, device=None) -> NumpyKernels:
    """The kernels for numpy arrays (any device: numpy has only the CPU)."""
    return NumpyKernels(xp)


_BLAS_CONTROLLER = None


def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries, or None when
    threadpoolctl is not installed (it is optional)."""
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _BLAS_CONTROLLER = False
        else:
            _BLAS_CONTROLLER = ThreadpoolController().select(user_api="blas")
    return _BLAS_CONTROLLER or None


_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0
_LIMITER = None


@contextlib.contextmanager
def _one_blas_thread(controller):
    """Limit BLAS to one thread while any pass holds this, process-wide.

    Reference counted: passes that overlap (``predict`` from several
    threads) share one limit, and the last one out restores the original,
    instead of each restoring a limit another one saved.
    """
    global _LIMIT_DEPTH, _LIMITER
    with _LIMIT_LOCK:
        if _LIMIT_DEPTH == 0:
            _LIMITER = controller.limit(limits=1)
        _LIMIT_DEPTH += 1
    try:
        yield
    finally:
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0:
                _LIMITER.restore_original_limits()
                _LIMITER = None


class NumpyKernels(Kernels):
    """numpy: BLAS matmul on blocks of 1-4 MiB spread over a thread pool."""

    # Blocks of 1 MiB of (rows x width) scores stay in a 1 MiB L2 cache.
    block_bytes = 1 << 20
    # Narrow blocks (few clusters and features) get 4 MiB: each numpy call
    # is then long enough for two pool threads not to queue on the GIL.
    narrow_width = 64
    # So do wide ones (many clusters): each block's product packs the
    # centres again. Measurements: benchmarks/README.md, "Tuning notes".
    wide_width = 512
    large_block_bytes = 1 << 22

    def rows_per_block(self, n_samples: int, width: int, itemsize: int) -> int:
        large = width <= self.narrow_width or width >= self.wide_width
        budget = self.large_block_bytes if large else self.block_bytes
        return _blocks.block_rows(n_samples, width, itemsize, budget)

    def __init__(self, xp):
        super().__init__(xp)
        self._scratches = {}

    # numpy releases the GIL in BLAS and ufunc loops: use every core.
    threaded = True
    #: Up to this many centres, labels come from k vector passes over
    #: transposed scores rather than a per-row argmin.
    few_centers = 16
    #: Up to this many, labels come from a minimum over the centres of
    #: transposed scores (see ``_column_min_assigner``).
    column_min_centers = 128
    #: Bytes of scores the column minimum works on at a time, about a
    #: core's L2 cache (the sweep is in benchmarks/README.md).
    column_min_bytes = 1 << 21
    #: From this many clusters per feature (plus one), the general
    #: assigner folds ||c||^2 into the product (see ``_augmented_assigner``).
    augmented_min_ratio = 2
    #: Up to this many clusters ``move`` makes one product with a signed
    #: one-hot (2 k d flops a moved row), cheaper than sorting the rows.
    signed_onehot_clusters = 128
    # Summing every row costs as much as assigning it here; after the first
    # iterations few rows change cluster (all three Lloyd rows).
    incremental_sums = True

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        import numpy as np

        want_partial = partial
        # Compact labels are uint8 below (int16 for the general assigners):
        # no cast to intp, and less memory traffic when Lloyd compares them
        # with the last pass's.
        if centers.shape[0] <= self.few_centers:
            scratch = self._scratch(centers.shape[0], centers.dtype)
            return self._few_centers_assigner(
                centers, centers_sqnorm, want_partial, scratch, compact
            )
        if centers.shape[0] <= min(self.column_min_centers, 255):  # uint8 label weights
            scratch = self._scratch(centers.shape[0], centers.dtype)
            return self._column_min_assigner(
                centers, centers_sqnorm, want_partial, scratch, compact
            )
        n_clusters, n_features = centers.shape
        scratch = self._scratch(n_clusters, centers.dtype)
        if n_clusters >= self.augmented_min_ratio * (n_features + 1):
            return _int16_labels(
                self._augmented_assigner(centers, centers_sqnorm, want_partial, scratch),
                compact and n_clusters <= 1 << 15,
            )
        # -2 C^T once per pass, contiguous for BLAS.
        centers_t = np.ascontiguousarray((-2 * centers).T)
        # Rows of fewer than 256 scores: ||c||^2 repeated over up to 256 KiB
        # of rows is added to the flat scores, one long vector loop per chunk
        # where the broadcast add pays a call per row. Made on first use, no
        # longer than the block; blocks of a few rows just broadcast.
        tile_rows = (1 << 18) // (n_clusters * centers.dtype.itemsize)
        tiles = []

        def tiled_sqnorm(n_rows):
            if tiles and tiles[-1].shape[0] >= min(n_rows, tile_rows) * n_clusters:
                return tiles[-1]
            tiles[:] = [np.tile(centers_sqnorm, min(n_rows, tile_rows))]
            return tiles[-1]

        def assign(Xb):
            scores = scratch.scores(Xb.shape[0], transposed=False)
            np.matmul(Xb, centers_t, out=scores)
            if n_clusters >= 256 or Xb.shape[0] < 256:
                scores += centers_sqnorm
            else:
                tiled = tiled_sqnorm(Xb.shape[0])
                flat = scores.reshape(-1)
                for start in range(0, flat.shape[0], tiled.shape[0]):
                    chunk = flat[start : start + tiled.shape[0]]
                    np.add(chunk, tiled[: chunk.shape[0]], out=chunk)
            labels = np.argmin(scores, axis=1)
            if not want_partial:
                return labels, None
            # A gather of n values, not a second pass over the block.
            return labels, scores[np.arange(labels.shape[0]), labels]

        return _int16_labels(assign, compact and n_clusters <= 1 << 15)

    @staticmethod
    def _augmented_assigner(centers, centers_sqnorm, want_partial, scratch):
        import numpy as np

        # Many centres for few features (the (100k, 128, 1024) row): the
        # block gets a column of ones and C^T a row of ||c||^2, so that
        # one product gives ||c||^2 - 2 x.c. Copying a row (d + 1 values)
        # costs less than adding ||c||^2 to its k scores, a pass over a
        # block too large for the cache.
        n_features = centers.shape[1]
        weights = np.empty((n_features + 1, centers.shape[0]), dtype=centers.dtype)
        np.multiply(centers.T, -2, out=weights[:n_features])
        weights[n_features] = centers_sqnorm

        def assign(Xb):
            rows = scratch.rows_with_ones(Xb.shape[0], n_features)
            rows[:, :n_features] = Xb
            scores = scratch.scores(Xb.shape[0], transposed=False)
            np.matmul(rows, weights, out=scores)
            labels = np.argmin(scores, axis=1)
            if not want_partial:
                return labels, None
            return labels, scores[np.arange(labels.shape[0]), labels]

        return assign

    def _scratch(self, width: int, dtype) -> _Scratch:
        """Work buffers for (rows x width) scores, kept from pass to pass:
        a small fit makes one per pass otherwise (the latency row)."""
        key = (width, dtype)
        scratch = self._scratches.get(key)
        if scratch is None:
            # setdefault: two threads asking at once share one.
            scratch = self._scratches.setdefault(key, _Scratch(width, dtype))
        return scratch

    @staticmethod
    def _few_centers_assigner(centers, centers_sqnorm, want_partial, scratch, compact):
        import numpy as np

        # Few centres (the (1M, 16, 8) row): numpy's argmin over rows of 8
        # values costs ~30 ns a row. Scores are computed transposed, (k, n),
        # and reduced with k contiguous vector passes instead.
        scores_of = _transposed_scorer(centers, centers_sqnorm, scratch)
        n_clusters = centers.shape[0]

        def assign(Xb):
            n_rows = Xb.shape[0]
            scores = scores_of(Xb)
            label_dtype = np.uint8 if compact else np.intp
            if n_clusters == 1:
                return np.zeros(n_rows, dtype=label_dtype), (scores[0].copy() if want_partial else None)
            is_lower, candidate, labels = scratch.row_buffers(n_rows)
            # Centres 0 and 1 set the running minimum and labels directly.
            np.less(scores[1], scores[0], out=labels.view(bool))
            best = np.minimum(scores[0], scores[1])
            for j in range(2, n_clusters):
                # Strictly lower keeps the first centre on ties, as argmin.
                np.less(scores[j], best, out=is_lower)
                np.minimum(best, scores[j], out=best)
                # j exceeds every earlier label, so "j where lower" is a
                # maximum: branch-free, where a masked write mispredicts on
                # random masks (6x slower per block on the (1M, 16, 8) row).
                np.multiply(is_lower.view(np.int8), j, out=candidate)
                np.maximum(labels, candidate, out=labels)
            # A new array: ``labels`` is the thread's scratch.
            return labels.astype(label_dtype), (best if want_partial else None)

        return assign

    @staticmethod
    def _column_min_assigner(centers, centers_sqnorm, want_partial, scratch, compact):
        import numpy as np

        # Up to 128 centres (the (200k, 32, 64) row): scores are computed
        # transposed, (k, n), where the minimum over centres is a vector
        # pass per centre (6 ns a row at k=64, against 21 for numpy's
        # per-row argmin). The label is the first centre at that minimum:
        # the largest of (k - j) over the centres j that reach it (scores
        # are finite: the data and centres were validated).
        scores_of = _transposed_scorer(centers, centers_sqnorm, scratch)
        n_clusters = centers.shape[0]
        first_weights = (n_clusters - np.arange(n_clusters)).astype(np.uint8)[:, None]

        def assign_part(Xb):
            scores = scores_of(Xb)
            best = np.min(scores, axis=0)
            at_best = scratch.score_masks(Xb.shape[0]).view(np.uint8)
            np.equal(scores, best, out=at_best.view(bool))
            np.multiply(at_best, first_weights, out=at_best)
            first = np.max(at_best, axis=0)
            labels = n_clusters - (first if compact else first.astype(np.intp))
            return labels, (best if want_partial else None)

        # Scores of a whole block outgrow the cache: the product and the
        # passes over its scores run on equal parts of the block, of at
        # most ``column_min_bytes`` of scores (smaller parts were slower:
        # numpy's passes cost more a row on fewer rows).
        part_rows = max(1, NumpyKernels.column_min_bytes // (n_clusters * centers.dtype.itemsize))

        def assign(Xb):
            n_rows = Xb.shape[0]
            n_parts = -(-n_rows // part_rows)
            if n_parts == 1:
                return assign_part(Xb)
            edges = [n_rows * i // n_parts for i in range(n_parts + 1)]
            parts = [assign_part(Xb[a:b]) for a, b in itertools.pairwise(edges)]
            labels = np.concatenate([labels for labels, _ in parts])
            return labels, (np.concatenate([best for _, best in parts]) if want_partial else None)

        return assign

    def assign(self, X, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(X)

    def accumulate(self, X, labels, weights, sums, counts):
        import numpy as np

        # Everything that allocates comes first and the accumulators are
        # only touched at the end, so an out-of-memory error in this block
        # leaves them as they were and the block can be retried.
        n_rows = X.shape[0]
        n_clusters = sums.shape[0]
        block_counts = np.bincount(labels, weights=weights, minlength=n_clusters)
        if n_clusters <= 16 or n_clusters * n_rows <= 1 << 16:
            # Few clusters, or few rows: a one-hot GEMM, (k, n) @ (n, d),
            # costs little (the (1M, 16, 8) row).
            block_sums = _onehot(labels, n_clusters, X.dtype, weights) @ X
            np.add(counts, block_counts, out=counts, casting="unsafe")
            sums += block_sums
            return sums, counts
        # More clusters: sort the block by label (a radix sort on int16
        # keys, O(n)) so equal labels form runs. Rows are gathered with
        # np.take, 4x faster than fancy indexing on the (200k, 32, 64) row.
        keys = labels.astype(np.int16) if n_clusters <= 1 << 15 else labels
        order = np.argsort(keys, kind="stable")
        if n_clusters * 8 <= n_rows:
            # Long runs (the (200k, 32, 64) row): one matrix-vector product
            # per run, its weights (or ones) times its rows. BLAS releases
            # the GIL; np.add.reduceat did not (no gain from a second
            # thread) and cost 3x more per row.
            rows = np.take(X, order, axis=0)
            if weights is None:
                row_weights = np.ones(n_rows, dtype=X.dtype)
            else:
                row_weights = np.take(weights, order)
            run_lengths = (
                block_counts if weights is None else np.bincount(labels, minlength=n_clusters)
            )
            bounds = [0] + np.cumsum(run_lengths).tolist()
            block_sums = np.zeros(sums.shape, dtype=X.dtype)
            row_weights = row_weights.astype(X.dtype, copy=False)  # np.dot's out= is strict
            for cluster in range(n_clusters):
                start, end = bounds[cluster], bounds[cluster + 1]
                if end > start:
                    # np.dot, not np.matmul, whose ufunc machinery holds the
                    # GIL longer (one call per cluster and block).
                    np.dot(row_weights[start:end], rows[start:end], out=block_sums[cluster])
            np.add(counts, block_counts, out=counts, casting="unsafe")
            sums += block_sums
            return sums, counts
        # Short runs (the (100k, 128, 1024) row): a product per run costs
        # a call per row, so take the r-th row of every run together;
        # within one round the target rows are distinct, so ``+=`` is right.
        sorted_labels = np.take(labels, order)
        rows = np.take(X, order, axis=0)
        if weights is not None:
            rows *= np.take(weights, order)[:, None]
        is_start = np.empty(n_rows, dtype=bool)
        is_start[0] = True
        np.not_equal(sorted_labels[1:], sorted_labels[:-1], out=is_start[1:])
        starts = np.flatnonzero(is_start)
        rank = np.arange(n_rows) - starts[np.cumsum(is_start) - 1]
        parts = [
            (sorted_labels[in_round], rows[in_round])
            for in_round in (rank == r for r in range(int(rank.max()) + 1))
        ]
        np.add(counts, block_counts, out=counts, casting="unsafe")
        for targets, values in parts:
            sums[targets] += values
        return sums, counts

    def move(self, X, old_labels, new_labels, weights, sums, counts):
        import numpy as np

        n_clusters = sums.shape[0]
        if n_clusters > self.signed_onehot_clusters:
            return super().move(X, old_labels, new_labels, weights, sums, counts)
        # One product with a signed one-hot, +1 at the new cluster and -1 at
        # the old, instead of sorting and summing every row twice.
        # Allocations first: out of memory, the accumulators are untouched.
        signed = _onehot(new_labels, n_clusters, X.dtype, weights, minus=old_labels)
        block_sums = signed @ X
        gained = np.bincount(new_labels, weights=weights, minlength=n_clusters)
        gained = gained - np.bincount(old_labels, weights=weights, minlength=n_clusters)
        np.add(counts, gained, out=counts, casting="unsafe")
        sums += block_sums
        return sums, counts

    def running_sums(self, sums, counts):
        import numpy as np

        # float64 (k x d, a few kB): the moved rows' sums are added without
        # the rounding of float32 cluster sums, so they are summed afresh
        # less often (see ``RunningSums``).
        return np.asarray(sums, dtype=np.float64), np.asarray(counts, dtype=np.float64)

    def cluster_sums(self, X, labels, weights, n_clusters: int):
        import numpy as np

        if n_clusters > self.few_centers:
            return super().cluster_sums(X, labels, weights, n_clusters)
        # Few clusters (the latency row, one block per pass): the one-hot
        # product and the label counts are the results, with no zeros to
        # add them to.
        counts = np.bincount(labels, weights=weights, minlength=n_clusters)
        dtype = self.sum_dtype(X.dtype)
        sums = _onehot(labels, n_clusters, X.dtype, weights) @ X
        return sums.astype(dtype, copy=False), counts.astype(dtype)

    def count_nonempty(self, labels, n_clusters: int) -> int:
        import numpy as np

        # A count per label instead of unique's sort (1M labels a fit).
        return int(np.count_nonzero(np.bincount(labels, minlength=n_clusters)))

    def sq_row_norms(self, X):
        import numpy as np

        if X.shape[1] <= 2:
            # Narrow rows (the latency row, d=2): einsum pays a call per row,
            # 3x the cost of adding two columns of squares. Two squares have
            # one sum in any order: the norms are einsum's bit for bit.
            squares = np.square(X)
            return squares[:, 0] + squares[:, 1] if X.shape[1] == 2 else squares[:, 0]
        return np.einsum("ij,ij->i", X, X)

    def sq_distances_to(self, X, centers, labels):
        import numpy as np

        if centers.dtype != X.dtype:
            return super().sq_distances_to(X, centers, labels)
        # The differences overwrite the gathered centres: one block-sized
        # temporary, not two (the final assignment of every Lloyd row).
        diff = np.take(centers, labels, axis=0)
        np.subtract(X, diff, out=diff)
        return self.sq_row_norms(diff)

    def sq_sum(self, A):
        import numpy as np

        # One BLAS dot, no squared copy (the centre shift of every
        # iteration, and the data-mean pass).
        return np.vdot(A, A)

    def column_sums(self, X, weights=None):
        import numpy as np

        # A matrix-vector product: numpy's sum over axis 0 of a C-ordered
        # block pays a call per row, 7x slower on a (131072, 32) block (the
        # data-mean pass of every Lloyd row; k-means++ of the latency row).
        if weights is None:
            weights = np.ones(X.shape[0], dtype=X.dtype)
        return weights @ X

    def pool_context(self):
        controller = _blas_controller()
        if controller is None:
            return contextlib.nullcontext()
        # One BLAS thread per pool worker: two workers each calling a
        # two-thread BLAS oversubscribe the cores (the (100k, 128, 1024)
        # row ran 2x slower).
        return _one_blas_thread(controller)


def _int16_labels(assign, cast: bool):
    """``assign`` with its labels cast to int16 when ``cast``: Lloyd keeps
    the labels of the last pass beside the new ones, a quarter of the
    memory of intp labels (the memory row of ``benchmarks/run.py``)."""
    if not cast:
        return assign

    def assign_int16(Xb):
        labels, partial = assign(Xb)
        return labels.astype("int16"), partial

    return assign_int16


def _transposed_scorer(centers, centers_sqnorm, scratch):
    """A function from a block to its (k, n_rows) scores ``||c||^2 - 2 c.x``
    (numpy), written into the thread's scratch buffer."""
    import numpy as np

    minus2_centers = -2 * centers
    sqnorm_col = centers_sqnorm[:, None]

    def scores_of(Xb):
        scores = scratch.scores(Xb.shape[0], transposed=True)
        np.matmul(minus2_centers, Xb.T, out=scores)
        np.add(scores, sqnorm_col, out=scores)
        return scores

    return scores_of


def _onehot(labels, n_clusters: int, dtype, weights=None, *, minus=None):
    """The (n_clusters, n_rows) one-hot of ``labels`` in ``dtype`` (numpy),
    times ``weights`` when given; with ``minus`` (other labels of the same
    rows), the one-hot of ``minus`` is subtracted: a signed one-hot.

    Zeros and one scattered value per row (and label): a comparison with
    every label cost 5x more on (64, 2300) and 7x on (128, 3000), the moved
    rows of Lloyd blocks; on the latency row's (3, 1000) it saved 0.5 us.
    """
    import numpy as np

    n_rows = labels.shape[0]
    onehot = np.zeros(n_clusters * n_rows, dtype=dtype)
    rows = np.arange(n_rows)
    value = 1 if weights is None else weights
    onehot[labels.astype(np.intp, copy=False) * n_rows + rows] = value
    if minus is not None:
        onehot[minus.astype(np.intp, copy=False) * n_rows + rows] -= value
    return onehot.reshape(n_clusters, n_rows)


class _Scratch:
    """Per-thread work buffers, reused from block to block and pass to pass.

    A fresh multi-megabyte score block per numpy call is fresh memory from
    the system each time, and its page faults cost as much as the matmul
    that fills it.
    Pool threads run blocks concurrently, so each thread has its own.
    """

    def __init__(self, width: int, dtype):
        self._width = width
        self._dtype = dtype
        self._local = threading.local()

    def scores(self, n_rows: int, *, transposed: bool):
        """A (n_rows, width) array, or (width, n_rows) when ``transposed``,
        C-contiguous, with undefined contents."""
        import numpy as np

        flat = getattr(self._local, "scores", None)
        size = n_rows * self._width
        if flat is None or flat.shape[0] < size:
            flat = self._local.scores = np.empty(size, dtype=self._dtype)
        shape = (self._width, n_rows) if transposed else (n_rows, self._width)
        return flat[:size].reshape(shape)

    def rows_with_ones(self, n_rows: int, n_features: int):
        """A (n_rows, n_features + 1) array, C-contiguous, whose last column
        is ones and the rest undefined (callers fill it)."""
        import numpy as np

        rows = getattr(self._local, "rows_with_ones", None)
        if rows is None or rows.shape[0] < n_rows or rows.shape[1] != n_features + 1:
            rows = self._local.rows_with_ones = np.empty(
                (n_rows, n_features + 1), dtype=self._dtype
            )
            rows[:, n_features] = 1
        return rows[:n_rows]

    def score_masks(self, n_rows: int):
        """A (width, n_rows) bool array, C-contiguous, undefined contents."""
        import numpy as np

        flat = getattr(self._local, "masks", None)
        size = n_rows * self._width
        if flat is None or flat.shape[0] < size:
            flat = self._local.masks = np.empty(size, dtype=bool)
        return flat[:size].reshape(self._width, n_rows)

    def row_buffers(self, n_rows: int):
        """A bool and two int8 arrays of ``n_rows`` values, undefined contents."""
        import numpy as np

        buffers = getattr(self._local, "rows", None)
        if buffers is None or buffers[0].shape[0] < n_rows:
            buffers = self._local.rows = (
                np.empty(n_rows, dtype=bool),
                np.empty(n_rows, dtype=np.int8),
                np.empty(n_rows, dtype=np.int8),
            )
        return buffers[0][:n_rows], buffers[1][:n_rows], buffers[2][:n_rows]
