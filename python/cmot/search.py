"""Parameter search by k-fold cross-validation on the source (the paper's Steps B/C).

The paper picks the entropic weight, the number of variable features and the
number of neighbours by 5-fold cross-validation on the training cells: each
fold's cells are held out, their X is inferred from their Y by a model fitted on
the other folds, and the inference is scored against the measured X.

The transport (Step B) depends on the OT parameters only, so for each fold and
each combination of them the coupling is computed once and every
``(n_features, n_neighbors)`` pair of the grid reuses it.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ._utils import to_dense
from ._validation import as_matrix, check_int, check_labels, check_source
from .estimator import CMOT
from .metrics import _rowwise_pearson
from .transport import OTConvergenceError, resolve_reg_e, sqeuclidean_cost

logger = logging.getLogger("cmot")

__all__ = ["cross_validate", "CVResult", "CMOTSearchCV", "default_param_grid", "SCORINGS"]

#: Step C parameters: they do not change the coupling (unless ``n_pcs="auto"``, which
#: chooses the number of components at the given ``n_neighbors``).
_STEP_C = ("n_neighbors",)


def _mean_cellwise(y_true, y_pred):
    return float(np.nanmean(_rowwise_pearson(y_true, y_pred)))


def _mean_featurewise(y_true, y_pred):
    r = _rowwise_pearson(y_true.T, y_pred.T)
    return float(np.nanmean(r)) if np.any(~np.isnan(r)) else float("nan")


#: Built-in scores (greater is better): name -> function(y_true, y_pred) on dense arrays.
SCORINGS = {"cellwise_pearson": _mean_cellwise, "featurewise_pearson": _mean_featurewise}


@dataclass
class CVResult:
    """Result of :func:`cross_validate`.

    Attributes
    ----------
    best_params_ : dict
        The combination with the highest mean score (ties: the first in grid order).
    best_score_ : float
        Its mean score over the folds.
    results_ : pandas.DataFrame
        One row per combination: a column per searched parameter, ``mean_score``,
        ``std_score``, ``split0_score`` ... (NaN where the transport diverged),
        ``rank`` (1 = best) and ``fit_time`` (seconds, summed over folds).
    scoring : str
        The score used.
    n_splits : int
    """

    best_params_: dict
    best_score_: float
    results_: object
    scoring: str = "cellwise_pearson"
    n_splits: int = 5
    base_params: dict = field(default_factory=dict)

    def best_estimator(self) -> CMOT:
        """An unfitted :class:`CMOT` with the base parameters and the best ones."""
        return CMOT(**{**self.base_params, **self.best_params_})


def _auto_reg(y, random_state, n_max=500) -> float:
    """The entropic weight ``reg_e=None`` would pick on ``y`` against itself (subsampled)."""
    rng = np.random.default_rng(random_state)
    idx = rng.choice(y.shape[0], min(n_max, y.shape[0]), replace=False)
    sub = y[np.sort(idx)]
    model = CMOT(n_neighbors=1, random_state=random_state).fit(sub, sub)
    return resolve_reg_e(None, sqeuclidean_cost(model.source_rep_, model.source_rep_))


def _round_sig(v, digits=3):
    return float(f"{v:.{digits}g}")


def default_param_grid(source_y, n_train: int | None = None, *, random_state=None) -> dict:
    """The default search grid, capped by the data size.

    ``reg_e``: None (automatic, see :func:`cmot.estimator.resolve_reg_e`) and 1/2
    and 4 times that value on ``source_y``; ``n_neighbors``: 10, 30, 100 (at most
    ``n_train``); ``n_features``: 500, 2000 and the default 4000 (at most the number
    of Y features; the paper searched 50 to 500 raw features, but on principal
    components of standardized features more features help).

    Examples
    --------
    >>> import numpy as np
    >>> g = default_param_grid(np.random.default_rng(0).normal(size=(60, 80)), n_train=48)
    >>> g["n_neighbors"], g["n_features"], g["reg_e"][0]
    ([10, 30, 48], [80], None)
    """
    ym = as_matrix(source_y, "source_y")
    n, p = ym.shape
    n_train = n if n_train is None else n_train
    ref = _auto_reg(ym.data, random_state)
    reg = [None] + ([_round_sig(ref / 2), _round_sig(ref * 4)] if ref > 0 else [])
    return {
        "reg_e": reg,
        "n_neighbors": sorted({min(k, n_train) for k in (10, 30, 100)}),
        "n_features": sorted({min(f, p) for f in (500, 2000, 4000)}),
    }


def _check_grid(param_grid) -> dict:
    if not isinstance(param_grid, dict) or not param_grid:
        raise TypeError(f"param_grid: expected a non-empty dict of parameter -> list of values, found {param_grid!r}.")
    valid = list(CMOT._parameter_constraints)
    grid = {}
    for key, values in param_grid.items():
        if key not in valid:
            raise ValueError(f"param_grid: unknown CMOT parameter {key!r}; valid parameters are {', '.join(valid)}.")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            values = [values]
        values = list(values)
        if not values:
            raise ValueError(f"param_grid: expected at least one value for {key!r}, found an empty list.")
        grid[key] = values
    return grid


def _folds(n, n_splits, labels, random_state):
    from sklearn.model_selection import KFold, StratifiedKFold

    if labels is not None:
        _, counts = np.unique(labels, return_counts=True)
        if counts.min() < n_splits:
            raise ValueError(
                f"labels: expected at least n_splits={n_splits} cells of every label for stratified folds, "
                f"found a label with {counts.min()} cells; lower n_splits or merge rare labels."
            )
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        return list(cv.split(np.zeros(n), labels))
    cv = KFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return list(cv.split(np.zeros(n)))


def cross_validate(
    source_x,
    source_y,
    *,
    param_grid=None,
    n_splits: int = 5,
    labels=None,
    scoring="cellwise_pearson",
    base_params=None,
    random_state=None,
    verbose: bool = False,
) -> CVResult:
    """Choose CMOT parameters by k-fold cross-validation on paired source cells.

    For each combination of ``param_grid`` and each fold, CMOT is fitted on the
    other folds, infers the held-out cells' X from their Y, and the inference is
    scored against their measured X.  The combination with the highest mean score
    wins.  Poorly mapped cells are not detected during the search (it does not
    change the inference).

    Parameters
    ----------
    source_x : array-like, sparse matrix, DataFrame or AnnData, shape (n_cells, n_x_features)
        Source cells in the modality to infer.
    source_y : same types, shape (n_cells, n_y_features)
        The same cells, in the same order, in the shared modality (fully paired).
    param_grid : dict of str -> list, optional
        CMOT parameters to search and their values, e.g.
        ``{"reg_e": [None, 100.0], "n_neighbors": [10, 30], "n_features": [50, 150]}``.
        Any CMOT parameter may appear.  None uses :func:`default_param_grid`.
    n_splits : int, default=5
        Folds.
    labels : array-like of shape (n_cells,), optional
        Cell labels: folds are stratified by them, and each training fold's labels
        are passed to ``CMOT.fit`` (label regularization).  None: plain shuffled
        folds and Ward clusters as labels.
    scoring : {"cellwise_pearson", "featurewise_pearson"} or callable, default="cellwise_pearson"
        Mean cell-wise or feature-wise Pearson r of the held-out cells (NaN
        skipped), or ``f(x_true, x_pred) -> float`` on dense arrays, greater is better.
    base_params : dict, optional
        Fixed CMOT parameters (e.g. ``{"reg_cl": 1.0, "n_clusters": 2}``).
    random_state : int or None
        Seed of the folds and of the models.
    verbose : bool, default=False
        Log each fold and combination to the ``cmot`` logger (INFO).

    Returns
    -------
    CVResult
        ``best_params_``, ``best_score_`` and ``results_`` (a DataFrame).

    Raises
    ------
    ValueError
        On unknown parameters, mismatched inputs, too few cells for the folds,
        or when every combination failed.

    Examples
    --------
    >>> from cmot.datasets import make_multimodal
    >>> d = make_multimodal(90, 10, random_state=0)
    >>> res = cross_validate(d.source_x, d.source_y, n_splits=3, random_state=0,  # Step C: neighbours only
    ...                      param_grid={"n_neighbors": [1, 20], "n_features": [30]},
    ...                      base_params={"shrinkage": 0.0})
    >>> res.best_params_
    {'n_neighbors': 20, 'n_features': 30}
    >>> list(res.results_.columns[:4])
    ['n_neighbors', 'n_features', 'mean_score', 'std_score']
    """
    xm, ym, n_splits, lab, (score_fn, scoring_name), base = _check_cv_input(
        source_x, source_y, n_splits, labels, scoring, base_params, random_state
    )
    folds = _folds(ym.shape[0], n_splits, lab, random_state)
    if param_grid is None:
        param_grid = default_param_grid(ym, min(len(tr) for tr, _ in folds), random_state=random_state)
    grid = _check_grid(param_grid)
    keys = list(grid)
    combos = [dict(zip(keys, vals)) for vals in itertools.product(*grid.values())]
    for c in combos:
        CMOT(**{**base, **c})._check_params()
    auto_pcs = any(CMOT(**{**base, **c}).n_pcs == "auto" for c in combos)
    ot_keys = [k for k in keys if auto_pcs or k not in _STEP_C]
    groups: dict = {}
    for i, c in enumerate(combos):
        groups.setdefault(tuple(repr(c[k]) for k in ot_keys), []).append(i)
    scores, times = _score_folds(xm.data, ym.data, lab, folds, combos, groups, ot_keys, base, score_fn,
                                 scoring_name, verbose)
    return _cv_result(scores, times, combos, keys, base, scoring_name, n_splits, verbose)


def _check_cv_input(source_x, source_y, n_splits, labels, scoring, base_params, random_state):
    xm, ym = check_source(source_x, source_y)
    n = ym.shape[0]
    n_splits = check_int(n_splits, "n_splits", low=2, high=n)
    lab = None if labels is None else check_labels(labels, n, cell_names=ym.cell_names)
    if callable(scoring):
        score = (scoring, getattr(scoring, "__name__", "custom"))
    elif scoring in SCORINGS:
        score = (SCORINGS[scoring], scoring)
    else:
        raise ValueError(f"scoring: expected one of {', '.join(SCORINGS)} or a callable, found {scoring!r}.")
    base = dict(base_params or {})
    base.setdefault("random_state", random_state)
    base["verbose"] = False
    CMOT().set_params(**base)  # unknown names raise here
    return xm, ym, n_splits, lab, score, base


def _score_folds(xdata, ydata, lab, folds, combos, groups, ot_keys, base, score_fn, scoring_name, verbose):
    """Score of every combination on every fold (NaN where the transport failed) and its time."""
    keys = list(combos[0])
    scores = np.full((len(combos), len(folds)), np.nan)
    times = np.zeros(len(combos))
    for f, (train, test) in enumerate(folds):
        x_test = to_dense(xdata[test])
        y_test = ydata[test]
        if verbose:
            logger.info(
                "cross-validation fold %d/%d: %d training, %d held-out cells", f + 1, len(folds), len(train), len(test)
            )
        for members in groups.values():
            first = combos[members[0]]
            t0 = time.perf_counter()
            model = CMOT(**{**base, **{k: first[k] for k in ot_keys}})
            try:
                with warnings.catch_warnings():  # a fit of the chosen parameters says it once, not every fold
                    warnings.filterwarnings("ignore", message="shrinkage: ", category=UserWarning)
                    model.fit(xdata[train], ydata[train], labels=None if lab is None else lab[train])
                coupling, _ = model.transport(y_test)
            except OTConvergenceError as exc:
                logger.warning("cross-validation fold %d: %s failed: %s", f + 1, _fmt(first, ot_keys), exc)
                continue
            t_ot = (time.perf_counter() - t0) / len(members)
            for i in members:
                t1 = time.perf_counter()
                k = combos[i].get("n_neighbors", "auto")
                x_hat = model.infer_from_coupling(coupling, y_test, n_neighbors=None if k == "auto" else k)
                scores[i, f] = float(score_fn(x_test, x_hat))
                times[i] += t_ot + time.perf_counter() - t1
                if verbose:
                    logger.info("  fold %d %s: %s = %.4f", f + 1, _fmt(combos[i], keys), scoring_name, scores[i, f])
    return scores, times


def _cv_result(scores, times, combos, keys, base, scoring_name, n_splits, verbose) -> CVResult:
    import pandas as pd

    with np.errstate(all="ignore"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(scores, axis=1)
            stds = np.nanstd(scores, axis=1)
    means[np.isnan(scores).any(axis=1)] = np.nan  # a combination that failed on any fold is not eligible
    if np.all(np.isnan(means)):
        raise ValueError(
            "param_grid: every combination failed or scored NaN on some fold (e.g. the transport diverged); "
            "try larger reg_e values."
        )
    best = int(np.nanargmax(means))
    rows = []
    for i, c in enumerate(combos):
        row = {k: c[k] for k in keys}
        row["mean_score"] = means[i]
        row["std_score"] = stds[i]
        for f in range(n_splits):
            row[f"split{f}_score"] = scores[i, f]
        row["fit_time"] = times[i]
        rows.append(row)
    results = pd.DataFrame(rows)
    for k in keys:  # keep None (automatic reg_e) as None, not NaN
        if any(c[k] is None for c in combos):
            results[k] = pd.Series([c[k] for c in combos], dtype=object)
    results["rank"] = results["mean_score"].rank(ascending=False, method="min").astype("Int64")
    if verbose:
        logger.info("cross-validation best: %s (%s = %.4f)", _fmt(combos[best], keys), scoring_name, means[best])
    return CVResult(
        best_params_=dict(combos[best]),
        best_score_=float(means[best]),
        results_=results,
        scoring=scoring_name,
        n_splits=n_splits,
        base_params={k: v for k, v in base.items() if k != "verbose"},
    )


def _fmt(c, keys):
    return ", ".join(f"{k}={c[k]!r}" for k in keys)


class CMOTSearchCV:
    """:func:`cross_validate`, then refit the best :class:`CMOT` on all source cells.

    Parameters
    ----------
    param_grid, n_splits, scoring, base_params, random_state, verbose
        As in :func:`cross_validate`.

    Attributes
    ----------
    best_params_, best_score_ : dict, float
    cv_results_ : pandas.DataFrame
        ``results_`` of :func:`cross_validate`.
    best_estimator_ : CMOT
        Fitted on all source cells with the best parameters.

    Examples
    --------
    >>> from cmot.datasets import make_multimodal
    >>> d = make_multimodal(90, 20, random_state=0)
    >>> search = CMOTSearchCV({"n_neighbors": [1, 20], "n_features": [30]}, n_splits=3, random_state=0)
    >>> search.fit(d.source_x, d.source_y).best_params_
    {'n_neighbors': 20, 'n_features': 30}
    >>> search.predict(d.target_y).shape  # doctest: +SKIP
    (20, 30)
    """

    def __init__(self, param_grid=None, *, n_splits: int = 5, scoring="cellwise_pearson", base_params=None,
                 random_state=None, verbose: bool = False):
        self.param_grid = param_grid
        self.n_splits = n_splits
        self.scoring = scoring
        self.base_params = base_params
        self.random_state = random_state
        self.verbose = verbose

    def fit(self, source_x, source_y, *, labels=None):
        """Search by cross-validation, then fit the best model on all cells; returns self."""
        res = cross_validate(
            source_x,
            source_y,
            param_grid=self.param_grid,
            n_splits=self.n_splits,
            labels=labels,
            scoring=self.scoring,
            base_params=self.base_params,
            random_state=self.random_state,
            verbose=self.verbose,
        )
        self.cv_ = res
        self.best_params_ = res.best_params_
        self.best_score_ = res.best_score_
        self.cv_results_ = res.results_
        model = res.best_estimator().set_params(verbose=self.verbose)
        self.best_estimator_ = model.fit(source_x, source_y, labels=labels)
        return self

    def predict(self, target_y):
        """``best_estimator_.predict(target_y)``."""
        if not hasattr(self, "best_estimator_"):
            raise RuntimeError("This CMOTSearchCV instance is not fitted yet: call fit(source_x, source_y) first.")
        return self.best_estimator_.predict(target_y)
