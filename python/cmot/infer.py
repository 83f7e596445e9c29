"""Step C: infer the missing modality of each target cell from its nearest
transported source cells.

For each target cell, the ``k`` nearest source cells after barycentric mapping
are found on the most variable shared features (by variance in the source), and
the target's X is the average of their X weighted by ``exp(-distance)``, the
weights normalized to sum to one (the reference code leaves them unnormalized,
which shrinks every prediction towards zero as distances grow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["LinearMap", "blend_linear", "shrink_toward", "variable_features", "neighbor_chunk_rows", "search_workers", "nearest_neighbors", "exp_weights", "knn_weights", "weighted_average", "leave_one_out_neighbors", "move_source",
           "infer_x", "metric_space", "loo_query"]


def variable_features(data, n_features: int) -> np.ndarray:
    """Indices of the ``n_features`` columns of ``data`` with the largest variance.

    Ties are broken by column order; the result is sorted by column index.

    Examples
    --------
    >>> import numpy as np
    >>> variable_features(np.array([[0, 5, 1.0], [0, -5, 2.0]]), 2)
    array([1, 2])
    """
    if sp.issparse(data):
        mean = np.asarray(data.mean(axis=0)).ravel()
        sq = np.asarray(data.multiply(data).mean(axis=0)).ravel()
    else:
        data = np.asarray(data)
        mean = data.mean(axis=0)
        sq = np.einsum("ij,ij->j", data, data) / data.shape[0]
    var = np.maximum(sq - mean**2, 0.0)
    # Round away summation-order noise so that dense and sparse copies of the same
    # data select the same features when variances tie (binary data).
    scale = var.max() if var.size and var.max() > 0 else 1.0
    var = np.round(var / scale, 10)
    n_features = min(int(n_features), data.shape[1])
    top = np.argsort(-var, kind="stable")[:n_features]
    return np.sort(top)


#: Largest ``chunk x n_reference`` block of distances :func:`nearest_neighbors` holds (float64 values).
NEIGHBOR_BLOCK = 2**24


def neighbor_chunk_rows(n_reference: int, chunk_size: int = 2048) -> int:
    """Query rows per block of :func:`nearest_neighbors` against ``n_reference`` rows: at
    most ``chunk_size``, fewer when a block would hold more than ``NEIGHBOR_BLOCK``
    distances (at least 16).  Splitting the query at multiples of it gives the same
    blocks, so the same neighbours, as searching it in one piece.

    Examples
    --------
    >>> neighbor_chunk_rows(1000), neighbor_chunk_rows(100_000)
    (2048, 167)
    """
    return max(16, min(int(chunk_size), NEIGHBOR_BLOCK // max(1, int(n_reference))))


#: :func:`nearest_neighbors` searches a k-d tree (scipy's ``cKDTree``) when the cells have at
#: most this many dimensions, brute force on BLAS above.  cmot's spaces (principal
#: components, the detector's signal components) are of low intrinsic dimension, where a
#: tree answers 5-20 times faster than the brute force's selection; up to 32 dimensions
#: it is not slower even on unstructured Gaussian noise.  Both return the same
#: neighbours (distances agree to rounding, ~1e-13).
KD_TREE_MAX_DIMS = 32


def search_workers() -> int:
    """Threads of the k-d tree search: ``OMP_NUM_THREADS`` when set (as BLAS reads it),
    else the CPUs this process may use.

    Examples
    --------
    >>> search_workers() >= 1
    True
    """
    import os

    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def nearest_neighbors(query, reference, n_neighbors: int, *, chunk_size: int = 2048):
    """The ``n_neighbors`` nearest reference rows of each query row (Euclidean), nearest
    first, ties by index.

    Up to :data:`KD_TREE_MAX_DIMS` dimensions a k-d tree of the reference (scipy's
    ``cKDTree``, :func:`search_workers` threads); above, brute force on BLAS in chunks
    of at most ``chunk_size`` query rows, fewer when the reference is large (a block
    holds at most ``NEIGHBOR_BLOCK`` distances): no ``n_query x n_reference`` matrix is
    held at once.  Each query row's answer depends on that row alone, so a query
    searched in parts gives the same neighbours as in one piece.

    Returns
    -------
    indices : ndarray of int, shape (n_query, k)
        Neighbours, nearest first.
    distances : ndarray of float, shape (n_query, k)

    Examples
    --------
    >>> import numpy as np
    >>> idx, d = nearest_neighbors(np.array([[0.0]]), np.array([[5.0], [0.0], [1.0]]), 2)
    >>> idx.tolist(), d.tolist()
    ([[1, 2]], [[0.0, 1.0]])
    """
    query = np.asarray(query, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    k = min(int(n_neighbors), reference.shape[0])
    if 0 < reference.shape[1] <= KD_TREE_MAX_DIMS and k > 0:
        return _tree_neighbors(query, reference, k)
    return _brute_neighbors(query, reference, k, chunk_size)


def _by_distance_then_index(idx, dist, *, sorted_by_distance: bool = False):
    """Rows of ``idx``/``dist`` ordered by distance, ties by index (``sorted_by_distance``:
    the rows are already by distance; only those with a tie are reordered)."""
    if sorted_by_distance:
        rows = np.flatnonzero((dist[:, 1:] == dist[:, :-1]).any(axis=1))
        if rows.size:
            idx[rows], dist[rows] = _by_distance_then_index(idx[rows], dist[rows])
        return idx, dist
    order = np.lexsort((idx, dist), axis=1)
    return np.take_along_axis(idx, order, axis=1), np.take_along_axis(dist, order, axis=1)


#: Query rows per k-d tree search (bounds the temporary arrays as the brute force's blocks do).
TREE_CHUNK_ROWS = 65_536


def _tree_neighbors(query, reference, k):
    """:func:`nearest_neighbors` by a k-d tree."""
    from scipy.spatial import cKDTree

    tree = cKDTree(reference)
    indices = np.empty((query.shape[0], k), dtype=np.int64)
    dists = np.empty((query.shape[0], k))
    workers = search_workers()
    for start in range(0, query.shape[0], TREE_CHUNK_ROWS):
        d, i = tree.query(query[start:start + TREE_CHUNK_ROWS], k=np.arange(1, k + 1), workers=workers)
        i, d = _by_distance_then_index(i.astype(np.int64), d, sorted_by_distance=True)
        indices[start:start + len(i)] = i
        dists[start:start + len(i)] = d
    return indices, dists


def _brute_neighbors(query, reference, k, chunk_size):
    """:func:`nearest_neighbors` by brute force on BLAS, a block of query rows at a time."""
    n_q = query.shape[0]
    ref_sq = np.einsum("ij,ij->i", reference, reference)
    chunk_size = neighbor_chunk_rows(reference.shape[0], chunk_size)
    indices = np.empty((n_q, k), dtype=np.int64)
    dists = np.empty((n_q, k))
    buf = np.empty((min(chunk_size, n_q), reference.shape[0]))  # one block, reused by every chunk
    for start in range(0, n_q, chunk_size):
        q = query[start : start + chunk_size]
        d2 = buf[: len(q)]
        np.matmul(q, reference.T, out=d2)
        d2 *= 2.0
        np.subtract(ref_sq[None, :], d2, out=d2)  # |r|^2 - 2 q.r, as one expression would give
        d2 += np.einsum("ij,ij->i", q, q)[:, None]
        np.maximum(d2, 0.0, out=d2)
        if k < reference.shape[0]:
            part = np.argpartition(d2, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(k), (q.shape[0], k)).copy()
        part, dpart = _by_distance_then_index(part, np.take_along_axis(d2, part, axis=1))
        indices[start : start + len(q)] = part
        dists[start : start + len(q)] = np.sqrt(dpart)
    return indices, dists


def exp_weights(distances, scale=1.0) -> np.ndarray:
    """``exp(-d / scale)`` normalized to sum to one per row (shifted by the row minimum, so no underflow).

    ``scale=1`` is the paper's ``exp(-d)``.  ``scale="auto"`` measures distances in
    units of the median (over rows) distance to the last neighbour, so the
    weights do not depend on the units of the data: with raw ``exp(-d)``, data
    whose neighbour distances are large put all the weight on the nearest cell.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(exp_weights(np.array([[0.0, 1.0]])), 3).tolist()
    [[0.731, 0.269]]
    >>> np.round(exp_weights(np.array([[0.0, 10.0], [0.0, 30.0]]), "auto"), 3).tolist()
    [[0.622, 0.378], [0.818, 0.182]]
    """
    if isinstance(scale, str):
        if scale != "auto":
            raise ValueError(f"scale: expected a positive number or 'auto', found {scale!r}.")
        scale = float(np.median(distances[:, -1]))
        scale = scale if scale > 0 else 1.0
    w = np.exp(-(distances - distances[:, :1]) / scale)
    w /= w.sum(axis=1, keepdims=True)
    return w


def knn_weights(query, reference, n_neighbors: int, *, scale=1.0, chunk_size: int = 2048):
    """Nearest reference rows of each query row, with normalized ``exp(-distance)`` weights.

    Parameters
    ----------
    query : ndarray of shape (n_query, n_features)
    reference : ndarray of shape (n_reference, n_features)
    n_neighbors : int
    scale : float or "auto"
        Distance unit of the weights (see :func:`exp_weights`); 1 is the paper's.
    chunk_size : int

    Returns
    -------
    indices : ndarray of int, shape (n_query, k)
        Neighbours, nearest first.
    weights : ndarray of float, shape (n_query, k)
        ``exp(-d) / sum exp(-d)`` over the neighbours (Euclidean ``d``).

    Examples
    --------
    >>> import numpy as np
    >>> idx, w = knn_weights(np.array([[0.0]]), np.array([[0.0], [1.0], [5.0]]), 2)
    >>> idx.tolist(), np.round(w, 3).tolist()
    ([[0, 1]], [[0.731, 0.269]])
    """
    indices, dists = nearest_neighbors(query, reference, n_neighbors, chunk_size=chunk_size)
    return indices, exp_weights(dists, scale)


def weighted_average(values, indices, weights) -> np.ndarray:
    """``out[j] = sum_l weights[j, l] * values[indices[j, l]]`` (values dense or sparse).

    Examples
    --------
    >>> import numpy as np
    >>> weighted_average(np.array([[1.0], [3.0]]), np.array([[0, 1]]), np.array([[0.5, 0.5]]))
    array([[2.]])
    """
    n_q, k = indices.shape
    n_ref = values.shape[0]
    rows = np.repeat(np.arange(n_q), k)
    op = sp.csr_matrix((weights.ravel(), (rows, indices.ravel())), shape=(n_q, n_ref))
    out = op @ values
    if sp.issparse(out):
        out = out.toarray()
    return np.asarray(out)


def move_source(coupling, source, target, *, barycentric_weight: float, shift) -> np.ndarray:
    """Source cells moved into target space before Step C:
    ``(1 - w) * (source + shift) + w * bary``, with ``bary`` the barycentric map
    (:func:`cmot.transport.barycentric_map`) and ``shift`` the transport's mean
    displacement (:func:`cmot.transport.transport_shift`).  ``w=1`` is the paper.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[0.5, 0.0], [0.0, 0.5]])
    >>> move_source(g, np.array([[0.0], [1.0]]), np.array([[4.0], [5.0]]), barycentric_weight=0.5,
    ...             shift=np.array([2.0])).tolist()
    [[3.0], [4.0]]
    """
    from .transport import barycentric_map

    if barycentric_weight == 0:
        return source + shift
    bary = barycentric_map(coupling, target)
    if barycentric_weight == 1:  # the paper
        return bary
    return (1 - barycentric_weight) * (source + shift) + barycentric_weight * bary


@dataclass
class LinearMap:
    """Step C's global linear map ``x = intercept + rep @ coef``: ridge regression of X
    on the source cells' Step C components (fitted by :func:`cmot.choices.fit_linear_map`).

    Attributes
    ----------
    intercept : ndarray of shape (n_x_features,)
    coef : ndarray of shape (n_dims, n_x_features)
    alpha : float
        The ridge penalty (on the centred components; the intercept is not penalized).

    Examples
    --------
    >>> import numpy as np
    >>> LinearMap(np.array([1.0]), np.array([[2.0]]), 0.0).predict(np.array([[3.0]])).tolist()
    [[7.0]]
    """

    intercept: np.ndarray
    coef: np.ndarray
    alpha: float

    def predict(self, rep) -> np.ndarray:
        """X predicted from cells ``rep`` in the Step C space."""
        return self.intercept + np.asarray(rep, dtype=np.float64) @ self.coef


def infer_x(target, mapped, x, n_neighbors: int, *, weight_scale="auto", shrinkage: float = 0.0, x_mean=None,
            linear=None, linear_weight: float = 0.0, offset=None):
    """Step C: each target cell's X is the weighted average of the X of its
    ``n_neighbors`` nearest ``mapped`` source cells (:func:`knn_weights`), blended
    with ``linear_weight`` of the :class:`LinearMap` ``linear`` at ``target - offset``
    (the target moved back into source space by the transport's shift), then pulled
    ``shrinkage`` of the way toward ``x_mean``:
    ``(1 - s) * ((1 - l) * knn + l * linear) + s * mean``.

    Examples
    --------
    >>> import numpy as np
    >>> infer_x(np.array([[0.0]]), np.array([[0.0], [9.0]]), np.array([[1.0], [3.0]]), 1).tolist()
    [[1.0]]
    >>> lin = LinearMap(np.array([0.0]), np.array([[1.0]]), 0.0)
    >>> infer_x(np.array([[0.0]]), np.array([[0.0], [9.0]]), np.array([[1.0], [3.0]]), 1, linear=lin,
    ...         linear_weight=0.5, offset=np.array([-2.0])).tolist()
    [[1.5]]
    """
    idx, w = knn_weights(target, mapped, n_neighbors, scale=weight_scale)
    pred = shrink_toward(weighted_average(x, idx, w), shrinkage, x_mean)
    return blend_linear(pred, target, linear, linear_weight, offset=offset, shrinkage=shrinkage, x_mean=x_mean)


def shrink_toward(pred, shrinkage: float, x_mean):
    """``(1 - shrinkage) * pred + shrinkage * x_mean``, in place: Step C's pull toward the
    reference's mean profile (nothing to do at ``shrinkage=0``).

    Examples
    --------
    >>> import numpy as np
    >>> shrink_toward(np.array([[1.0, 3.0]]), 0.25, np.array([5.0, 7.0])).tolist()
    [[2.0, 4.0]]
    """
    if shrinkage > 0:
        pred *= 1 - shrinkage
        pred += shrinkage * np.asarray(x_mean, dtype=pred.dtype)
    return pred


def blend_linear(pred, target, linear, linear_weight: float, *, offset=None, shrinkage: float = 0.0, x_mean=None,
                 chunk_size: int = 8192):
    """Step C's linear part, added to a prediction ``pred = (1 - s) * knn + s * mean`` (in place):
    ``(1 - l) * pred + l * ((1 - s) * linear(target - offset) + s * mean)``, which is
    ``(1 - s) * ((1 - l) * knn + l * linear) + s * mean``.  ``pred`` unchanged when
    ``linear`` is None or ``linear_weight`` is 0; the map is applied ``chunk_size`` rows at a time.

    Examples
    --------
    >>> import numpy as np
    >>> lin = LinearMap(np.array([0.0]), np.array([[1.0]]), 0.0)
    >>> blend_linear(np.array([[1.0]]), np.array([[4.0]]), lin, 0.5, offset=np.array([1.0])).tolist()
    [[2.0]]
    >>> blend_linear(np.array([[1.0]]), np.array([[4.0]]), lin, 0.5, shrinkage=0.5, x_mean=np.array([0.0])).tolist()
    [[1.5]]
    """
    if linear is None or not linear_weight > 0:
        return pred
    target = np.asarray(target, dtype=np.float64)
    shift = 0.0 if offset is None else np.asarray(offset, dtype=np.float64)
    for start in range(0, target.shape[0], chunk_size):
        part = shrink_toward(linear.predict(target[start:start + chunk_size] - shift), shrinkage, x_mean)
        pred[start:start + chunk_size] *= 1 - linear_weight
        pred[start:start + chunk_size] += linear_weight * part
    return pred


def metric_space(rep, metric) -> np.ndarray:
    """``rep`` in Step C's neighbour metric: ``rep @ metric``, with ``metric`` the
    ``d x d`` transform ``CMOT.metric_`` (:func:`cmot.choices.neighbor_metric`), so that
    Euclidean distances of the rows are distances in that metric; ``rep`` itself
    when ``metric`` is None (the Euclidean metric).

    Examples
    --------
    >>> import numpy as np
    >>> metric_space(np.array([[1.0, 1.0]]), np.diag([2.0, 0.5])).tolist()
    [[2.0, 0.5]]
    >>> metric_space(np.array([[1.0, 1.0]]), None).tolist()
    [[1.0, 1.0]]
    """
    return rep if metric is None else np.asarray(rep, dtype=np.float64) @ metric


def loo_query(n: int, max_cells: int = 2000, random_state=None) -> np.ndarray:
    """The left-out rows of :func:`leave_one_out_neighbors`: ``min(n, max_cells)`` random
    rows of ``n``, sorted (the same for the same ``random_state``).

    Examples
    --------
    >>> loo_query(3).tolist()
    [0, 1, 2]
    """
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n, size=min(n, max_cells), replace=False))


def leave_one_out_neighbors(rep, k_max: int, *, max_cells: int = 2000, random_state=None, query=None):
    """Leave-one-out neighbours among the rows of ``rep``: at most ``max_cells`` random
    rows (``query``, sorted; or the rows ``query`` given) and their ``k_max`` nearest
    *other* rows (indices, distances).

    Examples
    --------
    >>> import numpy as np
    >>> q, idx, dist = leave_one_out_neighbors(np.array([[0.0], [1.0], [3.0]]), 1)
    >>> q.tolist(), idx[:, 0].tolist(), dist[:, 0].tolist()
    ([0, 1, 2], [1, 0, 1], [1.0, 1.0, 2.0])
    """
    query = loo_query(rep.shape[0], max_cells, random_state) if query is None else query
    idx, dist = nearest_neighbors(rep[query], rep, k_max + 1)
    # drop each cell itself (or one exact duplicate standing for it)
    self_pos = np.argmax(idx == query[:, None], axis=1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(len(query)), self_pos] = False
    return query, idx[keep].reshape(len(query), -1), dist[keep].reshape(len(query), -1)
