"""Queries of any size: :meth:`cmot.CMOT.predict` reads the query a chunk of rows at a time.

A query given as a dask array (cells x features, chunked by rows; dense blocks or
scipy.sparse blocks) or as a backed AnnData (``anndata.read_h5ad(path, backed="r")``,
read in chunks of :data:`BACKED_CHUNK_SIZE` rows, or an AnnData whose ``X`` is a
dask array) is never held in memory whole.  Every pass over it runs through dask's
scheduler, one task per chunk, so a dask cluster runs the same code unchanged:

1. the query in the Step B/C space, ``representation_.transform`` of each chunk
   (:func:`map_rows`): ``n_target x n_pcs_`` numbers, held in memory; the transport,
   the moved source and the poorly-mapped scores are computed from it as for a
   query in memory;
2. the poorly-mapped detector reads at most
   :data:`cmot.poorly_mapped.DETECTOR_TARGET_CELLS` query cells to fit its joint PCA
   and projects every chunk onto it (:class:`TargetRows`);
3. Step C: the inferred X is a dask array with the query's row chunks, built lazily
   (:func:`lazy_step_c`): each chunk is inferred when it is computed, so the inferred
   X never has to fit in memory; the transferred labels (small) are computed at once.

Results equal those of the same query in memory (rows are independent in every
step; the chunks change floating-point rounding at most).  With ``verbose`` each
chunk read shows a progress line (``cmot: target_y chunk i/n (...)``).  dask is
optional: it is imported only when such a query is given.

Examples
--------
>>> import dask.array as da
>>> from cmot import CMOT
>>> from cmot.datasets import make_multimodal
>>> d = make_multimodal(n_source=150, n_target=60, random_state=0)
>>> model = CMOT(n_neighbors=10, n_features=20, random_state=0).fit(d.source_x, d.source_y)
>>> lazy = model.predict(da.from_array(d.target_y, chunks=(25, -1)))
>>> lazy.chunks[0], bool(np.allclose(lazy.compute(), model.predict(d.target_y), rtol=1e-10))
((25, 25, 10), True)
"""

from __future__ import annotations

import logging
import uuid

import numpy as np
import scipy.sparse as sp

from ._validation import Matrix, _is_anndata, _refuse_complex, check_finite
from .step_c import CHUNK_SIZE, infer_rows

__all__ = ["BACKED_CHUNK_SIZE", "is_chunked", "as_chunked_matrix", "row_chunks", "map_rows", "TargetRows",
           "lazy_step_c"]

logger = logging.getLogger("cmot")

#: Rows per chunk read from a backed AnnData (a dask array keeps its own chunks).
BACKED_CHUNK_SIZE = CHUNK_SIZE


def _is_dask_array(obj) -> bool:
    return type(obj).__name__ == "Array" and type(obj).__module__.startswith("dask.array")


def is_chunked(obj) -> bool:
    """Whether ``obj`` is a query read a chunk at a time: a dask array, a backed AnnData,
    or an AnnData whose ``X`` is a dask array.

    Examples
    --------
    >>> import numpy as np
    >>> is_chunked(np.ones((2, 2)))
    False
    """
    if _is_anndata(obj):
        return bool(getattr(obj, "isbacked", False)) or _is_dask_array(obj.X)
    return _is_dask_array(obj)


def _import_dask(name: str):
    try:
        import dask
        import dask.array  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{name}: a backed AnnData is read a chunk at a time with dask, which is not "
                          "installed: pip install dask[array] (or load the AnnData into memory).") from exc
    return dask


def as_chunked_matrix(obj, name: str) -> Matrix:
    """A query read a chunk at a time as a :class:`cmot._validation.Matrix` whose ``data``
    is a dask array chunked by rows only (values are checked chunk by chunk, when read).

    Raises
    ------
    ImportError
        For a backed AnnData when dask is not installed.
    TypeError, ValueError
        When the values are not numeric, or the array is not 2-D or is empty.
    """
    _import_dask(name)
    cells = features = None
    kind = "dask"
    if _is_anndata(obj):
        cells = np.asarray(obj.obs_names, dtype=object)
        features = np.asarray(obj.var_names, dtype=object)
        kind = "anndata"
        data = obj.X if _is_dask_array(obj.X) else _backed_x(obj, name)
    else:
        data = obj
    if data.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D matrix (cells x features), found {data.ndim}-D input of "
                         f"shape {data.shape}.")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise TypeError(f"{name}: expected numeric values, found dtype {data.dtype} in a dask array.")
    _refuse_complex(data.dtype, name)
    if 0 in data.shape:
        raise ValueError(f"{name}: expected a non-empty matrix, found shape {data.shape} (cells x features).")
    if len(data.chunks[1]) > 1:  # each chunk holds whole rows
        data = data.rechunk({1: -1})
    return Matrix(data=data, cell_names=cells, feature_names=features, kind=kind)


def _backed_x(adata, name: str):
    """The ``X`` of a backed AnnData as a dask array of :data:`BACKED_CHUNK_SIZE` rows per chunk."""
    from anndata.experimental import read_elem_lazy

    if adata.is_view:  # its file holds every cell, not the view's
        raise ValueError(f"{name}: expected a backed AnnData, found a view of one ({adata.n_obs} of its cells); "
                         "write the view to a file and read it backed, or load it with .to_memory().")
    if adata.file is None or "X" not in adata.file:
        raise ValueError(f"{name}: expected a backed AnnData with a matrix in .X, found none.")
    return read_elem_lazy(adata.file["X"], chunks=(int(BACKED_CHUNK_SIZE), -1))


def row_chunks(data):
    """The row chunks of a dask array, or None for a matrix in memory."""
    return tuple(data.chunks[0]) if _is_dask_array(data) else None


def _checked_block(block, name: str):
    """A chunk as float64 (CSR when sparse), its values checked as :func:`cmot._validation.as_matrix` does."""
    if sp.issparse(block):
        block = sp.csr_matrix(block, dtype=np.float64)
        block.sum_duplicates()
        values = block.data
    else:
        block = values = np.asarray(block, dtype=np.float64)
    check_finite(values, name, " in a chunk")
    return block


def _apply_block(block, fn, name, i, n, verbose, step):
    if verbose:
        logger.info("cmot: %s chunk %d/%d (%s)", name, i + 1, n, step)
    return fn(_checked_block(block, name))


def map_rows(data, fn, *, name: str = "target_y", verbose: bool = False, step: str = "") -> np.ndarray:
    """``fn`` of every chunk of rows of ``data``, concatenated: for a dask array one dask
    task per chunk (a progress line each with ``verbose``), else chunks of
    :data:`cmot.step_c.CHUNK_SIZE` rows.  ``fn`` must treat rows independently.

    Examples
    --------
    >>> import numpy as np
    >>> map_rows(np.arange(6.0).reshape(3, 2), lambda b: b.sum(axis=1, keepdims=True)).ravel().tolist()
    [1.0, 5.0, 9.0]
    """
    if not _is_dask_array(data):
        n = data.shape[0]
        return np.concatenate([fn(data[s:s + CHUNK_SIZE]) for s in range(0, max(n, 1), CHUNK_SIZE)], axis=0)
    import dask

    blocks = data.to_delayed().ravel()
    n = len(blocks)
    shared = dask.delayed({"fn": fn}, traverse=False, name=f"cmot-fn-{uuid.uuid4().hex}")  # one node, every task
    task = dask.delayed(lambda block, sh, i: _apply_block(block, sh["fn"], name, i, n, verbose, step))
    return np.concatenate(dask.compute(*[task(b, shared, i) for i, b in enumerate(blocks)]), axis=0)


class TargetRows:
    """The query's rows seen through a per-row function ``fn`` (the detector's view of
    :meth:`cmot.representation.Representation.selected`), read a chunk at a time: what
    :func:`cmot.poorly_mapped.detect_poorly_mapped` accepts as ``target``.

    Examples
    --------
    >>> import numpy as np
    >>> rows = TargetRows(np.arange(6.0).reshape(3, 2), lambda b: 10 * b)
    >>> rows.shape[0], rows.take_rows(np.array([2])).tolist(), rows.map_rows(lambda s: s[:, :1]).ravel().tolist()
    (3, [[40.0, 50.0]], [0.0, 20.0, 40.0])
    """

    def __init__(self, data, fn, *, name: str = "target_y", verbose: bool = False):
        self.data, self.fn, self.name, self.verbose = data, fn, name, verbose

    @property
    def shape(self):
        return self.data.shape

    def take_rows(self, rows) -> np.ndarray:
        """``fn`` of the rows ``rows`` (sorted): for a dask array only the chunks that hold them are read."""
        rows = np.asarray(rows, dtype=np.intp)
        if not _is_dask_array(self.data):
            return self.fn(self.data[rows])
        import dask

        bounds = np.cumsum((0,) + tuple(self.data.chunks[0]))
        where = np.searchsorted(bounds, rows, side="right") - 1
        blocks = self.data.to_delayed().ravel()
        fn, name = self.fn, self.name  # (the tasks hold these, not the dask array)
        take = dask.delayed(lambda block, local: fn(_checked_block(block, name)[local]))
        parts = [take(blocks[b], rows[where == b] - bounds[b]) for b in np.unique(where)]
        return np.concatenate(dask.compute(*parts), axis=0)

    def map_rows(self, fn) -> np.ndarray:
        """``fn(self.fn(chunk))`` of every chunk, concatenated (:func:`map_rows`)."""
        own = self.fn
        return map_rows(self.data, lambda block: fn(own(block)), name=self.name, verbose=self.verbose,
                        step="poorly mapped cells")


def _step_c_block(rep, shared, i, n, verbose):
    if verbose:
        logger.info("cmot: inferring chunk %d/%d", i + 1, n)
    return infer_rows(rep, **shared)[0]


def lazy_step_c(tgt_rep, chunks, n_out: int, step: dict, *, verbose: bool = False):
    """Step C (:func:`cmot.step_c.infer_rows` with the arguments ``step``, no labels) of
    the query cells ``tgt_rep`` as a dask array of row chunks ``chunks`` and ``n_out``
    columns, computed a chunk at a time when it is computed.  The model's arrays
    (``step``) are one node of the graph, shared by every chunk.

    Examples
    --------
    >>> import numpy as np
    >>> step = dict(mapped=np.array([[0.0], [9.0]]), x=np.array([[1.0], [3.0]]), n_neighbors=1, weight_scale=1.0)
    >>> lazy = lazy_step_c(np.array([[0.0], [8.0], [1.0]]), (2, 1), 1, step)
    >>> lazy.chunks, lazy.compute().ravel().tolist()
    (((2, 1), (1,)), [1.0, 3.0, 1.0])
    """
    import dask
    import dask.array as da

    shared = dask.delayed(dict(step), traverse=False, name=f"cmot-step-c-{uuid.uuid4().hex}")
    task = dask.delayed(_step_c_block, pure=True)
    bounds = np.cumsum((0,) + tuple(chunks))
    parts = [da.from_delayed(task(tgt_rep[a:b], shared, i, len(chunks), verbose), shape=(b - a, n_out),
                             dtype=np.float64, meta=np.empty((0, 0)))
             for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:]))]
    return da.concatenate(parts, axis=0)
