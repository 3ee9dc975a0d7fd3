"""The delegation layer: which namespace, which device, which fast path.

This is the only module (with ``_kernels``) that asks which library an array
comes from. Backend libraries are imported inside the branches that need
them, so ``import kmeans_xp`` never imports torch or cupy.
"""

from __future__ import annotations

import os
import sys
from typing import Any, TypeAlias

import numpy as np
from array_api_compat import (
    array_namespace,
    is_array_api_obj,
    is_cupy_array,
    is_cupy_namespace,
    is_dask_array,
    is_dask_namespace,
    is_numpy_array,
    is_numpy_namespace,
    is_torch_array,
    is_torch_namespace,
)
from array_api_compat import (
    device as device_of,
)

#: An array of any array-API library (numpy, torch, cupy, jax, ...): the
#: standard defines no runtime type that they all share.
Array: TypeAlias = Any

__all__ = [
    "Array",
    "array_namespace",
    "device_of",
    "is_array_api_obj",
    "is_numpy_namespace",
    "is_torch_namespace",
    "is_cupy_namespace",
    "is_dask_namespace",
    "is_dask_array",
    "namespace_name",
    "default_float_dtype",
    "index_dtype",
    "supports_float64",
    "is_gpu_device",
    "oom_errors",
    "host_workers",
    "is_traced",
    "to_host",
]


def is_traced(x) -> bool:
    """Whether ``x`` is a JAX tracer (inside ``jax.jit``, ``vmap``, ``grad``):
    its values are unknown until the traced function runs."""
    jax = sys.modules.get("jax")  # no JAX array exists unless jax is imported
    return jax is not None and isinstance(x, jax.core.Tracer)


def namespace_name(xp) -> str:
    """A short human name for a namespace: 'numpy', 'torch', 'cupy', ..."""
    return getattr(xp, "__name__", repr(xp)).removeprefix("array_api_compat.")


def supports_float64(xp, device) -> bool:
    """Whether ``device`` can hold float64 arrays (Apple MPS cannot)."""
    if is_torch_namespace(xp):
        return getattr(device, "type", str(device)) != "mps"
    return True


def default_float_dtype(xp, device):
    """The namespace's default real floating dtype on ``device``.

    Integer and bool input is converted to this dtype, as the standard's
    ``mean`` would do; on a device without float64 it is float32.
    """
    if is_torch_namespace(xp):
        import torch

        dtype = torch.get_default_dtype()
    else:
        info = xp.__array_namespace_info__()
        try:
            dtype = info.default_dtypes(device=device)["real floating"]
        except TypeError:  # older compat layers take no device
            dtype = info.default_dtypes()["real floating"]
    if dtype == xp.float64 and not supports_float64(xp, device):
        return xp.float32
    return dtype


def index_dtype(xp, device=None):
    """The namespace's default index dtype: int64, or int32 where that is
    the widest (JAX without x64)."""
    info = xp.__array_namespace_info__()
    try:
        return info.default_dtypes(device=device)["indexing"]
    except TypeError:  # older compat layers take no device
        return info.default_dtypes()["indexing"]


def is_gpu_device(xp, device) -> bool:
    """True for CUDA/ROCm/MPS devices, where large blocks pay off."""
    if is_cupy_namespace(xp):
        return True
    if is_torch_namespace(xp):
        return getattr(device, "type", "cpu") != "cpu"
    return False


def oom_errors(xp) -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'this block did not fit in memory' for ``xp``."""
    errors: list[type[BaseException]] = [MemoryError]
    if is_torch_namespace(xp):
        import torch

        errors.append(getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError))
    elif is_cupy_namespace(xp):
        import cupy

        errors.append(cupy.cuda.memory.OutOfMemoryError)
    return tuple(errors)


def host_workers() -> int:
    """Threads to spread CPU chunks over: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def as_host_scalar(x) -> float:
    """One scalar from the device to the host (a sync, never a data copy)."""
    return float(x)


def to_host(x) -> np.ndarray:
    """A numpy array on the host with the values of array ``x``, from any
    library and device (numpy arrays are returned as they are).

    For results leaving the library (plots, files, estimator conversion):
    fits never call it on their data.
    """
    if is_numpy_array(x):
        return np.asarray(x)
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    if is_cupy_array(x):
        return x.get()
    xp = array_namespace(x)
    host = xp.__array_namespace_info__().default_device()
    if device_of(x) != host:
        x = x.to_device(host)
    return np.asarray(x)


def to_device_array(values, xp, *, dtype, device):
    """Send a small host array (random draws, indices) to ``device``."""
    return xp.asarray(np.asarray(values), dtype=dtype, device=device)


def numpy_twin(xp, device):
    """``(numpy namespace, view, back)`` when arrays of ``xp`` on ``device``
    share memory with numpy arrays (torch CPU tensors), else None.

    ``view(a)`` is a numpy array on ``a``'s memory and ``back(a)`` a tensor on
    a numpy array's memory: neither copies. Fits on torch CPU tensors run the
    numpy code through them: per-block torch calls cost more than numpy's
    and wake torch's OpenMP team, which competes with the block pool.
    """
    if not is_torch_namespace(xp) or getattr(device, "type", None) != "cpu":
        return None
    import array_api_compat.numpy as np_xp
    import torch

    def back(a):
        return None if a is None else torch.from_numpy(a)

    return np_xp, numpy_view, back


def numpy_view(tensor):
    """A numpy array sharing the memory of a CPU tensor (None stays None)."""
    if tensor is None:
        return None
    # Lazy negation/conjugation flags are resolved first (a copy only then).
    return tensor.detach().resolve_neg().resolve_conj().numpy()
