"""A stand-in for ``cupyx.scipy.sparse`` on scipy.sparse, for
``kmeans_xp._testing.cupy_on_numpy()``: under it numpy arrays stand for
CuPy arrays, and these classes for cupyx's CSR and CSC matrices and arrays,
so the cupyx path of the sparse kernels runs on a machine without a GPU.

The classes keep ``data``, ``indices`` and ``indptr`` as plain numpy arrays
(cupyx keeps CuPy arrays there), and compute through a scipy.sparse matrix
sharing them. They offer only calls that cupyx has (checked against CuPy
13.6 and 14.2, the oldest and newest releases ``cupy>=13`` allows), with
cupyx's restrictions where they differ from scipy's: data of bool, float or
complex dtype only; ``(data, indices, indptr)`` and ``(data, (row, col))``
given as arrays, not lists; ``toarray``, ``sum`` and products with dense
arrays returning arrays (never ``numpy.matrix``), products in Fortran order
as cuSPARSE writes them. ``csr_array`` and ``csc_array`` exist from CuPy
14.2 on. A call the kernels start making that is not here fails by name.
"""

from __future__ import annotations

import types

import numpy as np

__all__ = ["cupyx_sparse_module"]

#: The data dtypes cupyx.scipy.sparse accepts.
_DATA_KINDS = "bfc"


def _scipy_sparse():
    import scipy.sparse

    return scipy.sparse


class _Compressed:
    """CSR or CSC with cupyx's attributes and methods."""

    #: "csr" or "csc"; the scipy class of the same name does the work.
    format = ""
    _scipy_name = ""

    def __init__(self, arg1, shape=None, dtype=None, copy=False):
        sp = _scipy_sparse()
        if isinstance(arg1, _Compressed):
            host = arg1._host().asformat(self.format)
            host = host.copy() if copy or host.format != arg1.format else host
        elif sp.issparse(arg1):
            host = arg1.asformat(self.format).copy()  # host to device: a copy
        elif _is_shape(arg1):
            host = self._scipy_class()(tuple(arg1), dtype=dtype or np.float64)
        elif isinstance(arg1, tuple) and len(arg1) == 3:
            data, indices, indptr = arg1
            if not all(isinstance(a, np.ndarray) and a.ndim == 1 for a in arg1):
                raise ValueError("data, indices, and indptr must be 1-D cupy arrays")
            if len(data) != len(indices):
                raise ValueError("indices and data should have the same size")
            if shape is None:
                raise ValueError("the stand-in needs shape= with (data, indices, indptr)")
            host = self._view(data, indices, indptr, tuple(shape))
            if copy:
                host = host.copy()
        elif isinstance(arg1, tuple) and len(arg1) == 2:
            data, coords = arg1
            if not (
                isinstance(data, np.ndarray) and all(isinstance(c, np.ndarray) for c in coords)
            ):
                raise ValueError("data, row and col must be cupy arrays")
            host = sp.coo_matrix((data, coords), shape=shape).asformat(self.format)
        elif isinstance(arg1, np.ndarray):
            host = self._scipy_class()(np.atleast_2d(arg1))
        else:
            raise ValueError("Unsupported initializer format")
        if dtype is not None:
            host = host.astype(dtype)
        if host.dtype.kind not in _DATA_KINDS:
            raise ValueError("Only bool, float32, float64, complex64 and complex128 are supported")
        self.data, self.indices, self.indptr = host.data, host.indices, host.indptr
        self._shape = tuple(host.shape)

    # -- plumbing --------------------------------------------------------------

    @classmethod
    def _scipy_class(cls):
        return getattr(_scipy_sparse(), cls._scipy_name)

    @classmethod
    def _view(cls, data, indices, indptr, shape):
        """A scipy matrix on these arrays, without the constructor's
        checks and copies (it would copy slices of a larger array)."""
        host = cls._scipy_class()(shape, dtype=data.dtype)
        host.data, host.indices, host.indptr = data, indices, indptr
        return host

    def _host(self):
        host = self._view(self.data, self.indices, self.indptr, self._shape)
        if hasattr(self, "_has_canonical_format"):
            host.has_canonical_format = self._has_canonical_format
        return host

    def _wrap(self, host):
        """A stand-in on the arrays of scipy result ``host`` (CSR or CSC;
        any other format becomes CSR, as cupyx's results are)."""
        if host.format not in ("csr", "csc"):
            host = host.tocsr()
        kind = "array" if isinstance(self, _SparseArray) else "matrix"
        cls = _CLASSES[f"{host.format}_{kind}"]
        out = cls.__new__(cls)
        out.data, out.indices, out.indptr = host.data, host.indices, host.indptr
        out._shape = tuple(host.shape)
        return out

    # -- attributes --------------------------------------------------------------

    ndim = 2

    @property
    def shape(self):
        return self._shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def nnz(self):
        return self.data.size

    @property
    def device(self):
        return self.data.device

    @property
    def has_canonical_format(self):
        if not hasattr(self, "_has_canonical_format"):
            self._has_canonical_format = bool(self._host().has_canonical_format)
        return self._has_canonical_format

    @has_canonical_format.setter
    def has_canonical_format(self, value):
        self._has_canonical_format = bool(value)

    def __len__(self):
        raise TypeError("sparse matrix length is ambiguous; use getnnz() or shape[0]")

    def __repr__(self):
        return f"<stand-in cupyx {type(self).__name__} of shape {self._shape}, {self.nnz} stored>"

    # -- conversions ---------------------------------------------------------------

    def get(self, stream=None):
        """A copy on the host: the scipy.sparse class of the same name."""
        host = self._host()
        cls = getattr(_scipy_sparse(), type(self).__name__)
        return cls((host.data.copy(), host.indices.copy(), host.indptr.copy()), shape=self._shape)

    def toarray(self, order=None, out=None):
        return self._host().toarray(order=order, out=out)

    def asformat(self, format):
        return self if format == self.format else self._wrap(self._host().asformat(format))

    def tocsr(self, copy=False):
        if self.format == "csr":
            return self.copy() if copy else self
        return self._wrap(self._host().tocsr())

    def tocsc(self, copy=False):
        if self.format == "csc":
            return self.copy() if copy else self
        return self._wrap(self._host().tocsc())

    def copy(self):
        return self._wrap(self._host().copy())

    def astype(self, t):
        return self._wrap(self._host().astype(t))

    def sum_duplicates(self):
        """In place, as in cupyx."""
        if self.has_canonical_format:
            return
        host = self._host()
        host.sum_duplicates()
        self.data, self.indices, self.indptr = host.data, host.indices, host.indptr
        self._has_canonical_format = True

    def transpose(self, axes=None, copy=False):
        return self._wrap(self._host().transpose())

    @property
    def T(self):
        return self.transpose()

    # -- arithmetic ------------------------------------------------------------------

    def multiply(self, other):
        other = other._host() if isinstance(other, _Compressed) else other
        result = self._host().multiply(other)
        return self._wrap(result) if _scipy_sparse().issparse(result) else np.asarray(result)

    def sum(self, axis=None, dtype=None, out=None):
        return np.asarray(self._host().sum(axis=axis, dtype=dtype, out=out))

    def __matmul__(self, other):
        if np.isscalar(other):
            raise ValueError("Scalar operands are not allowed, use '*' instead")
        if isinstance(other, _Compressed):
            return self._wrap(self._host() @ other._host())
        if not isinstance(other, np.ndarray):
            return NotImplemented
        if other.ndim == 2:
            # cuSPARSE reads the dense operand in Fortran order (a copy
            # unless it already is) and writes the product so.
            return np.asfortranarray(self._host() @ np.asfortranarray(other))
        return np.asarray(self._host() @ other)

    dot = __matmul__

    def __getitem__(self, key):
        result = self._host()[key]
        return self._wrap(result) if _scipy_sparse().issparse(result) else result


class _SparseArray:
    """Marks the ``*_array`` classes (CuPy 14.2 and later)."""


def _is_shape(arg) -> bool:
    return (
        isinstance(arg, tuple)
        and len(arg) == 2
        and all(isinstance(n, (int, np.integer)) for n in arg)
    )


class csr_matrix(_Compressed):  # noqa: N801 (cupyx's names)
    __module__ = "cupyx.scipy.sparse._csr"
    format = "csr"
    _scipy_name = "csr_matrix"


class csc_matrix(_Compressed):  # noqa: N801
    __module__ = "cupyx.scipy.sparse._csc"
    format = "csc"
    _scipy_name = "csc_matrix"


class csr_array(_Compressed, _SparseArray):  # noqa: N801
    __module__ = "cupyx.scipy.sparse._csr"
    format = "csr"
    _scipy_name = "csr_array"


class csc_array(_Compressed, _SparseArray):  # noqa: N801
    __module__ = "cupyx.scipy.sparse._csc"
    format = "csc"
    _scipy_name = "csc_array"


_CLASSES = {
    "csr_matrix": csr_matrix,
    "csc_matrix": csc_matrix,
    "csr_array": csr_array,
    "csc_array": csc_array,
}


def issparse(x) -> bool:
    return isinstance(x, _Compressed)


def cupyx_sparse_module() -> types.ModuleType:
    """The ``cupyx.scipy.sparse`` stand-in module."""
    module = types.ModuleType("cupyx.scipy.sparse")
    for name, cls in _CLASSES.items():
        setattr(module, name, cls)
    module.issparse = issparse
    return module
