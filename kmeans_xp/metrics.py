"""Cluster quality metrics, written once against the array API.

``silhouette_score``, ``silhouette_samples``, ``calinski_harabasz_score``
and ``davies_bouldin_score`` follow ``sklearn.metrics`` (same definitions,
same values on numpy float64 to about 1e-10) but run where the data are:
each returns an array in the namespace and on the device of ``X`` (a 0-d
array for the scores; call ``float()`` to bring it to the host).

Nothing of size (n_samples x n_samples) or (n_samples x n_labels) is built:
the silhouette walks pairwise distances in (row block x column block) tiles
and adds each tile into per-cluster sums with one matmul by the tile's
one-hot labels;
the other two scores need two block passes over X (cluster means, then
distances to them).

>>> import numpy as np
>>> from kmeans_xp.metrics import silhouette_score, davies_bouldin_score
>>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]])
>>> labels = np.array([0, 0, 1, 1])
>>> round(float(silhouette_score(X, labels)), 4)
0.9002
>>> round(float(davies_bouldin_score(X, labels)), 4)
0.1
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ._array_api import (
    Array,
    array_namespace,
    device_of,
    index_dtype,
    is_array_api_obj,
    to_device_array,
)
from ._fit import host_views
from ._kernels import get_kernels
from ._problem import make_problem
from ._validation import _isdtype, check_array, check_same_namespace

__all__ = [
    "silhouette_score",
    "silhouette_samples",
    "calinski_harabasz_score",
    "davies_bouldin_score",
]

_METRICS = ("euclidean", "cosine")
#: Up to this many clusters (summed over labelings) the silhouette adds a
#: distance tile into cluster sums by a one-hot matmul (select_k, 2..10:
#: 54 columns); above it, by the accumulate kernel per labeling.
_MATMUL_MAX_LABELS = 256


# --------------------------------------------------------------------------
# Public functions: validate at the door, then call the generic helpers.
# --------------------------------------------------------------------------


def silhouette_samples(X: Array, labels: Array, *, metric: str = "euclidean") -> Array:
    """Silhouette coefficient of each sample.

    ``s = (b - a) / max(a, b)`` where ``a`` is the mean distance to the
    other members of the sample's cluster and ``b`` the mean distance to
    the members of the nearest other cluster; 0 for members of singleton
    clusters, as in scikit-learn.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Any array-API array (or anything ``numpy.asarray`` accepts).
    labels : array of shape (n_samples,)
        Cluster label of each sample: integers in X's namespace and device,
        or a list / numpy array of any labels. Between 2 and n_samples - 1
        distinct values.
    metric : {"euclidean", "cosine"}, default="euclidean"
        Distance between samples; "cosine" is ``1 - cos(x, y)``.

    Returns
    -------
    silhouette : array of shape (n_samples,)
        In X's namespace, device and floating dtype.
    """
    X, xp, device = check_array(X)
    _check_metric(metric)
    codes, n_labels = _encode_labels(labels, X, xp, device)
    _, _, (X, codes), back = host_views(xp, device, X, codes)
    return back(_silhouette_values(X, [codes], [n_labels], metric=metric)[0])


def silhouette_score(
    X: Array,
    labels: Array,
    *,
    metric: str = "euclidean",
    sample_size: int | None = None,
    random_state=None,
) -> Array:
    """Mean silhouette coefficient over all samples (or a random subset).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    labels : array of shape (n_samples,)
        See :func:`silhouette_samples`.
    metric : {"euclidean", "cosine"}, default="euclidean"
    sample_size : int, optional
        Score a random subset of this many samples: the cost is quadratic
        in the number of samples scored.
    random_state : None, int, numpy.random.RandomState or Generator
        Draws the subset. An int or RandomState draws the same subset as
        ``sklearn.metrics.silhouette_score`` with the same seed.

    Returns
    -------
    score : 0-d array
        In X's namespace, device and floating dtype; between -1 and 1,
        higher is better.
    """
    X, xp, device = check_array(X)
    _check_metric(metric)
    labels = _labels_as_array(labels, X, xp, device)
    if sample_size is not None:
        indices = _sample_indices(X.shape[0], sample_size, random_state)
        indices = to_device_array(indices, xp, dtype=index_dtype(xp, device), device=device)
        X = xp.take(X, indices, axis=0)
        labels = xp.take(labels, indices, axis=0)
    codes, n_labels = _encode_labels(labels, X, xp, device)
    _, _, (X, codes), back = host_views(xp, device, X, codes)
    values = _silhouette_values(X, [codes], [n_labels], metric=metric)[0]
    return _back_0d(back, array_namespace(values).mean(values))


def calinski_harabasz_score(X: Array, labels: Array) -> Array:
    """Calinski-Harabasz index (variance ratio criterion).

    The between-cluster dispersion over the within-cluster dispersion, each
    divided by its degrees of freedom; higher is better. 1 when every
    cluster is a single repeated point, as in scikit-learn.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    labels : array of shape (n_samples,)
        See :func:`silhouette_samples`.

    Returns
    -------
    score : 0-d array in X's namespace, device and floating dtype
    """
    return _cluster_scores_of(X, labels)[0]


def davies_bouldin_score(X: Array, labels: Array) -> Array:
    """Davies-Bouldin index: mean over clusters of the worst ratio of
    within-cluster spread to between-centroid distance; lower is better
    (0 is the minimum).

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
    labels : array of shape (n_samples,)
        See :func:`silhouette_samples`.

    Returns
    -------
    score : 0-d array in X's namespace, device and floating dtype
    """
    return _cluster_scores_of(X, labels)[1]


# --------------------------------------------------------------------------
# Validation helpers (also used by select_k).
# --------------------------------------------------------------------------


def _check_metric(metric) -> None:
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}.")


def _labels_as_array(labels, X, xp, device):
    """Labels as a 1-D array of X's length in X's namespace and device.

    Arrays must already be there (no hidden transfer); lists and numpy
    arrays of non-integer labels (strings) are encoded on the host first.
    """
    n_samples = X.shape[0]
    host_labels = not is_array_api_obj(labels) or (
        isinstance(labels, np.ndarray) and labels.dtype.kind not in "biu"
    )
    if host_labels:
        host = np.asarray(labels)
        if host.dtype.kind not in "biu":
            # Strings or other host labels: encode them here, on the host.
            host = np.unique(host.ravel(), return_inverse=True)[1].reshape(host.shape)
        out = xp.asarray(host.astype(np.int64), dtype=index_dtype(xp, device), device=device)
    else:
        check_same_namespace(labels, X, xp, device, "labels")
        if not _isdtype(xp, labels.dtype, ("integral", "bool")):
            raise TypeError(f"labels must be integers, got dtype {labels.dtype}.")
        out = labels
    if out.ndim != 1 or out.shape[0] != n_samples:
        raise ValueError(
            f"labels must have shape ({n_samples},) to match X, got {tuple(out.shape)}."
        )
    return out


def _encode_labels(labels, X, xp, device):
    """Labels as codes 0..n_labels-1 (int64) and the number of labels."""
    labels = _labels_as_array(labels, X, xp, device)
    values, codes = xp.unique_inverse(labels)
    n_labels = values.shape[0]
    n_samples = X.shape[0]
    if not 2 <= n_labels <= n_samples - 1:
        raise ValueError(
            f"Number of labels is {n_labels}. Valid values are 2 to n_samples - 1 "
            f"(inclusive) = {n_samples - 1}."
        )
    return xp.astype(codes, index_dtype(xp, device_of(codes))), n_labels


def _sample_indices(n_samples: int, sample_size, random_state) -> np.ndarray:
    """Host indices of a random subset, drawn as scikit-learn draws them."""
    if isinstance(sample_size, bool) or not isinstance(sample_size, (numbers.Integral, np.integer)):
        raise TypeError(f"sample_size must be an int or None, got {sample_size!r}.")
    if sample_size < 2:
        raise ValueError(f"sample_size must be >= 2, got {sample_size}.")
    if isinstance(random_state, np.random.Generator):
        permutation = random_state.permutation(n_samples)
    elif random_state is None or isinstance(random_state, (numbers.Integral, np.integer)):
        permutation = np.random.RandomState(random_state).permutation(n_samples)
    elif isinstance(random_state, np.random.RandomState):
        permutation = random_state.permutation(n_samples)
    else:
        raise TypeError(
            "random_state must be None, an int, a RandomState or a Generator; "
            f"got {type(random_state).__name__}."
        )
    return permutation[: int(sample_size)]


# --------------------------------------------------------------------------
# Generic implementations: trusted inputs, any namespace, any device.
# --------------------------------------------------------------------------


def _runner(X, shift, xp, width: int):
    """A block runner over X whose (rows x width) work arrays fit the
    kernels' memory budget, and the kernels."""
    problem = make_problem(X, None, xp, device_of(X), width, shift=shift)
    return problem.runner, problem.kernels


def _segment_sums(runner, kernels, values_of, codes, n_labels: int, width: int):
    """Per-cluster sums of ``values_of(Xb, start, stop)`` (rows x width)
    and per-cluster counts, over all blocks of ``runner``."""
    xp = runner.xp
    dtype, device = runner.X.dtype, device_of(runner.X)

    def step(Xb, start, stop, acc):
        sums, counts = acc
        values = values_of(Xb, start, stop)
        return kernels.accumulate(values, codes[start:stop], None, sums, counts), None

    def make_acc():
        return (
            xp.zeros((n_labels, width), dtype=dtype, device=device),
            xp.zeros((n_labels,), dtype=dtype, device=device),
        )

    accs, _ = runner.map(step, make_acc)
    sums = sum((a[0] for a in accs[1:]), accs[0][0])
    counts = sum((a[1] for a in accs[1:]), accs[0][1])
    return sums, counts


def _stats_pass(X, codes, n_labels: int, shift=None):
    """Cluster statistics for the Calinski-Harabasz and Davies-Bouldin
    scores: two block passes (cluster means; then each row's distance and
    squared distance to its mean). ``shift`` (the data mean, if known) is
    subtracted from every block for float32 accuracy.

    Returns a dict of 0-d / small arrays in X's namespace and device.
    """
    xp = array_namespace(X)
    n_samples, n_features = X.shape
    if shift is None:
        shift = xp.mean(X, axis=0)
    runner, kernels = _runner(X, shift, xp, max(n_labels, 2))
    sums, counts = _segment_sums(
        runner, kernels, lambda Xb, start, stop: Xb, codes, n_labels, n_features
    )
    centroids = sums / counts[:, None]  # every code occurs: counts >= 1

    def distances(Xb, start, stop):
        diff = Xb - xp.take(centroids, codes[start:stop], axis=0)
        d2 = xp.sum(diff * diff, axis=1)
        return xp.stack([xp.sqrt(d2), d2], axis=1)

    dist_sums, _ = _segment_sums(runner, kernels, distances, codes, n_labels, 2)
    return {
        "xp": xp,
        "n_samples": n_samples,
        "counts": counts,
        "centroids": centroids,
        "mean": xp.sum(sums, axis=0) / n_samples,
        "distance_sums": dist_sums[:, 0],
        "squared_distance_sums": dist_sums[:, 1],
    }


def _cluster_scores_of(X, labels):
    """Validate X and labels; their (Calinski-Harabasz, Davies-Bouldin)."""
    X, xp, device = check_array(X)
    codes, n_labels = _encode_labels(labels, X, xp, device)
    _, _, (X, codes), back = host_views(xp, device, X, codes)
    return [_back_0d(back, score) for score in _cluster_scores(_stats_pass(X, codes, n_labels))]


def _back_0d(back, value):
    """A 0-d result brought back by ``back`` (which takes arrays, where
    numpy's reductions give scalars)."""
    run_xp = array_namespace(value)
    return back(run_xp.reshape(run_xp.asarray(value), (1,)))[0]


def _cluster_scores(stats):
    """``(calinski_harabasz, davies_bouldin)`` as 0-d arrays from the
    statistics of :func:`_stats_pass`."""
    xp = stats["xp"]
    counts, centroids = stats["counts"], stats["centroids"]
    n_samples, n_labels = stats["n_samples"], counts.shape[0]

    # Calinski-Harabasz: scikit-learn returns 1.0 when intra_disp is 0.
    offsets = centroids - stats["mean"]
    extra_disp = xp.sum(counts * xp.sum(offsets * offsets, axis=1))
    intra_disp = xp.sum(stats["squared_distance_sums"])
    has_spread = intra_disp != 0
    safe_intra = xp.where(has_spread, intra_disp, xp.ones_like(intra_disp))
    ratio = extra_disp * (n_samples - n_labels) / (safe_intra * (n_labels - 1.0))
    calinski_harabasz = xp.where(has_spread, ratio, xp.ones_like(ratio))

    # Davies-Bouldin: centroid distances as scikit-learn's pairwise
    # distances compute them (Gram trick, zero diagonal).
    intra_dists = stats["distance_sums"] / counts
    sq = xp.sum(centroids * centroids, axis=1)
    d2 = xp.clip(sq[:, None] - 2 * (centroids @ centroids.T) + sq[None, :], min=0)
    ids = xp.arange(n_labels, device=device_of(centroids))
    diagonal = ids[:, None] == ids[None, :]
    centroid_dists = xp.where(diagonal, xp.zeros_like(d2), xp.sqrt(d2))
    combined = intra_dists[:, None] + intra_dists[None, :]
    # A zero distance counts as infinite (scikit-learn): the ratio is 0.
    apart = centroid_dists != 0
    ratios = xp.where(
        apart, combined / xp.where(apart, centroid_dists, xp.ones_like(d2)), xp.zeros_like(d2)
    )
    scores = xp.mean(xp.max(ratios, axis=1))
    # np.allclose(a, 0) is all(|a| <= 1e-8): scikit-learn then returns 0.
    degenerate = xp.all(xp.abs(intra_dists) <= 1e-8) | xp.all(xp.abs(centroid_dists) <= 1e-8)
    davies_bouldin = xp.where(degenerate, xp.zeros_like(scores), scores)
    return calinski_harabasz, davies_bouldin


def _cluster_counts(X, codes, n_labels: int, xp):
    """Members of each cluster, in X's floating dtype, by block passes."""
    runner, kernels = _runner(X, 0.0, xp, n_labels)
    return _segment_sums(
        runner, kernels, lambda Xb, start, stop: Xb[:, :1], codes, n_labels, 1
    )[1]


def _tile_size(X, xp) -> int:
    """Side of the square (rows x columns) distance tiles of the silhouette."""
    kernels = get_kernels(xp, device_of(X))
    itemsize = xp.finfo(X.dtype).bits // 8
    # At least 4 MiB per tile: fewer Python-level steps on CPU backends.
    elements = max(kernels.block_bytes, 1 << 22) // itemsize
    return max(16, min(X.shape[0], math.isqrt(elements)))


def _silhouette_values(X, codes_list, n_labels_list, *, metric: str):
    """Silhouette of every sample under several labelings at once.

    The pairwise distances do not depend on the labels, so each tile of
    distances is computed once and added into the per-cluster sums of every
    labeling (``select_k`` scores all its k values in this one pass).

    Returns a list of arrays of shape (n_samples,), one per labeling.
    """
    xp = array_namespace(X)
    device = device_of(X)
    n_samples, n_features = X.shape
    if metric == "cosine":
        norms = xp.sqrt(xp.sum(X * X, axis=1))
        # Zero rows stay zero (similarity 0, distance 1), as in scikit-learn.
        Y = X / xp.where(norms > 0, norms, xp.ones_like(norms))[:, None]
        sq = None
    else:
        # Distances are translation invariant; centring keeps float32 exact.
        Y = X - xp.mean(X, axis=0)
        sq = xp.sum(Y * Y, axis=1)
    kernels = get_kernels(xp, device)
    tile = _tile_size(X, xp)
    counts_list = [
        _cluster_counts(Y, codes, n_labels, xp)
        for codes, n_labels in zip(codes_list, n_labels_list)
    ]

    offsets = [sum(n_labels_list[:i]) for i in range(len(n_labels_list) + 1)]
    ids = [
        xp.arange(n_labels, dtype=codes_list[0].dtype, device=device)
        for n_labels in n_labels_list
    ]

    by_matmul = offsets[-1] <= _MATMUL_MAX_LABELS

    def onehot(col, col_end):
        # Every labeling's one-hot columns side by side: a (columns x
        # sum of n_labels) tile, so one matmul per distance tile adds the
        # distances into the per-cluster sums of all labelings at once.
        parts = [
            xp.astype(codes[col:col_end, None] == cluster_ids[None, :], Y.dtype)
            for codes, cluster_ids in zip(codes_list, ids)
        ]
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)

    def step(Yb, start, stop, acc):
        sums = xp.zeros((stop - start, offsets[-1]), dtype=Y.dtype, device=device)
        rows = xp.arange(start, stop, device=device)
        for col in range(0, n_samples, tile):
            col_end = min(col + tile, n_samples)
            gram = Yb @ Y[col:col_end, :].T
            if sq is None:
                D = xp.clip(1 - gram, min=0, max=2)
            else:
                d2 = sq[start:stop, None] - 2 * gram + sq[None, col:col_end]
                D = xp.sqrt(xp.clip(d2, min=0))
            if col < stop and start < col_end:
                # The self-distance is 0; the Gram trick leaves round-off.
                cols = xp.arange(col, col_end, device=device)
                D = xp.where(rows[:, None] == cols[None, :], xp.zeros_like(D), D)
            if by_matmul:
                sums = sums + D @ onehot(col, col_end)
            else:
                sums = _accumulate_columns(D, col, col_end, sums)
        values = [
            _silhouette_from_sums(
                sums[:, offsets[i] : offsets[i + 1]].T, codes[start:stop], counts, xp
            )
            for i, (codes, counts) in enumerate(zip(codes_list, counts_list))
        ]
        return acc, values

    def _accumulate_columns(D, col, col_end, sums):
        # Many clusters: a one-hot matmul would cost rows x columns x
        # clusters, so use the segment-sum kernel, linear in the tile.
        DT = D.T
        parts = []
        for i, codes in enumerate(codes_list):
            part = xp.astype(sums[:, offsets[i] : offsets[i + 1]].T, Y.dtype, copy=True)
            scratch = xp.zeros((n_labels_list[i],), dtype=Y.dtype, device=device)
            part, _ = kernels.accumulate(DT, codes[col:col_end], None, part, scratch)
            parts.append(part.T)
        return parts[0] if len(parts) == 1 else xp.concat(parts, axis=1)

    runner = make_problem(Y, None, xp, device, tile, shift=0.0, rows=tile).runner
    _, outs = runner.map(step)
    return [
        outs[0][i] if len(outs) == 1 else xp.concat([out[i] for out in outs])
        for i in range(len(codes_list))
    ]


def _silhouette_from_sums(sums, codes, counts, xp):
    """Silhouettes of a block of rows from their summed distances to each
    cluster: ``sums`` (n_labels x n_rows), ``codes`` (n_rows,)."""
    n_labels = sums.shape[0]
    ids = xp.arange(n_labels, dtype=codes.dtype, device=device_of(sums))
    own = ids[:, None] == codes[None, :]
    own_count = xp.take(counts, codes)
    lonely = own_count <= 1
    a = xp.sum(xp.where(own, sums, xp.zeros_like(sums)), axis=0) / xp.where(
        lonely, xp.ones_like(own_count), own_count - 1
    )
    mean_dist = sums / counts[:, None]
    b = xp.min(xp.where(own, xp.full_like(sums, xp.inf), mean_dist), axis=0)
    denom = xp.maximum(a, b)
    # Singletons and a == b == 0 score 0 (scikit-learn's nan_to_num).
    valid = ~lonely & (denom > 0)
    s = (b - a) / xp.where(valid, denom, xp.ones_like(denom))
    return xp.where(valid, s, xp.zeros_like(s))
