"""Small synthetic data sets, generated on the host and delivered anywhere.

Samples are drawn with a host ``numpy.random.Generator`` (so a seed gives
the same data on every backend) and converted once, at the end, to the
namespace, device and dtype the caller asks for.

>>> from kmeans_xp.datasets import make_blobs
>>> X, y = make_blobs(n_samples=6, centers=[[0.0, 0.0], [10.0, 10.0]],
...                   cluster_std=0.1, random_state=0)
>>> X.shape, sorted(y.tolist())
((6, 2), [0, 0, 0, 1, 1, 1])
"""

from __future__ import annotations

import numbers

import numpy as np

from ._validation import check_random_state

__all__ = ["make_blobs", "demo_blobs"]


def make_blobs(
    n_samples=100,
    n_features: int = 2,
    *,
    centers=None,
    cluster_std=1.0,
    center_box: tuple[float, float] = (-10.0, 10.0),
    shuffle: bool = True,
    random_state=None,
    return_centers: bool = False,
    xp=None,
    device=None,
    dtype=None,
):
    """Isotropic Gaussian blobs, as ``sklearn.datasets.make_blobs``.

    Parameters
    ----------
    n_samples : int or sequence of int, default=100
        Total number of points, split as evenly as possible between the
        blobs; or the number of points of each blob.
    n_features : int, default=2
        Number of features (ignored when ``centers`` is an array).
    centers : int or array of shape (n_centers, n_features), optional
        Number of blobs (default 3, or ``len(n_samples)``), or their centres.
        Drawn centres are uniform in ``center_box``.
    cluster_std : float or sequence of float, default=1.0
        Standard deviation of each blob.
    center_box : (float, float), default=(-10.0, 10.0)
        Bounds of the drawn centres.
    shuffle : bool, default=True
        Shuffle the rows (otherwise blob 0 comes first, then blob 1, ...).
    random_state : None, int or numpy.random.Generator
        Seed of the host generator.
    return_centers : bool, default=False
        Also return the centres.
    xp : array namespace, optional
        Where the arrays go (``numpy``, ``torch``, ``cupy``,
        ``array_api_strict``, ...); numpy when omitted.
    device : optional
        Device in ``xp`` (e.g. ``"cuda"`` for torch); the default device
        when omitted.
    dtype : dtype of ``xp`` or str, optional
        Floating dtype of ``X`` (e.g. ``"float32"``); float64 when omitted.

    Returns
    -------
    X : array of shape (n_samples, n_features)
    y : int64 array of shape (n_samples,)
        Blob index of each row.
    centers : array of shape (n_centers, n_features)
        Only when ``return_centers`` is True.
    """
    rng = check_random_state(random_state)
    counts, centers_np = _blob_layout(n_samples, n_features, centers, center_box, rng)
    stds = np.broadcast_to(np.asarray(cluster_std, dtype=np.float64), (len(counts),))
    if np.any(stds < 0) or not np.all(np.isfinite(stds)):
        raise ValueError(f"cluster_std must be finite and >= 0, got {cluster_std!r}.")
    parts = [
        center + std * rng.standard_normal((count, centers_np.shape[1]))
        for center, std, count in zip(centers_np, stds, counts)
    ]
    X = np.concatenate(parts)
    y = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    if shuffle:
        order = rng.permutation(X.shape[0])
        X, y = X[order], y[order]
    out = (_deliver(X, xp, device, dtype), _deliver(y, xp, device, "int64"))
    if return_centers:
        out += (_deliver(centers_np, xp, device, dtype),)
    return out


def demo_blobs(*, xp=None, device=None, dtype=None, n_samples: int = 20_000):
    """The data set of ``kmeans-xp demo``: 6 well separated 2-D blobs.

    Returns ``(X, y)`` as :func:`make_blobs` does; the same every time.
    """
    angles = np.linspace(0.0, 2.0 * np.pi, 6, endpoint=False)
    centers = np.stack([8.0 * np.cos(angles), 8.0 * np.sin(angles)], axis=1)
    return make_blobs(
        n_samples=n_samples,
        centers=centers,
        cluster_std=[0.8, 1.0, 1.2, 0.9, 1.1, 1.3],
        random_state=2024,
        xp=xp,
        device=device,
        dtype=dtype,
    )


def _blob_layout(n_samples, n_features, centers, center_box, rng):
    """Points per blob and the blob centres (host arrays)."""
    if isinstance(n_samples, (numbers.Integral, np.integer)) and not isinstance(n_samples, bool):
        if n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}.")
        per_blob = None
    else:
        per_blob = [int(c) for c in n_samples]
        if not per_blob or min(per_blob) < 0:
            raise ValueError(f"n_samples must be positive counts, got {n_samples!r}.")
    if centers is None:
        centers = 3 if per_blob is None else len(per_blob)
    if isinstance(centers, (numbers.Integral, np.integer)) and not isinstance(centers, bool):
        if centers < 1:
            raise ValueError(f"centers must be >= 1, got {centers}.")
        if n_features < 1:
            raise ValueError(f"n_features must be >= 1, got {n_features}.")
        low, high = center_box
        centers_np = rng.uniform(low, high, size=(int(centers), int(n_features)))
    else:
        centers_np = np.asarray(centers, dtype=np.float64)
        if centers_np.ndim != 2 or centers_np.shape[0] == 0:
            raise ValueError(
                f"centers must be an int or an array of shape (n_centers, n_features), "
                f"got shape {centers_np.shape}."
            )
    n_centers = centers_np.shape[0]
    if per_blob is None:
        counts = [n_samples // n_centers + (i < n_samples % n_centers) for i in range(n_centers)]
    elif len(per_blob) != n_centers:
        raise ValueError(
            f"n_samples gives {len(per_blob)} blob sizes but there are {n_centers} centers."
        )
    else:
        counts = per_blob
    return counts, centers_np


def _deliver(a: np.ndarray, xp, device, dtype):
    """Convert a host array to ``xp`` on ``device`` in ``dtype``."""
    if xp is None:
        return a if dtype is None else a.astype(np.dtype(dtype), copy=False)
    if dtype is None:
        dtype = "float64"
    if isinstance(dtype, str):
        dtype = getattr(xp, dtype)
    if device is None:
        return xp.asarray(a, dtype=dtype)
    return xp.asarray(a, dtype=dtype, device=device)
