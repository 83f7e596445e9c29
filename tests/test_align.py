"""Step A: correspondence formats, kNN graphs and manifold alignment."""

import numpy as np
import pytest
import scipy.sparse as sp

from cmot.align import correspondence_matrix, knn_graph, manifold_align, match_aligned


def test_correspondence_formats_agree():
    pairs = np.array([[0, 1], [2, 0], [3, 3]])
    dense = np.zeros((4, 5))
    dense[pairs[:, 0], pairs[:, 1]] = 1
    a = correspondence_matrix(pairs, 4, 5)
    b = correspondence_matrix(dense, 4, 5)
    c = correspondence_matrix(sp.coo_matrix(dense), 4, 5)
    for m in (a, b, c):
        assert sp.issparse(m) and m.shape == (4, 5)
        np.testing.assert_array_equal(m.toarray(), dense)


def test_correspondence_errors():
    with pytest.raises(ValueError, match="pairs no cells"):
        correspondence_matrix(np.zeros((3, 3)), 3, 3)
    with pytest.raises(ValueError, match="out of range"):
        correspondence_matrix([[5, 0]], 3, 3)
    with pytest.raises(ValueError, match="expected shape"):
        correspondence_matrix(sp.eye(4), 3, 3)
    with pytest.raises(ValueError, match="binary"):
        correspondence_matrix(np.full((3, 3), 2.0), 3, 3)
    with pytest.raises(TypeError, match="integers"):
        correspondence_matrix(np.array([[0.5, 1.0]]), 3, 3)


def test_knn_graph_is_sparse_symmetric_without_self_loops():
    rng = np.random.default_rng(0)
    g = knn_graph(rng.normal(size=(200, 8)), 5)
    assert sp.issparse(g) and g.shape == (200, 200)
    assert (g != g.T).nnz == 0
    assert g.diagonal().sum() == 0
    assert np.all(np.asarray(g.sum(axis=1)).ravel() >= 5)
    assert g.nnz <= 200 * 10  # sparse: at most 2K entries per row


def test_alignment_recovers_unknown_pairs():
    # Y is a nonlinear transform of X; half of the pairs are given
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 3 * np.pi, 300))
    x = np.c_[np.cos(t), np.sin(t), t / 3] + 0.01 * rng.normal(size=(300, 3))
    y = np.c_[t, t**2 / 10, np.sin(t)] @ rng.normal(size=(3, 6))
    known = np.arange(0, 300, 2)
    w = correspondence_matrix(np.c_[known, known], 300, 300)
    ex, ey = manifold_align(x, y, w, n_components=3, n_neighbors=5, random_state=0)
    idx = match_aligned(ex, ey, w)
    np.testing.assert_array_equal(idx[known], known)
    unknown = np.arange(1, 300, 2)
    err = np.abs(t[idx[unknown]] - t[unknown])
    assert np.median(err) < 0.2  # matched to a cell at nearly the same position on the curve


def test_alignment_is_deterministic():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(80, 4)), rng.normal(size=(70, 5))
    w = correspondence_matrix(np.c_[np.arange(30), np.arange(30)], 80, 70)
    a = manifold_align(x, y, w, n_components=4, random_state=3)
    b = manifold_align(x, y, w, n_components=4, random_state=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
