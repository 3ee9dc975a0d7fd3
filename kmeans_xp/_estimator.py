"""What KMeans and MiniBatchKMeans share once fitted: predict, transform,
score, and the checks of their input against the fitted model."""

from __future__ import annotations

from ._array_api import Array, array_namespace, is_dask_array
from ._base import MIXED_INPUTS_REASON, EstimatorBase
from ._fit import host_views
from ._lloyd import distances_to
from ._problem import make_problem
from ._sklearn_compat import SklearnCompatMixin
from ._validation import (
    DeferredChecks,
    check_array,
    check_fitted_input,
    check_params,
    check_sample_weight,
    unit_rows,
)

__all__ = ["CentersEstimator"]


class CentersEstimator(EstimatorBase, SklearnCompatMixin):
    """Base of the estimators whose fitted state is ``cluster_centers_``:
    subclasses add ``fit`` (and ``partial_fit``), which record the feature
    names of X (``_record_feature_names``); the methods here check them."""

    #: "cosine" in KMeans with metric="cosine"; the prediction methods read it.
    metric = "euclidean"

    def fit_predict(self, X: Array, y: object = None, sample_weight: Array | None = None) -> Array:
        """Fit, then return ``labels_``."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def fit_transform(
        self, X: Array, y: object = None, sample_weight: Array | None = None
    ) -> Array:
        """Fit, then return the distances of X to the centres."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def predict(self, X: Array, sample_weight: Array | None = None) -> Array:
        """Index of the closest centre for each row of X.

        Returns an integer array of shape (n_samples,) in X's namespace and
        device. ``sample_weight`` is accepted for scikit-learn compatibility
        and does not change the result.
        """
        if is_dask_array(X):
            return self._on_dask("predict", X)
        problem, centers, checks, back = self._problem_for(X, sample_weight, method="predict")
        checks.read()
        kernels = problem.kernels
        # Labels only: no partial distances to gather.
        assign = kernels.assigner(centers, kernels.sq_row_norms(centers), partial=False)

        def step(Xb, start, stop, acc):
            return acc, assign(Xb)[0]

        _, labels = problem.runner.map(step)
        return back(labels[0] if len(labels) == 1 else problem.xp.concat(labels))

    def transform(self, X: Array) -> Array:
        """Distance of each row of X to each centre: Euclidean, or the
        cosine distance (1 - cosine similarity) when ``metric="cosine"``.

        Returns an array of shape (n_samples, n_clusters) in X's namespace,
        device and (floating) dtype.
        """
        if is_dask_array(X):
            return self._on_dask("transform", X)
        problem, centers, checks, back = self._problem_for(X, None, method="transform")
        checks.read()
        xp = problem.xp
        distances = distances_to(problem, centers, exact_nearest=True)
        # Between unit vectors ||x - c||^2 = 2 (1 - cos).
        finish = (lambda d2: d2 / 2) if self.metric == "cosine" else xp.sqrt

        def step(Xb, start, stop, acc):
            return acc, finish(distances(Xb))

        _, parts = problem.runner.map(step)
        out = back(parts[0] if len(parts) == 1 else xp.concat(parts))
        return array_namespace(out).astype(out, self.cluster_centers_.dtype, copy=False)

    def score(self, X: Array, y: object = None, sample_weight: Array | None = None) -> float:
        """Opposite of the inertia of X under the fitted centres.

        On a GPU the checks of X and ``sample_weight`` are read with the
        inertia, in one sync: a bad input then raises (the same error) once
        the pass, which writes nothing, has run. Host arrays are checked
        before it.
        """
        if is_dask_array(X):
            return self._on_dask("score", X, sample_weight)
        problem, centers, checks, _ = self._problem_for(X, sample_weight, method="score")
        if problem.kernels.cheap_reads:
            checks.read()  # host arrays: before the pass, at no cost
        xp, kernels = problem.xp, problem.kernels
        assign = kernels.assigner(centers, kernels.sq_row_norms(centers))

        def step(Xb, start, stop, acc):
            _, partial = assign(Xb)
            d2 = xp.clip(partial + kernels.sq_row_norms(Xb), min=0)
            w = problem.block_weights(start, stop)
            return acc + (xp.sum(d2) if w is None else xp.sum(w * d2)), None

        accs, _ = problem.runner.map(step, lambda: 0.0)
        (inertia,) = checks.read(sum(accs[1:], accs[0]))
        return -(inertia / 2 if self.metric == "cosine" else inertia)

    def _check_common_params(self, **extra) -> None:
        """Check the parameters every centres estimator has, and ``extra``."""
        check_params(
            n_clusters=self.n_clusters,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            **extra,
        )

    def _on_dask(self, method: str, X, *args):
        """``method`` on a Dask array: the Dask driver's, after the checks
        against the fitted model (the driver checks the chunks)."""
        from . import _dask

        self._check_fitted()
        self._check_feature_names(X)
        return getattr(_dask, f"dask_{method}")(self, X, *args)

    def _problem_for(self, X, sample_weight, method: str = "predict"):
        """Validate X against the fitted model; return a problem whose blocks
        are shifted by the centres' mean, the centres in that frame, the
        checks of the values of X and the weights, not read yet (the caller
        reads them with ``checks.read``, alone or with its result: one sync),
        and the function that brings result arrays back to X's namespace
        (torch CPU tensors run the numpy code on views, as in ``fit``).

        X must use the namespace and device the model was fitted on: moving
        it would be a hidden copy. ``to_namespace`` converts the model.
        """
        self._check_fitted()
        self._check_feature_names(X)
        checks = DeferredChecks()
        X, xp, device = check_array(X, checks=checks)
        check_fitted_input(self, X, xp, f"{type(self).__name__}.{method}()", device=device)
        centers = self.cluster_centers_
        centers = xp.astype(centers, X.dtype)
        if self.metric == "cosine":
            X = unit_rows(X, xp, checks=checks)
        weights = check_sample_weight(sample_weight, X, xp, device, checks=checks)
        xp, device, (X, weights, centers), back = host_views(xp, device, X, weights, centers)
        shift = xp.mean(centers, axis=0)
        problem = make_problem(X, weights, xp, device, centers.shape[0], shift=shift)
        # The problem's shift: zero for sparse X, which is never shifted.
        return problem, centers - problem.runner.shift, checks, back

    def _sklearn_expected_failed_checks(self) -> dict[str, str]:
        # Runs only with SCIPY_ARRAY_API=1.
        return {"check_array_api_mixed_inputs": MIXED_INPUTS_REASON}
