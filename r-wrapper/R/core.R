# Engine shared by every RunCMOT() method: checks, feature matching, cell
# pairing, conversion to Python (cells as rows), the call, and the results.

# ---------------------------------------------------------------- checks
.check_matrix <- function(m, name) {
  if (inherits(m, "data.frame")) m <- as.matrix(m)
  if (is.matrix(m)) {
    if (!is.numeric(m) && !is.logical(m)) {
      stop(name, ": expected a numeric matrix (features x cells), found a ", typeof(m), " matrix.", call. = FALSE)
    }
    storage.mode(m) <- "double"
  } else if (inherits(m, "Matrix")) {
    m <- tryCatch(methods::as(methods::as(methods::as(m, "CsparseMatrix"), "generalMatrix"), "dMatrix"),
                  error = function(e) stop(name, ": cannot convert a ", class(m)[1],
                                           " to a sparse numeric matrix.", call. = FALSE))
  } else if (isS4(m) && methods::canCoerce(m, "dgCMatrix")) {
    # e.g. DelayedMatrix assays of SingleCellExperiment objects
    m <- methods::as(m, "dgCMatrix")
  } else {
    stop(name, ": expected a matrix or sparse Matrix with features as rows and cells as columns, found ",
         paste(class(m), collapse = "/"), ".", call. = FALSE)
  }
  if (nrow(m) == 0L || ncol(m) == 0L) {
    stop(name, ": expected a non-empty matrix, found ", nrow(m), " features x ", ncol(m), " cells.", call. = FALSE)
  }
  m
}

.check_count <- function(x, name, min = 1L) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || !is.finite(x) || x != round(x) || x < min) {
    stop(name, ": expected a whole number >= ", min, ", found ", deparse(x), ".", call. = FALSE)
  }
  as.integer(x)
}

.check_number <- function(x, name, min = -Inf, strict = FALSE, max = Inf, allow.inf = FALSE) {
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) && (allow.inf || is.finite(x)) &&
    (if (strict) x > min else x >= min) && x <= max
  if (!ok) {
    stop(name, ": expected a ", if (allow.inf) "" else "finite ", "number",
         if (is.finite(min)) paste0(if (strict) " > " else " >= ", min) else "",
         if (is.finite(max)) paste0(" and <= ", max) else "",
         ", found ", deparse(x), ".", call. = FALSE)
  }
  as.double(x)
}

.check_flag <- function(x, name) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    stop(name, ": expected TRUE or FALSE, found ", deparse(x, nlines = 1L), ".", call. = FALSE)
  }
  x
}

# An input handed by an object method (Seurat, SingleCellExperiment) to
# RunCMOT.default(): a matrix (checked there) or labels, with the words that name
# it in messages and, for the query, where the poorly mapped cells are stored.
.named <- function(value, name, where = NULL) {
  structure(list(value = value, name = name, where = where), class = "cmot_named")
}

# A matrix argument of RunCMOT.default() as a checked .named() input.
.input_matrix <- function(x, arg, name, where = NULL) {
  if (inherits(x, "cmot_named")) x else .named(.check_matrix(x, arg), name, where)
}

# Shared features of reference Y and query Y, matched by name.
.shared_features <- function(ref.y, query.y, ref.name = "reference", query.name = "query", verbose = TRUE) {
  rn.ref <- rownames(ref.y)
  rn.query <- rownames(query.y)
  if (is.null(rn.ref) || is.null(rn.query)) {
    if (nrow(ref.y) != nrow(query.y)) {
      stop("Cannot match features: ", ref.name, " and ", query.name, " have no feature (row) names and ",
           "different numbers of features (", nrow(ref.y), " and ", nrow(query.y), ").", call. = FALSE)
    }
    if (verbose) message("Matching ", nrow(ref.y), " unnamed features of ", ref.name, " and ", query.name, " by position")
    return(NULL)
  }
  for (p in list(list(rn.ref, ref.name), list(rn.query, query.name))) {
    if (anyDuplicated(p[[1]])) {
      stop(p[[2]], ": feature names must be unique, found duplicates such as '",
           p[[1]][anyDuplicated(p[[1]])], "'.", call. = FALSE)
    }
  }
  shared <- intersect(rn.ref, rn.query)
  if (length(shared) == 0L) {
    stop("No shared features between ", ref.name, " (", length(rn.ref), " features, e.g. '", rn.ref[1],
         "') and ", query.name, " (", length(rn.query), " features, e.g. '", rn.query[1],
         "'): the shared modality must use the same feature names in both.", call. = FALSE)
  }
  if (verbose) {
    message("Found ", length(shared), " shared features between ", ref.name, " (", length(rn.ref),
            ") and ", query.name, " (", length(rn.query), ")")
  }
  shared
}

# Resolve the pairing of reference X cells (refdata) and reference Y cells.
# Returns list(x.order = index into X columns or NULL, pairs = 2-column 1-based matrix or NULL)
.resolve_pairs <- function(pairs, x.cells, y.cells, n.x, n.y, x.name = "refdata", y.name = "reference",
                           verbose = TRUE) {
  if (is.null(pairs)) {
    # fully paired
    if (!is.null(x.cells) && !is.null(y.cells)) {
      if (identical(x.cells, y.cells)) return(list(x.order = NULL, pairs = NULL))
      if (n.x == n.y && !anyDuplicated(x.cells) && setequal(x.cells, y.cells)) {
        return(list(x.order = match(y.cells, x.cells), pairs = NULL))
      }
      n.shared <- length(intersect(x.cells, y.cells))
      stop("Mismatched cells: ", x.name, " has ", n.x, " cells and ", y.name, " has ", n.y,
           " cells, of which ", n.shared, " share a name. A fully paired reference needs the same cells in ",
           "both; for a partly paired reference give pairs = \"names\" (pair cells by name) or a ",
           "two-column table of known pairs.", call. = FALSE)
    }
    if (n.x != n.y) {
      stop("Mismatched cells: ", x.name, " has ", n.x, " cells and ", y.name, " has ", n.y,
           " cells. A fully paired reference needs the same cells in both; for a partly paired ",
           "reference give pairs (a two-column table of known pairs).", call. = FALSE)
    }
    return(list(x.order = NULL, pairs = NULL))
  }
  if (is.character(pairs) && length(pairs) == 1L && identical(pairs, "names")) {
    if (is.null(x.cells) || is.null(y.cells)) {
      stop("pairs = \"names\": ", x.name, " and ", y.name, " need cell (column) names.", call. = FALSE)
    }
    shared <- intersect(y.cells, x.cells)
    if (length(shared) == 0L) {
      stop("pairs = \"names\": no cell name is shared by ", x.name, " and ", y.name,
           "; give the known pairs as a two-column table instead.", call. = FALSE)
    }
    idx <- cbind(match(shared, x.cells), match(shared, y.cells))
  } else {
    if (is.data.frame(pairs)) {
      if (ncol(pairs) != 2L) stop("pairs: expected two columns (", x.name, " cell, ", y.name, " cell), found ",
                                  ncol(pairs), ".", call. = FALSE)
      a <- pairs[[1]]; b <- pairs[[2]]
    } else if (is.matrix(pairs)) {
      if (ncol(pairs) != 2L) stop("pairs: expected two columns (", x.name, " cell, ", y.name, " cell), found ",
                                  ncol(pairs), ".", call. = FALSE)
      a <- pairs[, 1]; b <- pairs[, 2]
    } else {
      stop("pairs: expected NULL, \"names\", or a two-column data.frame or matrix of (", x.name, " cell, ",
           y.name, " cell) pairs, found ", paste(class(pairs), collapse = "/"), ".", call. = FALSE)
    }
    if (length(a) == 0L) stop("pairs: expected at least one known pair, found none.", call. = FALSE)
    idx.a <- .pair_index(a, x.cells, n.x, paste0("pairs (column 1, ", x.name, " cells)"))
    idx.b <- .pair_index(b, y.cells, n.y, paste0("pairs (column 2, ", y.name, " cells)"))
    idx <- unique(cbind(idx.a, idx.b))
  }
  if (verbose) {
    message("Partly paired reference: ", nrow(idx), " known pairs between ", n.x, " ", x.name, " cells and ",
            n.y, " ", y.name, " cells; aligning the two modalities")
  }
  list(x.order = NULL, pairs = idx)
}

.pair_index <- function(v, cells, n, name) {
  if (is.factor(v)) v <- as.character(v)
  if (anyNA(v)) stop(name, ": expected no missing values, found ", sum(is.na(v)), ".", call. = FALSE)
  if (is.character(v)) {
    if (is.null(cells)) stop(name, ": cell names given, but the matrix has no cell (column) names.", call. = FALSE)
    i <- match(v, cells)
    if (anyNA(i)) {
      bad <- unique(v[is.na(i)])
      stop(name, ": ", length(bad), " cell names not found, e.g. '", bad[1], "'.", call. = FALSE)
    }
    return(i)
  }
  if (is.numeric(v)) {
    if (any(v != round(v)) || any(v < 1) || any(v > n)) {
      stop(name, ": expected cell names or 1-based cell indices in 1..", n, ".", call. = FALSE)
    }
    return(as.integer(v))
  }
  stop(name, ": expected cell names or 1-based cell indices, found ", class(v)[1], ".", call. = FALSE)
}

.check_labels <- function(labels, n, name = "labels") {
  if (is.null(labels)) return(NULL)
  if (is.factor(labels)) labels <- as.character(labels)
  if (!is.atomic(labels) || !is.null(dim(labels))) {
    stop(name, ": expected a vector with one label per reference cell.", call. = FALSE)
  }
  if (length(labels) != n) {
    stop(name, ": expected one label per reference (shared-modality) cell (", n, "), found ",
         length(labels), ".", call. = FALSE)
  }
  if (anyNA(labels)) stop(name, ": expected no missing labels, found ", sum(is.na(labels)), " NA.", call. = FALSE)
  if (is.logical(labels)) labels <- as.character(labels)
  labels
}

# Labels to transfer to the query: NULL or a named list of vectors, one value per reference (Y) cell
# each; returned as a named list of character vectors.
.check_transfer_labels <- function(x, n, arg = "transfer.labels") {
  if (is.null(x)) return(NULL)
  if (!is.list(x) || !length(x) || is.null(names(x)) || any(!nzchar(names(x))) || anyNA(names(x)) ||
      anyDuplicated(names(x))) {
    stop(arg, ": expected a list of label vectors with unique, non-empty names, found ",
         if (is.list(x)) paste0("a list named ", deparse(names(x), nlines = 1L)) else class(x)[1], ".", call. = FALSE)
  }
  out <- lapply(names(x), function(nm) {
    v <- x[[nm]]
    what <- paste0(arg, "$", nm)
    if (inherits(v, "cmot_named")) {
      what <- v$name
      v <- v$value
    }
    v <- .check_labels(v, n, what)
    as.character(v)
  })
  stats::setNames(out, names(x))
}

# ---------------------------------------------------------------- conversion
# features x cells R matrix -> cells x features Python matrix (no densifying).
.to_python <- function(m) {
  if (inherits(m, "dgCMatrix")) {
    .bridge()$csr_from_csc_parts(
      reticulate::r_to_py(as.array(m@x)), reticulate::r_to_py(as.array(m@i)),
      reticulate::r_to_py(as.array(m@p)), ncol(m), nrow(m)
    )
  } else {
    m <- unname(m)
    storage.mode(m) <- "double"
    reticulate::r_to_py(m)$T   # Fortran order features x cells -> C-order cells x features, no copy
  }
}

# ---------------------------------------------------------------- engine
# ref.y, ref.x, query.y: features x cells; args: the CMOT arguments (R names).
# The core checks the parameters before any data is converted.  Returns a list
# with x.hat (X features x query cells), params (as passed to the core) etc.
.run_cmot <- function(ref.y, ref.x, query.y, args, pairs = NULL, labels = NULL, verbose = TRUE,
                      context = "RunCMOT", transfer.labels = NULL, report.features = TRUE) {
  .require_cmot()
  params <- .core_params(args, context = context)
  if (verbose) {
    message("Running CMOT: ", ncol(ref.y), " reference cells, ", ncol(query.y), " query cells, ",
            nrow(ref.y), " shared features, ", nrow(ref.x), " features to infer")
  }
  res <- .py_try({
    corr <- NULL
    if (!is.null(pairs)) {
      corr <- .bridge()$pairs_matrix(reticulate::r_to_py(as.array(pairs[, 1] - 1L)),
                                     reticulate::r_to_py(as.array(pairs[, 2] - 1L)),
                                     ncol(ref.x), ncol(ref.y))
    }
    lab <- if (is.null(labels)) NULL else reticulate::r_to_py(as.array(labels))
    tl <- if (is.null(transfer.labels)) NULL else reticulate::r_to_py(lapply(transfer.labels, as.array))
    # the core's steps ("cmot: <step> ...") reach R as messages while it runs
    log <- if (verbose) reticulate::r_to_py(function(msg) message(msg)) else NULL
    out <- .bridge()$run(.to_python(ref.x), .to_python(ref.y), .to_python(query.y),
                         reticulate::r_to_py(params), correspondence = corr, labels = lab,
                         transfer_labels = tl, log = log)
    reticulate::py_to_r(out)
  }, context = context)
  if (!is.null(res$error)) .stop_python(paste0(res$error[[1]], ": ", res$error[[2]]), context)
  x.hat <- t(res$x_hat)
  dimnames(x.hat) <- list(rownames(ref.x), colnames(query.y))
  for (w in res$warnings) {
    if (!identical(w[[1]], "PoorlyMappedWarning")) warning("cmot (Python ", w[[1]], "): ", .r_names(w[[2]]), call. = FALSE)
  }
  outliers <- as.logical(res$outliers)
  scores <- as.numeric(res$mapping_score)           # 0-1, higher = better mapped
  outlier.scores <- as.numeric(res$outlier_scores)  # robust z-score, higher = further
  names(outliers) <- names(scores) <- names(outlier.scores) <- colnames(query.y)
  if (isTRUE(res$query_unlike)) {
    warning("The query as a whole is unlike the reference: check its features and normalization ",
            "(every query cell is reported as poorly mapped).", call. = FALSE)
  }
  k.scores <- if (is.null(res$k_scores)) NULL else unlist(res$k_scores)
  if (verbose) {
    message("CMOT used k = ", res$n_neighbors,
            if (!is.null(res$n_pcs)) paste0(", n.pcs = ", res$n_pcs) else " (paper mode: raw features)",
            ", shrinkage = ", format(res$shrinkage), ", reg.e = ", signif(res$reg_e, 3),
            "; ", sum(outliers), " of ", length(outliers), " query cells poorly mapped")
  }
  feature.scores <- if (is.null(res$feature_scores)) NULL else
    stats::setNames(as.numeric(res$feature_scores), rownames(ref.x))
  if (verbose && report.features && !is.null(feature.scores)) .report_feature_scores(feature.scores)
  list(x.hat = x.hat, params = params, poorly.mapped = outliers, score = scores, feature.scores = feature.scores,
       labels = .labels_result(res$labels, names(transfer.labels), colnames(query.y)),
       outlier.score = outlier.scores, query.unlike = isTRUE(res$query_unlike), reg.e = res$reg_e,
       k = as.integer(res$n_neighbors), k.scores = k.scores,
       n.pcs = if (is.null(res$n_pcs)) NULL else as.integer(res$n_pcs),
       shrinkage = as.numeric(res$shrinkage),
       step.c = list(linear.weight = .or_default(res$linear_weight, 0), metric.weight = .or_default(res$metric_weight, 0),
                     kernel.width = .or_default(res$kernel_width, 1)),
       aligned.index = if (is.null(res$aligned_index)) NULL else as.integer(res$aligned_index) + 1L)
}

# A number from the bridge, or `default` when the core did not report it.
.or_default <- function(v, default) if (is.null(v)) default else as.numeric(v)

# The transferred labels from the bridge: for each name, list(labels = character per query cell,
# score = max class score per query cell, scores = classes x query cells matrix), named by cell.
.labels_result <- function(res, wanted, cells) {
  if (is.null(wanted)) return(NULL)
  if (is.null(res)) {
    stop("The cmot Python core did not transfer labels (it has no fit(transfer_labels=)); this R package needs ",
         "a newer core for refdata naming meta.data columns.", call. = FALSE)
  }
  out <- lapply(stats::setNames(wanted, wanted), function(n) {
    r <- res[[n]]
    scores <- t(matrix(as.numeric(r$scores), nrow = length(cells)))
    dimnames(scores) <- list(as.character(unlist(r$classes)), cells)
    list(labels = stats::setNames(as.character(unlist(r$labels)), cells),
         score = stats::setNames(as.numeric(r$score), cells), scores = scores,
         neighbors = if (is.null(r$neighbors)) NA_integer_ else as.integer(r$neighbors))
  })
  out
}

# The name of the one-hot labels that stand for the modality to infer when an object method transfers
# labels only (no feature of theirs is reported or stored).
.onehot_name <- "the one-hot labels"

# The verbose summary of the predictability of each inferred feature (leave-one-out r on the reference).
.report_feature_scores <- function(fs, threshold = 0.3) {
  low <- names(fs)[!is.na(fs) & fs < threshold]
  message("Predictability of the ", length(fs), " inferred features (leave-one-out r on the reference): median ",
          signif(stats::median(fs, na.rm = TRUE), 2), "; ", length(low), " with r < ", threshold,
          if (length(low)) paste0(" (cannot be inferred reliably): ",
                                  paste(utils::head(low, 20), collapse = ", "),
                                  if (length(low) > 20) paste0(", ... (", length(low) - 20, " more)") else "")
          else "")
}

.warn_poorly_mapped <- function(flags, where) {
  n <- sum(flags)
  if (n > 0) {
    warning(sprintf("%d of %d query cells (%.1f%%) are poorly mapped by CMOT; their inferred values are less reliable. See %s.",
                    n, length(flags), 100 * n / length(flags), where), call. = FALSE)
  }
  invisible(n)
}
