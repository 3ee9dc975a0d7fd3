"""KMeans(device=..., array_namespace=...): host data (numpy, memmap, Dask)
streamed to a device in blocks under a budget smaller than X."""

import numpy as np
import pytest

from kmeans_xp import KMeans
from kmeans_xp._array_api import supports_float64, to_host
from kmeans_xp._streaming import HostBlockSource

N, D, K = 3000, 16, 5
#: A block budget far below X's size (N * D * 8 = 384 kB): 256-row blocks.
BUDGET = 256 * D * 8


def _data(seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=5.0, size=(K, D))
    return centres[rng.integers(0, K, N)] + rng.normal(size=(N, D)) + 20.0


@pytest.fixture
def memmap(tmp_path):
    X = _data()
    path = tmp_path / "X.f64"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    del mm
    return np.memmap(path, dtype=np.float64, mode="r", shape=X.shape)


def _wide(xp, device) -> bool:
    return supports_float64(xp, device)


def _check_fitted(km, ref, xp, device, rtol):
    centers = km.cluster_centers_
    assert type(centers).__module__.split(".")[0] == type(xp.asarray([0.0], device=device)).__module__.split(".")[0]
    assert str(centers.device) == str(device)
    assert str(km.labels_.device) == str(device)
    np.testing.assert_allclose(to_host(centers), ref.cluster_centers_, rtol=rtol, atol=rtol * 20)
    np.testing.assert_array_equal(to_host(km.labels_), ref.labels_)
    assert km.n_iter_ == ref.n_iter_
    assert km.inertia_ == pytest.approx(ref.inertia_, rel=rtol)


@pytest.mark.parametrize("kind", ["numpy", "memmap", "dask"])
def test_stream_fit_equals_in_memory_fit(xp, device, memmap, kind, monkeypatch):
    X = _data()
    if kind == "memmap":
        host = memmap
    elif kind == "dask":
        da = pytest.importorskip("dask.array")
        host = da.from_array(X, chunks=(700, D))
    else:
        host = X
    init = X[[0, 1000, 2000, 2500, 2999]]
    wide = _wide(xp, device)
    ref_X = X if wide else X.astype(np.float32)
    ref = KMeans(K, init=init.astype(ref_X.dtype)).fit(ref_X)
    copies = []
    original = HostBlockSource.to_device

    def spy(self, rows):
        copies.append(rows.nbytes)
        return original(self, rows)

    monkeypatch.setattr(HostBlockSource, "to_device", spy)
    km = KMeans(K, init=init, device=device, array_namespace=xp, device_block_bytes=BUDGET).fit(host)
    _check_fitted(km, ref, xp, device, 1e-10 if wide else 1e-4)
    # Every copy to the device is one block within the budget, never X.
    itemsize = 8 if wide else 4
    assert copies and max(copies) <= BUDGET * itemsize // 8 < X.nbytes
    assert sum(copies) > X.shape[0] * D * itemsize  # several passes, block by block
    labels = km.predict(host)
    np.testing.assert_array_equal(to_host(labels), ref.predict(ref_X))
    assert str(labels.device) == str(device)


def test_weighted_and_relocating_fit(xp, device):
    X = _data(1)
    w = np.random.default_rng(2).uniform(0.2, 3.0, N)
    init = np.vstack([X[[0, 1, 2, 3]], np.full((1, D), 1e3)])  # the last cluster empties
    wide = _wide(xp, device)
    ref_X = X if wide else X.astype(np.float32)
    ref = KMeans(K, init=init, tol=0).fit(ref_X, sample_weight=w)
    km = KMeans(K, init=init, tol=0, device=device, array_namespace=xp, device_block_bytes=BUDGET)
    km.fit(X, sample_weight=w)
    _check_fitted(km, ref, xp, device, 1e-9 if wide else 1e-4)
    assert len(np.unique(to_host(km.labels_))) == K


def test_one_block_kmeanspp_matches_in_memory_seed(xp, device):
    # Data that fit one block: init runs k-means++ on all rows with the
    # same draws as the in-memory fit.
    X = _data(3)[:500]
    wide = _wide(xp, device)
    ref_X = X if wide else X.astype(np.float32)
    ref = KMeans(K, random_state=4).fit(ref_X)
    km = KMeans(K, random_state=4, device=device, array_namespace=xp).fit(X)
    _check_fitted(km, ref, xp, device, 1e-9 if wide else 1e-4)


def test_seeded_init_on_a_sample_is_reproducible(xp, device):
    X = _data(5)
    params = dict(random_state=0, device=device, array_namespace=xp, device_block_bytes=BUDGET)
    a = KMeans(K, **params).fit(X)
    b = KMeans(K, **params).fit(X)
    np.testing.assert_array_equal(to_host(a.cluster_centers_), to_host(b.cluster_centers_))
    # Close to the in-memory fit of the same data (the blobs are found).
    assert a.inertia_ <= 1.05 * KMeans(K, random_state=0).fit(X).inertia_


def test_torch_cpu_target_makes_no_tensor_larger_than_the_budget(monkeypatch):
    torch = pytest.importorskip("torch")
    import kmeans_xp._problem

    # Dispatch modes see only their own thread: keep the passes on this one.
    monkeypatch.setattr(kmeans_xp._problem, "host_workers", lambda: 1)
    from torch.utils._python_dispatch import TorchDispatchMode

    X = _data(6)
    largest = [0]

    class Largest(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else (out,):
                if isinstance(t, torch.Tensor):
                    largest[0] = max(largest[0], t.numel() * t.element_size())
            return out

    init = X[[0, 1000, 2000, 2500, 2999]]
    with Largest():
        km = KMeans(K, init=init, device=torch.device("cpu"), device_block_bytes=BUDGET).fit(X)
    ref = KMeans(K, init=init).fit(X)
    np.testing.assert_array_equal(km.labels_.numpy(), ref.labels_)
    # Blocks, distances and the (n,) labels: nothing near X's size, and
    # whole blocks were seen (the spy works).
    assert 128 * D * 8 <= largest[0] <= BUDGET < X.nbytes


def test_bad_settings_raise():
    torch = pytest.importorskip("torch")
    X = _data()[:100]
    with pytest.raises(ValueError, match="array_namespace"):
        KMeans(2, device="cuda").fit(X)
    with pytest.raises(TypeError, match="fit it directly"):
        KMeans(2, device=torch.device("cpu")).fit(torch.from_numpy(X))
    with pytest.raises(ValueError, match="metric"):
        KMeans(2, metric="cosine", device=torch.device("cpu")).fit(X)
    with pytest.raises(ValueError, match="cannot make arrays"):
        KMeans(2, device="no-such-device", array_namespace=torch).fit(X)
    with pytest.raises(ValueError, match="cannot be imported"):
        KMeans(2, device="cpu", array_namespace="no_such_library").fit(X)
    X_in = X.copy()
    KMeans(2, device=torch.device("cpu"), random_state=0).fit(X_in)
    np.testing.assert_array_equal(X_in, X)  # input never modified


def test_prefetch_predicts_the_runners_blocks(monkeypatch):
    # The CUDA double buffer copies the block after the current one ahead
    # of time; here the prediction is checked against the blocks the runner
    # really asks for (no GPU needed).
    X = _data(7)[:1000]
    asked = []
    original = HostBlockSource.block

    def spy(self, start, stop, shift):
        asked.append((start, stop, self.next_block(stop)))
        return original(self, start, stop, shift)

    monkeypatch.setattr(HostBlockSource, "block", spy)
    import array_api_compat.numpy as np_xp

    KMeans(K, init=X[:K], max_iter=3, tol=0, device="cpu", array_namespace=np_xp,
           device_block_bytes=300 * max(K, D) * 8).fit(X)
    assert len(asked) > 6
    hits = sum(asked[i][2] == asked[i + 1][:2] for i in range(len(asked) - 1))
    assert hits == len(asked) - 1


def test_namespace_by_name_clones_and_pickles():
    import pickle

    xs = pytest.importorskip("array_api_strict")
    sklearn_base = pytest.importorskip("sklearn.base")
    km = KMeans(K, random_state=0, device=xs.Device("device1"), array_namespace="array_api_strict")
    km = pickle.loads(pickle.dumps(sklearn_base.clone(km))).fit(_data(8)[:400])
    assert str(km.cluster_centers_.device) == str(xs.Device("device1"))
    assert str(km.predict(_data(8)[:10]).device) == str(xs.Device("device1"))
