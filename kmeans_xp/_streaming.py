"""Streaming host data to a device: ``KMeans(device=..., array_namespace=...)``
fits and predicts a numpy array, a memmap or a Dask array on a chosen
device without ever holding X there.

The block runner asks a ``HostBlockSource`` for rows ``start:stop``; the
source reads them on the host and copies them to the device, so a pass
holds one block (two on CUDA, where the next block's copy overlaps the
current block's work) and the Lloyd loop, init and statistics are the
in-memory ones. Centres, labels and weights live on the device (n values
each, not n x d).

On torch CUDA the copies go through two pinned host buffers and a side
CUDA stream: while the device works on block i, the host reads block i+1
into the other pinned buffer and starts its asynchronous copy. Elsewhere
(array_api_strict devices, torch CPU, CuPy) a block is a plain copy.
"""

from __future__ import annotations

import numpy as np

from ._array_api import is_dask_array, is_gpu_device, supports_float64
from ._blocks import block_rows
from ._fit import fit_best_of
from ._init import _kmeans_plusplus, _random_rows
from ._kernels import get_kernels
from ._lloyd import _assign_labels, data_mean_and_variance
from ._problem import make_problem
from ._validation import (
    check_array,
    check_init_array,
    check_random_state,
    check_sample_weight,
    resolve_n_init,
)

__all__ = ["HostBlockSource", "is_host_data", "stream_fit", "stream_predict", "streams"]

#: Block budget on GPUs when none is given: large copies run at full PCIe
#: speed and amortise the per-block launches.
_GPU_BLOCK_BYTES = 1 << 26


def streams(est) -> bool:
    """Whether the estimator's settings ask for host data to stream."""
    return est.device is not None or est.array_namespace is not None


def is_host_data(X) -> bool:
    """numpy arrays (memmaps included), Dask arrays, and anything
    ``numpy.asarray`` takes that is not an array-API array of a device
    library."""
    if is_dask_array(X) or isinstance(X, np.ndarray):
        return True
    from array_api_compat import is_array_api_obj

    return not is_array_api_obj(X)


def resolve_target(device, array_namespace):
    """``(xp, device)`` of the target: the namespace given (a module or its
    import name), or the one a ``torch.device`` or CuPy ``Device`` implies."""
    from array_api_compat import array_namespace as namespace_of

    if isinstance(array_namespace, str):
        import importlib

        try:
            array_namespace = importlib.import_module(array_namespace)
        except ImportError as exc:
            raise ValueError(f"array_namespace={array_namespace!r} cannot be imported: {exc}") from exc
    if array_namespace is None:
        module = type(device).__module__.split(".")[0]
        if module == "torch":
            import torch

            array_namespace = torch
        elif module == "cupy":
            import cupy

            array_namespace = cupy
        else:
            raise ValueError(
                f"device={device!r} does not say its array library: give array_namespace "
                "too, e.g. KMeans(device='cuda', array_namespace=torch)."
            )
    try:
        probe = array_namespace.asarray([0.0], device=device)
    except Exception as exc:  # each library has its own error for a bad device
        raise ValueError(
            f"cannot make arrays of {getattr(array_namespace, '__name__', array_namespace)} "
            f"on device={device!r}: {exc}"
        ) from exc
    xp = namespace_of(probe)
    from array_api_compat import device as device_of

    return xp, device_of(probe)


class HostBlockSource:
    """Rows of host data, copied to a device block by block.

    Stands in for X in the block runner (``shape``, ``dtype``, ``device``).

    Parameters
    ----------
    X : numpy array of shape (n_samples, n_features), memmap, or Dask array
    xp, device : the target namespace and device
    dtype : the target's floating dtype
    rows : int
        The most rows a block copies (the device budget).
    """

    ndim = 2

    def __init__(self, X, xp, device, dtype, rows: int):
        self.host = X
        self.xp = xp
        self.device = device
        self.dtype = dtype
        self.shape = tuple(int(s) for s in X.shape)
        self.rows = max(1, int(rows))
        self.np_dtype = np.float64 if dtype == xp.float64 else np.float32
        #: The most bytes one copy to the device has taken (for tests and
        #: for users checking a budget).
        self.largest_copy = 0
        self._pinned = None
        import array_api_compat

        if array_api_compat.is_torch_namespace(xp) and getattr(device, "type", "") == "cuda":
            self._pinned = _PinnedDoubleBuffer(self)

    @property
    def thread_safe(self) -> bool:
        """Whether the runner's pool threads may ask for blocks at once
        (plain copies; the double buffer serves one thread)."""
        return self._pinned is None

    def read(self, start: int, stop: int):
        """Rows ``start:stop`` on the host, as a numpy array of the target dtype."""
        rows = self.host[start:stop]
        if is_dask_array(rows):
            rows = rows.compute()
        return np.asarray(rows, dtype=self.np_dtype)

    def to_device(self, host_rows):
        self.largest_copy = max(self.largest_copy, host_rows.nbytes)
        # A copy: the device array must not alias a read-only memmap.
        return self.xp.asarray(host_rows, dtype=self.dtype, device=self.device, copy=True)

    def block(self, start: int, stop: int, shift):
        """Rows ``start:stop`` on the device, minus ``shift`` (None: none)."""
        if self._pinned is not None:
            rows = self._pinned.fetch(start, stop)
        else:
            rows = self.to_device(self.read(start, stop))
        return rows if shift is None else rows - shift

    def take(self, indices):
        """Rows ``indices`` (a device array of a few indices) on the device."""
        from ._array_api import to_host

        idx = np.asarray(to_host(indices), dtype=np.int64)
        if idx.size == 0:
            return self.xp.zeros((0, self.shape[1]), dtype=self.dtype, device=self.device)
        order = np.argsort(idx, kind="stable")  # Dask and memmaps read sorted rows best
        rows = np.empty((idx.size, self.shape[1]), dtype=self.np_dtype)
        picked = self.host[idx[order]]
        rows[order] = np.asarray(picked.compute() if is_dask_array(picked) else picked)
        return self.to_device(rows)

    def next_block(self, stop: int):
        """The block the runner asks for after one ending at ``stop`` on one
        thread (its even cut: see ``BlockRunner._run_range``), or the first
        block of the next pass after the last."""
        n = self.shape[0]
        start = 0 if stop >= n else stop
        left = n - start
        if left <= 0:
            return None
        return start, start + -(-left // -(-left // self.rows))


class _PinnedDoubleBuffer:
    """torch CUDA copies that overlap the device's work: two pinned host
    buffers, a side stream, and the next block copied while the current
    one is used."""

    def __init__(self, source: HostBlockSource):
        import torch

        self.torch = torch
        self.source = source
        width = source.shape[1]
        rows = min(source.rows, source.shape[0])
        tdtype = torch.float64 if source.np_dtype == np.float64 else torch.float32
        self.buffers = [torch.empty((rows, width), dtype=tdtype, pin_memory=True) for _ in range(2)]
        self.events = [None, None]  # when each buffer's last copy has finished
        self.turn = 0
        self.stream = torch.cuda.Stream(device=source.device)
        self.pending = None  # (start, stop, device tensor, event)

    def _start_copy(self, start: int, stop: int):
        torch = self.torch
        i = self.turn
        self.turn ^= 1
        if stop - start > self.buffers[i].shape[0]:
            return None  # a block wider than the buffers (cannot happen by design)
        if self.events[i] is not None:
            self.events[i].synchronize()  # the DMA from this buffer is done
        buf = self.buffers[i][: stop - start]
        buf.copy_(torch.from_numpy(self.source.read(start, stop)))
        self.source.largest_copy = max(self.source.largest_copy, buf.numel() * buf.element_size())
        with torch.cuda.stream(self.stream):
            rows = buf.to(self.source.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(self.stream)
        self.events[i] = event
        return start, stop, rows, event

    def fetch(self, start: int, stop: int):
        torch = self.torch
        pending, self.pending = self.pending, None
        if pending is None or pending[:2] != (start, stop):
            pending = self._start_copy(start, stop)
            if pending is None:
                return self.source.to_device(self.source.read(start, stop))
        _, _, rows, event = pending
        current = torch.cuda.current_stream(self.source.device)
        current.wait_event(event)
        rows.record_stream(current)  # made on the side stream, used here
        following = self.source.next_block(stop)
        if following is not None:
            self.pending = self._start_copy(*following)
        return rows


def _target_dtype(host_dtype, xp, device):
    wide = np.dtype(host_dtype) == np.float64 and supports_float64(xp, device)
    return xp.float64 if wide else xp.float32


def _check_host(X, est, name="X"):
    """A validated host matrix (numpy, memmap or Dask, never loaded
    whole): numpy input goes through ``check_array`` (which reads a memmap
    in blocks); a Dask array must be 2-D, floating, one chunk of columns."""
    if is_dask_array(X):
        if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"{name} must be a non-empty 2-D Dask array; got shape {X.shape}.")
        if np.dtype(X.dtype).kind != "f":
            raise TypeError(f"{name} must have a floating dtype to stream; got {X.dtype}.")
        return X
    X, xp, _ = check_array(X, name=name)
    if not isinstance(X, np.ndarray):
        raise TypeError(
            f"device= streams host data (numpy arrays, memmaps, Dask arrays); {name} is "
            f"a {type(X).__module__} array: fit it directly, without device=."
        )
    return X


def _block_rows(est, kernels, n_samples, n_features, itemsize, xp, device) -> int:
    """Rows per block: (rows x max(k, d)) work arrays within the budget,
    and on CPU targets no more than the kernels' own blocks (larger ones
    fall out of cache)."""
    width = max(est.n_clusters, n_features)
    budget = est.device_block_bytes
    gpu = is_gpu_device(xp, device)
    if budget is None:
        budget = _GPU_BLOCK_BYTES if gpu else 1 << 62
    rows = block_rows(n_samples, width, itemsize, budget)
    return rows if gpu else min(rows, kernels.rows_per_block(n_samples, width, itemsize))


def _source_for(est, X, xp, device):
    dtype = _target_dtype(X.dtype, xp, device)
    kernels = get_kernels(xp, device)
    itemsize = 8 if dtype == xp.float64 else 4
    rows = _block_rows(est, kernels, X.shape[0], X.shape[1], itemsize, xp, device)
    return HostBlockSource(X, xp, device, dtype, rows)


def _sample_init(problem, source, init, n_clusters, rng):
    """Initial centres (original coordinates) from rows sampled on the host
    and copied to the device: all rows when they fit one block (then the
    same centres as the in-memory fit with the same seed), else one
    block's worth, drawn with the seed."""
    xp, device = problem.xp, problem.device
    n = source.shape[0]
    m = min(n, max(source.rows, 10 * n_clusters))
    idx = np.arange(n) if m == n else np.sort(rng.choice(n, size=m, replace=False))
    rows = source.take(xp.asarray(idx, device=device))
    weights = problem.weights
    if weights is not None and m < n:
        weights = xp.take(weights, xp.asarray(idx, device=device))
    if callable(init):
        return check_init_array(init(rows, n_clusters, random_state=rng), rows, xp, device, n_clusters)
    shift = problem.runner.shift
    sample = make_problem(rows, weights, xp, device, n_clusters, shift=shift)
    pick = _kmeans_plusplus if init in ("k-means++", "k-means||") else _random_rows
    return pick(sample, n_clusters, rng)[0] + shift


def stream_fit(est, X, sample_weight) -> dict:
    """``KMeans.fit`` with ``device`` / ``array_namespace`` set: the fitted
    attributes for ``_set_fitted``, on the target device."""
    import time

    if est.metric != "euclidean":
        raise ValueError(
            f"metric={est.metric!r} is not supported when streaming to a device yet; "
            "normalise the rows on the host and use metric='euclidean'."
        )
    xp, device = resolve_target(est.device, est.array_namespace)
    if not is_host_data(X):
        raise TypeError(
            f"device= streams host data (numpy arrays, memmaps, Dask arrays); X is a "
            f"{type(X).__module__} array: fit it directly, without device=."
        )
    X = _check_host(X, est)
    from ._validation import check_n_clusters_fits

    check_n_clusters_fits(est.n_clusters, X.shape[0])
    source = _source_for(est, X, xp, device)
    weights = None
    if sample_weight is not None:
        import array_api_compat.numpy as np_xp

        if is_dask_array(sample_weight):
            sample_weight = sample_weight.compute()
        # Checked on the host against an (n, 0) stand-in of X, then sent
        # (n numbers, not n x d).
        host_w = check_sample_weight(
            sample_weight, np.empty((X.shape[0], 0), dtype=source.np_dtype), np_xp, "cpu"
        )
        weights = xp.asarray(np.asarray(host_w), dtype=source.dtype, device=device)
    init = est.init
    if not isinstance(init, str) and not callable(init):
        from ._array_api import to_host

        host_init = init.compute() if is_dask_array(init) else init
        if not isinstance(host_init, (list, tuple)):
            host_init = to_host(host_init)
        # As a list: check_init_array then sends it to the target device.
        init = check_init_array(np.asarray(host_init).tolist(), source, xp, device, est.n_clusters)
    rng = check_random_state(est.random_state)
    n_init = resolve_n_init(est.n_init, est.init, n_random=10)
    start = time.perf_counter()
    problem = make_problem(
        source, weights, xp, device, est.n_clusters, rows=source.rows, source=source,
        threaded=source.thread_safe,
    )
    stats = data_mean_and_variance(problem, need_variance=est.tol > 0)
    best = None
    for _ in range(n_init):
        centers0 = init if not (isinstance(init, str) or callable(init)) else _sample_init(
            problem, source, init, est.n_clusters, rng
        )
        result = fit_best_of(
            source, weights, xp, device, n_clusters=est.n_clusters, init=centers0, n_init=1,
            max_iter=est.max_iter, tol=est.tol, verbose=est.verbose, rng=rng,
            data_stats=stats, source=source,
        )
        if best is None or result[2] < best[2]:
            best = result
    centers, labels, inertia, n_iter = best
    return dict(
        cluster_centers_=centers, labels_=labels, inertia_=inertia, n_iter_=n_iter,
        n_features_in_=X.shape[1], fit_time_=time.perf_counter() - start,
    )


def stream_predict(est, X):
    """Labels of host rows X, computed on the fitted centres' device in
    streamed blocks; an integer array on that device."""
    if not hasattr(est, "cluster_centers_"):
        from .exceptions import NotFittedError

        raise NotFittedError("This KMeans instance is not fitted yet; call fit first.")
    X = _check_host(X, est)
    if X.shape[1] != est.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but KMeans was fitted with {est.n_features_in_}."
        )
    centers = est.cluster_centers_
    from array_api_compat import array_namespace, device

    xp, dev = array_namespace(centers), device(centers)
    source = _source_for(est, X, xp, dev)
    if centers.dtype != source.dtype:
        centers = xp.astype(centers, source.dtype)
    problem = make_problem(
        source, None, xp, dev, est.n_clusters, rows=source.rows, source=source,
        threaded=source.thread_safe,
    )
    return _assign_labels(problem, centers)[0]
