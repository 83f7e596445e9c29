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

# SeuratObject 5 (Assay5 objects, layers)?
seurat_v5 <- function() utils::packageVersion("SeuratObject") >= "5.0.0"

# A Seurat object of one assay made from `m` (features x cells) as counts, with
# its "data" equal to the counts: what CreateSeuratObject() makes on
# SeuratObject 4; on SeuratObject 5 (an Assay5, no "data" layer until
# normalized) the data layer is set explicitly.
seurat_obj <- function(m, assay) {
  obj <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(m), assay = assay)
  if (seurat_v5()) SeuratObject::LayerData(obj, assay = assay, layer = "data") <- SeuratObject::as.sparse(m)
  obj
}

# obj[[name]] gets an assay of data only (no counts), of the version
# CreateSeuratObject() makes (Assay5 on SeuratObject 5), added as RunCMOT() adds
# its own (SeuratObject 5 warns that such an assay has no counts layer).
data_assay <- function(obj, name, m) {
  a <- if (seurat_v5()) SeuratObject::CreateAssay5Object(data = SeuratObject::as.sparse(m))
       else SeuratObject::CreateAssayObject(data = m)
  cmot:::.add_assay(obj, name, a)
}

# A layer (slot) of an assay, on either SeuratObject version.
layer_data <- function(obj, assay, layer = "data") {
  if (seurat_v5()) SeuratObject::LayerData(obj, assay = assay, layer = layer)
  else SeuratObject::GetAssayData(obj, slot = layer, assay = assay)
}

seurat_pair <- function(sim) {
  reference <- seurat_obj(sim$reference.y, "ATAC")
  reference <- data_assay(reference, "RNA", sim$reference.x)
  reference$celltype <- unname(sim$reference.labels)
  query <- seurat_obj(sim$query.y, "ATAC")
  query$batch <- "b1"
  list(reference = reference, query = query)
}

# RunCMOT() arguments of the Seurat tests: the assays of seurat_pair() and `fast`.
seurat_args <- function(...) {
  c(list(reference.assay = "ATAC", refdata.assay = "RNA", query.assay = "ATAC"), modifyList(fast, list(...)))
}

# The Python core called directly on the same arrays (cells as rows), with the
# parameters of `fast` (k, n.features, seed) plus those in `...` (core names);
# every other parameter takes the core's default, which RunCMOT() shares (see
# test-params.R).  The result carries the fitted k, reg.e and poorly mapped cells.
python_direct <- function(ref.x, ref.y, query.y, correspondence = NULL, labels = NULL,
                          k = 8L, n.features = 20L, seed = 0L, transfer_labels = NULL, ...) {
  cm <- reticulate::import("cmot")
  model <- cm$CMOT(n_neighbors = if (identical(k, "auto")) "auto" else as.integer(k),
                   n_features = as.integer(n.features), random_state = as.integer(seed), ...)
  warnings <- reticulate::import("warnings")
  with(warnings$catch_warnings(), {
    warnings$simplefilter("ignore")
    if (is.null(transfer_labels)) {
      model$fit(t(as.matrix(ref.x)), t(as.matrix(ref.y)), correspondence = correspondence, labels = labels)
    } else {
      model$fit(t(as.matrix(ref.x)), t(as.matrix(ref.y)), correspondence = correspondence, labels = labels,
                transfer_labels = lapply(transfer_labels, as.array))
    }
    out <- model$predict(t(as.matrix(query.y)))
  })
  out <- t(out)
  attr(out, "core") <- list(k = model$n_neighbors_, reg.e = model$reg_e_, shrinkage = model$shrinkage_,
                            step.c = list(linear.weight = model$linear_weight_, metric.weight = model$metric_weight_,
                                          kernel.width = model$kernel_width_),
                            poorly.mapped = as.logical(model$outliers_),
                            score = as.numeric(model$mapping_score_),
                            outlier.score = as.numeric(model$outlier_scores_),
                            feature.scores = .py_numeric(model$feature_scores_),
                            labels = if (is.null(transfer_labels)) NULL else lapply(
                              stats::setNames(names(transfer_labels), names(transfer_labels)), function(n) list(
                                labels = .py_strings(.py_column(model$predicted_labels_, n)),
                                score = .py_numeric(.py_column(model$predicted_label_score_, n)),
                                scores = t(.py_matrix(model$predicted_label_scores_[[n]])),
                                neighbors = as.integer(model$label_neighbors_[[n]]))))
  out
}

# A pandas Series (or NULL) as a numeric vector, a DataFrame as a matrix (with its column
# names): reticulate 1.28 converts them to R objects, reticulate 1.41 may hand back the
# Python object itself; numpy arrays convert the same way in both.
.py_numeric <- function(x) {
  if (is.null(x)) return(NULL)
  if (inherits(x, "python.builtin.object")) x <- reticulate::py_to_r(x$to_numpy())
  as.numeric(x)
}
.py_column <- function(df, n) {
  if (inherits(df, "python.builtin.object")) df$`__getitem__`(n) else df[[n]]
}
.py_strings <- function(x) {
  if (inherits(x, "python.builtin.object")) x <- reticulate::py_to_r(x$astype("str")$tolist())
  as.character(unlist(x))
}
.py_matrix <- function(x) {
  if (!inherits(x, "python.builtin.object")) return(as.matrix(x))
  out <- reticulate::py_to_r(x$to_numpy())
  colnames(out) <- as.character(reticulate::py_to_r(x$columns$astype("str")$tolist()))
  out
}

# The values only: no dimnames, no "cmot" attribute.
plain <- function(x) {
  attr(x, "cmot") <- NULL
  attr(x, "core") <- NULL
  unname(as.matrix(x))
}
