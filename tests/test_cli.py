"""The command line, driven in a subprocess as a user would drive it."""

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from kmeans_xp import cli
from kmeans_xp._testing import same_partition
from kmeans_xp.datasets import make_blobs

CENTERS = [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 0.0]]


def run(*args, cwd, python_prelude=None):
    """Run ``python -m kmeans_xp ARGS`` (or a prelude, then main(ARGS))."""
    if python_prelude is None:
        command = [sys.executable, "-m", "kmeans_xp", *args]
    else:
        code = (
            f"{python_prelude}\nimport sys\nfrom kmeans_xp.cli import main\n"
            f"sys.exit(main({list(args)!r}))"
        )
        command = [sys.executable, "-c", code]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("KMEANS_XP_DEBUG", None)
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)


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
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "plot: skipped (--no-plot)" in proc.stdout


@pytest.mark.parametrize("name", ["with_header.csv", "plain.csv", "data.npy"])
def test_fit_reads_csv_and_npy(name, data, tmp_path):
    X, y = data
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
    with pytest.raises(RuntimeError):
        with cli._atomic_output(str(target)) as f:
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
