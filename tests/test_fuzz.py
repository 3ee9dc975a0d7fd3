"""Fuzzing ``KMeans.fit``: any shape, dtype and value either fits with finite
centres or raises ValueError/TypeError with a message.

Never a crash (another exception), a hang, NaN centres or a modified
input. The numpy run is the big one (a couple of thousand examples); the
other backends get a smaller run over the dtypes they have. Examples are
derandomized, so CI sees the same cases every time; cases hypothesis found
failing are kept below as ``@example``s.

Half precision policy (tested here and in ``test_half_precision_*``):
float16 and bfloat16 data are computed in float32 and the centres (and
``transform``) are returned in the input dtype; integer and bool data are
returned in the namespace's default floating dtype.
"""

import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

from kmeans_xp import KMeans  # noqa: E402
from kmeans_xp._testing import assert_array_like, to_numpy  # noqa: E402

DTYPES = [
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64", "complex64", "complex128",
]
SPECIAL = [0.0, -0.0, 1.0, -1.0, 5e-324, 2.2e-308, 1e-310, 1e308, -1e308, 1.7e308, 1e154,
           np.nan, np.inf, -np.inf, 65504.0, 3.4e38, 1e-45]
FUZZ_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
EXAMPLES = {"numpy": 2000, "torch": 60}
OTHER_BACKENDS_EXAMPLES = 60


def _cast(value, dtype):
    """``value`` in ``dtype``; out of range becomes +-inf or 0, as a cast does."""
    with np.errstate(over="ignore", under="ignore"):
        return dtype.type(value)


def _with_pattern(X, pattern):
    """Shapes of data k-means finds hard: constant columns, duplicate rows."""
    if X.size == 0 or pattern == "plain":
        return X
    X = X.copy()
    if pattern == "constant_column":
        X[:, 0] = X[0, 0]
    elif pattern == "duplicate_rows":
        X[1::2] = X[0]
    elif pattern == "all_equal":
        X[...] = X.flat[0]
    return X


@st.composite
def fuzz_cases(draw, dtypes=DTYPES):
    """(X as numpy, dtype name, n_clusters, init, sample_weight or None)."""
    dtype_name = draw(st.sampled_from(dtypes))
    dtype = np.dtype(dtype_name)
    shape = draw(st.tuples(st.integers(0, 12), st.integers(0, 4)))
    if dtype.kind in "fc":
        # Hypothesis' own floats plus the values that break naive code.
        elements = st.one_of(
            hnp.from_dtype(dtype, allow_nan=True, allow_infinity=True),
            st.sampled_from(SPECIAL).map(lambda v: _cast(v, dtype)),
        )
        X = draw(hnp.arrays(dtype, shape, elements=elements))
    else:
        X = draw(hnp.arrays(dtype, shape))
    X = _with_pattern(X, draw(st.sampled_from(["plain", "constant_column", "duplicate_rows", "all_equal"])))
    n_clusters = draw(st.integers(1, 4))
    init = draw(st.sampled_from(["k-means++", "random"]))
    weights = draw(
        st.one_of(
            st.none(),
            hnp.arrays(np.float64, st.just(shape[0]), elements=st.floats(allow_nan=True, allow_infinity=True)),
            hnp.arrays(np.float64, st.just(shape[0]), elements=st.floats(0, 10)),
        )
    )
    return X, dtype_name, n_clusters, init, weights


def _expected_dtype(xp, dtype_name, fitted_dtype):
    if dtype_name.startswith(("float", "bfloat")):
        return getattr(xp, dtype_name)
    return fitted_dtype  # integer/bool: the default floating dtype


def _check_one_case(xp, device, case, estimator=KMeans):
    X_np, dtype_name, n_clusters, init, weights_np = case
    X = xp.asarray(X_np, dtype=getattr(xp, dtype_name), device=device)
    X_before = to_numpy(X).copy()
    w = None if weights_np is None else xp.asarray(weights_np, dtype=xp.float64, device=device)
    km = estimator(n_clusters, init=init, random_state=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            km.fit(X, sample_weight=w)
    except (ValueError, TypeError) as exc:
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        assert not hasattr(km, "cluster_centers_"), "a failed fit left fitted attributes"
    else:
        n_samples, n_features = X_np.shape
        centers = km.cluster_centers_
        assert_array_like(centers, X, dtype=_expected_dtype(xp, dtype_name, centers.dtype))
        assert xp.isdtype(centers.dtype, "real floating")
        assert tuple(centers.shape) == (n_clusters, n_features)
        assert np.isfinite(to_numpy(xp.astype(centers, xp.float32) if dtype_name == "bfloat16" else centers)).all()
        labels = to_numpy(km.labels_)
        assert labels.shape == (n_samples,) and 0 <= labels.min() and labels.max() < n_clusters
        assert np.isfinite(km.inertia_) and km.inertia_ >= 0
        # predict agrees with labels_ up to ties (duplicate centres can be
        # equidistant; fit and predict shift by different vectors).
        _assert_nearest(X_np, to_numpy(km.predict(X)), labels, to_numpy(centers))
    np.testing.assert_array_equal(to_numpy(X), X_before)  # never modified
    if weights_np is not None:
        np.testing.assert_array_equal(to_numpy(w), weights_np)


def _assert_nearest(X_np, predicted, labels, centers):
    X64 = X_np.astype(np.float64)
    c64 = centers.astype(np.float64)
    d2 = ((X64[:, None, :] - c64[None, :, :]) ** 2).sum(axis=2)
    rows = np.arange(X64.shape[0])
    slack = 1e-6 * (1.0 + d2.max()) if np.isfinite(d2).all() else np.inf
    assert np.all(np.abs(d2[rows, predicted] - d2[rows, labels]) <= slack)


def _dtypes_of(xp):
    return [name for name in DTYPES if getattr(xp, name, None) is not None]


def test_fuzz_fit(backend, xp, device):
    dtypes = _dtypes_of(xp)
    n = EXAMPLES.get(backend.value, OTHER_BACKENDS_EXAMPLES)

    @settings(FUZZ_SETTINGS, max_examples=n)
    @given(case=fuzz_cases(dtypes))
    # Kept cases that failed before the overflow guard in check_array:
    # squared distances of 1e308 overflowed to inf and the centres were NaN.
    @example(case=(np.array([[1e308], [-1e308]]), "float64", 1, "k-means++", None))
    @example(case=(np.array([[1.7e308, 0.0], [0.0, 0.0]]), "float64", 2, "random", None))
    # float32 values near its largest finite value.
    @example(case=(np.array([[3e38], [-3e38], [3e38]], dtype=np.float32), "float32", 1, "k-means++", None))
    # Weights that overflow their sum, and all-subnormal data.
    @example(case=(np.ones((3, 2)), "float64", 2, "k-means++", np.full(3, 1.7e308)))
    @example(case=(np.full((4, 2), 5e-324), "float64", 2, "random", None))
    def check(case):
        if case[1] not in dtypes:
            return
        _check_one_case(xp, device, case)

    check()


def test_fuzz_minibatch_fit():
    try:
        from kmeans_xp import MiniBatchKMeans
    except ImportError:
        pytest.skip("MiniBatchKMeans is not available")
    import array_api_compat.numpy as xp

    @settings(FUZZ_SETTINGS, max_examples=300)
    @given(case=fuzz_cases())
    def check(case):
        _check_one_case(xp, "cpu", case, estimator=MiniBatchKMeans)

    check()


def test_object_arrays_of_numbers_fit_and_others_raise():
    X = np.arange(12.0).reshape(6, 2)
    km = KMeans(2, random_state=0).fit(X.astype(object))
    assert km.cluster_centers_.dtype == np.float64
    bad = X.astype(object)
    bad[0, 0] = {"a": 1}
    with pytest.raises(TypeError, match="numeric dtype.*must be a string or a"):
        KMeans(2).fit(bad)


def test_unsupported_sparse_format_is_a_clear_type_error():
    # CSR and CSC are fitted (tests/test_sparse.py); other formats are named.
    sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(TypeError, match=r"'coo' format is not supported.*tocsr\(\)"):
        KMeans(2).fit(sparse.coo_array(np.eye(4)))


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_half_precision_policy_on_torch(dtype_name):
    torch = pytest.importorskip("torch")
    dtype = getattr(torch, dtype_name)
    rng = np.random.default_rng(0)
    X_np = np.concatenate([rng.normal(0, 1, (50, 3)), rng.normal(20, 1, (50, 3))])
    X = torch.asarray(X_np, dtype=dtype)
    km = KMeans(2, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == dtype
    assert km.transform(X).dtype == dtype
    assert km.predict(X).dtype == torch.int64
    # Accumulated in float32: the centres are the float32 fit, rounded once.
    ref = KMeans(2, random_state=0).fit(X.float())
    torch.testing.assert_close(km.cluster_centers_, ref.cluster_centers_.to(dtype), rtol=0, atol=0)
    assert (km.labels_ == ref.labels_).all()


def test_half_precision_policy_on_numpy():
    rng = np.random.default_rng(0)
    # 4000 rows: a float16 running sum would have lost the low digits.
    X = (rng.normal(0, 1, (4000, 2)) + 100).astype(np.float16)
    km = KMeans(1, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == np.float16
    assert km.transform(X).dtype == np.float16
    expected = X.astype(np.float64).mean(axis=0).astype(np.float16)
    np.testing.assert_array_equal(km.cluster_centers_, expected[None, :])


def test_integer_and_bool_data_are_returned_in_the_default_float(xp, device):
    X = xp.asarray(np.array([[0, 1], [1, 1], [9, 9], [9, 8]]), dtype=xp.int32, device=device)
    km = KMeans(2, random_state=0).fit(X)
    info = xp.__array_namespace_info__()
    default = info.default_dtypes(device=device)["real floating"]
    assert km.cluster_centers_.dtype == default
    mask = xp.asarray(np.array([[True, False], [True, True], [False, False]]), device=device)
    assert KMeans(1).fit(mask).cluster_centers_.dtype == default


def test_values_that_would_overflow_are_refused_before_work(xp, to_xp):
    # (2 * 1e200)**2 overflows float64; 1e19 squared overflows float32.
    with pytest.raises(ValueError, match=r"values up to 1e\+200 .* Rescale X"):
        KMeans(1).fit(to_xp(np.array([[1e200], [0.0]])))
    with pytest.raises(ValueError, match=r"would overflow \S*float32"):
        KMeans(1).fit(to_xp(np.array([[1e19], [0.0]], dtype=np.float32)))
    with pytest.raises(ValueError, match="Rescale X"):
        KMeans(1).fit(to_xp(np.ones((3, 1)))).predict(to_xp(np.array([[1e300]])))
    with pytest.raises(ValueError, match="sample_weight sums to inf"):
        KMeans(1).fit(to_xp(np.ones((3, 1))), sample_weight=to_xp(np.full(3, 1.7e308)))
    # Large but safe values fit, with finite, accurate centres.
    X = np.array([[1e150], [-1e150], [3e150]])
    np.testing.assert_allclose(to_numpy(KMeans(1).fit(to_xp(X)).cluster_centers_), [[1e150]], rtol=1e-15)
