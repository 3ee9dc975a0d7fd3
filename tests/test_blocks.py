"""BlockRunner: row blocks, the shift, the shared thread pool, OOM back-off."""

import threading
import time
import warnings

import numpy as np
import pytest

from kmeans_xp._blocks import BlockRunner, _shared_pool, block_rows
from kmeans_xp._kernels import get_kernels
from kmeans_xp._testing import assert_array_like, to_numpy
from kmeans_xp.exceptions import MemoryRetryWarning


def _collect(runner, xp):
    """Run a pass returning each block and a per-range column sum."""

    def step(Xb, start, stop, acc):
        return acc + xp.sum(Xb, axis=0), (start, stop, Xb)

    def make_acc():
        return xp.zeros((runner.X.shape[1],), dtype=runner.X.dtype, device=_device(runner.X))

    return runner.map(step, make_acc)


def _device(x):
    from kmeans_xp._array_api import device_of

    return device_of(x)


@pytest.mark.parametrize("n_workers", [1, 2, 3])
@pytest.mark.parametrize("rows", [1, 7, 64, 1000])
def test_map_covers_rows_in_order_and_shifts(xp, to_xp, rng, n_workers, rows):
    X_np = rng.standard_normal((103, 4))
    shift_np = rng.standard_normal(4)
    X = to_xp(X_np)
    runner = BlockRunner(X, to_xp(shift_np), xp=xp, kernels=get_kernels(xp), rows=rows, n_workers=n_workers)
    accs, outs = _collect(runner, xp)
    starts = [o[0] for o in outs]
    stops = [o[1] for o in outs]
    assert starts[0] == 0 and stops[-1] == 103
    assert starts[1:] == stops[:-1]  # contiguous, in row order
    assert all(stop - start <= rows for start, stop in zip(starts, stops))
    # Even ranges cut into even blocks: no short last block.
    sizes = [stop - start for start, stop in zip(starts, stops)]
    assert max(sizes) - min(sizes) <= (1 if n_workers == 1 else 2)
    assert 1 <= len(accs) <= BlockRunner.tasks_per_worker * n_workers
    for start, stop, Xb in outs:
        assert_array_like(Xb, X)
        np.testing.assert_allclose(to_numpy(Xb), X_np[start:stop] - shift_np, rtol=1e-12)
    total = sum((to_numpy(a) for a in accs[1:]), to_numpy(accs[0]))
    np.testing.assert_allclose(total, (X_np - shift_np).sum(0), rtol=1e-10)


def test_workers_give_the_same_result_as_one(xp, to_xp, rng):
    X = to_xp(rng.standard_normal((500, 3)))
    shift = to_xp(np.zeros(3))
    outs = []
    for n_workers in (1, 2):
        runner = BlockRunner(X, shift, xp=xp, kernels=get_kernels(xp), rows=32, n_workers=n_workers)
        _, parts = _collect(runner, xp)
        outs.append(np.concatenate([to_numpy(p[2]) for p in parts]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_slow_thread_hands_over_ranges_without_changing_results(rng):
    # Ranges are fixed by the block count; threads take them as they come
    # free. A pool thread slowed down runs fewer blocks, and the per-range
    # accumulators are bit for bit those of an even run.
    X = rng.standard_normal((400, 3))
    runner = BlockRunner(X, np.zeros(3), xp=np, kernels=get_kernels(np), rows=10, n_workers=2)
    main = threading.main_thread()

    def run(slow_pool: bool):
        blocks_by_thread = {}

        def step(Xb, start, stop, acc):
            thread = threading.current_thread()
            blocks_by_thread[thread.name] = blocks_by_thread.get(thread.name, 0) + 1
            if slow_pool and thread is not main:
                time.sleep(0.01)
            return acc + Xb.sum(axis=0), None

        accs, _ = runner.map(step, lambda: np.zeros(3))
        return accs, blocks_by_thread

    even, _ = run(slow_pool=False)
    uneven, blocks = run(slow_pool=True)
    assert len(even) == BlockRunner.tasks_per_worker * 2
    assert blocks[main.name] > sum(blocks.values()) / 2
    for a, b in zip(even, uneven, strict=True):
        np.testing.assert_array_equal(a, b)


def test_large_accumulators_get_one_range_per_worker(rng):
    # Per-range accumulators of a large k x d would multiply the memory of
    # a pass: past ``range_acc_bytes`` the ranges are one per worker.
    X = rng.standard_normal((400, 3))
    runner = BlockRunner(X, np.zeros(3), xp=np, kernels=get_kernels(np), rows=10, n_workers=2)

    def step(Xb, start, stop, acc):
        return acc + Xb.sum(axis=0), None

    assert len(runner.map(step, lambda: np.zeros(3))[0]) == BlockRunner.tasks_per_worker * 2
    runner.range_acc_bytes = 100  # 8 ranges x 24 bytes exceed it
    accs, _ = runner.map(step, lambda: np.zeros(3))
    assert len(accs) == 2
    np.testing.assert_allclose(accs[0] + accs[1], X.sum(axis=0), rtol=1e-12)


def test_scalar_shift(xp, to_xp, rng):
    # Callers outside the Lloyd loop (metrics) shift by a Python scalar.
    X_np = rng.standard_normal((40, 3))
    X = to_xp(X_np)
    runner = BlockRunner(X, 0.5, xp=xp, kernels=get_kernels(xp), rows=16, n_workers=2)
    _, outs = _collect(runner, xp)
    got = np.concatenate([to_numpy(o[2]) for o in outs])
    assert_array_like(outs[0][2], X)
    np.testing.assert_allclose(got, X_np - 0.5, rtol=1e-12)


def test_input_is_not_modified(xp, to_xp, rng):
    X_np = rng.standard_normal((50, 2))
    X = to_xp(X_np)
    runner = BlockRunner(X, to_xp(np.ones(2)), xp=xp, kernels=get_kernels(xp), rows=8, n_workers=2)
    _collect(runner, xp)
    np.testing.assert_array_equal(to_numpy(X), X_np)


def test_out_of_memory_halves_blocks_once_with_one_warning(xp, to_xp, rng):
    X_np = rng.standard_normal((100, 2))
    X = to_xp(X_np)
    runner = BlockRunner(X, to_xp(np.zeros(2)), xp=xp, kernels=get_kernels(xp), rows=64, n_workers=1)
    seen = []

    def step(Xb, start, stop, acc):
        if stop - start > 16:
            raise MemoryError("pretend the device is full")
        seen.append((start, stop))
        return acc + xp.sum(Xb), None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accs, _ = runner.map(step, lambda: 0.0)
    retry = [w for w in caught if issubclass(w.category, MemoryRetryWarning)]
    assert len(retry) == 1 and "Results are unchanged" in str(retry[0].message)
    # Even blocks: 2 of 50 rows, then 4 of 25 (both too large), then 9 of
    # at most 12; one warning all the same.
    assert runner.rows == 12
    assert seen[0] == (0, 12) and seen[-1][1] == 100
    assert all(stop - start in (11, 12) for start, stop in seen)
    np.testing.assert_allclose(float(to_numpy(accs[0])), X_np.sum(), rtol=1e-10)


def test_out_of_memory_on_one_row_is_raised(xp, to_xp):
    runner = BlockRunner(to_xp(np.zeros((4, 1))), to_xp(np.zeros(1)), xp=xp, kernels=get_kernels(xp), rows=4)

    def step(Xb, start, stop, acc):
        raise MemoryError("never fits")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryRetryWarning)
        with pytest.raises(MemoryError):
            runner.map(step)


def test_errors_in_workers_propagate():
    X = np.zeros((100, 1))
    runner = BlockRunner(X, np.zeros(1), xp=np, kernels=get_kernels(np), rows=10, n_workers=2)

    def step(Xb, start, stop, acc):
        if start >= 50:
            raise ValueError("boom in a worker")
        return acc, None

    with pytest.raises(ValueError, match="boom in a worker"):
        runner.map(step)


def test_pool_is_shared_and_persistent():
    assert _shared_pool(2) is _shared_pool(2)
    X = np.zeros((64, 1))
    names = set()

    def step(Xb, start, stop, acc):
        names.add(threading.current_thread().name)
        time.sleep(0.005)  # long enough for the pool thread to take a range
        return acc, None

    BlockRunner(X, np.zeros(1), xp=np, kernels=get_kernels(np), rows=8, n_workers=2).map(step)
    # The calling thread takes ranges too; the pool thread the others.
    assert threading.current_thread().name in names
    assert any(name.startswith("kmeans_xp") for name in names)


def test_numpy_pool_runs_blas_single_threaded():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import array_api_compat.numpy as xp

    from kmeans_xp._kernels.numpy import _blas_controller

    # The BLAS libraries loaded when kmeans_xp first limited BLAS, numpy's
    # among them (the one its kernels call); ones loaded later (another
    # package's) are not limited, and not checked.
    controlled = {lib.filepath for lib in _blas_controller().lib_controllers}
    assert controlled

    def blas_threads():
        info = threadpoolctl.threadpool_info()
        return {i["filepath"]: i["num_threads"] for i in info if i["filepath"] in controlled}

    X = np.zeros((64, 1))
    inside = []

    def step(Xb, start, stop, acc):
        if start == 0:
            inside.append(blas_threads())
        return acc, None

    before = blas_threads()
    BlockRunner(X, np.zeros(1), xp=xp, kernels=get_kernels(xp), rows=8, n_workers=2).map(step)
    assert blas_threads() == before  # restored
    assert inside and set(inside[0].values()) == {1}


@pytest.mark.parametrize(
    "n_samples, width, itemsize, budget, expected",
    [
        (10_000, 1024, 4, 1 << 20, 256),
        (10_000, 64, 4, 1 << 20, 4096),
        (100, 64, 4, 1 << 20, 100),  # never more rows than samples
        (10_000, 1 << 20, 8, 1 << 10, 16),  # at least 16 rows
        (5, 1 << 20, 8, 1 << 10, 5),
    ],
)
def test_block_rows(n_samples, width, itemsize, budget, expected):
    assert block_rows(n_samples, width, itemsize, budget) == expected
