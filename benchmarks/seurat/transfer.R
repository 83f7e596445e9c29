# Seurat baseline for cmot: FindTransferAnchors + TransferData on one train/test split.
#
# Reference = training cells: the shared modality (Y) builds the anchors, the other
# modality (X) is `refdata`.  Query = test cells, measured in Y only.  The data are
# already normalized by benchmarks/_data.py: they go into the `data` slot as they are
# (counts = the same matrix, unused), Seurat only scales them (ScaleData) and reduces
# them (RunPCA / RunCCA / a hand-made LSI, see `reduction` below).
#
# Two ways to use this file:
#   * source("benchmarks/seurat/transfer.R") and call seurat_transfer(...) on
#     features x cells matrices (dgCMatrix or dense);
#   * Rscript benchmarks/seurat/transfer.R <dir> <reduction> <dims> [k.weight] [nfeatures]
#     where <dir> holds the inputs written by benchmarks/seurat/driver.py
#     (ref_y, ref_x, query_y as raw binary CSC matrices, features x cells, plus
#     meta.json); writes <dir>/pred.bin (float64, X features x query cells,
#     column-major) and <dir>/result.json (timings, anchors, settings).
#
# Reductions:
#   pcaproject  reference PCA on the scaled features, query projected onto it
#               (Seurat's default for TransferData).
#   cca         RunCCA of reference and query scaled data.
#   lsiproject  "LSI" for ATAC built by hand (Signac's RunTFIDF/RunSVD are not
#               installed): TF-IDF (log1p(tf * idf * 1e4), idf from the reference),
#               truncated SVD of the reference with irlba, query projected with the
#               reference loadings (Seurat's ProjectSVD); component 1 (depth) dropped.
# `dims` is the number of components: 1:dims (2:dims for lsiproject).

suppressPackageStartupMessages({
  library(Matrix)
  library(Seurat)
})

# Seurat turns "_" and "|" into "-" (and would then de-duplicate); give it safe names
# and keep the originals in the caller.
.safe_names <- function(n, prefix) sprintf("%s%06d", prefix, seq_len(n))

.tfidf <- function(m, idf = NULL) {
  m <- as(m, "CsparseMatrix")
  depth <- Matrix::colSums(m)
  depth[depth == 0] <- 1
  tf <- m %*% Diagonal(x = 1 / depth)
  if (is.null(idf)) {
    rs <- Matrix::rowSums(m)
    rs[rs == 0] <- 1
    idf <- ncol(m) / rs
  }
  out <- Diagonal(x = idf) %*% tf
  out@x <- log1p(out@x * 1e4)
  dimnames(out) <- dimnames(m)
  list(data = as(out, "CsparseMatrix"), idf = idf)
}

.row_var <- function(m) {
  n <- ncol(m)
  mu <- Matrix::rowMeans(m)
  (Matrix::rowSums(m^2) - n * mu^2) / (n - 1)
}

seurat_transfer <- function(ref_y, ref_x, query_y, reduction = c("pcaproject", "cca", "lsiproject"),
                            dims = 30, features = NULL, nfeatures = 0, k.weight = 50, k.filter = 200,
                            k.score = 30, k.anchor = 5, seed = 0, verbose = FALSE) {
  reduction <- match.arg(reduction)
  set.seed(seed)
  stopifnot(nrow(ref_y) == nrow(query_y), ncol(ref_y) == ncol(ref_x))
  y_names <- rownames(ref_y)
  x_names <- rownames(ref_x)
  ref_cells <- colnames(ref_y)
  query_cells <- colnames(query_y)
  ny <- nrow(ref_y)
  rownames(ref_y) <- rownames(query_y) <- .safe_names(ny, "y")
  rownames(ref_x) <- .safe_names(nrow(ref_x), "x")
  colnames(ref_y) <- colnames(ref_x) <- sprintf("ref%06d", seq_len(ncol(ref_y)))
  colnames(query_y) <- sprintf("qry%06d", seq_len(ncol(query_y)))
  ref_y <- as(ref_y, "CsparseMatrix")
  query_y <- as(query_y, "CsparseMatrix")
  ref_x <- as(ref_x, "CsparseMatrix")

  t0 <- proc.time()[["elapsed"]]
  if (reduction == "lsiproject") {
    tf_ref <- .tfidf(ref_y)
    ref_data <- tf_ref$data
    query_data <- .tfidf(query_y, idf = tf_ref$idf)$data
  } else {
    ref_data <- ref_y
    query_data <- query_y
  }
  reference <- CreateSeuratObject(counts = ref_y, assay = "Y", min.cells = 0, min.features = 0)
  reference <- SetAssayData(reference, slot = "data", new.data = ref_data, assay = "Y")
  reference[["X"]] <- CreateAssayObject(data = ref_x)
  DefaultAssay(reference) <- "Y"
  query <- CreateSeuratObject(counts = query_y, assay = "Y", min.cells = 0, min.features = 0)
  query <- SetAssayData(query, slot = "data", new.data = query_data, assay = "Y")

  if (is.null(features)) {
    features <- rownames(ref_y)
  } else {
    features <- rownames(ref_y)[match(features, y_names)]
  }
  # drop features constant in the reference (zero variance breaks scaling / PCA);
  # nfeatures > 0 keeps the nfeatures most variable ones (variance of `data` in the
  # reference), in place of Seurat's FindVariableFeatures(vst), which needs counts.
  v <- .row_var(ref_data[features, , drop = FALSE])
  keep <- v > 0
  if (nfeatures > 0 && sum(keep) > nfeatures) {
    keep <- keep & rank(-v, ties.method = "first") <= nfeatures
  }
  features <- features[keep]
  max_dims <- min(dims, length(features) - 1, ncol(ref_y) - 1, if (reduction == "cca") ncol(query_y) - 1 else Inf)
  use_dims <- if (reduction == "lsiproject") 2:max_dims else 1:max_dims
  VariableFeatures(reference) <- features

  reference.reduction <- NULL
  if (reduction == "pcaproject") {
    reference <- ScaleData(reference, features = features, verbose = verbose)
    reference <- RunPCA(reference, features = features, npcs = max_dims, verbose = verbose,
                        seed.use = seed, approx = max_dims < min(length(features), ncol(ref_y)) / 2)
    reference.reduction <- "pca"
  } else if (reduction == "lsiproject") {
    m <- ref_data[features, , drop = FALSE]
    sv <- irlba::irlba(m, nv = max_dims, nu = max_dims)
    emb <- sv$v  # m is features x cells: v holds the cells, u the features
    rownames(emb) <- colnames(m)
    colnames(emb) <- paste0("LSI_", seq_len(max_dims))
    load <- sv$u
    rownames(load) <- rownames(m)
    colnames(load) <- paste0("LSI_", seq_len(max_dims))
    reference[["lsi"]] <- CreateDimReducObject(embeddings = emb, loadings = load, assay = "Y",
                                               key = "LSI_", misc = list(d = sv$d, u = sv$v))
    reference.reduction <- "lsi"
  }
  anchors <- FindTransferAnchors(
    reference = reference, query = query, reference.assay = "Y", query.assay = "Y",
    reduction = reduction, reference.reduction = reference.reduction, features = features,
    dims = use_dims, npcs = max_dims,
    k.anchor = k.anchor, k.filter = min(k.filter, ncol(ref_y) - 1, ncol(query_y) - 1),
    k.score = min(k.score, ncol(ref_y) - 1, ncol(query_y) - 1), verbose = verbose
  )
  n_anchors <- nrow(anchors@anchors)
  # FindWeights looks for k.weight neighbours among the query cells that have an
  # anchor: cap it (small queries such as pancancer's 42 cells have fewer than 50).
  n_anchor_cells <- length(unique(anchors@anchors[, "cell2"]))
  kw <- min(k.weight, n_anchor_cells)
  transferred <- TransferData(
    anchorset = anchors, refdata = GetAssayData(reference, assay = "X", slot = "data"),
    weight.reduction = reduction, dims = seq_along(use_dims), k.weight = kw, verbose = verbose
  )
  pred <- as.matrix(GetAssayData(transferred, slot = "data"))
  seconds <- proc.time()[["elapsed"]] - t0
  pred <- pred[rownames(ref_x), colnames(query_y), drop = FALSE]
  dimnames(pred) <- list(x_names, query_cells)
  list(
    prediction = pred,
    info = list(reduction = reduction, dims = length(use_dims), dims_used = range(use_dims),
                n_features = length(features), n_anchors = n_anchors, n_anchor_query_cells = n_anchor_cells, k_weight = kw,
                seconds = seconds)
  )
}

# ---------------------------------------------------------------- binary I/O
.read_csc <- function(dir, name) {
  meta <- jsonlite::fromJSON(file.path(dir, paste0(name, ".json")))
  rd <- function(ext, what, n, size) {
    con <- file(file.path(dir, paste0(name, ext)), "rb")
    on.exit(close(con))
    readBin(con, what = what, n = n, size = size, endian = "little")
  }
  p <- rd(".p", "integer", meta$ncol + 1, 4)
  nnz <- p[length(p)]
  i <- rd(".i", "integer", nnz, 4)
  x <- rd(".x", "double", nnz, 8)
  m <- sparseMatrix(i = i + 1L, p = p, x = x, dims = c(meta$nrow, meta$ncol), index1 = TRUE)
  rownames(m) <- readLines(file.path(dir, paste0(name, ".rows")), encoding = "UTF-8")
  colnames(m) <- readLines(file.path(dir, paste0(name, ".cols")), encoding = "UTF-8")
  m
}

.main <- function(args) {
  if (length(args) < 3) {
    stop("usage: Rscript transfer.R <dir> <pcaproject|cca|lsiproject> <dims> [k.weight] [nfeatures]")
  }
  dir <- args[[1]]
  reduction <- args[[2]]
  dims <- as.integer(args[[3]])
  k.weight <- if (length(args) >= 4) as.integer(args[[4]]) else 50L
  nfeatures <- if (length(args) >= 5) as.integer(args[[5]]) else 0L
  t_start <- proc.time()[["elapsed"]]
  ref_y <- .read_csc(dir, "ref_y")
  ref_x <- .read_csc(dir, "ref_x")
  query_y <- .read_csc(dir, "query_y")
  res <- seurat_transfer(ref_y, ref_x, query_y, reduction = reduction, dims = dims,
                         k.weight = k.weight, nfeatures = nfeatures)
  con <- file(file.path(dir, "pred.bin"), "wb")
  writeBin(as.double(res$prediction), con, size = 8, endian = "little")
  close(con)
  res$info$total_seconds <- proc.time()[["elapsed"]] - t_start
  res$info$shape <- dim(res$prediction)
  res$info$seurat_version <- as.character(packageVersion("Seurat"))
  writeLines(jsonlite::toJSON(res$info, auto_unbox = TRUE, digits = NA), file.path(dir, "result.json"))
  invisible(NULL)
}

if (sys.nframe() == 0L && !interactive()) {
  .main(commandArgs(trailingOnly = TRUE))
}
