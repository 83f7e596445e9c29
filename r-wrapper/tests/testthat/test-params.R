# The CMOT parameters are listed once, in the formals of RunCMOT.default(); the
# R <-> Python name map, cmot:::.cmot_arg_map(), is read from them.
r_defaults <- function() {
  f <- formals(cmot:::RunCMOT.default)[names(cmot:::.cmot_arg_map())]
  lapply(f, eval, baseenv())   # a NULL default stays in the list as NULL
}

test_that("the CMOT parameters are listed once: the object methods have none of them and pass them on", {
  map <- cmot:::.cmot_arg_map()
  expect_identical(map[["k"]], "n_neighbors")
  expect_identical(map[["seed"]], "random_state")
  expect_identical(map[["n.pcs"]], "n_pcs")
  expect_false(anyDuplicated(map) > 0)
  expect_false(anyDuplicated(names(map)) > 0)
  for (m in c("Seurat", "SingleCellExperiment")) {
    f <- names(formals(utils::getS3method("RunCMOT", m, envir = asNamespace("cmot"))))
    expect_identical(intersect(f, names(map)), character(0), label = paste0("CMOT parameters in RunCMOT.", m))
    expect_true("..." %in% f)
  }
  expect_identical(r_defaults()$k, "auto")
})

test_that("R and Python name the same parameters, one R argument each, with the same defaults", {
  skip_if_no_cmot()
  # the core's own declaration: the signature of cmot.CMOT
  core <- reticulate::py_eval(paste0(
    "{n: p.default for n, p in __import__('inspect').signature(__import__('cmot').CMOT).parameters.items()}"))
  map <- cmot:::.cmot_arg_map()
  defaults <- r_defaults()
  py.params <- setdiff(names(core), "verbose")   # verbose: R prints messages, the core never logs
  # every Python parameter has exactly one R argument, and every R argument one Python parameter
  for (p in py.params) expect_identical(sum(map == p), 1L, label = paste0("R arguments for core parameter ", p))
  expect_setequal(unname(map), py.params)
  for (r in names(map)) {
    p <- map[[r]]
    expect_identical(is.null(defaults[[r]]), is.null(core[[p]]), label = paste0("NULL-ness of ", r, " (core ", p, ")"))
    expect_identical(class(defaults[[r]])[1] == "character", is.character(core[[p]]), label = paste0("type of ", r))
    expect_equal(defaults[[r]], core[[p]], label = paste0("R default of ", r, " (core ", p, ")"))
  }
  # what RunCMOT() sends with the defaults: every core parameter, as the core normalizes it
  sent <- cmot:::.core_params(defaults)
  expect_setequal(names(sent), names(core))
  for (p in names(core)) expect_equal(sent[[p]], core[[p]], label = paste0("default sent for ", p))
  # errors of the core name the R argument
  expect_identical(cmot:::.r_wording("n_neighbors: expected \"auto\" or an integer >= 1, found -3.0."),
                   "k: expected \"auto\" or an integer >= 1, found -3.")
  expect_identical(cmot:::.r_wording("random_state: expected None or an integer, found 'x'."),
                   "seed: expected NULL or an integer, found \"x\".")
  expect_identical(cmot:::.r_wording("n_pcs: with n_neighbors and weight_scale, found True."),
                   "n.pcs: with k and weight.scale, found TRUE.")
})

test_that("k = \"auto\": the k chosen by the core is used and recorded, as with the core itself", {
  skip_if_no_cmot()
  sim <- sim_data()
  args <- modifyList(fast, list(k = "auto"))
  x <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), args))
  info <- attr(x, "cmot")
  direct <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, k = "auto")
  expect_equal(plain(x), plain(direct), tolerance = 1e-10)
  expect_identical(info$k, as.integer(attr(direct, "core")$k))
  expect_identical(info$params$n_neighbors, "auto")
  # candidates below the number of reference cells (90), each scored
  expect_identical(names(info$k.scores), c("5", "10", "20", "30", "50"))
  expect_identical(info$k, as.integer(names(which.max(info$k.scores))))
  expect_equal(info$reg.e, attr(direct, "core")$reg.e, tolerance = 1e-12)
  # a given k is recorded as given, with no scores
  x8 <- do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x), fast))
  expect_identical(attr(x8, "cmot")$k, 8L)
  expect_null(attr(x8, "cmot")$k.scores)
})

test_that("paper mode, balanced or weighted relaxation, weight scale and isolation forest: same as the core", {
  skip_if_no_cmot()
  sim <- sim_data()
  lab <- unname(sim$reference.labels)
  run <- function(...) do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y,
                                                 refdata = sim$reference.x, labels = lab),
                                            modifyList(fast, list(...), keep.null = TRUE)))
  # paper mode: raw-feature cost (fewer variable features than shared ones, so it differs from PCA),
  # balanced transport, exp(-distance) weights, the paper's detector, a paper-scale reg.e
  paper <- run(n.features = 15, scale = FALSE, n.pcs = NULL, barycentric.weight = 1, reg.m = NULL,
               weight.scale = 1, reg.e = 100, outlier.method = "isolation_forest", max.inner.iter = 500,
               tol = 1e-8)
  expect_null(attr(paper, "cmot")$params$n_pcs)
  expect_true("n_pcs" %in% names(attr(paper, "cmot")$params))
  expect_identical(attr(paper, "cmot")$params$barycentric_weight, 1)
  expect_false(attr(paper, "cmot")$params$scale)
  direct <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = lab, n.features = 15,
                          scale = FALSE, n_pcs = NULL, barycentric_weight = 1, reg_m = NULL,
                          weight_scale = 1, reg_e = 100,
                          outlier_method = "isolation_forest", max_inner_iter = 500L, tol = 1e-8)
  expect_equal(plain(paper), plain(direct), tolerance = 1e-10)
  expect_identical(unname(attr(paper, "cmot")$poorly.mapped), attr(direct, "core")$poorly.mapped)
  expect_equal(unname(attr(paper, "cmot")$score), attr(direct, "core")$score, tolerance = 1e-10)
  expect_identical(attr(paper, "cmot")$reg.e, 100)

  # a numeric reg.m and PCA with fewer components than features
  relaxed <- run(reg.m = 5, n.pcs = 5)
  direct.r <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = lab, reg_m = 5, n_pcs = 5L)
  expect_equal(plain(relaxed), plain(direct.r), tolerance = 1e-10)
  expect_false(isTRUE(all.equal(plain(relaxed), plain(paper))))

  # unscaled features, and the shift alone or the paper's map on scaled ones
  unscaled <- run(scale = FALSE)
  direct.u <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = lab, scale = FALSE)
  expect_equal(plain(unscaled), plain(direct.u), tolerance = 1e-10)
  bary <- run(barycentric.weight = 1)
  direct.b <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = lab, barycentric_weight = 1)
  shift <- run(barycentric.weight = 0)
  direct.s <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = lab, barycentric_weight = 0)
  expect_equal(plain(shift), plain(direct.s), tolerance = 1e-10)
  expect_false(isTRUE(all.equal(plain(shift), plain(bary))))
  expect_equal(plain(bary), plain(direct.b), tolerance = 1e-10)
  expect_false(isTRUE(all.equal(plain(bary), plain(unscaled))))
})

test_that("shrinkage: a given weight and the one chosen by the core are used and recorded", {
  skip_if_no_cmot()
  sim <- sim_data()
  lab <- unname(sim$reference.labels)
  run <- function(x, ...) do.call(run_quiet, c(list(sim$query.y, reference = sim$reference.y, refdata = x,
                                                    labels = lab), modifyList(fast, list(...))))
  auto <- run(sim$reference.x)
  direct <- python_direct(sim$reference.x, sim$reference.y, sim$query.y, labels = lab)
  expect_identical(attr(auto, "cmot")$shrinkage, attr(direct, "core")$shrinkage)
  expect_identical(attr(auto, "cmot")$shrinkage, 0)  # Y predicts X well in the simulation
  # Step C's other choices, as the core made them
  expect_identical(attr(auto, "cmot")$step.c, attr(direct, "core")$step.c)
  expect_identical(names(attr(auto, "cmot")$step.c), c("linear.weight", "metric.weight", "kernel.width"))
  expect_message(half <- run(sim$reference.x, shrinkage = 0.5, verbose = TRUE),
                 "CMOT used k = 8, n.pcs = [0-9]+, shrinkage = 0.5, reg.e = [0-9.e+-]+; [0-9]+ of 30 query cells poorly mapped")
  expect_identical(attr(half, "cmot")$shrinkage, 0.5)
  expect_identical(attr(half, "cmot")$params$shrinkage, 0.5)
  # a given shrinkage makes none of Step C's other choices
  expect_identical(attr(half, "cmot")$step.c, list(linear.weight = 0, metric.weight = 0, kernel.width = 1))
  # a given shrinkage pulls the neighbours' average (Step C's linear blend comes only with "auto")
  none <- run(sim$reference.x, shrinkage = 0)
  expect_equal(plain(half), 0.5 * plain(none) + 0.5 * rowMeans(sim$reference.x), tolerance = 1e-10)
  # reference X shuffled across cells: Y says nothing about it, so the core warns (here the
  # average alone scores at least as well as what leave-one-out chose) and R gets the warning
  set.seed(3)
  shuffled <- sim$reference.x[, sample(ncol(sim$reference.x))]
  colnames(shuffled) <- colnames(sim$reference.x)
  expect_warning(
    x <- cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = shuffled, labels = lab, k = 8,
                       n.features = 20, seed = 0, verbose = FALSE, outlier.threshold = Inf),
    "cmot \\(Python UserWarning\\): shrinkage: the shared modality predicts X little better than the source"
  )
  direct <- suppressWarnings(python_direct(shuffled, sim$reference.y, sim$query.y, labels = lab,
                                           outlier_threshold = Inf))
  expect_identical(attr(x, "cmot")$shrinkage, attr(direct, "core")$shrinkage)
})

test_that("a k above the number of reference cells: the k the core used is recorded, with its warning", {
  skip_if_no_cmot()
  sim <- sim_data()   # 90 reference cells
  expect_warning(
    x <- cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x, k = 1000,
                       n.features = 20, seed = 0, verbose = FALSE, outlier.threshold = Inf),
    "cmot \\(Python UserWarning\\): .*\\bk\\b.*90"
  )
  expect_identical(attr(x, "cmot")$k, 90L)
  expect_identical(attr(x, "cmot")$args$k, 1000)          # as given
  expect_equal(plain(x), plain(python_direct(sim$reference.x, sim$reference.y, sim$query.y, k = 90L)),
               tolerance = 1e-10)
  so <- seurat_pair(sim)
  q <- suppressWarnings(cmot::RunCMOT(so$query, reference = so$reference, refdata.assay = "RNA", k = 1000,
                                      n.features = 20, seed = 0, verbose = FALSE))
  expect_identical(q@commands$RunCMOT$k, 1000)
  expect_identical(q@commands$RunCMOT$k.used, 90L)
  expect_identical(SeuratObject::Tool(q, "RunCMOT")$k.used, 90L)
})
