"""The CMOT estimator: public surface, inputs and outputs, determinism, bad input."""

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cmot import CMOT, PAPER_MODE, PoorlyMappedWarning
from cmot.datasets import make_multimodal
from cmot.infer import metric_space, variable_features
from cmot.metrics import cellwise_pearson


@pytest.fixture(scope="module")
def data():
    return make_multimodal(n_source=240, n_target=80, random_state=0)


def _knn_by_hand(query, reference, values, k, scale=None):
    """Independent Step C: for each query row, its k nearest reference rows by Euclidean
    distance and exp(-(d - d_min) / scale) weights normalized to one (scale=None: 1, the
    paper; "auto": the median over query rows of the distance to the k-th neighbour; a
    number: that unit)."""
    dist = np.sqrt(((query[:, None, :] - reference[None, :, :]) ** 2).sum(-1))
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(dist, nearest, axis=1)
    unit = 1.0 if scale is None else (np.median(d[:, -1]) if isinstance(scale, str) else float(scale))
    out = np.zeros((query.shape[0], values.shape[1]))
    weights = np.zeros(d.shape)
    for j in range(query.shape[0]):
        w = np.exp(-(d[j] - d[j, 0]) / unit)
        w /= w.sum()
        weights[j] = w
        for l in range(k):
            out[j] += w[l] * values[nearest[j, l]]
    return out, weights


def _loo_score_by_hand(space, x, k):
    """Independent leave-one-out score: every source cell predicted from its k nearest
    other cells (exp(-d / median k-th distance) weights); mean of the mean cell-wise and
    mean feature-wise Pearson correlations."""
    n = space.shape[0]
    dist = np.sqrt(((space[:, None, :] - space[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(dist, nearest, axis=1)
    unit = np.median(d[:, -1])
    pred = np.empty_like(x)
    for i in range(n):
        w = np.exp(-(d[i] - d[i, 0]) / unit)
        pred[i] = (w / w.sum()) @ x[nearest[i]]
    cell = np.mean([np.corrcoef(x[i], pred[i])[0, 1] for i in range(n)])
    feat = np.mean([np.corrcoef(x[:, f], pred[:, f])[0, 1] for f in range(x.shape[1])])
    return (cell + feat) / 2


def _fit_predict(d, **kw):
    params = dict(n_neighbors=15, random_state=0)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        model = CMOT(**params).fit(d.source_x, d.source_y)
        return model, model.predict(d.target_y)


def test_public_surface_from_the_issue(data):
    model = CMOT(n_components=10, align_neighbors=5, reg_e=5e3, reg_cl=1.0, n_clusters=2,
                 n_neighbors=40, n_features=150, random_state=0)
    model.fit(data.source_x, data.source_y)
    with pytest.warns(UserWarning, match="reg_e=5000 is"):
        x_hat = model.predict(data.target_y)
    assert x_hat.shape == (80, 30)
    # the simulated target has only the source's cell types: inferred X correlates with
    # the measured one cell by cell, and no cell is reported as poorly mapped
    assert np.nanmean(cellwise_pearson(data.target_x, x_hat)) > 0.9
    assert model.outliers_.dtype == bool and not model.outliers_.any()
    assert model.n_neighbors_ == 40 and sorted(np.unique(model.labels_)) == [0, 1]  # n_clusters=2 Ward labels
    with pytest.raises(TypeError):
        CMOT(10)  # keyword-only


def test_beats_naive_knn_and_training_mean(data):
    from sklearn.neighbors import KNeighborsRegressor

    from cmot.metrics import featurewise_pearson

    _, x_hat = _fit_predict(data)
    ours = np.nanmean(cellwise_pearson(data.target_x, x_hat))
    naive = KNeighborsRegressor(30).fit(data.source_y, data.source_x).predict(data.target_y)
    mean = np.tile(data.source_x.mean(0), (80, 1))
    assert ours > np.nanmean(cellwise_pearson(data.target_x, mean)) + 0.1
    # measured: cell-wise r 0.942 against 0.926, feature-wise r 0.933 against 0.914
    assert ours > np.nanmean(cellwise_pearson(data.target_x, naive))
    assert np.nanmean(featurewise_pearson(data.target_x, x_hat)) > np.nanmean(
        featurewise_pearson(data.target_x, naive)) + 0.01


def test_inferred_values_stay_on_the_scale_of_x(data):
    _, x_hat = _fit_predict(data)
    # normalized weights: each prediction is a convex combination of source X rows
    assert x_hat.min() >= data.source_x.min() - 1e-9
    assert x_hat.max() <= data.source_x.max() + 1e-9


def test_step_c_is_weighted_average_of_transported_neighbours(data):
    model, x_hat = _fit_predict(
        data, **PAPER_MODE, n_features=20
    )
    coupling, _ = model.transport(data.target_y)
    feats = np.sort(np.argsort(-data.source_y.var(0), kind="stable")[:20])  # the 20 most variable features
    np.testing.assert_array_equal(model.features_, feats)
    tgt = data.target_y[:, feats]
    mapped = (coupling / coupling.sum(1, keepdims=True)) @ tgt
    # the paper's weights: exp(-Euclidean distance), here normalized
    expected, w = _knn_by_hand(tgt, mapped, data.source_x, 15)
    np.testing.assert_allclose(x_hat, expected, atol=1e-10)
    np.testing.assert_allclose(w.sum(1), 1.0)


@pytest.mark.parametrize("weight", [0.0, 0.25, 0.6])
def test_transport_step_c_moves_source_by_shift_and_barycentric_map(data, weight):
    # correction="transport" (cmot 0.3): standardized features, PCA, every source cell
    # moved by the coupling's mean displacement and, with weight w, towards its
    # barycentric image; then the weighted kNN of target cells, distances in the unit
    # fixed by the source (weight_scale_)
    model, x_hat = _fit_predict(data, barycentric_weight=weight, correction="transport")
    coupling, _ = model.transport(data.target_y)
    feats = model.features_
    src, tgt = data.source_y[:, feats], data.target_y[:, feats]
    mean, sd = src.mean(0), src.std(0)
    d = model.n_pcs_
    a = model.pca_.transform(np.clip((src - mean) / sd, -10, 10))[:, :d]
    b = model.pca_.transform(np.clip((tgt - mean) / sd, -10, 10))[:, :d]
    np.testing.assert_allclose(model.source_rep_, a, atol=1e-10)
    shift = (coupling[:, :, None] * (b[None, :, :] - a[:, None, :])).sum((0, 1)) / coupling.sum()
    np.testing.assert_allclose(model.shift_, shift, atol=1e-10)
    bary = (coupling / coupling.sum(1, keepdims=True)) @ b
    # the neighbours are searched in Step C's metric (rows times metric_: a linear map of each cell)
    moved = (1 - weight) * (a + shift) + weight * bary
    knn, _ = _knn_by_hand(metric_space(b, model.metric_), metric_space(moved, model.metric_), data.source_x,
                          model.n_neighbors_, scale=model.weight_scale_)
    # shrinkage="auto": blended with the linear map (ridge of X on the source components,
    # applied to the target moved back by the shift), then pulled toward the source mean
    from sklearn.linear_model import Ridge

    linear = Ridge(alpha=model.linear_map_.alpha).fit(a, data.source_x).predict(b - shift)
    lw, s = model.linear_weight_, model.shrinkage_
    expected = (1 - s) * ((1 - lw) * knn + lw * linear) + s * data.source_x.mean(0)
    np.testing.assert_allclose(x_hat, expected, atol=1e-8)


def test_weight_scale_is_fixed_by_the_reference(data):
    # "auto": the chosen width times the median distance of source cells to their k-th nearest
    # other source cell in Step C's metric, the same whatever target follows
    model, _ = _fit_predict(data)
    assert model.kernel_width_ in (0.25, 0.5, 1.0)
    a = metric_space(model.source_rep_, model.metric_)
    dist = np.sqrt(((a[:, None, :] - a[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    kth = np.sort(dist, axis=1)[:, model.n_neighbors_ - 1]
    assert model.weight_scale_ == pytest.approx(model.kernel_width_ * np.median(kth), rel=1e-10)
    assert _fit_predict(data, weight_scale=0.7)[0].weight_scale_ == 0.7


def test_n_pcs_auto_is_the_best_leave_one_out_candidate(data):
    from cmot.estimator import AUTO_PCS_GRID

    model = CMOT(random_state=0, outlier_threshold=np.inf).fit(data.source_x, data.source_y)
    assert model.n_pcs_ in AUTO_PCS_GRID and model.source_rep_.shape[1] == model.n_pcs_
    scores = model.n_pcs_scores_
    assert set(scores) == set(AUTO_PCS_GRID)
    assert scores[model.n_pcs_] == max(scores.values())
    # each candidate's score is the leave-one-out score at k=30 on the leading components
    # (recomputed here by hand: all 240 cells, each from its 30 nearest other cells);
    # k is then chosen on the chosen components
    sel = data.source_y[:, model.features_]
    full = model.pca_.transform(np.clip((sel - sel.mean(0)) / sel.std(0), -10, 10))
    for d in (5, 10):
        assert scores[d] == pytest.approx(_loo_score_by_hand(full[:, :d], data.source_x, 30), abs=1e-10)
    for k in (5, 30):
        assert model.k_scores_[k] == pytest.approx(_loo_score_by_hand(full[:, : model.n_pcs_], data.source_x, k),
                                                   abs=1e-10)
    assert model.n_neighbors_ == max(model.k_scores_, key=model.k_scores_.get)
    # a given k is kept (and used to compare the candidates), a given n_pcs is used as is
    fixed_k = CMOT(n_neighbors=7, random_state=0).fit(data.source_x, data.source_y)
    assert fixed_k.n_neighbors_ == 7
    assert fixed_k.n_pcs_scores_[10] == pytest.approx(_loo_score_by_hand(full[:, :10], data.source_x, 7), abs=1e-10)
    fixed = CMOT(n_pcs=12, random_state=0).fit(data.source_x, data.source_y)
    assert fixed.n_pcs_ == 12 and fixed.n_pcs_scores_ is None and fixed.source_rep_.shape[1] == 12
    with pytest.raises(ValueError, match=r"n_pcs: expected \"auto\", None \(paper mode\) or an integer >= 1, found 'best'"):
        CMOT(n_pcs="best").fit(data.source_x, data.source_y)


def test_transport_shift_recovers_a_batch_offset_despite_composition():
    # two cell types; the target is the source moved by an offset, with the
    # types in other proportions: the difference of means is biased by the
    # composition, the transport's displacement is not
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0, 0.0], [20.0, 0.0, 0.0]])
    src = np.r_[centres[0] + rng.normal(size=(150, 3)), centres[1] + rng.normal(size=(50, 3))]
    offset = np.array([0.0, 3.0, -2.0])
    tgt = np.r_[centres[0] + rng.normal(size=(40, 3)), centres[1] + rng.normal(size=(120, 3))] + offset
    x = np.r_[np.zeros((150, 2)), np.ones((50, 2))]
    model = CMOT(scale=False, n_pcs=None, n_features=3, n_neighbors=10, barycentric_weight=0,
                 correction="transport", random_state=0, outlier_threshold=np.inf).fit(x, src)
    x_hat = model.predict(tgt)
    naive_error = np.linalg.norm(tgt.mean(0) - src.mean(0) - offset)
    error = np.linalg.norm(model.shift_ - offset)
    assert naive_error > 9 and error < 1.2  # |offset| = 3.6
    np.testing.assert_allclose(x_hat, np.r_[np.zeros((40, 2)), np.ones((120, 2))], atol=1e-6)


def test_barycentric_weight_and_scale_are_checked(data):
    with pytest.raises(ValueError, match=r"barycentric_weight: expected a number in \[0, 1\], found 1.5"):
        CMOT(barycentric_weight=1.5).fit(data.source_x, data.source_y)
    with pytest.raises(TypeError, match=r"barycentric_weight: expected a number in \[0, 1\], found 'paper'"):
        CMOT(barycentric_weight="paper").fit(data.source_x, data.source_y)
    with pytest.raises(TypeError, match="scale: expected True or False, found 'yes'"):
        CMOT(scale="yes").fit(data.source_x, data.source_y)


def test_shrinkage_auto_keeps_informative_neighbours(data):
    model, _ = _fit_predict(data)
    assert model.shrinkage_ == 0.0
    assert model.shrinkage_scores_[0.0] > model.shrinkage_scores_[1.0] + 0.1
    np.testing.assert_allclose(model.x_mean_, data.source_x.mean(0))


def test_shrinkage_auto_falls_back_to_the_mean_when_y_says_nothing_about_x(data):
    # X of the source cells shuffled: Y no longer predicts X, so the neighbours' average
    # is noise and the source mean predicts each left-out cell better
    rng = np.random.default_rng(1)
    x_unrelated = data.source_x[rng.permutation(data.source_x.shape[0])]
    with pytest.warns(UserWarning, match=r"shrinkage: the shared modality predicts X little better than the source"):
        model = CMOT(n_neighbors=15, random_state=0, outlier_threshold=np.inf).fit(x_unrelated, data.source_y)
    assert model.shrinkage_ >= 0.5
    assert model.shrinkage_scores_[model.shrinkage_] > model.shrinkage_scores_[0.0]
    # fit reuses the leave-one-out prediction that chose k; computing it afresh gives the same
    from cmot.estimator import select_shrinkage

    fresh = select_shrinkage(model.source_rep_, model.source_x_, model.n_neighbors_, random_state=0)
    assert fresh[0] == model.shrinkage_
    assert fresh[1] == pytest.approx(model.shrinkage_scores_, abs=1e-12)
    x_hat = model.predict(data.target_y)
    # exactly the kNN prediction pulled toward the source mean
    knn = CMOT(n_neighbors=15, random_state=0, outlier_threshold=np.inf, shrinkage=0).fit(
        x_unrelated, data.source_y).predict(data.target_y)
    s = model.shrinkage_
    np.testing.assert_allclose(x_hat, (1 - s) * knn + s * x_unrelated.mean(0), atol=1e-12)


def test_shrinkage_leaves_featurewise_scores_unchanged(data):
    from cmot.metrics import featurewise_pearson

    _, plain = _fit_predict(data, shrinkage=0)
    _, pulled = _fit_predict(data, shrinkage=0.6)
    np.testing.assert_allclose(featurewise_pearson(data.target_x, pulled),
                               featurewise_pearson(data.target_x, plain), atol=1e-10)
    assert not np.allclose(cellwise_pearson(data.target_x, pulled), cellwise_pearson(data.target_x, plain))
    _, mean_only = _fit_predict(data, shrinkage=1)
    np.testing.assert_allclose(mean_only, np.tile(data.source_x.mean(0), (80, 1)), atol=1e-12)


def test_shrinkage_is_checked(data):
    with pytest.raises(ValueError, match=r"shrinkage: expected \"auto\" or a number in \[0, 1\], found 1.5"):
        CMOT(shrinkage=1.5).fit(data.source_x, data.source_y)
    with pytest.raises(ValueError, match=r"shrinkage: expected \"auto\" or a number in \[0, 1\], found 'mean'"):
        CMOT(shrinkage="mean").fit(data.source_x, data.source_y)


def test_models_saved_before_shrinkage_still_predict(data, tmp_path):
    model, x_hat = _fit_predict(data)
    for name in ("shrinkage_", "shrinkage_scores_", "x_mean_"):  # cmot 0.2 models have none of these
        delattr(model, name)
    np.testing.assert_allclose(model.predict(data.target_y), x_hat)


def test_models_pickled_by_cmot_0_3_still_predict(data):
    # cmot 0.3 kept the representation's attributes on the estimator itself; such a
    # pickle is upgraded on loading (CMOT.load reads it with allow_pickle=True)
    model, x_hat = _fit_predict(data)
    state = dict(vars(model))
    rep = state.pop("representation_")
    state.update(features_=rep.features_, scale_mean_=rep.scale_mean_, scale_sd_=rep.scale_sd_, pca_=rep.pca_)
    old = object.__new__(CMOT)
    old.__dict__.update(state)
    restored = pickle.loads(pickle.dumps(old))
    assert "features_" not in vars(restored) and restored.representation_.n_pcs_ == model.n_pcs_
    np.testing.assert_array_equal(restored.features_, model.features_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        np.testing.assert_allclose(restored.predict(data.target_y), x_hat, atol=1e-12)


def test_coupling_marginals(data):
    # the paper's balanced OT keeps both marginals
    model, _ = _fit_predict(data, reg_m=None, correction="transport")
    coupling, cost = model.transport(data.target_y)
    np.testing.assert_allclose(coupling.sum(axis=1), 1 / 240, rtol=1e-4)
    np.testing.assert_allclose(coupling.sum(axis=0), 1 / 80, rtol=1e-4)
    assert cost.shape == coupling.shape
    # the semi-relaxed OT keeps the target marginal only
    model, _ = _fit_predict(data, correction="transport")
    coupling, _ = model.transport(data.target_y)
    np.testing.assert_allclose(coupling.sum(axis=0), 1 / 80, rtol=1e-4)
    assert not np.allclose(coupling.sum(axis=1), 1 / 240, rtol=1e-3)


def test_deterministic_with_random_state(data):
    _, a = _fit_predict(data)
    _, b = _fit_predict(data)
    np.testing.assert_array_equal(a, b)
    corr = np.c_[np.arange(120), np.arange(120)]
    m1 = CMOT(n_neighbors=10, random_state=3).fit(data.source_x, data.source_y, correspondence=corr)
    m2 = CMOT(n_neighbors=10, random_state=3).fit(data.source_x, data.source_y, correspondence=corr)
    np.testing.assert_array_equal(m1.aligned_index_, m2.aligned_index_)


def test_variable_features_by_source_variance_not_first_columns():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(50, 10)) * np.array([0.1] * 5 + [5.0] * 5)
    np.testing.assert_array_equal(variable_features(y, 5), [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(variable_features(sp.csr_matrix(y), 5), [5, 6, 7, 8, 9])


def test_sparse_and_dense_inputs_give_the_same_result(data):
    rng = np.random.default_rng(1)
    sy = np.where(rng.random(data.source_y.shape) < 0.4, 0.0, data.source_y)
    ty = np.where(rng.random(data.target_y.shape) < 0.4, 0.0, data.target_y)
    kw = dict(n_neighbors=10, random_state=0, outlier_threshold=np.inf)
    dense = CMOT(**kw).fit(data.source_x, sy).predict(ty)
    sparse = CMOT(**kw).fit(sp.csr_matrix(data.source_x), sp.csc_matrix(sy)).predict(sp.csr_matrix(ty))
    np.testing.assert_allclose(sparse, dense, atol=1e-8)


def test_sparse_input_is_not_densified_in_storage(data):
    sy = sp.csr_matrix(np.where(data.source_y > 1.0, data.source_y, 0.0))
    model = CMOT(n_neighbors=5, random_state=0).fit(sp.csr_matrix(data.source_x), sy)
    assert sp.issparse(model.source_y_) and sp.issparse(model.source_x_)


def test_dataframe_in_dataframe_out_with_name_matching(data):
    ycols = [f"peak_{i}" for i in range(60)]
    xcols = [f"gene_{i}" for i in range(30)]
    sx = pd.DataFrame(data.source_x, index=[f"s{i}" for i in range(240)], columns=xcols)
    sy = pd.DataFrame(data.source_y, index=sx.index, columns=ycols)
    ty = pd.DataFrame(data.target_y, index=[f"t{i}" for i in range(80)], columns=ycols)
    model = CMOT(n_neighbors=10, random_state=0, outlier_threshold=np.inf).fit(sx, sy)
    out = model.predict(ty)
    assert isinstance(out, pd.DataFrame)
    assert list(out.index) == list(ty.index) and list(out.columns) == xcols
    # shuffled and extra target columns are matched by name
    shuffled = ty[ycols[::-1]].assign(extra=1.0)
    np.testing.assert_allclose(model.predict(shuffled).to_numpy(), out.to_numpy())
    # missing names are an error that lists them
    with pytest.raises(ValueError, match="peak_3"):
        model.predict(ty.drop(columns=["peak_3", "peak_7"]))


def test_anndata_in_anndata_out(data):
    anndata = pytest.importorskip("anndata")
    sx = anndata.AnnData(data.source_x)
    sx.var_names = [f"g{i}" for i in range(30)]
    sy = anndata.AnnData(sp.csr_matrix(data.source_y))
    sy.var_names = [f"p{i}" for i in range(60)]
    sy.obs_names = sx.obs_names
    ty = anndata.AnnData(data.target_y)
    ty.var_names = sy.var_names
    ty.obs_names = [f"q{i}" for i in range(80)]
    out = CMOT(n_neighbors=10, random_state=0, outlier_threshold=np.inf).fit(sx, sy).predict(ty)
    assert isinstance(out, anndata.AnnData)
    assert list(out.obs_names) == list(ty.obs_names) and list(out.var_names) == list(sx.var_names)


def test_partly_paired_source_runs_alignment(data):
    n = 240
    rng = np.random.default_rng(0)
    known = np.sort(rng.choice(n, n // 2, replace=False))
    corr = np.c_[known, known]
    model = CMOT(n_neighbors=15, random_state=0, outlier_threshold=np.inf)
    model.fit(data.source_x, data.source_y, correspondence=corr)
    assert model.embedding_x_.shape == (n, 10) and model.embedding_y_.shape == (n, 10)
    np.testing.assert_array_equal(model.aligned_index_[known], known)  # known pairs are kept
    # unknown Y cells take an X profile from a cell of the same simulated type most of the time
    unknown = np.setdiff1d(np.arange(n), known)
    same = data.source_labels[model.aligned_index_[unknown]] == data.source_labels[unknown]
    assert same.mean() > 0.8
    x_hat = model.predict(data.target_y)
    assert np.nanmean(cellwise_pearson(data.target_x, x_hat)) > 0.8
    # X profiles: a known partner's own, else the mean of the 10 nearest aligned X cells
    np.testing.assert_allclose(model.source_x_[known], data.source_x[known])
    d = ((model.embedding_y_[unknown, None, :] - model.embedding_x_[None, :, :]) ** 2).sum(-1)
    nearest = np.argsort(d, axis=1)[:, :10]
    np.testing.assert_allclose(model.source_x_[unknown], data.source_x[nearest].mean(1), atol=1e-12)
    np.testing.assert_array_equal(model.aligned_index_[unknown], nearest[:, 0])
    # the paper: the nearest aligned cell's own profile
    paper = CMOT(n_neighbors=15, match_neighbors=1, random_state=0, outlier_threshold=np.inf)
    paper.fit(data.source_x, data.source_y, correspondence=corr)
    np.testing.assert_array_equal(paper.source_x_, data.source_x[paper.aligned_index_])


def test_partly_paired_sparse_x_stays_sparse(data):
    rng = np.random.default_rng(2)
    x = sp.csr_matrix(np.where(rng.random(data.source_x.shape) < 0.5, 0.0, data.source_x))
    known = np.arange(0, 240, 2)
    model = CMOT(n_neighbors=10, random_state=0, outlier_threshold=np.inf)
    model.fit(x, data.source_y, correspondence=np.c_[known, known])
    assert sp.issparse(model.source_x_)
    np.testing.assert_allclose(model.source_x_.toarray(), model.match_matrix_ @ x.toarray())


def test_partly_paired_with_different_cell_counts(data):
    corr = np.zeros((200, 240))
    corr[np.arange(100), np.arange(100)] = 1
    model = CMOT(n_neighbors=10, random_state=0, outlier_threshold=np.inf)
    model.fit(data.source_x[:200], data.source_y, correspondence=sp.csr_matrix(corr))
    assert model.source_x_.shape == (240, 30)
    assert model.predict(data.target_y).shape == (80, 30)


def test_user_labels_are_used(data):
    model = CMOT(n_neighbors=10, random_state=0).fit(data.source_x, data.source_y, labels=data.source_labels)
    np.testing.assert_array_equal(model.labels_, data.source_labels)
    ward = CMOT(n_neighbors=10, n_clusters=3, random_state=0).fit(data.source_x, data.source_y)
    assert len(np.unique(ward.labels_)) == 3


def test_auto_n_neighbors_chooses_from_the_grid(data):
    model = CMOT(random_state=0).fit(data.source_x, data.source_y)
    assert model.n_neighbors_ in model.k_scores_
    assert model.k_scores_[model.n_neighbors_] == max(model.k_scores_.values())


@pytest.mark.parametrize("seed,min_new", [(0, 0.9), (2, 0.5), (3, 0.9)])
def test_new_cell_type_is_flagged_and_seen_types_are_not(seed, min_new):
    # How far the simulated new type lies from the known ones varies with the seed
    # (with seed 1 it nearly overlaps one and is mostly missed); known types stay unflagged.
    d = make_multimodal(300, 120, new_type_fraction=0.3, random_state=seed)
    model = CMOT(n_neighbors=15, random_state=0)
    with pytest.warns(PoorlyMappedWarning, match="%"):
        model.fit(d.source_x, d.source_y).predict(d.target_y)
    new = d.target_labels == 3
    assert model.outliers_[new].mean() >= min_new
    assert model.outliers_[~new].mean() < 0.02
    assert np.median(model.outlier_scores_[new]) > np.median(model.outlier_scores_[~new]) + 3


def test_no_warning_when_nothing_is_poorly_mapped(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error", PoorlyMappedWarning)
        CMOT(n_neighbors=10, random_state=0, outlier_threshold=np.inf).fit(data.source_x, data.source_y).predict(
            data.target_y
        )


def test_get_set_params_roundtrip():
    model = CMOT(reg_e=3.0, n_neighbors=7)
    params = model.get_params()
    assert params["reg_e"] == 3.0 and params["n_neighbors"] == 7
    clone = CMOT(**params)
    assert clone.get_params() == params
    model.set_params(reg_cl=0.5)
    assert model.reg_cl == 0.5
    with pytest.raises(ValueError, match="foo: unknown parameter; valid parameters are n_components, "):
        model.set_params(foo=1)
    assert "reg_e=3.0" in repr(model)


def test_init_only_stores():
    model = CMOT(n_neighbors=-5)  # no validation at construction (scikit-learn convention)
    assert model.n_neighbors == -5
    with pytest.raises(ValueError, match="n_neighbors"):
        model.fit(np.ones((5, 2)), np.random.default_rng(0).normal(size=(5, 3)))


def test_save_and_load(tmp_path, data):
    model, x_hat = _fit_predict(data)
    path = tmp_path / "model.pkl"
    model.save(path)
    loaded = CMOT.load(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        np.testing.assert_array_equal(loaded.predict(data.target_y), x_hat)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="CMOT.save"):
        CMOT.load(other)


def test_unfitted_predict_is_an_error():
    with pytest.raises(RuntimeError, match="not fitted"):
        CMOT().predict(np.ones((3, 3)))


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "mutate,match",
    [
        (lambda x, y: (np.where(np.eye(*x.shape) > 0, np.nan, x), y), "source_x: expected finite values"),
        (lambda x, y: (x, np.where(np.eye(*y.shape) > 0, np.inf, y)), "source_y: expected finite values"),
        (lambda x, y: (x[:-3], y), "same number of cells"),
        (lambda x, y: (x[:, :0], y), "source_x: expected a non-empty matrix"),
        (lambda x, y: (x, y[:0]), "source_y: expected a non-empty matrix"),
        (lambda x, y: (x[0], y), "source_x: expected a 2-D matrix"),
    ],
)
def test_bad_source_input(data, mutate, match):
    x, y = mutate(data.source_x, data.source_y)
    with pytest.raises(ValueError, match=match):
        CMOT(random_state=0).fit(x, y)


def test_non_numeric_input_is_a_type_error(data):
    with pytest.raises(TypeError, match="source_x: expected numeric"):
        CMOT().fit(np.array([["a", "b"], ["c", "d"]]), data.source_y[:2])
    df = pd.DataFrame({"a": ["x", "y"], "b": [1.0, 2.0]})
    with pytest.raises(TypeError, match="non-numeric columns: a"):
        CMOT().fit(df, data.source_y[:2])


def test_bad_target_input(data):
    model, _ = _fit_predict(data)
    with pytest.raises(ValueError, match="target_y: expected 60 features"):
        model.predict(data.target_y[:, :50])
    with pytest.raises(ValueError, match="target_y: expected finite"):
        model.predict(np.full((4, 60), np.nan))


def test_too_few_cells_for_neighbours_or_clusters(data):
    with pytest.raises(ValueError, match="n_clusters"):
        CMOT(n_clusters=10).fit(data.source_x[:5], data.source_y[:5])
    with pytest.raises(ValueError, match="align_neighbors"):
        CMOT(align_neighbors=50).fit(data.source_x[:30], data.source_y[:30], correspondence=[[0, 0]])


def test_bad_labels(data):
    with pytest.raises(ValueError, match="labels: expected one label per source Y cell \\(240\\), found 3"):
        CMOT().fit(data.source_x, data.source_y, labels=[1, 2, 3])
    with pytest.raises(ValueError, match="missing labels"):
        CMOT().fit(data.source_x, data.source_y, labels=[np.nan] * 240)


def test_bad_correspondence(data):
    x, y = data.source_x, data.source_y
    with pytest.raises(ValueError, match="pairs no cells"):
        CMOT().fit(x, y, correspondence=np.zeros((240, 240)))
    with pytest.raises(ValueError, match="out of range"):
        CMOT().fit(x, y, correspondence=[[0, 999]])
    with pytest.raises(ValueError, match="binary"):
        CMOT().fit(x, y, correspondence=np.full((240, 240), 0.5))


@pytest.mark.parametrize(
    "params,match",
    [
        ({"reg_e": -1.0}, "reg_e"),
        ({"reg_cl": -1.0}, "reg_cl"),
        ({"mu": 1.5}, "mu"),
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"n_neighbors": "many"}, "n_neighbors"),
        ({"n_pcs": 0}, "n_pcs"),
        ({"outlier_method": "magic"}, "outlier_method"),
    ],
)
def test_bad_parameters(data, params, match):
    with pytest.raises((ValueError, TypeError), match=match):
        CMOT(**params).fit(data.source_x, data.source_y)


def test_whole_floats_are_accepted_as_integers(data):
    # as R passes numbers: every integer parameter may be a whole float
    model = CMOT(n_neighbors=10.0, n_clusters=2.0, n_pcs=20.0, n_features=40.0, max_iter=5.0,
                 max_inner_iter=100.0, random_state=0).fit(data.source_x, data.source_y)
    assert model.n_neighbors_ == 10 and model.params_["n_pcs"] == 20
    assert model.predict(data.target_y).shape == (80, 30)
    with pytest.raises(TypeError, match="n_pcs: expected .* an integer >= 1, found 2.5"):
        CMOT(n_pcs=2.5).fit(data.source_x, data.source_y)


def test_reg_e_far_from_the_data_scale_warns(data):
    model = CMOT(reg_e=5e4, n_neighbors=10, random_state=0).fit(data.source_x, data.source_y)
    with pytest.warns(UserWarning, match="times the value reg_e=None would use"):
        model.predict(data.target_y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        CMOT(reg_e=None, n_neighbors=10, random_state=0, outlier_threshold=np.inf).fit(
            data.source_x, data.source_y
        ).predict(data.target_y)


def test_infer_from_coupling_reproduces_predict_from_the_public_coupling(data):
    # transport() returns the coupling with source cells in their own order; Step C on it
    # gives predict's answer (no row order to pass around)
    labels = np.arange(240) % 3  # interleaved: the solver reorders the source cells
    model = CMOT(n_neighbors=15, random_state=0, outlier_threshold=np.inf).fit(data.source_x, data.source_y,
                                                                                labels=labels)
    x_hat = model.predict(data.target_y)
    coupling, _ = model.transport(data.target_y)
    np.testing.assert_allclose(model.infer_from_coupling(coupling, data.target_y), x_hat, atol=1e-10)
    with pytest.raises(TypeError):
        model.infer_from_coupling(coupling, data.target_y, order=np.arange(240))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_warns_whenever_the_average_alone_predicts_as_well(seed):
    """Y says nothing about X (shuffled): whatever mix of neighbours, linear map and average
    leave-one-out picks (here shrinkage 0.25 to 1, linear weight 0 or 1), the user is warned,
    and only when the average alone scores at least as well or makes up half the prediction."""
    d = make_multimodal(90, 30, n_x_features=12, n_y_features=25, random_state=seed)
    x = d.source_x[np.random.default_rng(seed).permutation(90)]
    with pytest.warns(UserWarning, match=r"shrinkage: the shared modality predicts X little better"):
        model = CMOT(n_neighbors=8, n_features=20, random_state=0, outlier_threshold=np.inf).fit(x, d.source_y)
    s = model.shrinkage_scores_
    assert model.shrinkage_ >= 0.5 or s[model.shrinkage_] <= s[1.0]
    # the same cells with X that Y predicts: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        CMOT(n_neighbors=8, n_features=20, random_state=0, outlier_threshold=np.inf).fit(d.source_x, d.source_y)
