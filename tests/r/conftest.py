"""Fixtures of the R round-trip tests (pytest + rpy2 + anndata2ri).

How Python and R meet here
--------------------------
* The pytest process embeds R through rpy2 to build the Seurat objects from the
  real data and to read the results back (``readRDS``; the new assay through a
  SingleCellExperiment and anndata2ri).  No Python is ever called from this
  embedded R.
* ``RunCMOT`` itself runs in a child ``Rscript`` (tests/r/run_cmot_scenarios.R),
  where R is the main process and reticulate embeds *this* Python
  (``RETICULATE_PYTHON`` is set to ``sys.executable`` before anything starts), so
  the R package calls the same interpreter, venv and ``cmot`` checkout as the
  tests' own reference run.

Calling RunCMOT from the rpy2-embedded R does work (reticulate attaches to the
running interpreter: same PID, ``import cmot`` succeeds), but it is not robust
with rpy2 3.5 + reticulate 1.28: rpy2 releases the GIL while R runs, and
reticulate's finalizer of Python references calls the Python C API without
taking it, so the first R garbage collection that frees a reticulate object
aborts the whole pytest process ("Fatal Python error: PyThreadState_Get: the
function must be called with the GIL held"), either mid-test or in rpy2's atexit
``R_gc``.  The child process avoids that at the price of one R start-up
(about 10 s) per test session.

Skips: every test here is marked ``r`` and is skipped, with the reason, only when
rpy2/anndata2ri, R, Seurat, SingleCellExperiment or the ``cmot`` R package are not
installed (or the shared data folder is absent, as in the rest of the suite).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# reticulate (in the child Rscript) must use this interpreter: set before R starts.
os.environ["RETICULATE_PYTHON"] = sys.executable

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def data_dir() -> Path:
    env = os.environ.get("CMOT_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def _missing_r_stack() -> str | None:
    """Why the R round trips cannot run here (None when they can)."""
    try:
        import anndata2ri  # noqa: F401
        import rpy2.robjects  # noqa: F401
        from rpy2.robjects.packages import isinstalled
    except Exception as exc:  # ImportError, or R cannot be found/initialized
        return f"rpy2/anndata2ri unusable ({type(exc).__name__}: {exc}); install cmot[r] and R"
    missing = [p for p in ("Seurat", "SeuratObject", "SingleCellExperiment", "Matrix") if not isinstalled(p)]
    if missing:
        return f"R package(s) not installed: {', '.join(missing)}"
    if not isinstalled("cmot"):
        return "the cmot R package is not installed (R CMD INSTALL r-wrapper)"
    if shutil.which("Rscript") is None:
        return "Rscript is not on PATH"
    return None


@pytest.fixture(scope="session")
def r_stack():
    """rpy2's robjects with Seurat loaded in the embedded R; skips when the R stack is missing."""
    reason = _missing_r_stack()
    if reason:
        pytest.skip(reason)
    import rpy2.robjects as ro

    ro.r("suppressPackageStartupMessages({library(Matrix); library(SeuratObject); library(Seurat); "
         "library(SingleCellExperiment)})")
    return ro


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = data_dir()
    if not (d / "pancancer").is_dir():
        pytest.skip(f"shared data folder {d} absent (set CMOT_DATA)")
    return d


def _run_rscript(script: Path, *args, timeout: float = 1200) -> subprocess.CompletedProcess:
    """Run an R script in a child process with this interpreter as reticulate's Python."""
    env = dict(os.environ, RETICULATE_PYTHON=sys.executable)
    return subprocess.run(["Rscript", "--vanilla", str(script), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=timeout)


@pytest.fixture(scope="session")
def run_rscript():
    """``run_rscript(script, *args)``: Rscript in a child process, reticulate bound to this Python."""
    return _run_rscript
