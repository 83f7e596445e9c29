"""The space of Steps B and C: the most variable shared features, optionally
standardized by their source mean and deviation, optionally reduced by a PCA
fitted on the source; or, with ``precomputed``, the columns given (an embedding
the user computed, ``CMOT(representation="precomputed")``).

:class:`Representation` is fitted on the source Y cells and then puts any cells
(source or target) in that space.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._utils import timed_step, to_dense
from .infer import variable_features

__all__ = ["Representation", "make_pca", "SCALE_CLIP", "PCA_MAX_CELLS"]

#: ``scale=True`` clips standardized values to +-SCALE_CLIP (Seurat's ScaleData default).
SCALE_CLIP = 10.0
#: Most source cells the PCA is fitted on: a larger reference is standardized and projected in
#: chunks of :data:`ROW_CHUNK` rows, and its PCA fitted on a seeded random subset of this size,
#: so that no dense array of every source cell x every variable feature is made.
PCA_MAX_CELLS = 50_000
#: Rows densified at once when a reference larger than :data:`PCA_MAX_CELLS` is put in the space.
ROW_CHUNK = 8192


def make_pca(n_components: int, shape, random_state=None, *, copy: bool = True, gram: bool = False):
    """A :class:`cmot._pca.PCA` (scikit-learn's PCA, computed without importing
    scikit-learn) with the solver cmot uses: exact up to 500 rows or columns,
    randomized above (much faster for tens of thousands of cells).  ``gram=True``:
    exact from the Gram matrix when there are at most :data:`GRAM_MAX_CELLS` rows and
    fewer rows than columns (faster than either there; the detector's PCAs).
    ``copy=False`` lets ``fit`` overwrite the array it is given (a temporary: no copy made).

    Examples
    --------
    >>> make_pca(5, (100, 20)).svd_solver, make_pca(5, (400, 4000), gram=True).svd_solver
    ('full', 'gram')
    >>> make_pca(5, (800, 4000), gram=True).svd_solver
    'randomized'
    """
    from ._pca import PCA

    if gram and shape[0] <= min(GRAM_MAX_CELLS, shape[1]):
        solver = "gram"
    else:
        solver = "randomized" if min(shape) > 500 else "full"
    return PCA(n_components=n_components, svd_solver=solver, random_state=random_state, copy=copy)


#: Most rows for which ``make_pca(..., gram=True)`` uses the Gram matrix: its ``n x n``
#: product costs ``n^2 p``, the randomized solver's ``~16 n p (k + 10)``, so beyond about
#: 500 rows (30 components) the randomized solver is faster (1,000 x 4,000: 0.15 s against
#: 0.24 s; 2,500 x 4,000: 0.33 s against 1.45 s, on two cores).
GRAM_MAX_CELLS = 500


class Representation:
    """Variable features, scaling and PCA of the shared modality, fitted on the source.

    Parameters
    ----------
    n_features : int
        Most variable features (by variance in the source) kept.
    scale : bool
        Standardize each kept feature by its source mean and standard deviation
        (clipped to +-``SCALE_CLIP``).
    n_components : int or None
        Principal components fitted (at most ``n_source - 1`` and the number of
        features); None keeps the features themselves (the paper).
    precomputed : bool
        The cells given are already in the space (an embedding): every column is
        kept as it is; ``n_features``, ``scale`` and ``n_components`` are ignored
        and ``n_pcs_`` is the number of columns.
    random_state : int or None
    verbose : bool

    Attributes
    ----------
    features_ : ndarray of int
        Columns kept.
    scale_mean_, scale_sd_ : ndarray or None
        Source mean and standard deviation of those columns (``scale=True``).
    pca_ : sklearn.decomposition.PCA or None
    n_pcs_ : int or None
        Components used by :meth:`transform` (the leading ones; at most those fitted).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.random.default_rng(0).normal(size=(50, 8))
    >>> rep = Representation(n_features=6, scale=True, n_components=3)
    >>> rep.fit_transform(y).shape, rep.transform(y[:4]).shape
    ((50, 3), (4, 3))
    """

    def __init__(self, *, n_features: int = 4000, scale: bool = True, n_components: int | None = 50,
                 precomputed: bool = False, random_state=None, verbose: bool = False):
        self.n_features = n_features
        self.precomputed = precomputed
        self.scale = scale
        self.n_components = n_components
        self.random_state = random_state
        self.verbose = verbose

    def fit_transform(self, y) -> np.ndarray:
        """Fit on the source Y cells ``y``; return them in the space (every fitted component)."""
        self.scale_mean_ = self.scale_sd_ = self.pca_ = self.n_pcs_ = None
        if getattr(self, "precomputed", False):
            self.features_ = np.arange(y.shape[1])
            self.n_pcs_ = int(y.shape[1])
            return to_dense(y, np.float64)
        self.features_ = variable_features(y, self.n_features)
        if self.n_components is not None and y.shape[0] > PCA_MAX_CELLS:
            return self._fit_transform_large(y)
        sel = _dense_columns(y, self.features_)
        if self.scale:
            self.scale_mean_ = sel.mean(axis=0)
            sd = sel.std(axis=0)
            sd[sd == 0] = 1.0
            self.scale_sd_ = sd
            sel = self._standardize(sel)
        if self.n_components is None:
            return sel
        n_pcs = min(self.n_components, sel.shape[0] - 1, sel.shape[1])
        with timed_step(f"PCA of {sel.shape[1]} variable Y features to {n_pcs} components", self.verbose):
            self.pca_ = make_pca(n_pcs, sel.shape, self.random_state).fit(sel)
            self.n_pcs_ = int(n_pcs)
            return self.pca_.transform(sel)

    def _fit_transform_large(self, y) -> np.ndarray:
        """:meth:`fit_transform` of more than :data:`PCA_MAX_CELLS` cells: the scaling from
        every cell (in chunks), the PCA fitted on a seeded random subset of
        ``PCA_MAX_CELLS`` of them, every cell projected in chunks."""
        n = y.shape[0]
        if self.scale:
            self.scale_mean_, self.scale_sd_ = _column_mean_sd(y, self.features_)
        rows = np.sort(np.random.default_rng(self.random_state).choice(n, PCA_MAX_CELLS, replace=False))
        sub = to_dense(y[rows][:, self.features_] if sp.issparse(y) else np.asarray(y)[np.ix_(rows, self.features_)])
        sub = self._standardize(sub) if self.scale else sub  # sub: a copy (fancy indexing)
        n_pcs = min(self.n_components, sub.shape[0] - 1, sub.shape[1])
        with timed_step(f"PCA of {sub.shape[1]} variable Y features to {n_pcs} components "
                        f"(fitted on {PCA_MAX_CELLS} of {n} cells)", self.verbose):
            self.pca_ = make_pca(n_pcs, sub.shape, self.random_state).fit(sub)
            self.n_pcs_ = int(n_pcs)
        del sub
        return np.concatenate([self.pca_.transform(self.selected(y[start:start + ROW_CHUNK]))
                               for start in range(0, n, ROW_CHUNK)], axis=0)

    def fit(self, y) -> "Representation":
        """Fit on the source Y cells ``y``."""
        self.fit_transform(y)
        return self

    def _standardize(self, sel):
        """``sel`` (a temporary the caller made) centred, scaled and clipped, in ``sel`` itself
        when it is float64 (two allocations of its size saved), else in a new float64 array."""
        out = np.subtract(sel, self.scale_mean_, out=sel if sel.dtype == np.float64 else None)
        out /= self.scale_sd_
        return np.clip(out, -SCALE_CLIP, SCALE_CLIP, out=out)

    def selected(self, y) -> np.ndarray:
        """The kept features of ``y`` (dense), standardized when ``scale``: the space before the PCA."""
        sel = _dense_columns(y, self.features_)
        return self._standardize(sel) if self.scale_mean_ is not None else sel

    def transform(self, y) -> np.ndarray:
        """Cells ``y`` in the space: their first ``n_pcs_`` components, or the kept features without a PCA."""
        sel = self.selected(y)
        return self.pca_.transform(sel)[:, : self.n_pcs_] if self.pca_ is not None else sel


def _dense_columns(y, cols) -> np.ndarray:
    """Columns ``cols`` of ``y`` (an array or a sparse matrix) as a new dense array, never a
    view of ``y``'s memory (the standardization then writes into it).

    Examples
    --------
    >>> y = np.arange(6.0).reshape(2, 3)
    >>> out = _dense_columns(y, np.array([2, 0]))
    >>> out.tolist(), np.shares_memory(out, y)
    ([[2.0, 0.0], [5.0, 3.0]], False)
    """
    out = to_dense(y[:, cols])
    if sp.issparse(y) or (isinstance(y, np.ndarray) and not np.may_share_memory(out, y)):
        return out
    return out.copy()


def _column_mean_sd(y, cols):
    """Mean and standard deviation (ddof 0; 1 where it is 0) of the columns ``cols`` of
    ``y``, from chunks of :data:`ROW_CHUNK` rows (deviations from the first chunk's
    mean, so that large means do not cancel the variance).

    Examples
    --------
    >>> y = np.random.default_rng(0).normal(5.0, 2.0, size=(20_000, 3))
    >>> mean, sd = _column_mean_sd(y, np.array([0, 2]))
    >>> bool(np.allclose(mean, y[:, [0, 2]].mean(0)) and np.allclose(sd, y[:, [0, 2]].std(0)))
    True
    """
    n = y.shape[0]
    shift = to_dense(y[:ROW_CHUNK][:, cols], np.float64).mean(axis=0)
    total = np.zeros(len(cols))
    squares = np.zeros(len(cols))
    for start in range(0, n, ROW_CHUNK):
        d = to_dense(y[start:start + ROW_CHUNK][:, cols], np.float64) - shift
        total += d.sum(axis=0)
        squares += np.einsum("ij,ij->j", d, d)
    mean_d = total / n
    sd = np.sqrt(np.maximum(squares / n - mean_d**2, 0.0))
    sd[sd == 0] = 1.0
    return shift + mean_d, sd
