"""A minimal scikit-learn compatible estimator base, without scikit-learn.

``get_params``/``set_params`` read the constructor's signature, as
scikit-learn's ``BaseEstimator`` does, so ``sklearn.base.clone``,
``GridSearchCV`` and ``Pipeline`` accept our estimators while scikit-learn
stays an optional dependency.
"""

from __future__ import annotations

import copy
import inspect

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj

from ._array_api import to_host
from .exceptions import InvalidParameterError, not_fitted_error

__all__ = ["MIXED_INPUTS_REASON", "EstimatorBase"]

#: Why scikit-learn's ``check_array_api_mixed_inputs`` cannot pass, for the
#: estimators' lists of expected failed checks.
MIXED_INPUTS_REASON = (
    "by design, sample_weight (and init) in another namespace or on another "
    "device than X raise an error naming both instead of being copied to X's "
    "device behind the user's back."
)


class EstimatorBase:
    """Parameter handling and fitted-state checks shared by the estimators."""

    @classmethod
    def _param_names(cls) -> list[str]:
        # Read once per class: every construction asks (the latency row).
        names = cls.__dict__.get("_param_names_of_class")
        if names is None:
            signature = inspect.signature(cls.__init__)
            names = tuple(sorted(
                name
                for name, p in signature.parameters.items()
                if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            ))
            cls._param_names_of_class = names
        return list(names)

    def _store_params(self, values: dict) -> None:
        """Store each constructor parameter as given, under its own name, as
        scikit-learn requires of ``__init__``; ``values`` is its ``locals()``."""
        for name in self._param_names():
            setattr(self, name, values[name])

    def __sklearn_tags__(self):
        # Every estimator here is a clusterer. Called by scikit-learn only, so importing it here keeps it optional.
        from sklearn.utils import InputTags, Tags, TargetTags, TransformerTags

        return Tags(
            estimator_type="clusterer",
            # scipy CSR/CSC and torch sparse CSR are fitted (tests/test_sparse.py).
            input_tags=InputTags(sparse=True),
            target_tags=TargetTags(required=False),
            transformer_tags=TransformerTags(preserves_dtype=["float64", "float32"]),
            array_api_support=True,
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
        if not self.__sklearn_is_fitted__():
            raise not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet; call "
                "'fit' with appropriate arguments before using this estimator."
            )

    def __sklearn_is_fitted__(self) -> bool:
        """Whether ``fit`` has finished (scikit-learn's ``check_is_fitted``
        asks this)."""
        return "cluster_centers_" in self.__dict__

    def _set_fitted(self, **attributes) -> None:
        """Publish fitted attributes together, once the fit has finished, so an
        interrupted fit never leaves a half-updated estimator."""
        self.__dict__.update(attributes)

    def to_namespace(self, xp, device=None):
        """A copy of this estimator whose arrays live in namespace ``xp``.

        Every array the estimator holds (fitted attributes such as
        ``cluster_centers_`` and ``labels_``, and an array ``init``) is
        copied through the host, so a model fitted on a GPU can be used,
        pickled and unpickled on a CPU-only machine. The estimator itself is
        not changed.

        Parameters
        ----------
        xp : array namespace or module
            ``numpy``, ``torch``, ``cupy``, ``array_api_strict``, or an
            ``array_api_compat`` wrapper of one.
        device : optional
            Target device in ``xp``; the namespace's default when None.

        Returns
        -------
        estimator : a new estimator of the same class

        Notes
        -----
        A dtype the target lacks (bfloat16 going to numpy) arrives as
        float32; float64 and int64 going to JAX without x64 arrive as
        float32 and int32.

        Examples
        --------
        >>> import numpy as np
        >>> from kmeans_xp import KMeans
        >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0]])
        >>> km = KMeans(2, random_state=0).fit(X)
        >>> type(km.to_namespace(np).cluster_centers_).__name__
        'ndarray'
        """
        self._check_fitted()
        converted = copy.copy(self)
        for name, value in vars(self).items():
            if is_array_api_obj(value) and not name.startswith("__"):
                setattr(converted, name, _convert_array(value, xp, device))
        return converted

    def to_numpy(self):
        """A copy of this estimator with every array as a numpy array on the
        host: ``to_namespace(numpy)``. Use it before pickling a model fitted
        on a GPU for a machine without one."""
        return self.to_namespace(np)

    def _sklearn_expected_failed_checks(self) -> dict[str, str]:
        """scikit-learn estimator checks that cannot apply to this estimator,
        as ``{check name: reason}``.

        scikit-learn 1.9's ``Tags`` has no field for them; pass this to
        ``parametrize_with_checks(..., expected_failed_checks=...)``.
        """
        return {}


def _convert_array(a, xp, device):
    """Array ``a`` copied into namespace ``xp`` on ``device`` via the host."""
    source = array_namespace(a)
    dtype_name = str(a.dtype).rsplit(".", 1)[-1]
    try:
        host = to_host(a)
    except (BufferError, TypeError, ValueError, RuntimeError):
        # e.g. bfloat16, which numpy and DLPack consumers may lack.
        host = to_host(source.astype(a, source.float32))
    if xp is np or getattr(xp, "__name__", "") == "array_api_compat.numpy":
        return np.asarray(host)
    out = xp.asarray(host) if device is None else xp.asarray(host, device=device)
    # Only dtypes the target has: JAX without x64 lists no float64 or int64,
    # and its arrays arrive in float32 and int32.
    # (``xp`` may be a bare module such as ``torch``: ask the array's own
    # array-API namespace.)
    available = array_namespace(out).__array_namespace_info__().dtypes()
    target_dtype = available.get(dtype_name)
    if target_dtype is not None and out.dtype != target_dtype:
        out = xp.astype(out, target_dtype)
    return out


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # arrays compare elementwise
        return a is b
