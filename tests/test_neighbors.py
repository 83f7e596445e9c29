"""The neighbour search every step uses (cmot.infer.nearest_neighbors): the k-d tree and
the brute force give the same neighbours, checked against a sort of all distances."""

import numpy as np
import pytest

from cmot import infer
from cmot.infer import nearest_neighbors


def _by_sorting(query, reference, k):
    """The k nearest by sorting every distance (computed directly), ties by index."""
    d = np.sqrt(((query[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2))
    order = np.lexsort((np.broadcast_to(np.arange(reference.shape[0]), d.shape), d), axis=1)[:, :k]
    return order, np.take_along_axis(d, order, axis=1)


@pytest.mark.parametrize("dims", [1, 3, 12, 32, 40])
@pytest.mark.parametrize("k", [1, 7, 60])
def test_neighbors_equal_a_full_sort(dims, k):
    rng = np.random.default_rng(dims * 100 + k)
    ref = rng.normal(size=(60, dims))
    query = rng.normal(size=(25, dims))
    idx, dist = nearest_neighbors(query, ref, k)
    want_idx, want_dist = _by_sorting(query, ref, k)
    assert idx.shape == dist.shape == (25, min(k, 60))
    np.testing.assert_allclose(dist, want_dist, rtol=1e-9)
    assert np.array_equal(idx, want_idx)


@pytest.mark.parametrize("dims", [3, 40])  # tree, brute force
def test_an_exact_duplicate_comes_after_the_lower_index(dims):
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(60, dims))
    ref[10] = ref[3]
    idx, dist = nearest_neighbors(ref[[3, 10]] + 1e-3, ref, 4)
    assert idx[:, :2].tolist() == [[3, 10], [3, 10]]
    assert dist[0, 0] == dist[0, 1]


def test_tree_and_brute_force_agree_and_a_split_query_gives_the_same_rows(monkeypatch):
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=4, size=(5, 20))
    ref = centres[rng.integers(0, 5, 3000)] + rng.normal(size=(3000, 20))
    query = centres[rng.integers(0, 5, 700)] + rng.normal(size=(700, 20))
    tree = nearest_neighbors(query, ref, 30)
    parts = [nearest_neighbors(query[a:a + 100], ref, 30) for a in range(0, 700, 100)]
    assert np.array_equal(tree[0], np.concatenate([p[0] for p in parts]))
    monkeypatch.setattr(infer, "KD_TREE_MAX_DIMS", 0)  # brute force
    brute = nearest_neighbors(query, ref, 30)
    assert np.array_equal(tree[0], brute[0])
    np.testing.assert_allclose(tree[1], brute[1], rtol=1e-10)


def test_search_workers_follow_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert infer.search_workers() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "")
    assert infer.search_workers() >= 1
