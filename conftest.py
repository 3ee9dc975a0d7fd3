"""Backend fixtures shared by every test.

Each test that takes ``xp`` runs once per backend below. A backend whose
library is not installed, or whose hardware is absent, is skipped with a
reason, never failed. numpy runs twice: ``numpy`` takes the fused numba
kernels where numba is installed (as users get them), ``numpy-plain`` the
plain numpy kernels (as without numba). ``array_api_strict`` runs twice:
on its default device and on ``Device("device1")``, which refuses to mix
devices and to convert to numpy, so forgotten ``device=`` arguments and
hidden host copies fail on a CPU-only machine just as they would on a GPU.
``torch-gpusim`` and ``cupy-sim`` run every test through the GPU code path on CPU arrays, under
``kmeans_xp._testing.simulated_gpu()``: torch CPU tensors take the CUDA
path, numpy arrays take CuPy's kernels through stand-ins.
``gpu_class_kernels`` runs the kernel classes of the GPU backends on CPU
arrays.
"""

from __future__ import annotations

import enum
import importlib.util
import os

# scikit-learn runs its array-API estimator checks only when scipy was
# imported with this set; conftest loads before any test imports scipy.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
# JAX arrays are float32 unless x64 is on; with it on, the float64 oracles
# apply to JAX as to numpy (float32 JAX inputs are tested explicitly).
os.environ.setdefault("JAX_ENABLE_X64", "1")

import numpy as np
import pytest


class Backend(enum.Enum):
    NUMPY = "numpy"
    NUMPY_PLAIN = "numpy-plain"
    ARRAY_API_STRICT = "array_api_strict"
    ARRAY_API_STRICT_DEVICE1 = "array_api_strict-device1"
    TORCH = "torch"
    TORCH_CUDA = "torch-cuda"
    CUPY = "cupy"
    JAX = "jax"
    JAX_GPU = "jax-gpu"
    TORCH_GPUSIM = "torch-gpusim"
    CUPY_SIM = "cupy-sim"

    @property
    def is_gpu(self) -> bool:
        return self in (Backend.TORCH_CUDA, Backend.CUPY, Backend.JAX_GPU)

    @property
    def is_simulated_gpu(self) -> bool:
        """The GPU code path on CPU arrays, under ``simulated_gpu()``."""
        return self in (Backend.TORCH_GPUSIM, Backend.CUPY_SIM)

    @property
    def gpu_path(self) -> bool:
        """Whether fits take the GPU code path (real or simulated)."""
        return self.is_gpu or self.is_simulated_gpu


def _backend_params():
    for backend in Backend:
        marks = [pytest.mark.gpu] if backend.is_gpu else []
        yield pytest.param(backend, id=backend.value, marks=marks)


def _load(backend: Backend):
    """Return ``(xp, device)`` for a backend, or skip the test with a reason."""
    if backend in (Backend.NUMPY, Backend.NUMPY_PLAIN, Backend.CUPY_SIM):
        import array_api_compat.numpy as xp

        return xp, "cpu"
    if backend is Backend.TORCH_GPUSIM:
        torch = pytest.importorskip("torch")
        import array_api_compat.torch as xp

        return xp, torch.device("cpu")
    if backend in (Backend.ARRAY_API_STRICT, Backend.ARRAY_API_STRICT_DEVICE1):
        xp = pytest.importorskip("array_api_strict")
        if backend is Backend.ARRAY_API_STRICT:
            return xp, xp.Device("CPU_DEVICE")
        return xp, xp.Device("device1")
    if backend in (Backend.TORCH, Backend.TORCH_CUDA):
        torch = pytest.importorskip("torch")
        import array_api_compat.torch as xp

        if backend is Backend.TORCH:
            return xp, torch.device("cpu")
        if not torch.cuda.is_available():
            pytest.skip("torch is installed but no CUDA device is available")
        return xp, torch.device("cuda", 0)
    if backend is Backend.CUPY:
        cupy = pytest.importorskip("cupy")
        try:
            n_devices = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CUDA driver missing or broken
            pytest.skip(f"cupy is installed but CUDA is unusable: {exc}")
        if n_devices == 0:
            pytest.skip("cupy is installed but no CUDA device is present")
        import array_api_compat.cupy as xp

        return xp, cupy.cuda.Device(0)
    if backend in (Backend.JAX, Backend.JAX_GPU):
        jax = pytest.importorskip("jax")
        import jax.numpy as xp

        if backend is Backend.JAX:
            return xp, jax.devices("cpu")[0]
        try:
            gpus = jax.devices("gpu")
        except RuntimeError:  # no GPU plugin or no device
            gpus = []
        if not gpus:
            pytest.skip("jax is installed but no GPU device is available")
        return xp, gpus[0]
    raise AssertionError(f"unhandled backend {backend}")


@pytest.fixture(params=list(_backend_params()))
def backend(request) -> Backend:
    """The backend under test; parametrised over every member of Backend.
    The simulated GPU backends hold ``simulated_gpu()`` for the test."""
    backend = request.param
    if backend is Backend.NUMPY_PLAIN:
        from kmeans_xp._testing import fused_kernels

        with fused_kernels(False):
            yield backend
        return
    if not backend.is_simulated_gpu:
        yield backend
        return
    _load(backend)  # skips when torch is absent
    from kmeans_xp._testing import simulated_gpu

    cupy = backend is Backend.CUPY_SIM
    with simulated_gpu(torch=not cupy, cupy=cupy):
        yield backend


@pytest.fixture
def xp(backend):
    """The array namespace of the backend under test."""
    return _load(backend)[0]


@pytest.fixture
def device(backend):
    """The device the backend's arrays live on (non-default where possible)."""
    return _load(backend)[1]


@pytest.fixture
def to_xp(xp, device):
    """Convert a numpy array (or nested list) to the backend under test.

    The dtype is kept, except that a backend without float64 support would
    need the caller to choose float32 explicitly.
    """

    def convert(a, dtype=None):
        a = np.asarray(a)
        if dtype is None:
            dtype = getattr(xp, a.dtype.name)
        return xp.asarray(a, dtype=dtype, device=device)

    return convert


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture
def gpu_class_kernels(xp, backend, request):
    """The kernel class a GPU backend gets, run on this backend's CPU
    arrays, so that its logic is tested on a machine without CUDA:
    ``TorchKernels`` (torch CUDA) on torch CPU tensors, ``CupyKernels`` on
    numpy arrays through stand-ins for ``cupy`` and ``cupyx``."""
    from kmeans_xp._kernels.cupy import CupyKernels
    from kmeans_xp._kernels.torch import TorchKernels
    from kmeans_xp._testing import cupy_on_numpy

    if backend in (Backend.TORCH, Backend.TORCH_GPUSIM):
        return TorchKernels(xp)
    if backend in (Backend.NUMPY, Backend.NUMPY_PLAIN, Backend.CUPY_SIM):
        if backend is not Backend.CUPY_SIM:
            stand_ins = cupy_on_numpy()
            stand_ins.__enter__()
            request.addfinalizer(lambda: stand_ins.__exit__(None, None, None))
        return CupyKernels(xp)
    pytest.skip(f"no GPU kernel class runs on {backend.value} arrays")


# The jitted kernels import numba at module level; without numba the doctest
# collection must not import them (the numpy kernels serve instead).
if importlib.util.find_spec("numba") is None:
    collect_ignore = ["kmeans_xp/_kernels/_numba_jit.py"]


def pytest_configure(config):
    """With numba installed, compile the fused kernels into numba's on-disk
    cache once, before the workers start: otherwise every worker and every
    subprocess a test starts compiles them at once, on a fresh checkout."""
    if importlib.util.find_spec("numba") is None or hasattr(config, "workerinput"):
        return
    from kmeans_xp._kernels import numba as fused

    if fused.enabled():
        fused.compile_kernels()


#: Modules whose tests run whole fits many times over (property, fuzz and
#: scikit-learn-equality sweeps): on JAX, whose eager ops dispatch one by
#: one, each case takes seconds, so there they are marked ``slow`` and run
#: with ``pytest -m slow`` rather than in every test run (README, Tests).
_SLOW_ON_JAX = {
    "test_batched.py", "test_bisect.py", "test_pq.py", "test_fuzz.py", "test_properties.py",
    "test_streaming.py", "test_faults.py", "test_blocks.py",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec is not None else None
        if backend is Backend.JAX and item.path.name in _SLOW_ON_JAX:
            item.add_marker(pytest.mark.slow)
