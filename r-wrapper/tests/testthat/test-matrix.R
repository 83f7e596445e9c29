test_that("matrices in: features x cells out, names and cell order kept", {
  skip_if_no_cmot()
  sim <- sim_data()
  x <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), fast))
  expect_true(is.matrix(x))
  expect_identical(dim(x), c(nrow(sim$reference.x), ncol(sim$query.y)))
  expect_identical(rownames(x), rownames(sim$reference.x))
  expect_identical(colnames(x), colnames(sim$query.y))
  expect_true(all(is.finite(x)))
  info <- attr(x, "cmot")
  expect_type(info$poorly.mapped, "logical")
  expect_identical(names(info$poorly.mapped), colnames(sim$query.y))
  expect_length(info$score, ncol(sim$query.y))
  # the mapping score reads like Seurat's MappingScore: 0-1, higher = better mapped
  expect_true(all(info$score >= 0 & info$score <= 1))
  expect_identical(names(info$outlier.score), colnames(sim$query.y))
  expect_false(info$query.unlike)
  expect_gt(info$reg.e, 0)
  # the inference is informative on simulated data
  expect_gt(cor(as.vector(x), as.vector(sim$query.x)), 0.7)

  # permuting query cells permutes the output columns
  perm <- rev(seq_len(ncol(sim$query.y)))
  xp <- do.call(run_quiet, c(list(sim$query.y[, perm], reference = sim$reference.y, refdata = sim$reference.x), fast))
  expect_identical(colnames(xp), colnames(sim$query.y)[perm])
  expect_equal(plain(xp), plain(x[, perm]), tolerance = 1e-8)
})

test_that("equal to calling the Python core directly", {
  skip_if_no_cmot()
  sim <- sim_data()
  x <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), fast))
  direct <- python_direct(sim$reference.x, sim$reference.y, sim$query.y)
  expect_equal(plain(x), plain(direct), tolerance = 1e-10)

  lab <- unname(sim$reference.labels)
  x2 <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                                  labels = lab, reg.cl = 0.5), fast))
  direct2 <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = lab, reg_cl = 0.5)
  expect_equal(plain(x2), plain(direct2), tolerance = 1e-10)
  expect_false(isTRUE(all.equal(x, x2)))
})

test_that("sparse and dense input give the same result", {
  skip_if_no_cmot()
  sim <- sim_data()
  dense <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), fast))
  sparse <- do.call(run_quiet, c(list(Matrix::Matrix(sim$query.y, sparse = TRUE),
                                      reference = Matrix::Matrix(sim$reference.y, sparse = TRUE),
                                      refdata = Matrix::Matrix(sim$reference.x, sparse = TRUE)), fast))
  expect_equal(plain(sparse), plain(dense), tolerance = 1e-10)
  # other Matrix classes are accepted too
  tsp <- methods::as(Matrix::Matrix(sim$query.y, sparse = TRUE), "TsparseMatrix")
  other <- do.call(run_quiet, c(list(tsp, reference = sim$reference.y, refdata = sim$reference.x), fast))
  expect_equal(plain(other), plain(dense), tolerance = 1e-10)
})

test_that("shared features are matched by name, reference cells by name", {
  skip_if_no_cmot()
  sim <- sim_data()
  base <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), fast))
  # query features shuffled, plus extra query-only features
  q <- sim$query.y[rev(rownames(sim$query.y)), ]
  q <- rbind(q, extra1 = 1, extra2 = 2)
  msgs <- capture_messages(
    x <- do.call(run_quiet, c(list(q, reference = sim$reference.y, refdata = sim$reference.x),
                              modifyList(fast, list(verbose = TRUE))))
  )
  expect_match(msgs, "Found 25 shared features between reference \\(25\\) and query \\(27\\)", all = FALSE)
  expect_equal(plain(x), plain(base), tolerance = 1e-10)
  # refdata cells in another order are matched to reference cells by name
  x2 <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y,
                                  refdata = sim$reference.x[, rev(colnames(sim$reference.x))]), fast))
  expect_equal(plain(x2), plain(base), tolerance = 1e-10)
  # unnamed matrices are matched by position
  x3 <- do.call(run_quiet, c(list(unname(sim$query.y), reference = unname(sim$reference.y),
                                  refdata = unname(sim$reference.x)), fast))
  expect_equal(plain(x3), plain(base), tolerance = 1e-10)
  expect_null(dimnames(x3)[[1]])
})

test_that("poorly mapped cells give an R warning with the count", {
  skip_if_no_cmot()
  sim <- sim_data()
  w <- capture_warnings(
    x <- do.call(cmot::RunCMOT, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                                       outlier.threshold = -Inf), fast))
  )
  expect_match(w, "^30 of 30 query cells \\(100.0%\\) are poorly mapped", all = FALSE)
  expect_true(all(attr(x, "cmot")$poorly.mapped))
  w <- capture_warnings(
    x <- do.call(cmot::RunCMOT, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                                       outlier.threshold = Inf), fast))
  )
  expect_false(any(grepl("poorly mapped", w)))   # w may hold no warning at all
  expect_false(any(attr(x, "cmot")$poorly.mapped))
})

test_that("partly paired matrices: explicit pairs and pairs = 'names'", {
  skip_if_no_cmot()
  sim <- sim_data()
  # X measured in cells 1..60, Y in cells 31..90; cells 31..60 known pairs
  rx <- sim$reference.x[, 1:60]
  ry <- sim$reference.y[, 31:90]
  expect_error(do.call(cmot::RunCMOT, c(list(sim$query.y, reference = ry, refdata = rx), fast)),
               "Mismatched cells.*pairs")
  x.names <- do.call(run_quiet, c(list(sim$query.y, reference = ry, refdata = rx, pairs = "names"), fast))
  expect_identical(dim(x.names), c(nrow(rx), ncol(sim$query.y)))
  expect_identical(dimnames(x.names), list(rownames(rx), colnames(sim$query.y)))
  tab <- data.frame(x = colnames(sim$reference.x)[31:60], y = colnames(sim$reference.y)[31:60])
  x.tab <- do.call(run_quiet, c(list(sim$query.y, reference = ry, refdata = rx, pairs = tab), fast))
  expect_equal(plain(x.tab), plain(x.names), tolerance = 1e-10)
  x.idx <- do.call(run_quiet, c(list(sim$query.y, reference = ry, refdata = rx, pairs = cbind(31:60, 1:30)), fast))
  expect_equal(plain(x.idx), plain(x.names), tolerance = 1e-10)
  # same as the core with 0-based index pairs
  direct <- python_direct(rx, ry, sim$query.y, correspondence = cbind(30:59, 0:29))
  expect_equal(plain(x.names), plain(direct), tolerance = 1e-10)
  expect_gt(cor(as.vector(x.names), as.vector(sim$query.x)), 0.5)
  # the paper's nearest aligned cell (match.neighbors = 1) reaches the core too
  x.one <- do.call(run_quiet, c(list(sim$query.y, reference = ry, refdata = rx, pairs = "names",
                                     match.neighbors = 1), fast))
  direct.one <- python_direct(rx, ry, sim$query.y, correspondence = cbind(30:59, 0:29), match_neighbors = 1L)
  expect_equal(plain(x.one), plain(direct.one), tolerance = 1e-10)
  expect_false(isTRUE(all.equal(plain(x.one), plain(x.names))))
  expect_error(do.call(cmot::RunCMOT, c(list(sim$query.y, reference = ry, refdata = rx, pairs = "names",
                                             match.neighbors = 0), fast)),
               "match.neighbors: expected an integer >= 1, found 0")
})

test_that("a query wholly unlike the reference is flagged as a whole, with an R warning", {
  skip_if_no_cmot()
  sim <- sim_data()
  shifted <- sim$query.y + 100  # e.g. another normalization: every feature far off
  warns <- character()
  x <- withCallingHandlers(
    do.call(cmot::RunCMOT, c(list(shifted, reference = sim$reference.y, refdata = sim$reference.x), fast)),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
  info <- attr(x, "cmot")
  expect_true(info$query.unlike)
  expect_true(all(info$poorly.mapped))
  expect_true(any(grepl("query as a whole is unlike the reference: check its features and normalization", warns)))
  # the same cells unshifted map well: a score near 1 for most of them
  ok <- attr(do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), fast)), "cmot")
  expect_false(ok$query.unlike)
  expect_gt(median(ok$score), median(info$score))
})
