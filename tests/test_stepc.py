"""Step C's linear map: the ridge regression of X on the Step C components, its exact
leave-one-out prediction, the leave-one-out choice of its weight, and the prediction
that blends it with the neighbours' average (paper mode and numeric shrinkage: none)."""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from cmot import CMOT, PAPER_MODE, PoorlyMappedWarning
from cmot.choices import choose, fit_linear_map, select_linear_weight
from cmot.datasets import make_multimodal
from cmot.infer import exp_weights, nearest_neighbors, weighted_average


def _latent_data(n, linear, seed):
    """Y: 60 noisy features driven by 3 latent factors; X: 12 features that are a linear
    function of the factors (``linear=True``) or depend only on the sign of the product
    of the first two (an XOR of four clusters: no linear map of Y predicts it)."""
    rng = np.random.default_rng(seed)
    if linear:
        z = rng.normal(size=(n, 3))
        x = z @ rng.normal(size=(3, 12)) + 0.1 * rng.normal(size=(n, 12))
    else:
        centres = np.array([[3.0, 3.0, 0.0], [-3.0, -3.0, 0.0], [3.0, -3.0, 0.0], [-3.0, 3.0, 0.0]])
        z = centres[rng.integers(0, 4, size=n)] + 0.5 * rng.normal(size=(n, 3))
        profile = rng.normal(size=(2, 12)) * 3
        x = profile[(z[:, 0] * z[:, 1] > 0).astype(int)] + 0.1 * rng.normal(size=(n, 12))
    y = z @ rng.normal(size=(3, 60)) + 0.5 * rng.normal(size=(n, 60))
    return x, y


def test_leave_one_out_of_the_linear_map_equals_refitting_without_each_cell():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(40, 4))
    x = z @ rng.normal(size=(4, 3)) + rng.normal(size=(40, 3))
    query = np.array([0, 7, 19, 33])
    lin, loo, scores = fit_linear_map(z, x, query, x[query], grid=(0.5,))
    # the fit on every cell is scikit-learn's ridge (intercept not penalized) ...
    ref = Ridge(alpha=lin.alpha).fit(z, x)
    np.testing.assert_allclose(lin.coef, ref.coef_.T, atol=1e-10)
    np.testing.assert_allclose(lin.intercept, ref.intercept_, atol=1e-10)
    # ... and the penalty is the grid value times the mean eigenvalue of the centred Gram matrix
    zc = z - z.mean(0)
    assert lin.alpha == pytest.approx(0.5 * np.trace(zc.T @ zc) / 4, rel=1e-12)
    # each left-out prediction is the ridge refitted on the other 39 cells
    for row, i in enumerate(query):
        keep = np.arange(40) != i
        refit = Ridge(alpha=lin.alpha).fit(z[keep], x[keep]).predict(z[i : i + 1])
        np.testing.assert_allclose(loo[row], refit[0], atol=1e-10)
    assert set(scores) == {0.5}


def test_linear_weight_is_the_best_blend_on_the_left_out_cells():
    rng = np.random.default_rng(2)
    truth = rng.normal(size=(30, 6))
    knn = truth + rng.normal(size=(30, 6))
    linear = truth + 0.3 * rng.normal(size=(30, 6))
    best, scores = select_linear_weight(truth, knn, linear, grid=(0.0, 0.5, 1.0))
    # independent score: mean of mean cell-wise and mean feature-wise Pearson r
    def score(pred):
        cell = np.mean([np.corrcoef(truth[i], pred[i])[0, 1] for i in range(30)])
        feat = np.mean([np.corrcoef(truth[:, j], pred[:, j])[0, 1] for j in range(6)])
        return (cell + feat) / 2

    for w in (0.0, 0.5, 1.0):
        assert scores[w] == pytest.approx(score((1 - w) * knn + w * linear), abs=1e-12)
    assert best == max(scores, key=scores.get) and best > 0


@pytest.mark.parametrize("seed", [0, 1])
def test_choice_takes_the_linear_map_when_x_is_linear_in_y(seed):
    x, y = _latent_data(400, linear=True, seed=seed)
    model = CMOT(random_state=seed, outlier_threshold=np.inf).fit(x, y)
    assert model.linear_weight_ >= 0.8
    assert model.linear_weight_scores_[model.linear_weight_] == max(model.linear_weight_scores_.values())
    assert model.linear_weight_scores_[model.linear_weight_] > model.linear_weight_scores_[0.0]


@pytest.mark.parametrize("seed", [0, 1])
def test_choice_keeps_the_neighbours_when_x_is_not_linear_in_y(seed):
    x, y = _latent_data(400, linear=False, seed=seed)
    model = CMOT(random_state=seed, outlier_threshold=np.inf).fit(x, y)
    assert model.linear_weight_ <= 0.2
    assert model.linear_weight_scores_[0.0] > model.linear_weight_scores_[1.0]


def test_default_prediction_blends_neighbours_and_ridge_of_the_moved_target():
    data = make_multimodal(n_source=240, n_target=80, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        model = CMOT(random_state=0).fit(data.source_x, data.source_y)
        x_hat = model.predict(data.target_y)
    assert 0 < model.linear_weight_ <= 1 and model.linear_map_ is not None
    a = model.source_rep_
    b = model.representation_.transform(data.target_y)
    mapped = model._move(model.transport(data.target_y)[0], b, None)  # the moved source (shift_ as predict)
    idx, dist = nearest_neighbors(b, mapped, model.n_neighbors_)
    knn = weighted_average(data.source_x, idx, exp_weights(dist, model.weight_scale_))
    # the linear map is scikit-learn's ridge on the source components, applied to the
    # target moved back by the transport's shift
    lin = Ridge(alpha=model.linear_map_.alpha).fit(a, data.source_x).predict(b - model.shift_)
    lw, s = model.linear_weight_, model.shrinkage_
    expected = (1 - s) * ((1 - lw) * knn + lw * lin) + s * data.source_x.mean(0)
    np.testing.assert_allclose(x_hat, expected, atol=1e-8)


def test_no_linear_map_in_paper_mode_or_with_a_given_shrinkage():
    data = make_multimodal(n_source=120, n_target=40, random_state=3)
    for params in (dict(PAPER_MODE, n_features=20), dict(shrinkage=0.0), dict(shrinkage=0.25)):
        model = CMOT(random_state=0, outlier_threshold=np.inf, **params).fit(data.source_x, data.source_y)
        assert model.linear_weight_ == 0.0 and model.linear_map_ is None and model.linear_weight_scores_ is None


def test_choose_scores_the_blend_for_the_shrinkage():
    # with the linear map chosen, the shrinkage is chosen for the blended prediction: on
    # linear data the blend leaves nothing for the mean to add
    x, y = _latent_data(300, linear=True, seed=3)
    rep = y - y.mean(0)
    rep = rep @ np.linalg.svd(rep, full_matrices=False)[2][:5].T
    chosen = choose(rep, x, n_pcs=5, n_neighbors=10, shrinkage="auto", random_state=0)
    assert chosen.linear_weight >= 0.8 and chosen.shrinkage == 0.0
    assert chosen.shrinkage_scores[0.0] > chosen.shrinkage_scores[1.0]


def test_saved_model_keeps_the_linear_map(tmp_path):
    data = make_multimodal(n_source=120, n_target=40, random_state=3)
    model = CMOT(random_state=0, outlier_threshold=np.inf).fit(data.source_x, data.source_y)
    assert model.linear_weight_ > 0
    path = tmp_path / "model.cmot"
    model.save(path)
    loaded = CMOT.load(path)
    np.testing.assert_array_equal(loaded.linear_map_.coef, model.linear_map_.coef)
    assert loaded.linear_weight_ == model.linear_weight_
    np.testing.assert_array_equal(loaded.predict(data.target_y), model.predict(data.target_y))
