"""scikit-learn's own k-means tests, run against kmeans_xp.

At collection time this module reads ``sklearn/cluster/tests/test_k_means.py``
and ``test_bisect_k_means.py`` from the installed scikit-learn, rewrites
their imports of ``KMeans``, ``MiniBatchKMeans``, ``k_means``,
``kmeans_plusplus`` and ``BisectingKMeans`` to kmeans_xp's, executes them
as modules and exposes their test functions here, parametrize marks
included. The fixtures scikit-learn's conftest provides are defined below.

Two lists say what does not pass, each entry with its reason:

- ``PRIVATE``: tests of scikit-learn's private helpers or attributes; they
  can never apply and are skipped with the reason.
- ``MISSING``: tests that fail for a feature still to be built (issue 17);
  they are marked ``xfail(strict=True)``, so a test that starts passing
  fails the suite until its entry is removed, and the list shrinks as the
  features land.

Entries are patterns on the test's id here (``name[params]``): ``*`` matches
any text, ``[1-4]`` inside the brackets one character of that range, and the
brackets around the parameters are literal.
"""

from __future__ import annotations

import ast
import fnmatch
import types
from pathlib import Path

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

#: Names whose import from ``sklearn.cluster`` is redirected to kmeans_xp.
OURS = {"KMeans", "MiniBatchKMeans", "k_means", "kmeans_plusplus", "BisectingKMeans"}

#: scikit-learn test modules run here, and the prefix their tests get here.
MODULES = {"test_k_means": "test_k_means__", "test_bisect_k_means": "test_bisect__"}


PRIVATE: dict[str, str] = {
    "test_k_means__relocate_empty_clusters*": "calls _relocate_empty_clusters_dense/_sparse only",
    "test_k_means__minibatch_update_consistency*": "calls _mini_batch_step and _labels_inertia only",
    "test_k_means__minibatch_reassign*": "calls _mini_batch_step and _labels_inertia only",
    "test_k_means__euclidean_distance*": "calls _euclidean_dense_dense_wrapper only",
    "test_k_means__inertia*": "calls _inertia_dense/_inertia_sparse only",
    "test_k_means__is_same_clustering*": "calls _is_same_clustering only",
    "test_k_means__kmeans_init_auto_with_initial_centroids*": (
        "reads the private attribute _n_init (our n_init='auto' rule is tested in "
        "tests/test_kmeans.py)"
    ),
    "test_k_means__n_init_auto*": "reads the private attribute _n_init",
    "test_k_means__minibatch_kmeans_init_size": "reads the private attribute _init_size",
    "test_k_means__sample_weight_init*": "calls the private method _init_centroids",
    "test_k_means__sample_weight_zero*": "calls the private method _init_centroids",
}

#: Empty since issue 17 landed; a future gap goes here with the change it needs.
MISSING: dict[str, str] = {}


def _load(module_name: str) -> types.ModuleType | None:
    """scikit-learn's test module with our estimators, or None if absent."""
    path = Path(sklearn.__file__).parent / "cluster" / "tests" / f"{module_name}.py"
    if not path.exists():  # a scikit-learn installed without its tests
        return None
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    body = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "sklearn.cluster":
            ours = [alias for alias in node.names if alias.name in OURS]
            theirs = [alias for alias in node.names if alias.name not in OURS]
            if ours:
                body.append(ast.ImportFrom(module="kmeans_xp", names=ours, level=0))
            if theirs:
                body.append(ast.ImportFrom(module="sklearn.cluster", names=theirs, level=0))
        else:
            body.append(node)
    tree.body = body
    ast.fix_missing_locations(tree)
    module = types.ModuleType(f"sklearn_suite.{module_name}")
    module.__file__ = str(path)
    # Running scikit-learn's own installed test file is the point of this module.
    exec(compile(tree, str(path), "exec"), module.__dict__)  # noqa: S102
    return module


def _expose() -> dict[str, object]:
    exposed = {}
    for module_name, prefix in MODULES.items():
        module = _load(module_name)
        if module is None:
            continue
        for name, obj in vars(module).items():
            if name.startswith("test_") and callable(obj):
                exposed[prefix + name[len("test_"):]] = obj
    return exposed


_TESTS = _expose()
globals().update(_TESTS)


def _matches(test_id: str, pattern: str) -> bool:
    """Whether ``name[params]`` matches a ``name_glob[params_glob]`` pattern
    (the brackets around the parameters are literal; a pattern without them
    matches every parametrisation)."""
    name, _, params = test_id.partition("[")
    name_glob, bracket, params_glob = pattern.partition("[")
    if not fnmatch.fnmatchcase(name, name_glob):
        return False
    if not bracket:
        return True
    return fnmatch.fnmatchcase(params.removesuffix("]"), params_glob.removesuffix("]"))


@pytest.fixture(autouse=True)
def _known_outcomes(request):
    """Skip ``PRIVATE`` tests and mark ``MISSING`` ones strictly xfail."""
    test_id = request.node.name
    for pattern, reason in PRIVATE.items():
        if _matches(test_id, pattern):
            pytest.skip(f"scikit-learn internals: {reason}")
    for pattern, reason in MISSING.items():
        if _matches(test_id, pattern):
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
            break


# -- the fixtures scikit-learn's conftest.py provides --------------------------


@pytest.fixture
def global_random_seed():
    # scikit-learn's default when SKLEARN_TESTS_GLOBAL_RANDOM_SEED is unset.
    return 42


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def global_dtype(request):
    # scikit-learn skips float32 unless asked; a GPU library needs it run.
    return request.param


def test_the_suite_was_found():
    if not _TESTS:
        pytest.skip("this scikit-learn was installed without its tests")
    assert any(name.startswith("test_k_means__") for name in _TESTS)
    assert any(name.startswith("test_bisect__") for name in _TESTS)


def test_every_listed_pattern_matches_a_test():
    """A pattern for a test scikit-learn removed or renamed would hide
    nothing; keep the lists exact."""
    if not _TESTS:
        pytest.skip("this scikit-learn was installed without its tests")
    for pattern in [*PRIVATE, *MISSING]:
        base = pattern.split("[", 1)[0]
        assert any(fnmatch.fnmatchcase(name, base) for name in _TESTS), pattern
