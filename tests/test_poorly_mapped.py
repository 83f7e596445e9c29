"""Poorly mapped target cells: both detectors (cmot.poorly_mapped)."""

import warnings

import numpy as np
import pytest

from cmot import CMOT, PoorlyMappedWarning
from cmot.datasets import make_multimodal
from cmot.poorly_mapped import (
    detect_poorly_mapped,
    distance_scores,
    poorly_mapped_by_isolation_forest,
    reference_null,
)
from cmot.transport import sinkhorn_lpl1, sqeuclidean_cost


def test_distance_scores_are_robust_z_scores_and_shares_of_the_reference_null():
    # independent computation: log distance to the 10th nearest source cell, against the
    # median and 1.4826 MAD of the same distance among source cells (self excluded); the
    # mapping score is min(1, 2 p), p the share of source cells at least as isolated
    rng = np.random.default_rng(3)
    src = rng.normal(size=(80, 4))
    tgt = rng.normal(size=(30, 4)) * 1.5
    ref = np.log(np.sort(np.sqrt(((src[:, None] - src[None]) ** 2).sum(-1)), axis=1)[:, 10])  # col 0: itself
    med = np.median(ref)
    spread = 1.4826 * np.median(np.abs(ref - med))
    d10 = np.log(np.sort(np.sqrt(((tgt[:, None] - src[None]) ** 2).sum(-1)), axis=1)[:, 9])
    null = reference_null(src, random_state=0)
    np.testing.assert_allclose(null, np.sort(ref), rtol=1e-12)
    z, score = distance_scores(tgt, src, null)
    np.testing.assert_allclose(z, (d10 - med) / spread, rtol=1e-10, atol=1e-12)
    share = (ref[None, :] >= d10[:, None]).mean(axis=1)
    np.testing.assert_allclose(score, np.minimum(1.0, 2.0 * share), rtol=1e-12)


def test_isolation_forest_detector_is_reproducible_and_ignores_label_grouping_of_columns():
    rng = np.random.default_rng(0)
    xs, xt = rng.normal(size=(60, 5)), rng.normal(size=(50, 5)) + 0.5
    labels = rng.integers(0, 3, 60)
    cost = sqeuclidean_cost(xs, xt)
    pi = sinkhorn_lpl1(cost, labels, reg_e=1.0, reg_cl=0.1)
    f1, s1 = poorly_mapped_by_isolation_forest(pi, cost, random_state=0)
    f2, s2 = poorly_mapped_by_isolation_forest(pi, cost, random_state=0)
    assert f1.shape == (50,) and f1.dtype == bool
    np.testing.assert_array_equal(s1, s2)
    # grouping the source cells by label permutes the columns of coupling x cost only:
    # the exact PCA sees the same target cells
    _, s3 = poorly_mapped_by_isolation_forest(pi, cost, labels=labels, random_state=0)
    np.testing.assert_allclose(s3, s1, atol=1e-8)


def test_isolation_forest_detector_flags_a_held_out_cell_type():
    # the paper's detector: one simulated cell type is held out of the reference and
    # makes up a small part of the query (an outlier detector fitted on the query needs
    # that); every cell of it is flagged and scores above 95% of the seen cells.  It also
    # flags a share of seen cells (31% here: its robust z-scores are cut at a fixed 3.5
    # while the MAD of its raw scores is small), which the distance detector does not.
    d = make_multimodal(400, 200, random_state=0)
    held_out = 2
    keep = d.source_labels != held_out
    seen = np.flatnonzero(d.target_labels != held_out)
    unseen = np.flatnonzero(d.target_labels == held_out)[:12]
    query = np.r_[seen, unseen]
    is_new = np.r_[np.zeros(len(seen), bool), np.ones(len(unseen), bool)]
    model = CMOT(outlier_method="isolation_forest", n_neighbors=10, random_state=0)
    with pytest.warns(PoorlyMappedWarning):
        model.fit(d.source_x[keep], d.source_y[keep]).predict(d.target_y[query])
    assert model.outliers_[is_new].all()
    assert model.outliers_[~is_new].mean() < 0.4
    assert np.median(model.outlier_scores_[is_new]) > np.percentile(model.outlier_scores_[~is_new], 95)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        distance = CMOT(n_neighbors=10, random_state=0).fit(d.source_x[keep], d.source_y[keep])
        distance.predict(d.target_y[query])
    assert distance.outliers_[is_new].all() and distance.outliers_[~is_new].mean() < 0.02


def test_detect_poorly_mapped_runs_the_named_detector():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(200, 6))
    tgt = np.r_[rng.normal(size=(60, 6)), rng.normal(size=(15, 6)) + 6]
    res = detect_poorly_mapped("distance", source=src, target=tgt, random_state=0)
    assert res.flags[:60].sum() == 0 and res.flags[60:].all()
    assert 2 <= res.n_components <= 6
    with pytest.raises(ValueError, match="outlier_method: expected"):
        detect_poorly_mapped("magic", source=src, target=tgt)


def test_estimator_reports_the_detector_result(recwarn):
    d = make_multimodal(200, 80, new_type_fraction=0.3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        model = CMOT(n_neighbors=10, random_state=0).fit(d.source_x, d.source_y)
        model.predict(d.target_y)
    rep = model.representation_
    direct = detect_poorly_mapped("distance", source=rep.selected(d.source_y), target=rep.selected(d.target_y),
                                  random_state=0)
    np.testing.assert_array_equal(model.outliers_, direct.flags)
    np.testing.assert_allclose(model.outlier_scores_, direct.scores)
    assert model.outlier_n_components_ == direct.n_components


def test_offsets_are_capped_at_twice_the_median_length():
    from cmot.poorly_mapped import _cap_offsets

    off = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [10.0, 0.0], [0.0, 0.0]])
    capped = _cap_offsets(off)
    # median length 1: rows up to length 2 are kept, the long one is shortened to 2 in its direction
    np.testing.assert_allclose(capped[[0, 1, 2, 4]], off[[0, 1, 2, 4]])
    np.testing.assert_allclose(capped[3], [2.0, 0.0])


def test_unseen_population_within_the_threshold_keeps_its_distance_and_is_flagged_as_a_group():
    # a new, tight population 3 sd from a known type: its raw distances lie within the
    # threshold, so it counts as matched; its own displacement must not be removed as a
    # local offset, so that its scores still rank it above the known cells, and it is
    # flagged as a group (cmot 0.5 flagged none of it); a known cell is flagged only
    # where it lies inside the new population (most of its nearest target cells are new)
    from sklearn.metrics import roc_auc_score

    from cmot.infer import nearest_neighbors
    from cmot.poorly_mapped import map_quality

    rng = np.random.default_rng(0)
    src = np.r_[rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + [6, 0, 0]]
    tgt = np.r_[rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + [6, 0, 0],
                rng.normal(size=(40, 3)) * 0.5 + [0, 3.0, 0]]
    new = np.r_[np.zeros(120, bool), np.ones(40, bool)]
    res = map_quality(src, tgt, random_state=0)
    assert roc_auc_score(new, res.z) >= 0.95
    assert res.flags[new].mean() >= 0.8 and not res.query_unlike
    inside = new[nearest_neighbors(tgt, tgt, 10)[0]].mean(axis=1) > 0.5
    assert not res.flags[~new & ~inside].any()
    assert res.flags[~new].mean() <= 0.01
    assert np.median(res.score[new]) < np.median(res.score[~new])


def _types(seed, scale, n_src, n_tgt, held, noise_t=1.0, offset=0.0, d=5):
    """Reference of 3 Gaussian types; query of the same types (noise scaled by
    ``noise_t``, shifted by ``offset`` sd along a random direction), a share ``held``
    of it of a 4th type the reference lacks."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=scale, size=(4, d))
    st = rng.integers(0, 3, n_src)
    tt = rng.integers(0, 3, n_tgt)
    tt[: int(held * n_tgt)] = 3
    src = centres[st] + rng.normal(size=(n_src, d))
    tgt = centres[tt] + noise_t * rng.normal(size=(n_tgt, d)) + offset * rng.normal(size=d)
    return src, tgt, tt == 3


def _bh_tail(z, null, med, spread, thr):
    """Benjamini-Hochberg at 0.1 on conformal p-values, among cells beyond ``thr`` (written out)."""
    pval = (1 + (null[None, :] >= (z * spread + med)[:, None]).sum(1)) / (1 + null.size)
    order = np.sort(pval)
    k = np.flatnonzero(order <= 0.1 * np.arange(1, order.size + 1) / order.size)
    selected = pval <= order[k[-1]] if k.size else np.zeros(order.size, bool)
    return selected & (z > thr)


def test_flags_beyond_the_threshold_or_beyond_the_reference_as_a_group():
    from scipy.spatial.distance import cdist

    from cmot.poorly_mapped import map_quality

    src, tgt, _ = _types(2, 3.0, 120, 100, 0.3)
    null = reference_null(src, random_state=0)
    med = np.median(null)
    spread = 1.4826 * np.median(np.abs(null - med))
    res = map_quality(src, tgt, random_state=0)
    assert res.threshold == pytest.approx(min(3.5, (np.quantile(null, 0.99) - med) / spread))
    assert res.flags[res.z > 3.5].all()
    # below 3.5: the cell and the median z of its 10 nearest target cells (itself included) both
    # beyond the largest such median among reference cells (each left out of its own
    # distances; every reference cell is in the null below 2,000), written out here
    d_ref = cdist(src, src)
    np.fill_diagonal(d_ref, np.inf)
    z_ref = (np.log(np.sort(d_ref, axis=1)[:, 9]) - med) / spread
    np.fill_diagonal(d_ref, 0.0)
    cut = np.median(z_ref[np.argsort(d_ref, axis=1, kind="stable")[:, :10]], axis=1).max()
    moved = tgt - res.offset
    group = np.median(res.z[np.argsort(cdist(moved, moved), axis=1, kind="stable")[:, :10]], axis=1)
    within = res.z <= 3.5
    np.testing.assert_array_equal(res.flags[within], ((group > cut) & (res.z > cut))[within])
    assert res.flags[within].sum() >= 10  # the group rule, not the z threshold, flags most of the unseen type
    # a heavy-tailed null (a few isolated reference cells) keeps the fixed z threshold
    far = np.r_[src, np.random.default_rng(0).normal(size=(5, 5)) * 30]
    assert map_quality(far, tgt, random_state=0).threshold == 3.5


def test_a_handful_of_cells_is_flagged_beyond_the_tail_as_benjamini_hochberg_selects():
    # at most 10 target cells form no group: beyond 3.5 flagged; below the null's 99th
    # percentile not; between, as Benjamini-Hochberg selects them among the cells within 3.5
    from cmot.poorly_mapped import map_quality

    src, tgt, new = _types(2, 3.0, 120, 100, 0.3)
    few = np.r_[tgt[new][:3], tgt[~new][:7]]
    null = reference_null(src, random_state=0)
    med = np.median(null)
    spread = 1.4826 * np.median(np.abs(null - med))
    res = map_quality(src, few, random_state=0)
    assert res.flags[res.z > 3.5].all() and not res.flags[res.z <= res.threshold].any()
    within = res.z <= 3.5
    np.testing.assert_array_equal(res.flags[within], _bh_tail(res.z[within], null, med, spread, res.threshold))
    assert res.flags[:3].any() and not res.query_unlike  # some unseen cells are selected


def test_small_reference_held_out_type_is_flagged_with_recall_and_few_false_flags():
    # 120 reference cells: the null's log distances have a short tail, so a type the
    # reference lacks (30% of the query) lies beyond the reference's tail but within
    # 3.5 robust sd; cmot 0.4.0's fixed threshold caught 23% of it
    from cmot.poorly_mapped import map_quality

    src, tgt, new = _types(2, 3.0, 120, 100, 0.3)
    res = map_quality(src, tgt, random_state=0)
    assert res.flags[new].mean() >= 0.8
    assert res.flags[~new].mean() <= 0.03
    assert not res.query_unlike
    assert np.median(res.score[new]) < 0.05 < 0.9 < np.median(res.score[~new])


def test_noisier_shifted_query_is_not_flagged_and_reads_well_mapped():
    # another donor or run: the same types, shifted and with 30% more noise; its cells
    # lie a little farther from the reference than reference cells lie from each other.
    # The shared excess is taken off: few flags, mapping scores high (cmot 0.4.0: median
    # 0.82), while the unseen type in the same query is still flagged
    from cmot.poorly_mapped import map_quality

    src, tgt, new = _types(0, 4.0, 600, 300, 0.1, noise_t=1.3, offset=0.5)
    res = map_quality(src, tgt, random_state=0)
    assert res.excess > 0.1 and not res.query_unlike
    assert res.flags[~new].mean() <= 0.03
    assert np.median(res.score[~new]) >= 0.95
    assert res.flags[new].mean() >= 0.8
    # the excess is measured on the query's best-matching quarter: an unseen type
    # making up 40% of the query does not raise it
    _, tgt40, new40 = _types(0, 4.0, 600, 300, 0.4)
    res40 = map_quality(src, tgt40, random_state=0)
    assert res40.excess < 0.3 and res40.flags[new40].mean() >= 0.95


def test_shared_excess_is_the_median_lower_percentile_difference():
    from cmot.poorly_mapped import shared_excess

    rng = np.random.default_rng(1)
    null = rng.normal(size=500)
    z = rng.normal(size=200) * 1.2 + 0.7
    q = [5, 10, 15, 20, 25]
    expected = np.median(np.percentile(z, q) - np.percentile(null, q))
    assert shared_excess(z, null) == pytest.approx(max(0.0, expected))
    assert shared_excess(null - 2.0, null) == 0.0  # a query closer than the reference is not pulled out
    # a small query has none: a single cell's "excess" would be its whole distance
    assert shared_excess(z[:19], null) == 0.0 and shared_excess(z[:20], null) > 0


def test_single_cell_query_keeps_its_distance():
    from cmot.poorly_mapped import map_quality

    src, tgt, _ = _types(0, 4.0, 600, 300, 0.0)
    res = map_quality(src, tgt, random_state=0)
    for i in np.argsort(res.z)[[150, 290, 299]]:  # a typical, a tail and the farthest cell, each alone
        one = map_quality(src, tgt[i : i + 1], random_state=0)
        assert one.excess == 0.0
        assert one.score[0] == pytest.approx(distance_scores(tgt[i : i + 1] - one.offset, src,
                                                             reference_null(src, random_state=0))[1][0])
    assert map_quality(src, tgt[np.argsort(res.z)[150:151]], random_state=0).score[0] > 0.5


def test_query_with_misordered_features_is_outside_the_reference_signal():
    # misordered features can land near the reference in a PCA the query shapes
    # (pancancer ATAC from RNA); in the reference's own components they explain
    # little of the cells' variance, unlike held-out reference cells
    from cmot.poorly_mapped import outside_reference_signal

    d = make_multimodal(400, 150, random_state=0)
    src, tgt = d.source_y - d.source_y.mean(0), d.target_y - d.source_y.mean(0)
    scale = d.source_y.std(0)
    src, tgt = src / scale, tgt / scale
    outside, share, null_share = outside_reference_signal(src, tgt, random_state=0)
    assert not outside and share > null_share
    # one type alone is not outside: composition does not count
    one = d.target_labels == 0
    assert not outside_reference_signal(src, tgt[one], random_state=0)[0]
    perm = np.random.default_rng(0).permutation(tgt.shape[1])
    assert outside_reference_signal(src, tgt[:, perm], random_state=0)[0]
    res = detect_poorly_mapped("distance", source=src, target=tgt[:, perm], random_state=0)
    assert res.query_unlike and res.flags.all()


def test_tail_selection_flags_a_group_beyond_the_tail_not_chance_tail_cells():
    from cmot.poorly_mapped import tail_selection

    null = np.arange(1000.0)
    # 1% of 500 known cells just beyond the null's 99th percentile, as chance gives: none selected
    known = np.r_[np.linspace(0, 989, 495), np.full(5, 991.0)]
    assert not tail_selection(known, null).any()
    # 40 cells beyond every reference cell among them: those, and only those, selected
    sel = tail_selection(np.r_[known, np.full(40, 2000.0)], null)
    assert sel[500:].all() and not sel[:500].any()
    # Benjamini-Hochberg at 10%: cells farther in the tail (p 0.006) join a large group
    sel = tail_selection(np.r_[known[:495], np.full(5, 995.0), np.full(40, 2000.0)], null)
    assert sel[495:].all()


def test_the_offset_rounds_stop_when_the_matched_cells_repeat(monkeypatch):
    """A round whose matched cells equal the previous round's would compute the same offset:
    the rounds stop there, and more rounds change nothing."""
    import cmot.poorly_mapped as pm

    rng = np.random.default_rng(0)
    src = np.r_[rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + [6, 0, 0]]
    tgt = np.r_[rng.normal(size=(60, 3)), rng.normal(size=(20, 3)) + [0, 9, 0]] + [0, 0, 1.0]
    calls = []
    shift = pm.robust_shift
    monkeypatch.setattr(pm, "robust_shift", lambda *a, **k: calls.append(1) or shift(*a, **k))
    few = pm.map_quality(src, tgt, n_rounds=4, random_state=0)
    rounds = len(calls)
    many = pm.map_quality(src, tgt, n_rounds=40, random_state=0)
    assert rounds < 4 and len(calls) == 2 * rounds
    np.testing.assert_array_equal(few.offset, many.offset)
    np.testing.assert_array_equal(few.flags, many.flags)


def test_group_neighbours_beyond_the_cells_reference_radius_do_not_make_it_a_member():
    # a small query: a known cell as isolated as an unseen group (own z above the cut)
    # has the group's cells among its 10 nearest query cells; they lie farther from it
    # than its 10th nearest reference cell, so they are not its group
    from cmot.infer import nearest_neighbors
    from cmot.poorly_mapped import group_selection

    rng = np.random.default_rng(1)
    ref = rng.normal(size=(300, 2))
    null_z = rng.normal(size=300)
    tgt = np.r_[rng.normal(size=(5, 2)), rng.normal(size=(12, 2)) + 8]
    z = np.r_[2.5, np.zeros(4), np.full(12, 2.5)]
    radius = nearest_neighbors(tgt, ref, 10)[1][:, -1]
    without = group_selection(tgt, z, ref, null_z, random_state=0)
    assert without[0] and without[5:].all()  # the known cell joins the group it is not part of
    with_radius = group_selection(tgt, z, ref, null_z, radius=radius, random_state=0)
    assert not with_radius[:5].any() and with_radius[5:].all()
    # the group keeps its members whatever the radius, while its cells lie closer to each other
    far = group_selection(tgt, z, ref, null_z, radius=np.full(17, 100.0), random_state=0)
    np.testing.assert_array_equal(far, without)
