# Shared fixtures. Everything is small: the whole suite runs in about half a minute.

skip_if_no_cmot <- function() {
  if (!cmot::cmot_available()) skip("the cmot Python core is not available to reticulate")
}

# Small simulated data set (fixed seed), features x cells.
sim_data <- function(n.reference = 90, n.query = 30, seed = 1) {
  withr_seed <- .Random.seed_backup()
  on.exit(.Random.seed_restore(withr_seed))
  set.seed(seed)
  cmot::simulate_multimodal(n.reference = n.reference, n.query = n.query, n.x.features = 12,
                            n.y.features = 25)
}

.Random.seed_backup <- function() if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv()) else NULL
.Random.seed_restore <- function(s) if (!is.null(s)) assign(".Random.seed", s, globalenv())

# Fast, reproducible CMOT settings used throughout.
fast <- list(k = 8, n.features = 20, seed = 0, verbose = FALSE)

run_quiet <- function(...) suppressWarnings(cmot::RunCMOT(...))

seurat_pair <- function(sim) {
  reference <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(sim$reference.y), assay = "ATAC")
  reference[["RNA"]] <- SeuratObject::CreateAssayObject(data = sim$reference.x)
  reference$celltype <- unname(sim$reference.labels)
  query <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(sim$query.y), assay = "ATAC")
  query$batch <- "b1"
  list(reference = reference, query = query)
}

# The Python core called directly on the same arrays (cells as rows), with the
# parameters of `fast` (k, n.features, seed) plus those in `...` (core names);
# every other parameter takes the core's default, which RunCMOT() shares (see
# test-params.R).  The result carries the fitted k, reg.e and poorly mapped cells.
python_direct <- function(ref.x, ref.y, query.y, correspondence = NULL, labels = NULL,
                          k = 8L, n.features = 20L, seed = 0L, ...) {
  cm <- reticulate::import("cmot")
  model <- cm$CMOT(n_neighbors = if (identical(k, "auto")) "auto" else as.integer(k),
                   n_features = as.integer(n.features), random_state = as.integer(seed), ...)
  warnings <- reticulate::import("warnings")
  with(warnings$catch_warnings(), {
    warnings$simplefilter("ignore")
    model$fit(t(as.matrix(ref.x)), t(as.matrix(ref.y)), correspondence = correspondence, labels = labels)
    out <- model$predict(t(as.matrix(query.y)))
  })
  out <- t(out)
  attr(out, "core") <- list(k = model$n_neighbors_, reg.e = model$reg_e_, shrinkage = model$shrinkage_,
                            poorly.mapped = as.logical(model$outliers_),
                            score = as.numeric(model$outlier_scores_))
  out
}

# The values only: no dimnames, no "cmot" attribute.
plain <- function(x) {
  attr(x, "cmot") <- NULL
  attr(x, "core") <- NULL
  unname(as.matrix(x))
}
