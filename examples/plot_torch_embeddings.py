"""
PyTorch tensors and embeddings
==============================

kmeans_xp takes PyTorch tensors as they are: the fit runs in torch (on the
tensor's device), and the centres and labels come back as tensors of the
same device and dtype. Here the "embeddings" are synthetic float32 vectors
on the CPU; with a GPU, create them with ``device="cuda"`` and nothing else
changes.

For embeddings the angle matters more than the length, so this example
also uses ``metric="cosine"`` (spherical k-means).
"""

import matplotlib.pyplot as plt
import numpy as np
import torch

from kmeans_xp import KMeans
from kmeans_xp.metrics import silhouette_score

# %%
# 3,000 unit-length directions in 64 dimensions around 6 topics, with
# lengths that vary a lot (as raw embedding norms do).
generator = torch.Generator().manual_seed(0)
topics = torch.nn.functional.normalize(torch.randn(6, 64, generator=generator), dim=1)
topic_of = torch.randint(0, 6, (3000,), generator=generator)
emb = topics[topic_of] + 0.08 * torch.randn(3000, 64, generator=generator)
emb = emb * torch.empty(3000, 1).uniform_(0.5, 20.0, generator=generator)
print(emb.shape, emb.dtype, emb.device)

# %%
# Euclidean k-means is misled by the lengths; cosine k-means is not.
euclidean = KMeans(n_clusters=6, random_state=0).fit(emb)
cosine = KMeans(n_clusters=6, metric="cosine", random_state=0).fit(emb)
print(type(cosine.cluster_centers_), cosine.cluster_centers_.dtype,
      cosine.cluster_centers_.device)


def purity(labels, truth):
    """Share of points whose cluster's most common topic is their own."""
    table = torch.zeros(6, 6, dtype=torch.int64)
    table.index_put_((labels, truth), torch.ones_like(labels), accumulate=True)
    return float(table.max(dim=1).values.sum()) / len(truth)


for name, model in [("euclidean", euclidean), ("cosine", cosine)]:
    score = float(silhouette_score(emb, model.labels_, metric="cosine"))
    print(f"{name:9s} purity {purity(model.labels_, topic_of):.3f}  "
          f"cosine silhouette {score:.3f}")

# %%
# The cosine centres have unit norm; ``predict`` returns an int64 tensor.
print(torch.linalg.vector_norm(cosine.cluster_centers_, dim=1))
print(cosine.predict(emb[:8]))

# %%
# Cluster sizes of the two fits against the true topic sizes, largest first:
# euclidean k-means lumps the short vectors of several topics together.
sizes = np.stack([
    np.sort(np.bincount(topic_of.numpy(), minlength=6))[::-1],
    np.sort(np.bincount(euclidean.labels_.numpy(), minlength=6))[::-1],
    np.sort(np.bincount(cosine.labels_.numpy(), minlength=6))[::-1],
])
fig, ax = plt.subplots(layout="constrained")
width = 0.27
for i, name in enumerate(["true topics", "euclidean", "cosine"]):
    ax.bar(np.arange(6) + (i - 1) * width, sizes[i], width, label=name)
ax.set_xlabel("cluster (sorted by size)")
ax.set_ylabel("points")
ax.legend()
plt.show()
