"""The space of Steps B and C: the most variable shared features, optionally
standardized by their source mean and deviation, optionally reduced by a PCA
fitted on the source; or, with ``precomputed``, the columns given (an embedding
the user computed, ``CMOT(representation="precomputed")``).

:class:`Representation` is fitted on the source Y cells and then puts any cells
(source or target) in that space.
"""

from __future__ import annotations

import numpy as np

from ._utils import timed_step, to_dense
from .infer import variable_features

__all__ = ["Representation", "make_pca", "SCALE_CLIP"]

#: ``scale=True`` clips standardized values to +-SCALE_CLIP (Seurat's ScaleData default).
SCALE_CLIP = 10.0


def make_pca(n_components: int, shape, random_state=None):
    """A scikit-learn PCA with the solver cmot uses: exact up to 500 rows or
    columns, randomized above (much faster for tens of thousands of cells).

    Examples
    --------
    >>> make_pca(5, (100, 20)).svd_solver
    'full'
    """
    from sklearn.decomposition import PCA

    solver = "randomized" if min(shape) > 500 else "full"
    return PCA(n_components=n_components, svd_solver=solver, random_state=random_state)


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
        sel = to_dense(y[:, self.features_])
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

    def fit(self, y) -> "Representation":
        """Fit on the source Y cells ``y``."""
        self.fit_transform(y)
        return self

    def _standardize(self, sel):
        out = (sel - self.scale_mean_) / self.scale_sd_
        return np.clip(out, -SCALE_CLIP, SCALE_CLIP, out=out)

    def selected(self, y) -> np.ndarray:
        """The kept features of ``y`` (dense), standardized when ``scale``: the space before the PCA."""
        sel = to_dense(y[:, self.features_])
        return self._standardize(sel) if self.scale_mean_ is not None else sel

    def transform(self, y) -> np.ndarray:
        """Cells ``y`` in the space: their first ``n_pcs_`` components, or the kept features without a PCA."""
        sel = self.selected(y)
        return self.pca_.transform(sel)[:, : self.n_pcs_] if self.pca_ is not None else sel
