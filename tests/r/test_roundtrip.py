"""Round trips Python -> R (Seurat + the cmot R package) -> Python on real data.

Each scenario builds Seurat objects in R from a small subset of the shared real
data, runs ``RunCMOT`` through the R package (child Rscript; see conftest.py),
brings the new assay back to Python (SingleCellExperiment -> anndata2ri) and
checks it against the Python core run here on the same cells, parameters and
seed: same values (tight tolerance), same cell names and order, feature names
as Seurat renames them (``_``/``|`` -> ``-``), and nothing else in the query
changed (other assays, meta.data, DefaultAssay, reductions, idents) apart from
the two documented meta.data columns, whose values are also checked.

Scenarios (all seed 0):

=============================  ==========================================================
pc_rna_from_atac_sparse        pancancer, RNA from ATAC; ATAC (peaks named with "_")
                               sparse dgCMatrix, RNA refdata dense; query cells shuffled.
pc_rna_from_atac_dense         the same with dense ATAC assays (compared to the same core
                               run, and to the sparse scenario).
pc_atac_from_rna_labels        pancancer, ATAC (underscored peak names) from dense RNA;
                               user labels (cell line); query holds its measured ATAC too.
pc_reference_x_reordered       fully paired reference split into two objects, X cells in
                               reverse order (matched by name).
pc_partly_paired_names         partly paired reference (120 ATAC cells, 124 RNA cells,
                               80 shared): pairs = "names", manifold alignment.
pc_partly_paired_table         the same with 30 known pairs given as a data.frame.
pbmc_protein_from_rna          pbmc10k, 14 CLR proteins from 4,000 log-normalized genes
                               (sparse); cell-type labels; query genes in another order,
                               extra ADT assay, a reduction and custom idents.
pbmc_refdata_labels_protein    pbmc10k, one call with refdata = list(celltype = "cell_type",
                               ADT = "ADT") as TransferData takes it: cell types transferred
                               (predicted.celltype, its score, prediction.score.celltype;
                               class names with '+' and ' ') and proteins inferred; query
                               cells shuffled.
=============================  ==========================================================
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _data  # noqa: E402  (the benchmark loaders' normalization and feature selection)


pytestmark = [pytest.mark.r, pytest.mark.slow]

HERE = Path(__file__).resolve().parent
SEED = 0
RTOL = 1e-9
ATOL = 1e-10

# Settings of these tests (R names), on top of the R package's defaults.  Every scenario passes
# every CMOT parameter explicitly to both sides (r_params: the R package's own name map and
# defaults, read from the one place it declares them), so that no parameter is left to the
# defaults of either side.
SETTINGS = {"n.components": 10, "align.neighbors": 5, "mu": 0.5, "reg.e": None, "reg.cl": 1.0, "n.clusters": 2,
            "k": 30, "n.features": 150, "max.iter": 10, "max.inner.iter": 200, "tol": 1e-9,
            "outlier.threshold": 3.5, "seed": SEED}


@dataclass
class RParams:
    r2py: dict  # R name -> Python name
    defaults: dict  # R name -> default of RunCMOT.default, as a Python value


def _parse_r_value(type_: str, text: str):
    return {"NULL": lambda t: None, "character": str, "logical": lambda t: t == "TRUE", "integer": int,
            "double": float}[type_](text)


@pytest.fixture(scope="session")
def r_params(r_stack, run_rscript) -> RParams:
    """The CMOT parameters as the R package declares them (tests/r/cmot_params.R, a child Rscript)."""
    proc = run_rscript(HERE / "cmot_params.R", timeout=120)
    if proc.returncode != 0:
        pytest.fail(f"Rscript cmot_params.R failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    r2py, defaults = {}, {}
    for line in proc.stdout.splitlines():
        r, py, type_, text = line.split("\t")
        r2py[r] = py
        defaults[r] = _parse_r_value(type_, text)
    return RParams(r2py, defaults)


def seurat_name(name: str) -> str:
    return name.replace("_", "-").replace("|", "-")


# ----------------------------------------------------------------- data (read in Python)
def _read(data: Path, dataset: str, modality: str):
    from cmot.datasets import read_mtx_dir

    m, cells, feats = read_mtx_dir(str(data / dataset), modality)
    return sp.csr_matrix(m, dtype=np.float64), cells, feats  # cells x features


def _split(labels, test_frac=0.2, seed=SEED):
    """Stratified split (sorted train, sorted test indices)."""
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for lab in sorted(set(labels)):
        idx = np.flatnonzero(np.asarray(labels) == lab)
        idx = rng.permutation(idx)
        n_te = int(round(test_frac * idx.size))
        te += idx[:n_te].tolist()
        tr += idx[n_te:].tolist()
    return np.sort(tr), np.sort(te)


@dataclass
class Pancancer:
    rna: np.ndarray  # cells x genes, dense
    atac: sp.csr_matrix  # cells x peaks, binarized
    genes: list
    peaks: list
    cells: np.ndarray
    cell_line: np.ndarray
    train: np.ndarray
    test: np.ndarray


def load_pancancer(data: Path, n_features=2000) -> Pancancer:
    """The pan-cancer cells as cmot.datasets preprocesses them (the paper's protocol), ATAC sparse."""
    from cmot.datasets import load_pancancer as load

    pc = load(str(data / "pancancer"), n_features=n_features)
    lab = pc.cells["cell_line"].to_numpy()
    tr, te = _split(lab)
    return Pancancer(rna=pc.rna, atac=sp.csr_matrix(pc.atac), genes=pc.genes, peaks=pc.peaks,
                     cells=pc.cells.index.to_numpy(), cell_line=lab, train=tr, test=te)


@dataclass
class Pbmc:
    rna: sp.csr_matrix  # log-normalized
    adt: np.ndarray  # CLR
    genes: list
    proteins: list
    cells: np.ndarray
    cell_type: np.ndarray
    train: np.ndarray
    test: np.ndarray


def load_pbmc(data: Path, n_ref=300, n_query=120) -> Pbmc:
    rna, cells, genes = _read(data, "pbmc10k", "rna")
    adt, _, proteins = _read(data, "pbmc10k", "adt")
    rna = _data.log_normalize(rna)
    adt = _data.clr(adt)
    lab = cells["cell_type"].to_numpy()
    rng = np.random.default_rng(SEED)
    pick = rng.choice(np.flatnonzero(lab != "unlabelled"), n_ref + n_query, replace=False)
    return Pbmc(rna=rna, adt=adt, genes=genes, proteins=proteins, cells=cells.index.to_numpy(), cell_type=lab,
                train=np.sort(pick[:n_ref]), test=np.sort(pick[n_ref:]))


# ----------------------------------------------------------------- scenarios
@dataclass
class Scenario:
    name: str
    query: dict  # assays etc. (see _build_seurat)
    reference: dict
    reference_x: dict | None
    r_args: dict  # RunCMOT arguments (R names)
    params: dict  # core parameters (R names), also passed to R
    # Python core inputs
    source_x: object
    source_y: object
    target_y: object
    correspondence: object = None
    labels: object = None
    x_features: list = field(default_factory=list)
    query_cells: list = field(default_factory=list)
    new_assay: str = "CMOT"
    transfer_labels: dict | None = None  # name -> per-source-cell labels (refdata naming meta.data columns)
    meta_prefix: str | None = None  # of <prefix>.poorly.mapped etc.: tolower(new.assay.name), "cmot" by default
    truth: object = None  # the query cells' true labels, where known

    @property
    def added_assays(self) -> list:
        return sorted([self.new_assay] + [f"prediction.score.{n}" for n in (self.transfer_labels or {})])

    @property
    def prefix(self) -> str:
        return self.meta_prefix or self.new_assay.lower()

    @property
    def added_meta(self) -> list:
        cols = [f"{self.prefix}.poorly.mapped", f"{self.prefix}.mapping.score"]
        for n in self.transfer_labels or {}:
            cols += [f"predicted.{n}", f"predicted.{n}.score"]
        return cols

    def r_params(self, rp: RParams) -> dict:
        """Every CMOT parameter (R names): the R package's defaults, these tests' settings, the scenario's."""
        return {**rp.defaults, **SETTINGS, **self.params}

    def python_params(self, rp: RParams) -> dict:
        return {rp.r2py[k]: v for k, v in self.r_params(rp).items()}


def _assay(matrix, cells, features, kind):
    """An assay spec: matrix is cells x features (numpy or scipy); kind 'sparse' or 'dense'."""
    return {"m": matrix, "cells": list(cells), "features": list(features), "kind": kind}


def make_scenarios(pc: Pancancer, pb: Pbmc) -> list:
    rng = np.random.default_rng(SEED)
    sc = []
    tr, te = pc.train, pc.test
    c_tr, c_te = pc.cells[tr], pc.cells[te]
    lab_tr = pc.cell_line[tr]

    # 1, 2: RNA from ATAC, query cells shuffled; sparse or dense ATAC
    perm = rng.permutation(len(te))
    q_cells = c_te[perm]
    paper_rna = {"reg.e": 5e3, "reg.cl": 1.0, "n.clusters": 2, "k": 40, "n.features": 150}
    for kind in ("sparse", "dense"):
        atac = (lambda m: m) if kind == "sparse" else (lambda m: m.toarray())
        sc.append(Scenario(
            name=f"pc_rna_from_atac_{kind}",
            query={"assays": {"ATAC": _assay(atac(pc.atac[te][perm]), q_cells, pc.peaks, kind)},
                   "default": "ATAC", "meta": {"cell_line": pc.cell_line[te][perm]}},
            reference={"assays": {"ATAC": _assay(atac(pc.atac[tr]), c_tr, pc.peaks, kind),
                                  "RNA": _assay(pc.rna[tr], c_tr, pc.genes, "dense")},
                       "default": "ATAC", "meta": {"cell_line": lab_tr}},
            reference_x=None,
            r_args={"reference.assay": "ATAC", "refdata.assay": "RNA", "query.assay": "ATAC"},
            params=paper_rna,
            source_x=pc.rna[tr], source_y=atac(pc.atac[tr]), target_y=atac(pc.atac[te][perm]),
            x_features=pc.genes, query_cells=list(q_cells),
        ))

    # 3: ATAC (underscored names) from RNA, user labels, query with its measured ATAC
    sc.append(Scenario(
        name="pc_atac_from_rna_labels",
        query={"assays": {"RNA": _assay(pc.rna[te], c_te, pc.genes, "dense"),
                          "ATAC": _assay(pc.atac[te], c_te, pc.peaks, "sparse")},
               "default": "RNA", "meta": {"cell_line": pc.cell_line[te]}},
        reference={"assays": {"RNA": _assay(pc.rna[tr], c_tr, pc.genes, "dense"),
                              "ATAC": _assay(pc.atac[tr], c_tr, pc.peaks, "sparse")},
                   "default": "RNA", "meta": {"cell_line": lab_tr}},
        reference_x=None,
        r_args={"reference.assay": "RNA", "refdata.assay": "ATAC", "query.assay": "RNA", "labels": "cell_line",
                "new.assay.name": "ATACpred"},
        params={"reg.e": 1e3, "reg.cl": 1.0, "k": 10, "n.features": 50},
        source_x=pc.atac[tr], source_y=pc.rna[tr], target_y=pc.rna[te], labels=lab_tr,
        x_features=pc.peaks, query_cells=list(c_te), new_assay="ATACpred",
    ))

    # 4: fully paired, X in a second object with the cells in reverse order
    rev = tr[::-1]
    sc.append(Scenario(
        name="pc_reference_x_reordered",
        query={"assays": {"ATAC": _assay(pc.atac[te], c_te, pc.peaks, "sparse")}, "default": "ATAC", "meta": {}},
        reference={"assays": {"ATAC": _assay(pc.atac[tr], c_tr, pc.peaks, "sparse")}, "default": "ATAC",
                   "meta": {"cell_line": lab_tr}},
        reference_x={"assays": {"RNA": _assay(pc.rna[rev], pc.cells[rev], pc.genes, "dense")}, "default": "RNA",
                     "meta": {}},
        r_args={"reference.assay": "ATAC", "refdata.assay": "RNA", "query.assay": "ATAC"},
        params=paper_rna,
        source_x=pc.rna[tr], source_y=pc.atac[tr], target_y=pc.atac[te],
        x_features=pc.genes, query_cells=list(c_te),
    ))

    # 5, 6: partly paired reference: Y (ATAC) cells tr[:120], X (RNA) cells tr[40:], 80 shared
    y_idx, x_idx = tr[:120], tr[40:]
    y_cells, x_cells = pc.cells[y_idx], pc.cells[x_idx]
    shared = [c for c in y_cells if c in set(x_cells)]
    xpos = {c: i for i, c in enumerate(x_cells)}
    ypos = {c: i for i, c in enumerate(y_cells)}
    all_pairs = np.array([[xpos[c], ypos[c]] for c in shared])
    known = sorted(rng.choice(len(shared), 30, replace=False))
    align = {"n.components": 10, "align.neighbors": 5, "mu": 0.5, "reg.e": 5e3, "k": 40}
    for variant, pairs_r, corr in (
        ("names", "names", all_pairs),
        ("table", pd.DataFrame({"x": [shared[i] for i in known], "y": [shared[i] for i in known]}), all_pairs[known]),
    ):
        sc.append(Scenario(
            name=f"pc_partly_paired_{variant}",
            query={"assays": {"ATAC": _assay(pc.atac[te], c_te, pc.peaks, "sparse")}, "default": "ATAC", "meta": {}},
            reference={"assays": {"ATAC": _assay(pc.atac[y_idx], y_cells, pc.peaks, "sparse")}, "default": "ATAC",
                       "meta": {}},
            reference_x={"assays": {"RNA": _assay(pc.rna[x_idx], x_cells, pc.genes, "dense")}, "default": "RNA",
                         "meta": {}},
            r_args={"reference.assay": "ATAC", "refdata.assay": "RNA", "query.assay": "ATAC", "pairs": pairs_r},
            params=align,
            source_x=pc.rna[x_idx], source_y=pc.atac[y_idx], target_y=pc.atac[te], correspondence=corr,
            x_features=pc.genes, query_cells=list(c_te),
        ))

    # 7: pbmc protein from RNA; query genes permuted, extra assay, reduction, idents
    gperm = rng.permutation(len(pb.genes))
    tr, te = pb.train, pb.test
    sc.append(Scenario(
        name="pbmc_protein_from_rna",
        query={"assays": {"RNA": _assay(pb.rna[te][:, gperm], pb.cells[te], [pb.genes[i] for i in gperm], "sparse"),
                          "ADT": _assay(pb.adt[te], pb.cells[te], pb.proteins, "dense")},
               "default": "RNA", "meta": {"cell_type": pb.cell_type[te]}, "idents": "cell_type",
               "reduction": True},
        reference={"assays": {"RNA": _assay(pb.rna[tr], pb.cells[tr], pb.genes, "sparse"),
                              "ADT": _assay(pb.adt[tr], pb.cells[tr], pb.proteins, "dense")},
                   "default": "RNA", "meta": {"cell_type": pb.cell_type[tr]}},
        reference_x=None,
        r_args={"reference.assay": "RNA", "refdata.assay": "ADT", "query.assay": "RNA", "labels": "cell_type"},
        params={"reg.e": None, "k": 30, "n.features": 150},
        source_x=pb.adt[tr], source_y=pb.rna[tr], target_y=pb.rna[te], labels=pb.cell_type[tr],
        x_features=pb.proteins, query_cells=list(pb.cells[te]),
    ))

    # 8: refdata = list(celltype = "cell_type", ADT = "ADT"): labels and proteins in one call, query shuffled
    qperm = rng.permutation(len(te))
    sc.append(Scenario(
        name="pbmc_refdata_labels_protein",
        query={"assays": {"RNA": _assay(pb.rna[te][qperm], pb.cells[te][qperm], pb.genes, "sparse")},
               "default": "RNA", "meta": {}},
        reference={"assays": {"RNA": _assay(pb.rna[tr], pb.cells[tr], pb.genes, "sparse"),
                              "ADT": _assay(pb.adt[tr], pb.cells[tr], pb.proteins, "dense")},
                   "default": "RNA", "meta": {"cell_type": pb.cell_type[tr]}},
        reference_x=None,
        r_args={"reference.assay": "RNA", "query.assay": "RNA", "labels": "cell_type",
                "refdata": {"celltype": "cell_type", "ADT": "ADT"}},
        params={"reg.e": None, "k": 30, "n.features": 150},
        source_x=pb.adt[tr], source_y=pb.rna[tr], target_y=pb.rna[te][qperm], labels=pb.cell_type[tr],
        x_features=pb.proteins, query_cells=list(pb.cells[te][qperm]), new_assay="ADT",
        transfer_labels={"celltype": pb.cell_type[tr]}, truth=pb.cell_type[te][qperm], meta_prefix="cmot",
    ))
    return sc


# ----------------------------------------------------------------- Python -> R
R_HELPERS = r"""
function() {
  e <- new.env()
  e$sparse <- function(i, p, x, nr, nc, rn, cn) {
    Matrix::sparseMatrix(i = i, p = p, x = x, dims = c(nr, nc), dimnames = list(rn, cn), index1 = FALSE)
  }
  e$dense <- function(x, nr, nc, rn, cn) matrix(x, nrow = nr, ncol = nc, dimnames = list(rn, cn))
  e$seurat <- function(assays, default, meta, idents = NULL, reduction = FALSE) {
    # SeuratObject 5: Assay5 objects, with the values as data (and as counts when sparse),
    # as SeuratObject 4's CreateAssayObject() makes them
    v5 <- utils::packageVersion("SeuratObject") >= "5.0.0"
    mk <- function(m) {
      if (v5 && inherits(m, "dgCMatrix")) SeuratObject::CreateAssay5Object(counts = m, data = m)
      else if (v5) SeuratObject::CreateAssay5Object(data = SeuratObject::as.sparse(m))
      else if (inherits(m, "dgCMatrix")) SeuratObject::CreateAssayObject(counts = m)
      else SeuratObject::CreateAssayObject(data = m)
    }
    obj <- suppressWarnings(SeuratObject::CreateSeuratObject(mk(assays[[default]]), assay = default))
    for (a in setdiff(names(assays), default)) obj <- suppressWarnings(cmot:::.add_assay(obj, a, mk(assays[[a]])))
    SeuratObject::DefaultAssay(obj) <- default
    for (col in names(meta)) obj[[col]] <- meta[[col]]
    if (!is.null(idents)) SeuratObject::Idents(obj) <- idents
    if (isTRUE(reduction)) {
      set.seed(1)
      emb <- matrix(rnorm(ncol(obj) * 3), ncol = 3, dimnames = list(colnames(obj), paste0("PC_", 1:3)))
      obj[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = emb, key = "PC_", assay = default)
    }
    obj
  }
  e
}
"""


def _to_r(ro, helpers, spec):
    m, cells, feats = spec["m"], spec["cells"], spec["features"]
    if spec["kind"] == "sparse":
        csc = sp.csr_matrix(m, dtype=np.float64)  # cells x features CSR == features x cells CSC
        csc.sort_indices()
        return helpers["sparse"](ro.IntVector(csc.indices.tolist()), ro.IntVector(csc.indptr.tolist()),
                                 ro.FloatVector(csc.data.tolist()), len(feats), len(cells),
                                 ro.StrVector(feats), ro.StrVector(cells))
    d = np.ascontiguousarray(m.toarray() if sp.issparse(m) else m, dtype=np.float64)
    return helpers["dense"](ro.FloatVector(d.ravel().tolist()), len(feats), len(cells),
                            ro.StrVector(feats), ro.StrVector(cells))


def _seurat(ro, helpers, obj):
    assays = ro.ListVector({k: _to_r(ro, helpers, v) for k, v in obj["assays"].items()})
    meta = ro.ListVector({k: ro.StrVector([str(x) for x in v]) for k, v in obj["meta"].items()})
    idents = ro.NULL
    if obj.get("idents"):
        idents = ro.StrVector([str(x) for x in obj["meta"][obj["idents"]]])
    return helpers["seurat"](assays, obj["default"], meta, idents, bool(obj.get("reduction", False)))


def _r_value(ro, v):
    if v is None:
        return ro.NULL
    if isinstance(v, str):
        return ro.StrVector([v])
    if isinstance(v, (bool, np.bool_)):
        return ro.BoolVector([bool(v)])
    if isinstance(v, (int, np.integer)):
        return ro.IntVector([int(v)])
    if isinstance(v, float):
        return ro.FloatVector([v])
    if isinstance(v, dict):  # a named list, e.g. refdata
        return ro.ListVector({k: _r_value(ro, x) for k, x in v.items()})
    if isinstance(v, pd.DataFrame):
        return ro.DataFrame({c: ro.StrVector(v[c].astype(str).tolist()) for c in v.columns})
    raise TypeError(type(v))


@dataclass
class Outcome:
    scenario: Scenario
    result: object  # R list(object, error, warnings, messages, seconds)
    before: object  # R Seurat query before RunCMOT
    session: object


@pytest.fixture(scope="session")
def roundtrip(r_stack, shared_data, run_rscript, r_params):
    ro = r_stack
    helpers = ro.r(R_HELPERS)()
    pc = load_pancancer(shared_data)
    pb = load_pbmc(shared_data)
    scenarios = make_scenarios(pc, pb)
    inputs = {}
    for s in scenarios:
        args = {k: _r_value(ro, v) for k, v in {**s.r_params(r_params), **s.r_args}.items()}
        args["verbose"] = ro.BoolVector([False])
        item = {"query": _seurat(ro, helpers, s.query), "reference": _seurat(ro, helpers, s.reference),
                "args": ro.ListVector(args)}
        if s.reference_x is not None:
            item["reference.x"] = _seurat(ro, helpers, s.reference_x)
        inputs[s.name] = ro.ListVector(item)
    with tempfile.TemporaryDirectory(prefix="cmot-r-roundtrip-") as tmp:
        fin, fout = Path(tmp) / "in.rds", Path(tmp) / "out.rds"
        ro.r["saveRDS"](ro.ListVector(inputs), str(fin))
        proc = run_rscript(HERE / "run_cmot_scenarios.R", fin, fout)
        if proc.returncode != 0:
            pytest.fail(f"Rscript run_cmot_scenarios.R failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
        before = ro.r["readRDS"](str(fin))
        out = ro.r["readRDS"](str(fout))
    res = {}
    for s in scenarios:
        res[s.name] = Outcome(s, out.rx2(s.name), before.rx2(s.name).rx2("query"), out.rx2(".session"))
    return res


SCENARIOS = ["pc_rna_from_atac_sparse", "pc_rna_from_atac_dense", "pc_atac_from_rna_labels",
             "pc_reference_x_reordered", "pc_partly_paired_names", "pc_partly_paired_table", "pbmc_protein_from_rna",
             "pbmc_refdata_labels_protein"]


# ----------------------------------------------------------------- R -> Python
R_TO_SCE = r"""
function(obj, assay) {
  m <- if (utils::packageVersion("SeuratObject") >= "5.0.0") {
    SeuratObject::LayerData(obj, assay = assay, layer = "data")
  } else {
    SeuratObject::GetAssayData(obj, slot = "data", assay = assay)
  }
  rd <- S4Vectors::DataFrame(obj[[assay]][[]], check.names = FALSE)
  SingleCellExperiment::SingleCellExperiment(
    assays = list(logcounts = as.matrix(m)),
    colData = S4Vectors::DataFrame(obj[[]], check.names = FALSE),
    rowData = rd
  )
}
"""

R_UNCHANGED = r"""
function(before, after, new.assay, meta.added) {
  out <- list()
  for (a in SeuratObject::Assays(before)) out[[paste0("assay ", a, " unchanged")]] <- identical(before[[a]], after[[a]])
  out[["assays: only the new ones added"]] <- identical(sort(setdiff(SeuratObject::Assays(after), SeuratObject::Assays(before))), sort(new.assay))
  out[["DefaultAssay unchanged"]] <- identical(SeuratObject::DefaultAssay(before), SeuratObject::DefaultAssay(after))
  old <- colnames(before[[]])
  out[["meta.data: old columns unchanged"]] <- identical(before[[]], after[[]][, old, drop = FALSE])
  out[["meta.data: only the documented columns added"]] <- identical(sort(setdiff(colnames(after[[]]), old)), sort(meta.added))
  out[["cells unchanged"]] <- identical(SeuratObject::Cells(before), SeuratObject::Cells(after))
  out[["reductions unchanged"]] <- identical(before@reductions, after@reductions)
  out[["graphs unchanged"]] <- identical(before@graphs, after@graphs)
  out[["neighbors unchanged"]] <- identical(before@neighbors, after@neighbors)
  out[["idents unchanged"]] <- identical(SeuratObject::Idents(before), SeuratObject::Idents(after))
  out[["project unchanged"]] <- identical(SeuratObject::Project(before), SeuratObject::Project(after))
  out[["misc unchanged"]] <- identical(before@misc, after@misc)
  out
}
"""


def python_core(s: Scenario, rp: RParams):
    from cmot import CMOT

    model = CMOT(**s.python_params(rp))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(s.source_x, s.source_y, correspondence=s.correspondence, labels=s.labels,
                  transfer_labels=s.transfer_labels)
        x_hat = model.predict(s.target_y)
    return np.asarray(x_hat), model


def back_to_python(ro, obj, assay):
    import anndata2ri
    from rpy2.robjects.conversion import localconverter

    sce = ro.r(R_TO_SCE)(obj, assay)
    with localconverter(anndata2ri.converter) as cv:
        return cv.rpy2py(sce)


@pytest.fixture(scope="session")
def python_results(roundtrip, r_params):
    return {name: python_core(o.scenario, r_params) for name, o in roundtrip.items()}


def test_every_core_parameter_is_passed(r_params, roundtrip):
    """The R package's map covers every parameter of the Python core, so each scenario passes all of them."""
    import inspect

    from cmot import CMOT

    core = set(inspect.signature(CMOT).parameters) - {"verbose"}  # verbose: the R package never logs
    assert sorted(r_params.r2py.values()) == sorted(core)
    assert r_params.r2py["k"] == "n_neighbors" and r_params.r2py["seed"] == "random_state"
    for o in roundtrip.values():
        assert set(o.scenario.python_params(r_params)) == core, o.scenario.name


@pytest.mark.parametrize("name", SCENARIOS)
def test_runcmot_matches_python_core(roundtrip, python_results, r_stack, name):
    ro = r_stack
    o = roundtrip[name]
    s = o.scenario
    err = o.result.rx2("error")
    assert err is ro.NULL, f"RunCMOT failed in R: {err[0]}"
    after = o.result.rx2("object")
    adata = back_to_python(ro, after, s.new_assay)
    x_hat, model = python_results[name]

    # cells: the query's, in the query's order
    assert list(adata.obs_names) == [str(c) for c in s.query_cells]
    # features: refdata's, as Seurat renames them, and the originals kept
    assert list(adata.var_names) == [seurat_name(f) for f in s.x_features]
    if "cmot.original.name" in adata.var:
        assert list(adata.var["cmot.original.name"]) == [seurat_name(f) for f in s.x_features]
    # values
    x_r = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    assert x_r.shape == x_hat.shape
    np.testing.assert_allclose(x_r, x_hat, rtol=RTOL, atol=ATOL)
    # documented meta.data columns = the core's poorly mapped cells and scores
    prefix = s.prefix
    np.testing.assert_array_equal(adata.obs[f"{prefix}.poorly.mapped"].to_numpy(dtype=bool), model.outliers_)
    # the mapping score reads like Seurat's MappingScore: 0-1, higher = better mapped
    np.testing.assert_allclose(adata.obs[f"{prefix}.mapping.score"].to_numpy(dtype=float), model.mapping_score_,
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", SCENARIOS)
def test_runcmot_changes_nothing_else(roundtrip, r_stack, name):
    ro = r_stack
    o = roundtrip[name]
    assert o.result.rx2("error") is ro.NULL
    checks = ro.r(R_UNCHANGED)(o.before, o.result.rx2("object"), ro.StrVector(o.scenario.added_assays),
                               ro.StrVector(o.scenario.added_meta))
    failed = [k for k, v in zip(checks.names, checks) if not bool(v[0])]
    assert not failed, f"RunCMOT changed the query beyond the new assay: {failed}"


def test_dense_and_sparse_assays_agree(roundtrip, r_stack):
    """The same data stored dense or sparse give the same inferred values.

    (Failed with the core of 33824a6: Step C's variance ranking broke exact ties of
    binary peaks differently for sparse and dense input; fixed in the core since.)"""
    ro = r_stack
    a = back_to_python(ro, roundtrip["pc_rna_from_atac_sparse"].result.rx2("object"), "CMOT")
    b = back_to_python(ro, roundtrip["pc_rna_from_atac_dense"].result.rx2("object"), "CMOT")
    assert list(a.obs_names) == list(b.obs_names) and list(a.var_names) == list(b.var_names)
    np.testing.assert_allclose(np.asarray(a.X), np.asarray(b.X), rtol=1e-8, atol=1e-10)


def test_child_r_used_this_python(roundtrip):
    import os
    import sys

    sess = next(iter(roundtrip.values())).session
    py = str(sess.rx2("python")[0])
    assert os.path.realpath(py) == os.path.realpath(sys.executable) or Path(py).parent == Path(sys.executable).parent, (
        f"reticulate used {py}, the tests run {sys.executable}")


def test_refdata_labels_match_python_core(roundtrip, python_results, r_stack):
    """refdata = list(celltype = "cell_type", ADT = "ADT"): the transferred labels, their scores and the per-class
    scores are the core's (fit(transfer_labels=)), for the query's cells in the query's order; class names as the
    reference has them in meta.data, Seurat-renamed only as features of the score assay (originals kept)."""
    ro = r_stack
    name = "pbmc_refdata_labels_protein"
    o = roundtrip[name]
    s = o.scenario
    assert o.result.rx2("error") is ro.NULL
    after = o.result.rx2("object")
    _, model = python_results[name]
    adata = back_to_python(ro, after, "prediction.score.celltype")
    cells = [str(c) for c in s.query_cells]
    assert list(adata.obs_names) == cells
    predicted = model.predicted_labels_["celltype"]
    assert len(predicted) == len(cells)
    assert adata.obs["predicted.celltype"].astype(str).tolist() == predicted.astype(str).tolist()
    np.testing.assert_allclose(adata.obs["predicted.celltype.score"].to_numpy(dtype=float),
                               model.predicted_label_score_["celltype"].to_numpy(dtype=float), rtol=RTOL, atol=ATOL)
    table = model.predicted_label_scores_["celltype"]
    classes = [str(c) for c in table.columns]
    assert sorted(classes) == sorted(set(map(str, s.transfer_labels["celltype"])))
    assert list(adata.var["cmot.original.name"]) == classes
    assert list(adata.var_names) == [seurat_name(c) for c in classes]
    x = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    np.testing.assert_allclose(x, table.to_numpy(dtype=float), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(x.sum(axis=1), 1.0, rtol=1e-9)
    # the inferred proteins' predictability = the core's feature_scores_
    prot = back_to_python(ro, after, "ADT")
    np.testing.assert_allclose(prot.var["cmot.predictability"].to_numpy(dtype=float),
                               np.asarray(model.feature_scores_, dtype=float), rtol=RTOL, atol=ATOL)
    # the transfer is right for most held-out cells (the cell types are clear from RNA)
    acc = np.mean(adata.obs["predicted.celltype"].astype(str).to_numpy() == np.asarray(s.truth, dtype=str))
    assert acc > 0.7, acc
