"""CMOT's parameters are declared once (cmot._params) and checked by cmot.check_params."""

import inspect

import numpy as np
import pytest
from sklearn.base import clone

import cmot
from cmot import CMOT, PAPER_MODE, check_params
from cmot._params import PARAMETER_CONSTRAINTS


def test_constraint_table_and_signature_name_the_same_parameters():
    sig = inspect.signature(CMOT.__init__).parameters
    names = [n for n in sig if n != "self"]
    assert names == list(PARAMETER_CONSTRAINTS)
    assert all(sig[n].kind is inspect.Parameter.KEYWORD_ONLY for n in names)
    assert CMOT._parameter_constraints is PARAMETER_CONSTRAINTS
    # every default passes its own constraint unchanged
    defaults = {n: sig[n].default for n in names}
    assert check_params(defaults) == defaults
    assert set(PAPER_MODE) <= set(PARAMETER_CONSTRAINTS)
    assert check_params(PAPER_MODE) == PAPER_MODE


def test_get_params_and_clone_round_trip():
    model = CMOT(reg_e=3.0, n_neighbors=7, n_pcs=None, outlier_method="isolation_forest", random_state=5)
    params = model.get_params()
    assert params["reg_e"] == 3.0 and params["n_neighbors"] == 7 and params["n_pcs"] is None
    assert set(params) == set(PARAMETER_CONSTRAINTS)
    copy = clone(model)
    assert copy is not model and copy.get_params() == params
    assert CMOT(**params).get_params() == params
    # the repr shows the parameters that differ from the defaults, and only those
    assert " ".join(repr(model).split()) == (
        "CMOT(n_neighbors=7, n_pcs=None, outlier_method='isolation_forest', random_state=5, reg_e=3.0)")


def test_check_params_is_exported_and_normalizes():
    assert cmot.check_params is check_params
    out = check_params({"n_neighbors": np.int64(12), "n_pcs": 20.0, "mu": np.float32(0.25), "scale": np.bool_(True),
                        "reg_m": None, "shrinkage": "auto", "outlier_threshold": np.inf, "random_state": np.int32(3)})
    assert out == {"n_neighbors": 12, "n_pcs": 20, "mu": 0.25, "scale": True, "reg_m": None, "shrinkage": "auto",
                   "outlier_threshold": np.inf, "random_state": 3}
    assert type(out["n_neighbors"]) is int and type(out["n_pcs"]) is int and type(out["mu"]) is float
    assert type(out["random_state"]) is int


@pytest.mark.parametrize(
    "params,error,message",
    [
        ({"n_neighbors": -3}, ValueError, 'n_neighbors: expected "auto" or an integer >= 1, found -3.'),
        ({"n_neighbors": np.int64(0)}, ValueError, 'n_neighbors: expected "auto" or an integer >= 1, found 0.'),
        ({"n_neighbors": "many"}, ValueError, 'n_neighbors: expected "auto" or an integer >= 1, found \'many\'.'),
        ({"n_neighbors": 2.5}, TypeError, 'n_neighbors: expected "auto" or an integer >= 1, found 2.5.'),
        ({"n_neighbors": True}, TypeError, 'n_neighbors: expected "auto" or an integer >= 1, found True.'),
        ({"mu": 1}, ValueError, "mu: expected a number strictly between 0 and 1, found 1."),
        ({"reg_e": -1.0}, ValueError, "reg_e: expected a finite number > 0 or None (automatic), found -1.0."),
        ({"reg_e": np.nan}, ValueError, "reg_e: expected a finite number > 0 or None (automatic), found nan."),
        ({"reg_cl": -1}, ValueError, "reg_cl: expected a finite number >= 0, found -1."),
        ({"reg_m": 0}, ValueError,
         'reg_m: expected "auto", None (balanced transport) or a finite number > 0, found 0.'),
        ({"n_pcs": 0}, ValueError, 'n_pcs: expected "auto", None (paper mode) or an integer >= 1, found 0.'),
        ({"scale": "yes"}, TypeError, "scale: expected True or False, found 'yes'."),
        ({"barycentric_weight": 1.5}, ValueError, "barycentric_weight: expected a number in [0, 1], found 1.5."),
        ({"shrinkage": np.float64(1.5)}, ValueError, 'shrinkage: expected "auto" or a number in [0, 1], found 1.5.'),
        ({"tol": 0}, ValueError, "tol: expected a finite number > 0, found 0."),
        ({"outlier_method": "iforest"}, ValueError,
         'outlier_method: expected "distance" or "isolation_forest", found \'iforest\'.'),
        ({"outlier_threshold": "high"}, TypeError,
         "outlier_threshold: expected a number (np.inf allowed), found 'high'."),
        ({"random_state": -1}, ValueError,
         "random_state: expected None or an integer between 0 and 4294967295, found -1."),
        ({"verbose": 1}, TypeError, "verbose: expected True or False, found 1."),
        ({"k": 3}, ValueError, "k: unknown parameter; valid parameters are n_components, align_neighbors, mu,"),
    ],
)
def test_bad_values_name_the_parameter_what_was_expected_and_what_was_found(params, error, message):
    with pytest.raises(error) as info:
        check_params(params)
    assert str(info.value).startswith(message)


def test_fit_checks_the_parameters_and_init_only_stores():
    model = CMOT(n_neighbors=-3)  # scikit-learn convention: nothing is checked at construction
    assert model.n_neighbors == -3
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r'^n_neighbors: expected "auto" or an integer >= 1, found -3\.$'):
        model.fit(rng.normal(size=(10, 3)), rng.normal(size=(10, 4)))
    with pytest.raises(ValueError, match="^foo: unknown parameter"):
        CMOT().set_params(foo=1)


def test_the_default_seed_makes_two_runs_identical():
    """random_state defaults to 0: the randomized PCA (more than 500 cells and features),
    the subsets and the clustering give the same output twice; None does not."""
    rng = np.random.default_rng(0)
    y = rng.normal(size=(700, 600)) + np.repeat(rng.normal(scale=2, size=(4, 600)), 175, axis=0)
    x = y[:, :20] @ rng.normal(size=(20, 8))
    query = y[::7] + 0.3
    runs = [CMOT().fit(x, y).predict(query) for _ in range(2)]
    assert CMOT().random_state == 0 and np.array_equal(runs[0], runs[1])
    unseeded = [CMOT(random_state=None).fit(x, y).predict(query) for _ in range(2)]
    assert not np.array_equal(unseeded[0], unseeded[1])
