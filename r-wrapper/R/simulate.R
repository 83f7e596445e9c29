#' Simulate a small multimodal reference and query
#'
#' Simulates a reference measured in two modalities and a query measured in
#' one, with the query's true values of the other modality kept for checking.
#' Modality X is the one to infer, modality Y the shared one.  Three designs:
#' \describe{
#'   \item{\code{"latent"} (default)}{cells of a few types from a shared latent
#'     state; X and Y are different random nonlinear maps of it (non-negative
#'     values).  Mirrors \code{cmot.datasets.make_multimodal} of the Python
#'     core, in R.}
#'   \item{\code{"citeseq"}}{a CITE-seq-like design: X holds antibody counts of
#'     15 surface proteins (named as in 10x PBMC panels: CD3, CD4, CD8a, ...),
#'     Y holds RNA UMI counts; cells are of up to 7 blood cell types
#'     (\code{"CD4 T"}, \code{"CD8 T"}, \code{"NK"}, \code{"B"}, \code{"CD14
#'     Mono"}, \code{"CD16 Mono"}, \code{"DC"}) whose proteins follow the known
#'     marker patterns, with a within-type state (for example naive to memory,
#'     activation) seen in both RNA and proteins.  The query is another "donor":
#'     other cell-type proportions, lower sequencing depth, a gene-wise and
#'     protein-wise batch offset (\code{query.shift}) and 3 times weaker antibody
#'     staining, so each dataset is best normalized on its own (log-normalized
#'     RNA, CLR proteins).}
#'   \item{\code{"atac"}}{a scCAT-seq-like design: X holds log-scale normalized
#'     RNA expression, Y holds ATAC read counts per peak (mostly 0 and 1; make
#'     them binary for the paper's protocol); cells are of a few cell lines
#'     (\code{"lineA"}, \code{"lineB"}, ...) with a within-line state.}
#' }
#' Only simulated values: no real data is shipped or read.  Uses R's random
#' number generator (call \code{set.seed()} first for reproducible data).
#'
#' @param n.reference,n.query Numbers of reference and query cells.
#' @param n.types Number of cell types (cell lines); \code{NULL}: 3, except 7
#'   for \code{"citeseq"} (at most 7 there).
#' @param n.x.features,n.y.features Numbers of features of X and Y;
#'   \code{NULL}: 30 and 60 (\code{"latent"}), 15 proteins and 1000 genes
#'   (\code{"citeseq"}, at most 15 proteins), 500 genes and 2000 peaks
#'   (\code{"atac"}).
#' @param n.latent Dimension of the latent state (\code{"latent"}) or of the
#'   within-type state (the other designs).
#' @param noise Standard deviation of the measurement noise (\code{"latent"}),
#'   or of the cell-to-cell noise of X that Y does not show (log scale; the
#'   other designs).
#' @param design \code{"latent"}, \code{"citeseq"} or \code{"atac"} (see above).
#' @param query.shift Size of the query's batch offset, the standard deviation
#'   of a random feature-wise log-scale factor applied to the query's Y (and, at
#'   half that size, to its X); \code{NULL}: 0, except 0.3 for \code{"citeseq"}.
#'
#' @return A list with features as rows and cells as columns:
#'   \code{reference.x}, \code{reference.y}, \code{query.y}, \code{query.x}
#'   (dense matrices for \code{"latent"}, with features \code{gene1}, ... and
#'   \code{peak1}, ...; sparse \code{dgCMatrix} for the other designs: proteins
#'   and \code{gene1}, ... for \code{"citeseq"}, \code{gene1}, ... and
#'   \code{peak1}, ... for \code{"atac"}), cells \code{ref1}, ... and
#'   \code{query1}, ..., and the cell types \code{reference.labels},
#'   \code{query.labels} (named by cell).
#' @export
#' @examples
#' set.seed(1)
#' sim <- simulate_multimodal(100, 30)
#' str(sim, max.level = 1)
#'
#' # CITE-seq-like: RNA counts (Y) and 15 proteins (X), query from another "donor"
#' cite <- simulate_multimodal(500, 200, design = "citeseq")
#' dim(cite$reference.y); rownames(cite$reference.x)
#' table(cite$reference.labels)
#' # mean CD14 counts per cell type: high on monocytes
#' round(tapply(cite$reference.x["CD14", ], cite$reference.labels, mean))
#'
#' # scCAT-seq-like: ATAC peak counts (Y) and log-scale RNA (X) of 3 cell lines
#' atac <- simulate_multimodal(160, 40, design = "atac")
#' Matrix::nnzero(atac$reference.y) / length(atac$reference.y)   # share of peaks with reads
simulate_multimodal <- function(n.reference = 300, n.query = 100, n.types = NULL, n.x.features = NULL,
                                n.y.features = NULL, n.latent = 5, noise = 0.3,
                                design = c("latent", "citeseq", "atac"), query.shift = NULL) {
  design <- .check_design(design)
  defaults <- list(latent = c(3, 30, 60), citeseq = c(7, 15, 1000), atac = c(3, 500, 2000))[[design]]
  n.reference <- .check_count(n.reference, "n.reference")
  n.query <- .check_count(n.query, "n.query")
  n.types <- .check_count(n.types %||% defaults[1], "n.types")
  n.x.features <- .check_count(n.x.features %||% defaults[2], "n.x.features")
  n.y.features <- .check_count(n.y.features %||% defaults[3], "n.y.features")
  n.latent <- .check_count(n.latent, "n.latent")
  noise <- .check_number(noise, "noise", min = 0)
  query.shift <- .check_number(query.shift %||% if (design == "citeseq") 0.3 else 0, "query.shift", min = 0)
  if (design == "citeseq") {
    if (n.types > nrow(.citeseq_markers)) {
      stop("n.types: expected at most ", nrow(.citeseq_markers), " for design = \"citeseq\", found ",
           n.types, ".", call. = FALSE)
    }
    if (n.x.features > ncol(.citeseq_markers)) {
      stop("n.x.features: expected at most ", ncol(.citeseq_markers), " proteins for design = \"citeseq\", found ",
           n.x.features, ".", call. = FALSE)
    }
    return(.simulate_citeseq(n.reference, n.query, n.types, n.x.features, n.y.features, n.latent, noise,
                             query.shift))
  }
  if (design == "atac") {
    return(.simulate_atac(n.reference, n.query, n.types, n.x.features, n.y.features, n.latent, noise,
                          query.shift))
  }
  centres <- matrix(stats::rnorm(n.types * n.latent, sd = 3), n.types)
  wx <- matrix(stats::rnorm(n.latent * n.x.features), n.latent) / sqrt(n.latent)
  wy <- matrix(stats::rnorm(n.latent * n.y.features), n.latent) / sqrt(n.latent)
  cells <- function(n, prefix) {
    types <- sample.int(n.types, n, replace = TRUE)
    z <- centres[types, , drop = FALSE] + matrix(stats::rnorm(n * n.latent), n)
    x <- tanh(z %*% wx) * 2 + 2 + noise * matrix(stats::rnorm(n * n.x.features), n)
    y <- log1p(exp(z %*% wy)) + noise * matrix(stats::rnorm(n * n.y.features), n)
    x <- t(pmax(x, 0))
    y <- t(pmax(y, 0))
    cn <- paste0(prefix, seq_len(n))
    dimnames(x) <- list(paste0("gene", seq_len(n.x.features)), cn)
    dimnames(y) <- list(paste0("peak", seq_len(n.y.features)), cn)
    list(x = x, y = y, types = paste0("type", types))
  }
  ref <- cells(n.reference, "ref")
  qry <- cells(n.query, "query")
  if (query.shift > 0) {   # drawn last: the data without a shift are unchanged
    qry$y <- pmax(qry$y + stats::rnorm(n.y.features, sd = query.shift), 0)
  }
  .simulated(ref, qry)
}

.check_design <- function(design) {
  choices <- c("latent", "citeseq", "atac")
  if (identical(design, choices)) return("latent")
  if (!is.character(design) || length(design) != 1L || !design %in% choices) {
    stop("design: expected one of \"latent\", \"citeseq\", \"atac\", found ", deparse(design, nlines = 1L), ".",
         call. = FALSE)
  }
  design
}

.simulated <- function(ref, qry) {
  list(reference.x = ref$x, reference.y = ref$y, query.y = qry$y, query.x = qry$x,
       reference.labels = stats::setNames(ref$types, colnames(ref$x)),
       query.labels = stats::setNames(qry$types, colnames(qry$x)))
}

# Protein levels (log scale, above background) of the CITE-seq-like design's cell types: the usual
# PBMC marker patterns (CD3 on T cells, CD14 on classical monocytes, CD19 on B cells, ...).
.citeseq_markers <- local({
  proteins <- c("CD3", "CD4", "CD8a", "CD14", "CD15", "CD16", "CD56", "CD19", "CD25", "CD45RA",
                "CD45RO", "PD-1", "TIGIT", "CD127", "HLA-DR")
  m <- rbind(`CD4 T`     = c(4, 3.5, 0,   0,   0,   0,   0,   0,   1,   2.5, 2,   0.5, 0.5, 2.5, 0),
             `CD8 T`     = c(4, 0,   4,   0,   0,   0,   0.5, 0,   0,   3,   1.5, 0.5, 1.5, 1.5, 0.5),
             NK          = c(0, 0,   1,   0,   0,   3.5, 3.5, 0,   0,   3,   0.5, 0,   1.5, 0,   0.5),
             B           = c(0, 0,   0,   0,   0,   0,   0,   4,   0,   3.5, 0,   0,   0,   0,   3.5),
             `CD14 Mono` = c(0, 1.5, 0,   4,   1.5, 0.5, 0,   0,   0,   0.5, 2.5, 0,   0,   0,   3),
             `CD16 Mono` = c(0, 1.5, 0,   1,   0.5, 4,   0.5, 0,   0,   1.5, 2,   0,   0,   0,   3),
             DC          = c(0, 1,   0,   0.5, 0,   0,   0,   0,   0,   0.5, 2,   0,   0,   0,   4))
  colnames(m) <- proteins
  m
})

# Cell types whose RNA programme is mostly that of another type.
.citeseq_related <- c(`CD8 T` = "CD4 T", NK = "CD8 T", `CD16 Mono` = "CD14 Mono", DC = "CD14 Mono")

# Proteins whose level varies within a cell type with the cell's state (naive/memory, activation).
.citeseq_state_proteins <- c("CD25", "CD45RA", "CD45RO", "PD-1", "TIGIT", "CD127", "CD16", "CD56", "HLA-DR")

.simulate_citeseq <- function(n.reference, n.query, n.types, n.proteins, n.genes, n.latent, noise, shift) {
  markers <- .citeseq_markers[seq_len(n.types), seq_len(n.proteins), drop = FALSE]
  # RNA: a baseline, cell-type programmes (a fifth of the genes per type) and state programmes
  base <- stats::rnorm(n.genes, -0.5, 1.5)
  type.effect <- matrix(stats::rnorm(n.types * n.genes, sd = 1.5) * stats::rbinom(n.types * n.genes, 1, 0.2),
                        n.types)
  # related types share most of their programme (CD4 and CD8 T cells are told apart by few genes)
  rownames(type.effect) <- rownames(markers)
  for (b in intersect(names(.citeseq_related), rownames(markers))) {
    a <- .citeseq_related[[b]]
    if (a %in% rownames(markers)) type.effect[b, ] <- type.effect[a, ] + 0.4 * type.effect[b, ]
  }
  # the proteins' RNA: the first genes follow the proteins' cell-type pattern (weakly, as RNA does)
  n.linked <- min(n.proteins, n.genes)
  type.effect[, seq_len(n.linked)] <- 0.3 * markers[, seq_len(n.linked)]
  gene.state <- matrix(stats::rnorm(n.latent * n.genes, sd = 0.4) * stats::rbinom(n.latent * n.genes, 1, 0.3),
                       n.latent)
  state.p <- colnames(markers) %in% .citeseq_state_proteins
  prot.state <- matrix(stats::rnorm(n.latent * n.proteins, sd = 0.5), n.latent) *
    rep(ifelse(state.p, 1, 0.15), each = n.latent)
  p.ref <- c(0.32, 0.16, 0.11, 0.09, 0.24, 0.05, 0.03)[seq_len(n.types)]
  p.query <- c(0.26, 0.12, 0.08, 0.14, 0.30, 0.06, 0.04)[seq_len(n.types)]
  gene.batch <- stats::rnorm(n.genes, sd = shift)
  prot.batch <- stats::rnorm(n.proteins, sd = shift / 2)
  cells <- function(n, prefix, p, depth, adt.depth, gb, pb) {
    types <- sample.int(n.types, n, replace = TRUE, prob = p)
    state <- matrix(stats::rnorm(n * n.latent), n)
    log.rna <- sweep(type.effect[types, , drop = FALSE] + state %*% gene.state, 2, base + gb, "+")
    rna.mu <- exp(log.rna) / rowSums(exp(log.rna)) * stats::rlnorm(n, log(depth), 0.35)
    log.adt <- sweep(markers[types, , drop = FALSE] + state %*% prot.state, 2, pb, "+") +
      noise * matrix(stats::rnorm(n * n.proteins), n)
    adt.mu <- adt.depth * (exp(log.adt) + 2) * stats::rlnorm(n, 0, 0.3)   # + background staining
    cn <- paste0(prefix, seq_len(n))
    y <- .sparse_counts(rna.mu, paste0("gene", seq_len(n.genes)), cn)
    x <- .sparse_counts(adt.mu, colnames(markers), cn)
    list(x = x, y = y, types = rownames(markers)[types])
  }
  ref <- cells(n.reference, "ref", p.ref, 1500, 10, 0, 0)
  qry <- cells(n.query, "query", p.query, 1100, 10 / 3, gene.batch, prot.batch)
  .simulated(ref, qry)
}

.simulate_atac <- function(n.reference, n.query, n.types, n.genes, n.peaks, n.latent, noise, shift) {
  centres <- matrix(stats::rnorm(n.types * n.latent, sd = 2), n.types)
  # peaks: mostly closed; each line opens and closes its own sets
  peak.base <- stats::rnorm(n.peaks, -2.8, 0.8)
  peak.type <- matrix(stats::rnorm(n.types * n.peaks, sd = 2) * stats::rbinom(n.types * n.peaks, 1, 0.3), n.types)
  peak.state <- matrix(stats::rnorm(n.latent * n.peaks, sd = 0.5), n.latent)
  gene.base <- stats::rnorm(n.genes, 0, 1.5)
  gene.type <- matrix(stats::rnorm(n.types * n.genes, sd = 1.5) * stats::rbinom(n.types * n.genes, 1, 0.4), n.types)
  gene.state <- matrix(stats::rnorm(n.latent * n.genes, sd = 0.4), n.latent)
  peak.batch <- stats::rnorm(n.peaks, sd = shift)
  gene.batch <- stats::rnorm(n.genes, sd = shift / 2)
  cells <- function(n, prefix, pb, gb) {
    types <- sample.int(n.types, n, replace = TRUE)
    state <- matrix(stats::rnorm(n * n.latent), n) + centres[types, , drop = FALSE] / 4
    depth <- stats::rnorm(n, 0, 0.3)
    log.peak <- sweep(peak.type[types, , drop = FALSE] + state %*% peak.state, 2, peak.base + pb, "+") + depth
    log.gene <- sweep(gene.type[types, , drop = FALSE] + state %*% gene.state, 2, gene.base + gb, "+") +
      noise * matrix(stats::rnorm(n * n.genes), n)
    counts <- matrix(stats::rpois(length(log.gene), 20 * exp(log.gene)), n)
    cn <- paste0(prefix, seq_len(n))
    x <- log1p(counts / rowSums(counts) * 1e4)   # log-scale normalized expression
    x <- methods::as(methods::as(t(x), "CsparseMatrix"), "generalMatrix")
    dimnames(x) <- list(paste0("gene", seq_len(n.genes)), cn)
    list(x = x, y = .sparse_counts(exp(log.peak), paste0("peak", seq_len(n.peaks)), cn),
         types = paste0("line", LETTERS[types]))
  }
  ref <- cells(n.reference, "ref", 0, 0)
  qry <- cells(n.query, "query", peak.batch, gene.batch)
  .simulated(ref, qry)
}

# Poisson counts of a cells x features matrix of means, as a features x cells dgCMatrix.
.sparse_counts <- function(mu, features, cells) {
  counts <- matrix(stats::rpois(length(mu), mu), nrow(mu))
  m <- Matrix::Matrix(t(counts), sparse = TRUE)
  m <- methods::as(methods::as(m, "CsparseMatrix"), "generalMatrix")
  dimnames(m) <- list(features, cells)
  m
}
