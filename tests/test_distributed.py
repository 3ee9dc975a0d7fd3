"""KMeans(process_group=...) on 2 gloo processes on the CPU.

One spawn of two ranks runs every case (starting processes costs seconds);
each rank saves what it fitted, and the tests compare that with a
single-process fit of the concatenated data from the same initial centres.
"""

import os
import pickle
import socket

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from kmeans_xp import KMeans  # noqa: E402

pytestmark = pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(), reason="no gloo backend"
)

WORLD = 2


def _blobs(n, seed, d=3, k=4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(k, d))
    return centres[rng.integers(0, k, n)] + rng.normal(size=(n, d)) + 50.0


def _cases():
    """name -> (shard of rank 0, shard of rank 1, weights or None, KMeans
    parameters). Built the same way in the ranks and in the tests."""
    X = _blobs(237, 0)
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=237)
    init = X[[0, 50, 100, 150]]
    far_init = np.vstack([X[[0, 50, 100]], [[1e3, 1e3, 1e3]]])  # one cluster empties
    return {
        "unequal": (X[:180], X[180:], None, dict(n_clusters=4, init=init)),
        "empty_rank": (X, X[:0], None, dict(n_clusters=4, init=init)),
        "empty_rank0": (X[:0], X, None, dict(n_clusters=4, init=init)),
        "weighted": (X[:100], X[100:], (w[:100], w[100:]), dict(n_clusters=4, init=init)),
        "relocate": (X[:120], X[120:], None, dict(n_clusters=4, init=far_init, tol=0)),
        "kmeans++": (X[:150], X[150:], None, dict(n_clusters=4, random_state=7, n_init=2)),
        "random": (X[:90], X[90:], None, dict(n_clusters=4, init="random", random_state=3)),
        "float32_torch": (X[:200], X[200:], None, dict(n_clusters=4, init=init)),
        "cosine": (X[:60] - 50.0, X[60:] - 50.0, None,
                   dict(n_clusters=4, init=init - 50.0, metric="cosine")),
    }


def _rank_main(rank, port, out_dir):
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD
    )
    results = {}
    try:
        for name, (x0, x1, w, params) in _cases().items():
            X = (x0, x1)[rank]
            weights = None if w is None else w[rank]
            if name == "float32_torch":
                X = torch.from_numpy(X.astype(np.float32))
                params = dict(params, init=torch.from_numpy(params["init"].astype(np.float32)))
            km = KMeans(process_group="default", **params).fit(X, sample_weight=weights)
            to_np = (lambda a: a.numpy()) if isinstance(km.labels_, torch.Tensor) else np.asarray
            results[name] = dict(
                centers=to_np(km.cluster_centers_), labels=to_np(km.labels_),
                inertia=km.inertia_, n_iter=km.n_iter_,
                types=(type(km.cluster_centers_).__name__, type(km.labels_).__name__),
            )
        # Bad settings fail before any collective.
        for bad in ("nccl-please", 3):
            try:
                KMeans(n_clusters=2, process_group=bad).fit(np.ones((4, 2)))
            except (TypeError, ValueError) as exc:
                results.setdefault("errors", []).append(type(exc).__name__)
    finally:
        dist.destroy_process_group()
    with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as f:
        pickle.dump(results, f)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("dist"))
    torch.multiprocessing.spawn(
        _rank_main, args=(_free_port(), out_dir), nprocs=WORLD, join=True
    )
    results = []
    for rank in range(WORLD):
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "rb") as f:
            results.append(pickle.load(f))
    return results


@pytest.mark.parametrize(
    "name",
    ["unequal", "empty_rank", "empty_rank0", "weighted", "relocate", "float32_torch", "cosine"],
)
def test_equals_single_process_fit(ranks, name):
    x0, x1, w, params = _cases()[name]
    X = np.concatenate([x0, x1])
    weights = None if w is None else np.concatenate(w)
    rtol = 1e-10
    if name == "float32_torch":
        X, params, rtol = X.astype(np.float32), dict(params, init=params["init"].astype(np.float32)), 1e-5
    ref = KMeans(**params).fit(X, sample_weight=weights)
    for rank, res in enumerate(ranks):
        r = res[name]
        np.testing.assert_allclose(r["centers"], ref.cluster_centers_, rtol=rtol, atol=rtol * 50)
        assert r["n_iter"] == ref.n_iter_
        assert r["inertia"] == pytest.approx(ref.inertia_, rel=rtol)
        rows = slice(0, len(x0)) if rank == 0 else slice(len(x0), len(X))
        np.testing.assert_array_equal(r["labels"], ref.labels_[rows])
    if name == "float32_torch":
        assert ranks[0][name]["types"] == ("Tensor", "Tensor")
        assert ranks[0][name]["centers"].dtype == np.float32
    if name == "relocate":
        # The far centre's cluster was empty and restarted from a data row.
        assert len(np.unique(np.concatenate([ranks[0][name]["labels"], ranks[1][name]["labels"]]))) == 4


@pytest.mark.parametrize("name", ["kmeans++", "random"])
def test_seeded_init_same_on_every_rank(ranks, name):
    x0, x1, _, params = _cases()[name]
    c0, c1 = ranks[0][name]["centers"], ranks[1][name]["centers"]
    np.testing.assert_array_equal(c0, c1)
    assert ranks[0][name]["inertia"] == ranks[1][name]["inertia"]
    assert ranks[0][name]["n_iter"] == ranks[1][name]["n_iter"]
    # A sensible clustering: the four blobs found (close to the in-memory fit).
    X = np.concatenate([x0, x1])
    ref = KMeans(**params).fit(X)
    assert ranks[0][name]["inertia"] <= 1.05 * ref.inertia_
    assert len(ranks[0][name]["labels"]) == len(x0) and len(ranks[1][name]["labels"]) == len(x1)


def test_bad_process_group_raises(ranks):
    assert ranks[0]["errors"] == ["ValueError", "TypeError"]


def test_process_group_without_init_raises():
    if dist.is_initialized():
        pytest.skip("a process group is already initialised in this process")
    with pytest.raises(ValueError, match="init_process_group"):
        KMeans(n_clusters=2, process_group="default").fit(np.ones((4, 2)))
