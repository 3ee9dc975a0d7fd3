"""torch.distributed driver: one k-means fit over data sharded across the
ranks of a process group.

Every rank calls ``KMeans(process_group=...).fit(X_local)`` on its own rows
(any number, zero included). The ranks run the same in-memory Lloyd loop
(``_lloyd.lloyd``) on their shard, and a small reducer all-reduces what one
pass yields: the per-cluster sums and counts, the inertia and the count of
changed labels, stacked into one tensor (k x d + k + 2 numbers per
iteration). With identical totals every rank computes identical centres,
so the ranks stay in step without any other message. Initialisation runs
k-means++ (or random rows) on a sample gathered from all ranks with the
shared seed, and rank 0's centres are broadcast.

Works on gloo (CPU tensors, numpy data) and NCCL (CUDA tensors) alike: the
messages are tensors on the data's device. torch is imported here only.
"""

from __future__ import annotations

import numpy as np

from ._array_api import as_host_scalar
from ._fit import where_to_run
from ._init import _kmeans_plusplus, _random_rows
from ._lloyd import _column_moments, _squared_deviations, _tolerance, lloyd
from ._problem import make_problem
from ._validation import (
    check_array,
    check_init_array,
    check_random_state,
    check_sample_weight,
    resolve_n_init,
    result_dtype,
    unit_rows,
)

__all__ = ["ShardReducer", "distributed_fit", "fit_estimator", "resolve_group"]

#: Rows of the sample that string inits run on: at least this many, and at
#: least ``_SAMPLE_PER_CLUSTER`` per cluster (all rows when fewer).
_SAMPLE_MIN = 10_000
_SAMPLE_PER_CLUSTER = 100


def resolve_group(process_group):
    """The ``ProcessGroup`` of a ``process_group`` setting ("default": the
    default group, which must be initialised)."""
    import torch.distributed as dist

    if not dist.is_available() or not dist.is_initialized():
        raise ValueError(
            "process_group is set but torch.distributed is not initialised; call "
            "torch.distributed.init_process_group first, or leave process_group=None."
        )
    if isinstance(process_group, str):
        if process_group != "default":
            raise ValueError(
                f"process_group must be None, 'default' or a ProcessGroup, got {process_group!r}."
            )
        return dist.group.WORLD
    if not isinstance(process_group, dist.ProcessGroup):
        raise TypeError(
            "process_group must be None, 'default' or a torch.distributed.ProcessGroup, "
            f"got {type(process_group).__name__}."
        )
    return process_group


def _to_torch(a, device):
    """A float64 torch tensor of ``a`` (a torch tensor, numpy array or
    Python number) on ``device``, without a copy where none is needed."""
    import torch

    # Always a new tensor: collectives write into it.
    if isinstance(a, torch.Tensor):
        return a.to(device=device, dtype=torch.float64, copy=True)
    return torch.tensor(np.asarray(a, dtype=np.float64), device=device)


def _from_torch(t, like):
    """``t`` in the namespace and dtype of the array ``like``."""
    import torch

    if isinstance(like, torch.Tensor):
        return t.to(dtype=like.dtype, device=like.device)
    return t.cpu().numpy().astype(like.dtype, copy=False)


class ShardReducer:
    """The ``reduce`` hook of ``lloyd`` for one rank of a process group.

    Parameters
    ----------
    group : torch.distributed.ProcessGroup
    device : torch.device
        Where the messages live: the data's CUDA device for NCCL, the CPU
        for gloo.
    """

    def __init__(self, group, device):
        import torch.distributed as dist

        self.dist = dist
        self.group = group
        self.device = device
        self.world_size = dist.get_world_size(group)

    def all_reduce(self, t):
        self.dist.all_reduce(t, group=self.group)
        return t

    def all_gather(self, t):
        """Every rank's ``t`` (all of one shape), stacked: (world_size, ...)."""
        import torch

        parts = [torch.empty_like(t) for _ in range(self.world_size)]
        self.dist.all_gather(parts, t.contiguous(), group=self.group)
        return torch.stack(parts)

    def pass_stats(self, sums, counts, inertia, n_changed):
        """Totals over the ranks of one pass's statistics, in one message."""
        import torch

        k, d = sums.shape
        extra = [inertia, -1 if n_changed is None else n_changed]
        packed = torch.cat(
            [_to_torch(sums, self.device).reshape(-1), _to_torch(counts, self.device),
             _to_torch(extra, self.device)]
        )
        packed = self.all_reduce(packed)
        sums_t, counts_t = packed[: k * d].reshape(k, d), packed[k * d: k * d + k]
        inertia_t = packed[-2]
        # One read of the changed count per iteration, as lloyd does itself.
        n_changed = None if n_changed is None else int(packed[-1])
        inertia = inertia_t if isinstance(sums, torch.Tensor) else float(inertia_t)
        return _from_torch(sums_t, sums), _from_torch(counts_t, counts), inertia, n_changed

    def total(self, value):
        """The sum over the ranks of a scalar (0-d array or number)."""
        return self.all_reduce(_to_torch(value, self.device).reshape(1))[0]

    def farthest(self, d2, rows, weights, labels, n_empty: int):
        """The ``n_empty`` rows farthest from their centres over all ranks,
        from each rank's own farthest (in decreasing distance), ties going
        to the lower rank: the rows a single process would pick from the
        concatenated data. Returns ``(rows, weights, labels)``."""
        import torch

        n_local, n_features = rows.shape
        pack = torch.full((n_empty, n_features + 3), -1.0, dtype=torch.float64, device=self.device)
        if n_local:
            pack[:n_local, 0] = _to_torch(d2, self.device)
            pack[:n_local, 1] = _to_torch(weights, self.device)
            pack[:n_local, 2] = _to_torch(labels, self.device)
            pack[:n_local, 3:] = _to_torch(rows, self.device)
        gathered = self.all_gather(pack).reshape(-1, n_features + 3)
        # Padding has distance -1 and is never among the first n_empty:
        # the ranks hold at least n_clusters rows together.
        order = torch.argsort(gathered[:, 0], descending=True, stable=True)[:n_empty]
        chosen = gathered[order]
        return (_from_torch(chosen[:, 3:], rows), _from_torch(chosen[:, 1], weights),
                _from_torch(chosen[:, 2], labels))

    def broadcast(self, t):
        """Rank 0's ``t`` on every rank."""
        src = self.dist.get_global_rank(self.group, 0) if self.group is not None else 0
        self.dist.broadcast(t, src=src, group=self.group)
        return t


def _global_stats(problem, reducer, n_total: int, need_variance: bool):
    """``data_mean_and_variance`` over all shards: sets the runner's shift
    (the global column mean, or zero) and returns it with the global mean
    column variance."""
    xp, runner, kernels = problem.xp, problem.runner, problem.kernels
    d = problem.X.shape[1]
    col, sq = _column_moments(problem)
    import torch

    packed = reducer.all_reduce(
        torch.cat([_to_torch(col, reducer.device).reshape(-1), _to_torch(sq, reducer.device).reshape(1)])
    )
    mean = _from_torch(packed[:d] / n_total, col)
    second_moment = float(packed[d]) / n_total
    far_from_origin = 2 * as_host_scalar(kernels.sq_sum(mean)) > second_moment
    runner.shift = mean if far_from_origin else xp.zeros_like(mean)
    if not need_variance:
        return runner.shift, 0.0
    deviations = _squared_deviations(problem, mean, far_from_origin)
    variances = reducer.all_reduce(_to_torch(deviations, reducer.device)) / n_total
    return runner.shift, float(torch.mean(variances))


def _gathered_sample(problem, reducer, sizes, rng, n_clusters):
    """Rows drawn uniformly without replacement from all shards with the
    shared generator (so every rank draws the same global indices), and
    their weights, gathered on every rank in global row order."""
    import torch

    xp = problem.xp
    rank = reducer.dist.get_rank(reducer.group)
    n_total = int(sum(sizes))
    m = min(n_total, max(_SAMPLE_MIN, _SAMPLE_PER_CLUSTER * n_clusters))
    picked = np.sort(rng.choice(n_total, size=m, replace=False)) if m < n_total else np.arange(n_total)
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    per_rank = [picked[(picked >= offsets[r]) & (picked < offsets[r + 1])] - offsets[r]
                for r in range(len(sizes))]
    width = max(1, max(len(p) for p in per_rank))
    n_features = problem.X.shape[1]
    pack = torch.zeros((width, n_features + 1), dtype=torch.float64, device=reducer.device)
    mine = per_rank[rank]
    if len(mine):
        idx = xp.asarray(mine, device=problem.device)
        rows = xp.take(problem.X, idx, axis=0)
        pack[: len(mine), :n_features] = _to_torch(rows, reducer.device)
        w = 1.0 if problem.weights is None else _to_torch(xp.take(problem.weights, idx), reducer.device)
        pack[: len(mine), n_features] = w
    gathered = reducer.all_gather(pack)
    sample = torch.cat([gathered[r, : len(per_rank[r])] for r in range(len(sizes))])
    like = problem.X
    rows = _from_torch(sample[:, :n_features], like)
    weights = None if problem.weights is None else _from_torch(sample[:, n_features], problem.weights)
    return rows, weights


def _initial_centers(problem, reducer, init, sizes, n_clusters, rng):
    """Initial centres (shifted coordinates), the same on every rank."""
    xp = problem.xp
    shift = problem.runner.shift
    if isinstance(init, str) or callable(init):
        rows, weights = _gathered_sample(problem, reducer, sizes, rng, n_clusters)
        if callable(init):
            centers = check_init_array(
                init(rows, n_clusters, random_state=rng), rows, xp, problem.device, n_clusters
            ) - shift
        else:
            sample = make_problem(rows, weights, xp, problem.device, n_clusters, shift=shift)
            if init in ("k-means++", "k-means||"):
                centers = _kmeans_plusplus(sample, n_clusters, rng)[0]
            else:
                centers = _random_rows(sample, n_clusters, rng)[0]
    else:
        centers = init - shift
    # Bitwise the same everywhere, whatever the ranks' arithmetic did.
    return _from_torch(reducer.broadcast(_to_torch(centers, reducer.device).contiguous()), centers)


def distributed_fit(
    X, weights, xp, device, *, process_group, n_clusters, init, n_init, max_iter, tol,
    verbose, rng, spherical=False, progress=None,
):
    """Best of ``n_init`` Lloyd runs over the shards of all ranks.

    ``X`` (this rank's rows, possibly none), ``weights`` and ``init`` are
    validated, in torch or numpy. Returns centres (original coordinates,
    the same on every rank), this rank's labels, the global inertia (float)
    and the iteration count, with centres and labels in ``xp``.
    """
    import torch

    group = resolve_group(process_group)
    msg_device = X.device if isinstance(X, torch.Tensor) else torch.device("cpu")
    reducer = ShardReducer(group, msg_device)
    run_xp, run_device, (run_X, run_weights, run_init, _), back = where_to_run(
        xp, device, X, weights, init, None
    )
    problem = make_problem(run_X, run_weights, run_xp, run_device, n_clusters)
    sizes = reducer.all_gather(
        torch.tensor([float(X.shape[0])], dtype=torch.float64, device=msg_device)
    ).reshape(-1).cpu().numpy().astype(np.int64)
    n_total = int(sizes.sum())
    if n_total < n_clusters:
        raise ValueError(
            f"n_samples={n_total} over all ranks should be >= n_clusters={n_clusters}."
        )
    shift, mean_variance = _global_stats(problem, reducer, n_total, need_variance=tol > 0)
    if spherical:
        shift = run_xp.zeros_like(shift)
        problem.runner.shift = shift
    abs_tol = _tolerance(mean_variance, tol)
    best = None
    for run in range(n_init):
        centers = _initial_centers(problem, reducer, run_init, sizes, n_clusters, rng)
        if progress is not None:
            progress.start_run(run, n_init, max_iter)
        centers, labels, inertia, n_iter = lloyd(
            problem, centers, max_iter=max_iter, tol=abs_tol, verbose=verbose,
            spherical=spherical, progress=progress, reduce=reducer,
        )
        inertia = as_host_scalar(inertia) / (2 if spherical else 1)
        if best is None or inertia < best[2]:
            best = (centers, labels, inertia, n_iter)
    centers, labels, inertia, n_iter = best
    return back(centers + shift), back(labels), inertia, n_iter


def _check_shard(X):
    """``check_array`` for one rank's rows, which may be none: an empty
    shard must still be a 2-D float torch tensor or numpy array."""
    import torch

    if not isinstance(X, (torch.Tensor, np.ndarray)):
        raise TypeError(
            f"process_group fits take torch tensors or numpy arrays, got {type(X).__name__}."
        )
    if X.ndim == 2 and X.shape[0] == 0:
        floating = X.is_floating_point() if isinstance(X, torch.Tensor) else X.dtype.kind == "f"
        if not floating or X.shape[1] == 0:
            raise ValueError(
                "an empty shard must have shape (0, n_features) and the float dtype "
                f"of the other ranks' data; got shape {tuple(X.shape)}, dtype {X.dtype}."
            )
        from array_api_compat import array_namespace, device

        return (X.detach() if isinstance(X, torch.Tensor) else X), array_namespace(X), device(X)
    return check_array(X)


def fit_estimator(est, X, sample_weight) -> dict:
    """``KMeans.fit`` with ``process_group`` set: validates this rank's
    shard and returns the fitted attributes for ``_set_fitted``."""
    import time

    X_input = X
    X, xp, device = _check_shard(X)
    if X.shape[0] == 0:
        weights = None if sample_weight is None else xp.asarray(
            sample_weight, dtype=X.dtype, device=device
        )
        if weights is not None and tuple(weights.shape) != (0,):
            raise ValueError(f"sample_weight has shape {tuple(weights.shape)}, expected (0,).")
    else:
        weights = check_sample_weight(sample_weight, X, xp, device)
    spherical = est.metric == "cosine"
    if spherical and X.shape[0]:
        X = unit_rows(X, xp)
    init = est.init
    if not isinstance(init, str) and not callable(init):
        init = check_init_array(init, X, xp, device, est.n_clusters)
        if spherical:
            init = unit_rows(init, xp, name="init")
    start = time.perf_counter()
    centers, labels, inertia, n_iter = distributed_fit(
        X, weights, xp, device, process_group=est.process_group,
        n_clusters=est.n_clusters, init=init,
        n_init=resolve_n_init(est.n_init, est.init, n_random=10),
        max_iter=est.max_iter, tol=est.tol, verbose=est.verbose,
        rng=check_random_state(est.random_state), spherical=spherical,
    )
    out_dtype = X.dtype if X.shape[0] == 0 else result_dtype(X_input, X)
    if centers.dtype != out_dtype:
        centers = xp.astype(centers, out_dtype)
    return dict(
        cluster_centers_=centers, labels_=labels, inertia_=inertia, n_iter_=n_iter,
        n_features_in_=X.shape[1], fit_time_=time.perf_counter() - start,
    )
