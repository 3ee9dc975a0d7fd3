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
    ("wrong number of clusters (k=2)", X, 2, 1),
    ("stretched clusters", X_aniso, 3, 1),
    ("different spreads", X_varied, 3, 1),
    ("different sizes", X_uneven, 3, 1),
]


def draw(cases, title):
    """One panel per (name, data, k, n_init), coloured by k-means labels."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 8), layout="constrained")
    for ax, (name, data, k, n_init) in zip(axes.flat, cases):
        labels = KMeans(n_clusters=k, n_init=n_init, random_state=0).fit_predict(data)
        ax.scatter(data[:, 0], data[:, 1], c=labels, s=6, cmap="viridis")
        ax.set_title(name)
    fig.suptitle(title)
    plt.show()


# %%
# k-means on each data set
# ------------------------
# One k-means++ run each. Wrong k merges two blobs; stretched clusters are
# cut across; the wide cluster of the third set loses a few points to its
# neighbours; and in the last set one unlucky start splits the big cluster
# in two while the two small ones share a centre.
draw(cases, "k-means with its assumptions broken")

# %%
# The fixes
# ---------
# Choose k from the data rather than guessing it; for stretched clusters,
# undo the stretch first (here with the inverse of the known linear map; in
# practice a whitening transform, or a Gaussian mixture model instead of
# k-means); and run k-means several times (``n_init=10``) so that the best
# of ten starts is kept. Clusters of different spreads stay a limit of
# k-means: it draws straight boundaries halfway between centres.
chosen = select_k(X, range(2, 7), random_state=0)
print("select_k chooses k =", chosen.best_k)
X_whitened = X_aniso @ np.linalg.inv(np.array([[0.61, -0.64], [-0.41, 0.85]]))
draw(
    [
        (f"k chosen by select_k (k={chosen.best_k})", X, chosen.best_k, 1),
        ("stretched clusters, stretch undone first", X_whitened, 3, 1),
        ("different spreads, n_init=10 (still a limit)", X_varied, 3, 10),
        ("different sizes, n_init=10", X_uneven, 3, 10),
    ],
    "after the fixes",
)
