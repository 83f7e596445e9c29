"""Data for examples, tests and the main job: a synthetic multimodal generator
that needs nothing but numpy, a reader for 10x-style Matrix Market folders
(the layout of the shared benchmark data), and the paper's preprocessing of the
pan-cancer scCAT-seq data (used by ``cmot demo`` and the benchmarks)."""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass

import numpy as np
import scipy.io
import scipy.sparse as sp

__all__ = ["Multimodal", "make_multimodal", "read_mtx_dir", "read_modality", "binarize_counts", "PanCancer",
           "load_pancancer", "PANCANCER_N_FEATURES"]

#: Genes and peaks the paper keeps of the pan-cancer data (the most variable of each).
PANCANCER_N_FEATURES = 10_000


@dataclass
class Multimodal:
    """Source cells in X and Y, target cells in Y (and their true X, for scoring)."""

    source_x: np.ndarray
    source_y: np.ndarray
    target_y: np.ndarray
    target_x: np.ndarray
    source_labels: np.ndarray
    target_labels: np.ndarray


def make_multimodal(
    n_source: int = 300,
    n_target: int = 100,
    *,
    n_types: int = 3,
    n_latent: int = 5,
    n_x_features: int = 30,
    n_y_features: int = 60,
    noise: float = 0.3,
    target_shift: float = 0.0,
    new_type_fraction: float = 0.0,
    random_state=None,
) -> Multimodal:
    """Simulate paired X/Y cells from a shared latent state with cell types.

    Each cell has a type (cluster centre in ``n_latent`` dimensions) plus noise;
    X and Y are different random nonlinear maps of the latent state.  Target cells
    can be shifted in Y (a batch effect) and can include a type absent from the
    source (``new_type_fraction``), labelled ``n_types``.

    Examples
    --------
    >>> d = make_multimodal(50, 20, random_state=0)
    >>> d.source_x.shape, d.source_y.shape, d.target_y.shape
    ((50, 30), (50, 60), (20, 60))
    """
    rng = np.random.default_rng(random_state)
    centres = rng.normal(scale=3.0, size=(n_types + 1, n_latent))
    wx = rng.normal(size=(n_latent, n_x_features)) / np.sqrt(n_latent)
    wy = rng.normal(size=(n_latent, n_y_features)) / np.sqrt(n_latent)

    def cells(n, types):
        z = centres[types] + rng.normal(size=(n, n_latent))
        x = np.tanh(z @ wx) * 2 + 2 + noise * rng.normal(size=(n, n_x_features))
        y = np.log1p(np.exp(z @ wy)) + noise * rng.normal(size=(n, n_y_features))
        return x, y

    s_types = rng.integers(0, n_types, n_source)
    n_new = int(round(new_type_fraction * n_target))
    t_types = np.r_[rng.integers(0, n_types, n_target - n_new), np.full(n_new, n_types)]
    sx, sy = cells(n_source, s_types)
    tx, ty = cells(n_target, t_types)
    ty = ty + target_shift
    return Multimodal(sx, sy, ty, tx, s_types, t_types)


def _read_lines(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        return [line.rstrip("\n") for line in fh]


def read_mtx_dir(path: str, modality: str):
    """Read ``<modality>.mtx(.gz)``, ``<modality>_features.txt`` and ``cells.tsv`` from ``path``.

    Returns
    -------
    matrix : scipy.sparse.csr_matrix, cells x features
    cells : pandas.DataFrame, one row per cell (index: cell names; further columns: labels)
    features : list of str
    """
    import pandas as pd

    mtx = None
    for ext in (".mtx.gz", ".mtx"):
        cand = os.path.join(path, modality + ext)
        if os.path.exists(cand):
            mtx = cand
            break
    if mtx is None:
        raise FileNotFoundError(f"path: expected {modality}.mtx or {modality}.mtx.gz in {path}, found neither.")
    from .io import unreadable

    with unreadable(mtx, "Matrix Market file"):
        m = sp.csr_matrix(scipy.io.mmread(mtx).T)
    feature_file = os.path.join(path, f"{modality}_features.txt")
    with unreadable(feature_file, "feature list"):
        features = _read_lines(feature_file)
    with unreadable(os.path.join(path, "cells.tsv"), "cells.tsv table"):
        cells = pd.read_csv(os.path.join(path, "cells.tsv"), sep="\t", dtype=str).set_index("cell")
    if m.shape != (len(cells), len(features)):
        raise ValueError(
            f"{path}: {modality}.mtx has shape {m.shape[::-1]} (features x cells), "
            f"expected ({len(features)}, {len(cells)}) from the feature and cell lists."
        )
    return m, cells, features


def read_modality(path: str, modality: str):
    """Read one modality of a Matrix Market folder as an AnnData (cells x features)."""
    import anndata
    import pandas as pd

    m, cells, features = read_mtx_dir(path, modality)
    return anndata.AnnData(X=m, obs=cells, var=pd.DataFrame(index=pd.Index(features)))


def binarize_counts(m):
    """Measured counts as 0/1 (any read -> 1, as for ATAC peaks), in float64.

    Sparse input stays sparse (CSR, explicit zeros removed).  For inferred
    profiles (min-max normalization, then a cut) use :func:`cmot.metrics.binarize`.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> binarize_counts(np.array([[0, 3], [1, 0]])).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    >>> binarize_counts(sp.csr_matrix([[0.0, 2.0], [-1.0, 0.0]])).toarray().tolist()
    [[0.0, 1.0], [0.0, 0.0]]
    """
    if sp.issparse(m):
        out = sp.csr_matrix(m, dtype=np.float64, copy=True)
        out.data = (out.data > 0).astype(np.float64)
        out.eliminate_zeros()
        return out
    return (np.asarray(m) > 0).astype(np.float64)


@dataclass
class PanCancer:
    """The pan-cancer scCAT-seq cells preprocessed as in the paper (see :func:`load_pancancer`)."""

    rna: np.ndarray  # cells x genes, counts
    atac: np.ndarray  # cells x peaks, binarized
    cells: object  # pandas.DataFrame indexed by cell name (column cell_line)
    genes: list
    peaks: list


def load_pancancer(path: str, n_features: int = PANCANCER_N_FEATURES) -> PanCancer:
    """Read ``rna`` and ``atac`` of the pan-cancer Matrix Market folder ``path`` and
    preprocess them as the paper does.

    The ``n_features`` most variable genes and the ``n_features`` most variable
    peaks (variance over all cells, peaks ranked on their read counts; ties in
    column order, columns kept in file order), then the peaks binarized (any read
    -> 1).  Both are returned dense, in float64.
    """
    from .infer import variable_features

    rna, cells, genes = read_mtx_dir(path, "rna")
    atac, _, peaks = read_mtx_dir(path, "atac")
    g = variable_features(rna, n_features)
    p = variable_features(atac, n_features)
    return PanCancer(
        rna=sp.csr_matrix(rna[:, g], dtype=np.float64).toarray(),
        atac=binarize_counts(atac[:, p]).toarray(),
        cells=cells,
        genes=[genes[i] for i in g],
        peaks=[peaks[i] for i in p],
    )
