"""A minimal scikit-learn compatible estimator base, without scikit-learn.

``get_params``/``set_params`` read the constructor's signature, as
scikit-learn's ``BaseEstimator`` does, so ``sklearn.base.clone``,
``GridSearchCV`` and ``Pipeline`` accept our estimators while scikit-learn
stays an optional dependency.
"""

from __future__ import annotations

import inspect

from .exceptions import InvalidParameterError, NotFittedError


class EstimatorBase:
    """Parameter handling and fitted-state checks shared by the estimators."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict:
        """Parameters of this estimator, as passed to the constructor."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set parameters by name; returns self."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise InvalidParameterError(
                    f"Invalid parameter {name!r} for {type(self).__name__}; "
                    f"valid parameters are {valid}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default
            for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults.get(name, inspect.Parameter.empty)
            if default is inspect.Parameter.empty or not _same(value, default):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def _check_fitted(self) -> None:
        if not hasattr(self, "cluster_centers_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet; call "
                "'fit' with appropriate arguments before using this estimator."
            )

    def _set_fitted(self, **attributes) -> None:
        """Publish fitted attributes together, once the fit has finished, so an
        interrupted fit never leaves a half-updated estimator."""
        self.__dict__.update(attributes)


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays compare elementwise
        return a is b
