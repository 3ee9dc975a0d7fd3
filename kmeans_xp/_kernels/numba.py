"""A fused assign-and-accumulate CPU kernel (numba), for numpy arrays.

One pass over the rows finds the scores ``||c||^2 - 2 x.c`` in registers
(16 float32 rows in vector lanes against up to 8 centres, else tiles of 4
rows against 8 or 16 centres), keeps each row's lowest score and its
centre, and adds the row to its cluster's float64 sums right away, while
it is in the L1 cache: the numpy kernels' separate product, argmin,
gather and segment-sum passes become one. Fits run it block by block on
the block runner's threads (``FusedNumpyKernels.fused_step``), each thread
with its own accumulators, added at the end; ``assign_labels`` and
``lloyd_block_stats`` can also run over fixed ranges of rows in parallel
(numba ``prange``). k-means++'s candidates take a fused pass of their own
(``FusedNumpyKernels.fused_potentials``).

numba is optional. Where it is installed numpy fits take these kernels
(``enabled()``) unless ``KMEANS_XP_NUMBA=0`` is set; otherwise the numpy
kernels serve, complete on their own. numba is imported on first use,
never by ``import kmeans_xp``; the kernels are compiled on first use and
kept in numba's on-disk cache (``compile_kernels``). Where the scores are
a large GEMM (many centres) BLAS stays faster: ``prefer_fused`` is the
measured rule (see benchmarks/README.md, "Fused numba kernel").

Inputs are trusted (validated by the public functions); arrays are
numpy, and non-contiguous ones are copied to C order first.
"""

from __future__ import annotations

import os
import threading

from .numpy import NumpyKernels

__all__ = [
    "FusedNumpyKernels",
    "assign_labels",
    "available",
    "compile_kernels",
    "enabled",
    "kernel_variant",
    "kernels",
    "lloyd_block_stats",
    "prefer_fused",
]

#: Set to 0 to keep numpy arrays on the plain numpy kernels where numba is
#: installed (the fused kernels are used by default there).
ENABLE_ENV = "KMEANS_XP_NUMBA"

_STATE = {"module": None, "checked": False}
_COMPILED = set()
_COMPILE_LOCK = threading.Lock()
# numba's default threading layer (workqueue) must not run two parallel
# kernels at once: passes from several Python threads take turns.
_PARALLEL_LOCK = threading.Lock()


def available() -> bool:
    """Whether the fused kernels can run: numba importable."""
    return _module() is not None


def enabled() -> bool:
    """Whether numpy fits take the fused kernels: numba is importable and
    ``KMEANS_XP_NUMBA=0`` is not set."""
    return os.environ.get(ENABLE_ENV, "") != "0" and available()


def _module():
    """The jitted kernels' module, imported once (None without numba)."""
    if not _STATE["checked"]:
        try:
            from . import _numba_jit
        except ImportError:
            _numba_jit = None
        _STATE["module"], _STATE["checked"] = _numba_jit, True
    return _STATE["module"]


def _compiled(name: str, args):
    """Kernel ``name`` compiled for the types of ``args``.

    The first use of a signature compiles it (or loads numba's on-disk
    cache, ``cache=True``) with LLVM's SLP vectoriser on, which numba leaves
    off by default and which the register tiles need (``_numba_jit``);
    the setting is restored at once, under numba's compiler lock, so other
    numba code in the process is compiled as before.
    """
    module = _module()
    kernel = getattr(module, name)
    key = (name,) + tuple(
        (a.dtype.str, a.ndim, a.flags.c_contiguous) if hasattr(a, "dtype") else type(a)
        for a in args
    )
    if key not in _COMPILED:
        import numba
        from numba.core import config
        from numba.core.compiler_lock import global_compiler_lock

        with _COMPILE_LOCK, global_compiler_lock:
            if key not in _COMPILED:
                signature = tuple(numba.typeof(a) for a in args)
                saved = config.SLP_VECTORIZE
                config.SLP_VECTORIZE = 1
                try:
                    kernel.compile(signature)
                finally:
                    config.SLP_VECTORIZE = saved
                _COMPILED.add(key)
    return kernel


def _run(name: str, *args):
    return _compiled(name, args)(*args)


def _run_parallel(name: str, *args):
    """A ``prange`` kernel: one at a time, and with ranges handed to numba's
    threads one by one as they finish (numba's default splits them evenly
    up front, and a core that another process holds then delays the pass)."""
    import numba

    kernel = _compiled(name, args)
    with _PARALLEL_LOCK:
        saved = numba.set_parallel_chunksize(1)
        try:
            return kernel(*args)
        finally:
            numba.set_parallel_chunksize(saved)


#: ``(features, centres)``: the fused kernel up to ``centres`` centres for
#: at most ``features`` features, BLAS beyond, where one core assigned
#: faster with it over the range measured (``python benchmarks/fused.py
#: --rule``, benchmarks/README.md, "The fused/BLAS rule re-swept" under
#: "Row groups").
fused_limits = ((16, 1024), (64, 512), (128, 256))
#: Beyond the features swept (128): up to this many centres.
max_fused_clusters = 128


def prefer_fused(n_clusters: int, n_features: int) -> bool:
    """The measured rule: fused kernel (True) or BLAS kernels (False)."""
    for features, centres in fused_limits:
        if n_features <= features:
            return n_clusters <= centres
    return n_clusters <= max_fused_clusters


#: Centres per register tile: 8 up to 8 centres, else 16 (see
#: ``_numba_jit._tile16``).
TILE_WIDTHS = (8, 16)


def prepare_centers(centers, centers_sqnorm):
    """The centres as the kernels take them: ``(Ct, csq, n_clusters)``,
    ``Ct`` being ``-2 C^T`` of shape (n_features, k_pad) with zero columns
    up to a multiple of 8 (up to 8 centres) or 16, and ``csq`` ``||c||^2`` of shape (k_pad,)
    padded with +inf, both in the centres' dtype and C order."""
    import numpy as np

    n_clusters, n_features = centers.shape
    tile = TILE_WIDTHS[0] if n_clusters <= TILE_WIDTHS[0] else TILE_WIDTHS[1]
    k_pad = -(-n_clusters // tile) * tile
    Ct = np.zeros((n_features, k_pad), dtype=centers.dtype)
    Ct[:, :n_clusters] = (-2 * centers).T
    csq = np.full(k_pad, np.inf, dtype=centers.dtype)
    csq[:n_clusters] = centers_sqnorm
    return Ct, csq, n_clusters


def kernel_variant(dtype, k_pad: int) -> str:
    """The block kernel rows of ``dtype`` take against ``k_pad`` prepared
    centres (``_numba_jit.VARIANTS``): "lanes8" up to 8 centres in
    float32, "tiles8" up to 8 in float64, "tiles16" up to 16, "rows16"
    beyond (its reduction per row outweighs its faster tiles when the
    centres are one tile: benchmarks/README.md, "Row groups")."""
    if k_pad == TILE_WIDTHS[0]:
        return "lanes8" if dtype.itemsize == 4 else "tiles8"
    return "tiles16" if k_pad == TILE_WIDTHS[1] else "rows16"


#: Fewer rows than this run on the calling thread: waking numba's threads
#: costs more than they save.
_PARALLEL_MIN_ROWS = 4096


def _n_chunks(n_rows: int, n_clusters: int, n_features: int) -> int:
    """Ranges of a parallel pass: 4 per thread (a thread the machine slows
    hands work over), at least 1024 rows each, and at most 8 MiB of float64
    accumulators in all. Fixed by the shape, not by timing: reproducible."""
    import numba

    by_rows = max(1, n_rows // 1024)
    by_memory = max(1, (1 << 23) // (8 * n_clusters * (n_features + 1)))
    return max(1, min(4 * numba.get_num_threads(), by_rows, by_memory))


def _c_order(X):
    import numpy as np

    return np.ascontiguousarray(X)


def assign_labels(X, centers, centers_sqnorm, labels_out, min_out=None, *, parallel=True):
    """Nearest centre of each row of ``X`` (the first on ties), written into
    ``labels_out`` (int32, shape (n_rows,)), and its partial squared
    distance ``||c||^2 - 2 x.c`` into ``min_out`` (X's dtype, shape
    (n_rows,)) when given: ``Kernels.assign``'s results. ``parallel=False``
    runs on the calling thread (for callers that run blocks on their own
    pool). Returns ``(labels_out, min_out)``."""
    prepared = prepare_centers(centers, centers_sqnorm)
    return _assign(X, prepared, labels_out, min_out, parallel=parallel)


def _assign(X, prepared, labels_out, min_out, *, parallel):
    import numpy as np

    X = _c_order(X)
    Ct, csq, k = prepared
    partial = min_out if min_out is not None else np.empty(X.shape[0], dtype=X.dtype)
    variant = kernel_variant(X.dtype, Ct.shape[1])
    if not parallel or X.shape[0] < _PARALLEL_MIN_ROWS:
        _run(f"assign_range_{variant}", X, Ct, csq, k, 0, X.shape[0], labels_out, partial, 0)
        return labels_out, min_out
    n_chunks = _n_chunks(X.shape[0], k, X.shape[1])
    _run_parallel("assign_chunks", X, Ct, csq, k, labels_out, partial, n_chunks,
                  _module().VARIANTS.index(variant))
    return labels_out, min_out


def lloyd_block_stats(X, centers, centers_sqnorm, weights, sums, counts, labels_out, *,
                      parallel=True, want_inertia=True):
    """One fused Lloyd step over the rows of ``X``.

    Parameters
    ----------
    X : array of shape (n_rows, n_features), float32 or float64
    centers : array of shape (n_clusters, n_features), X's dtype
    centers_sqnorm : array of shape (n_clusters,)
    weights : array of shape (n_rows,) or None for unit weights
    sums : float64 array of shape (n_clusters, n_features)
    counts : float64 array of shape (n_clusters,)
        Accumulators: each row (times its weight) is added to its nearest
        centre's sum and weight, in place.
    labels_out : int32 array of shape (n_rows,)
        The previous labels on entry (any values), the new ones on return.
    parallel : bool
        Spread the rows over numba's threads (else the calling thread).
    want_inertia : bool
        Whether to compute the inertia (d more multiply-adds a row).

    Returns
    -------
    inertia : float
        Weighted sum of the squared distances to the nearest centres (0.0
        unless ``want_inertia``).
    n_changed : int
        How many rows' labels differ from ``labels_out``'s on entry.
    """
    prepared = prepare_centers(centers, centers_sqnorm)
    return _lloyd_stats(X, prepared, weights, sums, counts, labels_out, parallel=parallel,
                        want_inertia=want_inertia)


def _lloyd_stats(X, prepared, weights, sums, counts, labels_out, *, parallel, want_inertia,
                 moves_only=False, previous=None):
    """``lloyd_block_stats`` on prepared centres; ``previous`` (of
    ``labels_out``'s dtype, or an empty array: no previous labels) is
    compared with the new labels,
    ``labels_out`` by default (compared, then overwritten)."""
    import numpy as np

    X = _c_order(X)
    Ct, csq, k = prepared
    w = np.empty(0, dtype=X.dtype) if weights is None else _c_order(weights)
    variant = kernel_variant(X.dtype, Ct.shape[1])
    if moves_only or not parallel or X.shape[0] < _PARALLEL_MIN_ROWS:
        inertia, changed = _run(
            f"lloyd_range_{variant}", X, Ct, csq, k, w, 0, X.shape[0],
            labels_out if previous is None else previous, labels_out, sums, counts,
            want_inertia, moves_only,
        )
        return float(inertia), int(changed)
    n_chunks = _n_chunks(X.shape[0], k, X.shape[1])
    part_sums, part_counts, inertia, changed = _run_parallel(
        "lloyd_chunks", X, Ct, csq, k, w, labels_out, n_chunks, want_inertia,
        _module().VARIANTS.index(variant),
    )
    np.add(sums, part_sums.sum(axis=0), out=sums)
    np.add(counts, part_counts.sum(axis=0), out=counts)
    return float(inertia.sum()), int(changed.sum())


class FusedNumpyKernels(NumpyKernels):
    """numpy kernels whose assignments run the numba kernel where
    ``prefer_fused`` says so (BLAS otherwise), and whose Lloyd steps are
    then one fused kernel per block (``fused_step``). Cluster sums are
    float64 (the fused kernel adds rows one by one). k-means++ evaluates
    its candidates in one fused pass (``fused_potentials``).
    """

    #: Whether incremental passes move the changed rows in the kernel
    #: (else the fused assignment and numpy's ``move``).
    fused_moves = True

    def sum_dtype(self, dtype):
        import numpy as np

        return np.dtype(np.float64)

    def fused_label_dtype(self, n_clusters: int):
        import numpy as np

        # uint8 up to 255 centres: a fused pass reads the last pass's labels
        # and writes its own, a quarter of int32's memory traffic (an eighth
        # of X's at (1M, 16, 8)). The assigner uses the same dtype, so a fit
        # compiles one version of its block kernel.
        return np.dtype(np.uint8) if n_clusters <= 255 else np.dtype(np.int32)

    def assigner(self, centers, centers_sqnorm, *, partial: bool = True, compact: bool = False):
        import numpy as np

        if not prefer_fused(*centers.shape):
            return super().assigner(centers, centers_sqnorm, partial=partial, compact=compact)
        prepared = prepare_centers(centers, centers_sqnorm)
        label_dtype = self.fused_label_dtype(centers.shape[0])

        def assign(Xb):
            # Serial: the block runner spreads blocks over its threads.
            labels = np.empty(Xb.shape[0], dtype=label_dtype)
            part = np.empty(Xb.shape[0], dtype=Xb.dtype) if partial else None
            _assign(Xb, prepared, labels, part, parallel=False)
            return (labels if compact else labels.astype(np.intp)), part

        return assign

    def assign(self, X, centers, centers_sqnorm):
        return self.assigner(centers, centers_sqnorm)(X)

    def fused_step(self, centers, centers_sqnorm, *, want_inertia: bool, compact: bool = False,
                   moves_only: bool = False):
        import numpy as np

        if not prefer_fused(*centers.shape) or (moves_only and not self.fused_moves):
            return None
        prepared = prepare_centers(centers, centers_sqnorm)
        label_dtype = self.fused_label_dtype(centers.shape[0])

        def step(Xb, weights, previous, sums, counts, out=None):
            # The kernel reads the previous labels and writes the new ones
            # into ``out`` (the pass's own array): nothing copied. Previous
            # labels in the same dtype: one compiled signature.
            labels = np.empty(Xb.shape[0], dtype=label_dtype) if out is None else out
            if previous is None:
                previous = np.empty(0, dtype=labels.dtype)
            elif previous.dtype != labels.dtype:
                previous = previous.astype(labels.dtype)
            # Serial, as in ``assigner``; allocates before it adds.
            inertia, changed = _lloyd_stats(
                Xb, prepared, weights, sums, counts, labels, parallel=False,
                want_inertia=want_inertia, moves_only=moves_only, previous=_c_order(previous),
            )
            if not compact:
                labels = labels.astype(np.intp)
            return labels, sums, counts, inertia, changed

        return step

    def sq_distances_to(self, X, centers, labels):
        import numpy as np

        if centers.dtype != X.dtype:
            return super().sq_distances_to(X, centers, labels)
        # The final assignment's inertia (and every exact inertia): one pass
        # over the rows where numpy makes three (measured in
        # benchmarks/README.md, "Fixed costs, label copies and Hamerly's bounds").
        out = np.empty(X.shape[0], dtype=X.dtype)
        _run("labelled_sq_distances", _c_order(X), _c_order(centers), _c_order(labels), out)
        return out

    def fused_potentials(self, points):
        import numpy as np

        width = _module().POTENTIAL_WIDTH
        n_points, n_features = points.shape
        if not 2 <= n_points <= width:
            # One point (the chosen centre's distances): a BLAS
            # matrix-vector product does not compute 7 padded columns.
            return None
        Pt = np.zeros((n_features, width), dtype=points.dtype)
        Pt[:, :n_points] = (-2 * points).T
        psq = np.full(width, np.inf, dtype=points.dtype)
        psq[:n_points] = self.sq_row_norms(points)

        def potentials(Xb, Xb_sqnorm, closest, weights):
            Xb = _c_order(Xb)
            if Xb_sqnorm is None:
                Xb_sqnorm = self.sq_row_norms(Xb)
            none = np.empty(0, dtype=Xb.dtype)
            d2 = np.empty((Xb.shape[0], n_points), dtype=Xb.dtype)
            totals = np.zeros(n_points)
            _run(
                "potentials_range", Xb, Pt, psq, _c_order(Xb_sqnorm),
                none if closest is None else _c_order(closest),
                none if weights is None else _c_order(weights), d2, totals,
            )
            return totals, d2

        return potentials


def compile_kernels(dtypes=("float32", "float64")) -> None:
    """Compile the kernels that fits run, for data of each of ``dtypes``,
    or load them from numba's on-disk cache: what the first fit of a new
    environment otherwise does (the test suite does it once, before its
    workers start). Needs numba."""
    import array_api_compat.numpy as np_xp
    import numpy as np

    kernels = FusedNumpyKernels(np_xp)
    for dtype in dtypes:
        X = np.ones((16, 3), dtype=dtype)
        # Every block kernel: the lanes (or the 4 x 8 tile), the 4 x 16
        # tile and the row groups.
        for n_clusters in (2, TILE_WIDTHS[-1], 2 * TILE_WIDTHS[-1]):
            centers = X[:n_clusters]
            sqnorm = kernels.sq_row_norms(centers)
            kernels.assigner(centers, sqnorm)(X)
            step = kernels.fused_step(centers, sqnorm, want_inertia=True)
            step(X, None, None, np.zeros((n_clusters, 3)), np.zeros(n_clusters))
        kernels.fused_potentials(X[:2])(X, None, None, None)
        # The passes' labels (up to 255 centres, and beyond) and the final ones.
        for label_dtype in (np.uint8, np.int32, np.intp):
            kernels.sq_distances_to(X, X[:2], np.zeros(16, dtype=label_dtype))


def kernels(xp, device=None):
    """The fused kernels for numpy arrays where they are enabled, else None
    (``get_kernels`` then takes the plain numpy kernels)."""
    return FusedNumpyKernels(xp) if enabled() else None
