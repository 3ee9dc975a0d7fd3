"""scikit-learn's own conformance suite on our estimators (numpy input).

Checks that cannot apply are listed, with the reason, by each estimator's
``_sklearn_expected_failed_checks`` (scikit-learn 1.9's ``Tags`` has no field
for them); they run and are reported as xfail, never skipped silently.
Checks that scikit-learn itself skips (pandas absent, ``SCIPY_ARRAY_API``
unset for its array-API checks) show up as skips with scikit-learn's reason.
"""

import pytest

pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from kmeans_xp import BisectingKMeans, KMeans, MiniBatchKMeans  # noqa: E402


def _estimators():
    # Small max_iter/n_init keep the ~70 checks fast, as scikit-learn does
    # for its own KMeans.
    return [
        KMeans(n_clusters=3, n_init=2, max_iter=20, random_state=0),
        MiniBatchKMeans(n_clusters=3, max_iter=20, random_state=0),
        BisectingKMeans(n_clusters=3, max_iter=20, random_state=0),
    ]


def _expected_failed(estimator) -> dict:
    hook = getattr(estimator, "_sklearn_expected_failed_checks", None)
    return hook() if hook is not None else {}


# A warning from a check (e.g. "does not inherit from BaseEstimator") fails
# it: the estimators must pass scikit-learn's suite silently.
@pytest.mark.filterwarnings("error")
@parametrize_with_checks(_estimators(), expected_failed_checks=_expected_failed)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def test_every_expected_failure_has_a_reason():
    for estimator in _estimators():
        for check, reason in _expected_failed(estimator).items():
            assert check.startswith("check_") and len(reason) > 20, (estimator, check)
