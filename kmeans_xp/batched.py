"""Batched k-means: B independent problems of the same shape in one call.

``batched_k_means(X, k)`` with X of shape (B, n, d) runs the same Lloyd
iterations as B separate ``k_means`` calls, but each block of rows costs
one batched matmul (B, rows, d) @ (B, d, k) and one segment sum for all
problems, and a problem that has converged leaves the batch (its rows are
no longer read). Codebooks of product quantisation (``kmeans_xp.pq``), one
clustering per attention head or per image are such batches.

Memory stays bounded as in ``KMeans.fit``: rows are taken in blocks, so no
(B, n, k) array is made for large inputs.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math

import numpy as np

from ._array_api import (
    array_namespace,
    as_host_scalar,
    device_of,
    host_workers,
    is_array_api_obj,
    is_gpu_device,
    is_numpy_namespace,
    numpy_twin,
    to_device_array,
    to_host,
)
from ._kernels import get_kernels
from ._lloyd import _update_centers
from ._validation import (
    _check_int,
    check_array,
    check_init_name,
    check_random_state,
    check_same_namespace,
    check_sample_weight,
    check_tol,
    result_dtype,
)

__all__ = ["batched_k_means"]

#: Bytes one block's (problems x rows x clusters) scores may take: on a
#: CPU small enough to stay in cache, on a GPU large enough to fill it.
_BLOCK_BYTES = 1 << 24
_GPU_BLOCK_BYTES = 1 << 28

_INITS = ("k-means++", "random")


def batched_k_means(
    X,
    n_clusters: int,
    *,
    sample_weight=None,
    init="k-means++",
    n_init="auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state=None,
):
    """K-means on B independent problems at once.

    Problem ``b`` is ``X[b]``; its result equals that of
    ``k_means(X[b], n_clusters, init=centers0[b], n_init=1, max_iter=...,
    tol=...)`` from the same initial centres ``centers0[b]``: the same
    labels, and the same centres up to round-off. Each problem stops on its
    own (labels unchanged, or squared centre shift at most ``tol`` times the
    mean feature variance of that problem), after which it costs no work.

    Parameters
    ----------
    X : array of shape (n_problems, n_samples, n_features)
        Any array-API array (numpy, torch, cupy, ...) or a nested list.
        Never modified. Integer data become the default floating dtype.
    n_clusters : int
        Clusters per problem; at most ``n_samples``.
    sample_weight : array of shape (n_problems, n_samples), optional
        Non-negative weights in X's namespace and device; each problem needs
        a positive total.
    init : {"k-means++", "random"} or array of shape (n_problems, n_clusters, n_features)
        "k-means++": greedy k-means++ per problem with ``2 + ln(n_clusters)``
        local trials (as ``KMeans``). "random": distinct rows per problem,
        drawn with probability proportional to their weight. An array gives
        the initial centres of every problem.
    n_init : "auto" or int, default="auto"
        Initialisations per problem; each problem keeps its run of lowest
        inertia. "auto" means 1 for "k-means++" and arrays, 10 for "random".
    max_iter : int, default=300
        Maximum Lloyd iterations per problem.
    tol : float, default=1e-4
        Tolerance on the squared centre shift, relative to the mean feature
        variance of each problem.
    random_state : None, int or numpy.random.Generator
        Seeds the host generator all draws come from.

    Returns
    -------
    centers : array of shape (n_problems, n_clusters, n_features)
        In X's namespace, device and floating dtype.
    labels : int64 array of shape (n_problems, n_samples)
    inertia : array of shape (n_problems,)
        Weighted sum of squared distances of each problem, X's dtype.
    n_iter : int64 array of shape (n_problems,)
        Lloyd iterations of each problem's best run.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import batched_k_means
    >>> X = np.array([[[0.0], [0.2], [10.0], [10.2]],
    ...               [[5.0], [5.4], [-5.0], [-5.4]]])
    >>> centers, labels, inertia, n_iter = batched_k_means(X, 2, random_state=0)
    >>> np.sort(centers[..., 0], axis=1).round(6).tolist()
    [[0.1, 10.1], [-5.2, 5.2]]
    >>> inertia.round(6).tolist()
    [0.04, 0.16]
    """
    X_input = X
    X, xp, device = _check_batched_array(X)
    _n_problems, n_samples, _n_features = X.shape
    n_clusters = _check_int(n_clusters, "n_clusters", 1)
    if n_clusters > n_samples:
        raise ValueError(
            f"n_clusters={n_clusters} must be <= n_samples={n_samples} (the rows of each problem)."
        )
    max_iter = _check_int(max_iter, "max_iter", 1)
    check_tol(tol)
    if isinstance(init, str):
        check_init_name(init, _INITS, "or an array of shape (n_problems, n_clusters, n_features)")
    else:
        init = _check_init(init, X, xp, device, n_clusters)
    if isinstance(n_init, str) and n_init == "auto":
        n_init = 10 if isinstance(init, str) and init == "random" else 1
    else:
        n_init = _check_int(n_init, "n_init", 1)
        if not isinstance(init, str):
            n_init = 1  # given centres: one run, as KMeans
    weights = _check_weights(sample_weight, X, xp, device)
    rng = check_random_state(random_state)

    out_xp, out_device, out_dtype, back = xp, device, result_dtype(X_input, X), None
    twin = numpy_twin(xp, device)
    if twin is not None:
        # torch CPU tensors run the numpy code on views of their memory, as
        # KMeans.fit does (the torch row of the batched benchmark).
        xp, device = twin[0], "cpu"
        view, back = twin[1], twin[2]
        X, weights = view(X), view(weights)
        if not isinstance(init, str):
            init = view(init)
    with _one_blas_thread(xp):
        best = _fit(X, weights, xp, device, n_clusters, init, n_init, max_iter, tol, rng)
    centers, labels, inertia, n_iter = best
    if back is not None:
        centers, labels, inertia = back(centers), back(labels), back(inertia)
    if centers.dtype != out_dtype:
        centers = out_xp.astype(centers, out_dtype)
    n_iter = to_device_array(n_iter, out_xp, dtype=out_xp.int64, device=out_device)
    return centers, labels, inertia, n_iter


def _one_blas_thread(xp):
    """numpy's BLAS limited to one thread, when threadpoolctl is installed.

    The batched products are many small GEMMs (inner dimension d + 1), for
    which waking a BLAS thread team per call costs more than it gains (the
    batched and PQ rows of benchmarks/run.py).
    """
    if not is_numpy_namespace(xp):
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _fit(X, weights, xp, device, n_clusters, init, n_init, max_iter, tol, rng):
    """Best of ``n_init`` runs per problem on validated input: centres
    (B, k, d, original coordinates), labels, inertia and the host array
    of iteration counts."""
    data = _Batch(X, weights, xp, device)
    shift, tol_abs = data.mean_and_tolerance(tol)
    best = None
    for _ in range(n_init):
        if isinstance(init, str):
            centers0 = (
                _kmeans_plusplus(data, shift, n_clusters, rng)
                if init == "k-means++"
                else _random_rows(data, shift, n_clusters, rng)
            )
        else:
            centers0 = init - shift[:, None, :]
        centers, n_iter = _lloyd(data, shift, centers0, max_iter=max_iter, tol=tol_abs)
        labels, inertia = _final_assignment(data, shift, centers)
        if best is None:
            best = (centers, labels, inertia, n_iter)
            continue
        better = inertia < best[2]
        better_host = to_host(better)
        best = (
            xp.where(better[:, None, None], centers, best[0]),
            xp.where(better[:, None], labels, best[1]),
            xp.where(better, inertia, best[2]),
            np.where(better_host, n_iter, best[3]),
        )
    centers, labels, inertia, n_iter = best
    return centers + shift[:, None, :], labels, inertia, n_iter


def _check_batched_array(X):
    """``(X, xp, device)`` for a valid (B, n, d) array: the checks of
    ``check_array`` (dtype, finite values, magnitude) on its rows."""
    if is_array_api_obj(X):
        ndim = X.ndim
    elif isinstance(X, (list, tuple)) or hasattr(X, "__array__"):
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"X must be an array, got {type(X).__name__}: {exc}") from None
        ndim = X.ndim
    else:
        raise TypeError(f"X must be an array or a nested list of numbers, got {type(X).__name__}.")
    if ndim != 3:
        raise ValueError(
            "X must be a 3-D array of shape (n_problems, n_samples, n_features); "
            f"got {ndim}-D with shape {tuple(X.shape)}. One problem is X[None]."
        )
    n_problems, n_samples, n_features = X.shape
    if n_problems == 0:
        raise ValueError(f"X has 0 problems (shape {tuple(X.shape)}).")
    xp = array_namespace(X)
    # A (B * n, d) view (one copy if X is not contiguous, kept for the fit)
    # carries the checks of 2-D data, and later the row gathers.
    rows, xp, device = check_array(xp.reshape(X, (n_problems * n_samples, n_features)))
    return xp.reshape(rows, (n_problems, n_samples, n_features)), xp, device


def _check_init(init, X, xp, device, n_clusters: int):
    # numpy arrays and lists are the host form every backend accepts.
    if is_array_api_obj(init) and not isinstance(init, np.ndarray):
        check_same_namespace(init, X, xp, device, "init")
        centers = xp.astype(init, X.dtype)
    else:
        try:
            centers = xp.asarray(np.asarray(init, dtype=np.float64), dtype=X.dtype, device=device)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"init must be a string or an array of numbers: {exc}") from None
    expected = (X.shape[0], n_clusters, X.shape[2])
    if tuple(centers.shape) != expected:
        raise ValueError(
            f"init has shape {tuple(centers.shape)}; expected {expected} "
            "(n_problems, n_clusters, n_features)."
        )
    if not as_host_scalar(xp.all(xp.isfinite(centers))):
        raise ValueError("init contains NaN or infinity.")
    return centers


def _check_weights(sample_weight, X, xp, device):
    """None for unit weights, else an array of shape (B, n) in X's dtype."""
    if sample_weight is None:
        return None
    n_problems, n_samples, _ = X.shape
    if not is_array_api_obj(sample_weight):
        sample_weight = np.asarray(sample_weight)
    if sample_weight.ndim != 2 or tuple(sample_weight.shape) != (n_problems, n_samples):
        raise ValueError(
            f"sample_weight must have shape ({n_problems}, {n_samples}) to match X, "
            f"got {tuple(sample_weight.shape)}."
        )
    if is_array_api_obj(sample_weight) and not isinstance(sample_weight, np.ndarray):
        check_same_namespace(sample_weight, X, xp, device, "sample_weight")
        flat = xp.reshape(sample_weight, (n_problems * n_samples,))
    else:
        flat = np.reshape(sample_weight, (-1,))
    rows = xp.reshape(X, (n_problems * n_samples, X.shape[2]))
    w = xp.reshape(check_sample_weight(flat, rows, xp, device), (n_problems, n_samples))
    if not as_host_scalar(xp.all(xp.sum(w, axis=1) > 0)):
        raise ValueError("sample_weight sums to zero for some problem; each needs a positive weight.")
    return w


class _Batch:
    """The data of a batched fit, and its passes over row blocks."""

    def __init__(self, X, weights, xp, device):
        self.X, self.weights, self.xp, self.device = X, weights, xp, device
        n_problems, n_samples, n_features = X.shape
        self.rows = xp.reshape(X, (n_problems * n_samples, n_features))  # a view
        self.kernels = get_kernels(xp, device)
        self.itemsize = xp.finfo(X.dtype).bits // 8
        self.block_bytes = _GPU_BLOCK_BYTES if is_gpu_device(xp, device) else _BLOCK_BYTES
        # Host arrays: blocks on a thread pool (numpy releases the GIL in
        # its products and reductions), one BLAS thread each.
        self.workers = host_workers() if is_numpy_namespace(xp) else 1

    def map(self, run, spans):
        """``run`` on contiguous runs of ``spans``, one per worker, in order."""
        n = min(self.workers, len(spans))
        if n <= 1:
            return [run(spans)]
        bounds = [len(spans) * i // n for i in range(n + 1)]
        chunks = [spans[bounds[i] : bounds[i + 1]] for i in range(n)]
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return list(pool.map(run, chunks))

    @property
    def dtype(self):
        return self.X.dtype

    def blocks(self, n_problems: int, width: int):
        """Row ranges whose (problems, rows, width) work arrays fit the budget."""
        n_samples = self.X.shape[1]
        per_row = n_problems * max(width, self.X.shape[2]) * self.itemsize
        step = max(1, min(n_samples, self.block_bytes // per_row))
        return [(start, min(start + step, n_samples)) for start in range(0, n_samples, step)]

    def block(self, start: int, stop: int, problems, shift):
        """Rows ``start:stop`` of the chosen problems (device indices, or
        None for all), shifted: a new array of shape (B', rows, d)."""
        Xb = self.X[:, start:stop, :]
        if problems is not None:
            Xb = self.xp.take(Xb, problems, axis=0)
        return Xb - shift[:, None, :]

    def block_weights(self, start: int, stop: int, problems):
        if self.weights is None:
            return None
        w = self.weights[:, start:stop]
        return w if problems is None else self.xp.take(w, problems, axis=0)

    def gather(self, problems, indices, shift):
        """Rows ``indices`` (shape (B', m)) of problems ``problems`` (device
        indices of shape (B',)), shifted: shape (B', m, d)."""
        xp = self.xp
        n_samples, n_features = self.X.shape[1:]
        flat = xp.reshape(indices + problems[:, None] * n_samples, (-1,))
        points = xp.take(self.rows, flat, axis=0)
        return xp.reshape(points, (indices.shape[0], indices.shape[1], n_features)) - shift[:, None, :]

    def all_problems(self):
        return self.xp.arange(self.X.shape[0], dtype=self.xp.int64, device=self.device)

    def mean_and_tolerance(self, tol: float):
        """Column means of each problem (B, d), the shift of every pass, and
        the absolute tolerance of each problem (host array of shape (B,)):
        ``tol`` times its mean feature variance, as ``KMeans`` (unweighted)."""
        xp = self.xp
        n_problems, n_samples, n_features = self.X.shape
        zero = xp.zeros((n_problems, n_features), dtype=self.dtype, device=self.device)
        spans = self.blocks(n_problems, 1)
        total = zero
        for start, stop in spans:
            total = total + xp.sum(self.X[:, start:stop, :], axis=1)
        mean = total / n_samples
        if tol == 0:
            return mean, np.zeros(n_problems)
        squares = zero
        for start, stop in spans:
            deviations = self.block(start, stop, None, mean)
            squares = squares + xp.sum(deviations * deviations, axis=1)
        mean_variance = xp.mean(squares / n_samples, axis=1)
        return mean, to_host(mean_variance).astype(np.float64) * tol


def _row_major(a):
    """``a`` as a row-major array (a copy unless it is one): numpy's
    batched matmul leaves BLAS for a slow loop on a transposed operand."""
    xp = array_namespace(a)
    return xp.reshape(xp.reshape(a, (-1,)), a.shape)


def _distances(Xb, points, Xb_sq=None):
    """Squared distances (B', rows, m) of the rows of Xb (B', rows, d) to
    ``points`` (B', m, d), clamped at 0. ``Xb_sq``: the rows' squared
    norms (B', rows) when known."""
    xp = array_namespace(Xb)
    if Xb_sq is None:
        Xb_sq = xp.sum(Xb * Xb, axis=2)
    p_sq = xp.sum(points * points, axis=2)[:, None, :]
    d2 = Xb @ _row_major(xp.permute_dims(-2 * points, (0, 2, 1))) + Xb_sq[:, :, None] + p_sq
    return xp.maximum(d2, xp.zeros_like(d2[:1, :1, :1]))


def _draw(data: _Batch, cumulative, u):
    """Per problem, the indices ``searchsorted(cumulative[b], u[b] *
    cumulative[b, -1])`` (side left): how many sums lie below each target,
    counted in column blocks. ``cumulative`` (B, n), ``u`` (B, m) -> (B, m)."""
    xp = data.xp
    n_samples = cumulative.shape[1]
    targets = u * cumulative[:, -1:]
    below = None
    for start, stop in data.blocks(u.shape[0], u.shape[1]):
        part = xp.sum(
            xp.astype(cumulative[:, start:stop, None] < targets[:, None, :], xp.int64), axis=1
        )
        below = part if below is None else below + part
    # Round-off can put a target past the last sum.
    return xp.minimum(below, xp.asarray(n_samples - 1, dtype=xp.int64, device=data.device))


def _uniform(data: _Batch, rng, shape):
    return to_device_array(rng.uniform(size=shape), data.xp, dtype=data.dtype, device=data.device)


def _kmeans_plusplus(data: _Batch, shift, n_clusters: int, rng):
    """Greedy k-means++ in every problem at once (as ``_init._kmeans_plusplus``):
    each new centre is the best of ``2 + ln k`` candidates drawn with
    probability proportional to weight x squared distance. Returns centres
    (B, k, d) in shifted coordinates."""
    xp = data.xp
    n_problems, n_samples, _ = data.X.shape
    n_trials = 2 + int(math.log(n_clusters))
    problems = data.all_problems()
    w = data.weights
    spans = data.blocks(n_problems, n_trials)
    # Row norms once; the candidates' distances of a round are kept (when
    # they fit in a few blocks' budget) so that the chosen one's need no
    # second pass.
    sq_norms = []
    for start, stop in spans:
        Xb = data.block(start, stop, None, shift)
        sq_norms.append(xp.sum(Xb * Xb, axis=2))
    keep = n_problems * n_samples * n_trials * data.itemsize <= 4 * data.block_bytes

    def closest_to(points):  # (B, 1, d) -> (B, n)
        parts = [
            _distances(data.block(start, stop, None, shift), points, sq)[:, :, 0]
            for (start, stop), sq in zip(spans, sq_norms)
        ]
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)

    first_w = w if w is not None else xp.ones((n_problems, n_samples), dtype=data.dtype, device=data.device)
    first = _draw(data, xp.cumulative_sum(first_w, axis=1), _uniform(data, rng, (n_problems, 1)))
    centers = [data.gather(problems, first, shift)]
    closest = closest_to(centers[0])
    for _ in range(1, n_clusters):
        potential = closest if w is None else w * closest
        candidates = _draw(
            data, xp.cumulative_sum(potential, axis=1), _uniform(data, rng, (n_problems, n_trials))
        )
        points = data.gather(problems, candidates, shift)  # (B, trials, d)
        total, kept = None, []
        for (start, stop), sq in zip(spans, sq_norms):
            d2 = xp.minimum(
                _distances(data.block(start, stop, None, shift), points, sq),
                closest[:, start:stop, None],
            )
            part = xp.sum(d2 if w is None else d2 * w[:, start:stop, None], axis=1)
            total = part if total is None else total + part
            if keep:
                kept.append(d2)
        best = xp.astype(xp.argmin(total, axis=1), xp.int64)  # (B,)
        best_point = xp.reshape(
            xp.take(xp.reshape(points, (n_problems * n_trials, -1)), best + problems * n_trials, axis=0),
            (n_problems, 1, -1),
        )
        if keep:
            parts = []
            for d2 in kept:
                n_rows = d2.shape[1]
                rows = xp.arange(n_rows, dtype=xp.int64, device=data.device)[None, :]
                pick = (problems[:, None] * n_rows + rows) * n_trials + best[:, None]
                parts.append(xp.reshape(xp.take(xp.reshape(d2, (-1,)), xp.reshape(pick, (-1,))), (n_problems, n_rows)))
            closest = parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)
        else:
            closest = xp.minimum(closest, closest_to(best_point))
        centers.append(best_point)
    return xp.concat(centers, axis=1)


def _random_rows(data: _Batch, shift, n_clusters: int, rng):
    """``n_clusters`` distinct rows per problem, drawn with probability
    proportional to their weight (uniformly without weights)."""
    xp = data.xp
    n_problems, n_samples, _ = data.X.shape
    if data.weights is None:
        picks = np.stack([rng.choice(n_samples, size=n_clusters, replace=False) for _ in range(n_problems)])
        indices = to_device_array(picks, xp, dtype=xp.int64, device=data.device)
    else:
        # Efraimidis-Spirakis: the k largest log(u) / w are a weighted sample
        # without replacement.
        u = _uniform(data, rng, (n_problems, n_samples))
        w = data.weights
        positive = w > 0
        keys = xp.where(positive, xp.log(u) / xp.where(positive, w, xp.ones_like(w)), -xp.inf)
        indices = xp.argsort(keys, axis=1, descending=True, stable=True)[:, :n_clusters]
    return data.gather(data.all_problems(), indices, shift)


def _scores(Xb, scorer):
    """``||c||^2 - 2 x.c`` (B', rows, k) of a block (see ``_scorer``)."""
    xp = array_namespace(Xb)
    ones = xp.ones((*Xb.shape[:2], 1), dtype=Xb.dtype, device=device_of(Xb))
    return xp.concat([Xb, ones], axis=2) @ scorer


def _scorer(centers):
    """(B', d + 1, k) factor whose product with a block with a column of
    ones is ``||c||^2 - 2 x.c``: one batched matmul gives the scores, with
    no elementwise passes over the (B', rows, k) array."""
    xp = array_namespace(centers)
    augmented = xp.concat([-2 * centers, xp.sum(centers * centers, axis=2)[:, :, None]], axis=2)
    transposed = xp.permute_dims(augmented, (0, 2, 1))
    return _row_major(transposed)


def _lloyd_pass(data: _Batch, problems, shift, centers):
    """One E-step and the M-step statistics of the problems ``problems``
    (device indices, None for all). Returns labels (B', n) and the weighted
    sums (B', k, d) and weights (B', k) of each cluster.

    On the host (numpy) the blocks are split between ``data.workers``
    threads, each with its own accumulators (numpy's kernels add in place),
    added at the end.
    """
    xp, kernels = data.xp, data.kernels
    n_active, n_clusters, n_features = centers.shape
    scorer = _scorer(centers)
    offsets = xp.arange(n_active, dtype=xp.int64, device=data.device)[:, None] * n_clusters

    def run(spans):
        sums = xp.zeros((n_active * n_clusters, n_features), dtype=data.dtype, device=data.device)
        counts = xp.zeros((n_active * n_clusters,), dtype=data.dtype, device=data.device)
        labels = []
        for start, stop in spans:
            Xb = data.block(start, stop, problems, shift)
            # One batched matmul for every problem.
            block_labels = xp.argmin(_scores(Xb, scorer), axis=2)
            if block_labels.dtype != xp.int64:
                block_labels = xp.astype(block_labels, xp.int64)
            w = data.block_weights(start, stop, problems)
            # One segment sum for every problem: cluster j of problem b is b*k + j.
            n_rows = n_active * (stop - start)
            sums, counts = kernels.accumulate(
                xp.reshape(Xb, (n_rows, n_features)),
                xp.reshape(block_labels + offsets, (n_rows,)),
                None if w is None else xp.reshape(w, (n_rows,)),
                sums,
                counts,
            )
            labels.append(block_labels)
        return labels, sums, counts

    parts = data.map(run, data.blocks(n_active, n_clusters))
    labels = [block for part in parts for block in part[0]]
    labels = labels[0] if len(labels) == 1 else xp.concat(labels, axis=1)
    sums, counts = parts[0][1], parts[0][2]
    for _, more_sums, more_counts in parts[1:]:
        sums, counts = sums + more_sums, counts + more_counts
    return (
        labels,
        xp.reshape(sums, (n_active, n_clusters, n_features)),
        xp.reshape(counts, (n_active, n_clusters)),
    )


def _sq_distances_to_labels(data: _Batch, problems, shift, centers, labels, start, stop):
    """``||x - c_label||^2`` (B', rows) of rows ``start:stop``."""
    xp = data.xp
    n_active, n_clusters, n_features = centers.shape
    Xb = data.block(start, stop, problems, shift)
    offsets = xp.arange(n_active, dtype=xp.int64, device=data.device)[:, None] * n_clusters
    flat = xp.reshape(labels + offsets, (-1,))
    assigned = xp.take(xp.reshape(centers, (n_active * n_clusters, n_features)), flat, axis=0)
    diff = Xb - xp.reshape(assigned, Xb.shape)
    return xp.sum(diff * diff, axis=2)


def _relocate_empty_clusters(data, problems, shift, centers, labels, sums, counts, n_empty):
    """Give each empty cluster one of the points farthest from its centre,
    in each problem (as ``_lloyd._relocate_empty_clusters``).

    ``problems`` (device, B'), ``centers`` (B', k, d), ``labels`` (B', n),
    ``sums``/``counts`` of those problems, ``n_empty`` a host array (B',)
    of at least 1 each. The moved points leave their cluster's sums and
    start the empty ones; they keep their labels. Returns new sums, counts.
    """
    xp = data.xp
    n_active, n_clusters, _ = centers.shape
    n_samples = labels.shape[1]
    most = int(n_empty.max())
    d2 = [
        _sq_distances_to_labels(data, problems, shift, centers, labels[:, start:stop], start, stop)
        for start, stop in data.blocks(n_active, 1)
    ]
    d2 = d2[0] if len(d2) == 1 else xp.concat(d2, axis=1)
    far = xp.argsort(d2, axis=1, descending=True, stable=True)[:, :most]  # (B', m)
    is_empty = xp.astype(counts == 0, xp.int8)
    empty_ids = xp.argsort(is_empty, axis=1, descending=True, stable=True)[:, :most]
    # Problems with fewer empty clusters than ``most`` move fewer points.
    used = to_device_array(
        np.arange(most)[None, :] < n_empty[:, None], xp, dtype=data.dtype, device=data.device
    )
    moved = data.gather(problems, far, shift)  # (B', m, d)
    if data.weights is None:
        moved_w = used
    else:
        flat = xp.reshape(far + xp.arange(n_active, dtype=xp.int64, device=data.device)[:, None] * n_samples, (-1,))
        w = xp.take(xp.reshape(data.block_weights(0, n_samples, problems), (-1,)), flat)
        moved_w = xp.reshape(w, far.shape) * used
    far_labels = xp.reshape(
        xp.take(
            xp.reshape(labels, (-1,)),
            xp.reshape(far + xp.arange(n_active, dtype=xp.int64, device=data.device)[:, None] * n_samples, (-1,)),
        ),
        far.shape,
    )
    ids = xp.arange(n_clusters, dtype=xp.int64, device=data.device)
    arrive = xp.astype(xp.astype(empty_ids, xp.int64)[:, :, None] == ids, data.dtype)
    leave = xp.astype(far_labels[:, :, None] == ids, data.dtype)
    transfer = (arrive - leave) * moved_w[:, :, None]  # (B', m, k)
    transfer_t = xp.permute_dims(transfer, (0, 2, 1))
    return sums + transfer_t @ moved, counts + xp.sum(transfer, axis=1)


def _lloyd(data: _Batch, shift, centers, *, max_iter: int, tol):
    """Lloyd's algorithm on every problem from ``centers`` (B, k, d, shifted
    coordinates); ``tol`` is the host array (B,) of absolute tolerances.

    A problem stops when its labels no longer change, when its squared
    centre shift is at most its tolerance, or after ``max_iter``
    iterations; from then on its rows are no longer read. Returns the
    final centres (B, k, d) and the host array (B,) of iteration counts.
    """
    xp = data.xp
    n_problems = data.X.shape[0]
    active = np.arange(n_problems)  # host positions of the running problems
    problems = None  # their device indices; None while all run
    active_shift, active_tol = shift, tol
    labels = None
    n_iter = np.zeros(n_problems, dtype=np.int64)
    finished, finished_centers = [], []
    for i in range(max_iter):
        new_labels, sums, counts = _lloyd_pass(data, problems, active_shift, centers)
        new_centers = _update_centers(sums, counts, centers, xp)
        n_empty = xp.sum(xp.astype(counts == 0, xp.int64), axis=1)
        if labels is None:
            changed = xp.ones_like(n_empty)  # no previous labels to compare
        else:
            changed = xp.sum(xp.astype(new_labels != labels, xp.int64), axis=1)
        diff = new_centers - centers
        center_shift = xp.sum(xp.reshape(diff * diff, (diff.shape[0], -1)), axis=1)
        # One read per iteration: what every running problem does next.
        state = to_host(xp.stack([n_empty, changed]))
        center_shift = to_host(center_shift)
        if state[0].any():
            relocate = np.flatnonzero(state[0])
            picked = to_device_array(relocate, xp, dtype=xp.int64, device=data.device)
            chosen = problems if problems is not None else data.all_problems()
            new_sums, new_counts = _relocate_empty_clusters(
                data,
                xp.take(chosen, picked),
                xp.take(active_shift, picked, axis=0),
                xp.take(centers, picked, axis=0),
                xp.take(new_labels, picked, axis=0),
                xp.take(sums, picked, axis=0),
                xp.take(counts, picked, axis=0),
                state[0][relocate],
            )
            # Each problem's statistics: its own, or its relocated ones.
            order = np.arange(len(active))
            order[relocate] = len(active) + np.arange(len(relocate))
            order = to_device_array(order, xp, dtype=xp.int64, device=data.device)
            sums = xp.take(xp.concat([sums, new_sums]), order, axis=0)
            counts = xp.take(xp.concat([counts, new_counts]), order, axis=0)
            new_centers = _update_centers(sums, counts, centers, xp)
            diff = new_centers - centers
            center_shift = to_host(xp.sum(xp.reshape(diff * diff, (diff.shape[0], -1)), axis=1))
        centers, labels = new_centers, new_labels
        done = (state[1] == 0) | (center_shift <= active_tol)
        if i == max_iter - 1:
            done[:] = True
        if not done.any():
            continue
        n_iter[active[done]] = i + 1
        finished.append(active[done])
        finished_centers.append(
            centers if done.all() else xp.take(centers, _device_ids(xp, data, done), axis=0)
        )
        if done.all():
            break
        keep = _device_ids(xp, data, ~done)
        active, active_tol = active[~done], active_tol[~done]
        problems = to_device_array(active, xp, dtype=xp.int64, device=data.device)
        active_shift = xp.take(shift, problems, axis=0)
        centers = xp.take(centers, keep, axis=0)
        labels = xp.take(labels, keep, axis=0)
    order = to_device_array(np.argsort(np.concatenate(finished)), xp, dtype=xp.int64, device=data.device)
    centers = finished_centers[0] if len(finished_centers) == 1 else xp.concat(finished_centers)
    return xp.take(centers, order, axis=0), n_iter


def _device_ids(xp, data, mask):
    return to_device_array(np.flatnonzero(mask), xp, dtype=xp.int64, device=data.device)


def _final_assignment(data: _Batch, shift, centers):
    """Labels (B, n) of the closest centres and the weighted inertia (B,),
    from exact squared distances to those centres."""
    xp = data.xp
    n_problems, n_clusters, _ = centers.shape
    scorer = _scorer(centers)
    labels, inertia = [], None
    for start, stop in data.blocks(n_problems, n_clusters):
        Xb = data.block(start, stop, None, shift)
        block_labels = xp.astype(xp.argmin(_scores(Xb, scorer), axis=2), xp.int64)
        d2 = _sq_distances_to_labels(data, None, shift, centers, block_labels, start, stop)
        w = data.block_weights(start, stop, None)
        part = xp.sum(d2 if w is None else w * d2, axis=1)
        inertia = part if inertia is None else inertia + part
        labels.append(block_labels)
    return (labels[0] if len(labels) == 1 else xp.concat(labels, axis=1)), inertia
