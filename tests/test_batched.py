"""batched_k_means on every backend of the conftest fixture.

Oracle: ``k_means`` on each problem alone from the same initial centres.
"""

import numpy as np
import pytest

import kmeans_xp.batched
from kmeans_xp import batched_k_means, k_means
from kmeans_xp._testing import assert_array_like, to_numpy


def problems(n_problems=4, n_samples=300, n_features=3, n_centers=5, *, seed=0):
    """Blobs per problem, each with its own centres, spread and offset."""
    rng = np.random.default_rng(seed)
    X = np.empty((n_problems, n_samples, n_features))
    for b in range(n_problems):
        centers = rng.uniform(-10, 10, size=(n_centers, n_features))
        y = rng.integers(0, n_centers, size=n_samples)
        X[b] = centers[y] + rng.uniform(0.5, 3) * rng.standard_normal((n_samples, n_features))
        X[b] += 20 * b  # problems far apart: a mixed-up batch index shows
    return X


def initial_centers(X, n_clusters, seed=1):
    rng = np.random.default_rng(seed)
    return np.stack([x[rng.choice(x.shape[0], n_clusters, replace=False)] for x in X])


@pytest.fixture(params=["one_block", "blocks"])
def blocks(request, monkeypatch):
    if request.param == "blocks":
        # A few rows per block: several blocks per pass in every problem.
        monkeypatch.setattr(kmeans_xp.batched, "_BLOCK_BYTES", 4096)
    return request.param


def assert_each_problem_equals_k_means(X_np, init_np, result, xp, to_xp, *, weights=None, **kw):
    centers, labels, inertia, n_iter = (to_numpy(a) for a in result)
    for b in range(X_np.shape[0]):
        ref_c, ref_l, ref_i, ref_n = k_means(
            to_xp(X_np[b]),
            init_np.shape[1],
            init=to_xp(init_np[b]),
            n_init=1,
            sample_weight=None if weights is None else to_xp(weights[b]),
            return_n_iter=True,
            **kw,
        )
        np.testing.assert_array_equal(labels[b], to_numpy(ref_l), err_msg=f"problem {b}")
        np.testing.assert_allclose(centers[b], to_numpy(ref_c), rtol=1e-10, atol=1e-10)
        assert inertia[b] == pytest.approx(ref_i, rel=1e-10)
        assert n_iter[b] == ref_n, f"problem {b}"


@pytest.mark.parametrize("weighted", [False, True])
def test_each_problem_equals_k_means_from_the_same_centres(xp, to_xp, blocks, weighted):
    X_np = problems()
    init_np = initial_centers(X_np, 6)
    weights = np.random.default_rng(3).uniform(0.1, 2, size=X_np.shape[:2]) if weighted else None
    X, init = to_xp(X_np), to_xp(init_np)
    result = batched_k_means(
        X, 6, init=init, sample_weight=None if weights is None else to_xp(weights)
    )
    centers, labels, inertia, n_iter = result
    assert_array_like(centers, X)
    assert tuple(centers.shape) == (4, 6, 3)
    assert_array_like(labels, X, dtype=xp.int64)
    assert tuple(labels.shape) == (4, 300)
    assert_array_like(inertia, X)
    assert tuple(inertia.shape) == (4,)
    assert_array_like(n_iter, X, dtype=xp.int64)
    assert_each_problem_equals_k_means(X_np, init_np, result, xp, to_xp, weights=weights)
    # The problems converge after different numbers of iterations.
    assert len(set(to_numpy(n_iter).tolist())) > 1


@pytest.mark.parametrize("tol", [0.0, 1e-2])
def test_tolerance_and_max_iter_per_problem_as_k_means(xp, to_xp, tol):
    X_np = problems(n_problems=3, seed=4)
    init_np = initial_centers(X_np, 8, seed=2)
    for max_iter in (2, 300):
        result = batched_k_means(to_xp(X_np), 8, init=to_xp(init_np), tol=tol, max_iter=max_iter)
        assert_each_problem_equals_k_means(
            X_np, init_np, result, xp, to_xp, tol=tol, max_iter=max_iter
        )
        if max_iter == 2:
            assert to_numpy(result[3]).tolist() == [2, 2, 2]


@pytest.mark.parametrize("weighted", [False, True])
def test_empty_clusters_are_relocated_as_k_means_does(xp, to_xp, blocks, weighted):
    X_np = problems(n_problems=3, n_samples=200, n_features=2, seed=5)
    weights = np.random.default_rng(1).uniform(0.1, 3, size=X_np.shape[:2]) if weighted else None
    init_np = initial_centers(X_np, 4)
    # Problem 0: one centre far away, which attracts nothing. Problem 2:
    # two. Problem 1 has none empty.
    init_np[0, 3] = 1e3
    init_np[2, 2:] = [[1e3, 1e3], [-1e3, 1e3]]
    result = batched_k_means(
        to_xp(X_np), 4, init=to_xp(init_np), max_iter=50,
        sample_weight=None if weights is None else to_xp(weights),
    )
    centers = to_numpy(result[0])
    assert np.all(np.abs(centers) < 100)
    assert_each_problem_equals_k_means(
        X_np, init_np, result, xp, to_xp, weights=weights, max_iter=50
    )


def test_finished_problems_are_no_longer_read(monkeypatch):
    X_np = problems(n_problems=4)
    init_np = initial_centers(X_np, 5)
    seen = []
    block = kmeans_xp.batched._Batch.block

    def recording_block(self, start, stop, problems, shift):
        out = block(self, start, stop, problems, shift)
        seen.append(out.shape[0])
        return out

    monkeypatch.setattr(kmeans_xp.batched._Batch, "block", recording_block)
    _, _, _, n_iter = batched_k_means(X_np, 5, init=init_np)
    n_iter = n_iter.tolist()
    assert min(n_iter) < max(n_iter)
    # Lloyd reads, per iteration i, only the problems with n_iter > i.
    passes = [sum(n > i for n in n_iter) for i in range(max(n_iter))]
    lloyd_reads = seen[1 : 1 + len(passes)]  # after the variance pass
    assert lloyd_reads == passes


def test_kmeans_plusplus_per_problem_finds_the_blobs(xp, to_xp):
    X_np = problems(n_problems=3, n_centers=4)
    centers, _labels, inertia, _ = batched_k_means(to_xp(X_np), 4, random_state=0)
    inertia = to_numpy(inertia)
    for b in range(3):
        _, _, ref = k_means(X_np[b], 4, random_state=0, n_init=10)
        assert inertia[b] <= 1.05 * ref
        # Every centre is inside its own problem's data.
        c = to_numpy(centers)[b]
        assert np.all((c >= X_np[b].min(axis=0)) & (c <= X_np[b].max(axis=0)))


def test_kmeans_plusplus_same_centres_on_every_backend(xp, to_xp):
    X_np = problems(n_problems=2)
    ref = batched_k_means(X_np, 5, random_state=7, max_iter=1)
    out = batched_k_means(to_xp(X_np), 5, random_state=7, max_iter=1)
    np.testing.assert_array_equal(to_numpy(out[1]), ref[1])
    np.testing.assert_allclose(to_numpy(out[0]), ref[0], rtol=1e-10)


def test_kmeans_plusplus_weights_steer_the_draws(xp, to_xp):
    X_np = problems(n_problems=2, n_centers=3)
    weights = np.ones(X_np.shape[:2])
    weights[:, 100:] = 0  # only the first 100 rows may become centres
    centers, _labels, _, _ = batched_k_means(
        to_xp(X_np), 3, sample_weight=to_xp(weights), random_state=0, max_iter=1, tol=0.0
    )
    # One Lloyd iteration: the centres are means of the weighted rows only,
    # so k-means++ must have drawn among them.
    for b in range(2):
        seen = X_np[b, :100]
        c = to_numpy(centers)[b]
        assert np.all((c >= seen.min(axis=0) - 1e-12) & (c <= seen.max(axis=0) + 1e-12))


def test_random_init_and_n_init_keep_each_problems_best(xp, to_xp):
    X_np = problems(n_problems=3, n_centers=6)
    one = to_numpy(batched_k_means(to_xp(X_np), 6, init="random", n_init=1, random_state=0)[2])
    best = to_numpy(batched_k_means(to_xp(X_np), 6, init="random", n_init=5, random_state=0)[2])
    # The first of the five runs is the single run: the best is no worse.
    assert np.all(best <= one * (1 + 1e-12))


def test_input_is_not_modified_and_integers_become_float(xp, to_xp):
    X_np = np.round(problems(n_problems=2) * 10).astype(np.int64)
    X = to_xp(X_np)
    centers, _, _, _ = batched_k_means(X, 3, random_state=0)
    np.testing.assert_array_equal(to_numpy(X), X_np)
    assert xp.isdtype(centers.dtype, "real floating")


def test_float32_stays_float32(xp, to_xp):
    X_np = problems(n_problems=2)
    init_np = initial_centers(X_np, 5)
    X = to_xp(X_np, dtype=xp.float32)
    centers, _labels, inertia, _ = batched_k_means(X, 5, init=to_xp(init_np, dtype=xp.float32))
    assert_array_like(centers, X)
    assert_array_like(inertia, X)
    ref = batched_k_means(X_np, 5, init=init_np)
    np.testing.assert_allclose(to_numpy(centers), ref[0], rtol=1e-4, atol=1e-4)


def test_torch_result_has_no_graph():
    torch = pytest.importorskip("torch")
    X = torch.tensor(problems(n_problems=2), requires_grad=True)
    centers, _labels, inertia, _n_iter = batched_k_means(X, 3, random_state=0)
    assert not centers.requires_grad and not inertia.requires_grad


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"X": np.zeros((10, 2))}, ValueError, "3-D"),
        ({"X": np.zeros((0, 10, 2))}, ValueError, "0 problems"),
        ({"n_clusters": 11}, ValueError, "n_clusters=11 must be <= n_samples=10"),
        ({"n_clusters": 0}, ValueError, "n_clusters"),
        ({"sample_weight": np.ones((2, 9))}, ValueError, r"shape \(2, 10\)"),
        ({"sample_weight": -np.ones((2, 10))}, ValueError, "negative"),
        ({"sample_weight": np.r_[[np.ones(10)], [np.zeros(10)]]}, ValueError, "some problem"),
        ({"init": np.zeros((2, 3, 3))}, ValueError, r"\(2, 3, 2\)"),
        ({"init": np.full((2, 3, 2), np.nan)}, ValueError, "NaN"),
        ({"init": "k-means||"}, ValueError, "init must be one of"),
        ({"X": np.full((2, 10, 2), np.inf)}, ValueError, "NaN or infinity"),
        ({"X": np.full((2, 10, 2), "a")}, TypeError, "numeric"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"n_init": 0}, ValueError, "n_init"),
    ],
)
def test_bad_input_is_refused_before_work(kwargs, error, match):
    args = {"X": np.random.default_rng(0).normal(size=(2, 10, 2)), "n_clusters": 3, **kwargs}
    with pytest.raises(error, match=match):
        batched_k_means(args.pop("X"), args.pop("n_clusters"), **args)


def test_init_from_another_namespace_is_refused(xp, to_xp):
    """numpy arrays and lists are the host form every backend accepts; an
    array of another array-API library is an error, not a hidden copy."""
    torch = pytest.importorskip("torch")
    if xp.__name__.endswith("torch"):
        pytest.skip("needs X outside torch")
    X = to_xp(problems(n_problems=2))
    with pytest.raises(TypeError, match="init is a torch array"):
        batched_k_means(X, 3, init=torch.zeros((2, 3, 3), dtype=torch.float64))
    with pytest.raises(TypeError, match="sample_weight is a torch array"):
        batched_k_means(X, 3, sample_weight=torch.ones((2, 300), dtype=torch.float64))


def test_torch_generic_path_equals_k_means(monkeypatch):
    """torch CPU tensors run the numpy code on views; the torch code that a
    CUDA device runs is checked here on CPU tensors."""
    torch = pytest.importorskip("torch")
    import array_api_compat.torch as torch_xp

    monkeypatch.setattr(kmeans_xp.batched, "numpy_twin", lambda xp, device: None)
    X_np = problems(n_problems=3)
    init_np = initial_centers(X_np, 5)
    init_np[1, 4] = 1e3  # an empty cluster to relocate
    result = batched_k_means(torch.from_numpy(X_np), 5, init=torch.from_numpy(init_np))
    assert all(isinstance(a, torch.Tensor) for a in result)

    def to_torch(a, dtype=None):
        return torch.from_numpy(np.asarray(a))

    assert_each_problem_equals_k_means(X_np, init_np, result, torch_xp, to_torch)
    # k-means++ draws the same rows as the numpy code.
    ref = batched_k_means(X_np, 5, random_state=3, max_iter=1)
    out = batched_k_means(torch.from_numpy(X_np), 5, random_state=3, max_iter=1)
    np.testing.assert_allclose(out[0].numpy(), ref[0], rtol=1e-10)
