"""Baselines that cmot's benchmarks and demo report beside it: the naive kNN (no
transport, so no query composition can move it) and the reference's mean profile."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["knn_baseline", "training_mean"]


def knn_baseline(source_x, source_y, target_y, *, n_neighbors: int = 30, n_components: int = 30, random_state=0):
    """Naive kNN inference without transport: each target cell gets the plain mean
    X of its ``n_neighbors`` nearest source cells in an ``n_components``-component
    truncated SVD of Y fitted on the source (the baseline cmot's benchmarks report).

    Examples
    --------
    >>> import numpy as np
    >>> knn_baseline(np.array([[1.0], [3.0], [10.0]]), np.array([[0.0], [1.0], [9.0]]),
    ...              np.array([[0.4]]), n_neighbors=2).tolist()
    [[2.0]]
    """
    from sklearn.decomposition import TruncatedSVD
    from sklearn.neighbors import NearestNeighbors

    s, t = source_y, target_y
    n_comp = min(n_components, s.shape[1] - 1, s.shape[0] - 1)
    if n_comp >= 1:
        svd = TruncatedSVD(n_components=n_comp, random_state=random_state).fit(s)
        s, t = svd.transform(s), svd.transform(t)
    else:
        s = s.toarray() if sp.issparse(s) else np.asarray(s)
        t = t.toarray() if sp.issparse(t) else np.asarray(t)
    k = min(n_neighbors, s.shape[0])
    idx = NearestNeighbors(n_neighbors=k).fit(s).kneighbors(t, return_distance=False)
    x = source_x.toarray() if sp.issparse(source_x) else np.asarray(source_x)
    return x[idx].mean(axis=1)


def training_mean(source_x, n_target: int) -> np.ndarray:
    """The source's mean X profile, repeated for each of ``n_target`` target cells.

    Examples
    --------
    >>> training_mean(np.array([[1.0, 2.0], [3.0, 6.0]]), 2).tolist()
    [[2.0, 4.0], [2.0, 4.0]]
    """
    mean = np.asarray(source_x.mean(axis=0)).ravel()
    return np.tile(mean, (int(n_target), 1))
