"""Label transfer: the reference's cell labels carried to the query by the same
transport and the same Step C neighbour search as the inferred modality (Seurat's
``TransferData`` with ``refdata = list(celltype = ...)``).

Each target cell's score for a class is the weighted vote of its ``k_label``
nearest moved source cells, with the weights of the X inference
(:func:`cmot.infer.exp_weights` in the fitted distance unit ``weight_scale_``):
the weight of the neighbours of that class over the weight of the neighbours that
have a label.  ``k_label`` is chosen per name at fit, from the same candidates as
``n_neighbors`` (:data:`cmot.choices.AUTO_K_GRID`), by leave-one-out label
accuracy on the source (:func:`select_label_neighbors`), so it can differ from
the ``k`` that predicts X best: locally pure labels take few neighbours, noisy
ones more.  One neighbour search of ``max(k, k_label)`` serves the X and the
labels.  No shrinkage toward the reference's class frequencies is applied.  Source cells whose label is missing
(NaN, None) do not vote; a target cell none of whose neighbours has a label gets
no label (NaN) and NaN scores.

:class:`LabelTransfer` holds the labels fitted on the source (one set per name),
:func:`label_votes` computes the per-class scores of some target cells and
:class:`LabelPrediction` turns the scores into the DataFrames ``predict`` sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._utils import timed_step
from ._validation import _align_series, _is_dataframe, _where, check_labels
from .infer import exp_weights, leave_one_out_neighbors, metric_space, weighted_average

__all__ = ["LabelTransfer", "LabelPrediction", "LabelTransferMixin", "check_transfer_labels", "label_votes",
           "select_label_neighbors"]


@dataclass
class LabelTransfer:
    """The source cells' labels to transfer, one set per name.

    Attributes
    ----------
    names : list of str
    classes : list of ndarray
        The classes of each name (sorted when they can be).
    codes : list of ndarray of int
        Each source cell's class (position in ``classes``), -1 where the label is missing.
    """

    names: list
    classes: list
    codes: list

    def one_hot(self, i: int):
        """Sparse ``(n_source, n_classes)`` indicator of name ``i``'s classes (empty rows: missing)."""
        codes = self.codes[i]
        has = codes >= 0
        rows = np.flatnonzero(has)
        return sp.csr_matrix((np.ones(rows.size), (rows, codes[has])), shape=(codes.size, len(self.classes[i])))


def _encode(values, name: str, cell_names):
    """``(classes, codes)`` of one set of labels (missing values coded -1)."""
    import pandas as pd

    arr = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected one label per source Y cell (1-D), found shape {arr.shape}.")
    missing = np.asarray(pd.isna(arr), dtype=bool)
    if missing.all():
        raise ValueError(f"{name}: expected at least one label, found all {arr.size} missing (NaN or None) at "
                         f"{_where(np.flatnonzero(missing), cell_names)}.")
    present = arr[~missing]
    try:
        classes, inverse = np.unique(present, return_inverse=True)
    except TypeError:  # labels of mixed types cannot be sorted: order of appearance
        inverse, classes = pd.factorize(present)
        classes = np.asarray(classes)
    codes = np.full(arr.size, -1, dtype=np.int64)
    codes[~missing] = inverse.ravel()
    return classes, codes


def _one_set(values, n: int, name: str, cell_names):
    if type(values).__name__ == "Series" and hasattr(values, "index"):
        if len(values) != n:
            raise ValueError(f"{name}: expected one label per source Y cell ({n}), found {len(values)} labels.")
        values = _align_series(values, n, cell_names, name)
    size = len(values) if hasattr(values, "__len__") and not isinstance(values, str) else None
    if size != n:
        found = f"{size} labels" if size is not None else f"a {type(values).__name__}"
        raise ValueError(f"{name}: expected one label per source Y cell ({n}), found {found}.")
    return _encode(values, name, cell_names)


def check_transfer_labels(transfer_labels, labels, n: int, *, cell_names=None) -> LabelTransfer | None:
    """The labels to transfer, checked against the ``n`` source cells.

    ``transfer_labels`` is a dict ``name -> labels`` (array-like, or a pandas Series
    aligned to the cells by name like ``fit``'s ``labels``) or a DataFrame (one set
    per column, rows aligned by name).  None transfers ``labels`` (the user's, when
    given) under the name ``"labels"``; an empty dict transfers nothing.

    Examples
    --------
    >>> t = check_transfer_labels({"type": ["b", "a", None]}, None, 3)
    >>> t.names, t.classes[0].tolist(), t.codes[0].tolist()
    (['type'], ['a', 'b'], [1, 0, -1])
    >>> check_transfer_labels(None, None, 3) is None
    True
    """
    if transfer_labels is None:
        if labels is None:
            return None
        classes, codes = _encode(check_labels(labels, n, cell_names=cell_names), "labels", cell_names)
        return LabelTransfer(["labels"], [classes], [codes])
    elif _is_dataframe(transfer_labels):
        frame = transfer_labels
        if len(frame) != n:
            raise ValueError(f"transfer_labels: expected one row per source Y cell ({n}), found {len(frame)} rows.")
        transfer_labels = {col: frame[col] for col in frame.columns}
    elif not isinstance(transfer_labels, Mapping):
        raise TypeError("transfer_labels: expected a dict of name -> per-cell labels or a DataFrame, found "
                        f"{type(transfer_labels).__name__}.")
    names, classes, codes = [], [], []
    for key, values in transfer_labels.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"transfer_labels: expected non-empty str names, found {key!r}.")
        arg = f"transfer_labels[{key!r}]"
        c, k = _one_set(values, n, arg, cell_names)
        names.append(key)
        classes.append(c)
        codes.append(k)
    return LabelTransfer(names, classes, codes) if names else None


def label_votes(one_hot, indices, weights) -> np.ndarray:
    """Per-class scores of target cells: the weighted vote of their neighbours.

    ``one_hot`` is the source cells' ``(n_source, n_classes)`` indicator
    (:meth:`LabelTransfer.one_hot`), ``indices``/``weights`` the neighbours and
    weights of Step C (:func:`cmot.infer.knn_weights`).  Each row sums to one, or
    is NaN when no neighbour has a label.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> onehot = sp.csr_matrix(np.array([[1.0, 0], [0, 1], [0, 0]]))  # third cell: no label
    >>> label_votes(onehot, np.array([[0, 1], [2, 1], [2, 2]]), np.array([[0.75, 0.25], [0.5, 0.5], [0.5, 0.5]]))
    array([[0.75, 0.25],
           [0.  , 1.  ],
           [ nan,  nan]])
    """
    votes = weighted_average(one_hot, indices, weights)
    total = votes.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, votes / np.where(total > 0, total, 1.0), np.nan)


def select_label_neighbors(rep, label_transfer: LabelTransfer, *, weight_scale: float, grid=None,
                           max_cells: int | None = None, random_state=None):
    """Choose each name's number of voting neighbours ``k_label`` by leave-one-out on the source.

    At most ``max_cells`` random source cells (the left-out cells of
    :func:`cmot.choices.select_n_neighbors`, same ``random_state``) get the vote of
    their ``k`` nearest other source cells in ``rep`` (Step C's space, in its metric:
    ``CMOT`` passes ``metric_space(source_rep_, metric_)``), weighted by
    ``exp(-d / weight_scale)`` as at prediction (:func:`label_votes`); each
    candidate ``k`` of ``grid`` (default :data:`cmot.choices.AUTO_K_GRID`, below
    the number of cells) is scored by the share of the left-out cells with a
    label whose best class is their own label (a cell whose neighbours have no
    label counts as wrong).  The best ``k`` is chosen, on a tie the smaller.  No
    target cell is used.

    Returns
    -------
    ks : list of int
        One ``k_label`` per name of ``label_transfer``.
    scores : list of dict
        Per name, ``{k: leave-one-out accuracy}`` of each candidate (empty when no
        left-out cell has a label: ``k_label`` is then the smallest candidate).

    Examples
    --------
    >>> import numpy as np
    >>> rep = np.repeat(np.arange(12.0), 5)[:, None]  # 12 tight groups of 5 cells
    >>> lt = LabelTransfer(["group"], [np.arange(12)], [np.repeat(np.arange(12), 5)])
    >>> ks, scores = select_label_neighbors(rep, lt, weight_scale=100.0, grid=(2, 20))
    >>> ks, scores[0]  # 20 neighbours reach into the next groups
    ([2], {2: 1.0, 20: 0.0})
    """
    from .choices import AUTO_K_GRID, LOO_MAX_CELLS

    grid = AUTO_K_GRID if grid is None else grid
    n = rep.shape[0]
    ks = sorted({min(int(k), n - 1) for k in grid if k < n} or {max(1, n - 1)})
    max_cells = LOO_MAX_CELLS if max_cells is None else max_cells
    query, idx, dist = leave_one_out_neighbors(rep, ks[-1], max_cells=max_cells, random_state=random_state)
    chosen, all_scores = [], []
    for i in range(len(label_transfer.names)):
        one_hot, truth = label_transfer.one_hot(i), label_transfer.codes[i][query]
        has = truth >= 0
        scores = {}
        for k in ks if has.any() and idx.shape[1] > 0 else ():
            votes = label_votes(one_hot, idx[has, :k], exp_weights(dist[has, :k], weight_scale))
            best = np.where(np.isnan(votes).any(axis=1), -1, np.argmax(np.nan_to_num(votes, nan=-1.0), axis=1))
            scores[k] = float(np.mean(best == truth[has]))
        chosen.append(max(scores, key=lambda k: (scores[k], -k)) if scores else ks[0])
        all_scores.append(scores)
    return chosen, all_scores


@dataclass
class LabelPrediction:
    """Per-class scores of the target cells for each transferred name (set by ``predict``).

    Attributes
    ----------
    names : list of str
    classes : list of ndarray
    scores : list of ndarray of shape (n_target, n_classes)
    cell_names : ndarray of str or None
        The target cells' names (None: positions).
    """

    names: list
    classes: list
    scores: list
    cell_names: np.ndarray | None

    def _index(self):
        import pandas as pd

        n = self.scores[0].shape[0]
        return pd.Index(self.cell_names) if self.cell_names is not None else pd.RangeIndex(n)

    def labels(self):
        """DataFrame target cells x names: the class of highest score (categorical; NaN without votes)."""
        import pandas as pd

        cols = {}
        for name, classes, scores in zip(self.names, self.classes, self.scores):
            voted = ~np.isnan(scores).any(axis=1)
            codes = np.where(voted, np.argmax(np.nan_to_num(scores, nan=-1.0), axis=1), -1)
            cols[name] = pd.Categorical.from_codes(codes, categories=pd.Index(classes))
        return pd.DataFrame(cols, index=self._index())

    def score_frames(self) -> dict:
        """name -> DataFrame target cells x classes of scores (rows sum to one)."""
        import pandas as pd

        return {name: pd.DataFrame(scores, index=self._index(), columns=pd.Index(classes))
                for name, classes, scores in zip(self.names, self.classes, self.scores)}

    def max_scores(self):
        """DataFrame target cells x names: the highest class score, in [0, 1] (NaN without votes)."""
        import pandas as pd

        best = {name: np.max(scores, axis=1) for name, scores in zip(self.names, self.scores)}
        return pd.DataFrame(best, index=self._index())


class LabelTransferMixin:
    """``CMOT.predict_labels``, the choice of ``label_neighbors_`` at fit and the
    ``predicted_label*_`` attributes, built from the :class:`LabelPrediction` that ``predict``
    stores (``label_prediction_``: arrays only, so that model files hold no pandas objects)."""

    def _fit_label_neighbors(self, p):
        """``label_neighbors_``: each transferred name's voting neighbours, by leave-one-out on the source."""
        lt = self.label_transfer_
        self.label_neighbors_ = self.label_neighbors_scores_ = None
        if lt is not None:
            with timed_step("choosing the label neighbours by leave-one-out on the source", p["verbose"]):
                space = metric_space(self.source_rep_, getattr(self, "metric_", None))  # Step C's neighbours
                ks, scores = select_label_neighbors(space, lt, weight_scale=self.weight_scale_,
                                                    random_state=p["random_state"])
            self.label_neighbors_ = dict(zip(lt.names, ks))
            self.label_neighbors_scores_ = dict(zip(lt.names, scores))

    def _label_ks(self):
        """The fitted ``label_neighbors_`` in the order of the transferred names (None: models fitted before it)."""
        chosen, lt = getattr(self, "label_neighbors_", None), getattr(self, "label_transfer_", None)
        return None if chosen is None or lt is None else [chosen[name] for name in lt.names]

    def _set_label_prediction(self, votes, cell_names):
        lt = getattr(self, "label_transfer_", None)
        names = None if cell_names is None else np.array([str(c) for c in cell_names])
        self.label_prediction_ = None if lt is None else LabelPrediction(lt.names, lt.classes, votes, names)

    def predict_labels(self, target_y):
        """Transfer the source cells' labels to ``target_y``: :meth:`predict`, then ``predicted_labels_``.

        Returns
        -------
        labels : pandas.DataFrame of shape (n_target, n_names)
            One categorical column per transferred name (``fit``'s
            ``transfer_labels``, or ``labels``); per-class scores are in
            ``predicted_label_scores_``, the best class's in ``predicted_label_score_``.

        Examples
        --------
        >>> from cmot import CMOT
        >>> from cmot.datasets import make_multimodal
        >>> d = make_multimodal(150, 40, random_state=0)
        >>> model = CMOT(n_neighbors=10, random_state=0).fit(d.source_x, d.source_y, labels=d.source_labels)
        >>> pred = model.predict_labels(d.target_y)
        >>> pred.shape, float((pred["labels"].to_numpy() == d.target_labels).mean()) > 0.9
        ((40, 1), True)
        """
        self._check_fitted()
        if getattr(self, "label_transfer_", None) is None:
            raise ValueError("predict_labels: expected a model fitted with labels to transfer, found none; "
                             "pass labels= or transfer_labels= to fit.")
        self.predict(target_y)
        return self.predicted_labels_

    def _label_output(self, what):
        if "label_prediction_" not in self.__dict__:
            raise AttributeError(f"predicted_{what}: set by predict.")
        pred = self.label_prediction_
        return None if pred is None else getattr(pred, what)()

    predicted_labels_ = property(lambda self: self._label_output("labels"),
                                 doc="Transferred labels of the last predict (DataFrame), or None.")
    predicted_label_scores_ = property(lambda self: self._label_output("score_frames"),
                                       doc="Per-class scores of the last predict (dict of DataFrames), or None.")
    predicted_label_score_ = property(lambda self: self._label_output("max_scores"),
                                      doc="Best class score of the last predict (DataFrame), or None.")
