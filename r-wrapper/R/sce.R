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
                                         new.altexp.name = "CMOT", overwrite = FALSE, verbose = TRUE, ...) {
  .check_dots(..., allowed = names(.cmot_arg_map()))
  ref.x.obj <- .check_sce_reference(reference, reference.x, reference.altexp, refdata.altexp)
  x.obj.name <- if (is.null(reference.x)) "reference" else "reference.x"
  .check_string(assay.type, "assay.type")
  .check_string(new.altexp.name, "new.altexp.name")
  .check_flag(overwrite, "overwrite")
  .check_new_altexp(object, new.altexp.name, query.altexp, overwrite)
  meta.cols <- .check_new_columns(colnames(SummarizedExperiment::colData(object)), new.altexp.name, overwrite,
                                  "colData", "new.altexp.name")
  label.values <- .labels_from(labels, SummarizedExperiment::colData(reference), "colData")
  query <- .sce_data(object, query.altexp, assay.type, "query.altexp", "the query")
  x.hat <- RunCMOT.default(
    .named(query$value, query$name, paste0("colData column '", meta.cols[1], "'")),
    reference = do.call(.named, .sce_data(reference, reference.altexp, assay.type, "reference.altexp", "reference")),
    refdata = do.call(.named, .sce_data(ref.x.obj, refdata.altexp, assay.type, "refdata.altexp", x.obj.name)),
    pairs = pairs, labels = label.values, verbose = verbose, ...)
  info <- attr(x.hat, "cmot")
  attr(x.hat, "cmot") <- NULL
  colnames(x.hat) <- colnames(object)
  if (is.null(rownames(x.hat))) rownames(x.hat) <- paste0("feature", seq_len(nrow(x.hat)))
  ae <- SummarizedExperiment::SummarizedExperiment(assays = stats::setNames(list(x.hat), assay.type))
  SingleCellExperiment::altExp(object, new.altexp.name) <- ae
  SummarizedExperiment::colData(object)[[meta.cols[1]]] <- unname(info$poorly.mapped)
  SummarizedExperiment::colData(object)[[meta.cols[2]]] <- unname(info$score)
  S4Vectors::metadata(object)[["RunCMOT"]] <- c(
    .run_record(info), list(assay.type = assay.type, reference.altexp = reference.altexp,
                            refdata.altexp = refdata.altexp, query.altexp = query.altexp,
                            new.altexp.name = new.altexp.name, labels = labels,
                            n.shared.features = info$n.shared.features, n.pairs = info$n.pairs,
                            time = Sys.time(), version = as.character(utils::packageVersion("cmot"))))
  object
}

.check_sce_reference <- function(reference, reference.x, reference.altexp, refdata.altexp) {
  if (!requireNamespace("SingleCellExperiment", quietly = TRUE) ||
      !requireNamespace("SummarizedExperiment", quietly = TRUE)) {
    stop("RunCMOT for SingleCellExperiment objects needs the Bioconductor packages SingleCellExperiment ",
         "and SummarizedExperiment.", call. = FALSE)
  }
  if (missing(reference) || !methods::is(reference, "SingleCellExperiment")) {
    stop("reference: expected a SingleCellExperiment holding the reference, found ",
         if (missing(reference)) "nothing" else paste(class(reference), collapse = "/"), ".", call. = FALSE)
  }
  if (!is.null(reference.x) && !methods::is(reference.x, "SingleCellExperiment")) {
    stop("reference.x: expected NULL or a SingleCellExperiment, found ",
         paste(class(reference.x), collapse = "/"), ".", call. = FALSE)
  }
  if (is.null(reference.x) && identical(refdata.altexp, reference.altexp)) {
    stop("refdata.altexp: name the altExp of reference holding the modality to infer (altExps: ",
         paste(SingleCellExperiment::altExpNames(reference), collapse = ", "),
         "); it must differ from reference.altexp.", call. = FALSE)
  }
  reference.x %||% reference
}

.check_new_altexp <- function(object, new.altexp.name, query.altexp, overwrite) {
  if (new.altexp.name %in% SingleCellExperiment::altExpNames(object) && !overwrite) {
    stop("new.altexp.name: the query already has an altExp '", new.altexp.name, "'. Set overwrite = TRUE ",
         "to replace it, or choose another new.altexp.name.", call. = FALSE)
  }
  if (identical(new.altexp.name, query.altexp)) {
    stop("new.altexp.name: '", new.altexp.name, "' is the query.altexp and cannot be replaced.", call. = FALSE)
  }
}

# The checked matrix `value` of an assay of the main experiment or an altExp,
# and the words that name it in messages (`name`).
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
  list(value = .check_matrix(m, paste0(where, " (", assay.type, ")")),
       name = if (is.null(altexp)) what else paste0(what, " (altExp '", altexp, "')"))
}
