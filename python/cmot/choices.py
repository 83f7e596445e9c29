"""The automatic choices of ``n_pcs``, ``n_neighbors``, the linear map's weight, Step C's
neighbour metric and ``shrinkage``, by leave-one-out prediction of the source cells' X
from their nearest other source cells in the Step C space (and, for the linear map,
from a ridge regression fitted without them).

:func:`choose` makes every choice a fit asks for and returns them in a
:class:`Choices`; it writes to nothing else.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._utils import timed_step, to_dense
from .infer import LinearMap, exp_weights, leave_one_out_neighbors, metric_space, nearest_neighbors, weighted_average

__all__ = ["Choices", "choose", "fit_bytes", "LOO_MAX_CELLS", "select_n_neighbors", "select_shrinkage", "select_n_pcs",
           "reference_weight_scale", "fit_linear_map", "select_linear_weight", "neighbor_metric", "feature_sd",
           "AUTO_K_GRID", "AUTO_PCS_GRID", "AUTO_PCS_PROBE_K", "AUTO_SHRINKAGE_GRID", "SHRINKAGE_WARN",
           "AUTO_LINEAR_GRID", "AUTO_RIDGE_GRID", "AUTO_METRIC_GRID", "AUTO_WIDTH_GRID"]

#: Candidate numbers of neighbours for ``n_neighbors="auto"``.
AUTO_K_GRID = (5, 10, 20, 30, 50, 100, 200, 500)
#: Candidate numbers of principal components for ``n_pcs="auto"``, compared at
#: ``k = AUTO_PCS_PROBE_K`` neighbours (or the given ``n_neighbors``).
AUTO_PCS_GRID = (5, 10, 20, 30, 50)
AUTO_PCS_PROBE_K = 30
#: Candidate weights of the source mean for ``shrinkage="auto"``.
AUTO_SHRINKAGE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Candidate weights of the linear map in Step C's prediction (with ``shrinkage="auto"``).
AUTO_LINEAR_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: Candidate ridge penalties of the linear map, in units of the components' summed
#: squares over their number (the mean eigenvalue of the centred Gram matrix).
AUTO_RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Candidate weights ``a`` of the linear map's predicted X in Step C's neighbour metric
#: (:func:`neighbor_metric`; 0 is the Euclidean metric of the components).
AUTO_METRIC_GRID = (0.0, 0.5, 1.0, 2.0)
#: Candidate widths of Step C's weights ``exp(-d / (width * median k-th neighbour distance))``
#: with ``weight_scale="auto"`` (and ``shrinkage="auto"``).
AUTO_WIDTH_GRID = (0.25, 0.5, 1.0)
#: ``shrinkage="auto"`` at or above this warns that Y predicts X little better than the mean.
SHRINKAGE_WARN = 0.5
#: Source cells predicted by leave-one-out (a random subset above this).
LOO_MAX_CELLS = 2000


def fit_bytes(n_source: int, n_features: int) -> int:
    """Estimated peak bytes of the dense arrays of a fit: the leave-one-out neighbour
    search (four float64 blocks of ``min(n_source, LOO_MAX_CELLS) x n_source``
    distances, each at most :data:`cmot.infer.NEIGHBOR_BLOCK`) or the standardized
    variable features with the PCA's copies (three float64 ``n x n_features`` arrays,
    ``n`` at most :data:`cmot.representation.PCA_MAX_CELLS`: a larger reference is
    projected in chunks).

    Examples
    --------
    >>> round(fit_bytes(100_000, 4000) / 1024**3, 1)  # GiB, the 4000 dense features dominate
    4.5
    >>> round(fit_bytes(1_000_000, 200) / 1024**3, 1)  # the leave-one-out search's blocks dominate
    0.5
    """
    from .infer import NEIGHBOR_BLOCK
    from .representation import PCA_MAX_CELLS

    search = 32 * min(min(n_source, LOO_MAX_CELLS) * n_source, NEIGHBOR_BLOCK)
    return int(max(search, 24 * min(n_source, PCA_MAX_CELLS) * n_features))


def _loo_score(x_true, pred) -> float:
    """The leave-one-out score of every choice: the mean of the mean cell-wise and the
    mean feature-wise Pearson r (cell-wise alone for one feature; -1 when undefined)."""
    from .metrics import _rowwise_pearson

    cell = np.nanmean(_rowwise_pearson(x_true, pred))
    feat = np.nanmean(_rowwise_pearson(x_true.T, pred.T)) if x_true.shape[1] > 1 else cell
    return float(np.nan_to_num((cell + np.nan_to_num(feat)) / 2, nan=-1.0))


def select_n_neighbors(rep, x, *, grid=AUTO_K_GRID, weight_scale="auto", max_cells: int = LOO_MAX_CELLS,
                       random_state=None, return_loo: bool = False):
    """Choose ``k`` for Step C by leave-one-out prediction on the source.

    Each of at most ``max_cells`` source cells has its X predicted from its
    ``k`` nearest other source cells in the Step C space (``exp(-d)`` weights,
    as in :func:`cmot.infer.knn_weights`); the score is the mean of the mean
    cell-wise and mean feature-wise Pearson correlations.

    Returns
    -------
    best_k : int
    scores : dict
        ``{k: score}`` for every candidate tried.
    loo : tuple
        With ``return_loo=True``: ``(query, x_true, prediction)``, the left-out
        cells, their X and their prediction at ``best_k``, for
        :func:`select_shrinkage`.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(np.eye(3) * 10, 40, axis=0) + rng.normal(size=(120, 3))
    >>> x = y @ rng.normal(size=(3, 4))
    >>> k, scores = select_n_neighbors(y, x, grid=(5, 10, 200), random_state=0)
    >>> sorted(scores), k  # 200 is not below the 120 cells: left out
    ([5, 10], 5)
    """
    n = rep.shape[0]
    ks = sorted({min(int(k), n - 1) for k in grid if k < n} or {max(1, n - 1)})
    query, idx, dist = leave_one_out_neighbors(rep, ks[-1], max_cells=max_cells, random_state=random_state)
    x_true = to_dense(x[query])
    scores, best, best_pred = {}, None, None
    for k in ks:  # ascending: on a tie the smaller k stays best
        pred = weighted_average(x, idx[:, :k], exp_weights(dist[:, :k], weight_scale))
        scores[k] = _loo_score(x_true, pred)
        if best is None or scores[k] > scores[best]:
            best, best_pred = k, pred
    if return_loo:
        return best, scores, (query, x_true, best_pred)
    return best, scores


def select_shrinkage(rep, x, k: int, *, grid=AUTO_SHRINKAGE_GRID, weight_scale="auto",
                     max_cells: int = LOO_MAX_CELLS, random_state=None, loo=None):
    """Choose how far Step C's predictions are pulled toward the source mean of X.

    The prediction becomes ``(1 - s) * knn + s * mean``.  Each candidate ``s`` is
    scored by the mean cell-wise Pearson correlation of the leave-one-out
    prediction of at most ``max_cells`` source cells from their ``k`` nearest
    other source cells (as in :func:`select_n_neighbors`; the mean leaves the
    predicted cell out too).  The smallest ``s`` whose per-cell scores fall short
    of the best candidate's by no more than one standard error of that
    difference is chosen (a paired one-standard-error rule): the neighbours'
    prediction is kept unless the mean is clearly better, which happens when Y
    says little about X.  Feature-wise correlations do not depend on ``s``.

    ``loo``, the ``(query, x_true, prediction)`` of :func:`select_n_neighbors`
    with ``return_loo=True`` at this ``k``, saves computing the prediction again.

    Returns
    -------
    best_s : float
    scores : dict
        ``{s: score}`` for every candidate.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(300, 5))
    >>> x_informative = y @ rng.normal(size=(5, 8)) + 0.1 * rng.normal(size=(300, 8))
    >>> select_shrinkage(y, x_informative, 10, random_state=0)[0]
    0.0
    >>> x_noise = rng.normal(size=(300, 8)) + np.arange(8)  # unrelated to y
    >>> select_shrinkage(y, x_noise, 10, random_state=0)[0] > 0
    True
    """
    from .metrics import _rowwise_pearson

    n = rep.shape[0]
    if loo is None:
        k = max(1, min(int(k), n - 1))
        query, idx, dist = leave_one_out_neighbors(rep, k, max_cells=max_cells, random_state=random_state)
        x_true = to_dense(x[query])
        knn = weighted_average(x, idx, exp_weights(dist, weight_scale))
    else:
        query, x_true, knn = loo
    # each left-out cell is predicted without itself, so the mean leaves it out too
    total = np.asarray(x.sum(axis=0)).ravel()
    mean = np.subtract(total[None, :], x_true)
    mean /= n - 1
    per_cell = {}
    for s in sorted(float(v) for v in grid):
        r = _rowwise_pearson(x_true, (1 - s) * knn + s * mean)
        per_cell[s] = np.nan_to_num(r, nan=-1.0)
    scores = {s: float(r.mean()) for s, r in per_cell.items()}
    best = max(scores, key=lambda s: (scores[s], -s))

    def within_one_se(s):
        deficit = per_cell[best] - per_cell[s]
        se = deficit.std(ddof=1) / np.sqrt(deficit.size) if deficit.size > 1 else 0.0
        return deficit.mean() <= se

    return min(s for s in scores if within_one_se(s)), scores


def select_n_pcs(rep, x, k=None, *, grid=AUTO_PCS_GRID, weight_scale="auto", random_state=None):
    """The number of leading components of ``rep`` with the best leave-one-out score on
    the source at ``k`` neighbours (``AUTO_PCS_PROBE_K`` when ``k`` is None).

    Returns
    -------
    best_d : int
    scores : dict
        ``{n_pcs: score}`` of every candidate (capped at ``rep.shape[1]``).
    loo : tuple
        The leave-one-out prediction at ``best_d`` (see :func:`select_n_neighbors`).
    """
    cands = sorted({min(d, rep.shape[1]) for d in grid})
    probe = AUTO_PCS_PROBE_K if k is None else k
    scores, best_d, loo = {}, None, None
    for d in cands:  # ascending: on a tie the fewer components stay best
        best, sc, this = select_n_neighbors(
            rep[:, :d], x, grid=(probe,), weight_scale=weight_scale, random_state=random_state, return_loo=True,
        )
        scores[d] = sc[best]
        if best_d is None or scores[d] > scores[best_d]:  # keep the best candidate's prediction only
            best_d, loo = d, this
    return best_d, {int(d): float(s) for d, s in scores.items()}, loo


def fit_linear_map(rep, x, query, x_true, *, grid=AUTO_RIDGE_GRID):
    """Ridge regression of ``x`` on ``rep`` (intercept not penalized), its penalty chosen
    by the exact leave-one-out prediction of the ``query`` cells (whose X is ``x_true``).

    The penalty is ``f`` times the mean eigenvalue of the centred Gram matrix of
    ``rep``, ``f`` from ``grid``; each left-out prediction is
    ``x_i - e_i / (1 - h_ii)`` (``e_i`` the residual of the fit on every cell,
    ``h_ii`` its leverage), exact for ridge regression, so the map is fitted once per
    penalty on every source cell.  The score is :func:`select_n_neighbors`'.

    Returns
    -------
    linear : cmot.infer.LinearMap
        Fitted on every row of ``rep`` at the best penalty.
    loo : ndarray of shape (len(query), n_x_features)
        The leave-one-out predictions of the ``query`` cells at that penalty.
    scores : dict
        ``{f: score}`` of every candidate.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> z = rng.normal(size=(50, 2))
    >>> x = 1.0 + z @ np.array([[2.0, 0.0], [-1.0, 1.0]])
    >>> lin, loo, _ = fit_linear_map(z, x, np.arange(50), x, grid=(1e-9,))
    >>> np.round(lin.intercept, 3).tolist(), np.round(lin.coef, 3).tolist(), bool(np.allclose(loo, x))
    ([1.0, 1.0], [[2.0, 0.0], [-1.0, 1.0]], True)
    """
    rep = np.asarray(rep, dtype=np.float64)
    n, d = rep.shape
    z_mean = rep.mean(axis=0)
    zc = rep - z_mean
    x_mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
    evals, vecs = np.linalg.eigh(zc.T @ zc)
    evals = np.maximum(evals, 0.0)
    cross = vecs.T @ np.asarray(x.T @ zc, dtype=np.float64).T  # d x p: V' Zc' X (Zc' 1 = 0)
    proj = zc[query] @ vecs
    unit = evals.sum() / d if evals.sum() > 0 else 1.0
    scores, best, best_loo = {}, None, None
    for f in sorted(float(v) for v in grid):
        inv = 1.0 / (evals + f * unit)
        fitted = x_mean + proj @ (inv[:, None] * cross)
        leverage = 1.0 / n + (proj**2) @ inv
        loo = x_true - (x_true - fitted) / np.maximum(1.0 - leverage, 1e-12)[:, None]
        scores[f] = _loo_score(x_true, loo)
        if best is None or scores[f] > scores[best]:
            best, best_loo = f, loo
    coef = vecs @ (cross / (evals + best * unit)[:, None])
    return LinearMap(intercept=x_mean - z_mean @ coef, coef=coef, alpha=float(best * unit)), best_loo, scores


def select_linear_weight(x_true, knn, linear, *, grid=AUTO_LINEAR_GRID):
    """The weight ``l`` of the linear map in ``(1 - l) * knn + l * linear`` with the best
    leave-one-out score (:func:`select_n_neighbors`'; on a tie the smaller ``l``).

    ``knn`` and ``linear`` are the leave-one-out predictions of the cells whose X is
    ``x_true`` (:func:`select_n_neighbors` with ``return_loo=True``, :func:`fit_linear_map`).

    Returns
    -------
    best_l : float
    scores : dict
        ``{l: score}`` of every candidate.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0.0, 1.0, 2.0], [2.0, 1.0, 0.0], [1.0, 2.0, 0.0]])
    >>> select_linear_weight(truth, truth[::-1], truth, grid=(0.0, 0.5, 1.0))[0]
    1.0
    """
    x_true, knn, linear = (np.asarray(m, dtype=np.float64) for m in (x_true, knn, linear))
    # Pearson r of a blend from sums of products computed once (cells: axis 1, features: axis 0)
    stats = [_blend_stats(x_true, knn, linear, axis) for axis in ((1, 0) if x_true.shape[1] > 1 else (1,))]
    scores = {}
    for v in sorted(float(g) for g in grid):
        means = [np.nanmean(_blend_r(st, v)) for st in stats]
        cell, feat = means[0], (means[1] if len(means) > 1 else means[0])
        scores[v] = float(np.nan_to_num((cell + np.nan_to_num(feat)) / 2, nan=-1.0))
    return max(scores, key=lambda v: (scores[v], -v)), scores


def feature_sd(x) -> np.ndarray:
    """Standard deviation of each column of ``x`` (dense or sparse) over the cells, 1 where
    it is 0 (a constant feature).

    Examples
    --------
    >>> feature_sd(np.array([[0.0, 1.0], [2.0, 1.0]])).tolist()
    [1.0, 1.0]
    """
    if sp.issparse(x):
        mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
        sq = np.asarray(x.multiply(x).mean(axis=0), dtype=np.float64).ravel()
        sd = np.sqrt(np.maximum(sq - mean**2, 0.0))
    else:
        sd = np.asarray(x, dtype=np.float64).std(axis=0)
    sd[~(sd > 0)] = 1.0
    return sd


def neighbor_metric(rep, coef, x_sd, a: float):
    """Step C's neighbour metric on the components ``rep``: the ``d x d`` transform ``L`` such
    that Euclidean distances between rows of ``rep @ L`` are distances in the metric
    ``M = I + a^2 c^2 B B^T`` (scaled to trace ``d``: ``L L^T = M / (trace M / d)``); None when
    ``a`` is 0 or the map is zero (the Euclidean metric of the components).

    ``B`` is the linear map's coefficients (``coef``, components to X) divided by X's
    standard deviations ``x_sd``, so that ``rep @ B`` is the map's prediction of
    per-feature standardized X; ``c^2`` makes that prediction's summed squares over the
    (centred) cells as large as the components'.  The squared distance of two cells is then
    that of their components plus ``a^2`` times that of their predicted X: of two cells
    equally near, the one that the map predicts to have a more similar X is nearer.

    Examples
    --------
    >>> import numpy as np
    >>> rep = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    >>> L = neighbor_metric(rep, np.array([[1.0], [0.0]]), np.array([1.0]), 1.0)  # X follows the 1st component
    >>> np.round(L @ L.T, 3).tolist()  # the 1st component's distances count 3 times as much
    [[1.5, 0.0], [0.0, 0.5]]
    >>> neighbor_metric(rep, np.array([[1.0], [0.0]]), np.array([1.0]), 0.0) is None
    True
    """
    if not a > 0:
        return None
    rep = np.asarray(rep, dtype=np.float64)
    d = rep.shape[1]
    b = np.asarray(coef, dtype=np.float64) / np.asarray(x_sd, dtype=np.float64)[None, :]
    zc = rep - rep.mean(axis=0)
    gram = zc.T @ zc
    bbt = b @ b.T
    predicted = float(np.sum(gram * bbt))  # the summed squares of zc @ b over the cells
    if not predicted > 0:
        return None
    m = np.eye(d) + (a * a * np.trace(gram) / predicted) * bbt
    m /= np.trace(m) / d
    evals, vecs = np.linalg.eigh(m)
    return vecs * np.sqrt(np.maximum(evals, 0.0))


def _blend_stats(x, a, b, axis):
    """Centred sums of products along ``axis`` for the Pearson r of ``x`` with ``(1 - l) a + l b``."""
    xc, ac, bc = (m - m.mean(axis=axis, keepdims=True) for m in (x, a, b))
    sums = [np.einsum("ij,ij->i" if axis == 1 else "ij,ij->j", u, w)
            for u, w in ((xc, ac), (xc, bc), (ac, ac), (ac, bc), (bc, bc), (xc, xc))]
    return sums, np.ptp(x, axis=axis) == 0, np.ptp(a, axis=axis) == 0, np.ptp(b, axis=axis) == 0


def _blend_r(stats, v):
    """Pearson r of each row (or column) at blend weight ``v`` (NaN where either side is constant)."""
    (xa, xb, aa, ab, bb, xx), x_const, a_const, b_const = stats
    num = (1 - v) * xa + v * xb
    var = (1 - v) ** 2 * aa + 2 * v * (1 - v) * ab + v**2 * bb
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / np.sqrt(xx * var)
    const = x_const | ((v == 1 or a_const) & (v == 0 or b_const))
    r[const | ~(var > 0) | ~(xx > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def reference_weight_scale(rep, k: int, weight_scale="auto", *, width: float = 1.0, random_state=None) -> float:
    """Step C's distance unit (``weight_scale_``): a given ``weight_scale``, or with "auto"
    ``width`` times the median distance of (at most ``LOO_MAX_CELLS`` random) source cells
    to their ``k``-th nearest other source cell, fixed by the reference so that a target
    cell's weights do not depend on the other target cells.

    Examples
    --------
    >>> reference_weight_scale(np.arange(5.0)[:, None], 2)  # 2nd nearest other cell: 2, 1, 1, 1, 2
    1.0
    >>> reference_weight_scale(np.arange(5.0)[:, None], 2, 0.5)
    0.5
    """
    if weight_scale != "auto":
        return float(weight_scale)
    _, _, dist = leave_one_out_neighbors(rep, k, random_state=random_state)
    scale = float(np.median(dist[:, -1]))
    return width * (scale if scale > 0 else 1.0)


@dataclass
class Choices:
    """What :func:`choose` chose (scores are None for what was given, not chosen)."""

    n_pcs: int | None
    n_neighbors: int
    shrinkage: float
    n_pcs_scores: dict | None = None
    k_scores: dict | None = None
    shrinkage_scores: dict | None = None
    linear_weight: float = 0.0
    linear_weight_scores: dict | None = None
    linear_map: LinearMap | None = None
    metric: np.ndarray | None = None
    metric_weight: float = 0.0
    metric_scores: dict | None = None
    kernel_width: float = 1.0
    kernel_width_scores: dict | None = None


def choose(rep, x, *, n_pcs, n_neighbors, shrinkage, weight_scale="auto", random_state=None,
           verbose: bool = False) -> Choices:
    """Make the automatic choices a fit asks for ("auto" values), keep the given ones.

    Parameters
    ----------
    rep : ndarray of shape (n_source, n_dims)
        Source cells in the Step C space, every fitted component.
    x : ndarray or sparse matrix of shape (n_source, n_x_features)
        Their X.
    n_pcs : int, "auto" or None
        The components to use (an int is capped at ``rep.shape[1]``; None: ``rep`` has no PCA).
    n_neighbors : int or "auto"
        An int larger than the number of source cells is capped at it, with a warning.
    shrinkage : float or "auto"
        "auto" also chooses the weight of Step C's linear map (:func:`fit_linear_map`,
        :func:`select_linear_weight`; none without a PCA), then Step C's neighbour
        metric (:func:`neighbor_metric`, its weight ``a`` from :data:`AUTO_METRIC_GRID`,
        the linear map's weight chosen again in each candidate metric) and, with
        ``weight_scale="auto"``, the width of the weights (:data:`AUTO_WIDTH_GRID`), before
        the shrinkage, which is then chosen for the blended prediction.
    """
    n = rep.shape[0]
    k = None if n_neighbors == "auto" else int(n_neighbors)
    if k is not None and k > n:
        warnings.warn(
            f"n_neighbors: {k} is more than the {n} source cells; each target cell averages all {n} "
            f"(n_neighbors_ = {n}).", UserWarning, stacklevel=3,
        )
        k = n
    loo, n_pcs_scores, k_scores = None, None, None
    if n_pcs == "auto":
        with timed_step("choosing n_pcs and n_neighbors by leave-one-out on the source", verbose):
            d, n_pcs_scores, loo = select_n_pcs(rep, x, k, weight_scale=weight_scale, random_state=random_state)
            if k is None:
                k, k_scores, loo = select_n_neighbors(rep[:, :d], x, weight_scale=weight_scale,
                                                      random_state=random_state, return_loo=True)
    else:
        d = None if n_pcs is None else min(int(n_pcs), rep.shape[1])
    space = rep if d is None else rep[:, :d]
    if k is None:
        with timed_step("choosing n_neighbors by leave-one-out on the source", verbose):
            k, k_scores, loo = select_n_neighbors(space, x, weight_scale=weight_scale, random_state=random_state,
                                                  return_loo=True)
    lin = _choose_linear(space, x, k, loo, weight_scale, random_state, verbose) if (
        shrinkage == "auto" and d is not None) else None
    metric = None
    if lin is not None:
        metric, lin = _choose_metric(space, x, lin, k, weight_scale, random_state, verbose)
        loo = lin.loo
    shrink, shrinkage_scores = shrinkage, None
    if shrinkage == "auto":
        with timed_step("choosing shrinkage by leave-one-out on the source", verbose):
            shrink, shrinkage_scores = select_shrinkage(metric_space(space, metric), x, k, weight_scale=weight_scale,
                                                        random_state=random_state, loo=loo)
        # warn when much of the prediction is the average, or when the average alone scores as well
        if shrink >= SHRINKAGE_WARN or shrinkage_scores[shrink] <= shrinkage_scores[max(shrinkage_scores)]:
            _warn_shrinkage(shrink, shrinkage_scores, k)
    return Choices(n_pcs=None if d is None else int(d), n_neighbors=int(k), shrinkage=float(shrink),
                   n_pcs_scores=n_pcs_scores, k_scores=k_scores, shrinkage_scores=shrinkage_scores,
                   **({} if lin is None else dict(
                       linear_map=lin.linear_map, linear_weight=lin.weight, linear_weight_scores=lin.scores,
                       metric=metric, metric_weight=lin.metric_weight, metric_scores=lin.metric_scores,
                       kernel_width=lin.width, kernel_width_scores=lin.width_scores)))


@dataclass
class _Linear:
    """Step C's linear map, its weight and the leave-one-out predictions they were chosen on."""

    linear_map: LinearMap
    linear_loo: np.ndarray  # the map's exact leave-one-out prediction of the left-out cells
    weight: float
    scores: dict
    loo: tuple  # (query, x_true, blended prediction) at this weight
    metric_weight: float = 0.0
    metric_scores: dict | None = None
    width: float = 1.0
    width_scores: dict | None = None


def _choose_linear(space, x, k, loo, weight_scale, random_state, verbose) -> _Linear:
    """Step C's linear map and its weight, for the neighbours' prediction ``loo`` (None: at ``k``)."""
    with timed_step("choosing the weight of the linear map by leave-one-out on the source", verbose):
        if loo is None:
            _, _, loo = select_n_neighbors(space, x, grid=(k,), weight_scale=weight_scale,
                                           random_state=random_state, return_loo=True)
        query, x_true, _ = loo
        linear, linear_loo, _ = fit_linear_map(space, x, query, x_true)
    return _blend(linear, linear_loo, loo)


def _blend(linear, linear_loo, loo) -> _Linear:
    """The linear map's weight for the neighbours' leave-one-out prediction ``loo``."""
    query, x_true, knn = loo
    weight, scores = select_linear_weight(x_true, knn, linear_loo)
    return _Linear(linear, linear_loo, weight, scores, (query, x_true, (1 - weight) * knn + weight * linear_loo))


def _choose_metric(space, x, lin, k, weight_scale, random_state, verbose):
    """Step C's neighbour metric (:func:`neighbor_metric`) and the width of its weights: the
    weight ``a`` of :data:`AUTO_METRIC_GRID` whose leave-one-out score at ``k``, the linear
    map's weight chosen again in each metric, is best (on a tie the smaller ``a``), ``a > 0``
    only if it is also clearly better cell-wise than ``a = 0`` (:func:`_clearly_better`);
    then the width (:func:`_choose_width`) in the chosen metric.  ``k`` is not chosen
    again: its grid would cost as much as every other choice together (:data:`AUTO_K_GRID`:
    up to 500 neighbours of each left-out cell averaged), and choosing it again moved it
    on one benchmark split only (pancancer, 30 -> 50), the test r by less than 0.002.

    A left-out cell's X must not shape the metric its neighbours are searched in (the map
    fitted on every cell, noise included, would make the cells it predicts alike look near,
    and a metric would seem to help on data where Y says nothing about X): the left-out
    cells are split into :data:`METRIC_FOLDS` folds and each fold's neighbours are searched
    in the metric of the map refitted without that fold (:func:`_metric_neighbors`).  The
    metric kept (``metric``) is that of the map fitted on every cell, as Step C uses.

    Returns ``(metric, lin)`` of the chosen candidate (``metric`` None for ``a = 0``), with
    ``lin.metric_weight``, ``lin.metric_scores`` (``{a: score}``), ``lin.width`` and
    ``lin.width_scores`` set.
    """
    with timed_step("choosing the neighbour metric by leave-one-out on the source", verbose):
        x_sd = feature_sd(x)
        query, x_true = lin.loo[0], lin.loo[1]
        folds = _metric_folds(space, x, query, lin.linear_map.alpha, random_state)
        k_loo = max(1, min(int(k), space.shape[0] - 1))  # a left-out cell has n - 1 others
        best, scores = (0.0, None, lin, None, None), {0.0: lin.scores[lin.weight]}  # a = 0: lin as chosen
        for a in sorted(float(v) for v in AUTO_METRIC_GRID if v > 0):
            metric = neighbor_metric(space, lin.linear_map.coef, x_sd, a)
            if metric is None:
                continue
            idx, dist = _metric_neighbors(space, query, folds, x_sd, a, k_loo)
            lin_a = _blend(lin.linear_map, lin.linear_loo, (
                query, x_true, weighted_average(x, idx, exp_weights(dist, weight_scale))))
            scores[a] = lin_a.scores[lin_a.weight]
            if scores[a] > scores[best[0]] and _clearly_better(x_true, lin_a, lin):
                best = (a, metric, lin_a, idx, dist)
    a, metric, lin_a, idx, dist = best
    lin_a.metric_weight, lin_a.metric_scores = a, scores
    if weight_scale == "auto":
        if idx is None:  # the Euclidean neighbours, searched only when a = 0 is kept
            idx, dist = _metric_neighbors(space, query, folds, x_sd, 0.0, k_loo)
        lin_a = _choose_width(x, idx, dist, lin_a, verbose)
    return metric, lin_a


#: Folds of the left-out cells in the choice of Step C's neighbour metric (:func:`_choose_metric`).
METRIC_FOLDS = 5


def _metric_folds(rep, x, query, alpha, random_state):
    """Each left-out cell's fold (random, :data:`METRIC_FOLDS` of them) and each fold's ridge
    coefficients (penalty ``alpha``) fitted on every cell but the fold's: ``(fold_of, coefs)``."""
    rep = np.asarray(rep, dtype=np.float64)
    fold_of = np.random.default_rng(random_state).permutation(len(query)) % METRIC_FOLDS
    coefs = []
    for f in range(METRIC_FOLDS):
        keep = np.ones(rep.shape[0], dtype=bool)
        keep[query[fold_of == f]] = False
        z = rep[keep]
        zc = z - z.mean(axis=0)
        cross = np.asarray((x[keep].T @ zc).T, dtype=np.float64)  # Zc' X (Zc' 1 = 0)
        coefs.append(np.linalg.solve(zc.T @ zc + alpha * np.eye(rep.shape[1]), cross))
    return fold_of, coefs


def _metric_neighbors(space, query, folds, x_sd, a, k_max):
    """The ``k_max`` nearest other cells of each left-out cell ``query``, searched in the metric
    of weight ``a`` of its fold's map (:func:`_metric_folds`; Euclidean for ``a = 0``)."""
    if a == 0:
        return leave_one_out_neighbors(space, k_max, query=query)[1:]
    fold_of, coefs = folds
    idx = np.empty((len(query), k_max), dtype=np.intp)
    dist = np.empty((len(query), k_max))
    for f, coef in enumerate(coefs):
        rows = np.flatnonzero(fold_of == f)
        moved = metric_space(space, neighbor_metric(space, coef, x_sd, a))
        _, idx[rows], dist[rows] = leave_one_out_neighbors(moved, k_max, query=query[rows])
    return idx, dist


def _clearly_better(x_true, candidate, default) -> bool:
    """Whether the ``candidate``'s blended leave-one-out prediction beats the ``default``'s
    clearly cell-wise: the mean per-cell gain in Pearson r is above its standard error (a
    paired one-standard-error rule, as :func:`select_shrinkage`'s).  A metric or a width
    is taken only then: on a few hundred cells, or where Y says nothing about X, the
    combined score moves by more than such choices are worth."""
    from .metrics import _rowwise_pearson

    gain = (np.nan_to_num(_rowwise_pearson(x_true, candidate.loo[2]), nan=-1.0)
            - np.nan_to_num(_rowwise_pearson(x_true, default.loo[2]), nan=-1.0))
    se = gain.std(ddof=1) / np.sqrt(gain.size) if gain.size > 1 else 0.0
    return bool(gain.mean() > se)


def _choose_width(x, idx, dist, lin, verbose) -> _Linear:
    """The width of Step C's weights (:data:`AUTO_WIDTH_GRID`, in units of the median
    distance of the left-out cells to their ``k``-th nearest other cell, ``idx`` and ``dist``
    their ``k`` nearest: the distance unit of ``weight_scale="auto"``) with the best
    leave-one-out score, the linear map's weight chosen again for each; a narrower width
    than 1 only if it is also clearly better cell-wise (:func:`_clearly_better`): narrower
    weights average fewer cells, and on small references a gain in feature-wise r alone
    did not carry over to their queries (pancancer, 164 cells;
    ``benchmarks/results/stepc_research.md``).  Returns ``lin`` of the chosen width, with
    ``width`` and ``width_scores`` (``{width: score}``) set."""
    with timed_step("choosing the width of the neighbours' weights by leave-one-out on the source", verbose):
        unit = float(np.median(dist[:, -1]))
        unit = unit if unit > 0 else 1.0
        query, x_true = lin.loo[0], lin.loo[1]
        scores, best = {}, None
        for width in sorted((float(v) for v in AUTO_WIDTH_GRID), reverse=True):
            # width 1 is the unit of weight_scale="auto": lin's own prediction
            this = lin if width == 1.0 else _blend(lin.linear_map, lin.linear_loo, (
                query, x_true, weighted_average(x, idx, exp_weights(dist, width * unit))))
            scores[width] = this.scores[this.weight]
            if best is None or (scores[width] > scores[best[0]] and _clearly_better(x_true, this, lin)):
                best = (width, this)
    width, chosen = best
    chosen.metric_weight, chosen.metric_scores = lin.metric_weight, lin.metric_scores
    chosen.width, chosen.width_scores = width, dict(sorted(scores.items()))
    return chosen


def _warn_shrinkage(shrink, scores, k):
    mean_alone = scores[max(scores)]
    if shrink > 0:
        what = (f"{scores[shrink]:.3f} with {shrink:g} of the average), so predictions are pulled "
                f"{shrink:.0%} of the way to the average profile: they will differ little between cells "
                "(shrinkage=0 keeps Step C's prediction).")
    else:
        what = (f"{mean_alone:.3f} for the average alone), so the predictions are no better than the average "
                "profile: treat the differences between cells with caution.")
    warnings.warn(
        f"shrinkage: the shared modality predicts X little better than the source average "
        f"(leave-one-out mean cell-wise r {scores[0.0]:.3f} from the {k} nearest source cells, " + what,
        UserWarning,
        stacklevel=4,
    )
