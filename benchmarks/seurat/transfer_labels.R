# Seurat's standard label transfer (and optionally the other modality) for one
# reference and one or several queries: FindTransferAnchors (pcaproject by default)
# + TransferData(refdata = list(cell_type = <reference labels>, X = <reference X>)).
#
# The reference is built once (ScaleData + RunPCA on the shared modality Y); each
# query group (for example every cell type queried alone, or single cells one per
# query) gets its own FindTransferAnchors + TransferData.  A group on which Seurat
# fails (tiny queries) is recorded with Seurat's error message, not fatal.
#
#   Rscript benchmarks/seurat/transfer_labels.R <dir> <pcaproject|cca> <dims> [k.weight]
#
# <dir> holds, written by benchmarks/seurat/driver.py (raw float64 CSC, features x cells):
#   ref_y, query_y      the shared modality (normalized values, go to the `data` slot);
#   ref_x (optional)    the modality to transfer as an assay;
#   ref_labels.txt      (optional) one label per reference cell, in column order;
#   query_groups.txt    (optional) one group id per query cell (default: one group).
# Writes:
#   groups.json         per group: status ("ok" or "fails"), error, anchors, seconds;
#   labels_pred.txt     predicted label per query cell ("NA" where its group failed);
#   label_scores.bin    float64, classes x query cells, column-major (NaN where failed);
#   classes.txt         the classes, in the row order of label_scores.bin;
#   label_score.bin     float64, prediction.score.max per query cell;
#   pred.bin            float64, X features x query cells (only with ref_x).
#
# Features: all Y features not constant in the reference (the driver's setting of
# benchmarks/seurat/transfer.R: the loader's normalized values, no FindVariableFeatures).
# k.filter, k.score and k.weight are Seurat's defaults (200, 30, 50), capped for
# small queries as transfer.R does (k.weight by the query cells that have an anchor).

suppressPackageStartupMessages({
  library(Matrix)
  library(Seurat)
})

.this_dir <- function() {
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  if (length(f)) dirname(normalizePath(f[[1]])) else "benchmarks/seurat"
}
source(file.path(.this_dir(), "transfer.R"))  # .read_csc, .row_var, .safe_names

.build_reference <- function(ref_y, ref_x, ref_labels, reduction, dims, seed = 0) {
  set.seed(seed)
  rownames(ref_y) <- .safe_names(nrow(ref_y), "y")
  colnames(ref_y) <- sprintf("ref%06d", seq_len(ncol(ref_y)))
  reference <- CreateSeuratObject(counts = ref_y, assay = "Y", min.cells = 0, min.features = 0)
  reference <- SetAssayData(reference, slot = "data", new.data = ref_y, assay = "Y")
  if (!is.null(ref_x)) {
    x_names <- rownames(ref_x)
    rownames(ref_x) <- .safe_names(nrow(ref_x), "x")
    colnames(ref_x) <- colnames(ref_y)
    reference[["X"]] <- CreateAssayObject(data = as(ref_x, "CsparseMatrix"))
  }
  DefaultAssay(reference) <- "Y"
  v <- .row_var(ref_y)
  features <- rownames(ref_y)[v > 0]
  max_dims <- min(dims, length(features) - 1, ncol(ref_y) - 1)
  VariableFeatures(reference) <- features
  reference.reduction <- NULL
  if (reduction == "pcaproject") {
    reference <- ScaleData(reference, features = features, verbose = FALSE)
    reference <- RunPCA(reference, features = features, npcs = max_dims, verbose = FALSE, seed.use = seed,
                        approx = max_dims < min(length(features), ncol(ref_y)) / 2)
    reference.reduction <- "pca"
  }
  refdata <- list()
  if (!is.null(ref_labels)) refdata$cell_type <- setNames(as.character(ref_labels), colnames(ref_y))
  if (!is.null(ref_x)) refdata$X <- GetAssayData(reference, assay = "X", slot = "data")
  list(reference = reference, features = features, dims = seq_len(max_dims), refdata = refdata,
       reference.reduction = reference.reduction, reduction = reduction)
}

.map_query <- function(ref, query_y, k.weight = 50, k.filter = 200, k.score = 30, k.anchor = 5) {
  t0 <- proc.time()[["elapsed"]]
  rownames(query_y) <- rownames(ref$reference[["Y"]])
  nq <- ncol(query_y)
  nref <- ncol(ref$reference)
  query <- CreateSeuratObject(counts = query_y, assay = "Y", min.cells = 0, min.features = 0)
  query <- SetAssayData(query, slot = "data", new.data = query_y, assay = "Y")
  anchors <- FindTransferAnchors(
    reference = ref$reference, query = query, reference.assay = "Y", query.assay = "Y",
    reduction = ref$reduction, reference.reduction = ref$reference.reduction, features = ref$features,
    dims = ref$dims, npcs = length(ref$dims), k.anchor = k.anchor,
    k.filter = min(k.filter, nref - 1, nq - 1), k.score = min(k.score, nref - 1, nq - 1), verbose = FALSE
  )
  n_anchor_cells <- length(unique(anchors@anchors[, "cell2"]))
  kw <- min(k.weight, n_anchor_cells)
  query <- TransferData(anchorset = anchors, refdata = ref$refdata, query = query,
                        weight.reduction = ref$reduction, dims = seq_along(ref$dims), k.weight = kw,
                        verbose = FALSE)
  list(query = query, n_anchors = nrow(anchors@anchors), n_anchor_query_cells = n_anchor_cells, k_weight = kw,
       seconds = proc.time()[["elapsed"]] - t0)
}

.main_labels <- function(args) {
  if (length(args) < 3) stop("usage: Rscript transfer_labels.R <dir> <pcaproject|cca> <dims> [k.weight]")
  dir <- args[[1]]
  reduction <- args[[2]]
  dims <- as.integer(args[[3]])
  k.weight <- if (length(args) >= 4) as.integer(args[[4]]) else 50L
  has <- function(f) file.exists(file.path(dir, f))
  ref_y <- .read_csc(dir, "ref_y")
  query_y <- .read_csc(dir, "query_y")
  ref_x <- if (has("ref_x.json")) .read_csc(dir, "ref_x") else NULL
  ref_labels <- if (has("ref_labels.txt")) readLines(file.path(dir, "ref_labels.txt"), encoding = "UTF-8") else NULL
  groups <- if (has("query_groups.txt")) readLines(file.path(dir, "query_groups.txt")) else rep("1", ncol(query_y))
  stopifnot(length(groups) == ncol(query_y), is.null(ref_labels) || length(ref_labels) == ncol(ref_y))
  colnames(query_y) <- sprintf("qry%06d", seq_len(ncol(query_y)))
  t0 <- proc.time()[["elapsed"]]
  ref <- .build_reference(ref_y, ref_x, ref_labels, reduction, dims)
  ref_seconds <- proc.time()[["elapsed"]] - t0
  classes <- if (is.null(ref_labels)) character(0) else sort(unique(ref_labels))
  nq <- ncol(query_y)
  lab <- rep(NA_character_, nq)
  score <- rep(NaN, nq)
  scores <- matrix(NaN, length(classes), nq)
  pred <- if (is.null(ref_x)) NULL else matrix(NaN, nrow(ref_x), nq)
  info <- list()
  for (g in unique(groups)) {
    cols <- which(groups == g)
    res <- tryCatch(.map_query(ref, query_y[, cols, drop = FALSE], k.weight = k.weight),
                    error = function(e) conditionMessage(e))
    if (is.character(res)) {
      info[[length(info) + 1]] <- list(group = g, cells = length(cols), status = "fails",
                                       error = gsub("\\s+", " ", res))
      next
    }
    q <- res$query
    if (!is.null(ref_labels)) {
      lab[cols] <- as.character(q$predicted.cell_type)
      score[cols] <- q$predicted.cell_type.score
      ps <- as.matrix(GetAssayData(q, assay = "prediction.score.cell_type", slot = "data"))
      # Seurat names the rows after the classes with "_" turned into "-"; match by that.
      key <- gsub("_", "-", classes)
      scores[, cols] <- ps[key, colnames(query_y)[cols], drop = FALSE]
    }
    if (!is.null(ref_x)) {
      px <- as.matrix(GetAssayData(q, assay = "X", slot = "data"))
      pred[, cols] <- px[rownames(ref$reference[["X"]]), colnames(query_y)[cols], drop = FALSE]
    }
    info[[length(info) + 1]] <- list(group = g, cells = length(cols), status = "ok", error = "",
                                     n_anchors = res$n_anchors, n_anchor_query_cells = res$n_anchor_query_cells,
                                     k_weight = res$k_weight, seconds = res$seconds)
  }
  wb <- function(x, f) {
    con <- file(file.path(dir, f), "wb")
    writeBin(as.double(x), con, size = 8, endian = "little")
    close(con)
  }
  writeLines(ifelse(is.na(lab), "NA", lab), file.path(dir, "labels_pred.txt"), useBytes = TRUE)
  writeLines(classes, file.path(dir, "classes.txt"), useBytes = TRUE)
  wb(score, "label_score.bin")
  wb(scores, "label_scores.bin")
  if (!is.null(pred)) wb(pred, "pred.bin")
  out <- list(groups = info, reference_seconds = ref_seconds, reduction = reduction, dims = length(ref$dims),
              n_features = length(ref$features), seurat_version = as.character(packageVersion("Seurat")))
  writeLines(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA), file.path(dir, "groups.json"))
  invisible(NULL)
}

if (sys.nframe() == 0L && !interactive()) {
  .main_labels(commandArgs(trailingOnly = TRUE))
}
