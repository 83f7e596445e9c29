"""Input checks shared by every step: one clear error per bad input.

Every public entry point turns what the user gave (numpy array, scipy sparse
matrix, pandas DataFrame, AnnData) into a :class:`Matrix`: a 2-D float array or
CSR matrix with cells as rows, plus the cell and feature names when the input
had them.  The core never imports anndata or pandas unless it is handed such an
object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._utils import duplicated

__all__ = ["Matrix", "as_matrix", "check_labels", "check_int", "check_unique_features", "check_source"]


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


def _refuse_complex(dtype, name):
    if np.issubdtype(dtype, np.complexfloating):
        raise TypeError(
            f"{name}: expected real values, found complex dtype {dtype}; cmot would have to drop the "
            "imaginary parts: pass the real part (x.real) or the modulus (abs(x)) if that is what you mean."
        )


def _dataframe_values(df, name: str):
    """A DataFrame's values as a float array, or as CSR when every column is pandas
    ``Sparse``; nullable (``Float64``, ``Int64``, ``boolean``) missing values become NaN."""
    import pandas as pd
    from pandas.api import types as pdt

    dtypes = list(df.dtypes)
    non_numeric = [c for c, t in zip(df.columns, dtypes) if not (pdt.is_numeric_dtype(t) or pdt.is_bool_dtype(t))]
    if non_numeric:
        shown = ", ".join(map(str, non_numeric[:5]))
        raise TypeError(
            f"{name}: expected numeric columns, found non-numeric columns: {shown}"
            + (f" and {len(non_numeric) - 5} more" if len(non_numeric) > 5 else "")
        )
    complex_cols = [c for c, t in zip(df.columns, dtypes) if pdt.is_complex_dtype(t)]
    if complex_cols:
        _refuse_complex(np.dtype(complex), f"{name} (column {complex_cols[0]!r})")
    if dtypes and all(isinstance(t, pd.SparseDtype) for t in dtypes):
        return sp.csr_matrix(df.sparse.to_coo(), dtype=np.float64)
    return df.to_numpy(dtype=np.float64, na_value=np.nan)


def check_unique_features(m: Matrix, name: str) -> None:
    """Feature names of ``m`` (when it has them) must be unique: a duplicated name would
    make matching by name pick one of the columns silently.

    Examples
    --------
    >>> import numpy as np
    >>> check_unique_features(Matrix(np.ones((1, 3)), feature_names=np.array(["a", "b", "a"])), "source_y")
    Traceback (most recent call last):
    ...
    ValueError: source_y: expected unique feature names, found 1 duplicated: a (columns 0, 2).
    """
    if m.feature_names is None:
        return
    names = [str(v) for v in m.feature_names]
    dup = duplicated(names)
    if dup:
        cols = [i for i, v in enumerate(names) if v == dup[0]]
        shown = ", ".join(dup[:10]) + (" ..." if len(dup) > 10 else "")
        raise ValueError(
            f"{name}: expected unique feature names, found {len(dup)} duplicated: {shown} "
            f"(columns {', '.join(map(str, cols[:5]))}{' ...' if len(cols) > 5 else ''})."
        )


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
        data = _dataframe_values(obj, name)
    else:
        data = obj

    if sp.issparse(data):
        if not allow_sparse:
            data = data.toarray()
        else:
            kind = "sparse" if kind == "array" else kind
            if not np.issubdtype(data.dtype, np.number) and data.dtype != bool:
                raise TypeError(f"{name}: expected a numeric sparse matrix, found dtype {data.dtype}.")
            _refuse_complex(data.dtype, name)
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
        _refuse_complex(arr.dtype, name)
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: expected a 2-D matrix (cells x features), found {arr.ndim}-D input of shape {arr.shape}."
            )
        data = np.ascontiguousarray(arr, dtype=dtype)
        vals = data
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty matrix, found shape {data.shape} (cells x features).")
    check_finite(vals, name)
    return Matrix(data=data, cell_names=cells, feature_names=features, kind=kind)


def check_finite(values, name: str, where: str = "") -> None:
    """Raise a ValueError naming ``name`` and counting the NaN and infinite entries of
    ``values`` (``where`` says where they are, e.g. " in a chunk"), when there are any."""
    if not np.all(np.isfinite(values)):
        n_nan = int(np.isnan(values).sum())
        n_inf = int(np.isinf(values).sum())
        raise ValueError(
            f"{name}: expected finite values, found {n_nan} NaN (or missing, NA) and {n_inf} infinite "
            f"entries{where}. Impute or remove them before calling cmot."
        )


def _is_missing(v) -> bool:
    if v is None:
        return True
    if isinstance(v, (float, np.floating)):
        return bool(np.isnan(v))
    return type(v).__name__ in ("NAType", "NaTType")


def _where(positions, cell_names) -> str:
    shown = [repr(cell_names[i]) if cell_names is not None else str(int(i)) for i in positions[:10]]
    kind = "cells" if cell_names is not None else "positions"
    return f"{kind} {', '.join(shown)}" + (" ..." if len(positions) > 10 else "")


def _align_series(labels, n: int, cell_names, name: str):
    """A pandas Series of labels in the order of the cells: by name when the cells have
    names, else its index must be the default 0..n-1."""
    index = labels.index
    if cell_names is None:
        if not (type(index).__name__ == "RangeIndex" and index.start == 0 and index.step == 1 and len(index) == n):
            raise ValueError(
                f"{name}: expected a Series with the default index 0..{n - 1} (the source cells have no names "
                f"to align it by), found an index starting {list(index[:3])!r}; pass labels.to_numpy() to "
                "use them in order, or give the source cells names."
            )
        return labels.to_numpy()
    want = [str(c) for c in cell_names]
    have = [str(c) for c in index]
    if want == have:
        return labels.to_numpy()
    dup = duplicated(have)
    missing = [c for c in want if c not in set(have)]
    if dup or missing or len(have) != len(want):
        detail = (f"{len(dup)} duplicated index names (first: {dup[0]!r})" if dup
                  else f"{len(missing)} source cells missing from its index (first: {missing[0]!r})" if missing
                  else f"{len(have) - len(want)} index names that are not source cells")
        raise ValueError(f"{name}: expected a Series indexed by the {len(want)} source cell names, found {detail}.")
    pos = {c: i for i, c in enumerate(have)}
    return labels.to_numpy()[[pos[c] for c in want]]


def check_labels(labels, n: int, name: str = "labels", *, cell_names=None) -> np.ndarray:
    """Return ``labels`` as a 1-D array of length ``n`` (any hashable values, none missing).

    A pandas Series is aligned to the cells by name when ``cell_names`` are known;
    otherwise its index must be the default ``0..n-1``.  Missing labels (NaN, None,
    ``pd.NA``) are an error that says how many and where.

    Examples
    --------
    >>> check_labels(["a", "b"], 2).tolist()
    ['a', 'b']
    >>> check_labels(["a", float("nan"), None], 3)
    Traceback (most recent call last):
    ...
    ValueError: labels: expected no missing labels, found 2 missing (NaN or None) at positions 1, 2.
    """
    if _is_dataframe(labels):
        raise TypeError(f"{name}: expected a 1-D sequence of {n} labels, found a DataFrame; pass one column.")
    if type(labels).__name__ == "Series" and hasattr(labels, "index"):
        if len(labels) != n:
            raise ValueError(f"{name}: expected one label per source Y cell ({n}), found {len(labels)} labels.")
        labels = _align_series(labels, n, cell_names, name)
    as_obj = np.asarray(labels, dtype=object) if not isinstance(labels, np.ndarray) else labels
    if as_obj.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of {n} labels, found shape {as_obj.shape}.")
    if as_obj.shape[0] != n:
        raise ValueError(f"{name}: expected one label per source Y cell ({n}), found {as_obj.shape[0]} labels.")
    if as_obj.dtype.kind == "f":
        missing = np.flatnonzero(np.isnan(as_obj))
    elif as_obj.dtype == object:
        missing = np.flatnonzero([_is_missing(v) for v in as_obj])
    else:
        missing = np.empty(0, dtype=np.intp)
    if missing.size:
        raise ValueError(
            f"{name}: expected no missing labels, found {missing.size} missing (NaN or None) at "
            f"{_where(missing, cell_names)}."
        )
    arr = np.asarray(labels)
    return arr


def check_int(value, name: str, *, low: int = 1, high: int | None = None, allow_none: bool = False):
    """Check an integer argument within ``[low, high]`` (whole floats accepted, as R passes
    numbers), with the messages of :mod:`cmot._params`.

    Examples
    --------
    >>> check_int(3.0, "n_splits", low=2)
    3
    >>> check_int(1, "n_splits", low=2, high=10)
    Traceback (most recent call last):
    ...
    ValueError: n_splits: expected an integer between 2 and 10, found 1.
    """
    from ._params import Const, Int, check_value

    constraint = Int(low, high) | Const(None) if allow_none else Int(low, high)
    return check_value(name, value, constraint)


def check_source(source_x, source_y, *, fully_paired: bool = True):
    """``source_x`` and ``source_y`` as :class:`Matrix`, with unique feature names, at least
    two Y cells and, when ``fully_paired``, the same cells (count and names) in the same order.

    Examples
    --------
    >>> import numpy as np
    >>> check_source(np.ones((3, 2)), np.ones((4, 2)))
    Traceback (most recent call last):
    ...
    ValueError: source_x and source_y: expected the same number of cells when fully paired \
(correspondence=None), found 3 X cells and 4 Y cells. Pass correspondence= to align partly paired modalities.
    """
    xm = as_matrix(source_x, "source_x")
    ym = as_matrix(source_y, "source_y")
    check_unique_features(xm, "source_x")
    check_unique_features(ym, "source_y")
    n_x, n_y = xm.shape[0], ym.shape[0]
    if fully_paired and n_x != n_y:
        raise ValueError(
            f"source_x and source_y: expected the same number of cells when fully paired "
            f"(correspondence=None), found {n_x} X cells and {n_y} Y cells. Pass correspondence= "
            "to align partly paired modalities."
        )
    if fully_paired and xm.cell_names is not None and ym.cell_names is not None:
        differ = xm.cell_names != ym.cell_names
        if np.any(differ):
            raise ValueError(
                f"source_x and source_y: expected the same cells in the same order when fully paired, "
                f"found {int(np.sum(differ))} cell names that differ (first: {xm.cell_names[differ][0]!r})."
            )
    if n_y < 2:
        raise ValueError(f"source_y: expected at least 2 source cells, found {n_y}.")
    return xm, ym
