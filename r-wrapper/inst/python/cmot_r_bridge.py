"""Glue between the R package ``cmot`` and the Python core.

Kept deliberately thin: it checks the parameters (``check_params``), builds the estimator, runs ``fit`` and ``predict``,
records Python warnings instead of printing them (R re-issues them as R
warnings), and turns Python exceptions into a plain (type, message) pair so
that R can raise a clean R error without a traceback.
"""

import warnings

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


def run(source_x, source_y, target_y, params, correspondence=None, labels=None):
    """Fit and predict; returns a dict, with ``error`` set instead of raising."""
    try:
        from cmot import CMOT

        model = CMOT(**params)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.fit(source_x, source_y, correspondence=correspondence, labels=labels)
            x_hat = model.predict(target_y)
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
            "k_scores": None
            if getattr(model, "k_scores_", None) is None
            else {str(k): float(v) for k, v in model.k_scores_.items()},
            "n_iter": int(getattr(model, "n_iter_", -1)),
            "aligned_index": None
            if getattr(model, "aligned_index_", None) is None
            else np.asarray(model.aligned_index_, dtype=np.int64),
            "warnings": [[type(w.message).__name__, str(w.message)] for w in caught],
        }
        return out
    except Exception as exc:  # reported to R as an R error
        return {"error": [type(exc).__name__, str(exc)]}
