"""The per-fit problem: data, weights, kernels and block runner, built in
one place for every driver (in-memory fits, Dask chunks, MiniBatch batches,
metrics)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._array_api import host_workers
from ._blocks import BlockRunner, working_dtype
from ._kernels import Kernels, get_kernels
from ._sparse import is_sparse

__all__ = ["Problem", "make_problem"]


@dataclass
class Problem:
    """What every pass over the data needs, prepared once per fit."""

    runner: BlockRunner
    kernels: Kernels
    weights: object  # array of shape (n_samples,) or None for unit weights
    xp: object
    device: object = field(init=False)

    def __post_init__(self):
        # Looked up once: small fits ask for it on every pass.
        source = self.runner.source
        self.device = self.kernels.data_device(self.runner.X) if source is None else source.device

    @property
    def X(self):
        return self.runner.X

    @property
    def dtype(self):
        """The dtype blocks are computed in (float32 for half-precision X)."""
        return self.runner.dtype

    @property
    def single_block(self) -> bool:
        """Whether every pass is one block (small data)."""
        return self.runner.n_samples <= self.runner.rows

    def block_weights(self, start: int, stop: int):
        return None if self.weights is None else self.weights[start:stop]

    def take_rows(self, indices):
        """Rows ``indices`` of X on the device as a dense array, unshifted
        (from the host when X streams from there)."""
        if self.runner.source is not None:
            return self.runner.source.take(indices)
        return self.kernels.take_rows(self.runner.X, indices)

    def zeros(self, shape):
        return self.xp.zeros(shape, dtype=self.dtype, device=self.device)


def make_problem(
    X, weights, xp, device, width: int, *, shift=None, threaded: bool = True, rows=None,
    source=None,
) -> Problem:
    """The problem of validated ``X`` (and ``weights``, or None), with blocks
    sized for (rows x width) work arrays under the kernels' budget (or of
    ``rows`` rows) and shifted by ``shift``. ``threaded=False`` keeps the
    passes on the calling thread (Dask chunks: Dask runs them in parallel).
    ``source`` streams the blocks of host data to the device (see
    ``BlockRunner``; ``X`` is then the source).
    """
    # Only sparse data pass X along (the kernels depend on its format), so
    # wrappers of ``get_kernels(xp, device)`` keep working for dense data.
    kernels = get_kernels(xp, device, X) if is_sparse(X) else get_kernels(xp, device)
    if shift is not None and not kernels.shiftable:
        shift = xp.zeros_like(shift)  # sparse data: distances in true coordinates
    if rows is None:
        itemsize = xp.finfo(working_dtype(xp, X.dtype)).bits // 8
        # Dense blocks are (rows x n_features) temporaries; sparse ones are not.
        wide = max(width, X.shape[1]) if kernels.shiftable else width
        rows = kernels.rows_per_block(X.shape[0], wide, itemsize)
    workers = host_workers() if threaded and kernels.threaded else 1
    runner = BlockRunner(
        X, shift, xp=xp, kernels=kernels, rows=rows, n_workers=workers, source=source
    )
    return Problem(runner=runner, kernels=kernels, weights=weights, xp=xp)
