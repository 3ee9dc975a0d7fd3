"""
Quick start with numpy
======================

Fit :class:`kmeans_xp.KMeans` to a numpy array exactly as you would fit
scikit-learn's, then look at the result.
"""

import matplotlib.pyplot as plt
import numpy as np

from kmeans_xp import KMeans
from kmeans_xp.datasets import make_blobs
from kmeans_xp.plot import plot_clusters

# %%
# Data: 2,000 points around five centres.
X, y_true = make_blobs(2000, centers=5, cluster_std=1.2, random_state=0)
print(X.shape, X.dtype)

# %%
# Fit. ``n_init="auto"`` runs k-means++ once; ``random_state`` fixes the seed.
km = KMeans(n_clusters=5, random_state=0).fit(X)
print("inertia:", km.inertia_)
print("iterations:", km.n_iter_)
print("cluster sizes:", np.bincount(km.labels_))

# %%
# The fitted attributes are numpy arrays, because ``X`` was one.
print(type(km.cluster_centers_), km.cluster_centers_.shape, km.labels_.dtype)

# %%
# ``predict`` assigns new points to the nearest centre and ``transform``
# gives the distance to every centre.
new_points = np.array([[0.0, 0.0], [5.0, -5.0]])
print(km.predict(new_points))
print(km.transform(new_points).round(2))

# %%
# Draw the clusters with :func:`kmeans_xp.plot.plot_clusters`.
plot_clusters(X, km.labels_, km.cluster_centers_, title="k-means, k=5")
plt.show()
