"""The backend seam: one file per array library, chosen by ``get_kernels``.

``generic.py`` holds the kernels written with the array API standard alone;
``numpy.py``, ``torch.py``, ``cupy.py`` and ``jax.py`` replace them with
native calls. Each backend file has a ``kernels(xp, device)`` factory and is
imported only when arrays of its library show up, so ``import kmeans_xp``
imports none of torch, cupy or jax. A new library is one new file and one
line in ``_NATIVE``.
"""

from __future__ import annotations

import importlib

from array_api_compat import (
    is_cupy_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from .._sparse import is_sparse, sparse_module
from .generic import Kernels

__all__ = ["Kernels", "get_kernels"]

#: (namespace test, backend module): the first match wins.
_NATIVE = (
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
    for matches, module in _NATIVE:
        if matches(xp):
            return importlib.import_module(f".{module}", __name__).kernels(xp, device)
    return Kernels(xp)
