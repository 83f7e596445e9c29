"""Checks of the benchmark task loaders in benchmarks/_data.py (skipped without the shared data)."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

_BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
_spec = importlib.util.spec_from_file_location("cmot_benchmarks_data", _BENCH / "_data.py")
_data = importlib.util.module_from_spec(_spec)
sys.modules["cmot_benchmarks_data"] = _data
_spec.loader.exec_module(_data)
_cspec = importlib.util.spec_from_file_location("cmot_benchmarks_common", _BENCH / "_common.py")
_common = importlib.util.module_from_spec(_cspec)
sys.modules["cmot_benchmarks_common"] = _common
_cspec.loader.exec_module(_common)

needs_data = pytest.mark.skipif(not _data.available(), reason=f"benchmark data folder {_data.data_dir()} absent")


def dense(m):
    return m.toarray() if sp.issparse(m) else np.asarray(m)


def check_split(task, n_total, strata_test=True):
    n_tr, n_te = task.train_x.shape[0], task.test_x.shape[0]
    assert n_tr + n_te == n_total
    assert task.train_y.shape[0] == n_tr and task.test_y.shape[0] == n_te
    assert len(task.train_cells) == n_tr and len(task.test_cells) == n_te
    assert not set(task.train_cells) & set(task.test_cells)
    assert task.train_x.shape[1] == task.test_x.shape[1] == len(task.x_features)
    assert task.train_y.shape[1] == task.test_y.shape[1] == len(task.y_features)
    if strata_test:
        assert n_te == pytest.approx(0.2 * n_total, abs=1)
        # stratified: every class's test share is ~20%
        tr, te = np.asarray(task.train_labels), np.asarray(task.test_labels)
        for c in np.unique(np.r_[tr, te]):
            n_c = (tr == c).sum() + (te == c).sum()
            assert abs((te == c).sum() - 0.2 * n_c) <= 1, c


@needs_data
@pytest.mark.parametrize("name", ["pancancer_rna_from_atac", "pancancer_atac_from_rna"])
def test_pancancer(name):
    t = _data.load(name)
    check_split(t, 206)
    assert t.train_x.shape[1] == 10_000 and t.train_y.shape[1] == 10_000
    atac = np.r_[dense(t.train_y), dense(t.test_y)] if name.endswith("from_atac") else np.r_[dense(t.train_x), dense(t.test_x)]
    assert set(np.unique(atac)) == {0.0, 1.0}
    rna = np.r_[dense(t.train_x), dense(t.test_x)] if name.endswith("from_atac") else np.r_[dense(t.train_y), dense(t.test_y)]
    assert len(np.unique(rna)) > 2
    assert sorted(set(t.train_labels)) == ["HCT116", "HeLa-S3", "K562"]
    assert t.labels_for_ot is None
    assert t.x_binary == name.endswith("from_rna")
    p = t.paper_params
    if name.endswith("from_atac"):
        assert (p["reg_e"], p["n_neighbors"], p["n_features"]) == (5e3, 40, 150)
    else:
        assert (p["reg_e"], p["n_neighbors"], p["n_features"]) == (1e3, 10, 50)


@needs_data
def test_pancancer_directions_share_split():
    a = _data.load("pancancer_rna_from_atac")
    b = _data.load("pancancer_atac_from_rna")
    assert np.array_equal(a.test_cells, b.test_cells)
    assert np.array_equal(dense(a.test_x), dense(b.test_y))


@needs_data
def test_a549():
    t = _data.load("a549_rna_from_atac")
    check_split(t, 2391)
    assert t.train_x.shape[1] == 1185 and t.train_y.shape[1] == 1183
    assert np.array_equal(t.labels_for_ot, t.train_labels)
    assert set(np.unique(t.train_labels)) == {0, 1, 3}
    # every kept cell has >= A549_MIN_GENES detected genes
    rna = sp.vstack([sp.csr_matrix(t.train_x), sp.csr_matrix(t.test_x)]).tocsr()
    assert np.diff(rna.indptr).min() >= _data.A549_MIN_GENES
    assert t.paper_params["reg_cl"] == 5e-3 and t.paper_params["n_neighbors"] == 500


@needs_data
def test_a549_top_total_rna_reproduces_the_issues_training_mean_baseline():
    from cmot.metrics import cellwise_pearson

    t = _data.load("a549_top_total_rna")
    check_split(t, 2391)
    rna = sp.vstack([sp.csr_matrix(t.train_x), sp.csr_matrix(t.test_x)]).tocsr()
    everyone = _data._read("a549", "rna")[0]
    total = np.asarray(everyone.sum(axis=1)).ravel()
    # the kept cells are those with the most total RNA (the cut falls among ties at 362)
    assert np.asarray(rna.sum(axis=1)).min() == np.sort(total)[::-1][_data.A549_N_CELLS - 1]
    # the issue: "predicting the training cells' mean profile for every test cell (0.542)"
    mean = _data.training_mean(t.train_x, t.test_x.shape[0])
    assert round(float(np.mean(cellwise_pearson(dense(t.test_x), mean))), 3) == 0.542


@needs_data
def test_pbmc10k():
    t = _data.load("pbmc10k_protein_from_rna")
    check_split(t, 6855)
    assert t.train_x.shape[1] == 14 and t.train_y.shape[1] == 4000
    x = dense(t.train_x)
    assert np.all(x >= 0) and np.isfinite(x).all()
    y = dense(t.train_y[:50])
    # log-normalized: expm1 of each row sums to 1e4
    np.testing.assert_allclose(np.expm1(y).sum(axis=1), 1e4, rtol=1e-6)


@needs_data
def test_pbmc10k_to_5k():
    t = _data.load("pbmc10k_to_pbmc5k")
    assert t.train_x.shape == (6855, 14) and t.test_x.shape == (3994, 14)
    assert t.train_y.shape == (6855, 4000) and t.test_y.shape == (3994, 4000)
    assert t.test_labels is None
    assert len(t.x_features) == 14 and "CD3" in " ".join(t.x_features)
    assert np.isfinite(dense(t.test_x)).all()


def test_clr_matches_definition():
    x = np.array([[1.0, 3.0, 0.0], [10.0, 0.0, 5.0]])
    want = np.log1p(x / np.exp(np.log1p(x).mean(axis=1, keepdims=True)))
    np.testing.assert_allclose(_data.clr(x), want)


@needs_data
@pytest.mark.parametrize("name", ["pancancer_rna_from_atac", "a549_rna_from_atac"])
def test_split_reproducible(name):
    a, b = _data.load(name, seed=0), _data.load(name, seed=0)
    assert np.array_equal(a.test_cells, b.test_cells)
    np.testing.assert_array_equal(dense(a.test_x), dense(b.test_x))
    c = _data.load(name, seed=1)
    assert not np.array_equal(a.test_cells, c.test_cells)


@needs_data
def test_baselines_shapes():
    t = _data.load("pancancer_rna_from_atac")
    knn = _data.naive_knn(t.train_x, t.train_y, t.test_y)
    assert knn.shape == t.test_x.shape and np.isfinite(knn).all()
    m = _data.training_mean(t.train_x, t.test_x.shape[0])
    assert m.shape == t.test_x.shape
    np.testing.assert_allclose(m[0], dense(t.train_x).mean(axis=0))


def test_metrics_match_references():
    from scipy.stats import pearsonr
    from sklearn.metrics import roc_auc_score

    from cmot.metrics import cellwise_pearson, featurewise_pearson

    rng = np.random.default_rng(0)
    t = (rng.random((40, 30)) < 0.3).astype(float)
    p = np.round(rng.random((40, 30)) + 0.3 * t, 1)
    t[:, 0] = 0  # one class only -> nan
    auc = _common.peakwise_auroc(p, t)
    assert np.isnan(auc[0])
    np.testing.assert_allclose(auc[1:], [roc_auc_score(t[:, j], p[:, j]) for j in range(1, 30)])
    # binarize_at: min-max per peak, values at the cut count as 1 (kNN means of 0/1 peaks often hit 0.5)
    half = np.tile([0.0, 0.5, 1.0, 0.5], (10, 1)).T.reshape(40, 1)[:, [0] * 30]
    cut = _common.peakwise_auroc(half, t, binarize_at=0.5)
    np.testing.assert_allclose(cut[1:], [roc_auc_score(t[:, j], half[:, j] >= 0.5) for j in range(1, 30)])
    # the benchmarks score Pearson with cmot.metrics, (measured, inferred)
    assert _common.cellwise_pearson is cellwise_pearson
    r = cellwise_pearson(t, p)
    assert r[3] == pytest.approx(pearsonr(p[3], t[3])[0])
    const = np.tile(p.mean(axis=0), (40, 1))  # a constant prediction has no correlation
    assert np.isnan(featurewise_pearson(t, const)).all()
