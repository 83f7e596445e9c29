# verbose = TRUE shows the core's steps as they happen (R messages, suppressible); feature predictability.

test_that("verbose = TRUE: the core's steps arrive as R messages during the call, in order; FALSE prints nothing", {
  skip_if_no_cmot()
  sim <- sim_data()
  run <- function(verbose) {
    suppressWarnings(cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x, k = 8,
                                   n.features = 20, seed = 0, verbose = verbose))
  }
  msgs <- capture_messages(x <- run(TRUE))
  core <- grep("^cmot: ", msgs)
  expect_gt(length(core), 3)
  expect_match(msgs, "^cmot: kNN inference \\(k=8\\) \\.\\.\\.", all = FALSE)
  expect_match(msgs, "^cmot: poorly mapped cells done in [0-9.]+ s", all = FALSE)
  # during the call: between the R side's message before the core runs and the one after it
  before <- grep("^Running CMOT", msgs)
  after <- grep("^CMOT used k = 8", msgs)
  expect_true(all(core > before & core < after))
  # suppressMessages() silences them all, and nothing is printed on the console either
  out <- capture_output(res <- capture_messages(suppressMessages(run(TRUE))))
  expect_identical(res, character())
  expect_identical(out, "")
  # verbose = FALSE: no message, no output; same values
  out <- capture_output(res <- capture_messages(x0 <- run(FALSE)))
  expect_identical(res, character())
  expect_identical(out, "")
  expect_equal(plain(x0), plain(x), tolerance = 1e-12)
  # the Python logger is left as it was
  logging <- reticulate::import("logging")
  lg <- logging$getLogger("cmot")
  expect_identical(length(lg$handlers), 0L)
  expect_true(lg$propagate)
})

test_that("feature predictability: attr(x, \"cmot\")$feature.scores and the new assay's cmot.predictability, as the core's feature_scores_", {
  skip_if_no_cmot()
  # 300 reference cells: with 90, a noise feature's leave-one-out r (sd about 0.1) came out at
  # 0.31 once Step C's linear map joined the neighbours
  sim <- sim_data(300, 30)
  x <- sim$reference.x
  # a feature that the shared modality cannot predict: noise
  set.seed(3)
  x <- rbind(x, noise1 = stats::rnorm(ncol(x)))
  msgs <- capture_messages(out <- suppressWarnings(cmot::RunCMOT(sim$query.y, reference = sim$reference.y,
                                                                 refdata = x, k = 8, n.features = 20, seed = 0)))
  fs <- attr(out, "cmot")$feature.scores
  expect_identical(names(fs), rownames(x))
  direct <- python_direct(x, sim$reference.y, sim$query.y)
  expect_equal(unname(fs), attr(direct, "core")$feature.scores, tolerance = 1e-10)
  # the noise feature, which no neighbour predicts, is the least predictable one, r < 0.3; the others are not
  expect_identical(names(which.min(fs)), "noise1")
  expect_lt(fs[["noise1"]], 0.3)
  expect_gt(min(fs[names(fs) != "noise1"]), 0.3)
  # named in the verbose summary
  expect_match(msgs, "1 with r < 0.3 \\(cannot be inferred reliably\\): noise1", all = FALSE)
  # once, by name (the core, given unnamed arrays, would name it by position)
  expect_identical(sum(grepl("reliabl", msgs)), 1L)
  # Seurat: the new assay's feature meta data
  so <- seurat_pair(sim)
  ref <- data_assay(so$reference, "RNA2", x)
  q <- suppressMessages(run_quiet(so$query, reference = ref, reference.assay = "ATAC", refdata.assay = "RNA2",
                                  k = 8, n.features = 20, seed = 0, verbose = FALSE))
  meta <- q[["CMOT"]][[]]
  expect_identical(rownames(meta), rownames(x))
  expect_equal(stats::setNames(meta$cmot.predictability, meta$cmot.original.name), fs, tolerance = 1e-10)
  expect_equal(SeuratObject::Tool(q, "RunCMOT")$feature.scores$CMOT, fs, tolerance = 1e-10)
})
