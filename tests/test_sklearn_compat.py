"""scikit-learn integration without scikit-learn as a dependency: feature
names, ``set_output``, ``BaseEstimator`` ancestry and the warning category.

Tested on a tiny estimator stub built from ``EstimatorBase`` and the mixin
(as the core estimators will be) and on ``BisectingKMeans``.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest

from kmeans_xp import BisectingKMeans
from kmeans_xp._base import EstimatorBase
from kmeans_xp._sklearn_compat import SklearnCompatMixin, adopt_sklearn_base
from kmeans_xp.exceptions import ConvergenceWarning, convergence_warning


class StubClusterer(EstimatorBase, SklearnCompatMixin):
    """The first ``n_clusters`` rows are the centres; enough to exercise the
    mixin the way an estimator uses it."""

    def __init__(self, n_clusters=2):
        self.n_clusters = n_clusters

    def fit(self, X, y=None):
        self._record_feature_names(X)
        X = np.asarray(X, dtype=float)
        self._set_fitted(cluster_centers_=X[: self.n_clusters], n_features_in_=X.shape[1])
        return self

    def transform(self, X):
        self._check_fitted()
        self._check_feature_names(X)
        X = np.asarray(X, dtype=float)
        return np.linalg.norm(X[:, None, :] - self.cluster_centers_[None], axis=2)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)


def _run_python(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _frame(columns=("a", "b"), index=None):
    pd = pytest.importorskip("pandas")
    data = np.array([[0.0, 0.0], [4.0, 3.0], [1.0, 0.0]])
    return pd.DataFrame(data, columns=list(columns), index=index)


# -- imports and the warning category ------------------------------------------


def test_nothing_heavy_is_imported_and_no_base_without_sklearn():
    out = _run_python(
        """
        import sys
        import numpy as np
        import kmeans_xp
        from kmeans_xp import BisectingKMeans
        from kmeans_xp.exceptions import ConvergenceWarning, convergence_warning
        est = BisectingKMeans(n_clusters=2, random_state=0).fit(np.eye(4))
        heavy = [m for m in ("sklearn", "pandas", "polars", "scipy") if m in sys.modules]
        if "numba" in sys.modules:  # the fused kernel's; numba imports scipy itself
            heavy.remove("scipy")
        bases = [c.__module__ for c in type(est).__mro__]
        print(heavy, any(m.startswith("sklearn") for m in bases),
              convergence_warning() is ConvergenceWarning)
        """
    )
    assert out == "[] False True"


def test_convergence_warning_is_sklearns_once_sklearn_is_loaded():
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    category = convergence_warning()
    assert issubclass(category, ConvergenceWarning)
    assert issubclass(category, sklearn_exceptions.ConvergenceWarning)
    assert convergence_warning() is category  # built once
    with pytest.warns(sklearn_exceptions.ConvergenceWarning, match="degenerate"):
        warnings.warn("degenerate", category, stacklevel=2)
    with pytest.warns(ConvergenceWarning):
        warnings.warn("degenerate", category, stacklevel=2)
    assert pickle.loads(pickle.dumps(category)) is category


# -- feature names -----------------------------------------------------------


def test_feature_names_recorded_from_string_columns_only():
    est = StubClusterer().fit(_frame())
    assert est.feature_names_in_.tolist() == ["a", "b"]
    assert est.feature_names_in_.dtype == object
    # Integer column names: no names, as scikit-learn.
    assert not hasattr(StubClusterer().fit(_frame(columns=(0, 1))), "feature_names_in_")
    # A refit on an array forgets the old names.
    est.fit(np.zeros((3, 2)))
    assert not hasattr(est, "feature_names_in_")
    with pytest.raises(TypeError, match=r"\['int', 'str'\] as feature name"):
        StubClusterer().fit(_frame(columns=("a", 1)))


def test_column_checks_after_fit_warn_and_raise_as_sklearn():
    est = StubClusterer().fit(_frame())
    with pytest.warns(UserWarning, match="X does not have valid feature names, but StubClusterer was fitted with"):
        est.transform(np.zeros((1, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.transform(_frame())  # same names: silent
    with pytest.raises(ValueError, match="Feature names must be in the same order") as info:
        est.transform(_frame(columns=("b", "a")))
    assert str(info.value).startswith("The feature names should match those that were passed during fit.\n")
    with pytest.raises(ValueError, match="unseen at fit time:\n- c\n.*seen at fit time, yet now missing:\n- b\n"):
        est.transform(_frame(columns=("a", "c")))
    unnamed = StubClusterer().fit(np.zeros((3, 2)))
    with pytest.warns(UserWarning, match="X has feature names, but StubClusterer was fitted without"):
        unnamed.transform(_frame())


def test_feature_names_match_sklearn_texts():
    """The same mistakes give scikit-learn's own messages, word for word."""
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    theirs = sklearn_cluster.KMeans(n_clusters=2, n_init=1).fit(_frame())
    ours = StubClusterer().fit(_frame())
    for bad in (_frame(columns=("b", "a")), _frame(columns=("x", "y", ))):
        with pytest.raises(ValueError) as expected:
            theirs.transform(bad)
        with pytest.raises(ValueError) as actual:
            ours.transform(bad)
        assert str(actual.value) == str(expected.value)


def test_get_feature_names_out():
    est = StubClusterer(n_clusters=3).fit(_frame())
    names = est.get_feature_names_out()
    assert names.tolist() == ["stubclusterer0", "stubclusterer1", "stubclusterer2"]
    assert names.dtype == object
    assert est.get_feature_names_out(["a", "b"]).tolist() == names.tolist()
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        est.get_feature_names_out(["b", "a"])
    unnamed = StubClusterer().fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"number of features \(2\), got 3"):
        unnamed.get_feature_names_out(["a", "b", "c"])
    with pytest.raises(ValueError, match="not fitted"):
        StubClusterer().get_feature_names_out()
    bkm = BisectingKMeans(n_clusters=2, random_state=0).fit(np.eye(3))
    assert bkm.get_feature_names_out().tolist() == ["bisectingkmeans0", "bisectingkmeans1"]


# -- set_output --------------------------------------------------------------


def test_set_output_pandas_keeps_the_index():
    pd = pytest.importorskip("pandas")
    X = _frame(index=[10, 20, 30])
    est = StubClusterer().set_output(transform="pandas")
    out = est.fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == ["stubclusterer0", "stubclusterer1"]
    assert out.index.tolist() == [10, 20, 30]
    np.testing.assert_allclose(out.to_numpy(), est.set_output(transform="default").transform(X))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        assert isinstance(est.transform(np.asarray(X)), np.ndarray)


def test_set_output_polars_through_a_stand_in(monkeypatch):
    """The polars call shape, on a stand-in module (polars is optional)."""
    made = {}

    class DataFrame:
        def __init__(self, data, schema=None, orient=None):
            made.update(data=data, schema=schema, orient=orient)

    DataFrame.__module__ = "polars.dataframe.frame"

    monkeypatch.setitem(sys.modules, "polars", types.SimpleNamespace(DataFrame=DataFrame))
    X = np.array([[0.0, 0.0], [3.0, 4.0]])
    out = StubClusterer().set_output(transform="polars").fit_transform(X)
    assert isinstance(out, DataFrame)
    assert made["schema"] == ["stubclusterer0", "stubclusterer1"] and made["orient"] == "row"
    np.testing.assert_allclose(made["data"], [[0.0, 5.0], [5.0, 0.0]])


def test_set_output_polars():
    pl = pytest.importorskip("polars")
    out = StubClusterer().set_output(transform="polars").fit_transform(np.eye(2))
    assert isinstance(out, pl.DataFrame) and out.columns == ["stubclusterer0", "stubclusterer1"]


def test_set_output_validates_and_none_keeps_the_choice():
    est = StubClusterer().set_output(transform="pandas")
    assert est.set_output() is est
    assert est._sklearn_output_config == {"transform": "pandas"}
    with pytest.raises(ValueError, match="transform must be one of"):
        est.set_output(transform="arrow")


def test_set_output_on_a_torch_fit_goes_through_the_host():
    torch = pytest.importorskip("torch")
    pd = pytest.importorskip("pandas")
    X = torch.asarray(np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]]))
    est = BisectingKMeans(n_clusters=2, random_state=0).set_output(transform="pandas")
    out = est.fit_transform(X)
    assert isinstance(out, pd.DataFrame) and out.shape == (4, 2)
    assert isinstance(est.set_output(transform="default").transform(X), torch.Tensor)


def test_sklearn_global_transform_output_applies():
    sklearn = pytest.importorskip("sklearn")
    pd = pytest.importorskip("pandas")
    est = StubClusterer().fit(np.eye(2))
    with sklearn.config_context(transform_output="pandas"):
        assert isinstance(est.transform(np.eye(2)), pd.DataFrame)
        # The estimator's own choice wins over the global one.
        assert isinstance(est.set_output(transform="default").transform(np.eye(2)), np.ndarray)


def test_pipeline_set_output_pandas():
    pytest.importorskip("sklearn")
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    X = pd.DataFrame(
        np.array([[0.0, 0.0], [0.1, 0.2], [5.0, 5.0], [5.2, 5.1]]), columns=["x", "y"], index=list("pqrs")
    )
    pipe = Pipeline(
        [("scale", StandardScaler()), ("cluster", BisectingKMeans(n_clusters=2, random_state=0))]
    ).set_output(transform="pandas")
    out = pipe.fit_transform(X)
    assert isinstance(out, pd.DataFrame)
    assert out.columns.tolist() == ["bisectingkmeans0", "bisectingkmeans1"]
    assert out.index.tolist() == list("pqrs")
    assert pipe.named_steps["cluster"].feature_names_in_.tolist() == ["x", "y"]
    assert pipe.get_feature_names_out().tolist() == ["bisectingkmeans0", "bisectingkmeans1"]
    assert pipe.predict(X).shape == (4,)


# -- sklearn.base integration --------------------------------------------------


def test_base_estimator_ancestry_clone_and_html_repr():
    base = pytest.importorskip("sklearn.base")
    est = BisectingKMeans(n_clusters=3, random_state=0).set_output(transform="pandas")
    assert adopt_sklearn_base()
    assert isinstance(est, base.BaseEstimator)
    assert isinstance(StubClusterer(), base.BaseEstimator)
    # Our own methods keep precedence over BaseEstimator's.
    assert type(est).get_params is EstimatorBase.get_params
    assert repr(est) == "BisectingKMeans(n_clusters=3, random_state=0)"
    copy = base.clone(est)
    assert copy is not est and copy.get_params() == est.get_params()
    assert copy._sklearn_output_config == {"transform": "pandas"}
    html = est._repr_html_()
    assert "BisectingKMeans" in html and "<style>" in html
    assert "<style>" in est._repr_mimebundle_()["text/html"]
    with base.config_context(display="text"):
        assert "text/html" not in est._repr_mimebundle_()
    assert base.is_clusterer(est)
    fitted = pickle.loads(pickle.dumps(BisectingKMeans(n_clusters=2).fit(np.eye(3))))
    assert fitted.predict(np.eye(3)).shape == (3,)


def test_html_repr_without_sklearn():
    out = _run_python(
        """
        from kmeans_xp import BisectingKMeans
        print(BisectingKMeans(n_clusters=3)._repr_html_())
        """
    )
    assert out == "<pre>BisectingKMeans(n_clusters=3)</pre>"


def test_check_estimator_emits_no_warning_on_bisecting_kmeans():
    checks = pytest.importorskip("sklearn.utils.estimator_checks")
    est = BisectingKMeans(n_clusters=3, random_state=0, max_iter=20)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = checks.check_estimator(
            est, on_fail=None, expected_failed_checks=est._sklearn_expected_failed_checks()
        )
    failed = [(r["check_name"], str(r["exception"])[:300]) for r in results if r["status"] == "failed"]
    assert failed == []
    # scikit-learn's own skips (no CUDA, no cupy) are SkipTestWarnings; any
    # other warning (e.g. "does not inherit from BaseEstimator") fails here.
    others = [str(w.message) for w in caught if w.category.__name__ != "SkipTestWarning"]
    assert others == []


# -- the core estimators (issue 17, second part) --------------------------------


def test_kmeans_and_minibatch_pipeline_set_output_and_column_checks():
    pytest.importorskip("sklearn")
    pd = pytest.importorskip("pandas")
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from kmeans_xp import KMeans, MiniBatchKMeans

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(40, 2)), columns=["x", "y"])
    for est, prefix in [(KMeans(3, random_state=0), "kmeans"),
                        (MiniBatchKMeans(3, random_state=0), "minibatchkmeans")]:
        pipe = Pipeline([("scale", StandardScaler()), ("cluster", est)]).set_output(transform="pandas")
        out = pipe.fit_transform(X)
        assert out.columns.tolist() == [f"{prefix}{i}" for i in range(3)]
        assert est.feature_names_in_.tolist() == ["x", "y"]
        with pytest.raises(ValueError, match="Feature names must be in the same order"):
            est.predict(X[["y", "x"]])
        with pytest.warns(UserWarning, match="X does not have valid feature names"):
            est.score(X.to_numpy())
    # partial_fit records the names on its first call and checks them after.
    stream = MiniBatchKMeans(3, random_state=0).partial_fit(X)
    assert stream.feature_names_in_.tolist() == ["x", "y"]
    with pytest.raises(ValueError, match="Feature names unseen at fit time"):
        stream.partial_fit(X.rename(columns={"y": "z"}))


@pytest.mark.parametrize("dask", [False, True], ids=["memory", "dask"])
def test_distinct_clusters_warning_is_sklearns(dask):
    sklearn_exceptions = pytest.importorskip("sklearn.exceptions")
    from kmeans_xp import KMeans

    X = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]] * 2)
    if dask:
        da = pytest.importorskip("dask.array")
        X = da.from_array(X, chunks=5)
    with pytest.warns(sklearn_exceptions.ConvergenceWarning, match=r"distinct clusters \(4\)"):
        KMeans(5, init=np.unique(np.asarray(X), axis=0).tolist() + [[1.0, 1.0]], n_init=1).fit(X)


def test_algorithm_and_copy_x_parameters():
    from kmeans_xp import KMeans, k_means

    X = np.array([[0.0, 0.0], [0.2, 0.1], [9.0, 9.0], [9.1, 8.8]])
    lloyd = KMeans(2, random_state=0, algorithm="lloyd").fit(X)
    elkan = KMeans(2, random_state=0, algorithm="elkan", copy_x=False).fit(X)
    np.testing.assert_array_equal(lloyd.cluster_centers_, elkan.cluster_centers_)
    with pytest.warns(RuntimeWarning, match="algorithm='elkan' doesn't make sense"):
        KMeans(1, algorithm="elkan").fit(X)
    with pytest.raises(ValueError, match="'algorithm' parameter must be one of"):
        KMeans(2, algorithm="full").fit(X)
    with pytest.raises(ValueError, match="copy_x must be True or False"):
        KMeans(2, copy_x="yes").fit(X)
    centers, labels, inertia = k_means(X, 2, random_state=0, algorithm="elkan", copy_x=False)
    np.testing.assert_array_equal(centers, lloyd.cluster_centers_)


def test_every_sklearn_constructor_parameter_is_accepted():
    sklearn_cluster = pytest.importorskip("sklearn.cluster")
    import inspect

    import kmeans_xp

    for name in ["KMeans", "MiniBatchKMeans", "BisectingKMeans", "k_means", "kmeans_plusplus"]:
        theirs = getattr(sklearn_cluster, name)
        ours = getattr(kmeans_xp, name)
        theirs = inspect.signature(theirs.__init__ if isinstance(theirs, type) else theirs).parameters
        ours = inspect.signature(ours.__init__ if isinstance(ours, type) else ours).parameters
        missing = set(theirs) - set(ours)
        assert not missing, (name, missing)
        for param, p in theirs.items():
            if p.default is not inspect.Parameter.empty and param != "tol":
                assert ours[param].default == p.default, (name, param)
