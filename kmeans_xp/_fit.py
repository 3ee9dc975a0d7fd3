"""Compute-level fitting, below the estimators: the best of ``n_init``
Lloyd runs on validated arrays, the initial centres, and where a fit runs.

``KMeans``, ``MiniBatchKMeans`` and the Dask driver call these; nothing
here validates parameters (the estimators do, at the door).
"""

from __future__ import annotations

from ._array_api import as_host_scalar, is_array_api_obj, is_torch_namespace, numpy_twin
from ._init import _kmeans_plusplus, _random_rows
from ._kernels import SIMULATION
from ._lloyd import _tolerance, data_mean_and_variance, lloyd
from ._problem import Problem, make_problem
from ._sparse import is_sparse
from ._validation import check_init_array

__all__ = [
    "data_stats",
    "fit_best_of",
    "host_twin",
    "host_views",
    "initial_centers",
    "progress_hook",
    "where_to_run",
]


def where_to_run(xp, device, X, weights, init, data_stats):
    """The namespace, device and arrays a fit runs on, and the function that
    brings its result arrays back to ``xp``.

    torch CPU tensors run the numpy code on views of the same memory (the
    torch CPU rows of ``benchmarks/run.py``); everything else runs where it
    is. A callable init is still called with tensors (on the same memory).
    torch weights and init arrays are detached here, as X is at the door,
    so no autograd graph reaches the fitted model.
    """
    if is_torch_namespace(xp):
        # Like X (see check_array): no autograd graph enters the model.
        weights = None if weights is None else weights.detach()
        if is_array_api_obj(init):
            init = init.detach()
    twin = host_twin(xp, device, X)
    if twin is None:
        return xp, device, (X, weights, init, data_stats), _same
    np_xp, view, back = twin
    if callable(init):
        user_init = init

        def init(X_view, n_clusters, random_state):
            # Called with a tensor on the rows it is given (all of X, or a
            # sample), and checked against it.
            rows = back(X_view)
            centers = user_init(rows, n_clusters, random_state=random_state)
            return view(check_init_array(centers, rows, xp, device, n_clusters))
    elif not isinstance(init, str):
        init = view(init)
    if data_stats is not None:
        data_stats = (view(data_stats[0]), data_stats[1])
    return np_xp, "cpu", (view(X), view(weights), init, data_stats), back


def host_views(xp, device, X, *others):
    """``(namespace, device, (X, *others), back)`` to run on: numpy views of
    X and ``others`` (arrays or None) where X is a torch CPU tensor (see
    ``host_twin``), else all as they are; ``back`` brings result arrays
    back to ``xp``."""
    twin = host_twin(xp, device, X)
    if twin is None:
        return xp, device, (X, *others), _same
    np_xp, view, back = twin
    return np_xp, "cpu", tuple(view(a) for a in (X, *others)), back


def _same(a):
    return a


def host_twin(xp, device, X):
    """``(numpy namespace, view, back)`` where X (of ``xp``, on ``device``)
    is a torch CPU tensor that the numpy code can run on in place (see
    ``numpy_twin``), else None: the one way torch CPU tensors are run.

    None under ``simulated_gpu()``, where CPU tensors take the CUDA path,
    for bfloat16, which numpy lacks (torch runs it, on float32 blocks), and
    for sparse tensors, which have no numpy view.
    """
    if SIMULATION.torch or X.dtype == getattr(xp, "bfloat16", None) or is_sparse(X):
        return None
    return numpy_twin(xp, device)


def data_stats(X, xp, device, *, need_variance: bool = True):
    """``(column means, mean column variance)`` of validated X, for fits
    that share them (see ``KMeans._fit_checked``)."""
    return data_mean_and_variance(make_problem(X, None, xp, device, 1), need_variance=need_variance)


def progress_hook(progress):
    """The progress object for a ``progress`` parameter: None for
    None/False, a progress bar for True, else the object itself."""
    if progress is None or progress is False:
        return None
    if progress is True:
        from ._progress import ProgressBar

        return ProgressBar()
    return progress


def fit_best_of(
    X, weights, xp, device, *, n_clusters, init, n_init, max_iter, tol, verbose, rng,
    spherical=False, data_stats=None, progress=None, source=None,
):
    """Best of ``n_init`` Lloyd runs on validated input.

    Returns centres (original coordinates), labels, inertia (float) and the
    iteration count of the best run. With ``spherical`` the rows of X are
    unit vectors and the inertia is the weighted sum of (1 - cos).
    ``data_stats`` is X's ``(mean, mean variance)`` when already known.
    ``progress`` (None or an object, see ``KMeans``) hears of each run and
    iteration. ``source`` streams X's blocks from the host (``make_problem``).
    """
    problem = make_problem(
        X, weights, xp, device, n_clusters,
        **({} if source is None else dict(
            source=source, rows=source.rows, threaded=source.thread_safe)),
    )
    if data_stats is None:
        shift, mean_variance = data_mean_and_variance(problem, need_variance=tol > 0)
    else:
        shift, mean_variance = data_stats
        problem.runner.shift = shift
    abs_tol = _tolerance(mean_variance, tol)
    if spherical:
        # Unit rows need no shift for precision, and centres are normalised
        # in true coordinates.
        shift = xp.zeros_like(shift)
        problem.runner.shift = shift
    best = None
    for run in range(n_init):
        centers = initial_centers(problem, init, n_clusters, rng)
        if verbose:
            print("Initialization complete")
        if progress is not None:
            progress.start_run(run, n_init, max_iter)
        centers, labels, inertia, n_iter = lloyd(
            problem, centers, max_iter=max_iter, tol=abs_tol, verbose=verbose,
            spherical=spherical, progress=progress,
        )
        # Between unit vectors ||x - c||^2 = 2 (1 - cos).
        inertia = as_host_scalar(inertia) / (2 if spherical else 1)
        if best is None or inertia < best[2]:
            best = (centers, labels, inertia, n_iter)
    centers, labels, inertia, n_iter = best
    return centers + shift, labels, inertia, n_iter


def initial_centers(problem: Problem, init, n_clusters: int, rng):
    """Initial centres in the problem's shifted coordinates."""
    if isinstance(init, str):
        # In memory, exact greedy k-means++ is affordable; "k-means||"
        # (its scalable form, the Dask default) is accepted as a synonym.
        if init in ("k-means++", "k-means||"):
            return _kmeans_plusplus(problem, n_clusters, rng)[0]
        return _random_rows(problem, n_clusters, rng)[0]
    if callable(init):
        xp, device = problem.xp, problem.device
        centers = check_init_array(
            init(problem.X, n_clusters, random_state=rng), problem.X, xp, device, n_clusters
        )
        return centers - problem.runner.shift
    if not problem.runner.shifts_blocks:
        # A zero shift (always for sparse data): the array itself, which
        # Lloyd only reads, rather than a (k x d) copy held through the run.
        return init
    return init - problem.runner.shift
