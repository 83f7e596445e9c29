"""The :class:`CMOT` estimator: checks the input, calls the steps (alignment,
representation, automatic choices, labels, transport, poorly mapped cells,
inference) in order and keeps their results as fitted attributes.

Each step lives in its own module: :mod:`cmot.align` (Step A),
:mod:`cmot.representation`, :mod:`cmot.choices`, :mod:`cmot.labels`,
:mod:`cmot.transport` (Step B), :mod:`cmot.composition` (the composition-robust
Step B and source move), :mod:`cmot.poorly_mapped` and :mod:`cmot.infer` (Step C);
the parameters are declared in :mod:`cmot._params`.
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from . import __version__
from . import chunked
from ._base import ParamsMixin
from ._params import PARAMETER_CONSTRAINTS, check_params
from ._utils import match_names, timed_step, verbose_output
from ._validation import Matrix, as_matrix, check_source
from .align import align_source
from .choices import (  # noqa: F401  (re-exported: the automatic choices' public names)
    AUTO_K_GRID,
    AUTO_PCS_GRID,
    AUTO_PCS_PROBE_K,
    AUTO_SHRINKAGE_GRID,
    SHRINKAGE_WARN,
    choose,
    fit_bytes,
    reference_weight_scale,
    select_n_neighbors,
    select_shrinkage,
)
from .composition import COMPOSITION_NEIGHBORS, robust_move, robust_transport
from .feature_scores import FeatureScoresMixin
from .infer import metric_space, move_source
from .label_transfer import LabelTransferMixin, check_transfer_labels
from .labels import source_labels, ward_labels
from .poorly_mapped import QUERY_UNLIKE_MESSAGE, detect_poorly_mapped, detector_reference
from .representation import SCALE_CLIP, Representation  # noqa: F401
from .sparse_transport import sparse_bytes, uses_sparse
from .step_c import infer_rows
from .transport import (  # noqa: F401  (re-exported)
    AUTO_REG_FRACTION,
    AUTO_REG_NEIGHBOR,
    LARGE_PROBLEM,
    REG_E_WARN_RATIO,
    check_memory,
    check_transport_memory,
    resolve_reg_e,
    solve_transport,
    transport_shift,
)

logger = logging.getLogger("cmot")

__all__ = ["CMOT", "PAPER_MODE", "PoorlyMappedWarning", "ward_labels", "resolve_reg_e", "select_n_neighbors",
           "select_shrinkage"]

#: The parameters that make CMOT follow the paper exactly (``CMOT(**PAPER_MODE)``): the OT
#: cost on every shared feature, neighbours on the raw variable features, balanced OT,
#: the barycentric map, ``exp(-distance)`` weights, the nearest aligned cell, no shrinkage,
#: every source cell transported (``correction="transport"``: composition-sensitive).
PAPER_MODE = dict(match_neighbors=1, scale=False, n_pcs=None, barycentric_weight=1.0, shrinkage=0.0, reg_m=None,
                  weight_scale=1.0, correction="transport")


class PoorlyMappedWarning(UserWarning):
    """Some target cells are mapped unlike the rest (see ``CMOT.outliers_``)."""


class CMOT(LabelTransferMixin, FeatureScoresMixin, ParamsMixin):
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
    representation : {"pca", "precomputed"}, default="pca"
        "pca": Steps B and C (and the poorly-mapped detector) work in the
        space described by ``n_features``, ``scale`` and ``n_pcs``, computed by
        cmot from the shared features.  "precomputed": ``source_y`` and
        ``target_y`` are that space already, an embedding the user computed
        (a reference PCA, LSI or Harmony embedding and the query projected
        into it): every column is used as given, with no feature selection,
        scaling or PCA (``n_features``, ``scale`` and ``n_pcs`` are ignored;
        ``n_pcs_`` is the number of columns).
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
        the differences within clusters that the shift keeps.  With
        ``correction="robust"`` ``w`` is multiplied by the share of the source
        the target covers (``coverage_``): about 1 for a target mixed like the
        source, the type's share for a one-type target, about 0 for one cell.
    correction : {"robust", "transport"}, default="robust"
        How the source is moved onto the target.  "robust"
        (:mod:`cmot.composition`): the transport's source marginal is the
        target's composition (each target cell's weight shared by its 30
        nearest source cells, taken twice), so source types absent from the
        target take no part, and ``shift_`` is shrunk by a positive-part
        James-Stein factor (``shift_factor_``): none for a single target cell,
        in full for an offset a whole target from another sample shares.  A
        target cell's prediction then barely depends on the other target cells.
        "transport" is cmot 0.3 (and the paper, with ``barycentric_weight=1``):
        every source cell sends its mass, the raw mean displacement; a target
        of one cell type, or a single cell, then pulls every source cell onto it.
    shrinkage : float in [0, 1] or "auto", default="auto"
        Weight ``s`` of the source mean of X in each prediction:
        ``(1 - s) * knn + s * mean``.  When the shared modality says little about
        X (sci-CAR a549: RNA from sparse ATAC), the neighbours' average is mostly
        noise and the mean profile predicts better.  "auto" picks 0, 0.25, 0.5,
        0.75 or 1 by the leave-one-out prediction on the source
        (:func:`select_shrinkage`, one-standard-error rule, so 0 unless the mean
        clearly helps; fitted attribute ``shrinkage_``) and warns at 0.5 or more.
        It does not change feature-wise correlations or AUROCs.  0 is the paper.
        With a PCA, "auto" first blends the neighbours' average with a linear map
        (``(1 - l) * knn + l * linear``, ridge of X on the source's components applied
        to the target moved back by ``shift_``; ``l`` from 0 to 1 chosen by the same
        leave-one-out; :func:`cmot.choices.fit_linear_map`), then searches the
        neighbours in a metric that adds the map's predicted X to the components
        (``metric_``, its weight ``a`` in 0, 0.5, 1, 2 chosen by the same leave-one-out,
        ``l`` chosen again for each; :func:`cmot.choices.neighbor_metric`), and chooses
        ``s`` for the blend; a number keeps the neighbours' average alone, in the
        components' Euclidean metric.
    weight_scale : float or "auto", default="auto"
        Step C weights are ``exp(-distance / weight_scale)``, normalized to sum to
        one.  1.0 is the paper's ``exp(-distance)``, which depends on the units of
        the data (large distances put all the weight on the nearest cell);
        "auto" uses the median distance of source cells to their k-th nearest
        other source cell (``weight_scale_``, fixed at fit so that a target
        cell's weights do not depend on the other target cells), with
        ``shrinkage="auto"`` times a width of 0.25, 0.5 or 1 chosen by the same
        leave-one-out (``kernel_width_``; a narrower one only if it is clearly better
        cell-wise).
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
        "distance" (default, :func:`cmot.poorly_mapped.map_quality`) scores each
        target cell by its distance to its 10th nearest source cell, in a PCA
        of the (standardized) variable features fitted on source and target
        together (at most 20,000 of each), after removing the offset that the target cells matching the
        source share, against the same distance among source cells:
        calibrated on the source, it can flag a whole unseen population and
        rarely flags cells of known types.  A target whose shared offset
        exceeds the threshold, or half of whose cells are flagged, is unlike
        the source as a whole (``query_unlike_``): every cell is flagged and a
        ``PoorlyMappedWarning`` says so.  Only the components
        above the noise count (Marchenko-Pastur edge, fitted attribute
        ``outlier_n_components_``); the others would drown the differences.
    random_state : int or None, default=0
        Seed for the alignment, clustering, PCA, the detector's subsets and
        IsolationForest: by default the same input gives the same output (as
        scanpy's ``random_state=0`` and Seurat's ``seed.use``); None draws from
        NumPy's global random state (cmot < 0.7's default).
    verbose : bool, default=False
        Show each step and its time (INFO messages of the ``cmot`` logger),
        Step C's progress over chunks of query cells, and the inferred
        features that cannot be inferred reliably (``feature_scores_`` below
        ``cmot.feature_scores.RELIABLE_R``).  Without any logging set-up they
        are printed to standard error; when logging is configured to show the
        ``cmot`` logger's INFO messages, they go there instead (once).

    Attributes
    ----------
    source_y_ : ndarray or sparse matrix of shape (n_source, n_y_features)
        Source cells in the shared modality.
    source_x_ : ndarray or sparse matrix of shape (n_source, n_x_features)
        X profile of each source Y cell (its own, or its aligned partner's).
    labels_ : ndarray of shape (n_source,)
        Labels of the source Y cells used by the label regularizer.
    representation_ : cmot.representation.Representation
        The Step B/C space fitted on the source; ``features_``, ``scale_mean_``,
        ``scale_sd_`` and ``pca_`` read its attributes.
    features_ : ndarray of int
        Columns of Y used for Steps B and C.
    scale_mean_, scale_sd_ : ndarray of shape (len(features_),) or None
        Source mean and standard deviation of those columns (``scale=True``).
    pca_ : cmot._pca.PCA or None
        PCA of those columns (None when ``n_pcs=None``); its first ``n_pcs_``
        components are used.
    source_rep_ : ndarray of shape (n_source, n_pcs_ or len(features_))
        Source Y cells in that space.
    n_pcs_ : int or None
        The number of principal components used.
    n_pcs_scores_ : dict or None
        With ``n_pcs="auto"``: ``{n_pcs: leave-one-out score}`` of each
        candidate.
    n_neighbors_ : int
        The ``k`` used in Step C (a given ``n_neighbors`` above the number of
        source cells is capped at it, with a warning).
    k_scores_ : dict or None
        Leave-one-out score of each candidate ``k`` (``n_neighbors="auto"``).
    shrinkage_ : float
        The weight of the source mean in each prediction (see ``shrinkage``).
    shrinkage_scores_ : dict or None
        With ``shrinkage="auto"``: ``{s: leave-one-out mean cell-wise r}``.
    linear_map_ : cmot.infer.LinearMap or None
        With ``shrinkage="auto"`` and a PCA: Step C's ridge map of X on the components.
    linear_weight_ : float
        Its weight ``l`` in each prediction (0 without it).
    linear_weight_scores_ : dict or None
        ``{l: leave-one-out score}`` of each candidate weight.
    metric_ : ndarray of shape (n_pcs_, n_pcs_) or None
        Step C's neighbour metric: neighbours are searched among the rows of
        ``components @ metric_`` (the moved source and the target), whose squared
        distances are those of the components plus ``metric_weight_**2`` times those
        of the linear map's predicted (standardized) X, suitably scaled
        (:func:`cmot.choices.neighbor_metric`); None: the components' Euclidean
        metric (``metric_weight_`` 0, no linear map, or a model saved before cmot 0.9).
    metric_weight_ : float
        Its weight ``a`` (0: Euclidean).
    metric_scores_ : dict or None
        ``{a: leave-one-out score}`` of each candidate at ``n_neighbors_``, ``l`` chosen
        for each.
    kernel_width_ : float
        With ``weight_scale="auto"`` and ``shrinkage="auto"``: the width of Step C's
        weights in units of the median ``k``-th neighbour distance (else 1).
    kernel_width_scores_ : dict or None
        ``{width: leave-one-out score}`` of each candidate.
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
    feature_scores_ : pandas.Series
        How well each X feature can be inferred: the leave-one-out
        feature-wise Pearson r on the source (at most 2,000 random source
        cells, each predicted by Step C from its ``n_neighbors_`` nearest
        other source cells in ``source_rep_`` (in Step C's metric, that of the
        map refitted without the cell's fold), blended with the linear map
        fitted without it at ``linear_weight_``; NaN for a constant feature;
        see :mod:`cmot.feature_scores`), indexed by the X feature names (or
        ``0..n-1``).
    label_transfer_ : cmot.label_transfer.LabelTransfer or None
        The source cells' labels that ``predict`` transfers (``transfer_labels``).
    label_neighbors_ : dict or None
        Each transferred name's number of voting neighbours ``k_label``: the
        candidate of :data:`cmot.choices.AUTO_K_GRID` with the best leave-one-out
        label accuracy on the source (at most 2,000 random source cells, each voted
        on by its nearest other source cells in ``source_rep_``, in ``metric_``; on a
        tie the smaller; see :func:`cmot.label_transfer.select_label_neighbors`).  None
        when nothing is transferred.
    label_neighbors_scores_ : dict or None
        name -> ``{k: leave-one-out label accuracy}`` of each candidate.
    predicted_labels_ : pandas.DataFrame or None
        Set by ``predict``: target cells x transferred names, the class of
        highest score (categorical); None when nothing is transferred.
    predicted_label_scores_ : dict of pandas.DataFrame or None
        Set by ``predict``: name -> target cells x classes, each class's share
        of the Step C weights of the target cell's ``label_neighbors_[name]``
        nearest moved source cells (the neighbour search and distance unit of the
        inferred X, no shrinkage); rows sum to 1.
    predicted_label_score_ : pandas.DataFrame or None
        Set by ``predict``: target cells x names, the highest class score (0-1).
    outliers_ : ndarray of bool, shape (n_target,)
        Set by ``predict``: poorly mapped target cells.
    outlier_scores_ : ndarray of shape (n_target,)
        Set by ``predict``: robust z-scores of poor mapping (higher is worse).
    mapping_score_ : ndarray of shape (n_target,)
        Set by ``predict``: in [0, 1], higher is better mapped: ``min(1, 2 p)``,
        ``p`` the share of source cells at least as far from their own 10th
        nearest source cell as the target cell is from its (after the offset
        and the distance excess the target shares are removed; see
        :mod:`cmot.poorly_mapped`).
    query_unlike_ : bool
        Set by ``predict``: the target as a whole is unlike the source.
    weight_scale_ : float
        Distance unit of Step C's weights: ``weight_scale``, or with "auto"
        ``kernel_width_`` times the median distance of source cells to their k-th
        nearest other source cell (in ``metric_``).
    shift_factor_ : float
        Set by ``predict``: the James-Stein factor applied to ``shift_``
        (1 with ``correction="transport"``).
    coverage_ : float
        Set by ``predict``: share of the source the target covers (1 with
        ``correction="transport"``).
    outlier_n_components_ : int
        Set by ``predict``: principal components
        of the joint PCA used by the poorly-mapped test.
    params_ : dict
        The validated parameters ``fit`` used.
    reg_e_ : float
        Set by ``predict``: the entropic weight used.
    shift_ : ndarray of shape (n_components_space,)
        Set by ``predict``: the transport's mean displacement of the source
        cells in the Step B/C space (shrunk with ``correction="robust"``).
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
        representation: str = "pca",
        barycentric_weight: float = 0.25,
        correction: str = "robust",
        shrinkage: float | str = "auto",
        weight_scale: float | str = "auto",
        max_iter: int = 10,
        max_inner_iter: int = 1000,
        tol: float = 1e-6,
        outlier_threshold: float = 3.5,
        outlier_method: str = "distance",
        random_state=0,
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
        self.representation = representation
        self.barycentric_weight = barycentric_weight
        self.correction = correction
        self.shrinkage = shrinkage
        self.weight_scale = weight_scale
        self.max_iter = max_iter
        self.max_inner_iter = max_inner_iter
        self.tol = tol
        self.outlier_threshold = outlier_threshold
        self.outlier_method = outlier_method
        self.random_state = random_state
        self.verbose = verbose

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
    def fit(self, source_x, source_y, *, correspondence=None, labels=None, transfer_labels=None):
        """Learn from source cells measured in X and Y.

        Parameters
        ----------
        source_x : array-like, sparse matrix, DataFrame or AnnData, shape (n_x, n_x_features)
            Source cells in the modality to infer, cells as rows.
        source_y : array-like, sparse matrix, DataFrame or AnnData, shape (n_y, n_y_features)
            Source cells in the shared modality (with ``representation="precomputed"``:
            their embedding).
        correspondence : array-like or sparse matrix, optional
            Known X-Y pairs when the source is only partly paired: a binary
            ``(n_x, n_y)`` matrix or an ``(n_pairs, 2)`` array of ``(x_index, y_index)``.
            None (default) means fully paired: row i of X and of Y is the same
            cell, and alignment (Step A) is skipped.
        labels : array-like of shape (n_y,), optional
            Prior labels of the source Y cells (cell types, treatment times); none
            may be missing.  A pandas Series is matched to the cells by name when
            ``source_y`` has cell names, else its index must be ``0..n_y-1``.
            None means Ward clusters (``n_clusters``) of source Y.
        transfer_labels : dict or DataFrame, optional
            Labels of the source Y cells that ``predict`` transfers to the target
            cells (``predicted_labels_``; see :mod:`cmot.label_transfer`): a dict
            ``name -> labels`` (array-like of length n_y, or a Series matched by
            cell name as ``labels``) or a DataFrame (one name per column).
            Missing labels (NaN, None) do not vote.  None (default) transfers
            ``labels``, when given, under the name ``"labels"``; ``{}`` transfers
            nothing.

        Returns
        -------
        self : CMOT
        """
        p = self.params_ = self._check_params()
        with verbose_output(p["verbose"]):
            xm, ym = check_source(source_x, source_y, fully_paired=correspondence is None)
            self._check_fit_size(ym, labels, p)
            self.label_transfer_ = check_transfer_labels(transfer_labels, labels, ym.shape[0],
                                                         cell_names=ym.cell_names)
            source_x_rows = self._align(xm, ym, correspondence, p)
            self._fit_space(ym.data, source_x_rows, p)
            space = self.source_rep_ if self.representation_.pca_ is not None else ym.data
            self.labels_ = source_labels(labels, space, n_clusters=p["n_clusters"], cell_names=ym.cell_names,
                                         random_state=p["random_state"], verbose=p["verbose"])
            self.x_mean_ = np.asarray(source_x_rows.mean(axis=0), dtype=np.float64).ravel()
            self.source_x_, self.source_y_ = source_x_rows, ym.data
            self.feature_names_y_, self.feature_names_x_ = ym.feature_names, xm.feature_names
            self.n_features_in_, self.n_features_out_ = ym.shape[1], xm.shape[1]
            self._fit_feature_scores(p)
            self._fit_label_neighbors(p)
            self.version_ = __version__
        return self

    def _check_fit_size(self, ym, labels, p):
        n_y = ym.shape[0]
        check_memory(fit_bytes(n_y, min(p["n_features"], ym.shape[1])), f"source_y: fitting {n_y} source cells",
                     "Subsample the reference (source) cells.")
        if p["n_clusters"] > n_y and labels is None:
            raise ValueError(f"n_clusters: expected at most the number of source cells ({n_y}), "
                             f"found {p['n_clusters']}.")

    def _fit_space(self, y, source_x_rows, p):
        """The Step B/C space and the automatic choices: ``representation_``, ``source_rep_``, ``n_pcs_``, ..."""
        precomputed = p.get("representation", "pca") == "precomputed"
        n_pcs = None if precomputed else p["n_pcs"]
        n_components = None if n_pcs is None else (max(AUTO_PCS_GRID) if n_pcs == "auto" else n_pcs)
        rep = Representation(n_features=p["n_features"], scale=p["scale"], n_components=n_components,
                             precomputed=precomputed, random_state=p["random_state"], verbose=p["verbose"])
        full = rep.fit_transform(y)
        chosen = choose(full, source_x_rows, n_pcs=n_pcs, n_neighbors=p["n_neighbors"],
                        shrinkage=p["shrinkage"], weight_scale=p["weight_scale"], random_state=p["random_state"],
                        verbose=p["verbose"])
        rep.n_pcs_ = full.shape[1] if precomputed else chosen.n_pcs
        self.representation_ = rep
        self.source_rep_ = full if chosen.n_pcs is None else full[:, : chosen.n_pcs]
        self._set_choices(chosen)
        if precomputed:
            self.n_pcs_ = int(full.shape[1])
        self.weight_scale_ = reference_weight_scale(metric_space(self.source_rep_, self.metric_), chosen.n_neighbors,
                                                    p["weight_scale"], width=chosen.kernel_width,
                                                    random_state=p["random_state"])

    def _align(self, xm, ym, correspondence, p):
        """Step A when the source is partly paired: the X profile of each source Y cell."""
        self.aligned_index_ = self.match_matrix_ = self.embedding_x_ = self.embedding_y_ = None
        if correspondence is None:
            return xm.data
        al = align_source(xm.data, ym.data, correspondence, n_components=p["n_components"],
                          align_neighbors=p["align_neighbors"], mu=p["mu"], match_neighbors=p["match_neighbors"],
                          random_state=p["random_state"], verbose=p["verbose"])
        self.aligned_index_, self.match_matrix_ = al.aligned_index, al.match_matrix
        self.embedding_x_, self.embedding_y_ = al.embedding_x, al.embedding_y
        return al.source_x

    def _set_choices(self, chosen):
        self.n_pcs_ = chosen.n_pcs
        self.n_neighbors_ = chosen.n_neighbors
        self.shrinkage_ = chosen.shrinkage
        self.n_pcs_scores_ = chosen.n_pcs_scores
        self.k_scores_ = chosen.k_scores
        self.shrinkage_scores_ = chosen.shrinkage_scores
        self.linear_map_, self.linear_weight_ = chosen.linear_map, chosen.linear_weight
        self.linear_weight_scores_ = chosen.linear_weight_scores
        self.metric_, self.metric_weight_ = chosen.metric, chosen.metric_weight
        self.metric_scores_ = chosen.metric_scores
        self.kernel_width_, self.kernel_width_scores_ = chosen.kernel_width, chosen.kernel_width_scores

    # the representation's fitted attributes, under the names they have always had
    features_ = property(lambda self: self.representation_.features_, doc="Columns of Y used for Steps B and C.")
    scale_mean_ = property(lambda self: self.representation_.scale_mean_, doc="Source mean of those columns.")
    scale_sd_ = property(lambda self: self.representation_.scale_sd_, doc="Source deviation of those columns.")
    pca_ = property(lambda self: self.representation_.pca_, doc="PCA of those columns, or None.")

    def __setstate__(self, state):
        """Models pickled by cmot 0.3 keep the representation's attributes on the estimator."""
        if "representation_" not in state and "features_" in state:
            rep = Representation(n_features=state.get("n_features", 4000), scale=state.get("scale", True),
                                 n_components=None, random_state=state.get("random_state"))
            for name in ("features_", "scale_mean_", "scale_sd_", "pca_", "n_pcs_"):
                setattr(rep, name, state.pop(name, None) if name != "n_pcs_" else state.get(name))
            state["representation_"] = rep
        state.pop("_sklearn_version", None)  # written by scikit-learn's BaseEstimator, the base class until 0.7
        self.__dict__.update(state)

    # ----------------------------------------------------------------- predict
    def _check_fitted(self):
        if not hasattr(self, "source_y_"):
            raise RuntimeError("This CMOT instance is not fitted yet: call fit(source_x, source_y) first.")

    def _target(self, target_y) -> Matrix:
        if chunked.is_chunked(target_y):  # a dask array or a backed AnnData (:mod:`cmot.chunked`)
            tm = chunked.as_chunked_matrix(target_y, "target_y")
        else:
            tm = as_matrix(target_y, "target_y")
        names = self.feature_names_y_
        if names is not None and tm.feature_names is not None:
            cols = match_names(names, tm.feature_names, "target_y", found_arg="target_y")
            if cols is not None:
                tm.data = tm.data[:, cols]
        elif tm.shape[1] != self.n_features_in_:
            what = "columns of the embedding" if self.params_.get("representation") == "precomputed" else "features"
            raise ValueError(
                f"target_y: expected {self.n_features_in_} {what} (as source_y in fit), found {tm.shape[1]}."
            )
        return tm

    def _check_memory(self, n_target: int):
        import scipy.sparse as sp

        n_source = self.source_y_.shape[0]
        if uses_sparse(n_source, n_target, self.params_.get("correction", "transport")):
            check_memory(sparse_bytes(n_source, n_target, self.source_rep_.shape[1]),
                         f"target_y: the transport of {n_source} source x {n_target} target cells (sparse support)",
                         "Predict the target cells in parts, or subsample the reference.")
            return
        check_transport_memory(
            n_source, n_target, keep_cost=self.params_["outlier_method"] == "isolation_forest",
            barycentric=self.params_["barycentric_weight"] > 0,
            sparse_cost=self.representation_.pca_ is None and sp.issparse(self.source_y_),
        )

    def _transport(self, target, keep_cost=False):
        """Step B: the :class:`cmot.transport.TransportResult` between the source and ``target``."""
        rep = self.representation_
        p = self.params_
        tgt_rep = chunked.map_rows(target, rep.transform, verbose=p["verbose"], step="representation")
        if rep.pca_ is not None:
            src, tgt = self.source_rep_, tgt_rep
        else:  # the paper: squared Euclidean cost on every shared feature
            src, tgt = self.source_y_, _whole_target(target, tgt_rep, rep, p)
        paper_space = rep.pca_ is None and not getattr(rep, "precomputed", False)
        hint = "" if paper_space else " (the paper's values are for n_pcs=None, reg_m=None)"
        if p.get("correction", "transport") == "robust":  # models of cmot < 0.4 have no correction
            result = robust_transport(
                self.source_rep_, tgt_rep, self.labels_, reg_e=p["reg_e"], reg_cl=p["reg_cl"], reg_m=p["reg_m"],
                n_neighbors=COMPOSITION_NEIGHBORS, max_inner_iter=p["max_inner_iter"], keep_cost=keep_cost,
                random_state=p["random_state"], verbose=p["verbose"], reg_e_hint=hint,
            )
            return result, tgt_rep
        result = solve_transport(
            src, tgt, self.labels_, reg_e=p["reg_e"], reg_cl=p["reg_cl"], reg_m=p["reg_m"],
            max_iter=p["max_iter"], max_inner_iter=p["max_inner_iter"], tol=p["tol"], keep_cost=keep_cost,
            source_rep=self.source_rep_, target_rep=tgt_rep, random_state=p["random_state"],
            verbose=p["verbose"], reg_e_hint=hint,
        )
        return result, tgt_rep

    def transport(self, target_y):
        """The label-regularized OT coupling between source and target cells.

        Returns
        -------
        coupling : ndarray of shape (n_source, n_target)
            Columns sum to ``1 / n_target``; rows to ``1 / n_source`` with
            balanced OT (``reg_m=None``, ``correction="transport"``).  With
            ``correction="robust"`` source cells that take no part (types absent
            from the target) have zero rows.
        cost : ndarray of shape (n_source, n_target)
            Squared Euclidean cost in the Step B space (the Step B/C
            components with ``correction="robust"``).
        """
        self._check_fitted()
        with verbose_output(self.params_["verbose"]):
            tm = self._target(target_y)
            self._check_memory(tm.shape[0])
            result, _ = self._transport(tm.data, keep_cost=True)
        return result.coupling, result.cost

    def predict(self, target_y):
        """Infer modality X of target cells measured in Y only.

        Parameters
        ----------
        target_y : array-like, sparse matrix, DataFrame, AnnData or dask array, shape (n_target, n_y_features)
            Target cells in the shared modality.  When both ``fit``'s ``source_y``
            and ``target_y`` carry feature names, columns are matched by name.
            A dask array (chunked by rows) or a backed AnnData is read a chunk
            at a time (:mod:`cmot.chunked`; needs ``pip install dask[array]``).

        Returns
        -------
        x_hat : ndarray, DataFrame, AnnData or dask array, shape (n_target, n_x_features)
            A DataFrame (target cells x X features) when ``target_y`` is a
            DataFrame, an AnnData when it is an AnnData, else an ndarray.  For a
            dask array or a backed AnnData the values are a dask array with the
            query's row chunks, computed when it is computed (the fitted
            attributes are computed at once).

        Raises
        ------
        MemoryError
            At once, when the dense source x target arrays of the transport would
            not fit in the available memory.

        Warns
        -----
        PoorlyMappedWarning
            With the percentage of poorly mapped target cells, when any; or
            saying that the query as a whole is unlike the reference
            (``query_unlike_``).
        """
        self._check_fitted()
        with verbose_output(self.params_["verbose"]):
            tm = self._target(target_y)
            self._check_memory(tm.shape[0])
            iforest = self.params_["outlier_method"] == "isolation_forest"
            result, tgt_rep = self._transport(tm.data, keep_cost=iforest)
            self.reg_e_ = result.reg_e
            self.n_iter_, self.marginal_error_ = result.n_iter, result.marginal_error
            self._poorly_mapped(tm.data, result)
            result.cost = None
            x_hat, votes = self._infer(result.coupling, tgt_rep, result.shift, self.n_neighbors_,
                                       sketch_factor=result.shift_factor, row_chunks=chunked.row_chunks(tm.data))
            self._set_label_prediction(votes, tm.cell_names)
        return _wrap_output(x_hat, tm, self.feature_names_x_)

    def _poorly_mapped(self, target, result):
        p = self.params_
        rep = self.representation_
        with timed_step("poorly mapped cells", p["verbose"]):
            found = detect_poorly_mapped(
                p["outlier_method"], target=chunked.TargetRows(target, rep.selected, verbose=p["verbose"]),
                source=rep.selected(self.source_y_[detector_reference(self.source_y_.shape[0], p["random_state"])]),
                coupling=result.coupling, cost=result.cost, labels=self.labels_, threshold=p["outlier_threshold"],
                random_state=p["random_state"], max_components=self._outlier_components(p),
            )
        self.outlier_n_components_ = found.n_components
        self.outliers_, self.outlier_scores_ = found.flags, found.scores
        self.mapping_score_, self.query_unlike_ = found.mapping_score, found.query_unlike
        _warn_poorly_mapped(found)

    def _outlier_components(self, p):
        """Most components of the poorly-mapped detector's joint PCA: a given ``n_pcs``, else 30."""
        if p.get("representation", "pca") == "pca" and isinstance(p["n_pcs"], int):
            return p["n_pcs"]
        return 30

    def _infer(self, coupling, tgt_rep, shift, k, sketch_factor=None, row_chunks=None):
        """Step C: the inferred X and the label votes of the same neighbours (:mod:`cmot.step_c`);
        with ``row_chunks`` (a query read a chunk at a time) the X is a lazy dask array of those chunks."""
        verbose = self.params_["verbose"]
        with timed_step(f"kNN inference (k={k})", verbose):
            mapped = self._move(coupling, tgt_rep, shift, sketch_factor)
            # models saved by cmot < 0.4 have no weight_scale_, < 0.3 no shrinkage_, older no linear map
            step = dict(mapped=mapped, x=self.source_x_, n_neighbors=k,
                        weight_scale=getattr(self, "weight_scale_", self.params_["weight_scale"]),
                        shrinkage=getattr(self, "shrinkage_", 0.0), x_mean=getattr(self, "x_mean_", None),
                        linear=getattr(self, "linear_map_", None), linear_weight=getattr(self, "linear_weight_", 0.0),
                        offset=self.shift_, metric=getattr(self, "metric_", None))
            labels = dict(label_transfer=getattr(self, "label_transfer_", None), label_neighbors=self._label_ks())
            if row_chunks is None:
                return infer_rows(tgt_rep, **step, **labels, verbose=verbose)
            if isinstance(step["weight_scale"], str):
                raise ValueError("target_y: a model saved by cmot < 0.4 (weight_scale=\"auto\" over the whole query) "
                                 "cannot predict a query read a chunk at a time; refit it with this version.")
            votes = []
            if labels["label_transfer"] is not None:  # the labels (small) at once, the X when it is computed
                votes = infer_rows(tgt_rep, **{**step, "x": None}, **labels, verbose=verbose)[1]
            return chunked.lazy_step_c(tgt_rep, row_chunks, self.source_x_.shape[1], step, verbose=verbose), votes

    def _move(self, coupling, tgt_rep, shift, sketch_factor=None):
        """The source cells moved into target space; sets ``shift_``, ``shift_factor_``, ``coverage_``."""
        p = self.params_
        if p.get("correction", "transport") == "robust":
            known = {} if sketch_factor is None else dict(shift=shift, factor=sketch_factor)  # sparse support
            mapped, shift, factor, coverage = robust_move(coupling, self.source_rep_, tgt_rep,
                                                          barycentric_weight=p["barycentric_weight"], **known)
        else:
            mapped = move_source(coupling, self.source_rep_, tgt_rep, barycentric_weight=p["barycentric_weight"],
                                 shift=shift)
            factor, coverage = 1.0, 1.0
        self.shift_, self.shift_factor_, self.coverage_ = shift, factor, coverage
        return mapped

    def infer_from_coupling(self, coupling, target, *, n_neighbors=None):
        """Step C on a given coupling: the source moved as ``correction`` says (shift and
        barycentric map), weighted kNN, then ``shrinkage_`` toward the source mean of X.

        Parameters
        ----------
        coupling : ndarray of shape (n_source, n_target)
            Rows in the order of the source cells (as :meth:`transport` returns it).
        target : ndarray or sparse matrix of shape (n_target, n_y_features)
            Target cells, columns in the order of ``fit``'s ``source_y``.
        n_neighbors : int, optional
            Defaults to the fitted ``n_neighbors_``.  The fitted ``shrinkage_``
            (chosen for ``n_neighbors_``) applies either way.

        Returns
        -------
        ndarray of shape (n_target, n_x_features)
        """
        self._check_fitted()
        tgt_rep = self.representation_.transform(target)
        shift = transport_shift(coupling, self.source_rep_, tgt_rep)
        return self._infer(coupling, tgt_rep, shift, self.n_neighbors_ if n_neighbors is None else n_neighbors)[0]

    def fit_predict(self, source_x, source_y, target_y, **fit_params):
        """``fit(source_x, source_y, **fit_params).predict(target_y)``."""
        return self.fit(source_x, source_y, **fit_params).predict(target_y)

    # --------------------------------------------------------------- save/load
    def save(self, path) -> None:
        """Save the fitted model to ``path`` (format: see :mod:`cmot._persist`)."""
        from ._persist import save_model

        save_model(self, path)

    @classmethod
    def load(cls, path, *, allow_pickle: bool = False) -> "CMOT":
        """Load a model written by :meth:`save` (``allow_pickle``: see :func:`cmot._persist.load_model`)."""
        from ._persist import load_model

        return load_model(path, allow_pickle=allow_pickle)


def _warn_poorly_mapped(found):
    """The ``PoorlyMappedWarning`` of a predict (pointing at the caller of ``predict``)."""
    if found.query_unlike:
        warnings.warn(
            f"{QUERY_UNLIKE_MESSAGE}. Its cells lie farther from the source cells than source cells "
            "lie from each other, even after removing the offset they share, or vary along directions "
            "the source cells do not; all "
            f"{found.flags.size} are reported poorly mapped and their inferred values are unreliable. "
            "See outliers_ and mapping_score_.",
            PoorlyMappedWarning,
            stacklevel=4,
        )
    elif found.flags.any():
        warnings.warn(
            f"{found.flags.sum()} of {found.flags.size} target cells ({100 * found.flags.mean():.1f}%) are "
            "poorly mapped (unlike every source cell); their inferred values are less reliable. "
            "See the fitted attribute outliers_.",
            PoorlyMappedWarning,
            stacklevel=4,
        )


def _whole_target(target, tgt_rep, rep, p):
    """The target for a transport without a PCA: the cells as given (``tgt_rep`` when they
    are the embedding itself); a query read a chunk at a time needs the Step B/C space."""
    if chunked.row_chunks(target) is None:
        return target
    if getattr(rep, "precomputed", False) or p.get("correction", "transport") == "robust":
        return tgt_rep
    raise ValueError("target_y: a dask array or backed AnnData is read a chunk at a time, but n_pcs=None with "
                     "correction=\"transport\" computes the cost on every shared feature of the whole query; "
                     "fit with n_pcs set (or correction=\"robust\"), or pass the query in memory.")


def _wrap_output(x_hat, tm: Matrix, x_names):
    if tm.kind not in ("dataframe", "anndata"):
        return x_hat
    import pandas as pd

    cols = pd.Index([str(n) for n in x_names]) if x_names is not None else pd.RangeIndex(x_hat.shape[1])
    cells = pd.Index(tm.cell_names)
    if tm.kind == "dataframe":
        return pd.DataFrame(x_hat, index=cells, columns=cols)
    import anndata

    return anndata.AnnData(X=x_hat, obs=pd.DataFrame(index=cells), var=pd.DataFrame(index=cols.astype(str)))
