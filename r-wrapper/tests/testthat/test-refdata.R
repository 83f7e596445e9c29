# refdata = list(...) as TransferData() takes it: meta.data columns -> transferred labels, assays -> inferred
# assays, all from one transport.

refdata_pair <- function() {
  sim <- sim_data()
  so <- seurat_pair(sim)
  so$reference$celltype2 <- paste0("t_", so$reference$celltype)   # '_' in class names
  list(sim = sim, query = so$query, reference = so$reference)
}

refdata_args <- function(...) {
  c(list(reference.assay = "ATAC", query.assay = "ATAC"), modifyList(fast, list(...)))
}

test_that("refdata: a meta.data column is transferred as predicted.<name>, its score and a class-score assay, as the core does", {
  skip_if_no_cmot()
  p <- refdata_pair()
  q <- do.call(run_quiet, c(list(p$query, reference = p$reference,
                                 refdata = list(celltype = "celltype", RNA.x = "RNA")), refdata_args()))
  expect_true(all(c("predicted.celltype", "predicted.celltype.score") %in% colnames(q[[]])))
  expect_true(all(c("RNA.x", "prediction.score.celltype") %in% SeuratObject::Assays(q)))
  scores <- as.matrix(layer_data(q, "prediction.score.celltype"))
  expect_identical(rownames(scores), sort(unique(p$reference$celltype)))
  expect_identical(colnames(scores), colnames(p$query))
  expect_equal(unname(colSums(scores)), rep(1, ncol(p$query)), tolerance = 1e-10)
  # the label is the best class, its score the best class's score (0-1)
  expect_identical(unname(q$predicted.celltype), rownames(scores)[apply(scores, 2, which.max)])
  expect_equal(unname(q$predicted.celltype.score), unname(apply(scores, 2, max)), tolerance = 1e-12)
  expect_true(all(q$predicted.celltype.score >= 0 & q$predicted.celltype.score <= 1))
  # the simulated cell types are well separated: the transfer recovers them
  expect_gt(mean(q$predicted.celltype == unname(p$sim$query.labels)), 0.9)
  # the same labels and scores as the Python core given the same labels to transfer
  direct <- python_direct(p$sim$reference.x, p$sim$reference.y, p$sim$query.y,
                          transfer_labels = list(celltype = p$reference$celltype))
  core <- attr(direct, "core")$labels$celltype
  expect_identical(unname(q$predicted.celltype), core$labels)
  expect_equal(unname(q$predicted.celltype.score), core$score, tolerance = 1e-10)
  expect_equal(unname(scores), unname(core$scores[rownames(scores), ]), tolerance = 1e-10)
  # the assay named in refdata holds the same values as refdata.assay (today's way), and the core's
  expect_equal(plain(layer_data(q, "RNA.x")), plain(direct), tolerance = 1e-10)
  q.old <- do.call(run_quiet, c(list(p$query, reference = p$reference, refdata.assay = "RNA"), refdata_args()))
  expect_equal(plain(layer_data(q, "RNA.x")), plain(layer_data(q.old, "CMOT")), tolerance = 1e-10)
  expect_identical(rownames(q[["RNA.x"]]), rownames(p$reference[["RNA"]]))
  # records
  tool <- SeuratObject::Tool(q, "RunCMOT")
  expect_identical(tool$refdata, list(celltype = "celltype", RNA.x = "RNA"))
  expect_identical(tool$label.neighbors, c(celltype = core$neighbors))   # chosen by the core
  expect_identical(tool$assays, c(RNA.x = "RNA"))
  expect_identical(SeuratObject::Misc(q[["RNA.x"]], "cmot.run")$new.assay.name, "RNA.x")
  expect_identical(SeuratObject::Misc(q[["RNA.x"]], "cmot.run")$refdata.assay, "RNA")
})

test_that("refdata: class names with '_' keep their original names in the score assay's map", {
  skip_if_no_cmot()
  p <- refdata_pair()
  q <- do.call(run_quiet, c(list(p$query, reference = p$reference, refdata = list(ct = "celltype2", RNA = "RNA")),
                            refdata_args()))
  expect_identical(sort(unique(unname(q$predicted.ct))), sort(unique(p$reference$celltype2)))   # not renamed
  a <- q[["prediction.score.ct"]]
  expect_identical(rownames(a), gsub("_", "-", sort(unique(p$reference$celltype2))))
  expect_identical(a[["cmot.original.name"]][, 1], sort(unique(p$reference$celltype2)))
  # labels given as values (one per reference cell) work like a column
  q2 <- do.call(run_quiet, c(list(p$query, reference = p$reference,
                                  refdata = list(ct = p$reference$celltype2, RNA = "RNA")), refdata_args()))
  expect_identical(q2$predicted.ct, q$predicted.ct)
})

test_that("refdata: only labels (no assay) transfers them from the one-hot labels, as the core does", {
  skip_if_no_cmot()
  p <- refdata_pair()
  msgs <- capture_messages(
    q <- do.call(run_quiet, c(list(p$query, reference = p$reference, refdata = list(celltype = "celltype")),
                              refdata_args(verbose = TRUE))))
  expect_false(any(grepl("Predictability of the", msgs)))   # the one-hot labels are no inferred features
  expect_match(msgs, "Stored labels 'celltype'", all = FALSE)
  expect_identical(setdiff(SeuratObject::Assays(q), SeuratObject::Assays(p$query)), "prediction.score.celltype")
  classes <- sort(unique(p$reference$celltype))
  onehot <- 1 * outer(classes, p$reference$celltype, "==")
  direct <- python_direct(onehot, p$sim$reference.y, p$sim$query.y,
                          transfer_labels = list(celltype = p$reference$celltype))
  expect_identical(unname(q$predicted.celltype), attr(direct, "core")$labels$celltype$labels)
  expect_gt(mean(q$predicted.celltype == unname(p$sim$query.labels)), 0.9)
})

test_that("refdata: several assays share one run; each keeps its features (names repeated across assays)", {
  skip_if_no_cmot()
  p <- refdata_pair()
  ref <- p$reference
  x2 <- p$sim$reference.x[1:5, ] * 2 + 1
  ref <- data_assay(ref, "RNA2", x2)
  q <- do.call(run_quiet, c(list(p$query, reference = ref, refdata = list(A = "RNA", B = "RNA2")), refdata_args()))
  expect_identical(rownames(q[["A"]]), rownames(p$sim$reference.x))
  expect_identical(rownames(q[["B"]]), rownames(x2))
  direct <- python_direct(rbind(p$sim$reference.x, x2), p$sim$reference.y, p$sim$query.y)
  expect_equal(plain(layer_data(q, "A")), plain(direct)[1:12, ], tolerance = 1e-10)
  expect_equal(plain(layer_data(q, "B")), plain(direct)[13:17, ], tolerance = 1e-10)
  expect_equal(unname(q[["B"]][["cmot.predictability"]][, 1]), attr(direct, "core")$feature.scores[13:17],
               tolerance = 1e-10)
  expect_identical(names(SeuratObject::Tool(q, "RunCMOT")$feature.scores), c("A", "B"))
})

test_that("refdata: clear errors, nothing overwritten without overwrite = TRUE", {
  skip_if_no_cmot()
  p <- refdata_pair()
  run <- function(...) do.call(cmot::RunCMOT, c(list(p$query, reference = p$reference), refdata_args(...)))
  expect_error(run(refdata = list(x = "nope")),
               "refdata\\$x: 'nope' is neither an assay of reference .* nor a column of the reference's meta.data")
  expect_error(run(refdata = list("celltype")), "refdata: expected a named list")
  expect_error(run(refdata = "celltype"), "refdata: expected a named list")
  expect_error(run(refdata = list(a = "RNA", a = "celltype")), "refdata: expected a named list")
  expect_error(run(refdata = list(ct = c("a", "b"))), "refdata\\$ct: .*one value per reference cell \\(90\\), found 2")
  expect_error(run(refdata = list(ATAC = "RNA")), "refdata\\$ATAC: 'ATAC' is the query's query.assay")
  expect_error(run(refdata = list(CMOT = "RNA"), refdata.assay = "RNA"), "also new.assay.name")
  # an assay of reference.x named as a meta.data column of reference (one object cannot hold both)
  ref.x <- seurat_obj(p$sim$reference.x, "celltype")
  expect_error(do.call(cmot::RunCMOT, c(list(p$query, reference = p$reference, reference.x = ref.x),
                                        refdata_args(refdata = list(r = "celltype")))),
               "both an assay of reference.x and a meta.data column of reference")
  na <- p$reference
  na$ct.na <- replace(na$celltype, 2, NA)
  expect_error(do.call(cmot::RunCMOT, c(list(p$query, reference = na), refdata_args(refdata = list(r = "ct.na")))),
               "refdata\\$r \\(meta.data column 'ct.na'\\): expected no missing labels")
  expect_error(run(refdata = list(celltype = "celltype"), pairs = "names"), "pairs and reference.x .* must be NULL")
  q <- suppressMessages(run_quiet(p$query, reference = p$reference, reference.assay = "ATAC",
                                  refdata = list(celltype = "celltype", R = "RNA"), k = 8, n.features = 20,
                                  seed = 0, verbose = FALSE))
  expect_error(do.call(cmot::RunCMOT, c(list(q, reference = p$reference), refdata_args(refdata = list(celltype = "celltype")))),
               "refdata\\$celltype: the query's meta.data already has column\\(s\\) 'predicted.celltype'")
  expect_error(do.call(cmot::RunCMOT, c(list(q, reference = p$reference), refdata_args(refdata = list(R = "RNA"),
                                                                                      new.assay.name = "C2"))),
               "refdata\\$R: the query already has an assay 'R'")
  q2 <- do.call(run_quiet, c(list(q, reference = p$reference),
                             refdata_args(refdata = list(celltype = "celltype"), overwrite = TRUE, k = 5)))
  expect_identical(SeuratObject::Tool(q2, "RunCMOT")$k.used, 5L)
  expect_identical(colnames(q2[[]]), colnames(q[[]]))
})

test_that("matrix method: transfer.labels gives attr(x, \"cmot\")$labels, as the core does", {
  skip_if_no_cmot()
  sim <- sim_data()
  lab <- unname(sim$reference.labels)
  x <- run_quiet(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                 transfer.labels = list(ct = lab), k = 8, n.features = 20, seed = 0, verbose = FALSE)
  got <- attr(x, "cmot")$labels$ct
  core <- attr(python_direct(sim$reference.x, sim$reference.y, sim$query.y, transfer_labels = list(ct = lab)),
               "core")$labels$ct
  expect_identical(unname(got$labels), core$labels)
  expect_identical(names(got$labels), colnames(sim$query.y))
  expect_equal(unname(got$score), core$score, tolerance = 1e-10)
  expect_equal(unname(got$scores), unname(core$scores[rownames(got$scores), ]), tolerance = 1e-10)
  expect_identical(colnames(got$scores), colnames(sim$query.y))
  # x is unchanged by transferring labels
  x0 <- run_quiet(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x, k = 8, n.features = 20,
                  seed = 0, verbose = FALSE)
  expect_equal(plain(x), plain(x0), tolerance = 1e-12)
  expect_null(attr(x0, "cmot")$labels)
  expect_error(run_quiet(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                         transfer.labels = list(lab), verbose = FALSE), "transfer.labels: expected a list of label vectors")
  expect_error(run_quiet(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                         transfer.labels = list(ct = lab[-1]), verbose = FALSE),
               "transfer.labels\\$ct: expected one label per reference")
})
