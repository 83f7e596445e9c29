# Seurat's standard reference mapping on pbmc10k -> pbmc5k, from raw counts:
# NormalizeData (log), FindVariableFeatures (vst, <nfeatures>), ScaleData, RunPCA (30),
# FindTransferAnchors (pcaproject, dims 1:30) and TransferData of the CLR proteins
# (margin 2).  Scores the 14 shared proteins of every pbmc5k cell against their own
# CLR values, as benchmarks/_data.py does for cmot.  A check that the driver's
# setting (normalized data in, all 4,000 genes) does not handicap Seurat.
#
#   CMOT_DATA=../shared/data Rscript benchmarks/seurat/standard_pbmc.R 2000
#
# Measured 2026-11-26 (2-core VM): nfeatures 2000: cell r mean 0.9183, median
# 0.9426, feature-wise r mean 0.8183 (the driver's setting: 0.9180 / 0.8190).
suppressPackageStartupMessages({library(Seurat); library(Matrix)})
args <- commandArgs(TRUE)
nf <- if (length(args) >= 1) as.integer(args[1]) else 2000L
d <- Sys.getenv("CMOT_DATA", "../shared/data")
rd <- function(ds, mod) {
  m <- readMM(gzfile(file.path(d, ds, paste0(mod, ".mtx.gz"))))
  m <- as(m, "CsparseMatrix")
  rownames(m) <- readLines(file.path(d, ds, paste0(mod, "_features.txt")))
  cells <- read.delim(file.path(d, ds, "cells.tsv"))
  colnames(m) <- cells$cell
  m
}
r10 <- rd("pbmc10k", "rna"); a10 <- rd("pbmc10k", "adt")
r5 <- rd("pbmc5k", "rna"); a5 <- rd("pbmc5k", "adt")
rownames(r10) <- gsub("_", "-", rownames(r10)); rownames(r5) <- gsub("_", "-", rownames(r5))
prots <- rownames(a10)
a5 <- a5[prots, ]
ref <- CreateSeuratObject(r10, assay = "RNA")
ref[["ADT"]] <- CreateAssayObject(counts = a10)
ref <- NormalizeData(ref, verbose = FALSE)
ref <- NormalizeData(ref, assay = "ADT", normalization.method = "CLR", margin = 2, verbose = FALSE)
q <- CreateSeuratObject(r5, assay = "RNA")
q <- NormalizeData(q, verbose = FALSE)
ref <- FindVariableFeatures(ref, nfeatures = nf, verbose = FALSE)
ref <- ScaleData(ref, verbose = FALSE); ref <- RunPCA(ref, npcs = 30, verbose = FALSE)
t0 <- Sys.time()
anchors <- FindTransferAnchors(reference = ref, query = q, dims = 1:30, reference.reduction = "pca", verbose = FALSE)
pred <- TransferData(anchors, refdata = GetAssayData(ref, assay = "ADT", slot = "data"), dims = 1:30, verbose = FALSE)
cat("seconds", as.numeric(Sys.time() - t0, units = "secs"), "\n")
p <- as.matrix(GetAssayData(pred, slot = "data"))
truth <- as.matrix(a5)
geo <- exp(colMeans(log1p(truth)))
truth <- log1p(sweep(truth, 2, geo, "/"))
rownames(p) <- prots
cellr <- sapply(seq_len(ncol(p)), function(i) cor(p[, i], truth[, i]))
featr <- sapply(prots, function(g) cor(p[g, ], truth[g, ]))
cat(sprintf("nfeatures %d: cell r mean %.4f median %.4f, feat r mean %.4f\n", nf, mean(cellr, na.rm = TRUE), median(cellr, na.rm = TRUE), mean(featr, na.rm = TRUE)))
