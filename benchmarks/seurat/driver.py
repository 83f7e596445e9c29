"""Python side of the Seurat baseline: run benchmarks/seurat/transfer.R on a split.

``seurat_transfer(train_y, train_x, test_y, ...)`` takes cells x features matrices
(dense or scipy sparse, exactly those cmot gets), writes them losslessly (raw
float64 CSC, features x cells) to a temporary folder, runs ``Rscript transfer.R``
in a child process and reads the prediction back as a test cells x X features
array.  The child's wall time, the time R reports for Seurat's own work (object
construction, scaling, reduction, FindTransferAnchors, TransferData) and its peak
resident memory (``wait4`` rusage of that child alone) come back in ``info``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

HERE = Path(__file__).resolve().parent
TRANSFER_R = HERE / "transfer.R"

__all__ = ["seurat_transfer", "rscript_available", "r_baseline_mib", "TRANSFER_R"]


def rscript_available() -> str | None:
    """None when Rscript with Seurat is usable, else the reason why not."""
    exe = shutil.which("Rscript")
    if exe is None:
        return "Rscript is not on PATH"
    r = subprocess.run(
        [exe, "-e", "suppressPackageStartupMessages({library(Seurat); library(jsonlite); library(irlba)})"],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        return "R packages Seurat/jsonlite/irlba are not installed: " + r.stderr.strip()[-300:]
    return None


def r_baseline_mib() -> float:
    """Peak RSS (MiB) of an Rscript that only loads Seurat: the floor of every Seurat run."""
    rc, _, err, _, peak = _run_child(
        ["Rscript", "--vanilla", "-e", "suppressPackageStartupMessages({library(Matrix); library(Seurat)})"])
    if rc != 0:
        raise RuntimeError(err[-2000:])
    return peak


def _write_csc(folder: Path, name: str, cells_x_features, cell_names, feature_names) -> None:
    """Write a cells x features matrix as features x cells CSC (R's dgCMatrix layout)."""
    m = cells_x_features
    m = sp.csr_matrix(m) if not sp.issparse(m) else m.tocsr()
    # CSR of cells x features == CSC of features x cells
    m = m.astype(np.float64)
    m.sort_indices()
    n_cells, n_feat = m.shape
    m.indptr.astype("<i4").tofile(folder / f"{name}.p")
    m.indices.astype("<i4").tofile(folder / f"{name}.i")
    m.data.astype("<f8").tofile(folder / f"{name}.x")
    (folder / f"{name}.json").write_text(json.dumps({"nrow": int(n_feat), "ncol": int(n_cells)}))
    (folder / f"{name}.rows").write_text("\n".join(map(str, feature_names)) + "\n", encoding="utf-8")
    (folder / f"{name}.cols").write_text("\n".join(map(str, cell_names)) + "\n", encoding="utf-8")


def _run_child(cmd, timeout=None, env=None):
    """Run cmd; return (returncode, stdout, stderr, wall seconds, peak RSS in MiB of that child)."""
    t0 = time.perf_counter()
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
    deadline = None if timeout is None else t0 + timeout
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            pid, status, rusage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    out.seek(0)
    err.seek(0)
    return proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"), wall, rusage.ru_maxrss / 1024


def seurat_transfer(
    train_y,
    train_x,
    test_y,
    *,
    reduction: str = "pcaproject",
    dims: int = 30,
    k_weight: int = 50,
    n_features: int = 0,
    y_names=None,
    x_names=None,
    train_cells=None,
    test_cells=None,
    timeout: float | None = 1800,
    workdir=None,
):
    """FindTransferAnchors + TransferData of X from Y; returns (test cells x X features array, info)."""
    n_train, n_y = train_y.shape
    n_test = test_y.shape[0]
    n_x = train_x.shape[1]
    if train_x.shape[0] != n_train or test_y.shape[1] != n_y:
        raise ValueError("seurat_transfer: train_y, train_x and test_y shapes do not agree")
    y_names = [f"y{i}" for i in range(n_y)] if y_names is None else [str(n) for n in y_names]
    x_names = [f"x{i}" for i in range(n_x)] if x_names is None else [str(n) for n in x_names]
    train_cells = [f"train{i}" for i in range(n_train)] if train_cells is None else [str(c) for c in train_cells]
    test_cells = [f"test{i}" for i in range(n_test)] if test_cells is None else [str(c) for c in test_cells]
    tmp = tempfile.TemporaryDirectory(prefix="cmot-seurat-", dir=workdir)
    folder = Path(tmp.name)
    try:
        _write_csc(folder, "ref_y", train_y, train_cells, y_names)
        _write_csc(folder, "ref_x", train_x, train_cells, x_names)
        _write_csc(folder, "query_y", test_y, test_cells, y_names)
        cmd = ["Rscript", "--vanilla", str(TRANSFER_R), str(folder), reduction, str(int(dims)), str(int(k_weight)),
               str(int(n_features))]
        # one BLAS/OpenMP thread unless the caller set otherwise (as the cmot runs)
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        rc, out, err, wall, peak = _run_child(cmd, timeout=timeout, env=env)
        if rc != 0:
            raise RuntimeError(f"transfer.R failed (exit {rc}, reduction={reduction}, dims={dims}, n_features={n_features}):\n{err[-3000:]}")
        info = json.loads((folder / "result.json").read_text())
        pred = np.fromfile(folder / "pred.bin", dtype="<f8").reshape((n_test, n_x))  # column-major X x cells
        info.update(wall_seconds=wall, peak_mib=peak)
        return pred, info
    finally:
        tmp.cleanup()
