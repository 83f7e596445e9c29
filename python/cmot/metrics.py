"""Scores of inferred against measured profiles, as used in the CMOT paper.

* cell-wise and feature-wise Pearson correlation (genes, proteins);
* feature-wise AUROC of binarized profiles (chromatin peaks), with
  :func:`binarize` for the paper's min-max normalization and 0.5 cut;
* AUPRC of marker features for classifying each label against the rest;
* silhouette of the profiles by label (do inferred profiles separate cell types?);
* the one-sided Wilcoxon test that one method's scores beat another's.

Every function takes cells as rows and accepts numpy arrays, scipy sparse
matrices, pandas DataFrames and AnnData objects (sparse input is densified).
When both matrices carry cell or feature names (DataFrame, AnnData), the
prediction is reordered to the measured matrix's names.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from ._utils import duplicated, match_names
from ._validation import as_matrix, check_int, check_labels

__all__ = [
    "cellwise_pearson",
    "featurewise_pearson",
    "binarize",
    "featurewise_auroc",
    "marker_auprc",
    "silhouette_by_label",
    "wilcoxon_greater",
    "WilcoxonResult",
    "summary",
]

WilcoxonResult = namedtuple("WilcoxonResult", ["statistic", "pvalue", "n_greater", "n_less", "n"])
WilcoxonResult.__doc__ = """Result of :func:`wilcoxon_greater`.

statistic, pvalue : the test's statistic and one-sided p-value;
n_greater, n_less : pairs where a > b and where a < b (paired test), or
cells of a above / below the median of b (unpaired);
n : pairs (or values of a) used, NaN dropped."""


def _align_names(true_names, pred_names, what, axis_name):
    """Index into pred that puts it in the order of true (None when no reordering is needed).

    Names in the same order need no matching (duplicates allowed); otherwise both
    sides must hold the same unique names (:func:`cmot._utils.match_names`).
    """
    if true_names is None or pred_names is None:
        return None
    t = [str(v) for v in true_names]
    p = [str(v) for v in pred_names]
    if t == p:
        return None
    if set(t) != set(p) and not (duplicated(t) or duplicated(p)):
        missing = [v for v in t if v not in set(p)]
        raise ValueError(
            f"y_true and y_pred: expected the same {what} names, found {len(missing)} {what}s of y_true "
            f"missing from y_pred ({', '.join(missing[:5])}) [{axis_name}]."
        )
    return match_names(t, p, "y_true", what, found_arg="y_pred")


def _pair(y_true, y_pred, names=("y_true", "y_pred")):
    """Validate two matrices of the same cells and features; return dense arrays."""
    a = as_matrix(y_true, names[0], allow_sparse=False)
    b = as_matrix(y_pred, names[1], allow_sparse=False)
    if a.shape != b.shape:
        raise ValueError(
            f"{names[0]} and {names[1]}: expected the same shape (cells x features), "
            f"found {a.shape} and {b.shape}."
        )
    pred = b.data
    rows = _align_names(a.cell_names, b.cell_names, "cell", "rows")
    cols = _align_names(a.feature_names, b.feature_names, "feature", "columns")
    if rows is not None:
        pred = pred[rows]
    if cols is not None:
        pred = pred[:, cols]
    return a.data, pred, a


def _check_cell_labels(labels, n):
    """``labels`` as a 1-D array with one label per cell (row)."""
    arr = np.asarray(labels) if not hasattr(labels, "columns") else None
    if arr is not None and arr.ndim == 1 and arr.shape[0] != n:
        raise ValueError(f"labels: expected one label per cell ({n}), found {arr.shape[0]} labels.")
    return check_labels(labels, n, "labels")


def _rowwise_pearson(a, b):
    """Pearson r of matching rows; NaN where either row is constant (its centred values
    need not be exactly 0 in floating point, so constancy is tested on the values)."""
    const = (np.ptp(a, axis=1) == 0) | (np.ptp(b, axis=1) == 0)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", a, b)
    den = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = num / den
    r[const | ~(den > 0)] = np.nan
    return np.clip(r, -1.0, 1.0)


def cellwise_pearson(y_true, y_pred) -> np.ndarray:
    """Pearson correlation between measured and inferred profiles of each cell (row).

    Parameters
    ----------
    y_true : array-like, sparse matrix, DataFrame or AnnData, shape (n_cells, n_features)
        Measured profiles.
    y_pred : same type and shape as ``y_true``
        Inferred profiles.

    Returns
    -------
    r : ndarray of shape (n_cells,)
        NaN for a cell whose measured or inferred profile is constant.

    Raises
    ------
    ValueError
        If the shapes differ, or the names (when both have them) do not match.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]])
    >>> cellwise_pearson(y, y).tolist()
    [1.0, 1.0]
    >>> cellwise_pearson(y, -y).tolist()
    [-1.0, -1.0]
    """
    a, b, _ = _pair(y_true, y_pred)
    return _rowwise_pearson(a, b)


def featurewise_pearson(y_true, y_pred) -> np.ndarray:
    """Pearson correlation between measured and inferred values of each feature (column), across cells.

    Parameters
    ----------
    y_true, y_pred : array-like, sparse matrix, DataFrame or AnnData, shape (n_cells, n_features)

    Returns
    -------
    r : ndarray of shape (n_features,)
        NaN for a feature that is constant across cells in ``y_true`` or in
        ``y_pred`` (its correlation is undefined); use ``np.nanmean`` to average.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[1.0, 5.0, 0.0], [2.0, 5.0, 1.0], [3.0, 5.0, 0.0]])
    >>> featurewise_pearson(y, y).tolist()
    [1.0, nan, 1.0]
    """
    a, b, _ = _pair(y_true, y_pred)
    return _rowwise_pearson(a.T, b.T)


def binarize(x, threshold: float = 0.5, *, minmax: bool = True, inclusive: bool = False) -> np.ndarray:
    """Binarize profiles: 1 where the value is strictly above ``threshold``.

    With ``minmax=True`` (default) each feature (column) is first rescaled to
    [0, 1] by its minimum and maximum across cells, as the paper does for inferred
    peaks before the 0.5 cut; a constant feature becomes all 0.  For measured
    counts use ``binarize(x, 0, minmax=False)`` (any read -> 1).

    Parameters
    ----------
    x : array-like, sparse matrix, DataFrame or AnnData, shape (n_cells, n_features)
    threshold : float, default=0.5
    minmax : bool, default=True
    inclusive : bool, default=False
        Also 1 where the value equals ``threshold`` (``>=`` instead of ``>``; the
        benchmarks' AUROC@0.5 column uses it: an average of 0/1 neighbours is
        often exactly 0.5).

    Returns
    -------
    ndarray of int8, shape (n_cells, n_features)

    See Also
    --------
    cmot.datasets.binarize_counts : measured counts to 0/1 (any read -> 1), keeping sparse input sparse.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 10.0], [2.0, 30.0], [4.0, 20.0]])
    >>> binarize(x).tolist()
    [[0, 0], [0, 1], [1, 0]]
    >>> binarize(x, 15, minmax=False).tolist()
    [[0, 0], [0, 1], [0, 1]]
    >>> binarize(x, 20, minmax=False, inclusive=True).tolist()
    [[0, 0], [0, 1], [0, 1]]
    """
    from numbers import Real

    if isinstance(threshold, bool) or not isinstance(threshold, Real) or not np.isfinite(threshold):
        raise TypeError(f"threshold: expected a finite number, found {threshold!r}.")
    data = as_matrix(x, "x", allow_sparse=False).data
    if minmax:
        lo = data.min(axis=0, keepdims=True)
        span = data.max(axis=0, keepdims=True) - lo
        span[span == 0] = np.inf  # constant feature -> 0
        data = (data - lo) / span
    return (data >= threshold if inclusive else data > threshold).astype(np.int8)


def _auroc_columns(y_bin, score):
    """AUROC of each column (Mann-Whitney U with average ranks for ties)."""
    from scipy.stats import rankdata

    n = y_bin.shape[0]
    pos = y_bin.astype(bool)
    n_pos = pos.sum(axis=0).astype(np.float64)
    n_neg = n - n_pos
    ranks = rankdata(score, axis=0)
    rank_sum = np.where(pos, ranks, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    auc[(n_pos == 0) | (n_neg == 0)] = np.nan
    return auc


def featurewise_auroc(y_true_binary, y_score) -> np.ndarray:
    """AUROC of each feature: how well the inferred values rank cells where it is measured on.

    Parameters
    ----------
    y_true_binary : array-like, sparse matrix, DataFrame or AnnData of 0/1, shape (n_cells, n_features)
        Measured profiles, binarized (see :func:`binarize`; e.g. peaks with any read).
    y_score : same shape
        Inferred values (any scale; AUROC depends only on their order within a feature).

    Returns
    -------
    auroc : ndarray of shape (n_features,)
        NaN for a feature that is all 0 or all 1 in ``y_true_binary``.  Ties in
        ``y_score`` count one half, as in :func:`sklearn.metrics.roc_auc_score`.

    Raises
    ------
    ValueError
        If ``y_true_binary`` holds values other than 0 and 1, or the shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[0, 1], [0, 0], [1, 1], [1, 0]])
    >>> s = np.array([[0.1, 0.2], [0.2, 0.9], [0.8, 0.5], [0.9, 0.4]])
    >>> featurewise_auroc(y, s).tolist()
    [1.0, 0.25]
    """
    a, b, _ = _pair(y_true_binary, y_score, names=("y_true_binary", "y_score"))
    if not np.all((a == 0) | (a == 1)):
        bad = np.unique(a[(a != 0) & (a != 1)])[:5]
        raise ValueError(
            f"y_true_binary: expected only 0 and 1, found other values such as {bad.tolist()}; "
            "binarize the measured profiles first, e.g. cmot.metrics.binarize(y, 0, minmax=False)."
        )
    return _auroc_columns(a, b)


def _auprc_columns(positive, score):
    """Average precision of each column of ``score`` for the 0/1 vector ``positive``."""
    from sklearn.metrics import average_precision_score

    return np.array([average_precision_score(positive, score[:, j]) for j in range(score.shape[1])])


def marker_auprc(
    y_true,
    y_pred,
    labels,
    n_markers: int = 100,
    *,
    balance: bool = False,
    random_state=None,
):
    """AUPRC of marker features for classifying each label against the rest.

    Follows the paper's evaluation of inferred marker genes.  For each label:

    1. its markers are the ``n_markers`` features with the largest difference
       ``mean(label) - mean(rest)`` in the *measured* profiles ``y_true`` (only
       features with a positive difference);
    2. cells with the label are positives, all other cells negatives;
    3. each marker's *inferred* values (``y_pred``) score the cells, and the area
       under the precision-recall curve (average precision) is computed; the same
       is done with the measured values as a reference;
    4. the baseline is the share of positives (a random score's AUPRC).

    With ``balance=True`` every label is first subsampled to the size of the
    smallest label (as the paper did, which makes the baseline ``1 / n_labels``).

    Parameters
    ----------
    y_true, y_pred : array-like, sparse matrix, DataFrame or AnnData, shape (n_cells, n_features)
        Measured and inferred profiles.
    labels : array-like of shape (n_cells,)
        Cell type (or other label) of each cell; at least two distinct labels.
    n_markers : int, default=100
        Markers per label (fewer when fewer features rise in the label).
    balance : bool, default=False
        Subsample every label to the smallest label's size first.
    random_state : int or None
        Seed of the subsampling.

    Returns
    -------
    pandas.DataFrame
        One row per (label, marker): ``label``, ``feature`` (name, or column
        index when ``y_true`` has no names), ``mean_difference``, ``auprc``
        (inferred), ``auprc_measured`` and ``baseline``.  Average per label with
        ``df.groupby("label")["auprc"].mean()``.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[5.0, 0.0], [6.0, 0.0], [0.0, 5.0], [0.0, 6.0]])
    >>> res = marker_auprc(y, y, ["a", "a", "b", "b"], n_markers=1)
    >>> res[["label", "feature", "auprc", "baseline"]].values.tolist()
    [['a', 0, 1.0, 0.5], ['b', 1, 1.0, 0.5]]
    """
    import pandas as pd

    a, b, meta = _pair(y_true, y_pred)
    n = a.shape[0]
    lab = _check_cell_labels(labels, n)
    n_markers = check_int(n_markers, "n_markers")
    classes = np.unique(lab)
    if len(classes) < 2:
        raise ValueError(f"labels: expected at least 2 distinct labels, found {len(classes)}.")
    if balance:
        rng = np.random.default_rng(random_state)
        size = min(int(np.sum(lab == c)) for c in classes)
        keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(lab == c), size, replace=False) for c in classes]))
        a, b, lab = a[keep], b[keep], lab[keep]
    names = meta.feature_names
    rows = []
    for c in classes:
        pos = lab == c
        diff = a[pos].mean(axis=0) - a[~pos].mean(axis=0)
        order = np.argsort(-diff, kind="stable")[:n_markers]
        order = order[diff[order] > 0]
        if order.size == 0:
            continue
        pos_int = pos.astype(np.int8)
        inferred = _auprc_columns(pos_int, b[:, order])
        measured = _auprc_columns(pos_int, a[:, order])
        for j, f in enumerate(order):
            rows.append(
                {
                    "label": c,
                    "feature": names[f] if names is not None else int(f),
                    "mean_difference": float(diff[f]),
                    "auprc": float(inferred[j]),
                    "auprc_measured": float(measured[j]),
                    "baseline": float(pos.mean()),
                }
            )
    cols = ["label", "feature", "mean_difference", "auprc", "auprc_measured", "baseline"]
    return pd.DataFrame(rows, columns=cols)


def silhouette_by_label(x, labels, *, metric: str = "euclidean", return_samples: bool = False):
    """Silhouette of the profiles ``x`` grouped by ``labels`` (scikit-learn).

    The paper uses it to ask whether inferred expression separates cancer types.

    Parameters
    ----------
    x : array-like, sparse matrix, DataFrame or AnnData, shape (n_cells, n_features)
    labels : array-like of shape (n_cells,)
        Between 2 and ``n_cells - 1`` distinct labels.
    metric : str, default="euclidean"
        Any metric of :func:`sklearn.metrics.pairwise_distances`.
    return_samples : bool, default=False
        Return each cell's silhouette instead of the mean (the paper reports medians).

    Returns
    -------
    float, or ndarray of shape (n_cells,) with ``return_samples=True``

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [0.1], [10.0], [10.1]])
    >>> round(silhouette_by_label(x, [0, 0, 1, 1]), 3)
    0.99
    """
    from sklearn.metrics import silhouette_samples, silhouette_score

    m = as_matrix(x, "x")
    lab = _check_cell_labels(labels, m.shape[0])
    n_lab = len(np.unique(lab))
    if not 2 <= n_lab <= m.shape[0] - 1:
        raise ValueError(
            f"labels: expected between 2 and n_cells - 1 ({m.shape[0] - 1}) distinct labels, found {n_lab}."
        )
    if return_samples:
        return silhouette_samples(m.data, lab, metric=metric)
    return float(silhouette_score(m.data, lab, metric=metric))


def wilcoxon_greater(scores_a, scores_b, *, paired: bool = True) -> WilcoxonResult:
    """One-sided Wilcoxon test that scores ``a`` are greater than scores ``b``.

    ``paired=True`` (default): the signed-rank test on ``a - b`` over the same
    cells or features (e.g. per-cell r of two methods), which is the right test
    for paired scores.  ``paired=False``: the rank-sum (Mann-Whitney U) test the
    paper names.  Pairs (or values) with a NaN are dropped first.

    Parameters
    ----------
    scores_a, scores_b : array-like of shape (n,)
        Per-cell or per-feature scores of two methods (for ``paired=False`` the
        lengths may differ).
    paired : bool, default=True

    Returns
    -------
    WilcoxonResult
        ``statistic``, ``pvalue``, ``n_greater`` (a > b), ``n_less`` (a < b) and
        ``n`` (pairs used).  The paper reports the counts with the p-value
        ("better for 836 versus 118 genes").

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> b = rng.uniform(size=50)
    >>> res = wilcoxon_greater(b + 0.5, b)
    >>> res.pvalue < 1e-6, res.n_greater, res.n_less
    (True, 50, 0)
    """
    from scipy.stats import mannwhitneyu, wilcoxon

    a = np.asarray(scores_a, dtype=np.float64)
    b = np.asarray(scores_b, dtype=np.float64)
    for arr, name in ((a, "scores_a"), (b, "scores_b")):
        if arr.ndim != 1:
            raise ValueError(f"{name}: expected a 1-D array of scores, found shape {arr.shape}.")
    if paired:
        if a.shape != b.shape:
            raise ValueError(
                f"scores_a and scores_b: expected the same length for a paired test, found {a.size} and {b.size}."
            )
        ok = ~(np.isnan(a) | np.isnan(b))
        a, b = a[ok], b[ok]
        d = a - b
        n_gt, n_lt = int(np.sum(d > 0)), int(np.sum(d < 0))
        if n_gt + n_lt == 0:
            raise ValueError("scores_a and scores_b: expected some pairs that differ, found all equal (or NaN).")
        res = wilcoxon(a, b, alternative="greater")
        return WilcoxonResult(float(res.statistic), float(res.pvalue), n_gt, n_lt, int(a.size))
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        raise ValueError(f"scores_a and scores_b: expected non-NaN scores, found {a.size} and {b.size}.")
    res = mannwhitneyu(a, b, alternative="greater")
    med = np.median(b)
    n_gt, n_lt = int(np.sum(a > med)), int(np.sum(a < med))
    return WilcoxonResult(float(res.statistic), float(res.pvalue), n_gt, n_lt, int(a.size))


def summary(y_true, y_pred) -> dict:
    """The usual scores of an inference in one dict.

    Returns
    -------
    dict
        ``mean_cellwise_pearson``, ``median_cellwise_pearson``,
        ``mean_featurewise_pearson``, ``median_featurewise_pearson`` (NaN
        cells/features skipped), ``n_cells`` and ``n_features``.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 2.0]])
    >>> s = summary(y, y)
    >>> s["mean_cellwise_pearson"], s["mean_featurewise_pearson"], s["n_cells"]
    (1.0, 1.0, 2)
    """
    a, b, _ = _pair(y_true, y_pred)
    cw = _rowwise_pearson(a, b)
    fw = _rowwise_pearson(a.T, b.T)

    def agg(f, v):
        return float(f(v)) if np.any(~np.isnan(v)) else float("nan")

    return {
        "mean_cellwise_pearson": agg(np.nanmean, cw),
        "median_cellwise_pearson": agg(np.nanmedian, cw),
        "mean_featurewise_pearson": agg(np.nanmean, fw),
        "median_featurewise_pearson": agg(np.nanmedian, fw),
        "n_cells": int(a.shape[0]),
        "n_features": int(a.shape[1]),
    }
