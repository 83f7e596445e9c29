#' Plot what to look at to judge a CMOT transfer
#'
#' Two panels: the predictability of every inferred feature (the leave-one-out
#' feature-wise Pearson r on the reference, sorted; features below
#' \code{threshold} cannot be inferred reliably and are coloured), and the
#' mapping score of every query cell (0 to 1, higher is better mapped) on the
#' query's embedding.
#'
#' @param object A \code{Seurat} query returned by \code{\link{RunCMOT}}, or
#'   the matrix returned by its default method (predictability panel only).
#' @param assay The inferred assay whose features are shown (Seurat):
#'   default the last run's \code{new.assay.name} when it is an assay of
#'   \code{object}, else its first inferred assay.  The scores are read from
#'   the assay's feature meta data, column \code{cmot.predictability}.
#' @param reduction The query's reduction to draw the cells on (its first two
#'   dimensions): default \code{"umap"} when \code{object} has one, else
#'   \code{"pca"}, else its first reduction; without any reduction only the
#'   predictability panel is drawn (with a message).
#' @param score The meta.data column of the mapping score: default the last
#'   run's (\code{cmot.mapping.score} for \code{new.assay.name = "CMOT"}).
#' @param threshold Predictability below which a feature is marked as not
#'   reliably inferred (default 0.3).
#' @param max.labels Features are named on the axis when there are at most
#'   this many; otherwise they are drawn by rank.
#' @param measured Seurat: an assay of \code{object} holding the measured
#'   values of (some of) the inferred features, where they are known (a
#'   held-out test, a vignette).  A third panel then draws predicted against
#'   measured values (\code{layer} \code{"data"}), cell by cell, for
#'   \code{features} (each facet titled with its predictability and its
#'   measured r).  \code{NULL} (default): no such panel.
#' @param features With \code{measured}: the features to draw (inferred
#'   assay's names); default the two most and the two least predictable
#'   features found in both assays.
#'
#' @return A \code{patchwork} of the \code{ggplot} objects (predictability,
#'   mapping score, and predicted against measured with \code{measured}), or
#'   one \code{ggplot} when only one panel can be drawn (or when patchwork is
#'   not installed: a list of them).  Their \code{data} hold the values drawn:
#'   \code{feature}, \code{predictability}, \code{rank}, \code{reliable};
#'   \code{cell}, \code{dim1}, \code{dim2}, \code{score}; and \code{cell},
#'   \code{feature}, \code{predicted}, \code{measured}.
#' @seealso \code{\link{RunCMOT}}
#' @export
#' @examples
#' set.seed(1)
#' sim <- simulate_multimodal(n.reference = 120, n.query = 40)
#' if (cmot_available() && requireNamespace("ggplot2", quietly = TRUE)) {
#'   reference <- SeuratObject::CreateSeuratObject(
#'     counts = SeuratObject::as.sparse(sim$reference.y), assay = "ATAC")
#'   reference[["RNA"]] <- SeuratObject::CreateAssayObject(counts = SeuratObject::as.sparse(sim$reference.x))
#'   query <- SeuratObject::CreateSeuratObject(counts = SeuratObject::as.sparse(sim$query.y), assay = "ATAC")
#'   query <- RunCMOT(query, reference = reference, refdata = list(RNA = "RNA"), layer = "counts",
#'                    k = 10, n.features = 20, seed = 1, verbose = FALSE)
#'   # an embedding of the query to draw the cells on (usually RunUMAP() or RunPCA())
#'   pcs <- stats::prcomp(t(sim$query.y))$x[, 1:2]
#'   colnames(pcs) <- c("PC_1", "PC_2")
#'   query[["pca"]] <- SeuratObject::CreateDimReducObject(embeddings = pcs, key = "PC_", assay = "ATAC")
#'   PlotCMOT(query)
#' }
PlotCMOT <- function(object, assay = NULL, reduction = NULL, score = NULL, threshold = 0.3, max.labels = 40,
                     measured = NULL, features = NULL) {
  if (!requireNamespace("ggplot2", quietly = TRUE)) {
    stop("PlotCMOT() needs the R package ggplot2 (install.packages(\"ggplot2\")).", call. = FALSE)
  }
  .check_number(threshold, "threshold", min = -1, max = 1)
  .check_count(max.labels, "max.labels", min = 0L)
  if (inherits(object, "Seurat")) {
    run <- SeuratObject::Tool(object, "RunCMOT")
    if (is.null(run)) stop("object: no RunCMOT() run found in this Seurat object (Tool(object, \"RunCMOT\")).",
                           call. = FALSE)
    assay <- assay %||% .plot_default_assay(object, run)
    fs <- .plot_feature_scores(object, assay)
    cells <- .plot_cells(object, reduction, score %||% run$meta.data[2])
    p3 <- if (is.null(measured)) NULL else .plot_measured(object, assay, measured, features, fs)
  } else if (!is.null(attr(object, "cmot"))) {
    if (!is.null(measured)) stop("measured: only for Seurat objects.", call. = FALSE)
    p3 <- NULL
    fs <- attr(object, "cmot")$feature.scores
    if (is.null(fs)) stop("object: the result holds no feature scores (cmot core too old).", call. = FALSE)
    cells <- NULL
  } else {
    stop("object: expected a Seurat object or a matrix returned by RunCMOT(), found ",
         paste(class(object), collapse = "/"), ".", call. = FALSE)
  }
  p1 <- .plot_predictability(fs, threshold, max.labels)
  if (is.null(cells) && is.null(p3)) return(p1)
  p2 <- if (is.null(cells)) NULL else ggplot2::ggplot(cells$data, ggplot2::aes(x = dim1, y = dim2, colour = score)) +
    ggplot2::geom_point(size = 0.8) +
    ggplot2::scale_colour_viridis_c(limits = c(0, 1), name = "mapping\nscore") +
    ggplot2::labs(x = cells$axes[1], y = cells$axes[2], title = "Mapping score of the query cells",
                  subtitle = paste0(cells$score, ": 0 = poorly, 1 = well mapped")) +
    ggplot2::theme_bw()
  plots <- list(predictability = p1, mapping.score = p2, measured = p3)
  plots <- plots[!vapply(plots, is.null, NA)]
  if (!requireNamespace("patchwork", quietly = TRUE)) {
    message("PlotCMOT(): patchwork is not installed; returning the plots as a list.")
    return(plots)
  }
  patchwork::wrap_plots(unname(plots), ncol = length(plots))
}

# Predicted against measured values of a few features (where the truth is known).
.plot_measured <- function(object, assay, measured, features, fs) {
  .check_assay(object, measured, "measured", "object")
  pred <- .get_data(object, assay, "data", "object")
  meas <- .get_data(object, measured, "data", "object")
  both <- intersect(rownames(pred), rownames(meas))
  if (is.null(features)) {
    ranked <- names(sort(fs[both], decreasing = TRUE))
    features <- unique(c(utils::head(ranked, 2), utils::tail(ranked, 2)))
  }
  miss <- setdiff(features, both)
  if (length(miss) || !length(features)) {
    stop("features: expected features of both assay '", assay, "' and measured '", measured, "' (", length(both),
         " shared), found ", if (length(miss)) paste0("'", utils::head(miss, 5), "'", collapse = ", ") else "none",
         ".", call. = FALSE)
  }
  cells <- SeuratObject::Cells(object)
  df <- do.call(rbind, lapply(features, function(f) {
    data.frame(cell = cells, feature = f, predicted = as.numeric(pred[f, cells]),
               measured = as.numeric(meas[f, cells]), stringsAsFactors = FALSE)
  }))
  r <- vapply(features, function(f) suppressWarnings(stats::cor(df$predicted[df$feature == f],
                                                               df$measured[df$feature == f])), 0)
  titles <- stats::setNames(sprintf("%s\npredictability %.2f, r %.2f", features, fs[features], r), features)
  df$feature <- factor(df$feature, levels = features)
  ggplot2::ggplot(df, ggplot2::aes(x = measured, y = predicted)) +
    ggplot2::geom_point(size = 0.5, alpha = 0.5) +
    ggplot2::facet_wrap(ggplot2::vars(feature), scales = "free", labeller = ggplot2::as_labeller(titles)) +
    ggplot2::labs(title = "Predicted against measured", x = paste0("measured (", measured, ")"),
                  y = paste0("predicted (", assay, ")")) +
    ggplot2::theme_bw()
}

# columns of the plots' data, used in aes()
utils::globalVariables(c("dim1", "dim2", "score", "predictability", "feature", "rank", "reliable", "measured",
                         "predicted"))

.plot_default_assay <- function(object, run) {
  cand <- c(run$new.assay.name, names(run$assays))
  cand <- cand[cand %in% SeuratObject::Assays(object)]
  if (!length(cand)) {
    stop("assay: the last RunCMOT() run inferred no assay (labels only); name an assay with cmot.predictability.",
         call. = FALSE)
  }
  cand[1]
}

.plot_feature_scores <- function(object, assay) {
  .check_assay(object, assay, "assay", "object")
  meta <- object[[assay]][[]]
  if (!"cmot.predictability" %in% colnames(meta)) {
    stop("assay: '", assay, "' has no feature meta data column 'cmot.predictability' (not inferred by RunCMOT(), ",
         "or by a core without feature scores).", call. = FALSE)
  }
  stats::setNames(meta$cmot.predictability, rownames(meta))
}

.plot_cells <- function(object, reduction, score) {
  .check_string(score, "score")
  if (!score %in% colnames(object[[]])) {
    stop("score: column '", score, "' not found in the meta.data of object.", call. = FALSE)
  }
  # SeuratObject 5 gives list() for an object without reductions, SeuratObject 4 character(0)
  reds <- as.character(unlist(SeuratObject::Reductions(object)))
  if (is.null(reduction)) {
    reduction <- c(intersect(c("umap", "pca"), reds), reds)[1]
    if (is.na(reduction)) {
      message("PlotCMOT(): the query has no reduction (run RunUMAP() or RunPCA()); drawing the predictability only.")
      return(NULL)
    }
  }
  .check_string(reduction, "reduction")
  if (!reduction %in% reds) {
    stop("reduction: '", reduction, "' not found in object (reductions: ", paste(reds, collapse = ", "), ").",
         call. = FALSE)
  }
  emb <- SeuratObject::Embeddings(object[[reduction]])
  if (ncol(emb) < 2L) stop("reduction: '", reduction, "' has fewer than 2 dimensions.", call. = FALSE)
  cells <- SeuratObject::Cells(object)
  list(data = data.frame(cell = cells, dim1 = emb[cells, 1], dim2 = emb[cells, 2],
                         score = object[[]][cells, score], stringsAsFactors = FALSE),
       axes = colnames(emb)[1:2], score = score)
}

.plot_predictability <- function(fs, threshold, max.labels) {
  ord <- order(fs, decreasing = TRUE, na.last = TRUE)
  df <- data.frame(feature = names(fs)[ord] %||% as.character(ord), predictability = unname(fs[ord]),
                   rank = seq_along(ord), stringsAsFactors = FALSE)
  df$reliable <- !is.na(df$predictability) & df$predictability >= threshold
  n.low <- sum(!df$reliable)
  title <- "Predictability of the inferred features"
  subtitle <- paste0("leave-one-out r on the reference; ", n.low, " of ", nrow(df), " below ", threshold)
  colours <- ggplot2::scale_colour_manual(values = c(`TRUE` = "grey25", `FALSE` = "firebrick"),
                                          labels = c(`TRUE` = paste0(">= ", threshold),
                                                     `FALSE` = paste0("< ", threshold, ": unreliable")),
                                          name = "predictability")
  if (nrow(df) <= max.labels) {
    df$feature <- factor(df$feature, levels = rev(df$feature))
    p <- ggplot2::ggplot(df, ggplot2::aes(x = predictability, y = feature, colour = reliable)) +
      ggplot2::geom_point() + ggplot2::geom_vline(xintercept = threshold, linetype = 2) +
      ggplot2::labs(x = "predictability (r)", y = NULL)
  } else {
    p <- ggplot2::ggplot(df, ggplot2::aes(x = rank, y = predictability, colour = reliable)) +
      ggplot2::geom_point(size = 0.6) + ggplot2::geom_hline(yintercept = threshold, linetype = 2) +
      ggplot2::labs(x = "feature rank", y = "predictability (r)")
  }
  p + colours + ggplot2::labs(title = title, subtitle = subtitle) + ggplot2::theme_bw()
}
