"""The timing protocol of ``benchmarks/run.py`` (not the timings)."""

import importlib.util
import pathlib
import sys

import pytest

RUN_PY = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("kmeans_xp_bench_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


def test_rounds_rotate_and_keep_each_best(bench):
    order = []

    def call(name):
        def fn():
            order.append(name)
            return name

        return fn, "cpu"

    calls = {name: call(name) for name in "abc"}
    best = bench._best_times(calls, repeats=4)
    # Every implementation once per round, each round one further on.
    assert order == list("abc" "bca" "cab" "abc")
    assert {key: out for key, (_, out) in best.items()} == {"a": "a", "b": "b", "c": "c"}
    assert all(0 <= seconds < 1 for seconds, _ in best.values())


def test_a_failing_implementation_is_dropped_not_fatal(bench):
    calls_made = []

    def broken():
        calls_made.append("broken")
        raise RuntimeError("peer crashed")

    best = bench._best_times({"ok": (lambda: 1, "cpu"), "broken": (broken, "cpu")}, repeats=3)
    assert best["ok"][1] == 1
    assert isinstance(best["broken"][1], RuntimeError)
    assert calls_made == ["broken"]  # not called again after failing
