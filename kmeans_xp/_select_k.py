"""Choosing the number of clusters: fit each k, score it, pick one.

``select_k`` fits ``KMeans`` for every k of a range on the data's own
backend and device, records the inertia, the three cluster metrics of
:mod:`kmeans_xp.metrics` and the fit time of each k, and chooses ``best_k``
by one criterion. What does not depend on k is done once: X and the
weights are validated once, the data mean (the shift of the metric passes)
is computed once, and the silhouette of every k comes from a single pass
over pairwise distances of one shared sample (the distances do not depend
on the labels, only the per-cluster sums do).
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from ._array_api import Array, as_host_scalar, device_of, index_dtype, to_device_array
from ._fit import data_stats
from ._kmeans import KMeans
from ._validation import (
    check_array,
    check_params,
    check_random_state,
    check_sample_weight,
    unit_rows,
)
from .exceptions import InvalidParameterError
from .metrics import (
    _check_metric,
    _cluster_scores,
    _sample_indices,
    _silhouette_values,
    _stats_pass,
)

__all__ = ["SelectKResult", "select_k"]

CRITERIA = ("silhouette", "calinski_harabasz", "davies_bouldin", "elbow")
#: Samples scored by the silhouette when ``sample_size="auto"``.
AUTO_SILHOUETTE_SAMPLES = 10_000


@dataclass
class SelectKResult:
    """Per-k scores of :func:`select_k` and the chosen k.

    Every list is aligned with ``k_values``. Scores that could not be
    computed (a sample with a single cluster) are NaN.

    Attributes
    ----------
    k_values : list of int
    inertia : list of float
        Weighted sum of squared distances to the closest centre.
    silhouette : list of float
        Mean silhouette (higher is better); on a random sample of
        ``silhouette_sample_size`` rows when that is smaller than n_samples.
    calinski_harabasz : list of float
        Higher is better.
    davies_bouldin : list of float
        Lower is better.
    fit_time : list of float
        Seconds spent in ``KMeans.fit`` for each k.
    n_iter : list of int
        Lloyd iterations of the best initialisation of each k.
    criterion : str
        The criterion ``best_k`` was chosen by.
    best_k : int
    best_model : KMeans
        The fitted model of ``best_k``.
    silhouette_sample_size : int
    """

    k_values: list[int]
    inertia: list[float]
    silhouette: list[float]
    calinski_harabasz: list[float]
    davies_bouldin: list[float]
    fit_time: list[float]
    n_iter: list[int]
    criterion: str
    best_k: int
    best_model: KMeans = field(repr=False)
    silhouette_sample_size: int = 0

    @property
    def scores(self) -> list[float]:
        """The values ``best_k`` was chosen from (inertia for "elbow")."""
        return list(getattr(self, "inertia" if self.criterion == "elbow" else self.criterion))

    def rows(self) -> list[dict]:
        """One dict per k: k, inertia, the metrics, fit_time, n_iter."""
        names = (
            "inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "fit_time", "n_iter",
        )
        return [
            {"k": k, **{name: getattr(self, name)[i] for name in names}}
            for i, k in enumerate(self.k_values)
        ]

    def to_table(self) -> str:
        """A plain-text table, one line per k, the chosen k marked with ``*``."""
        header = (
            f"{'k':>4} {'inertia':>14} {'silhouette':>11} {'calinski_h':>12} "
            f"{'davies_b':>9} {'time_s':>8}"
        )
        lines = [header]
        for row in self.rows():
            mark = "*" if row["k"] == self.best_k else " "
            lines.append(
                f"{row['k']:>3}{mark} {row['inertia']:>14.6g} {row['silhouette']:>11.4f} "
                f"{row['calinski_harabasz']:>12.5g} {row['davies_bouldin']:>9.4f} "
                f"{row['fit_time']:>8.3f}"
            )
        return "\n".join(lines)


def select_k(
    X: Array,
    k_range=range(2, 11),
    *,
    criterion: str = "silhouette",
    n_init="auto",
    max_iter: int = 300,
    tol: float = 1e-4,
    random_state=None,
    sample_weight: Array | None = None,
    sample_size="auto",
    metric: str = "euclidean",
    callback=None,
) -> SelectKResult:
    """Fit k-means for each k in ``k_range`` and choose the best k.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Any array-API array (numpy, torch, cupy, ...); all fits and scores
        run on its device.
    k_range : iterable of int, default=range(2, 11)
        Candidate numbers of clusters, each between 2 and n_samples - 1.
    criterion : {"silhouette", "calinski_harabasz", "davies_bouldin", "elbow"}
        How ``best_k`` is chosen: the highest silhouette or Calinski-Harabasz
        score, the lowest Davies-Bouldin score, or the knee of the inertia
        curve found by the Kneedle rule (see Notes).
    n_init, max_iter, tol :
        Passed to :class:`~kmeans_xp.KMeans`.
    random_state : None, int or numpy.random.Generator
        Seeds every fit (each k's model gets an int seed drawn from it, in
        order, so ``best_model`` can be refitted on its own) and the
        silhouette sample.
    sample_weight : array of shape (n_samples,), optional
        Weights for the fits and the inertia. The metrics, as in
        scikit-learn, are unweighted.
    sample_size : "auto", int or None, default="auto"
        Rows the silhouette is computed on (its cost is quadratic in them):
        "auto" is all rows up to 10,000 and a random 10,000 above; None is
        all rows.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine" fits cosine (spherical) k-means, scores the silhouette with
        the cosine distance and the Calinski-Harabasz and Davies-Bouldin
        indices on the unit-normalised rows.
    callback : callable, optional
        Called as ``callback(k, record)`` after each fit, where ``record``
        holds the k's inertia, fit_time and n_iter (for progress bars).

    Returns
    -------
    SelectKResult

    Notes
    -----
    Elbow: the Kneedle rule (Satopaa et al. 2011) on ``log(inertia)``. k
    and log-inertia are both scaled to [0, 1] over the range; the knee is
    the k where the scaled curve lies farthest below the straight line from
    the first point to the last, i.e. the k maximising
    ``(1 - y_scaled) - k_scaled``. The log scale keeps a knee at 7 or 8
    clusters visible after the large drops of the first merges. With no
    point below the line (no knee), or fewer than 3 k values, the smallest
    k is chosen; a zero inertia falls back to the linear scale.

    Examples
    --------
    >>> from kmeans_xp import select_k
    >>> from kmeans_xp.datasets import make_blobs
    >>> X, _ = make_blobs(300, centers=[[0, 0], [9, 0], [0, 9]], random_state=0)
    >>> result = select_k(X, range(2, 7), random_state=0)
    >>> result.best_k
    3
    """
    if criterion not in CRITERIA:
        raise InvalidParameterError(f"criterion must be one of {CRITERIA}, got {criterion!r}.")
    _check_metric(metric)
    X_input = X
    X, xp, device = check_array(X)
    n_samples = X.shape[0]
    k_values = _check_k_range(k_range, n_samples)
    weights = check_sample_weight(sample_weight, X, xp, device)
    rng = check_random_state(random_state)
    kmeans_params = {"n_init": n_init, "max_iter": max_iter, "tol": tol, "metric": metric}
    check_params(n_clusters=k_values[0], init="k-means++", **kmeans_params)
    if sample_size == "auto":
        sample_size = AUTO_SILHOUETTE_SAMPLES if n_samples > AUTO_SILHOUETTE_SAMPLES else None
    if sample_size is not None and sample_size >= n_samples:
        sample_size = None
    sample = None
    if sample_size is not None:
        host_indices = np.sort(_sample_indices(n_samples, sample_size, rng))
        sample = to_device_array(host_indices, xp, dtype=index_dtype(xp, device), device=device)

    # Shared by every k: the rows that are clustered and scored (unit rows
    # for cosine, the space cosine k-means works in), their mean (which also
    # shifts the blocks of the metric passes) and variance.
    X_fit = unit_rows(X, xp) if metric == "cosine" else X
    stats = data_stats(X_fit, xp, device, need_variance=tol > 0)
    shift = stats[0]
    models, records = {}, []
    for k in k_values:
        # An int seed per k, drawn in order: the model can be refitted alone.
        model = KMeans(n_clusters=k, random_state=int(rng.integers(2**32)), **kmeans_params)
        start = time.perf_counter()
        model._fit_checked(X_fit, X_input, weights, xp, device, data_stats=stats)
        fit_time = time.perf_counter() - start
        codes, n_labels = _codes(model.labels_, xp)
        ch, db = (float("nan"), float("nan"))
        if n_labels >= 2:
            stats_k = _stats_pass(X_fit, codes, n_labels, shift)
            ch, db = (as_host_scalar(s) for s in _cluster_scores(stats_k))
        record = {
            "inertia": float(model.inertia_),
            "fit_time": fit_time,
            "n_iter": int(model.n_iter_),
            "calinski_harabasz": ch,
            "davies_bouldin": db,
        }
        models[k] = model
        records.append(record)
        if callback is not None:
            callback(k, dict(record))

    silhouettes = _shared_silhouettes(X, [models[k].labels_ for k in k_values], sample, metric, xp)
    inertia = [r["inertia"] for r in records]
    result = SelectKResult(
        k_values=k_values,
        inertia=inertia,
        silhouette=silhouettes,
        calinski_harabasz=[r["calinski_harabasz"] for r in records],
        davies_bouldin=[r["davies_bouldin"] for r in records],
        fit_time=[r["fit_time"] for r in records],
        n_iter=[r["n_iter"] for r in records],
        criterion=criterion,
        best_k=k_values[0],
        best_model=None,
        silhouette_sample_size=n_samples if sample is None else int(sample.shape[0]),
    )
    result.best_k = _best_k(result)
    result.best_model = models[result.best_k]
    return result


def _check_k_range(k_range, n_samples: int) -> list[int]:
    try:
        values = list(k_range)
    except TypeError:
        raise InvalidParameterError(
            f"k_range must be an iterable of ints (e.g. range(2, 11)), got {k_range!r}."
        ) from None
    if not values:
        raise InvalidParameterError("k_range is empty; give at least one k.")
    for k in values:
        if isinstance(k, bool) or not isinstance(k, (numbers.Integral, np.integer)):
            raise InvalidParameterError(f"k_range must hold ints, got {k!r}.")
    values = sorted({int(k) for k in values})
    if values[0] < 2:
        raise InvalidParameterError(
            f"every k must be >= 2 (the metrics need two clusters), got {values[0]}."
        )
    if values[-1] > n_samples - 1:
        raise ValueError(
            f"k={values[-1]} is too large for {n_samples} samples: the metrics need "
            f"k <= n_samples - 1 = {n_samples - 1}."
        )
    return values


def _codes(labels, xp):
    """Labels as contiguous codes 0..n_labels-1 (empty clusters dropped)."""
    values, codes = xp.unique_inverse(labels)
    return xp.astype(codes, index_dtype(xp, device_of(codes))), values.shape[0]


def _shared_silhouettes(X, labels_list, sample, metric, xp) -> list[float]:
    """Mean silhouette of each labeling, from one pass over the pairwise
    distances of the (sampled) rows; NaN where a sample has one cluster."""
    if sample is not None:
        X = xp.take(X, sample, axis=0)
        labels_list = [xp.take(labels, sample, axis=0) for labels in labels_list]
    n_rows = X.shape[0]
    scored, codes_list, n_labels_list = [], [], []
    for i, labels in enumerate(labels_list):
        codes, n_labels = _codes(labels, xp)
        if 2 <= n_labels <= n_rows - 1:
            scored.append(i)
            codes_list.append(codes)
            n_labels_list.append(n_labels)
    out = [float("nan")] * len(labels_list)
    if scored:
        values = _silhouette_values(X, codes_list, n_labels_list, metric=metric)
        for i, v in zip(scored, values):
            out[i] = as_host_scalar(xp.mean(v))
    return out


def _kneedle(k_values: list[int], inertia: list[float]) -> int:
    """The knee of a decreasing inertia curve (see ``select_k`` Notes)."""
    x = np.asarray(k_values, dtype=np.float64)
    y = np.asarray(inertia, dtype=np.float64)
    if x.size < 3 or not np.all(np.isfinite(y)) or y.max() == y.min():
        return k_values[0]
    if y.min() > 0:
        # On a log scale the drop up to the true k dominates the curve
        # however many clusters there are; on a linear scale the first
        # merges hide the later knee (7 or 8 blobs in range(2, 11)).
        y = np.log(y)
    x_scaled = (x - x[0]) / (x[-1] - x[0])
    y_scaled = (y - y.min()) / (y.max() - y.min())
    gap = (1.0 - y_scaled) - x_scaled
    best = int(np.argmax(gap))
    return k_values[best] if gap[best] > 0 else k_values[0]


def _best_k(result: SelectKResult) -> int:
    if result.criterion == "elbow":
        return _kneedle(result.k_values, result.inertia)
    scores = np.asarray(result.scores, dtype=np.float64)
    if np.all(np.isnan(scores)):
        return result.k_values[0]
    best = np.nanargmin(scores) if result.criterion == "davies_bouldin" else np.nanargmax(scores)
    return result.k_values[int(best)]
