"""representation="precomputed": source_y / target_y are the Step B/C space itself."""

import numpy as np
import pandas as pd
import pytest

from cmot import CMOT
from cmot.datasets import make_multimodal

pytestmark = pytest.mark.filterwarnings("ignore::cmot.PoorlyMappedWarning")
P = dict(n_neighbors=10, shrinkage=0.0, random_state=0)


@pytest.fixture(scope="module")
def d():
    return make_multimodal(n_source=200, n_target=70, random_state=6)


@pytest.fixture(scope="module")
def default(d):
    model = CMOT(n_pcs=10, **P).fit(d.source_x, d.source_y, labels=d.source_labels)
    x_hat = model.predict(d.target_y)
    return model, x_hat, model.predicted_label_scores_["labels"].to_numpy()


def test_cmots_own_pca_given_as_precomputed_gives_the_same_predictions(d, default):
    model, x_hat, scores = default
    src, tgt = model.source_rep_, model.representation_.transform(d.target_y)
    pre = CMOT(representation="precomputed", **P).fit(d.source_x, src, labels=d.source_labels)
    # the transport, the labels, the weights and Step C see the same numbers: same predictions
    np.testing.assert_allclose(pre.predict(tgt), x_hat, rtol=0, atol=1e-9)
    np.testing.assert_allclose(pre.predicted_label_scores_["labels"].to_numpy(), scores, atol=1e-9)
    assert pre.n_pcs_ == 10 and pre.pca_ is None and pre.features_.tolist() == list(range(10))
    assert pre.scale_mean_ is None and pre.weight_scale_ == pytest.approx(model.weight_scale_)
    np.testing.assert_array_equal(pre.source_rep_, src)


def test_n_pcs_n_features_and_scale_are_ignored(d, default):
    model, x_hat, _ = default
    src, tgt = model.source_rep_, model.representation_.transform(d.target_y)
    pre = CMOT(representation="precomputed", n_pcs=3, n_features=2, scale=False, **P)
    np.testing.assert_allclose(pre.fit(d.source_x, src, labels=d.source_labels).predict(tgt), x_hat, atol=1e-9)
    assert pre.n_pcs_ == 10


def test_columns_are_matched_by_name_and_wrong_width_or_values_are_errors(d, default):
    model, x_hat, _ = default
    cols = [f"PC{j + 1}" for j in range(10)]
    src = pd.DataFrame(model.source_rep_, columns=cols)
    tgt = pd.DataFrame(model.representation_.transform(d.target_y), columns=cols)
    pre = CMOT(representation="precomputed", **P).fit(d.source_x, src, labels=d.source_labels)
    np.testing.assert_allclose(pre.predict(tgt[cols[::-1]]).to_numpy(), x_hat, atol=1e-9)
    with pytest.raises(ValueError, match=r"target_y: expected every one of the 10 features seen in fit, found 1 "
                                         r"missing: PC10"):
        pre.predict(tgt.iloc[:, :9])
    plain = CMOT(representation="precomputed", **P).fit(d.source_x, model.source_rep_)
    with pytest.raises(ValueError, match=r"target_y: expected 10 columns of the embedding \(as source_y in fit\), "
                                         r"found 9"):
        plain.predict(tgt.to_numpy()[:, :9])
    bad = model.source_rep_.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="source_y: expected finite values, found 1 NaN"):
        CMOT(representation="precomputed", **P).fit(d.source_x, bad)
    bad_t = tgt.to_numpy().copy()
    bad_t[0, 0] = np.inf
    with pytest.raises(ValueError, match="target_y: expected finite values, found 0 NaN .* and 1 infinite"):
        plain.predict(bad_t)


def test_the_parameter_is_checked():
    with pytest.raises(ValueError, match='representation: expected "pca" or "precomputed", found \'umap\''):
        CMOT(representation="umap").fit(np.ones((5, 2)), np.random.default_rng(0).normal(size=(5, 3)))
    assert CMOT().get_params()["representation"] == "pca"
