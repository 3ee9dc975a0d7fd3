"""Sphinx configuration of the kmeans_xp documentation.

Build it with ``.ci/docs`` or
``python -m sphinx -W --keep-going -b html docs docs/_build/html``.
The API reference (``api.rst``) is written here at every build from
``kmeans_xp.__all__`` and the public submodules' ``__all__``, so a name added
to the package appears in the docs without editing them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# The checkout's kmeans_xp, not an installed copy.
kmeans_xp = importlib.import_module("kmeans_xp")

project = "kmeans_xp"
author = "kmeans_xp developers"
copyright = "2026, kmeans_xp developers"
release = kmeans_xp.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/*.examples", "sg_execution_times.rst"]
default_role = "literal"
nitpicky = False

autosummary_generate = True
autosummary_imported_members = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say it already
autodoc_default_options = {"member-order": "groupwise"}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "alabaster"
html_title = f"kmeans_xp {release}"
html_theme_options = {
    "description": "One k-means for every array library",
    "fixed_sidebar": True,
    "github_user": "kmeans-xp",
    "github_repo": "kmeans_xp",
}
html_static_path: list[str] = []

sphinx_gallery_conf = {
    "examples_dirs": str(HERE.parent / "examples"),
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "doc_module": ("kmeans_xp",),
    "backreferences_dir": "generated",
    "reference_url": {"kmeans_xp": None},
    "download_all_examples": False,
    "remove_config_comments": True,
    "min_reported_time": 1,
    "matplotlib_animations": False,
    # An example that raises fails the build (-W turns it into an error).
    "abort_on_example_error": True,
    "show_memory": False,
    "write_computation_times": False,
}

# --------------------------------------------------------------------------
# The API reference, written from the package's __all__ lists
# --------------------------------------------------------------------------

#: Headings of the public submodules; one not listed here still gets a
#: section, titled by its module docstring's first line.
_MODULE_TITLES = {
    "kmeans_xp.metrics": "Cluster quality metrics",
    "kmeans_xp.plot": "Plots",
    "kmeans_xp.datasets": "Example data",
    "kmeans_xp.image": "Images",
    "kmeans_xp.exceptions": "Exceptions and warnings",
}
#: Submodules that are not part of the Python API (the command line has its
#: own page).
_NOT_API = {"kmeans_xp.cli"}


def _public_submodules() -> list[str]:
    names = []
    for info in pkgutil.iter_modules(kmeans_xp.__path__):
        name = f"kmeans_xp.{info.name}"
        if info.name.startswith("_") or name in _NOT_API:
            continue
        names.append(name)
    return sorted(names)


def _template(obj) -> str:
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "exception.rst"
    if inspect.isclass(obj):
        return "class.rst"
    return "function.rst"


def _autosummary(module: str, names: list[str]) -> list[str]:
    """autosummary blocks (one per template) documenting ``names`` of ``module``."""
    mod = importlib.import_module(module)
    by_template: dict[str, list[str]] = {}
    for name in names:
        obj = getattr(mod, name)
        if inspect.ismodule(obj):
            continue  # a submodule has its own section
        by_template.setdefault(_template(obj), []).append(name)
    lines = [f".. currentmodule:: {module}", ""]
    for template in ("class.rst", "function.rst", "exception.rst"):
        if template not in by_template:
            continue
        lines += [".. autosummary::", "   :toctree: generated/", "   :nosignatures:",
                  f"   :template: autosummary/{template}", ""]
        lines += [f"   {name}" for name in by_template[template]] + [""]
    return lines


def _first_line(module: str) -> str:
    doc = inspect.getdoc(importlib.import_module(module)) or module
    return doc.splitlines()[0].rstrip(".")


def write_api_reference() -> str:
    """Write ``api.rst`` (only when its text changes) and return the text."""
    top = [name for name in kmeans_xp.__all__
           if not inspect.ismodule(getattr(kmeans_xp, name))]
    # A name re-exported at the top (e.g. quantize_image) is listed once.
    listed = {id(getattr(kmeans_xp, name)) for name in top}
    lines = [
        ".. This file is written by conf.py at every build; do not edit it.",
        "",
        "API reference",
        "=============",
        "",
        "Every public name of kmeans_xp, from ``kmeans_xp.__all__`` and the public",
        "submodules. Each page ends with the gallery examples that use the name.",
        "",
        "Estimators and functions (``kmeans_xp``)",
        "----------------------------------------",
        "",
    ]
    lines += _autosummary("kmeans_xp", top)
    for module in _public_submodules():
        mod = importlib.import_module(module)
        names = [n for n in getattr(mod, "__all__", []) if id(getattr(mod, n)) not in listed]
        if not names:
            continue
        title = f"{_MODULE_TITLES.get(module) or _first_line(module)} (``{module}``)"
        lines += [title, "-" * len(title), "", f".. automodule:: {module}",
                  "   :no-members:", "   :no-index:", ""]
        lines += _autosummary(module, names)
    text = "\n".join(lines) + "\n"
    path = HERE / "api.rst"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return text


write_api_reference()
