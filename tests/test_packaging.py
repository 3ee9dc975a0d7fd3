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


def test_project_version_matches_the_package(project):
    assert project["version"] == kmeans_xp.__version__


def test_readme_tells_the_truth_about_the_torch_pin():
    text = (ROOT / "README.md").read_text()
    assert "only selects the CPU build" not in text
    assert "torch==2.13.0" in text
    assert "--index-url https://download.pytorch.org/whl/cpu" in text
    assert "CUDA build" in text
