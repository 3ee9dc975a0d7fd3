"""Product quantisation on top of ``batched_k_means``.

A vector of d features is cut into ``n_subspaces`` sub-vectors of d / M
features; each sub-vector is replaced by the index of its nearest codeword
in that subspace's codebook of ``2**n_bits`` codewords. With 8 bits a vector
of d float32 values (4d bytes) becomes M bytes. The M codebooks are one
batched k-means over the (M, n, d / M) sub-vectors.

Search is asymmetric (ADC, as faiss's ``IndexPQ``): queries stay exact;
their squared distances to every codeword are tabulated once per query,
and the distance to an encoded vector is the sum of M table entries picked
by its codes.
"""

from __future__ import annotations

import numbers

from ._array_api import (
    array_namespace,
    as_host_scalar,
    device_of,
    is_array_api_obj,
    is_gpu_device,
    namespace_name,
)
from ._validation import _check_int, check_array
from .batched import (
    _BLOCK_BYTES,
    _GPU_BLOCK_BYTES,
    _distances,
    _one_blas_thread,
    _scorer,
    _scores,
    batched_k_means,
)
from .exceptions import NotFittedError

__all__ = ["ProductQuantizer"]


class ProductQuantizer:
    """Product quantiser: compress vectors to ``n_subspaces`` codes of
    ``n_bits`` bits, decode them, and search them by asymmetric distance.

    Parameters
    ----------
    n_subspaces : int
        Number of sub-vectors M; must divide the number of features.
    n_bits : int, default=8
        Bits per code, 1 to 8: ``2**n_bits`` codewords per subspace, and at
        least that many training vectors. Codes are uint8.
    init : {"k-means++", "random"}, default="k-means++"
        Initialisation of each subspace's k-means (see ``batched_k_means``).
    n_init : int, default=1
        Initialisations per subspace; each keeps its best.
    max_iter : int, default=25
        Lloyd iterations per subspace at most (faiss's default).
    tol : float, default=1e-4
        Convergence tolerance of each subspace's k-means, relative to the
        mean variance of its features.
    random_state : None, int or numpy.random.Generator

    Attributes
    ----------
    codebooks_ : array of shape (n_subspaces, 2**n_bits, n_features / n_subspaces)
        In the namespace, device and floating dtype of the training data.
    n_features_in_ : int
    inertia_ : array of shape (n_subspaces,)
        Squared quantisation error of the training data, per subspace.
    n_iter_ : array of shape (n_subspaces,)
    codes_ : uint8 array of shape (n_database, n_subspaces)
        Codes of the vectors passed to ``add`` (empty before).

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import ProductQuantizer
    >>> X = np.random.default_rng(0).normal(size=(1000, 16))
    >>> pq = ProductQuantizer(n_subspaces=4, n_bits=4, random_state=0).fit(X)
    >>> codes = pq.encode(X)
    >>> codes.shape, codes.dtype.name
    ((1000, 4), 'uint8')
    >>> bool(np.mean((pq.decode(codes) - X) ** 2) < np.var(X))
    True
    >>> distances, indices = pq.add(X).search(X[:3], 2)
    >>> indices.shape
    (3, 2)
    """

    def __init__(
        self,
        n_subspaces: int,
        n_bits: int = 8,
        *,
        init="k-means++",
        n_init: int = 1,
        max_iter: int = 25,
        tol: float = 1e-4,
        random_state=None,
    ):
        self.n_subspaces = n_subspaces
        self.n_bits = n_bits
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    # ------------------------------------------------------------ training

    def fit(self, X, y=None):
        """Train the M codebooks: one batched k-means over the sub-vectors.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            Training vectors, any array-API array; never modified.
        y : ignored

        Returns
        -------
        self
        """
        n_subspaces = _check_int(self.n_subspaces, "n_subspaces", 1)
        n_bits = _check_int(self.n_bits, "n_bits", 1)
        if n_bits > 8:
            raise ValueError(f"n_bits must be at most 8 (codes are uint8), got {n_bits}.")
        X, xp, _ = check_array(X)
        n_samples, n_features = X.shape
        if n_features % n_subspaces:
            raise ValueError(
                f"n_subspaces={n_subspaces} must divide the number of features "
                f"({n_features}): each subspace gets n_features / n_subspaces of them."
            )
        n_codewords = 2**n_bits
        if n_codewords > n_samples:
            raise ValueError(
                f"2**n_bits = {n_codewords} codewords per subspace need at least as many "
                f"training vectors; got {n_samples}. Lower n_bits or add data."
            )
        centers, _, inertia, n_iter = batched_k_means(
            _subvectors(X, n_subspaces),
            n_codewords,
            init=self.init,
            n_init=self.n_init,
            max_iter=self.max_iter,
            tol=self.tol,
            random_state=self.random_state,
        )
        self.codebooks_ = centers
        self.inertia_ = inertia
        self.n_iter_ = n_iter
        self.n_features_in_ = n_features
        self.codes_ = xp.zeros((0, n_subspaces), dtype=xp.uint8, device=device_of(centers))
        return self

    # ------------------------------------------------------- codes <-> vectors

    def encode(self, X):
        """Codes of the nearest codeword in each subspace.

        Parameters
        ----------
        X : array of shape (n_samples, n_features)
            In the namespace and device of the training data.

        Returns
        -------
        codes : uint8 array of shape (n_samples, n_subspaces)
        """
        X, xp = self._check_vectors(X, "X", "encode")
        codebooks = xp.astype(self.codebooks_, X.dtype)
        n_subspaces, n_codewords, _ = codebooks.shape
        scorer = _scorer(codebooks)
        codes = []
        with _one_blas_thread(xp):
            for start, stop in self._blocks(X, n_subspaces * n_codewords):
                subvectors = _subvectors(X[start:stop, :], n_subspaces)
                labels = xp.argmin(_scores(subvectors, scorer), axis=2)
                codes.append(xp.astype(xp.permute_dims(labels, (1, 0)), xp.uint8))
        return codes[0] if len(codes) == 1 else xp.concat(codes)

    def decode(self, codes):
        """Vectors rebuilt from their codes: the chosen codewords side by side.

        Parameters
        ----------
        codes : integer array of shape (n_samples, n_subspaces)
            In the namespace and device of the codebooks.

        Returns
        -------
        X : array of shape (n_samples, n_features), the codebooks' dtype
        """
        self._check_fitted()
        xp = array_namespace(self.codebooks_)
        codes = self._check_codes(codes, xp)
        n_subspaces, n_codewords, sub_features = self.codebooks_.shape
        flat = _flat_codes(codes, n_codewords, xp)
        words = xp.take(
            xp.reshape(self.codebooks_, (n_subspaces * n_codewords, sub_features)), flat, axis=0
        )
        return xp.reshape(words, (codes.shape[0], n_subspaces * sub_features))

    # ---------------------------------------------------------------- search

    def add(self, X):
        """Encode X and append its codes to the database ``codes_``; returns self."""
        codes = self.encode(X)
        xp = array_namespace(codes)
        self.codes_ = codes if self.codes_.shape[0] == 0 else xp.concat([self.codes_, codes])
        return self

    def reset(self):
        """Empty the database (the codebooks stay); returns self."""
        self._check_fitted()
        xp = array_namespace(self.codes_)
        self.codes_ = xp.zeros((0, self.n_subspaces), dtype=xp.uint8, device=device_of(self.codes_))
        return self

    def distance_tables(self, queries):
        """Squared distances of each query's sub-vectors to every codeword.

        Returns an array of shape (n_queries, n_subspaces, 2**n_bits).
        """
        queries, xp = self._check_vectors(queries, "queries", "distance_tables")
        tables = self._tables(queries, xp)
        return xp.permute_dims(tables, (1, 0, 2))

    def search(self, queries, k: int, *, codes=None):
        """The ``k`` nearest encoded vectors of each query by asymmetric
        distance (exact queries, encoded database).

        Parameters
        ----------
        queries : array of shape (n_queries, n_features)
            In the namespace and device of the training data.
        k : int
            Neighbours per query, at most the number of encoded vectors.
        codes : integer array of shape (n_database, n_subspaces), optional
            The encoded vectors to search; by default those passed to
            ``add`` (``codes_``).

        Returns
        -------
        distances : array of shape (n_queries, k)
            Squared Euclidean distances from each query to the decoded
            neighbours, ascending.
        indices : int64 array of shape (n_queries, k)
            Their rows in ``codes`` (ties: the lower row first).
        """
        queries, xp = self._check_vectors(queries, "queries", "search")
        codes = self.codes_ if codes is None else self._check_codes(codes, xp)
        n_database = codes.shape[0]
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n_database:
            raise ValueError(
                f"k must be an integer from 1 to the number of encoded vectors "
                f"({n_database}); got {k!r}."
                + (" Call add(X) first, or pass codes=." if n_database == 0 else "")
            )
        k = int(k)
        tables = self._tables(queries, xp)  # (M, n_queries, K)
        n_subspaces, n_queries, n_codewords = tables.shape
        device = device_of(queries)
        # (n_queries, M * K): entry m * K + c is the distance to codeword c of subspace m.
        flat_tables = xp.reshape(xp.permute_dims(tables, (1, 0, 2)), (n_queries, n_subspaces * n_codewords))
        best_d = best_i = None
        rows = xp.arange(n_queries, dtype=xp.int64, device=device)[:, None]
        step = max(1, self._block_bytes(queries) // (max(n_queries, 1) * n_subspaces * 8))
        for start in range(0, n_database, step):
            stop = min(start + step, n_database)
            flat = _flat_codes(codes[start:stop, :], n_codewords, xp)
            parts = xp.take(flat_tables, flat, axis=1)
            block_d = xp.sum(xp.reshape(parts, (n_queries, stop - start, n_subspaces)), axis=2)
            block_i = xp.broadcast_to(
                xp.arange(start, stop, dtype=xp.int64, device=device)[None, :],
                (n_queries, stop - start),
            )
            if best_d is not None:
                block_d = xp.concat([best_d, block_d], axis=1)
                block_i = xp.concat([best_i, block_i], axis=1)
            # Stable: on ties the earlier (lower) row stays first.
            order = xp.argsort(block_d, axis=1, stable=True)[:, :k]
            pick = xp.reshape(order + rows * block_d.shape[1], (-1,))
            best_d = xp.reshape(xp.take(xp.reshape(block_d, (-1,)), pick), (n_queries, k))
            best_i = xp.reshape(xp.take(xp.reshape(block_i, (-1,)), pick), (n_queries, k))
        return best_d, best_i

    # -------------------------------------------------------------- helpers

    def _tables(self, queries, xp):
        codebooks = xp.astype(self.codebooks_, queries.dtype)
        with _one_blas_thread(xp):
            return _distances(_subvectors(queries, codebooks.shape[0]), codebooks)

    def _check_fitted(self):
        if not hasattr(self, "codebooks_"):
            raise NotFittedError(
                "This ProductQuantizer instance is not fitted yet. Call 'fit' with "
                "training vectors before using it."
            )

    def _check_vectors(self, X, name: str, method: str):
        """Validated X (2-D, finite, floating) in the codebooks' namespace
        and device, with ``n_features_in_`` columns."""
        self._check_fitted()
        X, xp, _device = check_array(X, name=name)
        _check_where(X, self.codebooks_, name, method)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{name} has {X.shape[1]} features, but ProductQuantizer is expecting "
                f"{self.n_features_in_} features as input."
            )
        return X, xp

    def _check_codes(self, codes, xp):
        if not is_array_api_obj(codes):
            raise TypeError(f"codes must be an integer array, got {type(codes).__name__}.")
        _check_where(codes, self.codebooks_, "codes", "decode/search")
        if not xp.isdtype(codes.dtype, "integral"):
            raise TypeError(f"codes must have an integer dtype, got {codes.dtype}.")
        n_subspaces, n_codewords, _ = self.codebooks_.shape
        if codes.ndim != 2 or codes.shape[1] != n_subspaces:
            raise ValueError(
                f"codes must have shape (n_samples, {n_subspaces}), got {tuple(codes.shape)}."
            )
        if codes.shape[0] and (
            as_host_scalar(xp.min(codes)) < 0 or as_host_scalar(xp.max(codes)) >= n_codewords
        ):
            raise ValueError(f"codes must lie in [0, {n_codewords}) for n_bits={self.n_bits}.")
        return codes

    def _block_bytes(self, X) -> int:
        xp = array_namespace(X)
        return _GPU_BLOCK_BYTES if is_gpu_device(xp, device_of(X)) else _BLOCK_BYTES

    def _blocks(self, X, width: int):
        itemsize = array_namespace(X).finfo(X.dtype).bits // 8
        step = max(1, self._block_bytes(X) // (width * itemsize))
        n = X.shape[0]
        return [(start, min(start + step, n)) for start in range(0, n, step)]


def _subvectors(X, n_subspaces: int):
    """(n, d) -> (M, n, d / M): sub-vector m of every row (a transposed view)."""
    xp = array_namespace(X)
    n_samples, n_features = X.shape
    split = xp.reshape(X, (n_samples, n_subspaces, n_features // n_subspaces))
    return xp.permute_dims(split, (1, 0, 2))


def _flat_codes(codes, n_codewords: int, xp):
    """Row-major (n * M,) indices ``m * K + codes[:, m]`` into M stacked codebooks."""
    n_subspaces = codes.shape[1]
    offsets = xp.arange(n_subspaces, dtype=xp.int64, device=device_of(codes)) * n_codewords
    return xp.reshape(xp.astype(codes, xp.int64) + offsets[None, :], (-1,))


def _check_where(a, reference, name: str, method: str) -> None:
    """Raise unless ``a`` shares the namespace and device of ``reference``."""
    a_xp, ref_xp = array_namespace(a), array_namespace(reference)
    if a_xp is not ref_xp:
        raise TypeError(
            f"ProductQuantizer.{method}(): {name} is a {namespace_name(a_xp)} array but the "
            f"codebooks are {namespace_name(ref_xp)} arrays; convert {name} first."
        )
    if device_of(a) != device_of(reference):
        raise ValueError(
            f"ProductQuantizer.{method}(): {name} is on device {device_of(a)} but the "
            f"codebooks are on {device_of(reference)}; move {name} there first."
        )
