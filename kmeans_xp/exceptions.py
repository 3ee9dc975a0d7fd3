"""Exceptions and warnings raised by kmeans_xp.

They subclass the builtin types scikit-learn's equivalents subclass, so code
written against scikit-learn's ``except`` clauses keeps working.
"""

from __future__ import annotations

__all__ = [
    "NotFittedError",
    "ConvergenceWarning",
    "InvalidParameterError",
    "MemoryRetryWarning",
]


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class ConvergenceWarning(UserWarning):
    """The fit finished, but the result is degenerate (e.g. fewer distinct
    clusters than requested)."""


class InvalidParameterError(ValueError, TypeError):
    """A parameter has the wrong type or value.

    Subclasses both ValueError and TypeError, as scikit-learn's does, so
    either ``except`` clause catches it.
    """


class MemoryRetryWarning(UserWarning):
    """A block of rows ran out of memory and was retried in smaller blocks.

    The result is unchanged; the fit was slower than it could have been.
    """
