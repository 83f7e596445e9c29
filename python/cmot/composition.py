"""Composition-robust offset between the reference and the query.

The transport of :mod:`cmot.transport` moves the *whole* reference onto the query:
when the query holds one cell type, or a single cell, every reference cell is
pulled onto it, the mean displacement becomes the difference between the
reference's mean and that type, and the predictions collapse.  Here the offset
is estimated only from the reference cells the query resembles, and only where
the data support it:

1. **The query's composition** (:func:`query_composition`): each query cell gives
   its weight to its nearest reference cells; this is the source marginal of the
   transport, so a reference type absent from the query takes no part (as
   Seurat's anchors, pairs of cells that match each other, leave it out).  The
   votes are taken twice, the second time from the query moved back by the
   first estimate, so that a batch offset does not bias them.
2. **The transport's mean displacement** between those reference cells and the
   query (:func:`cmot.transport.transport_shift`).
3. **Shrinkage** (positive-part James-Stein): the displacement is the mean of one
   vector per query cell; vectors with no common offset average to a squared
   length of about ``mean |d|^2 / n``, so only an offset that stands clearly
   above that is kept.  A single query cell gets exactly no shift (its profile
   then comes from its neighbours, as in a plain kNN); the batch offset a whole
   query from another donor shares is kept in full.

:func:`robust_transport` is Step B as :class:`cmot.CMOT` runs it with
``correction="robust"``, and :func:`robust_move` moves the source cells into
target space before Step C (the shrunk shift, and the barycentric map in
proportion to :func:`composition_coverage`).

Every function takes plain arrays (cells as rows) and returns arrays or a small
result object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from . import sparse_transport
from ._utils import timed_step
from .infer import nearest_neighbors
from .transport import (
    OTConvergenceWarning,
    TransportResult,
    _warn_far_reg_e,
    barycentric_map,
    resolve_reg_e,
    sinkhorn_lpl1,
    sqeuclidean_cost,
    transport_dtype,
    transport_shift,
)

__all__ = ["query_composition", "shrunk_displacement", "robust_shift", "composition_coverage", "ShiftResult",
           "robust_transport", "robust_move", "COMPOSITION_NEIGHBORS"]

#: Source cells each target cell votes for in :func:`query_composition` (``correction="robust"``).
COMPOSITION_NEIGHBORS = 30


@dataclass
class ShiftResult:
    """Result of :func:`robust_shift`.

    Attributes
    ----------
    shift : ndarray of shape (n_dims,)
        The shrunken offset to add to the source (``factor * raw``).
    raw : ndarray of shape (n_dims,)
        The transport's mean displacement before shrinking.
    factor : float
        James-Stein factor in [0, 1].
    source_weights : ndarray of shape (n_source,)
        The source marginal of the transport (the query's composition); 0 for
        reference cells that took no part.
    coupling : ndarray of shape (n_used_source, n_used_target)
        The transport between the source cells with a positive weight and the
        target cells with a positive weight, in their order.
    reg_e : float
        The entropic weight used.
    n_iter : int
        Sinkhorn iterations of the last transport.
    marginal_error : float
        Its final relative target-marginal error.
    support : str
        ``"dense"``, or ``"sparse"`` when the problem was above
        :data:`cmot.sparse_transport.SPARSE_ABOVE` pairs: the offset then comes from a
        sketch and ``coupling`` is a CSR matrix on the sparse support.
    """

    shift: np.ndarray
    raw: np.ndarray
    factor: float
    source_weights: np.ndarray
    coupling: np.ndarray
    reg_e: float
    n_iter: int = 0
    marginal_error: float = 0.0
    support: str = "dense"


def query_composition(source, target, n_neighbors: int = 30, target_weights=None) -> np.ndarray:
    """The reference reweighted to the query's composition: each target cell gives
    its weight, in equal parts, to its ``n_neighbors`` nearest source cells.

    Reference cells no target cell is near (a type absent from the query) get 0,
    so the transport takes no mass from them.

    Examples
    --------
    >>> import numpy as np
    >>> query_composition(np.array([[0.0], [1.0], [9.0]]), np.array([[0.2]]), 2).tolist()
    [0.5, 0.5, 0.0]
    """
    target = np.asarray(target, dtype=np.float64)
    b = np.ones(target.shape[0]) if target_weights is None else np.asarray(target_weights, dtype=np.float64)
    idx, _ = nearest_neighbors(target, source, min(int(n_neighbors), source.shape[0]))
    return _votes(idx, b, source.shape[0])


def _votes(idx, b, n_source: int) -> np.ndarray:
    """Each target cell's weight ``b`` in equal parts to its neighbours ``idx`` (one row per
    target cell), as a distribution over the ``n_source`` source cells."""
    k = idx.shape[1]
    a = np.bincount(idx.ravel(), weights=np.repeat(b / k, k), minlength=n_source)
    return a / a.sum()


def robust_shift(source, target, *, labels=None, reg_cl: float = 0.0, reg_e=None, reg_m="auto", n_neighbors: int = 30,
                 n_passes: int = 2, target_weights=None, max_inner_iter: int = 1000) -> ShiftResult:
    """The offset between reference and query, from a transport that only uses the
    reference cells the query resembles, shrunk where the data do not support it.

    1. The source marginal is the query's composition
       (:func:`query_composition`): a reference type absent from the query keeps
       no part in the transport.  With ``n_passes=2`` the votes are taken again
       from the target moved back by the first pass's shift.
    2. Entropic OT (label-regularized when ``labels`` and ``reg_cl > 0``, as in
       :func:`cmot.transport.sinkhorn_lpl1`) between those source cells and the
       (weighted) target; ``raw`` is its mean displacement
       (:func:`cmot.transport.transport_shift`), the weighted mean of each target
       cell's vector ``d_j = t_j - (mean of the source mass it receives)``.
    3. ``shift = factor * raw`` with the positive-part James-Stein factor
       ``max(0, 1 - mean|d_j|^2 / (n_eff |raw|^2))``, ``n_eff`` the effective
       number of target cells: vectors with no common offset average to
       ``|raw|^2 ~ mean|d|^2 / n_eff``, so noise gives (nearly) no shift, and a
       single target cell (``n_eff = 1``) exactly none; an offset shared by many
       cells (another donor) is kept in full.

    Parameters
    ----------
    source : ndarray of shape (n_source, n_dims)
    target : ndarray of shape (n_target, n_dims)
    labels : array-like of shape (n_source,), optional
        Source labels for the group-lasso term.
    reg_cl : float
        Label-regularization weight (0: plain entropic OT).
    reg_e : float or None
        Entropic weight; None: 0.2 times the median cost of the used source
        cells to their 10th nearest target cell (as :class:`cmot.CMOT`).
    reg_m : float, "auto" or None
        Semi-relaxed source marginal (KL weight; "auto": ``reg_e``), or None
        for balanced OT.
    n_neighbors : int
        Source cells each target cell votes for in :func:`query_composition`.
    n_passes : int
        Times the composition and the transport are estimated.
    target_weights : array-like of shape (n_target,), optional
        Non-negative weight of each target cell (0 leaves it out: for example
        cells already judged poorly mapped).
    max_inner_iter : int
        Sinkhorn iterations per step.

    Returns
    -------
    ShiftResult

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = np.r_[rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) + [8, 0, 0]]
    >>> tgt = rng.normal(size=(80, 3)) + [0, 0, 5.0]       # one type only, offset (0, 0, 5)
    >>> np.round(robust_shift(src, tgt).shift).tolist()  # most of it; the other type takes no part
    [0.0, 0.0, 4.0]
    >>> robust_shift(src, tgt[:1]).factor                  # one cell: no shift
    0.0
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    b = np.ones(target.shape[0]) if target_weights is None else np.asarray(target_weights, dtype=np.float64)
    if b.shape != (target.shape[0],) or np.any(b < 0) or not b.sum() > 0:
        raise ValueError(
            f"target_weights: expected {target.shape[0]} non-negative weights with a positive sum, found "
            f"shape {b.shape}" + (f" and sum {b.sum():g}" if b.shape == (target.shape[0],) else "") + "."
        )
    ot = dict(labels=labels, reg_cl=reg_cl, reg_e=reg_e, reg_m=reg_m, max_inner_iter=max_inner_iter)
    if source.shape[0] * int(np.count_nonzero(b)) > sparse_transport.SPARSE_ABOVE:
        return _sketched_shift(source, target, b, ot, n_neighbors=n_neighbors, n_passes=n_passes)
    return _dense_shift(source, target, b, ot, n_neighbors=n_neighbors, n_passes=n_passes)


def _dense_shift(source, target, b, ot, *, n_neighbors, n_passes) -> ShiftResult:
    """:func:`robust_shift`'s passes with dense couplings."""
    shift = np.zeros(source.shape[1])
    for _ in range(max(1, int(n_passes))):
        a = query_composition(source, target - shift, n_neighbors, b)
        res = _shift_from(source, target, a, b, **ot)
        shift = res.shift
    return res


def _sketched_shift(source, target, b, ot, *, n_neighbors, n_passes) -> ShiftResult:
    """:func:`robust_shift` for problems above :data:`cmot.sparse_transport.SPARSE_ABOVE` pairs.

    The offset is a mean over the query, so it is estimated on a sketch: the dense
    :func:`robust_shift` between random subsets of the reference and of the query
    (:data:`cmot.sparse_transport.SKETCH_SOURCE`, :data:`cmot.sparse_transport.SKETCH_TARGET`
    cells, seeded), at the entropic weight of the whole problem (measured on the
    reference cells the sketch uses).  One neighbour search of every query cell, moved
    back by that offset, among every reference cell then gives the query's composition
    (the first ``n_neighbors``) and the sparse support of the coupling that the
    barycentric map and the coverage need (:mod:`cmot.sparse_transport`).
    """
    ns = source.shape[0]
    rng = np.random.default_rng(0)
    cols = np.flatnonzero(b > 0)
    t_sub = np.sort(rng.choice(cols, min(cols.size, sparse_transport.SKETCH_TARGET), replace=False))
    s_sub = np.sort(rng.choice(ns, min(ns, sparse_transport.SKETCH_SOURCE), replace=False))
    sk = dict(ot)
    labels = ot["labels"]
    sk["labels"] = None if labels is None else np.asarray(labels)[s_sub]
    if sk["reg_e"] is None:
        used = query_composition(source[s_sub], target[t_sub], n_neighbors, b[t_sub]) > 0
        sk["reg_e"] = sparse_transport.auto_reg_e_sparse(source[s_sub][used], target[cols])
    sketch = _dense_shift(source[s_sub], target[t_sub], b[t_sub], sk, n_neighbors=n_neighbors, n_passes=n_passes)
    k = min(max(int(n_neighbors), sparse_transport.SUPPORT_NEIGHBORS), ns)
    idx, dist = nearest_neighbors(target[cols] - sketch.shift, source, k)
    a = _votes(idx[:, :min(int(n_neighbors), ns)], b[cols], ns)  # the query's composition
    sk["labels"] = labels
    full = _shift_from_sparse(source, target[cols], a, b[cols], offset=sketch.shift,
                              neighbors=(idx, dist), **sk)
    return ShiftResult(sketch.shift, sketch.raw, sketch.factor, a, full.coupling, sketch.reg_e, full.n_iter,
                       full.marginal_error, support="sparse")


def composition_coverage(coupling) -> float:
    """Share of the reference that the query covers: the overlap
    ``sum_i min(m_i, 1 / n_source)`` of the mass each source cell sends (``m``, the
    coupling's row sums over its total) with the uniform reference.

    1 when the query draws on every reference cell in proportion (a query with
    the reference's composition), about the share of a cell type when the query
    holds only that type, near 0 for a single cell.  :class:`cmot.CMOT` scales
    the barycentric share of its mapping by it: the barycentric map pulls every
    reference cell onto the query, which is only right when the query covers
    the reference.

    Examples
    --------
    >>> import numpy as np
    >>> composition_coverage(np.full((4, 2), 1 / 8))
    1.0
    >>> composition_coverage(np.array([[0.5, 0.5], [0, 0], [0, 0], [0, 0]]))
    0.25
    """
    rows = np.asarray(coupling.sum(axis=1), dtype=np.float64).ravel()
    total = rows.sum()
    if not total > 0:
        return 0.0
    return float(np.minimum(rows / total, 1.0 / rows.size).sum())


def shrunk_displacement(coupling, source, target):
    """The coupling's mean displacement, shrunk by a positive-part James-Stein factor.

    Each target cell ``j`` that receives mass contributes the vector
    ``d_j = t_j - (mean of the source cells it receives mass from)``; the mean
    displacement is their mass-weighted mean ``raw``
    (:func:`cmot.transport.transport_shift`).  Vectors with no common offset
    average to ``|raw|^2 ~ mean|d|^2 / n_eff`` (``n_eff`` the effective number of
    target cells; identical cells count once), so
    ``factor = max(0, 1 - mean|d|^2 / (n_eff |raw|^2))`` keeps only an offset
    that stands clearly above that, and a single target cell (``n_eff = 1``)
    gives exactly none.

    Parameters
    ----------
    coupling : ndarray of shape (n_source, n_target)
    source : ndarray of shape (n_source, n_dims)
    target : ndarray of shape (n_target, n_dims)

    Returns
    -------
    shift, raw : ndarray of shape (n_dims,)
        ``shift = factor * raw``.
    factor : float

    Examples
    --------
    >>> import numpy as np
    >>> src = np.arange(10.0)[:, None]
    >>> shift, raw, factor = shrunk_displacement(np.eye(10) / 10, src, src + 3)   # 10 cells, one offset
    >>> raw.tolist(), round(factor, 3)
    ([3.0], 0.9)
    >>> shrunk_displacement(np.full((10, 1), 0.1), src, src[:1] + 3)[2]           # one target cell
    0.0
    """
    coupling = coupling if sp.issparse(coupling) else np.asarray(coupling)
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    raw = transport_shift(coupling, source, target)
    received = np.asarray(coupling.sum(axis=0), dtype=np.float64).ravel()
    b = received / received.sum()
    received[received == 0] = 1.0
    d = target - np.asarray(coupling.T @ source, dtype=np.float64) / received[:, None]
    noise = float(b @ np.einsum("ij,ij->i", d, d))
    # identical target cells are one observation: a query repeated twice gives the same shift
    _, groups = np.unique(target, axis=0, return_inverse=True)
    b_group = np.bincount(groups.ravel(), weights=b)
    n_eff = 1.0 / float(b_group @ b_group)
    sq = float(raw @ raw)
    # one observation (n_eff 1: noise equals sq exactly, not only to rounding) carries no shift
    factor = float(np.clip(1.0 - noise / (n_eff * sq), 0.0, 1.0)) if sq > 0 and n_eff > 1.0 + 1e-9 else 0.0
    return factor * raw, raw, factor


def _auto_reg_e(cost, target, max_rows: int = 2000) -> float:
    """0.2 times the median cost of (at most ``max_rows`` evenly spaced) source cells to
    their 10th nearest distinct target cell (as ``CMOT(reg_e=None)``; identical target
    cells count once, so a query repeated twice gets the same weight)."""
    _, first = np.unique(target, axis=0, return_index=True)
    rows = np.unique(np.linspace(0, cost.shape[0] - 1, min(max_rows, cost.shape[0])).astype(int))
    sub = cost[rows][:, np.sort(first)]
    kth = min(10, sub.shape[1] - 1)
    return 0.2 * float(np.median(np.partition(sub, kth, axis=1)[:, kth])) or float(cost.mean()) or 1.0


def _shift_from(source, target, a_full, b, *, labels, reg_cl, reg_e, reg_m, max_inner_iter):
    """One transport with source marginal ``a_full`` and target weights ``b``; its
    James-Stein-shrunk mean displacement (see :func:`robust_shift`)."""
    import warnings

    rows, cols = np.flatnonzero(a_full > 0), np.flatnonzero(b > 0)
    a, bt, tg = a_full[rows] / a_full[rows].sum(), b[cols] / b[cols].sum(), target[cols]
    dtype = transport_dtype(len(rows), len(cols))
    cost = sqeuclidean_cost(source[rows], tg, dtype=dtype)
    if reg_e is None:
        reg_e = _auto_reg_e(cost, tg)
    reg_m = reg_e if reg_m == "auto" else reg_m
    lab = np.zeros(len(rows), dtype=np.int64) if labels is None else np.asarray(labels)[rows]
    with warnings.catch_warnings():  # an approximate coupling is enough for a mean displacement
        warnings.simplefilter("ignore", OTConvergenceWarning)
        coupling, log = sinkhorn_lpl1(cost, lab, reg_e=reg_e, reg_cl=reg_cl if labels is not None else 0.0, a=a,
                                      b=bt, reg_m=reg_m, max_inner_iter=max_inner_iter, dtype=dtype,
                                      return_log=True)
    del cost
    shift, raw, factor = shrunk_displacement(coupling, source[rows], tg)
    return ShiftResult(shift, raw, factor, a_full, coupling, float(reg_e), int(log["n_iter"]), float(log["err"]))


def _shift_from_sparse(source, target, a_full, b, *, offset, neighbors, labels, reg_cl, reg_e, reg_m,
                       max_inner_iter):
    """:func:`_shift_from` on the sparse support of :mod:`cmot.sparse_transport`: each
    target cell's nearest source cells (``neighbors``: indices and distances of the
    search at ``target - offset``), those with a positive ``a_full``; the coupling is a
    CSR matrix (used source cells x target cells)."""
    import warnings

    rows = np.flatnonzero(a_full > 0)
    pos = np.full(a_full.size, -1)
    pos[rows] = np.arange(rows.size)
    idx, dist = neighbors
    keep = a_full[idx] > 0  # every target keeps its nearest ones (they vote)
    k = int(keep.sum(axis=1).min())
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # the kept ones, nearest first
    idx_used = pos[np.take_along_axis(idx, order, axis=1)]
    dist_used = np.take_along_axis(dist, order, axis=1)
    a, bt, src = a_full[rows] / a_full[rows].sum(), b / b.sum(), source[rows]
    cost = sparse_transport.support_cost(src, target, offset=offset, neighbors=(idx_used, dist_used))
    reg_m = reg_e if reg_m == "auto" else reg_m
    lab = np.zeros(len(rows), dtype=np.int64) if labels is None else np.asarray(labels)[rows]
    with warnings.catch_warnings():  # an approximate coupling is enough for the barycentric map
        warnings.simplefilter("ignore", OTConvergenceWarning)
        coupling, log = sparse_transport.sinkhorn_lpl1_sparse(
            cost, lab, reg_e=reg_e, reg_cl=reg_cl if labels is not None else 0.0, a=a, b=bt, reg_m=reg_m,
            max_inner_iter=max_inner_iter, return_log=True)
    del cost
    shift, raw, factor = shrunk_displacement(coupling, src, target)
    return ShiftResult(shift, raw, factor, a_full, coupling, float(reg_e), int(log["n_iter"]), float(log["err"]),
                       support="sparse")


def robust_transport(source, target, labels, *, reg_e=None, reg_cl: float = 1.0, reg_m="auto",
                     n_neighbors: int = COMPOSITION_NEIGHBORS, max_inner_iter: int = 1000, keep_cost: bool = False,
                     random_state=None, verbose: bool = False, reg_e_hint: str = "") -> TransportResult:
    """Step B with ``correction="robust"``: :func:`robust_shift` between ``source`` and
    ``target`` (cells x Step B/C components), as a :class:`cmot.transport.TransportResult`
    whose coupling has a row for every source cell (zero for the cells that take no
    part) and whose ``shift`` is the shrunk offset.  A given ``reg_e`` far from the
    automatic one warns, as with :func:`cmot.transport.solve_transport`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = np.r_[rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + 9]
    >>> res = robust_transport(src, rng.normal(size=(20, 2)), np.repeat([0, 1], 50))
    >>> res.coupling.shape, bool(res.coupling[50:].sum() == 0)  # the absent type sends nothing
    ((100, 20), True)
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    ns, nt = source.shape[0], target.shape[0]
    with timed_step(f"composition-robust transport ({ns} x {nt})", verbose):
        res = robust_shift(source, target, labels=labels, reg_cl=reg_cl, reg_e=reg_e, reg_m=reg_m,
                           n_neighbors=n_neighbors, max_inner_iter=max_inner_iter)
    used = res.source_weights > 0
    if reg_e is not None:
        cost_used = sqeuclidean_cost(source[used], target)
        _warn_far_reg_e(float(reg_e), resolve_reg_e(None, cost_used, random_state=random_state), reg_e_hint)
    if sp.issparse(res.coupling):  # the sparse support: rows of the used source cells only
        c = res.coupling.tocoo()
        coupling = sp.csr_matrix((c.data, (np.flatnonzero(used)[c.row], c.col)), shape=(ns, nt))
    else:
        coupling = np.zeros((ns, nt), dtype=res.coupling.dtype)
        coupling[used] = res.coupling
    cost = sqeuclidean_cost(source, target) if keep_cost else None
    return TransportResult(coupling=coupling, reg_e=res.reg_e, shift=res.shift, n_iter=res.n_iter,
                           marginal_error=res.marginal_error, cost=cost, support=res.support,
                           shift_factor=res.factor if res.support == "sparse" else None)


def robust_move(coupling, source, target, *, barycentric_weight: float, shift=None, factor=None):
    """Source cells moved into target space before Step C with ``correction="robust"``.

    ``shift`` is the coupling's :func:`shrunk_displacement` over the source cells that
    send mass (unless ``shift`` and its James-Stein ``factor`` are given: the sketch's,
    when the coupling is on a sparse support); the barycentric share is ``barycentric_weight`` times
    :func:`composition_coverage`; source cells that send no mass (types absent from
    the query) move by ``shift`` only.

    Returns
    -------
    mapped : ndarray of shape (n_source, n_dims)
    shift : ndarray of shape (n_dims,)
    factor : float
        The James-Stein factor of the shift.
    coverage : float

    Examples
    --------
    >>> import numpy as np
    >>> src = np.arange(4.0)[:, None]
    >>> mapped, shift, factor, coverage = robust_move(np.eye(4) / 4, src, src + 2, barycentric_weight=0.5)
    >>> shift.tolist(), factor, coverage, mapped.ravel().tolist()
    ([1.5], 0.75, 1.0, [1.75, 2.75, 3.75, 4.75])
    """
    source = np.asarray(source, dtype=np.float64)
    sent = np.asarray(coupling.sum(axis=1)).ravel() > 0
    if shift is None:
        shift, _, factor = shrunk_displacement(coupling[sent], source[sent], target)
    coverage = composition_coverage(coupling)
    weight = barycentric_weight * coverage
    if not weight > 0:
        return source + shift, shift, factor, coverage
    bary = barycentric_map(coupling, target)
    bary[~sent] = source[~sent] + shift  # source cells that send no mass stay in place
    mapped = bary if weight == 1 else (1 - weight) * (source + shift) + weight * bary
    return mapped, shift, factor, coverage
