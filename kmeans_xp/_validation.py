"""Checks at the door: everything here runs before any work starts.

Public entry points call these; the private algorithm functions assume
their inputs passed them.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from ._array_api import (
    array_namespace,
    default_float_dtype,
    device_of,
    is_array_api_obj,
    is_torch_namespace,
    is_traced,
    namespace_name,
)
from ._blocks import working_dtype
from ._kernels import get_kernels
from .exceptions import InvalidParameterError, NamespaceMismatchError

__all__ = [
    "ALGORITHMS",
    "METRICS",
    "DeferredChecks",
    "check_array",
    "check_fitted_input",
    "check_init_array",
    "check_init_name",
    "check_n_clusters_fits",
    "check_params",
    "check_random_state",
    "check_tol",
    "check_readable",
    "check_same_namespace",
    "check_sample_weight",
    "magnitude_limit",
    "read_together",
    "resolve_n_init",
    "result_dtype",
    "unit_rows",
    "widest_float",
]

_INIT_STRINGS = ("k-means++", "k-means||", "random")
METRICS = ("euclidean", "cosine")
#: scikit-learn's KMeans algorithms; both run Lloyd here (see ``KMeans``).
ALGORITHMS = ("lloyd", "elkan")


class DeferredChecks:
    """Checks at the door whose values live on the device, read together.

    On a GPU every read of a value waits for the device: the checks of X,
    the weights and an init array each reduce on the device and add their
    0-d results here (``add``), and one ``read`` fetches them all, with any
    result the caller reads anyway, then runs the checks in the order they
    were added. The check functions ``check_array``, ``check_sample_weight``,
    ``check_init_array`` and ``unit_rows`` read at once when given no
    ``checks``.

    Examples
    --------
    >>> import numpy as np
    >>> checks = DeferredChecks()
    >>> X, xp, device = check_array(np.ones((3, 2)), checks=checks)
    >>> w = check_sample_weight(np.ones(3), X, xp, device, checks=checks)
    >>> checks.read()  # both checks, one read
    []
    """

    def __init__(self):
        self._pending = []

    def add(self, values, verify) -> None:
        """Check ``verify(*host_values)`` once ``values`` (0-d arrays) are read;
        it raises if they are bad."""
        self._pending.append((tuple(values), verify))

    def read(self, *results) -> list:
        """Read every pending check's values and ``results`` (0-d arrays or
        Python numbers) in one device read, run the checks (the first that
        fails raises) and return the host numbers of ``results``."""
        pending, self._pending = self._pending, []
        values = [value for check_values, _ in pending for value in check_values]
        host = read_together([*values, *results])
        at = 0
        for check_values, verify in pending:
            verify(*host[at : at + len(check_values)])
            at += len(check_values)
        return host[at:]


def read_together(values, kernels=None) -> list:
    """Host numbers of ``values`` (0-d arrays of one namespace and device,
    or Python numbers and None, which pass through) in at most one device
    read: the one sync a Lloyd iteration or a MiniBatch step makes on a GPU.
    Bool arrays come back as bool, integer ones as int, the rest as float.

    Host arrays are read one by one (no stacking: each read is free);
    arrays on a GPU are stacked into the widest float the device has (it
    holds every count exactly) and read once (``Kernels.host_values``).
    ``kernels``, the arrays' kernels when the caller has them, saves
    looking them up (Lloyd reads once per iteration).
    """
    if kernels is None:
        arrays = [v for v in values if hasattr(v, "dtype")]
        if not arrays:
            return list(values)
        kernels = get_kernels(array_namespace(arrays[0]), device_of(arrays[0]))
    xp = kernels.xp
    if kernels.cheap_reads:
        return [_read_now(xp, v) for v in values]
    arrays = [v for v in values if hasattr(v, "dtype")]
    if not arrays:
        return list(values)
    dtype = widest_float(xp, device_of(arrays[0]))
    stacked = xp.stack([xp.astype(xp.reshape(a, ()), dtype) for a in arrays])
    numbers = kernels.host_values(stacked)
    read = iter(_as_kind(xp, a.dtype, number) for a, number in zip(arrays, numbers))
    return [next(read) if hasattr(v, "dtype") else v for v in values]


def _read_now(xp, value):
    """``value`` as a host number, read on its own (a host array; Python
    numbers and None pass through)."""
    if isinstance(value, (np.ndarray, np.generic)):
        # numpy's own conversion has the kinds right, without the dtype
        # tests, which cost a tenth of a small fit (Lloyd reads once per
        # iteration; benchmarks/README.md, "Follow-up session").
        return value.item()
    return _as_kind(xp, value.dtype, value) if hasattr(value, "dtype") else value


def _as_kind(xp, dtype, number):
    """A host number as the Python type of ``dtype``'s kind."""
    if _isdtype(xp, dtype, "bool"):
        return bool(number)
    return int(number) if _isdtype(xp, dtype, "integral") else float(number)


def widest_float(xp, device):
    """float64 where ``device`` holds it, else float32 (Apple MPS, JAX
    without x64): the dtype that counts and sums meant to stay exact are
    kept in."""
    info = xp.__array_namespace_info__()
    try:
        available = info.dtypes(device=device, kind="real floating")
    except TypeError:  # older compat layers take no device
        available = info.dtypes(kind="real floating")
    return available.get("float64", xp.float32)


def check_array(
    X, *, name: str = "X", keep_half: bool = False, checks: DeferredChecks | None = None
):
    """Validate a data matrix and return ``(X, xp, device)``.

    ``X`` may be any array-API array or anything ``numpy.asarray`` accepts
    (lists, pandas frames, numpy object arrays holding numbers). Integer and
    bool data become the namespace's default real floating dtype; float16
    and bfloat16 become float32 (sums of many half-precision values lose too
    much; see ``result_dtype``), unless ``keep_half``: the caller then
    computes on blocks cast to float32 as they are used (``BlockRunner``),
    without a float32 copy of X. The input is never modified: a conversion
    makes a new array. Sparse X (scipy.sparse CSR/CSC, torch sparse CSR)
    stays sparse: see ``_check_sparse``.

    The values are checked on the device (one reduction per block) and read
    once: at once, or with the other checks and results of ``checks`` when
    given (see ``DeferredChecks``).

    Raises
    ------
    TypeError
        Not an array, a sparse format other than CSR/CSC (scipy) or CSR
        (torch), or a non-numeric dtype.
    ValueError
        Not 2-D, no samples or no features, complex, NaN or infinite
        values, or values so large that squared distances would overflow.
    """
    check_readable(X, name)
    if is_traced(X):
        raise TypeError(
            f"{name} is a JAX tracer: kmeans_xp cannot run inside jax.jit (or vmap, "
            "grad), because k-means decides how many iterations to run from the "
            "data. Call it outside the transformed function, on concrete arrays."
        )
    if _is_sparse(X):
        return _check_sparse(X, name, checks)
    if not is_array_api_obj(X):
        if not isinstance(X, (list, tuple)) and not hasattr(X, "__array__"):
            raise TypeError(
                f"{name} must be an array or a nested list of numbers, got {type(X).__name__}."
            )
        try:
            X = np.asarray(X)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{name} must be an array, got {type(X).__name__}: {exc}") from exc
    if isinstance(X, np.ndarray) and X.dtype == object:
        X = _numbers_from_objects(X, name)
    xp = array_namespace(X)
    device = device_of(X)
    if is_torch_namespace(xp):
        # k-means is not differentiable: no autograd graph for its passes
        # (a view, not a copy).
        X = X.detach()
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_features); "
            f"got {X.ndim}-D with shape {tuple(X.shape)}. Reshape your data: "
            f"{name}.reshape(-1, 1) for one feature or {name}.reshape(1, -1) "
            "for one sample."
        )
    n_samples, n_features = X.shape
    # Both wordings: ours, and the one scikit-learn's checks look for.
    if n_samples == 0:
        raise ValueError(
            f"{name} has 0 samples: found array with 0 sample(s) (shape="
            f"{tuple(X.shape)}) while a minimum of 1 is required."
        )
    if n_features == 0:
        raise ValueError(
            f"{name} has 0 features: found array with 0 feature(s) (shape="
            f"{tuple(X.shape)}) while a minimum of 1 is required."
        )
    X = _as_working_dtype(X, xp, device, name, keep_half=keep_half)
    verify = _magnitude_check(name, xp, working_dtype(xp, X.dtype), X.shape)
    _check_now_or_later(checks, [_largest_magnitude(X, xp)], verify)
    return X, xp, device


def _magnitude_check(name: str, xp, dtype, shape):
    """The check of X's largest magnitude (a host float): finite, and small
    enough for squared distances over ``shape`` in ``dtype`` not to
    overflow."""
    n_samples, n_features = shape
    limit = magnitude_limit(xp, dtype, n_samples, n_features)

    def verify(largest: float) -> None:
        if not math.isfinite(largest):
            raise ValueError(f"{name} contains NaN or infinity; k-means needs finite values.")
        if largest > limit:
            raise ValueError(
                f"{name} has values up to {largest:.3g} in magnitude; squared "
                f"distances over {n_samples} x {n_features} values would overflow "
                f"{dtype} above {limit:.3g}. Rescale {name} (e.g. divide by its "
                "largest value)."
            )

    return verify


def _check_sparse(X, name: str, checks: DeferredChecks | None):
    """``check_array`` for sparse X: scipy.sparse / cupyx.scipy.sparse CSR or
    CSC (CSC becomes CSR once: a copy of the nonzeros, never dense) and
    torch sparse CSR tensors. Returns ``(X, xp, device)``, ``xp`` being the
    namespace of the dense arrays (centres, labels) the fit makes; the
    magnitude of the nonzeros is checked through ``checks``."""
    module = type(X).__module__ or ""
    if module.startswith(("scipy.sparse", "cupyx.scipy.sparse")):
        if X.format not in ("csr", "csc"):
            raise TypeError(
                f"Sparse {name} in {X.format!r} format is not supported; convert it with "
                f"{name}.tocsr() (k-means reads CSR in row blocks; CSC is converted once)."
            )
        shape = tuple(X.shape)
    elif module.startswith("torch"):
        import torch

        if X.layout is not torch.sparse_csr:
            raise TypeError(
                f"torch sparse {name} with layout {X.layout} is not supported; convert it "
                f"with {name}.to_sparse_csr()."
            )
        shape = tuple(X.shape)
    else:
        raise TypeError(
            f"Sparse input of type {module}.{type(X).__name__} is not supported; use a "
            f"scipy.sparse CSR matrix or array (or {name}.toarray())."
        )
    if len(shape) != 2:
        raise ValueError(f"{name} must be 2-D of shape (n_samples, n_features); got shape {shape}.")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(
            f"{name} has shape {shape}: found array with 0 sample(s) or feature(s) while a "
            "minimum of 1 is required."
        )
    if module.startswith("torch"):
        X = X.detach()
        values = X.values()
        xp = array_namespace(values)
        device = X.device
        if values.is_complex():
            raise ValueError(f"Complex data not supported: {name} has dtype {values.dtype}.")
        if not values.is_floating_point():
            X = X.to(default_float_dtype(xp, device))
        elif values.element_size() < 4:
            X = X.to(xp.float32)
        values = X.values()
    else:
        import array_api_compat

        if module.startswith("cupyx"):
            xp, device = array_api_compat.array_namespace(X.data), X.data.device
        else:
            xp, device = array_api_compat.array_namespace(np.empty(0)), "cpu"
        kind = X.dtype.kind
        if kind == "c":
            raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}.")
        if kind not in "biuf":
            raise TypeError(f"{name} must have a numeric dtype; got {X.dtype}.")
        if X.format == "csc":
            X = X.tocsr()  # a new matrix: the input stays as it is
        if kind != "f":
            X = X.astype(np.float64)
        elif X.dtype.itemsize < 4:
            X = X.astype(np.float32)
        if not X.has_canonical_format:
            # Duplicate entries would break the row norms; summed on a copy.
            X = X.copy()
            X.sum_duplicates()
        values = X.data
    verify = _magnitude_check(name, xp, X.dtype, shape)
    if values.shape[0]:
        # max |v| is NaN where a value is NaN, inf where one is infinite.
        _check_now_or_later(checks, [xp.max(xp.abs(values))], verify)
    return X, xp, device


def _is_sparse(X) -> bool:
    """scipy.sparse and cupyx.scipy.sparse matrices/arrays, pydata sparse and
    torch sparse tensors, without importing them."""
    module = type(X).__module__ or ""
    return module.startswith(("scipy.sparse", "cupyx.scipy.sparse", "sparse")) or (
        getattr(X, "layout", None) is not None and "sparse" in str(X.layout)
    )


def _numbers_from_objects(X, name: str):
    """A float64 copy of a numpy object array of numbers, as scikit-learn's
    ``check_array`` makes; any other element is a TypeError."""
    try:
        return X.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must have a numeric dtype (bool, integer or real floating); "
            f"got an object array with a non-numeric element: {exc}"
        ) from exc


def magnitude_limit(xp, dtype, n_samples: int, n_features: int) -> float:
    """Largest ``|x|`` whose sums of squared differences over the data stay
    finite in ``dtype``: a squared distance is at most
    ``4 * n_features * (2 * max|x|)**2`` and a pass adds ``n_samples`` of
    them."""
    return math.sqrt(float(xp.finfo(dtype).max) / (16.0 * max(1, n_samples) * max(1, n_features)))


def _largest_magnitude(X, xp, block_elements: int = 1 << 22):
    """``max(abs(X))`` as a 0-d array on X's device: NaN if any value is NaN,
    inf if any is infinite.

    In row blocks, so a memmap is streamed; two reductions per block and no
    temporary the size of a block (the standard's ``max``, ``min`` and
    ``maximum`` propagate NaN). The blocks' results are combined on the
    device: reading it is one sync, whatever the size of X.
    """
    n_samples = X.shape[0]
    rows = max(1, block_elements // max(1, X.shape[1]))
    largest = None
    for start in range(0, n_samples, rows):
        block = X[start : min(start + rows, n_samples), :]
        block_largest = xp.max(xp.stack([xp.max(block), -xp.min(block)]))
        largest = block_largest if largest is None else xp.maximum(largest, block_largest)
    return largest


def check_readable(X, name: str = "X") -> None:
    """Refuse a numpy memmap opened with mode ``'w+'``.

    ``'w+'`` creates the file, or truncates an existing one, so its contents
    are whatever was written since; fitting one is almost surely a mistake
    for ``'r'``. Modes ``'r'``, ``'r+'`` and ``'c'`` are read in blocks,
    without a copy.
    """
    if isinstance(X, np.memmap) and getattr(X, "mode", None) == "w+":
        raise ValueError(
            f"{name} is a numpy memmap opened for writing (mode='w+'), which creates or "
            f"truncates {getattr(X, 'filename', None) or 'its file'}; reopen it with "
            "numpy.memmap(..., mode='r') (or 'r+' / 'c') before fitting."
        )


def _as_working_dtype(X, xp, device, name, *, keep_half: bool = False):
    dtype = X.dtype
    if _isdtype(xp, dtype, "complex floating"):
        raise ValueError(f"Complex data not supported: {name} has dtype {dtype}.")
    if _isdtype(xp, dtype, ("bool", "integral")):
        return xp.astype(X, default_float_dtype(xp, device))
    if _isdtype(xp, dtype, "real floating"):
        if xp.finfo(dtype).bits < 32 and not keep_half:
            return xp.astype(X, xp.float32)
        return X
    raise TypeError(
        f"{name} must have a numeric dtype (bool, integer or real floating); got {dtype}."
    )


def _isdtype(xp, dtype, kind) -> bool:
    try:
        return xp.isdtype(dtype, kind)
    except (TypeError, ValueError):  # e.g. numpy object or string dtypes
        return False


def result_dtype(X_original, X_working):
    """The dtype results are returned in: the input's when it was floating.

    Half-precision input is computed in float32 and returned in its own
    dtype; integer input is returned in the default floating dtype.
    """
    if X_original is X_working or not is_array_api_obj(X_original):
        return X_working.dtype
    xp = array_namespace(X_working)
    if _isdtype(xp, X_original.dtype, "real floating"):
        return X_original.dtype
    return X_working.dtype


def check_same_namespace(a, X, xp, device, name: str):
    """Raise if array ``a`` lives in another namespace or device than ``X``."""
    a_xp = array_namespace(a)
    if a_xp is not xp:
        raise TypeError(
            f"{name} is a {namespace_name(a_xp)} array but X is a "
            f"{namespace_name(xp)} array; convert one so both use the same library."
        )
    if device_of(a) != device:
        raise ValueError(
            f"{name} is on device {device_of(a)} but X is on {device}; "
            f"move it with to_device / .to(...) first."
        )


def check_sample_weight(sample_weight, X, xp, device, *, checks: DeferredChecks | None = None):
    """Validate ``sample_weight``; return None for unit weights, else an array
    of shape (n_samples,) in X's namespace and device, in X's dtype (float32
    for half-precision X, see ``check_array``'s ``keep_half``).

    Shape and dtype are checked at once; the values (finite, non-negative,
    a positive finite total) on the device, read in one sync, at once or
    with ``checks`` (see ``DeferredChecks``)."""
    if sample_weight is None:
        return None
    n_samples = X.shape[0]
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        if not np.isfinite(sample_weight) or sample_weight <= 0:
            raise ValueError(f"a scalar sample_weight must be positive and finite, got {sample_weight}.")
        return xp.full((n_samples,), float(sample_weight), dtype=working_dtype(xp, X.dtype), device=device)
    if is_array_api_obj(sample_weight):
        check_same_namespace(sample_weight, X, xp, device, "sample_weight")
        w = sample_weight
        if _isdtype(xp, w.dtype, "complex floating") or not _isdtype(
            xp, w.dtype, ("bool", "integral", "real floating")
        ):
            raise TypeError(f"sample_weight must be real-valued, got dtype {w.dtype}.")
        if is_torch_namespace(xp):
            w = w.detach()  # as X: no autograd graph (and no warning on reading it)
        w = xp.astype(w, working_dtype(xp, X.dtype))
    else:
        w_np = np.asarray(sample_weight)
        if w_np.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must be real-valued, got dtype {w_np.dtype}.")
        w = xp.asarray(w_np, dtype=working_dtype(xp, X.dtype), device=device)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},) to match X, got {tuple(w.shape)}."
        )
    largest = xp.max(w)
    # Summed relative to the largest weight, so an overflowing total shows
    # up as a host-side inf rather than as a backend overflow warning. The
    # division is by its square root twice: XLA may turn a division into a
    # product with the reciprocal, and 1 / 1.7e308 is subnormal (flushed to
    # zero), 1 / 1.3e154 is not.
    positive = largest > 0
    root = xp.sqrt(xp.where(positive, largest, xp.ones_like(largest)))
    relative_total = xp.sum((w / root) / root)
    dtype = w.dtype

    def verify(finite: bool, negative: bool, largest: float, relative_total: float) -> None:
        if not finite:
            raise ValueError("sample_weight contains NaN or infinity.")
        if negative:
            raise ValueError("sample_weight has negative values; weights must be >= 0.")
        # A Python float product: inf past float64's range, never an error.
        total = relative_total * largest if largest > 0 else 0.0
        if not total > 0:
            raise ValueError("sample_weight sums to zero; at least one weight must be positive.")
        if not math.isfinite(total):
            raise ValueError(
                f"sample_weight sums to {total} in {dtype}; rescale the weights "
                "(k-means is unchanged by a common positive factor)."
            )

    values = [xp.all(xp.isfinite(w)), xp.any(w < 0), largest, relative_total]
    _check_now_or_later(checks, values, verify)
    return w


def check_random_state(random_state) -> np.random.Generator:
    """A host ``numpy.random.Generator`` from None, an int, a Generator or a
    legacy RandomState. All randomness in kmeans_xp is drawn from it, so a
    seed gives the same initial centres on every backend and device."""
    if random_state is None or isinstance(random_state, (numbers.Integral, np.integer)):
        if isinstance(random_state, bool):
            raise InvalidParameterError("random_state must be None, an int or a Generator, got a bool.")
        if random_state is not None and random_state < 0:
            raise InvalidParameterError(f"random_state must be non-negative, got {random_state}.")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        # Draw a seed from the legacy generator so it advances as it would.
        return np.random.default_rng(random_state.randint(np.iinfo(np.int32).max))
    raise InvalidParameterError(
        "random_state must be None, an int, a numpy.random.Generator or a "
        f"RandomState; got {type(random_state).__name__}."
    )


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise InvalidParameterError(f"{name} must be an integer, got {value!r}.")
    if value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}.")
    return int(value)


def check_tol(tol) -> None:
    """``tol`` is a finite real number >= 0 (InvalidParameterError)."""
    if isinstance(tol, bool) or not isinstance(tol, (numbers.Real, np.floating)):
        raise InvalidParameterError(f"tol must be a real number, got {tol!r}.")
    if not (tol >= 0 and np.isfinite(tol)):
        raise InvalidParameterError(f"tol must be finite and >= 0, got {tol}.")


def check_init_name(init: str, names, otherwise: str) -> None:
    """``init``, a string, is one of ``names``; the error says what else
    ``init`` may be (``otherwise``)."""
    if init not in names:
        raise InvalidParameterError(f"init must be one of {names}, {otherwise}; got {init!r}.")


def check_params(
    *, n_clusters, init, n_init, max_iter, tol, metric="euclidean", algorithm="lloyd",
    copy_x=True,
) -> None:
    """Validate the parameters that do not depend on the data."""
    if not isinstance(metric, str) or metric not in METRICS:
        raise InvalidParameterError(f"metric must be one of {METRICS}, got {metric!r}.")
    if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
        raise InvalidParameterError(
            f"The 'algorithm' parameter must be one of {ALGORITHMS}, got {algorithm!r}."
        )
    if not isinstance(copy_x, (bool, np.bool_)):
        raise InvalidParameterError(f"copy_x must be True or False, got {copy_x!r}.")
    _check_int(n_clusters, "n_clusters", 1)
    _check_int(max_iter, "max_iter", 1)
    if not (isinstance(n_init, str) and n_init == "auto"):
        _check_int(n_init, "n_init", 1)
    check_tol(tol)
    if isinstance(init, str):
        check_init_name(
            init, _INIT_STRINGS, "an array of shape (n_clusters, n_features) or a callable"
        )
    elif not (callable(init) or is_array_api_obj(init) or hasattr(init, "__len__")):
        raise InvalidParameterError(
            f"init must be a string, an array or a callable; got {type(init).__name__}."
        )


def check_n_clusters_fits(n_clusters: int, n_samples: int) -> None:
    if n_clusters > n_samples:
        raise ValueError(
            f"n_samples={n_samples} should be >= n_clusters={n_clusters}: "
            "k-means needs at least one sample per cluster."
        )


def check_init_array(init, X, xp, device, n_clusters: int, *, checks: DeferredChecks | None = None):
    """Validate an explicit array of initial centres; return it in X's dtype.
    Its values are checked on the device, read at once or with ``checks``
    (see ``DeferredChecks``)."""
    if is_array_api_obj(init):
        check_same_namespace(init, X, xp, device, "init")
        centers = init
    else:
        init_np = np.asarray(init)
        if init_np.dtype.kind not in "biuf":
            raise TypeError(f"init array must be real-valued, got dtype {init_np.dtype}.")
        centers = xp.asarray(init_np, dtype=X.dtype, device=device)
    n_features = X.shape[1]
    shape = tuple(centers.shape)
    # scikit-learn's texts: its tests and users' scripts match them.
    if centers.ndim != 2:
        raise ValueError(
            f"init array must have shape (n_clusters, n_features) = "
            f"({n_clusters}, {n_features}), got {shape}."
        )
    if shape[0] != n_clusters:
        raise ValueError(
            f"The shape of the initial centers {shape} does not match the number "
            f"of clusters {n_clusters}."
        )
    if shape[1] != n_features:
        raise ValueError(
            f"The shape of the initial centers {shape} does not match the number "
            f"of features of the data {n_features}."
        )
    if not _isdtype(xp, centers.dtype, ("integral", "real floating")):
        raise TypeError(f"init array must be real-valued, got dtype {centers.dtype}.")
    centers = xp.astype(centers, X.dtype, copy=True)

    def verify(finite: bool) -> None:
        if not finite:
            raise ValueError("init array contains NaN or infinity.")

    _check_now_or_later(checks, [xp.all(xp.isfinite(centers))], verify)
    return centers


def unit_rows(X, xp, name: str = "X", *, checks: DeferredChecks | None = None):
    """Rows of X scaled to unit Euclidean norm (a new array), for cosine
    k-means. A zero row has no direction, so it is an error, raised at once
    or when ``checks`` are read (see ``DeferredChecks``)."""
    if hasattr(xp, "linalg"):
        norms = xp.linalg.vector_norm(X, axis=1)
    else:
        norms = xp.sqrt(xp.sum(X * X, axis=1))

    def verify(n_zero: int) -> None:
        if n_zero:
            raise ValueError(
                f"{name} has {n_zero} row(s) of zero norm; cosine k-means needs a "
                "direction for every row (drop them or use metric='euclidean')."
            )

    is_zero = norms == 0
    _check_now_or_later(checks, [xp.count_nonzero(is_zero)], verify)
    # Zero rows divided by 1: a deferred check raises later, without a
    # division warning first.
    return X / xp.where(is_zero, xp.ones_like(norms), norms)[:, None]


def _check_now_or_later(checks: DeferredChecks | None, values, verify) -> None:
    """Add a check to ``checks``, or read and run it at once without."""
    if checks is None:
        checks = DeferredChecks()
        checks.add(values, verify)
        checks.read()
    else:
        checks.add(values, verify)


def resolve_n_init(
    n_init, init, *, n_random: int, stacklevel: int = 4, estimator: str = "KMeans"
) -> int:
    """The number of initialisations to run: ``n_init``, or for "auto"
    scikit-learn's choice (1 for "k-means++" and given centres,
    ``n_random`` for "random" and callables: 10 for KMeans, 3 for
    MiniBatchKMeans). Given centres run once, with scikit-learn's
    RuntimeWarning (naming ``estimator``) if more runs were asked for."""
    explicit = not isinstance(init, str) and not callable(init)
    if n_init == "auto":
        if explicit or init in ("k-means++", "k-means||"):
            return 1
        return n_random
    if explicit and n_init != 1:
        warnings.warn(
            f"Explicit initial center position passed: performing only one init "
            f"in {estimator} instead of n_init={n_init}.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
        return 1
    return n_init


def check_fitted_input(estimator, X, xp, where: str, *, device=None) -> None:
    """Refuse X that the fitted ``estimator`` cannot take: another namespace
    (or, given ``device``, another device) than its centres, or another
    number of features. Moving X would be a hidden copy; ``to_namespace``
    converts the model instead."""
    centers = estimator.cluster_centers_
    fitted_xp = array_namespace(centers)
    if xp is not fitted_xp:
        # Also a ValueError: scikit-learn's array-API checks expect one.
        raise NamespaceMismatchError(
            f"{where}: X is a {namespace_name(xp)} array but this model was "
            f"fitted on {namespace_name(fitted_xp)} arrays; inputs must use the same "
            f"namespace and device as the fitted model. Convert X to "
            f"{namespace_name(fitted_xp)} (device {device_of(centers)}), or the "
            f"model with .to_namespace(...) / .to_numpy()."
        )
    if device is not None and device != device_of(centers):
        raise ValueError(
            f"{where}: X is on device {device} but the fitted centres are on "
            f"{device_of(centers)}; inputs must use the same namespace and device "
            "as the fitted model. Move X there, or the model with .to_namespace(xp, device)."
        )
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
