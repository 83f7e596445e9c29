"""CMOT.predict on a query read a chunk at a time (a dask array, a backed AnnData): the same
results as the query in memory, a lazy inferred X, progress per chunk (cmot.chunked)."""

import logging
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")
ad = pytest.importorskip("anndata")

import cmot.chunked as chunked  # noqa: E402
import cmot.poorly_mapped as poorly_mapped  # noqa: E402
from cmot import CMOT  # noqa: E402
from cmot.datasets import make_multimodal  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::cmot.PoorlyMappedWarning")
ROWS = 128  # rows per chunk: 600 query cells in chunks of 128, 128, 128, 128, 88
N_CHUNKS = 5


@pytest.fixture(scope="module")
def d():
    # an unseen cell type in the query, so that some cells are flagged poorly mapped
    return make_multimodal(n_source=300, n_target=600, new_type_fraction=0.1, random_state=0)


@pytest.fixture(scope="module")
def model(d):
    return CMOT(n_neighbors=10, random_state=0).fit(d.source_x, d.source_y, labels=d.source_labels)


def _fitted(model):
    """The fitted attributes predict sets (copies)."""
    return dict(outliers=model.outliers_.copy(), outlier_scores=model.outlier_scores_.copy(),
                mapping=model.mapping_score_.copy(), unlike=model.query_unlike_, shift=model.shift_.copy(),
                labels=model.predicted_labels_.copy(), label_score=model.predicted_label_score_.copy(),
                n_components=model.outlier_n_components_)


def _assert_same(got, want):
    np.testing.assert_array_equal(got["outliers"], want["outliers"])
    np.testing.assert_allclose(got["outlier_scores"], want["outlier_scores"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["mapping"], want["mapping"], rtol=1e-10)
    np.testing.assert_allclose(got["shift"], want["shift"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got["label_score"].to_numpy(), want["label_score"].to_numpy(), rtol=1e-10)
    pd.testing.assert_frame_equal(got["labels"].reset_index(drop=True), want["labels"].reset_index(drop=True))
    assert got["unlike"] == want["unlike"] and got["n_components"] == want["n_components"]


@pytest.fixture(scope="module")
def in_memory(d, model):
    x_hat = model.predict(d.target_y)
    return x_hat, _fitted(model)


def _dask(target, blocks):
    arr = da.from_array(target, chunks=(ROWS, -1))
    if blocks == "sparse":
        arr = arr.map_blocks(sp.csr_matrix, dtype=arr.dtype, meta=sp.csr_matrix((0, 0)))
    return arr


@pytest.mark.parametrize("blocks", ["dense", "sparse"])
def test_dask_array_query_gives_the_in_memory_results(d, model, in_memory, blocks):
    x_hat = model.predict(_dask(d.target_y, blocks))
    assert isinstance(x_hat, da.Array) and x_hat.chunks[0] == (ROWS,) * 4 + (88,)
    assert x_hat.shape == (600, d.source_x.shape[1])
    np.testing.assert_allclose(x_hat.compute(), in_memory[0], rtol=1e-10, atol=1e-12)
    _assert_same(_fitted(model), in_memory[1])
    assert 0 < in_memory[1]["outliers"].sum() < 600  # the comparison of flags is not vacuous


def test_inferred_x_is_computed_only_when_asked(d, model, in_memory, monkeypatch):
    calls = []
    step = chunked._step_c_block
    monkeypatch.setattr(chunked, "_step_c_block", lambda *a: calls.append(1) or step(*a))
    x_hat = model.predict(_dask(d.target_y, "dense"))
    assert calls == []  # predict ran no Step C chunk
    np.testing.assert_allclose(x_hat[256:384].compute(), in_memory[0][256:384], rtol=1e-10, atol=1e-12)
    assert len(calls) == 1  # a slice computes the chunk that holds it
    x_hat.compute()
    assert len(calls) == 1 + N_CHUNKS


def _write(tmp_path, d, x_format, order):
    genes = np.array([f"g{i}" for i in range(d.target_y.shape[1])])
    query = ad.AnnData(d.target_y[:, order] if x_format == "dense" else sp.csr_matrix(d.target_y[:, order]),
                       obs=pd.DataFrame(index=[f"q{i}" for i in range(d.target_y.shape[0])]),
                       var=pd.DataFrame(index=genes[order]))
    path = tmp_path / f"query_{x_format}.h5ad"
    query.write_h5ad(path)
    return path, genes


@pytest.mark.parametrize("x_format", ["dense", "sparse"])
def test_backed_anndata_matches_features_by_name_and_gives_the_in_memory_results(d, tmp_path, monkeypatch,
                                                                                  x_format):
    monkeypatch.setattr(chunked, "BACKED_CHUNK_SIZE", ROWS)
    order = np.random.default_rng(0).permutation(d.target_y.shape[1])  # features stored in another order
    path, genes = _write(tmp_path, d, x_format, order)
    ref = ad.AnnData(d.source_y, obs=pd.DataFrame(index=[f"r{i}" for i in range(d.source_y.shape[0])]),
                     var=pd.DataFrame(index=genes))
    model = CMOT(n_neighbors=10, random_state=0).fit(d.source_x, ref, labels=d.source_labels)
    want = model.predict(ad.read_h5ad(path))  # the same file in memory
    want_fitted = _fitted(model)
    backed = ad.read_h5ad(path, backed="r")
    got = model.predict(backed)
    assert isinstance(got, ad.AnnData) and isinstance(got.X, da.Array)
    assert got.X.chunks[0] == (ROWS,) * 4 + (88,)
    assert list(got.obs_names) == list(backed.obs_names) and list(got.var_names) == list(want.var_names)
    np.testing.assert_allclose(got.X.compute(), want.X, rtol=1e-10, atol=1e-12)
    _assert_same(_fitted(model), want_fitted)
    assert list(model.predicted_labels_.index) == list(backed.obs_names)
    with pytest.raises(ValueError, match="target_y: expected a backed AnnData, found a view of one"):
        model.predict(backed[:100])
    backed.file.close()


def test_a_query_larger_than_the_detector_sample_gives_the_in_memory_results(d, model, monkeypatch):
    monkeypatch.setattr(poorly_mapped, "DETECTOR_TARGET_CELLS", 100)
    fitted_rows = []
    make_pca = poorly_mapped.make_pca

    def recording(n, shape, random_state=None, **kwargs):
        fitted_rows.append(shape[0])
        return make_pca(n, shape, random_state, **kwargs)

    monkeypatch.setattr(poorly_mapped, "make_pca", recording)
    want = model.predict(d.target_y)
    want_fitted = _fitted(model)
    got = model.predict(_dask(d.target_y, "sparse"))
    np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-12)
    _assert_same(_fitted(model), want_fitted)
    # the joint PCA saw the 300 source cells and 100 of the 600 query cells, in both calls
    assert fitted_rows.count(300 + 100) == 2 and 300 + 600 not in fitted_rows


def test_detector_fits_on_at_most_detector_target_cells_and_scores_every_cell(monkeypatch):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(300, 8))
    tgt = np.r_[rng.normal(size=(500, 8)), rng.normal(size=(100, 8)) + 6]
    monkeypatch.setattr(poorly_mapped, "DETECTOR_TARGET_CELLS", 150)
    rows = poorly_mapped.detector_target(600, random_state=0)
    assert rows.size == 150 and np.all(np.diff(rows) > 0)
    emb_s, emb_t, n_comp = poorly_mapped.joint_signal_embedding(src, tgt, random_state=0)
    assert emb_t.shape == (600, n_comp)
    # the PCA fitted on the source and those 150 query cells, not on every query cell
    direct = poorly_mapped.joint_signal_embedding(src, tgt, sample=tgt[rows], random_state=0)[1]
    np.testing.assert_allclose(emb_t, direct, rtol=1e-12, atol=1e-12)
    every = poorly_mapped.joint_signal_embedding(src, tgt, sample=tgt, random_state=0)[1]
    assert not np.allclose(np.abs(emb_t), np.abs(every[:, :n_comp]), rtol=1e-6)
    res = poorly_mapped.detect_poorly_mapped("distance", source=src, target=tgt, random_state=0)
    assert res.flags.shape == (600,) and res.flags[500:].all() and res.flags[:500].mean() < 0.02


def test_verbose_reports_each_chunk(d, model, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="cmot")
    monkeypatch.setattr(model, "params_", {**model.params_, "verbose": True})
    model.predict(_dask(d.target_y, "dense"))
    messages = [r.getMessage() for r in caplog.records]
    for step in ("representation", "poorly mapped cells"):
        lines = sorted(m for m in messages if m.endswith(f"({step})"))
        assert lines == sorted(f"cmot: target_y chunk {i}/{N_CHUNKS} ({step})" for i in range(1, N_CHUNKS + 1))
    # the labels are computed at once, in Step C's chunks of query cells
    assert "cmot: inferring chunk 1/1" in messages


def test_backed_anndata_without_dask_says_how_to_install_it(d, model, tmp_path, monkeypatch):
    path, _ = _write(tmp_path, d, "dense", np.arange(d.target_y.shape[1]))
    backed = ad.read_h5ad(path, backed="r")
    for name in ("dask", "dask.array"):
        monkeypatch.setitem(sys.modules, name, None)  # import dask raises ImportError
    with pytest.raises(ImportError, match=r"target_y: .*pip install dask\[array\]"):
        model.predict(backed)
    backed.file.close()


def test_bad_chunked_queries_raise_clear_errors(d, model):
    bad = d.target_y.copy()
    bad[300, 2] = np.nan
    with pytest.raises(ValueError, match="target_y: expected finite values, found 1 NaN"):
        model.predict(da.from_array(bad, chunks=(ROWS, -1)))
    with pytest.raises(ValueError, match="target_y: expected 60 features"):
        model.predict(da.from_array(d.target_y[:, :50], chunks=(ROWS, -1)))
    with pytest.raises(TypeError, match="target_y: expected numeric values"):
        model.predict(da.from_array(d.target_y.astype(str), chunks=(ROWS, -1)))
    paper = CMOT(n_pcs=None, correction="transport", n_neighbors=10, random_state=0).fit(d.source_x, d.source_y)
    with pytest.raises(ValueError, match="target_y: a dask array or backed AnnData is read a chunk at a time"):
        paper.predict(da.from_array(d.target_y, chunks=(ROWS, -1)))


def test_columns_chunked_too_are_read_as_whole_rows(d, model, in_memory):
    x_hat = model.predict(da.from_array(d.target_y, chunks=(ROWS, 25)))
    np.testing.assert_allclose(x_hat.compute(), in_memory[0], rtol=1e-10, atol=1e-12)


def test_precomputed_embedding_as_a_dask_array(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CMOT(representation="precomputed", n_neighbors=10, random_state=0)
        model.fit(d.source_x, d.source_y[:, :8])
    want = model.predict(d.target_y[:, :8])
    outliers = model.outliers_.copy()
    got = model.predict(da.from_array(d.target_y[:, :8], chunks=(ROWS, -1)))
    np.testing.assert_allclose(got.compute(), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(model.outliers_, outliers)


def test_tasks_run_in_other_processes(d, model, in_memory, tmp_path, monkeypatch):
    # as on a cluster: every task is pickled and runs in another process, the backed file reopened there
    import dask

    monkeypatch.setattr(chunked, "BACKED_CHUNK_SIZE", 256)
    path, genes = _write(tmp_path, d, "sparse", np.arange(d.target_y.shape[1]))
    backed = ad.read_h5ad(path, backed="r")
    with dask.config.set(scheduler="processes", num_workers=2):
        got = model.predict(backed)
        fitted = _fitted(model)
        x_hat = got.X.compute()
    np.testing.assert_allclose(x_hat, in_memory[0], rtol=1e-10, atol=1e-12)
    _assert_same(fitted, in_memory[1])
    backed.file.close()


def test_no_chunked_query_is_converted_whole(d, model, in_memory, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("a whole dask array was converted to an ndarray")

    monkeypatch.setattr(da.Array, "__array__", refuse)
    x_hat = model.predict(_dask(d.target_y, "sparse"))
    np.testing.assert_allclose(x_hat.compute(), in_memory[0], rtol=1e-10, atol=1e-12)


def test_local_offsets_in_chunks_are_the_offsets_in_one_piece(monkeypatch):
    from cmot.composition import robust_shift

    rng = np.random.default_rng(0)
    src = rng.normal(size=(300, 4))
    tgt = rng.normal(size=(700, 4)) + [0.0, 0.0, 0.0, 1.5]
    use = rng.random(700) < 0.8
    res = robust_shift(src, tgt, target_weights=use.astype(float), max_inner_iter=200)
    import cmot.infer as infer

    n_used = int(use.sum())
    monkeypatch.setattr(infer, "KD_TREE_MAX_DIMS", 0)  # brute force, whose blocks the chunks must keep whole
    monkeypatch.setattr(infer, "NEIGHBOR_BLOCK", 32 * n_used)  # nearest_neighbors' blocks of 32 query rows
    whole = poorly_mapped.local_offsets(tgt, src, res, use, 1.0)  # one chunk (CHUNK_ROWS: 8192)
    monkeypatch.setattr(poorly_mapped, "CHUNK_ROWS", 100)  # chunks of 96 rows: 3 whole blocks each
    chunks = []
    nearest = poorly_mapped.nearest_neighbors
    monkeypatch.setattr(poorly_mapped, "nearest_neighbors", lambda q, *a: chunks.append(len(q)) or nearest(q, *a))
    np.testing.assert_array_equal(poorly_mapped.local_offsets(tgt, src, res, use, 1.0), whole)
    assert chunks == [96] * 7 + [28]
    # averaged over a subset of the used cells above max_cells: the shared offset is still found
    sub = poorly_mapped.local_offsets(tgt, src, res, use, 1.0, max_cells=200, random_state=0)
    assert not np.array_equal(sub, whole)
    assert abs(np.median(sub[:, 3]) - np.median(whole[:, 3])) < 0.2 < np.median(whole[:, 3])
