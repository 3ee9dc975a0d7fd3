"""``BisectingKMeans``: divisive k-means over kmeans_xp's ``KMeans``.

Each step splits one leaf of a binary tree of clusters in two with a
2-means fit on that leaf's rows (gathered with ``xp.take``), as
``sklearn.cluster.BisectingKMeans`` does; the leaves are the clusters.
Everything is generic array-API code over the public ``KMeans``, so it runs
on every backend ``KMeans`` runs on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

from ._array_api import as_host_scalar, is_dask_array
from ._base import MIXED_INPUTS_REASON, EstimatorBase, _convert_array
from ._kernels import get_kernels
from ._kmeans import KMeans
from ._lloyd import distances_to
from ._problem import make_problem
from ._sklearn_compat import SklearnCompatMixin
from ._validation import (
    _check_int,
    check_array,
    check_fitted_input,
    check_n_clusters_fits,
    check_random_state,
    check_sample_weight,
    check_tol,
    result_dtype,
)
from .exceptions import ConvergenceWarning, InvalidParameterError

__all__ = ["BisectingKMeans"]

_STRATEGIES = ("biggest_inertia", "largest_cluster")
_INITS = ("k-means++", "random")
_ALGORITHMS = ("lloyd", "elkan")


@dataclass(eq=False)
class _Node:
    """A cluster of the bisection tree.

    ``indices`` (rows of X in the cluster) is dropped once the fit ends;
    ``label`` is set on leaves then. ``score`` chooses the next leaf to
    split; ``inertia`` is the cluster's weighted sum of squared distances.
    """

    center: object
    indices: object
    score: float
    inertia: float
    left: _Node | None = None
    right: _Node | None = None
    label: int = -1

    def leaves(self):
        if self.left is None:
            yield self
        else:
            yield from self.left.leaves()
            yield from self.right.leaves()


class BisectingKMeans(EstimatorBase, SklearnCompatMixin):
    """Bisecting k-means on numpy, PyTorch, CuPy or any array-API array.

    Follows ``sklearn.cluster.BisectingKMeans``: starting from one cluster
    holding every row, the leaf chosen by ``bisecting_strategy`` is split
    with the best of ``n_init`` 2-means fits on its rows, until there are
    ``n_clusters`` leaves. ``predict`` walks the tree from the root, going
    at each node to the closer of its two children's centres, so a new row
    may land in another cluster than its nearest centre.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (leaves); at most the number of samples.
    init : {"random", "k-means++"} or callable, default="random"
        Initialisation of each 2-means fit, as for ``KMeans``.
    n_init : int, default=1
        2-means fits per split; the lowest inertia wins.
    random_state : None, int, numpy.random.Generator or RandomState
        One generator drawn from by every split in turn.
    max_iter : int, default=300
        Maximum Lloyd iterations of each 2-means fit.
    verbose : int, default=0
        Print each split's new centres when positive.
    tol : float, default=1e-4
        Tolerance of each 2-means fit, relative to the variance of the rows
        being split, as ``KMeans``'s. (scikit-learn 1.9 passes ``tol`` to
        its bisections as an absolute bound on the centre shift instead, so
        on data far from unit scale the fits may stop at other iterations.)
    copy_x : bool, default=True
        Accepted for scikit-learn compatibility: X is never modified, so
        both values behave the same.
    algorithm : {"lloyd", "elkan"}, default="lloyd"
        Accepted for scikit-learn compatibility: "elkan" gives the same
        result as Lloyd from the same initial centres, so Lloyd runs.
    bisecting_strategy : {"biggest_inertia", "largest_cluster"}, default="biggest_inertia"
        Split the leaf with the largest inertia, or with the most rows.

    Attributes
    ----------
    cluster_centers_ : array of shape (n_clusters, n_features)
        Centres of the leaves, in X's namespace, device and dtype.
    labels_ : integer array of shape (n_samples,)
        Leaf of each training row.
    inertia_ : float
        Weighted sum of squared distances of the rows to their leaf's centre.
    n_features_in_ : int
    feature_names_in_ : numpy object array of shape (n_features,)
        Only when X was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import BisectingKMeans
    >>> X = np.array([[1.0, 1.0], [2.0, 1.0], [1.0, 2.0],
    ...               [10.0, 10.0], [11.0, 10.0], [30.0, 0.0], [31.0, 0.0]])
    >>> bkm = BisectingKMeans(n_clusters=3, random_state=0).fit(X)
    >>> len(set(bkm.labels_.tolist()))
    3
    >>> bool(bkm.predict(np.array([[30.5, 0.5]]))[0] == bkm.labels_[5])
    True
    """

    def __init__(
        self,
        n_clusters=8,
        *,
        init="random",
        n_init=1,
        random_state=None,
        max_iter=300,
        verbose=0,
        tol=1e-4,
        copy_x=True,
        algorithm="lloyd",
        bisecting_strategy="biggest_inertia",
    ):
        self._store_params(locals())

    def _check_params(self) -> None:
        _check_int(self.n_clusters, "n_clusters", 1)
        _check_int(self.n_init, "n_init", 1)
        _check_int(self.max_iter, "max_iter", 1)
        _check_int(self.verbose, "verbose", 0)
        check_tol(self.tol)
        if not (callable(self.init) or (isinstance(self.init, str) and self.init in _INITS)):
            raise InvalidParameterError(
                f"init must be one of {_INITS} or a callable, got {self.init!r}."
            )
        if not isinstance(self.copy_x, bool):
            raise InvalidParameterError(f"copy_x must be a bool, got {self.copy_x!r}.")
        if self.algorithm not in _ALGORITHMS:
            raise InvalidParameterError(
                f"algorithm must be one of {_ALGORITHMS}, got {self.algorithm!r}."
            )
        if self.bisecting_strategy not in _STRATEGIES:
            raise InvalidParameterError(
                f"bisecting_strategy must be one of {_STRATEGIES}, got {self.bisecting_strategy!r}."
            )

    def fit(self, X, y=None, sample_weight=None):
        """Compute bisecting k-means clustering.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            Any array-API array, or anything ``numpy.asarray`` accepts
            (a pandas or polars DataFrame records ``feature_names_in_``),
            or a scipy.sparse CSR/CSC or torch sparse CSR matrix (the rows
            of each split stay sparse). Never modified.
        y : ignored
        sample_weight : array of shape (n_samples,), optional
            Non-negative weights, in X's namespace and device (or a list).

        Returns
        -------
        self
        """
        self._check_params()
        if is_dask_array(X):
            # Each split gathers a cluster's rows: data-dependent shapes that
            # Dask cannot chunk without computing them.
            raise TypeError(
                "BisectingKMeans does not support Dask arrays: compute X first "
                "(X.compute()), or use KMeans, which fits Dask arrays chunk by chunk."
            )
        X_input = X
        X, xp, device = check_array(X)
        n_samples = X.shape[0]
        check_n_clusters_fits(self.n_clusters, n_samples)
        weights = check_sample_weight(sample_weight, X, xp, device)
        rng = check_random_state(self.random_state)
        self._record_feature_names(X_input)

        indices = xp.arange(n_samples, device=device)
        # Sparse X gets the sparse kernels: row subsets stay sparse.
        kernels = get_kernels(xp, device, X)
        # As scikit-learn: the root's centre is the unweighted mean.
        root = _Node(
            center=kernels.column_sums(X) / n_samples, indices=indices, score=0.0, inertia=0.0
        )
        if self.n_clusters == 1:
            root.inertia = _cluster_inertia(X, weights, root.center, kernels)
        for _ in range(self.n_clusters - 1):
            self._split(X, weights, self._leaf_to_split(root), rng, xp, kernels)

        leaves = list(root.leaves())
        for label, leaf in enumerate(leaves):
            leaf.label = label
        # Labels in row order without writing into an array: sort the
        # leaves' row indices and carry each row's leaf along.
        rows = xp.concat([leaf.indices for leaf in leaves])
        owner = xp.concat(
            [xp.full(leaf.indices.shape, leaf.label, dtype=xp.int64, device=device) for leaf in leaves]
        )
        labels = xp.take(owner, xp.argsort(rows), axis=0)
        centers = xp.stack([leaf.center for leaf in leaves])
        out_dtype = result_dtype(X_input, X)
        if centers.dtype != out_dtype:
            centers = xp.astype(centers, out_dtype)
        inertia = sum(leaf.inertia for leaf in leaves)
        for leaf in leaves:
            leaf.indices = None  # the tree keeps centres only
        self._set_fitted(
            cluster_centers_=centers,
            labels_=labels,
            inertia_=inertia,
            n_features_in_=X.shape[1],
            _bisecting_tree=root,
        )
        return self

    def to_namespace(self, xp, device=None):
        """A copy of this estimator whose arrays, the centres held by its
        bisection tree included, live in namespace ``xp`` (see
        ``KMeans.to_namespace``)."""
        converted = super().to_namespace(xp, device)
        converted.__dict__["_bisecting_tree"] = _convert_tree(self._bisecting_tree, xp, device)
        return converted

    def _leaf_to_split(self, root: _Node) -> _Node:
        """The leaf of largest score (the first on ties, as scikit-learn),
        among leaves with at least two rows."""
        best = None
        for leaf in root.leaves():
            if leaf.indices.shape[0] < 2:
                continue
            if best is None or leaf.score > best.score:
                best = leaf
        if best is None:  # cannot happen while n_clusters <= n_samples
            raise ValueError("no cluster with two or more samples is left to split.")
        return best

    def _split(self, X, weights, node: _Node, rng, xp, kernels) -> None:
        """Replace leaf ``node`` by two children from a 2-means fit on its rows."""
        rows = kernels.select_rows(X, node.indices)
        row_weights = None if weights is None else xp.take(weights, node.indices, axis=0)
        two_means = KMeans(
            n_clusters=2,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=rng,
        )
        with warnings.catch_warnings():
            # A split into identical halves is legitimate here; scikit-learn
            # does not warn either.
            warnings.simplefilter("ignore", ConvergenceWarning)
            two_means.fit(rows, sample_weight=row_weights)
        centers, labels = two_means.cluster_centers_, two_means.labels_
        if self.verbose:
            print(f"New centroids from bisection: {centers}")
        children = []
        for side in (0, 1):
            mask = labels == side
            center = centers[side, :]
            inertia = _cluster_inertia(
                kernels.select_rows(rows, xp.nonzero(mask)[0]),
                None if row_weights is None else row_weights[mask],
                center,
                kernels,
            )
            size = as_host_scalar(xp.sum(xp.astype(mask, xp.int64)))
            score = inertia if self.bisecting_strategy == "biggest_inertia" else size
            children.append(_Node(center=center, indices=node.indices[mask], score=score, inertia=inertia))
        node.left, node.right = children
        node.indices = None

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return ``labels_``."""
        return self.fit(X, sample_weight=sample_weight).labels_

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return the distances of X to the centres."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def _checked_input(self, X, method: str):
        """Validate X against the fitted model (namespace, device, width)."""
        self._check_fitted()
        self._check_feature_names(X)
        X, xp, device = check_array(X)
        check_fitted_input(self, X, xp, f"{type(self).__name__}.{method}()", device=device)
        return X, xp, device

    def predict(self, X):
        """Leaf of each row of X, found by descending the bisection tree.

        At each node the row goes to the child whose centre is closer (the
        left one on ties), as scikit-learn's ``predict`` does.

        Returns an integer array of shape (n_samples,) in X's namespace and
        device.
        """
        X, xp, device = self._checked_input(X, "predict")
        centers_dtype = X.dtype
        kernels = get_kernels(xp, device, X)
        rows_parts, label_parts = [], []
        pending = [(self._bisecting_tree, xp.arange(X.shape[0], device=device))]
        while pending:
            node, rows = pending.pop()
            if rows.shape[0] == 0:
                continue
            if node.left is None:
                rows_parts.append(rows)
                label_parts.append(xp.full(rows.shape, node.label, dtype=xp.int64, device=device))
                continue
            left = xp.astype(node.left.center, centers_dtype)
            right = xp.astype(node.right.center, centers_dtype)
            # Closer to the right centre iff (x - midpoint) . (right - left) > 0:
            # one matrix-vector product, no (rows x 2) distance array.
            direction = right - left
            offset = xp.sum(((left + right) / 2) * direction)
            goes_right = (kernels.select_rows(X, rows) @ direction) - offset > 0
            pending.append((node.left, rows[~goes_right]))
            pending.append((node.right, rows[goes_right]))
        rows = xp.concat(rows_parts)
        labels = xp.concat(label_parts)
        return xp.take(labels, xp.argsort(rows), axis=0)

    def transform(self, X):
        """Euclidean distance of each row of X to each centre.

        Returns an array of shape (n_samples, n_clusters) in X's namespace,
        device and floating dtype.
        """
        X, xp, device = self._checked_input(X, "transform")
        centers = xp.astype(self.cluster_centers_, X.dtype)
        return xp.sqrt(_squared_distances(X, centers, xp, device))

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the inertia of X under the closest centres (not the
        tree), as scikit-learn's ``score``."""
        X, xp, device = self._checked_input(X, "score")
        weights = check_sample_weight(sample_weight, X, xp, device)
        centers = xp.astype(self.cluster_centers_, X.dtype)
        d2 = xp.min(_squared_distances(X, centers, xp, device), axis=1)
        return -as_host_scalar(xp.sum(d2) if weights is None else xp.sum(weights * d2))

    def _sklearn_expected_failed_checks(self) -> dict[str, str]:
        reason = (
            "the check shuffles the weighted rows, so the random initial "
            "centres of each 2-means fit differ from those drawn on the "
            "repeated rows and a split can reach another local optimum; "
            "weights equal repetition from the same initial centres "
            "(tests/test_bisect.py on well separated data)."
        )
        return {
            # Runs only with SCIPY_ARRAY_API=1.
            "check_array_api_mixed_inputs": MIXED_INPUTS_REASON,
            "check_sample_weight_equivalence_on_dense_data": reason,
            "check_sample_weight_equivalence_on_sparse_data": reason,
        }


def _convert_tree(node: _Node | None, xp, device) -> _Node | None:
    """A copy of a fitted tree with its centres converted to ``xp``."""
    if node is None:
        return None
    return _Node(
        center=_convert_array(node.center, xp, device),
        indices=None,
        score=node.score,
        inertia=node.inertia,
        left=_convert_tree(node.left, xp, device),
        right=_convert_tree(node.right, xp, device),
        label=node.label,
    )


def _cluster_inertia(rows, weights, center, kernels) -> float:
    """Weighted sum of squared distances of ``rows`` (dense or sparse) to
    ``center``."""
    if rows.shape[0] == 0:
        return 0.0
    xp = kernels.xp
    labels = xp.zeros((rows.shape[0],), dtype=xp.int64, device=kernels.data_device(rows))
    d2 = kernels.sq_distances_to(rows, center[None, :], labels)
    return as_host_scalar(xp.sum(d2) if weights is None else xp.sum(weights * d2))


def _squared_distances(X, centers, xp, device):
    """(n_samples, n_clusters) squared distances, in the block runner's row
    blocks so the temporaries stay one block in size; dense X is measured
    from the centres' mean, which keeps ``|x|^2 - 2 x.c + |c|^2`` accurate
    far from the origin (sparse X is never shifted)."""
    problem = make_problem(
        X, None, xp, device, centers.shape[0], shift=xp.mean(centers, axis=0)
    )
    distances = distances_to(problem, centers - problem.runner.shift, exact_nearest=True)
    _, parts = problem.runner.map(lambda Xb, start, stop, acc: (acc, distances(Xb)))
    return parts[0] if len(parts) == 1 else xp.concat(parts)
