import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import pearsonr
from sklearn.metrics import average_precision_score, roc_auc_score, silhouette_score

from cmot import metrics


@pytest.fixture
def yy():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(20, 8))
    return y, y + rng.normal(scale=0.5, size=y.shape)


def test_cellwise_pearson_known_answers(yy):
    y, _ = yy
    assert np.allclose(metrics.cellwise_pearson(y, y), 1.0)
    assert np.allclose(metrics.cellwise_pearson(y, -y), -1.0)
    # invariant to per-cell affine maps
    assert np.allclose(metrics.cellwise_pearson(y, 3 * y + 7), 1.0)


def test_cellwise_and_featurewise_match_scipy(yy):
    y, p = yy
    cw = metrics.cellwise_pearson(y, p)
    fw = metrics.featurewise_pearson(y, p)
    assert cw.shape == (20,) and fw.shape == (8,)
    assert np.allclose(cw, [pearsonr(y[i], p[i])[0] for i in range(20)])
    assert np.allclose(fw, [pearsonr(y[:, j], p[:, j])[0] for j in range(8)])


def test_featurewise_pearson_constant_column_is_nan(yy):
    y, p = yy
    y = y.copy()
    y[:, 2] = 4.0
    fw = metrics.featurewise_pearson(y, p)
    assert np.isnan(fw[2]) and np.isfinite(np.delete(fw, 2)).all()


def test_sparse_and_dataframe_inputs(yy):
    y, p = yy
    ref = metrics.cellwise_pearson(y, p)
    assert np.allclose(metrics.cellwise_pearson(sp.csr_matrix(y), p), ref)
    cells = [f"c{i}" for i in range(20)]
    feats = [f"f{j}" for j in range(8)]
    dy = pd.DataFrame(y, index=cells, columns=feats)
    dp = pd.DataFrame(p, index=cells, columns=feats)
    assert np.allclose(metrics.cellwise_pearson(dy, dp), ref)
    # y_pred in another column and row order is realigned by name
    shuffled = dp.iloc[::-1, ::-1]
    assert np.allclose(metrics.cellwise_pearson(dy, shuffled), ref)
    assert np.allclose(metrics.featurewise_pearson(dy, shuffled), metrics.featurewise_pearson(y, p))


def test_shape_mismatch_names_both_arguments(yy):
    y, p = yy
    with pytest.raises(ValueError, match=r"y_true and y_pred.*\(20, 8\) and \(20, 7\)"):
        metrics.cellwise_pearson(y, p[:, :7])
    with pytest.raises(ValueError, match="y_true and y_pred"):
        metrics.summary(y, p[:5])
    dy = pd.DataFrame(y, columns=[f"f{j}" for j in range(8)])
    dp = pd.DataFrame(p, columns=[f"g{j}" for j in range(8)])
    with pytest.raises(ValueError, match="feature names"):
        metrics.featurewise_pearson(dy, dp)
    dup = pd.DataFrame(p, columns=["f0"] * 8)
    with pytest.raises(ValueError, match="unique feature names"):
        metrics.featurewise_pearson(dy, dup)
    with pytest.raises(TypeError, match="y_pred"):
        metrics.cellwise_pearson(y, np.full(y.shape, "a"))


def test_binarize():
    x = np.array([[0.0, 1.0, 5.0], [10.0, 1.0, 6.0], [4.0, 1.0, 7.0]])
    assert metrics.binarize(x).tolist() == [[0, 0, 0], [1, 0, 0], [0, 0, 1]]
    assert metrics.binarize(sp.csr_matrix(x), 0, minmax=False).tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]
    with pytest.raises(TypeError, match="threshold"):
        metrics.binarize(x, "0.5")


def test_featurewise_auroc_perfect_reversed_and_sklearn():
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=(40, 5)) > 0.5).astype(int)
    assert np.allclose(metrics.featurewise_auroc(y, y + 0.1 * rng.uniform(size=y.shape)), 1.0)
    assert np.allclose(metrics.featurewise_auroc(y, -y.astype(float)), 0.0)
    s = np.round(rng.normal(size=y.shape), 1)  # with ties
    expected = [roc_auc_score(y[:, j], s[:, j]) for j in range(5)]
    assert np.allclose(metrics.featurewise_auroc(y, s), expected)


def test_featurewise_auroc_constant_and_bad_input():
    y = np.array([[0, 1], [0, 0], [0, 1]])
    auc = metrics.featurewise_auroc(y, np.array([[0.1, 0.9], [0.2, 0.1], [0.3, 0.8]]))
    assert np.isnan(auc[0]) and auc[1] == 1.0
    with pytest.raises(ValueError, match="y_true_binary: expected only 0 and 1"):
        metrics.featurewise_auroc(np.array([[0.0, 2.0], [1.0, 0.0]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="y_true_binary and y_score"):
        metrics.featurewise_auroc(y, np.zeros((3, 3)))


def test_marker_auprc():
    rng = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], [10, 10, 20])
    y = rng.normal(size=(40, 9))
    for k, lab in enumerate("abc"):
        y[labels == lab, 3 * k : 3 * k + 3] += 10  # three strong markers per label
    res = metrics.marker_auprc(y, y, labels, n_markers=3)
    assert len(res) == 9
    assert set(res.columns) >= {"label", "feature", "auprc", "auprc_measured", "baseline"}
    for k, lab in enumerate("abc"):
        sub = res[res.label == lab]
        assert sorted(sub.feature) == [3 * k, 3 * k + 1, 3 * k + 2]
        assert np.allclose(sub.auprc, 1.0)
    assert np.allclose(res[res.label == "c"].baseline, 0.5)
    # uninformative predictions give AUPRC near the baseline; perfect ones beat them
    noise = rng.normal(size=y.shape)
    res_noise = metrics.marker_auprc(y, noise, labels, n_markers=3)
    assert res_noise.auprc.mean() < 0.7
    pos = labels == "a"
    assert np.isclose(res_noise.auprc[0], average_precision_score(pos, noise[:, res_noise.feature[0]]))
    # named features and balanced subsampling
    df = pd.DataFrame(y, columns=[f"g{j}" for j in range(9)])
    bal = metrics.marker_auprc(df, df, labels, n_markers=3, balance=True, random_state=0)
    assert set(bal.feature) == {f"g{j}" for j in range(9)}
    assert np.allclose(bal.baseline, 1 / 3)
    with pytest.raises(ValueError, match="labels"):
        metrics.marker_auprc(y, y, labels[:10])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.marker_auprc(y, y, np.zeros(40))


def test_silhouette_by_label():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(size=(10, 3)), rng.normal(size=(10, 3)) + 20]
    lab = np.repeat([0, 1], 10)
    s = metrics.silhouette_by_label(x, lab)
    assert s > 0.9 and np.isclose(s, silhouette_score(x, lab))
    assert metrics.silhouette_by_label(x, rng.permutation(lab)) < 0.3
    assert metrics.silhouette_by_label(x, lab, return_samples=True).shape == (20,)
    with pytest.raises(ValueError, match="labels"):
        metrics.silhouette_by_label(x, np.zeros(20))


def test_wilcoxon_greater():
    rng = np.random.default_rng(0)
    b = rng.uniform(size=60)
    a = b + rng.uniform(0.05, 0.2, size=60)
    res = metrics.wilcoxon_greater(a, b)
    assert res.pvalue < 1e-8 and res.n_greater == 60 and res.n_less == 0 and res.n == 60
    assert metrics.wilcoxon_greater(b, a).pvalue > 0.99
    # NaN pairs are dropped
    a2 = a.copy()
    a2[:5] = np.nan
    assert metrics.wilcoxon_greater(a2, b).n == 55
    unpaired = metrics.wilcoxon_greater(b + 1, b, paired=False)
    assert unpaired.pvalue < 1e-8
    with pytest.raises(ValueError, match="scores_a and scores_b"):
        metrics.wilcoxon_greater(a, b[:10])


def test_summary(yy):
    y, p = yy
    s = metrics.summary(y, p)
    cw = metrics.cellwise_pearson(y, p)
    assert np.isclose(s["mean_cellwise_pearson"], cw.mean())
    assert np.isclose(s["median_cellwise_pearson"], np.median(cw))
    assert np.isclose(s["mean_featurewise_pearson"], metrics.featurewise_pearson(y, p).mean())
    assert s["n_cells"] == 20 and s["n_features"] == 8
    assert metrics.summary(y, y)["mean_cellwise_pearson"] == pytest.approx(1.0)
