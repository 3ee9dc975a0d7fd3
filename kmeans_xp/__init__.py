"""kmeans_xp: one k-means for numpy, PyTorch, CuPy and any array-API library.

>>> import numpy as np
>>> import kmeans_xp
>>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
>>> round(kmeans_xp.KMeans(n_clusters=2, random_state=0).fit(X).inertia_, 6)
0.01
"""

import importlib

from ._kmeans import KMeans, k_means, kmeans_plusplus
from .exceptions import ConvergenceWarning, NotFittedError

__version__ = "0.1.0"

# Heavier parts load on first use, so `import kmeans_xp` stays light.
_LAZY = {
    "MiniBatchKMeans": "._minibatch",
    "BisectingKMeans": "._bisect",
    "select_k": "._select_k",
    "SelectKResult": "._select_k",
    "quantize_image": ".image",
    "metrics": ".metrics",
    "plot": ".plot",
    "datasets": ".datasets",
    "batched_k_means": ".batched",
    "ProductQuantizer": ".pq",
    "ProgressBar": "._progress",
}

__all__ = [
    "KMeans",
    "k_means",
    "kmeans_plusplus",
    "ConvergenceWarning",
    "NotFittedError",
    *_LAZY,
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'kmeans_xp' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name], __name__)
    value = module if _LAZY[name].lstrip(".") == name else getattr(module, name)
    globals()[name] = value
    return value
