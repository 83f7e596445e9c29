"""Bad input to the Python API: each case is a clear error (or warning) naming the
argument, what was expected and what was found; nothing is silently dropped or reordered."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import cmot.transport
from cmot import CMOT, PoorlyMappedWarning
from cmot._validation import as_matrix
from cmot.datasets import make_multimodal


@pytest.fixture(scope="module")
def data():
    return make_multimodal(n_source=150, n_target=40, random_state=0)


def _frames(d, ycols=None, xcols=None):
    ycols = ycols or [f"peak_{i}" for i in range(60)]
    xcols = xcols or [f"gene_{i}" for i in range(30)]
    cells = [f"s{i}" for i in range(150)]
    sx = pd.DataFrame(d.source_x, index=cells, columns=xcols)
    sy = pd.DataFrame(d.source_y, index=cells, columns=ycols)
    ty = pd.DataFrame(d.target_y, index=[f"t{i}" for i in range(40)], columns=[f"peak_{i}" for i in range(60)])
    return sx, sy, ty


def _quiet_fit(model, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        return model.fit(*args, **kwargs)


# ------------------------------------------------------------ duplicated feature names
def test_duplicated_feature_names_in_source_y_are_an_error(data):
    ycols = [f"peak_{i}" for i in range(60)]
    ycols[5] = ycols[9] = "peak_3"
    sx, sy, _ = _frames(data, ycols=ycols)
    with pytest.raises(ValueError, match=r"^source_y: expected unique feature names, found 1 duplicated: peak_3 "
                                         r"\(columns 3, 5, 9\)\.$"):
        CMOT().fit(sx, sy)


def test_duplicated_feature_names_in_source_x_are_an_error(data):
    xcols = [f"gene_{i}" for i in range(30)]
    xcols[1] = "gene_0"
    sx, sy, _ = _frames(data, xcols=xcols)
    with pytest.raises(ValueError, match=r"^source_x: expected unique feature names, found 1 duplicated: gene_0"):
        CMOT().fit(sx, sy)


def test_duplicated_feature_names_in_the_query_are_an_error(data):
    sx, sy, ty = _frames(data)
    model = _quiet_fit(CMOT(n_neighbors=10, random_state=0, outlier_threshold=np.inf), sx, sy)
    dup = ty.copy()
    dup.columns = [c if c != "peak_8" else "peak_2" for c in ty.columns]  # peak_2 twice, peak_8 gone
    with pytest.raises(ValueError, match=r"^target_y: expected unique feature names, found 1 duplicated: peak_2"):
        model.predict(dup)
    # a duplicated extra column (not one of the source's) is still refused: which one was meant is unknown
    extra = pd.concat([ty, ty[["peak_0"]]], axis=1)
    with pytest.raises(ValueError, match="target_y: expected unique feature names, found 1 duplicated: peak_0"):
        model.predict(extra)


# ------------------------------------------------------------------------- labels
@pytest.mark.parametrize(
    "make_labels,where",
    [
        (lambda lab: np.where(np.arange(150) % 50 == 7, None, lab.astype(str).astype(object)), "positions 7, 57, 107"),
        (lambda lab: [np.nan if i == 4 else str(v) for i, v in enumerate(lab)], "positions 4"),
        (lambda lab: np.where(np.arange(150) == 3, np.nan, lab.astype(float)), "positions 3"),
        (lambda lab: pd.Series(pd.Categorical([None if i in (1, 2) else f"t{v}" for i, v in enumerate(lab)])),
         "positions 1, 2"),
        (lambda lab: pd.array([pd.NA if i == 0 else int(v) for i, v in enumerate(lab)], dtype="Int64"), "positions 0"),
    ],
    ids=["object-None", "str-list-nan", "float-nan", "categorical", "nullable-int"],
)
def test_missing_labels_are_an_error_at_fit_saying_how_many_and_where(data, make_labels, where):
    labels = make_labels(data.source_labels)
    n = int(pd.isna(pd.Series(list(labels))).sum())
    with pytest.raises(ValueError, match=rf"^labels: expected no missing labels, found {n} missing \(NaN or None\) "
                                         rf"at {where}\.$"):
        CMOT().fit(data.source_x, data.source_y, labels=labels)


def test_missing_labels_are_located_by_cell_name_when_cells_have_names(data):
    sx, sy, _ = _frames(data)
    labels = pd.Series(data.source_labels.astype(float), index=sy.index)
    labels.iloc[10] = np.nan
    with pytest.raises(ValueError, match=r"found 1 missing \(NaN or None\) at cells 's10'\."):
        CMOT().fit(sx, sy, labels=labels)


def test_a_labels_series_is_aligned_to_the_cells_by_name(data):
    sx, sy, _ = _frames(data)
    names = [f"type{v}" for v in data.source_labels]
    in_order = pd.Series(names, index=sy.index)
    shuffled = in_order.sample(frac=1.0, random_state=0)
    assert not shuffled.index.equals(in_order.index)
    m1 = _quiet_fit(CMOT(n_neighbors=10, random_state=0), sx, sy, labels=in_order)
    m2 = _quiet_fit(CMOT(n_neighbors=10, random_state=0), sx, sy, labels=shuffled)
    np.testing.assert_array_equal(m1.labels_, names)
    np.testing.assert_array_equal(m2.labels_, names)  # by name, not by position


def test_a_labels_series_with_other_cell_names_is_an_error(data):
    sx, sy, _ = _frames(data)
    foreign = pd.Series(data.source_labels, index=[f"other{i}" for i in range(150)])
    with pytest.raises(ValueError, match=r"^labels: expected a Series indexed by the 150 source cell names, found 150 "
                                         r"source cells missing from its index \(first: 's0'\)\.$"):
        CMOT().fit(sx, sy, labels=foreign)
    dup_index = pd.Series(data.source_labels, index=["s0"] + list(sy.index[1:-1]) + ["s0"])
    with pytest.raises(ValueError, match="labels: expected a Series indexed by the 150 source cell names, found 1 "
                                         "duplicated index names"):
        CMOT().fit(sx, sy, labels=dup_index)


def test_a_labels_series_needs_the_default_index_when_cells_have_no_names(data):
    shuffled = pd.Series(data.source_labels).sample(frac=1.0, random_state=0)
    with pytest.raises(ValueError, match=r"^labels: expected a Series with the default index 0\.\.149 \(the source "
                                         r"cells have no names to align it by\), found an index starting"):
        CMOT().fit(data.source_x, data.source_y, labels=shuffled)
    model = _quiet_fit(CMOT(n_neighbors=10, random_state=0), data.source_x, data.source_y,
                       labels=pd.Series(data.source_labels))
    np.testing.assert_array_equal(model.labels_, data.source_labels)


# ------------------------------------------------------------- pandas dtypes, complex
@pytest.mark.parametrize("dtype", ["Float64", "Int64", "float32", pd.SparseDtype(float, 0.0)])
def test_pandas_extension_dtypes_are_accepted(dtype):
    rng = np.random.default_rng(0)
    values = np.where(rng.random((20, 5)) < 0.5, 0.0, rng.integers(1, 9, (20, 5))).astype(float)
    frame = pd.DataFrame(values, columns=list("abcde")).astype(dtype)
    m = as_matrix(frame, "source_y")
    dense = m.data.toarray() if sp.issparse(m.data) else m.data
    np.testing.assert_array_equal(dense, values)
    assert dense.dtype == np.float64 and list(m.feature_names) == list("abcde")
    assert sp.issparse(m.data) == isinstance(dtype, pd.SparseDtype)  # sparse columns stay sparse


def test_nullable_missing_values_are_an_error_like_nan():
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]}).astype("Float64")
    frame.loc[1, "b"] = pd.NA
    with pytest.raises(ValueError, match=r"^source_y: expected finite values, found 1 NaN \(or missing, NA\) and 0 "
                                         r"infinite entries"):
        as_matrix(frame, "source_y")


def test_estimator_runs_on_nullable_and_sparse_frames_as_on_arrays(data):
    sx, sy, ty = _frames(data)
    kw = dict(n_neighbors=10, random_state=0, outlier_threshold=np.inf)
    ref = CMOT(**kw).fit(sx, sy).predict(ty)
    nullable = CMOT(**kw).fit(sx.astype("Float64"), sy.astype("Float64")).predict(ty.astype("Float64"))
    np.testing.assert_allclose(nullable.to_numpy(), ref.to_numpy(), atol=1e-12)


@pytest.mark.parametrize("container", [np.asarray, sp.csr_matrix, pd.DataFrame])
def test_complex_input_is_an_error_not_a_dropped_imaginary_part(data, container):
    with pytest.raises(TypeError, match=r"^source_y.*: expected real values, found complex dtype complex128"):
        CMOT().fit(data.source_x, container(data.source_y + 1j))


# -------------------------------------------------------------------- n_neighbors
def test_n_neighbors_above_the_number_of_source_cells_reports_the_k_used(data):
    with pytest.warns(UserWarning, match=r"^n_neighbors: 1000 is more than the 150 source cells; each target cell "
                                         r"averages all 150 \(n_neighbors_ = 150\)\.$"):
        model = CMOT(n_neighbors=1000, random_state=0, outlier_threshold=np.inf).fit(data.source_x, data.source_y)
    assert model.n_neighbors_ == 150
    # and 150 is what Step C used: the same prediction as asking for 150
    same = CMOT(n_neighbors=150, random_state=0, outlier_threshold=np.inf).fit(data.source_x, data.source_y)
    np.testing.assert_allclose(model.predict(data.target_y), same.predict(data.target_y), atol=1e-12)


# ------------------------------------------------------------------------- memory
def test_a_transport_that_cannot_fit_in_memory_is_refused_at_once(data, monkeypatch):
    model = CMOT(n_neighbors=10, random_state=0).fit(data.source_x, data.source_y)
    need = cmot.transport.transport_bytes(150, 40)
    monkeypatch.setattr(cmot.transport, "available_memory", lambda: need - 1)
    calls = []
    monkeypatch.setattr(cmot.transport, "sqeuclidean_cost", lambda *a, **k: calls.append(1))
    with pytest.raises(MemoryError) as info:
        model.predict(data.target_y)
    msg = str(info.value)
    assert msg.startswith("target_y: the transport between 150 source cells and 40 target cells, with its dense "
                          "150 x 40 arrays, needs about ")
    assert "GiB" in msg and "available" in msg and "Subsample the reference" in msg and "in chunks" in msg
    assert calls == []  # refused before any n_source x n_target work
    with pytest.raises(MemoryError):
        model.transport(data.target_y)
    monkeypatch.undo()
    monkeypatch.setattr(cmot.transport, "available_memory", lambda: None)  # unknown: no check
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PoorlyMappedWarning)
        assert model.predict(data.target_y).shape == (40, 30)


def test_a_fit_that_cannot_fit_in_memory_is_refused_at_once(data, monkeypatch):
    from cmot.choices import fit_bytes

    need = fit_bytes(150, 60)
    assert need == 32 * 150 * 150  # the leave-one-out search: four float64 blocks of 150 x 150
    monkeypatch.setattr(cmot.transport, "available_memory", lambda: need - 1)
    with pytest.raises(MemoryError, match=r"^source_y: fitting 150 source cells needs about 0\.0 GiB, found 0\.0 GiB "
                                          r"of memory available\. Subsample the reference \(source\) cells\.$"):
        CMOT(random_state=0).fit(data.source_x, data.source_y)
    monkeypatch.setattr(cmot.transport, "available_memory", lambda: need)
    assert CMOT(n_neighbors=10, random_state=0).fit(data.source_x, data.source_y).n_neighbors_ == 10


def test_the_memory_message_names_sizes_in_gib(monkeypatch):
    monkeypatch.setattr(cmot.transport, "available_memory", lambda: 8 * 1024**3)
    with pytest.raises(MemoryError, match=r"100000 source cells and 20000 target cells, with its dense 100000 x 20000 "
                                          r"arrays, needs about 22\.4 GiB, found 8\.0 GiB of memory available"):
        cmot.transport.check_transport_memory(100_000, 20_000)
    cmot.transport.check_transport_memory(1000, 1000)  # 24 MB fits in 8 GiB


def test_transport_bytes_counts_the_dense_arrays():
    # float32 above LARGE_PROBLEM, solved in place: the peak is the coupling and its
    # float64 copy in the barycentric map
    pairs = 100_000 * 20_000
    assert cmot.transport.transport_bytes(100_000, 20_000) == pairs * (4 + 8)
    # without the barycentric map: the cost and the rows resolve_reg_e copies, or the coupling
    # and the neighbour search's four float64 blocks of 2048 x 100000
    assert cmot.transport.transport_bytes(100_000, 20_000, barycentric=False) == max(
        pairs * 4 + 2 * 2000 * 20_000 * 4, pairs * 4 + 4 * 8 * 2048 * 100_000)
    assert cmot.transport.transport_bytes(100_000, 20_000, keep_cost=True) == pairs * 4 * 4
    # float64 below it: cost and kernel, or the coupling and the neighbour blocks
    assert cmot.transport.transport_bytes(1000, 1000) == max(1000 * 1000 * 16 + 1000 * 1000 * 8,
                                                             1000 * 1000 * 8 + 32 * 1000 * 1000)
