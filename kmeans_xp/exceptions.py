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
    also catches whenever scikit-learn has been imported.

    scikit-learn is never imported here: code that catches its exception
    has imported it already, and other code needs no such class.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return NotFittedError(message)
    global _SklearnNotFittedError
    if _SklearnNotFittedError is None:
        _SklearnNotFittedError = type(
            "_SklearnNotFittedError",
            (NotFittedError, sklearn_exceptions.NotFittedError),
            {"__module__": __name__, "__doc__": NotFittedError.__doc__},
        )
    return _SklearnNotFittedError(message)


#: Built on first use by ``not_fitted_error``; a module global so it pickles.
_SklearnNotFittedError = None


class ConvergenceWarning(UserWarning):
    """The fit finished, but the result is degenerate (e.g. fewer distinct
    clusters than requested).

    Warn with ``convergence_warning()`` as the category: when scikit-learn
    is loaded the warning is also a ``sklearn.exceptions.ConvergenceWarning``,
    so its filters and ``pytest.warns`` catch it.
    """


def convergence_warning() -> type[ConvergenceWarning]:
    """The category to warn ``ConvergenceWarning`` with.

    A subclass of both ``ConvergenceWarning`` and scikit-learn's class of the
    same name when ``sklearn.exceptions`` has been imported, else
    ``ConvergenceWarning`` itself. As for ``not_fitted_error``, scikit-learn
    is never imported here: ``import sklearn`` costs over a second (it loads
    scipy), and a program that filters or catches scikit-learn's warning has
    imported it already.
    """
    sklearn_exceptions = sys.modules.get("sklearn.exceptions")
    if sklearn_exceptions is None:
        return ConvergenceWarning
    global _SklearnConvergenceWarning
    if _SklearnConvergenceWarning is None:
        _SklearnConvergenceWarning = type(
            "_SklearnConvergenceWarning",
            (ConvergenceWarning, sklearn_exceptions.ConvergenceWarning),
            {"__module__": __name__, "__doc__": ConvergenceWarning.__doc__},
        )
    return _SklearnConvergenceWarning


#: Built on first use by ``convergence_warning``; a module global so it pickles.
_SklearnConvergenceWarning = None


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
