"""Public entry points: ``KMeans``, ``k_means`` and ``kmeans_plusplus``.

Each validates its parameters and data, infers the array namespace and
device once, then hands trusted arrays to the generic algorithm in
``_lloyd`` and ``_init``. The estimator is a thin state holder.
"""

from __future__ import annotations

import inspect
import time
import warnings

import numpy as np

from ._array_api import Array, is_dask_array
from ._estimator import CentersEstimator
from ._fit import fit_best_of, progress_hook, where_to_run
from ._init import _kmeans_plusplus
from ._kernels import get_kernels
from ._lloyd import data_mean_and_variance
from ._problem import make_problem
from ._sparse import is_sparse
from ._validation import (
    DeferredChecks,
    _check_int,
    check_array,
    check_init_array,
    check_n_clusters_fits,
    check_random_state,
    check_sample_weight,
    resolve_n_init,
    result_dtype,
    unit_rows,
)
from .exceptions import convergence_warning

__all__ = ["KMeans", "k_means", "kmeans_plusplus"]


class KMeans(CentersEstimator):
    """K-means clustering on numpy, PyTorch, CuPy or any array-API array.

    Follows ``sklearn.cluster.KMeans``: the same parameters, attributes and
    results (given the same initial centres). Fitted arrays live in the
    namespace, device and dtype of the training data.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters; at most the number of samples.
    init : {"k-means++", "k-means||", "random"}, array or callable, default="k-means++"
        "k-means++": greedy k-means++ with ``2 + ln(n_clusters)`` local
        trials, weighted by ``sample_weight`` (on Dask input, its scalable
        form k-means||; "k-means||" names that form explicitly and means
        k-means++ in memory). "random": distinct rows drawn
        with probability proportional to their weight. An array of shape
        (n_clusters, n_features) in the namespace and device of X (or a list
        / numpy array). A callable ``init(X, n_clusters, random_state)``
        returning such an array, where ``random_state`` is a
        ``numpy.random.Generator``.
    n_init : "auto" or int, default="auto"
        Number of initialisations; the run with the lowest inertia wins.
        "auto" means 1 for "k-means++" and arrays, 10 for "random" and
        callables.
    max_iter : int, default=300
        Maximum Lloyd iterations per run.
    tol : float, default=1e-4
        Convergence tolerance on the squared shift of the centres, relative
        to the mean variance of the features.
    verbose : int, default=0
        Print the inertia of each iteration when positive, as
        scikit-learn's KMeans does.
    metric : {"euclidean", "cosine"}, default="euclidean"
        "cosine" is spherical k-means for embeddings: rows and centres are
        scaled to unit norm, each row goes to the centre of highest cosine
        similarity, ``inertia_`` is the weighted sum of (1 - cosine
        similarity), and ``transform`` returns cosine distances. Costs one
        normalised copy of X; rows of zero norm are an error.
    random_state : None, int, numpy.random.Generator or RandomState
        Seeds the host generator all randomness comes from; the same seed
        gives the same initial centres on every backend and device.
    progress : None, bool or object, default=None
        Reports the fit as it runs. True shows a progress bar
        (``kmeans_xp._progress.ProgressBar``); an object with methods
        ``start_run(run, n_init, max_iter)``, ``iteration(i, inertia,
        center_shift)`` and ``end_run(n_iter, converged)`` is called at
        those points. Each iteration's inertia is computed only when this
        or ``verbose`` is set.
    copy_x : bool, default=True
        Accepted for scikit-learn compatibility. X is never modified (nor
        centred in place) whatever its value, so both values behave as
        scikit-learn's ``copy_x=True``.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Accepted for scikit-learn compatibility: both run Lloyd's
        algorithm, whose result from the same initial centres is the one
        Elkan's bounds reach. "elkan" with one cluster warns as
        scikit-learn does.
    process_group : None, "default" or torch.distributed.ProcessGroup, default=None
        Fit data sharded across the ranks of a torch.distributed group
        (gloo or NCCL): every rank calls ``fit`` on its own rows (any
        number, zero included). Each iteration all-reduces the per-cluster
        sums and counts; string inits run on a sample gathered from all
        ranks with the shared seed, and rank 0's centres are broadcast.
        ``cluster_centers_``, ``inertia_`` and ``n_iter_`` are global and
        the same on every rank; ``labels_`` holds this rank's rows. Takes
        torch tensors or numpy arrays. See README, "Beyond one device".
    device : None or device, default=None
        Stream host data (a numpy array, memmap or Dask array) to this
        device in blocks for ``fit`` and ``predict``, never holding X
        there; the fitted arrays live on it. A ``torch.device`` or CuPy
        ``Device`` implies its library; any other device needs
        ``array_namespace``.
    array_namespace : None, str or module, default=None
        The array library of ``device``, by import name (``"torch"``,
        ``"array_api_strict"``, ``"numpy"``; estimators holding a name can
        be cloned and pickled) or as the module itself.
    device_block_bytes : None or int, default=None
        When streaming, the most bytes of one (rows x max(n_clusters,
        n_features)) block on the device; None: 64 MiB on GPUs, the
        kernels' own blocks elsewhere.

    Attributes
    ----------
    cluster_centers_ : array of shape (n_clusters, n_features)
    labels_ : integer array of shape (n_samples,)
    inertia_ : float
        Weighted sum of squared distances to the closest centre.
    n_iter_ : int
        Lloyd iterations of the best run.
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import KMeans
    >>> X = np.array([[1.0, 2.0], [1.0, 4.0], [1.0, 0.0],
    ...               [10.0, 2.0], [10.0, 4.0], [10.0, 0.0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> km.predict(np.array([[0.0, 0.0], [12.0, 3.0]])).tolist() == [
    ...     int(km.labels_[0]), int(km.labels_[3])]
    True
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        verbose=0,
        random_state=None,
        metric="euclidean",
        progress=None,
        copy_x=True,
        algorithm="lloyd",
        process_group=None,
        device=None,
        array_namespace=None,
        device_block_bytes=None,
    ):
        self._store_params(locals())

    def fit(self, X: Array, y: object = None, sample_weight: Array | None = None) -> KMeans:
        """Compute k-means clustering.

        Parameters
        ----------
        X : array or sparse matrix of shape (n_samples, n_features)
            Any array-API array (numpy, torch, cupy, ...) or anything
            ``numpy.asarray`` accepts, or a scipy.sparse CSR/CSC matrix or
            array or a torch sparse CSR tensor (never densified; the centres
            are dense). Never modified.
        y : ignored
        sample_weight : array of shape (n_samples,), optional
            Non-negative weights, in X's namespace and device (or a list).

        Returns
        -------
        self
        """
        self._check_common_params(
            metric=self.metric, algorithm=self.algorithm, copy_x=self.copy_x
        )
        if self.algorithm == "elkan" and self.n_clusters == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using "
                "'lloyd' instead.",
                RuntimeWarning,
                stacklevel=2,
            )
        self._record_feature_names(X)
        if self.process_group is not None:
            # torch.distributed driver: X is this rank's shard.
            from ._distributed import fit_estimator

            self._set_fitted(**fit_estimator(self, X, sample_weight))
            return self
        if self.device is not None or self.array_namespace is not None:
            # Host data streamed to the chosen device in blocks.
            from ._streaming import stream_fit

            self._set_fitted(**stream_fit(self, X, sample_weight))
            return self
        if is_dask_array(X):
            if self.metric != "euclidean":
                raise ValueError(
                    f"metric={self.metric!r} is not supported on Dask arrays yet; "
                    "use metric='euclidean', or normalise the rows and fit in memory."
                )
            # Dask driver: the same kernels per chunk, reduced by Dask.
            from ._dask import dask_fit

            self._set_fitted(**dask_fit(self, X, sample_weight))
            return self
        X_input = X
        # Half-precision X stays as it is: blocks are cast to float32 as they
        # are used (cosine rows are normalised in float32 instead).
        # The values of X, the weights and an init array: one device read.
        checks = DeferredChecks()
        X, xp, device = check_array(X, keep_half=self.metric == "euclidean", checks=checks)
        check_n_clusters_fits(self.n_clusters, X.shape[0])
        if self.metric == "cosine":
            if is_sparse(X):
                raise ValueError(
                    "metric='cosine' does not take sparse X yet; normalise its rows "
                    "(sklearn.preprocessing.normalize) and use metric='euclidean', which "
                    "then ranks centres as cosine does."
                )
            X = unit_rows(X, xp, checks=checks)
        weights = check_sample_weight(sample_weight, X, xp, device, checks=checks)
        return self._fit_checked(X, X_input, weights, xp, device, checks=checks)

    def predict(self, X: Array, sample_weight: Array | None = None) -> Array:
        """Index of the closest centre for each row of X (see
        ``CentersEstimator.predict``); host data stream to the centres'
        device when ``device`` or ``array_namespace`` is set."""
        if self.device is not None or self.array_namespace is not None:
            from ._streaming import is_host_data, stream_predict

            if is_host_data(X):
                return stream_predict(self, X)
        return super().predict(X, sample_weight)

    def _fit_checked(self, X, X_input, weights, xp, device, data_stats=None, checks=None):
        """``fit`` on data and weights that passed the checks (unit rows for
        cosine), or whose value checks wait in ``checks``, read here with
        the init array's. ``data_stats``, the ``(mean, mean variance)`` of
        X, lets several fits on the same data (``select_k``) share those
        passes."""
        checks = DeferredChecks() if checks is None else checks
        check_n_clusters_fits(self.n_clusters, X.shape[0])
        spherical = self.metric == "cosine"
        rng = check_random_state(self.random_state)
        init = self.init
        if not isinstance(init, str) and not callable(init):
            init = check_init_array(init, X, xp, device, self.n_clusters, checks=checks)
            if spherical:
                init = unit_rows(init, xp, name="init", checks=checks)
        checks.read()
        n_init = resolve_n_init(
            self.n_init, self.init, n_random=10, estimator=type(self).__name__
        )

        start = time.perf_counter()
        run_xp, run_device, (run_X, run_weights, run_init, run_stats), back = where_to_run(
            xp, device, X, weights, init, data_stats
        )
        centers, labels, inertia, n_iter = fit_best_of(
            run_X, run_weights, run_xp, run_device,
            n_clusters=self.n_clusters, init=run_init, n_init=n_init,
            max_iter=self.max_iter, tol=self.tol, verbose=self.verbose, rng=rng,
            spherical=spherical, data_stats=run_stats, progress=progress_hook(self.progress),
        )
        n_distinct = get_kernels(run_xp, run_device).count_nonempty(labels, self.n_clusters)
        centers, labels = back(centers), back(labels)
        if n_distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({n_distinct}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                convergence_warning(),
                stacklevel=3,
            )
        out_dtype = result_dtype(X_input, X)
        if centers.dtype != out_dtype:
            centers = xp.astype(centers, out_dtype)
        self._set_fitted(
            cluster_centers_=centers,
            labels_=labels,
            inertia_=inertia,
            n_iter_=n_iter,
            n_features_in_=X.shape[1],
            fit_time_=time.perf_counter() - start,
        )
        return self

    def _sklearn_expected_failed_checks(self) -> dict[str, str]:
        # scikit-learn lists the same check for its own KMeans. Weighted and
        # repeated fits from the *same* initial centres agree: see
        # tests/test_properties.py::test_integer_weights_equal_repeated_rows.
        reason = (
            "the check shuffles the weighted rows, so a random init draws "
            "other initial centres than on the repeated rows and Lloyd "
            "reaches another local optimum; sample_weight is equivalent "
            "to repetition from the same initial centres."
        )
        return {
            **super()._sklearn_expected_failed_checks(),
            "check_sample_weight_equivalence_on_dense_data": reason,
            "check_sample_weight_equivalence_on_sparse_data": reason,
        }


#: The ``KMeans`` parameters that ``k_means`` takes: scikit-learn's, and
#: ``metric`` and ``progress``.
_K_MEANS_PARAMETERS = (
    "init",
    "n_init",
    "max_iter",
    "tol",
    "verbose",
    "random_state",
    "metric",
    "progress",
    "copy_x",
    "algorithm",
)


def k_means(
    X: Array,
    n_clusters: int,
    *,
    sample_weight: Array | None = None,
    return_n_iter: bool = False,
    **params,
) -> tuple:
    """Function form of ``KMeans``, as ``sklearn.cluster.k_means``.

    Takes ``KMeans``'s parameters, with its defaults, as keywords:
    ``init``, ``n_init``, ``max_iter``, ``tol``, ``verbose``,
    ``random_state``, ``metric``, ``progress``, ``copy_x`` and
    ``algorithm`` (the last two as there: X is never modified and Lloyd
    always runs).

    Returns
    -------
    centers : array of shape (n_clusters, n_features)
    labels : integer array of shape (n_samples,)
    inertia : float
    n_iter : int
        Only when ``return_n_iter`` is True.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import k_means
    >>> X = np.array([[0.0], [0.2], [10.0], [10.2]])
    >>> centers, labels, inertia = k_means(X, 2, random_state=0)
    >>> sorted(centers[:, 0].round(6).tolist()), round(inertia, 6)
    ([0.1, 10.1], 0.04)
    """
    unexpected = sorted(set(params) - set(_K_MEANS_PARAMETERS))
    if unexpected:
        raise TypeError(f"k_means() got an unexpected keyword argument {unexpected[0]!r}")
    est = KMeans(n_clusters=n_clusters, **params).fit(X, sample_weight=sample_weight)
    result = (est.cluster_centers_, est.labels_, est.inertia_)
    return result + (est.n_iter_,) if return_n_iter else result


def _signature_taking(func, cls, names):
    """``func``'s signature with its ``**params`` replaced by the parameters
    ``names`` of ``cls``'s constructor (keyword-only, with their defaults):
    what ``inspect.signature``, ``help`` and the docs show."""
    own = inspect.signature(func)
    taken = inspect.signature(cls.__init__).parameters
    parameters = [p for p in own.parameters.values() if p.kind is not p.VAR_KEYWORD]
    parameters += [taken[name].replace(kind=inspect.Parameter.KEYWORD_ONLY) for name in names]
    return own.replace(parameters=parameters)


# The defaults stay written once, in KMeans.__init__.
k_means.__signature__ = _signature_taking(k_means, KMeans, _K_MEANS_PARAMETERS)


def kmeans_plusplus(
    X: Array,
    n_clusters: int,
    *,
    sample_weight: Array | None = None,
    x_squared_norms: Array | None = None,
    random_state=None,
    n_local_trials: int | None = None,
) -> tuple[Array, Array]:
    """Greedy k-means++ initial centres, as ``sklearn.cluster.kmeans_plusplus``.

    ``x_squared_norms`` (array of shape (n_samples,)), scikit-learn's
    precomputed squared row norms, is checked for its length and otherwise
    unused: the kernels compute the norms of each block as they go, in the
    shifted frame that keeps float32 accurate.

    Returns
    -------
    centers : array of shape (n_clusters, n_features)
        Rows of X, in its namespace, device and dtype.
    indices : integer array of shape (n_clusters,)
        Their row indices in X.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import kmeans_plusplus
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0], [9.0, 8.0]])
    >>> centers, indices = kmeans_plusplus(X, 2, random_state=0)
    >>> bool((centers == X[indices]).all()), len({int(i) // 2 for i in indices})
    (True, 2)
    """
    _check_int(n_clusters, "n_clusters", 1)
    if n_local_trials is not None:
        _check_int(n_local_trials, "n_local_trials", 1)
    X_input = X
    X, xp, device = check_array(X)
    check_n_clusters_fits(n_clusters, X.shape[0])
    weights = check_sample_weight(sample_weight, X, xp, device)
    if x_squared_norms is not None:
        shape = tuple(getattr(x_squared_norms, "shape", np.shape(x_squared_norms)))
        n_norms = shape[0] if shape else 0
        if n_norms != X.shape[0]:
            raise ValueError(
                f"The length of x_squared_norms {n_norms} should be equal to the "
                f"length of n_samples {X.shape[0]}."
            )
    rng = check_random_state(random_state)
    problem = make_problem(X, weights, xp, device, n_local_trials or 16)
    shift, _ = data_mean_and_variance(problem, need_variance=False)
    centers, indices = _kmeans_plusplus(problem, n_clusters, rng, n_local_trials)
    # Return the chosen rows exactly, not shifted-and-back approximations
    # (dense rows for sparse X).
    centers = problem.take_rows(indices)
    out_dtype = result_dtype(X_input, X)
    return (xp.astype(centers, out_dtype) if centers.dtype != out_dtype else centers), indices
