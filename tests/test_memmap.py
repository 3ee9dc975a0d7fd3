"""Out-of-core fits on one machine: numpy memmaps are streamed, not loaded.

The peak memory test fits a 100 MB float64 memmap, far larger than the
row blocks the kernels and the finiteness check work in, and bounds the
peak memory numpy allocates (traced by tracemalloc; the memmap's own pages
are not allocations) by a fifth of the file.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from kmeans_xp import KMeans, MiniBatchKMeans

N_ROWS, N_FEATURES, N_CLUSTERS = 100_000, 128, 8


def _write_blobs(path, n_rows, n_features, dtype=np.float64, seed=0):
    """Write blobs to a raw file in slices (never whole in memory); return
    the true centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 10, (N_CLUSTERS, n_features))
    out = np.memmap(path, dtype=dtype, mode="w+", shape=(n_rows, n_features))
    for start in range(0, n_rows, 10_000):
        stop = min(start + 10_000, n_rows)
        labels = rng.integers(0, N_CLUSTERS, stop - start)
        out[start:stop] = centres[labels] + rng.normal(0, 1, (stop - start, n_features))
    out.flush()
    del out
    return centres


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("memmap") / "blobs.f64"
    centres = _write_blobs(path, N_ROWS, N_FEATURES)
    return path, centres


def _peak_bytes(fit):
    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Stated bound: a fifth of the file. What is traced is row blocks (a few
# MiB over the worker threads), the finiteness check's blocks and a few
# vectors of n_rows values (labels, k-means++ potentials); measured 15.9 MiB
# (KMeans) and 14.5 MiB (MiniBatchKMeans) for this 100 MB file.
FILE_BYTES = N_ROWS * N_FEATURES * 8
PEAK_BOUND = FILE_BYTES // 5


@pytest.mark.parametrize("estimator", ["KMeans", "MiniBatchKMeans"])
def test_memmap_fit_streams_under_memory_bound(big_file, estimator):
    path, centres = big_file
    X = np.memmap(path, dtype=np.float64, mode="r", shape=(N_ROWS, N_FEATURES))
    if estimator == "KMeans":
        model = KMeans(N_CLUSTERS, max_iter=10, random_state=0)
    else:
        model = MiniBatchKMeans(N_CLUSTERS, random_state=0)
    # Once-per-process costs first (with numba, importing it and loading or
    # compiling the fused kernel): not working memory of this fit.
    model.fit(np.asarray(X[:5000]))
    peak = _peak_bytes(lambda: model.fit(X))
    assert peak < PEAK_BOUND, f"peak {peak / 2**20:.1f} MiB for a {FILE_BYTES / 2**20:.0f} MiB file"
    # The fit is right: every true centre is found.
    distances = np.linalg.norm(model.cluster_centers_[:, None] - centres[None], axis=2)
    assert distances.min(axis=0).max() < 1.0
    assert model.labels_.shape == (N_ROWS,)


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_memmap_modes_give_the_in_memory_result(tmp_path, mode):
    path = tmp_path / "small.f64"
    _write_blobs(path, 2000, 4)
    X = np.memmap(path, dtype=np.float64, mode=mode, shape=(2000, 4))
    in_memory = np.array(X)
    for make in (
        lambda: KMeans(N_CLUSTERS, random_state=0),
        lambda: MiniBatchKMeans(N_CLUSTERS, batch_size=200, random_state=0),
    ):
        got, expected = make().fit(X), make().fit(in_memory)
        np.testing.assert_array_equal(got.cluster_centers_, expected.cluster_centers_)
        np.testing.assert_array_equal(got.labels_, expected.labels_)
        assert type(got.cluster_centers_) is np.ndarray  # not a memmap view
    np.testing.assert_array_equal(np.asarray(X), in_memory)  # never modified


def test_partial_fit_on_batches_read_from_a_file(tmp_path):
    """Stream a file through partial_fit, one slice of rows at a time; the
    held-out inertia is within 5% of a full KMeans fit."""
    path = tmp_path / "stream.f32"
    _write_blobs(path, 20_000, 8, dtype=np.float32, seed=1)
    X = np.memmap(path, dtype=np.float32, mode="r", shape=(20_000, 8))
    train, held_out = slice(0, 16_000), slice(16_000, 20_000)
    model = MiniBatchKMeans(N_CLUSTERS, random_state=0, compute_labels=False)
    for start in range(0, 16_000, 1000):
        model.partial_fit(X[start : start + 1000])
    assert model.cluster_centers_.dtype == np.float32
    full = KMeans(N_CLUSTERS, random_state=0, n_init=3).fit(X[train])
    assert -model.score(X[held_out]) <= 1.05 * -full.score(X[held_out])


def test_write_only_memmap_rejected(tmp_path):
    # mode="w+" creates or truncates the file: fitting it is a mistake.
    X = np.memmap(tmp_path / "new.f64", dtype=np.float64, mode="w+", shape=(100, 3))
    with pytest.raises(ValueError, match="mode='w\\+'"):
        MiniBatchKMeans(2).fit(X)
    with pytest.raises(ValueError, match="mode='w\\+'"):
        MiniBatchKMeans(2).partial_fit(X)
    with pytest.raises(ValueError, match="mode='w\\+'"):
        MiniBatchKMeans(2).partial_fit(X[:50])


@pytest.mark.filterwarnings("ignore::kmeans_xp.ConvergenceWarning")
def test_write_only_memmap_rejected_by_kmeans(tmp_path):
    X = np.memmap(tmp_path / "new.f64", dtype=np.float64, mode="w+", shape=(100, 3))
    with pytest.raises(ValueError, match="mode='w\\+'"):
        KMeans(2).fit(X)
