"""Helpers for tests: host conversion and namespace/device/dtype assertions.

These live in the package (not in ``tests/``) so that every test module, the
benchmarks and downstream projects can use the same checks.
"""

from __future__ import annotations

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as device_of

from ._array_api import to_host as to_numpy  # tests call host copies to_numpy

__all__ = ["assert_array_like", "same_partition", "to_numpy"]


def _same_namespace(a, b) -> bool:
    return array_namespace(a) is array_namespace(b)


def assert_array_like(actual, reference, *, dtype=None) -> None:
    """Assert ``actual`` has the namespace and device of ``reference``.

    ``dtype`` defaults to the dtype of ``reference``. Checked before values so
    that a wrong namespace or device fails with a message that says so.
    """
    assert _same_namespace(actual, reference), (
        f"namespace {array_namespace(actual).__name__} != "
        f"{array_namespace(reference).__name__}"
    )
    assert device_of(actual) == device_of(reference), (
        f"device {device_of(actual)} != {device_of(reference)}"
    )
    expected = reference.dtype if dtype is None else dtype
    assert actual.dtype == expected, f"dtype {actual.dtype} != {expected}"


def same_partition(labels_a, labels_b) -> bool:
    """True when two labelings define the same partition (up to relabelling)."""
    a = np.asarray(to_numpy(labels_a)).ravel()
    b = np.asarray(to_numpy(labels_b)).ravel()
    if a.shape != b.shape:
        return False
    pairs = np.unique(np.stack([a, b]), axis=1)
    return (
        np.unique(pairs[0]).size == pairs.shape[1]
        and np.unique(pairs[1]).size == pairs.shape[1]
    )
