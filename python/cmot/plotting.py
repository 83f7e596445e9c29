"""Pictures to judge a transfer: which inferred features can be trusted, where the query
maps poorly, and, where the truth was measured, predicted against measured.

matplotlib is imported only when a function is called (install it with
``pip install matplotlib``, or the extra ``cmot-ot[bench]``).  Every function draws
into ``ax`` (or new axes) and returns the axes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._validation import _is_anndata, _is_dataframe
from .tools import feature_score_series

__all__ = ["plot_feature_scores", "plot_mapping_score", "plot_predicted_vs_measured"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError("cmot.plotting needs matplotlib, which is not installed: pip install matplotlib "
                          "(or the extra: pip install 'cmot-ot[bench]').") from exc
    return plt


def _axes(ax):
    return _pyplot().subplots(layout="constrained")[1] if ax is None else ax


def _feature_scores(obj, key_added) -> pd.Series:
    """Per-feature scores from a fitted model (``feature_scores_``), a query AnnData written
    by :func:`cmot.tools.transfer` (``uns[key_added]``), a dict or a Series."""
    if hasattr(obj, "get_params"):
        scores = getattr(obj, "feature_scores_", None)
        if scores is None:
            raise ValueError("model_or_scores: expected a model with feature_scores_, found none (this cmot "
                             "version or this model does not compute them); pass a dict or Series of scores.")
        names = getattr(obj, "feature_names_x_", None)
    elif _is_anndata(obj):
        scores = obj.uns.get(key_added, {}).get("feature_scores")
        if scores is None:
            raise ValueError(f"model_or_scores: expected an AnnData with uns[{key_added!r}]['feature_scores'] "
                             "(written by cmot.tools.transfer when the model has "
                             "feature_scores_), found none.")
        names = None
    elif isinstance(obj, (Mapping, pd.Series)):
        scores, names = obj, None
    else:
        raise TypeError(f"model_or_scores: expected a fitted CMOT, an AnnData, a dict or a Series, "
                        f"found {type(obj).__module__}.{type(obj).__name__}.")
    if isinstance(scores, Mapping):
        scores = pd.Series(scores, dtype=float)
    return feature_score_series(scores, names)


def plot_feature_scores(model_or_scores, ax=None, threshold=0.3, *, key_added="cmot", max_labels=60):
    """Per-feature predictability, sorted: which inferred features can be trusted.

    Parameters
    ----------
    model_or_scores : CMOT, AnnData, dict or Series
        A fitted model with ``feature_scores_``, a query written by
        :func:`cmot.tools.transfer` (its ``uns[key_added]``), or scores by feature name.
    ax : matplotlib Axes, optional
        Where to draw; None makes a new figure.
    threshold : float or None, default=0.3
        Features scoring below it are drawn in red and counted in the legend (for
        example leave-one-out r < 0.3: not to be trusted).  None draws no line.
    key_added : str, default="cmot"
        The ``key_added`` of :func:`cmot.tools.transfer`, for AnnData input.
    max_labels : int, default=60
        Feature names are written under the axis when there are at most this many.

    Returns
    -------
    ax : matplotlib Axes
        One dot per feature (highest first); features without a score (NaN) are not
        drawn and are counted in the title.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_feature_scores({"CD3": 0.9, "CD8": 0.7, "PD-1": 0.1})
    >>> [t.get_text() for t in ax.get_xticklabels()]
    ['CD3', 'CD8', 'PD-1']
    """
    scores = _feature_scores(model_or_scores, key_added)
    missing = int(scores.isna().sum())
    drawn = scores.dropna().sort_values(ascending=False, kind="stable")
    ax = _axes(ax)
    x, y = np.arange(drawn.size), drawn.to_numpy()
    low = y < threshold if threshold is not None else np.zeros(y.size, dtype=bool)
    ax.plot(x[~low], y[~low], "o", color="C0", label="predictable" if threshold is not None else None)
    if threshold is not None:
        ax.plot(x[low], y[low], "o", color="C3", label=f"below {threshold:g}: {int(low.sum())} of {y.size}")
        ax.axhline(threshold, linestyle="--", color="grey", linewidth=1)
        ax.legend(loc="upper right", frameon=False)
    if drawn.size <= max_labels:
        ax.set_xticks(x, [str(n) for n in drawn.index], rotation=90)
    else:
        ax.set_xticks([])
    ax.set_xlabel(f"{drawn.size} inferred features, sorted")
    ax.set_ylabel("predictability (leave-one-out r)")
    ax.set_title("per-feature predictability" + (f" ({missing} features without a score)" if missing else ""))
    return ax


def _column(adata, key, arg):
    if key not in adata.obs.columns:
        raise ValueError(f"{arg}: expected a column of adata.obs, found {key!r}.")
    return adata.obs[key]


def _from_anndata(adata, score, poorly_mapped, basis, key_added):
    """Embedding, score and poorly-mapped flags of a query written by :func:`cmot.tools.transfer`."""
    if basis not in adata.obsm:
        raise ValueError(f"basis: expected an obsm key of the AnnData (one of {', '.join(adata.obsm) or 'none'}), "
                         f"found {basis!r}.")
    if score is None:
        found = [k for k in (f"{key_added}_mapping_score", f"{key_added}_outlier_score") if k in adata.obs]
        score = found[0] if found else f"{key_added}_poorly_mapped"
    if isinstance(score, str):
        score = _column(adata, score, "score")
    flag_key = f"{key_added}_poorly_mapped"
    if poorly_mapped is None and flag_key in adata.obs and getattr(score, "name", None) != flag_key:
        poorly_mapped = adata.obs[f"{key_added}_poorly_mapped"]
    return np.asarray(adata.obsm[basis]), score, poorly_mapped


def plot_mapping_score(embedding, score=None, ax=None, *, poorly_mapped=None, basis="X_umap", key_added="cmot",
                       cmap="viridis", size=8):
    """The query's embedding coloured by its mapping score or poorly mapped flag.

    Parameters
    ----------
    embedding : array-like of shape (n_cells, >= 2), or AnnData
        Coordinates of the query cells (the first two columns are drawn).  An AnnData
        written by :func:`cmot.tools.transfer`: ``obsm[basis]``, and by default the
        score and flags that transfer wrote under ``key_added``.
    score : array-like of shape (n_cells,), or str with AnnData
        Numbers (a colour scale) or booleans (poorly mapped in red, others grey).
    ax : matplotlib Axes, optional
    poorly_mapped : array-like of bool, optional
        With a numeric score: these cells are circled in red.
    basis, key_added : str
        For AnnData input.
    cmap : str, default="viridis"
    size : float, default=8

    Returns
    -------
    ax : matplotlib Axes

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> ax = plot_mapping_score([[0, 0], [1, 0], [0, 1]], [0.1, 0.5, 4.0], poorly_mapped=[False, False, True])
    >>> ax.collections[0].get_array().tolist()
    [0.1, 0.5, 4.0]
    """
    if _is_anndata(embedding):
        embedding, score, poorly_mapped = _from_anndata(embedding, score, poorly_mapped, basis, key_added)
    emb = np.asarray(embedding.to_numpy() if _is_dataframe(embedding) else embedding, dtype=float)
    if emb.ndim != 2 or emb.shape[1] < 2:
        raise ValueError(f"embedding: expected an array of shape (n_cells, >= 2), found shape {emb.shape}.")
    if score is None:
        raise ValueError("score: expected one value per cell, found None.")
    label = getattr(score, "name", None)
    values = _per_cell(score, emb.shape[0], "score")
    ax = _axes(ax)
    if values.dtype == bool:
        for flag, colour, name in ((False, "lightgrey", "mapped"), (True, "C3", "poorly mapped")):
            sel = values == flag
            ax.scatter(emb[sel, 0], emb[sel, 1], s=size, c=colour, label=f"{name} ({int(sel.sum())})")
        ax.legend(frameon=False, markerscale=2)
    else:
        points = ax.scatter(emb[:, 0], emb[:, 1], s=size, c=values.astype(float), cmap=cmap)
        ax.figure.colorbar(points, ax=ax, label=str(label) if label is not None else "mapping score")
        if poorly_mapped is not None:
            flags = _per_cell(poorly_mapped, emb.shape[0], "poorly_mapped").astype(bool)
            ax.scatter(emb[flags, 0], emb[flags, 1], s=size * 3, facecolors="none", edgecolors="C3",
                       label=f"poorly mapped ({int(flags.sum())})")
            ax.legend(frameon=False)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def _per_cell(values, n, arg):
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise ValueError(f"{arg}: expected one value per cell of the embedding ({n}), found shape {arr.shape}.")
    return arr


def _as_table(obj, arg):
    if _is_anndata(obj):
        return obj.to_df()
    if _is_dataframe(obj):
        return obj
    raise TypeError(f"{arg}: expected a DataFrame (cells x features) or an AnnData, "
                    f"found {type(obj).__module__}.{type(obj).__name__}.")


def _shown(names):
    names = [str(n) for n in names]
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")


def plot_predicted_vs_measured(pred, measured, features, *, axes=None, ncols=4, size=4):
    """Predicted against measured values of a few features, one panel each, with Pearson r.

    Parameters
    ----------
    pred, measured : DataFrame or AnnData
        Cells x features (for example ``query.obsm["cmot"]`` and the held-out truth).
        Cells are matched by name: every predicted cell must be measured.
    features : str or list of str
        Features to draw (names of columns of both).
    axes : array of matplotlib Axes, optional
        At least ``len(features)``; None makes a figure with ``ncols`` columns.
    ncols : int, default=4
    size : float, default=4

    Returns
    -------
    axes : ndarray of matplotlib Axes
        Panel ``i`` shows feature ``i``: measured on x, predicted on y, in the order of
        ``pred``'s cells; its title gives the feature and r.

    Examples
    --------
    >>> import matplotlib, pandas as pd
    >>> matplotlib.use("Agg")
    >>> p = pd.DataFrame({"CD3": [1.0, 2.0, 3.0]}, index=["a", "b", "c"])
    >>> m = pd.DataFrame({"CD3": [3.5, 1.0, 2.5]}, index=["c", "a", "b"])
    >>> plot_predicted_vs_measured(p, m, "CD3")[0].get_title()
    'CD3 (r = 0.99)'
    """
    pred, measured = _as_table(pred, "pred"), _as_table(measured, "measured")
    features = [features] if isinstance(features, str) else list(features)
    for arg, table in (("pred", pred), ("measured", measured)):
        absent = [f for f in features if f not in table.columns]
        if absent:
            raise ValueError(f"features: expected columns of {arg}, found {len(absent)} missing: {_shown(absent)}.")
    lacking = pd.Index(pred.index).difference(measured.index, sort=False)
    if len(lacking):
        raise ValueError(f"measured: expected every predicted cell, found {len(lacking)} missing: {_shown(lacking)}.")
    measured = measured.loc[pred.index]
    if axes is None:
        nrows = -(-len(features) // ncols)
        fig, axes = _pyplot().subplots(nrows, min(ncols, len(features)), squeeze=False,
                                       figsize=(3 * min(ncols, len(features)), 3 * nrows), layout="constrained")
    axes = np.asarray(axes).ravel()
    if axes.size < len(features):
        raise ValueError(f"axes: expected at least {len(features)} axes (one per feature), found {axes.size}.")
    for ax, f in zip(axes, features):
        x, y = measured[f].to_numpy(dtype=float), pred[f].to_numpy(dtype=float)
        r = np.corrcoef(x, y)[0, 1] if x.std() > 0 and y.std() > 0 else np.nan
        ax.scatter(x, y, s=size, alpha=0.6)
        ax.set_title(f"{f} (r = {r:.2f})")
        ax.set_xlabel("measured")
        ax.set_ylabel("predicted")
    for ax in axes[len(features):]:
        ax.set_visible(False)
    return axes
