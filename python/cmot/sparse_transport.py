"""Label-regularized entropic OT on a sparse support, for problems too large for a
dense ``n_source x n_target`` coupling.

With the automatic entropic weight (0.2 times the median cost of a source cell to
its 10th nearest target cell) the kernel ``exp(-C / reg_e)`` of a pair far beyond
a target cell's nearest source cells is negligible next to its nearest ones
(``exp(-25)`` at five times the 10th-neighbour cost), so the coupling is
computed only on each target cell's ``SUPPORT_NEIGHBORS`` nearest source cells
(``n_target * SUPPORT_NEIGHBORS`` pairs instead of ``n_source * n_target``).
:func:`cmot.composition.robust_shift` uses it when the dense problem has more than
:data:`SPARSE_ABOVE` pairs; ``TransportResult.support`` records which was used.

The solver is the same majorization-minimization as
:func:`cmot.transport.sinkhorn_lpl1` (POT's ``sinkhorn_lpl1_mm``; semi-relaxed
source marginal with ``reg_m``), with the kernel held as a sparse matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp

from .infer import nearest_neighbors
from .transport import _EPS, _P, WARN_MARGINAL_ERROR, OTConvergenceError, OTConvergenceWarning

__all__ = ["uses_sparse", "sparse_bytes", "SPARSE_ABOVE", "SUPPORT_NEIGHBORS", "SKETCH_SOURCE", "SKETCH_TARGET", "support_cost", "sinkhorn_lpl1_sparse", "auto_reg_e_sparse"]

#: Above this many source x target pairs the composition-robust transport runs on a sparse support.
SPARSE_ABOVE = 25_000_000
#: Source cells in the support of each target cell.
SUPPORT_NEIGHBORS = 50
#: Reference and query cells of the dense sketch that estimates the offset above SPARSE_ABOVE.
SKETCH_SOURCE = 10_000
SKETCH_TARGET = 2_500


def uses_sparse(n_source: int, n_target: int, correction: str = "robust") -> bool:
    """Whether Step B runs on the sparse support: the composition-robust correction
    above :data:`SPARSE_ABOVE` source x target pairs (the paper's balanced transport,
    ``correction="transport"``, is always dense).

    Examples
    --------
    >>> uses_sparse(200_000, 50_000), uses_sparse(5_000, 4_000), uses_sparse(200_000, 50_000, "transport")
    (True, False, False)
    """
    return correction == "robust" and n_source * n_target > SPARSE_ABOVE


def sparse_bytes(n_source: int, n_target: int, n_dims: int = 50) -> int:
    """Estimated peak bytes of Step B on the sparse support: the support's costs, kernel,
    transposed kernel and coupling (CSR: 8-byte values, 4-byte indices, about six copies
    at once), the dense sketch (:data:`SKETCH_SOURCE` x :data:`SKETCH_TARGET`, as
    :func:`cmot.transport.transport_bytes`) and the moved source cells.

    Examples
    --------
    >>> round(sparse_bytes(200_000, 50_000) / 2**30, 2)
    1.19
    """
    from .transport import transport_bytes

    entries = n_target * SUPPORT_NEIGHBORS
    support = 6 * entries * 12
    sketch = transport_bytes(min(n_source, SKETCH_SOURCE), min(n_target, SKETCH_TARGET))
    return int(support + sketch + 3 * n_source * n_dims * 8)


def support_cost(source, target, n_neighbors: int | None = None, *, offset=None, neighbors=None) -> sp.csr_matrix:
    """Squared Euclidean costs between each target cell and its ``n_neighbors`` nearest
    source cells, as a CSR matrix of shape ``(n_source, n_target)`` (zero costs are kept
    as stored entries).

    The neighbours are searched for ``target - offset`` (the offset between the two
    sets, when known), the costs are those of the cells as given: an offset shared
    by all target cells does not change a balanced coupling, but it would move the
    raw nearest neighbours away from the cells the coupling pairs.  ``neighbors``:
    the ``(indices, distances)`` of that search when already done (nearest first).

    Examples
    --------
    >>> import numpy as np
    >>> c = support_cost(np.array([[0.0], [1.0], [5.0]]), np.array([[0.9], [5.2]]), 2)
    >>> np.round(c.toarray(), 2).tolist()
    [[0.81, 0.0], [0.01, 17.64], [0.0, 0.04]]
    >>> c.nnz
    4
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    ns, nt = source.shape[0], target.shape[0]
    off = np.zeros(source.shape[1]) if offset is None else np.asarray(offset, dtype=np.float64)
    moved = target - off
    if neighbors is None:
        neighbors = nearest_neighbors(moved, source, min(int(SUPPORT_NEIGHBORS if n_neighbors is None else n_neighbors), ns))
    idx, dist = neighbors
    k = idx.shape[1]
    rows = idx.ravel()
    cols = np.repeat(np.arange(nt), k)
    # |s - t|^2 = |s - (t - o)|^2 - 2 <s - (t - o), o> + |o|^2
    cost = dist.ravel() ** 2 - 2.0 * (source[rows] @ off - (moved @ off)[cols]) + float(off @ off)
    np.maximum(cost, 0.0, out=cost)
    # CSC by target, then CSR: explicit entries only where given (never summed: no duplicates per target)
    out = sp.csc_matrix((cost, rows, np.arange(0, nt * k + 1, k)), shape=(ns, nt)).tocsr()
    out.sort_indices()
    return out


def auto_reg_e_sparse(source, target, *, max_rows: int = 2000) -> float:
    """``CMOT(reg_e=None)``'s entropic weight without a dense cost: 0.2 times the median
    squared distance of (at most ``max_rows`` evenly spaced) source cells to their 10th
    nearest distinct target cell (the same value as the dense computation).

    Examples
    --------
    >>> import numpy as np
    >>> auto_reg_e_sparse(np.zeros((3, 1)), np.arange(12.0)[:, None])
    20.0
    """
    source = np.asarray(source, dtype=np.float64)
    _, first = np.unique(np.asarray(target), axis=0, return_index=True)
    distinct = np.asarray(target, dtype=np.float64)[np.sort(first)]
    rows = np.unique(np.linspace(0, source.shape[0] - 1, min(max_rows, source.shape[0])).astype(int))
    kth = min(10, distinct.shape[0] - 1)
    _, dist = nearest_neighbors(source[rows], distinct, kth + 1)
    return 0.2 * float(np.median(dist[:, kth] ** 2)) or 1.0


def _stabilized_kernel(cost: sp.csr_matrix, reg_e: float) -> sp.csr_matrix:
    """``exp(-(C - min over each source's entries - min over each target's entries) / reg_e)``."""
    c = sp.csr_matrix(cost, copy=True)  # as the dense solver: each source's minimum, then each target's
    has = np.diff(c.indptr) > 0
    row_min = np.zeros(c.shape[0])
    row_min[has] = np.minimum.reduceat(c.data, c.indptr[:-1][has])
    c.data -= np.repeat(row_min, np.diff(c.indptr))
    c = c.tocsc()
    col_min = np.minimum.reduceat(c.data, c.indptr[:-1]) if c.nnz else np.zeros(0)
    c.data -= np.repeat(col_min, np.diff(c.indptr))
    c = c.tocsr()
    c.data = np.exp(-c.data / reg_e)
    return c


def sinkhorn_lpl1_sparse(cost: sp.csr_matrix, labels, *, reg_e: float, reg_cl: float, a=None, b=None,
                         max_iter: int = 10, max_inner_iter: int = 1000, tol: float = 1e-6, reg_m=None,
                         return_log: bool = False):
    """:func:`cmot.transport.sinkhorn_lpl1` restricted to the stored entries of ``cost``
    (pairs outside the support carry no mass).

    Parameters
    ----------
    cost : scipy.sparse matrix of shape (n_source, n_target)
        Costs on the support (:func:`support_cost`); every target cell needs at least one entry.
    labels, reg_e, reg_cl, a, b, max_iter, max_inner_iter, tol, reg_m, return_log
        As in :func:`cmot.transport.sinkhorn_lpl1`.

    Returns
    -------
    coupling : scipy.sparse.csr_matrix of shape (n_source, n_target)
    log : dict, only when ``return_log``

    Examples
    --------
    >>> import numpy as np
    >>> from cmot.transport import sinkhorn_lpl1, sqeuclidean_cost
    >>> rng = np.random.default_rng(0)
    >>> xs, xt = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    >>> full = sqeuclidean_cost(xs, xt)
    >>> pi = sinkhorn_lpl1_sparse(sp.csr_matrix(full), [0, 0, 0, 1, 1, 1], reg_e=1.0, reg_cl=0.1)
    >>> bool(np.allclose(pi.toarray(), sinkhorn_lpl1(full, [0, 0, 0, 1, 1, 1], reg_e=1.0, reg_cl=0.1), atol=1e-8))
    True
    """
    cost = sp.csr_matrix(cost, dtype=np.float64)
    cost.sort_indices()
    ns, nt = cost.shape
    labels = np.asarray(labels)
    if labels.shape != (ns,):
        raise ValueError(f"labels: expected {ns} labels (one per source cell), found shape {labels.shape}.")
    if not np.all(np.isfinite(cost.data)):
        raise OTConvergenceError("cost: expected finite values, found NaN or infinite entries.")
    if np.any(np.diff(cost.tocsc().indptr) == 0):
        raise ValueError("cost: expected at least one source cell in the support of every target cell.")
    a = np.full(ns, 1.0 / ns) if a is None else np.asarray(a, dtype=np.float64)
    b = np.full(nt, 1.0 / nt) if b is None else np.asarray(b, dtype=np.float64)
    _, cls = np.unique(labels, return_inverse=True)
    entry_cls = np.repeat(cls.ravel(), np.diff(cost.indptr))
    base = _stabilized_kernel(cost, reg_e)
    kernel = base.copy()
    fi = 1.0 if reg_m is None else reg_m / (reg_m + reg_e)
    u, v = np.ones(ns), np.ones(nt)
    b_norm = float(np.linalg.norm(b))
    total_inner, err = 0, np.inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for outer in range(max(1, max_iter if reg_cl > 0 else 1)):
            kt = kernel.T.tocsr()
            for it in range(max_inner_iter):
                v = b / (kt @ u)
                kv = kernel @ v
                u = np.divide(a, kv, out=np.zeros(ns), where=kv > 0)  # a source cell outside the support sends nothing
                if fi != 1.0:
                    u **= fi
                total_inner += 1
                if it % 10 == 0 or it == max_inner_iter - 1:
                    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
                        raise OTConvergenceError(
                            f"Sinkhorn scalings overflowed at reg_e={reg_e:g} on the sparse support. Increase "
                            "reg_e, or use reg_e=None to scale it to the cost automatically.")
                    err = float(np.linalg.norm(v * (kt @ u) - b) / b_norm)
                    if err < tol:
                        break
            if reg_cl > 0 and outer < max_iter - 1:
                mass = _coupling(kernel, u, v)
                class_mass = np.zeros((cls.max() + 1, nt))
                np.add.at(class_mass, (entry_cls, mass.indices), mass.data)
                w = _P * (class_mass + _EPS) ** (_P - 1)
                w -= w.min(axis=0, keepdims=True)
                kernel = base.copy()
                kernel.data *= np.exp(-reg_cl * w[entry_cls, kernel.indices] / reg_e)
    coupling = _coupling(kernel, u, v)
    if err >= max(tol, WARN_MARGINAL_ERROR):
        warnings.warn(
            f"Sinkhorn did not converge: relative target-marginal error {err:.3g} after {max_inner_iter} "
            f"iterations (reg_e={reg_e:g}, sparse support). The coupling may be inaccurate; increase reg_e or "
            "max_inner_iter.", OTConvergenceWarning, stacklevel=2)
    log = {"n_iter": total_inner, "err": err, "log_domain": False}
    return (coupling, log) if return_log else coupling


def _coupling(kernel: sp.csr_matrix, u, v) -> sp.csr_matrix:
    """``diag(u) K diag(v)`` on the support."""
    out = kernel.copy()
    out.data *= np.repeat(u, np.diff(out.indptr)) * v[out.indices]
    return out
