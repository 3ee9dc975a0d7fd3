"""Initial centres: greedy k-means++, random rows, arrays and callables.

Random numbers are drawn on the host from a ``numpy.random.Generator`` and
only the draws (a few floats or indices, sent once per run) go to the
device; sampling
itself (cumulative sums and searchsorted over the data) runs where the data
are, so X never leaves its device and the same seed picks the same rows on
every backend.
"""

from __future__ import annotations

import math

from ._array_api import index_dtype, to_device_array
from ._lloyd import distances_to
from ._problem import Problem

__all__ = ["_kmeans_plusplus", "_random_rows", "distinct_rows", "weighted_keys"]


def _weighted_draws(problem: Problem, cumulative, u, last):
    """Indices drawn with probability proportional to the increments of
    ``cumulative`` (a cumulative sum over the samples), on the device, one
    per uniform draw in ``u`` (on the device). ``last`` is the largest
    index, a 0-d array of the index dtype."""
    xp = problem.xp
    if u.dtype != cumulative.dtype:
        u = xp.astype(u, cumulative.dtype)
    indices = xp.searchsorted(cumulative, u * cumulative[-1])
    # Round-off can put a target past the last sum.
    return xp.minimum(indices, last)


def _kmeans_plusplus(problem: Problem, n_clusters: int, rng, n_local_trials: int | None = None):
    """Greedy k-means++ (Arthur & Vassilvitskii, with scikit-learn's local
    trials): each new centre is the best of ``2 + ln k`` candidates drawn
    with probability proportional to weight x squared distance.

    Returns centres in shifted coordinates and the chosen row indices.
    """
    xp, runner = problem.xp, problem.runner
    n_samples = problem.X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(math.log(n_clusters))
    weights = problem.weights  # None: unit weights, and no products with them
    last = xp.asarray(n_samples - 1, dtype=index_dtype(xp, problem.device), device=problem.device)
    # Drawn as with unit weights, so that no weights and weights of one
    # pick the same rows.
    first_weights = weights
    if first_weights is None:
        first_weights = xp.ones((n_samples,), dtype=problem.dtype, device=problem.device)
    # Every uniform draw of the run, sent to the device at once (one copy,
    # not one per centre): the same numbers, in the same order, as drawing
    # them round by round.
    draws = to_device_array(
        rng.uniform(size=1 + (n_clusters - 1) * n_local_trials), xp,
        dtype=problem.dtype, device=problem.device,
    )
    cumulative_sum = problem.kernels.cumulative_sum
    first = _weighted_draws(problem, cumulative_sum(first_weights), draws[:1], last)
    chosen = [first]
    centers = [problem.take_rows(first) - runner.shift]
    # Small data (one block, the latency row): the shifted block and its
    # row norms are the same in every round, so they are made once, and the
    # distances to the chosen candidate are kept from the round's potentials
    # instead of recomputed in another pass. Out of memory there, the block
    # runner takes over (and halves its blocks).
    block = block_sqnorm = None
    if problem.single_block:
        try:
            block = runner.block(0, n_samples)
            block_sqnorm = problem.kernels.sq_row_norms(block)
        except runner.oom_errors:
            block = None
    # Otherwise every row's norm, made once on the first pass of the block
    # runner (remade in every pass, they cost as much as the products).
    row_sqnorms = None

    def runner_map(step, make_acc=None):
        """``runner.map`` with each step given its rows' norms too."""
        nonlocal row_sqnorms
        if row_sqnorms is None:
            _, parts = runner.map(lambda Xb, start, stop, acc: (acc, problem.kernels.sq_row_norms(Xb)))
            row_sqnorms = parts[0] if len(parts) == 1 else xp.concat(parts)
        return runner.map(
            lambda Xb, start, stop, acc: step(Xb, start, stop, acc, row_sqnorms[start:stop]),
            make_acc,
        )

    def closest_to(points, closest=None):
        """Each row's squared distance to ``points`` (one row), capped at
        ``closest`` where given."""
        nonlocal block
        # One point: a product per block (kernels fuse two or more points).
        plain = distances_to(problem, points)

        def distances(Xb, Xb_sqnorm, start=0, stop=None):
            d2 = plain(Xb, Xb_sqnorm)
            return d2 if closest is None else xp.minimum(d2, closest[start:stop, None])
        if block is not None:
            try:
                return distances(block, block_sqnorm)[:, 0]
            except runner.oom_errors:
                block = None

        def step(Xb, start, stop, acc, Xb_sqnorm):
            return acc, distances(Xb, Xb_sqnorm, start, stop)[:, 0]

        _, parts = runner_map(step)
        return parts[0] if len(parts) == 1 else xp.concat(parts)

    closest = closest_to(centers[0])
    for round_ in range(1, n_clusters):
        potential = closest if weights is None else weights * closest
        start = 1 + (round_ - 1) * n_local_trials
        candidates = _weighted_draws(
            problem, cumulative_sum(potential), draws[start:start + n_local_trials], last
        )
        candidate_points = problem.take_rows(candidates) - runner.shift
        # Every candidate in one pass per block, where the kernels fuse it.
        fused = problem.kernels.fused_potentials(candidate_points)
        distances = distances_to(problem, candidate_points) if fused is None else None

        # Called within this round only: the round's distances and closest.
        def potentials(Xb, start, stop, acc, Xb_sqnorm=None, distances=distances, closest=closest,
                       fused=fused):
            w = None if weights is None else weights[start:stop]
            if fused is not None:
                totals, d2 = fused(Xb, Xb_sqnorm, closest[start:stop], w)
                return acc + totals, d2
            d2 = xp.minimum(distances(Xb, Xb_sqnorm), closest[start:stop, None])
            return acc + problem.kernels.column_sums(d2, w), d2

        block_d2 = None
        if block is not None:
            try:
                total, block_d2 = potentials(block, 0, n_samples, 0.0, block_sqnorm)
            except runner.oom_errors:
                block = None
        if block_d2 is None:
            accs, _ = runner_map(
                lambda *args: (potentials(*args)[0], None),
                lambda: problem.zeros((n_local_trials,)),
            )
            total = sum(accs[1:], accs[0])
        best = xp.argmin(total)
        best_point = xp.take(candidate_points, best[None], axis=0)
        if block_d2 is not None:
            closest = xp.take(block_d2, best[None], axis=1)[:, 0]
        else:
            closest = closest_to(best_point, closest)
        chosen.append(xp.take(candidates, best[None]))
        centers.append(best_point)
    return xp.concat(centers), xp.concat(chosen)


def weighted_keys(weights, u, xp):
    """Efraimidis-Spirakis keys ``log(u) / w`` for uniforms ``u``: the rows
    of the n largest keys are a weighted sample without replacement. Rows
    of weight zero get -inf and come last."""
    positive = weights > 0
    return xp.where(positive, xp.log(u) / xp.where(positive, weights, xp.ones_like(weights)), -xp.inf)


def distinct_rows(problem: Problem, n: int, rng):
    """``n`` distinct row indices of the problem's X, drawn with probability
    proportional to weight (uniformly without weights), on the device; the
    draws come from the host generator ``rng``."""
    xp, device = problem.xp, problem.device
    n_rows = problem.X.shape[0]
    if problem.weights is None:
        picks = rng.choice(n_rows, size=n, replace=False)
        return to_device_array(picks, xp, dtype=index_dtype(xp, device), device=device)
    u = to_device_array(rng.uniform(size=n_rows), xp, dtype=problem.dtype, device=device)
    keys = weighted_keys(problem.weights, u, xp)
    return xp.argsort(keys, descending=True, stable=True)[:n]


def _random_rows(problem: Problem, n_clusters: int, rng):
    """``n_clusters`` distinct rows, drawn with probability proportional to
    their weight (uniformly without weights)."""
    indices = distinct_rows(problem, n_clusters, rng)
    return problem.take_rows(indices) - problem.runner.shift, indices
