"""Model files (cmot._persist): round trips, and files that must be refused."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cmot import CMOT
from cmot._persist import FORMAT_VERSION, load_model, save_model
from cmot.datasets import make_multimodal

pytestmark = pytest.mark.filterwarnings("ignore::cmot.PoorlyMappedWarning")


@pytest.fixture(scope="module")
def data():
    return make_multimodal(120, 40, random_state=0)


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    model = CMOT(n_neighbors=10, random_state=0).fit(data.source_x, data.source_y, labels=data.source_labels)
    path = tmp_path_factory.mktemp("model") / "model.cmot"
    save_model(model, path)
    return model, path


def _same_state(a, b):
    assert type(a) is type(b) and set(vars(a)) == set(vars(b))
    for k, v in vars(a).items():
        w = vars(b)[k]
        if isinstance(v, np.ndarray):
            assert w.dtype == v.dtype and np.array_equal(v, w), k
        elif sp.issparse(v):
            assert w.format == v.format and (v != w).nnz == 0, k
        elif not hasattr(v, "__dict__"):
            assert type(v) is type(w) and (v == w or (v != v and w != w)), k


def test_round_trip_dense_with_labels_predicts_identically(data, saved):
    model, path = saved
    loaded = load_model(path)
    _same_state(model, loaded)
    np.testing.assert_array_equal(loaded.predict(data.target_y), model.predict(data.target_y))
    assert loaded.get_params() == model.get_params()


def test_round_trip_sparse_input(data, tmp_path):
    sx, sy = sp.csr_matrix(np.maximum(data.source_x, 0)), sp.csr_matrix(np.maximum(data.source_y - 1, 0))
    ty = sp.csr_matrix(np.maximum(data.target_y - 1, 0))
    model = CMOT(n_neighbors=10, n_pcs=None, random_state=0).fit(sx, sy)
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(ty), model.predict(ty))


def test_round_trip_with_alignment_and_correspondence(data, tmp_path):
    n = data.source_x.shape[0]
    pairs = np.c_[np.arange(0, n, 2), np.arange(0, n, 2)]  # half the source cells paired
    model = CMOT(n_neighbors=10, random_state=0).fit(data.source_x, data.source_y, correspondence=pairs)
    assert model.aligned_index_ is not None  # the alignment ran: its state is in the file
    save_model(model, tmp_path / "m.cmot")
    loaded = load_model(tmp_path / "m.cmot")
    _same_state(model, loaded)
    np.testing.assert_array_equal(loaded.predict(data.target_y), model.predict(data.target_y))


def test_round_trip_with_names_after_predict(data, tmp_path):
    sx = pd.DataFrame(data.source_x, columns=[f"g{j}" for j in range(data.source_x.shape[1])])
    names = [f"p{j}" for j in range(data.source_y.shape[1])]
    sy, ty = pd.DataFrame(data.source_y, columns=names), pd.DataFrame(data.target_y[:, ::-1], columns=names[::-1])
    model = CMOT(n_neighbors=10, random_state=0).fit(sx, sy)
    first = model.predict(ty)  # predict writes fitted attributes too (outliers_, ...)
    save_model(model, tmp_path / "m.cmot")
    loaded = load_model(tmp_path / "m.cmot")
    _same_state(model, loaded)
    pd.testing.assert_frame_equal(loaded.predict(ty), first)


def test_unfitted_model_and_unknown_values(tmp_path):
    save_model(CMOT(n_neighbors=7, random_state=np.random.RandomState(3)), tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.n_neighbors == 7 and loaded.random_state.randint(1000) == np.random.RandomState(3).randint(1000)
    model = CMOT()
    model.extra_ = {"f": lambda: 0}
    with pytest.raises(TypeError, match=r"extra_\['f'\]: cannot store an object of class builtins.function"):
        save_model(model, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


class _RunsCode:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
    flag = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"format": "cmot-model", "model": _RunsCode(flag)}, protocol=4))
    with pytest.raises(ValueError, match="found a pickle .* can run code") as exc:
        load_model(path)
    assert str(path) in str(exc.value) and "allow_pickle=True" in str(exc.value)
    assert not flag.exists()


def test_legacy_pickle_loads_with_the_opt_in(data, saved, tmp_path):
    model, _ = saved
    path = tmp_path / "old.pkl"
    path.write_bytes(pickle.dumps({"format": "cmot-model", "version": "0.3.0", "model": model}, protocol=4))
    with pytest.raises(ValueError, match="cmot 0.3"):
        load_model(path)
    with pytest.warns(UserWarning, match="cmot 0.3 pickle"):
        loaded = load_model(path, allow_pickle=True)
    np.testing.assert_array_equal(loaded.predict(data.target_y), model.predict(data.target_y))
    with pytest.raises(ValueError, match="CMOT.load\\(path, allow_pickle=True\\)"):
        CMOT.load(path)
    with pytest.warns(UserWarning, match="cmot 0.3 pickle"):
        assert isinstance(CMOT.load(path, allow_pickle=True), CMOT)  # the estimator forwards the opt-in
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"a": 1}))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="another pickle"):
        load_model(other, allow_pickle=True)


def test_truncated_file(saved, tmp_path):
    raw = saved[1].read_bytes()
    for cut in (len(raw) // 2, len(raw) - 10, 10):
        path = tmp_path / f"cut{cut}.cmot"
        path.write_bytes(raw[:cut])
        with pytest.raises(ValueError, match="truncated or corrupted") as exc:
            load_model(path)
        assert str(path) in str(exc.value)


def test_a_flipped_byte_is_an_error_or_changes_nothing(data, saved, tmp_path):
    # Bytes of the ZIP container that hold no content (timestamps, "made by" fields) may
    # change without effect; any other flipped byte must be an error, never another model.
    src = saved[1]
    model = load_model(src)  # the saved state (the fixture's model has predicted since)
    raw = src.read_bytes()
    path = tmp_path / "flipped.cmot"
    errors = 0
    want = load_model(src).predict(data.target_y)
    for pos in range(0, len(raw), max(1, len(raw) // 400)):
        bad = bytearray(raw)
        bad[pos] ^= 0x01
        path.write_bytes(bytes(bad))
        try:
            loaded = load_model(path)
        except ValueError as exc:
            assert str(path) in str(exc)
            errors += 1
            continue
        _same_state(model, loaded)
        np.testing.assert_array_equal(loaded.predict(data.target_y), want)
        model = load_model(src)
    assert errors > 300  # almost every byte is content


def _rewrite(src, dst, edit):
    """Copy the archive, letting ``edit(meta)`` change the JSON (checksum kept unless edit recomputes)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            raw = zin.read(name)
            if name == "cmot-model.json":
                meta = json.loads(raw)
                edit(meta)
                raw = json.dumps(meta).encode()
            zout.writestr(name, raw)


def test_edited_content_fails_the_checksum(saved, tmp_path):
    path = tmp_path / "edited.cmot"
    _rewrite(saved[1], path, lambda m: m["params"].update(n_neighbors=11))  # a valid archive, other content
    with pytest.raises(ValueError, match="checksum .*, found other content \\(the file was altered\\)"):
        load_model(path)


def test_newer_format_version_is_refused(saved, tmp_path):
    path = tmp_path / "newer.cmot"
    _rewrite(saved[1], path, lambda m: m.update(format_version=FORMAT_VERSION + 1, cmot_version="9.0"))
    with pytest.raises(ValueError, match=rf"format version {FORMAT_VERSION} or older, found {FORMAT_VERSION + 1} "
                                         r"\(written by cmot 9.0"):
        load_model(path)


def test_foreign_class_named_by_a_file_is_not_imported(saved, tmp_path):
    from cmot._persist import _digest

    path = tmp_path / "foreign_class.cmot"

    def edit(meta):
        meta["class"] = ["os", "system"]
        with zipfile.ZipFile(saved[1]) as zf:
            meta["sha256"] = _digest(meta, [zf.read(n) for n in meta["arrays"]])

    _rewrite(saved[1], path, edit)
    with pytest.raises(ValueError, match="a class of cmot .* found os.system"):
        load_model(path)


def test_foreign_zip_npz_and_other_files(tmp_path):
    z = tmp_path / "foreign.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(ValueError, match="cmot-model.json entry, found a ZIP archive of other files .*readme.txt"):
        load_model(z)
    npz = tmp_path / "arrays.npz"
    np.savez(npz, a=np.arange(3))
    with pytest.raises(ValueError, match="found a ZIP archive of other files .*a.npy"):
        load_model(npz)
    txt = tmp_path / "model.txt"
    txt.write_text("not a model")
    with pytest.raises(ValueError, match="found another kind of file"):
        load_model(txt)
    with pytest.raises(FileNotFoundError, match="found nothing at"):
        load_model(tmp_path / "missing.cmot")


def test_file_holds_no_pickle(saved):
    with zipfile.ZipFile(saved[1]) as zf:
        meta = json.loads(zf.read("cmot-model.json"))
        assert meta["format"] == "cmot-model" and meta["format_version"] == FORMAT_VERSION
        for name in meta["arrays"]:
            np.lib.format.read_array(io.BytesIO(zf.read(name)), allow_pickle=False)  # raises on object arrays


def test_values_the_restructure_may_add_round_trip(tmp_path):
    # small result objects of cmot (dataclasses, named tuples) and plain containers
    from cmot.datasets import PanCancer
    from cmot.metrics import WilcoxonResult

    model = CMOT(random_state=np.random.default_rng(5))
    model.result_ = PanCancer(rna=np.eye(2), atac=sp.csr_matrix(np.eye(2)), cells=None, genes=["a", "b"],
                              peaks=np.array(["p1", "p2"], dtype=object))
    model.test_ = WilcoxonResult(1.5, np.float64(0.01), 3, 0, 3)
    model.grid_ = {5: 0.5, 2.5: (1, "x"), "k": [None, True, np.int32(7)], True: sp.coo_matrix(np.ones((2, 3)))}
    save_model(model, tmp_path / "m")
    got = load_model(tmp_path / "m")
    assert isinstance(got.result_, PanCancer) and got.result_.genes == ["a", "b"]
    assert got.result_.peaks.dtype == object and got.result_.peaks.tolist() == ["p1", "p2"]
    assert got.result_.atac.format == "csr" and (got.result_.atac != model.result_.atac).nnz == 0
    assert got.test_ == model.test_ and type(got.test_.pvalue) is np.float64
    assert list(got.grid_) == [5, 2.5, "k", True] and got.grid_[2.5] == (1, "x")
    assert type(got.grid_["k"][2]) is np.int32 and got.grid_[True].format == "coo"
    assert got.random_state.integers(1000) == np.random.default_rng(5).integers(1000)


def test_expected_class(saved, tmp_path):
    from cmot.datasets import PanCancer

    assert isinstance(load_model(saved[1], expected=CMOT), CMOT)
    with pytest.raises(ValueError, match=r"expected a PanCancer model file, found a cmot\..*CMOT in"):
        load_model(saved[1], expected=PanCancer)


def test_a_file_without_a_parameter_added_later_loads_with_its_default(data, tmp_path):
    # a file written before `representation` existed: the parameter takes its default
    import zipfile as zf_

    from cmot._persist import _read_members, _write_zip

    model = CMOT(n_neighbors=10, random_state=0).fit(data.source_x, data.source_y)
    save_model(model, tmp_path / "new")
    path = str(tmp_path / "new")
    with zf_.ZipFile(path) as zf:
        meta, arrays = _read_members(zf)
    del meta["params"]["representation"], meta["sha256"]
    _write_zip(str(tmp_path / "old"), meta, arrays)
    loaded = load_model(tmp_path / "old")
    assert loaded.representation == "pca" and loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict(data.target_y), model.predict(data.target_y))
