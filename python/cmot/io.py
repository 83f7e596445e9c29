"""Read and write cells x features matrices: CSV/TSV, .h5ad and Matrix Market folders.

The format follows the path:

* a directory (or, for writing, a path without extension): a 10x-style Matrix
  Market folder as in the shared data, ``<modality>.mtx.gz`` (features x cells),
  ``<modality>_features.txt`` and ``cells.tsv``; one folder can hold several
  modalities of the same cells;
* ``.csv``, ``.tsv``, ``.txt`` (optionally ``.gz``): a table with cells as rows,
  cell names in the first column and feature names in the header
  (``transpose=True`` for features x cells tables);
* ``.h5ad``: an AnnData file (needs the ``anndata`` package).

Everything is returned without AnnData: ``(matrix, cell_names, feature_names)``.
"""

from __future__ import annotations

import gzip
import os
import zlib
from contextlib import contextmanager
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp

from ._validation import as_matrix

__all__ = ["MatrixData", "read_matrix", "read_obs", "write_matrix", "matrix_format", "unreadable"]

_TABLE_EXTS = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
_KNOWN = "a Matrix Market folder, .csv, .tsv, .txt (optionally .gz) or .h5ad"


#: What the readers below (gzip, scipy, pandas, h5py/anndata) raise for a damaged file.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, zlib.error)


@contextmanager
def unreadable(path, kind: str):
    """Turn the errors a reader raises for a damaged ``path`` into one ValueError naming it.

    Examples
    --------
    >>> with unreadable("x.csv.gz", "CSV table"):  # doctest: +ELLIPSIS
    ...     raise EOFError("Compressed file ended early")
    Traceback (most recent call last):
    ...
    ValueError: path: expected a readable CSV table, found a damaged or truncated file 'x.csv.gz' (EOFError: ...
    """
    try:
        yield
    except _READ_ERRORS as exc:
        detail = " ".join(str(exc).split())[:200] or "no detail"
        raise ValueError(
            f"path: expected a readable {kind}, found a damaged or truncated file {os.fspath(path)!r} "
            f"({type(exc).__name__}: {detail})."
        ) from exc


class MatrixData(NamedTuple):
    """A matrix read by :func:`read_matrix` (unpacks as a 3-tuple)."""

    matrix: object  # ndarray or scipy.sparse.csr_matrix, cells x features
    cell_names: np.ndarray
    feature_names: np.ndarray


def matrix_format(path, *, for_write: bool = False) -> str:
    """The format of ``path``: ``"mtx"``, ``"csv"``, ``"tsv"`` or ``"h5ad"``.

    For writing, a path without extension is a Matrix Market folder.

    Raises
    ------
    ValueError
        For an unknown extension.

    Examples
    --------
    >>> matrix_format("cells.csv.gz"), matrix_format("a.h5ad"), matrix_format("out/run1", for_write=True)
    ('csv', 'h5ad', 'mtx')
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        return "mtx"
    low = p.lower()
    if low.endswith(".h5ad"):
        return "h5ad"
    for ext in _TABLE_EXTS:
        if low.endswith(ext):
            return "csv" if ext.startswith(".csv") else "tsv"
    base = os.path.basename(p.rstrip("/\\"))
    if for_write and (p.endswith(("/", os.sep)) or "." not in base):
        return "mtx"
    ext = os.path.splitext(base)[1] or "(none)"
    raise ValueError(f"path: expected {_KNOWN}, found extension {ext} in {p!r}.")


def _available_modalities(path):
    mods = sorted(
        {f[: -len(ext)] for f in os.listdir(path) for ext in (".mtx.gz", ".mtx") if f.endswith(ext)}
    )
    return mods


def read_matrix(path, modality: str | None = None, *, transpose: bool = False) -> MatrixData:
    """Read a cells x features matrix and its cell and feature names.

    Parameters
    ----------
    path : str or path-like
        A Matrix Market folder, a CSV/TSV table or an .h5ad file (see the module
        docstring).
    modality : str, optional
        The modality to read from a Matrix Market folder (``rna`` reads
        ``rna.mtx.gz`` and ``rna_features.txt``); required there, not allowed
        for other formats.
    transpose : bool, default=False
        The table holds features as rows and cells as columns (CSV/TSV only).

    Returns
    -------
    MatrixData
        ``(matrix, cell_names, feature_names)``: a CSR matrix (Matrix Market, sparse
        .h5ad) or a float ndarray, and two arrays of str.

    Raises
    ------
    FileNotFoundError
        If ``path`` (or a file of the folder) does not exist.
    ValueError
        For an unknown extension, a missing or unknown ``modality``, or
        non-numeric values.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> d = tempfile.mkdtemp()
    >>> write_matrix(os.path.join(d, "x.csv"), np.eye(2), ["c1", "c2"], ["g1", "g2"])
    >>> m, cells, feats = read_matrix(os.path.join(d, "x.csv"))
    >>> m.tolist(), cells.tolist(), feats.tolist()
    ([[1.0, 0.0], [0.0, 1.0]], ['c1', 'c2'], ['g1', 'g2'])
    """
    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"path: expected an existing file or folder, found nothing at {p!r}.")
    fmt = matrix_format(p)
    if fmt != "mtx" and modality is not None:
        raise ValueError(
            f"modality: only used with Matrix Market folders, found modality={modality!r} for the file {p!r}."
        )
    if fmt != "csv" and fmt != "tsv" and transpose:
        raise ValueError(f"transpose: only used with CSV/TSV tables, found transpose=True for {p!r}.")
    if fmt == "mtx":
        return _read_mtx(p, modality)
    if fmt == "h5ad":
        import anndata

        with unreadable(p, ".h5ad file"):
            ad = anndata.read_h5ad(p)
        mat = as_matrix(ad, "path")
        return MatrixData(mat.data, _names(mat.cell_names), _names(mat.feature_names))
    import pandas as pd

    sep = "," if fmt == "csv" else "\t"
    with unreadable(p, f"{fmt.upper()} table"):
        df = pd.read_csv(p, sep=sep, index_col=0)
        # pandas renames repeated header names ("g1", "g1.1"): keep the file's names, so repeats show
        header = pd.read_csv(p, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0, 1:]
    if len(header) == df.shape[1]:
        df.columns = pd.Index(header.to_numpy(dtype=object))
    if transpose:
        df = df.T
    mat = as_matrix(df, "path")
    return MatrixData(mat.data, _names(mat.cell_names), _names(mat.feature_names))


def _read_mtx(p: str, modality) -> MatrixData:
    """One modality of a Matrix Market folder (see :func:`read_matrix`)."""
    from .datasets import read_mtx_dir

    mods = _available_modalities(p)
    if modality is None:
        raise ValueError(
            f"modality: expected the modality to read from the Matrix Market folder {p!r} "
            f"(one of: {', '.join(mods) or 'none found'}), found None."
        )
    if modality not in mods:
        raise ValueError(
            f"modality: expected one of {', '.join(mods) or '(no .mtx files)'} in {p!r}, found {modality!r}."
        )
    for needed in (f"{modality}_features.txt", "cells.tsv"):
        if not os.path.exists(os.path.join(p, needed)):
            raise FileNotFoundError(f"path: expected {needed} in the Matrix Market folder {p!r}, found none.")
    m, cells, features = read_mtx_dir(p, modality)
    return MatrixData(
        m, np.asarray(cells.index.astype(str), dtype=object), np.asarray([str(f) for f in features], dtype=object)
    )


def _names(values):
    return np.asarray([str(v) for v in values], dtype=object)


def read_obs(path):
    """Cell metadata (labels) as a DataFrame indexed by cell name.

    ``cells.tsv`` of a Matrix Market folder, ``.obs`` of an .h5ad file, or a
    CSV/TSV table whose first column holds cell names (a labels file).

    Examples
    --------
    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> _ = open(p, "w").write("cell,type\\nc1,B\\nc2,T\\n")
    >>> read_obs(p)["type"].tolist()
    ['B', 'T']
    """
    import pandas as pd

    p = os.fspath(path)
    if not os.path.exists(p):
        raise FileNotFoundError(f"path: expected an existing file or folder, found nothing at {p!r}.")
    fmt = matrix_format(p)
    if fmt == "mtx":
        f = os.path.join(p, "cells.tsv")
        if not os.path.exists(f):
            raise FileNotFoundError(f"path: expected cells.tsv in the Matrix Market folder {p!r}, found none.")
        with unreadable(f, "cells.tsv table"):
            obs = pd.read_csv(f, sep="\t", dtype=str)
        if "cell" not in obs.columns:
            raise ValueError(f"path: expected a 'cell' column in {f}, found columns {list(obs.columns)}.")
        return obs.set_index("cell")
    if fmt == "h5ad":
        import anndata

        with unreadable(p, ".h5ad file"):
            ad = anndata.read_h5ad(p, backed="r")
        try:
            return ad.obs.copy()
        finally:
            ad.file.close()
    with unreadable(p, f"{fmt.upper()} table"):
        obs = pd.read_csv(p, sep="," if fmt == "csv" else "\t", index_col=0, dtype=str)
    obs.index = obs.index.astype(str)
    return obs


def _check_names(names, n, default_prefix, arg, what):
    if names is None:
        return np.asarray([f"{default_prefix}{i}" for i in range(n)], dtype=object)
    arr = _names(list(names))
    if arr.shape[0] != n:
        raise ValueError(f"{arg}: expected {n} names (one per {what} of matrix), found {arr.shape[0]}.")
    return arr


def write_matrix(path, matrix, cell_names=None, feature_names=None, *, modality: str | None = None) -> None:
    """Write a cells x features matrix with its names; the format follows ``path``.

    Parameters
    ----------
    path : str or path-like
        ``.csv``/``.tsv``/``.txt`` (optionally ``.gz``): a table, cells as rows,
        first column ``cell``; ``.h5ad``: an AnnData file; an existing folder or a
        path without extension: a Matrix Market folder (features x cells, like
        the shared data), created if needed.
    matrix : array-like, sparse matrix, DataFrame or AnnData, shape (n_cells, n_features)
    cell_names, feature_names : sequence of str, optional
        Default: the DataFrame's/AnnData's names, else ``cell0, cell1, ...`` and
        ``feature0, ...``.
    modality : str, optional
        Name of the modality in a Matrix Market folder (``<modality>.mtx.gz``);
        required there.  An existing ``cells.tsv`` is kept (with its labels) when
        it lists the same cells, and is an error otherwise.

    Raises
    ------
    ValueError
        For an unknown extension, names of the wrong length, or a missing ``modality``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> d = os.path.join(tempfile.mkdtemp(), "out")
    >>> write_matrix(d, np.array([[0.0, 2.5]]), ["c1"], ["g1", "g2"], modality="rna")
    >>> sorted(os.listdir(d))
    ['cells.tsv', 'rna.mtx.gz', 'rna_features.txt']
    >>> read_matrix(d, "rna").matrix.toarray().tolist()
    [[0.0, 2.5]]
    """
    p = os.fspath(path)
    fmt = matrix_format(p, for_write=True)
    mat = as_matrix(matrix, "matrix")
    n, m = mat.shape
    cells = _check_names(mat.cell_names if cell_names is None else cell_names, n, "cell", "cell_names", "row")
    feats = _check_names(
        mat.feature_names if feature_names is None else feature_names, m, "feature", "feature_names", "column"
    )
    if fmt == "mtx":
        _write_mtx_dir(p, mat.data, cells, feats, modality)
        return
    if modality is not None:
        raise ValueError(f"modality: only used with Matrix Market folders, found modality={modality!r} for {p!r}.")
    parent = os.path.dirname(os.path.abspath(p))
    if not os.path.isdir(parent):
        raise FileNotFoundError(
            f"path: expected an existing folder to write {os.path.basename(p)!r} in, found none: {parent}"
        )
    if fmt == "h5ad":
        import anndata
        import pandas as pd

        anndata.AnnData(
            X=mat.data, obs=pd.DataFrame(index=pd.Index(cells, name=None)), var=pd.DataFrame(index=pd.Index(feats))
        ).write_h5ad(p)
        return
    import pandas as pd

    data = mat.data.toarray() if sp.issparse(mat.data) else mat.data
    df = pd.DataFrame(data, index=pd.Index(cells, name="cell"), columns=pd.Index(feats))
    df.to_csv(p, sep="," if fmt == "csv" else "\t")


def _write_mtx_dir(p, data, cells, feats, modality):
    import pandas as pd
    import scipy.io

    if modality is None or not str(modality).strip() or os.sep in str(modality):
        raise ValueError(
            f"modality: expected a name for the modality written to the Matrix Market folder {p!r}, found {modality!r}."
        )
    os.makedirs(p, exist_ok=True)
    cells_path = os.path.join(p, "cells.tsv")
    if os.path.exists(cells_path):
        old = pd.read_csv(cells_path, sep="\t", dtype=str)
        if "cell" not in old.columns or old["cell"].tolist() != cells.tolist():
            raise ValueError(
                f"path: {cells_path} lists other cells than the matrix ({len(old)} vs {len(cells)}); "
                "write to a new folder."
            )
    else:
        pd.DataFrame({"cell": cells}).to_csv(cells_path, sep="\t", index=False)
    with open(os.path.join(p, f"{modality}_features.txt"), "w") as fh:
        fh.writelines(f"{f}\n" for f in feats)
    coo = sp.coo_matrix(data.T)  # features x cells
    with gzip.open(os.path.join(p, f"{modality}.mtx.gz"), "wb") as fh:
        scipy.io.mmwrite(fh, coo)
