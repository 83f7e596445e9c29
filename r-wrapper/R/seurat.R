# Helpers of RunCMOT.Seurat(): what to transfer (refdata), the shared modality
# (assay, features, or a reduction and its projection), and storing the results.

# ---------------------------------------------------------------- refdata
# What a run transfers.  Returns list(assays = named character, new assay name ->
# source assay, with attr "arg" (new name -> the argument that named it, for
# messages), or NULL; labels = named list of .named() label vectors (one per
# reference cell), or NULL; spec = what was asked, for the records).
.seurat_targets <- function(refdata, refdata.assay, new.assay.name, reference, ref.x.obj, x.obj.name) {
  assays <- character()
  arg <- character()
  labels <- list()
  if (!is.null(refdata.assay)) {
    .check_string(refdata.assay, "refdata.assay")
    assays[[new.assay.name]] <- refdata.assay
    arg[[new.assay.name]] <- "refdata.assay"
  }
  if (!is.null(refdata)) {
    if (!is.list(refdata) || !length(refdata) || is.null(names(refdata)) || anyNA(names(refdata)) ||
        any(!nzchar(names(refdata))) || anyDuplicated(names(refdata))) {
      stop("refdata: expected a named list, as TransferData() takes it, e.g. list(celltype = \"celltype\", ",
           "ADT = \"ADT\"), with unique non-empty names, found ",
           if (is.list(refdata)) paste0("a list named ", deparse(names(refdata), nlines = 1L))
           else paste(class(refdata), collapse = "/"), ".", call. = FALSE)
    }
    cols <- colnames(reference[[]])
    for (nm in names(refdata)) {
      v <- refdata[[nm]]
      what <- paste0("refdata$", nm)
      if (is.character(v) && length(v) == 1L && !is.na(v)) {
        is.assay <- v %in% SeuratObject::Assays(ref.x.obj)
        is.col <- v %in% cols
        if (is.assay && is.col) {
          stop(what, ": '", v, "' is both an assay of ", x.obj.name, " and a meta.data column of reference; ",
               "pass the column's values instead (", nm, " = reference$", v, ") to transfer the labels, or ",
               "rename one of them.", call. = FALSE)
        }
        if (is.assay) {
          if (nm %in% names(assays)) {
            stop(what, ": the new assay '", nm, "' is also new.assay.name (for refdata.assay = '",
                 assays[[nm]], "'); choose another name.", call. = FALSE)
          }
          assays[[nm]] <- v
          arg[[nm]] <- what
        } else if (is.col) {
          labels[[nm]] <- .named(reference[[]][[v]], paste0(what, " (meta.data column '", v, "')"))
        } else {
          stop(what, ": '", v, "' is neither an assay of ", x.obj.name, " (assays: ",
               paste(SeuratObject::Assays(ref.x.obj), collapse = ", "), ") nor a column of the reference's ",
               "meta.data (columns: ", paste(utils::head(cols, 20), collapse = ", "),
               if (length(cols) > 20) ", ..." else "", ").", call. = FALSE)
        }
      } else if (is.atomic(v) || is.factor(v)) {
        if (length(v) != ncol(reference)) {
          stop(what, ": expected the name of an assay or meta.data column, or labels with one value per ",
               "reference cell (", ncol(reference), "), found ", length(v), " value(s).", call. = FALSE)
        }
        if (!is.null(names(v)) && !identical(names(v), SeuratObject::Cells(reference))) {
          if (!setequal(names(v), SeuratObject::Cells(reference))) {
            stop(what, ": the names of the labels are not the reference's cells.", call. = FALSE)
          }
          v <- v[SeuratObject::Cells(reference)]
        }
        labels[[nm]] <- .named(unname(v), paste0(what, " (labels given as values)"))
      } else {
        stop(what, ": expected the name of an assay or meta.data column, or labels with one value per ",
             "reference cell, found ", paste(class(v), collapse = "/"), ".", call. = FALSE)
      }
    }
  }
  if (!length(assays) && !length(labels)) {
    stop("refdata.assay: name the assay of ", x.obj.name, " holding the modality to infer (assays: ",
         paste(SeuratObject::Assays(ref.x.obj), collapse = ", "), "), or give refdata (a named list of ",
         "assays and meta.data columns to transfer).", call. = FALSE)
  }
  clash <- intersect(names(assays), paste0("prediction.score.", names(labels)))
  if (length(clash)) {
    stop("refdata: the new assay '", clash[1], "' would also hold the class scores of labels; rename it.",
         call. = FALSE)
  }
  spec <- lapply(refdata %||% list(), function(v) if (is.character(v) && length(v) == 1L) v else "<values>")
  list(assays = if (length(assays)) assays else NULL, arg = as.list(arg),
       labels = if (length(labels)) labels else NULL, spec = spec)
}

# The outputs of transferred labels must not exist unless overwrite.
.check_label_outputs <- function(object, names, query.assay, overwrite) {
  for (nm in names) {
    cols <- paste0("predicted.", nm, c("", ".score"))
    clash <- intersect(cols, colnames(object[[]]))
    if (length(clash) && !overwrite) {
      stop("refdata$", nm, ": the query's meta.data already has column(s) ", paste0("'", clash, "'", collapse = ", "),
           "; set overwrite = TRUE to replace them, or choose another name in refdata.", call. = FALSE)
    }
    .check_new_assay(object, paste0("prediction.score.", nm), query.assay, overwrite, paste0("refdata$", nm))
  }
}

# The modality to infer: the source assays' layers stacked (features x reference
# cells), with rows = list(new assay name -> row indices); without any assay
# (labels only) the one-hot matrix of the first labels, which is not stored.
.seurat_refdata_matrix <- function(ref.x.obj, targets, layer, x.obj.name) {
  if (is.null(targets$assays)) {
    lab <- targets$labels[[1]]
    classes <- sort(unique(lab))
    m <- Matrix::sparseMatrix(i = match(lab, classes), j = seq_along(lab), x = 1,
                              dims = c(length(classes), length(lab)), dimnames = list(classes, NULL))
    return(list(value = m, name = .onehot_name, rows = list()))
  }
  parts <- lapply(names(targets$assays), function(a) .get_data(ref.x.obj, targets$assays[[a]], layer, x.obj.name))
  n <- vapply(parts, nrow, 1L)
  rows <- stats::setNames(split(seq_len(sum(n)), rep(seq_along(n), n)), names(targets$assays))
  if (length(parts) > 1L) {
    if (any(vapply(parts, methods::is, NA, "sparseMatrix"))) parts <- lapply(parts, methods::as, "CsparseMatrix")
    # feature names may repeat across assays (RNA and SCT): the rows map keeps them apart
    feats <- unlist(lapply(parts, rownames))
    parts <- lapply(parts, function(p) { rownames(p) <- NULL; p })
    m <- do.call(rbind, parts)
    attr(rows, "features") <- feats
  } else {
    m <- parts[[1]]
  }
  where <- paste0(x.obj.name, " (assay", if (length(parts) > 1L) "s " else " ",
                  paste0("'", targets$assays, "'", collapse = ", "), ")")
  list(value = m, name = where, rows = rows)
}

# ---------------------------------------------------------------- shared modality
# The shared modality of reference and query (features x cells) as RunCMOT.default() takes it: an assay's
# layer (all features, `features`, or the reference's VariableFeatures()), or a reduction's embeddings with
# the query projected onto its loadings (or read from `query.reduction`).
.seurat_shared <- function(object, reference, query.assay, reference.assay, layer, reference.reduction, dims,
                           query.reduction, features, dots, verbose) {
  if (!is.null(reference.reduction)) {
    if (!is.null(features)) {
      stop("features: not used with reference.reduction (the reduction's loadings set the features); give one ",
           "of them.", call. = FALSE)
    }
    if (!is.null(dots$representation) && !identical(dots$representation, "precomputed")) {
      stop("representation: with reference.reduction the embeddings are used as they are (\"precomputed\"), ",
           "found ", deparse(dots$representation), ".", call. = FALSE)
    }
    return(.seurat_reduction(object, reference, query.assay, reference.assay, reference.reduction, dims,
                             query.reduction, layer, verbose))
  }
  if (!is.null(dims) || !is.null(query.reduction)) {
    stop(if (!is.null(dims)) "dims" else "query.reduction", ": only used with reference.reduction, which is NULL.",
         call. = FALSE)
  }
  query <- .get_data(object, query.assay, layer, "the query")   # the query first, as before: its errors first
  ref <- .get_data(reference, reference.assay, layer, "reference")
  used <- .select_features(features, reference, reference.assay, rownames(ref), rownames(query), verbose)
  if (!is.null(used)) {
    ref <- ref[used, , drop = FALSE]
    query <- query[used, , drop = FALSE]
  }
  list(reference = ref, query = query, reference.name = paste0("reference (assay '", reference.assay, "')"),
       query.name = paste0("query (assay '", query.assay, "')"), features = used, dims = NULL)
}

# The features of the shared modality: `features` as given (every one must be in both), else the
# reference assay's VariableFeatures() when set (those in the query), else NULL (cmot's own selection).
.select_features <- function(features, reference, reference.assay, ref.features, query.features, verbose) {
  if (!is.null(features)) {
    if (!is.character(features) || !length(features) || anyNA(features) || anyDuplicated(features)) {
      stop("features: expected feature names (a character vector, unique, no NA), found ",
           deparse(utils::head(features, 5), nlines = 1L), ".", call. = FALSE)
    }
    for (side in list(list(ref.features, "the reference assay"), list(query.features, "the query assay"))) {
      miss <- setdiff(features, side[[1]])
      if (length(miss)) {
        stop("features: ", length(miss), " of the ", length(features), " features are not in ", side[[2]],
             ", e.g. ", paste0("'", utils::head(miss, 5), "'", collapse = ", "), ".", call. = FALSE)
      }
    }
    return(features)
  }
  vf <- .variable_features(reference, reference.assay)
  if (!length(vf)) return(NULL)
  used <- intersect(vf[vf %in% ref.features], query.features)
  if (!length(used)) {
    stop("features: none of the ", length(vf), " VariableFeatures() of the reference assay '", reference.assay,
         "' is in the query; pass features = rownames(...) or clear them.", call. = FALSE)
  }
  if (verbose) {
    message("Using the reference assay's ", length(vf), " VariableFeatures()",
            if (length(used) < length(vf)) paste0(", ", length(used), " of them in the query") else "")
  }
  used
}

.variable_features <- function(reference, assay) {
  vf <- tryCatch(SeuratObject::VariableFeatures(reference, assay = assay), error = function(e) NULL)
  as.character(vf %||% character())
}

# Reference embeddings of a reduction (dims) and the query's: projected as Seurat's pcaproject does
# (ProjectCellEmbeddings: the query's data layer of the loadings' features, centred and scaled by the
# reference's feature mean and sd, clipped at 10, times the loadings), or read from `query.reduction`.
.seurat_reduction <- function(object, reference, query.assay, reference.assay, reduction, dims,
                              query.reduction, layer, verbose) {
  .check_string(reduction, "reference.reduction")
  if (!reduction %in% SeuratObject::Reductions(reference)) {
    stop("reference.reduction: reduction '", reduction, "' not found in reference (reductions: ",
         paste(SeuratObject::Reductions(reference), collapse = ", "), ").", call. = FALSE)
  }
  emb <- SeuratObject::Embeddings(reference[[reduction]])
  dims <- dims %||% seq_len(min(30L, ncol(emb)))
  if (!is.numeric(dims) || !length(dims) || anyNA(dims) || any(dims != round(dims)) || any(dims < 1) ||
      any(dims > ncol(emb)) || anyDuplicated(dims)) {
    stop("dims: expected distinct dimensions among 1..", ncol(emb), " of reduction '", reduction, "', found ",
         deparse(dims, nlines = 1L), ".", call. = FALSE)
  }
  dims <- as.integer(dims)
  ref <- t(emb[SeuratObject::Cells(reference), dims, drop = FALSE])
  if (!is.null(query.reduction)) {
    query <- .query_embeddings(object, query.reduction, dims, rownames(ref))
  } else {
    query <- .project_query(object, reference, query.assay, reference.assay, reduction, dims, layer, verbose)
  }
  if (verbose) message("Using reduction '", reduction, "' of the reference (", length(dims), " dims)",
                       if (is.null(query.reduction)) ", the query projected onto its loadings"
                       else paste0(" and reduction '", query.reduction, "' of the query"))
  list(reference = ref, query = query, reference.name = paste0("reference (reduction '", reduction, "')"),
       query.name = paste0("query (", if (is.null(query.reduction)) paste0("projected onto '", reduction, "'")
                           else paste0("reduction '", query.reduction, "'"), ")"),
       features = NULL, dims = dims)
}

.query_embeddings <- function(object, query.reduction, dims, names) {
  .check_string(query.reduction, "query.reduction")
  if (!query.reduction %in% SeuratObject::Reductions(object)) {
    stop("query.reduction: reduction '", query.reduction, "' not found in the query (reductions: ",
         paste(SeuratObject::Reductions(object), collapse = ", "), ").", call. = FALSE)
  }
  q <- SeuratObject::Embeddings(object[[query.reduction]])
  if (ncol(q) < max(dims)) {
    stop("query.reduction: '", query.reduction, "' has ", ncol(q), " dimensions, fewer than dims needs (",
         max(dims), ").", call. = FALSE)
  }
  miss <- setdiff(SeuratObject::Cells(object), rownames(q))
  if (length(miss)) {
    stop("query.reduction: '", query.reduction, "' lacks ", length(miss), " of the query's cells (e.g. '",
         miss[1], "').", call. = FALSE)
  }
  q <- t(q[SeuratObject::Cells(object), dims, drop = FALSE])
  rownames(q) <- names   # same dimensions as the reference's, matched by position
  q
}

.project_query <- function(object, reference, query.assay, reference.assay, reduction, dims, layer, verbose) {
  load <- SeuratObject::Loadings(reference[[reduction]])
  if (!length(load) || nrow(load) == 0L) {
    stop("reference.reduction: '", reduction, "' has no feature loadings to project the query with; give the ",
         "query's own embeddings in the same space as query.reduction (e.g. from a joint Harmony run).",
         call. = FALSE)
  }
  ref.data <- .get_data(reference, reference.assay, layer, "reference")
  miss <- setdiff(rownames(load), rownames(ref.data))
  if (length(miss)) {
    stop("reference.reduction: ", length(miss), " features of the loadings of '", reduction, "' are not in the ",
         "reference assay '", reference.assay, "' (e.g. '", miss[1], "'); set reference.assay to the assay the ",
         "reduction was computed from.", call. = FALSE)
  }
  query.data <- .get_data(object, query.assay, layer, "the query")
  features <- intersect(rownames(load), rownames(query.data))
  if (!length(features)) {
    stop("reference.reduction: none of the ", nrow(load), " features of the loadings of '", reduction,
         "' is in the query assay '", query.assay, "'.", call. = FALSE)
  }
  if (length(features) < nrow(load)) {
    warning(nrow(load) - length(features), " of the ", nrow(load), " features of the loadings of '", reduction,
            "' are not in the query assay '", query.assay, "' (e.g. '", setdiff(rownames(load), features)[1],
            "'); the query is projected on the other ", length(features), ", as Seurat's ProjectCellEmbeddings does.",
            call. = FALSE)
  }
  ref.data <- ref.data[features, , drop = FALSE]
  mu <- Matrix::rowMeans(ref.data)
  sdv <- sqrt(pmax(Matrix::rowSums(ref.data^2) - ncol(ref.data) * mu^2, 0) / (ncol(ref.data) - 1))
  sdv[is.na(sdv) | sdv == 0] <- 1
  q <- as.matrix(query.data[features, , drop = FALSE])
  q <- pmin((q - mu) / sdv, 10)
  out <- crossprod(load[features, dims, drop = FALSE], q)   # dims x query cells
  rownames(out) <- colnames(SeuratObject::Embeddings(reference[[reduction]]))[dims]
  out
}

# ---------------------------------------------------------------- store
# The new assays (feature names Seurat accepts, with a map back to the originals, and each feature's
# predictability), the transferred labels, the meta.data columns and the run records.
.seurat_store <- function(object, x.hat, rows, meta.cols, run, verbose, v5 = FALSE) {
  info <- attr(x.hat, "cmot")
  attr(x.hat, "cmot") <- NULL
  feats <- attr(rows, "features") %||% rownames(x.hat)
  maps <- list()
  scores <- list()
  for (a in names(rows)) {
    i <- rows[[a]]
    m <- x.hat[i, , drop = FALSE]
    rownames(m) <- feats[i]
    fs <- if (is.null(info$feature.scores)) NULL else stats::setNames(unname(info$feature.scores[i]), feats[i])
    scores[[a]] <- fs
    arun <- utils::modifyList(run, list(new.assay.name = a, refdata.assay = run$assays[[a]]))
    if (verbose) message("Storing ", nrow(m), " inferred features in assay '", a, "'")
    st <- .seurat_assay(object, m, a, unname(fs), v5)
    SeuratObject::Misc(st$assay, slot = "cmot.run") <- arun
    object <- .add_assay(object, a, st$assay)
    maps[[a]] <- st$map
  }
  for (nm in names(info$labels)) object <- .seurat_store_labels(object, nm, info$labels[[nm]], v5, verbose)
  object[[meta.cols[1]]] <- unname(info$poorly.mapped)
  object[[meta.cols[2]]] <- unname(info$score)
  run$feature.scores <- if (length(scores)) scores else NULL
  methods::slot(object, "tools")[["RunCMOT"]] <- c(run, list(feature.map = if (length(maps) == 1L) maps[[1]] else maps))
  object
}

# An assay of `m` (features x query cells) for `object`: Assay5 when v5, else a v3 Assay.
.seurat_assay <- function(object, m, name, feature.scores = NULL, v5 = FALSE) {
  fmap <- .seurat_feature_names(rownames(m))
  dimnames(m) <- list(fmap$feature, SeuratObject::Cells(object))
  assay <- if (v5) {
    SeuratObject::CreateAssay5Object(data = SeuratObject::as.sparse(m))
  } else {
    suppressWarnings(SeuratObject::CreateAssayObject(data = m))
  }
  if (!identical(rownames(assay), fmap$feature)) {
    stop("internal error: Seurat changed feature names unexpectedly.", call. = FALSE)
  }
  # named by feature: an Assay5 matches an unnamed vector by its values
  assay[["cmot.original.name"]] <- stats::setNames(fmap$original, fmap$feature)
  if (!is.null(feature.scores)) assay[["cmot.predictability"]] <- stats::setNames(feature.scores, fmap$feature)
  SeuratObject::Misc(assay, slot = "cmot.feature.map") <- fmap
  SeuratObject::Key(assay) <- .assay_key(name, object)
  list(assay = assay, map = fmap)
}

# Transferred labels `lab` (labels, score, scores: classes x cells) as TransferData() stores them.
.seurat_store_labels <- function(object, name, lab, v5, verbose) {
  object[[paste0("predicted.", name)]] <- unname(lab$labels)
  object[[paste0("predicted.", name, ".score")]] <- unname(lab$score)
  st <- suppressMessages(.seurat_assay(object, lab$scores, paste0("prediction.score.", name), NULL, v5))
  if (verbose) {
    message("Stored labels '", name, "' in meta.data columns predicted.", name, " and predicted.", name,
            ".score, and the scores of its ", nrow(lab$scores), " classes in assay 'prediction.score.", name, "'")
  }
  .add_assay(object, paste0("prediction.score.", name), st$assay)
}
