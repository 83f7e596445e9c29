"""The Step B/C space of a large reference: scaling from every cell, PCA fitted on a
seeded subset, every cell projected in chunks (no dense cells x features array of the
whole reference)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import cmot.representation as rp
from cmot.infer import variable_features


def _data(n=1000, p=50, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.poisson(rng.gamma(1.0, 1.0, size=p), size=(n, p)).astype(float)
    y[:, 3] = 2.0  # a constant column: its deviation is taken as 1
    return np.log1p(y)


@pytest.mark.parametrize("sparse", [False, True])
def test_large_reference_pca_is_fitted_on_a_seeded_subset_and_every_cell_projected(monkeypatch, sparse):
    from sklearn.decomposition import PCA

    monkeypatch.setattr(rp, "PCA_MAX_CELLS", 300)
    monkeypatch.setattr(rp, "ROW_CHUNK", 64)
    y = _data()
    rep = rp.Representation(n_features=30, scale=True, n_components=10, random_state=0)
    out = rep.fit_transform(sp.csr_matrix(y) if sparse else y)
    # written out: features and scaling from all 1,000 cells, the PCA from the seeded 300
    feats = variable_features(y, 30)
    sel = y[:, feats]
    mean, sd = sel.mean(axis=0), sel.std(axis=0)
    sd[sd == 0] = 1.0
    np.testing.assert_array_equal(rep.features_, feats)
    np.testing.assert_allclose(rep.scale_mean_, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rep.scale_sd_, sd, rtol=1e-12)
    z = np.clip((sel - mean) / sd, -rp.SCALE_CLIP, rp.SCALE_CLIP)
    rows = np.sort(np.random.default_rng(0).choice(1000, 300, replace=False))
    pca = PCA(10, svd_solver="full", random_state=0).fit(z[rows])
    assert out.shape == (1000, 10)
    np.testing.assert_allclose(np.abs(rep.pca_.components_), np.abs(pca.components_), atol=1e-8)
    np.testing.assert_allclose(out, rep.pca_.transform(z), atol=1e-10)
    np.testing.assert_allclose(rep.transform(y[:7]), out[:7], atol=1e-10)


def test_reference_up_to_the_cap_is_fitted_on_every_cell(monkeypatch):
    monkeypatch.setattr(rp, "PCA_MAX_CELLS", 1000)
    y = _data()
    out = rp.Representation(n_features=30, n_components=10, random_state=0).fit_transform(y)
    monkeypatch.setattr(rp, "PCA_MAX_CELLS", 300)
    sub = rp.Representation(n_features=30, n_components=10, random_state=0).fit_transform(y)
    assert out.shape == sub.shape
    # a PCA of 300 cells is close to, but not, the PCA of all 1,000: the cap is what changes it
    assert not np.allclose(np.abs(out), np.abs(sub))


def test_cmot_fits_and_predicts_a_reference_above_the_cap(monkeypatch):
    from cmot import CMOT
    from cmot.datasets import make_multimodal

    d = make_multimodal(600, 200, random_state=0)

    def mean_r():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pred = np.asarray(CMOT(random_state=0).fit(d.source_x, d.source_y).predict(d.target_y))
        assert pred.shape == d.target_x.shape
        return np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(pred, np.asarray(d.target_x))])

    whole = mean_r()
    monkeypatch.setattr(rp, "PCA_MAX_CELLS", 400)  # the PCA from 400 of the 600 reference cells
    assert abs(mean_r() - whole) < 0.005 and whole > 0.9


@pytest.mark.parametrize("kind", ["array", "sparse", "float32"])
def test_standardizing_in_place_never_writes_into_the_callers_data(kind):
    y = _data(300, 40)
    y = sp.csr_matrix(y) if kind == "sparse" else y.astype(np.float32) if kind == "float32" else y
    keep = y.copy()
    rep = rp.Representation(n_features=40, n_components=5, scale=True, random_state=0, verbose=False)
    emb = rep.fit_transform(y)
    again = rep.transform(y)
    sel = rep.selected(y)
    same = (y != keep).nnz == 0 if kind == "sparse" else np.array_equal(y, keep)
    assert same
    dense = keep.toarray() if kind == "sparse" else np.asarray(keep, dtype=np.float64)
    cols = dense[:, rep.features_]
    sd = cols.std(axis=0)
    sd[sd == 0] = 1.0
    expected = np.clip((cols - cols.mean(axis=0)) / sd, -rp.SCALE_CLIP, rp.SCALE_CLIP)
    np.testing.assert_allclose(sel, expected, rtol=1e-5 if kind == "float32" else 1e-12, atol=1e-6)
    np.testing.assert_allclose(emb, again, rtol=1e-6, atol=1e-6)
