# PlotCMOT(): per-feature predictability (sorted) and the mapping score on the query's embedding.

test_that("PlotCMOT: predictability sorted, low features marked, mapping score on the embedding", {
  skip_if_no_cmot()
  skip_if_not_installed("ggplot2")
  skip_if_not_installed("patchwork")
  sim <- sim_data()
  so <- seurat_pair(sim)
  q <- suppressMessages(run_quiet(so$query, reference = so$reference, reference.assay = "ATAC",
                                  refdata = list(RNA = "RNA"), k = 8, n.features = 20, seed = 0, verbose = FALSE))
  # no reduction: the predictability panel only, with a message
  expect_message(p <- cmot::PlotCMOT(q), "no reduction")
  expect_s3_class(p, "ggplot")
  emb <- stats::prcomp(t(sim$query.y))$x[, 1:3]
  colnames(emb) <- paste0("PC_", 1:3)
  q[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = emb, key = "PC_", assay = "ATAC")
  p <- cmot::PlotCMOT(q)
  expect_s3_class(p, "patchwork")
  fs <- q[["RNA"]][["cmot.predictability"]][, 1]
  names(fs) <- rownames(q[["RNA"]])
  d1 <- p[[1]]$data
  expect_identical(as.character(d1$feature), names(sort(fs, decreasing = TRUE)))
  expect_equal(d1$predictability, unname(sort(fs, decreasing = TRUE)))
  expect_identical(d1$reliable, d1$predictability >= 0.3)
  expect_true(any(vapply(p[[1]]$layers, function(l) inherits(l$geom, "GeomVline"), NA)))
  d2 <- p[[2]]$data
  expect_identical(d2$cell, colnames(q))
  expect_equal(d2$dim1, unname(emb[, 1]))
  expect_equal(d2$score, unname(q$cmot.mapping.score))
  expect_identical(rlang::as_label(p[[2]]$mapping$colour), "score")
  # umap is preferred over pca when present; a named reduction is used as given
  um <- emb[, 3:2] * 2
  colnames(um) <- c("UMAP_1", "UMAP_2")
  q[["umap"]] <- SeuratObject::CreateDimReducObject(embeddings = um, key = "UMAP_", assay = "ATAC")
  expect_equal(cmot::PlotCMOT(q)[[2]]$data$dim1, unname(emb[, 3] * 2))
  expect_equal(cmot::PlotCMOT(q, reduction = "pca")[[2]]$data$dim1, unname(emb[, 1]))
  # many features: drawn by rank, threshold as a horizontal line
  p.rank <- cmot::PlotCMOT(q, max.labels = 5, threshold = 0.95)
  expect_identical(p.rank[[1]]$data$rank, seq_along(fs))
  expect_identical(p.rank[[1]]$data$reliable, p.rank[[1]]$data$predictability >= 0.95)
  expect_true(any(vapply(p.rank[[1]]$layers, function(l) inherits(l$geom, "GeomHline"), NA)))
  # the matrix method's result: the predictability panel
  x <- run_quiet(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x, k = 8, n.features = 20,
                 seed = 0, verbose = FALSE)
  px <- cmot::PlotCMOT(x)
  expect_equal(px$data$predictability, unname(sort(attr(x, "cmot")$feature.scores, decreasing = TRUE)))
  # measured truth: predicted against measured for the 2 most and 2 least predictable features
  q <- data_assay(q, "RNAtrue", sim$query.x)
  p3 <- cmot::PlotCMOT(q, measured = "RNAtrue")
  expect_s3_class(p3[[3]], "ggplot")
  expect_identical(names(p3[[2]]$data), c("cell", "dim1", "dim2", "score"))
  d3 <- p3[[3]]$data
  ranked <- names(sort(fs, decreasing = TRUE))
  expect_identical(levels(d3$feature), c(ranked[1:2], rev(rev(ranked)[1:2])))
  f <- ranked[1]
  expect_equal(d3$predicted[d3$feature == f], unname(as.matrix(layer_data(q, "RNA"))[f, ]))
  expect_equal(d3$measured[d3$feature == f], unname(sim$query.x[f, ]))
  expect_identical(d3$cell[d3$feature == f], colnames(q))
  p4 <- cmot::PlotCMOT(q, measured = "RNAtrue", features = c("gene2", "gene5"))
  expect_identical(levels(p4[[3]]$data$feature), c("gene2", "gene5"))
  expect_error(cmot::PlotCMOT(q, measured = "RNAtrue", features = "nope"), "features: expected features of both")
  expect_error(cmot::PlotCMOT(q, measured = "ADT"), "measured: assay 'ADT' not found")
  # errors
  expect_error(cmot::PlotCMOT(q, reduction = "tsne"), "reduction: 'tsne' not found")
  expect_error(cmot::PlotCMOT(q, assay = "ATAC"), "assay: 'ATAC' has no feature meta data column 'cmot.predictability'")
  expect_error(cmot::PlotCMOT(q, score = "nope"), "score: column 'nope' not found")
  expect_error(cmot::PlotCMOT(so$query), "no RunCMOT\\(\\) run found")
  expect_error(cmot::PlotCMOT(1:3), "expected a Seurat object or a matrix returned by RunCMOT")
})
