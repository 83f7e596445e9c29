# R half of the main job: what a Seurat user does.  A reference measured in RNA
# ("X", to infer) and ATAC-like features ("Y", shared) gives an ATAC-only query
# its RNA, as a new assay.  Simulated data, so it runs on any machine.
suppressPackageStartupMessages({ library(Seurat); library(cmot) })
args <- commandArgs(trailingOnly = TRUE)
out <- if (length(args)) args[[1]] else tempdir()
set.seed(1)
sim <- simulate_multimodal(n.reference = 400, n.query = 150)
reference <- CreateSeuratObject(counts = sim$reference.y, assay = "ATAC")
reference[["RNA"]] <- CreateAssayObject(counts = sim$reference.x)
reference$cell_type <- sim$reference.labels
query <- CreateSeuratObject(counts = sim$query.y, assay = "ATAC")
query <- RunCMOT(query, reference = reference, reference.assay = "ATAC", refdata.assay = "RNA",
                 query.assay = "ATAC", new.assay.name = "CMOT", labels = "cell_type", seed = 0)
print(query)
inferred <- as.matrix(GetAssayData(query, assay = "CMOT", slot = "data"))
r <- vapply(seq_len(ncol(inferred)), function(j) cor(inferred[, j], sim$query.x[, j]), numeric(1))
cat(sprintf("R: inferred RNA for %d query cells x %d genes; mean cell-wise Pearson r vs measured = %.3f\n",
            ncol(inferred), nrow(inferred), mean(r)))
saveRDS(query, file.path(out, "query_with_cmot.rds"))
cat("R: wrote", file.path(out, "query_with_cmot.rds"), "\n")
