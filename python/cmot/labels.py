"""Labels of the source cells for the label-regularized transport: the user's, or
Ward clusters of the source in the shared modality."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._utils import timed_step, to_dense
from ._validation import check_labels
from .infer import nearest_neighbors

__all__ = ["ward_labels", "source_labels"]


def ward_labels(y, n_clusters: int, *, n_dims: int = 30, max_cells: int = 5000, random_state=None) -> np.ndarray:
    """Ward hierarchical clusters of the rows of ``y`` (on at most ``n_dims`` PCs).

    Departure from the reference code, which clusters the raw features: Ward runs
    on the leading principal components and, above ``max_cells`` cells, on a
    random subset whose cluster centroids then label every cell; this keeps it
    fast and memory-light for tens of thousands of cells and features.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.r_[np.zeros((5, 3)), np.ones((5, 3)) * 10] + np.arange(10)[:, None] * 0.01
    >>> ward_labels(y, 2).tolist()
    [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]
    """
    from scipy.cluster.hierarchy import fcluster, ward

    n, p = y.shape
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    if p > n_dims:
        if sp.issparse(y) or n * p >= 2e7:
            from sklearn.decomposition import TruncatedSVD

            emb = TruncatedSVD(n_components=min(n_dims, n - 1), random_state=random_state).fit_transform(y)
        else:
            centered = y - y.mean(axis=0)
            u, s, _ = np.linalg.svd(centered, full_matrices=False)
            emb = u[:, :n_dims] * s[:n_dims]
    else:
        emb = to_dense(y)
    if n > max_cells:
        # Ward is quadratic in cells: cluster a random subset, then give every cell
        # the label of the nearest cluster centroid.
        pick = np.sort(np.random.default_rng(random_state).choice(n, max_cells, replace=False))
        sub = fcluster(ward(emb[pick]), t=n_clusters, criterion="maxclust")
        ids = np.unique(sub)
        centroids = np.stack([emb[pick][sub == i].mean(axis=0) for i in ids])
        idx, _ = nearest_neighbors(emb, centroids, 1)
        raw = ids[idx[:, 0]]
    else:
        raw = fcluster(ward(emb), t=n_clusters, criterion="maxclust")
    # relabel 0..n_clusters-1 in order of first appearance (deterministic)
    _, first = np.unique(raw, return_index=True)
    order = np.argsort(first)
    mapping = {raw[first[o]]: i for i, o in enumerate(order)}
    return np.array([mapping[v] for v in raw], dtype=np.int64)


def source_labels(labels, space, *, n_clusters: int, cell_names=None, random_state=None, verbose=False) -> np.ndarray:
    """The labels the transport uses: ``labels`` checked against the source cells
    (:func:`cmot._validation.check_labels`), or, when None, ``n_clusters`` Ward
    clusters of the source cells' rows of ``space``.

    Examples
    --------
    >>> import numpy as np
    >>> source_labels(None, np.r_[np.zeros((3, 2)), np.ones((3, 2)) * 5], n_clusters=2).tolist()
    [0, 0, 0, 1, 1, 1]
    """
    if labels is not None:
        return check_labels(labels, space.shape[0], cell_names=cell_names)
    with timed_step(f"Ward clustering of source Y into {n_clusters} labels", verbose):
        return ward_labels(space, n_clusters, random_state=random_state)
