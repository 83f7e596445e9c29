"""feature_scores_: leave-one-out feature-wise Pearson r on the reference, against a plain
NumPy recomputation, and the verbose summary that names unreliable features."""

import logging

import numpy as np
import pandas as pd
import pytest

from cmot import CMOT
from cmot.datasets import make_multimodal
from cmot.feature_scores import RELIABLE_R, unreliable_features

pytestmark = pytest.mark.filterwarnings("ignore::cmot.PoorlyMappedWarning")


def _numpy_scores(rep, x, k, scale, shrinkage, random_state, max_cells=2000):
    """Independent recomputation: full distance matrix, self excluded, k nearest others."""
    n = rep.shape[0]
    query = np.sort(np.random.default_rng(random_state).choice(n, size=min(n, max_cells), replace=False))
    dist = np.sqrt(((rep[query, None, :] - rep[None, :, :]) ** 2).sum(axis=2))
    dist[np.arange(query.size), query] = np.inf
    nn = np.argsort(dist, axis=1, kind="stable")[:, :k]
    d = np.take_along_axis(dist, nn, axis=1)
    w = np.exp(-(d - d[:, :1]) / scale)
    w /= w.sum(axis=1, keepdims=True)
    pred = np.einsum("qk,qkf->qf", w, x[nn])
    pred = (1 - shrinkage) * pred + shrinkage * x.mean(axis=0)
    out = []
    for j in range(x.shape[1]):
        a, b = x[query, j], pred[:, j]
        out.append(np.nan if np.ptp(a) == 0 or np.ptp(b) == 0 else np.corrcoef(a, b)[0, 1])
    return np.array(out)


@pytest.mark.parametrize("n_source, shrinkage", [(300, 0.0), (2300, 0.25)])
def test_feature_scores_match_a_numpy_recomputation(n_source, shrinkage):
    d = make_multimodal(n_source=n_source, n_target=20, random_state=4)
    x = d.source_x.copy()
    x[:, 3] = 1.5  # a constant feature: NaN
    model = CMOT(n_neighbors=10, n_pcs=5, shrinkage=shrinkage, random_state=7).fit(x, d.source_y)
    got = model.feature_scores_
    expected = _numpy_scores(model.source_rep_, x, 10, model.weight_scale_, shrinkage, 7)
    assert isinstance(got, pd.Series) and got.shape == (x.shape[1],)
    assert np.isnan(got.iloc[3]) and np.isnan(expected[3])
    np.testing.assert_allclose(got.to_numpy(), expected, atol=1e-10)


def test_scores_are_indexed_by_feature_name_and_rank_informative_above_noise():
    d = make_multimodal(n_source=300, n_target=20, random_state=5)
    rng = np.random.default_rng(0)
    names = [f"p{j}" for j in range(d.source_x.shape[1])] + ["noise"]
    x = pd.DataFrame(np.c_[d.source_x, rng.normal(size=300)], columns=names)
    model = CMOT(random_state=0).fit(x, d.source_y)
    scores = model.feature_scores_
    assert list(scores.index) == names
    assert abs(scores["noise"]) < 0.2 and scores.drop("noise").median() > 0.8
    # a model without names: positions
    assert list(CMOT(n_neighbors=10, random_state=0).fit(d.source_x, d.source_y).feature_scores_.index) == list(
        range(d.source_x.shape[1]))


def test_verbose_names_the_features_that_cannot_be_inferred(caplog):
    d = make_multimodal(n_source=300, n_target=20, random_state=5)
    x = pd.DataFrame(np.c_[d.source_x[:, :3], np.random.default_rng(1).normal(size=300)],
                     columns=["CD3", "CD4", "CD8", "IgG"])
    caplog.set_level(logging.INFO, logger="cmot")
    model = CMOT(n_neighbors=10, random_state=0, verbose=True).fit(x, d.source_y)
    lines = [r.getMessage() for r in caplog.records if "cannot be inferred reliably" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0] == "cmot: " + unreliable_features(model.feature_scores_.to_numpy(), x.columns)
    scores = model.feature_scores_
    assert "IgG (r = " in lines[0] and (scores < RELIABLE_R).sum() < 4
    for name, r in scores.items():  # named exactly when below the threshold
        assert (f"{name} (r = " in lines[0]) == (r < RELIABLE_R), name


def test_unreliable_features_uses_the_one_threshold():
    assert RELIABLE_R == 0.3
    assert unreliable_features(np.array([0.31, 0.5])) is None
    msg = unreliable_features(np.array([0.29, np.nan, 0.9]), ["a", "b", "c"])
    assert msg.startswith("2 of 3 features") and msg.endswith("a (r = 0.29), b (constant)")


def test_many_unreliable_features_name_the_lowest_and_count_the_rest():
    scores = np.r_[np.linspace(0.25, -0.2, 30), 0.8]
    msg = unreliable_features(scores, [f"g{j}" for j in range(31)])
    assert msg.startswith("30 of 31 features") and msg.endswith(", ... (10 more)")
    assert "g29 (r = -0.20), g28" in msg and "g9 (" not in msg and "g30" not in msg


def test_feature_scores_blend_the_linear_map_as_step_c_does(monkeypatch):
    """With shrinkage="auto" Step C blends in the ridge map; the score of a left-out cell
    blends in the map refitted without that cell (scikit-learn Ridge, one refit per cell).
    The neighbours in Step C's metric: tests/test_stepc.py; here the Euclidean one."""
    from sklearn.linear_model import Ridge

    monkeypatch.setattr("cmot.choices.AUTO_METRIC_GRID", (0.0,))
    d = make_multimodal(n_source=300, n_target=20, random_state=6)
    model = CMOT(n_neighbors=10, n_pcs=5, random_state=3).fit(d.source_x, d.source_y)
    lw, s = model.linear_weight_, model.shrinkage_
    assert lw > 0  # the case under test
    rep, x = model.source_rep_, d.source_x
    knn_only = _numpy_scores(rep, x, 10, model.weight_scale_, 0.0, 3)
    query = np.arange(rep.shape[0])  # all 300 cells are left out in turn (below LOO_MAX_CELLS)
    dist = np.sqrt(((rep[:, None, :] - rep[None, :, :]) ** 2).sum(axis=2))
    dist[query, query] = np.inf
    nn = np.argsort(dist, axis=1, kind="stable")[:, :10]
    dd = np.take_along_axis(dist, nn, axis=1)
    w = np.exp(-(dd - dd[:, :1]) / model.weight_scale_)
    w /= w.sum(axis=1, keepdims=True)
    knn = np.einsum("qk,qkf->qf", w, x[nn])
    linear = np.empty_like(knn)
    for i in query:
        keep = query != i
        linear[i] = Ridge(alpha=model.linear_map_.alpha).fit(rep[keep], x[keep]).predict(rep[i:i + 1])[0]
    pred = (1 - s) * ((1 - lw) * knn + lw * linear) + s * x.mean(axis=0)
    expected = np.array([np.corrcoef(x[:, j], pred[:, j])[0, 1] for j in range(x.shape[1])])
    np.testing.assert_allclose(model.feature_scores_.to_numpy(), expected, atol=1e-8)
    assert not np.allclose(knn_only, expected, atol=1e-3)  # the blend changes the scores
