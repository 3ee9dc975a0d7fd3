"""
Data larger than memory: Dask, memmaps and streams
==================================================

Three ways to fit k-means without holding the data in memory at once:

* a **Dask array**: ``KMeans.fit`` runs every Lloyd iteration chunk by
  chunk on the Dask workers, and only the centres travel;
* a **numpy memmap**: read in row blocks, never loaded whole;
* a **stream** of batches: ``MiniBatchKMeans.partial_fit``.

The data here are small so that the page builds quickly; the code is the
same for data of any size.
"""

import tempfile
from pathlib import Path

import dask
import dask.array as da
import matplotlib.pyplot as plt
import numpy as np

from kmeans_xp import KMeans, MiniBatchKMeans

centres = np.random.default_rng(1).normal(scale=8, size=(5, 4))

# %%
# Dask
# ----
# A lazy array of 40,000 rows in 4 chunks of whole rows. The threaded
# scheduler is enough here; on a cluster, create a
# ``dask.distributed.Client`` first and nothing else changes.
rng = da.random.default_rng(0)
which = rng.integers(0, 5, size=(40_000, 1), chunks=(10_000, 1))
X = rng.normal(size=(40_000, 4), chunks=(10_000, 4)) + (which == np.arange(5)) @ centres

with dask.config.set(scheduler="threads"):
    km = KMeans(n_clusters=5, random_state=0).fit(X)
    sizes = da.bincount(km.predict(X), minlength=5).compute()
print(type(km.cluster_centers_), km.cluster_centers_.shape, km.n_iter_)
print("cluster sizes:", sizes)

# %%
# A memmap
# --------
# Write the same data to a ``.npy`` file and open it as a read-only memmap:
# the fit reads it block by block.
folder = tempfile.TemporaryDirectory()
path = Path(folder.name) / "data.npy"
with dask.config.set(scheduler="threads"):
    np.save(path, X.compute())
on_disk = np.load(path, mmap_mode="r")
km_disk = KMeans(n_clusters=5, random_state=0).fit(on_disk)
print(type(on_disk).__name__, on_disk.shape, "inertia", round(km_disk.inertia_, 1))

# %%
# A stream of batches
# -------------------
# ``partial_fit`` updates the centres one batch at a time, for data that
# arrive in pieces (a DataLoader, a socket, slices of a file).
mbk = MiniBatchKMeans(n_clusters=5, random_state=0)
inertia_per_batch = []
for start in range(0, on_disk.shape[0], 2_000):
    batch = np.asarray(on_disk[start:start + 2_000])
    mbk.partial_fit(batch)
    inertia_per_batch.append(-mbk.score(batch) / batch.shape[0])

fig, ax = plt.subplots(layout="constrained")
ax.plot(inertia_per_batch, "o-")
ax.set_xlabel("batch")
ax.set_ylabel("mean squared distance to the centres")
ax.set_title("MiniBatchKMeans.partial_fit on a stream")
plt.show()
folder.cleanup()
