"""Exceptions and warnings raised by kmeans_xp.

They subclass the builtin types scikit-learn's equivalents subclass, so code
written against scikit-learn's ``except`` clauses keeps working.
"""

from __future__ import annotations

import sys

__all__ = [
    "ConvergenceWarning",
    "InvalidParameterError",
    "MemoryRetryWarning",
    "NamespaceMismatchError",
    "NotFittedError",
]


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``.

    Raise it through ``not_fitted_error``: when scikit-learn is loaded the
    raised error is also a ``sklearn.exceptions.NotFittedError``.
    """


def not_fitted_error(message: str) -> NotFittedError:
    """A ``NotFittedError`` that ``except sklearn.exceptions.NotFittedError``
    also catches whenever scikit-learn has been imported (see
    ``_sklearn_twin``)."""
    return _sklearn_twin(NotFittedError)(message)


def _sklearn_twin(cls: type) -> type:
    """``cls``, or once ``sklearn.exceptions`` has been imported, a subclass
    of both ``cls`` and scikit-learn's class of the same name, so that
    scikit-learn's ``except`` clauses, warning filters and ``pytest.warns``
    catch ours too.

    scikit-learn is never imported here: ``import sklearn`` costs over a
    second (it loads scipy), and code that catches or filters its classes
    has imported it already. The subclass is built on first use and kept as
    the module global ``_Sklearn<name>``, so its instances pickle.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return cls
    name = f"_Sklearn{cls.__name__}"
    twin = globals()[name]
    if twin is None:
        twin = type(
            name,
            (cls, getattr(sklearn_exceptions, cls.__name__)),
            {"__module__": __name__, "__doc__": cls.__doc__},
        )
        globals()[name] = twin
    return twin


#: Built on first use by ``_sklearn_twin``; module globals so they pickle.
_SklearnNotFittedError = None
_SklearnConvergenceWarning = None


class ConvergenceWarning(UserWarning):
    """The fit finished, but the result is degenerate (e.g. fewer distinct
    clusters than requested).

    Warn with ``convergence_warning()`` as the category: when scikit-learn
    is loaded the warning is also a ``sklearn.exceptions.ConvergenceWarning``,
    so its filters and ``pytest.warns`` catch it.
    """


def convergence_warning() -> type[ConvergenceWarning]:
    """The category to warn ``ConvergenceWarning`` with: also scikit-learn's
    ``ConvergenceWarning`` when ``sklearn.exceptions`` has been imported
    (see ``_sklearn_twin``), else ``ConvergenceWarning`` itself."""
    return _sklearn_twin(ConvergenceWarning)


class InvalidParameterError(ValueError, TypeError):
    """A parameter has the wrong type or value.

    Subclasses both ValueError and TypeError, as scikit-learn's does, so
    either ``except`` clause catches it.
    """


class NamespaceMismatchError(TypeError, ValueError):
    """An array from another library than the fitted model's (or than X).

    A TypeError (the wrong kind of array) that is also a ValueError, which
    scikit-learn's array-API checks expect for the same mistake.
    """


class MemoryRetryWarning(UserWarning):
    """A block of rows ran out of memory and was retried in smaller blocks.

    The result is unchanged; the fit was slower than it could have been.
    """
