"""Composition robustness (issue 14): a query cell's prediction must not depend on who
else is in the query, and poorly mapped cells are judged against the reference."""

import warnings

import numpy as np
import pytest

from cmot import CMOT, PoorlyMappedWarning
from cmot.composition import composition_coverage, query_composition, robust_shift, shrunk_displacement
from cmot.datasets import make_multimodal
from cmot.poorly_mapped import QUERY_UNLIKE_MESSAGE, distance_scores, map_quality, reference_null
from cmot.metrics import cellwise_pearson


@pytest.fixture(scope="module")
def sim():
    """Three distinct types, target from the same distribution (no batch offset)."""
    return make_multimodal(600, 300, random_state=0)


@pytest.fixture(scope="module")
def model(sim):
    return CMOT(random_state=0).fit(sim.source_x, sim.source_y)


def _predict(model, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        return np.asarray(model.predict(y))


def test_one_type_query_predicts_as_inside_the_full_query(sim, model):
    full = _predict(model, sim.target_y)
    r_full = cellwise_pearson(sim.target_x, full)
    for t in np.unique(sim.target_labels):
        sel = np.flatnonzero(sim.target_labels == t)
        alone = _predict(model, sim.target_y[sel])
        r_alone = cellwise_pearson(sim.target_x[sel], alone)
        assert abs(np.mean(r_alone) - np.mean(r_full[sel])) <= 0.01, t
        assert np.abs(alone - full[sel]).mean() < 0.02 * np.ptp(sim.source_x)


def test_single_cells_predict_as_inside_the_full_query_and_as_a_knn(sim, model):
    from cmot.infer import knn_weights, metric_space, weighted_average

    full = _predict(model, sim.target_y)
    cells = np.arange(0, 300, 15)
    singles = np.vstack([_predict(model, sim.target_y[[i]]) for i in cells])
    r_single = cellwise_pearson(sim.target_x[cells], singles)
    r_full = cellwise_pearson(sim.target_x[cells], full[cells])
    assert abs(r_single.mean() - r_full.mean()) <= 0.01
    # one cell carries no evidence of an offset: no shift, no barycentric pull, so its
    # profile is the weighted kNN of the untransported source
    rep = model.representation_.transform(sim.target_y[cells])
    # searched in Step C's metric (each cell's components times metric_)
    idx, w = knn_weights(metric_space(rep, model.metric_), metric_space(model.source_rep_, model.metric_),
                         model.n_neighbors_, scale=model.weight_scale_)
    knn = weighted_average(model.source_x_, idx, w)
    # blended with the linear map of the cell's own components (no shift to undo)
    lw = model.linear_weight_
    blend = (1 - lw) * knn + lw * model.linear_map_.predict(rep)
    shrink = model.shrinkage_
    np.testing.assert_allclose(singles, (1 - shrink) * blend + shrink * model.x_mean_, atol=0.02 * np.ptp(sim.source_x))
    model.predict(sim.target_y[[0]])
    assert model.shift_factor_ == 0.0 and np.all(model.shift_ == 0)


def test_permuted_query_gives_the_same_output_up_to_order(sim, model):
    perm = np.random.default_rng(1).permutation(300)
    a = _predict(model, sim.target_y)
    flags_a, score_a = model.outliers_.copy(), model.mapping_score_.copy()
    b = _predict(model, sim.target_y[perm])
    np.testing.assert_allclose(b, a[perm], atol=1e-8)
    np.testing.assert_array_equal(model.outliers_, flags_a[perm])
    np.testing.assert_allclose(model.mapping_score_, score_a[perm], atol=1e-8)


def test_query_repeated_twice_gives_the_same_predictions(sim, model):
    a = _predict(model, sim.target_y)
    b = _predict(model, np.vstack([sim.target_y, sim.target_y]))
    np.testing.assert_allclose(b[:300], a, atol=1e-3 * np.ptp(sim.source_x))
    np.testing.assert_allclose(b[300:], a, atol=1e-3 * np.ptp(sim.source_x))


def test_batch_offset_is_still_corrected_for_a_one_type_query():
    # another batch: every target cell moved; the offset must be removed whether the
    # query holds every type or only one
    d = make_multimodal(600, 300, target_shift=0.8, random_state=3)
    model = CMOT(random_state=0).fit(d.source_x, d.source_y)
    full = _predict(model, d.target_y)
    full_shift = model.shift_.copy()
    assert model.shift_factor_ > 0.9
    sel = np.flatnonzero(d.target_labels == 0)
    alone = _predict(model, d.target_y[sel])
    assert model.shift_factor_ > 0.9
    # the offset seen from one type points the same way as from the whole query
    cos = full_shift @ model.shift_ / np.linalg.norm(full_shift) / np.linalg.norm(model.shift_)
    assert cos > 0.9
    r_full = cellwise_pearson(d.target_x[sel], full[sel]).mean()
    assert abs(cellwise_pearson(d.target_x[sel], alone).mean() - r_full) <= 0.01
    # and correcting it helps: without the shift the same cells score lower
    no_shift = CMOT(random_state=0, barycentric_weight=0).fit(d.source_x, d.source_y)
    rep = no_shift.representation_.transform(d.target_y)
    from cmot.infer import knn_weights, metric_space, weighted_average

    idx, w = knn_weights(rep, no_shift.source_rep_, no_shift.n_neighbors_, scale=no_shift.weight_scale_)
    plain = weighted_average(no_shift.source_x_, idx, w)
    assert cellwise_pearson(d.target_x, full).mean() > cellwise_pearson(d.target_x, plain).mean()


def test_robust_coupling_takes_mass_only_from_types_in_the_query(sim, model):
    sel = np.flatnonzero(sim.target_labels == 1)
    coupling, _ = model.transport(sim.target_y[sel])
    np.testing.assert_allclose(coupling.sum(axis=0), 1 / len(sel), rtol=1e-3)
    sent = coupling.sum(axis=1)
    assert sent[sim.source_labels == 1].sum() > 0.95 * sent.sum()
    assert composition_coverage(coupling) < 0.5
    # the uniform-marginal transport (cmot 0.3) moves every type onto the query
    old = CMOT(correction="transport", random_state=0).fit(sim.source_x, sim.source_y)
    c_old, _ = old.transport(sim.target_y[sel])
    sent_old = c_old.sum(axis=1)
    assert sent_old[sim.source_labels == 1].sum() < 0.75 * sent_old.sum()


def test_query_unlike_the_reference_is_flagged_and_warned(sim, model):
    with pytest.warns(PoorlyMappedWarning, match=QUERY_UNLIKE_MESSAGE.split(":")[0]):
        model.predict(sim.target_y[:40] + 100)
    assert model.query_unlike_ and model.outliers_.all()
    assert np.all(model.mapping_score_ == 0)
    # genes in the wrong order
    perm = np.random.default_rng(0).permutation(sim.target_y.shape[1])
    with pytest.warns(PoorlyMappedWarning, match="unlike the reference"):
        model.predict(sim.target_y[:, perm])
    assert model.query_unlike_ and model.outliers_.all()
    # the query as it is: nothing to report as a whole, (almost) no cell flagged
    _predict(model, sim.target_y)
    assert not model.query_unlike_ and model.outliers_.mean() <= 0.01


def test_shared_batch_offset_is_not_flagged_but_a_held_out_type_is(monkeypatch):
    import cmot.poorly_mapped as pm

    d = make_multimodal(600, 300, target_shift=0.5, new_type_fraction=0.2, random_state=0)
    model = CMOT(random_state=0).fit(d.source_x, d.source_y)
    seen = {}

    def spy(source, target, **kw):
        seen["source"], seen["target"] = source, target
        return map_quality(source, target, **kw)

    monkeypatch.setattr(pm, "map_quality", spy)
    with pytest.warns(PoorlyMappedWarning, match="%"):
        model.predict(d.target_y)
    new = d.target_labels == 3
    # the offset is real: without removing it, >10% of the known cells would be flagged
    z_raw, _ = distance_scores(seen["target"], seen["source"], reference_null(seen["source"], random_state=0))
    assert (z_raw[~new] > 3.5).mean() > 0.1
    assert not model.query_unlike_
    assert model.outliers_[new].mean() >= 0.8
    assert model.outliers_[~new].mean() <= 0.03
    assert np.median(model.mapping_score_[new]) < 0.05 < 0.5 < np.median(model.mapping_score_[~new])


def test_mapping_score_is_in_unit_interval_and_ordered_by_distance():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(400, 4))
    tgt = np.r_[np.zeros((1, 4)), np.outer(np.linspace(0.5, 8, 20), np.ones(4) / 2)]
    null = reference_null(src, random_state=0)
    z, score = distance_scores(tgt, src, null)
    assert np.all((score >= 0) & (score <= 1))
    assert score[0] == 1.0 and score[-1] == 0.0
    # farther cells: higher z, never a higher score
    order = np.argsort(z)
    assert np.all(np.diff(score[order]) <= 0)
    # a score is twice the share of reference cells at least as isolated (capped at 1)
    i = 5
    logd = np.log(np.sort(np.linalg.norm(src - tgt[i], axis=1))[9])
    assert score[i] == pytest.approx(min(1.0, 2 * np.mean(null >= logd)))


def test_map_quality_flags_whole_offset_query_and_unseen_population():
    rng = np.random.default_rng(0)
    src = np.r_[rng.normal(size=(150, 3)), rng.normal(size=(150, 3)) + [6, 0, 0]]
    tgt = np.r_[rng.normal(size=(60, 3)), rng.normal(size=(20, 3)) + [0, 9, 0]] + [0, 0, 1.0]
    res = map_quality(src, tgt, random_state=0)
    assert not res.query_unlike and res.flags[60:].all() and not res.flags[:60].any()
    far = map_quality(src, tgt + 100, random_state=0)
    assert far.query_unlike and far.flags.all()


def test_robust_shift_pieces():
    src = np.arange(10.0)[:, None]
    # the query's composition: each target cell's weight, shared by its nearest source cells
    a = query_composition(src, np.array([[0.2]]), 2)
    np.testing.assert_allclose(a, [0.5, 0.5] + [0] * 8)
    # James-Stein: a clear common offset is kept (up to 1 - 1/n), one cell gives none
    shift, raw, factor = shrunk_displacement(np.eye(10) / 10, src, src + 3)
    assert raw[0] == pytest.approx(3.0) and factor == pytest.approx(0.9)
    assert shrunk_displacement(np.full((10, 1), 0.1), src, src[:1] + 3)[2] == 0.0
    # noise around zero is shrunk toward zero
    rng = np.random.default_rng(0)
    s = rng.normal(size=(400, 5))
    res = robust_shift(s, rng.normal(size=(200, 5)))
    assert np.linalg.norm(res.shift) < 0.1
    with pytest.raises(ValueError, match="target_weights: expected 200 non-negative weights"):
        robust_shift(s, rng.normal(size=(200, 5)), target_weights=np.zeros(200))


def test_correction_parameter_is_checked(sim):
    with pytest.raises(ValueError, match="correction: expected \"robust\" or \"transport\", found 'global'"):
        CMOT(correction="global").fit(sim.source_x, sim.source_y)


def test_paper_mode_keeps_the_transport(sim):
    from cmot import PAPER_MODE

    assert PAPER_MODE["correction"] == "transport" and PAPER_MODE["barycentric_weight"] == 1.0
    model = CMOT(**PAPER_MODE, n_neighbors=15, random_state=0).fit(sim.source_x, sim.source_y)
    coupling, _ = model.transport(sim.target_y)
    np.testing.assert_allclose(coupling.sum(axis=1), 1 / 600, rtol=1e-4)  # balanced: every source cell moves
