sce_pair <- function(sim) {
  ref <- SingleCellExperiment::SingleCellExperiment(
    assays = list(logcounts = sim$reference.y),
    colData = S4Vectors::DataFrame(type = unname(sim$reference.labels), row.names = colnames(sim$reference.y))
  )
  SingleCellExperiment::altExp(ref, "RNA") <- SingleCellExperiment::SingleCellExperiment(
    assays = list(logcounts = sim$reference.x))
  query <- SingleCellExperiment::SingleCellExperiment(assays = list(logcounts = sim$query.y))
  list(reference = ref, query = query)
}

test_that("SingleCellExperiment: altExp in, altExp out, same values as the matrix method", {
  skip_if_no_cmot()
  skip_if_not_installed("SingleCellExperiment")
  sim <- sim_data()
  # underscores are kept as they are outside Seurat
  rownames(sim$reference.x)[1] <- "gene_1"
  s <- sce_pair(sim)
  q <- do.call(run_quiet, c(list(s$query, reference = s$reference, refdata.altexp = "RNA", labels = "type"), fast))
  expect_true("CMOT" %in% SingleCellExperiment::altExpNames(q))
  ae <- SingleCellExperiment::altExp(q, "CMOT")
  expect_identical(rownames(ae), rownames(sim$reference.x))
  expect_identical(colnames(ae), colnames(sim$query.y))
  expect_identical(SummarizedExperiment::assayNames(ae), "logcounts")
  x <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                                 labels = unname(sim$reference.labels)), fast))
  expect_equal(plain(SummarizedExperiment::assay(ae, "logcounts")), plain(x), tolerance = 1e-10)
  expect_type(q$cmot.poorly.mapped, "logical")
  expect_identical(S4Vectors::metadata(q)$RunCMOT$params$n_neighbors, 8L)
  expect_identical(S4Vectors::metadata(q)$RunCMOT$shrinkage.used, attr(x, "cmot")$shrinkage)
  expect_identical(S4Vectors::metadata(q)$RunCMOT$step.c.used, attr(x, "cmot")$step.c)
  expect_identical(S4Vectors::metadata(q)$RunCMOT$n.pcs.used, attr(x, "cmot")$n.pcs)
  # the main experiment is unchanged
  expect_identical(SummarizedExperiment::assay(q, "logcounts"), sim$query.y)
  expect_error(do.call(cmot::RunCMOT, c(list(q, reference = s$reference, refdata.altexp = "RNA"), fast)),
               "already has an altExp 'CMOT'")
})

test_that("SingleCellExperiment: shared modality in an altExp, partly paired reference.x, and errors", {
  skip_if_no_cmot()
  skip_if_not_installed("SingleCellExperiment")
  sim <- sim_data()
  s <- sce_pair(sim)
  # query with ATAC as an altExp of an RNA-less main experiment
  query <- SingleCellExperiment::SingleCellExperiment(
    assays = list(logcounts = matrix(0, 2, ncol(sim$query.y), dimnames = list(c("a", "b"), colnames(sim$query.y)))))
  SingleCellExperiment::altExp(query, "ATAC") <- SingleCellExperiment::SingleCellExperiment(
    assays = list(logcounts = sim$query.y))
  q <- do.call(run_quiet, c(list(query, reference = s$reference, query.altexp = "ATAC", refdata.altexp = "RNA"), fast))
  x <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), fast))
  expect_equal(plain(SummarizedExperiment::assay(SingleCellExperiment::altExp(q, "CMOT"))), plain(x), tolerance = 1e-10)

  # partly paired: X in a second object
  ref.y <- s$reference[, 31:90]
  ref.x <- SingleCellExperiment::SingleCellExperiment(assays = list(logcounts = sim$reference.x[, 1:60]))
  q2 <- do.call(run_quiet, c(list(s$query, reference = ref.y, reference.x = ref.x, pairs = "names"), fast))
  direct <- python_direct(sim$reference.x[, 1:60], sim$reference.y[, 31:90], sim$query.y,
                          correspondence = cbind(30:59, 0:29))
  expect_equal(plain(SummarizedExperiment::assay(SingleCellExperiment::altExp(q2, "CMOT"))), plain(direct),
               tolerance = 1e-10)

  expect_error(do.call(cmot::RunCMOT, c(list(s$query, reference = s$reference), fast)),
               "refdata.altexp: name the altExp of reference")
  expect_error(do.call(cmot::RunCMOT, c(list(s$query, reference = s$reference, refdata.altexp = "ADT"), fast)),
               "refdata.altexp: altExp 'ADT' not found in reference \\(altExps: RNA\\)")
  expect_error(do.call(cmot::RunCMOT, c(list(s$query, reference = s$reference, refdata.altexp = "RNA",
                                             assay.type = "counts"), fast)),
               "assay.type: assay 'counts' not found in the main experiment of the query")
  expect_error(do.call(cmot::RunCMOT, c(list(s$query, reference = s$reference, refdata.altexp = "RNA",
                                             labels = "celltype"), fast)),
               "labels: column 'celltype' not found in the reference's colData")
  expect_error(do.call(cmot::RunCMOT, c(list(s$query, reference = ref.y, reference.x = ref.x), fast)),
               "Mismatched cells")
})

test_that("SingleCellExperiment: refdata = list(colData column, altExp) as for Seurat, as the core does", {
  skip_if_no_cmot()
  skip_if_not_installed("SingleCellExperiment")
  sim <- sim_data()
  s <- sce_pair(sim)
  q <- do.call(run_quiet, c(list(s$query, reference = s$reference, refdata = list(type = "type", RNA.x = "RNA")), fast))
  cd <- SummarizedExperiment::colData(q)
  expect_true(all(c("predicted.type", "predicted.type.score", "cmot.mapping.score") %in% colnames(cd)))
  expect_setequal(SingleCellExperiment::altExpNames(q), c("RNA.x", "prediction.score.type"))
  direct <- python_direct(sim$reference.x, sim$reference.y, sim$query.y,
                          transfer_labels = list(type = unname(sim$reference.labels)))
  core <- attr(direct, "core")$labels$type
  expect_identical(cd$predicted.type, core$labels)
  expect_equal(cd$predicted.type.score, core$score, tolerance = 1e-10)
  sc <- SummarizedExperiment::assay(SingleCellExperiment::altExp(q, "prediction.score.type"), "scores")
  expect_equal(unname(sc), unname(core$scores[rownames(sc), ]), tolerance = 1e-10)
  expect_identical(colnames(sc), colnames(q))
  ae <- SingleCellExperiment::altExp(q, "RNA.x")
  expect_equal(plain(SummarizedExperiment::assay(ae, "logcounts")), plain(direct), tolerance = 1e-10)
  expect_equal(SummarizedExperiment::rowData(ae)$cmot.predictability, attr(direct, "core")$feature.scores,
               tolerance = 1e-10)
  expect_gt(mean(cd$predicted.type == unname(sim$query.labels)), 0.9)
  expect_error(do.call(cmot::RunCMOT, c(list(s$query, reference = s$reference, refdata = list(x = "nope")), fast)),
               "refdata\\$x: 'nope' is neither an altExp of reference \\(altExps: RNA\\) nor a column")
  expect_error(do.call(cmot::RunCMOT, c(list(q, reference = s$reference, refdata = list(type = "type")), fast)),
               "refdata\\$type: the query's colData already has column\\(s\\) 'predicted.type'")
})
