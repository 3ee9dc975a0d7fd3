"""
Choosing the number of clusters
===============================

:func:`kmeans_xp.select_k` fits k-means for every k of a range, scores
each fit with the silhouette, Calinski-Harabasz and Davies-Bouldin
criteria (and the elbow of the inertia curve), and returns the best k and
its model. The plots show why that k was chosen.
"""

import matplotlib.pyplot as plt

from kmeans_xp import select_k
from kmeans_xp.datasets import make_blobs
from kmeans_xp.plot import plot_clusters, plot_elbow, plot_silhouette

X, _ = make_blobs(1500, centers=[[0, 0], [8, 0], [0, 8], [8, 8]], random_state=0)

# %%
# One call fits k = 2..8. The table has every criterion for every k.
result = select_k(X, range(2, 9), criterion="silhouette", random_state=0)
print(result.to_table())
print("best k:", result.best_k)

# %%
# Inertia falls with k; the silhouette (right axis) peaks at the best k.
plot_elbow(result)
plt.show()

# %%
# The elbow criterion picks the knee of the log-inertia curve instead.
elbow = select_k(X, range(2, 9), criterion="elbow", random_state=0)
print("elbow picks k =", elbow.best_k)

# %%
# The silhouette diagram of the chosen model: wide bands well above the
# mean line mean compact, well separated clusters.
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), layout="constrained")
plot_clusters(X, result.best_model.labels_, result.best_model.cluster_centers_, ax=left)
plot_silhouette(X, result.best_model.labels_, ax=right)
plt.show()
