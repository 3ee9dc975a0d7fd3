"""ProgressBar, fed the events the Lloyd loop sends (start_run, iteration,
end_run), with tqdm and with the plain text fallback."""

import io
import sys

import pytest

from kmeans_xp._progress import ProgressBar


def feed(bar, n_iter, max_iter, converged, run=0, n_init=1):
    bar.start_run(run, n_init=n_init, max_iter=max_iter)
    for i in range(n_iter):
        bar.iteration(i, inertia=1000.0 / (i + 1), center_shift=1.0 / (i + 1))
    bar.end_run(n_iter=n_iter, converged=converged)


def test_plain_text_counts_iterations_and_shows_inertia():
    out = io.StringIO()
    bar = ProgressBar(file=out, use_tqdm=False, min_interval=0)
    feed(bar, 4, 300, converged=True)
    lines = out.getvalue().splitlines()
    assert lines[0] == "k-means run 1/1: up to 300 iterations"
    assert lines[1:5] == [
        f"k-means run 1/1: iteration {i + 1}/300, inertia {1000 / (i + 1):.6g}, "
        f"centre shift {1 / (i + 1):.3g}"
        for i in range(4)
    ]
    assert lines[5] == "k-means run 1/1: converged after 4 iterations (inertia 250)"
    assert "max_iter" not in out.getvalue()


def test_plain_text_says_max_iter_was_reached_without_convergence():
    out = io.StringIO()
    feed(ProgressBar(file=out, use_tqdm=False, min_interval=0), 5, 5, converged=False)
    last = out.getvalue().splitlines()[-1]
    assert last == (
        "k-means run 1/1: max_iter=5 reached without convergence "
        "(inertia 200, centre shift 0.2)"
    )


def test_plain_text_is_throttled_but_keeps_first_and_last_iteration():
    out = io.StringIO()
    feed(ProgressBar(file=out, use_tqdm=False, min_interval=3600), 50, 50, converged=False)
    iteration_lines = [line for line in out.getvalue().splitlines() if "iteration " in line]
    assert [line.split(",")[0] for line in iteration_lines] == [
        "k-means run 1/1: iteration 1/50",
        "k-means run 1/1: iteration 50/50",
    ]


def test_each_run_of_n_init_is_labelled():
    out = io.StringIO()
    bar = ProgressBar(file=out, use_tqdm=False, min_interval=0, desc="fit")
    for run in range(3):
        feed(bar, 2, 10, converged=True, run=run, n_init=3)
    starts = [line for line in out.getvalue().splitlines() if "up to" in line]
    assert starts == [f"fit run {r}/3: up to 10 iterations" for r in (1, 2, 3)]


def test_plain_text_defaults_to_stderr(capsys):
    feed(ProgressBar(use_tqdm=False), 1, 3, converged=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "converged after 1 iteration " in captured.err


def test_tqdm_bar_counts_iterations_and_reports_the_end():
    pytest.importorskip("tqdm")
    out = io.StringIO()
    bar = ProgressBar(file=out, use_tqdm=True)
    bar.start_run(0, n_init=2, max_iter=7)
    for i in range(3):
        bar.iteration(i, inertia=50.0 - i, center_shift=0.5)
    assert bar._bar.n == 3 and bar._bar.total == 7
    assert "inertia=48" in str(bar._bar)
    bar.end_run(n_iter=3, converged=False)
    assert bar._bar is None  # closed
    text = out.getvalue()
    assert "k-means run 1/2" in text and "3/7" in text
    assert "max_iter=7 reached without convergence (inertia 48, centre shift 0.5)" in text


def test_tqdm_is_used_when_installed_and_text_when_not(monkeypatch):
    pytest.importorskip("tqdm")
    out = io.StringIO()
    ProgressBar(file=out).start_run(0, 1, 4)
    assert "|" in out.getvalue()  # a bar, not a text line
    monkeypatch.setitem(sys.modules, "tqdm", None)
    out = io.StringIO()
    ProgressBar(file=out).start_run(0, 1, 4)
    assert out.getvalue() == "k-means run 1/1: up to 4 iterations\n"
    with pytest.raises(ImportError, match="tqdm"):
        ProgressBar(use_tqdm=True)


def test_a_run_cut_short_closes_its_bar():
    pytest.importorskip("tqdm")
    with ProgressBar(file=io.StringIO(), use_tqdm=True) as bar:
        bar.start_run(0, 1, 10)
        bar.iteration(0, 1.0, 1.0)
    assert bar._bar is None


@pytest.mark.parametrize(
    "kwargs, error",
    [({"use_tqdm": "yes"}, TypeError), ({"min_interval": -1}, ValueError)],
)
def test_bad_parameters(kwargs, error):
    with pytest.raises(error):
        ProgressBar(**kwargs)
