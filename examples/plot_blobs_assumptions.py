"""
Where k-means works and where it does not
=========================================

The classic blobs tutorial, redone with kmeans_xp: four data sets of
Gaussian blobs, each breaking one assumption of k-means, then the fixes.
k-means looks for round clusters of similar spread, and it needs to be told
how many there are.
"""

import matplotlib.pyplot as plt
import numpy as np

from kmeans_xp import KMeans, select_k
from kmeans_xp.datasets import make_blobs

n_samples = 1500
CENTRES = [[-6.0, -3.0], [0.0, 5.0], [6.0, -2.0]]
X, y = make_blobs(n_samples, centers=CENTRES, random_state=170)

# Stretched clusters: the same blobs through a linear map.
X_aniso = X @ np.array([[0.61, -0.64], [-0.41, 0.85]])
# Clusters of different spread.
X_varied, y_varied = make_blobs(n_samples, centers=CENTRES, cluster_std=[1.0, 2.5, 0.5],
                                random_state=170)
# Clusters of very different sizes: 500, 100 and 10 points.
X_uneven = np.concatenate([X[y == 0][:500], X[y == 1][:100], X[y == 2][:10]])

cases = [
    ("wrong number of clusters (k=2)", X, 2),
    ("stretched clusters", X_aniso, 3),
    ("different spreads", X_varied, 3),
    ("different sizes", X_uneven, 3),
]


def draw(cases, title):
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), layout="constrained")
    for ax, (name, data, k) in zip(axes.flat, cases):
        labels = KMeans(n_clusters=k, n_init=3, random_state=0).fit_predict(data)
        ax.scatter(data[:, 0], data[:, 1], c=labels, s=6, cmap="viridis")
        ax.set_title(name)
    fig.suptitle(title)
    plt.show()


# %%
# k-means on each data set
# ------------------------
draw(cases, "k-means with its assumptions broken")

# %%
# The fixes
# ---------
# Choose k from the data rather than guessing it; use more runs
# (``n_init``) so that an unlucky start does not split a big cluster; and
# for stretched clusters, whiten the data first (here with the inverse of
# the known linear map; in practice a PCA whitening or a Gaussian mixture).
chosen = select_k(X, range(2, 7), random_state=0)
print("select_k chooses k =", chosen.best_k)
X_whitened = X_aniso @ np.linalg.inv(np.array([[0.61, -0.64], [-0.41, 0.85]]))
draw(
    [
        (f"k chosen by select_k (k={chosen.best_k})", X, chosen.best_k),
        ("stretched clusters, whitened first", X_whitened, 3),
        ("different spreads (k-means copes)", X_varied, 3),
        ("different sizes (k-means copes)", X_uneven, 3),
    ],
    "after the fixes",
)
