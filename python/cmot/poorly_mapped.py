"""Poorly mapped target cells: cells unlike every source cell, whose inferred X is
less reliable (the fitted ``outliers_``, ``outlier_scores_``, ``mapping_score_`` and
``query_unlike_`` of :class:`cmot.CMOT`).

Two detectors, chosen by ``outlier_method``:

* ``"distance"`` (default, :func:`map_quality`), judged against the reference:
  each target cell's distance to its 10th nearest source cell, in a PCA fitted
  on source and target together (:func:`joint_signal_embedding`), is compared
  with the same distance among reference cells, each left out of its own
  neighbours (:func:`reference_null`): the reference, not the query, says what
  "far" is.  A batch offset that the whole query shares (another donor, another
  run) is first removed (:func:`local_offsets`), estimated with the
  composition-robust shift of :func:`cmot.composition.robust_shift` only from
  query cells that match the reference (trimmed and re-estimated), so that
  neither the offset nor a large population of an unseen cell type biases it;
  no cell has more than twice the median offset removed (:func:`_cap_offsets`).
  What is left of a shared difference, a query whose best-matching quarter
  still lies farther from the reference than the reference's own best quarter
  (a noisier run), is taken off every cell's score (:func:`shared_excess`).  A
  cell is flagged when it lies farther than ``threshold`` robust standard
  deviations from the reference, or when it lies beyond the reference as a
  group (:func:`group_selection`): both the cell and the median of its 10
  nearest target cells lie beyond the largest such median among reference
  cells, neighbours farther from the cell than its 10th nearest reference
  cell counting as not beyond.  An unseen type on a small reference, whose null has a
  short tail, lies only as far as the reference's sparsest corners, and all
  its cells do, closer to each other than to the reference; a known cell in a
  sparse corner has neighbours that do not, or that lie elsewhere.
  A query of at most 10 cells has no groups: a cell beyond the null's 99th
  percentile is flagged there when Benjamini-Hochberg selects it from its
  conformal p-value (:func:`tail_selection`).  The query as a whole is unlike the reference (wrong
  features, other normalization) when its shared offset or its shared excess
  exceeds ``threshold``, when half of it is flagged, or when its cells lie
  outside the reference's signal (:func:`outside_reference_signal`): then every
  cell is flagged.
* ``"isolation_forest"`` (the paper, :func:`poorly_mapped_by_isolation_forest`):
  an IsolationForest on the PCA of coupling x cost.

The **mapping score** of a cell (:func:`distance_scores`), in [0, 1] and higher
for better mapped cells (as Seurat's ``MappingScore`` reads), is ``min(1, 2 p)``
where ``p`` is the share of reference cells that lie at least as far from their
own 10th nearest reference cell as this cell lies from its: 1 for a cell at
least as close to the reference as the median reference cell, 0.1 for one as
isolated as the 5% most isolated reference cells, 0 for a cell farther than any;
the shared excess is taken off first, so that a good query from another donor
reads high.
It is computed with either detector.

**Queries of any size.**  What the detector holds of the query is bounded: the
joint PCA (:func:`joint_signal_embedding`) is fitted on the reference (at most
:data:`DETECTOR_REFERENCE` cells) and at most :data:`DETECTOR_TARGET_CELLS` query
cells (:func:`detector_target`: all of them up to that number, else a seeded
random subset, sorted), and every query cell is then projected onto it a chunk at
a time; :func:`outside_reference_signal` judges the same subset, and
:func:`local_offsets` averages over at most that many query cells (a chunk of
query cells at a time).  The query may be
an array or an object with ``shape``, ``take_rows(rows)`` and ``map_rows(fn)``
(:class:`cmot.chunked.TargetRows`: a query in memory or a dask array, read a chunk
at a time); up to :data:`DETECTOR_TARGET_CELLS` query cells nothing is subsampled.

:func:`detect_poorly_mapped` runs the chosen one and returns a :class:`PoorlyMapped`.
cmot 0.3's distance test, which counted scores from the query's own 25th
percentile and so could not flag a query unlike the reference as a whole, is gone:
the mapping detector replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .composition import robust_shift
from .infer import leave_one_out_neighbors, nearest_neighbors, neighbor_chunk_rows, weighted_average
from .representation import make_pca

__all__ = ["PoorlyMapped", "detect_poorly_mapped", "map_quality", "MappingResult", "reference_null",
           "distance_scores", "local_offsets", "QUERY_UNLIKE_MESSAGE", "poorly_mapped_by_isolation_forest",
           "signal_components", "joint_signal_embedding", "shared_excess", "outside_reference_signal",
           "tail_selection", "group_selection", "detector_reference", "detector_target", "DETECTOR_REFERENCE",
           "DETECTOR_TARGET_CELLS"]

#: The query-level warning.
QUERY_UNLIKE_MESSAGE = "the query as a whole is unlike the reference: check its features and normalization"
#: Share of flagged cells from which the query as a whole is reported unlike the reference.
QUERY_UNLIKE_SHARE = 0.5
#: No target cell has more than this many times the median offset removed (:func:`map_quality`).
OFFSET_CAP = 2.0
#: A cell farther from the reference than this share of reference cells can be flagged below the
#: z threshold, when the false discovery rate allows it (:func:`map_quality`).
NULL_QUANTILE = 0.99
#: False discovery rate of the Benjamini-Hochberg selection in :func:`tail_selection`.
FDR = 0.1
#: Most reference cells whose left-out distances make the null (:func:`reference_null`).
NULL_MAX_CELLS = 2000
#: Percentiles of the query and the null compared by :func:`shared_excess` (its best-matching quarter).
EXCESS_PERCENTILES = (5.0, 10.0, 15.0, 20.0, 25.0)
#: Fewest target cells from which :func:`shared_excess` is estimated: a smaller query is judged as it
#: is (its best quarter would be a handful of cells, and a single cell's excess its whole distance).
MIN_EXCESS_CELLS = 20
#: :func:`outside_reference_signal`: the query is outside when its median share lies below this
#: percentile of the reference's.
SIGNAL_PERCENTILE = 1.0
#: Target cells per chunk of :func:`local_offsets` (rounded to whole blocks of
#: :func:`cmot.infer.nearest_neighbors`): its ``n x 200`` neighbour arrays are held a chunk at a time.
CHUNK_ROWS = 8192


def signal_components(explained_variance, n_samples: int, n_features: int, mean_variance: float) -> int:
    """Number of principal components above the noise: eigenvalues larger than the
    Marchenko-Pastur edge ``mean_variance * (1 + sqrt(n_features / n_samples)) ** 2``,
    the largest eigenvalue that pure noise of that variance reaches (at least 2).

    Distances between cells in the remaining components are mostly noise; they
    drown the few components in which an unseen cell type stands apart when
    features far outnumber cells.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> noise = rng.normal(size=(300, 1000))
    >>> signal = np.repeat(rng.normal(scale=8, size=(3, 1000)), 100, axis=0)
    >>> from sklearn.decomposition import PCA
    >>> ev = PCA(20).fit(noise + signal).explained_variance_
    >>> signal_components(ev, 300, 1000, mean_variance=1.0)
    2
    """
    ev = np.asarray(explained_variance, dtype=np.float64)
    edge = mean_variance * (1.0 + np.sqrt(n_features / n_samples)) ** 2
    return int(min(len(ev), max(2, np.sum(ev > edge))))


def poorly_mapped_by_isolation_forest(
    coupling,
    cost,
    *,
    threshold: float = 3.5,
    max_components: int = 50,
    variance: float = 0.95,
    labels=None,
    random_state=None,
):
    """Flag target cells whose coupling looks unlike the rest.

    As in the paper, ``P = (coupling * cost).T`` (targets x sources) is reduced by
    PCA to the components explaining ``variance`` of its variance (at most
    ``max_components``) and scored by an IsolationForest.  Departure from the
    reference code: instead of IsolationForest's fixed ``contamination`` cut,
    which flags a fixed share of cells whatever the data, a cell is flagged when
    its anomaly score lies more than ``threshold`` robust standard deviations
    (1.4826 MAD) above the median score; with no new cell type this flags
    almost nothing, and a cell type absent from the source stands out.

    Parameters
    ----------
    coupling, cost : ndarray of shape (n_source, n_target)
    threshold : float
        Robust z-score above which a cell is flagged. ``np.inf`` flags none.
    max_components : int
        Largest number of principal components kept.
    variance : float
        Share of variance the kept components should explain.
    labels : array-like of shape (n_source,), optional
        Source labels: the source cells are then taken grouped by label (stable),
        the order in which the solver sees them, so that the randomized PCA of
        large problems gives the same components as it always has.
    random_state : int, RandomState or None

    Returns
    -------
    flags : ndarray of bool, shape (n_target,)
    scores : ndarray of float, shape (n_target,)
        Robust z-scores of the IsolationForest anomaly score (higher: worse).
    """
    from sklearn.ensemble import IsolationForest

    p = coupling * cost
    if labels is not None:
        p = p[np.argsort(np.unique(labels, return_inverse=True)[1], kind="stable")]
    p = p.T
    p = p * (1.0 / max(np.abs(p).max(), np.finfo(float).tiny))  # scale-free, avoids tiny numbers
    nt, ns = p.shape
    n_comp = int(min(max_components, nt - 1, ns))
    if n_comp < 1:
        return np.zeros(nt, dtype=bool), np.zeros(nt)
    pca = make_pca(n_comp, p.shape, random_state)
    z = pca.fit_transform(p)
    total = float(np.var(p, axis=0).sum()) or 1.0
    cum = np.cumsum(pca.explained_variance_) / total
    keep = int(np.searchsorted(cum, variance) + 1)
    z = z[:, : max(1, min(keep, n_comp))]
    forest = IsolationForest(random_state=random_state).fit(z)
    raw = -forest.score_samples(z)
    med = np.median(raw)
    mad = 1.4826 * np.median(np.abs(raw - med))
    scores = (raw - med) / (mad if mad > 0 else 1.0)
    return scores > threshold, scores


def reference_null(source, *, n_neighbors: int = 10, max_cells: int = NULL_MAX_CELLS, random_state=None) -> np.ndarray:
    """Log distance of (at most ``max_cells`` random) reference cells to their
    ``n_neighbors``-th nearest *other* reference cell, sorted: the null against which
    query cells are judged.

    Examples
    --------
    >>> import numpy as np
    >>> reference_null(np.array([[0.0], [1.0], [3.0]]), n_neighbors=1).round(3).tolist()
    [0.0, 0.0, 0.693]
    """
    return np.sort(_reference_distances(source, n_neighbors, max_cells, random_state)[1])


def _reference_distances(source, n_neighbors, max_cells, random_state):
    """The null's reference cells (row indices, sorted) and their left-out log distances
    (:func:`reference_null`, unsorted)."""
    source = np.asarray(source, dtype=np.float64)
    n = source.shape[0]
    if n < 2:
        raise ValueError(f"source: expected at least 2 reference cells, found {n}.")
    k = min(int(n_neighbors), n - 1)
    rows, _, dist = leave_one_out_neighbors(source, k, max_cells=max_cells, random_state=random_state)
    return rows, np.log(np.maximum(dist[:, k - 1], np.finfo(float).tiny))


def distance_scores(target, source, null, *, n_neighbors: int = 10, excess: float = 0.0):
    """Robust z-score (higher: farther) and mapping score (in [0, 1], higher: better)
    of each target cell's log distance to its ``n_neighbors``-th nearest source cell,
    against ``null`` (:func:`reference_null`), ``excess`` robust standard deviations
    (a difference the whole target shares, :func:`shared_excess`) taken off first.

    Returns
    -------
    z : ndarray of shape (n_target,)
        ``(log d - median(null)) / (1.4826 MAD(null)) - excess``.
    score : ndarray of shape (n_target,)
        ``min(1, 2 p)``, ``p`` the share of ``null`` at or above ``log d`` (less the excess).

    Examples
    --------
    >>> import numpy as np
    >>> src = np.random.default_rng(0).normal(size=(300, 2))
    >>> z, s = distance_scores(np.array([[0.0, 0.0], [9.0, 9.0]]), src, reference_null(src))
    >>> bool(z[0] < 1 < 3.5 < z[1]), s.round(2).tolist()
    (True, [1.0, 0.0])
    """
    return _scores_of(_kth_log_distance(target, source, n_neighbors), null, excess)


def _kth_log_distance(target, source, n_neighbors):
    """Each target cell's log distance to its ``n_neighbors``-th nearest source cell."""
    k = min(int(n_neighbors), source.shape[0])
    _, dist = nearest_neighbors(target, source, k)
    return np.log(np.maximum(dist[:, k - 1], np.finfo(float).tiny))


def _scores_of(logd, null, excess: float = 0.0):
    """:func:`distance_scores` of the log distances ``logd``."""
    null = np.sort(np.asarray(null, dtype=np.float64))
    med, spread = _center_spread(null)
    logd = logd - float(excess) * spread
    above = null.size - np.searchsorted(null, logd, side="left")
    score = np.minimum(1.0, 2.0 * above / null.size)
    return (logd - med) / spread, score


def _center_spread(null):
    """Median and robust standard deviation (1.4826 MAD; else the sd; else 1) of ``null``."""
    med = float(np.median(null))
    return med, float(1.4826 * np.median(np.abs(null - med))) or float(np.std(null)) or 1.0


def shared_excess(z, null_z) -> float:
    """How much farther from the reference the target's best-matching quarter lies than
    the reference's own: the median, over the 5th to 25th percentiles, of the target's
    percentile of ``z`` less the null's (``null_z``, on the same scale), at least 0.

    A query from another donor or run, with its offset removed, can still lie a little
    farther from the reference cells than they lie from each other (noisier cells);
    that difference is the whole query's and is taken off every cell's score.  The
    lower quarter is used so that an unseen population, even 40% of the query,
    does not count.  A target of fewer than ``MIN_EXCESS_CELLS`` (20) cells has
    none: its best quarter would be a few cells, a single cell's its whole distance.

    Examples
    --------
    >>> import numpy as np
    >>> null = np.random.default_rng(0).normal(size=1000)
    >>> round(shared_excess(null[:500] + 1.0, null), 1), shared_excess(null[:500] - 1.0, null)
    (1.0, 0.0)
    """
    if len(z) < MIN_EXCESS_CELLS:
        return 0.0
    q = np.asarray(EXCESS_PERCENTILES)
    return max(0.0, float(np.median(np.percentile(z, q) - np.percentile(null_z, q))))


def local_offsets(target, source, shift, use, bandwidth: float, *, max_cells: int | None = None,
                  random_state=None):
    """Each target cell's offset from the reference: the Gaussian-weighted mean, over the
    used target cells near it, of their transport vectors ``d_j = t_j - (mean of the
    source mass they receive)``, shrunk as in :func:`cmot.composition.shrunk_displacement`
    (positive-part James-Stein on the effective number of those cells).

    A batch effect that differs between cell types is removed type by type; a
    population no used cell is near (an unseen type) keeps its distance.
    ``shift`` is the :class:`cmot.composition.ShiftResult` of the used cells.  The
    offsets are averaged over at most ``max_cells`` used cells (default
    :data:`DETECTOR_TARGET_CELLS`; a seeded random subset above it, so the work
    grows linearly with the query) and computed a chunk of target cells at a time.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = rng.normal(size=(200, 3))
    >>> tgt = src[:100] + [0, 0, 4.0]
    >>> use = np.ones(100, bool)
    >>> from cmot.composition import robust_shift
    >>> off = local_offsets(tgt, src, robust_shift(src, tgt), use, 2.0)
    >>> bool(np.all(off[:, 2] > 2))
    True
    """
    target = np.asarray(target, dtype=np.float64)
    cols = np.flatnonzero(use)
    coupling = shift.coupling
    rows = np.flatnonzero(shift.source_weights > 0)
    received = np.asarray(coupling.sum(axis=0), dtype=np.float64).ravel()
    received[received == 0] = 1.0
    d = target[cols] - np.asarray(coupling.T @ source[rows], dtype=np.float64) / received[:, None]
    keep = _seeded_rows(len(cols), DETECTOR_TARGET_CELLS if max_cells is None else int(max_cells), random_state)
    used, d = target[cols[keep]], d[keep]
    k = min(200, len(keep))
    # whole blocks of nearest_neighbors' query rows per chunk: the same distances as in one piece
    block = neighbor_chunk_rows(used.shape[0])
    step = block * max(1, CHUNK_ROWS // block)
    return np.concatenate([_offsets_of(target[a:a + step], used, d, k, bandwidth)
                           for a in range(0, max(target.shape[0], 1), step)], axis=0)


def _offsets_of(target, used, d, k, bandwidth):
    """:func:`local_offsets` of the rows ``target``: ``d`` the transport vectors of the ``used`` cells."""
    idx, dist = nearest_neighbors(target, used, k)
    w = np.exp(-0.5 * (dist / bandwidth) ** 2)
    wsum = w.sum(axis=1)
    ok = wsum > 1e-12
    w[ok] /= wsum[ok, None]
    w[~ok] = 0.0
    mean = weighted_average(d, idx, w)  # (no n x k x dims array)
    noise = np.einsum("na,na->n", w, np.einsum("ad,ad->a", d, d)[idx])
    n_eff = np.where(ok, 1.0 / np.maximum(np.einsum("na,na->n", w, w), 1e-300), 0.0)
    sq = np.einsum("nd,nd->n", mean, mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(ok & (sq > 0), 1.0 - noise / (n_eff * sq), 0.0)
    return mean * np.clip(factor, 0.0, 1.0)[:, None]


def tail_selection(logd, null, *, fdr: float = FDR) -> np.ndarray:
    """Target cells that Benjamini-Hochberg selects at false discovery rate ``fdr`` from
    their conformal p-values ``(1 + #{null >= logd}) / (1 + len(null))``: the share of
    reference cells at least as isolated.

    Reference cells are as isolated as each other's tails, so about 1% of the cells
    of a known type lie beyond the null's 99th percentile; a few such cells are
    not selected (their p-values are what chance gives among that many cells),
    while a group of cells beyond the reference's tail, an unseen type, is.

    Examples
    --------
    >>> import numpy as np
    >>> null = np.arange(100.0)
    >>> tail_selection(np.r_[np.arange(95.0), 99.5], null).sum()  # one cell in the tail: chance
    0
    >>> int(tail_selection(np.r_[np.arange(90.0), np.full(10, 99.5)], null).sum())  # ten: selected
    10
    """
    null = np.sort(np.asarray(null, dtype=np.float64))
    logd = np.asarray(logd, dtype=np.float64)
    m = logd.size
    if m == 0:
        return np.zeros(0, dtype=bool)
    pval = (1.0 + null.size - np.searchsorted(null, logd, side="left")) / (1.0 + null.size)
    ranked = np.sort(pval)
    passed = np.flatnonzero(ranked <= fdr * np.arange(1, m + 1) / m)
    if passed.size == 0:
        return np.zeros(m, dtype=bool)
    return pval <= ranked[passed[-1]]


def group_selection(target, z, null_cells, null_z, *, radius=None, n_neighbors: int = 10,
                    max_cells: int | None = None, random_state=None):
    """Target cells that lie beyond the reference together with the target cells around
    them: the median ``z`` of a cell's ``n_neighbors`` nearest target cells (itself
    included) and its own ``z`` both exceed the largest such median among the
    reference cells of the null (``null_cells``, with their left-out ``null_z``, each
    with its ``n_neighbors`` nearest of them): the group lies farther from the
    reference than any group of reference cells lies from the rest.

    With ``radius`` (each target cell's distance to its ``n_neighbors``-th nearest
    reference cell, from which its ``z`` comes), a neighbour farther from the cell
    than that counts as not beyond the reference (its ``z`` as ``-inf``): a group
    lies closer to its own cells than to the reference.  In a small query the
    nearest target cells of a known cell can be those of an unseen type lying
    elsewhere; without the radius they would make it a member of their group.
    Among reference cells the rule changes nothing: their ``n_neighbors`` nearest
    reference cells lie within their own ``n_neighbors``-th distance.

    A population of an unseen type on a small reference can lie only as far from the
    reference as its most isolated cells (whose distance to their 10th neighbour is
    as large as the reference's sparsest corners reach), so no threshold on single
    cells separates it; its cells and most of their neighbours are all that far,
    while a known cell in a sparse corner has neighbours that are not (the median
    needs more than half of them).  The target
    neighbours are searched among at most ``max_cells`` (default
    :data:`DETECTOR_TARGET_CELLS`) target cells (a seeded subset): the work grows
    linearly with the target.  Returns None for a target of
    at most ``n_neighbors`` cells (no group to judge: :func:`tail_selection`
    judges them).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ref = rng.normal(size=(300, 2))
    >>> null_z = rng.normal(size=300)
    >>> tgt = np.r_[rng.normal(size=(40, 2)), rng.normal(size=(20, 2)) + 8]
    >>> z = np.r_[np.full(40, 0.0), np.full(20, 2.5)]  # the group: within the null's range, together
    >>> z[0] = 2.5  # a known cell as isolated, alone in its corner
    >>> sel = group_selection(tgt, z, ref, null_z, random_state=0)
    >>> int(sel[:40].sum()), int(sel[40:].sum())
    (0, 20)

    A small query: five known cells, one of them as isolated as the group, whose
    nearest query cells are mostly the group's; with the radius only the group.

    >>> small = np.r_[rng.normal(size=(5, 2)), rng.normal(size=(12, 2)) + 8]
    >>> zs = np.r_[2.5, np.zeros(4), np.full(12, 2.5)]
    >>> radius = nearest_neighbors(small, ref, 10)[1][:, -1]
    >>> int(group_selection(small, zs, ref, null_z, random_state=0)[0])
    1
    >>> sel = group_selection(small, zs, ref, null_z, radius=radius, random_state=0)
    >>> int(sel[:5].sum()), int(sel[5:].sum())
    (0, 12)
    """
    z = np.asarray(z, dtype=np.float64)
    k = int(n_neighbors)
    if z.size <= k:
        return None
    ref_idx, _ = nearest_neighbors(null_cells, null_cells, min(k, null_cells.shape[0]))
    cut = float(np.max(np.median(np.asarray(null_z, dtype=np.float64)[ref_idx], axis=1)))
    rows = _seeded_rows(z.size, DETECTOR_TARGET_CELLS if max_cells is None else int(max_cells), random_state)
    idx, dist = nearest_neighbors(target, target[rows], k)
    around = z[rows][idx]
    if radius is not None:
        around = np.where(dist <= np.asarray(radius, dtype=np.float64)[:, None], around, -np.inf)
    return (np.median(around, axis=1) > cut) & (z > cut)


@dataclass
class MappingResult:
    """Result of :func:`map_quality`.

    Attributes
    ----------
    flags : ndarray of bool
        Poorly mapped target cells.
    z : ndarray of float
        Robust z-scores (higher: farther from the reference), the shared excess taken off.
    score : ndarray of float
        Mapping scores in [0, 1] (higher: better mapped).
    offset : ndarray of shape (n_target, n_dims)
        The offset removed from each target cell before scoring.
    offset_z : float
        The median offset length on the z scale of the reference's own distances.
    query_unlike : bool
        The query as a whole is unlike the reference.
    excess : float
        The shared excess (:func:`shared_excess`) taken off every z.
    threshold : float
        The lower of ``threshold`` and the null's 99th percentile (z scale): the
        offset is estimated from the cells below it; in a target of at most
        ``n_neighbors`` cells, cells between it and ``threshold`` are flagged when
        :func:`tail_selection` selects them.
    """

    flags: np.ndarray
    z: np.ndarray
    score: np.ndarray
    offset: np.ndarray
    offset_z: float
    query_unlike: bool
    excess: float = 0.0
    threshold: float = 3.5


def map_quality(source, target, *, threshold: float = 3.5, n_neighbors: int = 10, n_rounds: int = 4,
                max_cells: int = 2000, query_unlike: bool = False, random_state=None) -> MappingResult:
    """Flag and score target cells against the reference (see the module docstring).

    A cell is flagged when its z exceeds ``threshold``, or when
    :func:`group_selection` selects it (a target of more than ``n_neighbors``
    cells), or else when its z exceeds the null's ``NULL_QUANTILE`` (99th)
    percentile and :func:`tail_selection` selects it among the cells within
    ``threshold``.
    The shared offset is estimated by :func:`cmot.composition.robust_shift` (on at most
    ``max_cells`` reference cells) from the target cells below that in the
    previous round (in the first, also the best-matching quarter),
    ``n_rounds`` times.  No cell has more than ``OFFSET_CAP`` (2) times the
    median offset removed: the offset is what the target shares, so an
    unseen population lying just within the threshold does not have its whole
    displacement removed as a local offset.  Then the shared excess
    (:func:`shared_excess`) is taken off.  A target whose offset or excess
    lies beyond ``threshold`` on the reference's z scale, whose cells are
    flagged for at least half, or that is given as ``query_unlike``, is unlike
    the reference as a whole: every cell is flagged and scored as it is
    (no offset, no excess).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = np.r_[rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + [6, 0, 0]]
    >>> tgt = np.r_[rng.normal(size=(60, 3)), rng.normal(size=(20, 3)) + [0, 9, 0]] + [0, 0, 1.0]
    >>> res = map_quality(src, tgt, random_state=0)
    >>> int(res.flags[:60].sum()), int(res.flags[60:].sum()), res.query_unlike
    (0, 20, False)
    >>> map_quality(src, tgt + 100, random_state=0).query_unlike
    True
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    null_rows, null_logd = _reference_distances(source, n_neighbors, NULL_MAX_CELLS, random_state)
    null = np.sort(null_logd)
    med, spread = _center_spread(null)
    thr = min(float(threshold), (float(np.quantile(null, NULL_QUANTILE)) - med) / spread)
    logd0 = _kth_log_distance(target, source, n_neighbors)
    offset, logd = _shared_offset(source, target, null, logd0, thr, n_neighbors, n_rounds, max_cells, random_state)
    moved = target - offset
    if logd is None:  # one search per offset: the excess only shifts the scores
        logd = _kth_log_distance(moved, source, n_neighbors)
    z, _ = _scores_of(logd, null)
    excess = shared_excess(z, (null - med) / spread) if z.size else 0.0
    z, score = _scores_of(logd, null, excess)
    size = float(np.median(np.linalg.norm(offset, axis=1))) if offset.size else 0.0
    offset_z = (np.log(size) - med) / spread if size > 0 else -np.inf
    flags = z > threshold
    # below it, the cells that lie beyond the reference as a group
    group = group_selection(moved, z, source[null_rows], (null_logd - med) / spread, radius=np.exp(logd),
                            n_neighbors=n_neighbors, random_state=random_state)
    if group is None:  # a handful of cells: those beyond the null's 99th percentile that stand out together
        rest = np.flatnonzero(~flags)
        flags[rest] = (z[rest] > thr) & tail_selection(z[rest] * spread + med, null)
    else:
        flags |= group
    unlike = bool(query_unlike or offset_z > threshold or excess > threshold
                  or (flags.size and flags.mean() >= QUERY_UNLIKE_SHARE))
    if unlike:
        z, score = _scores_of(logd0, null)
        flags = np.ones(target.shape[0], dtype=bool)
    return MappingResult(flags, z, score, offset, float(offset_z), unlike, float(excess), float(thr))


def _shared_offset(source, target, null, logd0, thr, n_neighbors, n_rounds, max_cells, random_state):
    """The offset removed from each target cell (:func:`map_quality`), and the log distances
    of the target so moved (:func:`_kth_log_distance`) where a round already searched them
    (else None).  ``logd0``: those of the target as it is."""
    z0, _ = _scores_of(logd0, null)
    bandwidth = float(np.exp(np.median(null)))
    # the offset from at most max_cells reference cells (a fixed subset: the query does not choose it)
    rng = np.random.default_rng(random_state)
    sub = source if source.shape[0] <= max_cells else source[np.sort(rng.choice(source.shape[0], max_cells, False))]
    # seed the offset with the cells that already match (at least the best-matching quarter)
    use = z0 <= max(thr, float(np.percentile(z0, 25))) if z0.size else z0.astype(bool)
    offset, logd = np.zeros_like(target), logd0
    for i in range(max(1, int(n_rounds))):
        if not use.any():
            break
        res = robust_shift(sub, target, target_weights=use.astype(float), max_inner_iter=200)
        offset = _cap_offsets(local_offsets(target, sub, res, use, bandwidth, random_state=random_state))
        logd = None
        if i + 1 < n_rounds:
            logd = _kth_log_distance(target - offset, source, n_neighbors)
            new_use = _scores_of(logd, null)[0] <= thr
            if np.array_equal(new_use, use):  # the next round would compute this offset again
                break
            use = new_use
    return offset, logd


def _cap_offsets(offset, cap: float = OFFSET_CAP):
    """Each row of ``offset`` shortened to at most ``cap`` times the median row length."""
    size = np.linalg.norm(offset, axis=1)
    limit = cap * float(np.median(size)) if size.size else 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        shrink = np.where(size > limit, limit / size, 1.0)
    return offset * shrink[:, None]


def joint_signal_embedding(source, target, *, max_components: int = 30, sample=None, random_state=None):
    """Source and target cells in a PCA fitted on the source and (at most
    :data:`DETECTOR_TARGET_CELLS` of) the target cells together, on the components above
    the noise (:func:`signal_components`): a PCA of the source alone would project away
    what sets an unseen cell type apart.

    Parameters
    ----------
    source : ndarray of shape (n_source, n_features)
    target : ndarray of shape (n_target, n_features), or rows read a chunk at a time
        (``shape``, ``take_rows``, ``map_rows``: see the module docstring).
    max_components : int
    sample : ndarray, optional
        The target cells the PCA is fitted on; default: :func:`detector_target`'s rows of ``target``.
    random_state : int or None

    Returns
    -------
    emb_source, emb_target : ndarray
        Every source and every target cell projected.
    n_components : int

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src, tgt = rng.normal(size=(100, 40)), rng.normal(size=(30, 40)) + np.r_[8.0, np.zeros(39)]
    >>> emb_s, emb_t, d = joint_signal_embedding(src, tgt, random_state=0)
    >>> emb_s.shape[0], emb_t.shape[0], bool(abs(emb_t[:, 0].mean() - emb_s[:, 0].mean()) > 6)
    (100, 30, True)
    """
    target = target if hasattr(target, "take_rows") else np.asarray(target, dtype=np.float64)
    if sample is None:
        sample = _take_rows(target, detector_target(target.shape[0], random_state))
    both = np.vstack([source, sample])
    n, p = both.shape
    pca = make_pca(int(min(max_components, n - 1, p)), both.shape, random_state, copy=False,
                   gram=True).fit(both)  # overwrites both
    d = signal_components(pca.explained_variance_, n, p, mean_variance=_mean_variance(pca))
    emb_source = pca.transform(source)[:, :d]
    emb_target = _map_rows(target, lambda rows: pca.transform(rows)[:, :d])
    return emb_source, emb_target, d


def _mean_variance(pca) -> float:
    """The mean variance (``ddof=0``) of the features a :class:`cmot._pca.PCA` was fitted on."""
    n = pca.n_samples_
    return pca.total_variance_ * (n - 1) / n / pca.n_features_in_


def _take_rows(target, rows) -> np.ndarray:
    """Rows ``rows`` of ``target`` (an array, or rows read a chunk at a time)."""
    if hasattr(target, "take_rows"):
        return target.take_rows(rows)
    return np.asarray(target)[rows]


def _map_rows(target, fn) -> np.ndarray:
    """``fn`` of every row of ``target`` (an array, or a chunk at a time), concatenated."""
    if hasattr(target, "map_rows"):
        return target.map_rows(fn)
    return fn(np.asarray(target))


def outside_reference_signal(source, target, *, max_components: int = 30, max_cells: int = 2000,
                             random_state=None):
    """Whether the target cells lie outside the reference's signal: the share of each
    cell's (centred) squared norm that the reference's principal components above the
    noise (:func:`signal_components`) explain, for the target against the same share
    of reference cells left out of the PCA.

    The reference is split in two random halves (at most ``max_cells`` cells each);
    the PCA is fitted on one and the null is the other.  ``target`` holds the
    cells judged: :func:`detect_poorly_mapped` passes at most
    :data:`DETECTOR_TARGET_CELLS` (:func:`detector_target`).  A target whose median share
    lies below the null's ``SIGNAL_PERCENTILE`` (1st) percentile is outside: its
    cells vary along directions the reference does not (misordered features,
    another modality), even where it lies near the reference in a PCA that the
    target itself shaped.

    Returns
    -------
    outside : bool
    target_share : float
        The target's median share.
    null_share : float
        The null's ``SIGNAL_PERCENTILE`` percentile.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> centres = rng.normal(scale=0.5, size=(4, 300))
    >>> src = rng.normal(size=(400, 300)) + np.repeat(centres, 100, axis=0)
    >>> tgt = rng.normal(size=(80, 300)) + np.repeat(centres, 20, axis=0)
    >>> outside_reference_signal(src, tgt, random_state=0)[0]
    False
    >>> outside_reference_signal(src, tgt[:, rng.permutation(300)], random_state=0)[0]
    True
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    n, p = source.shape
    if n < 6 or target.shape[0] == 0:
        return False, float("nan"), float("nan")
    order = np.random.default_rng(random_state).permutation(n)
    half = min(n // 2, int(max_cells))
    fit, held = source[order[:half]], source[order[half: 2 * half]]  # copies
    pca = make_pca(int(min(max_components, half - 1, p)), fit.shape, random_state, copy=False,
                   gram=True).fit(fit)  # overwrites fit
    d = signal_components(pca.explained_variance_, half, p, mean_variance=_mean_variance(pca))

    def share(x):
        xc = x - pca.mean_
        total = np.einsum("ij,ij->i", xc, xc)
        proj = xc @ pca.components_[:d].T
        return np.einsum("ij,ij->i", proj, proj) / np.maximum(total, np.finfo(float).tiny)

    target_share = float(np.median(share(target)))
    null_share = float(np.percentile(share(held), SIGNAL_PERCENTILE))
    return bool(target_share < null_share), target_share, null_share


@dataclass
class PoorlyMapped:
    """Poorly mapped target cells: ``flags`` (bool), robust z-``scores`` (higher is worse),
    for the distance detector the ``n_components`` of the joint PCA (else None), the
    ``mapping_score`` (in [0, 1], higher is better) and whether the query as a whole is
    unlike the reference (``query_unlike``)."""

    flags: np.ndarray
    scores: np.ndarray
    n_components: int | None = None
    mapping_score: np.ndarray | None = None
    query_unlike: bool = False


#: The distance detector judges the query against at most this many reference cells (a
#: seeded random subset above it): query distances and their null come from the same cells.
DETECTOR_REFERENCE = 20_000
#: The detector's joint PCA (:func:`joint_signal_embedding`), the test of the reference's
#: signal (:func:`outside_reference_signal`), the local offsets (:func:`local_offsets`) and the
#: neighbourhoods of :func:`group_selection` see at most this many query cells (a seeded random
#: subset above it); every query cell is then projected and scored.
DETECTOR_TARGET_CELLS = 20_000


def _seeded_rows(n: int, cap: int, random_state) -> np.ndarray:
    """All of ``n`` rows up to ``cap``, else a seeded random subset of ``cap`` rows (sorted)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, cap, replace=False))


def detector_reference(n_source: int, random_state=None):
    """Rows of the reference the distance detector uses: all of them up to
    :data:`DETECTOR_REFERENCE`, else a seeded random subset of that size (sorted).

    Examples
    --------
    >>> detector_reference(5).tolist()
    [0, 1, 2, 3, 4]
    >>> detector_reference(50_000, random_state=0).size
    20000
    """
    return _seeded_rows(n_source, DETECTOR_REFERENCE, random_state)


def detector_target(n_target: int, random_state=None):
    """Rows of the query the detector's joint PCA is fitted on: all of them up to
    :data:`DETECTOR_TARGET_CELLS`, else a seeded random subset of that size (sorted).

    Examples
    --------
    >>> detector_target(3).tolist()
    [0, 1, 2]
    >>> rows = detector_target(100_000, random_state=0)
    >>> rows.size, bool(np.all(np.diff(rows) > 0))
    (20000, True)
    """
    return _seeded_rows(n_target, DETECTOR_TARGET_CELLS, random_state)


def detect_poorly_mapped(method: str, *, source=None, target=None, coupling=None, cost=None, labels=None,
                         threshold=3.5, max_components: int = 30, random_state=None) -> PoorlyMapped:
    """Run the ``method`` detector: "distance" needs ``source`` and ``target`` (cells x
    standardized variable features; ``target`` an array or rows read a chunk at a time,
    see the module docstring), "isolation_forest" the ``coupling`` and ``cost``
    (and the source ``labels``) and, for the mapping score and the query-level check,
    ``source`` and ``target`` too when given.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = rng.normal(size=(200, 5))
    >>> tgt = np.r_[rng.normal(size=(60, 5)), rng.normal(size=(15, 5)) + 6]
    >>> res = detect_poorly_mapped("distance", source=src, target=tgt, random_state=0)
    >>> int(res.flags[:60].sum()) <= 1, int(res.flags[60:].sum()), res.query_unlike
    (True, 15, False)
    >>> bool(res.mapping_score[60:].max() < 0.05 < 0.5 < np.median(res.mapping_score[:60]))
    True
    """
    if method not in ("distance", "isolation_forest"):
        raise ValueError(f"outlier_method: expected \"distance\" or \"isolation_forest\", found {method!r}.")
    mapped = d = None
    if source is not None and target is not None:
        target = target if hasattr(target, "take_rows") else np.asarray(target, dtype=np.float64)
        sample = _take_rows(target, detector_target(target.shape[0], random_state))
        emb_s, emb_t, d = joint_signal_embedding(source, target, max_components=max_components, sample=sample,
                                                 random_state=random_state)
        outside = outside_reference_signal(source, sample, max_components=max_components,
                                           random_state=random_state)[0]
        mapped = map_quality(emb_s, emb_t, threshold=threshold, query_unlike=outside, random_state=random_state)
    if method == "isolation_forest":
        flags, scores = poorly_mapped_by_isolation_forest(coupling, cost, threshold=threshold, labels=labels,
                                                          random_state=random_state)
        if mapped is None:
            return PoorlyMapped(flags, scores)
        return PoorlyMapped(flags, scores, d, mapped.score, mapped.query_unlike)
    return PoorlyMapped(mapped.flags, mapped.z, d, mapped.score, mapped.query_unlike)
