"""Step A: nonlinear manifold alignment (NMA) of partly paired source modalities.

X and Y cells are embedded jointly in ``n_components`` dimensions from the
spectral decomposition of one sparse graph: the kNN graphs of each modality
(weight ``mu``) joined by the known correspondences (weight ``1 - mu``).
The embedding minimizes the paper's objective
``mu sum W_X ||f(x_i)-f(x_k)||^2 + mu sum W_Y ||g(y_j)-g(y_m)||^2 + (1-mu) sum W ||f(x_i)-g(y_j)||^2``
under ``P^T D P = I``: the generalized eigenproblem ``L P = lambda D P``, solved as the
largest eigenvectors of the normalized adjacency ``D^-1/2 A D^-1/2`` with a sparse
Lanczos solver (no dense n x n matrix).  Each source Y cell then takes the X profile
of its nearest aligned X cell (or of its known partner, when it has one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import eigsh

from ._utils import to_dense

__all__ = ["knn_graph", "correspondence_matrix", "manifold_align", "match_aligned", "match_matrix", "Alignment",
           "align_source"]


def _reduce(data, n_dims, random_state):
    """Reduce to at most ``n_dims`` SVD components for neighbour search."""
    n, p = data.shape
    if p <= n_dims:
        return to_dense(data)
    from sklearn.decomposition import TruncatedSVD  # Step A only: scikit-learn is imported when used

    svd = TruncatedSVD(n_components=min(n_dims, n - 1, p - 1), random_state=random_state)
    return svd.fit_transform(data)


def knn_graph(data, n_neighbors: int, *, n_dims: int = 50, random_state=None) -> sp.csr_matrix:
    """Symmetric binary kNN graph of the rows of ``data`` (sparse, no self-loops).

    Neighbours are found in the first ``n_dims`` SVD components.

    Examples
    --------
    >>> import numpy as np
    >>> g = knn_graph(np.arange(10.0)[:, None], 1)
    >>> g.shape, bool((g != g.T).nnz == 0)
    ((10, 10), True)
    """
    emb = _reduce(data, n_dims, random_state)
    n = emb.shape[0]
    k = min(n_neighbors, n - 1)
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1).fit(emb)
    g = nn.kneighbors_graph(emb, mode="connectivity")
    g.setdiag(0)
    g.eliminate_zeros()
    g = g.maximum(g.T).tocsr()
    return g


def correspondence_matrix(correspondence, n_x: int, n_y: int) -> sp.csr_matrix:
    """Turn a binary matrix or index pairs into a sparse ``(n_x, n_y)`` 0/1 matrix.

    Parameters
    ----------
    correspondence : array-like or sparse matrix
        Either a binary ``(n_x, n_y)`` matrix, or an integer array of shape
        ``(n_pairs, 2)`` of ``(x_index, y_index)`` pairs.  An array of shape
        ``(n_x, n_y)`` is always read as a matrix (this matters only when
        ``n_y == 2``; pass a sparse matrix to be explicit).
    n_x, n_y : int
        Numbers of source X and source Y cells.

    Examples
    --------
    >>> correspondence_matrix([[0, 1], [2, 0]], 3, 2).toarray()
    array([[0., 1.],
           [0., 0.],
           [1., 0.]])
    """
    name = "correspondence"
    if sp.issparse(correspondence):
        w = sp.csr_matrix(correspondence, dtype=np.float64)
    else:
        arr = np.asarray(correspondence)
        if arr.ndim != 2:
            raise ValueError(
                f"{name}: expected a binary ({n_x}, {n_y}) matrix or an (n_pairs, 2) array of index pairs, "
                f"found shape {arr.shape}."
            )
        if arr.shape == (n_x, n_y):  # a (n_x, 2) array with n_y == 2 is read as a matrix
            w = sp.csr_matrix(arr.astype(np.float64))
        elif arr.shape[1] == 2:
            if not np.issubdtype(arr.dtype, np.integer):
                if not np.all(np.equal(np.mod(arr, 1), 0)):
                    raise TypeError(f"{name}: index pairs must be integers, found dtype {arr.dtype}.")
                arr = arr.astype(np.int64)
            bad_x = (arr[:, 0] < 0) | (arr[:, 0] >= n_x)
            bad_y = (arr[:, 1] < 0) | (arr[:, 1] >= n_y)
            if bad_x.any() or bad_y.any():
                raise ValueError(
                    f"{name}: index pairs must lie in [0, {n_x}) for X cells and [0, {n_y}) for Y cells; "
                    f"found {int(bad_x.sum())} X and {int(bad_y.sum())} Y indices out of range."
                )
            w = sp.csr_matrix((np.ones(len(arr)), (arr[:, 0], arr[:, 1])), shape=(n_x, n_y))
            w.data[:] = 1.0
        else:
            raise ValueError(
                f"{name}: expected a binary ({n_x}, {n_y}) matrix or an (n_pairs, 2) array of index pairs, "
                f"found shape {arr.shape}."
            )
    if w.shape != (n_x, n_y):
        raise ValueError(f"{name}: expected shape ({n_x}, {n_y}) (source X cells x source Y cells), found {w.shape}.")
    w.eliminate_zeros()
    if w.nnz and not np.all(np.isin(w.data, (0.0, 1.0))):
        raise ValueError(f"{name}: expected a binary (0/1) matrix, found values other than 0 and 1.")
    if w.nnz == 0:
        raise ValueError(f"{name}: the correspondence pairs no cells; give at least one known X-Y pair.")
    return w


def manifold_align(
    x,
    y,
    correspondence,
    *,
    n_components: int = 10,
    n_neighbors: int = 5,
    mu: float = 0.5,
    n_dims: int = 50,
    random_state=None,
):
    """Embed source X and Y cells in a common space by nonlinear manifold alignment.

    Parameters
    ----------
    x : ndarray or sparse matrix of shape (n_x, n_x_features)
    y : ndarray or sparse matrix of shape (n_y, n_y_features)
    correspondence : sparse matrix of shape (n_x, n_y)
        Known pairs (see :func:`correspondence_matrix`).
    n_components : int
        Dimension ``d`` of the common space.
    n_neighbors : int
        ``K`` of the within-modality kNN graphs.
    mu : float
        Weight of within-modality geometry against correspondences (paper: 0.5).
    n_dims : int
        SVD components used to find the kNN graphs.
    random_state : int or None

    Returns
    -------
    emb_x : ndarray of shape (n_x, n_components)
    emb_y : ndarray of shape (n_y, n_components)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 5)); y = x @ rng.normal(size=(5, 8))
    >>> w = correspondence_matrix(np.c_[np.arange(20), np.arange(20)], 40, 40)
    >>> ex, ey = manifold_align(x, y, w, n_components=3, random_state=0)
    >>> ex.shape, ey.shape
    ((40, 3), (40, 3))
    """
    n_x, n_y = x.shape[0], y.shape[0]
    gx = knn_graph(x, n_neighbors, n_dims=n_dims, random_state=random_state)
    gy = knn_graph(y, n_neighbors, n_dims=n_dims, random_state=random_state)
    w = sp.csr_matrix(correspondence)
    adj = sp.bmat([[mu * gx, (1 - mu) * w], [(1 - mu) * w.T, mu * gy]], format="csr")
    deg = np.asarray(adj.sum(axis=1)).ravel()
    deg[deg == 0] = 1.0
    d_inv_sqrt = 1.0 / np.sqrt(deg)
    norm_adj = sp.diags(d_inv_sqrt) @ adj @ sp.diags(d_inv_sqrt)
    n = n_x + n_y
    k = min(n_components + 1, n - 2)
    rng = np.random.default_rng(None if random_state is None else random_state)
    v0 = rng.uniform(0.5, 1.5, size=n)
    # Largest eigenvalues of D^-1/2 A D^-1/2 <-> smallest of the generalized L P = lambda D P.
    vals, vecs = eigsh(norm_adj, k=k, which="LA", v0=v0, tol=1e-8, maxiter=max(1000, 20 * n))
    idx = np.argsort(-vals)
    vecs = vecs[:, idx] * d_inv_sqrt[:, None]  # back to the generalized problem: P = D^-1/2 V
    emb = vecs[:, 1 : n_components + 1]  # drop the trivial (constant) eigenvector
    # fix signs for reproducibility
    signs = np.sign(emb[np.argmax(np.abs(emb), axis=0), np.arange(emb.shape[1])])
    signs[signs == 0] = 1.0
    emb = emb * signs
    return emb[:n_x], emb[n_x:]


def match_aligned(emb_x, emb_y, correspondence=None) -> np.ndarray:
    """Index of the X cell that each Y cell takes its X profile from.

    A Y cell with a known partner keeps it (the first, if several); every other Y
    cell takes its nearest X cell in the aligned space (Euclidean).

    Examples
    --------
    >>> import numpy as np
    >>> match_aligned(np.array([[0.0], [1.0]]), np.array([[0.9], [0.1]]))
    array([1, 0])
    """
    return _matched_neighbors(emb_x, emb_y, correspondence, 1)[0][:, 0]


def _matched_neighbors(emb_x, emb_y, correspondence, k: int):
    """``(cols, has)``: the ``k`` nearest X cells of each Y cell in the aligned space,
    every column replaced by the known partner (the first, if several) for the Y
    cells that have one, and the row numbers of those Y cells."""
    from sklearn.neighbors import NearestNeighbors

    cols = NearestNeighbors(n_neighbors=k).fit(emb_x).kneighbors(emb_y, return_distance=False)
    has = np.empty(0, dtype=np.intp)
    if correspondence is not None:
        w = sp.csc_matrix(correspondence)
        has = np.flatnonzero(np.diff(w.indptr) > 0)
        cols[has] = w.indices[w.indptr[:-1][has]][:, None]
    return cols, has


def match_matrix(emb_x, emb_y, correspondence=None, n_neighbors: int = 1):
    """Row-stochastic ``(n_y, n_x)`` sparse matrix ``M``: the X profile of each Y
    cell is row ``i`` of ``M @ X``.

    A Y cell with a known partner takes its partner's profile (the first, if
    several); every other Y cell takes the mean profile of its ``n_neighbors``
    nearest X cells in the aligned space.  ``n_neighbors=1`` is the paper's
    nearest aligned cell; averaging a few smooths the error of an imperfect
    alignment.

    Examples
    --------
    >>> import numpy as np
    >>> m = match_matrix(np.array([[0.0], [1.0], [1.2]]), np.array([[1.1], [0.1]]), n_neighbors=2)
    >>> m.toarray()
    array([[0. , 0.5, 0.5],
           [0.5, 0.5, 0. ]])
    """
    n_y, n_x = emb_y.shape[0], emb_x.shape[0]
    k = int(min(n_neighbors, n_x))
    cols, has = _matched_neighbors(emb_x, emb_y, correspondence, k)
    vals = np.full(cols.shape, 1.0 / k)
    vals[has] = 0.0
    vals[has, 0] = 1.0
    m = sp.csr_matrix((vals.ravel(), cols.ravel(), np.arange(0, n_y * k + 1, k)), shape=(n_y, n_x))
    m.sum_duplicates()
    m.eliminate_zeros()
    return m


@dataclass
class Alignment:
    """Step A's result: the X profile of each source Y cell and how it was found."""

    source_x: object
    aligned_index: np.ndarray
    match_matrix: sp.csr_matrix
    embedding_x: np.ndarray
    embedding_y: np.ndarray


def align_source(x, y, correspondence, *, n_components: int = 10, align_neighbors: int = 5, mu: float = 0.5,
                 match_neighbors: int = 10, random_state=None, verbose: bool = False) -> Alignment:
    """Step A for a partly paired source: align X and Y cells (:func:`manifold_align`)
    and give each Y cell an X profile, its known partner's or, with
    ``match_neighbors=1``, its nearest aligned X cell's (the paper), else the mean of
    its ``match_neighbors`` nearest aligned X cells (:func:`match_matrix`).

    Examples
    --------
    >>> import numpy as np
    >>> from cmot.datasets import make_multimodal
    >>> d = make_multimodal(60, 10, random_state=0)
    >>> known = np.arange(0, 60, 2)  # half the cells paired
    >>> al = align_source(d.source_x, d.source_y, np.c_[known, known], random_state=0)
    >>> al.source_x.shape, bool((al.aligned_index[known] == known).all())
    ((60, 30), True)
    """
    from ._utils import timed_step

    n_x, n_y = x.shape[0], y.shape[0]
    w = correspondence_matrix(correspondence, n_x, n_y)
    if align_neighbors >= min(n_x, n_y):
        raise ValueError(
            f"align_neighbors: expected fewer than the number of cells in each modality "
            f"({min(n_x, n_y)}), found {align_neighbors}."
        )
    if n_components >= n_x + n_y - 2:
        raise ValueError(
            f"n_components: expected fewer than {n_x + n_y - 2} (source X + Y cells - 2), found {n_components}."
        )
    with timed_step("manifold alignment (Step A)", verbose):
        ex, ey = manifold_align(x, y, w, n_components=n_components, n_neighbors=align_neighbors, mu=mu,
                                random_state=random_state)
        idx = match_aligned(ex, ey, w)
        m = match_matrix(ex, ey, w, match_neighbors)
    if match_neighbors == 1:  # the paper: the partner's own profile
        source_x = x[idx]
    else:
        source_x = m @ x
        if sp.issparse(source_x):
            source_x = sp.csr_matrix(source_x)
    return Alignment(source_x=source_x, aligned_index=idx, match_matrix=m, embedding_x=ex, embedding_y=ey)
