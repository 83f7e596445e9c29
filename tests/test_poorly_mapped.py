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


def test_unseen_population_within_the_threshold_keeps_its_distance():
    # a new, tight population 3 sd from a known type: its raw distances lie within the
    # threshold, so it counts as matched; its own displacement must not be removed as a
    # local offset, so that its scores still rank it above the known cells
    from sklearn.metrics import roc_auc_score

    from cmot.poorly_mapped import map_quality

    rng = np.random.default_rng(0)
    src = np.r_[rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + [6, 0, 0]]
    tgt = np.r_[rng.normal(size=(60, 3)), rng.normal(size=(60, 3)) + [6, 0, 0],
                rng.normal(size=(40, 3)) * 0.5 + [0, 3.0, 0]]
    new = np.r_[np.zeros(120, bool), np.ones(40, bool)]
    res = map_quality(src, tgt, random_state=0)
    assert roc_auc_score(new, res.z) >= 0.95
    assert not res.flags[~new].any() and not res.query_unlike
    assert np.median(res.score[new]) < np.median(res.score[~new])
