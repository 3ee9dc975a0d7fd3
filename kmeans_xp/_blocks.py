"""Row blocks under a memory budget: the in-memory driver of the kernels.

Every pass over the data (a Lloyd step, k-means++ potentials, the final
assignment, predict) walks ``X`` in blocks of rows, so no (n_samples x
n_clusters) array is ever built. Each block is shifted by a fixed vector
(the data mean) before any product: distances are translation invariant,
and float32 data far from the origin keep their precision this way
without a centred copy of ``X``.
"""

from __future__ import annotations

import itertools
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor, wait

from ._array_api import oom_errors
from .exceptions import MemoryRetryWarning

__all__ = ["BlockRunner", "block_rows", "device_block_rows", "working_dtype"]


class BlockRunner:
    """Walks the rows of ``X`` in blocks and reduces per-block results.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    shift : array of shape (n_features,)
        Subtracted from every block before it is handed to ``step``.
    rows : int
        The most rows per block (blocks are cut even, see ``map``); halved
        (with one warning) when a block runs out of memory, so a fit on a
        nearly full GPU finishes with the same result.
    kernels : Kernels
        The backend's kernels (``_kernels.get_kernels``): they cut shifted
        blocks and give the context held while blocks run on the pool.
    n_workers : int
        Threads for CPU backends whose kernels release the GIL.
    source : object, optional
        Where blocks come from when X is not on the device: ``X`` is then
        the source (it has ``shape``, ``dtype`` and ``device``) and
        ``source.block(start, stop, shift)`` returns rows ``start:stop``
        on the device, shifted (``_streaming.HostBlockSource``).
    """

    #: Ranges per pool thread in ``map``: enough for a thread that the
    #: machine slows to hand work over to the others.
    tasks_per_worker = 4
    #: Bytes all per-range accumulators together may take for that; beyond
    #: it (k x d in the millions, or many workers) ranges are one per worker.
    range_acc_bytes = 1 << 23

    def __init__(self, X, shift, *, xp, kernels, rows: int, n_workers: int = 1, source=None):
        self.X = X
        self.source = source
        self.xp = xp
        #: The dtype blocks are computed in: X's, or float32 for half
        #: precision, whose blocks are cast as they are used (no copy of X).
        self.dtype = working_dtype(xp, X.dtype)
        self._cast = self.dtype != X.dtype
        self.kernels = kernels
        self.shift = shift
        self.rows = max(1, int(rows))
        self.n_workers = max(1, int(n_workers))
        self._oom = oom_errors(xp)
        self._lock = threading.Lock()
        self._warned = False

    @property
    def oom_errors(self) -> tuple:
        """The exceptions that mean a block ran out of memory."""
        return self._oom

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    @property
    def shifts_blocks(self) -> bool:
        """Whether blocks are shifted copies (a non-zero shift) rather than
        views of X."""
        return self._subtract

    @property
    def shift(self):
        """The vector subtracted from every block (None or zeros: none)."""
        return self._shift

    @shift.setter
    def shift(self, value):
        self._shift = value
        # A zero shift needs no subtraction: blocks are then views of X, not
        # copies (one pass over each block saved, the (1M, 16, 8) row).
        if value is None or isinstance(value, (int, float)):
            self._subtract = bool(value)
        elif not self.kernels.cheap_reads:
            self._subtract = True  # asking would wait for the device
        else:
            self._subtract = bool(self.xp.any(value != 0))

    def block(self, start: int, stop: int):
        """Rows ``start:stop`` of X, shifted (a view of X when the shift is
        zero: steps must not modify their block in place). Half-precision
        rows are cast to float32 first."""
        if self.source is not None:
            return self.source.block(start, stop, self.shift if self._subtract else None)
        if self._cast:
            Xb = self.xp.astype(self.X[start:stop, :], self.dtype)
            return Xb - self.shift if self._subtract else Xb
        if not self._subtract:
            return self.kernels.row_block(self.X, start, stop)
        return self.kernels.shifted_block(self.X, start, stop, self.shift)

    def map(self, step, make_acc=None):
        """Run ``step(Xb, start, stop, acc) -> (acc, out)`` over all blocks.

        On a thread pool, the rows are cut into up to ``tasks_per_worker``
        contiguous ranges of equal size per worker, and each range into
        equal blocks of at most ``rows``; the threads take the next range as
        they finish one, so a thread slowed by the machine does less of the
        work. Each range has its own accumulator from ``make_acc()`` (or
        None) and the ranges are fixed by the row and block counts and the
        accumulator size, so which thread ran which range does not change
        the result (unless a block runs out of memory mid-pass: the blocks
        left are then halved wherever each thread is). Returns the list of
        accumulators in range order and the list of per-block outputs in
        row order.
        """
        n = self.n_samples
        if n == 0:
            # A shard with no rows (a torch.distributed rank): one empty
            # block, so the pass still yields its zero statistics.
            acc, out = step(self.block(0, 0), 0, 0, make_acc() if make_acc else None)
            return [acc], [out]
        if self.n_workers == 1 or n <= self.rows:
            if self.n_workers == 1 or n * self.X.shape[1] < 1 << 16:
                acc, outs = self._run_range(step, 0, n, make_acc() if make_acc else None)
                return [acc], outs
            # One block, but not a tiny one: still single-threaded BLAS, as a
            # two-thread BLAS on a busy 2-core machine stalls on small GEMMs
            # (a one-hot product of the (1M, 16, 8) row took 100 ms, not 0.1).
            with self._pool_context():
                acc, outs = self._run_range(step, 0, n, make_acc() if make_acc else None)
            return [acc], outs
        n_blocks = -(-n // self.rows)
        first_acc = make_acc() if make_acc else None
        n_ranges = min(n_blocks, self._ranges(_nbytes(first_acc)))
        # Ranges of equal rows, each cut into equal blocks (``_run_range``):
        # on (200k, 32, 64), 8 ranges of two 12500-row blocks beat 13
        # blocks of 16384 rows (the last 3392) in 8 ranges of one or two
        # blocks, where the last range left a thread idle.
        bounds = [n * i // n_ranges for i in range(n_ranges)] + [n]
        results = [None] * n_ranges
        next_range = itertools.count().__next__  # atomic under the GIL
        failed = []

        def drain():
            while not failed and (i := next_range()) < n_ranges:
                try:
                    acc = first_acc if i == 0 else (make_acc() if make_acc else None)
                    results[i] = self._run_range(step, bounds[i], bounds[i + 1], acc)
                except BaseException:
                    failed.append(i)  # the other threads stop taking ranges
                    raise

        with self._pool_context():
            pool = _shared_pool(self.n_workers)
            futures = [pool.submit(drain) for _ in range(min(self.n_workers, n_ranges) - 1)]
            # The calling thread drains too instead of idling.
            try:
                drain()
            finally:
                # Even when this thread failed: the others still use X and
                # write into the caller's arrays.
                wait(futures)
            for future in futures:
                future.result()  # raises a pool thread's error
        accs = [acc for acc, _ in results]
        outs = [out for _, range_outs in results for out in range_outs]
        return accs, outs

    def _ranges(self, acc_bytes: int) -> int:
        """How many ranges a threaded pass is cut into: ``tasks_per_worker``
        per worker while their accumulators stay within
        ``range_acc_bytes``, else one per worker (large ``k x d``)."""
        ranges = self.tasks_per_worker * self.n_workers
        if ranges * acc_bytes > self.range_acc_bytes:
            return self.n_workers
        return ranges

    def _pool_context(self):
        return self.kernels.pool_context()

    def _run_range(self, step, start: int, stop: int, acc):
        outs = []
        while start < stop:
            # Even blocks of at most ``rows`` in each range: no short last
            # block, where numpy's broadcasting operations cost twice as
            # much a row (below about 6000 rows of 64 scores).
            left = stop - start
            end = start + -(-left // -(-left // self.rows))
            try:
                acc, out = step(self.block(start, end), start, end, acc)
            except self._oom:
                if end - start <= 1:
                    raise
                self._halve(end - start)
                continue
            outs.append(out)
            start = end
        return acc, outs

    def _halve(self, failed_rows: int) -> None:
        with self._lock:
            self.rows = min(self.rows, max(1, failed_rows // 2))
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"out of memory on a block of {failed_rows} rows; retrying with "
                    f"blocks of {self.rows} rows. Results are unchanged.",
                    MemoryRetryWarning,
                    stacklevel=4,
                )


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _nbytes(acc) -> int:
    """Bytes of the arrays in an accumulator (an array, a number, or a
    tuple or list of them)."""
    if isinstance(acc, (tuple, list)):
        return sum(_nbytes(part) for part in acc)
    return int(getattr(acc, "nbytes", 0) or 0)


def _shared_pool(n_workers: int) -> ThreadPoolExecutor:
    """One process-wide pool, created on first use and kept: starting
    threads for every pass cost more than a small pass itself. Tasks never
    wait on other tasks, so sharing it cannot deadlock."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None or _POOL._max_workers < n_workers:
            _POOL = ThreadPoolExecutor(n_workers, thread_name_prefix="kmeans_xp")
        return _POOL


def block_rows(n_samples: int, width: int, itemsize: int, budget_bytes: int) -> int:
    """Rows per block so that a (rows x width) array fits ``budget_bytes``."""
    rows = budget_bytes // max(1, width * itemsize)
    return int(max(1, min(n_samples, max(rows, 16))))


#: Share of a device's free memory that one block's work arrays may take:
#: the rest is left to the caller's tensors and the allocator's caching.
DEVICE_SHARE = 0.25
#: Most bytes a device block takes, however much is free: past it the
#: GEMMs are already at full speed.
DEVICE_CAP = 4 << 30


def device_block_rows(n_samples: int, width: int, itemsize: int, free_bytes: int) -> int:
    """Rows per block on a GPU with ``free_bytes`` free, for (rows x width)
    scores of ``itemsize``. Every temporary of a block is counted per row:
    the scores, the shifted copy of the rows, their float64 (or float32
    from half precision) copy for the sums, the labels, partial distances,
    weights and their float64 copy."""
    per_row = width * (2 * itemsize + 8) + 8 + 2 * itemsize + 16
    budget = min(DEVICE_CAP, int(free_bytes * DEVICE_SHARE))
    return int(max(1, min(n_samples, max(budget // per_row, 16))))


def working_dtype(xp, dtype):
    """The dtype data of ``dtype`` are computed in: float32 for float16 and
    bfloat16 (their sums and products lose too much), else ``dtype``."""
    try:
        if xp.isdtype(dtype, "real floating") and xp.finfo(dtype).bits < 32:
            return xp.float32
    except (TypeError, ValueError):
        pass
    return dtype
