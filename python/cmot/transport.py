"""Step B: label-regularized entropic optimal transport and the barycentric map.

:func:`solve_transport` is the step as the estimator runs it: it checks that the
dense source x target arrays fit in memory, builds the cost, chooses the
entropic weight, solves, and returns a :class:`TransportResult` whose coupling
rows are in source order (the solver's sorting of source cells by label stays
inside it).

The solver computes the same coupling as POT's ``ot.da.sinkhorn_lpl1_mm`` (entropic
OT with the non-convex group-lasso label regularizer, solved by majorization-
minimization), but never builds POT's dense target x source x labels array and
never copies the kernel: the label term only rescales the kernel's rows class by
class, so each Sinkhorn product is taken block by block on one stored kernel.
Sinkhorn scalings are warm-started across the majorization steps, and the kernel
is stabilized by absorbing row and column minima of the cost into the scalings,
so that entropic weights far below the cost scale do not underflow to NaN.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._utils import timed_step, to_dense

logger = logging.getLogger("cmot")

__all__ = [
    "OTConvergenceError",
    "OTConvergenceWarning",
    "sqeuclidean_cost",
    "sinkhorn_lpl1",
    "barycentric_map",
    "transport_shift",
    "resolve_reg_e",
    "TransportResult",
    "solve_transport",
    "transport_bytes",
    "check_transport_memory",
    "check_memory",
    "available_memory",
]

_P = 0.5  # the l_p^q group-lasso exponent used by POT and the paper (p=1, q=1/2)
_EPS = 1e-3  # POT's smoothing of the majorization weights
#: A final relative marginal error above this is reported (OTConvergenceWarning).
WARN_MARGINAL_ERROR = 1e-3


class OTConvergenceError(RuntimeError):
    """The transport problem produced NaN or an empty kernel row/column."""


class OTConvergenceWarning(UserWarning):
    """Sinkhorn stopped at its iteration limit before meeting the tolerance."""


def sqeuclidean_cost(a, b, *, dtype=np.float64) -> np.ndarray:
    """Squared Euclidean distances between the rows of ``a`` and ``b``.

    Works on dense arrays and scipy sparse matrices without densifying the inputs;
    the result is a dense ``(n_a, n_b)`` array, clipped at 0.

    Examples
    --------
    >>> import numpy as np
    >>> sqeuclidean_cost(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]))
    array([[25.]])
    """
    def sq_norms(m):
        if sp.issparse(m):
            return np.asarray(m.multiply(m).sum(axis=1)).ravel()
        return np.einsum("ij,ij->i", m, m)

    na, nb = sq_norms(a), sq_norms(b)
    if sp.issparse(a) or sp.issparse(b):
        cost = to_dense(a @ b.T, dtype)
    else:  # multiply in the output precision: no float64 temporary for float32 output
        cost = np.asarray(a, dtype=dtype) @ np.asarray(b, dtype=dtype).T
    cost *= -2.0
    cost += na.astype(cost.dtype)[:, None]
    cost += nb.astype(cost.dtype)[None, :]
    np.maximum(cost, 0.0, out=cost)
    return cost


def _class_blocks(labels):
    """Sort order of ``labels`` and the slice of each class in that order."""
    classes, inverse = np.unique(labels, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    counts = np.bincount(inverse, minlength=len(classes))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    return classes, order, [slice(bounds[c], bounds[c + 1]) for c in range(len(classes))]


def sinkhorn_lpl1(
    cost,
    labels,
    *,
    reg_e: float,
    reg_cl: float,
    a=None,
    b=None,
    max_iter: int = 10,
    max_inner_iter: int = 200,
    tol: float = 1e-6,
    reg_m: float | None = None,
    return_log: bool = False,
    dtype=np.float64,
    overwrite_cost: bool = False,
):
    """Entropic OT with group-lasso label regularization (POT's ``sinkhorn_lpl1_mm``).

    Solves ``min <pi, C> - reg_e H(pi) + reg_cl sum_{j,c} ||pi[I_c, j]||_1^{1/2}``
    over couplings with marginals ``a`` (source) and ``b`` (target), by
    majorization-minimization: each of ``max_iter`` steps solves an entropic OT whose
    cost is ``C + reg_cl * W`` with ``W[i, j] = 0.5 (sum_{i' in class(i)} pi[i', j] + 1e-3)^(-1/2)``.

    Parameters
    ----------
    cost : ndarray of shape (n_source, n_target)
        Cost matrix ``C``.
    labels : array-like of shape (n_source,)
        Class of each source cell.
    reg_e : float
        Entropic weight (> 0), on the scale of ``cost``.
    reg_cl : float
        Label-regularization weight (>= 0). 0 gives plain entropic OT.
    a, b : ndarray, optional
        Source and target marginals (uniform when None); each sums to 1.
    max_iter : int
        Majorization-minimization steps (POT's ``numItermax``).
    max_inner_iter : int
        Sinkhorn iterations per step (POT's ``numInnerItermax``).
    tol : float
        Stop Sinkhorn when the l2 error of the target marginal, relative to the
        marginal's norm, is below ``tol``.
    reg_m : float or None
        None keeps the source marginal exactly (the paper); a number relaxes it
        by a KL penalty of that weight (semi-relaxed OT).
    return_log : bool
        Also return a dict with the number of iterations and final marginal error.
    dtype : numpy dtype
        float64 (default) or float32 for very large problems.
    overwrite_cost : bool
        Let the solver turn ``cost`` into the kernel and then the coupling in place
        (no copy of the ``n_source x n_target`` matrix) when ``cost`` already has
        ``dtype`` and ``labels`` are sorted.  ``cost`` is then destroyed, and a
        problem that needs the log domain raises :class:`OTConvergenceError`.

    Returns
    -------
    coupling : ndarray of shape (n_source, n_target)
    log : dict, only when ``return_log``

    Raises
    ------
    OTConvergenceError
        If the scalings become NaN or infinite.

    Warns
    -----
    OTConvergenceWarning
        If the final relative marginal error stays above ``max(tol, 1e-3)``
        after ``max_inner_iter`` iterations.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> xs, xt = rng.normal(size=(6, 2)), rng.normal(size=(4, 2))
    >>> pi = sinkhorn_lpl1(sqeuclidean_cost(xs, xt), [0, 0, 0, 1, 1, 1], reg_e=1.0, reg_cl=0.1)
    >>> np.allclose(pi.sum(axis=1), 1 / 6), np.allclose(pi.sum(axis=0), 1 / 4, atol=1e-6)
    (True, True)
    """
    cost = np.asarray(cost)
    ns, nt = cost.shape
    labels = np.asarray(labels)
    if labels.shape != (ns,):
        raise ValueError(f"labels: expected {ns} labels (one per source cell), found shape {labels.shape}.")
    if not np.all(np.isfinite(cost)):
        raise OTConvergenceError("cost: expected finite values, found NaN or infinite entries.")
    a = np.full(ns, 1.0 / ns) if a is None else np.asarray(a, dtype=np.float64)
    b = np.full(nt, 1.0 / nt) if b is None else np.asarray(b, dtype=np.float64)
    params = dict(reg_e=reg_e, reg_cl=reg_cl, reg_m=reg_m, max_iter=max_iter, max_inner_iter=max_inner_iter, tol=tol)
    in_place = overwrite_cost and cost.dtype == np.dtype(dtype) and cost.flags.c_contiguous
    try:
        coupling, log = _sinkhorn_scaling(cost, labels, a, b, dtype=dtype, in_place=in_place, **params)
    except _Diverged:
        if in_place:
            raise OTConvergenceError(
                f"Sinkhorn scalings overflowed at reg_e={reg_e:g} (entropic weight far below the cost scale). "
                "Increase reg_e, or use reg_e=None to scale it to the cost automatically."
            ) from None
        # Scalings over/underflow when reg_e is far below the cost scale: solve the
        # same problem in the log domain (slower, but exact and stable).
        logger.info("cmot: Sinkhorn scalings overflowed at reg_e=%g; switching to the log domain", reg_e)
        coupling, log = _sinkhorn_log(cost, labels, a, b, **params)
    err = log["err"]
    if not np.all(np.isfinite(coupling)):
        raise OTConvergenceError(
            f"Sinkhorn diverged (NaN in the coupling) at reg_e={reg_e:g}: the entropic weight is too small "
            "for the cost scale. Increase reg_e, or use reg_e=None to scale it to the cost automatically."
        )
    if err >= max(tol, WARN_MARGINAL_ERROR):
        warnings.warn(
            f"Sinkhorn did not converge: relative target-marginal error {err:.3g} after "
            f"{max_inner_iter} iterations (reg_e={reg_e:g}). The coupling may be inaccurate; "
            "increase reg_e or max_inner_iter.",
            OTConvergenceWarning,
            stacklevel=2,
        )
    if return_log:
        return coupling, log
    return coupling


class _Diverged(ArithmeticError):
    pass


def _sinkhorn_scaling(cost, labels, a, b, *, reg_e, reg_cl, reg_m, max_iter, max_inner_iter, tol, dtype, in_place=False):
    ns, nt = cost.shape
    classes, order, blocks = _class_blocks(labels)
    is_sorted = bool(np.all(order == np.arange(ns)))
    # Stabilized kernel in class-sorted row order:
    # K = exp(-(C - r_i - c_j) / reg_e), r and c absorbed into the scalings.
    if is_sorted:
        kernel = cost if in_place else np.array(cost, dtype=dtype)
    else:
        kernel = np.asarray(cost[order], dtype=dtype)
    kernel -= kernel.min(axis=1, keepdims=True)
    kernel -= kernel.min(axis=0, keepdims=True)
    kernel *= -1.0 / reg_e
    np.exp(kernel, out=kernel)
    a_s = a[order].astype(dtype)
    b_t = b.astype(dtype)

    n_cls = len(classes)
    factor = np.ones((n_cls, nt), dtype=dtype)  # exp(-reg_cl * W_c / reg_e)
    u = np.ones(ns, dtype=dtype)
    v = np.ones(nt, dtype=dtype)

    def k_dot(v_):
        out = np.empty(ns, dtype=dtype)
        for c, blk in enumerate(blocks):
            out[blk] = kernel[blk] @ (factor[c] * v_)
        return out

    def kt_dot(u_):
        out = np.zeros(nt, dtype=dtype)
        for c, blk in enumerate(blocks):
            out += factor[c] * (u_[blk] @ kernel[blk])
        return out

    # Semi-relaxed OT: the source marginal is only kept by a KL penalty of weight reg_m.
    fi = 1.0 if reg_m is None else reg_m / (reg_m + reg_e)
    b_norm = float(np.linalg.norm(b_t))
    total_inner = 0
    err = np.inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for outer in range(max(1, max_iter if reg_cl > 0 else 1)):
            for it in range(max_inner_iter):
                v = b_t / kt_dot(u)
                u = a_s / k_dot(v)
                if fi != 1.0:
                    u **= fi
                total_inner += 1
                if it % 10 == 0 or it == max_inner_iter - 1:
                    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
                        raise _Diverged
                    err = float(np.linalg.norm(v * kt_dot(u) - b_t) / b_norm)
                    if err < tol:
                        break
            if reg_cl > 0 and outer < max_iter - 1:
                # Majorization weights from the class sums of the current coupling.
                w = np.empty((n_cls, nt), dtype=dtype)
                for c, blk in enumerate(blocks):
                    mass = v * (u[blk] @ kernel[blk]) * factor[c]
                    w[c] = _P * (mass + _EPS) ** (_P - 1)
                # exp(-reg_cl * W / reg_e), shifted per target by its smallest W
                # (a per-column constant that the scaling v absorbs) so it cannot underflow.
                w -= w.min(axis=0, keepdims=True)
                factor = np.exp(-reg_cl * w / reg_e)
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(v))):
        raise _Diverged
    if is_sorted:  # the kernel's buffer becomes the coupling
        coupling = kernel
        for c, blk in enumerate(blocks):
            coupling[blk] *= u[blk][:, None]
            coupling[blk] *= (factor[c] * v)[None, :]
    else:
        coupling = np.empty((ns, nt), dtype=dtype)
        for c, blk in enumerate(blocks):
            coupling[order[blk]] = u[blk][:, None] * kernel[blk] * (factor[c] * v)[None, :]
    if not np.all(np.isfinite(coupling)) or not np.any(coupling):
        raise _Diverged
    return coupling, {"n_iter": total_inner, "err": err, "log_domain": False}


def _sinkhorn_log(cost, labels, a, b, *, reg_e, reg_cl, reg_m, max_iter, max_inner_iter, tol):
    """The same majorization-minimization as :func:`_sinkhorn_scaling`, on dual potentials."""
    from scipy.special import logsumexp

    ns, nt = cost.shape
    _, cls = np.unique(labels, return_inverse=True)
    n_cls = cls.max() + 1
    onehot = np.zeros((n_cls, ns))
    onehot[cls, np.arange(ns)] = 1.0
    la, lb = np.log(a), np.log(b)
    fi = 1.0 if reg_m is None else reg_m / (reg_m + reg_e)
    f, g = np.zeros(ns), np.zeros(nt)
    w = np.zeros((n_cls, nt))
    total_inner, err = 0, np.inf
    b_norm = float(np.linalg.norm(b))
    for outer in range(max(1, max_iter if reg_cl > 0 else 1)):
        ceff = cost + reg_cl * w[cls] if reg_cl > 0 else cost
        for it in range(max_inner_iter):
            g = reg_e * (lb - logsumexp((f[:, None] - ceff) / reg_e, axis=0))
            f = fi * reg_e * (la - logsumexp((g[None, :] - ceff) / reg_e, axis=1))
            total_inner += 1
            if it % 10 == 0 or it == max_inner_iter - 1:
                col = np.exp(logsumexp((f[:, None] + g[None, :] - ceff) / reg_e, axis=0))
                err = float(np.linalg.norm(col - b) / b_norm)
                if err < tol:
                    break
        coupling = np.exp((f[:, None] + g[None, :] - ceff) / reg_e)
        if reg_cl > 0 and outer < max_iter - 1:
            w = _P * (onehot @ coupling + _EPS) ** (_P - 1)
    return coupling, {"n_iter": total_inner, "err": err, "log_domain": True}


def barycentric_map(coupling, target):
    """Move each source cell to the coupling-weighted mean of the target cells.

    ``Y_t = diag(1 / coupling.sum(1)) @ coupling @ target``.

    Parameters
    ----------
    coupling : ndarray of shape (n_source, n_target)
    target : ndarray or sparse matrix of shape (n_target, n_features)

    Returns
    -------
    ndarray of shape (n_source, n_features)

    Examples
    --------
    >>> import numpy as np
    >>> barycentric_map(np.array([[0.25, 0.25], [0.0, 0.5]]), np.array([[0.0], [2.0]]))
    array([[1.],
           [2.]])
    """
    rows = np.asarray(coupling.sum(axis=1), dtype=np.float64).ravel()
    rows[rows == 0] = 1.0
    if sp.issparse(target):
        mapped = np.asarray((target.T @ coupling.T).T.todense() if sp.issparse(coupling) else (target.T @ coupling.T).T)
    else:
        mapped = np.asarray(coupling @ np.asarray(target))
    return mapped / rows[:, None]


def transport_shift(coupling, source, target) -> np.ndarray:
    """Mean displacement of the transported mass: ``sum_ij G_ij (t_j - s_i) / sum_ij G_ij``.

    Where reference and query differ by a batch effect, this is the transport's
    estimate of the offset between them.  Unlike the difference of the two
    means it weighs each source cell by the mass it sends, so cell types that
    are more (or less) common in the source than in the target do not bias it
    (with semi-relaxed OT, ``reg_m``, rows need not sum to ``1 / n_source``).

    Parameters
    ----------
    coupling : ndarray of shape (n_source, n_target)
    source : ndarray of shape (n_source, n_features)
    target : ndarray of shape (n_target, n_features)

    Returns
    -------
    ndarray of shape (n_features,)

    Examples
    --------
    >>> import numpy as np
    >>> g = np.array([[0.5, 0.0], [0.0, 0.5]])
    >>> transport_shift(g, np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]]))
    array([2.])
    """
    total = float(coupling.sum())
    if not np.isfinite(total) or total <= 0:
        raise ValueError(f"coupling: expected a positive total mass, found {total}.")
    cols = np.asarray(coupling.sum(axis=0), dtype=np.float64).ravel()
    rows = np.asarray(coupling.sum(axis=1), dtype=np.float64).ravel()
    return (cols @ np.asarray(target, dtype=np.float64) - rows @ np.asarray(source, dtype=np.float64)) / total


# --------------------------------------------------------------------------- the step
#: ``reg_e=None`` sets the entropic weight to this multiple of the median (over source
#: cells) of the cost to their ``AUTO_REG_NEIGHBOR``-th nearest target cell: a local scale,
#: so the barycentric map keeps neighbourhoods apart instead of averaging whole clusters.
AUTO_REG_FRACTION = 0.2
AUTO_REG_NEIGHBOR = 10
#: A user's reg_e this many times above or below the automatic one gets a warning.
REG_E_WARN_RATIO = 50.0
#: Above this many source x target pairs the OT works in float32, in place.
LARGE_PROBLEM = 25_000_000
#: Source cells whose cost rows :func:`resolve_reg_e` reads (a random subset above this).
REG_E_MAX_ROWS = 2000
#: Query rows per block of :func:`cmot.infer.nearest_neighbors` (its default ``chunk_size``).
NEIGHBOR_CHUNK = 2048


def resolve_reg_e(reg_e, cost, *, max_rows: int = REG_E_MAX_ROWS, random_state=None) -> float:
    """The entropic weight to use: ``reg_e``, or a local cost scale when None.

    ``None`` gives ``AUTO_REG_FRACTION`` times the median, over source cells, of the
    cost to their ``AUTO_REG_NEIGHBOR``-th nearest target cell.

    Examples
    --------
    >>> import numpy as np
    >>> resolve_reg_e(5e3, np.ones((3, 3)))
    5000.0
    >>> resolve_reg_e(None, np.tile(np.arange(20.0), (4, 1)))  # 0.2 x the 10th smallest cost
    2.0
    """
    if reg_e is not None:
        return float(reg_e)
    kth = min(AUTO_REG_NEIGHBOR, cost.shape[1] - 1)
    rows = cost
    if cost.shape[0] > max_rows:  # a random subset of source cells is enough for a median
        pick = np.random.default_rng(random_state).choice(cost.shape[0], max_rows, replace=False)
        rows = cost[np.sort(pick)]
    local = np.partition(rows, kth, axis=1)[:, kth]
    med = float(np.median(local))
    if med <= 0:
        med = float(cost.mean()) or 1.0
    return AUTO_REG_FRACTION * med


def transport_dtype(n_source: int, n_target: int):
    """float32 above ``LARGE_PROBLEM`` source x target pairs, else float64."""
    return np.dtype(np.float32 if n_source * n_target > LARGE_PROBLEM else np.float64)


def transport_bytes(n_source: int, n_target: int, *, keep_cost: bool = False, barycentric: bool = True,
                    sparse_cost: bool = False) -> int:
    """Estimated peak bytes of the dense ``n_source x n_target`` arrays of one ``predict``.

    In the dtype of :func:`transport_dtype` (``s`` bytes per pair), the largest of:

    * the solve: the cost, and below ``LARGE_PROBLEM`` the solver's kernel, which
      becomes the coupling (``s`` or ``2 s`` per pair), plus the cost rows that
      :func:`resolve_reg_e` copies; with ``sparse_cost`` (a sparse shared modality
      without PCA) the sparse cross product and its dense float64 copy (``12 + 8``);
    * the barycentric map: the coupling, and above ``LARGE_PROBLEM`` its float64
      copy for the product with float64 coordinates (``s + 8``, when ``barycentric``);
    * the neighbour searches of Step C and of the distance detector: the coupling and
      four float64 ``2048 x n_source`` blocks (distances, their temporaries, the
      partition's indices);
    * with ``keep_cost`` (the isolation-forest detector): cost, coupling, their
      product and its scaled copy (``4 s``).

    Measured peaks (tracemalloc, 6000 x 5000 cells, float32): 17.5 bytes per pair,
    estimated 17.2.

    Examples
    --------
    >>> transport_bytes(20_000, 20_000) / (20_000 * 20_000)  # float32 in place: coupling + float64 copy
    12.0
    >>> transport_bytes(1000, 1000) / 1e6  # float64: coupling + neighbour search blocks
    40.0
    """
    pairs = n_source * n_target
    s = transport_dtype(n_source, n_target).itemsize
    in_place = s == 4 and not keep_cost
    rows = min(n_source, REG_E_MAX_ROWS)
    reg_rows = rows * n_target * s * (2 if n_source > REG_E_MAX_ROWS else 1)
    solve = pairs * (s if in_place else 2 * s) + reg_rows
    if sparse_cost:
        solve += pairs * (12 + 8)
    bary = pairs * (s + (8 if s == 4 and barycentric else 0))
    block = max(min(n_target, NEIGHBOR_CHUNK), min(n_source, REG_E_MAX_ROWS))
    neighbors = pairs * s + 4 * 8 * block * n_source
    detector = 4 * s * pairs if keep_cost else 0
    return int(max(solve, bary, neighbors, detector))


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (``MemAvailable`` of /proc/meminfo,
    else free physical pages), or None where the system does not say."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import os

        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_memory(need: int, what: str, advice: str) -> None:
    """Raise ``MemoryError`` when ``need`` bytes exceed :func:`available_memory` (no check
    where the system does not say); the message names ``what`` needs them and ``advice``.

    Examples
    --------
    >>> check_memory(1000, "nothing", "")  # a kilobyte: fits
    """
    avail = available_memory()
    if avail is None or need <= avail:
        return
    gib = 1024**3
    raise MemoryError(f"{what} needs about {need / gib:.1f} GiB, found {avail / gib:.1f} GiB of memory available. "
                      + advice)


def check_transport_memory(n_source: int, n_target: int, **kwargs) -> None:
    """Raise ``MemoryError`` at once when the transport's dense arrays
    (:func:`transport_bytes`) need more than the available memory (:func:`available_memory`).

    Examples
    --------
    >>> check_transport_memory(100, 50)  # about 1.7 MB: fits
    """
    check_memory(
        transport_bytes(n_source, n_target, **kwargs),
        f"target_y: the transport between {n_source} source cells and {n_target} target cells, with its dense "
        f"{n_source} x {n_target} arrays,",
        "Subsample the reference (source) cells, or predict the query (target) cells in chunks of fewer cells.",
    )


def _unsort_rows(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Rows of ``a`` moved in place so that row ``i`` goes to ``order[i]`` (one row of scratch)."""
    done = np.zeros(len(order), dtype=bool)
    for start in range(len(order)):
        if done[start] or order[start] == start:
            done[start] = True
            continue
        carry = a[start].copy()
        i = start
        while not done[i]:  # follow the cycle: the row at i belongs at order[i]
            done[i] = True
            j = order[i]
            nxt = a[j].copy() if not done[j] else None
            a[j] = carry
            carry, i = nxt, j
    return a


@dataclass
class TransportResult:
    """What :func:`solve_transport` found; arrays have source cells as rows, in source order."""

    coupling: np.ndarray
    reg_e: float
    shift: np.ndarray
    n_iter: int
    marginal_error: float
    cost: np.ndarray | None = None
    #: "dense", or "sparse" (a CSR coupling on a sparse support, :mod:`cmot.sparse_transport`)
    support: str = "dense"
    #: the James-Stein factor of ``shift`` when the robust correction estimated it on a sketch
    shift_factor: float | None = None


def solve_transport(source, target, labels, *, reg_e=None, reg_cl=1.0, reg_m="auto", max_iter=10,
                    max_inner_iter=1000, tol=1e-6, keep_cost=False, source_rep=None, target_rep=None,
                    random_state=None, verbose=False, reg_e_hint="") -> TransportResult:
    """Label-regularized OT between the rows of ``source`` and ``target`` (squared Euclidean cost).

    Source cells are sorted by label before the cost is built, so that the solver can
    work on it in place; the coupling (and the cost, with ``keep_cost``) come back in
    source order.  ``reg_e=None`` is :func:`resolve_reg_e`; a given ``reg_e`` far from
    it warns.  ``reg_m="auto"`` uses the entropic weight.  The shift
    (:func:`transport_shift`) is measured between ``source_rep`` and ``target_rep``
    (default: ``source`` and ``target``, which must then be dense).

    Examples
    --------
    >>> import numpy as np
    >>> src = np.array([[0.0], [10.0], [0.2]]); tgt = np.array([[10.5], [0.5], [0.1]])
    >>> res = solve_transport(src, tgt, [1, 0, 1], reg_m=None)  # rows in source order
    >>> np.round(res.coupling * 3, 2).tolist(), np.round(res.shift, 2).tolist()
    ([[0.0, 0.5, 0.5], [0.99, 0.0, 0.0], [0.0, 0.5, 0.5]], [0.3])
    """
    labels = np.asarray(labels)
    order = np.argsort(np.unique(labels, return_inverse=True)[1], kind="stable")
    ns, nt = len(order), target.shape[0]
    dtype = transport_dtype(ns, nt)
    with timed_step(f"cost matrix ({ns} x {nt}, {dtype.name})", verbose):
        cost = sqeuclidean_cost(source[order], target, dtype=dtype)
    reg = resolve_reg_e(reg_e, cost, random_state=random_state)
    if reg_e is not None:
        _warn_far_reg_e(reg, resolve_reg_e(None, cost, random_state=random_state), reg_e_hint)
    with timed_step(f"label-regularized OT (reg_e={reg:.4g}, reg_cl={reg_cl:g})", verbose):
        coupling, log = sinkhorn_lpl1(
            cost, labels[order], reg_e=reg, reg_cl=reg_cl, reg_m=reg if reg_m == "auto" else reg_m,
            max_iter=max_iter, max_inner_iter=max_inner_iter, tol=tol, return_log=True, dtype=dtype,
            overwrite_cost=not keep_cost and dtype == np.float32,
        )
    src = source if source_rep is None else source_rep
    # measured before the rows go back to source order: float32 sums depend on the order
    shift = transport_shift(coupling, src[order], target if target_rep is None else target_rep)
    kept = _unsort_rows(cost, order) if keep_cost else None
    del cost
    return TransportResult(coupling=_unsort_rows(coupling, order), reg_e=reg, shift=shift, n_iter=log["n_iter"],
                           marginal_error=log["err"], cost=kept)


def _warn_far_reg_e(reg, auto, hint):
    ratio = reg / auto if auto > 0 else 1.0
    if 1 / REG_E_WARN_RATIO <= ratio <= REG_E_WARN_RATIO:
        return
    warnings.warn(
        f"reg_e={reg:g} is {ratio:.3g} times the value reg_e=None would use on these data ({auto:.3g}){hint}: "
        + ("the transport will average over whole clusters." if ratio > 1
           else "the transport will be slow and nearly one-to-one."),
        UserWarning,
        stacklevel=5,
    )
