"""Poorly mapped target cells: cells unlike every source cell, whose inferred X is
less reliable (the fitted ``outliers_`` and ``outlier_scores_`` of :class:`cmot.CMOT`).

Two detectors, chosen by ``outlier_method``:

* ``"distance"`` (default, :func:`poorly_mapped_by_distance`): each target cell's
  distance to its 10th nearest source cell in a PCA fitted on source and target
  together, as a robust z-score against the same distance among source cells;
* ``"isolation_forest"`` (the paper, :func:`poorly_mapped_by_isolation_forest`):
  an IsolationForest on the PCA of coupling x cost.

:func:`detect_poorly_mapped` runs the chosen one and returns a :class:`PoorlyMapped`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .infer import nearest_neighbors
from .representation import make_pca

__all__ = ["PoorlyMapped", "detect_poorly_mapped", "poorly_mapped_by_distance", "poorly_mapped_by_isolation_forest",
           "neighbor_distance_scale", "signal_components", "joint_signal_embedding"]


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


def neighbor_distance_scale(source, *, n_neighbors: int = 10, max_cells: int = 2000, random_state=None):
    """Median and robust spread (1.4826 MAD) of the log distance from source cells to
    their ``n_neighbors``-th nearest other source cell: the reference against which
    :func:`poorly_mapped_by_distance` judges target cells.

    Returns
    -------
    (median, spread) : tuple of float
    """
    n = source.shape[0]
    k = min(n_neighbors, n - 1)
    rng = np.random.default_rng(random_state)
    query = np.sort(rng.choice(n, size=min(n, max_cells), replace=False))
    _, dist = nearest_neighbors(source[query], source, k + 1)  # the first is the cell itself
    logd = np.log(np.maximum(dist[:, k], np.finfo(float).tiny))
    med = float(np.median(logd))
    spread = float(1.4826 * np.median(np.abs(logd - med)))
    return med, spread if spread > 0 else float(np.std(logd) or 1.0)


def poorly_mapped_by_distance(
    target, source, scale, *, threshold: float = 3.5, n_neighbors: int = 10, baseline_quantile: float = 25.0
):
    """Flag target cells far from every source cell, calibrated on the source.

    A target cell's score is the robust z-score of the log distance to its
    ``n_neighbors``-th nearest source cell, against the same distance among
    source cells (``scale`` from :func:`neighbor_distance_scale`).  Unlike an
    outlier detector fitted on the target alone, this flags a whole population
    of a cell type the source lacks, however large, and flags almost nothing
    when the target resembles the source.

    A query from another sample or batch sits apart from the reference as a
    whole, which raises every score.  Scores are therefore counted from the
    target's ``baseline_quantile``-th percentile score when that is above zero:
    an offset shared by most target cells is not taken for unseen cells, while
    a new cell type making up less than ``100 - baseline_quantile`` percent of
    the target still stands out (pbmc10k -> pbmc5k: 54% of cells flagged
    without this, 0.1% with it).

    Returns
    -------
    flags : ndarray of bool, shape (n_target,)
    scores : ndarray of float, shape (n_target,)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = rng.normal(size=(200, 3))
    >>> tgt = np.r_[rng.normal(size=(50, 3)), rng.normal(size=(20, 3)) + 8]
    >>> flags, _ = poorly_mapped_by_distance(tgt, src, neighbor_distance_scale(src))
    >>> int(flags[:50].sum()), int(flags[50:].sum())
    (0, 20)
    """
    med, spread = scale
    k = min(n_neighbors, source.shape[0])
    _, dist = nearest_neighbors(target, source, k)
    logd = np.log(np.maximum(dist[:, k - 1], np.finfo(float).tiny))
    scores = (logd - med) / spread
    if baseline_quantile is not None and scores.size:
        scores = scores - max(0.0, float(np.percentile(scores, baseline_quantile)))
    return scores > threshold, scores


def joint_signal_embedding(source, target, *, max_components: int = 30, random_state=None):
    """Source and target cells in a PCA fitted on both together, on the components above
    the noise (:func:`signal_components`): a PCA of the source alone would project away
    what sets an unseen cell type apart.

    Returns
    -------
    emb_source, emb_target : ndarray
    n_components : int
    """
    both = np.vstack([source, target])
    n, p = both.shape
    pca = make_pca(int(min(max_components, n - 1, p)), both.shape, random_state).fit(both)
    d = signal_components(pca.explained_variance_, n, p, mean_variance=float(both.var(axis=0).mean()))
    emb = pca.transform(both)[:, :d]
    return emb[: source.shape[0]], emb[source.shape[0] :], d


@dataclass
class PoorlyMapped:
    """Poorly mapped target cells: ``flags`` (bool), robust z-``scores`` (higher is worse) and,
    for the distance detector, the ``n_components`` of the joint PCA (else None)."""

    flags: np.ndarray
    scores: np.ndarray
    n_components: int | None = None


def detect_poorly_mapped(method: str, *, source=None, target=None, coupling=None, cost=None, labels=None,
                         threshold=3.5, max_components: int = 30, random_state=None) -> PoorlyMapped:
    """Run the ``method`` detector: "distance" needs ``source`` and ``target`` (cells x
    standardized variable features), "isolation_forest" the ``coupling`` and ``cost``
    (and the source ``labels``).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> src = rng.normal(size=(200, 5))
    >>> tgt = np.r_[rng.normal(size=(60, 5)), rng.normal(size=(15, 5)) + 6]
    >>> res = detect_poorly_mapped("distance", source=src, target=tgt, random_state=0)
    >>> int(res.flags[:60].sum()) <= 1, int(res.flags[60:].sum())
    (True, 15)
    """
    if method == "isolation_forest":
        flags, scores = poorly_mapped_by_isolation_forest(coupling, cost, threshold=threshold, labels=labels,
                                                          random_state=random_state)
        return PoorlyMapped(flags, scores)
    if method != "distance":
        raise ValueError(f"outlier_method: expected \"distance\" or \"isolation_forest\", found {method!r}.")
    emb_s, emb_t, d = joint_signal_embedding(source, target, max_components=max_components,
                                             random_state=random_state)
    scale = neighbor_distance_scale(emb_s, random_state=random_state)
    flags, scores = poorly_mapped_by_distance(emb_t, emb_s, scale, threshold=threshold)
    return PoorlyMapped(flags, scores, d)
