test_that("bad matrix inputs give clear R errors (checked in R, before Python)", {
  sim <- sim_data()
  q <- sim$query.y
  ry <- sim$reference.y
  rx <- sim$reference.x
  run <- function(...) cmot::RunCMOT(..., k = 8, n.features = 20, seed = 0, verbose = FALSE)
  expect_error(run(q, reference = ry), "refdata: the reference in the modality to infer is missing")
  expect_error(run(q, refdata = rx), "reference: the reference in the shared modality is missing")
  expect_error(run(as.character(q), reference = ry, refdata = rx), "object \\(query\\): expected a matrix")
  expect_error(run(q[0, ], reference = ry, refdata = rx), "expected a non-empty matrix")
  qq <- q
  rownames(qq) <- paste0("other", seq_len(nrow(qq)))
  expect_error(run(qq, reference = ry, refdata = rx), "No shared features between reference .* and query")
  expect_error(run(unname(q)[-1, ], reference = unname(ry), refdata = rx), "different numbers of features")
  expect_error(run(q, reference = ry, refdata = rx[, -1]), "Mismatched cells: refdata has 89 cells and reference has 90")
  expect_error(run(unname(q), reference = unname(ry), refdata = unname(rx)[, -1]), "Mismatched cells")
  expect_error(run(q, reference = ry, refdata = rx, labels = c("a", "b")),
               "labels: expected one label per reference .*\\(90\\), found 2")
  expect_error(run(q, reference = ry, refdata = rx, labels = c(NA, rep("a", 89))), "no missing labels")
  expect_error(run(q, reference = ry, refdata = rx, bogus = 1), "Unknown argument\\(s\\): bogus")
  expect_error(run(q, reference = ry, refdata = rx, pairs = data.frame(a = "nope", b = "ref1")),
               "pairs \\(column 1, refdata cells\\): 1 cell names not found, e.g. 'nope'")
  expect_error(run(q, reference = ry, refdata = rx, pairs = cbind(1:3)), "pairs: expected two columns")
  expect_error(run(q, reference = ry, refdata = rx, pairs = cbind(1, 1000)), "1-based cell indices in 1..90")
  expect_error(run(q, reference = ry, refdata = rx, pairs = "cells"), "pairs: expected NULL, \"names\"")
  rx2 <- rx
  colnames(rx2) <- paste0("x", seq_len(ncol(rx2)))
  expect_error(run(q, reference = ry, refdata = rx2, pairs = "names"), "no cell name is shared")
  skip_if_no_cmot()
  bad <- q
  bad[1, 1] <- NaN
  expect_error(run(bad, reference = ry, refdata = rx), "finite values")   # reported by the core
})

test_that("bad CMOT parameters: R errors naming the R argument, from the core's one check", {
  skip_if_no_cmot()
  sim <- sim_data()
  q <- sim$query.y
  ry <- sim$reference.y
  rx <- sim$reference.x
  run <- function(...) cmot::RunCMOT(..., k = 8, n.features = 20, seed = 0, verbose = FALSE)
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, k = 0), "k: expected \"auto\" or an integer >= 1, found 0\\.$")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, k = NULL), "k: expected \"auto\" or an integer >= 1, found NULL")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, k = "best"), "k: expected \"auto\"")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, n.pcs = 0),
               "n.pcs: expected \"auto\", NULL \\(paper mode\\) or an integer >= 1, found 0")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, n.pcs = 2.5), "n.pcs: expected \"auto\"")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, n.pcs = "best"), "n.pcs: expected \"auto\"")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, reg.m = 0),
               "reg.m: expected \"auto\", NULL \\(balanced transport\\) or a finite number > 0, found 0")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, reg.m = "balanced"), "reg.m: expected \"auto\"")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, outlier.method = "iforest"),
               "outlier.method: expected \"distance\" or \"isolation_forest\", found \"iforest\"")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, tol = 0), "tol: expected a finite number > 0")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, scale = "yes"),
               "scale: expected TRUE or FALSE, found \"yes\"")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, scale = NA), "scale: expected TRUE or FALSE, found NA")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, barycentric.weight = 1.5),
               "barycentric.weight: expected a number in \\[0, 1\\], found 1.5")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, shrinkage = 1.5),
               "shrinkage: expected \"auto\" or a number in \\[0, 1\\], found 1.5")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, shrinkage = "mean"),
               "shrinkage: expected \"auto\" or a number in \\[0, 1\\], found \"mean\"")
  expect_error(run(q, reference = ry, refdata = rx, reg.e = -1), "reg.e: expected a finite number > 0")
  expect_error(run(q, reference = ry, refdata = rx, mu = 1), "mu: expected a number strictly between 0 and 1")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, seed = 1.5), "seed: expected NULL or an integer between 0 and 4294967295, found 1.5")
  # values without a Python counterpart: NA (reticulate would send True) and several values
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, k = NA), "k: expected \"auto\" or an integer >= 1, found NA\\.")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, n.features = c(10, 20)),
               "n.features: expected an integer >= 1, found c\\(10, 20\\)\\.")
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, seed = -1),
               "seed: expected NULL or an integer between 0 and 4294967295, found -1\\.")
  # R names only, an R condition class, no Python names or traceback
  for (bad in list(list(k = -3), list(seed = 1.5), list(n.pcs = 0), list(weight.scale = -1), list(max.iter = 0),
                   list(match.neighbors = 2.5), list(outlier.threshold = "high"))) {
    err <- tryCatch(do.call(cmot::RunCMOT, c(list(q, reference = ry, refdata = rx, verbose = FALSE), bad)),
                    error = function(e) e)
    expect_s3_class(err, "cmot_param_error")
    expect_s3_class(err, "cmot_python_error")
    expect_true(startsWith(conditionMessage(err), paste0(names(bad), ": expected ")), label = conditionMessage(err))
    expect_no_match(conditionMessage(err), "n_neighbors|random_state|n_pcs|weight_scale|max_iter|match_neighbors|outlier_threshold|Traceback|Error")
  }
  expect_error(cmot::RunCMOT(q, reference = ry, refdata = rx, k = -3, verbose = FALSE), "^k: expected \"auto\" or an integer >= 1, found -3\\.$")
  # the object methods pass the parameters on and get the same errors
  so <- seurat_pair(sim)
  expect_error(cmot::RunCMOT(so$query, reference = so$reference, refdata.assay = "RNA", k = -3, verbose = FALSE),
               "^k: expected \"auto\" or an integer >= 1, found -3\\.$")
  expect_error(cmot::RunCMOT(so$query, reference = so$reference, refdata.assay = "RNA", seed = "a", verbose = FALSE),
               "^seed: expected NULL or an integer between 0 and 4294967295, found \"a\"\\.$")
  expect_error(cmot::RunCMOT(so$query, reference = so$reference, refdata.assay = "RNA", n.feat = 3, verbose = FALSE),
               "Unknown argument\\(s\\): n.feat")
})

test_that("bad CMOT parameters are refused before any data is converted for Python", {
  skip_if_no_cmot()
  sim <- sim_data()
  trace(".to_python", tracer = quote(stop("data converted for Python")), where = asNamespace("cmot"), print = FALSE)
  on.exit(untrace(".to_python", where = asNamespace("cmot")))
  run <- function(...) cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                                     n.features = 20, verbose = FALSE, ...)
  expect_error(run(k = 8), "data converted for Python")   # the trace works
  expect_error(run(k = -3), "^k: expected")
  expect_error(run(mu = 2), "^mu: expected")
})

test_that("errors raised by the Python core arrive as R errors with the Python message", {
  skip_if_no_cmot()
  sim <- sim_data()
  err <- tryCatch(
    cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x, n.clusters = 1000,
                  verbose = FALSE),
    error = function(e) e
  )
  expect_s3_class(err, "cmot_python_error")
  msg <- conditionMessage(err)
  expect_match(msg, "ValueError: n_clusters: expected at most the number of source cells \\(90\\), found 1000")
  expect_match(msg, "R argument: n.clusters", fixed = TRUE)
  expect_no_match(msg, "Traceback|py_call_impl|File \"")
  # partly paired alignment constraints
  expect_error(
    cmot::RunCMOT(sim$query.y, reference = sim$reference.y[, 1:8], refdata = sim$reference.x[, 1:4],
                  pairs = "names", verbose = FALSE),
    "align_neighbors: expected fewer than the number of cells"
  )
})

test_that("bad Seurat inputs give clear R errors (checked in R, before Python)", {
  sim <- sim_data()
  so <- seurat_pair(sim)
  run <- function(...) cmot::RunCMOT(..., k = 8, n.features = 20, seed = 0, verbose = FALSE)
  expect_error(run(so$query, reference = so$reference, refdata.assay = "RNA", query.assay = "nope"),
               "query.assay: assay 'nope' not found in the query \\(object\\) \\(assays: ATAC\\)")
  expect_error(run(so$query, reference = so$reference, reference.assay = "nope", refdata.assay = "RNA"),
               "reference.assay: assay 'nope' not found in reference \\(assays: ATAC, RNA\\)")
  expect_error(run(so$query, reference = so$reference, refdata.assay = "ADT"),
               "refdata.assay: assay 'ADT' not found in reference")
  expect_error(run(so$query, reference = so$reference), "refdata.assay: name the assay of reference")
  expect_error(run(so$query, reference = so$reference, refdata.assay = "ATAC"),
               "must be another assay than the shared one")
  expect_error(run(so$query, reference = sim$reference.y, refdata.assay = "RNA"),
               "reference: expected a Seurat object")
  expect_error(run(so$query, reference = so$reference, refdata.assay = "RNA", labels = "cluster"),
               "labels: column 'cluster' not found in the reference's meta.data")
  expect_error(run(so$query, reference = so$reference, refdata.assay = "RNA", labels = c("a", "b")),
               "labels: expected the name of one column")
  expect_error(run(so$query, reference = so$reference, refdata.assay = "RNA", layer = "scale.data"),
               "The 'scale.data' layer of assay 'ATAC' in the query is (empty|missing)")
  expect_error(run(so$query, reference = so$reference, refdata.assay = "RNA", layer = "raw"),
               "layer: expected one of \"data\", \"counts\", \"scale.data\", found \"raw\"")
  expect_error(run(so$query, reference = so$reference, refdata.assay = "RNA", layer = "data", slot = "counts"),
               "slot: deprecated name of layer, given together with layer and differing")
  other <- seurat_obj(`rownames<-`(sim$query.y, paste0("chr1-", seq_len(nrow(sim$query.y)))), "ATAC")
  expect_error(run(other, reference = so$reference, refdata.assay = "RNA"), "No shared features")
  # mismatched cells between the two reference objects
  ref.x <- seurat_obj(sim$reference.x[, 1:50], "RNA")
  expect_error(run(so$query, reference = so$reference, reference.x = ref.x, refdata.assay = "RNA"),
               "Mismatched cells: reference.x \\(assay 'RNA'\\) has 50 cells and reference \\(assay 'ATAC'\\) has 90")
  so$reference$with.na <- c(NA, rep("a", 89))
  expect_error(run(so$query, reference = so$reference, refdata.assay = "RNA", labels = "with.na"),
               "no missing labels")
  skip_if_no_cmot()
  q <- run_quiet(so$query, reference = so$reference, refdata.assay = "RNA", k = 8, n.features = 20, verbose = FALSE)
  q$cmot.poorly.mapped <- NULL
  expect_error(run(q, reference = so$reference, refdata.assay = "RNA", new.assay.name = "CMOT2",
                   overwrite = NA), "overwrite: expected TRUE or FALSE")
})

test_that("a missing Python core gives a helpful R error, not a traceback", {
  sim <- sim_data(30, 10)
  old <- options(cmot.python.module = "cmot_module_that_does_not_exist")
  on.exit(options(old))
  expect_false(cmot::cmot_available())
  expect_message(cmot::cmot_available(verbose = TRUE), "cmot_module_that_does_not_exist")
  err <- tryCatch(cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
                                verbose = FALSE), error = function(e) e)
  expect_s3_class(err, "error")
  expect_match(conditionMessage(err), "The cmot Python core is not available")
  expect_match(conditionMessage(err), "install_cmot\\(")
  expect_match(conditionMessage(err), "RETICULATE_PYTHON")
  expect_no_match(conditionMessage(err), "Traceback")
  # argument errors are still reported first, without Python
  expect_error(cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x[, -1],
                             verbose = FALSE), "Mismatched cells")
})

test_that("an outdated Python core gives an R error that names both versions", {
  skip_if_no_cmot()
  sim <- sim_data(30, 10)
  old <- options(cmot.min.core.version = "99.0")
  on.exit(options(old))
  expect_false(cmot::cmot_available())
  expect_message(cmot::cmot_available(verbose = TRUE), "the cmot Python core in .* is version [0-9.]+; this R package \\([0-9.]+\\) needs 99.0 or later")
  expect_error(cmot::RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x, verbose = FALSE),
               "The cmot Python core is not available: the cmot Python core in .* needs 99.0 or later")
  options(old)
  expect_true(cmot::cmot_available())  # the installed core is recent enough
})

test_that("install_cmot checks its arguments before touching Python", {
  expect_error(cmot::install_cmot(python.path = ""), "python.path: expected the path to the cmot Python project")
  expect_error(cmot::install_cmot(python.path = "/no/such/dir/cmot"), "no such file or folder")
  expect_error(cmot::install_cmot(envname = c("a", "b"), python.path = "x"), "envname: expected one non-empty string")
  tmp <- tempfile()
  dir.create(tmp)
  on.exit(unlink(tmp, recursive = TRUE))
  expect_error(cmot:::.find_python_project(tmp), "found no pyproject.toml")
  root <- Sys.getenv("CMOT_REPO", "")
  proj <- file.path(tmp, "proj")
  dir.create(file.path(proj, "python", "cmot"), recursive = TRUE)
  file.create(file.path(proj, "pyproject.toml"))
  expect_identical(cmot:::.find_python_project(file.path(proj, "python", "cmot")), normalizePath(proj))
  expect_identical(cmot:::.find_python_project(proj), normalizePath(proj))
})

test_that("install_cmot builds a working environment, NumPy < 2 only where reticulate needs it (opt-in: needs PyPI)", {
  skip_if(Sys.getenv("CMOT_TEST_INSTALL") != "true", "set CMOT_TEST_INSTALL=true to test install_cmot()")
  project <- Sys.getenv("CMOT_PYTHON_PATH")
  skip_if(!nzchar(project), "set CMOT_PYTHON_PATH to the cmot Python project")
  env <- file.path(tempdir(), "r-cmot-install-test")
  on.exit(unlink(env, recursive = TRUE))
  py <- cmot::install_cmot(envname = env, python.path = project, restart.message = FALSE)
  expect_true(file.exists(py))
  out <- system2(py, c("-c", shQuote("import numpy, cmot; print(numpy.__version__)")), stdout = TRUE)
  pinned <- !is.null(cmot:::.numpy_pin(utils::packageVersion("reticulate")))
  expect_identical(utils::compareVersion(utils::tail(out, 1), "2.0") < 0, pinned)
})
