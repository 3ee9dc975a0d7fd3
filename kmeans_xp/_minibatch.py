"""Mini-batch k-means, as ``sklearn.cluster.MiniBatchKMeans``, on any backend.

Each step draws a batch of rows (indices from the host generator, rows
taken on the device), assigns them with the same ``_lloyd_pass`` block code
Lloyd uses, and moves every centre to the running weighted mean of all the
rows it has been given (``counts_`` holds those weights). Centres that fall
far behind the others in weight are sent to random rows of the batch
(``reassignment_ratio``), and the fit stops when an exponentially weighted
average of the batch inertia stops improving (``max_no_improvement``) or
the centres stop moving (``tol``).

``partial_fit`` runs one such step on a batch the caller provides: batches
read from a file, a numpy memmap or a torch ``DataLoader``.

As in memory, rows are shifted by a fixed vector (the mean of the data, or
of the first batch given to ``partial_fit``) before any product.
"""

from __future__ import annotations

import math
import numbers
import time
import warnings

import numpy as np

from ._array_api import (
    Array,
    array_namespace,
    as_host_scalar,
    device_of,
    index_dtype,
    is_dask_array,
    to_device_array,
)
from ._estimator import CentersEstimator
from ._fit import initial_centers, where_to_run
from ._init import distinct_rows
from ._kernels import get_kernels
from ._lloyd import (
    _assign_labels,
    _lloyd_pass,
    _tolerance,
    data_mean_and_variance,
)
from ._problem import make_problem
from ._validation import (
    DeferredChecks,
    _check_int,
    check_array,
    check_fitted_input,
    check_init_array,
    check_n_clusters_fits,
    check_random_state,
    check_sample_weight,
    read_together,
    resolve_n_init,
    result_dtype,
    widest_float,
)
from .exceptions import InvalidParameterError

__all__ = ["MiniBatchKMeans"]


class MiniBatchKMeans(CentersEstimator):
    """Mini-batch k-means on numpy, PyTorch, CuPy or any array-API array.

    Follows ``sklearn.cluster.MiniBatchKMeans``: the same parameters,
    attributes and algorithm. Fitted arrays live in the namespace, device
    and dtype of the training data; random numbers come from the host
    generator, and batches are gathered on the device.

    Parameters
    ----------
    n_clusters : int, default=8
    init : {"k-means++", "random"}, array or callable, default="k-means++"
        As for ``KMeans``, computed on ``init_size`` random rows.
    max_iter : int, default=100
        Maximum passes over the data (``max_iter * n_samples / batch_size``
        steps), unless the early stopping below stops sooner.
    batch_size : int, default=1024
        Rows per mini-batch.
    verbose : int, default=0
    compute_labels : bool, default=True
        Compute ``labels_`` and ``inertia_`` over the whole data (one more
        pass) once the steps are done (or, in ``partial_fit``, on the batch).
    random_state : None, int, numpy.random.Generator or RandomState
    tol : float, default=0.0
        Stop when the squared centre change of a step is at most ``tol``
        times the mean feature variance; 0 disables this test.
    max_no_improvement : int or None, default=10
        Stop after this many steps without improvement of the smoothed
        batch inertia; None disables this test.
    init_size : int or None, default=None
        Rows drawn to initialise on (``3 * batch_size`` by default, at least
        ``3 * n_clusters``, at most n_samples).
    n_init : "auto" or int, default="auto"
        Initialisations tried; the one with the lowest inertia on a
        validation sample wins. "auto" means 1 for "k-means++" and arrays,
        3 for "random" and callables.
    reassignment_ratio : float, default=0.01
        A centre whose weight is below this fraction of the largest one is
        moved to a random row of the batch (at most every ``10 *
        n_clusters`` rows, or when a centre has no weight at all).

    Attributes
    ----------
    cluster_centers_ : array of shape (n_clusters, n_features)
    counts_ : array of shape (n_clusters,)
        Total weight of the rows each centre has been updated with.
    labels_ : integer array of shape (n_samples,)
        Only when ``compute_labels``.
    inertia_ : float
    n_iter_ : int
        Passes over the data (``ceil(n_steps_ * batch_size / n_samples)``).
    n_steps_ : int
        Mini-batch steps run.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import MiniBatchKMeans
    >>> X = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 0.0],
    ...               [4.0, 2.0], [4.0, 0.0], [4.0, 4.0],
    ...               [4.0, 5.0], [0.0, 1.0], [2.0, 2.0],
    ...               [3.0, 2.0], [5.0, 5.0], [1.0, -1.0]])
    >>> km = MiniBatchKMeans(n_clusters=2, batch_size=6, random_state=0)
    >>> for start in range(0, 12, 6):
    ...     km = km.partial_fit(X[start:start + 6])
    >>> km.cluster_centers_.shape, float(km.counts_.sum())
    ((2, 2), 12.0)
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        max_iter=100,
        batch_size=1024,
        verbose=0,
        compute_labels=True,
        random_state=None,
        tol=0.0,
        max_no_improvement=10,
        init_size=None,
        n_init="auto",
        reassignment_ratio=0.01,
    ):
        self._store_params(locals())

    # ------------------------------------------------------------------ fit

    def fit(
        self, X: Array, y: object = None, sample_weight: Array | None = None
    ) -> MiniBatchKMeans:
        """Compute the centres by mini-batch steps over X.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            Any array-API array (numpy, numpy memmap, torch, cupy, ...) or
            anything ``numpy.asarray`` accepts, or a scipy.sparse CSR/CSC
            or torch sparse CSR matrix (batches stay sparse). Never
            modified, never copied whole: batches are gathered from it.
        y : ignored
        sample_weight : array of shape (n_samples,), optional

        Returns
        -------
        self
        """
        self._check_params()
        self._record_feature_names(X)
        # The values of X, the weights and an init array: one read.
        checks = DeferredChecks()
        X, xp, device, X_input = self._check_data(X, checks)
        n_samples, n_features = X.shape
        check_n_clusters_fits(self.n_clusters, n_samples)
        weights = check_sample_weight(sample_weight, X, xp, device, checks=checks)
        rng = check_random_state(self.random_state)
        init = self._checked_init(X, xp, device, checks)
        checks.read()
        out_dtype = result_dtype(X_input, X)
        user_xp = xp
        xp, device, (X, weights, init, _), back = where_to_run(xp, device, X, weights, init, None)
        n_init = resolve_n_init(
            self.n_init, self.init, n_random=3, stacklevel=3, estimator=type(self).__name__
        )
        batch_size = min(self.batch_size, n_samples)
        init_size = self._resolve_init_size(batch_size, n_samples)

        start = time.perf_counter()
        problem = make_problem(X, weights, xp, device, self.n_clusters)
        shift, mean_variance = data_mean_and_variance(problem, need_variance=self.tol > 0)
        abs_tol = _tolerance(mean_variance, self.tol)

        # Initialisations are compared on one validation sample, as in
        # scikit-learn; each is computed on its own random sample, and their
        # inertias are read together.
        valid = _sample(X, weights, rng.integers(0, n_samples, init_size), xp, device)
        valid = _batch_problem(valid, shift, xp, device, self.n_clusters)
        runs = []
        for _ in range(n_init):
            sample = _sample(X, weights, rng.integers(0, n_samples, init_size), xp, device)
            centers = self._init_on(sample, init, shift, rng, xp, device)
            runs.append((centers, _lloyd_pass(valid, centers, want_inertia=True)[3]))
        inertias = read_together([inertia for _, inertia in runs], valid.kernels)
        for run, inertia in enumerate(inertias):
            if self.verbose:
                print(f"Inertia for init {run + 1}/{n_init}: {inertia:.6g}")
        centers = runs[min(range(n_init), key=inertias.__getitem__)][0]

        state = _State(self, xp, device, batch_size)
        n_steps = (self.max_iter * n_samples) // batch_size
        # With tol > 0 a step's centre change is read with the next step's
        # figures (one read a step): when it was within tol, that next step
        # is undone, its batch draw included, and the fit is the one that
        # reading at once gives.
        last_change = None
        i = -1
        for i in range(n_steps):
            drawn_from = rng.bit_generator.state if last_change is not None else None
            batch = _sample(X, weights, rng.integers(0, n_samples, batch_size), xp, device)
            stepped = state.step(batch, centers, shift, rng, last_change=last_change, tol=abs_tol)
            if stepped is None:
                rng.bit_generator.state = drawn_from
                i -= 1
                if self.verbose:
                    print(f"Converged (small centers change) at step {i + 1}/{n_steps}")
                break
            new_centers, batch_inertia = stepped
            # The first step's change is that of the initial centres: not a test.
            if abs_tol > 0 and i > 0:
                last_change = problem.kernels.sq_sum(new_centers - centers)
            centers = new_centers
            if state.converged(i, n_steps, n_samples, batch_inertia):
                break
        n_steps_run = i + 1

        fitted = dict(
            n_steps_=n_steps_run,
            n_iter_=int(math.ceil(n_steps_run * batch_size / n_samples)),
            n_features_in_=n_features,
        )
        if self.compute_labels:
            labels, inertia = _assign_labels(problem, centers)
            fitted.update(labels_=back(labels), inertia_=as_host_scalar(inertia))
        else:
            ewa = state.ewa_inertia if state.ewa_inertia is not None else 0.0
            fitted.update(inertia_=ewa * n_samples)
        fitted.update(
            cluster_centers_=user_xp.astype(back(centers + shift), out_dtype),
            counts_=back(state.published_counts(X.dtype)),
            fit_time_=time.perf_counter() - start,
        )
        self.__dict__.pop("labels_", None)
        self._set_fitted(**fitted)
        # A later partial_fit goes on from these centres and weights.
        self._stream_state = (shift, state)
        self._rng = rng
        return self

    # ---------------------------------------------------------- partial_fit

    def partial_fit(
        self, X: Array, y: object = None, sample_weight: Array | None = None
    ) -> MiniBatchKMeans:
        """One mini-batch step on the rows of X.

        The first call initialises the centres on X (so it needs at least
        ``n_clusters`` rows); every call must give the same number of
        features, in the same namespace and on the same device.

        Parameters
        ----------
        X : array of shape (n_batch, n_features)
        y : ignored
        sample_weight : array of shape (n_batch,), optional

        Returns
        -------
        self
        """
        started = hasattr(self, "_stream_state")
        if not started:
            self._check_params()
            self._record_feature_names(X)
        else:
            self._check_feature_names(X)
        checks = DeferredChecks()
        X, xp, device, X_input = self._check_data(X, checks)
        if started:
            check_fitted_input(self, X, xp, "MiniBatchKMeans.partial_fit()", device=device)
        weights = check_sample_weight(sample_weight, X, xp, device, checks=checks)
        init = None
        if not started:
            check_n_clusters_fits(self.n_clusters, X.shape[0])
            init = self._checked_init(X, xp, device, checks)
        checks.read()
        out_dtype = result_dtype(X_input, X)
        user_xp = xp
        xp, device, (X, weights, init, _), back = where_to_run(xp, device, X, weights, init, None)
        if not started:
            rng = check_random_state(self.random_state)
            self._rng = rng
            batch_size = min(self.batch_size, X.shape[0])
            init_size = self._resolve_init_size(batch_size, X.shape[0])
            # The first batch's mean is the fixed shift of the whole stream.
            first = make_problem(X, weights, xp, device, self.n_clusters)
            shift, _ = data_mean_and_variance(first, need_variance=False)
            sample = (X, weights)
            if init_size < X.shape[0]:
                sample = _sample(X, weights, rng.integers(0, X.shape[0], init_size), xp, device)
            centers = self._init_on(sample, init, shift, rng, xp, device)
            state = _State(self, xp, device, batch_size)
            self._stream_state = (shift, state)
            self.n_steps_ = 0
        else:
            shift, state = self._stream_state
            # (a numpy view of torch CPU centres, as X is one)
            centers = xp.astype(xp.asarray(self.cluster_centers_), X.dtype) - shift
        centers, _ = state.step((X, weights), centers, shift, self._rng)

        fitted = dict(n_steps_=self.n_steps_ + 1, n_features_in_=X.shape[1])
        if self.compute_labels:
            problem = make_problem(X, weights, xp, device, self.n_clusters)
            problem.runner.shift = shift
            labels, inertia = _assign_labels(problem, centers)
            fitted.update(labels_=back(labels), inertia_=as_host_scalar(inertia))
        fitted.update(
            cluster_centers_=user_xp.astype(back(centers + shift), out_dtype),
            counts_=back(state.published_counts(X.dtype)),
        )
        self._set_fitted(**fitted)
        return self

    def _sklearn_expected_failed_checks(self) -> dict[str, str]:
        # scikit-learn lists the same check for its own MiniBatchKMeans.
        reason = (
            "batches are drawn uniformly by row index, so a row of weight 2 "
            "and the same row repeated twice lead to other random batches "
            "and another local optimum."
        )
        return {
            **super()._sklearn_expected_failed_checks(),
            "check_sample_weight_equivalence_on_dense_data": reason,
            "check_sample_weight_equivalence_on_sparse_data": reason,
        }

    # ------------------------------------------------------------- helpers

    def _check_params(self) -> None:
        self._check_common_params()
        _check_int(self.batch_size, "batch_size", 1)
        if self.init_size is not None:
            _check_int(self.init_size, "init_size", 1)
        if self.max_no_improvement is not None:
            _check_int(self.max_no_improvement, "max_no_improvement", 0)
        ratio = self.reassignment_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not (
            0 <= ratio < math.inf
        ):
            raise InvalidParameterError(
                f"reassignment_ratio must be a finite real number >= 0, got {ratio!r}."
            )
        if not isinstance(self.compute_labels, (bool, np.bool_)):
            raise InvalidParameterError(
                f"compute_labels must be True or False, got {self.compute_labels!r}."
            )

    def _check_data(self, X, checks: DeferredChecks):
        if is_dask_array(X):
            raise TypeError(
                "MiniBatchKMeans does not take Dask arrays; use KMeans, which runs "
                "on Dask, or call partial_fit on computed chunks."
            )
        X_input = X
        X, xp, device = check_array(X, checks=checks)
        return X, xp, device, X_input

    def _checked_init(self, X, xp, device, checks: DeferredChecks):
        init = self.init
        if isinstance(init, str) or callable(init):
            return init
        return check_init_array(init, X, xp, device, self.n_clusters, checks=checks)

    def _resolve_init_size(self, batch_size: int, n_samples: int) -> int:
        init_size = self.init_size
        if init_size is None:
            init_size = 3 * batch_size
        if init_size < self.n_clusters:
            if self.init_size is not None:
                # scikit-learn's category and text.
                warnings.warn(
                    f"init_size={self.init_size} should be larger than "
                    f"n_clusters={self.n_clusters}. Setting it to "
                    "min(3*n_clusters, n_samples)",
                    RuntimeWarning,
                    stacklevel=3,
                )
            init_size = 3 * self.n_clusters
        return min(init_size, n_samples)

    def _init_on(self, sample, init, shift, rng, xp, device):
        """Initial centres (shifted coordinates) from a (rows, weights) sample."""
        rows, weights = sample
        problem = make_problem(rows, weights, xp, device, self.n_clusters)
        problem.runner.shift = shift
        return initial_centers(problem, init, self.n_clusters, rng)


def _sample(X, weights, indices, xp, device):
    """Rows (and weights) of X at host ``indices``, gathered on the device
    (sparse rows for sparse X)."""
    idx = to_device_array(indices, xp, dtype=index_dtype(xp, device), device=device)
    rows = get_kernels(xp, device, X).select_rows(X, idx)
    return rows, (None if weights is None else xp.take(weights, idx))


def _batch_problem(batch, shift, xp, device, n_clusters):
    rows, weights = batch
    problem = make_problem(rows, weights, xp, device, n_clusters)
    problem.runner.shift = shift
    return problem


class _State:
    """What mini-batch steps carry over: cluster weights, the reassignment
    clock and the early-stopping statistics (scikit-learn's semantics).

    The weights are kept in float64 where the device has it, whatever X's
    dtype: a float32 running count stops at 2**24 rows a cluster. Each step
    reads the device once (see ``step``).
    """

    def __init__(self, estimator: MiniBatchKMeans, xp, device, batch_size: int):
        self.est = estimator
        n_clusters = estimator.n_clusters
        self.counts = xp.zeros((n_clusters,), dtype=widest_float(xp, device), device=device)
        self.batch_size = batch_size
        self.since_reassign = 0
        self.ewa_inertia = None
        self.ewa_inertia_min = None
        self.no_improvement = 0

    @property
    def xp(self):
        # Looked up, not stored: a module would make the estimator unpicklable.
        return array_namespace(self.counts)

    def published_counts(self, dtype):
        """``counts_``: the weights in X's dtype, as scikit-learn gives them."""
        return self.xp.astype(self.counts, dtype)

    def step(self, batch, centers, shift, rng, *, last_change=None, tol: float = 0.0):
        """One mini-batch step from ``centers`` (shifted coordinates).

        Its one device read takes the batch inertia under ``centers``, the
        number of empty and of light clusters (the reassignment), and
        ``last_change``, the previous step's squared centre change (a 0-d
        array, or None). When that change is at most ``tol`` the previous
        step has converged: nothing is changed and None is returned. Else
        the new centres and the batch inertia (host float) are returned.
        """
        xp = self.xp
        n_clusters = centers.shape[0]
        problem = _batch_problem(batch, shift, xp, device_of(self.counts), n_clusters)
        _, sums, batch_counts, inertia = _lloyd_pass(problem, centers, want_inertia=True)
        wide = self.counts.dtype
        counts = self.counts + xp.astype(batch_counts, wide, copy=False)
        # Running weighted mean, in the weights' dtype: (old * old_weight +
        # batch sum) / new weight.
        moved = batch_counts > 0
        safe = xp.where(moved, counts, xp.ones_like(counts))
        old = xp.astype(centers, wide, copy=False) * self.counts[:, None]
        updated = (old + xp.astype(sums, wide, copy=False)) / safe[:, None]
        updated = xp.astype(updated, centers.dtype, copy=False)
        new_centers = xp.where(moved[:, None], updated, centers)
        ratio = self.est.reassignment_ratio
        low = counts < ratio * xp.max(counts)
        inertia, n_empty, n_low, last_change = read_together(
            [inertia, xp.count_nonzero(counts == 0), xp.count_nonzero(low), last_change],
            problem.kernels,
        )
        if last_change is not None and last_change <= tol:
            return None
        self.counts = counts
        self.since_reassign += self.batch_size
        if n_empty or self.since_reassign >= 10 * n_clusters:
            self.since_reassign = 0
            if ratio > 0 and n_low:
                new_centers = self._reassign(problem, new_centers, rng, low, n_low)
        return new_centers, inertia

    def _reassign(self, problem, centers, rng, low, n_low: int):
        """Move the ``n_low`` centres of too little weight (mask ``low``) to
        random rows of the batch."""
        xp = self.xp
        counts = self.counts
        device = device_of(counts)
        limit = int(0.5 * problem.X.shape[0])
        if n_low > limit:
            # Reassign at most half a batch, the lightest: the light clusters
            # are the first ones in weight order, so exactly ``limit`` stay.
            order = xp.argsort(counts, stable=True)
            rank = xp.argsort(order, stable=True)
            low = low & (rank < limit)
            n_low = limit
        if n_low == 0:
            return centers
        picks = distinct_rows(problem, n_low, rng)
        new_rows = problem.take_rows(picks) - problem.runner.shift
        if self.est.verbose:
            print(f"[MiniBatchKMeans] Reassigning {n_low} cluster centers.")
        # The k-th low cluster (in index order) gets the k-th picked row.
        low_ids = xp.nonzero(low)[0]
        ids = xp.arange(centers.shape[0], dtype=low_ids.dtype, device=device)
        place = xp.astype(ids[:, None] == low_ids[None, :], centers.dtype)
        centers = xp.where(low[:, None], place @ new_rows, centers)
        # Not to zero: a reassigned centre would be reassigned at once.
        floor = xp.min(xp.where(low, xp.full_like(counts, math.inf), counts))
        self.counts = xp.where(low, floor, counts)
        return centers

    def converged(self, step, n_steps, n_samples, batch_inertia) -> bool:
        """scikit-learn's early stopping on the smoothed batch inertia (the
        centre change is tested by the caller, see ``step``)."""
        verbose = self.est.verbose
        batch_inertia /= self.batch_size
        step += 1
        if step == 1:
            # The first inertia is that of the initial centres.
            if verbose:
                print(f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}")
            return False
        if self.ewa_inertia is None:
            self.ewa_inertia = batch_inertia
        else:
            alpha = min(self.batch_size * 2.0 / (n_samples + 1), 1.0)
            self.ewa_inertia = self.ewa_inertia * (1 - alpha) + batch_inertia * alpha
        if verbose:
            print(
                f"Minibatch step {step}/{n_steps}: mean batch inertia: {batch_inertia}, "
                f"ewa inertia: {self.ewa_inertia}"
            )
        if self.ewa_inertia_min is None or self.ewa_inertia < self.ewa_inertia_min:
            self.no_improvement = 0
            self.ewa_inertia_min = self.ewa_inertia
        else:
            self.no_improvement += 1
        max_no_improvement = self.est.max_no_improvement
        if max_no_improvement is not None and self.no_improvement >= max_no_improvement:
            if verbose:
                print(
                    f"Converged (lack of improvement in inertia) at step {step}/{n_steps}"
                )
            return True
        return False
