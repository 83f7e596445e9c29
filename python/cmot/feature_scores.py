"""How well each feature of the inferred modality can be inferred: the
leave-one-out feature-wise Pearson r on the reference (``CMOT.feature_scores_``).

Each of at most ``LOO_MAX_CELLS`` random reference cells has its X predicted, as
Step C predicts a query cell, from its ``k`` nearest *other* reference cells in
the Step B/C space (``exp(-d / weight_scale_)`` weights), blended with the linear
map's prediction fitted without it (``linear_weight_``), then ``shrinkage_``
toward the reference mean; with Step C's neighbour metric (``metric_weight_`` above 0)
the neighbours are searched in the metric of the map fitted without the cell's fold of
left-out cells, as when the metric was chosen (:func:`cmot.choices._metric_neighbors`);
a feature's score is the Pearson correlation, across those cells, of its predicted and measured values.  A feature that is constant
(measured or predicted) scores NaN.  Shrinkage below 1 does not change the
scores; with ``shrinkage_ = 1`` every prediction is the mean and every score NaN.
"""

from __future__ import annotations

import logging

import numpy as np

from ._utils import timed_step, to_dense
from .choices import LOO_MAX_CELLS, _metric_folds, _metric_neighbors, feature_sd
from .infer import exp_weights, leave_one_out_neighbors, loo_query, shrink_toward, weighted_average

__all__ = ["RELIABLE_R", "NAMED_MAX", "loo_feature_scores", "unreliable_features", "FeatureScoresMixin"]

logger = logging.getLogger("cmot")

#: Features whose leave-one-out r on the reference is below this are named, with
#: ``verbose``, as features that cannot be inferred reliably.
RELIABLE_R = 0.3


def linear_loo(rep, x_true, query, linear) -> np.ndarray:
    """Exact leave-one-out predictions of the ``query`` rows of ``rep`` by the ridge map
    ``linear`` (:class:`cmot.infer.LinearMap`, fitted on every row at its ``alpha``, the
    intercept not penalized): ``x_i - e_i / (1 - h_ii)``.

    Examples
    --------
    >>> import numpy as np
    >>> from cmot.infer import LinearMap
    >>> z = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> lin = LinearMap(np.array([1.0]), np.array([[2.0]]), 0.0)   # exact fit of x = 1 + 2z
    >>> linear_loo(z, 1 + 2 * z[[0, 3]], np.array([0, 3]), lin).ravel().tolist()
    [1.0, 7.0]
    """
    rep = np.asarray(rep, dtype=np.float64)
    zc = rep - rep.mean(axis=0)
    evals, vecs = np.linalg.eigh(zc.T @ zc)
    inv = 1.0 / np.maximum(np.maximum(evals, 0.0) + linear.alpha, 1e-300)
    leverage = 1.0 / rep.shape[0] + ((zc[query] @ vecs) ** 2) @ inv
    x_true = np.asarray(x_true, dtype=np.float64)
    fitted = linear.predict(rep[query])
    return x_true - (x_true - fitted) / np.maximum(1.0 - leverage, 1e-12)[:, None]


def loo_feature_scores(rep, x, n_neighbors: int, *, weight_scale: float, shrinkage: float = 0.0, x_mean=None,
                       linear=None, linear_weight: float = 0.0, metric_weight: float = 0.0,
                       max_cells: int = LOO_MAX_CELLS, random_state=None) -> np.ndarray:
    """Leave-one-out feature-wise Pearson r of the reference (one value per column of ``x``).

    Parameters
    ----------
    rep : ndarray of shape (n_source, n_dims)
        Reference cells in the Step C space (``CMOT.source_rep_``).
    x : ndarray or sparse matrix of shape (n_source, n_x_features)
        Their X (``CMOT.source_x_``).
    n_neighbors, weight_scale, shrinkage, x_mean
        Step C's (``n_neighbors_``, ``weight_scale_``, ``shrinkage_``, ``x_mean_``).
    linear, linear_weight
        Step C's linear map and its weight (``linear_map_``, ``linear_weight_``): the
        left-out cell's prediction blends in the map's exact leave-one-out prediction
        (:func:`linear_loo`), as Step C blends in the map.
    metric_weight
        The weight of Step C's neighbour metric (``metric_weight_``; 0: Euclidean): the
        neighbours of a left-out cell are searched in the metric of ``linear`` refitted
        without the cell's fold (:func:`cmot.choices.neighbor_metric`), so that no cell's
        X shapes the metric it is predicted in.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(200, 3))
    >>> x = np.c_[y[:, 0], rng.normal(size=200), np.ones(200)]  # follows Y, noise, constant
    >>> np.round(loo_feature_scores(y, x, 10, weight_scale=1.0, random_state=0), 1).tolist()
    [1.0, -0.1, nan]
    """
    from .metrics import _rowwise_pearson

    k = max(1, min(int(n_neighbors), rep.shape[0] - 1))
    if metric_weight > 0 and linear is not None:
        query = loo_query(rep.shape[0], max_cells, random_state)
        folds = _metric_folds(rep, x, query, linear.alpha, random_state)
        idx, dist = _metric_neighbors(rep, query, folds, feature_sd(x), metric_weight, k)
    else:
        query, idx, dist = leave_one_out_neighbors(rep, k, max_cells=max_cells, random_state=random_state)
    pred = weighted_average(x, idx, exp_weights(dist, weight_scale))
    if linear is not None and linear_weight > 0:
        pred *= 1 - linear_weight
        pred += linear_weight * linear_loo(rep, to_dense(x[query]), query, linear)
    shrink_toward(pred, shrinkage, x_mean)
    return _rowwise_pearson(to_dense(x[query]).T.astype(np.float64), pred.T.astype(np.float64))


#: At most this many unreliable features are named (the lowest scores first).
NAMED_MAX = 20


def unreliable_features(scores, names=None, threshold: float = RELIABLE_R) -> str | None:
    """A sentence naming the features whose score is below ``threshold`` or NaN (None when none):
    the ``NAMED_MAX`` lowest, then how many more.

    Examples
    --------
    >>> print(unreliable_features(np.array([0.9, 0.1, np.nan]), ["CD3", "CD25", "IgG"]))
    2 of 3 features cannot be inferred reliably (leave-one-out r on the reference below 0.3): CD25 (r = 0.10), \
IgG (constant)
    """
    scores = np.asarray(scores, dtype=float)
    bad = np.flatnonzero(~(scores >= threshold))
    if bad.size == 0:
        return None
    names = [str(n) for n in names] if names is not None else [str(j) for j in range(scores.size)]
    order = bad[np.argsort(np.nan_to_num(scores[bad], nan=2.0), kind="stable")]
    shown = [f"{names[j]} ({'constant' if np.isnan(scores[j]) else f'r = {scores[j]:.2f}'})"
             for j in order[:NAMED_MAX]]
    more = f", ... ({bad.size - NAMED_MAX} more)" if bad.size > NAMED_MAX else ""
    return (f"{bad.size} of {scores.size} features cannot be inferred reliably (leave-one-out r on the reference "
            f"below {threshold:g}): {', '.join(shown)}{more}")


class FeatureScoresMixin:
    """``CMOT.feature_scores_``: computed by ``fit`` (``_fit_feature_scores``), stored as an
    array (``feature_score_values_``, so that model files hold no pandas objects)."""

    def _fit_feature_scores(self, p):
        """``feature_scores_``: leave-one-out feature-wise r on the source (:mod:`cmot.feature_scores`)."""
        with timed_step("feature scores (leave-one-out on the source)", p["verbose"]):
            self.feature_score_values_ = loo_feature_scores(
                self.source_rep_, self.source_x_, self.n_neighbors_, weight_scale=self.weight_scale_,
                shrinkage=self.shrinkage_, x_mean=self.x_mean_, linear=getattr(self, "linear_map_", None),
                linear_weight=getattr(self, "linear_weight_", 0.0),
                metric_weight=getattr(self, "metric_weight_", 0.0), random_state=p["random_state"])
        message = unreliable_features(self.feature_score_values_, self.feature_names_x_, RELIABLE_R)
        if p["verbose"] and message:
            logger.info("cmot: %s", message)

    @property
    def feature_scores_(self):
        """Leave-one-out feature-wise Pearson r on the source, a Series by X feature (see the class)."""
        import pandas as pd

        values = self.__dict__.get("feature_score_values_")
        if values is None:
            raise AttributeError("feature_scores_: not set; fit the model again with this version of cmot.")
        names = self.feature_names_x_
        index = pd.Index([str(n) for n in names]) if names is not None else pd.RangeIndex(values.size)
        return pd.Series(values, index=index, name="feature_score")
