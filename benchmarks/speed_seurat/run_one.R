# One timed run of one method, in its own Rscript process (called by
# benchmarks/speed_seurat.R; see there).
#
#   Rscript benchmarks/speed_seurat/run_one.R <seurat|cmot> ref.rds query.rds pred.rds
#
# ref.rds: the reference Seurat object (RNA log-normalized, ADT CLR-normalized);
# query.rds: the query (RNA log-normalized).  Prints "TIME <what> <seconds>" lines
# on stdout; the cmot run prints the core's step messages ("cmot: <step> done in N s")
# on stderr (verbose = TRUE).  The clock of the method ("TIME method") starts just
# before its first own call (library(cmot) for cmot, FindVariableFeatures for Seurat;
# cmot's includes starting Python and importing the core, timed apart as "step python")
# and stops when the predicted ADT assay is in the query object.  Writes the
# predicted ADT matrix (proteins x query cells) to pred.rds after the clock stops.
a <- commandArgs(TRUE)
if (length(a) != 4 || !a[1] %in% c("seurat", "cmot")) {
  stop("usage: run_one.R <seurat|cmot> ref.rds query.rds pred.rds", call. = FALSE)
}
method <- a[1]
now <- function() as.numeric(proc.time()[["elapsed"]])
say <- function(what, t) cat(sprintf("TIME %s %.3f\n", what, t))
t <- now()
suppressPackageStartupMessages(library(Seurat))
say("library_seurat", now() - t)
t <- now()
ref <- readRDS(a[2]); query <- readRDS(a[3])
say("load", now() - t)

t0 <- now()
if (method == "seurat") {
  step <- function(name, expr) { t <- now(); v <- expr; say(paste0("step ", name), now() - t); v }
  ref <- step("FindVariableFeatures", FindVariableFeatures(ref, selection.method = "vst", nfeatures = 2000,
                                                           verbose = FALSE))
  ref <- step("ScaleData", ScaleData(ref, verbose = FALSE))
  ref <- step("RunPCA", RunPCA(ref, npcs = 30, verbose = FALSE))
  anchors <- step("FindTransferAnchors", FindTransferAnchors(reference = ref, query = query,
                                                             reference.reduction = "pca", dims = 1:30,
                                                             verbose = FALSE))
  query <- step("TransferData", TransferData(anchors, refdata = list(ADT = "ADT"), reference = ref,
                                             query = query, dims = 1:30, verbose = FALSE))
} else {
  t <- now()
  suppressPackageStartupMessages(library(cmot))
  say("step library(cmot)", now() - t)
  # starting Python and importing the core, which RunCMOT would do first (timed apart
  # only to show it; RunCMOT's own check then finds it done)
  t <- now()
  stopifnot(cmot_available(verbose = TRUE))
  say("step python", now() - t)
  t <- now()
  query <- RunCMOT(query, reference = ref, refdata = list(ADT = "ADT"), verbose = TRUE)
  say("step RunCMOT", now() - t)
}
stopifnot("ADT" %in% Assays(query))
say("method", now() - t0)
saveRDS(as.matrix(GetAssayData(query, assay = "ADT", slot = "data")), a[4])
