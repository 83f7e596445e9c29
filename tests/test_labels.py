"""Label transfer (fit(transfer_labels=), predicted_labels_, predict_labels): the same
transport and Step C neighbours as the inferred modality, checked against independent
computations."""

import numpy as np
import pandas as pd
import pytest

from cmot import CMOT
from cmot.choices import AUTO_K_GRID, reference_weight_scale
from cmot.datasets import make_multimodal
from cmot.label_transfer import LabelTransfer, select_label_neighbors

pytestmark = pytest.mark.filterwarnings("ignore::cmot.PoorlyMappedWarning")

# fixed choices: the transport and the neighbours then do not depend on X
P = dict(n_neighbors=10, n_pcs=5, shrinkage=0.0, random_state=0)


@pytest.fixture(scope="module")
def d():
    return make_multimodal(n_source=240, n_target=80, random_state=3)


def _one_hot(codes, n_classes):
    out = np.zeros((codes.size, n_classes))
    has = codes >= 0
    out[np.flatnonzero(has), codes[has]] = 1.0
    return out


def _noisy(labels, share, seed=0):
    """``labels`` with a random ``share`` of them replaced by another class."""
    rng = np.random.default_rng(seed)
    flip = rng.uniform(size=labels.size) < share
    return np.where(flip, (labels + rng.integers(1, 3, size=labels.size)) % 3, labels)


def test_label_scores_are_the_x_inference_of_the_one_hot_labels(d):
    # Independent answer: a model whose k is the chosen label_neighbors_ (same distance unit,
    # weight_scale_) inferring the one-hot labels as extra X features (weighted average of
    # the neighbours' X, no shrinkage) gives the label scores.  Noisy labels: the votes are
    # not all one-hot, and the chosen k differs from the X's.
    codes = _noisy(d.source_labels, 0.3)
    types = np.array(["B", "NK", "T"])[codes]
    onehot = _one_hot(codes, 3)
    model = CMOT(**P).fit(d.source_x, d.source_y, labels=types)
    model.predict(d.target_y)
    k = model.label_neighbors_["labels"]
    assert k != P["n_neighbors"]
    check = CMOT(**{**P, "n_neighbors": k, "weight_scale": model.weight_scale_}).fit(
        np.c_[d.source_x, onehot], d.source_y, labels=types)
    x_hat = check.predict(d.target_y)
    scores = model.predicted_label_scores_["labels"]
    assert list(scores.columns) == ["B", "NK", "T"]
    assert ((scores.to_numpy() > 0) & (scores.to_numpy() < 1)).any()
    np.testing.assert_allclose(scores.to_numpy(), x_hat[:, -3:], atol=1e-12)
    np.testing.assert_allclose(scores.to_numpy().sum(axis=1), 1.0)
    # the label is the best class, its score the best score
    best = scores.to_numpy().argmax(axis=1)
    assert (model.predicted_labels_["labels"].to_numpy() == np.array(["B", "NK", "T"])[best]).all()
    np.testing.assert_array_equal(model.predicted_label_score_["labels"].to_numpy(), scores.to_numpy().max(axis=1))
    assert isinstance(model.predicted_labels_["labels"].dtype, pd.CategoricalDtype)
    assert list(model.predicted_labels_["labels"].cat.categories) == ["B", "NK", "T"]


def test_query_of_reference_cells_gets_their_own_labels_with_score_one(d):
    pick = np.r_[[np.flatnonzero(d.source_labels == t)[:4] for t in range(3)]].ravel()
    model = CMOT(**P).fit(d.source_x, d.source_y, labels=d.source_labels)
    labels = model.predict_labels(d.source_y[pick])
    assert labels.shape == (12, 1)
    np.testing.assert_array_equal(labels["labels"].to_numpy(), d.source_labels[pick])
    assert (model.predicted_label_score_["labels"].to_numpy() > 0.95).all()


def test_label_neighbors_loo_takes_few_for_locally_pure_labels_and_many_for_noisy_ones():
    # Cells uniform in a square; "pure": a 6 x 6 checkerboard (about 40 cells a square, so
    # votes of many neighbours reach across its edges); "noisy": left or right half with
    # 30% of the labels flipped at random (a large vote averages the flips out).
    rng = np.random.default_rng(0)
    rep = rng.uniform(size=(1500, 2))
    pure = (np.floor(rep[:, 0] * 6) + np.floor(rep[:, 1] * 6)).astype(int) % 2
    half = (rep[:, 0] > 0.5).astype(int)
    noisy = np.where(rng.uniform(size=1500) < 0.3, 1 - half, half)
    lt = LabelTransfer(["pure", "noisy"], [np.arange(2), np.arange(2)], [pure, noisy])
    ks, scores = select_label_neighbors(rep, lt, weight_scale=reference_weight_scale(rep, 10, random_state=0),
                                        random_state=0)
    assert ks[0] <= 10 and ks[1] >= 50, ks
    assert sorted(scores[0]) == list(AUTO_K_GRID)  # every candidate below the 1500 cells
    for k_chosen, sc in zip(ks, scores):
        assert sc[k_chosen] == max(sc.values())
    # the score is the leave-one-out accuracy: 1 - 0.3 flips is the best a vote can do on "noisy"
    assert 0.65 < scores[1][ks[1]] <= 0.75
    # a label that no left-out cell has leaves nothing to score: the smallest candidate
    none = LabelTransfer(["few"], [np.arange(1)], [np.r_[0, np.full(1499, -1)]])
    assert select_label_neighbors(rep, none, weight_scale=1.0, max_cells=10, random_state=1) == ([5], [{}])


def test_x_is_the_same_bitwise_whatever_the_label_neighbors(d):
    # fewer (pure labels) and more (noisy labels) voting neighbours than the X's n_neighbors=10:
    # one search of max(k, k_label) neighbours gives the X of a model that transfers nothing
    plain = CMOT(**P).fit(d.source_x, d.source_y, labels=d.source_labels, transfer_labels={})
    x_plain = plain.predict(d.target_y)
    assert plain.label_neighbors_ is None
    table = {"pure": d.source_labels, "noisy": _noisy(d.source_labels, 0.3)}
    model = CMOT(**P).fit(d.source_x, d.source_y, labels=d.source_labels, transfer_labels=table)
    assert model.label_neighbors_["pure"] < P["n_neighbors"] < model.label_neighbors_["noisy"]
    assert model.n_neighbors_ == P["n_neighbors"]
    np.testing.assert_array_equal(model.predict(d.target_y), x_plain)
    acc = (model.predicted_labels_.to_numpy() == d.target_labels[:, None]).mean(axis=0)
    assert (acc >= 0.95).all(), acc


def test_label_accuracy_on_simulated_data(d):
    model = CMOT(random_state=0).fit(d.source_x, d.source_y, labels=d.source_labels)
    model.predict(d.target_y)
    acc = (model.predicted_labels_["labels"].to_numpy() == d.target_labels).mean()
    assert acc >= 0.95, acc


def test_permuting_the_query_permutes_every_output(d):
    names = [f"q{i}" for i in range(d.target_y.shape[0])]
    q = pd.DataFrame(d.target_y, index=names)
    model = CMOT(**P).fit(d.source_x, d.source_y, labels=d.source_labels)
    model.predict(q)
    first = (model.predicted_labels_.copy(), model.predicted_label_scores_["labels"].copy())
    perm = np.random.default_rng(0).permutation(len(names))
    model.predict(q.iloc[perm])
    assert list(model.predicted_labels_.index) == [names[i] for i in perm]
    pd.testing.assert_frame_equal(model.predicted_labels_, first[0].iloc[perm])
    pd.testing.assert_frame_equal(model.predicted_label_scores_["labels"], first[1].iloc[perm], atol=1e-8)


def test_several_names_dataframe_series_by_name_and_missing_labels_do_not_vote(d):
    n = d.source_y.shape[0]
    cells = [f"r{i}" for i in range(n)]
    sy = pd.DataFrame(d.source_y, index=cells)
    coarse = np.where(d.source_labels == 0, "zero", "other").astype(object)
    fine = pd.Series(d.source_labels.astype(float), index=cells)
    fine[d.source_labels == 0] = np.nan  # type 0 unlabelled: does not vote
    table = pd.DataFrame({"coarse": coarse, "fine": fine}, index=cells).iloc[::-1]  # aligned by name
    model = CMOT(**P).fit(d.source_x, sy, labels=d.source_labels, transfer_labels=table)
    model.predict(pd.DataFrame(d.target_y))
    assert list(model.predicted_labels_.columns) == ["coarse", "fine"]
    assert list(model.predicted_label_scores_["fine"].columns) == [1.0, 2.0]
    # independent: vote of the labelled neighbours = inferred one-hot over inferred "has a label"
    codes = np.where(d.source_labels == 0, -1, d.source_labels - 1)
    check = CMOT(**{**P, "n_neighbors": model.label_neighbors_["fine"], "weight_scale": model.weight_scale_}).fit(
        np.c_[_one_hot(codes, 2), codes >= 0], sy, labels=d.source_labels)
    x_hat = check.predict(d.target_y)
    voted = x_hat[:, 2] > 1e-12
    expected = np.full((len(x_hat), 2), np.nan)
    expected[voted] = x_hat[voted, :2] / x_hat[voted, 2:3]
    got = model.predicted_label_scores_["fine"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert (~voted).any() and voted.any()  # both cases are exercised
    assert model.predicted_labels_["fine"][~voted].isna().all()
    assert np.isnan(model.predicted_label_score_["fine"].to_numpy()[~voted]).all()
    np.testing.assert_allclose(got[voted].sum(axis=1), 1.0)
    coarse_ok = model.predicted_labels_["coarse"].to_numpy() == np.where(d.target_labels == 0, "zero", "other")
    assert coarse_ok.mean() >= 0.95


def test_default_transfer_and_opting_out(d):
    plain = CMOT(**P).fit(d.source_x, d.source_y)  # Ward clusters are not transferred
    plain.predict(d.target_y)
    assert plain.label_transfer_ is None and plain.predicted_labels_ is None
    with pytest.raises(ValueError, match="predict_labels: expected a model fitted with labels to transfer"):
        plain.predict_labels(d.target_y)
    none = CMOT(**P).fit(d.source_x, d.source_y, labels=d.source_labels, transfer_labels={})
    none.predict(d.target_y)
    assert none.predicted_label_scores_ is None
    unfitted_predict = CMOT(**P).fit(d.source_x, d.source_y, labels=d.source_labels)
    with pytest.raises(AttributeError, match="set by predict"):
        unfitted_predict.predicted_labels_


@pytest.mark.parametrize("value, error, message", [
    ({"t": ["a", "b"]}, ValueError, r"transfer_labels\['t'\]: expected one label per source Y cell \(240\), found 2"),
    ({"t": [None] * 240}, ValueError, r"transfer_labels\['t'\]: expected at least one label, found all 240 missing"),
    ({"t": np.zeros((240, 2))}, ValueError, r"transfer_labels\['t'\]: expected one label per source Y cell \(1-D\)"),
    (["a"] * 240, TypeError, "transfer_labels: expected a dict of name -> per-cell labels or a DataFrame, found list"),
    ({3: ["a"] * 240}, TypeError, "transfer_labels: expected non-empty str names, found 3"),
    (pd.DataFrame({"t": ["a"] * 10}), ValueError, r"transfer_labels: expected one row per source Y cell \(240\)"),
    ({"t": pd.Series(["a"] * 240, index=range(1, 241))}, ValueError, r"transfer_labels\['t'\]: expected a Series"),
])
def test_bad_transfer_labels_name_the_argument(d, value, error, message):
    with pytest.raises(error, match=message):
        CMOT(**P).fit(d.source_x, d.source_y, transfer_labels=value)


def test_labels_survive_save_and_load(d, tmp_path):
    model = CMOT(**P).fit(d.source_x, d.source_y, transfer_labels={"type": np.array(["a", "b", "c"])[d.source_labels]})
    model.predict(pd.DataFrame(d.target_y, index=[f"q{i}" for i in range(80)]))
    model.save(tmp_path / "m.cmot")
    loaded = CMOT.load(tmp_path / "m.cmot")
    pd.testing.assert_frame_equal(loaded.predicted_labels_, model.predicted_labels_)
    loaded.predict(d.target_y)
    np.testing.assert_array_equal(loaded.predicted_labels_["type"].to_numpy(),
                                  model.predicted_labels_["type"].to_numpy())
