"""The sparse-support transport (cmot.sparse_transport) that large problems use:
the solver against the dense one, the sketched offset and predictions against the
dense path on a problem small enough for both, and no dense source x target array."""

import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import cmot
import cmot.sparse_transport as st
from cmot.composition import robust_shift, robust_transport
from cmot.datasets import make_multimodal
from cmot.metrics import cellwise_pearson
from cmot.transport import sinkhorn_lpl1, sqeuclidean_cost


@pytest.mark.parametrize("reg_m", [None, 2.0])
@pytest.mark.parametrize("reg_cl", [0.0, 0.5])
def test_full_support_equals_dense_solver(reg_m, reg_cl):
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(60, 3)), rng.normal(size=(40, 3))
    labels = np.repeat([2, 0, 1], 20)
    cost = sqeuclidean_cost(xs, xt)
    dense = sinkhorn_lpl1(cost, labels, reg_e=2.0, reg_cl=reg_cl, reg_m=reg_m, max_inner_iter=1000)
    sparse = st.sinkhorn_lpl1_sparse(sp.csr_matrix(cost), labels, reg_e=2.0, reg_cl=reg_cl, reg_m=reg_m)
    assert sp.issparse(sparse)
    np.testing.assert_allclose(sparse.toarray(), dense, atol=1e-12, rtol=1e-8)


def test_support_marginals_and_no_mass_outside():
    rng = np.random.default_rng(1)
    src, tgt = rng.normal(size=(300, 4)), rng.normal(size=(120, 4))
    cost = st.support_cost(src, tgt, 10)
    assert cost.nnz == 120 * 10
    # each target's support is its 10 nearest source cells, with their squared distances
    d2 = sqeuclidean_cost(src, tgt)
    nearest = np.sort(np.argsort(d2, axis=0)[:10], axis=0)
    np.testing.assert_array_equal(np.sort(cost.tocsc().indices.reshape(120, 10), axis=1), nearest.T)
    np.testing.assert_allclose(cost.toarray()[cost.toarray() > 0], d2[cost.toarray() > 0], rtol=1e-9)
    # semi-relaxed (as the robust correction runs it): the target marginal is exact
    pi = st.sinkhorn_lpl1_sparse(cost, np.zeros(300, int), reg_e=1.0, reg_cl=0.0, reg_m=1.0)
    np.testing.assert_allclose(np.asarray(pi.sum(axis=0)).ravel(), np.full(120, 1 / 120), rtol=1e-6)
    outside = np.diff(cost.indptr) == 0  # source cells in no target's support send nothing
    assert outside.any() and np.all(np.asarray(pi.sum(axis=1)).ravel()[outside] == 0)
    assert set(zip(*pi.nonzero())) <= set(zip(*cost.nonzero()))


def test_support_searched_at_the_offset():
    """A shared offset moves the search, not the costs (|s - t|^2 of the cells as given)."""
    rng = np.random.default_rng(2)
    src = rng.normal(size=(200, 3))
    tgt = src[:50] + [30.0, 0, 0]
    cost = st.support_cost(src, tgt, 1, offset=[30.0, 0, 0])
    assert cost.tocsc().indices.tolist() == list(range(50))
    np.testing.assert_allclose(cost.tocsc().data, 900.0, rtol=1e-9)


def test_auto_reg_e_matches_the_dense_rule():
    from cmot.composition import _auto_reg_e

    rng = np.random.default_rng(3)
    src, tgt = rng.normal(size=(500, 5)), rng.normal(size=(300, 5))
    assert st.auto_reg_e_sparse(src, tgt) == pytest.approx(_auto_reg_e(sqeuclidean_cost(src, tgt), tgt), rel=1e-9)


@pytest.fixture
def force_sparse(monkeypatch):
    """Every robust transport on the sparse support, with a sketch smaller than the data."""
    monkeypatch.setattr(st, "SPARSE_ABOVE", 0)
    monkeypatch.setattr(st, "SKETCH_SOURCE", 600)
    monkeypatch.setattr(st, "SKETCH_TARGET", 250)


@pytest.mark.parametrize("target_shift", [0.0, 1.0])
def test_sparse_and_dense_paths_agree(force_sparse, monkeypatch, target_shift):
    d = make_multimodal(1500, 800, n_x_features=20, n_y_features=60, target_shift=target_shift, random_state=0)
    dense_model = cmot.CMOT(random_state=0, outlier_threshold=np.inf).fit(d.source_x, d.source_y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sparse_pred = dense_model.predict(d.target_y)
        sparse_result = dense_model._transport(d.target_y)[0]
        monkeypatch.setattr(st, "SPARSE_ABOVE", 10**12)
        dense_pred = dense_model.predict(d.target_y)
    assert sparse_result.support == "sparse" and sp.issparse(sparse_result.coupling)
    r_dense = cellwise_pearson(d.target_x, dense_pred).mean()
    r_sparse = cellwise_pearson(d.target_x, sparse_pred).mean()
    assert abs(r_sparse - r_dense) < 0.005
    assert np.median(cellwise_pearson(dense_pred, sparse_pred)) > 0.999
    # a one-type query keeps its accuracy too (composition robustness on the sparse path)
    one = d.target_labels == 0
    monkeypatch.setattr(st, "SPARSE_ABOVE", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        alone = dense_model.predict(d.target_y[one])
    assert cellwise_pearson(d.target_x[one], alone).mean() > cellwise_pearson(d.target_x[one], dense_pred[one]).mean() - 0.01


def test_single_cell_gets_no_shift_on_the_sparse_path(force_sparse):
    rng = np.random.default_rng(4)
    src = rng.normal(size=(400, 3))
    res = robust_shift(src, src[:1] + 5.0)
    assert res.support == "sparse" and res.factor == 0.0 and np.all(res.shift == 0)


def test_no_dense_source_by_target_array(force_sparse, monkeypatch):
    """The sparse path never allocates anything near n_source x n_target floats (the
    neighbour searches hold blocks of at most NEIGHBOR_BLOCK distances, made small here)."""
    import cmot.infer

    monkeypatch.setattr(cmot.infer, "NEIGHBOR_BLOCK", 2**20)
    rng = np.random.default_rng(5)
    ns, nt = 20_000, 4_000
    src = rng.normal(size=(ns, 10))
    tgt = rng.normal(size=(nt, 10)) + 0.5
    labels = rng.integers(0, 3, ns)
    tracemalloc.start()
    res = robust_transport(src, tgt, labels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert res.support == "sparse" and sp.issparse(res.coupling)
    assert peak < 0.1 * ns * nt * 8, f"peak {peak / 1e6:.0f} MB against {ns * nt * 8 / 1e6:.0f} MB dense"
