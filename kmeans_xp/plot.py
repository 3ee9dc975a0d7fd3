"""Plots of clusterings: scatter, elbow curve, silhouette diagram.

Needs matplotlib (``pip install 'kmeans_xp[plot]'``). Arrays from any
backend are accepted; the work that scales with the data (the PCA
projection, the silhouettes) runs on the data's device, and only what is
drawn (two coordinates per point) is copied to the host. Each function
returns the matplotlib ``Axes`` it drew on, as seaborn and pandas do; a
figure they create uses matplotlib's constrained layout, so labels are never
cut off when it is saved.
"""

from __future__ import annotations

import numpy as np

from ._array_api import is_array_api_obj, to_host
from ._validation import check_array
from .metrics import silhouette_samples

__all__ = ["plot_clusters", "plot_elbow", "plot_silhouette"]

_EXTRA_HINT = "pip install 'kmeans_xp[plot]'"


def _pyplot():
    """matplotlib.pyplot, or an ImportError that names the extra."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            f"kmeans_xp.plot needs matplotlib, which is not installed: {_EXTRA_HINT}"
        ) from exc
    return plt


def _axes(ax):
    if ax is not None:
        return ax
    # Constrained layout makes room for wide tick labels and a twin axis's
    # label, so a plain savefig() clips nothing.
    return _pyplot().subplots(figsize=(6.4, 4.8), layout="constrained")[1]


def _colors(n: int):
    """``n`` distinct colours: tab10, tab20, then a sampled colormap."""
    import matplotlib

    if n <= 10:
        return list(matplotlib.colormaps["tab10"].colors[:n])
    if n <= 20:
        return list(matplotlib.colormaps["tab20"].colors[:n])
    cmap = matplotlib.colormaps["turbo"]
    return [cmap(i / max(1, n - 1)) for i in range(n)]


def _host_labels(labels, n_samples: int) -> np.ndarray:
    labels = to_host(labels) if is_array_api_obj(labels) else np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n_samples:
        raise ValueError(
            f"labels must have shape ({n_samples},) to match X, got {labels.shape}."
        )
    return labels


def project_2d(X, centers=None):
    """Project X (and centres) to 2-D for drawing.

    Data with one or two features are drawn as they are; with more, onto
    the first two principal components, computed with the array API on
    X's device (the (n_features x n_features) covariance and its ``eigh``).

    Returns
    -------
    points : numpy array of shape (n_samples, 2)
    centers : numpy array of shape (n_clusters, 2) or None
    axis_labels : (str, str)
    """
    X, xp, device = check_array(X)
    n_samples, n_features = X.shape
    if centers is not None:
        if not is_array_api_obj(centers):
            centers = xp.asarray(np.asarray(centers, dtype=np.float64), device=device)
        centers = xp.astype(centers, X.dtype)
    if n_features <= 2:
        if n_features == 1:
            zeros = xp.zeros((n_samples, 1), dtype=X.dtype, device=device)
            X = xp.concat([X, zeros], axis=1)
            if centers is not None:
                centers = xp.concat(
                    [centers, xp.zeros((centers.shape[0], 1), dtype=X.dtype, device=device)],
                    axis=1,
                )
            names = ("feature 0", "")
        else:
            names = ("feature 0", "feature 1")
        return to_host(X), (None if centers is None else to_host(centers)), names
    mean = xp.mean(X, axis=0)
    centred = X - mean
    covariance = (centred.T @ centred) / max(1, n_samples - 1)
    eigenvalues, eigenvectors = xp.linalg.eigh(covariance)  # ascending order
    components = xp.stack(
        [eigenvectors[:, n_features - 1], eigenvectors[:, n_features - 2]], axis=1
    )
    # Fix the sign: the largest loading of each component is positive.
    biggest = xp.argmax(xp.abs(components), axis=0)
    signs = xp.sign(xp.stack([components[biggest[0], 0], components[biggest[1], 1]]))
    components = components * xp.where(signs == 0, xp.ones_like(signs), signs)
    total = float(xp.sum(eigenvalues))
    share = [
        float(eigenvalues[n_features - i]) / total if total > 0 else 0.0 for i in (1, 2)
    ]
    points = to_host(centred @ components)
    centers_2d = None if centers is None else to_host((centers - mean) @ components)
    names = (
        f"PC1 ({share[0]:.0%} of variance, PCA of {n_features} features)",
        f"PC2 ({share[1]:.0%} of variance)",
    )
    return points, centers_2d, names


def plot_clusters(X, labels, centers=None, ax=None, *, max_points: int | None = 100_000,
                  random_state=0, title: str | None = None):
    """Scatter plot of the samples coloured by cluster, centres marked.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Any backend. With more than 2 features the points are projected on
        their first two principal components (stated in the axis labels).
    labels : array of shape (n_samples,)
        Integer cluster labels 0..n_clusters-1 (e.g. ``KMeans.labels_``).
    centers : array of shape (n_clusters, n_features), optional
        Drawn as large crosses in their cluster's colour.
    ax : matplotlib Axes, optional
        Where to draw; a new figure when omitted.
    max_points : int or None, default=100_000
        Draw a random subset of at most this many points (the projection
        still uses all of them); None draws all.
    random_state : int, default=0
        Seeds that subset.
    title : str, optional

    Returns
    -------
    ax : matplotlib Axes
    """
    if ax is None:
        _pyplot()  # fail before any work when matplotlib is missing
    points, centers_2d, (xlabel, ylabel) = project_2d(X, centers)
    host_labels = _host_labels(labels, points.shape[0])
    n_clusters = int(host_labels.max()) + 1 if host_labels.size else 0
    if centers_2d is not None:
        n_clusters = max(n_clusters, centers_2d.shape[0])
    if max_points is not None and points.shape[0] > max_points:
        rng = np.random.default_rng(random_state)
        keep = rng.choice(points.shape[0], max_points, replace=False)
        points, host_labels = points[keep], host_labels[keep]
    ax = _axes(ax)
    colors = np.asarray(_colors(max(n_clusters, 1)))
    ax.scatter(points[:, 0], points[:, 1], c=colors[host_labels % len(colors)], s=6,
               alpha=0.6, linewidths=0)
    if centers_2d is not None:
        ax.scatter(centers_2d[:, 0], centers_2d[:, 1], c=colors[: centers_2d.shape[0]],
                   marker="X", s=180, edgecolors="black", linewidths=1.2, label="centres")
        ax.legend(loc="best", fontsize="small")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title if title is not None else f"k-means, {n_clusters} clusters")
    return ax


def plot_elbow(result, ax=None):
    """Inertia against k for a :func:`~kmeans_xp.select_k` result.

    The chosen ``best_k`` is marked; unless the criterion was "elbow", the
    criterion's score is drawn on a second y axis.

    Returns
    -------
    ax : matplotlib Axes (the inertia axis)
    """
    ax = _axes(ax)
    ks = list(result.k_values)
    ax.plot(ks, result.inertia, "o-", color="tab:blue", label="inertia")
    ax.set_xlabel("number of clusters k")
    ax.set_ylabel("inertia", color="tab:blue")
    ax.set_xticks(ks)
    ax.axvline(result.best_k, color="tab:red", linestyle="--", linewidth=1)
    if result.criterion != "elbow":
        twin = ax.twinx()
        twin.plot(ks, result.scores, "s--", color="tab:orange")
        better = "lower" if result.criterion == "davies_bouldin" else "higher"
        twin.set_ylabel(f"{result.criterion} ({better} is better)", color="tab:orange")
    ax.set_title(f"best k = {result.best_k} ({result.criterion})")
    return ax


def plot_silhouette(X, labels, ax=None, *, metric: str = "euclidean"):
    """The classic silhouette diagram: each cluster's sorted silhouettes as
    a horizontal band, the mean as a dashed line.

    Parameters
    ----------
    X : array of shape (n_samples, n_features)
        Any backend; the silhouettes are computed on its device (quadratic
        in n_samples: pass a sample of the rows for large data).
    labels : array of shape (n_samples,)
        E.g. ``select_k(X).best_model.labels_``.
    ax : matplotlib Axes, optional
    metric : {"euclidean", "cosine"}, default="euclidean"

    Returns
    -------
    ax : matplotlib Axes
    """
    if ax is None:
        _pyplot()  # fail before any work when matplotlib is missing
    values = to_host(silhouette_samples(X, labels, metric=metric))
    host_labels = _host_labels(labels, values.shape[0])
    clusters = np.unique(host_labels)
    ax = _axes(ax)
    colors = _colors(len(clusters))
    gap = max(2, values.shape[0] // 50)
    bottom = gap
    for color, cluster in zip(colors, clusters):
        members = np.sort(values[host_labels == cluster])
        top = bottom + members.shape[0]
        ax.fill_betweenx(np.arange(bottom, top), 0, members, facecolor=color,
                         edgecolor=color, alpha=0.8)
        ax.text(-0.05, (bottom + top) / 2, str(cluster), ha="right", va="center",
                fontsize="small")
        bottom = top + gap
    mean = float(values.mean())
    ax.axvline(mean, color="tab:red", linestyle="--", label=f"mean {mean:.3f}")
    ax.set_xlim(min(-0.1, float(values.min()) - 0.05), 1.0)
    ax.set_ylim(0, bottom)
    ax.set_yticks([])
    ax.set_xlabel("silhouette coefficient")
    ax.set_ylabel("cluster")
    ax.set_title(f"silhouette diagram, {len(clusters)} clusters")
    ax.legend(loc="lower right", fontsize="small")
    return ax
