"""The timing protocol of ``benchmarks/run.py`` (not the timings)."""

import importlib.util
import json
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


def test_a_run_writes_its_table_json_and_chart(bench, tmp_path, capsys):
    pytest.importorskip("sklearn")
    out = tmp_path / "results"
    assert bench.main(["--quick", "--configs", "latency-1k-2-3", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "latency-1k-2-3" in table and "vs scikit-learn" in table
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["limits"]["cpu"]["gemm_flops"] > 0
    ours = [r for r in result["rows"] if r["impl"] == "kmeans_xp" and r["device"] == "numpy"]
    assert len(ours) == 1 and ours[0]["seconds"] > 0
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Nothing half-written is left behind.
    assert {p.name for p in tmp_path.iterdir()} <= {"results.json", "results.png"}


def test_an_unwritable_output_directory_fails_before_any_timing(bench, tmp_path, capsys):
    missing = tmp_path / "no-such-dir" / "results"
    with pytest.raises(SystemExit) as exc:
        bench.main(["--quick", "--configs", "latency-1k-2-3", "--out", str(missing)])
    assert exc.value.code == 2
    err = capsys.readouterr()
    assert "does not exist" in err.err
    assert "GFLOP/s" not in err.out  # the machine limits were not measured
