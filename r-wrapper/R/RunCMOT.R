#' Infer a missing modality with Cross-Modality Optimal Transport
#'
#' Infers, for every query cell measured only in a shared modality Y (for
#' example ATAC), the modality X that it lacks (for example RNA or protein),
#' from reference cells measured in both X and Y (Alatkar and Wang, Genome
#' Biology 2023).  CMOT transports the reference cells onto the query cells in
#' Y with entropic optimal transport regularized by reference labels, and gives
#' each query cell the weighted average X of its nearest transported reference
#' cells.  Query cells whose transport looks unlike the rest's are flagged as
#' poorly mapped.
#'
#' \strong{Shared features.}  Features of the reference's and the query's Y
#' are matched by name; only the shared ones are used (a message says how
#' many, when \code{verbose}), and an error is raised when there are none.
#'
#' \strong{Partly paired references.}  The reference's X cells (\code{refdata},
#' or \code{refdata.assay} of \code{reference.x} for Seurat objects) and Y cells
#' (\code{reference}) may be different cells of which only some are known to
#' be the same.  \code{pairs} says which:
#' \itemize{
#'   \item \code{NULL} (default): fully paired.  X and Y must hold the same
#'     cells; when both have cell names they are matched by name (any order),
#'     otherwise by position.  Different cells are an error.
#'   \item \code{"names"}: partly paired; cells whose names appear in both are
#'     the known pairs.
#'   \item a two-column \code{data.frame} or \code{matrix}: partly paired; each
#'     row is a known pair, first column the X (refdata) cell, second column
#'     the Y (reference) cell, as cell names or 1-based indices.
#' }
#' With pairs given, CMOT first aligns the two reference modalities (nonlinear
#' manifold alignment, Step A of the paper; see \code{n.components},
#' \code{align.neighbors} and \code{mu}) and gives every reference Y cell the X
#' profile of its known X partner or, without one, the mean profile of its
#' \code{match.neighbors} nearest X cells in the aligned space.  \code{labels} then
#' refer to the reference's Y cells.
#'
#' \strong{Defaults and paper mode.}  The defaults are those of the Python
#' core (a test keeps them equal): the transport cost and the neighbours are
#' computed on \code{n.pcs = "auto"} principal components (5 to 50, chosen by
#' leave-one-out on the reference) of the \code{n.features =
#' 4000} most variable shared features, standardized (\code{scale = TRUE}),
#' \code{reg.e} is set from the data,
#' the transport is semi-relaxed (\code{reg.m = "auto"}), \code{k} is chosen by
#' leave-one-out on the reference (\code{k = "auto"}), the reference moves into
#' query space mostly by the transport's mean displacement
#' (\code{barycentric.weight = 0.25}) of a transport that follows the query's
#' composition (\code{correction = "robust"}), predictions are pulled toward the
#' reference mean only where leave-one-out says so (\code{shrinkage = "auto"}),
#' neighbour weights are
#' scaled to the data (\code{weight.scale = "auto"}) and poorly mapped cells
#' are found by a distance test calibrated on the reference
#' (\code{outlier.method = "distance"}).  To follow the paper instead, set
#' \code{scale = FALSE}, \code{n.pcs = NULL} (transport cost on every shared
#' feature, neighbours on the \code{n.features} raw features),
#' \code{barycentric.weight = 1}, \code{correction = "transport"}, \code{reg.m = NULL} (balanced
#' transport), \code{weight.scale = 1} (weights \code{exp(-distance)}),
#' \code{shrinkage = 0}, \code{match.neighbors = 1} and, if
#' wanted, \code{outlier.method = "isolation_forest"}.  The
#' paper's entropic weights (\code{reg.e = 5e3} for the pancancer data,
#' \code{1e2} for A549 and PBMC) are on the scale of the squared Euclidean cost
#' between raw features and belong with \code{n.pcs = NULL}: on principal
#' components the cost is on another scale, and such a value can be far too
#' large or too small.  With \code{reg.e = NULL} (default) the weight is set
#' from the cost in either mode.
#'
#' \strong{Parameter checks.}  The values of the CMOT parameters
#' (\code{n.components} to \code{seed}) are checked once, by the Python core's
#' \code{check_params()}, before any data is handed to Python; R only refuses
#' values that have no Python counterpart (\code{NA}, vectors of several values).
#' The core's errors arrive as R errors of class \code{cmot_param_error} that
#' name the R argument, for example \code{k: expected "auto" or an integer >= 1,
#' found -3.}
#'
#' @param object The query: for the default method a matrix of the shared
#'   modality Y with features as rows and cells as columns (dense
#'   \code{matrix} or sparse \code{dgCMatrix}); for the Seurat method a
#'   \code{Seurat} object; for the SingleCellExperiment method a
#'   \code{SingleCellExperiment}.
#' @param ... For the default method, nothing (an unknown argument is an
#'   error).  For the Seurat and SingleCellExperiment methods, the CMOT
#'   parameters of the default method (\code{n.components} to \code{seed}, with
#'   the same defaults), passed on to it.
#'
#' @return The default method returns the inferred X, a dense matrix with the
#'   features of \code{refdata} as rows (their names kept) and the query cells
#'   as columns (in the query's order, their names kept), with an attribute
#'   \code{"cmot"}: a list with \code{poorly.mapped} (logical per query cell),
#'   \code{score} (the mapping score, 0 to 1, higher is better mapped),
#'   \code{outlier.score} (the robust z-score behind the flags, higher is
#'   further from the reference), \code{query.unlike} (\code{TRUE} when the
#'   query as a whole is unlike the reference, which also gives a warning),
#'   \code{reg.e} (the entropic weight used), \code{k} (the number of
#'   neighbours used, chosen by the core when \code{k = "auto"}),
#'   \code{k.scores} (the leave-one-out score of each candidate \code{k}, or
#'   \code{NULL} when \code{k} was given), \code{n.pcs} (the number of
#'   principal components used, chosen by the core when \code{n.pcs = "auto"};
#'   \code{NULL} in paper mode), \code{shrinkage} (the weight of the reference
#'   mean in each prediction, chosen by the core when \code{shrinkage = "auto"}),
#'   \code{step.c} (what \code{shrinkage = "auto"} chose besides:
#'   \code{linear.weight}, the linear map's weight in each prediction;
#'   \code{metric.weight}, the weight of the map's predicted X in the
#'   neighbours' metric, 0 for the components' Euclidean distance;
#'   \code{kernel.width}, the width of the neighbour weights in units of the
#'   median \code{k}-th neighbour distance; 0, 0 and 1 without those choices),
#'   \code{feature.scores} (the predictability of each inferred feature: the
#'   feature-wise Pearson r of the reference's own cells predicted from their
#'   neighbours, leave-one-out, named by feature; below 0.3 a feature cannot be
#'   inferred reliably, and \code{verbose} names such features),
#'   \code{labels} (with \code{transfer.labels}: for each name, a list of
#'   \code{labels} (per query cell), \code{score} (the best class's score, 0
#'   to 1) and \code{scores} (classes x query cells, columns summing to 1);
#'   else \code{NULL}),
#'   \code{params} (the parameters
#'   passed to the core, with its names, as its \code{check_params()} returned
#'   them), \code{args} (the CMOT arguments as given, with R names),
#'   \code{n.shared.features} and \code{n.pairs} (known pairs of a partly
#'   paired reference, else \code{NA}).  The Seurat
#'   and SingleCellExperiment methods return \code{object} with the inferred
#'   modality added (see there).
#'
#' @references Alatkar S. A. and Wang D. (2023). CMOT: Cross-Modality Optimal
#'   Transport for multimodal inference. Genome Biology 24, 163.
#'   \doi{10.1186/s13059-023-02989-8}
#' @seealso \code{\link{cmot_available}}, \code{\link{install_cmot}}
#' @export
#' @rdname RunCMOT
#' @examples
#' set.seed(1)
#' sim <- simulate_multimodal(n.reference = 120, n.query = 40)
#' if (cmot_available()) {
#'   # plain matrices, features x cells
#'   x.hat <- RunCMOT(sim$query.y, reference = sim$reference.y, refdata = sim$reference.x,
#'                    k = 10, n.features = 20, seed = 1)
#'   dim(x.hat)
#'   cor(as.vector(x.hat), as.vector(sim$query.x))
#' }
RunCMOT <- function(object, ...) {
  UseMethod("RunCMOT")
}

#' @param reference The reference in the shared modality Y, features x cells
#'   (default method), or a \code{Seurat} / \code{SingleCellExperiment} object
#'   holding it (other methods).
#' @param refdata The default method: the reference in the modality to infer,
#'   X, features x cells; same cells as \code{reference} unless \code{pairs}
#'   is given.  The Seurat and SingleCellExperiment methods: what to transfer,
#'   as \code{TransferData()} takes it, a named list such as
#'   \code{list(celltype = "celltype", ADT = "ADT")} whose elements each name
#'   \itemize{
#'     \item a column of the reference's cell metadata (meta.data / colData),
#'       or are labels given as values (one per reference cell): labels,
#'       transferred to the query (see the object methods' sections);
#'     \item an assay of \code{reference.x} (when given) or \code{reference}
#'       (Seurat) or an \code{altExp} (SingleCellExperiment): a modality,
#'       inferred into a new assay / altExp named after the list element.
#'   }
#'   One transport and one neighbour search serve every element (the assays'
#'   features are inferred together; each assay keeps its own feature names).
#'   With labels only, the modality used to choose \code{k} and the other
#'   automatic settings is the one-hot encoding of the first labels.
#'   \code{NULL} (default): only \code{refdata.assay} / \code{refdata.altexp}
#'   is inferred, as before; both may be given.
#' @param pairs Which reference X and Y cells are the same cells: \code{NULL}
#'   (fully paired), \code{"names"}, or a two-column table of known pairs; see
#'   Details.
#' @param labels Labels of the reference (Y) cells for the label regularizer,
#'   such as cell types: a vector with one value per reference cell (default
#'   method) or the name of a column of the reference's cell metadata (other
#'   methods).  \code{NULL} uses \code{n.clusters} Ward clusters of the
#'   reference in Y.  These labels shape the transport (they are an input); labels to
#'   predict for the query are given in \code{refdata} (object methods) or
#'   \code{transfer.labels} (default method).  The same column may be used for
#'   both, e.g. \code{labels = "celltype", refdata = list(celltype =
#'   "celltype", ADT = "ADT")}.
#' @param transfer.labels Default method: labels to transfer to the query, a
#'   named list of vectors with one value per reference (Y) cell, e.g.
#'   \code{list(celltype = types)}; \code{NULL} (default) transfers none.
#'   Each query cell gets the class with the largest weighted vote of its
#'   \code{k} transported reference neighbours (the weights of the inference
#'   of X), in \code{attr(result, "cmot")$labels}.
#' @param n.components Dimension of the common space of manifold alignment
#'   (partly paired references only).
#' @param align.neighbors Neighbours in the graphs of manifold alignment
#'   (partly paired references only).
#' @param mu Alignment trade-off between within-modality geometry and known
#'   pairs, strictly between 0 and 1 (partly paired references only).
#' @param match.neighbors A reference Y cell without a known partner takes the
#'   mean X profile of its \code{match.neighbors} nearest X cells in the aligned
#'   space (partly paired references only).  \code{1} is the paper's nearest
#'   aligned cell, which carries the whole error of an imperfect alignment.
#' @param reg.e Entropic weight of the optimal transport, on the scale of the
#'   squared Euclidean cost between reference and query cells in the space set
#'   by \code{n.pcs}.  \code{NULL} (default) uses the median, over reference
#'   cells, of the cost to their 10th nearest query cell: a local scale that
#'   suits any data set and unit.  The paper's values (\code{5e3}, \code{1e2})
#'   are on the raw-feature cost scale and go with \code{n.pcs = NULL}; see
#'   Details.
#' @param reg.cl Weight of the label regularization.
#' @param reg.m Relaxation of the reference marginal of the transport.
#'   \code{"auto"} (default) relaxes it by a KL penalty of weight \code{reg.e}
#'   (the weight used): every query cell still receives its share, but cell
#'   types more abundant in the reference than in the query need not be
#'   forced onto other query cells, as happens when reference and query come
#'   from different samples.  A number > 0 is that penalty's weight;
#'   \code{NULL} keeps both marginals exactly (balanced transport, as in the
#'   paper).
#' @param n.clusters Ward clusters of the reference used as labels when
#'   \code{labels} is \code{NULL}.
#' @param k Transported reference cells averaged for each query cell: a whole
#'   number, or \code{"auto"} (default; \code{NULL} is not accepted) to choose
#'   it among 5, 10, 20, 30, 50, 100, 200 and 500 (those below the number of
#'   reference cells) by leave-one-out prediction of the reference cells' X
#'   from their neighbours in Y.  The \code{k} used is recorded (see Value and
#'   the object methods' sections).
#' @param n.features Most variable shared features (by variance in the
#'   reference) used for the transport and the neighbours; all of them when
#'   there are fewer.
#' @param representation Where the transport cost and the neighbours are
#'   computed: \code{"pca"} (default) computes cmot's own representation from
#'   the shared features (\code{n.features}, \code{scale}, \code{n.pcs});
#'   \code{"precomputed"} uses \code{reference} and \code{object} as they are,
#'   as embeddings in one space (rows = dimensions), such as a PCA, LSI or
#'   Harmony embedding.  The Seurat method sets it with \code{reference.reduction}.
#' @param scale Standardize each of those features by its mean and standard
#'   deviation in the reference (clipped to +-10), for reference and query
#'   alike, before the PCA, as \code{ScaleData} does (default \code{TRUE});
#'   \code{FALSE} is paper mode.
#' @param n.pcs Principal components (fitted on the reference) of those
#'   features in which the transport cost and the neighbours are computed
#'   (at most the number of features and of reference cells - 1).
#'   \code{"auto"} (default) chooses 5, 10, 20, 30 or 50 together with
#'   \code{k}, by the same leave-one-out prediction on the reference; the number
#'   used is recorded like \code{k}.  \code{NULL}
#'   is paper mode: the cost on every shared feature, the neighbours on the
#'   \code{n.features} raw features; see Details.
#' @param barycentric.weight How the transport moves the reference cells into
#'   query space before the neighbour search, a number in [0, 1]: reference
#'   cell i goes to \code{(1 - w) * (y_i + shift) + w * bary_i}.
#'   \code{shift} is the transport's mean displacement, the offset between
#'   reference and query estimated from matched cells (cell types more common
#'   in one sample than in the other do not bias it); \code{bary_i}, the
#'   paper's barycentric map (\code{w = 1}), is the transport-weighted mean of
#'   the query cells that cell i is sent to, which pulls the cells of a cluster
#'   towards its centre: that smooths noise when reference and query come from
#'   one sample but loses the differences within clusters across samples.
#'   The default 0.25 does well in both cases.
#' @param correction How the reference is moved onto the query.
#'   \code{"robust"} (default): the transport's reference marginal follows the
#'   query's composition (each query cell's weight shared by its 30 nearest
#'   reference cells), so reference cell types absent from the query take no
#'   part, and the mean displacement is shrunk (James-Stein) so that a single
#'   query cell or a one-type query barely moves the reference; a query cell's
#'   prediction then hardly depends on the other query cells.
#'   \code{"transport"}: every reference cell sends its mass and moves by the
#'   raw mean displacement (cmot 0.3, and the paper with
#'   \code{barycentric.weight = 1}).
#' @param shrinkage Weight \code{s} of the reference mean of X in each
#'   prediction, \code{(1 - s) * neighbours + s * mean}, a number in [0, 1].
#'   When the shared modality says little about X (RNA from sparse sci-CAR
#'   ATAC), the neighbours' average is mostly noise and the mean profile
#'   predicts better.  \code{"auto"} (default) picks 0, 0.25, 0.5, 0.75 or 1 by
#'   leave-one-out prediction on the reference (0 unless the mean is clearly
#'   better) and warns at 0.5 or more; the value used is recorded like
#'   \code{k}.  It does not change feature-wise correlations.  \code{0} is
#'   paper mode.  With a PCA, \code{"auto"} also makes Step C's other choices,
#'   each by the same leave-one-out: the neighbours' average is blended with a
#'   ridge map of X on the reference's components, and the neighbours are
#'   searched in a metric that adds that map's predicted X to the components
#'   (neighbours that the map predicts to have a similar X count as nearer;
#'   taken only when clearly better cell-wise); a number keeps the neighbours'
#'   average alone.
#' @param weight.scale Distance unit of the neighbour weights: each query
#'   cell averages its \code{k} neighbours with weights proportional to
#'   \code{exp(-distance / weight.scale)}.  \code{"auto"} (default) uses the
#'   median distance of reference cells to their \code{k}-th nearest other
#'   reference cell, so the weights do not depend on the units of the data or
#'   on the other query cells, with \code{shrinkage = "auto"} times a width of
#'   0.25, 0.5 or 1 chosen by leave-one-out (narrower only when clearly better
#'   cell-wise); \code{1} is the paper's \code{exp(-distance)}, which puts all
#'   the weight on the nearest cell when distances are large.
#' @param max.iter,max.inner.iter Majorization steps of the label-regularized
#'   transport, and largest number of Sinkhorn iterations per step.
#' @param tol Sinkhorn stops when the l2 error of the query marginal is below
#'   \code{tol} times its norm; a final error above \code{1e-3} gives a
#'   warning.
#' @param outlier.threshold Robust z-score above which a query cell is
#'   reported as poorly mapped; \code{Inf} disables the report.
#' @param outlier.method How poorly mapped query cells are found.
#'   \code{"distance"} (default) scores each query cell by its distance to its
#'   10th nearest reference cell, in a PCA of the variable features fitted on
#'   reference and query together, against the same distance among reference
#'   cells: calibrated on the reference, it can flag a whole population the
#'   reference lacks, and rarely flags cells of known types.
#'   \code{"isolation_forest"} is the paper's detector (an isolation forest on
#'   the PCA of coupling x cost, cut at \code{outlier.threshold} robust
#'   z-scores): it sees only the query, so it misses a new cell type that makes
#'   up a large share of it, and it flags cells of known types.
#' @param seed Random seed (alignment, clustering, PCA, the subsample of at most
#'   2000 reference cells that \code{k = "auto"} scores, outlier detection);
#'   default 0, so that the same input gives the same result (as Seurat's
#'   \code{seed.use}); \code{NULL} for none (cmot < 0.6.1's default: on large
#'   data and for partly paired references the result then differs between runs).
#' @param verbose Print progress messages, including the core's steps
#'   (\code{"cmot: <step> ..."}) as they happen; they are R messages, which
#'   \code{suppressMessages()} silences.  \code{FALSE} prints nothing.
#' @export
#' @rdname RunCMOT
RunCMOT.default <- function(object, reference, refdata, pairs = NULL, labels = NULL, transfer.labels = NULL,
                            n.components = 10, align.neighbors = 5, mu = 0.5, match.neighbors = 10, reg.e = NULL,
                            reg.cl = 1, reg.m = "auto", n.clusters = 2, k = "auto", n.features = 4000,
                            representation = "pca", scale = TRUE, n.pcs = "auto", barycentric.weight = 0.25, correction = "robust",
                            shrinkage = "auto",
                            weight.scale = "auto",
                            max.iter = 10, max.inner.iter = 1000,
                            tol = 1e-6, outlier.threshold = 3.5, outlier.method = "distance", seed = 0,
                            verbose = TRUE, ...) {
  # The formals n.components to seed are the one declaration of the CMOT parameters in R:
  # .cmot_arg_map() reads their names, the object methods pass them on through `...`.
  .check_dots(...)
  if (missing(reference)) stop("reference: the reference in the shared modality is missing.", call. = FALSE)
  if (missing(refdata)) stop("refdata: the reference in the modality to infer is missing.", call. = FALSE)
  args <- .cmot_args_in(environment())
  query <- .input_matrix(object, "object (query)", "query", "attr(result, \"cmot\")$poorly.mapped")
  ref.y <- .input_matrix(reference, "reference", "reference")
  ref.x <- .input_matrix(refdata, "refdata", "refdata")
  shared <- .shared_features(ref.y$value, query$value, ref.y$name, query$name, verbose = verbose)
  if (!is.null(shared)) {   # (row subsets of a dgCMatrix are slow: none where every row is kept in order)
    if (!identical(rownames(ref.y$value), shared)) ref.y$value <- ref.y$value[shared, , drop = FALSE]
    if (!identical(rownames(query$value), shared)) query$value <- query$value[shared, , drop = FALSE]
  }
  pr <- .resolve_pairs(pairs, colnames(ref.x$value), colnames(ref.y$value), ncol(ref.x$value), ncol(ref.y$value),
                       ref.x$name, ref.y$name, verbose = verbose)
  if (!is.null(pr$x.order)) ref.x$value <- ref.x$value[, pr$x.order, drop = FALSE]
  if (!inherits(labels, "cmot_named")) labels <- .named(labels, "labels")
  labels <- .check_labels(labels$value, ncol(ref.y$value), labels$name)
  transfer.labels <- .check_transfer_labels(transfer.labels, ncol(ref.y$value))
  res <- .run_cmot(ref.y$value, ref.x$value, query$value, args, pairs = pr$pairs, labels = labels,
                   verbose = verbose, transfer.labels = transfer.labels,
                   report.features = !identical(ref.x$name, .onehot_name))
  out <- res$x.hat
  .warn_poorly_mapped(res$poorly.mapped, query$where)
  attr(out, "cmot") <- list(poorly.mapped = res$poorly.mapped, score = res$score,
                            outlier.score = res$outlier.score, query.unlike = res$query.unlike, reg.e = res$reg.e,
                            k = res$k, k.scores = res$k.scores, n.pcs = res$n.pcs, shrinkage = res$shrinkage,
                            step.c = res$step.c,
                            feature.scores = res$feature.scores, labels = res$labels, params = res$params, args = args, n.shared.features = nrow(ref.y$value),
                            n.pairs = if (is.null(pr$pairs)) NA_integer_ else nrow(pr$pairs))
  out
}

# Stop on arguments in `...` other than `allowed` (the object methods pass the
# CMOT parameters on to RunCMOT.default() through `...`).
.check_dots <- function(..., allowed = character()) {
  nm <- names(list(...)) %||% rep("", ...length())
  nm[!nzchar(nm)] <- "<unnamed>"
  bad <- nm[!nm %in% allowed]
  if (length(bad)) stop("Unknown argument(s): ", paste(bad, collapse = ", "), ".", call. = FALSE)
}

#' @param reference.assay Assay of \code{reference} with the shared modality
#'   (default: its default assay).
#' @param refdata.assay Assay with the modality to infer, in \code{reference.x}
#'   when given, else in \code{reference}.
#' @param query.assay Assay of the query with the shared modality (default: its
#'   default assay).
#' @param reference.x Optional second \code{Seurat} object holding
#'   \code{refdata.assay}, for references whose two modalities were measured in
#'   different (partly overlapping) cells; see Details and \code{pairs}.
#' @param new.assay.name Name of the assay to store the inferred modality of
#'   \code{refdata.assay} in; also names the meta.data columns of the mapping
#'   (\code{<name>.poorly.mapped}, \code{<name>.mapping.score}, with
#'   \code{<name>} = \code{tolower(new.assay.name)}), with or without
#'   \code{refdata.assay}.
#' @param reference.reduction Seurat method: a reduction of \code{reference}
#'   (PCA, LSI, Harmony, ...) whose embeddings (\code{dims}) are the
#'   reference's shared modality, used as they are (\code{representation =
#'   "precomputed"}) instead of cmot's own PCA.  The query is projected onto it
#'   as \code{FindTransferAnchors(reduction = "pcaproject")} does: its
#'   \code{layer} of \code{query.assay} on the features of the reduction's
#'   loadings, centred and scaled by each feature's mean and standard
#'   deviation in the reference's \code{reference.assay} (clipped at 10, a
#'   zero deviation taken as 1), times the loadings; query features missing
#'   from the loadings are left out with a warning.  \code{NULL} (default):
#'   cmot's own representation of the assay.
#' @param dims Seurat method: the dimensions of \code{reference.reduction} to
#'   use (default \code{1:30}, or all when fewer), e.g. \code{2:30} for an LSI.
#' @param query.reduction Seurat method: a reduction of the query already in
#'   the space of \code{reference.reduction} (e.g. both halves of a joint
#'   Harmony run), whose dimensions \code{dims} are used instead of a
#'   projection; needed when the reduction has no loadings.
#' @param features Seurat method: the shared features to use, as given (every
#'   one must be in both assays).  \code{NULL} (default): the
#'   \code{VariableFeatures()} of \code{reference.assay} when set (those also in
#'   the query), else cmot's own selection (\code{n.features}).  Not used with
#'   \code{reference.reduction}.
#' @param layer Layer of the assays to read (\code{"data"}, \code{"counts"} or
#'   \code{"scale.data"}), for all three assays.  In a Seurat 5 assay
#'   (\code{Assay5}) split into layers per sample (\code{split(object[["RNA"]],
#'   f = object$batch)}), the layers \code{"<layer>.<sample>"} are read and
#'   combined in the object's cell order (a feature absent from a layer is 0
#'   there, as \code{JoinLayers()} makes it); no \code{JoinLayers()} is needed.  A
#'   missing layer is an error: Seurat 5 objects made from counts have no
#'   \code{"data"} layer until \code{NormalizeData()} (or set it with
#'   \code{LayerData<-}), and \code{layer = "counts"} reads the raw counts.
#' @param slot Deprecated: the name of \code{layer} before SeuratObject 5.
#'   Still accepted, with a warning; use \code{layer}.
#' @param overwrite If \code{new.assay.name} (or one of the meta.data columns
#'   below) already exists in the query: \code{FALSE} (default) stops with an
#'   error and changes nothing, \code{TRUE} replaces it.
#'
#' @section Seurat method:
#' Returns \code{object} with a new assay \code{new.assay.name} whose
#' \code{data} layer holds the inferred values of every feature of
#' \code{refdata.assay} for every query cell, in the query's cell order.  Seurat
#' does not allow \code{_} or \code{|} in feature names; such names are
#' rewritten to \code{-} (as Seurat does), made unique with a warning if that
#' rewriting would make two names equal, and the map from the new to the
#' original names is kept in the assay's feature metadata (column
#' \code{cmot.original.name}) and in \code{Misc(object[[new.assay.name]],
#' "cmot.feature.map")}.  The meta.data gets columns
#' \code{<name>.poorly.mapped} (logical) and \code{<name>.mapping.score} (from 0
#' to 1, higher is better mapped, as Seurat's \code{MappingScore} reads: 1 for a
#' cell as close to the reference as its median cell, 0 beyond the most isolated
#' reference cells), where \code{<name>} is \code{tolower(new.assay.name)}
#' (\code{cmot.poorly.mapped} by default), and a warning says how many cells
#' are poorly mapped.  The arguments go into the command log
#' (\code{object@commands$RunCMOT}, via \code{LogSeuratCommand}), with
#' entries added: \code{k.used} (the \code{k} used, chosen by the core when
#' \code{k = "auto"}), \code{reg.e.used} (the entropic weight used),
#' \code{shrinkage.used} (see \code{shrinkage}), \code{step.c.used} (see
#' \code{step.c} in Value) and
#' \code{n.pcs.used} (the principal components used; absent in paper mode).
#' \code{Tool(object, "RunCMOT")} holds \code{params} (the parameters passed
#' to the core, with its names), \code{k.used}, \code{k.scores} (see Value),
#' \code{n.pcs.used}, \code{shrinkage.used}, \code{step.c.used}, \code{reg.e.used}, \code{label.neighbors} (the voting
#' neighbours chosen for each transferred label), the assays and other details of the
#' last run, with \code{feature.scores} (a list, per inferred assay, of the
#' predictability of each feature, named by original feature name); the same
#' record, less the feature map, stays with each inferred
#' assay as \code{Misc(object[[new.assay.name]], "cmot.run")}, so runs into
#' different assays keep theirs.  The default assay and everything else in
#' the query are left unchanged.
#'
#' Each inferred assay's feature meta data (\code{object[[assay]][[]]}) has
#' a column \code{cmot.predictability}: the leave-one-out feature-wise r on the
#' reference (see \code{feature.scores} in Value; \code{\link{PlotCMOT}} draws
#' it).
#'
#' \strong{refdata.}  With \code{refdata = list(celltype = "celltype", ADT =
#' "ADT")}, as \code{TransferData()} takes it, an element naming an assay is
#' inferred into a new assay named after the element (\code{ADT}), as above;
#' an element naming a meta.data column of \code{reference} (or giving labels
#' as values) is transferred as \code{TransferData()} stores labels: meta.data
#' columns \code{predicted.<name>} (the class with the largest score) and
#' \code{predicted.<name>.score} (that score, 0 to 1), and an assay
#' \code{prediction.score.<name>} whose \code{data} holds the score of every
#' class (classes x cells; each cell's scores sum to 1; class names with
#' \code{_} or \code{|} rewritten as for features, the original names in its
#' \code{cmot.original.name}).  Unlike \code{TransferData()}'s assay it has
#' no \code{max} row: the best score is \code{predicted.<name>.score}.
#' Existing columns or assays are an error unless \code{overwrite = TRUE}; an
#' element that is neither an assay nor a column, or both, is an error.
#' The score of a class is the share of the query cell's neighbour weight
#' (the \code{k} transported reference cells and the weights that infer X)
#' held by reference cells of that class.
#'
#' @export
#' @rdname RunCMOT
#' @examples
#' if (cmot_available()) {
#'   # Seurat objects (on Seurat 5: Assay5 objects; the simulated values are
#'   # used as they are, as counts: layer = "counts")
#'   reference <- SeuratObject::CreateSeuratObject(
#'     counts = SeuratObject::as.sparse(sim$reference.y), assay = "ATAC")
#'   reference[["RNA"]] <- SeuratObject::CreateAssayObject(counts = SeuratObject::as.sparse(sim$reference.x))
#'   reference$celltype <- sim$reference.labels
#'   query <- SeuratObject::CreateSeuratObject(
#'     counts = SeuratObject::as.sparse(sim$query.y), assay = "ATAC")
#'   query <- RunCMOT(query, reference = reference, reference.assay = "ATAC",
#'                    refdata.assay = "RNA", query.assay = "ATAC", new.assay.name = "CMOT",
#'                    layer = "counts", labels = "celltype", k = 10, n.features = 20, seed = 1)
#'   query[["CMOT"]]
#'   head(query$cmot.poorly.mapped)
#'   # labels and a modality in one call, as TransferData() takes them
#'   query <- RunCMOT(query, reference = reference, reference.assay = "ATAC",
#'                    refdata = list(celltype = "celltype", RNA = "RNA"), layer = "counts",
#'                    labels = "celltype", k = 10, n.features = 20, seed = 1, overwrite = TRUE)
#'   table(query$predicted.celltype, sim$query.labels)
#'   head(query[["RNA"]][[]])   # cmot.predictability of each inferred feature
#'   if (utils::packageVersion("SeuratObject") >= "5.0.0") {
#'     # Seurat 5: read layers with LayerData(); an assay split per sample works as it is
#'     x.hat <- SeuratObject::LayerData(query, assay = "CMOT", layer = "data")
#'     query$batch <- rep(c("b1", "b2"), length.out = ncol(query))
#'     query[["ATAC"]] <- split(query[["ATAC"]], f = query$batch)
#'     query <- RunCMOT(query, reference = reference, reference.assay = "ATAC",
#'                      refdata.assay = "RNA", layer = "counts", labels = "celltype",
#'                      k = 10, n.features = 20, seed = 1, overwrite = TRUE)
#'     all.equal(SeuratObject::LayerData(query, assay = "CMOT", layer = "data"), x.hat)
#'   } else {
#'     x.hat <- SeuratObject::GetAssayData(query, assay = "CMOT", slot = "data")
#'   }
#' }
RunCMOT.Seurat <- function(object, reference, reference.assay = NULL, refdata.assay = NULL,
                           query.assay = NULL, reference.x = NULL, pairs = NULL, labels = NULL,
                           refdata = NULL, reference.reduction = NULL, dims = NULL, query.reduction = NULL,
                           features = NULL, new.assay.name = "CMOT", layer = "data", overwrite = FALSE,
                           verbose = TRUE, slot = NULL, ...) {
  .check_dots(..., allowed = names(.cmot_arg_map()))
  ref.x.obj <- .check_seurat_reference(reference, reference.x)
  x.obj.name <- if (is.null(reference.x)) "reference" else "reference.x"
  .check_string(new.assay.name, "new.assay.name")
  layer <- .seurat_layer(layer, slot, missing(layer))
  .check_flag(overwrite, "overwrite")
  .check_flag(verbose, "verbose")
  query.assay <- query.assay %||% SeuratObject::DefaultAssay(object)
  reference.assay <- reference.assay %||% SeuratObject::DefaultAssay(reference)
  targets <- .seurat_targets(refdata, refdata.assay, new.assay.name, reference, ref.x.obj, x.obj.name)
  targets$labels <- .check_transfer_labels(targets$labels, ncol(reference), "refdata")
  .check_seurat_assays(object, reference, ref.x.obj, query.assay, reference.assay, targets$assays, targets$arg,
                       x.obj.name)
  for (a in names(targets$assays)) .check_new_assay(object, a, query.assay, overwrite, targets$arg[[a]])
  .check_label_outputs(object, names(targets$labels), query.assay, overwrite)
  meta.cols <- .check_new_columns(colnames(object[[]]), new.assay.name, overwrite, "meta.data", "new.assay.name")
  if (is.null(targets$assays) && (!is.null(pairs) || !is.null(reference.x))) {
    stop("refdata: names only meta.data columns (labels), which belong to the reference's cells; pairs and ",
         "reference.x are for a modality to infer (an assay) and must be NULL here.", call. = FALSE)
  }
  y <- .seurat_shared(object, reference, query.assay, reference.assay, layer, reference.reduction, dims,
                      query.reduction, features, list(...), verbose)
  x <- .seurat_refdata_matrix(ref.x.obj, targets, layer, x.obj.name)
  dots <- list(...)
  if (!is.null(reference.reduction)) dots$representation <- "precomputed"   # the embeddings as they are
  x.hat <- do.call(RunCMOT.default, c(list(
    .named(y$query, y$query.name, paste0("meta.data column '", meta.cols[1], "'")),
    reference = .named(y$reference, y$reference.name), refdata = .named(x$value, x$name),
    pairs = pairs, labels = .seurat_labels(reference, labels), transfer.labels = targets$labels,
    verbose = verbose), dots))
  info <- attr(x.hat, "cmot")
  run <- c(.run_record(info), list(reference.assay = reference.assay, refdata.assay = refdata.assay,
                                   query.assay = query.assay, layer = layer, new.assay.name = new.assay.name,
                                   labels = labels, refdata = targets$spec, assays = targets$assays,
                                   reference.reduction = reference.reduction, dims = y$dims,
                                   query.reduction = query.reduction, features = y$features,
                                   n.shared.features = info$n.shared.features,
                                   n.pairs = info$n.pairs, meta.data = meta.cols,
                                   version = as.character(utils::packageVersion("cmot"))))
  object <- .seurat_store(object, x.hat, x$rows, meta.cols, run, verbose,
                          v5 = inherits(object[[query.assay]], "StdAssay"))
  # command log (named "RunCMOT"): this method's arguments, the CMOT ones and what the core chose
  cmd <- SeuratObject::LogSeuratCommand(object = object, return.command = TRUE)
  object[["RunCMOT"]] <- .seurat_command(cmd, query.assay, info)
  object
}

# What the object methods record of a run: the parameters passed to the core and what it chose.
# The layer to read: `layer`, or the deprecated `slot` (with a warning).
.seurat_layer <- function(layer, slot, layer.missing) {
  if (!is.null(slot)) {
    if (!layer.missing && !identical(layer, slot)) {
      stop("slot: deprecated name of layer, given together with layer and differing (slot = '", slot,
           "', layer = '", layer, "'); give layer only.", call. = FALSE)
    }
    warning(structure(class = c("deprecatedWarning", "warning", "condition"), list(
      message = "RunCMOT(): the argument 'slot' is deprecated; use 'layer' (SeuratObject 5 names), e.g. layer = \"data\".",
      call = NULL)))
    layer <- slot
  }
  if (!is.character(layer) || length(layer) != 1L || is.na(layer) ||
      !layer %in% c("data", "counts", "scale.data")) {
    stop("layer: expected one of \"data\", \"counts\", \"scale.data\", found ", deparse(layer, nlines = 1L), ".",
         call. = FALSE)
  }
  layer
}

.run_record <- function(info) {
  rec <- list(params = info$params, reg.e.used = info$reg.e, k.used = info$k, k.scores = info$k.scores,
              n.pcs.used = info$n.pcs, shrinkage.used = info$shrinkage, step.c.used = info$step.c)
  # the voting neighbours the core chose for each transferred label (refdata naming meta.data columns)
  if (length(info$labels)) rec$label.neighbors <- vapply(info$labels, function(l) l$neighbors, integer(1))
  rec
}

.check_seurat_reference <- function(reference, reference.x) {
  if (missing(reference) || !inherits(reference, "Seurat")) {
    stop("reference: expected a Seurat object holding the reference, found ",
         if (missing(reference)) "nothing" else paste(class(reference), collapse = "/"), ".", call. = FALSE)
  }
  if (!is.null(reference.x) && !inherits(reference.x, "Seurat")) {
    stop("reference.x: expected NULL or a Seurat object, found ", paste(class(reference.x), collapse = "/"), ".",
         call. = FALSE)
  }
  reference.x %||% reference
}

.check_seurat_assays <- function(object, reference, ref.x.obj, query.assay, reference.assay, assays, args,
                                 x.obj.name) {
  .check_assay(object, query.assay, "query.assay", "the query (object)")
  .check_assay(reference, reference.assay, "reference.assay", "reference")
  for (a in names(assays)) {
    arg <- args[[a]]
    .check_assay(ref.x.obj, assays[[a]], arg, x.obj.name)
    if (x.obj.name == "reference" && identical(assays[[a]], reference.assay)) {
      stop(arg, " and reference.assay are both '", assays[[a]], "': the modality to infer must be ",
           "another assay than the shared one.", call. = FALSE)
    }
  }
}

# The columns <name>.poorly.mapped and <name>.mapping.score of the query's cell
# metadata (`what`), refused when they exist unless `overwrite`.
.check_new_columns <- function(existing, name, overwrite, what, arg) {
  cols <- paste0(tolower(name), c(".poorly.mapped", ".mapping.score"))
  clash <- intersect(cols, existing)
  if (length(clash) && !overwrite) {
    stop("The query's ", what, " already has column(s) ", paste0("'", clash, "'", collapse = ", "),
         "; set overwrite = TRUE to replace them, or choose another ", arg, ".", call. = FALSE)
  }
  cols
}

# Labels from a column of the reference's cell metadata (`cell.data`), or NULL.
.labels_from <- function(labels, cell.data, what) {
  if (is.null(labels)) return(NULL)
  if (!is.character(labels) || length(labels) != 1L || is.na(labels)) {
    stop("labels: expected the name of one column of the reference's ", what, ", found ",
         deparse(labels, nlines = 1L), ".", call. = FALSE)
  }
  if (!labels %in% colnames(cell.data)) {
    stop("labels: column '", labels, "' not found in the reference's ", what, " (columns: ",
         paste(utils::head(colnames(cell.data), 20), collapse = ", "), ").", call. = FALSE)
  }
  .named(cell.data[[labels]], paste0("labels ('", labels, "')"))
}

.seurat_labels <- function(reference, labels) .labels_from(labels, reference[[]], "meta.data")

# The command log of a run: the method's arguments (from LogSeuratCommand), the
# CMOT arguments passed on to RunCMOT.default() (NULL written "NULL", as
# LogSeuratCommand does) and what the core chose ("auto" / NULL arguments).
.seurat_command <- function(cmd, query.assay, info) {
  methods::slot(cmd, "assay.used") <- query.assay
  methods::slot(cmd, "name") <- "RunCMOT"   # fixed, also when called through do.call()
  args <- lapply(info$args, function(v) if (is.null(v)) "NULL" else v)
  used <- list(k.used = info$k, reg.e.used = info$reg.e, shrinkage.used = info$shrinkage, n.pcs.used = info$n.pcs,
               step.c.used = info$step.c)
  methods::slot(cmd, "params") <- c(methods::slot(cmd, "params"), args, used[!vapply(used, is.null, NA)])
  cmd
}

# object[[name]] <- assay, without the warning SeuratObject 5 gives while it
# looks for a counts layer (to compute nCount/nFeature) that an assay of
# inferred values has not; other warnings pass.
.add_assay <- function(object, name, assay) {
  withCallingHandlers(object[[name]] <- assay, warning = function(w) {
    msg <- conditionMessage(w)
    if (grepl("Layer counts isn't present", msg, fixed = TRUE) ||
        grepl("No layers found matching search pattern", msg, fixed = TRUE)) {
      invokeRestart("muffleWarning")
    }
  })
  object
}

`%||%` <- function(a, b) if (is.null(a)) b else a

.check_string <- function(x, name) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    stop(name, ": expected one non-empty string, found ", deparse(x, nlines = 1L), ".", call. = FALSE)
  }
  invisible(x)
}

.check_assay <- function(obj, assay, arg, what) {
  .check_string(assay, arg)
  if (!assay %in% SeuratObject::Assays(obj)) {
    stop(arg, ": assay '", assay, "' not found in ", what, " (assays: ",
         paste(SeuratObject::Assays(obj), collapse = ", "), ").", call. = FALSE)
  }
  invisible(TRUE)
}

.check_new_assay <- function(object, name, query.assay, overwrite, arg = "new.assay.name") {
  if (identical(name, SeuratObject::DefaultAssay(object)) || identical(name, query.assay)) {
    stop(arg, ": '", name, "' is the query's ",
         if (identical(name, query.assay)) "query.assay" else "default assay",
         " and cannot be replaced; choose another name.", call. = FALSE)
  }
  if (name %in% SeuratObject::Assays(object) && !overwrite) {
    stop(arg, ": the query already has an assay '", name, "'. Set overwrite = TRUE to replace it, ",
         "or choose another ", if (startsWith(arg, "refdata")) "name in refdata" else arg, ".", call. = FALSE)
  }
  other <- setdiff(names(object), SeuratObject::Assays(object))
  if (name %in% other) {
    stop(arg, ": '", name, "' is already used by a non-assay object in the query (",
         class(object[[name]])[1], "); choose another name.", call. = FALSE)
  }
  name
}

# Is SeuratObject 5 (layers, Assay5) installed?
.seurat_v5 <- function() utils::packageVersion("SeuratObject") >= "5.0.0"

# The layer (slot) `layer` of assay `assay` of `obj`, features x cells, with the
# columns in the order of Cells(obj).  An Assay5 split into layers per sample
# ("data.b1", "data.b2", ...) is read layer by layer and combined in cell order
# (features missing from a layer are zero there, as JoinLayers() makes them).
.get_data <- function(obj, assay, layer, what) {
  a <- obj[[assay]]
  where <- paste0("assay '", assay, "' in ", what)
  if (inherits(a, "StdAssay")) {
    m <- .get_layers(a, layer, where)
  } else if (.seurat_v5()) {
    m <- SeuratObject::LayerData(a, layer = layer)
  } else {
    m <- SeuratObject::GetAssayData(a, slot = layer)
  }
  if (nrow(m) == 0L || ncol(m) == 0L) {
    stop("The '", layer, "' layer of ", where, " is empty; choose another layer (argument layer).", call. = FALSE)
  }
  cells <- SeuratObject::Cells(obj)
  if (!identical(colnames(m), cells)) {
    missing.cells <- setdiff(cells, colnames(m))
    if (length(missing.cells)) {
      stop("The '", layer, "' layer of ", where, " holds ", ncol(m), " of the ", length(cells), " cells of the ",
           "object (missing e.g. '", missing.cells[1], "'); every cell needs a value.", call. = FALSE)
    }
    m <- m[, cells, drop = FALSE]
  }
  .check_matrix(m, paste0(what, " assay '", assay, "' (", layer, ")"))
}

# The layers of an Assay5 that hold `layer`: the layer itself, or its split
# parts "<layer>.<sample>" (as split() names them), combined by cell.
.get_layers <- function(a, layer, where) {
  all.layers <- SeuratObject::Layers(a)
  found <- if (layer %in% all.layers) layer else all.layers[startsWith(all.layers, paste0(layer, "."))]
  if (!length(found)) {
    hint <- if (identical(layer, "data") && any(startsWith(all.layers, "counts"))) {
      " Seurat 5 objects made from counts have no 'data' layer until normalized: run NormalizeData() (or set it with LayerData(object, assay, layer = \"data\") <- ...), or pass layer = \"counts\" to use the raw counts for every assay."
    } else ""
    stop("The '", layer, "' layer of ", where, " is missing (layers: ", paste(all.layers, collapse = ", "), ").",
         hint, call. = FALSE)
  }
  parts <- lapply(found, function(l) SeuratObject::LayerData(a, layer = l))
  if (length(parts) == 1L) return(parts[[1]])
  features <- unique(unlist(lapply(parts, rownames)))
  parts <- lapply(parts, function(p) {
    if (identical(rownames(p), features)) return(p)
    p <- methods::as(p, "CsparseMatrix")
    full <- Matrix::sparseMatrix(i = integer(), j = integer(), x = numeric(), dims = c(length(features), ncol(p)),
                                 dimnames = list(features, colnames(p)))
    full[rownames(p), ] <- p
    full
  })
  cols <- unlist(lapply(parts, colnames))
  if (anyDuplicated(cols)) {
    stop("The layers ", paste(found, collapse = ", "), " of ", where, " share cells (e.g. '",
         cols[anyDuplicated(cols)], "'); expected each cell in one layer.", call. = FALSE)
  }
  sparse <- vapply(parts, methods::is, NA, "sparseMatrix")
  if (any(sparse) && !all(sparse)) parts <- lapply(parts, function(p) methods::as(p, "CsparseMatrix"))
  do.call(cbind, parts)
}

.assay_key <- function(name, object) {
  base <- tolower(gsub("[^[:alnum:]]", "", name))
  if (!nzchar(base) || !grepl("^[[:alpha:]]", base)) base <- paste0("cmot", base)
  used <- vapply(SeuratObject::Assays(object), function(a) SeuratObject::Key(object[[a]]), "")
  used <- used[names(used) != name]
  key <- paste0(base, "_")
  i <- 1L
  while (key %in% used) {
    key <- paste0(base, i, "_")
    i <- i + 1L
  }
  key
}

# Rewrite feature names the way Seurat requires (no '_' or '|'), never silently
# duplicating one; returns data.frame(feature, original).
.seurat_feature_names <- function(original) {
  if (is.null(original)) stop("refdata assay has no feature names.", call. = FALSE)
  new <- gsub("[_|]", "-", original)
  changed <- new != original
  if (anyDuplicated(new)) {
    dup <- unique(new[duplicated(new)])
    # names that need no rewriting keep theirs; rewritten ones get the suffixes
    ord <- order(changed)
    new[ord] <- make.unique(new[ord], sep = ".")
    warning(length(dup), " feature names of the inferred modality collide once '_' and '|' are replaced by '-' ",
            "(as Seurat requires), e.g. '", dup[1], "'; they were made unique with make.unique(). ",
            "The map to the original names is in the assay's meta.features column 'cmot.original.name'.",
            call. = FALSE)
  } else if (any(changed)) {
    message(sum(changed), " feature names had '_' or '|' (not allowed by Seurat) replaced by '-', e.g. '",
            original[changed][1], "' -> '", new[changed][1], "'; the original names are in the assay's ",
            "meta.features column 'cmot.original.name'.")
  }
  data.frame(feature = new, original = original, stringsAsFactors = FALSE)
}
