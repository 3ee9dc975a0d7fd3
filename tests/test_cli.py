"""The command line, driven in a subprocess as a user would drive it."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from kmeans_xp import KMeans, cli
from kmeans_xp._testing import same_partition
from kmeans_xp.datasets import make_blobs

CENTERS = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]]


def run(*args, cwd, python_prelude=None, warnings="ignore"):
    """Run ``python -m kmeans_xp ARGS`` (or a prelude, then main(ARGS));
    ``warnings=None`` leaves Python's warnings on, as a user has them."""
    if python_prelude is None:
        command = [sys.executable, "-m", "kmeans_xp", *args]
    else:
        code = (
            f"{python_prelude}\nimport sys\nfrom kmeans_xp.cli import main\n"
            f"sys.exit(main({list(args)!r}))"
        )
        command = [sys.executable, "-c", code]
    env = {**os.environ, "PYTHONWARNINGS": warnings or ""}
    env.pop("KMEANS_XP_DEBUG", None)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=120, check=False)


@pytest.fixture
def data(tmp_path):
    X, y = make_blobs(150, centers=CENTERS, random_state=0)
    np.savetxt(tmp_path / "with_header.csv", X, delimiter=",", header="a,b,c", comments="")
    np.savetxt(tmp_path / "plain.csv", X, delimiter=",")
    np.save(tmp_path / "data.npy", X)
    return X, y


def test_demo_writes_plot_and_summary(tmp_path):
    proc = run("demo", "--n-samples", "3000", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "backend: numpy" in out and "on cpu" in out
    assert "best k = 6" in out and "fit: KMeans(n_clusters=6" in out
    assert "plot: wrote kmeans_xp_demo.png" in out
    png = (tmp_path / "kmeans_xp_demo.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000


def test_demo_without_matplotlib_skips_the_plot(tmp_path):
    proc = run(
        "demo", "--n-samples", "2000", "--json", cwd=tmp_path,
        python_prelude="import sys; sys.modules['matplotlib'] = None",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["best_k"] == 6 and report["agreement"] > 0.99
    assert "matplotlib is not installed" in report["plot"]
    assert "kmeans_xp[plot]" in report["plot"]
    assert set(report["times_s"]) == {"data", "select_k", "fit"}
    assert not list(tmp_path.iterdir())


def test_console_script_runs(tmp_path):
    script = shutil.which("kmeans-xp", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the kmeans-xp console script is not installed in this environment")
    proc = subprocess.run([script, "demo", "--no-plot", "--n-samples", "2000"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "plot: skipped (--no-plot)" in proc.stdout


@pytest.mark.parametrize("name", ["with_header.csv", "plain.csv", "data.npy"])
def test_fit_reads_csv_and_npy(name, data, tmp_path):
    _, y = data
    proc = run("fit", name, "-k", "3", "--json", "--labels", "labels.csv",
               "--centers", "centers.npy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["n_samples"] == 150 and report["n_features"] == 3 and report["k"] == 3
    assert sorted(report["cluster_sizes"]) == [50, 50, 50]
    labels = np.loadtxt(tmp_path / "labels.csv", skiprows=1, dtype=int)
    assert same_partition(labels, y)
    centers = np.load(tmp_path / "centers.npy")
    np.testing.assert_allclose(centers, report["centers"])
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["with_header.csv", "plain.csv", "data.npy", "labels.csv", "centers.npy"]
    )


def test_fit_plot_and_text_output(data, tmp_path):
    proc = run("fit", "data.npy", "-k", "3", "--n-init", "2", "--plot", "fit.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "best of 2 run(s)" in proc.stdout and "wrote plot: fit.png" in proc.stdout
    assert (tmp_path / "fit.png").read_bytes().startswith(b"\x89PNG")


def test_fit_cosine(tmp_path):
    rng = np.random.default_rng(0)
    directions = np.repeat(np.eye(4)[:2], 30, axis=0) + 0.05 * rng.normal(size=(60, 4))
    np.save(tmp_path / "emb.npy", directions * rng.uniform(1, 50, (60, 1)))
    proc = run("fit", "emb.npy", "-k", "2", "--metric", "cosine", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["metric"] == "cosine" and report["cluster_sizes"] == [30, 30]
    np.testing.assert_allclose(np.linalg.norm(report["centers"], axis=1), 1.0, rtol=1e-6)


def test_select_k_table_and_plot(data, tmp_path):
    proc = run("select-k", "data.npy", "--k-range", "2:6", "--plot", "elbow.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "best k: 3 (criterion: silhouette" in proc.stdout
    assert sum(line.strip()[:1].isdigit() for line in lines) == 5  # k = 2..6
    assert (tmp_path / "elbow.png").stat().st_size > 5_000
    proc = run("select-k", "with_header.csv", "--k-range", "2,3,5", "--criterion", "elbow",
               "--json", cwd=tmp_path)
    report = json.loads(proc.stdout)
    assert report["best_k"] == 3 and [r["k"] for r in report["results"]] == [2, 3, 5]
    assert {"inertia", "silhouette", "calinski_harabasz", "davies_bouldin", "fit_time"} <= set(
        report["results"][0]
    )


def test_quantize(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    proc = run("quantize", "in.png", "-k", "5", "-o", "out.png", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert len(report["palette"]) == 5
    with Image.open(tmp_path / "out.png") as out:
        result = np.asarray(out)
    assert result.shape == (30, 40, 3)
    assert {tuple(c) for c in result.reshape(-1, 3)} <= {tuple(c) for c in report["palette"]}


@pytest.mark.parametrize(
    "args, message",
    [
        (["fit", "missing.csv", "-k", "3"], "missing.csv: no such file"),
        (["fit", "bad.csv", "-k", "2"], "bad.csv, line 3, column 2: 'x' is not a number"),
        (["fit", "ragged.csv", "-k", "1"], "ragged.csv, line 2: 1 columns, expected 2"),
        (["fit", "data.npy", "-k", "151"], "-k 151 is larger than the number of rows (150)"),
        (["fit", "data.npy", "-k", "3", "--backend", "jax"], "invalid choice: 'jax'"),
        (["fit", "data.npy", "-k", "3", "--device", "cuda"], "numpy backend runs on the CPU"),
        (["fit", "data.npy", "-k", "3", "--labels", "no/dir.csv"], "does not exist"),
        (["fit", "data.npy", "-k", "3", "--plot", "p.xyz"], "cannot write .xyz"),
        (["select-k", "data.npy", "--k-range", "2:x"], "expected LOW:HIGH"),
        (["select-k", "data.npy", "--k-range", "2:150"], "k=150 needs more than 150 rows"),
        (["quantize", "data.npy", "-o", "out.png"], "not a readable image"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_input_is_one_line_and_leaves_no_file(args, message, data, tmp_path):
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,x\n")
    (tmp_path / "ragged.csv").write_text("1,2\n3\n")
    before = set(os.listdir(tmp_path))
    proc = run(*args, cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert message in proc.stderr
    assert set(os.listdir(tmp_path)) == before


def test_gpu_asked_for_but_absent(data, tmp_path):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    proc = run("fit", "data.npy", "-k", "3", "--backend", "torch", "--device", "cuda",
               cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "kmeans-xp: error: --device cuda: no CUDA GPU is available to torch on this machine."
    )


@pytest.mark.parametrize("command", [[], ["demo"], ["fit"], ["select-k"], ["quantize"]])
def test_help(command, tmp_path):
    proc = run(*command, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "usage: kmeans-xp" in proc.stdout


# In-process checks of the helpers the commands rely on.


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), cli._atomic_output(str(target)) as f:
        f.write(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []
    with cli._atomic_output(str(target)) as f:
        f.write(b"whole")
    assert target.read_bytes() == b"whole"
    assert list(tmp_path.iterdir()) == [target]


def test_json_has_no_nan():
    payload = {"a": [1.0, float("nan")], "b": {"c": float("inf")}, "d": "x"}
    assert cli._json_safe(payload) == {"a": [1.0, None], "b": {"c": None}, "d": "x"}


def test_progress_bar_appears_only_after_a_second(capsys):
    pytest.importorskip("tqdm")
    with cli._Progress(2, "quick", enabled=True) as bar:
        bar.update(2)
    assert "quick" not in capsys.readouterr().err
    with cli._Progress(2, "slow", enabled=True) as bar:
        time.sleep(1.3)
        bar.update()
    assert "slow" in capsys.readouterr().err
    with cli._Progress(2, "off", enabled=False) as bar:
        time.sleep(0.01)
    assert capsys.readouterr().err == ""


# The rough edges a first try met (issue 20).


def test_float32_npy_stays_float32(data, tmp_path):
    X, _ = data
    np.save(tmp_path / "f32.npy", X.astype(np.float32))
    proc = run("fit", "f32.npy", "-k", "3", "--json", "--centers", "c.npy", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["dtype"] == "float32"
    assert np.load(tmp_path / "c.npy").dtype == np.float32
    proc = run("fit", "f32.npy", "-k", "3", "--json", "--dtype", "float64", cwd=tmp_path)
    assert json.loads(proc.stdout)["dtype"] == "float64"
    proc = run("fit", "plain.csv", "-k", "3", "--json", cwd=tmp_path)
    assert json.loads(proc.stdout)["dtype"] == "float64"


def test_loaded_float32_is_not_copied_to_float64(data, tmp_path):
    X, _ = data
    np.save(tmp_path / "f32.npy", X.astype(np.float32))
    loaded = cli._load_data(str(tmp_path / "f32.npy"))
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, X.astype(np.float32))


@pytest.mark.parametrize(
    "args, message",
    [
        (["-k", "100000"], "-k 100000 is larger than the number of pixels (1200) in in.png."),
        (["-k", "60", "--sample-size", "50"],
         "-k 60 is larger than --sample-size 50, the number of pixels the palette is fitted on"),
    ],
)
def test_quantize_errors_speak_in_flags(args, message, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(0).integers(0, 256, size=(30, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    proc = run("quantize", "in.png", "-o", "out.png", *args, cwd=tmp_path)
    assert proc.returncode == 1
    assert message in proc.stderr
    for api_name in ("sample_size", "n_colors", "n_clusters"):
        assert api_name not in proc.stderr
    assert not (tmp_path / "out.png").exists()


def test_header_only_csv_is_one_clean_line(tmp_path):
    (tmp_path / "empty.csv").write_text("a,b,c\n")
    proc = run("fit", "empty.csv", "-k", "2", cwd=tmp_path, warnings=None)
    assert proc.returncode == 1
    assert proc.stderr == "kmeans-xp: error: empty.csv: a header row and no data rows.\n"


@pytest.mark.parametrize("separator", [";", "\t", " "])
def test_semicolon_tab_and_space_files_are_detected(separator, data, tmp_path):
    X, y = data
    np.savetxt(tmp_path / "other.csv", X, delimiter=separator, header=separator.join("abc"),
               comments="")
    proc = run("fit", "other.csv", "-k", "3", "--json", "--labels", "l.txt", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["n_samples"], report["n_features"]) == (150, 3)
    assert same_partition(np.loadtxt(tmp_path / "l.txt", dtype=int), y)


def test_a_wrong_delimiter_gets_a_hint(data, tmp_path):
    X, _ = data
    np.savetxt(tmp_path / "semi.csv", X, delimiter=";")
    proc = run("fit", "semi.csv", "-k", "3", "--delimiter", ",", cwd=tmp_path)
    assert proc.returncode == 1
    # Line 1 reads as a header row: no cell of it is a number.
    assert "semi.csv, line 2, column 1:" in proc.stderr
    assert "is not a number (read with delimiter ','; the file looks ';'-separated: " \
        "try --delimiter ';')" in proc.stderr
    # Decimal commas defeat detection; the error still points at the delimiter.
    (tmp_path / "decimal.csv").write_text("1,5;2,5\n3,0;4,5\n")
    proc = run("fit", "decimal.csv", "-k", "1", cwd=tmp_path)
    assert proc.returncode == 1 and "try --delimiter ';'" in proc.stderr


@pytest.mark.parametrize("name", ["c.npy", "c.csv", "c.txt"])
def test_centers_and_labels_follow_the_extension(name, data, tmp_path):
    labels_name = "l" + os.path.splitext(name)[1]
    proc = run("fit", "data.npy", "-k", "3", "--json", "--centers", name,
               "--labels", labels_name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    expected = np.array(json.loads(proc.stdout)["centers"])
    raw = (tmp_path / name).read_bytes()
    if name.endswith(".npy"):
        assert raw.startswith(b"\x93NUMPY")
        centers, labels = np.load(tmp_path / name), np.load(tmp_path / labels_name)
    elif name.endswith(".csv"):
        assert raw.startswith(b"x0,x1,x2\n")
        centers = np.loadtxt(tmp_path / name, delimiter=",", skiprows=1)
        assert (tmp_path / labels_name).read_text().startswith("label\n")
        labels = np.loadtxt(tmp_path / labels_name, skiprows=1, dtype=int)
    else:
        assert raw.count(b" ") == 6 and b"," not in raw
        centers, labels = np.loadtxt(tmp_path / name), np.loadtxt(tmp_path / labels_name)
    np.testing.assert_array_equal(centers, expected)  # every digit kept
    assert labels.shape == (150,)


def test_an_unknown_output_extension_is_refused_before_work(data, tmp_path):
    proc = run("fit", "data.npy", "-k", "3", "--centers", "c.bin", cwd=tmp_path)
    assert proc.returncode == 1
    assert "--centers c.bin: unknown file type; use .csv" in proc.stderr
    assert not (tmp_path / "c.bin").exists()


def test_version(tmp_path):
    import kmeans_xp

    proc = run("--version", cwd=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"kmeans-xp {kmeans_xp.__version__}"


def test_max_iter_and_tol(data, tmp_path):
    proc = run("fit", "data.npy", "-k", "3", "--json", "--max-iter", "1", "--seed", "3",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_iter"] == 1
    loose = run("fit", "data.npy", "-k", "3", "--json", "--tol", "1e9", cwd=tmp_path)
    assert json.loads(loose.stdout)["n_iter"] <= 2
    proc = run("select-k", "data.npy", "--k-range", "2:3", "--max-iter", "2", "--tol", "0",
               "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for bad in (["--tol", "-1"], ["--tol", "x"], ["--max-iter", "0"]):
        proc = run("fit", "data.npy", "-k", "3", *bad, cwd=tmp_path)
        assert proc.returncode == 2 and bad[0] in proc.stderr


def test_every_option_has_help():
    parser = cli._build_parser()
    subparsers = next(a for a in parser._actions if a.choices and "fit" in a.choices)
    checked = 0
    for name, sub in [("kmeans-xp", parser), *subparsers.choices.items()]:
        for action in sub._actions:
            if action is subparsers:
                continue
            assert action.help and action.help.strip(), f"{name} {action.option_strings}"
            checked += 1
    assert checked > 40
    assert "knee" in subparsers.choices["select-k"].format_help()  # --criterion


def test_nan_and_inf_name_file_row_and_column(data, tmp_path):
    X, _ = data
    (tmp_path / "nan.csv").write_text("a,b\n1,2\n3,nan\n5,6\n")
    proc = run("fit", "nan.csv", "-k", "2", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "kmeans-xp: error: nan.csv, line 3, column 2: 'nan' is not a finite number; "
        "k-means needs finite values."
    )
    bad = X.copy()
    bad[3, 0] = np.inf
    np.save(tmp_path / "inf.npy", bad)
    proc = run("select-k", "inf.npy", cwd=tmp_path)
    assert proc.returncode == 1
    assert "inf.npy, row 4, column 1: inf is not a finite number" in proc.stderr


class _KMeansWithProgress:
    """Stands in for KMeans(progress=...) until the core branch brings it:
    reports two unconverged iterations, then fits as usual."""

    def __new__(cls, *args, progress=None, **kwargs):
        class Fitted(KMeans):
            def fit(self, X, y=None, sample_weight=None):
                if progress is None:
                    return super().fit(X)
                progress.start_run(0, 1, self.max_iter)
                for i in range(2):
                    progress.iteration(i, inertia=100.0 - i, center_shift=0.5)
                progress.end_run(2, converged=False)
                return super().fit(X)

        return Fitted(*args, **kwargs)

    def __init__(self, n_clusters=8, *, init="k-means++", n_init="auto", max_iter=300,
                 tol=1e-4, verbose=0, random_state=None, metric="euclidean", progress=None):
        pass


def test_fit_passes_a_progress_bar_numbering_the_runs(data, tmp_path, monkeypatch, capsys):
    import kmeans_xp._kmeans

    monkeypatch.setattr(kmeans_xp._kmeans, "KMeans", _KMeansWithProgress)
    monkeypatch.setitem(sys.modules, "tqdm", None)  # the plain text bar
    code = cli.main(["fit", str(tmp_path / "data.npy"), "-k", "3", "--n-init", "2",
                     "--progress"])
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert "k-means k=3 run 1/2: up to 300 iterations" in err
    assert "k-means k=3 run 2/2: iteration 1/300, inertia 100, centre shift 0.5" in err
    assert err[-1] == ("k-means k=3 run 2/2: max_iter=300 reached without convergence "
                       "(inertia 99, centre shift 0.5)")
    cli.main(["fit", str(tmp_path / "data.npy"), "-k", "3", "--progress", "--quiet"])
    assert capsys.readouterr().err == ""


def test_fit_progress_end_to_end(data, tmp_path):
    proc = run("fit", "data.npy", "-k", "3", "--max-iter", "1", "--progress", cwd=tmp_path,
               python_prelude="import sys; sys.modules['tqdm'] = None")
    assert proc.returncode == 0, proc.stderr
    assert "k-means k=3 run 1/1: iteration 1/1, inertia" in proc.stderr
    assert "max_iter=1 reached without convergence" in proc.stderr
