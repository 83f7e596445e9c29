import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from cmot.datasets import read_mtx_dir
from cmot.io import matrix_format, read_matrix, read_obs, write_matrix

CELLS = ["c3", "c1", "c2", "c10"]  # deliberately not sorted
FEATS = ["g2", "g1", "g3"]


@pytest.fixture
def mat():
    return np.array([[0.0, 1.5, -2.25], [3.0, 0.0, 0.0], [1e-8, 2.0, 7.0], [0.0, 0.0, 1.0]])


@pytest.mark.parametrize("name", ["m.csv", "m.tsv", "m.csv.gz", "m.h5ad", "mtxdir"])
def test_roundtrip_keeps_values_and_name_order(tmp_path, mat, name):
    path = tmp_path / name
    kw = {"modality": "rna"} if name == "mtxdir" else {}
    write_matrix(path, mat, CELLS, FEATS, **kw)
    m, cells, feats = read_matrix(path, **kw)
    m = m.toarray() if sp.issparse(m) else m
    assert np.array_equal(m, mat)
    assert cells.tolist() == CELLS and feats.tolist() == FEATS


def test_mtx_dir_layout_matches_shared_data(tmp_path, mat):
    d = tmp_path / "out"
    write_matrix(d, sp.csr_matrix(mat), CELLS, FEATS, modality="rna")
    # a second modality of the same cells goes into the same folder
    write_matrix(d, mat[:, :2], CELLS, ["p1", "p2"], modality="adt")
    assert sorted(os.listdir(d)) == ["adt.mtx.gz", "adt_features.txt", "cells.tsv", "rna.mtx.gz", "rna_features.txt"]
    m, cells_df, feats = read_mtx_dir(str(d), "rna")  # the core's reader agrees
    assert np.array_equal(m.toarray(), mat) and cells_df.index.tolist() == CELLS and feats == FEATS
    import scipy.io

    assert scipy.io.mmread(str(d / "rna.mtx.gz")).shape == (3, 4)  # features x cells
    with pytest.raises(ValueError, match="other cells"):
        write_matrix(d, mat[:2], CELLS[:2], FEATS, modality="x")


def test_dataframe_names_and_transposed_csv(tmp_path, mat):
    df = pd.DataFrame(mat, index=CELLS, columns=FEATS)
    write_matrix(tmp_path / "a.csv", df)
    m, cells, feats = read_matrix(tmp_path / "a.csv")
    assert cells.tolist() == CELLS and feats.tolist() == FEATS
    df.T.to_csv(tmp_path / "t.csv")
    m2, cells2, feats2 = read_matrix(tmp_path / "t.csv", transpose=True)
    assert np.array_equal(m2, mat) and cells2.tolist() == CELLS and feats2.tolist() == FEATS
    # default names when none are given
    write_matrix(tmp_path / "b.tsv", mat)
    _, c, f = read_matrix(tmp_path / "b.tsv")
    assert c.tolist() == ["cell0", "cell1", "cell2", "cell3"] and f.tolist() == ["feature0", "feature1", "feature2"]


def test_read_obs(tmp_path, mat):
    d = tmp_path / "d"
    write_matrix(d, mat, CELLS, FEATS, modality="rna")
    pd.DataFrame({"cell": CELLS, "type": ["a", "b", "a", "b"]}).to_csv(d / "cells.tsv", sep="\t", index=False)
    assert read_obs(d)["type"].tolist() == ["a", "b", "a", "b"]
    assert read_obs(d).index.tolist() == CELLS
    pd.DataFrame({"cell": CELLS, "t": [1, 2, 3, 4]}).to_csv(tmp_path / "l.csv", index=False)
    assert read_obs(tmp_path / "l.csv")["t"].tolist() == ["1", "2", "3", "4"]
    import anndata

    ad = anndata.AnnData(X=mat, obs=pd.DataFrame({"type": list("abab")}, index=CELLS))
    ad.write_h5ad(tmp_path / "a.h5ad")
    assert read_obs(tmp_path / "a.h5ad")["type"].tolist() == list("abab")
    m, cells, _ = read_matrix(tmp_path / "a.h5ad")
    assert cells.tolist() == CELLS and np.array_equal(m, mat)


def test_shared_data_if_present():
    path = os.path.join(os.environ.get("CMOT_DATA", ""), "pbmc10k")
    if not os.environ.get("CMOT_DATA") or not os.path.isdir(path):
        pytest.skip("shared data not present (set CMOT_DATA)")
    m, cells, feats = read_matrix(path, "adt")
    assert m.shape == (6855, 14) and len(cells) == 6855 and feats[0] == "CD3"


def test_errors(tmp_path, mat):
    with pytest.raises(FileNotFoundError, match="nothing at"):
        read_matrix(tmp_path / "missing.csv")
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(ValueError, match=r"extension \.xlsx"):
        read_matrix(tmp_path / "x.xlsx")
    with pytest.raises(ValueError, match="extension .parquet"):
        write_matrix(tmp_path / "x.parquet", mat)
    d = tmp_path / "d"
    write_matrix(d, mat, CELLS, FEATS, modality="rna")
    with pytest.raises(ValueError, match=r"modality: expected the modality.*\(one of: rna\)"):
        read_matrix(d)
    with pytest.raises(ValueError, match="modality: expected one of rna"):
        read_matrix(d, "atac")
    with pytest.raises(ValueError, match="modality: expected a name"):
        write_matrix(tmp_path / "e", mat)
    with pytest.raises(ValueError, match="cell_names: expected 4 names"):
        write_matrix(tmp_path / "a.csv", mat, CELLS[:3])
    with pytest.raises(ValueError, match="feature_names: expected 3 names"):
        write_matrix(tmp_path / "a.csv", mat, CELLS, ["a"])
    with pytest.raises(ValueError, match="modality: only used"):
        write_matrix(tmp_path / "a.csv", mat, modality="rna")
    (tmp_path / "bad.csv").write_text("cell,g1\nc1,abc\n")
    with pytest.raises(TypeError, match="non-numeric"):
        read_matrix(tmp_path / "bad.csv")
    with pytest.raises(ValueError, match="transpose"):
        read_matrix(d, "rna", transpose=True)
    assert matrix_format(d) == "mtx"


def _damaged(tmp_path, mat):
    """name -> (path, modality, the error's class in the underlying reader) for damaged inputs."""
    import gzip
    import shutil

    good = tmp_path / "good"
    write_matrix(good, mat, CELLS, FEATS, modality="rna")
    write_matrix(tmp_path / "good.h5ad", mat, CELLS, FEATS)
    write_matrix(tmp_path / "good.csv", mat, CELLS, FEATS)
    cases = {}
    bad_value = gzip.compress(b"%%MatrixMarket matrix coordinate real general\n3 4 1\n1 1 x\n")
    for name, content in (("truncated_mtx", (good / "rna.mtx.gz").read_bytes()[:-20]),
                          ("not_gzip_mtx", b"hello world"), ("bad_mtx_value", bad_value)):
        d = tmp_path / name
        shutil.copytree(good, d)
        (d / "rna.mtx.gz").write_bytes(content)
        cases[name] = (d, "rna", d / "rna.mtx.gz")
    raw = (tmp_path / "good.h5ad").read_bytes()
    for name, content in (("truncated.h5ad", raw[: len(raw) // 2]), ("junk.h5ad", b"junk" * 100),
                          ("binary.csv", bytes(range(128, 256)) * 3), ("ragged.csv", b"cell,a,b\nc1,1,2\nc2,1,2,3,4\n"),
                          ("empty.csv", b""),
                          ("truncated.csv.gz", gzip.compress((tmp_path / "good.csv").read_bytes())[:-8])):
        (tmp_path / name).write_bytes(content)
        cases[name] = (tmp_path / name, None, tmp_path / name)
    return cases


def test_damaged_files_are_one_valueerror_naming_the_file(tmp_path, mat):
    for name, (path, modality, culprit) in _damaged(tmp_path, mat).items():
        with pytest.raises(ValueError, match="found a damaged or truncated file") as exc:
            read_matrix(path, modality)
        msg = str(exc.value)
        assert str(culprit) in msg and "\n" not in msg, name
    (tmp_path / "labels.csv").write_bytes(bytes(range(128, 256)))
    with pytest.raises(ValueError, match="labels.csv.*UnicodeDecodeError"):
        read_obs(tmp_path / "labels.csv")


def test_repeated_names_are_read_as_written(tmp_path):
    # pandas renames a repeated header ("g1" -> "g1.1"); the reader keeps the file's names so
    # that callers can refuse them instead of matching a renamed column
    (tmp_path / "dup.csv").write_text("cell,g1,g2,g1\nc1,1,2,3\nc1,4,5,6\n")
    m, cells, feats = read_matrix(tmp_path / "dup.csv")
    assert feats.tolist() == ["g1", "g2", "g1"] and cells.tolist() == ["c1", "c1"]
    assert m.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    m, cells, feats = read_matrix(tmp_path / "dup.csv", transpose=True)
    assert cells.tolist() == ["g1", "g2", "g1"] and feats.tolist() == ["c1", "c1"]
