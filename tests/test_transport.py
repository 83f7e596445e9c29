"""Step B: the label-regularized OT solver against POT, marginals, stability, outliers."""

import warnings

import numpy as np
import ot
import pytest

from cmot.transport import (
    OTConvergenceError,
    OTConvergenceWarning,
    barycentric_map,
    sinkhorn_lpl1,
    sqeuclidean_cost,
)


def _problem(ns=40, nt=30, n_labels=3, seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(ns, 5))
    xt = rng.normal(size=(nt, 5)) + 0.5
    labels = rng.integers(0, n_labels, ns)
    return xs, xt, labels


@pytest.mark.parametrize("reg_e,reg_cl", [(1.0, 0.1), (0.5, 1.0), (2.0, 5.0), (1.0, 0.0)])
def test_coupling_matches_pot(reg_e, reg_cl):
    xs, xt, labels = _problem()
    cost = sqeuclidean_cost(xs, xt)
    ref = ot.da.sinkhorn_lpl1_mm(
        ot.unif(len(xs)), labels, ot.unif(len(xt)), cost, reg_e, eta=reg_cl,
        numItermax=10, numInnerItermax=5000, stopInnerThr=1e-13,
    )
    ours = sinkhorn_lpl1(cost, labels, reg_e=reg_e, reg_cl=reg_cl, max_inner_iter=5000, tol=1e-12)
    # POT itself stops short of 1e-13 on some of these; agree to 1e-6 of the largest entry
    np.testing.assert_allclose(ours, ref, atol=1e-6 * ref.max(), rtol=1e-4)


def test_matches_pot_estimator_class():
    xs, xt, labels = _problem(seed=3)
    est = ot.da.SinkhornLpl1Transport(reg_e=2.0, reg_cl=0.5, max_inner_iter=5000, tol=1e-13)
    est.fit(Xs=xs, ys=labels, Xt=xt)
    ours = sinkhorn_lpl1(sqeuclidean_cost(xs, xt), labels, reg_e=2.0, reg_cl=0.5, max_inner_iter=5000, tol=1e-12)
    np.testing.assert_allclose(ours, est.coupling_, rtol=1e-5, atol=1e-12)


def test_marginals_are_uniform():
    xs, xt, labels = _problem(ns=70, nt=50)
    pi = sinkhorn_lpl1(sqeuclidean_cost(xs, xt), labels, reg_e=1.0, reg_cl=1.0, tol=1e-10, max_inner_iter=5000)
    np.testing.assert_allclose(pi.sum(axis=1), 1 / 70, rtol=1e-6)
    np.testing.assert_allclose(pi.sum(axis=0), 1 / 50, rtol=1e-6)
    assert np.all(pi >= 0)


def test_custom_marginals():
    xs, xt, labels = _problem(ns=20, nt=10)
    a = np.linspace(1, 2, 20)
    a /= a.sum()
    b = np.linspace(2, 1, 10)
    b /= b.sum()
    pi = sinkhorn_lpl1(sqeuclidean_cost(xs, xt), labels, reg_e=1.0, reg_cl=0.5, a=a, b=b, tol=1e-11, max_inner_iter=5000)
    np.testing.assert_allclose(pi.sum(axis=1), a, rtol=1e-6)
    np.testing.assert_allclose(pi.sum(axis=0), b, rtol=1e-6)


def test_label_regularization_separates_classes():
    # two well separated source classes; target points near each class should
    # receive mass from one class only when the label term is strong
    rng = np.random.default_rng(1)
    xs = np.r_[rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 3]
    labels = np.r_[np.zeros(20), np.ones(20)]
    xt = np.r_[rng.normal(size=(15, 2)), rng.normal(size=(15, 2)) + 3]
    cost = sqeuclidean_cost(xs, xt)
    weak = sinkhorn_lpl1(cost, labels, reg_e=5.0, reg_cl=0.0)
    strong = sinkhorn_lpl1(cost, labels, reg_e=5.0, reg_cl=5.0)

    def mixing(pi):  # mass each target gets from its minority class, summed
        by_class = np.stack([pi[labels == c].sum(axis=0) for c in (0, 1)])
        return by_class.min(axis=0).sum()

    assert mixing(strong) < 0.5 * mixing(weak)


def test_small_reg_does_not_underflow_to_nan():
    # POT's plain kernel underflows here (exp(-cost/reg) == 0) and gives NaN;
    # cmot falls back to the log domain and matches POT's log-domain solver.
    xs, xt, labels = _problem()
    cost = sqeuclidean_cost(xs, xt) * 1e4
    a, b = ot.unif(40), ot.unif(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ot.sinkhorn(a, b, cost, 1.0)
        ref = ot.sinkhorn(a, b, cost, 1.0, method="sinkhorn_log", numItermax=3000, stopThr=1e-12)
    assert not np.all(np.isfinite(plain)) or not np.allclose(plain.sum(), 1)
    # so far below the cost scale that 3000 iterations do not converge: reported, not silent
    with pytest.warns(OTConvergenceWarning):
        pi, log = sinkhorn_lpl1(cost, labels, reg_e=1.0, reg_cl=0.0, max_inner_iter=3000, tol=1e-12, return_log=True)
    assert log["log_domain"]
    assert np.all(np.isfinite(pi))
    np.testing.assert_allclose(pi.sum(axis=1), 1 / 40, rtol=1e-6)
    np.testing.assert_allclose(pi, ref, atol=1e-9)


def test_log_domain_matches_scaling_with_label_term():
    from cmot.transport import _sinkhorn_log, _sinkhorn_scaling

    xs, xt, labels = _problem(seed=5)
    cost = sqeuclidean_cost(xs, xt)
    kw = dict(reg_e=1.0, reg_cl=2.0, reg_m=None, max_iter=10, max_inner_iter=3000, tol=1e-12)
    a, b = ot.unif(40), ot.unif(30)
    p1, _ = _sinkhorn_scaling(cost, labels, a, b, dtype=np.float64, **kw)
    p2, _ = _sinkhorn_log(cost, labels, a, b, **kw)
    np.testing.assert_allclose(p1, p2, rtol=1e-6, atol=1e-12)


def test_nan_cost_is_reported_not_returned():
    xs, xt, labels = _problem()
    cost = sqeuclidean_cost(xs, xt)
    cost[0, 0] = np.nan
    with pytest.raises(OTConvergenceError, match="cost"):
        sinkhorn_lpl1(cost, labels, reg_e=1.0, reg_cl=0.1)


def test_non_convergence_warns():
    xs, xt, labels = _problem()
    with pytest.warns(OTConvergenceWarning, match="did not converge"):
        sinkhorn_lpl1(sqeuclidean_cost(xs, xt) * 100, labels, reg_e=0.05, reg_cl=0.0, max_inner_iter=3)


def test_semi_relaxed_keeps_target_marginal_and_moves_source_mass():
    rng = np.random.default_rng(2)
    # source: two groups 50/50; target: only the first group
    xs = np.r_[rng.normal(size=(30, 2)), rng.normal(size=(30, 2)) + 6]
    xt = rng.normal(size=(30, 2))
    labels = np.r_[np.zeros(30), np.ones(30)]
    cost = sqeuclidean_cost(xs, xt)
    balanced = sinkhorn_lpl1(cost, labels, reg_e=1.0, reg_cl=0.0)
    relaxed = sinkhorn_lpl1(cost, labels, reg_e=1.0, reg_cl=0.0, reg_m=1.0)
    np.testing.assert_allclose(relaxed.sum(axis=0), 1 / 30, rtol=1e-5)
    assert balanced[30:].sum() == pytest.approx(0.5, rel=1e-6)
    assert relaxed[30:].sum() < 0.1  # most of the unmatched group's mass is dropped


def test_labels_length_checked():
    xs, xt, _ = _problem()
    with pytest.raises(ValueError, match="labels"):
        sinkhorn_lpl1(sqeuclidean_cost(xs, xt), [0, 1], reg_e=1.0, reg_cl=0.1)


def test_sqeuclidean_cost_sparse_equals_dense():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    a = rng.poisson(0.3, size=(15, 40)).astype(float)
    b = rng.poisson(0.3, size=(10, 40)).astype(float)
    dense = sqeuclidean_cost(a, b)
    np.testing.assert_allclose(sqeuclidean_cost(sp.csr_matrix(a), sp.csr_matrix(b)), dense, atol=1e-10)
    np.testing.assert_allclose(dense, ((a[:, None] - b[None]) ** 2).sum(-1), atol=1e-10)


def test_barycentric_map_is_row_normalized_average():
    pi = np.array([[0.1, 0.3], [0.2, 0.0]])
    tgt = np.array([[1.0, 0.0], [5.0, 2.0]])
    np.testing.assert_allclose(barycentric_map(pi, tgt), [[4.0, 1.5], [1.0, 0.0]])


def test_solve_transport_returns_the_coupling_in_source_order():
    # the solver sorts source cells by label internally; what comes back is in the order
    # given, the same coupling as solving on the unsorted problem directly
    from cmot.transport import solve_transport, transport_shift

    xs, xt, labels = _problem(ns=50, nt=30, n_labels=4, seed=5)
    assert not np.all(np.diff(labels) >= 0)  # labels not sorted
    res = solve_transport(xs, xt, labels, reg_e=1.0, reg_cl=0.5, reg_m=None, keep_cost=True)
    direct = sinkhorn_lpl1(sqeuclidean_cost(xs, xt), labels, reg_e=1.0, reg_cl=0.5, max_iter=10, max_inner_iter=1000)
    np.testing.assert_allclose(res.coupling, direct, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(res.cost, ((xs[:, None] - xt[None]) ** 2).sum(-1), atol=1e-10)
    np.testing.assert_allclose(res.shift, transport_shift(direct, xs, xt), atol=1e-12)
    assert res.reg_e == 1.0 and res.n_iter > 0 and res.marginal_error < 1e-6


def test_unsort_rows_moves_rows_in_place():
    from cmot.transport import _unsort_rows

    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 3))
    order = rng.permutation(200)
    expected = np.empty_like(a)
    expected[order] = a
    out = _unsort_rows(a, order)
    assert out is a
    np.testing.assert_array_equal(out, expected)
