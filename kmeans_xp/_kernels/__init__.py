"""The backend seam: one file per array library, chosen by ``get_kernels``.

``generic.py`` holds the kernels written with the array API standard alone;
``numpy.py``, ``torch.py``, ``cupy.py`` and ``jax.py`` replace them with
native calls; ``numba.py`` fuses numpy's assign and accumulate into one
pass where numba is installed. Each backend file has a ``kernels(xp, device)`` factory and is
imported only when arrays of its library show up, so ``import kmeans_xp``
imports none of torch, cupy or jax. A new library is one new file and one
line in ``_NATIVE``.
"""

from __future__ import annotations

import contextlib
import importlib
import threading

from array_api_compat import (
    is_cupy_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from .._sparse import is_sparse, sparse_module
from .generic import Kernels

__all__ = ["Kernels", "SIMULATION", "get_kernels"]


class _Simulation:
    """The one switch of ``kmeans_xp._testing.simulated_gpu()``: consulted
    where kernels and block budgets are chosen and in the GPU scatter-add,
    nowhere in the algorithm."""

    #: torch CPU tensors take the CUDA path (no numpy twin).
    torch = False
    #: numpy arrays take CuPy's kernels, through stand-ins for cupy.
    cupy = False
    #: The free device memory the GPU block budget is computed from.
    free_bytes = 4 << 30

    def __init__(self):
        self._local = threading.local()

    @property
    def in_internal(self) -> bool:
        """Whether the simulation's own host reads are running (the sync
        counter of the tests ignores them: a GPU makes none)."""
        return getattr(self._local, "depth", 0) > 0

    @contextlib.contextmanager
    def internal(self):
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1


SIMULATION = _Simulation()

#: (namespace test, backend module): the first match whose ``kernels``
#: returns kernels wins (the numba file returns None where numba is absent).
_NATIVE = (
    (is_numpy_namespace, "numba"),
    (is_numpy_namespace, "numpy"),
    (is_torch_namespace, "torch"),
    (is_cupy_namespace, "cupy"),
    (is_jax_namespace, "jax"),
)


def get_kernels(xp, device=None, X=None) -> Kernels:
    """The kernels for namespace ``xp`` on ``device``: the native ones of
    its library where a file here has them, else the generic ones.

    Returns an object with ``assign(X, centers, centers_sqnorm) -> (labels,
    partial)`` and ``accumulate(X, labels, weights, sums, counts) -> (sums,
    counts)`` (see ``generic.Kernels``). Given the data ``X``, sparse data
    get the sparse kernels of its library.
    """
    if X is not None and is_sparse(X):  # sparse data: scipy_sparse.py, torch_sparse.py
        return importlib.import_module(f".{sparse_module(X)}", __name__).kernels(xp, X)
    if SIMULATION.cupy and is_numpy_namespace(xp):
        from .cupy import kernels as cupy_kernels

        return cupy_kernels(xp, device)
    for matches, module in _NATIVE:
        if matches(xp):
            found = importlib.import_module(f".{module}", __name__).kernels(xp, device)
            if found is not None:
                return found
    return Kernels(xp)
