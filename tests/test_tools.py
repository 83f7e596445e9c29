"""cmot.tools.transfer: the AnnData/MuData API against direct calls of the estimator."""

import copy as copylib
import json
import warnings

import numpy as np
import pandas as pd
import pytest

ad = pytest.importorskip("anndata")

import cmot.tools as tools  # noqa: E402
from cmot import CMOT, PoorlyMappedWarning  # noqa: E402
from cmot.datasets import make_multimodal  # noqa: E402
from cmot.tools import transfer  # noqa: E402

# Small, fast, deterministic settings shared by the AnnData call and the direct call.
P = dict(n_neighbors=10, n_pcs=5, shrinkage=0.0, random_state=0)


@pytest.fixture(scope="module")
def d():
    return make_multimodal(n_source=150, n_target=50, random_state=1)


def _names(prefix, n):
    return [f"{prefix}{i}" for i in range(n)]


def _reference(d, *, obsm="df"):
    genes, prots = _names("g", d.source_y.shape[1]), _names("p", d.source_x.shape[1])
    ref = ad.AnnData(d.source_y.copy(), obs=pd.DataFrame(index=_names("r", d.source_y.shape[0])),
                     var=pd.DataFrame(index=genes))
    ref.obs["cell_type"] = pd.Categorical([f"t{v}" for v in d.source_labels])
    if obsm == "df":
        ref.obsm["protein"] = pd.DataFrame(d.source_x.copy(), index=ref.obs_names, columns=prots)
    elif obsm == "array":
        ref.obsm["protein"] = d.source_x.copy()
        ref.uns["protein_names"] = np.array(prots)
    return ref


def _query(d):
    return ad.AnnData(d.target_y.copy(), obs=pd.DataFrame(index=_names("q", d.target_y.shape[0])),
                      var=pd.DataFrame(index=_names("g", d.target_y.shape[1])))


@pytest.fixture(scope="module")
def direct(d):
    """The independent path: the estimator on plain arrays."""
    model = CMOT(**P).fit(d.source_x, d.source_y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x_hat = model.predict(d.target_y)
    return model, x_hat


def _run(query, reference, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=PoorlyMappedWarning)
        return transfer(query, reference, **{**P, **kw})


def test_values_equal_direct_estimator_call(d, direct):
    model0, x0 = direct
    query = _query(d)
    model = _run(query, _reference(d), modality="protein")
    out = query.obsm["cmot"]
    assert isinstance(model, CMOT)
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == list(query.obs_names)
    assert list(out.columns) == _names("p", d.source_x.shape[1])
    np.testing.assert_allclose(out.to_numpy(), x0, rtol=0, atol=1e-10)
    np.testing.assert_array_equal(query.obs["cmot_poorly_mapped"].to_numpy(), model0.outliers_)
    assert query.obs["cmot_poorly_mapped"].dtype == bool
    # the model computes mapping_score_ (in [0, 1], higher = better): transfer writes it, not the z-scores
    np.testing.assert_allclose(query.obs["cmot_mapping_score"].to_numpy(), model0.mapping_score_, atol=1e-10)
    assert "cmot_outlier_score" not in query.obs


def test_query_cell_and_gene_order_subset_and_extra_genes_kept(d):
    rng = np.random.default_rng(0)
    cells = rng.permutation(d.target_y.shape[0])[:35]  # a shuffled subset of the query cells
    genes = rng.permutation(d.target_y.shape[1])  # shuffled gene order
    extra = rng.normal(size=(cells.size, 7))  # genes the reference does not have
    values = np.c_[d.target_y[cells][:, genes], extra]
    var = [f"g{j}" for j in genes] + _names("extra", 7)
    obs = [f"q{i}" for i in cells]
    query = ad.AnnData(values, obs=pd.DataFrame(index=obs), var=pd.DataFrame(index=var))
    _run(query, _reference(d), modality="protein")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CMOT(**P).fit(d.source_x, d.source_y).predict(d.target_y[cells])
    out = query.obsm["cmot"]
    assert list(out.index) == obs
    assert list(query.var_names) == var  # the query itself is not reordered
    np.testing.assert_allclose(out.to_numpy(), expected, atol=1e-10)


def _reference_with_separate_protein(d, shuffle=True, drop=None, extra=False):
    ref = _reference(d, obsm=None)
    prot = ad.AnnData(d.source_x.copy(), obs=pd.DataFrame(index=list(ref.obs_names)),
                      var=pd.DataFrame(index=_names("p", d.source_x.shape[1])))
    if extra:
        more = ad.AnnData(np.ones((2, prot.n_vars)), obs=pd.DataFrame(index=["other1", "other2"]),
                          var=pd.DataFrame(index=prot.var_names))
        prot = ad.concat([prot, more])
    order = np.random.default_rng(3).permutation(prot.n_obs) if shuffle else np.arange(prot.n_obs)
    prot = prot[order].copy()
    if drop is not None:
        prot = prot[~prot.obs_names.isin(drop)].copy()
    return ref, prot


def test_modality_sources_give_the_same_result(d, direct):
    _, x0 = direct
    results = {}
    q = _query(d)
    _run(q, _reference(d, obsm="df"), modality="protein")
    results["obsm DataFrame"] = q.obsm["cmot"]
    q = _query(d)
    _run(q, _reference(d, obsm="array"), modality="protein")
    results["obsm array + uns names"] = q.obsm["cmot"]
    ref, prot = _reference_with_separate_protein(d, shuffle=True)
    q = _query(d)
    _run(q, ref, modality=prot)
    results["separate AnnData, shuffled cells"] = q.obsm["cmot"]
    q = _query(d)
    _run(q, _reference(d, obsm=None), modality=_reference(d).obsm["protein"].iloc[::-1])
    results["DataFrame, reversed cells"] = q.obsm["cmot"]
    for name, out in results.items():
        assert list(out.columns) == _names("p", d.source_x.shape[1]), name
        np.testing.assert_allclose(out.to_numpy(), x0, atol=1e-10, err_msg=name)


def test_obsm_array_without_names_gets_generated_names_with_a_warning(d, direct):
    ref = _reference(d, obsm="array")
    del ref.uns["protein_names"]
    q = _query(d)
    with pytest.warns(UserWarning, match=r"without feature names.*protein_0"):
        _run(q, ref, modality="protein")
    assert list(q.obsm["cmot"].columns) == [f"protein_{j}" for j in range(d.source_x.shape[1])]
    assert q.uns["cmot"]["inputs"]["modality"]["feature_names_generated"] is True
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), direct[1], atol=1e-10)


def test_modality_from_a_layer_and_shared_from_a_layer(d):
    d2 = make_multimodal(n_source=120, n_target=40, n_x_features=60, n_y_features=60, random_state=2)
    genes = _names("g", 60)
    ref = ad.AnnData(np.zeros((120, 60)), obs=pd.DataFrame(index=_names("r", 120)), var=pd.DataFrame(index=genes))
    ref.layers["logcounts"] = d2.source_y.copy()
    ref.layers["other"] = d2.source_x.copy()  # the modality to infer, on the same features
    query = ad.AnnData(np.zeros((40, 60)), obs=pd.DataFrame(index=_names("q", 40)), var=pd.DataFrame(index=genes))
    query.layers["logcounts"] = d2.target_y.copy()
    _run(query, ref, modality="other", layer="logcounts")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CMOT(**P).fit(d2.source_x, d2.source_y).predict(d2.target_y)
    assert list(query.obsm["cmot"].columns) == genes
    np.testing.assert_allclose(query.obsm["cmot"].to_numpy(), expected, atol=1e-10)
    # reference_layer differs from the query's layer
    ref2 = ref.copy()
    ref2.layers["norm"] = ref2.layers.pop("logcounts")
    q2 = ad.AnnData(np.zeros((40, 60)), obs=query.obs[[]].copy(), var=query.var[[]].copy())
    q2.layers["logcounts"] = d2.target_y.copy()
    _run(q2, ref2, modality="other", layer="logcounts", reference_layer="norm")
    np.testing.assert_allclose(q2.obsm["cmot"].to_numpy(), expected, atol=1e-10)
    assert q2.uns["cmot"]["inputs"]["reference_layer"] == "norm"


def test_highly_variable_genes_are_the_shared_features(d, direct):
    ref = _reference(d)
    mask = np.zeros(ref.n_vars, dtype=bool)
    mask[np.random.default_rng(5).choice(ref.n_vars, 20, replace=False)] = True
    ref.var["highly_variable"] = mask
    q = _query(d)
    model = _run(q, ref, modality="protein")
    assert model.n_features == 20
    assert model.n_features_in_ == 20
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CMOT(**{**P, "n_features": 20}).fit(d.source_x, d.source_y[:, mask]).predict(d.target_y[:, mask])
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), expected, atol=1e-10)
    assert not np.allclose(expected, direct[1], atol=1e-3)  # the subset matters
    assert q.uns["cmot"]["inputs"]["use_highly_variable"] is True
    # use_highly_variable=False ignores the flag
    q = _query(d)
    _run(q, ref, modality="protein", use_highly_variable=False)
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), direct[1], atol=1e-10)
    # n_features given by the user is kept
    q = _query(d)
    assert _run(q, ref, modality="protein", n_features=8).n_features == 8
    # a query lacking a flagged gene is an error naming it; lacking an unflagged one is fine
    flagged, unflagged = ref.var_names[mask][0], ref.var_names[~mask][0]
    q = _query(d)
    _run(q[:, q.var_names != unflagged].copy(), ref, modality="protein")
    with pytest.raises(ValueError, match=rf"query: expected every one of the 20 shared genes.*1 missing: {flagged}"):
        _run(_query(d)[:, _query(d).var_names != flagged].copy(), ref, modality="protein")


def test_use_highly_variable_true_requires_the_column(d):
    with pytest.raises(ValueError, match=r"use_highly_variable: expected a column 'highly_variable'"):
        _run(_query(d), _reference(d), modality="protein", use_highly_variable=True)


def test_labels_key_passes_the_obs_column_as_labels(d, direct):
    q = _query(d)
    ref = _reference(d)
    _run(q, ref, modality="protein", labels_key="cell_type")
    labels = np.array([f"t{v}" for v in d.source_labels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0 = CMOT(**P).fit(d.source_x, d.source_y, labels=labels)
        expected = m0.predict(d.target_y)
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), expected, atol=1e-10)
    assert not np.allclose(expected, direct[1], atol=1e-6)  # the labels matter (vs Ward clusters)
    assert q.uns["cmot"]["inputs"]["labels_key"] == "cell_type"


def test_labels_key_errors_name_the_column(d):
    ref = _reference(d)
    with pytest.raises(ValueError, match=r"labels_key: expected a column of reference.obs, found 'celltype'"):
        _run(_query(d), ref, modality="protein", labels_key="celltype")
    ref.obs["with_na"] = ref.obs["cell_type"].astype(object)
    ref.obs.loc[["r3", "r7"], "with_na"] = np.nan
    with pytest.raises(ValueError, match=r"reference.obs\['with_na'\] has 2 missing values \(cells r3, r7\)"):
        _run(_query(d), ref, modality="protein", labels_key="with_na")


def test_existing_results_are_not_overwritten_unless_asked(d):
    q = _query(d)
    ref = _reference(d)
    _run(q, ref, modality="protein")
    first = q.obsm["cmot"].copy()
    q.obsm["cmot"].iloc[:, :] = -1.0  # marker of the first run
    with pytest.raises(ValueError, match=r"key_added: query already has obs\['cmot_poorly_mapped'\].*obsm\['cmot'\]"):
        _run(q, ref, modality="protein")
    assert (q.obsm["cmot"].to_numpy() == -1).all()  # nothing written by the refused call
    _run(q, ref, modality="protein", key_added="cmot2")
    assert (q.obsm["cmot"].to_numpy() == -1).all() and "cmot2" in q.obsm and "cmot2_poorly_mapped" in q.obs
    _run(q, ref, modality="protein", overwrite=True)
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), first.to_numpy())


def test_copy_returns_a_written_copy_and_leaves_the_query(d, direct):
    q = _query(d)
    before = q.copy()
    out, model = _run(q, _reference(d), modality="protein", copy=True)
    assert isinstance(model, CMOT) and out is not q
    assert len(q.obsm) == 0 and list(q.obs.columns) == [] and len(q.uns) == 0
    np.testing.assert_array_equal(q.X, before.X)
    np.testing.assert_allclose(out.obsm["cmot"].to_numpy(), direct[1], atol=1e-10)


def _snapshot(adata):
    return {"X": adata.X.copy(), "obs": adata.obs.copy(), "var": adata.var.copy(),
            "obsm": {k: copylib.deepcopy(v) for k, v in adata.obsm.items()},
            "layers": {k: v.copy() for k, v in adata.layers.items()}, "uns": copylib.deepcopy(dict(adata.uns))}


def test_reference_is_never_modified(d):
    ref = _reference(d)
    ref.var["highly_variable"] = np.arange(ref.n_vars) % 2 == 0
    ref.layers["counts"] = d.source_y.copy() * 2
    snap = _snapshot(ref)
    q = _query(d)
    q.layers["counts"] = d.target_y.copy() * 2
    _run(q, ref, modality="protein", labels_key="cell_type", layer="counts")
    after = _snapshot(ref)
    np.testing.assert_array_equal(after["X"], snap["X"])
    pd.testing.assert_frame_equal(after["obs"], snap["obs"])
    pd.testing.assert_frame_equal(after["var"], snap["var"])
    assert after["obsm"].keys() == snap["obsm"].keys() and after["uns"].keys() == snap["uns"].keys()
    pd.testing.assert_frame_equal(after["obsm"]["protein"], snap["obsm"]["protein"])
    np.testing.assert_array_equal(after["layers"]["counts"], snap["layers"]["counts"])


def test_errors_name_what_is_missing(d):
    ref = _reference(d)
    with pytest.raises(ValueError, match=r"modality: expected an obsm key or a layer of reference, found 'adt'; "
                                         r"obsm keys: protein"):
        _run(_query(d), ref, modality="adt")
    with pytest.raises(ValueError, match=r"layer: expected a layer of reference, found 'counts'; its layers are: none"):
        _run(_query(d), ref, modality="protein", layer="counts")
    with pytest.raises(ValueError, match=r"reference_layer: expected a layer of reference, found 'raw'"):
        _run(_query(d), ref, modality="protein", reference_layer="raw")
    ref2 = ref.copy()
    ref2.layers["counts"] = ref2.X.copy()
    with pytest.raises(ValueError, match=r"layer: expected a layer of query, found 'counts'"):
        _run(_query(d), ref2, modality="protein", layer="counts")
    ref3, prot = _reference_with_separate_protein(d, drop=["r5", "r9"])
    with pytest.raises(ValueError, match=r"modality: expected a row for each of the 150 reference cells .*"
                                         r"found 2 missing: r5, r9"):
        _run(_query(d), ref3, modality=prot)
    with pytest.raises(TypeError, match=r"n_neighbour: not a parameter of transfer or of cmot.CMOT"):
        transfer(_query(d), ref, modality="protein", n_neighbour=5)
    with pytest.raises(TypeError, match=r"query: expected an AnnData or MuData, found numpy.ndarray"):
        transfer(d.target_y, ref, modality="protein")
    with pytest.raises(ValueError, match=r"shared: expected None when neither query nor reference is a MuData"):
        _run(_query(d), ref, modality="protein", shared="rna")
    q = _query(d)
    q.var_names = ["g0"] + list(q.var_names[1:-1]) + ["g0"]
    with pytest.raises(ValueError, match=r"query: expected unique var names, found 1 duplicated: g0"):
        _run(q, ref, modality="protein")


def test_extra_cells_of_a_separate_modality_are_reported(d, direct):
    ref, prot = _reference_with_separate_protein(d, extra=True)
    q = _query(d)
    with pytest.warns(UserWarning, match=r"modality: 2 cells are not reference cells and are not used: other"):
        _run(q, ref, modality=prot)
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), direct[1], atol=1e-10)


class _FakeMuData:
    """The part of mudata.MuData that transfer uses: ``mod`` and ``copy``."""

    def __init__(self, mod):
        self.mod = dict(mod)

    def copy(self):
        return _FakeMuData({k: v.copy() for k, v in self.mod.items()})


def test_mudata_by_modality_keys(d, direct):
    ref, prot = _reference_with_separate_protein(d, shuffle=True)
    ref_md = _FakeMuData({"rna": ref, "prot": prot})
    q_md = _FakeMuData({"rna": _query(d)})
    _run(q_md, ref_md, modality="prot", shared="rna")
    np.testing.assert_allclose(q_md.mod["rna"].obsm["cmot"].to_numpy(), direct[1], atol=1e-10)
    with pytest.raises(ValueError, match=r"shared: query is a MuData; expected the key of the shared modality"):
        _run(q_md, ref_md, modality="prot")
    with pytest.raises(ValueError, match=r"modality: expected a modality of reference \(one of rna, prot\), found 'adt'"):
        _run(_FakeMuData({"rna": _query(d)}), ref_md, modality="adt", shared="rna")
    out, _ = _run(_FakeMuData({"rna": _query(d)}), ref_md, modality="prot", shared="rna", copy=True)
    assert isinstance(out, _FakeMuData) and "cmot" in out.mod["rna"].obsm


def test_uns_record_is_json_safe_and_survives_h5ad(d, tmp_path):
    q = _query(d)
    model = _run(q, _reference(d), modality="protein", labels_key="cell_type")
    rec = q.uns["cmot"]
    json.dumps(rec)
    assert rec["fitted"] == {"n_neighbors": model.n_neighbors_, "n_pcs": model.n_pcs_,
                             "shrinkage": model.shrinkage_, "linear_weight": model.linear_weight_,
                             "metric_weight": model.metric_weight_, "kernel_width": model.kernel_width_,
                             "reg_e": pytest.approx(model.reg_e_), "label_neighbors": model.label_neighbors_,
                             "n_poorly_mapped": int(model.outliers_.sum()), "labels_transferred": True}
    assert rec["params"]["n_neighbors"] == 10 and rec["params"]["random_state"] == 0
    assert rec["inputs"]["modality"] == {"source": "obsm", "key": "protein"}
    assert rec["versions"]["cmot"] == __import__("cmot").__version__
    path = tmp_path / "q.h5ad"
    q.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(back.obsm["cmot"], q.obsm["cmot"])
    np.testing.assert_array_equal(back.obs["cmot_poorly_mapped"], q.obs["cmot_poorly_mapped"])
    assert back.uns["cmot"]["fitted"]["n_neighbors"] == model.n_neighbors_


def test_labels_and_feature_scores_are_written_as_the_model_computes_them(d):
    q = _query(d)
    model = _run(q, _reference(d), modality="protein", labels_key="cell_type")
    # the independent path: the estimator on arrays, the obs column passed as labels
    labels = np.array([f"t{v}" for v in d.source_labels])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m0 = CMOT(**P).fit(d.source_x, d.source_y, labels=labels)
        m0.predict(d.target_y)
    assert list(q.obs["cmot_cell_type"].astype(str)) == list(m0.predicted_labels_["labels"].astype(str))
    assert isinstance(q.obs["cmot_cell_type"].dtype, pd.CategoricalDtype)
    table = q.obsm["cmot_cell_type_scores"]
    assert list(table.columns) == ["t0", "t1", "t2"] and list(table.index) == list(q.obs_names)
    np.testing.assert_allclose(table.to_numpy(), m0.predicted_label_scores_["labels"].to_numpy(), atol=1e-10)
    np.testing.assert_allclose(table.to_numpy().sum(axis=1), 1.0)
    np.testing.assert_allclose(q.obs["cmot_cell_type_score"].to_numpy(), table.to_numpy().max(axis=1))
    assert (q.obs["cmot_cell_type"].astype(str).to_numpy() == [f"t{v}" for v in d.target_labels]).mean() > 0.9
    scores = q.uns["cmot"]["feature_scores"]
    assert list(scores) == list(q.obsm["cmot"].columns)
    np.testing.assert_allclose(list(scores.values()), m0.feature_scores_.to_numpy())
    assert q.uns["cmot"]["fitted"]["labels_transferred"] is True
    assert model.predicted_labels_.columns.tolist() == ["cell_type"]
    # the choices are recorded as the model made them
    assert q.uns["cmot"]["fitted"]["label_neighbors"] == {"cell_type": model.label_neighbors_["cell_type"]}
    assert q.uns["cmot"]["fitted"]["linear_weight"] == model.linear_weight_


def _pca_reference(d, n=8):
    from sklearn.decomposition import PCA

    ref = _reference(d)
    pca = PCA(n, random_state=0).fit(ref.X)
    ref.obsm["X_pca"] = pca.transform(ref.X).astype(np.float32)  # scanpy stores float32
    ref.varm["PCs"] = pca.components_.T
    return ref, pca


def _direct_precomputed(d, src, tgt, labels=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CMOT(**P, representation="precomputed").fit(d.source_x, src, labels=labels)
        return model.predict(tgt), model


def test_use_rep_with_the_embedding_in_both(d):
    ref, pca = _pca_reference(d)
    q = _query(d)
    q.obsm["X_pca"] = pca.transform(q.X) + 0.01
    model = _run(q, ref, modality="protein", use_rep="X_pca")
    expected, _ = _direct_precomputed(d, ref.obsm["X_pca"].astype(float), q.obsm["X_pca"])
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), expected, atol=1e-10)
    assert model.representation == "precomputed" and model.n_pcs_ == 8
    assert q.uns["cmot"]["inputs"]["use_rep"] == "X_pca" and q.uns["cmot"]["inputs"]["query_rep"] == "obsm"


def test_use_rep_x_pca_projects_the_query_with_the_reference_mean(d):
    ref, pca = _pca_reference(d)
    genes = np.random.default_rng(3).permutation(ref.n_vars)
    q = ad.AnnData(d.target_y[:, genes], obs=pd.DataFrame(index=_names("q", d.target_y.shape[0])),
                   var=pd.DataFrame(index=[f"g{j}" for j in genes]))
    _run(q, ref, modality="protein", use_rep="X_pca", labels_key="cell_type")
    # sklearn's transform is (X - mean of the reference) @ components.T
    expected, m0 = _direct_precomputed(d, ref.obsm["X_pca"].astype(float), pca.transform(d.target_y),
                                       labels=ref.obs["cell_type"].astype(str).to_numpy())
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), expected, atol=1e-6)
    assert "X_pca" not in q.obsm  # the projection is not written into the query
    assert q.uns["cmot"]["inputs"]["query_rep"] == "projected with reference.varm['PCs']"
    assert list(q.obs["cmot_cell_type"].astype(str)) == list(m0.predicted_labels_["labels"].astype(str))


def test_use_rep_errors_name_the_argument(d):
    ref, pca = _pca_reference(d)
    with pytest.raises(ValueError, match=r"use_rep: expected an obsm key of reference, found 'X_harmony'"):
        _run(_query(d), ref, modality="protein", use_rep="X_harmony")
    ref.obsm["X_harmony"] = ref.obsm["X_pca"]
    with pytest.raises(ValueError, match=r"use_rep: expected 'X_harmony' in query.obsm too"):
        _run(_query(d), ref, modality="protein", use_rep="X_harmony")
    q = _query(d)
    q.obsm["X_harmony"] = np.zeros((q.n_obs, 3))
    with pytest.raises(ValueError, match=r"use_rep: expected query.obsm\['X_harmony'\] with the 8 columns"):
        _run(q, ref, modality="protein", use_rep="X_harmony")
    with pytest.raises(ValueError, match=r"representation: expected 'precomputed' \(or nothing\) with use_rep"):
        _run(_query(d), ref, modality="protein", use_rep="X_pca", representation="pca")
    with pytest.raises(ValueError, match=r"use_highly_variable: expected None or False with use_rep='X_pca'"):
        _run(_query(d), ref, modality="protein", use_rep="X_pca", use_highly_variable=True)
    short = _query(d)[:, 1:].copy()
    with pytest.raises(ValueError, match=r"query: expected every one of the 60 genes of the reference's PCA .* g0"):
        _run(short, ref, modality="protein", use_rep="X_pca")
    scaled = ref.copy()
    scaled.X = (scaled.X - scaled.X.mean(axis=0)) / scaled.X.std(axis=0)  # scaled after its PCA
    with pytest.raises(ValueError, match=r"use_rep: expected reference.obsm\['X_pca'\] to be the reference's matrix"):
        _run(_query(d), scaled, modality="protein", use_rep="X_pca")


def test_sparse_matrices_give_the_direct_result(d):
    import scipy.sparse as sp

    y_src = np.where(d.source_y > 1.0, d.source_y, 0.0)  # sparse-looking data
    y_tgt = np.where(d.target_y > 1.0, d.target_y, 0.0)
    ref = _reference(d)
    ref.X = sp.csr_matrix(y_src)
    mask = np.arange(ref.n_vars) % 3 != 0
    ref.var["highly_variable"] = mask
    genes = np.random.default_rng(7).permutation(ref.n_vars)
    q = ad.AnnData(sp.csr_matrix(y_tgt[:, genes]), obs=pd.DataFrame(index=_names("q", y_tgt.shape[0])),
                   var=pd.DataFrame(index=[f"g{j}" for j in genes]))
    _run(q, ref, modality="protein")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = CMOT(**{**P, "n_features": int(mask.sum())}).fit(
            d.source_x, sp.csr_matrix(y_src[:, mask])).predict(sp.csr_matrix(y_tgt[:, mask]))
    np.testing.assert_allclose(q.obsm["cmot"].to_numpy(), expected, atol=1e-10)


def test_feature_scores_in_the_forms_a_model_may_give():
    names = ["a", "b", "c"]
    want = {"a": 0.1, "b": 0.9, "c": -0.2}
    forms = [np.array([0.1, 0.9, -0.2]), pd.Series(want), pd.DataFrame({"r": [0.1, 0.9, -0.2], "n": 1}, index=names),
             pd.DataFrame({"score": [0.1, 0.9, -0.2]}, index=names)]
    for form in forms:
        assert tools.feature_score_series(form, names).to_dict() == want
    with pytest.raises(ValueError, match=r"feature_scores_: expected one score per feature \(3\), found shape \(2,\)"):
        tools.feature_score_series([0.1, 0.2], names)
    with pytest.raises(ValueError, match=r"found columns x, y"):
        tools.feature_score_series(pd.DataFrame({"x": [1.0], "y": [2.0]}), names)


class _BadLabels(CMOT):
    # one label, not one per query cell
    predicted_labels_ = property(lambda self: pd.DataFrame({"cell_type": pd.Categorical(["t0"])}))


def test_a_failure_while_writing_leaves_the_query_unchanged(d, monkeypatch):
    monkeypatch.setattr(tools, "CMOT", _BadLabels)
    q = _query(d)
    with pytest.raises(RuntimeError, match=r"CMOT.predicted_labels_ has 1 values, expected one per query cell \(50\)"):
        _run(q, _reference(d), modality="protein", labels_key="cell_type")
    assert len(q.obsm) == 0 and list(q.obs.columns) == [] and len(q.uns) == 0
