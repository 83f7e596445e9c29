import logging

import numpy as np
import pytest

from cmot import CMOT
from cmot.datasets import make_multimodal
from cmot.metrics import cellwise_pearson
from cmot.search import CVResult, _folds, cross_validate, default_param_grid


@pytest.fixture(scope="module")
def data():
    return make_multimodal(120, 10, random_state=0)


BAD_GRID = {"reg_e": [None, 1e8], "n_neighbors": [1, 15], "n_features": [2, 40]}


def test_picks_the_best_combination(data):
    # shrinkage=0: Step C is the neighbours' average alone (with "auto" the leave-one-out
    # blend with the linear map makes one neighbour as good as 15 on these data)
    res = cross_validate(data.source_x, data.source_y, param_grid=BAD_GRID, n_splits=3, random_state=0,
                         base_params={"shrinkage": 0.0})
    assert isinstance(res, CVResult)
    df = res.results_
    assert len(df) == 8
    assert {"reg_e", "n_neighbors", "n_features", "mean_score", "std_score", "rank"} <= set(df.columns)
    assert [f"split{i}_score" for i in range(3)] == [c for c in df.columns if c.startswith("split")]
    assert res.best_score_ == pytest.approx(df["mean_score"].max())
    assert res.best_params_ == {"reg_e": None, "n_neighbors": 15, "n_features": 40}
    # reg_e=1e8 (a uniform coupling), one neighbour and two features are clearly bad
    worst = df.loc[df["mean_score"].idxmin()]
    assert worst["mean_score"] < res.best_score_ - 0.1
    assert df.loc[df["rank"] == 1, "mean_score"].item() == res.best_score_
    assert df["reg_e"].iloc[0] is None
    assert np.allclose(df["mean_score"], df[[f"split{i}_score" for i in range(3)]].mean(axis=1))


def test_maximizes_the_given_score(data):
    # a negated score must make the search pick what was the worst combination
    neg = cross_validate(
        data.source_x,
        data.source_y,
        param_grid=BAD_GRID,
        n_splits=3,
        random_state=0,
        scoring=lambda t, p: -np.nanmean(cellwise_pearson(t, p)),
    )
    pos = cross_validate(data.source_x, data.source_y, param_grid=BAD_GRID, n_splits=3, random_state=0)
    assert neg.best_score_ == pytest.approx(-pos.results_["mean_score"].min())
    assert neg.best_params_ != pos.best_params_


def test_fold_scores_match_fit_predict(data):
    grid = {"n_neighbors": [7], "n_features": [25], "reg_cl": [0.5]}
    res = cross_validate(data.source_x, data.source_y, param_grid=grid, n_splits=3, random_state=1)
    folds = _folds(120, 3, None, 1)
    for f, (train, test) in enumerate(folds):
        model = CMOT(n_neighbors=7, n_features=25, reg_cl=0.5, random_state=1, outlier_threshold=np.inf)
        x_hat = model.fit(data.source_x[train], data.source_y[train]).predict(data.source_y[test])
        expected = np.nanmean(cellwise_pearson(data.source_x[test], x_hat))
        assert res.results_[f"split{f}_score"].iloc[0] == pytest.approx(expected, rel=1e-10)
    assert res.best_estimator().get_params()["n_neighbors"] == 7


def test_stratified_folds_and_featurewise_scoring(data, caplog):
    labels = np.where(np.arange(120) < 30, "rare", "common")
    folds = _folds(120, 3, labels, 0)
    for _, test in folds:
        assert np.sum(labels[test] == "rare") == 10
    with caplog.at_level(logging.INFO, logger="cmot"):
        res = cross_validate(
            data.source_x,
            data.source_y,
            param_grid={"n_neighbors": [5, 20], "n_features": [30]},
            n_splits=3,
            labels=labels,
            scoring="featurewise_pearson",
            random_state=0,
            verbose=True,
        )
    assert res.scoring == "featurewise_pearson"
    # the best score is the mean over the stratified folds of the mean feature-wise Pearson r
    # of a model with the best parameters, recomputed here with numpy's corrcoef
    per_fold = []
    for train, test in folds:
        model = CMOT(**res.best_params_, random_state=0, outlier_threshold=np.inf)
        x_hat = model.fit(data.source_x[train], data.source_y[train], labels=labels[train]).predict(
            data.source_y[test])
        truth = data.source_x[test]
        per_fold.append(np.mean([np.corrcoef(truth[:, f], x_hat[:, f])[0, 1] for f in range(truth.shape[1])]))
    assert res.best_score_ == pytest.approx(np.mean(per_fold), abs=1e-10)
    assert res.best_score_ == res.results_["mean_score"].max()
    assert "fold 3/3" in caplog.text and "best" in caplog.text
    with pytest.raises(ValueError, match="labels: expected at least n_splits"):
        cross_validate(data.source_x, data.source_y, labels=np.r_[np.zeros(118), 1, 1], n_splits=3)


def test_default_grid_capped_by_data():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 70))
    g = default_param_grid(y, n_train=32)
    assert g["n_neighbors"] == [10, 30, 32]
    assert g["n_features"] == [70]
    g = default_param_grid(rng.normal(size=(40, 3000)), n_train=32)
    assert g["n_features"] == [500, 2000, 3000]  # up to the default 4000, capped
    assert CMOT().n_features == 4000
    assert g["reg_e"][0] is None and len(g["reg_e"]) == 3 and g["reg_e"][1] < g["reg_e"][2]


def test_bad_inputs(data):
    x, y = data.source_x, data.source_y
    with pytest.raises(ValueError, match="param_grid: unknown CMOT parameter 'k'"):
        cross_validate(x, y, param_grid={"k": [1]})
    with pytest.raises(ValueError, match="scoring"):
        cross_validate(x, y, param_grid={"n_neighbors": [5]}, scoring="r2")
    with pytest.raises(ValueError, match="source_x and source_y"):
        cross_validate(x[:50], y, param_grid={"n_neighbors": [5]})
    with pytest.raises(ValueError, match="n_splits"):
        cross_validate(x, y, param_grid={"n_neighbors": [5]}, n_splits=1)
    with pytest.raises(ValueError, match="n_neighbors"):
        cross_validate(x, y, param_grid={"n_neighbors": [0]})
    with pytest.raises(ValueError, match="^bogus: unknown parameter; valid parameters are n_components"):
        cross_validate(x, y, param_grid={"n_neighbors": [5]}, base_params={"bogus": 1})


def test_search_cv_refits_best_and_predicts(data):
    import pandas as pd

    from cmot.search import CMOTSearchCV

    grid = {"n_neighbors": [1, 15], "n_features": [40]}
    cols = [f"y{j}" for j in range(data.source_y.shape[1])]
    sy = pd.DataFrame(data.source_y, columns=cols)
    search = CMOTSearchCV(grid, n_splits=3, random_state=0, base_params={"outlier_threshold": np.inf, "shrinkage": 0.0})
    with pytest.raises(RuntimeError, match="not fitted"):
        search.predict(data.target_y)
    search.fit(data.source_x, sy)
    assert search.best_params_ == {"n_neighbors": 15, "n_features": 40}
    assert search.best_estimator_.n_neighbors == 15 and search.best_estimator_.outlier_threshold == np.inf
    assert len(search.cv_results_) == 2
    x_hat = search.predict(pd.DataFrame(data.target_y, columns=cols))
    assert isinstance(x_hat, pd.DataFrame) and x_hat.shape == (10, 30)


def test_sparse_input_and_partial_grid(data):
    import scipy.sparse as sp

    res = cross_validate(sp.csr_matrix(data.source_x), sp.csr_matrix(data.source_y), param_grid={"reg_cl": [0.1, 1.0]},
                         n_splits=3, random_state=0, base_params={"n_neighbors": 10, "n_features": 30})
    dense = cross_validate(data.source_x, data.source_y, param_grid={"reg_cl": [0.1, 1.0]},
                           n_splits=3, random_state=0, base_params={"n_neighbors": 10, "n_features": 30})
    assert np.allclose(res.results_["mean_score"], dense.results_["mean_score"])
    assert res.best_estimator().n_neighbors == 10


def test_folds_do_not_repeat_the_shrinkage_warning(data):
    import warnings

    rng = np.random.default_rng(1)
    x_unrelated = rng.normal(size=(120, 30)) + np.arange(30)  # noise around a fixed profile: Y says nothing
    with pytest.warns(UserWarning, match="shrinkage: "):  # as a fold's fit would, without the filter
        CMOT(n_neighbors=10, random_state=0).fit(x_unrelated[:80], data.source_y[:80])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = cross_validate(x_unrelated, data.source_y, param_grid={"n_neighbors": [10, 20]}, n_splits=3,
                             random_state=0)
    assert np.isfinite(res.results_["mean_score"]).all()
    assert not [w for w in caught if str(w.message).startswith("shrinkage: ")]
