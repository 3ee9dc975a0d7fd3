"""The Dask driver: k-means on ``dask.array`` input, one chunk at a time.

Each row chunk of X is a small in-memory problem for the same code the
in-memory path runs (``_lloyd._lloyd_pass`` over a ``BlockRunner``, i.e.
the ``assign`` and ``accumulate`` kernels of ``_kernels``): a chunk returns
its per-cluster sums, weights and inertia, Dask adds them up in a tree, and
only the (n_clusters, n_features) centres travel to the workers and back
each iteration. Nothing gathers X to one process; ``labels_``, ``predict``
and ``transform`` are lazy Dask arrays.

Chunks hold whole rows (a single chunk along the feature axis) of numpy or
CuPy arrays, and are shifted by the data mean before any product, as the
in-memory blocks are. Initialisation is k-means|| (Bahmani et al., 2012,
"Scalable k-means++"): a few rounds that oversample rows with probability
proportional to their squared distance, then weighted k-means++ seedings
refined by Lloyd on the few dozen candidates per cluster, in memory.

``init``: "k-means++" (the default) runs k-means||, its scalable form, and
so does "k-means||" where the validation accepts that name; "random" draws
distinct rows (the same rows as in memory for a given seed, without
weights); arrays and callables are used as given.

On a ``distributed`` cluster X is persisted for the fit (chunks stay in the
workers' memory between iterations; a lost worker's chunks are recomputed
from the graph); with the local schedulers each pass recomputes the chunks,
so a larger-than-memory array is streamed. ``labels_`` refers to the
unpersisted X.

``KMeans.fit``, ``predict``, ``transform`` and ``score`` call the four
``dask_*`` functions here when X is a Dask array; they validate their input.
"""

from __future__ import annotations

import math
import sys
import time
import warnings

import numpy as np

from ._array_api import (
    array_namespace,
    as_host_scalar,
    default_float_dtype,
    device_of,
    is_array_api_obj,
    is_dask_array,
    namespace_name,
    to_device_array,
)
from ._fit import fit_best_of
from ._init import weighted_keys
from ._lloyd import (
    _exact_distances,
    _lloyd_pass,
    _relocate_empty_clusters,
    _tolerance,
    _update_centers,
    distances_to,
    within_tolerance,
)
from ._problem import Problem, make_problem
from ._validation import (
    _isdtype,
    check_fitted_input,
    check_init_array,
    check_n_clusters_fits,
    check_random_state,
    resolve_n_init,
)
from .exceptions import convergence_warning

__all__ = ["dask_fit", "dask_predict", "dask_transform", "dask_score"]

#: Oversampling rounds of k-means||; Bahmani et al. find 5 enough in practice.
KMEANS_PARALLEL_ROUNDS = 5
#: Candidates expected per round, as a multiple of n_clusters (their ``l``).
KMEANS_PARALLEL_OVERSAMPLING = 2.0
#: Weighted k-means++ seedings of the in-memory recluster of the candidates.
RECLUSTER_N_INIT = 10
#: Partial results combined by one reduction task.
_FAN_IN = 8


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check_dask_array(X, name: str = "X"):
    """Validate a Dask data matrix; return ``(X, xp, device)`` where ``xp`` and
    ``device`` are those of its chunks. Integer/bool data become the default
    floating dtype and half precision float32, lazily, as in memory."""
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D Dask array of shape (n_samples, n_features); "
            f"got {X.ndim}-D with shape {tuple(X.shape)}."
        )
    if any(math.isnan(c) for axis in X.chunks for c in axis):
        raise ValueError(
            f"{name} has chunks of unknown size (shape {X.shape}); call "
            f"{name}.compute_chunk_sizes() first."
        )
    n_samples, n_features = X.shape
    if n_samples == 0 or n_features == 0:
        raise ValueError(f"{name} has shape {tuple(X.shape)}; at least 1 sample and 1 feature are required.")
    if len(X.chunks[1]) != 1:
        raise ValueError(
            f"{name} is chunked along the feature axis (column chunks {X.chunks[1]}); "
            "k-means needs every chunk to hold whole rows. Rechunk with "
            f"{name}.rechunk({{1: -1}})."
        )
    meta = X._meta
    if not is_array_api_obj(meta):
        raise TypeError(
            f"{name} has chunks of type {type(meta).__name__}; chunks must be numpy "
            "or CuPy arrays (or another array-API array)."
        )
    xp = array_namespace(meta)
    device = device_of(meta)
    dtype = X.dtype
    if _isdtype(xp, dtype, "complex floating"):
        raise ValueError(f"Complex data not supported: {name} has dtype {dtype}.")
    if _isdtype(xp, dtype, ("bool", "integral")):
        X = X.astype(default_float_dtype(xp, device))
    elif _isdtype(xp, dtype, "real floating"):
        if xp.finfo(dtype).bits < 32:
            X = X.astype(xp.float32)
    else:
        raise TypeError(
            f"{name} must have a numeric dtype (bool, integer or real floating); got {dtype}."
        )
    return X, xp, device


def _check_dask_weights(sample_weight, X, xp):
    """``sample_weight`` as a Dask array chunked like the rows of X, or None.

    Values (finite, non-negative, positive sum) are checked by the first
    pass over the data, together with X's finiteness."""
    if sample_weight is None:
        return None
    import dask.array as da

    n_samples = X.shape[0]
    if is_dask_array(sample_weight):
        w = sample_weight
    elif is_array_api_obj(sample_weight):
        w_xp = array_namespace(sample_weight)
        if w_xp is not xp:
            raise TypeError(
                f"sample_weight is a {namespace_name(w_xp)} array but X has "
                f"{namespace_name(xp)} chunks; pass a Dask array or an array of "
                f"the chunks' library."
            )
        if tuple(sample_weight.shape) != (n_samples,):
            raise ValueError(
                f"sample_weight must have shape ({n_samples},) to match X, "
                f"got {tuple(sample_weight.shape)}."
            )
        w = da.from_array(sample_weight, chunks=(X.chunks[0],), asarray=False)
    else:
        w_np = np.asarray(sample_weight)
        if w_np.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must be real-valued, got dtype {w_np.dtype}.")
        if w_np.ndim == 0:
            w_np = np.full((n_samples,), float(w_np))
        if w_np.shape != (n_samples,):
            raise ValueError(
                f"sample_weight must have shape ({n_samples},) to match X, got {w_np.shape}."
            )
        w = da.from_array(w_np, chunks=(X.chunks[0],)).map_blocks(
            _to_namespace, xp, X.dtype, dtype=X.dtype, meta=X._meta[:0, 0]
        )
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},) to match X, got {tuple(w.shape)}."
        )
    if not _isdtype(array_namespace(w._meta), w.dtype, ("bool", "integral", "real floating")):
        raise TypeError(f"sample_weight must be real-valued, got dtype {w.dtype}.")
    if w.chunks[0] != X.chunks[0]:
        w = w.rechunk((X.chunks[0],))
    return w.astype(X.dtype)


def _to_namespace(block, xp, dtype):
    return xp.asarray(block, dtype=dtype)


def _check_fitted_for(estimator, X):
    """Validate a Dask X against a fitted model; return ``(X, xp, centers,
    shift)`` with the centres in X's dtype, shifted by their mean."""
    estimator._check_fitted()
    if getattr(estimator, "metric", "euclidean") != "euclidean":
        raise ValueError(
            f"metric={estimator.metric!r} is not supported on Dask arrays yet; "
            "compute the chunks or use metric='euclidean'."
        )
    X, xp, device = _check_dask_array(X)
    check_fitted_input(estimator, X, xp, f"{type(estimator).__name__} on a Dask array")
    centers = estimator.cluster_centers_
    centers = xp.astype(centers, X.dtype)
    shift = xp.mean(centers, axis=0)
    return X, xp, centers - shift, shift


# --------------------------------------------------------------------------
# Per-chunk work (runs on the workers). Each chunk is an in-memory Problem
# walked in row blocks, so the kernels see exactly what they see in memory.
# --------------------------------------------------------------------------


def _chunk_problem(Xc, wc, shift, width: int) -> Problem:
    # One thread per chunk: Dask already runs chunks in parallel.
    xp = array_namespace(Xc)
    return make_problem(Xc, wc, xp, device_of(Xc), width, shift=shift, threaded=False)


def _chunk_lloyd_stats(Xc, wc, centers, shift):
    """E-step and M-step statistics of one chunk: ``(sums, counts, inertia)``
    with ``inertia`` a 0-d array (from the kernels' partial distances)."""
    problem = _chunk_problem(Xc, wc, shift, centers.shape[0])
    _, sums, counts, inertia = _lloyd_pass(problem, centers, want_inertia=True)
    return sums, counts, inertia


def _chunk_final(Xc, wc, centers, shift):
    """Final pass of one chunk: exact inertia of the nearest-centre
    assignment (as ``_lloyd`` computes ``inertia_``) and cluster weights."""
    problem = _chunk_problem(Xc, wc, shift, centers.shape[0])
    labels, _, counts, _ = _lloyd_pass(problem, centers, want_inertia=False)
    inertia, _ = _exact_distances(problem, centers, labels, per_sample=False)
    return inertia, counts


def _chunk_farthest(Xc, wc, centers, shift, n_far: int):
    """The ``n_far`` rows of a chunk farthest from their nearest centre, as
    candidates for empty clusters: ``(rows (shifted), weights, labels)``,
    farthest first, ties in row order."""
    problem = _chunk_problem(Xc, wc, shift, centers.shape[0])
    xp = problem.xp
    labels, _, _, _ = _lloyd_pass(problem, centers, want_inertia=False)
    _, d2 = _exact_distances(problem, centers, labels, per_sample=True)
    far = xp.argsort(d2, descending=True, stable=True)[:n_far]
    rows = xp.take(Xc, far, axis=0) - shift
    weights = None if wc is None else xp.take(wc, far)
    return rows, weights, xp.take(labels, far)


def _chunk_closest_d2(problem: Problem, points):
    """Squared distance of each row of a chunk to the nearest of ``points``."""
    xp, kernels = problem.xp, problem.kernels
    points_sqnorm = kernels.sq_row_norms(points)

    def step(Xb, start, stop, acc):
        _, partial = kernels.assign(Xb, points, points_sqnorm)
        return acc, xp.clip(partial + kernels.sq_row_norms(Xb), min=0)

    _, parts = problem.runner.map(step)
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def _chunk_potential(Xc, wc, points, shift):
    """``sum(w * d2)`` of a chunk to its nearest of ``points`` (0-d array)."""
    problem = _chunk_problem(Xc, wc, shift, points.shape[0])
    d2 = _chunk_closest_d2(problem, points)
    return problem.xp.sum(d2) if wc is None else problem.xp.sum(wc * d2)


def _chunk_oversample(Xc, wc, points, shift, scale, seed):
    """k-means|| round on one chunk: keep each row independently with
    probability ``min(1, scale * w * d2)``; returns the kept rows, shifted.
    The uniforms come from a host generator seeded by the driver's, so the
    draw does not depend on which worker runs the chunk."""
    problem = _chunk_problem(Xc, wc, shift, points.shape[0])
    xp = problem.xp
    d2 = _chunk_closest_d2(problem, points)
    p = scale * (d2 if wc is None else wc * d2)
    u = to_device_array(
        np.random.default_rng(seed).uniform(size=Xc.shape[0]), xp,
        dtype=Xc.dtype, device=device_of(Xc),
    )
    (kept,) = xp.nonzero(u < p)
    return xp.take(Xc, kept, axis=0) - shift


def _chunk_candidate_weights(Xc, wc, points, shift):
    """Weight of the rows of a chunk closest to each of ``points``."""
    problem = _chunk_problem(Xc, wc, shift, points.shape[0])
    _, _, counts, _ = _lloyd_pass(problem, points, want_inertia=False)
    return counts


def _chunk_weighted_keys(Xc, wc, n_keep: int, seed, offset: int):
    """Efraimidis-Spirakis keys ``log(u) / w`` of a chunk's rows: the largest
    ``n_keep`` keys and their global row indices (a weighted sample)."""
    xp = array_namespace(Xc)
    u = to_device_array(
        np.random.default_rng(seed).uniform(size=Xc.shape[0]), xp,
        dtype=Xc.dtype, device=device_of(Xc),
    )
    keys = weighted_keys(wc, u, xp)
    top = xp.argsort(keys, descending=True, stable=True)[:n_keep]
    return xp.take(keys, top), top + offset


def _chunk_weight_sum(wc):
    return array_namespace(wc).sum(wc)


def _chunk_search(wc, target):
    """Index of the row of a chunk where the cumulative weight passes
    ``target`` (a host float): one weighted draw inside the chunk."""
    xp = array_namespace(wc)
    cumulative = xp.cumulative_sum(wc)
    t = xp.asarray([target], dtype=wc.dtype, device=device_of(wc))
    return xp.clip(xp.searchsorted(cumulative, t), max=wc.shape[0] - 1)


def _chunk_labels(Xc, centers, shift):
    """Nearest-centre labels of one chunk (``predict``, ``labels_``)."""
    xp = array_namespace(Xc)
    _check_chunk_finite(Xc, xp)
    problem = _chunk_problem(Xc, None, shift, centers.shape[0])
    kernels = problem.kernels
    centers_sqnorm = kernels.sq_row_norms(centers)

    def step(Xb, start, stop, acc):
        return acc, kernels.assign(Xb, centers, centers_sqnorm)[0]

    _, parts = problem.runner.map(step)
    labels = parts[0] if len(parts) == 1 else xp.concat(parts)
    return xp.astype(labels, xp.int64, copy=False)


def _chunk_transform(Xc, centers, shift):
    """Euclidean distances of one chunk's rows to the centres."""
    xp = array_namespace(Xc)
    _check_chunk_finite(Xc, xp)
    problem = _chunk_problem(Xc, None, shift, centers.shape[0])
    distances = distances_to(problem, centers, exact_nearest=True)

    def step(Xb, start, stop, acc):
        return acc, xp.sqrt(distances(Xb))

    _, parts = problem.runner.map(step)
    return parts[0] if len(parts) == 1 else xp.concat(parts)


def _chunk_score(Xc, wc, centers, shift):
    """Weighted inertia of one chunk under the nearest centres (0-d array)."""
    xp = array_namespace(Xc)
    _check_chunk_finite(Xc, xp)
    _, _, inertia = _chunk_lloyd_stats(Xc, wc, centers, shift)
    return inertia


def _check_chunk_finite(Xc, xp):
    # Lazy results cannot be checked up front; the chunk that holds the
    # NaN raises when it is computed.
    if not as_host_scalar(xp.all(xp.isfinite(Xc))):
        raise ValueError("X contains NaN or infinity; k-means needs finite values.")


def _add(*parts):
    """Sum partial results: arrays, or tuples of arrays, elementwise."""
    first = parts[0]
    if isinstance(first, tuple):
        return tuple(_add(*items) for items in zip(*parts))
    return sum(parts[1:], first)


def _concat_parts(*parts):
    """Concatenate per-chunk tuples of arrays (None entries stay None)."""
    out = []
    for items in zip(*parts):
        if items[0] is None:
            out.append(None)
        else:
            out.append(array_namespace(items[0]).concat(list(items)))
    return tuple(out)


# --------------------------------------------------------------------------
# The driver (runs where fit is called)
# --------------------------------------------------------------------------


def _compute(*collections):
    """``dask.compute`` on the active scheduler; one name for the driver's
    every round trip (tests hook it to disturb the cluster mid-fit)."""
    import dask

    return dask.compute(*collections)


def _on_distributed() -> bool:
    if "distributed" not in sys.modules:
        return False
    from distributed import default_client

    try:
        default_client()
    except ValueError:
        return False
    return True


def _tree(parts, combine):
    """Reduce delayed ``parts`` with ``combine`` in a tree of fan-in 8."""
    import dask

    combine = dask.delayed(combine, pure=True)
    while len(parts) > 1:
        parts = [combine(*parts[i : i + _FAN_IN]) for i in range(0, len(parts), _FAN_IN)]
    return parts[0]


class _Chunks:
    """The row chunks of X (and of the weights) as delayed objects, with
    their global row offsets; the driver maps chunk functions over them."""

    def __init__(self, X, weights):
        self.X = X
        self.blocks = list(X.to_delayed()[:, 0])
        self.weights = None if weights is None else list(weights.to_delayed())
        self.sizes = X.chunks[0]
        self.offsets = np.concatenate(([0], np.cumsum(self.sizes)[:-1])).tolist()

    def __len__(self):
        return len(self.blocks)

    def weight(self, i):
        return None if self.weights is None else self.weights[i]

    def map(self, func, *args, per_chunk=None):
        """``func(chunk, weights, *args, *per_chunk[i])`` for every chunk,
        as delayed objects; array ``args`` are sent once, not per task."""
        import dask

        shared = [dask.delayed(a) if is_array_api_obj(a) else a for a in args]
        task = dask.delayed(func, pure=True)
        return [
            task(block, self.weight(i), *shared, *(per_chunk[i] if per_chunk else ()))
            for i, block in enumerate(self.blocks)
        ]


def dask_fit(estimator, X, sample_weight=None) -> dict:
    """Fit ``estimator`` (a KMeans) on a Dask array; return its fitted
    attributes. ``labels_`` is a lazy Dask array of int64."""
    import dask.array as da

    X_lazy, xp, device = _check_dask_array(X)
    n_samples, n_features = X_lazy.shape
    n_clusters = estimator.n_clusters
    check_n_clusters_fits(n_clusters, n_samples)
    weights = _check_dask_weights(sample_weight, X_lazy, xp)
    rng = check_random_state(estimator.random_state)
    init = estimator.init
    template = xp.empty((0, n_features), dtype=X_lazy.dtype, device=device)
    if not isinstance(init, str) and not callable(init):
        init = _compute_if_dask(init)
        init = check_init_array(init, template, xp, device, n_clusters)
    n_init = resolve_n_init(estimator.n_init, estimator.init, n_random=10, stacklevel=5)

    start = time.perf_counter()
    # One pass validates and measures: finiteness, mean (the shift) and
    # the mean feature variance (for tol).
    checks = [da.isfinite(X_lazy).all(), X_lazy.mean(axis=0), X_lazy.var(axis=0).mean()]
    if weights is not None:
        checks += [da.isfinite(weights).all(), (weights < 0).any(), weights.sum()]
    results = _compute(*checks)
    if not bool(results[0]):
        raise ValueError("X contains NaN or infinity; k-means needs finite values.")
    if weights is not None:
        if not bool(results[3]):
            raise ValueError("sample_weight contains NaN or infinity.")
        if bool(results[4]):
            raise ValueError("sample_weight has negative values; weights must be >= 0.")
        if not float(results[5]) > 0:
            raise ValueError("sample_weight sums to zero; at least one weight must be positive.")
    shift = xp.astype(xp.asarray(results[1], device=device), X_lazy.dtype)
    abs_tol = _tolerance(float(results[2]), estimator.tol)

    X_work, w_work = X_lazy, weights
    if _on_distributed():
        # Keep the chunks in the workers' memory across iterations; a lost
        # worker's chunks are recomputed from the graph.
        X_work = X_lazy.persist()
        w_work = None if weights is None else weights.persist()
    chunks = _Chunks(X_work, w_work)

    best = None
    for run in range(n_init):
        centers = _initial_centers(chunks, init, n_clusters, shift, rng, xp, device)
        if estimator.verbose:
            print(f"Initialization complete (run {run + 1} of {n_init}).")
        centers, n_iter = _lloyd_dask(
            chunks, centers, shift, xp,
            max_iter=estimator.max_iter, tol=abs_tol, verbose=estimator.verbose,
        )
        final = _tree(chunks.map(_chunk_final, centers, shift), _add)
        (inertia, counts), = _compute(final)
        inertia = as_host_scalar(inertia)
        if best is None or inertia < best[1]:
            best = (centers, inertia, n_iter, counts)
    centers, inertia, n_iter, counts = best
    n_distinct = int(as_host_scalar(xp.sum(xp.astype(counts > 0, xp.int32))))
    if n_distinct < n_clusters:
        warnings.warn(
            f"Number of distinct clusters ({n_distinct}) found smaller than "
            f"n_clusters ({n_clusters}). Possibly due to duplicate points in X.",
            convergence_warning(),
            stacklevel=3,
        )
    labels = X_lazy.map_blocks(
        _chunk_labels, centers, shift, drop_axis=1, dtype=np.int64,
        meta=xp.empty((0,), dtype=xp.int64, device=device),
    )
    return dict(
        cluster_centers_=centers + shift,
        labels_=labels,
        inertia_=inertia,
        n_iter_=n_iter,
        n_features_in_=n_features,
        fit_time_=time.perf_counter() - start,
    )


def _compute_if_dask(a):
    return _compute(a)[0] if is_dask_array(a) else a


def _lloyd_dask(chunks: _Chunks, centers, shift, xp, *, max_iter: int, tol: float, verbose: int):
    """Lloyd iterations over the chunks, in shifted coordinates.

    Stops as ``_lloyd.lloyd`` does. Its strict-convergence test (labels
    unchanged) needs no labels here: unchanged labels give bit-identical
    sums, so the centre shift is exactly 0 and the tolerance test stops
    the same iteration. Returns the centres and the iteration count.
    """
    for i in range(max_iter):
        stats = _tree(chunks.map(_chunk_lloyd_stats, centers, shift), _add)
        (sums, counts, inertia), = _compute(stats)
        n_empty = int(as_host_scalar(xp.sum(xp.astype(counts == 0, xp.int32))))
        if n_empty:
            sums, counts = _relocate_dask(chunks, centers, shift, sums, counts, n_empty)
        # Sums may be wider than the data (float64 from the fused kernel).
        new_centers = xp.astype(_update_centers(sums, counts, centers, xp), centers.dtype)
        if verbose:
            print(f"Iteration {i}, inertia {as_host_scalar(inertia):.6g}.")
        center_shift = as_host_scalar(xp.sum((new_centers - centers) ** 2))
        centers = new_centers
        if within_tolerance(i, center_shift, tol, verbose):
            break
    return centers, i + 1


def _relocate_dask(chunks: _Chunks, centers, shift, sums, counts, n_empty: int):
    """Empty clusters as in memory: each chunk offers its ``n_empty``
    farthest rows, and ``_lloyd._relocate_empty_clusters`` picks among
    these candidates exactly as it would among all rows (ties in row
    order)."""
    parts = chunks.map(_chunk_farthest, centers, shift, n_empty)
    rows, weights, labels = _compute(_tree(parts, _concat_parts))[0]
    xp = array_namespace(rows)
    problem = _chunk_problem(rows, weights, xp.zeros_like(shift), centers.shape[0])
    return _relocate_empty_clusters(problem, centers, labels, sums, counts, n_empty)


# --------------------------------------------------------------------------
# Initialisation
# --------------------------------------------------------------------------


def _initial_centers(chunks: _Chunks, init, n_clusters: int, shift, rng, xp, device):
    """Initial centres in shifted coordinates."""
    if isinstance(init, str):
        if init in ("k-means++", "k-means||"):
            return _kmeans_parallel(chunks, n_clusters, shift, rng, xp, device)
        return _random_rows(chunks, n_clusters, shift, rng, xp, device)
    if callable(init):
        template = xp.empty((0, chunks.X.shape[1]), dtype=chunks.X.dtype, device=device)
        centers = _compute_if_dask(init(chunks.X, n_clusters, random_state=rng))
        return check_init_array(centers, template, xp, device, n_clusters) - shift
    return init - shift


def _rows_at(chunks: _Chunks, indices, shift):
    """Rows of X at global ``indices`` (a host int array), shifted."""
    return _compute(chunks.X[np.asarray(indices, dtype=np.int64)])[0] - shift


def _random_rows(chunks: _Chunks, n_clusters: int, shift, rng, xp, device):
    """``n_clusters`` distinct rows with probability proportional to their
    weight. Without weights the draw is the in-memory one
    (``rng.choice``), so a seed picks the same rows as on numpy."""
    n_samples = chunks.X.shape[0]
    if chunks.weights is None:
        return _rows_at(chunks, rng.choice(n_samples, size=n_clusters, replace=False), shift)
    seeds = rng.integers(2**63, size=len(chunks))
    parts = chunks.map(
        _chunk_weighted_keys, n_clusters,
        per_chunk=[(int(seeds[i]), chunks.offsets[i]) for i in range(len(chunks))],
    )
    keys, indices = _compute(_tree(parts, _concat_parts))[0]
    top = xp.argsort(keys, descending=True, stable=True)[:n_clusters]
    return _rows_at(chunks, _host_ints(xp.take(indices, top)), shift)


def _host_ints(a):
    """A few indices (at most n_clusters) to the host, to index the Dask array."""
    return np.asarray([int(v) for v in a], dtype=np.int64)


def _first_center(chunks: _Chunks, shift, rng):
    """One row drawn with probability proportional to its weight
    (uniformly without weights): k-means||'s first centre."""
    n_samples = chunks.X.shape[0]
    if chunks.weights is None:
        return _rows_at(chunks, [int(rng.integers(n_samples))], shift)
    import dask

    task = dask.delayed(_chunk_weight_sum, pure=True)
    totals = np.asarray(
        [float(t) for t in _compute(*[task(w) for w in chunks.weights])], dtype=np.float64
    )
    cumulative = np.cumsum(totals)
    target = rng.uniform() * cumulative[-1]
    chunk = min(int(np.searchsorted(cumulative, target, side="right")), len(chunks) - 1)
    # Skip chunks of zero weight that round-off could land on.
    while totals[chunk] <= 0:
        chunk -= 1
    residual = target - (cumulative[chunk] - totals[chunk])
    (local,) = _compute(dask.delayed(_chunk_search, pure=True)(chunks.weights[chunk], residual))
    return _rows_at(chunks, [chunks.offsets[chunk] + int(local[0])], shift)


def _kmeans_parallel(chunks: _Chunks, n_clusters: int, shift, rng, xp, device):
    """k-means|| (scalable k-means++), in shifted coordinates.

    A first centre drawn at random (by weight), then
    ``KMEANS_PARALLEL_ROUNDS`` rounds that each keep every row with
    probability ``l * w * d2 / phi`` (``l = 2 n_clusters`` expected
    candidates, ``phi`` the current potential); the candidates, weighted by
    the weight of the rows closest to them, are reclustered in memory by
    weighted k-means++ and Lloyd (best of ``RECLUSTER_N_INIT`` seedings).
    """
    candidates = _first_center(chunks, shift, rng)
    oversampling = KMEANS_PARALLEL_OVERSAMPLING * n_clusters
    for _ in range(KMEANS_PARALLEL_ROUNDS):
        phi = as_host_scalar(_compute(_tree(chunks.map(_chunk_potential, candidates, shift), _add))[0])
        if not phi > 0:
            break  # every row sits on a candidate
        seeds = rng.integers(2**63, size=len(chunks))
        parts = chunks.map(
            _chunk_oversample, candidates, shift, oversampling / phi,
            per_chunk=[(int(s),) for s in seeds],
        )
        new = _compute(*parts)
        candidates = xp.concat([candidates, *new])
    weights = _compute(_tree(chunks.map(_chunk_candidate_weights, candidates, shift), _add))[0]
    keep = weights > 0
    n_kept = int(as_host_scalar(xp.sum(xp.astype(keep, xp.int32))))
    if n_kept < n_clusters:
        # Too few distinct candidates (tiny or duplicated data): fall back
        # to random rows rather than return duplicate centres.
        return _random_rows(chunks, n_clusters, shift, rng, xp, device)
    if n_kept == n_clusters:
        return candidates[keep, ...]
    candidates, weights = candidates[keep, ...], weights[keep]
    # The recluster is in memory on a few dozen rows per cluster: several
    # weighted k-means++ seedings, each refined by Lloyd, cost nothing next
    # to one pass over X and avoid an unlucky seeding.
    refined, _, _, _ = fit_best_of(
        candidates, weights, xp, device, n_clusters=n_clusters, init="k-means++",
        n_init=RECLUSTER_N_INIT, max_iter=300, tol=1e-4, verbose=0, rng=rng,
    )
    return refined


# --------------------------------------------------------------------------
# predict / transform / score
# --------------------------------------------------------------------------


def dask_predict(estimator, X):
    """Lazy nearest-centre labels of a Dask X: an int64 Dask array of shape
    (n_samples,) chunked like X's rows."""
    X, xp, centers, shift = _check_fitted_for(estimator, X)
    return X.map_blocks(
        _chunk_labels, centers, shift, drop_axis=1, dtype=np.int64,
        meta=xp.empty((0,), dtype=xp.int64, device=device_of(centers)),
    )


def dask_transform(estimator, X):
    """Lazy Euclidean distances of a Dask X to the centres: a Dask array of
    shape (n_samples, n_clusters) in the centres' dtype."""
    X, xp, centers, shift = _check_fitted_for(estimator, X)
    n_clusters = centers.shape[0]
    out = X.map_blocks(
        _chunk_transform, centers, shift, chunks=(X.chunks[0], (n_clusters,)),
        dtype=X.dtype, meta=xp.empty((0, 0), dtype=X.dtype, device=device_of(centers)),
    )
    dtype = estimator.cluster_centers_.dtype
    return out if out.dtype == dtype else out.astype(dtype)


def dask_score(estimator, X, sample_weight=None) -> float:
    """Opposite of the (weighted) inertia of a Dask X; computed now."""
    X, xp, centers, shift = _check_fitted_for(estimator, X)
    weights = _check_dask_weights(sample_weight, X, xp)
    chunks = _Chunks(X, weights)
    total = _compute(_tree(chunks.map(_chunk_score, centers, shift), _add))[0]
    return -as_host_scalar(total)
