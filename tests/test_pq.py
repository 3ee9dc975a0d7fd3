"""ProductQuantizer on every backend of the conftest fixture.

Oracles: the numpy run of the same quantiser, brute-force distances to the
decoded vectors, and faiss's ProductQuantizer (when installed).
"""

import numpy as np
import pytest

from kmeans_xp import NotFittedError, ProductQuantizer, batched_k_means
from kmeans_xp._testing import assert_array_like, to_numpy


def embeddings(n_samples=2000, n_features=16, *, seed=0):
    """Clustered, correlated vectors (float64): what PQ is used on."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
    centers = 3 * rng.normal(size=(40, n_features))
    return rng.normal(size=(n_samples, n_features)) @ mixing + centers[
        rng.integers(0, 40, n_samples)
    ]


def test_fit_encode_decode_in_the_input_namespace(xp, to_xp):
    X_np = embeddings()
    X = to_xp(X_np)
    pq = ProductQuantizer(4, n_bits=5, random_state=0).fit(X)
    assert_array_like(pq.codebooks_, X)
    assert tuple(pq.codebooks_.shape) == (4, 32, 4)
    codes = pq.encode(X)
    assert_array_like(codes, X, dtype=xp.uint8)
    assert tuple(codes.shape) == (2000, 4)
    assert int(xp.max(codes)) < 32
    decoded = pq.decode(codes)
    assert_array_like(decoded, X)
    assert tuple(decoded.shape) == X_np.shape
    # The squared error of decode(encode(X)) is the sum of the subspaces'
    # k-means inertias on the training data.
    error = np.sum((to_numpy(decoded) - X_np) ** 2)
    assert error == pytest.approx(float(np.sum(to_numpy(pq.inertia_))), rel=1e-9)
    assert error < 0.2 * np.sum((X_np - X_np.mean(axis=0)) ** 2)


def test_codebooks_are_batched_k_means_of_the_subvectors(xp, to_xp):
    X_np = embeddings(n_samples=500)
    pq = ProductQuantizer(2, n_bits=3, random_state=1, max_iter=50).fit(to_xp(X_np))
    sub = np.ascontiguousarray(X_np.reshape(500, 2, 8).transpose(1, 0, 2))
    centers, labels, _, _ = batched_k_means(sub, 8, random_state=1, max_iter=50)
    np.testing.assert_allclose(to_numpy(pq.codebooks_), centers, rtol=1e-10, atol=1e-10)
    # The codes are the k-means labels of the training data.
    np.testing.assert_array_equal(to_numpy(pq.encode(to_xp(X_np))), labels.T)


def test_same_codes_on_every_backend(xp, to_xp):
    X_np = embeddings(n_samples=600)
    ref = ProductQuantizer(4, n_bits=4, random_state=0).fit(X_np)
    pq = ProductQuantizer(4, n_bits=4, random_state=0).fit(to_xp(X_np))
    np.testing.assert_allclose(to_numpy(pq.codebooks_), ref.codebooks_, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(to_numpy(pq.encode(to_xp(X_np))), ref.encode(X_np))


@pytest.mark.parametrize("blocks", [False, True])
def test_search_returns_the_nearest_by_asymmetric_distance(xp, to_xp, monkeypatch, blocks):
    if blocks:
        import kmeans_xp.pq

        # A few database rows per block: the running top-k is merged.
        monkeypatch.setattr(kmeans_xp.pq, "_BLOCK_BYTES", 2048)
    X_np = embeddings(n_samples=800)
    queries_np = embeddings(n_samples=7, seed=3)
    pq = ProductQuantizer(4, n_bits=4, random_state=0).fit(to_xp(X_np))
    pq.add(to_xp(X_np[:300])).add(to_xp(X_np[300:]))
    assert tuple(pq.codes_.shape) == (800, 4)
    distances, indices = pq.search(to_xp(queries_np), 5)
    assert_array_like(distances, pq.codebooks_)
    assert_array_like(indices, pq.codebooks_, dtype=xp.int64)
    # Brute force: exact query against every decoded database vector.
    decoded = to_numpy(pq.decode(pq.codes_))
    d2 = ((queries_np[:, None, :] - decoded[None, :, :]) ** 2).sum(axis=2)
    expected = np.argsort(d2, axis=1, kind="stable")[:, :5]
    np.testing.assert_allclose(
        to_numpy(distances), np.take_along_axis(d2, expected, axis=1), rtol=1e-9, atol=1e-9
    )
    np.testing.assert_allclose(
        np.take_along_axis(d2, to_numpy(indices), axis=1),
        np.take_along_axis(d2, expected, axis=1),
        rtol=1e-9,
        atol=1e-9,
    )
    # Tables: per-subspace squared distances, summed over the codes.
    tables = to_numpy(pq.distance_tables(to_xp(queries_np)))
    assert tables.shape == (7, 4, 16)
    codes = to_numpy(pq.codes_).astype(np.int64)
    adc = tables[:, np.arange(4), codes].sum(axis=2)  # (7, 800)
    np.testing.assert_allclose(adc, d2, rtol=1e-9, atol=1e-9)


def test_search_given_codes_and_ties_keep_the_lower_row(xp, to_xp):
    X_np = embeddings(n_samples=300)
    pq = ProductQuantizer(4, n_bits=4, random_state=0).fit(to_xp(X_np))
    codes = pq.encode(to_xp(X_np[:10]))
    assert len({tuple(row) for row in to_numpy(codes).tolist()}) == 10
    duplicated = xp.concat([codes, codes])  # rows i and i + 10 tie
    distances, indices = pq.search(to_xp(X_np[:3]), 2, codes=duplicated)
    idx = to_numpy(indices)
    assert np.all(idx[:, 0] < 10) and np.all(idx[:, 1] == idx[:, 0] + 10)
    np.testing.assert_array_equal(to_numpy(distances)[:, 0], to_numpy(distances)[:, 1])


def test_reconstruction_error_within_one_percent_of_faiss():
    """faiss's ProductQuantizer and ours trained on the same data (float32,
    10k x 32, 8 subspaces of 6 bits; faiss trains on all of it): our mean
    squared reconstruction error of the training data is at most 1% above
    faiss's. (8 bits on 20k x 32 passes too, in 20 s: benchmarks/run.py.)"""
    faiss = pytest.importorskip("faiss")
    X = embeddings(n_samples=10_000, n_features=32, seed=1).astype(np.float32)
    theirs = faiss.ProductQuantizer(32, 8, 6)
    theirs.train(X)
    faiss_mse = np.mean((theirs.decode(theirs.compute_codes(X)) - X) ** 2)
    pq = ProductQuantizer(8, 6, random_state=0).fit(X)
    ours_mse = np.mean((pq.decode(pq.encode(X)) - X) ** 2)
    assert ours_mse <= 1.01 * faiss_mse, (ours_mse, faiss_mse)


def test_input_is_not_modified(xp, to_xp):
    X_np = embeddings(n_samples=300)
    X = to_xp(X_np)
    pq = ProductQuantizer(4, n_bits=3, random_state=0).fit(X)
    pq.add(X).search(X[:2, :], 3)
    np.testing.assert_array_equal(to_numpy(X), X_np)


@pytest.mark.parametrize(
    "params, X_shape, error, match",
    [
        ({"n_subspaces": 3}, (300, 16), ValueError, "must divide"),
        ({"n_subspaces": 0}, (300, 16), ValueError, "n_subspaces"),
        ({"n_bits": 9}, (300, 16), ValueError, "at most 8"),
        ({"n_bits": 0}, (300, 16), ValueError, "n_bits"),
        ({"n_bits": 8}, (200, 16), ValueError, "at least as many"),
        ({}, (300,), ValueError, "2-D"),
    ],
)
def test_bad_fit_input_is_refused(params, X_shape, error, match):
    X = np.random.default_rng(0).normal(size=X_shape)
    with pytest.raises(error, match=match):
        ProductQuantizer(**{"n_subspaces": 4, "n_bits": 4, **params}).fit(X)


def test_bad_use_after_fit_is_refused(xp, to_xp):
    X_np = embeddings(n_samples=300)
    with pytest.raises(NotFittedError):
        ProductQuantizer(4).encode(to_xp(X_np))
    pq = ProductQuantizer(4, n_bits=3, random_state=0).fit(to_xp(X_np))
    with pytest.raises(ValueError, match="12 features"):
        pq.encode(to_xp(X_np[:, :12]))
    with pytest.raises(ValueError, match="NaN"):
        pq.encode(to_xp(np.full((2, 16), np.nan)))
    with pytest.raises(ValueError, match=r"codes must have shape \(n_samples, 4\)"):
        pq.decode(xp.zeros((3, 2), dtype=xp.uint8, device=pq.codebooks_.device))
    with pytest.raises(ValueError, match=r"\[0, 8\)"):
        pq.decode(xp.full((3, 4), 8, dtype=xp.uint8, device=pq.codebooks_.device))
    with pytest.raises(TypeError, match="integer dtype"):
        pq.decode(xp.zeros((3, 4), dtype=xp.float64, device=pq.codebooks_.device))
    with pytest.raises(ValueError, match="add"):
        pq.search(to_xp(X_np[:2]), 1)  # nothing added yet
    pq.add(to_xp(X_np))
    with pytest.raises(ValueError, match="k must be"):
        pq.search(to_xp(X_np[:2]), 301)


def test_other_namespace_is_refused(xp, to_xp):
    torch = pytest.importorskip("torch")
    if xp.__name__.endswith("torch"):
        pytest.skip("needs codebooks outside torch")
    pq = ProductQuantizer(4, n_bits=3, random_state=0).fit(to_xp(embeddings(n_samples=300)))
    with pytest.raises(TypeError, match="torch array"):
        pq.encode(torch.zeros((2, 16), dtype=torch.float64))
