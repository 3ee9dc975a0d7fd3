"""Bad input: a clear error naming the problem, raised before any work."""

import numpy as np
import pytest

from kmeans_xp import KMeans, NotFittedError, k_means, kmeans_plusplus
from kmeans_xp.exceptions import InvalidParameterError

X_GOOD = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(xp, to_xp, bad):
    X = X_GOOD.copy()
    X[2, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinity"):
        KMeans(2).fit(to_xp(X))


@pytest.mark.parametrize(
    "shape, message",
    [((4,), "2-D"), ((2, 2, 2), "2-D"), ((0, 3), "0 samples"), ((3, 0), "0 features")],
)
def test_wrong_shapes_are_rejected(xp, to_xp, shape, message):
    with pytest.raises(ValueError, match=message):
        KMeans(1).fit(to_xp(np.ones(shape)))


def test_complex_and_non_numeric_dtypes_are_rejected():
    with pytest.raises(ValueError, match="Complex data not supported"):
        KMeans(2).fit(X_GOOD.astype(np.complex128))
    with pytest.raises(TypeError, match="numeric dtype"):
        KMeans(2).fit(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(TypeError, match="numeric dtype"):
        KMeans(2).fit(np.array([[object(), 1.0]], dtype=object))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_clusters": 0}, "n_clusters must be >= 1"),
        ({"n_clusters": 2.5}, "n_clusters must be an integer"),
        ({"n_clusters": "3"}, "n_clusters must be an integer"),
        ({"n_clusters": True}, "n_clusters must be an integer"),
        ({"n_init": 0}, "n_init must be >= 1"),
        ({"n_init": "sometimes"}, "n_init must be an integer"),
        ({"max_iter": 0}, "max_iter must be >= 1"),
        ({"tol": -1e-3}, "tol must be finite and >= 0"),
        ({"tol": "small"}, "tol must be a real number"),
        ({"init": "kmeans||"}, "init must be one of"),
        ({"init": 3}, "init must be a string, an array or a callable"),
        ({"metric": "manhattan"}, "metric must be one of"),
        ({"random_state": "seed"}, "random_state must be"),
    ],
)
def test_bad_parameters_raise_before_work(params, message):
    with pytest.raises(InvalidParameterError, match=message) as info:
        KMeans(**{"n_clusters": 2, **params}).fit(X_GOOD)
    # Either except clause catches it, as with scikit-learn.
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


def test_more_clusters_than_samples(xp, to_xp):
    with pytest.raises(ValueError, match="n_samples=4 should be >= n_clusters=5"):
        KMeans(5).fit(to_xp(X_GOOD))
    with pytest.raises(ValueError, match="n_samples=4 should be >= n_clusters=5"):
        kmeans_plusplus(to_xp(X_GOOD), 5)


def test_init_array_of_the_wrong_shape(xp, to_xp):
    with pytest.raises(
        ValueError,
        match=r"The shape of the initial centers \(3, 2\) does not match the number of clusters 2",
    ):
        KMeans(2, init=to_xp(X_GOOD[:3])).fit(to_xp(X_GOOD))
    with pytest.raises(ValueError, match="init array contains NaN"):
        KMeans(2, init=[[0.0, np.nan], [1.0, 1.0]]).fit(to_xp(X_GOOD))


def test_init_callable_must_return_the_right_shape():
    with pytest.raises(ValueError, match="The shape of the initial centers"):
        KMeans(2, init=lambda X, k, random_state: X[:1]).fit(X_GOOD)
    km = KMeans(2, init=lambda X, k, random_state: X[[0, 2]]).fit(X_GOOD)
    assert km.inertia_ == pytest.approx(1.0)


def test_explicit_init_with_n_init_warns_and_runs_once():
    with pytest.warns(RuntimeWarning, match="performing only one init in KMeans instead of n_init=5"):
        KMeans(2, init=X_GOOD[[0, 2]], n_init=5).fit(X_GOOD)


def test_init_array_from_another_namespace_or_device():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="init is a torch array but X is a numpy array"):
        KMeans(2, init=torch.asarray(X_GOOD[[0, 2]])).fit(X_GOOD)
    xps = pytest.importorskip("array_api_strict")
    X = xps.asarray(X_GOOD, device=xps.Device("device1"))
    init = xps.asarray(X_GOOD[[0, 2]])
    with pytest.raises(ValueError, match="init is on device"):
        KMeans(2, init=init).fit(X)


@pytest.mark.parametrize(
    "weights, error, message",
    [
        (np.ones(3), ValueError, r"sample_weight must have shape \(4,\)"),
        (np.ones((4, 1)), ValueError, r"sample_weight must have shape \(4,\)"),
        (np.array([1.0, -1.0, 1.0, 1.0]), ValueError, "negative"),
        (np.array([1.0, np.nan, 1.0, 1.0]), ValueError, "NaN or infinity"),
        (np.zeros(4), ValueError, "sums to zero"),
        (["a", "b", "c", "d"], TypeError, "real-valued"),
    ],
)
def test_bad_sample_weight(xp, to_xp, weights, error, message):
    w = weights if isinstance(weights, list) else to_xp(weights)
    with pytest.raises(error, match=message):
        KMeans(2).fit(to_xp(X_GOOD), sample_weight=w)


def test_sample_weight_as_a_list_or_scalar_is_accepted():
    a = KMeans(2, random_state=0).fit(X_GOOD, sample_weight=[1, 1, 1, 1])
    b = KMeans(2, random_state=0).fit(X_GOOD, sample_weight=2.0)
    c = KMeans(2, random_state=0).fit(X_GOOD)
    assert a.inertia_ == c.inertia_ and b.inertia_ == pytest.approx(2 * c.inertia_)


def test_predict_transform_score_before_fit(xp, to_xp):
    km = KMeans(2)
    for method in (km.predict, km.transform, km.score):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            method(to_xp(X_GOOD))
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)


def test_predict_with_a_different_number_of_features(xp, to_xp):
    km = KMeans(2, random_state=0).fit(to_xp(X_GOOD))
    with pytest.raises(ValueError, match="X has 3 features, but KMeans is expecting 2"):
        km.predict(to_xp(np.ones((2, 3))))
    with pytest.raises(ValueError, match="X has 1 features"):
        km.transform(to_xp(np.ones((2, 1))))


def test_predict_on_another_namespace_names_both():
    torch = pytest.importorskip("torch")
    km = KMeans(2, random_state=0).fit(torch.asarray(X_GOOD))
    with pytest.raises(TypeError, match="X is a numpy array but this model was fitted on torch"):
        km.predict(X_GOOD)


def test_k_means_function_validates_like_the_estimator():
    with pytest.raises(ValueError, match="n_clusters must be >= 1"):
        k_means(X_GOOD, 0)
    with pytest.raises(InvalidParameterError, match="n_local_trials must be >= 1"):
        kmeans_plusplus(X_GOOD, 2, n_local_trials=0)


def test_lists_and_non_arrays():
    km = KMeans(2, random_state=0).fit(X_GOOD.tolist())
    assert km.cluster_centers_.shape == (2, 2)
    with pytest.raises(TypeError, match="X must be an array or a nested list"):
        KMeans(2).fit({"a": 1})
    with pytest.raises(TypeError, match="X must be an array or a nested list"):
        KMeans(2).fit("data.csv")
