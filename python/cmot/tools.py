"""cmot for AnnData and MuData users, in the style of ``scanpy.tl``: one call fits a
:class:`cmot.CMOT` on a reference, infers the missing modality of a query, and writes
the results into the query.

The shared modality (``Y``, e.g. RNA) is each AnnData's ``.X`` or a layer; the modality
to infer (``X``, e.g. protein) is read from the reference: an ``obsm`` key (such as
totalVI's ``protein_expression``), a layer, a separate AnnData or DataFrame aligned by
cell names, or, for MuData, a modality.  The estimator's API (``fit``/``predict``) is
unchanged; :func:`transfer` only reads, aligns and writes.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ._validation import _is_anndata, _is_dataframe
from .estimator import CMOT

__all__ = ["transfer"]

_LIST_MAX = 10  # names shown in an error before "..."


def transfer(query, reference, *, modality, shared=None, labels_key=None, layer=None, reference_layer=None,
             use_highly_variable=None, use_rep=None, key_added="cmot", copy=False, overwrite=False, **cmot_params):
    """Infer a modality of the ``query`` cells from a ``reference`` and write it into the query.

    Parameters
    ----------
    query : AnnData or MuData
        Cells measured in the shared modality only.  Its genes are matched to the
        reference's by name (``var_names``): order and extra genes do not matter.
    reference : AnnData or MuData
        Cells measured in the shared modality and in the one to infer.  Never modified.
    modality : str, AnnData or DataFrame
        The modality to infer, for the reference's cells.  A str is an ``obsm`` key of
        the reference (a DataFrame, or an array whose feature names are read from
        ``reference.uns[f"{modality}_names"]``, else generated as ``f"{modality}_0"``, ...
        with a warning), or a layer of the reference (then its features are the
        reference's genes), or, when ``reference`` is a MuData, a modality key.  An
        AnnData (its ``.X``) or a DataFrame is matched to the reference's cells by name
        (``obs_names`` / index); reference cells it lacks are an error that lists them.
    shared : str, optional
        With MuData input: the key of the shared modality (e.g. ``"rna"``).  Results are
        then written into ``query.mod[shared]``.
    labels_key : str, optional
        A column of the reference's ``obs`` (cell types): the labels of the transport
        (``fit(..., labels=...)``), transferred to the query cells by the same
        transport and neighbours (``transfer_labels``, written below); missing values
        are an error.  None uses Ward clusters and transfers no labels.
    layer : str, optional
        Layer of the query (and, by default, of the reference) holding the shared
        modality; None uses ``.X``.
    reference_layer : str, optional
        Layer of the reference holding the shared modality; defaults to ``layer``.
    use_highly_variable : bool, optional
        Restrict the shared genes to the reference's ``var["highly_variable"]``.  None
        does so when the column exists; True requires it.  Unless ``n_features`` is
        given, every flagged gene is then used (``n_features`` = their number).
    use_rep : str, optional
        An ``obsm`` key of an embedding the user computed (``"X_pca"``, ``"X_harmony"``,
        an LSI, ...): the transport and the neighbours then work in it
        (``CMOT(representation="precomputed")``; genes, ``layer`` and
        ``use_highly_variable`` only serve the projection below).  The reference must
        have it; the query too, with the same columns, except for ``"X_pca"`` when the
        reference has ``varm["PCs"]`` (scanpy's ``sc.pp.pca``): the query is then
        projected into the reference's PCA, ``(X_q - m) @ PCs``, with ``X_q`` the query's
        ``.X`` (or ``layer``) on the genes whose loadings are not all zero and ``m``
        those genes' mean over the reference cells (in the matrix ``transfer`` reads
        for the reference: ``.X`` or ``reference_layer``).  Centring with the
        reference's mean, as Seurat's ``pcaproject`` does, keeps an offset between
        query and reference for the transport to measure (scanpy's ``ingest``
        centres the query with its own mean).  The query's matrix must be on the
        scale the reference's PCA saw (if the reference was scaled before its PCA,
        scale the query the same way); a reference whose ``obsm["X_pca"]`` is not
        the projection of its own matrix is an error.
    key_added : str, default="cmot"
        Prefix of everything written into the query (below).
    copy : bool, default=False
        Write into a copy of ``query`` and return ``(copy, model)``; else write into
        ``query`` and return ``model``.
    overwrite : bool, default=False
        Replace results already under ``key_added``; else existing keys are an error.
    **cmot_params
        Parameters of :class:`cmot.CMOT` (``n_neighbors``, ``random_state``, ``verbose``, ...).

    Returns
    -------
    model : CMOT
        The fitted estimator (after ``predict`` on the query), or ``(query_copy, model)``
        with ``copy=True``.

    Notes
    -----
    Written into the query (``query.mod[shared]`` for MuData; ``key`` = ``key_added``):

    - ``obsm[key]``: DataFrame of the inferred features, query cells x features;
    - ``obs[f"{key}_poorly_mapped"]``: bool, cells unlike every reference cell;
    - ``obs[f"{key}_mapping_score"]`` when the model computes ``mapping_score_``, else
      ``obs[f"{key}_outlier_score"]``: the robust z-score ``outlier_scores_`` (higher is worse);
    - with ``labels_key``: ``obs[f"{key}_{labels_key}"]`` (categorical, the transferred
      label, ``predicted_labels_``), ``obs[f"{key}_{labels_key}_score"]`` (its score, 0-1,
      ``predicted_label_score_``) and ``obsm[f"{key}_{labels_key}_scores"]`` (a DataFrame
      of every class's score, rows summing to 1, ``predicted_label_scores_``);
    - ``uns[key]`` (JSON-safe): ``"params"`` (of the CMOT), ``"fitted"`` (what ``fit``
      and ``predict`` chose: ``n_neighbors``, ``n_pcs``, ``shrinkage``, ``linear_weight``,
      ``metric_weight`` and ``kernel_width`` (Step C's neighbour metric and weights),
      ``reg_e``, ``label_neighbors`` (per transferred name), the
      number of poorly mapped cells, whether labels were transferred), ``"inputs"``
      (where each modality was read, the number of shared genes, the embedding used),
      ``"versions"``, and ``"feature_scores"``: ``feature_scores_`` (how well each inferred
      feature can be inferred: leave-one-out r on the reference), by feature.

    Examples
    --------
    >>> import anndata as ad, pandas as pd
    >>> from cmot.datasets import make_multimodal
    >>> from cmot.tools import transfer
    >>> d = make_multimodal(120, 40, random_state=0)
    >>> genes = [f"g{j}" for j in range(d.source_y.shape[1])]
    >>> ref = ad.AnnData(d.source_y, obs=pd.DataFrame(index=[f"r{i}" for i in range(120)]),
    ...                  var=pd.DataFrame(index=genes))
    >>> ref.obsm["protein"] = pd.DataFrame(d.source_x, index=ref.obs_names,
    ...                                    columns=[f"p{j}" for j in range(d.source_x.shape[1])])
    >>> query = ad.AnnData(d.target_y, obs=pd.DataFrame(index=[f"q{i}" for i in range(40)]),
    ...                    var=pd.DataFrame(index=genes))
    >>> model = transfer(query, ref, modality="protein", n_neighbors=10, random_state=0)
    >>> query.obsm["cmot"].shape, query.obsm["cmot"].columns[0]
    ((40, 30), 'p0')
    >>> query.obs["cmot_poorly_mapped"].dtype, query.uns["cmot"]["fitted"]["n_neighbors"]
    (dtype('bool'), 10)
    >>> len(query.uns["cmot"]["feature_scores"])
    30

    Labels from an obs column, and the transport in a PCA the user computed:

    >>> from sklearn.decomposition import PCA
    >>> ref.obs["cell_type"] = pd.Categorical([f"type{t}" for t in d.source_labels])
    >>> pca = PCA(10, random_state=0).fit(ref.X)
    >>> ref.obsm["X_pca"], ref.varm["PCs"] = pca.transform(ref.X), pca.components_.T
    >>> model = transfer(query, ref, modality="protein", labels_key="cell_type", use_rep="X_pca",
    ...                  key_added="cmot_pca", n_neighbors=10, random_state=0)
    >>> float((query.obs["cmot_pca_cell_type"] == [f"type{t}" for t in d.target_labels]).mean()) > 0.9
    True
    >>> query.obsm["cmot_pca_cell_type_scores"].shape, model.n_pcs_
    ((40, 3), 10)
    """
    if shared is not None and not (_is_mudata(query) or _is_mudata(reference)):
        raise ValueError(f"shared: expected None when neither query nor reference is a MuData, found {shared!r}.")
    q_ad, r_ad = _unpack(query, "query", shared), _unpack(reference, "reference", shared)
    _check_str(key_added, "key_added")
    target_keys = _planned_keys(key_added, labels_key)
    _refuse_existing(q_ad, target_keys, overwrite)
    ref_layer = layer if reference_layer is None else reference_layer
    ref_arg = "reference_layer" if reference_layer else "layer"
    if use_rep is None:
        used, hv_used = _shared_features(r_ad, use_highly_variable)
        source_y = _as_anndata(_layer(r_ad, ref_layer, ref_arg, "reference"), r_ad.obs_names, r_ad.var_names,
                               columns=used)
        q_cols = _query_columns(q_ad, used)
        target_y = _as_anndata(_layer(q_ad, layer, "layer", "query"), q_ad.obs_names, q_ad.var_names, columns=q_cols)
        rep_info = {"use_highly_variable": hv_used, "n_shared_features": int(used.size)}
        if hv_used and "n_features" not in cmot_params:
            cmot_params["n_features"] = int(used.size)
    else:
        source_y, target_y, rep_info = _embeddings(q_ad, r_ad, use_rep, layer, ref_layer, ref_arg,
                                                   use_highly_variable, cmot_params)
    source_x, x_info = _modality(reference, r_ad, modality)
    labels = _labels(r_ad, labels_key)
    model = _model(cmot_params)
    model.fit(source_x, source_y, labels=labels, transfer_labels=None if labels is None else {labels_key: labels})
    pred = _as_frame(model.predict(target_y), q_ad.obs_names)
    out = query.copy() if copy else query
    out_ad = _unpack(out, "query", shared)
    info = {"modality": x_info, "shared": shared, "layer": layer, "reference_layer": ref_layer,
            "labels_key": labels_key, **rep_info}
    _write(out_ad, model, pred, key_added, labels_key, info)
    return (out, model) if copy else model


# ------------------------------------------------------------------------ inputs
def _is_mudata(obj) -> bool:
    return isinstance(getattr(obj, "mod", None), Mapping) and not _is_anndata(obj)


def _model(cmot_params):
    valid = CMOT().get_params()
    unknown = [k for k in cmot_params if k not in valid]
    if unknown:
        raise TypeError(f"{', '.join(unknown)}: not a parameter of transfer or of cmot.CMOT; CMOT's parameters "
                        f"are {', '.join(valid)}.")
    return CMOT(**cmot_params)


def _as_frame(x_hat, obs_names):
    """The estimator's output for the query as a DataFrame indexed by the query's obs_names."""
    if _is_anndata(x_hat):
        values, columns = x_hat.X, x_hat.var_names
    else:
        values, columns = x_hat.to_numpy(), x_hat.columns
    values = values.toarray() if hasattr(values, "toarray") else np.asarray(values)
    return pd.DataFrame(values, index=obs_names.copy(), columns=pd.Index([str(c) for c in columns]))


def _check_str(value, name):
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name}: expected a non-empty str, found {value!r}.")


def _unpack(obj, name, shared):
    """The AnnData of the shared modality: ``obj`` itself, or ``obj.mod[shared]`` for MuData."""
    if _is_mudata(obj):
        if shared is None:
            raise ValueError(f"shared: {name} is a MuData; expected the key of the shared modality "
                             f"(one of {', '.join(map(str, obj.mod))}), found None.")
        if shared not in obj.mod:
            raise ValueError(f"shared: expected a modality of {name} (one of {', '.join(map(str, obj.mod))}), "
                             f"found {shared!r}.")
        return obj.mod[shared]
    if not _is_anndata(obj):
        raise TypeError(f"{name}: expected an AnnData or MuData, found {type(obj).__module__}.{type(obj).__name__}.")
    return obj


def _shown(names) -> str:
    names = [str(n) for n in names]
    return ", ".join(names[:_LIST_MAX]) + (" ..." if len(names) > _LIST_MAX else "")


def _check_unique(index, name, what):
    dup = index[index.duplicated()].unique()
    if len(dup):
        raise ValueError(f"{name}: expected unique {what}, found {len(dup)} duplicated: {_shown(dup)} "
                         f"(anndata: {name}.{what.replace(' ', '_')}_make_unique()).")


def _layer_names(adata) -> list:
    """The names of ``adata``'s layers (anndata >= 0.13 lists ``.X`` among them as ``None``)."""
    return [str(k) for k in adata.layers.keys() if k is not None]


def _layer(adata, layer, arg, name):
    """The shared modality's matrix of ``adata``: ``.X`` or ``layers[layer]``."""
    if layer is None:
        if adata.X is None:
            raise ValueError(f"{name}: expected a matrix in .X (or pass {arg}=), found .X = None.")
        return adata.X
    if layer not in adata.layers:
        have = ", ".join(_layer_names(adata)) or "none"
        raise ValueError(f"{arg}: expected a layer of {name}, found {layer!r}; its layers are: {have}.")
    return adata.layers[layer]


def _as_anndata(matrix, obs_names, var_names, *, columns=None):
    """A bare AnnData that carries the names to the estimator (no copy unless ``columns``,
    names of ``var_names``, selects and orders the columns)."""
    import anndata

    var_names = pd.Index([str(v) for v in var_names])
    if columns is not None and not columns.equals(var_names):
        matrix = matrix[:, var_names.get_indexer(columns)]
        var_names = columns
    return anndata.AnnData(X=matrix, obs=pd.DataFrame(index=pd.Index([str(c) for c in obs_names])),
                           var=pd.DataFrame(index=var_names))


def _shared_features(r_ad, use_highly_variable):
    """The reference genes used (an Index, in reference order) and whether the
    ``highly_variable`` flag chose them."""
    _check_unique(r_ad.var_names, "reference", "var names")
    _check_unique(r_ad.obs_names, "reference", "obs names")
    has = "highly_variable" in r_ad.var.columns
    if use_highly_variable is None:
        use_highly_variable = has
    elif not isinstance(use_highly_variable, (bool, np.bool_)):
        raise TypeError(f"use_highly_variable: expected True, False or None, found {use_highly_variable!r}.")
    if not use_highly_variable:
        return pd.Index(r_ad.var_names), False
    if not has:
        raise ValueError("use_highly_variable: expected a column 'highly_variable' in reference.var "
                         "(scanpy: sc.pp.highly_variable_genes), found none.")
    flag = r_ad.var["highly_variable"]
    if flag.isna().any() or not pd.api.types.is_bool_dtype(flag.dtype) and not set(flag.unique()) <= {0, 1}:
        raise ValueError("use_highly_variable: expected reference.var['highly_variable'] to hold True/False "
                         f"without missing values, found dtype {flag.dtype} with {int(flag.isna().sum())} missing.")
    mask = flag.to_numpy().astype(bool)
    if mask.sum() < 2:
        raise ValueError(f"use_highly_variable: expected at least 2 genes flagged in "
                         f"reference.var['highly_variable'], found {int(mask.sum())}.")
    return pd.Index(r_ad.var_names[mask]), True


def _query_columns(q_ad, used):
    """The query's genes in the order of the reference genes ``used`` (every one must exist)."""
    _check_unique(q_ad.var_names, "query", "var names")
    missing = used.difference(q_ad.var_names, sort=False)
    if len(missing):
        raise ValueError(f"query: expected every one of the {used.size} shared genes of the reference "
                         f"(matched by var_names), found {len(missing)} missing: {_shown(missing)}.")
    return used


def _embeddings(q_ad, r_ad, key, layer, ref_layer, ref_arg, use_highly_variable, cmot_params):
    """``use_rep``: the reference's and the query's embedding (the query projected when it
    lacks one, see :func:`transfer`), for ``CMOT(representation="precomputed")``."""
    _check_str(key, "use_rep")
    if cmot_params.get("representation", "precomputed") != "precomputed":
        raise ValueError(f"representation: expected 'precomputed' (or nothing) with use_rep={key!r}, found "
                         f"{cmot_params['representation']!r}.")
    if use_highly_variable:
        raise ValueError(f"use_highly_variable: expected None or False with use_rep={key!r} (the embedding "
                         "fixes the features), found True.")
    cmot_params["representation"] = "precomputed"
    _check_unique(r_ad.obs_names, "reference", "obs names")
    if key not in r_ad.obsm:
        raise ValueError(f"use_rep: expected an obsm key of reference, found {key!r}; its obsm keys: "
                         f"{', '.join(map(str, r_ad.obsm)) or 'none'}.")
    ref_emb = _dense_embedding(r_ad.obsm[key])
    if key in q_ad.obsm:
        q_emb, how = _dense_embedding(q_ad.obsm[key]), "obsm"
        if q_emb.shape[1] != ref_emb.shape[1]:
            raise ValueError(f"use_rep: expected query.obsm[{key!r}] with the {ref_emb.shape[1]} columns of "
                             f"reference.obsm[{key!r}], found {q_emb.shape[1]}.")
    elif key == "X_pca" and "PCs" in r_ad.varm:
        q_emb = _project_pca(q_ad, r_ad, ref_emb, _layer(q_ad, layer, "layer", "query"),
                             _layer(r_ad, ref_layer, ref_arg, "reference"))
        how = "projected with reference.varm['PCs']"
    else:
        raise ValueError(f"use_rep: expected {key!r} in query.obsm too (only 'X_pca' can be projected, with "
                         f"reference.varm['PCs']), found obsm keys: {', '.join(map(str, q_ad.obsm)) or 'none'}.")
    cols = pd.Index([f"{key}_{j + 1}" for j in range(ref_emb.shape[1])])
    source_y = _as_anndata(ref_emb, r_ad.obs_names, cols)
    target_y = _as_anndata(q_emb, q_ad.obs_names, cols)
    return source_y, target_y, {"use_rep": key, "query_rep": how, "n_rep_columns": int(ref_emb.shape[1])}


def _dense_embedding(value):
    values = value.to_numpy() if _is_dataframe(value) else value
    values = values.toarray() if hasattr(values, "toarray") else np.asarray(values)
    return np.asarray(values, dtype=np.float64)


def _project_pca(q_ad, r_ad, ref_emb, q_matrix, r_matrix):
    """The query in the reference's PCA: ``(X_q - reference mean) @ PCs`` on the genes with loadings."""
    pcs = np.asarray(r_ad.varm["PCs"], dtype=np.float64)
    if pcs.shape[1] < ref_emb.shape[1]:
        raise ValueError(f"use_rep: expected reference.varm['PCs'] with at least the {ref_emb.shape[1]} columns "
                         f"of reference.obsm['X_pca'], found {pcs.shape[1]}.")
    used = np.flatnonzero(np.any(pcs != 0, axis=1))
    _check_unique(r_ad.var_names, "reference", "var names")
    genes = pd.Index([str(g) for g in r_ad.var_names[used]])
    q_names = pd.Index([str(g) for g in q_ad.var_names])
    _check_unique(q_names, "query", "var names")
    pos = q_names.get_indexer(genes)
    if (pos < 0).any():
        raise ValueError(f"query: expected every one of the {genes.size} genes of the reference's PCA (matched by "
                         f"var_names), found {int((pos < 0).sum())} missing: {_shown(genes[pos < 0])}.")
    basis = pcs[used][:, : ref_emb.shape[1]]
    mean = np.asarray(r_matrix[:, used].mean(axis=0), dtype=np.float64).ravel()
    check = min(r_ad.n_obs, 500)
    ref_proj = (_dense_embedding(r_matrix[:check][:, used]) - mean) @ basis
    if np.linalg.norm(ref_proj - ref_emb[:check]) > 1e-3 * max(np.linalg.norm(ref_emb[:check]), 1e-12):
        raise ValueError("use_rep: expected reference.obsm['X_pca'] to be the reference's matrix (.X or the layer "
                         "read), centred, times varm['PCs'], found otherwise (was .X changed, e.g. scaled, after "
                         "the PCA?); pass the query's embedding in query.obsm['X_pca'].")
    return (_dense_embedding(q_matrix[:, pos]) - mean) @ basis


def _cell_positions(names, ref_cells, arg):
    """Positions in ``names`` of each reference cell; missing reference cells are an error and
    cells that are not reference cells are reported (a warning), never silently dropped."""
    names = pd.Index([str(n) for n in names])
    _check_unique(names, arg, "obs names")
    pos = names.get_indexer(ref_cells)
    if (pos < 0).any():
        missing = ref_cells[pos < 0]
        raise ValueError(f"{arg}: expected a row for each of the {ref_cells.size} reference cells (matched by "
                         f"name), found {missing.size} missing: {_shown(missing)}.")
    if names.size > ref_cells.size:
        extra = names.difference(ref_cells, sort=False)
        warnings.warn(f"{arg}: {extra.size} cells are not reference cells and are not used: {_shown(extra)}.",
                      UserWarning, stacklevel=5)
    return pos


def _modality(reference, r_ad, modality):
    """The modality to infer as an AnnData or DataFrame in the reference's cell order, and a
    JSON-safe description of where it came from."""
    ref_cells = pd.Index(r_ad.obs_names, dtype=str)
    if _is_anndata(modality) or _is_dataframe(modality):
        kind = "AnnData" if _is_anndata(modality) else "DataFrame"
        return _aligned(modality, ref_cells, "modality"), {"source": kind}
    _check_str(modality, "modality")
    if _is_mudata(reference):
        if modality not in reference.mod:
            raise ValueError(f"modality: expected a modality of reference (one of "
                             f"{', '.join(map(str, reference.mod))}), found {modality!r}.")
        return _aligned(reference.mod[modality], ref_cells, f"reference.mod[{modality!r}]"), \
            {"source": "mod", "key": modality}
    in_obsm, in_layers = modality in r_ad.obsm, modality in r_ad.layers
    if in_obsm and in_layers:
        raise ValueError(f"modality: {modality!r} is both an obsm key and a layer of reference; pass the "
                         f"matrix itself (reference.obsm[{modality!r}] or an AnnData) to choose.")
    if in_layers:
        return _as_anndata(r_ad.layers[modality], ref_cells, r_ad.var_names), {"source": "layer", "key": modality}
    if not in_obsm:
        raise ValueError(f"modality: expected an obsm key or a layer of reference, found {modality!r}; obsm keys: "
                         f"{', '.join(map(str, r_ad.obsm)) or 'none'}; layers: {', '.join(_layer_names(r_ad)) or 'none'}.")
    return _from_obsm(r_ad, modality, ref_cells)


def _aligned(obj, ref_cells, arg):
    if _is_anndata(obj):
        pos = _cell_positions(obj.obs_names, ref_cells, arg)
        identity = pos.size == obj.n_obs and np.array_equal(pos, np.arange(pos.size))
        matrix = obj.X if identity else obj.X[pos]
        if matrix is None:
            raise ValueError(f"{arg}: expected a matrix in .X, found .X = None.")
        return _as_anndata(matrix, ref_cells, obj.var_names)
    pos = _cell_positions(obj.index, ref_cells, arg)
    out = obj.iloc[pos]
    return out.set_axis(ref_cells, axis=0).set_axis(pd.Index([str(c) for c in out.columns]), axis=1)


def _from_obsm(r_ad, key, ref_cells):
    value = r_ad.obsm[key]
    if _is_dataframe(value):
        return _aligned(value, ref_cells, f"reference.obsm[{key!r}]"), {"source": "obsm", "key": key}
    n_feat = value.shape[1] if getattr(value, "ndim", 2) == 2 else 1
    names = r_ad.uns.get(f"{key}_names")
    generated = names is None or len(names) != n_feat
    if generated:
        names = [f"{key}_{j}" for j in range(n_feat)]
        warnings.warn(f"reference.obsm[{key!r}] is an array without feature names (expected "
                      f"reference.uns[{key + '_names'!r}] with {n_feat} names); named them {names[0]}, ... "
                      "Store a DataFrame in obsm to keep your names.", UserWarning, stacklevel=4)
    info = {"source": "obsm", "key": key, "feature_names_generated": generated}
    return _as_anndata(value, ref_cells, pd.Index([str(n) for n in names])), info


def _labels(r_ad, labels_key):
    """``reference.obs[labels_key]`` as a Series indexed by cell name (none missing)."""
    if labels_key is None:
        return None
    _check_str(labels_key, "labels_key")
    if labels_key in ("poorly_mapped", "mapping_score", "outlier_score"):
        raise ValueError(f"labels_key: {labels_key!r} would collide with the obs column that transfer writes "
                         "under the same name; rename the reference's column.")
    if labels_key not in r_ad.obs.columns:
        raise ValueError(f"labels_key: expected a column of reference.obs, found {labels_key!r}; columns: "
                         f"{', '.join(map(str, r_ad.obs.columns)) or 'none'}.")
    col = r_ad.obs[labels_key]
    missing = col.isna().to_numpy()
    if missing.any():
        raise ValueError(f"labels_key: reference.obs[{labels_key!r}] has {int(missing.sum())} missing values "
                         f"(cells {_shown(r_ad.obs_names[missing])}); label or remove those cells.")
    values = col.astype(str) if isinstance(col.dtype, pd.CategoricalDtype) else col
    return pd.Series(values.to_numpy(), index=pd.Index(r_ad.obs_names, dtype=str), name=labels_key)


# ------------------------------------------------------------------------ outputs
def _planned_keys(key, labels_key):
    obs = [f"{key}_poorly_mapped", f"{key}_mapping_score", f"{key}_outlier_score"]
    obsm = [key]
    if labels_key is not None:
        obs += [f"{key}_{labels_key}", f"{key}_{labels_key}_score"]
        obsm.append(f"{key}_{labels_key}_scores")
    return {"obs": obs, "obsm": obsm, "uns": [key]}


def _refuse_existing(adata, keys, overwrite):
    if overwrite:
        return
    found = [f"{slot}[{k!r}]" for slot, names in keys.items() for k in names
             if (k in adata.obs.columns if slot == "obs" else k in getattr(adata, slot))]
    if found:
        raise ValueError(f"key_added: query already has {', '.join(found)}; pass overwrite=True to replace "
                         "them, or another key_added.")


def _per_cell(values, n, name):
    arr = np.asarray(values).ravel()
    if arr.shape[0] != n:
        raise RuntimeError(f"CMOT.{name} has {arr.shape[0]} values, expected one per query cell ({n}).")
    return arr


def _write(adata, model, pred, key, labels_key, info):
    """Everything :func:`transfer` writes into the query's AnnData, all computed and
    checked before the first write."""
    n = adata.n_obs
    obs = {f"{key}_poorly_mapped": _per_cell(model.outliers_, n, "outliers_").astype(bool)}
    mapping = getattr(model, "mapping_score_", None)
    if mapping is not None:
        obs[f"{key}_mapping_score"] = _per_cell(mapping, n, "mapping_score_").astype(float)
    else:
        obs[f"{key}_outlier_score"] = _per_cell(model.outlier_scores_, n, "outlier_scores_").astype(float)
    obsm = {key: pred}
    transferred = None
    if labels_key is not None:
        label_obs, label_obsm = _label_columns(model, adata.obs_names, key, labels_key)
        obs.update(label_obs)
        obsm.update(label_obsm)
        transferred = bool(label_obs)
    record = _record(model, info, pred.columns, transferred)
    for name, values in obsm.items():
        adata.obsm[name] = values
    for name, values in obs.items():
        adata.obs[name] = values
    adata.uns[key] = record


def _label_columns(model, obs_names, key, labels_key):
    """obs and obsm entries of the labels transferred under ``labels_key`` (empty when none)."""
    labels = model.predicted_labels_
    if labels is None or labels_key not in labels.columns:
        return {}, {}
    n = len(obs_names)
    table = model.predicted_label_scores_[labels_key]
    obs = {f"{key}_{labels_key}": pd.Categorical(_per_cell(labels[labels_key].to_numpy(), n, "predicted_labels_"),
                                                 categories=labels[labels_key].cat.categories),
           f"{key}_{labels_key}_score": _per_cell(model.predicted_label_score_[labels_key].to_numpy(), n,
                                                  "predicted_label_score_").astype(float)}
    scores = table.set_axis(obs_names, axis=0).set_axis(pd.Index([str(c) for c in table.columns]), axis=1)
    return obs, {f"{key}_{labels_key}_scores": scores}


def feature_score_series(scores, names=None) -> pd.Series:
    """Per-feature scores (``feature_scores_``) as a float Series indexed by feature name:
    a Series, a DataFrame with one column or a column ``"r"``, or a 1-D array in the
    order of ``names``.

    Examples
    --------
    >>> feature_score_series([0.5, 0.1], ["CD3", "CD8"]).to_dict()
    {'CD3': 0.5, 'CD8': 0.1}
    """
    if _is_dataframe(scores):
        if scores.shape[1] != 1 and "r" not in scores.columns:
            raise ValueError(f"feature_scores_: expected one score per feature (a Series, or a DataFrame with one "
                             f"column or a column 'r'), found columns {_shown(scores.columns)}.")
        scores = scores["r"] if "r" in scores.columns else scores.iloc[:, 0]
    if isinstance(scores, pd.Series):
        return scores.set_axis(pd.Index([str(k) for k in scores.index])).astype(float)
    arr = np.asarray(scores, dtype=float)
    if arr.ndim != 1 or (names is not None and len(names) != arr.size):
        raise ValueError(f"feature_scores_: expected one score per feature ({'?' if names is None else len(names)}), "
                         f"found shape {arr.shape}.")
    return pd.Series(arr, index=[str(n) for n in names] if names is not None else range(arr.size))


def _json_safe(value):
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray, pd.Index)):
        return [_json_safe(v) for v in value]
    return repr(value)


def _versions():
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    out = {"cmot": __version__}
    for dist in ("anndata", "numpy", "scipy", "scikit-learn", "POT", "pandas"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:  # pragma: no cover - every one is a dependency
            out[dist] = None
    return out


def _record(model, info, features, labels_transferred):
    """``uns[key_added]``: parameters, fitted choices, inputs, feature scores, versions."""
    fitted = {name[:-1]: getattr(model, name, None)
              for name in ("n_neighbors_", "n_pcs_", "shrinkage_", "linear_weight_", "metric_weight_", "kernel_width_",
                           "reg_e_", "label_neighbors_")}
    fitted["n_poorly_mapped"] = int(np.sum(model.outliers_))
    fitted["labels_transferred"] = labels_transferred
    record = {"params": model.get_params(), "fitted": fitted, "inputs": info, "versions": _versions()}
    scores = getattr(model, "feature_scores_", None)
    if scores is not None:
        record["feature_scores"] = {str(k): float(v) for k, v in feature_score_series(scores, features).items()}
    return _json_safe(record)
