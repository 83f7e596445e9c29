# What the R package's R <-> Python conversion costs (issue: "transposes and
# copies are counted in the benchmark").  For dgCMatrix and dense inputs of
# growing size it times cmot:::.to_python (features x cells in R -> cells x
# features in Python), checks that sparse data stays sparse, and counts the
# copies by comparing memory addresses and byte sizes; then it times the way
# back (a dense numpy result -> an R matrix, transposed to features x cells).
#
#   RETICULATE_PYTHON=.venv/bin/python Rscript benchmarks/r_conversion.R [--out FILE]
suppressPackageStartupMessages({ library(Matrix); library(cmot); library(reticulate) })
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(i <- which(args == "--out"))) args[[i + 1]] else NULL
stopifnot(cmot_available(verbose = TRUE))
np <- import("numpy", convert = FALSE)
bi <- import_builtins(convert = FALSE)

time_it <- function(f, reps = 3) median(replicate(reps, system.time(f())[["elapsed"]]))

rows <- list()
set.seed(0)
for (size in list(c(2000, 2000), c(4000, 10000), c(4000, 20000))) {
  n.feat <- size[1]; n.cell <- size[2]
  m <- rsparsematrix(n.feat, n.cell, density = 0.05)
  m@x <- abs(m@x)
  r.mb <- as.numeric(object.size(m)) / 2^20
  t.sparse <- time_it(function() cmot:::.to_python(m))
  py <- cmot:::.to_python(m)
  stopifnot(isTRUE(import("scipy.sparse")$issparse(py)))
  shape <- unlist(py_to_r(bi$tuple(py$shape)))
  stopifnot(identical(as.numeric(shape), c(n.cell, n.feat)))
  nnz <- py_to_r(py$nnz)
  py.mb <- (py_to_r(py$data$nbytes) + py_to_r(py$indices$nbytes) + py_to_r(py$indptr$nbytes)) / 2^20
  rows[[length(rows) + 1]] <- data.frame(
    input = "dgCMatrix", features = n.feat, cells = n.cell, nnz = nnz, R.MB = round(r.mb, 1),
    python.MB = round(py.mb, 1), seconds = round(t.sparse, 3), densified = FALSE,
    copies = "1 (R vectors -> numpy, no transpose: CSC parts read as CSR)"
  )
  d <- as.matrix(m[, seq_len(min(n.cell, 5000))])
  t.dense <- time_it(function() cmot:::.to_python(d))
  pyd <- cmot:::.to_python(d)
  c.contig <- py_to_r(pyd$flags$c_contiguous)
  rows[[length(rows) + 1]] <- data.frame(
    input = "dense matrix", features = n.feat, cells = ncol(d), nnz = length(d), R.MB = round(as.numeric(object.size(d)) / 2^20, 1),
    python.MB = round(py_to_r(pyd$nbytes) / 2^20, 1), seconds = round(t.dense, 3), densified = NA,
    copies = sprintf("1 (R -> numpy); the transpose is a view (cells x features C-contiguous: %s)", c.contig)
  )
  # the way back: x_hat (cells x X features, C order) -> R features x cells
  xhat <- np$random$rand(as.integer(n.cell), 200L)
  t.back <- time_it(function() t(py_to_r(xhat)))
  rows[[length(rows) + 1]] <- data.frame(
    input = "result back", features = 200, cells = n.cell, nnz = n.cell * 200, R.MB = round(8 * n.cell * 200 / 2^20, 1),
    python.MB = round(8 * n.cell * 200 / 2^20, 1), seconds = round(t.back, 3), densified = NA,
    copies = "2 (numpy -> R, then t())"
  )
}
tab <- do.call(rbind, rows)
txt <- c(sprintf("R <-> Python conversion in the cmot R package (%s, R %s, reticulate %s, %s)",
                 Sys.info()[["nodename"]], getRversion(), packageVersion("reticulate"), format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC")),
         "", knitr::kable(tab, format = "pipe"))
cat(txt, sep = "\n")
if (!is.null(out)) writeLines(txt, out)
