"""Lloyd's algorithm, written once against the array API.

One iteration is a single pass of block statistics: for each block of rows,
``labels = assign(block, centers)`` (E-step) and
``sums, counts += segment_sum(block, labels, weights)``; the new centres are
``sums / counts`` (M-step). Everything runs in coordinates shifted by the
data mean (see ``_blocks``); callers add the shift back.

The functions here trust their inputs: ``KMeans.fit`` and friends validate.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._array_api import as_host_scalar, device_of
from ._blocks import BlockRunner
from ._kernels import Kernels


@dataclass
class Problem:
    """What every pass over the data needs, prepared once per fit."""

    runner: BlockRunner
    kernels: Kernels
    weights: object  # array of shape (n_samples,) or None for unit weights
    xp: object

    def __post_init__(self):
        # Looked up once: small fits ask for it on every pass.
        self.device = device_of(self.runner.X)

    @property
    def X(self):
        return self.runner.X

    @property
    def dtype(self):
        return self.runner.X.dtype

    @property
    def single_block(self) -> bool:
        """Whether every pass is one block (small data)."""
        return self.runner.n_samples <= self.runner.rows

    def block_weights(self, start: int, stop: int):
        return None if self.weights is None else self.weights[start:stop]

    def zeros(self, shape):
        return self.kernels.zeros(shape, self.dtype, self.device)


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
    runner.shift = None

    # Accumulators start as the first block's sums (no adds to zeros: the
    # latency row runs this on one block).
    def column_moments(Xb, start, stop, acc):
        moments = kernels.column_sums(Xb), kernels.sq_sum(Xb)
        return (moments if acc is None else (acc[0] + moments[0], acc[1] + moments[1])), None

    accs, _ = runner.map(column_moments)
    mean = sum(a[0] for a in accs[1:]) + accs[0][0] if len(accs) > 1 else accs[0][0]
    mean = mean / n_samples
    second_moment = sum(as_host_scalar(a[1]) for a in accs) / n_samples
    # Relative round-off of the products grows with ||x||^2 / spread: shift
    # once the offset carries more than half of the second moment.
    offset = kernels.sum_of_squares(mean)
    far_from_origin = 2 * offset > second_moment
    runner.shift = mean if far_from_origin else xp.zeros_like(mean)
    if not need_variance:
        return runner.shift, 0.0

    def squared_deviations(Xb, start, stop, acc):
        deviations = Xb if far_from_origin else Xb - mean
        sums = kernels.column_sums(deviations * deviations)
        return (sums if acc is None else acc + sums), None

    accs, _ = runner.map(squared_deviations)
    variances = sum(accs[1:], accs[0]) / n_samples
    return runner.shift, as_host_scalar(xp.mean(variances))


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
        problem, centers, want_inertia=want_inertia, out=None
    )
    return labels, sums, counts, inertia


def _lloyd_pass_into(
    problem: Problem, centers, *, want_inertia: bool, out, previous_sums=None, block=None,
    compact: bool = False,
):
    """``_lloyd_pass`` that, given ``out`` (the previous labels, shape
    (n_samples,)), counts the labels that change and overwrites ``out`` with
    the new ones block by block: one labels array per fit instead of three
    (old, per-block parts, their concatenation). Returns ``(labels, sums,
    counts, inertia, n_changed)``; ``n_changed`` is None without ``out``.

    With ``previous_sums`` (the ``(sums, counts)`` that match ``out``), only
    the rows that change cluster are added to their new cluster and taken
    from their old one: the same sums, at the cost of the moved rows only.

    ``block``, when the data are one block (``problem.single_block``), is
    that block already shifted: small fits then skip the block runner and
    the shift on every pass (the latency row of ``benchmarks/run.py``).

    ``compact`` labels may come in a smaller integer dtype (see
    ``Kernels.assigner``).
    """
    xp, kernels = problem.xp, problem.kernels
    n_clusters, n_features = centers.shape
    assign = kernels.assigner(
        centers, kernels.sq_row_norms(centers), partial=want_inertia, compact=compact
    )
    incremental = previous_sums is not None

    def step(Xb, start, stop, acc):
        # Everything that allocates runs before the in-place accumulation,
        # so a block that runs out of memory can be retried (see _blocks).
        labels, partial = assign(Xb)
        w = problem.block_weights(start, stop)
        sums, counts, inertia, changed = acc
        if want_inertia:
            d2 = xp.maximum(partial + kernels.sq_row_norms(Xb), xp.zeros_like(partial))
            inertia = inertia + (xp.sum(d2) if w is None else xp.sum(w * d2))
        if out is None:
            sums, counts = kernels.accumulate(Xb, labels, w, sums, counts)
            return (sums, counts, inertia, changed), labels
        old = out[start:stop]
        moved = labels != old
        if not incremental:
            changed = changed + kernels.count_true(moved)
            sums, counts = kernels.accumulate(Xb, labels, w, sums, counts)
            out[start:stop] = labels  # workers write disjoint slices
            return (sums, counts, inertia, changed), None
        n_moved = int(as_host_scalar(kernels.count_true(moved)))
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
        out[start:stop] = labels  # workers write disjoint slices
        return (sums, counts, inertia, changed + n_moved), None

    def make_acc():
        return problem.zeros((n_clusters, n_features)), problem.zeros((n_clusters,)), 0.0, 0

    if block is not None and not incremental:
        try:
            return _one_block_pass(problem, block, assign, out, want_inertia, n_clusters)
        except problem.runner.oom_errors:
            pass  # the runner retries in halved blocks (and warns)
    accs, labels = problem.runner.map(step, make_acc)
    sums, counts, inertia, changed = accs[0]
    for other_sums, other_counts, other_inertia, other_changed in accs[1:]:
        sums, counts = sums + other_sums, counts + other_counts
        inertia, changed = inertia + other_inertia, changed + other_changed
    if incremental:
        sums, counts = previous_sums[0] + sums, previous_sums[1] + counts
    if out is None:
        return _concat(xp, labels), sums, counts, inertia, None
    return out, sums, counts, inertia, int(as_host_scalar(changed))


def _one_block_pass(problem: Problem, block, assign, out, want_inertia: bool, n_clusters: int):
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
    if out is None:
        return labels, sums, counts, inertia, None
    n_changed = int(kernels.count_true(labels != out))
    out[...] = labels
    return out, sums, counts, inertia, n_changed


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
        return problem.zeros((n_clusters, n_features)), problem.zeros((n_clusters,))

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


def _assign_labels(problem: Problem, centers, *, out=None):
    """Labels of the nearest centres and the inertia of that assignment
    (final E-step): ``(labels, inertia)``, in one pass over X.

    With ``out`` (an integer array of shape (n_samples,) that may be
    overwritten) the labels are written into it, saving two label-sized
    temporaries, and may come from the kernels in a compact dtype. The
    inertia is ``_exact_distances``'s.
    """
    kernels = problem.kernels
    assign = kernels.assigner(
        centers, kernels.sq_row_norms(centers), partial=False, compact=out is not None
    )

    def step(Xb, start, stop, acc):
        labels = assign(Xb)[0]
        d2 = _labelled_sq_distances(problem, Xb, centers, labels)
        acc = acc + _weighted_total(problem, d2, start, stop)
        if out is None:
            return acc, labels
        out[start:stop] = labels
        return acc, None

    accs, labels = problem.runner.map(step, lambda: 0.0)
    inertia = sum(accs[1:], accs[0])
    return (_concat(problem.xp, labels) if out is None else out), inertia


def _relocate_empty_clusters(problem: Problem, centers, labels, sums, counts, n_empty):
    """Give each empty cluster one of the points farthest from its centre.

    Like scikit-learn: the farthest points (by distance to the centre they
    were assigned to) leave their cluster's sums and start the empty
    clusters, so no centre is left NaN or parked at the origin.
    """
    xp = problem.xp
    n_clusters = centers.shape[0]
    _, d2 = _exact_distances(problem, centers, labels, per_sample=True)
    far = xp.argsort(d2, descending=True, stable=True)[:n_empty]
    is_empty = xp.astype(counts == 0, xp.int8)
    empty_ids = xp.argsort(is_empty, descending=True, stable=True)[:n_empty]
    moved = xp.take(problem.X, far, axis=0) - problem.runner.shift
    if problem.weights is None:
        moved_w = xp.ones((n_empty,), dtype=problem.dtype, device=problem.device)
    else:
        moved_w = xp.take(problem.weights, far)
    ids = xp.arange(n_clusters, dtype=labels.dtype, device=problem.device)
    arrive = xp.astype(xp.astype(empty_ids, labels.dtype)[:, None] == ids, problem.dtype)
    leave = xp.astype(xp.take(labels, far)[:, None] == ids, problem.dtype)
    transfer = (arrive - leave).T  # (n_clusters, n_empty)
    return sums + transfer @ (moved * moved_w[:, None]), counts + transfer @ moved_w


def _update_centers(sums, counts, centers, xp):
    """M-step: weighted means; a cluster with no weight keeps its centre."""
    has_weight = counts > 0
    safe = xp.where(has_weight, counts, xp.ones_like(counts))
    return xp.where(has_weight[:, None], sums / safe[:, None], centers)


def _normalize_rows(centers, fallback, xp):
    """Scale rows to unit norm; a zero row keeps its ``fallback`` row."""
    norms = xp.sqrt(xp.sum(centers * centers, axis=1))
    nonzero = norms > 0
    scaled = centers / xp.where(nonzero, norms, xp.ones_like(norms))[:, None]
    return xp.where(nonzero[:, None], scaled, fallback)


#: Running sums wider than X are summed afresh after this many times
#: n_samples moved-row updates (see ``lloyd``).
_WIDE_RESUM_FACTOR = 8


def lloyd(
    problem: Problem,
    centers,
    *,
    max_iter: int,
    tol: float,
    verbose: int = 0,
    spherical: bool = False,
):
    """Run Lloyd's algorithm from ``centers`` (in shifted coordinates).

    Stops when the labels no longer change (strict convergence), when the
    squared centre shift is at most ``tol`` (absolute), or after
    ``max_iter`` iterations; then, unless the labels were stable, a final
    E-step makes the labels match the returned centres.

    ``spherical`` (cosine k-means on unit rows, with a zero shift) scales
    each new centre back to unit norm after the M-step.

    Returns
    -------
    centers : array of shape (n_clusters, n_features), shifted coordinates
    labels : int64 array of shape (n_samples,)
    inertia : 0-d array, weighted sum of squared distances
    n_iter : int
    """
    xp = problem.xp
    n_samples = problem.X.shape[0]
    labels = None
    strict_convergence = False
    # Sums matching the current labels, kept for incremental updates; None
    # forces a full pass (first pass, after a relocation).
    matching_sums = None
    # Rows added to or taken from the running sums since they were last
    # summed in full. With running sums in X's dtype each update rounds
    # like one term of a full sum, so once there have been n_samples of them
    # the sums are summed afresh: round-off stays that of one full pass, at
    # most every other pass's cost. Running sums wider than X (float64 for
    # float32 data, see ``Kernels.running_sums``) round each update at the
    # scale of the moved rows instead of the whole cluster: they are summed
    # afresh after ``_WIDE_RESUM_FACTOR`` n.
    updates_since_full = 0
    resum_after = n_samples
    # Weighted running counts carry that round-off too: a cluster whose last
    # rows left can keep a residue instead of an exact 0 (and escape the
    # relocation of empty clusters), one left with a tiny weight would get
    # a centre made of two residues. Counts within their round-off bound
    # are summed afresh from the labels.
    if problem.weights is not None:
        weight_total = as_host_scalar(xp.sum(problem.weights))
        weight_max = as_host_scalar(xp.max(problem.weights))
        eps = float(xp.finfo(problem.dtype).eps)
    # Small data: one block, shifted once for the whole run; summing all of
    # it costs fewer calls than gathering the moved rows.
    block = problem.runner.block(0, n_samples) if problem.single_block else None
    for i in range(max_iter):
        if block is not None and not problem.single_block:
            block = None  # out of memory: the runner now splits the data
        # From the second pass on, labels are updated in place and the
        # pass counts how many changed (strict convergence: none).
        incremental = (
            matching_sums is not None
            and problem.kernels.incremental_sums
            and block is None
            and updates_since_full < resum_after
        )
        labels, sums, counts, inertia, n_changed = _lloyd_pass_into(
            problem, centers, want_inertia=bool(verbose), out=labels,
            previous_sums=matching_sums if incremental else None, block=block, compact=True,
        )
        updates_since_full = updates_since_full + 2 * n_changed if incremental else 0
        if incremental and problem.weights is not None:
            roundoff = 8 * eps * (weight_total + updates_since_full * weight_max)
            if int(as_host_scalar(problem.kernels.count_true(counts <= roundoff))):
                sums, counts = _sums_of_labels(problem, labels, centers.shape[0])
                updates_since_full = 0
        # The sums match the new labels; update them incrementally next time
        # unless half the rows moved (each moved row is added and removed):
        # the (200k, 32, 64) row saves its third full pass.
        few_moved = n_changed is not None and 2 * n_changed < n_samples
        keep = few_moved and problem.kernels.incremental_sums and block is None
        matching_sums = problem.kernels.running_sums(sums, counts) if keep else None
        if matching_sums is not None:
            wider = matching_sums[0].dtype != problem.dtype
            resum_after = int((_WIDE_RESUM_FACTOR if wider else 1) * n_samples)
        n_empty = int(as_host_scalar(problem.kernels.count_true(counts == 0)))
        if n_empty:
            sums, counts = _relocate_empty_clusters(problem, centers, labels, sums, counts, n_empty)
            # Relocated rows keep their old labels: the sums no longer match.
            matching_sums = None
            new_centers = _update_centers(sums, counts, centers, xp)
        else:
            new_centers = sums / counts[:, None]
        if new_centers.dtype != problem.dtype:
            new_centers = xp.astype(new_centers, problem.dtype)  # float64 running sums
        if spherical:
            new_centers = _normalize_rows(new_centers, centers, xp)
        if verbose:
            print(f"Iteration {i}, inertia {as_host_scalar(inertia):.6g}.")
        center_shift = problem.kernels.sum_of_squares(new_centers - centers)
        centers = new_centers
        if n_changed == 0:
            strict_convergence = True
            if verbose:
                print(f"Converged at iteration {i}: strict convergence.")
            break
        if within_tolerance(i, center_shift, tol, verbose):
            break
    if strict_convergence:
        inertia, _ = _exact_distances(problem, centers, labels, per_sample=False)
    else:
        labels, inertia = _assign_labels(problem, centers, out=labels)
    if labels.dtype != xp.int64:
        labels = xp.astype(labels, xp.int64)  # compact labels from the passes
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


def distances_to(problem: Problem, points):
    """A function from a shifted block of rows to its (n_rows, n_points)
    squared distances to ``points`` (shifted coordinates), clamped at 0.
    The function takes the block's squared row norms when known."""
    xp, kernels = problem.xp, problem.kernels
    points_sqnorm = kernels.sq_row_norms(points)[None, :]
    # Prepared once per pass: -2 P^T, and a 0-d zero (``clip`` is slow
    # through the compat layer and runs once per block).
    points_t = -2 * points.T
    zero = kernels.zeros((), points.dtype, problem.device)

    def distances(Xb, Xb_sqnorm=None):
        if Xb_sqnorm is None:
            Xb_sqnorm = kernels.sq_row_norms(Xb)
        d2 = Xb_sqnorm[:, None] + (Xb @ points_t) + points_sqnorm
        return xp.maximum(d2, zero)

    return distances


def _concat(xp, parts):
    return parts[0] if len(parts) == 1 else xp.concat(parts)
