#' @param reference.altexp,query.altexp For SingleCellExperiment objects:
#'   alternative experiment (\code{altExp}) of \code{reference} and of the query
#'   holding the shared modality; \code{NULL} (default) uses the main experiment.
#' @param refdata.altexp For SingleCellExperiment objects: alternative
#'   experiment of \code{reference.x} (when given) or \code{reference} holding
#'   the modality to infer; \code{NULL} uses the main experiment of
#'   \code{reference.x} (only possible when \code{reference.x} is given).
#' @param assay.type For SingleCellExperiment objects: the assay to read from
#'   each experiment (default \code{"logcounts"}); the inferred values are
#'   stored under the same assay name.
#' @param new.altexp.name For SingleCellExperiment objects: name of the
#'   alternative experiment to store the inferred modality in.
#'
#' @section SingleCellExperiment method:
#' Reads \code{assay.type} of the shared modality from the main experiment or
#' an \code{altExp} of the query and of \code{reference}, and of the modality
#' to infer from an \code{altExp} of \code{reference} (or of
#' \code{reference.x}).  Returns \code{object} with a new alternative
#' experiment \code{new.altexp.name} holding the inferred values (assay
#' \code{assay.type}; features named as in the reference, unchanged), columns
#' \code{<name>.poorly.mapped} and \code{<name>.mapping.score} added to
#' \code{colData(object)}, and the parameters in
#' \code{metadata(object)$RunCMOT} (\code{params}, \code{k.used},
#' \code{k.scores}, \code{n.pcs.used}, \code{shrinkage.used} and
#' \code{reg.e.used}, as in \code{Tool()} for Seurat).  \code{overwrite} works as for Seurat.
#'
#' @export
#' @rdname RunCMOT
#' @examples
#' if (cmot_available() && requireNamespace("SingleCellExperiment", quietly = TRUE)) {
#'   # SingleCellExperiment objects, RNA as an altExp of the reference
#'   ref.sce <- SingleCellExperiment::SingleCellExperiment(
#'     assays = list(logcounts = sim$reference.y), colData = data.frame(type = sim$reference.labels))
#'   SingleCellExperiment::altExp(ref.sce, "RNA") <- SingleCellExperiment::SingleCellExperiment(
#'     assays = list(logcounts = sim$reference.x))
#'   query.sce <- SingleCellExperiment::SingleCellExperiment(assays = list(logcounts = sim$query.y))
#'   query.sce <- RunCMOT(query.sce, reference = ref.sce, refdata.altexp = "RNA",
#'                        labels = "type", k = 10, n.features = 20, seed = 1)
#'   SingleCellExperiment::altExp(query.sce, "CMOT")
#' }
RunCMOT.SingleCellExperiment <- function(object, reference, reference.altexp = NULL, refdata.altexp = NULL,
                                         query.altexp = NULL, reference.x = NULL, pairs = NULL,
                                         labels = NULL, assay.type = "logcounts",
                                         new.altexp.name = "CMOT", overwrite = FALSE,
                                         n.components = 10, align.neighbors = 5, mu = 0.5, match.neighbors = 10,
                                         reg.e = NULL,
                                         reg.cl = 1, reg.m = "auto", n.clusters = 2, k = "auto",
                                         n.features = 4000, scale = TRUE, n.pcs = "auto",
                                         barycentric.weight = 0.25, shrinkage = "auto", weight.scale = "auto",
                                         max.iter = 10, max.inner.iter = 1000, tol = 1e-6,
                                         outlier.threshold = 3.5, outlier.method = "distance", seed = NULL,
                                         verbose = TRUE, ...) {
  .check_dots(...)
  if (!requireNamespace("SingleCellExperiment", quietly = TRUE) ||
      !requireNamespace("SummarizedExperiment", quietly = TRUE)) {
    stop("RunCMOT for SingleCellExperiment objects needs the Bioconductor packages SingleCellExperiment ",
         "and SummarizedExperiment.", call. = FALSE)
  }
  if (missing(reference) || !methods::is(reference, "SingleCellExperiment")) {
    stop("reference: expected a SingleCellExperiment holding the reference, found ",
         if (missing(reference)) "nothing" else paste(class(reference), collapse = "/"), ".", call. = FALSE)
  }
  ref.x.obj <- if (is.null(reference.x)) reference else reference.x
  if (!methods::is(ref.x.obj, "SingleCellExperiment")) {
    stop("reference.x: expected NULL or a SingleCellExperiment, found ",
         paste(class(reference.x), collapse = "/"), ".", call. = FALSE)
  }
  x.obj.name <- if (is.null(reference.x)) "reference" else "reference.x"
  if (is.null(reference.x) && identical(refdata.altexp, reference.altexp)) {
    stop("refdata.altexp: name the altExp of reference holding the modality to infer (altExps: ",
         paste(SingleCellExperiment::altExpNames(reference), collapse = ", "),
         "); it must differ from reference.altexp.", call. = FALSE)
  }
  .check_string(assay.type, "assay.type")
  .check_string(new.altexp.name, "new.altexp.name")
  if (!is.logical(overwrite) || length(overwrite) != 1L || is.na(overwrite)) {
    stop("overwrite: expected TRUE or FALSE.", call. = FALSE)
  }
  if (new.altexp.name %in% SingleCellExperiment::altExpNames(object) && !overwrite) {
    stop("new.altexp.name: the query already has an altExp '", new.altexp.name, "'. Set overwrite = TRUE ",
         "to replace it, or choose another new.altexp.name.", call. = FALSE)
  }
  if (identical(new.altexp.name, query.altexp)) {
    stop("new.altexp.name: '", new.altexp.name, "' is the query.altexp and cannot be replaced.", call. = FALSE)
  }
  prefix <- tolower(new.altexp.name)
  meta.cols <- paste0(prefix, c(".poorly.mapped", ".mapping.score"))
  cd <- SummarizedExperiment::colData(object)
  clash <- intersect(meta.cols, colnames(cd))
  if (length(clash) && !overwrite) {
    stop("The query's colData already has column(s) ", paste0("'", clash, "'", collapse = ", "),
         "; set overwrite = TRUE to replace them, or choose another new.altexp.name.", call. = FALSE)
  }
  label.values <- NULL
  if (!is.null(labels)) {
    rcd <- SummarizedExperiment::colData(reference)
    if (!is.character(labels) || length(labels) != 1L) {
      stop("labels: expected the name of one column of the reference's colData.", call. = FALSE)
    }
    if (!labels %in% colnames(rcd)) {
      stop("labels: column '", labels, "' not found in the reference's colData (columns: ",
           paste(utils::head(colnames(rcd), 20), collapse = ", "), ").", call. = FALSE)
    }
    label.values <- rcd[[labels]]
  }
  params <- .collect_params(environment())
  query.y <- .sce_data(object, query.altexp, assay.type, "query.altexp", "the query (object)")
  ref.y <- .sce_data(reference, reference.altexp, assay.type, "reference.altexp", "reference")
  ref.x <- .sce_data(ref.x.obj, refdata.altexp, assay.type, "refdata.altexp", x.obj.name)
  shared <- .shared_features(ref.y, query.y, "reference", "query", verbose = verbose)
  if (!is.null(shared)) {
    ref.y <- ref.y[shared, , drop = FALSE]
    query.y <- query.y[shared, , drop = FALSE]
  }
  pr <- .resolve_pairs(pairs, colnames(ref.x), colnames(ref.y), ncol(ref.x), ncol(ref.y),
                       x.obj.name, "reference", verbose = verbose)
  if (!is.null(pr$x.order)) ref.x <- ref.x[, pr$x.order, drop = FALSE]
  label.values <- .check_labels(label.values, ncol(ref.y))
  res <- .run_cmot(ref.y, ref.x, query.y, params, pairs = pr$pairs, labels = label.values, verbose = verbose)
  x.hat <- res$x.hat
  colnames(x.hat) <- colnames(object)
  if (is.null(rownames(x.hat))) rownames(x.hat) <- paste0("feature", seq_len(nrow(x.hat)))
  ae <- SummarizedExperiment::SummarizedExperiment(assays = stats::setNames(list(x.hat), assay.type))
  SingleCellExperiment::altExp(object, new.altexp.name) <- ae
  SummarizedExperiment::colData(object)[[meta.cols[1]]] <- unname(res$poorly.mapped)
  SummarizedExperiment::colData(object)[[meta.cols[2]]] <- unname(res$score)
  .warn_poorly_mapped(res$poorly.mapped, paste0("colData column '", meta.cols[1], "'"))
  md <- S4Vectors::metadata(object)
  md[["RunCMOT"]] <- list(params = params, reg.e.used = res$reg.e, k.used = res$k, k.scores = res$k.scores,
                          n.pcs.used = res$n.pcs, shrinkage.used = res$shrinkage,
                          assay.type = assay.type,
                          reference.altexp = reference.altexp, refdata.altexp = refdata.altexp,
                          query.altexp = query.altexp, new.altexp.name = new.altexp.name, labels = labels,
                          n.shared.features = if (is.null(shared)) nrow(ref.y) else length(shared),
                          n.pairs = if (is.null(pr$pairs)) NA_integer_ else nrow(pr$pairs),
                          time = Sys.time(), version = as.character(utils::packageVersion("cmot")))
  S4Vectors::metadata(object) <- md
  object
}

.sce_data <- function(obj, altexp, assay.type, arg, what) {
  if (!is.null(altexp)) {
    .check_string(altexp, arg)
    if (!altexp %in% SingleCellExperiment::altExpNames(obj)) {
      stop(arg, ": altExp '", altexp, "' not found in ", what, " (altExps: ",
           paste(SingleCellExperiment::altExpNames(obj), collapse = ", "), ").", call. = FALSE)
    }
    exp <- SingleCellExperiment::altExp(obj, altexp)
    where <- paste0("altExp '", altexp, "' of ", what)
  } else {
    exp <- obj
    where <- paste0("the main experiment of ", what)
  }
  if (!assay.type %in% SummarizedExperiment::assayNames(exp)) {
    stop("assay.type: assay '", assay.type, "' not found in ", where, " (assays: ",
         paste(SummarizedExperiment::assayNames(exp), collapse = ", "), ").", call. = FALSE)
  }
  m <- SummarizedExperiment::assay(exp, assay.type, withDimnames = TRUE)
  if (is.null(colnames(m))) colnames(m) <- colnames(obj)
  .check_matrix(m, paste0(where, " (", assay.type, ")"))
}
