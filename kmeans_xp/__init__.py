"""kmeans_xp: one k-means for numpy, PyTorch, CuPy and any array-API library.

>>> import numpy as np
>>> import kmeans_xp
>>> X = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
>>> kmeans_xp.KMeans(n_clusters=2, random_state=0).fit(X).inertia_
0.01
"""

from ._kmeans import KMeans, k_means, kmeans_plusplus
from .exceptions import ConvergenceWarning, NotFittedError

__all__ = ["KMeans", "k_means", "kmeans_plusplus", "ConvergenceWarning", "NotFittedError"]
__version__ = "0.1.0"
