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

import importlib

from array_api_compat import (
    is_cupy_namespace,
    is_jax_namespace,
    is_numpy_namespace,
    is_torch_namespace,
)

from .generic import Kernels

__all__ = ["Kernels", "get_kernels"]

#: (namespace test, backend module): the first match whose ``kernels``
#: returns kernels wins (the numba file returns None where numba is absent).
_NATIVE = (
    (is_numpy_namespace, "numba"),
    (is_numpy_namespace, "numpy"),
    (is_torch_namespace, "torch"),
    (is_cupy_namespace, "cupy"),
    (is_jax_namespace, "jax"),
)


def get_kernels(xp, device=None) -> Kernels:
    """The kernels for namespace ``xp`` on ``device``: the native ones of
    its library where a file here has them, else the generic ones.

    Returns an object with ``assign(X, centers, centers_sqnorm) -> (labels,
    partial)`` and ``accumulate(X, labels, weights, sums, counts) -> (sums,
    counts)`` (see ``generic.Kernels``).
    """
    for matches, module in _NATIVE:
        if matches(xp):
            found = importlib.import_module(f".{module}", __name__).kernels(xp, device)
            if found is not None:
                return found
    return Kernels(xp)
