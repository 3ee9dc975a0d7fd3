"""Lloyd's algorithm, written once against the array API.

One iteration is a single pass of block statistics: for each block of rows,
``labels = assign(block, centers)`` (E-step) and
``sums, counts += segment_sum(block, labels, weights)``; the new centres are
``sums / counts`` (M-step). Everything runs in coordinates shifted by the
data mean (see ``_blocks``); callers add the shift back.

The functions here trust their inputs: ``KMeans.fit`` and friends validate.
"""

from __future__ import annotations

from ._array_api import as_host_scalar, index_dtype
from ._problem import Problem
from ._validation import read_together

__all__ = [
    "RunningSums",
    "data_mean_and_variance",
    "distances_to",
    "lloyd",
    "within_tolerance",
]


def data_mean_and_variance(problem: Problem, *, need_variance: bool):
    """The shift for the block passes, and the mean of the column variances.

    Sets ``runner.shift`` and returns it. The shift is the column mean
    (unweighted) when the data sit far from the origin compared with their
    spread, where it keeps the ``||c||^2 - 2 x.c`` products accurate, and
    zero otherwise, where blocks are then views of X instead of copies.
    Variances are sums of squared deviations from the mean in a second pass,
    accurate for float32 data far from the origin.
    """
    xp, runner, kernels = problem.xp, problem.runner, problem.kernels
    n_samples = problem.X.shape[0]
    column_sums, sq_total = _column_moments(problem)
    mean = column_sums / n_samples
    # Both figures in one device read.
    sq_total, offset = read_together([sq_total, kernels.sq_sum(mean)], kernels)
    second_moment = sq_total / n_samples
    # Relative round-off of the products grows with ||x||^2 / spread: shift
    # once the offset carries more than half of the second moment.
    if not kernels.shiftable:
        # Sparse data stay unshifted (a shift densifies them); the mean
        # variance comes from the two moments, as scikit-learn's does.
        runner.shift = xp.zeros_like(mean)
        return runner.shift, max(0.0, (second_moment - offset) / problem.X.shape[1])
    far_from_origin = 2 * offset > second_moment
    runner.shift = mean if far_from_origin else xp.zeros_like(mean)
    if not need_variance:
        return runner.shift, 0.0
    variances = _squared_deviations(problem, mean, far_from_origin) / n_samples
    return runner.shift, as_host_scalar(xp.mean(variances))


def _column_moments(problem: Problem):
    """The first pass of ``data_mean_and_variance`` (and of its distributed
    form): the column sums of X and its sum of squares, unshifted (sets
    ``runner.shift`` to None)."""
    runner, kernels = problem.runner, problem.kernels
    runner.shift = None

    # Accumulators start as the first block's sums (no adds to zeros: the
    # latency row runs this on one block).
    def column_moments(Xb, start, stop, acc):
        moments = kernels.column_sums(Xb), kernels.sq_sum(Xb)
        return (moments if acc is None else (acc[0] + moments[0], acc[1] + moments[1])), None

    accs, _ = runner.map(column_moments)
    column_sums = sum(a[0] for a in accs[1:]) + accs[0][0] if len(accs) > 1 else accs[0][0]
    return column_sums, sum((a[1] for a in accs[1:]), accs[0][1])


def _squared_deviations(problem: Problem, mean, far_from_origin: bool):
    """The second pass: column sums of the squared deviations from the
    column ``mean``, with the runner's shift set (to ``mean`` when
    ``far_from_origin``: the blocks then come centred already)."""
    kernels = problem.kernels

    def squared_deviations(Xb, start, stop, acc):
        deviations = Xb if far_from_origin else Xb - mean
        sums = kernels.column_sums(deviations * deviations)
        return (sums if acc is None else acc + sums), None

    accs, _ = problem.runner.map(squared_deviations)
    return sum(accs[1:], accs[0])


def _tolerance(mean_variance: float, tol: float) -> float:
    """Absolute tolerance on the squared centre shift, as scikit-learn
    defines it: ``tol`` times the mean feature variance."""
    return 0.0 if tol == 0 else mean_variance * tol


def _lloyd_pass(problem: Problem, centers, *, want_inertia: bool):
    """One E-step and the statistics of the M-step over all blocks.

    Returns labels, per-cluster weighted sums and weights, and (when asked)
    the inertia of the assignment.
    """
    labels, sums, counts, inertia, _ = _lloyd_pass_into(
        problem, centers, want_inertia=want_inertia, previous=None
    )
    return labels, sums, counts, inertia


def _lloyd_pass_into(
    problem: Problem, centers, *, want_inertia: bool, previous, previous_sums=None,
    block=None, compact: bool = False,
):
    """``_lloyd_pass`` that, given ``previous`` (the last pass's labels),
    also counts the labels that change. Returns ``(labels, sums, counts,
    inertia, n_changed)``; ``n_changed`` is None without ``previous``.

    With ``previous_sums`` (the ``(sums, counts)`` that match ``previous``),
    only the rows that change cluster are added to their new cluster and
    taken from their old one: the same sums, at the cost of the moved rows.

    ``block``, when the data are one block (``problem.single_block``), is
    that block already shifted: small fits then skip the block runner and
    the shift on every pass (the latency row of ``benchmarks/run.py``).

    ``compact`` labels may come in a smaller integer dtype (see
    ``Kernels.assigner``).
    """
    xp, kernels = problem.xp, problem.kernels
    n_clusters, n_features = centers.shape
    centers_sqnorm = kernels.sq_row_norms(centers)
    incremental = previous_sums is not None
    # One kernel for both, where the kernels fuse them (moving the changed
    # rows only, for incremental sums).
    fused = kernels.fused_step(
        centers, centers_sqnorm, want_inertia=want_inertia, compact=compact,
        moves_only=incremental,
    )
    if fused is None:
        assign = kernels.assigner(centers, centers_sqnorm, partial=want_inertia, compact=compact)
        pass_labels = None
    elif compact:
        # The fused kernel writes each block's labels into the pass's array
        # (host kernels, written in place): no labels to join at the end.
        pass_labels = xp.empty(
            (problem.X.shape[0],), dtype=kernels.fused_label_dtype(n_clusters),
            device=problem.device,
        )
    else:
        pass_labels = None

    def step(Xb, start, stop, acc):
        w = problem.block_weights(start, stop)
        sums, counts, inertia, changed = acc
        if fused is not None:
            old = None if previous is None else previous[start:stop]
            out = None if pass_labels is None else pass_labels[start:stop]
            labels, sums, counts, block_inertia, block_changed = fused(
                Xb, w, old, sums, counts, out
            )
            return (sums, counts, inertia + block_inertia, changed + block_changed), labels
        # Everything that allocates runs before the accumulation, so a block
        # that runs out of memory can be retried (see _blocks).
        labels, partial = assign(Xb)
        if want_inertia:
            d2 = xp.maximum(partial + kernels.sq_row_norms(Xb), xp.zeros_like(partial))
            inertia = inertia + (xp.sum(d2) if w is None else xp.sum(w * d2))
        if previous is None:
            sums, counts = kernels.accumulate(Xb, labels, w, sums, counts)
            return (sums, counts, inertia, changed), labels
        old = previous[start:stop]
        moved = labels != old
        if not incremental:
            changed = changed + xp.count_nonzero(moved)
            sums, counts = kernels.accumulate(Xb, labels, w, sums, counts)
            return (sums, counts, inertia, changed), labels
        n_moved = int(xp.count_nonzero(moved))
        if n_moved:
            rows = xp.nonzero(moved)[0]
            sums, counts = kernels.move(
                xp.take(Xb, rows, axis=0),
                xp.take(old, rows),
                xp.take(labels, rows),
                None if w is None else xp.take(w, rows),
                sums,
                counts,
            )
        return (sums, counts, inertia, changed + n_moved), labels

    def make_acc():
        sums, counts = _sum_zeros(problem, n_clusters, n_features)
        return sums, counts, 0.0, 0

    if block is not None and not incremental:
        try:
            if fused is None:
                return _one_block_pass(problem, block, assign, previous, want_inertia, n_clusters)
            (sums, counts, inertia, changed), labels = step(block, 0, block.shape[0], make_acc())
            return labels, sums, counts, inertia, (None if previous is None else changed)
        except problem.runner.oom_errors:
            pass  # the runner retries in halved blocks (and warns)
    accs, labels = problem.runner.map(step, make_acc)
    sums, counts, inertia, changed = accs[0]
    for other_sums, other_counts, other_inertia, other_changed in accs[1:]:
        sums, counts = sums + other_sums, counts + other_counts
        inertia, changed = inertia + other_inertia, changed + other_changed
    if incremental:
        sums, counts = previous_sums[0] + sums, previous_sums[1] + counts
    # Left on the device: the loop reads it with the iteration's other
    # figures, in one sync (see ``lloyd``).
    n_changed = None if previous is None else changed
    labels = _concat(xp, labels) if pass_labels is None else pass_labels
    return labels, sums, counts, inertia, n_changed


def _one_block_pass(problem: Problem, block, assign, previous, want_inertia: bool, n_clusters):
    """``_lloyd_pass_into`` for data that are one block, without
    incremental sums: the latency row's passes, in fewer calls than a step
    (no accumulators to start from zeros, no runner)."""
    kernels = problem.kernels
    labels, partial = assign(block)
    inertia = 0.0
    if want_inertia:
        xp = problem.xp
        d2 = xp.maximum(partial + kernels.sq_row_norms(block), xp.zeros_like(partial))
        inertia = _weighted_total(problem, d2, 0, block.shape[0])
    sums, counts = kernels.cluster_sums(block, labels, problem.weights, n_clusters)
    n_changed = None if previous is None else problem.xp.count_nonzero(labels != previous)
    return labels, sums, counts, inertia, n_changed


def _sum_zeros(problem: Problem, n_clusters: int, n_features: int):
    """Zero cluster sums and weights in the kernels' accumulator dtype."""
    xp, device = problem.xp, problem.device
    dtype = problem.kernels.sum_dtype(problem.dtype)
    return (
        xp.zeros((n_clusters, n_features), dtype=dtype, device=device),
        xp.zeros((n_clusters,), dtype=dtype, device=device),
    )


def _sums_of_labels(problem: Problem, labels, n_clusters: int):
    """Per-cluster weighted sums and weights of the rows under ``labels``,
    summed afresh over all blocks (no assignment)."""
    n_features = problem.X.shape[1]

    def step(Xb, start, stop, acc):
        sums, counts = problem.kernels.accumulate(
            Xb, labels[start:stop], problem.block_weights(start, stop), *acc
        )
        return (sums, counts), None

    def make_acc():
        return _sum_zeros(problem, n_clusters, n_features)

    accs, _ = problem.runner.map(step, make_acc)
    sums, counts = accs[0]
    for other_sums, other_counts in accs[1:]:
        sums, counts = sums + other_sums, counts + other_counts
    return sums, counts


def _labelled_sq_distances(problem: Problem, Xb, centers, block_labels):
    """Squared distance of each row of a shifted block to its labelled
    centre, computed as ``sum((x - c)**2)`` rather than through a product,
    as scikit-learn's inertia is."""
    return problem.kernels.sq_distances_to(Xb, centers, block_labels)


def _weighted_total(problem: Problem, d2, start: int, stop: int):
    """Sum of a block's per-row values, weighted by its sample weights."""
    w = problem.block_weights(start, stop)
    return problem.xp.sum(d2) if w is None else problem.xp.sum(w * d2)


def _exact_distances(problem: Problem, centers, labels, *, per_sample: bool):
    """Squared distance of each row to its labelled centre (see
    ``_labelled_sq_distances``). Returns the weighted total and, if asked,
    per-row values."""

    def step(Xb, start, stop, acc):
        d2 = _labelled_sq_distances(problem, Xb, centers, labels[start:stop])
        return acc + _weighted_total(problem, d2, start, stop), (d2 if per_sample else None)

    accs, d2 = problem.runner.map(step, lambda: 0.0)
    total = sum(accs[1:], accs[0])
    return total, (_concat(problem.xp, d2) if per_sample else None)


def _assign_labels(problem: Problem, centers, *, compact: bool = False):
    """Labels of the nearest centres and the inertia of that assignment
    (final E-step): ``(labels, inertia)``, in one pass over X. The inertia
    is ``_exact_distances``'s; ``compact`` labels may come in a smaller
    integer dtype (see ``Kernels.assigner``).
    """
    kernels = problem.kernels
    assign = kernels.assigner(
        centers, kernels.sq_row_norms(centers), partial=False, compact=compact
    )

    def step(Xb, start, stop, acc):
        labels = assign(Xb)[0]
        d2 = _labelled_sq_distances(problem, Xb, centers, labels)
        return acc + _weighted_total(problem, d2, start, stop), labels

    accs, labels = problem.runner.map(step, lambda: 0.0)
    return _concat(problem.xp, labels), sum(accs[1:], accs[0])


def _relocate_empty_clusters(problem: Problem, centers, labels, sums, counts, n_empty, reduce=None):
    """Give each empty cluster one of the points farthest from its centre.

    Like scikit-learn: the farthest points (by distance to the centre they
    were assigned to) leave their cluster's sums and start the empty
    clusters, so no centre is left NaN or parked at the origin. When every
    row sits on its centre (more clusters than distinct rows) moving one
    gains nothing: the clusters stay as they are, as in scikit-learn. With
    ``reduce`` (see ``lloyd``), the sums are global and
    ``reduce.farthest`` picks the farthest rows among every shard's own.
    """
    xp = problem.xp
    n_clusters = centers.shape[0]
    _, d2 = _exact_distances(problem, centers, labels, per_sample=True)
    if not as_host_scalar(xp.max(d2)) > 0:
        return sums, counts
    far = xp.argsort(d2, descending=True, stable=True)[:n_empty]
    is_empty = xp.astype(counts == 0, xp.int8)
    empty_ids = xp.argsort(is_empty, descending=True, stable=True)[:n_empty]
    moved = problem.take_rows(far) - problem.runner.shift
    if problem.weights is None:
        moved_w = xp.ones((far.shape[0],), dtype=problem.dtype, device=problem.device)
    else:
        moved_w = xp.take(problem.weights, far)
    far_labels = xp.take(labels, far)
    if reduce is not None:
        moved, moved_w, far_labels = reduce.farthest(
            xp.take(d2, far), moved, moved_w, far_labels, n_empty
        )
    ids = xp.arange(n_clusters, dtype=labels.dtype, device=problem.device)
    arrive = xp.astype(xp.astype(empty_ids, labels.dtype)[:, None] == ids, problem.dtype)
    leave = xp.astype(xp.astype(far_labels, labels.dtype)[:, None] == ids, problem.dtype)
    transfer = (arrive - leave).T  # (n_clusters, n_empty)
    return sums + transfer @ (moved * moved_w[:, None]), counts + transfer @ moved_w


def _update_centers(sums, counts, centers, xp):
    """M-step: weighted means; a cluster with no weight keeps its centre.
    ``sums`` and ``centers`` of shape (..., k, d), ``counts`` (..., k): one
    problem or a batch of them (``batched``)."""
    has_weight = counts > 0
    safe = xp.where(has_weight, counts, xp.ones_like(counts))
    return xp.where(has_weight[..., None], sums / safe[..., None], centers)


def _normalize_rows(centers, fallback, xp):
    """Scale rows to unit norm; a zero row keeps its ``fallback`` row."""
    norms = xp.sqrt(xp.sum(centers * centers, axis=1))
    nonzero = norms > 0
    scaled = centers / xp.where(nonzero, norms, xp.ones_like(norms))[:, None]
    return xp.where(nonzero[:, None], scaled, fallback)


#: Running sums wider than X are summed afresh after this many times
#: n_samples moved-row updates (see ``RunningSums``).
_WIDE_RESUM_FACTOR = 8


class RunningSums:
    """Cluster sums and weights that match the current labels, kept from
    pass to pass so that a pass adds and takes away only the rows that
    changed cluster (where the kernels say it pays: ``incremental_sums``).

    Each moved row is one more rounded update. Running sums in X's dtype
    are summed afresh once there have been n_samples updates (the round-off
    of one full pass); sums wider than X (float64 for float32 data, see
    ``Kernels.running_sums``) round at the scale of the moved rows, and are
    summed afresh after ``_WIDE_RESUM_FACTOR`` n_samples. Weighted counts
    are summed afresh as soon as one is within its round-off bound, so that
    an emptied cluster reads exactly 0 and is relocated.
    """

    def __init__(self, problem: Problem):
        self.problem = problem
        self.sums = None  # (sums, counts), or None: the next pass sums all rows
        self.updates = 0
        self.resummed = False  # whether the last ``record`` summed afresh
        self.resum_after = problem.X.shape[0]
        if problem.weights is not None and problem.kernels.incremental_sums:
            xp = problem.xp
            self._weight_total = as_host_scalar(xp.sum(problem.weights))
            # An empty shard (torch.distributed) has no largest weight.
            self._weight_max = (
                as_host_scalar(xp.max(problem.weights)) if problem.weights.shape[0] else 0.0
            )
            self._eps = float(xp.finfo(problem.dtype).eps)

    def usable(self) -> bool:
        """Whether the next pass may update these sums with the moved rows."""
        return self.sums is not None and self.updates < self.resum_after

    def record(self, labels, sums, counts, n_changed, *, incremental: bool, may_keep: bool):
        """Take a pass's ``(sums, counts)`` for ``labels``; returns them,
        summed afresh from the labels where weighted round-off demands it.
        They are kept for the next pass when fewer than half the rows moved
        (each moved row costs an addition and a removal) and ``may_keep``."""
        problem = self.problem
        n_samples = problem.X.shape[0]
        self.resummed = False
        self.updates = self.updates + 2 * n_changed if incremental else 0
        if incremental and problem.weights is not None:
            roundoff = 8 * self._eps * (self._weight_total + self.updates * self._weight_max)
            if int(problem.xp.count_nonzero(counts <= roundoff)):
                sums, counts = _sums_of_labels(problem, labels, counts.shape[0])
                self.updates = 0
                self.resummed = True
        keep = may_keep and n_changed is not None and 2 * n_changed < n_samples
        keep = keep and problem.kernels.incremental_sums
        self.sums = problem.kernels.running_sums(sums, counts) if keep else None
        if self.sums is not None:
            wider = self.sums[0].dtype != problem.dtype
            self.resum_after = int((_WIDE_RESUM_FACTOR if wider else 1) * n_samples)
        return sums, counts

    def drop(self) -> None:
        """The labels no longer match the sums (relocated rows)."""
        self.sums = None


def _m_step(problem: Problem, centers, labels, sums, counts, running: RunningSums, spherical,
            n_empty: int, reduce=None):
    """New centres from the cluster sums: weighted means, with the
    ``n_empty`` empty clusters given far points first; cast back to X's
    dtype from wider sums, and scaled to unit norm when ``spherical``."""
    xp = problem.xp
    if n_empty:
        sums, counts = _relocate_empty_clusters(
            problem, centers, labels, sums, counts, n_empty, reduce
        )
        running.drop()  # relocated rows keep their old labels
        new_centers = _update_centers(sums, counts, centers, xp)
    else:
        new_centers = sums / counts[:, None]
    if new_centers.dtype != problem.dtype:
        new_centers = xp.astype(new_centers, problem.dtype)
    if spherical:
        new_centers = _normalize_rows(new_centers, centers, xp)
    return new_centers


def lloyd(
    problem: Problem,
    centers,
    *,
    max_iter: int,
    tol: float,
    verbose: int = 0,
    spherical: bool = False,
    progress=None,
    reduce=None,
):
    """Run Lloyd's algorithm from ``centers`` (in shifted coordinates).

    Stops when the labels no longer change (strict convergence), when the
    squared centre shift is at most ``tol`` (absolute), or after
    ``max_iter`` iterations; then, unless the labels were stable, a final
    E-step makes the labels match the returned centres.

    ``spherical`` (cosine k-means on unit rows, with a zero shift) scales
    each new centre back to unit norm after the M-step. ``progress``, when
    not None, has ``iteration(i, inertia, center_shift)`` called after each
    iteration and ``end_run(n_iter, converged)`` at the end; the inertia of
    each pass is computed only when it or ``verbose`` asks for it.

    ``reduce``, when not None, makes this one shard of a sharded fit (see
    ``_distributed``): ``reduce.pass_stats(sums, counts, inertia,
    n_changed)`` returns the totals over all shards after each pass,
    ``reduce.total(inertia)`` the final inertia's, and ``reduce.farthest``
    picks the rows that restart empty clusters. Sums are then summed afresh
    every pass (running sums are per shard).

    Returns
    -------
    centers : array of shape (n_clusters, n_features), shifted coordinates
    labels : int64 array of shape (n_samples,) (int32 for JAX without x64)
    inertia : 0-d array, weighted sum of squared distances
    n_iter : int
    """
    xp = problem.xp
    n_samples = problem.X.shape[0]
    want_inertia = bool(verbose) or progress is not None
    # On a GPU every read waits for the device: an iteration reads its
    # figures (labels changed, empty clusters, the previous iteration's
    # centre shift) once, together, so a tolerance reached is seen one pass
    # late and that pass is the final E-step. Host kernels read the shift
    # at once (no extra pass), as do verbose runs and progress hooks.
    eager = problem.kernels.cheap_reads or want_inertia
    labels = None
    pending_shift = None  # the last centre shift, not yet read (lazy reads)
    converged = strict_convergence = late_convergence = False
    running = RunningSums(problem)
    # Small data: one block, shifted once for the whole run; summing all of
    # it costs fewer calls than gathering the moved rows.
    block = problem.runner.block(0, n_samples) if problem.single_block else None
    for i in range(max_iter):
        if block is not None and not problem.single_block:
            block = None  # out of memory: the runner now splits the data
        # E-step, with the statistics of the M-step.
        incremental = running.usable() and block is None
        labels, sums, counts, inertia, n_changed = _lloyd_pass_into(
            problem, centers, want_inertia=want_inertia, previous=labels,
            previous_sums=running.sums if incremental else None, block=block, compact=True,
        )
        if reduce is not None:
            sums, counts, inertia, n_changed = reduce.pass_stats(sums, counts, inertia, n_changed)
        n_changed, n_empty, last_shift = read_together(
            [n_changed, xp.count_nonzero(counts == 0), pending_shift], problem.kernels
        )
        if last_shift is not None and within_tolerance(i - 1, last_shift, tol, verbose):
            # Converged on the last M-step: this pass was the final E-step.
            converged = late_convergence = True
            i -= 1
            break
        sums, counts = running.record(
            labels, sums, counts, n_changed, incremental=incremental,
            may_keep=block is None and reduce is None,
        )
        if running.resummed:  # host kernels only (incremental sums)
            n_empty = int(xp.count_nonzero(counts == 0))
        # M-step.
        new_centers = _m_step(
            problem, centers, labels, sums, counts, running, spherical, n_empty, reduce
        )
        # Not held through the shift and the next pass (k x d each), unless
        # kept as running sums.
        sums = counts = None
        # Convergence.
        if verbose:
            print(f"Iteration {i}, inertia {as_host_scalar(inertia):.6g}.")
        shift = problem.kernels.sq_sum(new_centers - centers)
        centers = new_centers
        if eager:
            center_shift = as_host_scalar(shift)
            if progress is not None:
                progress.iteration(i, as_host_scalar(inertia), center_shift)
        if n_changed == 0:
            converged = strict_convergence = True
            if verbose:
                print(f"Converged at iteration {i}: strict convergence.")
            break
        if not eager:
            pending_shift = shift
        elif within_tolerance(i, center_shift, tol, verbose):
            converged = True
            break
    if strict_convergence or late_convergence:
        inertia, _ = _exact_distances(problem, centers, labels, per_sample=False)
    else:
        labels, inertia = _assign_labels(problem, centers, compact=True)
    if reduce is not None:
        inertia = reduce.total(inertia)
    label_dtype = index_dtype(xp, problem.device)
    if labels.dtype != label_dtype:
        labels = xp.astype(labels, label_dtype)  # compact labels from the passes
    if progress is not None:
        progress.end_run(i + 1, converged)
    return centers, labels, inertia, i + 1


def within_tolerance(i: int, center_shift: float, tol: float, verbose) -> bool:
    """Whether iteration ``i`` moved the centres by at most ``tol`` (squared,
    absolute); says so when ``verbose``. In memory and on Dask alike."""
    if center_shift > tol:
        return False
    if verbose:
        print(
            f"Converged at iteration {i}: center shift {center_shift:.6g} "
            f"within tolerance {tol:.6g}."
        )
    return True


def distances_to(problem: Problem, points, *, exact_nearest: bool = False):
    """A function from a shifted block of rows to its (n_rows, n_points)
    squared distances to ``points`` (shifted coordinates), clamped at 0.
    The function takes the block's squared row norms when known.

    With ``exact_nearest`` each row's smallest distance is recomputed from
    the difference: the expansion ``||x||^2 - 2 x.c + ||c||^2`` loses it to
    cancellation (a row equal to a centre got 6e-8 instead of 0 in float64).
    """
    xp, kernels = problem.xp, problem.kernels
    points_sqnorm = kernels.sq_row_norms(points)[None, :]
    # Prepared once per pass: -2 P^T, and a 0-d zero (``clip`` is slow
    # through the compat layer and runs once per block).
    points_t = -2 * points.T
    zero = problem.xp.zeros((), dtype=points.dtype, device=problem.device)
    columns = xp.arange(points.shape[0], device=problem.device)[None, :]

    def distances(Xb, Xb_sqnorm=None):
        if Xb_sqnorm is None:
            Xb_sqnorm = kernels.sq_row_norms(Xb)
        d2 = xp.maximum(Xb_sqnorm[:, None] + (Xb @ points_t) + points_sqnorm, zero)
        if not exact_nearest:
            return d2
        nearest = xp.argmin(d2, axis=1)
        exact = xp.astype(kernels.sq_distances_to(Xb, points, nearest), d2.dtype, copy=False)
        return xp.where(columns == nearest[:, None], exact[:, None], d2)

    return distances


def _concat(xp, parts):
    return parts[0] if len(parts) == 1 else xp.concat(parts)
