# Child process of tests/r/test_roundtrip.py: runs RunCMOT() on prepared Seurat
# objects, with R as the main process and reticulate embedding Python.
#
#   Rscript tests/r/run_cmot_scenarios.R <input.rds> <output.rds>
#
# <input.rds> is a named list of scenarios, each a list with `query`, `reference`,
# optionally `reference.x`, and `args` (further RunCMOT arguments).  <output.rds>
# gets, for each scenario, list(object = query after RunCMOT or NULL,
# error = message or NULL, warnings = character(), messages = character(),
# seconds = elapsed), plus an element `.session` describing the Python that
# reticulate used.
#
# Why a child process: RunCMOT called from R embedded in the pytest process
# (rpy2) does reach the same Python interpreter through reticulate, but
# reticulate 1.28 finalizes its Python references without taking the GIL; rpy2
# releases the GIL while R runs, so the first R garbage collection that frees
# such a reference aborts the interpreter ("PyThreadState_Get: the function must
# be called with the GIL held"), during the tests or at exit (rpy2's atexit
# R_gc).  With R as the main process there is no GIL hand-over.

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 2L) stop("usage: Rscript run_cmot_scenarios.R <input.rds> <output.rds>")

suppressPackageStartupMessages({
  library(SeuratObject)
  library(Seurat)
  library(cmot)
})

scenarios <- readRDS(args[[1]])
out <- list()
for (name in names(scenarios)) {
  sc <- scenarios[[name]]
  warns <- character()
  msgs <- character()
  t0 <- proc.time()[["elapsed"]]
  res <- tryCatch(
    withCallingHandlers(
      do.call(RunCMOT, c(list(object = sc$query, reference = sc$reference),
                         if (!is.null(sc$reference.x)) list(reference.x = sc$reference.x),
                         sc$args)),
      warning = function(w) {
        warns <<- c(warns, conditionMessage(w))
        invokeRestart("muffleWarning")
      },
      message = function(m) {
        msgs <<- c(msgs, conditionMessage(m))
        invokeRestart("muffleMessage")
      }
    ),
    error = function(e) e
  )
  err <- if (inherits(res, "error")) conditionMessage(res) else NULL
  out[[name]] <- list(
    object = if (is.null(err)) res else NULL,
    error = err,
    warnings = warns,
    messages = msgs,
    seconds = proc.time()[["elapsed"]] - t0
  )
}
out[[".session"]] <- list(
  python = tryCatch(reticulate::py_config()$python, error = function(e) NA_character_),
  pid = Sys.getpid(),
  cmot.version = as.character(utils::packageVersion("cmot")),
  seurat.version = as.character(utils::packageVersion("Seurat"))
)
saveRDS(out, args[[2]])
