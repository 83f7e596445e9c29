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
#' \code{k.scores}, \code{n.pcs.used}, \code{shrinkage.used}, \code{step.c.used} and
#' \code{reg.e.used}, as in \code{Tool()} for Seurat, and \code{feature.scores}, per inferred altExp).
#' \code{overwrite} works as for Seurat.  Each inferred altExp's \code{rowData}
#' has a column \code{cmot.predictability} (see \code{feature.scores} in Value).
#' With \code{refdata = list(type = "type", RNA = "RNA")}, an element naming an
#' \code{altExp} of \code{reference.x} (or \code{reference}) is inferred into a new
#' altExp named after the element, and one naming a \code{colData} column of
#' \code{reference} (or giving labels as values) is transferred: \code{colData}
#' columns \code{predicted.<name>} and \code{predicted.<name>.score}, and an altExp
#' \code{prediction.score.<name>} whose assay \code{scores} holds the score of
#' each class (classes x cells).
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
                                         labels = NULL, refdata = NULL, assay.type = "logcounts",
                                         new.altexp.name = "CMOT", overwrite = FALSE, verbose = TRUE, ...) {
  .check_dots(..., allowed = names(.cmot_arg_map()))
  ref.x.obj <- .check_sce_reference(reference, reference.x, reference.altexp, refdata.altexp, refdata)
  x.obj.name <- if (is.null(reference.x)) "reference" else "reference.x"
  .check_string(assay.type, "assay.type")
  .check_string(new.altexp.name, "new.altexp.name")
  .check_flag(overwrite, "overwrite")
  targets <- .sce_targets(refdata, refdata.altexp, new.altexp.name, reference, ref.x.obj, x.obj.name,
                          is.null(reference.x))
  targets$labels <- .check_transfer_labels(targets$labels, ncol(reference), "refdata")
  for (a in names(targets$altexps)) .check_new_altexp(object, a, query.altexp, overwrite, targets$arg[[a]])
  cd.names <- colnames(SummarizedExperiment::colData(object))
  for (nm in names(targets$labels)) {
    clash <- intersect(paste0("predicted.", nm, c("", ".score")), cd.names)
    if (length(clash) && !overwrite) {
      stop("refdata$", nm, ": the query's colData already has column(s) ", paste0("'", clash, "'", collapse = ", "),
           "; set overwrite = TRUE to replace them, or choose another name in refdata.", call. = FALSE)
    }
    .check_new_altexp(object, paste0("prediction.score.", nm), query.altexp, overwrite, paste0("refdata$", nm))
  }
  if (is.null(targets$altexps) && (!is.null(pairs) || !is.null(reference.x))) {
    stop("refdata: names only colData columns (labels), which belong to the reference's cells; pairs and ",
         "reference.x are for a modality to infer (an altExp) and must be NULL here.", call. = FALSE)
  }
  meta.cols <- .check_new_columns(cd.names, new.altexp.name, overwrite, "colData", "new.altexp.name")
  label.values <- .labels_from(labels, SummarizedExperiment::colData(reference), "colData")
  query <- .sce_data(object, query.altexp, assay.type, "query.altexp", "the query")
  x <- .sce_refdata_matrix(ref.x.obj, targets, assay.type, x.obj.name)
  x.hat <- RunCMOT.default(
    .named(query$value, query$name, paste0("colData column '", meta.cols[1], "'")),
    reference = do.call(.named, .sce_data(reference, reference.altexp, assay.type, "reference.altexp", "reference")),
    refdata = .named(x$value, x$name), pairs = pairs, labels = label.values,
    transfer.labels = targets$labels, verbose = verbose, ...)
  info <- attr(x.hat, "cmot")
  attr(x.hat, "cmot") <- NULL
  colnames(x.hat) <- colnames(object)
  feats <- attr(x$rows, "features") %||% rownames(x.hat) %||% paste0("feature", seq_len(nrow(x.hat)))
  scores <- list()
  for (a in names(x$rows)) {
    i <- x$rows[[a]]
    m <- x.hat[i, , drop = FALSE]
    rownames(m) <- feats[i]
    ae <- SummarizedExperiment::SummarizedExperiment(assays = stats::setNames(list(m), assay.type))
    if (!is.null(info$feature.scores)) {
      scores[[a]] <- stats::setNames(unname(info$feature.scores[i]), feats[i])
      SummarizedExperiment::rowData(ae)$cmot.predictability <- unname(scores[[a]])
    }
    SingleCellExperiment::altExp(object, a) <- ae
  }
  for (nm in names(info$labels)) {
    lab <- info$labels[[nm]]
    SummarizedExperiment::colData(object)[[paste0("predicted.", nm)]] <- unname(lab$labels)
    SummarizedExperiment::colData(object)[[paste0("predicted.", nm, ".score")]] <- unname(lab$score)
    sc <- lab$scores
    colnames(sc) <- colnames(object)
    SingleCellExperiment::altExp(object, paste0("prediction.score.", nm)) <-
      SummarizedExperiment::SummarizedExperiment(assays = list(scores = sc))
  }
  SummarizedExperiment::colData(object)[[meta.cols[1]]] <- unname(info$poorly.mapped)
  SummarizedExperiment::colData(object)[[meta.cols[2]]] <- unname(info$score)
  S4Vectors::metadata(object)[["RunCMOT"]] <- c(
    .run_record(info), list(assay.type = assay.type, reference.altexp = reference.altexp,
                            refdata.altexp = refdata.altexp, query.altexp = query.altexp,
                            new.altexp.name = new.altexp.name, labels = labels, refdata = targets$spec,
                            altexps = targets$altexps, feature.scores = if (length(scores)) scores else NULL,
                            n.shared.features = info$n.shared.features, n.pairs = info$n.pairs,
                            time = Sys.time(), version = as.character(utils::packageVersion("cmot"))))
  object
}

# What a run transfers (SingleCellExperiment): altexps = new altExp name -> source altExp of ref.x.obj
# (NA: its main experiment), labels = named list of .named() label vectors; see .seurat_targets().
.sce_targets <- function(refdata, refdata.altexp, new.altexp.name, reference, ref.x.obj, x.obj.name,
                         same.object) {
  altexps <- character()
  arg <- list()
  labels <- list()
  if (!is.null(refdata.altexp) || (is.null(refdata) && !same.object)) {
    altexps[[new.altexp.name]] <- refdata.altexp %||% NA_character_
    arg[[new.altexp.name]] <- "new.altexp.name"
  }
  if (!is.null(refdata)) {
    if (!is.list(refdata) || !length(refdata) || is.null(names(refdata)) || anyNA(names(refdata)) ||
        any(!nzchar(names(refdata))) || anyDuplicated(names(refdata))) {
      stop("refdata: expected a named list, e.g. list(celltype = \"celltype\", ADT = \"ADT\"), with unique ",
           "non-empty names, found ", if (is.list(refdata)) paste0("a list named ", deparse(names(refdata), nlines = 1L))
           else paste(class(refdata), collapse = "/"), ".", call. = FALSE)
    }
    cols <- colnames(SummarizedExperiment::colData(reference))
    aes <- SingleCellExperiment::altExpNames(ref.x.obj)
    for (nm in names(refdata)) {
      v <- refdata[[nm]]
      what <- paste0("refdata$", nm)
      if (is.character(v) && length(v) == 1L && !is.na(v)) {
        if (v %in% aes && v %in% cols) {
          stop(what, ": '", v, "' is both an altExp of ", x.obj.name, " and a colData column of reference; pass the ",
               "column's values instead (", nm, " = reference$", v, ").", call. = FALSE)
        }
        if (v %in% aes) {
          if (nm %in% names(altexps)) {
            stop(what, ": the new altExp '", nm, "' is also new.altexp.name; choose another name.", call. = FALSE)
          }
          altexps[[nm]] <- v
          arg[[nm]] <- what
        } else if (v %in% cols) {
          labels[[nm]] <- .named(SummarizedExperiment::colData(reference)[[v]],
                                 paste0(what, " (colData column '", v, "')"))
        } else {
          stop(what, ": '", v, "' is neither an altExp of ", x.obj.name, " (altExps: ", paste(aes, collapse = ", "),
               ") nor a column of the reference's colData (columns: ", paste(utils::head(cols, 20), collapse = ", "),
               ").", call. = FALSE)
        }
      } else if (is.atomic(v) || is.factor(v)) {
        labels[[nm]] <- .named(unname(v), paste0(what, " (labels given as values)"))
      } else {
        stop(what, ": expected the name of an altExp or colData column, or labels with one value per reference ",
             "cell, found ", paste(class(v), collapse = "/"), ".", call. = FALSE)
      }
    }
  }
  if (!length(altexps) && !length(labels)) {
    stop("refdata.altexp: name the altExp of reference holding the modality to infer (altExps: ",
         paste(SingleCellExperiment::altExpNames(reference), collapse = ", "), "), or give refdata.", call. = FALSE)
  }
  spec <- lapply(refdata %||% list(), function(v) if (is.character(v) && length(v) == 1L) v else "<values>")
  list(altexps = if (length(altexps)) altexps else NULL, arg = arg,
       labels = if (length(labels)) labels else NULL, spec = spec)
}

# The modality to infer, stacked over the target altExps (see .seurat_refdata_matrix()).
.sce_refdata_matrix <- function(ref.x.obj, targets, assay.type, x.obj.name) {
  if (is.null(targets$altexps)) {
    lab <- targets$labels[[1]]
    classes <- sort(unique(lab))
    m <- Matrix::sparseMatrix(i = match(lab, classes), j = seq_along(lab), x = 1,
                              dims = c(length(classes), length(lab)), dimnames = list(classes, NULL))
    return(list(value = m, name = .onehot_name, rows = list()))
  }
  parts <- lapply(names(targets$altexps), function(a) {
    src <- targets$altexps[[a]]
    arg <- if (identical(targets$arg[[a]], "new.altexp.name")) "refdata.altexp" else targets$arg[[a]]
    .sce_data(ref.x.obj, if (is.na(src)) NULL else src, assay.type, arg, x.obj.name)
  })
  n <- vapply(parts, function(p) nrow(p$value), 1L)
  rows <- stats::setNames(split(seq_len(sum(n)), rep(seq_along(n), n)), names(targets$altexps))
  if (length(parts) == 1L) return(list(value = parts[[1]]$value, name = parts[[1]]$name, rows = rows))
  vals <- lapply(parts, `[[`, "value")
  if (any(vapply(vals, methods::is, NA, "sparseMatrix"))) vals <- lapply(vals, methods::as, "CsparseMatrix")
  feats <- unlist(lapply(seq_along(vals), function(i) rownames(vals[[i]]) %||% paste0("feature", seq_len(n[i]))))
  vals <- lapply(vals, function(v) { rownames(v) <- NULL; v })
  attr(rows, "features") <- feats
  list(value = do.call(rbind, vals), name = paste(vapply(parts, `[[`, "", "name"), collapse = " + "), rows = rows)
}

.check_sce_reference <- function(reference, reference.x, reference.altexp, refdata.altexp, refdata = NULL) {
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
  if (is.null(reference.x) && is.null(refdata) && identical(refdata.altexp, reference.altexp)) {
    stop("refdata.altexp: name the altExp of reference holding the modality to infer (altExps: ",
         paste(SingleCellExperiment::altExpNames(reference), collapse = ", "),
         "); it must differ from reference.altexp.", call. = FALSE)
  }
  reference.x %||% reference
}

.check_new_altexp <- function(object, new.altexp.name, query.altexp, overwrite, arg = "new.altexp.name") {
  if (new.altexp.name %in% SingleCellExperiment::altExpNames(object) && !overwrite) {
    stop(arg, ": the query already has an altExp '", new.altexp.name, "'. Set overwrite = TRUE ",
         "to replace it, or choose another ", if (startsWith(arg, "refdata")) "name in refdata" else arg, ".",
         call. = FALSE)
  }
  if (identical(new.altexp.name, query.altexp)) {
    stop(arg, ": '", new.altexp.name, "' is the query.altexp and cannot be replaced.", call. = FALSE)
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
