"""The :class:`CMOT` estimator: validates, stores parameters and fitted
attributes, and calls the step functions of :mod:`cmot.align`,
:mod:`cmot.transport` and :mod:`cmot.infer` in order."""

from __future__ import annotations

import logging
import time
import warnings
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator

from . import __version__
from ._params import PARAMETER_CONSTRAINTS, check_params
from ._validation import Matrix, as_matrix, check_labels
from .align import correspondence_matrix, manifold_align, match_aligned, match_matrix
from .infer import exp_weights, knn_weights, nearest_neighbors, variable_features, weighted_average
from .transport import (
    barycentric_map,
    make_pca,
    signal_components,
    transport_shift,
    neighbor_distance_scale,
    poorly_mapped_cells,
    sinkhorn_lpl1,
    sqeuclidean_cost,
    unmatched_cells,
)

logger = logging.getLogger("cmot")

__all__ = ["CMOT", "PAPER_MODE", "PoorlyMappedWarning", "ward_labels", "resolve_reg_e", "select_n_neighbors",
           "select_shrinkage"]

#: ``reg_e=None`` sets the entropic weight to this multiple of the median (over source
#: cells) of the cost to their ``AUTO_REG_NEIGHBOR``-th nearest target cell: a local scale,
#: so the barycentric map keeps neighbourhoods apart instead of averaging whole clusters.
AUTO_REG_FRACTION = 0.2
AUTO_REG_NEIGHBOR = 10
#: Candidate numbers of neighbours for ``n_neighbors="auto"``.
AUTO_K_GRID = (5, 10, 20, 30, 50, 100, 200, 500)
#: Candidate numbers of principal components for ``n_pcs="auto"``, compared at
#: ``k = AUTO_PCS_PROBE_K`` neighbours (or the given ``n_neighbors``).
AUTO_PCS_GRID = (5, 10, 20, 30, 50)
AUTO_PCS_PROBE_K = 30
#: Candidate weights of the source mean for ``shrinkage="auto"``.
AUTO_SHRINKAGE_GRID = (0.0, 0.25, 0.5, 0.75, 1.0)
#: ``shrinkage="auto"`` at or above this warns that Y predicts X little better than the mean.
SHRINKAGE_WARN = 0.5
#: A user's reg_e this many times above or below the automatic one gets a warning.
REG_E_WARN_RATIO = 50.0
#: ``scale=True`` clips standardized values to +-SCALE_CLIP (Seurat's ScaleData default).
SCALE_CLIP = 10.0
#: The parameters that make CMOT follow the paper exactly (``CMOT(**PAPER_MODE)``): the OT
#: cost on every shared feature, neighbours on the raw variable features, balanced OT,
#: the barycentric map, ``exp(-distance)`` weights, the nearest aligned cell, no shrinkage.
PAPER_MODE = dict(match_neighbors=1, scale=False, n_pcs=None, barycentric_weight=1.0, shrinkage=0.0, reg_m=None,
                  weight_scale=1.0)
#: Above this many source x target pairs the OT works in float32, in place.
LARGE_PROBLEM = 25_000_000


class PoorlyMappedWarning(UserWarning):
    """Some target cells are mapped unlike the rest (see ``CMOT.outliers_``)."""


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
    from sklearn.decomposition import TruncatedSVD

    n, p = y.shape
    if n_clusters == 1:
        return np.zeros(n, dtype=np.int64)
    if p > n_dims:
        if sp.issparse(y) or n * p >= 2e7:
            emb = TruncatedSVD(n_components=min(n_dims, n - 1), random_state=random_state).fit_transform(y)
        else:
            centered = y - y.mean(axis=0)
            u, s, _ = np.linalg.svd(centered, full_matrices=False)
            emb = u[:, :n_dims] * s[:n_dims]
    else:
        emb = y.toarray() if sp.issparse(y) else np.asarray(y)
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


def resolve_reg_e(reg_e, cost, *, max_rows: int = 2000, random_state=None) -> float:
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


def _loo_neighbors(rep, k_max: int, *, max_cells: int = 2000, random_state=None):
    """Leave-one-out neighbours on the source: at most ``max_cells`` random source cells
    (``query``, sorted) and their ``k_max`` nearest *other* source cells (indices, distances)."""
    n = rep.shape[0]
    rng = np.random.default_rng(random_state)
    query = np.sort(rng.choice(n, size=min(n, max_cells), replace=False))
    idx, dist = nearest_neighbors(rep[query], rep, k_max + 1)
    # drop each cell itself (or one exact duplicate standing for it)
    self_pos = np.argmax(idx == query[:, None], axis=1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(len(query)), self_pos] = False
    return query, idx[keep].reshape(len(query), -1), dist[keep].reshape(len(query), -1)


def _rows(x, rows):
    out = x[rows]
    return out.toarray() if sp.issparse(out) else np.asarray(out)


def select_n_neighbors(rep, x, *, grid=AUTO_K_GRID, weight_scale="auto", max_cells: int = 2000, random_state=None,
                       return_loo: bool = False):
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
    """
    from .metrics import _rowwise_pearson

    n = rep.shape[0]
    ks = sorted({min(int(k), n - 1) for k in grid if k < n} or {max(1, n - 1)})
    query, idx, dist = _loo_neighbors(rep, ks[-1], max_cells=max_cells, random_state=random_state)
    x_true = _rows(x, query)
    scores, best, best_pred = {}, None, None
    for k in ks:  # ascending: on a tie the smaller k stays best
        pred = weighted_average(x, idx[:, :k], exp_weights(dist[:, :k], weight_scale))
        cell = np.nanmean(_rowwise_pearson(x_true, pred))
        feat = np.nanmean(_rowwise_pearson(x_true.T, pred.T)) if x_true.shape[1] > 1 else cell
        scores[k] = float(np.nan_to_num((cell + np.nan_to_num(feat)) / 2, nan=-1.0))
        if best is None or scores[k] > scores[best]:
            best, best_pred = k, pred
    if return_loo:
        return best, scores, (query, x_true, best_pred)
    return best, scores


def select_shrinkage(rep, x, k: int, *, grid=AUTO_SHRINKAGE_GRID, weight_scale="auto", max_cells: int = 2000,
                     random_state=None, loo=None):
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
        query, idx, dist = _loo_neighbors(rep, k, max_cells=max_cells, random_state=random_state)
        x_true = _rows(x, query)
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


@contextmanager
def _step(name, verbose):
    t0 = time.perf_counter()
    if verbose:
        logger.info("cmot: %s ...", name)
    yield
    if verbose:
        logger.info("cmot: %s done in %.2f s", name, time.perf_counter() - t0)


class CMOT(BaseEstimator):
    """Cross-Modality Optimal Transport: infer modality X of target cells measured in Y only.

    Source cells are measured in both X (the modality to infer) and Y (the shared
    modality); target cells in Y only.  ``fit`` learns from the source; ``predict``
    transports the source onto the target in Y (entropic OT with label
    regularization), moves the source cells into target space (by the
    transport's mean displacement and, in part, the paper's per-cell
    barycentric map), flags poorly mapped target cells, and averages the X of
    each target cell's nearest transported source cells.

    Parameters
    ----------
    n_components : int, default=10
        Dimension ``d`` of the common space of manifold alignment (Step A).
    align_neighbors : int, default=5
        ``K``, neighbours in the kNN graphs of manifold alignment (Step A).
    mu : float, default=0.5
        Alignment trade-off between within-modality geometry and correspondences.
    match_neighbors : int, default=10
        After alignment, a source Y cell without a known partner takes the mean
        X profile of its ``match_neighbors`` nearest X cells in the aligned
        space.  1 is the paper's nearest aligned cell, whose profile carries
        the whole error of an imperfect alignment (on a549 with half the pairs
        known, 1 scores mean cell-wise r 0.508, 10 scores 0.526).
    reg_e : float or None, default=None
        Entropic weight of the OT, on the scale of the squared Euclidean cost
        (the paper uses 5e3 for pancancer and 1e2 for a549 and PBMC, on raw
        features with ``n_pcs=None``).  None sets it to 0.2 times the median, over
        source cells, of the cost to their 10th nearest target cell: a local scale
        that works across data sets and units.
    reg_cl : float, default=1.0
        Weight of the group-lasso label regularization (``eta``).
    reg_m : float, "auto" or None, default="auto"
        A number relaxes the source marginal by a KL penalty of that weight
        (semi-relaxed OT): every target cell still receives its share of mass,
        but cell types more abundant in the source than in the target need not be
        forced onto other target cells, as happens when reference and query come
        from different samples.  "auto" uses ``reg_m = reg_e_``.  None keeps both
        marginals exactly (balanced OT, as in the paper).
    n_clusters : int, default=2
        Ward clusters of source Y used as labels when ``fit`` gets no labels.
    n_neighbors : int or "auto", default="auto"
        ``k`` transported source cells averaged for each target cell (Step C).
        "auto" picks ``k`` from 5 to 500 by leave-one-out prediction of the source
        cells' X from their Y (fitted attribute ``n_neighbors_``).
    n_features : int, default=4000
        Most variable shared features (by variance in the source) used for Steps
        B and C.
    scale : bool, default=True
        Standardize each of those features by its mean and standard deviation in
        the source (values clipped to +-10), for source and target alike, before
        the PCA, as Seurat's ``ScaleData`` does: lowly expressed markers then
        count as much as abundant genes.  False uses the values as given (the
        paper).
    n_pcs : int, "auto" or None, default="auto"
        Principal components (fitted on the source) of those features in which
        the OT cost and the Step C neighbours are computed.  "auto" picks 5, 10,
        20, 30 or 50 by the leave-one-out prediction on the source that chooses
        ``k`` (at ``k=30``, or the given ``n_neighbors``; fitted attribute
        ``n_pcs_``): a few cell lines need a handful of components, blood cell
        types 20 to 30.
        None follows the paper exactly: the cost on every shared feature and the
        neighbours on the ``n_features`` raw features.  PCA removes much of the technical noise of
        single-cell data, so neighbours are more meaningful; it is the main
        deliberate departure from the reference code (see the README).
    barycentric_weight : float in [0, 1], default=0.25
        How the coupling moves the source cells into target space before Step C:
        source cell ``i`` goes to ``(1 - w) * (y_i + shift_) + w * bary_i``.
        ``bary_i``, the paper's barycentric map (``w=1``), is the
        coupling-weighted mean of the target cells it is sent to; ``shift_``
        (:func:`cmot.transport.transport_shift`) is the transport's mean
        displacement, the offset between reference and query estimated from
        matched cells, so that unlike the difference of means it is not biased
        by cell types more common in one than in the other.  Entropic couplings
        spread each cell over many targets, so the barycentric map pulls the
        source cells of a cluster towards its centre: that smooths noise when
        reference and query come from one sample, but across samples it loses
        the differences within clusters that the shift keeps.
    shrinkage : float in [0, 1] or "auto", default="auto"
        Weight ``s`` of the source mean of X in each prediction:
        ``(1 - s) * knn + s * mean``.  When the shared modality says little about
        X (sci-CAR a549: RNA from sparse ATAC), the neighbours' average is mostly
        noise and the mean profile predicts better.  "auto" picks 0, 0.25, 0.5,
        0.75 or 1 by the leave-one-out prediction on the source
        (:func:`select_shrinkage`, one-standard-error rule, so 0 unless the mean
        clearly helps; fitted attribute ``shrinkage_``) and warns at 0.5 or more.
        It does not change feature-wise correlations or AUROCs.  0 is the paper.
    weight_scale : float or "auto", default="auto"
        Step C weights are ``exp(-distance / weight_scale)``, normalized to sum to
        one.  1.0 is the paper's ``exp(-distance)``, which depends on the units of
        the data (large distances put all the weight on the nearest cell);
        "auto" uses the median distance of target cells to their k-th neighbour.
    max_iter : int, default=10
        Majorization steps of the label-regularized OT.
    max_inner_iter : int, default=1000
        Largest number of Sinkhorn iterations per majorization step.
    tol : float, default=1e-6
        Sinkhorn stops when the l2 error of the target marginal is below ``tol``
        times its norm; a final error above ``1e-3`` raises an
        ``OTConvergenceWarning``.
    outlier_threshold : float, default=3.5
        Robust z-score above which a target cell is reported as poorly mapped;
        ``np.inf`` disables the report.
    outlier_method : {"distance", "isolation_forest"}, default="distance"
        "isolation_forest" is the paper's detector: IsolationForest on the PCA of
        coupling x cost, here with a robust z-score cut instead of a fixed
        contamination.  It only sees the target, so it misses a new cell type
        that makes up a large share of it, and it flags cells of known types.
        "distance" (default) scores each target cell by its distance to its 10th
        nearest source cell, in a PCA of the (standardized) variable features
        fitted on source and target together, against the same distance among
        source cells: calibrated on the source, it can flag a whole unseen
        population and rarely flags cells of known types.  Only the components
        above the noise count (Marchenko-Pastur edge, fitted attribute
        ``outlier_n_components_``); the others would drown the differences.
    random_state : int or None, default=None
        Seed for the alignment, clustering, PCA and IsolationForest.
    verbose : bool, default=False
        Log each step and its time to the ``cmot`` logger (INFO level).

    Attributes
    ----------
    source_y_ : ndarray or sparse matrix of shape (n_source, n_y_features)
        Source cells in the shared modality.
    source_x_ : ndarray or sparse matrix of shape (n_source, n_x_features)
        X profile of each source Y cell (its own, or its aligned partner's).
    labels_ : ndarray of shape (n_source,)
        Labels of the source Y cells used by the label regularizer.
    features_ : ndarray of int
        Columns of Y used for Steps B and C.
    scale_mean_, scale_sd_ : ndarray of shape (len(features_),) or None
        Source mean and standard deviation of those columns (``scale=True``).
    pca_ : sklearn.decomposition.PCA or None
        PCA of those columns (None when ``n_pcs=None``); its first ``n_pcs_``
        components are used.
    n_pcs_ : int or None
        The number of principal components used.
    n_pcs_scores_ : dict or None
        With ``n_pcs="auto"``: ``{n_pcs: leave-one-out score}`` of each
        candidate.
    n_neighbors_ : int
        The ``k`` used in Step C.
    k_scores_ : dict or None
        Leave-one-out score of each candidate ``k`` (``n_neighbors="auto"``).
    shrinkage_ : float
        The weight of the source mean in each prediction (see ``shrinkage``).
    shrinkage_scores_ : dict or None
        With ``shrinkage="auto"``: ``{s: leave-one-out mean cell-wise r}``.
    x_mean_ : ndarray of shape (n_x_features,)
        Source mean of X (of ``source_x_``).
    feature_names_y_, feature_names_x_ : ndarray of str or None
        Feature names seen in ``fit``.
    aligned_index_ : ndarray of int or None
        For partly paired sources: each Y cell's known partner, or its nearest
        X cell in the aligned space.
    match_matrix_ : sparse matrix of shape (n_y, n_x) or None
        For partly paired sources: ``source_x_ = match_matrix_ @ source_x``
        (see ``match_neighbors``).
    embedding_x_, embedding_y_ : ndarray or None
        Aligned embeddings (partly paired sources only).
    outliers_ : ndarray of bool, shape (n_target,)
        Set by ``predict``: poorly mapped target cells.
    outlier_scores_ : ndarray of shape (n_target,)
        Set by ``predict``: robust z-scores of poor mapping (higher is worse).
    outlier_n_components_ : int
        Set by ``predict`` (``outlier_method="distance"``): principal components
        of the joint PCA used by the poorly-mapped test.
    params_ : dict
        The validated parameters ``fit`` used.
    reg_e_ : float
        Set by ``predict``: the entropic weight used.
    shift_ : ndarray of shape (n_components_space,)
        Set by ``predict``: the transport's mean displacement of the source
        cells in the Step B/C space.
    n_iter_ : int
        Set by ``predict``: Sinkhorn iterations run.
    marginal_error_ : float
        Set by ``predict``: final relative error of the target marginal.

    Examples
    --------
    >>> import numpy as np
    >>> from cmot import CMOT
    >>> from cmot.datasets import make_multimodal
    >>> d = make_multimodal(n_source=150, n_target=60, random_state=0)
    >>> model = CMOT(n_neighbors=10, n_features=20, random_state=0)
    >>> x_hat = model.fit(d.source_x, d.source_y).predict(d.target_y)
    >>> x_hat.shape
    (60, 30)
    """

    def __init__(
        self,
        *,
        n_components: int = 10,
        align_neighbors: int = 5,
        mu: float = 0.5,
        match_neighbors: int = 10,
        reg_e: float | None = None,
        reg_cl: float = 1.0,
        reg_m: float | str | None = "auto",
        n_clusters: int = 2,
        n_neighbors: int | str = "auto",
        n_features: int = 4000,
        scale: bool = True,
        n_pcs: int | str | None = "auto",
        barycentric_weight: float = 0.25,
        shrinkage: float | str = "auto",
        weight_scale: float | str = "auto",
        max_iter: int = 10,
        max_inner_iter: int = 1000,
        tol: float = 1e-6,
        outlier_threshold: float = 3.5,
        outlier_method: str = "distance",
        random_state=None,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.align_neighbors = align_neighbors
        self.mu = mu
        self.match_neighbors = match_neighbors
        self.reg_e = reg_e
        self.reg_cl = reg_cl
        self.reg_m = reg_m
        self.n_clusters = n_clusters
        self.n_neighbors = n_neighbors
        self.n_features = n_features
        self.scale = scale
        self.n_pcs = n_pcs
        self.barycentric_weight = barycentric_weight
        self.shrinkage = shrinkage
        self.weight_scale = weight_scale
        self.max_iter = max_iter
        self.max_inner_iter = max_inner_iter
        self.tol = tol
        self.outlier_threshold = outlier_threshold
        self.outlier_method = outlier_method
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ params
    #: Each parameter and what it accepts (declared once, in :mod:`cmot._params`).
    _parameter_constraints = PARAMETER_CONSTRAINTS

    def set_params(self, **params):
        """Set parameters (scikit-learn convention); unknown names raise ``ValueError``."""
        for key in params:
            if key not in self._parameter_constraints:
                raise ValueError(
                    f"{key}: unknown parameter; valid parameters are {', '.join(self._parameter_constraints)}."
                )
        return super().set_params(**params)

    def _check_params(self) -> dict:
        """The parameters, validated and normalized by :func:`cmot.check_params`."""
        return check_params(self.get_params())

    # --------------------------------------------------------------------- fit
    def fit(self, source_x, source_y, *, correspondence=None, labels=None):
        """Learn from source cells measured in X and Y.

        Parameters
        ----------
        source_x : array-like, sparse matrix, DataFrame or AnnData, shape (n_x, n_x_features)
            Source cells in the modality to infer, cells as rows.
        source_y : array-like, sparse matrix, DataFrame or AnnData, shape (n_y, n_y_features)
            Source cells in the shared modality.
        correspondence : array-like or sparse matrix, optional
            Known X-Y pairs when the source is only partly paired: a binary
            ``(n_x, n_y)`` matrix or an ``(n_pairs, 2)`` array of ``(x_index, y_index)``.
            None (default) means fully paired: row i of X and of Y is the same
            cell, and alignment (Step A) is skipped.
        labels : array-like of shape (n_y,), optional
            Prior labels of the source Y cells (cell types, treatment times).
            None means Ward clusters (``n_clusters``) of source Y.

        Returns
        -------
        self : CMOT
        """
        p = self.params_ = self._check_params()
        xm = as_matrix(source_x, "source_x")
        ym = as_matrix(source_y, "source_y")
        n_x, n_y = xm.shape[0], ym.shape[0]
        if correspondence is None and n_x != n_y:
            raise ValueError(
                f"source_x and source_y: expected the same number of cells when fully paired "
                f"(correspondence=None), found {n_x} X cells and {n_y} Y cells. Pass correspondence= "
                "to align partly paired modalities."
            )
        if correspondence is None and xm.cell_names is not None and ym.cell_names is not None:
            if not np.array_equal(xm.cell_names, ym.cell_names):
                mism = int(np.sum(xm.cell_names != ym.cell_names))
                raise ValueError(
                    f"source_x and source_y: expected the same cells in the same order when fully paired, "
                    f"found {mism} cell names that differ (first: {xm.cell_names[xm.cell_names != ym.cell_names][0]!r})."
                )
        if n_y < 2:
            raise ValueError(f"source_y: expected at least 2 source cells, found {n_y}.")
        if p["n_clusters"] > n_y and labels is None:
            raise ValueError(f"n_clusters: expected at most the number of source cells ({n_y}), found {p['n_clusters']}.")

        self.aligned_index_ = self.match_matrix_ = self.embedding_x_ = self.embedding_y_ = None
        if correspondence is not None:
            w = correspondence_matrix(correspondence, n_x, n_y)
            if p["align_neighbors"] >= min(n_x, n_y):
                raise ValueError(
                    f"align_neighbors: expected fewer than the number of cells in each modality "
                    f"({min(n_x, n_y)}), found {p['align_neighbors']}."
                )
            if p["n_components"] >= n_x + n_y - 2:
                raise ValueError(
                    f"n_components: expected fewer than {n_x + n_y - 2} (source X + Y cells - 2), found {p['n_components']}."
                )
            with _step("manifold alignment (Step A)", self.verbose):
                ex, ey = manifold_align(
                    xm.data,
                    ym.data,
                    w,
                    n_components=p["n_components"],
                    n_neighbors=p["align_neighbors"],
                    mu=p["mu"],
                    random_state=self.random_state,
                )
                idx = match_aligned(ex, ey, w)
                self.match_matrix_ = match_matrix(ex, ey, w, p["match_neighbors"])
            self.embedding_x_, self.embedding_y_, self.aligned_index_ = ex, ey, idx
            if p["match_neighbors"] == 1:  # the paper: the partner's own profile
                source_x_rows = xm.data[idx]
            else:
                source_x_rows = self.match_matrix_ @ xm.data
                if sp.issparse(source_x_rows):
                    source_x_rows = sp.csr_matrix(source_x_rows)
        else:
            source_x_rows = xm.data

        self.features_ = variable_features(ym.data, p["n_features"])
        self.pca_ = self.scale_mean_ = self.scale_sd_ = None
        sel = _dense(ym.data[:, self.features_])
        if p["scale"]:
            self.scale_mean_ = sel.mean(axis=0)
            sd = sel.std(axis=0)
            sd[sd == 0] = 1.0
            self.scale_sd_ = sd
            sel = self._standardize(sel)
        self.n_pcs_scores_ = self.k_scores_ = None
        k = None if p["n_neighbors"] == "auto" else p["n_neighbors"]
        loo = None  # the leave-one-out prediction at k, when choosing k or n_pcs made one
        if p["n_pcs"] is not None:
            cap = min(sel.shape[0] - 1, sel.shape[1])
            wanted = max(AUTO_PCS_GRID) if p["n_pcs"] == "auto" else p["n_pcs"]
            n_pcs = min(wanted, cap)
            with _step(f"PCA of {sel.shape[1]} variable Y features to {n_pcs} components", self.verbose):
                self.pca_ = make_pca(n_pcs, sel.shape, self.random_state).fit(sel)
                rep = self.pca_.transform(sel)
            if p["n_pcs"] == "auto":
                with _step("choosing n_pcs and n_neighbors by leave-one-out on the source", self.verbose):
                    n_pcs, k, loo = self._select_pcs(rep, source_x_rows, k)
            self.source_rep_ = rep[:, :n_pcs]
            self.n_pcs_ = int(n_pcs)
        else:
            self.source_rep_ = sel
            self.n_pcs_ = None

        if labels is None:
            with _step(f"Ward clustering of source Y into {p['n_clusters']} labels", self.verbose):
                space = self.source_rep_ if self.pca_ is not None else ym.data
                lab = ward_labels(space, p["n_clusters"], random_state=self.random_state)
        else:
            lab = check_labels(labels, n_y)

        if k is None:
            with _step("choosing n_neighbors by leave-one-out on the source", self.verbose):
                k, self.k_scores_, loo = select_n_neighbors(
                    self.source_rep_, source_x_rows, weight_scale=self.weight_scale, random_state=self.random_state,
                    return_loo=True,
                )
        self.n_neighbors_ = int(k)
        self.x_mean_ = np.asarray(source_x_rows.mean(axis=0), dtype=np.float64).ravel()
        self.shrinkage_scores_ = None
        if p["shrinkage"] == "auto":
            with _step("choosing shrinkage by leave-one-out on the source", self.verbose):
                shrink, self.shrinkage_scores_ = select_shrinkage(
                    self.source_rep_, source_x_rows, k, weight_scale=self.weight_scale, random_state=self.random_state,
                    loo=loo,
                )
            if shrink >= SHRINKAGE_WARN:
                sc = self.shrinkage_scores_
                warnings.warn(
                    f"shrinkage: the shared modality predicts X little better than the source average "
                    f"(leave-one-out mean cell-wise r {sc[0.0]:.3f} from the {k} nearest source cells, "
                    f"{sc[shrink]:.3f} with {shrink:g} of the average), so predictions are pulled "
                    f"{shrink:.0%} of the way to the average profile: they will differ little between cells "
                    "(shrinkage=0 keeps the neighbours' average).",
                    UserWarning,
                    stacklevel=2,
                )
        else:
            shrink = p["shrinkage"]
        self.shrinkage_ = float(shrink)

        self.source_x_ = source_x_rows
        self.source_y_ = ym.data
        self.labels_ = lab
        self.feature_names_y_ = ym.feature_names
        self.feature_names_x_ = xm.feature_names
        self.n_features_in_ = ym.shape[1]
        self.n_features_out_ = xm.shape[1]
        self.version_ = __version__
        return self

    # ----------------------------------------------------------------- predict
    def _check_fitted(self):
        if not hasattr(self, "source_y_"):
            raise RuntimeError("This CMOT instance is not fitted yet: call fit(source_x, source_y) first.")

    def _target(self, target_y) -> Matrix:
        tm = as_matrix(target_y, "target_y")
        names = self.feature_names_y_
        if names is not None and tm.feature_names is not None:
            src = [str(n) for n in names]
            pos = {str(n): i for i, n in enumerate(tm.feature_names)}
            missing = [n for n in src if n not in pos]
            if missing:
                shown = ", ".join(missing[:10])
                raise ValueError(
                    f"target_y: expected every source Y feature, found {len(missing)} missing "
                    f"(of {len(src)}): {shown}" + (" ..." if len(missing) > 10 else "")
                )
            cols = np.array([pos[n] for n in src])
            if not np.array_equal(cols, np.arange(tm.shape[1])):
                tm.data = tm.data[:, cols]
        elif tm.shape[1] != self.n_features_in_:
            raise ValueError(
                f"target_y: expected {self.n_features_in_} features (as source_y in fit), found {tm.shape[1]}."
            )
        return tm

    def transport(self, target_y):
        """The label-regularized OT coupling between source and target cells.

        Returns
        -------
        coupling : ndarray of shape (n_source, n_target)
            Columns sum to ``1 / n_target``; rows to ``1 / n_source`` with
            balanced OT (``reg_m=None``).
        cost : ndarray of shape (n_source, n_target)
            Squared Euclidean cost in the Step B space.
        """
        self._check_fitted()
        tm = self._target(target_y)
        coupling_s, order, cost_s = self._transport(tm.data, keep_cost=True)
        coupling = np.empty_like(coupling_s)
        coupling[order] = coupling_s
        cost = np.empty_like(cost_s)
        cost[order] = cost_s
        return coupling, cost

    def _select_pcs(self, rep, x, k):
        """The number of leading components of ``rep`` with the best leave-one-out score on
        the source at ``k`` (or ``AUTO_PCS_PROBE_K`` when ``k`` is None, which is then
        chosen on those components); sets ``n_pcs_scores_`` and ``k_scores_``.  Also returns
        the leave-one-out prediction at that ``k`` (see :func:`select_n_neighbors`)."""
        cands = sorted({min(d, rep.shape[1]) for d in AUTO_PCS_GRID})
        probe = AUTO_PCS_PROBE_K if k is None else k
        scores, best_d, loo = {}, None, None
        for d in cands:  # ascending: on a tie the fewer components stay best
            best, sc, this = select_n_neighbors(
                rep[:, :d], x, grid=(probe,), weight_scale=self.weight_scale, random_state=self.random_state,
                return_loo=True,
            )
            scores[d] = sc[best]
            if best_d is None or scores[d] > scores[best_d]:  # keep the best candidate's prediction only
                best_d, loo = d, this
        self.n_pcs_scores_ = {int(d): float(s) for d, s in scores.items()}
        if k is None:
            loo = None  # replaced by the prediction at the chosen k
            k, self.k_scores_, loo = select_n_neighbors(
                rep[:, :best_d], x, weight_scale=self.weight_scale, random_state=self.random_state, return_loo=True
            )
        return best_d, k, loo

    def _standardize(self, sel):
        """Features centred and scaled by their source mean and sd, clipped to +-SCALE_CLIP."""
        out = (sel - self.scale_mean_) / self.scale_sd_
        return np.clip(out, -SCALE_CLIP, SCALE_CLIP, out=out)

    def _represent(self, target):
        """Target cells in the Step B/C space: PCA of the (standardized) variable features, or those features."""
        sel = _dense(target[:, self.features_])
        if self.scale_mean_ is not None:
            sel = self._standardize(sel)
        return self.pca_.transform(sel)[:, : self.n_pcs_] if self.pca_ is not None else sel

    def _transport(self, target, keep_cost=False):
        """Coupling with source rows sorted by label (``order``), as the solver works in place."""
        order = np.argsort(np.unique(self.labels_, return_inverse=True)[1], kind="stable")
        ns, nt = len(order), target.shape[0]
        dtype = np.float32 if ns * nt > LARGE_PROBLEM else np.float64
        with _step(f"cost matrix ({ns} x {nt}, {np.dtype(dtype).name})", self.verbose):
            if self.pca_ is not None:
                cost = sqeuclidean_cost(self.source_rep_[order], self._represent(target), dtype=dtype)
            else:  # the paper: squared Euclidean cost on every shared feature
                cost = sqeuclidean_cost(self.source_y_[order], target, dtype=dtype)
        reg = resolve_reg_e(self.reg_e, cost, random_state=self.random_state)
        if self.reg_e is not None:
            auto = resolve_reg_e(None, cost, random_state=self.random_state)
            ratio = reg / auto if auto > 0 else 1.0
            if not 1 / REG_E_WARN_RATIO <= ratio <= REG_E_WARN_RATIO:
                hint = " (the paper's values are for n_pcs=None, reg_m=None)" if self.pca_ is not None else ""
                warnings.warn(
                    f"reg_e={reg:g} is {ratio:.3g} times the value reg_e=None would use on these data "
                    f"({auto:.3g}){hint}: "
                    + (
                        "the transport will average over whole clusters."
                        if ratio > 1
                        else "the transport will be slow and nearly one-to-one."
                    ),
                    UserWarning,
                    stacklevel=4,
                )
        # The solver copies the cost unless it may overwrite it (large float32 problems).
        kept = cost if keep_cost else None
        with _step(f"label-regularized OT (reg_e={reg:.4g}, reg_cl={self.reg_cl:g})", self.verbose):
            coupling, log = sinkhorn_lpl1(
                cost,
                self.labels_[order],
                reg_e=reg,
                reg_cl=self.reg_cl,
                reg_m=reg if self.reg_m == "auto" else self.reg_m,
                max_iter=self.params_["max_iter"],
                max_inner_iter=self.params_["max_inner_iter"],
                tol=self.tol,
                return_log=True,
                dtype=dtype,
                overwrite_cost=not keep_cost and dtype == np.float32,
            )
        self.reg_e_ = reg
        self.n_iter_ = log["n_iter"]
        self.marginal_error_ = log["err"]
        return coupling, order, kept

    def predict(self, target_y):
        """Infer modality X of target cells measured in Y only.

        Parameters
        ----------
        target_y : array-like, sparse matrix, DataFrame or AnnData, shape (n_target, n_y_features)
            Target cells in the shared modality.  When both ``fit``'s ``source_y``
            and ``target_y`` carry feature names, columns are matched by name.

        Returns
        -------
        x_hat : ndarray, DataFrame or AnnData, shape (n_target, n_x_features)
            A DataFrame (target cells x X features) when ``target_y`` is a
            DataFrame, an AnnData when it is an AnnData, else an ndarray.

        Warns
        -----
        PoorlyMappedWarning
            With the percentage of poorly mapped target cells, when any.
        """
        self._check_fitted()
        tm = self._target(target_y)
        x_hat = self._predict(tm.data)
        return _wrap_output(x_hat, tm, self.feature_names_x_)

    def _predict(self, target):
        iforest = self.outlier_method == "isolation_forest"
        coupling, order, cost = self._transport(target, keep_cost=iforest)
        with _step("poorly mapped cells", self.verbose):
            if iforest:
                flags, scores = poorly_mapped_cells(
                    coupling, cost, threshold=self.outlier_threshold, random_state=self.random_state
                )
                del cost
            else:
                flags, scores = self._unmatched(target)
        self.outliers_ = flags
        self.outlier_scores_ = scores
        if flags.any():
            warnings.warn(
                f"{flags.sum()} of {flags.size} target cells ({100 * flags.mean():.1f}%) are poorly mapped "
                "(unlike every source cell); their inferred values are less reliable. "
                "See the fitted attribute outliers_.",
                PoorlyMappedWarning,
                stacklevel=3,
            )
        return self.infer_from_coupling(coupling, target, order=order)

    def _unmatched(self, target):
        """Source-calibrated distance test in a PCA fitted on source and target together
        (a PCA of the source alone would project away what sets an unseen cell type apart),
        on the components above the noise (:func:`signal_components`)."""
        src = _dense(self.source_y_[:, self.features_])
        tgt = _dense(target[:, self.features_])
        if self.scale_mean_ is not None:
            src = self._standardize(src)
            tgt = self._standardize(tgt)
        both = np.vstack([src, tgt])
        n, p = both.shape
        cap = self.params_["n_pcs"] if isinstance(self.params_["n_pcs"], int) else 30
        n_pcs = int(min(cap, n - 1, p))
        pca = make_pca(n_pcs, both.shape, self.random_state).fit(both)
        d = signal_components(pca.explained_variance_, n, p, mean_variance=float(both.var(axis=0).mean()))
        self.outlier_n_components_ = d
        emb = pca.transform(both)[:, :d]
        emb_s, emb_t = emb[: src.shape[0]], emb[src.shape[0] :]
        scale = neighbor_distance_scale(emb_s, random_state=self.random_state)
        return unmatched_cells(emb_t, emb_s, scale, threshold=self.outlier_threshold)

    def infer_from_coupling(self, coupling, target, *, n_neighbors=None, order=None):
        """Step C on a given coupling: barycentric map, weighted kNN, then ``shrinkage_``
        toward the source mean of X.

        Parameters
        ----------
        coupling : ndarray of shape (n_source, n_target)
        target : ndarray or sparse matrix of shape (n_target, n_y_features)
            Target cells, columns in the order of ``fit``'s ``source_y``.
        n_neighbors : int, optional
            Defaults to the fitted ``n_neighbors_``.  The fitted ``shrinkage_``
            (chosen for ``n_neighbors_``) applies either way.
        order : ndarray of int, optional
            Source cell of each row of ``coupling`` (default: source order).

        Returns
        -------
        ndarray of shape (n_target, n_x_features)
        """
        k = self.n_neighbors_ if n_neighbors is None else n_neighbors
        with _step(f"kNN inference (k={k})", self.verbose):
            tgt = self._represent(target)
            weight = self.params_["barycentric_weight"]
            src = self.source_rep_ if order is None else self.source_rep_[order]
            self.shift_ = transport_shift(coupling, src, tgt)
            if weight > 0:
                bary = barycentric_map(coupling, tgt)
                if order is not None:
                    unsorted = np.empty_like(bary)
                    unsorted[order] = bary
                    bary = unsorted
            if weight == 0:
                mapped = self.source_rep_ + self.shift_
            elif weight == 1:  # the paper
                mapped = bary
            else:
                mapped = (1 - weight) * (self.source_rep_ + self.shift_) + weight * bary
            idx, w = knn_weights(tgt, mapped, k, scale=self.weight_scale)
            pred = weighted_average(self.source_x_, idx, w)
        s = getattr(self, "shrinkage_", 0.0)  # models saved by cmot < 0.3 have none
        if s > 0:
            pred *= 1 - s
            pred += s * self.x_mean_.astype(pred.dtype, copy=False)
        return pred

    def fit_predict(self, source_x, source_y, target_y, **fit_params):
        """``fit(source_x, source_y, **fit_params).predict(target_y)``."""
        return self.fit(source_x, source_y, **fit_params).predict(target_y)

    # --------------------------------------------------------------- save/load
    def save(self, path) -> None:
        """Save the fitted model to ``path`` (see :mod:`cmot._persist`)."""
        from ._persist import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path) -> "CMOT":
        """Load a model written by :meth:`save`."""
        from ._persist import load_model

        return load_model(path)


def _dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def _wrap_output(x_hat, tm: Matrix, x_names):
    if tm.kind not in ("dataframe", "anndata"):
        return x_hat
    import pandas as pd

    cols = pd.Index([str(n) for n in x_names]) if x_names is not None else pd.RangeIndex(x_hat.shape[1])
    df = pd.DataFrame(x_hat, index=pd.Index(tm.cell_names), columns=cols)
    if tm.kind == "dataframe":
        return df
    import anndata

    return anndata.AnnData(X=x_hat, obs=pd.DataFrame(index=df.index), var=pd.DataFrame(index=cols.astype(str)))
