"""cmot.plotting: what is drawn is the data given (checked on the artists), and clear errors."""

import sys
import warnings

import numpy as np
import pandas as pd
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from cmot import CMOT  # noqa: E402
from cmot.datasets import make_multimodal  # noqa: E402
from cmot.plotting import plot_feature_scores, plot_mapping_score, plot_predicted_vs_measured  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _dots(ax):
    """(x, y) of every dot drawn by plot_feature_scores, by x."""
    pts = [(x, y) for line in ax.get_lines() if line.get_marker() == "o"
           for x, y in zip(line.get_xdata(), line.get_ydata())]
    return sorted(pts)


SCORES = {"CD3": 0.8, "PD-1": 0.05, "CD8": 0.6, "TIGIT": 0.25, "CD19": 0.95, "CD25": 0.3}


def test_feature_scores_are_drawn_sorted_with_low_ones_highlighted():
    ax = plot_feature_scores(SCORES, threshold=0.3)
    expected = sorted(SCORES.items(), key=lambda kv: -kv[1])
    xs, ys = zip(*_dots(ax))
    assert list(xs) == list(range(len(SCORES)))
    assert list(ys) == [v for _, v in expected]
    assert [t.get_text() for t in ax.get_xticklabels()] == [k for k, _ in expected]
    low = [line for line in ax.get_lines() if line.get_marker() == "o" and line.get_label().startswith("below")]
    assert len(low) == 1 and sorted(low[0].get_ydata()) == [0.05, 0.25]  # 0.3 itself is not below
    assert "2 of 6" in low[0].get_label()
    hlines = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert len(hlines) == 1 and set(hlines[0].get_ydata()) == {0.3}


def test_feature_scores_from_a_series_with_missing_scores_and_into_given_axes():
    fig, ax = plt.subplots()
    s = pd.Series({"a": 0.2, "b": np.nan, "c": 0.9})
    out = plot_feature_scores(s, ax=ax, threshold=None)
    assert out is ax
    assert [y for _, y in _dots(ax)] == [0.9, 0.2]
    assert "1 features without a score" in ax.get_title()
    assert not [line for line in ax.get_lines() if line.get_linestyle() == "--"]


def test_feature_scores_from_a_model_and_from_a_transferred_anndata():
    d = make_multimodal(80, 20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CMOT(n_neighbors=5, n_pcs=5, random_state=0).fit(pd.DataFrame(d.source_x).add_prefix("p"),
                                                                 d.source_y)
    if getattr(model, "feature_scores_", None) is None:
        with pytest.raises(ValueError, match=r"model_or_scores: expected a model with feature_scores_"):
            plot_feature_scores(model)
        model.feature_scores_ = np.linspace(1.0, -0.2, d.source_x.shape[1])  # what a later estimator computes
    ax = plot_feature_scores(model)
    names = [f"p{j}" for j in range(d.source_x.shape[1])]  # the columns given to fit
    scores = pd.Series(np.asarray(model.feature_scores_, dtype=float), index=names)
    expected = scores.sort_values(ascending=False, kind="stable")
    assert [y for _, y in _dots(ax)] == pytest.approx(list(expected.to_numpy()))
    assert [t.get_text() for t in ax.get_xticklabels()] == [str(n) for n in expected.index]
    ad = pytest.importorskip("anndata")
    q = ad.AnnData(np.zeros((2, 1)))
    q.uns["cmot"] = {"feature_scores": {"x": 0.1, "y": 0.7}}
    assert [y for _, y in _dots(plot_feature_scores(q))] == [0.7, 0.1]
    with pytest.raises(ValueError, match=r"expected an AnnData with uns\['other'\]"):
        plot_feature_scores(q, key_added="other")
    with pytest.raises(TypeError, match=r"model_or_scores: expected a fitted CMOT, an AnnData, a dict or a Series"):
        plot_feature_scores([0.1, 0.2])


def test_mapping_score_scatter_holds_the_embedding_and_scores():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 3))
    score = rng.normal(size=30)
    flags = score > 1
    ax = plot_mapping_score(emb, score, poorly_mapped=flags)
    main, ring = ax.collections[0], ax.collections[1]
    np.testing.assert_array_equal(main.get_offsets(), emb[:, :2])
    np.testing.assert_array_equal(main.get_array(), score)
    np.testing.assert_array_equal(ring.get_offsets(), emb[flags, :2])
    assert ax.get_legend().get_texts()[0].get_text() == f"poorly mapped ({flags.sum()})"


def test_mapping_score_with_boolean_flags_draws_two_groups():
    emb = np.arange(12.0).reshape(6, 2)
    flags = np.array([True, False, False, True, False, False])
    ax = plot_mapping_score(emb, flags)
    mapped, poor = ax.collections
    np.testing.assert_array_equal(mapped.get_offsets(), emb[~flags])
    np.testing.assert_array_equal(poor.get_offsets(), emb[flags])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["mapped (4)", "poorly mapped (2)"]


def test_mapping_score_from_an_anndata_written_by_transfer():
    ad = pytest.importorskip("anndata")
    q = ad.AnnData(np.zeros((5, 2)))
    q.obsm["X_umap"] = np.arange(10.0).reshape(5, 2)
    q.obs["cmot_outlier_score"] = [0.0, 1.0, 2.0, 5.0, 0.5]
    q.obs["cmot_poorly_mapped"] = [False, False, False, True, False]
    ax = plot_mapping_score(q)
    np.testing.assert_array_equal(ax.collections[0].get_array(), q.obs["cmot_outlier_score"].to_numpy())
    np.testing.assert_array_equal(ax.collections[1].get_offsets(), [[6.0, 7.0]])
    with pytest.raises(ValueError, match=r"basis: expected an obsm key of the AnnData \(one of X_umap\), found 'X_pca'"):
        plot_mapping_score(q, basis="X_pca")


def test_mapping_score_errors():
    with pytest.raises(ValueError, match=r"score: expected one value per cell of the embedding \(3\), found shape \(2,\)"):
        plot_mapping_score(np.zeros((3, 2)), [1.0, 2.0])
    with pytest.raises(ValueError, match=r"embedding: expected an array of shape \(n_cells, >= 2\), found shape \(3, 1\)"):
        plot_mapping_score(np.zeros((3, 1)), [1.0, 2.0, 3.0])


def test_predicted_vs_measured_matches_cells_by_name():
    rng = np.random.default_rng(1)
    cells = [f"c{i}" for i in range(40)]
    pred = pd.DataFrame(rng.normal(size=(40, 3)), index=cells, columns=["A", "B", "C"])
    measured = pred * 0.5 + rng.normal(scale=0.3, size=(40, 3))
    shuffled = measured.iloc[rng.permutation(40)]
    axes = plot_predicted_vs_measured(pred, shuffled, ["C", "A"], ncols=2)
    assert axes.size == 2
    for ax, f in zip(axes, ["C", "A"]):
        np.testing.assert_array_equal(ax.collections[0].get_offsets(), np.c_[measured[f], pred[f]])
        r = np.corrcoef(measured[f], pred[f])[0, 1]
        assert ax.get_title() == f"{f} (r = {r:.2f})"
    with pytest.raises(ValueError, match=r"features: expected columns of measured, found 1 missing: B"):
        plot_predicted_vs_measured(pred, measured.drop(columns="B"), ["A", "B"])
    with pytest.raises(ValueError, match=r"measured: expected every predicted cell, found 2 missing: c0, c1"):
        plot_predicted_vs_measured(pred, measured.iloc[2:], "A")


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"cmot.plotting needs matplotlib.*pip install matplotlib"):
        plot_feature_scores({"a": 1.0})
