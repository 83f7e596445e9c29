"""Reproduce why tests/r runs RunCMOT in a child Rscript (not collected by pytest).

    python tests/r/repro_rpy2_reticulate_gc.py          # aborts (exit 134) with rpy2 3.5 + reticulate 1.28
    python tests/r/repro_rpy2_reticulate_gc.py --safe   # skips the R gc: exits 0

R embedded by rpy2 reaches this very interpreter through reticulate (same PID,
``import cmot`` works), but rpy2 releases the GIL while R runs and reticulate
1.28 frees its Python references (objects of ``import(..., convert = FALSE)``, as
the cmot R package uses) in an R finalizer without taking the GIL, so
the first R garbage collection that frees one aborts the process with "Fatal
Python error: PyThreadState_Get: the function must be called with the GIL
held".  The same happens at exit (rpy2's atexit ``endr`` runs ``R_gc``) unless
that handler is unregistered.  (When R collects depends on allocation; in our
runs it aborted mid-session right after a RunCMOT call.)  Rerun this after upgrading reticulate/rpy2 to see
whether the in-process route has become safe.
"""

import atexit
import os
import sys

os.environ["RETICULATE_PYTHON"] = sys.executable

import rpy2.robjects as ro  # noqa: E402
from rpy2.rinterface_lib import embedded  # noqa: E402

# Python objects held by R without conversion, as the cmot R package holds them (convert = FALSE)
ro.r('np <- reticulate::import("numpy", convert = FALSE); x <- lapply(1:50, function(i) np$ones(10L)); rm(x)')
if "--safe" in sys.argv:
    pid = int(ro.r('reticulate::import("os")$getpid()')[0])
    print(f"R -> reticulate -> Python pid {pid}; this process {os.getpid()}; same: {pid == os.getpid()}", flush=True)
    print("import cmot from R:", ro.r('reticulate::import("cmot")$`__version__`')[0], flush=True)
    atexit.unregister(embedded.endr)
    print("skipping R's gc; exiting cleanly", flush=True)
else:
    print("running R gc() (frees reticulate objects) ...", flush=True)
    ro.r("invisible(gc(full = TRUE))")
    print("survived: the in-process route is safe with these versions", flush=True)
