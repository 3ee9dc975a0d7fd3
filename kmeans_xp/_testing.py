"""Helpers for tests: host conversion, namespace/device/dtype assertions,
and ``simulated_gpu()``, which runs the GPU code path on CPU arrays.

These live in the package (not in ``tests/``) so that every test module, the
benchmarks and downstream projects can use the same checks.
"""

from __future__ import annotations

import contextlib
import sys
import types

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device_of

from ._array_api import to_host as to_numpy  # tests call host copies to_numpy
from ._kernels import SIMULATION

__all__ = [
    "assert_array_like",
    "cupy_on_numpy",
    "fused_kernels",
    "same_partition",
    "simulated_gpu",
    "to_numpy",
]


@contextlib.contextmanager
def simulated_gpu(*, torch: bool = True, cupy: bool = False, free_bytes: int | None = None):
    """Run the GPU code path on CPU arrays, for tests on machines without one.

    Inside the block:

    * torch CPU tensors take exactly the path of CUDA tensors: the CUDA
      kernel class (no numpy twin, no thread pool), block sizes from the
      device's free memory (``free_bytes``, default 4 GiB, stands for it)
      and no device reads in the block runner;
    * with ``cupy=True``, numpy arrays take CuPy's kernel class, running on
      numpy through stand-ins for ``cupy`` and ``cupyx`` (see
      ``cupy_on_numpy``), and ``cupyx.scipy.sparse`` matrices made inside
      the block (stand-ins over scipy.sparse) take the cupyx sparse kernels;
    * the GPU scatter-add adds one row at a time in the destination's dtype,
      as GPU atomics do (``np.add.at`` on views of the tensors), where
      torch's CPU ``index_add_`` would sum in parallel parts.

    Not thread-safe against fits running outside the block at the same time.

    Parameters
    ----------
    torch : bool
        Simulate CUDA for torch CPU tensors.
    cupy : bool
        Run numpy arrays through CuPy's kernels.
    free_bytes : int, optional
        The free device memory the block budget is computed from.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import KMeans
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]])
    >>> with simulated_gpu(torch=False, cupy=True):
    ...     km = KMeans(2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_[:, 0].tolist())
    [0.0, 5.0]
    """
    saved = (SIMULATION.torch, SIMULATION.cupy, SIMULATION.free_bytes)
    stack = contextlib.ExitStack()
    with stack:
        if cupy:
            stack.enter_context(cupy_on_numpy())
        SIMULATION.torch, SIMULATION.cupy = bool(torch), bool(cupy)
        if free_bytes is not None:
            SIMULATION.free_bytes = int(free_bytes)
        try:
            yield SIMULATION
        finally:
            SIMULATION.torch, SIMULATION.cupy, SIMULATION.free_bytes = saved


class _CupyOutOfMemoryError(MemoryError):
    """Stand-in for ``cupy.cuda.memory.OutOfMemoryError``."""


#: numpy functions that stand for cupy's of the same name (same signatures).
_CUPY_FROM_NUMPY = (
    "arange",
    "argmin",
    "asarray",
    "ascontiguousarray",
    "bincount",
    "diff",
    "einsum",
    "maximum",
    "ones",
    "searchsorted",
    "take_along_axis",
    "vdot",
    "zeros",
)


@contextlib.contextmanager
def fused_kernels(on: bool):
    """numpy fits inside take the fused numba kernels (``on``, where numba
    is installed) or the plain numpy kernels, as without numba: the
    ``KMEANS_XP_NUMBA`` switch, set for the block and restored after."""
    import os

    from ._kernels.numba import ENABLE_ENV

    saved = os.environ.get(ENABLE_ENV)
    os.environ[ENABLE_ENV] = "1" if on else "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(ENABLE_ENV, None)
        else:
            os.environ[ENABLE_ENV] = saved


@contextlib.contextmanager
def cupy_on_numpy():
    """Stand-ins for ``cupy``, ``cupyx`` and ``cupyx.scipy.sparse`` with the
    few calls CuPy's kernels and the sparse kernels make, on numpy arrays
    (and scipy.sparse matrices: see ``_testing_sparse``), installed in
    ``sys.modules`` for the block (where no real cupy is imported). A call
    the kernels start making fails here by name until the stand-in learns
    it."""
    from ._testing_sparse import cupyx_sparse_module

    cupy = types.ModuleType("cupy")
    for name in _CUPY_FROM_NUMPY:
        setattr(cupy, name, getattr(np, name))
    cupy.repeat = _cupy_repeat
    cupy.float64, cupy.int64 = np.float64, np.int64
    cupy.ndarray = type("ndarray", (), {})  # no numpy array passes for a cupy one
    cupy.cuda = types.SimpleNamespace(
        memory=types.SimpleNamespace(OutOfMemoryError=_CupyOutOfMemoryError),
        Device=lambda *args: types.SimpleNamespace(
            mem_info=(SIMULATION.free_bytes, SIMULATION.free_bytes)
        ),
    )
    cupyx = types.ModuleType("cupyx")
    cupyx.scatter_add = np.add.at  # both accumulate repeated indices, row by row
    cupyx.scipy = types.ModuleType("cupyx.scipy")
    cupyx.scipy.sparse = cupyx_sparse_module()
    modules = {"cupy": cupy, "cupyx": cupyx}
    modules["cupyx.scipy"], modules["cupyx.scipy.sparse"] = cupyx.scipy, cupyx.scipy.sparse
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _cupy_repeat(a, repeats, axis=None):
    """``cupy.repeat``: before CuPy 14.1 a CuPy array of repeats is an
    error (``cupy>=13`` allows those releases)."""
    if isinstance(repeats, np.ndarray) and repeats.ndim > 0:
        raise ValueError("cupy.ndaray cannot be specified as `repeats` argument.")
    return np.repeat(a, repeats, axis)


def _same_namespace(a, b) -> bool:
    return array_namespace(a) is array_namespace(b)


def assert_array_like(actual, reference, *, dtype=None) -> None:
    """Assert ``actual`` has the namespace and device of ``reference``.

    ``dtype`` defaults to the dtype of ``reference``. Checked before values so
    that a wrong namespace or device fails with a message that says so.
    """
    assert _same_namespace(actual, reference), (
        f"namespace {array_namespace(actual).__name__} != {array_namespace(reference).__name__}"
    )
    assert device_of(actual) == device_of(reference), (
        f"device {device_of(actual)} != {device_of(reference)}"
    )
    expected = reference.dtype if dtype is None else dtype
    assert actual.dtype == expected, f"dtype {actual.dtype} != {expected}"


def same_partition(labels_a, labels_b) -> bool:
    """True when two labelings define the same partition (up to relabelling)."""
    a = np.asarray(to_numpy(labels_a)).ravel()
    b = np.asarray(to_numpy(labels_b)).ravel()
    if a.shape != b.shape:
        return False
    pairs = np.unique(np.stack([a, b]), axis=1)
    return np.unique(pairs[0]).size == pairs.shape[1] and np.unique(pairs[1]).size == pairs.shape[1]
