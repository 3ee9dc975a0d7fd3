"""Plots render with the Agg backend from any backend's arrays and write
non-empty PNG files; without matplotlib the error names the extra."""

import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from kmeans_xp import KMeans, plot, select_k  # noqa: E402
from kmeans_xp.datasets import make_blobs  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _save(ax, path):
    ax.figure.savefig(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    return data


def _blobs(n_features=2, n=300):
    centers = np.zeros((4, n_features))
    centers[:, :2] = [[0, 0], [10, 0], [0, 10], [10, 10]]
    return make_blobs(n, centers=centers, random_state=0)


def test_plot_clusters_from_every_backend(xp, to_xp, tmp_path):
    X, _y = _blobs()
    X_xp = to_xp(X)
    model = KMeans(4, random_state=0).fit(X_xp)
    ax = plot.plot_clusters(X_xp, model.labels_, model.cluster_centers_)
    assert ax.get_xlabel() == "feature 0" and ax.get_ylabel() == "feature 1"
    assert len(ax.collections) == 2  # points and centres
    _save(ax, tmp_path / "clusters.png")


def test_more_than_two_features_use_pca(xp, to_xp, tmp_path):
    X, y = _blobs(n_features=5)
    ax = plot.plot_clusters(to_xp(X), to_xp(y), centers=to_xp(np.zeros((4, 5))))
    assert ax.get_xlabel().startswith("PC1") and "PCA of 5 features" in ax.get_xlabel()
    assert ax.get_ylabel().startswith("PC2")
    _save(ax, tmp_path / "pca.png")


def test_pca_projection_matches_numpy():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4)) * [5.0, 3.0, 1.0, 0.5]
    points, _, names = plot.project_2d(X)
    centred = X - X.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    np.testing.assert_allclose(np.abs(points), np.abs(expected), atol=1e-8)
    assert "PC1" in names[0]


def test_one_feature_and_subsampled_points(tmp_path):
    X = np.concatenate([np.zeros(50), np.ones(50) * 5])[:, None]
    labels = np.repeat([0, 1], 50)
    ax = plot.plot_clusters(X, labels, centers=[[0.0], [5.0]], max_points=30)
    assert ax.collections[0].get_offsets().shape == (30, 2)
    _save(ax, tmp_path / "one.png")


def test_plot_elbow_and_silhouette(tmp_path):
    X, _ = _blobs()
    for criterion in ("elbow", "silhouette"):
        result = select_k(X, range(2, 8), criterion=criterion, random_state=0)
        ax = plot.plot_elbow(result)
        assert "best k = 4" in ax.get_title()
        _save(ax, tmp_path / f"elbow_{criterion}.png")
    ax = plot.plot_silhouette(X, result.best_model.labels_)
    assert "4 clusters" in ax.get_title()
    _save(ax, tmp_path / "silhouette.png")


def test_plot_silhouette_on_every_backend(xp, to_xp, tmp_path):
    X, y = _blobs(n=120)
    _fig, ax = plt.subplots()
    assert plot.plot_silhouette(to_xp(X), to_xp(y), ax=ax) is ax
    _save(ax, tmp_path / "silhouette.png")


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"kmeans_xp\[plot\]"):
        plot.plot_clusters(np.zeros((3, 2)), [0, 1, 0])


def test_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        plot.plot_clusters(np.zeros((3, 2)), [0, 1])


def _texts_inside_canvas(fig):
    """Axis labels and titles of every Axes (a twin's too), each checked to
    lie inside the figure once drawn (nothing clipped at the edges)."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    checked = 0
    for ax in fig.axes:
        texts = [ax.xaxis.label, ax.yaxis.label, ax.title]
        for text in texts:
            if not text.get_text() or not text.get_visible():
                continue
            box = text.get_window_extent(renderer)
            assert box.x0 >= 0 and box.y0 >= 0, (text.get_text(), box)
            assert box.x1 <= width and box.y1 <= height, (text.get_text(), box)
            checked += 1
    return checked


@pytest.mark.parametrize("criterion", ["elbow", "calinski_harabasz", "davies_bouldin"])
def test_elbow_labels_are_not_clipped(criterion, tmp_path):
    # Inertia near 1e6 has wide tick labels ("800000") that pushed the y
    # label off the left edge; the long twin label ran off the right one.
    X, _ = _blobs()
    result = select_k(X * 10.0, range(2, 8), criterion=criterion, random_state=0)
    assert 1e5 < result.inertia[0] < 1e6
    ax = plot.plot_elbow(result)
    ax.figure.savefig(tmp_path / "elbow.png")
    assert ax.figure.get_layout_engine() is not None
    assert _texts_inside_canvas(ax.figure) >= (3 if criterion == "elbow" else 4)


def test_cluster_and_silhouette_labels_are_not_clipped(tmp_path):
    X, labels = _blobs(n_features=5)
    ax = plot.plot_clusters(X, labels)
    assert ax.get_xlabel().startswith("PC1")
    ax.figure.savefig(tmp_path / "clusters.png")
    assert _texts_inside_canvas(ax.figure) >= 3
    ax = plot.plot_silhouette(X, labels)
    ax.figure.savefig(tmp_path / "silhouette.png")
    assert _texts_inside_canvas(ax.figure) >= 3
