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
    as_host_scalar,
    default_float_dtype,
    device_of,
    is_array_api_obj,
    is_torch_namespace,
    is_traced,
    namespace_name,
)
from ._blocks import working_dtype
from .exceptions import InvalidParameterError, NamespaceMismatchError

__all__ = [
    "ALGORITHMS",
    "METRICS",
    "check_array",
    "check_fitted_input",
    "check_init_array",
    "check_n_clusters_fits",
    "check_params",
    "check_random_state",
    "check_readable",
    "check_same_namespace",
    "check_sample_weight",
    "magnitude_limit",
    "resolve_n_init",
    "result_dtype",
    "unit_rows",
]

_INIT_STRINGS = ("k-means++", "k-means||", "random")
METRICS = ("euclidean", "cosine")
#: scikit-learn's KMeans algorithms; both run Lloyd here (see ``KMeans``).
ALGORITHMS = ("lloyd", "elkan")


def check_array(X, *, name: str = "X", keep_half: bool = False):
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
        return _check_sparse(X, name)
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
    largest = _largest_magnitude(X, xp)
    if not math.isfinite(largest):
        raise ValueError(f"{name} contains NaN or infinity; k-means needs finite values.")
    limit = magnitude_limit(xp, working_dtype(xp, X.dtype), n_samples, n_features)
    if largest > limit:
        raise ValueError(
            f"{name} has values up to {largest:.3g} in magnitude; squared "
            f"distances over {n_samples} x {n_features} values would overflow "
            f"{X.dtype} above {limit:.3g}. Rescale {name} (e.g. divide by its "
            "largest value)."
        )
    return X, xp, device


def _check_sparse(X, name: str):
    """``check_array`` for sparse X: scipy.sparse / cupyx.scipy.sparse CSR or
    CSC (CSC becomes CSR once: a copy of the nonzeros, never dense) and
    torch sparse CSR tensors. Returns ``(X, xp, device)``, ``xp`` being the
    namespace of the dense arrays (centres, labels) the fit makes."""
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
        finite = bool(xp.all(xp.isfinite(values)))
        largest = float(xp.max(xp.abs(values))) if finite and values.shape[0] else 0.0
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
        finite = bool(xp.all(xp.isfinite(X.data)))
        largest = float(xp.max(xp.abs(X.data))) if finite and X.nnz else 0.0
    if not finite:
        raise ValueError(f"{name} contains NaN or infinity; k-means needs finite values.")
    limit = magnitude_limit(xp, X.dtype, shape[0], shape[1])
    if largest > limit:
        raise ValueError(
            f"{name} has values up to {largest:.3g} in magnitude; squared distances "
            f"would overflow {X.dtype}. Rescale {name} (e.g. divide by its largest value)."
        )
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


def _largest_magnitude(X, xp, block_elements: int = 1 << 22) -> float:
    """``max(abs(X))``, NaN if any value is NaN and inf if any is infinite.

    In row blocks, so a memmap is streamed; two reductions per block and no
    temporary the size of a block (the standard's ``max``/``min`` propagate
    NaN). One host sync per block.
    """
    n_samples = X.shape[0]
    rows = max(1, block_elements // max(1, X.shape[1]))
    largest = 0.0
    for start in range(0, n_samples, rows):
        block = X[start : min(start + rows, n_samples), :]
        extremes = xp.stack([xp.max(block), -xp.min(block)])
        block_largest = as_host_scalar(xp.max(extremes))
        if not math.isfinite(block_largest):
            return math.nan if math.isnan(block_largest) else math.inf
        largest = max(largest, block_largest)
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


def check_sample_weight(sample_weight, X, xp, device):
    """Validate ``sample_weight``; return None for unit weights, else an array
    of shape (n_samples,) in X's namespace and device, in X's dtype (float32
    for half-precision X, see ``check_array``'s ``keep_half``)."""
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
    if not as_host_scalar(xp.all(xp.isfinite(w))):
        raise ValueError("sample_weight contains NaN or infinity.")
    if as_host_scalar(xp.any(w < 0)):
        raise ValueError("sample_weight has negative values; weights must be >= 0.")
    largest = as_host_scalar(xp.max(w))
    # Summed relative to the largest weight, so an overflowing total shows
    # up as a host-side inf rather than as a backend overflow warning. The
    # scale is a power of two applied in two normal halves: XLA flushes a
    # subnormal reciprocal such as 1 / 1.7e308 to zero.
    total = 0.0
    if largest > 0:
        exponent = math.frexp(largest)[1]
        half = exponent // 2
        scaled = (w * 2.0**-half) * 2.0 ** (half - exponent)
        try:
            total = math.ldexp(as_host_scalar(xp.sum(scaled)), exponent)
        except OverflowError:
            total = math.inf
    if not total > 0:
        raise ValueError("sample_weight sums to zero; at least one weight must be positive.")
    if not math.isfinite(total):
        raise ValueError(
            f"sample_weight sums to {total} in {w.dtype}; rescale the weights "
            "(k-means is unchanged by a common positive factor)."
        )
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
    if isinstance(tol, bool) or not isinstance(tol, (numbers.Real, np.floating)):
        raise InvalidParameterError(f"tol must be a real number, got {tol!r}.")
    if not (tol >= 0 and np.isfinite(tol)):
        raise InvalidParameterError(f"tol must be finite and >= 0, got {tol}.")
    if isinstance(init, str):
        if init not in _INIT_STRINGS:
            raise InvalidParameterError(
                f"init must be one of {_INIT_STRINGS}, an array of shape "
                f"(n_clusters, n_features) or a callable; got {init!r}."
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


def check_init_array(init, X, xp, device, n_clusters: int):
    """Validate an explicit array of initial centres; return it in X's dtype."""
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
    if not as_host_scalar(xp.all(xp.isfinite(centers))):
        raise ValueError("init array contains NaN or infinity.")
    return centers


def unit_rows(X, xp, name: str = "X"):
    """Rows of X scaled to unit Euclidean norm (a new array), for cosine
    k-means. A zero row has no direction, so it is an error."""
    if hasattr(xp, "linalg"):
        norms = xp.linalg.vector_norm(X, axis=1)
    else:
        norms = xp.sqrt(xp.sum(X * X, axis=1))
    n_zero = int(as_host_scalar(xp.sum(xp.astype(norms == 0, xp.int32))))
    if n_zero:
        raise ValueError(
            f"{name} has {n_zero} row(s) of zero norm; cosine k-means needs a "
            "direction for every row (drop them or use metric='euclidean')."
        )
    return X / norms[:, None]


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
