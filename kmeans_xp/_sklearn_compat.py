"""scikit-learn integration that needs no scikit-learn: feature names,
``set_output`` and, when scikit-learn is loaded, ``BaseEstimator`` ancestry.

``SklearnCompatMixin`` is meant to be the *last* base of an estimator
(``class KMeans(EstimatorBase, SklearnCompatMixin)``), so the estimator's
own ``get_params``, ``__repr__`` and ``__sklearn_tags__`` keep precedence.
Neither scikit-learn nor pandas nor polars is imported here at module
import: pandas and polars only when an output in their format is asked for,
scikit-learn never (its classes are taken from ``sys.modules`` when a
program has imported it).

How the ancestry works: scikit-learn's ``check_estimator`` warns unless
``isinstance(estimator, sklearn.base.BaseEstimator)``, which only a real
subclass passes. Importing scikit-learn to subclass it would cost over a
second on ``import kmeans_xp`` (it loads scipy). Instead the mixin's last
ancestor, ``_SklearnBaseSlot``, is rebased onto ``BaseEstimator`` the first
time an estimator is created (or asked for its tags, params or HTML repr)
after ``sklearn.base`` was imported. From then on every estimator class
deriving from the mixin, and every existing instance, is a
``BaseEstimator``; before, they work the same through their own methods.
"""

from __future__ import annotations

import functools
import sys
import warnings

import numpy as np

__all__ = ["SklearnCompatMixin", "adopt_sklearn_base", "feature_names_of"]

_OUTPUTS = ("default", "pandas", "polars")


class _Placeholder:
    """A plain base, so ``_SklearnBaseSlot.__bases__`` can be reassigned:
    CPython refuses to rebase a class whose only base is ``object``."""


class _SklearnBaseSlot(_Placeholder):
    """Becomes a subclass of ``sklearn.base.BaseEstimator`` once scikit-learn
    is loaded (see ``adopt_sklearn_base``)."""


def adopt_sklearn_base() -> bool:
    """Make ``_SklearnBaseSlot`` (and so every estimator using the mixin) a
    subclass of ``sklearn.base.BaseEstimator`` if scikit-learn is loaded.

    Returns whether the estimators are ``BaseEstimator`` subclasses now.
    Cheap when there is nothing to do: one dictionary look-up.
    """
    if _SklearnBaseSlot.__bases__[0] is not _Placeholder:
        return True
    base = sys.modules.get("sklearn.base")
    base_estimator = getattr(base, "BaseEstimator", None)
    if base_estimator is None:  # not imported, or still being imported
        return False
    _SklearnBaseSlot.__bases__ = (base_estimator,)
    return True


def feature_names_of(X):
    """Column names of a pandas or polars DataFrame as an object array, or
    None for other inputs and for names that are not all strings.

    Mixed string and non-string names raise scikit-learn's ``TypeError``.
    """
    module = type(X).__module__.split(".", 1)[0]
    if module not in ("pandas", "polars") or not hasattr(X, "columns") or getattr(X, "ndim", 2) != 2:
        return None
    names = np.asarray(list(X.columns), dtype=object)
    if len(names) == 0:
        return None
    types = sorted({type(name).__qualname__ for name in names})
    if len(types) > 1 and "str" in types:
        raise TypeError(
            "Feature names are only supported if all input features have string names, "
            f"but your input has {types} as feature name / column name types. "
            "If you want feature names to be stored and validated, you must convert "
            "them all to strings, by using X.columns = X.columns.astype(str) for "
            "example. Otherwise you can remove feature / column names from your input "
            "data, or convert them all to a non-string data type."
        )
    return names if types == ["str"] else None


def _names_list(names) -> str:
    lines = [f"- {name}\n" for name in names[:5]]
    return "".join(lines) + ("- ...\n" if len(names) > 5 else "")


class SklearnCompatMixin(_SklearnBaseSlot):
    """Feature names, ``get_feature_names_out`` and ``set_output`` as
    scikit-learn's estimators have them.

    The estimator calls ``_record_feature_names(X)`` in ``fit`` and
    ``_check_feature_names(X)`` before predicting on, transforming or
    scoring X. ``transform`` and ``fit_transform`` defined by a subclass are
    wrapped to return the container chosen with ``set_output``. The number
    of output features is ``cluster_centers_.shape[0]``.
    """

    def __new__(cls, *args, **kwargs):
        adopt_sklearn_base()
        return super().__new__(cls)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for method in ("transform", "fit_transform"):
            if method in cls.__dict__ and not getattr(cls.__dict__[method], "_wraps_output", False):
                setattr(cls, method, _wrap_output_method(cls.__dict__[method], method))

    # -- feature names -----------------------------------------------------

    def _record_feature_names(self, X) -> None:
        """At fit: set ``feature_names_in_`` from a DataFrame's string
        columns, or remove it when X has none (a refit on an array)."""
        names = feature_names_of(X)
        if names is not None:
            self.__dict__["feature_names_in_"] = names
        else:
            self.__dict__.pop("feature_names_in_", None)

    def _check_feature_names(self, X) -> None:
        """After fit: warn or raise as scikit-learn does when X's column names
        disagree with ``feature_names_in_``."""
        fitted = self.__dict__.get("feature_names_in_")
        names = feature_names_of(X)
        name = type(self).__name__
        if fitted is None and names is None:
            return
        if fitted is None:
            warnings.warn(f"X has feature names, but {name} was fitted without feature names", UserWarning, stacklevel=4)
            return
        if names is None:
            warnings.warn(
                f"X does not have valid feature names, but {name} was fitted with feature names",
                UserWarning,
                stacklevel=4,
            )
            return
        if len(fitted) == len(names) and bool(np.all(fitted == names)):
            return
        unseen = sorted(set(names) - set(fitted))
        missing = sorted(set(fitted) - set(names))
        message = "The feature names should match those that were passed during fit.\n"
        if unseen:
            message += "Feature names unseen at fit time:\n" + _names_list(unseen)
        if missing:
            message += "Feature names seen at fit time, yet now missing:\n" + _names_list(missing)
        if not unseen and not missing:
            message += "Feature names must be in the same order as they were in fit.\n"
        raise ValueError(message)

    def get_feature_names_out(self, input_features=None):
        """Names of the ``transform`` output columns: the lower-case class
        name followed by the cluster index (``kmeans0``, ``kmeans1``, ...).

        Parameters
        ----------
        input_features : array-like of str, optional
            Checked against ``feature_names_in_`` (or its length against
            ``n_features_in_``) when given; it does not change the result.

        Returns
        -------
        names : numpy object array of shape (n_clusters,)
        """
        self._check_fitted()
        if input_features is not None:
            input_features = np.asarray(input_features, dtype=object)
            fitted = self.__dict__.get("feature_names_in_")
            if fitted is not None and (
                len(fitted) != len(input_features) or not bool(np.all(fitted == input_features))
            ):
                raise ValueError("input_features is not equal to feature_names_in_")
            n_in = self.__dict__.get("n_features_in_")
            if n_in is not None and len(input_features) != n_in:
                raise ValueError(
                    f"input_features should have length equal to number of features ({n_in}), "
                    f"got {len(input_features)}"
                )
        prefix = type(self).__name__.lower()
        n_out = self.cluster_centers_.shape[0]
        return np.asarray([f"{prefix}{i}" for i in range(n_out)], dtype=object)

    # -- set_output ----------------------------------------------------------

    def set_output(self, *, transform=None):
        """Choose the container ``transform`` and ``fit_transform`` return.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None
            "default": an array in X's namespace. "pandas" / "polars": a
            DataFrame on the host whose columns are
            ``get_feature_names_out()`` (and, for pandas, whose index is
            X's when X is a pandas DataFrame). None leaves the choice
            unchanged. Without a choice scikit-learn's global
            ``transform_output`` applies when scikit-learn is loaded.

        Returns
        -------
        self
        """
        if transform is None:
            return self
        if transform not in _OUTPUTS:
            raise ValueError(f"transform must be one of {list(_OUTPUTS)} or None, got {transform!r}.")
        config = dict(self.__dict__.get("_sklearn_output_config", {}))
        config["transform"] = transform
        # The attribute scikit-learn's clone copies, so clones keep the choice.
        self._sklearn_output_config = config
        return self

    def _output_container(self) -> str:
        chosen = self.__dict__.get("_sklearn_output_config", {}).get("transform")
        if chosen is not None:
            return chosen
        sklearn = sys.modules.get("sklearn")
        if sklearn is not None and hasattr(sklearn, "get_config"):
            return sklearn.get_config().get("transform_output", "default")
        return "default"

    def _wrap_output(self, out, X):
        container = self._output_container()
        # fit_transform built on the wrapped transform has wrapped already.
        if container == "default" or type(out).__module__.split(".", 1)[0] in ("pandas", "polars"):
            return out
        from ._array_api import to_host

        data = np.asarray(to_host(out))
        columns = [str(name) for name in self.get_feature_names_out()]
        if container == "pandas":
            import pandas as pd

            index = X.index if type(X).__module__.startswith("pandas") and hasattr(X, "index") else None
            return pd.DataFrame(data, index=index, columns=columns)
        if container == "polars":
            import polars as pl

            return pl.DataFrame(data, schema=columns, orient="row")
        raise ValueError(f"output config must be in {list(_OUTPUTS)}, got {container!r}")

    # -- scikit-learn entry points that trigger the rebase ---------------------

    def _repr_html_(self):
        """HTML repr for notebooks: scikit-learn's diagram when scikit-learn
        is loaded, else the plain repr escaped."""
        if adopt_sklearn_base():
            return super()._repr_html_()
        import html

        return f"<pre>{html.escape(repr(self))}</pre>"

    def _repr_mimebundle_(self, **kwargs):
        if adopt_sklearn_base():
            # scikit-learn's, which honours its display="text" setting.
            return super()._repr_mimebundle_(**kwargs)
        return {"text/plain": repr(self), "text/html": self._repr_html_()}


def _wrap_output_method(method, name):
    @functools.wraps(method)
    def wrapped(self, X, *args, **kwargs):
        return self._wrap_output(method(self, X, *args, **kwargs), X)

    wrapped._wraps_output = True
    return wrapped
