"""Input checks shared by every step: one clear error per bad input.

Every public entry point turns what the user gave (numpy array, scipy sparse
matrix, pandas DataFrame, AnnData) into a :class:`Matrix`: a 2-D float array or
CSR matrix with cells as rows, plus the cell and feature names when the input
had them.  The core never imports anndata or pandas unless it is handed such an
object.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp

__all__ = ["Matrix", "as_matrix", "check_labels", "check_int", "check_float"]


@dataclass
class Matrix:
    """A validated cells x features matrix and its optional names."""

    data: np.ndarray | sp.csr_matrix
    cell_names: np.ndarray | None = None
    feature_names: np.ndarray | None = None
    kind: str = "array"  # "array", "sparse", "dataframe" or "anndata"

    @property
    def shape(self):
        return self.data.shape


def _is_anndata(obj) -> bool:
    return type(obj).__name__ == "AnnData" and hasattr(obj, "obs_names")


def _is_dataframe(obj) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def _describe(obj) -> str:
    shape = getattr(obj, "shape", None)
    name = type(obj).__module__ + "." + type(obj).__qualname__
    return f"{name} of shape {shape}" if shape is not None else name


def as_matrix(obj, name: str, *, allow_sparse: bool = True, dtype=np.float64) -> Matrix:
    """Validate ``obj`` as a cells x features numeric matrix.

    Parameters
    ----------
    obj : array-like, scipy sparse matrix, pandas.DataFrame or anndata.AnnData
        The data, cells as rows.
    name : str
        The argument's name, used in error messages.
    allow_sparse : bool
        Keep sparse input sparse (as CSR); otherwise densify it.
    dtype : numpy dtype
        Floating dtype of the result.

    Returns
    -------
    Matrix

    Raises
    ------
    TypeError
        If ``obj`` is not numeric or not a supported container.
    ValueError
        If ``obj`` is not 2-D, is empty, or holds NaN or infinite values.
    """
    if isinstance(obj, Matrix):
        return obj
    cells = features = None
    kind = "array"
    if _is_anndata(obj):
        cells = np.asarray(obj.obs_names, dtype=object)
        features = np.asarray(obj.var_names, dtype=object)
        data = obj.X
        kind = "anndata"
        if data is None:
            raise ValueError(f"{name}: expected an AnnData with a matrix in .X, found .X = None.")
    elif _is_dataframe(obj):
        cells = np.asarray(obj.index, dtype=object)
        features = np.asarray(obj.columns, dtype=object)
        kind = "dataframe"
        non_numeric = [c for c, t in zip(obj.columns, obj.dtypes) if not np.issubdtype(t, np.number) and t != bool]
        if non_numeric:
            shown = ", ".join(map(str, non_numeric[:5]))
            raise TypeError(
                f"{name}: expected numeric columns, found non-numeric columns: {shown}"
                + (f" and {len(non_numeric) - 5} more" if len(non_numeric) > 5 else "")
            )
        data = obj.to_numpy()
    else:
        data = obj

    if sp.issparse(data):
        if not allow_sparse:
            data = data.toarray()
        else:
            kind = "sparse" if kind == "array" else kind
            if not np.issubdtype(data.dtype, np.number) and data.dtype != bool:
                raise TypeError(f"{name}: expected a numeric sparse matrix, found dtype {data.dtype}.")
            data = sp.csr_matrix(data, dtype=dtype)
            data.sum_duplicates()
            vals = data.data
    if not sp.issparse(data):
        try:
            arr = np.asarray(data)
        except Exception as exc:  # pragma: no cover - exotic containers
            raise TypeError(f"{name}: expected a numeric 2-D array, found {_describe(obj)}.") from exc
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise TypeError(f"{name}: expected numeric values, found dtype {arr.dtype} in {_describe(obj)}.")
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: expected a 2-D matrix (cells x features), found {arr.ndim}-D input of shape {arr.shape}."
            )
        data = np.ascontiguousarray(arr, dtype=dtype)
        vals = data
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty matrix, found shape {data.shape} (cells x features).")
    if not np.all(np.isfinite(vals)):
        n_nan = int(np.isnan(vals).sum())
        n_inf = int(np.isinf(vals).sum())
        raise ValueError(
            f"{name}: expected finite values, found {n_nan} NaN and {n_inf} infinite entries. "
            "Impute or remove them before calling cmot."
        )
    return Matrix(data=data, cell_names=cells, feature_names=features, kind=kind)


def check_labels(labels, n: int, name: str = "labels") -> np.ndarray:
    """Return ``labels`` as a 1-D array of length ``n`` (any hashable values)."""
    if _is_dataframe(labels):
        raise TypeError(f"{name}: expected a 1-D sequence of {n} labels, found a DataFrame; pass one column.")
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of {n} labels, found shape {arr.shape}.")
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected one label per source Y cell ({n}), found {arr.shape[0]} labels.")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise ValueError(f"{name}: expected no missing labels, found {int(np.isnan(arr).sum())} NaN.")
    if arr.dtype == object and any(v is None for v in arr):
        raise ValueError(f"{name}: expected no missing labels, found None.")
    return arr


def check_int(value, name: str, *, low: int = 1, high: int | None = None, allow_none: bool = False):
    """Check an integer parameter within ``[low, high]``."""
    if value is None and allow_none:
        return None
    if isinstance(value, Real) and not isinstance(value, (bool, Integral)) and float(value).is_integer():
        value = int(value)  # whole-valued floats, as R passes numbers
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name}: expected an integer, found {value!r} ({type(value).__name__}).")
    if value < low or (high is not None and value > high):
        bound = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name}: expected an integer {bound}, found {value}.")
    return int(value)


def check_float(value, name: str, *, low: float = 0.0, strict: bool = True, allow_none: bool = False):
    """Check a real parameter ``> low`` (or ``>= low`` when not strict)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name}: expected a number, found {value!r} ({type(value).__name__}).")
    if not np.isfinite(value) or (value <= low if strict else value < low):
        raise ValueError(f"{name}: expected a finite number {'>' if strict else '>='} {low}, found {value}.")
    return float(value)
