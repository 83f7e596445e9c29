"""Glue between the R package ``cmot`` and the Python core.

Kept deliberately thin: it checks the parameters (``check_params``), builds the estimator, runs ``fit`` and ``predict``,
records Python warnings instead of printing them (R re-issues them as R
warnings), hands the core's log records (``cmot: <step> ...``) to an R callback
as they happen (R shows them as messages), and turns Python exceptions into a
plain (type, message) pair so that R can raise a clean R error without a
traceback.
"""

import logging
import warnings
from contextlib import contextmanager

import numpy as np
import scipy.sparse as sp


def csr_from_csc_parts(x, i, p, n_cells, n_features):
    """A dgCMatrix (features x cells, CSC) read as CSR cells x features, without copying twice."""
    return sp.csr_matrix(
        (np.asarray(x, dtype=np.float64), np.asarray(i, dtype=np.int32), np.asarray(p, dtype=np.int32)),
        shape=(int(n_cells), int(n_features)),
    )


def pairs_matrix(x_index, y_index, n_x, n_y):
    """Binary (n_x, n_y) correspondence from 0-based index vectors."""
    x_index = np.asarray(x_index, dtype=np.int64).ravel()
    y_index = np.asarray(y_index, dtype=np.int64).ravel()
    w = sp.csr_matrix((np.ones(x_index.size), (x_index, y_index)), shape=(int(n_x), int(n_y)))
    w.data[:] = 1.0
    return w


def check_params(params):
    """The core's check of CMOT parameters; returns ``{"error": None, "params": normalized}``
    or ``{"error": [type, message]}`` (the message starts with the parameter's Python name)."""
    try:
        from cmot import check_params as check

        return {"error": None, "params": check(dict(params))}
    except Exception as exc:  # reported to R as an R error naming the R argument
        return {"error": [type(exc).__name__, str(exc)]}


class _CallbackHandler(logging.Handler):
    """Hands each formatted log record to ``callback`` (an R function: R shows it as a message)."""

    def __init__(self, callback):
        super().__init__(level=logging.INFO)
        self.callback = callback

    def emit(self, record):
        # the core names unreliable features by position (R hands it unnamed arrays); R names them itself
        if record.module == "feature_scores" and "reliabl" in record.getMessage():
            return
        try:
            self.callback(self.format(record))
        except Exception:  # never let the display of a message stop the computation
            pass


@contextmanager
def _log_to(callback):
    """While active, the ``cmot`` logger's INFO records go to ``callback`` only (not to the root logger's
    handlers nor to any handler the core adds for ``verbose``, so that each step is shown once, in R)."""
    if callback is None:
        yield
        return
    log = logging.getLogger("cmot")
    saved = (log.level, log.propagate, list(log.handlers))
    handler = _CallbackHandler(callback)
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    try:
        yield
    finally:
        log.setLevel(saved[0])
        log.propagate = saved[1]
        log.handlers = saved[2]


def _labels_out(model):
    """The transferred labels of the last predict: ``{name: {"labels", "score", "classes", "scores",
    "neighbors"}}`` (``neighbors``: the voting neighbours chosen for the name, ``label_neighbors_``)."""
    predicted = getattr(model, "predicted_labels_", None)
    if predicted is None:
        return None
    scores = model.predicted_label_scores_
    best = model.predicted_label_score_
    neighbors = getattr(model, "label_neighbors_", None) or {}
    out = {}
    for name in predicted.columns:
        table = scores[name]
        out[str(name)] = {
            "labels": [str(v) for v in predicted[name].astype(object)],
            "score": np.asarray(best[name], dtype=np.float64),
            "classes": [str(c) for c in table.columns],
            "scores": np.asarray(table, dtype=np.float64),
            "neighbors": int(neighbors[name]) if name in neighbors else None,
        }
    return out


def run(source_x, source_y, target_y, params, correspondence=None, labels=None, transfer_labels=None, log=None):
    """Fit and predict; returns a dict, with ``error`` set instead of raising.

    ``transfer_labels``: None or a dict name -> per-source-cell labels (strings), transferred to the
    target cells by the same transport.  ``log``: None or a callable that receives each of the core's
    log messages as it happens (the core's ``verbose`` is then on).
    """
    try:
        from cmot import CMOT

        params = dict(params)
        if log is not None:
            params["verbose"] = True
        model = CMOT(**params)
        fit_args = {"correspondence": correspondence, "labels": labels}
        if transfer_labels is not None:
            fit_args["transfer_labels"] = {str(k): np.asarray(v, dtype=object) for k, v in dict(transfer_labels).items()}
        with warnings.catch_warnings(record=True) as caught, _log_to(log):
            warnings.simplefilter("always")
            model.fit(source_x, source_y, **fit_args)
            x_hat = model.predict(target_y)
        # the values themselves: feature_scores_ is a pandas Series, and importing pandas costs 0.2-0.3 s
        feature_scores = model.__dict__.get("feature_score_values_")
        if feature_scores is None:  # cores before 0.6
            feature_scores = getattr(model, "feature_scores_", None)
        out = {
            "error": None,
            "x_hat": np.asarray(x_hat, dtype=np.float64),
            "outliers": np.asarray(model.outliers_, dtype=bool),
            "outlier_scores": np.asarray(model.outlier_scores_, dtype=np.float64),
            "mapping_score": np.asarray(model.mapping_score_, dtype=np.float64),
            "query_unlike": bool(getattr(model, "query_unlike_", False)),
            "reg_e": float(model.reg_e_),
            "n_neighbors": int(model.n_neighbors_),
            "n_pcs": None if getattr(model, "n_pcs_", None) is None else int(model.n_pcs_),
            "shrinkage": float(getattr(model, "shrinkage_", 0.0)),
            # Step C's other choices (cores before 0.5 / 0.9 have no linear map / metric and width)
            "linear_weight": float(getattr(model, "linear_weight_", 0.0)),
            "metric_weight": float(getattr(model, "metric_weight_", 0.0)),
            "kernel_width": float(getattr(model, "kernel_width_", 1.0)),
            "k_scores": None
            if getattr(model, "k_scores_", None) is None
            else {str(k): float(v) for k, v in model.k_scores_.items()},
            "n_iter": int(getattr(model, "n_iter_", -1)),
            "aligned_index": None
            if getattr(model, "aligned_index_", None) is None
            else np.asarray(model.aligned_index_, dtype=np.int64),
            "feature_scores": None if feature_scores is None else np.asarray(feature_scores, dtype=np.float64),
            "labels": _labels_out(model) if transfer_labels is not None else None,
            "warnings": [[type(w.message).__name__, str(w.message)] for w in caught],
        }
        return out
    except Exception as exc:  # reported to R as an R error
        return {"error": [type(exc).__name__, str(exc)]}
