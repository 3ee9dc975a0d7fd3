"""What a newcomer and a packager read: licence, project metadata,
changelog, and the README's install advice. (`.ci/package` builds the
sdist and wheel and tests the installed wheel.)"""

import re
from pathlib import Path

import pytest

import kmeans_xp

ROOT = Path(__file__).resolve().parent.parent
tomllib = pytest.importorskip("tomllib")


@pytest.fixture(scope="module")
def project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_license_file_is_bsd_3_clause():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License")
    assert "kmeans_xp developers" in text
    assert "Neither the name of the copyright holder" in text


def test_pyproject_uses_an_spdx_license_and_lists_the_file(project):
    assert project["license"] == "BSD-3-Clause"
    assert project["license-files"] == ["LICENSE"]
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    # The SPDX string form needs setuptools 77 or later.
    (setuptools,) = [r for r in build["requires"] if r.startswith("setuptools")]
    assert int(re.search(r">=\s*(\d+)", setuptools).group(1)) >= 77
    # An SPDX expression replaces the licence classifier (setuptools refuses both).
    assert not any(c.startswith("License ::") for c in project["classifiers"])


def test_classifiers_and_urls(project):
    classifiers = project["classifiers"]
    assert "Programming Language :: Python :: 3" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    minimum = project["requires-python"].removeprefix(">=")
    assert f"Programming Language :: Python :: {minimum}" in classifiers
    urls = project["urls"]
    assert {"Homepage", "Documentation", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())


def test_docs_extra_has_the_doc_tools(project):
    docs = " ".join(project["optional-dependencies"]["docs"])
    for tool in ("sphinx", "numpydoc", "sphinx-gallery", "matplotlib"):
        assert tool in docs


def test_changelog_has_unreleased_and_the_current_release():
    text = (ROOT / "CHANGELOG.md").read_text()
    headings = re.findall(r"^## \[([^\]]+)\]", text, flags=re.MULTILINE)
    assert headings[0] == "Unreleased"
    assert kmeans_xp.__version__ in headings
    assert "### Added" in text.split("## [0.1.0]")[0]


def test_project_version_is_the_package_version():
    # One place: pyproject reads the version from kmeans_xp.__version__.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "kmeans_xp.__version__"
    }


def test_readme_tells_the_truth_about_the_torch_pin():
    text = (ROOT / "README.md").read_text()
    assert "only selects the CPU build" not in text
    assert "torch==2.13.0" in text
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert "CUDA build" in text


def _docs_conf(monkeypatch, tmp_path):
    """docs/conf.py loaded as a module, writing its api.rst into tmp_path."""
    import importlib.util

    pytest.importorskip("matplotlib")
    spec = importlib.util.spec_from_file_location("_kmeans_xp_docs_conf",
                                                  ROOT / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    monkeypatch.setattr(conf, "HERE", tmp_path)
    return conf


def test_api_reference_lists_every_public_name(monkeypatch, tmp_path):
    import importlib
    import inspect

    conf = _docs_conf(monkeypatch, tmp_path)
    text = conf.write_api_reference()
    assert (tmp_path / "api.rst").read_text() == text
    entries = set(re.findall(r"^   (\w+)$", text, flags=re.MULTILINE))
    for name in kmeans_xp.__all__:
        obj = getattr(kmeans_xp, name)
        if inspect.ismodule(obj):
            assert f".. automodule:: {obj.__name__}" in text
            for sub in obj.__all__:
                assert sub in entries, f"{obj.__name__}.{sub}"
        else:
            assert name in entries, name
    exceptions = importlib.import_module("kmeans_xp.exceptions")
    assert set(exceptions.__all__) <= entries
    assert "kmeans_xp.cli" not in text and "_progress" not in text
    # quantize_image is re-exported at the top: listed there, not twice.
    assert len(re.findall(r"^   quantize_image$", text, flags=re.MULTILINE)) == 1


def test_a_name_added_to_all_appears_in_the_api_reference(monkeypatch, tmp_path):
    conf = _docs_conf(monkeypatch, tmp_path)

    def batched_k_means(X):
        """A function another branch might add."""

    class BisectingKMeans:
        """A class another branch might add."""

    monkeypatch.setattr(kmeans_xp, "batched_k_means", batched_k_means, raising=False)
    monkeypatch.setattr(kmeans_xp, "BisectingKMeans", BisectingKMeans, raising=False)
    monkeypatch.setattr(kmeans_xp, "__all__",
                        [*kmeans_xp.__all__, "batched_k_means", "BisectingKMeans"])
    text = conf.write_api_reference()
    top = text.split("Cluster quality metrics")[0]
    assert re.search(r":template: autosummary/class.rst\n\n(   \w+\n)*   BisectingKMeans\n", top)
    assert re.search(
        r":template: autosummary/function.rst\n\n(   \w+\n)*   batched_k_means\n", top
    )


def test_every_example_is_in_the_gallery_and_documented():
    examples = sorted((ROOT / "examples").glob("plot_*.py"))
    assert len(examples) >= 6
    assert (ROOT / "examples" / "README.txt").exists()
    for path in examples:
        source = path.read_text()
        title = source.split('"""')[1].strip().splitlines()
        assert len(title) >= 2 and set(title[1]) == {"="}, path.name
