"""Step C over the query in chunks: each chunk's nearest moved source cells are
searched once (``max(k, k_label)`` of them) and serve the inferred modality (the
``k`` nearest) and every transferred set of labels (its ``k_label`` nearest, with
the same distance unit; :mod:`cmot.label_transfer`).

Rows of the query are independent in Step C (the weights' distance unit is
fixed at fit, ``weight_scale_``), so chunking changes nothing but the memory
held at once and the progress shown (``cmot: inferring chunk i/n`` with
``verbose``): other chunk sizes than :data:`CHUNK_SIZE` change results by
floating-point rounding at most.  :func:`infer_rows` adds the linear map's
part (:func:`cmot.infer.blend_linear`): the whole Step C of some query rows, which
:mod:`cmot.chunked` runs on each chunk of a dask array.
"""

from __future__ import annotations

import logging

import numpy as np

from .infer import blend_linear, exp_weights, metric_space, nearest_neighbors, shrink_toward, weighted_average
from .label_transfer import label_votes

__all__ = ["CHUNK_SIZE", "infer_chunked", "infer_rows"]

logger = logging.getLogger("cmot")

#: Query cells per chunk of Step C: a multiple of the 2048-row blocks of
#: :func:`cmot.infer.nearest_neighbors`, so the distances are computed in the same
#: blocks as without chunks (bitwise the same results).
CHUNK_SIZE = 8192


def infer_chunked(target, mapped, x, n_neighbors: int, *, weight_scale, shrinkage: float = 0.0, x_mean=None,
                  label_transfer=None, label_neighbors=None, metric=None, verbose: bool = False,
                  chunk_size: int | None = None):
    """Step C: the X of each ``target`` row (the weighted average of the X of its
    ``n_neighbors`` nearest ``mapped`` source cells, pulled ``shrinkage`` of the way
    toward ``x_mean``, as :func:`cmot.infer.infer_x`) and the label votes of its
    ``label_neighbors[i]`` nearest (one number per name of ``label_transfer``; None:
    ``n_neighbors`` for every name) with the weights of the same distance unit
    (:func:`cmot.label_transfer.label_votes`).  One search of the most neighbours
    serves both: the X is the same as with a search of ``n_neighbors`` alone (up to
    which of several source cells at exactly the ``n_neighbors``-th distance is taken).

    ``x=None`` computes the label votes alone (``x_hat`` is then None).  ``metric``, a
    ``d x d`` transform (``CMOT.metric_``; None: Euclidean), is the metric of the search
    (:func:`cmot.infer.metric_space`).

    Returns
    -------
    x_hat : ndarray of shape (n_target, n_x_features), or None
    votes : list of ndarray
        One ``(n_target, n_classes)`` array per name of ``label_transfer`` (empty without).

    Examples
    --------
    >>> import numpy as np
    >>> from cmot.label_transfer import LabelTransfer
    >>> lt = LabelTransfer(["type"], [np.array(["a", "b"])], [np.array([0, 1])])
    >>> x_hat, votes = infer_chunked(np.array([[0.0], [9.0]]), np.array([[0.0], [9.0]]),
    ...                              np.array([[1.0], [3.0]]), 1, weight_scale=1.0, label_transfer=lt)
    >>> x_hat.ravel().tolist(), votes[0].tolist()
    ([1.0, 3.0], [[1.0, 0.0], [0.0, 1.0]])
    """
    n = target.shape[0]
    chunk_size = CHUNK_SIZE if chunk_size is None else int(chunk_size)
    if isinstance(weight_scale, str):  # "auto" of models saved by cmot < 0.4: a median over all target rows
        chunk_size = max(n, 1)
    one_hots = [] if label_transfer is None else [label_transfer.one_hot(i) for i in range(len(label_transfer.names))]
    label_ks = [int(n_neighbors)] * len(one_hots) if label_neighbors is None else [int(k) for k in label_neighbors]
    if len(label_ks) != len(one_hots):
        raise ValueError(f"label_neighbors: expected one number per transferred name ({len(one_hots)}), "
                         f"found {len(label_ks)}.")
    n_search = max([int(n_neighbors), *label_ks])
    starts = list(range(0, n, chunk_size)) or [0]
    mapped = metric_space(mapped, metric)
    x_parts, vote_parts = [], [[] for _ in one_hots]
    for i, start in enumerate(starts):
        if verbose:
            logger.info("cmot: inferring chunk %d/%d", i + 1, len(starts))
        idx, dist = nearest_neighbors(metric_space(target[start:start + chunk_size], metric), mapped, n_search)
        if x is not None:
            x_parts.append(shrink_toward(weighted_average(x, idx[:, :n_neighbors],
                                                          exp_weights(dist[:, :n_neighbors], weight_scale)),
                                         shrinkage, x_mean))
        for parts, one_hot, k in zip(vote_parts, one_hots, label_ks):
            parts.append(label_votes(one_hot, idx[:, :k], exp_weights(dist[:, :k], weight_scale)))
    x_hat = np.concatenate(x_parts, axis=0) if x is not None else None
    return x_hat, [np.concatenate(p, axis=0) for p in vote_parts]


def infer_rows(target, mapped, x, n_neighbors: int, *, weight_scale, shrinkage: float = 0.0, x_mean=None,
               linear=None, linear_weight: float = 0.0, offset=None, label_transfer=None, label_neighbors=None,
               metric=None, verbose: bool = False, chunk_size: int | None = None):
    """The whole Step C of the query rows ``target``: :func:`infer_chunked` blended with
    ``linear_weight`` of the linear map ``linear`` at ``target - offset``
    (:func:`cmot.infer.blend_linear`; the map takes the components, whatever the
    neighbours' ``metric``).  Rows are independent: any split of the rows gives the same
    results (up to floating-point rounding).

    Returns
    -------
    x_hat : ndarray of shape (n_target, n_x_features), or None when ``x`` is None
    votes : list of ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from cmot.infer import LinearMap
    >>> lin = LinearMap(np.array([0.0]), np.array([[1.0]]), 0.0)
    >>> x_hat, _ = infer_rows(np.array([[0.0]]), np.array([[0.0], [9.0]]), np.array([[1.0], [3.0]]), 1,
    ...                       weight_scale=1.0, linear=lin, linear_weight=0.5, offset=np.array([-2.0]))
    >>> x_hat.tolist()
    [[1.5]]
    """
    x_hat, votes = infer_chunked(target, mapped, x, n_neighbors, weight_scale=weight_scale, shrinkage=shrinkage,
                                 x_mean=x_mean, label_transfer=label_transfer, label_neighbors=label_neighbors,
                                 metric=metric, verbose=verbose, chunk_size=chunk_size)
    if x_hat is not None:
        x_hat = blend_linear(x_hat, target, linear, linear_weight, offset=offset, shrinkage=shrinkage,
                             x_mean=x_mean)
    return x_hat, votes
